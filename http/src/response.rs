//! Response bodies, conversions into responses, and sans-IO serialisation
//! of the response head.

use std::borrow::Cow;
use std::fmt;
use std::io::{self, Read, Write};

use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};

use crate::chunked::write_chunk_size;
use crate::io::Io;

type ChunkFn = Box<dyn FnOnce(&mut ChunkedWriter<'_>) -> io::Result<()> + Send>;

pub(crate) enum Kind {
    Empty,
    Bytes(Cow<'static, [u8]>),
    Reader {
        reader: Box<dyn Read + Send>,
        len: Option<u64>,
    },
    Chunked(ChunkFn),
}

/// A response body: bytes, any `Read`, or a function writing chunks.
///
/// ```
/// use std::io::Write;
/// use stead_http::ResponseBody;
///
/// let a = ResponseBody::from("hello");                 // Content-Length: 5
/// let b = ResponseBody::from(vec![1u8, 2, 3]);
/// let c = ResponseBody::reader(std::io::Cursor::new(vec![0u8; 10]));  // chunked
/// let d = ResponseBody::sized_reader(std::io::empty(), 0);           // Content-Length: 0
/// let e = ResponseBody::chunked(|w| {                                  // streamed
///     w.write_all(b"part 1\n")?;
///     w.flush()?; // sends this chunk now
///     w.write_all(b"part 2\n")
/// });
/// assert_eq!(a.len(), Some(5));
/// assert_eq!(c.len(), None);
/// # let _ = (b, d, e);
/// ```
pub struct ResponseBody {
    pub(crate) kind: Kind,
}

impl fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Empty => f.write_str("ResponseBody::Empty"),
            Kind::Bytes(b) => write!(f, "ResponseBody::Bytes({} bytes)", b.len()),
            Kind::Reader { len, .. } => write!(f, "ResponseBody::Reader(len: {len:?})"),
            Kind::Chunked(_) => f.write_str("ResponseBody::Chunked"),
        }
    }
}

impl Default for ResponseBody {
    fn default() -> Self {
        ResponseBody::empty()
    }
}

impl ResponseBody {
    /// No body (`Content-Length: 0`).
    pub const fn empty() -> Self {
        ResponseBody { kind: Kind::Empty }
    }

    /// A static byte string, sent without copying it to the heap.
    pub const fn from_static(bytes: &'static [u8]) -> Self {
        ResponseBody {
            kind: Kind::Bytes(Cow::Borrowed(bytes)),
        }
    }

    /// Stream from a reader of unknown length: `Transfer-Encoding: chunked`
    /// for HTTP/1.1 clients (close-delimited for HTTP/1.0). If the response
    /// carries a valid `Content-Length` header, that length is used instead
    /// and enforced.
    pub fn reader(r: impl Read + Send + 'static) -> Self {
        ResponseBody {
            kind: Kind::Reader {
                reader: Box::new(r),
                len: None,
            },
        }
    }

    /// Stream exactly `len` bytes from a reader (`Content-Length: len`). A
    /// reader that ends early is an error: the connection closes so the
    /// client sees a truncated response, never a wrong one.
    pub fn sized_reader(r: impl Read + Send + 'static, len: u64) -> Self {
        ResponseBody {
            kind: Kind::Reader {
                reader: Box::new(r),
                len: Some(len),
            },
        }
    }

    /// Produce the body with a function that writes to a [`ChunkedWriter`]
    /// (each `flush` sends what was written so far as one chunk). An error
    /// from the function closes the connection without the final chunk, so
    /// the client sees the body as truncated. Not called for `HEAD` requests.
    pub fn chunked<F>(f: F) -> Self
    where
        F: FnOnce(&mut ChunkedWriter<'_>) -> io::Result<()> + Send + 'static,
    {
        ResponseBody {
            kind: Kind::Chunked(Box::new(f)),
        }
    }

    /// The body's length if known before sending.
    pub fn len(&self) -> Option<u64> {
        match &self.kind {
            Kind::Empty => Some(0),
            Kind::Bytes(b) => Some(b.len() as u64),
            Kind::Reader { len, .. } => *len,
            Kind::Chunked(_) => None,
        }
    }

    /// Whether the body is known to be empty.
    pub fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }

