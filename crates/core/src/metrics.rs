//! `GET /metrics`: the Prometheus text exposition of what the proxy measured and what the daemon knows.
//!
//! - vLLM's names, units and buckets for what the proxy sees of each request (labels `model_name`, the
//!   service's model id, and `service`), so existing vLLM dashboards read mlx-box:
//!   `vllm:time_to_first_token_seconds`, `vllm:inter_token_latency_seconds`,
//!   `vllm:e2e_request_latency_seconds`, `vllm:request_queue_time_seconds` (histograms),
//!   `vllm:prompt_tokens_total`, `vllm:generation_tokens_total`, `vllm:request_success_total`
//!   (by `finished_reason`), `vllm:num_requests_running`, `vllm:num_requests_waiting`.
//! - `mlxbox_*` for what only mlx-box knows: service state, restarts, memory, swap, pressure, thermal state,
//!   active alerts, the proxy's refusals.
//!
//! The request metrics live in one process-wide registry and are observed by the proxy as requests end
//! (an atomic add each); the rest is read from the daemon's status when scraped.

use crate::api::{AlertSeverity, StatusReport};
use crate::monitor::{Pressure, Thermal};
use mlxbox_api::proxy::ProxyStats;
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use std::collections::BTreeMap;
use std::sync::LazyLock;

/// vLLM's buckets (vllm/engine/metrics.py), so dashboards built for it bin alike.
const TTFT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
];
const ITL_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
    40.0, 80.0,
];
const LATENCY_BUCKETS: &[f64] = &[
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
    480.0, 960.0, 1920.0, 7680.0,
];

const LABELS: &[&str] = &["model_name", "service"];

/// The request metrics every proxy thread observes into.
pub(crate) struct RequestMetrics {
    registry: Registry,
    pub(crate) ttft: HistogramVec,
    pub(crate) itl: HistogramVec,
    pub(crate) e2e: HistogramVec,
    pub(crate) queue: HistogramVec,
    pub(crate) prompt_tokens: IntCounterVec,
    pub(crate) generation_tokens: IntCounterVec,
    pub(crate) success: IntCounterVec,
}

fn histogram(r: &Registry, name: &str, help: &str, buckets: &[f64]) -> HistogramVec {
    let h = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        LABELS,
    )
    .expect("a valid histogram");
    r.register(Box::new(h.clone())).expect("registered once");
    h
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("a valid counter");
    r.register(Box::new(c.clone())).expect("registered once");
    c
}

pub(crate) static REQUESTS: LazyLock<RequestMetrics> = LazyLock::new(|| {
    let r = Registry::new();
    RequestMetrics {
        ttft: histogram(&r, "vllm:time_to_first_token_seconds", "Time to first token: request received by the proxy → first generated text sent on.", TTFT_BUCKETS),
        itl: histogram(&r, "vllm:inter_token_latency_seconds", "Time between two chunks of generated text of a stream.", ITL_BUCKETS),
        e2e: histogram(&r, "vllm:e2e_request_latency_seconds", "Request received by the proxy → last byte of the reply sent on.", LATENCY_BUCKETS),
        queue: histogram(&r, "vllm:request_queue_time_seconds", "Time a request waited for a max_concurrency slot.", LATENCY_BUCKETS),
        prompt_tokens: counter(&r, "vllm:prompt_tokens_total", "Prompt tokens, from the replies' usage.", LABELS),
        generation_tokens: counter(&r, "vllm:generation_tokens_total", "Generated tokens, from the replies' usage (or one per streamed delta without it).", LABELS),
        success: counter(&r, "vllm:request_success_total", "Requests answered to the end, by finish reason (\"unknown\" when the reply named none).", &["model_name", "service", "finished_reason"]),
        registry: r,
    }
});

/// The `finished_reason` label values: the reasons OpenAI-style servers name, then any other one, then none.
const REASONS: [&str; 7] = [
    "stop",
    "length",
    "tool_calls",
    "content_filter",
    "abort",
    "other",
    "unknown",
];

