//! Blocking I/O that a [`Cancel`] or a timeout interrupts promptly.
//!
//! The socket is put in non-blocking mode. Every operation first tries the
//! plain syscall; only when it would block does it `poll` the socket together
//! with the token's eventfd, with the nearer of the operation timeout and the
//! token's deadline as the poll timeout. No thread per operation, no busy
//! waiting: a blocked call costs one `poll` and wakes when there is something
//! to do.
//!
//! A connection that keeps one thread for its life can instead block in the
//! syscall itself ([`Conn::block_in_syscalls`]): one syscall per read, with a
//! cancel shutting the socket down to interrupt it.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::net::{RecvFlags, SendAncillaryBuffer, SendFlags};

use crate::backoff::Backoff;
use crate::blocking_socket::{BlockingSocket, finish};
use crate::cancel::{Cancel, CancelReason, Cancelled};
use crate::sys::{self, Interest, Woke};

/// The error inside an `io::Error` of kind `TimedOut` when an operation's own
/// timeout (not the token's deadline) expired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeout {
    /// The operation: `"read"`, `"write"` or `"accept"`.
    pub op: &'static str,
    /// The configured timeout.
    pub after: Duration,
}

impl fmt::Display for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} timed out after {:?}", self.op, self.after)
    }
}

impl std::error::Error for Timeout {}

impl From<Timeout> for io::Error {
    fn from(t: Timeout) -> io::Error {
        io::Error::new(io::ErrorKind::TimedOut, t)
    }
}

/// What a server knows about one of its connections, for graceful drain.
///
/// Servers (stead-core's [`Server`](crate::Server), stead-eventloop's event
/// server) attach one to each [`Conn`]; protocol code reports through
/// [`Conn::mark_idle`] and [`Conn::mark_active`].
pub trait ConnTracker: Send + Sync {
    /// The connection waits for its next request; `false` if it must close now.
    fn idle(&self) -> bool;
    /// The connection starts work on a request; `false` if a graceful
    /// shutdown already claimed it while idle (it must close without
    /// handling the request, which the client will see as unread).
    fn active(&self) -> bool;
    /// Whether the server is draining (finish this request, then close).
    fn draining(&self) -> bool;
}

/// Waits for readiness of one descriptor together with a token.
///
/// The wake-up descriptor is the waiting *thread's* eventfd, not one per
/// token or connection: for the length of a wait, a callback registered on
/// the token signals it. Descriptors then scale with threads, and an idle
/// connection (parked in an event loop) holds none.
struct Waiter {
    cancel: Cancel,
    /// Keep the wake-up registration between waits (set when the
    /// connection never changes threads: thread-per-connection).
    sticky: bool,
    /// The registration of the thread that waited last, kept when `sticky`:
    /// a thread-mode connection then pays for it once, not on every wait.
    reg: Option<(Arc<std::os::fd::OwnedFd>, crate::cancel::CallbackGuard)>,
}

