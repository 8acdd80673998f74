//! OCR, speech-to-text and text-to-speech services on the real servers: mlx_vlm.server on a
//! tiny Qwen2.5-VL, mlx_audio.server on a tiny Whisper and a tiny Qwen3-TTS, each made here from the
//! libraries' own model classes with random weights (python/make_tiny_*.py). Driven through mlx-box's
//! frontend ports with the official OpenAI client where it has the call: an image in and text out with
//! `max_concurrency = 1` holding the rest in the queue; a WAV transcribed into OpenAI's JSON reply (the
//! proxy asks for it: mlx_audio's own default is NDJSON) in the service's language; speech synthesised
//! in the service's voice when the request names none; another model refused, by body or by route;
//! then the benchmark and the doctor on them.

mod common;
use common::*;
use std::time::Duration;

const KEY: &str = "media-key";

/// Reads a PNG with text on it through the OpenAI client; prints the reply and the image's data URL.
const OCR_PY: &str = r#"
import base64, io, json, sys
from PIL import Image, ImageDraw
from openai import OpenAI
img = Image.new("RGB", (200, 60), "white")
ImageDraw.Draw(img).text((10, 20), "HELLO OCR 123", fill="black")
buf = io.BytesIO()
img.save(buf, format="PNG")
url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
c = OpenAI(base_url=sys.argv[1], api_key=sys.argv[2])
r = c.chat.completions.create(model="ocr", max_tokens=16, messages=[{"role": "user", "content": [
    {"type": "text", "text": "Read the text in this image."},
    {"type": "image_url", "image_url": {"url": url}}]}])
print(json.dumps({"content": r.choices[0].message.content, "model": r.model,
                  "completion_tokens": r.usage.completion_tokens, "url": url}))
"#;

/// Synthesises through the OpenAI client (a named voice, WAV out).
const TTS_PY: &str = r#"
import json, sys
from openai import OpenAI
c = OpenAI(base_url=sys.argv[1], api_key=sys.argv[2])
r = c.audio.speech.create(model="tts", voice="ryan", input="Hello there.", response_format="wav")
open(sys.argv[3], "wb").write(r.content)
print(json.dumps({"bytes": len(r.content)}))
"#;

/// Transcribes a WAV through the OpenAI client (no response_format: OpenAI's default, JSON).
const STT_PY: &str = r#"
import json, sys
from openai import OpenAI
c = OpenAI(base_url=sys.argv[1], api_key=sys.argv[2])
t = c.audio.transcriptions.create(model="whisper", file=open(sys.argv[3], "rb"))
print(json.dumps({"text": t.text}))
"#;

