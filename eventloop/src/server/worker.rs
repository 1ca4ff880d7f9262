//! Shards, worker threads, the hand-off protocol and the monitor.
//! The design is documented on `EventServer` ("Threading design").

use std::collections::{HashSet, VecDeque};
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustix::event::epoll;
use stead_core::blocking::{self, BlockingObserver};
use stead_core::{Cancel, CancelReason, Conn, ServerStats};

use super::{EventServerBuilder, EventStats, Session, SessionFactory, Tracker, Verdict, lock};
use crate::sys;
use crate::timer::{TimerHeap, TimerKey};

/// The epoll key of a shard's wake-up eventfd.
const WAKE_KEY: u64 = u64::MAX;
const GEN_MASK: u32 = 0x7fff_ffff;

/// Shard ownership states (low two bits of `Shard::state`; the rest is a
/// callback sequence number).
const RUNNING: u64 = 0;
const IN_CALLBACK: u64 = 1;
const STOLEN: u64 = 2;
const TAG: u64 = 3;

/// Rounds in a row a connection must be ready before its progress is measured.
const PROBE_AFTER: u16 = 3;
/// Consecutive parks without consuming input before a connection is closed.
const SPIN_LIMIT: u16 = 64;

/// A shard's descriptors, created at bind time.
pub(crate) struct ShardIo {
    epoll: OwnedFd,
    wake: OwnedFd,
}

impl ShardIo {
    pub(crate) fn new() -> io::Result<ShardIo> {
        let epoll = sys::epoll_create()?;
        let wake = sys::eventfd()?;
        sys::epoll_add_read(epoll.as_fd(), wake.as_fd(), WAKE_KEY)
            .map_err(|e| sys::context(e, "register a shard's eventfd"))?;
        Ok(ShardIo { epoll, wake })
    }
}

/// A connection and its session: what a parked connection costs.
pub(crate) struct Entry<S> {
    conn: Conn<TcpStream>,
    session: S,
    tracker: Arc<Tracker>,
    timer: Option<TimerKey>,
    last_round: u64,
    streak: u16,
    strikes: u16,
}

enum Slot<S> {
    Free,
    Parked(Box<Entry<S>>),
    /// Out on a thread, in a callback.
    Busy(Arc<Tracker>),
}

struct SlotCell<S> {
    gen_: u32,
    slot: Slot<S>,
}

/// A shard's mutable state; behind a mutex so a thread that lost the shard
/// can return its connection, and shutdown can close parked ones.
struct Table<S> {
    cells: Vec<SlotCell<S>>,
    free: Vec<u32>,
    /// Park timeouts: (slot, generation).
    timers: TimerHeap<(u32, u32)>,
    /// `epoll_wait` calls so far.
    round: u64,
}

impl<S> Table<S> {
    /// Insert a new parked entry, with a timeout. Returns its key and
    /// whether its timer is now the earliest.
    fn insert(&mut self, mut entry: Box<Entry<S>>, timeout: Option<Duration>) -> (u64, bool) {
        let idx = match self.free.pop() {
            Some(i) => i,
            None => {
                self.cells.push(SlotCell {
                    gen_: 0,
                    slot: Slot::Free,
                });
                (self.cells.len() - 1) as u32
            }
        };
        let gen_ = self.cells[idx as usize].gen_;
        let mut earliest = false;
        if let Some(t) = timeout {
            let at = sys::monotonic_ns().saturating_add(dur_ns(t));
            entry.timer = Some(self.timers.insert(at, (idx, gen_)));
            earliest = self.timers.next_deadline() == Some(at);
        }
        self.cells[idx as usize].slot = Slot::Parked(entry);
        (key(idx, gen_), earliest)
    }

    fn parked(&self, k: u64) -> Option<&Entry<S>> {
        let (idx, gen_) = split(k);
        match self.cells.get(idx as usize) {
            Some(SlotCell {
                gen_: g,
                slot: Slot::Parked(e),
            }) if *g == gen_ => Some(e),
            _ => None,
        }
    }

    fn cell(&mut self, k: u64) -> Option<&mut SlotCell<S>> {
        let (idx, gen_) = split(k);
        self.cells.get_mut(idx as usize).filter(|c| c.gen_ == gen_)
    }

    /// Take a parked entry out, leaving the slot busy.
    fn take(&mut self, k: u64) -> Option<Box<Entry<S>>> {
        let cell = self.cell(k)?;
        let tracker = match &cell.slot {
            Slot::Parked(e) => e.tracker.clone(),
            _ => return None,
        };
        let Slot::Parked(mut entry) = std::mem::replace(&mut cell.slot, Slot::Busy(tracker)) else {
            return None;
        };
        if let Some(t) = entry.timer.take() {
            self.timers.cancel(t);
        }
        Some(entry)
    }

    fn free(&mut self, k: u64) {
        let (idx, _) = split(k);
        if let Some(cell) = self.cell(k) {
            cell.slot = Slot::Free;
            cell.gen_ = cell.gen_.wrapping_add(1) & GEN_MASK;
            self.free.push(idx);
        }
    }

