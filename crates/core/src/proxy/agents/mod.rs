//! The agent APIs — Anthropic Messages (`POST /v1/messages`) and OpenAI Responses (`POST /v1/responses`)
//! — translated to the backend's chat completions and back: pure functions and state machines, no I/O.
//!
//! - A request becomes a chat request, or an [`AgentError`] (a 400 in the API's shape): any JSON,
//!   however hostile, is answered without a panic; unknown fields are ignored; parts and schemas are
//!   bounded (`error.rs`).
//! - A whole reply becomes the API's object; a stream, fed in chunks cut anywhere, becomes the API's
//!   event sequence, well formed whatever the backend does: every block or item started is stopped,
//!   indices increase from 0, and a stream the backend cuts ends with the API's error event
//!   (`blocks.rs`).
//!
//! Bottom up: `error` (the APIs, limits, error bodies), `input` (reading a request), `chat` (reading the
//! backend), `blocks` (the block machine every reply goes through) → `anthropic`, `responses` → this file;
//! `items` (a stored response's input items, listed) stands alone.

mod anthropic;
mod blocks;
mod chat;
mod error;
mod input;
pub mod items;
mod responses;

pub use error::{error_body, AgentError, Api, Route};
pub use responses::History;

use blocks::{Blocks, Translate};
use chat::ChatReader;
use input::ChatRequest;
use serde_json::Value;

/// A request translated to a chat completion.
#[derive(Debug)]
pub struct Translated {
    api: Api,
    chat: ChatRequest,
}

/// Translates an agent request to a chat-completions request. `history` is the stored conversation of a
/// Responses request's `previous_response_id`.
pub fn translate(api: Api, body: &[u8], history: History<'_>) -> Result<Translated, AgentError> {
    let chat = match api {
        Api::Anthropic => anthropic::request(body)?,
        Api::Responses => responses::request(body, history)?,
    };
    Ok(Translated { api, chat })
}

/// The answer to `POST /v1/messages/count_tokens` from the backend's answer to the same request with
/// `max_tokens` 1 ([`Translated::count_only`]): its `usage.prompt_tokens` — the count of the model's
/// own tokenizer over the prompt its own chat template made.
pub fn count_reply(body: &[u8]) -> Result<Vec<u8>, String> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| format!("the backend's reply is not JSON: {e}"))?;
    let n = v
        .pointer("/usage/prompt_tokens")
        .and_then(Value::as_u64)
        .ok_or("the backend's reply has no usage.prompt_tokens: it cannot count tokens")?;
    Ok(serde_json::json!({"input_tokens": n})
        .to_string()
        .into_bytes())
}

/// The conversation a stored response continues: the input items it was asked with, then its output
/// items.
pub fn conversation(mut input: Vec<Value>, response: &Value) -> Vec<Value> {
    if let Some(out) = response.get("output").and_then(Value::as_array) {
        input.extend(out.iter().cloned());
    }
    input
}

impl Translated {
    /// For `count_tokens`: the same prompt, asking the server for one token, whole (not streamed).
    pub fn count_only(&mut self) {
        let c = &mut self.chat;
        c.stream = false;
        c.body.remove("stream");
        c.body.remove("stream_options");
        c.body.insert("max_tokens".into(), 1.into());
    }

    /// The conversation to store with the reply (a Responses request with `store`), taken.
    pub fn keep(&mut self) -> Option<Vec<Value>> {
        self.chat.keep.take()
    }

    /// The chat request's bytes and what the reply's translation needs. The client's thinking switch
    /// goes to the server as its chat template's `enable_thinking`, unless it asks for thinking where
    /// the operator turned it off (`thinking_allowed`: false). `ids` makes the reply's ids
    /// (`msg_…`, `resp_…`), `created` is its Unix time, `default_model` its model when the client named
    /// none.
    pub fn into_chat(
        self,
        ids: &str,
        created: u64,
        default_model: &str,
        thinking_allowed: bool,
    ) -> (Vec<u8>, Reply) {
        let ChatRequest {
            mut body,
            stream,
            thinking,
            model,
            stops,
            echo,
            keep: _,
        } = self.chat;
        if let Some(on) = thinking.filter(|on| !on || thinking_allowed) {
            body.insert(
                "chat_template_kwargs".into(),
                serde_json::json!({"enable_thinking": on}),
            );
        }
        let model = model.unwrap_or_else(|| default_model.to_string());
        let which = match self.api {
            Api::Anthropic => Which::Anthropic(anthropic::Reply {
                id: format!("msg_{ids}"),
                model,
                tool_prefix: format!("toolu_{ids}_"),
            }),
            Api::Responses => Which::Responses(responses::Reply {
                id: format!("resp_{ids}"),
                base: ids.to_string(),
                model,
                created,
                echo,
                call_prefix: format!("call_{ids}_"),
            }),
        };
        let bytes = serde_json::to_vec(&Value::Object(body)).unwrap_or_default();
        let reply = Reply {
            which,
            keep_thinking: thinking != Some(false),
            stops,
            stream,
        };
        (bytes, reply)
    }
}

