//! API keys of the proxy, kept in the OS keyring (macOS Keychain; Linux Secret Service).
//!
//! Layout under keyring service `mlx-box` (or `$MLXBOX_KEYRING_SERVICE`, which tests use):
//! - user `key:<id>`: the secret itself, one entry per key;
//! - user `index`: JSON list of [`KeyInfo`] (id, label, created, last 4 chars, scope), never a secret.
//!
//! The remote control API's access tokens live the same way under `<service>-control` (their scope is
//! their role, `read` or `admin`), with the tokens this machine presents to other hosts (user
//! `host:<name>`).
//!
//! So `mlx-box keys list` shows what exists without printing a key, and a key is readable only through
//! the keyring. Plaintext `api_key`/`api_keys` in settings.toml still work; [`import_from_settings`]
//! moves them here and removes them from the file (comments and layout kept).
//!
//! The keyring calls block (D-Bus / Security framework): call them from `spawn_blocking` in async code.

use crate::config::{self, ConfigEdit};
pub use mlxbox_api::keys::{ImportReport, KeyInfo, KeyList, NewKey, NewKeyRequest};
use std::path::{Path, PathBuf};

/// Default keyring service name.
pub const SERVICE: &str = "mlx-box";
const INDEX_USER: &str = "index";
/// Prefix of generated keys: recognisable in a leak scan, like `sk-` of other providers.
pub const KEY_PREFIX: &str = "sk-mlxbox-";

/// A key with its secret (in memory only: the proxy's key set).
#[derive(Clone)]
pub struct ApiKey {
    pub info: KeyInfo,
    pub secret: String,
}

impl std::fmt::Debug for ApiKey {
    // Never print the secret, even in a debug log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKey")
            .field("info", &self.info)
            .field("secret", &"…")
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the OS keyring cannot be used: {0}. On Linux a Secret Service (gnome-keyring, KeePassXC) must run in your session and be unlocked; on macOS allow mlx-box in Keychain Access. Meanwhile keys can stay in settings.toml ([server] api_keys)")]
    Unavailable(String),
    #[error("this build of mlx-box has no OS keyring store for this platform (keys would live in memory only); build it on macOS or Linux")]
    NoPlatformStore,
    #[error("no API key `{0}`: see `mlx-box keys list`")]
    NotFound(String),
    #[error("the key index in the OS keyring is damaged ({0}); remove the `index` entry of service `mlx-box` in your keyring tool and add the keys again")]
    BadIndex(String),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot edit {path}: {0}", path = .1.display())]
    Edit(String, PathBuf),
    #[error(
        "cannot write {path}: {source}; the keys are in the keyring now but still in the file too"
    )]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no randomness from the OS: {0}")]
    Random(String),
}

fn platform(e: keyring::Error) -> KeyError {
    KeyError::Unavailable(e.to_string())
}

/// A strong random key: the prefix and 32 random bytes (hex).
pub fn generate() -> Result<String, KeyError> {
    Ok(format!("{KEY_PREFIX}{}", hex::encode(random::<32>()?)))
}

fn random<const N: usize>() -> Result<[u8; N], KeyError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| KeyError::Random(e.to_string()))?;
    Ok(b)
}

