//! Execution listing with a large history: 100,000 finished executions across 100
//! projects, then `Store::executions` timed with a project filter (limit 50, and all of
//! that project's 1,000) and without one (limit 50).
//!
//! Run: `cargo bench -p weir-host --bench store` (optionally `-- EXECUTIONS`, default
//! 100,000). Writes go through the real API (begin, one checkpoint with 2 tasks, finish:
//! three sled transactions each), so the write time is what building such a history costs.
//! The store is then closed and reopened before listing, as a `weir` command would find
//! it; each listing prints its first call and the best of 5. Not a test: nothing asserts
//! on the numbers.

use std::time::{Duration, Instant};

use weir_host::store::{
    ExecStatus, ExecutionFilter, NewExecution, Store, StoredCheckpoint, TaskState, Trigger,
};

const PROJECTS: usize = 100;

fn task(name: &str, n: u64) -> TaskState {
    TaskState {
        name: name.to_string(),
        read: n,
        inserted: n / 2,
        updated: n / 3,
        unchanged: n / 6,
        failed: 0,
        skipped: 0,
        cursor: Some(format!("cursor-{n}")),
        error: None,
    }
}

fn main() {
    let total: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().expect("temp dir");

    {
        let store = Store::open(dir.path(), None).expect("open store");
        let start = Instant::now();
        for i in 0..total {
            let id = store
                .begin_execution(NewExecution {
                    project: format!("project-{}", i % PROJECTS),
                    project_version: 1,
                    trigger: Trigger::Scheduled,
                    parent: None,
                    rerun: None,
                    tasks: vec!["contacts".to_string(), "companies".to_string()],
                })
                .expect("begin");
            store
                .checkpoint(
                    id,
                    StoredCheckpoint {
                        tasks: vec![task("contacts", 1_000 + i as u64), task("companies", 200)],
                        ..StoredCheckpoint::default()
                    },
                )
                .expect("checkpoint");
            store
                .finish_execution(id, ExecStatus::Completed, None)
                .expect("finish");
        }
        store.flush().expect("flush");
        let write = start.elapsed();
        println!(
            "write {total} executions (begin + checkpoint + finish each) and flush: {:.1} s ({:.0} µs per execution)",
            write.as_secs_f64(),
            write.as_secs_f64() * 1e6 / total as f64
        );
    }

    let start = Instant::now();
    let store = Store::open(dir.path(), None).expect("reopen store");
    println!(
        "open the store, {total} stored: {:.1} ms",
        start.elapsed().as_secs_f64() * 1e3
    );

    let cases = [
        (
            "executions list, project filter, limit 50",
            ExecutionFilter {
                project: Some("project-42".to_string()),
                limit: 50,
                ..Default::default()
            },
        ),
        (
            "executions list, project filter, no limit",
            ExecutionFilter {
                project: Some("project-42".to_string()),
                limit: 0,
                ..Default::default()
            },
        ),
        (
            "executions list, no filter, limit 50",
            ExecutionFilter {
                limit: 50,
                ..Default::default()
            },
        ),
    ];
    for (label, filter) in &cases {
        let t = Instant::now();
        let listed = store.executions(filter).expect("list").len();
        let first = t.elapsed();
        let mut best = Duration::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            let list = store.executions(filter).expect("list");
            best = best.min(t.elapsed());
            assert_eq!(list.len(), listed);
        }
        println!(
            "{label}, {total} stored: {:.2} ms ({listed} listed; first call {:.2} ms)",
            best.as_secs_f64() * 1e3,
            first.as_secs_f64() * 1e3
        );
    }
}
