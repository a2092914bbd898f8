use std::path::{Path, PathBuf};

use super::*;

const SECRET: &str = "pa55-Wq8z-UNIQUE-secret-value-7f3e";

fn key(material: &str) -> SecretKey {
    SecretKey::from_material(material).unwrap()
}

/// The key a salted store with an all-zero salt seals with.
fn store_key(material: &str) -> secrets::StoreKey {
    key(material)
        .for_store(Derivation::Salted, &[0u8; secrets::SALT_LEN])
        .unwrap()
}

fn open(dir: &Path) -> Store {
    Store::open(dir, Some(key("the right key, long enough"))).unwrap()
}

fn connection(name: &str) -> StoredConnection {
    StoredConnection {
        name: name.to_string(),
        plugin: "csv".to_string(),
        config: vec![("path".to_string(), "data/in.csv".to_string())],
        secrets: vec![("password".to_string(), SECRET.to_string())],
        directory: Some(PathBuf::from("data")),
        http_hosts: vec!["api.example.com".to_string()],
        http_internal: false,
        state: ConnectionState::Unchecked,
        updated_at: 0,
    }
}

fn task(name: &str, read: u64, inserted: u64, cursor: &str) -> TaskState {
    TaskState {
        name: name.to_string(),
        read,
        inserted,
        updated: 1,
        unchanged: 4,
        failed: 2,
        skipped: 0,
        cursor: Some(cursor.to_string()),
        error: None,
    }
}

fn record_error(n: u64) -> StoredRecordError {
    StoredRecordError {
        task: "contacts".to_string(),
        stage: "map".to_string(),
        key: Some(format!("k{n}")),
        position: Some(format!("line {n}")),
        field: Some("email".to_string()),
        message: format!("bad email #{n}"),
        record: vec![("email".to_string(), serde_json::json!(format!("x{n}")))],
    }
}

fn staged(n: u64) -> StagedRecord {
    StagedRecord {
        task: "contacts".to_string(),
        key: Some(format!("k{n}")),
        record: vec![("n".to_string(), serde_json::json!(n))],
    }
}

fn new_exec(project: &str) -> NewExecution {
    NewExecution {
        project: project.to_string(),
        project_version: 1,
        trigger: Trigger::Manual,
        parent: None,
        rerun: None,
        tasks: vec!["contacts".to_string(), "companies".to_string()],
    }
}

/// Every file under `dir`, recursively.
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

// ---------------------------------------------------------------------------------------
// Connections

#[test]
fn connection_round_trip_and_listing_without_values() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let c = connection("crm");
    store.put_connection(&c).unwrap();
    store.put_connection(&connection("another")).unwrap();

    let back = store.connection("crm").unwrap().unwrap();
    assert!(back.updated_at > 0);
    assert_eq!(
        back,
        StoredConnection {
            updated_at: back.updated_at,
            ..c
        }
    );
    assert!(store.connection("nope").unwrap().is_none());

    let list = store.connections().unwrap();
    let names: Vec<&str> = list.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["another", "crm"]);
    assert_eq!(list[1].secret_names, ["password"]);
    let listed = serde_json::to_string(&list).unwrap();
    assert!(!listed.contains(SECRET), "{listed}");
    // Debug of a connection hides the values too.
    assert!(!format!("{back:?}").contains(SECRET));

    store
        .set_connection_state(
            "crm",
            ConnectionState::NeedsFixing {
                reason: "401".to_string(),
            },
        )
        .unwrap();
    let fixed = store.connection("crm").unwrap().unwrap();
    assert_eq!(
        fixed.state,
        ConnectionState::NeedsFixing {
            reason: "401".to_string()
        }
    );
    assert_eq!(fixed.secrets, back.secrets);
    assert!(matches!(
        store.set_connection_state("nope", ConnectionState::Connected),
        Err(StoreError::NotFound { .. })
    ));

    assert!(store.delete_connection("crm").unwrap());
    assert!(!store.delete_connection("crm").unwrap());
    assert!(store.connection("crm").unwrap().is_none());
}

#[test]
fn secrets_need_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), None).unwrap();
    assert!(matches!(
        store.put_connection(&connection("crm")),
        Err(StoreError::NoSecretKey)
    ));
    // Without secrets, no key is needed.
    let plain = StoredConnection {
        secrets: vec![],
        ..connection("plain")
    };
    store.put_connection(&plain).unwrap();
    assert!(store.connection("plain").unwrap().is_some());
}

#[test]
fn wrong_key_is_a_decrypt_error_naming_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        store.put_connection(&connection("crm")).unwrap();
        store.flush().unwrap();
    }
    let store = Store::open(dir.path(), Some(key("another key, also long"))).unwrap();
    let err = store.connection("crm").unwrap_err();
    assert!(
        matches!(&err, StoreError::Decrypt { connection } if connection == "crm"),
        "{err:?}"
    );
    assert!(!err.to_string().contains(SECRET));
    // Listing needs no decryption.
    assert_eq!(store.connections().unwrap().len(), 1);
    drop(store);
    let store = Store::open(dir.path(), None).unwrap();
    assert!(matches!(
        store.connection("crm"),
        Err(StoreError::NoSecretKey)
    ));
}

