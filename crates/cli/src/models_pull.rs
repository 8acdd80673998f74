//! `mlx-box models pull ID[@REV]`: the plan from the Hub, the fit check (memory budget, free disk)
//! before any weight is fetched, then the download with a bar per file and one overall. The work is
//! `mlxbox_core::models::{hub, fit, pull}`; this is the terminal's face of it.

use anyhow::{bail, Result};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use mlxbox_api::units::bytes;
use mlxbox_core::config::Settings;
use mlxbox_core::estimate;
use mlxbox_core::models::{fit, hub::Hub, list::hubs, pull, PullError};
use std::collections::HashMap;
use std::io::Read;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Duration;

#[derive(clap::Args)]
pub struct PullArgs {
    /// `ORG/NAME`, optionally `@REV` (a branch, tag or commit; `main` by default).
    pub spec: String,
    /// Only the files matching one of these globs (fnmatch, as huggingface_hub's allow_patterns).
    #[arg(long, value_name = "GLOB")]
    pub include: Vec<String>,
    /// None of the files matching these globs.
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Download even when the model cannot fit the memory budget or the free disk.
    #[arg(long)]
    pub force: bool,
    /// Seconds without a byte from the server before it is called stalled.
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    pub read_timeout: f64,
    /// No progress bars (one line per file).
    #[arg(long)]
    pub quiet: bool,
}

pub async fn pull(settings: Option<Settings>, a: PullArgs) -> Result<ExitCode> {
    let mut req = pull::Request::parse(&a.spec);
    req.include = a.include;
    req.exclude = a.exclude;
    let token = token().await;
    if !(a.read_timeout > 0.0 && a.read_timeout <= 3600.0) {
        bail!("--read-timeout is seconds, more than 0 and at most 3600");
    }
    let hub = Hub::new(None, token, Duration::from_secs_f64(a.read_timeout))?;
    // The cache the server that will run it reads: that of a service naming it (its own `env` may
    // set HF_HUB_CACHE / HF_HOME), else this process's.
    let user = settings.as_ref().and_then(|s| {
        s.services
            .iter()
            .find(|sv| sv.enabled && sv.model.as_deref() == Some(req.id.as_str()))
    });
    let cache = match user {
        Some(sv) => estimate::service_hub(sv),
        None => hubs(None)
            .into_iter()
            .next()
            .unwrap_or_else(|| mlxbox_core::models::cache::hf_hub_cache(&[])),
    };
    let plan = pull::plan(&hub, &cache, &req).await?;
    println!(
        "{}@{} ({}): {} file{}, {}; {} to download into {}",
        plan.id,
        plan.revision,
        &plan.commit[..12],
        plan.files.len(),
        if plan.files.len() == 1 { "" } else { "s" },
        bytes(plan.total_bytes()),
        bytes(plan.missing_bytes()),
        plan.repo_dir.display()
    );
    let reserve = settings
        .as_ref()
        .map(|s| s.alerts.headroom_warn_percent)
        .unwrap_or(10.0);
    let budget = tokio::task::spawn_blocking(estimate::memory_budget).await?;
    let f = fit::check(&hub, &plan, settings.as_ref(), budget, reserve).await?;
    for n in &f.notes {
        eprintln!("({n})");
    }
    if let Some((b, source)) = &f.budget {
        println!(
            "memory: needs {} (weights {} from {}); budget {} ({source})",
            bytes(f.need_bytes),
            bytes(f.weights_bytes),
            f.weights_from,
            bytes(*b)
        );
    }
    if let Some(why) = f.refusal(&plan.id) {
        if !a.force {
            return Err(PullError::WontFit(why).into());
        }
        eprintln!("mlx-box: {why}; fetching anyway (--force)");
    }
    let bars = Bars::new(&plan, a.quiet);
    let snap = pull::execute(&hub, &plan, &bars).await;
    bars.finish();
    let snap = snap?;
    println!("{} in place: {}", plan.id, snap.display());
    Ok(ExitCode::SUCCESS)
}

