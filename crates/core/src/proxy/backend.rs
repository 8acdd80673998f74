//! The client to the backends: HTTP/1.1 over a per-thread pool of kept-alive connections per upstream (a
//! local backend port, or a pool member's frontend on another Mac).
//!
//! Written here rather than taken from hyper: a proxied request is a head and a body already in hand (the
//! proxy reads the body whole before it forwards it), and its reply is relayed as it comes. So the client
//! writes one buffer, reads one reply head, and then frames the reply body straight off the socket, in
//! the request's own task. hyper's connection-level client did the same through a task per connection, a
//! dispatch channel, a oneshot and a body channel per request; that bookkeeping was most of what still
//! set the proxy's CPU per request behind nginx's (docs/PERFORMANCE.md). What a backend sends is checked
//! as strictly: the head is parsed by `httparse` and bounded (64 KiB, 128 headers), a `Content-Length`
//! must be one number, chunk sizes and lines are bounded, and a bad reply is an error (a 502), never a
//! panic or an allocation sized by the backend.
//!
//! Reuse: a connection goes back to its thread's pool when its reply has been read to the end, the backend
//! did not ask to close, and nothing unasked followed the reply. One the backend closed while it sat idle is
//! readable, which checkout notices without a system call; every 5 s each thread also closes those, and
//! those idle for a minute, so no descriptor is held for a backend that is gone. A request that could not be written to a
//! pooled connection is retried once on a new one (nothing reached the backend), and so is an idempotent
//! request (GET, HEAD, OPTIONS) whose pooled connection closed before a byte of the reply came (the backend
//! closed it as the request went out, nginx's `proxy_next_upstream error`). Nothing else is retried.

use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode};
use bytes::{Buf, Bytes, BytesMut};
use http_body::{Body as HttpBody, Frame, SizeHint};
use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{self, Write as _};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Idle connections kept per upstream and proxy thread.
const MAX_IDLE: usize = 64;
/// A connection to another Mac must be made within this (a local one is made at once or refused).
const REMOTE_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// A reply head larger than this is refused (nginx's `proxy_buffer_size` is 4–8 KiB).
const MAX_HEAD: usize = 64 * 1024;
/// Header lines in a reply head.
const MAX_HEADERS: usize = 128;
/// Interim (1xx) replies skipped before the real one.
const MAX_INTERIM: usize = 8;
/// A chunk-size line (with its extensions) or a trailer line may not be longer.
const MAX_CHUNK_LINE: usize = 4096;
/// All trailer lines of a chunked reply together.
const MAX_TRAILERS: usize = 16 * 1024;
/// A request body up to this goes out in the same write as its head.
const COALESCE: usize = 64 * 1024;
/// Room made in a connection's buffer before each read.
const READ_CHUNK: usize = 16 * 1024;

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Upstream {
    /// `127.0.0.1:port`: a service's own server.
    Local(u16),
    /// `HOST:PORT`: a pool member's frontend on another Mac.
    Remote(Arc<str>),
}

impl std::fmt::Display for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Upstream::Local(p) => write!(f, "127.0.0.1:{p}"),
            Upstream::Remote(a) => f.write_str(a),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub(super) enum BackendError {
    #[error("cannot connect to {to}: {source}")]
    Connect { to: Upstream, source: io::Error },
    #[error("connection lost: {0}")]
    Io(#[from] io::Error),
    #[error("malformed reply: {0}")]
    Malformed(String),
}

/// How often each proxy thread sweeps its idle connections.
const SWEEP_EVERY: Duration = Duration::from_secs(5);
/// Sweeps a connection may sit idle through before it is closed: 60 s (nginx's `keepalive_timeout`).
const IDLE_SWEEPS: u64 = 12;

/// A connection to a backend and the bytes read from it that nothing has used yet (none while it is idle).
struct Conn {
    io: TcpStream,
    buf: BytesMut,
    /// The sweep it was put back in the pool after.
    idle_since: u64,
}

thread_local! {
    static POOL: RefCell<HashMap<Upstream, Vec<Conn>>> = RefCell::new(HashMap::new());
    /// Sweeps done on this thread: the pool's clock, read without a system call.
    static SWEEPS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Runs on each proxy thread for its life: every 5 s, closes the idle connections the backend closed
/// (each holds a descriptor until it is dropped, and a service that is gone is never asked for again),
/// those idle for a minute, and forgets upstreams with none left.
pub(super) async fn sweep_idle() {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        sweep();
    }
}

fn sweep() {
    let now = SWEEPS.get() + 1;
    SWEEPS.set(now);
    POOL.with(|p| {
        p.borrow_mut().retain(|_, list| {
            list.retain(|c| now - c.idle_since < IDLE_SWEEPS && c.still_open());
            !list.is_empty()
        })
    });
}

impl Conn {
    /// An idle connection has nothing to read. If it became readable, the backend closed it (or sent
    /// something unasked): either way it is not reused. The reactor's readiness answers without a system
    /// call; only a stale "readable" costs one `read`.
    fn still_open(&self) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match self.io.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            Poll::Ready(Ok(())) => matches!(
                self.io.try_read(&mut [0u8; 1]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock
            ),
        }
    }

    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
            self.buf.reserve(READ_CHUNK);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.buf)
    }

    async fn fill(&mut self) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_fill(cx)).await
    }
}

