//! What the proxy reads of a request body, and the one change it makes to it: the top-level `model`,
//! `stream`, `adapters` and `draft_model` of a JSON object, found by a byte scan (strings are skipped with
//! memchr; nested values are only counted, never built), and the model alias spliced into the bytes
//! instead of re-serialising the body.
//!
//! The scan reads keys the way the backend's JSON parser does (escapes decoded), and refuses a body that
//! names `model` twice: Python's `json.loads` keeps the last one, a first-wins reader would check the
//! other, and a check that can be steered is no check.

use memchr::memchr2;
use std::ops::Range;

/// Nesting deeper than this is refused (the scan does not recurse, but the backend's parser might).
const MAX_DEPTH: usize = 512;

/// The top-level fields the proxy cares about.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Peek {
    /// The byte range of `model`'s value, and its text when it is a string.
    pub model: Option<(Range<usize>, Option<String>)>,
    pub stream: bool,
    /// `adapters` / `draft_model` set (not null): a request asking the backend to load something else.
    pub loads_other: Vec<&'static str>,
    /// The byte range of `messages`' value (a pool's conversation affinity reads it).
    pub messages: Option<Range<usize>>,
    /// `voice` / `lang_code` present (a speech request; a service's defaults fill them in otherwise).
    pub voice: bool,
    pub lang_code: bool,
    /// Where the object's first byte after `{` is, and whether it has any member (for an insertion).
    pub open: usize,
    pub empty: bool,
}

#[derive(Debug, PartialEq, thiserror::Error)]
pub(crate) enum BodyError {
    #[error("the request body is not valid JSON (at byte {0})")]
    Malformed(usize),
    #[error("the request body names `{0}` twice")]
    Duplicate(&'static str),
    #[error("the request body nests deeper than {MAX_DEPTH} levels")]
    TooDeep,
}

/// Does this body look like a JSON object (first non-blank byte `{`)? Only those are read.
pub(crate) fn is_json_object(body: &[u8]) -> bool {
    body.iter().find(|b| !is_ws(**b)) == Some(&b'{')
}

pub(crate) fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

struct Scan<'a> {
    b: &'a [u8],
    i: usize,
}

impl Scan<'_> {
    fn ws(&mut self) {
        while self.i < self.b.len() && is_ws(self.b[self.i]) {
            self.i += 1;
        }
    }
    fn err(&self) -> BodyError {
        BodyError::Malformed(self.i)
    }
    fn expect(&mut self, c: u8) -> Result<(), BodyError> {
        if self.b.get(self.i) == Some(&c) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.err())
        }
    }
    /// At a `"`: moves past the closing quote. Returns whether the string had an escape.
    fn string(&mut self) -> Result<bool, BodyError> {
        self.expect(b'"')?;
        let mut escaped = false;
        loop {
            let j = memchr2(b'"', b'\\', &self.b[self.i..]).ok_or_else(|| self.err())? + self.i;
            if self.b[j] == b'"' {
                self.i = j + 1;
                return Ok(escaped);
            }
            escaped = true;
            // `\` and the byte it escapes (`\uXXXX` needs no more: its digits are not special).
            self.i = j + 2;
            if self.i > self.b.len() {
                return Err(self.err());
            }
        }
    }
    /// Skips one value of any kind without building it.
    fn value(&mut self) -> Result<(), BodyError> {
        match self.b.get(self.i) {
            Some(b'"') => self.string().map(|_| ()),
            Some(b'{' | b'[') => {
                let mut depth = 0usize;
                loop {
                    match self.b.get(self.i) {
                        None => return Err(self.err()),
                        Some(b'"') => {
                            self.string()?;
                            continue;
                        }
                        Some(b'{' | b'[') => {
                            depth += 1;
                            if depth > MAX_DEPTH {
                                return Err(BodyError::TooDeep);
                            }
                        }
                        Some(b'}' | b']') => {
                            depth -= 1;
                            if depth == 0 {
                                self.i += 1;
                                return Ok(());
                            }
                        }
                        Some(_) => {}
                    }
                    self.i += 1;
                }
            }
            Some(_) => {
                // A number, true, false, null (or what Python also takes: NaN, Infinity).
                let start = self.i;
                while self.i < self.b.len()
                    && !matches!(self.b[self.i], b',' | b'}' | b']')
                    && !is_ws(self.b[self.i])
                {
                    self.i += 1;
                }
                if self.i == start {
                    Err(self.err())
                } else {
                    Ok(())
                }
            }
            None => Err(self.err()),
        }
    }
}

