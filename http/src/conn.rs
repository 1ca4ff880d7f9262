//! The connection state machine, shared by both server modes.
//!
//! [`drive`] processes a connection until it must wait for the next request:
//! thread mode calls it once with `blocking = true` (it then loops on
//! blocking reads until the connection closes); event mode calls it on
//! every readiness with `blocking = false` (it returns [`Next::Park`] as
//! soon as no input is available, keeping only a partial request, if any,
//! in the small [`Session`]: the read buffer itself is moved there, and a
//! small body being received remembers how far it was scanned, so each
//! readiness costs the new bytes, not the whole request again). Request
//! bodies larger than [`Limits::body_buffer`] and responses use blocking
//! I/O in both modes.

use std::io::{self, Read};
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use stead_core::Cancel;

use crate::body::{Body, BodyErrorKind, BodyState, ConnBody, Pace, is_read_timeout};
use crate::buf::ReadBuf;
use crate::chunked::ChunkedDecoder;
use crate::config::{Limits, Timeouts};
use crate::date::http_date;
use crate::handler::Handler;
use crate::io::Io;
use crate::parse::{BodyFraming, RequestHead, parse_request_head};
use crate::response::{
    ChunkedWriter, ConnectionHeader, Kind, ResponseBody, ResponseFraming, write_response_head,
};

/// Bodies up to this size are copied behind the head (one `write`); larger
/// ones go out with a vectored write.
const COPY_BODY_MAX: usize = 16 * 1024;
/// Most input discarded while lingering before a close.
const LINGER_MAX: usize = 1 << 20;
/// Read size while reading heads and chunked framing.
const READ_MIN: usize = 4096;

/// Per-server settings the state machine needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Config {
    pub(crate) limits: Limits,
    pub(crate) timeouts: Timeouts,
    pub(crate) max_requests: u64,
}

/// A counter bumped on every request by every thread: sharded so threads
/// do not fight over one cache line.
#[derive(Debug, Default)]
pub(crate) struct HotCounter {
    shards: [Padded; 8],
}

#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded(AtomicU64);

impl HotCounter {
    #[inline]
    pub(crate) fn add(&self, n: u64) {
        thread_local! {
            static SHARD: usize = {
                static NEXT: AtomicU64 = AtomicU64::new(0);
                NEXT.fetch_add(1, Ordering::Relaxed) as usize
            };
        }
        let i = SHARD.with(|s| *s) % self.shards.len();
        self.shards[i].0.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.0.load(Ordering::Relaxed))
            .sum()
    }
}

/// Counters shared by all connections of a server.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) requests: HotCounter,
    pub(crate) rejected: AtomicU64,
    pub(crate) timeouts: AtomicU64,
    pub(crate) panics: AtomicU64,
}

/// What [`drive`] works with.
#[derive(Clone, Copy)]
pub(crate) struct Ctx<'a> {
    pub(crate) handler: &'a dyn Handler,
    pub(crate) cfg: &'a Config,
    pub(crate) stats: &'a Counters,
}

/// What the connection does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Wait for input (event mode), at most this long.
    Park(Option<Duration>),
    /// Close the connection.
    Close,
}

/// A connection's state between readiness events: small on purpose, since
/// idle connections in event mode hold only this.
#[derive(Debug, Default)]
pub(crate) struct Session {
    /// A partial request (head, or head and buffered body) kept while
    /// waiting for the rest (event mode): the worker's read buffer itself,
    /// moved here, not copied.
    pending: Option<Box<ReadBuf>>,
    served: u64,
    /// When the head being received must be complete.
    head_deadline: Option<Instant>,
    /// Half-closed after an error: discarding input until then.
    linger_until: Option<Instant>,
    /// Bytes discarded so far while lingering: the budget spans every
    /// readiness of an event-mode session, not each one.
    lingered: usize,
    /// Event mode: a complete head whose (small) body is still arriving,
    /// buffered in `pending`, and what it still needs (so each readiness
    /// looks at the new bytes only, without parsing the head again).
    awaiting: Option<Awaiting>,
    pub(crate) peer: Option<SocketAddr>,
}

