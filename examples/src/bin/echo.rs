//! `echo`: a TCP echo server on stead's event loop directly (no HTTP): one
//! thread, readiness callbacks, a timer that closes idle connections, and
//! signals (SIGHUP prints statistics; SIGINT/SIGTERM stop it cleanly).
//!
//! ```text
//! cargo run --release -p stead-examples --bin echo
//! nc 127.0.0.1 7007        # type lines, they come back
//! kill -HUP <pid>          # prints connection statistics
//! ```

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::rc::Rc;
use std::time::{Duration, Instant};

use clap::Parser;
use stead_eventloop::{EventLoop, Interest, PostAction, Token};

/// A TCP echo server on the stead event loop.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "ECHO_ADDR", default_value = "127.0.0.1:7007")]
    addr: SocketAddr,
    /// Close connections idle for this many seconds.
    #[arg(long, env = "ECHO_IDLE_SECS", default_value_t = 30.0)]
    idle_secs: f64,
    /// Maximum concurrent connections; beyond it new ones are closed at once.
    #[arg(long, env = "ECHO_MAX_CONNECTIONS", default_value_t = 10_000)]
    max_connections: usize,
}

/// A connection's pending output (bounded: a peer that does not read while
/// sending gets no more of its input read).
struct Conn {
    stream: TcpStream,
    pending: Vec<u8>,
    last_active: Rc<Cell<Instant>>,
}

const MAX_PENDING: usize = 256 * 1024;

#[derive(Default)]
struct Stats {
    accepted: Cell<u64>,
    idle_closed: Cell<u64>,
    bytes: Cell<u64>,
}

type Table = Rc<RefCell<HashMap<u64, (Token<Conn>, Rc<Cell<Instant>>)>>>;

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    if let Err(e) = run(Args::parse()) {
        eprintln!("echo: {e}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> io::Result<()> {
    if !(args.idle_secs > 0.0 && args.idle_secs <= 86_400.0) {
        return Err(io::Error::other("--idle-secs must be in (0, 86400]"));
    }
    let shutdown = stead_core::shutdown_on_signals()?;
    let idle = Duration::from_secs_f64(args.idle_secs);
    let listener = TcpListener::bind(args.addr)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {}: {e}", args.addr)))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let mut lp = EventLoop::new()?;
    let table: Table = Rc::default();
    let stats = Rc::new(Stats::default());
    let next_id = Cell::new(0u64);

    // Accept: register each new connection with an echo callback.
    let (t, s, max) = (table.clone(), stats.clone(), args.max_connections);
    lp.register(
        listener,
        Interest::READ,
        move |_ready, l: &mut TcpListener, lp| {
            loop {
                let (stream, _) = match l.accept() {
                    Ok(c) => c,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return PostAction::Continue,
                    Err(e) => {
                        log::warn!("echo: accept failed: {e}");
                        return PostAction::NoProgress;
                    }
                };
                if t.borrow().len() >= max || stream.set_nonblocking(true).is_err() {
                    continue; // dropped: closed at once
                }
                s.accepted.set(s.accepted.get() + 1);
                let id = next_id.get();
                next_id.set(id + 1);
                let last = Rc::new(Cell::new(Instant::now()));
                let conn = Conn {
                    stream,
                    pending: Vec::new(),
                    last_active: last.clone(),
                };
                let (t2, s2) = (t.clone(), s.clone());
                let reg = lp.register(conn, Interest::READ, move |ready, c: &mut Conn, lp| {
                    let action = echo(ready.writable, c, &s2);
                    if let Some(tok) = t2.borrow().get(&id).map(|e| e.0) {
                        let want = if c.pending.is_empty() {
                            Interest::READ
                        } else {
                            Interest::WRITE
                        };
                        if action == PostAction::Continue {
                            let _ = lp.set_interest(tok, want);
                        }
                    }
                    if action == PostAction::Remove {
                        t2.borrow_mut().remove(&id);
                    }
                    action
                });
                match reg {
                    Ok(tok) => {
                        t.borrow_mut().insert(id, (tok, last));
                    }
                    Err(e) => log::warn!("echo: cannot register a connection: {e}"),
                }
            }
        },
    )?;

    // Once a second, close connections idle for longer than `idle`.
    let (t, s) = (table.clone(), stats.clone());
    lp.every(Duration::from_secs(1), move |lp| {
        let now = Instant::now();
        let stale: Vec<(u64, Token<Conn>)> = t
            .borrow()
            .iter()
            .filter(|(_, (_, last))| now.duration_since(last.get()) >= idle)
            .map(|(id, (tok, _))| (*id, *tok))
            .collect();
        for (id, tok) in stale {
            t.borrow_mut().remove(&id);
            lp.remove(tok);
            s.idle_closed.set(s.idle_closed.get() + 1);
        }
    })?;

    // SIGHUP: print statistics.
    let (t, s) = (table.clone(), stats.clone());
    lp.on_signal(signal_hook::consts::SIGHUP, move |_lp, _sig| {
        println!(
            "echo: {} open, {} accepted, {} closed idle, {} bytes echoed",
            t.borrow().len(),
            s.accepted.get(),
            s.idle_closed.get(),
            s.bytes.get()
        );
    })?;

    println!("stead echo: listening on tcp://{addr} (idle timeout {idle:?}, Ctrl-C to stop)");
    lp.run(&shutdown)?;
    println!(
        "stead echo: stopped: {} connections closed, {} accepted in all",
        table.borrow().len(),
        stats.accepted.get()
    );
    Ok(())
}

/// Read what is there and write it back; keep what the peer cannot take yet.
fn echo(writable: bool, c: &mut Conn, stats: &Stats) -> PostAction {
    c.last_active.set(Instant::now());
    if writable || !c.pending.is_empty() {
        match flush(c) {
            Ok(()) => {}
            Err(_) => return PostAction::Remove,
        }
        if !c.pending.is_empty() {
            return PostAction::Continue; // wait for writability
        }
    }
    let mut buf = [0u8; 16 * 1024];
    loop {
        match c.stream.read(&mut buf) {
            Ok(0) => return PostAction::Remove,
            Ok(n) => {
                stats.bytes.set(stats.bytes.get() + n as u64);
                c.pending.extend_from_slice(&buf[..n]);
                if flush(c).is_err() {
                    return PostAction::Remove;
                }
                if c.pending.len() >= MAX_PENDING {
                    return PostAction::Continue;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return PostAction::Continue,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return PostAction::Remove,
        }
    }
}

fn flush(c: &mut Conn) -> io::Result<()> {
    while !c.pending.is_empty() {
        match c.stream.write(&c.pending) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                c.pending.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl std::os::fd::AsFd for Conn {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.stream.as_fd()
    }
}
