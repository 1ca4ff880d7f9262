//! Cancellation tokens with parent/child links, deadlines and reasons.

use std::collections::HashMap;
use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::driver;
use crate::sys;

/// Why a [`Cancel`] token fired.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CancelReason {
    /// [`Cancel::cancel`] was called on this token or an ancestor.
    Cancelled,
    /// The token's deadline (its own or one inherited from an ancestor) passed.
    DeadlineExceeded,
    /// The process or server is shutting down ([`Cancel::shutdown`], a signal).
    Shutdown,
    /// The peer of a connection went away (closed or reset it) while work
    /// for it was still running; see [`Conn::begin_hangup_watch`](crate::Conn::begin_hangup_watch).
    Disconnected,
}

impl CancelReason {
    fn to_u8(self) -> u8 {
        match self {
            CancelReason::Cancelled => 1,
            CancelReason::DeadlineExceeded => 2,
            CancelReason::Shutdown => 3,
            CancelReason::Disconnected => 4,
        }
    }

    fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(CancelReason::Cancelled),
            2 => Some(CancelReason::DeadlineExceeded),
            3 => Some(CancelReason::Shutdown),
            4 => Some(CancelReason::Disconnected),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            CancelReason::Cancelled => "operation cancelled",
            CancelReason::DeadlineExceeded => "deadline exceeded",
            CancelReason::Shutdown => "shutting down",
            CancelReason::Disconnected => "peer disconnected",
        }
    }
}

impl fmt::Display for CancelReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error returned by [`Cancel::check`] and every cancellable operation.
///
/// Converts into an [`std::io::Error`] whose kind is
/// [`TimedOut`](std::io::ErrorKind::TimedOut) for a deadline and
/// [`Other`](std::io::ErrorKind::Other) otherwise; [`Cancelled::from_io`] gets it back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cancelled {
    reason: CancelReason,
}

impl Cancelled {
    /// A `Cancelled` error with the given reason.
    pub fn new(reason: CancelReason) -> Self {
        Cancelled { reason }
    }

    /// Why the operation was cancelled.
    pub fn reason(&self) -> CancelReason {
        self.reason
    }

    /// Whether the cancellation was caused by a deadline or timeout.
    pub fn is_timeout(&self) -> bool {
        self.reason == CancelReason::DeadlineExceeded
    }

    /// The `Cancelled` inside an `io::Error` made by stead, if any.
    ///
    /// ```
    /// use stead_core::{CancelReason, Cancelled};
    /// let err: std::io::Error = Cancelled::new(CancelReason::Shutdown).into();
    /// assert_eq!(Cancelled::from_io(&err).unwrap().reason(), CancelReason::Shutdown);
    /// ```
    pub fn from_io(err: &std::io::Error) -> Option<Cancelled> {
        err.get_ref()?.downcast_ref::<Cancelled>().copied()
    }
}

impl fmt::Display for Cancelled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.reason, f)
    }
}

impl std::error::Error for Cancelled {}

impl From<Cancelled> for std::io::Error {
    fn from(c: Cancelled) -> Self {
        let kind = if c.is_timeout() {
            std::io::ErrorKind::TimedOut
        } else {
            std::io::ErrorKind::Other
        };
        std::io::Error::new(kind, c)
    }
}

type Callback = Box<dyn FnOnce(CancelReason) + Send>;

/// Everything that needs the lock: the links and the ways to be woken.
#[derive(Default)]
struct Waiters {
    children: HashMap<u64, std::sync::Weak<Inner>>,
    callbacks: HashMap<u64, Callback>,
    /// Dropped on cancel, which disconnects every receiver handed out.
    chan: Option<(Sender<Never>, Receiver<Never>)>,
    /// Made readable (written once) on cancel.
    fd: Option<Arc<OwnedFd>>,
    /// Registered with the deadline driver already.
    armed: bool,
    /// Threads blocked on `cond` now: `fire` skips the futex wake-up without them.
    sleepers: u32,
    next_id: u64,
}

