//! A pool (`[pools.NAME]`): one frontend over the same model served by several members — this Mac's
//! services (through their own fronts: model policy, on-demand load, queue and filter as on their own
//! port) and `HOST/SERVICE` on the Macs of `[hosts]` (their frontend port, the client's key passed on).
//!
//! Routing, per request:
//! - Members that are not ready (or whose host is unreachable), and members taken out for failing, are
//!   skipped. A member fails on a refused connection, a 502/503/504, or no answer within
//!   `member_timeout_s`; `max_failures` in a row take it out for `probation_s` (doubling while it keeps
//!   failing, up to 16×, as Envoy's outlier detection does); then it takes one request at a time until
//!   one succeeds.
//! - Affinity: a request whose leading messages are those of a request served before (the next turn of a
//!   conversation) goes to the member that served it, while that member is in and not overloaded, so its
//!   prompt cache is reused (oMLX #203: round-robin loses it). Only a longer conversation matches: the
//!   same request sent again is spread like any other.
//! - Otherwise the least outstanding requests per unit of weight; ties go round-robin.
//! - A failed attempt goes to another member only while nothing was sent to the client: the pool holds
//!   the reply until its head is in, and never retries once a byte has streamed. A member that answers
//!   429 (its `max_concurrency` queue is full) is busy, not failing: the next member is tried.

use super::agents::{Api, Route};
use super::auth::{self, Auth, KeySet, SharedKeys};
use super::backend::{self, Upstream};
use super::body;
use super::front::{
    agent_early, in_shape, openai_error, openai_error_with, read_incoming, refusal, serve,
    translated, AgentCall, Front, Incoming,
};
use super::headers::downstream_head;
use super::relay::{InFlight, Meter, Relay};
use super::stats::Counters;
use crate::api::{MemberHealth, PoolMemberStatus, PoolStatus};
use crate::config::{MemberRef, PoolSpec};
use crate::gate::Cors;
use crate::supervisor::State;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::Response;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// Conversations remembered for affinity (two generations of this many: bounded memory).
const AFFINITY_ENTRIES: usize = 8192;
/// Messages of a request read for affinity; a longer conversation is routed by load alone.
const AFFINITY_MAX_MESSAGES: usize = 4096;
/// Attempts per request at most (the first and two retries), whatever the pool's size.
const MAX_ATTEMPTS: usize = 3;
/// A member is overloaded for affinity when it has this many more outstanding requests (per unit of
/// weight) than the least loaded member.
const AFFINITY_SLACK: f64 = 2.0;

/// Where the Macs of `[hosts]` serve their services (the daemon's fleet, as last polled).
pub trait Directory: Send + Sync {
    /// `ADDRESS:PORT` of `host`'s frontend for `service`, or why it cannot take requests now.
    fn locate(&self, host: &str, service: &str) -> Result<String, String>;
}

/// One member's health and counters; carried over when the pool's listener is rebuilt.
#[derive(Default)]
pub(super) struct MemberState {
    pub(super) counters: Arc<Counters>,
    affinity_hits: AtomicU64,
    failing: Mutex<Failing>,
}

#[derive(Default)]
struct Failing {
    /// Failures in a row.
    consecutive: u32,
    /// Times it was taken out in a row (the probation doubles with each).
    ejections: u32,
    out_until: Option<Instant>,
    /// Back from being out: one request at a time until one succeeds.
    probation: bool,
    last_error: Option<String>,
}

struct Member {
    at: MemberRef,
    label: String,
    /// `x-mlx-box-member` on the replies it gave.
    header: HeaderValue,
    weight: f64,
    /// A service of this Mac: its front.
    local: Option<Arc<Front>>,
    state: Arc<MemberState>,
}

pub(super) struct Pool {
    pub(super) spec: PoolSpec,
    pub(super) loopback: bool,
    pub(super) cors: Cors,
    pub(super) domain_name: Option<String>,
    pub(super) keys: SharedKeys,
    member_timeout: Duration,
    /// A stream silent this long is cut (as on a service's port).
    stall_timeout: Duration,
    members: Vec<Member>,
    affinity: Mutex<Affinity>,
    /// Seeds the conversation hashes (per pool, at random: nobody outside can aim at a collision).
    hashing: foldhash::quality::RandomState,
    directory: Option<Weak<dyn Directory>>,
    turn: AtomicUsize,
    pub(super) counters: Arc<Counters>,
    retries: AtomicU64,
}

