//! `mlx-box models`: the models on this Mac (the hub cache and the settings' local paths), their disk
//! use, and their removal. It asks the daemon when one runs (it knows the services' states and last
//! requests) and reads the settings and the cache itself when none does.

use crate::fleet::Reach;
use anyhow::{bail, Result};
use clap::Subcommand;
use mlxbox_api::call;
use mlxbox_api::models::{LocalModel, ModelList};
use mlxbox_api::units::bytes;
use mlxbox_client::control::{Client, ClientError};
use mlxbox_core::config::{self, Settings};
use mlxbox_core::models::{self, list::hubs, remove};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct ModelsArgs {
    #[command(subcommand)]
    cmd: Option<ModelsCmd>,
    /// settings.toml that says which services use which model (default: the running daemon's, else
    /// the platform config path).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// `models` alone: the list as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum ModelsCmd {
    /// Every model: id, size on disk, quantization, parameters, context length, the memory it needs at
    /// its services' context (the budget's estimate), who uses it, whether it is complete. The default.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Disk use per model, largest first, and in total; names what no service uses.
    Du {
        #[arg(long)]
        json: bool,
    },
    /// Download a repository from the Hub (`HF_ENDPOINT`) into the hub cache, after checking that it
    /// fits the memory budget and the disk; resumable, verified, never a partial file in `snapshots/`.
    Pull(crate::models_pull::PullArgs),
    /// Store a Hugging Face token (read from stdin) in the OS keyring, for gated models.
    Login {
        /// Remove it instead.
        #[arg(long)]
        logout: bool,
    },
    /// Remove a model from the hub cache (or one revision: a hash, a prefix of one, or a ref such as
    /// `main`), with the blobs no remaining revision links to. Refused while a service uses it.
    Rm {
        id: String,
        #[arg(long, value_name = "REV")]
        revision: Option<String>,
        /// Do not ask.
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

pub async fn models(to: &Reach, a: ModelsArgs) -> Result<ExitCode> {
    match a.cmd.unwrap_or(ModelsCmd::List { json: a.json }) {
        ModelsCmd::List { json } => {
            let l = fetch(to, a.config).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&l)?);
            } else {
                print_list(&l);
            }
        }
        ModelsCmd::Du { json } => {
            let l = fetch(to, a.config).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&du_json(&l))?);
            } else {
                print_du(&l);
            }
        }
        ModelsCmd::Pull(p) => {
            if to.host.is_some() {
                bail!("`models pull` downloads to this Mac's cache only: run it on that Mac");
            }
            let settings = match load_settings(&to.state_dir, a.config).await {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("mlx-box: {e:#}\n(checking the fit without the services' context)");
                    None
                }
            };
            return crate::models_pull::pull(settings, p).await;
        }
        ModelsCmd::Login { logout } => return crate::models_pull::login(logout).await,
        ModelsCmd::Rm { id, revision, yes } => {
            if to.host.is_some() {
                bail!("`models rm` removes from this Mac's cache only: run it on that Mac");
            }
            return rm(&to.state_dir, a.config, &id, revision.as_deref(), yes).await;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The daemon's list (states and last use included), else this process's own reading.
async fn fetch(to: &Reach, config: Option<PathBuf>) -> Result<ModelList> {
    if to.host.is_some() {
        return Ok(to.client().await?.call(call::ListModels {}).await?);
    }
    if config.is_none() {
        match Client::new(&to.state_dir).call(call::ListModels {}).await {
            Ok(l) => return Ok(l),
            // No daemon, or one from before this request: read it here.
            Err(ClientError::NotRunning { .. }) => {}
            Err(ClientError::Refused(e)) if e.kind == mlxbox_api::control::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    let settings = match load_settings(&to.state_dir, config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "mlx-box: {e:#}\n(listing the cache without knowing which services use what)"
            );
            None
        }
    };
    let l = tokio::task::spawn_blocking(move || {
        let s = settings.as_ref();
        models::list(&hubs(s), s, &models::Live::default())
    })
    .await?;
    Ok(l)
}

/// The settings that say who uses what: `--config`, else the running daemon's file, else the platform
/// default; `None` when that file does not exist (no services, nothing in use).
async fn load_settings(state_dir: &Path, config: Option<PathBuf>) -> Result<Option<Settings>> {
    let path = match config {
        Some(p) => p,
        None => crate::fleet::settings_path(state_dir).await,
    };
    if !path.exists() {
        eprintln!(
            "(no settings at {}: no service uses any model)",
            path.display()
        );
        return Ok(None);
    }
    Ok(Some(config::load(&path)?.0))
}

async fn rm(
    state_dir: &Path,
    config: Option<PathBuf>,
    id: &str,
    revision: Option<&str>,
    yes: bool,
) -> Result<ExitCode> {
    // Refusing while in use needs the settings: unreadable ones refuse the removal too.
    let settings = load_settings(state_dir, config).await?;
    let p = remove::plan(&hubs(settings.as_ref()), settings.as_ref(), id, revision)?;
    let revs: Vec<&str> = p.revisions.iter().map(|r| &r[..r.len().min(12)]).collect();
    println!(
        "{}: remove revision{} {}, {} blob{} ({}, {} bytes){}",
        p.id,
        if revs.len() == 1 { "" } else { "s" },
        revs.join(", "),
        p.blobs.len(),
        if p.blobs.len() == 1 { "" } else { "s" },
        bytes(p.blob_bytes()),
        p.blob_bytes(),
        if p.whole {
            format!("; the whole {}", p.dir.display())
        } else {
            String::new()
        }
    );
    if !yes && !confirm()? {
        eprintln!("nothing removed");
        return Ok(ExitCode::from(1));
    }
    let freed = tokio::task::spawn_blocking(move || remove::execute(&p)).await??;
    println!("freed {} ({freed} bytes)", bytes(freed));
    Ok(ExitCode::SUCCESS)
}

/// Asks on the terminal; with no terminal, refuses (a script says `--yes`).
fn confirm() -> Result<bool> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        bail!("not removing without a terminal to ask on: pass --yes");
    }
    eprint!("Remove? [y/N] ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}

/// `7.6B`, `494M`, `8.2K`.
fn count(n: u64) -> String {
    let v = n as f64;
    match n {
        0..1_000 => n.to_string(),
        1_000..1_000_000 => format!("{:.1}K", v / 1e3),
        1_000_000..1_000_000_000 => format!("{:.0}M", v / 1e6),
        _ => format!("{:.1}B", v / 1e9),
    }
}

fn users(m: &LocalModel) -> String {
    if m.users.is_empty() {
        return "-".into();
    }
    m.users
        .iter()
        .map(|u| match u.state {
            Some(s) => format!("{} ({s})", u.service),
            None if !u.enabled => format!("{} (disabled)", u.service),
            None => u.service.clone(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The largest estimate among its services (each at its own context).
fn memory(m: &LocalModel) -> String {
    m.users
        .iter()
        .filter_map(|u| u.estimate_bytes.map(|b| (b, u.context_tokens)))
        .max()
        .map(|(b, ctx)| match ctx {
            Some(c) => format!("{} @{c}", bytes(b)),
            None => bytes(b),
        })
        .unwrap_or_else(|| "-".into())
}

fn ago(ms: Option<u64>) -> String {
    let Some(t) = ms else { return "-".into() };
    let s = mlxbox_api::now_ms().saturating_sub(t) / 1000;
    match s {
        0..60 => format!("{s}s ago"),
        60..3600 => format!("{}m ago", s / 60),
        3600..86_400 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86_400),
    }
}

fn print_list(l: &ModelList) {
    if l.models.is_empty() {
        println!("no models in {}", l.hubs.join(", "));
    } else {
        let w = l
            .models
            .iter()
            .map(|m| m.id.len())
            .max()
            .unwrap_or(2)
            .max(2);
        println!(
            "{:<w$}  {:>9}  {:<9}  {:>7}  {:>7}  {:>16}  {:<9}  {:<8}  USED BY",
            "ID", "SIZE", "QUANT", "PARAMS", "CTX", "MEMORY", "COMPLETE", "LAST"
        );
        for m in &l.models {
            println!(
                "{:<w$}  {:>9}  {:<9}  {:>7}  {:>7}  {:>16}  {:<9}  {:<8}  {}",
                m.id,
                bytes(m.size_bytes),
                m.quant_label(),
                m.parameters.map(count).unwrap_or_else(|| "-".into()),
                m.context_length
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "-".into()),
                memory(m),
                if m.complete { "yes" } else { "NO" },
                ago(m.last_used_ms),
                users(m),
            );
        }
    }
    print_problems(l);
    print_totals(l);
}

fn print_problems(l: &ModelList) {
    for p in &l.problems {
        eprintln!("{p}");
    }
    for m in &l.models {
        for p in &m.problems {
            eprintln!("{}: {p}", m.id);
        }
    }
}

fn print_totals(l: &ModelList) {
    let unused: Vec<&str> = l
        .models
        .iter()
        .filter(|m| m.users.is_empty())
        .map(|m| m.id.as_str())
        .collect();
    println!(
        "{} model{}, {} on disk; {} used by no service{}",
        l.models.len(),
        if l.models.len() == 1 { "" } else { "s" },
        bytes(l.total_bytes),
        bytes(l.unused_bytes),
        if unused.is_empty() {
            String::new()
        } else {
            format!(": {}", unused.join(", "))
        }
    );
}

fn print_du(l: &ModelList) {
    for m in &l.models {
        let mark = if m.users.is_empty() { "  (unused)" } else { "" };
        println!("{:>9}  {}{mark}", bytes(m.size_bytes), m.id);
    }
    print_totals(l);
}

fn du_json(l: &ModelList) -> serde_json::Value {
    serde_json::json!({
        "models": l.models.iter().map(|m| serde_json::json!({
            "id": m.id, "size_bytes": m.size_bytes, "incomplete_bytes": m.incomplete_bytes,
            "used_by": m.users.iter().map(|u| &u.service).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "total_bytes": l.total_bytes,
        "unused_bytes": l.unused_bytes,
        "unused": l.models.iter().filter(|m| m.users.is_empty()).map(|m| &m.id).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_read_short() {
        assert_eq!(super::count(8192), "8.2K");
        assert_eq!(super::count(494_000_000), "494M");
        assert_eq!(super::count(30_532_000_000), "30.5B");
        assert_eq!(super::count(7), "7");
    }
}
