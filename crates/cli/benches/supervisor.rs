//! Supervisor latency and footprint, measured on a real daemon with the fault server (python3):
//!
//!   cargo bench -p mlx-box --bench supervisor
//!
//! 1. server SIGKILLed → replacement spawned (event `starting` with a new pid)
//! 2. server able to answer → state `ready` (fault server `slow-ready` writes the instant it listens)
//! 3. settings.toml saved → changed service leaves `ready` (restart under way)
//! 4. daemon idle with 3 services (monitor at 1 Hz included): RSS and CPU over 20 s
//! 0. one monitor sample
//!
//! Figures go to docs/PERFORMANCE.md.
//!
//! Quick mode (`cargo test --benches`: cargo passes `--bench` only under `cargo bench`; or `MLXBOX_BENCH_QUICK=1`): 3
//! rounds and a 2 s idle window. It fails on errors and panics, never on a speed target.

use mlxbox_client::control::Client;
use mlxbox_core::api::Event;
use mlxbox_core::supervisor::State;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const BIN: &str = env!("CARGO_BIN_EXE_mlx-box");
/// Rounds per measurement: 20, or 3 in quick mode.
fn rounds() -> usize {
    if quick() {
        3
    } else {
        20
    }
}

mod common;
use common::{free_port, quick};

fn fault() -> String {
    format!(
        "{}/../../python/fault_server.py",
        env!("CARGO_MANIFEST_DIR")
    )
}
fn now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}
fn svc(name: &str, port: u16, args: &str, extra: &str) -> String {
    format!(
        "[services.{name}]\nkind = \"command\"\nport = {port}\nprobe = \"chat\"\nliveness_interval_s = 10\ncommand = [\"python3\", \"{}\", \"--host\", \"{{host}}\", \"--port\", \"{{port}}\", {args}]\n{extra}\n",
        fault()
    )
}

fn summary(name: &str, target_ms: f64, mut v: Vec<f64>) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let p = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    let met = if p(0.9) <= target_ms { "yes" } else { "no" };
    println!(
        "| {name} | {} | {:.1} ms | {:.1} ms | {:.1} ms | ≤ {target_ms} ms (p90) | {met} |",
        v.len(),
        p(0.5),
        p(0.9),
        v[v.len() - 1]
    );
}

struct Daemon {
    child: std::process::Child,
    dir: tempfile::TempDir,
}
impl Daemon {
    fn start(text: &str) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("settings.toml"), text).unwrap();
        let child = Command::new(BIN)
            .args(["up", "--config"])
            .arg(dir.path().join("settings.toml"))
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .env("MLXBOX_LOG", "warn")
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        Daemon { child, dir }
    }
    fn state(&self) -> std::path::PathBuf {
        self.dir.path().join("state")
    }
}
impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

