//! `mlx-box bench` and `mlx-box doctor`: clients of the daemon's benchmark (the engine lives in the
//! core; this file starts runs, draws the progress bar and prints tables).

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use mlxbox_api::call;

use mlxbox_core::api::Event;
use mlxbox_core::bench::doctor::{DoctorOptions, DoctorReport};
use mlxbox_core::bench::{
    BenchOptions, BenchResult, CheckStatus, Comparison, ServiceResult, Stats,
};
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Services to measure (default: every enabled chat, ocr, embedding, tts and stt service).
    pub services: Vec<String>,
    /// Closed-loop levels: requests in flight at once.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8")]
    pub concurrency: Vec<u32>,
    /// Requests per level (a warm-up request is not counted).
    #[arg(long, default_value_t = 16)]
    pub requests: u32,
    /// max_tokens of each chat request.
    #[arg(long, default_value_t = 128)]
    pub max_tokens: u32,
    /// Also an open-loop level: Poisson arrivals at this many requests/s.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Also send a long-context request (see --long-context-tokens).
    #[arg(long)]
    pub long_context: bool,
    /// Prompt tokens of the long-context request.
    #[arg(long, default_value_t = 20_000)]
    pub long_context_tokens: u32,
    /// Inputs per embeddings request (default: the service's batch_size, else 16).
    #[arg(long)]
    pub batch: Option<u32>,
    /// Skip the thinking-toggle check.
    #[arg(long)]
    pub no_thinking_check: bool,
    /// Print the result as JSON (the object saved in the state dir).
    #[arg(long)]
    pub json: bool,
    /// Compare two saved runs: ids, unique prefixes, `last`, `last-1`…
    #[arg(long, num_args = 2, value_names = ["A", "B"], conflicts_with_all = ["history", "show"])]
    pub compare: Option<Vec<String>>,
    /// List the saved runs.
    #[arg(long)]
    pub history: bool,
    /// Print a saved run (`last` = the newest).
    #[arg(long, value_name = "ID")]
    pub show: Option<String>,
    /// Synthetic prompts of exactly N tokens as the model's tokenizer counts them (chat template
    /// included), or N±K for lengths spread uniformly (vLLM: --random-input-len; guidellm: prompt_tokens).
    #[arg(long, value_name = "N[±K]", value_parser = parse_spread)]
    pub prompt_tokens: Option<(u32, u32)>,
    /// Exactly N output tokens: max_tokens = N with the end-of-sequence suppressed (ignore_eos, logit_bias);
    /// a level whose outputs still ended early says so.
    #[arg(long, value_name = "N")]
    pub output_tokens: Option<u32>,
    /// Replay a JSONL dataset: OpenAI `messages`, or ShareGPT `conversations`, sampled with --seed.
    #[arg(long, value_name = "FILE")]
    pub dataset: Option<std::path::PathBuf>,
    /// Seed of the dataset's sampling and of the prompt lengths.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// A WAV for the speech-to-text services to transcribe (default: five seconds of a generated tone).
    #[arg(long, value_name = "FILE.wav")]
    pub audio: Option<std::path::PathBuf>,
    /// Goodput: the requests that meet these, e.g. `ttft_ms=500,tpot_ms=50` (vLLM's --goodput).
    #[arg(long, value_name = "ttft_ms=X,tpot_ms=Y", value_parser = parse_slo)]
    pub slo: Option<(Option<f64>, Option<f64>)>,
    /// Run the same load on these hosts at once (names of [hosts], `local` for this Mac) and report
    /// them side by side, with the combined throughput and how each host's speed drifted over the run.
    #[arg(long, value_delimiter = ',', value_name = "HOST,HOST", conflicts_with_all = ["compare", "history", "show"])]
    pub hosts: Vec<String>,
}

/// `512` or `512±64` (also `512+-64`, `512:64`).
fn parse_spread(s: &str) -> Result<(u32, u32), String> {
    let (n, k) = match s
        .split_once('±')
        .or_else(|| s.split_once("+-"))
        .or_else(|| s.split_once(':'))
    {
        Some((n, k)) => (n, k),
        None => (s, "0"),
    };
    let n: u32 = n
        .trim()
        .parse()
        .map_err(|_| format!("`{s}`: give N or N±K tokens, e.g. 512±64"))?;
    let k: u32 = k
        .trim()
        .parse()
        .map_err(|_| format!("`{s}`: give N or N±K tokens, e.g. 512±64"))?;
    if n == 0 || n > mlxbox_core::bench::workload::MAX_PROMPT_TOKENS {
        return Err(format!(
            "`{s}`: between 1 and {} tokens",
            mlxbox_core::bench::workload::MAX_PROMPT_TOKENS
        ));
    }
    if k >= n {
        return Err(format!("`{s}`: the spread must be smaller than the length"));
    }
    Ok((n, k))
}

