//! `mlx-box models` with the real binary on a hub cache made by the test (`HF_HUB_CACHE`): without a
//! daemon (settings.toml and the cache read directly) and through one (states, last use); `rm`
//! refused while used and exact about what it frees; `validate`'s warning; and the layout read as
//! `huggingface_hub.scan_cache_dir` reads it (the demo environment's huggingface_hub, a dependency of
//! transformers).

mod common;

use common::{fault_service, free_port, http, Daemon, BIN};
use mlxbox_core::models::fake::FakeHub;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

const REV1: &str = "1111111111111111111111111111111111111111";
const REV2: &str = "2222222222222222222222222222222222222222";

/// `org/alpha` (two revisions sharing three blobs, a nested file), `org/beta` (one revision, a
/// broken link), `org/gamma` (one revision).
fn cache(root: &Path) -> FakeHub {
    let hub = FakeHub::new(root);
    hub.model("org/alpha", REV1);
    hub.model("org/alpha", REV2);
    let vocab = hub.blob("org/alpha", b"{\"a\": 1}");
    hub.snapshot("org/alpha", REV2, &[("tokenizer/vocab.json", &vocab)]);
    hub.set_ref("org/alpha", "main", REV2);
    hub.model("org/beta", REV1);
    std::os::unix::fs::symlink(
        "../../blobs/missing",
        hub.repo_dir("org/beta")
            .join("snapshots")
            .join(REV1)
            .join("extra.json"),
    )
    .unwrap();
    hub.model("org/gamma", REV1);
    hub
}

fn run(hub: &Path, dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--state-dir")
        .arg(dir.join("no-daemon"))
        .env("HF_HUB_CACHE", hub)
        .output()
        .unwrap()
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

fn model<'a>(l: &'a Value, id: &str) -> &'a Value {
    l["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == id)
        .unwrap_or_else(|| panic!("{id} not in {l:#}"))
}

