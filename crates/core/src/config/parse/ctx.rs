//! What the section parsers share: the diagnostics being collected (`Ctx`, which turns byte spans into
//! line and column) and a typed, span-aware view of one table (`TableView`).

use crate::config::settings::Pos;
use mlxbox_api::config::{Diagnostic, Severity};
use mlxbox_api::settings::{self as schema, Section};
use std::ops::Range;
use std::path::Path;
use toml_edit::{Item, TableLike, Value};

pub(super) struct Ctx<'a> {
    pub(super) path: &'a Path,
    pub(super) text: &'a str,
    pub(super) diags: Vec<Diagnostic>,
}

impl Ctx<'_> {
    pub(super) fn pos(&self, span: Option<Range<usize>>) -> Pos {
        let off = span.map(|s| s.start).unwrap_or(0).min(self.text.len());
        let before = &self.text[..off];
        let line = before.matches('\n').count() + 1;
        let col = before
            .rsplit('\n')
            .next()
            .map(|l| l.chars().count())
            .unwrap_or(0)
            + 1;
        Pos { line, col }
    }

    pub(super) fn push(
        &mut self,
        sev: Severity,
        span: Option<Range<usize>>,
        msg: String,
        hint: Option<String>,
    ) {
        let p = self.pos(span);
        self.diags.push(Diagnostic {
            path: self.path.to_path_buf(),
            line: p.line,
            col: p.col,
            severity: sev,
            message: msg,
            hint,
        });
    }
    pub(super) fn error(
        &mut self,
        span: Option<Range<usize>>,
        msg: impl Into<String>,
        hint: impl Into<Option<String>>,
    ) {
        self.push(Severity::Error, span, msg.into(), hint.into());
    }
    pub(super) fn warn(
        &mut self,
        span: Option<Range<usize>>,
        msg: impl Into<String>,
        hint: impl Into<Option<String>>,
    ) {
        self.push(Severity::Warning, span, msg.into(), hint.into());
    }
    pub(super) fn note(&mut self, span: Option<Range<usize>>, msg: impl Into<String>) {
        self.push(Severity::Note, span, msg.into(), None);
    }
}

/// A typed view of one table with span-aware getters that record problems instead of stopping.
pub(super) struct TableView<'t> {
    pub(super) table: &'t dyn TableLike,
    pub(super) where_: String,
    /// Which section's declarations (`mlxbox_api::settings`) give the keys, ranges and examples.
    pub(super) section: Option<Section>,
}

pub(super) fn value_span(item: &Item) -> Option<Range<usize>> {
    match item {
        Item::Value(v) => v.span(),
        other => other.span(),
    }
}

pub(super) fn type_name(item: &Item) -> &'static str {
    match item {
        Item::Value(Value::String(_)) => "a string",
        Item::Value(Value::Integer(_)) => "an integer",
        Item::Value(Value::Float(_)) => "a float",
        Item::Value(Value::Boolean(_)) => "a boolean",
        Item::Value(Value::Datetime(_)) => "a datetime",
        Item::Value(Value::Array(_)) => "an array",
        Item::Value(Value::InlineTable(_)) | Item::Table(_) => "a table",
        Item::ArrayOfTables(_) => "an array of tables",
        Item::None => "nothing",
    }
}

