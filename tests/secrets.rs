//! Secrets that must not leave weir, end to end with real processes: `weir serve`
//! (the daemon, its log on stderr), aiosmtpd (the alert mail), and test HTTP
//! servers on 127.0.0.1 (one echoing the credential it receives, one receiving
//! the webhook). Issue 18, items 5–7.

mod common;
#[path = "common/http_server.rs"]
mod http_server;
#[path = "common/smtp.rs"]
mod smtp;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use http_server::{Reply, TestServer};
use serde_json::Value;
use smtp::SmtpServer;

const KEY: &str = "a secrets test key, long enough";
const ADMIN: &str = "an-admin-token-for-the-secrets-test";
/// The bearer token a project reads from the environment.
const ENV_TOKEN: &str = "env-token-3f9a1c77e2b54d10-unique";
/// The bearer token stored (encrypted) on a connection, given through stdin.
const STORED_TOKEN: &str = "stored-token-8c41d2e0aa7f9b36-unique";

fn weir(data: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env("WEIR_SECRET_KEY", KEY)
        .env("WEIR_ENV_ECHO_TOKEN", ENV_TOKEN)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run weir");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    child.wait_with_output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn project(name: &str, source: &str, echo: &TestServer, hook: &TestServer, out: &Path) -> String {
    format!(
        r#"
[connections.src]
plugin = "rest"
grants = {{ http_hosts = ["{host}"] }}
auth = {{ kind = "bearer", token_env = "WEIR_ENV_ECHO_TOKEN" }}
[connections.src.config]
base_url = "http://{host}"
entities = "contacts"

[connections.dst]
plugin = "jsonl"
grants = {{ directory = "{out}" }}

[connection_sets.s]
source = "{source}"
destination = "dst"

[project]
name = "{name}"
connection_set = "s"
notify = {{ emails = "ops@example.org", webhooks = ["{hook}"] }}

[[project.tasks]]
source_entity = "contacts"
destination_entity = "contacts"
key = ["id"]
mappings = [{{ destination = "id", source = "id" }}]
"#,
        host = echo.host(),
        out = out.display(),
        hook = hook.url("/hook"),
    )
}

/// A testkit source that sends one request to `echo` through the host (with the
/// token from the environment) and logs the answer's body as a plugin log line:
/// the raw echo reaches the tracing log, where only the log sink can scrub it.
fn kit_project(name: &str, echo: &TestServer, out: &Path) -> String {
    format!(
        r#"
[connections.src]
plugin = "{testkit}"
grants = {{ http_hosts = ["{host}"] }}
auth = {{ kind = "bearer", token_env = "WEIR_ENV_ECHO_TOKEN" }}
config = {{ fetch_url = "http://{host}/kit" }}

[connections.dst]
plugin = "jsonl"
grants = {{ directory = "{out}" }}

[connection_sets.s]
source = "src"
destination = "dst"

[project]
name = "{name}"
connection_set = "s"

[[project.tasks]]
source_entity = "people"
destination_entity = "people"
key = ["id"]
mappings = [{{ destination = "id", source = "id" }}]
"#,
        testkit = common::plugin_path("testkit-connector").display(),
        host = echo.host(),
        out = out.display(),
    )
}

