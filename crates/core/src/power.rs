//! Keeping the machine awake while it serves (`[app] prevent_sleep`). A Mac Studio that serves models must
//! not fall asleep under its clients; the display may.
//!
//! [`Awake`] decides, at every monitor tick, whether the lock is wanted — `serving`: while a model server
//! is loaded (a process of ours starting, ready or unhealthy); `always`: while the daemon runs; `never` —
//! and takes or releases it through a [`SleepInhibitor`]:
//! - macOS: an IOKit power assertion, `IOPMAssertionCreateWithName(PreventUserIdleSystemSleep)`, released
//!   by `IOPMAssertionRelease` (the kernel releases it too when the process dies);
//! - Linux: a logind inhibitor, `org.freedesktop.login1.Manager.Inhibit("sleep:idle", "mlx-box", why,
//!   "block")` over the system bus (`systemd-inhibit`'s call), which answers a file descriptor: holding it
//!   holds the lock, closing it (or dying) releases it.
//!
//! Why `serving` means "a server is loaded" and not "a request is in flight": a request in flight implies
//! a loaded server, and an unused on-demand server is unloaded after `idle_stop_s`, which already bounds
//! how long an idle machine stays awake; a lock per request would let the machine sleep between two
//! requests of an agent that thinks for a minute, with its model still in memory.
//!
//! A lock that cannot be taken (no system bus, no logind, refused) is a typed [`InhibitError`]: logged
//! once per distinct error, shown in the status ("cannot keep the machine awake: …"), tried again after
//! [`RETRY_AFTER`]; never a crash.

use crate::api::AwakeStatus;
use crate::config::PreventSleep;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long the system bus may take to connect and answer an `Inhibit` call.
pub const BUS_TIMEOUT: Duration = Duration::from_secs(3);
/// After a failure, the lock is tried again this much later (while it is still wanted).
pub const RETRY_AFTER: Duration = Duration::from_secs(60);
/// The `who` of the lock (logind's inhibitor list, `pmset -g assertions`).
pub const WHO: &str = "mlx-box";

/// A lock held: dropping it releases it.
pub type Hold = Box<dyn Send + Sync>;

pub type InhibitFuture<'a> = Pin<Box<dyn Future<Output = Result<Hold, InhibitError>> + Send + 'a>>;

/// Why the machine cannot be kept awake.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InhibitError {
    #[error("no system bus ({0})")]
    NoBus(String),
    #[error("logind is not running on the system bus ({0})")]
    NoLogind(String),
    #[error("logind refused the inhibitor: {0}")]
    Refused(String),
    #[error("the system bus did not answer within {0:?}")]
    Timeout(Duration),
    #[error("IOPMAssertionCreateWithName failed (IOReturn {0:#x})")]
    Assertion(i32),
    #[error("not supported on this OS")]
    Unsupported,
}

/// Takes the OS's lock against idle sleep.
pub trait SleepInhibitor: Send + Sync {
    /// Takes the lock, `why` being what the OS shows; it is held until the returned [`Hold`] drops.
    fn inhibit<'a>(&'a self, why: &'a str) -> InhibitFuture<'a>;
}

/// This OS's inhibitor.
pub fn for_this_os() -> Box<dyn SleepInhibitor> {
    #[cfg(target_os = "linux")]
    return Box::new(logind::Logind {
        timeout: BUS_TIMEOUT,
        address: None,
    });
    #[cfg(target_os = "macos")]
    return Box::new(iokit::Assertion);
    #[allow(unreachable_code)]
    Box::new(Unsupported)
}

struct Unsupported;

impl SleepInhibitor for Unsupported {
    fn inhibit<'a>(&'a self, _why: &'a str) -> InhibitFuture<'a> {
        Box::pin(async { Err(InhibitError::Unsupported) })
    }
}

