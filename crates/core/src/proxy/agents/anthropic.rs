//! Anthropic Messages ↔ chat completions: the request (`system`, messages of text, image, `tool_use`,
//! `tool_result` and `thinking` blocks, `tools`, `tool_choice`, sampling, `stop_sequences`, `thinking`)
//! as a chat request; the reply as a `message`, or as Anthropic's stream (`message_start`, per block
//! `content_block_start` / `_delta` / `_stop`, `message_delta`, `message_stop`; an `error` event when
//! the backend fails). Unknown fields and block types are ignored; wrong types are an [`AgentError`].

use super::blocks::{self, Collected, End, Kind, Op, Writer};
use super::chat::Usage;
use super::error::AgentError;
use super::input::{self, image_part, text_part, Budget, ChatRequest};
use serde_json::{json, Map, Value};

/// The Messages request as a chat request.
pub fn request(body: &[u8]) -> Result<ChatRequest, AgentError> {
    let mut m = input::parse(body)?;
    let mut budget = Budget::default();
    let mut r = ChatRequest::default();
    let out = &mut r.body;
    if let Some(model) = input::take_str(&mut m, "model", || "model".into())? {
        out.insert("model".into(), Value::String(model.clone()));
        r.model = Some(model);
    }
    let mut messages = vec![];
    match m.remove("system") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => {
            if !s.is_empty() {
                messages.push(json!({"role": "system", "content": s}));
            }
        }
        Some(Value::Array(blocks)) => {
            budget.take(blocks.len())?;
            let mut texts = vec![];
            for (i, b) in blocks.into_iter().enumerate() {
                let mut b = input::object(b, || format!("system[{i}]"))?;
                if input::get_str(&b, "type", || format!("system[{i}].type"))? == Some("text") {
                    if let Some(t) =
                        input::take_str(&mut b, "text", || format!("system[{i}].text"))?
                    {
                        texts.push(t);
                    }
                }
            }
            if !texts.is_empty() {
                messages.push(json!({"role": "system", "content": texts.join("\n\n")}));
            }
        }
        Some(_) => {
            return Err(AgentError::Type {
                path: "system".into(),
                want: "a string or an array of text blocks",
            })
        }
    }
    let list = input::take_array(&mut m, "messages", &mut budget, || "messages".into())?
        .ok_or_else(|| AgentError::Missing("messages".into()))?;
    for (i, msg) in list.into_iter().enumerate() {
        one_message(i, msg, &mut budget, &mut messages)?;
    }
    out.insert("messages".into(), Value::Array(messages));
    if let Some(list) = input::take_array(&mut m, "tools", &mut budget, || "tools".into())? {
        let mut tools = vec![];
        for (i, t) in list.into_iter().enumerate() {
            if let Some(t) = tool(i, t)? {
                tools.push(t);
            }
        }
        if !tools.is_empty() {
            out.insert("tools".into(), Value::Array(tools));
        }
    }
    if let Some(mut c) = input::take_object(&mut m, "tool_choice", || "tool_choice".into())? {
        let choice = match input::get_str(&c, "type", || "tool_choice.type".into())? {
            Some("auto") => json!("auto"),
            Some("any") => json!("required"),
            Some("none") => json!("none"),
            Some("tool") => {
                let name = input::take_str(&mut c, "name", || "tool_choice.name".into())?
                    .ok_or_else(|| AgentError::Missing("tool_choice.name".into()))?;
                json!({"type": "function", "function": {"name": name}})
            }
            Some(other) => {
                return Err(AgentError::Value {
                    path: "tool_choice.type".into(),
                    value: other.to_string(),
                })
            }
            None => return Err(AgentError::Missing("tool_choice.type".into())),
        };
        out.insert("tool_choice".into(), choice);
        if input::take_bool(&mut c, "disable_parallel_tool_use", || {
            "tool_choice.disable_parallel_tool_use".into()
        })? == Some(true)
        {
            out.insert("parallel_tool_calls".into(), Value::Bool(false));
        }
    }
    if let Some(n) = input::take_count(&mut m, "max_tokens", || "max_tokens".into())? {
        out.insert("max_tokens".into(), n.into());
    }
    for key in ["temperature", "top_p"] {
        if let Some(n) = input::take_number(&mut m, key, || key.into())? {
            out.insert(key.into(), n);
        }
    }
    if let Some(n) = input::take_count(&mut m, "top_k", || "top_k".into())? {
        out.insert("top_k".into(), n.into());
    }
    if let Some(list) = input::take_array(&mut m, "stop_sequences", &mut budget, || {
        "stop_sequences".into()
    })? {
        for (i, s) in list.into_iter().enumerate() {
            match s {
                Value::String(s) => r.stops.push(s),
                _ => {
                    return Err(AgentError::Type {
                        path: format!("stop_sequences[{i}]"),
                        want: "a string",
                    })
                }
            }
        }
        if !r.stops.is_empty() {
            out.insert("stop".into(), json!(r.stops));
        }
    }
    if let Some(mut t) = input::take_object(&mut m, "thinking", || "thinking".into())? {
        r.thinking = match input::take_str(&mut t, "type", || "thinking.type".into())?.as_deref() {
            Some("enabled" | "adaptive") => Some(true),
            Some("disabled") => Some(false),
            Some(other) => {
                return Err(AgentError::Value {
                    path: "thinking.type".into(),
                    value: other.to_string(),
                })
            }
            None => None,
        };
    }
    r.stream = input::take_bool(&mut m, "stream", || "stream".into())?.unwrap_or(false);
    input::set_stream(out, r.stream);
    // `metadata`, `service_tier`, `container`, `mcp_servers`, `context_management`…: not for the model.
    Ok(r)
}