/// A server that answers 400 quoting the `Authorization` header it received (as
/// some do in their error pages) reaches the plugin's error; the token must
/// still be absent from everything weir lets out: the execution's error and log
/// (API), the validation report (API), the alert mail, the webhook body, the
/// daemon's log (its "execution failed" line among them), and the CLI's output.
/// Both kinds of secret: one read from the environment (`token_env`), one stored
/// on a connection (given to `--secret auth.token=-` through stdin).
#[test]
fn a_token_echoed_by_a_server_is_scrubbed_from_errors_mail_webhooks_and_logs() {
    let Some(smtp) = SmtpServer::start() else {
        return;
    };
    let echo = TestServer::start(|r| {
        let auth = r.header("authorization").unwrap_or("none").to_owned();
        Reply::new(
            400,
            format!("{{\"message\": \"bad request; you sent Authorization: {auth}\"}}"),
        )
    });
    let hook = TestServer::start(|_| Reply::new(200, "ok"));
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();

    // A stored connection, its token from stdin: not on the command line.
    let added = weir(
        &data,
        &[
            "connection",
            "add",
            "stored-echo",
            "--plugin",
            "rest",
            "--config",
            &format!("base_url=http://{}", echo.host()),
            "--config",
            "entities=contacts",
            "--config",
            "auth.kind=bearer",
            "--http-host",
            &echo.host(),
            "--secret",
            "auth.token=-",
        ],
        Some(&format!("{STORED_TOKEN}\n")),
    );
    let shown = text(&added);
    // The echo server refuses the request, so the check fails: stored, exit 1.
    assert_eq!(added.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains("connection stored-echo is stored"),
        "{shown}"
    );
    assert!(
        echo.requests()
            .iter()
            .any(|r| r.header("authorization") == Some(&format!("Bearer {STORED_TOKEN}"))),
        "the token from stdin (without its newline) was sent: {:?}",
        echo.requests()
    );
    assert!(!shown.contains(STORED_TOKEN), "{shown}");
    assert!(
        shown.contains("[redacted]"),
        "the echo was scrubbed: {shown}"
    );

    for (name, source) in [
        ("env-echo", "src"),
        ("stored-echo-p", "stored-echo"),
        ("kit-echo", "kit"),
    ] {
        let file = tmp.path().join(format!("{name}.toml"));
        let toml_text = if source == "kit" {
            kit_project(name, &echo, &out)
        } else {
            project(name, source, &echo, &hook, &out)
        };
        std::fs::write(&file, toml_text).unwrap();
        let applied = weir(
            &data,
            &["project", "apply", "--file", file.to_str().unwrap()],
            None,
        );
        assert!(applied.status.success(), "{}", text(&applied));
    }
    let config = tmp.path().join("serve.toml");
    std::fs::write(
        &config,
        format!(
            "[smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nfrom = \"weir@example.org\"\n\
             [notify]\ngroup_window_secs = 0\nattempts = 2\nbackoff_secs = 0.2\nallow_internal_webhooks = true\n",
            smtp.port()
        ),
    )
    .unwrap();
    let log_path = tmp.path().join("serve.log");
    let mut serve = Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("--data-dir")
        .arg(&data)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .env("WEIR_SECRET_KEY", KEY)
        .env("WEIR_ADMIN_TOKEN", ADMIN)
        .env("WEIR_ENV_ECHO_TOKEN", ENV_TOKEN)
        .env("WEIR_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(serve.stdout.take().unwrap()),
        &mut first,
    )
    .unwrap();
    let base = first
        .trim()
        .strip_prefix("weir serve: listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_owned();
    let client = reqwest::blocking::Client::new();
    let call = |method: reqwest::Method, path: &str| -> (u16, String) {
        let r = client
            .request(method, format!("{base}{path}"))
            .bearer_auth(ADMIN)
            .send()
            .unwrap();
        (r.status().as_u16(), r.text().unwrap())
    };

    for name in ["env-echo", "stored-echo-p", "kit-echo"] {
        let (status, body) = call(
            reqwest::Method::POST,
            &format!("/api/v1/projects/{name}/validate"),
        );
        assert_eq!(status, 200, "{body}");
        for token in [ENV_TOKEN, STORED_TOKEN] {
            assert!(!body.contains(token), "validation report of {name}: {body}");
        }
        // The testkit's report names the status only; its echo is in its log line.
        assert!(name == "kit-echo" || body.contains("[redacted]"), "{body}");

        let (status, body) = call(
            reqwest::Method::POST,
            &format!("/api/v1/projects/{name}/run"),
        );
        assert_eq!(status, 202, "{body}");
        let id = serde_json::from_str::<Value>(&body).unwrap()["execution"]
            .as_u64()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let execution = loop {
            let (_, body) = call(reqwest::Method::GET, &format!("/api/v1/executions/{id}"));
            let v: Value = serde_json::from_str(&body).unwrap();
            if v["status"] != "Running" {
                break body;
            }
            assert!(Instant::now() < deadline, "still running: {body}");
            std::thread::sleep(Duration::from_millis(100));
        };
        let (_, log) = call(
            reqwest::Method::GET,
            &format!("/api/v1/executions/{id}/log"),
        );
        for token in [ENV_TOKEN, STORED_TOKEN] {
            assert!(!execution.contains(token), "{execution}");
            assert!(!log.contains(token), "{log}");
        }
        assert!(
            name == "kit-echo" || execution.contains("you sent Authorization: Bearer [redacted]"),
            "the server's echo is there, scrubbed: {execution}"
        );
    }
    let sent: Vec<String> = echo
        .requests()
        .iter()
        .filter_map(|r| r.header("authorization").map(str::to_owned))
        .collect();
    assert!(
        sent.contains(&format!("Bearer {ENV_TOKEN}")),
        "the environment's token was sent: {sent:?}"
    );

    let mails = smtp.wait_for(2, Duration::from_secs(30));
    assert_eq!(mails.len(), 2, "one alert per project");
    for mail in &mails {
        assert!(mail.subject().contains("Error"), "{}", mail.subject());
        for token in [ENV_TOKEN, STORED_TOKEN] {
            assert!(!mail.body.contains(token), "{}", mail.body);
        }
        assert!(mail.body.contains("[redacted]"), "{}", mail.body);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while hook.requests().len() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let hooks = hook.requests();
    assert_eq!(hooks.len(), 2, "{hooks:?}");
    for h in &hooks {
        let body = String::from_utf8_lossy(&h.body);
        for token in [ENV_TOKEN, STORED_TOKEN] {
            assert!(!body.contains(token), "{body}");
        }
        assert!(body.contains("[redacted]"), "{body}");
    }

    let _ = Command::new("kill")
        .args(["-TERM", &serve.id().to_string()])
        .status();
    let _ = serve.wait();
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.contains("execution failed") && log.contains("http response"),
        "the daemon logged the failures and the plugin's log line:\n{log}"
    );
    for token in [ENV_TOKEN, STORED_TOKEN] {
        assert!(!log.contains(token), "the daemon's log:\n{log}");
    }
    assert!(log.contains("[redacted]"), "{log}");
}

/// `token_env = "WEIR_SECRET_KEY"` would send the store's key as a bearer token:
/// `weir validate` and `weir run` refuse it, naming the option and the variable,
/// before anything is sent.
#[test]
fn a_project_file_naming_weirs_own_variable_is_refused() {
    let echo = TestServer::start(|_| Reply::new(200, "[]"));
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let hook = TestServer::start(|_| Reply::new(200, "ok"));
    for var in ["WEIR_SECRET_KEY", "WEIR_ADMIN_TOKEN"] {
        let file = tmp.path().join("p.toml");
        std::fs::write(
            &file,
            project("p", "src", &echo, &hook, &out).replace("WEIR_ENV_ECHO_TOKEN", var),
        )
        .unwrap();
        for command in ["validate", "run"] {
            let o = Command::new(env!("CARGO_BIN_EXE_weir"))
                .arg("--data-dir")
                .arg(tmp.path().join("data"))
                .args([command, file.to_str().unwrap()])
                .env("WEIR_SECRET_KEY", KEY)
                .env("WEIR_ADMIN_TOKEN", ADMIN)
                .output()
                .unwrap();
            let shown = text(&o);
            assert!(!o.status.success(), "{command}: {shown}");
            assert!(
                shown.contains(&format!(
                    "connections.src.auth.token_env: environment variable `{var}` is one of weir's own"
                )),
                "{command}: {shown}"
            );
            assert!(!shown.contains(KEY) && !shown.contains(ADMIN), "{shown}");
        }
    }
    assert_eq!(echo.accepted(), 0, "nothing was sent");
}

/// A credential given as a plain option would be stored in clear and shown:
/// refused with the way to give it, and nothing stored.
#[test]
fn a_credential_given_as_a_plain_option_is_refused_and_not_stored() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    for (option, value) in [
        ("auth.token", "plain-token-0123456789"),
        ("auth.password", "plain-password-0123"),
        ("postgres.password", "plain-pg-password-01"),
    ] {
        let o = weir(
            &data,
            &[
                "connection",
                "add",
                "plain",
                "--plugin",
                "rest",
                "--config",
                "base_url=http://127.0.0.1:9",
                "--config",
                "auth.kind=bearer",
                "--config",
                &format!("{option}={value}"),
            ],
            None,
        );
        let shown = text(&o);
        assert!(!o.status.success(), "{shown}");
        assert!(
            shown.contains(&format!("`{option}` is a secret"))
                && shown.contains("--secret")
                && shown.contains("nothing was stored"),
            "{shown}"
        );
        assert!(!shown.contains(value), "{shown}");
    }
    let listed = weir(&data, &["connection", "list", "--json"], None);
    assert!(listed.status.success(), "{}", text(&listed));
    assert!(!text(&listed).contains("plain"), "{}", text(&listed));

    // Credentials named but missing: the connection needs fixing, and is not
    // checked anonymously against a server that would let it through.
    let open = TestServer::start(|_| Reply::new(200, "[]"));
    let o = weir(
        &data,
        &[
            "connection",
            "add",
            "anon",
            "--plugin",
            "rest",
            "--config",
            &format!("base_url=http://{}", open.host()),
            "--config",
            "entities=contacts",
            "--config",
            "auth.kind=bearer",
            "--http-host",
            &open.host(),
        ],
        None,
    );
    let shown = text(&o);
    assert!(
        shown.contains("needs fixing") && shown.contains("needs the secret `auth.token`"),
        "{shown}"
    );
    assert_eq!(open.accepted(), 0, "not checked without its credentials");
}