impl Session {
    pub(crate) fn new(peer: Option<SocketAddr>) -> Self {
        Session {
            peer,
            ..Session::default()
        }
    }

    /// Whether a partial request head is waiting.
    pub(crate) fn has_partial_head(&self) -> bool {
        self.pending.is_some()
    }

    /// Whether part of a request (head, or head and buffered body) is in.
    pub(crate) fn mid_request(&self) -> bool {
        self.linger_until.is_none() && self.pending.is_some()
    }
}

/// Read and write buffers, reused across requests (thread mode: per
/// connection; event mode: per worker thread).
pub(crate) struct Buffers {
    pub(crate) rbuf: ReadBuf,
    pub(crate) wbuf: Vec<u8>,
}

impl Buffers {
    pub(crate) fn new(read: usize) -> Self {
        Buffers {
            rbuf: ReadBuf::new(read),
            wbuf: Vec::with_capacity(4096),
        }
    }

    /// Forget contents; give back memory grown for unusual requests.
    pub(crate) fn reset(&mut self) {
        self.rbuf.clear();
        self.rbuf.shrink();
        self.wbuf.clear();
        if self.wbuf.capacity() > 64 * 1024 {
            self.wbuf = Vec::with_capacity(4096);
        }
    }
}

enum Step {
    Continue,
    Close,
    /// Half-close and discard input before closing (the peer may still be
    /// sending: closing at once could reset the connection before it reads
    /// the response).
    Linger,
}

