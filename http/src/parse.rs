//! Sans-IO request head parsing: bytes in, an `http` request head and a
//! body framing decision out, with every strict framing rule of RFC 9112
//! that defends against request smuggling.
//!
//! [`parse_request_head`] is a pure function: give it the bytes received so
//! far; it answers "need more" (`Ok(None)`), a complete [`RequestHead`], or a
//! [`HeadError`] carrying the status to answer with (400, 414, 417, 431,
//! 501, 505). The connection then closes.

use std::fmt;
use std::mem::MaybeUninit;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Uri, Version};

use crate::config::Limits;

/// How a request's body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body (no `Content-Length`, no `Transfer-Encoding`, or a length of 0).
    None,
    /// Exactly this many bytes follow the head.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A complete, validated request head.
#[derive(Debug)]
pub struct RequestHead {
    /// The method.
    pub method: Method,
    /// The request target as sent (origin-, absolute-, authority- or asterisk-form).
    pub uri: Uri,
    /// `HTTP/1.0` or `HTTP/1.1`.
    pub version: Version,
    /// The header fields, in order.
    pub headers: HeaderMap,
    /// How the body is framed.
    pub framing: BodyFraming,
    /// Whether the client allows the connection to stay open after this
    /// request (HTTP/1.1 unless `Connection: close`; HTTP/1.0 only with
    /// `Connection: keep-alive`).
    pub keep_alive: bool,
    /// `Expect: 100-continue` on an HTTP/1.1 request with a body.
    pub expect_continue: bool,
    /// Bytes of the head, including the final empty line: the body starts here.
    pub len: usize,
}

/// Why a request head was rejected, and the status to answer with.
///
/// A small `Copy` error with a static message, like httparse's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadError {
    status: StatusCode,
    reason: &'static str,
}

impl HeadError {
    pub(crate) const fn new(status: StatusCode, reason: &'static str) -> Self {
        HeadError { status, reason }
    }

    const fn bad(reason: &'static str) -> Self {
        HeadError::new(StatusCode::BAD_REQUEST, reason)
    }

    /// The status to answer with (400, 414, 417, 431, 501 or 505).
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// What was wrong, for logs and the response body.
    pub fn reason(&self) -> &'static str {
        self.reason
    }
}

impl fmt::Display for HeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.status, self.reason)
    }
}

impl std::error::Error for HeadError {}

/// Header arrays up to this size live on the stack, uninitialised.
const STACK_HEADERS: usize = 128;

/// Parse a request head from the start of `buf`.
///
/// Returns `Ok(None)` while the head is incomplete (and within limits),
/// `Ok(Some(head))` once complete (the body, if any, starts at `head.len`),
/// or the error to answer with. Splitting the same bytes at any point and
/// calling again with more gives the same result (it is a pure function of
/// the prefix it is given).
///
/// ```
/// use stead_http::{parse_request_head, BodyFraming, Limits};
/// let req = b"POST /upload HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\n\r\nhello";
/// let head = parse_request_head(req, &Limits::default()).unwrap().unwrap();
/// assert_eq!(head.method, http::Method::POST);
/// assert_eq!(head.framing, BodyFraming::Length(5));
/// assert_eq!(&req[head.len..], b"hello");
///
/// assert!(parse_request_head(&req[..20], &Limits::default()).unwrap().is_none());
///
/// let smuggle = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n";
/// let err = parse_request_head(smuggle, &Limits::default()).unwrap_err();
/// assert_eq!(err.status(), 400);
/// ```
pub fn parse_request_head(buf: &[u8], limits: &Limits) -> Result<Option<RequestHead>, HeadError> {
    let max = limits.headers.max(1);
    if max <= STACK_HEADERS {
        let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; STACK_HEADERS];
        parse_with(buf, limits, &mut headers[..max])
    } else {
        let mut headers = Vec::with_capacity(max);
        headers.resize_with(max, MaybeUninit::uninit);
        parse_with(buf, limits, &mut headers)
    }
}

