//! Slow request bodies (R-U-Dead-Yet): a body that arrives slower than the
//! minimum data rate gets 408 and the connection closes, in both modes and
//! for buffered (small) and streamed (large) bodies; in event mode, small
//! bodies still arriving hold no thread and run no handler.

mod util;

use std::io::Write;
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::Request;
use stead_core::Cancel;
use stead_http::{Body, HttpServerHandle, Mode, Timeouts};
use util::*;

/// A short grace so the tests are quick; the rate is what is tested.
const GRACE: Duration = Duration::from_millis(200);

fn server(mode: Mode, entered: Arc<AtomicU64>) -> HttpServerHandle {
    server_with_grace(mode, entered, GRACE)
}

fn server_with_grace(mode: Mode, entered: Arc<AtomicU64>, grace: Duration) -> HttpServerHandle {
    start_with(
        mode,
        move |b| b.timeouts(Timeouts::default().body_min_rate(1000, grace)),
        move |req: Request<Body>, c: &Cancel| {
            entered.fetch_add(1, Ordering::SeqCst);
            echo(req, c)
        },
    )
}

/// Send a head declaring `len` body bytes and only `sent` of them, then
/// stall: the answer is 408 and the connection closes.
fn stalled_body_gets_408(mode: Mode, len: usize, sent: usize) {
    let h = server(mode, Arc::default());
    let mut s = connect(h.local_addr());
    let start = Instant::now();
    s.write_all(
        format!("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {len}\r\n\r\n").as_bytes(),
    )
    .unwrap();
    s.write_all(&vec![b'a'; sent]).unwrap();
    let out = read_to_close(&mut s);
    let took = start.elapsed();
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 408 "), "{text}");
    assert!(text.contains("slow"), "{text}");
    // Not before the grace period, and long before the 30 s idle timeout.
    assert!(took >= GRACE, "took {took:?}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    stop(h);
}

fn stalled_small_body_gets_408(mode: Mode) {
    stalled_body_gets_408(mode, 1000, 10);
}

fn stalled_large_body_gets_408(mode: Mode) {
    stalled_body_gets_408(mode, 1 << 20, 1000);
}

/// A body that keeps up with the rate is served, however it is split.
fn body_in_pieces_is_served(mode: Mode) {
    let h = server(mode, Arc::default());
    let mut s = connect(h.local_addr());
    let body: Vec<u8> = (0..20_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 20000\r\n\r\n")
        .unwrap();
    for piece in body.chunks(1500) {
        s.write_all(piece).unwrap();
    }
    let mut pending = Vec::new();
    let r = read_response(&mut s, &mut pending, false);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, body);
    // Chunked, split inside the framing.
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r")
        .unwrap();
    s.write_all(b"\nhello\r\n0\r\n").unwrap();
    s.write_all(b"\r\n").unwrap();
    let r = read_response(&mut s, &mut pending, false);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"hello");
    stop(h);
}

both_modes!(
    stalled_small_body_gets_408,
    stalled_large_body_gets_408,
    body_in_pieces_is_served,
);

/// Event mode: 50 clients stalled mid-body (small bodies) run no handler and
/// hold no thread; a normal request is answered meanwhile.
#[test]
fn event_mode_small_slow_bodies_hold_no_thread() {
    let entered = Arc::new(AtomicU64::new(0));
    // A longer grace: the probe must be answered before the stalls expire,
    // even on a loaded machine.
    let h = server_with_grace(Mode::Event, entered.clone(), Duration::from_secs(2));
    let slow: Vec<TcpStream> = (0..50)
        .map(|_| {
            let mut s = connect(h.local_addr());
            s.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
                .unwrap();
            s
        })
        .collect();
    let r = one_and_close(
        h.local_addr(),
        b"GET /probe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        entered.load(Ordering::SeqCst),
        1,
        "a handler ran for a partial body"
    );
    let ev = h.event_stats().unwrap();
    assert_eq!(ev.threads, 2, "{ev:?}");
    assert_eq!(ev.handoffs_blocking, 0, "{ev:?}");
    // Each gets its 408 once it falls behind the rate: its handler runs
    // then, and its read of the missing body fails at once.
    for mut s in slow {
        let out = read_to_close(&mut s);
        assert!(
            out.starts_with(b"HTTP/1.1 408 "),
            "{}",
            String::from_utf8_lossy(&out)
        );
    }
    assert_eq!(entered.load(Ordering::SeqCst), 51);
    stop(h);
}
