//! The engine: measures each service in turn (warm-up, the levels, the open-loop rate, the checks), with
//! the machine sampled once a second, and assembles the result.

use super::checks;
use super::client::{self, embed, stream_chat, AudioJob, EmbedRecord};
use super::load::{drive, prompt, Load};
use super::machine;
use super::metrics::{goodput, length_figures, level_figures, parallel_efficiency, Record, Stats};
use super::workload::{self, Workload};
use crate::api::now_ms;
use crate::config::{Kind, ServiceSpec};
use crate::monitor::{Sample, Sampler, Thermal};
use mlxbox_api::bench::report::*;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub type ProgressFn = Arc<dyn Fn(BenchProgress) + Send + Sync>;
/// Reads the machine once (memory, swap, pressure, thermal).
pub type SampleFn = Arc<dyn Fn() -> Sample + Send + Sync>;

/// How a run talks to its host: progress out, cancellation in, and where machine samples come from.
#[derive(Clone)]
pub struct Hooks {
    pub progress: ProgressFn,
    /// Set it to stop the run after the requests in flight (the partial result is kept).
    pub cancel: Arc<AtomicBool>,
    /// Called once a second during the run. The daemon passes its monitor's latest sample; standalone
    /// runs read the machine themselves.
    pub sample: SampleFn,
    pub sample_every: Duration,
}

impl Default for Hooks {
    fn default() -> Self {
        let sampler = Arc::new(Mutex::new(Sampler::default()));
        Hooks {
            progress: Arc::new(|_| {}),
            cancel: Arc::default(),
            sample: Arc::new(move || sampler.lock().unwrap().sample()),
            sample_every: Duration::from_secs(1),
        }
    }
}

/// A service to measure.
#[derive(Debug, Clone)]
pub struct Target {
    pub spec: ServiceSpec,
    /// `http://127.0.0.1:PORT`: the server itself (its bind port), not the proxy in front of it.
    pub base_url: String,
    /// Why it cannot be measured (not ready…); it is then listed with this reason.
    pub skipped: Option<String>,
    /// An API key to send (a pool is measured through its frontend, which asks for one).
    pub key: Option<String>,
}

impl Target {
    /// The service's own server, on loopback.
    pub fn new(spec: &ServiceSpec) -> Target {
        let (base_url, skipped) = match spec.bind_port() {
            Some(p) => (format!("http://127.0.0.1:{p}"), None),
            None => (String::new(), Some("it has no port".to_string())),
        };
        let skipped = skipped.or_else(|| {
            (!matches!(
                spec.kind,
                Kind::Chat
                    | Kind::Distributed
                    | Kind::Ocr
                    | Kind::Embedding
                    | Kind::Command
                    | Kind::Tts
                    | Kind::Stt
            ))
            .then(|| {
                format!(
                    "a {} service: the benchmark does not know how to measure it",
                    spec.kind.as_str()
                )
            })
        });
        Target {
            spec: spec.clone(),
            base_url,
            skipped,
            key: None,
        }
    }
}

/// Counts requests across the run and reports each one.
struct Tracker {
    id: String,
    done: AtomicU32,
    total: u32,
    progress: ProgressFn,
}

impl Tracker {
    fn tick(&self, service: &str, phase: &str, message: &str) {
        let done = self.done.fetch_add(1, Ordering::SeqCst) + 1;
        (self.progress)(BenchProgress {
            id: self.id.clone(),
            service: service.into(),
            phase: phase.into(),
            done: done.min(self.total),
            total: self.total,
            message: message.into(),
        });
    }
}

fn planned(opts: &BenchOptions, t: &Target) -> u32 {
    if t.skipped.is_some() {
        return 0;
    }
    let levels = opts.concurrency.len() as u32 * opts.requests;
    match t.spec.kind {
        Kind::Embedding | Kind::Tts | Kind::Stt => opts.warmup + levels,
        _ => {
            opts.warmup
                + levels
                + if opts.rate.is_some() {
                    opts.requests
                } else {
                    0
                }
                + u32::from(opts.thinking_check && t.spec.kind.is_chat())
                + if opts.long_context { 3 } else { 0 }
        }
    }
}

