//! Write weir connector and transform plugins in Rust.
//!
//! A plugin is a WebAssembly component built with `cargo build --target
//! wasm32-wasip2`. It implements one of two traits and exports it with one macro:
//!
//! * [`Connector`] + [`export_connector!`]: a source (implement [`Connector::read`]),
//!   a destination (implement [`Connector::open_writer`] and a [`Writer`]), or both;
//! * [`Transform`] + [`export_transform!`]: rewrites batches between source and
//!   destination.
//!
//! Every trait method but the essential ones has a default, so a simple connector
//! is a page of code. Records arrive and leave as a columnar [`Batch`]; read them
//! with [`Batch::rows`] and build them with [`BatchBuilder`].
//!
//! ```
//! use weir_sdk::*;
//!
//! struct Hello;
//!
//! impl Transform for Hello {
//!     fn info() -> PluginInfo {
//!         PluginInfo::new("hello", "0.1.0", "Passes records through")
//!     }
//!     fn transform(_config: &Config, records: Batch) -> Result<Transformed, Error> {
//!         Ok(Transformed::ok(records))
//!     }
//! }
//!
//! // In the plugin crate: `export_transform!(Hello);` — then
//! // `cargo build --target wasm32-wasip2 --release` gives the component.
//! // The trait methods are plain Rust, so unit tests call them natively:
//! let batch = Batch::empty(&[("id", FieldType::Integer)]);
//! assert!(Hello::transform(&Config::default(), batch).unwrap().failures.is_empty());
//! ```
//!
//! What this crate is not: a host. It has no wasmtime; it only makes the guest side
//! of the WIT contract `weir:plugin@0.2.0` (in `wit/since_v0.2.0/`) pleasant in
//! Rust. The generated bindings are `#[doc(hidden)]`: plugin authors never touch
//! them, so the contract can grow without breaking their code.

mod convert;
pub mod files;
pub mod testing;

pub use weir_types::{
    Batch, BatchBuilder, BatchError, Capability, Column, ColumnData, Config, ConfigField,
    EntitySchema, FieldSchema, FieldType, Organization, PluginError as Error, PluginInfo, ReadPage,
    ReadRequest, RecordError, Rejected, Row, Transformed, UpsertOutcome, Value, VarData,
    WriteRequest,
};

/// The version of the WIT contract this SDK builds plugins against.
pub const CONTRACT_VERSION: &str = "0.2.0";

/// The contract version, stamped into every plugin built with this SDK as the
/// custom section `weir-contract`. The host reads it before instantiating and
/// refuses versions it does not accept, naming both.
#[doc(hidden)]
#[used]
#[unsafe(link_section = "weir-contract")]
pub static __WEIR_CONTRACT: [u8; 5] = *b"0.2.0";

#[doc(hidden)]
pub mod bindings {
    pub mod connector {
        wit_bindgen::generate!({
            path: "../wit/since_v0.2.0",
            world: "connector-plugin",
            pub_export_macro: true,
            export_macro_name: "__export_connector_plugin",
            default_bindings_module: "weir_sdk::bindings::connector",
        });
    }
    pub mod transform {
        wit_bindgen::generate!({
            path: "../wit/since_v0.2.0",
            world: "transform-plugin",
            with: {
                "weir:plugin/types@0.2.0": super::connector::weir::plugin::types,
                "weir:plugin/log@0.2.0": super::connector::weir::plugin::log,
            },
            pub_export_macro: true,
            export_macro_name: "__export_transform_plugin",
            default_bindings_module: "weir_sdk::bindings::transform",
        });
    }
}

