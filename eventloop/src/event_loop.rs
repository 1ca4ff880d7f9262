//! [`EventLoop`]: readiness callbacks on `polling`, timers on one timerfd,
//! signals through signal-hook's self-pipe, closures from other threads
//! through a bounded queue, and a detector for sources that spin.

use std::any::Any;
use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::raw::c_int;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use polling::{Events, PollMode, Poller};
use stead_core::Cancel;

use crate::signals::Signals;
use crate::sys;
use crate::timer::{TimerHeap, TimerKey};

/// Keys the loop reserves for its own descriptors. `usize::MAX` is polling's.
const TIMER_KEY: usize = usize::MAX - 1;
const SIGNAL_KEY: usize = usize::MAX - 2;
const CLOCK_KEY: usize = usize::MAX - 3;
/// Generations stay below this, so source keys never hit the reserved ones.
const GEN_MASK: u32 = 0x7fff_ffff;

/// Default capacity of the cross-thread queue.
const DEFAULT_QUEUE: usize = 1024;
/// Default number of consecutive no-progress reports before a source is dropped.
const DEFAULT_SPIN_LIMIT: u32 = 64;
/// A source must be ready this many rounds in a row before the loop starts
/// measuring its progress with `FIONREAD` (so busy sources cost nothing extra
/// until they look suspicious).
const PROBE_AFTER: u32 = 3;

/// Which readiness a source is registered for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Interest {
    /// Report when readable (or hung up / in error).
    pub readable: bool,
    /// Report when writable.
    pub writable: bool,
}

impl Interest {
    /// Readable.
    pub const READ: Interest = Interest {
        readable: true,
        writable: false,
    };
    /// Writable.
    pub const WRITE: Interest = Interest {
        readable: false,
        writable: true,
    };
    /// Readable or writable.
    pub const BOTH: Interest = Interest {
        readable: true,
        writable: true,
    };
    /// Nothing: registered but silent.
    pub const NONE: Interest = Interest {
        readable: false,
        writable: false,
    };

    fn event(self, key: usize) -> polling::Event {
        polling::Event::new(key, self.readable, self.writable)
    }
}

/// How readiness is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Mode {
    /// Reported on every round while the condition holds (epoll's default).
    /// The no-progress detector watches these sources.
    #[default]
    Level,
    /// Reported once per change of state (`EPOLLET`): the callback must
    /// drain the source until `WouldBlock`.
    Edge,
    /// Reported once, then re-armed by the loop after the callback returns
    /// ([`PostAction::Continue`] or [`PostAction::NoProgress`]).
    Oneshot,
}

impl Mode {
    fn poll_mode(self) -> PollMode {
        match self {
            Mode::Level => PollMode::Level,
            Mode::Edge => PollMode::Edge,
            Mode::Oneshot => PollMode::Oneshot,
        }
    }
}

/// What a source's callback was told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Readiness {
    /// The source is readable, hung up or in error: a read will not block.
    pub readable: bool,
    /// The source is writable (or in error).
    pub writable: bool,
    /// The peer hung up or the descriptor is in error.
    pub hangup: bool,
}

impl Readiness {
    fn from_event(ev: &polling::Event) -> Readiness {
        Readiness {
            readable: ev.readable,
            writable: ev.writable,
            hangup: ev.is_interrupt() || ev.is_err().unwrap_or(false),
        }
    }
}

/// What the loop does with a source after its callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostAction {
    /// Keep it registered. For a readable byte stream (socket, pipe) the loop
    /// judges progress itself: pending input must shrink (`FIONREAD`) while
    /// the source stays ready round after round.
    Continue,
    /// Keep it registered, but the callback could not act on the readiness
    /// (e.g. `accept` failed with `EMFILE`). Counts towards the spin limit
    /// whatever the source type.
    NoProgress,
    /// Keep it registered with no interest until [`EventLoop::set_interest`].
    Disable,
    /// Deregister and drop the source (closing an owned descriptor).
    Remove,
}

/// A registered source of type `S`: pass it to [`EventLoop::remove`],
/// [`EventLoop::set_interest`] or [`EventLoop::get_mut`].
pub struct Token<S> {
    idx: u32,
    gen_: u32,
    _source: PhantomData<fn() -> S>,
}

impl<S> Clone for Token<S> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<S> Copy for Token<S> {}
impl<S> PartialEq for Token<S> {
    fn eq(&self, o: &Self) -> bool {
        (self.idx, self.gen_) == (o.idx, o.gen_)
    }
}
impl<S> Eq for Token<S> {}
impl<S> fmt::Debug for Token<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({}v{})", self.idx, self.gen_)
    }
}

/// Identifies a timer, to cancel it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimerId(TimerKey);

/// Identifies a signal callback, to remove it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SignalId(pub(crate) u64);

/// A source descriptor registered in a poller, owned; removed from the
/// poller when dropped (before the descriptor closes), like calloop's
/// `Generic`.
///
/// INVARIANT: while `source` is `Some`, its descriptor is registered in
/// `poller`; it is deleted from `poller` before the source is dropped or
/// handed out.
pub(crate) struct Registered<S: AsFd> {
    source: Option<S>,
    poller: Arc<Poller>,
}