/// Decodes a JSON string token (quotes included).
fn decode(token: &[u8], escaped: bool) -> Option<String> {
    if escaped {
        serde_json::from_slice::<String>(token).ok()
    } else {
        std::str::from_utf8(&token[1..token.len() - 1])
            .ok()
            .map(str::to_string)
    }
}

/// Reads the top-level fields of a JSON object body. The rest of the body is checked only for its
/// structure (strings closed, brackets balanced, nothing after the object).
pub(crate) fn peek(body: &[u8]) -> Result<Peek, BodyError> {
    let mut s = Scan { b: body, i: 0 };
    let mut p = Peek::default();
    s.ws();
    s.expect(b'{')?;
    p.open = s.i;
    s.ws();
    p.empty = s.b.get(s.i) == Some(&b'}');
    if p.empty {
        s.i += 1;
    } else {
        loop {
            s.ws();
            let k0 = s.i;
            let escaped = s.string()?;
            let key = &body[k0..s.i];
            // Fast path: a plain key is compared as bytes; an escaped one is decoded first.
            let decoded;
            let key: &[u8] = if escaped {
                decoded = decode(key, true).ok_or(BodyError::Malformed(k0))?;
                decoded.as_bytes()
            } else {
                &key[1..key.len() - 1]
            };
            s.ws();
            s.expect(b':')?;
            s.ws();
            let v0 = s.i;
            let v_escaped = s.b.get(s.i) == Some(&b'"');
            s.value()?;
            let value = &body[v0..s.i];
            match key {
                b"model" => {
                    if p.model.is_some() {
                        return Err(BodyError::Duplicate("model"));
                    }
                    let text = if v_escaped {
                        let esc = value.contains(&b'\\');
                        Some(decode(value, esc).ok_or(BodyError::Malformed(v0))?)
                    } else {
                        None
                    };
                    p.model = Some((v0..s.i, text));
                }
                b"stream" => p.stream = value == b"true",
                b"messages" => p.messages = Some(v0..s.i),
                b"voice" => p.voice = value != b"null",
                b"lang_code" => p.lang_code = value != b"null",
                b"adapters" | b"draft_model" => {
                    let name = if key == b"adapters" {
                        "adapters"
                    } else {
                        "draft_model"
                    };
                    if p.loads_other.contains(&name) {
                        return Err(BodyError::Duplicate(name));
                    }
                    if value != b"null" {
                        p.loads_other.push(name);
                    }
                }
                _ => {}
            }
            s.ws();
            match s.b.get(s.i) {
                Some(b',') => s.i += 1,
                Some(b'}') => {
                    s.i += 1;
                    break;
                }
                _ => return Err(s.err()),
            }
        }
    }
    s.ws();
    if s.i != body.len() {
        return Err(s.err());
    }
    Ok(p)
}

/// The byte ranges of a JSON array's elements (at most `max`; `None` when it is not an array or has
/// more).
pub(crate) fn items(array: &[u8], max: usize) -> Option<Vec<Range<usize>>> {
    let mut s = Scan { b: array, i: 0 };
    s.ws();
    s.expect(b'[').ok()?;
    let mut out = vec![];
    s.ws();
    if s.b.get(s.i) == Some(&b']') {
        return Some(out);
    }
    loop {
        s.ws();
        let start = s.i;
        s.value().ok()?;
        if out.len() == max {
            return None;
        }
        out.push(start..s.i);
        s.ws();
        match s.b.get(s.i) {
            Some(b',') => s.i += 1,
            Some(b']') => return Some(out),
            _ => return None,
        }
    }
}

/// The body with `model` set to `model`: the old value's bytes replaced, or the field inserted first.
pub(crate) fn with_model(body: &[u8], p: &Peek, model: &str) -> Vec<u8> {
    rewrite(body, p, Some(model), &[])
}

