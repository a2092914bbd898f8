//! The project file (TOML) into the serde types users write
//! (`host/engine/src/project/file.rs`, included by path: the same source the host
//! compiles). Also the untyped `toml::Table` parse the API's project PUT does
//! first. The property: any text is a value or an error, never a panic or a
//! stack overflow (toml's recursion limit holds on deep nesting).
//!
//! Not covered here: `project::Project::parse_with`'s validation (resolved
//! paths, grants, limits), which needs `weir-host` and so wasmtime built with
//! coverage instrumentation; see RELIABILITY.md.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../host/engine/src/project/file.rs"]
mod file;

fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    let _ = text.parse::<toml::Table>();
    if let Ok(project) = toml::from_str::<file::ProjectFile>(text) {
        // Reading what was parsed must not panic either.
        let _ = format!("{project:?}");
    }
});