impl<S: AsFd> Registered<S> {
    /// Register `source` with `interest` under `key`.
    #[allow(unsafe_code)]
    pub(crate) fn new(
        poller: &Arc<Poller>,
        source: S,
        interest: Interest,
        mode: Mode,
        key: usize,
    ) -> io::Result<Self> {
        // SAFETY: polling requires the source to be deleted from the poller
        // before it is closed. `Registered` owns the source and deletes it in
        // `Drop` and in `into_inner`, before the source can be dropped.
        unsafe { poller.add_with_mode(&source.as_fd(), interest.event(key), mode.poll_mode()) }
            .map_err(|e| sys::context(e, "register a source with the poller"))?;
        Ok(Registered {
            source: Some(source),
            poller: poller.clone(),
        })
    }

    fn get_mut(&mut self) -> Option<&mut S> {
        self.source.as_mut()
    }

    fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.source.as_ref().map(|s| s.as_fd())
    }

    fn modify(&self, interest: Interest, mode: Mode, key: usize) -> io::Result<()> {
        if let Some(s) = &self.source {
            self.poller
                .modify_with_mode(s, interest.event(key), mode.poll_mode())
                .map_err(|e| sys::context(e, "change a source's interest"))?;
        }
        Ok(())
    }

    /// Deregister and hand the source back.
    fn into_inner(mut self) -> Option<S> {
        let s = self.source.take()?;
        let _ = self.poller.delete(&s);
        Some(s)
    }
}

impl<S: AsFd> Drop for Registered<S> {
    fn drop(&mut self) {
        if let Some(s) = &self.source {
            let _ = self.poller.delete(s);
        }
    }
}

/// A registered source with its callback, type-erased.
trait Dispatch {
    fn dispatch(&mut self, r: Readiness, lp: &mut EventLoop) -> PostAction;
    fn fd(&self) -> Option<BorrowedFd<'_>>;
    fn modify(&self, interest: Interest, mode: Mode, key: usize) -> io::Result<()>;
    fn source_any(&mut self) -> Option<&mut dyn Any>;
    fn into_source(self: Box<Self>) -> Box<dyn Any>;
}

struct Generic<S: AsFd, F> {
    reg: Registered<S>,
    callback: F,
}

impl<S, F> Dispatch for Generic<S, F>
where
    S: AsFd + 'static,
    F: FnMut(Readiness, &mut S, &mut EventLoop) -> PostAction,
{
    fn dispatch(&mut self, r: Readiness, lp: &mut EventLoop) -> PostAction {
        match self.reg.get_mut() {
            Some(s) => (self.callback)(r, s, lp),
            None => PostAction::Remove,
        }
    }
    fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.reg.fd()
    }
    fn modify(&self, interest: Interest, mode: Mode, key: usize) -> io::Result<()> {
        self.reg.modify(interest, mode, key)
    }
    fn source_any(&mut self) -> Option<&mut dyn Any> {
        self.reg.get_mut().map(|s| s as &mut dyn Any)
    }
    fn into_source(self: Box<Self>) -> Box<dyn Any> {
        let Generic { reg, callback } = *self;
        drop(callback);
        Box::new(reg.into_inner())
    }
}

struct SourceSlot {
    gen_: u32,
    /// `None` while free or while its callback runs.
    entry: Option<Box<dyn Dispatch>>,
    used: bool,
    running: bool,
    /// Removed from inside its own callback: drop it when the callback returns.
    removed: bool,
    /// Interest changed from inside its own callback: apply when it returns.
    pending_interest: Option<Interest>,
    interest: Interest,
    mode: Mode,
    /// Last round in which it was reported ready, and how many rounds in a row.
    last_round: u64,
    streak: u32,
    /// Consecutive reports without progress.
    strikes: u32,
}

enum TimerFn {
    Once(Box<dyn FnOnce(&mut EventLoop)>),
    Every {
        period: u64,
        f: Box<dyn FnMut(&mut EventLoop)>,
    },
}

/// A closure submitted from another thread through a [`LoopHandle`].
pub type Job = Box<dyn FnOnce(&mut EventLoop) + Send + 'static>;

/// Why a [`LoopHandle`] could not submit a closure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubmitErrorKind {
    /// The queue is full (`try_submit`).
    Full,
    /// The queue stayed full for the whole timeout (`submit_timeout`).
    Timeout,
    /// The loop was dropped.
    Closed,
    /// Blocking would deadlock: the queue is full and the caller is the
    /// loop's own thread, which is the only one that can empty it.
    WouldDeadlock,
}

/// A closure the loop did not take, handed back with the reason.
pub struct SubmitError {
    kind: SubmitErrorKind,
    job: Job,
}

