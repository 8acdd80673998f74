//! The wire of mlx-box: every type that crosses the control socket or reaches the menu-bar UI, and the
//! enums they are made of. A leaf crate (serde, ts-rs, sha2; no async runtime, no HTTP) so that the
//! daemon, the CLI, the app and anything else that speaks to the daemon share one definition. The UI's
//! TypeScript types are generated from these (`cargo test -p mlxbox-api export_bindings` writes
//! `ui/src/bindings`; CI fails on drift).

pub mod bench;
pub mod call;
pub mod config;
pub mod control;
pub mod keys;
pub mod models;
pub mod monitor;
pub mod paths;
pub mod proxy;
pub mod remote;
pub mod service;
pub mod settings;
pub mod status;
pub mod units;

pub use status::*;

/// Unix time in milliseconds (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
