//! The one module that runs `bindgen!`: the host side of every contract version.
//!
//! Each contract version gets its own module (`since_v0_2_0`, `since_v0_1_0`), so a
//! host keeps loading plugins built against an older frozen contract. The newest is
//! the one the runtime speaks (re-exported below); an older version's exports are
//! converted to it and its imports delegate to it in `since_v0_1_0.rs`. The rest of
//! the runtime converts from the newest generated types to `weir-batch` and the
//! runtime's own types in `convert.rs` and never names them elsewhere.

/// `weir:plugin@0.2.0`, the current contract (adds `upsert-outcome.unchanged`).
pub mod since_v0_2_0 {
    /// The connector world. Its imports (`log`, `http`) are a superset of the
    /// transform world's, so one linker serves both.
    pub mod connector {
        wasmtime::component::bindgen!({
            path: "../../wit/since_v0.2.0",
            world: "connector-plugin",
        });
    }

    /// The transform world, sharing the connector world's types and `log`.
    pub mod transform {
        wasmtime::component::bindgen!({
            path: "../../wit/since_v0.2.0",
            world: "transform-plugin",
            with: {
                "weir:plugin/types": super::connector::weir::plugin::types,
                "weir:plugin/log": super::connector::weir::plugin::log,
            },
        });
    }

    /// The interface names a component must export, one per world.
    pub const CONNECTOR_EXPORT: &str = "weir:plugin/connector@0.2.0";
    pub const TRANSFORM_EXPORT: &str = "weir:plugin/transform@0.2.0";
}

/// `weir:plugin@0.1.0`, frozen. Its `types` interface is the same as 0.2.0's, so
/// its records are 0.2.0's Rust types (the component model checks types by
/// structure, not by package); `log`, `http` and the connector's own records are
/// generated apart and converted in `since_v0_1_0.rs`.
pub mod since_v0_1_0 {
    /// The 0.1.0 connector world.
    pub mod connector {
        wasmtime::component::bindgen!({
            path: "../../wit/since_v0.1.0",
            world: "connector-plugin",
            with: {
                "weir:plugin/types": crate::bindings::since_v0_2_0::connector::weir::plugin::types,
            },
        });
    }

    /// The 0.1.0 transform world.
    pub mod transform {
        wasmtime::component::bindgen!({
            path: "../../wit/since_v0.1.0",
            world: "transform-plugin",
            with: {
                "weir:plugin/types": crate::bindings::since_v0_2_0::connector::weir::plugin::types,
                "weir:plugin/log": super::connector::weir::plugin::log,
            },
        });
    }

    /// The interface names a 0.1.0 component exports, one per world.
    pub const CONNECTOR_EXPORT: &str = "weir:plugin/connector@0.1.0";
    pub const TRANSFORM_EXPORT: &str = "weir:plugin/transform@0.1.0";
    /// Its types-only import: linked as an empty instance (types need no code).
    pub const TYPES_IMPORT: &str = "weir:plugin/types@0.1.0";
}

/// `weir:sql@0.1.0`: capabilities a connector may import beside the contract
/// (a package of its own, so the frozen `weir:plugin` versions do not change).
/// Linked into the same linker as the contract: any connector may import them,
/// and the grants decide what a call gets.
pub mod sql_v0_1_0 {
    wasmtime::component::bindgen!({
        path: "../../wit/sql/since_v0.1.0",
        world: "postgres-client",
    });
}

/// `weir:kv@0.1.0`: the key index a connector may keep in the host (`kv.rs`), a
/// package of its own like `weir:sql`. Linked for every plugin; the grants decide
/// what `open` gets. Trappable: a handle the plugin never had is a trap, not an
/// error it could ignore.
pub mod kv_v0_1_0 {
    wasmtime::component::bindgen!({
        path: "../../wit/kv/since_v0.1.0",
        world: "index-client",
        imports: { default: trappable },
        with: {
            "weir:kv/index.table": crate::kv::KvTable,
        },
    });
}

pub use kv_v0_1_0::IndexClient;
pub use kv_v0_1_0::weir::kv::index as kv_index;
pub use since_v0_2_0::connector::exports::weir::plugin::connector as connector_api;
pub use since_v0_2_0::connector::weir::plugin::{http, log, types};
pub use since_v0_2_0::connector::{ConnectorPlugin, ConnectorPluginPre};
pub use since_v0_2_0::transform::exports::weir::plugin::transform as transform_api;
pub use since_v0_2_0::transform::{TransformPlugin, TransformPluginPre};
pub use sql_v0_1_0::PostgresClient;
pub use sql_v0_1_0::weir::sql::postgres;
