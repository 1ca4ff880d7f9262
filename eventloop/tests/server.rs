//! The event-mode server: keep-alive, park timeouts, limits, panics,
//! graceful shutdown, and the Go-style hand-off of blocked shards.

mod util;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crossbeam_channel::bounded;
use stead_core::Conn;
use stead_eventloop::{EventServer, Session, SessionFactory, Verdict};
use util::{Client, LinesFactory, Note, thread_count};

#[test]
fn keep_alive_requests_are_answered_and_shutdown_closes_idle_connections() {
    keep_alive_and_shutdown(true);
}

/// The same with workers that keep their CPU between batches.
#[test]
fn workers_that_do_not_yield_between_batches_serve_the_same() {
    keep_alive_and_shutdown(false);
}

fn keep_alive_and_shutdown(yield_after_batch: bool) {
    let h = EventServer::builder()
        .workers(2)
        .yield_after_batch(yield_after_batch)
        .bind("127.0.0.1:0")
        .unwrap()
        .serve(LinesFactory::new());
    let mut clients: Vec<Client> = (0..20).map(|_| Client::connect(h.local_addr())).collect();
    for round in 0..5 {
        for c in &mut clients {
            assert_eq!(c.ask("ping"), "pong", "round {round}");
        }
    }
    let stats = h.stats();
    assert_eq!(stats.accepted, 20);
    assert_eq!(stats.active, 20);
    let report = h.shutdown(Duration::from_secs(1));
    assert_eq!(report.open_at_start, 20);
    // A session may still be returning from the last request (it answered,
    // then parks): that one drains instead of being closed as idle.
    assert_eq!(report.idle_closed + report.drained, 20, "{report}");
    assert!(report.is_clean(), "{report}");
    for c in &mut clients {
        assert_eq!(
            c.recv().unwrap(),
            None,
            "idle connection closed at shutdown"
        );
    }
}

#[test]
fn pipelined_lines_in_one_packet_are_all_answered() {
    let h = EventServer::builder()
        .workers(1)
        .bind("127.0.0.1:0")
        .unwrap()
        .serve(LinesFactory::new());
    let mut c = Client::connect(h.local_addr());
    c.reader.get_mut().write_all(b"ping\nping\nping\n").unwrap();
    for _ in 0..3 {
        assert_eq!(c.recv().unwrap().as_deref(), Some("pong"));
    }
    h.shutdown(Duration::from_secs(1));
}

#[test]
fn park_timeout_calls_on_timeout_then_closes() {
    let h = EventServer::builder()
        .workers(1)
        .bind("127.0.0.1:0")
        .unwrap()
        .serve(LinesFactory::new());
    let mut c = Client::connect(h.local_addr());
    let start = Instant::now();
    assert_eq!(c.ask("park 50"), "ok");
    assert_eq!(c.recv().unwrap().as_deref(), Some("timeout"));
    assert!(start.elapsed() >= Duration::from_millis(50));
    assert_eq!(c.recv().unwrap(), None);
    // A connection that keeps talking re-arms its timeout each time.
    let mut d = Client::connect(h.local_addr());
    for _ in 0..3 {
        assert_eq!(d.ask("park 400"), "ok");
    }
    assert_eq!(d.recv().unwrap().as_deref(), Some("timeout"));
    assert_eq!(h.event_stats().timeouts, 2);
    h.shutdown(Duration::from_secs(1));
}

#[test]
fn first_read_timeout_closes_silent_connections() {
    let h = EventServer::builder()
        .workers(1)
        .first_read_timeout(Some(Duration::from_millis(50)))
        .bind("127.0.0.1:0")
        .unwrap()
        .serve(LinesFactory::new());
    let mut c = Client::connect(h.local_addr());
    assert_eq!(c.recv().unwrap().as_deref(), Some("timeout"));
    assert_eq!(c.recv().unwrap(), None);
    h.shutdown(Duration::from_secs(1));
}

