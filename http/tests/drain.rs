//! Graceful drain under load, in process, with exact accounting.
//!
//! Load threads make keep-alive requests in a loop (small and 256 KiB
//! responses) while long requests (1 s) are in flight; then the server is
//! shut down with a grace period. What is guaranteed, and checked:
//!
//! * every response a client received any byte of is complete (status line,
//!   headers, the whole body): nothing is cut mid-response;
//! * a connection ends only after a complete response, or before any byte
//!   of the response to the request the client had just sent (an idle
//!   keep-alive connection closed by the drain while the request was in
//!   flight; such a request was never handled: HTTP clients retry these);
//! * the handler ran exactly as many times as clients received complete
//!   responses: no request was handled and then lost (both modes);
//! * the long requests all complete (200) and say `Connection: close`;
//! * shutdown returns before the grace deadline with nothing cancelled.
//!
//! `examples/tests/drain_under_load.rs` does the same against the `hello`
//! binary with SIGTERM (counting on the client side only).

mod util;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::Request;
use stead_core::Cancel;
use stead_http::{Body, HttpServerHandle, Mode, ResponseBody};
use util::*;

const BIG: usize = 256 * 1024;

#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    /// Requests written in full.
    sent: u64,
    /// Complete responses received.
    completed: u64,
    /// Of those, with `Connection: close`.
    close_headers: u64,
    /// Connection closed (FIN or RST) before any byte of the response.
    closed_before_response: u64,
    /// Connection closed after part of a response: must stay 0.
    cut: u64,
    /// Responses that were complete but wrong: must stay 0.
    wrong: u64,
    /// Connects refused (the listener is closed): the client stops.
    refused: u64,
}

/// One load client: keep-alive requests until the server refuses
/// connections or `stop` is set.
fn client(addr: SocketAddr, id: u64, stop: &AtomicBool) -> Tally {
    let mut t = Tally::default();
    let mut conn: Option<TcpStream> = None;
    let mut n = 0u64;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        let s = match conn.as_mut() {
            Some(s) => s,
            None => match TcpStream::connect(addr) {
                Ok(s) => {
                    s.set_read_timeout(Some(DEADLINE)).unwrap();
                    conn.insert(s)
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    t.refused += 1;
                    break;
                }
                Err(e) => panic!("connect: {e}"),
            },
        };
        n += 1;
        let big = (n + id).is_multiple_of(3);
        let path = if big { "/big" } else { "/" };
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
        if s.write_all(req.as_bytes()).is_err() {
            // Not sent (the server had closed): not counted.
            conn = None;
            continue;
        }
        t.sent += 1;
        let mut got = Vec::new();
        let mut buf = [0u8; 64 * 1024];
        let resp = loop {
            if let Some((r, used)) = parse_one(&got, false) {
                assert_eq!(used, got.len(), "bytes beyond the response");
                break Some(r);
            }
            match s.read(&mut buf) {
                Ok(0) => break None,
                Ok(k) => got.extend_from_slice(&buf[..k]),
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break None,
                Err(e) => panic!("read: {e} after {} bytes", got.len()),
            }
        };
        match resp {
            None if got.is_empty() => {
                t.closed_before_response += 1;
                conn = None;
            }
            None => {
                t.cut += 1;
                conn = None;
            }
            Some(r) => {
                t.completed += 1;
                let want = if big { BIG } else { 13 };
                if r.status != 200 || r.body.len() != want {
                    t.wrong += 1;
                }
                if r.closes() {
                    t.close_headers += 1;
                    conn = None;
                }
            }
        }
    }
    t
}