/// What the lock should be, for a mode and a count of loaded servers: `(wanted, reason)`.
pub fn decide(mode: PreventSleep, loaded: usize) -> (bool, String) {
    match mode {
        PreventSleep::Never => (false, "prevent_sleep = \"never\"".into()),
        PreventSleep::Always => (true, "prevent_sleep = \"always\"".into()),
        PreventSleep::Serving => match loaded {
            0 => (false, "no server loaded".into()),
            1 => (true, "1 server loaded".into()),
            n => (true, format!("{n} servers loaded")),
        },
    }
}

fn mode_name(mode: PreventSleep) -> &'static str {
    match mode {
        PreventSleep::Serving => "serving",
        PreventSleep::Always => "always",
        PreventSleep::Never => "never",
    }
}

/// The lock's owner: takes it when wanted, releases it when not, and says so in the status.
pub struct Awake {
    backend: Box<dyn SleepInhibitor>,
    retry_after: Duration,
    /// The lock, and when the last attempt failed (one update at a time: a tick that finds an
    /// attempt still waiting on the bus skips).
    inner: tokio::sync::Mutex<Inner>,
    /// What the status shows, readable without waiting behind an attempt.
    shown: Mutex<Option<AwakeStatus>>,
}

#[derive(Default)]
struct Inner {
    hold: Option<Hold>,
    failed_at: Option<Instant>,
    error: Option<String>,
    /// The last error logged (each distinct error is logged once).
    logged: Option<String>,
    /// Released for good (the daemon is stopping): no update takes it again.
    closed: bool,
}

impl Awake {
    pub fn new(backend: Box<dyn SleepInhibitor>) -> Awake {
        Awake {
            backend,
            retry_after: RETRY_AFTER,
            inner: Default::default(),
            shown: Mutex::new(None),
        }
    }

    /// The same, trying again this soon after a failure (tests).
    pub fn with_retry(mut self, retry_after: Duration) -> Awake {
        self.retry_after = retry_after;
        self
    }

    /// What the status report shows (`None` before the first update).
    pub fn status(&self) -> Option<AwakeStatus> {
        self.shown.lock().unwrap().clone()
    }

    /// Takes or releases the lock for `mode` and `loaded` servers. Returns the new status when what it
    /// shows changed (the caller sends it to the clients), `None` when it did not, or when another
    /// update is still under way.
    pub async fn update(&self, mode: PreventSleep, loaded: usize) -> Option<AwakeStatus> {
        let Ok(mut inner) = self.inner.try_lock() else {
            return None;
        };
        if inner.closed {
            return None;
        }
        let (want, reason) = decide(mode, loaded);
        if !want {
            inner.hold = None;
            inner.failed_at = None;
            inner.error = None;
        } else if inner.hold.is_none()
            && inner
                .failed_at
                .is_none_or(|t| t.elapsed() >= self.retry_after)
        {
            let why = match mode {
                PreventSleep::Always => "mlx-box runs with prevent_sleep = \"always\"",
                _ => "a local model server is loaded",
            };
            match self.backend.inhibit(why).await {
                Ok(h) => {
                    tracing::info!("keeping the machine awake: {reason}");
                    inner.hold = Some(h);
                    inner.failed_at = None;
                    inner.error = None;
                    inner.logged = None;
                }
                Err(e) => {
                    let e = e.to_string();
                    if inner.logged.as_deref() != Some(&e) {
                        tracing::warn!("cannot keep the machine awake: {e}");
                        inner.logged = Some(e.clone());
                    }
                    inner.failed_at = Some(Instant::now());
                    inner.error = Some(e);
                }
            }
        }
        let now = AwakeStatus {
            mode: mode_name(mode).into(),
            held: inner.hold.is_some(),
            reason,
            error: inner.error.clone(),
        };
        let mut shown = self.shown.lock().unwrap();
        if shown.as_ref() == Some(&now) {
            return None;
        }
        if let Some(before) = shown.as_ref().filter(|b| b.held && !now.held) {
            tracing::info!(
                "the machine may sleep again: {} (was: {})",
                now.reason,
                before.reason
            );
        }
        *shown = Some(now.clone());
        Some(now)
    }

