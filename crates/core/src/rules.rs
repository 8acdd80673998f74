//! Alert rules over the monitor's samples, with hysteresis (raise above a mark, clear below a lower one,
//! held for `clear_after_s`) and a cooldown (a cleared alert does not come back within `cooldown_s`), so a
//! flapping value notifies once, not every second. Pure: samples and `now` in, decisions out.

use crate::api::AlertSeverity;
use crate::config::AlertSettings;
use crate::monitor::{Pressure, Sample, Thermal};
use std::collections::{BTreeMap, VecDeque};

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Raise {
        id: &'static str,
        severity: AlertSeverity,
        title: String,
        body: String,
    },
    Clear {
        id: &'static str,
    },
}

/// One rule's latch.
#[derive(Debug, Default, Clone)]
struct Latch {
    active: bool,
    clear_since: Option<u64>,
    cleared_at: Option<u64>,
}

impl Latch {
    /// `Some(true)` = raise now, `Some(false)` = clear now.
    fn step(
        &mut self,
        raise: bool,
        clear: bool,
        now: u64,
        clear_hold: u64,
        cooldown: u64,
    ) -> Option<bool> {
        if !self.active {
            let cooled = self
                .cleared_at
                .is_none_or(|c| now.saturating_sub(c) >= cooldown);
            if raise && cooled {
                self.active = true;
                self.clear_since = None;
                return Some(true);
            }
            return None;
        }
        if clear {
            let since = *self.clear_since.get_or_insert(now);
            if now.saturating_sub(since) >= clear_hold {
                self.active = false;
                self.cleared_at = Some(now);
                return Some(false);
            }
        } else {
            self.clear_since = None;
        }
        None
    }
}

pub struct Engine {
    pub cfg: AlertSettings,
    latches: BTreeMap<&'static str, Latch>,
    /// Recent (t_ms, swap used) to tell "still growing" from "high but flat".
    swap: VecDeque<(u64, u64)>,
    /// Consecutive samples of sustained swap-out.
    swapping_for: u32,
}

/// Swap-out above this rate (bytes/s) for 10 s in a row is "sustained swapping": decode slows 40–150×.
const SWAP_OUT_SUSTAINED: f64 = 1024.0 * 1024.0;
const SWAP_OUT_SAMPLES: u32 = 10;

impl Engine {
    pub fn new(cfg: AlertSettings) -> Self {
        Engine {
            cfg,
            latches: BTreeMap::new(),
            swap: VecDeque::new(),
            swapping_for: 0,
        }
    }

    /// Runs one rule's latch and turns a change into a decision.
    fn check(&mut self, out: &mut Vec<Decision>, now: u64, c: Check) {
        let hold = (self.cfg.clear_after_s * 1000.0) as u64;
        let cool = (self.cfg.cooldown_s * 1000.0) as u64;
        match self
            .latches
            .entry(c.id)
            .or_default()
            .step(c.raise, c.clear, now, hold, cool)
        {
            Some(true) => out.push(Decision::Raise {
                id: c.id,
                severity: c.severity,
                title: c.title.into(),
                body: c.body,
            }),
            Some(false) => out.push(Decision::Clear { id: c.id }),
            None => {}
        }
    }

