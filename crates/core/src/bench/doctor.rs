//! `mlx-box doctor`: the seed's success checklist, run in one go — every service ready, thresholds met,
//! swap < 100 MB, the thinking toggle behaves, a long-context request works, 5 concurrent requests
//! succeed, no errors in the recent logs. Each line pass / fail / skip with the reason.

use super::checks;
use super::client::{chat_body, embed, http_client, stream_chat};
use super::load::prompt;
use super::report::{BenchOptions, CheckStatus};
use super::run::Target;
use crate::api::ServiceStatus;
use crate::config::{Kind, Settings};
use crate::supervisor::State;
pub use mlxbox_api::bench::{DoctorCheck, DoctorOptions, DoctorReport};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What the daemon knows that the checklist needs.
pub struct DoctorInput {
    pub settings: std::sync::Arc<Settings>,
    pub statuses: Vec<ServiceStatus>,
    pub swap_used_bytes: u64,
    /// The recent log lines of each service.
    pub logs: BTreeMap<String, Vec<String>>,
    /// The served-vs-configured check's last findings per ready service (empty: it agrees).
    pub served: BTreeMap<String, Vec<String>>,
}

/// The swap bar of the seed's checklist.
pub const SWAP_LIMIT_BYTES: u64 = 100 << 20;

/// The checklist's lines, in order.
#[derive(Default)]
struct Checks(Vec<DoctorCheck>);

impl Checks {
    fn push(&mut self, check: &str, service: Option<&str>, status: CheckStatus, reason: String) {
        self.0.push(DoctorCheck {
            check: check.into(),
            service: service.map(str::to_string),
            status,
            reason,
        })
    }
}

fn not_ready() -> String {
    "skipped: the service is not ready".to_string()
}

pub async fn doctor(input: DoctorInput, opts: &DoctorOptions) -> DoctorReport {
    let mut out = Checks::default();
    let http = http_client(Duration::from_secs(600));
    let wanted = |n: &str| opts.services.is_empty() || opts.services.iter().any(|s| s == n);
    let mb = input.swap_used_bytes as f64 / (1 << 20) as f64;
    out.push(
        "swap",
        None,
        if input.swap_used_bytes < SWAP_LIMIT_BYTES {
            CheckStatus::Pass
        } else {
            CheckStatus::Fail
        },
        format!("swap used {mb:.1} MB (must stay under 100 MB)"),
    );
    let cpu = super::machine::machine_info().cpu;
    for spec in input.settings.services.iter() {
        if spec.enabled && wanted(&spec.name) {
            service_checks(&mut out, &input, opts, &http, &cpu, spec).await;
        }
    }
    DoctorReport {
        ok: !out.0.iter().any(|c| c.status == CheckStatus::Fail),
        checks: out.0,
        finished_ms: crate::api::now_ms(),
    }
}