fn one_message(
    i: usize,
    msg: Value,
    budget: &mut Budget,
    out: &mut Vec<Value>,
) -> Result<(), AgentError> {
    let mut msg = input::object(msg, || format!("messages[{i}]"))?;
    let user = match input::get_str(&msg, "role", || format!("messages[{i}].role"))? {
        Some("user") => true,
        Some("assistant") => false,
        Some(other) => {
            return Err(AgentError::Value {
                path: format!("messages[{i}].role"),
                value: other.to_string(),
            })
        }
        None => return Err(AgentError::Missing(format!("messages[{i}].role"))),
    };
    let role = if user { "user" } else { "assistant" };
    let blocks = match msg.remove("content") {
        None | Some(Value::Null) => {
            return Err(AgentError::Missing(format!("messages[{i}].content")))
        }
        Some(Value::String(s)) => {
            out.push(json!({"role": role, "content": s}));
            return Ok(());
        }
        Some(Value::Array(a)) => a,
        Some(_) => {
            return Err(AgentError::Type {
                path: format!("messages[{i}].content"),
                want: "a string or an array of content blocks",
            })
        }
    };
    budget.take(blocks.len())?;
    if user {
        user_blocks(i, blocks, budget, out)
    } else {
        assistant_blocks(i, blocks, out)
    }
}

fn block(i: usize, j: usize, b: Value) -> Result<(Map<String, Value>, String), AgentError> {
    let b = input::object(b, || format!("messages[{i}].content[{j}]"))?;
    let ty = input::get_str(&b, "type", || format!("messages[{i}].content[{j}].type"))?
        .ok_or_else(|| AgentError::Missing(format!("messages[{i}].content[{j}].type")))?
        .to_string();
    Ok((b, ty))
}

fn text_of(
    b: &mut Map<String, Value>,
    key: &str,
    at: impl Fn() -> String,
) -> Result<String, AgentError> {
    input::take_str(b, key, || format!("{}.{key}", at()))?
        .ok_or_else(|| AgentError::Missing(format!("{}.{key}", at())))
}

