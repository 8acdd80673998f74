//! `mlx-box models` on a made hub cache of 200 models × 3 revisions (each revision: config.json, a
//! safetensors index and two shards, three of the four blobs shared between revisions), with 20 services
//! of settings.toml using 20 of them, and no daemon (the CLI reads the settings and the cache itself):
//!
//!   cargo bench -p mlx-box --bench models
//!
//! 1. The whole command, as a user runs it (process start, settings, the scan, the estimate of each
//!    user, the table): wall time of 30 runs after one warm-up (target ≤ 200 ms p90).
//! 2. The same list in process (`models::list`), to tell the scan from the process around it.
//!
//! Quick mode (`common::quick`): 3 runs each.

use mlxbox_core::models::{self, fake, list::hubs};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_mlx-box");
const MODELS: usize = 200;
const REVISIONS: usize = 3;
const USERS: usize = 20;

mod common;
use common::quick;

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1e3
}

fn settings(hub: &Path) -> String {
    let mut s = String::new();
    for i in 0..USERS {
        // The first repositories `fake::generate` makes: org{m % 7}/model-{m:04}.
        s.push_str(&format!(
            "[services.s{i}]\nport = {}\nmodel = \"org{}/model-{i:04}\"\ncontext_length = 32768\nmax_tokens = 1024\nenv = {{ HF_HUB_CACHE = \"{}\" }}\n",
            9000 + i,
            i % 7,
            hub.display()
        ));
    }
    s
}

fn main() {
    let runs = if quick() { 3 } else { 30 };
    let d = tempfile::tempdir().unwrap();
    let hub = d.path().join("hub");
    let t0 = Instant::now();
    fake::generate(&hub, MODELS, REVISIONS);
    eprintln!(
        "made {MODELS} × {REVISIONS} in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let config = d.path().join("settings.toml");
    std::fs::write(&config, settings(&hub)).unwrap();
    let state = d.path().join("no-daemon");

    let run = |json: bool| {
        let mut c = Command::new(BIN);
        c.arg("models")
            .args(if json { &["--json"][..] } else { &[][..] })
            .arg("--config")
            .arg(&config)
            .arg("--state-dir")
            .arg(&state)
            .env("HF_HUB_CACHE", &hub);
        let t = Instant::now();
        let o = c.output().unwrap();
        let dt = t.elapsed();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        (dt, o.stdout)
    };
    let (_, out) = run(true);
    let l: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(l["models"].as_array().unwrap().len(), MODELS);
    let used = l["models"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| !m["users"].as_array().unwrap().is_empty())
        .count();
    assert_eq!(used, USERS);

    let mut table: Vec<Duration> = (0..runs).map(|_| run(false).0).collect();
    let mut json: Vec<Duration> = (0..runs).map(|_| run(true).0).collect();
    let (s, _) = mlxbox_core::config::load(&config).unwrap();
    let mut inproc: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            let l = models::list(&hubs(Some(&s)), Some(&s), &models::Live::default());
            assert!(l.models.len() >= MODELS);
            t.elapsed()
        })
        .collect();

    println!(
        "`mlx-box models` on a hub cache of {MODELS} models × {REVISIONS} revisions ({} files), {USERS} services using {USERS} of them, no daemon; {runs} runs after a warm-up (ms):\n",
        MODELS * REVISIONS * 4
    );
    println!("| | p50 | p90 | max | target | met |");
    println!("|---|---|---|---|---|---|");
    let p90 = pct(&mut table, 0.9);
    println!(
        "| `mlx-box models` (the table) | {:.1} | {p90:.1} | {:.1} | ≤ 200 ms p90 | {} |",
        pct(&mut table, 0.5),
        pct(&mut table, 1.0),
        if p90 <= 200.0 { "yes" } else { "no" }
    );
    println!(
        "| `mlx-box models --json` | {:.1} | {:.1} | {:.1} | | |",
        pct(&mut json, 0.5),
        pct(&mut json, 0.9),
        pct(&mut json, 1.0)
    );
    println!(
        "| `models::list` in process (the scan and the estimates alone) | {:.1} | {:.1} | {:.1} | | |",
        pct(&mut inproc, 0.5),
        pct(&mut inproc, 0.9),
        pct(&mut inproc, 1.0)
    );
}
