//! What the menu-bar app shows, computed from the daemon's status and events, with no GUI dependency: the
//! live snapshot, the tray icon's level, the summary line, the menu as data, and which alerts make a desktop
//! notification. `src-tauri` only renders this, so all of it is tested here without a display.

use mlxbox_api::service::{State, Verb};
use mlxbox_api::{Alert, AlertSeverity, Event, ServiceStatus, StatusReport};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use ts_rs::TS;

/// The daemon as the app last heard it.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// `None` while the daemon is unreachable.
    pub status: Option<StatusReport>,
}

impl Snapshot {
    /// Ids of the active alerts.
    pub fn alert_ids(&self) -> Vec<String> {
        self.status
            .as_ref()
            .map(|s| s.alerts.iter().map(|a| a.id.clone()).collect())
            .unwrap_or_default()
    }

    /// Folds one event of the stream into the snapshot (whether the tray must redraw is decided by
    /// comparing what it shows, in the app's follower).
    pub fn apply(&mut self, ev: &Event) {
        if let Event::Snapshot(report) = ev {
            self.status = Some((**report).clone());
            return;
        }
        let Some(st) = self.status.as_mut() else {
            return;
        };
        match ev {
            Event::Service(s) => match st.services.iter_mut().find(|x| x.name == s.name) {
                Some(x) => *x = s.clone(),
                None => st.services.push(s.clone()),
            },
            Event::ServiceRemoved { name } => st.services.retain(|x| &x.name != name),
            Event::Alert(a) => match st.alerts.iter_mut().find(|x| x.id == a.id) {
                Some(x) => *x = a.clone(),
                None => st.alerts.push(a.clone()),
            },
            Event::AlertCleared { id, .. } => st.alerts.retain(|x| &x.id != id),
            Event::Config(c) => st.config = c.clone(),
            Event::Host(h) => match st.hosts.iter_mut().find(|x| x.name == h.name) {
                Some(x) => *x = h.clone(),
                None => st.hosts.push(h.clone()),
            },
            Event::Monitor(t) => {
                // A tick carries the machine's figures, not the budget: keep the budget known.
                let budget = (st.memory.budget_bytes, st.memory.budget_source.take());
                st.memory = mlxbox_api::MemoryStatus::from_sample(&t.sample);
                (st.memory.budget_bytes, st.memory.budget_source) = budget;
                st.thermal.state = t.sample.thermal;
                if let Some(mem) = &t.service_memory {
                    for s in &mut st.services {
                        s.memory_bytes = mem.get(&s.name).copied();
                    }
                }
            }
            Event::Awake(a) => st.awake = Some(a.clone()),
            Event::Shutdown => {
                self.status = None;
            }
            // The Benchmark window follows these; the tray shows nothing of a run.
            Event::BenchProgress(_) | Event::BenchDone(_) | Event::Snapshot(_) => {}
        }
    }
}

/// The tray icon's state, most urgent first when several hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export)]
#[serde(rename_all = "lowercase")]
pub enum TrayLevel {
    /// No daemon answers.
    Disconnected,
    /// An active alert of warning or critical severity.
    Alert,
    /// A service is unhealthy, in backoff or failed.
    Degraded,
    /// A service is starting or stopping.
    Starting,
    /// Every enabled service is ready.
    Ready,
    /// Nothing runs.
    Stopped,
}

impl TrayLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            TrayLevel::Disconnected => "disconnected",
            TrayLevel::Alert => "alert",
            TrayLevel::Degraded => "degraded",
            TrayLevel::Starting => "starting",
            TrayLevel::Ready => "ready",
            TrayLevel::Stopped => "stopped",
        }
    }

    /// What the icon's tooltip says.
    pub fn describe(self) -> &'static str {
        match self {
            TrayLevel::Disconnected => "mlx-box: daemon not running",
            TrayLevel::Alert => "mlx-box: needs attention",
            TrayLevel::Degraded => "mlx-box: a service is down",
            TrayLevel::Starting => "mlx-box: starting",
            TrayLevel::Ready => "mlx-box: all ready",
            TrayLevel::Stopped => "mlx-box: stopped",
        }
    }
}

