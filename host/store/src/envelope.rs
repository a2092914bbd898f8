//! Envelope: every value is `{"v":1, ...fields}`, so a later weir can tell old data from corrupt data.

use super::*;

/// Writes `{"v":1,` followed by the body's own fields. The body must serialize to a JSON
/// object with no field named `v` (true of every at-rest type here).
pub(super) fn encode<T: Serialize>(body: &T) -> Result<Vec<u8>, StoreError> {
    let json = serde_json::to_vec(body).map_err(|e| StoreError::Encode {
        reason: e.to_string(),
    })?;
    let Some(rest) = json.strip_prefix(b"{") else {
        return Err(StoreError::Encode {
            reason: "a stored value must be a JSON object".to_string(),
        });
    };
    let mut out = Vec::with_capacity(json.len() + 8);
    out.extend_from_slice(b"{\"v\":1");
    if rest != b"}" {
        out.push(b',');
    }
    out.extend_from_slice(rest);
    Ok(out)
}

#[derive(Deserialize)]
pub(super) struct VersionOnly {
    v: Option<serde_json::Value>,
}

/// Reads a value written by `encode`. The body is parsed from the whole object (serde
/// ignores the `v` field), so the check costs a prefix comparison on the common path.
pub(super) fn decode<T: DeserializeOwned>(
    key: impl Fn() -> String,
    bytes: &[u8],
) -> Result<T, StoreError> {
    let current = bytes.starts_with(b"{\"v\":1,") || bytes == b"{\"v\":1}";
    if !current {
        // Not as this weir writes it: tell an unknown version from damage.
        match serde_json::from_slice::<VersionOnly>(bytes) {
            Ok(VersionOnly { v: Some(v) }) => match v.as_u64() {
                Some(FORMAT_VERSION) => {}
                Some(found_version) => {
                    return Err(StoreError::Format {
                        key: key(),
                        found_version,
                    });
                }
                None => {
                    return Err(StoreError::Corrupt {
                        key: key(),
                        reason: format!("format version {v} is not a number"),
                    });
                }
            },
            Ok(VersionOnly { v: None }) => {
                return Err(StoreError::Corrupt {
                    key: key(),
                    reason: "no format version".to_string(),
                });
            }
            Err(e) => {
                return Err(StoreError::Corrupt {
                    key: key(),
                    reason: e.to_string(),
                });
            }
        }
    }
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        key: key(),
        reason: e.to_string(),
    })
}
