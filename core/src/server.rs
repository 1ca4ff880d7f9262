//! The thread-per-connection TCP server: accept loop, connection limit,
//! per-connection tokens, panics contained, graceful drain.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::backoff::Backoff;
use crate::cancel::{Cancel, CancelReason};
use crate::io::{Conn, ConnTracker, Listener};

/// Handles one connection on its own thread. Implemented for every
/// `Fn(Conn) + Send + Sync + 'static`.
pub trait Handler: Send + Sync + 'static {
    /// Serve the connection until it is done; the stream closes on return.
    fn handle(&self, conn: Conn<TcpStream>);
}

impl<F> Handler for F
where
    F: Fn(Conn<TcpStream>) + Send + Sync + 'static,
{
    fn handle(&self, conn: Conn<TcpStream>) {
        self(conn)
    }
}

/// A unit of work for a [`Spawner`]: a connection's whole life.
pub type Job = Box<dyn FnOnce() + Send + 'static>;

/// Starts connection threads. The default uses `std::thread::Builder`;
/// tests inject failures through their own implementation.
pub trait Spawner: Send + Sync + 'static {
    /// Run `job` on a new thread named `name` with `stack_size` bytes of stack.
    /// On failure, hand the job back with the error so it can be retried.
    fn spawn(&self, name: String, stack_size: usize, job: Job) -> Result<(), (io::Error, Job)>;
}

/// A shared spawner, e.g. one a builder keeps for several servers.
impl<T: Spawner + ?Sized> Spawner for Arc<T> {
    fn spawn(&self, name: String, stack_size: usize, job: Job) -> Result<(), (io::Error, Job)> {
        (**self).spawn(name, stack_size, job)
    }
}

/// The standard spawner: one OS thread per job.
#[derive(Debug, Default, Clone, Copy)]
pub struct ThreadSpawner;

impl Spawner for ThreadSpawner {
    fn spawn(&self, name: String, stack_size: usize, job: Job) -> Result<(), (io::Error, Job)> {
        // std consumes the closure even on failure: park the job where we can
        // take it back.
        let slot = Arc::new(Mutex::new(Some(job)));
        let theirs = slot.clone();
        let res = std::thread::Builder::new()
            .name(name)
            .stack_size(stack_size)
            .spawn(move || {
                let job = theirs.lock().unwrap_or_else(|e| e.into_inner()).take();
                if let Some(job) = job {
                    job();
                }
            });
        match res {
            Ok(_) => Ok(()),
            Err(e) => {
                let job = slot
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take()
                    .expect("a thread that failed to start did not take its job");
                Err((e, job))
            }
        }
    }
}

/// Configuration for a [`Server`].
#[derive(Clone)]
pub struct ServerBuilder {
    max_connections: usize,
    stack_size: usize,
    thread_name: String,
    reuse_port: bool,
    backlog: i32,
    nodelay: bool,
    block_in_syscalls: bool,
    cancel_wait: Duration,
    spawner: Arc<dyn Spawner>,
}

impl fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("max_connections", &self.max_connections)
            .field("stack_size", &self.stack_size)
            .field("thread_name", &self.thread_name)
            .field("reuse_port", &self.reuse_port)
            .field("backlog", &self.backlog)
            .finish_non_exhaustive()
    }
}

impl Default for ServerBuilder {
    fn default() -> Self {
        ServerBuilder {
            max_connections: 4096,
            stack_size: 256 * 1024,
            thread_name: "stead-conn".into(),
            reuse_port: false,
            backlog: 1024,
            nodelay: true,
            block_in_syscalls: true,
            cancel_wait: Duration::from_secs(1),
            spawner: Arc::new(ThreadSpawner),
        }
    }
}

impl ServerBuilder {
    /// Defaults: 4,096 connections, 256 KiB stacks, threads named
    /// `stead-conn`, backlog 1,024, `TCP_NODELAY` on, no `SO_REUSEPORT`.
    pub fn new() -> Self {
        Self::default()
    }

