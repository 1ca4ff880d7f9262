//! One builder for both server modes.

use std::cell::Cell;
use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use stead_core::{Cancel, Conn, ServerStats, ShutdownReport};
use stead_eventloop::{EventServer, EventServerHandle, Verdict};

use crate::config::{Limits, Timeouts};
use crate::conn::{Buffers, Config, Counters, Ctx, Next, Session, drive, on_timeout};
use crate::handler::Handler;

/// Read buffer of a connection in thread mode.
const THREAD_READ_BUF: usize = 8 * 1024;
/// Read buffer of a worker thread in event mode.
const EVENT_READ_BUF: usize = 32 * 1024;

/// How connections are mapped to threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// One thread per connection (stead-core's [`Server`](stead_core::Server)):
    /// the simplest model; an idle keep-alive connection holds a thread and
    /// its read buffer.
    #[default]
    Threads,
    /// Worker threads with their own pollers (stead-eventloop's event
    /// server): idle connections hold no thread and no read buffer, only a
    /// small session (a partial request head while one is incomplete).
    Event,
}

/// Configuration for an [`HttpServer`].
#[derive(Clone)]
pub struct HttpServerBuilder {
    mode: Mode,
    workers: Option<usize>,
    yield_after_batch: bool,
    max_connections: usize,
    limits: Limits,
    timeouts: Timeouts,
    max_requests: u64,
    stack_size: usize,
    reuse_port: bool,
    backlog: i32,
    cancel_wait: Duration,
    spawner: Option<Arc<dyn stead_core::Spawner>>,
    #[cfg(feature = "tls")]
    tls: Option<crate::tls::TlsConfig>,
}

impl fmt::Debug for HttpServerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpServerBuilder")
            .field("mode", &self.mode)
            .field("workers", &self.workers)
            .field("max_connections", &self.max_connections)
            .field("limits", &self.limits)
            .field("timeouts", &self.timeouts)
            .field("max_requests", &self.max_requests)
            .finish_non_exhaustive()
    }
}