impl<'t> TableView<'t> {
    pub(super) fn get(&self, key: &str) -> Option<&'t Item> {
        self.table.get(key).filter(|i| !i.is_none())
    }

    pub(super) fn key_span(&self, key: &str) -> Option<Range<usize>> {
        self.table.key(key).and_then(|k| k.span())
    }

    pub(super) fn mismatch(&self, cx: &mut Ctx, key: &str, item: &Item, want: &str, example: &str) {
        cx.error(
            value_span(item),
            format!(
                "`{key}` in {} must be {want}, found {}",
                self.where_,
                type_name(item)
            ),
            Some(format!("for example `{key} = {example}`")),
        );
    }

    pub(super) fn str(&self, cx: &mut Ctx, key: &str) -> Option<String> {
        let item = self.get(key)?;
        match item.as_str() {
            Some(s) => Some(s.to_string()),
            None => {
                self.mismatch(cx, key, item, "a string", "\"...\"");
                None
            }
        }
    }

    pub(super) fn bool(&self, cx: &mut Ctx, key: &str) -> Option<bool> {
        let item = self.get(key)?;
        match item.as_bool() {
            Some(b) => Some(b),
            None => {
                self.mismatch(cx, key, item, "true or false", "true");
                None
            }
        }
    }

    /// The declared range and example of a number key (see `mlxbox_api::settings`).
    pub(super) fn bounds(&self, key: &str) -> (f64, f64, &'static str) {
        let k = self.section.and_then(|s| schema::find(s, key));
        debug_assert!(
            k.is_some(),
            "`{key}` is read but not declared in mlxbox_api::settings"
        );
        k.and_then(|k| k.range.map(|r| (r.0, r.1, k.example)))
            .unwrap_or((f64::MIN, f64::MAX, "1"))
    }

    pub(super) fn int(&self, cx: &mut Ctx, key: &str) -> Option<i64> {
        let (min, max, example) = self.bounds(key);
        let (min, max) = (min as i64, max as i64);
        let item = self.get(key)?;
        match item.as_integer() {
            Some(n) if n >= min && n <= max => Some(n),
            Some(n) => {
                cx.error(
                    value_span(item),
                    format!(
                        "`{key}` = {n} in {} is out of range {min}..={max}",
                        self.where_
                    ),
                    Some(format!("for example `{key} = {example}`")),
                );
                None
            }
            None => {
                self.mismatch(cx, key, item, "an integer", example);
                None
            }
        }
    }

    pub(super) fn float(&self, cx: &mut Ctx, key: &str) -> Option<f64> {
        let (min, max, example) = self.bounds(key);
        let item = self.get(key)?;
        let v = item
            .as_float()
            .or_else(|| item.as_integer().map(|i| i as f64));
        match v {
            Some(x) if x >= min && x <= max => Some(x),
            Some(x) => {
                cx.error(
                    value_span(item),
                    format!(
                        "`{key}` = {x} in {} is out of range {min}..={max}",
                        self.where_
                    ),
                    Some(format!("for example `{key} = {example}`")),
                );
                None
            }
            None => {
                self.mismatch(cx, key, item, "a number", example);
                None
            }
        }
    }

    pub(super) fn port(&self, cx: &mut Ctx, key: &str) -> Option<u16> {
        let item = self.get(key)?;
        match item.as_integer() {
            Some(n) if (1..=65535).contains(&n) => Some(n as u16),
            Some(n) => {
                cx.error(
                    value_span(item),
                    format!("`{key}` = {n} in {} is not a TCP port", self.where_),
                    Some("use a number from 1024 to 65535".to_string()),
                );
                None
            }
            None => {
                self.mismatch(cx, key, item, "an integer port", "8090");
                None
            }
        }
    }

    pub(super) fn str_list(&self, cx: &mut Ctx, key: &str) -> Option<Vec<String>> {
        let item = self.get(key)?;
        let Some(arr) = item.as_array() else {
            self.mismatch(cx, key, item, "an array of strings", "[\"a\", \"b\"]");
            return None;
        };
        let mut out = Vec::new();
        for v in arr.iter() {
            match v.as_str() {
                Some(s) => out.push(s.to_string()),
                None => cx.error(
                    v.span(),
                    format!(
                        "every element of `{key}` in {} must be a string",
                        self.where_
                    ),
                    Some("quote it: \"...\"".to_string()),
                ),
            }
        }
        Some(out)
    }

    /// `aliases`: an array of names and glob patterns (`crate::config::alias`); a bad one is an error at
    /// its own position, and left out.
    pub(super) fn alias_list(&self, cx: &mut Ctx, key: &str) -> Option<Vec<String>> {
        let item = self.get(key)?;
        let Some(arr) = item.as_array() else {
            self.mismatch(
                cx,
                key,
                item,
                "an array of strings",
                "[\"fast\", \"claude-*\"]",
            );
            return None;
        };
        let mut out = Vec::new();
        for v in arr.iter() {
            match v.as_str().map(|s| (s, crate::config::alias::check(s))) {
                Some((s, Ok(()))) => out.push(s.to_string()),
                Some((_, Err(why))) => cx.error(
                    v.span(),
                    format!("{why} (in `{key}` of {})", self.where_),
                    Some("an alias is a model name, or a pattern where `*` matches any run of characters: \"claude-*\"".to_string()),
                ),
                None => cx.error(
                    v.span(),
                    format!(
                        "every element of `{key}` in {} must be a string",
                        self.where_
                    ),
                    Some("quote it: \"...\"".to_string()),
                ),
            }
        }
        Some(out)
    }

    /// Unknown keys are warnings (with the likely intended one); keys accepted for the original mlx-box
    /// but not used are notes saying so.
    pub(super) fn unknown_keys(&self, cx: &mut Ctx, known: &[&str]) {
        for (k, _) in self.table.iter() {
            if !known.contains(&k) {
                let hint = closest(k, known).map(|c| format!("did you mean `{c}`?"));
                cx.warn(
                    self.key_span(k),
                    format!("unknown key `{k}` in {} (ignored)", self.where_),
                    hint,
                );
            } else if let Some(why) = self
                .section
                .and_then(|sec| schema::find(sec, k))
                .and_then(|key| key.unused)
            {
                cx.note(
                    self.key_span(k),
                    format!(
                        "`{k}` in {} is accepted but not used by mlx-box: {why}",
                        self.where_
                    ),
                );
            }
        }
    }
}

/// The known key nearest to a misspelt one, if it is near enough to be a likely typo.
pub(super) fn closest<'a>(word: &str, known: &[&'a str]) -> Option<&'a str> {
    pub(super) fn lev(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut cur = vec![i + 1];
            for (j, cb) in b.iter().enumerate() {
                cur.push(
                    (prev[j] + usize::from(ca != *cb))
                        .min(prev[j + 1] + 1)
                        .min(cur[j] + 1),
                );
            }
            prev = cur;
        }
        prev[b.len()]
    }
    known
        .iter()
        .map(|k| (lev(word, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min()
        .map(|(_, k)| k)
}