/// `ttft_ms=500,tpot_ms=50` (either or both).
fn parse_slo(s: &str) -> Result<(Option<f64>, Option<f64>), String> {
    let (mut ttft, mut tpot) = (None, None);
    for part in s.split(',').filter(|p| !p.trim().is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("`{part}`: write ttft_ms=X or tpot_ms=Y"))?;
        let v: f64 = v
            .trim()
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite() && *v > 0.0)
            .ok_or_else(|| format!("`{part}`: a positive number of ms"))?;
        match k.trim() {
            "ttft_ms" | "ttft" => ttft = Some(v),
            "tpot_ms" | "tpot" => tpot = Some(v),
            o => return Err(format!("`{o}`: the SLO takes ttft_ms and tpot_ms")),
        }
    }
    if ttft.is_none() && tpot.is_none() {
        return Err("give ttft_ms=X, tpot_ms=Y or both".into());
    }
    Ok((ttft, tpot))
}

pub async fn bench(to: &crate::fleet::Reach, a: BenchArgs) -> Result<ExitCode> {
    let state_dir = to.state_dir.as_path();
    let c = to.client().await?;
    if let Some(ids) = &a.compare {
        let cmp = c
            .call(call::BenchCompare {
                a: ids[0].clone(),
                b: ids[1].clone(),
            })
            .await?;
        if a.json {
            println!("{}", serde_json::to_string_pretty(&cmp)?);
        } else {
            print_compare(&cmp);
        }
        return Ok(ExitCode::SUCCESS);
    }
    if a.history {
        let h = c.call(call::BenchHistory {}).await?;
        if a.json {
            println!("{}", serde_json::to_string_pretty(&h)?);
        } else {
            println!(
                "{:<22} {:<7} SERVICES (gen tok/s at c=1 · best output tok/s)",
                "ID", "VERDICT"
            );
            for r in &h.runs {
                let s: Vec<String> = r
                    .services
                    .iter()
                    .map(|s| {
                        format!(
                            "{} {}·{}",
                            s.name,
                            opt(s.gen_tok_s, 1),
                            opt(s.output_tok_s.or(s.inputs_s), 1)
                        )
                    })
                    .collect();
                println!(
                    "{:<22} {:<7} {}  [{}]",
                    r.id,
                    r.verdict.as_str(),
                    s.join("  "),
                    r.load
                );
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(id) = &a.show {
        let r = c.call(call::BenchResult { id: id.to_string() }).await?;
        return print_result(&r, a.json);
    }

    let opts = BenchOptions {
        services: a.services.clone(),
        concurrency: a.concurrency.clone(),
        requests: a.requests,
        max_tokens: a.max_tokens,
        rate: a.rate,
        long_context: a.long_context,
        long_context_tokens: a.long_context_tokens,
        thinking_check: !a.no_thinking_check,
        embed_batch: a.batch,
        prompt_tokens: a.prompt_tokens.map(|p| p.0),
        prompt_tokens_spread: a.prompt_tokens.map(|p| p.1).unwrap_or(0),
        output_tokens: a.output_tokens,
        // The daemon reads the file: give it an absolute path.
        dataset: a.dataset.as_ref().map(|p| {
            std::path::absolute(p)
                .unwrap_or(p.clone())
                .display()
                .to_string()
        }),
        seed: a.seed,
        audio_file: a.audio.as_ref().map(|p| {
            std::path::absolute(p)
                .unwrap_or(p.clone())
                .display()
                .to_string()
        }),
        slo_ttft_ms: a.slo.and_then(|s| s.0),
        slo_tpot_ms: a.slo.and_then(|s| s.1),
        ..BenchOptions::default()
    };
    if !a.hosts.is_empty() {
        return crate::fleet::bench_hosts(state_dir, &a.hosts, &opts, a.json).await;
    }
    // Listen first, then start: no progress event is missed. The daemon saves the result before it sends
    // `bench_done`, so polling for the result is a safe fallback.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
    let listener = to.client().await?;
    let events = tokio::spawn(async move {
        let _ = listener.events(|e| tx.send(e).is_ok()).await;
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let id = c
        .call(call::BenchStart {
            options: opts.clone(),
        })
        .await?
        .id;
    let bar = if a.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(1)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} requests · {msg}",
        )
        .expect("progress template"),
    );
    bar.set_message(format!("benchmark {id} starting"));
    bar.enable_steady_tick(Duration::from_millis(200));
    let mut poll = tokio::time::interval(Duration::from_secs(1));
    let result = loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                Some(Event::BenchProgress(p)) if p.id == id => {
                    bar.set_length(u64::from(p.total));
                    bar.set_position(u64::from(p.done));
                    bar.set_message(p.message);
                }
                Some(Event::BenchDone(d)) if d.id == id => {
                    if let Some(e) = d.error {
                        bar.abandon();
                        anyhow::bail!("benchmark {id} ended with an error: {e}");
                    }
                    break c.call(call::BenchResult { id: id.clone() }).await?;
                }
                Some(Event::Shutdown) => anyhow::bail!("the daemon shut down during the benchmark"),
                _ => {}
            },
            _ = poll.tick() => {
                if let Ok(r) = c.call(call::BenchResult { id: id.clone() }).await { break r; }
            }
            _ = tokio::signal::ctrl_c() => {
                let _ = c.call(call::BenchCancel {}).await;
                bar.abandon_with_message("cancelled: the requests in flight finish, the partial result is saved");
                return Ok(ExitCode::from(130));
            }
        }
    };
    bar.finish_and_clear();
    events.abort();
    print_result(&result, a.json)
}

