//! The whole connection state machine over an arbitrary byte stream, split
//! into reads at arbitrary points: never panics, only ever writes HTTP/1.1
//! responses, and writes the same bytes however the input is split, on
//! thread mode's path and on event mode's (parking between pieces).
#![no_main]

use http::Request;
use libfuzzer_sys::fuzz_target;
use stead_core::Cancel;
use stead_http::{Body, Limits, simulate, simulate_event};

fn handler(mut req: Request<Body>, _: &Cancel) -> Result<Vec<u8>, std::io::Error> {
    if req.uri().path().starts_with("/ignore") {
        return Ok(b"ignored".to_vec());
    }
    let mut out = req.uri().to_string().into_bytes();
    out.extend_from_slice(&req.body_mut().read_all()?);
    Ok(out)
}

/// Blank the `Date` values, which change with the clock.
fn normalise(mut out: Vec<u8>) -> Vec<u8> {
    let mut i = 0;
    while let Some(p) = out[i..].windows(6).position(|w| w == b"date: ") {
        let start = i + p + 6;
        out[start..start + 29].fill(b'_');
        i = start + 29;
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((cuts, data)) = data.split_first_chunk::<3>() else {
        return;
    };
    let limits = Limits::default()
        .request_line(256)
        .head(1024)
        .headers(16)
        .body(4096)
        .chunk_extensions(128)
        .trailers(128)
        .drain(512);
    let mut points: Vec<usize> = cuts.iter().map(|&c| usize::from(c) * data.len() / 256).collect();
    points.sort_unstable();
    let mut pieces = Vec::new();
    let mut last = 0;
    for p in points {
        pieces.push(&data[last..p]);
        last = p;
    }
    pieces.push(&data[last..]);
    let whole = normalise(simulate(&[data], limits, &handler));
    let split = normalise(simulate(&pieces, limits, &handler));
    assert!(whole.is_empty() || whole.starts_with(b"HTTP/1.1 "));
    assert_eq!(whole, split);
    let event = normalise(simulate_event(&pieces, limits, &handler));
    assert_eq!(whole, event);
});
