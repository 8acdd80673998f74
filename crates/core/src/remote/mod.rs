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

pub use identity::{Identity, RemoteError};
pub use mlxbox_api::remote::{fingerprint, parse_fingerprint, ControlInfo, Role};