#[test]
fn secret_bytes_appear_nowhere_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        store.put_connection(&connection("crm")).unwrap();
        // Rewrite it a few times, so old copies in sled's log would show too.
        for _ in 0..3 {
            store.put_connection(&connection("crm")).unwrap();
        }
        store.flush().unwrap();
        assert_eq!(
            store.connection("crm").unwrap().unwrap().secrets[0].1,
            SECRET
        );
    }
    let mut all = Vec::new();
    files(dir.path(), &mut all);
    assert!(!all.is_empty());
    let mut total = 0;
    for f in &all {
        let bytes = std::fs::read(f).unwrap();
        total += bytes.len();
        assert!(
            !contains(&bytes, SECRET.as_bytes()),
            "secret found in {}",
            f.display()
        );
    }
    // Control: the non-secret option is on disk in clear, so the search did see the data.
    let found_plain = all
        .iter()
        .any(|f| contains(&std::fs::read(f).unwrap(), b"data/in.csv"));
    assert!(found_plain, "searched {total} bytes in {} files", all.len());
}

#[test]
fn a_ciphertext_moved_to_another_secret_does_not_decrypt() {
    let k = store_key("the right key, long enough");
    let sealed = secrets::seal(&k, "crm", "password", SECRET).unwrap();
    assert_eq!(
        secrets::open(&k, "crm", "password", &sealed).unwrap(),
        SECRET
    );
    assert!(secrets::open(&k, "crm", "token", &sealed).is_err());
    assert!(secrets::open(&k, "erp", "password", &sealed).is_err());
    // A fresh nonce each time: the same value never encrypts the same way twice.
    assert_ne!(
        sealed,
        secrets::seal(&k, "crm", "password", SECRET).unwrap()
    );
}

#[test]
fn key_material() {
    assert!(matches!(
        SecretKey::from_material("short"),
        Err(StoreError::WeakKey { .. })
    ));
    let k = SecretKey::from_material("sixteen chars ok").unwrap();
    assert_eq!(format!("{k:?}"), "SecretKey(..)");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("key");
    std::fs::write(&file, "  a key file's material  \n").unwrap();
    let salt = [0u8; secrets::SALT_LEN];
    let from_file = SecretKey::from_env_or_file(Some(&file))
        .unwrap()
        .unwrap()
        .for_store(Derivation::Salted, &salt)
        .unwrap();
    // Trimmed: the same key as the material without the whitespace.
    let direct = store_key("a key file's material");
    let sealed = secrets::seal(&from_file, "c", "s", "v").unwrap();
    assert_eq!(secrets::open(&direct, "c", "s", &sealed).unwrap(), "v");

    std::fs::write(&file, "too short\n").unwrap();
    let err = SecretKey::from_env_or_file(Some(&file)).unwrap_err();
    assert!(matches!(err, StoreError::WeakKey { .. }));
    assert!(!err.to_string().contains("too short"));
    assert!(matches!(
        SecretKey::from_env_or_file(Some(&dir.path().join("missing"))),
        Err(StoreError::KeyFile { .. })
    ));
}

// ---------------------------------------------------------------------------------------
// Envelope