/// An uninhabited message type: cancellation channels only ever disconnect.
#[derive(Debug)]
pub enum Never {}

struct Inner {
    /// 0 while live, else a `CancelReason::to_u8`. Written only under `waiters`' lock.
    state: AtomicU8,
    /// The effective deadline: min of this token's own and every ancestor's.
    deadline: Option<Instant>,
    /// Parent link and the key under which the parent knows us.
    parent: Option<(Arc<Inner>, u64)>,
    waiters: Mutex<Waiters>,
    cond: Condvar,
}

/// Number of token nodes alive in the process (for leak tests and stats).
static LIVE_NODES: AtomicU64 = AtomicU64::new(0);

/// A cloneable cancellation token: Go's `context.Context` without the values bag.
///
/// Clones share one state. [`child`](Cancel::child) makes a new token that is
/// cancelled whenever its parent is (never the reverse), and
/// [`child_with_deadline`](Cancel::child_with_deadline) one that also cancels
/// itself when its deadline passes. No thread exists per token: deadlines are
/// checked lazily by every query, and only tokens someone waits on through a
/// file descriptor, a channel or a callback are armed with the one process-wide
/// deadline driver.
///
/// ```
/// use std::time::Duration;
/// use stead_core::{Cancel, CancelReason};
///
/// let root = Cancel::new();
/// let req = root.child_with_timeout(Duration::from_secs(5));
/// assert!(req.check().is_ok());
/// root.shutdown();
/// assert_eq!(req.reason(), Some(CancelReason::Shutdown));
/// ```
#[derive(Clone)]
pub struct Cancel {
    inner: Arc<Inner>,
}

impl fmt::Debug for Cancel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cancel")
            .field("reason", &self.reason())
            .field("deadline", &self.inner.deadline)
            .finish()
    }
}

impl Default for Cancel {
    fn default() -> Self {
        Cancel::new()
    }
}

impl Cancel {
    /// A new root token with no deadline.
    pub fn new() -> Cancel {
        Cancel::make(None, None)
    }

    /// A new root token that cancels itself at `deadline`.
    pub fn with_deadline(deadline: Instant) -> Cancel {
        Cancel::make(None, Some(deadline))
    }

    /// A new root token that cancels itself after `timeout`.
    pub fn with_timeout(timeout: Duration) -> Cancel {
        Cancel::with_deadline(deadline_after(timeout))
    }

    /// A token that is never cancelled unless [`cancel`](Cancel::cancel) is called on it.
    ///
    /// Same as [`Cancel::new`]; the name documents intent at call sites.
    pub fn never() -> Cancel {
        Cancel::new()
    }

    fn make(parent: Option<&Cancel>, own: Option<Instant>) -> Cancel {
        let deadline = match (parent.and_then(|p| p.inner.deadline), own) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let mut inner = Inner {
            state: AtomicU8::new(0),
            deadline,
            parent: None,
            waiters: Mutex::new(Waiters::default()),
            cond: Condvar::new(),
        };
        LIVE_NODES.fetch_add(1, Ordering::Relaxed);
        let Some(parent) = parent else {
            return Cancel {
                inner: Arc::new(inner),
            };
        };
        // Link under the parent's lock so a concurrent cancel either sees the
        // child or the child sees the parent's reason.
        let mut pw = parent.inner.lock();
        if let Some(reason) = parent.inner.load_reason() {
            drop(pw);
            inner.state = AtomicU8::new(reason.to_u8());
            return Cancel {
                inner: Arc::new(inner),
            };
        }
        let key = pw.next_id;
        pw.next_id += 1;
        inner.parent = Some((parent.inner.clone(), key));
        let inner = Arc::new(inner);
        pw.children.insert(key, Arc::downgrade(&inner));
        drop(pw);
        Cancel { inner }
    }

