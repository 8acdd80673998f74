//! The one endpoint (`[server] port`): the OpenAI API of every service on one port, routed by the
//! request's `model` (service name, alias or model id) to that service's front, where its key scope,
//! state, model policy, on-demand load, queue, filter and counters apply as on its own port.
//! `GET /v1/models` lists what it routes to, with each service's state, and `routes`: the alias
//! patterns (`aliases = ["claude-*"]`, `crate::config::alias`) in the order they are tried; in
//! Anthropic's list shape when the request sends `anthropic-version`.
//!
//! A `model` is routed, first match wins: a service's name, plain alias or model id (`routes`); a
//! pool's name or plain alias; then the alias patterns of services and pools together, the most
//! specific first (more literal characters, then the longer literal prefix, then file order).
//!
//! The key is checked against every service before a byte of the body is read (a key good for none is
//! refused at the door), and again against the service the body names.

use super::agents::{Api, Route};
use super::auth::{self, Auth, KeySet, SharedKeys};
use super::front::{agent_early, in_shape, openai_error, read_incoming, serve, translated, Front};
use super::listener::ListenerConfig;
use super::pool::Pool;
use super::stats::Counters;
use crate::config::alias::{self, Patterns};
use crate::gate;
use axum::extract::Request;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub(super) struct Endpoint {
    /// The `[server]` settings the gates read (any service's listener config has them).
    door: ListenerConfig,
    keys: SharedKeys,
    /// In file order.
    fronts: Vec<Arc<Front>>,
    /// Reached by their name or an alias (a pool's name is never a service's).
    pools: Vec<Arc<Pool>>,
    /// Service name, then aliases, then model id → front (the first service to claim a name keeps it).
    routes: HashMap<String, usize>,
    /// The alias patterns of services and pools, the most specific first.
    patterns: Patterns<Dest>,
    /// Refusals at the door (before a service is known).
    pub(super) counters: Arc<Counters>,
}

impl Endpoint {
    /// `None` when there is nothing to route to.
    pub(super) fn new(
        fronts: Vec<Arc<Front>>,
        pools: Vec<Arc<Pool>>,
        keys: SharedKeys,
    ) -> Option<Endpoint> {
        let door = fronts.first()?.cfg.clone();
        let mut routes = HashMap::new();
        // Names first: a service's name always reaches it, whatever another service's alias says.
        for (i, f) in fronts.iter().enumerate() {
            routes.entry(f.cfg.spec.name.clone()).or_insert(i);
        }
        for (i, f) in fronts.iter().enumerate() {
            for a in f.cfg.spec.aliases.iter().filter(|a| !alias::is_pattern(a)) {
                routes.entry(a.clone()).or_insert(i);
            }
        }
        let services = fronts.iter().enumerate().flat_map(|(i, f)| {
            f.cfg
                .spec
                .aliases
                .iter()
                .map(move |a| (a.clone(), Dest::Service(i)))
        });
        let in_pools = pools.iter().enumerate().flat_map(|(i, p)| {
            p.spec
                .aliases
                .iter()
                .map(move |a| (a.clone(), Dest::Pool(i)))
        });
        let patterns = Patterns::new(services.chain(in_pools));
        for (i, f) in fronts.iter().enumerate() {
            if let Some(m) = &f.cfg.spec.model {
                routes.entry(m.clone()).or_insert(i);
            }
        }
        Some(Endpoint {
            door,
            keys,
            fronts,
            pools,
            routes,
            patterns,
            counters: Default::default(),
        })
    }

    /// Where a request naming `model` goes (see the module's docs for the order).
    fn dest(&self, model: &str) -> Option<Dest> {
        if let Some(&i) = self.routes.get(model) {
            return Some(Dest::Service(i));
        }
        if let Some(i) = self.pools.iter().position(|p| p.named(model)) {
            return Some(Dest::Pool(i));
        }
        self.patterns.find(model).copied()
    }

