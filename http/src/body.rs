//! The request body a handler reads: a `Read` over the connection, limited
//! and decoded, with honest errors on truncation.

use std::fmt;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::StatusCode;

use crate::buf::ReadBuf;
use crate::chunked::ChunkedDecoder;
use crate::io::Io;
use crate::parse::BodyFraming;

/// Why reading a request body failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BodyErrorKind {
    /// The body is larger than the configured limit (413).
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The client closed the connection before the end of the body (400).
    Truncated,
    /// The chunked framing is invalid (400).
    Invalid(&'static str),
    /// No body bytes arrived within the body idle timeout (408).
    Timeout,
    /// The body arrived slower than the minimum data rate (408).
    TooSlow,
    /// Another I/O error (or cancellation) happened earlier; its kind.
    Io(io::ErrorKind),
}

/// A request body error. It travels inside an `io::Error` (the body is a
/// `Read`); [`BodyError::from_io`] gets it back, and the
/// [`IntoResponse`](crate::IntoResponse) impl of `io::Error` answers with
/// [`status`](BodyError::status), so `?` in a handler does the right thing.
///
/// ```
/// use stead_http::{BodyError, BodyErrorKind};
/// let e: std::io::Error = BodyError::new(BodyErrorKind::TooLarge { limit: 10 }).into();
/// assert_eq!(BodyError::from_io(&e).unwrap().status(), 413);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyError {
    kind: BodyErrorKind,
}

impl BodyError {
    /// An error of the given kind.
    pub fn new(kind: BodyErrorKind) -> Self {
        BodyError { kind }
    }

    /// What went wrong.
    pub fn kind(&self) -> BodyErrorKind {
        self.kind
    }

    /// The status a server answers with.
    pub fn status(&self) -> StatusCode {
        match self.kind {
            BodyErrorKind::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            BodyErrorKind::Truncated | BodyErrorKind::Invalid(_) => StatusCode::BAD_REQUEST,
            BodyErrorKind::Timeout | BodyErrorKind::TooSlow => StatusCode::REQUEST_TIMEOUT,
            BodyErrorKind::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `BodyError` inside an `io::Error`, if any.
    pub fn from_io(e: &io::Error) -> Option<BodyError> {
        e.get_ref()?.downcast_ref::<BodyError>().copied()
    }
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            BodyErrorKind::TooLarge { limit } => {
                write!(f, "request body larger than the limit of {limit} bytes")
            }
            BodyErrorKind::Truncated => {
                f.write_str("request body truncated: the client closed early")
            }
            BodyErrorKind::Invalid(why) => write!(f, "invalid chunked request body: {why}"),
            BodyErrorKind::Timeout => f.write_str("request body timed out"),
            BodyErrorKind::TooSlow => {
                f.write_str("request body arrived slower than the minimum data rate")
            }
            BodyErrorKind::Io(k) => {
                write!(f, "request body unreadable after an earlier error ({k})")
            }
        }
    }
}

impl std::error::Error for BodyError {}

impl From<BodyError> for io::Error {
    fn from(e: BodyError) -> io::Error {
        let kind = match e.kind {
            BodyErrorKind::TooLarge { .. } | BodyErrorKind::Invalid(_) => {
                io::ErrorKind::InvalidData
            }
            BodyErrorKind::Truncated => io::ErrorKind::UnexpectedEof,
            BodyErrorKind::Timeout | BodyErrorKind::TooSlow => io::ErrorKind::TimedOut,
            BodyErrorKind::Io(k) => k,
        };
        io::Error::new(kind, e)
    }
}

pub(crate) enum Framing {
    Done,
    Length(u64),
    Chunked(ChunkedDecoder),
}

/// The minimum-data-rate budget of a request body: time spent waiting for
/// the client may not exceed the grace period plus what the bytes received
/// so far pay for at the minimum rate.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pace {
    idle: Duration,
    rate: u32,
    grace: Duration,
    /// Time spent waiting for body bytes so far.
    pub(crate) waited: Duration,
    /// Body bytes (as read from the transport, framing included) so far.
    pub(crate) received: u64,
    /// The wait already ran out (event mode's buffered body): the next
    /// read from the transport fails with this at once.
    stalled: Option<BodyErrorKind>,
}

impl Pace {
    pub(crate) fn new(t: &crate::Timeouts) -> Self {
        Pace {
            idle: t.body_idle,
            rate: t.body_min_rate,
            grace: t.body_rate_grace,
            waited: Duration::ZERO,
            received: 0,
            stalled: None,
        }
    }

    /// How long the next wait may last, and whether the rate (not the idle
    /// timeout) is what limits it. A zero duration: the client is too slow.
    pub(crate) fn next_wait(&self) -> (Duration, bool) {
        if self.rate == 0 {
            return (self.idle, false);
        }
        let paid = Duration::from_nanos(
            u64::try_from(u128::from(self.received) * 1_000_000_000 / u128::from(self.rate))
                .unwrap_or(u64::MAX),
        );
        let left = self.grace.saturating_add(paid).saturating_sub(self.waited);
        if left < self.idle {
            (left, true)
        } else {
            (self.idle, false)
        }
    }