/// What one listener is built from, besides the pool's own settings.
pub(super) struct PoolDoor {
    pub(super) loopback: bool,
    pub(super) cors: Cors,
    pub(super) domain_name: Option<String>,
    pub(super) request_timeout: Duration,
}

impl Pool {
    pub(super) fn new(
        spec: PoolSpec,
        door: PoolDoor,
        keys: SharedKeys,
        fronts: &[Arc<Front>],
        states: &HashMap<String, Arc<MemberState>>,
        counters: Arc<Counters>,
        directory: Option<Weak<dyn Directory>>,
    ) -> Pool {
        let members = spec
            .members
            .iter()
            .map(|(at, weight)| {
                let label = at.to_string();
                Member {
                    header: HeaderValue::from_str(&label)
                        .unwrap_or_else(|_| HeaderValue::from_static("?")),
                    local: match at {
                        MemberRef::Local(name) => {
                            fronts.iter().find(|f| &f.cfg.spec.name == name).cloned()
                        }
                        MemberRef::Remote { .. } => None,
                    },
                    state: states.get(&label).cloned().unwrap_or_default(),
                    at: at.clone(),
                    label,
                    weight: *weight,
                }
            })
            .collect();
        Pool {
            member_timeout: spec
                .member_timeout_s
                .map(Duration::from_secs_f64)
                .unwrap_or(door.request_timeout),
            stall_timeout: door.request_timeout,
            loopback: door.loopback,
            cors: door.cors,
            domain_name: door.domain_name,
            keys,
            members,
            affinity: Mutex::new(Affinity::default()),
            hashing: foldhash::quality::RandomState::default(),
            directory,
            turn: AtomicUsize::new(0),
            counters,
            retries: AtomicU64::new(0),
            spec,
        }
    }

