//! settings.toml as a document the Settings window can edit: the whole file as JSON for display, and
//! edits addressed by key path applied with `toml_edit`, so the user's comments, order and layout survive
//! everything but the value that changed.

use mlxbox_api::config::ConfigEdit;
use serde_json::Value as Json;
use toml_edit::{DocumentMut, Item, Table, Value};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EditError {
    #[error("settings.toml does not parse, so it cannot be edited key by key: {0}; fix it in a text editor first")]
    Unparsable(String),
    #[error("an edit has an empty key path")]
    EmptyPath,
    #[error("an edit's key path is too long: {0} (settings.toml nests {MAX_EDIT_DEPTH} keys deep at most, each name {MAX_KEY_LEN} bytes at most)")]
    PathTooLong(String),
    #[error("too many edits in one request ({0}; {MAX_EDITS} at most)")]
    TooManyEdits(usize),
    #[error("`{0}` is a value, not a table, so `{1}` cannot be set inside it")]
    NotATable(String, String),
    #[error("`{0}`: {1}")]
    BadValue(String, String),
}

/// The whole document as JSON (tables → objects, arrays → arrays, datetimes → strings).
pub fn to_json(text: &str) -> Result<Json, EditError> {
    let doc: DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| EditError::Unparsable(e.message().to_string()))?;
    Ok(table_to_json(doc.as_table()))
}

fn table_to_json(t: &Table) -> Json {
    Json::Object(
        t.iter()
            .filter_map(|(k, v)| item_to_json(v).map(|j| (k.to_string(), j)))
            .collect(),
    )
}

fn item_to_json(item: &Item) -> Option<Json> {
    match item {
        Item::None => None,
        Item::Value(v) => Some(value_to_json(v)),
        Item::Table(t) => Some(table_to_json(t)),
        Item::ArrayOfTables(a) => Some(Json::Array(a.iter().map(table_to_json).collect())),
    }
}

fn value_to_json(v: &Value) -> Json {
    match v {
        Value::String(s) => Json::String(s.value().clone()),
        Value::Integer(i) => Json::from(*i.value()),
        Value::Float(f) => serde_json::Number::from_f64(*f.value())
            .map(Json::Number)
            .unwrap_or(Json::Null),
        Value::Boolean(b) => Json::Bool(*b.value()),
        Value::Datetime(d) => Json::String(d.value().to_string()),
        Value::Array(a) => Json::Array(a.iter().map(value_to_json).collect()),
        Value::InlineTable(t) => Json::Object(
            t.iter()
                .map(|(k, v)| (k.to_string(), value_to_json(v)))
                .collect(),
        ),
    }
}

fn json_to_value(path: &str, j: &Json) -> Result<Value, EditError> {
    Ok(match j {
        Json::String(s) => Value::from(s.as_str()),
        Json::Bool(b) => Value::from(*b),
        Json::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Value::from(i),
            (None, Some(f)) => Value::from(f),
            _ => {
                return Err(EditError::BadValue(
                    path.into(),
                    format!("{n} is out of range"),
                ))
            }
        },
        Json::Array(a) => {
            let mut arr = toml_edit::Array::new();
            for x in a {
                arr.push(json_to_value(path, x)?);
            }
            Value::Array(arr)
        }
        Json::Object(o) => {
            let mut t = toml_edit::InlineTable::new();
            for (k, x) in o {
                t.insert(k, json_to_value(path, x)?);
            }
            Value::InlineTable(t)
        }
        Json::Null => {
            return Err(EditError::BadValue(
                path.into(),
                "null inside a value".into(),
            ))
        }
    })
}

/// Applies `edits` in order to `text` and returns the new text. Untouched lines are byte-for-byte the same;
/// a changed value keeps its key's comments and the spacing around it.
/// Deepest key path an edit may name (`services.NAME.env.VAR` is 4).
pub const MAX_EDIT_DEPTH: usize = 8;
/// Longest key name in an edit path.
pub const MAX_KEY_LEN: usize = 256;
/// Most edits one request may carry.
pub const MAX_EDITS: usize = 1000;