async fn wait_ready(c: &Client, name: &str) -> u32 {
    loop {
        if let Ok(s) = c.call(mlxbox_api::call::Status {}).await {
            if let Some(x) = s
                .services
                .iter()
                .find(|x| x.name == name && x.state == State::Ready)
            {
                return x.pid.unwrap();
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs `trigger` once the event stream is open (its first message, the snapshot, says so), then waits for
/// the first event matching `pred`; returns the instant it arrived.
///
/// (The instant is taken inside the stream's callback: the stream ends *because* the event matched, so
/// a `select!` of the end against a oneshot would see the end first half of the time.)
async fn event_after(c: &Client, trigger: impl FnOnce(), pred: impl Fn(&Event) -> bool) -> Instant {
    let mut trigger = Some(trigger);
    let mut at = None;
    let r = c
        .events(|ev| {
            if matches!(ev, Event::Snapshot(_)) {
                if let Some(t) = trigger.take() {
                    t();
                }
                return true;
            }
            if pred(&ev) {
                at = Some(Instant::now());
                return false;
            }
            true
        })
        .await;
    at.unwrap_or_else(|| panic!("the event stream ended before the awaited event: {r:?}"))
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}
fn cpu_ticks(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let f: Vec<&str> = s[s.rfind(')').unwrap() + 2..].split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rounds = rounds();
    println!("| measurement | n | p50 | p90 | max | target | met |\n|---|---|---|---|---|---|---|");
    // 0. one monitor sample (system memory, swap, PSI, thermal zones)
    let mut sampler = mlxbox_core::monitor::Sampler::default();
    let mut v = vec![];
    for _ in 0..200 {
        let t0 = Instant::now();
        std::hint::black_box(sampler.sample());
        v.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    summary("monitor: one system sample", 2.0, v);

    let ready_file = tempfile::NamedTempFile::new().unwrap();
    let rf = ready_file.path().display().to_string();
    let (p1, p2, p3) = (free_port(), free_port(), free_port());
    let text = format!(
        "{}{}{}",
        svc("crashy", p1, "\"--mode\", \"ok\"", ""),
        svc(
            "slow",
            p2,
            &format!(
                "\"--mode\", \"slow-ready\", \"--delay\", \"0.5\", \"--ready-file\", \"{rf}\""
            ),
            ""
        ),
        svc("edited", p3, "\"--mode\", \"ok\"", "")
    );
    // Ready ≥ 1 s before each kill, so every crash counts as a first one (restart at once): this measures
    // the restart path, not the backoff.
    let text = format!("[app]\nstable_after_s = 1\n{text}");
    let d = Daemon::start(&text);
    let c = Client::new(&d.state());
    for n in ["crashy", "slow", "edited"] {
        wait_ready(&c, n).await;
    }

    // 1. SIGKILL → replacement spawned
    let mut v = vec![];
    for _ in 0..rounds {
        let pid = wait_ready(&c, "crashy").await;
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let mut t0 = Instant::now();
        let t1 = event_after(
            &c,
            || {
                t0 = Instant::now();
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
            },
            |e| matches!(e, Event::Service(s) if s.name == "crashy" && s.state == State::Starting && s.pid.is_some() && s.pid != Some(pid)),
        )
        .await;
        v.push((t1 - t0).as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    summary("SIGKILL → replacement spawned", 50.0, v);

    // 2. able to answer → ready
    let mut v = vec![];
    for _ in 0..rounds.div_ceil(2) {
        wait_ready(&c, "slow").await;
        let _ = std::fs::remove_file(&rf);
        let t1 = event_after(
            &c,
            || {
                let c2 = Client::new(&d.state());
                tokio::spawn(async move {
                    let restart = mlxbox_api::call::Action {
                        target: "slow".into(),
                        verb: mlxbox_api::service::Verb::Restart,
                    };
                    c2.call(restart).await.unwrap()
                });
            },
            |e| matches!(e, Event::Service(s) if s.name == "slow" && s.state == State::Ready),
        )
        .await;
        let ready_at = now_s() - t1.elapsed().as_secs_f64();
        let listening: f64 = std::fs::read_to_string(&rf)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        v.push((ready_at - listening) * 1000.0);
    }
    summary("able to answer → state ready", 250.0, v);

    // 3. settings saved → changed service restarting
    let cfg = d.dir.path().join("settings.toml");
    let mut v = vec![];
    for i in 0..rounds {
        wait_ready(&c, "edited").await;
        let new = std::fs::read_to_string(&cfg).unwrap().replace(
            &format!("port = {p3}\n"),
            &format!("port = {p3}\nenv = {{ ROUND = \"{i}\" }}\n"),
        );
        let new = strip_round(&new, i);
        let mut t0 = Instant::now();
        let t1 = event_after(
            &c,
            || {
                t0 = Instant::now();
                let tmp = cfg.with_extension("tmp");
                std::fs::write(&tmp, &new).unwrap();
                std::fs::rename(&tmp, &cfg).unwrap();
            },
            |e| matches!(e, Event::Service(s) if s.name == "edited" && s.state == State::Stopping),
        )
        .await;
        v.push((t1 - t0).as_secs_f64() * 1000.0);
    }
    summary("settings.toml saved → changed service restarting", 300.0, v);

    // 4. idle footprint
    for n in ["crashy", "slow", "edited"] {
        wait_ready(&c, n).await;
    }
    let pid = d.child.id();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (c0, t0) = (cpu_ticks(pid), Instant::now());
    let idle = Duration::from_secs(if quick() { 2 } else { 20 });
    tokio::time::sleep(idle).await;
    let ticks = cpu_ticks(pid) - c0;
    let hz = 100.0; // USER_HZ on Linux
    let pct = ticks as f64 / hz / t0.elapsed().as_secs_f64() * 100.0;
    let rss_mb = rss_kb(pid) as f64 / 1024.0;
    let yes = |ok: bool| if ok { "yes" } else { "no" };
    println!(
        "| daemon idle, 3 services: RSS | 1 | {rss_mb:.1} MB | | | ≤ 25 MB | {} |",
        yes(rss_mb <= 25.0)
    );
    println!(
        "| daemon idle, 3 services: CPU over {} s | 1 | {pct:.2} % of a core | | | ≤ 0.5 % | {} |",
        idle.as_secs(),
        yes(pct <= 0.5)
    );
}

/// Keeps only the newest `env = { ROUND = … }` line so each save is a real change.
fn strip_round(text: &str, i: usize) -> String {
    let keep = format!("env = {{ ROUND = \"{i}\" }}");
    text.lines()
        .filter(|l| !l.starts_with("env = { ROUND") || *l == keep)
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}