impl Waiter {
    fn wait(
        &mut self,
        fd: BorrowedFd<'_>,
        interest: Interest,
        op: &'static str,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        self.cancel.check()?;
        let _blocking = crate::blocking::enter();
        let wake = sys::thread_wake_fd()?;
        let registered = matches!(&self.reg, Some((fd, _)) if Arc::ptr_eq(fd, &wake));
        if !registered {
            self.reg = None;
            let signal = wake.clone();
            let guard = self
                .cancel
                .on_cancel_unarmed(move |_| sys::eventfd_signal(signal.as_fd()));
            self.reg = Some((wake.clone(), guard));
        }
        // Not sticky: unregister when this wait ends.
        let _reg = if self.sticky { None } else { self.reg.take() };
        let op_deadline = timeout.map(|t| Instant::now() + t);
        let deadline = match (op_deadline, self.cancel.deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        loop {
            match sys::wait(fd, interest, Some(wake.as_fd()), deadline)? {
                Woke::Ready => return Ok(()),
                Woke::Cancelled => {
                    sys::eventfd_drain(wake.as_fd());
                    if self.cancel.is_cancelled() {
                        return Err(self.cancelled_error());
                    }
                    // A stale signal from an earlier wait on this thread: wait again.
                }
                Woke::TimedOut => break,
            }
        }
        // The token's own deadline reports as a cancellation.
        self.cancel.check()?;
        Err(Timeout {
            op,
            after: timeout.unwrap_or_default(),
        }
        .into())
    }

    fn cancelled_error(&self) -> io::Error {
        let reason = self.cancel.reason().unwrap_or(CancelReason::Cancelled);
        Cancelled::new(reason).into()
    }
}

/// A stream whose blocking `read`/`write` return promptly when its [`Cancel`]
/// fires, its deadline passes, or a per-operation timeout expires.
///
/// Works with `TcpStream` and with anything `AsFd + Read + Write` over a
/// non-blocking descriptor (a TLS stream over a `TcpStream`, a Unix socket).
/// A `Conn<TcpStream>` can instead block in the syscalls themselves
/// ([`block_in_syscalls`](Conn::block_in_syscalls)), as the connections of
/// stead-core's [`Server`](crate::Server) do.
///
/// ```
/// use std::io::Read;
/// use std::net::{TcpListener, TcpStream};
/// use std::time::Duration;
/// use stead_core::{Cancel, Conn};
///
/// let l = TcpListener::bind("127.0.0.1:0").unwrap();
/// let client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
/// let (server_side, _) = l.accept().unwrap();
/// let mut conn = Conn::new(server_side, Cancel::new()).unwrap();
/// conn.set_read_timeout(Some(Duration::from_millis(20)));
/// let err = conn.read(&mut [0u8; 16]).unwrap_err();
/// assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
/// # drop(client);
/// ```
pub struct Conn<S = TcpStream> {
    /// Hang-up watch registration; declared before `stream` so it is
    /// dropped (unregistered) before the socket closes.
    hangup: Option<crate::hangup::Registration>,
    /// Blocking-syscall mode (thread per connection); declared before
    /// `stream` so a late cancel cannot reach a closed descriptor.
    blocking: Option<BlockingSocket>,
    stream: S,
    waiter: Waiter,
    /// Bytes read through `read`/`try_read`: event servers judge progress by it.
    bytes_read: u64,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    tracker: Option<Arc<dyn ConnTracker>>,
}

impl<S: fmt::Debug> fmt::Debug for Conn<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("stream", &self.stream)
            .field("cancel", &self.waiter.cancel)
            .field("read_timeout", &self.read_timeout)
            .field("write_timeout", &self.write_timeout)
            .finish()
    }
}

impl Conn<TcpStream> {
    /// Wrap a TCP stream: puts it in non-blocking mode.
    pub fn new(stream: TcpStream, cancel: Cancel) -> io::Result<Self> {
        stream.set_nonblocking(true)?;
        Ok(Conn::from_nonblocking(stream, cancel))
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.stream.peer_addr()
    }

    /// Set `TCP_NODELAY`.
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.stream.set_nodelay(on)
    }

    /// Shut down the read, write or both halves.
    pub fn shutdown(&self, how: std::net::Shutdown) -> io::Result<()> {
        self.stream.shutdown(how)
    }

    /// Let reads and writes block in the syscall itself, for a connection
    /// that keeps one thread for its whole life (thread per connection).
    ///
    /// The socket goes to blocking mode: a read is one `recv` instead of a
    /// `poll` and a `recv`, and the timeouts become `SO_RCVTIMEO` /
    /// `SO_SNDTIMEO`. Cancellation (and the token's deadline) still
    /// interrupts a blocked call promptly, by shutting the socket down,
    /// which ends the connection, as a cancel does anyway. Only worth it on
    /// a thread that has nothing else to do while the connection waits;
    /// stead-core's [`Server`](crate::Server) turns it on for its connections
    /// (see [`ServerBuilder::block_in_syscalls`](crate::ServerBuilder::block_in_syscalls)).
    /// [`get_mut`](Conn::get_mut), [`into_inner`](Conn::into_inner),
    /// [`map`](Conn::map), [`try_map`](Conn::try_map) and
    /// [`replace_cancel`](Conn::replace_cancel) turn it off (the socket is
    /// non-blocking again, without socket timeouts). The descriptor seen
    /// through [`get_ref`](Conn::get_ref) or [`AsFd`] is blocking meanwhile.
    pub fn block_in_syscalls(&mut self) -> io::Result<()> {
        if self.blocking.is_none() {
            self.blocking = Some(BlockingSocket::enable(&self.stream, &self.waiter.cancel)?);
        }
        Ok(())
    }
}

