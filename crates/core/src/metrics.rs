//! `GET /metrics`: the Prometheus text exposition of what the proxy measured and what the daemon knows.
//!
//! - vLLM's names, units and buckets for what the proxy sees of each request (labels `model_name`, the
//!   service's model id, and `service`), so existing vLLM dashboards read mlx-box:
//!   `vllm:time_to_first_token_seconds`, `vllm:inter_token_latency_seconds`,
//!   `vllm:e2e_request_latency_seconds`, `vllm:request_queue_time_seconds` (histograms),
//!   `vllm:prompt_tokens_total`, `vllm:generation_tokens_total`, `vllm:request_success_total`
//!   (by `finished_reason`), `vllm:num_requests_running`, `vllm:num_requests_waiting`.
//! - `mlxbox_*` for what only mlx-box knows: service state, restarts, memory (used, available, wired,
//!   budget, each service's footprint and estimate), swap and swap-out rate, pressure, thermal state, active
//!   alerts, the proxy's refusals, the last benchmark run.
//!
//! The request metrics live in one process-wide registry and are observed by the proxy as requests end
//! (an atomic add each); the rest is read from the daemon's status when scraped.

use crate::api::{AlertSeverity, LiveRequests, StatusReport};
use crate::bench::{BenchResult, CheckStatus};
use crate::estimate::Estimate;
use crate::monitor::{Pressure, Sample, Thermal};
use mlxbox_api::proxy::ProxyStats;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
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

/// What a scrape reads besides the request registry: the daemon's state at that moment.
pub struct Scrape<'a> {
    pub status: &'a StatusReport,
    pub proxy: &'a BTreeMap<String, ProxyStats>,
    /// The monitor's latest sample (wired memory, swap-out rate, temperature).
    pub sample: &'a Sample,
    /// The estimate of the applied settings (weights, KV cache, budget).
    pub plan: Option<&'a Estimate>,
    /// The last saved benchmark run.
    pub bench: Option<&'a BenchResult>,
}

/// The gauges of one scrape, written straight into the exposition (no registry per scrape: with 50
/// services building and gathering one cost more than encoding the histograms).
struct Text<'a>(&'a mut String);

impl Text<'_> {
    /// `# HELP` and `# TYPE` of a family; its samples follow.
    fn family(&mut self, name: &str, ty: &str, help: &str) {
        let o = &mut *self.0;
        o.push_str("# HELP ");
        o.push_str(name);
        o.push(' ');
        escape_into(o, help, false);
        o.push_str("\n# TYPE ");
        o.push_str(name);
        o.push(' ');
        o.push_str(ty);
        o.push('\n');
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], v: f64) {
        let o = &mut *self.0;
        o.push_str(name);
        for (i, (k, val)) in labels.iter().enumerate() {
            o.push(if i == 0 { '{' } else { ',' });
            o.push_str(k);
            o.push_str("=\"");
            escape_into(o, val, true);
            o.push('"');
        }
        if !labels.is_empty() {
            o.push('}');
        }
        o.push(' ');
        push_f64(o, v);
        o.push('\n');
    }

    /// A family with one sample.
    fn single(&mut self, name: &str, ty: &str, help: &str, v: f64) {
        self.family(name, ty, help);
        self.sample(name, &[], v);
    }
}

/// The whole exposition: the request metrics, then what the daemon knows now.
pub fn render(x: &Scrape) -> String {
    let families = REQUESTS.registry.gather();
    let mut out = String::with_capacity(16 * 1024 + x.status.services.len() * 12 * 1024);
    encode_text(&families, &mut out);
    drop(families);
    let mut t = Text(&mut out);
    proxy_gauges(&mut t, x);
    service_gauges(&mut t, &x.status.services);
    machine_gauges(&mut t, x);
    host_gauges(&mut t, &x.status.hosts);
    if let Some(plan) = x.plan {
        plan_gauges(&mut t, plan);
    }
    if let Some(b) = x.bench {
        bench_gauges(&mut t, b);
    }
    t.single("mlxbox_up", "gauge", "1: the daemon answers.", 1.0);
    out
}