fn parse_with<'b>(
    buf: &'b [u8],
    limits: &Limits,
    headers: &mut [MaybeUninit<httparse::Header<'b>>],
) -> Result<Option<RequestHead>, HeadError> {
    let mut req = httparse::Request::new(&mut []);
    let status = req.parse_with_uninit_headers(buf, headers);
    // Where the request line ends, when httparse got that far.
    let line_end = match (req.path, req.version) {
        (Some(path), Some(_)) => Some(offset_in(buf, path.as_bytes()) + path.len() + 1 + 8 + 2),
        _ => None,
    };
    let len = match status {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            match line_end {
                None if buf.len() > limits.request_line => {
                    return Err(HeadError::new(
                        StatusCode::URI_TOO_LONG,
                        "request line too long",
                    ));
                }
                Some(end) if end > limits.request_line => {
                    return Err(HeadError::new(
                        StatusCode::URI_TOO_LONG,
                        "request line too long",
                    ));
                }
                _ => {}
            }
            if buf.len() > limits.head {
                return Err(HeadError::new(
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "request head too large",
                ));
            }
            return Ok(None);
        }
        Err(e) => {
            // An error found past a limit: any split of the input that
            // delivered the first `limit + 1` bytes alone was answered 414
            // or 431 already, so the whole input must be too (the answer
            // must not depend on how the bytes arrive). Errors are rare:
            // re-parsing the prefix costs nothing on the fast path.
            let (a, b) = if limits.request_line <= limits.head {
                (limits.request_line, limits.head)
            } else {
                (limits.head, limits.request_line)
            };
            for limit in [a, b] {
                if buf.len() > limit + 1
                    && let Err(first) = parse_request_head(&buf[..limit + 1], limits)
                {
                    return Err(first);
                }
            }
            return match map_httparse_error(e, buf, limits) {
                Some(e) => Err(e),
                None => Ok(None),
            };
        }
    };
    if line_end.is_some_and(|end| end > limits.request_line) {
        return Err(HeadError::new(
            StatusCode::URI_TOO_LONG,
            "request line too long",
        ));
    }
    if len > limits.head {
        return Err(HeadError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "request head too large",
        ));
    }
    // httparse accepts a bare LF as a line terminator. Every CR it accepted
    // is followed by LF, so a bare LF exists exactly when LFs outnumber CRs.
    if lf_minus_cr(&buf[..len]) != 0 {
        return Err(HeadError::bad("bare LF line terminator"));
    }

    let version = match req.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let method_str = req.method.unwrap_or("");
    let method =
        Method::from_bytes(method_str.as_bytes()).map_err(|_| HeadError::bad("invalid method"))?;
    let target = req.path.unwrap_or("");
    let uri = parse_target(&method, target)?;

    let mut map = HeaderMap::with_capacity(req.headers.len());
    let mut content_length: Option<u64> = None;
    let mut transfer_encoding = false;
    let mut chunked = TeState::Empty;
    let mut hosts = 0u32;
    let mut close = false;
    let mut keep_alive_token = false;
    let mut expect_continue = false;
    for h in req.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| HeadError::bad("invalid header name"))?;
        let value =
            HeaderValue::from_bytes(h.value).map_err(|_| HeadError::bad("invalid header value"))?;
        if name == header::CONTENT_LENGTH {
            let n = parse_content_length(h.value)?;
            if content_length.is_some_and(|prev| prev != n) {
                return Err(HeadError::bad("conflicting Content-Length values"));
            }
            content_length = Some(n);
        } else if name == header::TRANSFER_ENCODING {
            transfer_encoding = true;
            chunked = parse_transfer_encoding(h.value, chunked)?;
        } else if name == header::HOST {
            hosts += 1;
            if !valid_host(h.value) {
                return Err(HeadError::bad("invalid Host"));
            }
        } else if name == header::CONNECTION {
            for token in list_tokens(h.value) {
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    keep_alive_token = true;
                }
            }
        } else if name == header::EXPECT {
            if h.value.eq_ignore_ascii_case(b"100-continue") {
                expect_continue = true;
            } else {
                return Err(HeadError::new(
                    StatusCode::EXPECTATION_FAILED,
                    "unsupported expectation",
                ));
            }
        }
        map.append(name, value);
    }

    if version == Version::HTTP_11 {
        match hosts {
            0 => return Err(HeadError::bad("missing Host")),
            1 => {}
            _ => return Err(HeadError::bad("duplicate Host")),
        }
    } else if hosts > 1 {
        return Err(HeadError::bad("duplicate Host"));
    }

    let framing = if transfer_encoding {
        if version == Version::HTTP_10 {
            return Err(HeadError::bad("Transfer-Encoding in an HTTP/1.0 request"));
        }
        if content_length.is_some() {
            return Err(HeadError::bad("both Content-Length and Transfer-Encoding"));
        }
        match chunked {
            TeState::Chunked => BodyFraming::Chunked,
            TeState::Empty => return Err(HeadError::bad("empty Transfer-Encoding")),
            TeState::ChunkedNotLast => {
                return Err(HeadError::bad("chunked is not the final transfer coding"));
            }
            TeState::Unsupported => {
                return Err(HeadError::new(
                    StatusCode::NOT_IMPLEMENTED,
                    "unsupported transfer coding",
                ));
            }
        }
    } else {
        match content_length {
            None | Some(0) => BodyFraming::None,
            Some(n) => BodyFraming::Length(n),
        }
    };

    let keep_alive = if version == Version::HTTP_11 {
        !close
    } else {
        keep_alive_token && !close
    };
    let expect_continue =
        expect_continue && version == Version::HTTP_11 && framing != BodyFraming::None;

    Ok(Some(RequestHead {
        method,
        uri,
        version,
        headers: map,
        framing,
        keep_alive,
        expect_continue,
        len,
    }))
}

