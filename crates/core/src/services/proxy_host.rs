//! The proxy host: the frontend listeners, rebuilt only when what they are made of changes (their typed
//! `ListenerConfig`s, or whether any key exists). Owns the `proxy` alert (a port that cannot be served).

use crate::alerts::AlertSource;
use crate::api::{AlertSeverity, ServiceStatus};
use crate::config::PoolSpec;
use crate::config::Settings;
use crate::proxy::{
    endpoint_addr, Directory, ListenerConfig, Loader, Proxies, ProxyStats, SharedKeys,
};
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, RwLock, Weak};

/// What the listeners are built from: whether any key exists, the one endpoint's address, each
/// listener's settings, and the pools.
type Built = (bool, Option<String>, Vec<ListenerConfig>, Vec<PoolSpec>);

pub struct ProxyHost {
    proxies: tokio::sync::Mutex<(Proxies, Option<Built>)>,
    statuses: Arc<RwLock<BTreeMap<String, ServiceStatus>>>,
    keys: SharedKeys,
    alerts: AlertSource,
    /// What loads on-demand services (set once the demand service exists; weak: it holds this host).
    loader: OnceLock<Weak<dyn Loader>>,
    /// Where other Macs serve their services, for pool members (the fleet; weak, as the loader).
    directory: OnceLock<Weak<dyn Directory>>,
}

impl ProxyHost {
    pub fn new(
        statuses: Arc<RwLock<BTreeMap<String, ServiceStatus>>>,
        keys: SharedKeys,
        alerts: AlertSource,
    ) -> Self {
        ProxyHost {
            proxies: tokio::sync::Mutex::new((Proxies::empty(), None)),
            statuses,
            keys,
            alerts,
            loader: OnceLock::new(),
            directory: OnceLock::new(),
        }
    }

    /// Who loads on-demand services for the requests that name them.
    pub fn set_loader(&self, loader: Weak<dyn Loader>) {
        let _ = self.loader.set(loader);
    }

    /// Where pools find their members on other Macs.
    pub fn set_directory(&self, directory: Weak<dyn Directory>) {
        let _ = self.directory.set(directory);
    }

    /// (Re)starts the listeners when what they depend on changed; returns whether it did. Counters carry
    /// over a rebuild. The Responses store's caps apply every time (they need no new listener).
    pub async fn apply(&self, s: &Settings) -> bool {
        crate::proxy::apply_response_store_caps(s);
        let has_keys = !self.keys.read().unwrap().is_empty();
        let built = (
            has_keys,
            endpoint_addr(s),
            ListenerConfig::all(s),
            s.pools.clone(),
        );
        let mut guard = self.proxies.lock().await;
        if guard.1.as_ref() == Some(&built) {
            return false;
        }
        let old = std::mem::replace(&mut guard.0, Proxies::empty());
        let counters = old.carry_over();
        old.stop().await;
        let loader = self.loader.get().cloned();
        let (p, errors) = Proxies::start(
            s,
            self.statuses.clone(),
            self.keys.clone(),
            &counters,
            loader,
            self.directory.get().cloned(),
        )
        .await;
        if errors.is_empty() {
            self.alerts.clear("proxy");
        } else {
            let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            self.alerts.raise(
                "proxy",
                AlertSeverity::Warning,
                "A frontend port is not served",
                text.join(" "),
            );
        }
        *guard = (p, Some(built));
        true
    }

    pub async fn stats(&self) -> BTreeMap<String, ProxyStats> {
        self.proxies.lock().await.0.stats()
    }

    pub async fn pools(&self) -> Vec<crate::api::PoolStatus> {
        self.proxies.lock().await.0.pool_status()
    }

    /// The monitor tick's share: advances the live tok/s window and returns the decode speeds (tok/s) of
    /// the streams that finished since `since_ms`.
    pub async fn tick(&self, since_ms: u64) -> Vec<f64> {
        let g = self.proxies.lock().await;
        g.0.tick();
        g.0.decode_series(since_ms)
            .into_iter()
            .map(|x| x.1)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::AlertStore;

    fn settings(port: u16) -> Settings {
        let text = format!(
            "[services.chat]\nport = {port}\nbackend_port = {}\nmodel = \"m\"\n",
            port.wrapping_add(1).max(1)
        );
        crate::config::parse_settings(std::path::Path::new("settings.toml"), &text)
            .0
            .expect("valid settings")
    }

    #[tokio::test]
    async fn listeners_are_rebuilt_only_on_change_and_a_taken_port_is_an_alert() {
        let (tx, _) = tokio::sync::broadcast::channel(16);
        let store = AlertStore::new(tx);
        let host = ProxyHost::new(
            Default::default(),
            Default::default(),
            store.source("proxy"),
        );
        // A port some other program holds.
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        assert!(host.apply(&settings(port)).await);
        assert_eq!(store.active().len(), 1, "the taken port is an alert");
        assert!(store.active()[0].body.contains(&port.to_string()));
        assert!(!host.apply(&settings(port)).await, "same settings: kept");
        drop(taken);
        let free = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        assert!(host.apply(&settings(free)).await);
        assert!(store.active().is_empty(), "served: the alert clears");
        assert!(host.stats().await.contains_key("chat"));
    }
}
