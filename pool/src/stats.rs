//! Counters, watchdog reports and the shutdown report.

use std::fmt;
use std::time::Duration;

/// A snapshot of a pool's counters, from [`Pool::stats`](crate::Pool::stats).
///
/// Gauges (`workers` .. `running`) are read one after the other, not under a
/// global lock, so they may be off by one while the pool is busy. Counters
/// (`completed` ..) only grow.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Worker threads alive (core, elastic and compensating).
    pub workers: usize,
    /// Workers waiting for work (parked or spinning).
    pub idle: usize,
    /// Workers inside a blocking section (a stead blocking call or
    /// [`Pool::blocking`](crate::Pool::blocking)).
    pub blocked: usize,
    /// Compensating workers alive: threads started beyond `max_workers`
    /// because every worker was blocked.
    pub compensating: usize,
    /// Entries in the queue. A task cancelled while queued keeps its entry
    /// (a no-op) until a worker pops it.
    pub queued: usize,
    /// The queue's capacity.
    pub capacity: usize,
    /// Workers running a task.
    pub running: usize,
    /// Tasks that ran to completion (including those run inline by a join).
    pub completed: u64,
    /// Tasks that panicked.
    pub panicked: u64,
    /// Tasks that never ran: cancelled through their handle, by their
    /// deadline, or by shutdown.
    pub cancelled: u64,
    /// Submissions refused because the queue was full (`try_submit`) or
    /// stayed full until the deadline (`submit_timeout`).
    pub rejected: u64,
    /// Compensating workers started so far.
    pub compensations: u64,
    /// Running tasks older than the watchdog threshold at its last check.
    pub overdue: usize,
    /// Shutdown has started.
    pub closed: bool,
}

/// What a reported task is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TaskState {
    /// Running on a worker.
    Running,
    /// Running, but inside a blocking section (waiting on I/O, a token, a join...).
    Blocked,
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TaskState::Running => "running",
            TaskState::Blocked => "blocked",
        })
    }
}

/// A task that has been running longer than a threshold, from
/// [`Pool::overdue`](crate::Pool::overdue) and the watchdog's log lines.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct TaskReport {
    /// The task's name ([`TaskBuilder::name`](crate::TaskBuilder::name)), if it has one.
    pub name: Option<String>,
    /// Running or blocked.
    pub state: TaskState,
    /// How long it has been running.
    pub age: Duration,
    /// The worker thread's name.
    pub worker: Option<String>,
    /// The task it is joining, if it is blocked in a join
    /// (its name, or `an unnamed task`).
    pub waiting_for: Option<String>,
    pub(crate) worker_index: usize,
    pub(crate) started: u64,
}

impl fmt::Display for TaskReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} for {:?}",
            describe(self.name.as_deref()),
            self.state,
            self.age
        )?;
        if let Some(w) = &self.worker {
            write!(f, " on {w}")?;
        }
        if let Some(t) = &self.waiting_for {
            write!(f, ", waiting for {t}")?;
        }
        Ok(())
    }
}

/// `task 'name'` or `an unnamed task`.
pub(crate) fn describe(name: Option<&str>) -> String {
    match name {
        Some(n) => format!("task '{n}'"),
        None => "an unnamed task".to_owned(),
    }
}

/// What [`Pool::shutdown`](crate::Pool::shutdown) did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Tasks that finished (completed or panicked) during the shutdown.
    pub completed: u64,
    /// Queued tasks that never ran because the grace period ended.
    pub cancelled: usize,
    /// Tasks still running when the grace period ended; their
    /// [`Cancel`](stead_core::Cancel) tokens were fired and the pool waited
    /// for them to return.
    pub interrupted: usize,
    /// Whether the queue drained and every task returned within the grace period.
    pub within_grace: bool,
    /// Time the shutdown took, including waiting for interrupted tasks.
    pub elapsed: Duration,
}

impl ShutdownReport {
    /// Nothing was cancelled or interrupted.
    pub fn is_clean(&self) -> bool {
        self.within_grace && self.cancelled == 0 && self.interrupted == 0
    }
}
