//! Blocked read, write and accept return promptly on cancel, deadline and
//! timeout, and the error says which.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use stead_core::{Cancel, CancelReason, Cancelled, Conn, Listener, Timeout};

/// The issue asks for 10 ms; slack for a noisy shared 2-core machine.
const PROMPT: Duration = Duration::from_millis(60);

fn pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (s, _) = l.accept().unwrap();
    (c, s)
}

/// Run `op` on a thread, cancel `token` once it has started, and return
/// the error and how long after the cancel it came back.
fn cancel_while_blocked<F>(token: Cancel, op: F) -> (std::io::Error, Duration)
where
    F: FnOnce() -> std::io::Error + Send + 'static,
{
    let (tx, rx) = mpsc::channel();
    let h = thread::spawn(move || {
        tx.send(()).unwrap();
        let e = op();
        (e, Instant::now())
    });
    rx.recv().unwrap();
    let t0 = Instant::now();
    token.cancel();
    let (e, t1) = h.join().unwrap();
    (e, t1.saturating_duration_since(t0))
}

#[test]
fn blocked_read_returns_promptly_on_cancel() {
    let (_client, server) = pair();
    let token = Cancel::new();
    let mut conn = Conn::new(server, token.clone()).unwrap();
    let (e, took) = cancel_while_blocked(token, move || conn.read(&mut [0u8; 8]).unwrap_err());
    assert!(took < PROMPT, "read returned {took:?} after cancel");
    assert_eq!(e.kind(), ErrorKind::Other);
    assert_eq!(
        Cancelled::from_io(&e).unwrap().reason(),
        CancelReason::Cancelled
    );
}

#[test]
fn blocked_read_returns_at_the_token_deadline_as_timed_out() {
    let (_client, server) = pair();
    let token = Cancel::with_timeout(Duration::from_millis(50));
    let mut conn = Conn::new(server, token.clone()).unwrap();
    let e = conn.read(&mut [0u8; 8]).unwrap_err();
    let late = Instant::now().saturating_duration_since(token.deadline().unwrap());
    assert!(late < PROMPT, "read overshot the deadline by {late:?}");
    assert_eq!(e.kind(), ErrorKind::TimedOut);
    assert!(Cancelled::from_io(&e).unwrap().is_timeout());
}

#[test]
fn read_timeout_is_a_timeout_not_a_cancellation() {
    let (_client, server) = pair();
    let mut conn = Conn::new(server, Cancel::new()).unwrap();
    conn.set_read_timeout(Some(Duration::from_millis(30)));
    let start = Instant::now();
    let e = conn.read(&mut [0u8; 8]).unwrap_err();
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(30) && took < Duration::from_millis(30) + PROMPT);
    assert_eq!(e.kind(), ErrorKind::TimedOut);
    let t = e.get_ref().unwrap().downcast_ref::<Timeout>().unwrap();
    assert_eq!((t.op, t.after), ("read", Duration::from_millis(30)));
    assert!(Cancelled::from_io(&e).is_none());
    assert!(
        !conn.cancel().is_cancelled(),
        "a timeout does not cancel the token"
    );
}

#[test]
fn reads_data_and_eof_like_std() {
    let (mut client, server) = pair();
    let mut conn = Conn::new(server, Cancel::new()).unwrap();
    client.write_all(b"hello").unwrap();
    let mut buf = [0u8; 5];
    conn.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hello");
    drop(client);
    assert_eq!(conn.read(&mut buf).unwrap(), 0);
}

#[test]
fn cancelled_conn_refuses_even_ready_data() {
    let (mut client, server) = pair();
    let token = Cancel::new();
    let mut conn = Conn::new(server, token.clone()).unwrap();
    client.write_all(b"data").unwrap();
    token.shutdown();
    let e = conn.read(&mut [0u8; 4]).unwrap_err();
    assert_eq!(
        Cancelled::from_io(&e).unwrap().reason(),
        CancelReason::Shutdown
    );
}

#[test]
fn blocked_write_to_a_peer_not_reading_returns_promptly_on_cancel() {
    let (_client, server) = pair();
    let token = Cancel::new();
    let mut conn = Conn::new(server, token.clone()).unwrap();
    let (e, took) = cancel_while_blocked(token, move || {
        let chunk = vec![0u8; 1 << 20];
        loop {
            if let Err(e) = conn.write_all(&chunk) {
                return e;
            }
        }
    });
    assert!(took < PROMPT, "write returned {took:?} after cancel");
    assert_eq!(
        Cancelled::from_io(&e).unwrap().reason(),
        CancelReason::Cancelled
    );
}

#[test]
fn blocked_write_times_out() {
    let (_client, server) = pair();
    let mut conn = Conn::new(server, Cancel::new()).unwrap();
    conn.set_write_timeout(Some(Duration::from_millis(30)));
    let chunk = vec![0u8; 1 << 20];
    let e = loop {
        if let Err(e) = conn.write_all(&chunk) {
            break e;
        }
    };
    assert_eq!(e.kind(), ErrorKind::TimedOut);
    assert_eq!(
        e.get_ref().unwrap().downcast_ref::<Timeout>().unwrap().op,
        "write"
    );
}

#[test]
fn blocked_accept_returns_promptly_on_cancel_and_deadline() {
    let token = Cancel::new();
    let mut l = Listener::bind("127.0.0.1:0", token.clone()).unwrap();
    let (e, took) = cancel_while_blocked(token, move || l.accept().unwrap_err());
    assert!(took < PROMPT, "accept returned {took:?} after cancel");
    assert_eq!(
        Cancelled::from_io(&e).unwrap().reason(),
        CancelReason::Cancelled
    );

    let token = Cancel::with_timeout(Duration::from_millis(40));
    let mut l = Listener::bind("127.0.0.1:0", token.clone()).unwrap();
    let e = l.accept().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut);
    assert!(Instant::now().saturating_duration_since(token.deadline().unwrap()) < PROMPT);
}

#[test]
fn accept_returns_nonblocking_streams_with_peer_addr() {
    let mut l = Listener::bind("127.0.0.1:0", Cancel::new()).unwrap();
    let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (s, peer) = l.accept().unwrap();
    assert_eq!(peer, c.local_addr().unwrap());
    let mut buf = [0u8; 1];
    assert_eq!(
        (&s).read(&mut buf).unwrap_err().kind(),
        ErrorKind::WouldBlock
    );
    assert!(l.try_accept().unwrap().is_none());
}

#[test]
fn works_over_unix_streams_too() {
    let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    let token = Cancel::new();
    let mut conn = Conn::from_nonblocking(a, token.clone());
    b.write_all(b"x").unwrap();
    let mut buf = [0u8; 1];
    conn.read_exact(&mut buf).unwrap();
    let (e, took) = cancel_while_blocked(token, move || conn.read(&mut buf).unwrap_err());
    assert!(took < PROMPT);
    assert!(Cancelled::from_io(&e).is_some());
}
