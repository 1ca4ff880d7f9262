//! The event-mode server: idle connections wait in epoll, not on a thread;
//! handlers stay ordinary blocking code. The design is documented on
//! [`EventServer`].

use std::collections::HashSet;
use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use stead_core::{Cancel, CancelReason, Conn, ConnTracker, Listener, ServerStats, ShutdownReport};

use crate::sys;

mod worker;

use worker::{Control, ShardIo};

/// What to do with a connection after a [`Session`] callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Return the connection to epoll and wait until it is readable again.
    /// If it stays quiet for `timeout`, [`Session::on_timeout`] runs, then it closes.
    Park {
        /// How long the connection may stay quiet (`None`: no limit).
        timeout: Option<Duration>,
    },
    /// Close the connection now.
    Close,
}

/// Per-connection protocol state (e.g. HTTP). Must stay small: idle
/// connections hold only this.
///
/// The server calls [`on_readable`](Session::on_readable) when the socket
/// has input (or the peer hung up). Read what is there with
/// [`conn.try_read(..)`](Conn::try_read), which does not wait (`WouldBlock`
/// means no more input now), or with `conn.read(..)`, which waits for more (a blocking
/// section: the server hands this thread's other connections to a spare
/// thread meanwhile). Answer, then return [`Verdict::Park`] to wait for the
/// next request in epoll, or [`Verdict::Close`].
///
/// The socket is level-triggered: input left unread in the socket is
/// reported again, but input the session read into its own buffer is not,
/// so do not park with a complete request buffered. A session that parks
/// round after round without consuming anything (e.g. parks a hung-up
/// socket) is detected and closed, with a warning, after 64 such rounds.
/// Progress is judged by the bytes read through the `Conn`
/// ([`Conn::bytes_read`]); a session that reads through `get_mut()` instead
/// is judged by the socket's pending input, which a busy client refilling
/// the socket can make look like no progress.
pub trait Session: Send + 'static {
    /// The connection is readable. Runs on a worker thread; may block
    /// (stead's blocking calls announce it), read and write as needed, and
    /// must return once it has no more buffered input.
    fn on_readable(&mut self, conn: &mut Conn<TcpStream>) -> Verdict;
    /// A parked connection's timeout passed: write what is due (e.g. a
    /// 408) and say what happens next. Default: close. A session may also
    /// park again (say, to read and discard input for a moment before
    /// closing, so the peer sees the response instead of a reset).
    fn on_timeout(&mut self, _conn: &mut Conn<TcpStream>) -> Verdict {
        Verdict::Close
    }
    /// Whether this parked session is in the middle of a request (part of
    /// it received), so a graceful shutdown should let it finish, within the
    /// grace period, instead of closing it at once like an idle one.
    /// Default `false`.
    fn mid_request(&self) -> bool {
        false
    }
}

/// Makes a [`Session`] per accepted connection. Runs on the acceptor
/// thread: keep it quick.
pub trait SessionFactory: Send + Sync + 'static {
    /// The session type.
    type Session: Session;
    /// A new session for a connection from `peer`.
    fn new_session(&self, peer: SocketAddr) -> Self::Session;
}

/// Configuration for an [`EventServer`].
#[derive(Debug, Clone)]
pub struct EventServerBuilder {
    pub(crate) workers: usize,
    pub(crate) max_connections: usize,
    pub(crate) max_threads: Option<usize>,
    pub(crate) reuse_port: bool,
    pub(crate) backlog: i32,
    pub(crate) stack_size: usize,
    pub(crate) cancel_wait: Duration,
    pub(crate) blocking_budget: Duration,
    pub(crate) handoff_on_blocking: bool,
    pub(crate) yield_after_batch: bool,
    pub(crate) first_read_timeout: Option<Duration>,
    pub(crate) spare_idle: Duration,
    pub(crate) thread_name: String,
    pub(crate) spawner: SpawnerSlot,
}

