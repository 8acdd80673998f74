//! Processes: spawn each server in its own process group, stop the whole group, and find who holds a port.

use crate::launch::LaunchPlan;
use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::fs::File;
use std::net::TcpListener;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// A server process we own (spawned) or adopted from a previous daemon.
#[derive(Debug)]
pub struct Proc {
    pub pid: u32,
    /// Equal to `pid`: each server leads its own group.
    pub pgid: u32,
    /// Process start time as the OS reports it (seconds since the epoch), to tell a pid reused later apart.
    pub start_time: u64,
    /// `None` for an adopted process (not our child: we poll it instead of waiting on it).
    pub child: Option<Child>,
}

impl SpawnError {
    /// Out of descriptors, processes or memory: worth retrying later.
    pub fn is_transient(&self) -> bool {
        match self {
            SpawnError::Exec { source, .. } | SpawnError::Log { source, .. } => {
                crate::limits::is_transient(source)
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("cannot run `{program}`: {source}; check the path (or `python` in settings.toml)")]
    Exec {
        program: String,
        source: std::io::Error,
    },
    #[error("cannot open log file {path}: {source}")]
    Log {
        path: String,
        source: std::io::Error,
    },
}

/// Spawns `plan` in a new process group, stdout and stderr appended to `log` (a file, not a pipe: the
/// server keeps logging when the daemon is gone, so an adopted server never dies of a broken pipe).
pub fn spawn(plan: &LaunchPlan, log: &std::path::Path) -> Result<Proc, SpawnError> {
    let open = || {
        crate::paths::append_no_follow(log).map_err(|e| SpawnError::Log {
            path: log.display().to_string(),
            source: e,
        })
    };
    for (path, text) in &plan.files {
        crate::paths::write_no_follow(path, text.as_bytes()).map_err(|e| SpawnError::Log {
            path: path.display().to_string(),
            source: e,
        })?;
    }
    // stdout beside the stderr log, as launchd kept them apart (`logs.rs` follows both).
    let stdout_log = super::logs::stdout_path(log);
    let out: File = crate::paths::append_no_follow(&stdout_log).map_err(|e| SpawnError::Log {
        path: stdout_log.display().to_string(),
        source: e,
    })?;
    let err: File = open()?;
    let mut cmd = Command::new(&plan.argv[0]);
    cmd.args(&plan.argv[1..])
        .envs(&plan.env)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .kill_on_drop(false);
    if let Some(cwd) = &plan.cwd {
        cmd.current_dir(cwd);
    }
    let child = cmd.spawn().map_err(|e| SpawnError::Exec {
        program: plan.argv[0].clone(),
        source: e,
    })?;
    let pid = child.id().unwrap_or(0);
    Ok(Proc {
        pid,
        pgid: pid,
        start_time: process_start_time(pid).unwrap_or(0),
        child: Some(child),
    })
}

/// Is any live process left in group `pgid`? Zombies do not count: an orphan's zombie waits for init to
/// reap it (slowly, in some containers) but holds no port and no memory.
pub fn group_alive(pgid: u32) -> bool {
    if pgid <= 1 || matches!(killpg(Pid::from_raw(pgid as i32), None), Err(Errno::ESRCH)) {
        return false;
    }
    #[cfg(target_os = "linux")]
    {
        linux::group_has_live_member(pgid)
    }
    #[cfg(not(target_os = "linux"))]
    true
}

/// Is `pid` a live (non-zombie) process?
pub fn pid_alive(pid: u32) -> bool {
    if pid <= 1
        || matches!(
            nix::sys::signal::kill(Pid::from_raw(pid as i32), None),
            Err(Errno::ESRCH)
        )
    {
        return false;
    }
    #[cfg(target_os = "linux")]
    {
        linux::is_live(pid)
    }
    #[cfg(not(target_os = "linux"))]
    true
}

#[cfg(target_os = "linux")]
mod linux {
    /// (state, process group) from /proc/PID/stat.
    pub fn stat(pid: u32) -> Option<(char, u32)> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // "pid (comm) state ppid pgrp …": comm may contain spaces and parentheses, so split after the last ')'.
        let rest = &text[text.rfind(')')? + 2..];
        let mut f = rest.split_whitespace();
        let state = f.next()?.chars().next()?;
        let _ppid = f.next()?;
        let pgrp = f.next()?.parse().ok()?;
        Some((state, pgrp))
    }

    /// A process is live while any of its threads is. Its leader shows `Z` as soon as the main thread
    /// exits, but other threads (mlx_lm's server threads) may still hold its sockets for seconds.
    pub fn is_live(pid: u32) -> bool {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return stat(pid).is_some_and(|(st, _)| st != 'Z' && st != 'X');
        };
        tasks.flatten().any(|t| {
            std::fs::read_to_string(t.path().join("stat"))
                .ok()
                .and_then(|text| text.rfind(')').and_then(|i| text[i + 2..].chars().next()))
                .is_some_and(|st| st != 'Z' && st != 'X')
        })
    }