    /// A child token: cancelled when `self` is, with `self`'s deadline.
    pub fn child(&self) -> Cancel {
        Cancel::make(Some(self), None)
    }

    /// A child token that also cancels itself at `deadline` (or earlier, if
    /// `self`'s deadline is earlier: a child never outlives its parent's deadline).
    pub fn child_with_deadline(&self, deadline: Instant) -> Cancel {
        Cancel::make(Some(self), Some(deadline))
    }

    /// A child token that also cancels itself after `timeout`.
    pub fn child_with_timeout(&self, timeout: Duration) -> Cancel {
        Cancel::make(Some(self), Some(deadline_after(timeout)))
    }

    /// The effective deadline (own or inherited), if any.
    pub fn deadline(&self) -> Option<Instant> {
        self.inner.deadline
    }

    /// Time left until the deadline: `None` without a deadline, zero once passed.
    pub fn remaining(&self) -> Option<Duration> {
        self.inner
            .deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// Cancel this token and all its descendants with [`CancelReason::Cancelled`].
    ///
    /// Returns `false` if it was already cancelled (the first reason stays).
    pub fn cancel(&self) -> bool {
        self.inner.fire(CancelReason::Cancelled)
    }

    /// Cancel with [`CancelReason::Shutdown`].
    pub fn shutdown(&self) -> bool {
        self.inner.fire(CancelReason::Shutdown)
    }

    /// Cancel with a given reason.
    pub fn cancel_with(&self, reason: CancelReason) -> bool {
        self.inner.fire(reason)
    }

    /// Whether the token is cancelled (checking the deadline too).
    #[inline]
    pub fn is_cancelled(&self) -> bool {
        self.reason().is_some()
    }

    /// Why the token was cancelled, or `None` while it is live.
    #[inline]
    pub fn reason(&self) -> Option<CancelReason> {
        if let Some(r) = self.inner.load_reason() {
            return Some(r);
        }
        match self.inner.deadline {
            Some(d) if Instant::now() >= d => {
                self.inner.fire(CancelReason::DeadlineExceeded);
                self.inner.load_reason()
            }
            _ => None,
        }
    }

    /// `Ok(())` while live, `Err(Cancelled)` with the reason once cancelled.
    #[inline]
    pub fn check(&self) -> Result<(), Cancelled> {
        match self.reason() {
            None => Ok(()),
            Some(reason) => Err(Cancelled { reason }),
        }
    }

    /// Block until the token is cancelled; returns the reason.
    pub fn wait(&self) -> CancelReason {
        self.wait_until(None)
            .expect("wait without a limit returns only when cancelled")
    }

    /// Block until cancelled or `timeout` passes; `None` on timeout.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<CancelReason> {
        self.wait_until(Some(deadline_after(timeout)))
    }

    /// Block until cancelled or `deadline` passes; `None` if `deadline` came first.
    pub fn wait_deadline(&self, deadline: Instant) -> Option<CancelReason> {
        self.wait_until(Some(deadline))
    }

