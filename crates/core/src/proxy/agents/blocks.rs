//! From chat events to the blocks both agent APIs are made of (Anthropic's content blocks, the
//! Responses API's output items): thinking, text, one per tool call. Guarantees, whatever the backend
//! sends and wherever its stream is cut: blocks are numbered 0, 1, 2… in the order they start; at most
//! one is open at a time; every block started is stopped, before the end or the failure is written;
//! nothing is written after either.

use super::chat::{ChatEvent, ChatReader, Usage};

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Thinking,
    Text,
    Tool { id: String, name: String },
}

#[derive(Debug, PartialEq)]
pub enum Op {
    Start {
        index: usize,
        kind: Kind,
    },
    Delta {
        index: usize,
        text: String,
    },
    /// `cut`: stopped because the stream failed.
    Stop {
        index: usize,
        cut: bool,
    },
}

/// Why the model stopped.
#[derive(Debug, Clone, PartialEq)]
pub enum End {
    /// Its end of turn, or a stop sequence (the one that matched, when known).
    Stop {
        matched: Option<String>,
    },
    Length,
    Tools,
    Filtered,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Open {
    Thinking,
    Text,
    Tool(u64),
}

/// Text kept from the end of the output, to tell a stop sequence the server left in place.
const TAIL: usize = 256;

/// The block machine of one reply.
#[derive(Debug)]
pub struct Blocks {
    keep_thinking: bool,
    /// The prefix of tool-call ids the backend did not give.
    id_prefix: String,
    stops: Vec<String>,
    open: Option<(usize, Open)>,
    next: usize,
    /// Backend tool index → block index.
    tools: Vec<(u64, usize)>,
    finish: Option<(String, Option<String>)>,
    usage: Usage,
    done: bool,
    error: Option<String>,
    tail: String,
}

impl Blocks {
    pub fn new(keep_thinking: bool, id_prefix: String, stops: Vec<String>) -> Blocks {
        Blocks {
            keep_thinking,
            id_prefix,
            stops,
            open: None,
            next: 0,
            tools: vec![],
            finish: None,
            usage: Usage::default(),
            done: false,
            error: None,
            tail: String::new(),
        }
    }

    /// Any block started yet.
    pub fn started(&self) -> bool {
        self.next > 0
    }

    fn start(&mut self, open: Open, kind: Kind, out: &mut Vec<Op>) -> usize {
        self.close(false, out);
        let index = self.next;
        self.next += 1;
        self.open = Some((index, open));
        out.push(Op::Start { index, kind });
        index
    }

    /// Stops the open block.
    pub fn close(&mut self, cut: bool, out: &mut Vec<Op>) {
        if let Some((index, _)) = self.open.take() {
            out.push(Op::Stop { index, cut });
        }
    }

    fn delta(&mut self, open: Open, kind: Kind, text: String, out: &mut Vec<Op>) {
        let index = match self.open {
            Some((i, o)) if o == open => i,
            _ => self.start(open, kind, out),
        };
        out.push(Op::Delta { index, text });
    }

    /// One event: its ops appended to `out`. After the end, an error or `[DONE]`, events are ignored.
    pub fn on(&mut self, ev: ChatEvent, out: &mut Vec<Op>) {
        if self.error.is_some() || self.done {
            return;
        }
        match ev {
            ChatEvent::Text(t) if !t.is_empty() => {
                self.keep_tail(&t);
                self.delta(Open::Text, Kind::Text, t, out)
            }
            ChatEvent::Reasoning(t) if !t.is_empty() && self.keep_thinking => {
                self.delta(Open::Thinking, Kind::Thinking, t, out)
            }
            ChatEvent::ToolStart { index, id, name } => self.tool_start(index, id, name, out),
            ChatEvent::ToolArgs { index, args } => {
                if !self.tools.iter().any(|t| t.0 == index) {
                    self.tool_start(index, None, String::new(), out);
                }
                match self.open {
                    Some((i, Open::Tool(t))) if t == index => out.push(Op::Delta {
                        index: i,
                        text: args,
                    }),
                    // Arguments of a call already stopped (a backend interleaving two calls): the
                    // stopped block cannot grow; they are dropped.
                    _ => tracing::debug!("tool call {index}: arguments after its block stopped"),
                }
            }
            ChatEvent::Finish { reason, matched } => {
                self.finish.get_or_insert((reason, matched));
            }
            ChatEvent::Usage(u) => self.usage = u,
            ChatEvent::Error(e) => self.error = Some(e),
            ChatEvent::Done => self.done = true,
            ChatEvent::Text(_) | ChatEvent::Reasoning(_) => {}
        }
    }

