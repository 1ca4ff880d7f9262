//! Property: splitting the input at any point yields the same parse, the
//! same decoded body, and the same bytes out of the whole connection.

use http::Request;
use proptest::prelude::*;
use stead_core::Cancel;
use stead_http::{Body, ChunkedDecoder, Limits, parse_request_head, simulate, simulate_event};

fn small_limits() -> Limits {
    Limits::default()
        .request_line(200)
        .head(600)
        .headers(12)
        .body(300)
        .chunk_extensions(60)
        .trailers(60)
        .drain(100)
}

fn chunked(body: &[u8], sizes: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = body;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes.get(i).copied().unwrap_or(7).clamp(1, rest.len());
        out.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        out.extend_from_slice(&rest[..n]);
        out.extend_from_slice(b"\r\n");
        rest = &rest[n..];
        i += 1;
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// Requests built from plausible and hostile pieces.
fn request() -> impl Strategy<Value = Vec<u8>> {
    let method = prop::sample::select(vec!["GET", "POST", "HEAD", "PUT", "G(T", "OPTIONS"]);
    let target = prop::sample::select(vec!["/", "/echo", "/a?b=c", "*", "http://x/echo", "nope"]);
    let version = prop::sample::select(vec![
        "HTTP/1.1",
        "HTTP/1.1",
        "HTTP/1.0",
        "HTTP/2.0",
        "HTTP/1.1x",
    ]);
    let header = prop::sample::select(vec![
        "Host: x",
        "Host: x",
        "Host: y",
        "X-A: v",
        "Connection: close",
        "Connection: keep-alive",
        "Expect: 100-continue",
        "Bad : v",
        " folded",
        "X-B: a\rb",
        "Content-Length: +1",
        "Transfer-Encoding: gzip",
        "X-N: \0",
    ]);
    let headers = prop::collection::vec(header, 0..5);
    let body = prop::collection::vec(any::<u8>(), 0..40);
    let framing = 0..4u8;
    let sizes = prop::collection::vec(1..10usize, 0..5);
    (method, target, version, headers, body, framing, sizes).prop_map(
        |(m, t, v, hs, body, framing, sizes)| {
            let mut out = format!("{m} {t} {v}\r\n").into_bytes();
            for h in hs {
                out.extend_from_slice(h.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            match framing {
                0 => out.extend_from_slice(b"\r\n"),
                1 => {
                    out.extend_from_slice(
                        format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes(),
                    );
                    out.extend_from_slice(&body);
                }
                2 => {
                    out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                    out.extend_from_slice(&chunked(&body, &sizes));
                }
                _ => {
                    // Garbage after the head.
                    out.extend_from_slice(b"\r\n");
                    out.extend_from_slice(&body);
                }
            }
            out
        },
    )
}

fn input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => prop::collection::vec(request(), 1..4).prop_map(|v| v.concat()),
        1 => prop::collection::vec(any::<u8>(), 0..200),
    ]
}

/// Split `input` at the given points (taken modulo its length).
fn split<'a>(input: &'a [u8], points: &[usize]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = points
        .iter()
        .map(|p| {
            if input.is_empty() {
                0
            } else {
                p % (input.len() + 1)
            }
        })
        .collect();
    cuts.sort_unstable();
    let mut out = Vec::new();
    let mut last = 0;
    for c in cuts {
        out.push(&input[last..c]);
        last = c;
    }
    out.push(&input[last..]);
    out
}

fn handler(mut req: Request<Body>, _: &Cancel) -> Result<String, std::io::Error> {
    let body = req.body_mut().read_all()?;
    Ok(format!(
        "{} {} {:?} {}",
        req.method(),
        req.uri(),
        req.headers().get("x-a"),
        String::from_utf8_lossy(&body)
    ))
}

/// Responses with the `Date` value blanked (it changes every second).
fn normalise(out: Vec<u8>) -> Vec<u8> {
    let mut out = out;
    let mut i = 0;
    while let Some(p) = out[i..].windows(6).position(|w| w == b"date: ") {
        let start = i + p + 6;
        for b in &mut out[start..start + 29] {
            *b = b'_';
        }
        i = start + 29;
    }
    out
}