impl SubmitError {
    /// Why the closure was rejected.
    pub fn kind(&self) -> SubmitErrorKind {
        self.kind
    }
    /// The rejected closure, to retry or run elsewhere.
    pub fn into_job(self) -> Job {
        self.job
    }
}

impl fmt::Debug for SubmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubmitError")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for SubmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            SubmitErrorKind::Full => "the event loop's queue is full",
            SubmitErrorKind::Timeout => "the event loop's queue stayed full until the timeout",
            SubmitErrorKind::Closed => "the event loop is gone",
            SubmitErrorKind::WouldDeadlock => {
                "the event loop's queue is full and this is the loop's own thread"
            }
        })
    }
}

impl std::error::Error for SubmitError {}

struct Shared {
    poller: Arc<Poller>,
    tx: Sender<Job>,
    stop: AtomicBool,
    /// The thread inside `run`/`dispatch`, to refuse a blocking submit from it.
    thread: Mutex<Option<ThreadId>>,
}

/// A `Send + Clone` handle to an [`EventLoop`]: wake it, stop it, and submit
/// closures to run on it through a bounded queue.
///
/// ```
/// use std::time::Duration;
/// use stead_core::Cancel;
/// use stead_eventloop::EventLoop;
///
/// let (tx, rx) = crossbeam_channel::bounded(1);
/// let stop = Cancel::new();
/// let s = stop.clone();
/// let thread = std::thread::spawn(move || {
///     let mut lp = EventLoop::new()?;
///     tx.send(lp.handle()).unwrap();
///     lp.run(&s)
/// });
/// let handle = rx.recv().unwrap();
/// let (done_tx, done_rx) = crossbeam_channel::bounded(1);
/// handle
///     .submit(move |lp| {
///         lp.after(Duration::from_millis(1), move |_| done_tx.send("timer").unwrap());
///     })
///     .unwrap();
/// assert_eq!(done_rx.recv().unwrap(), "timer");
/// stop.cancel();
/// thread.join().unwrap()?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct LoopHandle {
    shared: Arc<Shared>,
}

impl fmt::Debug for LoopHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoopHandle")
            .field("queued", &self.shared.tx.len())
            .finish()
    }
}

impl LoopHandle {
    /// Wake the loop: its current (or next) wait returns at once.
    pub fn wake(&self) {
        let _ = self.shared.poller.notify();
    }

    /// Make [`EventLoop::run`] return after its current round.
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.wake();
    }

    /// Queue `f` to run on the loop's thread, blocking while the queue is
    /// full (a blocking section for stead's pools and event server).
    pub fn submit<F>(&self, f: F) -> Result<(), SubmitError>
    where
        F: FnOnce(&mut EventLoop) + Send + 'static,
    {
        self.send(Box::new(f), None)
    }

    /// Queue `f` without blocking: a full queue hands it back.
    pub fn try_submit<F>(&self, f: F) -> Result<(), SubmitError>
    where
        F: FnOnce(&mut EventLoop) + Send + 'static,
    {
        match self.shared.tx.try_send(Box::new(f)) {
            Ok(()) => {
                self.wake();
                Ok(())
            }
            Err(TrySendError::Full(job)) => Err(SubmitError {
                kind: SubmitErrorKind::Full,
                job,
            }),
            Err(TrySendError::Disconnected(job)) => Err(SubmitError {
                kind: SubmitErrorKind::Closed,
                job,
            }),
        }
    }

    /// Queue `f`, waiting at most `timeout` for room.
    pub fn submit_timeout<F>(&self, f: F, timeout: Duration) -> Result<(), SubmitError>
    where
        F: FnOnce(&mut EventLoop) + Send + 'static,
    {
        self.send(Box::new(f), Some(timeout))
    }

    fn send(&self, job: Job, timeout: Option<Duration>) -> Result<(), SubmitError> {
        let job = match self.shared.tx.try_send(job) {
            Ok(()) => {
                self.wake();
                return Ok(());
            }
            Err(TrySendError::Disconnected(job)) => {
                return Err(SubmitError {
                    kind: SubmitErrorKind::Closed,
                    job,
                });
            }
            Err(TrySendError::Full(job)) => job,
        };
        let me = std::thread::current().id();
        let on_loop = *self.shared.thread.lock().unwrap_or_else(|e| e.into_inner()) == Some(me);
        if on_loop {
            return Err(SubmitError {
                kind: SubmitErrorKind::WouldDeadlock,
                job,
            });
        }
        // Make sure the loop runs to empty the queue.
        self.wake();
        let _blocking = stead_core::blocking::enter();
        let res = match timeout {
            None => self.shared.tx.send(job).map_err(|e| SubmitError {
                kind: SubmitErrorKind::Closed,
                job: e.into_inner(),
            }),
            Some(t) => self.shared.tx.send_timeout(job, t).map_err(|e| {
                let kind = if e.is_timeout() {
                    SubmitErrorKind::Timeout
                } else {
                    SubmitErrorKind::Closed
                };
                SubmitError {
                    kind,
                    job: e.into_inner(),
                }
            }),
        };
        if res.is_ok() {
            self.wake();
        }
        res
    }
}