    pub fn group_has_live_member(pgid: u32) -> bool {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return true;
        };
        dir.flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()))
            .filter(|&pid| stat(pid).is_some_and(|(_, pgrp)| pgrp == pgid))
            .any(is_live)
    }
}

pub fn signal_group(pgid: u32, sig: Signal) {
    if pgid > 1 {
        let _ = killpg(Pid::from_raw(pgid as i32), sig);
    }
}

/// How a stop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopOutcome {
    pub killed: bool,
    pub took: Duration,
}

/// Stops the whole group: SIGTERM, wait until no process of the group is left (reaping the leader if it
/// is our child), SIGKILL after `grace`. Returns once the group is empty (or after a hard 10 s past SIGKILL,
/// which only a process stuck in the kernel survives).
pub async fn terminate_group(proc: &mut Proc, grace: Duration) -> StopOutcome {
    let t0 = Instant::now();
    signal_group(proc.pgid, Signal::SIGTERM);
    // A leader that is not in our group any more (setsid'd) still gets the signal.
    if proc.child.is_none() && pid_alive(proc.pid) {
        let _ = nix::sys::signal::kill(Pid::from_raw(proc.pid as i32), Signal::SIGTERM);
    }
    let mut killed = false;
    loop {
        reap(proc);
        if !group_alive(proc.pgid) && proc.child.is_none() {
            return StopOutcome {
                killed,
                took: t0.elapsed(),
            };
        }
        if !killed && t0.elapsed() >= grace {
            signal_group(proc.pgid, Signal::SIGKILL);
            killed = true;
        }
        if t0.elapsed() >= grace + Duration::from_secs(10) {
            tracing::error!(
                pgid = proc.pgid,
                "process group still alive 10 s after SIGKILL"
            );
            return StopOutcome {
                killed,
                took: t0.elapsed(),
            };
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// SIGKILL whatever is left of a group whose leader already exited, and wait (≤ 2 s) until it is gone.
pub async fn kill_leftovers(pgid: u32) {
    let t0 = Instant::now();
    signal_group(pgid, Signal::SIGKILL);
    while group_alive(pgid) && t0.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Reaps our child leader if it exited (a zombie still counts as a group member).
fn reap(proc: &mut Proc) {
    if let Some(c) = &mut proc.child {
        if let Ok(Some(_)) = c.try_wait() {
            proc.child = None;
        }
    }
}

/// Describes an exit status for `last_error`.
pub fn describe_exit(status: &std::process::ExitStatus) -> (bool, String) {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = status.code() {
        (code == 0, format!("exited with status {code}"))
    } else if let Some(sig) = status.signal() {
        let name = Signal::try_from(sig)
            .map(|s| s.as_str().to_string())
            .unwrap_or_else(|_| sig.to_string());
        (false, format!("killed by signal {name}"))
    } else {
        (false, "exited".into())
    }
}

/// Who holds a TCP port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortHolder {
    pub pid: Option<u32>,
    pub command: Option<String>,
}

impl std::fmt::Display for PortHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.pid, &self.command) {
            (Some(p), Some(c)) => write!(f, "pid {p} ({c})"),
            (Some(p), None) => write!(f, "pid {p}"),
            _ => write!(f, "another process (not visible to this user)"),
        }
    }
}

/// `None` when `host:port` can be bound now; otherwise who holds it (as far as the OS tells us).
pub fn port_in_use(host: &str, port: u16) -> Option<PortHolder> {
    let host = if host == "localhost" {
        "127.0.0.1"
    } else {
        host
    };
    // std sets SO_REUSEADDR, so a port in TIME_WAIT counts as free, as it does for the server itself.
    match TcpListener::bind((host, port)) {
        // On macOS SO_REUSEADDR lets 127.0.0.1:P bind while another process listens on *:P: ask lsof too.
        #[cfg(not(target_os = "linux"))]
        Ok(_) if listening_pid(port).is_some() => Some(find_port_holder(port)),
        Ok(_) => None,
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Some(find_port_holder(port)),
        Err(_) => None, // e.g. address not available: let the server report it
    }
}

