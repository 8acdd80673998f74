//! One job per service however many ask: the first caller starts it, every later one waits for the same
//! outcome, and the entry goes before the outcome is sent (so a caller after the end starts a new job).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// A job's outcome (none while it runs), shared by every waiter.
type Outcome<E> = Option<Result<(), E>>;

pub(super) struct Coalesce<E> {
    running: Arc<Mutex<HashMap<String, watch::Receiver<Outcome<E>>>>>,
}

/// The starter's end of a job: [`Finish::send`] ends it for every waiter. Dropped unsent (the job's
/// task was cancelled), the waiters see the job abandoned.
pub(super) struct Finish<E> {
    key: String,
    tx: watch::Sender<Outcome<E>>,
    running: Arc<Mutex<HashMap<String, watch::Receiver<Outcome<E>>>>>,
    outcome: Outcome<E>,
}

/// A waiter's end of a job.
pub(super) struct Waiter<E>(watch::Receiver<Outcome<E>>);

impl<E: Clone> Default for Coalesce<E> {
    fn default() -> Self {
        Coalesce {
            running: Default::default(),
        }
    }
}

impl<E: Clone> Coalesce<E> {
    /// Waits on the job running for `key`, or starts one: `start` gets the job's [`Finish`] and must
    /// not block (spawn the work). The entry is in the map before the lock is let go, so two callers
    /// never both start; `start` runs after (it may finish the job at once).
    pub fn join_or_start(&self, key: &str, start: impl FnOnce(Finish<E>)) -> Waiter<E> {
        let (tx, rx) = {
            let mut running = self.running.lock().unwrap();
            if let Some(rx) = running.get(key) {
                return Waiter(rx.clone());
            }
            let (tx, rx) = watch::channel(None);
            running.insert(key.to_string(), rx.clone());
            (tx, rx)
        };
        start(Finish {
            key: key.to_string(),
            tx,
            running: self.running.clone(),
            outcome: None,
        });
        Waiter(rx)
    }

    /// Starts a job for `key` unless one runs (then none: the caller leaves it be).
    pub fn start_if_idle(&self, key: &str) -> Option<Finish<E>> {
        let mut started = None;
        if !self.running(key) {
            self.join_or_start(key, |f| started = Some(f));
        }
        started
    }

    /// Is a job running for `key`?
    pub fn running(&self, key: &str) -> bool {
        self.running.lock().unwrap().contains_key(key)
    }
}

impl<E> Finish<E> {
    pub fn send(mut self, outcome: Result<(), E>) {
        self.outcome = Some(outcome);
    }
}

impl<E> Drop for Finish<E> {
    /// The entry goes first (this job's, not a newer one's), then the outcome: a waiter that wakes and
    /// asks again starts a new job. Dropped unsent, the waiters see the channel close.
    fn drop(&mut self) {
        if let Ok(mut running) = self.running.lock() {
            let mine = running
                .get(&self.key)
                .is_some_and(|rx| rx.same_channel(&self.tx.subscribe()));
            if mine {
                running.remove(&self.key);
            }
        }
        if let Some(o) = self.outcome.take() {
            let _ = self.tx.send(Some(o));
        }
    }
}

impl<E: Clone> Waiter<E> {
    /// The job's outcome; none when its starter went away without sending one.
    pub async fn outcome(mut self) -> Option<Result<(), E>> {
        match self.0.wait_for(|o| o.is_some()).await {
            Ok(o) => o.clone(),
            Err(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn many_callers_one_job_one_outcome() {
        let c: Arc<Coalesce<String>> = Arc::default();
        let started = Arc::new(AtomicUsize::new(0));
        let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
        let mut go_rx = Some(go_rx);
        let mut waiters = vec![];
        for _ in 0..100 {
            let s = started.clone();
            let go = &mut go_rx;
            waiters.push(c.join_or_start("chat", |finish| {
                s.fetch_add(1, Ordering::SeqCst);
                let go = go.take().expect("started once");
                tokio::spawn(async move {
                    let _ = go.await;
                    finish.send(Err("no room".into()));
                });
            }));
        }
        assert_eq!(started.load(Ordering::SeqCst), 1);
        assert!(c.running("chat"));
        go_tx.send(()).unwrap();
        for w in waiters {
            assert_eq!(w.outcome().await, Some(Err("no room".to_string())));
        }
        // Over: the next caller starts a new job.
        assert!(!c.running("chat"));
        let w = c.join_or_start("chat", |f| {
            started.fetch_add(1, Ordering::SeqCst);
            f.send(Ok(()));
        });
        assert_eq!(w.outcome().await, Some(Ok(())));
        assert_eq!(started.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_job_dropped_unsent_is_abandoned_and_frees_its_key() {
        let c: Coalesce<String> = Coalesce::default();
        let w = c.join_or_start("chat", drop);
        assert_eq!(w.outcome().await, None);
        assert!(!c.running("chat"));
    }

    #[tokio::test]
    async fn start_if_idle_does_not_start_a_second_job() {
        let c: Coalesce<String> = Coalesce::default();
        let first = c.start_if_idle("ocr").expect("idle");
        assert!(c.start_if_idle("ocr").is_none());
        let w = c.join_or_start("ocr", |_| panic!("one runs"));
        first.send(Ok(()));
        assert_eq!(w.outcome().await, Some(Ok(())));
        assert!(c.start_if_idle("ocr").is_some());
    }
}