pub fn apply_edits(text: &str, edits: &[ConfigEdit]) -> Result<String, EditError> {
    // Bounds first: a client's path must not size the work (a 100,000-key path overflowed the stack).
    if edits.len() > MAX_EDITS {
        return Err(EditError::TooManyEdits(edits.len()));
    }
    for e in edits {
        if e.path.len() > MAX_EDIT_DEPTH || e.path.iter().any(|s| s.len() > MAX_KEY_LEN) {
            let shown: String = e
                .path
                .iter()
                .take(4)
                .map(|s| s.chars().take(32).collect::<String>())
                .collect::<Vec<_>>()
                .join(".");
            return Err(EditError::PathTooLong(format!(
                "{shown}… ({} keys)",
                e.path.len()
            )));
        }
    }
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| EditError::Unparsable(e.message().to_string()))?;
    for e in edits {
        let (last, parents) = e.path.split_last().ok_or(EditError::EmptyPath)?;
        let dotted = e.path.join(".");
        let mut table: &mut Table = doc.as_table_mut();
        for (i, seg) in parents.iter().enumerate() {
            if !table.contains_key(seg) {
                if e.value.is_none() {
                    break; // removing under a table that does not exist: nothing to do
                }
                let mut t = Table::new();
                // `[services.x]` headers, not an empty `[services]` line above them.
                t.set_implicit(i == 0 && parents.len() > 1);
                table.insert(seg, Item::Table(t));
            }
            table = match table.get_mut(seg) {
                Some(Item::Table(t)) => t,
                _ => return Err(EditError::NotATable(e.path[..=i].join("."), dotted)),
            };
        }
        match &e.value {
            None => {
                table.remove(last);
            }
            Some(Json::Object(o)) if !table.contains_key(last) => {
                // A new table (e.g. a new service) is written as a `[a.b]` section, not inline.
                let mut t = Table::new();
                for (k, x) in o {
                    t.insert(k, Item::Value(json_to_value(&dotted, x)?));
                }
                table.insert(last, Item::Table(t));
            }
            Some(j) => {
                let mut v = json_to_value(&dotted, j)?;
                match table.get_mut(last) {
                    // Keep the comment and spacing that decorate the old value.
                    Some(Item::Value(old)) => {
                        *v.decor_mut() = old.decor().clone();
                        *old = v;
                    }
                    _ => {
                        table.insert(last, Item::Value(v));
                    }
                }
            }
        }
    }
    Ok(doc.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TEXT: &str = "# my settings\n[server]\nhost = \"127.0.0.1\" # loopback only\n\n# the chat model\n[services.chat]\nmodel = \"m\"   # big one\nport = 8080\n";

    fn edit(path: &[&str], value: Option<Json>) -> ConfigEdit {
        ConfigEdit {
            path: path.iter().map(|s| s.to_string()).collect(),
            value,
        }
    }

    #[test]
    fn set_keeps_comments_and_layout() {
        let out = apply_edits(
            TEXT,
            &[edit(&["services", "chat", "port"], Some(json!(9090)))],
        )
        .unwrap();
        assert_eq!(out, TEXT.replace("port = 8080", "port = 9090"));
        let out = apply_edits(
            TEXT,
            &[edit(&["services", "chat", "model"], Some(json!("n")))],
        )
        .unwrap();
        assert!(out.contains("model = \"n\"   # big one\n"), "{out}");
    }

    #[test]
    fn add_and_remove() {
        let out = apply_edits(
            TEXT,
            &[
                edit(
                    &["services", "emb"],
                    Some(json!({"model": "e", "port": 8081})),
                ),
                edit(&["services", "chat", "max_tokens"], Some(json!(4096))),
                edit(&["server", "host"], None),
            ],
        )
        .unwrap();
        assert!(
            out.contains("[services.emb]\nmodel = \"e\"\nport = 8081\n"),
            "{out}"
        );
        assert!(out.contains("max_tokens = 4096"));
        assert!(!out.contains("host ="));
        assert!(out.starts_with("# my settings\n[server]\n"));
        assert!(
            !out.contains("[services]\n"),
            "no empty parent header: {out}"
        );
        let j = to_json(&out).unwrap();
        assert_eq!(j["services"]["emb"]["port"], json!(8081));
        assert_eq!(j["services"]["chat"]["max_tokens"], json!(4096));
    }

    /// A 100,000-key path overflowed the stack and aborted the daemon.
    #[test]
    fn hostile_edits_are_refused_by_size() {
        let long: Vec<String> = (0..100_000).map(|i| format!("k{i}")).collect();
        let e = apply_edits(
            TEXT,
            &[ConfigEdit {
                path: long,
                value: Some(json!(1)),
            }],
        )
        .unwrap_err();
        assert!(matches!(e, EditError::PathTooLong(_)), "{e}");
        let e = apply_edits(TEXT, &[edit(&["x"; 9], Some(json!(1)))]).unwrap_err();
        assert!(matches!(e, EditError::PathTooLong(_)));
        let many = vec![edit(&["server", "host"], None); 1001];
        assert!(matches!(
            apply_edits(TEXT, &many),
            Err(EditError::TooManyEdits(1001))
        ));
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = Json> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Json::Null),
            any::<bool>().prop_map(Json::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<f64>().prop_map(|n| json!(n)),
            "[ -~]{0,8}".prop_map(Json::String),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Json::Array),
                proptest::collection::btree_map("[ -~]{0,6}", inner, 0..4)
                    .prop_map(|m| Json::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        /// Control-API input: any edit (paths of any shape, values of any JSON type, removals) on the real
        /// fixture gives a document or a typed error, never a panic; and what it gives parses again.
        #[test]
        fn any_edit_is_applied_or_refused(
            edits in proptest::collection::vec(
                (proptest::collection::vec("(services|server|app|alerts|chat|[ -~]{0,6})", 0..6),
                 proptest::option::of(json_value())), 0..6)) {
            let text = include_str!("../../../../tests/fixtures/mlx-box-settings.toml");
            let edits: Vec<ConfigEdit> = edits.into_iter().map(|(path, value)| ConfigEdit { path, value }).collect();
            if let Ok(out) = apply_edits(text, &edits) {
                proptest::prop_assert!(out.parse::<DocumentMut>().is_ok());
                let _ = crate::config::parse_settings(std::path::Path::new("s.toml"), &out);
            }
        }
    }

    #[test]
    fn new_service_in_empty_file_gets_a_dotted_header() {
        let out = apply_edits("", &[edit(&["services", "x", "model"], Some(json!("m")))]).unwrap();
        assert_eq!(out.trim(), "[services.x]\nmodel = \"m\"");
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let e = apply_edits(TEXT, &[edit(&["server", "host", "x"], Some(json!(1)))]).unwrap_err();
        assert!(
            matches!(e, EditError::NotATable(ref a, _) if a == "server.host"),
            "{e}"
        );
        assert!(matches!(
            apply_edits("[x", &[]),
            Err(EditError::Unparsable(_))
        ));
        assert_eq!(
            apply_edits(TEXT, &[edit(&[], None)]),
            Err(EditError::EmptyPath)
        );
    }
}