/// `--secret KEY=-` reads the value from stdin, `--secret KEY=@FILE` from a file
/// (each without its final newline), so it is never on the command line (`ps`).
#[test]
fn a_secret_can_come_from_stdin_or_a_file() {
    let echo = TestServer::start(|_| Reply::new(200, "[]"));
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let file = tmp.path().join("token");
    std::fs::write(&file, "file-token-5be1a09d\n").unwrap();
    let add = |name: &str, secret: &str, stdin: Option<&str>| {
        weir(
            &data,
            &[
                "connection",
                "add",
                name,
                "--plugin",
                "rest",
                "--config",
                &format!("base_url=http://{}", echo.host()),
                "--config",
                "entities=contacts",
                "--config",
                "auth.kind=bearer",
                "--http-host",
                &echo.host(),
                "--secret",
                secret,
            ],
            stdin,
        )
    };
    let from_file = add(
        "from-file",
        &format!("auth.token=@{}", file.display()),
        None,
    );
    assert!(from_file.status.success(), "{}", text(&from_file));
    let from_stdin = add("from-stdin", "auth.token=-", Some("stdin-token-77c2e9\r\n"));
    assert!(from_stdin.status.success(), "{}", text(&from_stdin));
    let sent: Vec<String> = echo
        .requests()
        .iter()
        .filter_map(|r| r.header("authorization").map(str::to_owned))
        .collect();
    for expected in ["Bearer file-token-5be1a09d", "Bearer stdin-token-77c2e9"] {
        assert!(sent.iter().any(|s| s == expected), "{sent:?}");
    }
    // Two secrets cannot both come from stdin.
    let o = weir(
        &data,
        &[
            "connection",
            "add",
            "two",
            "--plugin",
            "rest",
            "--secret",
            "auth.token=-",
            "--secret",
            "other=-",
        ],
        Some("x\n"),
    );
    assert!(!o.status.success());
    assert!(
        text(&o).contains("only one secret can come from stdin"),
        "{}",
        text(&o)
    );
}

