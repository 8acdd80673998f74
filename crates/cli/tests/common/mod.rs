//! A real `mlx-box up` in a temp state dir, driven through the CLI. Every process a test starts is
//! stopped when the harness drops: the daemon by SIGTERM (it stops its services), then SIGKILL of the
//! daemon and of every process group listed in its state file, whatever happened.
#![allow(dead_code)]

pub mod netns;
pub mod ports;

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_mlx-box");

pub fn fault_server() -> String {
    format!(
        "{}/../../python/fault_server.py",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// `mlx-box ARGS` against `d`'s state dir with `input` on stdin.
pub fn cli_stdin(d: &Daemon, args: &[&str], input: &str) -> Output {
    let mut c = Command::new(BIN)
        .args(args)
        .arg("--state-dir")
        .arg(&d.state)
        .envs(keyring_env())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut c.stdin.take().unwrap(), input.as_bytes()).unwrap();
    c.wait_with_output().unwrap()
}

/// Tiny models for the OCR, text-to-speech and speech-to-text services, made locally from the
/// libraries' own model classes with random weights (python/make_tiny_*.py) in the demo's environment,
/// which has mlx-vlm and mlx-audio among its test packages. Made once per content of the scripts.
pub struct MediaModels {
    pub env: mlxbox_core::demo::DemoEnv,
    pub vlm: PathBuf,
    pub whisper: PathBuf,
    pub tts: PathBuf,
}

pub fn media_models() -> MediaModels {
    let env = demo_env();
    let python_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../python");
    let scripts = [
        ("vlm", "make_tiny_vlm.py"),
        ("whisper", "make_tiny_whisper.py"),
        ("tts", "make_tiny_tts.py"),
    ];
    let mut text = std::fs::read(python_dir.join("byte_level.py")).unwrap();
    for (_, s) in scripts {
        text.extend(std::fs::read(python_dir.join(s)).unwrap());
    }
    let key = &mlxbox_core::config::content_hash(&text)[..12];
    let dir = env.dir.join(format!("media-{key}"));
    std::fs::create_dir_all(&dir).unwrap();
    // Tests in parallel: the first makes them, the others wait on the lock.
    let lock = std::fs::File::create(dir.join(".lock")).unwrap();
    lock.lock().unwrap();
    if !dir.join("READY").exists() {
        for (name, script) in scripts {
            let out = Command::new(&env.python)
                .arg(python_dir.join(script))
                .arg(dir.join(name))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{script}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::fs::write(dir.join("READY"), key).unwrap();
    }
    drop(lock);
    MediaModels {
        vlm: dir.join("vlm"),
        whisper: dir.join("whisper"),
        tts: dir.join("tts"),
        env,
    }
}

/// `mlx-box ARGS --json` against `d`: its exit code and the JSON it printed.
pub fn cli_json(d: &Daemon, args: &[&str]) -> (i32, Value) {
    let out = d.cli(args);
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?}: {e}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), v)
}

