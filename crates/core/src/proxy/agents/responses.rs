//! OpenAI Responses ↔ chat completions: the request (`instructions`, `input` as a string or items —
//! messages, `function_call`, `function_call_output`, `reasoning` —, function `tools`, `tool_choice`,
//! `parallel_tool_calls`, `max_output_tokens`, sampling, `reasoning.effort`, `text.format`) as a chat
//! request; the reply as a Response object (items `reasoning`, `message`, `function_call`), or as its
//! stream of semantic events, each with a `sequence_number` that counts from 0 without a gap, every item
//! added also done, ending with `response.completed` (`.incomplete`), or `response.failed` when the
//! backend fails. Unknown fields and item types are ignored; wrong types are an [`AgentError`].

use super::blocks::{self, Collected, End, Kind, Op, Writer};
use super::chat::Usage;
use super::error::AgentError;
use super::input::{self, image_part, text_part, Budget, ChatRequest};
use serde_json::{json, Map, Value};

/// The conversation of a stored response (its input and output items), by id; `None` when there is
/// none for this caller.
pub type History<'a> = &'a dyn Fn(&str) -> Option<Vec<Value>>;

/// The Responses request as a chat request. `previous_response_id` puts the stored conversation
/// (`history`) before `input`; with `store` (default true, as OpenAI's) the request's conversation is
/// kept in `ChatRequest::keep` for the caller to store with the reply.
pub fn request(body: &[u8], history: History<'_>) -> Result<ChatRequest, AgentError> {
    let mut m = input::parse(body)?;
    let mut budget = Budget::default();
    let mut r = ChatRequest::default();
    let store = input::take_bool(&mut m, "store", || "store".into())?.unwrap_or(true);
    let previous = input::take_str(&mut m, "previous_response_id", || {
        "previous_response_id".into()
    })?;
    let mut conversation = match &previous {
        None => vec![],
        Some(id) => history(id).ok_or_else(|| AgentError::NoPrevious(id.clone()))?,
    };
    r.echo.insert("store".into(), Value::Bool(store));
    r.echo
        .insert("previous_response_id".into(), json!(previous));
    if let Some(model) = input::take_str(&mut m, "model", || "model".into())? {
        r.body.insert("model".into(), Value::String(model.clone()));
        r.model = Some(model);
    }
    let mut messages = vec![];
    if let Some(s) = input::take_str(&mut m, "instructions", || "instructions".into())? {
        messages.push(json!({"role": "system", "content": s}));
        r.echo.insert("instructions".into(), Value::String(s));
    }
    match m.remove("input") {
        None | Some(Value::Null) => return Err(AgentError::Missing("input".into())),
        Some(Value::String(s)) if conversation.is_empty() && !store => {
            messages.push(json!({"role": "user", "content": s}))
        }
        Some(Value::String(s)) => {
            conversation.push(json!({"type": "message", "role": "user", "content": s}));
        }
        Some(Value::Array(list)) => {
            budget.take(list.len())?;
            conversation.extend(list);
        }
        Some(_) => {
            return Err(AgentError::Type {
                path: "input".into(),
                want: "a string or an array of input items",
            })
        }
    }
    if !conversation.is_empty() {
        if store {
            r.keep = Some(conversation.clone());
        }
        items(conversation, &mut budget, &mut messages)?;
    }
    r.body.insert("messages".into(), Value::Array(messages));
    if let Some(list) = input::take_array(&mut m, "tools", &mut budget, || "tools".into())? {
        let (mut tools, mut echo) = (vec![], vec![]);
        for (i, t) in list.into_iter().enumerate() {
            if let Some((chat, e)) = tool(i, t)? {
                tools.push(chat);
                echo.push(e);
            }
        }
        if !tools.is_empty() {
            r.body.insert("tools".into(), Value::Array(tools));
        }
        r.echo.insert("tools".into(), Value::Array(echo));
    }
    match m.remove("tool_choice") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if matches!(s.as_str(), "auto" | "none" | "required") => {
            r.body.insert("tool_choice".into(), json!(s));
            r.echo.insert("tool_choice".into(), json!(s));
        }
        Some(Value::String(s)) => {
            return Err(AgentError::Value {
                path: "tool_choice".into(),
                value: s,
            })
        }
        Some(Value::Object(mut c)) => {
            if input::get_str(&c, "type", || "tool_choice.type".into())? == Some("function") {
                let name = input::take_str(&mut c, "name", || "tool_choice.name".into())?
                    .ok_or_else(|| AgentError::Missing("tool_choice.name".into()))?;
                r.body.insert(
                    "tool_choice".into(),
                    json!({"type": "function", "function": {"name": name}}),
                );
                r.echo.insert(
                    "tool_choice".into(),
                    json!({"type": "function", "name": name}),
                );
            }
            // Hosted tools, `allowed_tools`, custom tools: the server's own choice.
        }
        Some(_) => {
            return Err(AgentError::Type {
                path: "tool_choice".into(),
                want: "a string or an object",
            })
        }
    }
    if let Some(b) = input::take_bool(&mut m, "parallel_tool_calls", || {
        "parallel_tool_calls".into()
    })? {
        r.body.insert("parallel_tool_calls".into(), Value::Bool(b));
        r.echo.insert("parallel_tool_calls".into(), Value::Bool(b));
    }
    if let Some(n) = input::take_count(&mut m, "max_output_tokens", || "max_output_tokens".into())?
    {
        r.body.insert("max_tokens".into(), n.into());
        r.echo.insert("max_output_tokens".into(), n.into());
    }
    for key in ["temperature", "top_p"] {
        if let Some(n) = input::take_number(&mut m, key, || key.into())? {
            r.body.insert(key.into(), n.clone());
            r.echo.insert(key.into(), n);
        }
    }
    if let Some(mut reasoning) = input::take_object(&mut m, "reasoning", || "reasoning".into())? {
        let effort = input::take_str(&mut reasoning, "effort", || "reasoning.effort".into())?;
        r.thinking = match effort.as_deref() {
            None => None,
            Some("none" | "minimal") => Some(false),
            Some("low" | "medium" | "high" | "xhigh") => Some(true),
            Some(other) => {
                return Err(AgentError::Value {
                    path: "reasoning.effort".into(),
                    value: other.to_string(),
                })
            }
        };
        r.echo.insert(
            "reasoning".into(),
            json!({"effort": effort, "summary": null}),
        );
    }
    if let Some(mut text) = input::take_object(&mut m, "text", || "text".into())? {
        if let Some(mut f) = input::take_object(&mut text, "format", || "text.format".into())? {
            match input::get_str(&f, "type", || "text.format.type".into())? {
                Some("json_schema") => {
                    let name = input::take_str(&mut f, "name", || "text.format.name".into())?
                        .unwrap_or_else(|| "response".into());
                    let schema = match f.remove("schema") {
                        None | Some(Value::Null) => {
                            return Err(AgentError::Missing("text.format.schema".into()))
                        }
                        Some(s) => input::schema(s, &name, || "text.format.schema".into())?,
                    };
                    let strict =
                        input::take_bool(&mut f, "strict", || "text.format.strict".into())?;
                    r.echo.insert(
                        "text".into(),
                        json!({"format": {"type": "json_schema", "name": name, "schema": schema, "strict": strict}}),
                    );
                    r.body.insert(
                        "response_format".into(),
                        json!({"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": strict}}),
                    );
                }
                Some("json_object") => {
                    r.body
                        .insert("response_format".into(), json!({"type": "json_object"}));
                    r.echo
                        .insert("text".into(), json!({"format": {"type": "json_object"}}));
                }
                _ => {}
            }
        }
    }
    if let Some(meta) = input::take_object(&mut m, "metadata", || "metadata".into())? {
        r.echo.insert("metadata".into(), Value::Object(meta));
    }
    r.stream = input::take_bool(&mut m, "stream", || "stream".into())?.unwrap_or(false);
    input::set_stream(&mut r.body, r.stream);
    // `include`, `prompt_cache_key`, `service_tier`, `truncation`, `user`…: ignored.
    Ok(r)
}

