//! The fleet verbs: `--host NAME` (which daemon a verb talks to), `control info`, `tokens`, `hosts`, and
//! `status --all`. The behaviour is in `mlxbox_core::remote` and `mlxbox_client::pin`; this is the CLI.

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use mlxbox_api::call;
use mlxbox_client::control::Client;
use mlxbox_core::config;
use mlxbox_core::keys::{KeyError, KeyInfo, KeyStore, Keyring};
use mlxbox_core::paths;
use mlxbox_core::remote::{self, hosts, Role};
use std::path::{Path, PathBuf};

/// Which daemon a verb talks to: this Mac's (its state dir), or `--host NAME`'s. Made once from the
/// command line and handed to each verb (no process-wide setting).
pub struct Reach {
    pub state_dir: PathBuf,
    pub host: Option<String>,
}

impl Reach {
    /// The client for this verb: this machine's daemon, or the `--host` one (its address and pinned
    /// certificate from settings.toml's [hosts], its token from the keyring: the same client the daemon
    /// uses to forward a window's request to that Mac).
    pub async fn client(&self) -> Result<Client> {
        match &self.host {
            None => Ok(Client::new(&self.state_dir)),
            Some(name) => remote_client(&self.state_dir, name).await,
        }
    }
}

#[derive(Subcommand)]
pub enum ControlCmd {
    /// Where this machine's control API listens for other hosts, and the fingerprint they must pin.
    Info {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum TokensCmd {
    /// Make an access token for the remote control API and print it (the only time it is shown).
    Add {
        /// read: see everything, change nothing; admin: everything.
        #[arg(long, value_parser = ["read", "admin"])]
        role: String,
        #[arg(long)]
        name: Option<String>,
    },
    /// List the tokens: id, label, role, created, last 4 characters. Never a token.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove a token (by id, or by its label when unique).
    Remove { id: String },
}

#[derive(Subcommand)]
pub enum HostsCmd {
    /// Add (or update) another Mac: reads the fingerprint it presents, asks you to confirm it against
    /// its `mlx-box control info`, asks for a token made there, checks both, then writes [hosts.NAME].
    Add {
        name: String,
        /// Its [control] listen address, HOST:PORT.
        address: String,
        /// The fingerprint you expect (from its `mlx-box control info`): then nothing is asked.
        #[arg(long)]
        fingerprint: Option<String>,
        /// Read the token from the first line of stdin instead of asking.
        #[arg(long)]
        token_stdin: bool,
    },
    /// The hosts of settings.toml.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove [hosts.NAME] and its token.
    Remove { name: String },
    /// Check the link to a host now: round trip (20 pings, p50/p99) and throughput (a download over the
    /// control connection). The daemon watches the round trip all the time; this adds the throughput.
    Check {
        name: String,
        /// Size of the download, MB.
        #[arg(long, default_value_t = 32)]
        megabytes: u64,
        #[arg(long)]
        json: bool,
    },
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await?
}

/// The settings.toml a verb reads without asking the daemon: the running daemon's, else the platform's.
pub(crate) async fn settings_path(state_dir: &Path) -> PathBuf {
    match Client::new(state_dir).call(call::Status {}).await {
        Ok(s) => PathBuf::from(s.config_path),
        Err(_) => paths::default_config(),
    }
}

async fn remote_client(state_dir: &Path, name: &str) -> Result<Client> {
    let path = settings_path(state_dir).await;
    let (settings, _) =
        config::load(&path).with_context(|| format!("reading {}", path.display()))?;
    let Some(h) = settings.host(name).cloned() else {
        let known: Vec<&str> = settings.hosts.iter().map(|h| h.name.as_str()).collect();
        bail!(
            "no host named `{name}` in {} (known: {}); add it with `mlx-box hosts add {name} HOST:PORT`",
            path.display(),
            if known.is_empty() { "none".into() } else { known.join(", ") }
        );
    };
    let n = name.to_string();
    let token = blocking(move || Ok(hosts::token(&Keyring::open_control()?, &n)?))
        .await?
        .with_context(|| {
            format!("no token for host `{name}` in the keyring; run `mlx-box hosts add {name} {}` again", h.address)
        })?;
    Ok(Client::remote(name, &h.address, &h.fingerprint, &token)?)
}

pub async fn control(state_dir: &Path, cmd: ControlCmd) -> Result<()> {
    let ControlCmd::Info { json } = cmd;
    let path = settings_path(state_dir).await;
    let listen = config::load(&path)
        .ok()
        .and_then(|(s, _)| s.control.listen.map(|a| a.to_string()));
    let info = remote::ControlInfo {
        listen,
        fingerprint: remote::identity::stored_fingerprint(state_dir)?,
        certificate: remote::identity::cert_path(state_dir).display().to_string(),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&info)?);
        return Ok(());
    }
    match &info.listen {
        Some(l) => println!("listen       {l} (TLS)"),
        None => println!(
            "listen       off (set [control] listen in {})",
            path.display()
        ),
    }
    match &info.fingerprint {
        Some(f) => println!("fingerprint  {f}"),
        None => println!(
            "fingerprint  none yet: the daemon makes its certificate when it first listens"
        ),
    }
    println!("certificate  {}", info.certificate);
    Ok(())
}

