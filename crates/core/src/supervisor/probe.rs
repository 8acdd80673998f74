//! Readiness and liveness probes. Readiness of a model server is a real 1-token request: mlx_lm.server
//! answers `/health` before the model is loaded (it loads on the first request).

use crate::audio::{speech_request, transcription_form, DirectArgs};
use crate::config::Probe;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// How often readiness is polled while a server starts.
pub const READY_POLL: Duration = Duration::from_millis(50);
/// The first pause between two readiness polls (doubling up to `READY_POLL`).
const READY_POLL_FIRST: Duration = Duration::from_millis(10);

fn url(host: &str, port: u16, path: &str) -> String {
    let host = match host {
        "0.0.0.0" | "" | "localhost" => "127.0.0.1",
        "::" => "::1",
        h => h,
    };
    if host.contains(':') {
        format!("http://[{host}]:{port}{path}")
    } else {
        format!("http://{host}:{port}{path}")
    }
}

fn connect_addr(host: &str, port: u16) -> String {
    let u = url(host, port, "");
    u.trim_start_matches("http://").to_string()
}

/// The sentence a speech probe synthesises; bounded to 100 codec tokens (about 8 s at Qwen3-TTS's 12 Hz):
/// a model that never stops still answers.
const SPEECH_PROBE_TEXT: &str = "Ready.";
const SPEECH_PROBE_MAX_TOKENS: u32 = 100;

/// Why a readiness attempt failed.
enum NotReady {
    /// Worth polling again (not listening yet, still loading).
    Retry(String),
    /// It will not get better: e.g. mlx_lm's model failed to load ("generation thread died").
    Fatal(String),
}

/// One attempt of the readiness check. `Ok(())` = ready.
async fn ready_once(
    client: &reqwest::Client,
    probe: &Probe,
    args: &DirectArgs,
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<(), NotReady> {
    ready_attempt(client, probe, args, host, port, timeout)
        .await
        .map_err(|e| {
            if e.contains("generation thread died") {
                NotReady::Fatal(format!("{e} (the model failed to load: see the log)"))
            } else {
                NotReady::Retry(e)
            }
        })
}

async fn ready_attempt(
    client: &reqwest::Client,
    probe: &Probe,
    args: &DirectArgs,
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<(), String> {
    // Cheap first: until the port accepts, do not bother with HTTP.
    match tokio::time::timeout(
        Duration::from_millis(500),
        TcpStream::connect(connect_addr(host, port)),
    )
    .await
    {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(format!("port {port} does not accept connections ({e})")),
        Err(_) => return Err(format!("port {port}: connect timed out")),
    }
    let req = match probe {
        Probe::Tcp => return Ok(()),
        Probe::Chat => {
            let mut body = serde_json::json!({
                "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 1,
                "stream": false,
            });
            if let Some(m) = &args.chat_model {
                body["model"] = m.clone().into();
            }
            client
                .post(url(host, port, "/v1/chat/completions"))
                .json(&body)
        }
        Probe::Embedding => client
            .post(url(host, port, "/v1/embeddings"))
            .json(&serde_json::json!({"input": "hi"})),
        Probe::Speech => client
            .post(url(host, port, "/v1/audio/speech"))
            .json(&speech_request(
                args,
                SPEECH_PROBE_TEXT,
                SPEECH_PROBE_MAX_TOKENS,
            )),
        Probe::Transcription => client
            .post(url(host, port, "/v1/audio/transcriptions"))
            .multipart(transcription_form(args, crate::audio::tone_wav(1.0))),
        Probe::Http(path) => client.get(url(host, port, path)),
    };
    let resp = req
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| format!("probe request failed: {e}"))?;
    let status = resp.status();
    if status.is_success() && *probe == Probe::Speech {
        // A speech server that answers 200 without audio has not synthesised anything.
        let body = resp
            .bytes()
            .await
            .map_err(|e| format!("probe reply: {e}"))?;
        match crate::audio::wav_seconds(&body) {
            Some(s) if s > 0.0 => Ok(()),
            _ => Err(format!(
                "the speech probe got {} bytes that are not a WAV with sound",
                body.len()
            )),
        }
    } else if status.is_success() {
        Ok(())
    } else {
        let body = resp.text().await.unwrap_or_default();
        Err(format!(
            "probe got HTTP {status}: {}",
            body.chars().take(200).collect::<String>()
        ))
    }
}

/// Polls until the server is ready or `deadline` passes; returns the last failure on timeout.
pub async fn wait_ready(
    client: reqwest::Client,
    probe: Probe,
    args: DirectArgs,
    host: String,
    port: u16,
    deadline: Instant,
) -> Result<(), String> {
    let mut last = String::from("no answer yet");
    // 10, 20, 40, 50, 50 … ms: a server that is up in milliseconds (an on-demand load of a small one)
    // is seen at once; a big model's minutes of loading cost a poll every READY_POLL.
    let mut pause = READY_POLL_FIRST;
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Err(last);
        }
        match ready_once(&client, &probe, &args, &host, port, deadline - now).await {
            Ok(()) => return Ok(()),
            Err(NotReady::Fatal(e)) => return Err(e),
            Err(NotReady::Retry(e)) => last = e,
        }
        tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
        pause = (pause * 2).min(READY_POLL);
    }
}

/// One liveness check: cheap endpoints only, never a generation (it would queue behind user requests).
pub async fn liveness(
    client: reqwest::Client,
    probe: Probe,
    host: String,
    port: u16,
    timeout: Duration,
) -> Result<(), String> {
    // mlx_lm's /health is 200 while its generation thread lives and 503 once it died; /v1/models is not
    // safe (it throws when the Hugging Face cache folder is missing).
    let path = match &probe {
        Probe::Chat | Probe::Embedding => "/health",
        // mlx_audio.server's welcome page: no generation, no scan of the model cache.
        Probe::Speech | Probe::Transcription => "/",
        Probe::Http(p) => p.as_str(),
        Probe::Tcp => {
            return match tokio::time::timeout(
                timeout,
                TcpStream::connect(connect_addr(&host, port)),
            )
            .await
            {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(format!("connect failed: {e}")),
                Err(_) => Err(format!("connect timed out after {timeout:?}")),
            }
        }
    };
    let resp = client
        .get(url(&host, port, path))
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| format!("GET {path} failed: {e}"))?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(format!("GET {path} answered HTTP {}", resp.status()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(url("0.0.0.0", 80, "/x"), "http://127.0.0.1:80/x");
        assert_eq!(url("::1", 80, "/x"), "http://[::1]:80/x");
        assert_eq!(connect_addr("127.0.0.1", 81), "127.0.0.1:81");
    }
}