/// One service's lines: ready, served model, thresholds, thinking and long context (chat), speech or
/// transcription and ffmpeg (audio), concurrent requests, its log.
async fn service_checks(
    out: &mut Checks,
    input: &DoctorInput,
    opts: &DoctorOptions,
    http: &reqwest::Client,
    cpu: &str,
    spec: &crate::config::ServiceSpec,
) {
    let name = spec.name.as_str();
    let st = input.statuses.iter().find(|s| s.name == name);
    let ready = st.is_some_and(|s| s.state == State::Ready);
    let ready_reason = match st {
        Some(s) if ready && s.restarts > 0 => format!(
            "ready (pid {}), after {} automatic restart(s) since the daemon started; last: {}",
            s.pid.unwrap_or(0),
            s.restarts,
            s.last_error
                .as_deref()
                .and_then(|e| e.lines().next())
                .unwrap_or("no reason recorded")
        ),
        Some(s) if ready => format!("ready (pid {})", s.pid.unwrap_or(0)),
        Some(s) => format!(
            "{}{}",
            s.state.as_str(),
            s.last_error
                .as_deref()
                .and_then(|e| e.lines().next())
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        ),
        None => "not supervised (yet)".into(),
    };
    // Stopped or unloaded on purpose, or disabled: nothing to check, and nothing wrong.
    let resting = !spec.enabled
        || st.is_some_and(|s| s.stopped_by_request || (s.state == State::Idle && spec.on_demand));
    if resting {
        let why = if spec.enabled {
            "stopped on request (or unloaded while idle): not checked; start it to check it"
        } else {
            "disabled in settings.toml (enabled = false): not checked"
        };
        out.push("ready", Some(name), CheckStatus::Skip, why.into());
        return;
    }
    let status = if ready {
        CheckStatus::Pass
    } else {
        CheckStatus::Fail
    };
    out.push("ready", Some(name), status, ready_reason);
    match input.served.get(name) {
        Some(m) if m.is_empty() => out.push(
            "served model",
            Some(name),
            CheckStatus::Pass,
            "the server runs the model and precision settings.toml names".into(),
        ),
        Some(m) => out.push("served model", Some(name), CheckStatus::Fail, m.join("; ")),
        None if spec.model.is_some() => out.push(
            "served model",
            Some(name),
            CheckStatus::Skip,
            "not checked yet (every 10 s while it is ready)".into(),
        ),
        None => {}
    }
    let target = Target::new(spec);
    let measurable = ready && target.skipped.is_none();
    let base = target.base_url.clone();
    thresholds(out, target, ready, cpu).await;

    if spec.kind.is_chat() {
        if ready {
            let t = checks::thinking(http, &base, spec.disable_thinking_tags, 256).await;
            out.push("thinking", Some(name), t.status, t.reason);
            let config = super::machine::model_config(spec);
            let ctx = super::machine::context_tokens(spec, config.as_ref());
            let l = checks::long_context(http, &base, opts.long_context_tokens, ctx).await;
            out.push("long_context", Some(name), l.status, l.reason);
        } else {
            out.push("thinking", Some(name), CheckStatus::Skip, not_ready());
            out.push("long_context", Some(name), CheckStatus::Skip, not_ready());
        }
    }
    if matches!(spec.kind, Kind::Tts | Kind::Stt) {
        audio_checks(out, http, &base, spec, measurable).await;
    }
    if matches!(
        spec.kind,
        Kind::Chat | Kind::Distributed | Kind::Embedding | Kind::Ocr | Kind::Tts | Kind::Stt
    ) {
        if measurable {
            let (s, r) = concurrent(http, &base, spec, opts.concurrent).await;
            out.push("concurrent", Some(name), s, r);
        } else {
            out.push("concurrent", Some(name), CheckStatus::Skip, not_ready());
        }
    }
    let lines = input.logs.get(name).map(Vec::as_slice).unwrap_or_default();
    let (s, r) = scan_logs(current_run(lines));
    out.push("logs", Some(name), s, r);
}

/// Thresholds: a short benchmark of the levels the expect_* keys need; without them, on Apple silicon,
/// the seed's figures for a service of that name.
async fn thresholds(out: &mut Checks, mut target: Target, ready: bool, cpu: &str) {
    let name = target.spec.name.clone();
    let name = Some(name.as_str());
    let measurable = target.skipped.is_none();
    let mut defaulted = None;
    if target.spec.expect.is_empty() {
        match default_expectations(&target.spec.name, target.spec.kind, cpu) {
            Ok((e, why)) => {
                target.spec.expect = e;
                defaulted = Some(why);
            }
            Err(why) => return out.push("thresholds", name, CheckStatus::Skip, why),
        }
    }
    if target.spec.expect.is_empty() {
        return;
    }
    if !ready || !measurable {
        return out.push("thresholds", name, CheckStatus::Skip, not_ready());
    }
    let expect = &target.spec.expect;
    let needs_top = expect.output_tok_s.is_some() || expect.parallel_efficiency.is_some();
    let bopts = BenchOptions {
        concurrency: if needs_top { vec![1, 4] } else { vec![1] },
        requests: 4,
        thinking_check: false,
        ..BenchOptions::default()
    };
    let r = super::run(
        "doctor".into(),
        bopts,
        vec![target],
        super::Hooks::default(),
    )
    .await;
    let s = &r.services[0];
    let reason = match &s.skipped {
        Some(why) => why.clone(),
        None => s
            .thresholds
            .iter()
            .map(|t| format!("{} {}", t.status.mark(), t.detail))
            .collect::<Vec<_>>()
            .join("; "),
    };
    let reason = match &defaulted {
        Some(why) => format!("{reason} ({why})"),
        None => reason,
    };
    let status = match s.skipped {
        Some(_) => CheckStatus::Fail,
        None => CheckStatus::worst(s.thresholds.iter().map(|t| t.status)),
    };
    out.push("thresholds", name, status, reason);
}