    /// The bytes of a body given as bytes (`None` for streamed bodies).
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match &self.kind {
            Kind::Empty => Some(&[]),
            Kind::Bytes(b) => Some(b),
            _ => None,
        }
    }
}

impl From<()> for ResponseBody {
    fn from(_: ()) -> Self {
        ResponseBody::empty()
    }
}

impl From<Vec<u8>> for ResponseBody {
    fn from(v: Vec<u8>) -> Self {
        ResponseBody {
            kind: Kind::Bytes(Cow::Owned(v)),
        }
    }
}

impl From<String> for ResponseBody {
    fn from(s: String) -> Self {
        ResponseBody::from(s.into_bytes())
    }
}

impl From<&'static str> for ResponseBody {
    fn from(s: &'static str) -> Self {
        ResponseBody::from_static(s.as_bytes())
    }
}

impl From<&'static [u8]> for ResponseBody {
    fn from(s: &'static [u8]) -> Self {
        ResponseBody::from_static(s)
    }
}

impl From<Cow<'static, str>> for ResponseBody {
    fn from(s: Cow<'static, str>) -> Self {
        match s {
            Cow::Borrowed(s) => ResponseBody::from(s),
            Cow::Owned(s) => ResponseBody::from(s),
        }
    }
}

/// Anything a handler may return.
///
/// Implemented for `Response<B>` with any `B: Into<ResponseBody>`, strings
/// and byte vectors (200, `text/plain` / `application/octet-stream`),
/// [`StatusCode`] (an empty response), `(StatusCode, T)`, `Result<T, E>`,
/// and `io::Error` (a [`BodyError`](crate::BodyError) gives its status,
/// anything else 500).
pub trait IntoResponse {
    /// Make the response.
    fn into_response(self) -> Response<ResponseBody>;
}

impl<B: Into<ResponseBody>> IntoResponse for Response<B> {
    #[inline]
    fn into_response(self) -> Response<ResponseBody> {
        self.map(Into::into)
    }
}

impl IntoResponse for ResponseBody {
    fn into_response(self) -> Response<ResponseBody> {
        Response::new(self)
    }
}

impl IntoResponse for &'static str {
    fn into_response(self) -> Response<ResponseBody> {
        text(self)
    }
}

impl IntoResponse for String {
    fn into_response(self) -> Response<ResponseBody> {
        text(self)
    }
}

impl IntoResponse for Vec<u8> {
    fn into_response(self) -> Response<ResponseBody> {
        with_content_type("application/octet-stream", self)
    }
}

impl IntoResponse for &'static [u8] {
    fn into_response(self) -> Response<ResponseBody> {
        with_content_type("application/octet-stream", self)
    }
}

impl IntoResponse for StatusCode {
    fn into_response(self) -> Response<ResponseBody> {
        status(self)
    }
}

impl<T: IntoResponse> IntoResponse for (StatusCode, T) {
    fn into_response(self) -> Response<ResponseBody> {
        let mut r = self.1.into_response();
        *r.status_mut() = self.0;
        r
    }
}

impl<T: IntoResponse, E: IntoResponse> IntoResponse for Result<T, E> {
    fn into_response(self) -> Response<ResponseBody> {
        match self {
            Ok(t) => t.into_response(),
            Err(e) => e.into_response(),
        }
    }
}

impl IntoResponse for io::Error {
    fn into_response(self) -> Response<ResponseBody> {
        match crate::body::BodyError::from_io(&self) {
            Some(b) => {
                let mut r = text(format!("{b}\n"));
                *r.status_mut() = b.status();
                r
            }
            None => {
                log::warn!("stead-http: handler failed: {self}");
                let mut r = text("internal server error\n");
                *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                r
            }
        }
    }
}

