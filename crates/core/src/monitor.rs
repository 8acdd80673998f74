//! The 1 Hz sampler: memory, swap, swap-out rate, pressure, thermal state, per-service memory. Reads the
//! OS counters directly (Linux: /proc and /sys; macOS: sysctl), keeps 10 minutes of history in memory.

pub use mlxbox_api::monitor::{Pressure, Sample, Thermal};
use std::collections::VecDeque;

/// 10 minutes at 1 Hz.
pub const HISTORY: usize = 600;

#[derive(Debug, Default)]
pub struct History {
    samples: VecDeque<Sample>,
}

impl History {
    pub fn push(&mut self, s: Sample) {
        if self.samples.len() == HISTORY {
            self.samples.pop_front();
        }
        self.samples.push_back(s);
    }
    pub fn latest(&self) -> Option<&Sample> {
        self.samples.back()
    }
    pub fn all(&self) -> Vec<Sample> {
        self.samples.iter().cloned().collect()
    }
}

/// Reads the machine. Keeps the previous swap-out counter to turn it into a rate.
#[derive(Debug, Default)]
pub struct Sampler {
    last_swap_out: Option<(u64, u64)>, // (t_ms, bytes swapped out so far)
}

impl Sampler {
    pub fn sample(&mut self) -> Sample {
        let now = crate::api::now_ms();
        let mut s = os::read(now);
        if let Some(out) = os::swapped_out_bytes() {
            if let Some((t0, o0)) = self.last_swap_out {
                let dt = (now.saturating_sub(t0)) as f64 / 1000.0;
                if dt > 0.0 {
                    s.swap_out_bytes_per_s = Some(out.saturating_sub(o0) as f64 / dt);
                }
            }
            self.last_swap_out = Some((now, out));
        }
        s
    }
}

#[cfg(target_os = "linux")]
mod os {
    use super::*;

    fn meminfo() -> std::collections::HashMap<String, u64> {
        std::fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(':')?;
                let kb: u64 = v.split_whitespace().next()?.parse().ok()?;
                Some((k.to_string(), kb * 1024))
            })
            .collect()
    }

    /// PSI: "full avg10" > 10 % → critical (every task stalled on memory a tenth of the time);
    /// "some avg10" > 10 % → warn. No PSI (old kernel, some containers) → unknown.
    pub fn pressure_from_psi(text: &str) -> Pressure {
        let avg10 = |kind: &str| {
            text.lines().find(|l| l.starts_with(kind)).and_then(|l| {
                l.split_whitespace()
                    .find_map(|f| f.strip_prefix("avg10="))
                    .and_then(|v| v.parse::<f64>().ok())
            })
        };
        match (avg10("some"), avg10("full")) {
            (_, Some(f)) if f > 10.0 => Pressure::Critical,
            (Some(s), _) if s > 10.0 => Pressure::Warn,
            (Some(_), _) => Pressure::Normal,
            _ => Pressure::Unknown,
        }
    }

    /// Thermal zones against their own trip points: ≥ critical → critical, ≥ hot → serious,
    /// ≥ passive → fair, else nominal. No zone with trip points → unknown (never a made-up value).
    pub fn thermal() -> (Thermal, Option<f64>) {
        let mut state = Thermal::Unknown;
        let mut hottest: Option<f64> = None;
        let Ok(zones) = std::fs::read_dir("/sys/class/thermal") else {
            return (state, None);
        };
        for z in zones.flatten() {
            let p = z.path();
            if !z.file_name().to_string_lossy().starts_with("thermal_zone") {
                continue;
            }
            let Some(temp) = std::fs::read_to_string(p.join("temp"))
                .ok()
                .and_then(|t| t.trim().parse::<f64>().ok())
            else {
                continue;
            };
            hottest = Some(hottest.map_or(temp / 1000.0, |h: f64| h.max(temp / 1000.0)));
            for i in 0..16 {
                let ty = std::fs::read_to_string(p.join(format!("trip_point_{i}_type")));
                let tt = std::fs::read_to_string(p.join(format!("trip_point_{i}_temp")));
                let (Ok(ty), Ok(tt)) = (ty, tt) else { break };
                let Ok(trip) = tt.trim().parse::<f64>() else {
                    continue;
                };
                if trip <= 0.0 {
                    continue;
                }
                let level = match ty.trim() {
                    "critical" => Thermal::Critical,
                    "hot" => Thermal::Serious,
                    "passive" => Thermal::Fair,
                    _ => continue,
                };
                state = state.max(Thermal::Nominal);
                if temp >= trip {
                    state = state.max(level);
                }
            }
        }
        (state, hottest)
    }

    pub fn read(t_ms: u64) -> Sample {
        let m = meminfo();
        let g = |k: &str| m.get(k).copied().unwrap_or(0);
        let total = g("MemTotal");
        let available = g("MemAvailable");
        let (thermal, temperature_c) = thermal();
        Sample {
            t_ms,
            total_bytes: total,
            used_bytes: total.saturating_sub(available),
            available_bytes: available,
            swap_used_bytes: g("SwapTotal").saturating_sub(g("SwapFree")),
            swap_total_bytes: g("SwapTotal"),
            swap_out_bytes_per_s: None,
            compressed_bytes: None,
            wired_bytes: None,
            pressure: std::fs::read_to_string("/proc/pressure/memory")
                .map(|t| pressure_from_psi(&t))
                .unwrap_or(Pressure::Unknown),
            thermal,
            temperature_c,
        }
    }

    /// Pages swapped out since boot (`pswpout` in /proc/vmstat), in bytes.
    pub fn swapped_out_bytes() -> Option<u64> {
        let text = std::fs::read_to_string("/proc/vmstat").ok()?;
        let pages: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("pswpout "))?
            .trim()
            .parse()
            .ok()?;
        Some(pages * 4096)
    }
}