    /// Each member's state by its label, to carry over a rebuild.
    pub(super) fn member_states(&self) -> impl Iterator<Item = (String, Arc<MemberState>)> + '_ {
        self.members
            .iter()
            .map(|m| (m.label.clone(), m.state.clone()))
    }

    pub(super) fn authorize(&self, keys: &KeySet, headers: &axum::http::HeaderMap) -> Auth {
        auth::authorize(keys, &self.spec.name, self.loopback, headers)
    }

    /// Can the member take a request now? `Err` says why not.
    fn available(&self, m: &Member) -> Result<Option<Upstream>, String> {
        match (&m.at, &m.local) {
            (MemberRef::Local(name), None) => Err(format!("[services.{name}] is not served")),
            (MemberRef::Local(_), Some(f)) => match f.state() {
                Some(State::Ready | State::Unhealthy) => Ok(None),
                Some(State::Idle) if f.cfg.spec.on_demand => Ok(None),
                s => Err(s.map(|s| s.as_str()).unwrap_or("unknown").to_string()),
            },
            (MemberRef::Remote { host, service }, _) => {
                let Some(dir) = self.directory.as_ref().and_then(|d| d.upgrade()) else {
                    return Err("no fleet".into());
                };
                dir.locate(host, service)
                    .map(|a| Some(Upstream::Remote(a.into())))
            }
        }
    }

    /// The member for the next attempt (skipping `tried`), with its upstream and whether affinity chose
    /// it; `Err` lists why no member can take it.
    fn pick(
        &self,
        tried: &[usize],
        prefer: Option<usize>,
    ) -> Result<(usize, Option<Upstream>, bool), String> {
        let now = Instant::now();
        let mut why = vec![];
        let mut open: Vec<(usize, Option<Upstream>, f64)> = vec![];
        for (i, m) in self.members.iter().enumerate() {
            if tried.contains(&i) {
                continue;
            }
            let in_flight = m.state.counters.in_flight.load(Ordering::Relaxed);
            {
                let mut f = m.state.failing.lock().unwrap();
                if let Some(until) = f.out_until {
                    if now < until {
                        why.push(format!(
                            "{}: out for failing ({})",
                            m.label,
                            f.last_error.as_deref().unwrap_or("errors")
                        ));
                        continue;
                    }
                    f.out_until = None;
                    f.probation = true;
                }
                if f.probation && in_flight > 0 {
                    why.push(format!("{}: on probation, busy", m.label));
                    continue;
                }
            }
            match self.available(m) {
                Ok(up) => open.push((i, up, (in_flight as f64 + 1.0) / m.weight)),
                Err(e) => why.push(format!("{}: {e}", m.label)),
            }
        }
        let least = open.iter().map(|o| o.2).fold(f64::INFINITY, f64::min);
        if let Some(p) = prefer {
            if let Some(o) = open.iter().position(|o| o.0 == p) {
                if open[o].2 <= least + AFFINITY_SLACK {
                    let (i, up, _) = open.swap_remove(o);
                    return Ok((i, up, true));
                }
            }
        }
        // Ties round-robin: start the scan at a turning offset.
        let n = open.len();
        if n == 0 {
            return Err(if why.is_empty() {
                "every member failed this request".into()
            } else {
                why.join("; ")
            });
        }
        let start = self.turn.fetch_add(1, Ordering::Relaxed) % n;
        let best = (0..n)
            .map(|k| (start + k) % n)
            .min_by(|&a, &b| open[a].2.total_cmp(&open[b].2))
            .unwrap_or(0);
        let (i, up, _) = open.swap_remove(best);
        Ok((i, up, false))
    }

    fn succeeded(&self, i: usize) {
        let mut f = self.members[i].state.failing.lock().unwrap();
        f.consecutive = 0;
        f.ejections = 0;
        f.probation = false;
    }

    fn failed(&self, i: usize, why: String) {
        let m = &self.members[i];
        m.state.counters.errors.fetch_add(1, Ordering::Relaxed);
        let mut f = m.state.failing.lock().unwrap();
        f.consecutive += 1;
        if f.probation || f.consecutive >= self.spec.max_failures {
            let factor = 1u32 << f.ejections.min(4);
            f.out_until =
                Some(Instant::now() + Duration::from_secs_f64(self.spec.probation_s) * factor);
            f.ejections += 1;
            f.consecutive = 0;
            f.probation = false;
        }
        f.last_error = Some(why);
    }

    pub(super) fn status(&self) -> PoolStatus {
        let now = Instant::now();
        PoolStatus {
            name: self.spec.name.clone(),
            port: self.spec.port,
            refused: self.counters.bad_requests.load(Ordering::Relaxed)
                + self.counters.unauthorized.load(Ordering::Relaxed)
                + self.counters.unavailable.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            members: self
                .members
                .iter()
                .map(|m| {
                    let f = m.state.failing.lock().unwrap();
                    let out = f.out_until.is_some_and(|u| now < u);
                    let (health, why) = match self.available(m) {
                        Err(e) => (MemberHealth::Out, Some(e)),
                        Ok(_) if out => (MemberHealth::Out, f.last_error.clone()),
                        Ok(_) if f.probation || f.out_until.is_some() => {
                            (MemberHealth::Probation, f.last_error.clone())
                        }
                        Ok(_) => (MemberHealth::In, None),
                    };
                    let c = m.state.counters.snapshot();
                    // A member of this Mac: its service's own tokens (the pool's requests among them).
                    let own = m.local.as_ref().map(|l| l.counters.snapshot());
                    PoolMemberStatus {
                        member: m.label.clone(),
                        weight: m.weight,
                        health,
                        why,
                        requests: c.requests,
                        errors: c.errors,
                        affinity_hits: m.state.affinity_hits.load(Ordering::Relaxed),
                        in_flight: c.in_flight,
                        output_tokens: own.as_ref().map_or(c.output_tokens, |o| o.output_tokens),
                        output_tok_s: own.as_ref().map_or(c.output_tok_s, |o| o.output_tok_s),
                    }
                })
                .collect(),
        }
    }

    pub(super) fn tick(&self, now: Instant) {
        self.counters.tick(now);
        for m in &self.members {
            m.state.counters.tick(now);
        }
    }

    /// Does a request naming `model` mean this pool (its name, an alias, a pattern of its aliases)?
    pub(super) fn serves(&self, model: &str) -> bool {
        model == self.spec.name || crate::config::alias::any_matches(&self.spec.aliases, model)
    }

    /// Does a request naming `model` name this pool exactly (its name or a plain alias)?
    pub(super) fn named(&self, model: &str) -> bool {
        model == self.spec.name || self.spec.aliases.iter().any(|a| a == model)
    }
}

/// Remembered conversations: the hash of a request's messages → the member that served it. Two
/// generations: when the newer fills up, the older is dropped (bounded, and what is in use survives).
#[derive(Default)]
struct Affinity {
    new: HashMap<u64, usize>,
    old: HashMap<u64, usize>,
}

impl Affinity {
    fn get(&self, h: u64) -> Option<usize> {
        self.new.get(&h).or_else(|| self.old.get(&h)).copied()
    }

    fn put(&mut self, h: u64, member: usize) {
        if self.new.len() >= AFFINITY_ENTRIES {
            self.old = std::mem::take(&mut self.new);
        }
        self.new.insert(h, member);
    }
}