    /// Releases the lock for good (at shutdown, once every server is stopped).
    pub async fn release(&self) {
        let mut inner = self.inner.lock().await;
        inner.hold = None;
        inner.closed = true;
        if let Some(s) = self.shown.lock().unwrap().as_mut() {
            s.held = false;
        }
    }
}

#[cfg(target_os = "linux")]
mod logind {
    use super::{Hold, InhibitError, InhibitFuture, SleepInhibitor, WHO};
    use std::time::Duration;

    /// logind over the system bus (`DBUS_SYSTEM_BUS_ADDRESS`, else the standard socket).
    pub struct Logind {
        pub timeout: Duration,
        /// A bus address instead of the system bus (tests).
        pub address: Option<String>,
    }

    /// The inhibitor's file descriptor: logind releases the lock when it is closed.
    struct Fd(#[allow(dead_code)] zbus::zvariant::OwnedFd);

    impl SleepInhibitor for Logind {
        fn inhibit<'a>(&'a self, why: &'a str) -> InhibitFuture<'a> {
            Box::pin(async move {
                let call = async {
                    let no_bus = |e: zbus::Error| InhibitError::NoBus(e.to_string());
                    let conn = match &self.address {
                        None => zbus::Connection::system().await.map_err(no_bus)?,
                        Some(a) => zbus::connection::Builder::address(a.as_str())
                            .map_err(no_bus)?
                            .build()
                            .await
                            .map_err(no_bus)?,
                    };
                    let reply = conn
                        .call_method(
                            Some("org.freedesktop.login1"),
                            "/org/freedesktop/login1",
                            Some("org.freedesktop.login1.Manager"),
                            "Inhibit",
                            &("sleep:idle", WHO, why, "block"),
                        )
                        .await
                        .map_err(|e| match &e {
                            zbus::Error::MethodError(name, _, _)
                                if matches!(
                                    name.as_str(),
                                    "org.freedesktop.DBus.Error.ServiceUnknown"
                                        | "org.freedesktop.DBus.Error.NameHasNoOwner"
                                ) =>
                            {
                                InhibitError::NoLogind(e.to_string())
                            }
                            _ => InhibitError::Refused(e.to_string()),
                        })?;
                    let fd: zbus::zvariant::OwnedFd = reply
                        .body()
                        .deserialize()
                        .map_err(|e| InhibitError::Refused(format!("its answer: {e}")))?;
                    Ok(Box::new(Fd(fd)) as Hold)
                };
                tokio::time::timeout(self.timeout, call)
                    .await
                    .map_err(|_| InhibitError::Timeout(self.timeout))?
            })
        }
    }
}

#[cfg(target_os = "macos")]
mod iokit {
    //! IOKit's power assertions, through a few lines of FFI (IOKit/pwr_mgt/IOPMLib.h).
    use super::{Hold, InhibitError, InhibitFuture, SleepInhibitor};
    use std::ffi::c_void;

    type CFStringRef = *const c_void;
    type IOPMAssertionID = u32;
    type IOReturn = i32;
    const K_IOPM_ASSERTION_LEVEL_ON: u32 = 255;
    const K_CF_STRING_ENCODING_UTF8: u32 = 0x0800_0100;

    #[link(name = "CoreFoundation", kind = "framework")]
    extern "C" {
        fn CFStringCreateWithBytes(
            alloc: *const c_void,
            bytes: *const u8,
            num_bytes: isize,
            encoding: u32,
            is_external_representation: u8,
        ) -> CFStringRef;
        fn CFRelease(cf: *const c_void);
    }

    #[link(name = "IOKit", kind = "framework")]
    extern "C" {
        fn IOPMAssertionCreateWithName(
            assertion_type: CFStringRef,
            level: u32,
            name: CFStringRef,
            id: *mut IOPMAssertionID,
        ) -> IOReturn;
        fn IOPMAssertionRelease(id: IOPMAssertionID) -> IOReturn;
    }

    /// A CFString made from `s`, released on drop.
    struct CfString(CFStringRef);

