//! The API-key proxy: for each service with both `port` and `backend_port`, the daemon listens on
//! `[server] host:port` and forwards to `127.0.0.1:backend_port` while the service is ready.
//!
//! A request passes these gates, in order (each refusal is an OpenAI-style JSON error, or the agent API's
//! shape on its routes):
//! - The gate's door (`crate::gate::door`, before any of this): `Host` on an open loopback listener (DNS
//!   rebinding), `Origin` against `cors_origins` (preflights answered there, never forwarded),
//!   `Sec-Fetch-Site` of another site → 403.
//! - Auth: `Authorization: Bearer <key>` or `x-api-key: <key>` against the configured keys, compared in
//!   constant time, never logged, never forwarded; 401 + `WWW-Authenticate: Bearer` otherwise. No key
//!   configured = open, but only on loopback.
//! - 503 + Retry-After while the service is not ready (starting, restarting): never a hang.
//! - The body: read within 60 s and 64 MiB (408/413); a JSON object's `model` must be one the service
//!   serves (its model id, its name, an alias; name and aliases become the model id), and `adapters` /
//!   `draft_model` are refused, unless `allow_any_model` (`body.rs`).
//! - `max_concurrency`: that many requests in flight to the backend, a bounded queue, 429 beyond it. The
//!   slot is taken once the body is in hand, so a slow upload holds none.
//! - `filter_reasoning`: think spans and reasoning fields removed, in JSON replies and in SSE streams,
//!   event by event (`sse.rs`, `reasoning.rs`).
//!
//! Connections are capped, timed out and drained by the gate (`crate::gate`, which `endpoint.rs`'s
//! `Target` serves through); the request policy (`serve`: management routes, methods, the body's shape,
//! the model) is the one way to a backend for a service's port, the endpoint and a pool's local member;
//! requests go to the backend over a
//! per-thread connection pool in `backend.rs`; the reply is relayed and metered in `relay.rs`; counters
//! live in `stats.rs`.

//!
//! `POST /v1/messages` (Anthropic) and `POST /v1/responses` (OpenAI) are translated to chat completions
//! around the same policy (`agents/`, `front.rs` `translated`); their refusals come in their API's shape.
//!
//! The modules import downward only (`crates/core/tests/module_graph.rs`): `auth`, `body`, `form`, `sse`,
//! `agents`, `stats`, `store`, `headers`, `backend`, `relay` → `listener` → `front` (the request path) → `pool` →
//! `endpoint` (what a listener serves, through the gate) → this file (the listeners of a set of settings).

mod agents;
mod auth;
mod backend;
pub(crate) mod body;
mod endpoint;
mod form;
mod front;
mod headers;
mod listener;
mod pool;
mod relay;
mod runtime;
mod sse;
mod stats;
mod store;

pub use crate::gate::Cors;
pub use auth::{KeySet, SharedKeys};
#[cfg(feature = "fuzzing")]
pub(crate) use backend::read_reply;
pub use front::{Loader, HELD_SERVICES};
pub use listener::{endpoint_addr, ListenerConfig};
pub use pool::Directory;
pub use sse::SseFilter;
pub use stats::ProxyStats;
pub use store::{open_shared as open_response_store, CAPS as RESPONSE_STORE_DEFAULTS};

/// Applies the Responses store's bounds of settings.toml (`[server] responses_*`): what is over them
/// goes at once.
pub fn apply_response_store_caps(s: &crate::config::Settings) {
    store::shared().set_caps(store::Caps::of(s.server.responses));
}

/// The agent APIs' translation, for benchmarks (`crates/cli/benches/agents.rs`) and tools.
pub mod agent_api {
    pub use super::agents::{translate, Api, Reply, StreamTranslator, Translated};
}

use crate::api::ServiceStatus;
use crate::config::Settings;
pub(crate) use auth::{authorize, bearer, Auth};
use axum::http::HeaderValue;
use endpoint::Target;
use front::Front;
use listener::join_host_port;
use stats::Counters;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::Semaphore;

