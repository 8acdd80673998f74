//! The config service: settings.toml as the daemon knows it. Reads and validates it (after a watcher event,
//! SIGHUP or a request), answers the Settings window (document, preview, edit) and is the only writer of
//! the file while a daemon runs; a write goes through the same reload as a save in an editor. Owns the
//! `config-invalid` alert.

use crate::alerts::AlertSource;
use crate::api::Event;
use crate::api::{AlertSeverity, ConfigDocument, ConfigEditRequest, ConfigPreview, ConfigStatus};
use crate::config::{self, ConfigEdit, Diagnostic, Settings, Severity};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use tokio::sync::{broadcast, mpsc};

/// What a read of the file found.
#[derive(Debug)]
pub enum Loaded {
    /// Valid and different from what was read last: apply it.
    Changed(Box<Settings>),
    /// The same bytes as last time (our own write, or a touch).
    Unchanged,
    /// Missing, unreadable or invalid: nothing that runs changes; the alert says why.
    Invalid,
}

/// Why an edit from a client was not written.
#[derive(Debug, thiserror::Error)]
pub enum EditRefused {
    #[error("settings.toml changed since it was read; reload it and make the edit again")]
    Conflict,
    #[error(transparent)]
    Edit(#[from] config::EditError),
    #[error("the edited settings do not validate; nothing was written")]
    Invalid(ConfigPreview),
}

pub struct ConfigService {
    path: PathBuf,
    status: Mutex<ConfigStatus>,
    events: broadcast::Sender<Event>,
    alerts: AlertSource,
    /// Pokes the reload task after a write (it applies the file like any other save).
    reload: mpsc::Sender<()>,
}

fn diag(path: &Path, message: String, hint: Option<&str>) -> Diagnostic {
    Diagnostic {
        path: path.to_path_buf(),
        line: 1,
        col: 1,
        severity: Severity::Error,
        message,
        hint: hint.map(str::to_string),
    }
}

impl ConfigService {
    pub fn new(
        path: PathBuf,
        events: broadcast::Sender<Event>,
        alerts: AlertSource,
        reload: mpsc::Sender<()>,
    ) -> Self {
        ConfigService {
            path,
            status: Mutex::new(ConfigStatus {
                valid: false,
                diagnostics: vec![],
                content_hash: None,
            }),
            events,
            alerts,
            reload,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn status(&self) -> ConfigStatus {
        self.status.lock().unwrap().clone()
    }

    /// Reads and validates the file. A valid file that changed comes back to be applied; an invalid one
    /// changes nothing that runs and raises the alert.
    pub fn load(&self) -> Loaded {
        let text = match std::fs::read(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Deleted (or mid-replace): keep running what runs; a re-create is seen by the watcher.
                self.set_problem(vec![diag(
                    &self.path,
                    "settings file is missing; services keep running as they were".into(),
                    Some("restore it (a copy is in settings.toml.bak if mlx-box saved it)"),
                )]);
                return Loaded::Invalid;
            }
            Err(e) => {
                self.set_problem(vec![diag(
                    &self.path,
                    format!(
                        "cannot read the settings file ({e}); services keep running as they were"
                    ),
                    Some("check its permissions: the daemon runs as you"),
                )]);
                return Loaded::Invalid;
            }
        };
        let hash = config::content_hash(&text);
        if self.status.lock().unwrap().content_hash.as_deref() == Some(hash.as_str()) {
            return Loaded::Unchanged;
        }
        let text = String::from_utf8_lossy(&text);
        let (settings, diags) = config::parse_settings(&self.path, &text);
        match settings {
            None => {
                for d in &diags {
                    tracing::warn!("{d}");
                }
                self.set_problem(diags);
                self.status.lock().unwrap().content_hash = Some(hash);
                Loaded::Invalid
            }
            Some(s) => {
                self.alerts.clear("config-invalid");
                self.set_status(ConfigStatus {
                    valid: true,
                    diagnostics: diags,
                    content_hash: Some(hash),
                });
                Loaded::Changed(Box::new(s))
            }
        }
    }

    fn set_status(&self, status: ConfigStatus) {
        *self.status.lock().unwrap() = status.clone();
        let _ = self.events.send(Event::Config(status));
    }

    fn set_problem(&self, diags: Vec<Diagnostic>) {
        let errors: Vec<&Diagnostic> = diags
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .collect();
        let first = errors.first().map(|d| d.to_string()).unwrap_or_default();
        self.alerts.raise(
            "config-invalid",
            AlertSeverity::Warning,
            "settings.toml is invalid",
            format!(
                "{} problem(s), first: {first}. Nothing was changed; fix the file and it applies on save.",
                errors.len()
            ),
        );
        self.set_status(ConfigStatus {
            valid: false,
            diagnostics: diags,
            content_hash: None,
        });
    }

    fn read(&self) -> String {
        std::fs::read_to_string(&self.path).unwrap_or_default()
    }

    /// The file as the Settings window sees it.
    pub fn document(&self) -> ConfigDocument {
        let text = self.read();
        ConfigDocument {
            path: self.path.display().to_string(),
            document: config::to_json(&text).ok(),
            content_hash: config::content_hash(text.as_bytes()),
            status: self.status(),
            text,
        }
    }

    /// What `mlx-box validate` would say of `text` (nothing is written).
    pub fn validate(&self, text: &str) -> Vec<Diagnostic> {
        config::parse_settings(&self.path, text).1
    }

    /// What `edits` would make of the file now, validated; nothing is written.
    pub fn preview(&self, edits: &[ConfigEdit]) -> Result<ConfigPreview, EditRefused> {
        preview(&self.path, &self.read(), edits)
    }

    /// Applies `edits` with toml_edit (comments survive) and writes the file when it validates; the reload
    /// then applies it like any other save, so only the changed services restart.
    pub async fn edit(&self, req: &ConfigEditRequest) -> Result<ConfigPreview, EditRefused> {
        let text = self.read();
        if let Some(base) = &req.base_hash {
            if *base != config::content_hash(text.as_bytes()) {
                return Err(EditRefused::Conflict);
            }
        }
        let p = preview(&self.path, &text, &req.edits)?;
        if !p.valid {
            return Err(EditRefused::Invalid(p));
        }
        self.write(&p.text).await.map_err(|diags| {
            EditRefused::Invalid(ConfigPreview {
                valid: false,
                diagnostics: diags,
                ..p.clone()
            })
        })?;
        Ok(p)
    }

    /// Validates `text` and writes it (with a `.bak`, atomically); the reload task then applies it.
    pub async fn write(&self, text: &str) -> Result<(), Vec<Diagnostic>> {
        let (settings, diags) = config::parse_settings(&self.path, text);
        if settings.is_none() {
            return Err(diags);
        }
        config::write_with_backup(&self.path, text.as_bytes())
            .map_err(|e| vec![diag(&self.path, format!("cannot write: {e}"), None)])?;
        let _ = self.reload.send(()).await;
        Ok(())
    }
}

fn preview(path: &Path, text: &str, edits: &[ConfigEdit]) -> Result<ConfigPreview, EditRefused> {
    let new = config::apply_edits(text, edits)?;
    let (settings, diagnostics) = config::parse_settings(path, &new);
    Ok(ConfigPreview {
        document: config::to_json(&new).ok(),
        valid: settings.is_some(),
        diagnostics,
        text: new,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::AlertStore;

    const VALID: &str = "# mine\n[services.chat]\nport = 8080\nmodel = \"m\"\n";

    struct Fixture {
        _dir: tempfile::TempDir,
        svc: ConfigService,
        store: std::sync::Arc<AlertStore>,
        reloads: mpsc::Receiver<()>,
    }

    fn fixture(text: Option<&str>) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.toml");
        if let Some(t) = text {
            std::fs::write(&path, t).unwrap();
        }
        let (tx, _) = broadcast::channel(16);
        let store = AlertStore::new(tx.clone());
        let (reload, reloads) = mpsc::channel(4);
        let svc = ConfigService::new(path, tx, store.source("config"), reload);
        Fixture {
            _dir: dir,
            svc,
            store,
            reloads,
        }
    }

    #[test]
    fn a_valid_file_loads_once_then_is_unchanged() {
        let f = fixture(Some(VALID));
        assert!(matches!(f.svc.load(), Loaded::Changed(_)));
        assert!(f.svc.status().valid);
        assert!(matches!(f.svc.load(), Loaded::Unchanged));
        assert!(f.store.active().is_empty());
    }

    #[test]
    fn a_missing_or_invalid_file_is_an_alert_and_changes_nothing() {
        let f = fixture(None);
        assert!(matches!(f.svc.load(), Loaded::Invalid));
        assert!(f.store.active()[0].body.contains("missing"));
        std::fs::write(f.svc.path(), "[services.chat]\nport = \"x\"\n").unwrap();
        assert!(matches!(f.svc.load(), Loaded::Invalid));
        let st = f.svc.status();
        assert!(!st.valid && !st.diagnostics.is_empty());
        std::fs::write(f.svc.path(), VALID).unwrap();
        assert!(matches!(f.svc.load(), Loaded::Changed(_)));
        assert!(f.store.active().is_empty(), "fixed: the alert clears");
    }

    #[tokio::test]
    async fn an_edit_keeps_comments_refuses_a_stale_base_and_pokes_the_reload() {
        let mut f = fixture(Some(VALID));
        let doc = f.svc.document();
        let edit = |v: serde_json::Value| ConfigEdit {
            path: vec!["services".into(), "chat".into(), "port".into()],
            value: Some(v),
        };
        let stale = ConfigEditRequest {
            edits: vec![edit(9000.into())],
            base_hash: Some("not-the-hash".into()),
        };
        assert!(matches!(
            f.svc.edit(&stale).await,
            Err(EditRefused::Conflict)
        ));
        let bad = ConfigEditRequest {
            edits: vec![edit("x".into())],
            base_hash: Some(doc.content_hash.clone()),
        };
        assert!(matches!(
            f.svc.edit(&bad).await,
            Err(EditRefused::Invalid(_))
        ));
        assert_eq!(
            std::fs::read_to_string(f.svc.path()).unwrap(),
            VALID,
            "nothing written"
        );
        let good = ConfigEditRequest {
            edits: vec![edit(9000.into())],
            base_hash: Some(doc.content_hash),
        };
        f.svc.edit(&good).await.unwrap();
        let text = std::fs::read_to_string(f.svc.path()).unwrap();
        assert!(text.starts_with("# mine\n") && text.contains("port = 9000"));
        assert!(f.reloads.try_recv().is_ok(), "the reload task is poked");
    }
}
