//! Access tokens of the remote control API: kept hashed in the token store (`<state>/tokens.json`,
//! `keys::store`; their scope is their role), held here in memory, checked by hash in constant time. Failed attempts are counted per
//! peer address, as fail2ban counts them (5 within a minute and that address is blocked for a minute),
//! and for all peers together ([`GLOBAL_MAX_FAILURES`] a minute: guessing from many addresses gains
//! nothing). A blocked address, or any address while the global budget is spent, is refused (429) without
//! its token being checked, unless it presented a valid token before ([`KNOWN_GOOD`]): an admin behind the
//! same address as a guesser (a NAT, this machine) is never locked out. Each failure is logged with the
//! peer, never with what it sent.

use super::Role;
use crate::keys::{ApiKey, Verifier};
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
/// Failed checks a minute from all peers together; past it, only known-good peers are checked.
pub const GLOBAL_MAX_FAILURES: u32 = 300;
/// How long an address that presented a valid token stays known-good.
pub const KNOWN_GOOD: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, PartialEq, Clone, Copy)]
pub enum Check {
    Ok(Role),
    Denied,
    /// Too many failures from this peer: refused without a look at the token.
    Limited {
        retry_after_s: u64,
    },
    /// No token is known and the token store could not be read.
    KeysUnknown,
}

struct Failures {
    count: u32,
    since: Instant,
    blocked_until: Option<Instant>,
}

/// (verifier, role) of every token, and the store's error when it could not be read.
type TokenSet = (Vec<(Verifier, Role)>, Option<String>);

#[derive(Default)]
struct Ledger {
    peers: HashMap<IpAddr, Failures>,
    /// Failed checks of all peers in the window that started at `since`.
    global: Option<Failures>,
    /// Addresses that presented a valid token, and when they last did.
    good: HashMap<IpAddr, Instant>,
}

#[derive(Default)]
pub struct Tokens {
    set: RwLock<TokenSet>,
    failures: Mutex<Ledger>,
}

impl Tokens {
    /// Replaces the tokens (a token whose scope is not a role is skipped).
    pub fn replace(&self, tokens: Result<Vec<ApiKey>, String>) {
        let next = match tokens {
            Ok(t) => (
                t.into_iter()
                    .filter(|k| !k.verifier.is_blank())
                    .filter_map(|k| {
                        let role = k.info.services.first().and_then(|r| Role::parse(r))?;
                        Some((k.verifier, role))
                    })
                    .collect(),
                None,
            ),
            Err(e) => (vec![], Some(e)),
        };
        *self.set.write().unwrap_or_else(|e| e.into_inner()) = next;
    }