/// An option the plugin declares `secret` (testkit's `api_secret`): refused as a
/// plain option of a stored connection, and its value scrubbed from what an
/// execution records when the plugin quotes it (here in a refused check).
#[test]
fn options_a_plugin_declares_secret_are_refused_as_plain_options_and_scrubbed() {
    use weir_host::engine::Quiet;
    use weir_host::project::EnvPolicy;
    use weir_host::service::Service;
    use weir_host::store::{ConnectionState, SecretKey, Store, StoredConnection, Trigger};

    const DECLARED: &str = "declared-secret-value-4e1f";
    let tmp = tempfile::tempdir().unwrap();
    let key = SecretKey::from_material(KEY).unwrap();
    let svc = Service::new(
        Store::open(&tmp.path().join("store"), Some(key)).unwrap(),
        common::runtime(),
    );
    let testkit = common::plugin_path("testkit-connector");
    let conn = |config: Vec<(String, String)>, secrets: Vec<(String, String)>| StoredConnection {
        name: "kit".into(),
        plugin: testkit.display().to_string(),
        config,
        secrets,
        directory: None,
        http_hosts: Vec::new(),
        http_internal: false,
        state: ConnectionState::Unchecked,
        updated_at: 0,
    };
    let e = svc
        .put_connection(&conn(
            vec![("api_secret".into(), DECLARED.into())],
            Vec::new(),
        ))
        .unwrap_err()
        .to_string();
    assert!(e.contains("`api_secret` is a secret"), "{e}");
    assert!(
        svc.store.connection("kit").unwrap().is_none(),
        "nothing stored"
    );
    // As a secret it is accepted (the plugin's refused check quotes it).
    svc.put_connection(&conn(
        vec![(
            "refuse_check".into(),
            format!("login refused for {DECLARED}"),
        )],
        vec![("api_secret".into(), DECLARED.into())],
    ))
    .unwrap();

    // In a project's config it is refused, naming it; run from the stored
    // connection, its value is never recorded.
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let run = |name: &str, connection: &str, source: &str| {
        let text = format!(
            r#"{connection}
[connections.dst]
plugin = "jsonl"
grants = {{ directory = "{out}" }}

[connection_sets.s]
source = "{source}"
destination = "dst"

[project]
name = "{name}"
connection_set = "s"

[[project.tasks]]
source_entity = "people"
destination_entity = "people"
key = ["id"]
mappings = [{{ destination = "id", source = "id" }}]
"#,
            out = out.display(),
        );
        svc.apply_project_text(
            &tmp.path().join(format!("{name}.toml")),
            &text,
            tmp.path(),
            &EnvPolicy::default(),
        )
        .unwrap();
        svc.run(name, Trigger::Manual, &mut Quiet)
            .unwrap_err()
            .to_string()
    };
    let inline = format!(
        "[connections.src]\nplugin = \"{}\"\nconfig = {{ api_secret = \"{DECLARED}\" }}\n",
        testkit.display()
    );
    let e = run("inline", &inline, "src");
    assert!(
        e.contains("source connection `src`: option `api_secret` is a secret"),
        "{e}"
    );
    assert!(!e.contains(DECLARED), "{e}");
    let e = run("declared", "", "kit");
    assert!(!e.contains(DECLARED), "{e}");
    assert!(e.contains("login refused for [redacted]"), "{e}");
    let last = svc.store.executions(&Default::default()).unwrap()[0].id;
    let stored = svc.store.execution(last).unwrap().unwrap();
    let shown = serde_json::to_string(&stored).unwrap();
    assert!(!shown.contains(DECLARED), "{shown}");
    assert!(shown.contains("login refused for [redacted]"), "{shown}");
}

