//! The key service: the set of API keys every frontend listener checks (the OS keyring plus the plaintext
//! keys of settings.toml), and the only writer of the keyring while a daemon runs (the CLI and the app ask
//! it). Owns the `keyring` and `plaintext-keys` alerts.

use crate::alerts::AlertSource;
use crate::api::AlertSeverity;
use crate::config::{self, Settings};
use crate::keys::{ImportReport, KeyError, KeyInfo, Keyring};
use crate::proxy::{KeySet, SharedKeys};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

pub struct KeyService {
    keys: SharedKeys,
    config_path: PathBuf,
    alerts: AlertSource,
    /// The keyring error logged last (so a reload does not log it again).
    warned: Mutex<Option<String>>,
    /// Held while keys load (see `load`).
    loading: tokio::sync::Mutex<()>,
    /// The plaintext keys of the settings applied last, and whether any service has a frontend port.
    plaintext: Mutex<(Vec<String>, bool)>,
    /// The remote control API's access tokens (read from the control keyring while `[control] listen`
    /// is set).
    tokens: Arc<crate::remote::tokens::Tokens>,
    control_on: std::sync::atomic::AtomicBool,
}

/// Runs a keyring call (blocking: D-Bus / Security framework) off the async threads.
pub async fn keyring<T: Send + 'static>(
    f: impl FnOnce(&Keyring) -> Result<T, KeyError> + Send + 'static,
) -> Result<T, KeyError> {
    tokio::task::spawn_blocking(move || f(&Keyring::open()?))
        .await
        .unwrap_or_else(|e| Err(KeyError::Unavailable(e.to_string())))
}

impl KeyService {
    pub fn new(config_path: PathBuf, alerts: AlertSource) -> Self {
        KeyService {
            keys: Default::default(),
            config_path,
            alerts,
            warned: Mutex::new(None),
            loading: tokio::sync::Mutex::new(()),
            plaintext: Mutex::new((vec![], false)),
            tokens: Default::default(),
            control_on: Default::default(),
        }
    }

    /// The live key set, shared with the listeners (replaced as a whole on every load).
    pub fn shared(&self) -> SharedKeys {
        self.keys.clone()
    }

    /// The access tokens the remote control listener checks (replaced on every load).
    pub fn tokens(&self) -> Arc<crate::remote::tokens::Tokens> {
        self.tokens.clone()
    }

    pub fn has_keys(&self) -> bool {
        !self.keys.read().unwrap().is_empty()
    }

    /// Reads the keys again (the keyring, and the plaintext ones when `settings` is given) and hands them
    /// to the listeners at once. The keyring is read only when some service has a frontend port: a daemon
    /// without a proxy never asks for it (no unlock prompt, no alert). Returns how many keys are served.
    pub async fn load(&self, settings: Option<&Settings>) -> usize {
        // One load at a time: a `keys reload` that read the plaintext keys before a settings reload
        // changed them must not finish after it and put back a stale key set and alert.
        let _one = self.loading.lock().await;
        let (plaintext, proxied) = {
            let mut g = self.plaintext.lock().unwrap();
            if let Some(s) = settings {
                // Every listener that checks keys: a service's port, the one endpoint, a pool's port,
                // a `/metrics` port off loopback.
                let proxied = !crate::proxy::ListenerConfig::all(s).is_empty()
                    || s.pools.iter().any(|p| p.port.is_some())
                    || s.metrics.listen.is_some_and(|a| !a.ip().is_loopback());
                *g = (s.server.api_keys.clone(), proxied);
            }
            g.clone()
        };
        let from_ring = if proxied {
            keyring(|k| k.load()).await.map_err(|e| e.to_string())
        } else {
            Ok(vec![])
        };
        self.keyring_alert(from_ring.as_ref().err());
        self.plaintext_alert(plaintext.len());
        let set = KeySet::new(from_ring, &plaintext);
        let n = set.len();
        *self.keys.write().unwrap() = Arc::new(set);
        use std::sync::atomic::Ordering::Relaxed;
        if let Some(s) = settings {
            self.control_on.store(s.control.listen.is_some(), Relaxed);
        }
        if self.control_on.load(Relaxed) {
            let tokens =
                tokio::task::spawn_blocking(|| crate::keys::Keyring::open_control()?.load())
                    .await
                    .unwrap_or_else(|e| Err(KeyError::Unavailable(e.to_string())));
            self.tokens.replace(tokens.map_err(|e| e.to_string()));
        } else {
            self.tokens.replace(Ok(vec![]));
        }
        n
    }

