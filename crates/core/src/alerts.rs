//! Active alerts: the single owner of the alert list. Every alert has one writer: a source (the supervisor,
//! the config service, the monitor's rules, the bench…) takes an [`AlertSource`] handle and raises and
//! clears through it; the first source to write an id's kind (the part before `:`, so
//! `service-failed:chat` is kind `service-failed`) owns that kind from then on. A second source writing the
//! same kind is a bug (two writers with different titles, or one clearing what the other still thinks is
//! active): debug builds panic, release builds log it and drop the write.
//!
//! What people do with an alert (acknowledge, snooze, unmute: [`AlertStore::act`]) is kept here too, so
//! every client counts the same "1 alert". A re-raise keeps it; a more severe one ends it (news again).

use crate::api::{now_ms, Alert, AlertAction, AlertSeverity, Event};
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

    /// Acknowledges, snoozes or unmutes the active alert `id`; `None` when it is not active. Every client
    /// hears the new state as an `alert` event; a snooze's end is one too (it counts again).
    pub fn act(self: &Arc<Self>, id: &str, action: AlertAction) -> Option<Alert> {
        let alert = {
            let mut active = self.active.lock().unwrap();
            let a = active.get_mut(id)?;
            match action {
                AlertAction::Ack => a.acknowledged = true,
                AlertAction::Snooze { minutes } => {
                    a.snoozed_until = Some(now_ms() + u64::from(minutes) * 60_000)
                }
                AlertAction::Unmute => {
                    a.acknowledged = false;
                    a.snoozed_until = None;
                }
            }
            a.clone()
        };
        if let Some(until) = alert.snoozed_until {
            self.wake_at(id.to_string(), until);
        }
        let _ = self.events.send(Event::Alert(alert.clone()));
        Some(alert)
    }

    /// At `until`, ends the snooze of `id` (if that snooze is still the one set) and says so.
    fn wake_at(self: &Arc<Self>, id: String, until: u64) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return; // no runtime (a unit test): the snooze still ends for `needs_attention`
        };
        let store = Arc::downgrade(self);
        rt.spawn(async move {
            let wait = until.saturating_sub(now_ms());
            tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
            let Some(store) = store.upgrade() else { return };
            let woke = {
                let mut active = store.active.lock().unwrap();
                match active.get_mut(&id) {
                    Some(a) if a.snoozed_until == Some(until) => {
                        a.snoozed_until = None;
                        Some(a.clone())
                    }
                    _ => None,
                }
            };
            if let Some(a) = woke {
                let _ = store.events.send(Event::Alert(a));
            }
        });
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
        // Seen or snoozed stays so through a new text; a more severe raise is news again.
        let (acknowledged, snoozed_until) = match active.get(id) {
            Some(a) if severity <= a.severity => (a.acknowledged, a.snoozed_until),
            _ => (false, None),
        };
        let alert = Alert {
            id: id.to_string(),
            severity,
            title,
            body,
            since,
            cleared: None,
            acknowledged,
            snoozed_until,
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
    fn ack_and_snooze_quiet_an_alert_until_it_grows_worse() {
        let (s, mut rx) = store();
        let m = s.source("monitor");
        m.raise("swap", AlertSeverity::Warning, "Swap", "b");
        assert!(s.act("nothing", AlertAction::Ack).is_none());
        let a = s.act("swap", AlertAction::Ack).unwrap();
        assert!(a.acknowledged && !a.needs_attention(now_ms()));
        // A new text keeps it acknowledged; a more severe raise is news again.
        m.raise("swap", AlertSeverity::Warning, "Swap", "b2");
        assert!(s.active()[0].acknowledged);
        m.raise("swap", AlertSeverity::Critical, "Swap", "b3");
        assert!(s.active()[0].needs_attention(now_ms()));

        let a = s.act("swap", AlertAction::Snooze { minutes: 30 }).unwrap();
        let until = a.snoozed_until.unwrap();
        assert!(!a.needs_attention(now_ms()));
        assert!(
            a.needs_attention(until),
            "counts again when the snooze ends"
        );
        let a = s.act("swap", AlertAction::Unmute).unwrap();
        assert!(a.needs_attention(now_ms()));
        // Cleared and raised again: a new episode, not acknowledged.
        s.act("swap", AlertAction::Ack);
        m.clear("swap");
        m.raise("swap", AlertSeverity::Warning, "Swap", "b");
        assert!(s.active()[0].needs_attention(now_ms()));
        let mut acts = 0;
        while let Ok(e) = rx.try_recv() {
            if let Event::Alert(a) = e {
                acts += usize::from(a.acknowledged || a.snoozed_until.is_some());
            }
        }
        // Ack, the new text (still acknowledged), snooze, the second ack: each reaches every client.
        assert_eq!(acts, 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_snooze_ends_with_an_event() {
        let (s, mut rx) = store();
        s.source("monitor")
            .raise("swap", AlertSeverity::Warning, "Swap", "b");
        s.act("swap", AlertAction::Snooze { minutes: 5 });
        while rx.try_recv().is_ok() {}
        // Paused time jumps to the wake-up; `now_ms` is the wall clock, so check the flag, not the time.
        tokio::time::sleep(std::time::Duration::from_secs(5 * 60 + 1)).await;
        tokio::task::yield_now().await;
        match rx.try_recv() {
            Ok(Event::Alert(a)) => assert_eq!(a.snoozed_until, None),
            other => panic!("no wake-up event: {other:?}"),
        }
        assert_eq!(s.active()[0].snoozed_until, None);
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