fn role_of(k: &KeyInfo) -> &str {
    k.services.first().map(String::as_str).unwrap_or("?")
}

/// Runs a call on this machine's token store (`<state>/tokens.json`), after moving in the tokens
/// earlier versions kept in the OS keyring (said on stderr when it did). The daemon never writes this
/// store but to migrate, under the same lock; it reads it again on `keys reload`.
async fn with_tokens<T: Send + 'static>(
    state_dir: &Path,
    f: impl FnOnce(&KeyStore) -> Result<T, KeyError> + Send + 'static,
) -> Result<T> {
    let store = KeyStore::tokens(state_dir);
    let (out, moved) = mlxbox_core::services::keys::on_store(store, true, f).await?;
    if let Some(m) = moved {
        eprintln!("{}", m.note);
    }
    Ok(out)
}

pub async fn tokens(state_dir: &Path, cmd: TokensCmd) -> Result<()> {
    match cmd {
        TokensCmd::Add { role, name } => {
            let role = Role::parse(&role).context("role: read or admin")?;
            let (info, secret) = with_tokens(state_dir, move |s| {
                s.add(name.as_deref(), &[role.as_str().to_string()])
            })
            .await?;
            println!("{secret}");
            eprintln!(
                "token {} ({}) added (only its hash is kept). It is shown only now: give it to the host that will use it (`mlx-box hosts add`).",
                info.id,
                role.as_str()
            );
        }
        TokensCmd::List { json } => {
            let list = with_tokens(state_dir, |s| s.list()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else if list.is_empty() {
                println!("no tokens; make one with `mlx-box tokens add --role read|admin`");
            } else {
                println!("{:<10} {:<16} {:<6} {:<6}", "ID", "LABEL", "ROLE", "ENDS");
                for k in &list {
                    println!(
                        "{:<10} {:<16} {:<6} …{}",
                        k.id,
                        k.name.as_deref().unwrap_or("-"),
                        role_of(k),
                        k.last4
                    );
                }
            }
        }
        TokensCmd::Remove { id } => {
            let info = with_tokens(state_dir, move |s| s.remove(&id)).await?;
            eprintln!("token {} removed", info.id);
        }
    }
    // A running daemon reads its tokens again at once (a removed token stops working now).
    let _ = Client::new(state_dir).call(call::ReloadKeys {}).await;
    Ok(())
}

pub async fn hosts_cmd(state_dir: &Path, cmd: HostsCmd) -> Result<()> {
    let path = settings_path(state_dir).await;
    match cmd {
        HostsCmd::Add {
            name,
            address,
            fingerprint,
            token_stdin,
        } => add_host(&path, &name, &address, fingerprint, token_stdin).await,
        HostsCmd::List { json } => {
            let (s, _) =
                config::load(&path).with_context(|| format!("reading {}", path.display()))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s.hosts)?);
            } else if s.hosts.is_empty() {
                println!(
                    "no hosts in {}; add one with `mlx-box hosts add NAME HOST:PORT`",
                    path.display()
                );
            } else {
                for h in &s.hosts {
                    println!("{:<16} {:<24} {}", h.name, h.address, h.fingerprint);
                }
            }
            Ok(())
        }
        HostsCmd::Check {
            name,
            megabytes,
            json,
        } => {
            let c = remote_client(state_dir, &name).await?;
            let mut rtt = vec![];
            for _ in 0..21 {
                let t = std::time::Instant::now();
                c.call(call::Ping {}).await?;
                rtt.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            rtt.remove(0); // the first one may open the connection
            rtt.sort_by(f64::total_cmp);
            let p = |q: f64| rtt[((rtt.len() - 1) as f64 * q).round() as usize];
            let bytes = megabytes.clamp(1, 256) * 1_000_000;
            let bytes = bytes.min(mlxbox_api::control::MAX_LINK_TEST_BYTES);
            let mbs = c.link_throughput(bytes).await?;
            if json {
                let v = serde_json::json!({"host": name, "rtt_p50_ms": p(0.5), "rtt_p99_ms": p(0.99),
                    "throughput_mb_s": mbs, "bytes": bytes});
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!(
                    "{name}: round trip p50 {:.3} ms · p99 {:.3} ms (20 pings) · throughput {mbs:.1} MB/s ({} MB over the control connection)",
                    p(0.5),
                    p(0.99),
                    bytes / 1_000_000
                );
            }
            Ok(())
        }
        HostsCmd::Remove { name } => {
            let text = std::fs::read_to_string(&path)?;
            let next = hosts::without_host(&text, &name)?;
            config::write_with_backup(&path, next.as_bytes())?;
            let n = name.clone();
            blocking(move || Ok(Keyring::open_control()?.delete_secret(&hosts::token_user(&n))?))
                .await?;
            eprintln!(
                "host {name} removed from {} (its token too)",
                path.display()
            );
            Ok(())
        }
    }
}

