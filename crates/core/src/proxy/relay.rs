//! The backend's reply on its way to the client: metered (tokens, decode speed), cut off when the backend
//! stalls, and (with `filter_reasoning`) filtered event by event.

use super::sse::SseFilter;
use super::stats::{Counters, DECODE_SERIES};
use axum::body::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::OwnedSemaphorePermit;

/// Held for a request's whole life, the streamed body included: its concurrency slot, its queue place
/// and its in-flight count are released when the last byte has gone (or the client went away).
pub(super) struct InFlight {
    pub(super) counters: Arc<Counters>,
    pub(super) _slot: Option<OwnedSemaphorePermit>,
    pub(super) _admitted: Option<OwnedSemaphorePermit>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.counters.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.counters.touch();
    }
}

/// The backend's reply body on its way to the client: each data frame goes through the meter as it
/// passes; a backend silent for longer than the request timeout ends the body with an error. The stall
/// timer is armed only while the backend has nothing to give (a reply already in hand costs no timer).
pub(super) struct Relay {
    pub(super) inner: super::backend::Reply,
    pub(super) meter: Meter,
    pub(super) timeout: Duration,
    pub(super) stall: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl HttpBody for Relay {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.stall = None;
                if let Some(data) = frame.data_ref() {
                    this.meter.observe(data);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(std::io::Error::other(e)))),
            Poll::Ready(None) => {
                this.meter.completed();
                Poll::Ready(None)
            }
            Poll::Pending => {
                let timeout = this.timeout;
                let stall = this
                    .stall
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match stall.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.stall = None;
                        this.meter.counters.timeouts.fetch_add(1, Ordering::Relaxed);
                        Poll::Ready(Some(Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "backend stalled past request_timeout_s",
                        ))))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Relay {
    /// hyper stops polling a body whose length says it has ended, so the end is read here too.
    fn drop(&mut self) {
        if self.inner.is_end_stream() {
            self.meter.completed();
        }
    }
}

/// Counts the output tokens of one reply as its bytes pass: on a stream one per `data:` event with a
/// delta until `usage` says the exact number; on a JSON reply, `usage.completion_tokens`. Dropped with
/// the body, it books the decode speed and releases the request's slot.
pub(super) struct Meter {
    pub(super) counters: Arc<Counters>,
    stream: bool,
    counted: u64,
    usage: Option<u64>,
    first: Option<Instant>,
    last: Option<Instant>,
    /// The end of the previous chunk, so a pattern split across chunks is still seen.
    tail: Vec<u8>,
    /// What `/metrics` is told of this request (a successful reply only).
    measured: Option<Measured>,
    _guard: InFlight,
}

/// The request metrics of one reply: its times, its prompt tokens and finish reason as the reply names
/// them, and whether it went out to the end.
struct Measured {
    metrics: Arc<crate::metrics::ServiceMetrics>,
    started: Instant,
    ttft_seen: bool,
    prompt: Option<u64>,
    finish: Option<String>,
    complete: bool,
}

const USAGE_KEY: &[u8] = b"\"completion_tokens\":";
const PROMPT_KEY: &[u8] = b"\"prompt_tokens\":";
const FINISH_KEY: &[u8] = b"\"finish_reason\":";
const DELTA_KEY: &[u8] = b"\"delta\"";

/// The searchers, built once (building one per call showed in the profile).
static USAGE_FINDER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(USAGE_KEY));
static DELTA_FINDER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(DELTA_KEY));
static PROMPT_FINDER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(PROMPT_KEY));
static FINISH_FINDER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(FINISH_KEY));

fn count_deltas(hay: &[u8]) -> usize {
    DELTA_FINDER.find_iter(hay).count()
}

impl Meter {
    pub(super) fn new(counters: Arc<Counters>, stream: bool, guard: InFlight) -> Meter {
        Meter {
            counters,
            stream,
            counted: 0,
            usage: None,
            first: None,
            last: None,
            tail: Vec::new(),
            measured: None,
            _guard: guard,
        }
    }

    /// Report this reply to `/metrics` (TTFT, inter-token gaps, end-to-end time, tokens, finish reason),
    /// timed from `started`, when the request reached the proxy.
    pub(super) fn measure(
        &mut self,
        metrics: Arc<crate::metrics::ServiceMetrics>,
        started: Instant,
    ) {
        self.measured = Some(Measured {
            metrics,
            started,
            ttft_seen: false,
            prompt: None,
            finish: None,
            complete: false,
        });
    }

    /// The reply went out to its end (not cut by the client or the backend).
    pub(super) fn completed(&mut self) {
        if let Some(m) = self.measured.as_mut() {
            m.complete = true;
        }
    }

