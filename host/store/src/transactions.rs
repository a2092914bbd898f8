//! sled itself: free-space checks, the key-derivation metadata, error mapping and transaction helpers. sled errors stay inside the store.

use super::*;

/// Refuses with [`StoreError::LowSpace`] when `dir` has less than `needed` bytes
/// free (0: no check).
pub(super) fn check_free_space(dir: &Path, needed: u64) -> Result<(), StoreError> {
    if needed == 0 {
        return Ok(());
    }
    let free = disk::free_bytes(dir).map_err(|source| StoreError::DirIo {
        dir: dir.to_path_buf(),
        source,
    })?;
    if free < needed {
        tracing::error!(dir = %dir.display(), free, needed, "data directory low on space; store writes refused");
        return Err(StoreError::LowSpace {
            dir: dir.to_path_buf(),
            free,
            needed,
        });
    }
    Ok(())
}

pub(super) const META_DERIVATION: &[u8] = b"meta/key_derivation";
pub(super) const META_SALT: &[u8] = b"meta/key_salt";

/// How the store in `db` derives its key, and its salt. A store without a record
/// is either new — it gets a fresh salt and the salted derivation — or was made
/// before salting: if it holds sealed secrets, they were sealed with SHA-256 of
/// the material, and it keeps that (recorded, so the answer never changes).
pub(super) fn key_derivation(
    db: &sled::Db,
    connections: &sled::Tree,
) -> Result<(Derivation, Vec<u8>), StoreError> {
    let salt = || -> Result<Vec<u8>, StoreError> {
        Ok(db
            .get(META_SALT)
            .map_err(db_err)?
            .map(|s| s.to_vec())
            .unwrap_or_default())
    };
    if let Some(name) = db.get(META_DERIVATION).map_err(db_err)? {
        let name = String::from_utf8_lossy(&name).into_owned();
        let derivation = Derivation::from_name(&name).ok_or_else(|| StoreError::Corrupt {
            key: "meta/key_derivation".to_owned(),
            reason: format!("unknown key derivation {name:?} (a newer weir?)"),
        })?;
        let salt = salt()?;
        if derivation == Derivation::Salted && salt.len() < secrets::SALT_LEN {
            return Err(StoreError::Corrupt {
                key: "meta/key_salt".to_owned(),
                reason: format!("{} bytes; {} expected", salt.len(), secrets::SALT_LEN),
            });
        }
        return Ok((derivation, salt));
    }
    let mut sealed = false;
    for item in connections.iter() {
        let (name, bytes) = item.map_err(db_err)?;
        let rest: ConnectionAtRest = decode(
            || format!("connections/{}", String::from_utf8_lossy(&name)),
            &bytes,
        )?;
        if !rest.secrets.is_empty() {
            sealed = true;
            break;
        }
    }
    let (derivation, salt) = if sealed {
        (Derivation::LegacySha256, Vec::new())
    } else {
        (Derivation::Salted, secrets::new_salt())
    };
    // The salt first: a crash between the two leaves no record, and the next open
    // decides again the same way (a salt alone is never read).
    db.insert(META_SALT, salt.as_slice()).map_err(db_err)?;
    db.insert(META_DERIVATION, derivation.name().as_bytes())
        .map_err(db_err)?;
    db.flush().map_err(db_err)?;
    Ok((derivation, salt))
}

/// Re-seals the secrets of a store made before salting under the salted
/// derivation, with a fresh salt: the re-sealed secrets, the salt and the new
/// derivation are written in one transaction, so a crash leaves the store wholly
/// old or wholly new. `None`, with nothing changed, when `material` does not open
/// every secret (a wrong key: it is reported where it always was, at first use).
pub(super) fn migrate_to_salted(
    db: &sled::Db,
    connections: &sled::Tree,
    material: &SecretKey,
) -> Result<Option<secrets::StoreKey>, StoreError> {
    let old = material.for_store(Derivation::LegacySha256, &[])?;
    let salt = secrets::new_salt();
    let new = material.for_store(Derivation::Salted, &salt)?;
    let mut rewritten = Vec::new();
    let mut count = 0;
    for item in connections.iter() {
        let (name, bytes) = item.map_err(db_err)?;
        let key = || format!("connections/{}", String::from_utf8_lossy(&name));
        let mut rest: ConnectionAtRest = decode(key, &bytes)?;
        for (secret, sealed_hex) in &mut rest.secrets {
            let sealed = hex::decode(&*sealed_hex)
                .ok()
                .ok_or_else(|| StoreError::Corrupt {
                    key: key(),
                    reason: format!("secret {secret:?} is not hex"),
                })?;
            let Ok(plain) = secrets::open(&old, &rest.name, secret, &sealed) else {
                return Ok(None);
            };
            *sealed_hex = hex::encode(secrets::seal(&new, &rest.name, secret, &plain)?);
            count += 1;
        }
        rewritten.push((name, encode(&rest)?));
    }
    let meta: &sled::Tree = db;
    (meta, connections)
        .transaction(|(meta, connections)| {
            for (name, bytes) in &rewritten {
                connections.insert(name.clone(), bytes.clone())?;
            }
            meta.insert(META_SALT, salt.as_slice())?;
            meta.insert(META_DERIVATION, Derivation::Salted.name().as_bytes())?;
            Ok::<(), ConflictableTransactionError<StoreError>>(())
        })
        .map_err(tx_err)?;
    db.flush().map_err(db_err)?;
    tracing::info!(
        secrets = count,
        "secrets re-sealed under a salted key (the store predates salting)"
    );
    Ok(Some(new))
}

pub(super) fn db_err(e: sled::Error) -> StoreError {
    match e {
        sled::Error::Io(e) => StoreError::Io(e),
        sled::Error::Corruption { at, .. } => StoreError::Corrupt {
            key: "<database file>".to_string(),
            reason: match at {
                Some(at) => format!("sled reports corruption at {at}"),
                None => "sled reports corruption".to_string(),
            },
        },
        other => StoreError::Database {
            reason: other.to_string(),
        },
    }
}

pub(super) fn tx_err(e: TransactionError<StoreError>) -> StoreError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => db_err(e),
    }
}

/// Inside a transaction closure: a store error aborts the transaction.
pub(super) fn abort<T>(
    r: Result<T, StoreError>,
) -> Result<T, ConflictableTransactionError<StoreError>> {
    r.map_err(ConflictableTransactionError::Abort)
}

/// Reads and decodes one execution record inside a transaction.
pub(super) fn tx_exec(
    executions: &TransactionalTree,
    id: ExecutionId,
) -> ConflictableTransactionResult<Option<ExecRecord>, StoreError> {
    match executions.get(id_key(id))? {
        None => Ok(None),
        Some(bytes) => abort(decode(|| format!("executions/{id}"), &bytes)).map(Some),
    }
}

/// Writes an execution record and its index summary inside a transaction.
pub(super) fn tx_put_exec(
    executions: &TransactionalTree,
    index: &TransactionalTree,
    rec: &ExecRecord,
) -> ConflictableTransactionResult<(), StoreError> {
    executions.insert(&id_key(rec.id), abort(encode(rec))?)?;
    index.insert(
        index_key(&rec.project, rec.id),
        abort(encode(&rec.summary()))?,
    )?;
    Ok(())
}