#[test]
fn ocr_and_speech_services_run_on_the_real_servers() {
    let m = media_models();
    let py = m.env.python.display().to_string();
    let [ocr, ocr_b, stt, stt_b, tts, tts_b] = std::array::from_fn(|_| free_port());
    let d = Daemon::start(&format!(
        "[app]\npython = \"{py}\"\n[server]\napi_keys = [\"{KEY}\"]\n\
         [services.ocr]\nkind = \"ocr\"\nport = {ocr}\nbackend_port = {ocr_b}\nmodel = \"{}\"\n\
         max_concurrency = 1\ncontext_length = 2048\nmax_tokens = 16\nready_timeout_s = 180\n\
         [services.whisper]\nkind = \"stt\"\nport = {stt}\nbackend_port = {stt_b}\nmodel = \"{}\"\n\
         language = \"en\"\nready_timeout_s = 180\n\
         [services.tts]\nkind = \"tts\"\nport = {tts}\nbackend_port = {tts_b}\nmodel = \"{}\"\n\
         default_voice = \"serena\"\nlanguage = \"english\"\nready_timeout_s = 180\n",
        m.vlm.display(),
        m.whisper.display(),
        m.tts.display(),
    ));
    let s = d.wait_state("ocr", "ready", Duration::from_secs(180));
    assert_eq!(s["state"], "ready", "{s:#}");
    d.wait_state("whisper", "ready", Duration::from_secs(180));
    d.wait_state("tts", "ready", Duration::from_secs(180));

    // OCR: an image in, text out, through the frontend (the service's name as the model).
    let base = format!("http://127.0.0.1:{ocr}/v1");
    let r = python_json(&m.env.python, OCR_PY, &[&base, KEY]);
    let content = r["content"].as_str().unwrap();
    assert!(!content.is_empty(), "{r:#}");
    assert_eq!(r["completion_tokens"], 16, "{r:#}");
    assert_eq!(r["model"].as_str(), Some(m.vlm.to_str().unwrap()), "{r:#}");

    // max_concurrency = 1: one request at the server, four waiting, the rest refused at once.
    let body = serde_json::json!({
        "model": "ocr",
        "max_tokens": 400,
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "Read the text in this image."},
            {"type": "image_url", "image_url": {"url": r["url"]}}]}],
    })
    .to_string();
    let auth = format!("Bearer {KEY}");
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (body, auth) = (body.clone(), auth.clone());
            std::thread::spawn(move || {
                http(
                    ocr,
                    "POST",
                    "/v1/chat/completions",
                    &[
                        ("Content-Type", "application/json"),
                        ("Authorization", &auth),
                    ],
                    &body,
                )
                .0
            })
        })
        .collect();
    let mut codes: Vec<u16> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    codes.sort();
    assert_eq!(codes, [200, 200, 200, 200, 200, 429, 429, 429], "{codes:?}");
    // Its routes that swap the model are not a key holder's.
    let (code, _, body) = http(ocr, "POST", "/unload", &[("Authorization", &auth)], "");
    assert_eq!(code, 403, "{body}");

    // Speech to text: the OpenAI client's call, no response_format: JSON comes back.
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("tone.wav");
    std::fs::write(&wav, mlxbox_core::audio::tone_wav(1.0)).unwrap();
    let base = format!("http://127.0.0.1:{stt}/v1");
    let t = python_json(&m.env.python, STT_PY, &[&base, KEY, wav.to_str().unwrap()]);
    assert!(t["text"].is_string(), "{t:#}");
    // Another model, in the form or by the route that loads models: refused before the server.
    let form = |model: &str| {
        format!(
            "--B0\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\nRIFF\r\n\
             --B0\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\n{model}\r\n--B0--\r\n"
        )
    };
    let (code, _, body) = http(
        stt,
        "POST",
        "/v1/audio/transcriptions",
        &[
            ("Content-Type", "multipart/form-data; boundary=B0"),
            ("Authorization", &auth),
        ],
        &form("openai/whisper-large-v3"),
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("is not served here"), "{body}");
    let (code, _, body) = http(
        stt,
        "POST",
        "/v1/models?model_name=mlx-community/whisper-large-v3-turbo",
        &[("Authorization", &auth)],
        "",
    );
    assert_eq!(code, 403, "{body}");

    // Text to speech: with the OpenAI client, a voice named; then a request naming no voice (the tiny
    // Qwen3-TTS, like the real CustomVoice models, fails one that has none): the service's voice and
    // language are added. The reply is a WAV with sound either way.
    let out = dir.path().join("speech.wav");
    let r = python_json(
        &m.env.python,
        TTS_PY,
        &[
            &format!("http://127.0.0.1:{tts}/v1"),
            KEY,
            out.to_str().unwrap(),
        ],
    );
    let secs = mlxbox_core::audio::wav_seconds(&std::fs::read(&out).unwrap());
    assert!(secs.is_some_and(|s| s > 0.0), "{r:#} {secs:?}");
    let raw = |body: &str| {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", tts)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
        use std::io::{Read, Write};
        write!(
            s,
            "POST /v1/audio/speech HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nAuthorization: {auth}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut reply = vec![];
        let _ = s.read_to_end(&mut reply);
        reply
    };
    let reply = raw(r#"{"model":"tts","input":"Hello.","response_format":"wav"}"#);
    let head_end = reply.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&reply[..head_end]).to_string();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk_bytes(&reply[head_end..])
    } else {
        reply[head_end..].to_vec()
    };
    let secs = mlxbox_core::audio::wav_seconds(&body);
    assert!(secs.is_some_and(|s| s > 0.0), "{head} {} bytes", body.len());

    // The benchmark measures them: the real-time factors; OCR as a chat service.
    let (code, r) = cli_json(
        &d,
        &[
            "bench",
            "ocr",
            "whisper",
            "tts",
            "--concurrency",
            "1",
            "--requests",
            "2",
            "--max-tokens",
            "16",
            "--no-thinking-check",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{r:#}");
    let svc = |name: &str| {
        r["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .cloned()
            .unwrap()
    };
    let w = svc("whisper");
    let level = &w["audio"][0];
    assert_eq!(
        (level["requests"].as_u64(), level["errors"].as_u64()),
        (Some(2), Some(0)),
        "{w:#}"
    );
    assert!(
        (level["audio_s"].as_f64().unwrap() - 5.0).abs() < 0.01,
        "{w:#}"
    );
    assert!(level["rtf"]["p50"].as_f64().unwrap() > 0.0, "{w:#}");
    let t = svc("tts");
    let level = &t["audio"][0];
    assert_eq!(
        (level["requests"].as_u64(), level["errors"].as_u64()),
        (Some(2), Some(0)),
        "{t:#}"
    );
    assert!(level["audio_s"].as_f64().unwrap() > 0.0, "{t:#}");
    assert!(level["rtf"]["p50"].as_f64().unwrap() > 0.0, "{t:#}");
    assert_eq!(svc("ocr")["levels"][0]["requests"], 2);

    // The doctor: a real transcription, and concurrent ones.
    let (_, doc) = cli_json(&d, &["doctor", "--json"]);
    let find = |check: &str, svc: &str| {
        doc["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"] == check && c["service"] == svc)
            .cloned()
            .unwrap_or_else(|| panic!("no {check} {svc}: {doc:#}"))
    };
    let tr = find("transcription", "whisper");
    assert_eq!(tr["status"], "pass", "{tr:#}");
    assert!(
        tr["reason"].as_str().unwrap().contains("real-time factor"),
        "{tr:#}"
    );
    assert_eq!(find("concurrent", "whisper")["status"], "pass");
    let sp = find("speech", "tts");
    assert_eq!(sp["status"], "pass", "{sp:#}");
    assert_eq!(find("concurrent", "tts")["status"], "pass");
    assert_eq!(find("concurrent", "ocr")["status"], "pass");
}

/// A chunked body's bytes (a WAV is not text).
fn dechunk_bytes(mut b: &[u8]) -> Vec<u8> {
    let mut out = vec![];
    while let Some(i) = b.windows(2).position(|w| w == b"\r\n") {
        let n = usize::from_str_radix(String::from_utf8_lossy(&b[..i]).trim(), 16).unwrap_or(0);
        let rest = &b[i + 2..];
        if n == 0 || rest.len() < n {
            break;
        }
        out.extend_from_slice(&rest[..n]);
        b = rest[n..].strip_prefix(b"\r\n").unwrap_or(&rest[n..]);
    }
    out
}