/// Offset of `part` (a sub-slice of `buf`) in `buf`.
fn offset_in(buf: &[u8], part: &[u8]) -> usize {
    (part.as_ptr() as usize).saturating_sub(buf.as_ptr() as usize)
}

/// The error for an httparse error, or `None` if more input may still make
/// the head valid (or a different error).
fn map_httparse_error(e: httparse::Error, buf: &[u8], limits: &Limits) -> Option<HeadError> {
    Some(match e {
        httparse::Error::Version => {
            // A well-formed `HTTP/x.y` we do not speak is 505; anything else
            // is 400. Until the line ends it may still become either.
            let line_end = buf.iter().position(|&b| b == b'\n');
            let line = &buf[..line_end.unwrap_or(buf.len())];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let version = line.rsplit(|&b| b == b' ').next().unwrap_or(b"");
            const SHAPE: &[u8; 8] = b"HTTP/0.0";
            // `method SP target SP version`: a line with more spaces (a
            // space inside the target) is malformed, whatever its last
            // word; judging by the last word alone answered 505 for the
            // whole line but 400 for a prefix of it.
            let fits = line.iter().filter(|&&b| b == b' ').count() <= 2
                && version.len() <= SHAPE.len()
                && version.iter().zip(SHAPE).all(|(&b, &s)| {
                    if s == b'0' {
                        b.is_ascii_digit()
                    } else {
                        b == s
                    }
                });
            // A version that cannot become valid is an error at its first
            // bad byte, whatever follows; only one that still could is
            // judged by the line's length (so that every split of the
            // input gets the same answer).
            if !fits {
                return Some(HeadError::bad("invalid HTTP version"));
            }
            if line.len() > limits.request_line {
                return Some(HeadError::new(
                    StatusCode::URI_TOO_LONG,
                    "request line too long",
                ));
            }
            match line_end {
                None => return None,
                Some(_) if version.len() == SHAPE.len() => HeadError::new(
                    StatusCode::HTTP_VERSION_NOT_SUPPORTED,
                    "unsupported HTTP version",
                ),
                Some(_) => HeadError::bad("invalid HTTP version"),
            }
        }
        httparse::Error::TooManyHeaders => HeadError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "too many header fields",
        ),
        httparse::Error::HeaderName => {
            HeadError::bad("invalid header field (bad name, whitespace before colon or obs-fold)")
        }
        httparse::Error::HeaderValue => HeadError::bad("invalid header value (CR, LF or NUL)"),
        httparse::Error::NewLine => HeadError::bad("invalid line terminator"),
        httparse::Error::Token => HeadError::bad("invalid request line"),
        _ => HeadError::bad("malformed request"),
    })
}