/// An image block's source as a URL: base64 data as a data URL, a URL as it is (mlx-box fetches nothing).
fn image(b: &mut Map<String, Value>, at: impl Fn() -> String) -> Result<Value, AgentError> {
    let mut src = input::take_object(b, "source", || format!("{}.source", at()))?
        .ok_or_else(|| AgentError::Missing(format!("{}.source", at())))?;
    let url = match input::get_str(&src, "type", || format!("{}.source.type", at()))? {
        Some("base64") => {
            let mt = text_of(&mut src, "media_type", || format!("{}.source", at()))?;
            let data = text_of(&mut src, "data", || format!("{}.source", at()))?;
            format!("data:{mt};base64,{data}")
        }
        Some("url") => text_of(&mut src, "url", || format!("{}.source", at()))?,
        _ => {
            return Err(AgentError::Unsupported {
                path: format!("{}.source.type", at()),
                why: "an image must be `base64` data or a `url` (mlx-box has no file store)",
            })
        }
    };
    Ok(image_part(url))
}

fn user_blocks(
    i: usize,
    blocks: Vec<Value>,
    budget: &mut Budget,
    out: &mut Vec<Value>,
) -> Result<(), AgentError> {
    let mut parts = vec![];
    let mut tool_msgs = vec![];
    for (j, b) in blocks.into_iter().enumerate() {
        let at = || format!("messages[{i}].content[{j}]");
        let (mut b, ty) = block(i, j, b)?;
        match ty.as_str() {
            "text" => parts.push(text_part(text_of(&mut b, "text", at)?)),
            "image" => parts.push(image(&mut b, at)?),
            "tool_result" => {
                let id = text_of(&mut b, "tool_use_id", at)?;
                let mut texts = vec![];
                match b.remove("content") {
                    None | Some(Value::Null) => {}
                    Some(Value::String(s)) => texts.push(s),
                    Some(Value::Array(list)) => {
                        budget.take(list.len())?;
                        for (k, c) in list.into_iter().enumerate() {
                            let at = || format!("messages[{i}].content[{j}].content[{k}]");
                            let mut c = input::object(c, at)?;
                            match input::get_str(&c, "type", || format!("{}.type", at()))? {
                                Some("text") => texts.push(text_of(&mut c, "text", at)?),
                                // The chat API's tool message holds text: the image follows as the
                                // user's.
                                Some("image") => parts.push(image(&mut c, at)?),
                                _ => {}
                            }
                        }
                    }
                    Some(_) => {
                        return Err(AgentError::Type {
                            path: format!("{}.content", at()),
                            want: "a string or an array of content blocks",
                        })
                    }
                }
                tool_msgs
                    .push(json!({"role": "tool", "tool_call_id": id, "content": texts.join("\n")}));
            }
            "document" => {
                // A plain-text document is text; other sources need a file store or a PDF reader.
                if let Some(Value::Object(src)) = b.get_mut("source") {
                    if src.get("type").and_then(Value::as_str) == Some("text") {
                        if let Some(Value::String(t)) = src.remove("data") {
                            parts.push(text_part(t));
                        }
                    }
                }
            }
            // Server tools' results, search results, container uploads…: nothing a local model reads.
            _ => {}
        }
    }
    let had_tools = !tool_msgs.is_empty();
    out.extend(tool_msgs);
    if !parts.is_empty() || !had_tools {
        out.push(json!({"role": "user", "content": input::content_of(parts)}));
    }
    Ok(())
}

fn assistant_blocks(i: usize, blocks: Vec<Value>, out: &mut Vec<Value>) -> Result<(), AgentError> {
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut calls = vec![];
    for (j, b) in blocks.into_iter().enumerate() {
        let at = || format!("messages[{i}].content[{j}]");
        let (mut b, ty) = block(i, j, b)?;
        match ty.as_str() {
            "text" => {
                let t = text_of(&mut b, "text", at)?;
                if !text.is_empty() && !t.is_empty() {
                    text.push('\n');
                }
                text.push_str(&t);
            }
            "thinking" => reasoning.push_str(&text_of(&mut b, "thinking", at)?),
            "tool_use" => {
                let id = text_of(&mut b, "id", at)?;
                let name = text_of(&mut b, "name", at)?;
                let args = match b.remove("input") {
                    None | Some(Value::Null) => "{}".to_string(),
                    Some(v) => v.to_string(),
                };
                calls.push(json!({"id": id, "type": "function", "function": {"name": name, "arguments": args}}));
            }
            _ => {}
        }
    }
    let mut m = Map::new();
    m.insert("role".into(), json!("assistant"));
    m.insert(
        "content".into(),
        if text.is_empty() && !calls.is_empty() {
            Value::Null
        } else {
            Value::String(text)
        },
    );
    if !calls.is_empty() {
        m.insert("tool_calls".into(), Value::Array(calls));
    }
    if !reasoning.is_empty() {
        m.insert("reasoning_content".into(), Value::String(reasoning));
    }
    out.push(Value::Object(m));
    Ok(())
}

