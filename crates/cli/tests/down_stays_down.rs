//! "Down stays down": the daemon under a service manager that restarts it by the rule its file states.
//! No launchd here and no systemd as PID 1, so a fake manager runs the job: it reads the file `mlx-box
//! service install --system --root DIR` wrote — the systemd unit's `ExecStart=`, `Restart=on-failure`,
//! `RestartPreventExitStatus=`, `Environment=`; the LaunchDaemon's `ProgramArguments`,
//! `KeepAlive.SuccessfulExit = false`, `EnvironmentVariables` (through Python's plistlib) — starts the
//! command, and starts it again whenever that rule says so. Then, for each: install → crash (SIGKILL the
//! daemon) → restarted; a second `up` while one runs → it ends at once and is not restarted (no loop);
//! `mlx-box down` → stays down.

mod common;
use common::*;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const S: Duration = Duration::from_secs(1);

/// When the manager starts the command again.
#[derive(Debug, Clone)]
enum Rule {
    /// systemd's `Restart=on-failure`: an exit status other than 0 and those listed in
    /// `RestartPreventExitStatus=`, or a signal other than the clean ones (HUP, INT, TERM, PIPE).
    OnFailure { prevent: Vec<i32> },
    /// launchd's `KeepAlive = { SuccessfulExit = false }`: anything but exit status 0.
    UnlessSuccessfulExit,
}

#[derive(Debug, Clone)]
struct Job {
    argv: Vec<String>,
    env: Vec<(String, String)>,
    rule: Rule,
}

impl Job {
    fn restarts(&self, st: ExitStatus) -> bool {
        match &self.rule {
            Rule::UnlessSuccessfulExit => st.code() != Some(0),
            Rule::OnFailure { prevent } => match (st.code(), st.signal()) {
                (Some(c), _) => c != 0 && !prevent.contains(&c),
                (None, Some(sig)) => ![1, 2, 13, 15].contains(&sig),
                _ => true,
            },
        }
    }

    /// A systemd unit's `[Service]` lines.
    fn from_unit(text: &str) -> Job {
        let (mut argv, mut env, mut prevent, mut on_failure) = (vec![], vec![], vec![], false);
        for line in text.lines() {
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            match k {
                "ExecStart" => argv = systemd_words(v),
                "Restart" => on_failure = v == "on-failure",
                "RestartPreventExitStatus" => {
                    prevent = v.split_whitespace().map(|c| c.parse().unwrap()).collect()
                }
                "Environment" => {
                    for w in systemd_words(v) {
                        let (k, v) = w.split_once('=').unwrap();
                        env.push((k.to_string(), v.to_string()));
                    }
                }
                _ => {}
            }
        }
        assert!(on_failure, "Restart=on-failure in\n{text}");
        Job {
            argv,
            env,
            rule: Rule::OnFailure { prevent },
        }
    }

    /// A launchd property list, read by Python's plistlib.
    fn from_plist(path: &Path) -> Job {
        let out = Command::new("python3")
            .args([
                "-c",
                "import plistlib, sys, json; print(json.dumps(plistlib.load(open(sys.argv[1], 'rb'))))",
            ])
            .arg(path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(d["RunAtLoad"], true);
        assert_eq!(d["KeepAlive"]["SuccessfulExit"], false, "{d}");
        let strs = |v: &serde_json::Value| v.as_str().unwrap().to_string();
        Job {
            argv: d["ProgramArguments"]
                .as_array()
                .unwrap()
                .iter()
                .map(strs)
                .collect(),
            env: d["EnvironmentVariables"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), strs(v)))
                .collect(),
            rule: Rule::UnlessSuccessfulExit,
        }
    }
}

