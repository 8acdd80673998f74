//! Load shapes: closed loop (N requests always in flight) and open loop (Poisson arrivals at a rate), and
//! the prompts, each with a random prefix so a server's prompt cache cannot fake a short TTFT.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PROMPTS: &[&str] = &[
    "Explain in a few sentences why the sky is blue.",
    "Write a short story about a robot who learns to paint.",
    "List five practical tips for writing clear technical documentation, with one sentence each.",
    "What are the trade-offs between processes and threads? Answer in a short paragraph.",
    "Describe how a hash map works to a new programmer.",
    "Summarise the causes of the French Revolution in a few sentences.",
    "Give a recipe for a simple tomato soup.",
    "Why do leaves change colour in autumn?",
];

/// A prefix no earlier request shares: a server's prompt cache matches prefixes, so it finds nothing.
pub fn random_prefix() -> String {
    format!("[request {:016x}]", rand::random::<u64>())
}

/// Prompt number `i` of a run, behind a random prefix.
pub fn prompt(i: usize) -> String {
    format!("{} {}", random_prefix(), PROMPTS[i % PROMPTS.len()])
}

/// How requests are sent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Load {
    /// Closed loop: `n` workers, each sends its next request when its previous one ends.
    Closed(u32),
    /// Open loop: arrivals at this mean rate (req/s), exponential gaps, however many are in flight.
    Poisson(f64),
}

/// What a level driver returns: the outputs in request order, and the most requests seen in flight.
pub struct Driven<T> {
    pub outputs: Vec<T>,
    pub peak_in_flight: u32,
}

/// Runs `count` requests shaped by `load`. `send(i, sent_at_ms)` sends request `i`; `sent_at_ms` is when
/// it started, ms since the level started. `done` is called after each request. A set `cancel` stops
/// new requests (those in flight finish).
pub async fn drive<T, F, Fut>(
    load: Load,
    count: u32,
    send: F,
    done: Arc<dyn Fn() + Send + Sync>,
    cancel: Arc<AtomicBool>,
) -> Driven<T>
where
    T: Send + 'static,
    F: Fn(usize, f64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = T> + Send + 'static,
{
    let t0 = Instant::now();
    let send = Arc::new(send);
    let results: Arc<Mutex<Vec<(usize, T)>>> = Arc::new(Mutex::new(Vec::new()));
    let in_flight = Arc::new(AtomicU32::new(0));
    let peak = Arc::new(AtomicU32::new(0));
    let one = {
        let (send, results, in_flight, peak, done) = (
            send.clone(),
            results.clone(),
            in_flight.clone(),
            peak.clone(),
            done.clone(),
        );
        move |i: usize| {
            let (send, results, in_flight, peak, done) = (
                send.clone(),
                results.clone(),
                in_flight.clone(),
                peak.clone(),
                done.clone(),
            );
            async move {
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                let sent_at = t0.elapsed().as_secs_f64() * 1000.0;
                let out = send(i, sent_at).await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
                results.lock().unwrap().push((i, out));
                done();
            }
        }
    };
    match load {
        Load::Closed(n) => {
            let next = Arc::new(AtomicUsize::new(0));
            let workers: Vec<_> = (0..n.max(1))
                .map(|_| {
                    let (next, one, cancel) = (next.clone(), one.clone(), cancel.clone());
                    tokio::spawn(async move {
                        loop {
                            let i = next.fetch_add(1, Ordering::SeqCst);
                            if i >= count as usize || cancel.load(Ordering::SeqCst) {
                                break;
                            }
                            one(i).await;
                        }
                    })
                })
                .collect();
            for w in workers {
                let _ = w.await;
            }
        }
        Load::Poisson(rate) => {
            let mut due = Duration::ZERO;
            let mut tasks = Vec::with_capacity(count as usize);
            for i in 0..count as usize {
                if cancel.load(Ordering::SeqCst) {
                    break;
                }
                tokio::time::sleep_until((t0 + due).into()).await;
                tasks.push(tokio::spawn(one(i)));
                due += Duration::from_secs_f64(exponential_gap(rate));
            }
            for t in tasks {
                let _ = t.await;
            }
        }
    }
    let mut outputs = std::mem::take(&mut *results.lock().unwrap());
    outputs.sort_by_key(|(i, _)| *i);
    Driven {
        outputs: outputs.into_iter().map(|(_, o)| o).collect(),
        peak_in_flight: peak.load(Ordering::SeqCst),
    }
}

/// A gap of a Poisson process of `rate` per second: −ln(U) / rate, U uniform in (0, 1].
pub fn exponential_gap(rate: f64) -> f64 {
    let u: f64 = 1.0 - rand::random::<f64>(); // (0, 1]: ln(0) never happens
    -u.ln() / rate.max(1e-9)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_never_share_a_prefix() {
        let a = prompt(0);
        let b = prompt(0);
        assert_ne!(a[..26], b[..26]);
        assert!(a.ends_with(PROMPTS[0]));
    }

    #[test]
    fn poisson_gaps_have_the_right_mean() {
        let n = 20_000;
        let mean = (0..n).map(|_| exponential_gap(4.0)).sum::<f64>() / n as f64;
        assert!((mean - 0.25).abs() < 0.02, "{mean}");
    }

    #[tokio::test]
    async fn closed_loop_keeps_n_in_flight_and_runs_every_request() {
        let counter = Arc::new(AtomicU32::new(0));
        let c = counter.clone();
        let d = drive(
            Load::Closed(4),
            10,
            |i, _| async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                i
            },
            Arc::new(move || {
                c.fetch_add(1, Ordering::SeqCst);
            }),
            Arc::new(AtomicBool::new(false)),
        )
        .await;
        assert_eq!(d.outputs, (0..10).collect::<Vec<_>>());
        assert_eq!(d.peak_in_flight, 4);
        assert_eq!(counter.load(Ordering::SeqCst), 10);
    }

    #[tokio::test]
    async fn open_loop_sends_at_the_rate() {
        let t0 = Instant::now();
        let d = drive(
            Load::Poisson(200.0),
            40,
            |_, sent| async move { sent },
            Arc::new(|| {}),
            Arc::new(AtomicBool::new(false)),
        )
        .await;
        assert_eq!(d.outputs.len(), 40);
        // 39 gaps of mean 5 ms: about 0.2 s; generous bounds for a loaded machine.
        let span = d.outputs.last().unwrap() - d.outputs.first().unwrap();
        assert!((50.0..1500.0).contains(&span), "{span}");
        assert!(t0.elapsed() < Duration::from_secs(5));
    }
}