/// A tool definition as a chat tool; `None` for Anthropic's server tools (web search, code
/// execution…), which a local server cannot run.
fn tool(i: usize, t: Value) -> Result<Option<Value>, AgentError> {
    let mut t = input::object(t, || format!("tools[{i}]"))?;
    let ty = input::get_str(&t, "type", || format!("tools[{i}].type"))?;
    if !matches!(ty, None | Some("custom")) && !t.contains_key("input_schema") {
        return Ok(None);
    }
    let name = input::take_str(&mut t, "name", || format!("tools[{i}].name"))?
        .ok_or_else(|| AgentError::Missing(format!("tools[{i}].name")))?;
    let schema = match t.remove("input_schema") {
        None | Some(Value::Null) => {
            return Err(AgentError::Missing(format!("tools[{i}].input_schema")))
        }
        Some(s) => input::schema(s, &name, || format!("tools[{i}].input_schema"))?,
    };
    let mut f = Map::new();
    f.insert("name".into(), Value::String(name));
    if let Some(d) = input::take_str(&mut t, "description", || format!("tools[{i}].description"))? {
        f.insert("description".into(), Value::String(d));
    }
    f.insert("parameters".into(), schema);
    Ok(Some(json!({"type": "function", "function": f})))
}

/// What the reply's translation needs.
#[derive(Debug, Clone)]
pub struct Reply {
    /// `msg_…`
    pub id: String,
    pub model: String,
    /// The prefix of tool-use ids the backend did not give.
    pub tool_prefix: String,
}

fn stop_reason(end: &End) -> (&'static str, Option<&str>) {
    match end {
        End::Stop { matched: Some(s) } => ("stop_sequence", Some(s)),
        End::Stop { matched: None } => ("end_turn", None),
        End::Length => ("max_tokens", None),
        End::Tools => ("tool_use", None),
        End::Filtered => ("refusal", None),
    }
}

fn usage_json(u: Usage) -> Value {
    json!({
        "input_tokens": u.prompt.saturating_sub(u.cached),
        "output_tokens": u.completion,
        "cache_read_input_tokens": u.cached,
        "cache_creation_input_tokens": 0,
    })
}

/// A whole reply as a `message`.
pub fn message(reply: &Reply, c: Collected) -> Value {
    let content: Vec<Value> = c
        .blocks
        .into_iter()
        .map(|(kind, text)| match kind {
            Kind::Thinking => json!({"type": "thinking", "thinking": text, "signature": ""}),
            Kind::Text => json!({"type": "text", "text": text}),
            Kind::Tool { id, name } => {
                let input = match serde_json::from_str::<Value>(&text) {
                    Ok(v @ Value::Object(_)) => v,
                    _ => json!({}),
                };
                json!({"type": "tool_use", "id": id, "name": name, "input": input})
            }
        })
        .collect();
    let (reason, seq) = stop_reason(&c.end);
    json!({
        "id": reply.id,
        "type": "message",
        "role": "assistant",
        "model": reply.model,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": seq,
        "usage": usage_json(c.usage),
    })
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Delta {
    Text,
    Thinking,
    Json,
}

/// Anthropic's stream, written from the block ops.
pub struct Stream {
    open: Option<(usize, Delta)>,
}

impl Stream {
    /// The writer, and its first event (`message_start`), sent before the backend's first token.
    pub fn new(reply: &Reply) -> (Stream, Vec<u8>) {
        let mut out = vec![];
        blocks::event(
            &mut out,
            "message_start",
            &json!({"type": "message_start", "message": {
                "id": reply.id, "type": "message", "role": "assistant", "model": reply.model,
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 0, "output_tokens": 0},
            }}),
        );
        (Stream { open: None }, out)
    }
}