/// Process the connection until it has to wait (event mode) or closes.
pub(crate) fn drive<I: Io>(
    sess: &mut Session,
    io: &mut I,
    bufs: &mut Buffers,
    ctx: Ctx<'_>,
    blocking: bool,
) -> Next {
    if let Some(until) = sess.linger_until {
        return linger(sess, io, &mut bufs.rbuf, until, blocking);
    }
    if let Some(pending) = sess.pending.take() {
        bufs.rbuf = *pending;
    }
    let cancel = io.cancel().clone();
    let cfg = ctx.cfg;
    // Whether the last read filled the buffer (more may be waiting).
    let mut filled_up = false;
    // The client ended its input before the awaited body was complete: the
    // handler runs anyway and its read reports the truncation, as in
    // thread mode.
    let mut input_ended = false;
    loop {
        let still_awaiting = !input_ended
            && sess
                .awaiting
                .as_mut()
                .is_some_and(|a| !a.arrived(bufs.rbuf.data(), &cfg.limits));
        // After this, `sess.awaiting` is set exactly when a body is awaited.
        if !still_awaiting && !bufs.rbuf.is_empty() {
            // A body awaited until now is complete: serve it, don't wait again.
            let awaited = sess.awaiting.take().is_some();
            match parse_request_head(bufs.rbuf.data(), &cfg.limits) {
                Ok(Some(head)) => {
                    let wait = if blocking || input_ended || awaited {
                        None
                    } else {
                        Awaiting::start(&head, bufs.rbuf.data(), &cfg.limits)
                    };
                    if let Some(a) = wait {
                        // Wait for the rest in the loop, holding no thread.
                        sess.awaiting = Some(a);
                    } else {
                        sess.head_deadline = None;
                        match serve_request(sess, io, bufs, ctx, head, &cancel, None) {
                            Step::Continue => continue,
                            Step::Close => return Next::Close,
                            Step::Linger => return start_linger(sess, io, bufs, cfg, blocking),
                        }
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    ctx.stats.rejected.fetch_add(1, Ordering::Relaxed);
                    log::debug!("stead-http: rejected request from {:?}: {e}", sess.peer);
                    send_error(io, &mut bufs.wbuf, e.status(), e.reason());
                    return start_linger(sess, io, bufs, cfg, blocking);
                }
            }
        }
        let new_request = bufs.rbuf.is_empty();
        let idle_timeout = if sess.served == 0 {
            cfg.timeouts.header
        } else {
            cfg.timeouts.keep_alive
        };
        let mut left = None;
        if let Some(a) = &sess.awaiting {
            let (wait, _) = a.pace(bufs.rbuf.len(), &cfg.timeouts).next_wait();
            // At zero, park for an instant: the timeout path runs the handler.
            left = Some(wait.max(Duration::from_millis(1)));
        } else if !new_request {
            let deadline = *sess
                .head_deadline
                .get_or_insert_with(|| Instant::now() + cfg.timeouts.header);
            let l = deadline.saturating_duration_since(Instant::now());
            if l.is_zero() {
                return request_timeout(io, &mut bufs.wbuf, ctx, HEAD_TIMEOUT);
            }
            left = Some(l);
        }
        let spare = bufs.rbuf.spare(READ_MIN);
        let spare_len = spare.len();
        let got = if blocking {
            if new_request {
                if !io.mark_idle() {
                    return Next::Close;
                }
                io.set_read_timeout(Some(idle_timeout));
                // Poll before reading unless more input is likely: one read
                // per request instead of a failed read and a second one.
                if !filled_up && io.wait_readable().is_err() {
                    return Next::Close;
                }
            } else {
                io.set_read_timeout(left);
            }
            io.read(spare)
        } else {
            // Read until `WouldBlock` before parking, as the event server's
            // contract asks (its spin detector closes sessions that park
            // with readable input; skipping this read to save a syscall
            // trips it under load).
            io.try_read(spare)
        };
        let got = match got {
            Err(e) if !blocking && e.kind() == io::ErrorKind::WouldBlock => {
                if new_request {
                    if !io.mark_idle() {
                        return Next::Close;
                    }
                    return Next::Park(Some(idle_timeout));
                }
                sess.pending = Some(Box::new(bufs.rbuf.take()));
                return Next::Park(left);
            }
            r => r,
        };
        match got {
            Ok(0) if sess.awaiting.is_some() => input_ended = true,
            Ok(0) => return Next::Close,
            Ok(n) => {
                bufs.rbuf.filled(n);
                filled_up = n == spare_len;
                // A drain that claimed this idle connection first wins: the
                // request is dropped unhandled (the client sees it unread).
                if new_request && !io.mark_active() {
                    return Next::Close;
                }
            }
            Err(e) if !new_request && is_read_timeout(&e) => {
                return request_timeout(io, &mut bufs.wbuf, ctx, HEAD_TIMEOUT);
            }
            Err(_) => return Next::Close,
        }
    }
}

/// A parked connection's timeout passed (event mode): what happens next.
pub(crate) fn on_timeout<I: Io>(
    sess: &mut Session,
    io: &mut I,
    bufs: &mut Buffers,
    ctx: Ctx<'_>,
) -> Next {
    if sess.linger_until.is_some() || !sess.has_partial_head() {
        return Next::Close;
    }
    let pending = sess.pending.take();
    let Some(awaited) = sess.awaiting.take() else {
        return request_timeout(io, &mut bufs.wbuf, ctx, HEAD_TIMEOUT);
    };
    // A buffered body stalled. The handler runs now, as it would have in
    // thread mode, and its read of the missing part fails at once with the
    // timeout that expired (408 unless it answers otherwise).
    if let Some(p) = pending {
        bufs.rbuf = *p;
    }
    let Ok(Some(head)) = parse_request_head(bufs.rbuf.data(), &ctx.cfg.limits) else {
        return Next::Close; // cannot happen: the head parsed when it parked
    };
    let kind = match awaited.pace(bufs.rbuf.len(), &ctx.cfg.timeouts).next_wait() {
        (_, true) => BodyErrorKind::TooSlow,
        (_, false) => BodyErrorKind::Timeout,
    };
    let cancel = io.cancel().clone();
    match serve_request(sess, io, bufs, ctx, head, &cancel, Some(kind)) {
        // The client may still be sending: read and discard for a moment
        // so it sees the response rather than a reset.
        Step::Linger => start_linger(sess, io, bufs, ctx.cfg, false),
        Step::Close | Step::Continue => Next::Close,
    }
}

const HEAD_TIMEOUT: &str = "request head timed out";

/// Answer 408 and close.
fn request_timeout<I: Io>(io: &mut I, wbuf: &mut Vec<u8>, ctx: Ctx<'_>, why: &str) -> Next {
    ctx.stats.timeouts.fetch_add(1, Ordering::Relaxed);
    send_error(io, wbuf, StatusCode::REQUEST_TIMEOUT, why);
    io.close_write();
    Next::Close
}

/// Event mode: a request whose head is complete and whose body is being
/// received by the loop before the handler runs.
#[derive(Debug)]
struct Awaiting {
    head_len: usize,
    need: Need,
    /// When the head was complete: the body has been awaited since.
    since: Instant,
}

#[derive(Debug)]
enum Need {
    /// Head and body together are this long.
    Total(usize),
    /// The chunked framing scanned so far (`scanned` body bytes).
    Chunked { dec: ChunkedDecoder, scanned: usize },
}

impl Awaiting {
    /// `None` if the body is in `data` (after the head) or is not waited
    /// for: bodies larger than [`Limits::body_buffer`] and bodies the
    /// client sends only after a `100 Continue` stream to the handler.
    fn start(head: &RequestHead, data: &[u8], limits: &Limits) -> Option<Awaiting> {
        if head.expect_continue || limits.body_buffer == 0 {
            return None;
        }
        let need = match head.framing {
            BodyFraming::None => return None,
            BodyFraming::Length(n) => {
                if n > limits.body_buffer as u64 || n > limits.body {
                    return None;
                }
                Need::Total(head.len + n as usize)
            }
            BodyFraming::Chunked => Need::Chunked {
                dec: ChunkedDecoder::new(limits.chunk_extensions, limits.trailers),
                scanned: 0,
            },
        };
        let mut a = Awaiting {
            head_len: head.len,
            need,
            since: Instant::now(),
        };
        (!a.arrived(data, limits)).then_some(a)
    }

    /// Whether the body is complete in `data` (head included), or must no
    /// longer be waited for. Looks only at bytes not seen before.
    fn arrived(&mut self, data: &[u8], limits: &Limits) -> bool {
        match &mut self.need {
            Need::Total(n) => data.len() >= *n,
            Need::Chunked { dec, scanned } => {
                let body = &data[self.head_len..];
                // Invalid framing is reported by the handler's read, as usual.
                body.len() > limits.body_buffer || scan_chunked(dec, body, scanned) != Some(false)
            }
        }
    }

    /// The minimum-rate budget of the wait so far, with `buffered` bytes
    /// (head included) received.
    fn pace(&self, buffered: usize, timeouts: &Timeouts) -> Pace {
        let mut pace = Pace::new(timeouts);
        pace.waited = self.since.elapsed();
        pace.received = (buffered - self.head_len) as u64;
        pace
    }
}

/// Advance `dec` over `body[*at..]`: `Some(true)` once the chunked body is
/// complete (`*at` is then its length), `Some(false)` if more input is
/// needed, `None` if the framing is invalid.
fn scan_chunked(dec: &mut ChunkedDecoder, body: &[u8], at: &mut usize) -> Option<bool> {
    loop {
        let step = dec.decode(&body[*at..], usize::MAX).ok()?;
        *at += step.consumed;
        if dec.is_done() {
            return Some(true);
        }
        if step.consumed == 0 || *at == body.len() {
            return Some(false);
        }
    }
}

fn start_linger<I: Io>(
    sess: &mut Session,
    io: &mut I,
    bufs: &mut Buffers,
    cfg: &Config,
    blocking: bool,
) -> Next {
    io.close_write();
    bufs.rbuf.clear();
    sess.pending = None;
    sess.awaiting = None;
    let until = Instant::now() + cfg.timeouts.linger;
    sess.linger_until = Some(until);
    sess.lingered = 0;
    linger(sess, io, &mut bufs.rbuf, until, blocking)
}

/// Discard input until EOF, the linger deadline, or a byte budget.
fn linger<I: Io>(
    sess: &mut Session,
    io: &mut I,
    rbuf: &mut ReadBuf,
    until: Instant,
    blocking: bool,
) -> Next {
    let mut total = sess.lingered;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() || total > LINGER_MAX {
            return Next::Close;
        }
        let spare = rbuf.spare(READ_MIN);
        let got = if blocking {
            io.set_read_timeout(Some(left));
            io.read(spare)
        } else {
            io.try_read(spare)
        };
        rbuf.clear();
        match got {
            Ok(0) => return Next::Close,
            Ok(n) => total += n,
            Err(e) if !blocking && e.kind() == io::ErrorKind::WouldBlock => {
                sess.linger_until = Some(until);
                sess.lingered = total;
                return Next::Park(Some(left));
            }
            Err(_) => return Next::Close,
        }
    }
}

