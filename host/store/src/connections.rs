//! Connections: stored with their secret values sealed.

use super::*;

impl Store {
    /// Stores (replacing) a connection. Secret values are encrypted before they reach
    /// sled; storing any secret without a key is `NoSecretKey`. `updated_at` is set to now.
    pub fn put_connection(&self, c: &StoredConnection) -> Result<(), StoreError> {
        check_name("connection name", &c.name)?;
        let secrets = if c.secrets.is_empty() {
            Vec::new()
        } else {
            let key = self.key.as_ref().ok_or(StoreError::NoSecretKey)?;
            c.secrets
                .iter()
                .map(|(name, value)| {
                    Ok((
                        name.clone(),
                        hex::encode(secrets::seal(key, &c.name, name, value)?),
                    ))
                })
                .collect::<Result<Vec<_>, StoreError>>()?
        };
        let rest = ConnectionAtRest {
            name: c.name.clone(),
            plugin: c.plugin.clone(),
            config: c.config.clone(),
            secrets,
            directory: c.directory.clone(),
            http_hosts: c.http_hosts.clone(),
            http_internal: c.http_internal,
            state: c.state.clone(),
            updated_at: now_millis(),
        };
        self.connections
            .insert(c.name.as_bytes(), encode(&rest)?)
            .map_err(db_err)?;
        Ok(())
    }

    /// A connection with its secrets decrypted. Secrets stored and no key given is
    /// `NoSecretKey`; a key that does not open them is `Decrypt` naming the connection.
    pub fn connection(&self, name: &str) -> Result<Option<StoredConnection>, StoreError> {
        let Some(bytes) = self.connections.get(name.as_bytes()).map_err(db_err)? else {
            return Ok(None);
        };
        let rest: ConnectionAtRest = decode(|| format!("connections/{name}"), &bytes)?;
        let secrets = if rest.secrets.is_empty() {
            Vec::new()
        } else {
            let key = self.key.as_ref().ok_or(StoreError::NoSecretKey)?;
            rest.secrets
                .iter()
                .map(|(secret, sealed)| {
                    let sealed = hex::decode(sealed)
                        .ok()
                        .ok_or_else(|| StoreError::Corrupt {
                            key: format!("connections/{name}"),
                            reason: format!("secret {secret:?} is not hex"),
                        })?;
                    Ok((
                        secret.clone(),
                        secrets::open(key, &rest.name, secret, &sealed)?,
                    ))
                })
                .collect::<Result<Vec<_>, StoreError>>()?
        };
        Ok(Some(StoredConnection {
            name: rest.name,
            plugin: rest.plugin,
            config: rest.config,
            secrets,
            directory: rest.directory,
            http_hosts: rest.http_hosts,
            http_internal: rest.http_internal,
            state: rest.state,
            updated_at: rest.updated_at,
        }))
    }

    /// Every connection, sorted by name, with secret names only (needs no key).
    pub fn connections(&self) -> Result<Vec<ConnectionSummary>, StoreError> {
        self.connections
            .iter()
            .map(|kv| {
                let (k, v) = kv.map_err(db_err)?;
                let rest: ConnectionAtRest = decode(
                    || format!("connections/{}", String::from_utf8_lossy(&k)),
                    &v,
                )?;
                Ok(ConnectionSummary {
                    name: rest.name,
                    plugin: rest.plugin,
                    secret_names: rest.secrets.into_iter().map(|(n, _)| n).collect(),
                    state: rest.state,
                    updated_at: rest.updated_at,
                })
            })
            .collect()
    }

    /// Removes a connection; false if there was none.
    pub fn delete_connection(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self
            .connections
            .remove(name.as_bytes())
            .map_err(db_err)?
            .is_some())
    }

    /// Records whether a connection works (after a check or a run). Needs no key: the
    /// sealed secrets are carried over untouched.
    pub fn set_connection_state(
        &self,
        name: &str,
        state: ConnectionState,
    ) -> Result<(), StoreError> {
        let now = now_millis();
        self.connections
            .transaction(|t| {
                let Some(bytes) = t.get(name.as_bytes())? else {
                    return abort(Err(StoreError::NotFound {
                        what: "connection",
                        name: name.to_string(),
                    }));
                };
                let mut rest: ConnectionAtRest =
                    abort(decode(|| format!("connections/{name}"), &bytes))?;
                rest.state = state.clone();
                rest.updated_at = now;
                t.insert(name.as_bytes(), abort(encode(&rest))?)?;
                Ok(())
            })
            .map_err(tx_err)
    }
}
