//! What the settings file contributes to the wire: service kinds, diagnostics, edits, bench expectations.

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use std::fmt;
use std::path::PathBuf;
use ts_rs::TS;

/// What a service serves; decides its default command line and its readiness probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, TS)]
#[ts(export)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Chat,
    Embedding,
    Ocr,
    Tts,
    Stt,
    Command,
    /// One chat model split across ranks (several Macs, or local ranks) by `mlx.launch`: tensor
    /// parallel, or pipeline.
    Distributed,
}

impl Kind {
    pub const NAMES: &'static [&'static str] = &[
        "chat",
        "embedding",
        "ocr",
        "tts",
        "stt",
        "command",
        "distributed",
    ];

    pub fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "chat" => Kind::Chat,
            "embedding" | "embed" => Kind::Embedding,
            "ocr" | "vision" => Kind::Ocr,
            "tts" => Kind::Tts,
            "stt" | "whisper" => Kind::Stt,
            "command" => Kind::Command,
            "distributed" => Kind::Distributed,
            _ => return None,
        })
    }

    /// The kind the original mlx-box implies by a service's name (it had no `kind` key).
    pub fn infer(name: &str, has_command: bool) -> Kind {
        let n = name.to_ascii_lowercase();
        if n.contains("embed") {
            Kind::Embedding
        } else if n.contains("ocr") || n.contains("vision") || n.contains("vlm") {
            Kind::Ocr
        } else if n.contains("tts") || n.contains("speech") {
            Kind::Tts
        } else if n.contains("whisper") || n.contains("stt") || n.contains("transcri") {
            Kind::Stt
        } else if has_command {
            Kind::Command
        } else {
            Kind::Chat
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Chat => "chat",
            Kind::Embedding => "embedding",
            Kind::Ocr => "ocr",
            Kind::Tts => "tts",
            Kind::Stt => "stt",
            Kind::Command => "command",
            Kind::Distributed => "distributed",
        }
    }

    /// Serves the OpenAI chat API (mlx_lm's server, alone or across ranks).
    pub fn is_chat(self) -> bool {
        matches!(self, Kind::Chat | Kind::Distributed)
    }
}

/// Per-service expectations of the benchmark (the `expect_*` keys): a run that misses one is a FAIL for
/// that service in `mlx-box bench` and `mlx-box doctor`. Changing them never restarts the server.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Expectations {
    /// `expect_gen_tok_s`: minimum mean generation tok/s of a request alone (concurrency 1).
    pub gen_tok_s: Option<f64>,
    /// `expect_ttft_ms`: maximum p50 time to first token (ms) at concurrency 1.
    pub ttft_ms: Option<f64>,
    /// `expect_output_tok_s`: minimum overall output tok/s at the highest concurrency measured.
    pub output_tok_s: Option<f64>,
    /// `expect_parallel_efficiency`: minimum parallel efficiency at the highest concurrency measured.
    pub parallel_efficiency: Option<f64>,
    /// `expect_inputs_s`: embedding services, minimum inputs/s at the highest concurrency measured.
    pub inputs_s: Option<f64>,
    /// `expect_rtf`: tts/stt services, maximum p50 real-time factor (processing time / audio length) of
    /// a request alone.
    #[serde(default)]
    pub rtf: Option<f64>,
}

impl Expectations {
    pub fn is_empty(&self) -> bool {
        *self == Expectations::default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord, TS)]
#[ts(export)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Note,
    Warning,
    Error,
}

/// One problem in settings.toml. Displays as `PATH:LINE:COL: severity: message (hint)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct Diagnostic {
    pub path: PathBuf,
    pub line: usize,
    pub col: usize,
    pub severity: Severity,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Note => "note",
        };
        write!(
            f,
            "{}:{}:{}: {sev}: {}",
            self.path.display(),
            self.line,
            self.col,
            self.message
        )?;
        if let Some(h) = &self.hint {
            write!(f, " ({h})")?;
        }
        Ok(())
    }
}

/// One change: set `value` at `path` (tables are created as needed), or remove the key when `value` is
/// null. Example: `{"path": ["services", "chat", "max_tokens"], "value": 4096}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct ConfigEdit {
    pub path: Vec<String>,
    pub value: Option<Json>,
}