pub fn tray_level(snap: &Snapshot) -> TrayLevel {
    let Some(st) = &snap.status else {
        return TrayLevel::Disconnected;
    };
    // The icon speaks for the whole fleet: this Mac's alerts and every reachable host's (an unreachable
    // host is an alert of this daemon's own).
    let remote_alerts = st
        .hosts
        .iter()
        .filter(|h| h.reachable)
        .flat_map(|h| &h.alerts);
    // Acknowledged and snoozed alerts are quiet: listed in the dashboard, not on the icon.
    let now = mlxbox_api::now_ms();
    if st
        .alerts
        .iter()
        .chain(remote_alerts)
        .any(|a| a.severity >= AlertSeverity::Warning && a.needs_attention(now))
    {
        return TrayLevel::Alert;
    }
    let remote = st.hosts.iter().flat_map(|h| &h.services);
    let enabled = st.services.iter().chain(remote).filter(|s| s.enabled);
    let states: Vec<State> = enabled.map(|s| s.state).collect();
    if states
        .iter()
        .any(|s| matches!(s, State::Unhealthy | State::Backoff | State::Failed))
    {
        TrayLevel::Degraded
    } else if states
        .iter()
        .any(|s| matches!(s, State::Starting | State::Stopping))
    {
        TrayLevel::Starting
    } else if !states.is_empty()
        && states
            .iter()
            .all(|s| matches!(s, State::Ready | State::Idle))
    {
        // Idle on-demand services are fine: the next request loads them.
        TrayLevel::Ready
    } else if states.contains(&State::Ready) {
        // Some ready, the rest stopped by hand: nothing is wrong.
        TrayLevel::Ready
    } else {
        TrayLevel::Stopped
    }
}

/// "3/4 ready · swap 0 B · thermal nominal".
pub fn summary_line(snap: &Snapshot) -> String {
    let Some(st) = &snap.status else {
        return "Daemon not running".into();
    };
    let enabled: Vec<_> = st.services.iter().filter(|s| s.enabled).collect();
    let ready = enabled.iter().filter(|s| s.state == State::Ready).count();
    let idle = match enabled.iter().filter(|s| s.state == State::Idle).count() {
        0 => String::new(),
        n => format!(" ({n} idle)"),
    };
    let hosts = if st.hosts.is_empty() {
        String::new()
    } else {
        let up = st.hosts.iter().filter(|h| h.reachable).count();
        format!(" · hosts {up}/{} up", st.hosts.len())
    };
    let now = mlxbox_api::now_ms();
    let alerts = match st.alerts.iter().filter(|a| a.needs_attention(now)).count() {
        0 => String::new(),
        1 => " · 1 alert".into(),
        n => format!(" · {n} alerts"),
    };
    format!(
        "{ready}/{} ready{idle} · swap {} · thermal {}{hosts}{alerts}",
        enabled.len(),
        mlxbox_api::units::bytes(st.memory.swap_used_bytes),
        st.thermal.state
    )
}

/// Everything a menu item can do. Its id is the string form, so a click maps back with `TryFrom<&str>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MenuAction {
    /// Starts the service when it is not running, stops it when it is.
    ToggleService(String),
    /// Opens the dashboard on this active alert.
    OpenAlert(String),
    /// The same for a service of another host (forwarded by this Mac's daemon: `Request::Host`).
    ToggleHostService {
        host: String,
        service: String,
    },
    StartAll,
    StopAll,
    RestartAll,
    RunBenchmark,
    OpenDashboard,
    OpenSettings,
    OpenChat,
    StartDaemon,
    LaunchAtLogin,
    Quit,
}

impl MenuAction {
    pub fn id(&self) -> String {
        match self {
            MenuAction::ToggleService(n) => format!("service:{n}"),
            MenuAction::OpenAlert(id) => format!("alert:{id}"),
            MenuAction::ToggleHostService { host, service } => {
                format!("host:{host}/service:{service}")
            }
            MenuAction::StartAll => "start-all".into(),
            MenuAction::StopAll => "stop-all".into(),
            MenuAction::RestartAll => "restart-all".into(),
            MenuAction::RunBenchmark => "run-benchmark".into(),
            MenuAction::OpenDashboard => "open-dashboard".into(),
            MenuAction::OpenSettings => "open-settings".into(),
            MenuAction::OpenChat => "open-chat".into(),
            MenuAction::StartDaemon => "start-daemon".into(),
            MenuAction::LaunchAtLogin => "launch-at-login".into(),
            MenuAction::Quit => "quit".into(),
        }
    }
}