/// Runs `python -c CODE ARGS…` (offline: no hub) and reads the JSON it prints.
pub fn python_json(python: &Path, code: &str, args: &[&str]) -> Value {
    let out = Command::new(python)
        .args(["-c", code])
        .args(args)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The demo's environment (a venv with mlx-lm and the tiny models), cached in MLXBOX_CACHE_DIR (the
/// repository's target/mlxbox-cache unless set).
pub fn demo_env() -> mlxbox_core::demo::DemoEnv {
    if std::env::var_os("MLXBOX_CACHE_DIR").is_none() {
        let dflt = format!("{}/../../target/mlxbox-cache", env!("CARGO_MANIFEST_DIR"));
        // SAFETY: set before any thread of this test reads the environment.
        unsafe { std::env::set_var("MLXBOX_CACHE_DIR", dflt) };
    }
    mlxbox_core::demo::ensure_env(&|m| eprintln!("demo env: {m}")).unwrap()
}

#[allow(unused_imports)] // each test binary uses its share
pub use ports::free_port;

pub fn port_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// A `[services.NAME]` table running the fault server in `mode`.
pub fn fault_service(name: &str, port: u16, mode: &str, extra: &str) -> String {
    format!(
        "[services.{name}]\nkind = \"command\"\nport = {port}\nprobe = \"chat\"\ncommand = [\"python3\", \"{}\", \"--mode\", \"{mode}\", \"--host\", \"{{host}}\", \"--port\", \"{{port}}\"]\n{extra}\n",
        fault_server()
    )
}

pub struct Daemon {
    pub child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub state: PathBuf,
    /// The network namespace it runs in (`ip netns exec`), for the multi-host tests.
    pub netns: Option<String>,
    /// Environment of the daemon beyond the harness's own (tests/power.rs: its private system bus).
    pub env: Vec<(String, String)>,
    /// No D-Bus at all for the daemon and the CLI: the session bus a socket that does not exist, no
    /// system bus (a headless box, an SSH session, a macOS LaunchDaemon before login).
    pub no_dbus: bool,
}

/// The system bus every test daemon sees unless a test gives it one of its own: none, so that no test
/// takes a lock against sleep on the machine that runs it (`[app] prevent_sleep`).
pub const NO_SYSTEM_BUS: &str = "unix:path=/nonexistent/mlx-box-test/system_bus_socket";

impl Daemon {
    pub fn start(config_text: &str) -> Daemon {
        Self::start_with(config_text, None)
    }

    /// `mlx-box up --demo` in a temp state dir, answering. The first run on a machine makes the Python env and
    /// trains the tiny models (cached in MLXBOX_CACHE_DIR, default target/mlxbox-cache): allow for it.
    pub fn start_demo() -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let cache = std::env::var("MLXBOX_CACHE_DIR").unwrap_or_else(|_| {
            format!("{}/../../target/mlxbox-cache", env!("CARGO_MANIFEST_DIR"))
        });
        let log = std::fs::File::create(dir.path().join("daemon-demo.log")).unwrap();
        let child = Command::new(BIN)
            .args(["up", "--demo", "--state-dir"])
            .arg(&state)
            .env("MLXBOX_CACHE_DIR", &cache)
            .env("DBUS_SYSTEM_BUS_ADDRESS", NO_SYSTEM_BUS)
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap();
        let mut d = Daemon {
            child: Some(child),
            dir,
            config: state.join("demo/settings.toml"),
            state,
            netns: None,
            env: vec![],
            no_dbus: false,
        };
        let up = wait_until(Duration::from_secs(900), || {
            if let Ok(Some(st)) = d.child.as_mut().unwrap().try_wait() {
                panic!("daemon exited ({st}):\n{}", d.daemon_log());
            }
            d.cli(&["status", "--json"]).status.success()
        });
        assert!(up, "{}", d.daemon_log());
        d
    }

    /// A daemon whose open-files limit (soft and hard, as `ulimit -n N` sets them) is `nofile`.
    pub fn start_with_fd_limit(config_text: &str, nofile: u64) -> Daemon {
        Self::start_with(config_text, Some(nofile))
    }

    /// A daemon inside network namespace `ns` (its control socket is a file: reachable from here).
    pub fn start_in_netns(config_text: &str, ns: &str) -> Daemon {
        let mut d = Self::unstarted(config_text);
        d.netns = Some(ns.to_string());
        d.spawn();
        d
    }

    /// A temp dir with `config_text` as settings.toml; no daemon yet.
    fn unstarted(config_text: &str) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("settings.toml");
        std::fs::write(&config, config_text).unwrap();
        let state = dir.path().join("state");
        Daemon {
            child: None,
            dir,
            config,
            state,
            netns: None,
            env: vec![],
            no_dbus: false,
        }
    }

    /// A daemon (and its CLI) with no D-Bus at all: see [`Daemon::no_dbus`].
    pub fn start_without_dbus(config_text: &str) -> Daemon {
        let mut d = Self::unstarted(config_text);
        d.no_dbus = true;
        d.spawn();
        d
    }

    /// A daemon on a state dir that `seed` prepared first (made, mode 0700, and handed to it).
    pub fn start_seeded(config_text: &str, seed: impl FnOnce(&Path)) -> Daemon {
        let mut d = Self::unstarted(config_text);
        std::fs::create_dir(&d.state).unwrap();
        std::fs::set_permissions(
            &d.state,
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        seed(&d.state);
        d.spawn();
        d
    }

    /// Takes away D-Bus from `cmd` when this daemon has none.
    fn dbus(&self, cmd: &mut Command) {
        if self.no_dbus {
            cmd.env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent")
                .env("DBUS_SYSTEM_BUS_ADDRESS", NO_SYSTEM_BUS);
        }
    }

    /// A daemon with these environment variables besides the harness's.
    pub fn start_env(config_text: &str, env: &[(&str, &str)]) -> Daemon {
        let mut d = Self::unstarted(config_text);
        d.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        d.spawn();
        d
    }

    fn start_with(config_text: &str, nofile: Option<u64>) -> Daemon {
        let mut d = Self::unstarted(config_text);
        d.spawn_limited(nofile);
        d
    }

    /// Starts (another) daemon on the same state dir and config.
    pub fn spawn(&mut self) {
        self.spawn_limited(None)
    }

    fn spawn_limited(&mut self, nofile: Option<u64>) {
        let log = std::fs::File::create(
            self.dir
                .path()
                .join(format!("daemon-{}.log", crate_now_ms())),
        )
        .unwrap();
        let mut cmd = match &self.netns {
            None => Command::new(BIN),
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, BIN]);
                c
            }
        };
        cmd.args(["up", "--config"])
            .arg(&self.config)
            .arg("--state-dir")
            .arg(&self.state)
            .env("MLXBOX_LOG", "info")
            .env("DBUS_SYSTEM_BUS_ADDRESS", NO_SYSTEM_BUS)
            .envs(keyring_env())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0);
        self.dbus(&mut cmd);
        if let Some(n) = nofile {
            // SAFETY: only setrlimit (a plain syscall) runs between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, n, n)
                        .map_err(std::io::Error::from)
                });
            }
        }
        let child = cmd.spawn().unwrap();
        self.child = Some(child);
        self.wait_socket();
    }

    fn wait_socket(&self) {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(20) {
            if self.cli(&["status", "--json"]).status.success() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("daemon did not come up: {}", self.daemon_log());
    }

    pub fn daemon_log(&self) -> String {
        let mut out = String::new();
        for e in std::fs::read_dir(self.dir.path()).unwrap().flatten() {
            if e.file_name().to_string_lossy().starts_with("daemon-") {
                out.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
        out
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .arg("--state-dir")
            .arg(&self.state)
            .envs(keyring_env());
        self.dbus(&mut cmd);
        cmd.output().unwrap()
    }

    /// A request to the daemon's control socket (HTTP/1.1 over the Unix socket): the status code and the
    /// whole response, head and body.
    pub fn control(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        use std::io::{Read, Write};
        let mut s =
            std::os::unix::net::UnixStream::connect(self.state.join("mlx-box.sock")).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let req = format!("{method} {path} HTTP/1.1\r\nHost: mlx-box\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        s.write_all(req.as_bytes()).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let text = String::from_utf8_lossy(&out).into_owned();
        let code = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        (code, text)
    }

    /// A GET on the control socket: the status code and the body.
    pub fn control_get(&self, path: &str) -> (u16, String) {
        let (code, text) = self.control("GET", path, "");
        let body = text.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
        (code, body.to_string())
    }

    /// A GET on the control socket whose answer is JSON.
    pub fn control_json(&self, path: &str) -> Value {
        let (code, body) = self.control_get(path);
        assert_eq!(code, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }

    pub fn status(&self) -> Value {
        let out = self.cli(&["status", "--json"]);
        assert!(
            out.status.success(),
            "status failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    pub fn service(&self, name: &str) -> Value {
        self.status()["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no service {name}"))
    }

    /// Polls status every 25 ms until `pred` holds for service `name`; panics with the status on timeout.
    pub fn wait_service(
        &self,
        name: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let t0 = Instant::now();
        loop {
            // Right after start-up the list may still be empty (the daemon answers while it adopts/reaps).
            let s = self.status()["services"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["name"] == name)
                .cloned()
                .unwrap_or(Value::Null);
            if !s.is_null() && pred(&s) {
                return s;
            }
            if t0.elapsed() > timeout {
                panic!(
                    "timeout waiting on {name}: {s:#}\nlog:\n{}\ndaemon:\n{}",
                    self.service_log(name),
                    self.daemon_log()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    pub fn wait_state(&self, name: &str, state: &str, timeout: Duration) -> Value {
        self.wait_service(name, timeout, |s| s["state"] == state)
    }

    /// The service's stderr log (with mlx-box's lines about it), then its stdout log.
    pub fn service_log(&self, name: &str) -> String {
        let read = |f: String| {
            std::fs::read_to_string(self.state.join("logs").join(f)).unwrap_or_default()
        };
        read(format!("{name}.log")) + &read(format!("{name}.stdout.log"))
    }

    pub fn write_config(&self, text: &str) {
        // As an editor does: write a temp file, rename it over the original.
        let tmp = self.config.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &self.config).unwrap();
    }

    pub fn daemon_pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// SIGTERM the daemon and wait for it to exit (it stops every service first).
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running daemon");
        let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGTERM);
        wait_timeout(&mut c, Duration::from_secs(30)).expect("daemon exits after SIGTERM")
    }

    /// SIGKILL the daemon only (its servers live on in their own groups).
    pub fn kill_daemon(&mut self) {
        let mut c = self.child.take().expect("running daemon");
        let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGKILL);
        let _ = c.wait();
    }

    /// Process groups the state file lists.
    pub fn recorded_pgids(&self) -> Vec<u32> {
        let Ok(b) = std::fs::read(self.state.join("state.json")) else {
            return vec![];
        };
        let v: Value = serde_json::from_slice(&b).unwrap_or(Value::Null);
        v.as_object()
            .map(|m| {
                m.values()
                    .filter_map(|r| r["pgid"].as_u64().map(|p| p as u32))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let pgids = self.recorded_pgids();
        if let Some(mut c) = self.child.take() {
            let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGTERM);
            if wait_timeout(&mut c, Duration::from_secs(15)).is_none() {
                let _ = killpg(Pid::from_raw(c.id() as i32), Signal::SIGKILL);
                let _ = c.wait();
            }
        }
        for g in pgids {
            let _ = killpg(Pid::from_raw(g as i32), Signal::SIGKILL);
        }
    }
}

pub fn wait_timeout(c: &mut Child, t: Duration) -> Option<std::process::ExitStatus> {
    let t0 = Instant::now();
    while t0.elapsed() < t {
        if let Ok(Some(s)) = c.try_wait() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

pub fn pid_alive(pid: u32) -> bool {
    // A zombie waiting for init does not count.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            let rest = &s[s.rfind(')').unwrap() + 2..];
            !rest.starts_with('Z') && !rest.starts_with('X')
        }
        Err(_) => false,
    }
}

pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

fn crate_now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

pub fn path_str(p: &Path) -> String {
    p.display().to_string()
}

/// A raw HTTP/1.1 request to 127.0.0.1:port (Connection: close). Returns (status, head, body).
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let resp = String::from_utf8_lossy(&resp).to_string();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, head.to_string(), body)
}

pub fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].strip_prefix("\r\n").unwrap_or(&rest[n..]);
    }
    out
}

