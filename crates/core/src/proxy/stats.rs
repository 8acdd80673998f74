//! The proxy's counters per service: requests, refusals, tokens, live tok/s, decode speeds.

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;
use ts_rs::TS;

/// Live tok/s is the output tokens of the last few monitor ticks over their span.
const RATE_WINDOW: usize = 5;
/// Per-request decode speeds kept for the throttling rule.
pub(super) const DECODE_SERIES: usize = 60;

/// Per service, on `GET /v1/proxy/stats`.
#[derive(Debug, Default, Serialize, Deserialize, Clone, PartialEq, TS)]
#[ts(export)]
pub struct ProxyStats {
    #[ts(type = "number")]
    pub requests: u64,
    /// Answers that were not 2xx (backend errors, 502, 504; not 401/429/503, counted on their own).
    #[ts(type = "number")]
    pub errors: u64,
    #[ts(type = "number")]
    pub unauthorized: u64,
    #[ts(type = "number")]
    pub rejected_busy: u64,
    #[ts(type = "number")]
    pub unavailable: u64,
    #[ts(type = "number")]
    pub timeouts: u64,
    /// Requests refused before they reached the backend: a model the service does not serve, a Host that
    /// is not this machine's, a malformed or too slow body (400/403/408/413).
    #[serde(default)]
    #[ts(type = "number")]
    pub bad_requests: u64,
    /// Connections refused at the per-listener or per-process connection cap (503, then closed).
    #[serde(default)]
    #[ts(type = "number")]
    pub refused_connections: u64,
    /// Requests admitted and not finished (a stream counts until its last byte).
    #[ts(type = "number")]
    pub in_flight: u64,
    /// Output tokens so far (from `usage`; on streams, one per content chunk until `usage` arrives).
    #[ts(type = "number")]
    pub output_tokens: u64,
    /// Output tokens per second over the last few seconds, all requests together.
    pub output_tok_s: f64,
    /// Decode speed of the last finished stream (tokens / time from first to last token).
    pub last_decode_tok_s: Option<f64>,
}

#[derive(Default)]
pub(super) struct Counters {
    pub(super) requests: AtomicU64,
    pub(super) errors: AtomicU64,
    pub(super) unauthorized: AtomicU64,
    pub(super) rejected_busy: AtomicU64,
    pub(super) unavailable: AtomicU64,
    pub(super) timeouts: AtomicU64,
    pub(super) bad_requests: AtomicU64,
    pub(super) refused_connections: AtomicU64,
    pub(super) in_flight: AtomicU64,
    pub(super) output_tokens: AtomicU64,
    /// (time, output_tokens) at the last monitor ticks.
    pub(super) ticks: Mutex<VecDeque<(Instant, u64)>>,
    /// (unix ms, tok/s) of finished streams.
    pub(super) decode: Mutex<VecDeque<(u64, f64)>>,
}

impl Counters {
    pub(super) fn snapshot(&self) -> ProxyStats {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let output_tok_s = {
            let t = self.ticks.lock().unwrap();
            match (t.front(), t.back()) {
                (Some((t0, n0)), Some((t1, n1))) if t1 > t0 => {
                    n1.saturating_sub(*n0) as f64 / (*t1 - *t0).as_secs_f64()
                }
                _ => 0.0,
            }
        };
        ProxyStats {
            requests: g(&self.requests),
            errors: g(&self.errors),
            unauthorized: g(&self.unauthorized),
            rejected_busy: g(&self.rejected_busy),
            unavailable: g(&self.unavailable),
            timeouts: g(&self.timeouts),
            bad_requests: g(&self.bad_requests),
            refused_connections: g(&self.refused_connections),
            in_flight: g(&self.in_flight),
            output_tokens: g(&self.output_tokens),
            output_tok_s,
            last_decode_tok_s: self.decode.lock().unwrap().back().map(|x| x.1),
        }
    }

    pub(super) fn tick(&self, now: Instant) {
        let mut t = self.ticks.lock().unwrap();
        t.push_back((now, self.output_tokens.load(Ordering::Relaxed)));
        while t.len() > RATE_WINDOW + 1 {
            t.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn live_rate_over_ticks() {
        let c = Counters::default();
        let t0 = Instant::now();
        c.tick(t0);
        c.output_tokens.store(50, Ordering::Relaxed);
        c.tick(t0 + Duration::from_secs(2));
        assert_eq!(c.snapshot().output_tok_s, 25.0);
    }
}