/// vLLM's gauges of the requests each proxied service answers and queues, and what the proxy refused.
fn proxy_gauges(t: &mut Text, x: &Scrape) {
    let services = &x.status.services;
    let proxied: Vec<(&str, &str, &ProxyStats)> = services
        .iter()
        .filter_map(|s| {
            let p = x.proxy.get(&s.name)?;
            Some((s.model.as_deref().unwrap_or(&s.name), s.name.as_str(), p))
        })
        .collect();
    t.family(
        "vllm:num_requests_running",
        "gauge",
        "Requests being answered (a stream counts until its last byte).",
    );
    for (model, name, p) in &proxied {
        let l = [("model_name", *model), ("service", *name)];
        t.sample("vllm:num_requests_running", &l, p.in_flight as f64);
    }
    t.family(
        "vllm:num_requests_waiting",
        "gauge",
        "Requests waiting for a max_concurrency slot.",
    );
    for (model, name, p) in &proxied {
        let l = [("model_name", *model), ("service", *name)];
        t.sample("vllm:num_requests_waiting", &l, p.waiting as f64);
    }
    t.family(
        "mlxbox_proxy_refused_requests_total",
        "counter",
        "Requests the proxy answered itself, by status (401 no key, 429 queue full, 503 not ready, 504 backend timeout, 4xx bad request).",
    );
    for (_, name, p) in &proxied {
        for (code, n) in [
            ("401", p.unauthorized),
            ("429", p.rejected_busy),
            ("503", p.unavailable),
            ("504", p.timeouts),
            ("4xx", p.bad_requests),
        ] {
            let l = [("service", *name), ("code", code)];
            t.sample("mlxbox_proxy_refused_requests_total", &l, n as f64);
        }
    }
}

/// Each service's state, restarts and memory.
fn service_gauges(t: &mut Text, services: &[crate::api::ServiceStatus]) {
    t.family(
        "mlxbox_service_state",
        "gauge",
        "1 for the state each service is in.",
    );
    for s in services {
        let l = [("service", s.name.as_str()), ("state", s.state.as_str())];
        t.sample("mlxbox_service_state", &l, 1.0);
    }
    t.family(
        "mlxbox_service_restarts_total",
        "counter",
        "Automatic restarts since the daemon started.",
    );
    for s in services {
        let l = [("service", s.name.as_str())];
        t.sample("mlxbox_service_restarts_total", &l, f64::from(s.restarts));
    }
    t.family(
        "mlxbox_service_memory_bytes",
        "gauge",
        "Memory of the service's process group (macOS: physical footprint; else resident).",
    );
    for s in services {
        if let Some(m) = s.memory_bytes {
            let l = [("service", s.name.as_str())];
            t.sample("mlxbox_service_memory_bytes", &l, m as f64);
        }
    }
}

