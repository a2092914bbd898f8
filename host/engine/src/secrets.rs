//! Secrets as the engine sees a project, so every way in (`weir run FILE`,
//! `weir validate`, `weir preview`, the daemon, an embedder calling
//! [`super::Engine::run`]) gets the same two guarantees:
//!
//! - an option a plugin declares `secret` (or one of the host's credential
//!   options, `auth.*`, `postgres.password`) is refused as a plain option of a
//!   project: it would sit in clear in the file (and in the store, for projects
//!   sent through the API). It may reach a plugin only as a stored connection's
//!   secret ([`Connection::secret_options`]); the host's credentials come from
//!   the environment through the allow-listed `*_env` options;
//! - every secret value the project knows (credentials read from the
//!   environment, stored secrets, declared-secret options) builds one
//!   [`Redactor`], applied to everything the engine hands back or logs, and
//!   remembered process-wide for the runtime's own log lines.

use super::validate::{Problem, Severity, ValidationReport};
use super::{EngineError, PluginRegistry};
use crate::project::{Connection, PluginRef, Project};
use crate::runtime::redact::Redactor;

/// The validation code of a secret given as a plain option.
pub const SECRET_AS_OPTION: &str = "secret-as-option";

impl PluginRegistry {
    /// The options `plugin` declares `secret` (empty when it does not load or
    /// cannot be described); asked once per loaded plugin.
    pub fn secret_options(&self, plugin: &PluginRef) -> Vec<String> {
        self.get(plugin)
            .map(|p| p.secret_options().to_vec())
            .unwrap_or_default()
    }
}

/// Whether `key` is secret for a plugin declaring `declared`: the host's own
/// credential options are, whatever the plugin says.
fn is_secret(key: &str, declared: &[String]) -> bool {
    crate::project::is_stored_secret_option(key) || declared.iter().any(|d| d == key)
}

/// One problem per secret given as a plain option in `project`.
pub(crate) fn plain_secrets(registry: &PluginRegistry, project: &Project) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (role, conn) in [
        ("source", &project.source),
        ("destination", &project.destination),
    ] {
        let declared = registry.secret_options(&conn.plugin);
        for (key, _) in conn.config.entries() {
            if is_secret(key, &declared) && !conn.secret_options.contains(key) {
                problems.push(connection_problem(role, conn, key));
            }
        }
    }
    for task in &project.tasks {
        for (n, step) in task.transforms.iter().enumerate() {
            let declared = registry.secret_options(&step.plugin);
            for (key, _) in step.config.entries() {
                if is_secret(key, &declared) {
                    problems.push(Problem {
                        severity: Severity::Error,
                        code: SECRET_AS_OPTION,
                        task: Some(task.name.clone()),
                        field: Some(key.clone()),
                        message: format!(
                            "transform {} of task `{}`: option `{key}` is a secret its plugin declares; it is refused as a plain option in a project (it would be kept and shown in clear)",
                            n + 1,
                            task.name
                        ),
                        hint: Some(format!(
                            "remove `{key}` from the transform's `config`; a transform cannot be given secrets — move the step that needs `{key}` into a connector, and store that connection with the secret (`weir connection add NAME --plugin … --secret {key}=-`)"
                        )),
                        place: step.plugin.place.as_ref().map(|p| p.to_string()),
                    });
                }
            }
        }
    }
    problems
}

fn connection_problem(role: &str, conn: &Connection, key: &str) -> Problem {
    let how = if let Some(rest) = key.strip_prefix(crate::project::STORED_AUTH_PREFIX) {
        let env = match rest {
            "password" => "kind = \"basic\", username = \"…\", password_env = \"WEIR_ENV_…\"",
            "key" => "kind = \"api_key\", key_env = \"WEIR_ENV_…\"",
            "client_secret" => {
                "kind = \"oauth2_client_credentials\", …, client_secret_env = \"WEIR_ENV_…\""
            }
            _ => "kind = \"bearer\", token_env = \"WEIR_ENV_…\"",
        };
        format!(
            "put the credential in an environment variable the administrator allows and name it: `[connections.{name}.auth]` with `{env}`; or store the connection with the secret (`weir connection add {name} --plugin … --secret {key}=-`) and name it in the connection set",
            name = conn.name
        )
    } else if key == "postgres.password" {
        format!(
            "name an allowed environment variable in `[connections.{name}.grants.postgres]` (`password_env = \"WEIR_ENV_…\"`), or store the connection with the secret (`--secret {key}=-`)",
            name = conn.name
        )
    } else {
        format!(
            "store the connection with the secret (`weir connection add {name} --plugin … --secret {key}=-`, or `secrets` through the API) and name it in the connection set instead of defining it in the project",
            name = conn.name
        )
    };
    Problem {
        severity: Severity::Error,
        code: SECRET_AS_OPTION,
        task: None,
        field: Some(key.to_owned()),
        message: format!(
            "{role} connection `{}`: option `{key}` is a secret; it is refused as a plain option in a project (it would be kept and shown in clear)",
            conn.name
        ),
        hint: Some(how),
        place: conn
            .option_places
            .get(key)
            .or(conn.plugin.place.as_ref())
            .map(|p| p.to_string()),
    }
}

/// Every secret value a run of `project` knows: its connections' credentials
/// (with the forms they travel in), their stored secrets, and the values of
/// options their plugins declare secret.
pub(crate) fn redactor(registry: &PluginRegistry, project: &Project) -> Redactor {
    let mut r = Redactor::new();
    for conn in [&project.source, &project.destination] {
        r.merge(&conn.grants.redactor());
        let declared = registry.secret_options(&conn.plugin);
        for (key, value) in conn.config.entries() {
            if conn.secret_options.contains(key) || is_secret(key, &declared) {
                r.add(value);
            }
        }
    }
    for step in project.tasks.iter().flat_map(|t| &t.transforms) {
        let declared = registry.secret_options(&step.plugin);
        for (key, value) in step.config.entries() {
            if is_secret(key, &declared) {
                r.add(value);
            }
        }
    }
    r
}

/// An engine error with `secrets` scrubbed from its text (a validation report
/// quotes plugins, which quote servers, which may echo a credential).
pub(crate) fn scrub_error(e: EngineError, secrets: &Redactor) -> EngineError {
    match e {
        EngineError::Invalid(mut report) => {
            scrub_report(&mut report, secrets);
            EngineError::Invalid(report)
        }
        other => other,
    }
}

pub(crate) fn scrub_report(report: &mut ValidationReport, secrets: &Redactor) {
    if secrets.is_empty() {
        return;
    }
    for p in &mut report.problems {
        p.message = secrets.scrub(&p.message);
        p.hint = p.hint.as_deref().map(|h| secrets.scrub(h));
    }
}
