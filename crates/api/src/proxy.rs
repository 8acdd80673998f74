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

/// A `[pools.NAME]`: one frontend that spreads requests over the same model served by several
/// members (this Mac's services, or `HOST/SERVICE` on the Macs of `[hosts]`).
#[derive(Debug, Default, Serialize, Deserialize, Clone, PartialEq, TS)]
#[ts(export)]
pub struct PoolStatus {
    pub name: String,
    /// Its own frontend port, if it has one (it is also reached through `[server] port`).
    pub port: Option<u16>,
    /// Requests the pool answered itself: none of its members could take them (503), or refused at the
    /// door (401/400).
    #[ts(type = "number")]
    pub refused: u64,
    /// Requests sent again to another member after one failed before a byte reached the client.
    #[ts(type = "number")]
    pub retries: u64,
    pub members: Vec<PoolMemberStatus>,
}

/// Whether a pool member takes requests.
#[derive(Debug, Default, Serialize, Deserialize, Clone, Copy, PartialEq, Eq, TS)]
#[ts(export)]
#[serde(rename_all = "snake_case")]
pub enum MemberHealth {
    /// Ready, reachable and not failing: takes its share.
    #[default]
    In,
    /// Back after being out: one request at a time until one succeeds.
    Probation,
    /// Not ready, unreachable, or failing (consecutive errors or timeouts).
    Out,
}

/// One member of a pool, as the pool's owner sees it.
#[derive(Debug, Default, Serialize, Deserialize, Clone, PartialEq, TS)]
#[ts(export)]
pub struct PoolMemberStatus {
    /// As written in `members`: `SERVICE` (this Mac) or `HOST/SERVICE`.
    pub member: String,
    pub weight: f64,
    pub health: MemberHealth,
    /// Why it is out (or on probation).
    pub why: Option<String>,
    #[ts(type = "number")]
    pub requests: u64,
    /// Failed attempts: connection refused, 5xx, timeout before the first byte.
    #[ts(type = "number")]
    pub errors: u64,
    /// Requests sent here because an earlier turn of the same conversation was (its prompt cache).
    #[ts(type = "number")]
    pub affinity_hits: u64,
    #[ts(type = "number")]
    pub in_flight: u64,
    #[ts(type = "number")]
    pub output_tokens: u64,
    /// Output tokens per second through the pool to this member, over the last few seconds.
    pub output_tok_s: f64,
}