/// The body with `model` set (when given) and the fields of `add` inserted first, as strings. The rest
/// of the bytes are the client's.
pub(crate) fn rewrite(body: &[u8], p: &Peek, model: Option<&str>, add: &[(&str, &str)]) -> Vec<u8> {
    let json = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
    let mut head = Vec::new();
    for (k, v) in add {
        head.extend_from_slice(json(k).as_bytes());
        head.push(b':');
        head.extend_from_slice(json(v).as_bytes());
        head.push(b',');
    }
    let mut replace = None;
    if let Some(m) = model {
        match &p.model {
            Some((range, _)) => replace = Some((range.clone(), json(m))),
            None => {
                head.extend_from_slice(b"\"model\":");
                head.extend_from_slice(json(m).as_bytes());
                head.push(b',');
            }
        }
    }
    if p.empty {
        head.pop();
    }
    let mut out = Vec::with_capacity(body.len() + head.len() + 64);
    out.extend_from_slice(&body[..p.open]);
    out.extend_from_slice(&head);
    match replace {
        Some((range, value)) => {
            out.extend_from_slice(&body[p.open..range.start]);
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(&body[range.end..]);
        }
        None => out.extend_from_slice(&body[p.open..]),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{json, Value};

    fn model_of(b: &[u8]) -> Option<Option<String>> {
        peek(b).unwrap().model.map(|m| m.1)
    }

    #[test]
    fn reads_the_top_level_only() {
        let b = br#" {"messages":[{"role":"user","content":"model \"x\" {[\\ }"}],"model":"m1","stream":true} "#;
        let p = peek(b).unwrap();
        assert_eq!(p.model.as_ref().unwrap().1.as_deref(), Some("m1"));
        assert!(p.stream);
        assert!(p.loads_other.is_empty());
        assert_eq!(model_of(br#"{"a":{"model":"inner"}}"#), None);
        assert_eq!(model_of(br#"{"model":3}"#), Some(None), "not a string");
        assert_eq!(
            model_of(br#"{"model":"caf\u00e9"}"#),
            Some(Some("café".into()))
        );
        assert!(!peek(br#"{"stream":"true"}"#).unwrap().stream);
        assert_eq!(
            peek(br#"{"adapters":"x","draft_model":null}"#)
                .unwrap()
                .loads_other,
            ["adapters"]
        );
    }

    /// A key written with escapes is the same key to the backend's parser.
    #[test]
    fn escaped_and_duplicate_keys_cannot_hide_a_model() {
        assert_eq!(
            model_of(br#"{"mod\u0065l":"evil"}"#),
            Some(Some("evil".into()))
        );
        assert_eq!(
            peek(br#"{"model":"ok","model":"evil"}"#),
            Err(BodyError::Duplicate("model"))
        );
        assert_eq!(
            peek(br#"{"model":"ok","m\u006fdel":"evil"}"#),
            Err(BodyError::Duplicate("model"))
        );
    }

    #[test]
    fn malformed_bodies_are_refused_without_panicking() {
        for b in [
            &b""[..],
            b"{",
            b"{\"model\"",
            b"{\"model\":",
            b"{\"model\":\"x",
            b"{\"model\":\"x\\",
            b"{\"a\":[1,2}",
            b"{\"a\":1}x",
            b"[]",
            b"{\"a\" 1}",
            b"{,}",
        ] {
            assert!(peek(b).is_err(), "{:?}", String::from_utf8_lossy(b));
        }
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(peek(deep.as_bytes()), Err(BodyError::TooDeep));
    }

    #[test]
    fn splice_replaces_or_inserts() {
        let b = br#"{"model":"chat","messages":[]}"#;
        let out = with_model(b, &peek(b).unwrap(), "org/m\"x");
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v, json!({"model": "org/m\"x", "messages": []}));
        let b = br#" { } "#;
        let v: Value = serde_json::from_slice(&with_model(b, &peek(b).unwrap(), "m")).unwrap();
        assert_eq!(v, json!({"model": "m"}));
        let b = br#"{"messages":[]}"#;
        let v: Value = serde_json::from_slice(&with_model(b, &peek(b).unwrap(), "m")).unwrap();
        assert_eq!(v, json!({"model": "m", "messages": []}));
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i32>().prop_map(|n| json!(n)),
            "[ -~é\"\\\\{}\\[\\]]{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map("[a-z\"\\\\]{0,5}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Against serde_json as the reference: on any valid object the scan finds the same `model` and
        /// `stream`, and the splice gives the object with only `model` changed.
        #[test]
        fn agrees_with_a_full_parser(
            fields in proptest::collection::btree_map(
                prop_oneof![Just("model".to_string()), Just("stream".to_string()), Just("messages".to_string()), "[a-z\"\\\\]{0,5}"],
                json_value(), 0..5),
            pretty in any::<bool>(),
        ) {
            let obj = Value::Object(fields.into_iter().collect());
            let text = if pretty { serde_json::to_vec_pretty(&obj).unwrap() } else { serde_json::to_vec(&obj).unwrap() };
            let p = peek(&text).unwrap();
            prop_assert_eq!(p.stream, obj.get("stream") == Some(&Value::Bool(true)));
            prop_assert_eq!(p.model.as_ref().map(|m| m.1.clone()),
                obj.get("model").map(|m| m.as_str().map(str::to_string)));
            let out = with_model(&text, &p, "the/model");
            let mut want = obj.clone();
            want.as_object_mut().unwrap().insert("model".into(), json!("the/model"));
            prop_assert_eq!(serde_json::from_slice::<Value>(&out).unwrap(), want);
        }

        /// Arbitrary bytes never panic the scan.
        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = peek(&data);
        }
    }
}
