//! The OS keyring (macOS Keychain; Linux Secret Service): what mlx-box must send in plaintext — the token
//! this machine presents to another host (user `host:<name>` of the control keyring, `remote::hosts`),
//! and the Hugging Face token a pull presents (user `huggingface`, `mlx-box models login`).
//!
//! Keys and tokens mlx-box only checks live hashed in the key store (`keys::store`). Earlier versions kept
//! them here, under service `mlx-box` (API keys) and `mlx-box-control` (access tokens; `$MLXBOX_KEYRING_SERVICE`
//! replaces `mlx-box`, tests use it): user `index` a JSON list of [`KeyInfo`], user `key:<id>` each secret.
//! [`Keyring::load`] and [`Keyring::forget`] read and remove those for the migration (`keys::migrate`).
//!
//! The keyring calls block (D-Bus / Security framework): call them from `spawn_blocking` in async code.

use super::key::{KeyError, KeyInfo};

/// Default keyring service name.
pub const SERVICE: &str = "mlx-box";
/// The Hugging Face token `mlx-box models pull` presents (`mlx-box models login`), a secret of the
/// control keyring: like a host's token, it is sent in plaintext, so it cannot be kept hashed.
pub const HUB_TOKEN_USER: &str = "huggingface";
const INDEX_USER: &str = "index";

fn platform(e: keyring::Error) -> KeyError {
    KeyError::Unavailable(e.to_string())
}

/// The keyring, opened for one service name.
pub struct Keyring {
    service: String,
}

impl Keyring {
    /// The user's keyring under [`SERVICE`] (or `$MLXBOX_KEYRING_SERVICE`): where earlier versions kept
    /// the API keys. Refuses a build whose keyring would only keep secrets in memory.
    pub fn open() -> Result<Keyring, KeyError> {
        Self::open_suffixed("")
    }

    /// The control keyring: the tokens this machine presents to other hosts (and, in earlier versions,
    /// the remote control API's access tokens).
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

    /// The keyring service name (`mlx-box`, `mlx-box-control`).
    pub fn service(&self) -> &str {
        &self.service
    }

    fn entry(&self, user: &str) -> Result<keyring::Entry, KeyError> {
        keyring::Entry::new(&self.service, user).map_err(platform)
    }

    /// The index of the keys kept here (no secrets). None is an empty list.
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

    /// Every key of the index with its secret. A key whose secret has gone (deleted in a keyring tool)
    /// is skipped.
    pub fn load(&self) -> Result<Vec<(KeyInfo, String)>, KeyError> {
        let mut out = vec![];
        for info in self.list()? {
            match self.entry(&format!("key:{}", info.id))?.get_password() {
                Ok(secret) => out.push((info, secret)),
                Err(keyring::Error::NoEntry) => {
                    tracing::warn!(id = %info.id, "key listed in the keyring's index but missing from the keyring: skipped")
                }
                Err(e) => return Err(platform(e)),
            }
        }
        Ok(out)
    }

    /// Removes key `id` (its secret, then its index entry; the index goes with its last key).
    pub fn forget(&self, id: &str) -> Result<(), KeyError> {
        match self.entry(&format!("key:{id}"))?.delete_credential() {
            Ok(()) | Err(keyring::Error::NoEntry) => {}
            Err(e) => return Err(platform(e)),
        }
        let mut index = self.list()?;
        index.retain(|k| k.id != id);
        self.save_index(&index)
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
}