/// The most recently used idle connection to `to` that is still open.
fn checkout(to: &Upstream) -> Option<Conn> {
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        let list = p.get_mut(to)?;
        while let Some(c) = list.pop() {
            if c.still_open() {
                return Some(c);
            }
        }
        None
    })
}

fn checkin(to: &Upstream, mut c: Conn) {
    c.idle_since = SWEEPS.get();
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        match p.get_mut(to) {
            Some(list) if list.len() < MAX_IDLE => list.push(c),
            Some(_) => {}
            None => {
                p.insert(to.clone(), vec![c]);
            }
        }
    });
}

async fn connect(to: &Upstream) -> Result<Conn, BackendError> {
    let failed = |source| BackendError::Connect {
        to: to.clone(),
        source,
    };
    let io = match to {
        Upstream::Local(port) => TcpStream::connect(("127.0.0.1", *port)).await,
        Upstream::Remote(addr) => {
            match tokio::time::timeout(REMOTE_CONNECT_TIMEOUT, TcpStream::connect(&**addr)).await {
                Ok(r) => r,
                Err(_) => Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no answer within 3 s",
                )),
            }
        }
    }
    .map_err(failed)?;
    let _ = io.set_nodelay(true);
    Ok(Conn {
        io,
        buf: BytesMut::with_capacity(READ_CHUNK),
        idle_since: 0,
    })
}

/// The request as it goes on the wire: its head (with `host` and the body's length) and, if the body is
/// small, the body too; a larger body is written after it without a copy.
fn encode(head: &Parts, host: &HeaderValue, body: Option<&Bytes>) -> Vec<u8> {
    let target = head.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let small = body.filter(|b| b.len() <= COALESCE).map_or(0, |b| b.len());
    let mut w = Vec::with_capacity(256 + target.len() + 64 * head.headers.len() + small);
    w.extend_from_slice(head.method.as_str().as_bytes());
    w.push(b' ');
    w.extend_from_slice(target.as_bytes());
    w.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    w.extend_from_slice(host.as_bytes());
    w.extend_from_slice(b"\r\n");
    // The client's headers go on, minus those of its connection (its framing among them: this hop has
    // its own, written below) and its `Origin` (CORS is decided by the proxy).
    let hop = super::headers::HopByHop::of(&head.headers);
    for (name, value) in &head.headers {
        if hop.contains(name) || name == header::ORIGIN {
            continue;
        }
        w.extend_from_slice(name.as_str().as_bytes());
        w.extend_from_slice(b": ");
        w.extend_from_slice(value.as_bytes());
        w.extend_from_slice(b"\r\n");
    }
    let length = match body {
        Some(b) => Some(b.len()),
        None if matches!(head.method, Method::POST | Method::PUT | Method::PATCH) => Some(0),
        None => None,
    };
    if let Some(n) = length {
        // Written into the buffer: no string allocated per request.
        let _ = write!(w, "content-length: {n}\r\n");
    }
    w.extend_from_slice(b"\r\n");
    if let Some(b) = body.filter(|b| b.len() <= COALESCE) {
        w.extend_from_slice(b);
    }
    w
}

/// How one exchange failed, and whether sending the request again on a new connection is safe.
struct Failure {
    error: BackendError,
    retry: bool,
}