#[test]
fn connection_limit_pauses_accepting_until_one_closes() {
    let h = EventServer::builder()
        .workers(1)
        .max_connections(2)
        .bind("127.0.0.1:0")
        .unwrap()
        .serve(LinesFactory::new());
    let mut a = Client::connect(h.local_addr());
    let mut b = Client::connect(h.local_addr());
    assert_eq!(a.ask("ping"), "pong");
    assert_eq!(b.ask("ping"), "pong");
    // The third connection completes in the kernel backlog but is not served.
    let mut c = Client::connect(h.local_addr());
    c.set_read_timeout(Duration::from_millis(200));
    c.send("ping");
    let err = c.recv().unwrap_err();
    assert!(matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    ));
    assert_eq!(h.stats().active, 2);
    assert!(h.stats().limit_pauses >= 1);
    // One closes: the third is accepted and its waiting request answered.
    a.send("close");
    assert_eq!(a.recv().unwrap(), None);
    c.set_read_timeout(Duration::from_secs(10));
    assert_eq!(c.recv().unwrap().as_deref(), Some("pong"));
    h.shutdown(Duration::from_secs(1));
}

#[test]
fn a_panicking_session_closes_its_connection_only() {
    let h = EventServer::builder()
        .workers(1)
        .bind("127.0.0.1:0")
        .unwrap()
        .serve(LinesFactory::new());
    let mut ok = Client::connect(h.local_addr());
    assert_eq!(ok.ask("ping"), "pong");
    let mut bad = Client::connect(h.local_addr());
    bad.send("panic");
    assert_eq!(bad.recv().unwrap(), None);
    assert_eq!(ok.ask("ping"), "pong");
    let mut fresh = Client::connect(h.local_addr());
    assert_eq!(fresh.ask("ping"), "pong");
    assert_eq!(h.stats().panicked, 1);
    h.shutdown(Duration::from_secs(1));
}

#[test]
fn graceful_shutdown_drains_busy_cancels_overdue_closes_idle() {
    let (tx, rx) = bounded(16);
    let h = EventServer::builder()
        .workers(2)
        .cancel_wait(Duration::from_secs(2))
        .bind("127.0.0.1:0")
        .unwrap()
        .serve(LinesFactory { notes: Some(tx) });
    let mut idle = Client::connect(h.local_addr());
    assert_eq!(idle.ask("ping"), "pong");
    let mut short = Client::connect(h.local_addr());
    let mut long = Client::connect(h.local_addr());
    short.send("sleep 300");
    long.send("sleep 30000");
    let mut seen = vec![];
    for _ in 0..2 {
        seen.push(rx.recv_timeout(Duration::from_secs(10)).unwrap());
    }
    assert!(seen.contains(&Note::Sleeping(300)) && seen.contains(&Note::Sleeping(30000)));
    let report = h.shutdown(Duration::from_millis(1000));
    assert_eq!(report.open_at_start, 3, "{report}");
    assert_eq!(report.idle_closed, 1, "{report}");
    assert_eq!(report.drained, 1, "{report}");
    assert_eq!(report.cancelled, 1, "{report}");
    assert_eq!(report.still_running, 0, "{report}");
    assert_eq!(idle.recv().unwrap(), None);
    // The short handler finished its request, then the connection closed.
    assert_eq!(short.recv().unwrap().as_deref(), Some("slept"));
    assert_eq!(short.recv().unwrap(), None);
    // The long one saw its token cancelled (and a cancelled `Conn` refuses
    // to write, so it just closes).
    assert_eq!(long.recv().unwrap(), None);
}