    /// Evaluates every rule on a new sample.
    pub fn evaluate(&mut self, s: &Sample) -> Vec<Decision> {
        use AlertSeverity::{Critical, Warning};
        let now = s.t_ms;
        let mut out = vec![];
        if !self.cfg.enabled {
            for (id, l) in self.latches.iter_mut() {
                if l.active {
                    l.active = false;
                    out.push(Decision::Clear { id });
                }
            }
            return out;
        }

        // Swap used above the bar and still growing (swap stays high after pressure ends: flat is fine).
        self.swap.push_back((now, s.swap_used_bytes));
        while self
            .swap
            .front()
            .is_some_and(|(t, _)| now.saturating_sub(*t) > 30_000)
        {
            self.swap.pop_front();
        }
        let growing = self
            .swap
            .front()
            .is_some_and(|(_, first)| s.swap_used_bytes > first + (1 << 20));
        let bar = (self.cfg.swap_warn_mb * 1024.0 * 1024.0) as u64;
        let swap_mb = s.swap_used_bytes >> 20;

        // Sustained swap-out, or the kernel's own critical pressure.
        let swapping = s
            .swap_out_bytes_per_s
            .is_some_and(|r| r > SWAP_OUT_SUSTAINED);
        self.swapping_for = if swapping { self.swapping_for + 1 } else { 0 };
        let calm_swap = s
            .swap_out_bytes_per_s
            .is_none_or(|r| r < SWAP_OUT_SUSTAINED / 16.0);

        let headroom = s.headroom_percent();
        let mark = self.cfg.headroom_warn_percent;

        let checks = [
            Check {
                id: "swap-growing",
                severity: Warning,
                raise: s.swap_used_bytes > bar && growing,
                clear: !growing || s.swap_used_bytes < bar * 8 / 10,
                title: "The Mac is swapping",
                body: format!("Swap use is {swap_mb} MB and growing: stop or shrink a model (lower max_tokens / context_length) before decoding slows down."),
            },
            Check {
                id: "memory-critical",
                severity: Critical,
                raise: self.swapping_for >= SWAP_OUT_SAMPLES || s.pressure == Pressure::Critical,
                clear: calm_swap && s.pressure < Pressure::Critical,
                title: "Memory is critically short",
                body: "The system is swapping out continuously or reports critical pressure: stop a service now (mlx-box stop NAME).".into(),
            },
            Check {
                id: "memory-pressure",
                severity: Warning,
                raise: s.pressure == Pressure::Warn,
                clear: s.pressure == Pressure::Normal,
                title: "Memory pressure",
                body: "The OS reports memory pressure: consider stopping an idle service or lowering context sizes.".into(),
            },
            Check {
                id: "low-headroom",
                severity: Warning,
                raise: s.total_bytes > 0 && headroom < mark,
                clear: headroom >= mark + 2.0,
                title: "Little free memory left",
                body: format!("Only {headroom:.0} % of memory is available (alert below {mark:.0} %): a new request with a long context may push the Mac into swap."),
            },
            Check {
                id: "thermal-serious",
                severity: Warning,
                raise: s.thermal == Thermal::Serious,
                clear: s.thermal <= Thermal::Fair,
                title: "The Mac is hot",
                body: "Thermal state is serious: expect throttling; check the fans and the room, or lower the load.".into(),
            },
            Check {
                id: "thermal-critical",
                severity: Critical,
                raise: s.thermal == Thermal::Critical,
                clear: s.thermal <= Thermal::Serious,
                title: "The Mac is overheating",
                body: "Thermal state is critical: the system is throttling hard; stop heavy work now.".into(),
            },
        ];
        for c in checks {
            self.check(&mut out, now, c);
        }
        out
    }
}

impl Engine {
    /// The throttling rule, on the proxy's per-request decode speeds and the thermal states of the same
    /// span (see [`throttling_suspected`]); latched like the other rules.
    pub fn evaluate_throughput(
        &mut self,
        now: u64,
        tok_s: &[f64],
        thermal: &[Thermal],
    ) -> Vec<Decision> {
        let mut out = vec![];
        if !self.cfg.enabled {
            return out;
        }
        let suspected = throttling_suspected(tok_s, thermal);
        self.check(
            &mut out,
            now,
            Check {
                id: "throttling-suspected",
                severity: AlertSeverity::Warning,
                raise: suspected,
                clear: !suspected,
                title: "Throttling suspected",
                body: "Generation got ≥ 20 % slower while the Mac heated up: it is probably throttling. Check the fans and the room, or lower the load.".into(),
            },
        );
        out
    }
}

/// One rule's verdict on a sample: raise above the high mark, clear below the low one.
struct Check {
    id: &'static str,
    severity: AlertSeverity,
    raise: bool,
    clear: bool,
    title: &'static str,
    body: String,
}