    /// At most `n` connections at once; at the limit the server stops
    /// accepting (new connections wait in the kernel backlog) until one closes.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// Stack size of connection threads (default 256 KiB).
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = bytes;
        self
    }

    /// Name of connection threads (default `stead-conn`).
    pub fn thread_name(mut self, name: impl Into<String>) -> Self {
        self.thread_name = name.into();
        self
    }

    /// Set `SO_REUSEPORT` so several servers (or processes) can share the port.
    pub fn reuse_port(mut self, on: bool) -> Self {
        self.reuse_port = on;
        self
    }

    /// The `listen` backlog (default 1,024).
    pub fn backlog(mut self, n: i32) -> Self {
        self.backlog = n;
        self
    }

    /// Set `TCP_NODELAY` on accepted connections (default on).
    pub fn nodelay(mut self, on: bool) -> Self {
        self.nodelay = on;
        self
    }

    /// Hand handlers connections in blocking-syscall mode (default on; see
    /// [`Conn::block_in_syscalls`]): the socket is blocking, a read or write
    /// is one syscall bounded by `SO_RCVTIMEO`/`SO_SNDTIMEO`, and a cancel
    /// shuts the socket down. Turn it off for a handler that uses the raw
    /// socket itself (`get_ref`, `as_fd`: peeking, its own epoll, a
    /// `try_clone`) and expects it non-blocking; [`Conn::get_mut`] and
    /// [`Conn::into_inner`] make it non-blocking again anyway.
    pub fn block_in_syscalls(mut self, on: bool) -> Self {
        self.block_in_syscalls = on;
        self
    }

    /// How long [`ServerHandle::shutdown`] waits for connections to exit after
    /// cancelling them at the end of the grace period (default 1 s).
    pub fn cancel_wait(mut self, d: Duration) -> Self {
        self.cancel_wait = d;
        self
    }

    /// Replace the thread spawner (for fault injection in tests).
    pub fn spawner(mut self, s: impl Spawner) -> Self {
        self.spawner = Arc::new(s);
        self
    }

    /// Bind the listening socket. The address may use port 0.
    pub fn bind(self, addr: impl ToSocketAddrs) -> io::Result<Server> {
        let listener = bind_listener(addr, self.reuse_port, self.backlog)?;
        Server::from_listener(listener, self)
    }
}

/// The largest connection limit, at most `max`, whose connections fit in
/// the process's open-file limit (`RLIMIT_NOFILE`) at `fds_per_connection`
/// descriptors each, keeping 64 for everything else. A lower limit is
/// logged as a warning that names the numbers, so hitting the descriptor
/// limit is explained up front instead of as accept errors under load.
///
/// ```
/// // Far below any real limit: unchanged.
/// assert_eq!(stead_core::fit_fd_limit(10, 2), 10);
/// ```
pub fn fit_fd_limit(max: usize, fds_per_connection: usize) -> usize {
    let Ok(limit) = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .map(usize::try_from)
        .transpose()
    else {
        return max;
    };
    let Some(limit) = limit else { return max }; // unlimited
    let fit = limit.saturating_sub(64) / fds_per_connection.max(1);
    if max <= fit {
        return max;
    }
    let fit = fit.max(1);
    log::warn!(
        "stead: max_connections {max} needs about {} descriptors ({fds_per_connection} per \
         connection) but the open-file limit (ulimit -n) is {limit}; serving at most {fit} \
         connections (raise the limit to allow more)",
        max * fds_per_connection + 64
    );
    fit
}

/// Bind a TCP listener with `SO_REUSEADDR`, optional `SO_REUSEPORT` and a backlog.
pub fn bind_listener(
    addr: impl ToSocketAddrs,
    reuse_port: bool,
    backlog: i32,
) -> io::Result<TcpListener> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType, sockopt};
    let mut last = None;
    for addr in addr.to_socket_addrs()? {
        let family = if addr.is_ipv4() {
            AddressFamily::INET
        } else {
            AddressFamily::INET6
        };
        let attempt = (|| -> io::Result<TcpListener> {
            let fd =
                rustix::net::socket_with(family, SocketType::STREAM, SocketFlags::CLOEXEC, None)?;
            sockopt::set_socket_reuseaddr(&fd, true)?;
            if reuse_port {
                sockopt::set_socket_reuseport(&fd, true)?;
            }
            rustix::net::bind(&fd, &addr)?;
            rustix::net::listen(&fd, backlog)?;
            Ok(TcpListener::from(fd))
        })();
        match attempt {
            Ok(l) => return Ok(l),
            Err(e) => {
                last = Some(io::Error::new(
                    e.kind(),
                    format!("stead: cannot listen on {addr}: {e}"),
                ))
            }
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "stead: address resolved to nothing",
        )
    }))
}

