//! Who may use a frontend: API keys (constant-time, never logged), sent as `Authorization: Bearer` or
//! `x-api-key`. The `Host`, `Origin` and `Sec-Fetch-Site` checks every listener shares are the gate's
//! (`crate::gate::door`).

use crate::keys::ApiKey;
use axum::http::{header, HeaderMap};
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

/// The key a request presents: `Authorization: Bearer <key>` (scheme case-insensitive, as RFC 7235 says)
/// or, as Anthropic's clients send it, `x-api-key: <key>`. Anything else, or an empty key, is no key.
/// A request that sends both is judged by its `Authorization`.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        let (scheme, rest) = v.as_bytes().split_at_checked(7)?;
        if !scheme.eq_ignore_ascii_case(b"bearer ") {
            return None;
        }
        let token = rest.trim_ascii();
        return (!token.is_empty()).then_some(token);
    }
    let token = headers.get(X_API_KEY)?.as_bytes().trim_ascii();
    (!token.is_empty()).then_some(token)
}

const X_API_KEY: header::HeaderName = header::HeaderName::from_static("x-api-key");

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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
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
        let mut x = HeaderMap::new();
        x.insert("x-api-key", HeaderValue::from_static("beta-key"));
        assert_eq!(auth(&x), Auth::Ok, "Anthropic's header");
        x.insert("x-api-key", HeaderValue::from_static(" "));
        assert_eq!(auth(&x), Auth::Denied, "a blank x-api-key is no key");
        x.insert("x-api-key", HeaderValue::from_static("beta-key"));
        x.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer wrong"),
        );
        assert_eq!(
            auth(&x),
            Auth::Denied,
            "Authorization decides when both are sent"
        );

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

    /// `api_key = ""` is no key: a request without Authorization never matches it.
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
