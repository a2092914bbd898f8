//! Which contract version a plugin speaks, and every export call dispatched on it.
//!
//! One enum per world over the versions the host accepts. Each method answers in the
//! newest version's types; an older version's answer is converted to them
//! (`since_v0_1_0.rs`), so `instance.rs` and `convert.rs` know one contract only.
//! Adding a version: a variant here, a module in `bindings.rs`, and conversions for
//! the version it replaces.

use wasmtime::Store as WasmStore;
use wasmtime::component::ResourceAny;

use super::bindings::since_v0_1_0 as v0_1;
use super::bindings::{
    ConnectorPlugin, ConnectorPluginPre, TransformPlugin, TransformPluginPre, connector_api as wc,
    transform_api as wtr, types as wt,
};
use super::host::HostState;
use super::since_v0_1_0 as from_v0_1;

/// A contract version this host accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContractVersion {
    /// `weir:plugin@0.1.0` (frozen; its writers never answer `unchanged`).
    V0_1_0,
    /// `weir:plugin@0.2.0`, the current one.
    V0_2_0,
}

impl ContractVersion {
    /// Every version, oldest first.
    pub const ALL: [ContractVersion; 2] = [ContractVersion::V0_1_0, ContractVersion::V0_2_0];

    /// The version as written in the package name, e.g. `0.2.0`.
    pub fn as_str(self) -> &'static str {
        match self {
            ContractVersion::V0_1_0 => "0.1.0",
            ContractVersion::V0_2_0 => "0.2.0",
        }
    }

    /// The connector interface a component of this version exports.
    pub fn connector_export(self) -> &'static str {
        match self {
            ContractVersion::V0_1_0 => v0_1::CONNECTOR_EXPORT,
            ContractVersion::V0_2_0 => super::bindings::since_v0_2_0::CONNECTOR_EXPORT,
        }
    }

    /// The transform interface a component of this version exports.
    pub fn transform_export(self) -> &'static str {
        match self {
            ContractVersion::V0_1_0 => v0_1::TRANSFORM_EXPORT,
            ContractVersion::V0_2_0 => super::bindings::since_v0_2_0::TRANSFORM_EXPORT,
        }
    }
}

impl std::fmt::Display for ContractVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

type Config<'a> = &'a Vec<(String, String)>;
type Call<T> = wasmtime::Result<Result<T, wt::Error>>;

/// A pre-instantiated connector of some version.
#[derive(Clone)]
pub(crate) enum ConnectorPre {
    V0_1(v0_1::connector::ConnectorPluginPre<HostState>),
    V0_2(ConnectorPluginPre<HostState>),
}

impl ConnectorPre {
    pub(crate) fn engine(&self) -> &wasmtime::Engine {
        match self {
            ConnectorPre::V0_1(p) => p.engine(),
            ConnectorPre::V0_2(p) => p.engine(),
        }
    }

    pub(crate) fn instantiate(
        &self,
        store: &mut WasmStore<HostState>,
    ) -> wasmtime::Result<Connector> {
        Ok(match self {
            ConnectorPre::V0_1(p) => Connector::V0_1(p.instantiate(store)?),
            ConnectorPre::V0_2(p) => Connector::V0_2(p.instantiate(store)?),
        })
    }
}

/// A live connector's bindings, of some version.
pub(crate) enum Connector {
    V0_1(v0_1::connector::ConnectorPlugin),
    V0_2(ConnectorPlugin),
}

impl Connector {
    pub(crate) fn describe(
        &self,
        s: &mut WasmStore<HostState>,
    ) -> wasmtime::Result<wt::PluginInfo> {
        match self {
            Connector::V0_1(b) => b.weir_plugin_connector().call_describe(s),
            Connector::V0_2(b) => b.weir_plugin_connector().call_describe(s),
        }
    }

    pub(crate) fn check(&self, s: &mut WasmStore<HostState>, config: Config<'_>) -> Call<()> {
        match self {
            Connector::V0_1(b) => b.weir_plugin_connector().call_check(s, config),
            Connector::V0_2(b) => b.weir_plugin_connector().call_check(s, config),
        }
    }

    pub(crate) fn list_organizations(
        &self,
        s: &mut WasmStore<HostState>,
        config: Config<'_>,
    ) -> Call<Vec<wt::Organization>> {
        match self {
            Connector::V0_1(b) => b.weir_plugin_connector().call_list_organizations(s, config),
            Connector::V0_2(b) => b.weir_plugin_connector().call_list_organizations(s, config),
        }
    }