fn parse_target(method: &Method, target: &str) -> Result<Uri, HeadError> {
    let bytes = target.as_bytes();
    let first = bytes.first().copied().unwrap_or(b' ');
    if first == b'*' {
        if bytes.len() == 1 && method == Method::OPTIONS {
            return Ok(Uri::from_static("*"));
        }
        return Err(HeadError::bad("asterisk-form target outside OPTIONS"));
    }
    let uri = Uri::try_from(bytes).map_err(|_| HeadError::bad("invalid request target"))?;
    if first == b'/' {
        return Ok(uri);
    }
    if method == Method::CONNECT {
        // authority-form: host:port only.
        if uri.authority().is_some() && uri.scheme().is_none() && uri.path_and_query().is_none() {
            return Ok(uri);
        }
        return Err(HeadError::bad("CONNECT needs an authority-form target"));
    }
    // absolute-form
    match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https") => {}
        _ => return Err(HeadError::bad("invalid request target")),
    }
    if uri.authority().is_none() {
        return Err(HeadError::bad("invalid request target"));
    }
    Ok(uri)
}

/// `Content-Length = 1*DIGIT`, or a list of identical values (RFC 9110 §8.6).
fn parse_content_length(v: &[u8]) -> Result<u64, HeadError> {
    const BAD: HeadError = HeadError::bad("invalid Content-Length");
    let mut result: Option<u64> = None;
    for part in v.split(|&b| b == b',') {
        let part = trim_ows(part);
        if part.is_empty() || part.len() > 19 {
            return Err(if part.len() > 19 && part.iter().all(u8::is_ascii_digit) {
                HeadError::bad("Content-Length overflow")
            } else {
                BAD
            });
        }
        let mut n: u64 = 0;
        for &b in part {
            if !b.is_ascii_digit() {
                return Err(BAD);
            }
            n = n * 10 + u64::from(b - b'0');
        }
        if result.is_some_and(|r| r != n) {
            return Err(HeadError::bad("conflicting Content-Length values"));
        }
        result = Some(n);
    }
    result.ok_or(BAD)
}

/// What the `Transfer-Encoding` list seen so far amounts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TeState {
    /// No coding yet.
    Empty,
    /// Exactly one coding, `chunked`, and it is last.
    Chunked,
    /// `chunked` followed by something: always 400.
    ChunkedNotLast,
    /// A coding other than chunked (gzip, ...), with chunked not misplaced: 501.
    Unsupported,
}

fn parse_transfer_encoding(v: &[u8], mut st: TeState) -> Result<TeState, HeadError> {
    for part in v.split(|&b| b == b',') {
        let part = trim_ows(part);
        if part.is_empty() || !part.iter().all(|&b| is_tchar(b)) {
            return Err(HeadError::bad("invalid Transfer-Encoding"));
        }
        let is_chunked = part.eq_ignore_ascii_case(b"chunked");
        st = match (st, is_chunked) {
            (TeState::Empty, true) => TeState::Chunked,
            (TeState::Empty, false) => TeState::Unsupported,
            // chunked twice, or chunked then another coding.
            (TeState::Chunked, _) => TeState::ChunkedNotLast,
            (TeState::ChunkedNotLast, _) => TeState::ChunkedNotLast,
            (TeState::Unsupported, _) => TeState::Unsupported,
        };
    }
    Ok(st)
}