impl TryFrom<&str> for MenuAction {
    type Error = String;

    fn try_from(id: &str) -> Result<Self, String> {
        Ok(match id {
            "start-all" => MenuAction::StartAll,
            "stop-all" => MenuAction::StopAll,
            "restart-all" => MenuAction::RestartAll,
            "run-benchmark" => MenuAction::RunBenchmark,
            "open-dashboard" => MenuAction::OpenDashboard,
            "open-settings" => MenuAction::OpenSettings,
            "open-chat" => MenuAction::OpenChat,
            "start-daemon" => MenuAction::StartDaemon,
            "launch-at-login" => MenuAction::LaunchAtLogin,
            "quit" => MenuAction::Quit,
            s if s.starts_with("alert:") && s.len() > 6 => {
                MenuAction::OpenAlert(s[6..].to_string())
            }
            s => match (
                s.strip_prefix("service:"),
                s.strip_prefix("host:")
                    .and_then(|r| r.split_once("/service:")),
            ) {
                (Some(n), _) if !n.is_empty() => MenuAction::ToggleService(n.to_string()),
                (_, Some((h, n))) if !h.is_empty() && !n.is_empty() => {
                    MenuAction::ToggleHostService {
                        host: h.to_string(),
                        service: n.to_string(),
                    }
                }
                _ => return Err(format!("unknown menu item `{id}`")),
            },
        })
    }
}

/// One line of the menu.
#[derive(Debug, Clone, PartialEq)]
pub enum MenuEntry {
    /// Text only (the summary line).
    Label(String),
    Item {
        action: MenuAction,
        text: String,
        enabled: bool,
    },
    Check {
        action: MenuAction,
        text: String,
        checked: bool,
    },
    /// Items under one title (another Mac and its services).
    Submenu {
        text: String,
        enabled: bool,
        entries: Vec<MenuEntry>,
    },
    Separator,
}

