//! Shared helpers: start a server in a given mode, talk raw bytes to it,
//! parse responses with deadlines.
#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use http::Request;
use stead_core::Cancel;
use stead_http::{Body, Handler, HttpServer, HttpServerBuilder, HttpServerHandle, Mode};

/// Generous deadline for anything that should be quick.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// Run `$body` (a fn taking `Mode`) as one test per mode.
#[macro_export]
macro_rules! both_modes {
    ($($name:ident),* $(,)?) => {
        mod threads {
            $( #[test] fn $name() { super::$name(stead_http::Mode::Threads) } )*
        }
        mod event {
            $( #[test] fn $name() { super::$name(stead_http::Mode::Event) } )*
        }
    };
}

/// A server in `mode` on 127.0.0.1:0, configured by `cfg`.
pub fn start_with(
    mode: Mode,
    cfg: impl FnOnce(HttpServerBuilder) -> HttpServerBuilder,
    handler: impl Handler,
) -> HttpServerHandle {
    let b = HttpServer::builder().mode(mode).workers(2);
    cfg(b).bind("127.0.0.1:0").expect("bind").serve(handler)
}

/// A server in `mode` with default settings.
pub fn start(mode: Mode, handler: impl Handler) -> HttpServerHandle {
    start_with(mode, |b| b, handler)
}

/// A handler that answers with the request path, reading the body if the
/// path is `/echo` (then it answers with the body).
pub fn echo_server(mode: Mode) -> HttpServerHandle {
    start(mode, echo)
}

pub fn echo(mut req: Request<Body>, _: &Cancel) -> Result<Vec<u8>, io::Error> {
    if req.uri().path() == "/echo" {
        req.body_mut().read_all()
    } else {
        Ok(req.uri().path().as_bytes().to_vec())
    }
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Send `req` on a new connection and read until the server closes it (or
/// the deadline). Returns everything received.
pub fn raw(addr: SocketAddr, req: &[u8]) -> Vec<u8> {
    let mut s = connect(addr);
    s.write_all(req).unwrap();
    read_to_close(&mut s)
}

/// Read until EOF (or a reset after the response), with a deadline.
pub fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let start = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        assert!(
            start.elapsed() < DEADLINE,
            "server did not close the connection"
        );
        match s.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return out,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => panic!("read failed after {:?}: {e}", start.elapsed()),
        }
    }
}

/// A parsed response.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn body_str(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }

    pub fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// Parse every response in `bytes` (bodies framed by Content-Length or
/// chunked; `head` marks which are answers to HEAD).
pub fn parse_all(mut bytes: &[u8]) -> Vec<Resp> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (r, used) = parse_one(bytes, false).expect("incomplete response");
        out.push(r);
        bytes = &bytes[used..];
    }
    out
}

/// Parse one response from the start of `bytes`: `None` if incomplete.
pub fn parse_one(bytes: &[u8], head: bool) -> Option<(Resp, usize)> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut r = httparse::Response::new(&mut headers);
    let n = match r.parse(bytes).expect("malformed response") {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return None,
    };
    let status = r.code.unwrap();
    let hs: Vec<(String, String)> = r
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let get = |name: &str| hs.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    let rest = &bytes[n..];
    if head || status == 204 || status == 304 || (100..200).contains(&status) {
        return Some((
            Resp {
                status,
                headers: hs,
                body: vec![],
            },
            n,
        ));
    }
    if let Some(len) = get("content-length") {
        let len: usize = len.parse().unwrap();
        if rest.len() < len {
            return None;
        }
        return Some((
            Resp {
                status,
                headers: hs,
                body: rest[..len].to_vec(),
            },
            n + len,
        ));
    }
    if get("transfer-encoding").is_some() {
        let mut dec = stead_http::ChunkedDecoder::new(1 << 20, 1 << 20);
        let mut body = Vec::new();
        let mut pos = 0;
        while !dec.is_done() {
            let step = dec
                .decode(&rest[pos..], usize::MAX)
                .expect("bad chunked response");
            body.extend_from_slice(&rest[pos..][step.data.clone()]);
            if step.consumed == 0 {
                return None;
            }
            pos += step.consumed;
        }
        return Some((
            Resp {
                status,
                headers: hs,
                body,
            },
            n + pos,
        ));
    }
    // Close-delimited.
    Some((
        Resp {
            status,
            headers: hs,
            body: rest.to_vec(),
        },
        bytes.len(),
    ))
}

/// Read one response from a keep-alive connection (`head`: for a HEAD request).
pub fn read_response(s: &mut TcpStream, pending: &mut Vec<u8>, head: bool) -> Resp {
    let start = Instant::now();
    let mut buf = [0u8; 16 * 1024];
    loop {
        if let Some((r, used)) = parse_one(pending, head) {
            pending.drain(..used);
            return r;
        }
        assert!(start.elapsed() < DEADLINE, "no complete response");
        let n = s.read(&mut buf).expect("read response");
        assert!(
            n > 0,
            "connection closed before a complete response: {:?}",
            String::from_utf8_lossy(pending)
        );
        pending.extend_from_slice(&buf[..n]);
    }
}

/// Send `req` and expect exactly one response and then a close; return it.
pub fn one_and_close(addr: SocketAddr, req: &[u8]) -> Resp {
    let bytes = raw(addr, req);
    let all = parse_all(&bytes);
    assert_eq!(
        all.len(),
        1,
        "expected one response, got {:?}",
        String::from_utf8_lossy(&bytes)
    );
    all.into_iter().next().unwrap()
}

/// Stop a test server, checking it shuts down cleanly.
pub fn stop(h: HttpServerHandle) {
    h.shutdown(Duration::from_secs(2));
}
