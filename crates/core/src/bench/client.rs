//! The OpenAI-compatible client of the benchmark: streamed chat completions with `stream_options:
//! {include_usage: true}`, timing every chunk as its bytes arrive, and `/v1/embeddings` batches.

use super::metrics::Record;
use futures_util::StreamExt;
use serde::Deserialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One HTTP client for a whole run: keep-alive connections, no proxy from the environment, no pool cap
/// (256 concurrent streams must not queue inside the client).
pub fn http_client(timeout: Duration) -> reqwest::Client {
    http_client_with_key(timeout, None)
}

/// The same, sending `Authorization: Bearer KEY` on every request (a pool's frontend asks for one).
pub fn http_client_with_key(timeout: Duration, key: Option<&str>) -> reqwest::Client {
    crate::tls::install_crypto_provider();
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(v) =
        key.and_then(|k| reqwest::header::HeaderValue::from_str(&format!("Bearer {k}")).ok())
    {
        headers.insert(reqwest::header::AUTHORIZATION, v);
    }
    reqwest::Client::builder()
        .default_headers(headers)
        .no_proxy()
        .pool_max_idle_per_host(1024)
        .tcp_nodelay(true)
        .timeout(timeout)
        .build()
        .expect("http client")
}

/// A streamed chat answer: the timings, plus the text (the thinking check reads it).
#[derive(Debug, Clone, Default)]
pub struct ChatOutcome {
    pub record: Record,
    pub content: String,
    pub reasoning: String,
    /// `system_fingerprint` of the chunks (mlx_lm: `<mlx-lm>-<mlx>-<platform>`).
    pub fingerprint: Option<String>,
}

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<Choice>,
    usage: Option<Usage>,
    system_fingerprint: Option<String>,
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Choice {
    delta: Option<Delta>,
}

#[derive(Deserialize)]
struct Delta {
    content: Option<String>,
    // mlx_lm says `reasoning`; vLLM and others `reasoning_content`.
    reasoning: Option<String>,
    reasoning_content: Option<String>,
}

#[derive(Deserialize)]
struct Usage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    prompt_tokens_details: Option<PromptDetails>,
}

#[derive(Deserialize)]
struct PromptDetails {
    cached_tokens: Option<u64>,
}

/// The chat request body the benchmark sends. No `model`: mlx_lm would load the named model instead of
/// the one it serves.
pub fn chat_body(prompt: &str, max_tokens: u32) -> serde_json::Value {
    serde_json::json!({
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "stream": true,
        "stream_options": {"include_usage": true},
    })
}

/// Sends one streamed chat completion to `base` (`http://127.0.0.1:PORT`) and records it. Never fails:
/// a failure is a record with `error` set.
pub async fn stream_chat(
    http: &reqwest::Client,
    base: &str,
    body: &serde_json::Value,
) -> ChatOutcome {
    let mut out = ChatOutcome::default();
    let t0 = Instant::now();
    let ms = |t: Instant| t.duration_since(t0).as_secs_f64() * 1000.0;
    let resp = http
        .post(format!("{base}/v1/chat/completions"))
        .json(body)
        .send()
        .await;
    let resp = match resp {
        Ok(r) => r,
        Err(e) => {
            out.record.error = Some(format!("request failed: {e}"));
            out.record.e2e_ms = ms(Instant::now());
            return out;
        }
    };
    if !resp.status().is_success() {
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        out.record.error = Some(format!("HTTP {status}: {}", excerpt(&text, 200)));
        out.record.e2e_ms = ms(Instant::now());
        return out;
    }
    let mut stream = resp.bytes_stream();
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut saw_usage = false;
    while let Some(bytes) = stream.next().await {
        // Every event in these bytes arrived now: time them before any parsing.
        let at = ms(Instant::now());
        let bytes = match bytes {
            Ok(b) => b,
            Err(e) => {
                out.record.error = Some(format!("the stream broke: {e}"));
                break;
            }
        };
        buf.extend_from_slice(&bytes);
        let mut start = 0;
        while let Some(i) = buf[start..].iter().position(|&b| b == b'\n') {
            let line = &buf[start..start + i];
            start += i + 1;
            let Some(data) = line.strip_prefix(b"data:") else {
                continue; // blank separators, `: keepalive` comments, `event:` lines
            };
            let data = data.trim_ascii();
            if data == b"[DONE]" || data.is_empty() {
                continue;
            }
            out.record.first_chunk_ms.get_or_insert(at);
            match serde_json::from_slice::<Chunk>(data) {
                Ok(c) => saw_usage |= apply_chunk(&mut out, c, at),
                Err(e) => {
                    out.record.error = Some(format!(
                        "not an OpenAI stream chunk ({e}): {}",
                        excerpt(&String::from_utf8_lossy(data), 120)
                    ));
                }
            }
        }
        buf.drain(..start);
    }
    out.record.e2e_ms = ms(Instant::now());
    if out.record.error.is_none() && !saw_usage {
        out.record.error = Some(
            "the stream had no `usage` (the server ignores stream_options.include_usage): \
             token counts are not guessed, so this request is not measured"
                .into(),
        );
    }
    out
}

