//! One model across ranks: `kind = "distributed"` launches `mlx.launch --backend ring --hostfile … --
//! python -m mlx_lm server …` and supervises it as one unit. Here the two ranks run on this machine
//! (`hosts = ["local", "local"]`, mlx[cpu], the demo's tiny chat model, tensor parallel): it answers a
//! completion, a SIGKILLed rank restarts the whole unit, and a stop leaves no rank behind.

mod common;
use common::*;
use serde_json::Value;
use std::time::Duration;

const S: Duration = Duration::from_secs(1);

/// Live processes whose command line has `needle` (Linux: /proc).
fn processes_with(needle: &str) -> Vec<u32> {
    let mut out = vec![];
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        });
        if cmd.contains(needle) && !zombie {
            out.push(pid);
        }
    }
    out.sort();
    out
}

/// The rank processes: `python -m mlx_lm server` with this model (not the launcher, whose command line
/// has `mlx.launch` first).
fn ranks(model: &str) -> Vec<u32> {
    processes_with(model)
        .into_iter()
        .filter(|p| {
            let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            cmd.contains("-m mlx_lm server") && !cmd.contains("mlx.launch")
        })
        .collect()
}

fn complete(port: u16) -> (u16, String) {
    let (code, _, body) = http(
        port,
        "POST",
        "/v1/chat/completions",
        &[("Content-Type", "application/json")],
        r#"{"model":"big","messages":[{"role":"user","content":"hi"}],"max_tokens":6,"temperature":0}"#,
    );
    (code, body)
}

#[test]
fn a_model_on_two_ranks_answers_restarts_as_a_unit_and_stops_whole() {
    if !in_keyring_session("a_model_on_two_ranks_answers_restarts_as_a_unit_and_stops_whole") {
        return;
    }
    let env = demo_env();
    let python = env.python.display().to_string();
    // A copy of the tiny model at a path of its own: the test finds its ranks by it.
    let model_dir = tempfile::tempdir().unwrap();
    let model = model_dir.path().join("tiny-distributed");
    std::fs::create_dir(&model).unwrap();
    for f in std::fs::read_dir(env.models.join("chat"))
        .unwrap()
        .flatten()
    {
        if f.file_type().unwrap().is_file() {
            std::fs::copy(f.path(), model.join(f.file_name())).unwrap();
        }
    }
    let model = model.display().to_string();
    let (front, back) = (free_port(), free_port());
    let d = Daemon::start(&format!(
        "[server]\nhost = \"127.0.0.1\"\n[app]\npython = \"{python}\"\n[services.big]\nkind = \"distributed\"\nhosts = [\"local\", \"local\"]\nbackend = \"ring\"\nport = {front}\nbackend_port = {back}\nmodel = \"{model}\"\nmax_tokens = 16\nready_timeout_s = 240\nbackoff_max_s = 2\nenv = {{ HF_HUB_OFFLINE = \"1\" }}\n"
    ));
    let st = d.wait_state("big", "ready", 240 * S);
    assert_eq!(st["kind"], "distributed");
    assert_eq!(
        st["ranks"],
        serde_json::json!(["rank 0: local (127.0.0.1)", "rank 1: local (127.0.0.1)"])
    );
    let hostfile: Value =
        serde_json::from_str(&std::fs::read_to_string(st["hostfile"].as_str().unwrap()).unwrap())
            .unwrap();
    assert_eq!(hostfile["backend"], "ring");
    assert_eq!(hostfile["hosts"].as_array().unwrap().len(), 2, "{hostfile}");
    let out = String::from_utf8_lossy(&d.cli(&["status"]).stdout).into_owned();
    assert!(out.contains("distributed"), "{out}");

    // Both ranks run, rank 0 answers through the proxy.
    let r = ranks(&model);
    assert_eq!(r.len(), 2, "two rank processes: {r:?}");
    let (code, body) = complete(front);
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(v["usage"]["completion_tokens"].as_u64().unwrap() > 0, "{v}");

    // One rank dies: the unit restarts (a new launcher, two new ranks) and answers again.
    let first = st["pid"].as_u64().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(r[1] as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert!(
        wait_until(60 * S, || {
            let s = d.service("big");
            s["restarts"].as_u64().unwrap_or(0) >= 1 && s["pid"].as_u64() != Some(first)
        }),
        "{}",
        d.service("big")
    );
    d.wait_state("big", "ready", 240 * S);
    let again = ranks(&model);
    assert_eq!(again.len(), 2, "{again:?}");
    assert!(
        !again.contains(&r[0]),
        "rank 0 was restarted too: {r:?} → {again:?}"
    );
    let (code, body) = complete(front);
    assert_eq!(code, 200, "{body}");

    // A stop leaves no rank (nor the launcher).
    assert!(d.cli(&["stop", "big"]).status.success());
    d.wait_state("big", "stopped", 30 * S);
    assert!(
        wait_until(10 * S, || processes_with(&model).is_empty()),
        "left behind: {:?}",
        processes_with(&model)
    );
}