/// The whole menu for a snapshot. `launch_at_login` is the autostart state (the OS knows it, not the
/// daemon).
pub fn menu(snap: &Snapshot, launch_at_login: bool) -> Vec<MenuEntry> {
    use MenuEntry::*;
    let item = |action: MenuAction, text: &str, enabled: bool| Item {
        action,
        text: text.to_string(),
        enabled,
    };
    let mut m = vec![Label(summary_line(snap)), Separator];
    let connected = snap.status.is_some();
    match &snap.status {
        None => m.push(item(MenuAction::StartDaemon, "Start mlx-box Daemon", true)),
        Some(st) => {
            // Alerts that need attention up front (not the acknowledged or snoozed): each opens the
            // dashboard on it.
            let now = mlxbox_api::now_ms();
            let active: Vec<_> = st
                .alerts
                .iter()
                .filter(|a| a.needs_attention(now))
                .collect();
            for a in &active {
                let mark = match a.severity {
                    mlxbox_api::AlertSeverity::Critical => "⛔",
                    mlxbox_api::AlertSeverity::Warning => "⚠",
                    _ => "ℹ",
                };
                m.push(item(
                    MenuAction::OpenAlert(a.id.clone()),
                    &format!("{mark} {}", a.title),
                    true,
                ));
            }
            if !active.is_empty() {
                m.push(Separator);
            }
            // "Keeping the machine awake: 3 servers loaded" while the lock is held, or why it cannot be.
            if let Some(a) = st.awake.as_ref().filter(|a| a.held || a.error.is_some()) {
                m.push(Label(capitalized(&a.line())));
            }
            for s in &st.services {
                let port = s.port.map(|p| format!(" · :{p}")).unwrap_or_default();
                let text = format!(
                    "{} {} — {}{port}",
                    state_mark(s.state),
                    s.name,
                    capitalized(s.state.as_str())
                );
                m.push(item(
                    MenuAction::ToggleService(s.name.clone()),
                    &format!("{text} ({})", verb_text(toggle_of(s))),
                    s.enabled && s.state != State::Stopping,
                ));
            }
            if st.services.is_empty() {
                m.push(Label("No services in settings.toml".into()));
            }
            // Another Mac is a submenu, as macOS menus group: its title says its state, its items are its
            // services (changed with `mlx-box --host NAME`).
            if !st.hosts.is_empty() {
                m.push(Separator);
            }
            for h in &st.hosts {
                let ready = h
                    .services
                    .iter()
                    .filter(|s| s.state == State::Ready)
                    .count();
                let text = if h.reachable {
                    let rtt = h
                        .rtt_p50_ms
                        .map(|v| format!(" · {v:.1} ms"))
                        .unwrap_or_default();
                    format!("{} — {ready}/{} ready{rtt}", h.name, h.services.len())
                } else {
                    format!("{} — unreachable", h.name)
                };
                let entries = h
                    .services
                    .iter()
                    .map(|s| {
                        item(
                            MenuAction::ToggleHostService {
                                host: h.name.clone(),
                                service: s.name.clone(),
                            },
                            &format!(
                                "{} {} — {} ({})",
                                state_mark(s.state),
                                s.name,
                                capitalized(s.state.as_str()),
                                verb_text(toggle_of(s))
                            ),
                            h.reachable && s.enabled && s.state != State::Stopping,
                        )
                    })
                    .collect();
                m.push(Submenu {
                    text,
                    enabled: h.reachable,
                    entries,
                });
            }
        }
    }
    m.push(Separator);
    // macOS menu style: title case; "…" where the item asks first (a sheet in the dashboard) or opens a
    // window.
    m.push(item(MenuAction::StartAll, "Start All", connected));
    m.push(item(MenuAction::StopAll, "Stop All…", connected));
    m.push(item(MenuAction::RestartAll, "Restart All…", connected));
    m.push(Separator);
    m.push(item(MenuAction::RunBenchmark, "Run Benchmark…", connected));
    m.push(item(MenuAction::OpenDashboard, "Open Dashboard…", true));
    m.push(item(MenuAction::OpenChat, "Chat…", connected));
    m.push(item(MenuAction::OpenSettings, "Settings…", true));
    m.push(Separator);
    m.push(Check {
        action: MenuAction::LaunchAtLogin,
        text: "Launch at Login".into(),
        checked: launch_at_login,
    });
    m.push(item(MenuAction::Quit, "Quit mlx-box", true));
    m
}

/// A service state's glyph in the menu: shape, not only colour, tells them apart.
fn state_mark(s: State) -> &'static str {
    match s {
        State::Ready => "●",
        State::Starting | State::Stopping => "◐",
        State::Idle => "◌",
        State::Unhealthy | State::Backoff | State::Failed => "✕",
        State::Stopped => "○",
    }
}

/// What clicking a service's item does, as its item says it.
fn verb_text(v: Verb) -> &'static str {
    match v {
        Verb::Stop => "Stop…",
        Verb::Unload => "Unload",
        Verb::Restart => "Restart",
        Verb::Start => "Start",
    }
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// The verb a service's toggle asks for: stop a running one (or one waiting to restart) — unload an
/// on-demand one, so the next request loads it again — else start.
fn toggle_of(s: &ServiceStatus) -> Verb {
    match (
        s.state.is_running() || s.state == State::Backoff,
        s.on_demand,
    ) {
        (true, true) => Verb::Unload,
        (true, false) => Verb::Stop,
        (false, _) => Verb::Start,
    }
}

/// What clicking another host's service asks.
pub fn toggle_host_verb(snap: &Snapshot, host: &str, name: &str) -> Option<Verb> {
    let h = snap
        .status
        .as_ref()?
        .hosts
        .iter()
        .find(|h| h.name == host)?;
    h.services.iter().find(|s| s.name == name).map(toggle_of)
}

/// What clicking a service's item asks the daemon: `(name, verb)`.
pub fn toggle_verb(snap: &Snapshot, name: &str) -> Option<Verb> {
    let st = snap.status.as_ref()?;
    st.services.iter().find(|s| s.name == name).map(toggle_of)
}

