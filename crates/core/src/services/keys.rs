//! The key service: the set of API keys every frontend listener checks (the key store `<state>/keys.json`
//! plus the plaintext keys of settings.toml, and the daemon's own key for its benchmark of a pool), the
//! access tokens the remote control API checks (`<state>/tokens.json`), and the only writer of the key
//! store while a daemon runs (the CLI and the app ask it). It moves what earlier versions kept in the OS
//! keyring into the stores (`keys::migrate`). Owns the `key-store`, `token-store`, `keys-migrated` and
//! `plaintext-keys` alerts.

use crate::alerts::AlertSource;
use crate::api::AlertSeverity;
use crate::config::{self, Settings};
use crate::keys::{migrate, ImportReport, KeyError, KeyInfo, KeyList, KeyStore, Migrated};
use crate::proxy::{KeySet, SharedKeys};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub struct KeyService {
    keys: SharedKeys,
    store: KeyStore,
    token_store: KeyStore,
    config_path: PathBuf,
    alerts: AlertSource,
    /// The store errors logged last (keys, tokens), so a reload does not log them again.
    warned: Mutex<[Option<String>; 2]>,
    /// Held while keys load (see `load`).
    loading: tokio::sync::Mutex<()>,
    /// The plaintext keys of the settings applied last, and whether any service has a frontend port.
    plaintext: Mutex<(Vec<String>, bool)>,
    /// The remote control API's access tokens (read from the token store while `[control] listen` is
    /// set).
    tokens: Arc<crate::remote::tokens::Tokens>,
    control_on: std::sync::atomic::AtomicBool,
    /// The daemon's own key (its benchmark of a pool sends it through the pool's port): random, made
    /// here, in memory only.
    own: Option<Arc<str>>,
    /// What was moved out of the OS keyring since the daemon started.
    migrated: Mutex<Vec<String>>,
}

/// Runs `f` on `store` off the async threads (a key store call may wait on the store's lock), after
/// moving into it what the OS keyring still holds (when `migrate`; blocking on D-Bus / the Security
/// framework, and nothing once done). The CLI uses it too when no daemon runs.
pub async fn on_store<T: Send + 'static>(
    store: KeyStore,
    migrate: bool,
    f: impl FnOnce(&KeyStore) -> Result<T, KeyError> + Send + 'static,
) -> Result<(T, Option<Migrated>), KeyError> {
    tokio::task::spawn_blocking(move || {
        let moved = if migrate {
            migrate::from_os_keyring(&store)
        } else {
            None
        };
        Ok((f(&store)?, moved))
    })
    .await
    .unwrap_or_else(|e| Err(KeyError::Task(e.to_string())))
}

impl KeyService {
    pub fn new(state_dir: &Path, config_path: PathBuf, alerts: AlertSource) -> Self {
        let own = match crate::keys::generate() {
            Ok(k) => Some(Arc::from(k)),
            Err(e) => {
                tracing::warn!("no key of its own for the daemon's benchmarks of pools: {e}");
                None
            }
        };
        KeyService {
            keys: Default::default(),
            store: KeyStore::api_keys(state_dir),
            token_store: KeyStore::tokens(state_dir),
            config_path,
            alerts,
            warned: Default::default(),
            loading: tokio::sync::Mutex::new(()),
            plaintext: Mutex::new((vec![], false)),
            tokens: Default::default(),
            control_on: Default::default(),
            own,
            migrated: Default::default(),
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

    /// Runs `f` on a store (see [`on_store`]) and notes what a migration moved.
    async fn on<T: Send + 'static>(
        &self,
        store: &KeyStore,
        migrate: bool,
        f: impl FnOnce(&KeyStore) -> Result<T, KeyError> + Send + 'static,
    ) -> Result<T, KeyError> {
        let (out, moved) = on_store(store.clone(), migrate, f).await?;
        if let Some(m) = moved {
            self.note_migration(m);
        }
        Ok(out)
    }

    /// Reads the keys again (the key store, and the plaintext ones when `settings` is given) and hands
    /// them to the listeners at once, and the tokens while `[control] listen` is set. The OS keyring is
    /// asked for keys to migrate only when some listener checks keys (a daemon without a proxy never
    /// asks: no unlock prompt, no alert), and only until they have moved. Returns how many keys are
    /// served.
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
        let from_store = self
            .on(&self.store, proxied, |s| s.load())
            .await
            .map_err(|e| e.to_string());
        self.store_alert(0, from_store.as_ref().err());
        self.plaintext_alert(plaintext.len());
        let set = KeySet::new(from_store, &plaintext).with_own(self.own.clone());
        let n = set.len();
        *self.keys.write().unwrap() = Arc::new(set);
        use std::sync::atomic::Ordering::Relaxed;
        if let Some(s) = settings {
            self.control_on.store(s.control.listen.is_some(), Relaxed);
        }
        if self.control_on.load(Relaxed) {
            let tokens = self
                .on(&self.token_store, true, |s| s.load())
                .await
                .map_err(|e| e.to_string());
            self.store_alert(1, tokens.as_ref().err());
            self.tokens.replace(tokens);
        } else {
            self.store_alert(1, None);
            self.tokens.replace(Ok(vec![]));
        }
        n
    }

