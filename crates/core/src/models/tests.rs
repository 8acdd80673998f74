//! The models module against a hub cache made on disk (`fake.rs`): sizes with shared blobs counted
//! once, completeness, users, removal, and hostile entries.

use super::cache::{self, scan};
use super::fake::{config_json, shard, FakeHub, SHARD1, SHARD2};
use super::remove::{execute, plan};
use super::{list, Live, ModelError};
use crate::config::{parse_settings, Settings};
use mlxbox_api::models::{LocalModel, ModelList};
use std::path::{Path, PathBuf};

const REV1: &str = "1111111111111111111111111111111111111111";
const REV2: &str = "2222222222222222222222222222222222222222";

fn size(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().len()
}

/// `org/alpha`: two revisions sharing config, index and shard 1; `refs/main` → REV2; a partial
/// download. `org/beta`: a link to a missing blob. `org/gamma`: its index lists a shard it lacks.
struct Fixture {
    _dir: tempfile::TempDir,
    hub: FakeHub,
    alpha: [[String; 4]; 2],
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let hub = FakeHub::new(&dir.path().join("hub"));
    let a1 = hub.model("org/alpha", REV1);
    let a2 = hub.model("org/alpha", REV2);
    hub.set_ref("org/alpha", "main", REV2);
    hub.set_ref("org/alpha", "refs/pr/1", REV1);
    std::fs::write(
        hub.repo_dir("org/alpha").join("blobs/deadbeef.incomplete"),
        [0u8; 100],
    )
    .unwrap();
    let b = hub.model("org/beta", REV1);
    let snap = hub.repo_dir("org/beta").join("snapshots").join(REV1);
    std::os::unix::fs::symlink("../../blobs/missing", snap.join("tokenizer.json")).unwrap();
    let _ = b;
    let g = hub.blob(
        "org/gamma",
        super::fake::index_json(&[SHARD1, SHARD2]).as_bytes(),
    );
    let c = hub.blob("org/gamma", config_json(8, 32).as_bytes());
    let s1 = hub.blob("org/gamma", &shard(&[("x", "BF16", &[10, 10])], b""));
    hub.snapshot(
        "org/gamma",
        REV1,
        &[
            ("config.json", &c),
            ("model.safetensors.index.json", &g),
            (SHARD1, &s1),
        ],
    );
    Fixture {
        _dir: dir,
        hub,
        alpha: [a1, a2],
    }
}

fn blob_size(f: &Fixture, id: &str, blob: &str) -> u64 {
    size(&f.hub.repo_dir(id).join("blobs").join(blob))
}

fn settings(text: &str) -> Settings {
    let (s, d) = parse_settings(Path::new("s.toml"), text);
    s.unwrap_or_else(|| panic!("{d:?}"))
}

/// A chat service on `model` reading `hub`, at 8192 tokens of context.
fn using(hub: &Path, model: &str) -> Settings {
    settings(&format!(
        "[services.chat]\nport = 8081\nmodel = \"{model}\"\ncontext_length = 8192\nmax_tokens = 512\nenv = {{ HF_HUB_CACHE = \"{}\" }}\n",
        hub.display()
    ))
}

fn listed(f: &Fixture, s: Option<&Settings>, live: &Live) -> ModelList {
    list(std::slice::from_ref(&f.hub.root), s, live)
}

fn find<'a>(l: &'a ModelList, id: &str) -> &'a LocalModel {
    l.models.iter().find(|m| m.id == id).unwrap()
}

#[test]
fn sizes_count_a_shared_blob_once() {
    let f = fixture();
    let l = listed(&f, None, &Live::default());
    let a = find(&l, "org/alpha");
    let [r1, r2] = &f.alpha;
    let b = |x: &str| blob_size(&f, "org/alpha", x);
    let shared = b(&r1[0]) + b(&r1[1]) + b(&r1[2]);
    assert_eq!(
        r1[0..3],
        r2[0..3],
        "config, index and shard 1 are one blob each"
    );
    assert_eq!(a.size_bytes, shared + b(&r1[3]) + b(&r2[3]));
    assert_eq!(a.incomplete_bytes, 100);
    assert_eq!(a.revisions.len(), 2);
    for r in &a.revisions {
        let own = if r.hash == REV1 { &r1[3] } else { &r2[3] };
        assert_eq!(r.size_bytes, shared + b(own), "{}", r.hash);
        assert_eq!(r.files, 4);
        assert!(r.complete);
    }
    let rev2 = a.revisions.iter().find(|r| r.hash == REV2).unwrap();
    assert_eq!(rev2.refs, ["main"]);
    let rev1 = a.revisions.iter().find(|r| r.hash == REV1).unwrap();
    assert_eq!(rev1.refs, ["refs/pr/1"]);
    assert_eq!(
        l.total_bytes,
        l.models.iter().map(|m| m.size_bytes).sum::<u64>()
    );
    assert_eq!(
        l.unused_bytes, l.total_bytes,
        "no settings: nothing is used"
    );
    // Largest first.
    assert!(l
        .models
        .windows(2)
        .all(|w| w[0].size_bytes >= w[1].size_bytes));
}