/// A bound thread-per-connection server, not yet serving.
///
/// ```
/// use std::io::{Read, Write};
/// use std::time::Duration;
/// use stead_core::Server;
///
/// let server = Server::bind("127.0.0.1:0").unwrap();
/// let addr = server.local_addr().unwrap();
/// let handle = server.serve(|mut conn: stead_core::Conn| {
///     let mut buf = [0u8; 64];
///     while let Ok(n @ 1..) = conn.read(&mut buf) {
///         if conn.write_all(&buf[..n]).is_err() { break; }
///     }
/// });
/// let mut c = std::net::TcpStream::connect(addr).unwrap();
/// c.write_all(b"ping").unwrap();
/// let mut got = [0u8; 4];
/// c.read_exact(&mut got).unwrap();
/// assert_eq!(&got, b"ping");
/// drop(c);
/// let report = handle.shutdown(Duration::from_secs(1));
/// assert_eq!(report.still_running, 0);
/// ```
pub struct Server {
    listener: TcpListener,
    config: ServerBuilder,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("listener", &self.listener)
            .field("config", &self.config)
            .finish()
    }
}

impl Server {
    /// Bind with default settings.
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<Server> {
        ServerBuilder::new().bind(addr)
    }

    /// A builder for non-default settings.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::new()
    }

    /// Serve on an already bound listener.
    pub fn from_listener(listener: TcpListener, config: ServerBuilder) -> io::Result<Server> {
        listener.set_nonblocking(true)?;
        Ok(Server { listener, config })
    }

    /// The bound address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Start the accept loop on its own thread (`stead-accept`) and return a handle.
    pub fn serve<H: Handler>(mut self, handler: H) -> ServerHandle {
        // A connection holds its socket; a non-blocking one also its
        // thread's wake-up eventfd (blocking-syscall mode polls only if a
        // handler calls `Conn::wait_readable`/`wait_writable`).
        let per_connection = if self.config.block_in_syscalls { 1 } else { 2 };
        self.config.max_connections = fit_fd_limit(self.config.max_connections, per_connection);
        let local_addr = self.listener.local_addr().ok();
        let shared = Arc::new(Shared {
            root: Cancel::new(),
            draining: Arc::new(AtomicBool::new(false)),
            conns: Mutex::new(HashMap::new()),
            changed: Condvar::new(),
            stats: Counters::default(),
            config: self.config,
        });
        let accept_cancel = Cancel::new();
        // Wake an accept loop paused at the connection limit.
        let waker = {
            let shared = shared.clone();
            accept_cancel.on_cancel(move |_| {
                let _g = shared.lock();
                shared.changed.notify_all();
            })
        };
        waker.forget();
        let listener = Listener::from_std(self.listener, accept_cancel.clone());
        let sh = shared.clone();
        let handler: Arc<dyn Handler> = Arc::new(handler);
        let thread = std::thread::Builder::new()
            .name("stead-accept".into())
            .spawn(move || match listener {
                Ok(l) => accept_loop(l, sh, handler),
                Err(e) => log::error!("stead: cannot start the accept loop: {e}"),
            })
            .expect("stead: cannot spawn the accept thread");
        ServerHandle {
            shared,
            accept_cancel,
            accept_thread: Some(thread),
            local_addr,
        }
    }
}

/// Counts kept by a running server.
#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    completed: AtomicU64,
    panicked: AtomicU64,
    accept_errors: AtomicU64,
    spawn_errors: AtomicU64,
    limit_pauses: AtomicU64,
}

/// A snapshot of a server's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Connections accepted since start.
    pub accepted: u64,
    /// Connections open now.
    pub active: u64,
    /// Connections whose handler has returned (or panicked).
    pub completed: u64,
    /// Handlers that panicked.
    pub panicked: u64,
    /// Failed `accept` calls (resource exhaustion and others).
    pub accept_errors: u64,
    /// Failed attempts to start a connection thread.
    pub spawn_errors: u64,
    /// Times the accept loop paused at the connection limit.
    pub limit_pauses: u64,
}