    pub fn len(&self) -> usize {
        self.set.read().unwrap_or_else(|e| e.into_inner()).0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Who sends these headers from `peer`.
    pub fn check(&self, peer: IpAddr, headers: &HeaderMap, now: Instant) -> Check {
        if let Some(retry_after_s) = self.limited(peer, now) {
            return Check::Limited { retry_after_s };
        }
        let set = self.set.read().unwrap_or_else(|e| e.into_inner());
        if set.0.is_empty() && set.1.is_some() {
            return Check::KeysUnknown;
        }
        let given = crate::proxy::bearer(headers).unwrap_or_default();
        // Every token hashed and compared (no early exit), so the time taken tells nothing.
        let mut role = None;
        for (verifier, r) in &set.0 {
            if verifier.matches(given) & !given.is_empty() {
                role = Some(*r);
            }
        }
        drop(set);
        // A success does not wipe the failures: several clients may share an address (a NAT, this
        // machine), and a guesser must not be let off by a neighbour's good token.
        match role {
            Some(r) => {
                self.good(peer, now);
                Check::Ok(r)
            }
            None => match self.failed(peer, now) {
                Some(retry_after_s) => Check::Limited { retry_after_s },
                None => Check::Denied,
            },
        }
    }

    /// Seconds to wait when `peer` is refused without a look at its token: blocked itself, or any peer
    /// while the global budget is spent; never a peer that presented a valid token lately.
    fn limited(&self, peer: IpAddr, now: Instant) -> Option<u64> {
        let ledger = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if ledger
            .good
            .get(&peer)
            .is_some_and(|t| now.duration_since(*t) < KNOWN_GOOD)
        {
            return None;
        }
        let blocked = |f: &Failures| f.blocked_until.filter(|u| *u > now);
        let until = ledger
            .peers
            .get(&peer)
            .and_then(blocked)
            .into_iter()
            .chain(ledger.global.as_ref().and_then(blocked))
            .max()?;
        Some((until - now).as_secs().max(1))
    }

    fn good(&self, peer: IpAddr, now: Instant) {
        let mut ledger = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if ledger.good.len() >= MAX_PEERS && !ledger.good.contains_key(&peer) {
            if let Some(oldest) = ledger.good.iter().min_by_key(|(_, t)| **t).map(|(p, _)| *p) {
                ledger.good.remove(&oldest);
            }
        }
        ledger.good.insert(peer, now);
    }

    /// Counts a failure of `peer` (and of all peers); `Some` when this one blocked it.
    fn failed(&self, peer: IpAddr, now: Instant) -> Option<u64> {
        let mut ledger = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let global = ledger.global.get_or_insert(Failures {
            count: 0,
            since: now,
            blocked_until: None,
        });
        // The failure that reaches a limit is answered as checked (401); the next ones are refused.
        let global_blocked = global.blocked_until.is_some_and(|u| u > now);
        if count(global, now, GLOBAL_MAX_FAILURES) {
            tracing::warn!(
                "remote control API: {GLOBAL_MAX_FAILURES} failed token checks within a minute from all addresses; only addresses that presented a valid token are checked for 60 s"
            );
        }
        if ledger.peers.len() >= MAX_PEERS && !ledger.peers.contains_key(&peer) {
            // Forget the unblocked peer whose window started first; a blocked one stays blocked. When
            // every one is blocked, this peer is held by the global budget alone.
            let oldest = ledger
                .peers
                .iter()
                .filter(|(_, f)| f.blocked_until.is_none_or(|u| u <= now))
                .min_by_key(|(_, f)| f.since)
                .map(|(p, _)| *p);
            match oldest {
                Some(p) => {
                    ledger.peers.remove(&p);
                }
                None => return global_blocked.then_some(BLOCK.as_secs()),
            }
        }
        let f = ledger.peers.entry(peer).or_insert(Failures {
            count: 0,
            since: now,
            blocked_until: None,
        });
        let was_blocked = f.blocked_until.is_some_and(|u| u > now);
        let blocked = count(f, now, MAX_FAILURES);
        tracing::warn!(%peer, failures = f.count, "remote control API: missing or wrong access token");
        if blocked {
            tracing::warn!(%peer, "remote control API: too many failed attempts; refused for 60 s");
        }
        (was_blocked || global_blocked).then_some(BLOCK.as_secs())
    }
}

/// Adds a failure to `f` (a new window after [`WINDOW`]); true when it reaches `max` and `f` is blocked
/// now.
fn count(f: &mut Failures, now: Instant, max: u32) -> bool {
    if now.duration_since(f.since) > WINDOW && f.blocked_until.is_none_or(|u| u <= now) {
        *f = Failures {
            count: 0,
            since: now,
            blocked_until: None,
        };
    }
    f.count += 1;
    if f.count == max {
        f.blocked_until = Some(now + BLOCK);
        return true;
    }
    false
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
            verifier: Verifier::hashed(secret).unwrap(),
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
        let (me, guesser) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let now = Instant::now();
        assert_eq!(t.check(me, &bearer("r-secret"), now), Check::Ok(Role::Read));
        assert_eq!(
            t.check(me, &bearer("a-secret"), now),
            Check::Ok(Role::Admin)
        );
        assert_eq!(t.check(guesser, &HeaderMap::new(), now), Check::Denied);
        for _ in 2..=MAX_FAILURES {
            assert_eq!(t.check(guesser, &bearer("wrong"), now), Check::Denied);
        }
        assert!(matches!(
            t.check(guesser, &bearer("wrong"), now),
            Check::Limited { retry_after_s: 60 }
        ));
        // Blocked: its next guess is not even checked (the right token waits too), so guessing gains
        // nothing; after the block it is checked again.
        assert!(matches!(
            t.check(guesser, &bearer("a-secret"), now),
            Check::Limited { .. }
        ));
        let later = now + BLOCK + Duration::from_secs(1);
        assert_eq!(
            t.check(guesser, &bearer("a-secret"), later),
            Check::Ok(Role::Admin)
        );
        // An unreadable token store with no token known: not "denied" (the token may exist).
        t.replace(Err("damaged".into()));
        assert_eq!(
            t.check("192.0.2.3".parse().unwrap(), &bearer("a-secret"), now),
            Check::KeysUnknown
        );
    }