impl<S> Conn<S> {
    /// Wrap a stream whose descriptor is already non-blocking.
    ///
    /// With a blocking descriptor the calls still work but cannot be
    /// interrupted while the syscall itself blocks.
    pub fn from_nonblocking(stream: S, cancel: Cancel) -> Self {
        Conn {
            hangup: None,
            blocking: None,
            stream,
            waiter: Waiter {
                cancel,
                sticky: false,
                reg: None,
            },
            bytes_read: 0,
            read_timeout: None,
            write_timeout: None,
            tracker: None,
        }
    }

    /// The connection's token.
    pub fn cancel(&self) -> &Cancel {
        &self.waiter.cancel
    }

    /// Replace the connection's token (e.g. with a child carrying a request deadline).
    /// Returns the previous one.
    pub fn replace_cancel(&mut self, cancel: Cancel) -> Cancel {
        self.hangup = None;
        self.waiter.reg = None;
        // A cancel in blocking-syscall mode ends the connection; a replaced
        // token (say, a request's child, then the parent again) must not.
        self.leave_blocking();
        std::mem::replace(&mut self.waiter.cancel, cancel)
    }

    /// Per-call read timeout (`None`: wait until cancelled or the deadline).
    pub fn set_read_timeout(&mut self, t: Option<Duration>) {
        self.read_timeout = t;
    }

    /// Per-call write timeout.
    pub fn set_write_timeout(&mut self, t: Option<Duration>) {
        self.write_timeout = t;
    }

    /// The read timeout.
    pub fn read_timeout(&self) -> Option<Duration> {
        self.read_timeout
    }

    /// The write timeout.
    pub fn write_timeout(&self) -> Option<Duration> {
        self.write_timeout
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// The wrapped stream, mutably. Reading or writing through it bypasses
    /// cancellation. Ends any [hang-up watch](Conn::begin_hangup_watch)
    /// registration (the stream could be replaced through this reference);
    /// the next watch scope registers again.
    pub fn get_mut(&mut self) -> &mut S {
        self.hangup = None;
        self.leave_blocking();
        &mut self.stream
    }

    /// Unwrap the stream (non-blocking).
    pub fn into_inner(mut self) -> S {
        self.leave_blocking();
        let Conn { hangup, stream, .. } = self;
        drop(hangup);
        stream
    }

    /// Whether reads and writes block in the syscall itself (see
    /// [`block_in_syscalls`](Conn::block_in_syscalls)): then waiting for
    /// readiness before a read only adds a syscall.
    pub fn blocks_in_syscalls(&self) -> bool {
        self.blocking.is_some()
    }

    /// Back to a non-blocking descriptor, before the stream changes hands.
    fn leave_blocking(&mut self) {
        if let Some(b) = self.blocking.take() {
            b.leave();
        }
    }

    /// Wrap the stream in another (e.g. TLS) while keeping the token,
    /// timeouts and server tracking.
    pub fn map<T>(mut self, f: impl FnOnce(S) -> T) -> Conn<T> {
        // Unregister first: `f` may close the descriptor.
        self.leave_blocking();
        drop(self.hangup);
        Conn {
            hangup: None,
            blocking: None,
            stream: f(self.stream),
            waiter: self.waiter,
            bytes_read: self.bytes_read,
            read_timeout: self.read_timeout,
            write_timeout: self.write_timeout,
            tracker: self.tracker,
        }
    }

    /// Fallible [`map`](Conn::map).
    pub fn try_map<T, E>(mut self, f: impl FnOnce(S) -> Result<T, E>) -> Result<Conn<T>, E> {
        self.leave_blocking();
        drop(self.hangup);
        Ok(Conn {
            hangup: None,
            blocking: None,
            stream: f(self.stream)?,
            waiter: self.waiter,
            bytes_read: self.bytes_read,
            read_timeout: self.read_timeout,
            write_timeout: self.write_timeout,
            tracker: self.tracker,
        })
    }

    /// The connection stays on one thread for its whole life (thread per
    /// connection): its wake-up registration is kept between waits.
    pub(crate) fn set_sticky(&mut self) {
        self.waiter.sticky = true;
    }

    /// Attach the server's tracker (done by servers, not by handlers).
    pub fn set_tracker(&mut self, t: Arc<dyn ConnTracker>) {
        self.tracker = Some(t);
    }

    /// Tell the server this connection is idle (between requests). Returns
    /// `false` when the server is draining and the connection should close
    /// instead of waiting; the token is then already cancelled.
    ///
    /// Outside a [`Server`](crate::Server) this always returns `true`.
    pub fn mark_idle(&self) -> bool {
        self.tracker.as_ref().is_none_or(|t| t.idle())
    }

    /// Tell the server this connection is working on a request: a graceful
    /// shutdown lets it finish. Returns `false` when a shutdown closed the
    /// connection while it was idle: then do not handle the request, close.
    ///
    /// Idle -> active and idle -> closing are one compare-and-swap each, so a
    /// request is either handled to the end or never started: never handled
    /// with its response lost.
    pub fn mark_active(&self) -> bool {
        self.tracker.as_ref().is_none_or(|t| t.active())
    }

    /// Whether the server is draining: finish the current request, then close
    /// (HTTP sends `Connection: close`).
    pub fn is_draining(&self) -> bool {
        self.tracker.as_ref().is_some_and(|t| t.draining())
    }
}

impl<S: AsFd> Conn<S> {
    /// Bytes read so far through [`read`](Read::read) and
    /// [`try_read`](Conn::try_read). Event servers use it to tell a session
    /// that consumes its input from one that spins on readiness.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// Start watching for the peer going away while the current thread works
    /// on this connection (say, runs a request's handler): until
    /// [`end_hangup_watch`](Conn::end_hangup_watch), if this thread blocks in
    /// a stead wait ([`Cancel::sleep`], [`Cancel::wait`], a blocked read or
    /// write, a pool join) and the peer closes the connection with no unread
    /// input left, or resets it, the connection's token is cancelled with
    /// [`CancelReason::Disconnected`].
    ///
    /// Cheap: nothing happens unless the thread blocks, and then one
    /// `epoll_ctl` arms the connection in a process-wide watcher (one thread
    /// for the whole process). Idempotent per connection; the scope belongs to
    /// the calling thread.
    ///
    /// ```
    /// use std::net::{TcpListener, TcpStream};
    /// use std::time::Duration;
    /// use stead_core::{Cancel, CancelReason, Conn};
    ///
    /// let listener = TcpListener::bind("127.0.0.1:0")?;
    /// let client = TcpStream::connect(listener.local_addr()?)?;
    /// let (server_side, _) = listener.accept()?;
    /// let mut conn = Conn::new(server_side, Cancel::new())?;
    /// conn.begin_hangup_watch();
    /// // The client gives up while the "handler" waits.
    /// let closer = std::thread::spawn(move || drop(client));
    /// let why = conn.cancel().wait_timeout(Duration::from_secs(10));
    /// conn.end_hangup_watch();
    /// closer.join().unwrap();
    /// assert_eq!(why, Some(CancelReason::Disconnected));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn begin_hangup_watch(&mut self) {
        self.begin_watch(false);
    }