/// The Mac's memory, swap, pressure, heat, and the alerts.
fn machine_gauges(t: &mut Text, x: &Scrape) {
    let m = &x.status.memory;
    t.family(
        "mlxbox_memory_bytes",
        "gauge",
        "System memory: total, used, available; wired and compressed where the OS tells (macOS).",
    );
    for (kind, v) in [
        ("total", Some(m.total_bytes)),
        ("used", Some(m.used_bytes)),
        ("available", Some(m.available_bytes)),
        ("wired", x.sample.wired_bytes),
        ("compressed", x.sample.compressed_bytes),
    ] {
        if let Some(v) = v {
            t.sample("mlxbox_memory_bytes", &[("kind", kind)], v as f64);
        }
    }
    t.single(
        "mlxbox_swap_used_bytes",
        "gauge",
        "Swap in use.",
        m.swap_used_bytes as f64,
    );
    if let Some(r) = x.sample.swap_out_bytes_per_s {
        t.single(
            "mlxbox_swap_out_bytes_per_second",
            "gauge",
            "Bytes written to swap per second over the last monitor interval (1 s).",
            r,
        );
    }
    t.single(
        "mlxbox_memory_pressure",
        "gauge",
        "Memory pressure: 0 unknown, 1 normal, 2 warn, 3 critical.",
        match m.pressure {
            Pressure::Unknown => 0.0,
            Pressure::Normal => 1.0,
            Pressure::Warn => 2.0,
            Pressure::Critical => 3.0,
        },
    );
    t.single(
        "mlxbox_thermal_state",
        "gauge",
        "Thermal state: 0 unknown, 1 nominal, 2 fair, 3 serious, 4 critical.",
        match x.status.thermal.state {
            Thermal::Unknown => 0.0,
            Thermal::Nominal => 1.0,
            Thermal::Fair => 2.0,
            Thermal::Serious => 3.0,
            Thermal::Critical => 4.0,
        },
    );
    if let Some(c) = x.sample.temperature_c {
        t.single(
            "mlxbox_temperature_celsius",
            "gauge",
            "Hottest sensor, where the OS exposes one.",
            c,
        );
    }
    t.family(
        "mlxbox_alerts_active",
        "gauge",
        "Active alerts by severity.",
    );
    for (sev, name) in [
        (AlertSeverity::Info, "info"),
        (AlertSeverity::Warning, "warning"),
        (AlertSeverity::Critical, "critical"),
    ] {
        let n = x.status.alerts.iter().filter(|a| a.severity == sev).count();
        t.sample("mlxbox_alerts_active", &[("severity", name)], n as f64);
    }
}

/// The `[hosts]` Macs: up, and the link's round trip.
fn host_gauges(t: &mut Text, hosts: &[crate::api::HostStatus]) {
    if !hosts.is_empty() {
        t.family(
            "mlxbox_host_up",
            "gauge",
            "1 when a [hosts] Mac's daemon answers, 0 when not.",
        );
        for h in hosts {
            let up = if h.reachable { 1.0 } else { 0.0 };
            t.sample("mlxbox_host_up", &[("host", &h.name)], up);
        }
        let name = "mlxbox_host_rtt_seconds";
        t.family(
            name,
            "gauge",
            "Round trip to a [hosts] Mac's daemon over the last 30 s, by percentile.",
        );
        for h in hosts {
            for (p, v) in [("50", h.rtt_p50_ms), ("99", h.rtt_p99_ms)] {
                if let Some(v) = v {
                    t.sample(name, &[("host", &h.name), ("percentile", p)], v / 1000.0);
                }
            }
        }
    }
}