fn opt(x: Option<f64>, digits: usize) -> String {
    x.map(|v| format!("{v:.digits$}"))
        .unwrap_or_else(|| "–".into())
}

fn st(s: Option<Stats>, f: fn(&Stats) -> f64) -> String {
    opt(s.as_ref().map(f), 1)
}

fn print_result(r: &BenchResult, json: bool) -> Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string_pretty(r)?);
    } else {
        print_tables(r);
    }
    Ok(if r.verdict == CheckStatus::Fail {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn print_tables(r: &BenchResult) {
    println!(
        "benchmark {} · {} · {} cores · {:.0} GB · {}",
        r.id,
        r.machine.cpu,
        r.machine.cores,
        r.machine.memory_bytes as f64 / (1u64 << 30) as f64,
        r.machine.os
    );
    let load = if r.load.is_empty() {
        r.options.load_description() // a run saved before the load was recorded
    } else {
        r.load.clone()
    };
    println!("load: {load}");
    for s in &r.services {
        println!();
        let model = s.model.as_deref().unwrap_or("-");
        let q = s
            .quantization
            .as_deref()
            .map(|q| format!(" · {q}"))
            .unwrap_or_default();
        println!(
            "{} ({}) · {model}{q} · {}",
            s.name,
            s.kind.as_str(),
            s.verdict.as_str()
        );
        if let Some(why) = &s.skipped {
            println!("  not measured: {why}");
            continue;
        }
        if !s.levels.is_empty() {
            print_chat_levels(r, s);
        }
        if !s.embedding.is_empty() {
            print_embedding_levels(s);
        }
        if !s.audio.is_empty() {
            print_audio_levels(s);
        }
        print_checks(s);
    }
    print_monitor_and_pool(r);
}

/// A chat service's levels: latency and throughput, what was really sent, goodput, what went wrong.
fn print_chat_levels(r: &BenchResult, s: &ServiceResult) {
    println!(
        "  {:<9} {:>5} {:>4} {:>17} {:>9} {:>9} {:>10} {:>9} {:>10} {:>7} {:>6}",
        "LEVEL",
        "REQS",
        "ERR",
        "TTFT ms p50/p99",
        "TPOT p50",
        "ITL p50",
        "E2E p50",
        "GEN p50",
        "OUT tok/s",
        "REQ/s",
        "EFF"
    );
    for l in &s.levels {
        let level = match l.rate {
            Some(rate) => format!("rate={rate}"),
            None => format!("c={}", l.concurrency),
        };
        println!(
            "  {:<9} {:>5} {:>4} {:>17} {:>9} {:>9} {:>10} {:>9} {:>10.1} {:>7.2} {:>6}",
            level,
            l.requests,
            l.errors,
            format!("{}/{}", st(l.ttft_ms, |s| s.p50), st(l.ttft_ms, |s| s.p99)),
            st(l.tpot_ms, |s| s.p50),
            st(l.itl_ms, |s| s.p50),
            st(l.e2e_ms, |s| s.p50),
            st(l.gen_tok_s, |s| s.p50),
            l.output_tok_s,
            l.request_s,
            opt(l.parallel_efficiency, 2),
        );
        // What was really sent and got, and the goodput.
        let mut lens = format!(
            "  {:<9} in/out tokens mean {}/{}",
            "",
            st(l.prompt_len, |s| s.mean),
            st(l.output_len, |s| s.mean)
        );
        if let Some(g) = l.goodput {
            lens.push_str(&format!(
                " · goodput {:.0} % ({:.2} req/s)",
                g.share * 100.0,
                g.request_s
            ));
        }
        println!("{lens}");
        if l.prompt_len_mismatches > 0 {
            println!(
                "  {:<9} ! {} prompt(s) counted differently by the server than asked",
                "", l.prompt_len_mismatches
            );
        }
        if l.ended_early > 0 {
            println!(
                "  {:<9} ! {} of {} outputs ended before the {} tokens asked: tok/s comes from shorter outputs",
                "",
                l.ended_early,
                l.requests,
                r.options.output_tokens.unwrap_or(0)
            );
        }
        if let Some(e) = &l.first_error {
            println!("  {:<9} first error: {e}", "");
        }
    }
    if let Some(t) = s.prompt_template_tokens {
        println!("  the chat template adds {t} tokens to each prompt (measured on the warm-up)");
    }
    if let Some(c) = s
        .levels
        .iter()
        .filter_map(|l| l.cached_tokens)
        .reduce(|a, b| a + b)
    {
        println!("  cached prompt tokens reported by the server: {c}");
    }
}

/// An embedding service's levels.
fn print_embedding_levels(s: &ServiceResult) {
    println!(
        "  {:<9} {:>5} {:>4} {:>6} {:>10} {:>8} {:>17}",
        "LEVEL", "REQS", "ERR", "BATCH", "INPUTS/s", "REQ/s", "LATENCY p50/p99"
    );
    for l in &s.embedding {
        println!(
            "  {:<9} {:>5} {:>4} {:>6} {:>10.1} {:>8.2} {:>17}",
            format!("c={}", l.concurrency),
            l.requests,
            l.errors,
            l.batch_size,
            l.inputs_s,
            l.request_s,
            format!(
                "{}/{}",
                st(l.latency_ms, |s| s.p50),
                st(l.latency_ms, |s| s.p99)
            ),
        );
        if let Some(e) = &l.first_error {
            println!("  {:<9} first error: {e}", "");
        }
    }
}

/// A speech or transcription service's levels (real-time factor, audio seconds).
fn print_audio_levels(s: &ServiceResult) {
    println!(
        "  {:<9} {:>5} {:>4} {:>8} {:>17} {:>8} {:>13} {:>10}",
        "LEVEL", "REQS", "ERR", "REQ/s", "LATENCY p50/p99", "AUDIO s", "RTF p50/p99", "AUDIO s/s"
    );
    for l in &s.audio {
        println!(
            "  {:<9} {:>5} {:>4} {:>8.2} {:>17} {:>8} {:>13} {:>10}",
            format!("c={}", l.concurrency),
            l.requests,
            l.errors,
            l.request_s,
            format!(
                "{}/{}",
                st(l.latency_ms, |s| s.p50),
                st(l.latency_ms, |s| s.p99)
            ),
            l.audio_s
                .map(|a| format!("{a:.2}"))
                .unwrap_or_else(|| "–".into()),
            match l.rtf {
                Some(r) => format!("{:.3}/{:.3}", r.p50, r.p99),
                None => "–".into(),
            },
            l.audio_s_per_s
                .map(|a| format!("{a:.2}"))
                .unwrap_or_else(|| "–".into()),
        );
        if let Some(e) = &l.first_error {
            println!("  {:<9} first error: {e}", "");
        }
    }
    if let Some(x) = s.audio.iter().find_map(|l| l.sample.as_ref()) {
        println!("  an answer: {x}");
    }
}

/// The checks of one service: thinking, long context, its thresholds, throttling, its server.
fn print_checks(s: &ServiceResult) {
    if let Some(t) = &s.thinking {
        println!("  {} thinking: {}", t.status.mark(), t.reason);
    }
    if let Some(l) = &s.long_context {
        println!(
            "  {} long context ({} tokens): {}",
            l.status.mark(),
            l.target_tokens,
            l.reason
        );
    }
    for t in &s.thresholds {
        println!("  {} {}: {}", t.status.mark(), t.key, t.detail);
    }
    if s.throttling_suspected {
        println!("  ! generation speed fell while the thermal state rose: throttling suspected");
    }
    if let Some(f) = &s.fingerprint {
        println!("  server: {f}");
    }
}

/// What the monitor saw during the run, the pool's figures, the legend and the verdict.
fn print_monitor_and_pool(r: &BenchResult) {
    println!();
    let m = &r.monitor;
    println!(
        "monitor: {} samples · max swap {:.1} MB · min available {:.1} GB · thermal {} · pressure {}",
        m.samples,
        m.max_swap_used_bytes as f64 / (1 << 20) as f64,
        m.min_available_bytes as f64 / (1u64 << 30) as f64,
        m.max_thermal.as_str(),
        m.max_pressure.as_str()
    );
    if let Some(p) = &r.pool {
        println!();
        let eff = match (p.parallel_efficiency, &p.solo_member, p.solo_output_tok_s) {
            (Some(e), Some(m), Some(solo)) => format!(
                "; {m} alone {solo:.1} out tok/s → parallel efficiency {e:.2} ({:.2}× one member)",
                p.combined_output_tok_s / solo
            ),
            _ => "; no member of this Mac to measure alone".into(),
        };
        println!(
            "pool {}: {:.1} out tok/s combined at the highest concurrency{eff}",
            p.name, p.combined_output_tok_s
        );
        for m in &p.members {
            println!(
                "  {:<24} {:>6} requests  {:>5.1} %  {} errors  {} affinity hits",
                m.member,
                m.requests,
                m.share * 100.0,
                m.errors,
                m.affinity_hits
            );
        }
    }
    println!(
        "TTFT = first content or reasoning chunk · TPOT = (E2E−TTFT)/(N−1) · ITL = gaps between text chunks · \
         EFF = out tok/s at N / (N × at 1) · docs/BENCHMARK.md"
    );
    println!(
        "{}: {}{}",
        r.verdict.as_str(),
        r.id,
        if r.cancelled {
            " (cancelled: partial)"
        } else {
            ""
        }
    );
}

fn print_compare(c: &Comparison) {
    println!("A = {}   B = {}", c.a, c.b);
    if let Some(d) = &c.load_differs {
        // Loudly: the deltas below compare different loads.
        eprintln!("WARNING: {d}. The deltas below do not compare like with like.");
    }
    println!(
        "{:<16} {:<11} {:<20} {:>11} {:>11} {:>11} {:>8}",
        "SERVICE", "LEVEL", "METRIC", "A", "B", "B−A", "%"
    );
    for r in &c.rows {
        let mark = match r.better {
            Some(true) => " better",
            Some(false) => " worse",
            None => "",
        };
        println!(
            "{:<16} {:<11} {:<20} {:>11} {:>11} {:>11} {:>8}{mark}",
            r.service,
            r.level,
            r.metric,
            opt(r.a, 2),
            opt(r.b, 2),
            opt(r.delta, 2),
            r.delta_percent
                .map(|p| format!("{p:+.1}%"))
                .unwrap_or_else(|| "–".into()),
        );
    }
}

pub async fn doctor(to: &crate::fleet::Reach, opts: DoctorOptions, json: bool) -> Result<ExitCode> {
    let spinner = if json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new_spinner()
    };
    spinner.set_message("running the checklist (thresholds, thinking, long context, 5 at once)…");
    spinner.enable_steady_tick(Duration::from_millis(200));
    let r = to
        .client()
        .await?
        .call(call::Doctor {
            options: opts.clone(),
        })
        .await;
    spinner.finish_and_clear();
    let r = r?;
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print_doctor(&r);
    }
    Ok(if r.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_doctor(r: &DoctorReport) {
    for c in &r.checks {
        let who = c
            .service
            .as_deref()
            .map(|s| format!("{s}: "))
            .unwrap_or_default();
        println!("{} {:<13} {who}{}", c.status.mark(), c.check, c.reason);
    }
    let failed = r
        .checks
        .iter()
        .filter(|c| c.status == CheckStatus::Fail)
        .count();
    println!();
    if r.ok {
        println!("all checks passed");
    } else {
        println!("{failed} check(s) failed");
    }
}
