//! On demand: idle services loaded by the requests that name them (one load however many
//! ask), unloaded when idle, room made under a memory budget (least recently used first, never a busy
//! or pinned one, the evicted process group gone before the next spawn), exclusive groups, and the one
//! endpoint that routes by `model`. Scripted servers (`python/fault_server.py`) stand in for models
//! here; `on_demand_real_mlx_lm_server` loads the real mlx_lm.server on the tiny model.

mod common;
use common::*;
use serde_json::Value;
use std::time::Duration;

const S: Duration = Duration::from_secs(1);
/// A plaintext key.
const SERVER: &str = "[server]\napi_key = \"k\"\n";
const AUTH: (&str, &str) = ("Authorization", "Bearer k");
const JSON: (&str, &str) = ("Content-Type", "application/json");

/// An on-demand service run by the fault server behind the proxy.
fn od_service(name: &str, front: u16, back: u16, extra: &str) -> String {
    format!(
        "[services.{name}]\nkind = \"command\"\nport = {front}\nbackend_port = {back}\nprobe = \"chat\"\non_demand = true\nstop_timeout_s = 2\ncommand = [\"python3\", \"{}\", \"--mode\", \"ok\", \"--host\", \"{{host}}\", \"--port\", \"{{port}}\"]\n{extra}\n",
        fault_server()
    )
}

fn chat(port: u16, model: &str) -> (u16, String) {
    let body = format!(
        r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}],"max_tokens":4}}"#
    );
    let (code, _, body) = http(port, "POST", "/v1/chat/completions", &[JSON, AUTH], &body);
    (code, body)
}

/// The spawns of a service: the fault server's start lines in its log, as (pid, unix s).
fn spawns(d: &Daemon, name: &str) -> Vec<(u32, f64)> {
    d.service_log(name)
        .lines()
        .filter_map(|l| {
            let rest = l.split("fault_server mode=").nth(1)?;
            let pid = rest
                .split(" pid=")
                .nth(1)?
                .split(' ')
                .next()?
                .parse()
                .ok()?;
            let t = rest.split(" t=").nth(1)?.trim().parse().ok()?;
            Some((pid, t))
        })
        .collect()
}