/// A speech or transcription request; for speech, ffmpeg on the daemon's PATH.
async fn audio_checks(
    out: &mut Checks,
    http: &reqwest::Client,
    base: &str,
    spec: &crate::config::ServiceSpec,
    measurable: bool,
) {
    let name = Some(spec.name.as_str());
    let check = if spec.kind == Kind::Tts {
        "speech"
    } else {
        "transcription"
    };
    if measurable {
        let (s, r) = audio_once(http, base, spec).await;
        out.push(check, name, s, r);
    } else {
        out.push(check, name, CheckStatus::Skip, not_ready());
    }
    if spec.kind == Kind::Tts {
        // OpenAI's default format is mp3; mlx-audio encodes it with ffmpeg and, without it, aborts the
        // reply after its head.
        let (s, r) = match crate::launch::which("ffmpeg") {
            Some(p) => (CheckStatus::Pass, format!("ffmpeg at {} (mp3, opus, aac replies)", p.display())),
            None => (
                CheckStatus::Fail,
                "no ffmpeg on the daemon's PATH: requests without `response_format: \"wav\"` (OpenAI's default is mp3) fail; install it (brew install ffmpeg)".to_string(),
            ),
        };
        out.push("ffmpeg", name, s, r);
    }
}

/// The seed's expected generation speeds (an M2 Ultra: router 300+, fast 100+, thinking 50+ tok/s),
/// for a chat service named like one of those, on Apple silicon, scaled by the chip's memory bandwidth
/// against the M2 Ultra's (decoding is bound by it) when the chip is known. `Err` says why none applies.
pub fn default_expectations(
    name: &str,
    kind: Kind,
    cpu: &str,
) -> Result<(crate::config::Expectations, String), String> {
    const SEED_GB_S: f64 = 800.0;
    if !kind.is_chat() {
        let keys = mlxbox_api::settings::expect_keys(kind).join(", ");
        return Err(format!(
            "no expect_* keys in settings.toml ({} services take {keys})",
            kind.as_str()
        ));
    }
    if !cpu.starts_with("Apple") {
        return Err(format!(
            "no expect_* keys in settings.toml; the seed's figures (router 300, fast 100, thinking 50 tok/s) are for Apple silicon, and this is {cpu}"
        ));
    }
    let n = name.to_ascii_lowercase();
    let seed = [("router", 300.0), ("thinking", 50.0), ("fast", 100.0)]
        .into_iter()
        .find(|(k, _)| n.contains(k));
    let Some((role, tok_s)) = seed.filter(|_| kind.is_chat()) else {
        return Err(
            "no expect_* keys in settings.toml (and no seed figure for a service of this name)"
                .into(),
        );
    };
    // Memory bandwidth (GB/s) of the chips people run models on.
    let chips: [(&str, f64); 15] = [
        ("M1 Ultra", 800.0),
        ("M2 Ultra", 800.0),
        ("M3 Ultra", 819.0),
        ("M1 Max", 400.0),
        ("M2 Max", 400.0),
        ("M3 Max", 400.0),
        ("M4 Max", 546.0),
        ("M1 Pro", 200.0),
        ("M2 Pro", 200.0),
        ("M3 Pro", 150.0),
        ("M4 Pro", 273.0),
        ("M1", 68.0),
        ("M2", 100.0),
        ("M3", 100.0),
        ("M4", 120.0),
    ];
    let cpu = cpu.split_whitespace().collect::<Vec<_>>().join(" ");
    let chip = chips.iter().find(|(c, _)| cpu.ends_with(c));
    let (scale, what) = match chip {
        Some((c, gb_s)) => (
            gb_s / SEED_GB_S,
            format!("scaled to the {c}, {gb_s:.0} GB/s"),
        ),
        None => (1.0, "the chip is not known: unscaled".to_string()),
    };
    let want = (tok_s * scale).round();
    Ok((
        crate::config::Expectations {
            gen_tok_s: Some(want),
            ..Default::default()
        },
        format!("the seed's {role} figure, {tok_s:.0} tok/s on an M2 Ultra, {what}: ≥ {want:.0} tok/s; set expect_gen_tok_s to change it"),
    ))
}