/// The input items as chat messages: an assistant message and the function calls that follow it are one
/// assistant turn; reasoning goes with the next assistant turn.
fn items(list: Vec<Value>, budget: &mut Budget, out: &mut Vec<Value>) -> Result<(), AgentError> {
    let mut reasoning = String::new();
    // Images of function outputs: a user message after the tool messages (a tool message holds text).
    let mut images: Vec<Value> = vec![];
    for (i, item) in list.into_iter().enumerate() {
        let at = || format!("input[{i}]");
        let mut it = input::object(item, at)?;
        let ty = input::get_str(&it, "type", || format!("input[{i}].type"))?.map(str::to_string);
        if ty.as_deref() != Some("function_call_output") && !images.is_empty() {
            out.push(json!({"role": "user", "content": std::mem::take(&mut images)}));
        }
        match ty.as_deref() {
            None | Some("message") => {
                let role = match input::get_str(&it, "role", || format!("input[{i}].role"))? {
                    Some("user") => "user",
                    Some("assistant") => "assistant",
                    Some("system") => "system",
                    Some("developer") => "system",
                    Some(other) => {
                        return Err(AgentError::Value {
                            path: format!("input[{i}].role"),
                            value: other.to_string(),
                        })
                    }
                    None => return Err(AgentError::Missing(format!("input[{i}].role"))),
                };
                let parts = match it.remove("content") {
                    None | Some(Value::Null) => vec![],
                    Some(Value::String(s)) => vec![text_part(s)],
                    Some(Value::Array(list)) => {
                        budget.take(list.len())?;
                        parts(i, list)?
                    }
                    Some(_) => {
                        return Err(AgentError::Type {
                            path: format!("input[{i}].content"),
                            want: "a string or an array of content parts",
                        })
                    }
                };
                let mut msg = Map::new();
                msg.insert("role".into(), json!(role));
                msg.insert("content".into(), input::content_of(parts));
                if role == "assistant" && !reasoning.is_empty() {
                    msg.insert(
                        "reasoning_content".into(),
                        Value::String(std::mem::take(&mut reasoning)),
                    );
                }
                out.push(Value::Object(msg));
            }
            Some("function_call") => {
                let call_id =
                    match input::take_str(&mut it, "call_id", || format!("input[{i}].call_id"))? {
                        Some(c) => c,
                        None => input::take_str(&mut it, "id", || format!("input[{i}].id"))?
                            .ok_or_else(|| AgentError::Missing(format!("input[{i}].call_id")))?,
                    };
                let name = input::take_str(&mut it, "name", || format!("input[{i}].name"))?
                    .ok_or_else(|| AgentError::Missing(format!("input[{i}].name")))?;
                let args = match it.remove("arguments") {
                    None | Some(Value::Null) => "{}".to_string(),
                    Some(Value::String(s)) => s,
                    Some(v) => v.to_string(),
                };
                let call = json!({"id": call_id, "type": "function", "function": {"name": name, "arguments": args}});
                let last = out.last_mut().filter(|m| m["role"] == "assistant");
                match last.and_then(Value::as_object_mut) {
                    Some(m) => {
                        if let Some(Value::Array(calls)) = m.get_mut("tool_calls") {
                            calls.push(call);
                        } else {
                            if m.get("content").and_then(Value::as_str) == Some("") {
                                m.insert("content".into(), Value::Null);
                            }
                            m.insert("tool_calls".into(), json!([call]));
                        }
                    }
                    None => {
                        let mut msg = Map::new();
                        msg.insert("role".into(), json!("assistant"));
                        msg.insert("content".into(), Value::Null);
                        msg.insert("tool_calls".into(), json!([call]));
                        if !reasoning.is_empty() {
                            msg.insert(
                                "reasoning_content".into(),
                                Value::String(std::mem::take(&mut reasoning)),
                            );
                        }
                        out.push(Value::Object(msg));
                    }
                }
            }
            Some("function_call_output") => {
                let call_id =
                    input::take_str(&mut it, "call_id", || format!("input[{i}].call_id"))?
                        .ok_or_else(|| AgentError::Missing(format!("input[{i}].call_id")))?;
                let text = match it.remove("output") {
                    None | Some(Value::Null) => String::new(),
                    Some(Value::String(s)) => s,
                    Some(Value::Array(list)) => {
                        budget.take(list.len())?;
                        let mut texts = vec![];
                        for p in parts(i, list)? {
                            match p.get("type").and_then(Value::as_str) {
                                Some("text") => {
                                    if let Some(t) = p.get("text").and_then(Value::as_str) {
                                        texts.push(t.to_string());
                                    }
                                }
                                _ => images.push(p),
                            }
                        }
                        texts.join("\n")
                    }
                    Some(_) => {
                        return Err(AgentError::Type {
                            path: format!("input[{i}].output"),
                            want: "a string or an array of content parts",
                        })
                    }
                };
                out.push(json!({"role": "tool", "tool_call_id": call_id, "content": text}));
            }
            Some("reasoning") => {
                for key in ["summary", "content"] {
                    if let Some(Value::Array(list)) = it.remove(key) {
                        budget.take(list.len())?;
                        for p in list {
                            if let Some(t) = p.get("text").and_then(Value::as_str) {
                                if !reasoning.is_empty() {
                                    reasoning.push('\n');
                                }
                                reasoning.push_str(t);
                            }
                        }
                    }
                }
            }
            // Item references (a store), hosted tools' calls, custom tool calls…: ignored.
            _ => {}
        }
    }
    if !images.is_empty() {
        out.push(json!({"role": "user", "content": images}));
    }
    Ok(())
}

