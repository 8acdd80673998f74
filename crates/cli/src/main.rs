//! `mlx-box`: `up` hosts the daemon; every other verb is a client of it (or, for `validate`, of the file).

mod bench_cmd;
mod fleet;
mod models;
mod models_pull;

use anyhow::Result;
use clap::{Parser, Subcommand};
use mlxbox_api::call;
use mlxbox_client::control::{Client, ClientError};
use mlxbox_core::api::{ServiceStatus, StatusReport};
use mlxbox_core::config::{self, Severity};
use mlxbox_core::supervisor::{State, Verb};
use mlxbox_core::{daemon, demo, estimate, keys, paths};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "mlx-box",
    version,
    about = "Supervise local LLM servers (mlx_lm.server and friends) from settings.toml"
)]
struct Cli {
    /// State dir: socket, state file, logs, the demo's files. Default: platform state dir.
    #[arg(long, global = true, env = "MLXBOX_STATE_DIR", value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Talk to this host's daemon (a [hosts.NAME] of settings.toml) instead of this machine's.
    #[arg(long, global = true, value_name = "NAME")]
    host: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the daemon in the foreground (SIGINT/SIGTERM stop every service, then exit).
    Up {
        /// settings.toml to supervise (default: the platform config path; the demo when it does not exist).
        #[arg(long, conflicts_with = "demo")]
        config: Option<PathBuf>,
        /// Run the demo profile: tiny local models, real servers, nothing downloaded but Python packages.
        #[arg(long)]
        demo: bool,
        /// Exit status when another daemon already runs on the state dir. The default is not one a
        /// systemd unit restarts (`RestartPreventExitStatus=`); launchd restarts any status but 0, so
        /// its plist passes 0.
        #[arg(long, value_name = "CODE", default_value_t = daemon::EXIT_ALREADY_RUNNING)]
        already_running_exit: u8,
    },
    /// Show every service, memory and active alerts.
    Status {
        #[arg(long)]
        json: bool,
        /// This machine and every host of settings.toml, one block each.
        #[arg(long, conflicts_with = "host")]
        all: bool,
    },
    /// Start a service (or `all`) and wait until it is ready.
    Start(ActionArgs),
    /// Stop a service (or `all`) and wait until its processes are gone.
    Stop(ActionArgs),
    /// Restart a service (or `all`) and wait until it is ready again.
    Restart(ActionArgs),
    /// Stop an on-demand service's server and leave it idle: the next request that names it loads it
    /// again (`stop` leaves it stopped).
    Unload(ActionArgs),
    /// Print a service's log.
    Logs {
        name: String,
        #[arg(long, short = 'n', default_value_t = 100)]
        lines: usize,
        #[arg(long, short = 'f')]
        follow: bool,
        /// Print where the service's log files are (the current one first, then the rotated ones).
        #[arg(long, conflicts_with = "follow")]
        path: bool,
    },
    /// Have the OS start the daemon at login (macOS: a LaunchAgent; Linux: a systemd user unit) or at
    /// boot before anyone logs in (`--system`: a LaunchDaemon / a systemd system unit), and again after a
    /// crash, as the original mlx-box's launchd setup did. `mlx-box down` stays down.
    #[command(subcommand)]
    Service(ServiceCmd),
    /// Check a settings.toml: exit 0 when valid, 2 with one `PATH:LINE:COL:` line per problem.
    Validate { path: Option<PathBuf> },
    /// Estimate the memory each service needs (weights + KV cache) against the budget.
    Estimate {
        /// settings.toml (default: the platform config path).
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// The models on this Mac (the Hugging Face cache and the settings' local paths): sizes, who uses
    /// each, what it needs in memory; disk use; removal of what no service uses.
    Models(models::ModelsArgs),
    /// Benchmark services (TTFT, TPOT, ITL, E2E, tok/s at concurrency levels) through the daemon; keep,
    /// list and compare runs.
    Bench(bench_cmd::BenchArgs),
    /// The success checklist: services ready, thresholds met, swap < 100 MB, thinking toggle, long
    /// context, 5 concurrent requests, no errors in the logs. Exit 1 when a check fails.
    Doctor {
        /// Only these services (default: all).
        services: Vec<String>,
        /// Prompt tokens of the long-context check.
        #[arg(long, default_value_t = 20_000)]
        long_context_tokens: u32,
        #[arg(long)]
        json: bool,
    },
    /// Ask the daemon to stop every service and exit.
    Down,
    /// Every TCP port the daemon listens on (service and pool ports, the one endpoint, /metrics, the
    /// control API for other Macs), each served through the one gate.
    Listeners {
        #[arg(long)]
        json: bool,
    },
    /// The active alerts; acknowledge or snooze one (the daemon keeps it, so the app and every client
    /// stop counting it).
    Alerts {
        #[command(subcommand)]
        cmd: Option<AlertsCmd>,
        #[arg(long)]
        json: bool,
    },
    /// API keys of the proxy, kept hashed in the key store (<state>/keys.json; the keys themselves are
    /// shown once and kept nowhere).
    #[command(subcommand)]
    Keys(KeysCmd),
    /// This machine's control API for other hosts ([control] listen).
    #[command(subcommand)]
    Control(fleet::ControlCmd),
    /// Access tokens of this machine's control API (kept hashed in <state>/tokens.json).
    #[command(subcommand)]
    Tokens(fleet::TokensCmd),
    /// Other Macs this one shows and drives ([hosts.NAME] of settings.toml).
    #[command(subcommand)]
    Hosts(fleet::HostsCmd),
}

#[derive(Subcommand)]
enum ServiceCmd {
    /// Write the agent and start it now (a daemon already running keeps running until it is stopped).
    Install {
        /// settings.toml the daemon supervises (default: the platform config path; with --system run
        /// as another account, that account's).
        #[arg(long)]
        config: Option<PathBuf>,
        #[command(flatten)]
        scope: ScopeArgs,
        /// The account the system daemon runs as (default: the one that ran sudo, else you).
        #[arg(long, value_name = "NAME", requires = "system")]
        run_as: Option<String>,
        #[command(flatten)]
        place: PlaceArgs,
    },
    /// Stop the agent and remove it (the daemon stops with it).
    Uninstall {
        #[command(flatten)]
        scope: ScopeArgs,
        #[command(flatten)]
        place: PlaceArgs,
    },
    /// Which is installed (user, system, both) and whether launchd/systemd has it loaded.
    Status {
        #[command(flatten)]
        place: PlaceArgs,
    },
}

#[derive(clap::Args)]
struct ScopeArgs {
    /// At boot, before anyone logs in, as you: a LaunchDaemon (macOS) or a systemd system unit (Linux).
    /// Needs root (sudo).
    #[arg(long, conflicts_with = "user")]
    system: bool,
    /// At your login (the default): a LaunchAgent (macOS) or a systemd user unit (Linux).
    #[arg(long)]
    user: bool,
}

impl ScopeArgs {
    fn scope(&self) -> mlxbox_core::autostart::Scope {
        if self.system {
            mlxbox_core::autostart::Scope::System
        } else {
            mlxbox_core::autostart::Scope::User
        }
    }
}

#[derive(clap::Args, Clone)]
struct PlaceArgs {
    /// Write and read the files under this directory instead of `/`, and ask no service manager
    /// (packaging, preparing another machine, tests).
    #[arg(long, value_name = "DIR", env = "MLXBOX_SERVICE_ROOT")]
    root: Option<PathBuf>,
    /// Which service manager's file (default: this OS's); another OS's needs --root.
    #[arg(long, value_enum)]
    manager: Option<ManagerArg>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ManagerArg {
    Launchd,
    Systemd,
}

impl PlaceArgs {
    fn place(self) -> Result<mlxbox_core::autostart::Place> {
        use mlxbox_core::autostart::{Manager, Place};
        let manager = match self.manager {
            None => Manager::this_os(),
            Some(ManagerArg::Launchd) => Manager::Launchd,
            Some(ManagerArg::Systemd) => Manager::Systemd,
        };
        if manager != Manager::this_os() && self.root.is_none() {
            anyhow::bail!(
                "--manager {} is another OS's: give --root DIR to write its files there",
                manager.as_str()
            );
        }
        Ok(Place {
            manager,
            root: self.root,
        })
    }
}

#[derive(Subcommand)]
enum AlertsCmd {
    /// Seen: the alert stays listed but no longer counts (nor turns the menu-bar icon), until it clears
    /// or grows more severe.
    Ack { id: String },
    /// Quiet for a while (`30m`, `2h`, `1d`; a week at most), then it counts again if still active.
    Snooze {
        id: String,
        #[arg(long = "for", default_value = "1h", value_parser = humantime::parse_duration)]
        duration: Duration,
    },
    /// Counts again now (undoes ack and snooze).
    Unmute { id: String },
}

#[derive(Subcommand)]
enum KeysCmd {
    /// Make a new key and print it (the only time it is shown).
    Add {
        /// A label to tell keys apart (`mlx-box keys list` shows it).
        #[arg(long)]
        name: Option<String>,
        /// Only this service accepts the key (repeat for several); default: every service.
        #[arg(long = "service", value_name = "NAME")]
        services: Vec<String>,
    },
    /// List the keys: id, label, created, last 4 characters. Never the keys themselves.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove a key (by id, or by its label when unique).
    Remove { id: String },
    /// Hash the plaintext api_key / api_keys of settings.toml into the key store and remove them from
    /// the file (comments kept).
    Import {
        /// settings.toml (default: the running daemon's, else the platform config path).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Make the running daemon read the keys again (e.g. after fixing its key store).
    Reload,
}

#[derive(clap::Args)]
struct ActionArgs {
    /// Service name, or `all`.
    name: String,
    /// Return at once instead of waiting for the result.
    #[arg(long)]
    no_wait: bool,
    /// Give up waiting after this many seconds.
    #[arg(long, default_value_t = 600.0)]
    timeout: f64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let state_dir = paths::state_dir(cli.state_dir.as_deref());
    // `service install --system` run by root for the operator takes the operator's default state dir,
    // not root's, unless one was named.
    if let (Cmd::Service(c), None) = (&cli.cmd, &cli.state_dir) {
        return service(c, None, &state_dir);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let to = fleet::Reach {
        state_dir: state_dir.clone(),
        host: cli.host,
    };
    match rt.block_on(run(cli.cmd, state_dir, &to)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mlx-box: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(cmd: Cmd, state_dir: PathBuf, to: &fleet::Reach) -> Result<ExitCode> {
    match cmd {
        Cmd::Up {
            config,
            demo,
            already_running_exit,
        } => up(state_dir, config, demo, already_running_exit).await,
        Cmd::Status { json, all: true } => Ok(if fleet::status_all(&state_dir, json).await? {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        }),
        Cmd::Status { json, all: false } => {
            let s = to.client().await?.call(call::Status {}).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                print_status(&s);
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Start(a) => action(to, Verb::Start, a).await,
        Cmd::Stop(a) => action(to, Verb::Stop, a).await,
        Cmd::Restart(a) => action(to, Verb::Restart, a).await,
        Cmd::Unload(a) => action(to, Verb::Unload, a).await,
        Cmd::Logs {
            name, path: true, ..
        } => {
            // Known without the daemon: <state dir>/logs/NAME.log, NAME.log.1, …
            let logs = state_dir.join("logs");
            let files = mlxbox_core::supervisor::logs::log_files(&logs, &name);
            for f in &files {
                println!("{}", f.display());
            }
            if mlxbox_core::autostart::installed() {
                let agent = mlxbox_core::autostart::agent_logs_dir(&state_dir);
                println!("{}", agent.join("stderr.log").display());
                println!("{}", agent.join("stdout.log").display());
            }
            // A LaunchDaemon's output (a systemd system unit's is in its journal).
            if cfg!(target_os = "macos") && mlxbox_api::paths::autostart_system().exists() {
                let system = std::path::Path::new(mlxbox_core::autostart::SYSTEM_LOGS_DIR);
                println!("{}", system.join("stderr.log").display());
                println!("{}", system.join("stdout.log").display());
            }
            Ok(if files.is_empty() {
                eprintln!("(no log of `{name}` yet in {})", logs.display());
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Cmd::Service(c) => Ok(service(&c, Some(&state_dir), &state_dir)),
        Cmd::Logs {
            name,
            lines,
            follow,
            ..
        } => {
            let c = to.client().await?;
            let logs = call::Logs {
                name: name.clone(),
                lines,
            };
            for l in c.call(logs).await?.lines {
                println!("{l}");
            }
            if follow {
                c.follow_logs(&name, |l| println!("{l}")).await?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Validate { path } => Ok(validate(path.unwrap_or_else(paths::default_config))),
        Cmd::Estimate { config, json } => {
            let path = config.unwrap_or_else(paths::default_config);
            let settings = match config::load(&path) {
                Ok((s, _)) => s,
                Err(e) => {
                    eprintln!("mlx-box: {e}");
                    return Ok(ExitCode::from(2));
                }
            };
            let e = estimate::estimate(&settings, estimate::memory_budget());
            if json {
                println!("{}", serde_json::to_string_pretty(&e)?);
            } else {
                print_estimate(&e);
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Keys(k) => keys(to, k).await,
        Cmd::Control(c) => fleet::control(&state_dir, c)
            .await
            .map(|()| ExitCode::SUCCESS),
        Cmd::Tokens(t) => fleet::tokens(&state_dir, t)
            .await
            .map(|()| ExitCode::SUCCESS),
        Cmd::Hosts(h) => fleet::hosts_cmd(&state_dir, h)
            .await
            .map(|()| ExitCode::SUCCESS),
        Cmd::Bench(a) => bench_cmd::bench(to, a).await,
        Cmd::Models(a) => models::models(to, a).await,
        Cmd::Doctor {
            services,
            long_context_tokens,
            json,
        } => {
            let opts = mlxbox_core::bench::doctor::DoctorOptions {
                services,
                long_context_tokens,
                ..Default::default()
            };
            bench_cmd::doctor(to, opts, json).await
        }
        Cmd::Listeners { json } => {
            let l = to.client().await?.call(call::Listeners {}).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&l)?);
            } else if l.listeners.is_empty() {
                println!("no TCP listener (the control socket only)");
            }
            for x in &l.listeners {
                let tls = if x.tls { "  (TLS)" } else { "" };
                println!("{:<28} {}{tls}", x.name, x.address);
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Alerts { cmd, json } => alerts(to, cmd, json).await,
        Cmd::Down => {
            to.client().await?.call(call::Shutdown {}).await?;
            // Wait until the socket is gone: every service is stopped by then.
            let sock = paths::socket_path(&state_dir);
            let t0 = Instant::now();
            while sock.exists() && t0.elapsed() < Duration::from_secs(120) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            eprintln!("daemon stopped");
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn up(
    state_dir: PathBuf,
    config: Option<PathBuf>,
    demo: bool,
    already_running_exit: u8,
) -> Result<ExitCode> {
    use tracing_subscriber::EnvFilter;
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("MLXBOX_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    // The lock and the signal handlers come first: a second `up` refuses at once, and a SIGTERM during
    // start-up (or the demo's setup) is handled instead of leaving servers behind.
    let lock = match daemon::lock_state_dir(&state_dir) {
        Ok(l) => l,
        // Not a failure for a service manager to retry (see `daemon::EXIT_ALREADY_RUNNING`).
        Err(e @ daemon::DaemonError::AlreadyRunning { .. }) => {
            eprintln!("mlx-box: {e}");
            return Ok(ExitCode::from(already_running_exit));
        }
        Err(e) => return Err(e.into()),
    };
    let mut signals = daemon::Signals::new()?;
    let default = paths::default_config();
    let use_demo = demo || (config.is_none() && !default.exists());
    let (config_path, python) = if use_demo {
        if !demo {
            tracing::info!(
                "no settings at {}: running the demo profile (pass --config PATH for yours)",
                default.display()
            );
        }
        let setup =
            tokio::task::spawn_blocking(|| demo::ensure_env(&|m| tracing::info!("demo: {m}")));
        let env = tokio::select! {
            env = setup => env??,
            _ = signals.terminated() => {
                eprintln!("mlx-box: interrupted while preparing the demo (the next run resumes it)");
                return Ok(ExitCode::from(130));
            }
        };
        let path = demo::write_settings(&state_dir, &env)?;
        (path, Some(env.python.display().to_string()))
    } else {
        (config.unwrap_or(default), None)
    };
    if !config_path.exists() {
        anyhow::bail!(
            "{} does not exist; copy config/settings.toml.example there, or run `mlx-box up --demo`",
            config_path.display()
        );
    }
    daemon::run(
        daemon::DaemonOptions {
            state_dir,
            config_path,
            default_python: python,
        },
        lock,
        signals,
    )
    .await?;
    Ok(ExitCode::SUCCESS)
}

fn validate(path: PathBuf) -> ExitCode {
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            println!("{}:1:1: error: cannot read file: {e}", path.display());
            return ExitCode::from(2);
        }
    };
    let (settings, diags) = config::validate_file(&path, &text);
    for d in &diags {
        println!("{d}");
    }
    match settings {
        Some(s) => {
            let n = s.services.iter().filter(|s| s.enabled).count();
            let w = diags
                .iter()
                .filter(|d| d.severity == Severity::Warning)
                .count();
            eprintln!(
                "{}: valid: {n} launchable service(s), {w} warning(s)",
                path.display()
            );
            ExitCode::SUCCESS
        }
        None => ExitCode::from(2),
    }
}

/// `mlx-box service …`. `explicit_state_dir`: the one named by `--state-dir` / `MLXBOX_STATE_DIR`, if any;
/// `state_dir`: that or this user's default.
fn service(
    c: &ServiceCmd,
    explicit_state_dir: Option<&std::path::Path>,
    state_dir: &std::path::Path,
) -> ExitCode {
    match service_cmd(c, explicit_state_dir, state_dir) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mlx-box: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn service_cmd(
    c: &ServiceCmd,
    explicit_state_dir: Option<&std::path::Path>,
    state_dir: &std::path::Path,
) -> Result<ExitCode> {
    use mlxbox_core::autostart::{self, Loaded, Scope};
    match c {
        ServiceCmd::Install {
            config,
            scope,
            run_as,
            place,
        } => {
            let place = place.clone().place()?;
            let scope = scope.scope();
            let run_as = match scope {
                Scope::System => Some(autostart::RunAs::resolve(run_as.as_deref())?),
                Scope::User => None,
            };
            // Root installing for the operator: the operator's default files, not root's.
            let (default_config, default_state) = match &run_as {
                Some(r) if r.is_someone_else() => autostart::default_paths(&r.home, place.manager),
                _ => (paths::default_config(), state_dir.to_path_buf()),
            };
            let config = config.clone().unwrap_or(default_config);
            let state = explicit_state_dir
                .map(|p| p.to_path_buf())
                .unwrap_or(default_state);
            let agent = autostart::Agent::for_this_binary(
                &config,
                &state,
                scope,
                run_as.clone(),
                place.manager,
            )?;
            let path = autostart::install(&agent, &place)?;
            match (&run_as, &place.root) {
                (_, Some(_)) => println!("wrote {} (under --root: nothing loaded)", path.display()),
                (None, None) => println!(
                    "installed {}: the daemon starts at login and again after a crash",
                    path.display()
                ),
                (Some(r), None) => println!(
                    "installed {}: the daemon starts at boot as {}, and again after a crash",
                    path.display(),
                    r.name
                ),
            }
            if run_as.as_ref().is_some_and(|r| r.uid == 0) {
                eprintln!("note: the system daemon runs as root; `--run-as NAME` runs it as NAME");
            }
            println!(
                "settings {}, state dir {}",
                agent.config.display(),
                agent.state_dir.display()
            );
            match &agent.logs_dir {
                Some(d) => println!("its output: {}", d.display()),
                None => println!("its output: journalctl -u {}", autostart::UNIT),
            }
            Ok(ExitCode::SUCCESS)
        }
        ServiceCmd::Uninstall { scope, place } => {
            let place = place.clone().place()?;
            match autostart::uninstall(scope.scope(), &place)? {
                Some(p) => println!("removed {}", p.display()),
                None => println!("not installed ({})", scope.scope().as_str()),
            }
            Ok(ExitCode::SUCCESS)
        }
        ServiceCmd::Status { place } => {
            let place = place.clone().place()?;
            let all = autostart::status(&place)?;
            let manager = place.manager.as_str();
            for s in &all {
                let loaded = match &s.loaded {
                    None => String::new(),
                    Some(Loaded::Yes) => format!(", loaded by {manager}"),
                    Some(Loaded::No) => format!(", not loaded by {manager}"),
                    Some(Loaded::Unknown(why)) => format!(", {manager}: unknown ({why})"),
                };
                let what = if s.installed {
                    "installed"
                } else {
                    "not installed"
                };
                println!(
                    "{:<7} {what}{loaded}: {}",
                    format!("{}:", s.scope.as_str()),
                    s.path.display()
                );
            }
            let installed: Vec<&str> = all
                .iter()
                .filter(|s| s.installed)
                .map(|s| s.scope.as_str())
                .collect();
            println!(
                "installed: {}",
                match installed.as_slice() {
                    [] => "none",
                    [one] => one,
                    _ => "both",
                }
            );
            Ok(if installed.is_empty() {
                ExitCode::from(3)
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}

async fn action(to: &fleet::Reach, verb: Verb, a: ActionArgs) -> Result<ExitCode> {
    let c = to.client().await?;
    let before = c.call(call::Status {}).await?;
    let target = a.name.clone();
    let reply = c.call(call::Action { target, verb }).await?;
    if a.no_wait || reply.services.is_empty() {
        println!("{verb}: {}", reply.services.join(", "));
        return Ok(ExitCode::SUCCESS);
    }
    // Wait for the outcome: stopped for stop; ready (or failed) for start/restart.
    let pid_before = |n: &str| {
        before
            .services
            .iter()
            .find(|s| s.name == n)
            .and_then(|s| s.pid)
    };
    let deadline = Instant::now() + Duration::from_secs_f64(a.timeout);
    let mut failed = vec![];
    loop {
        let s = c.call(call::Status {}).await?;
        let mine: Vec<&ServiceStatus> = s
            .services
            .iter()
            .filter(|x| reply.services.contains(&x.name))
            .collect();
        let done = mine.iter().all(|x| match verb {
            Verb::Stop => x.state == State::Stopped || x.state == State::Failed,
            Verb::Unload => matches!(x.state, State::Idle | State::Stopped | State::Failed),
            // restart: a new process must be ready (not the old one before it was stopped)
            Verb::Restart => {
                (x.state == State::Ready && (x.pid != pid_before(&x.name) || x.pid.is_none()))
                    || x.state == State::Failed
            }
            Verb::Start => matches!(x.state, State::Ready | State::Failed),
        });
        if done {
            for x in mine {
                println!("{:<16} {}", x.name, x.state.as_str());
                if x.state == State::Failed {
                    failed.push(format!(
                        "{}: {}",
                        x.name,
                        x.last_error.clone().unwrap_or_default()
                    ));
                }
            }
            break;
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "gave up waiting after {} s; see `mlx-box status`",
                a.timeout
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        for f in failed {
            eprintln!("{f}");
        }
        Ok(ExitCode::from(1))
    }
}

/// Runs a call on this machine's key store (`<state>/keys.json`) when no daemon runs, after moving in
/// what the OS keyring still holds from earlier versions (said on stderr when it did).
async fn with_store<T: Send + 'static>(
    state_dir: &std::path::Path,
    f: impl FnOnce(&keys::KeyStore) -> Result<T, keys::KeyError> + Send + 'static,
) -> Result<T> {
    let store = keys::KeyStore::api_keys(state_dir);
    let (out, moved) = mlxbox_core::services::keys::on_store(store, true, f).await?;
    if let Some(m) = moved {
        eprintln!("{}", m.note);
    }
    Ok(out)
}

/// Where a key change was made: keys are written by the daemon while one runs (it serves the change at
/// once); with none running the CLI works on the key store itself, and says so.
enum Via {
    Daemon,
    Store(PathBuf),
}

impl Via {
    fn say(&self) {
        match self {
            Via::Daemon => eprintln!("the running daemon made the change and serves it now"),
            Via::Store(p) => eprintln!(
                "no daemon runs: the key store {} was changed directly (a daemon reads it when it starts)",
                p.display()
            ),
        }
    }
}

/// Asks the daemon; when none runs, does it on the key store directly.
async fn via_daemon<T, F>(
    daemon: impl std::future::Future<Output = Result<T, ClientError>>,
    state_dir: &std::path::Path,
    direct: impl FnOnce() -> F,
) -> Result<(T, Via)>
where
    F: std::future::Future<Output = Result<T>>,
{
    match daemon.await {
        Ok(t) => Ok((t, Via::Daemon)),
        Err(ClientError::NotRunning { .. }) => Ok((
            direct().await?,
            Via::Store(keys::KeyStore::api_keys(state_dir).path().to_path_buf()),
        )),
        Err(e) => Err(e.into()),
    }
}

async fn keys(to: &fleet::Reach, cmd: KeysCmd) -> Result<ExitCode> {
    let state_dir = to.state_dir.as_path();
    let c = to.client().await?;
    match cmd {
        KeysCmd::Add { name, services } => {
            let req = keys::NewKeyRequest {
                name: name.clone(),
                services: services.clone(),
            };
            let (k, via) = via_daemon(
                c.call(call::AddKey { key: req }),
                state_dir,
                || async move {
                    let (key, secret) =
                        with_store(state_dir, move |k| k.add(name.as_deref(), &services)).await?;
                    Ok(keys::NewKey { key, secret })
                },
            )
            .await?;
            // The key alone on stdout (scripts take it from there); the rest on stderr.
            println!("{}", k.secret);
            eprintln!(
                "key {} added{} (only its hash is kept). It is shown only now: copy it to your client.",
                k.key.id,
                if k.key.services.is_empty() {
                    String::new()
                } else {
                    format!(" (only for {})", k.key.services.join(", "))
                }
            );
            via.say();
        }
        KeysCmd::List { json } => {
            let (list, _) = via_daemon(
                async {
                    let l = c.call(call::ListKeys {}).await?;
                    if let Some(note) = &l.note {
                        eprintln!("{note}");
                    }
                    match l.store_error {
                        Some(e) => Err(ClientError::Api(e)),
                        None => Ok(l.keys),
                    }
                },
                state_dir,
                || with_store(state_dir, |k| k.list()),
            )
            .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else if list.is_empty() {
                eprintln!("no API keys (add one: mlx-box keys add --name LABEL)");
            } else {
                println!(
                    "{:<10} {:<28} {:<20} {:<6} SERVICES",
                    "ID", "NAME", "CREATED (UTC)", "LAST4"
                );
                for k in list {
                    println!(
                        "{:<10} {:<28} {:<20} {:<6} {}",
                        k.id,
                        k.name.as_deref().unwrap_or("-"),
                        utc(k.created),
                        k.last4,
                        if k.services.is_empty() {
                            "all".to_string()
                        } else {
                            k.services.join(",")
                        }
                    );
                }
            }
        }
        KeysCmd::Remove { id } => {
            let id2 = id.clone();
            let (info, via) = via_daemon(
                c.call(call::RemoveKey { id: id.clone() }),
                state_dir,
                || with_store(state_dir, move |k| k.remove(&id2)),
            )
            .await?;
            eprintln!(
                "key {} ({}…{}) removed",
                info.id,
                info.name.map(|n| format!("{n}, ")).unwrap_or_default(),
                info.last4
            );
            via.say();
        }
        KeysCmd::Import { config } => {
            // The daemon's own file is imported by the daemon (the only writer of it while it runs);
            // another file, or any file when no daemon runs, here.
            let daemon_config = c
                .call(call::Status {})
                .await
                .ok()
                .map(|s| PathBuf::from(s.config_path));
            let same = |p: &std::path::Path| {
                daemon_config
                    .as_deref()
                    .is_some_and(|d| std::fs::canonicalize(d).ok() == std::fs::canonicalize(p).ok())
            };
            let path = config
                .clone()
                .or(daemon_config.clone())
                .unwrap_or_else(paths::default_config);
            let (report, via) = if daemon_config.is_some() && same(&path) {
                (c.call(call::ImportKeys {}).await?, Via::Daemon)
            } else {
                let p = path.clone();
                let r = with_store(state_dir, move |k| keys::import_from_settings(k, &p)).await?;
                let store = keys::KeyStore::api_keys(state_dir).path().to_path_buf();
                (r, Via::Store(store))
            };
            if report.imported.is_empty() && report.blank_removed == 0 {
                eprintln!(
                    "{}: no plaintext api_key / api_keys to import",
                    path.display()
                );
            } else {
                for k in &report.imported {
                    println!("imported key {} (…{})", k.id, k.last4);
                }
                eprintln!(
                    "{} key(s) hashed into the key store and removed from {}",
                    report.imported.len(),
                    path.display(),
                );
                if report.blank_removed > 0 {
                    eprintln!(
                        "{} blank api_key entr{} removed (an empty key is no key)",
                        report.blank_removed,
                        if report.blank_removed == 1 {
                            "y"
                        } else {
                            "ies"
                        }
                    );
                }
                if let Some(b) = &report.scrubbed_backup {
                    eprintln!("the plaintext keys were also removed from {}", b.display());
                }
                match via {
                    Via::Daemon => via.say(),
                    // Another file than the running daemon's, or no daemon: tell one to re-read.
                    Via::Store(_) => poke_daemon(state_dir).await,
                }
            }
        }
        KeysCmd::Reload => {
            let n = u64::from(c.call(call::ReloadKeys {}).await?.keys);
            eprintln!("the daemon now accepts {n} key(s)");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Tells a running daemon that the keys changed; no daemon is fine (it reads them when it starts).
async fn poke_daemon(state_dir: &std::path::Path) {
    match Client::new(state_dir).call(call::ReloadKeys {}).await {
        Ok(n) => eprintln!("the running daemon now accepts {} key(s)", n.keys),
        Err(ClientError::NotRunning { .. }) => {}
        Err(e) => eprintln!(
            "warning: the daemon did not reload its keys ({e}); run `mlx-box keys reload`"
        ),
    }
}

/// `YYYY-MM-DD HH:MM` (UTC) of a unix time, without a date crate (civil-from-days, H. Hinnant).
fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        rem / 3600,
        (rem % 3600) / 60
    )
}

fn print_estimate(e: &estimate::Estimate) {
    let b = |x: Option<u64>| {
        x.map(mlxbox_api::units::bytes)
            .unwrap_or_else(|| "?".into())
    };
    println!(
        "{:<16} {:>10} {:>10} {:>12} {:>10} {:>10}",
        "NAME", "WEIGHTS", "KV/TOKEN", "CONTEXT", "KV", "TOTAL"
    );
    for s in &e.services {
        let ctx = s
            .context_tokens
            .map(|c| format!("{c}×{}", s.concurrency))
            .unwrap_or_else(|| "?".into());
        println!(
            "{:<16} {:>10} {:>10} {:>12} {:>10} {:>10}",
            s.name,
            b(s.weights_bytes),
            b(s.kv_bytes_per_token),
            ctx,
            b(s.kv_bytes),
            b(s.total_bytes)
        );
    }
    let budget = e
        .budget_bytes
        .map(|x| {
            format!(
                "{} ({})",
                mlxbox_api::units::bytes(x),
                e.budget_source.as_deref().unwrap_or("")
            )
        })
        .unwrap_or_else(|| "unknown".into());
    println!(
        "total {} of budget {budget}",
        mlxbox_api::units::bytes(e.total_bytes)
    );
    for s in &e.services {
        for r in &s.reasons {
            println!("{}: {r}", s.name);
        }
    }
}

pub(crate) fn print_status(s: &StatusReport) {
    let ready = s
        .services
        .iter()
        .filter(|x| x.state == State::Ready)
        .count();
    println!(
        "{}/{} ready · memory {} used of {} · swap {} · thermal {}",
        ready,
        s.services.len(),
        mlxbox_api::units::bytes(s.memory.used_bytes),
        mlxbox_api::units::bytes(s.memory.total_bytes),
        mlxbox_api::units::bytes(s.memory.swap_used_bytes),
        s.thermal.state
    );
    println!(
        "config {}{}",
        s.config_path,
        if s.config.valid {
            ""
        } else {
            " (INVALID: running the last good one)"
        }
    );
    // "keeping the machine awake: 3 servers loaded" ([app] prevent_sleep).
    if let Some(a) = &s.awake {
        println!("{}", a.line());
    }
    println!();
    println!(
        "{:<16} {:<10} {:<10} {:>8} {:>6} {:>8} {:>10}  MODEL",
        "NAME", "KIND", "STATE", "PID", "PORT", "RESTARTS", "MEMORY"
    );
    for x in &s.services {
        println!(
            "{:<16} {:<10} {:<10} {:>8} {:>6} {:>8} {:>10}  {}",
            x.name,
            x.kind.as_str(),
            x.state.as_str(),
            x.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
            x.port.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
            x.restarts,
            x.memory_bytes
                .map(mlxbox_api::units::bytes)
                .unwrap_or_else(|| "-".into()),
            x.model.as_deref().unwrap_or("-"),
        );
    }
    for x in s.services.iter().filter(|x| !x.ranks.is_empty()) {
        println!(
            "{}: {}{}",
            x.name,
            x.ranks.join(", "),
            x.hostfile
                .as_deref()
                .map(|h| format!("; hostfile {h}"))
                .unwrap_or_default()
        );
    }
    let errors: Vec<&ServiceStatus> = s
        .services
        .iter()
        .filter(|x| x.last_error.is_some() && x.state != State::Ready)
        .collect();
    if !errors.is_empty() {
        println!();
        for x in errors {
            let e = x.last_error.as_deref().unwrap_or_default();
            println!("{}: {}", x.name, e.lines().next().unwrap_or_default());
        }
    }
    if !s.hosts.is_empty() {
        println!();
        println!(
            "{:<16} {:<24} {:<12} {:>9} {:>9}  SERVICES",
            "HOST", "ADDRESS", "LINK", "RTT p50", "RTT p99"
        );
        let ms = |v: Option<f64>| {
            v.map(|v| format!("{v:.2} ms"))
                .unwrap_or_else(|| "-".into())
        };
        for h in &s.hosts {
            let ready = h
                .services
                .iter()
                .filter(|x| x.state == State::Ready)
                .count();
            println!(
                "{:<16} {:<24} {:<12} {:>9} {:>9}  {ready}/{} ready{}",
                h.name,
                h.address,
                if h.reachable { "up" } else { "UNREACHABLE" },
                ms(h.rtt_p50_ms),
                ms(h.rtt_p99_ms),
                h.services.len(),
                h.error
                    .as_deref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            );
        }
    }
    for p in &s.pools {
        println!();
        println!(
            "POOL {} (port {}; {} retries, {} refused)",
            p.name,
            p.port.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
            p.retries,
            p.refused
        );
        println!(
            "  {:<24} {:>6} {:<10} {:>9} {:>7} {:>9} {:>9} {:>8}",
            "MEMBER", "WEIGHT", "HEALTH", "REQUESTS", "ERRORS", "AFFINITY", "IN FLIGHT", "TOK/S"
        );
        for m in &p.members {
            let health = match m.health {
                mlxbox_core::api::MemberHealth::In => "in",
                mlxbox_core::api::MemberHealth::Probation => "probation",
                mlxbox_core::api::MemberHealth::Out => "OUT",
            };
            println!(
                "  {:<24} {:>6} {:<10} {:>9} {:>7} {:>9} {:>9} {:>8.1}{}",
                m.member,
                m.weight,
                health,
                m.requests,
                m.errors,
                m.affinity_hits,
                m.in_flight,
                m.output_tok_s,
                m.why
                    .as_deref()
                    .map(|w| format!("  ({w})"))
                    .unwrap_or_default()
            );
        }
    }
    if !s.alerts.is_empty() {
        println!();
        for a in &s.alerts {
            println!("{}", alert_line(a));
        }
    }
}

/// `[Warning] Swap in use: … (acknowledged)`.
fn alert_line(a: &mlxbox_api::Alert) -> String {
    let quiet = if a.acknowledged {
        " (acknowledged)".to_string()
    } else {
        match a.snoozed_until {
            Some(t) if t > mlxbox_api::now_ms() => {
                format!(" (snoozed until {} UTC)", utc(t / 1000))
            }
            _ => String::new(),
        }
    };
    format!("[{:?}] {}: {}{quiet}", a.severity, a.title, a.body)
}

async fn alerts(to: &fleet::Reach, cmd: Option<AlertsCmd>, json: bool) -> anyhow::Result<ExitCode> {
    use mlxbox_api::AlertAction;
    let client = to.client().await?;
    let (id, action) = match cmd {
        None => {
            let alerts = client.call(call::Status {}).await?.alerts;
            if json {
                println!("{}", serde_json::to_string_pretty(&alerts)?);
            } else if alerts.is_empty() {
                println!("no active alert");
            }
            for a in alerts.iter().filter(|_| !json) {
                println!("{:<32} {}", a.id, alert_line(a));
            }
            return Ok(ExitCode::SUCCESS);
        }
        Some(AlertsCmd::Ack { id }) => (id, AlertAction::Ack),
        Some(AlertsCmd::Unmute { id }) => (id, AlertAction::Unmute),
        Some(AlertsCmd::Snooze { id, duration }) => {
            let minutes = u32::try_from(duration.as_secs().div_ceil(60)).unwrap_or(u32::MAX);
            let action = AlertAction::Snooze { minutes };
            action
                .check()
                .map_err(|e| anyhow::anyhow!("{e} (`--for 30m`, `--for 2h`)"))?;
            (id, action)
        }
    };
    let a = client.call(call::AlertAction { id, action }).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&a)?);
    } else {
        println!("{}", alert_line(&a));
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01 00:00");
        assert_eq!(super::utc(1_709_210_096), "2024-02-29 12:34");
    }
}