/// The proof: while more handlers than cores block (2 s in a stead
/// blocking call), requests on other connections are still answered
/// promptly. Goal 100 ms; asserted < 300 ms on this shared, noisy machine.
#[test]
fn blocked_handlers_do_not_stall_their_shards() {
    let workers = 2;
    let blocked = 6;
    let (tx, rx) = bounded(16);
    let h = EventServer::builder()
        .workers(workers)
        .bind("127.0.0.1:0")
        .unwrap()
        .serve(LinesFactory { notes: Some(tx) });
    // Connections opened before the blocking starts, spread over both shards.
    let mut others: Vec<Client> = (0..8).map(|_| Client::connect(h.local_addr())).collect();
    for c in &mut others {
        assert_eq!(c.ask("ping"), "pong");
    }
    let mut blockers: Vec<Client> = (0..blocked)
        .map(|_| Client::connect(h.local_addr()))
        .collect();
    for b in &mut blockers {
        b.send("sleep 2000");
    }
    for _ in 0..blocked {
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(5)).unwrap(),
            Note::Sleeping(2000)
        );
    }
    let mut worst = Duration::ZERO;
    for c in &mut others {
        let t = Instant::now();
        assert_eq!(c.ask("ping"), "pong");
        worst = worst.max(t.elapsed());
    }
    let mut fresh = Client::connect(h.local_addr());
    let t = Instant::now();
    assert_eq!(fresh.ask("ping"), "pong");
    worst = worst.max(t.elapsed());
    assert!(
        worst < Duration::from_millis(300),
        "a request waited {worst:?} behind blocked handlers"
    );
    let es = h.event_stats();
    assert!(es.handoffs_blocking >= blocked as u64, "{es:?}");
    // Threads scale with blocked handlers: workers + blocked (+1 spare slack).
    assert!(es.threads <= workers + blocked + 1, "{es:?}");
    for b in &mut blockers {
        assert_eq!(b.recv().unwrap().as_deref(), Some("slept"));
    }
    // Back to normal: the former blocked threads are spares now.
    assert_eq!(fresh.ask("ping"), "pong");
    let report = h.shutdown(Duration::from_secs(1));
    assert!(report.is_clean(), "{report}");
}

/// A handler that blocks without telling stead (std::thread::sleep) is
/// caught by the monitor after the blocking budget (10 ms).
#[test]
fn unannounced_blocking_is_caught_by_the_monitor() {
    let (tx, rx) = bounded(4);
    let h = EventServer::builder()
        .workers(1)
        .blocking_budget(Duration::from_millis(10))
        .bind("127.0.0.1:0")
        .unwrap()
        .serve(LinesFactory { notes: Some(tx) });
    let mut other = Client::connect(h.local_addr());
    assert_eq!(other.ask("ping"), "pong");
    let mut spinner = Client::connect(h.local_addr());
    spinner.send("spin 1500");
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(5)).unwrap(),
        Note::Spinning(1500)
    );
    let t = Instant::now();
    assert_eq!(other.ask("ping"), "pong");
    let waited = t.elapsed();
    assert!(
        waited < Duration::from_millis(300),
        "waited {waited:?} behind an unannounced blocking handler"
    );
    assert!(h.event_stats().handoffs_budget >= 1);
    assert_eq!(spinner.recv().unwrap().as_deref(), Some("spun"));
    assert_eq!(spinner.ask("ping"), "pong");
    h.shutdown(Duration::from_secs(1));
}

/// Many short blocking sections: steal, reclaim and lost-shard paths race
/// each other; every request must still be answered exactly once.
#[test]
fn short_blocking_sections_under_load_lose_nothing() {
    let h = EventServer::builder()
        .workers(2)
        .bind("127.0.0.1:0")
        .unwrap()
        .serve(LinesFactory::new());
    let addr = h.local_addr();
    std::thread::scope(|s| {
        for t in 0..8 {
            s.spawn(move || {
                let mut c = Client::connect(addr);
                for i in 0..100 {
                    let (cmd, want) = match (i + t) % 4 {
                        0 => ("sleep 1", "slept"),
                        1 => ("sleep 0", "slept"),
                        // Past the 10 ms budget, unannounced: the monitor's path.
                        2 if i % 20 == 2 => ("spin 25", "spun"),
                        _ => ("ping", "pong"),
                    };
                    assert_eq!(c.ask(cmd), want, "client {t} request {i}");
                }
            });
        }
    });
    let es = h.event_stats();
    assert!(es.handoffs_blocking > 0, "{es:?}");
    let report = h.shutdown(Duration::from_secs(1));
    assert!(report.is_clean(), "{report}");
}

