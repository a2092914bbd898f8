//! Plugins and demo files that travel inside the `weir` binary.
//!
//! `build.rs` builds the plugins workspace; the ones users get by name are
//! embedded here, so `plugin = "csv"` works from any directory with nothing
//! installed beside the binary.

/// The bundled plugins by name.
pub const PLUGINS: &[(&str, &[u8])] = &[
    (
        "csv",
        include_bytes!(concat!(env!("WEIR_PLUGIN_DIR"), "/weir_plugin_csv.wasm")),
    ),
    (
        "jsonl",
        include_bytes!(concat!(env!("WEIR_PLUGIN_DIR"), "/weir_plugin_jsonl.wasm")),
    ),
    (
        "normalize",
        include_bytes!(concat!(
            env!("WEIR_PLUGIN_DIR"),
            "/weir_plugin_normalize.wasm"
        )),
    ),
    (
        "rest",
        include_bytes!(concat!(env!("WEIR_PLUGIN_DIR"), "/weir_plugin_rest.wasm")),
    ),
    (
        "postgres",
        include_bytes!(concat!(
            env!("WEIR_PLUGIN_DIR"),
            "/weir_plugin_postgres.wasm"
        )),
    ),
];

/// The bytes of a bundled plugin.
pub fn plugin(name: &str) -> Option<&'static [u8]> {
    PLUGINS.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
}

/// The names of the bundled plugins.
pub fn plugin_names() -> Vec<&'static str> {
    PLUGINS.iter().map(|(n, _)| *n).collect()
}

/// Where the build put every plugin of the workspace, test plugins included
/// (for tests and benchmarks; not meaningful for an installed binary).
#[doc(hidden)]
pub const PLUGIN_BUILD_DIR: &str = env!("WEIR_PLUGIN_DIR");

/// The sample project `weir demo` runs: contacts from a CRM export (CSV) to a
/// marketing tool's import folder (JSON Lines), with phones and emails normalised.
pub mod demo {
    pub const PROJECT: &str = include_str!("../../../examples/contacts/project.toml");
    pub const CONTACTS_CSV: &str =
        include_str!("../../../examples/contacts/crm-export/contacts.csv");
    /// The number of records in the sample.
    pub fn record_count() -> usize {
        CONTACTS_CSV.lines().count().saturating_sub(1)
    }
}
