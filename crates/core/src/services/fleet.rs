//! The operator's side of a fleet: every `[hosts.NAME]` is polled once a second over its remote control
//! API (TLS pinned to its fingerprint, its token from the control keyring). A ping over the kept
//! connection gives the link's round trip; the status gives its services, alerts, memory and heat.
//! Owns the `host-unreachable:NAME` alert (two missed polls: a few seconds) and `host-link-slow:NAME`
//! (round-trip p50 over the last 30 s above `[alerts] link_rtt_warn_ms`: the seed's "Thunderbolt bridge
//! < 1 ms; a fall-back to Wi-Fi or a slow path shows as 5 ms+"), and sends `Event::Host` on each change.

use crate::alerts::AlertSource;
use crate::api::{AlertSeverity, Event, HostStatus};
use crate::config::HostSpec;
use crate::keys::Keyring;
use crate::task::AbortOnDrop;
use mlxbox_api::call;
use mlxbox_client::control::Client;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

const POLL: Duration = Duration::from_secs(1);
const PING_TIMEOUT: Duration = Duration::from_secs(2);
const STATUS_TIMEOUT: Duration = Duration::from_secs(3);
/// Missed polls before a host is marked unreachable.
const MISSES: u32 = 2;
/// A client whose host answers with errors (a refused token: it may have been replaced with `hosts
/// add`) is rebuilt, re-reading the token, at most this often.
const RECONNECT: Duration = Duration::from_secs(10);
/// Round trips kept (30 s at one a second), and how many the slow-link rule needs.
const RTT_WINDOW: usize = 30;
const RTT_MIN_SAMPLES: usize = 5;

pub struct Fleet {
    alerts: AlertSource,
    events: broadcast::Sender<Event>,
    hosts: Mutex<BTreeMap<String, HostStatus>>,
    pollers: Mutex<Vec<(HostSpec, AbortOnDrop)>>,
    /// Each host's client once its poller made one (a forwarded request rides the same connection).
    clients: Mutex<BTreeMap<String, Arc<Client>>>,
}

/// A pool member on another Mac is found where the last poll saw it: the host's address with the
/// service's frontend port, while the host answers and the service is ready.
impl crate::proxy::Directory for Fleet {
    fn locate(&self, host: &str, service: &str) -> Result<String, String> {
        let hosts = self.hosts.lock().unwrap();
        let h = hosts.get(host).ok_or("not polled yet")?;
        if !h.reachable {
            return Err(format!(
                "host unreachable ({})",
                h.error.as_deref().unwrap_or("no answer")
            ));
        }
        let s = h
            .services
            .iter()
            .find(|s| s.name == service)
            .ok_or("no such service on that host")?;
        if !matches!(
            s.state,
            crate::supervisor::State::Ready | crate::supervisor::State::Unhealthy
        ) {
            return Err(s.state.as_str().to_string());
        }
        let port = s.frontend_port.or(s.port).ok_or("it has no port")?;
        let ip = h
            .address
            .rsplit_once(':')
            .map_or(h.address.as_str(), |(ip, _)| ip);
        Ok(format!("{ip}:{port}"))
    }
}

/// Why a request could not be forwarded to a host.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("no host named `{0}` in [hosts] of settings.toml")]
    Unknown(String),
    #[error("{0}")]
    Failed(String),
}

impl Fleet {
    pub fn new(alerts: AlertSource, events: broadcast::Sender<Event>) -> Arc<Fleet> {
        Arc::new(Fleet {
            alerts,
            events,
            hosts: Default::default(),
            pollers: Default::default(),
            clients: Default::default(),
        })
    }

    /// Every host as last polled, in settings order.
    pub fn statuses(&self) -> Vec<HostStatus> {
        self.hosts.lock().unwrap().values().cloned().collect()
    }