fn drain_under_load(mode: Mode) {
    let calls = Arc::new(AtomicU64::new(0));
    let sleeping = Arc::new(AtomicU64::new(0));
    let (c, z) = (calls.clone(), sleeping.clone());
    let h = start(mode, move |req: Request<Body>, cancel: &Cancel| {
        match req.uri().path() {
            "/sleep" => {
                z.fetch_add(1, Ordering::SeqCst);
                let r = cancel.sleep(Duration::from_millis(1000));
                z.fetch_sub(1, Ordering::SeqCst);
                match r {
                    Ok(()) => ResponseBody::from_static(b"slept"),
                    Err(_) => ResponseBody::from_static(b"cut short"),
                }
            }
            "/big" => {
                c.fetch_add(1, Ordering::SeqCst);
                ResponseBody::from(vec![b'b'; BIG])
            }
            _ => {
                c.fetch_add(1, Ordering::SeqCst);
                ResponseBody::from_static(b"Hello, World!")
            }
        }
    });
    let addr = h.local_addr();

    // Long requests in flight.
    let mut sleepers: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut s = connect(addr);
            s.write_all(b"GET /sleep HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            s
        })
        .collect();
    let stop = AtomicBool::new(false);
    let grace = Duration::from_secs(5);
    let (tallies, report, took) = std::thread::scope(|sc| {
        let clients: Vec<_> = (0..8)
            .map(|id| {
                let stop = &stop;
                sc.spawn(move || client(addr, id, stop))
            })
            .collect();
        // Load running, sleeps in progress: drain.
        let start = Instant::now();
        while (sleeping.load(Ordering::SeqCst) < 4 || calls.load(Ordering::SeqCst) < 2000)
            && start.elapsed() < DEADLINE
        {
            std::thread::sleep(Duration::from_millis(2)); // polling a counter
        }
        assert_eq!(
            sleeping.load(Ordering::SeqCst),
            4,
            "the sleeps never started"
        );
        let t0 = Instant::now();
        let report = h.shutdown(grace);
        let took = t0.elapsed();
        stop.store(true, Ordering::SeqCst);
        let tallies: Vec<Tally> = clients.into_iter().map(|c| c.join().unwrap()).collect();
        (tallies, report, took)
    });
    let mut t = Tally::default();
    for x in &tallies {
        t.sent += x.sent;
        t.completed += x.completed;
        t.close_headers += x.close_headers;
        t.closed_before_response += x.closed_before_response;
        t.cut += x.cut;
        t.wrong += x.wrong;
        t.refused += x.refused;
    }
    eprintln!("{mode:?}: {t:?}; {report}; shutdown took {took:?}");
    assert_eq!(t.cut, 0, "{mode:?}: responses cut mid-way: {t:?}");
    assert_eq!(t.wrong, 0, "{mode:?}: {t:?}");
    assert_eq!(t.sent, t.completed + t.closed_before_response, "{t:?}");
    let handled = calls.load(Ordering::SeqCst);
    assert!(handled >= t.completed, "{mode:?}: {handled} handled: {t:?}");
    // Every request the server handled got its complete response: the drain
    // claims an idle connection and a request starts work with one CAS each
    // (`Conn::mark_active`), so a request is never handled with its response
    // lost (regression: thread mode used to lose ~1 in 50 drains here).
    assert_eq!(
        handled, t.completed,
        "{mode:?}: requests handled vs complete responses received: {t:?}"
    );
    assert!(t.completed > 0 && t.refused > 0, "{t:?}");
    for s in &mut sleepers {
        let rs = parse_all(&read_to_close(s));
        assert_eq!(rs.len(), 1);
        assert_eq!((rs[0].status, rs[0].body_str()), (200, "slept"));
        assert!(
            rs[0].closes(),
            "the last response of a draining server says close"
        );
    }
    assert!(took < grace, "{mode:?}: shutdown took {took:?}");
    assert_eq!(report.cancelled, 0, "{report}");
    assert_eq!(report.still_running, 0, "{report}");
    assert!(report.drained >= 4, "{report}");
}

/// Wait until the listener is closed (a drain has begun).
fn wait_refused(addr: SocketAddr) {
    let start = Instant::now();
    loop {
        match TcpStream::connect(addr) {
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return,
            _ => assert!(start.elapsed() < DEADLINE, "still accepting"),
        }
    }
}