impl Default for HttpServerBuilder {
    fn default() -> Self {
        HttpServerBuilder {
            mode: Mode::Threads,
            workers: None,
            yield_after_batch: true,
            max_connections: 10_000,
            limits: Limits::default(),
            timeouts: Timeouts::default(),
            max_requests: 10_000,
            stack_size: 256 * 1024,
            reuse_port: false,
            backlog: 1024,
            cancel_wait: Duration::from_secs(1),
            spawner: None,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

impl HttpServerBuilder {
    /// Defaults: thread mode, 10,000 connections, [`Limits::default`],
    /// [`Timeouts::default`], 10,000 requests per connection, 256 KiB stacks.
    pub fn new() -> Self {
        Self::default()
    }

    /// The server mode (default [`Mode::Threads`]).
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Worker threads in event mode (default: one per CPU). Thread mode has
    /// one thread per connection and ignores this.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = Some(n.max(1));
        self
    }

    /// Event mode: yield the CPU after each batch of ready connections
    /// (default on); see
    /// [`EventServerBuilder::yield_after_batch`](stead_eventloop::EventServerBuilder::yield_after_batch).
    /// Thread mode ignores this.
    pub fn yield_after_batch(mut self, on: bool) -> Self {
        self.yield_after_batch = on;
        self
    }

    /// At most `n` open connections; at the limit accepting pauses
    /// (backpressure into the kernel backlog). Default 10,000.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// Size limits.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Timeouts.
    pub fn timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// Close a connection after this many requests (the last response says
    /// `Connection: close`). Default 10,000.
    pub fn max_requests_per_connection(mut self, n: u64) -> Self {
        self.max_requests = n.max(1);
        self
    }

    /// Stack size of connection (thread mode) or worker (event mode)
    /// threads. Default 256 KiB.
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = bytes;
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

    /// How long shutdown waits for connections after cancelling them at the
    /// end of the grace period (default 1 s).
    pub fn cancel_wait(mut self, d: Duration) -> Self {
        self.cancel_wait = d;
        self
    }

    /// Start the server's threads with `spawner` instead of
    /// [`std::thread::Builder`]: connection threads in thread mode, worker
    /// and spare threads in event mode.
    ///
    /// For fault injection: a spawner that fails shows how the server
    /// behaves when the system cannot create threads; failures are counted
    /// in [`ServerStats::spawn_errors`](stead_core::ServerStats::spawn_errors).
    /// Thread mode keeps the accepted connection and retries with back-off
    /// while accepting pauses (backpressure into the kernel backlog). Event
    /// mode: when a handler blocks and no spare thread can start, its
    /// shard's other connections wait until the handler returns
    /// (backpressure), then are served.
    ///
    /// ```
    /// use std::io;
    /// use stead_core::{Job, Spawner, ThreadSpawner};
    /// use stead_http::HttpServer;
    ///
    /// /// Names every connection thread `conn` (a real spawner would, say, count them).
    /// struct Named;
    /// impl Spawner for Named {
    ///     fn spawn(&self, _name: String, stack: usize, job: Job) -> Result<(), (io::Error, Job)> {
    ///         ThreadSpawner.spawn("conn".into(), stack, job)
    ///     }
    /// }
    /// let server = HttpServer::builder().spawner(Named).bind("127.0.0.1:0")?;
    /// # drop(server);
    /// # Ok::<(), io::Error>(())
    /// ```
    pub fn spawner(mut self, spawner: impl stead_core::Spawner) -> Self {
        self.spawner = Some(Arc::new(spawner));
        self
    }

    /// Serve HTTPS with this configuration.
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: crate::tls::TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Bind the listening socket (port 0 picks a free port).
    pub fn bind(self, addr: impl ToSocketAddrs) -> io::Result<HttpServer> {
        let inner = match self.mode {
            Mode::Threads => {
                let mut b = stead_core::Server::builder()
                    .max_connections(self.max_connections)
                    .stack_size(self.stack_size)
                    .thread_name("stead-http")
                    .reuse_port(self.reuse_port)
                    .backlog(self.backlog)
                    .cancel_wait(self.cancel_wait)
                    .nodelay(true);
                if let Some(s) = &self.spawner {
                    b = b.spawner(s.clone());
                }
                Bound::Threads(b.bind(addr)?)
            }
            Mode::Event => {
                let mut b = EventServer::builder()
                    .max_connections(self.max_connections)
                    .stack_size(self.stack_size)
                    .reuse_port(self.reuse_port)
                    .backlog(self.backlog)
                    .cancel_wait(self.cancel_wait)
                    .first_read_timeout(Some(self.timeouts.header))
                    .yield_after_batch(self.yield_after_batch);
                if let Some(n) = self.workers {
                    b = b.workers(n);
                }
                if let Some(s) = &self.spawner {
                    b = b.spawner(s.clone());
                }
                Bound::Event(b.bind(addr)?)
            }
        };
        Ok(HttpServer {
            inner,
            config: self,
        })
    }
}

enum Bound {
    Threads(stead_core::Server),
    Event(EventServer),
}

/// A bound HTTP/1.1 server, not yet serving.
///
/// ```
/// use std::io::{Read, Write};
/// use std::time::Duration;
/// use http::Request;
/// use stead_core::Cancel;
/// use stead_http::{Body, HttpServer, Mode};
///
/// for mode in [Mode::Threads, Mode::Event] {
///     let server = HttpServer::builder().mode(mode).workers(1).bind("127.0.0.1:0")?;
///     let handle = server.serve(|_req: Request<Body>, _: &Cancel| "hi");
///     let mut c = std::net::TcpStream::connect(handle.local_addr())?;
///     c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
///     let mut resp = String::new();
///     c.read_to_string(&mut resp)?;
///     assert!(resp.starts_with("HTTP/1.1 200 OK\r\n") && resp.ends_with("\r\n\r\nhi"));
///     handle.shutdown(Duration::from_secs(1));
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct HttpServer {
    inner: Bound,
    config: HttpServerBuilder,
}

impl fmt::Debug for HttpServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpServer")
            .field("local_addr", &self.local_addr().ok())
            .field("config", &self.config)
            .finish()
    }
}

impl HttpServer {
    /// A builder with the defaults.
    pub fn builder() -> HttpServerBuilder {
        HttpServerBuilder::new()
    }

    /// Bind with the defaults (thread mode).
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<HttpServer> {
        HttpServerBuilder::new().bind(addr)
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match &self.inner {
            Bound::Threads(s) => s.local_addr(),
            Bound::Event(s) => s.local_addr(),
        }
    }