/// Decides which alerts become desktop notifications. The daemon already applies hysteresis and cooldown
/// (an alert is raised once per episode); this only adds the user's severity floor and drops re-sends of an
/// alert the user has seen (the daemon re-sends an active alert when its text changes).
#[derive(Debug, Default)]
pub struct NotificationGate {
    /// Alert id → the `since` of the episode already notified.
    notified: HashMap<String, (u64, AlertSeverity)>,
}

/// Parses `[app] notify_min_severity`; `None` = notifications off.
pub fn min_severity(setting: &str) -> Option<AlertSeverity> {
    match setting {
        "info" => Some(AlertSeverity::Info),
        "critical" => Some(AlertSeverity::Critical),
        "off" => None,
        _ => Some(AlertSeverity::Warning),
    }
}

impl NotificationGate {
    /// True when `alert` should make a notification now.
    pub fn admit(&mut self, alert: &Alert, floor: Option<AlertSeverity>) -> bool {
        let Some(floor) = floor else {
            return false;
        };
        if !alert.needs_attention(mlxbox_api::now_ms()) || alert.severity < floor {
            return false;
        }
        match self.notified.get(&alert.id) {
            // Same episode: only an escalation notifies again.
            Some((since, sev)) if *since == alert.since && alert.severity <= *sev => false,
            _ => {
                self.notified
                    .insert(alert.id.clone(), (alert.since, alert.severity));
                true
            }
        }
    }

