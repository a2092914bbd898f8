//! Mapping expressions, the way `engine::mapping` compiles one: the text screen
//! (length, bracket depth, operators), VRL's parser, the tree screen (no
//! assignment, closure, abort...), then VRL's compiler with weir's function
//! allow-list. `screen.rs` and `functions.rs` are included by path: the same
//! source the host compiles.
//!
//! Like the host, the chain runs on a thread with a 256 MiB stack (the host's
//! `COMPILER_STACK`), so a crash here is a crash of the host too. The property:
//! any text is accepted or refused, never a panic or a stack overflow.
#![no_main]

use std::collections::BTreeMap;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex, OnceLock};

use libfuzzer_sys::fuzz_target;
use vrl::compiler::{CompileConfig, TypeState, compile_with_state};

#[allow(dead_code)]
#[path = "../../host/src/engine/mapping/screen.rs"]
mod screen;

#[allow(dead_code)]
#[path = "../../host/src/engine/mapping/functions.rs"]
mod functions;

const COMPILER_STACK: usize = 256 << 20;

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
    let _ = compile_with_state(text, &fns, &TypeState::default(), config);
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