/// Runs the frontend listeners for a set of settings; replaced as a whole when the settings change.
pub struct Proxies {
    listeners: Vec<crate::gate::Listener>,
    counters: BTreeMap<String, Arc<Counters>>,
    configs: Vec<ListenerConfig>,
    pools: Vec<Arc<pool::Pool>>,
    /// Each pool's door counters and its members' states (`POOL/MEMBER`), carried over a rebuild.
    pool_counters: BTreeMap<String, Arc<Counters>>,
    member_states: std::collections::HashMap<String, Arc<pool::MemberState>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("refusing to serve [services.{service}] on {host} without an API key: add one (`mlx-box keys add`), or bind 127.0.0.1")]
    OpenOnPublicHost { service: String, host: String },
    #[error("cannot listen on {addr} for {service}: {source}; is another program using port {port}? change `port`")]
    Bind {
        service: String,
        addr: String,
        port: u16,
        source: std::io::Error,
    },
}

impl Proxies {
    pub fn empty() -> Self {
        Proxies {
            listeners: vec![],
            counters: BTreeMap::new(),
            configs: vec![],
            pools: vec![],
            pool_counters: BTreeMap::new(),
            member_states: Default::default(),
        }
    }

    /// What these listeners were made from: the daemon replaces them only when this changes.
    pub fn configs(&self) -> &[ListenerConfig] {
        &self.configs
    }

    /// Stops accepting on every listener and waits until their sockets are closed (so the ports can be
    /// bound again). Their open connections finish the request in flight and close (30 s at most).
    pub async fn stop(mut self) {
        for l in std::mem::take(&mut self.listeners) {
            l.close().await;
        }
    }

