//! `weir serve`'s configuration file (TOML) and its validated form. Every table
//! denies unknown keys: a misspelt option is an error with its line, never ignored.
//!
//! ```toml
//! listen = "127.0.0.1:8080"        # loopback by default
//! concurrency = 4                  # executions at once
//! base_url = "https://weir.example.com"   # for links in alerts
//! shutdown_grace_secs = 30
//!
//! [smtp]
//! host = "smtp.example.com"
//! port = 587
//! tls = "starttls"                 # none | starttls | tls
//! username = "weir"
//! password_env = "WEIR_SMTP_PASSWORD"   # the password comes from the environment
//! from = "weir <weir@example.com>"
//!
//! [notify]
//! group_window_secs = 900          # repeated failures within this are one digest
//! attempts = 5
//! backoff_secs = 2
//! allow_internal_webhooks = false  # true: webhooks may reach loopback/private addresses
//!
//! [secrets]
//! env_allow = ["CRM_TOKEN"]        # besides WEIR_ENV_*, variables projects may name in *_env
//!
//! [web]
//! allowed_hosts = ["weir.example.com"]   # Host names the API answers besides the listen address
//! session_idle_secs = 1800         # a dashboard session ends after this long unused
//! session_max_secs = 43200         # and this long after login, used or not
//! login_attempts_per_minute = 5    # wrong tokens per client address, then 429
//!
//! [cluster]                        # absent: every execution runs in this process
//! nats = "nats://127.0.0.1:4222"   # executions go to `weir worker`s through JetStream
//! coordinator_executes = false     # true: this daemon runs executions as a worker too
//! lease_secs = 30                  # a worker silent this long loses its execution
//! ```

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::DaemonSettings;
use crate::notify::{NotifySettings, SmtpSettings, TlsMode};
use crate::project::EnvPolicy;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeFile {
    pub listen: Option<String>,
    pub concurrency: Option<usize>,
    pub base_url: Option<String>,
    pub shutdown_grace_secs: Option<f64>,
    pub smtp: Option<SmtpFile>,
    #[serde(default)]
    pub notify: NotifyFile,
    #[serde(default)]
    pub secrets: SecretsFile,
    #[serde(default)]
    pub web: WebFile,
    pub cluster: Option<ClusterFile>,
}

/// `[cluster]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterFile {
    pub nats: String,
    #[serde(default)]
    pub coordinator_executes: bool,
    pub lease_secs: Option<f64>,
}

/// Scale-out, validated: the daemon coordinates and `weir worker`s execute.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterSettings {
    /// The NATS server (`nats://host:port`).
    pub nats: String,
    /// Whether this daemon also pulls executions, like a worker.
    pub coordinator_executes: bool,
    /// The JetStream ack wait: a worker that neither heart-beats nor acks within
    /// it loses the execution, which is delivered to another worker.
    pub lease: Duration,
}

