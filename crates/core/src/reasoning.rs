//! The reasoning filter of `filter_reasoning = true` (used by the API-key proxy): removes `<think>…</think>`
//! spans from content and the `reasoning` / `reasoning_content` fields, in JSON replies and in SSE streams.
//!
//! Streaming: text is forwarded as soon as it is known not to be inside a think span; the only text held
//! back is a suffix that could be the start of a tag (`<`, `<th`, …), so normal text is not buffered. A think
//! block cut off by `max_tokens` (no closing tag) is dropped to the end.

use serde_json::Value;

const OPEN: &str = "<think>";
const CLOSE: &str = "</think>";
/// The tags' searchers, built once (`str::find` built one per call, which showed in the proxy's profile).
static OPEN_FINDER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(OPEN));
static CLOSE_FINDER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(CLOSE));

/// Streaming remover of `<think>…</think>` spans. Feed chunks in order; call `finish` at the end.
#[derive(Debug, Default, Clone)]
pub struct ThinkFilter {
    inside: bool,
    /// A held-back suffix that may be the beginning of the next tag.
    pending: String,
}

/// Length of the longest suffix of `s` that is a proper prefix of `tag`.
fn partial_tag_suffix(s: &str, tag: &str) -> usize {
    (1..tag.len().min(s.len() + 1))
        .rev()
        .find(|&n| s.is_char_boundary(s.len() - n) && tag.starts_with(&s[s.len() - n..]))
        .unwrap_or(0)
}

impl ThinkFilter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Filters one chunk; returns what can be emitted now.
    pub fn feed(&mut self, chunk: &str) -> String {
        // The chunk is copied only when a partial tag was held back before it.
        let joined;
        let mut rest = if self.pending.is_empty() {
            chunk
        } else {
            joined = std::mem::take(&mut self.pending) + chunk;
            joined.as_str()
        };
        let mut out = String::new();
        loop {
            let (tag, finder) = if self.inside {
                (CLOSE, &*CLOSE_FINDER)
            } else {
                (OPEN, &*OPEN_FINDER)
            };
            // A tag starts with `<`, so where it is found is a char boundary.
            match finder.find(rest.as_bytes()) {
                Some(i) => {
                    if !self.inside {
                        out.push_str(&rest[..i]);
                    }
                    rest = &rest[i + tag.len()..];
                    self.inside = !self.inside;
                }
                None => {
                    let keep = partial_tag_suffix(rest, tag);
                    let (emit, hold) = rest.split_at(rest.len() - keep);
                    if !self.inside {
                        out.push_str(emit);
                    }
                    self.pending = hold.to_string();
                    return out;
                }
            }
        }
    }

    /// End of stream: a held-back partial tag outside a think span was just text.
    pub fn finish(&mut self) -> String {
        let p = std::mem::take(&mut self.pending);
        if self.inside {
            String::new()
        } else {
            p
        }
    }
}

/// Removes think spans from a whole text.
pub fn strip_think(text: &str) -> String {
    let mut f = ThinkFilter::new();
    let mut s = f.feed(text);
    s.push_str(&f.finish());
    s
}

/// Filters a non-streaming OpenAI chat completion in place.
pub fn filter_completion(v: &mut Value) {
    if let Some(choices) = v.get_mut("choices").and_then(Value::as_array_mut) {
        for c in choices {
            if let Some(m) = c.get_mut("message").and_then(Value::as_object_mut) {
                m.remove("reasoning");
                m.remove("reasoning_content");
                if let Some(Value::String(s)) = m.get_mut("content") {
                    *s = strip_think(s).trim_start().to_string();
                }
            }
        }
    }
}

/// Choices per request that get a filter of their own (OpenAI caps `n` at 128). The index comes from the
/// backend's stream: it must not size an allocation, so higher indexes share the last filter.
const MAX_CHOICES: usize = 128;

/// State of one SSE stream: a filter per choice index.
#[derive(Debug, Default)]
pub struct StreamFilter {
    per_choice: Vec<ThinkFilter>,
}

impl StreamFilter {
    /// No choice is inside a think span or holding back a partial tag: an event with no `<` and no
    /// reasoning field would come out of `filter_chunk` unchanged.
    pub fn is_idle(&self) -> bool {
        self.per_choice
            .iter()
            .all(|f| !f.inside && f.pending.is_empty())
    }

    /// The text of choice `index`'s `content` delta with think spans removed (the choice's state carried
    /// to its next delta); `finished`: its last delta, a held-back partial tag was just text.
    pub fn feed_content(&mut self, index: u64, content: &str, finished: bool) -> String {
        let idx = index.min(MAX_CHOICES as u64 - 1) as usize;
        if self.per_choice.len() <= idx {
            self.per_choice.resize_with(idx + 1, ThinkFilter::new);
        }
        let mut text = self.per_choice[idx].feed(content);
        if finished {
            text.push_str(&self.per_choice[idx].finish());
        }
        text
    }