/// Counters of an [`EventLoop`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoopStats {
    /// Waits on the poller that returned (each is one round).
    pub rounds: u64,
    /// Readiness events delivered to source callbacks.
    pub events: u64,
    /// Timer callbacks run.
    pub timers_fired: u64,
    /// Closures from other threads run.
    pub jobs_run: u64,
    /// Signals delivered to callbacks.
    pub signals: u64,
    /// Sources dropped by the no-progress detector.
    pub spins_detected: u64,
}

/// A single-threaded reactor: sources, timers, signals and submitted closures,
/// each with a callback that gets `&mut EventLoop` (to add timers, register
/// sources, or stop the loop from inside a callback).
///
/// See the [crate documentation](crate) for examples.
///
/// # The no-progress detector
///
/// A level-triggered source that stays ready while its callback does nothing
/// about it would make the loop spin at 100% CPU. The loop counts, per
/// registration, consecutive rounds in which the source was reported ready,
/// and from the third such round on it checks progress: the callback
/// returning [`PostAction::NoProgress`] is never progress; for a readable
/// byte stream (where `FIONREAD` works: sockets, pipes) progress means the
/// pending input shrank during the callback (an unread end-of-file counts as
/// no progress); other sources returning [`PostAction::Continue`] are taken
/// at their word. After [`spin_limit`](EventLoop::set_spin_limit)
/// consecutive reports without progress (default 64) the source is
/// deregistered and dropped, and a warning is logged. A source that stops
/// being ready for a round starts over.
pub struct EventLoop {
    poller: Arc<Poller>,
    events: Option<Events>,
    sources: Vec<SourceSlot>,
    free_sources: Vec<u32>,
    timers: TimerHeap<TimerFn>,
    timerfd: Registered<OwnedFd>,
    timer_armed: Option<u64>,
    base: (Instant, u64),
    jobs: Receiver<Job>,
    shared: Arc<Shared>,
    pub(crate) signals: Option<Signals>,
    clock: Option<ClockWatch>,
    round: u64,
    stopping: bool,
    spin_limit: u32,
    stats: LoopStats,
    /// The due time (ns) of the timer whose callback runs now.
    firing: Option<u64>,
}

type LoopCallback = Box<dyn FnMut(&mut EventLoop)>;

struct ClockWatch {
    fd: Registered<OwnedFd>,
    callbacks: Vec<LoopCallback>,
}

