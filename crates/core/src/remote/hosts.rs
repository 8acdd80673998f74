//! The operator's side of a fleet: `[hosts.NAME]` entries written into settings.toml (comments and layout
//! kept) and each host's access token, kept in the control keyring under `host:NAME`.

use crate::config::{self, ConfigEdit, EditError};
use crate::keys::{KeyError, Keyring};

/// The keyring user that holds the token this machine sends to host `name`.
pub fn token_user(name: &str) -> String {
    format!("host:{name}")
}

/// A host name as a `[hosts.NAME]` key and a keyring user: letters, digits, `-`, `_`, 1–64 bytes.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `text` with `[hosts.NAME]` set to this address and fingerprint (added, or replaced).
pub fn with_host(
    text: &str,
    name: &str,
    address: &str,
    fingerprint: &str,
) -> Result<String, EditError> {
    let set = |k: &str, v: &str| ConfigEdit {
        path: vec!["hosts".into(), name.into(), k.into()],
        value: Some(serde_json::Value::String(v.into())),
    };
    config::apply_edits(
        text,
        &[set("address", address), set("fingerprint", fingerprint)],
    )
}

/// `text` without `[hosts.NAME]`.
pub fn without_host(text: &str, name: &str) -> Result<String, EditError> {
    config::apply_edits(
        text,
        &[ConfigEdit {
            path: vec!["hosts".into(), name.into()],
            value: None,
        }],
    )
}

/// The token stored for host `name`.
pub fn token(ring: &Keyring, name: &str) -> Result<Option<String>, KeyError> {
    ring.secret(&token_user(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_written_and_removed_keeping_the_file() {
        let text = "# my settings\n[services.chat]\nport = 8080 # the port\nmodel = \"m\"\n";
        let fp = "AA:".repeat(31) + "AA";
        let t = with_host(text, "studio-2", "198.18.0.2:9443", &fp).unwrap();
        assert!(t.contains("# my settings") && t.contains("# the port"));
        let (s, d) = crate::config::parse_settings(std::path::Path::new("s.toml"), &t);
        let s = s.unwrap_or_else(|| panic!("{d:?}"));
        let h = s.host("studio-2").unwrap();
        assert_eq!(
            (h.address.as_str(), h.fingerprint.as_str()),
            ("198.18.0.2:9443", fp.as_str())
        );
        let t = with_host(&t, "studio-2", "198.18.0.3:9443", &fp).unwrap();
        let (s, _) = crate::config::parse_settings(std::path::Path::new("s.toml"), &t);
        assert_eq!(s.unwrap().hosts.len(), 1, "replaced, not added twice");
        let t = without_host(&t, "studio-2").unwrap();
        let (s, _) = crate::config::parse_settings(std::path::Path::new("s.toml"), &t);
        assert!(s.unwrap().hosts.is_empty());
        assert!(t.contains("# the port"));
    }

    #[test]
    fn bad_host_entries_are_positioned_errors() {
        let base = "[services.chat]\nport = 8080\nmodel = \"m\"\n";
        for (bad, why) in [
            (
                "[hosts.a]\naddress = \"198.18.0.2\"\nfingerprint = \"x\"\n",
                "has no port",
            ),
            (
                "[hosts.a]\naddress = \"198.18.0.2:9443\"\nfingerprint = \"AB:CD\"\n",
                "not a SHA-256",
            ),
            (
                "[hosts.a]\naddress = \"198.18.0.2:9443\"\n",
                "needs an address and a fingerprint",
            ),
        ] {
            let (s, d) = crate::config::parse_settings(
                std::path::Path::new("s.toml"),
                &format!("{base}{bad}"),
            );
            assert!(s.is_none(), "{bad}");
            assert!(
                d.iter().any(|d| d.message.contains(why) && d.line >= 4),
                "{d:?}"
            );
        }
        assert!(valid_name("studio-2") && !valid_name("a b") && !valid_name(""));
    }
}