    fn keyring_alert(&self, error: Option<&String>) {
        let Some(e) = error else {
            *self.warned.lock().unwrap() = None;
            self.alerts.clear("keyring");
            return;
        };
        // Logged when it changes, not at every reload (the alert carries it meanwhile).
        let mut last = self.warned.lock().unwrap();
        if last.as_deref() != Some(e.as_str()) {
            tracing::warn!("API keys: {e}");
            *last = Some(e.clone());
        }
        drop(last);
        self.alerts.raise(
            "keyring",
            AlertSeverity::Warning,
            "The OS keyring cannot be read",
            format!("{e}. Frontend ports accept only the keys in settings.toml meanwhile (none: they answer 503). Then: `mlx-box keys reload`."),
        );
    }

    fn plaintext_alert(&self, n: usize) {
        if n == 0 {
            self.alerts.clear("plaintext-keys");
            return;
        }
        let readable = config::readable_by_others(&self.config_path)
            .map(|mode| {
                format!(
                    " Other users can read the file (mode {mode:04o}): `chmod 600 {}`.",
                    self.config_path.display()
                )
            })
            .unwrap_or_default();
        self.alerts.raise(
            "plaintext-keys",
            AlertSeverity::Warning,
            "API keys are stored in plaintext",
            format!(
                "settings.toml holds {n} API key(s) in [server] api_key/api_keys. Run `mlx-box keys import` to move them into the OS keyring (the file keeps its comments).{readable}"
            ),
        );
    }

    /// Keys in the keyring (no secrets).
    pub async fn list(&self) -> Result<Vec<KeyInfo>, KeyError> {
        keyring(|k| k.list()).await
    }

    /// Makes a key (its secret is returned once) and serves it at once.
    pub async fn add(
        &self,
        name: Option<String>,
        services: Vec<String>,
    ) -> Result<(KeyInfo, String), KeyError> {
        let r = keyring(move |k| k.add(name.as_deref(), &services)).await?;
        self.load(None).await;
        Ok(r)
    }

    /// `mlx-box keys import`: the plaintext keys of settings.toml into the keyring, then out of the file
    /// (the watcher then reloads it like any save).
    pub async fn import(&self) -> Result<ImportReport, KeyError> {
        let path = self.config_path.clone();
        let r = keyring(move |k| crate::keys::import_from_settings(k, &path)).await?;
        self.load(None).await;
        Ok(r)
    }

    pub async fn remove(&self, id: String) -> Result<KeyInfo, KeyError> {
        let r = keyring(move |k| k.remove(&id)).await?;
        self.load(None).await;
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::AlertStore;

    fn settings(text: &str) -> Settings {
        config::parse_settings(std::path::Path::new("settings.toml"), text)
            .0
            .expect("valid settings")
    }

    #[tokio::test]
    async fn plaintext_keys_are_served_and_alerted_without_reading_the_keyring() {
        let (tx, _) = tokio::sync::broadcast::channel(16);
        let store = AlertStore::new(tx);
        let dir = tempfile::tempdir().unwrap();
        let k = KeyService::new(dir.path().join("settings.toml"), store.source("keys"));
        // No frontend port: the keyring is not asked (no unlock prompt on a machine without a proxy).
        let s = settings("[server]\napi_keys = [\"sk-one\", \"sk-two\"]\n\n[services.chat]\nport = 8080\nmodel = \"m\"\n");
        assert_eq!(k.load(Some(&s)).await, 2);
        assert!(k.has_keys());
        let ids: Vec<String> = store.active().into_iter().map(|a| a.id).collect();
        assert_eq!(ids, ["plaintext-keys"]);
        // The file without keys: none served, the alert clears.
        let s = settings("[services.chat]\nport = 8080\nmodel = \"m\"\n");
        assert_eq!(k.load(Some(&s)).await, 0);
        assert!(!k.has_keys());
        assert!(store.active().is_empty());
    }
}