/// Answer with a short plain-text error and `Connection: close`.
fn send_error<I: Io>(io: &mut I, wbuf: &mut Vec<u8>, status: StatusCode, reason: &str) {
    let mut headers = HeaderMap::with_capacity(1);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    wbuf.clear();
    write_response_head(
        wbuf,
        status,
        &headers,
        ResponseFraming::Length(reason.len() as u64 + 1),
        ConnectionHeader::Close,
        &http_date(),
    );
    wbuf.extend_from_slice(reason.as_bytes());
    wbuf.push(b'\n');
    let _ = io.write_all(wbuf).and_then(|()| io.flush());
    wbuf.clear();
}

fn serve_request<I: Io>(
    sess: &mut Session,
    io: &mut I,
    bufs: &mut Buffers,
    ctx: Ctx<'_>,
    head: RequestHead,
    cancel: &Cancel,
    stalled: Option<BodyErrorKind>,
) -> Step {
    let Buffers { rbuf, wbuf } = bufs;
    let cfg = ctx.cfg;
    rbuf.consume(head.len);
    sess.served += 1;
    ctx.stats.requests.add(1);
    let mut keep_alive = head.keep_alive && sess.served < cfg.max_requests && !io.is_draining();

    if let BodyFraming::Length(n) = head.framing
        && n > cfg.limits.body
    {
        ctx.stats.rejected.fetch_add(1, Ordering::Relaxed);
        send_error(
            io,
            wbuf,
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large",
        );
        return Step::Linger;
    }

    let RequestHead {
        method,
        uri,
        version,
        headers,
        framing,
        expect_continue,
        ..
    } = head;
    let is_head = method == Method::HEAD;
    let mut st = BodyState::new(framing, expect_continue, &cfg.limits, &cfg.timeouts);
    if let Some(kind) = stalled {
        st.stall(kind);
    }
    // Watch for the client going away while the handler blocks, unless the
    // client already sent more than this request (pipelining): it still
    // wants answers even if it has half-closed since.
    let pipelined = match framing {
        BodyFraming::None => !rbuf.is_empty(),
        BodyFraming::Length(n) => rbuf.len() as u64 > n,
        BodyFraming::Chunked => bytes_after_chunked_body(rbuf.data(), &cfg.limits),
    };
    let watch = !pipelined;
    if watch {
        io.begin_hangup_watch();
    }
    let body = Body::from_conn(
        ConnBody {
            io: &mut *io,
            rbuf: &mut *rbuf,
            st: &mut st,
        },
        framing,
        sess.peer,
    );
    let mut req = Request::new(body);
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.version_mut() = version;
    *req.headers_mut() = headers;

    let handler = ctx.handler;
    let result = catch_unwind(AssertUnwindSafe(|| handler.call(req, cancel)));
    if watch {
        io.end_hangup_watch();
    }
    let resp = match result {
        Ok(r) => r,
        Err(_) => {
            ctx.stats.panics.fetch_add(1, Ordering::Relaxed);
            log::error!(
                "stead-http: handler panicked serving {:?}; answered 500 and closed the connection",
                sess.peer
            );
            keep_alive = false;
            let mut r = Response::new(ResponseBody::from_static(b"internal server error\n"));
            *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            r
        }
    };

    // What the handler left of the body decides whether the connection can
    // carry another request.
    let mut drain = false;
    if st.error.is_some() {
        keep_alive = false;
    } else if !st.is_complete() {
        if st.continue_pending {
            // The client may be waiting for a 100 before sending the body.
            keep_alive = false;
        } else {
            match st.remaining() {
                Some(n) if n > cfg.limits.drain => keep_alive = false,
                _ => drain = true,
            }
        }
    }

    // A graceful shutdown that began while the handler ran: this response is
    // the connection's last, and says so.
    if keep_alive && io.is_draining() {
        keep_alive = false;
    }
    if write_response(io, wbuf, resp, version, is_head, &mut keep_alive).is_err() {
        return Step::Close;
    }
    if !keep_alive {
        if !st.is_complete() || !rbuf.is_empty() {
            return Step::Linger;
        }
        return Step::Close;
    }
    if drain && !drain_body(io, rbuf, &mut st, cfg.limits.drain) {
        return Step::Close;
    }
    Step::Continue
}