/// A connection's state as drain sees it: one word, changed by CAS only.
const ACTIVE: u8 = 0;
const IDLE: u8 = 1;
/// Claimed by a shutdown while idle: the connection must close.
const CLOSING: u8 = 2;

struct Slot {
    cancel: Cancel,
    state: AtomicU8,
    /// The server's flag. Its own allocation, read-mostly: a connection
    /// checks it twice per request, which must not touch a reference count
    /// shared with every other connection thread.
    draining: Arc<AtomicBool>,
}

impl Slot {
    fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Claim an idle connection for closing; `false` if it is busy (or already claimed).
    fn claim_idle(&self) -> bool {
        if self
            .state
            .compare_exchange(IDLE, CLOSING, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            self.cancel.cancel_with(CancelReason::Shutdown);
            return true;
        }
        false
    }
}

impl ConnTracker for Slot {
    fn idle(&self) -> bool {
        if self.state.load(Ordering::SeqCst) == CLOSING {
            return false;
        }
        self.state.store(IDLE, Ordering::SeqCst);
        // Draining began before (or while) we went idle: close now, unless
        // the shutdown's own scan claimed us first (then it cancelled us).
        if self.is_draining() {
            self.claim_idle();
            return false;
        }
        true
    }

    fn active(&self) -> bool {
        match self
            .state
            .compare_exchange(IDLE, ACTIVE, Ordering::SeqCst, Ordering::SeqCst)
        {
            Ok(_) => true,
            Err(current) => current == ACTIVE,
        }
    }

    fn draining(&self) -> bool {
        self.is_draining()
    }
}

struct Shared {
    /// Parent of every connection token; cancelled when the grace period ends.
    root: Cancel,
    draining: Arc<AtomicBool>,
    conns: Mutex<HashMap<u64, Arc<Slot>>>,
    /// Notified whenever a connection ends (and when accepting is cancelled).
    changed: Condvar,
    stats: Counters,
    config: ServerBuilder,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Arc<Slot>>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Removes the connection from the table when its thread ends, however it ends.
struct ConnGuard {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let mut conns = self.shared.lock();
        conns.remove(&self.id);
        self.shared.stats.completed.fetch_add(1, Ordering::Relaxed);
        drop(conns);
        self.shared.changed.notify_all();
    }
}

fn accept_loop(mut listener: Listener, shared: Arc<Shared>, handler: Arc<dyn Handler>) {
    let cancel = listener.cancel().clone();
    let mut spawn_backoff = Backoff::new();
    let mut next_id: u64 = 0;
    let max = shared.config.max_connections;
    loop {
        // Backpressure: at the limit, stop accepting until a connection ends.
        {
            let mut conns = shared.lock();
            if conns.len() >= max && !cancel.is_cancelled() {
                shared.stats.limit_pauses.fetch_add(1, Ordering::Relaxed);
                log::warn!("stead: connection limit ({max}) reached; accepting paused");
                while conns.len() >= max && !cancel.is_cancelled() {
                    conns = shared
                        .changed
                        .wait(conns)
                        .unwrap_or_else(|e| e.into_inner());
                }
            }
        }
        let counter = &shared.stats.accept_errors;
        let Ok((stream, peer)) = listener.accept_or_back_off(|_| {
            counter.fetch_add(1, Ordering::Relaxed);
        }) else {
            return; // cancelled: shutting down
        };
        if shared.config.nodelay {
            let _ = stream.set_nodelay(true);
        }
        let id = next_id;
        next_id += 1;
        let conn_cancel = shared.root.child();
        let slot = Arc::new(Slot {
            cancel: conn_cancel.clone(),
            state: AtomicU8::new(ACTIVE),
            draining: shared.draining.clone(),
        });
        shared.lock().insert(id, slot.clone());
        shared.stats.accepted.fetch_add(1, Ordering::Relaxed);
        let guard = ConnGuard {
            shared: shared.clone(),
            id,
        };
        let h = handler.clone();
        let sh = shared.clone();
        let block_in_syscalls = shared.config.block_in_syscalls;
        let mut job: Job = Box::new(move || {
            let _guard = guard;
            let mut conn = Conn::from_nonblocking(stream, conn_cancel);
            conn.set_tracker(slot);
            conn.set_sticky();
            // The thread waits for nothing else: let the kernel block it.
            if block_in_syscalls && let Err(e) = conn.block_in_syscalls() {
                log::debug!("stead: connection from {peer} stays non-blocking: {e}");
            }
            if catch_unwind(AssertUnwindSafe(|| h.handle(conn))).is_err() {
                sh.stats.panicked.fetch_add(1, Ordering::Relaxed);
                log::error!(
                    "stead: connection handler for {peer} panicked; connection closed, server continues"
                );
            }
        });
        // A failed spawn keeps the connection and retries: backpressure, not loss.
        loop {
            match shared.config.spawner.spawn(
                shared.config.thread_name.clone(),
                shared.config.stack_size,
                job,
            ) {
                Ok(()) => {
                    let failures = spawn_backoff.reset();
                    if failures > 0 {
                        log::warn!("stead: thread creation recovered after {failures} failures");
                    }
                    break;
                }
                Err((e, j)) => {
                    job = j;
                    shared.stats.spawn_errors.fetch_add(1, Ordering::Relaxed);
                    let delay = spawn_backoff.next();
                    if spawn_backoff.failures == 1 {
                        log::error!(
                            "stead: cannot start a connection thread: {e} (thread limit or memory; \
                             lower max_connections or stack_size); retrying with back-off, accept paused"
                        );
                    }
                    if cancel.sleep(delay).is_err() {
                        // Shutting down: the job (and its connection) is dropped,
                        // which unregisters the connection.
                        return;
                    }
                }
            }
        }
    }
}

