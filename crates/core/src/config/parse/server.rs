//! `[server]`: the bind address, the proxy's timeout, CORS origins, the domain name, plaintext API keys.

use super::ctx::{value_span, Ctx, TableView};
use crate::config::settings::ServerSettings;
use mlxbox_api::settings::{self as schema, Section};
use toml_edit::Item;

pub(super) fn parse_server(cx: &mut Ctx, item: Option<&Item>) -> ServerSettings {
    let mut s = ServerSettings::new("127.0.0.1");
    let Some(t) = item.and_then(|i| i.as_table_like()) else {
        return s;
    };
    let v = TableView {
        table: t,
        where_: "[server]".into(),
        section: Some(Section::Server),
    };
    v.unknown_keys(cx, &schema::names(Section::Server));
    if let Some(h) = v.str(cx, "host") {
        if h.parse::<std::net::IpAddr>().is_err() && h != "localhost" {
            cx.error(
                v.get("host").and_then(value_span),
                format!("[server] host `{h}` is not an IP address"),
                Some(
                    "use \"127.0.0.1\" (this Mac only) or \"0.0.0.0\" (every interface)"
                        .to_string(),
                ),
            );
        } else {
            s.host = h;
        }
    }
    // A blank key would match a request that sends none: refused where it is written.
    let blank = |cx: &mut Ctx, span, key: &str| {
        cx.error(
            span,
            format!(
                "`{key}` in [server] is empty: an empty key would let requests without a key in"
            ),
            Some("remove it, or make a real key with `mlx-box keys add`".to_string()),
        )
    };
    if let Some(k) = v.str(cx, "api_key") {
        if k.trim().is_empty() {
            blank(cx, v.get("api_key").and_then(value_span), "api_key");
        } else {
            s.api_keys.push(k);
        }
    }
    if let Some(ks) = v.str_list(cx, "api_keys") {
        let spans: Vec<_> = v
            .get("api_keys")
            .and_then(|i| i.as_array())
            .map(|a| a.iter().map(|x| x.span()).collect())
            .unwrap_or_default();
        for (i, k) in ks.into_iter().enumerate() {
            if k.trim().is_empty() {
                blank(cx, spans.get(i).cloned().flatten(), "api_keys");
            } else {
                s.api_keys.push(k);
            }
        }
    }
    if let Some(d) = v.str(cx, "domain_name") {
        if !d.is_empty() {
            s.domain_name = Some(d);
        }
    }
    if let Some(origins) = v.str_list(cx, "cors_origins") {
        for o in origins {
            let well_formed = o == "*"
                || (o.starts_with("http://") || o.starts_with("https://"))
                    && !o.ends_with('/')
                    && !o.contains(char::is_whitespace);
            if well_formed {
                s.cors_origins.push(o);
            } else {
                cx.error(
                    v.get("cors_origins").and_then(value_span),
                    format!("`{o}` in cors_origins of [server] is not an origin"),
                    Some("write scheme://host[:port] with no path, e.g. \"http://localhost:3000\", or \"*\"".to_string()),
                );
            }
        }
    }
    s.port = v.port(cx, "port");
    if let Some(t) = v.float(cx, "request_timeout_s") {
        s.request_timeout_s = t;
    }
    if let Some(n) = v.int(cx, "responses_max_count") {
        s.responses.max_count = n as usize;
    }
    if let Some(mb) = v.float(cx, "responses_max_mb") {
        s.responses.max_bytes = (mb * (1u64 << 20) as f64) as usize;
    }
    if let Some(d) = v.float(cx, "responses_keep_days") {
        s.responses.keep_s = ((d * 86_400.0) as u64).max(1);
    }
    s
}