#[test]
fn envelope_versions() {
    let bytes = encode(&LogLine {
        line: "x".to_string(),
    })
    .unwrap();
    assert_eq!(bytes, br#"{"v":1,"line":"x"}"#);
    assert_eq!(encode(&Marker {}).unwrap(), br#"{"v":1}"#);
    let _: Marker = decode(|| "k".to_string(), br#"{"v":1}"#).unwrap();
    let l: LogLine = decode(|| "k".to_string(), br#"{ "line": "y", "v": 1 }"#).unwrap();
    assert_eq!(l.line, "y");
    assert!(matches!(
        decode::<LogLine>(|| "k".to_string(), br#"{"v":2,"line":"x"}"#),
        Err(StoreError::Format {
            found_version: 2,
            ..
        })
    ));
    assert!(matches!(
        decode::<LogLine>(|| "k".to_string(), br#"{"line":"x"}"#),
        Err(StoreError::Corrupt { .. })
    ));
    let err = decode::<LogLine>(|| "exec_log/7/0".to_string(), b"\xff garbage").unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt { key, .. } if key == "exec_log/7/0"),
        "{err:?}"
    );
}

#[test]
fn corrupt_and_future_values_are_errors_naming_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let id = store.begin_execution(new_exec("p")).unwrap();
    store
        .executions
        .insert(id_key(id), &b"{\"v\":1,\"id\":"[..])
        .unwrap();
    let err = store.execution(id).unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt { key, .. } if *key == format!("executions/{id}")),
        "{err:?}"
    );
    store
        .connections
        .insert("future", &br#"{"v":9,"whatever":true}"#[..])
        .unwrap();
    assert!(matches!(
        store.connection("future"),
        Err(StoreError::Format {
            found_version: 9,
            ..
        })
    ));
}

// ---------------------------------------------------------------------------------------
// Projects

#[test]
fn project_versions() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let base = Path::new("/srv/p");
    assert_eq!(
        store.apply_project("p", "a = 1", base).unwrap(),
        AppliedVersion {
            version: 1,
            created: true
        }
    );
    assert_eq!(
        store.apply_project("p", "a = 1", base).unwrap(),
        AppliedVersion {
            version: 1,
            created: false
        }
    );
    assert_eq!(
        store.apply_project("p", "a = 2", base).unwrap(),
        AppliedVersion {
            version: 2,
            created: true
        }
    );
    // Same text, other directory: a new version (relative paths now mean other files).
    assert_eq!(
        store
            .apply_project("p", "a = 2", Path::new("/srv/q"))
            .unwrap(),
        AppliedVersion {
            version: 3,
            created: true
        }
    );
    assert_eq!(store.project("p", Some(1)).unwrap().unwrap().text, "a = 1");
    let latest = store.project("p", None).unwrap().unwrap();
    assert_eq!((latest.version, latest.text.as_str()), (3, "a = 2"));
    assert_eq!(latest.base_dir, Path::new("/srv/q"));
    assert!(store.project("p", Some(4)).unwrap().is_none());
    assert!(store.project("nope", None).unwrap().is_none());

    store.apply_project("o", "b", base).unwrap();
    let list = store.projects().unwrap();
    assert_eq!(
        list.iter()
            .map(|p| (p.name.as_str(), p.latest_version))
            .collect::<Vec<_>>(),
        [("o", 1), ("p", 3)]
    );

    assert!(store.delete_project("p").unwrap());
    assert!(!store.delete_project("p").unwrap());
    assert!(store.project("p", Some(1)).unwrap().is_none());
    assert!(store.project("p", None).unwrap().is_none());
    assert_eq!(store.projects().unwrap().len(), 1);
    // Re-applied after deletion: numbering continues, so old executions' versions stay unique.
    assert_eq!(
        store.apply_project("p", "a = 1", base).unwrap(),
        AppliedVersion {
            version: 4,
            created: true
        }
    );
    assert!(store.project("p", Some(1)).unwrap().is_none());
    assert_eq!(store.project("p", None).unwrap().unwrap().version, 4);

    assert!(matches!(
        store.apply_project("a\0b", "x", base),
        Err(StoreError::Invalid { .. })
    ));
}

// ---------------------------------------------------------------------------------------
// Executions

#[test]
fn execution_lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let id = store.begin_execution(new_exec("p")).unwrap();
    assert!(id > 0);
    let e = store.execution(id).unwrap().unwrap();
    assert_eq!(e.status, ExecStatus::Running);
    assert_eq!(e.tasks.len(), 2);
    assert_eq!(e.tasks[0], TaskState::new("contacts"));

    store
        .checkpoint(
            id,
            StoredCheckpoint {
                tasks: vec![task("contacts", 10, 5, "c1"), task("companies", 3, 3, "d1")],
                log: vec!["started".to_string()],
                record_errors: (0..3).map(record_error).collect(),
                staged: (0..4).map(staged).collect(),
            },
        )
        .unwrap();
    store
        .checkpoint(
            id,
            StoredCheckpoint {
                // Only one task named: the other keeps its state.
                tasks: vec![task("contacts", 20, 12, "c2")],
                log: vec!["page 2".to_string()],
                record_errors: (3..5).map(record_error).collect(),
                staged: (4..6).map(staged).collect(),
            },
        )
        .unwrap();

    let e = store.execution(id).unwrap().unwrap();
    assert_eq!(e.tasks[0], task("contacts", 20, 12, "c2"));
    assert_eq!(e.tasks[1], task("companies", 3, 3, "d1"));
    assert_eq!(e.log, ["started", "page 2"]);
    assert_eq!((e.record_errors, e.staged), (5, 6));
    assert!(e.updated_at >= e.started_at);

    let (page, total) = store.record_errors(id, 0, 2).unwrap();
    assert_eq!(total, 5);
    assert_eq!(page, vec![record_error(0), record_error(1)]);
    let (page, _) = store.record_errors(id, 3, 10).unwrap();
    assert_eq!(page, vec![record_error(3), record_error(4)]);
    let (page, _) = store.record_errors(id, 0, 0).unwrap();
    assert_eq!(page.len(), 5);
    assert!(store.record_errors(id, 5, 10).unwrap().0.is_empty());
    let (page, total) = store.staged(id, 2, 3).unwrap();
    assert_eq!(total, 6);
    assert_eq!(page, vec![staged(2), staged(3), staged(4)]);

    let summary = &store.executions(&ExecutionFilter::default()).unwrap()[0];
    assert_eq!(
        (
            summary.read,
            summary.inserted,
            summary.updated,
            summary.unchanged,
            summary.failed
        ),
        (23, 15, 2, 8, 4)
    );

    store
        .finish_execution(
            id,
            ExecStatus::Warning,
            Some("5 records failed".to_string()),
        )
        .unwrap();
    let e = store.execution(id).unwrap().unwrap();
    assert_eq!(e.status, ExecStatus::Warning);
    assert_eq!(e.error.as_deref(), Some("5 records failed"));
    assert!(e.finished_at.is_some());
    // A finished execution no longer changes.
    assert!(matches!(
        store.checkpoint(id, StoredCheckpoint::default()),
        Err(StoreError::NotRunning { .. })
    ));
    assert!(matches!(
        store.finish_execution(id, ExecStatus::Completed, None),
        Err(StoreError::NotRunning { .. })
    ));
    assert!(matches!(
        store.checkpoint(id + 1000, StoredCheckpoint::default()),
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.record_errors(id + 1000, 0, 1),
        Err(StoreError::NotFound { .. })
    ));
    let last = store.last_execution("p").unwrap().unwrap();
    assert_eq!(last.id, id);
    assert!(store.last_execution("other").unwrap().is_none());
}

