//! `[control]` (the remote control API's address) and `[hosts.NAME]` (other Macs' daemons: an address
//! and the fingerprint pinned for it).

use super::ctx::{type_name, value_span, Ctx, TableView};
use crate::config::settings::{ControlSettings, HostSpec};
use mlxbox_api::settings::{self as schema, Section};
use toml_edit::Item;

pub(super) fn parse_control(cx: &mut Ctx, item: Option<&Item>) -> ControlSettings {
    let mut c = ControlSettings::default();
    let Some(t) = item.and_then(|i| i.as_table_like()) else {
        return c;
    };
    let v = TableView {
        table: t,
        where_: "[control]".into(),
        section: Some(Section::Control),
    };
    v.unknown_keys(cx, &schema::names(Section::Control));
    if let Some(a) = v.str(cx, "listen") {
        match a.parse::<std::net::SocketAddr>() {
            Ok(addr) => c.listen = Some(addr),
            Err(_) => cx.error(
                v.get("listen").and_then(value_span),
                format!("[control] listen = \"{a}\" is not an address with a port"),
                Some(
                    "for example \"0.0.0.0:9443\" (every interface) or \"198.18.0.1:9443\" (one)"
                        .into(),
                ),
            ),
        }
    }
    c
}

pub(super) fn parse_hosts(cx: &mut Ctx, item: Option<&Item>) -> Vec<HostSpec> {
    let mut out = vec![];
    let Some(t) = item.and_then(|i| i.as_table_like()) else {
        return out;
    };
    for (name, item) in t.iter() {
        let Some(ht) = item.as_table_like() else {
            cx.error(
                value_span(item),
                format!("`hosts.{name}` must be a table, found {}", type_name(item)),
                Some(format!(
                    "write it as [hosts.{name}] with address and fingerprint"
                )),
            );
            continue;
        };
        let v = TableView {
            table: ht,
            where_: format!("[hosts.{name}]"),
            section: Some(Section::Hosts),
        };
        v.unknown_keys(cx, &schema::names(Section::Hosts));
        let span = t.key(name).and_then(|k| k.span());
        let address = v.str(cx, "address");
        if let Some(a) = &address {
            if a.rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())
                .is_none()
            {
                cx.error(
                    v.get("address").and_then(value_span),
                    format!("[hosts.{name}] address = \"{a}\" has no port"),
                    Some(
                        "HOST:PORT, the host's [control] listen (its `mlx-box control info`)"
                            .into(),
                    ),
                );
                continue;
            }
        }
        let fingerprint = v.str(cx, "fingerprint");
        let parsed = fingerprint
            .as_deref()
            .map(mlxbox_api::remote::parse_fingerprint);
        if let Some(None) = parsed {
            cx.error(
                v.get("fingerprint").and_then(value_span),
                format!("[hosts.{name}] fingerprint is not a SHA-256 fingerprint"),
                Some("copy it from `mlx-box control info` on that host (64 hex digits, `:` optional)".into()),
            );
            continue;
        }
        match (address, parsed.flatten()) {
            (Some(address), Some(fingerprint)) => out.push(HostSpec {
                name: name.to_string(),
                address,
                fingerprint,
            }),
            _ => cx.error(
                span,
                format!("[hosts.{name}] needs an address and a fingerprint"),
                Some(format!("`mlx-box hosts add {name} HOST:PORT` writes both")),
            ),
        }
    }
    out
}