#[test]
fn facts_come_from_config_and_headers() {
    let f = fixture();
    let l = listed(&f, None, &Live::default());
    let a = find(&l, "org/alpha");
    assert_eq!(a.architecture.as_deref(), Some("Qwen3ForCausalLM"));
    assert_eq!(a.model_type.as_deref(), Some("qwen3"));
    assert_eq!((a.quant_bits, a.quant_group_size), (Some(4), Some(64)));
    assert_eq!(a.quant_label(), "4-bit/64");
    assert_eq!(a.context_length, Some(40960));
    // Two U32 tensors of 64×8 packed 4-bit values: 2 × 512 × 8.
    assert_eq!(a.parameters, Some(8192));
}

#[test]
fn completeness_partial_broken_and_missing_shards() {
    let f = fixture();
    let l = listed(&f, None, &Live::default());
    let a = find(&l, "org/alpha");
    assert!(!a.complete, "a partial download");
    assert!(
        a.problems.iter().any(|p| p.contains("deadbeef.incomplete")),
        "{:?}",
        a.problems
    );
    let b = find(&l, "org/beta");
    assert!(!b.complete && !b.revisions[0].complete);
    assert!(
        b.problems
            .iter()
            .any(|p| p.contains("tokenizer.json links to a blob that is not there")),
        "{:?}",
        b.problems
    );
    let g = find(&l, "org/gamma");
    assert!(!g.complete);
    assert!(
        g.problems
            .iter()
            .any(|p| p.contains(&format!("the index lists {SHARD2}, which is not there"))),
        "{:?}",
        g.problems
    );
    // A shard that cannot be read: parameters from the index's total_size instead (1000 bytes at
    // 8-bit, group 32: 9 bits per parameter).
    assert_eq!(g.parameters, Some(1000 * 8 / 9));
}

#[test]
fn users_with_the_budget_estimate_and_last_use() {
    let f = fixture();
    let s = using(&f.hub.root, "org/alpha");
    let mut live = Live::default();
    live.states
        .insert("chat".into(), mlxbox_api::service::State::Ready);
    live.last_request_ms.insert("chat".into(), 1234);
    let l = listed(&f, Some(&s), &live);
    let a = find(&l, "org/alpha");
    assert_eq!(a.users.len(), 1);
    let u = &a.users[0];
    assert_eq!(u.service, "chat");
    assert_eq!(u.state, Some(mlxbox_api::service::State::Ready));
    assert_eq!(u.context_tokens, Some(8192));
    // The budget's own figure for the service.
    let e = crate::estimate::estimate_service(&s.services[0], &f.hub.root);
    assert_eq!(u.estimate_bytes, e.total_bytes);
    assert!(e.total_bytes.is_some());
    assert_eq!(a.last_used_ms, Some(1234));
    assert_eq!(l.unused_bytes, l.total_bytes - a.size_bytes);
    assert!(find(&l, "org/beta").users.is_empty());
}

#[test]
fn a_local_path_is_a_model_of_its_own() {
    let d = tempfile::tempdir().unwrap();
    let m = d.path().join("my-model");
    std::fs::create_dir(&m).unwrap();
    std::fs::write(m.join("config.json"), config_json(4, 64)).unwrap();
    std::fs::write(
        m.join("model.safetensors"),
        shard(&[("w", "U32", &[4, 4])], b""),
    )
    .unwrap();
    let s = settings(&format!(
        "[services.chat]\nport = 8081\nmodel = \"{}\"\n",
        m.display()
    ));
    let l = list(&[d.path().join("empty-hub")], Some(&s), &Live::default());
    assert_eq!(l.models.len(), 1, "{l:#?}");
    let p = &l.models[0];
    assert_eq!(p.source, mlxbox_api::models::ModelSource::Path);
    assert_eq!(p.id, m.display().to_string());
    assert_eq!(
        p.size_bytes,
        size(&m.join("config.json")) + size(&m.join("model.safetensors"))
    );
    assert_eq!(p.parameters, Some(16 * 8));
    assert!(p.complete && p.users[0].service == "chat");
}

