//! A pool across two Macs: one member on this daemon, one on a daemon in its own network namespace
//! (behind a veth pair, reached through delaying relays: one for its control API, one for its frontend
//! port). Both members are the real `mlx_lm.server` on the demo's tiny chat model. Balance at equal
//! weights, affinity for a conversation, a slow member getting fewer requests, a member SIGKILLed under
//! load losing no request that had not started streaming, and `bench POOL`.

mod common;
use common::netns::{Netns, Relay};
use common::*;
use serde_json::Value;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const S: Duration = Duration::from_secs(1);
const KEY: &str = "pool-test-key-0123456789";

/// The real `mlx_lm.server` on the demo's tiny chat model (the same on both hosts).
fn chat_service(env: &mlxbox_core::demo::DemoEnv, port: u16, backend: u16) -> String {
    format!(
        "[services.chat]\nkind = \"chat\"\nport = {port}\nbackend_port = {backend}\nmodel = \"{}\"\npython = \"{}\"\nmax_tokens = 32\nready_timeout_s = 180\nenv = {{ HF_HUB_OFFLINE = \"1\" }}\n",
        env.models.join("chat").display(),
        env.python.display()
    )
}

fn pool_of(d: &Daemon) -> Value {
    d.status()["pools"][0].clone()
}

fn member<'a>(pool: &'a Value, name: &str) -> &'a Value {
    pool["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["member"] == name)
        .unwrap()
}

fn requests(pool: &Value, name: &str) -> u64 {
    member(pool, name)["requests"].as_u64().unwrap()
}

/// One chat request through the pool: (status, the member that answered).
fn ask(port: u16, messages: &Value) -> (u16, String) {
    let body =
        serde_json::json!({"model": "p", "messages": messages, "max_tokens": 24}).to_string();
    let auth = format!("Bearer {KEY}");
    let (code, head, _) = http(
        port,
        "POST",
        "/v1/chat/completions",
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &auth),
        ],
        &body,
    );
    let who = head
        .lines()
        .find_map(|l| l.strip_prefix("x-mlx-box-member: "))
        .unwrap_or("")
        .to_string();
    (code, who)
}

/// `threads` clients each sending `each` distinct one-message requests; returns the statuses.
fn load(port: u16, threads: usize, each: usize, tag: &str) -> Vec<u16> {
    let n = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (n, tag) = (n.clone(), tag.to_string());
            std::thread::spawn(move || {
                (0..each)
                    .map(|i| {
                        n.fetch_add(1, Ordering::Relaxed);
                        let m = serde_json::json!([{"role": "user", "content": format!("{tag} {t}.{i}")}]);
                        ask(port, &m).0
                    })
                    .collect::<Vec<u16>>()
            })
        })
        .collect();
    handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect()
}

