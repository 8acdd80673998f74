//! The reasoning filter over a raw SSE byte stream, chunked any way: whole events out as soon as they are
//! complete, the last event flushed at the end of the stream even without its blank line. An event may
//! not grow past `MAX_EVENT` (a backend that never ends one would otherwise grow the daemon's memory).

use crate::reasoning::StreamFilter;

/// The longest SSE event the filter holds while it waits for the event's end.
pub const MAX_EVENT: usize = 4 << 20;

/// Public for the benchmark.
#[derive(Default)]
pub struct SseFilter {
    filter: StreamFilter,
    buf: Vec<u8>,
    /// Where the search for the end of the event in `buf` resumes.
    scanned: usize,
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("the backend sent an SSE event longer than {MAX_EVENT} bytes")]
pub struct EventTooLong;

impl SseFilter {
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<u8>, EventTooLong> {
        let mut out = Vec::with_capacity(chunk.len());
        self.push_into(chunk, &mut out)?;
        Ok(out)
    }

    /// One chunk of the stream through the filter: the chunk itself when every event in it is whole and
    /// passes unchanged (the usual token event: no copy), else the filtered bytes.
    pub fn push_bytes(&mut self, chunk: bytes::Bytes) -> Result<bytes::Bytes, EventTooLong> {
        if self.buf.is_empty() && self.filter.is_idle() && !might_change(&chunk) {
            if let Some(last) = last_event_end(&chunk) {
                if last == chunk.len() {
                    return Ok(chunk);
                }
            }
        }
        let mut out = Vec::with_capacity(chunk.len());
        self.push_into(&chunk, &mut out)?;
        Ok(out.into())
    }

    fn push_into(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), EventTooLong> {
        if self.buf.is_empty() {
            // Events straight from the chunk; only an unfinished last one is kept.
            let mut start = 0;
            while let Some(end) = find_event_end(&chunk[start..], 0) {
                filter_event(&chunk[start..start + end], &mut self.filter, out);
                start += end;
            }
            self.buf.extend_from_slice(&chunk[start..]);
            return self.held();
        }
        self.buf.extend_from_slice(chunk);
        let mut start = 0;
        // Events end with a blank line.
        while let Some(end) = find_event_end(&self.buf[start..], self.scanned.saturating_sub(start))
        {
            filter_event(&self.buf[start..start + end], &mut self.filter, out);
            start += end;
            self.scanned = start;
        }
        self.buf.drain(..start);
        self.held()
    }

    /// The start of an event is held until its end comes, up to `MAX_EVENT`.
    fn held(&mut self) -> Result<(), EventTooLong> {
        if self.buf.len() > MAX_EVENT {
            self.buf = Vec::new();
            self.scanned = 0;
            return Err(EventTooLong);
        }
        // Resume a few bytes back: a terminator may straddle two chunks.
        self.scanned = self.buf.len().saturating_sub(3);
        Ok(())
    }

    /// End of stream: what is left is the last event, without its blank line; it is filtered like any
    /// other (a stream cut after its last `data:` line loses nothing).
    pub fn finish(&mut self) -> Vec<u8> {
        let rest = std::mem::take(&mut self.buf);
        self.scanned = 0;
        let mut out = Vec::new();
        if !rest.is_empty() {
            filter_event(&rest, &mut self.filter, &mut out);
        }
        out
    }
}

/// Where the last whole event of `buf` ends (after its blank line).
fn last_event_end(buf: &[u8]) -> Option<usize> {
    let mut at = None;
    let mut i = 0;
    while let Some(end) = find_event_end(&buf[i..], 0) {
        i += end;
        at = Some(i);
    }
    at
}

static REASONING: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"reasoning"));

static ESCAPE: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\\u"));

/// Could the reasoning filter change these bytes: a `<` (a tag may start), a reasoning field, or a `\u`
/// escape (which may spell either: `\u003cthink>`)? If not, they pass as they are.
pub(super) fn might_change(bytes: &[u8]) -> bool {
    memchr::memchr(b'<', bytes).is_some()
        || REASONING.find(bytes).is_some()
        || ESCAPE.find(bytes).is_some()
}

/// The end of the first event (after its blank line), looking from `from` on.
pub(super) fn find_event_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i < buf.len() {
        let j = memchr::memchr(b'\n', &buf[i..])? + i;
        if buf.get(j + 1) == Some(&b'\n') {
            return Some(j + 2);
        }
        if buf.get(j + 1) == Some(&b'\r') && buf.get(j + 2) == Some(&b'\n') {
            return Some(j + 3);
        }
        i = j + 1;
    }
    None
}

