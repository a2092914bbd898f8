use weir_sdk::*;
struct Normalize;
impl Transform for Normalize {
    fn info() -> PluginInfo { PluginInfo::new("normalize", env!("CARGO_PKG_VERSION"), "x") }
    fn transform(_config: &Config, records: Batch) -> Result<Transformed, Error> { Ok(Transformed::ok(records)) }
}
export_transform!(Normalize);
