//! Which services a config change touches. Only services whose process would differ restart (the
//! supervisor's decision: it compares launch plans, so it lives here and not in `config`).

use crate::config::Settings;
use crate::launch::{plan, Runtime};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceChange {
    Added(String),
    Removed(String),
    /// The process would differ (argv, env, cwd, enabled): stop and start it.
    Restart(String),
    /// Only supervision settings changed (timeouts, restart policy, proxy keys): apply in place.
    Update(String),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SettingsDiff {
    pub changes: Vec<ServiceChange>,
    pub unchanged: Vec<String>,
}

impl SettingsDiff {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

pub fn diff_settings(old: &Settings, new: &Settings, rt: &Runtime) -> SettingsDiff {
    let mut d = SettingsDiff::default();
    for o in &old.services {
        if new.service(&o.name).is_none() {
            d.changes.push(ServiceChange::Removed(o.name.clone()));
        }
    }
    for n in &new.services {
        let Some(o) = old.service(&n.name) else {
            d.changes.push(ServiceChange::Added(n.name.clone()));
            continue;
        };
        let same_process = o.enabled == n.enabled
            && o.kind == n.kind
            && plan(o, old, rt).ok() == plan(n, new, rt).ok();
        if !same_process {
            d.changes.push(ServiceChange::Restart(n.name.clone()));
        } else if o != n {
            d.changes.push(ServiceChange::Update(n.name.clone()));
        } else {
            d.unchanged.push(n.name.clone());
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_settings;
    use std::path::{Path, PathBuf};

    fn s(text: &str) -> Settings {
        parse_settings(Path::new("s.toml"), text).0.unwrap()
    }
    fn rt() -> Runtime {
        Runtime {
            scripts_dir: PathBuf::from("/rt"),
            default_python: "python3".into(),
        }
    }

    const BASE: &str = r#"[services.a]
port = 9001
model = "m1"
[services.b]
port = 9002
model = "m2"
[services.c]
port = 9003
model = "m3"
"#;

    #[test]
    fn classifies_each_service() {
        let new = r#"# a comment moves every line down
[services.a]
port = 9001
model = "m1"
ready_timeout_s = 30
[services.b]
port = 9002
model = "m2"
max_tokens = 100
[services.d]
port = 9004
model = "m4"
"#;
        let d = diff_settings(&s(BASE), &s(new), &rt());
        assert_eq!(
            d.changes,
            vec![
                ServiceChange::Removed("c".into()),
                ServiceChange::Update("a".into()),
                ServiceChange::Restart("b".into()),
                ServiceChange::Added("d".into()),
            ]
        );
        assert!(d.unchanged.is_empty());
    }

    #[test]
    fn comment_only_edit_changes_nothing() {
        let d = diff_settings(&s(BASE), &s(&format!("# hello\n{BASE}# bye\n")), &rt());
        assert!(d.is_empty());
        assert_eq!(d.unchanged, ["a", "b", "c"]);
    }

    #[test]
    fn server_host_restarts_only_services_without_backend_port() {
        let old = "[server]\nhost=\"127.0.0.1\"\n[services.a]\nport=1\nbackend_port=2\nmodel=\"m\"\n[services.b]\nport=3\nmodel=\"m\"\n";
        let new = old.replace("127.0.0.1", "127.0.0.2");
        let d = diff_settings(&s(old), &s(&new), &rt());
        assert_eq!(d.changes, vec![ServiceChange::Restart("b".into())]);
    }
}