/// `weir run FILE` and `weir validate FILE` (no store): the echoed token read from
/// the environment is absent from what they print and log.
#[test]
fn the_cli_prints_no_echoed_token_for_a_project_file() {
    let echo = TestServer::start(|r| {
        let auth = r.header("authorization").unwrap_or("none").to_owned();
        Reply::new(400, format!("{{\"message\": \"you sent {auth}\"}}"))
    });
    let hook = TestServer::start(|_| Reply::new(200, "ok"));
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let file = tmp.path().join("p.toml");
    std::fs::write(&file, project("p", "src", &echo, &hook, &out)).unwrap();
    // The plugin's own log line carries the raw echo: only the log sink scrubs it.
    let kit = tmp.path().join("kit.toml");
    std::fs::write(&kit, kit_project("kit", &echo, &out)).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("--data-dir")
        .arg(tmp.path().join("data"))
        .args(["run", kit.to_str().unwrap()])
        .env("WEIR_ENV_ECHO_TOKEN", ENV_TOKEN)
        .env("WEIR_LOG", "info")
        .output()
        .unwrap();
    let shown = text(&o);
    assert!(shown.contains("http response"), "{shown}");
    assert!(!shown.contains(ENV_TOKEN), "{shown}");
    assert!(shown.contains("you sent Bearer [redacted]"), "{shown}");
    for command in ["run", "validate"] {
        let o = Command::new(env!("CARGO_BIN_EXE_weir"))
            .arg("--data-dir")
            .arg(tmp.path().join("data"))
            .args([command, file.to_str().unwrap()])
            .env("WEIR_ENV_ECHO_TOKEN", ENV_TOKEN)
            .env("WEIR_LOG", "debug")
            .output()
            .unwrap();
        let shown = text(&o);
        assert!(!o.status.success(), "{command}: {shown}");
        assert!(!shown.contains(ENV_TOKEN), "{command}: {shown}");
        assert!(
            shown.contains("you sent Bearer [redacted]"),
            "{command}: {shown}"
        );
    }
    assert!(
        echo.requests()
            .iter()
            .any(|r| r.header("authorization") == Some(&format!("Bearer {ENV_TOKEN}"))),
        "the token was sent"
    );
}