/// Finds the process listening on `port`.
pub fn find_port_holder(port: u16) -> PortHolder {
    let pid = listening_pid(port);
    PortHolder {
        pid,
        command: pid.and_then(process_command),
    }
}

#[cfg(target_os = "linux")]
fn listening_pid(port: u16) -> Option<u32> {
    // /proc/net/tcp{,6}: local_address is HEX_IP:HEX_PORT, state 0A = LISTEN, inode in column 10.
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() < 10 || cols[3] != "0A" {
                continue;
            }
            let p = cols[1]
                .rsplit(':')
                .next()
                .and_then(|h| u16::from_str_radix(h, 16).ok());
            if p == Some(port) {
                inodes.push(format!("socket:[{}]", cols[9]));
            }
        }
    }
    if inodes.is_empty() {
        return None;
    }
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path()) {
                if inodes.iter().any(|i| target.as_os_str() == i.as_str()) {
                    return Some(pid);
                }
            }
        }
    }
    None
}

#[cfg(not(target_os = "linux"))]
fn listening_pid(port: u16) -> Option<u32> {
    // macOS has no /proc: lsof ships with the OS.
    let out = std::process::Command::new("lsof")
        .args(["-nP", &format!("-iTCP:{port}"), "-sTCP:LISTEN", "-t"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
}

/// The command line of a process, shortened for messages.
pub fn process_command(pid: u32) -> Option<String> {
    let sys = sysinfo_process(pid)?;
    let cmd: Vec<String> = sys
        .0
        .iter()
        .map(|s| s.to_string_lossy().into_owned())
        .collect();
    let s = if cmd.is_empty() { sys.1 } else { cmd.join(" ") };
    let mut s: String = s.chars().take(120).collect();
    if s.len() >= 120 {
        s.push('…');
    }
    Some(s)
}

/// Start time of a process (seconds since the epoch), or `None` if it does not exist.
pub fn process_start_time(pid: u32) -> Option<u64> {
    use sysinfo::{Pid as SPid, ProcessRefreshKind, ProcessesToUpdate, System};
    let mut sys = System::new().ok()?;
    let p = SPid::from_u32(pid);
    sys.refresh_processes_specifics(
        ProcessesToUpdate::Some(&[p]),
        true,
        ProcessRefreshKind::nothing(),
    );
    sys.process(p).map(|p| p.start_time())
}

fn sysinfo_process(pid: u32) -> Option<(Vec<std::ffi::OsString>, String)> {
    use sysinfo::{Pid as SPid, ProcessRefreshKind, ProcessesToUpdate, System, UpdateKind};
    let mut sys = System::new().ok()?;
    let p = SPid::from_u32(pid);
    sys.refresh_processes_specifics(
        ProcessesToUpdate::Some(&[p]),
        true,
        ProcessRefreshKind::nothing().with_cmd(UpdateKind::Always),
    );
    sys.process(p)
        .map(|p| (p.cmd().to_vec(), p.name().to_string_lossy().into_owned()))
}

/// Pids of every process in group `pgid` (Linux: from /proc; elsewhere via sysinfo + getpgid).
pub fn group_members(pgid: u32) -> Vec<u32> {
    use sysinfo::{ProcessRefreshKind, ProcessesToUpdate, System};
    let Ok(mut sys) = System::new() else {
        return vec![];
    };
    sys.refresh_processes_specifics(ProcessesToUpdate::All, true, ProcessRefreshKind::nothing());
    sys.processes()
        .keys()
        .map(|p| p.as_u32())
        .filter(|&pid| {
            nix::unistd::getpgid(Some(Pid::from_raw(pid as i32)))
                .ok()
                .map(|g| g.as_raw() as u32)
                == Some(pgid)
        })
        .collect()
}

/// The memory of every process in each of the groups `pgids` (footprint on macOS, else RSS), in bytes.
/// Processes, not tasks: on Linux sysinfo lists each thread too, with its process's whole RSS (the
/// threads share one address space), which counted a server once per thread.
pub fn groups_memory(sys: &sysinfo::System, pgids: &[u32]) -> std::collections::BTreeMap<u32, u64> {
    let mut out: std::collections::BTreeMap<u32, u64> = pgids.iter().map(|&g| (g, 0)).collect();
    // One pass over the processes, one getpgid each (not one pass per group).
    for (pid, p) in sys.processes() {
        if p.thread_kind().is_some() {
            continue;
        }
        let Ok(g) = nix::unistd::getpgid(Some(Pid::from_raw(pid.as_u32() as i32))) else {
            continue;
        };
        let g = g.as_raw() as u32;
        if let Some(sum) = out.get_mut(&g) {
            *sum += footprint(pid.as_u32()).unwrap_or_else(|| p.memory());
        }
    }
    out
}

/// macOS: the physical footprint (`ri_phys_footprint`), which counts MLX's Metal buffers; RSS
/// under-counts them badly.
#[cfg(target_os = "macos")]
fn footprint(pid: u32) -> Option<u64> {
    let mut info: libc::rusage_info_v2 = unsafe { std::mem::zeroed() };
    let rc = unsafe {
        libc::proc_pid_rusage(
            pid as libc::c_int,
            libc::RUSAGE_INFO_V2,
            (&mut info as *mut libc::rusage_info_v2).cast(),
        )
    };
    (rc == 0).then_some(info.ri_phys_footprint)
}

/// Elsewhere the resident set (from sysinfo) is the figure.
#[cfg(not(target_os = "macos"))]
fn footprint(_pid: u32) -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server with several threads counts once: the group's figure is the process's own RSS
    /// (`/proc/PID/status`), not that times its thread count.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_multi_threaded_process_counts_once() {
        use std::os::unix::process::CommandExt;
        // Four threads, 64 MB touched, then it waits to be killed.
        let script = "import threading,time\nb=bytearray(64<<20)\nfor i in range(0,len(b),4096): b[i]=1\n\
                      [threading.Thread(target=time.sleep,args=(60,),daemon=True).start() for _ in range(4)]\n\
                      print('up',flush=True)\ntime.sleep(60)";
        let mut child = std::process::Command::new("python3")
            .args(["-c", script])
            .stdout(std::process::Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("python3");
        let pid = child.id();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let field = |k: &str| -> u64 {
            let l = status.lines().find(|l| l.starts_with(k)).unwrap();
            l.split_whitespace().nth(1).unwrap().parse().unwrap()
        };
        assert!(field("Threads:") >= 5, "{status}");
        let rss = field("VmRSS:") * 1024;
        let mut sys = sysinfo::System::new().unwrap();
        sys.refresh_processes_specifics(
            sysinfo::ProcessesToUpdate::All,
            true,
            sysinfo::ProcessRefreshKind::nothing().with_memory(),
        );
        let got = groups_memory(&sys, &[pid])[&pid];
        let _ =
            nix::sys::signal::killpg(Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
        let _ = child.wait();
        // The two reads are a moment apart: within 10 %, and far from 5×.
        assert!(
            (got as f64 - rss as f64).abs() < rss as f64 * 0.1,
            "group memory {got} against VmRSS {rss}"
        );
    }

    #[test]
    fn finds_the_holder_of_a_port() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let h = port_in_use("127.0.0.1", port).expect("port is held");
        assert_eq!(h.pid, Some(std::process::id()));
        assert!(
            h.to_string()
                .starts_with(&format!("pid {} (", std::process::id())),
            "{h}"
        );
        drop(l);
        assert_eq!(port_in_use("127.0.0.1", port), None);
    }

    #[tokio::test]
    async fn terminate_kills_the_whole_group_including_grandchildren() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("x.log");
        // The leader ignores SIGTERM and leaves a grandchild that also ignores it.
        let plan = LaunchPlan {
            argv: vec![
                "sh".into(),
                "-c".into(),
                "trap '' TERM; (trap '' TERM; sleep 300) & echo started; sleep 300".into(),
            ],
            env: Default::default(),
            cwd: None,
            host: "127.0.0.1".into(),
            port: 1,
            files: Default::default(),
        };
        let mut p = spawn(&plan, &log).unwrap();
        let pgid = p.pgid;
        for _ in 0..200 {
            if group_members(pgid).len() >= 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(group_members(pgid).len() >= 2, "leader + children");
        let out = terminate_group(&mut p, Duration::from_millis(300)).await;
        assert!(out.killed, "SIGTERM was ignored, so SIGKILL was needed");
        assert!(out.took >= Duration::from_millis(300));
        assert!(!group_alive(pgid));
        assert!(!group_alive(pgid), "no live member left");
    }
}