/// Whether `data` holds a whole chunked body and more bytes after it (a
/// pipelined request).
fn bytes_after_chunked_body(data: &[u8], limits: &Limits) -> bool {
    let mut dec = ChunkedDecoder::new(limits.chunk_extensions, limits.trailers);
    let mut at = 0;
    scan_chunked(&mut dec, data, &mut at) == Some(true) && at < data.len()
}

/// Read and discard the rest of a body, up to `max` bytes.
///
/// Never inlined, like [`copy_reader`]: its scratch buffer would otherwise
/// sit in `serve_request`'s frame, deepening every request's stack.
#[inline(never)]
fn drain_body<I: Io>(io: &mut I, rbuf: &mut ReadBuf, st: &mut BodyState, max: u64) -> bool {
    let mut scratch = [0u8; 4096];
    let mut total = 0u64;
    loop {
        match st.read(io, rbuf, &mut scratch) {
            Ok(0) => return st.is_complete(),
            Ok(n) => {
                total += n as u64;
                if total > max {
                    return false;
                }
            }
            Err(_) => return false,
        }
    }
}

fn has_close_token(v: &HeaderValue) -> bool {
    v.as_bytes()
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"))
}

fn parse_u64(v: &HeaderValue) -> Option<u64> {
    let b = v.as_bytes();
    if b.is_empty() || b.len() > 19 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')))
}

