//! The remote control API (`[control] listen`): the same typed API as the Unix socket, over TCP and always
//! over TLS, for the operator's other Macs.
//!
//! - `identity.rs`: the daemon's self-signed certificate (made at first start, kept in the state dir) and
//!   its SHA-256 fingerprint, which clients pin.
//! - `tokens.rs`: access tokens (`read` sees everything and changes nothing, `admin` is the socket's
//!   power), checked in constant time, with failed attempts rate-limited per peer and logged without
//!   the token.
//! - `listen.rs`: the TLS accept loop serving the control router behind the token check.
//! - `hosts.rs`: the operator's side: `[hosts.NAME]` entries and the tokens sent to them.

pub mod hosts;
pub mod identity;
pub mod listen;
pub mod tokens;

pub use identity::Identity;
pub use mlxbox_api::remote::{fingerprint, parse_fingerprint, ControlInfo, Role};

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("cannot {what} {path}: {source}; check the state directory's permissions")]
    Io {
        what: &'static str,
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a usable {what} ({detail}); remove it and restart the daemon to make a new one (clients must then pin the new fingerprint)")]
    BadPem {
        what: &'static str,
        path: std::path::PathBuf,
        detail: String,
    },
    #[error("cannot make a certificate: {0}")]
    Generate(String),
    #[error("TLS setup failed: {0}")]
    Tls(String),
}