/// Runs the benchmark. Never fails as a whole: what could not be measured says why in the result.
pub async fn run(
    id: String,
    opts: BenchOptions,
    targets: Vec<Target>,
    hooks: Hooks,
) -> BenchResult {
    let Hooks {
        progress,
        cancel,
        sample,
        sample_every,
    } = hooks;
    let started_ms = now_ms();
    let tracker = Arc::new(Tracker {
        id: id.clone(),
        done: AtomicU32::new(0),
        total: targets.iter().map(|t| planned(&opts, t)).sum(),
        progress,
    });
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let sampler = {
        let (samples, sample) = (samples.clone(), sample.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(sample_every);
            loop {
                tick.tick().await;
                let x = sample();
                samples.lock().unwrap().push(x);
            }
        })
    };
    let http = super::client::http_client_with_key(
        Duration::from_secs_f64(opts.request_timeout_s.max(1.0)),
        targets.iter().find_map(|t| t.key.as_deref()),
    );
    // The dataset is read once for every service (its errors name the line).
    let dataset = match opts.dataset.clone() {
        None => Ok(None),
        Some(path) => {
            match tokio::task::spawn_blocking(move || workload::load_dataset(&path)).await {
                Ok(Ok(d)) => Ok(Some(Arc::new(d))),
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(e.to_string()),
            }
        }
    };
    let mut services = vec![];
    for t in &targets {
        let r = if cancel.load(Ordering::SeqCst) {
            skipped(t, "the run was cancelled".into())
        } else if let Some(why) = &t.skipped {
            skipped(t, why.clone())
        } else if t.spec.kind == Kind::Embedding {
            embedding_service(&http, &opts, t, &tracker, &cancel).await
        } else if matches!(t.spec.kind, Kind::Tts | Kind::Stt) {
            audio_service(&http, &opts, t, &tracker, &cancel).await
        } else {
            match dataset
                .clone()
                .and_then(|d| Workload::new(&opts, &t.spec, d).map_err(|e| e.to_string()))
            {
                Ok(w) => chat_service(&http, &opts, w, t, &tracker, &cancel, &samples).await,
                Err(why) => ServiceResult {
                    verdict: CheckStatus::Fail,
                    ..skipped(t, why)
                },
            }
        };
        services.push(r);
    }
    sampler.abort();
    let mut samples = std::mem::take(&mut *samples.lock().unwrap());
    samples.push(sample());
    BenchResult {
        id,
        started_ms,
        finished_ms: now_ms(),
        app_version: env!("CARGO_PKG_VERSION").into(),
        machine: machine::machine_info(),
        verdict: CheckStatus::worst(services.iter().map(|s| s.verdict)),
        pool: None,
        load: {
            let mut l = opts.load_description();
            if let Ok(Some(d)) = &dataset {
                l.push_str(&format!(
                    " · {} conversations, sha256 {}",
                    d.info.entries,
                    &d.info.sha256[..12]
                ));
            }
            if opts.slo_ttft_ms.is_some() || opts.slo_tpot_ms.is_some() {
                let v = |x: Option<f64>| x.map(|v| format!("{v}")).unwrap_or_else(|| "–".into());
                l.push_str(&format!(
                    " · SLO TTFT ≤ {} ms, TPOT ≤ {} ms",
                    v(opts.slo_ttft_ms),
                    v(opts.slo_tpot_ms)
                ));
            }
            l
        },
        dataset: dataset.ok().flatten().map(|d| d.info.clone()),
        options: opts,
        services,
        monitor: MonitorSummary::of(&samples),
        samples,
        cancelled: cancel.load(Ordering::SeqCst),
    }
}

fn base_result(t: &Target) -> ServiceResult {
    let config = machine::model_config(&t.spec);
    ServiceResult {
        name: t.spec.name.clone(),
        kind: t.spec.kind,
        model: t.spec.model.clone(),
        quantization: config
            .as_ref()
            .and_then(machine::quantization)
            .or_else(|| t.spec.quantization.clone()),
        fingerprint: None,
        settings: serde_json::to_value(&t.spec).unwrap_or_default(),
        skipped: None,
        levels: vec![],
        embedding: vec![],
        audio: vec![],
        long_context: None,
        thinking: None,
        thresholds: vec![],
        verdict: CheckStatus::Skip,
        throttling_suspected: false,
        prompt_template_tokens: None,
    }
}