/// The text exposition format (0.0.4) exactly as the `prometheus` crate's `TextEncoder` writes it (a
/// test holds the two equal), but with each series' labels escaped once rather than once per bucket
/// and no allocation per sample: with 50 services (~5,700 series) that encoder's 4–5 ms was most of a
/// scrape.
fn encode_text(families: &[prometheus::proto::MetricFamily], out: &mut String) {
    use prometheus::proto::MetricType;
    use std::fmt::Write;
    for mf in families {
        let name = mf.name();
        if !mf.help().is_empty() {
            out.push_str("# HELP ");
            out.push_str(name);
            out.push(' ');
            escape_into(out, mf.help(), false);
            out.push('\n');
        }
        let ty = mf.get_field_type();
        let _ = writeln!(out, "# TYPE {name} {}", format!("{ty:?}").to_lowercase());
        // The buckets' `le` values, formatted once per family (every series of a family has the same).
        let mut le: Vec<(f64, String)> = vec![];
        let mut labels = String::new();
        for m in mf.get_metric() {
            labels.clear();
            for (i, lp) in m.get_label().iter().enumerate() {
                labels.push(if i == 0 { '{' } else { ',' });
                labels.push_str(lp.name());
                labels.push_str("=\"");
                escape_into(&mut labels, lp.value(), true);
                labels.push('"');
            }
            let closed = if labels.is_empty() { "" } else { "}" };
            let stamp = m.timestamp_ms();
            let mut sample = |suffix: &str, extra: Option<(&str, &str)>, value: f64| {
                out.push_str(name);
                out.push_str(suffix);
                out.push_str(&labels);
                match extra {
                    Some((k, v)) => {
                        out.push(if labels.is_empty() { '{' } else { ',' });
                        out.push_str(k);
                        out.push_str("=\"");
                        out.push_str(v);
                        out.push_str("\"}");
                    }
                    None => out.push_str(closed),
                }
                out.push(' ');
                push_f64(out, value);
                if stamp != 0 {
                    let _ = write!(out, " {stamp}");
                }
                out.push('\n');
            };
            match ty {
                MetricType::COUNTER => sample("", None, m.get_counter().get_value()),
                MetricType::GAUGE => sample("", None, m.get_gauge().get_value()),
                MetricType::HISTOGRAM => {
                    let h = m.get_histogram();
                    let buckets = h.get_bucket();
                    let same = le.len() == buckets.len()
                        && le.iter().zip(buckets).all(|(l, b)| l.0 == b.upper_bound());
                    if !same {
                        le = buckets
                            .iter()
                            .map(|b| (b.upper_bound(), b.upper_bound().to_string()))
                            .collect();
                    }
                    let mut inf = false;
                    for (b, (bound, text)) in buckets.iter().zip(&le) {
                        sample("_bucket", Some(("le", text)), b.cumulative_count() as f64);
                        inf |= bound.is_infinite() && bound.is_sign_positive();
                    }
                    let count = h.get_sample_count() as f64;
                    if !inf {
                        sample("_bucket", Some(("le", "+Inf")), count);
                    }
                    sample("_sum", None, h.get_sample_sum());
                    sample("_count", None, count);
                }
                // Not made here (no summaries, no untyped); written by the library if ever they are.
                _ => {
                    let one = [mf.clone()];
                    let mut buf = Vec::new();
                    if TextEncoder::new().encode(&one, &mut buf).is_ok() {
                        let text = String::from_utf8_lossy(&buf);
                        // Its HELP and TYPE lines are written above already.
                        for l in text.lines().filter(|l| !l.starts_with('#')) {
                            out.push_str(l);
                            out.push('\n');
                        }
                    }
                    break;
                }
            }
        }
    }
}

/// `v` as Rust's `Display` writes it (what the library writes), through the integer formatter when it
/// is a whole number: counts are, and they are most of an exposition.
fn push_f64(out: &mut String, v: f64) {
    use std::fmt::Write;
    if v.fract() == 0.0 && v.abs() < 9.0e15 && !(v == 0.0 && v.is_sign_negative()) {
        let _ = write!(out, "{}", v as i64);
    } else {
        let _ = write!(out, "{v}");
    }
}

/// Escapes `\\` and newlines (and `"` in label values) as the text format wants.
fn escape_into(out: &mut String, v: &str, quote: bool) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// The memory plan of the applied settings: what each service is estimated to take, and the budget.
fn plan_gauges(t: &mut Text, plan: &Estimate) {
    let name = "mlxbox_service_estimated_bytes";
    t.family(
        name,
        "gauge",
        "Estimated memory of a service from its model files and settings: weights, and KV cache for max_concurrency sequences of context_length.",
    );
    for s in &plan.services {
        for (part, v) in [("weights", s.weights_bytes), ("kv_cache", s.kv_bytes)] {
            if let Some(v) = v {
                t.sample(name, &[("service", &s.name), ("part", part)], v as f64);
            }
        }
    }
    if let Some(b) = plan.budget_bytes {
        let name = "mlxbox_memory_budget_bytes";
        t.family(
            name,
            "gauge",
            "Memory the models may use (macOS: iogpu.wired_limit_mb when set, else a share of physical memory).",
        );
        let source = plan.budget_source.as_deref().unwrap_or("memory");
        t.sample(name, &[("source", source)], b as f64);
    }
}

