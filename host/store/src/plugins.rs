//! Installed plugins: name + version → where the validated copy lives.
//!
//! Versions are semantic versions (`semver`), refused at install otherwise: "the
//! highest version" must put a release above its own pre-releases (`1.0.0` over
//! `1.0.0-rc1`), which splitting the text on `.`/`-` did not. A pinned lookup
//! (`name@version`) matches the installed text exactly, as it always did.

use super::*;

impl Store {
    /// Records an installed plugin (replacing the same name and version).
    pub fn put_plugin(&self, p: &InstalledPlugin) -> Result<(), StoreError> {
        check_name("plugin name", &p.name)?;
        check_name("plugin version", &p.version)?;
        if let Err(e) = semver::Version::parse(&p.version) {
            return Err(StoreError::Invalid {
                what: "plugin version",
                reason: format!(
                    "{:?} of plugin {:?} is not a semantic version (MAJOR.MINOR.PATCH, such as 1.2.0 or 1.2.0-rc.1): {e}",
                    p.version, p.name
                ),
            });
        }
        let key = format!("{}\0{}", p.name, p.version);
        self.plugins
            .insert(key.as_bytes(), encode(p)?)
            .map_err(db_err)?;
        Ok(())
    }

    /// Every installed plugin, by name then version.
    pub fn plugins(&self) -> Result<Vec<InstalledPlugin>, StoreError> {
        let mut out = Vec::new();
        for item in self.plugins.iter() {
            let (k, v) = item.map_err(db_err)?;
            out.push(decode(
                || format!("plugins/{}", String::from_utf8_lossy(&k)),
                &v,
            )?);
        }
        Ok(out)
    }

    /// The installed plugin `name` at exactly `version`, or its highest semantic
    /// version (a release above its pre-releases).
    pub fn plugin(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<Option<InstalledPlugin>, StoreError> {
        let matching: Vec<InstalledPlugin> = self
            .plugins()?
            .into_iter()
            .filter(|p| p.name == name)
            .collect();
        if let Some(v) = version {
            return Ok(matching.into_iter().find(|p| p.version == v));
        }
        // A store written before versions were checked may hold one that does not
        // parse: it ranks below every semantic version rather than failing the lookup.
        Ok(matching
            .into_iter()
            .max_by_key(|p| semver::Version::parse(&p.version).ok()))
    }

    /// The installed plugin `name` for a version requirement as Cargo writes
    /// them (`1.2` = `^1.2`, `~1.2`, `>=1, <2`, `=1.2.3`): an installed version
    /// equal to the text wins (a full version is exact, as before), else the
    /// highest installed version the requirement matches. `Err` only from the
    /// store; `Ok(None)` when nothing matches or the requirement does not parse.
    pub fn plugin_matching(
        &self,
        name: &str,
        requirement: &str,
    ) -> Result<Option<InstalledPlugin>, StoreError> {
        if let Some(exact) = self.plugin(name, Some(requirement))? {
            return Ok(Some(exact));
        }
        let Ok(req) = semver::VersionReq::parse(requirement) else {
            return Ok(None);
        };
        Ok(self
            .plugins()?
            .into_iter()
            .filter(|p| p.name == name)
            .filter_map(|p| {
                let v = semver::Version::parse(&p.version).ok()?;
                req.matches(&v).then_some((v, p))
            })
            .max_by(|a, b| a.0.cmp(&b.0))
            .map(|(_, p)| p))
    }
}