fn run(pieces: &[&[u8]]) -> Vec<u8> {
    normalise(simulate(pieces, small_limits(), &handler))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn head_parse_is_the_same_for_every_prefix(input in input()) {
        let limits = small_limits();
        let full = parse_request_head(&input, &limits);
        for k in 0..=input.len() {
            match parse_request_head(&input[..k], &limits) {
                Ok(None) => {}
                Ok(Some(head)) => {
                    // Complete on a prefix: the same head as on the whole input.
                    let f = full.as_ref().expect("prefix complete but whole input an error");
                    let f = f.as_ref().expect("prefix complete but whole input partial");
                    prop_assert_eq!(head.len, f.len);
                    prop_assert_eq!(&head.method, &f.method);
                    prop_assert_eq!(&head.uri, &f.uri);
                    prop_assert_eq!(&head.headers, &f.headers);
                    prop_assert_eq!(head.framing, f.framing);
                }
                Err(e) => prop_assert_eq!(Err(e), full.as_ref().map(|_| ()).map_err(|e| *e)),
            }
        }
    }

    #[test]
    fn connection_output_is_the_same_however_input_is_split(
        input in input(),
        points in prop::collection::vec(any::<usize>(), 0..6),
    ) {
        let whole = run(&[&input]);
        let pieces = split(&input, &points);
        prop_assert_eq!(&run(&pieces), &whole, "split into {:?}", pieces);
    }

    #[test]
    fn event_mode_output_is_the_same_as_thread_mode(
        input in input(),
        points in prop::collection::vec(any::<usize>(), 0..6),
    ) {
        // Event mode parks between pieces (partial heads and small bodies
        // wait in the session) and still answers exactly as thread mode.
        let pieces = split(&input, &points);
        let event = normalise(simulate_event(&pieces, small_limits(), &handler));
        prop_assert_eq!(&event, &run(&pieces), "split into {:?}", pieces);
    }

    #[test]
    fn chunked_decoding_is_the_same_however_input_is_split(
        body in prop::collection::vec(any::<u8>(), 0..100),
        sizes in prop::collection::vec(1..20usize, 0..8),
        noise in prop::collection::vec((any::<usize>(), any::<u8>()), 0..2),
        points in prop::collection::vec(any::<usize>(), 0..6),
        max in 1..16usize,
    ) {
        let mut input = chunked(&body, &sizes);
        let clean = noise.is_empty();
        for (at, b) in noise {
            let at = at % input.len();
            input[at] = b;
        }
        let decode = |pieces: &[&[u8]], max: usize| -> Result<(Vec<u8>, usize), stead_http::ChunkError> {
            let mut dec = ChunkedDecoder::new(60, 60);
            let mut out = Vec::new();
            let mut used = 0;
            for piece in pieces {
                let mut p: &[u8] = piece;
                while !p.is_empty() && !dec.is_done() {
                    let step = dec.decode(p, max)?;
                    out.extend_from_slice(&p[step.data.clone()]);
                    used += step.consumed;
                    p = &p[step.consumed..];
                }
            }
            Ok((out, if dec.is_done() { used } else { usize::MAX }))
        };
        let whole = decode(&[&input], usize::MAX);
        let pieces = split(&input, &points);
        prop_assert_eq!(decode(&pieces, max), whole.clone());
        if clean {
            prop_assert_eq!(whole.unwrap().0, body);
        }
    }
}

#[test]
fn byte_at_a_time_equals_whole() {
    let input = b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n\
        3\r\nabc\r\n2;e=1\r\nde\r\n0\r\nT: v\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n\
        POST /c HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nxyzGET /d HTTP/1.1\r\n\r\n";
    let whole = run(&[input]);
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(run(&bytes), whole);
    let text = String::from_utf8(whole).unwrap();
    assert!(text.contains("abcde") && text.contains("/b") && text.contains("xyz"));
    assert!(text.ends_with("missing Host\n"), "{text}");
}