fn read_line(prompt: &str) -> Result<String> {
    use std::io::Write;
    if !prompt.is_empty() {
        eprint!("{prompt}");
        std::io::stderr().flush()?;
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(line.trim().to_string())
}

async fn add_host(
    path: &Path,
    name: &str,
    address: &str,
    fingerprint: Option<String>,
    token_stdin: bool,
) -> Result<()> {
    if !hosts::valid_name(name) {
        bail!("`{name}` cannot be a host name: use letters, digits, - and _ (64 at most)");
    }
    if address
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok())
        .is_none()
    {
        bail!("`{address}` has no port: give HOST:PORT, the host's [control] listen");
    }
    let seen = Client::fingerprint_of(address).await?;
    let pinned = match fingerprint {
        Some(f) => {
            let want = remote::parse_fingerprint(&f).context(
                "--fingerprint is not a SHA-256 fingerprint (64 hex digits, `:` optional)",
            )?;
            if want != seen {
                bail!("{address} presents certificate {seen}, not {want}: refused (is it the host you mean?)");
            }
            want
        }
        None => {
            eprintln!("{address} presents the certificate\n  {seen}\nCompare it with `mlx-box control info` on that host.");
            let yes = read_line("Trust it? [y/N] ")?;
            if !matches!(yes.as_str(), "y" | "Y" | "yes") {
                bail!("not trusted; nothing was written");
            }
            seen
        }
    };
    let token = if token_stdin {
        read_line("")?
    } else {
        read_line(&format!(
            "Access token for {name} (made there with `mlx-box tokens add --role read|admin`): "
        ))?
    };
    if token.is_empty() {
        bail!("no token given; nothing was written");
    }
    // Both checked before anything is kept: the pin, and the token (a status over it).
    let status = Client::remote(name, address, &pinned, &token)?
        .call(call::Status {})
        .await
        .with_context(|| format!("checking the token against {name}"))?;
    let (n, t) = (name.to_string(), token);
    blocking(move || Ok(Keyring::open_control()?.set_secret(&hosts::token_user(&n), &t)?)).await?;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let next = hosts::with_host(&text, name, address, &pinned)?;
    config::write_with_backup(path, next.as_bytes())?;
    eprintln!(
        "host {name} added to {}: {} service(s), daemon {}; its token is in the keyring",
        path.display(),
        status.services.len(),
        status.version
    );
    Ok(())
}