/// The hashes of a request's message prefixes: `[h(m0), h(m0,m1), …]` (the last one is the whole
/// conversation so far).
fn prefix_hashes(bytes: &[u8], p: &body::Peek, hashing: &impl BuildHasher) -> Vec<u64> {
    let Some(range) = p.messages.clone() else {
        return vec![];
    };
    let Some(items) = bytes
        .get(range.clone())
        .and_then(|a| body::items(a, AFFINITY_MAX_MESSAGES))
    else {
        return vec![];
    };
    let mut h = hashing.build_hasher();
    items
        .into_iter()
        .map(|r| {
            let m = &bytes[range.start + r.start..range.start + r.end];
            h.write(m);
            h.write_usize(m.len()); // so that ["ab","c"] and ["a","bc"] differ
            h.finish()
        })
        .collect()
}

/// Counts a request in flight to a member of this Mac while its reply streams.
struct Tracked<B> {
    inner: B,
    _guard: InFlight,
}

impl<B: http_body::Body<Data = Bytes> + Unpin> http_body::Body for Tracked<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, B::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The pool's own port: the gates, the key, the body, then [`route`].
pub(super) async fn handle(pool: Arc<Pool>, req: Request) -> Response {
    match Api::of(req.uri().path()) {
        None => handle_request(pool, req, None).await,
        Some(agent) => in_shape(agent.0, handle_request(pool, req, Some(agent)).await).await,
    }
}

/// One request on the pool's port: an agent request (`agent`) is translated around [`route`].
async fn handle_request(pool: Arc<Pool>, req: Request, agent: Option<(Api, Route)>) -> Response {
    let started = Instant::now();
    pool.counters.requests.fetch_add(1, Ordering::Relaxed);
    let keys = pool.keys.read().unwrap().clone();
    let origin = req.headers().get(header::ORIGIN).cloned();
    if let Some(r) = refusal(pool.authorize(&keys, req.headers()), &pool.counters) {
        return r;
    }
    drop(keys);
    let (parts, body) = req.into_parts();
    if let Some((api, route)) = &agent {
        if let Some(r) = agent_early(*api, route, &parts) {
            if !r.status().is_success() {
                pool.counters.bad_requests.fetch_add(1, Ordering::Relaxed);
            }
            return r;
        }
    }
    let incoming = match read_incoming(&pool.counters, &parts, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    match agent {
        Some((api, r)) => {
            let p: &Pool = &pool;
            translated(p.agent_call(api), &r, parts, incoming, move |pp, i| {
                route(p, pp, i, origin, started)
            })
            .await
        }
        None => route(&pool, parts, incoming, origin, started).await,
    }
}

impl Pool {
    /// How an agent request is translated for this pool (its members' own settings apply on their side).
    pub(super) fn agent_call(&self, api: Api) -> AgentCall<'_> {
        AgentCall {
            api,
            thinking_allowed: true,
            default_model: &self.spec.name,
            counters: &self.counters,
        }
    }
}