/// A message's content parts as chat parts (text and images).
fn parts(i: usize, list: Vec<Value>) -> Result<Vec<Value>, AgentError> {
    let mut out = vec![];
    for (j, p) in list.into_iter().enumerate() {
        let at = || format!("input[{i}].content[{j}]");
        let mut p = input::object(p, at)?;
        match input::get_str(&p, "type", || format!("{}.type", at()))? {
            Some("input_text" | "output_text" | "text" | "summary_text" | "reasoning_text") => {
                let t = input::take_str(&mut p, "text", || format!("{}.text", at()))?
                    .ok_or_else(|| AgentError::Missing(format!("{}.text", at())))?;
                out.push(text_part(t));
            }
            Some("refusal") => {
                if let Some(t) = input::take_str(&mut p, "refusal", || format!("{}.refusal", at()))?
                {
                    out.push(text_part(t));
                }
            }
            Some("input_image") => {
                let url = match p.remove("image_url") {
                    Some(Value::String(u)) => u,
                    Some(Value::Object(mut o)) => match o.remove("url") {
                        Some(Value::String(u)) => u,
                        _ => return Err(AgentError::Missing(format!("{}.image_url.url", at()))),
                    },
                    _ => {
                        return Err(AgentError::Unsupported {
                            path: format!("{}.image_url", at()),
                            why:
                                "an image must be given by `image_url` (mlx-box has no file store)",
                        })
                    }
                };
                out.push(image_part(url));
            }
            Some("input_file") => {
                return Err(AgentError::Unsupported {
                    path: format!("{}.type", at()),
                    why: "files are not served: send their text as `input_text`",
                })
            }
            _ => {}
        }
    }
    Ok(out)
}