/// A secret written inline in a project file that is run directly — one of the
/// host's credential options (`auth.token`) or an option the plugin declares
/// secret (`api_secret`) — is refused by `weir run`, `weir validate` and `weir
/// preview` before any plugin call, naming the file and line, the connection and
/// the option, and saying how to pass it; the same token through the
/// allow-listed `token_env` runs.
#[test]
fn a_secret_written_inline_in_a_project_file_is_refused_and_token_env_runs() {
    let server = TestServer::start(|_| Reply::new(200, "ok"));
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let by_env = kit_project("inline", &server, &out);

    // Obeyed: the token from the allowed environment variable.
    let file = tmp.path().join("env.toml");
    std::fs::write(&file, &by_env).unwrap();
    let o = weir(&data, &["run", file.to_str().unwrap()], None);
    assert!(o.status.success(), "{}", text(&o));
    let sent = format!("Bearer {ENV_TOKEN}");
    assert!(
        server
            .requests()
            .iter()
            .any(|r| r.header("authorization") == Some(sent.as_str())),
        "the token from the environment was sent"
    );

    // Violated: the token (or a declared-secret option) written in `config`.
    let auth_line = "auth = { kind = \"bearer\", token_env = \"WEIR_ENV_ECHO_TOKEN\" }\n";
    let inline_token = by_env.replace(auth_line, "").replace(
        "config = { fetch_url",
        &format!("config = {{ \"auth.token\" = \"{ENV_TOKEN}\", fetch_url"),
    );
    let inline_declared = by_env.replace(
        "config = { fetch_url",
        &format!("config = {{ api_secret = \"{ENV_TOKEN}\", fetch_url"),
    );
    for (name, project_text, option, how) in [
        (
            "token.toml",
            inline_token,
            "auth.token",
            "token_env = \"WEIR_ENV_",
        ),
        (
            "declared.toml",
            inline_declared,
            "api_secret",
            "--secret api_secret=",
        ),
    ] {
        let file = tmp.path().join(name);
        std::fs::write(&file, &project_text).unwrap();
        let line = project_text
            .lines()
            .position(|l| l.starts_with("config = {"))
            .unwrap()
            + 1;
        let before = server.accepted();
        for command in ["run", "validate", "preview"] {
            let o = weir(&data, &[command, file.to_str().unwrap()], None);
            let shown = text(&o);
            assert!(!o.status.success(), "{command} {name}: {shown}");
            for wanted in [
                "secret-as-option".to_owned(),
                format!("source connection `src`: option `{option}` is a secret"),
                format!("{}:{line}:", file.display()),
                how.to_owned(),
            ] {
                assert!(
                    shown.contains(&wanted),
                    "{command} {name}: no {wanted:?} in {shown}"
                );
            }
            assert!(!shown.contains(ENV_TOKEN), "{command} {name}: {shown}");
        }
        assert_eq!(server.accepted(), before, "{name}: no plugin call sent it");
    }
}

/// Captures every formatted tracing line of this test process.
#[derive(Clone, Copy)]
struct Captured;

static CAPTURED: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        CAPTURED.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Keeps every checkpoint the engine hands over.
#[derive(Default)]
struct Checkpoints(Vec<weir_host::engine::Checkpoint>);

impl weir_host::engine::Recorder for Checkpoints {
    fn checkpoint(
        &mut self,
        cp: weir_host::engine::Checkpoint,
    ) -> Result<(), weir_host::engine::TaskStop> {
        self.0.push(cp);
        Ok(())
    }
}