/// An echo server that reports each `/echo` handler entry on a channel.
fn echo_reporting(mode: Mode) -> (HttpServerHandle, std::sync::mpsc::Receiver<()>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let h = start(mode, move |req: Request<Body>, c: &Cancel| {
        if req.uri().path() == "/echo" {
            let _ = tx.lock().unwrap().send(());
        }
        echo(req, c)
    });
    (h, rx)
}

/// Send a request head and half of its 10-byte body; in thread mode, wait
/// until its handler runs (event mode buffers the body in the loop: the
/// handler runs only once it is complete).
fn half_a_body(mode: Mode, addr: SocketAddr, entered: &std::sync::mpsc::Receiver<()>) -> TcpStream {
    let mut s = connect(addr);
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello")
        .unwrap();
    if mode == Mode::Threads {
        entered.recv_timeout(DEADLINE).unwrap();
    } else {
        accepted_so_far(addr);
    }
    s
}

/// Returns once every connection opened before has been accepted: the
/// listener accepts in order, so a later request answered proves it.
fn accepted_so_far(addr: SocketAddr) {
    let probe = one_and_close(
        addr,
        b"GET /p HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(probe.status, 200);
}

/// A request partly received when the drain starts (a head and part of a
/// small body; in event mode also a partial head, which the loop keeps
/// whether or not it has read it yet) is finished and answered, then the
/// connection ends. (The response says `Connection: close` unless it went
/// out in the instant between the listener closing and the drain flag
/// being set; either way the connection then closes.) In thread mode a
/// connection whose bytes its thread has not read yet when the drain
/// starts counts as idle, and closes unanswered: no such case here.
fn request_arriving_during_drain_is_answered(mode: Mode) {
    let (h, entered) = echo_reporting(mode);
    let addr = h.local_addr();
    let mut half_head = (mode == Mode::Event).then(|| {
        let mut s = connect(addr);
        s.write_all(b"GET /a HTTP/1.1\r\nHo").unwrap();
        s
    });
    // (In event mode this also waits until `half_head` is accepted.)
    let mut half_body = half_a_body(mode, addr, &entered);
    std::thread::scope(|sc| {
        let shutdown = sc.spawn(|| h.shutdown(Duration::from_secs(5)));
        wait_refused(addr);
        if let Some(s) = half_head.as_mut() {
            s.write_all(b"st: x\r\n\r\n").unwrap();
            let r = read_response(s, &mut Vec::new(), false);
            assert_eq!((r.status, r.body_str()), (200, "/a"));
            assert!(read_to_close(s).is_empty());
        }
        half_body.write_all(b"world").unwrap();
        let r = read_response(&mut half_body, &mut Vec::new(), false);
        assert_eq!((r.status, r.body_str()), (200, "helloworld"));
        assert!(read_to_close(&mut half_body).is_empty());
        let report = shutdown.join().unwrap();
        assert_eq!(report.cancelled, 0, "{report}");
        assert_eq!(report.still_running, 0, "{report}");
    });
}

/// A partial request that never completes is closed at the grace deadline.
fn partial_request_is_closed_at_the_grace_deadline(mode: Mode) {
    let (h, entered) = echo_reporting(mode);
    let mut s = half_a_body(mode, h.local_addr(), &entered);
    let grace = Duration::from_millis(300);
    let t0 = Instant::now();
    let report = h.shutdown(grace);
    let took = t0.elapsed();
    assert!(took >= grace, "{report}");
    assert!(
        took < grace + Duration::from_secs(3),
        "took {took:?}: {report}"
    );
    assert_eq!(report.still_running, 0, "{report}");
    // The connection ends without a response.
    let out = read_to_close(&mut s);
    assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
}

both_modes!(
    drain_under_load,
    request_arriving_during_drain_is_answered,
    partial_request_is_closed_at_the_grace_deadline,
);