    fn route(&self, model: &str) -> Option<&Arc<Front>> {
        match self.dest(model)? {
            Dest::Service(i) => self.fronts.get(i),
            Dest::Pool(_) => None,
        }
    }

    /// The patterns, in the order they are tried, with what each routes to (of what this key may use).
    fn pattern_routes(
        &self,
        fronts: &[&Arc<Front>],
        pools: &[&Arc<Pool>],
    ) -> Vec<serde_json::Value> {
        self.patterns
            .iter()
            .filter_map(|(p, d)| {
                let (kind, name) = match *d {
                    Dest::Service(i) => {
                        let f = self.fronts.get(i)?;
                        fronts
                            .iter()
                            .any(|a| Arc::ptr_eq(a, f))
                            .then_some(("service", &f.cfg.spec.name))?
                    }
                    Dest::Pool(i) => {
                        let pl = self.pools.get(i)?;
                        pools
                            .iter()
                            .any(|a| Arc::ptr_eq(a, pl))
                            .then_some(("pool", &pl.spec.name))?
                    }
                };
                Some(serde_json::json!({"pattern": p, kind: name}))
            })
            .collect()
    }

    /// The services a request with these headers may use.
    fn allowed(&self, keys: &KeySet, headers: &HeaderMap) -> Vec<&Arc<Front>> {
        self.fronts
            .iter()
            .filter(|f| {
                auth::authorize(keys, &f.cfg.spec.name, self.door.loopback, headers) == Auth::Ok
            })
            .collect()
    }

    fn listing(&self, fronts: &[&Arc<Front>]) -> Vec<serde_json::Value> {
        fronts
            .iter()
            .map(|f| {
                let spec = &f.cfg.spec;
                serde_json::json!({
                    "id": spec.name,
                    "object": "model",
                    "created": 0,
                    "owned_by": "mlx-box",
                    "model": spec.model,
                    "aliases": spec.aliases,
                    "state": f.state().map(|s| s.as_str()).unwrap_or("unknown"),
                    "on_demand": spec.on_demand,
                })
            })
            .collect()
    }

    fn names(&self, fronts: &[&Arc<Front>]) -> String {
        let n: Vec<String> = fronts
            .iter()
            .map(|f| match &f.cfg.spec.model {
                Some(m) => format!("`{}` ({m})", f.cfg.spec.name),
                None => format!("`{}`", f.cfg.spec.name),
            })
            .collect();
        if n.is_empty() {
            "nothing".into()
        } else {
            n.join(", ")
        }
    }

    fn refuse(&self, status: StatusCode, msg: &str, path: &str) -> Response {
        self.counters.bad_requests.fetch_add(1, Ordering::Relaxed);
        super::front::refusal_for(path, status, msg)
    }
}

/// What a model name routes to on the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dest {
    Service(usize),
    Pool(usize),
}

/// A model list in Anthropic's shape (`anthropic-version` sent): `type`, `id`, `display_name`,
/// `created_at`; `has_more`, `first_id`, `last_id`.
fn anthropic_models(
    data: &[serde_json::Value],
    routes: Vec<serde_json::Value>,
) -> serde_json::Value {
    let data: Vec<serde_json::Value> = data.iter().map(anthropic_model).collect();
    serde_json::json!({
        "data": data,
        "has_more": false,
        "first_id": data.first().map(|m| m["id"].clone()),
        "last_id": data.last().map(|m| m["id"].clone()),
        "routes": routes,
    })
}

fn anthropic_model(m: &serde_json::Value) -> serde_json::Value {
    let mut v = m.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("object");
        o.remove("created");
        o.remove("owned_by");
        o.insert("type".into(), "model".into());
        o.insert("display_name".into(), m["id"].clone());
        o.insert("created_at".into(), "1970-01-01T00:00:00Z".into());
    }
    v
}

pub(super) async fn handle(e: Arc<Endpoint>, req: Request) -> Response {
    match Api::of(req.uri().path()) {
        None => handle_request(e, req, None).await,
        Some(agent) => in_shape(agent.0, handle_request(e, req, Some(agent)).await).await,
    }
}