    fn wait_until(&self, limit: Option<Instant>) -> Option<CancelReason> {
        if let Some(r) = self.reason() {
            return Some(r);
        }
        let _blocking = crate::blocking::enter();
        let mut guard = self.inner.lock();
        loop {
            if let Some(r) = self.inner.load_reason() {
                return Some(r);
            }
            let now = Instant::now();
            if let Some(d) = self.inner.deadline
                && now >= d
            {
                drop(guard);
                self.inner.fire(CancelReason::DeadlineExceeded);
                return self.inner.load_reason();
            }
            let until = match (limit, self.inner.deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            match until {
                None => {
                    guard.sleepers += 1;
                    guard = self
                        .inner
                        .cond
                        .wait(guard)
                        .unwrap_or_else(|e| e.into_inner());
                    guard.sleepers -= 1;
                }
                Some(until) => {
                    if let Some(l) = limit
                        && now >= l
                    {
                        return None;
                    }
                    guard.sleepers += 1;
                    guard = self
                        .inner
                        .cond
                        .wait_timeout(guard, until.saturating_duration_since(now))
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                    guard.sleepers -= 1;
                }
            }
        }
    }

    /// Sleep for `dur`, returning early with `Err` if the token is cancelled
    /// (including by its deadline passing during the sleep).
    pub fn sleep(&self, dur: Duration) -> Result<(), Cancelled> {
        self.sleep_until(deadline_after(dur))
    }

    /// Sleep until `until`, returning early with `Err` if the token is cancelled.
    pub fn sleep_until(&self, until: Instant) -> Result<(), Cancelled> {
        match self.wait_until(Some(until)) {
            None => Ok(()),
            Some(reason) => Err(Cancelled { reason }),
        }
    }

    /// Run `f` once when the token is cancelled (at once, on this thread, if it
    /// already is). Dropping the returned guard unregisters `f`.
    ///
    /// `f` runs on the thread that cancels (or on the deadline driver thread
    /// for a deadline), so it must be short and must not block.
    pub fn on_cancel<F>(&self, f: F) -> CallbackGuard
    where
        F: FnOnce(CancelReason) + Send + 'static,
    {
        self.register_callback(Box::new(f), true)
    }

    /// [`on_cancel`](Cancel::on_cancel) without arming the deadline driver:
    /// for waiters that bound their wait by the deadline themselves.
    pub(crate) fn on_cancel_unarmed<F>(&self, f: F) -> CallbackGuard
    where
        F: FnOnce(CancelReason) + Send + 'static,
    {
        self.register_callback(Box::new(f), false)
    }

    fn register_callback(&self, f: Callback, arm: bool) -> CallbackGuard {
        let mut w = self.inner.lock();
        if let Some(r) = self.inner.load_reason() {
            drop(w);
            f(r);
            return CallbackGuard {
                inner: None,
                key: 0,
            };
        }
        let key = w.next_id;
        w.next_id += 1;
        w.callbacks.insert(key, f);
        if arm {
            self.inner.arm(&mut w);
        }
        CallbackGuard {
            inner: Some(Arc::downgrade(&self.inner)),
            key,
        }
    }

    /// A receiver that becomes ready (disconnected) when the token is
    /// cancelled, for use in [`crossbeam_channel::select!`].
    ///
    /// ```
    /// use crossbeam_channel::{select, after};
    /// use std::time::Duration;
    /// let cancel = stead_core::Cancel::new();
    /// cancel.cancel();
    /// select! {
    ///     recv(cancel.channel()) -> _ => {}
    ///     recv(after(Duration::from_secs(10))) -> _ => panic!("cancel not seen"),
    /// }
    /// ```
    pub fn channel(&self) -> Receiver<Never> {
        let mut w = self.inner.lock();
        if self.inner.load_reason().is_some() {
            return crossbeam_channel::bounded(0).1;
        }
        let rx = w
            .chan
            .get_or_insert_with(|| crossbeam_channel::bounded(0))
            .1
            .clone();
        self.inner.arm(&mut w);
        rx
    }

    /// A file descriptor that becomes readable when the token is cancelled,
    /// for `poll`/`epoll` together with other descriptors. It stays readable
    /// once cancelled. Created on first use (one eventfd per token).
    pub fn fd(&self) -> std::io::Result<CancelFd> {
        let mut w = self.inner.lock();
        if let Some(fd) = &w.fd {
            return Ok(CancelFd { fd: fd.clone() });
        }
        let fd = Arc::new(sys::eventfd()?);
        if self.inner.load_reason().is_some() {
            sys::eventfd_signal(fd.as_fd());
        }
        w.fd = Some(fd.clone());
        self.inner.arm(&mut w);
        Ok(CancelFd { fd })
    }

    /// Whether two handles share the same token.
    pub fn same(&self, other: &Cancel) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Number of token nodes alive in the process. For leak tests and metrics.
    pub fn live_tokens() -> u64 {
        LIVE_NODES.load(Ordering::Relaxed)
    }

    /// A weak handle that does not keep the token alive.
    pub(crate) fn downgrade(&self) -> WeakCancel {
        WeakCancel(Arc::downgrade(&self.inner))
    }

    /// Number of live children linked to this token (not counting deeper descendants).
    pub fn child_count(&self) -> usize {
        self.inner.lock().children.len()
    }
}

/// A weak handle, used by the deadline driver so armed tokens can still be freed.
pub(crate) struct WeakCancel(std::sync::Weak<Inner>);

impl WeakCancel {
    pub(crate) fn upgrade(&self) -> Option<Cancel> {
        self.0.upgrade().map(|inner| Cancel { inner })
    }