/// The builder's optional [`Spawner`](stead_core::Spawner) (`None`: std threads).
#[derive(Clone, Default)]
pub(crate) struct SpawnerSlot(pub(crate) Option<Arc<dyn stead_core::Spawner>>);

impl fmt::Debug for SpawnerSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() { "custom" } else { "std" })
    }
}

impl Default for EventServerBuilder {
    fn default() -> Self {
        EventServerBuilder {
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            max_connections: 10_000,
            max_threads: None,
            reuse_port: false,
            backlog: 1024,
            stack_size: 256 * 1024,
            cancel_wait: Duration::from_secs(1),
            blocking_budget: Duration::from_millis(10),
            handoff_on_blocking: true,
            yield_after_batch: true,
            first_read_timeout: None,
            spare_idle: Duration::from_secs(10),
            thread_name: "stead-ev".into(),
            spawner: SpawnerSlot::default(),
        }
    }
}

impl EventServerBuilder {
    /// Defaults: one worker per CPU, 10,000 connections, `workers +
    /// min(max_connections, 10,000)` threads at most, backlog 1,024, 256 KiB stacks, 10 ms blocking
    /// budget, hand-off on announced blocking, a yield after each batch, no
    /// first-read timeout.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of shards, each with its own epoll and (normally) its own
    /// thread (default: the number of CPUs; more workers than cores loses
    /// throughput to context switches).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n.clamp(1, 1024);
        self
    }

    /// At most `n` open connections (default 10,000); at the limit the
    /// server stops accepting (new connections wait in the kernel backlog)
    /// until one closes.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// At most `n` threads running shards and blocked handlers together
    /// (default `workers + min(max_connections, 10,000)`: no worse than one
    /// thread per connection, capped like Go's default thread limit; at
    /// least `workers`). Idle connections hold no thread; only handlers
    /// blocked at the same time do. When all are blocked in handlers,
    /// shards wait for one to return.
    pub fn max_threads(mut self, n: usize) -> Self {
        self.max_threads = Some(n);
        self
    }

    /// Set `SO_REUSEPORT` on the listener.
    pub fn reuse_port(mut self, on: bool) -> Self {
        self.reuse_port = on;
        self
    }

    /// The `listen` backlog (default 1,024).
    pub fn backlog(mut self, n: i32) -> Self {
        self.backlog = n;
        self
    }

    /// Stack size of worker and spare threads (default 256 KiB).
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = bytes.max(64 * 1024);
        self
    }

    /// How long [`EventServerHandle::shutdown`] waits for busy connections
    /// to end after cancelling them at the end of the grace period (default 1 s).
    pub fn cancel_wait(mut self, d: Duration) -> Self {
        self.cancel_wait = d;
        self
    }

    /// How long a callback may run before the monitor hands its shard to a
    /// spare thread (default 10 ms; at least 1 ms). This catches handlers
    /// that compute for long or block outside stead's announced calls.
    pub fn blocking_budget(mut self, d: Duration) -> Self {
        self.blocking_budget = d.max(Duration::from_millis(1));
        self
    }

    /// Hand the shard off as soon as a handler enters one of stead's
    /// blocking calls (default on). Off: only the monitor's budget applies.
    pub fn handoff_on_blocking(mut self, on: bool) -> Self {
        self.handoff_on_blocking = on;
        self
    }

    /// Yield the CPU (`sched_yield`) after each batch of ready connections,
    /// before waiting for the next (default on).
    ///
    /// A worker under sustained load always finds more ready connections,
    /// so it keeps its CPU until the kernel preempts it, while the threads
    /// that feed it (clients or a proxy on the same machine, the
    /// application's other threads) wait for a whole time slice: requests
    /// then come back either at once or several milliseconds late. Yielding
    /// once per batch lets them run in between; on the 2-core load
    /// benchmark it cut the 99th-percentile latency about threefold and
    /// raised throughput (BENCHMARKS.md). With nothing else runnable on the
    /// CPU the call returns at once: one cheap syscall per batch. Turn it
    /// off for workers on CPUs reserved for them alone.
    pub fn yield_after_batch(mut self, on: bool) -> Self {
        self.yield_after_batch = on;
        self
    }

    /// Close a new connection that sends nothing for `t` (calling
    /// [`Session::on_timeout`] first). Default `None`: wait indefinitely,
    /// as stead-core's server does. Protocols set it (e.g. HTTP's
    /// header-read timeout against slowloris).
    pub fn first_read_timeout(mut self, t: Option<Duration>) -> Self {
        self.first_read_timeout = t;
        self
    }

    /// Thread name prefix (default `stead-ev`): workers and spares are
    /// `stead-ev-N`, plus `stead-ev-accept` and `stead-ev-mon`.
    pub fn thread_name(mut self, prefix: impl Into<String>) -> Self {
        self.thread_name = prefix.into();
        self
    }

    /// Start worker and spare threads with `spawner` instead of
    /// `std::thread` (for fault injection: a spawner that fails shows what
    /// the server does when the system cannot create threads). A spare that
    /// cannot be started is counted in
    /// [`ServerStats::spawn_errors`](stead_core::ServerStats::spawn_errors)
    /// and its shard waits for a blocked handler to return (backpressure).
    pub fn spawner(mut self, spawner: impl stead_core::Spawner) -> Self {
        self.spawner = SpawnerSlot(Some(Arc::new(spawner)));
        self
    }

    /// Bind the listening socket (port 0 picks a free port) and create the
    /// shards' epoll instances.
    pub fn bind(self, addr: impl ToSocketAddrs) -> io::Result<EventServer> {
        let listener = stead_core::bind_listener(addr, self.reuse_port, self.backlog)?;
        EventServer::from_listener(listener, self)
    }
}