    /// Put a busy entry back as parked, with an optional timeout.
    /// Returns whether the new timer is now the earliest.
    fn park(&mut self, k: u64, mut entry: Box<Entry<S>>, timeout: Option<Duration>) -> bool {
        let (idx, gen_) = split(k);
        let mut earliest = false;
        if let Some(t) = timeout {
            let at = sys::monotonic_ns().saturating_add(dur_ns(t));
            entry.timer = Some(self.timers.insert(at, (idx, gen_)));
            earliest = self.timers.next_deadline() == Some(at);
        }
        entry.tracker.idle.store(true, Ordering::SeqCst);
        if let Some(cell) = self.cell(k) {
            cell.slot = Slot::Parked(entry);
        }
        earliest
    }
}

/// One shard: an epoll set, its connections, and the ownership word.
pub(crate) struct Shard<S> {
    epoll: OwnedFd,
    wake: OwnedFd,
    table: Mutex<Table<S>>,
    /// `seq << 2 | RUNNING / IN_CALLBACK / STOLEN`.
    state: AtomicU64,
    /// The descriptor and key of the connection in a callback (valid while
    /// `state` is `IN_CALLBACK`).
    busy_fd: AtomicI32,
    busy_key: AtomicU64,
    conns: AtomicUsize,
}

/// Threads available to run shards.
struct RunQ {
    shards: VecDeque<usize>,
    /// Threads waiting in `next_shard`.
    idle: usize,
    /// Worker/spare threads alive.
    total: usize,
    next_no: usize,
    handles: Vec<JoinHandle<()>>,
    warned_cap: bool,
}

/// Counters.
#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    completed: AtomicU64,
    panicked: AtomicU64,
    accept_errors: AtomicU64,
    spawn_errors: AtomicU64,
    limit_pauses: AtomicU64,
    handoffs_blocking: AtomicU64,
    handoffs_budget: AtomicU64,
    reclaims: AtomicU64,
    spins_closed: AtomicU64,
    timeouts: AtomicU64,
}

/// The non-generic part of a running server.
pub(crate) struct Core {
    pub(crate) config: EventServerBuilder,
    root: Cancel,
    draining: Arc<AtomicBool>,
    stopping: AtomicBool,
    /// The drain's grace period is over: parked connections are being
    /// closed, none may park again (not even mid-request).
    closing_parked: AtomicBool,
    open: AtomicUsize,
    idle_closed_at_drain: AtomicUsize,
    counters: Counters,
    /// The acceptor waits here at the connection limit; shutdown waits here
    /// for connections to close.
    limit: Mutex<()>,
    limit_cv: Condvar,
    runq: Mutex<RunQ>,
    runq_cv: Condvar,
    /// `true` while the monitor sleeps without a timeout.
    monitor_idle: AtomicBool,
    monitor_wake: Mutex<bool>,
    monitor_cv: Condvar,
    max_threads: usize,
}

/// What the handle and the threads need from the generic server.
pub(crate) trait Control: Send + Sync + 'static {
    fn core(&self) -> &Core;
    /// Accept one connection into a shard.
    fn admit(&self, stream: TcpStream, peer: SocketAddr);
    /// Close parked connections; cancel busy ones that said they are idle.
    /// Returns the slots (shard, key) of the latter.
    fn start_drain(&self) -> HashSet<(usize, u64)>;
    /// Busy connections not in `idle`.
    fn busy_not_in(&self, idle: &HashSet<(usize, u64)>) -> usize;
    /// Close every parked connection (those kept by the drain because they
    /// were mid-request); returns how many.
    fn close_parked(&self) -> usize;
    /// Run shard `sid` on this thread until it is lost or the server stops.
    fn run_shard(&self, sid: usize, obs: &ThreadObs, events: &mut Vec<epoll::Event>) -> Exit;
    /// Take shard `sid` from its owner if `word` is still its state.
    fn steal(&self, sid: usize, word: u64, why: Why) -> bool;
    /// Undo a steal by the owner if no spare has taken the shard yet.
    fn reclaim(&self, sid: usize, word: u64) -> bool;
    fn shard_state(&self, sid: usize) -> u64;
    fn shards(&self) -> usize;
    fn wake_shards(&self);
    /// A strong reference to this server (to start threads).
    fn arc(&self) -> Option<Arc<dyn Control>>;
}

/// The generic server.
pub(crate) struct Server<F: SessionFactory> {
    me: std::sync::Weak<Server<F>>,
    core: Core,
    factory: F,
    shards: Vec<Shard<F::Session>>,
    next_shard: AtomicUsize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    Lost,
    Stop,
}

/// Whether this thread still owns its shard after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    Lost,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Why {
    Blocking,
    Budget,
}

