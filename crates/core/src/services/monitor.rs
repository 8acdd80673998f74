//! The monitor service: the 1 Hz sampler, the last 10 minutes of samples, and the alert rules that read
//! them (swap, pressure, heat, throttling). Owns the `swap*`, `pressure`, `thermal` and `throttling-suspected`
//! alerts (whatever ids the rules decide).

use crate::alerts::AlertSource;
use crate::config::AlertSettings;
use crate::monitor::{History, Sample, Sampler};
use crate::rules::{Decision, Engine};
use std::sync::Mutex;

pub struct MonitorService {
    sampler: Mutex<Sampler>,
    history: Mutex<History>,
    rules: Mutex<Engine>,
    alerts: AlertSource,
}

impl MonitorService {
    pub fn new(alerts: AlertSource) -> Self {
        MonitorService {
            sampler: Mutex::new(Sampler::default()),
            history: Mutex::new(History::default()),
            rules: Mutex::new(Engine::new(AlertSettings::default())),
            alerts,
        }
    }

    /// The `[alerts]` settings the rules use from now on.
    pub fn set_rules(&self, cfg: AlertSettings) {
        self.rules.lock().unwrap().cfg = cfg;
    }

    /// One tick: sample, keep it, run the rules on it.
    pub fn tick(&self) -> Sample {
        let sample = self.sampler.lock().unwrap().sample();
        self.record(sample.clone());
        sample
    }

    /// Keeps `sample` and runs the rules on it (the tick's second half; tests feed samples here).
    pub fn record(&self, sample: Sample) {
        let decisions = self.rules.lock().unwrap().evaluate(&sample);
        self.history.lock().unwrap().push(sample);
        self.apply(decisions);
    }

    /// The newest sample (a fresh one before the first tick).
    pub fn latest(&self) -> Sample {
        let latest = self.history.lock().unwrap().latest().cloned();
        latest.unwrap_or_else(|| self.sampler.lock().unwrap().sample())
    }

    /// Oldest first, at most 10 minutes.
    pub fn history(&self) -> Vec<Sample> {
        self.history.lock().unwrap().all()
    }

    /// The throttling rule: per-request decode speeds of the proxy's streams since `since_ms`, against the
    /// thermal states of the same window.
    pub fn throughput(&self, decode_tok_s: &[f64], since_ms: u64) {
        let (now, thermal) = {
            let h = self.history.lock().unwrap();
            let all = h.all();
            let now = all
                .last()
                .map(|s| s.t_ms)
                .unwrap_or_else(crate::api::now_ms);
            let t: Vec<_> = all
                .iter()
                .filter(|s| s.t_ms >= since_ms)
                .map(|s| s.thermal)
                .collect();
            (now, t)
        };
        let decisions = self
            .rules
            .lock()
            .unwrap()
            .evaluate_throughput(now, decode_tok_s, &thermal);
        self.apply(decisions);
    }

    fn apply(&self, decisions: Vec<Decision>) {
        for d in decisions {
            match d {
                Decision::Raise {
                    id,
                    severity,
                    title,
                    body,
                } => self.alerts.raise(id, severity, title, body),
                Decision::Clear { id } => self.alerts.clear(id),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::AlertStore;
    use crate::monitor::{Pressure, Thermal};

    fn service() -> (MonitorService, std::sync::Arc<AlertStore>) {
        let (tx, _) = tokio::sync::broadcast::channel(64);
        let store = AlertStore::new(tx);
        (MonitorService::new(store.source("monitor")), store)
    }

    fn sample(t_ms: u64, pressure: Pressure) -> Sample {
        Sample {
            t_ms,
            total_bytes: 64 << 30,
            used_bytes: 8 << 30,
            available_bytes: 56 << 30,
            swap_used_bytes: 0,
            swap_total_bytes: 0,
            swap_out_bytes_per_s: None,
            compressed_bytes: None,
            wired_bytes: None,
            pressure,
            thermal: Thermal::Nominal,
            temperature_c: None,
        }
    }

    #[test]
    fn ticks_are_kept_and_the_latest_is_the_newest() {
        let (m, _) = service();
        m.tick();
        m.record(sample(u64::MAX, Pressure::Normal));
        assert_eq!(m.history().len(), 2);
        assert_eq!(m.latest().t_ms, u64::MAX);
    }

    #[test]
    fn the_rules_raise_through_the_monitor_and_their_settings_apply() {
        let (m, store) = service();
        for t in 0..30 {
            m.record(sample(t * 1000, Pressure::Critical));
        }
        assert!(
            !store.active().is_empty(),
            "critical pressure for 30 s raises an alert"
        );
        let (m, store) = service();
        m.set_rules(AlertSettings {
            enabled: false,
            ..AlertSettings::default()
        });
        for t in 0..30 {
            m.record(sample(t * 1000, Pressure::Critical));
        }
        assert!(store.active().is_empty(), "[alerts] enabled = false");
    }
}