fn last4(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    chars[chars.len().saturating_sub(4)..].iter().collect()
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The keyring, opened for one service name.
pub struct Keyring {
    service: String,
}

impl Keyring {
    /// The user's keyring under [`SERVICE`] (or `$MLXBOX_KEYRING_SERVICE`). Refuses a build whose keyring
    /// would only keep secrets in memory.
    pub fn open() -> Result<Keyring, KeyError> {
        Self::open_suffixed("")
    }

    /// The control keyring: the remote control API's access tokens, and the tokens for other hosts.
    pub fn open_control() -> Result<Keyring, KeyError> {
        Self::open_suffixed("-control")
    }

    fn open_suffixed(suffix: &str) -> Result<Keyring, KeyError> {
        use keyring::credential::CredentialPersistence;
        let persistence = keyring::default::default_credential_builder().persistence();
        if !matches!(persistence, CredentialPersistence::UntilDelete) {
            return Err(KeyError::NoPlatformStore);
        }
        let service = std::env::var("MLXBOX_KEYRING_SERVICE")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| SERVICE.to_string());
        Ok(Keyring {
            service: service + suffix,
        })
    }

    fn entry(&self, user: &str) -> Result<keyring::Entry, KeyError> {
        keyring::Entry::new(&self.service, user).map_err(platform)
    }

    /// Every key's info (no secrets). An empty keyring is an empty list.
    pub fn list(&self) -> Result<Vec<KeyInfo>, KeyError> {
        match self.entry(INDEX_USER)?.get_password() {
            Ok(text) => serde_json::from_str(&text).map_err(|e| KeyError::BadIndex(e.to_string())),
            Err(keyring::Error::NoEntry) => Ok(vec![]),
            Err(e) => Err(platform(e)),
        }
    }

    fn save_index(&self, index: &[KeyInfo]) -> Result<(), KeyError> {
        let e = self.entry(INDEX_USER)?;
        if index.is_empty() {
            return match e.delete_credential() {
                Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
                Err(e) => Err(platform(e)),
            };
        }
        e.set_password(&serde_json::to_string(index).unwrap_or_default())
            .map_err(platform)
    }

    /// Makes a new key, stores it, and returns it: the only time it is shown.
    pub fn add(
        &self,
        name: Option<&str>,
        services: &[String],
    ) -> Result<(KeyInfo, String), KeyError> {
        let secret = generate()?;
        let info = self.insert(&secret, name, services)?;
        Ok((info, secret))
    }

    /// Stores a given secret (import). The same secret stored twice is kept once.
    pub fn insert(
        &self,
        secret: &str,
        name: Option<&str>,
        services: &[String],
    ) -> Result<KeyInfo, KeyError> {
        let mut index = self.list()?;
        for k in &index {
            if self
                .entry(&format!("key:{}", k.id))?
                .get_password()
                .ok()
                .as_deref()
                == Some(secret)
            {
                return Ok(k.clone());
            }
        }
        let info = KeyInfo {
            id: hex::encode(random::<4>()?),
            name: name.map(str::to_string),
            created: now_s(),
            last4: last4(secret),
            services: services.to_vec(),
        };
        // The secret first, then the index: a crash in between leaves an orphan entry, never an index
        // entry without its key.
        self.entry(&format!("key:{}", info.id))?
            .set_password(secret)
            .map_err(platform)?;
        index.push(info.clone());
        self.save_index(&index)?;
        Ok(info)
    }

    /// Removes a key by id (or by its label when that is unique).
    pub fn remove(&self, id_or_name: &str) -> Result<KeyInfo, KeyError> {
        let mut index = self.list()?;
        let pos = index
            .iter()
            .position(|k| k.id == id_or_name)
            .or_else(|| {
                let named: Vec<usize> = (0..index.len())
                    .filter(|&i| index[i].name.as_deref() == Some(id_or_name))
                    .collect();
                (named.len() == 1).then(|| named[0])
            })
            .ok_or_else(|| KeyError::NotFound(id_or_name.to_string()))?;
        let info = index.remove(pos);
        match self.entry(&format!("key:{}", info.id))?.delete_credential() {
            Ok(()) | Err(keyring::Error::NoEntry) => {}
            Err(e) => return Err(platform(e)),
        }
        self.save_index(&index)?;
        Ok(info)
    }

    /// A secret stored under `user` outside the index (a host's token), if any.
    pub fn secret(&self, user: &str) -> Result<Option<String>, KeyError> {
        match self.entry(user)?.get_password() {
            Ok(s) => Ok(Some(s)),
            Err(keyring::Error::NoEntry) => Ok(None),
            Err(e) => Err(platform(e)),
        }
    }

    pub fn set_secret(&self, user: &str, secret: &str) -> Result<(), KeyError> {
        self.entry(user)?.set_password(secret).map_err(platform)
    }

    pub fn delete_secret(&self, user: &str) -> Result<(), KeyError> {
        match self.entry(user)?.delete_credential() {
            Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
            Err(e) => Err(platform(e)),
        }
    }

    /// Every key with its secret (what the proxy checks against). A key whose secret has gone from the
    /// keyring (deleted in a keyring tool) is skipped.
    pub fn load(&self) -> Result<Vec<ApiKey>, KeyError> {
        let mut out = vec![];
        for info in self.list()? {
            match self.entry(&format!("key:{}", info.id))?.get_password() {
                Ok(secret) => out.push(ApiKey { info, secret }),
                Err(keyring::Error::NoEntry) => {
                    tracing::warn!(id = %info.id, "API key listed in the index but missing from the keyring: skipped")
                }
                Err(e) => return Err(platform(e)),
            }
        }
        Ok(out)
    }
}

/// Every `[server] api_key` / `api_keys` string of a settings text, blank ones included, in file order.
fn key_entries(text: &str) -> Vec<String> {
    let Ok(doc) = text.parse::<toml_edit::DocumentMut>() else {
        return vec![];
    };
    let Some(server) = doc.get("server") else {
        return vec![];
    };
    let single = server.get("api_key").and_then(|v| v.as_str()).into_iter();
    let list = server
        .get("api_keys")
        .and_then(|v| v.as_array())
        .into_iter()
        .flat_map(|a| a.iter().filter_map(|v| v.as_str()));
    single.chain(list).map(str::to_string).collect()
}