/// Serialise and send a response; `keep_alive` may turn false.
pub(crate) fn write_response<I: Io>(
    io: &mut I,
    wbuf: &mut Vec<u8>,
    resp: Response<ResponseBody>,
    version: Version,
    is_head: bool,
    keep_alive: &mut bool,
) -> io::Result<()> {
    let (parts, body) = resp.into_parts();
    let status = parts.status;
    if *keep_alive
        && let Some(v) = parts.headers.get(header::CONNECTION)
        && has_close_token(v)
    {
        *keep_alive = false;
    }
    let http10 = version == Version::HTTP_10;
    let no_body = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let user_len = || {
        parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(parse_u64)
    };
    let framing = if no_body {
        ResponseFraming::NoBody
    } else {
        match &body.kind {
            Kind::Empty if is_head => ResponseFraming::Length(user_len().unwrap_or(0)),
            Kind::Empty => ResponseFraming::Length(0),
            Kind::Bytes(b) => ResponseFraming::Length(b.len() as u64),
            Kind::Reader { len: Some(n), .. } => ResponseFraming::Length(*n),
            Kind::Reader { len: None, .. } | Kind::Chunked(_) => {
                match user_len().filter(|_| matches!(body.kind, Kind::Reader { .. })) {
                    Some(n) => ResponseFraming::Length(n),
                    None if http10 => ResponseFraming::CloseDelimited,
                    None => ResponseFraming::Chunked,
                }
            }
        }
    };
    if framing == ResponseFraming::CloseDelimited && !is_head {
        *keep_alive = false;
    }
    let connection = if !*keep_alive {
        ConnectionHeader::Close
    } else if http10 {
        ConnectionHeader::KeepAlive
    } else {
        ConnectionHeader::Omit
    };
    wbuf.clear();
    write_response_head(
        wbuf,
        status,
        &parts.headers,
        framing,
        connection,
        &http_date(),
    );
    drop(parts);
    if is_head || no_body {
        io.write_all(wbuf)?;
        wbuf.clear();
        return io.flush();
    }
    let res = match body.kind {
        Kind::Empty => io.write_all(wbuf),
        Kind::Bytes(b) => {
            if b.len() <= COPY_BODY_MAX {
                wbuf.extend_from_slice(&b);
                io.write_all(wbuf)
            } else {
                io.write_all2(wbuf, &b)
            }
        }
        Kind::Reader { reader, .. } => copy_reader(io, wbuf, reader, framing),
        Kind::Chunked(f) => {
            let mut w = ChunkedWriter {
                io: &mut *io,
                out: &mut *wbuf,
                pending: Vec::new(),
                chunked: framing == ResponseFraming::Chunked,
                written: 0,
            };
            match catch_unwind(AssertUnwindSafe(|| f(&mut w))) {
                Ok(Ok(())) => w.finish(),
                Ok(Err(e)) => Err(e),
                Err(_) => {
                    log::error!("stead-http: a chunked response body writer panicked");
                    Err(io::Error::other("response body writer panicked"))
                }
            }
        }
    };
    wbuf.clear();
    if let Err(e) = res {
        log::debug!("stead-http: response body failed: {e}");
        *keep_alive = false;
        return Err(e);
    }
    io.flush()
}