fn skipped(t: &Target, why: String) -> ServiceResult {
    ServiceResult {
        skipped: Some(why),
        ..base_result(t)
    }
}

/// Fail when a check or threshold failed or a request failed; else pass.
fn verdict(r: &ServiceResult) -> CheckStatus {
    let requests_ok = r.levels.iter().all(|l| l.errors == 0)
        && r.embedding.iter().all(|l| l.errors == 0)
        && r.audio.iter().all(|l| l.errors == 0);
    CheckStatus::worst(
        r.thresholds
            .iter()
            .map(|t| t.status)
            .chain(r.thinking.as_ref().map(|t| t.status))
            .chain(r.long_context.as_ref().map(|l| l.status))
            .chain([if requests_ok {
                CheckStatus::Pass
            } else {
                CheckStatus::Fail
            }]),
    )
}

async fn chat_service(
    http: &reqwest::Client,
    opts: &BenchOptions,
    mut workload: Workload,
    t: &Target,
    tracker: &Arc<Tracker>,
    cancel: &Arc<AtomicBool>,
    samples: &Arc<Mutex<Vec<Sample>>>,
) -> ServiceResult {
    let mut r = base_result(t);
    let name = &t.spec.name;
    // At least one warm-up for synthetic prompts: it measures the chat template's share of a prompt.
    let warmups = if opts.prompt_tokens.is_some() {
        opts.warmup.max(1)
    } else {
        opts.warmup
    };
    for _ in 0..warmups {
        let (body, content_tokens) = workload.warmup();
        let o = stream_chat(http, &t.base_url, &body).await;
        tracker.tick(name, "warmup", &format!("{name}: warm-up"));
        r.fingerprint = r.fingerprint.or(o.fingerprint);
        if let Some(e) = o.record.error {
            r.skipped = Some(format!("the warm-up request failed: {e}"));
            r.verdict = CheckStatus::Fail;
            return r;
        }
        if let (Some(asked), Some(counted)) = (content_tokens, o.record.prompt_tokens) {
            r.prompt_template_tokens = workload.calibrate(asked, counted);
        }
    }
    let workload = Arc::new(workload);
    let mut loads: Vec<Load> = opts.concurrency.iter().map(|c| Load::Closed(*c)).collect();
    loads.extend(opts.rate.map(Load::Poisson));
    let mut throttled = false;
    for load in loads {
        if cancel.load(Ordering::SeqCst) {
            break;
        }
        let (phase, msg) = match load {
            Load::Closed(c) => ("level", format!("{name}: concurrency {c}")),
            Load::Poisson(rate) => ("rate", format!("{name}: Poisson {rate} req/s")),
        };
        let t0 = now_ms();
        let (records, peak) = chat_level(
            http,
            opts,
            &workload,
            t,
            load,
            tracker.clone(),
            phase,
            msg,
            cancel,
        )
        .await;
        let t1 = now_ms();
        let f = level_figures(&records);
        let lengths = length_figures(&records);
        // Throttling: the decode speed of successive requests fell while the machine got hotter.
        let series: Vec<f64> = records
            .iter()
            .filter_map(|r| r.metrics().and_then(|m| m.gen_tok_s))
            .collect();
        let thermal: Vec<Thermal> = samples
            .lock()
            .unwrap()
            .iter()
            .filter(|s| (t0..=t1 + 1000).contains(&s.t_ms))
            .map(|s| s.thermal)
            .collect();
        throttled |= crate::rules::throttling_suspected(&series, &thermal);
        let (concurrency, rate) = match load {
            Load::Closed(c) => (c, None),
            Load::Poisson(rate) => (peak, Some(rate)),
        };
        r.levels.push(LevelResult {
            concurrency,
            rate,
            requests: f.ok,
            errors: f.errors,
            first_error: f.first_error,
            duration_s: f.wall_s,
            ttft_ms: f.ttft_ms,
            tpot_ms: f.tpot_ms,
            itl_ms: f.itl_ms,
            e2e_ms: f.e2e_ms,
            gen_tok_s: f.gen_tok_s,
            output_tok_s: f.output_tok_s,
            request_s: f.request_s,
            prompt_tok_s: f.prompt_tok_s,
            parallel_efficiency: None,
            prompt_tokens: f.prompt_tokens,
            completion_tokens: f.completion_tokens,
            cached_tokens: f.cached_tokens,
            goodput: goodput(&records, opts.slo_ttft_ms, opts.slo_tpot_ms, f.wall_s),
            prompt_len: lengths.prompt_len,
            output_len: lengths.output_len,
            prompt_len_mismatches: lengths.prompt_mismatches,
            ended_early: lengths.ended_early,
        });
    }
    let base = r.level(1).map(|l| l.output_tok_s);
    for l in r.levels.iter_mut().filter(|l| l.rate.is_none()) {
        l.parallel_efficiency =
            base.and_then(|b| parallel_efficiency(l.output_tok_s, l.concurrency, b));
    }
    r.throttling_suspected = throttled;
    if opts.thinking_check && t.spec.kind.is_chat() && !cancel.load(Ordering::SeqCst) {
        let c = checks::thinking(
            http,
            &t.base_url,
            t.spec.disable_thinking_tags,
            opts.max_tokens.max(256),
        )
        .await;
        tracker.tick(name, "thinking", &format!("{name}: thinking check"));
        r.thinking = Some(c);
    }
    if opts.long_context && !cancel.load(Ordering::SeqCst) {
        let ctx = machine::context_tokens(&t.spec, machine::model_config(&t.spec).as_ref());
        let l = checks::long_context(http, &t.base_url, opts.long_context_tokens, ctx).await;
        for _ in 0..3 {
            tracker.tick(name, "long_context", &format!("{name}: long context"));
        }
        r.long_context = Some(l);
    }
    r.thresholds = r.check_thresholds(&t.spec.expect);
    r.verdict = verdict(&r);
    r
}