/// An authorized request with its body in hand: the pool's model check, then members in turn until one
/// answers (or every one that may be tried has failed).
pub(super) async fn route(
    pool: &Pool,
    parts: axum::http::request::Parts,
    incoming: Incoming,
    origin: Option<HeaderValue>,
    started: Instant,
) -> Response {
    let Incoming { bytes, _permit } = incoming;
    let peek = match bytes.as_ref().filter(|b| body::is_json_object(b)) {
        Some(b) => match check_body(pool, b) {
            Ok(p) => Some(p),
            Err(msg) => {
                pool.counters.bad_requests.fetch_add(1, Ordering::Relaxed);
                return openai_error(StatusCode::BAD_REQUEST, "invalid_request_error", &msg);
            }
        },
        None => None,
    };
    let hashes = match (&bytes, &peek) {
        (Some(b), Some(p)) if pool.spec.affinity => prefix_hashes(b, p, &pool.hashing),
        _ => vec![],
    };
    let prefer = preferred(pool, &hashes);
    let request = (&parts, &bytes, &peek, started);
    let mut tried: Vec<usize> = vec![];
    let mut last: Option<Response> = None;
    while tried.len() < MAX_ATTEMPTS.min(pool.members.len()) {
        let (i, upstream, by_affinity) = match pool.pick(&tried, prefer) {
            Ok(p) => p,
            Err(why) if last.is_none() => {
                pool.counters.unavailable.fetch_add(1, Ordering::Relaxed);
                return openai_error_with(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "service_unavailable",
                    &format!(
                        "no member of pool `{}` can take requests now: {why}",
                        pool.spec.name
                    ),
                    header::RETRY_AFTER,
                    "5",
                );
            }
            Err(_) => break,
        };
        if !tried.is_empty() {
            pool.retries.fetch_add(1, Ordering::Relaxed);
        }
        tried.push(i);
        let m = &pool.members[i];
        match try_member(pool, m, upstream, by_affinity, request).await {
            Tried::Answered(mut r) => {
                pool.succeeded(i);
                if let Some(h) = hashes.last() {
                    pool.affinity.lock().unwrap().put(*h, i);
                }
                r.headers_mut().insert("x-mlx-box-member", m.header.clone());
                pool.cors.answer_headers(origin.as_ref(), r.headers_mut());
                return r;
            }
            Tried::Busy(r) => last = Some(r),
            Tried::Failed(why, r) => {
                tracing::info!(pool = %pool.spec.name, member = %m.label, "member failed: {why}");
                pool.failed(i, why.clone());
                last = Some(r.unwrap_or_else(|| {
                    openai_error(
                        StatusCode::BAD_GATEWAY,
                        "upstream_error",
                        &format!("pool `{}`: member {}: {why}", pool.spec.name, m.label),
                    )
                }));
            }
        }
    }
    let mut r = last.unwrap_or_else(|| {
        openai_error(
            StatusCode::BAD_GATEWAY,
            "upstream_error",
            "no member answered",
        )
    });
    pool.counters.errors.fetch_add(1, Ordering::Relaxed);
    pool.cors.answer_headers(origin.as_ref(), r.headers_mut());
    r
}

/// The pool's model policy on a JSON body: its `model` names the pool or an alias (or none), and
/// nothing in it loads another model unless every member of this Mac allows any model (another Mac's
/// member applies its own policy too). Err: why not, for a 400.
fn check_body(pool: &Pool, b: &Bytes) -> Result<body::Peek, String> {
    let p = body::peek(b).map_err(|e| e.to_string())?;
    match &p.model {
        Some((_, Some(m))) if !m.is_empty() && !pool.serves(m) => {
            let mut names = vec![format!("`{}`", pool.spec.name)];
            names.extend(pool.spec.aliases.iter().map(|a| format!("`{a}`")));
            return Err(format!(
                "model `{m}` is not served here: pool `{}` serves {}",
                pool.spec.name,
                names.join(", ")
            ));
        }
        Some((r, None)) if &b[r.clone()] != b"null" => {
            return Err("`model` must be a string".into());
        }
        _ => {}
    }
    if let Some(field) = p.loads_other.first() {
        let allowed = pool
            .members
            .iter()
            .filter_map(|m| m.local.as_ref())
            .all(|f| f.cfg.spec.allow_any_model);
        if !allowed {
            return Err(format!(
                "`{field}` asks the server to load another model, which pool `{}` does not allow",
                pool.spec.name
            ));
        }
    }
    Ok(p)
}

/// The member that served the longest earlier conversation this one continues (not this very request
/// sent again; a first turn continues nothing).
fn preferred(pool: &Pool, hashes: &[u64]) -> Option<usize> {
    if hashes.len() <= 1 {
        return None;
    }
    let a = pool.affinity.lock().unwrap();
    hashes
        .iter()
        .rev()
        .skip(1)
        .find_map(|h| a.get(*h))
        .filter(|&i| i < pool.members.len())
}

/// What one member made of a request.
enum Tried {
    Answered(Response),
    /// Its max_concurrency queue is full: not a failure, but another member may be free.
    Busy(Response),
    /// Why it failed, and its answer when it gave one (a 502–504).
    Failed(String, Option<Response>),
}

/// The request as every member gets it: its head, body, what the policy read of the body, and when it
/// arrived.
type PoolRequest<'a> = (
    &'a axum::http::request::Parts,
    &'a Option<Bytes>,
    &'a Option<body::Peek>,
    Instant,
);

