//! Which services to unload so that one more fits the memory budget: a pure plan, made before anything
//! is unloaded, so a load that cannot fit unloads nothing; and which members of an exclusive group go
//! first.

use crate::config::{ServiceSpec, Settings};

/// What one running service holds, for the plan.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Holder {
    pub name: String,
    pub bytes: u64,
    /// An idle on-demand service (not pinned, nothing in flight or waiting, not already stopping).
    pub evictable: bool,
    /// Its last request, or when it got ready (ms since the epoch): the least recent goes first.
    pub last_used_ms: u64,
}

/// The plan for loading a service of `need` bytes with `reserve` bytes kept free under `budget`.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Room {
    /// It fits after unloading these, least recently used first (none: it fits now).
    Fits { unload: Vec<Holder> },
    /// Even unloading every evictable service would not make room: unload nothing. `held` is what would
    /// still hold memory, for the refusal's message.
    NoRoom { held: Vec<Holder>, held_bytes: u64 },
}

/// Takes evictable holders, least recently used first, only as many as it needs.
pub(super) fn plan(mut holders: Vec<Holder>, need: u64, reserve: u64, budget: u64) -> Room {
    let total: u64 = holders.iter().map(|h| h.bytes).sum();
    let fits = |held: u64| held.saturating_add(need).saturating_add(reserve) <= budget;
    if fits(total) {
        return Room::Fits { unload: vec![] };
    }
    holders.sort_by_key(|h| h.last_used_ms);
    let mut freed = 0u64;
    let mut unload = vec![];
    for h in holders.iter().filter(|h| h.evictable) {
        if fits(total - freed) {
            break;
        }
        freed += h.bytes;
        unload.push(h.clone());
    }
    if fits(total - freed) {
        Room::Fits { unload }
    } else {
        let held: Vec<Holder> = holders
            .into_iter()
            .filter(|h| !unload.iter().any(|v| v.name == h.name))
            .collect();
        Room::NoRoom {
            held,
            held_bytes: total - freed,
        }
    }
}

/// The other enabled members of `spec`'s `exclusive_group` that run now (`running`): what must be
/// unloaded before it starts. None without a group.
pub(super) fn rivals<'a>(
    settings: &'a Settings,
    spec: &ServiceSpec,
    running: impl Fn(&str) -> bool,
) -> Vec<&'a ServiceSpec> {
    let Some(group) = &spec.exclusive_group else {
        return vec![];
    };
    settings
        .services
        .iter()
        .filter(|o| o.name != spec.name && o.enabled)
        .filter(|o| o.exclusive_group.as_ref() == Some(group))
        .filter(|o| running(&o.name))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rivals_are_the_running_enabled_members_of_the_same_group() {
        let text = r#"
[services.big]
port = 8091
backend_port = 8191
model = "m/big"
exclusive_group = "gpu"
on_demand = true
[services.other]
port = 8092
backend_port = 8192
model = "m/other"
exclusive_group = "gpu"
on_demand = true
[services.off]
port = 8093
backend_port = 8193
model = "m/off"
exclusive_group = "gpu"
on_demand = true
enabled = false
[services.idle]
port = 8094
backend_port = 8194
model = "m/idle"
exclusive_group = "gpu"
on_demand = true
[services.elsewhere]
port = 8095
backend_port = 8195
model = "m/elsewhere"
exclusive_group = "cpu"
on_demand = true
[services.loner]
port = 8096
backend_port = 8196
model = "m/loner"
"#;
        let (settings, diagnostics) =
            crate::config::parse_settings(std::path::Path::new("/s.toml"), text);
        let settings = settings.unwrap_or_else(|| panic!("{diagnostics:?}"));
        let spec = |n: &str| settings.service(n).unwrap();
        let running = |n: &str| n != "idle";
        let names =
            |v: Vec<&ServiceSpec>| v.into_iter().map(|s| s.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(rivals(&settings, spec("big"), running)), ["other"]);
        assert_eq!(
            names(rivals(&settings, spec("idle"), running)),
            ["big", "other"]
        );
        assert!(rivals(&settings, spec("elsewhere"), running).is_empty());
        assert!(rivals(&settings, spec("loner"), |_| true).is_empty());
    }

    const GB: u64 = 1 << 30;

    fn h(name: &str, gb: u64, evictable: bool, last_used_ms: u64) -> Holder {
        Holder {
            name: name.into(),
            bytes: gb * GB,
            evictable,
            last_used_ms,
        }
    }

    fn names(r: &Room) -> Vec<&str> {
        match r {
            Room::Fits { unload } => unload.iter().map(|h| h.name.as_str()).collect(),
            Room::NoRoom { .. } => panic!("no room: {r:?}"),
        }
    }

    #[test]
    fn what_fits_unloads_nothing() {
        let r = plan(vec![h("a", 10, true, 1)], 10 * GB, 4 * GB, 64 * GB);
        assert_eq!(r, Room::Fits { unload: vec![] });
    }

    #[test]
    fn the_least_recently_used_go_first_and_only_as_many_as_needed() {
        let holders = vec![
            h("newest", 20, true, 300),
            h("oldest", 20, true, 100),
            h("middle", 20, true, 200),
        ];
        // 60 held + 20 needed + 4 reserve = 84 > 64: one must go, the oldest.
        assert_eq!(
            names(&plan(holders.clone(), 20 * GB, 4 * GB, 64 * GB)),
            ["oldest"]
        );
        // 60 + 30 + 4 = 94 > 64: two go, oldest first.
        assert_eq!(
            names(&plan(holders, 30 * GB, 4 * GB, 64 * GB)),
            ["oldest", "middle"]
        );
    }

    #[test]
    fn a_pinned_or_busy_service_is_never_unloaded() {
        let holders = vec![
            h("pinned", 30, false, 1),
            h("busy", 10, false, 2),
            h("idle", 10, true, 3),
        ];
        assert_eq!(names(&plan(holders, 20 * GB, 0, 64 * GB)), ["idle"]);
    }

    #[test]
    fn when_nothing_evictable_makes_room_nothing_is_unloaded() {
        let holders = vec![h("pinned", 40, false, 1), h("idle", 10, true, 2)];
        // Unloading `idle` frees 10: 40 + 30 > 64 still. The plan unloads nothing and names what holds.
        match plan(holders, 30 * GB, 0, 64 * GB) {
            Room::NoRoom { held, held_bytes } => {
                assert_eq!(held_bytes, 40 * GB);
                assert_eq!(held.len(), 1);
                assert_eq!(held[0].name, "pinned");
            }
            r => panic!("{r:?}"),
        }
        // Nothing running, and still too big: no room, nothing held.
        match plan(vec![], 70 * GB, 0, 64 * GB) {
            Room::NoRoom { held, held_bytes } => assert!(held.is_empty() && held_bytes == 0),
            r => panic!("{r:?}"),
        }
    }

    #[test]
    fn huge_figures_do_not_overflow() {
        let r = plan(vec![h("a", 1, true, 1)], u64::MAX, u64::MAX, 64 * GB);
        assert!(matches!(r, Room::NoRoom { .. }));
    }
}