/// A bound event-mode server, not yet serving.
///
/// ```
/// use std::io::{BufRead, BufReader, Write};
/// use std::net::{SocketAddr, TcpStream};
/// use std::time::Duration;
/// use stead_core::Conn;
/// use stead_eventloop::{EventServer, Session, SessionFactory, Verdict};
///
/// /// Answers each line with the same line.
/// struct Echo;
/// impl Session for Echo {
///     fn on_readable(&mut self, conn: &mut Conn<TcpStream>) -> Verdict {
///         let mut buf = [0u8; 1024];
///         loop {
///             match conn.try_read(&mut buf) {
///                 Ok(0) => return Verdict::Close,
///                 Ok(n) => if conn.write_all(&buf[..n]).is_err() { return Verdict::Close },
///                 Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
///                     return Verdict::Park { timeout: Some(Duration::from_secs(30)) }
///                 }
///                 Err(_) => return Verdict::Close,
///             }
///         }
///     }
/// }
/// struct Factory;
/// impl SessionFactory for Factory {
///     type Session = Echo;
///     fn new_session(&self, _peer: SocketAddr) -> Echo { Echo }
/// }
///
/// let handle = EventServer::builder().workers(2).bind("127.0.0.1:0")?.serve(Factory);
/// let mut client = TcpStream::connect(handle.local_addr())?;
/// client.write_all(b"hello\n")?;
/// let mut line = String::new();
/// BufReader::new(&client).read_line(&mut line)?;
/// assert_eq!(line, "hello\n");
/// let report = handle.shutdown(Duration::from_secs(1));
/// // Parked by now, or just about to park: closed either way.
/// assert_eq!(report.idle_closed + report.drained, 1);
/// assert!(report.is_clean());
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Threading design
///
/// The server is split into `workers` **shards** (default: one per CPU).
/// A shard is a level-triggered epoll instance plus the table of its
/// connections and a timer heap for their park timeouts. At any moment at
/// most one thread *runs* a shard: it waits in `epoll_wait`, and for every
/// ready connection it calls [`Session::on_readable`] **inline**, on the
/// same thread, with no hand-off: per request the fast path costs one
/// `read`, one `write` and a fraction of an `epoll_wait`, like a
/// hand-written per-core epoll server.
///
/// A handler that blocks would stall every other connection of its shard.
/// Go's runtime has the same problem (a goroutine blocking in a syscall
/// holds its P) and the same answer, which this server copies: the blocked
/// thread gives its shard away.
///
/// - **Announced blocking.** Each worker thread installs a
///   [`BlockingObserver`](stead_core::blocking::BlockingObserver). When a
///   handler enters one of stead's blocking waits ([`Conn`] read or write
///   that has to wait, [`Cancel::sleep`], [`Cancel::wait`],
///   [`stead_core::blocking::blocking`]), the thread releases its shard at
///   once: the busy connection is taken out of the epoll set and the shard
///   is queued for a **spare thread** (an idle one is woken, or a new one
///   started, up to [`max_threads`](EventServerBuilder::max_threads)). If
///   the blocking section ends before a spare has picked the shard up, the
///   thread takes it back (no hand-off happened after all).
/// - **Unannounced blocking or long computation.** A **monitor thread**
///   watches a per-shard "callback sequence" word. A callback seen running
///   for longer than [`blocking_budget`](EventServerBuilder::blocking_budget)
///   (default 10 ms) has its shard taken the same way. The monitor sleeps
///   without a timeout while no callback runs, so an idle server uses no CPU.
/// - When a thread whose shard was taken returns from the handler, it gives
///   the connection back to the shard (re-registering it in the epoll set)
///   and becomes a spare itself. Spares idle for 10 s exit (never below
///   `workers` threads).
///
/// The ownership protocol is one atomic word per shard, `seq << 2 | state`
/// with state `RUNNING`, `IN_CALLBACK` or `STOLEN`: the owner stores
/// `IN_CALLBACK` before a callback and compare-exchanges it back to
/// `RUNNING` after; a thief compare-exchanges `IN_CALLBACK` to `STOLEN`
/// under the shard's table lock. Exactly one of the two wins; the fast path
/// costs one store and one compare-exchange per request and no syscall.
///
/// New connections are accepted by one acceptor thread (`stead-ev-accept`):
/// it applies the connection limit (backpressure: at the limit it stops
/// accepting and the kernel backlog fills), creates the [`Conn`] and the
/// [`Session`], and inserts them into the shard with the fewest connections
/// (registering the socket in that shard's epoll directly; the worker is not
/// woken until the client sends something). That is one cross-thread step
/// per *connection*, never per request.
///
/// Threads therefore number `workers` + acceptor + monitor + one per handler
/// blocked at that moment, whatever the number of open connections.
///
///
/// # Memory per idle connection
///
/// A parked connection is its socket, one boxed entry (the [`Conn`] with its
/// [`Cancel`] child token and tracker, the [`Session`], a timer key) and a
/// slab slot. No read buffer, no stack.
pub struct EventServer {
    listener: TcpListener,
    config: EventServerBuilder,
    shards: Vec<ShardIo>,
}