/// What Anthropic sends while a reply is slow to start.
pub const PING: &[u8] = b"event: ping\ndata: {\"type\":\"ping\"}\n\n";

/// Writes the start of one event: `event: NAME`, then its `data:` line up to the object's first field
/// (`{"type":"NAME"`); the caller writes the rest and `}\n\n`.
fn head(out: &mut Vec<u8>, name: &str) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: {\"type\":\"");
    out.extend_from_slice(name.as_bytes());
    out.push(b'"');
}

impl Writer for Stream {
    // Every event is written as bytes (fixed fragments, strings escaped as they go): no JSON tree.
    fn op(&mut self, op: Op, out: &mut Vec<u8>) {
        match op {
            Op::Start { index, kind } => {
                head(out, "content_block_start");
                out.extend_from_slice(b",\"index\":");
                blocks::num(out, index as u64);
                let delta = match kind {
                    Kind::Thinking => {
                        out.extend_from_slice(
                            b",\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\",\"signature\":\"\"}",
                        );
                        Delta::Thinking
                    }
                    Kind::Text => {
                        out.extend_from_slice(
                            b",\"content_block\":{\"type\":\"text\",\"text\":\"\"}",
                        );
                        Delta::Text
                    }
                    Kind::Tool { id, name } => {
                        out.extend_from_slice(b",\"content_block\":{\"type\":\"tool_use\",\"id\":");
                        blocks::json_str(out, &id);
                        out.extend_from_slice(b",\"name\":");
                        blocks::json_str(out, &name);
                        out.extend_from_slice(b",\"input\":{}}");
                        Delta::Json
                    }
                };
                out.extend_from_slice(b"}\n\n");
                self.open = Some((index, delta));
            }
            Op::Delta { index, text } => {
                let (ty, key): (&[u8], &[u8]) = match self.open {
                    Some((i, Delta::Thinking)) if i == index => (b"thinking_delta", b"thinking"),
                    Some((i, Delta::Json)) if i == index => (b"input_json_delta", b"partial_json"),
                    _ => (b"text_delta", b"text"),
                };
                out.extend_from_slice(
                    b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":",
                );
                blocks::num(out, index as u64);
                out.extend_from_slice(b",\"delta\":{\"type\":\"");
                out.extend_from_slice(ty);
                out.extend_from_slice(b"\",\"");
                out.extend_from_slice(key);
                out.extend_from_slice(b"\":");
                blocks::json_str(out, &text);
                out.extend_from_slice(b"}}\n\n");
            }
            Op::Stop { index, .. } => {
                self.open = None;
                head(out, "content_block_stop");
                out.extend_from_slice(b",\"index\":");
                blocks::num(out, index as u64);
                out.extend_from_slice(b"}\n\n");
            }
        }
    }

    fn end(&mut self, end: End, usage: Usage, out: &mut Vec<u8>) {
        let (reason, seq) = stop_reason(&end);
        head(out, "message_delta");
        out.extend_from_slice(b",\"delta\":{\"stop_reason\":\"");
        out.extend_from_slice(reason.as_bytes());
        out.extend_from_slice(b"\",\"stop_sequence\":");
        match seq {
            Some(s) => blocks::json_str(out, s),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b"},\"usage\":{\"input_tokens\":");
        blocks::num(out, usage.prompt.saturating_sub(usage.cached));
        out.extend_from_slice(b",\"output_tokens\":");
        blocks::num(out, usage.completion);
        out.extend_from_slice(b",\"cache_read_input_tokens\":");
        blocks::num(out, usage.cached);
        out.extend_from_slice(b",\"cache_creation_input_tokens\":0}}\n\n");
        out.extend_from_slice(b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
    }

    fn fail(&mut self, why: &str, out: &mut Vec<u8>) {
        head(out, "error");
        out.extend_from_slice(b",\"error\":{\"type\":\"api_error\",\"message\":");
        blocks::json_str(out, why);
        out.extend_from_slice(b"}}\n\n");
    }
}
