//! Scoped tasks: run on the pool's threads, borrow from the caller's stack.

use std::any::Any;
use std::fmt;
use std::marker::PhantomData;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use stead_core::{CancelReason, blocking};

use crate::error::JoinError;
use crate::handle::RawHandle;
use crate::task::{Header, Runnable, Task, TaskCell, drop_quietly};
use crate::worker::{Msg, Shared, Wait, current_worker_of};

/// Bookkeeping a scope shares with its tasks.
pub(crate) struct ScopeShared {
    /// Tasks spawned and not yet settled (closure consumed or dropped, and
    /// result owned by a handle or dropped).
    pending: AtomicUsize,
    /// The first panic of a task nobody joined.
    panic: Mutex<Option<Box<dyn Any + Send>>>,
    lock: Mutex<()>,
    cv: Condvar,
}

impl ScopeShared {
    fn new() -> ScopeShared {
        ScopeShared {
            pending: AtomicUsize::new(0),
            panic: Mutex::new(None),
            lock: Mutex::new(()),
            cv: Condvar::new(),
        }
    }

    pub(crate) fn task_done(&self) {
        if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.cv.notify_all();
        }
    }

    pub(crate) fn record_panic(&self, payload: Box<dyn Any + Send>) {
        let mut p = self.panic.lock().unwrap_or_else(|e| e.into_inner());
        if p.is_none() {
            *p = Some(payload);
        } else {
            drop(p);
            drop_quietly(payload);
        }
    }

    fn wait_all(&self) {
        if self.pending.load(Ordering::Acquire) == 0 {
            return;
        }
        let _blocking = blocking::enter();
        let mut g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        while self.pending.load(Ordering::Acquire) != 0 {
            g = self.cv.wait(g).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// A scope to spawn tasks that borrow from the caller; see
/// [`Pool::scope`](crate::Pool::scope).
pub struct Scope<'scope, 'env: 'scope> {
    shared: Arc<Shared>,
    data: Arc<ScopeShared>,
    /// Tasks that may still be queued, so a scope waiting on a worker of its
    /// own pool can run them itself. Pruned as it grows; emptied by `finish`
    /// before the scope ends. (Lifetime-erased like the queue entries, so
    /// `Scope` has no drop glue that mentions `'scope`.)
    tasks: Mutex<Vec<Msg>>,
    prune_at: AtomicUsize,
    scope: PhantomData<&'scope mut &'scope ()>,
    env: PhantomData<&'env mut &'env ()>,
}

impl fmt::Debug for Scope<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scope")
            .field("pool", &self.shared.name())
            .field("pending", &self.data.pending.load(Ordering::Relaxed))
            .finish()
    }
}

const PRUNE_MIN: usize = 64;

/// Run `f` with a new scope on `shared`; wait for every task; propagate panics.
pub(crate) fn run_scope<'env, F, R>(shared: &Arc<Shared>, f: F) -> R
where
    F: for<'scope> FnOnce(&'scope Scope<'scope, 'env>) -> R,
{
    let scope = Scope {
        shared: shared.clone(),
        data: Arc::new(ScopeShared::new()),
        tasks: Mutex::new(Vec::new()),
        prune_at: AtomicUsize::new(PRUNE_MIN),
        scope: PhantomData,
        env: PhantomData,
    };
    let result = panic::catch_unwind(AssertUnwindSafe(|| f(&scope)));
    scope.finish();
    let task_panic = scope
        .data
        .panic
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    match (result, task_panic) {
        (Err(p), other) => {
            if let Some(o) = other {
                drop_quietly(o);
            }
            panic::resume_unwind(p)
        }
        (Ok(_), Some(p)) => panic::resume_unwind(p),
        (Ok(r), None) => r,
    }
}