/// A connector: describes itself, checks its connection, discovers entities, and
/// reads from and/or writes to them.
///
/// A source implements [`Connector::read`]; a destination [`Connector::open_writer`]:
///
/// ```
/// use weir_sdk::*;
///
/// /// Numbers 1..=count, three per page unless asked for fewer.
/// struct Numbers;
///
/// impl Connector for Numbers {
///     fn info() -> PluginInfo {
///         PluginInfo::new("numbers", "0.1.0", "Counts")
///             .option(ConfigField::new("count", "How many").default_value("5"))
///     }
///     fn read(config: &Config, request: ReadRequest) -> Result<ReadPage, Error> {
///         let count: i64 = config.parse_or("count", 5)?;
///         let start: i64 = request.cursor.as_deref().map_or(Ok(1), str::parse)
///             .map_err(|_| Error::config("bad cursor"))?;
///         let end = (start + request.max_records.min(3) as i64).min(count + 1);
///         let mut b = BatchBuilder::new(&[("n", FieldType::Integer)]);
///         for n in start..end {
///             b.push_row(&[Value::Integer(n)]).unwrap();
///         }
///         Ok(ReadPage { records: b.finish(), rejected: vec![], next_cursor: Some(end.to_string()), done: end > count })
///     }
/// }
///
/// let first = Numbers::read(&Config::default(), ReadRequest {
///     entity: "n".into(), organization: None, cursor: None, max_records: 100,
/// }).unwrap();
/// assert_eq!((first.records.len(), first.next_cursor.as_deref(), first.done), (3, Some("4"), false));
/// // Not a destination: the default refuses to write, with a typed error.
/// let refused = Numbers::open_writer(&Config::default(), WriteRequest {
///     entity: "n".into(), organization: None, key_fields: vec!["n".into()],
/// });
/// assert!(matches!(refused, Err(Error::InvalidConfig(_))));
/// ```
///
/// Connectors are stateless between calls: the host passes the connection's
/// [`Config`] to every call, and may run calls in fresh instances. The one piece of
/// state is a [`Writer`], which lives for one write session.
pub trait Connector {
    /// What the plugin is: name, version, configuration options, capabilities.
    fn info() -> PluginInfo;

    /// Checks that the connection works. The default accepts any configuration.
    fn check(config: &Config) -> Result<(), Error> {
        let _ = config;
        Ok(())
    }

    /// The organizations (legal entities, business units, schemas) reachable
    /// through the connection. The default: none.
    fn organizations(config: &Config) -> Result<Vec<Organization>, Error> {
        let _ = config;
        Ok(Vec::new())
    }

    /// The entities of an organization, with their schemas. The default: none.
    fn discover(config: &Config, organization: Option<&str>) -> Result<Vec<EntitySchema>, Error> {
        let _ = (config, organization);
        Ok(Vec::new())
    }

    /// Reads the next page of an entity, from `request.cursor`. The default refuses:
    /// the connector is not a source.
    fn read(config: &Config, request: ReadRequest) -> Result<ReadPage, Error> {
        let _ = config;
        Err(Error::config(format!(
            "`{}` cannot read: it is not a source (entity `{}`)",
            Self::info().name,
            request.entity
        )))
    }

    /// Opens a write session on an entity. The default refuses: the connector is
    /// not a destination.
    fn open_writer(config: &Config, request: WriteRequest) -> Result<Box<dyn Writer>, Error> {
        let _ = config;
        Err(Error::config(format!(
            "`{}` cannot write: it is not a destination (entity `{}`)",
            Self::info().name,
            request.entity
        )))
    }
}

/// A write session on one entity, opened by [`Connector::open_writer`].
///
/// ```
/// use std::collections::HashSet;
/// use weir_sdk::*;
///
/// struct Keys { key: Vec<String>, seen: HashSet<String> }
///
/// impl Writer for Keys {
///     fn upsert(&mut self, records: Batch) -> Result<Vec<UpsertOutcome>, Error> {
///         Ok(records.rows().map(|r| {
///             if self.seen.insert(r.key(&self.key)) { UpsertOutcome::Inserted } else { UpsertOutcome::Updated }
///         }).collect())
///     }
/// }
///
/// let mut w = Keys { key: vec!["id".into()], seen: HashSet::new() };
/// let mut b = BatchBuilder::new(&[("id", FieldType::Integer)]);
/// b.push_row(&[Value::Integer(7)]).unwrap();
/// let batch = b.finish();
/// assert_eq!(w.upsert(batch.clone()).unwrap(), [UpsertOutcome::Inserted]);
/// assert_eq!(w.upsert(batch).unwrap(), [UpsertOutcome::Updated], "idempotent: same batch, updates");
/// ```
pub trait Writer {
    /// Upserts a batch by the session's key fields. Must return exactly one
    /// outcome per record, in order; a record that cannot be written is
    /// [`UpsertOutcome::Failed`], not an error of the whole call.
    fn upsert(&mut self, records: Batch) -> Result<Vec<UpsertOutcome>, Error>;

    /// Makes everything written durable. The default does nothing.
    fn finish(&mut self) -> Result<(), Error> {
        Ok(())
    }
}

