//! Active alerts: the single owner of the alert list. Every alert has one writer: a source (the supervisor,
//! the config service, the monitor's rules, the bench…) takes an [`AlertSource`] handle and raises and
//! clears through it; the first source to write an id's kind (the part before `:`, so
//! `service-failed:chat` is kind `service-failed`) owns that kind from then on. A second source writing the
//! same kind is a bug (two writers with different titles, or one clearing what the other still thinks is
//! active): debug builds panic, release builds log it and drop the write.

use crate::api::{now_ms, Alert, AlertSeverity, Event};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

pub struct AlertStore {
    active: Mutex<BTreeMap<String, Alert>>,
    /// Kind of id → the source that writes it.
    owners: Mutex<HashMap<String, &'static str>>,
    events: broadcast::Sender<Event>,
}

/// A writer of alerts: raises and clears the kinds it owns.
#[derive(Clone)]
pub struct AlertSource {
    store: Arc<AlertStore>,
    owner: &'static str,
}

fn kind(id: &str) -> &str {
    id.split(':').next().unwrap_or(id)
}

impl AlertStore {
    pub fn new(events: broadcast::Sender<Event>) -> Arc<Self> {
        Arc::new(AlertStore {
            active: Mutex::new(BTreeMap::new()),
            owners: Mutex::new(HashMap::new()),
            events,
        })
    }

    /// A handle for the source named `owner` (a name for the log: "supervisor", "config", …).
    pub fn source(self: &Arc<Self>, owner: &'static str) -> AlertSource {
        AlertSource {
            store: self.clone(),
            owner,
        }
    }

    pub fn active(&self) -> Vec<Alert> {
        self.active.lock().unwrap().values().cloned().collect()
    }

    /// Whether `owner` may write `id`; claims the id's kind on first use.
    fn claim(&self, owner: &'static str, id: &str) -> bool {
        let mut owners = self.owners.lock().unwrap();
        let holder = *owners.entry(kind(id).to_string()).or_insert(owner);
        if holder == owner {
            return true;
        }
        debug_assert!(
            false,
            "alert `{id}` is written by `{holder}`; `{owner}` may not write it too"
        );
        tracing::error!(
            id,
            holder,
            owner,
            "alert written by a second source; ignored"
        );
        false
    }
}

impl AlertSource {
    /// Raises (or updates the text of) the alert `id`. Re-raising an active alert does not re-notify
    /// unless its severity or text changed.
    pub fn raise(
        &self,
        id: &str,
        severity: AlertSeverity,
        title: impl Into<String>,
        body: impl Into<String>,
    ) {
        if !self.store.claim(self.owner, id) {
            return;
        }
        let (title, body) = (title.into(), body.into());
        let mut active = self.store.active.lock().unwrap();
        if let Some(a) = active.get(id) {
            if a.severity == severity && a.title == title && a.body == body {
                return;
            }
        }
        let since = active.get(id).map(|a| a.since).unwrap_or_else(now_ms);
        let alert = Alert {
            id: id.to_string(),
            severity,
            title,
            body,
            since,
            cleared: None,
        };
        active.insert(id.to_string(), alert.clone());
        let _ = self.store.events.send(Event::Alert(alert));
    }

    pub fn clear(&self, id: &str) {
        if !self.store.claim(self.owner, id) {
            return;
        }
        if self.store.active.lock().unwrap().remove(id).is_some() {
            let _ = self.store.events.send(Event::AlertCleared {
                id: id.to_string(),
                cleared: now_ms(),
            });
        }
    }

    /// Whether `id` is active now.
    pub fn is_active(&self, id: &str) -> bool {
        self.store.active.lock().unwrap().contains_key(id)
    }

    /// Every active alert (the store's, not only this source's).
    pub fn active(&self) -> Vec<Alert> {
        self.store.active()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (Arc<AlertStore>, broadcast::Receiver<Event>) {
        let (tx, rx) = broadcast::channel(16);
        (AlertStore::new(tx), rx)
    }

    #[test]
    fn raise_update_clear_and_their_events() {
        let (s, mut rx) = store();
        let a = s.source("config");
        a.raise("config-invalid", AlertSeverity::Warning, "t", "b");
        a.raise("config-invalid", AlertSeverity::Warning, "t", "b"); // same: no event
        a.raise("config-invalid", AlertSeverity::Critical, "t", "b2");
        assert_eq!(s.active().len(), 1);
        assert_eq!(s.active()[0].severity, AlertSeverity::Critical);
        a.clear("config-invalid");
        a.clear("config-invalid"); // not active: no event
        assert!(s.active().is_empty());
        let mut kinds = vec![];
        while let Ok(e) = rx.try_recv() {
            kinds.push(match e {
                Event::Alert(_) => "alert",
                Event::AlertCleared { .. } => "cleared",
                _ => "other",
            });
        }
        assert_eq!(kinds, ["alert", "alert", "cleared"]);
    }

    #[test]
    fn one_source_owns_a_kind_of_alert_with_every_suffix() {
        let (s, _rx) = store();
        let sup = s.source("supervisor");
        sup.raise("service-failed:a", AlertSeverity::Critical, "t", "b");
        sup.raise("service-failed:b", AlertSeverity::Critical, "t", "b");
        sup.clear("service-failed:a");
        assert!(sup.is_active("service-failed:b"));
        assert!(s.claim("supervisor", "service-failed:c"));
    }

    #[test]
    #[cfg_attr(debug_assertions, should_panic(expected = "may not write it too"))]
    fn a_second_writer_of_a_kind_is_refused() {
        let (s, _rx) = store();
        s.source("monitor")
            .raise("throttling-suspected", AlertSeverity::Warning, "t", "b");
        // The bench clearing the live rule's alert was the bug this guards against.
        s.source("bench").clear("throttling-suspected");
        assert!(!s.active().is_empty(), "the write was dropped");
    }
}