/// Folds one chunk into the outcome; true when it carried usage.
fn apply_chunk(out: &mut ChatOutcome, c: Chunk, at: f64) -> bool {
    if let Some(e) = c.error {
        out.record.error = Some(format!(
            "the server sent an error: {}",
            excerpt(&e.to_string(), 200)
        ));
    }
    if out.fingerprint.is_none() {
        out.fingerprint = c.system_fingerprint;
    }
    let mut text = false;
    for ch in c.choices {
        let Some(d) = ch.delta else { continue };
        if let Some(s) = d.content.filter(|s| !s.is_empty()) {
            out.content.push_str(&s);
            text = true;
        }
        if let Some(s) = d
            .reasoning
            .or(d.reasoning_content)
            .filter(|s| !s.is_empty())
        {
            out.reasoning.push_str(&s);
            text = true;
        }
    }
    if text {
        out.record.text_chunks_ms.push(at);
    }
    match c.usage {
        Some(u) => {
            out.record.prompt_tokens = u.prompt_tokens;
            out.record.completion_tokens = u.completion_tokens;
            out.record.cached_tokens = u.prompt_tokens_details.and_then(|d| d.cached_tokens);
            true
        }
        None => false,
    }
}

/// One `/v1/embeddings` request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EmbedRecord {
    pub sent_at_ms: f64,
    pub latency_ms: f64,
    pub inputs: u32,
    pub prompt_tokens: Option<u64>,
    pub error: Option<String>,
}

#[derive(Deserialize)]
struct EmbedReply {
    #[serde(default)]
    data: Vec<serde::de::IgnoredAny>,
    usage: Option<Usage>,
}

pub async fn embed(http: &reqwest::Client, base: &str, inputs: &[String]) -> EmbedRecord {
    let t0 = Instant::now();
    let mut rec = EmbedRecord {
        inputs: inputs.len() as u32,
        ..Default::default()
    };
    let resp = http
        .post(format!("{base}/v1/embeddings"))
        .json(&serde_json::json!({ "input": inputs }))
        .send()
        .await;
    let result = match resp {
        Err(e) => Err(format!("request failed: {e}")),
        Ok(r) if !r.status().is_success() => {
            let status = r.status();
            Err(format!(
                "HTTP {status}: {}",
                excerpt(&r.text().await.unwrap_or_default(), 200)
            ))
        }
        Ok(r) => r
            .json::<EmbedReply>()
            .await
            .map_err(|e| format!("not an embeddings answer: {e}")),
    };
    rec.latency_ms = t0.elapsed().as_secs_f64() * 1000.0;
    match result {
        Ok(r) if r.data.len() == inputs.len() => {
            rec.prompt_tokens = r.usage.and_then(|u| u.prompt_tokens);
        }
        Ok(r) => {
            rec.error = Some(format!(
                "{} embeddings for {} inputs",
                r.data.len(),
                inputs.len()
            ))
        }
        Err(e) => rec.error = Some(e),
    }
    rec
}

/// One speech or transcription request.
#[derive(Debug, Clone, Default)]
pub struct AudioRecord {
    pub sent_at_ms: f64,
    pub latency_ms: f64,
    /// Seconds of audio synthesised (the reply's WAV) or transcribed (the input).
    pub audio_s: Option<f64>,
    /// The transcript's start, or the WAV's length and size.
    pub sample: Option<String>,
    pub error: Option<String>,
}

/// What an audio request sends.
#[derive(Clone)]
pub enum AudioJob {
    /// Synthesise this text (up to `max_tokens` codec tokens).
    Speak { text: String, max_tokens: u32 },
    /// Transcribe this WAV of `seconds`.
    Transcribe { wav: Arc<Vec<u8>>, seconds: f64 },
}

pub async fn audio(
    http: &reqwest::Client,
    base: &str,
    args: &crate::audio::DirectArgs,
    job: &AudioJob,
) -> AudioRecord {
    let t0 = Instant::now();
    let req = match job {
        AudioJob::Speak { text, max_tokens } => http
            .post(format!("{base}/v1/audio/speech"))
            .json(&crate::audio::speech_request(args, text, *max_tokens)),
        AudioJob::Transcribe { wav, .. } => http
            .post(format!("{base}/v1/audio/transcriptions"))
            .multipart(crate::audio::transcription_form(args, wav.as_ref().clone())),
    };
    let reply = match req.send().await {
        Err(e) => Err(format!("request failed: {e}")),
        Ok(r) if !r.status().is_success() => {
            let status = r.status();
            Err(format!(
                "HTTP {status}: {}",
                excerpt(&r.text().await.unwrap_or_default(), 200)
            ))
        }
        Ok(r) => r
            .bytes()
            .await
            .map_err(|e| format!("reading the reply: {e}")),
    };
    let mut rec = AudioRecord {
        latency_ms: t0.elapsed().as_secs_f64() * 1000.0,
        ..Default::default()
    };
    match (reply, job) {
        (Err(e), _) => rec.error = Some(e),
        (Ok(b), AudioJob::Speak { .. }) => match crate::audio::wav_seconds(&b) {
            Some(s) if s > 0.0 => {
                rec.audio_s = Some(s);
                rec.sample = Some(format!("{s:.2} s of audio, {} bytes", b.len()));
            }
            _ => {
                rec.error = Some(format!(
                    "the reply ({} bytes) is not a WAV with sound",
                    b.len()
                ))
            }
        },
        (Ok(b), AudioJob::Transcribe { seconds, .. }) => {
            #[derive(Deserialize)]
            struct Transcript {
                text: String,
            }
            match serde_json::from_slice::<Transcript>(&b) {
                Ok(t) => {
                    rec.audio_s = Some(*seconds);
                    rec.sample = Some(if t.text.trim().is_empty() {
                        "(an empty transcript)".into()
                    } else {
                        excerpt(&t.text, 80)
                    });
                }
                Err(e) => {
                    rec.error = Some(format!(
                        "not a transcription ({e}): {}",
                        excerpt(&String::from_utf8_lossy(&b), 120)
                    ))
                }
            }
        }
    }
    rec
}

pub fn excerpt(s: &str, n: usize) -> String {
    let s = s.trim();
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}