/// The client for a host name of `--hosts` (`local`: this Mac).
async fn client_named(state_dir: &Path, name: &str) -> Result<Client> {
    if name == "local" {
        Ok(Client::new(state_dir))
    } else {
        remote_client(state_dir, name).await
    }
}

/// `bench --hosts a,b`: the same load started on every host at once, each run by its own daemon
/// (results saved there too), then side by side: per level each host's TTFT and E2E p50 and output
/// tok/s, the combined tok/s, and per host how its generation speed moved from the first level to the
/// last with its hottest thermal state (the seed's signal: one Mac slowing while the other does not).
pub async fn bench_hosts(
    state_dir: &Path,
    hosts: &[String],
    opts: &mlxbox_core::bench::BenchOptions,
    json: bool,
) -> Result<std::process::ExitCode> {
    use mlxbox_core::bench::{BenchResult, CheckStatus};
    let mut clients = vec![];
    for h in hosts {
        clients.push((h.clone(), client_named(state_dir, h).await?));
    }
    // Started together, so the hosts carry the load at the same time.
    let started = futures_util::future::join_all(clients.iter().map(|(h, c)| async move {
        c.call(call::BenchStart {
            options: opts.clone(),
        })
        .await
        .map(|s| s.id)
        .with_context(|| format!("starting the benchmark on {h}"))
    }))
    .await;
    let ids: Vec<String> = started.into_iter().collect::<Result<_>>()?;
    eprintln!(
        "benchmark running on {} (runs {})",
        hosts.join(", "),
        ids.join(", ")
    );
    let results: Vec<BenchResult> =
        futures_util::future::join_all(clients.iter().zip(&ids).map(|((h, c), id)| async move {
            let t0 = std::time::Instant::now();
            loop {
                if let Ok(r) = c.call(call::BenchResult { id: id.to_string() }).await {
                    eprintln!("{h}: done in {:.0} s", t0.elapsed().as_secs_f64());
                    return Ok(r);
                }
                if t0.elapsed() > std::time::Duration::from_secs(6 * 3600) {
                    bail!("{h}: benchmark {id} did not end within 6 h");
                }
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        }))
        .await
        .into_iter()
        .collect::<Result<_>>()?;
    let fail = results.iter().any(|r| r.verdict == CheckStatus::Fail);
    if json {
        let v: serde_json::Map<String, serde_json::Value> = hosts
            .iter()
            .zip(&results)
            .map(|(h, r)| (h.clone(), serde_json::to_value(r).unwrap_or_default()))
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print_side_by_side(hosts, &results);
    }
    Ok(if fail {
        std::process::ExitCode::from(1)
    } else {
        std::process::ExitCode::SUCCESS
    })
}

fn print_side_by_side(hosts: &[String], results: &[mlxbox_core::bench::BenchResult]) {
    let f = |v: Option<f64>| v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "–".into());
    let mut services: Vec<&str> = vec![];
    for r in results {
        for s in &r.services {
            if !services.contains(&s.name.as_str()) {
                services.push(&s.name);
            }
        }
    }
    for name in services {
        println!("\n{name}");
        let per: Vec<Option<&mlxbox_core::bench::ServiceResult>> = results
            .iter()
            .map(|r| r.services.iter().find(|s| s.name == name))
            .collect();
        let mut header = format!("  {:<9}", "LEVEL");
        for h in hosts {
            header.push_str(&format!(" | {h:>10} TTFT/E2E p50 ms · out tok/s"));
        }
        header.push_str(" | combined out tok/s");
        println!("{header}");
        let levels: Vec<(u32, Option<f64>)> = per
            .iter()
            .flatten()
            .flat_map(|s| s.levels.iter().map(|l| (l.concurrency, l.rate)))
            .fold(vec![], |mut v, x| {
                if !v.contains(&x) {
                    v.push(x);
                }
                v
            });
        for (c, rate) in levels {
            let label = match rate {
                Some(r) => format!("rate={r}"),
                None => format!("c={c}"),
            };
            let mut line = format!("  {label:<9}");
            let mut total = 0.0;
            for s in &per {
                let l = s.and_then(|s| {
                    s.levels
                        .iter()
                        .find(|l| l.concurrency == c && l.rate == rate)
                });
                match l {
                    Some(l) => {
                        total += l.output_tok_s;
                        line.push_str(&format!(
                            " | {:>10}/{:<10} {:>15.1}",
                            f(l.ttft_ms.map(|s| s.p50)),
                            f(l.e2e_ms.map(|s| s.p50)),
                            l.output_tok_s
                        ));
                    }
                    None => line.push_str(&format!(" | {:>37}", "–")),
                }
            }
            line.push_str(&format!(" | {total:.1}"));
            println!("{line}");
        }
        for ((h, s), r) in hosts.iter().zip(&per).zip(results) {
            let Some(s) = s else {
                println!("  {h}: not measured there");
                continue;
            };
            if let Some(why) = &s.skipped {
                println!("  {h}: not measured: {why}");
                continue;
            }
            let gen: Vec<f64> = s
                .levels
                .iter()
                .filter_map(|l| l.gen_tok_s.map(|g| g.p50))
                .collect();
            let drift = match (gen.first(), gen.last()) {
                (Some(a), Some(b)) if *a > 0.0 && gen.len() > 1 => {
                    format!("{:+.0} %", (b - a) / a * 100.0)
                }
                _ => "–".into(),
            };
            println!(
                "  {h}: generation tok/s p50 first → last level {} → {} ({drift}) · hottest thermal {}{} · {}",
                f(gen.first().copied()),
                f(gen.last().copied()),
                r.monitor.max_thermal.as_str(),
                if s.throttling_suspected { " · throttling suspected" } else { "" },
                s.verdict.as_str()
            );
        }
    }
}