    /// [`begin_hangup_watch`](Conn::begin_hangup_watch) for a connection
    /// that carries an encrypted protocol (TLS): unread input there may be
    /// just the peer's closing alert, so any end of input counts as the peer
    /// going away.
    pub fn begin_hangup_watch_encrypted(&mut self) {
        self.begin_watch(true);
    }

    fn begin_watch(&mut self, any_eof: bool) {
        if self.hangup.is_none() {
            self.hangup =
                crate::hangup::Registration::new(self.stream.as_fd(), &self.waiter.cancel, any_eof);
        }
        if let Some(r) = &self.hangup {
            crate::hangup::begin(r.id());
        }
    }

    /// End the watch scope opened by [`begin_hangup_watch`](Conn::begin_hangup_watch).
    pub fn end_hangup_watch(&mut self) {
        if let Some(r) = &self.hangup {
            crate::hangup::end(r.id(), self.stream.as_fd());
        }
    }

    /// Block until the stream is readable (or cancelled / timed out) without reading.
    pub fn wait_readable(&mut self) -> io::Result<()> {
        self.wait_for(Interest::Read)
    }

    /// Block until the stream is writable (or cancelled / timed out).
    pub fn wait_writable(&mut self) -> io::Result<()> {
        self.wait_for(Interest::Write)
    }

    /// Wait for `interest` within that direction's timeout.
    fn wait_for(&mut self, interest: Interest) -> io::Result<()> {
        let timeout = self.timeout_for(interest);
        self.waiter
            .wait(self.stream.as_fd(), interest, interest.op(), timeout)
    }

    /// The timeout of each call in that direction.
    fn timeout_for(&self, interest: Interest) -> Option<Duration> {
        match interest {
            Interest::Read => self.read_timeout,
            Interest::Write => self.write_timeout,
        }
    }