#[test]
fn listing_filters_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut ids = Vec::new();
    for i in 0..9 {
        // "p" and "p2": a name that is a prefix of another must not leak into its listing.
        let project = ["p", "p2", "q"][i % 3];
        let id = store.begin_execution(new_exec(project)).unwrap();
        let status = if i % 2 == 0 {
            ExecStatus::Completed
        } else {
            ExecStatus::Error
        };
        if i != 8 {
            store.finish_execution(id, status, None).unwrap();
        }
        ids.push(id);
    }
    let list = |f: ExecutionFilter| -> Vec<ExecutionId> {
        store.executions(&f).unwrap().iter().map(|s| s.id).collect()
    };
    let all = list(ExecutionFilter::default());
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(all, newest_first);

    let p = list(ExecutionFilter {
        project: Some("p".to_string()),
        ..Default::default()
    });
    assert_eq!(p, [ids[6], ids[3], ids[0]]);
    let p2_done = list(ExecutionFilter {
        project: Some("p2".to_string()),
        status: Some(ExecStatus::Completed),
        ..Default::default()
    });
    assert_eq!(p2_done, [ids[4]]);
    let running = list(ExecutionFilter {
        status: Some(ExecStatus::Running),
        ..Default::default()
    });
    assert_eq!(running, [ids[8]]);
    let limited = list(ExecutionFilter {
        limit: 4,
        ..Default::default()
    });
    assert_eq!(limited, newest_first[..4]);
    let limited_project = list(ExecutionFilter {
        project: Some("q".to_string()),
        limit: 2,
        ..Default::default()
    });
    assert_eq!(limited_project, [ids[8], ids[5]]);

    // since: everything started at or after the 5th execution's start.
    let fifth = store.execution(ids[4]).unwrap().unwrap().started_at;
    let since = list(ExecutionFilter {
        since: Some(fifth),
        ..Default::default()
    });
    assert!(since.contains(&ids[4]) && since.contains(&ids[8]));
    let future = list(ExecutionFilter {
        since: Some(now_millis() + 60_000),
        ..Default::default()
    });
    assert!(future.is_empty());
    assert!(
        list(ExecutionFilter {
            project: Some("none".to_string()),
            ..Default::default()
        })
        .is_empty()
    );
}

#[test]
fn crash_recovery_marks_running_executions_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let (crashed, done) = {
        let store = open(dir.path());
        let done = store.begin_execution(new_exec("p")).unwrap();
        store
            .checkpoint(
                done,
                StoredCheckpoint {
                    tasks: vec![task("contacts", 1, 1, "d")],
                    ..Default::default()
                },
            )
            .unwrap();
        store
            .finish_execution(done, ExecStatus::Completed, None)
            .unwrap();
        let crashed = store.begin_execution(new_exec("p")).unwrap();
        store
            .checkpoint(
                crashed,
                StoredCheckpoint {
                    tasks: vec![task("contacts", 40, 30, "cursor-40")],
                    log: vec!["page 1".to_string()],
                    record_errors: vec![record_error(0)],
                    ..Default::default()
                },
            )
            .unwrap();
        assert!(store.interrupted_on_open().is_empty());
        // Dropped without finishing: as if the process had died.
        (crashed, done)
    };
    let done_before = {
        let store = open(dir.path());
        assert_eq!(store.interrupted_on_open(), [crashed]);
        let e = store.execution(crashed).unwrap().unwrap();
        assert_eq!(e.status, ExecStatus::Error);
        assert!(e.error.as_deref().unwrap().contains("interrupted"));
        // The flag, not the wording, is what makes the next run resume.
        assert!(e.interrupted);
        assert!(!store.execution(done).unwrap().unwrap().interrupted);
        assert!(e.finished_at.is_some());
        assert_eq!(e.tasks[0], task("contacts", 40, 30, "cursor-40"));
        assert_eq!(e.log, ["page 1", INTERRUPTED]);
        assert_eq!(e.record_errors, 1);
        let summary = store
            .executions(&ExecutionFilter {
                project: Some("p".to_string()),
                limit: 1,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(summary[0].status, ExecStatus::Error);
        let d = store.execution(done).unwrap().unwrap();
        assert_eq!(d.status, ExecStatus::Completed);
        assert!(d.error.is_none());
        d
    };
    // Recovered once: the next open finds nothing to do and changes nothing.
    let store = open(dir.path());
    assert!(store.interrupted_on_open().is_empty());
    assert_eq!(store.execution(done).unwrap().unwrap(), done_before);
    // Ids keep growing across restarts.
    assert!(store.begin_execution(new_exec("p")).unwrap() > crashed);
}

#[test]
fn a_second_open_of_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _store = open(dir.path());
    // fs2 locks are per open file description, so a second open in-process is refused too.
    assert!(matches!(
        Store::open(dir.path(), None),
        Err(StoreError::Locked { .. })
    ));
}

#[test]
fn limits_count_but_do_not_store() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path());
    store.set_limits(StoreLimits {
        max_staged_per_execution: 5,
        max_log_lines: 2,
        max_record_errors: 3,
        ..StoreLimits::default()
    });
    let id = store.begin_execution(new_exec("p")).unwrap();
    for round in 0..2 {
        store
            .checkpoint(
                id,
                StoredCheckpoint {
                    tasks: vec![],
                    log: vec![format!("a{round}"), format!("b{round}")],
                    record_errors: (0..2).map(record_error).collect(),
                    staged: (round * 4..round * 4 + 4).map(staged).collect(),
                },
            )
            .unwrap();
    }
    let e = store.execution(id).unwrap().unwrap();
    assert_eq!((e.staged, e.staged_dropped), (8, 3));
    assert_eq!((e.record_errors, e.record_errors_dropped), (4, 1));
    assert_eq!((e.log.len() as u64, e.log_dropped), (2, 2));
    let (page, total) = store.staged(id, 0, 0).unwrap();
    assert_eq!(total, 5);
    assert_eq!(page, (0..5).map(staged).collect::<Vec<_>>());
    assert_eq!(store.record_errors(id, 0, 0).unwrap().1, 3);
}

