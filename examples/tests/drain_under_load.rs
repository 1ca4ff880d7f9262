//! SIGTERM while a load runs and long requests are in flight, against the
//! real `hello` binary, in both modes.
//!
//! Guaranteed and checked (client side; `http/tests/drain.rs` adds the
//! server-side count): every response a client received any byte of is
//! complete; a connection ends only after a complete response or before any
//! byte of the next response (an idle keep-alive connection closed by the
//! drain); the four `/sleep/1000` requests finish with 200 and
//! `Connection: close`; the process exits 0 well before its grace deadline
//! and reports nothing cancelled.

mod common;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Proc, agent};
use rustix::process::Signal;

const HELLO: &str = env!("CARGO_BIN_EXE_hello");

#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    sent: u64,
    completed: u64,
    close_headers: u64,
    closed_before_response: u64,
    cut: u64,
    wrong: u64,
    refused: u64,
}

/// Parse one response (Content-Length framed, as hello's are): `Some((status,
/// body, closes, used))` once complete.
fn parse(buf: &[u8]) -> Option<(u16, Vec<u8>, bool, usize)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..end]).expect("ASCII head");
    let status: u16 = head.get(9..12)?.parse().ok()?;
    let mut len = 0usize;
    let mut closes = false;
    for line in head.lines().skip(1) {
        let l = line.to_ascii_lowercase();
        if let Some(v) = l.strip_prefix("content-length:") {
            len = v.trim().parse().unwrap();
        } else if l.starts_with("connection:") && l.contains("close") {
            closes = true;
        }
    }
    (buf.len() >= end + len).then(|| (status, buf[end..end + len].to_vec(), closes, end + len))
}

fn client(addr: SocketAddr, id: u64, stop: &AtomicBool) -> Tally {
    let mut t = Tally::default();
    let mut conn: Option<TcpStream> = None;
    let payload = vec![b'p'; 100_000];
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut n = id;
    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        let s = match conn.as_mut() {
            Some(s) => s,
            None => match TcpStream::connect(addr) {
                Ok(s) => {
                    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                    conn.insert(s)
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    t.refused += 1;
                    break;
                }
                Err(e) => panic!("connect: {e} ({:?})", e.kind()),
            },
        };
        n += 1;
        let post = n.is_multiple_of(4);
        let mut req = if post {
            format!(
                "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
                payload.len()
            )
            .into_bytes()
        } else {
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()
        };
        if post {
            req.extend_from_slice(&payload);
        }
        if s.write_all(&req).is_err() {
            conn = None;
            continue;
        }
        t.sent += 1;
        let mut got = Vec::new();
        let mut buf = [0u8; 64 * 1024];
        let resp = loop {
            if let Some(r) = parse(&got) {
                assert_eq!(r.3, got.len(), "bytes beyond the response");
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
            Some((status, body, closes, _)) => {
                t.completed += 1;
                let want: &[u8] = if post { &payload } else { b"Hello, World!" };
                if status != 200 || body != want {
                    t.wrong += 1;
                }
                if closes {
                    t.close_headers += 1;
                    conn = None;
                }
            }
        }
    }
    t
}

fn sigterm_under_load(mode: &str) {
    let grace = 5.0;
    let p = Proc::start(
        HELLO,
        &[
            "--addr",
            "127.0.0.1:0",
            "--mode",
            mode,
            "--grace",
            &grace.to_string(),
        ],
    );
    let addr = p.addr;
    let mut sleepers: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(b"GET /sleep/1000 HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            s
        })
        .collect();
    let a = agent();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let body = a
            .get(p.url("/stats"))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap();
        if body.starts_with("sleeping 4\n") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the sleeps never started: {body}"
        );
    }
    let stop = AtomicBool::new(false);
    let (tallies, status, out, took) = std::thread::scope(|sc| {
        let clients: Vec<_> = (0..6)
            .map(|id| {
                let stop = &stop;
                sc.spawn(move || client(addr, id, stop))
            })
            .collect();
        // Let the load run (the sleeps have ~1 s to go), then SIGTERM.
        std::thread::sleep(Duration::from_millis(300)); // load duration, not synchronisation
        let t0 = Instant::now();
        p.signal(Signal::TERM);
        let (status, out) = p.wait(Duration::from_secs(15));
        let took = t0.elapsed();
        stop.store(true, Ordering::SeqCst);
        let tallies: Vec<Tally> = clients.into_iter().map(|c| c.join().unwrap()).collect();
        (tallies, status, out, took)
    });
    let mut t = Tally::default();
    for x in tallies {
        t.sent += x.sent;
        t.completed += x.completed;
        t.close_headers += x.close_headers;
        t.closed_before_response += x.closed_before_response;
        t.cut += x.cut;
        t.wrong += x.wrong;
        t.refused += x.refused;
    }
    eprintln!("{mode}: {t:?}; exit in {took:?}; {}", out.trim());
    assert_eq!(status.code(), Some(0), "{out}");
    assert!(
        took < Duration::from_secs_f64(grace),
        "exit took {took:?} (grace {grace}s)"
    );
    assert!(out.contains(" 0 cancelled, 0 still running"), "{out}");
    assert_eq!(t.cut, 0, "{mode}: responses cut mid-way: {t:?}");
    assert_eq!(t.wrong, 0, "{mode}: {t:?}");
    assert_eq!(t.sent, t.completed + t.closed_before_response, "{t:?}");
    assert!(t.completed > 0 && t.refused > 0, "{t:?}");
    for s in &mut sleepers {
        let mut all = Vec::new();
        s.read_to_end(&mut all).unwrap();
        let (status, body, closes, used) = parse(&all).expect("complete sleep response");
        assert_eq!(used, all.len());
        assert_eq!((status, &body[..]), (200, &b"slept 1000 ms\n"[..]));
        assert!(closes, "the drained response says Connection: close");
    }
}

#[test]
fn sigterm_under_load_threads() {
    sigterm_under_load("threads");
}

#[test]
fn sigterm_under_load_event() {
    sigterm_under_load("event");
}