/// What a redacted secret reads as.
pub const REDACTED: &str = "<redacted>";

/// Is a key of this name a secret wherever it stands (`api_key`, `hf_token`, `password`…)?
fn secret_name(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k == "api_key"
        || k == "api_keys"
        || ["key", "token", "secret", "password", "passwd"]
            .iter()
            .any(|w| k == *w || k.ends_with(&format!("_{w}")) || k.ends_with(&format!("-{w}")))
}

/// settings.toml with every secret replaced by [`REDACTED`]: `[server] api_key(s)`, every value of an
/// `env` table (`HF_TOKEN`…), and any key named like a secret. Comments and layout stay. A file that does
/// not parse is not shown at all (its secrets cannot be found in it).
pub fn redact(text: &str) -> String {
    let Ok(mut doc) = text.parse::<DocumentMut>() else {
        return format!(
            "# {REDACTED}: the file does not parse, so it is not shown to a read-only token\n"
        );
    };
    redact_table(doc.as_table_mut(), false);
    doc.to_string()
}

fn redact_table(t: &mut dyn toml_edit::TableLike, all: bool) {
    for (k, item) in t.iter_mut() {
        let secret = all || secret_name(k.get());
        let env = k.get() == "env";
        redact_item(item, secret, env);
    }
}

fn redact_item(item: &mut Item, secret: bool, env: bool) {
    match item {
        Item::Table(t) => redact_table(t, secret || env),
        Item::ArrayOfTables(a) => {
            for t in a.iter_mut() {
                redact_table(t, secret);
            }
        }
        Item::Value(v) => redact_value(v, secret, env),
        Item::None => {}
    }
}

fn redact_value(v: &mut Value, secret: bool, env: bool) {
    match v {
        Value::InlineTable(t) => redact_table(t, secret || env),
        Value::Array(a) => {
            for x in a.iter_mut() {
                redact_value(x, secret, false);
            }
        }
        Value::String(_) if secret => {
            let decor = v.decor().clone();
            *v = Value::from(REDACTED);
            *v.decor_mut() = decor;
        }
        _ => {}
    }
}

#[cfg(test)]
mod redact_tests {
    use super::*;

    /// A read token sees the settings without a key, a token or an `env` value.
    #[test]
    fn secrets_are_redacted_and_the_rest_kept() {
        let text = "# mine\n[server]\napi_key = \"sk-1\" # the key\napi_keys = [\"sk-2\", \"sk-3\"]\nhost = \"0.0.0.0\"\n\n[services.chat]\nmodel = \"org/m\"\nenv = { HF_TOKEN = \"hf_x\", HF_HOME = \"/v\" }\n\n[services.tts.env]\nOPENAI_API_KEY = \"sk-4\"\n\n[hosts.b]\naddress = \"198.18.0.2:9300\"\nhub_token = \"t-5\"\n";
        let out = redact(text);
        for secret in ["sk-1", "sk-2", "sk-3", "hf_x", "/v", "sk-4", "t-5"] {
            assert!(!out.contains(secret), "{secret} in\n{out}");
        }
        for kept in [
            "# mine",
            "# the key",
            "org/m",
            "0.0.0.0",
            "198.18.0.2:9300",
            "HF_TOKEN",
        ] {
            assert!(out.contains(kept), "{kept} gone from\n{out}");
        }
        assert!(to_json(&out).is_ok());
        assert!(!redact("api_key = \"sk-1\"\n[[[").contains("sk-1"));
    }
}