// Never inlined: its 16 KiB scratch buffer would otherwise sit in
// `serve_request`'s frame, and every request, even one answered from bytes,
// would run 16 KiB deeper in its thread's stack (more stack memory per
// thread-mode connection, more cache lines per request).
#[inline(never)]
fn copy_reader<I: Io>(
    io: &mut I,
    wbuf: &mut Vec<u8>,
    mut reader: Box<dyn Read + Send>,
    framing: ResponseFraming,
) -> io::Result<()> {
    const STEP: usize = 16 * 1024;
    let mut scratch = [0u8; STEP];
    let chunked = framing == ResponseFraming::Chunked;
    let mut remaining = match framing {
        ResponseFraming::Length(n) => n,
        _ => u64::MAX,
    };
    while remaining > 0 {
        let want = remaining.min(STEP as u64) as usize;
        let n = match reader.read(&mut scratch[..want]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            if remaining != u64::MAX {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "response body reader ended before its declared length",
                ));
            }
            break;
        }
        if chunked {
            crate::chunked::write_chunk_size(wbuf, n);
            wbuf.extend_from_slice(&scratch[..n]);
            wbuf.extend_from_slice(b"\r\n");
        } else {
            wbuf.extend_from_slice(&scratch[..n]);
        }
        if remaining != u64::MAX {
            remaining -= n as u64;
        }
        if wbuf.len() >= STEP {
            io.write_all(wbuf)?;
            wbuf.clear();
        }
    }
    if chunked {
        wbuf.extend_from_slice(b"0\r\n\r\n");
    }
    io.write_all(wbuf)
}

/// Run the connection state machine over in-memory input and return what
/// the server wrote: for fuzzing and for deterministic tests of handlers
/// with raw bytes. The input arrives in the given pieces (as separate
/// reads); after the last piece the client half-closes (EOF). Timeouts do
/// not apply.
///
/// ```
/// use http::Request;
/// use stead_core::Cancel;
/// use stead_http::{Body, Limits, simulate};
///
/// let out = simulate(
///     &[b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\n", b"Host: x\r\n\r\n"],
///     Limits::default(),
///     &|req: Request<Body>, _: &Cancel| req.uri().path().to_owned(),
/// );
/// let out = String::from_utf8(out).unwrap();
/// assert!(out.starts_with("HTTP/1.1 200 OK\r\n"));
/// assert!(out.ends_with("\r\n\r\n/b"));
/// ```
pub fn simulate(input: &[&[u8]], limits: Limits, handler: &dyn Handler) -> Vec<u8> {
    simulate_mode(input, limits, handler, false)
}

