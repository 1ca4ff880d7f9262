//! HTTP/1.1 head parsing and response serialisation throughput.
//!
//! - `parse/small`: `httparse` on a minimal `GET / HTTP/1.1` head (what `wrk`
//!   sends by default).
//! - `parse/typical`: `httparse` on a browser-like head (11 headers, ~480 bytes).
//! - `serialize/hello`: a hand-written serialiser of the "hello" response
//!   (status line, `Date`, `Content-Type`, `Content-Length`, body) into a
//!   reused buffer, the way a server writes it.
//!
//! Throughput is in bytes of head (or response). hyper's parser and
//! serialiser are internal to its connection state machine and cannot be
//! called on their own; stead-http's parser will be added here once it lands.

use std::hint::black_box;
use std::io::Write;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

mod common;

const SMALL: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n";

const TYPICAL: &[u8] = b"GET /api/v1/users/1234?fields=name,email HTTP/1.1\r\n\
Host: example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Connection: keep-alive\r\n\
Cookie: session=3f7a9c2e5b1d4e6f8a0b; theme=dark\r\n\
Upgrade-Insecure-Requests: 1\r\n\
Sec-Fetch-Dest: document\r\n\
Sec-Fetch-Mode: navigate\r\n\
Cache-Control: max-age=0\r\n\r\n";

/// Parse a complete head; returns (head length, header count).
fn parse(buf: &[u8]) -> (usize, usize) {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => (n, req.headers.len()),
        other => panic!("benchmark input must be a complete head: {other:?}"),
    }
}

/// Serialise the hello response into `out` (cleared first).
fn hello_response(out: &mut Vec<u8>, date: &[u8; 29], body: &[u8]) {
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 200 OK\r\ndate: ");
    out.extend_from_slice(date);
    out.extend_from_slice(b"\r\ncontent-type: text/plain\r\ncontent-length: ");
    let mut len = [0u8; 20];
    let mut cursor = &mut len[..];
    write!(cursor, "{}", body.len()).expect("20 bytes hold any usize");
    let digits = 20 - cursor.len();
    out.extend_from_slice(&len[..digits]);
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body);
}

fn http(c: &mut Criterion) {
    assert_eq!(parse(SMALL), (SMALL.len(), 1));
    assert_eq!(parse(TYPICAL), (TYPICAL.len(), 11));

    let mut g = c.benchmark_group("http_parse");
    for (name, input) in [("parse/small", SMALL), ("parse/typical", TYPICAL)] {
        g.throughput(Throughput::Bytes(input.len() as u64));
        g.bench_function(name, |b| b.iter(|| parse(black_box(input))));
    }

    // stead-http's strict parser (httparse plus the framing, Host and
    // smuggling checks) into `http` types, as the server runs it.
    let limits = stead_http::Limits::default();
    for (name, input) in [
        ("stead_parse/small", SMALL),
        ("stead_parse/typical", TYPICAL),
    ] {
        let head = stead_http::parse_request_head(input, &limits)
            .expect("valid")
            .expect("complete");
        assert_eq!(head.len, input.len());
        g.throughput(Throughput::Bytes(input.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                stead_http::parse_request_head(black_box(input), &limits).map(|h| h.map(|h| h.len))
            })
        });
    }

    // A cached date, as servers keep one per second.
    let date = *b"Sun, 06 Nov 1994 08:49:37 GMT";
    let body = b"Hello, World!";
    let mut out = Vec::with_capacity(256);
    hello_response(&mut out, &date, body);
    assert!(out.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert!(out.ends_with(b"content-length: 13\r\n\r\nHello, World!"));
    g.throughput(Throughput::Bytes(out.len() as u64));
    g.bench_function("serialize/hello", |b| {
        b.iter(|| {
            hello_response(&mut out, black_box(&date), black_box(body));
            out.len()
        })
    });
    // stead-http's response writer: head (with a content-type header) + body.
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    g.bench_function("stead_serialize/hello", |b| {
        b.iter(|| {
            out.clear();
            stead_http::write_response_head(
                &mut out,
                http::StatusCode::OK,
                black_box(&headers),
                stead_http::ResponseFraming::Length(body.len() as u64),
                stead_http::ConnectionHeader::Omit,
                black_box(&date),
            );
            out.extend_from_slice(body);
            out.len()
        })
    });

    // The whole HTTP layer per request, without syscalls: 100 keep-alive
    // requests (loadcmp's request, one per read) through stead-http's
    // connection loop in memory, routed to the hello handler, answered,
    // serialised. What a request costs in either server mode besides its
    // `recv`, `send` and wait.
    const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: loadcmp\r\n\r\n";
    let app = stead_http::Router::new().get("/", |_req, _cancel| {
        stead_http::with_content_type(
            "text/plain",
            stead_http::ResponseBody::from_static(b"Hello, World!"),
        )
    });
    let input = [REQUEST; 100];
    let answered = stead_http::simulate(&input, limits, &app);
    assert_eq!(
        answered
            .windows(13)
            .filter(|w| w == b"Hello, World!")
            .count(),
        100
    );
    g.throughput(Throughput::Elements(input.len() as u64));
    g.bench_function("serve/hello_x100", |b| {
        b.iter(|| stead_http::simulate(black_box(&input), limits, &app).len())
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = http
}
criterion_main!(benches);