/// Each record error is bounded where it enters the host, but many of them are
/// not: past `max_record_error_bytes` they are counted, not stored, so the store
/// grows by a stated bound per execution whatever the count.
#[test]
fn record_errors_past_the_byte_budget_are_counted_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path());
    store.set_limits(StoreLimits {
        max_record_error_bytes: 100_000,
        ..StoreLimits::default()
    });
    let id = store.begin_execution(new_exec("p")).unwrap();
    let big = |n: u64| StoredRecordError {
        message: "m".repeat(8 << 10),
        ..record_error(n)
    };
    for round in 0..3 {
        store
            .checkpoint(
                id,
                StoredCheckpoint {
                    tasks: vec![],
                    log: vec![],
                    record_errors: (round * 10..round * 10 + 10).map(big).collect(),
                    staged: vec![],
                },
            )
            .unwrap();
    }
    let e = store.execution(id).unwrap().unwrap();
    // 100,000 bytes hold 12 errors of ~8.2 KiB each; all 30 are counted.
    assert_eq!(e.record_errors, 30);
    assert_eq!(e.record_errors - e.record_errors_dropped, 12, "{e:?}");
    assert_eq!(store.record_errors(id, 0, 0).unwrap().1, 12);
}

#[test]
fn prune_by_age_and_keep_last_never_running() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut ids = Vec::new();
    for project in ["a", "b"] {
        for _ in 0..4 {
            let id = store.begin_execution(new_exec(project)).unwrap();
            store
                .checkpoint(
                    id,
                    StoredCheckpoint {
                        log: vec!["x".to_string()],
                        record_errors: vec![record_error(0)],
                        staged: vec![staged(0)],
                        ..Default::default()
                    },
                )
                .unwrap();
            store
                .finish_execution(id, ExecStatus::Completed, None)
                .unwrap();
            ids.push(id);
        }
    }
    let running_a = store.begin_execution(new_exec("a")).unwrap();
    let now = now_millis();

    // Nothing is 45 days old yet.
    assert_eq!(store.prune(&Retention::default(), now).unwrap(), 0);

    // keep_last 2 per project: "a" keeps the running one and its newest finished one.
    let n = store
        .prune(
            &Retention {
                max_age_days: None,
                keep_last: Some(2),
            },
            now,
        )
        .unwrap();
    assert_eq!(n, 3 + 2);
    let left: Vec<ExecutionId> = store
        .executions(&ExecutionFilter::default())
        .unwrap()
        .iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(left, [running_a, ids[7], ids[6], ids[3]]);
    // Their errors, staging and log went with them.
    assert!(store.execution(ids[0]).unwrap().is_none());
    assert_eq!(store.exec_errors.len(), 3);
    assert_eq!(store.exec_staged.len(), 3);
    assert_eq!(store.exec_log.len(), 3);

    // By age: 100 days later everything finished goes, the running one stays.
    let later = now + 100 * MILLIS_PER_DAY;
    let n = store.prune(&Retention::default(), later).unwrap();
    assert_eq!(n, 3);
    let left = store.executions(&ExecutionFilter::default()).unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, running_a);
    assert!(store.exec_errors.is_empty() && store.exec_staged.is_empty());
    // Keep-last 0 still never touches a running execution.
    let n = store
        .prune(
            &Retention {
                max_age_days: Some(0),
                keep_last: Some(0),
            },
            later,
        )
        .unwrap();
    assert_eq!(n, 0);
    assert!(store.execution(running_a).unwrap().is_some());
}

/// The rule administrators were surprised by: `--keep-last 3 --days 30` on 12 executions
/// of today deleted 9. An execution is kept if *any* rule given keeps it.
#[test]
fn prune_keeps_what_any_rule_keeps() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let ids: Vec<ExecutionId> = (0..12)
        .map(|_| {
            let id = store.begin_execution(new_exec("p")).unwrap();
            store
                .finish_execution(id, ExecStatus::Completed, None)
                .unwrap();
            id
        })
        .collect();
    let now = now_millis();
    let rule = |keep_last: Option<usize>, max_age_days: Option<u32>| Retention {
        max_age_days,
        keep_last,
    };
    let would = |r: &Retention, at: i64| -> Vec<ExecutionId> {
        store
            .prune_candidates(r, at)
            .unwrap()
            .iter()
            .map(|s| s.id)
            .collect()
    };
    // All 12 are younger than 30 days: the age rule keeps them, whatever keep-last says.
    assert_eq!(
        would(&rule(Some(3), Some(30)), now),
        Vec::<ExecutionId>::new()
    );
    assert_eq!(would(&rule(None, Some(30)), now), Vec::<ExecutionId>::new());
    // Keep-last alone keeps the newest 3; the 9 oldest would go, oldest first.
    assert_eq!(would(&rule(Some(3), None), now), ids[..9]);
    // 40 days later the age rule keeps none, so keep-last decides.
    let later = now + 40 * MILLIS_PER_DAY;
    assert_eq!(would(&rule(Some(3), Some(30)), later), ids[..9]);
    assert_eq!(would(&rule(None, Some(30)), later), ids);
    // No rule: nothing goes.
    assert_eq!(would(&rule(None, None), later), Vec::<ExecutionId>::new());
    // A dry run deleted nothing; the real prune deletes exactly what it named.
    assert_eq!(
        store.executions(&ExecutionFilter::default()).unwrap().len(),
        12
    );
    assert_eq!(store.prune(&rule(Some(3), Some(30)), now).unwrap(), 0);
    assert_eq!(store.prune(&rule(Some(3), Some(30)), later).unwrap(), 9);
    let left: Vec<ExecutionId> = store
        .executions(&ExecutionFilter::default())
        .unwrap()
        .iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(left, [ids[11], ids[10], ids[9]]);
    assert_eq!(
        rule(Some(3), Some(30)).to_string(),
        "keep an execution if it is among the newest 3 of its project or younger than 30 days"
    );
}