/// systemd's word splitting of `ExecStart=` and `Environment=`: double quotes, backslash escapes inside
/// them, `%%` for `%`.
fn systemd_words(s: &str) -> Vec<String> {
    let (mut out, mut cur, mut quoted, mut any) = (vec![], String::new(), false, false);
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            '\\' if quoted => cur.extend(chars.next()),
            '%' if chars.peek() == Some(&'%') => {
                chars.next();
                cur.push('%');
            }
            ' ' if !quoted => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The fake manager: one thread that runs the job and restarts it by its rule, 0.3 s apart (the unit's
/// `RestartSec`, launchd's `ThrottleInterval`, shortened). Stopping it SIGTERMs what runs.
struct Manager {
    starts: Arc<AtomicUsize>,
    exits: Arc<Mutex<Vec<ExitStatus>>>,
    pid: Arc<Mutex<Option<u32>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Manager {
    fn run(job: &Job, log: PathBuf) -> Manager {
        let mut m = Manager {
            starts: Default::default(),
            exits: Default::default(),
            pid: Default::default(),
            stop: Default::default(),
            thread: None,
        };
        let (starts, exits, pid, stop) = (
            m.starts.clone(),
            m.exits.clone(),
            m.pid.clone(),
            m.stop.clone(),
        );
        let job = job.clone();
        let thread = std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let err = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .unwrap();
                let mut child = Command::new(&job.argv[0])
                    .args(&job.argv[1..])
                    .env("DBUS_SYSTEM_BUS_ADDRESS", NO_SYSTEM_BUS)
                    .envs(keyring_env())
                    .envs(job.env.iter().map(|(k, v)| (k, v)))
                    .stdout(Stdio::null())
                    .stderr(err)
                    .process_group(0)
                    .spawn()
                    .unwrap();
                starts.fetch_add(1, Ordering::SeqCst);
                *pid.lock().unwrap() = Some(child.id());
                let st = loop {
                    if let Some(st) = child.try_wait().unwrap() {
                        break st;
                    }
                    if stop.load(Ordering::SeqCst) {
                        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
                        break wait_timeout(&mut child, 30 * S).unwrap_or_else(|| {
                            let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
                            child.wait().unwrap()
                        });
                    }
                    std::thread::sleep(Duration::from_millis(10));
                };
                *pid.lock().unwrap() = None;
                exits.lock().unwrap().push(st);
                if !job.restarts(st) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        });
        m.thread = Some(thread);
        m
    }

    fn starts(&self) -> usize {
        self.starts.load(Ordering::SeqCst)
    }

    fn exits(&self) -> Vec<ExitStatus> {
        self.exits.lock().unwrap().clone()
    }

    /// The manager gave up on the job (its last exit is not one to restart).
    fn finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The state dir's servers, killed whatever happened (a daemon killed by the test leaves them running).
struct Servers(PathBuf);

impl Drop for Servers {
    fn drop(&mut self) {
        let Ok(b) = std::fs::read(self.0.join("state.json")) else {
            return;
        };
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap_or_default();
        for r in v.as_object().into_iter().flat_map(|m| m.values()) {
            if let Some(g) = r["pgid"].as_u64() {
                let _ = killpg(Pid::from_raw(g as i32), Signal::SIGKILL);
            }
        }
    }
}

fn cli(state: &Path, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .arg("--state-dir")
        .arg(state)
        .envs(keyring_env())
        .output()
        .unwrap()
}

/// The daemon's pid and the service's state, while one answers.
fn daemon(state: &Path) -> Option<(u64, String)> {
    let out = cli(state, &["status", "--json"]);
    if !out.status.success() {
        return None;
    }
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let svc = s["services"].as_array()?.first()?["state"]
        .as_str()?
        .to_string();
    Some((s["daemon_pid"].as_u64()?, svc))
}

fn wait_ready(state: &Path, not_pid: Option<u64>, log: &Path) -> u64 {
    let mut pid = 0;
    let ok = wait_until(30 * S, || match daemon(state) {
        Some((p, s)) if Some(p) != not_pid && s == "ready" => {
            pid = p;
            true
        }
        _ => false,
    });
    assert!(
        ok,
        "a daemon with a ready service: {:?}\n{}",
        daemon(state),
        std::fs::read_to_string(log).unwrap_or_default()
    );
    pid
}

/// Install → crash → restarted; second `up` → no loop; `down` → stays down, under `manager`'s rule.
fn scenario(manager: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (root, state) = (dir.path().join("root"), dir.path().join("state"));
    let config = dir.path().join("settings.toml");
    std::fs::write(&config, fault_service("svc", free_port(), "ok", "")).unwrap();
    let _servers = Servers(state.clone());
    let out = Command::new(BIN)
        .args([
            "service",
            "install",
            "--system",
            "--manager",
            manager,
            "--root",
        ])
        .arg(&root)
        .arg("--config")
        .arg(&config)
        .arg("--state-dir")
        .arg(&state)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let job = match manager {
        "systemd" => Job::from_unit(
            &std::fs::read_to_string(root.join("etc/systemd/system/mlx-box.service")).unwrap(),
        ),
        _ => Job::from_plist(&root.join("Library/LaunchDaemons/com.mlx-box.daemon.plist")),
    };
    assert_eq!(job.argv[0], BIN);
    let log = dir.path().join("daemon.log");

    // Installed: started.
    let m = Manager::run(&job, log.clone());
    let first = wait_ready(&state, None, &log);
    assert_eq!(m.starts(), 1);

    // A crash: restarted, and the new daemon adopts the server.
    kill(Pid::from_raw(first as i32), Signal::SIGKILL).unwrap();
    let second = wait_ready(&state, Some(first), &log);
    assert_eq!(m.starts(), 2, "{:?}", m.exits());
    assert_eq!(m.exits()[0].signal(), Some(9));

    // A second `up` by the same rule (the agent at login while the app runs one): it ends at once, and
    // is not started again.
    let m2 = Manager::run(&job, dir.path().join("second.log"));
    assert!(wait_until(15 * S, || m2.finished()), "{:?}", m2.exits());
    std::thread::sleep(S);
    assert_eq!(m2.starts(), 1, "no restart loop: {:?}", m2.exits());
    let want = if manager == "systemd" { 3 } else { 0 };
    assert_eq!(m2.exits()[0].code(), Some(want));
    assert!(std::fs::read_to_string(dir.path().join("second.log"))
        .unwrap()
        .contains("another mlx-box daemon"));
    assert_eq!(
        daemon(&state).map(|d| d.0),
        Some(second),
        "the first one runs on"
    );
    // What `up` did before (exit 1) is retried by the same rule, again and again.
    let mut old = job.clone();
    match old.argv.iter().position(|a| a == "--already-running-exit") {
        Some(i) => old.argv[i + 1] = "1".into(),
        None => old
            .argv
            .extend(["--already-running-exit".into(), "1".into()]),
    }
    let looping = Manager::run(&old, dir.path().join("old.log"));
    assert!(
        wait_until(15 * S, || looping.starts() >= 3),
        "{:?}",
        looping.exits()
    );
    drop(looping);

    // `down`: the daemon exits 0 and stays down.
    let out = cli(&state, &["down"]);
    assert!(out.status.success(), "{out:?}");
    assert!(wait_until(30 * S, || m.finished()), "{:?}", m.exits());
    std::thread::sleep(2 * S);
    assert_eq!(m.starts(), 2, "{:?}", m.exits());
    assert_eq!(m.exits()[1].code(), Some(0));
    assert_eq!(daemon(&state), None, "no daemon after down");
    eprintln!(
        "{manager}: {} starts, exits {:?}; second up: {:?}",
        m.starts(),
        m.exits(),
        m2.exits()
    );
}

#[test]
fn under_systemds_rule_down_stays_down_and_a_second_up_does_not_loop() {
    scenario("systemd");
}

#[test]
fn under_launchds_rule_down_stays_down_and_a_second_up_does_not_loop() {
    scenario("launchd");
}

/// The rule the fake applies is the unit's: a status in `RestartPreventExitStatus=` is not restarted, a
/// failure or a crash is, a clean exit is not.
#[test]
fn the_fake_managers_rules() {
    let st = |raw: i32| ExitStatus::from_raw(raw);
    let unit = Job::from_unit(
        "[Service]\nExecStart=\"/a b/c\" up --x \"q\\\"%%\"\nRestart=on-failure\nRestartPreventExitStatus=3\nEnvironment=\"PATH=/x y\"\n",
    );
    assert_eq!(unit.argv, ["/a b/c", "up", "--x", "q\"%"]);
    assert_eq!(unit.env, [("PATH".to_string(), "/x y".to_string())]);
    assert!(unit.restarts(st(1 << 8)), "exit 1");
    assert!(!unit.restarts(st(3 << 8)), "exit 3");
    assert!(!unit.restarts(st(0)), "exit 0");
    assert!(unit.restarts(st(9)), "SIGKILL");
    assert!(!unit.restarts(st(15)), "SIGTERM");
    let launchd = Job {
        rule: Rule::UnlessSuccessfulExit,
        ..unit
    };
    assert!(launchd.restarts(st(3 << 8)));
    assert!(launchd.restarts(st(9)));
    assert!(!launchd.restarts(st(0)));
}