/// The last benchmark run (`mlx-box bench`): per service and load level, as it was measured.
fn bench_gauges(t: &mut Text, b: &BenchResult) {
    t.single(
        "mlxbox_bench_timestamp_seconds",
        "gauge",
        "When the last benchmark run ended (Unix time).",
        b.finished_ms as f64 / 1000.0,
    );
    let name = "mlxbox_bench_passed";
    t.family(
        name,
        "gauge",
        "Last benchmark run: 1 when the service met its expect_* thresholds, 0 when not (absent: skipped).",
    );
    for s in &b.services {
        match s.verdict {
            CheckStatus::Pass => t.sample(name, &[("service", &s.name)], 1.0),
            CheckStatus::Fail => t.sample(name, &[("service", &s.name)], 0.0),
            CheckStatus::Skip => {}
        }
    }
    // Per level: (service, concurrency, rate) labels; `rate` is empty for closed-loop levels.
    let levels: Vec<(&str, String, String, &crate::bench::LevelResult)> = b
        .services
        .iter()
        .flat_map(|s| {
            s.levels.iter().map(|l| {
                let rate = l.rate.map(|r| r.to_string()).unwrap_or_default();
                (s.name.as_str(), l.concurrency.to_string(), rate, l)
            })
        })
        .collect();
    type Figure = fn(&crate::bench::LevelResult) -> f64;
    let per_level: [(&str, &str, Figure); 3] = [
        (
            "mlxbox_bench_output_tokens_per_second",
            "Last benchmark run: generated tokens per second, all requests of the level together.",
            |l| l.output_tok_s,
        ),
        (
            "mlxbox_bench_requests_per_second",
            "Last benchmark run: requests answered per second.",
            |l| l.request_s,
        ),
        (
            "mlxbox_bench_errors",
            "Last benchmark run: failed requests.",
            |l| f64::from(l.errors),
        ),
    ];
    for (name, help, figure) in per_level {
        t.family(name, "gauge", help);
        for (service, c, r, l) in &levels {
            let labels = [("service", *service), ("concurrency", c), ("rate", r)];
            t.sample(name, &labels, figure(l));
        }
    }
    let name = "mlxbox_bench_ttft_seconds";
    t.family(
        name,
        "gauge",
        "Last benchmark run: time to first token by percentile (a summary of the run; the label is not `quantile`, which Prometheus keeps for summaries).",
    );
    for (service, c, r, l) in &levels {
        let Some(ttft) = &l.ttft_ms else { continue };
        for (q, v) in [("50", ttft.p50), ("90", ttft.p90), ("99", ttft.p99)] {
            let labels = [
                ("service", *service),
                ("concurrency", c),
                ("rate", r),
                ("percentile", q),
            ];
            t.sample(name, &labels, v / 1000.0);
        }
    }
}

/// The request histograms over a sliding minute, for the dashboard window: per service, TTFT p50/p95 and
/// tok/s, computed as Prometheus computes `histogram_quantile(q, rate(…[1m]))`. Fed once a second.
#[derive(Default)]
pub struct LiveWindow {
    /// (t_ms, per service counts), oldest first; the front is the base the newest is compared with.
    snaps: std::collections::VecDeque<(u64, BTreeMap<String, Counts>)>,
}

#[derive(Clone, Default)]
struct Counts {
    /// Cumulative TTFT counts per bucket of `TTFT_BUCKETS`, then the total.
    ttft: Vec<u64>,
    tokens: f64,
}

impl LiveWindow {
    pub const SPAN_MS: u64 = 60_000;

