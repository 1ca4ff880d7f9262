//! The hello example, black-box: every route, in both modes, and a graceful
//! drain on SIGTERM with a request in flight.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Proc, agent, read_response};
use rustix::process::Signal;

const HELLO: &str = env!("CARGO_BIN_EXE_hello");

fn start(mode: &str) -> Proc {
    let p = Proc::start(
        HELLO,
        &["--addr", "127.0.0.1:0", "--mode", mode, "--grace", "5"],
    );
    assert!(
        p.first_line.contains(&format!("mode: {mode}")),
        "{}",
        p.first_line
    );
    p
}

fn routes(mode: &str) {
    let p = start(mode);
    let a = agent();
    let mut r = a.get(p.url("/")).call().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/plain");
    assert!(r.headers().contains_key("date"));
    assert_eq!(r.body_mut().read_to_string().unwrap(), "Hello, World!");

    let mut r = a.get(p.url("/sleep/20")).call().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.body_mut().read_to_string().unwrap(), "slept 20 ms\n");
    assert_eq!(a.get(p.url("/sleep/abc")).call().unwrap().status(), 400);
    assert_eq!(
        a.get(p.url("/sleep/99999999")).call().unwrap().status(),
        400
    );

    let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let mut r = a.post(p.url("/echo")).send(&payload[..]).unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.body_mut().read_to_vec().unwrap(), payload);

    assert_eq!(a.get(p.url("/nope")).call().unwrap().status(), 404);
    let r = a.delete(p.url("/")).call().unwrap();
    assert_eq!(r.status(), 405);
    assert!(r.headers()["allow"].to_str().unwrap().contains("GET"));
    p.signal(Signal::TERM);
    let (status, _) = p.wait(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
}

#[test]
fn routes_threads() {
    routes("threads");
}

#[test]
fn routes_event() {
    routes("event");
}

/// Poll `/stats` until it reads `want` (a request, not a timer: the
/// server's state is the synchronisation).
fn wait_stats(p: &Proc, want: &str, what: &str) {
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
        if body == want {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {body}");
    }
}

fn drain(mode: &str) {
    let p = start(mode);
    // A request in flight: /sleep/500 on a raw connection.
    let mut inflight = TcpStream::connect(p.addr).unwrap();
    inflight
        .write_all(b"GET /sleep/500 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    wait_stats(&p, "sleeping 1\nabandoned 0\n", "the sleep never started");
    p.signal(Signal::TERM);
    // New connections are refused once the listener closes (at once).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match TcpStream::connect(p.addr) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
            _ => assert!(Instant::now() < deadline, "still accepting after SIGTERM"),
        }
    }
    // The in-flight request completes with 200, and the connection closes.
    let resp = read_response(&mut inflight);
    assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
    assert!(resp.ends_with("slept 500 ms\n"), "{resp}");
    assert!(
        resp.to_ascii_lowercase().contains("connection: close"),
        "{resp}"
    );
    let (status, out) = p.wait(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{out}");
    assert!(out.contains("drained"), "{out}");
}

/// `/sleep/{ms}` ends early when its client goes away.
fn disconnect(mode: &str) {
    let p = start(mode);
    let mut gone = TcpStream::connect(p.addr).unwrap();
    gone.write_all(b"GET /sleep/60000 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    wait_stats(&p, "sleeping 1\nabandoned 0\n", "the sleep never started");
    drop(gone);
    wait_stats(
        &p,
        "sleeping 0\nabandoned 1\n",
        "the sleep did not end when its client left",
    );
    p.signal(Signal::TERM);
    let (status, out) = p.wait(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{out}");
}

#[test]
fn client_disconnect_ends_sleep_threads() {
    disconnect("threads");
}

#[test]
fn client_disconnect_ends_sleep_event() {
    disconnect("event");
}

#[test]
fn sigterm_drains_in_flight_request_threads() {
    drain("threads");
}

#[test]
fn sigterm_drains_in_flight_request_event() {
    drain("event");
}