/// A session that parks without reading: its socket stays readable and the
/// shard would spin; the server closes it instead.
#[test]
fn a_session_that_never_reads_is_closed_not_spun() {
    struct Lazy;
    impl Session for Lazy {
        fn on_readable(&mut self, _conn: &mut Conn<TcpStream>) -> Verdict {
            Verdict::Park { timeout: None }
        }
    }
    struct LazyFactory;
    impl SessionFactory for LazyFactory {
        type Session = Lazy;
        fn new_session(&self, _: SocketAddr) -> Lazy {
            Lazy
        }
    }
    let h = EventServer::builder()
        .workers(1)
        .bind("127.0.0.1:0")
        .unwrap()
        .serve(LazyFactory);
    let mut c = TcpStream::connect(h.local_addr()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(b"you will not read this").unwrap();
    let mut buf = [0u8; 8];
    let n = c.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "the server closed the connection");
    assert_eq!(h.event_stats().spins_closed, 1);
    h.shutdown(Duration::from_secs(1));
}

#[test]
fn threads_are_named_and_counted() {
    let before = thread_count();
    let h = EventServer::builder()
        .workers(3)
        .bind("127.0.0.1:0")
        .unwrap()
        .serve(LinesFactory::new());
    let mut c = Client::connect(h.local_addr());
    assert_eq!(c.ask("ping"), "pong");
    assert_eq!(h.event_stats().threads, 3);
    // 3 workers + acceptor + monitor (other tests may run concurrently, so
    // only this server's own count is exact).
    assert!(thread_count() >= before);
    let names: Vec<String> = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("comm")).ok())
        .collect();
    assert!(names.iter().any(|n| n.trim() == "stead-ev-accept"));
    assert!(names.iter().any(|n| n.trim() == "stead-ev-mon"));
    h.shutdown(Duration::from_secs(1));
}

/// At the thread cap, blocked handlers make their shard wait (bounded
/// threads) instead of starting more threads; nothing is lost.
#[test]
fn thread_cap_bounds_threads_and_requests_still_complete() {
    let (tx, rx) = bounded(16);
    let h = EventServer::builder()
        .workers(1)
        .max_threads(2)
        .bind("127.0.0.1:0")
        .unwrap()
        .serve(LinesFactory { notes: Some(tx) });
    let mut blockers: Vec<Client> = (0..3).map(|_| Client::connect(h.local_addr())).collect();
    for b in &mut blockers {
        b.send("sleep 200");
    }
    // Two run at once (two threads); the third waits for a thread.
    for _ in 0..2 {
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(5)).unwrap(),
            Note::Sleeping(200)
        );
    }
    assert!(h.event_stats().threads <= 2);
    for b in &mut blockers {
        assert_eq!(b.recv().unwrap().as_deref(), Some("slept"));
    }
    assert!(h.event_stats().threads <= 2);
    let mut c = Client::connect(h.local_addr());
    assert_eq!(c.ask("ping"), "pong");
    h.shutdown(Duration::from_secs(1));
}

#[test]
fn run_until_shuts_down_when_the_signal_token_fires() {
    let h = EventServer::builder()
        .workers(1)
        .bind("127.0.0.1:0")
        .unwrap()
        .serve(LinesFactory::new());
    let mut c = Client::connect(h.local_addr());
    assert_eq!(c.ask("ping"), "pong");
    let signal = stead_core::Cancel::new();
    let s = signal.clone();
    let t = std::thread::spawn(move || h.run_until(&s, Duration::from_secs(1)));
    signal.shutdown();
    let report = t.join().unwrap();
    assert_eq!(report.open_at_start, 1);
    assert!(report.is_clean());
    assert_eq!(c.recv().unwrap(), None);
}

#[test]
fn dropping_the_handle_stops_the_server() {
    let h = EventServer::builder()
        .workers(2)
        .bind("127.0.0.1:0")
        .unwrap()
        .serve(LinesFactory::new());
    let addr = h.local_addr();
    let mut c = Client::connect(addr);
    assert_eq!(c.ask("ping"), "pong");
    drop(h);
    assert_eq!(c.recv().unwrap(), None, "connections closed");
    assert!(TcpStream::connect(addr).is_err(), "listener closed");
}
