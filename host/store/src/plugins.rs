//! Installed plugins: name + version → where the validated copy lives.

use super::*;

impl Store {
    /// Records an installed plugin (replacing the same name and version).
    pub fn put_plugin(&self, p: &InstalledPlugin) -> Result<(), StoreError> {
        check_name("plugin name", &p.name)?;
        check_name("plugin version", &p.version)?;
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

    /// The installed plugin `name` at `version`, or its highest version.
    pub fn plugin(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<Option<InstalledPlugin>, StoreError> {
        let mut matching: Vec<InstalledPlugin> = self
            .plugins()?
            .into_iter()
            .filter(|p| p.name == name)
            .collect();
        if let Some(v) = version {
            return Ok(matching.into_iter().find(|p| p.version == v));
        }
        let parts = |v: &str| -> Vec<u64> {
            v.split(['.', '-', '+'])
                .map(|x| x.parse().unwrap_or(0))
                .collect()
        };
        matching.sort_by_key(|p| parts(&p.version));
        Ok(matching.pop())
    }
}