impl ClusterSettings {
    fn from_file(f: ClusterFile) -> Result<ClusterSettings, String> {
        let nats = f.nats.trim().to_owned();
        let scheme_ok = ["nats://", "tls://"].iter().any(|s| nats.starts_with(s));
        if !scheme_ok || nats.len() < 10 {
            return Err(format!(
                "cluster.nats {nats:?}: write the server's address, e.g. nats://127.0.0.1:4222"
            ));
        }
        let lease = secs(f.lease_secs, "cluster.lease_secs", Duration::from_secs(30))?;
        if lease < Duration::from_secs(1) {
            return Err(
                "cluster.lease_secs: at least 1 second (heartbeats go every quarter of it)".into(),
            );
        }
        Ok(ClusterSettings {
            nats,
            coordinator_executes: f.coordinator_executes,
            lease,
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsFile {
    /// Environment variables projects may name in `*_env` options, besides
    /// `WEIR_ENV_*`.
    #[serde(default)]
    pub env_allow: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebFile {
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    pub session_idle_secs: Option<f64>,
    pub session_max_secs: Option<f64>,
    pub login_attempts_per_minute: Option<u32>,
}

/// The HTTP API's protections (used by `api`).
#[derive(Clone, Debug)]
pub struct WebSettings {
    /// Host names (without port) requests may carry besides the listen address,
    /// `localhost` and `127.0.0.1`: anything else is refused, so a name an
    /// attacker points at 127.0.0.1 (DNS rebinding) gets no answer.
    pub allowed_hosts: Vec<String>,
    /// A dashboard session unused this long ends.
    pub session_idle: Duration,
    /// A dashboard session ends this long after login, used or not.
    pub session_max: Duration,
    /// Wrong tokens per client address within a minute before login answers 429.
    pub login_attempts_per_minute: u32,
}

impl Default for WebSettings {
    fn default() -> WebSettings {
        WebSettings {
            allowed_hosts: Vec::new(),
            session_idle: Duration::from_secs(30 * 60),
            session_max: Duration::from_secs(12 * 3600),
            login_attempts_per_minute: 5,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpFile {
    pub host: String,
    pub port: Option<u16>,
    #[serde(default)]
    pub tls: TlsMode,
    pub username: Option<String>,
    /// The environment variable holding the password (never the password itself:
    /// configuration files get copied around).
    pub password_env: Option<String>,
    pub from: String,
    pub timeout_secs: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyFile {
    pub group_window_secs: Option<f64>,
    pub attempts: Option<u32>,
    pub backoff_secs: Option<f64>,
    #[serde(default)]
    pub allow_internal_webhooks: bool,
}

/// The daemon's validated configuration.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub daemon: DaemonSettings,
    pub notify: NotifySettings,
    pub shutdown_grace: Duration,
    /// Which environment variables stored projects may name.
    pub env: EnvPolicy,
    pub web: WebSettings,
    /// `None`: no cluster; every execution runs in this process.
    pub cluster: Option<ClusterSettings>,
}

fn secs(v: Option<f64>, what: &str, default: Duration) -> Result<Duration, String> {
    match v {
        None => Ok(default),
        Some(s) if s.is_finite() && s >= 0.0 && s <= 86_400.0 => Ok(Duration::from_secs_f64(s)),
        Some(s) => Err(format!("{what}: {s} is out of range (0 to 86400 seconds)")),
    }
}

impl ServeConfig {
    /// Reads `file` (if given) and applies `listen` over it.
    pub fn load(file: Option<&Path>, listen: Option<&str>) -> Result<ServeConfig, String> {
        let parsed: ServeFile = match file {
            None => ServeFile::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
            }
        };
        let place = file.map_or("serve options".to_owned(), |p| p.display().to_string());
        ServeConfig::from_file(parsed, listen).map_err(|e| format!("{place}: {e}"))
    }

    fn from_file(f: ServeFile, listen: Option<&str>) -> Result<ServeConfig, String> {
        let smtp_password_env = f.smtp.as_ref().and_then(|s| s.password_env.clone());
        let listen_text = listen
            .map(str::to_owned)
            .or(f.listen)
            .unwrap_or_else(|| "127.0.0.1:8080".to_owned());
        let listen: SocketAddr = listen_text.parse().map_err(|_| {
            format!("listen {listen_text:?}: write an address and port, e.g. 127.0.0.1:8080")
        })?;
        let concurrency = f.concurrency.unwrap_or(4);
        if !(1..=256).contains(&concurrency) {
            return Err(format!(
                "concurrency: {concurrency} is out of range (1 to 256)"
            ));
        }
        let base_url = f
            .base_url
            .unwrap_or_else(|| format!("http://{listen}"))
            .trim_end_matches('/')
            .to_owned();
        crate::notify::check_webhook_url(&base_url).map_err(|e| format!("base_url: {e}"))?;
        let smtp = match f.smtp {
            None => None,
            Some(s) => {
                let password = match &s.password_env {
                    None => None,
                    Some(var) => Some(std::env::var(var).map_err(|_| {
                        format!("smtp.password_env: the environment variable {var} is not set")
                    })?),
                };
                crate::notify::parse_email_list(&s.from)
                    .or_else(|_| {
                        // "Name <address>" is allowed too.
                        s.from
                            .parse::<lettre::message::Mailbox>()
                            .map(|m| vec![m.email.to_string()])
                            .map_err(|e| e.to_string())
                    })
                    .map_err(|e| format!("smtp.from {:?}: {e}", s.from))?;
                let port = s.port.unwrap_or(match s.tls {
                    TlsMode::None => 25,
                    TlsMode::StartTls => 587,
                    TlsMode::Tls => 465,
                });
                Some(SmtpSettings {
                    host: s.host,
                    port,
                    tls: s.tls,
                    username: s.username,
                    password,
                    from: s.from,
                    timeout: secs(s.timeout_secs, "smtp.timeout_secs", Duration::from_secs(30))?,
                })
            }
        };
        let defaults = NotifySettings::default();
        let notify = NotifySettings {
            smtp,
            base_url,
            group_window: secs(
                f.notify.group_window_secs,
                "notify.group_window_secs",
                defaults.group_window,
            )?,
            attempts: f.notify.attempts.unwrap_or(defaults.attempts).clamp(1, 50),
            backoff: secs(
                f.notify.backoff_secs,
                "notify.backoff_secs",
                defaults.backoff,
            )?,
            allow_internal_webhooks: f.notify.allow_internal_webhooks,
        };
        // The SMTP password's variable is the daemon's, never a project's.
        if let Some(var) = smtp_password_env.as_ref()
            && f.secrets.env_allow.contains(var)
        {
            return Err(format!(
                "secrets.env_allow: `{var}` holds the SMTP password (smtp.password_env); projects may not read it"
            ));
        }
        let mut env = EnvPolicy::allowing(f.secrets.env_allow)
            .map_err(|e| format!("secrets.env_allow: {e}"))?;
        if let Some(var) = &smtp_password_env {
            env = env.denying(var);
        }
        let web_defaults = WebSettings::default();
        let session_max = secs(
            f.web.session_max_secs,
            "web.session_max_secs",
            web_defaults.session_max,
        )?;
        let web = WebSettings {
            allowed_hosts: f
                .web
                .allowed_hosts
                .iter()
                .map(|h| h.trim().to_ascii_lowercase())
                .collect(),
            session_idle: secs(
                f.web.session_idle_secs,
                "web.session_idle_secs",
                web_defaults.session_idle,
            )?
            .min(session_max),
            session_max,
            login_attempts_per_minute: f
                .web
                .login_attempts_per_minute
                .unwrap_or(web_defaults.login_attempts_per_minute)
                .clamp(1, 1000),
        };
        Ok(ServeConfig {
            listen,
            daemon: DaemonSettings {
                concurrency,
                ..DaemonSettings::default()
            },
            notify,
            shutdown_grace: secs(
                f.shutdown_grace_secs,
                "shutdown_grace_secs",
                Duration::from_secs(30),
            )?,
            env,
            web,
            cluster: f.cluster.map(ClusterSettings::from_file).transpose()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_bind_loopback() {
        let c = ServeConfig::from_file(ServeFile::default(), None).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.notify.base_url, "http://127.0.0.1:8080");
        assert!(c.notify.smtp.is_none());
    }

    #[test]
    fn the_administrator_sets_env_webhook_and_web_policy() {
        let c = ServeConfig::from_file(ServeFile::default(), None).unwrap();
        assert!(!c.notify.allow_internal_webhooks, "off by default");
        assert!(c.env.check("CRM_TOKEN").is_err());
        assert_eq!(c.web.session_max, Duration::from_secs(12 * 3600));
        let f: ServeFile = toml::from_str(
            "[secrets]\nenv_allow = [\"CRM_TOKEN\"]\n[notify]\nallow_internal_webhooks = true\n[web]\nallowed_hosts = [\"Weir.Example.com\"]\nsession_max_secs = 60\nsession_idle_secs = 600",
        )
        .unwrap();
        let c = ServeConfig::from_file(f, None).unwrap();
        assert!(c.env.check("CRM_TOKEN").is_ok());
        assert!(c.env.check("WEIR_SECRET_KEY").is_err());
        assert!(c.notify.allow_internal_webhooks);
        assert_eq!(c.web.allowed_hosts, ["weir.example.com"]);
        assert_eq!(
            c.web.session_idle,
            Duration::from_secs(60),
            "never past the lifetime"
        );
        // The SMTP password's variable is never a project's, even named WEIR_ENV_*.
        // SAFETY: tests in this module do not read WEIR_ENV_SMTP_PW elsewhere.
        unsafe { std::env::set_var("WEIR_ENV_SMTP_PW", "pw-value") };
        let f: ServeFile = toml::from_str(
            "[smtp]\nhost = \"h\"\nfrom = \"x@y.org\"\npassword_env = \"WEIR_ENV_SMTP_PW\"",
        )
        .unwrap();
        let c = ServeConfig::from_file(f, None).unwrap();
        let e = c.env.check("WEIR_ENV_SMTP_PW").unwrap_err();
        assert!(e.contains("one of the daemon's own secrets"), "{e}");
        assert!(c.env.check("WEIR_ENV_OTHER").is_ok());
        for bad in [
            "[secrets]\nenv_allow = [\"WEIR_SECRET_KEY\"]",
            "[secrets]\nenv_allow = [\"SMTP_PW\"]\n[smtp]\nhost = \"h\"\nfrom = \"x@y.org\"\npassword_env = \"SMTP_PW\"",
        ] {
            let f: ServeFile = toml::from_str(bad).unwrap();
            // SAFETY: tests in this module do not read SMTP_PW elsewhere.
            unsafe { std::env::set_var("SMTP_PW", "pw-value") };
            let e = ServeConfig::from_file(f, None).unwrap_err();
            assert!(e.starts_with("secrets.env_allow:"), "{e}");
        }
    }

    #[test]
    fn a_cluster_section_is_checked_and_absent_by_default() {
        let c = ServeConfig::from_file(ServeFile::default(), None).unwrap();
        assert_eq!(c.cluster, None, "no cluster: everything runs in process");
        let f: ServeFile =
            toml::from_str("[cluster]\nnats = \"nats://127.0.0.1:4222\"\nlease_secs = 5").unwrap();
        let c = ServeConfig::from_file(f, None).unwrap();
        assert_eq!(
            c.cluster,
            Some(ClusterSettings {
                nats: "nats://127.0.0.1:4222".into(),
                coordinator_executes: false,
                lease: Duration::from_secs(5),
            })
        );
        for (bad, named) in [
            ("[cluster]\nnats = \"127.0.0.1:4222\"", "cluster.nats"),
            (
                "[cluster]\nnats = \"nats://h:1\"\nlease_secs = 0.5",
                "cluster.lease_secs",
            ),
        ] {
            let f: ServeFile = toml::from_str(bad).unwrap();
            let e = ServeConfig::from_file(f, None).unwrap_err();
            assert!(e.starts_with(named), "{e}");
        }
        let e = toml::from_str::<ServeFile>("[cluster]\nnats = \"nats://h:1\"\nworkers = 3")
            .unwrap_err()
            .to_string();
        assert!(e.contains("workers"), "unknown keys are refused: {e}");
    }

    #[test]
    fn bad_options_are_named() {
        let f: ServeFile = toml::from_str("concurrency = 0").unwrap();
        assert!(
            ServeConfig::from_file(f, None)
                .unwrap_err()
                .contains("concurrency")
        );
        let e = toml::from_str::<ServeFile>("conccurency = 2")
            .unwrap_err()
            .to_string();
        assert!(e.contains("conccurency"), "{e}");
        let f: ServeFile = toml::from_str(
            "[smtp]\nhost = \"h\"\nfrom = \"x\"\npassword_env = \"WEIR_NO_SUCH_VAR_X\"",
        )
        .unwrap();
        assert!(
            ServeConfig::from_file(f, None)
                .unwrap_err()
                .contains("WEIR_NO_SUCH_VAR_X")
        );
    }
}