impl fmt::Debug for EventLoop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventLoop")
            .field("sources", &(self.sources.len() - self.free_sources.len()))
            .field("timers", &self.timers.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl EventLoop {
    /// A new loop whose cross-thread queue holds 1,024 closures.
    pub fn new() -> io::Result<EventLoop> {
        EventLoop::with_queue_capacity(DEFAULT_QUEUE)
    }

    /// A new loop whose cross-thread queue holds `capacity` closures
    /// (at least 1): [`LoopHandle::submit`] blocks when it is full.
    pub fn with_queue_capacity(capacity: usize) -> io::Result<EventLoop> {
        let poller = Arc::new(Poller::new().map_err(|e| sys::context(e, "create a poller"))?);
        let timerfd = Registered::new(
            &poller,
            sys::timerfd_monotonic()?,
            Interest::READ,
            Mode::Level,
            TIMER_KEY,
        )?;
        let (tx, jobs) = crossbeam_channel::bounded(capacity.max(1));
        let shared = Arc::new(Shared {
            poller: poller.clone(),
            tx,
            stop: AtomicBool::new(false),
            thread: Mutex::new(None),
        });
        let base = (Instant::now(), sys::monotonic_ns());
        Ok(EventLoop {
            poller,
            events: Some(Events::with_capacity(
                std::num::NonZeroUsize::new(256).expect("256 is not zero"),
            )),
            sources: Vec::new(),
            free_sources: Vec::new(),
            timers: TimerHeap::default(),
            timerfd,
            timer_armed: None,
            base,
            jobs,
            shared,
            signals: None,
            clock: None,
            round: 0,
            stopping: false,
            spin_limit: DEFAULT_SPIN_LIMIT,
            stats: LoopStats::default(),
            firing: None,
        })
    }

    /// A handle for other threads.
    pub fn handle(&self) -> LoopHandle {
        LoopHandle {
            shared: self.shared.clone(),
        }
    }

    /// Consecutive no-progress reports after which a source is dropped
    /// (default 64; at least 1). See [the detector](EventLoop#the-no-progress-detector).
    pub fn set_spin_limit(&mut self, n: u32) {
        self.spin_limit = n.max(1);
    }

    /// The loop's counters.
    pub fn stats(&self) -> LoopStats {
        self.stats
    }

    // ----- sources -------------------------------------------------------

    /// Register `source` (level-triggered) and call `callback` whenever it is
    /// ready for `interest`. The loop owns the source until it is removed:
    /// dropping the registration deregisters it before the source drops.
    ///
    /// ```
    /// use std::io::{Read, Write};
    /// use std::os::unix::net::UnixStream;
    /// use stead_eventloop::{EventLoop, Interest, PostAction};
    ///
    /// let mut lp = EventLoop::new()?;
    /// let (a, mut b) = UnixStream::pair()?;
    /// a.set_nonblocking(true)?;
    /// lp.register(a, Interest::READ, |_ready, sock: &mut UnixStream, lp| {
    ///     let mut buf = [0u8; 64];
    ///     match sock.read(&mut buf) {
    ///         Ok(0) => PostAction::Remove,
    ///         Ok(_) => { lp.stop(); PostAction::Continue }
    ///         Err(_) => PostAction::Remove,
    ///     }
    /// })?;
    /// b.write_all(b"hello")?;
    /// lp.run(&stead_core::Cancel::new())?; // returns at lp.stop()
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn register<S, F>(
        &mut self,
        source: S,
        interest: Interest,
        callback: F,
    ) -> io::Result<Token<S>>
    where
        S: AsFd + 'static,
        F: FnMut(Readiness, &mut S, &mut EventLoop) -> PostAction + 'static,
    {
        self.register_with_mode(source, interest, Mode::Level, callback)
    }

    /// [`register`](EventLoop::register) with an explicit [`Mode`].
    pub fn register_with_mode<S, F>(
        &mut self,
        source: S,
        interest: Interest,
        mode: Mode,
        callback: F,
    ) -> io::Result<Token<S>>
    where
        S: AsFd + 'static,
        F: FnMut(Readiness, &mut S, &mut EventLoop) -> PostAction + 'static,
    {
        let idx = match self.free_sources.pop() {
            Some(i) => i,
            None => {
                let i = u32::try_from(self.sources.len())
                    .ok()
                    .filter(|i| *i < u32::MAX - 8)
                    .ok_or_else(|| {
                        io::Error::new(io::ErrorKind::OutOfMemory, "too many sources")
                    })?;
                self.sources.push(SourceSlot {
                    gen_: 0,
                    entry: None,
                    used: false,
                    running: false,
                    removed: false,
                    pending_interest: None,
                    interest: Interest::NONE,
                    mode,
                    last_round: 0,
                    streak: 0,
                    strikes: 0,
                });
                i
            }
        };
        let gen_ = self.sources[idx as usize].gen_;
        let key = source_key(idx, gen_);
        let reg = match Registered::new(&self.poller, source, interest, mode, key) {
            Ok(r) => r,
            Err(e) => {
                self.free_sources.push(idx);
                return Err(e);
            }
        };
        let slot = &mut self.sources[idx as usize];
        slot.entry = Some(Box::new(Generic { reg, callback }));
        slot.used = true;
        slot.running = false;
        slot.removed = false;
        slot.pending_interest = None;
        slot.interest = interest;
        slot.mode = mode;
        slot.last_round = 0;
        slot.streak = 0;
        slot.strikes = 0;
        Ok(Token {
            idx,
            gen_,
            _source: PhantomData,
        })
    }

    fn slot_of<S>(&mut self, t: Token<S>) -> Option<&mut SourceSlot> {
        self.sources
            .get_mut(t.idx as usize)
            .filter(|s| s.used && s.gen_ == t.gen_)
    }

    /// Whether `token` names a registered source.
    pub fn contains<S>(&self, token: Token<S>) -> bool {
        self.sources
            .get(token.idx as usize)
            .is_some_and(|s| s.used && s.gen_ == token.gen_ && !s.removed)
    }

    /// Change a source's interest (e.g. add `WRITE` while output is queued,
    /// or re-enable a source its callback [disabled](PostAction::Disable)).
    /// From inside the source's own callback the change applies when it returns.
    pub fn set_interest<S>(&mut self, token: Token<S>, interest: Interest) -> io::Result<()> {
        let key = source_key(token.idx, token.gen_);
        let Some(slot) = self.slot_of(token) else {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "stead-eventloop: no such source",
            ));
        };
        match &slot.entry {
            Some(e) => {
                e.modify(interest, slot.mode, key)?;
                slot.interest = interest;
            }
            None => slot.pending_interest = Some(interest),
        }
        Ok(())
    }

    /// The registered source, to use it outside its callback (e.g. write to
    /// a socket from a timer). `None` if removed, or while its own callback runs.
    pub fn get_mut<S: 'static>(&mut self, token: Token<S>) -> Option<&mut S> {
        self.slot_of(token)?
            .entry
            .as_mut()?
            .source_any()?
            .downcast_mut::<S>()
    }

    /// Deregister a source and hand it back. From inside its own callback,
    /// return [`PostAction::Remove`] instead: there this returns `None` and
    /// the source is dropped when the callback returns.
    pub fn remove<S: 'static>(&mut self, token: Token<S>) -> Option<S> {
        let slot = self.slot_of(token)?;
        if slot.running {
            slot.removed = true;
            return None;
        }
        let entry = slot.entry.take()?;
        self.free_source(token.idx);
        entry
            .into_source()
            .downcast::<Option<S>>()
            .ok()
            .and_then(|b| *b)
    }

    fn free_source(&mut self, idx: u32) {
        let slot = &mut self.sources[idx as usize];
        slot.used = false;
        slot.running = false;
        slot.removed = false;
        slot.entry = None;
        slot.gen_ = slot.gen_.wrapping_add(1) & GEN_MASK;
        self.free_sources.push(idx);
    }

    fn dispatch_source(&mut self, key: usize, ready: Readiness) {
        let idx = (key & 0xffff_ffff) as u32;
        let gen_ = (key >> 32) as u32;
        let round = self.round;
        let Some(slot) = self.sources.get_mut(idx as usize) else {
            return;
        };
        if !slot.used || slot.gen_ != gen_ || slot.removed {
            return;
        }
        let Some(mut entry) = slot.entry.take() else {
            return;
        };
        if slot.last_round != 0 && slot.last_round + 1 == round {
            slot.streak = slot.streak.saturating_add(1);
        } else {
            slot.streak = 0;
            slot.strikes = 0;
        }
        slot.last_round = round;
        slot.running = true;
        let watch = slot.mode != Mode::Edge && slot.streak >= PROBE_AFTER && ready.readable;
        let before = if watch {
            entry.fd().and_then(sys::pending_bytes)
        } else {
            None
        };
        self.stats.events += 1;
        let action = entry.dispatch(ready, self);
        let after = before.and(entry.fd().and_then(sys::pending_bytes));
        let spin_limit = self.spin_limit;
        let slot = &mut self.sources[idx as usize];
        slot.running = false;
        if slot.removed {
            self.free_source(idx);
            drop(entry);
            return;
        }
        let no_progress = match action {
            PostAction::NoProgress => true,
            PostAction::Continue => matches!((before, after), (Some(b), Some(a)) if a >= b),
            PostAction::Disable | PostAction::Remove => false,
        };
        if no_progress {
            slot.strikes += 1;
        } else {
            slot.strikes = 0;
        }
        if slot.strikes >= spin_limit {
            let fd = entry.fd().map(|f| format!("{f:?}")).unwrap_or_default();
            log::warn!(
                "stead-eventloop: source {fd} was reported ready {} times in a row while its \
                 callback made no progress; deregistered and closed (a callback must consume \
                 its input, remove the source, or disable it)",
                slot.strikes
            );
            self.stats.spins_detected += 1;
            self.free_source(idx);
            drop(entry);
            return;
        }
        let key = source_key(idx, gen_);
        let res = match action {
            PostAction::Remove => {
                self.free_source(idx);
                drop(entry);
                return;
            }
            PostAction::Disable => {
                slot.pending_interest = None;
                slot.interest = Interest::NONE;
                entry.modify(Interest::NONE, slot.mode, key)
            }
            PostAction::Continue | PostAction::NoProgress => {
                if let Some(i) = slot.pending_interest.take() {
                    slot.interest = i;
                    entry.modify(i, slot.mode, key)
                } else if slot.mode == Mode::Oneshot {
                    entry.modify(slot.interest, slot.mode, key)
                } else {
                    Ok(())
                }
            }
        };
        if let Err(e) = res {
            log::error!("stead-eventloop: {e}; source dropped");
            self.free_source(idx);
            drop(entry);
            return;
        }
        self.sources[idx as usize].entry = Some(entry);
    }

    // ----- timers --------------------------------------------------------

    fn instant_ns(&self, t: Instant) -> u64 {
        let (bi, bn) = self.base;
        match t.checked_duration_since(bi) {
            Some(d) => bn.saturating_add(dur_ns(d)),
            None => bn.saturating_sub(dur_ns(bi - t)),
        }
    }

    /// Inside a timer callback: the time the timer was due (it runs at or
    /// shortly after it). For a periodic timer this is its point on the
    /// `start + k * period` grid, exactly. `None` outside timer callbacks.
    pub fn timer_deadline(&self) -> Option<Instant> {
        let (bi, bn) = self.base;
        self.firing.map(|ns| {
            if ns >= bn {
                bi + Duration::from_nanos(ns - bn)
            } else {
                bi.checked_sub(Duration::from_nanos(bn - ns)).unwrap_or(bi)
            }
        })
    }

    /// Now, on the timer clock. Goes through the same `Instant` mapping as
    /// [`at`](EventLoop::at), so `after(d)` and `at(now + d)` agree exactly.
    /// The mapping errs late by the nanoseconds between the two clock reads
    /// at creation, so timers never fire before their `Instant`.
    fn now_ns(&self) -> u64 {
        self.instant_ns(Instant::now())
    }

    /// Run `f` once, `delay` from now.
    ///
    /// Timers run on `CLOCK_MONOTONIC` (the clock of [`Instant`]): setting
    /// the wall clock does not move them (see [`on_clock_change`](EventLoop::on_clock_change)
    /// for that), and they do not advance while the machine is suspended.
    pub fn after<F>(&mut self, delay: Duration, f: F) -> TimerId
    where
        F: FnOnce(&mut EventLoop) + 'static,
    {
        let at = self.now_ns().saturating_add(dur_ns(delay));
        TimerId(self.timers.insert(at, TimerFn::Once(Box::new(f))))
    }

    /// Run `f` once at `deadline` (at the next round if it has passed).
    pub fn at<F>(&mut self, deadline: Instant, f: F) -> TimerId
    where
        F: FnOnce(&mut EventLoop) + 'static,
    {
        let at = self.instant_ns(deadline);
        TimerId(self.timers.insert(at, TimerFn::Once(Box::new(f))))
    }

    /// Run `f` every `period`, first one period from now, until cancelled.
    ///
    /// Ticks are scheduled at `start + k * period`, not "period after the
    /// last run", so they do not drift. When the loop falls behind (a long
    /// callback), the late tick runs once, as soon as it can, and the ticks
    /// missed meanwhile are skipped rather than run in a burst; the next one
    /// is the next point of the `start + k * period` grid. A zero period is
    /// an `InvalidInput` error.
    pub fn every<F>(&mut self, period: Duration, f: F) -> io::Result<TimerId>
    where
        F: FnMut(&mut EventLoop) + 'static,
    {
        if period.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "stead-eventloop: a periodic timer needs a period above zero",
            ));
        }
        let period = dur_ns(period).max(1);
        let at = self.now_ns().saturating_add(period);
        Ok(TimerId(self.timers.insert(
            at,
            TimerFn::Every {
                period,
                f: Box::new(f),
            },
        )))
    }

    /// Cancel a timer: it will not run (again). Returns `false` if it already
    /// ran (one-shot) or was cancelled. Works from inside any callback,
    /// including the timer's own.
    pub fn cancel_timer(&mut self, id: TimerId) -> bool {
        self.timers.cancel(id.0).is_some()
    }

    /// Whether a timer is still pending (or is a periodic timer not cancelled).
    pub fn timer_pending(&self, id: TimerId) -> bool {
        self.timers.contains(id.0)
    }

    /// Number of pending timers.
    pub fn timers_pending(&self) -> usize {
        self.timers.len()
    }

    fn run_due_timers(&mut self) {
        let now = sys::monotonic_ns();
        // Timers added by these callbacks wait for the next round, so a
        // timer re-adding itself with zero delay cannot starve I/O.
        let limit = self.timers.next_seq();
        while let Some((key, at, tf)) = self.timers.take_due(now, limit) {
            self.stats.timers_fired += 1;
            self.firing = Some(at);
            match tf {
                TimerFn::Once(f) => {
                    self.timers.cancel(key);
                    f(self);
                    self.firing = None;
                }
                TimerFn::Every { period, mut f } => {
                    f(self);
                    self.firing = None;
                    let mut next = at.saturating_add(period);
                    let now = sys::monotonic_ns().max(now);
                    if next <= now {
                        let missed = (now - at) / period;
                        next = at.saturating_add(period.saturating_mul(missed + 1));
                    }
                    self.timers
                        .finish(key, Some((next, TimerFn::Every { period, f })));
                }
            }
        }
    }

    fn arm_timerfd(&mut self) -> io::Result<()> {
        let next = self.timers.next_deadline();
        if next != self.timer_armed {
            if let Some(fd) = self.timerfd.fd() {
                sys::timerfd_set_abs(fd, next)?;
            }
            self.timer_armed = next;
        }
        Ok(())
    }

    /// Call `f` whenever the wall clock (`CLOCK_REALTIME`) is set
    /// discontinuously (by `settimeofday`, `date -s`, an NTP step): the
    /// place to recompute wall-clock schedules, since the loop's own timers
    /// are monotonic and do not follow such jumps. Uses a realtime timerfd
    /// with `TFD_TIMER_CANCEL_ON_SET`.
    pub fn on_clock_change<F>(&mut self, f: F) -> io::Result<()>
    where
        F: FnMut(&mut EventLoop) + 'static,
    {
        if self.clock.is_none() {
            let fd = Registered::new(
                &self.poller,
                sys::clock_change_fd()?,
                Interest::READ,
                Mode::Level,
                CLOCK_KEY,
            )?;
            self.clock = Some(ClockWatch {
                fd,
                callbacks: Vec::new(),
            });
        }
        if let Some(c) = &mut self.clock {
            c.callbacks.push(Box::new(f));
        }
        Ok(())
    }

    fn dispatch_clock(&mut self) {
        let Some(c) = &mut self.clock else { return };
        let Some(fd) = c.fd.fd() else { return };
        let changed = matches!(sys::timerfd_read(fd), Ok(sys::TimerRead::ClockSet));
        if let Err(e) = sys::arm_clock_change_fd(fd) {
            log::error!("{e}");
        }
        if !changed {
            return;
        }
        let mut cbs = std::mem::take(&mut c.callbacks);
        for cb in &mut cbs {
            cb(self);
        }
        if let Some(c) = &mut self.clock {
            cbs.append(&mut c.callbacks);
            c.callbacks = cbs;
        }
    }

    // ----- signals -------------------------------------------------------

    /// Call `f` on the loop's thread whenever `signal` arrives.
    ///
    /// Delivery goes through signal-hook's self-pipe: the signal handler
    /// only records the signal and writes a byte; the loop reads the pipe
    /// and runs the callbacks. signal-hook chains handlers, so this coexists
    /// with [`stead_core::shutdown_on_signals`] and any other signal-hook
    /// user (both see a SIGTERM; neither steals it). Several deliveries of
    /// one signal between two rounds may coalesce into one call.
    ///
    /// Once a signal is watched, its default action (e.g. terminating on
    /// SIGHUP) no longer happens, even after the callback is removed.
    /// Signals that cannot be caught or must not be (SIGKILL, SIGSTOP,
    /// SIGSEGV, SIGILL, SIGFPE) and numbers outside 1..=64 are an
    /// `InvalidInput` error.
    pub fn on_signal<F>(&mut self, signal: c_int, f: F) -> io::Result<SignalId>
    where
        F: FnMut(&mut EventLoop, c_int) + 'static,
    {
        if self.signals.is_none() {
            self.signals = Some(Signals::new(&self.poller, SIGNAL_KEY)?);
        }
        match &mut self.signals {
            Some(s) => s.add(signal, Box::new(f)),
            None => unreachable!("just created"),
        }
    }

    /// Remove a signal callback. Returns `false` if it was already removed.
    pub fn remove_signal(&mut self, id: SignalId) -> bool {
        self.signals.as_mut().is_some_and(|s| s.remove(id))
    }

    // ----- running -------------------------------------------------------

    /// Make [`run`](EventLoop::run) return after the current round (from a callback).
    pub fn stop(&mut self) {
        self.stopping = true;
    }

    /// Run rounds until `cancel` fires or [`stop`](EventLoop::stop) /
    /// [`LoopHandle::stop`] is called.
    pub fn run(&mut self, cancel: &Cancel) -> io::Result<()> {
        let handle = self.handle();
        let _wake = cancel.on_cancel(move |_| handle.wake());
        let res = loop {
            if cancel.is_cancelled()
                || std::mem::take(&mut self.stopping)
                || self.shared.stop.swap(false, Ordering::SeqCst)
            {
                break Ok(());
            }
            if let Err(e) = self.dispatch(None) {
                break Err(e);
            }
        };
        self.stopping = false;
        res
    }

    /// Run one round: wait (at most `timeout`; `None` waits until something
    /// happens) and call the callbacks of everything that is ready, the
    /// timers that are due and the queued closures.
    pub fn dispatch(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        *self.shared.thread.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(std::thread::current().id());
        let res = self.dispatch_inner(timeout);
        *self.shared.thread.lock().unwrap_or_else(|e| e.into_inner()) = None;
        res
    }

    fn dispatch_inner(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.arm_timerfd()?;
        let timeout = if self.jobs.is_empty() && !self.stopping {
            timeout
        } else {
            Some(Duration::ZERO)
        };
        let mut events = self
            .events
            .take()
            .unwrap_or_else(|| Events::with_capacity(std::num::NonZeroUsize::MIN));
        events.clear();
        let res = self.poller.wait(&mut events, timeout);
        if let Err(e) = res {
            self.events = Some(events);
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(());
            }
            return Err(sys::context(e, "wait for events"));
        }
        self.round += 1;
        self.stats.rounds += 1;
        for ev in events.iter() {
            match ev.key {
                TIMER_KEY => {
                    if let Some(fd) = self.timerfd.fd() {
                        sys::timerfd_read(fd)?;
                    }
                    self.timer_armed = None;
                }
                SIGNAL_KEY => self.dispatch_signals(),
                CLOCK_KEY => self.dispatch_clock(),
                key => self.dispatch_source(key, Readiness::from_event(&ev)),
            }
        }
        self.events = Some(events);
        self.run_due_timers();
        // Only what is queued now: closures that submit closures wait a round.
        for _ in 0..self.jobs.len() {
            match self.jobs.try_recv() {
                Ok(job) => {
                    self.stats.jobs_run += 1;
                    job(self);
                }
                Err(_) => break,
            }
        }
        Ok(())
    }

    fn dispatch_signals(&mut self) {
        let Some(s) = &mut self.signals else { return };
        for sig in s.pending() {
            let ids = self
                .signals
                .as_ref()
                .map_or_else(Vec::new, |s| s.ids_for(sig));
            for id in ids {
                let Some(mut cb) = self.signals.as_mut().and_then(|s| s.take(id)) else {
                    continue;
                };
                self.stats.signals += 1;
                cb(self, sig);
                if let Some(s) = &mut self.signals {
                    s.put_back(id, cb);
                }
            }
        }
    }
}

fn source_key(idx: u32, gen_: u32) -> usize {
    ((gen_ as usize) << 32) | idx as usize
}

fn dur_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