#[allow(clippy::too_many_arguments)]
async fn chat_level(
    http: &reqwest::Client,
    opts: &BenchOptions,
    workload: &Arc<Workload>,
    t: &Target,
    load: Load,
    tracker: Arc<Tracker>,
    phase: &'static str,
    msg: String,
    cancel: &Arc<AtomicBool>,
) -> (Vec<Record>, u32) {
    let (http, base, workload) = (http.clone(), t.base_url.clone(), workload.clone());
    let name = t.spec.name.clone();
    let d = drive(
        load,
        opts.requests,
        move |i, sent_at| {
            let (http, base) = (http.clone(), base.clone());
            // Made before the clock starts (a long synthetic prompt takes a moment to tokenize).
            let req = workload.request(i);
            async move {
                let mut rec = stream_chat(&http, &base, &req.body).await.record;
                rec.sent_at_ms = sent_at;
                rec.asked_prompt_tokens = req.prompt_tokens;
                rec.asked_output_tokens = req.output_tokens;
                rec
            }
        },
        Arc::new(move || tracker.tick(&name, phase, &msg)),
        cancel.clone(),
    )
    .await;
    (d.outputs, d.peak_in_flight)
}

/// A request of a closed-loop service level (embeddings, audio): when it was sent, and how it failed.
trait LevelRecord: Send + 'static {
    fn sent_at(&mut self, ms: f64);
    fn error(&self) -> Option<&String>;
}

impl LevelRecord for EmbedRecord {
    fn sent_at(&mut self, ms: f64) {
        self.sent_at_ms = ms;
    }
    fn error(&self) -> Option<&String> {
        self.error.as_ref()
    }
}

impl LevelRecord for client::AudioRecord {
    fn sent_at(&mut self, ms: f64) {
        self.sent_at_ms = ms;
    }
    fn error(&self) -> Option<&String> {
        self.error.as_ref()
    }
}