#[test]
fn rm_is_refused_while_a_service_uses_the_model() {
    let f = fixture();
    let s = using(&f.hub.root, "org/alpha");
    let e = plan(
        std::slice::from_ref(&f.hub.root),
        Some(&s),
        "org/alpha",
        None,
    )
    .unwrap_err();
    assert!(matches!(e, ModelError::InUse { .. }));
    assert!(e.to_string().contains("[services.chat]"), "{e}");
    assert!(f
        .hub
        .repo_dir("org/alpha")
        .join("snapshots")
        .join(REV1)
        .exists());
}

#[test]
fn rm_of_a_revision_frees_exactly_its_unshared_blobs() {
    let f = fixture();
    let hubs = [f.hub.root.clone()];
    let [r1, r2] = &f.alpha;
    let own = blob_size(&f, "org/alpha", &r1[3]);
    let p = plan(&hubs, None, "org/alpha", Some("refs/pr/1")).unwrap();
    assert_eq!(p.revisions, [REV1]);
    assert!(!p.whole);
    assert_eq!(p.blob_bytes(), own);
    assert_eq!(execute(&p).unwrap(), own);
    let dir = f.hub.repo_dir("org/alpha");
    assert!(!dir.join("snapshots").join(REV1).exists());
    assert!(!dir.join("blobs").join(&r1[3]).exists());
    assert!(!dir.join("refs/refs/pr/1").exists());
    for b in r2 {
        assert!(
            dir.join("blobs").join(b).exists(),
            "{b} is still linked from {REV2}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(dir.join("refs/main")).unwrap(),
        REV2
    );
    // What is left lists complete but for the partial download.
    let a = cache::scan_repo("org/alpha", &dir);
    assert_eq!(a.revisions.len(), 1);
    assert!(a.revisions[0].broken.is_empty());
    // The last revision (by a unique prefix): the whole directory goes, the partial download with it.
    let rest: u64 = r2
        .iter()
        .map(|b| blob_size(&f, "org/alpha", b))
        .sum::<u64>()
        + 100;
    let p = plan(&hubs, None, "org/alpha", Some("2222222")).unwrap();
    assert!(p.whole);
    assert_eq!(execute(&p).unwrap(), rest);
    assert!(!dir.exists());
    // Gone: a clear error naming where it looked.
    let e = plan(&hubs, None, "org/alpha", None).unwrap_err();
    assert!(matches!(e, ModelError::NotFound { .. }), "{e}");
}

#[test]
fn rm_of_an_unknown_revision_names_the_ones_there() {
    let f = fixture();
    let e = plan(
        std::slice::from_ref(&f.hub.root),
        None,
        "org/alpha",
        Some("nope"),
    )
    .unwrap_err();
    assert!(
        e.to_string().contains(REV1) && e.to_string().contains("(main)"),
        "{e}"
    );
}

#[test]
fn rm_never_removes_what_a_link_leads_to_outside_the_repository() {
    let f = fixture();
    let outside = f.hub.root.parent().unwrap().join("precious");
    std::fs::write(&outside, b"keep me").unwrap();
    let snap = f.hub.snapshot("org/evil", REV1, &[]);
    std::os::unix::fs::symlink(&outside, snap.join("config.json")).unwrap();
    let p = plan(std::slice::from_ref(&f.hub.root), None, "org/evil", None).unwrap();
    assert!(p.blobs.is_empty());
    execute(&p).unwrap();
    assert_eq!(std::fs::read(&outside).unwrap(), b"keep me");
    assert!(!f.hub.repo_dir("org/evil").exists());
}

#[test]
fn hostile_entries_are_problems_of_their_own() {
    let f = fixture();
    let root = &f.hub.root;
    // Not repositories.
    std::fs::create_dir(root.join("not-a-model")).unwrap();
    std::fs::create_dir(root.join("models--")).unwrap();
    std::fs::create_dir_all(root.join(".locks/models--org--alpha")).unwrap();
    // No snapshots at all.
    std::fs::create_dir(root.join("models--org--empty")).unwrap();
    // A config.json of 50 MB (sparse), one that is not JSON, one that is a FIFO.
    let big = f.hub.blob("org/big", b"");
    let big_path = f.hub.repo_dir("org/big").join("blobs").join(&big);
    std::fs::File::options()
        .write(true)
        .open(&big_path)
        .unwrap()
        .set_len(50 << 20)
        .unwrap();
    f.hub.snapshot("org/big", REV1, &[("config.json", &big)]);
    let junk = f.hub.blob("org/junk", b"{not json");
    f.hub.snapshot("org/junk", REV1, &[("config.json", &junk)]);
    let fifo_snap = f.hub.snapshot("org/fifo", REV1, &[]);
    nix::unistd::mkfifo(
        &fifo_snap.join("config.json"),
        nix::sys::stat::Mode::S_IRWXU,
    )
    .unwrap();
    // A safetensors header that claims 2^60 bytes, a huge ref, a link loop, a file in snapshots/.
    let mut hdr = (1u64 << 60).to_le_bytes().to_vec();
    hdr.extend(b"{}");
    let h = f.hub.blob("org/header", &hdr);
    f.hub
        .snapshot("org/header", REV1, &[("model.safetensors", &h)]);
    f.hub.set_ref("org/header", "main", &"x".repeat(10_000));
    let loop_snap = f.hub.snapshot("org/loop", REV1, &[]);
    std::os::unix::fs::symlink(".", loop_snap.join("self")).unwrap();
    std::fs::write(f.hub.repo_dir("org/loop").join("snapshots/stray"), b"x").unwrap();

    let l = listed(&f, None, &Live::default());
    let problems = |id: &str| find(&l, id).problems.join("\n");
    assert!(
        l.problems.iter().any(|p| p.contains("not-a-model")),
        "{:?}",
        l.problems
    );
    assert!(l
        .problems
        .iter()
        .any(|p| p.ends_with("models--: not a `models--ORG--NAME` directory, not read")));
    assert!(!l.models.iter().any(|m| m.id.contains("locks")));
    assert!(problems("org/empty").contains("no snapshots"));
    assert!(!find(&l, "org/empty").complete);
    assert!(
        problems("org/big").contains("52428800 bytes, more than the 4194304"),
        "{}",
        problems("org/big")
    );
    assert_eq!(
        find(&l, "org/big").size_bytes,
        50 << 20,
        "its size still counts"
    );
    assert!(
        problems("org/junk").contains("is not valid JSON"),
        "{}",
        problems("org/junk")
    );
    assert!(
        problems("org/fifo").contains("not a regular file"),
        "{}",
        problems("org/fifo")
    );
    assert!(
        problems("org/header").contains("safetensors header"),
        "{}",
        problems("org/header")
    );
    assert!(
        problems("org/header").contains("refs/main"),
        "{}",
        problems("org/header")
    );
    assert!(problems("org/loop").contains("snapshots/stray is not a directory"));
    assert_eq!(
        find(&l, "org/loop").revisions[0].files,
        0,
        "a link to a directory is not followed"
    );
}

#[test]
fn ten_thousand_entries_are_listed_not_refused() {
    let d = tempfile::tempdir().unwrap();
    for i in 0..10_000 {
        std::fs::create_dir(d.path().join(format!("models--junk--m{i}"))).unwrap();
    }
    let s = scan(d.path());
    assert_eq!(s.repos.len(), 10_000);
    assert!(s.problems.is_empty());
    assert!(s.repos.iter().all(|r| r.problems.len() == 1));
}

#[test]
fn a_cache_that_does_not_exist_is_empty() {
    let l = list(&[PathBuf::from("/nonexistent/hub")], None, &Live::default());
    assert!(l.models.is_empty() && l.problems.is_empty());
}

#[test]
fn a_hub_named_twice_is_read_once() {
    let f = fixture();
    let alias = f.hub.root.parent().unwrap().join("alias");
    std::os::unix::fs::symlink(&f.hub.root, &alias).unwrap();
    let text = format!(
        "[services.a]\nport = 8081\nmodel = \"org/alpha\"\nenv = {{ HF_HUB_CACHE = \"{}\" }}\n\
         [services.b]\nport = 8082\nmodel = \"org/alpha\"\nenv = {{ HF_HUB_CACHE = \"{}\" }}\n",
        f.hub.root.display(),
        alias.display()
    );
    let s = settings(&text);
    let hubs = super::list::hubs(Some(&s));
    let ours: Vec<_> = hubs
        .iter()
        .filter(|h| h.starts_with(f.hub.root.parent().unwrap()))
        .collect();
    assert_eq!(ours, [&f.hub.root], "{hubs:?}");
    let l = list(&hubs, Some(&s), &Live::default());
    let users: Vec<&str> = find(&l, "org/alpha")
        .users
        .iter()
        .map(|u| u.service.as_str())
        .collect();
    assert_eq!(users, ["a", "b"]);
}