/// Sends the request to `to` (origin-form target, HTTP/1.1, its own `host` and framing) and returns the
/// reply head; its body streams off the connection as the caller polls it.
pub(super) async fn send(
    to: &Upstream,
    host: &HeaderValue,
    head: &Parts,
    body: Option<Bytes>,
) -> Result<Response<Reply>, BackendError> {
    let wire = encode(head, host, body.as_ref());
    let rest = body.filter(|b| b.len() > COALESCE);
    let idempotent = matches!(head.method, Method::GET | Method::HEAD | Method::OPTIONS);
    let mut retried = false;
    loop {
        let (mut conn, pooled) = match checkout(to) {
            Some(c) => (c, true),
            None => (connect(to).await?, false),
        };
        match exchange(&mut conn, &wire, rest.as_deref(), idempotent).await {
            Ok((status, headers)) => {
                let mut headers = headers;
                let (framing, keep_alive) =
                    framing(head.method == Method::HEAD, status, &mut headers)?;
                let mut reply = Reply {
                    conn: Some(conn),
                    to: to.clone(),
                    framing,
                    keep_alive,
                };
                if matches!(reply.framing, Framing::Done) {
                    reply.finish();
                }
                let mut out = Response::new(reply);
                *out.status_mut() = status;
                *out.headers_mut() = headers;
                return Ok(out);
            }
            Err(f) if f.retry && pooled && !retried => retried = true,
            Err(f) => return Err(f.error),
        }
    }
}

/// Writes the request and reads the reply's head (past any interim 1xx replies).
async fn exchange(
    conn: &mut Conn,
    wire: &[u8],
    rest: Option<&[u8]>,
    idempotent: bool,
) -> Result<(StatusCode, HeaderMap), Failure> {
    let mut written = 0;
    for part in [wire, rest.unwrap_or_default()] {
        let mut at = 0;
        while at < part.len() {
            let n = match conn.io.write(&part[at..]).await {
                Ok(0) => Err(io::Error::from(io::ErrorKind::WriteZero)),
                r => r,
            }
            .map_err(|e| Failure {
                error: e.into(),
                retry: written == 0,
            })?;
            at += n;
            written += n;
        }
    }
    let mut interim = 0;
    let mut received = false;
    loop {
        match take_head(&mut conn.buf, &mut interim) {
            Ok(Some(head)) => return Ok(head),
            Ok(None) => {}
            Err(why) => {
                return Err(Failure {
                    error: BackendError::Malformed(why),
                    retry: false,
                })
            }
        }
        match conn.fill().await {
            Ok(0) => {
                return Err(Failure {
                    error: BackendError::Io(cut_short()),
                    retry: idempotent && !received,
                })
            }
            Ok(_) => received = true,
            Err(e) => {
                return Err(Failure {
                    error: e.into(),
                    retry: idempotent && !received,
                })
            }
        }
    }
}

/// The reply head at the front of `buf`, taken off it, past any interim (1xx) replies; `None` while it is
/// incomplete.
fn take_head(
    buf: &mut BytesMut,
    interim: &mut usize,
) -> Result<Option<(StatusCode, HeaderMap)>, String> {
    while !buf.is_empty() {
        let Some((len, status, headers)) = parse_head(buf)? else {
            if buf.len() >= MAX_HEAD {
                return Err("reply head larger than 64 KiB".into());
            }
            return Ok(None);
        };
        buf.advance(len);
        if status == StatusCode::SWITCHING_PROTOCOLS {
            return Err("101 Switching Protocols was not asked for".into());
        }
        if !status.is_informational() {
            return Ok(Some((status, headers)));
        }
        *interim += 1;
        if *interim > MAX_INTERIM {
            return Err("more than 8 interim (1xx) replies".into());
        }
    }
    Ok(None)
}

/// A complete reply head at the front of `buf`: its length, status and headers; `None` while incomplete.
fn parse_head(buf: &[u8]) -> Result<Option<(usize, StatusCode, HeaderMap)>, String> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut r = httparse::Response::new(&mut slots);
    let len = match r.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("bad reply head: {e}")),
    };
    let status = r
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or("bad status code")?;
    let mut headers = HeaderMap::with_capacity(r.headers.len());
    for h in r.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| format!("bad header name {:?}", h.name))?;
        let value = HeaderValue::from_bytes(h.value)
            .map_err(|_| format!("bad value for header {}", h.name))?;
        headers.append(name, value);
    }
    // HTTP/1.0 closes by default; its `keep-alive` extension is not worth honouring here.
    if r.version != Some(1) {
        headers.append(header::CONNECTION, HeaderValue::from_static("close"));
    }
    Ok(Some((len, status, headers)))
}