    pub fn tick(&mut self, t_ms: u64) -> BTreeMap<String, LiveRequests> {
        let now = current_counts();
        while self.snaps.len() >= 2 && self.snaps[1].0 + Self::SPAN_MS <= t_ms {
            self.snaps.pop_front();
        }
        let mut out = BTreeMap::new();
        if let Some((t0, base)) = self.snaps.front() {
            let secs = t_ms.saturating_sub(*t0) as f64 / 1000.0;
            for (service, c) in &now {
                let zero = Counts::default();
                let b = base.get(service).unwrap_or(&zero);
                let delta: Vec<u64> = c
                    .ttft
                    .iter()
                    .enumerate()
                    .map(|(i, n)| n.saturating_sub(b.ttft.get(i).copied().unwrap_or(0)))
                    .collect();
                let requests = delta.last().copied().unwrap_or(0);
                let q = |q: f64| quantile(q, TTFT_BUCKETS, &delta).map(|s| s * 1000.0);
                out.insert(
                    service.clone(),
                    LiveRequests {
                        requests,
                        ttft_p50_ms: q(0.5),
                        ttft_p95_ms: q(0.95),
                        output_tok_s: if secs > 0.0 {
                            (c.tokens - b.tokens).max(0.0) / secs
                        } else {
                            0.0
                        },
                        window_s: secs,
                    },
                );
            }
        }
        self.snaps.push_back((t_ms, now));
        out
    }
}

/// Every service's TTFT buckets and generated tokens now.
fn current_counts() -> BTreeMap<String, Counts> {
    let service = |m: &prometheus::proto::Metric| {
        m.get_label()
            .iter()
            .find(|l| l.name() == "service")
            .map(|l| l.value().to_string())
    };
    let mut out: BTreeMap<String, Counts> = BTreeMap::new();
    for f in prometheus::core::Collector::collect(&REQUESTS.ttft) {
        for m in f.get_metric() {
            let Some(name) = service(m) else { continue };
            let h = m.get_histogram();
            let mut v: Vec<u64> = h
                .get_bucket()
                .iter()
                .map(|b| b.cumulative_count())
                .collect();
            v.push(h.get_sample_count());
            out.entry(name).or_default().ttft = v;
        }
    }
    for f in prometheus::core::Collector::collect(&REQUESTS.generation_tokens) {
        for m in f.get_metric() {
            let Some(name) = service(m) else { continue };
            out.entry(name).or_default().tokens = m.get_counter().get_value();
        }
    }
    out
}

/// The q-quantile of a histogram (cumulative counts per upper bound, then the total), interpolated
/// linearly within its bucket as Prometheus' `histogram_quantile` does; in the +Inf bucket, the highest
/// finite bound. None when it counts nothing.
fn quantile(q: f64, bounds: &[f64], cumulative: &[u64]) -> Option<f64> {
    let total = *cumulative.last()?;
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut below = 0u64;
    for (i, &upper) in bounds.iter().enumerate() {
        let n = cumulative.get(i).copied().unwrap_or(total);
        if n as f64 >= rank {
            let lower = if i == 0 { 0.0 } else { bounds[i - 1] };
            let inside = n.saturating_sub(below);
            if inside == 0 {
                return Some(upper);
            }
            return Some(lower + (upper - lower) * (rank - below as f64) / inside as f64);
        }
        below = n;
    }
    bounds.last().copied()
}