fn blob_bytes(hub: &FakeHub, id: &str) -> u64 {
    std::fs::read_dir(hub.repo_dir(id).join("blobs"))
        .unwrap()
        .flatten()
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

#[test]
fn list_du_rm_and_validate_without_a_daemon() {
    let d = tempfile::tempdir().unwrap();
    let hub = cache(&d.path().join("hub"));
    let settings = d.path().join("settings.toml");
    std::fs::write(
        &settings,
        "[services.chat]\nport = 8081\nmodel = \"org/alpha\"\ncontext_length = 4096\nmax_tokens = 256\n\
         [services.later]\nport = 8082\nmodel = \"org/not-here\"\n",
    )
    .unwrap();
    let cfg = settings.to_str().unwrap();

    let o = run(&hub.root, d.path(), &["models", "--json", "--config", cfg]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let l = json(&o);
    let alpha = model(&l, "org/alpha");
    // Every blob of alpha is linked from some revision: its size is its blobs', each once.
    assert_eq!(alpha["size_bytes"], blob_bytes(&hub, "org/alpha"));
    assert_eq!(alpha["revisions"].as_array().unwrap().len(), 2);
    assert_eq!(alpha["complete"], true);
    assert_eq!(alpha["quant_bits"], 4);
    assert_eq!(alpha["parameters"], 8192);
    assert_eq!(alpha["users"][0]["service"], "chat");
    assert_eq!(alpha["users"][0]["context_tokens"], 4096);
    assert!(alpha["users"][0]["estimate_bytes"].as_u64().unwrap() > 0);
    assert_eq!(model(&l, "org/beta")["complete"], false);
    let unused = blob_bytes(&hub, "org/beta") + blob_bytes(&hub, "org/gamma");
    assert_eq!(l["unused_bytes"], unused);

    // The table: one row per model, what no service uses named at the end.
    let o = run(&hub.root, d.path(), &["models", "--config", cfg]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("USED BY") && text.contains("4-bit/64"),
        "{text}"
    );
    assert!(
        text.contains("used by no service: org/beta, org/gamma")
            || text.contains("used by no service: org/gamma, org/beta"),
        "{text}"
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("extra.json links to a blob that is not there")
    );

    let o = run(
        &hub.root,
        d.path(),
        &["models", "du", "--json", "--config", cfg],
    );
    let du = json(&o);
    assert_eq!(du["total_bytes"], l["total_bytes"]);
    assert_eq!(du["unused"].as_array().unwrap().len(), 2);

    // rm: refused while used, naming the service; nothing removed.
    let o = run(
        &hub.root,
        d.path(),
        &["models", "rm", "org/alpha", "--yes", "--config", cfg],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("[services.chat]"));
    assert!(hub.repo_dir("org/alpha").exists());
    // Without --yes and no terminal: refused, nothing removed.
    let o = run(
        &hub.root,
        d.path(),
        &["models", "rm", "org/gamma", "--config", cfg],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(hub.repo_dir("org/gamma").exists());
    // An unused one: every byte of its blobs freed, exactly.
    let want = blob_bytes(&hub, "org/gamma");
    let o = run(
        &hub.root,
        d.path(),
        &["models", "rm", "org/gamma", "--yes", "--config", cfg],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains(&format!("({want} bytes)\n")), "{out}");
    assert!(!hub.repo_dir("org/gamma").exists());

    // validate: a warning for the model that is not here, exit 0 all the same.
    let o = Command::new(BIN)
        .args(["validate", cfg])
        .env("HF_HUB_CACHE", &hub.root)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("warning: model `org/not-here` is not on this Mac: `mlx-box models pull org/not-here` fetches it"),
        "{text}"
    );
    assert!(!text.contains("`org/alpha` is not on this Mac"), "{text}");
}

#[test]
fn the_daemon_lists_states_and_last_use() {
    let d = tempfile::tempdir().unwrap();
    let hub = cache(&d.path().join("hub"));
    let (front, back) = (free_port(), free_port());
    let text = fault_service(
        "chat",
        front,
        "ok",
        &format!("backend_port = {back}\nmodel = \"org/alpha\"\n"),
    );
    let daemon = Daemon::start_env(&text, &[("HF_HUB_CACHE", hub.root.to_str().unwrap())]);
    daemon.wait_state("chat", "ready", std::time::Duration::from_secs(30));
    let body =
        r#"{"model":"org/alpha","messages":[{"role":"user","content":"hi"}],"max_tokens":4}"#;
    let (status, _, _) = http(
        front,
        "POST",
        "/v1/chat/completions",
        &[("content-type", "application/json")],
        body,
    );
    assert_eq!(status, 200);
    let l = daemon.control_json("/v1/models/local");
    let alpha = model(&l, "org/alpha");
    assert_eq!(alpha["users"][0]["state"], "ready");
    assert!(alpha["last_used_ms"].as_u64().unwrap() > 0, "{alpha:#}");
    assert!(model(&l, "org/beta")["last_used_ms"].is_null());
    // The CLI asks the daemon (the states are there).
    let out = daemon.cli(&["models"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("chat (ready)"), "{text}");
    assert!(text.contains("s ago"), "{text}");
}

/// The layout as huggingface_hub reads it: the same repositories, revisions, refs, file counts and
/// sizes; the repository it calls corrupted (a broken link) is one whose problem mlx-box names too.
#[test]
fn sizes_match_huggingface_hub_scan_cache_dir() {
    let env = common::demo_env();
    let d = tempfile::tempdir().unwrap();
    let hub = cache(&d.path().join("hub"));
    std::fs::write(
        hub.repo_dir("org/alpha").join("blobs/partial.incomplete"),
        [0u8; 77],
    )
    .unwrap();
    hub.set_ref("org/alpha", "refs/pr/1", REV1);
    let code = r#"
import json, sys
from huggingface_hub import scan_cache_dir
info = scan_cache_dir(sys.argv[1])
print(json.dumps({
    "repos": {r.repo_id: {"size": r.size_on_disk, "revs": {v.commit_hash: {
        "size": v.size_on_disk, "refs": sorted(v.refs), "files": len(v.files)} for v in r.revisions}}
        for r in info.repos},
    "warnings": [str(w) for w in info.warnings]}))
"#;
    let hf = common::python_json(&env.python, code, &[hub.root.to_str().unwrap()]);
    let o = run(
        &hub.root,
        d.path(),
        &["models", "--json", "--config", "/nonexistent.toml"],
    );
    let ours = json(&o);
    let repos = hf["repos"].as_object().unwrap();
    assert_eq!(repos.len(), 2, "{hf:#}");
    for (id, r) in repos {
        let m = model(&ours, id);
        assert_eq!(m["size_bytes"], r["size"], "{id}");
        let revs = r["revs"].as_object().unwrap();
        assert_eq!(m["revisions"].as_array().unwrap().len(), revs.len(), "{id}");
        for (hash, v) in revs {
            let mine = m["revisions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["hash"] == hash.as_str())
                .unwrap();
            assert_eq!(mine["size_bytes"], v["size"], "{id} {hash}");
            assert_eq!(mine["files"], v["files"], "{id} {hash}");
            assert_eq!(mine["refs"], v["refs"], "{id} {hash}");
        }
    }
    let warnings = hf["warnings"].to_string();
    assert!(warnings.contains("models--org--beta"), "{warnings}");
    assert!(model(&ours, "org/beta")["problems"]
        .to_string()
        .contains("extra.json"));
    assert_eq!(model(&ours, "org/alpha")["incomplete_bytes"], 77);
}