/// One request: an agent request (`agent`) is translated around the policy of the service or pool its
/// `model` names.
async fn handle_request(e: Arc<Endpoint>, req: Request, agent: Option<(Api, Route)>) -> Response {
    let started = std::time::Instant::now();
    e.counters.requests.fetch_add(1, Ordering::Relaxed);
    let keys = e.keys.read().unwrap().clone();
    let origin = req.headers().get(header::ORIGIN).cloned();
    let allowed = e.allowed(&keys, req.headers());
    let pools: Vec<&Arc<Pool>> = e
        .pools
        .iter()
        .filter(|p| p.authorize(&keys, req.headers()) == Auth::Ok)
        .collect();
    if allowed.is_empty() && pools.is_empty() {
        // Refused the way a service's port refuses (401, or 503 while the key store cannot be read).
        return match e.fronts.first() {
            Some(f) => f.authorize(&keys, req.headers()).unwrap_or_else(|| {
                openai_error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_request_error",
                    "no service",
                )
            }),
            None => e.refuse(
                StatusCode::NOT_FOUND,
                "this endpoint serves no service",
                req.uri().path(),
            ),
        };
    }
    let path = req.uri().path();
    let anthropic = req.headers().contains_key("anthropic-version");
    if req.method() == Method::GET && (path == "/v1/models" || path == "/v1/models/") {
        let mut data = e.listing(&allowed);
        data.extend(pools.iter().map(|p| {
            serde_json::json!({
                "id": p.spec.name,
                "object": "model",
                "created": 0,
                "owned_by": "mlx-box",
                "aliases": p.spec.aliases,
                "pool": p.status().members.iter().map(|m| &m.member).collect::<Vec<_>>(),
            })
        }));
        let routes = e.pattern_routes(&allowed, &pools);
        if anthropic {
            return axum::Json(anthropic_models(&data, routes)).into_response();
        }
        return axum::Json(serde_json::json!({"object": "list", "data": data, "routes": routes}))
            .into_response();
    }
    if let Some(id) = path.strip_prefix("/v1/models/") {
        if req.method() == Method::GET {
            return match e
                .route(id)
                .filter(|f| allowed.iter().any(|a| Arc::ptr_eq(a, f)))
            {
                Some(f) if anthropic => {
                    axum::Json(anthropic_model(&e.listing(&[f]).remove(0))).into_response()
                }
                Some(f) => axum::Json(e.listing(&[f]).remove(0)).into_response(),
                None => e.refuse(
                    StatusCode::NOT_FOUND,
                    &format!(
                        "model `{id}` is not served here; this endpoint serves {}",
                        e.names(&allowed)
                    ),
                    path,
                ),
            };
        }
    }
    let (parts, body) = req.into_parts();
    if let Some((api, route)) = &agent {
        if let Some(r) = agent_early(*api, route, &parts) {
            if !r.status().is_success() {
                e.counters.bad_requests.fetch_add(1, Ordering::Relaxed);
            }
            return r;
        }
    }
    let incoming = match read_incoming(&e.counters, &parts, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let asked = incoming
        .bytes
        .as_ref()
        .filter(|b| super::body::is_json_object(b))
        .and_then(|b| super::body::peek(b).ok())
        .and_then(|p| p.model)
        .and_then(|(_, text)| text);
    let Some(asked) = asked.filter(|m| !m.is_empty()) else {
        return e.refuse(
            StatusCode::BAD_REQUEST,
            &format!(
                "this endpoint serves several models: name one in the JSON body's `model` ({}); GET /v1/models lists them",
                e.names(&allowed)
            ),
            parts.uri.path(),
        );
    };
    let pool = match e.dest(&asked) {
        Some(Dest::Pool(i)) => e.pools.get(i),
        _ => None,
    };
    if let Some(p) = pool {
        if !pools.iter().any(|a| Arc::ptr_eq(a, p)) {
            p.counters.unauthorized.fetch_add(1, Ordering::Relaxed);
            return openai_error(
                StatusCode::UNAUTHORIZED,
                "invalid_request_error",
                &format!("this API key may not use pool `{}`", p.spec.name),
            );
        }
        drop(keys);
        p.counters.requests.fetch_add(1, Ordering::Relaxed);
        if let Some((api, route)) = &agent {
            let call = p.agent_call(*api);
            return translated(call, route, parts, incoming, move |pp, i| {
                super::pool::route(p, pp, i, origin, started)
            })
            .await;
        }
        return super::pool::route(p, parts, incoming, origin, started).await;
    }
    let Some(f) = e.route(&asked) else {
        return e.refuse(
            StatusCode::NOT_FOUND,
            &format!(
                "model `{asked}` is not served here; this endpoint serves {} (a service's name, model id or alias)",
                e.names(&allowed)
            ),
            parts.uri.path(),
        );
    };
    // The key may be scoped to other services than this one.
    f.counters.requests.fetch_add(1, Ordering::Relaxed);
    if let Some(r) = f.authorize(&keys, &parts.headers) {
        return r;
    }
    drop(keys);
    if let Some(r) = f.unavailable() {
        return r;
    }
    if let Some((api, route)) = &agent {
        if let Some(r) = f.refuses_agent(*api) {
            return r;
        }
        let fr: &Front = f;
        return translated(fr.agent_call(*api), route, parts, incoming, move |p, i| {
            serve(fr, p, i, origin, started)
        })
        .await;
    }
    serve(f, parts, incoming, origin, started).await
}