/// Sends the request to member `m` (its counters kept), bounded by `member_timeout_s` unless the
/// member's own request timeout is shorter.
async fn try_member(
    pool: &Pool,
    m: &Member,
    upstream: Option<Upstream>,
    by_affinity: bool,
    (parts, bytes, peek, started): PoolRequest<'_>,
) -> Tried {
    m.state.counters.requests.fetch_add(1, Ordering::Relaxed);
    if by_affinity {
        m.state.affinity_hits.fetch_add(1, Ordering::Relaxed);
    }
    m.state.counters.in_flight.fetch_add(1, Ordering::Relaxed);
    let guard = InFlight {
        counters: m.state.counters.clone(),
        _slot: None,
        _admitted: None,
    };
    // The body for this member: `model` names its model id (a service of this Mac: its front then
    // leaves the body as it is), or its service (another Mac's, whose front maps it to its model).
    let service = match (&m.at, &m.local) {
        (_, Some(f)) if f.cfg.spec.model.is_some() => f.cfg.spec.model.as_deref().unwrap_or(""),
        (MemberRef::Local(s) | MemberRef::Remote { service: s, .. }, _) => s.as_str(),
    };
    let body = match (bytes, peek) {
        (Some(b), Some(p)) => Some(Bytes::from(body::with_model(b, p, service))),
        (b, _) => b.clone(),
    };
    let bounded_by_front = m
        .local
        .as_ref()
        .is_some_and(|f| f.cfg.timeout <= pool.member_timeout);
    let streaming = parts.method == Method::POST && peek.as_ref().is_some_and(|p| p.stream);
    let attempt = attempt(pool, m, upstream, parts, (body, streaming), guard, started);
    // A member of this Mac is bounded by its own request timeout already: no second timer.
    let attempt = if bounded_by_front {
        Ok(attempt.await)
    } else {
        tokio::time::timeout(pool.member_timeout, attempt).await
    };
    match attempt {
        Ok(Ok(r)) if r.status() == StatusCode::TOO_MANY_REQUESTS => Tried::Busy(r),
        Ok(Ok(r)) if matches!(r.status().as_u16(), 502..=504) => {
            Tried::Failed(format!("answered {}", r.status().as_u16()), Some(r))
        }
        Ok(Ok(r)) => Tried::Answered(r),
        Ok(Err(why)) => Tried::Failed(why, None),
        Err(_) => Tried::Failed(
            format!(
                "no answer within {} s (member_timeout_s)",
                pool.member_timeout.as_secs_f64()
            ),
            None,
        ),
    }
}

/// A request as the client sent it, once more (the head is cloned for each attempt).
fn copy_parts(p: &axum::http::request::Parts) -> axum::http::request::Parts {
    let mut r = axum::http::Request::new(());
    *r.method_mut() = p.method.clone();
    *r.uri_mut() = p.uri.clone();
    *r.version_mut() = p.version;
    *r.headers_mut() = p.headers.clone();
    r.into_parts().0
}

