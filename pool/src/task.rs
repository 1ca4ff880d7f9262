//! One submitted task: its closure, its result and the state that decides
//! who runs it.
//!
//! A task is one allocation, an `Arc<TaskCell<F>>`, shared by the queue entry
//! and the [`JoinHandle`](crate::JoinHandle). Whoever moves the slot from
//! `Queued` to `Running` first runs the closure: a worker popping the entry, or
//! a worker of the same pool joining the task before it started (which runs it
//! inline instead of waiting behind it). The loser finds the slot taken and
//! does nothing, so a queue entry whose task was run inline or cancelled is a
//! no-op when a worker pops it.

use std::any::Any;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use stead_core::{Cancel, CancelReason};

use crate::scope::ScopeShared;
use crate::worker::{Shared, WorkerSlot};

/// The slot still holds the closure.
pub(crate) const QUEUED: u8 = 0;
/// Someone claimed the closure and is running it.
pub(crate) const RUNNING: u8 = 1;
/// The outcome is known (ran, panicked, or skipped because its token fired).
pub(crate) const DONE: u8 = 2;
/// Settled without running by [`Runnable::cancel_queued`] or a handle's cancel.
pub(crate) const CANCELLED: u8 = 3;

mod sealed {
    pub trait Sealed {}
}

/// Something a [`Pool`](crate::Pool) can run: any `FnOnce() -> T + Send`
/// closure, or a closure that takes the task's [`Cancel`] wrapped in
/// [`with_cancel`].
///
/// The trait is sealed; you never implement it, you pass closures.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be submitted to a pool",
    label = "expected a `FnOnce() -> T + Send` closure, or `with_cancel(|c: &Cancel| ...)`",
    note = "a task that wants its cancellation token must be wrapped: `pool.submit(stead_pool::with_cancel(|cancel| ...))`"
)]
pub trait Task: Send + sealed::Sealed {
    /// What the task returns; [`JoinHandle::join`](crate::JoinHandle::join) hands it back.
    type Output: Send;

    /// Whether the task wants a [`Cancel`] token (created only for those that do).
    #[doc(hidden)]
    fn wants_cancel(&self) -> bool;

    /// Run the task. `cancel` is `Some` whenever `wants_cancel` said so.
    #[doc(hidden)]
    fn run(self, cancel: Option<&Cancel>) -> Self::Output;
}

impl<F, T> sealed::Sealed for F where F: FnOnce() -> T + Send {}

impl<F, T> Task for F
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    type Output = T;

    #[inline]
    fn wants_cancel(&self) -> bool {
        false
    }

    #[inline]
    fn run(self, _cancel: Option<&Cancel>) -> T {
        self()
    }
}

/// A task that receives its own [`Cancel`] token; made by [`with_cancel`].
pub struct WithCancel<F>(F);

impl<F> std::fmt::Debug for WithCancel<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WithCancel(..)")
    }
}

impl<F> WithCancel<F> {
    /// The wrapped closure (for example after a [`TrySubmitError`](crate::TrySubmitError)).
    pub fn into_inner(self) -> F {
        self.0
    }
}

/// Wrap a closure that takes the task's cancellation token.
///
/// The token is a child of the pool's token: it fires when
/// [`JoinHandle::cancel`](crate::JoinHandle::cancel) is called while the task
/// runs, when the task's deadline ([`TaskBuilder::deadline`](crate::TaskBuilder::deadline))
/// passes, or when the pool shuts down past its grace period. Blocking stead
/// calls made with it ([`Cancel::sleep`], [`Cancel::wait`], a `Conn` read)
/// return early then.
///
/// ```
/// use std::time::Duration;
/// use stead_core::Cancel;
/// use stead_pool::{Pool, with_cancel};
///
/// let pool = Pool::new(1)?;
/// let h = pool.submit(with_cancel(|cancel: &Cancel| {
///     // Waits until cancelled, not for an hour.
///     cancel.sleep(Duration::from_secs(3600)).is_err()
/// }));
/// while !h.is_running() { std::thread::yield_now(); }
/// h.cancel();
/// assert!(h.join()?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn with_cancel<F, T>(f: F) -> WithCancel<F>
where
    F: FnOnce(&Cancel) -> T + Send,
    T: Send,
{
    WithCancel(f)
}

impl<F> sealed::Sealed for WithCancel<F> {}

impl<F, T> Task for WithCancel<F>
where
    F: FnOnce(&Cancel) -> T + Send,
    T: Send,
{
    type Output = T;

    #[inline]
    fn wants_cancel(&self) -> bool {
        true
    }

    fn run(self, cancel: Option<&Cancel>) -> T {
        match cancel {
            Some(c) => (self.0)(c),
            // Not reached: tasks that want a token always get one. Fall back
            // to a token nobody cancels rather than panicking.
            None => (self.0)(&Cancel::never()),
        }
    }
}