/// The metrics of one service, resolved once per listener (an observation is then an atomic add; no label
/// lookup or allocation per request). Shared by its requests through an `Arc`.
pub(crate) struct ServiceMetrics {
    pub(crate) ttft: prometheus::Histogram,
    pub(crate) itl: prometheus::Histogram,
    pub(crate) e2e: prometheus::Histogram,
    pub(crate) queue: prometheus::Histogram,
    pub(crate) prompt_tokens: prometheus::IntCounter,
    pub(crate) generation_tokens: prometheus::IntCounter,
    /// `vllm:request_success_total` per `REASONS`.
    success: [prometheus::IntCounter; REASONS.len()],
}

impl ServiceMetrics {
    pub(crate) fn new(service: &str, model: Option<&str>) -> std::sync::Arc<ServiceMetrics> {
        let m = &*REQUESTS;
        let model = model.unwrap_or(service);
        let l = [model, service];
        std::sync::Arc::new(ServiceMetrics {
            ttft: m.ttft.with_label_values(&l),
            itl: m.itl.with_label_values(&l),
            e2e: m.e2e.with_label_values(&l),
            queue: m.queue.with_label_values(&l),
            prompt_tokens: m.prompt_tokens.with_label_values(&l),
            generation_tokens: m.generation_tokens.with_label_values(&l),
            success: REASONS.map(|r| m.success.with_label_values(&[model, service, r])),
        })
    }

    /// A request answered to the end, with the finish reason its reply named (bounded: a label value).
    pub(crate) fn success(&self, reason: Option<&str>) {
        let i = match reason {
            None => REASONS.len() - 1,
            Some(r) => REASONS[..REASONS.len() - 2]
                .iter()
                .position(|x| *x == r)
                .unwrap_or(REASONS.len() - 2),
        };
        self.success[i].inc();
    }
}