/// One try on one member: the reply's head (its body streams), or why there is none.
async fn attempt(
    pool: &Pool,
    m: &Member,
    upstream: Option<Upstream>,
    parts: &axum::http::request::Parts,
    (body, streaming): (Option<Bytes>, bool),
    guard: InFlight,
    started: Instant,
) -> Result<Response, String> {
    if let Some(front) = &m.local {
        let incoming = Incoming {
            bytes: body,
            _permit: None,
        };
        // The member's own request policy applies, as on its port: its methods and management routes,
        // the body's shape and its model (spliced above to its model id), its defaults.
        let r = serve(front, copy_parts(parts), incoming, None, started).await;
        let (head, b) = r.into_parts();
        return Ok(Response::from_parts(
            head,
            Body::new(Tracked {
                inner: b,
                _guard: guard,
            }),
        ));
    }
    let Some(upstream) = upstream else {
        return Err("no address".into());
    };
    // The client's key goes on (the member checks it too).
    let host = HeaderValue::from_str(&upstream.to_string())
        .unwrap_or_else(|_| HeaderValue::from_static("localhost"));
    let resp = backend::send(&upstream, &host, parts, body)
        .await
        .map_err(|e| e.to_string())?;
    let (rparts, incoming) = resp.into_parts();
    let mut headers = rparts.headers;
    let sse = downstream_head(&mut headers, true);
    let meter = Meter::new(m.state.counters.clone(), sse || streaming, guard);
    let relay = Relay {
        inner: incoming,
        meter,
        timeout: pool.stall_timeout,
        stall: None,
    };
    let mut out = Response::new(Body::new(relay));
    *out.status_mut() = rparts.status;
    *out.headers_mut() = headers;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(toml: &str) -> Pool {
        let (s, d) = crate::config::parse_settings(std::path::Path::new("s.toml"), toml);
        let s = s.unwrap_or_else(|| panic!("{d:?}"));
        let spec = s.pools[0].clone();
        Pool::new(
            spec,
            PoolDoor {
                loopback: true,
                cors: Cors::default(),
                domain_name: None,
                request_timeout: Duration::from_secs(5),
            },
            Default::default(),
            &[],
            &HashMap::new(),
            Default::default(),
            Some(Arc::downgrade(&(Arc::new(AllReady) as Arc<dyn Directory>))),
        )
    }

    struct AllReady;
    impl Directory for AllReady {
        fn locate(&self, host: &str, _: &str) -> Result<String, String> {
            Ok(format!("{host}:1"))
        }
    }

    const HOSTS: &str = "[hosts.a]\naddress = \"198.18.0.2:9443\"\nfingerprint = \"AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA\"\n[hosts.b]\naddress = \"198.18.0.3:9443\"\nfingerprint = \"AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA\"\n";

    #[test]
    fn messages_prefixes_hash_the_same_way_whatever_follows() {
        let a = br#"{"model":"p","messages":[{"role":"user","content":"hi"}]}"#;
        let b = br#"{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"yo"},{"role":"user","content":"more"}],"stream":true}"#;
        let seed = foldhash::quality::RandomState::default();
        let ha = prefix_hashes(a, &body::peek(a).unwrap(), &seed);
        let hb = prefix_hashes(b, &body::peek(b).unwrap(), &seed);
        assert_eq!(ha.len(), 1);
        assert_eq!(hb.len(), 3);
        assert_eq!(ha[0], hb[0], "the same first message");
        assert_ne!(hb[1], hb[2]);
        assert!(prefix_hashes(b"{}", &body::peek(b"{}").unwrap(), &seed).is_empty());
    }

    #[test]
    fn least_outstanding_by_weight_with_round_robin_ties() {
        // No directory behind the weak handle here: make one that lives.
        let dir: Arc<dyn Directory> = Arc::new(AllReady);
        let mut p = pool(&format!(
            "{HOSTS}[services.x]\nport = 9000\nmodel = \"m\"\n[pools.p]\nport = 9100\nmembers = [\"a/chat\", \"b/chat\"]\nweights = [1, 2]\n"
        ));
        p.directory = Some(Arc::downgrade(&dir));
        let mut counts = [0usize; 2];
        // Requests that stay in flight: b (weight 2) should hold twice a's.
        for _ in 0..30 {
            let (i, up, aff) = p.pick(&[], None).unwrap();
            assert!(!aff && up.is_some());
            p.members[i]
                .state
                .counters
                .in_flight
                .fetch_add(1, Ordering::Relaxed);
            counts[i] += 1;
        }
        assert_eq!(counts, [10, 20]);
        // Equal load, equal weight: turns alternate.
        let p2 = pool(&format!(
            "{HOSTS}[services.x]\nport = 9000\nmodel = \"m\"\n[pools.p]\nport = 9100\nmembers = [\"a/chat\", \"b/chat\"]\n"
        ));
        let mut p2 = p2;
        p2.directory = Some(Arc::downgrade(&dir));
        let picks: Vec<usize> = (0..6).map(|_| p2.pick(&[], None).unwrap().0).collect();
        assert_eq!(picks.iter().filter(|&&i| i == 0).count(), 3, "{picks:?}");
        // Affinity wins while the member is not overloaded, and not beyond.
        assert_eq!(
            p2.pick(&[], Some(1)).unwrap(),
            (1, Some(Upstream::Remote("b:1".into())), true)
        );
        p2.members[1]
            .state
            .counters
            .in_flight
            .store(5, Ordering::Relaxed);
        assert_eq!(p2.pick(&[], Some(1)).unwrap().0, 0, "overloaded: by load");
        // Tried members are skipped.
        assert_eq!(p2.pick(&[0], None).unwrap().0, 1);
        assert!(p2.pick(&[0, 1], None).is_err());
    }

    #[test]
    fn failing_members_go_out_and_come_back_on_probation() {
        let dir: Arc<dyn Directory> = Arc::new(AllReady);
        let mut p = pool(&format!(
            "{HOSTS}[services.x]\nport = 9000\nmodel = \"m\"\n[pools.p]\nport = 9100\nmembers = [\"a/chat\", \"b/chat\"]\nmax_failures = 2\nprobation_s = 0.2\n"
        ));
        p.directory = Some(Arc::downgrade(&dir));
        p.failed(0, "refused".into());
        assert_eq!(
            p.status().members[0].health,
            MemberHealth::In,
            "one failure"
        );
        p.failed(0, "refused".into());
        let s = p.status();
        assert_eq!(s.members[0].health, MemberHealth::Out);
        assert_eq!(s.members[0].why.as_deref(), Some("refused"));
        for _ in 0..5 {
            assert_eq!(p.pick(&[], Some(0)).unwrap().0, 1, "out: never picked");
        }
        std::thread::sleep(Duration::from_millis(250));
        // Back on probation: picked (it has nothing in flight), then not while its one request runs.
        assert_eq!(p.pick(&[1], None).unwrap().0, 0);
        assert_eq!(p.status().members[0].health, MemberHealth::Probation);
        p.members[0]
            .state
            .counters
            .in_flight
            .store(1, Ordering::Relaxed);
        assert!(p.pick(&[1], None).is_err());
        // A failure on probation: out again, for twice as long.
        p.failed(0, "refused again".into());
        assert_eq!(p.status().members[0].health, MemberHealth::Out);
        p.members[0]
            .state
            .counters
            .in_flight
            .store(0, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(250));
        assert!(p.pick(&[1], None).is_err(), "0.4 s this time");
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(p.pick(&[1], None).unwrap().0, 0);
        p.succeeded(0);
        assert_eq!(p.status().members[0].health, MemberHealth::In);
    }

    /// A member that always answers `status` (HTTP/1.1, keep-alive), on 127.0.0.1.
    fn member_answering(status: u16) -> u16 {
        use std::io::{Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(mut c) = c else { return };
                std::thread::spawn(move || {
                    let mut buf = [0u8; 8192];
                    let mut got = Vec::new();
                    loop {
                        match c.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                        // One request: its head and its Content-Length's worth of body.
                        let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
                            continue;
                        };
                        let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length: "))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        if got.len() < end + 4 + len {
                            continue;
                        }
                        got.drain(..end + 4 + len);
                        let body = format!("{{\"status\":{status}}}");
                        let _ = write!(
                            c,
                            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                    }
                });
            }
        });
        port
    }

    struct Ports(u16, u16);
    impl Directory for Ports {
        fn locate(&self, host: &str, _: &str) -> Result<String, String> {
            Ok(format!(
                "127.0.0.1:{}",
                if host == "a" { self.0 } else { self.1 }
            ))
        }
    }

    async fn send(p: &Pool) -> (u16, String) {
        let req = axum::http::Request::post("/v1/chat/completions")
            .header("content-type", "application/json")
            .body(())
            .unwrap();
        let (parts, ()) = req.into_parts();
        let body =
            Bytes::from_static(br#"{"model":"p","messages":[{"role":"user","content":"hi"}]}"#);
        let incoming = Incoming {
            bytes: Some(body),
            _permit: None,
        };
        let r = route(p, parts, incoming, None, Instant::now()).await;
        let who = r
            .headers()
            .get("x-mlx-box-member")
            .map(|v| v.to_str().unwrap_or("").to_string())
            .unwrap_or_default();
        (r.status().as_u16(), who)
    }

    /// Before a byte reached the client: a member that answers 503 fails and the request goes to the
    /// other; one that answers 429 is busy (tried elsewhere, not counted as failing).
    #[tokio::test(flavor = "current_thread")]
    async fn a_failing_or_busy_member_hands_the_request_to_another() {
        let toml = format!(
            "{HOSTS}[services.x]\nport = 9000\nmodel = \"m\"\n[pools.p]\nport = 9100\nmembers = [\"a/chat\", \"b/chat\"]\nmax_failures = 5\n"
        );
        for (status, counts_as_failure) in [(503u16, true), (429, false)] {
            let dir: Arc<dyn Directory> =
                Arc::new(Ports(member_answering(status), member_answering(200)));
            let mut p = pool(&toml);
            p.directory = Some(Arc::downgrade(&dir));
            for _ in 0..4 {
                assert_eq!(send(&p).await, (200, "b/chat".to_string()), "{status}");
            }
            let s = p.status();
            let a = &s.members[0];
            assert_eq!(a.errors > 0, counts_as_failure, "{status}: {a:?}");
            assert!(s.retries >= 1, "{s:?}");
            assert_eq!(s.members[1].requests, 4);
        }
    }

    #[test]
    fn affinity_memory_is_bounded() {
        let mut a = Affinity::default();
        for h in 0..(AFFINITY_ENTRIES as u64 * 3) {
            a.put(h, 1);
        }
        assert!(a.new.len() + a.old.len() <= 2 * AFFINITY_ENTRIES);
        assert_eq!(a.get(AFFINITY_ENTRIES as u64 * 3 - 1), Some(1));
        assert_eq!(a.get(0), None);
    }
}
