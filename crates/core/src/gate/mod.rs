//! The one gate every TCP listener of the daemon is built from: the proxy's ports (a service's, a pool's,
//! the one endpoint), `[metrics] listen` and the TLS control API (`[control] listen`). Nothing else in the
//! daemon accepts a connection (`crates/core/tests/one_gate.rs` fails on an `accept`, `axum::serve` or
//! `serve_connection` outside this module). A listener declares what it is ([`Spec`]) and serves through
//! a [`Handler`]; the gate gives each of them, with no way to leave a part out:
//!
//! - **Descriptors**: one process-wide budget of client connections (what the open-files limit leaves after
//!   a reserve for logs, spawns, the control socket and the backends), shared by every listener: a flood
//!   of idle sockets on one port costs the daemon those sockets' answers, never its ability to restart a
//!   server or answer the CLI.
//! - **Caps**: per listener, and per peer address (so one host cannot take a listener's every slot).
//!   A connection over a cap is answered at once and closed (a 503 in plain HTTP; a TLS listener closes).
//! - **Timeouts**: a TLS handshake within [`HANDSHAKE_TIMEOUT`]; a request head within
//!   [`HEADER_READ_TIMEOUT`] of the connection being ready for it (this is also the idle keep-alive
//!   timeout); request heads of at most [`MAX_HEAD`] bytes.
//! - **The door** (`door.rs`): `Host`, `Origin` and `Sec-Fetch-Site`, before the handler sees the
//!   request.
//! - **Drain**: a listener replaced or removed stops accepting at once; its connections finish the request
//!   in flight and close, and whatever is still open after [`DRAIN_DEADLINE`] is cut.
//!
//! What is the listener's own: its credentials (API keys with a scope, or access tokens with a role, both
//! checked in constant time by `proxy::auth` and `remote::tokens`), its body limits and its error shape.

pub mod door;

use axum::body::Body;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::Response;
use std::collections::HashMap;
use std::future::Future;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::Poll;
use std::time::Duration;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

pub use door::{Cors, Door, Stop};

/// A request head must arrive within this (Envoy's and nginx's are 60 s; 10 s is plenty on a LAN).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A TLS client must finish its handshake within this.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections of a replaced listener may finish what they are doing for this long.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(30);
/// The largest request head (request line and headers) read: hyper answers 431 beyond it.
pub const MAX_HEAD: usize = 64 * 1024;
/// File descriptors kept free of client connections: logs, spawns, the control socket, the state file.
const FD_RESERVE: u64 = 64;

const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 116\r\n\r\n{\"error\":{\"message\":\"too many open connections to this mlx-box listener\",\"type\":\"service_unavailable\",\"code\":503}}\r\n";

/// The process-wide budget of client connections, every listener together: each costs a descriptor, and
/// one more for the backend while a request is in flight; the reserve stays free whatever clients do.
fn connection_budget() -> &'static Arc<Semaphore> {
    static BUDGET: OnceLock<Arc<Semaphore>> = OnceLock::new();
    BUDGET.get_or_init(|| {
        let soft = crate::limits::open_files_limit().unwrap_or(1024);
        let n = (soft.saturating_sub(FD_RESERVE) / 2).clamp(4, 1 << 16);
        Arc::new(Semaphore::new(n as usize))
    })
}

/// Where a listener's connections are served.
#[derive(Debug, Clone, Copy)]
pub enum Threads {
    /// These runtimes (the proxy threads), each accepting, connections dealt round-robin; never empty.
    Dealt(&'static [tokio::runtime::Handle]),
    /// The runtime that started the listener (the daemon's).
    Here,
}

/// What a listener is: the gate's limits for it.
#[derive(Clone)]
pub struct Spec {
    /// For logs and refusals: `[services.chat] port`, `[metrics] listen`…
    pub name: String,
    /// Connections at once on this listener.
    pub max_connections: usize,
    /// Connections at once from one peer address.
    pub per_peer: usize,
    /// Served over TLS (the handshake is timed out by the gate).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub threads: Threads,
}

impl Spec {
    /// A proxy frontend (a service's port, a pool's, the one endpoint): 512 connections (nginx's
    /// `worker_connections` default), 256 from one peer.
    pub fn frontend(name: String, runtimes: &'static [tokio::runtime::Handle]) -> Spec {
        Spec {
            name,
            max_connections: 512,
            per_peer: 256,
            tls: None,
            threads: Threads::Dealt(runtimes),
        }
    }

    /// `[metrics] listen`: a scraper or two.
    pub fn metrics() -> Spec {
        Spec {
            name: "[metrics] listen".into(),
            max_connections: 64,
            per_peer: 16,
            tls: None,
            threads: Threads::Here,
        }
    }

