//! Client-disconnect detection: a watch scope cancels the connection's token
//! with `Disconnected` when the peer goes away while the thread blocks, and
//! only then.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use stead_core::{Cancel, CancelReason, Conn};

/// Generous bound on "promptly" for this shared 2-core machine.
const PROMPT: Duration = Duration::from_millis(500);
/// How long a negative check waits for a cancellation that must not come.
const QUIET: Duration = Duration::from_millis(300);

fn pair() -> (TcpStream, Conn) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (s, _) = l.accept().unwrap();
    (c, Conn::new(s, Cancel::new()).unwrap())
}

#[test]
fn peer_close_while_sleeping_cancels_with_disconnected() {
    let (client, conn) = pair();
    let cancel = conn.cancel().clone();
    let (started_tx, started_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    let handler = thread::spawn(move || {
        // The "handler": a long cancellable sleep on the watching thread.
        let mut conn = conn;
        conn.begin_hangup_watch();
        started_tx.send(()).unwrap();
        let r = conn.cancel().sleep(Duration::from_secs(30));
        done_tx.send(Instant::now()).unwrap();
        conn.end_hangup_watch();
        r
    });
    started_rx.recv().unwrap();
    let closed_at = Instant::now();
    drop(client);
    let woke_at = done_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let err = handler.join().unwrap().unwrap_err();
    assert_eq!(err.reason(), CancelReason::Disconnected);
    assert_eq!(cancel.reason(), Some(CancelReason::Disconnected));
    assert!(
        woke_at.saturating_duration_since(closed_at) < PROMPT,
        "took {:?}",
        woke_at - closed_at
    );
}

#[test]
fn peer_closed_before_the_wait_is_seen_at_once() {
    let (client, mut conn) = pair();
    drop(client);
    conn.begin_hangup_watch();
    let why = conn.cancel().wait_timeout(Duration::from_secs(10));
    conn.end_hangup_watch();
    assert_eq!(why, Some(CancelReason::Disconnected));
}

#[test]
fn unread_input_before_a_half_close_is_not_a_disconnect() {
    // A pipelined request followed by a half-close: the client still wants
    // its answers (nginx answers them too).
    let (mut client, mut conn) = pair();
    client.write_all(b"next request").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    conn.begin_hangup_watch();
    let why = conn.cancel().wait_timeout(QUIET);
    conn.end_hangup_watch();
    assert_eq!(why, None, "cancelled although input was pending");
    // The connection still works both ways.
    let mut buf = Vec::new();
    conn.read_to_end(&mut buf).unwrap();
    assert_eq!(buf, b"next request");
    conn.write_all(b"answer").unwrap();
    drop(conn);
    let mut got = Vec::new();
    client.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"answer");
}

#[test]
fn no_watch_outside_a_scope() {
    // A close while no scope is open (an idle keep-alive connection, or a
    // scope that ended) does not cancel: the reader sees EOF instead.
    let (client, mut conn) = pair();
    conn.begin_hangup_watch();
    let _ = conn.cancel().wait_timeout(Duration::from_millis(1)); // arms, then times out
    conn.end_hangup_watch(); // disarms
    drop(client);
    assert_eq!(conn.cancel().wait_timeout(QUIET), None);
    let mut buf = [0u8; 8];
    assert_eq!(conn.read(&mut buf).unwrap(), 0);
    assert!(!conn.cancel().is_cancelled());
}

#[test]
fn many_connections_are_told_apart() {
    // Only the connection whose peer left is cancelled.
    let mut pairs: Vec<_> = (0..20).map(|_| pair()).collect();
    let (gone_client, mut gone) = pairs.remove(7);
    drop(gone_client);
    gone.begin_hangup_watch();
    assert_eq!(
        gone.cancel().wait_timeout(Duration::from_secs(10)),
        Some(CancelReason::Disconnected)
    );
    gone.end_hangup_watch();
    for (_client, conn) in &mut pairs {
        conn.begin_hangup_watch();
        assert_eq!(conn.cancel().wait_timeout(Duration::from_millis(10)), None);
        conn.end_hangup_watch();
    }
}

fn cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

#[test]
fn a_reset_after_the_scope_ended_costs_no_cpu() {
    // Regression: a scope that armed the connection used to leave it in the
    // watcher's epoll set, where a later reset (EPOLLHUP/EPOLLERR are always
    // reported) woke the watcher thread in a loop.
    let (client, mut conn) = pair();
    conn.begin_hangup_watch();
    let _ = conn.cancel().wait_timeout(Duration::from_millis(1)); // arms
    conn.end_hangup_watch();
    rustix::net::sockopt::set_socket_linger(&client, Some(Duration::ZERO)).unwrap();
    drop(client); // reset
    let mut buf = [0u8; 8];
    assert!(
        conn.read(&mut buf).is_err(),
        "the reset is seen by the reader"
    );
    let (cpu0, t0) = (cpu_time(), Instant::now());
    // A bounded observation window: the watcher must stay asleep in it.
    assert_eq!(conn.cancel().wait_timeout(QUIET), None);
    let (cpu, wall) = (cpu_time() - cpu0, t0.elapsed());
    assert!(cpu < wall / 3, "{cpu:?} of CPU in {wall:?}");
}

#[test]
fn watching_resumes_after_the_token_is_replaced() {
    // Regression: a new registration for the same socket failed (EEXIST)
    // and the connection was silently never watched again.
    let (client, mut conn) = pair();
    conn.begin_hangup_watch();
    let _ = conn.cancel().wait_timeout(Duration::from_millis(1));
    conn.end_hangup_watch();
    conn.replace_cancel(Cancel::new());
    conn.begin_hangup_watch();
    let _ = conn.cancel().wait_timeout(Duration::from_millis(1));
    drop(client);
    let why = conn.cancel().wait_timeout(Duration::from_secs(10));
    conn.end_hangup_watch();
    assert_eq!(why, Some(CancelReason::Disconnected));
}