    /// Looks at one chunk as it passes, without copying it: the patterns are searched in the chunk
    /// itself, and in a small window over its boundary with the previous one (a key split across two
    /// chunks is counted once).
    pub(super) fn observe(&mut self, chunk: &[u8]) {
        const KEEP: usize = USAGE_KEY.len() + 24;
        let head = &chunk[..chunk.len().min(KEEP)];
        let mut window = std::mem::take(&mut self.tail);
        let seen = window.len();
        window.extend_from_slice(head);
        if self.stream {
            // New events: those in the window not wholly in the old tail, plus those in the chunk not
            // wholly in its head (counted in the window already).
            let n = count_deltas(&window) - count_deltas(&window[..seen]) + count_deltas(chunk)
                - count_deltas(head);
            if n > 0 && self.usage.is_none() {
                let now = Instant::now();
                if let (Some(m), Some(last)) = (self.measured.as_ref(), self.last) {
                    m.metrics.itl.observe((now - last).as_secs_f64());
                }
                self.first.get_or_insert(now);
                self.last = Some(now);
                self.counted += n as u64;
                self.counters
                    .output_tokens
                    .fetch_add(n as u64, Ordering::Relaxed);
            }
        }
        if let Some(m) = self.measured.as_mut() {
            // TTFT: the first text of a stream, or the reply itself when it is not one.
            if !m.ttft_seen && (!self.stream || self.first.is_some()) {
                m.ttft_seen = true;
                m.metrics.ttft.observe(m.started.elapsed().as_secs_f64());
            }
            if m.prompt.is_none() {
                m.prompt = number_after(&PROMPT_FINDER, PROMPT_KEY.len(), &window)
                    .or_else(|| number_after(&PROMPT_FINDER, PROMPT_KEY.len(), chunk));
            }
            if m.finish.is_none() {
                m.finish = word_after(&window).or_else(|| word_after(chunk));
            }
        }
        if self.usage.is_none() {
            if let Some(n) = usage_in(&window).or_else(|| usage_in(chunk)) {
                self.usage = Some(n);
                // The exact number replaces the estimate.
                let extra = n.saturating_sub(self.counted);
                self.counters
                    .output_tokens
                    .fetch_add(extra, Ordering::Relaxed);
                self.counted = self.counted.max(n);
            }
        }
        // Keep the last KEEP bytes seen (the buffer is reused: one allocation per reply).
        if chunk.len() >= KEEP {
            window.clear();
            window.extend_from_slice(&chunk[chunk.len() - KEEP..]);
        } else {
            let cut = window.len().saturating_sub(KEEP);
            window.drain(..cut);
        }
        self.tail = window;
    }
}

/// `usage.completion_tokens` in `hay`, when its digits end inside it.
fn usage_in(hay: &[u8]) -> Option<u64> {
    number_after(&USAGE_FINDER, USAGE_KEY.len(), hay)
}

/// The value of the first non-null `"finish_reason": "…"` in `hay`, when it ends inside it (at most 32
/// bytes: a label value, bounded).
fn word_after(hay: &[u8]) -> Option<String> {
    FINISH_FINDER.find_iter(hay).find_map(|i| {
        let rest = &hay[i + FINISH_KEY.len()..];
        let start = rest.iter().position(|b| !b.is_ascii_whitespace())?;
        let word = rest[start..].strip_prefix(b"\"")?; // `null`: not this one
        let end = word.iter().take(33).position(|&b| b == b'"')?;
        std::str::from_utf8(&word[..end]).ok().map(str::to_string)
    })
}