    /// Start serving with `handler` (a [`Router`](crate::Router), a closure,
    /// middleware around either, ...).
    pub fn serve(self, handler: impl Handler) -> HttpServerHandle {
        let c = &self.config;
        let service = Arc::new(Service {
            handler: Box::new(handler),
            cfg: Config {
                limits: c.limits,
                timeouts: c.timeouts,
                max_requests: c.max_requests,
            },
            stats: Counters::default(),
            #[cfg(feature = "tls")]
            tls: c.tls.as_ref().map(|t| t.rustls_config().clone()),
        });
        let mode = self.config.mode;
        let running = match self.inner {
            Bound::Threads(server) => {
                let svc = service.clone();
                Running::Threads(
                    server.serve(move |conn: Conn<TcpStream>| serve_thread(&svc, conn)),
                )
            }
            Bound::Event(server) => Running::Event(server.serve(Factory {
                svc: service.clone(),
            })),
        };
        HttpServerHandle {
            running,
            service,
            mode,
        }
    }
}

/// Everything connections share.
pub(crate) struct Service {
    handler: Box<dyn Handler>,
    cfg: Config,
    stats: Counters,
    #[cfg(feature = "tls")]
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl Service {
    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            handler: &*self.handler,
            cfg: &self.cfg,
            stats: &self.stats,
        }
    }
}

/// Thread mode: a connection's whole life on its own thread.
fn serve_thread(svc: &Service, mut conn: Conn<TcpStream>) {
    conn.set_write_timeout(Some(svc.cfg.timeouts.write));
    let mut sess = Session::new(conn.peer_addr().ok());
    let mut bufs = Buffers::new(THREAD_READ_BUF);
    #[cfg(feature = "tls")]
    if let Some(tls) = &svc.tls {
        let Some(mut tls) = crate::tls::new_session(tls) else {
            return;
        };
        let deadline = std::time::Instant::now() + svc.cfg.timeouts.header;
        let mut io = crate::tls::TlsIo::new(&mut conn, &mut tls, deadline);
        drive(&mut sess, &mut io, &mut bufs, svc.ctx(), true);
        return;
    }
    drive(&mut sess, &mut conn, &mut bufs, svc.ctx(), true);
}

struct Factory {
    svc: Arc<Service>,
}

impl stead_eventloop::SessionFactory for Factory {
    type Session = HttpSession;

    fn new_session(&self, peer: SocketAddr) -> HttpSession {
        HttpSession {
            svc: self.svc.clone(),
            sess: Session::new(Some(peer)),
            started: false,
            #[cfg(feature = "tls")]
            tls: None,
            #[cfg(feature = "tls")]
            handshake_deadline: std::time::Instant::now(),
        }
    }
}

/// Event mode: what an idle connection holds.
struct HttpSession {
    svc: Arc<Service>,
    sess: Session,
    started: bool,
    #[cfg(feature = "tls")]
    tls: Option<Box<rustls::ServerConnection>>,
    /// The TLS handshake must be done by then (it counts as header time).
    #[cfg(feature = "tls")]
    handshake_deadline: std::time::Instant,
}

thread_local! {
    static BUFFERS: Cell<Option<Box<Buffers>>> = const { Cell::new(None) };
}

/// Run `f` with this worker thread's buffers (a fresh set if they are in use).
fn with_buffers<R>(f: impl FnOnce(&mut Buffers) -> R) -> R {
    let mut bufs = BUFFERS
        .take()
        .unwrap_or_else(|| Box::new(Buffers::new(EVENT_READ_BUF)));
    let r = f(&mut bufs);
    bufs.reset();
    BUFFERS.set(Some(bufs));
    r
}

impl HttpSession {
    fn start(&mut self, conn: &mut Conn<TcpStream>) -> bool {
        if self.started {
            return true;
        }
        self.started = true;
        conn.set_write_timeout(Some(self.svc.cfg.timeouts.write));
        let _ = conn.set_nodelay(true);
        #[cfg(feature = "tls")]
        if let Some(cfg) = &self.svc.tls {
            match crate::tls::new_session(cfg) {
                Some(s) => self.tls = Some(Box::new(s)),
                None => return false,
            }
            self.handshake_deadline = std::time::Instant::now() + self.svc.cfg.timeouts.header;
        }
        true
    }
}