/// The whole exposition: the request metrics, then what the daemon knows now.
pub fn render(status: &StatusReport, proxy: &BTreeMap<String, ProxyStats>) -> String {
    let now = Registry::new();
    let gauge = |name: &str, help: &str, labels: &[&str]| {
        let g = GaugeVec::new(Opts::new(name, help), labels).expect("a valid gauge");
        now.register(Box::new(g.clone())).expect("registered once");
        g
    };
    // Totals since the daemon started, exposed as counters (rate() over them is what a dashboard wants).
    let total = |name: &str, help: &str, labels: &[&str]| {
        let c = IntCounterVec::new(Opts::new(name, help), labels).expect("a valid counter");
        now.register(Box::new(c.clone())).expect("registered once");
        c
    };
    let int_gauge = |name: &str, help: &str, labels: &[&str]| {
        let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("a valid gauge");
        now.register(Box::new(g.clone())).expect("registered once");
        g
    };
    let running = int_gauge(
        "vllm:num_requests_running",
        "Requests being answered (a stream counts until its last byte).",
        LABELS,
    );
    let waiting = int_gauge(
        "vllm:num_requests_waiting",
        "Requests waiting for a max_concurrency slot.",
        LABELS,
    );
    let state = int_gauge(
        "mlxbox_service_state",
        "1 for the state each service is in.",
        &["service", "state"],
    );
    let restarts = total(
        "mlxbox_service_restarts_total",
        "Automatic restarts since the daemon started.",
        &["service"],
    );
    let footprint = int_gauge(
        "mlxbox_service_memory_bytes",
        "Resident memory of the service's process group.",
        &["service"],
    );
    let refused = total("mlxbox_proxy_refused_requests_total", "Requests the proxy answered itself, by status (401 no key, 429 queue full, 503 not ready, 504 backend timeout, 4xx bad request).", &["service", "code"]);
    let mem = int_gauge("mlxbox_memory_bytes", "System memory.", &["kind"]);
    let swap = int_gauge("mlxbox_swap_used_bytes", "Swap in use.", &[]);
    let pressure = int_gauge(
        "mlxbox_memory_pressure",
        "Memory pressure: 0 unknown, 1 normal, 2 warn, 3 critical.",
        &[],
    );
    let thermal = int_gauge(
        "mlxbox_thermal_state",
        "Thermal state: 0 unknown, 1 nominal, 2 fair, 3 serious, 4 critical.",
        &[],
    );
    let alerts = int_gauge(
        "mlxbox_alerts_active",
        "Active alerts by severity.",
        &["severity"],
    );
    let up = gauge("mlxbox_up", "1: the daemon answers.", &[]);

    up.with_label_values(&[] as &[&str]).set(1.0);
    for s in &status.services {
        let model = s.model.as_deref().unwrap_or(&s.name);
        state
            .with_label_values(&[s.name.as_str(), s.state.as_str()])
            .set(1);
        restarts
            .with_label_values(&[s.name.as_str()])
            .inc_by(u64::from(s.restarts));
        if let Some(m) = s.memory_bytes {
            footprint
                .with_label_values(&[s.name.as_str()])
                .set(m.min(i64::MAX as u64) as i64);
        }
        if let Some(p) = proxy.get(&s.name) {
            let l = [model, s.name.as_str()];
            running
                .with_label_values(&l)
                .set(p.in_flight.min(i64::MAX as u64) as i64);
            waiting
                .with_label_values(&l)
                .set(p.waiting.min(i64::MAX as u64) as i64);
            for (code, n) in [
                ("401", p.unauthorized),
                ("429", p.rejected_busy),
                ("503", p.unavailable),
                ("504", p.timeouts),
                ("4xx", p.bad_requests),
            ] {
                refused
                    .with_label_values(&[s.name.as_str(), code])
                    .inc_by(n);
            }
        }
    }
    let m = &status.memory;
    for (kind, v) in [
        ("total", m.total_bytes),
        ("used", m.used_bytes),
        ("available", m.available_bytes),
    ] {
        mem.with_label_values(&[kind])
            .set(v.min(i64::MAX as u64) as i64);
    }
    swap.with_label_values(&[] as &[&str])
        .set(m.swap_used_bytes.min(i64::MAX as u64) as i64);
    pressure
        .with_label_values(&[] as &[&str])
        .set(match m.pressure {
            Pressure::Unknown => 0,
            Pressure::Normal => 1,
            Pressure::Warn => 2,
            Pressure::Critical => 3,
        });
    thermal
        .with_label_values(&[] as &[&str])
        .set(match status.thermal.state {
            Thermal::Unknown => 0,
            Thermal::Nominal => 1,
            Thermal::Fair => 2,
            Thermal::Serious => 3,
            Thermal::Critical => 4,
        });
    for sev in [
        AlertSeverity::Info,
        AlertSeverity::Warning,
        AlertSeverity::Critical,
    ] {
        let n = status.alerts.iter().filter(|a| a.severity == sev).count();
        let name = match sev {
            AlertSeverity::Info => "info",
            AlertSeverity::Warning => "warning",
            AlertSeverity::Critical => "critical",
        };
        alerts.with_label_values(&[name]).set(n as i64);
    }

    let mut families = REQUESTS.registry.gather();
    families.extend(now.gather());
    let mut out = Vec::new();
    if TextEncoder::new().encode(&families, &mut out).is_err() {
        return String::new();
    }
    String::from_utf8(out).unwrap_or_default()
}

/// The exposition's content type (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[cfg(test)]
mod tests {
    /// The Grafana dashboard in the repository reads only metrics this module exposes (a renamed metric
    /// would otherwise leave an empty panel).
    #[test]
    fn the_dashboard_reads_only_exposed_metrics() {
        let dashboard = include_str!("../../../dashboards/grafana-mlx-box.json");
        let me = include_str!("metrics.rs");
        let v: serde_json::Value = serde_json::from_str(dashboard).expect("the dashboard is JSON");
        let mut names = vec![];
        for p in v["panels"].as_array().expect("panels") {
            for t in p["targets"].as_array().expect("targets") {
                let expr = t["expr"].as_str().expect("an expression");
                for (i, _) in expr.match_indices(['v', 'm']) {
                    let rest = &expr[i..];
                    if !(rest.starts_with("vllm:") || rest.starts_with("mlxbox_")) {
                        continue;
                    }
                    let name: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                        .collect();
                    names.push(name);
                }
            }
        }
        assert!(names.len() > 10, "{names:?}");
        for n in names {
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| n.strip_suffix(s))
                .unwrap_or(&n);
            assert!(
                me.contains(&format!("\"{base}\"")),
                "the dashboard reads `{n}`, which metrics.rs does not expose"
            );
        }
    }
}
