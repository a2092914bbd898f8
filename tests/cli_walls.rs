//! Smaller walls of an administrator's first hour (issue 20, item 10), each as the
//! administrator meets it: the `weir` binary, its exit code, stdout and stderr.

use std::path::Path;
use std::process::{Command, Output};

const KEY: &str = "correct horse battery staple";

/// `weir` in `dir` with its own data directory, as an administrator runs it: no
/// `WEIR_LOG`, so the default log level is what is seen.
fn weir(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .current_dir(dir)
        .env("WEIR_SECRET_KEY", KEY)
        .env_remove("WEIR_LOG")
        .env_remove("WEIR_DATA_DIR")
        .output()
        .expect("run weir")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn plugin_inspect_takes_a_bundled_plugins_name() {
    let tmp = tempfile::tempdir().unwrap();
    let out = weir(tmp.path(), &["plugin", "inspect", "rest"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("kind:         Connector"), "{stdout}");
    assert!(stdout.contains("name:         rest "), "{stdout}");
    // A name that is neither a file nor bundled is one error, said once.
    let out = weir(tmp.path(), &["plugin", "inspect", "no-such-plugin"]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert_eq!(stderr.matches("no-such-plugin").count(), 1, "{stderr}");
}

/// A connection whose check fails (the server is not there) is stored and marked as
/// needing fixing, the command exits 1 and says how to fix it, and the plugin's
/// refused HTTP request is not repeated as a WARN log line on stderr.
#[test]
fn connection_add_whose_check_fails_exits_1_and_keeps_it_as_needing_fixing() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::write(d.join("token.txt"), "wrong-token").unwrap();
    let out = weir(
        d,
        &[
            "connection",
            "add",
            "crm",
            "--plugin",
            "rest",
            "--http-host",
            "127.0.0.1:9",
            "--http-internal",
            "--config",
            "base_url=http://127.0.0.1:9/v1",
            "--config",
            "entities=contacts",
            "--config",
            "auth.kind=bearer",
            "--secret",
            "auth.token=@token.txt",
        ],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains("connection crm is stored, but its check failed")
            && stdout.contains("needs fixing")
            && stdout.contains("weir connection update-credentials crm"),
        "{stdout}"
    );
    assert!(
        !stderr.contains("WARN"),
        "no WARN lines by default:\n{stderr}"
    );

    let out = weir(d, &["connection", "list"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("crm") && l.contains("needs fixing")),
        "{stdout}"
    );

    // With WEIR_LOG the warnings are there for whoever asks.
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["connection", "check", "crm"])
        .current_dir(d)
        .env("WEIR_SECRET_KEY", KEY)
        .env("WEIR_LOG", "warn")
        .env_remove("WEIR_DATA_DIR")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("WARN"), "{}", text(&out).1);
}