    /// In blocking-syscall mode, run `call(fd, dontwait)` (the syscall on the
    /// socket itself) within the direction's timeout; `None` otherwise.
    fn blocking_call(
        &mut self,
        interest: Interest,
        mut call: impl FnMut(BorrowedFd<'_>, bool) -> rustix::io::Result<usize>,
    ) -> Option<io::Result<usize>> {
        let timeout = self.timeout_for(interest);
        let b = self.blocking.as_mut()?;
        let fd = self.stream.as_fd();
        Some(b.run(fd, &self.waiter.cancel, interest, timeout, |nb| {
            call(fd, nb)
        }))
    }

    /// Run `op` on the stream until it stops reporting `WouldBlock`
    /// (waiting for `interest` in between, within the operation's timeout)
    /// or `Interrupted`.
    #[inline]
    fn retry<T>(
        &mut self,
        interest: Interest,
        mut op: impl FnMut(&mut S) -> io::Result<T>,
    ) -> io::Result<T> {
        loop {
            match op(&mut self.stream) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.wait_for(interest)?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                r => return r,
            }
        }
    }
}

impl<S: AsFd> AsFd for Conn<S> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }
}

impl<S: Read + AsFd> Conn<S> {
    /// One read attempt that never waits: `WouldBlock` when nothing is
    /// available. Unlike `get_mut().read()` it checks the token first and
    /// counts the bytes (see [`bytes_read`](Conn::bytes_read)).
    pub fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.waiter.cancel.check()?;
        if self.blocking.is_some() {
            let fd = self.stream.as_fd();
            let n = loop {
                match rustix::net::recv(fd, &mut *buf, RecvFlags::DONTWAIT) {
                    Err(rustix::io::Errno::INTR) => {}
                    Err(rustix::io::Errno::AGAIN) => return Err(io::ErrorKind::WouldBlock.into()),
                    r => break finish(r.map(|(n, _)| n), &self.waiter.cancel, Interest::Read)?,
                }
            };
            self.bytes_read += n as u64;
            return Ok(n);
        }
        loop {
            match self.stream.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(n) => {
                    self.bytes_read += n as u64;
                    return Ok(n);
                }
                r => return r,
            }
        }
    }
}

impl<S: Read + AsFd> Read for Conn<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.waiter.cancel.check()?;
        let in_kernel = self.blocking_call(Interest::Read, |fd, nb| {
            rustix::net::recv(fd, &mut *buf, recv_flags(nb)).map(|(n, _)| n)
        });
        let n = match in_kernel {
            Some(r) => r?,
            None => self.retry(Interest::Read, |s| s.read(buf))?,
        };
        self.bytes_read += n as u64;
        Ok(n)
    }
}

impl<S: Write + AsFd> Write for Conn<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.waiter.cancel.check()?;
        let in_kernel = self.blocking_call(Interest::Write, |fd, nb| {
            rustix::net::send(fd, buf, send_flags(nb))
        });
        in_kernel.unwrap_or_else(|| self.retry(Interest::Write, |s| s.write(buf)))
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.waiter.cancel.check()?;
        let in_kernel = self.blocking_call(Interest::Write, |fd, nb| {
            let mut no_control = SendAncillaryBuffer::default();
            // The kernel refuses more than `UIO_MAXIOV` slices (std's
            // `writev` caps them the same way).
            let bufs = &bufs[..bufs.len().min(1024)];
            rustix::net::sendmsg(fd, bufs, &mut no_control, send_flags(nb))
        });
        in_kernel.unwrap_or_else(|| self.retry(Interest::Write, |s| s.write_vectored(bufs)))
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.blocking.is_some() {
            return Ok(()); // a TCP socket buffers nothing in user space
        }
        self.retry(Interest::Write, |s| s.flush())
    }
}

fn recv_flags(dontwait: bool) -> RecvFlags {
    if dontwait {
        RecvFlags::DONTWAIT
    } else {
        RecvFlags::empty()
    }
}

/// `MSG_NOSIGNAL` always: a peer that went away is an `EPIPE`, not a `SIGPIPE`.
fn send_flags(dontwait: bool) -> SendFlags {
    if dontwait {
        SendFlags::NOSIGNAL | SendFlags::DONTWAIT
    } else {
        SendFlags::NOSIGNAL
    }
}

