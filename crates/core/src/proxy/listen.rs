//! The frontend listeners: accept, cap, time out and drain client connections.
//!
//! - Every proxy thread accepts on the same socket, and deals the connections it accepts round-robin to
//!   all of them.
//! - Caps: 512 connections per listener (nginx's `worker_connections` default) and, for the whole process,
//!   what the file-descriptor limit leaves after a reserve for logs, spawns and the control socket. A
//!   connection over a cap gets a 503 and is closed at once: a flood of idle connections costs the
//!   daemon nothing but those answers, and never its ability to restart a server or answer the CLI.
//! - Timeouts: the request head must arrive within 10 s of the connection being ready for it (the first
//!   request or the next keep-alive one, so this is also the idle keep-alive timeout: hyper arms the same
//!   timer while waiting for the next request).
//! - Drain: when a listener is replaced or removed (a settings edit), its connections finish the request in
//!   flight and close; whatever is still open after 30 s is cut.

use super::Target;
use axum::body::Body;
use std::future::Future;
use std::io::Write;
use std::sync::{Arc, OnceLock};
use std::task::Poll;
use std::time::Duration;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

/// A request head must arrive within this (Envoy's and nginx's are 60 s; 10 s is plenty on a LAN).
pub(super) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections of a replaced listener may finish what they are doing for this long.
pub(super) const DRAIN_DEADLINE: Duration = Duration::from_secs(30);
/// Connections per listener (nginx's `worker_connections` default).
const MAX_CONNECTIONS: usize = 512;
/// File descriptors kept free of client connections: logs, spawns, the control socket, the state file.
const FD_RESERVE: u64 = 64;

const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 116\r\n\r\n{\"error\":{\"message\":\"too many open connections to this mlx-box frontend\",\"type\":\"service_unavailable\",\"code\":503}}\r\n";

/// The process-wide budget of client connections: each costs a descriptor, and one more for the backend
/// while a request is in flight; the reserve stays free whatever the clients do.
fn connection_budget() -> &'static Arc<Semaphore> {
    static BUDGET: OnceLock<Arc<Semaphore>> = OnceLock::new();
    BUDGET.get_or_init(|| {
        let soft = crate::limits::open_files_limit().unwrap_or(1024);
        let n = (soft.saturating_sub(FD_RESERVE) / 2).clamp(4, 1 << 16);
        Arc::new(Semaphore::new(n as usize))
    })
}

/// One bound frontend socket served by every proxy thread. Dropping it stops accepting at once and drains
/// its connections.
pub(super) struct Listener {
    accept: Vec<tokio::task::JoinHandle<()>>,
    _drain: watch::Sender<bool>,
}

impl Listener {
    pub(super) fn start(listener: std::net::TcpListener, front: Target) -> Listener {
        let (drain, rx) = watch::channel(false);
        let per_listener = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let mut accept = vec![];
        for rt in super::proxy_runtimes() {
            let Ok(l) = listener.try_clone() else {
                continue;
            };
            let (front, per_listener, rx) = (front.clone(), per_listener.clone(), rx.clone());
            accept.push(rt.spawn(async move {
                if let Ok(l) = tokio::net::TcpListener::from_std(l) {
                    accept_loop(l, front, per_listener, rx).await;
                }
            }));
        }
        Listener {
            accept,
            _drain: drain,
        }
    }

    /// Stops accepting and waits until the socket is closed (so its port can be bound again); the open
    /// connections drain on their own.
    pub(super) async fn close(mut self) {
        for t in std::mem::take(&mut self.accept) {
            t.abort();
            let _ = t.await;
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        for t in &self.accept {
            t.abort();
        }
    }
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    front: Target,
    per_listener: Arc<Semaphore>,
    drain: watch::Receiver<bool>,
) {
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            // Out of descriptors (EMFILE/ENFILE) and the like: the connection stays in the backlog; wait
            // rather than spin.
            Err(e) => {
                tracing::debug!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let permits = (
            connection_budget().clone().try_acquire_owned(),
            per_listener.clone().try_acquire_owned(),
        );
        let (Ok(a), Ok(b)) = permits else {
            front
                .counters()
                .refused_connections
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            refuse(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        // Connections are dealt round-robin to the proxy threads: the thread that wins the accepts
        // (often one takes a whole burst) would otherwise serve them all while the others idle.
        let Ok(std) = stream.into_std() else {
            continue;
        };
        let (front, drain) = (front.clone(), drain.clone());
        next_runtime().spawn(async move {
            if let Ok(stream) = tokio::net::TcpStream::from_std(std) {
                serve_connection(stream, front, drain, (a, b)).await;
            }
        });
    }
}

/// The proxy thread the next connection goes to.
fn next_runtime() -> &'static tokio::runtime::Handle {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let all = super::proxy_runtimes();
    &all[NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % all.len()]
}

/// A 503 written without waiting (a socket just accepted has room for it), then closed.
fn refuse(stream: tokio::net::TcpStream) {
    if let Ok(s) = stream.into_std() {
        let _ = (&s).write(REFUSAL);
    }
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    front: Target,
    mut drain: watch::Receiver<bool>,
    _permits: (OwnedSemaphorePermit, OwnedSemaphorePermit),
) {
    let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let f = front.clone();
        async move { Ok::<_, std::convert::Infallible>(f.handle(req.map(Body::new)).await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    // Replies are copied into one buffer and sent with one `write`: a reply here is a small head and a
    // few small chunks (tokens), where a `writev` of 3-5 pieces cost 2-8 % more CPU per request in the
    // A/B of docs/PERFORMANCE.md; a large body pays one extra memcpy.
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .writev(false);
    let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
    tokio::pin!(conn);
    // The drain signal (the listener is gone) is waited for once, and then read as one atomic load each
    // time the connection wakes: its waiter keeps the task's waker, and a `select!` would lock its list
    // on every wake-up of every request.
    let probe = drain.clone();
    let mut signal = std::pin::pin!(drain.changed());
    let mut waiting = false;
    let finished = std::future::poll_fn(|cx| {
        if conn.as_mut().poll(cx).is_ready() {
            return Poll::Ready(true);
        }
        if !waiting {
            waiting = true;
            return signal.as_mut().poll(cx).map(|_| false);
        }
        match probe.has_changed() {
            Ok(false) => Poll::Pending,
            _ => Poll::Ready(false),
        }
    })
    .await;
    if finished {
        return;
    }
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(DRAIN_DEADLINE, conn).await;
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_refusal_is_well_formed() {
        let text = std::str::from_utf8(super::REFUSAL).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(body.len(), len);
        serde_json::from_str::<serde_json::Value>(body.trim_end()).unwrap();
    }
}