/// A transform: rewrites batches of records. See the crate example above: the
/// output has one record per input record, and records that cannot be
/// transformed are listed in [`Transformed::failures`].
///
/// ```
/// use weir_sdk::*;
///
/// struct RequireEmail;
/// impl Transform for RequireEmail {
///     fn info() -> PluginInfo { PluginInfo::new("require-email", "0.1.0", "Fails records without an email") }
///     fn transform(_: &Config, records: Batch) -> Result<Transformed, Error> {
///         let failures = records.rows()
///             .filter(|r| r.text("email").is_none())
///             .map(|r| (r.index() as u32, RecordError::field("email", "an email is required")))
///             .collect();
///         Ok(Transformed { records, failures })
///     }
/// }
///
/// let mut b = BatchBuilder::new(&[("email", FieldType::Text)]);
/// b.push_row(&[Value::Text("a@b.c".into())]).unwrap();
/// b.push_row(&[Value::Null]).unwrap();
/// let out = RequireEmail::transform(&Config::default(), b.finish()).unwrap();
/// assert_eq!(out.records.len(), 2);
/// assert_eq!(out.failures[0].0, 1);
/// ```
pub trait Transform {
    /// What the plugin is: name, version, configuration options.
    fn info() -> PluginInfo;

    /// The fields this transform outputs for the given input fields. The default:
    /// the input fields, unchanged.
    fn output_schema(config: &Config, input: Vec<FieldSchema>) -> Result<Vec<FieldSchema>, Error> {
        let _ = config;
        Ok(input)
    }

    /// Transforms a batch: one output record per input record, in order, and a
    /// [`RecordError`] for each record that cannot be transformed.
    fn transform(config: &Config, records: Batch) -> Result<Transformed, Error>;
}

/// Exports a [`Connector`] implementation as the plugin's `connector` interface.
#[macro_export]
macro_rules! export_connector {
    ($connector:ty) => {
        type __WeirConnectorExport = $crate::__glue::ConnectorExport<$connector>;
        $crate::bindings::connector::__export_connector_plugin!(__WeirConnectorExport);
    };
}

/// Exports a [`Transform`] implementation as the plugin's `transform` interface.
#[macro_export]
macro_rules! export_transform {
    ($transform:ty) => {
        type __WeirTransformExport = $crate::__glue::TransformExport<$transform>;
        $crate::bindings::transform::__export_transform_plugin!(__WeirTransformExport);
    };
}

#[doc(hidden)]
pub mod __glue {
    pub use crate::convert::{ConnectorExport, TransformExport};
}

/// Structured logging into the host's log and the execution's detailed log.
pub mod log {
    use crate::bindings::connector::weir::plugin::log as wit;

    fn emit(level: wit::Level, message: &str, fields: &[(&str, &str)]) {
        let fields: Vec<(String, String)> = fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        wit::log(level, message, &fields);
    }

    pub fn debug(message: &str, fields: &[(&str, &str)]) {
        emit(wit::Level::Debug, message, fields)
    }
    pub fn info(message: &str, fields: &[(&str, &str)]) {
        emit(wit::Level::Info, message, fields)
    }
    pub fn warn(message: &str, fields: &[(&str, &str)]) {
        emit(wit::Level::Warn, message, fields)
    }
    pub fn error(message: &str, fields: &[(&str, &str)]) {
        emit(wit::Level::Error, message, fields)
    }
}

/// Outgoing HTTP through the host (connector plugins only). The host refuses hosts
/// the connection does not grant, and adds the connection's credentials.
///
/// What the host does for a plugin: it checks the URL against the connection's
/// allow-list before anything is sent, injects the connection's credentials
/// (bearer, basic, API key, OAuth2 client credentials; the plugin never sees
/// them), follows redirects within the allow-list, bounds time and response size,
/// and waits out a `429`/`503` with a short `Retry-After` by itself. Anything else
/// comes back to the plugin: use [`http::error`] and [`http::check_status`] to
/// turn failures into the [`Error`] the engine understands (transient ones are
/// retried by the project's retry policy).
///
/// ```no_run
/// use weir_sdk::{Error, http};
///
/// fn fetch(url: &str) -> Result<Vec<u8>, Error> {
///     let response = http::send(&http::Request::get(url)).map_err(http::error)?;
///     http::check_status(&response)?;
///     Ok(response.body)
/// }
/// ```
pub mod http {
    pub use crate::bindings::connector::weir::plugin::http::{HttpError, Request, Response};

    use crate::Error;

    /// Sends a request through the host.
    pub fn send(request: &Request) -> Result<Response, HttpError> {
        crate::bindings::connector::weir::plugin::http::send(request)
    }

    impl Request {
        /// A request with no headers and no body.
        pub fn new(method: &str, url: &str) -> Request {
            Request {
                method: method.to_owned(),
                url: url.to_owned(),
                headers: Vec::new(),
                body: Vec::new(),
            }
        }

        /// A `GET` of `url`.
        pub fn get(url: &str) -> Request {
            Request::new("GET", url)
        }