/// Build the server state.
pub(crate) fn new_server<F: SessionFactory>(
    factory: F,
    config: EventServerBuilder,
    io: Vec<ShardIo>,
) -> Arc<dyn Control> {
    let shards = io
        .into_iter()
        .map(|s| Shard {
            epoll: s.epoll,
            wake: s.wake,
            table: Mutex::new(Table {
                cells: Vec::new(),
                free: Vec::new(),
                timers: TimerHeap::default(),
                round: 0,
            }),
            state: AtomicU64::new(RUNNING),
            busy_fd: AtomicI32::new(-1),
            busy_key: AtomicU64::new(0),
            conns: AtomicUsize::new(0),
        })
        .collect::<Vec<_>>();
    let workers = shards.len();
    // By default as many as thread mode would use at worst (one per
    // connection, blocked in its handler), capped like Go's 10,000.
    let max_threads = config
        .max_threads
        .unwrap_or(workers + config.max_connections.min(10_000))
        .max(workers);
    Arc::new_cyclic(|me| Server {
        me: me.clone(),
        core: Core {
            config,
            root: Cancel::new(),
            draining: Arc::new(AtomicBool::new(false)),
            stopping: AtomicBool::new(false),
            closing_parked: AtomicBool::new(false),
            open: AtomicUsize::new(0),
            idle_closed_at_drain: AtomicUsize::new(0),
            counters: Counters::default(),
            limit: Mutex::new(()),
            limit_cv: Condvar::new(),
            runq: Mutex::new(RunQ {
                shards: VecDeque::new(),
                idle: 0,
                total: 0,
                next_no: 0,
                handles: Vec::new(),
                warned_cap: false,
            }),
            runq_cv: Condvar::new(),
            monitor_idle: AtomicBool::new(false),
            monitor_wake: Mutex::new(false),
            monitor_cv: Condvar::new(),
            max_threads,
        },
        factory,
        shards,
        next_shard: AtomicUsize::new(0),
    })
}

impl dyn Control {
    pub(crate) fn root(&self) -> &Cancel {
        &self.core().root
    }

    pub(crate) fn open(&self) -> usize {
        self.core().open.load(Ordering::SeqCst)
    }

    pub(crate) fn idle_closed_at_drain(&self) -> usize {
        self.core().idle_closed_at_drain.load(Ordering::SeqCst)
    }

