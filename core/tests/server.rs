//! The thread-per-connection server: many connections, contained panics,
//! the connection limit, failed thread creation, graceful shutdown.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, bounded, select, unbounded};
use stead_core::{Conn, Job, Server, ServerHandle, Spawner, ThreadSpawner};

/// A line protocol: `ping` -> `pong`, `panic` -> panics, `hold` -> reports
/// and waits for a release (or its token), then answers `done`.
struct Lines {
    held: Sender<()>,
    release: Receiver<()>,
    idle: Sender<()>,
    closed: Sender<()>,
}

fn serve_lines(conn: &mut Conn, l: &Lines) {
    let mut r = BufReader::new(ConnRef(conn));
    let mut line = String::new();
    loop {
        if !r.get_ref().0.mark_idle() {
            break;
        }
        let _ = l.idle.send(());
        line.clear();
        match r.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if !r.get_ref().0.mark_active() {
            break;
        }
        let reply: &[u8] = match line.trim() {
            "ping" => b"pong\n",
            "panic" => panic!("handler asked to panic"),
            "hold" => {
                let _ = l.held.send(());
                let cancelled = r.get_ref().0.cancel().channel();
                select! {
                    recv(l.release) -> _ => b"done\n",
                    recv(cancelled) -> _ => b"cancelled\n",
                }
            }
            _ => b"?\n",
        };
        if r.get_mut().0.write_all(reply).is_err() {
            break;
        }
    }
    let _ = l.closed.send(());
}

/// `BufReader` needs `Read` by value; borrow the connection.
struct ConnRef<'a>(&'a mut Conn);
impl Read for ConnRef<'_> {
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(b)
    }
}

struct Harness {
    handle: ServerHandle,
    held: Receiver<()>,
    release: Sender<()>,
    idle: Receiver<()>,
    closed: Receiver<()>,
}

fn start(builder: stead_core::ServerBuilder) -> Harness {
    let (held_tx, held) = unbounded();
    let (release, release_rx) = unbounded();
    let (idle_tx, idle) = unbounded();
    let (closed_tx, closed) = unbounded();
    let lines = Arc::new(Lines {
        held: held_tx,
        release: release_rx,
        idle: idle_tx,
        closed: closed_tx,
    });
    let handle = builder
        .bind("127.0.0.1:0")
        .unwrap()
        .serve(move |mut c: Conn| serve_lines(&mut c, &lines));
    Harness {
        handle,
        held,
        release,
        idle,
        closed,
    }
}

fn client(h: &Harness) -> BufReader<TcpStream> {
    let s = TcpStream::connect(h.handle.local_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    BufReader::new(s)
}

fn ask(c: &mut BufReader<TcpStream>, what: &str) -> std::io::Result<String> {
    c.get_mut().write_all(format!("{what}\n").as_bytes())?;
    let mut s = String::new();
    c.read_line(&mut s)?;
    Ok(s)
}

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn serves_a_thousand_concurrent_connections() {
    let h = start(Server::builder());
    let mut clients: Vec<_> = (0..1000).map(|_| client(&h)).collect();
    for c in &mut clients {
        c.get_mut().write_all(b"ping\n").unwrap();
    }
    for c in &mut clients {
        let mut s = String::new();
        c.read_line(&mut s).unwrap();
        assert_eq!(s, "pong\n");
    }
    let stats = h.handle.stats();
    assert_eq!(stats.accepted, 1000);
    assert_eq!(
        stats.active, 1000,
        "all connections open at once, one thread each"
    );
    drop(clients);
    let report = h.handle.shutdown(WAIT);
    assert_eq!(report.still_running, 0);
}

#[test]
fn a_panicking_handler_does_not_take_the_server_down() {
    let h = start(Server::builder());
    let mut bad = client(&h);
    bad.get_mut().write_all(b"panic\n").unwrap();
    let mut s = String::new();
    assert_eq!(
        bad.read_line(&mut s).unwrap(),
        0,
        "panicked connection is closed"
    );
    let mut good = client(&h);
    assert_eq!(ask(&mut good, "ping").unwrap(), "pong\n");
    // The count lands just after the unwinding closed the socket.
    let deadline = std::time::Instant::now() + WAIT;
    while h.handle.stats().panicked != 1 {
        assert!(std::time::Instant::now() < deadline, "panic not counted");
        std::thread::yield_now();
    }
    drop(good);
    h.handle.shutdown(WAIT);
}

#[test]
fn the_connection_limit_holds_accept_back_until_a_slot_frees() {
    let h = start(Server::builder().max_connections(2));
    let mut a = client(&h);
    let mut b = client(&h);
    assert_eq!(ask(&mut a, "ping").unwrap(), "pong\n");
    assert_eq!(ask(&mut b, "ping").unwrap(), "pong\n");
    // The third connects (kernel backlog) but is not served.
    let mut c = client(&h);
    c.get_ref()
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let err = ask(&mut c, "ping").unwrap_err();
    assert!(matches!(
        err.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut
    ));
    assert_eq!(h.handle.stats().accepted, 2);
    assert!(h.handle.stats().limit_pauses >= 1);
    // Free a slot: the waiting connection is accepted and answered.
    drop(a);
    c.get_ref().set_read_timeout(Some(WAIT)).unwrap();
    let mut s = String::new();
    c.read_line(&mut s).unwrap();
    assert_eq!(s, "pong\n");
    assert_eq!(h.handle.stats().accepted, 3);
    drop((b, c));
    h.handle.shutdown(WAIT);
}

/// Fails the first `n` spawns, like a process at its thread limit.
struct FailingSpawner {
    left: AtomicUsize,
}

impl Spawner for FailingSpawner {
    fn spawn(&self, name: String, stack: usize, job: Job) -> Result<(), (std::io::Error, Job)> {
        if self
            .left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err((std::io::Error::from(ErrorKind::WouldBlock), job));
        }
        ThreadSpawner.spawn(name, stack, job)
    }
}