    pub(crate) fn discover(
        &self,
        s: &mut WasmStore<HostState>,
        config: Config<'_>,
        organization: Option<&str>,
    ) -> Call<Vec<wt::EntitySchema>> {
        match self {
            Connector::V0_1(b) => b
                .weir_plugin_connector()
                .call_discover(s, config, organization),
            Connector::V0_2(b) => b
                .weir_plugin_connector()
                .call_discover(s, config, organization),
        }
    }

    pub(crate) fn read(
        &self,
        s: &mut WasmStore<HostState>,
        config: Config<'_>,
        request: &wc::ReadRequest,
    ) -> Call<wc::ReadPage> {
        match self {
            Connector::V0_1(b) => {
                let request = from_v0_1::read_request(request);
                Ok(b.weir_plugin_connector()
                    .call_read(s, config, &request)?
                    .map(from_v0_1::read_page))
            }
            Connector::V0_2(b) => b.weir_plugin_connector().call_read(s, config, request),
        }
    }

    pub(crate) fn open_writer(
        &self,
        s: &mut WasmStore<HostState>,
        config: Config<'_>,
        request: &wc::WriteRequest,
    ) -> Call<ResourceAny> {
        match self {
            Connector::V0_1(b) => {
                let request = from_v0_1::write_request(request);
                b.weir_plugin_connector()
                    .call_open_writer(s, config, &request)
            }
            Connector::V0_2(b) => b
                .weir_plugin_connector()
                .call_open_writer(s, config, request),
        }
    }

    pub(crate) fn upsert(
        &self,
        s: &mut WasmStore<HostState>,
        writer: ResourceAny,
        records: &wt::RecordBatch,
    ) -> Call<Vec<wc::UpsertOutcome>> {
        match self {
            Connector::V0_1(b) => Ok(b
                .weir_plugin_connector()
                .writer()
                .call_upsert(s, writer, records)?
                .map(|outcomes| outcomes.into_iter().map(from_v0_1::outcome).collect())),
            Connector::V0_2(b) => b
                .weir_plugin_connector()
                .writer()
                .call_upsert(s, writer, records),
        }
    }

    pub(crate) fn finish(&self, s: &mut WasmStore<HostState>, writer: ResourceAny) -> Call<()> {
        match self {
            Connector::V0_1(b) => b.weir_plugin_connector().writer().call_finish(s, writer),
            Connector::V0_2(b) => b.weir_plugin_connector().writer().call_finish(s, writer),
        }
    }
}

/// A pre-instantiated transform of some version.
#[derive(Clone)]
pub(crate) enum TransformPre {
    V0_1(v0_1::transform::TransformPluginPre<HostState>),
    V0_2(TransformPluginPre<HostState>),
}

impl TransformPre {
    pub(crate) fn engine(&self) -> &wasmtime::Engine {
        match self {
            TransformPre::V0_1(p) => p.engine(),
            TransformPre::V0_2(p) => p.engine(),
        }
    }

    pub(crate) fn instantiate(
        &self,
        store: &mut WasmStore<HostState>,
    ) -> wasmtime::Result<Transform> {
        Ok(match self {
            TransformPre::V0_1(p) => Transform::V0_1(p.instantiate(store)?),
            TransformPre::V0_2(p) => Transform::V0_2(p.instantiate(store)?),
        })
    }
}

/// A live transform's bindings, of some version.
pub(crate) enum Transform {
    V0_1(v0_1::transform::TransformPlugin),
    V0_2(TransformPlugin),
}

impl Transform {
    pub(crate) fn describe(
        &self,
        s: &mut WasmStore<HostState>,
    ) -> wasmtime::Result<wt::PluginInfo> {
        match self {
            Transform::V0_1(b) => b.weir_plugin_transform().call_describe(s),
            Transform::V0_2(b) => b.weir_plugin_transform().call_describe(s),
        }
    }

    pub(crate) fn output_schema(
        &self,
        s: &mut WasmStore<HostState>,
        config: Config<'_>,
        input: &[wt::FieldSchema],
    ) -> Call<Vec<wt::FieldSchema>> {
        match self {
            Transform::V0_1(b) => b
                .weir_plugin_transform()
                .call_output_schema(s, config, input),
            Transform::V0_2(b) => b
                .weir_plugin_transform()
                .call_output_schema(s, config, input),
        }
    }

    pub(crate) fn transform(
        &self,
        s: &mut WasmStore<HostState>,
        config: Config<'_>,
        records: &wt::RecordBatch,
    ) -> Call<wtr::Transformed> {
        match self {
            Transform::V0_1(b) => Ok(b
                .weir_plugin_transform()
                .call_transform(s, config, records)?
                .map(from_v0_1::transformed)),
            Transform::V0_2(b) => b.weir_plugin_transform().call_transform(s, config, records),
        }
    }
}
