//! The door of every listener: what a request's `Host`, `Origin` and `Sec-Fetch-Site` say about who sent
//! it, checked before any credential or body is read. The gate (`super`) runs [`check`] on every request
//! of every TCP listener, so no listener can forget it.
//!
//! - `Host` (an open loopback listener: no credential needed): a name that is not this machine's → 403.
//!   A page whose DNS name was rebound to 127.0.0.1 sends its own name.
//! - `Sec-Fetch-Site: cross-site | same-site` from an origin not in `cors_origins` → 403: a page on
//!   another site (an `<img src>`, a no-cors fetch, a form) reaches no listener, even with a GET that
//!   carries no `Origin`.
//! - `Origin` not in `cors_origins` → 403; preflights (`OPTIONS`) are answered here and never forwarded.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;

/// What the door of one listener checks.
#[derive(Debug, Clone, Copy)]
pub struct Door<'a> {
    /// The listener is on a loopback address.
    pub loopback: bool,
    /// It serves without a credential now (no key configured): only then is `Host` checked, since a
    /// rebound page has no key to send.
    pub open: bool,
    pub cors: &'a Cors,
    /// `[server] domain_name`: a name besides localhost that an open loopback listener answers to.
    pub domain_name: Option<&'a str>,
}

/// Why a request is refused at the door (the listener writes it in its own API's error shape), or the
/// answer to a preflight.
pub enum Stop {
    Refused(StatusCode, String),
    Answered(Response),
}

const SEC_FETCH_SITE: header::HeaderName = header::HeaderName::from_static("sec-fetch-site");

/// The door's decision for `req`; `None` lets it in.
pub fn check(door: Door, req: &Request) -> Option<Stop> {
    let headers = req.headers();
    if door.open && door.loopback {
        // Every Host header (a second one must not slip past) and an absolute-form target.
        let named = headers
            .get_all(header::HOST)
            .iter()
            .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned())
            .chain(req.uri().authority().map(|a| a.to_string()));
        for h in named {
            if !host_is_local(&h, door.domain_name) {
                return Some(Stop::Refused(
                    StatusCode::FORBIDDEN,
                    format!("Host `{h}` is not this machine: an open loopback listener serves only localhost (or [server] domain_name)"),
                ));
            }
        }
    }
    if req.method() == Method::OPTIONS {
        return Some(Stop::Answered(preflight(door.cors, headers)));
    }
    let origin = headers.get(header::ORIGIN);
    if let Some(o) = origin {
        if !door.cors.allows(o.as_bytes()) {
            return Some(Stop::Refused(
                StatusCode::FORBIDDEN,
                format!(
                    "origin `{}` may not use this API: add it to [server] cors_origins",
                    String::from_utf8_lossy(o.as_bytes())
                ),
            ));
        }
    } else if let Some(site) = headers.get(SEC_FETCH_SITE) {
        // A browser says where the request comes from even when it sends no Origin (a GET of an
        // image, a navigation); a page of another site may use the API only as a CORS origin.
        let s = site.as_bytes();
        if s.eq_ignore_ascii_case(b"cross-site") || s.eq_ignore_ascii_case(b"same-site") {
            return Some(Stop::Refused(
                StatusCode::FORBIDDEN,
                "a page of another site may not use this API (Sec-Fetch-Site); list its origin in [server] cors_origins".into(),
            ));
        }
    }
    None
}

/// The answer to a preflight: 204 with the grant, 403 for an origin not listed (204 with nothing when
/// no Origin was sent).
fn preflight(cors: &Cors, headers: &HeaderMap) -> Response {
    let (ok, grant) = cors.preflight(headers);
    let mut r = Response::new(Body::empty());
    *r.status_mut() = if ok || !headers.contains_key(header::ORIGIN) {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::FORBIDDEN
    };
    *r.headers_mut() = grant;
    r.headers_mut().insert(
        header::ALLOW,
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
    r
}

/// Is `host` (a `Host` header: name or address, optional port) this machine's loopback or the configured
/// `domain_name`? An open loopback listener serves only those, so a page on another site that rebinds its
/// DNS name to 127.0.0.1 is refused (its requests carry its own name).
pub(crate) fn host_is_local(host: &str, domain_name: Option<&str>) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        match rest.split_once(']') {
            Some((addr, _)) => addr,
            None => return false,
        }
    } else {
        host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host)
    };
    let name = name.trim_end_matches('.');
    if name.eq_ignore_ascii_case("localhost")
        || name.len() > 10 && name[name.len() - 10..].eq_ignore_ascii_case(".localhost")
    {
        return true;
    }
    if let Ok(ip) = name.parse::<std::net::IpAddr>() {
        return ip.is_loopback();
    }
    domain_name.is_some_and(|d| d.trim_end_matches('.').eq_ignore_ascii_case(name))
}

/// The `Origin`s a browser page may call this frontend from (`[server] cors_origins`). Empty = none: the
/// proxy answers preflights itself and never lets a backend's `Access-Control-*` headers through.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cors {
    pub origins: Vec<String>,
}

impl Cors {
    pub(crate) fn allows(&self, origin: &[u8]) -> bool {
        self.origins
            .iter()
            .any(|o| o == "*" || o.as_bytes().eq_ignore_ascii_case(origin))
    }

