//! Worker threads: the shared state, the run loop, parking and waking,
//! elastic growth and compensation for blocked workers.
//!
//! # The control word
//!
//! One `AtomicU64` (`ctl`) packs the thread counts every decision needs, so a
//! submitter reads them with a single load:
//!
//! | bits  | field      | meaning                                              |
//! |-------|------------|------------------------------------------------------|
//! | 0-15  | live       | worker threads started and not yet exited            |
//! | 16-31 | blocked    | workers inside a blocking section                    |
//! | 32-47 | sleeping   | workers parked on the idle stack                     |
//! | 48-62 | searching  | workers spinning for work (or just woken to do so)   |
//! | 63    | closed     | shutdown started: no new submissions                 |
//!
//! # Waking
//!
//! Workers never block inside the channel: they poll it (`try_recv`), spin a
//! little while counted as *searching*, then park on the idle stack. A
//! submitter wakes a parked worker only when nobody is searching, so a burst
//! of submissions while one worker is awake costs no wake-ups. The woken
//! worker is counted as searching by the waker (so the next submitter does
//! not wake a second one); when a searcher finds a task and it was the last
//! searcher while work is still queued, it wakes another (the chain that
//! restores parallelism, as in tokio's scheduler). Both sides publish then
//! check with a `SeqCst` fence in between (submitter: push, fence, read ctl;
//! worker: count itself sleeping, fence, re-check the queue), so a task is
//! never left queued with every worker asleep.
//!
//! # Backpressure
//!
//! The queue is a bounded crossbeam channel. A producer that finds it full
//! waits (in a blocking section) until it is at most half full, so a fast
//! producer refills a run of slots per wake-up instead of being woken for
//! every slot a worker frees.
//!
//! # Compensation
//!
//! Each worker installs a [`BlockingObserver`]: stead's blocking calls and
//! [`Pool::blocking`](crate::Pool::blocking) sections bump `blocked`. When
//! `blocked == live` (every worker waits) while tasks are queued, the
//! observer, or the submitter that queued the task, starts one more worker,
//! up to `max_workers + compensation_limit` threads. Extra workers retire
//! after `idle_timeout` without work, or right after a task once more than
//! `max_workers` workers are unblocked.

use std::cell::RefCell;
use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::thread::{self, JoinHandle as ThreadHandle, Thread};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use stead_core::Cancel;
use stead_core::blocking::{self, BlockingObserver};

use crate::stats::{Stats, TaskReport, TaskState};
use crate::task::{Header, Runnable};

/// A queue entry.
pub(crate) type Msg = Arc<dyn Runnable>;

const LIVE: u64 = 1;
const BLOCKED: u64 = 1 << 16;
const SLEEPING: u64 = 1 << 32;
const SEARCHING: u64 = 1 << 48;
const CLOSED: u64 = 1 << 63;
const FIELD: u64 = 0xFFFF;

/// The most threads one pool may have (the width of the `live` field, kept
/// below the `searching` field's width).
pub(crate) const MAX_THREADS: usize = 0x7FFF;

#[inline]
fn live(c: u64) -> usize {
    (c & FIELD) as usize
}
#[inline]
fn blocked(c: u64) -> usize {
    ((c >> 16) & FIELD) as usize
}
#[inline]
fn sleeping(c: u64) -> usize {
    ((c >> 32) & FIELD) as usize
}
#[inline]
fn searching(c: u64) -> usize {
    ((c >> 48) & 0x7FFF) as usize
}
#[inline]
fn is_closed(c: u64) -> bool {
    c & CLOSED != 0
}

/// How many times an idle worker polls the queue (a pause between polls,
/// then a few `yield_now`s at the end) before it parks.
const SPIN_ROUNDS: u32 = 128;

static NEXT_POOL_ID: AtomicU64 = AtomicU64::new(1);

/// Settings fixed at build time.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) name: Arc<str>,
    pub(crate) workers: usize,
    pub(crate) max_workers: usize,
    pub(crate) compensation_limit: usize,
    pub(crate) idle_timeout: Duration,
    pub(crate) stack_size: usize,
    pub(crate) watchdog: Option<Duration>,
}

impl Config {
    fn max_threads(&self) -> usize {
        (self.max_workers + self.compensation_limit).min(MAX_THREADS)
    }
}

/// What a worker thread was started for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// One of the `workers` threads: never retires before shutdown.
    Core,
    /// Started because the queue backed up (up to `max_workers`).
    Elastic,
    /// Started because every worker was blocked (beyond `max_workers`).
    Compensating,
}