/// Facts about a task that do not depend on its types.
pub(crate) struct Header {
    /// Which pool queued it (inline runs only happen on that pool's workers).
    pub(crate) pool_id: u64,
    pub(crate) name: Option<Arc<str>>,
    /// Present for tasks that asked for one or have a deadline.
    pub(crate) cancel: Option<Cancel>,
    /// When it was queued, on the pool's coarse clock (0: not recorded,
    /// the watchdog is off).
    pub(crate) enqueued: u64,
    /// The scope that waits for this task, for scoped tasks.
    pub(crate) scope: Option<Arc<ScopeShared>>,
    /// Mirror of the slot's state for lock-free readers.
    state: AtomicU8,
}

impl Header {
    pub(crate) fn new(
        pool_id: u64,
        name: Option<Arc<str>>,
        cancel: Option<Cancel>,
        enqueued: u64,
        scope: Option<Arc<ScopeShared>>,
    ) -> Header {
        Header {
            pool_id,
            name,
            cancel,
            enqueued,
            scope,
            state: AtomicU8::new(QUEUED),
        }
    }

    #[inline]
    pub(crate) fn state(&self) -> u8 {
        self.state.load(Ordering::Acquire)
    }

    /// Finished, one way or another.
    #[inline]
    pub(crate) fn is_finished(&self) -> bool {
        self.state() >= DONE
    }
}

/// A caught panic: its message (for [`JoinError`](crate::JoinError)) and its
/// payload (for `resume_unwind` in scopes and `JoinError::into_panic`).
pub(crate) struct Panic {
    pub(crate) message: String,
    pub(crate) payload: Box<dyn Any + Send>,
}

impl Panic {
    pub(crate) fn new(payload: Box<dyn Any + Send>) -> Panic {
        Panic {
            message: panic_message(&*payload),
            payload,
        }
    }
}

/// The message of a panic payload (`&str` or `String`, as `panic!` makes them).
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any> (a non-string panic payload)".to_owned()
    }
}

/// How a task ended.
pub(crate) enum Outcome<T> {
    Ok(T),
    Panicked(Panic),
    Cancelled(CancelReason),
}

enum Slot<F, T> {
    Queued(F),
    Running,
    Done(Outcome<T>),
    /// The outcome was taken by the handle, or dropped because nobody holds one.
    Empty,
}

struct Inner<F, T> {
    slot: Slot<F, T>,
    /// A joiner sleeps on `done`.
    waiting: bool,
    /// The join handle still exists (else outcomes are dropped at once).
    handle: bool,
}

/// The one allocation per task.
pub(crate) struct TaskCell<F: Task> {
    header: Header,
    inner: Mutex<Inner<F, F::Output>>,
    done: Condvar,
}

/// The queue's view of a task.
pub(crate) trait Runnable: Send + Sync {
    fn header(&self) -> &Header;

    /// Run the task if nobody claimed it yet; otherwise do nothing.
    /// Must be called on a worker thread of the task's pool. `popped` says
    /// the caller took it from the queue (then a task cancelled while queued
    /// is counted, exactly once).
    fn run(self: Arc<Self>, shared: &Shared, worker: &WorkerSlot, popped: bool);

    /// Settle a still-queued task as cancelled (its closure is dropped,
    /// never run). Returns whether it was still queued.
    fn cancel_queued(&self, reason: CancelReason) -> bool;
}

/// The join handle's view of a task.
pub(crate) trait Joinable<T>: Runnable {
    /// The outcome, if known; takes it.
    fn take(&self) -> Option<Outcome<T>>;
    /// Block until the outcome is known or `deadline` passes.
    fn wait(&self, deadline: Option<Instant>) -> Option<Outcome<T>>;
    /// Cancel: a queued task is settled without running (returns `true`); a
    /// running one has its token fired.
    fn cancel(&self) -> bool;
    /// The handle is gone.
    fn detach(&self);
}