/// A function tool as a chat tool, and as the Response echoes it; `None` for hosted tools.
fn tool(i: usize, t: Value) -> Result<Option<(Value, Value)>, AgentError> {
    let mut t = input::object(t, || format!("tools[{i}]"))?;
    if input::get_str(&t, "type", || format!("tools[{i}].type"))? != Some("function") {
        return Ok(None);
    }
    let name = input::take_str(&mut t, "name", || format!("tools[{i}].name"))?
        .ok_or_else(|| AgentError::Missing(format!("tools[{i}].name")))?;
    let schema = match t.remove("parameters") {
        None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
        Some(s) => input::schema(s, &name, || format!("tools[{i}].parameters"))?,
    };
    let desc = input::take_str(&mut t, "description", || format!("tools[{i}].description"))?;
    let strict = input::take_bool(&mut t, "strict", || format!("tools[{i}].strict"))?;
    let mut f = Map::new();
    f.insert("name".into(), json!(name));
    if let Some(d) = &desc {
        f.insert("description".into(), json!(d));
    }
    f.insert("parameters".into(), schema.clone());
    let echo = json!({"type": "function", "name": name, "description": desc, "parameters": schema, "strict": strict});
    Ok(Some((json!({"type": "function", "function": f}), echo)))
}

/// What the reply's translation needs.
#[derive(Debug, Clone)]
pub struct Reply {
    /// `resp_…`; items are `rs_`, `msg_`, `fc_` + `base` + their index.
    pub id: String,
    pub base: String,
    pub model: String,
    pub created: u64,
    /// The request fields the Response repeats.
    pub echo: Map<String, Value>,
    /// The prefix of call ids the backend did not give.
    pub call_prefix: String,
}

