//! Join handles.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use stead_core::blocking;

use crate::error::{JoinError, JoinTimeoutError, TryJoinError};
use crate::task::{Joinable, Outcome, QUEUED, RUNNING, Runnable};
use crate::worker::{self, current_worker_of};

/// How many times a joiner polls (one pause each, ~20-40 ns on current x86)
/// before it parks: a tiny task finishes within a few microseconds, and
/// parking costs two futex calls plus a wake-up on the other CPU (~25 µs).
const JOIN_SPINS: u32 = 200;

/// The typed core shared by [`JoinHandle`] and
/// [`ScopedJoinHandle`](crate::ScopedJoinHandle).
pub(crate) struct RawHandle<'a, T> {
    task: Arc<dyn Joinable<T> + 'a>,
}

impl<'a, T> RawHandle<'a, T> {
    pub(crate) fn new(task: Arc<dyn Joinable<T> + 'a>) -> Self {
        RawHandle { task }
    }

    fn convert(&self, o: Outcome<T>) -> Result<T, JoinError> {
        let name = self.task.header().name.clone();
        match o {
            Outcome::Ok(v) => Ok(v),
            Outcome::Panicked(p) => Err(JoinError::panicked(p, name)),
            Outcome::Cancelled(r) => Err(JoinError::cancelled(r, name)),
        }
    }

    pub(crate) fn name(&self) -> Option<&str> {
        self.task.header().name.as_deref()
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.task.header().is_finished()
    }

    pub(crate) fn is_running(&self) -> bool {
        self.task.header().state() == RUNNING
    }

    pub(crate) fn is_queued(&self) -> bool {
        self.task.header().state() == QUEUED
    }

    pub(crate) fn cancel(&self) -> bool {
        // Counted in the stats when a worker pops the dead queue entry.
        self.task.cancel()
    }

    pub(crate) fn try_join(&self) -> Option<Result<T, JoinError>> {
        self.task.take().map(|o| self.convert(o))
    }

    /// Run the task here if it has not started and this thread is a worker
    /// of its pool (a worker must never wait behind its own queue).
    /// Returns whether it ran here.
    pub(crate) fn run_inline(&self) -> bool {
        let header = self.task.header();
        if header.state() != QUEUED {
            return false;
        }
        let Some((shared, slot)) = current_worker_of(header.pool_id) else {
            return false;
        };
        let task: Arc<dyn Runnable + 'a> = self.task.clone();
        task.run(&shared, &slot, false);
        true
    }

    /// Wait for the outcome; `None` if `deadline` passed first.
    /// With `inline`, a not-yet-started task of this worker's pool runs here.
    pub(crate) fn wait(
        &self,
        deadline: Option<Instant>,
        inline: bool,
    ) -> Option<Result<T, JoinError>> {
        if let Some(o) = self.task.take() {
            return Some(self.convert(o));
        }
        if inline
            && self.run_inline()
            && let Some(o) = self.task.take()
        {
            return Some(self.convert(o));
        }
        // Tiny tasks finish within microseconds: spin briefly before parking.
        for _ in 0..JOIN_SPINS {
            std::hint::spin_loop();
            if self.is_finished()
                && let Some(o) = self.task.take()
            {
                return Some(self.convert(o));
            }
        }
        let _blocking = blocking::enter();
        let waiting = WaitingFor::set(self.task.header().name.clone());
        let o = self.task.wait(deadline);
        drop(waiting);
        o.map(|o| self.convert(o))
    }

    pub(crate) fn detach(&self) {
        self.task.detach();
    }
}

/// Records, on a watched worker, which task its current task is joining.
struct WaitingFor(Option<Arc<worker::WorkerSlot>>);

impl WaitingFor {
    fn set(target: Option<Arc<str>>) -> WaitingFor {
        let slot = worker::current_slot_watched();
        if let Some(s) = &slot {
            s.set_waiting_for(Some(target));
        }
        WaitingFor(slot)
    }
}

impl Drop for WaitingFor {
    fn drop(&mut self) {
        if let Some(s) = &self.0 {
            s.set_waiting_for(None);
        }
    }
}

