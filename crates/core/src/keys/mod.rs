//! Keys mlx-box checks: the proxy's API keys and the remote control API's access tokens.
//!
//! - [`key`]: a key in memory ([`ApiKey`]: its [`KeyInfo`] and a [`Verifier`], a salted SHA-256 or a
//!   plaintext key of settings.toml), making one, the errors;
//! - [`store`]: the key store, `<state>/keys.json` and `<state>/tokens.json` (0600, hashed, written
//!   atomically): what the daemon checks requests against, readable without a login session;
//! - [`keyring`]: the OS keyring (macOS Keychain; Linux Secret Service), which keeps only what mlx-box must
//!   send in plaintext: the tokens this machine presents to other hosts (`remote::hosts`);
//! - [`migrate`]: the keys and tokens earlier versions kept in the OS keyring, moved into the store once;
//! - [`plaintext`]: the plaintext `api_key`/`api_keys` of settings.toml, which still work;
//!   [`import_from_settings`] hashes them into the store and removes them from the file (comments and
//!   layout kept).
//!
//! So `mlx-box keys list` shows what exists without printing a key, and no file holds one.

pub mod key;
pub mod keyring;
pub mod migrate;
pub mod plaintext;
pub mod store;

pub use key::{
    generate, ApiKey, ImportReport, KeyError, KeyInfo, StoreError, Verifier, KEY_PREFIX,
};
pub use keyring::{Keyring, SERVICE};
pub use migrate::Migrated;
pub use mlxbox_api::keys::{KeyList, NewKey, NewKeyRequest};
pub use plaintext::{import_from_settings, plaintext_keys, strip_plaintext_keys};
pub use store::{KeyStore, Kind};

#[cfg(test)]
mod tests {
    use super::*;

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