impl fmt::Debug for EventServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventServer")
            .field("listener", &self.listener)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl EventServer {
    /// A builder.
    pub fn builder() -> EventServerBuilder {
        EventServerBuilder::new()
    }

    /// Bind with default settings.
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<EventServer> {
        EventServerBuilder::new().bind(addr)
    }

    /// Serve on an already bound listener.
    pub fn from_listener(
        listener: TcpListener,
        mut config: EventServerBuilder,
    ) -> io::Result<Self> {
        listener.set_nonblocking(true)?;
        // A connection holds one descriptor (threads' eventfds are few).
        config.max_connections = stead_core::fit_fd_limit(config.max_connections, 1);
        let shards = (0..config.workers)
            .map(|_| ShardIo::new())
            .collect::<io::Result<Vec<_>>>()?;
        Ok(EventServer {
            listener,
            config,
            shards,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Start the worker, acceptor and monitor threads.
    ///
    /// # Panics
    ///
    /// If not a single thread can be started (see [`try_serve`](EventServer::try_serve)).
    pub fn serve<F: SessionFactory>(self, factory: F) -> EventServerHandle {
        self.try_serve(factory)
            .expect("stead-eventloop: cannot start the event server's threads")
    }

    /// [`serve`](EventServer::serve), reporting a failure to start threads
    /// as an error. Worker threads that fail to start are logged; their
    /// shards are run by the threads that did start.
    pub fn try_serve<F: SessionFactory>(self, factory: F) -> io::Result<EventServerHandle> {
        let local_addr = self.listener.local_addr()?;
        let inner = worker::new_server(factory, self.config, self.shards);
        let accept_cancel = Cancel::new();
        // Wake an acceptor paused at the connection limit.
        {
            let inner = inner.clone();
            accept_cancel
                .on_cancel(move |_| inner.notify_limit())
                .forget();
        }
        let monitor = worker::start_monitor(&inner)?;
        let workers = worker::start_workers(&inner);
        if workers == 0 {
            inner.stop_threads();
            let _ = monitor.join();
            return Err(io::Error::other(
                "stead-eventloop: cannot start any worker thread",
            ));
        }
        let listener = Listener::from_std(self.listener, accept_cancel.clone())?;
        let acceptor = {
            let inner = inner.clone();
            std::thread::Builder::new()
                .name(format!("{}-accept", inner.core().config.thread_name))
                .stack_size(128 * 1024)
                .spawn(move || accept_loop(listener, inner))
                .map_err(|e| sys::context(e, "spawn the acceptor thread"))
        };
        let acceptor = match acceptor {
            Ok(t) => t,
            Err(e) => {
                inner.stop_threads();
                let _ = monitor.join();
                inner.join_threads(0, Instant::now() + inner.core().config.cancel_wait);
                return Err(e);
            }
        };
        Ok(EventServerHandle {
            inner,
            accept_cancel,
            acceptor: Some(acceptor),
            monitor: Some(monitor),
            local_addr,
        })
    }
}

/// Extra counters of the event server (beyond [`ServerStats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EventStats {
    /// Threads running shards or blocked in handlers (acceptor and monitor excluded).
    pub threads: usize,
    /// Of those, spares waiting for a shard.
    pub idle_threads: usize,
    /// Shards handed off because a handler entered a blocking call.
    pub handoffs_blocking: u64,
    /// Shards handed off by the monitor (a callback ran past the budget).
    pub handoffs_budget: u64,
    /// Hand-offs undone because the blocking call ended before a spare took over.
    pub reclaims: u64,
    /// Connections closed by the no-progress detector.
    pub spins_closed: u64,
    /// Park timeouts that fired.
    pub timeouts: u64,
}

/// A running [`EventServer`]. Dropping it shuts the server down with no
/// grace period.
pub struct EventServerHandle {
    inner: Arc<dyn Control>,
    accept_cancel: Cancel,
    acceptor: Option<JoinHandle<()>>,
    monitor: Option<JoinHandle<()>>,
    local_addr: SocketAddr,
}

impl fmt::Debug for EventServerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventServerHandle")
            .field("local_addr", &self.local_addr)
            .field("stats", &self.stats())
            .finish()
    }
}

