//! Mapping expressions, the way `engine::mapping` compiles and evaluates one: the
//! text screen (length, bracket depth, operators), VRL's parser, the tree screen
//! (no assignment, closure, abort...), VRL's compiler with weir's function
//! allow-list, then — for what compiles — evaluation over two records (one with
//! typical values, one with nulls and odd ones) under the host's step budget
//! (`resolve_with_control`, `MAX_STEPS_PER_RECORD`). `screen.rs` and
//! `functions.rs` are included by path: the same source the host compiles.
//!
//! Like the host, the chain runs on a thread with a 256 MiB stack (the host's
//! `COMPILER_STACK`), so a crash here is a crash of the host too. The property:
//! any text is accepted or refused, and any accepted one evaluates to a value or
//! an error, never a panic or a stack overflow.
#![no_main]

use std::collections::BTreeMap;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex, OnceLock};

use std::ops::ControlFlow;

use libfuzzer_sys::fuzz_target;
use vrl::compiler::runtime::Runtime;
use vrl::compiler::{CompileConfig, TargetValue, TimeZone, TypeState, compile_with_state};
use vrl::value::{Secrets, Value};

#[allow(dead_code)]
#[path = "../../host/engine/src/mapping/screen.rs"]
mod screen;

#[allow(dead_code)]
#[path = "../../host/engine/src/mapping/functions.rs"]
mod functions;

const COMPILER_STACK: usize = 256 << 20;
/// The host's `engine::mapping::MAX_STEPS_PER_RECORD`.
const MAX_STEPS_PER_RECORD: usize = 100_000;

fn records() -> Vec<Value> {
    let typical = serde_json::json!({
        "id": 42, "name": "Ada", "first_name": "Ada", "last_name": "Lovelace",
        "email": "  Ada@Example.COM ", "amount": 12.5, "count": -7, "country": "FR",
        "created_at": "2024-01-01T00:00:00Z", "active": true, "tags": ["a", "b"],
    });
    let odd = serde_json::json!({
        "id": i64::MAX, "name": "", "first_name": null, "last_name": "\u{0}é\u{202e}",
        "email": null, "amount": -0.0, "count": i64::MIN, "country": "??",
        "created_at": "not a date", "active": null, "tags": [],
    });
    vec![Value::from(typical), Value::from(odd)]
}

fn compile(text: &str) {
    if screen::text(text).is_err() {
        return;
    }
    let Ok(ast) = vrl::parser::parse(text) else {
        return;
    };
    if screen::tree(&ast).is_err() {
        return;
    }
    let mut table = BTreeMap::new();
    table.insert("FR".to_owned(), "France".to_owned());
    let lookups = Arc::new(BTreeMap::from([("countries".to_owned(), table)]));
    let fns = functions::for_mappings(&lookups);
    let mut config = CompileConfig::default();
    config.disable_unused_expression_check();
    let Ok(compiled) = compile_with_state(text, &fns, &TypeState::default(), config) else {
        return;
    };
    let mut runtime = Runtime::default();
    let tz = TimeZone::default();
    for record in records() {
        let mut target = TargetValue {
            value: record,
            metadata: Value::Object(BTreeMap::new()),
            secrets: Secrets::default(),
        };
        let mut steps = 0usize;
        let mut control = || {
            steps += 1;
            if steps > MAX_STEPS_PER_RECORD {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        };
        let _ = runtime.resolve_with_control(&mut target, &compiled.program, &tz, &mut control);
        runtime.clear();
    }
}

/// One long-lived compiler thread with the host's stack size.
type Worker = (SyncSender<String>, Receiver<()>);

fn worker() -> &'static Mutex<Worker> {
    static WORKER: OnceLock<Mutex<Worker>> = OnceLock::new();
    WORKER.get_or_init(|| {
        let (to_worker, inputs) = sync_channel::<String>(0);
        let (done, from_worker) = sync_channel::<()>(0);
        std::thread::Builder::new()
            .name("compiler".into())
            .stack_size(COMPILER_STACK)
            .spawn(move || {
                for text in inputs {
                    compile(&text);
                    done.send(()).unwrap();
                }
            })
            .unwrap();
        Mutex::new((to_worker, from_worker))
    })
}

fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    let w = worker().lock().unwrap();
    w.0.send(text.to_owned()).unwrap();
    w.1.recv().unwrap();
});