    /// Filters the JSON of one `data:` event in place. Returns false when the event carries nothing left
    /// to send (a reasoning-only delta), so the proxy can drop it.
    pub fn filter_chunk(&mut self, v: &mut Value) -> bool {
        let Some(choices) = v.get_mut("choices").and_then(Value::as_array_mut) else {
            return true; // e.g. the usage-only last chunk
        };
        let mut keep = choices.is_empty();
        for c in choices {
            let idx = c.get("index").and_then(Value::as_u64).unwrap_or(0);
            let finished = c.get("finish_reason").is_some_and(|f| !f.is_null());
            if let Some(d) = c.get_mut("delta").and_then(Value::as_object_mut) {
                let had_reasoning =
                    d.remove("reasoning").is_some() | d.remove("reasoning_content").is_some();
                let had_content = d.contains_key("content");
                let content = match d.get("content") {
                    Some(Value::String(s)) => s.as_str(),
                    _ => "",
                };
                let text = self.feed_content(idx, content, finished);
                let other = d.keys().any(|k| k != "content" && k != "role");
                // Keep: text to send, the end, tool calls and the like, or a role-only first chunk.
                keep |= !text.is_empty() || finished || other || (!had_reasoning && !had_content);
                if had_content || !text.is_empty() {
                    d.insert("content".into(), Value::String(text));
                }
            } else {
                keep = true;
            }
        }
        keep
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn tags_split_across_chunks() {
        let mut f = ThinkFilter::new();
        let mut out = String::new();
        for c in [
            "Hel",
            "lo <th",
            "ink>secret",
            " stuff</thi",
            "nk>",
            " world <",
            "3",
        ] {
            out.push_str(&f.feed(c));
        }
        out.push_str(&f.finish());
        assert_eq!(out, "Hello  world <3");
    }

    #[test]
    fn normal_text_is_not_held_back() {
        let mut f = ThinkFilter::new();
        assert_eq!(f.feed("Hello world"), "Hello world");
        assert_eq!(
            f.feed("a < b"),
            "a < b",
            "a '<' followed by a space cannot start a tag"
        );
        assert_eq!(f.feed("x <t"), "x ", "only a possible tag prefix waits");
        assert_eq!(f.feed("able>"), "<table>");
    }

    #[test]
    fn think_cut_off_by_max_tokens_is_dropped() {
        assert_eq!(
            strip_think("Answer: <think>I was thinking and then the tokens ran o"),
            "Answer: "
        );
    }

    #[test]
    fn completion_and_stream_json() {
        let mut v = json!({"choices": [{"index": 0, "message": {"role": "assistant",
            "content": "<think>\nhmm\n</think>\n\nHello.", "reasoning": "hmm"}}]});
        filter_completion(&mut v);
        assert_eq!(
            v["choices"][0]["message"],
            json!({"role": "assistant", "content": "Hello."})
        );

        let mut s = StreamFilter::default();
        let mut reasoning_only = json!({"choices": [{"index": 0, "finish_reason": null, "delta": {"role": "assistant", "reasoning": "Short"}}]});
        assert!(
            !s.filter_chunk(&mut reasoning_only),
            "nothing left: drop the event"
        );
        let mut content = json!({"choices": [{"index": 0, "finish_reason": null, "delta": {"role": "assistant", "content": "He"}}]});
        assert!(s.filter_chunk(&mut content));
        assert_eq!(content["choices"][0]["delta"]["content"], "He");
        let mut usage = json!({"choices": [], "usage": {"completion_tokens": 3}});
        assert!(s.filter_chunk(&mut usage));
    }

    /// An index taken from the stream sized a vector (`100000000000` aborted the daemon).
    #[test]
    fn a_huge_choice_index_does_not_size_memory() {
        let mut s = StreamFilter::default();
        let mut c = json!({"choices": [{"index": 100_000_000_000u64, "delta": {"content": "a<think>b</think>c"}}]});
        assert!(s.filter_chunk(&mut c));
        assert_eq!(c["choices"][0]["delta"]["content"], "ac");
        assert!(s.per_choice.len() <= MAX_CHOICES);
    }

    proptest! {
        /// Any chunking of the same text gives the same output, equal to the text minus its think spans.
        #[test]
        fn chunking_does_not_matter(parts in proptest::collection::vec(prop_oneof![
                                        Just("<think>".to_string()),
                                        Just("</think>".to_string()),
                                        "[a-z <>/th]{0,8}",
                                        "[é日 ]{0,3}",
                                    ], 0..16),
                                    cuts in proptest::collection::vec(0usize..128, 0..12)) {
            let text: String = parts.concat();
            let whole = strip_think(&text);
            let mut points: Vec<usize> = cuts.into_iter().map(|c| c.min(text.len())).filter(|&c| text.is_char_boundary(c)).collect();
            points.sort();
            let mut f = ThinkFilter::new();
            let mut out = String::new();
            let mut last = 0;
            for p in points {
                out.push_str(&f.feed(&text[last..p]));
                last = p;
            }
            out.push_str(&f.feed(&text[last..]));
            out.push_str(&f.finish());
            prop_assert_eq!(&out, &whole);
            prop_assert!(!whole.contains(OPEN));
            prop_assert_eq!(whole, reference(&text));
        }
    }

    /// A plain, non-streaming definition of "the input minus think spans".
    fn reference(text: &str) -> String {
        let mut out = String::new();
        let mut rest = text;
        loop {
            match rest.find(OPEN) {
                None => {
                    out.push_str(rest);
                    return out;
                }
                Some(i) => {
                    out.push_str(&rest[..i]);
                    match rest[i + OPEN.len()..].find(CLOSE) {
                        Some(j) => rest = &rest[i + OPEN.len() + j + CLOSE.len()..],
                        None => return out,
                    }
                }
            }
        }
    }
}