        /// Adds a header.
        pub fn header(mut self, name: &str, value: &str) -> Request {
            self.headers.push((name.to_owned(), value.to_owned()));
            self
        }

        /// Sets the body.
        pub fn body(mut self, body: impl Into<Vec<u8>>) -> Request {
            self.body = body.into();
            self
        }
    }

    impl Response {
        /// The first header called `name` (case-insensitive).
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    /// Whether trying again later may succeed: `timeout` and `transport` are
    /// retryable; `denied`, `invalid-request` and `too-large` are not.
    pub fn is_retryable(error: &HttpError) -> bool {
        matches!(error, HttpError::Timeout | HttpError::Transport(_))
    }

    /// A failed send as an [`Error`]: retryable failures become
    /// [`Error::transient`], a refused URL a connection error, a malformed request
    /// a configuration error.
    pub fn error(error: HttpError) -> Error {
        match error {
            HttpError::Denied(reason) => Error::connection(reason),
            HttpError::InvalidRequest(reason) => {
                Error::config(format!("invalid HTTP request: {reason}"))
            }
            HttpError::Timeout => Error::transient("the HTTP request timed out"),
            HttpError::Transport(reason) => Error::transient(reason),
            HttpError::TooLarge(limit) => Error::connection(format!(
                "the HTTP response is larger than the host accepts ({limit} bytes)"
            )),
        }
    }

    /// `Ok` for a 1xx–3xx status. Otherwise: 401 and 403 are "authentication
    /// refused", 429 and 5xx transient (retried by the engine), any other status a
    /// connection error; the message names the status.
    pub fn check_status(response: &Response) -> Result<(), Error> {
        let status = response.status;
        match status {
            100..=399 => Ok(()),
            401 | 403 => Err(Error::connection(format!(
                "authentication refused (HTTP {status})"
            ))),
            429 | 500..=599 => Err(Error::transient(format!(
                "the server answered HTTP {status}"
            ))),
            _ => Err(Error::connection(format!(
                "the server answered HTTP {status}"
            ))),
        }
    }

    impl Response {
        /// The target of the RFC 8288 (RFC 5988) `Link` header's entry with
        /// relation `rel` (`next`, `prev`, ...), as written: usually absolute;
        /// resolve a relative one against the request's URL. Every `Link` header
        /// is searched, and an entry may name several relations (`rel="next last"`).
        ///
        /// ```
        /// # use weir_sdk::http::Response;
        /// let r = Response { status: 200, body: vec![], headers: vec![(
        ///     "Link".into(),
        ///     r#"<https://api.test/c?page=1>; rel="first", <https://api.test/c?page=3>; rel="next""#.into(),
        /// )] };
        /// assert_eq!(r.link("next").as_deref(), Some("https://api.test/c?page=3"));
        /// assert_eq!(r.link("prev"), None);
        /// ```
        pub fn link(&self, rel: &str) -> Option<String> {
            self.headers
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case("link"))
                .flat_map(|(_, v)| split_links(v))
                .find(|(_, params)| {
                    params.split(';').any(|p| {
                        let Some((name, value)) = p.split_once('=') else {
                            return false;
                        };
                        name.trim().eq_ignore_ascii_case("rel")
                            && value
                                .trim()
                                .trim_matches('"')
                                .split_ascii_whitespace()
                                .any(|r| r.eq_ignore_ascii_case(rel))
                    })
                })
                .map(|(target, _)| target.to_owned())
        }
    }

    /// `<target>; params, <target>; params` as (target, params) pairs; commas
    /// inside `<...>` or quotes do not split.
    fn split_links(value: &str) -> Vec<(&str, &str)> {
        let mut out = Vec::new();
        let mut rest = value;
        while let Some(open) = rest.find('<') {
            let Some(close) = rest[open..].find('>').map(|c| open + c) else {
                break;
            };
            let target = &rest[open + 1..close];
            let after = &rest[close + 1..];
            let mut quoted = false;
            let end = after
                .char_indices()
                .find(|&(_, c)| {
                    if c == '"' {
                        quoted = !quoted;
                    }
                    c == ',' && !quoted
                })
                .map_or(after.len(), |(i, _)| i);
            out.push((target.trim(), &after[..end]));
            rest = &after[end..];
        }
        out
    }

    /// Percent-encodes `text` for a URL path segment or query component: every
    /// byte but the unreserved `A-Z a-z 0-9 - . _ ~`.
    ///
    /// ```
    /// assert_eq!(weir_sdk::http::encode("a b/c&d=é"), "a%20b%2Fc%26d%3D%C3%A9");
    /// ```
    pub fn encode(text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        for b in text.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    }
}