#[derive(Debug, Clone)]
enum Which {
    Anthropic(anthropic::Reply),
    Responses(responses::Reply),
}

/// What translates the reply of one request.
#[derive(Debug, Clone)]
pub struct Reply {
    which: Which,
    keep_thinking: bool,
    stops: Vec<String>,
    stream: bool,
}

impl Reply {
    /// The client asked for a stream.
    pub fn stream(&self) -> bool {
        self.stream
    }

    fn blocks(&self) -> Blocks {
        let prefix = match &self.which {
            Which::Anthropic(r) => r.tool_prefix.clone(),
            Which::Responses(r) => r.call_prefix.clone(),
        };
        Blocks::new(self.keep_thinking, prefix, self.stops.clone())
    }

    /// A whole reply — a chat completion, or a whole chat stream (`sse`) — as the API's JSON object.
    /// `Err` when the backend's reply is not one, failed, or was cut.
    #[cfg(test)]
    pub fn whole(&self, body: &[u8], sse: bool) -> Result<Vec<u8>, String> {
        let v = self.whole_value(body, sse)?;
        Ok(serde_json::to_vec(&v).unwrap_or_default())
    }

    /// [`Reply::whole`], as a JSON value.
    pub fn whole_value(&self, body: &[u8], sse: bool) -> Result<Value, String> {
        let mut events = vec![];
        let mut reader = ChatReader::default();
        if sse {
            reader.push(body, &mut events).map_err(|e| e.to_string())?;
            reader.finish(&mut events);
        } else {
            reader.completion(body, &mut events)?;
        }
        let c = blocks::collect(events, self.blocks())?;
        Ok(match &self.which {
            Which::Anthropic(r) => anthropic::message(r, c),
            Which::Responses(r) => responses::response(r, c),
        })
    }

    /// The translator of the backend's stream, and the first bytes to send (before any token).
    pub fn translator(&self) -> (StreamTranslator, Vec<u8>) {
        match &self.which {
            Which::Anthropic(r) => {
                let (w, first) = anthropic::Stream::new(r);
                (
                    StreamTranslator::Anthropic(Box::new(Translate::new(self.blocks(), w))),
                    first,
                )
            }
            Which::Responses(r) => {
                let (w, first) = responses::Stream::new(r.clone());
                (
                    StreamTranslator::Responses(Box::new(Translate::new(self.blocks(), w))),
                    first,
                )
            }
        }
    }
}

/// A backend's chat stream becoming the API's stream: bytes in, bytes out.
pub enum StreamTranslator {
    Anthropic(Box<Translate<anthropic::Stream>>),
    Responses(Box<Translate<responses::Stream>>),
}

macro_rules! both {
    ($self:ident, $t:ident => $e:expr) => {
        match $self {
            StreamTranslator::Anthropic($t) => $e,
            StreamTranslator::Responses($t) => $e,
        }
    };
}

impl StreamTranslator {
    /// A chunk of the backend's SSE stream.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        both!(self, t => t.push(chunk))
    }

    /// The backend's stream ended.
    pub fn finish(&mut self) -> Vec<u8> {
        both!(self, t => t.finish())
    }

    /// The backend's stream failed (cut, stalled).
    pub fn fail(&mut self, why: &str) -> Vec<u8> {
        both!(self, t => t.fail(why))
    }

    /// A whole chat completion, for a client that asked for a stream, as the whole stream.
    pub fn completion(&mut self, body: &[u8]) -> Vec<u8> {
        let mut events = vec![];
        match ChatReader::default().completion(body, &mut events) {
            Ok(()) => both!(self, t => t.feed(events)),
            Err(e) => self.fail(&format!(
                "the backend's reply is not a chat completion: {e}"
            )),
        }
    }

    /// The final Response of a Responses stream that ended (completed or incomplete), taken once.
    pub fn take_final(&mut self) -> Option<Value> {
        match self {
            StreamTranslator::Responses(t) => t.writer_mut().done.take(),
            StreamTranslator::Anthropic(_) => None,
        }
    }

    /// What to send while the first token is slow (Anthropic's `ping`), if anything.
    pub fn ping(&self) -> Option<&'static [u8]> {
        match self {
            StreamTranslator::Anthropic(t) if !t.started() && !t.is_closed() => {
                Some(anthropic::PING)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
