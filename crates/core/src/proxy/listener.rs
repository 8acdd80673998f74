//! What one frontend listener is made of (a service's port and its reach through the endpoint and pools),
//! from the settings: the daemon replaces a listener only when this changes.

use crate::config::{ServiceSpec, Settings};
use std::time::Duration;

use crate::gate::Cors;

/// What one frontend listener is made of. Listeners are replaced when this changes (and only then).
#[derive(Debug, Clone, PartialEq)]
pub struct ListenerConfig {
    pub spec: ServiceSpec,
    /// The service's own frontend (`port`); `None`: reached through the one endpoint only.
    pub addr: Option<String>,
    pub port: Option<u16>,
    pub backend_port: u16,
    /// The listener is on a loopback address: with no key at all, it may serve open.
    pub loopback: bool,
    pub timeout: Duration,
    pub cors: Cors,
    pub domain_name: Option<String>,
    /// Observe requests into the `vllm:` metrics (`[metrics] requests`).
    pub metrics: bool,
}

impl ListenerConfig {
    /// One per enabled service with a `backend_port` and a `port` (or, with `[server] port`, any
    /// `backend_port`: the one endpoint reaches it).
    pub fn all(settings: &Settings) -> Vec<ListenerConfig> {
        let host = &settings.server.host;
        let loopback = settings.server.is_loopback();
        let endpoint = settings.server.port.is_some();
        let pooled = |name: &str| {
            settings.pools.iter().any(|p| {
                p.members
                    .iter()
                    .any(|(m, _)| matches!(m, crate::config::MemberRef::Local(s) if s == name))
            })
        };
        settings
            .services
            .iter()
            .filter(|s| s.enabled)
            .filter_map(|spec| {
                let backend_port = spec.backend_port?;
                if spec.port.is_none() && !endpoint && !pooled(&spec.name) {
                    return None;
                }
                Some(ListenerConfig {
                    spec: spec.clone(),
                    addr: spec.port.map(|p| join_host_port(host, p)),
                    port: spec.port,
                    backend_port,
                    loopback,
                    timeout: Duration::from_secs_f64(
                        spec.request_timeout_s
                            .unwrap_or(settings.server.request_timeout_s),
                    ),
                    cors: Cors {
                        origins: settings.server.cors_origins.clone(),
                    },
                    domain_name: settings.server.domain_name.clone(),
                    metrics: settings.metrics.requests,
                })
            })
            .collect()
    }
}

/// `[server] port`: where the one endpoint listens, if it is on.
pub fn endpoint_addr(settings: &Settings) -> Option<String> {
    settings
        .server
        .port
        .map(|p| join_host_port(&settings.server.host, p))
}

pub(super) fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}
