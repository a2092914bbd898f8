//! Connection secrets at rest: the administrator's key and ChaCha20-Poly1305.
//!
//! Every secret value is encrypted on its own, with a fresh random 12-byte nonce, and
//! with the connection name and the secret name as associated data: a ciphertext copied
//! onto another connection or another option fails to decrypt instead of silently
//! becoming that option's value. The key itself is never stored; without it, the
//! secrets in a data directory are useless.

use std::fmt;
use std::path::Path;

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use sha2::{Digest, Sha256};

use super::StoreError;

/// The environment variable holding the key material, when no key file is given.
pub const SECRET_KEY_ENV: &str = "WEIR_SECRET_KEY";

/// Key material shorter than this is refused: a short passphrase hashed into a key is
/// still a short passphrase.
pub const MIN_KEY_MATERIAL_CHARS: usize = 16;

/// Size of a ChaCha20-Poly1305 nonce.
const NONCE_LEN: usize = 12;

/// The key that encrypts connection secrets: 32 bytes derived from what the
/// administrator provides. `Debug` never shows the bytes.
#[derive(Clone)]
pub struct SecretKey([u8; 32]);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

impl SecretKey {
    /// Derives the key from administrator-provided material (the `WEIR_SECRET_KEY` value
    /// or a key file's trimmed contents): at least 16 characters, hashed with SHA-256 so
    /// any string of any length gives a full-size key.
    pub fn from_material(material: &str) -> Result<SecretKey, StoreError> {
        Self::derive(material, "the given key material")
    }

    /// The key from `file` (its trimmed contents) if given, else from the environment
    /// variable `WEIR_SECRET_KEY`; `None` if neither is there (an empty variable counts as
    /// absent, as container tools often set unset variables to "").
    pub fn from_env_or_file(file: Option<&Path>) -> Result<Option<SecretKey>, StoreError> {
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| StoreError::KeyFile {
                path: path.to_path_buf(),
                source,
            })?;
            return Self::derive(text.trim(), &format!("key file {}", path.display())).map(Some);
        }
        match std::env::var(SECRET_KEY_ENV) {
            Ok(material) if material.is_empty() => Ok(None),
            Ok(material) => Self::derive(&material, SECRET_KEY_ENV).map(Some),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(StoreError::WeakKey {
                origin: SECRET_KEY_ENV.to_string(),
                reason: "it is not valid UTF-8".to_string(),
            }),
        }
    }

    fn derive(material: &str, origin: &str) -> Result<SecretKey, StoreError> {
        let chars = material.chars().count();
        if chars < MIN_KEY_MATERIAL_CHARS {
            // Only the length is reported: the material itself must never reach a log.
            return Err(StoreError::WeakKey {
                origin: origin.to_string(),
                reason: format!(
                    "it has {chars} characters; at least {MIN_KEY_MATERIAL_CHARS} are needed"
                ),
            });
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(Sha256::digest(material.as_bytes()).as_slice());
        Ok(SecretKey(key))
    }

    fn cipher(&self) -> ChaCha20Poly1305 {
        ChaCha20Poly1305::new(Key::from_slice(&self.0))
    }
}

/// The associated data binding a ciphertext to one option of one connection. The NUL
/// separators keep ("ab", "c") and ("a", "bc") apart.
fn associated_data(connection: &str, secret: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(16 + connection.len() + secret.len());
    aad.extend_from_slice(b"weir-secret\0");
    aad.extend_from_slice(connection.as_bytes());
    aad.push(0);
    aad.extend_from_slice(secret.as_bytes());
    aad
}

/// Encrypts one secret value: returns nonce followed by ciphertext and tag.
pub(crate) fn seal(
    key: &SecretKey,
    connection: &str,
    secret: &str,
    value: &str,
) -> Result<Vec<u8>, StoreError> {
    let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
    let aad = associated_data(connection, secret);
    let ciphertext = key
        .cipher()
        .encrypt(
            &nonce,
            Payload {
                msg: value.as_bytes(),
                aad: &aad,
            },
        )
        // Only a message beyond ~256 GiB can fail here.
        .map_err(|_| StoreError::Encode {
            reason: format!("could not encrypt secret {secret:?} of connection {connection:?}"),
        })?;
    let mut out = Vec::with_capacity(NONCE_LEN + ciphertext.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ciphertext);
    Ok(out)
}

/// Decrypts what `seal` produced. Any failure — wrong key, tampered bytes, a ciphertext
/// moved to another connection — is a `Decrypt` error naming the connection only.
pub(crate) fn open(
    key: &SecretKey,
    connection: &str,
    secret: &str,
    sealed: &[u8],
) -> Result<String, StoreError> {
    let fail = || StoreError::Decrypt {
        connection: connection.to_string(),
    };
    if sealed.len() < NONCE_LEN {
        return Err(fail());
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
    let aad = associated_data(connection, secret);
    let plain = key
        .cipher()
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad: &aad,
            },
        )
        .map_err(|_| fail())?;
    String::from_utf8(plain).map_err(|_| fail())
}