/// How a reply's body ends (RFC 9112 §6.3).
#[derive(Debug)]
enum Framing {
    /// This many bytes are still to come.
    Length(u64),
    Chunked(Chunked),
    /// Until the backend closes the connection.
    Eof,
    Done,
}

impl Framing {
    /// The next piece of the body from the bytes in `buf` (taken off it).
    fn next(&mut self, buf: &mut BytesMut) -> io::Result<Step> {
        match self {
            Framing::Done => Ok(Step::End),
            Framing::Length(_) | Framing::Eof if buf.is_empty() => Ok(Step::More),
            Framing::Length(rest) => {
                let n = (*rest).min(buf.len() as u64);
                let data = buf.split_to(n as usize).freeze();
                *rest -= n;
                if *rest == 0 {
                    *self = Framing::Done;
                }
                Ok(Step::Data(data))
            }
            Framing::Eof => Ok(Step::Data(buf.split().freeze())),
            Framing::Chunked(c) => {
                let step = c.decode(buf)?;
                if step == Step::End {
                    *self = Framing::Done;
                }
                Ok(step)
            }
        }
    }

    /// The connection closed: the end of a body that runs to the close, an error for any other.
    fn closed(&mut self) -> io::Result<()> {
        match self {
            Framing::Eof | Framing::Done => {
                *self = Framing::Done;
                Ok(())
            }
            _ => Err(cut_short()),
        }
    }
}

/// The backend closed its connection before the end of its reply (of the head or of a framed body).
fn cut_short() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the backend closed the connection before its reply was complete",
    )
}

/// The reply body's framing and whether its connection may be reused after it. A `Content-Length` beside
/// a chunked `Transfer-Encoding` is removed (the chunks decide, and the connection is not reused).
fn framing(
    head_request: bool,
    status: StatusCode,
    headers: &mut HeaderMap,
) -> Result<(Framing, bool), BackendError> {
    let mut keep_alive = !headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"));
    if head_request || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        return Ok((Framing::Done, keep_alive));
    }
    if let Some(te) = headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .next_back()
    {
        let chunked = te
            .as_bytes()
            .rsplit(|&b| b == b',')
            .next()
            .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        if headers.remove(header::CONTENT_LENGTH).is_some() {
            keep_alive = false;
        }
        if chunked {
            return Ok((Framing::Chunked(Chunked::default()), keep_alive));
        }
        return Ok((Framing::Eof, false));
    }
    let mut length = None;
    for v in headers.get_all(header::CONTENT_LENGTH) {
        for n in v.as_bytes().split(|&b| b == b',') {
            let n = n.trim_ascii();
            let parsed = std::str::from_utf8(n)
                .ok()
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<u64>().ok());
            match (parsed, length) {
                (None, _) => return Err(BackendError::Malformed("bad Content-Length".into())),
                (Some(a), Some(b)) if a != b => {
                    return Err(BackendError::Malformed(
                        "conflicting Content-Length values".into(),
                    ))
                }
                (Some(a), _) => length = Some(a),
            }
        }
    }
    Ok(match length {
        Some(0) => (Framing::Done, keep_alive),
        Some(n) => (Framing::Length(n), keep_alive),
        None => (Framing::Eof, false),
    })
}

/// A chunked body's decoder. It never allocates by what the backend says: a chunk's bytes are handed on
/// as they arrive, and size and trailer lines are bounded.
#[derive(Debug, Default)]
struct Chunked {
    state: ChunkState,
    trailers: usize,
}

#[derive(Debug, Default)]
enum ChunkState {
    #[default]
    Size,
    /// This many bytes of the current chunk are still to come.
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    Trailer,
}

/// What the bytes in hand give next.
#[derive(Debug, PartialEq)]
enum Step {
    Data(Bytes),
    /// More bytes are needed.
    More,
    End,
}