impl Reply {
    fn response(
        &self,
        status: &str,
        output: Vec<Value>,
        usage: Value,
        error: Value,
        incomplete: Value,
    ) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), json!(self.id));
        m.insert("object".into(), json!("response"));
        m.insert("created_at".into(), json!(self.created));
        m.insert("status".into(), json!(status));
        m.insert("error".into(), error);
        m.insert("incomplete_details".into(), incomplete);
        m.insert("model".into(), json!(self.model));
        m.insert("output".into(), Value::Array(output));
        m.insert("usage".into(), usage);
        for (k, v) in [
            ("instructions", Value::Null),
            ("max_output_tokens", Value::Null),
            ("parallel_tool_calls", json!(true)),
            ("temperature", Value::Null),
            ("top_p", Value::Null),
            ("tool_choice", json!("auto")),
            ("tools", json!([])),
            ("reasoning", json!({"effort": null, "summary": null})),
            ("text", json!({"format": {"type": "text"}})),
            ("metadata", json!({})),
        ] {
            m.insert(k.into(), self.echo.get(k).cloned().unwrap_or(v));
        }
        for k in ["store", "previous_response_id"] {
            m.insert(k.into(), self.echo.get(k).cloned().unwrap_or(Value::Null));
        }
        Value::Object(m)
    }

    fn item_id(&self, kind: &Kind, index: usize) -> String {
        let p = match kind {
            Kind::Thinking => "rs",
            Kind::Text => "msg",
            Kind::Tool { .. } => "fc",
        };
        format!("{p}_{}_{index}", self.base)
    }
}

fn usage_json(u: Usage) -> Value {
    json!({
        "input_tokens": u.prompt,
        "input_tokens_details": {"cached_tokens": u.cached},
        "output_tokens": u.completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": u.prompt + u.completion,
    })
}

fn output_text(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
}

/// An output item, whole.
fn item(id: String, kind: Kind, text: String, status: &str) -> Value {
    match kind {
        Kind::Thinking => json!({"id": id, "type": "reasoning", "summary": [],
            "content": [{"type": "reasoning_text", "text": text}]}),
        Kind::Text => json!({"id": id, "type": "message", "status": status, "role": "assistant",
            "content": [output_text(&text)]}),
        Kind::Tool { id: call, name } => {
            json!({"id": id, "type": "function_call", "status": status,
            "call_id": call, "name": name, "arguments": text})
        }
    }
}