    /// A blocking read from `io`, bounded by the budget.
    fn read(&mut self, io: &mut dyn Io, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(kind) = self.stalled {
            return Err(BodyError::new(kind).into());
        }
        let (wait, by_rate) = self.next_wait();
        if wait.is_zero() {
            return Err(BodyError::new(BodyErrorKind::TooSlow).into());
        }
        io.set_read_timeout(Some(wait));
        let start = Instant::now();
        let r = io.read(buf);
        self.waited += start.elapsed();
        match r {
            Ok(n) => {
                self.received += n as u64;
                Ok(n)
            }
            Err(e) if by_rate && is_read_timeout(&e) => {
                Err(BodyError::new(BodyErrorKind::TooSlow).into())
            }
            Err(e) => Err(e),
        }
    }
}

/// Whether `e` is a [`Conn`](stead_core::Conn) operation's own timeout.
pub(crate) fn is_read_timeout(e: &io::Error) -> bool {
    e.get_ref()
        .is_some_and(|i| i.downcast_ref::<stead_core::Timeout>().is_some())
}

/// Where a request body stands; owned by the connection, lent to [`Body`].
pub(crate) struct BodyState {
    pub(crate) framing: Framing,
    pace: Pace,
    received: u64,
    limit: u64,
    /// `Expect: 100-continue` and the 100 has not been sent yet.
    pub(crate) continue_pending: bool,
    pub(crate) error: Option<BodyError>,
}

impl BodyState {
    pub(crate) fn new(
        framing: BodyFraming,
        continue_pending: bool,
        limits: &crate::Limits,
        timeouts: &crate::Timeouts,
    ) -> Self {
        let framing = match framing {
            BodyFraming::None => Framing::Done,
            BodyFraming::Length(n) => Framing::Length(n),
            BodyFraming::Chunked => Framing::Chunked(ChunkedDecoder::new(
                limits.chunk_extensions,
                limits.trailers,
            )),
        };
        BodyState {
            framing,
            pace: Pace::new(timeouts),
            received: 0,
            limit: limits.body,
            continue_pending,
            error: None,
        }
    }

    /// Make the next read from the transport fail with `kind` at once.
    pub(crate) fn stall(&mut self, kind: BodyErrorKind) {
        self.pace.stalled = Some(kind);
    }

    pub(crate) fn is_complete(&self) -> bool {
        matches!(self.framing, Framing::Done)
    }

    /// Bytes left if known (`None` for chunked).
    pub(crate) fn remaining(&self) -> Option<u64> {
        match &self.framing {
            Framing::Done => Some(0),
            Framing::Length(n) => Some(*n),
            Framing::Chunked(_) => None,
        }
    }

    fn fail(&mut self, e: BodyError) -> io::Error {
        self.error = Some(e);
        e.into()
    }

    /// Record an I/O error; timeouts of the connection become `Timeout`.
    fn fail_io(&mut self, e: io::Error) -> io::Error {
        if is_read_timeout(&e) {
            return self.fail(BodyError::new(BodyErrorKind::Timeout));
        }
        if let Some(b) = BodyError::from_io(&e) {
            return self.fail(b);
        }
        self.error = Some(BodyError::new(BodyErrorKind::Io(e.kind())));
        e
    }

    /// Read decoded body bytes from `rbuf`, then from `io`.
    pub(crate) fn read(
        &mut self,
        io: &mut dyn Io,
        rbuf: &mut ReadBuf,
        buf: &mut [u8],
    ) -> io::Result<usize> {
        if let Some(e) = self.error {
            return Err(e.into());
        }
        if buf.is_empty() || self.is_complete() {
            return Ok(0);
        }
        if self.continue_pending {
            self.continue_pending = false;
            let sent = io
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .and_then(|()| io.flush());
            if let Err(e) = sent {
                return Err(self.fail_io(e));
            }
        }
        match &mut self.framing {
            Framing::Done => Ok(0),
            Framing::Length(rem) => {
                let want = (*rem).min(buf.len() as u64) as usize;
                let n = if !rbuf.is_empty() {
                    let n = want.min(rbuf.len());
                    buf[..n].copy_from_slice(&rbuf.data()[..n]);
                    rbuf.consume(n);
                    n
                } else {
                    match self.pace.read(io, &mut buf[..want]) {
                        Ok(0) => return Err(self.fail(BodyError::new(BodyErrorKind::Truncated))),
                        Ok(n) => n,
                        Err(e) => return Err(self.fail_io(e)),
                    }
                };
                *rem -= n as u64;
                if *rem == 0 {
                    self.framing = Framing::Done;
                }
                self.received += n as u64;
                Ok(n)
            }
            Framing::Chunked(dec) => {
                let (result, done) = read_chunked(dec, &mut self.pace, io, rbuf, buf);
                if done {
                    self.framing = Framing::Done;
                }
                match result {
                    Ok(n) => {
                        self.received += n as u64;
                        if self.received > self.limit {
                            let limit = self.limit;
                            return Err(
                                self.fail(BodyError::new(BodyErrorKind::TooLarge { limit }))
                            );
                        }
                        Ok(n)
                    }
                    Err(Fail::Body(e)) => Err(self.fail(e)),
                    Err(Fail::Io(e)) => Err(self.fail_io(e)),
                }
            }
        }
    }
}