#[cfg(target_os = "macos")]
pub(crate) mod os {
    use super::*;

    pub(crate) fn sysctl_raw(name: &str, buf: &mut [u8]) -> Option<usize> {
        let cname = std::ffi::CString::new(name).ok()?;
        let mut len = buf.len();
        let rc = unsafe {
            libc::sysctlbyname(
                cname.as_ptr(),
                buf.as_mut_ptr().cast(),
                &mut len,
                std::ptr::null_mut(),
                0,
            )
        };
        (rc == 0).then_some(len)
    }

    /// An integer sysctl (4 or 8 bytes), by name.
    pub(crate) fn sysctl_int(name: &str) -> Option<u64> {
        let mut buf = [0u8; 8];
        match sysctl_raw(name, &mut buf)? {
            4 => Some(u32::from_ne_bytes(buf[..4].try_into().ok()?) as u64),
            8 => Some(u64::from_ne_bytes(buf)),
            _ => None,
        }
    }

    pub fn read(t_ms: u64) -> Sample {
        // sysinfo ≥ 0.38.3 computes macOS used/available right (older releases did not).
        let sys = sysinfo::System::new_with_specifics(
            sysinfo::RefreshKind::nothing().with_memory(sysinfo::MemoryRefreshKind::everything()),
        );
        let (total, available, used) = sys
            .as_ref()
            .map(|s| (s.total_memory(), s.available_memory(), s.used_memory()))
            .unwrap_or_default();
        // struct xsw_usage { u64 total; u64 avail; u64 used; u32 pagesize; bool encrypted }
        let mut xsw = [0u8; 32];
        let (swap_total, swap_used) = match sysctl_raw("vm.swapusage", &mut xsw) {
            Some(n) if n >= 24 => (
                u64::from_ne_bytes(xsw[0..8].try_into().unwrap()),
                u64::from_ne_bytes(xsw[16..24].try_into().unwrap()),
            ),
            _ => (0, 0),
        };
        let pressure = match sysctl_int("kern.memorystatus_vm_pressure_level") {
            Some(1) => Pressure::Normal,
            Some(2) => Pressure::Warn,
            Some(4) => Pressure::Critical,
            _ => Pressure::Unknown,
        };
        let vm = vm_statistics();
        Sample {
            t_ms,
            total_bytes: total,
            used_bytes: used,
            available_bytes: available,
            swap_used_bytes: swap_used,
            swap_total_bytes: swap_total,
            swap_out_bytes_per_s: None,
            compressed_bytes: vm.map(|v| v.0),
            wired_bytes: vm.map(|v| v.1),
            pressure,
            thermal: thermal_state(),
            temperature_c: None,
        }
    }

    /// (compressed, wired) bytes from `host_statistics64`: pages held by the memory compressor, and
    /// wired pages (what `vm_stat` calls "Pages wired down").
    #[allow(deprecated)] // libc points to the mach2 crate for mach_host_self; the call is the same.
    fn vm_statistics() -> Option<(u64, u64)> {
        let page = sysctl_int("hw.pagesize").unwrap_or(16384);
        let mut stats: libc::vm_statistics64 = unsafe { std::mem::zeroed() };
        let mut count = libc::HOST_VM_INFO64_COUNT;
        let rc = unsafe {
            libc::host_statistics64(
                libc::mach_host_self(),
                libc::HOST_VM_INFO64,
                (&mut stats as *mut libc::vm_statistics64).cast(),
                &mut count,
            )
        };
        (rc == 0).then(|| {
            (
                u64::from(stats.compressor_page_count) * page,
                u64::from(stats.wire_count) * page,
            )
        })
    }