/// The exposition's content type (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::GaugeVec;

    /// The fast encoder writes what the library's encoder writes, byte for byte: histograms (with and
    /// without a +Inf bucket of their own), counters, gauges, labels that need escaping, no labels.
    #[test]
    fn the_text_is_the_librarys_text() {
        let r = Registry::new();
        let h = HistogramVec::new(
            HistogramOpts::new("t_seconds", "A \\ help\nwith a newline.")
                .buckets(vec![0.001, 0.5, 2.0, 2560.0]),
            &["model_name", "service"],
        )
        .unwrap();
        r.register(Box::new(h.clone())).unwrap();
        for (v, m) in [
            (0.0004, "a"),
            (0.7, "a"),
            (9999.0, "a"),
            (0.2, "we\"ird\\\nname"),
        ] {
            h.with_label_values(&[m, "s"]).observe(v);
        }
        let inf = HistogramVec::new(
            HistogramOpts::new("inf_seconds", "Own +Inf.").buckets(vec![1.0, f64::INFINITY]),
            &["service"],
        )
        .unwrap();
        r.register(Box::new(inf.clone())).unwrap();
        inf.with_label_values(&["x"]).observe(5.0);
        let c = IntCounterVec::new(Opts::new("n_total", "Counted."), &["service", "code"]).unwrap();
        r.register(Box::new(c.clone())).unwrap();
        c.with_label_values(&["s", "401"]).inc_by(123_456_789);
        let g = GaugeVec::new(Opts::new("g", "Gauged."), &[]).unwrap();
        r.register(Box::new(g.clone())).unwrap();
        g.with_label_values(&[] as &[&str]).set(-0.125);
        let z = GaugeVec::new(Opts::new("z", "Signed zero, NaN, infinity, big."), &["v"]).unwrap();
        r.register(Box::new(z.clone())).unwrap();
        for (l, v) in [
            ("a", -0.0),
            ("b", f64::NAN),
            ("c", f64::NEG_INFINITY),
            ("d", 1e300),
            ("e", -42.0),
        ] {
            z.with_label_values(&[l]).set(v);
        }
        let fams = r.gather();
        let mut lib = Vec::new();
        TextEncoder::new().encode(&fams, &mut lib).unwrap();
        let mut mine = String::new();
        encode_text(&fams, &mut mine);
        assert_eq!(mine, String::from_utf8(lib).unwrap());
        assert!(mine.contains(r#"model_name="we\"ird\\\nname""#), "{mine}");
    }

    #[test]
    fn quantiles_interpolate_like_prometheus() {
        let b = [1.0, 2.0, 4.0];
        // 10 in (1, 2]: the median is halfway through that bucket.
        assert_eq!(quantile(0.5, &b, &[0, 10, 10, 10]), Some(1.5));
        assert_eq!(quantile(0.95, &b, &[0, 10, 10, 10]), Some(1.95));
        // Below the first bound: from 0.
        assert_eq!(quantile(0.5, &b, &[4, 4, 4, 4]), Some(0.5));
        // Only in +Inf: the highest finite bound, as histogram_quantile says.
        assert_eq!(quantile(0.5, &b, &[0, 0, 0, 3]), Some(4.0));
        assert_eq!(quantile(0.5, &b, &[0, 0, 0, 0]), None);
        assert_eq!(quantile(0.5, &b, &[]), None);
    }

    #[test]
    fn the_live_window_is_the_last_minute_of_the_histograms() {
        let m = ServiceMetrics::new("live-window-test", Some("m"));
        let mut w = LiveWindow::default();
        assert!(w.tick(0).is_empty(), "no base yet");
        for _ in 0..10 {
            m.ttft.observe(0.05);
        }
        m.ttft.observe(0.3);
        m.generation_tokens.inc_by(300);
        let l = &w.tick(10_000)["live-window-test"];
        assert_eq!((l.requests, l.window_s, l.output_tok_s), (11, 10.0, 30.0));
        let p50 = l.ttft_p50_ms.unwrap();
        assert!((40.0..60.0).contains(&p50), "{p50}");
        let p95 = l.ttft_p95_ms.unwrap();
        assert!((250.0..500.0).contains(&p95), "{p95}");
        // A minute later with nothing new, the window has moved past them.
        let l = &w.tick(70_000)["live-window-test"];
        assert_eq!((l.requests, l.ttft_p50_ms, l.output_tok_s), (0, None, 0.0));
        assert_eq!(l.window_s, 60.0);
    }

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