/// One event through the filter, appended to `out`: each `data:` JSON is filtered; an event left empty
/// is dropped; comments, `[DONE]` and what is not JSON pass as they are (bytes, not text: nothing is
/// re-encoded on the way).
pub(super) fn filter_event(event: &[u8], filter: &mut StreamFilter, out: &mut Vec<u8>) {
    // The usual event, a token with no tag and no reasoning field: a byte scan, not a JSON round trip.
    if filter.is_idle() && !might_change(event) {
        out.extend_from_slice(event);
        return;
    }
    let mark = out.len();
    for line in event.split_inclusive(|&b| b == b'\n') {
        let bare = line
            .strip_suffix(b"\n")
            .map_or(line, |l| l.strip_suffix(b"\r").unwrap_or(l));
        let Some(data) = bare.strip_prefix(b"data:") else {
            out.extend_from_slice(line);
            continue;
        };
        let data = data.trim_ascii_start();
        if data == b"[DONE]" {
            out.extend_from_slice(line);
            continue;
        }
        let kept = match content_event(data, filter, out) {
            Some(kept) => kept,
            None => match serde_json::from_slice::<serde_json::Value>(data) {
                Ok(mut v) => {
                    let kept = filter.filter_chunk(&mut v);
                    if kept {
                        out.extend_from_slice(b"data: ");
                        // Writing a `Value` into a Vec cannot fail.
                        let _ = serde_json::to_writer(&mut *out, &v);
                        out.push(b'\n');
                    }
                    kept
                }
                Err(_) => {
                    out.extend_from_slice(line);
                    true
                }
            },
        };
        if !kept {
            out.truncate(mark); // nothing left in this event
            return;
        }
    }
}

/// One choice of a chunk, as far as the filter reads it (borrowed: the text is not copied).
#[derive(serde::Deserialize)]
struct ChoiceRef<'a> {
    #[serde(default)]
    index: Option<u64>,
    #[serde(borrow, default)]
    finish_reason: Option<&'a serde_json::value::RawValue>,
    #[serde(borrow, default)]
    delta: Option<DeltaRef<'a>>,
}

#[derive(serde::Deserialize)]
struct ChunkRef<'a> {
    #[serde(borrow)]
    choices: OneChoice<'a>,
}

/// `choices` when it holds exactly one choice (`None` otherwise: the JSON tree does the rest).
struct OneChoice<'a>(Option<ChoiceRef<'a>>);

impl<'de: 'a, 'a> serde::Deserialize<'de> for OneChoice<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Seq;
        impl<'de> serde::de::Visitor<'de> for Seq {
            type Value = OneChoice<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an array of choices")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let first = seq.next_element::<ChoiceRef<'de>>()?;
                let mut more = false;
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                    more = true;
                }
                Ok(OneChoice(first.filter(|_| !more)))
            }
        }
        d.deserialize_seq(Seq)
    }
}

/// A choice's `delta` as the filter reads it: its `content` (raw), and whether it holds anything but
/// `content` and `role`. A key named twice is an error (the JSON tree keeps the last; the bytes would
/// keep both).
struct DeltaRef<'a> {
    content: Option<&'a serde_json::value::RawValue>,
    other: bool,
}

impl<'de: 'a, 'a> serde::Deserialize<'de> for DeltaRef<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Map;
        impl<'de> serde::de::Visitor<'de> for Map {
            type Value = DeltaRef<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a delta object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                use serde::de::{Error, IgnoredAny};
                let (mut content, mut role, mut other) = (None, false, false);
                while let Some(key) = map.next_key::<&'de str>()? {
                    match key {
                        "content" if content.is_none() => content = Some(map.next_value()?),
                        "role" if !role => {
                            role = true;
                            map.next_value::<IgnoredAny>()?;
                        }
                        "content" | "role" => return Err(A::Error::custom("a key named twice")),
                        _ => {
                            other = true;
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(DeltaRef { content, other })
            }
        }
        d.deserialize_map(Map)
    }
}

