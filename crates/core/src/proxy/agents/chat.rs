//! The backend's side: a chat-completions reply, whole or as an SSE stream fed in chunks cut anywhere
//! (mid-line, mid-UTF-8), read as one sequence of [`ChatEvent`]s. Only choice 0 is read. `<think>` spans
//! in the content and `reasoning` / `reasoning_content` fields become [`ChatEvent::Reasoning`]. An event
//! may not grow past [`MAX_EVENT`] bytes; the tool calls tracked are bounded.

use serde::Deserialize;
use std::borrow::Cow;

use crate::proxy::sse::MAX_EVENT;

/// What the backend said, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatEvent {
    Text(String),
    Reasoning(String),
    /// The first delta of a tool call (`index` is the backend's).
    ToolStart {
        index: u64,
        id: Option<String>,
        name: String,
    },
    ToolArgs {
        index: u64,
        args: String,
    },
    /// `finish_reason`, and the stop sequence the server says matched (vLLM's `stop_reason`).
    Finish {
        reason: String,
        matched: Option<String>,
    },
    Usage(Usage),
    /// An error the backend sent in the stream.
    Error(String),
    /// `data: [DONE]`.
    Done,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    pub prompt: u64,
    pub completion: u64,
    pub cached: u64,
}

/// Distinct tool calls tracked per reply (a backend's index must not size memory).
const MAX_TOOLS: usize = 1024;

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("the backend sent an SSE event longer than {MAX_EVENT} bytes")]
pub struct EventTooLong;

/// Splits content into text and `<think>` spans, holding back only a suffix that may start a tag. The
/// whitespace that follows a span's end is dropped (as the reasoning filter does).
#[derive(Debug, Default)]
pub struct ThinkSplit {
    inside: bool,
    pending: String,
    trim: bool,
}

const OPEN: &str = "<think>";
const CLOSE: &str = "</think>";

fn partial_tag_suffix(s: &str, tag: &str) -> usize {
    (1..tag.len().min(s.len() + 1))
        .rev()
        .find(|&n| s.is_char_boundary(s.len() - n) && tag.starts_with(&s[s.len() - n..]))
        .unwrap_or(0)
}

impl ThinkSplit {
    pub fn feed(&mut self, chunk: &str, out: &mut Vec<ChatEvent>) {
        if self.pending.is_empty() && !self.inside && !chunk.contains('<') {
            self.text(chunk, out);
            return;
        }
        let joined = std::mem::take(&mut self.pending) + chunk;
        let mut rest = joined.as_str();
        loop {
            let tag = if self.inside { CLOSE } else { OPEN };
            match rest.find(tag) {
                Some(i) => {
                    self.emit(&rest[..i], out);
                    rest = &rest[i + tag.len()..];
                    self.inside = !self.inside;
                    if !self.inside {
                        self.trim = true;
                    }
                }
                None => {
                    let keep = partial_tag_suffix(rest, tag);
                    let (now, hold) = rest.split_at(rest.len() - keep);
                    self.emit(now, out);
                    self.pending = hold.to_string();
                    return;
                }
            }
        }
    }

    fn emit(&mut self, s: &str, out: &mut Vec<ChatEvent>) {
        if self.inside {
            if !s.is_empty() {
                out.push(ChatEvent::Reasoning(s.to_string()));
            }
        } else {
            self.text(s, out);
        }
    }

    fn text(&mut self, s: &str, out: &mut Vec<ChatEvent>) {
        let s = if self.trim { s.trim_start() } else { s };
        if !s.is_empty() {
            self.trim = false;
            out.push(ChatEvent::Text(s.to_string()));
        }
    }

    /// The end of the content: a held-back partial tag was text (or reasoning, inside a span).
    pub fn finish(&mut self, out: &mut Vec<ChatEvent>) {
        let p = std::mem::take(&mut self.pending);
        self.emit(&p, out);
    }
}

#[derive(Deserialize)]
struct Chunk<'a> {
    #[serde(default, borrow)]
    choices: Vec<Choice<'a>>,
    #[serde(default)]
    usage: Option<UsageIn>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct UsageIn {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<Details>,
}

#[derive(Deserialize)]
struct Details {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(default)]
    index: u64,
    #[serde(default, borrow)]
    delta: Option<Delta<'a>>,
    #[serde(default, borrow)]
    message: Option<Delta<'a>>,
    #[serde(default, borrow)]
    finish_reason: Option<Cow<'a, str>>,
    #[serde(default)]
    stop_reason: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Delta<'a> {
    #[serde(default, borrow)]
    content: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    reasoning: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    reasoning_content: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    tool_calls: Option<Vec<ToolDelta<'a>>>,
}

#[derive(Deserialize)]
struct ToolDelta<'a> {
    #[serde(default)]
    index: Option<u64>,
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    function: Option<FnDelta<'a>>,
}

#[derive(Deserialize)]
struct FnDelta<'a> {
    #[serde(default, borrow)]
    name: Option<Cow<'a, str>>,
    /// A string (OpenAI); some servers send the object itself.
    #[serde(default)]
    arguments: Option<serde_json::Value>,
}

/// The events of one reply, whole or streamed: the think splitter and the tool calls seen so far.
#[derive(Debug, Default)]
pub struct ChatReader {
    think: ThinkSplit,
    tools: Vec<u64>,
    /// An unfinished line.
    line: Vec<u8>,
    /// The `data:` lines of the event being read.
    data: Vec<u8>,
    has_data: bool,
}