/// A TCP listener whose `accept` returns promptly when its [`Cancel`] fires.
///
/// Accepted streams are non-blocking and close-on-exec.
#[derive(Debug)]
pub struct Listener {
    inner: TcpListener,
    waiter: Waiter,
    accept_timeout: Option<Duration>,
    backoff: Backoff,
}

impl fmt::Debug for Waiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.cancel.fmt(f)
    }
}

impl Listener {
    /// Bind a listener (port 0 picks a free port).
    pub fn bind(addr: impl ToSocketAddrs, cancel: Cancel) -> io::Result<Self> {
        Listener::from_std(TcpListener::bind(addr)?, cancel)
    }

    /// Wrap a bound std listener; puts it in non-blocking mode.
    pub fn from_std(inner: TcpListener, cancel: Cancel) -> io::Result<Self> {
        inner.set_nonblocking(true)?;
        Ok(Listener {
            inner,
            waiter: Waiter {
                cancel,
                sticky: false,
                reg: None,
            },
            accept_timeout: None,
            backoff: Backoff::new(),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// The listener's token.
    pub fn cancel(&self) -> &Cancel {
        &self.waiter.cancel
    }

    /// Per-call accept timeout.
    pub fn set_accept_timeout(&mut self, t: Option<Duration>) {
        self.accept_timeout = t;
    }

    /// The wrapped std listener.
    pub fn get_ref(&self) -> &TcpListener {
        &self.inner
    }

    /// Accept a connection without blocking: `Ok(None)` if none is pending.
    pub fn try_accept(&self) -> io::Result<Option<(TcpStream, SocketAddr)>> {
        use rustix::net::{SocketFlags, acceptfrom_with};
        loop {
            match acceptfrom_with(&self.inner, SocketFlags::NONBLOCK | SocketFlags::CLOEXEC) {
                Ok((fd, addr)) => {
                    let stream = TcpStream::from(fd);
                    let addr = match addr.and_then(|a| SocketAddr::try_from(a).ok()) {
                        Some(a) => a,
                        None => stream.peer_addr()?,
                    };
                    return Ok(Some((stream, addr)));
                }
                Err(rustix::io::Errno::AGAIN) => return Ok(None),
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Accept a connection, blocking until one arrives, the token fires or
    /// the accept timeout passes. The stream is non-blocking; wrap it with
    /// [`Conn::from_nonblocking`].
    pub fn accept(&mut self) -> io::Result<(TcpStream, SocketAddr)> {
        self.waiter.cancel.check()?;
        loop {
            if let Some(c) = self.try_accept()? {
                return Ok(c);
            }
            self.waiter.wait(
                self.inner.as_fd(),
                Interest::Read,
                "accept",
                self.accept_timeout,
            )?;
        }
    }
}

impl Listener {
    /// Accept the way a server must: ride out every failure until the
    /// token fires, which is the only error returned.
    ///
    /// A failure that concerns only the connection being accepted (reset or
    /// aborted before `accept`) is skipped. Any other failure (`EMFILE`,
    /// `ENFILE`, `ENOBUFS`, `ENOMEM`, ...) is passed to `on_error` (for
    /// counters), logged once per episode with a hint, and retried after a
    /// back-off of 5 ms doubling to 1 s (a cancellable sleep: no spinning
    /// while the process is out of descriptors); the first success after
    /// failures is logged too.
    pub fn accept_or_back_off(
        &mut self,
        mut on_error: impl FnMut(&io::Error),
    ) -> Result<(TcpStream, SocketAddr), Cancelled> {
        loop {
            match self.accept() {
                Ok(c) => {
                    let failures = self.backoff.reset();
                    if failures > 0 {
                        log::warn!("stead: accept recovered after {failures} failed attempts");
                    }
                    return Ok(c);
                }
                Err(e) => {
                    if let Err(c) = self.waiter.cancel.check() {
                        log::debug!("stead: accepting stops: {e}");
                        return Err(c);
                    }
                    if sys::is_transient_accept_error(&e) {
                        continue;
                    }
                    on_error(&e);
                    let delay = self.backoff.next();
                    if self.backoff.failures == 1 {
                        let hint = if sys::is_resource_exhaustion(&e) {
                            " (out of file descriptors or memory: raise `ulimit -n` or lower max_connections)"
                        } else {
                            ""
                        };
                        log::error!(
                            "stead: accept failed: {e}{hint}; retrying with back-off up to 1s"
                        );
                    }
                    self.waiter.cancel.sleep(delay)?;
                }
            }
        }
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }
}
