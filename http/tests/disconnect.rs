//! A request's `Cancel` fires with `Disconnected` when the client goes away
//! while the handler waits, in both modes; clients that are still there
//! (including one that pipelined and then half-closed) are answered.

mod util;

use std::io::Write;
use std::net::Shutdown;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::Request;
use stead_core::{Cancel, CancelReason};
use stead_http::{Body, Mode};
use util::*;

/// Generous bound on "promptly" for this shared 2-core machine.
const PROMPT: Duration = Duration::from_secs(1);

type Events = Arc<Mutex<mpsc::Sender<(String, Result<(), CancelReason>, Instant)>>>;

/// `/sleep/{ms}` sleeps on the request's token and reports how it ended.
fn sleeper(
    mode: Mode,
) -> (
    stead_http::HttpServerHandle,
    mpsc::Receiver<Started>,
    Receiver,
) {
    let (started_tx, started_rx) = mpsc::channel();
    let (tx, rx) = mpsc::channel();
    let started = Arc::new(Mutex::new(started_tx));
    let events: Events = Arc::new(Mutex::new(tx));
    let h = start(mode, move |req: Request<Body>, cancel: &Cancel| {
        let path = req.uri().path().to_owned();
        let ms: u64 = path
            .strip_prefix("/sleep/")
            .and_then(|m| m.parse().ok())
            .unwrap_or(0);
        let _ = started.lock().unwrap().send(Started(path.clone()));
        let r = if ms == 0 {
            Ok(())
        } else {
            cancel
                .sleep(Duration::from_millis(ms))
                .map_err(|c| c.reason())
        };
        let _ = events
            .lock()
            .unwrap()
            .send((path.clone(), r, Instant::now()));
        format!("{path} {r:?}")
    });
    (h, started_rx, rx)
}

#[derive(Debug)]
struct Started(#[allow(dead_code)] String);
type Receiver = mpsc::Receiver<(String, Result<(), CancelReason>, Instant)>;

fn client_close_cancels_the_handler(mode: Mode) {
    let (h, started, events) = sleeper(mode);
    let mut s = connect(h.local_addr());
    s.write_all(b"GET /sleep/30000 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    started.recv_timeout(DEADLINE).unwrap();
    let closed = Instant::now();
    drop(s);
    let (path, r, at) = events.recv_timeout(DEADLINE).unwrap();
    assert_eq!(path, "/sleep/30000");
    assert_eq!(r, Err(CancelReason::Disconnected));
    assert!(at - closed < PROMPT, "took {:?}", at - closed);
    // The server goes on serving.
    let resp = one_and_close(
        h.local_addr(),
        b"GET /sleep/0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body_str(), "/sleep/0 Ok(())");
    stop(h);
}

fn client_reset_cancels_the_handler(mode: Mode) {
    let (h, started, events) = sleeper(mode);
    let s = connect(h.local_addr());
    (&s).write_all(b"GET /sleep/30000 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    started.recv_timeout(DEADLINE).unwrap();
    // SO_LINGER 0: close sends a reset instead of a FIN.
    rustix::net::sockopt::set_socket_linger(&s, Some(Duration::ZERO)).unwrap();
    drop(s);
    let (_, r, _) = events.recv_timeout(DEADLINE).unwrap();
    assert_eq!(r, Err(CancelReason::Disconnected));
    stop(h);
}

/// The first request, which blocks, is answered: the second one is still
/// unread behind it. (The last request of a half-closed connection is then
/// answered if its handler does not block; one that blocks is treated as
/// abandoned, as nginx and Go do.)
fn pipelined_then_half_closed_is_answered(mode: Mode) {
    let (h, _started, events) = sleeper(mode);
    let mut s = connect(h.local_addr());
    s.write_all(b"GET /sleep/200 HTTP/1.1\r\nHost: x\r\n\r\nGET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let out = read_to_close(&mut s);
    let resps = parse_all(&out);
    assert_eq!(resps.len(), 2, "{}", String::from_utf8_lossy(&out));
    assert_eq!(resps[0].body_str(), "/sleep/200 Ok(())");
    assert_eq!(resps[1].body_str(), "/fast Ok(())");
    assert_eq!(events.recv_timeout(DEADLINE).unwrap().1, Ok(()));
    stop(h);
}

/// The same with a chunked request first (its end is found by decoding).
fn pipelined_after_chunked_then_half_closed_is_answered(mode: Mode) {
    let (h, _started, _events) = sleeper(mode);
    let mut s = connect(h.local_addr());
    s.write_all(
        b"POST /sleep/200 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /fast HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let resps = parse_all(&read_to_close(&mut s));
    assert_eq!(resps.len(), 2);
    assert_eq!(resps[0].body_str(), "/sleep/200 Ok(())");
    assert_eq!(resps[1].body_str(), "/fast Ok(())");
    stop(h);
}

fn keep_alive_client_is_not_cancelled(mode: Mode) {
    // A client that stays, across requests that block: never cancelled.
    let (h, _started, _events) = sleeper(mode);
    let mut s = connect(h.local_addr());
    let mut pending = Vec::new();
    for _ in 0..5 {
        s.write_all(b"GET /sleep/20 HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let r = read_response(&mut s, &mut pending, false);
        assert_eq!(r.body_str(), "/sleep/20 Ok(())");
    }
    stop(h);
}

both_modes!(
    client_close_cancels_the_handler,
    client_reset_cancels_the_handler,
    pipelined_then_half_closed_is_answered,
    pipelined_after_chunked_then_half_closed_is_answered,
    keep_alive_client_is_not_cancelled,
);