/// One real synthesis or transcription, with its latency and real-time factor.
async fn audio_once(
    http: &reqwest::Client,
    base: &str,
    spec: &crate::config::ServiceSpec,
) -> (CheckStatus, String) {
    let job = match super::run::audio_job(spec.kind, &BenchOptions::default()) {
        Ok(j) => j,
        Err(e) => return (CheckStatus::Fail, e),
    };
    let rec = super::client::audio(http, base, &crate::audio::DirectArgs::of(spec), &job).await;
    match (rec.error, rec.audio_s) {
        (Some(e), _) => (CheckStatus::Fail, e),
        (None, Some(a)) => (
            CheckStatus::Pass,
            format!(
                "{}: {:.0} ms for {a:.2} s of audio (real-time factor {:.3}); {}",
                if spec.kind == Kind::Tts {
                    "synthesised"
                } else {
                    "transcribed"
                },
                rec.latency_ms,
                rec.latency_ms / 1000.0 / a.max(1e-9),
                rec.sample.unwrap_or_default()
            ),
        ),
        (None, None) => (CheckStatus::Fail, "no audio in the answer".into()),
    }
}

/// `n` requests at once; every one must succeed.
async fn concurrent(
    http: &reqwest::Client,
    base: &str,
    spec: &crate::config::ServiceSpec,
    n: u32,
) -> (CheckStatus, String) {
    let t0 = Instant::now();
    let kind = spec.kind;
    let audio = matches!(kind, Kind::Tts | Kind::Stt)
        .then(|| super::run::audio_job(kind, &BenchOptions::default()).ok())
        .flatten()
        .map(|j| (j, crate::audio::DirectArgs::of(spec)));
    let model = crate::launch::direct_model(spec).map(str::to_string);
    let tasks: Vec<_> = (0..n as usize)
        .map(|i| {
            let (http, base, audio, model) =
                (http.clone(), base.to_string(), audio.clone(), model.clone());
            tokio::spawn(async move {
                if let Some((job, args)) = &audio {
                    super::client::audio(&http, &base, args, job).await.error
                } else if kind == Kind::Embedding {
                    embed(&http, &base, &[prompt(i)]).await.error
                } else {
                    let mut body = chat_body(&prompt(i), 32);
                    if let Some(m) = &model {
                        body["model"] = m.clone().into();
                    }
                    stream_chat(&http, &base, &body).await.record.error
                }
            })
        })
        .collect();
    let mut errors = vec![];
    for t in tasks {
        match t.await {
            Ok(None) => {}
            Ok(Some(e)) => errors.push(e),
            Err(e) => errors.push(e.to_string()),
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    if errors.is_empty() {
        (
            CheckStatus::Pass,
            format!("{n}/{n} simultaneous requests answered in {secs:.1} s"),
        )
    } else {
        (
            CheckStatus::Fail,
            format!(
                "{} of {n} simultaneous requests failed, first: {}",
                errors.len(),
                errors[0]
            ),
        )
    }
}

/// Warning lines in the recent log above which the log check fails: a few are normal, a stream of them
/// is a server in trouble (a full prompt cache, a tokenizer falling back, memory warnings).
pub const MAX_WARNINGS: usize = 10;

/// The lines since the server's current process started (mlx-box notes `starting: …` in the log before
/// each start): a traceback of a process that already exited is not this server's trouble now, and the
/// ready check names the restart and its cause.
pub fn current_run(lines: &[String]) -> &[String] {
    let start = lines
        .iter()
        .rposition(|l| l.starts_with("[mlx-box ") && l.contains("] starting: "))
        .map_or(0, |i| i + 1);
    &lines[start..]
}

/// Errors in a log: Python tracebacks, `ERROR` / `CRITICAL` records, `…Error:` / `…Exception:` lines,
/// HTTP 5xx in an access log except 503 (what a server answers the readiness probe while it loads).
/// Warnings fail above `MAX_WARNINGS`; mlx_lm's own "not recommended for production" is not counted.
pub fn scan_logs(lines: &[String]) -> (CheckStatus, String) {
    let is_error = |l: &str| {
        l.contains("Traceback (most recent call last)")
            || l.contains(" - ERROR - ")
            || l.contains("CRITICAL")
            || l.contains("FATAL")
            || l.split_whitespace()
                .next()
                .is_some_and(|w| w.ends_with("Error:") || w.ends_with("Exception:"))
            || is_5xx(l)
    };
    let errors: Vec<&String> = lines.iter().filter(|l| is_error(l)).collect();
    let warning_lines: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("Warning") || l.contains(" - WARNING - "))
        .filter(|l| !l.contains("not recommended for production"))
        .collect();
    let warnings = warning_lines.len();
    if errors.is_empty() && warnings > MAX_WARNINGS {
        return (
            CheckStatus::Fail,
            format!(
                "{warnings} warning line(s) in the last {} lines (more than {MAX_WARNINGS}), first: {}",
                lines.len(),
                super::client::excerpt(warning_lines[0], 160)
            ),
        );
    }
    match errors.first() {
        None => (
            CheckStatus::Pass,
            format!(
                "no errors in the last {} lines{}",
                lines.len(),
                if warnings > 0 {
                    format!(" ({warnings} warning line(s))")
                } else {
                    String::new()
                }
            ),
        ),
        Some(first) => (
            CheckStatus::Fail,
            format!(
                "{} error line(s) in the last {} lines, first: {}",
                errors.len(),
                lines.len(),
                super::client::excerpt(first, 160)
            ),
        ),
    }
}

/// `"POST /v1/chat/completions HTTP/1.1" 500 -` (Python's http.server access log), 503 excepted.
fn is_5xx(l: &str) -> bool {
    l.split("\" ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|code| code.parse::<u16>().ok())
        .is_some_and(|code| (500..600).contains(&code) && code != 503)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seeds_figures_apply_on_apple_silicon_scaled_to_the_chip() {
        let (e, why) = default_expectations("fast", Kind::Chat, "Apple M2 Ultra").unwrap();
        assert_eq!(e.gen_tok_s, Some(100.0));
        assert!(why.contains("M2 Ultra"), "{why}");
        let (e, _) = default_expectations("router", Kind::Chat, "Apple M4 Max").unwrap();
        assert_eq!(e.gen_tok_s, Some(205.0), "300 × 546 / 800");
        let (e, _) = default_expectations("thinking", Kind::Chat, "Apple M3").unwrap();
        assert_eq!(e.gen_tok_s, Some(6.0), "50 × 100 / 800");
        let (e, why) = default_expectations("thinking-2", Kind::Chat, "Apple M9 Hyper").unwrap();
        assert_eq!(e.gen_tok_s, Some(50.0));
        assert!(why.contains("unscaled"), "{why}");
        // Elsewhere, or another name or kind: skipped, saying why.
        let no = default_expectations("fast", Kind::Chat, "Intel(R) Xeon(R)").unwrap_err();
        assert!(no.contains("Apple silicon") && no.contains("Xeon"), "{no}");
        assert!(default_expectations("coder", Kind::Chat, "Apple M2 Ultra").is_err());
        assert!(default_expectations("fast-embed", Kind::Embedding, "Apple M2 Ultra").is_err());
        let why = default_expectations("tts", Kind::Tts, "Intel(R) Xeon(R)").unwrap_err();
        assert_eq!(
            why,
            "no expect_* keys in settings.toml (tts services take expect_rtf)"
        );
    }

    #[test]
    fn log_scan() {
        let l = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let ok = l(&[
            "…/server.py:1894: UserWarning: mlx_lm.server is not recommended for production",
            "2026-01-01 12:00:00,000 - INFO - Starting httpd at 127.0.0.1 on port 8080...",
            "127.0.0.1 - - [22/Nov/2026 15:49:26] \"POST /v1/chat/completions HTTP/1.1\" 200 -",
            "embed_server: 127.0.0.1 \"POST /v1/embeddings HTTP/1.1\" 503 -",
        ]);
        let (s, r) = scan_logs(&ok);
        assert_eq!(s, CheckStatus::Pass, "{r}");
        assert!(
            !r.contains("warning"),
            "mlx_lm's production notice is not counted: {r}"
        );
        // A few warnings pass (counted); a stream of them fails.
        let warn = "2026-01-01 12:00:00,000 - WARNING - prompt cache full, evicting";
        let (s, r) = scan_logs(&vec![warn.to_string(); MAX_WARNINGS]);
        assert_eq!(s, CheckStatus::Pass, "{r}");
        assert!(r.contains(&format!("{MAX_WARNINGS} warning")), "{r}");
        let (s, r) = scan_logs(&vec![warn.to_string(); MAX_WARNINGS + 1]);
        assert_eq!(s, CheckStatus::Fail, "{r}");
        assert!(r.contains("prompt cache full"), "{r}");
        for bad in [
            "Traceback (most recent call last):",
            "ValueError: bad model",
            "2026-01-01 12:00:00,000 - ERROR - generation failed",
            "127.0.0.1 - - [22/Nov/2026 15:49:26] \"POST /v1/chat/completions HTTP/1.1\" 500 -",
        ] {
            let (s, r) = scan_logs(&l(&[bad]));
            assert_eq!(s, CheckStatus::Fail, "{bad}");
            assert!(r.contains("first:"), "{r}");
        }
    }

    #[test]
    fn the_log_check_reads_the_current_process_only() {
        let l = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let log = l(&[
            "[mlx-box 1] starting: python -m mlx_lm server --port 8080",
            "Traceback (most recent call last):",
            "OSError: [Errno 98] Address already in use",
            "[mlx-box 2] backing off: restarting in 1.00 s",
            "[mlx-box 3] starting: python -m mlx_lm server --port 8080",
            "2026-01-01 12:00:00,000 - INFO - Starting httpd at 127.0.0.1 on port 8080...",
        ]);
        assert_eq!(current_run(&log), &log[5..]);
        assert_eq!(scan_logs(current_run(&log)).0, CheckStatus::Pass);
        // A traceback after the last start is this process's own.
        let mut now = log.clone();
        now.push("Traceback (most recent call last):".into());
        assert_eq!(scan_logs(current_run(&now)).0, CheckStatus::Fail);
        // A log without notes (an adopted server, a trimmed tail) is read whole.
        assert_eq!(current_run(&log[1..3]), &log[1..3]);
    }
}