/// The final status of a reply that ended: `completed`, or `incomplete` and why.
fn status(end: &End) -> (&'static str, Value) {
    match end {
        End::Length => ("incomplete", json!({"reason": "max_output_tokens"})),
        End::Filtered => ("incomplete", json!({"reason": "content_filter"})),
        _ => ("completed", Value::Null),
    }
}

/// A whole reply as a Response object.
pub fn response(reply: &Reply, c: Collected) -> Value {
    let output = c
        .blocks
        .into_iter()
        .enumerate()
        .map(|(i, (kind, text))| item(reply.item_id(&kind, i), kind, text, "completed"))
        .collect();
    let (st, incomplete) = status(&c.end);
    reply.response(st, output, usage_json(c.usage), Value::Null, incomplete)
}

struct Cur {
    index: usize,
    id: String,
    kind: Kind,
    text: String,
}

/// The Responses stream, written from the block ops.
pub struct Stream {
    reply: Reply,
    seq: u64,
    output: Vec<Value>,
    cur: Option<Cur>,
    /// The final Response once the stream ended (completed or incomplete), for the store.
    pub(super) done: Option<Value>,
}

impl Stream {
    /// The writer, and its first events (`response.created`, `response.in_progress`).
    pub fn new(reply: Reply) -> (Stream, Vec<u8>) {
        let mut s = Stream {
            reply,
            seq: 0,
            output: vec![],
            cur: None,
            done: None,
        };
        let mut out = Vec::with_capacity(2048);
        let r = s
            .reply
            .response("in_progress", vec![], Value::Null, Value::Null, Value::Null);
        // The same Response in both events: serialized once.
        let mut fields = b"\"response\":".to_vec();
        let _ = serde_json::to_writer(&mut fields, &r);
        s.event_raw(&mut out, "response.created", &fields);
        s.event_raw(&mut out, "response.in_progress", &fields);
        (s, out)
    }

    /// One event: `type` and `sequence_number`, then the fields of `data` (an object).
    fn event(&mut self, out: &mut Vec<u8>, name: &str, data: Value) {
        self.head(out, name);
        let start = out.len();
        let _ = serde_json::to_writer(&mut *out, &data);
        // `{…}` → `,…}`: the object's fields follow the head's.
        if out.len() - start > 2 {
            out[start] = b',';
        } else {
            out.truncate(start);
            out.push(b'}');
        }
        out.extend_from_slice(b"\n\n");
    }

    /// One event whose fields (`fields`, without braces) are written already.
    fn event_raw(&mut self, out: &mut Vec<u8>, name: &str, fields: &[u8]) {
        self.head(out, name);
        out.push(b',');
        out.extend_from_slice(fields);
        out.extend_from_slice(b"}\n\n");
    }

    /// `event: NAME`, and the `data:` line up to its `type` and `sequence_number` (no closing brace).
    fn head(&mut self, out: &mut Vec<u8>, name: &str) {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\ndata: {\"type\":\"");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\",\"sequence_number\":");
        blocks::num(out, self.seq);
        self.seq += 1;
    }

    /// A delta, written without building a JSON tree (the hot path).
    fn delta(
        &mut self,
        out: &mut Vec<u8>,
        name: &str,
        cur_id: &str,
        index: usize,
        text: &str,
        part: bool,
    ) {
        self.head(out, name);
        out.extend_from_slice(b",\"item_id\":");
        blocks::json_str(out, cur_id);
        out.extend_from_slice(b",\"output_index\":");
        blocks::num(out, index as u64);
        if part {
            out.extend_from_slice(b",\"content_index\":0");
        }
        out.extend_from_slice(b",\"delta\":");
        blocks::json_str(out, text);
        if name == "response.output_text.delta" {
            out.extend_from_slice(b",\"logprobs\":[]");
        }
        out.extend_from_slice(b"}\n\n");
    }
}