/// The plaintext keys of a settings.toml text (`[server] api_key` and `api_keys`), in file order; a blank
/// entry is no key.
pub fn plaintext_keys(text: &str) -> Vec<String> {
    let mut out = key_entries(text);
    out.retain(|k| !k.trim().is_empty());
    out.dedup();
    out
}

/// How many `api_key` / `api_keys` entries of a settings text are blank.
fn blank_keys(text: &str) -> usize {
    key_entries(text)
        .iter()
        .filter(|k| k.trim().is_empty())
        .count()
}

/// The settings text without its plaintext keys (toml_edit: everything else kept byte for byte).
pub fn strip_plaintext_keys(text: &str) -> Result<String, config::EditError> {
    config::apply_edits(
        text,
        &[
            ConfigEdit {
                path: vec!["server".into(), "api_key".into()],
                value: None,
            },
            ConfigEdit {
                path: vec!["server".into(), "api_keys".into()],
                value: None,
            },
        ],
    )
}

/// `mlx-box keys import`: every plaintext key of `path` into the keyring, then removed from the file
/// (atomic write; comments and layout kept). Keys go in first: a failure never loses one. No `.bak` is
/// made of a file whose only change is its keys leaving it (it would keep them in plaintext), and an
/// older `.bak` that holds keys is scrubbed too.
pub fn import_from_settings(ring: &Keyring, path: &Path) -> Result<ImportReport, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|e| KeyError::Read {
        path: path.to_path_buf(),
        source: e,
    })?;
    let keys = plaintext_keys(&text);
    let blank_removed = u32::try_from(blank_keys(&text)).unwrap_or(u32::MAX);
    let mut report = ImportReport {
        imported: vec![],
        blank_removed,
        scrubbed_backup: None,
    };
    if keys.is_empty() && blank_removed == 0 {
        return Ok(report);
    }
    let stripped =
        strip_plaintext_keys(&text).map_err(|e| KeyError::Edit(e.to_string(), path.into()))?;
    let label = format!("imported from {}", path.display());
    for k in &keys {
        report.imported.push(ring.insert(k, Some(&label), &[])?);
    }
    let write = |p: &Path, bytes: &[u8]| {
        config::atomic_write(p, bytes).map_err(|e| KeyError::Write {
            path: p.to_path_buf(),
            source: e,
        })
    };
    write(path, stripped.as_bytes())?;
    let bak = config::backup_path(path);
    if let Ok(old) = std::fs::read_to_string(&bak) {
        if !plaintext_keys(&old).is_empty() {
            match strip_plaintext_keys(&old) {
                Ok(clean) => {
                    write(&bak, clean.as_bytes())?;
                    let _ = std::fs::set_permissions(
                        &bak,
                        std::os::unix::fs::PermissionsExt::from_mode(0o600),
                    );
                }
                // A backup we cannot edit key by key goes: it holds keys.
                Err(_) => std::fs::remove_file(&bak).map_err(|e| KeyError::Write {
                    path: bak.clone(),
                    source: e,
                })?,
            }
            report.scrubbed_backup = Some(bak);
        }
    }
    Ok(report)
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
    fn debug_never_shows_the_secret() {
        let k = ApiKey {
            info: KeyInfo {
                id: "1".into(),
                name: None,
                created: 0,
                last4: "cret".into(),
                services: vec![],
            },
            secret: "sk-secret".into(),
        };
        assert!(!format!("{k:?}").contains("sk-secret"));
    }

    #[test]
    fn strip_keeps_comments_and_layout() {
        let text = "# top comment\n[server]\n# the host\nhost = \"127.0.0.1\"  # trailing\napi_key = \"k0\"\napi_keys = [\"k1\", \"k2\"]\n\n[services.chat]\n# chat comment\nport = 8080\n";
        assert_eq!(plaintext_keys(text), ["k0", "k1", "k2"]);
        let out = strip_plaintext_keys(text).unwrap();
        assert_eq!(
            out,
            "# top comment\n[server]\n# the host\nhost = \"127.0.0.1\"  # trailing\n\n[services.chat]\n# chat comment\nport = 8080\n"
        );
        assert!(plaintext_keys(&out).is_empty());
    }

    #[test]
    fn scope() {
        let mut i = KeyInfo {
            id: "1".into(),
            name: None,
            created: 0,
            last4: "x".into(),
            services: vec![],
        };
        assert!(i.allows("chat"));
        i.services = vec!["embed".into()];
        assert!(!i.allows("chat") && i.allows("embed"));
    }
}
