//! `[pools.NAME]`: one frontend over the same model served by several members (this Mac's services, or
//! `HOST/SERVICE` on the Macs of `[hosts]`).

use super::ctx::{type_name, value_span, Ctx, TableView};
use crate::config::settings::{HostSpec, MemberRef, PoolSpec, ServerSettings, ServiceSpec};
use mlxbox_api::settings::{self as schema, Section};
use toml_edit::Item;

/// Members of one pool at most: a pool of Macs, not of thousands.
const MAX_MEMBERS: usize = 64;

pub(super) fn parse_pools(
    cx: &mut Ctx,
    item: Option<&Item>,
    server: &ServerSettings,
    hosts: &[HostSpec],
    services: &[ServiceSpec],
) -> Vec<PoolSpec> {
    let mut out: Vec<PoolSpec> = vec![];
    let Some(t) = item.and_then(|i| i.as_table_like()) else {
        return out;
    };
    for (name, item) in t.iter() {
        let span = t.key(name).and_then(|k| k.span());
        let Some(pt) = item.as_table_like() else {
            cx.error(
                value_span(item),
                format!("`pools.{name}` must be a table, found {}", type_name(item)),
                Some(format!("write it as [pools.{name}] with members = [...]")),
            );
            continue;
        };
        let v = TableView {
            table: pt,
            where_: format!("[pools.{name}]"),
            section: Some(Section::Pools),
        };
        v.unknown_keys(cx, &schema::names(Section::Pools));
        if services.iter().any(|s| s.name == name) {
            cx.error(
                span.clone(),
                format!("[pools.{name}] has the name of a service"),
                Some("a request names a pool or a service by `model`: rename one".into()),
            );
            continue;
        }
        let written = v.str_list(cx, "members").unwrap_or_default();
        let members_span = v.get("members").and_then(value_span);
        if written.is_empty() {
            cx.error(
                members_span.or(span),
                format!("[pools.{name}] has no members"),
                Some("members = [\"chat\", \"studio-2/chat\"]".into()),
            );
            continue;
        }
        if written.len() > MAX_MEMBERS {
            cx.error(
                members_span,
                format!(
                    "[pools.{name}] has {} members; at most {MAX_MEMBERS}",
                    written.len()
                ),
                None,
            );
            continue;
        }
        let (mut members, mut bad) =
            parse_members(cx, name, &written, members_span, hosts, services);
        bad |= !parse_weights(cx, &v, &mut members, bad);
        let port = v.port(cx, "port");
        if let Some(p) = port {
            let taken = port_taken(p, server, services, &out);
            if let Some(other) = taken {
                bad = true;
                cx.error(
                    v.get("port").and_then(value_span),
                    format!("[pools.{name}] port {p} is also the port of {other}"),
                    Some("give the pool a port of its own".into()),
                );
            }
        } else if server.port.is_none() {
            cx.warn(
                span.clone(),
                format!("[pools.{name}] has no port and [server] port is off: it is not served"),
                Some("add `port = ...` to the pool, or [server] port".into()),
            );
        }
        if let Some(MemberRef::Remote { host, .. }) = members
            .iter()
            .map(|(m, _)| m)
            .find(|m| matches!(m, MemberRef::Remote { .. }))
        {
            // The member's own proxy checks the client's key, so the key travels with the request.
            cx.note(
                span.clone(),
                format!("[pools.{name}] sends requests to `{host}` over plain HTTP, with the client's API key: keep the link between the Macs private (a Thunderbolt bridge, a VPN)"),
            );
        }
        let pool = PoolSpec {
            name: name.to_string(),
            members,
            port,
            aliases: v.alias_list(cx, "aliases").unwrap_or_default(),
            affinity: v.bool(cx, "affinity").unwrap_or(true),
            member_timeout_s: v.float(cx, "member_timeout_s"),
            max_failures: v.int(cx, "max_failures").unwrap_or(3) as u32,
            probation_s: v.float(cx, "probation_s").unwrap_or(10.0),
        };
        if !bad {
            out.push(pool);
        }
    }
    out
}

/// `members`, each checked and listed once, weight 1; true beside them when one was wrong.
fn parse_members(
    cx: &mut Ctx,
    name: &str,
    written: &[String],
    span: Option<std::ops::Range<usize>>,
    hosts: &[HostSpec],
    services: &[ServiceSpec],
) -> (Vec<(MemberRef, f64)>, bool) {
    let mut members: Vec<(MemberRef, f64)> = vec![];
    let mut bad = false;
    for m in written {
        match member(m, hosts, services) {
            Ok(r) if members.iter().any(|(x, _)| x == &r) => {
                bad = true;
                cx.error(
                    span.clone(),
                    format!("[pools.{name}] lists `{m}` twice"),
                    Some("give it a weight instead (weights = [...])".into()),
                );
            }
            Ok(r) => members.push((r, 1.0)),
            Err(why) => {
                bad = true;
                cx.error(
                    span.clone(),
                    format!("[pools.{name}] member `{m}`: {why}"),
                    None,
                );
            }
        }
    }
    (members, bad)
}

/// `weights`, one per member in order (when a member was already wrong, as many as match). False when
/// they are wrong.
fn parse_weights(
    cx: &mut Ctx,
    v: &TableView,
    members: &mut [(MemberRef, f64)],
    members_bad: bool,
) -> bool {
    let Some(item) = v.get("weights") else {
        return true;
    };
    let where_ = &v.where_;
    match weights(item) {
        Some(w) if w.len() == members.len() || members_bad => {
            for (m, w) in members.iter_mut().zip(w) {
                m.1 = w;
            }
            true
        }
        Some(w) => {
            cx.error(
                value_span(item),
                format!(
                    "{where_} has {} weights for {} members",
                    w.len(),
                    members.len()
                ),
                Some("one weight per member, in the order of members".into()),
            );
            false
        }
        None => {
            cx.error(
                value_span(item),
                format!("`weights` in {where_} must be numbers above 0 (at most 1000)"),
                Some("for example `weights = [1, 2]`".into()),
            );
            false
        }
    }
}

