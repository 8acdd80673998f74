//! `mlx-box models pull` with the real binary against a local Hub stand-in (no internet): an axum
//! server with the info and resolve routes (ETag, X-Repo-Commit, X-Linked-Etag / X-Linked-Size, `Range`),
//! a rate-limited mode and failing ones (401, 404, a cut mid-body, a stall, corrupt bytes), and a log
//! of every request with the bytes it was sent. It serves repositories made by the test.

mod common;

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use common::BIN;
use mlxbox_core::models::fake;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const COMMIT_TINY: &str = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1";
const COMMIT_HUGE: &str = "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2";
const BIG: &str = "model-00001-of-00002.safetensors";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Normal,
    /// Bytes per second for every file body.
    Rate(u64),
    /// The first body of a `.safetensors` file stops after this fraction and the connection drops.
    CutAt(f64),
    /// Bodies of `.safetensors` files stop after this fraction and never end.
    StallAt(f64),
    /// `.safetensors` bodies have one byte changed (same length).
    Corrupt,
    /// `Range` ignored: the whole file, 200 (a server or proxy that cannot resume).
    NoRange,
}

struct File {
    path: String,
    bytes: Vec<u8>,
    lfs: bool,
}

impl File {
    fn sha256(&self) -> String {
        hex(&Sha256::digest(&self.bytes))
    }
    /// The git blob id stand-in of a regular file (any 40 hex digits name a blob).
    fn blob_id(&self) -> String {
        self.sha256()[..40].to_string()
    }
    fn etag(&self) -> String {
        if self.lfs {
            self.sha256()
        } else {
            self.blob_id()
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

struct Logged {
    path: String,
    range: Option<String>,
    sent: Arc<AtomicU64>,
}

struct Hub {
    repos: BTreeMap<String, (String, Vec<File>)>,
    mode: Mutex<Mode>,
    cut_done: Mutex<bool>,
    log: Mutex<Vec<Logged>>,
    port: Mutex<Option<u16>>,
    token_leaked: Mutex<bool>,
}

struct StandIn {
    url: String,
    hub: Arc<Hub>,
    _rt: tokio::runtime::Runtime,
}

impl StandIn {
    fn start() -> StandIn {
        Self::with(vec![])
    }

    /// The two test repositories and `extra` (id, commit, files).
    fn with(extra: Vec<(String, String, Vec<File>)>) -> StandIn {
        let mut repos = BTreeMap::new();
        for (id, commit, files) in extra {
            repos.insert(id, (commit, files));
        }
        repos.insert("org/tiny".to_string(), (COMMIT_TINY.to_string(), tiny()));
        repos.insert("org/huge".to_string(), (COMMIT_HUGE.to_string(), huge()));
        let hub = Arc::new(Hub {
            repos,
            mode: Mutex::new(Mode::Normal),
            cut_done: Mutex::new(false),
            log: Mutex::new(vec![]),
            port: Mutex::new(None),
            token_leaked: Mutex::new(false),
        });
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let app = axum::Router::new()
            .route(
                "/api/models/{org}/{name}/revision/{rev}",
                axum::routing::get(info),
            )
            .route(
                "/{org}/{name}/resolve/{rev}/{*path}",
                axum::routing::get(resolve),
            )
            .route("/cdn/{sha}/{*path}", axum::routing::get(cdn))
            .with_state(hub.clone());
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        *hub.port.lock().unwrap() = Some(addr.port());
        let url = format!("http://{addr}");
        rt.spawn(async move { axum::serve(listener, app).await });
        StandIn { url, hub, _rt: rt }
    }

    fn set(&self, m: Mode) {
        *self.hub.mode.lock().unwrap() = m;
    }

    /// Every request's path so far.
    fn paths(&self) -> Vec<String> {
        self.hub
            .log
            .lock()
            .unwrap()
            .iter()
            .map(|l| l.path.clone())
            .collect()
    }

    /// Bytes sent of file `name` over every request, and the ranges asked.
    fn sent(&self, name: &str) -> (u64, Vec<Option<String>>) {
        let log = self.hub.log.lock().unwrap();
        let mine: Vec<&Logged> = log.iter().filter(|l| l.path.ends_with(name)).collect();
        (
            mine.iter().map(|l| l.sent.load(Ordering::SeqCst)).sum(),
            mine.iter().map(|l| l.range.clone()).collect(),
        )
    }

    fn file(&self, id: &str, path: &str) -> (String, u64) {
        let f = self.hub.repos[id]
            .1
            .iter()
            .find(|f| f.path == path)
            .unwrap();
        (f.etag(), f.bytes.len() as u64)
    }
}

/// `org/tiny`: a quantized Qwen3-style model, a 1 MiB shard and a small one, index, tokenizer files.
fn tiny() -> Vec<File> {
    let f = |path: &str, bytes: Vec<u8>, lfs| File {
        path: path.into(),
        bytes,
        lfs,
    };
    vec![
        f("config.json", fake::config_json(4, 64).into_bytes(), false),
        f(
            "model.safetensors.index.json",
            fake::index_json(&[BIG, fake::SHARD2]).into_bytes(),
            false,
        ),
        f(
            BIG,
            fake::shard(&[("a.weight", "U32", &[256, 1024])], b"one"),
            true,
        ),
        f(
            fake::SHARD2,
            fake::shard(&[("b.weight", "U32", &[64, 8])], b"two"),
            true,
        ),
        f("tokenizer.json", br#"{"version": "1.0"}"#.to_vec(), false),
        f("tokenizer_config.json", b"{}".to_vec(), false),
        f("extra/notes.txt", b"nested".to_vec(), false),
    ]
}

/// `org/huge`: a config of Llama-3-70B's shape and an index saying 141 GB of tensors; the shard
/// itself is tiny (the fit check must refuse before asking for it).
fn huge() -> Vec<File> {
    let config = json!({"architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "num_hidden_layers": 80, "num_attention_heads": 64, "num_key_value_heads": 8,
        "head_dim": 128, "hidden_size": 8192, "max_position_embeddings": 131072,
        "torch_dtype": "bfloat16"});
    let index = json!({"metadata": {"total_size": 141_107_412_992u64},
        "weight_map": {"a.weight": "model.safetensors"}});
    vec![
        File {
            path: "config.json".into(),
            bytes: config.to_string().into_bytes(),
            lfs: false,
        },
        File {
            path: "model.safetensors.index.json".into(),
            bytes: index.to_string().into_bytes(),
            lfs: false,
        },
        File {
            path: "model.safetensors".into(),
            bytes: fake::shard(&[("a.weight", "U32", &[8, 8])], b""),
            lfs: true,
        },
    ]
}

fn log(hub: &Hub, path: String, range: Option<String>) -> Arc<AtomicU64> {
    let sent = Arc::new(AtomicU64::new(0));
    hub.log.lock().unwrap().push(Logged {
        path,
        range,
        sent: sent.clone(),
    });
    sent
}

/// A refusal as the Hub makes it: the status and `X-Error-Code`.
fn refuse(id: &str) -> Option<Response> {
    let (status, code) = match id {
        "org/gated" => (StatusCode::UNAUTHORIZED, "GatedRepo"),
        _ => (StatusCode::NOT_FOUND, "RepoNotFound"),
    };
    Some(
        (
            status,
            [("x-error-code", code)],
            format!("{{\"error\": \"{code}\"}}"),
        )
            .into_response(),
    )
}

async fn info(
    State(hub): State<Arc<Hub>>,
    UrlPath((org, name, rev)): UrlPath<(String, String, String)>,
) -> Response {
    let id = format!("{org}/{name}");
    log(&hub, format!("/api/models/{id}/revision/{rev}"), None);
    let Some((commit, files)) = hub.repos.get(&id) else {
        return refuse(&id).unwrap();
    };
    if rev != "main" && &rev != commit {
        return (
            StatusCode::NOT_FOUND,
            [("x-error-code", "RevisionNotFound")],
            "",
        )
            .into_response();
    }
    let siblings: Vec<Value> = files
        .iter()
        .map(|f| {
            let mut s = json!({"rfilename": f.path, "size": f.bytes.len(), "blobId": f.blob_id()});
            if f.lfs {
                s["lfs"] = json!({"sha256": f.sha256(), "size": f.bytes.len(), "pointerSize": 134});
            }
            s
        })
        .collect();
    axum::Json(json!({"id": id, "sha": commit, "siblings": siblings})).into_response()
}

async fn resolve(
    State(hub): State<Arc<Hub>>,
    UrlPath((org, name, rev, path)): UrlPath<(String, String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let id = format!("{org}/{name}");
    let range = headers
        .get("range")
        .and_then(|r| r.to_str().ok())
        .map(String::from);
    let sent = log(&hub, format!("/{id}/resolve/{rev}/{path}"), range.clone());
    let Some((commit, files)) = hub.repos.get(&id) else {
        return refuse(&id).unwrap();
    };
    let Some(f) = files.iter().find(|f| f.path == path) else {
        return (
            StatusCode::NOT_FOUND,
            [("x-error-code", "EntryNotFound")],
            "",
        )
            .into_response();
    };
    if f.lfs {
        // As the Hub does: an LFS file is a redirect to its CDN (here another host name for the same
        // server), the blob's name and size in `X-Linked-*`.
        let port = hub.port.lock().unwrap().unwrap_or(0);
        return Response::builder()
            .status(StatusCode::FOUND)
            .header(
                "location",
                format!("http://localhost:{port}/cdn/{}/{path}", f.sha256()),
            )
            .header("x-repo-commit", commit.as_str())
            .header("x-linked-etag", format!("\"{}\"", f.sha256()))
            .header("x-linked-size", f.bytes.len().to_string())
            .header("etag", format!("\"{}\"", f.blob_id()))
            .body(Body::empty())
            .unwrap();
    }
    serve(&hub, commit, f, range, sent)
}

/// The CDN: an LFS blob by its sha256 (the file's name after it, for the log).
async fn cdn(
    State(hub): State<Arc<Hub>>,
    UrlPath((sha, path)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let range = headers
        .get("range")
        .and_then(|r| r.to_str().ok())
        .map(String::from);
    let sent = log(&hub, format!("/cdn/{sha}/{path}"), range.clone());
    if headers.contains_key("authorization") {
        // The token is the Hub's, never the CDN's.
        *hub.token_leaked.lock().unwrap() = true;
    }
    let found = hub
        .repos
        .values()
        .flat_map(|(c, fs)| fs.iter().map(move |f| (c, f)))
        .find(|(_, f)| f.lfs && f.sha256() == sha);
    match found {
        Some((commit, f)) => serve(&hub, commit, f, range, sent),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// A file's bytes in the current mode, from the `Range` asked.
fn serve(
    hub: &Hub,
    commit: &str,
    f: &File,
    range: Option<String>,
    sent: Arc<AtomicU64>,
) -> Response {
    let len = f.bytes.len() as u64;
    let from = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<u64>().ok())
        .filter(|&n| n < len);
    let mode = *hub.mode.lock().unwrap();
    let from = from.filter(|_| mode != Mode::NoRange);
    let mut body = f.bytes[from.unwrap_or(0) as usize..].to_vec();
    let weights = f.path.ends_with(".safetensors");
    if mode == Mode::Corrupt && weights {
        let last = body.len() - 1;
        body[last] ^= 0xff;
    }
    // Where the body stops (a cut or a stall), counted from the file's start.
    let stop = match mode {
        Mode::CutAt(x) | Mode::StallAt(x) if weights => {
            let mut done = hub.cut_done.lock().unwrap();
            if matches!(mode, Mode::CutAt(_)) && *done {
                None
            } else {
                *done = true;
                Some((len as f64 * x) as u64)
            }
        }
        _ => None,
    };
    let rate = match mode {
        Mode::Rate(r) => Some(r),
        _ => None,
    };
    let start = from.unwrap_or(0);
    let stream = async_stream(
        body,
        start,
        stop,
        rate,
        matches!(mode, Mode::StallAt(_)),
        sent,
    );
    let mut r = Response::builder()
        .status(if from.is_some() {
            StatusCode::PARTIAL_CONTENT
        } else {
            StatusCode::OK
        })
        .header("x-repo-commit", commit)
        .header("accept-ranges", "bytes")
        .header("content-length", (len - start).to_string())
        .header("etag", format!("\"{}\"", f.blob_id()));
    if f.lfs {
        r = r
            .header("x-linked-etag", format!("\"{}\"", f.sha256()))
            .header("x-linked-size", len.to_string());
    }
    if from.is_some() {
        r = r.header("content-range", format!("bytes {start}-{}/{len}", len - 1));
    }
    r.body(Body::from_stream(stream)).unwrap()
}

/// The body in 16 KiB chunks from `start`; at `stop` (a file offset) it ends in an error (the
/// connection drops) or, `stall`, never ends.
fn async_stream(
    body: Vec<u8>,
    start: u64,
    stop: Option<u64>,
    rate: Option<u64>,
    stall: bool,
    sent: Arc<AtomicU64>,
) -> impl futures_util::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    const CHUNK: usize = 16 << 10;
    futures_util::stream::unfold(
        (body, 0usize, start, false),
        move |(body, at, offset, ended)| {
            let sent = sent.clone();
            async move {
                if ended {
                    return None;
                }
                if stop.is_some_and(|s| offset >= s) {
                    if stall {
                        std::future::pending::<()>().await;
                    }
                    let cut = Err(std::io::Error::other("cut"));
                    return Some((cut, (body, at, offset, true)));
                }
                if at >= body.len() {
                    return None;
                }
                let mut n = CHUNK.min(body.len() - at);
                if let Some(s) = stop {
                    n = n.min((s - offset) as usize);
                }
                if let Some(r) = rate {
                    tokio::time::sleep(Duration::from_secs_f64(n as f64 / r as f64)).await;
                }
                let chunk = body[at..at + n].to_vec();
                sent.fetch_add(n as u64, Ordering::SeqCst);
                Some((Ok(chunk), (body, at + n, offset + n as u64, false)))
            }
        },
    )
}

fn pull(s: &StandIn, cache: &Path, dir: &Path, args: &[&str]) -> Output {
    pull_cmd(s, cache, dir, args).output().unwrap()
}

fn pull_cmd(s: &StandIn, cache: &Path, dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(["models", "pull", "--quiet"])
        .args(args)
        .arg("--state-dir")
        .arg(dir.join("no-daemon"))
        .env("HF_HUB_CACHE", cache)
        .env("HF_ENDPOINT", &s.url)
        .env("HF_TOKEN", "hf_test")
        .env_remove("HF_HOME");
    if !args.contains(&"--config") {
        c.args(["--config", "/nonexistent.toml"]);
    }
    c
}

/// What the pull said (echoed: the test's log shows each message as an operator reads it).
fn text(o: &Output) -> String {
    let t = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    eprintln!("--- mlx-box models pull:\n{t}");
    t
}

fn repo_dir(cache: &Path, id: &str) -> PathBuf {
    cache.join(format!("models--{}", id.replace('/', "--")))
}

fn listed(cache: &Path, dir: &Path) -> Value {
    let o = Command::new(BIN)
        .args(["models", "--json", "--config", "/nonexistent.toml"])
        .arg("--state-dir")
        .arg(dir.join("no-daemon"))
        .env("HF_HUB_CACHE", cache)
        .output()
        .unwrap();
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o)))
}

#[test]
fn a_pull_lays_out_the_cache_as_huggingface_hub_does() {
    let s = StandIn::start();
    let d = tempfile::tempdir().unwrap();
    let cache = d.path().join("hub");
    let o = pull(&s, &cache, d.path(), &["org/tiny"]);
    assert!(o.status.success(), "{}", text(&o));
    let repo = repo_dir(&cache, "org/tiny");
    assert_eq!(
        std::fs::read_to_string(repo.join("refs/main")).unwrap(),
        COMMIT_TINY
    );
    let snap = repo.join("snapshots").join(COMMIT_TINY);
    for f in tiny() {
        let link = std::fs::read_link(snap.join(&f.path)).unwrap();
        let up = "../".repeat(f.path.matches('/').count() + 2);
        assert_eq!(
            link,
            PathBuf::from(format!("{up}blobs/{}", f.etag())),
            "{}",
            f.path
        );
        assert_eq!(
            std::fs::read(snap.join(&f.path)).unwrap(),
            f.bytes,
            "{}",
            f.path
        );
    }
    assert!(
        !*s.hub.token_leaked.lock().unwrap(),
        "the Hub token was sent to the CDN"
    );
    assert!(s.paths().iter().any(|p| p.starts_with("/cdn/")));
    let incomplete: Vec<_> = std::fs::read_dir(repo.join("blobs"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".incomplete"))
        .collect();
    assert!(incomplete.is_empty());
    let l = listed(&cache, d.path());
    let m = &l["models"][0];
    assert_eq!(m["id"], "org/tiny", "{l:#}");
    assert_eq!(m["complete"], true, "{l:#}");
    assert_eq!(m["quant_bits"], 4, "{l:#}");

    // Again: nothing is fetched (the blobs are there), the layout is the same.
    let before = s.paths().len();
    let o = pull(&s, &cache, d.path(), &["org/tiny"]);
    assert!(o.status.success(), "{}", text(&o));
    let again: Vec<String> = s.paths()[before..].to_vec();
    assert!(
        again.iter().all(|p| !p.ends_with(".safetensors")),
        "{again:?}"
    );

    // --include / --exclude, into another cache.
    let other = d.path().join("hub2");
    let o = pull(
        &s,
        &other,
        d.path(),
        &["org/tiny", "--include", "*.json", "--exclude", "tokenizer*"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let snap2 = repo_dir(&other, "org/tiny")
        .join("snapshots")
        .join(COMMIT_TINY);
    let mut names: Vec<String> = std::fs::read_dir(&snap2)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["config.json", "model.safetensors.index.json"]);

    // What huggingface_hub itself reads offline (the demo environment's, pinned).
    if std::env::var_os("MLXBOX_SKIP_PYTHON").is_some() {
        return;
    }
    let env = common::demo_env();
    let code = r#"
import json, os, sys
from huggingface_hub import snapshot_download, scan_cache_dir
p = snapshot_download("org/tiny", cache_dir=sys.argv[1], local_files_only=True)
files = sorted(os.path.relpath(os.path.join(d, f), p) for d, _, fs in os.walk(p) for f in fs)
info = scan_cache_dir(sys.argv[1])
print(json.dumps({"path": p, "files": files, "size": info.size_on_disk,
                  "warnings": [str(w) for w in info.warnings]}))
"#;
    let hf = common::python_json(&env.python, code, &[cache.to_str().unwrap()]);
    assert_eq!(hf["path"], snap.to_str().unwrap(), "{hf:#}");
    let mut want: Vec<String> = tiny().iter().map(|f| f.path.clone()).collect();
    want.sort();
    assert_eq!(hf["files"], json!(want), "{hf:#}");
    assert_eq!(hf["warnings"], json!([]), "{hf:#}");
    let total: usize = tiny().iter().map(|f| f.bytes.len()).sum();
    assert_eq!(hf["size"], total, "{hf:#}");
}

#[test]
fn a_killed_pull_continues_where_it_stopped() {
    let s = StandIn::start();
    let d = tempfile::tempdir().unwrap();
    let cache = d.path().join("hub");
    let (etag, size) = s.file("org/tiny", BIG);
    let partial = repo_dir(&cache, "org/tiny").join(format!("blobs/{etag}.incomplete"));
    // 512 KiB/s: the 1 MiB shard takes 2 s; the pull is killed past half of it.
    s.set(Mode::Rate(512 << 10));
    let mut child = pull_cmd(&s, &cache, d.path(), &["org/tiny"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    loop {
        let have = std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
        if have >= size / 2 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no progress: {have}"
        );
        assert!(child.try_wait().unwrap().is_none(), "the pull ended first");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let kept = std::fs::metadata(&partial).unwrap().len();
    assert!(kept < size, "{kept}");
    assert!(!repo_dir(&cache, "org/tiny").join("snapshots").exists());

    s.set(Mode::Normal);
    let o = pull(&s, &cache, d.path(), &["org/tiny"]);
    assert!(o.status.success(), "{}", text(&o));
    let (sent, ranges) = s.sent(BIG);
    assert!(
        sent as f64 <= 1.1 * size as f64,
        "{sent} bytes sent for a file of {size}"
    );
    assert_eq!(
        ranges.last().unwrap().as_deref(),
        Some(&*format!("bytes={kept}-"))
    );
    let blob = repo_dir(&cache, "org/tiny").join("blobs").join(&etag);
    assert_eq!(hex(&Sha256::digest(std::fs::read(blob).unwrap())), etag);
}

#[test]
fn a_cut_a_stall_and_corrupt_bytes_leave_nothing_in_snapshots() {
    let s = StandIn::start();
    let d = tempfile::tempdir().unwrap();
    let (etag, size) = s.file("org/tiny", BIG);
    let snapshots = |c: &Path| repo_dir(c, "org/tiny").join("snapshots");

    // Cut at half: a clear error, the partial blob kept, then the rest only.
    let cache = d.path().join("cut");
    s.set(Mode::CutAt(0.5));
    let o = pull(&s, &cache, d.path(), &["org/tiny"]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("run the pull again") || text(&o).contains("continues"),
        "{}",
        text(&o)
    );
    assert!(!snapshots(&cache).exists(), "{}", text(&o));
    s.set(Mode::Normal);
    let o = pull(&s, &cache, d.path(), &["org/tiny"]);
    assert!(o.status.success(), "{}", text(&o));
    let (sent, _) = s.sent(BIG);
    assert!(sent as f64 <= 1.1 * size as f64, "{sent} of {size}");

    // Cut again, then a server that ignores `Range`: the partial file is started over, not appended to.
    let cache = d.path().join("norange");
    *s.hub.cut_done.lock().unwrap() = false;
    s.set(Mode::CutAt(0.5));
    let o = pull(&s, &cache, d.path(), &["org/tiny"]);
    assert!(!o.status.success());
    s.set(Mode::NoRange);
    let o = pull(&s, &cache, d.path(), &["org/tiny"]);
    assert!(o.status.success(), "{}", text(&o));
    let blob = repo_dir(&cache, "org/tiny").join("blobs").join(&etag);
    assert_eq!(std::fs::metadata(&blob).unwrap().len(), size);

    // A stall: named after --read-timeout, nothing placed.
    let cache = d.path().join("stall");
    s.set(Mode::StallAt(0.3));
    let o = pull(&s, &cache, d.path(), &["org/tiny", "--read-timeout", "1"]);
    assert!(!o.status.success());
    // The timeout asked for is the one that ended it (not a clock reading: this machine's speed is not
    // the point).
    assert!(
        text(&o).contains("sent nothing for 1 s (stalled)"),
        "{}",
        text(&o)
    );
    assert!(!snapshots(&cache).exists());

    // Corrupt bytes: refused by the sha256, neither placed nor kept.
    let cache = d.path().join("corrupt");
    s.set(Mode::Corrupt);
    let o = pull(&s, &cache, d.path(), &["org/tiny"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("sha256"), "{}", text(&o));
    let blobs = repo_dir(&cache, "org/tiny").join("blobs");
    assert!(!blobs.join(&etag).exists());
    assert!(!blobs.join(format!("{etag}.incomplete")).exists());
    assert!(!snapshots(&cache).exists());
}

#[test]
fn a_missing_or_gated_repository_says_what_to_do() {
    let s = StandIn::start();
    let d = tempfile::tempdir().unwrap();
    let cache = d.path().join("hub");
    let o = pull(&s, &cache, d.path(), &["org/missing"]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains(&format!("no repository org/missing on {}", s.url))
            && text(&o).contains("check the id"),
        "{}",
        text(&o)
    );
    let o = pull_cmd(&s, &cache, d.path(), &["org/gated"])
        .env_remove("HF_TOKEN")
        .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent")
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        text(&o).contains("org/gated is gated") && text(&o).contains("mlx-box models login"),
        "{}",
        text(&o)
    );
    let o = pull(&s, &cache, d.path(), &["org/tiny@nope"]);
    assert!(text(&o).contains("no revision `nope`"), "{}", text(&o));
    assert!(
        !cache.exists()
            || std::fs::read_dir(&cache)
                .unwrap()
                .flatten()
                .all(|e| { !e.path().join("snapshots").exists() })
    );
}

#[test]
fn a_model_that_cannot_fit_is_refused_before_its_weights_are_asked_for() {
    let s = StandIn::start();
    let d = tempfile::tempdir().unwrap();
    let cache = d.path().join("hub");
    let config = d.path().join("settings.toml");
    // A service names it: the KV at its context counts too (80 layers × 8 KV heads × 128 × 2 × 2 B
    // = 320 KiB a token: 10 GiB at 32,768 tokens).
    std::fs::write(
        &config,
        "[app]\nmemory_budget_gb = 1\n\n[services.big]\nkind = \"chat\"\nmodel = \"org/huge\"\nport = 41999\ncontext_length = 32768\n",
    )
    .unwrap();
    let o = pull(
        &s,
        &cache,
        d.path(),
        &["org/huge", "--config", config.to_str().unwrap()],
    );
    assert!(!o.status.success());
    let t = text(&o);
    assert!(
        t.contains("org/huge needs")
            && t.contains("at service `big`'s context (32768 tokens × 1: KV 10.0 GB)")
            && t.contains("[app] memory_budget_gb")
            && t.contains("--force"),
        "{t}"
    );
    let paths = s.paths();
    assert!(
        paths.iter().all(|p| !p.ends_with(".safetensors")),
        "{paths:?}"
    );
    assert!(!repo_dir(&cache, "org/huge").join("snapshots").exists());

    // --force fetches it anyway.
    let o = pull(
        &s,
        &cache,
        d.path(),
        &["org/huge", "--force", "--config", config.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(repo_dir(&cache, "org/huge")
        .join("snapshots")
        .join(COMMIT_HUGE)
        .join("model.safetensors")
        .exists());
}

/// A full disk (a 512 KiB tmpfs; skipped where it cannot be mounted): refused before the download by
/// the free-space check, and with `--force` named when a write fails, nothing in `snapshots/`.
#[test]
fn a_full_disk_is_refused_before_and_named_during() {
    let d = tempfile::tempdir().unwrap();
    let mnt = d.path().join("small");
    std::fs::create_dir_all(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=512k", "tmpfs"])
        .arg(&mnt)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipped: cannot mount a tmpfs here (not root, or not Linux)");
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mnt.clone());
    let s = StandIn::start();
    let cache = mnt.join("hub");
    let o = pull(&s, &cache, d.path(), &["org/tiny"]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("more on disk") && text(&o).contains("--force"),
        "{}",
        text(&o)
    );
    assert!(s.paths().iter().all(|p| !p.ends_with(".safetensors")));
    let o = pull(&s, &cache, d.path(), &["org/tiny", "--force"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("the disk is full"), "{}", text(&o));
    assert!(!repo_dir(&cache, "org/tiny").join("snapshots").exists());
}

/// What a pull placed is what `mlx_lm server` runs with `HF_HUB_OFFLINE=1`: the demo's tiny chat
/// model, served by the stand-in as `org/chat`, pulled, then asked for a chat answer.
#[test]
fn mlx_lm_serves_a_model_mlx_box_pulled_offline() {
    if std::env::var_os("MLXBOX_SKIP_PYTHON").is_some() {
        return;
    }
    let env = common::demo_env();
    let dir = env.models.join("chat");
    let mut files: Vec<File> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| {
            let path = e.file_name().to_string_lossy().into_owned();
            File {
                lfs: path.ends_with(".safetensors"),
                bytes: std::fs::read(e.path()).unwrap(),
                path,
            }
        })
        .collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let commit = "c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3";
    let s = StandIn::with(vec![("org/chat".into(), commit.into(), files)]);
    let d = tempfile::tempdir().unwrap();
    let cache = d.path().join("hub");
    let o = pull(&s, &cache, d.path(), &["org/chat"]);
    assert!(o.status.success(), "{}", text(&o));

    let port = common::free_port();
    let mut server = Command::new(&env.python)
        .args([
            "-m",
            "mlx_lm",
            "server",
            "--model",
            "org/chat",
            "--host",
            "127.0.0.1",
        ])
        .args(["--port", &port.to_string()])
        .env("HF_HUB_CACHE", &cache)
        .env("HF_HUB_OFFLINE", "1")
        .env_remove("HF_HOME")
        .env_remove("HF_ENDPOINT")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(d.path().join("server.log")).unwrap())
        .spawn()
        .unwrap();
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let guard = Kill(&mut server);
    let code = r#"
import json, sys, time, urllib.request
url = f"http://127.0.0.1:{sys.argv[1]}/v1/chat/completions"
body = json.dumps({"model": "org/chat", "max_tokens": 8,
                   "messages": [{"role": "user", "content": "hi"}]}).encode()
deadline = time.time() + 120
while True:
    try:
        req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            print(json.dumps(json.load(r)))
            break
    except Exception as e:
        if time.time() > deadline:
            raise
        time.sleep(0.5)
"#;
    let out = Command::new(&env.python)
        .args(["-c", code, &port.to_string()])
        .output()
        .unwrap();
    drop(guard);
    let log = std::fs::read_to_string(d.path().join("server.log")).unwrap_or_default();
    assert!(
        out.status.success(),
        "{}\nserver log:\n{log}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(answer["choices"][0]["message"].is_object(), "{answer:#}");
}