    /// `NSProcessInfo.thermalState`: the same four levels the OS uses to throttle.
    fn thermal_state() -> Thermal {
        use objc2_foundation::{NSProcessInfo, NSProcessInfoThermalState};
        let state = NSProcessInfo::processInfo().thermalState();
        match state {
            NSProcessInfoThermalState::Nominal => Thermal::Nominal,
            NSProcessInfoThermalState::Fair => Thermal::Fair,
            NSProcessInfoThermalState::Serious => Thermal::Serious,
            NSProcessInfoThermalState::Critical => Thermal::Critical,
            _ => Thermal::Unknown,
        }
    }

    /// Swap-outs since boot (`vm.swapouts` counts pages).
    pub fn swapped_out_bytes() -> Option<u64> {
        let page = sysctl_int("hw.pagesize").unwrap_or(16384);
        sysctl_int("vm.swapouts").map(|p| p * page)
    }
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
mod os {
    use super::*;
    pub fn read(t_ms: u64) -> Sample {
        Sample {
            t_ms,
            total_bytes: 0,
            used_bytes: 0,
            available_bytes: 0,
            swap_used_bytes: 0,
            swap_total_bytes: 0,
            swap_out_bytes_per_s: None,
            compressed_bytes: None,
            wired_bytes: None,
            pressure: Pressure::Unknown,
            thermal: Thermal::Unknown,
            temperature_c: None,
        }
    }
    pub fn swapped_out_bytes() -> Option<u64> {
        None
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn psi_levels() {
        let t = |some: f64, full: f64| {
            format!("some avg10={some:.2} avg60=0.00 avg300=0.00 total=1\nfull avg10={full:.2} avg60=0.00 avg300=0.00 total=1\n")
        };
        assert_eq!(os::pressure_from_psi(&t(0.0, 0.0)), Pressure::Normal);
        assert_eq!(os::pressure_from_psi(&t(12.0, 1.0)), Pressure::Warn);
        assert_eq!(os::pressure_from_psi(&t(30.0, 15.0)), Pressure::Critical);
        assert_eq!(os::pressure_from_psi(""), Pressure::Unknown);
    }

    #[test]
    fn real_sample_is_plausible() {
        let mut s = Sampler::default();
        let a = s.sample();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let b = s.sample();
        assert!(a.total_bytes > 100 << 20, "{a:?}");
        assert!(a.available_bytes <= a.total_bytes && a.used_bytes <= a.total_bytes);
        assert!(a.swap_used_bytes <= a.swap_total_bytes.max(a.swap_used_bytes));
        assert!(
            b.swap_out_bytes_per_s.is_some_and(|r| r >= 0.0) || os::swapped_out_bytes().is_none()
        );
        assert!((0.0..=100.0).contains(&a.headroom_percent()));
    }
}

/// What the monitor reads on a Mac: sysctl, host_statistics64 and NSProcessInfo (type-checked on Linux by
/// scripts/test.sh's aarch64-apple-darwin clippy; run by .github/workflows/macos.yml).
#[cfg(all(test, target_os = "macos"))]
mod macos_tests {
    use super::*;

    #[test]
    fn sysctl_memory_and_swap() {
        let memsize = os::sysctl_int("hw.memsize").expect("hw.memsize");
        let s = os::read(0);
        assert!(s.total_bytes > 1 << 30, "{s:?}");
        // sysinfo's total is hw.memsize.
        assert_eq!(s.total_bytes, memsize, "{s:?}");
        assert!(
            s.available_bytes <= s.total_bytes && s.used_bytes <= s.total_bytes,
            "{s:?}"
        );
        // vm.swapusage is a struct xsw_usage (at least total, avail, used).
        let mut xsw = [0u8; 32];
        assert!(os::sysctl_raw("vm.swapusage", &mut xsw).is_some_and(|n| n >= 24));
        assert!(s.swap_used_bytes <= s.swap_total_bytes, "{s:?}");
        assert_ne!(
            s.pressure,
            Pressure::Unknown,
            "kern.memorystatus_vm_pressure_level"
        );
        assert!(
            s.compressed_bytes.is_some() && s.wired_bytes.is_some_and(|w| w > 0),
            "{s:?}"
        );
        assert!(os::swapped_out_bytes().is_some(), "vm.swapouts");
    }

    #[test]
    fn thermal_state_is_one_the_os_names() {
        assert_ne!(os::read(0).thermal, Thermal::Unknown);
    }
}