    impl CfString {
        fn new(s: &str) -> Option<CfString> {
            // SAFETY: the bytes are valid UTF-8 of the given length; a null allocator is the default one.
            let r = unsafe {
                CFStringCreateWithBytes(
                    std::ptr::null(),
                    s.as_ptr(),
                    s.len() as isize,
                    K_CF_STRING_ENCODING_UTF8,
                    0,
                )
            };
            (!r.is_null()).then_some(CfString(r))
        }
    }

    impl Drop for CfString {
        fn drop(&mut self) {
            // SAFETY: made by CFStringCreateWithBytes (a +1 reference), released once.
            unsafe { CFRelease(self.0) }
        }
    }

    /// `PreventUserIdleSystemSleep`: the system does not idle-sleep; the display may.
    pub struct Assertion;

    struct Held(IOPMAssertionID);

    impl Drop for Held {
        fn drop(&mut self) {
            // SAFETY: an id IOPMAssertionCreateWithName returned, released once.
            unsafe {
                IOPMAssertionRelease(self.0);
            }
        }
    }

    impl SleepInhibitor for Assertion {
        fn inhibit<'a>(&'a self, why: &'a str) -> InhibitFuture<'a> {
            Box::pin(async move {
                let kind = CfString::new("PreventUserIdleSystemSleep");
                let name = CfString::new(&format!("mlx-box: {why}"));
                let (Some(kind), Some(name)) = (kind, name) else {
                    return Err(InhibitError::Assertion(-1));
                };
                let mut id: IOPMAssertionID = 0;
                // SAFETY: two valid CFStrings and a valid out pointer.
                let rc = unsafe {
                    IOPMAssertionCreateWithName(kind.0, K_IOPM_ASSERTION_LEVEL_ON, name.0, &mut id)
                };
                if rc != 0 {
                    return Err(InhibitError::Assertion(rc));
                }
                Ok(Box::new(Held(id)) as Hold)
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;

    /// Counts the locks taken and the locks held; fails while `fail` is set.
    #[derive(Clone, Default)]
    struct Fake {
        taken: Arc<AtomicUsize>,
        live: Arc<AtomicUsize>,
        fail: Arc<AtomicBool>,
        whys: Arc<Mutex<Vec<String>>>,
    }

    struct FakeHold(Arc<AtomicUsize>);

    impl Drop for FakeHold {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }

    impl SleepInhibitor for Fake {
        fn inhibit<'a>(&'a self, why: &'a str) -> InhibitFuture<'a> {
            Box::pin(async move {
                self.taken.fetch_add(1, Ordering::SeqCst);
                self.whys.lock().unwrap().push(why.to_string());
                if self.fail.load(Ordering::SeqCst) {
                    return Err(InhibitError::NoBus("no such file".into()));
                }
                self.live.fetch_add(1, Ordering::SeqCst);
                Ok(Box::new(FakeHold(self.live.clone())) as Hold)
            })
        }
    }

    fn live(f: &Fake) -> usize {
        f.live.load(Ordering::SeqCst)
    }

    #[tokio::test]
    async fn serving_holds_the_lock_while_a_server_is_loaded_and_only_then() {
        let f = Fake::default();
        let a = Awake::new(Box::new(f.clone()));
        assert_eq!(a.status(), None);
        let s = a.update(PreventSleep::Serving, 0).await.unwrap();
        assert!(!s.held && s.error.is_none());
        assert_eq!(s.line(), "the machine may sleep: no server loaded");
        assert_eq!(live(&f), 0);
        let s = a.update(PreventSleep::Serving, 3).await.unwrap();
        assert!(s.held);
        assert_eq!(s.line(), "keeping the machine awake: 3 servers loaded");
        assert_eq!(live(&f), 1);
        // Unchanged: no event, no second lock.
        assert_eq!(a.update(PreventSleep::Serving, 3).await, None);
        // Fewer servers: the same lock, a new reason.
        let s = a.update(PreventSleep::Serving, 1).await.unwrap();
        assert_eq!(s.reason, "1 server loaded");
        assert_eq!((f.taken.load(Ordering::SeqCst), live(&f)), (1, 1));
        // The last one unloaded: released.
        let s = a.update(PreventSleep::Serving, 0).await.unwrap();
        assert!(!s.held);
        assert_eq!(live(&f), 0);
        assert_eq!(a.status().unwrap(), s);
        assert_eq!(
            f.whys.lock().unwrap().as_slice(),
            ["a local model server is loaded"]
        );
    }

    #[tokio::test]
    async fn always_holds_with_nothing_loaded_and_never_holds_nothing() {
        let f = Fake::default();
        let a = Awake::new(Box::new(f.clone()));
        let s = a.update(PreventSleep::Always, 0).await.unwrap();
        assert!(s.held && s.mode == "always");
        assert_eq!(live(&f), 1);
        let s = a.update(PreventSleep::Never, 5).await.unwrap();
        assert!(!s.held && s.mode == "never");
        assert_eq!(s.reason, "prevent_sleep = \"never\"");
        assert_eq!(live(&f), 0);
        a.update(PreventSleep::Never, 7).await;
        assert_eq!(f.taken.load(Ordering::SeqCst), 1);
        // A change of mode while held keeps the one lock.
        a.update(PreventSleep::Serving, 2).await;
        a.update(PreventSleep::Always, 2).await;
        assert_eq!((f.taken.load(Ordering::SeqCst), live(&f)), (2, 1));
        a.release().await;
        assert_eq!(live(&f), 0);
        assert!(!a.status().unwrap().held);
        assert_eq!(a.update(PreventSleep::Always, 2).await, None);
        assert_eq!(live(&f), 0, "released for good");
    }

    #[tokio::test]
    async fn a_lock_that_cannot_be_taken_is_reported_and_tried_again_later_not_every_tick() {
        let f = Fake::default();
        f.fail.store(true, Ordering::SeqCst);
        let a = Awake::new(Box::new(f.clone()));
        let s = a.update(PreventSleep::Serving, 2).await.unwrap();
        assert!(!s.held);
        assert_eq!(
            s.line(),
            "cannot keep the machine awake: no system bus (no such file)"
        );
        for _ in 0..5 {
            assert_eq!(a.update(PreventSleep::Serving, 2).await, None);
        }
        assert_eq!(f.taken.load(Ordering::SeqCst), 1, "one try per RETRY_AFTER");
        // Nothing wanted any more: no error to show; wanted again: tried at once.
        let s = a.update(PreventSleep::Serving, 0).await.unwrap();
        assert_eq!(s.error, None);
        f.fail.store(false, Ordering::SeqCst);
        assert!(a.update(PreventSleep::Serving, 1).await.unwrap().held);
        assert_eq!(f.taken.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_failed_lock_is_tried_again_after_the_retry_delay() {
        let f = Fake::default();
        f.fail.store(true, Ordering::SeqCst);
        let a = Awake::new(Box::new(f.clone())).with_retry(Duration::from_millis(20));
        a.update(PreventSleep::Always, 0).await;
        f.fail.store(false, Ordering::SeqCst);
        assert_eq!(a.update(PreventSleep::Always, 0).await, None);
        tokio::time::sleep(Duration::from_millis(30)).await;
        let s = a.update(PreventSleep::Always, 0).await.unwrap();
        assert!(s.held && s.error.is_none());
        assert_eq!(f.taken.load(Ordering::SeqCst), 2);
    }

    /// The real logind backend with no system bus at all: a typed error, quickly, never a panic.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn logind_without_a_system_bus_is_a_typed_error() {
        let dir = tempfile::tempdir().unwrap();
        let b = logind::Logind {
            timeout: BUS_TIMEOUT,
            address: Some(format!("unix:path={}", dir.path().join("no-bus").display())),
        };
        let t0 = Instant::now();
        let e = b.inhibit("test").await.err().unwrap();
        assert!(matches!(e, InhibitError::NoBus(_)), "{e}");
        assert!(t0.elapsed() <= BUS_TIMEOUT + Duration::from_secs(1));
    }
}