/// A data directory removed under a running store (its parent deleted): the
/// next checkpoint's error names the directory, not just "No such file".
#[test]
fn an_io_error_on_a_vanished_data_directory_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("parent").join("store");
    let store = open(&data);
    let id = store.begin_execution(new_exec("p")).unwrap();
    std::fs::remove_dir_all(dir.path().join("parent")).unwrap();
    let e = store
        .checkpoint(id, StoredCheckpoint::default())
        .unwrap_err();
    let text = e.to_string();
    assert!(
        text.starts_with("store I/O error on the data directory ")
            && text.contains(&data.display().to_string())
            && text.contains("No such file or directory"),
        "{text}"
    );
}

/// Seals `value` the way weir sealed secrets before salted keys: the key is
/// SHA-256 of the material; and writes the connection as that weir did, with no
/// derivation recorded in the store.
fn write_legacy_store(dir: &Path, material: &str, value: &str) {
    use sha2::Digest as _;
    let db = sled::open(dir.join("db")).unwrap();
    let legacy = SecretKey::from_material(material)
        .unwrap()
        .for_store(Derivation::LegacySha256, &[])
        .unwrap();
    // The legacy key really is SHA-256 of the material (the old code's formula).
    let direct = sha2::Sha256::digest(material.as_bytes());
    let sealed = secrets::seal(&legacy, "crm", "password", value).unwrap();
    let mut by_hand = sealed.clone();
    let (nonce, _) = sealed.split_at(12);
    {
        use chacha20poly1305::aead::{Aead, KeyInit, Payload};
        let cipher =
            chacha20poly1305::ChaCha20Poly1305::new(chacha20poly1305::Key::from_slice(&direct));
        let mut aad = b"weir-secret\0crm\0".to_vec();
        aad.extend_from_slice(b"password");
        let ct = cipher
            .encrypt(
                chacha20poly1305::Nonce::from_slice(nonce),
                Payload {
                    msg: value.as_bytes(),
                    aad: &aad,
                },
            )
            .unwrap();
        by_hand.truncate(12);
        by_hand.extend_from_slice(&ct);
    }
    assert_eq!(sealed, by_hand, "the legacy derivation is the old formula");
    let rest = ConnectionAtRest {
        name: "crm".into(),
        plugin: "csv".into(),
        config: Vec::new(),
        secrets: vec![("password".into(), hex::encode(&sealed))],
        directory: None,
        http_hosts: Vec::new(),
        http_internal: false,
        state: ConnectionState::Unchecked,
        updated_at: 1,
    };
    db.open_tree("connections")
        .unwrap()
        .insert("crm", encode(&rest).unwrap())
        .unwrap();
    db.flush().unwrap();
}

#[test]
fn a_store_sealed_with_the_old_unsalted_key_still_opens_and_is_resealed_with_a_salt() {
    let dir = tempfile::tempdir().unwrap();
    let material = "an old passphrase, long enough";
    write_legacy_store(dir.path(), material, SECRET);
    // Without a key, or with a wrong one: nothing changes, the old derivation stays.
    for wrong in [None, Some(key("a wrong passphrase, long"))] {
        let store = Store::open(dir.path(), wrong.clone()).unwrap();
        assert_eq!(store.key_derivation(), Derivation::LegacySha256);
        assert!(store.connection("crm").is_err());
    }
    let sealed_before = {
        let db = sled::open(dir.path().join("db")).unwrap();
        db.open_tree("connections")
            .unwrap()
            .get("crm")
            .unwrap()
            .unwrap()
            .to_vec()
    };
    {
        let store = Store::open(dir.path(), Some(key(material))).unwrap();
        assert_eq!(
            store.key_derivation(),
            Derivation::Salted,
            "re-sealed on open"
        );
        let c = store.connection("crm").unwrap().unwrap();
        assert_eq!(
            c.secrets,
            vec![("password".to_string(), SECRET.to_string())]
        );
        store.put_connection(&connection("erp")).unwrap();
        let after = store.connections.get("crm").unwrap().unwrap().to_vec();
        assert_ne!(after, sealed_before, "sealed anew");
        // The old key no longer opens it; the salt is the store's own.
        let rest: ConnectionAtRest = decode(|| "crm".into(), &after).unwrap();
        let sealed = hex::decode(&rest.secrets[0].1).unwrap();
        let legacy = key(material)
            .for_store(Derivation::LegacySha256, &[])
            .unwrap();
        assert!(secrets::open(&legacy, "crm", "password", &sealed).is_err());
        assert_eq!(
            store.db.get(META_SALT).unwrap().unwrap().len(),
            secrets::SALT_LEN
        );
    }
    let store = Store::open(dir.path(), Some(key(material))).unwrap();
    assert_eq!(store.key_derivation(), Derivation::Salted, "recorded");
    assert_eq!(
        store.connection("crm").unwrap().unwrap().secrets[0].1,
        SECRET
    );
    assert_eq!(
        store.connection("erp").unwrap().unwrap().secrets[0].1,
        SECRET
    );
}

