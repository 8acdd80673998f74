//! The audio the speech and transcription services are checked with: a WAV made here (a tone, so a
//! transcription probe needs no file), and the length of a WAV a speech server answered (the benchmark's
//! real-time factor).

use crate::config::ServiceSpec;
use std::io::Cursor;

/// What a request sent straight to the server (a probe, the benchmark) names that the proxy would add
/// to one passing through it: the service's model (mlx_audio.server and mlx_vlm.server load the one a
/// request names), voice and language.
#[derive(Debug, Clone, Default)]
pub struct DirectArgs {
    pub model: Option<String>,
    pub voice: Option<String>,
    pub language: Option<String>,
    /// The `model` a chat request must name ([`crate::launch::direct_model`]: mlx_vlm's).
    pub chat_model: Option<String>,
}

impl DirectArgs {
    pub fn of(spec: &ServiceSpec) -> DirectArgs {
        DirectArgs {
            model: spec.model.clone(),
            voice: spec.default_voice.clone(),
            language: spec.language.clone(),
            chat_model: crate::launch::direct_model(spec).map(str::to_string),
        }
    }
}

/// A `/v1/audio/speech` body: the service's model, voice and language (Qwen3-TTS's `lang_code`), WAV out.
pub fn speech_request(args: &DirectArgs, input: &str, max_tokens: u32) -> serde_json::Value {
    let mut body = serde_json::json!({
        "input": input,
        "response_format": "wav",
        "max_tokens": max_tokens,
    });
    if let Some(m) = &args.model {
        body["model"] = m.clone().into();
    }
    if let Some(v) = &args.voice {
        body["voice"] = v.clone().into();
    }
    if let Some(l) = &args.language {
        body["lang_code"] = l.clone().into();
    }
    body
}

/// A `/v1/audio/transcriptions` form: the WAV, the service's model and language, JSON out (OpenAI's
/// default; mlx_audio's own is NDJSON).
pub fn transcription_form(args: &DirectArgs, wav: Vec<u8>) -> reqwest::multipart::Form {
    let mut form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(wav).file_name("audio.wav"),
        )
        .text("response_format", "json");
    if let Some(m) = &args.model {
        form = form.text("model", m.clone());
    }
    if let Some(l) = &args.language {
        form = form.text("language", l.clone());
    }
    form
}

/// `secs` seconds of a 440 Hz tone, 16 kHz mono 16-bit PCM (what Whisper resamples everything to).
pub fn tone_wav(secs: f64) -> Vec<u8> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let n = (secs.clamp(0.0, 600.0) * 16_000.0) as u32;
    let mut out = Cursor::new(Vec::with_capacity(44 + 2 * n as usize));
    // Writing to memory cannot fail; a failure would only leave the WAV short.
    if let Ok(mut w) = hound::WavWriter::new(&mut out, spec) {
        for i in 0..n {
            let t = i as f64 / 16_000.0;
            let x = (t * 440.0 * std::f64::consts::TAU).sin() * 0.3;
            let _ = w.write_sample((x * i16::MAX as f64) as i16);
        }
        let _ = w.finalize();
    }
    out.into_inner()
}

/// The length in seconds of a WAV (as a speech server answers with `response_format = "wav"`); `None`
/// when it is not one.
pub fn wav_seconds(bytes: &[u8]) -> Option<f64> {
    let r = hound::WavReader::new(Cursor::new(bytes)).ok()?;
    let rate = r.spec().sample_rate;
    (rate > 0).then(|| r.duration() as f64 / rate as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tone_is_as_long_as_asked() {
        let w = tone_wav(1.5);
        assert_eq!(&w[..4], b"RIFF");
        assert!((wav_seconds(&w).unwrap() - 1.5).abs() < 1e-3);
        assert_eq!(wav_seconds(b"not a wav"), None);
        assert_eq!(wav_seconds(&w[..20]), None);
    }
}