/// The warm-up requests, then one closed-loop level per `opts.concurrency` of `opts.requests` requests,
/// `send(i)` making request `i`: what the embedding and audio services share. Each level's concurrency
/// and records; `Err` when a warm-up request failed.
async fn closed_levels<R, F, Fut>(
    opts: &BenchOptions,
    t: &Target,
    tracker: &Arc<Tracker>,
    cancel: &Arc<AtomicBool>,
    phase: &'static str,
    send: F,
) -> Result<Vec<(u32, Vec<R>)>, String>
where
    R: LevelRecord,
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = R> + Send + 'static,
{
    let name = t.spec.name.clone();
    let send = Arc::new(send);
    for _ in 0..opts.warmup {
        let rec = send(0).await;
        tracker.tick(&name, "warmup", &format!("{name}: warm-up"));
        if let Some(e) = rec.error() {
            return Err(format!("the warm-up request failed: {e}"));
        }
    }
    let mut levels = vec![];
    for &c in &opts.concurrency {
        if cancel.load(Ordering::SeqCst) {
            break;
        }
        let (tr, n2, msg) = (
            tracker.clone(),
            name.clone(),
            format!("{name}: concurrency {c}"),
        );
        let send = send.clone();
        let d = drive(
            Load::Closed(c),
            opts.requests,
            move |i, sent_at| {
                let request = send(i);
                async move {
                    let mut rec = request.await;
                    rec.sent_at(sent_at);
                    rec
                }
            },
            Arc::new(move || tr.tick(&n2, phase, &msg)),
            cancel.clone(),
        )
        .await;
        levels.push((c, d.outputs));
    }
    Ok(levels)
}

/// A service whose warm-up failed: failed, with why.
fn warmup_failed(mut r: ServiceResult, why: String) -> ServiceResult {
    r.skipped = Some(why);
    r.verdict = CheckStatus::Fail;
    r
}

async fn embedding_service(
    http: &reqwest::Client,
    opts: &BenchOptions,
    t: &Target,
    tracker: &Arc<Tracker>,
    cancel: &Arc<AtomicBool>,
) -> ServiceResult {
    let mut r = base_result(t);
    let batch = opts.embed_batch.or(t.spec.batch_size).unwrap_or(16).max(1);
    let (http, base) = (http.clone(), t.base_url.clone());
    let send = move |i: usize| {
        let inputs: Vec<String> = (0..batch as usize)
            .map(|j| prompt(i * batch as usize + j))
            .collect();
        let (http, base) = (http.clone(), base.clone());
        async move { embed(&http, &base, &inputs).await }
    };
    match closed_levels(opts, t, tracker, cancel, "embedding", send).await {
        Ok(levels) => {
            r.embedding = levels
                .iter()
                .map(|(c, recs)| embed_level(*c, batch, recs))
                .collect()
        }
        Err(why) => return warmup_failed(r, why),
    }
    r.thresholds = r.check_thresholds(&t.spec.expect);
    r.verdict = verdict(&r);
    r
}

/// The sentence a speech service synthesises (a dozen words: a typical assistant reply's first line).
const SPEECH_TEXT: &str =
    "The quick brown fox jumps over the lazy dog, then rests in the warm afternoon sun.";
/// Seconds of the generated tone a transcription service gets when no `audio_file` is given.
const TONE_SECONDS: f64 = 5.0;

/// A speech (tts) or transcription (stt) service: closed-loop levels of real syntheses or
/// transcriptions; latency and the real-time factor (latency / audio length) per request.
async fn audio_service(
    http: &reqwest::Client,
    opts: &BenchOptions,
    t: &Target,
    tracker: &Arc<Tracker>,
    cancel: &Arc<AtomicBool>,
) -> ServiceResult {
    let mut r = base_result(t);
    let job = match audio_job(t.spec.kind, opts) {
        Ok(j) => Arc::new(j),
        Err(why) => return warmup_failed(r, why),
    };
    let args = Arc::new(crate::audio::DirectArgs::of(&t.spec));
    let (http, base) = (http.clone(), t.base_url.clone());
    let send = move |_: usize| {
        let (http, base, args, job) = (http.clone(), base.clone(), args.clone(), job.clone());
        async move { client::audio(&http, &base, &args, &job).await }
    };
    match closed_levels(opts, t, tracker, cancel, "audio", send).await {
        Ok(levels) => {
            r.audio = levels
                .iter()
                .map(|(c, recs)| audio_level(*c, recs))
                .collect()
        }
        Err(why) => return warmup_failed(r, why),
    }
    r.thresholds = r.check_thresholds(&t.spec.expect);
    r.verdict = verdict(&r);
    r
}

/// What each request of a speech (tts) or transcription (stt) service sends.
pub(super) fn audio_job(kind: Kind, opts: &BenchOptions) -> Result<AudioJob, String> {
    if kind == Kind::Tts {
        // Qwen3-TTS makes 12 codec tokens a second: `max_tokens` bounds the audio, not the text.
        return Ok(AudioJob::Speak {
            text: SPEECH_TEXT.to_string(),
            max_tokens: opts.max_tokens.max(1) * 4,
        });
    }
    let wav = match &opts.audio_file {
        None => crate::audio::tone_wav(TONE_SECONDS),
        Some(path) => read_wav(path)?,
    };
    let seconds = crate::audio::wav_seconds(&wav).unwrap_or(0.0);
    Ok(AudioJob::Transcribe {
        wav: Arc::new(wav),
        seconds,
    })
}