    /// The headers that let the page at `origin` read an answer (nothing when it may not).
    pub(crate) fn answer_headers(&self, origin: Option<&HeaderValue>, out: &mut HeaderMap) {
        let backend_cors = out
            .keys()
            .any(|k| k.as_str().starts_with("access-control-"));
        if origin.is_none() && !backend_cors {
            return; // the usual case: nothing to remove or add
        }
        // A backend's own CORS answer (mlx_lm says `*`) is never passed on.
        out.remove(header::ACCESS_CONTROL_ALLOW_ORIGIN);
        out.remove(header::ACCESS_CONTROL_ALLOW_METHODS);
        out.remove(header::ACCESS_CONTROL_ALLOW_HEADERS);
        out.remove(header::ACCESS_CONTROL_ALLOW_CREDENTIALS);
        out.remove(header::ACCESS_CONTROL_EXPOSE_HEADERS);
        out.remove(header::ACCESS_CONTROL_MAX_AGE);
        if let Some(o) = origin.filter(|o| self.allows(o.as_bytes())) {
            out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o.clone());
            out.append(header::VARY, HeaderValue::from_static("Origin"));
        }
    }

    /// The answer to a preflight (`OPTIONS` with `Origin`), made here: 204 with the grant, or 403.
    pub(crate) fn preflight(&self, headers: &HeaderMap) -> (bool, HeaderMap) {
        let mut out = HeaderMap::new();
        let origin = headers.get(header::ORIGIN);
        let ok = origin.is_some_and(|o| self.allows(o.as_bytes()));
        if ok {
            self.answer_headers(origin, &mut out);
            out.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET, POST, OPTIONS"),
            );
            out.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("authorization, content-type"),
            );
            out.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("600"),
            );
        }
        (ok, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_hosts() {
        for ok in [
            "localhost",
            "localhost:8080",
            "LOCALHOST.",
            "api.localhost:1",
            "127.0.0.1",
            "127.3.2.1:80",
            "[::1]:8080",
            "[::1]",
            "studio.lan",
        ] {
            assert!(host_is_local(ok, Some("studio.lan")), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8080",
            "127.0.0.1.evil.example",
            "localhost.evil.example",
            "[::2]:80",
            "198.18.0.1",
            "[::1",
            "",
        ] {
            assert!(!host_is_local(bad, Some("studio.lan")), "{bad}");
        }
    }

    #[test]
    fn cors_is_answered_here_and_closed_by_default() {
        let origin = |o: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::ORIGIN, HeaderValue::from_str(o).unwrap());
            m
        };
        let closed = Cors::default();
        assert!(!closed.preflight(&origin("https://evil.example")).0);
        let mut reply = HeaderMap::new();
        reply.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
        closed.answer_headers(
            origin("https://evil.example").get(header::ORIGIN),
            &mut reply,
        );
        assert!(reply.is_empty(), "the backend's `*` is dropped");

        let open = Cors {
            origins: vec!["https://app.example".into()],
        };
        let (ok, hs) = open.preflight(&origin("https://APP.example"));
        assert!(ok);
        assert_eq!(
            hs[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://APP.example"
        );
        assert!(!open.preflight(&origin("https://app.example.evil")).0);
        assert!(!open.preflight(&HeaderMap::new()).0);
    }

    fn request(headers: &[(&str, &str)], method: Method) -> Request {
        let mut b = axum::http::Request::builder()
            .method(method)
            .uri("/v1/models");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(Body::empty()).unwrap()
    }

    /// A page of another site is refused at every door, with or without an
    /// Origin; a rebound name is refused where no key is needed; a local tool (no browser headers) passes.
    #[test]
    fn the_door_refuses_other_sites_and_rebound_names() {
        let cors = Cors::default();
        let door = Door {
            loopback: true,
            open: true,
            cors: &cors,
            domain_name: None,
        };
        let refused = |h: &[(&str, &str)]| {
            matches!(
                check(door, &request(h, Method::GET)),
                Some(Stop::Refused(StatusCode::FORBIDDEN, _))
            )
        };
        assert!(check(door, &request(&[("host", "127.0.0.1:8080")], Method::GET)).is_none());
        assert!(refused(&[("host", "evil.example:8080")]));
        assert!(refused(&[
            ("host", "127.0.0.1"),
            ("sec-fetch-site", "cross-site")
        ]));
        assert!(refused(&[
            ("host", "127.0.0.1"),
            ("sec-fetch-site", "same-site")
        ]));
        assert!(refused(&[
            ("host", "127.0.0.1"),
            ("origin", "https://evil.example")
        ]));
        assert!(check(
            door,
            &request(
                &[("host", "localhost"), ("sec-fetch-site", "none")],
                Method::GET
            )
        )
        .is_none());
        assert!(check(
            door,
            &request(
                &[("host", "localhost"), ("sec-fetch-site", "same-origin")],
                Method::GET
            )
        )
        .is_none());
        // With a key needed, the Host is not the defence (the key is), but another site still is refused.
        let keyed = Door {
            open: false,
            ..door
        };
        assert!(check(keyed, &request(&[("host", "studio.example")], Method::GET)).is_none());
        assert!(matches!(
            check(
                keyed,
                &request(
                    &[("host", "studio.example"), ("sec-fetch-site", "cross-site")],
                    Method::GET
                )
            ),
            Some(Stop::Refused(..))
        ));
        // A listed origin may call, and its preflight is answered here.
        let listed = Cors {
            origins: vec!["https://app.example".into()],
        };
        let door = Door {
            cors: &listed,
            ..keyed
        };
        assert!(check(
            door,
            &request(
                &[
                    ("origin", "https://app.example"),
                    ("sec-fetch-site", "cross-site")
                ],
                Method::POST
            )
        )
        .is_none());
        match check(
            door,
            &request(&[("origin", "https://app.example")], Method::OPTIONS),
        ) {
            Some(Stop::Answered(r)) => assert_eq!(r.status(), StatusCode::NO_CONTENT),
            _ => panic!("a preflight is answered at the door"),
        }
    }
}
