//! Who may use a frontend: API keys (constant-time, never logged), the `Host` a request names (against DNS
//! rebinding on an open loopback listener) and the `Origin` a browser names (CORS, answered here and never
//! by the backend).

use crate::keys::ApiKey;
use axum::http::{header, HeaderMap, HeaderValue};
use std::sync::{Arc, RwLock};

/// The keys the proxy accepts. Swapped as a whole when they change (`mlx-box keys add/remove`, an edit of
/// settings.toml), without restarting the listeners.
#[derive(Debug, Default, Clone)]
pub struct KeySet {
    keys: Vec<ApiKey>,
    /// Why the OS keyring could not be read, if it could not: keys may exist that we cannot see, so a
    /// service with no other key is refused (503) rather than served open.
    pub keyring_error: Option<String>,
}

impl KeySet {
    /// A key good for `scope` (the daemon's own benchmark of a pool sends it through the pool's port).
    pub fn secret_for(&self, scope: &str) -> Option<String> {
        self.keys
            .iter()
            .find(|k| k.info.allows(scope))
            .map(|k| k.secret.to_string())
    }

    /// Keys from the keyring plus the plaintext ones of settings.toml (which open every service). An empty
    /// or blank secret is never a key (validation refuses it too): it would match a request without one.
    pub fn new(keyring: Result<Vec<ApiKey>, String>, plaintext: &[String]) -> KeySet {
        let (mut keys, keyring_error) = match keyring {
            Ok(k) => (k, None),
            Err(e) => (vec![], Some(e)),
        };
        keys.extend(plaintext.iter().map(|k| ApiKey {
            info: crate::keys::KeyInfo {
                id: "settings.toml".into(),
                name: None,
                created: 0,
                last4: String::new(),
                services: vec![],
            },
            secret: k.clone(),
        }));
        keys.retain(|k| !k.secret.trim().is_empty());
        KeySet {
            keys,
            keyring_error,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }
}

/// Shared between the daemon (which replaces the set) and every listener (which reads it per request).
pub type SharedKeys = Arc<RwLock<Arc<KeySet>>>;

/// Constant-time comparison: the time taken does not tell how much of a key was right.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u8 | ((a.len() ^ b.len()) >> 8) as u8;
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

#[derive(Debug, PartialEq, Clone, Copy)]
pub(crate) enum Auth {
    Ok,
    Denied,
    /// No key is known and the keyring could not be read.
    KeysUnknown,
}

/// The bearer token of a request: `Authorization: Bearer <token>` (scheme case-insensitive, as RFC 7235
/// says). Anything else, or an empty token, is no token.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let v = headers.get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, rest) = v.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// The auth decision. No key at all = open, but only on a loopback listener and only when the keyring
/// was readable; otherwise a request passes only with a real key that is allowed this service.
pub(crate) fn authorize(set: &KeySet, service: &str, loopback: bool, headers: &HeaderMap) -> Auth {
    if set.keys.is_empty() {
        return match (&set.keyring_error, loopback) {
            (Some(_), _) => Auth::KeysUnknown,
            (None, true) => Auth::Ok,
            (None, false) => Auth::Denied,
        };
    }
    let Some(given) = bearer(headers) else {
        return Auth::Denied;
    };
    // Check every key (no early exit) so timing does not reveal which one matched.
    let ok = set.keys.iter().fold(false, |ok, k| {
        ok | (ct_eq(k.secret.as_bytes(), given) & k.info.allows(service))
    });
    if ok {
        Auth::Ok
    } else {
        Auth::Denied
    }
}

/// Is `host` (a `Host` header: name or address, optional port) this machine's loopback or the configured
/// `domain_name`? An open loopback listener serves only those, so a page on another site that rebinds its
/// DNS name to 127.0.0.1 is refused (its requests carry its own name).
pub(super) fn host_is_local(host: &str, domain_name: Option<&str>) -> bool {
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
    pub(super) fn allows(&self, origin: &[u8]) -> bool {
        self.origins
            .iter()
            .any(|o| o == "*" || o.as_bytes().eq_ignore_ascii_case(origin))
    }

    /// The headers that let the page at `origin` read an answer (nothing when it may not).
    pub(super) fn answer_headers(&self, origin: Option<&HeaderValue>, out: &mut HeaderMap) {
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
    pub(super) fn preflight(&self, headers: &HeaderMap) -> (bool, HeaderMap) {
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
    use proptest::prelude::*;

    fn scoped(secret: &str, services: &[&str]) -> ApiKey {
        ApiKey {
            info: crate::keys::KeyInfo {
                id: secret.into(),
                name: None,
                created: 0,
                last4: String::new(),
                services: services.iter().map(|s| s.to_string()).collect(),
            },
            secret: secret.into(),
        }
    }

    fn h(v: &str) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        m
    }

    #[test]
    fn constant_time_key_check_with_scopes() {
        let mut set = KeySet::new(Ok(vec![scoped("embed-only", &["embed"])]), &[]);
        set.keys
            .extend(KeySet::new(Ok(vec![]), &["alpha-key".into(), "beta-key".into()]).keys);
        let auth = |v: &HeaderMap| authorize(&set, "chat", true, v);
        assert_eq!(auth(&h("Bearer beta-key")), Auth::Ok);
        assert_eq!(
            auth(&h("BEARER beta-key")),
            Auth::Ok,
            "scheme is case-insensitive"
        );
        assert_eq!(auth(&h("Bearer beta-ke")), Auth::Denied);
        assert_eq!(auth(&h("Bearer beta-keyy")), Auth::Denied);
        assert_eq!(auth(&HeaderMap::new()), Auth::Denied);
        assert_eq!(
            auth(&h("Bearer embed-only")),
            Auth::Denied,
            "scoped to embed"
        );
        assert_eq!(
            authorize(&set, "embed", false, &h("Bearer embed-only")),
            Auth::Ok
        );
        assert!(!ct_eq(&[0; 256], &[0; 512]), "lengths differing by 256");

        let none = KeySet::new(Ok(vec![]), &[]);
        assert_eq!(authorize(&none, "chat", true, &HeaderMap::new()), Auth::Ok);
        assert_eq!(
            authorize(&none, "chat", false, &HeaderMap::new()),
            Auth::Denied
        );
        let unknown = KeySet::new(Err("locked".into()), &[]);
        assert_eq!(
            authorize(&unknown, "chat", true, &HeaderMap::new()),
            Auth::KeysUnknown,
            "fail closed"
        );
        let file_only = KeySet::new(Err("locked".into()), &["k".into()]);
        assert_eq!(
            authorize(&file_only, "chat", true, &h("Bearer k")),
            Auth::Ok
        );
    }

    /// Issue 11, item 7: `api_key = ""` used to be a key that a request without Authorization matched.
    #[test]
    fn an_empty_key_is_no_key_and_an_empty_token_matches_nothing() {
        let set = KeySet::new(Ok(vec![]), &["".into(), "  ".into()]);
        assert!(set.is_empty(), "blank plaintext keys are dropped");
        assert_eq!(
            authorize(&set, "chat", false, &HeaderMap::new()),
            Auth::Denied,
            "non-loopback, no key: never open"
        );
        let set = KeySet::new(Ok(vec![]), &["".into(), "real".into()]);
        assert_eq!(set.len(), 1);
        for v in ["Bearer ", "Bearer", "", "Bearer  ", "Basic x"] {
            assert_eq!(authorize(&set, "chat", true, &h(v)), Auth::Denied, "{v:?}");
        }
    }

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

    fn auth_header() -> impl Strategy<Value = Option<String>> {
        prop_oneof![
            Just(None),
            Just(Some(String::new())),
            Just(Some("Bearer".to_string())),
            Just(Some("Bearer ".to_string())),
            Just(Some("bearer  ".to_string())),
            Just(Some("Basic Zm9vOmJhcg==".to_string())),
            "(Bearer |bearer |BEARER |Token )?[ -~]{0,12}".prop_map(Some),
        ]
    }

    proptest! {
        /// The auth decision over every combination of plaintext keys (blank ones included), keyring up
        /// or down (with or without keys), Authorization variants and loopback or not: a request without
        /// a real key never passes when any key exists, and a non-loopback listener never serves without
        /// a real key.
        #[test]
        fn no_real_key_never_passes(
            plaintext in proptest::collection::vec(prop_oneof![Just(String::new()), Just(" ".to_string()), "[a-z]{1,6}"], 0..4),
            keyring in prop_oneof![
                Just(Err("locked".to_string())),
                Just(Ok(vec![])),
                "[a-z]{1,6}".prop_map(|s| Ok(vec![scoped(&s, &[])])),
                "[a-z]{1,6}".prop_map(|s| Ok(vec![scoped(&s, &["other"])])),
            ],
            given in auth_header(),
            loopback in any::<bool>(),
        ) {
            let real: Vec<String> = plaintext.iter().filter(|k| !k.trim().is_empty()).cloned()
                .chain(keyring.iter().flatten().filter(|k| k.info.allows("chat")).map(|k| k.secret.clone()))
                .collect();
            let any_key = !real.is_empty() || keyring.iter().flatten().next().is_some();
            let set = KeySet::new(keyring.clone(), &plaintext);
            let headers = match &given {
                Some(v) => match HeaderValue::from_str(v) {
                    Ok(v) => { let mut m = HeaderMap::new(); m.insert(header::AUTHORIZATION, v); m }
                    Err(_) => HeaderMap::new(),
                },
                None => HeaderMap::new(),
            };
            let token = bearer(&headers).map(|t| String::from_utf8_lossy(t).into_owned());
            let holds_real = token.as_ref().is_some_and(|t| real.contains(t));
            let decision = authorize(&set, "chat", loopback, &headers);
            if decision == Auth::Ok {
                prop_assert!(holds_real || (!any_key && loopback && keyring.is_ok()),
                    "passed without a real key: {:?} {:?} {:?}", plaintext, given, loopback);
            }
            if !loopback && decision == Auth::Ok {
                prop_assert!(holds_real);
            }
            if holds_real {
                prop_assert_eq!(decision, Auth::Ok);
            }
        }
    }
}