/// What a frontend listener serves: one service, a pool, or the one endpoint.
#[derive(Clone)]
pub(super) enum Target {
    Service(Arc<Front>),
    Endpoint(Arc<Endpoint>),
    Pool(Arc<Pool>),
}

/// No key at all (and the key store readable): the listener serves without one. Only a loopback listener
/// may, and only there does the door ask (the key set's lock is not taken for the others).
fn open(loopback: bool, keys: &SharedKeys) -> bool {
    loopback && {
        let k = keys.read().unwrap();
        k.is_empty() && k.store_error.is_none()
    }
}

impl Target {
    pub(super) fn counters(&self) -> &Counters {
        match self {
            Target::Service(f) => &f.counters,
            Target::Endpoint(e) => &e.counters,
            Target::Pool(p) => &p.counters,
        }
    }

    /// Serves this frontend on `listener` through the gate.
    pub(super) fn start(self, listener: std::net::TcpListener, name: String) -> gate::Listener {
        let spec = gate::Spec::frontend(name, super::runtime::proxy_runtimes());
        gate::Listener::start(listener, spec, self)
    }
}

impl gate::Handler for Target {
    fn door(&self) -> gate::Door<'_> {
        match self {
            Target::Service(f) => f.cfg.door(open(f.cfg.loopback, &f.keys)),
            Target::Endpoint(e) => e.door.door(open(e.door.loopback, &e.keys)),
            Target::Pool(p) => gate::Door {
                loopback: p.loopback,
                open: open(p.loopback, &p.keys),
                cors: &p.cors,
                domain_name: p.domain_name.as_deref(),
            },
        }
    }

    fn refuse(&self, status: StatusCode, msg: &str, path: &str) -> Response {
        self.counters().bad_requests.fetch_add(1, Ordering::Relaxed);
        super::front::refusal_for(path, status, msg)
    }

    fn refused_connection(&self) {
        self.counters()
            .refused_connections
            .fetch_add(1, Ordering::Relaxed);
    }

    async fn handle(self, req: Request, _peer: std::net::SocketAddr) -> Response {
        match self {
            Target::Service(f) => super::front::handle(f, req).await,
            Target::Endpoint(e) => handle(e, req).await,
            Target::Pool(p) => super::pool::handle(p, req).await,
        }
    }
}