    fn tool_start(&mut self, index: u64, id: Option<String>, name: String, out: &mut Vec<Op>) {
        let id = id.unwrap_or_else(|| format!("{}{}", self.id_prefix, self.tools.len()));
        let block = self.start(Open::Tool(index), Kind::Tool { id, name }, out);
        self.tools.push((index, block));
    }

    fn keep_tail(&mut self, t: &str) {
        if self.stops.is_empty() {
            return;
        }
        self.tail.push_str(t);
        if self.tail.len() > 2 * TAIL {
            let mut cut = self.tail.len() - TAIL;
            while !self.tail.is_char_boundary(cut) {
                cut += 1;
            }
            self.tail.drain(..cut);
        }
    }

    /// The stream has said all it will say (a finish reason or `[DONE]`).
    pub fn finished(&self) -> bool {
        self.finish.is_some() || self.done
    }

    pub fn done(&self) -> bool {
        self.done
    }

    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    pub fn usage(&self) -> Usage {
        self.usage
    }

    /// Why the model stopped.
    pub fn end(&self) -> End {
        let any_tool = !self.tools.is_empty();
        match self.finish.as_ref().map(|f| (f.0.as_str(), f.1.as_ref())) {
            Some(("length", _)) => End::Length,
            Some(("tool_calls" | "function_call", _)) => End::Tools,
            Some(("content_filter", _)) => End::Filtered,
            _ if any_tool => End::Tools,
            Some((_, Some(m))) if self.stops.contains(m) => End::Stop {
                matched: Some(m.clone()),
            },
            _ => End::Stop {
                matched: self
                    .stops
                    .iter()
                    .find(|s| !s.is_empty() && self.tail.ends_with(s.as_str()))
                    .cloned(),
            },
        }
    }
}

/// Writes one API's stream from the ops.
pub trait Writer {
    fn op(&mut self, op: Op, out: &mut Vec<u8>);
    /// The reply ended: why, and its usage.
    fn end(&mut self, end: End, usage: Usage, out: &mut Vec<u8>);
    /// The reply failed (its blocks are stopped already).
    fn fail(&mut self, why: &str, out: &mut Vec<u8>);
}

/// A backend's chat stream translated as it comes: bytes in, the API's SSE bytes out.
pub struct Translate<W> {
    reader: ChatReader,
    blocks: Blocks,
    w: W,
    events: Vec<ChatEvent>,
    ops: Vec<Op>,
    closed: bool,
}

impl<W: Writer> Translate<W> {
    pub fn new(blocks: Blocks, w: W) -> Self {
        Translate {
            reader: ChatReader::default(),
            blocks,
            w,
            events: vec![],
            ops: vec![],
            closed: false,
        }
    }

    /// The writer (to read what it kept).
    pub fn writer_mut(&mut self) -> &mut W {
        &mut self.w
    }

    /// Ended or failed: nothing more will be written.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Any block started (the first token came).
    pub fn started(&self) -> bool {
        self.blocks.started()
    }

