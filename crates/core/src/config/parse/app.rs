//! `[app]`: the interpreter, log rotation, restart stability, the menu-bar app's preferences.

use super::ctx::{value_span, Ctx, TableView};
use crate::config::settings::{AppSettings, PreventSleep};
use mlxbox_api::settings::{self as schema, Section};
use toml_edit::Item;

/// `memory_budget_gb` and `memory_gb` are in GiB, as `mlx-box estimate` prints them.
pub(super) const GB: f64 = (1u64 << 30) as f64;

pub(super) fn parse_app(cx: &mut Ctx, item: Option<&Item>) -> AppSettings {
    let mut a = AppSettings::default();
    let Some(t) = item.and_then(|i| i.as_table_like()) else {
        return a;
    };
    let v = TableView {
        table: t,
        where_: "[app]".into(),
        section: Some(Section::App),
    };
    v.unknown_keys(cx, &schema::names(Section::App));
    a.python = v.str(cx, "python");
    if let Some(n) = v.int(cx, "log_max_bytes") {
        a.log_max_bytes = n as u64;
    }
    if let Some(n) = v.int(cx, "log_files") {
        a.log_files = n as u32;
    }
    if let Some(n) = v.int(cx, "log_tail_lines") {
        a.log_tail_lines = n as usize;
    }
    if let Some(b) = v.bool(cx, "stop_servers_on_quit") {
        a.stop_servers_on_quit = b;
    }
    if let Some(b) = v.bool(cx, "refuse_over_budget") {
        a.refuse_over_budget = b;
    }
    if let Some(gb) = v.float(cx, "memory_budget_gb") {
        a.memory_budget_bytes = Some((gb * GB) as u64);
    }
    if let Some(m) = v.str(cx, "notify_min_severity") {
        let levels = schema::find(Section::App, "notify_min_severity")
            .map(|k| k.options)
            .unwrap_or_default();
        if levels.contains(&m.as_str()) {
            a.notify_min_severity = m;
        } else {
            cx.error(
                v.get("notify_min_severity").and_then(value_span),
                format!("unknown notify_min_severity `{m}` in [app]"),
                Some("use \"info\", \"warning\", \"critical\" or \"off\"".to_string()),
            );
        }
    }
    if let Some(m) = v.str(cx, "prevent_sleep") {
        match PreventSleep::parse(&m) {
            Some(p) => a.prevent_sleep = p,
            None => cx.error(
                v.get("prevent_sleep").and_then(value_span),
                format!("unknown prevent_sleep `{m}` in [app]"),
                Some(
                    "use \"serving\" (while a model server is loaded), \"always\" or \"never\""
                        .to_string(),
                ),
            ),
        }
    }
    // Minimums (here and for backoff_max_s) keep a crash loop from becoming a restart storm.
    if let Some(x) = v.float(cx, "stable_after_s") {
        a.stable_after_s = x;
    }
    a
}
