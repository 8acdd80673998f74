//! What a key is in memory and how one is checked: [`ApiKey`] (its [`KeyInfo`] and a [`Verifier`]),
//! making one ([`generate`]), the errors of the key modules ([`KeyError`], [`StoreError`]).
//!
//! A key is 32 random bytes (256 bits), so a salted SHA-256 of it is as good as a slow password hash: a
//! guess costs the same 2^256 either way. What is stored is `SHA-256(salt || key)` with a random 16-byte
//! salt per key; checking a presented key hashes it with each entry's salt and compares in constant time.

pub use mlxbox_api::keys::{ImportReport, KeyInfo};
use sha2::{Digest, Sha256};
use std::path::PathBuf;

/// Prefix of generated keys: recognisable in a leak scan, like `sk-` of other providers.
pub const KEY_PREFIX: &str = "sk-mlxbox-";

/// How a presented key is checked against a known one.
#[derive(Clone)]
pub enum Verifier {
    /// A stored key: its salt and `SHA-256(salt || key)`. The key itself is kept nowhere.
    Hashed { salt: [u8; 16], hash: [u8; 32] },
    /// A plaintext key of settings.toml (`[server] api_key`/`api_keys`), compared as is.
    Plain(String),
}

impl Verifier {
    /// A hashed verifier of `secret` with a fresh random salt.
    pub fn hashed(secret: &str) -> Result<Verifier, KeyError> {
        let salt = random::<16>()?;
        Ok(Verifier::Hashed {
            salt,
            hash: digest(&salt, secret.as_bytes()),
        })
    }

    /// Whether `given` is this key. Constant time for a given verifier: a hashed one always hashes,
    /// and the comparison does not stop at the first differing byte.
    pub fn matches(&self, given: &[u8]) -> bool {
        match self {
            Verifier::Hashed { salt, hash } => ct_eq(&digest(salt, given), hash),
            Verifier::Plain(secret) => ct_eq(secret.as_bytes(), given),
        }
    }

    /// A plaintext verifier that matches nothing a client can send (an empty or blank key).
    pub fn is_blank(&self) -> bool {
        matches!(self, Verifier::Plain(s) if s.trim().is_empty())
    }
}

/// `SHA-256(salt || secret)`.
pub fn digest(salt: &[u8; 16], secret: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(secret);
    h.finalize().into()
}

/// Constant-time comparison: the time taken does not tell how much of a key was right.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u8 | ((a.len() ^ b.len()) >> 8) as u8;
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

/// A key as the proxy (or the control API, for a token) checks it.
#[derive(Clone)]
pub struct ApiKey {
    pub info: KeyInfo,
    pub verifier: Verifier,
}

impl ApiKey {
    /// A plaintext key of settings.toml: id `settings.toml`, every service.
    pub fn plain(secret: &str) -> ApiKey {
        ApiKey {
            info: KeyInfo {
                id: "settings.toml".into(),
                name: None,
                created: 0,
                last4: String::new(),
                services: vec![],
            },
            verifier: Verifier::Plain(secret.to_string()),
        }
    }
}

impl std::fmt::Debug for ApiKey {
    // Never print a secret or a hash, even in a debug log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.verifier {
            Verifier::Hashed { .. } => "hashed",
            Verifier::Plain(_) => "plaintext",
        };
        f.debug_struct("ApiKey")
            .field("info", &self.info)
            .field("verifier", &kind)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the OS keyring cannot be used: {0}. On Linux a Secret Service (gnome-keyring, KeePassXC) must run in your session and be unlocked; on macOS allow mlx-box in Keychain Access")]
    Unavailable(String),
    #[error("this build of mlx-box has no OS keyring store for this platform (secrets would live in memory only); build it on macOS or Linux")]
    NoPlatformStore,
    #[error("no {noun} `{id}`: see `mlx-box {cmd} list`")]
    NotFound {
        noun: &'static str,
        cmd: &'static str,
        id: String,
    },
    #[error("the key index in the OS keyring is damaged ({0}); remove the `index` entry of service `mlx-box` in your keyring tool")]
    BadIndex(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot edit {path}: {0}", path = .1.display())]
    Edit(String, PathBuf),
    #[error(
        "cannot write {path}: {source}; the keys are in the key store now but still in the file too"
    )]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no randomness from the OS: {0}")]
    Random(String),
    #[error("the key store task failed: {0}")]
    Task(String),
}

