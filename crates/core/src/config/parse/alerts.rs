//! `[alerts]`: the monitor's thresholds, hysteresis and cooldown.

use super::ctx::{Ctx, TableView};
use crate::config::settings::AlertSettings;
use mlxbox_api::settings::{self as schema, Section};
use toml_edit::Item;

pub(super) fn parse_alerts(cx: &mut Ctx, item: Option<&Item>) -> AlertSettings {
    let mut a = AlertSettings::default();
    let Some(t) = item.and_then(|i| i.as_table_like()) else {
        return a;
    };
    let v = TableView {
        table: t,
        where_: "[alerts]".into(),
        section: Some(Section::Alerts),
    };
    v.unknown_keys(cx, &schema::names(Section::Alerts));
    if let Some(b) = v.bool(cx, "enabled") {
        a.enabled = b;
    }
    if let Some(x) = v.float(cx, "swap_warn_mb") {
        a.swap_warn_mb = x;
    }
    if let Some(x) = v.float(cx, "headroom_warn_percent") {
        a.headroom_warn_percent = x;
    }
    if let Some(x) = v.float(cx, "cooldown_s") {
        a.cooldown_s = x;
    }
    if let Some(x) = v.float(cx, "clear_after_s") {
        a.clear_after_s = x;
    }
    if let Some(x) = v.float(cx, "link_rtt_warn_ms") {
        a.link_rtt_warn_ms = x;
    }
    a
}