/// Why `submit` could not queue a task.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum EnqueueError {
    /// The queue was full and the caller would not wait.
    Full,
    /// The queue stayed full until the deadline.
    Timeout,
    /// The pool is shutting down. The entry may have been queued already:
    /// the caller must take its task back (or find it claimed).
    Closed,
}

/// How long `enqueue` may wait for room.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Wait {
    No,
    Until(Option<Instant>),
}

#[derive(Default)]
struct Registry {
    threads: Vec<ThreadHandle<()>>,
    slots: Vec<Arc<WorkerSlot>>,
    /// Counters of workers that exited.
    retired_started: u64,
    retired_completed: u64,
    retired_panicked: u64,
    retired_cancelled: u64,
}

/// State shared by the pool, its handles and its workers.
pub(crate) struct Shared {
    pub(crate) id: u64,
    pub(crate) cfg: Config,
    tx: Sender<Msg>,
    rx: Receiver<Msg>,
    ctl: AtomicU64,
    /// The pool's token: parent of every task token.
    pub(crate) cancel: Cancel,
    /// Stops the watchdog.
    pub(crate) stop: Cancel,
    idle: Mutex<Vec<Arc<WorkerSlot>>>,
    registry: Mutex<Registry>,
    /// Signalled when a worker exits or a spawn fails.
    exited: Condvar,
    next_thread: AtomicUsize,
    rejected: AtomicU64,
    cancelled: AtomicU64,
    compensations: AtomicU64,
    compensating: AtomicUsize,
    overdue: AtomicUsize,
    cap_warned: AtomicBool,
    self_ref: Weak<Shared>,
    epoch: Instant,
    clock: AtomicU64,
    /// Producers blocked on a full queue wait here for `half` free slots.
    room: Mutex<()>,
    room_cv: Condvar,
    room_wanted: AtomicBool,
    half: usize,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("name", &self.cfg.name)
            .field("stats", &self.stats())
            .finish()
    }
}

thread_local! {
    /// Set on worker threads: their pool and their slot.
    static CURRENT: RefCell<Option<(Arc<Shared>, Arc<WorkerSlot>)>> = const { RefCell::new(None) };
}

/// The pool and slot of the current thread if it is a worker of pool `id`.
pub(crate) fn current_worker_of(id: u64) -> Option<(Arc<Shared>, Arc<WorkerSlot>)> {
    CURRENT.with(|c| match &*c.borrow() {
        Some((s, w)) if s.id == id => Some((s.clone(), w.clone())),
        _ => None,
    })
}

/// The current thread's slot, if it is a worker of a pool whose watchdog is on.
pub(crate) fn current_slot_watched() -> Option<Arc<WorkerSlot>> {
    CURRENT.with(|c| match &*c.borrow() {
        Some((s, w)) if s.cfg.watchdog.is_some() => Some(w.clone()),
        _ => None,
    })
}

/// The pool the current thread works for.
pub(crate) fn current_pool() -> Option<Arc<Shared>> {
    CURRENT.with(|c| c.borrow().as_ref().map(|(s, _)| s.clone()))
}

/// Whether the current thread is one of pool `id`'s workers.
pub(crate) fn on_worker_of(id: u64) -> bool {
    CURRENT.with(|c| matches!(&*c.borrow(), Some((s, _)) if s.id == id))
}

/// Per-worker state. Counters are written only by the worker's own thread,
/// so they need no read-modify-write; readers sum them.
pub(crate) struct WorkerSlot {
    index: usize,
    name: String,
    thread: OnceLock<Thread>,
    woken: AtomicBool,
    /// Counted in `ctl`'s searching field (written by the worker only).
    searching: AtomicBool,
    /// Nesting depth of running tasks (0: not running one).
    depth: AtomicUsize,
    started: AtomicU64,
    completed: AtomicU64,
    panicked: AtomicU64,
    cancelled: AtomicU64,
    // Watchdog bookkeeping (only while the watchdog is on), about the task
    // the worker took from the queue (tasks it runs inline from a join are
    // part of that task's time). Times are the pool's coarse clock.
    /// When the task started; 0 when the worker runs none.
    task_since: AtomicU64,
    /// When the worker entered a blocking section; 0 when not blocked.
    blocked_since: AtomicU64,
    /// The task's name (set only for named tasks).
    task_name: Mutex<Option<Arc<str>>>,
    /// The task being joined, while blocked in a join.
    waiting_for: Mutex<Option<Option<Arc<str>>>>,
}