/// `status --all`: this machine, then every host of settings.toml (an unreachable one says so and
/// does not stop the others).
pub async fn status_all(state_dir: &Path, json: bool) -> Result<bool> {
    let path = settings_path(state_dir).await;
    let hosts = config::load(&path)
        .map(|(s, _)| s.hosts)
        .unwrap_or_default();
    let mut all = vec![(
        "this machine".to_string(),
        Client::new(state_dir)
            .call(call::Status {})
            .await
            .map_err(anyhow::Error::from),
    )];
    for h in &hosts {
        let r = match remote_client(state_dir, &h.name).await {
            Ok(c) => c.call(call::Status {}).await.map_err(anyhow::Error::from),
            Err(e) => Err(e),
        };
        all.push((h.name.clone(), r));
    }
    let ok = all.iter().all(|(_, r)| r.is_ok());
    if json {
        let v: serde_json::Map<String, serde_json::Value> = all
            .iter()
            .map(|(n, r)| {
                let v = match r {
                    Ok(s) => serde_json::to_value(s).unwrap_or_default(),
                    Err(e) => serde_json::json!({"error": format!("{e:#}")}),
                };
                (n.clone(), v)
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for (n, r) in &all {
            println!("== {n}");
            match r {
                Ok(s) => crate::print_status(s),
                Err(e) => println!("unreachable: {e:#}"),
            }
            println!();
        }
    }
    Ok(ok)
}