/// What a graceful shutdown did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Connections open when shutdown began.
    pub open_at_start: usize,
    /// Idle connections closed at once.
    pub idle_closed: usize,
    /// Busy connections that finished on their own within the grace period.
    pub drained: usize,
    /// Connections still running at the end of the grace period, then cancelled.
    pub cancelled: usize,
    /// Connections whose thread had not ended `cancel_wait` after being cancelled.
    pub still_running: usize,
    /// Time the shutdown took.
    pub elapsed: Duration,
}

impl ShutdownReport {
    /// Whether every connection ended without being cancelled.
    pub fn is_clean(&self) -> bool {
        self.cancelled == 0 && self.still_running == 0
    }
}

impl fmt::Display for ShutdownReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} open: {} idle closed, {} drained, {} cancelled, {} still running, in {:?}",
            self.open_at_start,
            self.idle_closed,
            self.drained,
            self.cancelled,
            self.still_running,
            self.elapsed
        )
    }
}

/// A running [`Server`]. Dropping it shuts the server down with no grace period.
pub struct ServerHandle {
    shared: Arc<Shared>,
    accept_cancel: Cancel,
    accept_thread: Option<JoinHandle<()>>,
    local_addr: Option<SocketAddr>,
}

impl fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerHandle")
            .field("local_addr", &self.local_addr)
            .field("stats", &self.stats())
            .finish()
    }
}

impl ServerHandle {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
            .expect("a bound listener has a local address")
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> ServerStats {
        let s = &self.shared.stats;
        ServerStats {
            accepted: s.accepted.load(Ordering::Relaxed),
            active: self.shared.lock().len() as u64,
            completed: s.completed.load(Ordering::Relaxed),
            panicked: s.panicked.load(Ordering::Relaxed),
            accept_errors: s.accept_errors.load(Ordering::Relaxed),
            spawn_errors: s.spawn_errors.load(Ordering::Relaxed),
            limit_pauses: s.limit_pauses.load(Ordering::Relaxed),
        }
    }

    /// The parent token of every connection: cancelling it cancels all of them.
    pub fn connections_cancel(&self) -> &Cancel {
        &self.shared.root
    }

    /// Block until `signal` is cancelled (e.g. [`shutdown_on_signals`](crate::shutdown_on_signals)),
    /// then shut down gracefully with `grace`.
    pub fn run_until(self, signal: &Cancel, grace: Duration) -> ShutdownReport {
        signal.wait();
        self.shutdown(grace)
    }

