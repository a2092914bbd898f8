//! Connection secrets at rest: the administrator's key and ChaCha20-Poly1305.
//!
//! Every secret value is encrypted on its own, with a fresh random 12-byte nonce, and
//! with the connection name and the secret name as associated data: a ciphertext copied
//! onto another connection or another option fails to decrypt instead of silently
//! becoming that option's value. The key itself is never stored; without it, the
//! secrets in a data directory are useless.
//!
//! The administrator gives either a key — exactly 32 bytes, written as 64 hex
//! digits or in base64 — used as is, or a passphrase (16 characters at least),
//! stretched with Argon2id (19 MiB, 2 passes) and a random 16-byte salt kept in
//! the store (not secret; it makes every store's key its own, so one precomputed
//! table of passphrases does not serve all stores). How a store turns material
//! into its key is recorded in the store ([`Derivation`]): a store made before
//! salting (its key SHA-256 of the material) is re-sealed under the salted
//! derivation the first time it opens with a key that opens all its secrets, in
//! one transaction; opened without a key, or with one that does not open them,
//! it keeps the old derivation and nothing changes.

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

/// What the administrator gave to encrypt connection secrets; the store turns it
/// into its key ([`SecretKey::for_store`]). `Debug` never shows it.
#[derive(Clone)]
pub struct SecretKey(Material);

#[derive(Clone)]
enum Material {
    /// 32 bytes given as such (64 hex digits or base64); the text kept for legacy
    /// stores, whose key is SHA-256 of it.
    Key {
        bytes: [u8; 32],
        text: String,
    },
    Passphrase(String),
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

/// How a store derives its key from the material; recorded in the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Derivation {
    /// Before salting: SHA-256 of the material, whatever it is.
    LegacySha256,
    /// A 32-byte key as is; a passphrase through Argon2id with the store's salt.
    Salted,
}

impl Derivation {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Derivation::LegacySha256 => "sha256",
            Derivation::Salted => "argon2id-v1",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<Derivation> {
        match name {
            "sha256" => Some(Derivation::LegacySha256),
            "argon2id-v1" => Some(Derivation::Salted),
            _ => None,
        }
    }
}

/// The key a store seals with: 32 bytes. `Debug` never shows them.
#[derive(Clone)]
pub(crate) struct StoreKey([u8; 32]);

impl fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StoreKey(..)")
    }
}

/// Bytes of the salt a new store gets.
pub(crate) const SALT_LEN: usize = 16;

/// A fresh random salt.
pub(crate) fn new_salt() -> Vec<u8> {
    // A fresh ChaCha20 key is 32 bytes from the OS generator; half is plenty.
    ChaCha20Poly1305::generate_key(&mut OsRng)[..SALT_LEN].to_vec()
}

impl SecretKey {
    /// Takes administrator-provided material (the `WEIR_SECRET_KEY` value or a key
    /// file's trimmed contents): a 32-byte key (64 hex digits, or base64), or a
    /// passphrase of at least 16 characters. The store derives its key from it.
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
        if let Some(bytes) = key_bytes(material) {
            return Ok(SecretKey(Material::Key {
                bytes,
                text: material.to_owned(),
            }));
        }
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
        Ok(SecretKey(Material::Passphrase(material.to_owned())))
    }

    /// Whether the material is a 32-byte key rather than a passphrase.
    pub fn is_raw_key(&self) -> bool {
        matches!(self.0, Material::Key { .. })
    }

    /// The key of a store that derives it by `derivation` with `salt`.
    pub(crate) fn for_store(
        &self,
        derivation: Derivation,
        salt: &[u8],
    ) -> Result<StoreKey, StoreError> {
        let mut key = [0u8; 32];
        match (derivation, &self.0) {
            (Derivation::LegacySha256, Material::Key { text, .. })
            | (Derivation::LegacySha256, Material::Passphrase(text)) => {
                key.copy_from_slice(Sha256::digest(text.as_bytes()).as_slice());
            }
            (Derivation::Salted, Material::Key { bytes, .. }) => key = *bytes,
            (Derivation::Salted, Material::Passphrase(p)) => {
                argon2::Argon2::default()
                    .hash_password_into(p.as_bytes(), salt, &mut key)
                    .map_err(|e| StoreError::Encode {
                        reason: format!("deriving the key from the passphrase: {e}"),
                    })?;
            }
        }
        Ok(StoreKey(key))
    }
}

impl StoreKey {
    fn cipher(&self) -> ChaCha20Poly1305 {
        ChaCha20Poly1305::new(Key::from_slice(&self.0))
    }
}

/// 32 bytes written as 64 hex digits or base64 (padded or not), else `None`.
fn key_bytes(material: &str) -> Option<[u8; 32]> {
    use base64::Engine as _;
    let mut out = [0u8; 32];
    if hex::decode_to_slice(material, &mut out).is_ok() {
        return Some(out);
    }
    if matches!(material.len(), 43 | 44) {
        let engines = [
            base64::engine::general_purpose::STANDARD,
            base64::engine::general_purpose::STANDARD_NO_PAD,
            base64::engine::general_purpose::URL_SAFE,
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ];
        for engine in engines {
            if let Ok(bytes) = engine.decode(material) {
                return bytes.try_into().ok();
            }
        }
    }
    None
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
    key: &StoreKey,
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
    key: &StoreKey,
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
