//! Who may use a frontend: API keys (constant-time, never logged), sent as `Authorization: Bearer` or
//! `x-api-key`. The `Host`, `Origin` and `Sec-Fetch-Site` checks every listener shares are the gate's
//! (`crate::gate::door`).

use crate::keys::ApiKey;
use axum::http::{header, HeaderMap};
use std::sync::{Arc, RwLock};

use crate::keys::key::ct_eq;

/// The keys the proxy accepts. Swapped as a whole when they change (`mlx-box keys add/remove`, an edit of
/// settings.toml), without restarting the listeners.
#[derive(Debug, Default, Clone)]
pub struct KeySet {
    keys: Vec<ApiKey>,
    /// The daemon's own key (its benchmark of a pool sends it through the pool's port): made at start,
    /// in memory only, never listed, open to every service. Not counted: a set with only this key is a
    /// set without keys.
    own: Option<Arc<str>>,
    /// Why the key store could not be read, if it could not: keys may exist that we cannot see, so a
    /// service with no other key is refused (503) rather than served open.
    pub store_error: Option<String>,
}

impl KeySet {
    /// The daemon's own key, good for every service of this daemon.
    pub fn own_secret(&self) -> Option<String> {
        self.own.as_deref().map(str::to_string)
    }

    /// The key the daemon's benchmark of a pool sends through the pool's port (the pool passes it on to
    /// its members on other Macs): a plaintext key of settings.toml when there is one — the only kind
    /// whose secret the daemon knows, so the only kind another host can accept too (when it was given
    /// the same key) —, else the daemon's own key, which opens this daemon's listeners only.
    pub fn bench_secret(&self) -> Option<String> {
        self.keys
            .iter()
            .find_map(|k| match &k.verifier {
                crate::keys::Verifier::Plain(s) => Some(s.clone()),
                crate::keys::Verifier::Hashed { .. } => None,
            })
            .or_else(|| self.own_secret())
    }

    /// Keys from the key store plus the plaintext ones of settings.toml (which open every service). An
    /// empty or blank secret is never a key (validation refuses it too): it would match a request
    /// without one.
    pub fn new(store: Result<Vec<ApiKey>, String>, plaintext: &[String]) -> KeySet {
        let (mut keys, store_error) = match store {
            Ok(k) => (k, None),
            Err(e) => (vec![], Some(e)),
        };
        keys.extend(plaintext.iter().map(|k| ApiKey::plain(k)));
        keys.retain(|k| !k.verifier.is_blank());
        KeySet {
            keys,
            own: None,
            store_error,
        }
    }

    /// The set with the daemon's own key (see [`KeySet::own_secret`]).
    pub fn with_own(mut self, secret: Option<Arc<str>>) -> KeySet {
        self.own = secret.filter(|s| !s.trim().is_empty());
        self
    }

    /// Whether no key is known (the daemon's own does not count).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }
}

/// Shared between the daemon (which replaces the set) and every listener (which reads it per request).
pub type SharedKeys = Arc<RwLock<Arc<KeySet>>>;