/// A WAV file for the transcription bench (bounded: 64 MiB, about 30 minutes of 16 kHz audio).
fn read_wav(path: &str) -> Result<Vec<u8>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("audio file {path}: {e}"))?;
    if meta.len() > 64 * 1024 * 1024 {
        return Err(format!("audio file {path} is over 64 MiB"));
    }
    let wav = std::fs::read(path).map_err(|e| format!("audio file {path}: {e}"))?;
    match crate::audio::wav_seconds(&wav) {
        Some(s) if s > 0.0 => Ok(wav),
        _ => Err(format!("audio file {path} is not a WAV with sound")),
    }
}

fn audio_level(concurrency: u32, recs: &[client::AudioRecord]) -> AudioLevelResult {
    let ok: Vec<&client::AudioRecord> = recs.iter().filter(|r| r.error.is_none()).collect();
    let wall_s = wall_seconds(recs.iter().map(|r| (r.sent_at_ms, r.latency_ms)));
    let per_s = |x: f64| if wall_s > 0.0 { x / wall_s } else { 0.0 };
    let audio: Vec<f64> = ok.iter().filter_map(|r| r.audio_s).collect();
    let rtf: Vec<f64> = ok
        .iter()
        .filter_map(|r| {
            r.audio_s
                .filter(|a| *a > 0.0)
                .map(|a| r.latency_ms / 1000.0 / a)
        })
        .collect();
    AudioLevelResult {
        concurrency,
        requests: ok.len() as u32,
        errors: (recs.len() - ok.len()) as u32,
        first_error: recs.iter().find_map(|r| r.error.clone()),
        duration_s: wall_s,
        request_s: per_s(ok.len() as f64),
        latency_ms: Stats::of(&ok.iter().map(|r| r.latency_ms).collect::<Vec<_>>()),
        audio_s: (!audio.is_empty()).then(|| audio.iter().sum::<f64>() / audio.len() as f64),
        rtf: Stats::of(&rtf),
        audio_s_per_s: (!audio.is_empty()).then(|| per_s(audio.iter().sum())),
        sample: ok.iter().find_map(|r| r.sample.clone()),
    }
}

/// The wall time a level took: from its first send to its last answer.
fn wall_seconds(recs: impl Iterator<Item = (f64, f64)>) -> f64 {
    let (mut start, mut end, mut any) = (f64::INFINITY, f64::NEG_INFINITY, false);
    for (sent, latency) in recs {
        start = start.min(sent);
        end = end.max(sent + latency);
        any = true;
    }
    if any {
        ((end - start) / 1000.0).max(0.0)
    } else {
        0.0
    }
}

fn embed_level(concurrency: u32, batch: u32, recs: &[EmbedRecord]) -> EmbedLevelResult {
    let ok: Vec<&EmbedRecord> = recs.iter().filter(|r| r.error.is_none()).collect();
    let wall_s = wall_seconds(recs.iter().map(|r| (r.sent_at_ms, r.latency_ms)));
    let per_s = |x: f64| if wall_s > 0.0 { x / wall_s } else { 0.0 };
    let tokens: Vec<u64> = ok.iter().filter_map(|r| r.prompt_tokens).collect();
    EmbedLevelResult {
        concurrency,
        batch_size: batch,
        requests: ok.len() as u32,
        errors: (recs.len() - ok.len()) as u32,
        first_error: recs.iter().find_map(|r| r.error.clone()),
        duration_s: wall_s,
        inputs_s: per_s(ok.iter().map(|r| f64::from(r.inputs)).sum()),
        request_s: per_s(ok.len() as f64),
        latency_ms: Stats::of(&ok.iter().map(|r| r.latency_ms).collect::<Vec<_>>()),
        prompt_tok_s: (tokens.len() == ok.len() && !ok.is_empty())
            .then(|| per_s(tokens.iter().sum::<u64>() as f64)),
    }
}
