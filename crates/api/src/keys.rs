//! API keys as the control API shows them (never a secret, except once in [`NewKey`]).

use serde::{Deserialize, Serialize};
use ts_rs::TS;

/// What is known about a key without reading it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct KeyInfo {
    pub id: String,
    /// Label given at creation (`--name`), or where it came from (`imported from settings.toml`).
    pub name: Option<String>,
    /// Unix time, seconds.
    #[ts(type = "number")]
    pub created: u64,
    /// The key's last 4 characters, to tell keys apart.
    pub last4: String,
    /// Services this key opens; empty = every service.
    #[serde(default)]
    pub services: Vec<String>,
}

impl KeyInfo {
    pub fn allows(&self, service: &str) -> bool {
        self.services.is_empty() || self.services.iter().any(|s| s == service)
    }
}

/// `GET /v1/keys`.
#[derive(Debug, Clone, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct KeyList {
    pub keys: Vec<KeyInfo>,
    /// Why the key store (`<state>/keys.json`) could not be read, if it could not (`keys` is then
    /// empty). Its wire name is older than the store (keys lived in the OS keyring).
    #[serde(rename = "keyring_error")]
    pub store_error: Option<String>,
    /// What the daemon noted about its keys, e.g. that it moved them out of the OS keyring.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub note: Option<String>,
}

/// `POST /v1/keys`: make a key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct NewKeyRequest {
    #[serde(default)]
    pub name: Option<String>,
    /// Services it opens; empty = all.
    #[serde(default)]
    pub services: Vec<String>,
}

/// The answer to `POST /v1/keys`: the only time the secret is shown.
#[derive(Debug, Clone, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct NewKey {
    pub key: KeyInfo,
    pub secret: String,
}

/// What `mlx-box keys import` did (`POST /v1/keys/import`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct ImportReport {
    pub imported: Vec<KeyInfo>,
    /// Blank `api_key` entries removed from the file (they were never keys).
    pub blank_removed: u32,
    /// A `settings.toml.bak` from an earlier save that held plaintext keys, now without them.
    pub scrubbed_backup: Option<std::path::PathBuf>,
}
