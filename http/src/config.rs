//! Limits and timeouts, with the safe defaults of the issue (and of nginx /
//! Go's `net/http` where the issue is silent).

use std::time::Duration;

/// Size limits applied to every request.
///
/// Fields are public for reading and assignment; the setters chain:
///
/// ```
/// use stead_http::Limits;
/// let limits = Limits::default().body(10 << 20).headers(50);
/// assert_eq!(limits.body, 10 << 20);
/// assert_eq!(limits.head, 64 * 1024);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Longest request line (method, target, version) in bytes; longer gets
    /// `414 URI Too Long`. Default 8 KiB.
    pub request_line: usize,
    /// Longest request head (request line and all header fields) in bytes;
    /// longer gets `431 Request Header Fields Too Large`. Default 64 KiB.
    pub head: usize,
    /// Most header fields in a request; more gets `431`. Default 100.
    pub headers: usize,
    /// Largest request body in bytes (after chunked decoding). A declared
    /// `Content-Length` above it gets `413 Content Too Large` before the
    /// handler runs; a chunked body that grows past it fails the handler's
    /// read with a [`BodyError`](crate::BodyError) that maps to 413. Default 2 MiB.
    pub body: u64,
    /// Total bytes of chunk extensions allowed in one chunked body. Default 16 KiB.
    pub chunk_extensions: usize,
    /// Total bytes of trailer fields allowed after a chunked body. Default 16 KiB.
    pub trailers: usize,
    /// Unread request body the server reads and discards after the response
    /// to keep the connection alive; a larger remainder closes the
    /// connection instead. Default 256 KiB (Go's value).
    pub drain: u64,
    /// Event mode: a request body declared (or, chunked, framed) within
    /// this many bytes, without `Expect: 100-continue`, is received by the
    /// event loop before the handler runs, so a slow client holds no thread
    /// while it trickles its body (nginx buffers bodies the same way). Larger
    /// bodies stream to the handler, which reads them on its own thread.
    /// Default 64 KiB; 0 disables.
    pub body_buffer: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            request_line: 8 * 1024,
            head: 64 * 1024,
            headers: 100,
            body: 2 * 1024 * 1024,
            chunk_extensions: 16 * 1024,
            trailers: 16 * 1024,
            drain: 256 * 1024,
            body_buffer: 64 * 1024,
        }
    }
}

impl Limits {
    /// Set [`request_line`](Limits::request_line).
    pub fn request_line(mut self, bytes: usize) -> Self {
        self.request_line = bytes.max(16);
        self
    }
    /// Set [`head`](Limits::head).
    pub fn head(mut self, bytes: usize) -> Self {
        self.head = bytes.max(64);
        self
    }
    /// Set [`headers`](Limits::headers).
    pub fn headers(mut self, n: usize) -> Self {
        self.headers = n.max(1);
        self
    }
    /// Set [`body`](Limits::body).
    pub fn body(mut self, bytes: u64) -> Self {
        self.body = bytes;
        self
    }
    /// Set [`chunk_extensions`](Limits::chunk_extensions).
    pub fn chunk_extensions(mut self, bytes: usize) -> Self {
        self.chunk_extensions = bytes;
        self
    }
    /// Set [`trailers`](Limits::trailers).
    pub fn trailers(mut self, bytes: usize) -> Self {
        self.trailers = bytes;
        self
    }
    /// Set [`drain`](Limits::drain).
    pub fn drain(mut self, bytes: u64) -> Self {
        self.drain = bytes;
        self
    }
    /// Set [`body_buffer`](Limits::body_buffer).
    pub fn body_buffer(mut self, bytes: usize) -> Self {
        self.body_buffer = bytes;
        self
    }
}

/// Timeouts applied to every connection.
///
/// ```
/// use std::time::Duration;
/// use stead_http::Timeouts;
/// let t = Timeouts::default().keep_alive(Duration::from_secs(5));
/// assert_eq!(t.header, Duration::from_secs(30));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Timeouts {
    /// A request head must be complete within this time of its first byte
    /// (for a new connection: of the accept, TLS handshake included). It is
    /// a deadline, not an idle timeout, so a client trickling bytes cannot
    /// extend it (slowloris). On expiry the server answers
    /// `408 Request Timeout` if part of a head arrived, then closes. Default 30 s.
    pub header: Duration,
    /// Longest wait for the next bytes of a request body; the handler's read
    /// then fails with a [`BodyError`](crate::BodyError) (408). Default 30 s.
    pub body_idle: Duration,
    /// Minimum average rate, in bytes per second, at which a request body
    /// must arrive once [`body_rate_grace`](Timeouts::body_rate_grace) has
    /// been spent waiting for it; slower, the read fails with
    /// [`BodyErrorKind::TooSlow`](crate::BodyErrorKind::TooSlow) (408) and
    /// the connection closes. Only time spent *waiting for the client*
    /// counts (a handler busy between reads is not the client's fault).
    /// This stops a client trickling a body from holding a handler for
    /// hours (R-U-Dead-Yet). Default 240 bytes/s (ASP.NET Kestrel's value);
    /// 0 disables.
    pub body_min_rate: u32,
    /// Waiting time allowed before [`body_min_rate`](Timeouts::body_min_rate)
    /// applies. Default 5 s.
    pub body_rate_grace: Duration,
    /// How long an idle keep-alive connection waits for its next request
    /// before closing silently. Default 60 s.
    pub keep_alive: Duration,
    /// Longest wait for the peer to accept more response bytes; the
    /// connection closes on expiry. Default 30 s.
    pub write: Duration,
    /// After an error response the server half-closes and discards input
    /// for up to this long before closing, so the peer reads the response
    /// instead of a reset (nginx's lingering close). Default 2 s.
    pub linger: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            header: Duration::from_secs(30),
            body_idle: Duration::from_secs(30),
            body_min_rate: 240,
            body_rate_grace: Duration::from_secs(5),
            keep_alive: Duration::from_secs(60),
            write: Duration::from_secs(30),
            linger: Duration::from_secs(2),
        }
    }
}

impl Timeouts {
    /// Set [`header`](Timeouts::header).
    pub fn header(mut self, d: Duration) -> Self {
        self.header = d;
        self
    }
    /// Set [`body_idle`](Timeouts::body_idle).
    pub fn body_idle(mut self, d: Duration) -> Self {
        self.body_idle = d;
        self
    }
    /// Set [`body_min_rate`](Timeouts::body_min_rate) (bytes per second)
    /// and [`body_rate_grace`](Timeouts::body_rate_grace).
    pub fn body_min_rate(mut self, bytes_per_sec: u32, grace: Duration) -> Self {
        self.body_min_rate = bytes_per_sec;
        self.body_rate_grace = grace;
        self
    }
    /// Set [`keep_alive`](Timeouts::keep_alive).
    pub fn keep_alive(mut self, d: Duration) -> Self {
        self.keep_alive = d;
        self
    }
    /// Set [`write`](Timeouts::write).
    pub fn write(mut self, d: Duration) -> Self {
        self.write = d;
        self
    }
    /// Set [`linger`](Timeouts::linger).
    pub fn linger(mut self, d: Duration) -> Self {
        self.linger = d;
        self
    }
}