#[test]
fn a_new_store_salts_its_passphrase_and_takes_a_32_byte_key_as_is() {
    let material = "the same passphrase in two stores";
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let salt_of = |dir: &Path| {
        let store = Store::open(dir, Some(key(material))).unwrap();
        assert_eq!(store.key_derivation(), Derivation::Salted);
        store.put_connection(&connection("crm")).unwrap();
        let salt = store.db.get(META_SALT).unwrap().unwrap().to_vec();
        let sealed = store.connections.get("crm").unwrap().unwrap().to_vec();
        (salt, sealed)
    };
    let (salt_a, at_rest_a) = salt_of(a.path());
    let (salt_b, _) = salt_of(b.path());
    assert_eq!(salt_a.len(), secrets::SALT_LEN);
    assert_ne!(salt_a, salt_b, "each store its own salt");
    // The key is not SHA-256 of the passphrase (nor the same in both stores).
    let rest: ConnectionAtRest = decode(|| "crm".into(), &at_rest_a).unwrap();
    let sealed = hex::decode(&rest.secrets[0].1).unwrap();
    let legacy = key(material)
        .for_store(Derivation::LegacySha256, &[])
        .unwrap();
    assert!(secrets::open(&legacy, "crm", "password", &sealed).is_err());
    let other_salt = key(material)
        .for_store(Derivation::Salted, &salt_b)
        .unwrap();
    assert!(secrets::open(&other_salt, "crm", "password", &sealed).is_err());
    let right = key(material)
        .for_store(Derivation::Salted, &salt_a)
        .unwrap();
    assert_eq!(
        secrets::open(&right, "crm", "password", &sealed).unwrap(),
        SECRET
    );
    // Reopened: the same salt, the secret readable.
    let store = Store::open(a.path(), Some(key(material))).unwrap();
    assert_eq!(
        store.connection("crm").unwrap().unwrap().secrets[0].1,
        SECRET
    );

    // 64 hex digits or base64 of 32 bytes: used as the key itself.
    let hex_key = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    let raw = SecretKey::from_material(hex_key).unwrap();
    assert!(raw.is_raw_key());
    let k = raw.for_store(Derivation::Salted, &salt_a).unwrap();
    let b64 = SecretKey::from_material("ABEiM0RVZneImaq7zN3u/wARIjNEVWZ3iJmqu8zd7v8=").unwrap();
    assert!(b64.is_raw_key());
    let sealed = secrets::seal(&k, "c", "s", "v").unwrap();
    let same = b64.for_store(Derivation::Salted, &salt_b).unwrap();
    assert_eq!(
        secrets::open(&same, "c", "s", &sealed).unwrap(),
        "v",
        "no salt for a key"
    );
    assert!(!key(material).is_raw_key());
}

fn installed(name: &str, version: &str) -> InstalledPlugin {
    InstalledPlugin {
        name: name.into(),
        version: version.into(),
        kind: "connector".into(),
        sha256: "00".repeat(32),
        path: PathBuf::from(format!("/plugins/{name}-{version}.wasm")),
        installed_at: 1,
    }
}

#[test]
fn the_highest_plugin_version_is_a_release_above_its_pre_releases() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // Installed in an order where the last one is not the highest.
    for v in ["1.0.0", "0.9.0", "1.0.0-rc1", "1.0.0-rc.2", "0.10.0"] {
        store.put_plugin(&installed("items", v)).unwrap();
    }
    store.put_plugin(&installed("other", "2.0.0")).unwrap();
    let highest = store.plugin("items", None).unwrap().unwrap();
    assert_eq!(highest.version, "1.0.0");
    // A pin names the exact installed version, pre-releases included.
    let pinned = store.plugin("items", Some("1.0.0-rc1")).unwrap().unwrap();
    assert_eq!(pinned.version, "1.0.0-rc1");
    assert_eq!(store.plugin("items", Some("1.0")).unwrap(), None);
    // Without the release, the newest pre-release is the highest; 0.10 is above 0.9.
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for v in ["0.10.0", "1.0.0-rc.2", "0.9.0", "1.0.0-rc.10"] {
        store.put_plugin(&installed("items", v)).unwrap();
    }
    assert_eq!(
        store.plugin("items", None).unwrap().unwrap().version,
        "1.0.0-rc.10"
    );
}

#[test]
fn a_plugin_version_that_is_not_semver_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for v in ["1.0", "v1.2.3", "latest"] {
        let e = store.put_plugin(&installed("items", v)).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains(&format!("{v:?}")) && text.contains("not a semantic version"),
            "{text}"
        );
    }
    assert!(store.plugins().unwrap().is_empty());
}

#[test]
fn a_rerun_records_which_records_it_sent_and_older_records_read_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let parent = store.begin_execution(new_exec("p")).unwrap();
    let mut failed_only = new_exec("p");
    failed_only.trigger = Trigger::Rerun;
    failed_only.parent = Some(parent);
    failed_only.rerun = Some(RerunKind::FailedOnly);
    let id = store.begin_execution(failed_only).unwrap();
    let e = store.execution(id).unwrap().unwrap();
    assert_eq!(
        (e.trigger, e.parent, e.rerun),
        (Trigger::Rerun, Some(parent), Some(RerunKind::FailedOnly))
    );
    let all = ExecutionFilter {
        project: None,
        status: None,
        since: None,
        until: None,
        limit: 0,
    };
    let listed = store.executions(&all).unwrap();
    assert_eq!(
        listed.iter().find(|s| s.id == id).unwrap().rerun,
        Some(RerunKind::FailedOnly)
    );
    assert_eq!(listed.iter().find(|s| s.id == parent).unwrap().rerun, None);

    // A record written before the kind existed: no field, read as unknown.
    let raw = store.executions.get(id_key(id)).unwrap().unwrap();
    let mut v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(v["rerun"], "failed_only", "{v}");
    v.as_object_mut().unwrap().remove("rerun");
    store
        .executions
        .insert(id_key(id), serde_json::to_vec(&v).unwrap())
        .unwrap();
    assert_eq!(store.execution(id).unwrap().unwrap().rerun, None);
}