impl<F: Task> TaskCell<F> {
    pub(crate) fn new(header: Header, f: F) -> TaskCell<F> {
        TaskCell {
            header,
            inner: Mutex::new(Inner {
                slot: Slot::Queued(f),
                waiting: false,
                handle: true,
            }),
            done: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner<F, F::Output>> {
        // User code never runs under this lock, so poisoning cannot leave
        // the slot half-updated.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Move `Queued` to `Running` and hand out the closure.
    fn claim(&self) -> Option<F> {
        let mut g = self.lock();
        if !matches!(g.slot, Slot::Queued(_)) {
            return None;
        }
        match std::mem::replace(&mut g.slot, Slot::Running) {
            Slot::Queued(f) => {
                self.header.state.store(RUNNING, Ordering::Release);
                Some(f)
            }
            _ => None,
        }
    }

    /// Take the closure back from a task that never ran (a failed or
    /// rejected submission). The task is left settled and empty.
    pub(crate) fn take_back(&self) -> Option<F> {
        let mut g = self.lock();
        if !matches!(g.slot, Slot::Queued(_)) {
            return None;
        }
        let old = std::mem::replace(&mut g.slot, Slot::Empty);
        g.handle = false;
        self.header.state.store(DONE, Ordering::Release);
        drop(g);
        match old {
            Slot::Queued(f) => Some(f),
            _ => None,
        }
    }

    /// Record the outcome; wake the joiner; settle scoped bookkeeping.
    fn finish(&self, outcome: Outcome<F::Output>) {
        let leftover = {
            let mut g = self.lock();
            if g.handle {
                g.slot = Slot::Done(outcome);
                self.header.state.store(DONE, Ordering::Release);
                let notify = g.waiting;
                drop(g);
                if notify {
                    self.done.notify_one();
                }
                None
            } else {
                g.slot = Slot::Empty;
                self.header.state.store(DONE, Ordering::Release);
                Some(outcome)
            }
        };
        if let Some(o) = leftover {
            self.dispose(o);
        }
        if let Some(s) = &self.header.scope {
            s.task_done();
        }
    }

    /// Drop an outcome nobody will read. An unjoined panic of a scoped task
    /// goes to its scope, which re-raises it.
    fn dispose(&self, o: Outcome<F::Output>) {
        match (o, &self.header.scope) {
            (Outcome::Panicked(p), Some(scope)) => scope.record_panic(p.payload),
            (o, _) => drop_quietly(o),
        }
    }

    fn cancel_with(&self, reason: CancelReason) -> bool {
        let f = {
            let mut g = self.lock();
            if !matches!(g.slot, Slot::Queued(_)) {
                return false;
            }
            let new = if g.handle {
                Slot::Done(Outcome::Cancelled(reason))
            } else {
                Slot::Empty
            };
            let old = std::mem::replace(&mut g.slot, new);
            self.header.state.store(CANCELLED, Ordering::Release);
            let notify = g.waiting;
            drop(g);
            if notify {
                self.done.notify_one();
            }
            old
        };
        // The closure (and what it captured) is dropped here, outside the lock.
        drop_quietly(f);
        if let Some(s) = &self.header.scope {
            s.task_done();
        }
        true
    }
}

/// Drop a value that came from user code without letting a panicking `Drop`
/// take a worker down.
pub(crate) fn drop_quietly<V>(v: V) {
    let _ = panic::catch_unwind(AssertUnwindSafe(move || drop(v)));
}

impl<F: Task> Runnable for TaskCell<F> {
    fn header(&self) -> &Header {
        &self.header
    }

    fn run(self: Arc<Self>, shared: &Shared, worker: &WorkerSlot, popped: bool) {
        let Some(f) = self.claim() else {
            if popped && self.header.state() == CANCELLED {
                worker.count_cancelled();
            }
            return;
        };
        if let Some(reason) = self.header.cancel.as_ref().and_then(Cancel::reason) {
            // Its token fired (deadline, shutdown) while it waited: skip it.
            drop_quietly(f);
            worker.count_cancelled();
            self.finish(Outcome::Cancelled(reason));
            return;
        }
        worker.begin(shared, &self.header);
        let cancel = self.header.cancel.as_ref();
        let result = panic::catch_unwind(AssertUnwindSafe(move || f.run(cancel)));
        worker.end(shared, &self.header);
        let outcome = match result {
            Ok(v) => {
                worker.count_completed();
                Outcome::Ok(v)
            }
            Err(payload) => {
                worker.count_panicked();
                let p = Panic::new(payload);
                log::warn!(
                    "pool {}: {} panicked on {}: {}",
                    shared.name(),
                    crate::stats::describe(self.header.name.as_deref()),
                    worker.name(),
                    p.message
                );
                Outcome::Panicked(p)
            }
        };
        self.finish(outcome);
    }

    fn cancel_queued(&self, reason: CancelReason) -> bool {
        self.cancel_with(reason)
    }
}

impl<F: Task> Joinable<F::Output> for TaskCell<F> {
    fn take(&self) -> Option<Outcome<F::Output>> {
        if !self.header.is_finished() {
            return None;
        }
        let mut g = self.lock();
        take_done(&mut g.slot)
    }

    fn wait(&self, deadline: Option<Instant>) -> Option<Outcome<F::Output>> {
        let mut g = self.lock();
        loop {
            if let Some(o) = take_done(&mut g.slot) {
                g.waiting = false;
                return Some(o);
            }
            if matches!(g.slot, Slot::Empty) {
                // Already taken: only reachable through misuse of internals.
                g.waiting = false;
                return Some(Outcome::Cancelled(CancelReason::Cancelled));
            }
            g.waiting = true;
            g = match deadline {
                None => self.done.wait(g).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        g.waiting = false;
                        return None;
                    }
                    self.done
                        .wait_timeout(g, d - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }

    fn cancel(&self) -> bool {
        if self.cancel_with(CancelReason::Cancelled) {
            return true;
        }
        if let Some(c) = &self.header.cancel
            && self.header.state() == RUNNING
        {
            c.cancel();
        }
        false
    }

    fn detach(&self) {
        let leftover = {
            let mut g = self.lock();
            g.handle = false;
            take_done(&mut g.slot)
        };
        if let Some(o) = leftover {
            self.dispose(o);
        }
    }
}

fn take_done<F, T>(slot: &mut Slot<F, T>) -> Option<Outcome<T>> {
    if !matches!(slot, Slot::Done(_)) {
        return None;
    }
    match std::mem::replace(slot, Slot::Empty) {
        Slot::Done(o) => Some(o),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn cell<F: Task>(f: F) -> Arc<TaskCell<F>> {
        Arc::new(TaskCell::new(Header::new(1, None, None, 0, None), f))
    }

    #[test]
    fn only_one_claim_wins() {
        let c = cell(|| 5);
        let f = c.claim().expect("first claim");
        assert!(c.claim().is_none(), "second claim loses");
        assert_eq!(c.header.state(), RUNNING);
        assert!(
            !c.cancel_with(CancelReason::Cancelled),
            "cannot cancel a running task"
        );
        c.finish(Outcome::Ok(f.run(None)));
        assert!(c.header.is_finished());
        match c.take() {
            Some(Outcome::Ok(v)) => assert_eq!(v, 5),
            _ => panic!("expected the value"),
        }
        assert!(c.take().is_none(), "taken once");
    }

    #[test]
    fn cancelling_a_queued_task_drops_its_closure_and_settles_it() {
        let token = Arc::new(());
        let t = token.clone();
        let c = cell(move || drop(t));
        assert_eq!(Arc::strong_count(&token), 2);
        assert!(c.cancel_with(CancelReason::Shutdown));
        assert_eq!(Arc::strong_count(&token), 1);
        assert_eq!(c.header.state(), CANCELLED);
        assert!(c.claim().is_none());
        assert!(matches!(
            c.take(),
            Some(Outcome::Cancelled(CancelReason::Shutdown))
        ));
    }

    #[test]
    fn take_back_returns_the_closure_only_while_queued() {
        let c = cell(|| 1);
        let f = c.take_back().expect("still queued");
        assert_eq!(f(), 1);
        assert!(c.take_back().is_none());
        assert!(c.claim().is_none());
    }

    #[test]
    fn wait_times_out_then_sees_the_outcome() {
        let c = cell(|| 3);
        let f = c.claim().expect("claim");
        let t0 = Instant::now();
        assert!(c.wait(Some(t0 + Duration::from_millis(5))).is_none());
        assert!(t0.elapsed() >= Duration::from_millis(5));
        let c2 = c.clone();
        let t = std::thread::spawn(move || c2.finish(Outcome::Ok(f())));
        match c.wait(None) {
            Some(Outcome::Ok(v)) => assert_eq!(v, 3),
            _ => panic!("expected the value"),
        }
        t.join().expect("finisher");
    }

    #[test]
    fn a_detached_task_drops_its_result_when_it_finishes() {
        let token = Arc::new(());
        let t = token.clone();
        let c = cell(move || t);
        let f = c.claim().expect("claim");
        c.detach(); // the handle is gone before the task finishes
        c.finish(Outcome::Ok(f()));
        assert_eq!(Arc::strong_count(&token), 1, "result dropped at once");
        assert!(c.take().is_none());
    }

    #[test]
    fn panic_messages_are_extracted() {
        let p = panic::catch_unwind(|| panic!("static")).unwrap_err();
        assert_eq!(panic_message(&*p), "static");
        let n = std::hint::black_box(3);
        let p = panic::catch_unwind(move || panic!("formatted {n}")).unwrap_err();
        assert_eq!(panic_message(&*p), "formatted 3");
        let p = panic::catch_unwind(|| std::panic::panic_any(7u8)).unwrap_err();
        assert!(panic_message(&*p).contains("non-string"));
    }
}
