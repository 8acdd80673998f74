//! Runs the served-vs-configured check (`crate::served`) on every ready service that names a model,
//! reading each server's argv from its process group (so adopted servers and custom `command`s count).
//! Owns the `served-model:NAME` alerts: "config says X, the server runs Y".

use crate::alerts::AlertSource;
use crate::api::{AlertSeverity, ServiceStatus};
use crate::config::Settings;
use crate::supervisor::State;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

pub struct ServedCheck {
    alerts: AlertSource,
    /// The services whose alert is up (so one that stopped or left has its alert cleared).
    raised: Mutex<BTreeSet<String>>,
    /// The last check: what differs, per ready service that names a model (empty: it agrees).
    last: Mutex<BTreeMap<String, Vec<String>>>,
}

impl ServedCheck {
    pub fn new(alerts: AlertSource) -> Self {
        ServedCheck {
            alerts,
            raised: Default::default(),
            last: Default::default(),
        }
    }

    /// The last check's findings, for the doctor.
    pub fn last(&self) -> BTreeMap<String, Vec<String>> {
        self.last.lock().unwrap().clone()
    }

    pub async fn run(
        &self,
        settings: Option<std::sync::Arc<Settings>>,
        statuses: Vec<ServiceStatus>,
    ) {
        let Some(settings) = settings else { return };
        let ready: Vec<(String, u32)> = statuses
            .iter()
            .filter(|s| s.state == State::Ready)
            .filter_map(|s| Some((s.name.clone(), s.pid?)))
            .filter(|(n, _)| settings.service(n).is_some_and(|x| x.model.is_some()))
            .collect();
        let pgids: Vec<u32> = ready.iter().map(|r| r.1).collect();
        let found: Vec<(String, Vec<String>)> = tokio::task::spawn_blocking(move || {
            let argv = group_argv(&pgids);
            ready
                .into_iter()
                .filter_map(|(name, pg)| {
                    let spec = settings.service(&name)?;
                    let hub = crate::estimate::service_hub(spec);
                    let a = argv.get(&pg).cloned().unwrap_or_default();
                    Some((name, crate::served::mismatches(spec, &a, &hub)))
                })
                .collect()
        })
        .await
        .unwrap_or_default();
        let mut raised = self.raised.lock().unwrap();
        let now: BTreeSet<String> = found
            .iter()
            .filter(|(_, m)| !m.is_empty())
            .map(|(n, _)| n.clone())
            .collect();
        for (name, m) in &found {
            if m.is_empty() {
                continue;
            }
            self.alerts.raise(
                &format!("served-model:{name}"),
                AlertSeverity::Warning,
                format!("{name} does not serve what settings.toml says"),
                format!(
                    "{}. Fix `model`/`quantization` in [services.{name}], or restart it (`mlx-box restart {name}`) if the file is right and the server was started otherwise.",
                    m.join("; ")
                ),
            );
        }
        for gone in raised.difference(&now) {
            self.alerts.clear(&format!("served-model:{gone}"));
        }
        *raised = now;
        *self.last.lock().unwrap() = found.into_iter().collect();
    }
}

/// The argv of the server in each process group: the process that names `--model`, else the group's
/// leader.
fn group_argv(pgids: &[u32]) -> BTreeMap<u32, Vec<String>> {
    use sysinfo::{ProcessRefreshKind, ProcessesToUpdate, System, UpdateKind};
    let mut out: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    if pgids.is_empty() {
        return out;
    }
    let Ok(mut sys) = System::new() else {
        return out;
    };
    sys.refresh_processes_specifics(
        ProcessesToUpdate::All,
        true,
        ProcessRefreshKind::nothing().with_cmd(UpdateKind::Always),
    );
    for (pid, p) in sys.processes() {
        let Ok(g) = nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(pid.as_u32() as i32)))
        else {
            continue;
        };
        let g = g.as_raw() as u32;
        if !pgids.contains(&g) {
            continue;
        }
        let argv: Vec<String> = p
            .cmd()
            .iter()
            .take(4096) // bounded: an argv is read from another process
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let names_model = crate::served::model_arg(&argv).is_some();
        let leader = pid.as_u32() == g;
        let have = out
            .get(&g)
            .is_some_and(|a| crate::served::model_arg(a).is_some());
        if names_model && !have || leader && !out.contains_key(&g) {
            out.insert(g, argv);
        }
    }
    out
}