impl EventServerHandle {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> ServerStats {
        self.inner.server_stats()
    }

    /// Event-mode counters: threads, hand-offs, timeouts.
    pub fn event_stats(&self) -> EventStats {
        self.inner.event_stats()
    }

    /// The parent token of every connection: cancelling it cancels all of them.
    pub fn connections_cancel(&self) -> &Cancel {
        self.inner.root()
    }

    /// Block until `signal` is cancelled (e.g. [`stead_core::shutdown_on_signals`]),
    /// then shut down gracefully with `grace`.
    pub fn run_until(self, signal: &Cancel, grace: Duration) -> ShutdownReport {
        signal.wait();
        self.shutdown(grace)
    }

    /// Graceful shutdown, as [`stead_core::ServerHandle::shutdown`]: stop
    /// accepting and close the listener at once, close parked (idle)
    /// connections, let busy ones finish until `grace` passes (a busy
    /// connection that returns [`Verdict::Park`] meanwhile is closed, unless
    /// its session is [mid-request](Session::mid_request): those may park
    /// and finish too), then cancel or close the rest and wait up to
    /// `cancel_wait` for them to end; then stop the threads.
    pub fn shutdown(mut self, grace: Duration) -> ShutdownReport {
        self.shutdown_inner(grace)
    }