/// "Throttling suspected": throughput fell by ≥ 20 % from the first to the last third of a series while
/// the thermal state rose. The benchmark feeds it per level (`bench::run`: the generation tok/s of successive
/// requests, the thermal samples of the level); the daemon then raises `throttling-suspected`.
pub fn throttling_suspected(tok_s: &[f64], thermal: &[Thermal]) -> bool {
    if tok_s.len() < 3 || thermal.len() < 2 {
        return false;
    }
    let third = tok_s.len() / 3;
    let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len() as f64;
    let (first, last) = (mean(&tok_s[..third]), mean(&tok_s[tok_s.len() - third..]));
    let rose = thermal.last() > thermal.first() && *thermal.last().unwrap() >= Thermal::Fair;
    first > 0.0 && last <= first * 0.8 && rose
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(t_s: u64) -> Sample {
        Sample {
            t_ms: t_s * 1000,
            total_bytes: 100 << 30,
            used_bytes: 50 << 30,
            available_bytes: 50 << 30,
            swap_used_bytes: 0,
            swap_total_bytes: 8 << 30,
            swap_out_bytes_per_s: Some(0.0),
            compressed_bytes: None,
            wired_bytes: None,
            pressure: Pressure::Normal,
            thermal: Thermal::Nominal,
            temperature_c: None,
        }
    }

    fn cfg() -> AlertSettings {
        AlertSettings {
            clear_after_s: 5.0,
            cooldown_s: 60.0,
            ..AlertSettings::default()
        }
    }

    fn ids(d: &[Decision]) -> Vec<String> {
        d.iter()
            .map(|d| match d {
                Decision::Raise { id, .. } => format!("+{id}"),
                Decision::Clear { id } => format!("-{id}"),
            })
            .collect()
    }

    #[test]
    fn swap_rises_then_clears_when_flat() {
        let mut e = Engine::new(cfg());
        let mut log = vec![];
        for t in 0..80 {
            let mut s = base(t);
            // grows 20 MB/s for 15 s, then stays flat at 300 MB
            s.swap_used_bytes = (t.min(15) * 20) << 20;
            log.extend(ids(&e.evaluate(&s)).into_iter().map(|x| format!("{t}{x}")));
        }
        // Raised once past 100 MB while growing; cleared once flat over the 30 s window, held 5 s.
        assert_eq!(log, ["6+swap-growing", "50-swap-growing"]);
    }

    #[test]
    fn flapping_headroom_notifies_once() {
        let mut e = Engine::new(cfg());
        let mut raises = 0;
        let mut clears = 0;
        for t in 0..120 {
            let mut s = base(t);
            // 9 % ↔ 13 % every second: crosses both marks (10 % raise, 12 % clear)
            s.available_bytes = if t % 2 == 0 { 9 << 30 } else { 13 << 30 };
            for d in e.evaluate(&s) {
                match d {
                    Decision::Raise {
                        id: "low-headroom", ..
                    } => raises += 1,
                    Decision::Clear { id: "low-headroom" } => clears += 1,
                    _ => {}
                }
            }
        }
        assert_eq!(
            (raises, clears),
            (1, 0),
            "held active: never 5 s of clear in a row"
        );
    }

    #[test]
    fn clear_then_cooldown_then_raise_again() {
        let mut e = Engine::new(cfg());
        let mut log = vec![];
        let avail = |t: u64| {
            if t < 10 || (30..100).contains(&t) {
                5u64 << 30
            } else {
                50 << 30
            }
        };
        for t in 0..120 {
            let mut s = base(t);
            s.available_bytes = avail(t);
            log.extend(ids(&e.evaluate(&s)).into_iter().map(|x| format!("{t}{x}")));
        }
        // raised at 0; clear held 5 s from 10 → cleared at 15; low again at 30 but cooling down until 75;
        // fine again from 100 → cleared at 105.
        assert_eq!(
            log,
            [
                "0+low-headroom",
                "15-low-headroom",
                "75+low-headroom",
                "105-low-headroom"
            ]
        );
    }

    #[test]
    fn pressure_thermal_and_sustained_swap_out() {
        let mut e = Engine::new(cfg());
        let mut s = base(0);
        s.pressure = Pressure::Warn;
        s.thermal = Thermal::Serious;
        assert_eq!(
            ids(&e.evaluate(&s)),
            ["+memory-pressure", "+thermal-serious"]
        );
        let mut log = vec![];
        for t in 1..15 {
            let mut s = base(t);
            s.pressure = Pressure::Warn;
            s.thermal = Thermal::Critical;
            s.swap_out_bytes_per_s = Some(5e6);
            log.extend(ids(&e.evaluate(&s)).into_iter().map(|x| format!("{t}{x}")));
        }
        assert_eq!(log, ["1+thermal-critical", "10+memory-critical"]);
    }

    #[test]
    fn throttling_rule_is_latched() {
        use Thermal::*;
        let mut e = Engine::new(AlertSettings::default());
        let slow = [50.0, 50.0, 49.0, 40.0, 38.0, 36.0];
        let d = e.evaluate_throughput(1000, &slow, &[Nominal, Serious]);
        assert!(
            matches!(
                d[..],
                [Decision::Raise {
                    id: "throttling-suspected",
                    ..
                }]
            ),
            "{d:?}"
        );
        assert!(
            e.evaluate_throughput(2000, &slow, &[Nominal, Serious])
                .is_empty(),
            "once"
        );
        let flat = [50.0, 50.0, 50.0];
        assert!(
            e.evaluate_throughput(3000, &flat, &[Nominal]).is_empty(),
            "held"
        );
        let d = e.evaluate_throughput(20_000, &flat, &[Nominal]);
        assert!(matches!(d[..], [Decision::Clear { .. }]), "{d:?}");
    }

    #[test]
    fn throttling_rule() {
        use Thermal::*;
        assert!(throttling_suspected(
            &[50.0, 50.0, 48.0, 45.0, 38.0, 36.0],
            &[Nominal, Fair, Serious]
        ));
        assert!(
            !throttling_suspected(&[50.0, 50.0, 48.0, 45.0, 38.0, 36.0], &[Nominal, Nominal]),
            "no heat"
        );
        assert!(
            !throttling_suspected(&[50.0, 49.0, 50.0, 48.0, 49.0, 50.0], &[Nominal, Serious]),
            "no drop"
        );
    }
}
