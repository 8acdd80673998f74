//! The remote control API's listener: TLS on every connection (a handshake has 10 s), at most
//! `MAX_CONNECTIONS` at once, a header-read timeout, then the token check before the control router.
//! A `read` token passes every GET (status, logs, events, config, history, metrics) and the requests
//! that change nothing (`Request::changes`); anything else needs `admin`.

use super::tokens::{Check, Tokens};
use super::Role;
use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use mlxbox_api::control::{Method, Request};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

const MAX_CONNECTIONS: usize = 256;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest body read to decide what a request is (the control API's own limit).
const MAX_BODY: usize = 16 << 20;

/// Serves `app` on `listener` until the task is dropped.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    tokens: Arc<Tokens>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // EMFILE and the like: wait rather than spin.
                tracing::warn!(error = %e, "remote control API: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            drop(tcp); // over the cap: closed at once
            continue;
        };
        let (acceptor, app, tokens) = (acceptor.clone(), app.clone(), tokens.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tcp.set_nodelay(true);
            let Ok(Ok(stream)) =
                tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
            else {
                return;
            };
            let svc =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let (app, tokens) = (app.clone(), tokens.clone());
                    async move {
                        Ok::<_, std::convert::Infallible>(
                            handle(app, &tokens, peer, req.map(Body::new)).await,
                        )
                    }
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn handle(
    app: Router,
    tokens: &Tokens,
    peer: SocketAddr,
    req: axum::extract::Request,
) -> Response {
    let role = match tokens.check(peer.ip(), req.headers(), Instant::now()) {
        Check::Ok(r) => r,
        Check::Denied => {
            let mut r = refuse(
                StatusCode::UNAUTHORIZED,
                "missing or wrong access token: send Authorization: Bearer <token> (made with `mlx-box tokens add` on that host)",
            );
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return r;
        }
        Check::Limited { retry_after_s } => {
            let mut r = refuse(
                StatusCode::TOO_MANY_REQUESTS,
                "too many failed attempts from this address; wait, then use a valid token",
            );
            if let Ok(v) = HeaderValue::from_str(&retry_after_s.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return r;
        }
        Check::KeysUnknown => {
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "the access tokens cannot be read from this host's keyring; unlock it there, then `mlx-box keys reload`",
            )
        }
    };
    let req = if role == Role::Admin || req.method() == axum::http::Method::GET {
        req
    } else {
        // Anything but a GET is read whole to see which request it is.
        let (parts, body) = req.into_parts();
        let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
            return refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body too large (16 MiB at most) or cut off",
            );
        };
        let method = Method::parse(parts.method.as_str());
        let decoded = method
            .and_then(|m| Request::decode(m, parts.uri.path(), parts.uri.query(), &bytes).ok());
        if decoded.is_some_and(|r| r.changes()) {
            return refuse(
                StatusCode::FORBIDDEN,
                "this token has the read role: it can see everything and change nothing; use an admin token (`mlx-box tokens add --role admin`)",
            );
        }
        axum::extract::Request::from_parts(parts, Body::from(bytes))
    };
    match app.oneshot(req).await {
        Ok(r) => r,
        Err(never) => match never {},
    }
}

fn refuse(code: StatusCode, msg: &str) -> Response {
    (
        code,
        axum::Json(mlxbox_api::ErrorReply { error: msg.into() }),
    )
        .into_response()
}
