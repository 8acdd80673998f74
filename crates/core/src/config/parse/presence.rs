//! `validate`'s check that each service's model is on this Mac: an existing path, or a repository with
//! a snapshot in the hub cache its server reads. A warning, not an error: mlx_lm.server downloads a
//! missing repository itself at start (with no progress shown). A few stats per service, no walk.

use crate::config::settings::{Pos, Settings};
use crate::models::cache::{hub_for_env, is_present};
use mlxbox_api::config::{Diagnostic, Kind, Severity};
use std::path::Path;

/// `ORG/NAME`: what `mlx-box models pull` would fetch (a short name like `small.en` is the server's own
/// to resolve).
fn is_repo_id(m: &str) -> bool {
    let mut parts = m.split('/');
    matches!((parts.next(), parts.next(), parts.next()), (Some(o), Some(n), None)
        if !o.is_empty() && !n.is_empty() && !o.starts_with(['.', '~']))
}

fn is_path(m: &str) -> bool {
    m.starts_with(['/', '.', '~'])
}

/// A warning for each enabled service whose `model` is not on this Mac.
pub fn missing_models(path: &Path, settings: &Settings) -> Vec<Diagnostic> {
    let mut out = vec![];
    for s in settings.services.iter().filter(|s| s.enabled) {
        // A command's model is its own business.
        let (Some(m), false) = (s.model.as_deref(), s.kind == Kind::Command) else {
            continue;
        };
        let (message, hint) = if is_path(m) {
            if Path::new(m).exists() {
                continue;
            }
            (
                format!("model `{m}` is not on this Mac: no such directory"),
                "fix the path, or name a Hugging Face repository (ORG/NAME)".to_string(),
            )
        } else if is_repo_id(m) {
            let hub = hub_for_env(&s.env);
            if is_present(m, &hub) {
                continue;
            }
            (
                format!("model `{m}` is not on this Mac: `mlx-box models pull {m}` fetches it"),
                format!(
                    "not in {}; otherwise the server downloads it when [services.{}] starts, with no progress shown",
                    hub.display(),
                    s.name
                ),
            )
        } else {
            continue;
        };
        let at = s
            .positions
            .0
            .get("model")
            .copied()
            .unwrap_or(Pos { line: 1, col: 1 });
        out.push(Diagnostic {
            path: path.to_path_buf(),
            line: at.line,
            col: at.col,
            severity: Severity::Warning,
            message,
            hint: Some(hint),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_counts_as_an_id_or_a_path() {
        assert!(is_repo_id("mlx-community/Qwen3-8B-4bit"));
        for no in ["small.en", "a/b/c", "/abs/path", "./rel", "~/m", "/x", "a/"] {
            assert!(!is_repo_id(no), "{no}");
        }
        assert!(is_path("/m") && is_path("./m") && !is_path("org/m"));
    }

    #[test]
    fn warns_for_a_missing_repository_and_path_not_for_present_ones() {
        let d = tempfile::tempdir().unwrap();
        let hub = d.path().join("hub");
        std::fs::create_dir_all(hub.join("models--org--here/snapshots/abc")).unwrap();
        let local = d.path().join("local");
        std::fs::create_dir(&local).unwrap();
        let text = format!(
            "[services.a]\nport = 8081\nmodel = \"org/here\"\nenv = {{ HF_HUB_CACHE = \"{h}\" }}\n\
             [services.b]\nport = 8082\nmodel = \"org/absent\"\nenv = {{ HF_HUB_CACHE = \"{h}\" }}\n\
             [services.c]\nport = 8083\nmodel = \"{l}\"\n\
             [services.d]\nport = 8084\nmodel = \"{l}/gone\"\n\
             [services.e]\nkind = \"stt\"\nport = 8085\nmodel = \"small.en\"\n",
            h = hub.display(),
            l = local.display()
        );
        let p = Path::new("s.toml");
        let (s, diags) = crate::config::parse_settings(p, &text);
        let s = s.unwrap_or_else(|| panic!("{diags:?}"));
        let w: Vec<String> = missing_models(p, &s)
            .iter()
            .map(|d| d.to_string())
            .collect();
        assert_eq!(w.len(), 2, "{w:#?}");
        assert!(w[0].starts_with("s.toml:7:1: warning: model `org/absent` is not on this Mac: `mlx-box models pull org/absent` fetches it"), "{w:#?}");
        assert!(
            w[1].contains("gone` is not on this Mac: no such directory"),
            "{w:#?}"
        );
    }
}