/// The integer that follows the key `finder` finds in `hay`, when its digits end inside it.
fn number_after(finder: &memchr::memmem::Finder<'_>, key_len: usize, hay: &[u8]) -> Option<u64> {
    let i = finder.find(hay)?;
    let rest = &hay[i + key_len..];
    let start = rest.iter().position(|b| !b.is_ascii_whitespace())?;
    let len = rest[start..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    if len == 0 || len > 19 || start + len >= rest.len() {
        return None; // no number, or it may go on in the next chunk
    }
    std::str::from_utf8(&rest[start..start + len])
        .ok()?
        .parse()
        .ok()
}

impl Drop for Meter {
    fn drop(&mut self) {
        if let Some(m) = self.measured.take() {
            let tokens = self.usage.unwrap_or(self.counted);
            m.metrics.generation_tokens.inc_by(tokens);
            if let Some(p) = m.prompt {
                m.metrics.prompt_tokens.inc_by(p);
            }
            if m.complete {
                m.metrics.e2e.observe(m.started.elapsed().as_secs_f64());
                m.metrics.success(m.finish.as_deref());
            }
        }
        if let (Some(a), Some(b)) = (self.first, self.last) {
            let secs = (b - a).as_secs_f64();
            let tokens = self.usage.unwrap_or(self.counted);
            // Too few tokens say nothing about speed; the time floor only keeps the division sane (a tiny
            // model streams 16 tokens in ~30 ms).
            if tokens >= 8 && secs > 0.005 {
                let mut d = self.counters.decode.lock().unwrap();
                d.push_back((crate::api::now_ms(), (tokens - 1) as f64 / secs));
                while d.len() > DECODE_SERIES {
                    d.pop_front();
                }
            }
        }
    }
}

/// The relayed reply through the reasoning filter (`filter_reasoning` on an SSE reply): each complete event
/// leaves as soon as it is filtered; the last one is flushed when the backend ends the stream.
pub(super) struct FilteredRelay {
    pub(super) relay: Relay,
    pub(super) filter: SseFilter,
    pub(super) done: bool,
}

impl HttpBody for FilteredRelay {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            match Pin::new(&mut this.relay).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else {
                        continue; // trailers: not for an SSE reply
                    };
                    match this.filter.push_bytes(data) {
                        // The backend's last bytes (its length reached): the flush goes with them, and
                        // hyper, told the body has ended, writes them with the end of the reply.
                        Ok(out) if this.relay.is_end_stream() => {
                            this.done = true;
                            let out = with_rest(out, this.filter.finish());
                            if out.is_empty() {
                                return Poll::Ready(None);
                            }
                            return Poll::Ready(Some(Ok(Frame::data(out))));
                        }
                        Ok(out) if out.is_empty() => continue,
                        Ok(out) => return Poll::Ready(Some(Ok(Frame::data(out)))),
                        Err(e) => {
                            this.done = true;
                            return Poll::Ready(Some(Err(std::io::Error::other(e))));
                        }
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(None) => {
                    this.done = true;
                    let rest = this.filter.finish();
                    if rest.is_empty() {
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(Bytes::from(rest)))));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

/// A filtered chunk and what the filter flushed at the end of the stream, as one frame.
fn with_rest(out: Bytes, rest: Vec<u8>) -> Bytes {
    if rest.is_empty() {
        return out;
    }
    let mut all = Vec::with_capacity(out.len() + rest.len());
    all.extend_from_slice(&out);
    all.extend_from_slice(&rest);
    all.into()
}

/// How often Anthropic's `ping` goes out while a reply's first token is slow.
const PING_EVERY: Duration = Duration::from_secs(5);

/// A reply to an agent route (`/v1/messages`, `/v1/responses`) that asked for a stream: the backend's
/// chat stream through the translator, its events out as soon as they are made. What the translator
/// writes first (before any token) leads; a ping goes out while the first token is slow; a backend that
/// fails or cuts the stream ends it with the API's error event, never a broken chunked body. A backend
/// that answered plain JSON is held whole (up to `limit`) and written as the whole stream at its end.
pub(super) struct AgentStream {
    inner: axum::body::Body,
    tr: super::agents::StreamTranslator,
    first: Option<Bytes>,
    whole: Option<Vec<u8>>,
    limit: usize,
    ping: Option<Pin<Box<tokio::time::Sleep>>>,
    done: bool,
    /// Gets the final Response of a Responses stream once it ended (the store).
    on_final: Option<OnFinal>,
}

/// What a stream's final Response is handed to.
pub(super) type OnFinal = Box<dyn FnOnce(serde_json::Value) + Send>;

impl AgentStream {
    /// Hands the stream's final Response (if it gets one) to `f`.
    pub(super) fn on_final(mut self, f: Option<OnFinal>) -> AgentStream {
        self.on_final = f;
        self
    }

    fn check_final(&mut self) {
        if let Some(f) = self.on_final.take() {
            match self.tr.take_final() {
                Some(v) => f(v),
                None => self.on_final = Some(f),
            }
        }
    }

    /// `sse`: the backend answered with an event stream (else JSON).
    pub(super) fn new(
        inner: axum::body::Body,
        tr: super::agents::StreamTranslator,
        first: Vec<u8>,
        sse: bool,
        limit: usize,
    ) -> AgentStream {
        AgentStream {
            inner,
            tr,
            first: (!first.is_empty()).then(|| first.into()),
            whole: (!sse).then(Vec::new),
            limit,
            ping: None,
            done: false,
            on_final: None,
        }
    }
}

fn frame(out: Vec<u8>) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
    if out.is_empty() {
        Poll::Ready(None)
    } else {
        Poll::Ready(Some(Ok(Frame::data(out.into()))))
    }
}

impl HttpBody for AgentStream {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = &mut *self;
        if let Some(first) = this.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(f))) => {
                    let Ok(data) = f.into_data() else {
                        continue;
                    };
                    this.ping = None;
                    if let Some(w) = this.whole.as_mut() {
                        if w.len() + data.len() > this.limit {
                            this.done = true;
                            return frame(this.tr.fail("the backend's reply is too large"));
                        }
                        w.extend_from_slice(&data);
                        continue;
                    }
                    // Once the translator has ended, the rest of the backend's reply is read (its
                    // connection goes back to the pool, its meter sees the end) and dropped.
                    let out = this.tr.push(&data);
                    this.check_final();
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(out.into()))));
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    this.done = true;
                    return frame(this.tr.fail(&format!("the backend's stream failed: {e}")));
                }
                Poll::Ready(None) => {
                    this.done = true;
                    let out = match this.whole.take() {
                        Some(w) => this.tr.completion(&w),
                        None => this.tr.finish(),
                    };
                    this.check_final();
                    return frame(out);
                }
                Poll::Pending => {
                    if let Some(p) = this.tr.ping() {
                        let sleep = this
                            .ping
                            .get_or_insert_with(|| Box::pin(tokio::time::sleep(PING_EVERY)));
                        if sleep.as_mut().poll(cx).is_ready() {
                            this.ping = None;
                            return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(p)))));
                        }
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.first.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meter() -> (Meter, Arc<Counters>) {
        let c = Arc::new(Counters::default());
        c.in_flight.fetch_add(1, Ordering::Relaxed);
        let g = InFlight {
            counters: c.clone(),
            _slot: None,
            _admitted: None,
        };
        (Meter::new(c.clone(), true, g), c)
    }

    #[test]
    fn finish_reason_and_prompt_tokens_are_read_with_or_without_spaces() {
        assert_eq!(
            word_after(br#"{"finish_reason": null}, {"finish_reason": "stop"}"#).as_deref(),
            Some("stop")
        );
        assert_eq!(
            word_after(br#""finish_reason":"length""#).as_deref(),
            Some("length")
        );
        assert_eq!(
            word_after(br#""finish_reason": "sto"#),
            None,
            "cut: the next chunk has it"
        );
        let long = format!(r#""finish_reason": "{}""#, "x".repeat(100));
        assert_eq!(word_after(long.as_bytes()), None, "bounded");
        let p = |h: &[u8]| number_after(&PROMPT_FINDER, PROMPT_KEY.len(), h);
        assert_eq!(p(br#""prompt_tokens": 12, "#), Some(12));
        assert_eq!(p(br#""prompt_tokens":7}"#), Some(7));
        assert_eq!(p(br#""prompt_tokens": 12"#), None, "may go on");
    }

    #[test]
    fn meter_counts_stream_tokens_and_takes_usage_when_it_comes() {
        let (mut m, c) = meter();
        let ev = "data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n";
        // Split inside the key: counted once.
        m.observe(&ev.as_bytes()[..20]);
        m.observe(&ev.as_bytes()[20..]);
        m.observe(ev.repeat(3).as_bytes());
        assert_eq!(c.output_tokens.load(Ordering::Relaxed), 4);
        let usage =
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\": 10}}\n\n";
        m.observe(&usage.as_bytes()[..usage.len() - 6]);
        m.observe(&usage.as_bytes()[usage.len() - 6..]);
        assert_eq!(
            c.output_tokens.load(Ordering::Relaxed),
            10,
            "usage is exact"
        );
        assert_eq!(c.in_flight.load(Ordering::Relaxed), 1);
        drop(m);
        assert_eq!(
            c.in_flight.load(Ordering::Relaxed),
            0,
            "released with the body"
        );
    }

    proptest::proptest! {
        /// Where a stream is cut does not change what the meter counts (events and the exact usage).
        #[test]
        fn chunking_does_not_change_the_count(
            events in proptest::collection::vec(0u8..3, 0..20),
            usage in proptest::option::of(0u64..100_000),
            cuts in proptest::collection::vec(0usize..4096, 0..16),
        ) {
            let mut text = String::new();
            for e in events {
                text.push_str(match e {
                    0 => "data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n",
                    1 => ": ping\n\n",
                    _ => "data: {\"choices\":[{\"delta\":{}}]}\n\n",
                });
            }
            if let Some(u) = usage {
                text.push_str(&format!("data: {{\"choices\":[],\"usage\":{{\"completion_tokens\": {u}}}}}\n\n"));
            }
            text.push_str("data: [DONE]\n\n");
            let data = text.as_bytes();
            let run = |chunks: Vec<&[u8]>| {
                let (mut m, c) = meter();
                for ch in chunks {
                    m.observe(ch);
                }
                (c.output_tokens.load(Ordering::Relaxed), m.usage)
            };
            let whole = run(vec![data]);
            let mut points: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
            points.sort();
            let mut last = 0;
            let mut chunks = vec![];
            for p in points {
                chunks.push(&data[last..p]);
                last = p;
            }
            chunks.push(&data[last..]);
            proptest::prop_assert_eq!(run(chunks), whole);
            proptest::prop_assert_eq!(whole.1, usage);
        }
    }
}
