//! `weir plugin new | inspect | test`: the plugin authors' kit. Parsing and
//! printing only; the work is in `weir_host::{scaffold, conformance}`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use weir_host::runtime::{Grants, Limits, PluginKind, Runtime};
use weir_host::scaffold;
use weir_host::{conformance, conformance_sample};

#[derive(Subcommand)]
pub enum PluginCmd {
    /// Scaffold a plugin crate that builds with `cargo build --release`.
    New {
        /// source, destination, connector or transform.
        #[arg(long)]
        kind: String,
        /// The plugin's name (lowercase, digits, `-`).
        name: String,
        /// Where to create it (default: ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The weir-sdk crate to depend on (default: the SDK beside this weir's sources).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Show what a plugin is: contract, kind, name, version, options, capabilities, entities.
    Inspect {
        /// The plugin's .wasm file, or a bundled plugin's name (`weir plugins` lists them).
        file: PathBuf,
        /// Print it as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Install a plugin: validate, precompile, record name, version and hash.
    /// Versions install side by side; a project names one as `name@version`.
    Install {
        /// The plugin's .wasm file.
        file: PathBuf,
    },
    /// List installed plugins.
    List,
    /// Run the conformance suite against a plugin (use a test connection: upserts write).
    Test {
        /// The plugin's .wasm file.
        file: PathBuf,
        /// A configuration option, `key=value` (repeatable).
        #[arg(long = "config", value_name = "KEY=VALUE")]
        config: Vec<String>,
        /// A directory to grant (seen as /data).
        #[arg(long)]
        directory: Option<PathBuf>,
        /// A host the plugin may reach through `http` (`127.0.0.1:3000`; repeatable).
        #[arg(long = "http", value_name = "HOST")]
        http: Vec<String>,
        /// Print the results as JSON.
        #[arg(long)]
        json: bool,
        /// A transform's sample input (CSV with `name:type` headers, or JSON Lines).
        #[arg(long)]
        input: Option<PathBuf>,
        /// What the transform must return for --input, compared value by value.
        #[arg(long, requires = "input")]
        expect: Option<PathBuf>,
        /// A key field of the transform's input (repeatable; default `id`): it must
        /// come back unchanged unless the configuration names it.
        #[arg(long = "key", value_name = "FIELD")]
        key: Vec<String>,
    },
}

pub fn plugin(
    runtime: &Runtime,
    data_dir: &std::path::Path,
    key_file: Option<&std::path::Path>,
    cmd: PluginCmd,
) -> Result<ExitCode> {
    match cmd {
        PluginCmd::Install { file } => {
            let backend = crate::cli_remote::Backend::open(data_dir, key_file)?;
            let p = backend.install_plugin(&file, data_dir)?;
            println!(
                "installed {} {} ({}, sha256 {})",
                p.name,
                p.version,
                p.kind,
                &p.sha256[..16]
            );
            println!(
                "use it as plugin = \"{}@{}\" (or \"{}\" for the highest version)",
                p.name, p.version, p.name
            );
        }
        PluginCmd::List => {
            let backend = crate::cli_remote::Backend::open(data_dir, key_file)?;
            for p in backend.plugins()? {
                println!(
                    "{:<16} {:<10} {:<10} {}  {}",
                    p.name,
                    p.version,
                    p.kind,
                    &p.sha256[..16],
                    p.path.display()
                );
            }
        }
        PluginCmd::New {
            kind,
            name,
            dir,
            sdk,
        } => {
            let kind = scaffold::Kind::parse(&kind).with_context(|| {
                format!("--kind `{kind}`: use source, destination, connector or transform")
            })?;
            let sdk = match sdk.or_else(scaffold::default_sdk_path) {
                Some(s) => std::path::absolute(s)?,
                None => bail!("cannot find weir-sdk; pass --sdk PATH"),
            };
            let dir = dir.unwrap_or_else(|| PathBuf::from(&name));
            let files = scaffold::create(&dir, &name, kind, &sdk).map_err(anyhow::Error::msg)?;
            for f in files {
                println!("created {}", f.display());
            }
            println!("next: cd {} && cargo build --release", dir.display());
        }
        PluginCmd::Inspect { file, json } => {
            // A bundled plugin's name, unless a file of that name is here.
            let bundled = file
                .to_str()
                .filter(|_| !file.exists())
                .and_then(|name| Some((name, weir_host::bundled::plugin(name)?)));
            let (plugin, stamp) = match bundled {
                Some((name, bytes)) => (
                    runtime.load_bytes(name, bytes)?,
                    weir_host::runtime::contract_stamp(bytes),
                ),
                None => (
                    runtime.load_file(&file)?,
                    weir_host::runtime::read_plugin_file(&file)
                        .ok()
                        .and_then(|b| weir_host::runtime::contract_stamp(&b)),
                ),
            };
            // The version it exports (the host accepts several), not the newest.
            let contract = plugin.contract();
            let (info, entities) = match plugin.kind() {
                PluginKind::Connector => {
                    let mut c = plugin.connector(Grants::none(), Limits::default())?;
                    let info = c.describe()?;
                    // Entities that need no connection (a fixed schema) show up here.
                    let entities = c.discover(&Default::default(), None).ok();
                    (info, entities)
                }
                PluginKind::Transform => (plugin.transform(Limits::default())?.describe()?, None),
            };
            if json {
                let out = serde_json::json!({
                    "contract": format!("weir:plugin@{contract}"),
                    "stamp": stamp,
                    "kind": plugin.kind(),
                    "sha256": plugin.digest(),
                    "info": info,
                    "entities": entities,
                });
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                println!(
                    "contract:     weir:plugin@{contract} ({})",
                    stamp.as_deref().map_or(
                        "from its exports; no weir-sdk stamp".to_owned(),
                        |s| format!("stamped {s} by weir-sdk")
                    )
                );
                println!("kind:         {:?}", plugin.kind());
                println!(
                    "world:        weir:plugin/{}",
                    match plugin.kind() {
                        PluginKind::Connector => "connector-plugin",
                        PluginKind::Transform => "transform-plugin",
                    }
                );
                println!("name:         {} {}", info.name, info.version);
                println!("description:  {}", info.description);
                println!("sha256:       {}", plugin.digest());
                println!(
                    "capabilities: {}",
                    if info.capabilities.is_empty() {
                        "none".to_owned()
                    } else {
                        info.capabilities
                            .iter()
                            .map(|c| format!("{c:?}").to_lowercase())
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                );
                println!("options:");
                for f in &info.config {
                    println!(
                        "  {:<18}{}{}{}  {}",
                        f.name,
                        if f.required { " required" } else { "" },
                        if f.secret { " secret" } else { "" },
                        f.default_value
                            .as_ref()
                            .map(|d| format!(" (default {d})"))
                            .unwrap_or_default(),
                        f.description
                    );
                }
                if let Some(entities) = entities {
                    println!("entities (without a connection):");
                    for e in entities {
                        let fields: Vec<String> = e
                            .fields
                            .iter()
                            .map(|f| {
                                format!(
                                    "{}:{}{}",
                                    f.name,
                                    f.field_type,
                                    if f.required { "!" } else { "" }
                                )
                            })
                            .collect();
                        println!(
                            "  {} key [{}]: {}",
                            e.name,
                            e.key_fields.join(", "),
                            fields.join(", ")
                        );
                    }
                }
            }
        }
        PluginCmd::Test {
            file,
            config,
            directory,
            http,
            json,
            input,
            expect,
            key,
        } => {
            let plugin = runtime.load_file(&file)?;
            let pairs = config
                .iter()
                .map(|s| {
                    s.split_once('=')
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .with_context(|| format!("--config `{s}`: expected KEY=VALUE"))
                })
                .collect::<Result<Vec<_>>>()?;
            let mut grants = match directory {
                Some(d) => Grants::directory(
                    weir_host::runtime::capabilities::resolve_directory(&d)
                        .with_context(|| format!("--directory {}", d.display()))?,
                ),
                None => Grants::none(),
            };
            grants.http_hosts = http;
            let sample =
                |p: Option<PathBuf>| p.map(|p| conformance_sample::read_sample(&p)).transpose();
            let options = conformance::Options {
                input: sample(input)?,
                expect: sample(expect)?,
                key,
            };
            let report = conformance::run_with(
                &plugin,
                &weir_host::Config::new(pairs),
                grants,
                Limits::default(),
                &options,
            );
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{report}");
            }
            return Ok(if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}