/// A response with a body and a `Content-Type`.
pub fn with_content_type(
    content_type: &'static str,
    body: impl Into<ResponseBody>,
) -> Response<ResponseBody> {
    let mut r = Response::new(body.into());
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// `200 OK`, `text/plain; charset=utf-8`.
///
/// ```
/// let r = stead_http::text("hi");
/// assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");
/// ```
pub fn text(body: impl Into<ResponseBody>) -> Response<ResponseBody> {
    with_content_type("text/plain; charset=utf-8", body)
}

/// `200 OK`, `text/html; charset=utf-8`.
pub fn html(body: impl Into<ResponseBody>) -> Response<ResponseBody> {
    with_content_type("text/html; charset=utf-8", body)
}

/// `200 OK`, `application/json`, for a body already serialised (e.g. by
/// `serde_json::to_vec`).
///
/// ```
/// let r = stead_http::json(r#"{"ok":true}"#);
/// assert_eq!(r.headers()["content-type"], "application/json");
/// ```
pub fn json(body: impl Into<ResponseBody>) -> Response<ResponseBody> {
    with_content_type("application/json", body)
}

/// An empty response with the given status.
pub fn status(code: StatusCode) -> Response<ResponseBody> {
    let mut r = Response::new(ResponseBody::empty());
    *r.status_mut() = code;
    r
}

/// How a response body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFraming {
    /// `Content-Length: n`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Neither header: the body ends when the connection closes (HTTP/1.0).
    CloseDelimited,
    /// Neither header and no body (1xx, 204, 304).
    NoBody,
}

/// What to say in the `Connection` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionHeader {
    /// Nothing (HTTP/1.1 keep-alive is the default).
    Omit,
    /// `Connection: keep-alive` (for HTTP/1.0 clients).
    KeepAlive,
    /// `Connection: close`.
    Close,
}

/// Serialise a response head into `out` (appending): the status line, a
/// `Date` (unless `headers` has one), `headers` minus the framing and
/// hop-by-hop fields the server owns (`Content-Length`,
/// `Transfer-Encoding`, `Connection`, `Keep-Alive`), then the framing and
/// connection fields, then the empty line. No formatting machinery.
///
/// ```
/// use http::{HeaderMap, StatusCode};
/// use stead_http::{write_response_head, ConnectionHeader, ResponseFraming};
/// let mut out = Vec::new();
/// let date = stead_http::format_http_date(0);
/// write_response_head(&mut out, StatusCode::OK, &HeaderMap::new(),
///     ResponseFraming::Length(5), ConnectionHeader::Omit, &date);
/// assert_eq!(out, b"HTTP/1.1 200 OK\r\ndate: Thu, 01 Jan 1970 00:00:00 GMT\r\ncontent-length: 5\r\n\r\n");
/// ```
pub fn write_response_head(
    out: &mut Vec<u8>,
    status: StatusCode,
    headers: &HeaderMap,
    framing: ResponseFraming,
    connection: ConnectionHeader,
    date: &[u8; crate::date::DATE_LEN],
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut has_date = false;
    for (name, value) in headers {
        if name == header::CONTENT_LENGTH
            || name == header::TRANSFER_ENCODING
            || name == header::CONNECTION
            || name.as_str() == "keep-alive"
        {
            continue;
        }
        if name == header::DATE {
            has_date = true;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !has_date {
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(date);
        out.extend_from_slice(b"\r\n");
    }
    match framing {
        ResponseFraming::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            write_u64(out, n);
            out.extend_from_slice(b"\r\n");
        }
        ResponseFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        ResponseFraming::CloseDelimited | ResponseFraming::NoBody => {}
    }
    match connection {
        ConnectionHeader::Omit => {}
        ConnectionHeader::KeepAlive => out.extend_from_slice(b"connection: keep-alive\r\n"),
        ConnectionHeader::Close => out.extend_from_slice(b"connection: close\r\n"),
    }
    out.extend_from_slice(b"\r\n");
}

/// Append the decimal digits of `n`.
pub(crate) fn write_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Size of the pending chunk a [`ChunkedWriter`] sends on its own.
const CHUNK: usize = 16 * 1024;

/// Writes a streamed response body; given to the function of
/// [`ResponseBody::chunked`].
///
/// Writes are buffered up to 16 KiB; each buffer-full or [`flush`](Write::flush)
/// goes out as one chunk (or as raw bytes for an HTTP/1.0 client, whose
/// response ends when the connection closes).
pub struct ChunkedWriter<'a> {
    pub(crate) io: &'a mut dyn Io,
    /// Bytes ready to send (the response head first).
    pub(crate) out: &'a mut Vec<u8>,
    /// Body bytes not yet framed.
    pub(crate) pending: Vec<u8>,
    pub(crate) chunked: bool,
    pub(crate) written: u64,
}

