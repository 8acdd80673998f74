//! The benchmark's metrics against a purpose-built server that streams tokens at known times: a role-only
//! first chunk, reasoning then content, one chunk carrying three tokens, a usage-only last chunk. The
//! server records when it wrote each chunk; the client's TTFT, ITL, TPOT and E2E must match to the
//! millisecond. Then the whole engine (levels, Poisson rate, thresholds, thinking check, embeddings,
//! failures) on the same server. 127.0.0.1 only; the servers stop when the test ends.

#[path = "support/sse_server.rs"]
mod sse_server;

use mlxbox_core::bench::{self, client, BenchOptions, BenchProgress, CheckStatus, Hooks, Target};
use sse_server::*;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const MS: Duration = Duration::from_millis(1);

/// Role-only at 0; reasoning at 100 ms; content at 120; a 3-token chunk at 140; content at 160; finish at
/// 180; usage-only at 200. Six completion tokens.
fn known_script() -> Script {
    Script {
        steps: vec![
            Step {
                at: Duration::ZERO,
                data: role_only(),
            },
            Step {
                at: 100 * MS,
                data: reasoning("Let me"),
            },
            Step {
                at: 120 * MS,
                data: content("a"),
            },
            Step {
                at: 140 * MS,
                data: content("b c d"),
            },
            Step {
                at: 160 * MS,
                data: content("e"),
            },
            Step {
                at: 180 * MS,
                data: finish(),
            },
            Step {
                at: 200 * MS,
                data: usage(12, 6, 4),
            },
        ],
        ..Script::default()
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn spec(text: &str) -> mlxbox_core::config::ServiceSpec {
    let (s, d) = mlxbox_core::config::parse_settings(std::path::Path::new("t.toml"), text);
    s.unwrap_or_else(|| panic!("{d:?}")).services.remove(0)
}

fn port(base: &str) -> u16 {
    base.rsplit(':').next().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_timings_match_the_server_to_the_millisecond() {
    let srv = start(known_script()).await;
    let http = client::http_client(Duration::from_secs(10));
    // A first request opens the connection, so the measured ones time the stream, not the TCP handshake.
    client::stream_chat(&http, &srv.base, &client::chat_body("warm", 8)).await;
    // Two cores shared with other builds: a descheduled thread shifts one arrival by milliseconds. The
    // client must match the server's clock to 1 ms in at least one of twenty tries (on a quiet machine,
    // the first; each try takes 0.2 s).
    let mut misses = vec![];
    for _ in 0..20 {
        let out = client::stream_chat(&http, &srv.base, &client::chat_body("hi", 8)).await;
        let sent = srv.sent.lock().unwrap().last().cloned().unwrap();
        let r = &out.record;
        assert_eq!(r.error, None);
        assert_eq!(out.reasoning, "Let me");
        assert_eq!(out.content, "ab c de");
        assert_eq!(out.fingerprint.as_deref(), Some("test-0.1"));
        assert_eq!(
            (r.prompt_tokens, r.completion_tokens, r.cached_tokens),
            (Some(12), Some(6), Some(4))
        );
        // The role-only chunk (t=0) and the finish / usage chunks carry no text: 4 text chunks.
        assert_eq!(r.text_chunks_ms.len(), 4, "{:?}", r.text_chunks_ms);
        let m = r.metrics().unwrap();
        assert_eq!(m.itl_ms.len(), 3);
        // The definitions on the script's nominal times (timers fire late, never early).
        assert!((100.0..150.0).contains(&m.ttft_ms), "TTFT {}", m.ttft_ms);
        assert!((200.0..250.0).contains(&m.e2e_ms), "E2E {}", m.e2e_ms);
        assert!(m.prompt_tok_s.unwrap() <= 120.0, "12 tokens / ≥ 0.1 s");

        // Ground truth: when the server wrote each chunk. TTFT and E2E contain the request's trip to the
        // server and the first byte's trip back; the role-only chunk is written the instant the request
        // arrives, so counted from its arrival the client must match the server's clock to the
        // millisecond; so must every difference of arrival times (ITL, TPOT).
        let at = |i: usize| ms(sent.steps[i] - sent.arrived);
        let true_e2e = ms(sent.end - sent.arrived);
        let trip = r.first_chunk_ms.unwrap();
        let mut checks = vec![
            ("TTFT after the first byte", m.ttft_ms - trip, at(1) - at(0)),
            (
                "E2E after the first byte",
                m.e2e_ms - trip,
                true_e2e - at(0),
            ),
            ("TPOT", m.tpot_ms.unwrap(), (true_e2e - at(1)) / 5.0),
        ];
        for (i, gap) in m.itl_ms.iter().enumerate() {
            checks.push(("ITL", *gap, at(i + 2) - at(i + 1)));
        }
        let bad: Vec<String> = checks
            .iter()
            .filter(|(_, got, want)| (got - want).abs() > 1.0)
            .map(|(what, got, want)| {
                format!("{what}: measured {got:.3} ms, server says {want:.3} ms")
            })
            .collect();
        if bad.is_empty() {
            return;
        }
        misses.push(bad.join("; "));
    }
    panic!("never within 1 ms:\n{}", misses.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_levels_rate_thresholds_and_thinking() {
    let srv = start(known_script()).await;
    let t = Target::new(&spec(&format!(
        "[services.fast]\nport = {}\nmodel = \"test\"\nexpect_gen_tok_s = 40\nexpect_ttft_ms = 50\n",
        port(&srv.base)
    )));
    let events: Arc<Mutex<Vec<BenchProgress>>> = Arc::default();
    let ev = events.clone();
    let opts = BenchOptions {
        concurrency: vec![1, 4],
        requests: 8,
        rate: Some(20.0),
        ..BenchOptions::default()
    };
    let t0 = Instant::now();
    let r = bench::run(
        "t1".into(),
        opts,
        vec![t],
        Hooks {
            progress: Arc::new(move |p| ev.lock().unwrap().push(p)),
            ..Hooks::default()
        },
    )
    .await;
    assert!(t0.elapsed() < Duration::from_secs(20));
    let s = &r.services[0];
    assert_eq!(s.skipped, None);
    assert_eq!(s.fingerprint.as_deref(), Some("test-0.1"));
    let l1 = s.level(1).unwrap();
    let l4 = s.level(4).unwrap();
    // The server sleeps exactly the script's times, so each figure has a hard floor. Its ceiling is the
    // script's time plus how late this server really wrote (its own record: a loaded machine wakes
    // timers late), plus the client's few milliseconds: the test holds on any machine's speed.
    let script = known_script();
    let late_ms = srv
        .sent
        .lock()
        .unwrap()
        .iter()
        .flat_map(|sent| {
            let steps = sent.steps.iter().zip(&script.steps);
            steps.map(move |(at, step)| (*at - sent.arrived).saturating_sub(step.at))
        })
        .max()
        .unwrap_or_default()
        .as_secs_f64()
        * 1000.0;
    let within = |lo: f64, hi: f64, late: f64, v: f64| lo <= v && v < hi + late;
    for l in [l1, l4] {
        assert_eq!((l.requests, l.errors), (8, 0), "{l:?}");
        let ttft = l.ttft_ms.unwrap().p50;
        assert!(
            within(100.0, 125.0, late_ms, ttft),
            "{l:?} (late {late_ms} ms)"
        );
        let tpot = l.tpot_ms.unwrap().mean;
        assert!(
            within(19.0, 24.0, late_ms / 5.0, tpot),
            "{l:?} (late {late_ms} ms)"
        );
        let itl = l.itl_ms.unwrap().p50;
        assert!(
            within(18.0, 26.0, late_ms, itl),
            "{l:?} (late {late_ms} ms)"
        );
        let e2e = l.e2e_ms.unwrap().p50;
        assert!(
            within(200.0, 240.0, late_ms, e2e),
            "{l:?} (late {late_ms} ms)"
        );
        assert_eq!(l.completion_tokens, 48);
        assert_eq!(l.cached_tokens, Some(32));
    }
    // 6 tokens per 0.2 s alone (less when the server wrote late); 4 at once scale perfectly here.
    let slowest = 6000.0 / (250.0 + late_ms);
    assert!(
        (slowest..30.5).contains(&l1.output_tok_s),
        "{} (late {late_ms} ms)",
        l1.output_tok_s
    );
    let eff = l4.parallel_efficiency.unwrap();
    assert!((0.75..1.05).contains(&eff), "efficiency {eff}");
    assert_eq!(l1.parallel_efficiency, Some(1.0));
    let open = s.levels.iter().find(|l| l.rate.is_some()).unwrap();
    assert_eq!((open.rate, open.requests), (Some(20.0), 8));
    assert!(open.concurrency >= 1);
    // Thresholds: 50 tok/s ≥ 40 passes; TTFT 100 ms > 50 fails, so the service fails.
    let st: Vec<_> = s
        .thresholds
        .iter()
        .map(|t| (t.key.as_str(), t.status))
        .collect();
    assert_eq!(
        st,
        [
            ("expect_gen_tok_s", CheckStatus::Pass),
            ("expect_ttft_ms", CheckStatus::Fail)
        ]
    );
    assert_eq!(
        (s.verdict, r.verdict),
        (CheckStatus::Fail, CheckStatus::Fail)
    );
    // The scripted answer reasons: what a service with thinking on must do.
    assert_eq!(s.thinking.as_ref().unwrap().status, CheckStatus::Pass);
    assert!(!s.throttling_suspected);
    assert!(!r.samples.is_empty() && r.monitor.samples as usize == r.samples.len());
    let ev = events.lock().unwrap();
    let last = ev.last().unwrap();
    assert_eq!(
        (last.done, last.total),
        (1 + 8 + 8 + 8 + 1, 26),
        "warm-up, 2 levels, rate, thinking"
    );
    assert!(ev.iter().any(|p| p.message == "fast: concurrency 4"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_counted_and_explained() {
    let failing = start(Script {
        fail: true,
        ..Script::default()
    })
    .await;
    let mut no_usage = known_script();
    no_usage.steps.pop();
    let no_usage = start(no_usage).await;
    let http = client::http_client(Duration::from_secs(10));
    let o = client::stream_chat(&http, &no_usage.base, &client::chat_body("x", 8)).await;
    assert!(
        o.record.error.as_deref().unwrap().contains("no `usage`"),
        "{:?}",
        o.record.error
    );
    assert!(
        o.record.metrics().is_none(),
        "token counts are never guessed"
    );

    let mk = |base: &str, name: &str| {
        Target::new(&spec(&format!(
            "[services.{name}]\nport = {}\nmodel = \"m\"\n",
            port(base)
        )))
    };
    let r = bench::run(
        "t2".into(),
        BenchOptions {
            concurrency: vec![2],
            requests: 4,
            warmup: 0,
            thinking_check: false,
            ..Default::default()
        },
        vec![mk(&failing.base, "broken"), mk(&no_usage.base, "nousage")],
        Hooks::default(),
    )
    .await;
    for s in &r.services {
        let l = &s.levels[0];
        assert_eq!(
            (l.requests, l.errors, s.verdict),
            (0, 4, CheckStatus::Fail),
            "{}",
            s.name
        );
        assert!(l.ttft_ms.is_none() && l.output_tok_s == 0.0);
    }
    assert!(r.services[0].levels[0]
        .first_error
        .as_deref()
        .unwrap()
        .starts_with("HTTP 500"));

    // Warm-up failing: the service is listed, skipped with the reason.
    let r = bench::run(
        "t3".into(),
        BenchOptions {
            concurrency: vec![1],
            requests: 2,
            ..Default::default()
        },
        vec![mk(&failing.base, "broken")],
        Hooks::default(),
    )
    .await;
    assert!(r.services[0]
        .skipped
        .as_deref()
        .unwrap()
        .contains("warm-up request failed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedding_levels() {
    let srv = start_with(Script::default(), 20 * MS).await;
    let t = Target::new(&spec(&format!(
        "[services.embedding]\nport = {}\nmodel = \"e\"\nbatch_size = 4\nexpect_inputs_s = 1000000\n",
        port(&srv.base)
    )));
    let r = bench::run(
        "t4".into(),
        BenchOptions {
            concurrency: vec![1, 2],
            requests: 6,
            ..Default::default()
        },
        vec![t],
        Hooks::default(),
    )
    .await;
    let s = &r.services[0];
    assert!(s.levels.is_empty());
    assert_eq!(s.embedding.len(), 2);
    for l in &s.embedding {
        assert_eq!((l.requests, l.errors, l.batch_size), (6, 0, 4), "{l:?}");
        assert!(l.latency_ms.unwrap().p50 >= 20.0);
        // 4 inputs per ~20 ms request, one or two at once.
        let want = 4.0 / 0.020 * l.concurrency as f64;
        assert!(
            l.inputs_s > want * 0.6 && l.inputs_s <= want * 1.05,
            "{l:?}"
        );
        assert!(l.prompt_tok_s.is_some());
    }
    assert_eq!(s.thresholds[0].status, CheckStatus::Fail);
    assert_eq!(s.verdict, CheckStatus::Fail);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowing_server_while_heating_up_is_suspected_throttling() {
    use mlxbox_core::monitor::{Sample, Sampler, Thermal};
    // Each request 15 % slower than the one before, while the (injected) thermal state rises.
    let mut script = sse_server::steady(6, 10 * MS, 20 * MS);
    script.slowdown = 0.15;
    let srv = start(script).await;
    let fast = format!(
        "[services.fast]\nport = {}\nmodel = \"m\"\n",
        port(&srv.base)
    );
    let calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let heat = |calls: Arc<std::sync::atomic::AtomicU32>, rising: bool| -> bench::SampleFn {
        let base: Sample = Sampler::default().sample();
        Arc::new(move || {
            let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Sample {
                t_ms: mlxbox_core::api::now_ms(),
                thermal: match (rising, n) {
                    (false, _) | (true, 0..=1) => Thermal::Nominal,
                    (true, 2..=3) => Thermal::Fair,
                    _ => Thermal::Serious,
                },
                ..base.clone()
            }
        })
    };
    let opts = BenchOptions {
        concurrency: vec![1],
        requests: 12,
        warmup: 0,
        thinking_check: false,
        ..Default::default()
    };
    let hooks = |sample| Hooks {
        sample,
        sample_every: 100 * MS,
        ..Hooks::default()
    };
    let r = bench::run(
        "hot".into(),
        opts.clone(),
        vec![Target::new(&spec(&fast))],
        hooks(heat(calls, true)),
    )
    .await;
    assert!(
        r.services[0].throttling_suspected,
        "{:?}",
        r.services[0].levels[0].gen_tok_s
    );
    assert_eq!(r.monitor.max_thermal, Thermal::Serious);
    // The same slowdown with a cool machine: slower, but not throttling.
    let srv2 = start({
        let mut s = sse_server::steady(6, 10 * MS, 20 * MS);
        s.slowdown = 0.15;
        s
    })
    .await;
    let fast2 = format!(
        "[services.fast]\nport = {}\nmodel = \"m\"\n",
        port(&srv2.base)
    );
    let r = bench::run(
        "cool".into(),
        opts,
        vec![Target::new(&spec(&fast2))],
        hooks(heat(Arc::default(), false)),
    )
    .await;
    assert!(!r.services[0].throttling_suspected);
}