    /// Graceful shutdown: stop accepting and close the listener at once,
    /// close idle connections, let busy ones finish until `grace` passes,
    /// then cancel the rest and wait up to `cancel_wait` for them to end.
    pub fn shutdown(mut self, grace: Duration) -> ShutdownReport {
        self.shutdown_inner(grace)
    }

    fn shutdown_inner(&mut self, grace: Duration) -> ShutdownReport {
        let cancel_wait = self.shared.config.cancel_wait;
        graceful_shutdown(
            &mut ThreadDrain {
                handle: self,
                idle_ids: HashSet::new(),
            },
            grace,
            cancel_wait,
        )
    }
}

/// [`Drain`] over the thread server's connection table.
struct ThreadDrain<'a> {
    handle: &'a mut ServerHandle,
    /// Connections claimed as idle by the drain (closing, not cancelled).
    idle_ids: HashSet<u64>,
}

impl Drain for ThreadDrain<'_> {
    fn wait_closed(&mut self, deadline: Instant) -> usize {
        let shared = &self.handle.shared;
        let conns = shared.lock();
        let left = deadline.saturating_duration_since(Instant::now());
        let (conns, _) = shared
            .changed
            .wait_timeout_while(conns, left, |c| !c.is_empty())
            .unwrap_or_else(|e| e.into_inner());
        conns.len()
    }

    fn stop_accepting(&mut self) {
        self.handle
            .accept_cancel
            .cancel_with(CancelReason::Shutdown);
        if let Some(t) = self.handle.accept_thread.take() {
            let _ = t.join();
        }
    }

    fn start_drain(&mut self) -> (usize, usize) {
        let shared = &self.handle.shared;
        shared.draining.store(true, Ordering::SeqCst);
        let conns = shared.lock();
        for (id, slot) in conns.iter() {
            if slot.claim_idle() {
                self.idle_ids.insert(*id);
            }
        }
        (conns.len(), self.idle_ids.len())
    }

    fn cancel_rest(&mut self) -> usize {
        let shared = &self.handle.shared;
        let busy = {
            let conns = shared.lock();
            conns
                .keys()
                .filter(|id| !self.idle_ids.contains(id))
                .count()
        };
        shared.root.cancel_with(CancelReason::Shutdown);
        busy
    }
}

/// The steps of a graceful shutdown, over a server's own connection table.
///
/// [`graceful_shutdown`] runs them in order and makes the report, so every
/// stead server (this crate's thread server, stead-eventloop's event
/// server) drains the same way.
pub trait Drain {
    /// Stop accepting; return once the listener is closed (new connections
    /// are refused from then on).
    fn stop_accepting(&mut self);
    /// Enter draining mode: idle connections close now, busy ones after
    /// their current request. Returns (connections open, of which idle and
    /// closed or closing now).
    fn start_drain(&mut self) -> (usize, usize);
    /// Block until no connection is open or `deadline` passes; returns how
    /// many are still open.
    fn wait_closed(&mut self, deadline: Instant) -> usize;
    /// The grace period is over: cancel every connection still open.
    /// Returns how many of them were busy (not among the idle ones of
    /// [`start_drain`](Drain::start_drain)).
    fn cancel_rest(&mut self) -> usize;
}

/// Run a graceful shutdown: stop accepting, drain, wait up to `grace`,
/// cancel what is left and wait up to `cancel_wait` for it to end.
pub fn graceful_shutdown(
    d: &mut dyn Drain,
    grace: Duration,
    cancel_wait: Duration,
) -> ShutdownReport {
    let start = Instant::now();
    d.stop_accepting();
    let (open_at_start, idle_closed) = d.start_drain();
    let mut report = ShutdownReport {
        open_at_start,
        idle_closed,
        ..ShutdownReport::default()
    };
    if d.wait_closed(start + grace) > 0 {
        report.cancelled = d.cancel_rest();
        report.still_running = d.wait_closed(Instant::now() + cancel_wait);
    }
    report.drained = open_at_start.saturating_sub(idle_closed + report.cancelled);
    report.elapsed = start.elapsed();
    if report.still_running > 0 {
        log::warn!(
            "stead: {} connection(s) ignored cancellation and are still running",
            report.still_running
        );
    }
    report
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if self.accept_thread.is_some() {
            self.shutdown_inner(Duration::ZERO);
        }
    }
}