#[test]
fn a_dry_run_is_marked_as_one_and_older_records_read_as_not_dry() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let real = store.begin_execution(new_exec("p")).unwrap();
    let dry = store.begin_dry_run(new_exec("p")).unwrap();
    assert!(store.execution(dry).unwrap().unwrap().dry_run);
    assert!(!store.execution(real).unwrap().unwrap().dry_run);
    let listed = store.executions(&ExecutionFilter::default()).unwrap();
    assert!(listed.iter().find(|s| s.id == dry).unwrap().dry_run);
    assert!(!listed.iter().find(|s| s.id == real).unwrap().dry_run);

    // A record written before dry runs existed: no field, read as a real run.
    let raw = store.executions.get(id_key(real)).unwrap().unwrap();
    let mut v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(v["dry_run"], false, "{v}");
    v.as_object_mut().unwrap().remove("dry_run");
    store
        .executions
        .insert(id_key(real), serde_json::to_vec(&v).unwrap())
        .unwrap();
    assert!(!store.execution(real).unwrap().unwrap().dry_run);
}

#[test]
fn schema_changes_are_recorded_on_the_execution_and_older_records_read_without_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let id = store.begin_execution(new_exec("p")).unwrap();
    let drift = StoredTaskDrift {
        task: "people".into(),
        policy: StoredSchemaPolicy::Freeze,
        outcome: StoredDriftOutcome::Stopped,
        changes: vec![StoredSchemaChange {
            side: StoredSchemaSide::Source,
            entity: "people".into(),
            field: "age".into(),
            kind: StoredChangeKind::TypeChanged {
                from: "integer".into(),
                to: "text".into(),
            },
        }],
    };
    store
        .record_schema_changes(id, vec![drift.clone()])
        .unwrap();
    store.finish_execution(id, ExecStatus::Error, None).unwrap();
    let e = store.execution(id).unwrap().unwrap();
    assert_eq!(e.schema_changes, std::slice::from_ref(&drift));
    assert_eq!(
        drift.to_string(),
        "task `people` (schema_change = \"freeze\"): task stopped\n  source `people`: field `age` type changed from integer to text\n"
    );
    assert!(matches!(
        store.record_schema_changes(id, vec![]),
        Err(StoreError::NotRunning { .. })
    ));

    // A record written before the drift check: no field, read as no change.
    let raw = store.executions.get(id_key(id)).unwrap().unwrap();
    let mut v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(
        v["schema_changes"][0]["changes"][0]["kind"], "type_changed",
        "{v}"
    );
    v.as_object_mut().unwrap().remove("schema_changes");
    store
        .executions
        .insert(id_key(id), serde_json::to_vec(&v).unwrap())
        .unwrap();
    assert!(
        store
            .execution(id)
            .unwrap()
            .unwrap()
            .schema_changes
            .is_empty()
    );
}

#[test]
fn a_schema_baseline_round_trips_and_goes_with_its_project() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    assert_eq!(store.schema_baseline("p").unwrap(), None);
    let schemas = StoredSchemas {
        entities: vec![StoredEntitySchema {
            side: StoredSchemaSide::Destination,
            entity: "people".into(),
            fields: vec![StoredField {
                name: "id".into(),
                field_type: "integer".into(),
                required: true,
            }],
        }],
        execution: Some(7),
        recorded_at: 1,
    };
    store.set_schema_baseline("p", &schemas).unwrap();
    assert_eq!(store.schema_baseline("p").unwrap(), Some(schemas.clone()));
    let raw = store.project_schemas.get(b"p").unwrap().unwrap();
    assert!(raw.starts_with(b"{\"v\":1"), "versioned like every value");
    assert!(store.schema_baseline("bad\u{0}name").is_err());
}

#[test]
fn unchanged_counts_are_kept_and_older_records_read_as_zero() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let id = store.begin_execution(new_exec("p")).unwrap();
    store
        .checkpoint(
            id,
            StoredCheckpoint {
                tasks: vec![task("contacts", 10, 5, "c1")],
                log: Vec::new(),
                record_errors: Vec::new(),
                staged: Vec::new(),
            },
        )
        .unwrap();
    assert_eq!(store.execution(id).unwrap().unwrap().tasks[0].unchanged, 4);
    let listed = store.executions(&ExecutionFilter::default()).unwrap();
    assert_eq!(listed.iter().find(|s| s.id == id).unwrap().unchanged, 4);

    // A record written before destinations could say `unchanged`: read as 0.
    let raw = store.executions.get(id_key(id)).unwrap().unwrap();
    let mut v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    let tasks = v["tasks"].as_array_mut().expect("tasks in the record");
    assert_eq!(tasks[0]["unchanged"], 4, "{tasks:?}");
    tasks[0].as_object_mut().unwrap().remove("unchanged");
    store
        .executions
        .insert(id_key(id), serde_json::to_vec(&v).unwrap())
        .unwrap();
    let e = store.execution(id).unwrap().unwrap();
    assert_eq!((e.tasks[0].unchanged, e.tasks[0].updated), (0, 1));
}

#[test]
fn the_worker_of_an_execution_is_recorded_and_older_records_read_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let id = store.begin_execution(new_exec("p")).unwrap();
    assert_eq!(store.execution(id).unwrap().unwrap().worker, None);
    store.record_worker(id, "w1").unwrap();
    // A second worker resumed it: the last one is what the history names.
    store.record_worker(id, "w2").unwrap();
    store
        .finish_execution(id, ExecStatus::Completed, None)
        .unwrap();
    assert_eq!(
        store.execution(id).unwrap().unwrap().worker.as_deref(),
        Some("w2")
    );
    assert!(matches!(
        store.record_worker(id, "w3"),
        Err(StoreError::NotRunning { .. })
    ));
    // A record written before scale-out: no field, read as none.
    let raw = store.executions.get(id_key(id)).unwrap().unwrap();
    let mut v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(v["worker"], "w2", "{v}");
    v.as_object_mut().unwrap().remove("worker");
    store
        .executions
        .insert(id_key(id), serde_json::to_vec(&v).unwrap())
        .unwrap();
    assert_eq!(store.execution(id).unwrap().unwrap().worker, None);
}