/// The usual event the filter changes — one choice whose delta's `content` holds (part of) a think span,
/// with no escape anywhere and no reasoning field — filtered without building a JSON tree: the content's
/// string is found in the bytes and replaced, the rest of the event is the backend's, written to `out`
/// as a `data:` line. `None` when the event is not of that shape (the JSON tree does it); `Some(false)`
/// when nothing is left to send.
fn content_event(data: &[u8], filter: &mut StreamFilter, out: &mut Vec<u8>) -> Option<bool> {
    if memchr::memchr(b'\\', data).is_some() || REASONING.find(data).is_some() {
        return None;
    }
    let chunk: ChunkRef = serde_json::from_slice(data).ok()?;
    let choice = chunk.choices.0?;
    let delta = choice.delta?;
    let raw = delta.content?.get();
    // A string without escapes: its text is what is between the quotes.
    let content = raw.strip_prefix('"')?.strip_suffix('"')?;
    let finished = choice.finish_reason.is_some();
    // Where the content's literal sits in `data` (it borrows from it).
    let start = (raw.as_ptr() as usize).checked_sub(data.as_ptr() as usize)?;
    let end = start.checked_add(raw.len())?;
    if end > data.len() {
        return None;
    }
    let text = filter.feed_content(choice.index.unwrap_or(0), content, finished);
    if text.is_empty() && !finished && !delta.other {
        return Some(false);
    }
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(&data[..start]);
    // Writing a string into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &text);
    out.extend_from_slice(&data[end..]);
    out.push(b'\n');
    Some(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fe(event: &[u8], f: &mut StreamFilter) -> Vec<u8> {
        let mut out = Vec::new();
        filter_event(event, f, &mut out);
        out
    }

    /// The same stream through `push_bytes`, as the proxy sends it.
    fn through_bytes(chunks: &[&[u8]]) -> Vec<u8> {
        let mut f = SseFilter::default();
        let mut out: Vec<u8> = vec![];
        for c in chunks {
            out.extend_from_slice(&f.push_bytes(bytes::Bytes::copy_from_slice(c)).unwrap());
        }
        out.extend(f.finish());
        out
    }

    #[test]
    fn whole_unchanged_events_pass_without_a_copy() {
        let mut f = SseFilter::default();
        let chunk = bytes::Bytes::from_static(
            b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n",
        );
        let out = f.push_bytes(chunk.clone()).unwrap();
        assert_eq!(out.as_ptr(), chunk.as_ptr(), "the same bytes");
        // Half an event is held, and comes out whole with its end.
        let a = f.push_bytes(chunk.slice(..10)).unwrap();
        let b = f.push_bytes(chunk.slice(10..)).unwrap();
        assert!(a.is_empty());
        assert_eq!(b, chunk);
    }

    fn through(chunks: &[&[u8]]) -> Vec<u8> {
        let mut f = SseFilter::default();
        let mut out: Vec<u8> = chunks.iter().flat_map(|c| f.push(c).unwrap()).collect();
        out.extend(f.finish());
        out
    }

    fn cut(data: &[u8], cuts: Vec<usize>) -> Vec<&[u8]> {
        let mut points: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
        points.sort();
        let mut last = 0;
        let mut chunks: Vec<&[u8]> = vec![];
        for p in points {
            chunks.push(&data[last..p]);
            last = p;
        }
        chunks.push(&data[last..]);
        chunks
    }

    /// A plain definition of the filter over a whole stream: split into events at blank lines, filter
    /// each, the last one (with or without its blank line) included.
    fn reference(data: &[u8]) -> Vec<u8> {
        let mut f = StreamFilter::default();
        let mut out = Vec::new();
        let mut rest = data;
        while let Some(end) = find_event_end(rest, 0) {
            out.extend(fe(&rest[..end], &mut f));
            rest = &rest[end..];
        }
        if !rest.is_empty() {
            out.extend(fe(rest, &mut f));
        }
        out
    }

    #[test]
    fn events_are_filtered_as_they_complete() {
        let mut f = StreamFilter::default();
        let ev = |d: &str| format!("data: {d}\n\n");
        let r = fe(
            ev(r#"{"choices":[{"index":0,"finish_reason":null,"delta":{"reasoning":"hmm"}}]}"#)
                .as_bytes(),
            &mut f,
        );
        assert!(r.is_empty(), "a reasoning-only event is dropped");
        let r = fe(ev(r#"{"choices":[{"index":0,"finish_reason":null,"delta":{"content":"Hi <think>x</think>there"}}]}"#).as_bytes(), &mut f);
        // The content's string replaced in the event's own bytes (key order and all).
        assert_eq!(String::from_utf8(r).unwrap(), "data: {\"choices\":[{\"index\":0,\"finish_reason\":null,\"delta\":{\"content\":\"Hi there\"}}]}\n\n");
        assert_eq!(fe(b"data: [DONE]\n\n", &mut f), b"data: [DONE]\n\n");
        assert_eq!(fe(b": keepalive 1/1\n\n", &mut f), b": keepalive 1/1\n\n");
        assert_eq!(find_event_end(b"data: x\n\ndata: y", 0), Some(9));
        assert_eq!(find_event_end(b"data: x\r\n\r\ndata: y", 0), Some(11));
        assert_eq!(find_event_end(b"data: x\ndata: y\n", 0), None);
    }

    /// The byte-level path for a content event means what the JSON tree path means: the same JSON out
    /// (or both drop the event), event after event, the think state carried alike.
    #[test]
    fn the_content_fast_path_agrees_with_the_json_tree() {
        let events = [
            r#"{"id":"c1","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#,
            r#"{"id":"c1","choices":[{"index":0,"delta":{"content":"<think>"}}]}"#,
            r#"{"id":"c1","choices":[{"index":0,"delta":{"content":"hmm"},"finish_reason":null}]}"#,
            r#"{"id":"c1","choices":[{"index":0,"delta":{"content":"</think>\n\nHi <"}}]}"#,
            r#"{"id":"c1","choices":[{"index":0,"delta":{"content":"b>there"},"logprobs":null}]}"#,
            r#"{"id":"c1","choices":[{"index":3,"delta":{"content":"<think>x","tool_calls":[]}}]}"#,
            r#"{"id":"c1","choices":[{"index":3,"delta":{"content":"y</think>z"}}]}"#,
            r#"{"id":"c1","choices":[{"index":0,"delta":{"content":"<thi"},"finish_reason":"stop"}],"usage":{"completion_tokens":9}}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"<think>a"}},{"index":1,"delta":{"content":"b"}}]}"#,
            r#"{"choices":[{"index":-1,"delta":{"content":"<think>a"}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":null}}]}"#,
        ];
        let (mut fast, mut tree) = (StreamFilter::default(), StreamFilter::default());
        for e in events {
            let via_tree = {
                let mut v: serde_json::Value = serde_json::from_str(e).unwrap();
                tree.filter_chunk(&mut v).then_some(v)
            };
            let mut out = vec![];
            let via_fast = match content_event(e.as_bytes(), &mut fast, &mut out) {
                Some(kept) => kept.then(|| {
                    let line = out
                        .strip_prefix(b"data: ")
                        .unwrap()
                        .strip_suffix(b"\n")
                        .unwrap();
                    serde_json::from_slice::<serde_json::Value>(line).unwrap()
                }),
                None => {
                    let mut v: serde_json::Value = serde_json::from_str(e).unwrap();
                    fast.filter_chunk(&mut v).then_some(v)
                }
            };
            assert_eq!(via_fast, via_tree, "{e}");
        }
        // Escapes and reasoning fields are the tree's.
        let mut f = StreamFilter::default();
        let mut out = vec![];
        for e in [
            r#"{"choices":[{"delta":{"content":"a\"<think>b"}}]}"#,
            r#"{"choices":[{"delta":{"content":"a","reasoning":"r"}}]}"#,
            // A key named twice: the tree keeps the last one, the bytes would keep both.
            r#"{"choices":[{"delta":{"content":"<think>x</think>","content":"y"}}]}"#,
            r#"{"choices":[{"delta":{"content":"a"}},{"delta":{"content":"b"}}]}"#,
        ] {
            assert!(
                content_event(e.as_bytes(), &mut f, &mut out).is_none(),
                "{e}"
            );
        }
        assert!(out.is_empty());
    }

    #[test]
    fn only_events_the_filter_could_change_are_parsed() {
        assert!(!might_change(
            br#"data: {"choices":[{"delta":{"content":"plain"}}]}"#
        ));
        assert!(might_change(br#"{"content":"a<b"}"#));
        assert!(might_change(br#"{"reasoning_content":"x"}"#));
        assert!(might_change(
            br#"{"content":"\u003cthink>secret\u003c/think>"}"#
        ));
        // An escaped tag is still removed: the event goes the JSON way.
        let mut f = StreamFilter::default();
        let out = fe(
            b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\\u003cthink>s\\u003c/think>ok\"}}]}\n\n",
            &mut f,
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("\"content\":\"ok\""), "{text}");
        assert!(!text.contains("think") && !text.contains("003c"), "{text}");
    }

    /// The last event without its blank line is still delivered.
    #[test]
    fn the_last_event_is_flushed_at_the_end() {
        let last = br#"data: {"choices":[{"index":0,"finish_reason":"stop","delta":{"content":"bye<think>x"}}]}"#;
        let out = through(&[b"data: [DONE]\n\n", last]);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.trim_end()
                .ends_with(r#""finish_reason":"stop","delta":{"content":"bye"}}]}"#),
            "{text}"
        );
    }

    #[test]
    fn an_endless_event_is_refused_not_buffered() {
        let mut f = SseFilter::default();
        let chunk = vec![b'x'; 1 << 20];
        let mut err = None;
        for _ in 0..8 {
            if let Err(e) = f.push(&chunk) {
                err = Some(e);
                break;
            }
        }
        assert_eq!(err, Some(EventTooLong));
        assert!(f.buf.capacity() < MAX_EVENT, "memory returned");
    }

    proptest! {
        /// Fuzz: arbitrary bytes, cut anywhere, never panic the filter.
        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..2048),
                        cuts in proptest::collection::vec(0usize..2048, 0..16)) {
            let _ = through(&cut(&data, cuts));
        }

        /// What the user reads is the stream's text without its think spans, whichever path (the bytes,
        /// the JSON tree) each event took and wherever the chunks were cut: escapes, non-ASCII text, tags
        /// split over events, a role key, a delta with another key.
        #[test]
        fn the_text_read_is_the_text_without_think_spans(
            events in proptest::collection::vec((
                proptest::collection::vec(prop_oneof![
                    Just("<think>"), Just("</think>"), Just("<th"), Just("ink>"), Just("</"),
                    Just("a"), Just(" "), Just("\n"), Just("é"), Just("\""), Just("<"),
                ], 0..5),
                any::<bool>(),
                any::<bool>(),
            ), 1..10),
            cuts in proptest::collection::vec(0usize..2048, 0..8)) {
            let mut stream = String::new();
            let mut said = String::new();
            let last = events.len() - 1;
            for (i, (pieces, role, extra)) in events.iter().enumerate() {
                let text: String = pieces.concat();
                said.push_str(&text);
                let mut delta = serde_json::json!({ "content": text });
                if *role {
                    delta["role"] = "assistant".into();
                }
                if *extra {
                    delta["tool_calls"] = serde_json::json!([]);
                }
                let finish = if i == last { "\"stop\"" } else { "null" };
                stream.push_str(&format!(
                    "data: {{\"choices\":[{{\"index\":0,\"delta\":{delta},\"finish_reason\":{finish}}}]}}\n\n"
                ));
            }
            stream.push_str("data: [DONE]\n\n");
            let out = through_bytes(&cut(stream.as_bytes(), cuts));
            let out = String::from_utf8(out).unwrap();
            let mut read = String::new();
            for event in out.split("\n\n").filter(|e| !e.is_empty()) {
                let data = event.strip_prefix("data: ").unwrap();
                if data == "[DONE]" {
                    continue;
                }
                let v: serde_json::Value = serde_json::from_str(data).unwrap();
                read.push_str(v["choices"][0]["delta"]["content"].as_str().unwrap_or(""));
            }
            prop_assert_eq!(read, crate::reasoning::strip_think(&said));
        }

        /// SSE-shaped input (events of JSON with think tags, CRLF, comments, garbage, a last event with
        /// or without its blank line): the output equals the reference, wherever the chunks were cut.
        #[test]
        fn matches_the_reference_however_cut(
            parts in proptest::collection::vec(prop_oneof![
                Just(r#"data: {"choices":[{"index":0,"delta":{"content":"a<think>b"}}]}"#.to_string()),
                Just(r#"data: {"choices":[{"index":0,"delta":{"content":"c</think>d"}}]}"#.to_string()),
                Just(r#"data: {"choices":[{"index":1,"delta":{"content":"<think>e"}}]}"#.to_string()),
                Just(r#"data: {"choices":[{"index":100000000000,"delta":{"content":"f"}}]}"#.to_string()),
                Just(r#"data: {"choices":[{"index":0,"delta":{"reasoning":"r"}}]}"#.to_string()),
                Just("data: [DONE]".to_string()),
                Just(": ping".to_string()),
                "[ -~]{0,12}",
            ], 0..12),
            crlf in any::<bool>(),
            trailing in any::<bool>(),
            cuts in proptest::collection::vec(0usize..1024, 0..12)) {
            let sep = if crlf { "\r\n\r\n" } else { "\n\n" };
            let mut text: String = parts.iter().map(|p| format!("{p}{sep}")).collect();
            if !trailing && text.ends_with(sep) {
                text.truncate(text.len() - sep.len());
            }
            let data = text.as_bytes();
            let want = reference(data);
            prop_assert_eq!(through(&[data]), want.clone());
            prop_assert_eq!(through_bytes(&[data]), want.clone());
            prop_assert_eq!(through_bytes(&cut(data, cuts.clone())), want.clone());
            prop_assert_eq!(through(&cut(data, cuts)), want);
        }
    }
}