    /// A guesser behind the admin's address does not lock the admin out.
    #[test]
    fn a_valid_token_is_never_locked_out_by_its_neighbour() {
        let t = Tokens::default();
        t.replace(Ok(vec![token("a-secret", "admin")]));
        let nat: IpAddr = "192.0.2.9".parse().unwrap();
        let now = Instant::now();
        assert_eq!(
            t.check(nat, &bearer("a-secret"), now),
            Check::Ok(Role::Admin)
        );
        for _ in 0..MAX_FAILURES + 3 {
            t.check(nat, &bearer("guess"), now);
        }
        assert!(matches!(
            t.check(nat, &bearer("guess"), now),
            Check::Limited { .. }
        ));
        assert_eq!(
            t.check(nat, &bearer("a-secret"), now),
            Check::Ok(Role::Admin)
        );
    }

    /// Guesses from many addresses share one budget; past it, an address that never
    /// presented a valid token is refused unchecked, and a known one is still served.
    #[test]
    fn guesses_from_many_addresses_share_one_budget() {
        let t = Tokens::default();
        t.replace(Ok(vec![token("a-secret", "admin")]));
        let now = Instant::now();
        let admin: IpAddr = "198.18.0.1".parse().unwrap();
        assert_eq!(
            t.check(admin, &bearer("a-secret"), now),
            Check::Ok(Role::Admin)
        );
        let mut checked = 0;
        for i in 0..4200u32 {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0xC613_0000 + i));
            if t.check(ip, &bearer("guess"), now) == Check::Denied {
                checked += 1;
            }
        }
        assert!(
            checked <= GLOBAL_MAX_FAILURES,
            "{checked} guesses were answered 401"
        );
        let fresh: IpAddr = "198.18.9.9".parse().unwrap();
        assert!(matches!(
            t.check(fresh, &bearer("a-secret"), now),
            Check::Limited { .. }
        ));
        assert_eq!(
            t.check(admin, &bearer("a-secret"), now),
            Check::Ok(Role::Admin)
        );
    }

    /// A full table forgets an unblocked peer, never a blocked one.
    #[test]
    fn the_failure_table_is_bounded_and_keeps_blocked_peers() {
        let t = Tokens::default();
        let now = Instant::now();
        {
            let mut l = t.failures.lock().unwrap();
            for i in 0..MAX_PEERS as u32 {
                l.peers.insert(
                    IpAddr::from(std::net::Ipv4Addr::from(0xC612_0000 + i)),
                    Failures {
                        count: MAX_FAILURES,
                        since: now,
                        blocked_until: Some(now + BLOCK),
                    },
                );
            }
        }
        let newcomer: IpAddr = "203.0.113.1".parse().unwrap();
        t.check(newcomer, &HeaderMap::new(), now);
        let l = t.failures.lock().unwrap();
        assert_eq!(l.peers.len(), MAX_PEERS);
        assert!(l.peers.values().all(|f| f.blocked_until.is_some()));
    }
}