    /// Starts a listener per service with both `port` and `backend_port`, and the one endpoint when
    /// `[server] port` is set. Problems are returned per listener; the others still start. The counters
    /// of `previous` (the listeners this replaces) carry on.
    pub async fn start(
        settings: &Settings,
        statuses: Arc<RwLock<BTreeMap<String, ServiceStatus>>>,
        keys: SharedKeys,
        previous: &Proxies,
        loader: Option<std::sync::Weak<dyn Loader>>,
        directory: Option<std::sync::Weak<dyn Directory>>,
    ) -> (Proxies, Vec<ProxyError>) {
        let mut p = Proxies::empty();
        let mut errors = vec![];
        let no_keys = keys.read().unwrap().is_empty();
        let mut fronts = vec![];
        for cfg in ListenerConfig::all(settings) {
            let spec = &cfg.spec;
            if no_keys && !cfg.loopback {
                errors.push(ProxyError::OpenOnPublicHost {
                    service: spec.name.clone(),
                    host: settings.server.host.clone(),
                });
                continue;
            }
            let counters = previous
                .counters
                .get(&spec.name)
                .cloned()
                .unwrap_or_default();
            let slots = spec
                .max_concurrency
                .map(|n| Arc::new(Semaphore::new(n as usize)));
            // Queue: up to 4× the slots wait; beyond that, 429.
            let admitted = spec
                .max_concurrency
                .map(|n| Arc::new(Semaphore::new(n as usize * 5)));
            let front = Arc::new(Front {
                backend_host: HeaderValue::from_str(&format!("127.0.0.1:{}", cfg.backend_port))
                    .unwrap_or_else(|_| HeaderValue::from_static("127.0.0.1")),
                upstream: backend::Upstream::Local(cfg.backend_port),
                cfg: cfg.clone(),
                keys: keys.clone(),
                statuses: statuses.clone(),
                slots,
                admitted,
                metrics: cfg.metrics.then(|| {
                    crate::metrics::ServiceMetrics::new(&cfg.spec.name, cfg.spec.model.as_deref())
                }),
                counters: counters.clone(),
                loader: loader.clone(),
            });
            p.counters.insert(spec.name.clone(), counters);
            if let (Some(addr), Some(port)) = (&cfg.addr, cfg.port) {
                match crate::gate::bind(addr) {
                    Ok(l) => p.listeners.push(
                        Target::Service(front.clone())
                            .start(l, format!("[services.{}] port", spec.name)),
                    ),
                    Err(e) => errors.push(ProxyError::Bind {
                        service: format!("[services.{}]", spec.name),
                        addr: addr.clone(),
                        port,
                        source: e,
                    }),
                }
            }
            fronts.push(front);
            p.configs.push(cfg);
        }
        let mut pools = vec![];
        for spec in &settings.pools {
            let loopback = settings.server.is_loopback();
            if no_keys && !loopback {
                errors.push(ProxyError::OpenOnPublicHost {
                    service: spec.name.clone(),
                    host: settings.server.host.clone(),
                });
                continue;
            }
            let prefix = format!("{}/", spec.name);
            let states: std::collections::HashMap<String, Arc<pool::MemberState>> = previous
                .member_states
                .iter()
                .filter_map(|(k, v)| Some((k.strip_prefix(&prefix)?.to_string(), v.clone())))
                .collect();
            let counters = previous
                .pool_counters
                .get(&spec.name)
                .cloned()
                .unwrap_or_default();
            let pool = Arc::new(pool::Pool::new(
                spec.clone(),
                pool::PoolDoor {
                    loopback,
                    cors: Cors {
                        origins: settings.server.cors_origins.clone(),
                    },
                    domain_name: settings.server.domain_name.clone(),
                    request_timeout: Duration::from_secs_f64(settings.server.request_timeout_s),
                },
                keys.clone(),
                &fronts,
                &states,
                counters.clone(),
                directory.clone(),
            ));
            p.pool_counters.insert(spec.name.clone(), counters);
            for (m, st) in pool.member_states() {
                p.member_states.insert(format!("{prefix}{m}"), st);
            }
            if let Some(port) = spec.port {
                let addr = join_host_port(&settings.server.host, port);
                match crate::gate::bind(&addr) {
                    Ok(l) => p.listeners.push(
                        Target::Pool(pool.clone()).start(l, format!("[pools.{}] port", spec.name)),
                    ),
                    Err(e) => errors.push(ProxyError::Bind {
                        service: format!("[pools.{}]", spec.name),
                        addr,
                        port,
                        source: e,
                    }),
                }
            }
            pools.push(pool);
        }
        p.pools = pools.clone();
        if let Some(addr) = endpoint_addr(settings) {
            let port = settings.server.port.unwrap_or_default();
            match (
                endpoint::Endpoint::new(fronts, pools, keys),
                crate::gate::bind(&addr),
            ) {
                (Some(e), Ok(l)) => p
                    .listeners
                    .push(Target::Endpoint(Arc::new(e)).start(l, "[server] port".into())),
                (None, _) => {}
                (Some(_), Err(e)) => errors.push(ProxyError::Bind {
                    service: "[server] port".into(),
                    addr,
                    port,
                    source: e,
                }),
            }
        }
        (p, errors)
    }

    /// The counters alone (no listeners), to hand to the listeners that replace these.
    pub fn carry_over(&self) -> Proxies {
        Proxies {
            counters: self.counters.clone(),
            pool_counters: self.pool_counters.clone(),
            member_states: self.member_states.clone(),
            ..Proxies::empty()
        }
    }

    /// Called once a second (the monitor tick): the live tok/s is measured over these ticks.
    pub fn tick(&self) {
        let now = std::time::Instant::now();
        for c in self.counters.values() {
            c.tick(now);
        }
        for p in &self.pools {
            p.tick(now);
        }
    }

    /// Every pool with its members' health and counters.
    pub fn pool_status(&self) -> Vec<crate::api::PoolStatus> {
        self.pools.iter().map(|p| p.status()).collect()
    }

    /// Decode speeds (tok/s) of the streams that finished since `since_ms` (unix ms), every service,
    /// oldest first: the series the throttling rule reads.
    pub fn decode_series(&self, since_ms: u64) -> Vec<(u64, f64)> {
        let mut out: Vec<(u64, f64)> = self
            .counters
            .values()
            .flat_map(|c| c.decode.lock().unwrap().clone())
            .filter(|(t, _)| *t >= since_ms)
            .collect();
        out.sort_by_key(|x| x.0);
        out
    }

    pub fn stats(&self) -> BTreeMap<String, ProxyStats> {
        self.counters
            .iter()
            .map(|(k, c)| (k.clone(), c.snapshot()))
            .collect()
    }
}
