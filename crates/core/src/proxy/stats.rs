//! The proxy's counters per service: requests, refusals, tokens, live tok/s, decode speeds.

pub use mlxbox_api::proxy::ProxyStats;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Live tok/s is the output tokens of the last few monitor ticks over their span.
const RATE_WINDOW: usize = 5;
/// Per-request decode speeds kept for the throttling rule.
pub(super) const DECODE_SERIES: usize = 60;

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
    pub(super) waiting: AtomicU64,
    pub(super) output_tokens: AtomicU64,
    /// Unix ms of the last request's arrival or end (0: none yet).
    pub(super) last_request_ms: AtomicU64,
    /// Requests waiting for an on-demand load.
    pub(super) loading: AtomicU64,
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
            waiting: g(&self.waiting),
            output_tokens: g(&self.output_tokens),
            output_tok_s,
            last_decode_tok_s: self.decode.lock().unwrap().back().map(|x| x.1),
            last_request_ms: Some(g(&self.last_request_ms)).filter(|&t| t > 0),
            loading: g(&self.loading),
        }
    }

    /// A request arrived or ended: the service is in use now.
    pub(super) fn touch(&self) {
        self.last_request_ms
            .store(crate::api::now_ms(), Ordering::Relaxed);
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
