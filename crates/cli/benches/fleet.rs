//! The fleet's costs (needs gnome-keyring and dbus: the tokens this Mac presents to the others live in a
//! private keyring session):
//!
//!   cargo bench -p mlx-box --bench fleet
//!
//! 1. `status` and `ping` of a release daemon over its Unix socket against the same over the remote
//!    control API (TLS, pinned certificate, a token, one kept connection) on loopback: p50 and p90 of 200
//!    calls each, and what TLS and TCP add at p50 (target ≤ 2 ms).
//! 2. The idle cost of watching 4 hosts: the operator's daemon's CPU over 20 s with no hosts, then with
//!    4 (each polled once a second: a ping and a status), as a share of one core (target ≤ 0.5 %).
//!
//! Quick mode (`common::quick`): 20 calls, 3 s windows.
//!
//! Figures go to docs/PERFORMANCE.md.

use mlxbox_api::call;
use mlxbox_client::control::Client;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_mlx-box");

mod common;
use common::{free_ports, quick, Group};

#[path = "../tests/common/keyring_session.rs"]
mod keyring_session;

struct Daemon {
    _g: Group,
    state: PathBuf,
    pid: u32,
}

fn daemon(dir: &Path, name: &str, settings: &str) -> Daemon {
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(&config, settings).unwrap();
    let state = dir.join(name);
    let child = Command::new(BIN)
        .args(["up", "--config"])
        .arg(&config)
        .arg("--state-dir")
        .arg(&state)
        .env("MLXBOX_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join(format!("{name}.log"))).unwrap())
        .process_group(0)
        .spawn()
        .unwrap();
    let pid = child.id();
    let t0 = Instant::now();
    while !cli(&state, &["status", "--json"], None).status.success() {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "{name} did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Daemon {
        _g: Group(child),
        state,
        pid,
    }
}

fn cli(state: &Path, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    use std::io::Write;
    let mut c = Command::new(BIN)
        .args(args)
        .arg("--state-dir")
        .arg(state)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input = stdin.unwrap_or_default().to_string();
    c.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    c.wait_with_output().unwrap()
}

fn ok(o: std::process::Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

/// CPU seconds (user + system) of a process so far.
fn cpu_s(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0 // USER_HZ
}

fn share_of_core(pid: u32, window: Duration) -> f64 {
    let (c0, t0) = (cpu_s(pid), Instant::now());
    std::thread::sleep(window);
    (cpu_s(pid) - c0) / t0.elapsed().as_secs_f64() * 100.0
}

/// (p50, p90) in ms of `n` timed calls.
async fn time<F, Fut>(n: usize, mut f: F) -> (f64, f64)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    f().await; // warm-up: the connection (and the TLS handshake) is made here
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f().await;
        v.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    v.sort_by(f64::total_cmp);
    let p = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (p(0.5), p(0.9))
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(status) = keyring_session::reexec(&args) {
        std::process::exit(status.code().unwrap_or(1));
    }
    let quick = quick();
    let (calls, window) = if quick {
        (20, Duration::from_secs(3))
    } else {
        (200, Duration::from_secs(20))
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ports = free_ports(4);
    let hosts: Vec<Daemon> = ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            daemon(
                d,
                &format!("a{i}"),
                &format!("[control]\nlisten = \"127.0.0.1:{p}\"\n[services]\n"),
            )
        })
        .collect();
    // Each host keeps its own access tokens (hashed in its state dir), as four Macs would.
    let tokens: Vec<String> = hosts
        .iter()
        .map(|h| {
            ok(cli(&h.state, &["tokens", "add", "--role", "read"], None))
                .trim()
                .to_string()
        })
        .collect();
    let token = tokens[0].clone();
    let fp = |s: &Path| {
        let v: serde_json::Value =
            serde_json::from_str(&ok(cli(s, &["control", "info", "--json"], None))).unwrap();
        v["fingerprint"].as_str().unwrap().to_string()
    };

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let a = &hosts[0];
    let addr = format!("127.0.0.1:{}", ports[0]);
    let local = Client::new(&a.state);
    let remote = Client::remote("a0", &addr, &fp(&a.state), &token).unwrap();
    let (l_status, r_status, l_ping, r_ping) = rt.block_on(async {
        let ls = time(calls, || async {
            local.call(call::Status {}).await.unwrap();
        })
        .await;
        let rs = time(calls, || async {
            remote.call(call::Status {}).await.unwrap();
        })
        .await;
        let lp = time(calls, || async {
            local.call(call::Ping {}).await.unwrap();
        })
        .await;
        let rp = time(calls, || async {
            remote.call(call::Ping {}).await.unwrap();
        })
        .await;
        (ls, rs, lp, rp)
    });

    // The operator's daemon, idle with no hosts, then watching all four.
    let b = daemon(d, "b", "[services]\n");
    std::thread::sleep(Duration::from_secs(2));
    let alone = share_of_core(b.pid, window);
    for (i, (h, p)) in hosts.iter().zip(&ports).enumerate() {
        let addr = format!("127.0.0.1:{p}");
        let f = fp(&h.state);
        ok(cli(
            &b.state,
            &[
                "hosts",
                "add",
                &format!("a{i}"),
                &addr,
                "--fingerprint",
                &f,
                "--token-stdin",
            ],
            Some(&format!("{}\n", tokens[i])),
        ));
    }
    let t0 = Instant::now();
    loop {
        let s: serde_json::Value =
            serde_json::from_str(&ok(cli(&b.state, &["status", "--json"], None))).unwrap();
        let up = s["hosts"]
            .as_array()
            .map(|h| h.iter().filter(|h| h["reachable"] == true).count())
            .unwrap_or(0);
        if up == 4 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "{up} of 4 hosts reachable: {s}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    let watching = share_of_core(b.pid, window);
    drop(b);
    drop(hosts);

    println!("\nOne daemon, {calls} calls each on one kept connection (loopback; the remote API: TLS 1.3, pinned certificate, a read token):\n");
    println!("| request | Unix socket p50 | p90 | remote TLS p50 | p90 | added at p50 | target | met |\n|---|---|---|---|---|---|---|---|");
    for (what, l, r) in [("status", l_status, r_status), ("ping", l_ping, r_ping)] {
        let added = r.0 - l.0;
        println!(
            "| {what} | {:.3} ms | {:.3} ms | {:.3} ms | {:.3} ms | {added:.3} ms | ≤ 2 ms | {} |",
            l.0,
            l.1,
            r.0,
            r.1,
            if added <= 2.0 { "yes" } else { "no" }
        );
    }
    let added = watching - alone;
    println!(
        "\nThe operator's daemon over {} s, idle (monitor at 1 Hz included):\n",
        window.as_secs()
    );
    println!("| hosts watched | CPU, % of a core | added by the hosts | target | met |\n|---|---|---|---|---|");
    println!("| 0 | {alone:.2} % | | | |");
    println!(
        "| 4 (ping + status each, once a second) | {watching:.2} % | {added:.2} % | ≤ 0.5 % | {} |",
        if added <= 0.5 { "yes" } else { "no" }
    );
}