fn state(d: &Daemon, name: &str) -> String {
    d.service(name)["state"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn concurrent_first_requests_load_an_idle_service_once() {
    let (front, back) = (free_port(), free_port());
    let d = Daemon::start(&format!("{SERVER}{}", od_service("a", front, back, "")));
    let st = d.wait_state("a", "idle", 10 * S);
    assert!(st["pid"].is_null(), "idle means no server: {st}");
    assert_eq!(st["on_demand"], true);
    assert!(
        port_free(back),
        "nothing listens on the backend port while idle"
    );
    // Ten clients at once, while it is idle: every one gets its answer after the one load.
    let answers: Vec<(u16, String)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..10).map(|_| s.spawn(|| chat(front, "a"))).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (code, body) in &answers {
        assert_eq!(*code, 200, "{body}");
    }
    assert_eq!(spawns(&d, "a").len(), 1, "one spawn for ten first requests");
    assert_eq!(state(&d, "a"), "ready");
    // `mlx-box unload` leaves it idle (not stopped): the next request loads it again.
    let out = d.cli(&["unload", "a"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(state(&d, "a"), "idle");
    assert_eq!(chat(front, "a").0, 200);
    assert_eq!(spawns(&d, "a").len(), 2);
    // `stop` leaves it stopped: requests are refused, nothing is loaded.
    assert!(d.cli(&["stop", "a"]).status.success());
    let (code, body) = chat(front, "a");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("stopped"), "{body}");
    assert_eq!(spawns(&d, "a").len(), 2);
}

#[test]
fn idle_services_are_unloaded_but_never_under_a_request() {
    let (front, back) = (free_port(), free_port());
    let d = Daemon::start(&format!(
        "{SERVER}{}",
        od_service("a", front, back, "idle_stop_s = 2")
    ));
    d.wait_state("a", "idle", 10 * S);
    assert_eq!(chat(front, "a").0, 200);
    // A 4 s stream, twice the idle time: the service stays loaded under it.
    let stream = std::thread::spawn(move || {
        http(
            front,
            "POST",
            "/v1/chat/completions",
            &[JSON, AUTH],
            r#"{"model":"a","stream":true,"fault":"slow-stream","chunks":8}"#,
        )
    });
    std::thread::sleep(Duration::from_millis(500));
    let t0 = std::time::Instant::now();
    while t0.elapsed() < 3 * S {
        assert_eq!(state(&d, "a"), "ready", "unloaded under a request");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (code, _, body) = stream.join().unwrap();
    assert_eq!(code, 200);
    assert!(
        body.contains("t7 ") && body.contains("[DONE]"),
        "cut: {body}"
    );
    // Then, with nothing in flight: idle after ~2 s.
    let done = std::time::Instant::now();
    d.wait_state("a", "idle", 10 * S);
    let after = done.elapsed();
    assert!(after >= Duration::from_millis(1500), "too early: {after:?}");
    assert!(after < Duration::from_secs(6), "too late: {after:?}");
    assert!(port_free(back), "its server is gone");
}

/// A budget that fits one of the two: A, B, A — each load unloads the other first, and the unloaded
/// server's process group is gone before the next one is spawned.
#[test]
fn a_load_evicts_the_least_recently_used_first_and_never_overlaps() {
    let (fa, ba, fb, bb) = (free_port(), free_port(), free_port(), free_port());
    let cfg = format!(
        "{SERVER}[app]\nmemory_budget_gb = 1.0\n[alerts]\nheadroom_warn_percent = 0\n{}{}",
        od_service("a", fa, ba, "memory_gb = 0.6"),
        od_service("b", fb, bb, "memory_gb = 0.6")
    );
    let d = Daemon::start(&cfg);
    d.wait_state("a", "idle", 10 * S);
    d.wait_state("b", "idle", 10 * S);
    let mut last: Option<(String, u32)> = None;
    for (name, port) in [("a", fa), ("b", fb), ("a", fa)] {
        let (code, body) = chat(port, name);
        assert_eq!(code, 200, "{name}: {body}");
        let (pid, started) = *spawns(&d, name).last().unwrap();
        if let Some((prev, prev_pid)) = &last {
            let p = d.service(prev);
            assert_eq!(p["state"], "idle", "{prev} was unloaded for {name}");
            assert!(!pid_alive(*prev_pid), "{prev}'s server is gone");
            // It became idle (after its group was gone) before the new server started.
            let idle_at = p["since_ms"].as_u64().unwrap() as f64 / 1000.0;
            assert!(
                idle_at <= started,
                "{prev} idle at {idle_at}, {name} spawned at {started}: they overlapped"
            );
        }
        last = Some((name.to_string(), pid));
    }
    assert_eq!(spawns(&d, "a").len(), 2);
    assert_eq!(spawns(&d, "b").len(), 1);
    assert!(d.daemon_log().contains("unloading (least recently used)"));
}

#[test]
fn nothing_evictable_is_a_503_naming_what_holds_the_memory() {
    let (fp, bp, fb, bb) = (free_port(), free_port(), free_port(), free_port());
    // `big` is pinned (always loaded) and takes most of the budget.
    let pinned = format!(
        "[services.big]\nkind = \"command\"\nport = {fp}\nbackend_port = {bp}\nprobe = \"chat\"\nmemory_gb = 0.8\ncommand = [\"python3\", \"{}\", \"--mode\", \"ok\", \"--host\", \"{{host}}\", \"--port\", \"{{port}}\"]\n",
        fault_server()
    );
    let cfg = format!(
        "{SERVER}[app]\nmemory_budget_gb = 1.0\n[alerts]\nheadroom_warn_percent = 0\n{pinned}{}",
        od_service("b", fb, bb, "memory_gb = 0.6")
    );
    let d = Daemon::start(&cfg);
    d.wait_state("big", "ready", 20 * S);
    d.wait_state("b", "idle", 10 * S);
    let (code, body) = chat(fb, "b");
    assert_eq!(code, 503, "{body}");
    let msg = serde_json::from_str::<Value>(&body).unwrap()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("`big`") && msg.contains("pinned") && msg.contains("not enough memory"),
        "{msg}"
    );
    assert_eq!(state(&d, "b"), "idle");
    assert!(spawns(&d, "b").is_empty(), "nothing was started");
    assert_eq!(state(&d, "big"), "ready", "the pinned service is untouched");
    let alerts = d.status()["alerts"].clone();
    assert!(
        alerts
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["id"] == "cannot-load:b"),
        "{alerts}"
    );
}

/// A pinned service started by hand makes room as an on-demand load does: the least recently used idle
/// on-demand service is unloaded first, so the start fits the budget (without that, refused under
/// `refuse_over_budget`).
#[test]
fn a_manual_start_of_a_pinned_service_unloads_idle_on_demand_ones() {
    let [fp, bp, f1, b1, f2, b2] = std::array::from_fn(|_| free_port());
    let pinned = format!(
        "[services.big]\nkind = \"command\"\nport = {fp}\nbackend_port = {bp}\nprobe = \"chat\"\nmemory_gb = 0.6\nstop_timeout_s = 2\ncommand = [\"python3\", \"{}\", \"--mode\", \"ok\", \"--host\", \"{{host}}\", \"--port\", \"{{port}}\"]\n",
        fault_server()
    );
    // Pinned 0.6 + the largest on-demand 0.3 fit 1.0; all three loaded (1.2) do not.
    let cfg = format!(
        "{SERVER}[app]\nmemory_budget_gb = 1.0\nrefuse_over_budget = true\n[alerts]\nheadroom_warn_percent = 0\n{pinned}{}{}",
        od_service("one", f1, b1, "memory_gb = 0.3"),
        od_service("two", f2, b2, "memory_gb = 0.3")
    );
    let d = Daemon::start(&cfg);
    d.wait_state("big", "ready", 20 * S);
    assert!(d.cli(&["stop", "big"]).status.success());
    d.wait_state("big", "stopped", 10 * S);
    // Both load into the room `big` left and go idle (no request in flight); `one` is the older.
    for (name, port) in [("one", f1), ("two", f2)] {
        let (code, body) = chat(port, name);
        assert_eq!(code, 200, "{name}: {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let one_pid = spawns(&d, "one").last().unwrap().0;
    let out = d.cli(&["start", "big"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    d.wait_state("big", "ready", 20 * S);
    assert_eq!(
        state(&d, "one"),
        "idle",
        "the least recently used was unloaded"
    );
    assert!(!pid_alive(one_pid), "its server is gone");
    assert_eq!(state(&d, "two"), "ready", "only as much as needed");
    assert!(d.daemon_log().contains("unloading (least recently used)"));
}

#[test]
fn an_exclusive_group_runs_one_at_a_time() {
    let (fa, ba, fb, bb) = (free_port(), free_port(), free_port(), free_port());
    let cfg = format!(
        "{SERVER}{}{}",
        od_service("a", fa, ba, "exclusive_group = \"big\""),
        od_service("b", fb, bb, "exclusive_group = \"big\"")
    );
    let d = Daemon::start(&cfg);
    d.wait_state("a", "idle", 10 * S);
    assert_eq!(chat(fa, "a").0, 200);
    assert_eq!(state(&d, "a"), "ready");
    let (a_pid, _) = spawns(&d, "a")[0];
    assert_eq!(chat(fb, "b").0, 200);
    assert_eq!(state(&d, "b"), "ready");
    assert_eq!(state(&d, "a"), "idle", "loading b unloaded a");
    assert!(!pid_alive(a_pid));
    // A manual start goes through the same admission.
    assert!(d.cli(&["start", "a"]).status.success());
    assert_eq!(state(&d, "b"), "idle");
    assert_eq!(state(&d, "a"), "ready");
}

#[test]
fn the_one_endpoint_routes_by_name_model_id_and_alias() {
    let (ep, fa, ba, bb) = (free_port(), free_port(), free_port(), free_port());
    let svc = |name: &str, front: Option<u16>, back: u16, model: &str, extra: &str| {
        let port = front.map(|p| format!("port = {p}\n")).unwrap_or_default();
        format!(
            "[services.{name}]\nkind = \"command\"\n{port}backend_port = {back}\nmodel = \"{model}\"\nprobe = \"chat\"\ncommand = [\"python3\", \"{}\", \"--mode\", \"ok\", \"--host\", \"{{host}}\", \"--port\", \"{{port}}\"]\n{extra}\n",
            fault_server()
        )
    };
    // `b` has no port of its own: the endpoint is its only way in.
    let cfg = format!(
        "{SERVER}port = {ep}\n{}{}",
        svc("a", Some(fa), ba, "org/model-a", "aliases = [\"fast\"]"),
        svc("b", None, bb, "org/model-b", "on_demand = true")
    );
    let d = Daemon::start(&cfg);
    d.wait_state("a", "ready", 20 * S);
    d.wait_state("b", "idle", 10 * S);
    let (code, _, listing) = http(ep, "GET", "/v1/models", &[AUTH], "");
    assert_eq!(code, 200, "{listing}");
    let listing: Value = serde_json::from_str(&listing).unwrap();
    let ids: Vec<(&str, &str)> = listing["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["id"].as_str().unwrap(), m["state"].as_str().unwrap()))
        .collect();
    assert_eq!(ids, vec![("a", "ready"), ("b", "idle")]);
    // The model each front rewrote the request to says who served it.
    let served = |model: &str| {
        let (code, _, body) = http(
            ep,
            "POST",
            "/v1/chat/completions",
            &[JSON, AUTH],
            &format!(r#"{{"model":"{model}","fault":"echo-headers"}}"#),
        );
        (
            code,
            serde_json::from_str::<Value>(&body).unwrap_or_default(),
        )
    };
    for (asked, backend) in [
        ("a", "org/model-a"),
        ("fast", "org/model-a"),
        ("org/model-a", "org/model-a"),
        ("b", "org/model-b"), // idle: loaded for this request
        ("org/model-b", "org/model-b"),
    ] {
        let (code, v) = served(asked);
        assert_eq!(code, 200, "{asked}: {v}");
        assert_eq!(v["model"], backend, "{asked}");
    }
    assert_eq!(state(&d, "b"), "ready");
    let (code, v) = served("nope");
    assert_eq!(code, 404, "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("`a`") && msg.contains("`b`"), "{msg}");
    // No model named: 400 listing them.
    let (code, _, body) = http(
        ep,
        "POST",
        "/v1/chat/completions",
        &[AUTH],
        r#"{"messages":[]}"#,
    );
    assert_eq!(code, 400, "{body}");
    // A wrong key is refused at the door, before the body is read.
    let (code, _, body) = http(
        ep,
        "POST",
        "/v1/chat/completions",
        &[("Authorization", "Bearer nope")],
        r#"{"model":"a"}"#,
    );
    assert_eq!(code, 401, "{body}");
    // The per-service port still works, and the counters are the service's.
    assert_eq!(chat(fa, "a").0, 200);
    let stats = d.control_json("/v1/proxy/stats");
    assert!(stats["b"]["requests"].as_u64().unwrap() >= 2, "{stats}");
    assert!(stats["b"]["last_request_ms"].as_u64().is_some(), "{stats}");
}

/// The real mlx_lm.server on the tiny model, on demand: the first request waits for the load and gets
/// the model's answer; concurrent first requests cause one spawn.
#[test]
fn on_demand_real_mlx_lm_server() {
    let env = demo_env();
    let python = env.python.display().to_string();
    let model = env.models.join("chat").display().to_string();
    let (front, back) = (free_port(), free_port());
    let cfg = format!(
        "{SERVER}[app]\npython = \"{python}\"\n[services.chat]\nkind = \"chat\"\nport = {front}\nbackend_port = {back}\nmodel = \"{model}\"\nmax_tokens = 8\ntemperature = 0.0\non_demand = true\nidle_stop_s = 3\nload_timeout_s = 180\nenv = {{ HF_HUB_OFFLINE = \"1\" }}\n"
    );
    let d = Daemon::start(&cfg);
    d.wait_state("chat", "idle", 10 * S);
    let answers: Vec<(u16, String)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4).map(|_| s.spawn(|| chat(front, "chat"))).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (code, body) in &answers {
        assert_eq!(*code, 200, "{body}");
        let v: Value = serde_json::from_str(body).unwrap();
        assert!(v["choices"][0]["message"].is_object(), "{body}");
    }
    let log = d.service_log("chat");
    assert_eq!(
        log.matches("Starting httpd").count(),
        1,
        "one server for four first requests: {log}"
    );
    // Unloaded after 3 s idle.
    d.wait_state("chat", "idle", 20 * S);
    assert!(port_free(back));
}

/// `max_footprint_gb`: a server whose memory grows past it is drained and restarted; requests sent
/// meanwhile wait for the new server instead of failing, and an info alert gives before and after.
#[test]
fn a_server_past_its_footprint_cap_is_restarted_and_no_request_is_lost() {
    let (front, back) = (free_port(), free_port());
    let cfg = format!(
        "{SERVER}[services.grows]\nkind = \"command\"\nport = {front}\nbackend_port = {back}\nprobe = \"chat\"\nmax_footprint_gb = 0.15\nstop_timeout_s = 2\ncommand = [\"python3\", \"{}\", \"--mode\", \"ok\", \"--host\", \"{{host}}\", \"--port\", \"{{port}}\"]\n",
        fault_server()
    );
    let d = Daemon::start(&cfg);
    let first = d.wait_state("grows", "ready", 20 * S)["pid"]
        .as_u64()
        .unwrap();
    let (code, _, body) = http(
        front,
        "POST",
        "/v1/chat/completions",
        &[JSON, AUTH],
        r#"{"model":"grows","fault":"grow","mb":250}"#,
    );
    assert_eq!(code, 200, "{body}");
    // Requests keep coming while the daemon notices (a process scan every 5 s) and restarts it.
    let t0 = std::time::Instant::now();
    let mut answered = 0;
    let mut restarted = false;
    while t0.elapsed() < 25 * S {
        let (code, body) = chat(front, "grows");
        assert_eq!(code, 200, "a request during the restart failed: {body}");
        answered += 1;
        let pid = d.service("grows")["pid"].as_u64();
        if pid.is_some_and(|p| p != first) && state(&d, "grows") == "ready" {
            restarted = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(restarted, "not restarted within 25 s ({answered} requests)");
    assert!(!pid_alive(first as u32));
    assert!(wait_until(15 * S, || {
        d.status()["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["id"] == "footprint:grows" && a["severity"] == "info")
    }));
    let alert = d.status()["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == "footprint:grows")
        .cloned()
        .unwrap();
    assert!(
        alert["body"].as_str().unwrap().contains("had grown to"),
        "{alert}"
    );
}
