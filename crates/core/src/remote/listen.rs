//! The remote control API's face: served by the gate (`crate::gate`: TLS with a 5 s handshake, a
//! connection cap per listener and per peer, a header-read timeout), then the token check before the
//! control router. A `read` token passes every GET (status, logs, events, config, history, metrics) and
//! the requests that change nothing (`Request::changes`); anything else needs `admin`. The router sees
//! the caller's role (`Role` in the request's extensions), so what a `read` token reads is redacted
//! (keys, tokens, `env` values: `control::server`).

use super::tokens::{Check, Tokens};
use super::Role;
use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use axum::Router;
use mlxbox_api::control::{Method, Request};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tower::ServiceExt;

/// The largest body read to decide what a request is (the control API's own limit).
const MAX_BODY: usize = 16 << 20;

/// What the `[control] listen` port serves.
#[derive(Clone)]
pub struct ControlFace {
    app: Router,
    tokens: Arc<Tokens>,
    cors: crate::gate::Cors,
}

impl ControlFace {
    pub fn new(app: Router, tokens: Arc<Tokens>) -> Self {
        ControlFace {
            app,
            tokens,
            cors: Default::default(),
        }
    }
}

impl crate::gate::Handler for ControlFace {
    fn door(&self) -> crate::gate::Door<'_> {
        // Never open: every request carries a token. No browser page may call it (no CORS origin).
        crate::gate::Door {
            loopback: false,
            open: false,
            cors: &self.cors,
            domain_name: None,
        }
    }

    fn refuse(&self, status: StatusCode, msg: &str, _path: &str) -> Response {
        refuse(status, msg)
    }

    async fn handle(self, req: axum::extract::Request, peer: SocketAddr) -> Response {
        handle(self.app, &self.tokens, peer, req).await
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
                "the access tokens cannot be read on this host: its token store is damaged or unreadable (see `mlx-box status` there); fix or remove it, then `mlx-box keys reload`",
            )
        }
    };
    let mut req = if role == Role::Admin || req.method() == axum::http::Method::GET {
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
    req.extensions_mut().insert(role);
    match app.oneshot(req).await {
        Ok(r) => r,
        Err(never) => match never {},
    }
}

fn refuse(code: StatusCode, msg: &str) -> Response {
    use mlxbox_api::control::{ApiError, ErrorKind};
    crate::control::server::fail(ApiError::new(ErrorKind::of_status(code.as_u16()), msg))
}
