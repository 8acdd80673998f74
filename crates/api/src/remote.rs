//! The remote control API's shared pieces: certificate fingerprints (what a client pins), the roles of
//! access tokens, what `mlx-box control info` and `mlx-box tokens` show.

use serde::{Deserialize, Serialize};
use ts_rs::TS;

/// The SHA-256 of a certificate (DER) as pinned and shown: upper-case hex pairs joined by `:`.
pub fn fingerprint(der: &[u8]) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(der);
    let hex: Vec<String> = d.iter().map(|b| format!("{b:02X}")).collect();
    hex.join(":")
}

/// A fingerprint as the user may type it (any case, with or without `:` or spaces), normalised; None
/// when it is not 32 bytes of hex.
pub fn parse_fingerprint(s: &str) -> Option<String> {
    let hex: String = s
        .chars()
        .filter(|c| !matches!(c, ':' | ' ' | '-'))
        .collect();
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let up = hex.to_ascii_uppercase();
    let pairs: Vec<&str> = (0..32).map(|i| &up[2 * i..2 * i + 2]).collect();
    Some(pairs.join(":"))
}

/// What a token may do on the remote control API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// See everything, change nothing.
    Read,
    /// Everything, as on the local socket.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "read" => Some(Role::Read),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// `mlx-box control info`: where the remote control API listens and the fingerprint clients pin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct ControlInfo {
    /// `[control] listen`, when set.
    pub listen: Option<String>,
    /// The SHA-256 fingerprint of the daemon's certificate (made at its first start with a listen
    /// address); None before.
    pub fingerprint: Option<String>,
    pub certificate: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_print_and_parse_alike() {
        let f = fingerprint(b"certificate");
        assert_eq!(f.len(), 32 * 3 - 1);
        assert_eq!(parse_fingerprint(&f).as_deref(), Some(f.as_str()));
        assert_eq!(
            parse_fingerprint(&f.replace(':', "").to_lowercase()).as_deref(),
            Some(f.as_str())
        );
        assert_eq!(parse_fingerprint("AB:CD"), None);
        assert_eq!(parse_fingerprint(&"zz".repeat(32)), None);
    }
}