enum Fail {
    Body(BodyError),
    Io(io::Error),
}

/// One read of a chunked body: decoded bytes, and whether the body ended.
fn read_chunked(
    dec: &mut ChunkedDecoder,
    pace: &mut Pace,
    io: &mut dyn Io,
    rbuf: &mut ReadBuf,
    buf: &mut [u8],
) -> (Result<usize, Fail>, bool) {
    loop {
        if rbuf.is_empty() {
            match pace.read(io, rbuf.spare(4096)) {
                Ok(0) => {
                    return (
                        Err(Fail::Body(BodyError::new(BodyErrorKind::Truncated))),
                        false,
                    );
                }
                Ok(n) => rbuf.filled(n),
                Err(e) => return (Err(Fail::Io(e)), false),
            }
        }
        let step = match dec.decode(rbuf.data(), buf.len()) {
            Ok(s) => s,
            Err(e) => {
                let e = BodyError::new(BodyErrorKind::Invalid(e.reason()));
                return (Err(Fail::Body(e)), false);
            }
        };
        let n = step.data.len();
        buf[..n].copy_from_slice(&rbuf.data()[step.data]);
        rbuf.consume(step.consumed);
        let done = dec.is_done();
        if n > 0 || done {
            return (Ok(n), done);
        }
    }
}

pub(crate) struct ConnBody<'a> {
    pub(crate) io: &'a mut dyn Io,
    pub(crate) rbuf: &'a mut ReadBuf,
    pub(crate) st: &'a mut BodyState,
}

enum Source<'a> {
    Empty,
    Slice(&'a [u8]),
    Conn(ConnBody<'a>),
}

/// A request body: a `Read` of the decoded bytes, borrowed from the
/// connection for the duration of the handler.
///
/// Reads are limited ([`Limits::body`](crate::Limits::body)), decoded
/// (chunked), and fail with a [`BodyError`] (inside an `io::Error`) when
/// the client closes early, sends invalid framing, goes quiet for
/// [`Timeouts::body_idle`](crate::Timeouts::body_idle) or exceeds the
/// limit. The first read of a request with `Expect: 100-continue` sends the
/// `100 Continue`. What the handler leaves unread is drained (up to
/// [`Limits::drain`](crate::Limits::drain)) or the connection is closed: it
/// never becomes the next request.
///
/// For unit tests of handlers, [`Body::empty`] and [`Body::from_slice`]
/// make bodies without a connection.
pub struct Body<'a> {
    src: Source<'a>,
    peer: Option<SocketAddr>,
    declared: Option<u64>,
    chunked: bool,
}

impl fmt::Debug for Body<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Body")
            .field("content_length", &self.declared)
            .field("chunked", &self.chunked)
            .field("peer", &self.peer)
            .finish()
    }
}

impl Body<'static> {
    /// An empty body.
    pub fn empty() -> Self {
        Body {
            src: Source::Empty,
            peer: None,
            declared: Some(0),
            chunked: false,
        }
    }
}

impl<'a> Body<'a> {
    /// A body reading from a byte slice (for tests of handlers).
    pub fn from_slice(bytes: &'a [u8]) -> Self {
        Body {
            src: Source::Slice(bytes),
            peer: None,
            declared: Some(bytes.len() as u64),
            chunked: false,
        }
    }

    pub(crate) fn from_conn(
        conn: ConnBody<'a>,
        framing: BodyFraming,
        peer: Option<SocketAddr>,
    ) -> Self {
        let (declared, chunked) = match framing {
            BodyFraming::None => (Some(0), false),
            BodyFraming::Length(n) => (Some(n), false),
            BodyFraming::Chunked => (None, true),
        };
        Body {
            src: Source::Conn(conn),
            peer,
            declared,
            chunked,
        }
    }

    /// Attach a peer address (for tests of handlers that log it).
    pub fn with_peer_addr(mut self, peer: SocketAddr) -> Self {
        self.peer = Some(peer);
        self
    }

    /// The length the client declared (`Content-Length`, or 0 without a
    /// body); `None` for a chunked body.
    pub fn content_length(&self) -> Option<u64> {
        self.declared
    }

    /// Whether the body is chunked.
    pub fn is_chunked(&self) -> bool {
        self.chunked
    }

    /// The client's address.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// Read the whole body into memory (it is bounded by the server's body
    /// limit).
    pub fn read_all(&mut self) -> io::Result<Vec<u8>> {
        let hint = self.declared.unwrap_or(0).min(1 << 20) as usize;
        let mut v = Vec::with_capacity(hint);
        self.read_to_end(&mut v)?;
        Ok(v)
    }
}

impl Read for Body<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.src {
            Source::Empty => Ok(0),
            Source::Slice(s) => s.read(buf),
            Source::Conn(c) => c.st.read(c.io, c.rbuf, buf),
        }
    }
}