#[test]
fn a_pool_across_two_hosts_balances_sticks_and_fails_over() {
    if !in_keyring_session("a_pool_across_two_hosts_balances_sticks_and_fails_over") {
        return;
    }
    if !nix::unistd::geteuid().is_root() {
        assert!(
            std::env::var_os("MLXBOX_SKIP_NETNS").is_some(),
            "this test makes network namespaces: run it as root (CI does), or set MLXBOX_SKIP_NETNS=1"
        );
        return;
    }
    let env = demo_env();
    let ns = Netns::new();
    let remote = ns.addrs.1.clone();
    // A's frontend port: free on this side too, where the data relay takes it.
    let data = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let front_a = data.local_addr().unwrap().port();
    let a = Daemon::start_in_netns(
        &format!(
            "[server]\nhost = \"0.0.0.0\"\napi_keys = [\"{KEY}\"]\n[control]\nlisten = \"{remote}:9443\"\n{}",
            chat_service(&env, front_a, 18081)
        ),
        &ns.name,
    );
    a.wait_state("chat", "ready", 30 * S);
    let info: Value = serde_json::from_str(&ok(&a.cli(&["control", "info", "--json"]))).unwrap();
    let token = ok(&a.cli(&["tokens", "add", "--role", "read"]));
    let control = Relay::start(format!("{remote}:9443"));
    let slow = Relay::start_on(data, format!("{remote}:{front_a}"));

    let (front_b, pool_port, endpoint) = (free_port(), free_port(), free_port());
    let b_base = format!(
        "[server]\nhost = \"127.0.0.1\"\nport = {endpoint}\napi_keys = [\"{KEY}\"]\n{}",
        chat_service(&env, front_b, free_port())
    );
    let b = Daemon::start(&b_base);
    b.wait_state("chat", "ready", 30 * S);
    ok(&cli_stdin(
        &b,
        &[
            "hosts",
            "add",
            "a",
            &format!("127.0.0.1:{}", control.port),
            "--fingerprint",
            info["fingerprint"].as_str().unwrap(),
            "--token-stdin",
        ],
        &token,
    ));
    let with_host = std::fs::read_to_string(&b.config).unwrap();
    b.write_config(&format!(
        "{with_host}\n[pools.p]\nmembers = [\"chat\", \"a/chat\"]\nport = {pool_port}\nmax_failures = 2\nprobation_s = 2\n"
    ));
    let both_in = || {
        let p = pool_of(&b);
        p.is_object()
            && p["members"]
                .as_array()
                .unwrap()
                .iter()
                .all(|m| m["health"] == "in")
    };
    assert!(wait_until(30 * S, both_in), "{}", pool_of(&b));
    let status = ok(&b.cli(&["status"]));
    assert!(
        status.contains("POOL p") && status.contains("a/chat"),
        "{status}"
    );

    // 1. Equal weights: both members take a real share. The pool picks the least loaded, so a member
    //    that answers slower (the other Mac's, through its own daemon and a veth, on a loaded machine)
    //    takes fewer: the split is not asserted to be even.
    let codes = load(pool_port, 8, 25, "balance");
    assert!(codes.iter().all(|&c| c == 200), "{codes:?}");
    let p = pool_of(&b);
    let (local, far) = (requests(&p, "chat"), requests(&p, "a/chat"));
    eprintln!("balance: chat {local}, a/chat {far}");
    assert_eq!(local + far, 200, "{p}");
    assert!(local >= 50 && far >= 50, "{local} vs {far}: {p}");
    // What each member's own daemon counted agrees.
    let served_a = a.control_json("/v1/proxy/stats")["chat"]["requests"]
        .as_u64()
        .unwrap();
    assert!(served_a >= far, "{served_a} < {far}");

    // 2. Affinity: every turn of a conversation goes where its first turn went.
    for c in 0..4 {
        let mut messages =
            vec![serde_json::json!({"role": "user", "content": format!("conversation {c}")})];
        let (code, first) = ask(pool_port, &Value::Array(messages.clone()));
        assert_eq!(code, 200);
        for turn in 0..4 {
            messages.push(serde_json::json!({"role": "assistant", "content": "ok"}));
            messages.push(serde_json::json!({"role": "user", "content": format!("and {turn}")}));
            let (code, who) = ask(pool_port, &Value::Array(messages.clone()));
            assert_eq!(
                (code, who.as_str()),
                (200, first.as_str()),
                "turn {turn} of {c}"
            );
        }
    }
    let p = pool_of(&b);
    let hits = member(&p, "chat")["affinity_hits"].as_u64().unwrap()
        + member(&p, "a/chat")["affinity_hits"].as_u64().unwrap();
    assert_eq!(hits, 16, "{p}");

    // 3. A slow member (250 ms more each way through the relay) gets fewer requests.
    let before = (requests(&p, "chat"), requests(&p, "a/chat"));
    slow.set_delay(250);
    let codes = load(pool_port, 8, 15, "slow");
    slow.set_delay(0);
    assert!(codes.iter().all(|&c| c == 200), "{codes:?}");
    let p = pool_of(&b);
    let (local, far) = (
        requests(&p, "chat") - before.0,
        requests(&p, "a/chat") - before.1,
    );
    eprintln!("slow member: chat {local}, a/chat {far}");
    assert!(
        far * 3 < local + far,
        "the slow member took {far} of {}",
        local + far
    );

    // 4. The local member's server is SIGKILLed under load: every request still gets its answer (those
    // in flight on it are sent to the other member: nothing had streamed), the member leaves the pool
    // and comes back once its server is ready again.
    let retries_before = pool_of(&b)["retries"].as_u64().unwrap();
    let pid = b.service("chat")["pid"].as_u64().unwrap() as i32;
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(700));
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    });
    let codes = load(pool_port, 8, 30, "failover");
    killer.join().unwrap();
    let lost: Vec<&u16> = codes.iter().filter(|&&c| c != 200).collect();
    let p = pool_of(&b);
    eprintln!(
        "failover: {} requests, not answered: {lost:?}; {p}",
        codes.len()
    );
    assert!(lost.is_empty(), "{lost:?}: {p}");
    assert!(p["retries"].as_u64().unwrap() > retries_before, "{p}");
    assert!(member(&p, "chat")["errors"].as_u64().unwrap() >= 1, "{p}");
    b.wait_state("chat", "ready", 30 * S);
    // Back on probation (one request at a time), then in after a success.
    assert!(
        wait_until(30 * S, || member(&pool_of(&b), "chat")["health"] != "out"),
        "{}",
        pool_of(&b)
    );
    let before = requests(&pool_of(&b), "chat");
    let codes = load(pool_port, 4, 5, "rejoined");
    assert!(codes.iter().all(|&c| c == 200), "{codes:?}");
    let p = pool_of(&b);
    assert!(requests(&p, "chat") > before, "rejoined: {p}");
    assert_eq!(member(&p, "chat")["health"], "in", "{p}");

    // `bench POOL`: the pool through its port beside its member of this Mac alone, with each member's
    // share of the requests.
    let out = ok(&b.cli(&[
        "bench",
        "p",
        "--concurrency",
        "1,4",
        "--requests",
        "8",
        "--no-thinking-check",
    ]));
    eprintln!("{out}");
    assert!(
        out.contains("pool p:") && out.contains("out tok/s combined"),
        "{out}"
    );
    assert!(
        out.contains("chat alone") && out.contains("parallel efficiency"),
        "{out}"
    );
    let last: Value =
        serde_json::from_str(&ok(&b.cli(&["bench", "--show", "last", "--json"]))).unwrap();
    let shares = last["pool"]["members"].as_array().unwrap();
    assert_eq!(shares.len(), 2, "{last}");
    let sent: u64 = shares.iter().map(|m| m["requests"].as_u64().unwrap()).sum();
    assert!(sent >= 16, "{last}");
    assert!(
        shares.iter().all(|m| m["requests"].as_u64().unwrap() > 0),
        "both members served: {last}"
    );

    // Through the one endpoint ([server] port), by the pool's name: listed, and routed to a member.
    let auth = format!("Bearer {KEY}");
    let (code, _, body) = http(
        endpoint,
        "GET",
        "/v1/models",
        &[("Authorization", &auth)],
        "",
    );
    assert!(
        code == 200 && body.contains("\"id\":\"p\""),
        "{code} {body}"
    );
    let (code, who) = ask(
        endpoint,
        &serde_json::json!([{"role": "user", "content": "via the endpoint"}]),
    );
    assert_eq!(code, 200);
    assert!(who == "chat" || who == "a/chat", "{who}");

    // A wrong model is refused with what the pool serves.
    let (code, _, body) = http(
        pool_port,
        "POST",
        "/v1/chat/completions",
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &format!("Bearer {KEY}")),
        ],
        r#"{"model":"other","messages":[]}"#,
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("pool `p` serves `p`"), "{body}");
    let (code, _, _) = http(pool_port, "GET", "/v1/models", &[], "");
    assert_eq!(code, 401, "no key, no answer");
    drop(b);
    drop(a);
    drop(ns);
    let _ = Command::new("true").status();
}

fn ok(o: &std::process::Output) -> String {
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}