#[derive(Debug, PartialEq, Clone, Copy)]
pub(crate) enum Auth {
    Ok,
    Denied,
    /// No key is known and the key store could not be read.
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

/// The auth decision. No key at all = open, but only on a loopback listener and only when the key store
/// was readable; otherwise a request passes only with a real key that is allowed this service (or the
/// daemon's own key).
pub(crate) fn authorize(set: &KeySet, service: &str, loopback: bool, headers: &HeaderMap) -> Auth {
    let given = bearer(headers);
    if set.keys.is_empty() && set.store_error.is_none() && loopback {
        return Auth::Ok;
    }
    let Some(given) = given else {
        return match (&set.store_error, set.keys.is_empty()) {
            (Some(_), true) => Auth::KeysUnknown,
            _ => Auth::Denied,
        };
    };
    let own = set.own.as_ref().is_some_and(|o| ct_eq(o.as_bytes(), given));
    // Every key hashed and compared (no early exit) so timing does not reveal which one matched.
    let ok = set.keys.iter().fold(own, |ok, k| {
        ok | (k.verifier.matches(given) & k.info.allows(service))
    });
    match (ok, &set.store_error, set.keys.is_empty()) {
        (true, _, _) => Auth::Ok,
        (false, Some(_), true) => Auth::KeysUnknown,
        (false, _, _) => Auth::Denied,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use proptest::prelude::*;

    /// A key of the key store: hashed.
    fn scoped(secret: &str, services: &[&str]) -> ApiKey {
        ApiKey {
            info: crate::keys::KeyInfo {
                id: secret.into(),
                name: None,
                created: 0,
                last4: String::new(),
                services: services.iter().map(|s| s.to_string()).collect(),
            },
            verifier: crate::keys::Verifier::hashed(secret).unwrap(),
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

    /// Keys of the key store, checked by their hash: the right key passes, a wrong one, a truncated one,
    /// the stored hash itself and a key scoped elsewhere do not.
    #[test]
    fn hashed_keys_right_wrong_and_scoped() {
        let all = scoped("sk-mlxbox-all", &[]);
        let embed = scoped("sk-mlxbox-embed", &["embed"]);
        let crate::keys::Verifier::Hashed { hash, salt } = all.verifier.clone() else {
            unreachable!()
        };
        let set = KeySet::new(Ok(vec![all, embed]), &[]);
        let chat = |v: &str| authorize(&set, "chat", false, &h(v));
        assert_eq!(chat("Bearer sk-mlxbox-all"), Auth::Ok);
        assert_eq!(chat("Bearer sk-mlxbox-al"), Auth::Denied);
        assert_eq!(chat("Bearer sk-mlxbox-alll"), Auth::Denied);
        assert_eq!(chat(&format!("Bearer {}", hex::encode(hash))), Auth::Denied);
        assert_eq!(chat(&format!("Bearer {}", hex::encode(salt))), Auth::Denied);
        assert_eq!(
            chat("Bearer sk-mlxbox-embed"),
            Auth::Denied,
            "scoped to embed"
        );
        assert_eq!(
            authorize(&set, "embed", false, &h("Bearer sk-mlxbox-embed")),
            Auth::Ok
        );
        assert_eq!(
            authorize(&set, "embed", false, &h("Bearer sk-mlxbox-all")),
            Auth::Ok
        );
        assert_eq!(
            authorize(&set, "chat", true, &HeaderMap::new()),
            Auth::Denied
        );
    }

    /// The daemon's own key opens every service, is never counted (a set with only it serves loopback
    /// open) and passes where the store cannot be read.
    #[test]
    fn the_daemons_own_key() {
        let own: Option<Arc<str>> = Some("sk-mlxbox-own".into());
        let only = KeySet::new(Ok(vec![]), &[]).with_own(own.clone());
        assert!(only.is_empty());
        assert_eq!(only.own_secret().as_deref(), Some("sk-mlxbox-own"));
        assert_eq!(authorize(&only, "p", true, &HeaderMap::new()), Auth::Ok);
        assert_eq!(
            authorize(&only, "p", false, &HeaderMap::new()),
            Auth::Denied
        );
        assert_eq!(
            authorize(&only, "p", false, &h("Bearer sk-mlxbox-own")),
            Auth::Ok
        );
        let scoped_set = KeySet::new(Ok(vec![scoped("k", &["other"])]), &[]).with_own(own.clone());
        assert_eq!(
            authorize(&scoped_set, "p", true, &h("Bearer sk-mlxbox-own")),
            Auth::Ok
        );
        assert_eq!(
            authorize(&scoped_set, "p", true, &h("Bearer k")),
            Auth::Denied
        );
        let damaged = KeySet::new(Err("damaged".into()), &[]).with_own(own);
        assert_eq!(
            authorize(&damaged, "p", true, &h("Bearer sk-mlxbox-own")),
            Auth::Ok
        );
        assert_eq!(
            authorize(&damaged, "p", true, &h("Bearer x")),
            Auth::KeysUnknown
        );
        assert_eq!(
            KeySet::new(Ok(vec![]), &[])
                .with_own(Some("".into()))
                .own_secret(),
            None
        );
        // The benchmark's key: a plaintext one (another host may hold it too), else the own key.
        assert_eq!(scoped_set.bench_secret().as_deref(), Some("sk-mlxbox-own"));
        let with_plain = KeySet::new(Ok(vec![scoped("k", &[])]), &["plain".into()])
            .with_own(Some("sk-mlxbox-own".into()));
        assert_eq!(with_plain.bench_secret().as_deref(), Some("plain"));
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
        /// The auth decision over every combination of plaintext keys (blank ones included), key store
        /// readable or not (with or without keys), Authorization variants and loopback or not: a request without
        /// a real key never passes when any key exists, and a non-loopback listener never serves without
        /// a real key.
        #[test]
        fn no_real_key_never_passes(
            plaintext in proptest::collection::vec(prop_oneof![Just(String::new()), Just(" ".to_string()), "[a-z]{1,6}"], 0..4),
            store in prop_oneof![
                Just(Err("damaged".to_string())),
                Just(Ok(vec![])),
                "[a-z]{1,6}".prop_map(|s| Ok(vec![(s, vec![])])),
                "[a-z]{1,6}".prop_map(|s| Ok(vec![(s, vec!["other"])])),
            ],
            given in auth_header(),
            loopback in any::<bool>(),
        ) {
            let real: Vec<String> = plaintext.iter().filter(|k| !k.trim().is_empty()).cloned()
                .chain(store.iter().flatten().filter(|(_, sc)| sc.is_empty()).map(|(s, _)| s.clone()))
                .collect();
            let any_key = !real.is_empty() || store.iter().flatten().next().is_some();
            let keys = store.clone().map(|v| v.iter().map(|(s, sc)| scoped(s, sc)).collect());
            let set = KeySet::new(keys, &plaintext);
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
                prop_assert!(holds_real || (!any_key && loopback && store.is_ok()),
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
