//! A model's numeric precision, and what settings.toml's `quantization` claims: shared by the launch
//! (the embedding server quantizes at load) and the served-vs-configured check.

/// A model's numeric precision.
#[derive(Debug, Clone, PartialEq)]
pub enum Precision {
    /// Quantized weights: bits (and group size when known).
    Bits(u64, Option<u64>),
    /// Unquantized weights in this dtype ("bfloat16", "float16", "float32").
    Float(String),
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Precision::Bits(b, Some(g)) => write!(f, "{b}-bit (group {g})"),
            Precision::Bits(b, None) => write!(f, "{b}-bit"),
            Precision::Float(d) => f.write_str(d),
        }
    }
}

impl Precision {
    /// The same precision as far as the settings can say (a setting names no group size).
    pub fn agrees(&self, configured: &Precision) -> bool {
        match (self, configured) {
            (Precision::Bits(a, _), Precision::Bits(b, _)) => a == b,
            (Precision::Float(a), Precision::Float(b)) => a == b,
            _ => false,
        }
    }
}

pub(crate) fn float(s: &str) -> Option<Precision> {
    let name = match s.to_ascii_lowercase().as_str() {
        "bf16" | "bfloat16" => "bfloat16",
        "fp16" | "f16" | "float16" | "half" => "float16",
        "fp32" | "f32" | "float32" | "float" => "float32",
        _ => return None,
    };
    Some(Precision::Float(name.into()))
}

/// What `quantization` in settings.toml claims: a number of bits (`8`, `"4bit"`, `"int8"`, `"q4"`,
/// `"8-bit"`), a float dtype (`"bf16"`…), or `true` (the original mlx-box's int8 switch). Anything else
/// (`false`, free text) claims nothing checkable.
pub fn configured_precision(q: &str) -> Option<Precision> {
    let s = q.trim().trim_matches('"').to_ascii_lowercase();
    if s == "true" {
        return Some(Precision::Bits(8, None));
    }
    if let Some(p) = float(&s) {
        return Some(p);
    }
    let digits = s
        .trim_start_matches("int")
        .trim_start_matches('q')
        .trim_end_matches("bit")
        .trim_end_matches("bits")
        .trim_end_matches('-');
    digits
        .parse::<u64>()
        .ok()
        .filter(|b| (1..=16).contains(b))
        .map(|b| Precision::Bits(b, None))
}
