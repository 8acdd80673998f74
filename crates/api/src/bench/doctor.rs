//! `POST /v1/doctor`: what to check, and the checklist that comes back.

use super::CheckStatus;
use serde::{Deserialize, Serialize};
use ts_rs::TS;

/// `POST /v1/doctor` body; every field has a default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
#[serde(default)]
pub struct DoctorOptions {
    /// Only these services (empty = all).
    pub services: Vec<String>,
    /// Prompt tokens of the long-context check.
    pub long_context_tokens: u32,
    /// Simultaneous requests of the concurrency check.
    pub concurrent: u32,
    /// Log lines of each service to scan for errors.
    pub log_lines: u32,
}

impl Default for DoctorOptions {
    fn default() -> Self {
        DoctorOptions {
            services: vec![],
            long_context_tokens: 20_000,
            concurrent: 5,
            log_lines: 200,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct DoctorCheck {
    /// "ready" | "thresholds" | "swap" | "thinking" | "long_context" | "concurrent" | "logs".
    pub check: String,
    pub service: Option<String>,
    pub status: CheckStatus,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct DoctorReport {
    /// No check failed.
    pub ok: bool,
    pub checks: Vec<DoctorCheck>,
    #[ts(type = "number")]
    pub finished_ms: u64,
}