/// An owned permission to wait for a task's result, returned by
/// [`Pool::submit`](crate::Pool::submit).
///
/// Dropping the handle detaches the task: it still runs, and its result is
/// dropped. [`cancel`](JoinHandle::cancel) stops a task that has not started.
///
/// Joining from a worker of the same pool never deadlocks on the pool's own
/// queue: a task that has not started is run inline by the joiner, and a
/// joiner that has to wait counts as blocked (see
/// [`Pool::blocking`](crate::Pool::blocking)).
pub struct JoinHandle<T> {
    raw: RawHandle<'static, T>,
}

impl<T> JoinHandle<T> {
    pub(crate) fn new(task: Arc<dyn Joinable<T>>) -> Self {
        JoinHandle {
            raw: RawHandle::new(task),
        }
    }

    pub(crate) fn raw(&self) -> &RawHandle<'static, T> {
        &self.raw
    }

    /// Wait for the task and return its value.
    ///
    /// Errors: the task panicked ([`JoinError::is_panic`], with the message)
    /// or never ran ([`JoinError::is_cancelled`]).
    ///
    /// ```
    /// let pool = stead_pool::Pool::new(2)?;
    /// let h = pool.submit(|| 2 + 2);
    /// assert_eq!(h.join()?, 4);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn join(self) -> Result<T, JoinError> {
        match self.raw.wait(None, true) {
            Some(r) => r,
            // `wait` without a deadline always yields an outcome.
            None => Err(JoinError::cancelled(
                stead_core::CancelReason::Cancelled,
                self.raw.task.header().name.clone(),
            )),
        }
    }

    /// Wait at most `timeout`; on timeout the handle comes back.
    ///
    /// Unlike [`join`](JoinHandle::join), this never runs the task inline
    /// (that could take longer than the timeout); a worker that waits here
    /// counts as blocked, so the pool compensates if needed.
    ///
    /// ```
    /// use std::time::Duration;
    /// use stead_pool::{JoinTimeoutError, Pool};
    ///
    /// let pool = Pool::new(1)?;
    /// let (tx, rx) = crossbeam_channel::bounded::<()>(0);
    /// let h = pool.submit(move || rx.recv().is_ok());
    /// let h = match h.join_timeout(Duration::from_millis(10)) {
    ///     Err(JoinTimeoutError::Timeout(h)) => h, // still waiting for tx
    ///     other => panic!("{other:?}"),
    /// };
    /// tx.send(())?;
    /// assert!(h.join()?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn join_timeout(self, timeout: Duration) -> Result<T, JoinTimeoutError<T>> {
        match Instant::now().checked_add(timeout) {
            Some(d) => self.join_deadline(d),
            None => self.join().map_err(JoinTimeoutError::Failed),
        }
    }

    /// Wait until `deadline`; on timeout the handle comes back.
    pub fn join_deadline(self, deadline: Instant) -> Result<T, JoinTimeoutError<T>> {
        match self.raw.wait(Some(deadline), false) {
            Some(r) => r.map_err(JoinTimeoutError::Failed),
            None => Err(JoinTimeoutError::Timeout(self)),
        }
    }

    /// The result if the task has finished; the handle back if not.
    pub fn try_join(self) -> Result<T, TryJoinError<T>> {
        match self.raw.try_join() {
            Some(r) => r.map_err(TryJoinError::Failed),
            None => Err(TryJoinError::NotFinished(self)),
        }
    }

    /// Cancel the task.
    ///
    /// A task that has not started is settled at once: its closure is
    /// dropped without running, [`join`](JoinHandle::join) returns a
    /// cancelled [`JoinError`], and `true` is returned. A running task keeps
    /// running, but its [`Cancel`](stead_core::Cancel) token (see
    /// [`with_cancel`](crate::with_cancel)) fires; `false` is returned, as
    /// for a task that already finished.
    pub fn cancel(&self) -> bool {
        self.raw.cancel()
    }

    /// Whether the task finished (ran, panicked or was cancelled).
    pub fn is_finished(&self) -> bool {
        self.raw.is_finished()
    }

    /// Whether the task is running right now.
    pub fn is_running(&self) -> bool {
        self.raw.is_running()
    }

    /// The task's name, if it was given one.
    pub fn name(&self) -> Option<&str> {
        self.raw.name()
    }
}

impl<T> Drop for JoinHandle<T> {
    fn drop(&mut self) {
        self.raw.detach();
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = if self.raw.is_finished() {
            "finished"
        } else if self.raw.is_running() {
            "running"
        } else {
            "queued"
        };
        f.debug_struct("JoinHandle")
            .field("name", &self.raw.name())
            .field("state", &state)
            .finish()
    }
}
