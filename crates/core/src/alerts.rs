//! Active alerts. This issue raises them for supervisor and config problems; the monitor (next issue)
//! adds its rules, hysteresis and cooldown on top of the same store.

use crate::api::{now_ms, Alert, AlertSeverity, Event};
use std::collections::BTreeMap;
use std::sync::Mutex;
use tokio::sync::broadcast;

pub struct AlertStore {
    active: Mutex<BTreeMap<String, Alert>>,
    events: broadcast::Sender<Event>,
}

impl AlertStore {
    pub fn new(events: broadcast::Sender<Event>) -> Self {
        AlertStore {
            active: Mutex::new(BTreeMap::new()),
            events,
        }
    }

    /// Raises (or updates the text of) the alert `id`. Re-raising an active alert does not re-notify
    /// unless its severity or text changed.
    pub fn raise(
        &self,
        id: &str,
        severity: AlertSeverity,
        title: impl Into<String>,
        body: impl Into<String>,
    ) {
        let (title, body) = (title.into(), body.into());
        let mut active = self.active.lock().unwrap();
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
        let _ = self.events.send(Event::Alert(alert));
    }

    pub fn clear(&self, id: &str) {
        if self.active.lock().unwrap().remove(id).is_some() {
            let _ = self.events.send(Event::AlertCleared {
                id: id.to_string(),
                cleared: now_ms(),
            });
        }
    }

    pub fn active(&self) -> Vec<Alert> {
        self.active.lock().unwrap().values().cloned().collect()
    }
}
