//! The client to the backends: per proxy thread, a pool of HTTP/1.1 connections per upstream (a local
//! backend port, or a pool member's frontend on another Mac), made of
//! hyper's connection-level `SendRequest`s. hyper-util's pooled client did the same behind a lock, a map
//! and a checkout future per request; each proxy thread only ever talks to its own connections, so a
//! thread-local list is enough (the profile showed the pool among the costs that set the proxy behind
//! nginx).
//!
//! A connection goes back to the pool as soon as the response head is in; it is taken again only once it
//! is ready (the previous response body has been read to the end). A request that could not be written
//! (the connection had closed meanwhile) is retried once on a new connection: nothing was sent, so this is
//! safe for any method. A request that was written is never retried.

use axum::body::Body;
use axum::http::{header, HeaderValue, Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Idle connections kept per upstream and proxy thread.
const MAX_IDLE: usize = 64;
/// A connection to another Mac must be made within this (a local one is made at once or refused).
const REMOTE_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Upstream {
    /// `127.0.0.1:port`: a service's own server.
    Local(u16),
    /// `HOST:PORT`: a pool member's frontend on another Mac.
    Remote(Arc<str>),
}

impl std::fmt::Display for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Upstream::Local(p) => write!(f, "127.0.0.1:{p}"),
            Upstream::Remote(a) => f.write_str(a),
        }
    }
}

thread_local! {
    static POOL: RefCell<HashMap<Upstream, Vec<SendRequest<Body>>>> = RefCell::new(HashMap::new());
}

#[derive(Debug, thiserror::Error)]
pub(super) enum BackendError {
    #[error("cannot connect to {to}: {source}")]
    Connect {
        to: Upstream,
        source: std::io::Error,
    },
    #[error("{0}")]
    Http(#[from] hyper::Error),
}

/// A ready connection to `to` from this thread's pool, if one is idle. Closed ones are dropped.
fn checkout(to: &Upstream) -> Option<SendRequest<Body>> {
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        let list = p.get_mut(to)?;
        list.retain(|s| !s.is_closed());
        let i = list.iter().position(|s| s.is_ready())?;
        Some(list.swap_remove(i))
    })
}

fn checkin(to: &Upstream, s: SendRequest<Body>) {
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        if !p.contains_key(to) {
            p.insert(to.clone(), vec![]);
        }
        let Some(list) = p.get_mut(to) else { return };
        if list.len() < MAX_IDLE {
            list.push(s);
        }
    });
}

async fn connect(to: &Upstream) -> Result<SendRequest<Body>, BackendError> {
    let failed = |source| BackendError::Connect {
        to: to.clone(),
        source,
    };
    let stream = match to {
        Upstream::Local(port) => tokio::net::TcpStream::connect(("127.0.0.1", *port)).await,
        Upstream::Remote(addr) => {
            match tokio::time::timeout(
                REMOTE_CONNECT_TIMEOUT,
                tokio::net::TcpStream::connect(&**addr),
            )
            .await
            {
                Ok(r) => r,
                Err(_) => Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no answer within 3 s",
                )),
            }
        }
    }
    .map_err(failed)?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    // The connection runs on this proxy thread, beside the requests that use it.
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// Sends `req` (origin-form URI) to `to` and returns the response head; its body streams.
pub(super) async fn send(
    to: &Upstream,
    host: &HeaderValue,
    mut req: Request<Body>,
) -> Result<Response<Incoming>, BackendError> {
    req.headers_mut().insert(header::HOST, host.clone());
    let mut retried = false;
    loop {
        let (mut sender, pooled) = match checkout(to) {
            Some(s) => (s, true),
            None => (connect(to).await?, false),
        };
        match sender.try_send_request(req).await {
            Ok(resp) => {
                checkin(to, sender);
                return Ok(resp);
            }
            Err(mut e) => match e.take_message() {
                // Not written (a pooled connection that had just closed): once more, on a new one.
                Some(back) if pooled && !retried => {
                    req = back;
                    retried = true;
                }
                _ => return Err(e.into_error().into()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// A keep-alive backend that answers each request on a connection, then closes every connection after
    /// `per_conn` answers: the pool reuses connections and survives their closing.
    fn backend(per_conn: usize) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let conns = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let c = conns.clone();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { return };
                c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    for _ in 0..per_conn {
                        let mut got = Vec::new();
                        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                            match s.read(&mut buf) {
                                Ok(0) | Err(_) => return,
                                Ok(n) => got.extend_from_slice(&buf[..n]),
                            }
                        }
                        let host = String::from_utf8_lossy(&got).contains("\r\nhost: 127.0.0.1:");
                        let body = if host { "ok" } else { "no-host" };
                        let _ = write!(
                            s,
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                    }
                });
            }
        });
        (port, conns)
    }

    async fn get(port: u16) -> Result<String, BackendError> {
        use http_body_util::BodyExt;
        let req = Request::get("/v1/models").body(Body::empty()).unwrap();
        let host = HeaderValue::from_str(&format!("127.0.0.1:{port}")).unwrap();
        let resp = send(&Upstream::Local(port), &host, req).await?;
        let b = resp.into_body().collect().await?.to_bytes();
        Ok(String::from_utf8_lossy(&b).into_owned())
    }

    #[tokio::test(flavor = "current_thread")]
    async fn connections_are_reused_and_closed_ones_replaced() {
        let (port, conns) = backend(3);
        for _ in 0..9 {
            assert_eq!(get(port).await.unwrap(), "ok", "Host is set");
        }
        // 9 requests, 3 per connection: 3 connections, maybe one more where a close raced a request.
        let n = conns.load(std::sync::atomic::Ordering::SeqCst);
        assert!((3..=5).contains(&n), "{n} connections");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_closed_port_is_a_connect_error() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        assert!(matches!(get(port).await, Err(BackendError::Connect { .. })));
    }
}