/// Why a key store file cannot be used. Each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the key store {path} cannot be read: {source}; fix or remove it, then `mlx-box keys reload`", path = .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the key store {path} is damaged ({reason}); fix or remove it (its keys are then gone: make new ones), then `mlx-box keys reload`", path = .path.display())]
    Damaged { path: PathBuf, reason: String },
    #[error("the key store {path} is larger than {max} bytes, more than any key store mlx-box writes; fix or remove it, then `mlx-box keys reload`", path = .path.display())]
    TooLarge { path: PathBuf, max: u64 },
    #[error("the key store {path} holds {count} entries, more than the {max} mlx-box keeps; fix or remove it, then `mlx-box keys reload`", path = .path.display())]
    TooMany {
        path: PathBuf,
        count: usize,
        max: usize,
    },
    #[error("the key store {path} was written by a newer mlx-box (format {found}, this one reads {known}); run that version, or remove the file, then `mlx-box keys reload`", path = .path.display())]
    Version {
        path: PathBuf,
        found: u32,
        known: u32,
    },
    #[error("the key store {path} is full ({max} entries): remove some first", path = .path.display())]
    Full { path: PathBuf, max: usize },
    #[error("cannot write the key store {path}: {source}", path = .path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A strong random key: the prefix and 32 random bytes (hex).
pub fn generate() -> Result<String, KeyError> {
    Ok(format!("{KEY_PREFIX}{}", hex::encode(random::<32>()?)))
}

pub fn random<const N: usize>() -> Result<[u8; N], KeyError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| KeyError::Random(e.to_string()))?;
    Ok(b)
}

/// The last 4 characters of a key, to tell keys apart.
pub fn last4(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    chars[chars.len().saturating_sub(4)..].iter().collect()
}

pub fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_long_random_and_prefixed() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with(KEY_PREFIX));
        assert_eq!(a.len(), KEY_PREFIX.len() + 64);
        assert_eq!(last4(&a), &a[a.len() - 4..]);
        assert_eq!(last4("ab"), "ab");
    }

    #[test]
    fn debug_never_shows_the_secret_or_its_hash() {
        let mut k = ApiKey::plain("sk-secret");
        assert!(!format!("{k:?}").contains("sk-secret"));
        k.verifier = Verifier::hashed("sk-secret").unwrap();
        let Verifier::Hashed { hash, .. } = &k.verifier else {
            unreachable!()
        };
        let shown = format!("{k:?}");
        assert!(!shown.contains(&hex::encode(hash)) && !shown.contains("sk-secret"));
    }

    #[test]
    fn a_hashed_verifier_matches_its_key_only() {
        let v = Verifier::hashed("sk-mlxbox-right").unwrap();
        assert!(v.matches(b"sk-mlxbox-right"));
        for wrong in [
            &b"sk-mlxbox-righ"[..],
            b"sk-mlxbox-rightt",
            b"",
            b"SK-MLXBOX-RIGHT",
        ] {
            assert!(!v.matches(wrong));
        }
        // Two verifiers of one key differ (their salts), and each still matches it.
        let w = Verifier::hashed("sk-mlxbox-right").unwrap();
        let (Verifier::Hashed { salt: a, hash: ha }, Verifier::Hashed { salt: b, hash: hb }) =
            (&v, &w)
        else {
            unreachable!()
        };
        assert!(a != b && ha != hb);
        assert!(w.matches(b"sk-mlxbox-right"));
        assert!(Verifier::Plain("k".into()).matches(b"k"));
        assert!(!Verifier::Plain("k".into()).matches(b"kk"));
        assert!(Verifier::Plain(" ".into()).is_blank());
        assert!(!ct_eq(&[0; 256], &[0; 512]), "lengths differing by 256");
    }
}