impl Chunked {
    fn decode(&mut self, buf: &mut BytesMut) -> io::Result<Step> {
        loop {
            match self.state {
                ChunkState::Size => {
                    let Some(line) = take_line(buf, MAX_CHUNK_LINE)? else {
                        return Ok(Step::More);
                    };
                    let size = chunk_size(&line)?;
                    self.state = if size == 0 {
                        ChunkState::Trailer
                    } else {
                        ChunkState::Data(size)
                    };
                }
                ChunkState::Data(rest) => {
                    if buf.is_empty() {
                        return Ok(Step::More);
                    }
                    let n = rest.min(buf.len() as u64);
                    let data = buf.split_to(n as usize).freeze();
                    self.state = if n == rest {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(rest - n)
                    };
                    return Ok(Step::Data(data));
                }
                ChunkState::DataEnd => {
                    // Only the line end may follow a chunk's data.
                    let line = take_line(buf, 0)
                        .map_err(|_| bad_chunk("chunk data not followed by CRLF"))?;
                    if line.is_none() {
                        return Ok(Step::More);
                    }
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailer => {
                    let Some(line) = take_line(buf, MAX_CHUNK_LINE)? else {
                        return Ok(Step::More);
                    };
                    if line.is_empty() {
                        return Ok(Step::End);
                    }
                    self.trailers += line.len();
                    if self.trailers > MAX_TRAILERS {
                        return Err(bad_chunk("trailers larger than 16 KiB"));
                    }
                }
            }
        }
    }
}

fn bad_chunk(why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("malformed chunked reply: {why}"),
    )
}

/// One line (CRLF or a bare LF) off the front of `buf`, without its end; `None` while incomplete. A line
/// longer than `max` is an error, found without waiting for its end.
fn take_line(buf: &mut BytesMut, max: usize) -> io::Result<Option<BytesMut>> {
    let end = memchr::memchr(b'\n', &buf[..buf.len().min(max + 2)]);
    match end {
        Some(i) => {
            let mut line = buf.split_to(i + 1);
            line.truncate(i);
            if line.last() == Some(&b'\r') {
                line.truncate(i - 1);
            }
            if line.len() > max {
                return Err(bad_chunk("line too long"));
            }
            Ok(Some(line))
        }
        None if buf.len() > max + 1 => Err(bad_chunk("line too long")),
        None => Ok(None),
    }
}

/// A chunk-size line: hex digits (at most 16), then optional `;extensions`.
fn chunk_size(line: &[u8]) -> io::Result<u64> {
    let hex = line.split(|&b| b == b';').next().unwrap_or_default();
    let hex = hex.trim_ascii();
    if hex.is_empty() || hex.len() > 16 || !hex.iter().all(u8::is_ascii_hexdigit) {
        return Err(bad_chunk("bad chunk size"));
    }
    let hex = std::str::from_utf8(hex).map_err(|_| bad_chunk("bad chunk size"))?;
    u64::from_str_radix(hex, 16).map_err(|_| bad_chunk("bad chunk size"))
}

/// A reply's body, read off its connection as it is polled. At its end the connection goes back to the
/// pool; dropped before its end, the connection is closed.
pub(super) struct Reply {
    conn: Option<Conn>,
    to: Upstream,
    framing: Framing,
    keep_alive: bool,
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reply")
            .field("to", &self.to)
            .field("framing", &self.framing)
            .finish()
    }
}

impl Reply {
    /// The body is complete: its connection is pooled if the backend keeps it and sent nothing more.
    fn finish(&mut self) {
        self.framing = Framing::Done;
        if let Some(c) = self.conn.take() {
            if self.keep_alive && c.buf.is_empty() {
                checkin(&self.to, c);
            }
        }
    }

    fn fail(&mut self, e: io::Error) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        self.framing = Framing::Done;
        self.conn = None;
        Poll::Ready(Some(Err(e)))
    }
}

