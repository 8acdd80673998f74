//! The plaintext keys of settings.toml (`[server] api_key` / `api_keys`, the original mlx-box's): read,
//! stripped from the text, and imported into the key store (`mlx-box keys import`).

use super::key::{ImportReport, KeyError};
use super::store::KeyStore;
use crate::config::{self, ConfigEdit};
use std::path::Path;

/// Every `[server] api_key` / `api_keys` string of a settings text, blank ones included, in file order.
fn key_entries(text: &str) -> Vec<String> {
    let Ok(doc) = text.parse::<toml_edit::DocumentMut>() else {
        return vec![];
    };
    let Some(server) = doc.get("server") else {
        return vec![];
    };
    let single = server.get("api_key").and_then(|v| v.as_str()).into_iter();
    let list = server
        .get("api_keys")
        .and_then(|v| v.as_array())
        .into_iter()
        .flat_map(|a| a.iter().filter_map(|v| v.as_str()));
    single.chain(list).map(str::to_string).collect()
}

/// The plaintext keys of a settings.toml text (`[server] api_key` and `api_keys`), in file order; a blank
/// entry is no key.
pub fn plaintext_keys(text: &str) -> Vec<String> {
    let mut out = key_entries(text);
    out.retain(|k| !k.trim().is_empty());
    out.dedup();
    out
}

/// How many `api_key` / `api_keys` entries of a settings text are blank.
fn blank_keys(text: &str) -> usize {
    key_entries(text)
        .iter()
        .filter(|k| k.trim().is_empty())
        .count()
}

/// The settings text without its plaintext keys (toml_edit: everything else kept byte for byte).
pub fn strip_plaintext_keys(text: &str) -> Result<String, config::EditError> {
    config::apply_edits(
        text,
        &[
            ConfigEdit {
                path: vec!["server".into(), "api_key".into()],
                value: None,
            },
            ConfigEdit {
                path: vec!["server".into(), "api_keys".into()],
                value: None,
            },
        ],
    )
}

/// `mlx-box keys import`: every plaintext key of `path` hashed into the key store, then removed from the file
/// (atomic write; comments and layout kept). Keys go in first: a failure never loses one. No `.bak` is
/// made of a file whose only change is its keys leaving it (it would keep them in plaintext), and an
/// older `.bak` that holds keys is scrubbed too.
pub fn import_from_settings(store: &KeyStore, path: &Path) -> Result<ImportReport, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|e| KeyError::Read {
        path: path.to_path_buf(),
        source: e,
    })?;
    let keys = plaintext_keys(&text);
    let blank_removed = u32::try_from(blank_keys(&text)).unwrap_or(u32::MAX);
    let mut report = ImportReport {
        imported: vec![],
        blank_removed,
        scrubbed_backup: None,
    };
    if keys.is_empty() && blank_removed == 0 {
        return Ok(report);
    }
    let stripped =
        strip_plaintext_keys(&text).map_err(|e| KeyError::Edit(e.to_string(), path.into()))?;
    let label = format!("imported from {}", path.display());
    for k in &keys {
        report.imported.push(store.insert(k, Some(&label), &[])?);
    }
    let write = |p: &Path, bytes: &[u8]| {
        config::atomic_write(p, bytes).map_err(|e| KeyError::Write {
            path: p.to_path_buf(),
            source: e,
        })
    };
    write(path, stripped.as_bytes())?;
    let bak = config::backup_path(path);
    if let Ok(old) = std::fs::read_to_string(&bak) {
        if !plaintext_keys(&old).is_empty() {
            match strip_plaintext_keys(&old) {
                Ok(clean) => {
                    write(&bak, clean.as_bytes())?;
                    let _ = std::fs::set_permissions(
                        &bak,
                        std::os::unix::fs::PermissionsExt::from_mode(0o600),
                    );
                }
                // A backup we cannot edit key by key goes: it holds keys.
                Err(_) => std::fs::remove_file(&bak).map_err(|e| KeyError::Write {
                    path: bak.clone(),
                    source: e,
                })?,
            }
            report.scrubbed_backup = Some(bak);
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_keeps_comments_and_layout() {
        let text = "# top comment\n[server]\n# the host\nhost = \"127.0.0.1\"  # trailing\napi_key = \"k0\"\napi_keys = [\"k1\", \"k2\"]\n\n[services.chat]\n# chat comment\nport = 8080\n";
        assert_eq!(plaintext_keys(text), ["k0", "k1", "k2"]);
        let out = strip_plaintext_keys(text).unwrap();
        assert_eq!(
            out,
            "# top comment\n[server]\n# the host\nhost = \"127.0.0.1\"  # trailing\n\n[services.chat]\n# chat comment\nport = 8080\n"
        );
        assert!(plaintext_keys(&out).is_empty());
    }

    /// `keys import`: the file's keys are hashed into the store (never written there in plaintext) and
    /// leave the file; a second import finds none.
    #[test]
    fn import_hashes_the_keys_into_the_store_and_strips_the_file() {
        let d = tempfile::tempdir().unwrap();
        let store = KeyStore::api_keys(d.path());
        let path = d.path().join("settings.toml");
        std::fs::write(
            &path,
            "[server]\n# team keys\napi_key = \"plain-one\"\napi_keys = [\"plain-two\", \"\"]\n",
        )
        .unwrap();
        let r = import_from_settings(&store, &path).unwrap();
        assert_eq!(r.imported.len(), 2);
        assert_eq!(r.blank_removed, 1);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("[server]\n") && !text.contains("plain-"),
            "{text}"
        );
        let keys = store.load().unwrap();
        assert!(keys[0].verifier.matches(b"plain-one") && keys[1].verifier.matches(b"plain-two"));
        assert!(keys[0]
            .info
            .name
            .as_deref()
            .unwrap()
            .starts_with("imported from"));
        let stored = std::fs::read_to_string(store.path()).unwrap();
        assert!(!stored.contains("plain-"), "{stored}");
        let again = import_from_settings(&store, &path).unwrap();
        assert!(again.imported.is_empty() && again.blank_removed == 0);
    }
}
