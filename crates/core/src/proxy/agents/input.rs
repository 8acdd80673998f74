//! Reading a client's request, which may be hostile: every field checked for its type (a wrong one is a
//! typed error, never a panic), unknown fields ignored, the number of parts and the size of tool schemas
//! bounded. Nesting is bounded by serde_json's recursion limit (128) when the body is parsed.

use super::error::{AgentError, MAX_PARTS, MAX_SCHEMA};
use serde_json::{Map, Value};

/// The body as a JSON object.
pub fn parse(body: &[u8]) -> Result<Map<String, Value>, AgentError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(AgentError::NotObject),
        Err(e) => Err(AgentError::Json(e.to_string())),
    }
}

/// Counts the parts of a request (messages, blocks, items, tools) against [`MAX_PARTS`].
pub struct Budget(usize);

impl Default for Budget {
    fn default() -> Self {
        Budget(MAX_PARTS)
    }
}

impl Budget {
    pub fn take(&mut self, n: usize) -> Result<(), AgentError> {
        self.0 = self.0.checked_sub(n).ok_or(AgentError::TooMany)?;
        Ok(())
    }
}

fn wrong(path: impl FnOnce() -> String, want: &'static str) -> AgentError {
    AgentError::Type { path: path(), want }
}

/// `m[key]` taken out when it is a string; `None` when absent or null.
pub fn take_str(
    m: &mut Map<String, Value>,
    key: &str,
    path: impl FnOnce() -> String,
) -> Result<Option<String>, AgentError> {
    match m.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(wrong(path, "a string")),
    }
}

/// `m[key]` when it is a string; `None` when absent or null.
pub fn get_str<'a>(
    m: &'a Map<String, Value>,
    key: &str,
    path: impl FnOnce() -> String,
) -> Result<Option<&'a str>, AgentError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(wrong(path, "a string")),
    }
}

/// `m[key]` when it is a number (kept as the client wrote it).
pub fn take_number(
    m: &mut Map<String, Value>,
    key: &str,
    path: impl FnOnce() -> String,
) -> Result<Option<Value>, AgentError> {
    match m.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(n @ Value::Number(_)) => Ok(Some(n)),
        Some(_) => Err(wrong(path, "a number")),
    }
}

/// `m[key]` when it is a non-negative integer.
pub fn take_count(
    m: &mut Map<String, Value>,
    key: &str,
    path: impl FnOnce() -> String,
) -> Result<Option<u64>, AgentError> {
    match m.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) if n.as_u64().is_some() => Ok(n.as_u64()),
        Some(_) => Err(wrong(path, "a non-negative integer")),
    }
}

pub fn take_bool(
    m: &mut Map<String, Value>,
    key: &str,
    path: impl FnOnce() -> String,
) -> Result<Option<bool>, AgentError> {
    match m.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(b)),
        Some(_) => Err(wrong(path, "a boolean")),
    }
}

/// `m[key]` when it is an array (counted against `budget`).
pub fn take_array(
    m: &mut Map<String, Value>,
    key: &str,
    budget: &mut Budget,
    path: impl FnOnce() -> String,
) -> Result<Option<Vec<Value>>, AgentError> {
    match m.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(a)) => {
            budget.take(a.len())?;
            Ok(Some(a))
        }
        Some(_) => Err(wrong(path, "an array")),
    }
}

/// A value that must be an object.
pub fn object(v: Value, path: impl FnOnce() -> String) -> Result<Map<String, Value>, AgentError> {
    match v {
        Value::Object(m) => Ok(m),
        _ => Err(wrong(path, "an object")),
    }
}

pub fn take_object(
    m: &mut Map<String, Value>,
    key: &str,
    path: impl FnOnce() -> String,
) -> Result<Option<Map<String, Value>>, AgentError> {
    match m.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o)),
        Some(_) => Err(wrong(path, "an object")),
    }
}

/// A tool's JSON schema: an object of at most [`MAX_SCHEMA`] bytes serialized (the count stops at the
/// limit: a 10 MB schema is not written out to be measured).
pub fn schema(v: Value, tool: &str, path: impl FnOnce() -> String) -> Result<Value, AgentError> {
    if !v.is_object() {
        return Err(wrong(path, "a JSON schema object"));
    }
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len();
            if self.0 > MAX_SCHEMA {
                return Err(std::io::Error::other("too large"));
            }
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    serde_json::to_writer(&mut Count(0), &v)
        .map_err(|_| AgentError::SchemaTooLarge(tool.to_string()))?;
    Ok(v)
}

/// The chat request's `stream` and `stream_options` (usage is always asked for: the reply carries it).
pub fn set_stream(out: &mut Map<String, Value>, stream: bool) {
    if stream {
        out.insert("stream".into(), Value::Bool(true));
        out.insert(
            "stream_options".into(),
            serde_json::json!({"include_usage": true}),
        );
    }
}

/// A request translated to a chat completion, and what the reply's translation needs from it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChatRequest {
    /// The chat-completions request (without the thinking switch: the caller adds it).
    pub body: Map<String, Value>,
    pub stream: bool,
    /// The client asked for thinking (`Some(true)`), asked for none, or said nothing.
    pub thinking: Option<bool>,
    /// The model the client named.
    pub model: Option<String>,
    pub stops: Vec<String>,
    /// Request fields a Responses object repeats.
    pub echo: Map<String, Value>,
    /// The conversation's input items (a stored conversation's first), when the reply is to be stored.
    pub keep: Option<Vec<Value>>,
}

/// The text of parts that are all text, joined; or the parts as they are (an image among them).
pub fn content_of(parts: Vec<Value>) -> Value {
    if parts
        .iter()
        .all(|p| p.get("type").and_then(Value::as_str) == Some("text"))
    {
        let texts: Vec<&str> = parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect();
        return Value::String(texts.join("\n"));
    }
    Value::Array(parts)
}

pub fn text_part(text: String) -> Value {
    serde_json::json!({"type": "text", "text": text})
}

pub fn image_part(url: String) -> Value {
    serde_json::json!({"type": "image_url", "image_url": {"url": url}})
}