    /// A chunk of the backend's SSE stream.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        if self.closed {
            return vec![];
        }
        let mut events = std::mem::take(&mut self.events);
        let res = self.reader.push(chunk, &mut events);
        // The API's events are about twice the backend's bytes: one allocation, most of the time.
        let mut out = Vec::with_capacity(chunk.len() * 2 + 256);
        self.apply_into(&mut events, &mut out);
        self.events = events;
        if let Err(e) = res {
            out.extend(self.fail(&e.to_string()));
        }
        out
    }

    /// Events from elsewhere (a whole chat completion, for a client that asked for a stream).
    pub fn feed(&mut self, mut events: Vec<ChatEvent>) -> Vec<u8> {
        let mut out = self.apply(&mut events);
        out.extend(self.finish());
        out
    }

    fn apply(&mut self, events: &mut Vec<ChatEvent>) -> Vec<u8> {
        let mut out = Vec::new();
        self.apply_into(events, &mut out);
        out
    }

    fn apply_into(&mut self, events: &mut Vec<ChatEvent>, out: &mut Vec<u8>) {
        for ev in events.drain(..) {
            self.blocks.on(ev, &mut self.ops);
        }
        for op in self.ops.drain(..) {
            self.w.op(op, out);
        }
        if let Some(e) = self.blocks.error().map(str::to_string) {
            out.extend(self.fail(&format!("the backend failed: {e}")));
        } else if self.blocks.done() {
            self.end(out);
        }
    }

    fn end(&mut self, out: &mut Vec<u8>) {
        if self.closed {
            return;
        }
        self.closed = true;
        self.blocks.close(false, &mut self.ops);
        for op in self.ops.drain(..) {
            self.w.op(op, out);
        }
        self.w.end(self.blocks.end(), self.blocks.usage(), out);
    }

    /// The backend's stream ended: the reply ends, or fails when the backend never said it finished.
    pub fn finish(&mut self) -> Vec<u8> {
        if self.closed {
            return vec![];
        }
        let mut events = std::mem::take(&mut self.events);
        self.reader.finish(&mut events);
        let mut out = self.apply(&mut events);
        if self.closed {
            return out;
        }
        if self.blocks.finished() {
            self.end(&mut out);
        } else {
            out.extend(self.fail("the backend's stream ended before the reply was finished"));
        }
        out
    }

    /// The stream failed (the backend cut it, stalled, or sent an error): open blocks are stopped, then
    /// the API's error event.
    pub fn fail(&mut self, why: &str) -> Vec<u8> {
        let mut out = Vec::new();
        if self.closed {
            return out;
        }
        self.closed = true;
        self.blocks.close(true, &mut self.ops);
        for op in self.ops.drain(..) {
            self.w.op(op, &mut out);
        }
        self.w.fail(why, &mut out);
        out
    }
}

/// A whole reply: its blocks with their text (a tool call's arguments), why it ended, its usage.
#[derive(Debug, PartialEq)]
pub struct Collected {
    pub blocks: Vec<(Kind, String)>,
    pub end: End,
    pub usage: Usage,
}

/// Collects the events of a whole reply; `Err` when the backend failed or never finished.
pub fn collect(events: Vec<ChatEvent>, mut blocks: Blocks) -> Result<Collected, String> {
    let mut ops = vec![];
    for ev in events {
        blocks.on(ev, &mut ops);
    }
    if let Some(e) = blocks.error() {
        return Err(format!("the backend failed: {e}"));
    }
    if !blocks.finished() {
        return Err("the backend's reply ended before it was finished".into());
    }
    let mut out: Vec<(Kind, String)> = vec![];
    for op in ops {
        match op {
            Op::Start { kind, .. } => out.push((kind, String::new())),
            Op::Delta { index, text } => {
                if let Some(b) = out.get_mut(index) {
                    b.1.push_str(&text);
                }
            }
            Op::Stop { .. } => {}
        }
    }
    Ok(Collected {
        blocks: out,
        end: blocks.end(),
        usage: blocks.usage(),
    })
}

/// Appends one SSE event: `event: NAME`, its JSON as one `data:` line, a blank line.
pub fn event(out: &mut Vec<u8>, name: &str, data: &serde_json::Value) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    // Writing a `Value` into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, data);
    out.extend_from_slice(b"\n\n");
}

/// Appends a JSON string literal (the hot path of deltas: no `Value` built).
pub fn json_str(out: &mut Vec<u8>, s: &str) {
    // Most deltas need no escape: copied as they are.
    if s.bytes()
        .all(|b| b >= 0x20 && b != b'"' && b != b'\\' && b != 0x7f)
    {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        return;
    }
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Appends an unsigned integer in decimal (no allocation).
pub fn num(out: &mut Vec<u8>, n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}
