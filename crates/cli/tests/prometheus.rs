//! A real Prometheus (Debian's `prometheus` package) scrapes the daemon's `[metrics] listen` port while
//! requests go through the proxy to the REAL `mlx_lm.server` on the tiny demo model. PromQL over its HTTP
//! API must count what the client was served; the gauges must follow a crash, its automatic restart and a
//! stop; the dashboard's live figures (the monitor tick) must come from the same histograms.

mod common;
use common::*;
use serde_json::Value;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const S: Duration = Duration::from_secs(1);
const KEY: &str = "k-prometheus";

/// A Prometheus server in its own process group, killed (group and all) when dropped.
struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Scrapes `target` (host:port) every second. None when the binary is missing and
    /// MLXBOX_SKIP_PROMETHEUS is set.
    fn start(target: &str) -> Option<Prometheus> {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("prometheus.yml");
        std::fs::write(
            &cfg,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\nscrape_configs:\n  - job_name: mlx-box\n    static_configs:\n      - targets: [\"{target}\"]\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let spawned = Command::new("prometheus")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("log")).unwrap())
            .process_group(0)
            .spawn();
        let child = match spawned {
            Ok(c) => c,
            Err(_) if std::env::var_os("MLXBOX_SKIP_PROMETHEUS").is_some() => return None,
            Err(e) => panic!("prometheus: {e}; install Debian's prometheus package (scripts/setup.sh does), or set MLXBOX_SKIP_PROMETHEUS=1"),
        };
        let p = Prometheus {
            child,
            port,
            _dir: dir,
        };
        let ready = wait_until(30 * S, || {
            port_open(port) && http(port, "GET", "/-/ready", &[], "").0 == 200
        });
        let log = std::fs::read_to_string(p._dir.path().join("log")).unwrap_or_default();
        assert!(ready, "prometheus did not become ready: {log}");
        Some(p)
    }

    /// An instant PromQL query: the value of its single sample (None: no sample).
    fn query(&self, promql: &str) -> Option<f64> {
        let path = format!("/api/v1/query?query={}", urlencode(promql));
        let (code, _, body) = http(self.port, "GET", &path, &[], "");
        assert_eq!(code, 200, "{promql}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        let r = v["data"]["result"].as_array()?;
        assert!(r.len() <= 1, "{promql}: more than one series: {body}");
        r.first()?["value"][1].as_str()?.parse().ok()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let pg = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(pg, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One chat request through the proxy; returns the `usage` the client was sent (a stream's comes in its
/// last chunk, asked for with `stream_options.include_usage`).
fn chat(front: u16, stream: bool) -> (f64, f64) {
    let body = serde_json::json!({
        "messages": [{"role": "user", "content": "What is 2+2?"}],
        "max_tokens": 16, "temperature": 0.0, "stream": stream,
        "stream_options": {"include_usage": true},
    });
    let auth = format!("Bearer {KEY}");
    let headers = [
        ("Content-Type", "application/json"),
        ("Authorization", auth.as_str()),
    ];
    let (code, _, out) = http(
        front,
        "POST",
        "/v1/chat/completions",
        &headers,
        &body.to_string(),
    );
    assert_eq!(code, 200, "{out}");
    let usage = if stream {
        out.lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .find(|c| c["usage"].is_object())
            .unwrap_or_else(|| panic!("no usage in the stream: {out}"))["usage"]
            .clone()
    } else {
        serde_json::from_str::<Value>(&out).unwrap()["usage"].clone()
    };
    (
        usage["prompt_tokens"].as_f64().unwrap(),
        usage["completion_tokens"].as_f64().unwrap(),
    )
}

/// The `live` figures of `service` in the first monitor tick of the event stream that has them.
fn live_from_events(d: &Daemon, service: &str) -> Value {
    use std::io::{BufRead, BufReader, Write};
    let mut s = std::os::unix::net::UnixStream::connect(d.state.join("mlx-box.sock")).unwrap();
    s.set_read_timeout(Some(5 * S)).unwrap();
    s.write_all(b"GET /v1/events HTTP/1.1\r\nHost: mlx-box\r\n\r\n")
        .unwrap();
    for line in BufReader::new(s).lines() {
        let Ok(line) = line else { break };
        let Some(data) = line.strip_prefix("data:") else {
            continue;
        };
        let Ok(ev) = serde_json::from_str::<Value>(data.trim()) else {
            continue;
        };
        if ev["type"] == "monitor" && ev["live"][service].is_object() {
            return ev["live"][service].clone();
        }
    }
    panic!("no monitor tick with live figures for {service}");
}

#[test]
fn prometheus_reads_what_the_proxy_served_to_real_mlx_lm() {
    let env = demo_env();
    let model = env.models.join("chat").display().to_string();
    let (front, back, scrape_port) = (free_port(), free_port(), free_port());
    let config = format!(
        "[server]\nhost = \"127.0.0.1\"\napi_key = \"{KEY}\"\n[app]\npython = \"{}\"\n[metrics]\nlisten = \"127.0.0.1:{scrape_port}\"\n[services.chat]\nkind = \"chat\"\nport = {front}\nbackend_port = {back}\nmodel = \"{model}\"\nready_timeout_s = 180\nenv = {{ HF_HUB_OFFLINE = \"1\" }}\n",
        env.python.display()
    );
    let d = Daemon::start(&config);
    d.wait_state("chat", "ready", 240 * S);
    let Some(prom) = Prometheus::start(&format!("127.0.0.1:{scrape_port}")) else {
        return;
    };
    let me = [("model_name", model.as_str()), ("service", "chat")];
    let sel = format!("{{service=\"chat\",model_name=\"{model}\"}}");

    // Scraped once before the requests, so rate() sees them come.
    assert!(
        wait_until(30 * S, || prom.query("up{job=\"mlx-box\"}") == Some(1.0)),
        "prometheus never scraped 127.0.0.1:{scrape_port}"
    );
    let (mut prompt, mut completion) = (0.0, 0.0);
    for stream in [false, true, false, true] {
        let (p, c) = chat(front, stream);
        prompt += p;
        completion += c;
    }
    assert!(completion > 0.0 && prompt > 0.0);

    // Prometheus has scraped after the last request once its count is 4 (at most a few seconds).
    let count = format!("vllm:time_to_first_token_seconds_count{sel}");
    let seen = wait_until(30 * S, || prom.query(&count) == Some(4.0));
    assert!(seen, "{count} = {:?}", prom.query(&count));
    let q = |e: &str| prom.query(e);
    assert_eq!(
        q(&format!("vllm:e2e_request_latency_seconds_count{sel}")),
        Some(4.0)
    );
    assert_eq!(
        q(&format!("vllm:request_queue_time_seconds_count{sel}")),
        Some(4.0)
    );
    assert_eq!(
        q(&format!("vllm:generation_tokens_total{sel}")),
        Some(completion)
    );
    assert_eq!(q(&format!("vllm:prompt_tokens_total{sel}")), Some(prompt));
    assert_eq!(
        q(&format!("sum(vllm:request_success_total{sel})")),
        Some(4.0)
    );
    // A dashboard's TTFT panel: a finite, positive quantile from the buckets.
    // (rate() needs two scrapes in its window: wait for the second.)
    let ttft = format!(
        "histogram_quantile(0.5, sum by (le) (rate(vllm:time_to_first_token_seconds_bucket{sel}[1m])))"
    );
    let p50 = || q(&ttft).filter(|v| v.is_finite());
    assert!(
        wait_until(10 * S, || p50().is_some()),
        "{ttft}: {:?}",
        q(&ttft)
    );
    let p50 = p50().unwrap();
    assert!(p50 > 0.0 && p50 < 60.0, "TTFT p50 {p50}");
    assert_eq!(
        q("mlxbox_service_state{service=\"chat\",state=\"ready\"}"),
        Some(1.0)
    );
    assert!(q("mlxbox_service_memory_bytes{service=\"chat\"}").unwrap_or(0.0) > 1e6);
    assert_eq!(q("mlxbox_up"), Some(1.0));

    // The window's live figures come from the same histograms: 4 requests in the last minute.
    let live = live_from_events(&d, "chat");
    assert_eq!(live["requests"], 4, "{live}");
    assert!(live["ttft_p50_ms"].as_f64().unwrap() > 0.0, "{live}");
    assert!(live["output_tok_s"].as_f64().unwrap() > 0.0, "{live}");

    // The model server crashes: restarted by itself, counted; the request counters carry on.
    let pid = d.service("chat")["pid"].as_u64().unwrap() as i32;
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    d.wait_service("chat", 240 * S, |s| {
        s["state"] == "ready" && s["pid"].as_u64() != Some(pid as u64)
    });
    let (p, c) = chat(front, false);
    let m = scrape(&d);
    assert_eq!(
        sample(&m, "mlxbox_service_restarts_total", &[("service", "chat")]),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, "vllm:e2e_request_latency_seconds_count", &me),
        Some(5.0)
    );
    assert_eq!(
        sample(&m, "vllm:generation_tokens_total", &me),
        Some(completion + c)
    );
    assert_eq!(
        sample(&m, "vllm:prompt_tokens_total", &me),
        Some(prompt + p)
    );
    let restarts = "mlxbox_service_restarts_total{service=\"chat\"}";
    assert!(
        wait_until(30 * S, || q(restarts) == Some(1.0)),
        "{restarts}"
    );

    // Stopped: the state moves, the footprint gauge goes, nothing runs; the totals stay.
    let out = d.cli(&["stop", "chat"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    d.wait_state("chat", "stopped", 60 * S);
    let m = scrape(&d);
    let stopped = [("service", "chat"), ("state", "stopped")];
    assert_eq!(
        sample(&m, "mlxbox_service_state", &stopped),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            "mlxbox_service_state",
            &[("service", "chat"), ("state", "ready")]
        ),
        None
    );
    assert_eq!(
        sample(&m, "mlxbox_service_memory_bytes", &[("service", "chat")]),
        None,
        "{m}"
    );
    assert_eq!(sample(&m, "vllm:num_requests_running", &me), Some(0.0));
    assert_eq!(
        sample(&m, "vllm:e2e_request_latency_seconds_count", &me),
        Some(5.0)
    );
    let gone = "mlxbox_service_memory_bytes{service=\"chat\"}";
    assert!(
        wait_until(30 * S, || q(gone).is_none()),
        "{gone} still there"
    );
    assert_eq!(
        q("mlxbox_service_state{service=\"chat\",state=\"stopped\"}"),
        Some(1.0)
    );
    promtool_check(&m);
}
