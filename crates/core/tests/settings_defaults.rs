//! Every default is declared once, in the api crate's schema (`mlxbox_api::settings::KEYS`, which the
//! Settings form is generated from): what the parser makes of a key left out must be that default. A key
//! whose parsed field has another name (`memory_gb` is kept in bytes) is not compared here; the test says
//! how many were, so it cannot pass by comparing none.

use mlxbox_api::settings::{DefaultValue, Section, KEYS};
use serde_json::Value;

fn parsed() -> Value {
    // Every section present and empty but for what a service needs to be one.
    let text = "[server]\n[app]\n[alerts]\n[metrics]\n[control]\n[services.chat]\nkind = \"chat\"\nmodel = \"org/m\"\nport = 9000\n";
    let (settings, diags) =
        mlxbox_core::config::parse_settings(std::path::Path::new("s.toml"), text);
    let settings = settings.unwrap_or_else(|| panic!("{diags:?}"));
    serde_json::to_value(&settings).expect("settings serialise")
}

fn same(default: DefaultValue, v: &Value) -> bool {
    match default {
        DefaultValue::None => true,
        DefaultValue::Bool(b) => v.as_bool() == Some(b),
        DefaultValue::Int(i) => v.as_f64() == Some(i as f64),
        DefaultValue::Float(f) => v.as_f64().is_some_and(|x| (x - f).abs() < 1e-9),
        DefaultValue::Str(s) => v.as_str() == Some(s),
    }
}

#[test]
fn the_parser_defaults_are_the_schemas() {
    let s = parsed();
    let mut compared = 0;
    let mut wrong = vec![];
    for k in KEYS.iter().filter(|k| k.default != DefaultValue::None) {
        let section = match k.section {
            Section::Server => &s["server"],
            Section::App => &s["app"],
            Section::Alerts => &s["alerts"],
            Section::Metrics => &s["metrics"],
            Section::Control => &s["control"],
            Section::Services => &s["services"][0],
            _ => continue,
        };
        let Some(v) = section.get(k.name).filter(|v| !v.is_null()) else {
            continue;
        };
        compared += 1;
        if !same(k.default, v) {
            wrong.push(format!(
                "[{:?}] {}: the schema says {:?}, the parser makes {v}",
                k.section, k.name, k.default
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "defaults written twice disagree:\n{}",
        wrong.join("\n")
    );
    eprintln!("{compared} defaults compared");
    assert!(compared >= 20, "only {compared} defaults could be compared");
}