    /// Alerts that were active when the app connected are not news: remember them without notifying.
    pub fn seed(&mut self, active: &[Alert]) {
        for a in active {
            self.notified.insert(a.id.clone(), (a.since, a.severity));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlxbox_api::config::Kind;
    use mlxbox_api::*;

    fn svc(name: &str, state: State) -> ServiceStatus {
        ServiceStatus {
            name: name.into(),
            kind: Kind::Chat,
            state,
            pid: None,
            port: Some(8080),
            frontend_port: None,
            model: None,
            restarts: 0,
            memory_bytes: None,
            last_error: None,
            enabled: true,
            since_ms: 0,
            ready_since_ms: None,
            crash_loop: false,
            stopped_by_request: false,
            adopted: false,
            on_demand: false,
            ranks: vec![],
            hostfile: None,
        }
    }

    fn snap(services: Vec<ServiceStatus>) -> Snapshot {
        Snapshot {
            status: Some(StatusReport {
                version: "0".into(),
                daemon_pid: 1,
                config_path: "x".into(),
                config: ConfigStatus {
                    valid: true,
                    diagnostics: vec![],
                    content_hash: None,
                },
                services,
                hosts: vec![],
                pools: vec![],
                memory: MemoryStatus {
                    total_bytes: 1 << 34,
                    used_bytes: 1 << 33,
                    available_bytes: 1 << 33,
                    swap_used_bytes: 3 << 20,
                    swap_total_bytes: 0,
                    pressure: mlxbox_api::monitor::Pressure::Normal,
                    budget_bytes: None,
                    budget_source: None,
                },
                thermal: ThermalStatus {
                    state: mlxbox_api::monitor::Thermal::Nominal,
                },
                alerts: vec![],
                awake: None,
            }),
        }
    }

    fn alert(id: &str, severity: AlertSeverity, since: u64) -> Alert {
        Alert {
            id: id.into(),
            severity,
            title: "t".into(),
            body: "b".into(),
            since,
            cleared: None,
            acknowledged: false,
            snoozed_until: None,
        }
    }

    #[test]
    fn tray_level_tells_the_truth() {
        use State::*;
        assert_eq!(tray_level(&Snapshot::default()), TrayLevel::Disconnected);
        assert_eq!(tray_level(&snap(vec![])), TrayLevel::Stopped);
        let all = |s: &[State]| {
            tray_level(&snap(
                s.iter()
                    .enumerate()
                    .map(|(i, st)| svc(&i.to_string(), *st))
                    .collect(),
            ))
        };
        assert_eq!(all(&[Ready, Ready]), TrayLevel::Ready);
        assert_eq!(all(&[Ready, Stopped]), TrayLevel::Ready);
        assert_eq!(all(&[Ready, Starting]), TrayLevel::Starting);
        assert_eq!(all(&[Starting, Backoff]), TrayLevel::Degraded);
        assert_eq!(all(&[Ready, Failed]), TrayLevel::Degraded);
        assert_eq!(all(&[Stopped, Stopped]), TrayLevel::Stopped);
        let mut s = snap(vec![svc("a", Ready)]);
        s.apply(&Event::Alert(alert("swap", AlertSeverity::Warning, 1)));
        assert_eq!(tray_level(&s), TrayLevel::Alert);
        s.apply(&Event::AlertCleared {
            id: "swap".into(),
            cleared: 2,
        });
        assert_eq!(tray_level(&s), TrayLevel::Ready);
        // An info alert does not turn the icon.
        s.apply(&Event::Alert(alert("note", AlertSeverity::Info, 1)));
        assert_eq!(tray_level(&s), TrayLevel::Ready);
    }

    /// The icon and the menu speak for every host: a host's failed service or warning turns the icon,
    /// a host event updates its section, an unreachable host says so.
    #[test]
    fn hosts_join_the_icon_the_summary_and_the_menu() {
        let host =
            |name: &str, reachable: bool, services: Vec<ServiceStatus>| mlxbox_api::HostStatus {
                name: name.into(),
                address: "198.18.0.2:9443".into(),
                reachable,
                since_ms: 0,
                rtt_p50_ms: reachable.then_some(0.42),
                rtt_p99_ms: None,
                error: None,
                services,
                alerts: vec![],
                memory: None,
                thermal: None,
                version: None,
            };
        let mut s = snap(vec![svc("a", State::Ready)]);
        s.apply(&Event::Host(host(
            "studio-2",
            true,
            vec![svc("big", State::Ready)],
        )));
        assert_eq!(tray_level(&s), TrayLevel::Ready);
        assert_eq!(
            summary_line(&s),
            "1/1 ready · swap 3.0 MB · thermal nominal · hosts 1/1 up"
        );
        let toggle = MenuAction::ToggleHostService {
            host: "studio-2".into(),
            service: "big".into(),
        };
        // Another Mac is a submenu titled with its state, holding its services.
        assert!(menu(&s, false).contains(&MenuEntry::Submenu {
            text: "studio-2 — 1/1 ready · 0.4 ms".into(),
            enabled: true,
            entries: vec![MenuEntry::Item {
                action: toggle.clone(),
                text: "● big — Ready (Stop…)".into(),
                enabled: true,
            }],
        }));
        assert_eq!(MenuAction::try_from(toggle.id().as_str()), Ok(toggle));
        assert_eq!(toggle_host_verb(&s, "studio-2", "big"), Some(Verb::Stop));
        s.apply(&Event::Host(host(
            "studio-2",
            true,
            vec![svc("big", State::Failed)],
        )));
        assert_eq!(tray_level(&s), TrayLevel::Degraded);
        let mut h = host("studio-2", true, vec![svc("big", State::Ready)]);
        h.alerts.push(alert("swap", AlertSeverity::Warning, 1));
        s.apply(&Event::Host(h));
        assert_eq!(tray_level(&s), TrayLevel::Alert);
        s.apply(&Event::Host(host("studio-2", false, vec![])));
        assert!(summary_line(&s).ends_with("hosts 0/1 up"));
        assert!(menu(&s, false).iter().any(|e| matches!(e,
            MenuEntry::Submenu { text, enabled: false, .. } if text == "studio-2 — unreachable")));
    }

    #[test]
    fn events_update_the_snapshot_and_summary() {
        let mut s = snap(vec![svc("a", State::Ready), svc("b", State::Starting)]);
        assert_eq!(
            summary_line(&s),
            "1/2 ready · swap 3.0 MB · thermal nominal"
        );
        s.apply(&Event::Service(svc("b", State::Ready)));
        assert_eq!(
            summary_line(&s),
            "2/2 ready · swap 3.0 MB · thermal nominal"
        );
        s.apply(&Event::Service(svc("c", State::Stopped)));
        assert_eq!(
            summary_line(&s),
            "2/3 ready · swap 3.0 MB · thermal nominal"
        );
        s.apply(&Event::ServiceRemoved { name: "c".into() });
        assert_eq!(s.status.as_ref().unwrap().services.len(), 2);
        s.apply(&Event::Shutdown);
        assert_eq!(summary_line(&s), "Daemon not running");
    }

    /// Alerts up front: counted in the summary, listed first, each opening the dashboard on it.
    #[test]
    fn active_alerts_lead_the_menu() {
        let mut s = snap(vec![svc("chat", State::Ready)]);
        let mut cleared = alert("old", AlertSeverity::Warning, 1);
        cleared.cleared = Some(2);
        s.status.as_mut().unwrap().alerts =
            vec![alert("swap", AlertSeverity::Critical, 3), cleared];
        assert!(
            summary_line(&s).ends_with(" · 1 alert"),
            "{}",
            summary_line(&s)
        );
        let m = menu(&s, false);
        assert_eq!(
            m[2],
            MenuEntry::Item {
                action: MenuAction::OpenAlert("swap".into()),
                text: "⛔ t".into(),
                enabled: true,
            }
        );
        assert_eq!(m[3], MenuEntry::Separator, "{m:?}");
        assert!(!m.iter().any(|i| matches!(i, MenuEntry::Item { action: MenuAction::OpenAlert(id), .. } if id == "old")));
        assert_eq!(
            MenuAction::try_from("alert:"),
            Err("unknown menu item `alert:`".into())
        );
    }

    #[test]
    fn menu_ids_round_trip_and_items_follow_state() {
        for a in [
            MenuAction::ToggleService("chat".into()),
            MenuAction::OpenAlert("service-failed:chat".into()),
            MenuAction::StartAll,
            MenuAction::StopAll,
            MenuAction::RestartAll,
            MenuAction::RunBenchmark,
            MenuAction::OpenDashboard,
            MenuAction::OpenSettings,
            MenuAction::OpenChat,
            MenuAction::StartDaemon,
            MenuAction::LaunchAtLogin,
            MenuAction::Quit,
        ] {
            assert_eq!(MenuAction::try_from(a.id().as_str()), Ok(a));
        }
        assert!(MenuAction::try_from("service:").is_err());
        let s = snap(vec![svc("chat", State::Ready), svc("emb", State::Stopped)]);
        assert_eq!(toggle_verb(&s, "chat"), Some(Verb::Stop));
        assert_eq!(toggle_verb(&s, "emb"), Some(Verb::Start));
        let m = menu(&s, true);
        assert_eq!(
            m[0],
            MenuEntry::Label("1/2 ready · swap 3.0 MB · thermal nominal".into())
        );
        assert!(m.iter().any(|e| matches!(e, MenuEntry::Item { text, .. } if text == "● chat — Ready · :8080 (Stop…)")));
        assert!(m
            .iter()
            .any(|e| matches!(e, MenuEntry::Check { checked: true, .. })));
        let off = menu(&Snapshot::default(), false);
        assert!(off.iter().any(|e| matches!(
            e,
            MenuEntry::Item {
                action: MenuAction::StartDaemon,
                ..
            }
        )));
        assert!(off.iter().any(|e| matches!(
            e,
            MenuEntry::Item {
                action: MenuAction::StopAll,
                enabled: false,
                ..
            }
        )));
    }

    /// The lock against sleep: a line of its own while held or refused, from the snapshot and then from
    /// `Event::Awake`; nothing while the machine may sleep.
    #[test]
    fn the_menu_says_when_the_machine_is_kept_awake() {
        let mut s = snap(vec![svc("chat", State::Ready)]);
        let awake_lines = |s: &Snapshot| -> Vec<String> {
            menu(s, false)
                .into_iter()
                .filter_map(|e| match e {
                    MenuEntry::Label(t) if t.contains("awake") => Some(t),
                    _ => None,
                })
                .collect()
        };
        assert!(awake_lines(&s).is_empty());
        let a = |held, reason: &str, error: Option<&str>| AwakeStatus {
            mode: "serving".into(),
            held,
            reason: reason.into(),
            error: error.map(str::to_string),
        };
        s.apply(&Event::Awake(a(true, "3 servers loaded", None)));
        assert_eq!(
            awake_lines(&s),
            ["Keeping the machine awake: 3 servers loaded"]
        );
        s.apply(&Event::Awake(a(false, "no server loaded", None)));
        assert!(awake_lines(&s).is_empty());
        s.apply(&Event::Awake(a(
            false,
            "1 server loaded",
            Some("no system bus (x)"),
        )));
        assert_eq!(
            awake_lines(&s),
            ["Cannot keep the machine awake: no system bus (x)"]
        );
    }

    /// On demand: idle is fine for the tray and counted in the summary; the toggle of a loaded one
    /// unloads it, of an idle one loads it.
    #[test]
    fn on_demand_services_in_the_menu() {
        let od = |name: &str, state: State| ServiceStatus {
            on_demand: true,
            ..svc(name, state)
        };
        let s = snap(vec![
            svc("chat", State::Ready),
            od("big", State::Idle),
            od("coder", State::Ready),
        ]);
        assert_eq!(tray_level(&s), TrayLevel::Ready);
        assert_eq!(toggle_verb(&s, "coder"), Some(Verb::Unload));
        assert_eq!(toggle_verb(&s, "big"), Some(Verb::Start));
        assert_eq!(toggle_verb(&s, "chat"), Some(Verb::Stop));
        let m = menu(&s, false);
        assert_eq!(
            m[0],
            MenuEntry::Label("2/3 ready (1 idle) · swap 3.0 MB · thermal nominal".into())
        );
        assert!(m.iter().any(|e| matches!(e, MenuEntry::Item { text, .. } if text.starts_with("● coder — Ready") && text.ends_with("(Unload)"))));
        assert!(m.iter().any(|e| matches!(e, MenuEntry::Item { text, .. } if text.starts_with("◌ big — Idle") && text.ends_with("(Start)"))));
    }

    #[test]
    fn acknowledged_and_snoozed_alerts_are_quiet() {
        let mut s = snap(vec![svc("chat", State::Ready)]);
        let mut swap = alert("swap", AlertSeverity::Warning, 1);
        s.apply(&Event::Alert(swap.clone()));
        assert_eq!(tray_level(&s), TrayLevel::Alert);
        assert!(summary_line(&s).ends_with(" · 1 alert"));
        swap.acknowledged = true;
        s.apply(&Event::Alert(swap.clone()));
        assert_eq!(tray_level(&s), TrayLevel::Ready, "seen: the icon is calm");
        assert!(!summary_line(&s).contains("alert"));
        assert!(!menu(&s, false).iter().any(|e| matches!(
            e,
            MenuEntry::Item {
                action: MenuAction::OpenAlert(_),
                ..
            }
        )));
        let mut gate = NotificationGate::default();
        assert!(
            !gate.admit(&swap, Some(AlertSeverity::Info)),
            "a quiet alert never notifies"
        );
        // A snooze that has ended counts again.
        swap.acknowledged = false;
        swap.snoozed_until = Some(mlxbox_api::now_ms() + 60_000);
        s.apply(&Event::Alert(swap.clone()));
        assert_eq!(tray_level(&s), TrayLevel::Ready);
        swap.snoozed_until = Some(1);
        s.apply(&Event::Alert(swap));
        assert_eq!(tray_level(&s), TrayLevel::Alert);
    }

    #[test]
    fn notifications_respect_floor_and_episodes() {
        let mut g = NotificationGate::default();
        let floor = min_severity("warning");
        assert!(!g.admit(&alert("i", AlertSeverity::Info, 1), floor));
        assert!(g.admit(&alert("swap", AlertSeverity::Warning, 1), floor));
        // The daemon re-sends the same episode with new text: no second notification.
        assert!(!g.admit(&alert("swap", AlertSeverity::Warning, 1), floor));
        // Escalation in the same episode notifies.
        assert!(g.admit(&alert("swap", AlertSeverity::Critical, 1), floor));
        // A new episode (after the daemon's cooldown) notifies.
        assert!(g.admit(&alert("swap", AlertSeverity::Warning, 50), floor));
        assert!(!g.admit(&alert("x", AlertSeverity::Critical, 1), min_severity("off")));
        let mut g = NotificationGate::default();
        g.seed(&[alert("old", AlertSeverity::Critical, 5)]);
        assert!(!g.admit(&alert("old", AlertSeverity::Critical, 5), floor));
    }
}