impl stead_eventloop::Session for HttpSession {
    fn on_readable(&mut self, conn: &mut Conn<TcpStream>) -> Verdict {
        if !self.start(conn) {
            return Verdict::Close;
        }
        let svc = &*self.svc;
        let sess = &mut self.sess;
        #[cfg(feature = "tls")]
        let tls = &mut self.tls;
        #[cfg(feature = "tls")]
        let handshake_deadline = self.handshake_deadline;
        let next = with_buffers(|bufs| {
            #[cfg(feature = "tls")]
            if let Some(tls) = tls {
                let mut io = crate::tls::TlsIo::new(conn, tls, handshake_deadline);
                let next = drive(sess, &mut io, bufs, svc.ctx(), false);
                if let Next::Park(t) = next
                    && io.is_handshaking()
                {
                    // A trickled handshake cannot extend its deadline.
                    let left =
                        handshake_deadline.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        return Next::Close;
                    }
                    return Next::Park(Some(t.map_or(left, |t| t.min(left))));
                }
                return next;
            }
            drive(sess, conn, bufs, svc.ctx(), false)
        });
        match next {
            Next::Park(timeout) => Verdict::Park { timeout },
            Next::Close => Verdict::Close,
        }
    }

    fn mid_request(&self) -> bool {
        self.sess.mid_request()
    }

    fn on_timeout(&mut self, conn: &mut Conn<TcpStream>) -> Verdict {
        if !self.started {
            return Verdict::Close;
        }
        let svc = &*self.svc;
        let sess = &mut self.sess;
        #[cfg(feature = "tls")]
        let tls = &mut self.tls;
        #[cfg(feature = "tls")]
        let handshake_deadline = self.handshake_deadline;
        let next = with_buffers(|bufs| {
            #[cfg(feature = "tls")]
            if let Some(tls) = tls {
                let mut io = crate::tls::TlsIo::new(conn, tls, handshake_deadline);
                return on_timeout(sess, &mut io, bufs, svc.ctx());
            }
            on_timeout(sess, conn, bufs, svc.ctx())
        });
        match next {
            Next::Park(timeout) => Verdict::Park { timeout },
            Next::Close => Verdict::Close,
        }
    }
}

enum Running {
    Threads(stead_core::ServerHandle),
    Event(EventServerHandle),
}

/// Counters of a running [`HttpServer`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpStats {
    /// Connection counters of the underlying server.
    pub connections: ServerStats,
    /// Request heads parsed and handled (or answered 413).
    pub requests: u64,
    /// Requests rejected before the handler (400, 413, 414, 417, 431, 501, 505).
    pub rejected: u64,
    /// Request heads that timed out (408).
    pub timeouts: u64,
    /// Handlers that panicked (answered 500).
    pub panics: u64,
}

/// A running [`HttpServer`]. Dropping it shuts the server down without a
/// grace period.
pub struct HttpServerHandle {
    running: Running,
    service: Arc<Service>,
    mode: Mode,
}

impl fmt::Debug for HttpServerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpServerHandle")
            .field("mode", &self.mode)
            .field("local_addr", &self.local_addr())
            .field("stats", &self.stats())
            .finish()
    }
}

impl HttpServerHandle {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        match &self.running {
            Running::Threads(h) => h.local_addr(),
            Running::Event(h) => h.local_addr(),
        }
    }

    /// The server mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> HttpStats {
        let s = &self.service.stats;
        HttpStats {
            connections: match &self.running {
                Running::Threads(h) => h.stats(),
                Running::Event(h) => h.stats(),
            },
            requests: s.requests.get(),
            rejected: s.rejected.load(Ordering::Relaxed),
            timeouts: s.timeouts.load(Ordering::Relaxed),
            panics: s.panics.load(Ordering::Relaxed),
        }
    }

    /// Event mode's thread and hand-off counters (`None` in thread mode).
    pub fn event_stats(&self) -> Option<stead_eventloop::EventStats> {
        match &self.running {
            Running::Threads(_) => None,
            Running::Event(h) => Some(h.event_stats()),
        }
    }

    /// Graceful shutdown: stop accepting, close idle connections, let
    /// requests in flight finish (their responses say `Connection: close`)
    /// until `grace` passes, then cancel the rest (handlers see their
    /// [`Cancel`] fire).
    pub fn shutdown(self, grace: Duration) -> ShutdownReport {
        match self.running {
            Running::Threads(h) => h.shutdown(grace),
            Running::Event(h) => h.shutdown(grace),
        }
    }

    /// Block until `signal` is cancelled (e.g.
    /// [`stead_core::shutdown_on_signals`]), then shut down with `grace`.
    pub fn run_until(self, signal: &Cancel, grace: Duration) -> ShutdownReport {
        signal.wait();
        self.shutdown(grace)
    }
}