/// An embedder: the library API (no store, no `weir` binary) under a plain
/// `tracing_subscriber::fmt()` subscriber writing every event at every level,
/// without `ScrubbingWriter`. Servers on 127.0.0.1 echo the bearer token (read
/// from the environment): in a 400 body (a plugin logs it, then fails its check)
/// and inside records (which fail as record errors quoting it). The token is in
/// none of the captured log lines, the returned error, the execution report and
/// its record errors, nor the checkpoints; the echoed texts did arrive, with the
/// marker in the token's place.
#[test]
fn an_embedder_with_a_plain_subscriber_never_sees_an_echoed_secret() {
    use weir_host::engine::{Engine, Quiet, RunOptions};
    use weir_host::project::{EnvPolicy, Project};

    const TOKEN: &str = "embedder-token-77c0e5d1b2a94f18-unique";
    const VAR: &str = "WEIR_ENV_EMBEDDER_TOKEN";
    let _ = tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(|| Captured)
            .finish(),
    );
    // SAFETY: set before any thread of this test reads the environment; no
    // other test of this binary reads this variable.
    unsafe { std::env::set_var(VAR, TOKEN) };
    let echoed = |r: &http_server::Received| {
        format!("you sent {}", r.header("authorization").unwrap_or("none"))
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let parse = |name: &str, text: &str| {
        Project::parse_with_env(
            &tmp.path().join(name),
            text,
            &Default::default(),
            &EnvPolicy::default(),
        )
        .unwrap()
    };
    let engine = Engine::new(common::runtime());

    // The echo test's REST project, reading the token from this test's variable
    // and declaring `note` an integer (a record quoting the token fails).
    let hook = TestServer::start(|_| Reply::new(200, "ok"));
    let rest_project = |server: &TestServer| {
        project("embedded-rest", "src", server, &hook, &out)
            .replace("WEIR_ENV_ECHO_TOKEN", VAR)
            .replace(
                "entities = \"contacts\"",
                "entities = \"contacts\"\nfields = \"id:integer,note:integer\"",
            )
    };

    // A server refusing with the token echoed in its 400 body: the plugin's log
    // line quotes it (testkit), and the returned error does (rest).
    let refusing =
        TestServer::start(move |r| Reply::new(400, format!("{{\"message\": \"{}\"}}", echoed(r))));
    let kit = kit_project("embedded-kit", &refusing, &out).replace("WEIR_ENV_ECHO_TOKEN", VAR);
    let e = engine
        .run(&parse("kit.toml", &kit), &mut Quiet)
        .unwrap_err()
        .to_string();
    assert!(!e.contains(TOKEN), "{e}");
    let e = engine
        .run(&parse("refused.toml", &rest_project(&refusing)), &mut Quiet)
        .unwrap_err()
        .to_string();
    assert!(!e.contains(TOKEN), "{e}");
    assert!(e.contains("you sent Bearer [redacted]"), "{e}");

    // Records quoting the token: record errors in the report and checkpoints.
    let records = TestServer::start(move |r| {
        Reply::new(
            200,
            format!(
                "[{{\"id\": 1, \"note\": 1}}, {{\"id\": 2, \"note\": \"{}\"}}]",
                echoed(r)
            ),
        )
    });
    let rest = rest_project(&records);
    let mut checkpoints = Checkpoints::default();
    let report = engine
        .execute(
            &parse("rest.toml", &rest),
            &RunOptions {
                capture: true,
                ..RunOptions::default()
            },
            &mut Quiet,
            &mut checkpoints,
        )
        .unwrap();
    let failures = &report.tasks[0].failures;
    assert_eq!(report.totals().failed, 1, "{report}");
    assert!(
        failures[0].message.contains("you sent Bearer [redacted]"),
        "{failures:?}"
    );
    let shown = format!("{report}\n{report:?}\n{:?}", checkpoints.0);
    assert!(!shown.contains(TOKEN), "{shown}");
    assert!(
        checkpoints.0.iter().any(|cp| cp
            .failures
            .iter()
            .any(|r| r.failure.message.contains("you sent Bearer [redacted]"))),
        "{:?}",
        checkpoints.0
    );
    assert!(
        records
            .requests()
            .iter()
            .chain(refusing.requests().iter())
            .all(|r| r.header("authorization") == Some(&format!("Bearer {TOKEN}"))),
        "the token was sent"
    );

    let logs = String::from_utf8_lossy(&CAPTURED.lock().unwrap()).into_owned();
    assert!(!logs.contains(TOKEN), "{logs}");
    // The plugin's log line with the refusing server's body arrived, scrubbed.
    assert!(
        logs.lines()
            .any(|l| l.contains("http response") && l.contains("you sent Bearer [redacted]")),
        "{logs}"
    );
}
