//! `mlx-box bench`, `bench --compare` and `doctor` end to end on the demo profile: a real daemon running
//! the real `mlx_lm.server` (thinking on and off) and the embedding server on the tiny models.

mod common;
use common::*;
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::Duration;

const S: Duration = Duration::from_secs(1);

fn service<'a>(r: &'a Value, name: &str) -> &'a Value {
    r["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {r:#}"))
}

/// GET over the daemon's Unix socket: (status code, body).
/// Each test runs a demo daemon with three model servers: on a small machine two at once starve each
/// other's servers, so they take turns.
static ONE_DEMO_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn bench_compare_and_doctor_on_the_demo_profile() {
    let _turn = ONE_DEMO_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let d = Daemon::start_demo();
    for n in ["chat", "chat-nothink", "embedding"] {
        d.wait_state(n, "ready", 180 * S);
    }

    // A chat and an embedding service, two levels, a long-context request the tiny model can take.
    let (code, r) = cli_json(
        &d,
        &[
            "bench",
            "chat",
            "embedding",
            "--concurrency",
            "1,2",
            "--requests",
            "4",
            "--max-tokens",
            "32",
            "--long-context",
            "--long-context-tokens",
            "600",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["verdict"], "pass");
    let chat = service(&r, "chat");
    let levels = chat["levels"].as_array().unwrap();
    assert_eq!(levels.len(), 2);
    for (l, c) in levels.iter().zip([1, 2]) {
        assert_eq!(
            (
                l["concurrency"].as_u64(),
                l["requests"].as_u64(),
                l["errors"].as_u64()
            ),
            (Some(c), Some(4), Some(0)),
            "{l:#}"
        );
        for k in ["ttft_ms", "tpot_ms", "itl_ms", "e2e_ms"] {
            for p in ["mean", "p50", "p90", "p99"] {
                assert!(l[k][p].as_f64().unwrap() > 0.0, "{k}.{p}: {l:#}");
            }
        }
        assert!(l["ttft_ms"]["p50"].as_f64() <= l["e2e_ms"]["p50"].as_f64());
        for k in [
            "output_tok_s",
            "request_s",
            "prompt_tok_s",
            "parallel_efficiency",
        ] {
            assert!(l[k].as_f64().unwrap() > 0.0, "{k}: {l:#}");
        }
        assert!(
            l["completion_tokens"].as_u64().unwrap() >= 4,
            "token counts from usage"
        );
    }
    assert_eq!(levels[0]["parallel_efficiency"].as_f64(), Some(1.0));
    // The run's figures on /metrics, as the saved result has them; the demo model's estimate too.
    let m = scrape(&d);
    let at = |c: &'static str| [("service", "chat"), ("concurrency", c), ("rate", "")];
    for (l, c) in levels.iter().zip(["1", "2"]) {
        let got = sample(&m, "mlxbox_bench_output_tokens_per_second", &at(c)).unwrap();
        assert!(
            (got - l["output_tok_s"].as_f64().unwrap()).abs() < 1e-6,
            "{m}"
        );
        assert_eq!(sample(&m, "mlxbox_bench_errors", &at(c)), Some(0.0), "{m}");
        let p50 = [at(c)[0], at(c)[1], ("percentile", "50")];
        let ttft = sample(&m, "mlxbox_bench_ttft_seconds", &p50).unwrap();
        assert!((ttft * 1000.0 - l["ttft_ms"]["p50"].as_f64().unwrap()).abs() < 1e-6);
    }
    assert_eq!(
        sample(&m, "mlxbox_bench_passed", &[("service", "chat")]),
        Some(1.0)
    );
    let weights = [("service", "chat"), ("part", "weights")];
    assert!(
        sample(&m, "mlxbox_service_estimated_bytes", &weights).unwrap_or(0.0) > 0.0,
        "{m}"
    );
    assert!(
        sample(&m, "mlxbox_memory_budget_bytes", &[]).unwrap_or(0.0) > 0.0,
        "{m}"
    );
    promtool_check(&m);
    assert_eq!(
        chat["quantization"], "float32",
        "from the tiny model's config.json"
    );
    assert!(
        chat["fingerprint"].as_str().unwrap().contains("0.32"),
        "mlx_lm reports its versions"
    );
    // The real tiny model thinks with thinking on: reasoning comes back, and the check says so.
    assert_eq!(chat["thinking"]["expect_thinking"], true);
    assert_eq!(chat["thinking"]["status"], "pass", "{:#}", chat["thinking"]);
    assert!(!chat["thinking"]["reasoning_excerpt"]
        .as_str()
        .unwrap()
        .is_empty());
    let lc = &chat["long_context"];
    assert_eq!(lc["status"], "pass", "{lc:#}");
    assert!(
        lc["prompt_tokens"].as_u64().unwrap() >= 590,
        "calibrated to the target: {lc:#}"
    );
    let emb = service(&r, "embedding");
    assert!(emb["levels"].as_array().unwrap().is_empty());
    for l in emb["embedding"].as_array().unwrap() {
        assert_eq!(
            (l["requests"].as_u64(), l["errors"].as_u64()),
            (Some(4), Some(0)),
            "{l:#}"
        );
        assert!(
            l["inputs_s"].as_f64().unwrap() > 0.0 && l["latency_ms"]["p99"].as_f64().unwrap() > 0.0
        );
    }
    assert!(r["machine"]["memory_bytes"].as_u64().unwrap() > 0);
    assert!(
        !r["samples"].as_array().unwrap().is_empty(),
        "monitor samples attached"
    );
    let id1 = r["id"].as_str().unwrap().to_string();
    assert!(d.state.join(format!("bench/{id1}.json")).exists());

    // Thinking off (disable_thinking_tags): no <think>, no reasoning field, and the check passes.
    let (code, r) = cli_json(
        &d,
        &[
            "bench",
            "chat-nothink",
            "--concurrency",
            "1",
            "--requests",
            "2",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{r:#}");
    let t = &service(&r, "chat-nothink")["thinking"];
    assert_eq!(
        (&t["expect_thinking"], &t["status"]),
        (&Value::Bool(false), &Value::from("pass")),
        "{t:#}"
    );
    assert!(!t["content_excerpt"].as_str().unwrap().contains("<think>"));
    assert_eq!(t["reasoning_excerpt"], "");

    // A threshold the tiny model cannot meet: FAIL, exit 1 (changing expect_* restarts nothing).
    let pid = d.service("chat")["pid"].clone();
    let text = std::fs::read_to_string(&d.config).unwrap();
    d.write_config(&text.replacen(
        "[services.chat]\n",
        "[services.chat]\nexpect_gen_tok_s = 1000000\n",
        1,
    ));
    std::thread::sleep(2 * S);
    let (code, r) = cli_json(
        &d,
        &[
            "bench",
            "chat",
            "--concurrency",
            "1,2",
            "--requests",
            "4",
            "--no-thinking-check",
            "--json",
        ],
    );
    assert_eq!(code, 1);
    let chat = service(&r, "chat");
    assert_eq!(chat["verdict"], "fail");
    assert_eq!(chat["thresholds"][0]["key"], "expect_gen_tok_s", "{chat:#}");
    assert_eq!(chat["thresholds"][0]["status"], "fail");
    assert_eq!(
        d.service("chat")["pid"],
        pid,
        "a threshold edit does not restart the server"
    );

    // Before / after: the first and the last run, metric by metric.
    let (code, c) = cli_json(&d, &["bench", "--compare", &id1, "last", "--json"]);
    assert_eq!(code, 0);
    let row = c["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["service"] == "chat" && x["level"] == "c=2" && x["metric"] == "output_tok_s")
        .unwrap();
    let (a, b) = (row["a"].as_f64().unwrap(), row["b"].as_f64().unwrap());
    assert!(
        (row["delta"].as_f64().unwrap() - (b - a)).abs() < 1e-6,
        "{row:#}"
    );
    let text = d.cli(&["bench", "--compare", "last-2", "last"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("output_tok_s"));
    let (_, h) = cli_json(&d, &["bench", "--history", "--json"]);
    assert_eq!(h["runs"].as_array().unwrap().len(), 3);

    // The checklist: the failing threshold is the only failure; the 20k-token request is skipped with
    // the reason (the tiny model takes 4,096).
    let (code, doc) = cli_json(&d, &["doctor", "--json"]);
    assert_eq!(code, 1, "{doc:#}");
    let checks = doc["checks"].as_array().unwrap();
    let failed: Vec<String> = checks
        .iter()
        .filter(|c| c["status"] == "fail")
        .map(|c| format!("{} {}", c["check"], c["service"]))
        .collect();
    assert_eq!(
        failed,
        ["\"thresholds\" \"chat\""],
        "{doc:#}\nchat-nothink log:\n{}",
        d.service_log("chat-nothink")
    );
    let find = |check: &str, svc: &str| {
        checks
            .iter()
            .find(|c| c["check"] == check && c["service"] == svc)
            .unwrap_or_else(|| panic!("no {check} {svc}"))
    };
    for s in ["chat", "chat-nothink"] {
        assert_eq!(find("thinking", s)["status"], "pass");
        assert_eq!(find("concurrent", s)["status"], "pass");
        let lc = find("long_context", s);
        assert_eq!(lc["status"], "skip");
        assert!(lc["reason"].as_str().unwrap().contains("4096"), "{lc:#}");
    }
    for s in ["chat", "chat-nothink", "embedding"] {
        assert_eq!(find("ready", s)["status"], "pass");
        assert_eq!(find("logs", s)["status"], "pass", "{:#}", find("logs", s));
    }
    let text = String::from_utf8_lossy(&d.cli(&["doctor", "--long-context-tokens", "500"]).stdout)
        .to_string();
    assert!(text.contains("✓ long_context  chat:"), "{text}");
    assert!(text.contains("✗ thresholds    chat:"), "{text}");

    // A service stopped on purpose is skipped, not failed.
    assert!(d.cli(&["stop", "embedding"]).status.success());
    d.wait_state("embedding", "stopped", 60 * S);
    let (_, doc) = cli_json(&d, &["doctor", "--json"]);
    let checks = doc["checks"].as_array().unwrap();
    let of_embedding: Vec<(&str, &str)> = checks
        .iter()
        .filter(|c| c["service"] == "embedding")
        .map(|c| (c["check"].as_str().unwrap(), c["status"].as_str().unwrap()))
        .collect();
    assert_eq!(of_embedding, [("ready", "skip")], "{doc:#}");
    assert!(d.cli(&["start", "embedding"]).status.success());
    d.wait_state("embedding", "ready", 180 * S);

    // Mistakes say what to do.
    let out = d.cli(&["bench", "nosuch"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no service or pool named `nosuch`"));
    let out = d.cli(&["bench", "--show", "19990101"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no benchmark run `19990101`"));

    // One run at a time; Ctrl-C cancels it and its partial result is kept.
    let mut long = Command::new(BIN)
        .args([
            "bench",
            "chat",
            "--concurrency",
            "1",
            // Long enough to be still running when it is cancelled below, however slow this machine is
            // (500 once ran out first on a loaded CI-like run); it is cancelled, never finished.
            "--requests",
            "20000",
            "--no-thinking-check",
            "--state-dir",
        ])
        .arg(&d.state)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Its POST goes out ~0.1 s after it starts; give it the lead so the probes below cannot start first.
    std::thread::sleep(S + S / 2);
    assert!(long.try_wait().unwrap().is_none(), "the long run started");
    let busy = wait_until(30 * S, || {
        let out = d.cli(&[
            "bench",
            "chat",
            "--concurrency",
            "1",
            "--requests",
            "1",
            "--no-thinking-check",
            "--json",
        ]);
        out.status.code() == Some(1)
            && String::from_utf8_lossy(&out.stderr).contains("already running")
    });
    assert!(busy, "a second run is refused while one runs");
    let (code, body) = d.control_get("/v1/bench/current");
    assert_eq!(code, 200, "{body}");
    let current: Value = serde_json::from_str(&body).unwrap();
    let out = d.cli(&["doctor"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("already running"));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(long.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let st = wait_timeout(&mut long, 30 * S).expect("the CLI exits on Ctrl-C");
    assert_eq!(st.code(), Some(130));
    let saved = wait_until(30 * S, || {
        let (_, r) = cli_json(&d, &["bench", "--show", "last", "--json"]);
        r["cancelled"] == true
    });
    assert!(saved, "the cancelled run is saved");
    let (_, r) = cli_json(&d, &["bench", "--show", "last", "--json"]);
    assert_eq!(r["id"], current["id"]);
    assert_eq!(d.control_get("/v1/bench/current").0, 404);
    let n = service(&r, "chat")["levels"][0]["requests"]
        .as_u64()
        .unwrap();
    assert!(n < 20000, "stopped early: {n} requests");
}

/// On the real mlx_lm.server: prompts of exactly N tokens as the model counts them (its
/// `usage.prompt_tokens` agrees for every request), exactly M output tokens (the end suppressed),
/// goodput against an SLO, a dataset replayed with a seed, and a comparison that says the loads differ.
#[test]
fn bench_loads_of_exact_lengths_a_dataset_and_goodput() {
    let _turn = ONE_DEMO_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let d = Daemon::start_demo();
    d.wait_state("chat", "ready", 180 * S);
    let (code, r) = cli_json(
        &d,
        &[
            "bench",
            "chat",
            "--concurrency",
            "1,2",
            "--requests",
            "4",
            "--prompt-tokens",
            "96±16",
            "--output-tokens",
            "24",
            "--slo",
            // 1 ns per output token: out of reach of any machine (24 tokens are 23 forward passes of
            // the model, each far longer), where 1 ms was within reach of a quiet one.
            "ttft_ms=60000,tpot_ms=0.000001",
            "--no-thinking-check",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{r:#}");
    let chat = service(&r, "chat");
    assert!(
        chat["prompt_template_tokens"].as_u64().is_some(),
        "{chat:#}"
    );
    for l in chat["levels"].as_array().unwrap() {
        assert_eq!(l["errors"], 0, "{l:#}");
        assert_eq!(
            l["prompt_len_mismatches"], 0,
            "the server counted what was asked: {l:#}"
        );
        let p = &l["prompt_len"];
        assert!(
            p["p50"].as_f64().unwrap() >= 80.0 && p["p50"].as_f64().unwrap() <= 112.0,
            "{p}"
        );
        assert_eq!(
            l["ended_early"], 0,
            "24 tokens each, the end suppressed: {l:#}"
        );
        assert_eq!(l["output_len"]["mean"].as_f64(), Some(24.0), "{l:#}");
        // TPOT ≤ 1 ns is out of reach: no request is good.
        assert_eq!(l["goodput"]["share"].as_f64(), Some(0.0), "{l:#}");
    }
    // A dataset in both shapes, replayed with a seed: identified by name, size and hash.
    let ds = d.dir.path().join("chats.jsonl");
    std::fs::write(
        &ds,
        "{\"messages\":[{\"role\":\"user\",\"content\":\"Name a colour.\"}]}\n{\"conversations\":[{\"from\":\"human\",\"value\":\"Count to three.\"},{\"from\":\"gpt\",\"value\":\"1 2 3\"}]}\n",
    )
    .unwrap();
    let (code, r2) = cli_json(
        &d,
        &[
            "bench",
            "chat",
            "--concurrency",
            "1",
            "--requests",
            "3",
            "--dataset",
            ds.to_str().unwrap(),
            "--seed",
            "7",
            "--no-thinking-check",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{r2:#}");
    assert_eq!(r2["dataset"]["name"], "chats.jsonl");
    assert_eq!(r2["dataset"]["entries"], 2);
    assert_eq!(r2["dataset"]["sha256"].as_str().unwrap().len(), 64);
    // Comparing the two runs warns that their loads differ.
    let (a, b) = (r["id"].as_str().unwrap(), r2["id"].as_str().unwrap());
    let out = d.cli(&["bench", "--compare", a, b]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("WARNING: the runs sent different loads"),
        "{err}"
    );
    // A broken dataset is refused before the run, with its line.
    std::fs::write(
        &ds,
        "{\"messages\":[{\"role\":\"user\",\"content\":\"ok\"}]}\nnot json\n",
    )
    .unwrap();
    let out = d.cli(&["bench", "chat", "--dataset", ds.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("chats.jsonl:2: not JSON"), "{err}");
}