impl Writer for Stream {
    fn op(&mut self, op: Op, out: &mut Vec<u8>) {
        match op {
            Op::Start { index, kind } => {
                let id = self.reply.item_id(&kind, index);
                let added = match &kind {
                    Kind::Thinking => {
                        json!({"id": id, "type": "reasoning", "summary": [], "content": []})
                    }
                    Kind::Text => json!({"id": id, "type": "message", "status": "in_progress",
                        "role": "assistant", "content": []}),
                    Kind::Tool { id: call, name } => json!({"id": id, "type": "function_call",
                        "status": "in_progress", "call_id": call, "name": name, "arguments": ""}),
                };
                self.event(
                    out,
                    "response.output_item.added",
                    json!({"output_index": index, "item": added}),
                );
                if kind == Kind::Text {
                    self.event(
                        out,
                        "response.content_part.added",
                        json!({"item_id": id,
                        "output_index": index, "content_index": 0, "part": output_text("")}),
                    );
                }
                self.cur = Some(Cur {
                    index,
                    id,
                    kind,
                    text: String::new(),
                });
            }
            Op::Delta { index, text } => {
                let Some(mut cur) = self.cur.take().filter(|c| c.index == index) else {
                    return;
                };
                let (name, part) = match cur.kind {
                    Kind::Thinking => ("response.reasoning_text.delta", true),
                    Kind::Text => ("response.output_text.delta", true),
                    Kind::Tool { .. } => ("response.function_call_arguments.delta", false),
                };
                self.delta(out, name, &cur.id, index, &text, part);
                cur.text.push_str(&text);
                self.cur = Some(cur);
            }
            Op::Stop { index, cut } => {
                let Some(cur) = self.cur.take().filter(|c| c.index == index) else {
                    return;
                };
                let status = if cut { "incomplete" } else { "completed" };
                let Cur { id, kind, text, .. } = cur;
                match &kind {
                    Kind::Thinking => self.event(out, "response.reasoning_text.done", json!({
                        "item_id": id, "output_index": index, "content_index": 0, "text": text})),
                    Kind::Text => {
                        self.event(out, "response.output_text.done", json!({"item_id": id,
                            "output_index": index, "content_index": 0, "text": text, "logprobs": []}));
                        self.event(out, "response.content_part.done", json!({"item_id": id,
                            "output_index": index, "content_index": 0, "part": output_text(&text)}));
                    }
                    Kind::Tool { name, .. } => self.event(out, "response.function_call_arguments.done",
                        json!({"item_id": id, "output_index": index, "name": name, "arguments": text})),
                }
                let item = item(id, kind, text, status);
                self.event(
                    out,
                    "response.output_item.done",
                    json!({"output_index": index, "item": item}),
                );
                self.output.push(item);
            }
        }
    }

    fn end(&mut self, end: End, usage: Usage, out: &mut Vec<u8>) {
        let (st, incomplete) = status(&end);
        let output = std::mem::take(&mut self.output);
        let r = self
            .reply
            .response(st, output, usage_json(usage), Value::Null, incomplete);
        let name = if st == "completed" {
            "response.completed"
        } else {
            "response.incomplete"
        };
        let mut fields = b"\"response\":".to_vec();
        let _ = serde_json::to_writer(&mut fields, &r);
        self.event_raw(out, name, &fields);
        self.done = Some(r);
    }

    fn fail(&mut self, why: &str, out: &mut Vec<u8>) {
        let output = std::mem::take(&mut self.output);
        let error = json!({"code": "server_error", "message": why});
        let r = self
            .reply
            .response("failed", output, Value::Null, error, Value::Null);
        let mut fields = b"\"response\":".to_vec();
        let _ = serde_json::to_writer(&mut fields, &r);
        self.event_raw(out, "response.failed", &fields);
    }
}