/// `HF_TOKEN` (as huggingface_hub reads it), else the keyring's (`mlx-box models login`).
async fn token() -> Option<String> {
    if let Some(t) = std::env::var("HF_TOKEN").ok().filter(|t| !t.is_empty()) {
        return Some(t);
    }
    tokio::task::spawn_blocking(|| {
        use mlxbox_core::keys::keyring::{Keyring, HUB_TOKEN_USER};
        Keyring::open_control()
            .ok()?
            .secret(HUB_TOKEN_USER)
            .ok()
            .flatten()
    })
    .await
    .ok()
    .flatten()
}

/// A bar per file (made when it starts, cleared when it is done) and one overall.
struct Bars {
    multi: MultiProgress,
    total: ProgressBar,
    files: Mutex<HashMap<String, ProgressBar>>,
    quiet: bool,
}

impl Bars {
    fn new(plan: &pull::Plan, quiet: bool) -> Bars {
        let multi = if quiet {
            MultiProgress::with_draw_target(ProgressDrawTarget::hidden())
        } else {
            MultiProgress::new()
        };
        let total = multi.add(ProgressBar::new(plan.total_bytes()));
        total.set_style(style("total"));
        total.set_position(plan.total_bytes() - plan.missing_bytes());
        total.reset_eta();
        Bars {
            multi,
            total,
            files: Mutex::new(HashMap::new()),
            quiet,
        }
    }

    fn finish(&self) {
        self.total.finish_and_clear();
        let _ = self.multi.clear();
    }
}

fn style(kind: &str) -> ProgressStyle {
    let t = if kind == "total" {
        "{msg:>40!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} (total)"
    } else {
        "{msg:>40!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}"
    };
    ProgressStyle::with_template(t)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

impl pull::Progress for Bars {
    fn file(&self, path: &str, size: u64, have: u64) {
        if self.quiet {
            eprintln!("{path}: {} ({} here)", bytes(size), bytes(have));
            return;
        }
        let b = self
            .multi
            .insert_before(&self.total, ProgressBar::new(size));
        b.set_style(style("file"));
        b.set_message(path.to_string());
        b.set_position(have);
        b.reset_eta();
        if let Ok(mut f) = self.files.lock() {
            f.insert(path.to_string(), b);
        }
    }
    fn bytes(&self, path: &str, n: u64) {
        self.total.inc(n);
        if let Some(b) = self.files.lock().ok().and_then(|f| f.get(path).cloned()) {
            b.inc(n);
        }
    }
    fn done(&self, path: &str) {
        if let Some(b) = self.files.lock().ok().and_then(|mut f| f.remove(path)) {
            b.finish_and_clear();
        }
    }
}

/// `mlx-box models login`: a Hugging Face token from stdin (never an argument: it would sit in the
/// shell's history and `ps`) into the OS keyring; `logout` removes it.
pub async fn login(logout: bool) -> Result<ExitCode> {
    use mlxbox_core::keys::keyring::{Keyring, HUB_TOKEN_USER};
    use std::io::{BufRead, IsTerminal};
    if logout {
        tokio::task::spawn_blocking(|| Keyring::open_control()?.delete_secret(HUB_TOKEN_USER))
            .await??;
        println!("the Hugging Face token is removed from the keyring");
        return Ok(ExitCode::SUCCESS);
    }
    if std::io::stdin().is_terminal() {
        eprintln!("Paste a Hugging Face access token (https://huggingface.co/settings/tokens), then Enter:");
    }
    let mut line = String::new();
    std::io::stdin().lock().take(4096).read_line(&mut line)?;
    let t = line.trim().to_string();
    if t.is_empty() || t.len() > 1024 || t.chars().any(|c| c.is_whitespace() || c.is_control()) {
        bail!("no token read (one line, no spaces): nothing stored");
    }
    tokio::task::spawn_blocking(move || Keyring::open_control()?.set_secret(HUB_TOKEN_USER, &t))
        .await??;
    println!("stored in the OS keyring; `mlx-box models pull` presents it (HF_TOKEN, when set, stands over it)");
    Ok(ExitCode::SUCCESS)
}