    /// `[control] listen`: the other Macs' daemons and CLIs, over TLS.
    pub fn control(tls: Arc<rustls::ServerConfig>) -> Spec {
        Spec {
            name: "[control] listen".into(),
            max_connections: 256,
            per_peer: 32,
            tls: Some(tls),
            threads: Threads::Here,
        }
    }
}

/// What a listener serves. The gate calls [`Handler::door`] and [`door::check`] before
/// [`Handler::handle`]; a refusal is written by [`Handler::refuse`], in the listener's API's shape.
pub trait Handler: Clone + Send + Sync + 'static {
    /// What the door checks for this listener now (whether it is open can change with the keys).
    fn door(&self) -> Door<'_>;
    /// A refusal in this listener's error shape for the request's `path` (an agent API's route answers
    /// in that API's shape), counted where it counts.
    fn refuse(&self, status: StatusCode, msg: &str, path: &str) -> Response;
    /// A connection refused over a cap (counted, where it counts).
    fn refused_connection(&self) {}
    /// A request that passed the door.
    fn handle(self, req: Request, peer: SocketAddr) -> impl Future<Output = Response> + Send;
}

/// Binds `addr` for a listener (non-blocking, as the runtimes adopt it).
pub fn bind(addr: &str) -> std::io::Result<std::net::TcpListener> {
    let l = std::net::TcpListener::bind(addr)?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// Connections open per peer address on one listener.
#[derive(Default)]
struct Peers {
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's place in its peer's share; released when the connection ends.
struct PeerSlot {
    peers: Arc<Peers>,
    ip: IpAddr,
}

impl Peers {
    fn take(self: &Arc<Self>, ip: IpAddr, cap: usize) -> Option<PeerSlot> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= cap {
            return None;
        }
        *n += 1;
        Some(PeerSlot {
            peers: self.clone(),
            ip,
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut open = self.peers.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// A connection's places: in the process budget, the listener's cap and its peer's share.
type Permits = (OwnedSemaphorePermit, OwnedSemaphorePermit, PeerSlot);

/// Every listener open now, by a number of its own (the daemon's status lists them).
fn registry() -> &'static Mutex<std::collections::BTreeMap<u64, crate::api::Listening>> {
    static R: OnceLock<Mutex<std::collections::BTreeMap<u64, crate::api::Listening>>> =
        OnceLock::new();
    R.get_or_init(Default::default)
}

/// The TCP listeners open now, in the order they opened.
pub fn listening() -> Vec<crate::api::Listening> {
    registry()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .values()
        .cloned()
        .collect()
}

/// One bound listener. Dropping it stops accepting at once and drains its connections.
pub struct Listener {
    accept: Vec<tokio::task::JoinHandle<()>>,
    _drain: watch::Sender<bool>,
    id: u64,
}

impl Listener {
    /// Serves `listener` (from [`bind`]) with `handler`, on the threads `spec` names.
    pub fn start<H: Handler>(listener: std::net::TcpListener, spec: Spec, handler: H) -> Listener {
        let (drain, rx) = watch::channel(false);
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        registry().lock().unwrap_or_else(|e| e.into_inner()).insert(
            id,
            crate::api::Listening {
                name: spec.name.clone(),
                address: listener
                    .local_addr()
                    .map(|a| a.to_string())
                    .unwrap_or_default(),
                tls: spec.tls.is_some(),
            },
        );
        let gate = Arc::new(Gate {
            per_listener: Arc::new(Semaphore::new(spec.max_connections)),
            peers: Default::default(),
            acceptor: spec.tls.clone().map(tokio_rustls::TlsAcceptor::from),
            spec,
        });
        let mut accept = vec![];
        let runtimes: Vec<tokio::runtime::Handle> = match gate.spec.threads {
            Threads::Dealt(all) => all.to_vec(),
            Threads::Here => vec![tokio::runtime::Handle::current()],
        };
        for rt in runtimes {
            let Ok(l) = listener.try_clone() else {
                continue;
            };
            let (gate, handler, rx) = (gate.clone(), handler.clone(), rx.clone());
            accept.push(rt.spawn(async move {
                if let Ok(l) = tokio::net::TcpListener::from_std(l) {
                    gate.accept_loop(l, handler, rx).await;
                }
            }));
        }
        Listener {
            accept,
            _drain: drain,
            id,
        }
    }

    /// Stops accepting and waits until the socket is closed (so its port can be bound again); the open
    /// connections drain on their own.
    pub async fn close(mut self) {
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
        registry()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
    }
}

struct Gate {
    spec: Spec,
    per_listener: Arc<Semaphore>,
    peers: Arc<Peers>,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
}

impl Gate {
    async fn accept_loop<H: Handler>(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        handler: H,
        drain: watch::Receiver<bool>,
    ) {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(s) => s,
                // Out of descriptors (EMFILE/ENFILE) and the like: the connection stays in the backlog;
                // wait rather than spin.
                Err(e) => {
                    tracing::debug!(listener = %self.spec.name, "accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Some(permits) = self.admit(peer.ip()) else {
                handler.refused_connection();
                if self.acceptor.is_none() {
                    refuse(stream);
                }
                continue;
            };
            let _ = stream.set_nodelay(true);
            let (gate, handler, drain) = (self.clone(), handler.clone(), drain.clone());
            match self.spec.threads {
                Threads::Dealt(all) if !all.is_empty() => {
                    // Dealt round-robin: the thread that wins the accepts (often one takes a whole
                    // burst) would otherwise serve them all while the others idle.
                    let Ok(std) = stream.into_std() else {
                        continue;
                    };
                    next_runtime(all).spawn(async move {
                        if let Ok(stream) = tokio::net::TcpStream::from_std(std) {
                            gate.serve(stream, peer, handler, drain, permits).await;
                        }
                    });
                }
                Threads::Here | Threads::Dealt(_) => {
                    tokio::spawn(gate.serve(stream, peer, handler, drain, permits));
                }
            }
        }
    }

    /// A place for a connection from `ip`, or `None` over a cap.
    fn admit(&self, ip: IpAddr) -> Option<Permits> {
        let budget = connection_budget().clone().try_acquire_owned().ok()?;
        let listener = self.per_listener.clone().try_acquire_owned().ok()?;
        let peer = self.peers.take(ip, self.spec.per_peer)?;
        Some((budget, listener, peer))
    }

    async fn serve<H: Handler>(
        self: Arc<Self>,
        stream: tokio::net::TcpStream,
        peer: SocketAddr,
        handler: H,
        drain: watch::Receiver<bool>,
        _permits: Permits,
    ) {
        match &self.acceptor {
            None => serve_connection(stream, peer, handler, drain).await,
            Some(acceptor) => {
                let Ok(Ok(tls)) =
                    tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                else {
                    return;
                };
                serve_connection(tls, peer, handler, drain).await
            }
        }
    }
}

/// The proxy thread the next connection goes to.
fn next_runtime(all: &'static [tokio::runtime::Handle]) -> &'static tokio::runtime::Handle {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    &all[NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % all.len()]
}

/// A 503 written without waiting (a socket just accepted has room for it), then closed.
fn refuse(stream: tokio::net::TcpStream) {
    if let Ok(s) = stream.into_std() {
        let _ = (&s).write(REFUSAL);
    }
}

/// One request through the door, then to the handler.
async fn pass<H: Handler>(handler: H, req: Request, peer: SocketAddr) -> Response {
    match door::check(handler.door(), &req) {
        None => handler.handle(req, peer).await,
        Some(Stop::Answered(r)) => r,
        Some(Stop::Refused(code, msg)) => handler.refuse(code, &msg, req.uri().path()),
    }
}

async fn serve_connection<H, IO>(
    io: IO,
    peer: SocketAddr,
    handler: H,
    mut drain: watch::Receiver<bool>,
) where
    H: Handler,
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let h = handler.clone();
        async move { Ok::<_, std::convert::Infallible>(pass(h, req.map(Body::new), peer).await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    // Replies are copied into one buffer and sent with one `write`: a reply here is a small head and a
    // few small chunks (tokens), where a `writev` of 3-5 pieces cost 2-8 % more CPU per request in the
    // A/B of docs/PERFORMANCE.md; a large body pays one extra memcpy.
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_header_size(MAX_HEAD)
        .writev(false);
    let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(io), svc);
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

/// Binds the control socket (a Unix socket in the state dir; the daemon makes it mode 0600).
pub fn bind_unix(path: &std::path::Path) -> std::io::Result<tokio::net::UnixListener> {
    tokio::net::UnixListener::bind(path)
}

/// Serves the control socket (mode 0600 in the state dir: only its owner reaches it, so no door and no
/// token). Served here so that every listener of the daemon is found in this module.
pub async fn serve_unix(listener: tokio::net::UnixListener, app: axum::Router) {
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!("control API stopped: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// One peer cannot take a listener's every place; its places come back when its
    /// connections close.
    #[test]
    fn a_peer_has_a_share_of_a_listener() {
        let peers = Arc::new(Peers::default());
        let (a, b): (IpAddr, IpAddr) =
            ("198.18.0.1".parse().unwrap(), "198.18.0.2".parse().unwrap());
        let held: Vec<PeerSlot> = (0..4).filter_map(|_| peers.take(a, 4)).collect();
        assert_eq!(held.len(), 4);
        assert!(peers.take(a, 4).is_none(), "over its share");
        assert!(peers.take(b, 4).is_some(), "another peer is served");
        drop(held);
        assert!(peers.take(a, 4).is_some(), "its places came back");
        assert!(peers.open.lock().unwrap().len() <= 1);
    }
}