impl<'scope, 'env> Scope<'scope, 'env> {
    /// Spawn a task on the pool that may borrow anything that outlives the
    /// scope. Blocks while the pool's queue is full, like
    /// [`Pool::submit`](crate::Pool::submit).
    ///
    /// Takes the same tasks as `submit`: a closure, or
    /// [`with_cancel`](crate::with_cancel)`(|cancel| ..)`.
    pub fn spawn<F>(&'scope self, task: F) -> ScopedJoinHandle<'scope, F::Output>
    where
        F: Task + 'scope,
        F::Output: 'scope,
    {
        let cancel = task.wants_cancel().then(|| self.shared.cancel.child());
        let enqueued = if self.shared.cfg.watchdog.is_some() {
            self.shared.clock()
        } else {
            0
        };
        let header = Header::new(
            self.shared.id,
            None,
            cancel,
            enqueued,
            Some(self.data.clone()),
        );
        self.data.pending.fetch_add(1, Ordering::AcqRel);
        let cell = Arc::new(TaskCell::new(header, task));
        let local: Arc<dyn Runnable + 'scope> = cell.clone();
        // SAFETY: this only erases the lifetime `'scope` from the trait
        // object (same layout: a fat `Arc` pointer). The closure and its
        // result may borrow data that lives for `'scope`; the erased `Arc`
        // goes into the pool's queue, which may outlive `'scope`. It is sound
        // because no borrowed data is touched after `'scope` ends:
        // - `run_scope` returns only after `pending` is back to zero, even
        //   when the scope body panics (it catches the unwind, waits, then
        //   resumes it);
        // - `pending` is decremented (`ScopeShared::task_done`) only after
        //   the task is settled: its closure has been run or dropped, and its
        //   result has been dropped or moved into a `ScopedJoinHandle`, which
        //   cannot outlive `'scope`;
        // - after that the cell holds `Slot::Empty`, so a worker that pops
        //   the stale entry later only finds it claimed (`claim` returns
        //   `None`), and dropping the cell drops no `'scope` data.
        // The copy kept in `self.tasks` is dropped by `finish`, before the
        // scope ends. This is the same argument as `std::thread::scope`'s.
        #[allow(unsafe_code)]
        let msg: Msg = unsafe {
            std::mem::transmute::<Arc<dyn Runnable + 'scope>, Arc<dyn Runnable + 'static>>(local)
        };
        self.track(msg.clone());
        if self.shared.enqueue(msg, Wait::Until(None)).is_err() {
            // Only when the pool is closing, which cannot happen while the
            // scope borrows it; settle the task so the scope cannot hang.
            cell.cancel_queued(CancelReason::Shutdown);
        }
        ScopedJoinHandle {
            raw: RawHandle::new(cell),
        }
    }

    fn track(&self, t: Msg) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.push(t);
        let at = self.prune_at.load(Ordering::Relaxed);
        if tasks.len() >= at {
            tasks.retain(|t| !t.header().is_finished());
            self.prune_at
                .store((tasks.len() * 2).max(PRUNE_MIN), Ordering::Relaxed);
        }
    }

    /// Wait for every task. On a worker of the scope's pool, first run the
    /// scope's own tasks that have not started (newest first).
    fn finish(&self) {
        if let Some((shared, slot)) = current_worker_of(self.shared.id) {
            loop {
                let next = self.tasks.lock().unwrap_or_else(|e| e.into_inner()).pop();
                let Some(t) = next else { break };
                if t.header().state() == crate::task::QUEUED {
                    t.run(&shared, &slot, false);
                }
            }
        } else {
            self.tasks.lock().unwrap_or_else(|e| e.into_inner()).clear();
        }
        self.data.wait_all();
    }
}

/// A handle to a scoped task; see [`Scope::spawn`].
///
/// Dropping it without joining is fine: the scope still waits for the task,
/// and if the task panicked, [`Pool::scope`](crate::Pool::scope) panics with
/// its payload once every task is done.
pub struct ScopedJoinHandle<'scope, T> {
    raw: RawHandle<'scope, T>,
}

impl<T> ScopedJoinHandle<'_, T> {
    /// Wait for the task and return its value (or why there is none). On a
    /// worker of the same pool, a task that has not started runs inline.
    pub fn join(self) -> Result<T, JoinError> {
        match self.raw.wait(None, true) {
            Some(r) => r,
            None => Err(JoinError::cancelled(CancelReason::Cancelled, None)),
        }
    }

    /// Whether the task finished.
    pub fn is_finished(&self) -> bool {
        self.raw.is_finished()
    }

    /// Cancel the task if it has not started (then returns `true` and
    /// [`join`](ScopedJoinHandle::join) reports it cancelled); a running
    /// task's token fires.
    pub fn cancel(&self) -> bool {
        self.raw.cancel()
    }
}

impl<T> Drop for ScopedJoinHandle<'_, T> {
    fn drop(&mut self) {
        self.raw.detach();
    }
}

impl<T> fmt::Debug for ScopedJoinHandle<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopedJoinHandle")
            .field("finished", &self.raw.is_finished())
            .field("queued", &self.raw.is_queued())
            .finish()
    }
}
