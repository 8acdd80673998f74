//! The monitor's 1 Hz sample and its enums.

use serde::{Deserialize, Serialize};
use ts_rs::TS;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord, TS)]
#[ts(export)]
#[serde(rename_all = "lowercase")]
pub enum Pressure {
    Unknown,
    Normal,
    Warn,
    Critical,
}

impl Pressure {
    pub fn as_str(self) -> &'static str {
        match self {
            Pressure::Unknown => "unknown",
            Pressure::Normal => "normal",
            Pressure::Warn => "warn",
            Pressure::Critical => "critical",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord, TS)]
#[ts(export)]
#[serde(rename_all = "lowercase")]
pub enum Thermal {
    Unknown,
    Nominal,
    Fair,
    Serious,
    Critical,
}

impl Thermal {
    pub fn as_str(self) -> &'static str {
        match self {
            Thermal::Unknown => "unknown",
            Thermal::Nominal => "nominal",
            Thermal::Fair => "fair",
            Thermal::Serious => "serious",
            Thermal::Critical => "critical",
        }
    }
}

/// One reading of the machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct Sample {
    #[ts(type = "number")]
    pub t_ms: u64,
    #[ts(type = "number")]
    pub total_bytes: u64,
    #[ts(type = "number")]
    pub used_bytes: u64,
    #[ts(type = "number")]
    pub available_bytes: u64,
    #[ts(type = "number")]
    pub swap_used_bytes: u64,
    #[ts(type = "number")]
    pub swap_total_bytes: u64,
    /// Bytes swapped out per second since the previous sample (None on the first sample / unsupported).
    pub swap_out_bytes_per_s: Option<f64>,
    /// Compressed memory, where the OS has it (macOS).
    #[ts(type = "number | null")]
    pub compressed_bytes: Option<u64>,
    /// Wired memory (macOS: pages that cannot be paged out, where Metal keeps a loaded model's buffers).
    #[serde(default)]
    #[ts(type = "number | null")]
    pub wired_bytes: Option<u64>,
    pub pressure: Pressure,
    pub thermal: Thermal,
    /// Hottest sensor, when the OS exposes one (shown, never alerted on).
    pub temperature_c: Option<f64>,
}

impl Sample {
    pub fn headroom_percent(&self) -> f64 {
        if self.total_bytes == 0 {
            return 100.0;
        }
        self.available_bytes as f64 * 100.0 / self.total_bytes as f64
    }
}

impl std::fmt::Display for Pressure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for Thermal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