    fn shutdown_inner(&mut self, grace: Duration) -> ShutdownReport {
        let start = Instant::now();
        let cancel_wait = self.inner.core().config.cancel_wait;
        let mut report = stead_core::graceful_shutdown(
            &mut EventDrain {
                handle: self,
                idle_busy: HashSet::new(),
            },
            grace,
            cancel_wait,
        );
        // Then stop the threads.
        let inner = &self.inner;
        inner.stop_threads();
        if let Some(t) = self.monitor.take() {
            let _ = t.join();
        }
        inner.join_threads(report.still_running, Instant::now() + cancel_wait);
        report.elapsed = start.elapsed();
        report
    }
}

/// [`Drain`](stead_core::Drain) over the shards.
struct EventDrain<'a> {
    handle: &'a mut EventServerHandle,
    /// Busy connections that were idle (between requests) at the drain,
    /// and were cancelled then.
    idle_busy: HashSet<(usize, u64)>,
}

impl stead_core::Drain for EventDrain<'_> {
    fn stop_accepting(&mut self) {
        // The listener closes when the acceptor ends.
        self.handle
            .accept_cancel
            .cancel_with(CancelReason::Shutdown);
        if let Some(t) = self.handle.acceptor.take() {
            let _ = t.join();
        }
    }

    fn start_drain(&mut self) -> (usize, usize) {
        // Parked connections close now (unless mid-request), busy ones
        // when they return.
        let inner = &self.handle.inner;
        let open = inner.open();
        self.idle_busy = inner.start_drain_all();
        (open, inner.idle_closed_at_drain() + self.idle_busy.len())
    }

    fn wait_closed(&mut self, deadline: Instant) -> usize {
        self.handle.inner.wait_open_zero(deadline);
        self.handle.inner.open()
    }

    fn cancel_rest(&mut self) -> usize {
        let inner = &self.handle.inner;
        let busy = inner.busy_not_in(&self.idle_busy) + inner.close_parked();
        inner.root().cancel_with(CancelReason::Shutdown);
        busy
    }
}

impl Drop for EventServerHandle {
    fn drop(&mut self) {
        if self.acceptor.is_some() {
            self.shutdown_inner(Duration::ZERO);
        }
    }
}

/// What a server knows about one connection, for graceful drain.
pub(crate) struct Tracker {
    pub(crate) cancel: Cancel,
    pub(crate) idle: AtomicBool,
    draining: Arc<AtomicBool>,
}

impl ConnTracker for Tracker {
    fn idle(&self) -> bool {
        self.idle.store(true, Ordering::SeqCst);
        if self.draining.load(Ordering::SeqCst) {
            self.cancel.cancel_with(CancelReason::Shutdown);
            return false;
        }
        true
    }

    fn active(&self) -> bool {
        // Parked connections are closed by the drain under the shard's
        // table lock, never while a worker runs them: nothing to lose here.
        self.idle.store(false, Ordering::SeqCst);
        true
    }

    fn draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}

fn accept_loop(mut listener: Listener, inner: Arc<dyn Control>) {
    let cancel = listener.cancel().clone();
    loop {
        if !inner.wait_below_limit(&cancel) {
            return;
        }
        let Ok((stream, peer)) = listener.accept_or_back_off(|_| inner.count_accept_error()) else {
            return; // cancelled: shutting down
        };
        let _ = stream.set_nodelay(true);
        inner.admit(stream, peer);
    }
}

/// Helpers shared by the worker module.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn new_tracker(cancel: Cancel, draining: &Arc<AtomicBool>) -> Arc<Tracker> {
    Arc::new(Tracker {
        cancel,
        idle: AtomicBool::new(false),
        draining: draining.clone(),
    })
}
