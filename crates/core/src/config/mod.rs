//! settings.toml: typed settings, validation with `file:line:col`, diffs, edits and the file watcher.
//!
//! The schema is the original mlx-box one (`[server]`, `[services.<name>]`) plus optional keys of ours
//! (`kind`, `command`, `enabled`, restart policy, `[app]`, `[alerts]`), all documented in
//! `config/settings.toml.example`.

pub mod alias;
mod document;
mod edit;
mod parse;
pub mod precision;
mod settings;
mod watch;

pub use document::{apply_edits, redact, to_json, EditError, REDACTED};

/// A settings document as a `read` token may see it: the text and its JSON with every secret redacted
/// (`document::redact`); the hash stays the file's.
pub fn redact_document(mut d: crate::api::ConfigDocument) -> crate::api::ConfigDocument {
    d.text = redact(&d.text);
    d.document = to_json(&d.text).ok();
    d
}
pub use edit::{atomic_write, backup_path, edit_target, write_with_backup};
pub use parse::{parse_settings, readable_by_others, readable_keys_warning, validate_file};
pub use watch::{watch_file, FileWatcher};

pub use mlxbox_api::config::{ConfigEdit, Diagnostic, Expectations, Kind, Severity};
pub use settings::*;
use std::path::{Path, PathBuf};

/// Reads and validates a settings file. `Err` carries every problem (errors and warnings) found.
pub fn load(path: &Path) -> Result<(Settings, Vec<Diagnostic>), LoadError> {
    let text = std::fs::read_to_string(path).map_err(|e| LoadError::Read {
        path: path.to_path_buf(),
        source: e,
    })?;
    let (settings, diags) = parse_settings(path, &text);
    match settings {
        Some(s) => Ok((s, diags)),
        None => Err(LoadError::Invalid {
            path: path.to_path_buf(),
            diagnostics: diags,
        }),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}; check the path, or run `mlx-box up --demo` to try the demo profile")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is invalid:\n{}", diagnostics.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid {
        path: PathBuf,
        diagnostics: Vec<Diagnostic>,
    },
}

impl LoadError {
    pub fn diagnostics(&self) -> Vec<Diagnostic> {
        match self {
            LoadError::Read { path, source } => vec![Diagnostic {
                path: path.clone(),
                line: 1,
                col: 1,
                severity: Severity::Error,
                message: format!("cannot read file: {source}"),
                hint: None,
            }],
            LoadError::Invalid { diagnostics, .. } => diagnostics.clone(),
        }
    }
}

/// Content hash of a settings file, to recognise the daemon's own writes.
pub fn content_hash(text: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(text))
}
