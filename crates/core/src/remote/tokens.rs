//! Access tokens of the remote control API: kept in the control keyring (`Keyring::open_control`, their
//! scope is their role), held here in memory, checked in constant time. Failed attempts are counted per
//! peer address, as fail2ban counts them: 5 within a minute and that address is refused (429) for a
//! minute, good token or not; each failure is logged with the peer, never with what it sent.

use super::Role;
use crate::keys::ApiKey;
use axum::http::HeaderMap;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

const MAX_FAILURES: u32 = 5;
const WINDOW: Duration = Duration::from_secs(60);
const BLOCK: Duration = Duration::from_secs(60);
/// Peers remembered at most (a flood of addresses cannot grow the table without bound).
const MAX_PEERS: usize = 4096;

#[derive(Debug, PartialEq, Clone, Copy)]
pub enum Check {
    Ok(Role),
    Denied,
    /// Too many failures from this peer: refused without a look at the token.
    Limited {
        retry_after_s: u64,
    },
    /// No token is known and the keyring could not be read.
    KeysUnknown,
}

struct Failures {
    count: u32,
    since: Instant,
    blocked_until: Option<Instant>,
}

/// (secret, role) of every token, and the keyring's error when it could not be read.
type TokenSet = (Vec<(String, Role)>, Option<String>);

#[derive(Default)]
pub struct Tokens {
    set: RwLock<TokenSet>,
    failures: Mutex<HashMap<IpAddr, Failures>>,
}

impl Tokens {
    /// Replaces the tokens (a token whose scope is not a role is skipped).
    pub fn replace(&self, tokens: Result<Vec<ApiKey>, String>) {
        let next = match tokens {
            Ok(t) => (
                t.into_iter()
                    .filter(|k| !k.secret.trim().is_empty())
                    .filter_map(|k| {
                        let role = k.info.services.first().and_then(|r| Role::parse(r))?;
                        Some((k.secret, role))
                    })
                    .collect(),
                None,
            ),
            Err(e) => (vec![], Some(e)),
        };
        *self.set.write().unwrap() = next;
    }

    pub fn len(&self) -> usize {
        self.set.read().unwrap().0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Who sends these headers from `peer`.
    pub fn check(&self, peer: IpAddr, headers: &HeaderMap, now: Instant) -> Check {
        if let Some(f) = self.failures.lock().unwrap().get(&peer) {
            if let Some(until) = f.blocked_until.filter(|u| *u > now) {
                return Check::Limited {
                    retry_after_s: (until - now).as_secs().max(1),
                };
            }
        }
        let set = self.set.read().unwrap();
        if set.0.is_empty() && set.1.is_some() {
            return Check::KeysUnknown;
        }
        let given = crate::proxy::bearer(headers).unwrap_or_default();
        // Every token compared (no early exit), so the time taken tells nothing.
        let mut role = None;
        for (secret, r) in &set.0 {
            if crate::proxy::ct_eq(secret.as_bytes(), given) && !given.is_empty() {
                role = Some(*r);
            }
        }
        drop(set);
        // A success does not wipe the failures: several clients may share an address (a NAT, this
        // machine), and a guesser must not be let off by a neighbour's good token.
        match role {
            Some(r) => Check::Ok(r),
            None => {
                self.failed(peer, now);
                Check::Denied
            }
        }
    }

    fn failed(&self, peer: IpAddr, now: Instant) {
        let mut map = self.failures.lock().unwrap();
        if map.len() >= MAX_PEERS && !map.contains_key(&peer) {
            // Forget the peer whose window started first.
            if let Some(oldest) = map.iter().min_by_key(|(_, f)| f.since).map(|(p, _)| *p) {
                map.remove(&oldest);
            }
        }
        let f = map.entry(peer).or_insert(Failures {
            count: 0,
            since: now,
            blocked_until: None,
        });
        if now.duration_since(f.since) > WINDOW {
            *f = Failures {
                count: 0,
                since: now,
                blocked_until: None,
            };
        }
        f.count += 1;
        tracing::warn!(%peer, failures = f.count, "remote control API: missing or wrong access token");
        if f.count >= MAX_FAILURES {
            f.blocked_until = Some(now + BLOCK);
            tracing::warn!(%peer, "remote control API: too many failed attempts; refused for 60 s");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyInfo;

    fn token(secret: &str, role: &str) -> ApiKey {
        ApiKey {
            info: KeyInfo {
                id: "t".into(),
                name: None,
                created: 0,
                last4: String::new(),
                services: vec![role.into()],
            },
            secret: secret.into(),
        }
    }

    fn bearer(t: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("authorization", format!("Bearer {t}").parse().unwrap());
        h
    }

    #[test]
    fn roles_and_the_rate_limit() {
        let t = Tokens::default();
        t.replace(Ok(vec![
            token("r-secret", "read"),
            token("a-secret", "admin"),
            token("x-secret", "metrics"),
        ]));
        assert_eq!(t.len(), 2, "a scope that is not a role is no token");
        let (me, other) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let now = Instant::now();
        assert_eq!(t.check(me, &bearer("r-secret"), now), Check::Ok(Role::Read));
        assert_eq!(
            t.check(me, &bearer("a-secret"), now),
            Check::Ok(Role::Admin)
        );
        assert_eq!(t.check(me, &HeaderMap::new(), now), Check::Denied);
        for _ in 1..MAX_FAILURES {
            assert_eq!(t.check(me, &bearer("wrong"), now), Check::Denied);
        }
        // Blocked: even the right token waits, so guessing gains nothing; other peers are not.
        assert!(matches!(
            t.check(me, &bearer("a-secret"), now),
            Check::Limited { retry_after_s: 60 }
        ));
        assert_eq!(
            t.check(other, &bearer("a-secret"), now),
            Check::Ok(Role::Admin)
        );
        let later = now + BLOCK + Duration::from_secs(1);
        assert_eq!(
            t.check(me, &bearer("a-secret"), later),
            Check::Ok(Role::Admin)
        );
        // An unreadable keyring with no token known: not "denied" (the token may exist).
        t.replace(Err("locked".into()));
        assert_eq!(t.check(other, &bearer("a-secret"), now), Check::KeysUnknown);
    }

    #[test]
    fn the_failure_table_is_bounded() {
        let t = Tokens::default();
        let now = Instant::now();
        for i in 0..(MAX_PEERS as u32 + 10) {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0xC612_0000 + i));
            t.check(ip, &HeaderMap::new(), now);
        }
        assert!(t.failures.lock().unwrap().len() <= MAX_PEERS);
    }
}
