//! `[metrics]`: a TCP address that serves `/metrics` besides the control socket (off loopback, behind the
//! API keys).

use super::ctx::{value_span, Ctx, TableView};
use crate::config::settings::MetricsSettings;
use mlxbox_api::settings::{self as schema, Section};
use toml_edit::Item;

pub(super) fn parse_metrics(cx: &mut Ctx, item: Option<&Item>) -> MetricsSettings {
    let mut m = MetricsSettings::default();
    let Some(t) = item.and_then(|i| i.as_table_like()) else {
        return m;
    };
    let v = TableView {
        table: t,
        where_: "[metrics]".into(),
        section: Some(Section::Metrics),
    };
    v.unknown_keys(cx, &schema::names(Section::Metrics));
    if let Some(a) = v.str(cx, "listen") {
        let span = v.get("listen").and_then(value_span);
        match a.parse::<std::net::SocketAddr>() {
            // Off loopback anyone who can reach it reads the machine's state: the listener then asks
            // for an API key (scope `metrics`) on every scrape.
            Ok(addr) => m.listen = Some(addr),
            Err(_) => cx.error(
                span,
                format!("[metrics] listen = \"{a}\" is not an address with a port"),
                Some("for example \"127.0.0.1:9464\"".to_string()),
            ),
        }
    }
    if let Some(b) = v.bool(cx, "requests") {
        m.requests = b;
    }
    m
}