    /// Follows the applied settings: a poller per host (restarted when its entry changed); a host that
    /// left the settings leaves the status and its alerts clear.
    pub fn apply(self: &Arc<Self>, hosts: &[HostSpec], link_rtt_warn_ms: f64) {
        let mut pollers = self.pollers.lock().unwrap();
        let before: Vec<HostSpec> = pollers.iter().map(|p| p.0.clone()).collect();
        pollers.retain(|(h, _)| hosts.contains(h));
        for gone in before.iter().filter(|h| !hosts.contains(h)) {
            self.clients.lock().unwrap().remove(&gone.name);
        }
        for gone in before
            .iter()
            .filter(|h| !hosts.iter().any(|x| x.name == h.name))
        {
            self.hosts.lock().unwrap().remove(&gone.name);
            self.alerts
                .clear(&format!("host-unreachable:{}", gone.name));
            self.alerts.clear(&format!("host-link-slow:{}", gone.name));
        }
        for h in hosts {
            if pollers.iter().any(|(p, _)| p == h) {
                continue;
            }
            let me = self.clone();
            let spec = h.clone();
            let task = tokio::spawn(async move { me.poll(spec, link_rtt_warn_ms).await });
            pollers.push((h.clone(), AbortOnDrop(task)));
        }
    }

    async fn poll(self: Arc<Self>, h: HostSpec, warn_ms: f64) {
        let mut st = HostStatus {
            name: h.name.clone(),
            address: h.address.clone(),
            reachable: false,
            since_ms: crate::api::now_ms(),
            rtt_p50_ms: None,
            rtt_p99_ms: None,
            error: Some("not polled yet".into()),
            services: vec![],
            alerts: vec![],
            memory: None,
            thermal: None,
            version: None,
        };
        let mut rtt: VecDeque<f64> = VecDeque::with_capacity(RTT_WINDOW);
        let mut misses = 0u32;
        let mut client: Option<Arc<Client>> = None;
        let mut connected_at = Instant::now();
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let before = st.clone();
            if client.is_none() {
                match connect(&h).await {
                    Ok(c) => {
                        connected_at = Instant::now();
                        let c = Arc::new(c);
                        self.clients
                            .lock()
                            .unwrap()
                            .insert(h.name.clone(), c.clone());
                        client = Some(c);
                    }
                    Err(e) => {
                        st.error = Some(e);
                        misses = MISSES;
                    }
                }
            }
            if let Some(c) = &client {
                let t0 = Instant::now();
                match tokio::time::timeout(PING_TIMEOUT, c.call(call::Ping {})).await {
                    Ok(Ok(_)) => {
                        if rtt.len() == RTT_WINDOW {
                            rtt.pop_front();
                        }
                        rtt.push_back(t0.elapsed().as_secs_f64() * 1000.0);
                        misses = 0;
                        st.error = None;
                        match tokio::time::timeout(STATUS_TIMEOUT, c.call(call::Status {})).await {
                            Ok(Ok(s)) => {
                                st.services = s.services;
                                st.alerts = s.alerts;
                                st.memory = Some(s.memory);
                                st.thermal = Some(s.thermal);
                                st.version = Some(s.version);
                            }
                            Ok(Err(e)) => st.error = Some(e.to_string()),
                            Err(_) => st.error = Some("its status did not come within 3 s".into()),
                        }
                    }
                    Ok(Err(e)) => {
                        misses += 1;
                        // An answer that is an error (401, 429…) rather than no answer: rebuild the
                        // client now and then, so a token replaced meanwhile is picked up.
                        if matches!(e, mlxbox_client::control::ClientError::Api(_))
                            && connected_at.elapsed() > RECONNECT
                        {
                            client = None;
                        }
                        st.error = Some(e.to_string());
                    }
                    Err(_) => {
                        misses += 1;
                        st.error = Some(format!("no answer within {} s", PING_TIMEOUT.as_secs()));
                    }
                }
            }
            let reachable = misses < MISSES && client.is_some();
            if reachable != st.reachable {
                st.reachable = reachable;
                st.since_ms = crate::api::now_ms();
                if !reachable {
                    rtt.clear();
                }
            }
            let (p50, p99) = (percentile(&rtt, 0.5), percentile(&rtt, 0.99));
            st.rtt_p50_ms = p50;
            st.rtt_p99_ms = p99;
            self.rules(&st, rtt.len(), warn_ms);
            let changed = st.reachable != before.reachable
                || st.error != before.error
                || states(&st) != states(&before)
                || alert_ids(&st) != alert_ids(&before)
                || before.version.is_none() && st.version.is_some();
            self.hosts
                .lock()
                .unwrap()
                .insert(h.name.clone(), st.clone());
            if changed {
                let _ = self.events.send(Event::Host(st.clone()));
            }
        }
    }

    /// Sends `req` to host `name`'s daemon; its answer comes back as it is, its body unread (the caller
    /// streams it, bounded: nothing the size of the answer is held here).
    pub async fn forward(
        &self,
        name: &str,
        req: &mlxbox_api::control::Request,
    ) -> Result<reqwest::Response, ForwardError> {
        let spec = self
            .pollers
            .lock()
            .unwrap()
            .iter()
            .find(|(h, _)| h.name == name)
            .map(|(h, _)| h.clone())
            .ok_or_else(|| ForwardError::Unknown(name.to_string()))?;
        let client = self.clients.lock().unwrap().get(name).cloned();
        let client = match client {
            Some(c) => c,
            None => Arc::new(connect(&spec).await.map_err(ForwardError::Failed)?),
        };
        client
            .call_raw(req)
            .await
            .map_err(|e| ForwardError::Failed(e.to_string()))
    }

    fn rules(&self, st: &HostStatus, samples: usize, warn_ms: f64) {
        let down = format!("host-unreachable:{}", st.name);
        if st.reachable {
            self.alerts.clear(&down);
        } else {
            self.alerts.raise(
                &down,
                AlertSeverity::Critical,
                format!("{} is unreachable", st.name),
                format!(
                    "{} ({}) does not answer: {}. Check that its daemon runs with [control] listen, and the network between the two.",
                    st.name,
                    st.address,
                    st.error.as_deref().unwrap_or("no answer")
                ),
            );
        }
        let slow = format!("host-link-slow:{}", st.name);
        match st.rtt_p50_ms {
            Some(p50) if samples >= RTT_MIN_SAMPLES && p50 > warn_ms => self.alerts.raise(
                &slow,
                AlertSeverity::Warning,
                format!("The link to {} is slow", st.name),
                format!(
                    "Round trips to {} ({}) stay above {warn_ms} ms (link_rtt_warn_ms). A Thunderbolt bridge answers in well under 1 ms: traffic may have fallen back to Wi-Fi or a slower path; check the network service order and the bridge's cable.",
                    st.name, st.address
                ),
            ),
            _ if !st.reachable => {}
            _ => self.alerts.clear(&slow),
        }
    }
}

