//! The proxy's counters of one service.

use serde::{Deserialize, Serialize};
use ts_rs::TS;

/// Per service, on `GET /v1/proxy/stats`.
#[derive(Debug, Default, Serialize, Deserialize, Clone, PartialEq, TS)]
#[ts(export)]
pub struct ProxyStats {
    #[ts(type = "number")]
    pub requests: u64,
    /// Answers that were not 2xx (backend errors, 502, 504; not 401/429/503, counted on their own).
    #[ts(type = "number")]
    pub errors: u64,
    #[ts(type = "number")]
    pub unauthorized: u64,
    #[ts(type = "number")]
    pub rejected_busy: u64,
    #[ts(type = "number")]
    pub unavailable: u64,
    #[ts(type = "number")]
    pub timeouts: u64,
    /// Requests refused before they reached the backend: a model the service does not serve, a Host that
    /// is not this machine's, a malformed or too slow body (400/403/408/413).
    #[serde(default)]
    #[ts(type = "number")]
    pub bad_requests: u64,
    /// Connections refused at the per-listener or per-process connection cap (503, then closed).
    #[serde(default)]
    #[ts(type = "number")]
    pub refused_connections: u64,
    /// Requests admitted and not finished (a stream counts until its last byte).
    #[ts(type = "number")]
    pub in_flight: u64,
    /// Requests admitted and waiting for a `max_concurrency` slot.
    #[serde(default)]
    #[ts(type = "number")]
    pub waiting: u64,
    /// Output tokens so far (from `usage`; on streams, one per content chunk until `usage` arrives).
    #[ts(type = "number")]
    pub output_tokens: u64,
    /// Output tokens per second over the last few seconds, all requests together.
    pub output_tok_s: f64,
    /// Decode speed of the last finished stream (tokens / time from first to last token).
    pub last_decode_tok_s: Option<f64>,
    /// When the last request arrived or finished (unix ms): what idle unload and eviction go by.
    #[serde(default)]
    #[ts(type = "number | null")]
    pub last_request_ms: Option<u64>,
    /// Requests waiting for the service to load (on demand).
    #[serde(default)]
    #[ts(type = "number")]
    pub loading: u64,
}