impl HttpBody for Reply {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        let this = self.get_mut();
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match this.framing.next(&mut conn.buf) {
                Ok(Step::Data(data)) => {
                    if matches!(this.framing, Framing::Done) {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Ok(Step::End) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Ok(Step::More) => {}
                Err(e) => return this.fail(e),
            }
            match std::task::ready!(conn.poll_fill(cx)) {
                Ok(0) => match this.framing.closed() {
                    Ok(()) => {
                        this.conn = None;
                        return Poll::Ready(None);
                    }
                    Err(e) => return this.fail(e),
                },
                Ok(_) => {}
                Err(e) => return this.fail(e),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.framing, Framing::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Length(n) => SizeHint::with_exact(n),
            Framing::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

/// A whole reply read from bytes in hand as it would be off a connection in reads of `read` bytes, the
/// connection closing after the last: its status and body, or why it is refused. The same head parse,
/// framing and decoding as a live reply; for the fuzz target and the tests.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn read_reply(
    wire: &[u8],
    read: usize,
    head_request: bool,
) -> Result<(u16, Vec<u8>), String> {
    let mut reads = wire.chunks(read.max(1));
    let mut buf = BytesMut::new();
    let mut interim = 0;
    let (status, mut headers) = loop {
        if let Some(head) = take_head(&mut buf, &mut interim)? {
            break head;
        }
        buf.extend_from_slice(reads.next().ok_or("closed before the head")?);
    };
    let (mut framing, _) =
        framing(head_request, status, &mut headers).map_err(|e| e.to_string())?;
    let mut body = vec![];
    loop {
        match framing.next(&mut buf).map_err(|e| e.to_string())? {
            Step::Data(d) => body.extend_from_slice(&d),
            Step::End => return Ok((status.as_u16(), body)),
            Step::More => match reads.next() {
                Some(r) => buf.extend_from_slice(r),
                None => {
                    framing.closed().map_err(|e| e.to_string())?;
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use proptest::prelude::*;
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

    /// A backend that reads each request head (and a body of its `content-length`), answers with
    /// `reply(n)` for the n-th request on a connection, and closes every connection after `per_conn`
    /// answers. Returns the port, the number of connections it accepted, and what it last received.
    fn backend(
        per_conn: usize,
        reply: fn(usize, &str) -> Vec<u8>,
    ) -> (u16, Arc<AtomicUsize>, Arc<std::sync::Mutex<Vec<u8>>>) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let conns = Arc::new(AtomicUsize::new(0));
        let last = Arc::new(std::sync::Mutex::new(vec![]));
        let (c, seen) = (conns.clone(), last.clone());
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { return };
                c.fetch_add(1, SeqCst);
                let seen = seen.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    let mut got = Vec::new();
                    for n in 0..per_conn {
                        let head_end = loop {
                            if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                                break i + 4;
                            }
                            match s.read(&mut buf) {
                                Ok(0) | Err(_) => return,
                                Ok(k) => got.extend_from_slice(&buf[..k]),
                            }
                        };
                        let head = String::from_utf8_lossy(&got[..head_end]).to_string();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length: "))
                            .map_or(0, |v| v.trim().parse().unwrap());
                        while got.len() < head_end + len {
                            match s.read(&mut buf) {
                                Ok(0) | Err(_) => return,
                                Ok(k) => got.extend_from_slice(&buf[..k]),
                            }
                        }
                        *seen.lock().unwrap() = got[..head_end + len].to_vec();
                        got.drain(..head_end + len);
                        if s.write_all(&reply(n, &head)).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (port, conns, last)
    }

    fn ok_with_host(_: usize, head: &str) -> Vec<u8> {
        let body = if head.contains("\r\nhost: 127.0.0.1:") {
            "ok"
        } else {
            "no-host"
        };
        format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    fn parts(method: Method, target: &str) -> Parts {
        let mut p = axum::http::Request::new(()).into_parts().0;
        p.method = method;
        p.uri = target.parse().unwrap();
        p
    }

    async fn call(
        port: u16,
        method: Method,
        body: Option<Bytes>,
    ) -> Result<(StatusCode, HeaderMap, String), BackendError> {
        let host = HeaderValue::from_str(&format!("127.0.0.1:{port}")).unwrap();
        let resp = send(
            &Upstream::Local(port),
            &host,
            &parts(method, "/v1/x?q=1"),
            body,
        )
        .await?;
        let (head, body) = resp.into_parts();
        let b = body.collect().await?.to_bytes();
        Ok((
            head.status,
            head.headers,
            String::from_utf8_lossy(&b).into_owned(),
        ))
    }

    async fn get(port: u16) -> Result<String, BackendError> {
        Ok(call(port, Method::GET, None).await?.2)
    }

    #[tokio::test(flavor = "current_thread")]
    async fn connections_are_reused_and_closed_ones_replaced() {
        let (port, conns, _) = backend(3, ok_with_host);
        for _ in 0..9 {
            assert_eq!(get(port).await.unwrap(), "ok", "Host is set");
        }
        // 9 requests, 3 per connection: 3 connections, maybe one more where a close raced a request.
        let n = conns.load(SeqCst);
        assert!((3..=5).contains(&n), "{n} connections");
    }

    fn idle(to: &Upstream) -> usize {
        POOL.with(|p| p.borrow().get(to).map_or(0, Vec::len))
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_sweep_closes_what_the_backend_closed_and_what_sat_idle() {
        // Closed by the backend after one answer: swept at once, its descriptor released.
        let (port, _, _) = backend(1, ok_with_host);
        let to = Upstream::Local(port);
        assert_eq!(get(port).await.unwrap(), "ok");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(idle(&to), 1, "kept alive by the reply's framing");
        sweep();
        assert_eq!(idle(&to), 0);
        // Kept open by the backend: kept through 11 sweeps (55 s), closed at the 12th.
        let (port, _, _) = backend(10, ok_with_host);
        let to = Upstream::Local(port);
        assert_eq!(get(port).await.unwrap(), "ok");
        for _ in 0..IDLE_SWEEPS - 1 {
            sweep();
        }
        assert_eq!(idle(&to), 1);
        sweep();
        assert_eq!(idle(&to), 0);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_closed_port_is_a_connect_error() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        assert!(matches!(get(port).await, Err(BackendError::Connect { .. })));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_request_goes_out_with_its_length_and_without_stray_framing() {
        let (port, _, seen) = backend(10, ok_with_host);
        let host = HeaderValue::from_str(&format!("127.0.0.1:{port}")).unwrap();
        let mut p = parts(Method::POST, "/v1/chat/completions");
        p.headers.insert("x-a", HeaderValue::from_static("1"));
        p.headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from_static("999"));
        let r = send(&Upstream::Local(port), &host, &p, Some(Bytes::from("{}")))
            .await
            .unwrap();
        r.into_body().collect().await.unwrap();
        let got = String::from_utf8(seen.lock().unwrap().clone()).unwrap();
        assert_eq!(
            got,
            format!("POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nx-a: 1\r\ncontent-length: 2\r\n\r\n{{}}")
        );
        // A POST without a body says so; a large body (written after its head) arrives whole.
        call(port, Method::POST, None).await.unwrap();
        assert!(String::from_utf8_lossy(&seen.lock().unwrap()).contains("content-length: 0\r\n"));
        let big = Bytes::from(vec![b'x'; COALESCE * 3 + 7]);
        call(port, Method::PUT, Some(big.clone())).await.unwrap();
        assert!(seen.lock().unwrap().ends_with(&big));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn every_framing_is_read_and_the_connection_kept_only_when_it_may_be() {
        fn replies(n: usize, _: &str) -> Vec<u8> {
            let r: &[u8] = match n {
                0 => b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: t\r\n\r\n",
                1 => b"HTTP/1.1 204 No Content\r\n\r\n",
                2 => b"HTTP/1.1 200 OK\r\ncontent-length: 3, 3\r\n\r\nabc",
                3 => b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
                _ => b"HTTP/1.0 200 OK\r\n\r\nuntil the end",
            };
            r.to_vec()
        }
        let (port, conns, _) = backend(5, replies);
        assert_eq!(get(port).await.unwrap(), "hello world");
        let (status, _, body) = call(port, Method::GET, None).await.unwrap();
        assert_eq!((status, body.as_str()), (StatusCode::NO_CONTENT, ""));
        assert_eq!(get(port).await.unwrap(), "abc");
        assert_eq!(get(port).await.unwrap(), "");
        let (_, headers, body) = call(port, Method::GET, None).await.unwrap();
        assert_eq!(body, "until the end");
        assert_eq!(headers[header::CONNECTION], "close");
        assert_eq!(conns.load(SeqCst), 1, "one connection served all five");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn bad_replies_are_errors() {
        fn bad(_: usize, head: &str) -> Vec<u8> {
            let which = head.split(' ').nth(1).unwrap_or_default().to_string();
            let r: Vec<u8> = match which.as_str() {
                "/conflict" => {
                    b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\nabcd"
                        .to_vec()
                }
                "/sign" => b"HTTP/1.1 200 OK\r\ncontent-length: +3\r\n\r\nabc".to_vec(),
                "/garbage" => b"HTTP/1.1 2x0 OK\r\n\r\n".to_vec(),
                "/huge-head" => {
                    let mut v = b"HTTP/1.1 200 OK\r\n".to_vec();
                    for i in 0..3000 {
                        v.extend_from_slice(format!("x-h{i}: {}\r\n", "v".repeat(20)).as_bytes());
                    }
                    v
                }
                "/chunk-size" => {
                    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1ffffffffffffffff\r\n"
                        .to_vec()
                }
                "/short" => b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc".to_vec(),
                "/upgrade" => b"HTTP/1.1 101 Switching Protocols\r\n\r\n".to_vec(),
                _ => b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec(),
            };
            r
        }
        let (port, _, _) = backend(1, bad);
        let host = HeaderValue::from_str(&format!("127.0.0.1:{port}")).unwrap();
        for path in [
            "/conflict",
            "/sign",
            "/garbage",
            "/huge-head",
            "/chunk-size",
            "/short",
            "/upgrade",
        ] {
            let r = send(
                &Upstream::Local(port),
                &host,
                &parts(Method::POST, path),
                None,
            )
            .await;
            let outcome = match r {
                Err(e) => Err(e.to_string()),
                Ok(r) => r
                    .into_body()
                    .collect()
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
            };
            assert!(outcome.is_err(), "{path}: {outcome:?}");
        }
        assert_eq!(get(port).await.unwrap(), "ok");
    }

    /// `body` as a chunked body: cut where `cuts` says, with extensions and a trailer.
    fn chunked(body: &[u8], cuts: &[usize]) -> Vec<u8> {
        let mut out = vec![];
        let mut at = 0;
        for &c in cuts.iter().chain(std::iter::once(&body.len())) {
            let end = c.clamp(at, body.len());
            if end > at {
                out.extend_from_slice(format!("{:X};e=\"1\"\r\n", end - at).as_bytes());
                out.extend_from_slice(&body[at..end]);
                out.extend_from_slice(b"\r\n");
                at = end;
            }
        }
        out.extend_from_slice(b"0\r\nx-t: 1\r\n\r\n");
        out
    }

    proptest! {
        /// However the wire is cut into reads, the decoder gives back the body and then the end, and
        /// never more.
        #[test]
        fn chunked_bodies_decode_however_they_arrive(
            body in proptest::collection::vec(any::<u8>(), 0..2000),
            mut cuts in proptest::collection::vec(0usize..2000, 0..8),
            reads in proptest::collection::vec(1usize..300, 1..40),
        ) {
            cuts.sort();
            let wire = chunked(&body, &cuts);
            let mut d = Chunked::default();
            let (mut buf, mut got, mut at, mut ended) = (BytesMut::new(), vec![], 0, false);
            let mut reads = reads.into_iter().cycle();
            while !ended {
                match d.decode(&mut buf).unwrap() {
                    Step::Data(b) => got.extend_from_slice(&b),
                    Step::End => ended = true,
                    Step::More => {
                        prop_assert!(at < wire.len(), "wanted more after the whole body");
                        let n = reads.next().unwrap().min(wire.len() - at);
                        buf.extend_from_slice(&wire[at..at + n]);
                        at += n;
                    }
                }
            }
            prop_assert_eq!(got, body);
            prop_assert_eq!(at + buf.len(), wire.len());
        }

        /// Any bytes as a whole reply: a status and body or a refusal, never a panic, never a body longer
        /// than the bytes given, and the same outcome however the bytes arrive.
        #[test]
        fn any_reply_reads_the_same_however_it_arrives(
            wire in proptest::collection::vec(any::<u8>(), 0..800),
            prefix in 0usize..4,
            read in 1usize..64,
        ) {
            // Most random bytes are not a head at all: a valid start makes the framing paths run.
            let starts: [&[u8]; 4] = [
                b"",
                b"HTTP/1.1 200 OK\r\ncontent-length: 20\r\n\r\n",
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\n\r\n",
            ];
            let wire = [starts[prefix], &wire].concat();
            let whole = read_reply(&wire, wire.len(), false);
            prop_assert_eq!(&read_reply(&wire, read, false), &whole);
            if let Ok((_, body)) = whole {
                prop_assert!(body.len() <= wire.len());
            }
        }

        /// Arbitrary bytes as a chunked body: an answer or an error, never a panic, and never more data
        /// than was given.
        #[test]
        fn arbitrary_chunked_input_never_panics(wire in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut d = Chunked::default();
            let mut buf = BytesMut::from(&wire[..]);
            let mut total = 0;
            while let Ok(Step::Data(b)) = d.decode(&mut buf) {
                total += b.len();
            }
            prop_assert!(total <= wire.len());
        }
    }
}