#[path = "keyring_session.rs"]
mod keyring_session;
use keyring_session::IN_SESSION;

/// What the daemon and the CLI of a test see of the OS keyring: inside [`keyring_session`] the private
/// Secret Service; elsewhere none at all (no session bus: the keyring is "unavailable"), so a test never
/// reads or writes the keyring of the person running it.
pub fn keyring_env() -> Vec<(&'static str, String)> {
    if std::env::var_os(IN_SESSION).is_some() {
        return vec![];
    }
    vec![
        ("DBUS_SESSION_BUS_ADDRESS", "disabled:".into()),
        ("DISPLAY", String::new()),
        ("MLXBOX_KEYRING_SERVICE", "mlx-box-test".into()),
    ]
}

/// A real Secret Service for one test: the test re-runs itself (`--exact NAME`) in a private keyring
/// session (`keyring_session.rs`), so the user's keyring is never touched and nothing outlives it. Usage:
///
/// ```ignore
/// #[test]
/// fn t() {
///     if !in_keyring_session("t") { return; } // the parent: it ran the child and checked it passed
///     ...
/// }
/// ```
pub fn in_keyring_session(test: &str) -> bool {
    let args = ["--exact", test, "--nocapture", "--test-threads", "1"].map(String::from);
    match keyring_session::reexec(&args) {
        None => true,
        Some(status) => {
            assert!(
                status.success(),
                "{test} failed inside its keyring session ({status})"
            );
            false
        }
    }
}

/// `GET /metrics` on the control socket.
pub fn scrape(d: &Daemon) -> String {
    let (code, body) = d.control_get("/metrics");
    assert_eq!(code, 200, "{body}");
    body
}

/// The value of the sample `name` whose labels include every pair of `labels`.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// The exposition parses and lints clean for Prometheus' own checker (scripts/setup.sh installs it;
/// MLXBOX_SKIP_PROMETHEUS=1 skips where it cannot be), but for the `vllm:` names' colon: promtool's lint
/// flags colons, which vLLM's own names (the ones dashboards read) have too.
pub fn promtool_check(exposition: &str) {
    use std::io::Write;
    let p = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut p = match p {
        Ok(p) => p,
        Err(_) if std::env::var_os("MLXBOX_SKIP_PROMETHEUS").is_some() => return,
        Err(e) => panic!("promtool: {e}; install Debian's prometheus package (scripts/setup.sh does), or set MLXBOX_SKIP_PROMETHEUS=1"),
    };
    p.stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    let out = p.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let other: Vec<&str> = said
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| !(l.starts_with("vllm:") && l.ends_with("metric names should not contain ':'")))
        .collect();
    assert!(other.is_empty(), "promtool: {said}");
}