    pub(crate) fn is_dead(&self) -> bool {
        match self.0.upgrade() {
            None => true,
            Some(inner) => inner.load_reason().is_some(),
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Waiters> {
        // Callbacks run outside the lock, so poisoning can only come from a
        // bug in this module; the data stays consistent either way.
        self.waiters.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[inline]
    fn load_reason(&self) -> Option<CancelReason> {
        CancelReason::from_u8(self.state.load(Ordering::Acquire))
    }

    /// Register with the deadline driver when someone waits without polling.
    fn arm(self: &Arc<Self>, w: &mut Waiters) {
        if let Some(deadline) = self.deadline
            && !w.armed
        {
            w.armed = true;
            driver::arm(deadline, WeakCancel(Arc::downgrade(self)));
        }
    }

    /// Cancel this node and every descendant. Returns whether this call did it.
    fn fire(self: &Arc<Self>, reason: CancelReason) -> bool {
        let mut first = true;
        let mut stack = vec![self.clone()];
        while let Some(node) = stack.pop() {
            let mut w = node.lock();
            if node.load_reason().is_some() {
                if Arc::ptr_eq(&node, self) {
                    first = false;
                }
                continue;
            }
            node.state.store(reason.to_u8(), Ordering::Release);
            let children = std::mem::take(&mut w.children);
            let callbacks = std::mem::take(&mut w.callbacks);
            let chan = w.chan.take();
            if let Some(fd) = &w.fd {
                sys::eventfd_signal(fd.as_fd());
            }
            let sleepers = w.sleepers;
            drop(w);
            if sleepers > 0 {
                node.cond.notify_all();
            }
            drop(chan);
            for (_, cb) in callbacks {
                cb(reason);
            }
            stack.extend(children.into_values().filter_map(|c| c.upgrade()));
        }
        first
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        LIVE_NODES.fetch_sub(1, Ordering::Relaxed);
        if let Some((parent, key)) = &self.parent {
            parent.lock().children.remove(key);
        }
    }
}

/// Unregisters an [`on_cancel`](Cancel::on_cancel) callback when dropped.
#[must_use = "dropping the guard unregisters the callback"]
pub struct CallbackGuard {
    inner: Option<std::sync::Weak<Inner>>,
    key: u64,
}

impl CallbackGuard {
    /// Keep the callback registered for the token's whole life.
    pub fn forget(mut self) {
        self.inner = None;
    }
}

impl Drop for CallbackGuard {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take().and_then(|w| w.upgrade()) {
            inner.lock().callbacks.remove(&self.key);
        }
    }
}

/// A file descriptor that becomes readable once its [`Cancel`] fires.
#[derive(Clone)]
pub struct CancelFd {
    fd: Arc<OwnedFd>,
}

impl AsFd for CancelFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

fn deadline_after(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d).unwrap_or_else(|| far_future(now))
}

/// An instant ~30 years ahead, for "no deadline" arithmetic that must not overflow.
pub(crate) fn far_future(now: Instant) -> Instant {
    static FAR: OnceLock<Duration> = OnceLock::new();
    now + *FAR.get_or_init(|| Duration::from_secs(30 * 365 * 24 * 3600))
}