fn lock<V>(m: &Mutex<V>) -> MutexGuard<'_, V> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[inline]
fn bump(a: &AtomicU64) {
    // Single writer: a plain load + store is enough and avoids a locked op.
    a.store(a.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

impl WorkerSlot {
    fn new(index: usize, name: String) -> WorkerSlot {
        WorkerSlot {
            index,
            name,
            thread: OnceLock::new(),
            woken: AtomicBool::new(false),
            searching: AtomicBool::new(false),
            depth: AtomicUsize::new(0),
            started: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            panicked: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            task_since: AtomicU64::new(0),
            blocked_since: AtomicU64::new(0),
            task_name: Mutex::new(None),
            waiting_for: Mutex::new(None),
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// A task starts on this worker.
    #[inline]
    pub(crate) fn begin(&self, shared: &Shared, h: &Header) {
        let depth = self.depth.load(Ordering::Relaxed);
        self.depth.store(depth + 1, Ordering::Relaxed);
        bump(&self.started);
        if depth != 0 {
            return;
        }
        let Some(threshold) = shared.cfg.watchdog else {
            return;
        };
        let now = shared.clock();
        self.task_since.store(now, Ordering::Relaxed);
        if let Some(name) = &h.name {
            *lock(&self.task_name) = Some(name.clone());
        }
        if h.enqueued != 0 && now.saturating_sub(h.enqueued) >= threshold.as_millis() as u64 {
            log::warn!(
                "pool {}: {} waited about {:?} in the queue before starting on {}",
                shared.name(),
                crate::stats::describe(h.name.as_deref()),
                Duration::from_millis(now - h.enqueued),
                self.name
            );
        }
    }

    /// The task that [`begin`](WorkerSlot::begin) announced returned.
    #[inline]
    pub(crate) fn end(&self, shared: &Shared, h: &Header) {
        let depth = self.depth.load(Ordering::Relaxed) - 1;
        self.depth.store(depth, Ordering::Relaxed);
        if depth != 0 {
            return;
        }
        if shared.cfg.watchdog.is_some() {
            self.task_since.store(0, Ordering::Relaxed);
            if h.name.is_some() {
                *lock(&self.task_name) = None;
            }
        }
        // About to publish the result with nothing queued: count ourselves
        // as searching now, so a joiner that submits its next task as soon as
        // it sees the result does not wake a sleeping worker for it.
        if shared.rx.is_empty() {
            self.set_searching(shared, true);
        }
    }

    #[inline]
    fn is_searching(&self) -> bool {
        self.searching.load(Ordering::Relaxed)
    }

    /// Enter or leave the searching state, keeping `ctl` in step.
    #[inline]
    fn set_searching(&self, shared: &Shared, on: bool) {
        if self.is_searching() == on {
            return;
        }
        self.searching.store(on, Ordering::Relaxed);
        if on {
            shared.ctl.fetch_add(SEARCHING, Ordering::SeqCst);
        } else {
            shared.leave_search();
        }
    }

    pub(crate) fn count_completed(&self) {
        bump(&self.completed);
    }

    pub(crate) fn count_panicked(&self) {
        bump(&self.panicked);
    }

    pub(crate) fn count_cancelled(&self) {
        bump(&self.cancelled);
    }

    /// Note (for the watchdog) that the current task waits for `target`.
    pub(crate) fn set_waiting_for(&self, target: Option<Option<Arc<str>>>) {
        *lock(&self.waiting_for) = target;
    }
}

/// Tells the pool when its worker blocks.
struct Observer {
    shared: Arc<Shared>,
    slot: Arc<WorkerSlot>,
}

impl BlockingObserver for Observer {
    fn enter(&self) {
        let c = self.shared.ctl.fetch_add(BLOCKED, Ordering::SeqCst) + BLOCKED;
        if self.shared.cfg.watchdog.is_some() {
            self.slot
                .blocked_since
                .store(self.shared.clock(), Ordering::Relaxed);
        }
        if blocked(c) >= live(c) {
            fence(Ordering::SeqCst);
            if !self.shared.rx.is_empty() {
                self.shared.compensate();
            }
        }
    }

    fn exit(&self) {
        self.shared.ctl.fetch_sub(BLOCKED, Ordering::SeqCst);
        if self.shared.cfg.watchdog.is_some() {
            self.slot.blocked_since.store(0, Ordering::Relaxed);
        }
    }
}

/// What a parked worker should do next.
enum Park {
    /// A waker took it off the idle stack and counted it as searching.
    Woken,
    /// It took itself off the stack (work appeared or the pool closed).
    Recheck,
    /// It retired (idle timeout); `live` already counts it out.
    Retire,
}

impl Shared {
    pub(crate) fn new(
        cfg: Config,
        capacity: usize,
        cancel: Cancel,
        self_ref: Weak<Shared>,
    ) -> Shared {
        let (tx, rx) = crossbeam_channel::bounded(capacity);
        Shared {
            id: NEXT_POOL_ID.fetch_add(1, Ordering::Relaxed),
            cfg,
            tx,
            rx,
            ctl: AtomicU64::new(0),
            cancel,
            stop: Cancel::new(),
            idle: Mutex::new(Vec::new()),
            registry: Mutex::new(Registry::default()),
            exited: Condvar::new(),
            next_thread: AtomicUsize::new(0),
            rejected: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            compensations: AtomicU64::new(0),
            compensating: AtomicUsize::new(0),
            overdue: AtomicUsize::new(0),
            cap_warned: AtomicBool::new(false),
            self_ref,
            epoch: Instant::now(),
            clock: AtomicU64::new(1),
            room: Mutex::new(()),
            room_cv: Condvar::new(),
            room_wanted: AtomicBool::new(false),
            half: capacity / 2,
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.cfg.name
    }

    pub(crate) fn is_closed(&self) -> bool {
        is_closed(self.ctl.load(Ordering::Acquire))
    }

    pub(crate) fn count_cancelled(&self) {
        self.cancelled.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn set_overdue(&self, n: usize) {
        self.overdue.store(n, Ordering::Relaxed);
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn idle(&self) -> MutexGuard<'_, Vec<Arc<WorkerSlot>>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue a task, waiting for room as `wait` allows.
    pub(crate) fn enqueue(&self, msg: Msg, wait: Wait) -> Result<(), EnqueueError> {
        if is_closed(self.ctl.load(Ordering::Relaxed)) {
            return Err(EnqueueError::Closed);
        }
        match self.tx.try_send(msg) {
            Ok(()) => {}
            Err(TrySendError::Full(msg)) => {
                let Wait::Until(deadline) = wait else {
                    self.rejected.fetch_add(1, Ordering::Relaxed);
                    return Err(EnqueueError::Full);
                };
                if let Err(e) = self.wait_for_room(msg, deadline) {
                    if e == EnqueueError::Timeout {
                        self.rejected.fetch_add(1, Ordering::Relaxed);
                    }
                    return Err(e);
                }
            }
            // Unreachable while `self` holds a receiver; treat as closed.
            Err(TrySendError::Disconnected(_)) => return Err(EnqueueError::Closed),
        }
        fence(Ordering::SeqCst);
        let c = self.ctl.load(Ordering::Relaxed);
        if is_closed(c) {
            return Err(EnqueueError::Closed);
        }
        if searching(c) == 0 {
            if sleeping(c) > 0 {
                self.wake_one();
            } else {
                self.grow(c);
            }
        }
        Ok(())
    }

    /// The queue is full: wait until it is at most half full, then push.
    ///
    /// Waking the producer at every freed slot would cost a wake-up per
    /// task; waking it at half capacity lets it refill a run of slots.
    /// Waiting is a blocking section: on a worker of any stead pool it may
    /// start a compensating worker.
    #[cold]
    fn wait_for_room(&self, mut msg: Msg, deadline: Option<Instant>) -> Result<(), EnqueueError> {
        let _blocking = blocking::enter();
        let mut g = lock(&self.room);
        loop {
            self.room_wanted.store(true, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            match self.tx.try_send(msg) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Full(m)) => msg = m,
                Err(TrySendError::Disconnected(_)) => return Err(EnqueueError::Closed),
            }
            if is_closed(self.ctl.load(Ordering::SeqCst)) {
                return Err(EnqueueError::Closed);
            }
            g = match deadline {
                None => self.room_cv.wait(g).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Err(EnqueueError::Timeout);
                    }
                    self.room_cv
                        .wait_timeout(g, d - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }

    /// After a pop: wake producers waiting for room once the queue is at
    /// most half full.
    #[inline]
    fn popped(&self) {
        if self.room_wanted.load(Ordering::SeqCst) && self.rx.len() <= self.half {
            self.notify_room();
        }
    }

    #[cold]
    fn notify_room(&self) {
        if self.room_wanted.swap(false, Ordering::SeqCst) {
            let _g = lock(&self.room);
            self.room_cv.notify_all();
        }
    }

    /// No worker is idle: start one if every worker is blocked
    /// (compensation) or, in an elastic pool, if work is backing up.
    #[cold]
    fn grow(&self, c: u64) {
        if live(c) == 0 {
            return;
        }
        if blocked(c) >= live(c) {
            self.compensate();
        } else if live(c) < self.cfg.max_workers && self.rx.len() >= live(c) - blocked(c) {
            self.spawn_extra(Kind::Elastic);
        }
    }

    /// Every worker is blocked and work is queued: start a worker, up to the cap.
    #[cold]
    fn compensate(&self) {
        let cap = self.cfg.max_threads();
        let mut c = self.ctl.load(Ordering::SeqCst);
        loop {
            if blocked(c) < live(c) || live(c) == 0 {
                return; // someone unblocked or already compensated
            }
            if live(c) >= cap {
                if !self.cap_warned.swap(true, Ordering::Relaxed) {
                    log::error!(
                        "pool {}: all {} workers are blocked with {} tasks queued and the \
                         thread cap ({cap}) is reached; queued work waits until one unblocks",
                        self.name(),
                        live(c),
                        self.rx.len()
                    );
                }
                return;
            }
            match self
                .ctl
                .compare_exchange(c, c + LIVE, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => break,
                Err(now) => c = now,
            }
        }
        let kind = if live(c) < self.cfg.max_workers {
            Kind::Elastic
        } else {
            Kind::Compensating
        };
        log::warn!(
            "pool {}: all {} workers are blocked with {} tasks queued; starting a \
             compensating worker ({} of at most {cap} threads)",
            self.name(),
            live(c),
            self.rx.len(),
            live(c) + 1
        );
        let _ = self.spawn_reserved(kind);
    }

    /// Start an elastic worker if still below `max_workers`.
    fn spawn_extra(&self, kind: Kind) {
        let mut c = self.ctl.load(Ordering::SeqCst);
        loop {
            if live(c) >= self.cfg.max_workers || is_closed(c) {
                return;
            }
            match self
                .ctl
                .compare_exchange(c, c + LIVE, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => break,
                Err(now) => c = now,
            }
        }
        log::debug!(
            "pool {}: queue backing up, growing to {} workers",
            self.name(),
            live(c) + 1
        );
        let _ = self.spawn_reserved(kind);
    }

    /// Start a worker thread whose `live` slot is already reserved.
    pub(crate) fn spawn_reserved(&self, kind: Kind) -> io::Result<()> {
        let Some(shared) = self.arc() else {
            // Only while the last reference is being dropped: nothing to serve.
            self.ctl.fetch_sub(LIVE, Ordering::SeqCst);
            return Err(io::Error::other("stead-pool: the pool is gone"));
        };
        let index = self.next_thread.fetch_add(1, Ordering::Relaxed) + 1;
        let name = format!("{}-{index}", self.name());
        let slot = Arc::new(WorkerSlot::new(index, name.clone()));
        let mut reg = self.registry();
        // Reap threads that already exited (elastic churn) so handles do not pile up.
        let mut i = 0;
        while i < reg.threads.len() {
            if reg.threads[i].is_finished() {
                let _ = reg.threads.swap_remove(i).join();
            } else {
                i += 1;
            }
        }
        let their_slot = slot.clone();
        let res = thread::Builder::new()
            .name(name.clone())
            .stack_size(self.cfg.stack_size)
            .spawn(move || worker_main(shared, their_slot, kind));
        match res {
            Ok(h) => {
                reg.threads.push(h);
                reg.slots.push(slot);
                if kind == Kind::Compensating {
                    self.compensating.fetch_add(1, Ordering::Relaxed);
                    self.compensations.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            }
            Err(e) => {
                self.ctl.fetch_sub(LIVE, Ordering::SeqCst);
                drop(reg);
                self.exited.notify_all();
                log::error!(
                    "pool {}: cannot start worker thread {name}: {e}",
                    self.name()
                );
                Err(io::Error::new(
                    e.kind(),
                    format!(
                        "stead-pool {}: cannot start thread {name}: {e}",
                        self.name()
                    ),
                ))
            }
        }
    }

    /// An `Arc` to `self` (every `Shared` is built by `Arc::new_cyclic`).
    fn arc(&self) -> Option<Arc<Shared>> {
        self.self_ref.upgrade()
    }

    /// Wake one parked worker, counting it as searching. Returns whether one was parked.
    pub(crate) fn wake_one(&self) -> bool {
        let mut idle = self.idle();
        let Some(w) = idle.pop() else { return false };
        self.ctl.fetch_add(SEARCHING - SLEEPING, Ordering::SeqCst);
        w.woken.store(true, Ordering::Release);
        drop(idle);
        if let Some(t) = w.thread.get() {
            t.unpark();
        }
        true
    }

    /// Wake every parked worker (shutdown).
    pub(crate) fn wake_all(&self) {
        while self.wake_one() {}
    }

    /// A searching worker found a task. If it was the last searcher and more
    /// work is queued, wake another worker to keep the parallelism.
    fn leave_search(&self) {
        let prev = self.ctl.fetch_sub(SEARCHING, Ordering::SeqCst);
        if searching(prev) == 1 && sleeping(prev) > 0 && !self.rx.is_empty() {
            self.wake_one();
        }
    }

    fn park(&self, slot: &Arc<WorkerSlot>, kind: Kind) -> Park {
        {
            let mut idle = self.idle();
            slot.woken.store(false, Ordering::Relaxed);
            idle.push(slot.clone());
            self.ctl.fetch_sub(SEARCHING - SLEEPING, Ordering::SeqCst);
        }
        fence(Ordering::SeqCst);
        if !self.rx.is_empty() || is_closed(self.ctl.load(Ordering::SeqCst)) {
            return self.unpark_self(slot);
        }
        let mut deadline = match kind {
            Kind::Core => None,
            Kind::Elastic | Kind::Compensating => Some(Instant::now() + self.cfg.idle_timeout),
        };
        loop {
            if slot.woken.load(Ordering::Acquire) {
                return Park::Woken;
            }
            match deadline {
                None => thread::park(),
                Some(d) => {
                    let now = Instant::now();
                    if now < d {
                        thread::park_timeout(d - now);
                        continue;
                    }
                    let mut idle = self.idle();
                    if slot.woken.load(Ordering::Acquire) {
                        return Park::Woken;
                    }
                    // Retire if above the core size; otherwise stay parked.
                    let mut c = self.ctl.load(Ordering::SeqCst);
                    loop {
                        if live(c) <= self.cfg.workers {
                            deadline = None;
                            break;
                        }
                        match self.ctl.compare_exchange(
                            c,
                            c - LIVE - SLEEPING,
                            Ordering::SeqCst,
                            Ordering::SeqCst,
                        ) {
                            Ok(_) => {
                                if let Some(pos) = idle.iter().position(|w| Arc::ptr_eq(w, slot)) {
                                    idle.remove(pos);
                                }
                                return Park::Retire;
                            }
                            Err(now) => c = now,
                        }
                    }
                }
            }
        }
    }

    /// Take ourselves off the idle stack, unless a waker already did.
    fn unpark_self(&self, slot: &Arc<WorkerSlot>) -> Park {
        let mut idle = self.idle();
        match idle.iter().position(|w| Arc::ptr_eq(w, slot)) {
            Some(pos) => {
                idle.remove(pos);
                self.ctl.fetch_sub(SLEEPING, Ordering::SeqCst);
                Park::Recheck
            }
            None => Park::Woken,
        }
    }

    /// An extra worker just finished a task: retire it if more than
    /// `max_workers` workers are unblocked.
    fn retire_after_task(&self) -> bool {
        let mut c = self.ctl.load(Ordering::SeqCst);
        loop {
            if live(c) <= self.cfg.workers || live(c) - blocked(c) <= self.cfg.max_workers {
                return false;
            }
            match self
                .ctl
                .compare_exchange(c, c - LIVE, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return true,
                Err(now) => c = now,
            }
        }
    }

    /// Mark the pool closed. Returns whether this call closed it.
    pub(crate) fn close(&self) -> bool {
        let first = self.ctl.fetch_or(CLOSED, Ordering::SeqCst) & CLOSED == 0;
        // Producers waiting for room give up (through handles only).
        self.room_wanted.store(true, Ordering::SeqCst);
        self.notify_room();
        first
    }

    /// Reserve `n` live slots for the initial workers.
    pub(crate) fn reserve_core(&self, n: usize) {
        self.ctl.fetch_add(n as u64 * LIVE, Ordering::SeqCst);
    }

    /// Give back a reserved slot whose thread will not be started.
    pub(crate) fn unreserve_one(&self) {
        self.ctl.fetch_sub(LIVE, Ordering::SeqCst);
    }

    /// Wait until at most `target` workers are alive, or `deadline` passes.
    /// Returns whether the target was reached.
    pub(crate) fn wait_live(&self, target: usize, deadline: Option<Instant>) -> bool {
        let mut reg = self.registry();
        loop {
            if live(self.ctl.load(Ordering::SeqCst)) <= target {
                return true;
            }
            reg = match deadline {
                None => self.exited.wait(reg).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return false;
                    }
                    self.exited
                        .wait_timeout(reg, d - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }

    /// Pop every queued entry and settle it as cancelled. Returns how many
    /// tasks that had not run were cancelled.
    pub(crate) fn drain_cancel(&self) -> usize {
        let mut n = 0;
        let mut dead = 0;
        while let Ok(m) = self.rx.try_recv() {
            if m.cancel_queued(stead_core::CancelReason::Shutdown) {
                n += 1;
            } else if m.header().state() == crate::task::CANCELLED {
                dead += 1; // cancelled through its handle, never popped
            }
        }
        self.cancelled
            .fetch_add((n + dead) as u64, Ordering::Relaxed);
        n
    }

    /// Workers currently running a task.
    pub(crate) fn running(&self) -> usize {
        self.registry()
            .slots
            .iter()
            .filter(|s| s.depth.load(Ordering::Relaxed) > 0)
            .count()
    }

    /// Join every thread except the current one (which cannot join itself).
    pub(crate) fn join_threads(&self) {
        let me = thread::current().id();
        loop {
            let threads = std::mem::take(&mut self.registry().threads);
            if threads.is_empty() {
                return;
            }
            for t in threads {
                if t.thread().id() == me {
                    continue; // detached: it exits right after this task returns
                }
                if t.join().is_err() {
                    log::error!("pool {}: a worker thread panicked", self.name());
                }
            }
        }
    }

    /// Tasks started so far (for the watchdog's stall detection).
    pub(crate) fn started_total(&self) -> u64 {
        let reg = self.registry();
        reg.retired_started
            + reg
                .slots
                .iter()
                .map(|s| s.started.load(Ordering::Relaxed))
                .sum::<u64>()
    }

    pub(crate) fn queued(&self) -> usize {
        self.rx.len()
    }

    /// Backstop for the compensation race: called by the watchdog.
    pub(crate) fn check_starvation(&self) {
        let c = self.ctl.load(Ordering::SeqCst);
        if live(c) > 0 && blocked(c) >= live(c) && !self.rx.is_empty() {
            self.compensate();
        }
    }

    pub(crate) fn stats(&self) -> Stats {
        let c = self.ctl.load(Ordering::SeqCst);
        let reg = self.registry();
        let mut s = Stats {
            workers: live(c),
            idle: sleeping(c) + searching(c),
            blocked: blocked(c),
            compensating: self.compensating.load(Ordering::Relaxed),
            queued: self.rx.len(),
            capacity: self.rx.capacity().unwrap_or(0),
            running: 0,
            completed: reg.retired_completed,
            panicked: reg.retired_panicked,
            cancelled: self.cancelled.load(Ordering::Relaxed) + reg.retired_cancelled,
            rejected: self.rejected.load(Ordering::Relaxed),
            compensations: self.compensations.load(Ordering::Relaxed),
            overdue: self.overdue.load(Ordering::Relaxed),
            closed: is_closed(c),
        };
        for slot in &reg.slots {
            if slot.depth.load(Ordering::Relaxed) > 0 {
                s.running += 1;
            }
            s.completed += slot.completed.load(Ordering::Relaxed);
            s.panicked += slot.panicked.load(Ordering::Relaxed);
            s.cancelled += slot.cancelled.load(Ordering::Relaxed);
        }
        s
    }

    /// Running tasks older than `older_than` (needs the watchdog's bookkeeping).
    pub(crate) fn overdue(&self, older_than: Duration) -> Vec<TaskReport> {
        if self.cfg.watchdog.is_none() {
            return Vec::new();
        }
        let now = self.precise_clock();
        let slots: Vec<Arc<WorkerSlot>> = self.registry().slots.clone();
        let mut out = Vec::new();
        for slot in slots {
            let since = slot.task_since.load(Ordering::Relaxed);
            if since == 0 {
                continue;
            }
            let age = Duration::from_millis(now.saturating_sub(since));
            if age < older_than {
                continue;
            }
            let blocked = slot.blocked_since.load(Ordering::Relaxed) != 0;
            out.push(TaskReport {
                name: lock(&slot.task_name).as_deref().map(str::to_owned),
                state: if blocked {
                    TaskState::Blocked
                } else {
                    TaskState::Running
                },
                age,
                worker: Some(slot.name.clone()),
                waiting_for: lock(&slot.waiting_for)
                    .as_ref()
                    .map(|n| crate::stats::describe(n.as_deref())),
                worker_index: slot.index,
                started: since,
            });
        }
        out
    }

    /// The coarse clock: milliseconds since the pool started, plus one (so
    /// zero means "not set"), advanced by the watchdog on each pass.
    #[inline]
    pub(crate) fn clock(&self) -> u64 {
        self.clock.load(Ordering::Relaxed)
    }

    /// The clock read precisely (for reports).
    pub(crate) fn precise_clock(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    /// Advance the coarse clock (the watchdog, each pass).
    pub(crate) fn tick(&self) {
        self.clock.store(self.precise_clock(), Ordering::Relaxed);
    }

    fn worker_exit(&self, slot: &Arc<WorkerSlot>, kind: Kind, counted_live: bool, searching: bool) {
        let mut reg = self.registry();
        let mut dec = 0;
        if counted_live {
            dec += LIVE;
        }
        if searching {
            dec += SEARCHING;
        }
        if dec != 0 {
            self.ctl.fetch_sub(dec, Ordering::SeqCst);
        }
        if let Some(pos) = reg.slots.iter().position(|s| Arc::ptr_eq(s, slot)) {
            reg.slots.swap_remove(pos);
        }
        reg.retired_started += slot.started.load(Ordering::Relaxed);
        reg.retired_completed += slot.completed.load(Ordering::Relaxed);
        reg.retired_panicked += slot.panicked.load(Ordering::Relaxed);
        reg.retired_cancelled += slot.cancelled.load(Ordering::Relaxed);
        if kind == Kind::Compensating {
            self.compensating.fetch_sub(1, Ordering::Relaxed);
        }
        // Below the cap again: log the next time it is hit.
        self.cap_warned.store(false, Ordering::Relaxed);
        drop(reg);
        self.exited.notify_all();
    }
}

fn worker_main(shared: Arc<Shared>, slot: Arc<WorkerSlot>, kind: Kind) {
    let _ = slot.thread.set(thread::current());
    CURRENT.with(|c| *c.borrow_mut() = Some((shared.clone(), slot.clone())));
    let observer: Arc<dyn BlockingObserver> = Arc::new(Observer {
        shared: shared.clone(),
        slot: slot.clone(),
    });
    let previous = blocking::set_observer(Some(observer));

    let mut retired = false;
    let mut rounds = 0u32;
    loop {
        if let Ok(msg) = shared.rx.try_recv() {
            rounds = 0;
            shared.popped();
            slot.set_searching(&shared, false);
            msg.run(&shared, &slot, true);
            if kind != Kind::Core && shared.retire_after_task() {
                retired = true;
                break;
            }
            continue;
        }
        if is_closed(shared.ctl.load(Ordering::SeqCst)) {
            fence(Ordering::SeqCst);
            if shared.rx.is_empty() {
                break;
            }
            continue;
        }
        slot.set_searching(&shared, true);
        if rounds < SPIN_ROUNDS {
            backoff(rounds);
            rounds += 1;
            continue;
        }
        rounds = 0;
        // `park` moves us from searching to sleeping in `ctl`.
        let next = shared.park(&slot, kind);
        slot.searching
            .store(matches!(next, Park::Woken), Ordering::Relaxed);
        if let Park::Retire = next {
            retired = true;
            break;
        }
    }

    blocking::set_observer(previous);
    CURRENT.with(|c| *c.borrow_mut() = None);
    if retired {
        log::debug!("pool {}: {} retired", shared.name(), slot.name);
    }
    let searching = slot.is_searching();
    shared.worker_exit(&slot, kind, !retired, searching);
}

#[inline]
fn backoff(round: u32) {
    if round < SPIN_ROUNDS - 4 {
        std::hint::spin_loop();
    } else {
        thread::yield_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_word_fields_are_independent() {
        let c = 3 * LIVE + 2 * BLOCKED + SLEEPING + 4 * SEARCHING + CLOSED;
        assert_eq!(
            (live(c), blocked(c), sleeping(c), searching(c), is_closed(c)),
            (3, 2, 1, 4, true)
        );
        // Moving a worker from searching to sleeping and back.
        let d = c - (SEARCHING - SLEEPING);
        assert_eq!((sleeping(d), searching(d)), (2, 3));
        let e = d + (SEARCHING - SLEEPING);
        assert_eq!(e, c);
        let full = MAX_THREADS as u64;
        let f = full * LIVE + full * BLOCKED + full * SLEEPING + full * SEARCHING;
        assert_eq!(
            (live(f), blocked(f), sleeping(f), searching(f), is_closed(f)),
            (MAX_THREADS, MAX_THREADS, MAX_THREADS, MAX_THREADS, false)
        );
    }

    #[test]
    fn the_hard_cap_never_exceeds_the_field_width() {
        let cfg = Config {
            name: "x".into(),
            workers: 1,
            max_workers: MAX_THREADS,
            compensation_limit: 1_000,
            idle_timeout: Duration::from_secs(1),
            stack_size: 1 << 16,
            watchdog: None,
        };
        assert_eq!(cfg.max_threads(), MAX_THREADS);
    }
}