/// What else listens on port `p`: an enabled service, the endpoint, or a pool before this one.
fn port_taken(
    p: u16,
    server: &ServerSettings,
    services: &[ServiceSpec],
    pools: &[PoolSpec],
) -> Option<String> {
    services
        .iter()
        .filter(|s| s.enabled)
        .find(|s| s.port == Some(p) || s.backend_port == Some(p))
        .map(|s| format!("[services.{}]", s.name))
        .or_else(|| (server.port == Some(p)).then(|| "[server] port".to_string()))
        .or_else(|| {
            pools
                .iter()
                .find(|o| o.port == Some(p))
                .map(|o| format!("[pools.{}]", o.name))
        })
}

/// `SERVICE` or `HOST/SERVICE`, checked against the settings.
fn member(m: &str, hosts: &[HostSpec], services: &[ServiceSpec]) -> Result<MemberRef, String> {
    match m.split_once('/') {
        Some((host, service)) => {
            if !hosts.iter().any(|h| h.name == host) {
                return Err(format!(
                    "no host `{host}` in [hosts] (add it with `mlx-box hosts add {host} ADDRESS`)"
                ));
            }
            if service.is_empty() || service.contains('/') {
                return Err("write HOST/SERVICE".into());
            }
            Ok(MemberRef::Remote {
                host: host.into(),
                service: service.into(),
            })
        }
        None => match services.iter().find(|s| s.name == m) {
            None => {
                Err("no such service on this Mac (for another Mac's, write HOST/SERVICE)".into())
            }
            Some(s) if s.backend_port.is_none() => Err(format!(
                "[services.{m}] has no backend_port: the pool reaches a service through its proxy"
            )),
            Some(s) if !s.enabled => Err(format!("[services.{m}] is disabled")),
            Some(_) => Ok(MemberRef::Local(m.into())),
        },
    }
}

/// Numbers (or numeric strings, as the Settings form writes a list) above 0, at most 1000.
fn weights(item: &Item) -> Option<Vec<f64>> {
    item.as_array()?
        .iter()
        .map(|v| {
            v.as_float()
                .or_else(|| v.as_integer().map(|i| i as f64))
                .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
                .filter(|w: &f64| *w > 0.0 && *w <= 1000.0)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::config::{parse_settings, MemberRef};
    use std::path::Path;

    const BASE: &str = "[hosts.b]\naddress = \"198.18.0.2:9443\"\nfingerprint = \"AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA\"\n[services.fast]\nport = 8080\nbackend_port = 8081\nmodel = \"m\"\n[services.plain]\nport = 8090\nmodel = \"m\"\n";

    #[test]
    fn a_pool_of_a_local_and_a_remote_member() {
        let (s, d) = parse_settings(
            Path::new("s.toml"),
            &format!("{BASE}[pools.p]\nmembers = [\"fast\", \"b/fast\"]\nweights = [1, \"2.5\"]\nport = 8100\n"),
        );
        let s = s.unwrap_or_else(|| panic!("{d:?}"));
        let p = &s.pools[0];
        assert_eq!(p.members[0], (MemberRef::Local("fast".into()), 1.0));
        assert_eq!(
            p.members[1],
            (
                MemberRef::Remote {
                    host: "b".into(),
                    service: "fast".into()
                },
                2.5
            )
        );
        assert!(p.affinity && p.max_failures == 3 && p.probation_s == 10.0);
    }

    #[test]
    fn bad_pools_are_positioned_errors() {
        for (bad, why) in [
            ("members = [\"nope\"]\nport = 8100\n", "no such service"),
            (
                "members = [\"plain\"]\nport = 8100\n",
                "has no backend_port",
            ),
            ("members = [\"c/fast\"]\nport = 8100\n", "no host `c`"),
            ("members = [\"fast\", \"fast\"]\nport = 8100\n", "twice"),
            (
                "members = [\"fast\"]\nweights = [1, 2]\nport = 8100\n",
                "2 weights for 1 members",
            ),
            (
                "members = [\"fast\"]\nweights = [0]\nport = 8100\n",
                "above 0",
            ),
            (
                "members = [\"fast\"]\nport = 8081\n",
                "also the port of [services.fast]",
            ),
            ("members = []\nport = 8100\n", "no members"),
        ] {
            let (s, d) = parse_settings(Path::new("s.toml"), &format!("{BASE}[pools.p]\n{bad}"));
            assert!(s.is_none(), "{bad}");
            assert!(
                d.iter().any(|d| d.message.contains(why) && d.line >= 12),
                "{bad}: {d:?}"
            );
        }
        let (s, d) = parse_settings(
            Path::new("s.toml"),
            &format!("{BASE}[pools.fast]\nmembers = [\"fast\"]\nport = 8100\n"),
        );
        assert!(s.is_none() && d.iter().any(|d| d.message.contains("name of a service")));
        // No port and no [server] port: valid, with a warning that it is not served.
        let (s, d) = parse_settings(
            Path::new("s.toml"),
            &format!("{BASE}[pools.p]\nmembers = [\"fast\"]\n"),
        );
        assert!(s.is_some() && d.iter().any(|d| d.message.contains("not served")));
    }
}