/// [`simulate`] along event mode's path: each piece of input arrives as a
/// separate readiness, and between pieces the connection parks, keeping
/// only its session (a partial head, or a head and a buffered body), as in
/// the event server. For any split, the output must equal [`simulate`]'s.
///
/// ```
/// use http::Request;
/// use stead_core::Cancel;
/// use stead_http::{Body, Limits, simulate, simulate_event};
///
/// let echo = |mut req: Request<Body>, _: &Cancel| req.body_mut().read_all();
/// let pieces: &[&[u8]] = &[b"POST / HTTP/1.1\r\nHost: x\r\nContent-Len", b"gth: 5\r\n\r\nhel", b"lo"];
/// let event = simulate_event(pieces, Limits::default(), &echo);
/// assert!(event.ends_with(b"\r\n\r\nhello"));
/// assert_eq!(event.len(), simulate(pieces, Limits::default(), &echo).len());
/// ```
pub fn simulate_event(input: &[&[u8]], limits: Limits, handler: &dyn Handler) -> Vec<u8> {
    simulate_mode(input, limits, handler, true)
}

fn simulate_mode(input: &[&[u8]], limits: Limits, handler: &dyn Handler, event: bool) -> Vec<u8> {
    let cfg = Config {
        limits,
        timeouts: Timeouts::default(),
        max_requests: u64::MAX,
    };
    let stats = Counters::default();
    let ctx = Ctx {
        handler,
        cfg: &cfg,
        stats: &stats,
    };
    let mut sess = Session::new(None);
    let mut bufs = Buffers::new(8 * 1024);
    if !event {
        let mut io = crate::io::MemoryIo::new(input);
        drive(&mut sess, &mut io, &mut bufs, ctx, true);
        return io.output;
    }
    let mut io = crate::io::MemoryIo::new_event(input);
    // One readiness per piece, plus the end of input (and a linger).
    for _ in 0..input.len() + 3 {
        let next = drive(&mut sess, &mut io, &mut bufs, ctx, false);
        bufs.reset();
        if next == Next::Close {
            return io.output;
        }
    }
    panic!("stead-http: simulate_event: the connection never closed after its input ended");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An event-mode session lingering after a rejected body stops reading
    /// at the budget even when the input arrives over many readinesses
    /// (each ends in `WouldBlock` and parks the session).
    #[test]
    fn the_linger_budget_spans_event_mode_readinesses() {
        let head: &[u8] = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n";
        let chunk = vec![b'x'; 16 * 1024];
        let mut input: Vec<&[u8]> = vec![head];
        input.extend(std::iter::repeat_n(&chunk[..], 256)); // 4 MiB
        let cfg = Config {
            limits: Limits::default().body(64 * 1024),
            timeouts: Timeouts::default(),
            max_requests: u64::MAX,
        };
        let stats = Counters::default();
        let handler = |_: http::Request<crate::Body<'_>>, _: &stead_core::Cancel| "unreachable";
        let ctx = Ctx {
            handler: &handler,
            cfg: &cfg,
            stats: &stats,
        };
        let mut sess = Session::new(None);
        let mut bufs = Buffers::new(8 * 1024);
        let mut io = crate::io::MemoryIo::new_event(&input);
        let mut closed = false;
        for _ in 0..input.len() + 3 {
            let next = drive(&mut sess, &mut io, &mut bufs, ctx, false);
            bufs.reset();
            if next == Next::Close {
                closed = true;
                break;
            }
        }
        assert!(closed, "the session lingered through all its input");
        assert!(io.output.starts_with(b"HTTP/1.1 413"));
        let read = (256 - io.unread_pieces()) * chunk.len();
        assert!(
            read <= LINGER_MAX + 2 * chunk.len(),
            "discarded {read} bytes"
        );
    }
}