/// The client for a host: its token from the control keyring (blocking: off the async threads).
async fn connect(h: &HostSpec) -> Result<Client, String> {
    let name = h.name.clone();
    let token = tokio::task::spawn_blocking(move || {
        crate::remote::hosts::token(&Keyring::open_control()?, &name)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("its token cannot be read from the keyring: {e}"))?
    .ok_or_else(|| {
        format!(
            "no token for it in the keyring; run `mlx-box hosts add {} {}`",
            h.name, h.address
        )
    })?;
    Client::remote(&h.name, &h.address, &h.fingerprint, &token).map_err(|e| e.to_string())
}

fn states(s: &HostStatus) -> Vec<(String, crate::supervisor::State)> {
    s.services
        .iter()
        .map(|x| (x.name.clone(), x.state))
        .collect()
}

fn alert_ids(s: &HostStatus) -> Vec<String> {
    s.alerts.iter().map(|a| a.id.clone()).collect()
}

/// The q-quantile of the window (nearest rank), None when empty.
fn percentile(v: &VecDeque<f64>, q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s: Vec<f64> = v.iter().copied().collect();
    s.sort_by(f64::total_cmp);
    let i = ((s.len() - 1) as f64 * q).round() as usize;
    s.get(i).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_the_window() {
        let v: VecDeque<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), Some(6.0));
        assert_eq!(percentile(&v, 0.99), Some(10.0));
        assert_eq!(percentile(&VecDeque::new(), 0.5), None);
    }
}