/// Comma-separated tokens with optional whitespace, empty elements skipped.
fn list_tokens(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',')
        .map(trim_ows)
        .filter(|t| !t.is_empty())
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// RFC 9110 token characters.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `Host = uri-host [ ":" port ]`: reg-name, IPv4 or an IP-literal in
/// brackets; no userinfo, path or whitespace. Empty is allowed (RFC 9112 §3.2).
fn valid_host(v: &[u8]) -> bool {
    const OK: [bool; 256] = {
        let mut t = [false; 256];
        let mut i = 0;
        while i < 256 {
            t[i] = (i as u8).is_ascii_alphanumeric();
            i += 1;
        }
        let extra = b"-._~!$&'()*+,;=:[]%";
        let mut j = 0;
        while j < extra.len() {
            t[extra[j] as usize] = true;
            j += 1;
        }
        t
    };
    v.iter().all(|&b| OK[usize::from(b)])
}

/// Number of LFs minus number of CRs, counted in small blocks so the
/// compiler can use byte-wide vector lanes.
fn lf_minus_cr(bytes: &[u8]) -> isize {
    bytes
        .chunks(127)
        .map(|c| {
            let d = c.iter().fold(0i8, |a, &b| {
                a.wrapping_add(i8::from(b == b'\n') - i8::from(b == b'\r'))
            });
            isize::from(d)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &[u8]) -> Result<Option<RequestHead>, HeadError> {
        parse_request_head(s, &Limits::default())
    }

    fn status(s: &[u8]) -> u16 {
        parse(s).unwrap_err().status().as_u16()
    }

    #[test]
    fn simple_get() {
        let h = parse(b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.method, Method::GET);
        assert_eq!(h.uri.path(), "/a");
        assert_eq!(h.uri.query(), Some("b=1"));
        assert_eq!(h.headers["x-a"], "1");
        assert_eq!(h.framing, BodyFraming::None);
        assert!(h.keep_alive);
    }

    #[test]
    fn content_length_rules() {
        let base = |cl: &str| format!("POST / HTTP/1.1\r\nHost: x\r\n{cl}\r\n\r\n");
        for bad in [
            "Content-Length: +5",
            "Content-Length: -5",
            "Content-Length: 0x5",
            "Content-Length: 5a",
            "Content-Length:",
            "Content-Length: 5, 6",
            "Content-Length: 5\r\nContent-Length: 6",
            "Content-Length: 99999999999999999999999",
            "Content-Length: 1 2",
        ] {
            assert_eq!(status(base(bad).as_bytes()), 400, "{bad}");
        }
        for (ok, n) in [
            ("Content-Length: 5", 5),
            ("Content-Length: 5, 5", 5),
            ("Content-Length: 5\r\nContent-Length: 5", 5),
        ] {
            let h = parse(base(ok).as_bytes()).unwrap().unwrap();
            assert_eq!(h.framing, BodyFraming::Length(n), "{ok}");
        }
    }

    #[test]
    fn transfer_encoding_rules() {
        let base = |te: &str| format!("POST / HTTP/1.1\r\nHost: x\r\n{te}\r\n\r\n");
        assert_eq!(
            parse(base("Transfer-Encoding: chunked").as_bytes())
                .unwrap()
                .unwrap()
                .framing,
            BodyFraming::Chunked
        );
        assert_eq!(
            parse(base("Transfer-Encoding: CHUNKED").as_bytes())
                .unwrap()
                .unwrap()
                .framing,
            BodyFraming::Chunked
        );
        for (te, st) in [
            ("Transfer-Encoding: gzip", 501),
            ("Transfer-Encoding: gzip, chunked", 501),
            ("Transfer-Encoding: chunked, gzip", 400),
            ("Transfer-Encoding: chunked, chunked", 400),
            (
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
                400,
            ),
            ("Transfer-Encoding: ,chunked", 400),
            ("Transfer-Encoding: chunked;q=1", 400),
            ("Transfer-Encoding:", 400),
            ("Transfer-Encoding: chunked\r\nContent-Length: 3", 400),
        ] {
            assert_eq!(status(base(te).as_bytes()), st, "{te}");
        }
        assert_eq!(
            status(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            400
        );
    }

    #[test]
    fn host_rules() {
        assert_eq!(status(b"GET / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"), 400);
        assert!(parse(b"GET / HTTP/1.0\r\n\r\n").unwrap().is_some());
        assert!(
            parse(b"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n")
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn field_syntax() {
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost : a\r\n\r\n"), 400);
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n"),
            400
        );
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\nHost: a\n\n"), 400);
    }

    #[test]
    fn versions() {
        assert_eq!(status(b"GET / HTTP/2.0\r\nHost: a\r\n\r\n"), 505);
        assert_eq!(status(b"GET / HTTP/1.2\r\nHost: a\r\n\r\n"), 505);
        assert_eq!(status(b"GET / HTTP/1.1x\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTPS/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET /\r\n\r\n"), 400);
    }

    /// Regression (found by the `request_head` and `connection` fuzz
    /// targets): an invalid byte beyond a limit gave 400 for the whole input
    /// but 414/431 for a prefix that ended at the limit.
    #[test]
    fn error_past_a_limit_is_the_limit_status_however_split() {
        let line = format!("GET /{}\x01 HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(9000));
        let head = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nX: {}\x01\r\n\r\n",
            "v".repeat(70_000)
        );
        for (req, want) in [(line, 414), (head, 431)] {
            let req = req.as_bytes();
            assert_eq!(status(req), want);
            for k in [8192, 8193, 8194, 65_536, 65_537, 65_538, req.len() - 1] {
                match parse(&req[..k.min(req.len())]) {
                    Ok(None) => {}
                    Ok(Some(_)) => panic!("accepted {k} bytes"),
                    Err(e) => assert_eq!(e.status(), want, "prefix of {k} bytes"),
                }
            }
        }
    }

    /// Regression (found by the `request_head` fuzz target): a version
    /// that is wrong from its second byte on a line longer than the limit
    /// gave 414 for the whole input but 400 for a short prefix.
    #[test]
    fn bad_version_on_a_long_line_is_400_however_split() {
        let limits = Limits::default().request_line(256);
        let req = format!("GET /a H{}TTP/1.0\r\nHost: a\r\n\r\n", "\u{d3}".repeat(200));
        let req = req.as_bytes();
        for k in 1..=req.len() {
            match parse_request_head(&req[..k], &limits) {
                Ok(None) => {}
                Ok(Some(_)) => panic!("accepted {k} bytes"),
                Err(e) => assert_eq!(e.status(), 400, "prefix of {k} bytes"),
            }
        }
    }

    /// Regression: a space inside the target gave 505 for the whole line
    /// (its last word looks like a version) but 400 for a prefix of it.
    #[test]
    fn space_in_target_is_400_however_split() {
        let req = b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n";
        for k in 1..=req.len() {
            match parse(&req[..k]) {
                Ok(None) => {}
                Ok(Some(_)) => panic!("accepted {k} bytes"),
                Err(e) => assert_eq!(e.status(), 400, "prefix of {k} bytes"),
            }
        }
        assert_eq!(status(req), 400);
    }

    #[test]
    fn limits() {
        let long = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(9000));
        assert_eq!(status(long.as_bytes()), 414);
        // Partial but already too long.
        assert_eq!(status(&long.as_bytes()[..8500]), 414);
        let many: String = (0..101).map(|i| format!("X-{i}: v\r\n")).collect();
        let req = format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n");
        assert_eq!(status(req.as_bytes()), 431);
        let big = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
            "v".repeat(70_000)
        );
        assert_eq!(status(big.as_bytes()), 431);
        assert_eq!(status(&big.as_bytes()[..66_000]), 431);
    }

    #[test]
    fn targets() {
        assert!(
            parse(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n")
                .unwrap()
                .is_some()
        );
        assert_eq!(status(b"GET * HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert!(
            parse(b"GET http://a/b HTTP/1.1\r\nHost: a\r\n\r\n")
                .unwrap()
                .is_some()
        );
        assert_eq!(status(b"GET a/b HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert!(
            parse(b"CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n")
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn connection_and_expect() {
        let h = parse(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(h.keep_alive);
        let h = parse(b"GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!h.keep_alive);
        let h = parse(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, Close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!h.keep_alive);
        let h = parse(
            b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert!(h.expect_continue);
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nHost: a\r\nExpect: teapot\r\n\r\n"),
            417
        );
    }
}