impl ChatReader {
    /// One chunk of an SSE stream: the events of every event it completes.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<ChatEvent>) -> Result<(), EventTooLong> {
        let mut rest = chunk;
        while let Some(nl) = memchr::memchr(b'\n', rest) {
            // The usual event, whole in this chunk: one `data:` line and its blank line, read in place.
            if self.line.is_empty() && !self.has_data {
                if let Some(d) = rest[..nl].strip_prefix(b"data:") {
                    let after = &rest[nl + 1..];
                    let blank = match after {
                        [b'\n', ..] => Some(1),
                        [b'\r', b'\n', ..] => Some(2),
                        _ => None,
                    };
                    if let Some(n) = blank {
                        let d = d.strip_suffix(b"\r").unwrap_or(d);
                        self.data_event(d.strip_prefix(b" ").unwrap_or(d), out);
                        rest = &after[n..];
                        continue;
                    }
                }
            }
            if self.line.is_empty() {
                self.on_line(&rest[..nl], out);
            } else {
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(&rest[..nl]);
                self.on_line(&line, out);
                line.clear();
                self.line = line; // its buffer kept
            }
            rest = &rest[nl + 1..];
        }
        self.line.extend_from_slice(rest);
        if self.line.len() + self.data.len() > MAX_EVENT {
            self.line = Vec::new();
            self.data = Vec::new();
            return Err(EventTooLong);
        }
        Ok(())
    }

    /// The end of the stream: its last line and event, even without their ends.
    pub fn finish(&mut self, out: &mut Vec<ChatEvent>) {
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.on_line(&line, out);
        }
        self.dispatch(out);
    }

    fn on_line(&mut self, line: &[u8], out: &mut Vec<ChatEvent>) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        if let Some(d) = line.strip_prefix(b"data:") {
            let d = d.strip_prefix(b" ").unwrap_or(d);
            if self.has_data {
                self.data.push(b'\n');
            }
            self.data.extend_from_slice(d);
            self.has_data = true;
        }
        // `event:`, `id:`, `retry:` and comments: nothing a chat stream carries.
    }

    fn dispatch(&mut self, out: &mut Vec<ChatEvent>) {
        if !self.has_data {
            return;
        }
        let data = std::mem::take(&mut self.data);
        self.has_data = false;
        self.data_event(&data, out);
        self.data = data;
        self.data.clear();
    }

    /// The data of one event.
    fn data_event(&mut self, data: &[u8], out: &mut Vec<ChatEvent>) {
        if data.trim_ascii() == b"[DONE]" {
            self.think.finish(out);
            out.push(ChatEvent::Done);
        } else if let Ok(c) = serde_json::from_slice::<Chunk>(data) {
            self.chunk(c, out);
        }
        // Not JSON: skipped, as a client would.
    }

    /// A whole (non-streamed) chat completion, as the events a stream of it would give.
    pub fn completion(&mut self, body: &[u8], out: &mut Vec<ChatEvent>) -> Result<(), String> {
        let c: Chunk = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        if c.error.is_none() && c.choices.is_empty() {
            return Err("the backend's reply has no choices".into());
        }
        self.chunk(c, out);
        self.think.finish(out);
        out.push(ChatEvent::Done);
        Ok(())
    }

    fn chunk(&mut self, c: Chunk<'_>, out: &mut Vec<ChatEvent>) {
        if let Some(e) = c.error {
            let msg = match &e {
                serde_json::Value::String(s) => s.clone(),
                v => v
                    .get("message")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string()),
            };
            out.push(ChatEvent::Error(msg));
            return;
        }
        for choice in c.choices.into_iter().filter(|c| c.index == 0) {
            if let Some(d) = choice.delta.or(choice.message) {
                for r in [d.reasoning, d.reasoning_content].into_iter().flatten() {
                    if !r.is_empty() {
                        out.push(ChatEvent::Reasoning(r.into_owned()));
                    }
                }
                if let Some(text) = d.content {
                    self.think.feed(&text, out);
                }
                for (pos, t) in d.tool_calls.into_iter().flatten().enumerate() {
                    self.tool(pos, t, out);
                }
            }
            if let Some(reason) = choice.finish_reason {
                self.think.finish(out);
                let matched = match choice.stop_reason {
                    Some(serde_json::Value::String(s)) => Some(s),
                    _ => None,
                };
                out.push(ChatEvent::Finish {
                    reason: reason.into_owned(),
                    matched,
                });
            }
        }
        if let Some(u) = c.usage {
            out.push(ChatEvent::Usage(Usage {
                prompt: u.prompt_tokens,
                completion: u.completion_tokens,
                cached: u
                    .prompt_tokens_details
                    .and_then(|d| d.cached_tokens)
                    .unwrap_or(0),
            }));
        }
    }

    fn tool(&mut self, pos: usize, t: ToolDelta<'_>, out: &mut Vec<ChatEvent>) {
        let index = t.index.unwrap_or(pos as u64);
        let (name, args) = match t.function {
            Some(f) => (f.name, f.arguments),
            None => (None, None),
        };
        if !self.tools.contains(&index) {
            if self.tools.len() >= MAX_TOOLS {
                return;
            }
            self.tools.push(index);
            // Text before a call is text: what the splitter holds goes out first.
            self.think.finish(out);
            out.push(ChatEvent::ToolStart {
                index,
                id: t.id.filter(|i| !i.is_empty()).map(Cow::into_owned),
                name: name.map(Cow::into_owned).unwrap_or_default(),
            });
        }
        let args = match args {
            None | Some(serde_json::Value::Null) => return,
            Some(serde_json::Value::String(s)) => s,
            Some(v) => v.to_string(),
        };
        if !args.is_empty() {
            out.push(ChatEvent::ToolArgs { index, args });
        }
    }
}