impl ChunkedWriter<'_> {
    /// Body bytes accepted so far.
    pub fn bytes_written(&self) -> u64 {
        self.written + self.pending.len() as u64
    }

    fn send_pending(&mut self, also: &[u8]) -> io::Result<()> {
        let len = self.pending.len() + also.len();
        if len > 0 {
            if self.chunked {
                write_chunk_size(self.out, len);
            }
            self.out.extend_from_slice(&self.pending);
            self.written += len as u64;
            self.pending.clear();
        }
        if also.len() >= CHUNK {
            // Large writes go out without another copy; the chunk's CRLF
            // leaves with the next write.
            self.io.write_all2(self.out, also)?;
            self.out.clear();
            if self.chunked {
                self.out.extend_from_slice(b"\r\n");
            }
            return Ok(());
        }
        self.out.extend_from_slice(also);
        if self.chunked && len > 0 {
            self.out.extend_from_slice(b"\r\n");
        }
        if !self.out.is_empty() {
            self.io.write_all(self.out)?;
            self.out.clear();
        }
        Ok(())
    }

    /// Send the final chunk (internal; called by the server).
    pub(crate) fn finish(self) -> io::Result<()> {
        if self.chunked {
            let len = self.pending.len();
            if len > 0 {
                write_chunk_size(self.out, len);
                self.out.extend_from_slice(&self.pending);
                self.out.extend_from_slice(b"\r\n");
            }
            self.out.extend_from_slice(b"0\r\n\r\n");
        } else {
            self.out.extend_from_slice(&self.pending);
        }
        self.io.write_all(self.out)?;
        self.out.clear();
        self.io.flush()
    }
}

impl Write for ChunkedWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.pending.len() + buf.len() <= CHUNK {
            if self.pending.capacity() == 0 {
                self.pending.reserve(CHUNK);
            }
            self.pending.extend_from_slice(buf);
            return Ok(buf.len());
        }
        self.send_pending(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_pending(&[])?;
        self.io.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_skips_owned_fields_and_keeps_user_date() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("99"));
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(header::DATE, HeaderValue::from_static("x"));
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("a/b"));
        let mut out = Vec::new();
        write_response_head(
            &mut out,
            StatusCode::NOT_FOUND,
            &h,
            ResponseFraming::Chunked,
            ConnectionHeader::Close,
            &crate::date::format_http_date(0),
        );
        let s = String::from_utf8(out).unwrap();
        assert_eq!(
            s,
            "HTTP/1.1 404 Not Found\r\ndate: x\r\ncontent-type: a/b\r\n\
             transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        );
    }

    #[test]
    fn u64_digits() {
        for n in [0u64, 7, 10, 12345, u64::MAX] {
            let mut v = Vec::new();
            write_u64(&mut v, n);
            assert_eq!(v, n.to_string().into_bytes());
        }
    }
}
