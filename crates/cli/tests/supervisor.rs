//! The daemon against real processes: a purpose-built misbehaving server (python/fault_server.py) for the
//! faults a real model server cannot show on demand, driven through the `mlx-box` CLI.

mod common;
use common::*;
use std::time::{Duration, Instant};

const S: Duration = Duration::from_secs(1);

fn spawn_times(log: &str) -> Vec<u64> {
    log.lines()
        .filter(|l| l.contains("] starting: "))
        .filter_map(|l| l.strip_prefix("[mlx-box ")?.split(']').next()?.parse().ok())
        .collect()
}

#[test]
fn start_ready_sigkill_restart_stop() {
    let port = free_port();
    let d = Daemon::start(&fault_service("ok", port, "ok", ""));
    let s = d.wait_state("ok", "ready", 20 * S);
    let pid = s["pid"].as_u64().unwrap() as u32;
    assert_eq!(s["restarts"], 0);
    assert!(
        s["memory_bytes"].as_u64().unwrap() > 1_000_000,
        "RSS of the group: {s}"
    );

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let s = d.wait_service("ok", 10 * S, |s| s["state"] == "ready" && s["pid"] != pid);
    assert_eq!(s["restarts"], 1);
    assert!(!pid_alive(pid));

    let out = d.cli(&["stop", "ok"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = d.service("ok");
    assert_eq!(s["state"], "stopped");
    assert!(s["pid"].is_null());
    assert!(port_free(port));

    let out = d.cli(&["start", "ok"]);
    assert!(out.status.success());
    assert_eq!(d.service("ok")["state"], "ready", "start waits until ready");
    let out = d.cli(&["restart", "all"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        d.service("ok")["restarts"],
        1,
        "manual restarts are not counted"
    );
}

#[test]
fn crash_at_start_ends_in_failed_not_a_storm() {
    let d = Daemon::start(&fault_service(
        "bad",
        free_port(),
        "crash-at-start",
        "max_start_failures = 3",
    ));
    let s = d.wait_state("bad", "failed", 20 * S);
    assert!(
        s["last_error"]
            .as_str()
            .unwrap()
            .contains("simulated crash"),
        "{s}"
    );
    assert_eq!(s["restarts"], 2);
    let st = d.status();
    let alerts = st["alerts"].as_array().unwrap();
    assert!(
        alerts
            .iter()
            .any(|a| a["id"] == "service-failed:bad" && a["severity"] == "critical"),
        "{st}"
    );
    // Acknowledged and snoozed are kept by the daemon: every client reads the same state.
    let alert = |d: &Daemon| {
        d.status()["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["id"] == "service-failed:bad")
            .cloned()
            .unwrap()
    };
    let out = d.cli(&["alerts", "ack", "service-failed:bad"]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("(acknowledged)"));
    assert_eq!(alert(&d)["acknowledged"], true);
    let listed = d.cli(&["alerts"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("service-failed:bad"));
    let out = d.cli(&["alerts", "snooze", "service-failed:bad", "--for", "2h"]);
    assert!(out.status.success(), "{out:?}");
    let until = alert(&d)["snoozed_until"].as_u64().unwrap();
    let now = mlxbox_api::now_ms();
    assert!(
        until > now + 7_000_000 && until <= now + 7_200_000,
        "{until} vs {now}"
    );
    let out = d.cli(&["alerts", "unmute", "service-failed:bad"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(alert(&d)["acknowledged"], false);
    assert_eq!(alert(&d)["snoozed_until"], serde_json::Value::Null);
    // Bad input: a clear error, nothing changed.
    let out = d.cli(&["alerts", "ack", "no-such-alert"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no active alert `no-such-alert`"));
    let out = d.cli(&["alerts", "snooze", "service-failed:bad", "--for", "30d"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 minute to 7 days"));
    std::thread::sleep(2 * S);
    assert_eq!(
        spawn_times(&d.service_log("bad")).len(),
        3,
        "no more spawns once failed"
    );
    // A manual start clears `failed` (and tries again).
    let out = d.cli(&["start", "bad"]);
    assert!(!out.status.success(), "start reports the failure");
    assert!(String::from_utf8_lossy(&out.stderr).contains("simulated crash"));
    assert_eq!(spawn_times(&d.service_log("bad")).len(), 6);
}

#[test]
fn crash_later_backs_off_exponentially() {
    let extra = "restart = \"always\"\nmax_start_failures = 10";
    let port = free_port();
    let text = fault_service("flaky", port, "crash-later", extra)
        .replace("\"--mode\"", "\"--delay\", \"0.2\", \"--mode\"");
    let d = Daemon::start(&text);
    assert!(
        wait_until(15 * S, || spawn_times(&d.service_log("flaky")).len() >= 4),
        "{}",
        d.service_log("flaky")
    );
    // The backoffs the supervisor chose, from its notes in the service's log (not from wall-clock gaps,
    // which hold the server's start-up time too): the first restart at once, then 1 s, then 2 s (± 20 %).
    let log = d.service_log("flaky");
    let notes: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("] starting: ") || l.contains("] backing off: "))
        .collect();
    assert!(
        notes[0].contains("starting") && notes[1].contains("starting"),
        "first restart at once: {notes:#?}"
    );
    let delays: Vec<f64> = notes
        .iter()
        .filter_map(|l| {
            l.split("restarting in ")
                .nth(1)?
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .collect();
    assert!(delays.len() >= 2, "{notes:#?}");
    assert!(
        (0.8..=1.2).contains(&delays[0]),
        "second after ~1 s: {delays:?}"
    );
    assert!(
        (1.6..=2.4).contains(&delays[1]),
        "third after ~2 s: {delays:?}"
    );
    let s = d.service("flaky");
    assert!(s["restarts"].as_u64().unwrap() >= 3);
}

#[test]
fn hang_on_readiness_times_out() {
    let d = Daemon::start(&fault_service(
        "hang",
        free_port(),
        "hang",
        "ready_timeout_s = 1\nmax_start_failures = 1",
    ));
    let s = d.wait_state("hang", "failed", 15 * S);
    assert!(
        s["last_error"]
            .as_str()
            .unwrap()
            .contains("not ready after 1 s"),
        "{s}"
    );
}

#[test]
fn ignoring_sigterm_gets_sigkill_after_stop_timeout() {
    let d = Daemon::start(&fault_service(
        "stubborn",
        free_port(),
        "ignore-sigterm",
        "stop_timeout_s = 0.5",
    ));
    let s = d.wait_state("stubborn", "ready", 20 * S);
    let pid = s["pid"].as_u64().unwrap() as u32;
    let t0 = Instant::now();
    assert!(d.cli(&["stop", "stubborn"]).status.success());
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(500),
        "waited for the grace period: {took:?}"
    );
    assert!(took < 5 * S, "{took:?}");
    assert!(!pid_alive(pid));
    assert!(d.service_log("stubborn").contains("killed (SIGKILL)"));
}

#[test]
fn grandchild_holding_the_port_dies_with_the_group() {
    let port = free_port();
    let d = Daemon::start(&fault_service("gc", port, "grandchild", ""));
    d.wait_state("gc", "ready", 20 * S);
    assert!(!port_free(port), "the grandchild serves the port");
    assert!(d.cli(&["stop", "gc"]).status.success());
    assert!(
        wait_until(2 * S, || port_free(port)),
        "the port is free: the grandchild died with the group"
    );
}

#[test]
fn port_held_by_a_foreign_process_is_a_clear_error() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let d = Daemon::start(&fault_service("busy", port, "ok", ""));
    let s = d.wait_state("busy", "failed", 10 * S);
    let e = s["last_error"].as_str().unwrap();
    assert!(
        e.contains(&format!(
            "port {port} is in use by pid {}",
            std::process::id()
        )),
        "{e}"
    );
    assert!(e.contains("change port of [services.busy]"), "{e}");
    assert!(e.contains("settings.toml line 3"), "names the line: {e}");
    assert_eq!(s["restarts"], 0, "no retry loop");
}

#[test]
fn config_edits_restart_only_changed_services_and_bad_edits_change_nothing() {
    let (pa, pb, pc) = (free_port(), free_port(), free_port());
    let base = format!(
        "{}{}",
        fault_service("a", pa, "ok", ""),
        fault_service("b", pb, "ok", "")
    );
    let mut d = Daemon::start(&base);
    let a = d.wait_state("a", "ready", 20 * S)["pid"].clone();
    let b = d.wait_state("b", "ready", 20 * S)["pid"].clone();

    // Change b (an env var changes its process), add c, comment only elsewhere.
    let edited = format!(
        "# edited\n{}{}{}",
        fault_service("a", pa, "ok", ""),
        fault_service("b", pb, "ok", "env = { X = \"1\" }"),
        fault_service("c", pc, "ok", "")
    );
    d.write_config(&edited);
    d.wait_service("b", 10 * S, |s| s["state"] == "ready" && s["pid"] != b);
    d.wait_state("c", "ready", 10 * S);
    assert_eq!(d.service("a")["pid"], a, "a is unchanged: same process");

    // An invalid edit: nothing that runs changes, an alert says why.
    let b2 = d.service("b")["pid"].clone();
    d.write_config(&edited.replace(&format!("port = {pb}"), "port = \"oops\""));
    assert!(wait_until(5 * S, || d.status()["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["id"] == "config-invalid")));
    let st = d.status();
    assert_eq!(st["config"]["valid"], false);
    let body = st["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == "config-invalid")
        .unwrap()["body"]
        .to_string();
    assert!(body.contains("settings.toml:"), "{body}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(d.service("a")["pid"], a);
    assert_eq!(d.service("b")["pid"], b2);

    // Fixed (and c removed): the alert clears, c stops.
    d.write_config(&format!(
        "{}{}",
        fault_service("a", pa, "ok", ""),
        fault_service("b", pb, "ok", "env = { X = \"1\" }")
    ));
    assert!(wait_until(5 * S, || !d.status()["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["id"] == "config-invalid")));
    assert!(wait_until(5 * S, || d.status()["services"]
        .as_array()
        .unwrap()
        .len()
        == 2));
    assert!(wait_until(3 * S, || port_free(pc)));
    assert_eq!(d.service("b")["pid"], b2);

    // Delete and re-create (as some editors do): keeps running, then applies.
    std::fs::remove_file(&d.config).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(d.service("a")["pid"], a);
    d.write_config(&format!(
        "{}{}",
        fault_service("a", pa, "ok", "env = { Y = \"2\" }"),
        fault_service("b", pb, "ok", "env = { X = \"1\" }")
    ));
    d.wait_service("a", 10 * S, |s| s["state"] == "ready" && s["pid"] != a);
    assert_eq!(d.service("b")["pid"], b2);
    assert!(d.terminate().success());
}

#[test]
fn killed_daemon_is_replaced_by_one_that_adopts_without_duplicates() {
    let port = free_port();
    let mut d = Daemon::start(&fault_service("keep", port, "ok", ""));
    let pid = d.wait_state("keep", "ready", 20 * S)["pid"].clone();
    d.kill_daemon();
    assert!(
        pid_alive(pid.as_u64().unwrap() as u32),
        "servers outlive a crashed daemon"
    );
    d.spawn();
    let s = d.wait_state("keep", "ready", 10 * S);
    assert_eq!(s["pid"], pid, "adopted, not respawned");
    assert_eq!(s["adopted"], true);
    // Adopted servers are still supervised: a crash is noticed and restarted.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid.as_u64().unwrap() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let s = d.wait_service("keep", 10 * S, |s| s["state"] == "ready" && s["pid"] != pid);
    assert_eq!(s["restarts"], 1);
    assert!(d.terminate().success());
    assert!(port_free(port));
}

#[test]
fn stale_servers_are_reaped_when_the_config_changed_while_the_daemon_was_dead() {
    let port = free_port();
    let mut d = Daemon::start(&fault_service("x", port, "ok", ""));
    let pid = d.wait_state("x", "ready", 20 * S)["pid"].as_u64().unwrap() as u32;
    d.kill_daemon();
    std::fs::write(
        &d.config,
        fault_service("x", port, "ok", "env = { CHANGED = \"1\" }"),
    )
    .unwrap();
    d.spawn();
    let s = d.wait_state("x", "ready", 10 * S);
    assert_ne!(s["pid"].as_u64().unwrap() as u32, pid);
    assert!(!pid_alive(pid), "the old server was reaped");
}

#[test]
fn sigterm_stops_every_process_group_and_a_second_up_refuses() {
    let mut d = Daemon::start(&format!(
        "{}{}",
        fault_service("g1", free_port(), "grandchild", ""),
        fault_service("g2", free_port(), "ignore-sigterm", "stop_timeout_s = 0.3")
    ));
    d.wait_state("g1", "ready", 20 * S);
    d.wait_state("g2", "ready", 20 * S);
    let pgids = d.recorded_pgids();
    assert_eq!(pgids.len(), 2);

    let out = std::process::Command::new(BIN)
        .args(["up", "--config"])
        .arg(&d.config)
        .arg("--state-dir")
        .arg(&d.state)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("another mlx-box daemon (pid {})", d.daemon_pid())),
        "{err}"
    );

    assert!(d.terminate().success());
    for g in pgids {
        let gone = matches!(
            nix::sys::signal::killpg(nix::unistd::Pid::from_raw(g as i32), None),
            Err(nix::errno::Errno::ESRCH)
        ) || !group_has_live(g);
        assert!(gone, "process group {g} is empty");
    }
}

fn group_has_live(pgid: u32) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        let Ok(s) = std::fs::read_to_string(e.path().join("stat")) else {
            return false;
        };
        let Some(i) = s.rfind(')') else { return false };
        let f: Vec<&str> = s[i + 2..].split_whitespace().collect();
        f.len() > 2 && f[2] == pgid.to_string() && f[0] != "Z"
    })
}

#[test]
fn cli_logs_and_errors() {
    let d = Daemon::start(&fault_service("ok", free_port(), "ok", ""));
    d.wait_state("ok", "ready", 20 * S);
    let out = d.cli(&["logs", "ok", "--lines", "50"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("fault_server mode=ok"), "{text}");
    assert!(text.contains("] starting: python3"), "{text}");

    let out = d.cli(&["stop", "nope"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("no service named `nope`; known services: ok"));

    let human = String::from_utf8_lossy(&d.cli(&["status"]).stdout).to_string();
    assert!(human.starts_with("1/1 ready"), "{human}");
    assert!(human.contains("NAME") && human.contains("ready"), "{human}");

    let out = std::process::Command::new(BIN)
        .args(["status", "--state-dir"])
        .arg(d.dir.path().join("nowhere"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no mlx-box daemon is running"));
}

#[test]
fn validate_cli_contract() {
    let fixture = format!(
        "{}/../../tests/fixtures/mlx-box-settings.toml",
        env!("CARGO_MANIFEST_DIR")
    );
    let out = std::process::Command::new(BIN)
        .args(["validate", &fixture])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[services.a]\nport = 99999\nmodel = 3\n[services.b]\nport = 99999\n",
    )
    .unwrap();
    let out = std::process::Command::new(BIN)
        .args(["validate"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stdout);
    let prefix = format!("{}:", bad.display());
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 4, "{text}");
    for l in &lines {
        assert!(l.starts_with(&prefix), "{l}");
        let rest: Vec<&str> = l[prefix.len()..].splitn(3, ':').collect();
        assert!(
            rest[0].parse::<usize>().is_ok() && rest[1].parse::<usize>().is_ok(),
            "{l}"
        );
    }
    assert!(text.contains(":2:8: error: `port` = 99999"), "{text}");
    assert!(
        text.contains(":3:9: error: `model` in [services.a] must be a string"),
        "{text}"
    );
}

#[test]
fn estimate_cli_contract() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    std::fs::create_dir_all(&model).unwrap();
    std::fs::write(
        model.join("config.json"),
        r#"{"num_hidden_layers": 48, "num_attention_heads": 32, "num_key_value_heads": 4, "head_dim": 128, "torch_dtype": "bfloat16"}"#,
    )
    .unwrap();
    std::fs::File::create(model.join("model.safetensors"))
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let cfg = dir.path().join("settings.toml");
    std::fs::write(
        &cfg,
        format!(
            "[services.fast]\nport = 18081\nmodel = \"{}\"\ncontext_length = 32768\n[services.gone]\nport = 18082\nmodel = \"nobody/not-downloaded\"\nmax_tokens = 100\n",
            model.display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(BIN)
        .args(["estimate", "--json", "--config"])
        .arg(&cfg)
        .env("HF_HUB_CACHE", dir.path().join("empty-hub"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let fast = &v["services"][0];
    assert_eq!(fast["name"], "fast");
    assert_eq!(fast["weights_bytes"], 1u64 << 30);
    assert_eq!(fast["kv_bytes_per_token"], 98_304);
    assert_eq!(fast["context_tokens"], 32_768);
    assert_eq!(fast["kv_bytes"], 3u64 << 30);
    assert_eq!(fast["total_bytes"], 4u64 << 30);
    let gone = &v["services"][1];
    assert!(gone["weights_bytes"].is_null() && gone["total_bytes"].is_null());
    assert!(gone["reasons"][0].as_str().unwrap().contains("not on disk"));
    assert_eq!(v["total_bytes"], 4u64 << 30);
    assert!(v["budget_bytes"].as_u64().unwrap() > 0);
}

#[test]
fn monitor_alerts_follow_the_headroom_threshold_and_per_service_memory() {
    let svc = fault_service("m", free_port(), "ok", "");
    let alerts = |pct: f64| {
        format!("[alerts]\nheadroom_warn_percent = {pct}\nclear_after_s = 0\ncooldown_s = 0\n{svc}")
    };
    let d = Daemon::start(&alerts(99.99));
    let s = d.wait_state("m", "ready", 20 * S);
    assert!(s["memory_bytes"].as_u64().unwrap() > 0);
    let st = d.status();
    let m = &st["memory"];
    assert!(
        m["total_bytes"].as_u64().unwrap() > 0
            && m["available_bytes"].as_u64().unwrap() <= m["total_bytes"].as_u64().unwrap()
    );
    assert!(
        ["normal", "warn", "critical", "unknown"].contains(&m["pressure"].as_str().unwrap()),
        "{m}"
    );
    let has = |d: &Daemon| {
        d.status()["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["id"] == "low-headroom")
    };
    assert!(
        wait_until(5 * S, || has(&d)),
        "headroom above current usage raises the alert: {}",
        d.status()
    );
    d.write_config(&alerts(0.01));
    assert!(
        wait_until(5 * S, || !has(&d)),
        "lowering it clears the alert"
    );
    assert!(d.cli(&["stop", "m"]).status.success());
    assert!(
        d.service("m")["memory_bytes"].is_null(),
        "no process, no memory figure"
    );
}

#[test]
fn a_plan_over_budget_raises_an_alert_and_refuse_over_budget_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("huge");
    std::fs::create_dir_all(&model).unwrap();
    std::fs::write(
        model.join("config.json"),
        r#"{"num_hidden_layers": 2, "num_attention_heads": 2, "hidden_size": 64}"#,
    )
    .unwrap();
    // A sparse "weights" file far larger than any machine's memory (no disk used).
    std::fs::File::create(model.join("model.safetensors"))
        .unwrap()
        .set_len(1 << 43)
        .unwrap();
    let svc = fault_service(
        "big",
        free_port(),
        "ok",
        &format!("model = \"{}\"\nmax_tokens = 10", model.display()),
    );
    let d = Daemon::start(&svc);
    let alert = |d: &Daemon| {
        d.status()["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["id"] == "over-budget")
            .cloned()
    };
    assert!(wait_until(10 * S, || alert(&d).is_some()));
    let a = alert(&d).unwrap();
    assert_eq!(a["severity"], "warning");
    assert!(a["body"].as_str().unwrap().contains("big 8192.0 GB"), "{a}");
    d.wait_state("big", "ready", 20 * S); // a warning: it still starts

    let d2 = Daemon::start(&format!("[app]\nrefuse_over_budget = true\n{svc}"));
    assert!(wait_until(10 * S, || alert(&d2).is_some()));
    assert_eq!(alert(&d2).unwrap()["severity"], "critical");
    assert!(
        d2.status()["services"].as_array().unwrap().is_empty(),
        "refused: nothing started"
    );
}

#[test]
fn a_wedged_server_goes_unhealthy_and_is_restarted() {
    let text = fault_service(
        "wedge",
        free_port(),
        "hang-later",
        "liveness_interval_s = 0.3\nliveness_failures = 2",
    )
    .replace("\"--mode\"", "\"--delay\", \"1\", \"--mode\"");
    let d = Daemon::start(&text);
    let pid = d.wait_state("wedge", "ready", 20 * S)["pid"].clone();
    d.wait_state("wedge", "unhealthy", 10 * S);
    let s = d.wait_service("wedge", 15 * S, |s| s["pid"] != pid && !s["pid"].is_null());
    assert_eq!(s["restarts"], 1);
    assert!(
        !pid_alive(pid.as_u64().unwrap() as u32),
        "the wedged process was stopped"
    );
}

/// The served-vs-configured check: a server started with another model directory than the settings
/// name, or whose model is 8-bit where the settings say bf16, raises `served-model:NAME` within seconds;
/// a matching one does not; fixing the settings clears it.
#[test]
fn a_server_that_runs_another_model_than_configured_is_called_out() {
    let models = tempfile::tempdir().unwrap();
    let mk = |name: &str, cfg: &str| {
        let d = models.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("config.json"), cfg).unwrap();
        d.display().to_string()
    };
    let four = mk("four", r#"{"quantization": {"bits": 4, "group_size": 64}}"#);
    let eight = mk(
        "eight",
        r#"{"quantization": {"bits": 8, "group_size": 64}}"#,
    );
    let svc = |name: &str, model: &str, runs: &str, q: &str| {
        format!(
            "[services.{name}]\nkind = \"command\"\nport = {}\nprobe = \"chat\"\nmodel = \"{model}\"\n{q}command = [\"python3\", \"{}\", \"--host\", \"{{host}}\", \"--port\", \"{{port}}\", \"--model\", \"{runs}\"]\n",
            free_port(),
            fault_server()
        )
    };
    let text = |q_wrong: &str| {
        format!(
            "{}{}{}",
            svc("other", &four, &eight, ""),
            svc("precision", &eight, &eight, q_wrong),
            svc("good", &four, &four, "quantization = 4\n")
        )
    };
    let d = Daemon::start(&text("quantization = \"bf16\"\n"));
    for n in ["other", "precision", "good"] {
        d.wait_state(n, "ready", 20 * S);
    }
    let alert = |id: &str| {
        d.status()["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["id"] == id)
            .cloned()
    };
    assert!(wait_until(20 * S, || alert("served-model:other").is_some()
        && alert("served-model:precision").is_some()));
    let other = alert("served-model:other").unwrap();
    assert!(
        other["body"].as_str().unwrap().contains(&format!(
            "config says model {four}, the server runs {eight}"
        )),
        "{other}"
    );
    let prec = alert("served-model:precision").unwrap();
    assert!(
        prec["body"]
            .as_str()
            .unwrap()
            .contains("config says bfloat16, the server runs 8-bit (group 64)"),
        "{prec}"
    );
    assert!(alert("served-model:good").is_none());
    // The settings corrected to what runs: cleared at the next check.
    d.write_config(&text("quantization = \"8bit\"\n"));
    assert!(wait_until(30 * S, || alert("served-model:precision").is_none()));
    assert!(alert("served-model:other").is_some(), "still wrong");
}