    pub(crate) fn count_accept_error(&self) {
        self.core()
            .counters
            .accept_errors
            .fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn notify_limit(&self) {
        let _g = lock(&self.core().limit);
        self.core().limit_cv.notify_all();
    }

    /// Block while at the connection limit; `false` once `cancel` fires.
    pub(crate) fn wait_below_limit(&self, cancel: &Cancel) -> bool {
        let core = self.core();
        let max = core.config.max_connections;
        let mut g = lock(&core.limit);
        if core.open.load(Ordering::SeqCst) >= max && !cancel.is_cancelled() {
            core.counters.limit_pauses.fetch_add(1, Ordering::Relaxed);
            log::warn!("stead-eventloop: connection limit ({max}) reached; accepting paused");
            while core.open.load(Ordering::SeqCst) >= max && !cancel.is_cancelled() {
                g = core.limit_cv.wait(g).unwrap_or_else(|e| e.into_inner());
            }
        }
        !cancel.is_cancelled()
    }

    /// Start draining: returns busy connections that were idle (and are
    /// now cancelled).
    pub(crate) fn start_drain_all(&self) -> HashSet<(usize, u64)> {
        self.core().draining.store(true, Ordering::SeqCst);
        self.start_drain()
    }

    /// Wait until no connection is open, or `deadline`.
    pub(crate) fn wait_open_zero(&self, deadline: Instant) {
        let core = self.core();
        let g = lock(&core.limit);
        let left = deadline.saturating_duration_since(Instant::now());
        let _ = core
            .limit_cv
            .wait_timeout_while(g, left, |_| core.open.load(Ordering::SeqCst) > 0)
            .unwrap_or_else(|e| e.into_inner());
    }

    pub(crate) fn server_stats(&self) -> ServerStats {
        let c = &self.core().counters;
        ServerStats {
            accepted: c.accepted.load(Ordering::Relaxed),
            active: self.open() as u64,
            completed: c.completed.load(Ordering::Relaxed),
            panicked: c.panicked.load(Ordering::Relaxed),
            accept_errors: c.accept_errors.load(Ordering::Relaxed),
            spawn_errors: c.spawn_errors.load(Ordering::Relaxed),
            limit_pauses: c.limit_pauses.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn event_stats(&self) -> EventStats {
        let core = self.core();
        let c = &core.counters;
        let q = lock(&core.runq);
        EventStats {
            threads: q.total,
            idle_threads: q.idle,
            handoffs_blocking: c.handoffs_blocking.load(Ordering::Relaxed),
            handoffs_budget: c.handoffs_budget.load(Ordering::Relaxed),
            reclaims: c.reclaims.load(Ordering::Relaxed),
            spins_closed: c.spins_closed.load(Ordering::Relaxed),
            timeouts: c.timeouts.load(Ordering::Relaxed),
        }
    }

    /// Tell every thread to stop.
    pub(crate) fn stop_threads(&self) {
        let core = self.core();
        core.stopping.store(true, Ordering::SeqCst);
        self.wake_shards();
        {
            let _q = lock(&core.runq);
            core.runq_cv.notify_all();
        }
        let mut w = lock(&core.monitor_wake);
        *w = true;
        core.monitor_cv.notify_all();
    }

    /// Join worker threads, except up to `stuck` that are still inside
    /// handlers at `deadline` (those are left detached, and logged).
    pub(crate) fn join_threads(&self, stuck: usize, deadline: Instant) {
        let core = self.core();
        let q = lock(&core.runq);
        let left = deadline.saturating_duration_since(Instant::now());
        let (mut q, _) = core
            .runq_cv
            .wait_timeout_while(q, left, |q| q.total > stuck)
            .unwrap_or_else(|e| e.into_inner());
        let handles = std::mem::take(&mut q.handles);
        let left = q.total;
        drop(q);
        for h in handles {
            if h.is_finished() {
                let _ = h.join();
            }
        }
        if left > 0 {
            log::warn!("stead-eventloop: {left} thread(s) still inside handlers were left running");
        }
    }

    fn conn_closed(&self, shard_conns: &AtomicUsize) {
        let core = self.core();
        shard_conns.fetch_sub(1, Ordering::Relaxed);
        core.counters.completed.fetch_add(1, Ordering::Relaxed);
        let prev = core.open.fetch_sub(1, Ordering::SeqCst);
        if prev >= core.config.max_connections || core.draining.load(Ordering::SeqCst) {
            self.notify_limit();
        }
    }

    /// Queue a shard for another thread; wake or start one.
    fn runq_push(&self, sid: usize) {
        let core = self.core();
        let mut q = lock(&core.runq);
        q.shards.push_back(sid);
        core.runq_cv.notify_one();
        if q.shards.len() <= q.idle || core.stopping.load(Ordering::SeqCst) {
            return;
        }
        if q.total >= core.max_threads {
            if !q.warned_cap {
                q.warned_cap = true;
                log::warn!(
                    "stead-eventloop: all {} threads are busy in handlers; shards wait for one \
                     to return (raise max_threads)",
                    core.max_threads
                );
            }
            return;
        }
        q.total += 1;
        let no = q.next_no;
        q.next_no += 1;
        q.handles.retain(|h| !h.is_finished());
        drop(q);
        let Some(me) = self.arc() else { return };
        match spawn_thread(me, no, None) {
            Ok(h) => lock(&core.runq).handles.extend(h),
            Err(e) => {
                let mut q = lock(&core.runq);
                q.total -= 1;
                core.runq_cv.notify_all();
                drop(q);
                core.counters.spawn_errors.fetch_add(1, Ordering::Relaxed);
                log::error!(
                    "stead-eventloop: cannot start a spare thread: {e}; the shard waits for a \
                     blocked handler to return"
                );
            }
        }
    }

    /// A shard for this (spare) thread; `None`: exit.
    fn next_shard(&self) -> Option<usize> {
        let core = self.core();
        let mut q = lock(&core.runq);
        loop {
            if core.stopping.load(Ordering::SeqCst) {
                return None;
            }
            if let Some(s) = q.shards.pop_front() {
                return Some(s);
            }
            q.idle += 1;
            let (g, res) = core
                .runq_cv
                .wait_timeout(q, core.config.spare_idle)
                .unwrap_or_else(|e| e.into_inner());
            q = g;
            q.idle -= 1;
            if res.timed_out() && q.shards.is_empty() && q.total > self.shards() {
                return None;
            }
        }
    }

    fn thread_exited(&self) {
        let core = self.core();
        let mut q = lock(&core.runq);
        q.total -= 1;
        core.runq_cv.notify_all();
    }
}

/// The blocking observer of a worker thread: what it runs now.
pub(crate) struct ThreadObs {
    server: Arc<dyn Control>,
    shard: AtomicUsize,
    /// The state word stored when the current callback began.
    word: AtomicU64,
    in_callback: AtomicBool,
    /// The observer released the shard in `enter` (so `exit` may reclaim it).
    released: AtomicBool,
    handoff: bool,
}

impl BlockingObserver for ThreadObs {
    fn enter(&self) {
        if !self.handoff || !self.in_callback.load(Ordering::Relaxed) {
            return;
        }
        let sid = self.shard.load(Ordering::Relaxed);
        let word = self.word.load(Ordering::Relaxed);
        if self.server.steal(sid, word, Why::Blocking) {
            self.released.store(true, Ordering::Relaxed);
        }
    }

    fn exit(&self) {
        if self.released.swap(false, Ordering::Relaxed) {
            let sid = self.shard.load(Ordering::Relaxed);
            let word = self.word.load(Ordering::Relaxed);
            self.server.reclaim(sid, word);
        }
    }
}

/// Start a worker or spare thread; a handle to join it unless a custom
/// spawner started it.
fn spawn_thread(
    server: Arc<dyn Control>,
    no: usize,
    first: Option<usize>,
) -> io::Result<Option<JoinHandle<()>>> {
    let core = server.core();
    let name = format!("{}-{no}", core.config.thread_name);
    let stack = core.config.stack_size;
    if let Some(spawner) = core.config.spawner.0.clone() {
        return spawner
            .spawn(name, stack, Box::new(move || thread_main(server, first)))
            .map(|()| None)
            .map_err(|(e, _job)| e);
    }
    std::thread::Builder::new()
        .name(name)
        .stack_size(stack)
        .spawn(move || thread_main(server, first))
        .map(Some)
}

fn thread_main(server: Arc<dyn Control>, first: Option<usize>) {
    let obs = Arc::new(ThreadObs {
        server: server.clone(),
        shard: AtomicUsize::new(0),
        word: AtomicU64::new(0),
        in_callback: AtomicBool::new(false),
        released: AtomicBool::new(false),
        handoff: server.core().config.handoff_on_blocking,
    });
    let previous = blocking::set_observer(Some(obs.clone()));
    let mut events = Vec::with_capacity(256);
    let mut next = first;
    loop {
        let sid = match next.take() {
            Some(s) => s,
            None => match server.next_shard() {
                Some(s) => s,
                None => break,
            },
        };
        if server.run_shard(sid, &obs, &mut events) == Exit::Stop {
            break;
        }
    }
    blocking::set_observer(previous);
    server.thread_exited();
}

/// Start one thread per shard; returns how many started.
pub(crate) fn start_workers(server: &Arc<dyn Control>) -> usize {
    let core = server.core();
    let mut started = 0;
    for sid in 0..server.shards() {
        {
            let mut q = lock(&core.runq);
            q.total += 1;
            q.next_no += 1;
        }
        match spawn_thread(server.clone(), sid, Some(sid)) {
            Ok(h) => {
                lock(&core.runq).handles.extend(h);
                started += 1;
            }
            Err(e) => {
                let mut q = lock(&core.runq);
                q.total -= 1;
                q.shards.push_back(sid);
                core.counters.spawn_errors.fetch_add(1, Ordering::Relaxed);
                log::error!("stead-eventloop: cannot start worker thread {sid}: {e}");
            }
        }
    }
    started
}

/// Start the monitor thread.
pub(crate) fn start_monitor(server: &Arc<dyn Control>) -> io::Result<JoinHandle<()>> {
    let s = server.clone();
    std::thread::Builder::new()
        .name(format!("{}-mon", server.core().config.thread_name))
        .stack_size(64 * 1024)
        .spawn(move || monitor(s))
        .map_err(|e| sys::context(e, "spawn the monitor thread"))
}

/// Catches callbacks running past the budget; sleeps while none runs.
fn monitor(server: Arc<dyn Control>) {
    let core = server.core();
    let tick = (core.config.blocking_budget / 2).max(Duration::from_micros(500));
    let n = server.shards();
    // Per shard: the state word last seen and in how many scans in a row.
    let mut seen: Vec<(u64, u32)> = vec![(0, 0); n];
    let mut quiet = 0u32;
    loop {
        {
            let mut w = lock(&core.monitor_wake);
            if !*w && !core.stopping.load(Ordering::SeqCst) {
                if quiet >= 4 {
                    // Deep sleep until a callback starts (see `invoke`).
                    core.monitor_idle.store(true, Ordering::SeqCst);
                    let busy = (0..n).any(|s| server.shard_state(s) & TAG == IN_CALLBACK);
                    if busy {
                        core.monitor_idle.store(false, Ordering::SeqCst);
                    } else {
                        while !*w && !core.stopping.load(Ordering::SeqCst) {
                            w = core.monitor_cv.wait(w).unwrap_or_else(|e| e.into_inner());
                        }
                        core.monitor_idle.store(false, Ordering::SeqCst);
                        quiet = 0;
                    }
                } else {
                    w = core
                        .monitor_cv
                        .wait_timeout(w, tick)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
            *w = false;
        }
        if core.stopping.load(Ordering::SeqCst) {
            break;
        }
        let mut any = false;
        for (sid, seen) in seen.iter_mut().enumerate() {
            let word = server.shard_state(sid);
            if word & TAG != IN_CALLBACK {
                *seen = (word, 0);
                continue;
            }
            any = true;
            if seen.0 == word {
                seen.1 += 1;
                // Seen in 3 scans: running for at least two ticks = the budget.
                if seen.1 >= 2 && server.steal(sid, word, Why::Budget) {
                    log::debug!("stead-eventloop: a handler on shard {sid} ran past the budget");
                }
            } else {
                *seen = (word, 0);
            }
        }
        quiet = if any { 0 } else { quiet + 1 };
    }
}

fn key(idx: u32, gen_: u32) -> u64 {
    ((gen_ as u64) << 32) | idx as u64
}

fn split(k: u64) -> (u32, u32) {
    ((k & 0xffff_ffff) as u32, (k >> 32) as u32)
}

fn dur_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Remove the busy connection's descriptor from the shard's epoll set, or
/// add it back.
///
/// Callers hold the shard's table lock and have just won (or undone) the
/// steal of state word `IN_CALLBACK(seq)`.
#[allow(unsafe_code)]
fn busy_fd_ctl<S>(shard: &Shard<S>, add: bool) {
    let raw: RawFd = shard.busy_fd.load(Ordering::Relaxed);
    if raw < 0 {
        return;
    }
    // SAFETY: `busy_fd` is the descriptor of the `Conn` that the owning
    // thread holds on its stack while the shard is `IN_CALLBACK(seq)`. That
    // thread does not drop the `Conn` before it has compare-exchanged the
    // state back from `IN_CALLBACK(seq)` and, if that fails (the shard was
    // stolen), taken the table lock. Our caller holds the table lock and the
    // steal (or reclaim) happened under it, so the descriptor is open for
    // the duration of this borrow.
    let fd = unsafe { BorrowedFd::borrow_raw(raw) };
    if add {
        let k = shard.busy_key.load(Ordering::Relaxed);
        if let Err(e) = sys::epoll_add_read(shard.epoll.as_fd(), fd, k) {
            log::error!("stead-eventloop: cannot re-register a connection: {e}");
        }
    } else {
        sys::epoll_del(shard.epoll.as_fd(), fd);
    }
}

impl<F: SessionFactory> Server<F> {
    fn control(&self) -> &dyn Control {
        self
    }

    /// Close entries taken out of `shard`'s table; returns how many.
    fn close_taken(
        &self,
        shard: &Shard<F::Session>,
        entries: Vec<Box<Entry<F::Session>>>,
    ) -> usize {
        let n = entries.len();
        for e in entries {
            sys::epoll_del(shard.epoll.as_fd(), e.conn.as_fd());
            drop(e);
            self.control().conn_closed(&shard.conns);
        }
        n
    }

    /// Run a session callback under the ownership protocol. Returns the
    /// verdict (`None`: it panicked) and whether this thread still owns the shard.
    fn invoke(
        &self,
        sid: usize,
        obs: &ThreadObs,
        entry: &mut Entry<F::Session>,
        k: u64,
        timeout: bool,
    ) -> (Option<Verdict>, bool) {
        let shard = &self.shards[sid];
        let seq = shard.state.load(Ordering::Relaxed) >> 2;
        let word = (seq << 2) | IN_CALLBACK;
        shard
            .busy_fd
            .store(entry.conn.get_ref().as_raw_fd(), Ordering::Relaxed);
        shard.busy_key.store(k, Ordering::Relaxed);
        obs.word.store(word, Ordering::Relaxed);
        obs.in_callback.store(true, Ordering::Relaxed);
        shard.state.store(word, Ordering::SeqCst);
        if self.core.monitor_idle.load(Ordering::SeqCst) {
            let mut w = lock(&self.core.monitor_wake);
            *w = true;
            self.core.monitor_cv.notify_one();
        }
        let res = catch_unwind(AssertUnwindSafe(|| {
            if timeout {
                entry.session.on_timeout(&mut entry.conn)
            } else {
                entry.session.on_readable(&mut entry.conn)
            }
        }));
        obs.in_callback.store(false, Ordering::Relaxed);
        obs.released.store(false, Ordering::Relaxed);
        let owner = shard
            .state
            .compare_exchange(
                word,
                ((seq + 1) << 2) | RUNNING,
                Ordering::SeqCst,
                Ordering::SeqCst,
            )
            .is_ok();
        if res.is_err() {
            self.core.counters.panicked.fetch_add(1, Ordering::Relaxed);
            let peer = entry
                .conn
                .peer_addr()
                .map(|a| a.to_string())
                .unwrap_or_default();
            log::error!(
                "stead-eventloop: session for {peer} panicked; connection closed, server continues"
            );
        }
        (res.ok(), owner)
    }

    /// After a callback: park or close the entry.
    fn settle(
        &self,
        sid: usize,
        k: u64,
        entry: Box<Entry<F::Session>>,
        verdict: Option<Verdict>,
        owner: bool,
    ) {
        let shard = &self.shards[sid];
        let draining = self.core.draining.load(Ordering::SeqCst);
        let mut t = lock(&shard.table);
        // Read under the table lock: a drain that started before sees this
        // entry as busy; one that starts after sees it parked.
        let draining = draining || self.core.draining.load(Ordering::SeqCst);
        match verdict {
            Some(Verdict::Park { timeout })
                if !draining
                    || (entry.session.mid_request()
                        && !self.core.closing_parked.load(Ordering::SeqCst)) =>
            {
                if !owner {
                    // Our descriptor was removed from the set when the shard
                    // was taken: add it back for the new owner.
                    if let Err(e) = sys::epoll_add_read(shard.epoll.as_fd(), entry.conn.as_fd(), k)
                    {
                        log::error!("stead-eventloop: cannot re-register a connection: {e}");
                        t.free(k);
                        drop(t);
                        drop(entry);
                        self.control().conn_closed(&shard.conns);
                        return;
                    }
                }
                let earliest = t.park(k, entry, timeout);
                drop(t);
                if earliest && !owner {
                    // The new owner may sleep past our earlier timeout.
                    sys::eventfd_signal(shard.wake.as_fd());
                }
            }
            _ => {
                t.free(k);
                drop(t);
                if owner {
                    sys::epoll_del(shard.epoll.as_fd(), entry.conn.as_fd());
                }
                drop(entry);
                self.control().conn_closed(&shard.conns);
            }
        }
    }

    fn on_ready(&self, sid: usize, obs: &ThreadObs, k: u64) -> Flow {
        let shard = &self.shards[sid];
        let (mut entry, round) = {
            let mut t = lock(&shard.table);
            let round = t.round;
            match t.take(k) {
                Some(e) => (e, round),
                None => return Flow::Continue, // stale event
            }
        };
        entry.tracker.idle.store(false, Ordering::SeqCst);
        if entry.last_round != 0 && entry.last_round + 1 == round {
            entry.streak = entry.streak.saturating_add(1);
        } else {
            entry.streak = 0;
            entry.strikes = 0;
        }
        entry.last_round = round;
        // Progress is input consumed. A session that reads through `Conn`
        // (`read`/`try_read`) is judged by its byte count, with no syscall
        // unless it read nothing; one that never has (it reads through
        // `get_mut()`) by the socket's pending input before and after.
        let read_before = entry.conn.bytes_read();
        let before = if entry.streak >= PROBE_AFTER && read_before == 0 {
            sys::pending_bytes(entry.conn.as_fd())
        } else {
            None
        };
        let (mut verdict, owner) = self.invoke(sid, obs, &mut entry, k, false);
        let probe = match (verdict, before) {
            (Some(Verdict::Park { .. }), Some(b)) => Some(b),
            (Some(Verdict::Park { .. }), None)
                if entry.streak >= PROBE_AFTER
                    && read_before != 0
                    && entry.conn.bytes_read() == read_before =>
            {
                Some(1) // read nothing: any pending input is a strike
            }
            _ => None,
        };
        if probe.is_none() {
            entry.strikes = 0;
        }
        if let Some(b) = probe {
            let after = sys::pending_bytes(entry.conn.as_fd()).unwrap_or(0);
            if after >= b {
                entry.strikes += 1;
                if entry.strikes >= SPIN_LIMIT {
                    self.core
                        .counters
                        .spins_closed
                        .fetch_add(1, Ordering::Relaxed);
                    let peer = entry
                        .conn
                        .peer_addr()
                        .map(|a| a.to_string())
                        .unwrap_or_default();
                    log::warn!(
                        "stead-eventloop: the session for {peer} parked {SPIN_LIMIT} times in a \
                         row without consuming its readable input; connection closed (a session \
                         must read until WouldBlock, or close on end of input)"
                    );
                    verdict = Some(Verdict::Close);
                }
            } else {
                entry.strikes = 0;
            }
        }
        self.settle(sid, k, entry, verdict, owner);
        if owner { Flow::Continue } else { Flow::Lost }
    }

    fn on_timeouts(&self, sid: usize, obs: &ThreadObs) -> Flow {
        let shard = &self.shards[sid];
        loop {
            let now = sys::monotonic_ns();
            let (k, mut entry) = {
                let mut t = lock(&shard.table);
                let Some((_, (idx, gen_))) = t.timers.pop_due(now) else {
                    return Flow::Continue;
                };
                let k = key(idx, gen_);
                match t.take(k) {
                    Some(e) => (k, e),
                    None => continue,
                }
            };
            self.core.counters.timeouts.fetch_add(1, Ordering::Relaxed);
            entry.tracker.idle.store(false, Ordering::SeqCst);
            let (verdict, owner) = self.invoke(sid, obs, &mut entry, k, true);
            self.settle(sid, k, entry, verdict, owner);
            if !owner {
                return Flow::Lost;
            }
        }
    }
}

impl<F: SessionFactory> Control for Server<F> {
    fn core(&self) -> &Core {
        &self.core
    }

    fn shards(&self) -> usize {
        self.shards.len()
    }

    fn shard_state(&self, sid: usize) -> u64 {
        self.shards[sid].state.load(Ordering::SeqCst)
    }

    fn arc(&self) -> Option<Arc<dyn Control>> {
        self.me.upgrade().map(|a| a as Arc<dyn Control>)
    }

    fn wake_shards(&self) {
        for s in &self.shards {
            sys::eventfd_signal(s.wake.as_fd());
        }
    }

    fn admit(&self, stream: TcpStream, peer: SocketAddr) {
        let core = &self.core;
        core.open.fetch_add(1, Ordering::SeqCst);
        core.counters.accepted.fetch_add(1, Ordering::Relaxed);
        let cancel = core.root.child();
        let tracker = super::new_tracker(cancel.clone(), &core.draining);
        let mut conn = Conn::from_nonblocking(stream, cancel);
        conn.set_tracker(tracker.clone());
        let session = match catch_unwind(AssertUnwindSafe(|| self.factory.new_session(peer))) {
            Ok(s) => s,
            Err(_) => {
                core.counters.panicked.fetch_add(1, Ordering::Relaxed);
                core.counters.completed.fetch_add(1, Ordering::Relaxed);
                core.open.fetch_sub(1, Ordering::SeqCst);
                log::error!("stead-eventloop: new_session for {peer} panicked; connection closed");
                return;
            }
        };
        // The shard with the fewest connections; ties go round-robin.
        let n = self.shards.len();
        let start = self.next_shard.fetch_add(1, Ordering::Relaxed);
        let sid = (0..n)
            .map(|i| (start + i) % n)
            .min_by_key(|&s| self.shards[s].conns.load(Ordering::Relaxed))
            .unwrap_or(0);
        let shard = &self.shards[sid];
        shard.conns.fetch_add(1, Ordering::Relaxed);
        let entry = Box::new(Entry {
            conn,
            session,
            tracker,
            timer: None,
            last_round: 0,
            streak: 0,
            strikes: 0,
        });
        let mut t = lock(&shard.table);
        let (k, earliest) = t.insert(entry, core.config.first_read_timeout);
        let registered = match t.parked(k) {
            Some(e) => sys::epoll_add_read(shard.epoll.as_fd(), e.conn.as_fd(), k),
            None => Ok(()),
        };
        if let Err(e) = registered {
            let entry = t.take(k);
            t.free(k);
            drop(t);
            drop(entry);
            log::error!("stead-eventloop: cannot register the connection from {peer}: {e}");
            self.control().conn_closed(&shard.conns);
            return;
        }
        drop(t);
        if earliest {
            sys::eventfd_signal(shard.wake.as_fd());
        }
    }

    fn start_drain(&self) -> HashSet<(usize, u64)> {
        let mut idle_busy = HashSet::new();
        for (sid, shard) in self.shards.iter().enumerate() {
            let mut closing = Vec::new();
            let mut t = lock(&shard.table);
            for idx in 0..t.cells.len() {
                let k = key(idx as u32, t.cells[idx].gen_);
                let idle_busy_here = match &t.cells[idx].slot {
                    // Part of a request is in, or input arrived that the
                    // session has not read yet: let it finish (or time
                    // out) rather than drop what the client already sent.
                    Slot::Parked(e)
                        if e.session.mid_request()
                            || sys::pending_bytes(e.conn.as_fd()).is_some_and(|n| n > 0) =>
                    {
                        continue;
                    }
                    Slot::Parked(_) => false,
                    Slot::Busy(tr) => {
                        if tr.idle.load(Ordering::SeqCst) {
                            tr.cancel.cancel_with(CancelReason::Shutdown);
                            true
                        } else {
                            false
                        }
                    }
                    Slot::Free => continue,
                };
                if idle_busy_here {
                    idle_busy.insert((sid, k));
                } else if let Some(e) = t.take(k) {
                    t.free(k);
                    closing.push(e);
                }
            }
            drop(t);
            let n = self.close_taken(shard, closing);
            self.core
                .idle_closed_at_drain
                .fetch_add(n, Ordering::SeqCst);
        }
        idle_busy
    }

    fn close_parked(&self) -> usize {
        // Read by `settle` under a table lock, taken below after this store:
        // a connection settling later closes instead of parking.
        self.core.closing_parked.store(true, Ordering::SeqCst);
        let mut n = 0;
        for shard in &self.shards {
            let mut closing = Vec::new();
            let mut t = lock(&shard.table);
            for idx in 0..t.cells.len() {
                if matches!(t.cells[idx].slot, Slot::Parked(_)) {
                    let k = key(idx as u32, t.cells[idx].gen_);
                    if let Some(e) = t.take(k) {
                        t.free(k);
                        closing.push(e);
                    }
                }
            }
            drop(t);
            n += self.close_taken(shard, closing);
        }
        n
    }

    fn busy_not_in(&self, idle: &HashSet<(usize, u64)>) -> usize {
        let mut n = 0;
        for (sid, shard) in self.shards.iter().enumerate() {
            let t = lock(&shard.table);
            for (idx, c) in t.cells.iter().enumerate() {
                if matches!(c.slot, Slot::Busy(_))
                    && !idle.contains(&(sid, key(idx as u32, c.gen_)))
                {
                    n += 1;
                }
            }
        }
        n
    }

    fn run_shard(&self, sid: usize, obs: &ThreadObs, events: &mut Vec<epoll::Event>) -> Exit {
        let shard = &self.shards[sid];
        obs.shard.store(sid, Ordering::Relaxed);
        // Take ownership: a new sequence number, state RUNNING.
        let seq = shard.state.load(Ordering::SeqCst) >> 2;
        shard
            .state
            .store((seq + 1) << 2 | RUNNING, Ordering::SeqCst);
        loop {
            if self.core.stopping.load(Ordering::SeqCst) {
                return Exit::Stop;
            }
            let timeout = {
                let mut t = lock(&shard.table);
                t.round += 1;
                t.timers
                    .next_deadline()
                    .map(|at| Duration::from_nanos(at.saturating_sub(sys::monotonic_ns())))
            };
            if let Err(e) = sys::epoll_wait(shard.epoll.as_fd(), events, timeout) {
                log::error!("{e}; shard {sid} stops");
                return Exit::Stop;
            }
            for ev in events.iter() {
                let data = { ev.data };
                let k = data.u64();
                if k == WAKE_KEY {
                    sys::eventfd_drain(shard.wake.as_fd());
                    if self.core.stopping.load(Ordering::SeqCst) {
                        return Exit::Stop;
                    }
                    continue;
                }
                if self.on_ready(sid, obs, k) == Flow::Lost {
                    return Exit::Lost;
                }
            }
            if self.on_timeouts(sid, obs) == Flow::Lost {
                return Exit::Lost;
            }
            // Let whoever feeds this worker run before the next batch (see
            // `EventServerBuilder::yield_after_batch`); an idle wait slept.
            if !events.is_empty() && self.core.config.yield_after_batch {
                rustix::thread::sched_yield();
            }
        }
    }

    fn steal(&self, sid: usize, word: u64, why: Why) -> bool {
        let shard = &self.shards[sid];
        let t = lock(&shard.table);
        let stolen = (word & !TAG) | STOLEN;
        if shard
            .state
            .compare_exchange(word, stolen, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return false;
        }
        busy_fd_ctl(shard, false);
        drop(t);
        let c = &self.core.counters;
        match why {
            Why::Blocking => c.handoffs_blocking.fetch_add(1, Ordering::Relaxed),
            Why::Budget => c.handoffs_budget.fetch_add(1, Ordering::Relaxed),
        };
        self.control().runq_push(sid);
        true
    }

    fn reclaim(&self, sid: usize, word: u64) -> bool {
        let shard = &self.shards[sid];
        let stolen = (word & !TAG) | STOLEN;
        {
            let mut q = lock(&self.core.runq);
            // Still queued *because of our steal*: a spare that took the
            // shard meanwhile stored a newer sequence number (and may have
            // queued it again itself). A queued shard's state only changes
            // when it is popped, under this lock.
            if shard.state.load(Ordering::SeqCst) != stolen {
                return false;
            }
            let Some(pos) = q.shards.iter().position(|&s| s == sid) else {
                return false;
            };
            q.shards.remove(pos);
        }
        let _t = lock(&shard.table);
        shard.state.store(word, Ordering::SeqCst);
        busy_fd_ctl(shard, true);
        self.core.counters.reclaims.fetch_add(1, Ordering::Relaxed);
        true
    }
}