    /// The `key-store` (`which` 0) or `token-store` (1) alert: raised while that store cannot be read.
    fn store_alert(&self, which: usize, error: Option<&String>) {
        let (id, title, meanwhile) = [
            (
                "key-store",
                "The key store cannot be read",
                "Frontend ports accept only the keys in settings.toml meanwhile (none: they answer 503).",
            ),
            (
                "token-store",
                "The token store cannot be read",
                "The remote control API refuses every token meanwhile (503).",
            ),
        ][which];
        let Some(e) = error else {
            self.warned.lock().unwrap()[which] = None;
            self.alerts.clear(id);
            return;
        };
        // Logged when it changes, not at every reload (the alert carries it meanwhile).
        let mut last = self.warned.lock().unwrap();
        if last[which].as_deref() != Some(e.as_str()) {
            tracing::warn!("{e}");
            last[which] = Some(e.clone());
        }
        drop(last);
        self.alerts.raise(
            id,
            AlertSeverity::Warning,
            title,
            format!("{e}. {meanwhile}"),
        );
    }

    /// Notes keys moved out of the OS keyring: for `keys list`, and an alert (info) until the daemon
    /// stops.
    fn note_migration(&self, m: Migrated) {
        let mut notes = self.migrated.lock().unwrap();
        notes.push(m.note);
        self.alerts.raise(
            "keys-migrated",
            AlertSeverity::Info,
            "Keys moved out of the OS keyring",
            format!(
                "{}. Clients keep using the same keys; `mlx-box keys list` and `mlx-box tokens list` show them.",
                notes.join(". ")
            ),
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
                "settings.toml holds {n} API key(s) in [server] api_key/api_keys. Run `mlx-box keys import` to move them into the key store, hashed (the file keeps its comments).{readable}"
            ),
        );
    }

    /// The keys of the key store (no secrets), why it cannot be read if it cannot, and what was moved
    /// out of the OS keyring.
    pub async fn list(&self) -> KeyList {
        let (keys, store_error) = match self.on(&self.store, true, |s| s.list()).await {
            Ok(keys) => (keys, None),
            Err(e) => (vec![], Some(e.to_string())),
        };
        let notes = self.migrated.lock().unwrap();
        KeyList {
            keys,
            store_error,
            note: (!notes.is_empty()).then(|| notes.join(". ")),
        }
    }

    /// Makes a key (its secret is returned once, its hash stored) and serves it at once.
    pub async fn add(
        &self,
        name: Option<String>,
        services: Vec<String>,
    ) -> Result<(KeyInfo, String), KeyError> {
        let r = self
            .on(&self.store, true, move |s| {
                s.add(name.as_deref(), &services)
            })
            .await?;
        self.load(None).await;
        Ok(r)
    }

    /// `mlx-box keys import`: the plaintext keys of settings.toml hashed into the key store, then out of
    /// the file (the watcher then reloads it like any save).
    pub async fn import(&self) -> Result<ImportReport, KeyError> {
        let path = self.config_path.clone();
        let r = self
            .on(&self.store, true, move |s| {
                crate::keys::import_from_settings(s, &path)
            })
            .await?;
        self.load(None).await;
        Ok(r)
    }

    pub async fn remove(&self, id: String) -> Result<KeyInfo, KeyError> {
        let r = self.on(&self.store, true, move |s| s.remove(&id)).await?;
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
        let k = KeyService::new(
            dir.path(),
            dir.path().join("settings.toml"),
            store.source("keys"),
        );
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

    fn service(dir: &Path) -> (Arc<AlertStore>, KeyService) {
        let (tx, _) = tokio::sync::broadcast::channel(16);
        let store = AlertStore::new(tx);
        let k = KeyService::new(dir, dir.join("settings.toml"), store.source("keys"));
        (store, k)
    }

    /// Keys made through the service are served at once from the store (which holds no secret); the
    /// daemon's own key opens a pool without being counted or listed.
    #[tokio::test]
    async fn keys_are_made_stored_hashed_and_served() {
        let dir = tempfile::tempdir().unwrap();
        let (_alerts, k) = service(dir.path());
        let (info, secret) = k.add(Some("laptop".into()), vec![]).await.unwrap();
        assert!(k.has_keys());
        let list = k.list().await;
        assert_eq!(list.keys, vec![info]);
        assert!(list.store_error.is_none());
        let text = std::fs::read_to_string(dir.path().join("keys.json")).unwrap();
        assert!(!text.contains(&secret), "{text}");
        let set = k.shared().read().unwrap().clone();
        assert_eq!(set.len(), 1, "the daemon's own key is not counted");
        let own = set.own_secret().expect("the daemon has its own key");
        assert!(!text.contains(&own), "the own key is never stored");
        k.remove("laptop".into()).await.unwrap();
        assert!(!k.has_keys());
    }

    /// A damaged store: the keys are unknown (the listeners answer 503), an alert says what to do, and
    /// nothing is written over it; removed, the alert clears.
    #[tokio::test]
    async fn a_damaged_store_is_an_alert_and_keys_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let (alerts, k) = service(dir.path());
        let path = dir.path().join("keys.json");
        std::fs::write(&path, "{\"version\": 1, \"keys\": [").unwrap();
        k.load(None).await;
        let set = k.shared().read().unwrap().clone();
        assert!(set.is_empty() && set.store_error.is_some());
        let a = alerts.active();
        let a = a
            .iter()
            .find(|a| a.id == "key-store")
            .expect("key-store alert");
        assert!(
            a.body.contains("keys.json") && a.body.contains("fix or remove it"),
            "{}",
            a.body
        );
        assert!(k.list().await.store_error.is_some());
        assert!(k.add(None, vec![]).await.is_err());
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"version\": 1, \"keys\": ["
        );
        std::fs::remove_file(&path).unwrap();
        k.load(None).await;
        assert!(alerts.active().iter().all(|a| a.id != "key-store"));
    }
}