#[test]
fn failed_thread_creation_backs_off_and_recovers_without_losing_the_connection() {
    let h = start(Server::builder().spawner(FailingSpawner {
        left: AtomicUsize::new(3),
    }));
    let mut c = client(&h);
    assert_eq!(ask(&mut c, "ping").unwrap(), "pong\n");
    let stats = h.handle.stats();
    assert_eq!(stats.spawn_errors, 3);
    assert_eq!(stats.accepted, 1);
    drop(c);
    h.handle.shutdown(WAIT);
}

#[test]
fn graceful_shutdown_drains_in_flight_closes_idle_and_refuses_new() {
    let h = start(Server::builder());
    let addr = h.handle.local_addr();
    let mut idle = client(&h);
    assert_eq!(ask(&mut idle, "ping").unwrap(), "pong\n");
    let mut busy = client(&h);
    busy.get_mut().write_all(b"hold\n").unwrap();
    h.held.recv_timeout(WAIT).unwrap();
    // Both handlers are now waiting: one idle, one in a request.
    let (idle_ch, closed, release) = (h.idle.clone(), h.closed.clone(), h.release.clone());
    while idle_ch.try_recv().is_ok() {}
    let handle = h.handle;
    let shut = std::thread::spawn(move || handle.shutdown(WAIT));
    // The idle connection is closed first...
    closed.recv_timeout(WAIT).unwrap();
    let mut s = String::new();
    assert_eq!(idle.read_line(&mut s).unwrap(), 0);
    // ...after the listener closed: new connections are refused.
    let e = TcpStream::connect(addr).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ConnectionRefused);
    // The in-flight request completes, then its connection closes.
    release.send(()).unwrap();
    busy.read_line(&mut s).unwrap();
    assert_eq!(s, "done\n");
    s.clear();
    assert_eq!(busy.read_line(&mut s).unwrap(), 0);
    let report = shut.join().unwrap();
    assert_eq!(report.open_at_start, 2);
    assert_eq!(report.idle_closed, 1);
    assert_eq!(report.drained, 1);
    assert_eq!((report.cancelled, report.still_running), (0, 0));
    assert!(report.is_clean());
}

#[test]
fn shutdown_cancels_what_outlives_the_grace_period() {
    let h = start(Server::builder());
    let mut busy = client(&h);
    busy.get_mut().write_all(b"hold\n").unwrap();
    h.held.recv_timeout(WAIT).unwrap();
    let report = h.handle.shutdown(Duration::from_millis(50));
    assert_eq!(report.open_at_start, 1);
    assert_eq!(report.cancelled, 1);
    assert_eq!(report.still_running, 0, "the handler honoured its token");
    // The handler saw its token fire; a cancelled Conn refuses to write, so
    // the client sees the connection close.
    h.closed.recv_timeout(WAIT).unwrap();
    let mut s = String::new();
    assert_eq!(busy.read_line(&mut s).unwrap(), 0);
}

#[test]
fn shutdown_reports_handlers_that_ignore_cancellation() {
    let (stuck_tx, stuck_rx) = bounded::<()>(0);
    let (entered_tx, entered_rx) = bounded::<()>(1);
    let handle = Server::builder()
        .cancel_wait(Duration::from_millis(50))
        .bind("127.0.0.1:0")
        .unwrap()
        .serve(move |_c: Conn| {
            entered_tx.send(()).unwrap();
            let _ = stuck_rx.recv();
        });
    let _c = TcpStream::connect(handle.local_addr()).unwrap();
    entered_rx.recv_timeout(WAIT).unwrap();
    let report = handle.shutdown(Duration::from_millis(10));
    assert_eq!((report.cancelled, report.still_running), (1, 1));
    drop(stuck_tx);
}
