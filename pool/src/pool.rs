//! The pool, its builder, its cloneable handle and the task builder.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::thread::JoinHandle as ThreadHandle;
use std::time::{Duration, Instant};

use stead_core::{Cancel, CancelReason, blocking};

use crate::error::{SubmitTimeoutError, TrySubmitError};
use crate::handle::JoinHandle;
use crate::map::{Map, MapUnordered};
use crate::scope::{Scope, run_scope};
use crate::stats::{ShutdownReport, Stats, TaskReport};
use crate::task::{Header, Runnable, Task, TaskCell};
use crate::watchdog;
use crate::worker::{self, Config, EnqueueError, Kind, MAX_THREADS, Shared, Wait};

/// Configuration for a [`Pool`].
///
/// ```
/// use std::time::Duration;
/// let pool = stead_pool::Pool::builder()
///     .name("render")           // threads render-1, render-2, ...
///     .workers(2)
///     .queue_capacity(64)       // submit blocks when 64 tasks wait
///     .stack_size(512 * 1024)
///     .max_workers(8)           // grow while the queue backs up...
///     .idle_timeout(Duration::from_secs(5)) // ...and shrink back when idle
///     .build()?;
/// assert_eq!(pool.submit(|| 1).join()?, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct PoolBuilder {
    name: String,
    workers: Option<usize>,
    max_workers: Option<usize>,
    capacity: Option<usize>,
    stack_size: usize,
    idle_timeout: Duration,
    compensation_limit: usize,
    watchdog: Option<Duration>,
    drop_grace: Duration,
    parent: Option<Cancel>,
}

impl Default for PoolBuilder {
    fn default() -> Self {
        PoolBuilder {
            name: "stead-pool".to_owned(),
            workers: None,
            max_workers: None,
            capacity: None,
            stack_size: 2 * 1024 * 1024,
            idle_timeout: Duration::from_secs(10),
            compensation_limit: 64,
            watchdog: Some(Duration::from_secs(10)),
            drop_grace: Duration::from_secs(5),
            parent: None,
        }
    }
}

impl PoolBuilder {
    /// Defaults: one worker per CPU, a queue of 256 tasks per worker (at
    /// least 1,024), 2 MiB stacks, no elastic growth, up to 64 compensating
    /// threads, a 10 s watchdog threshold, threads named `stead-pool-N`, and a
    /// 5 s grace period when the pool is dropped.
    pub fn new() -> Self {
        Self::default()
    }

    /// The thread name prefix: workers are `name-1`, `name-2`, ...; the
    /// watchdog is `name-watchdog`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Core workers: started at once, alive until shutdown. Default: the
    /// number of CPUs.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = Some(n);
        self
    }

    /// Elastic growth: while the queue backs up and no worker is idle, start
    /// more workers up to `n`. Extra workers exit after
    /// [`idle_timeout`](PoolBuilder::idle_timeout) without work. Default:
    /// equal to `workers` (no growth).
    pub fn max_workers(mut self, n: usize) -> Self {
        self.max_workers = Some(n);
        self
    }

    /// How many tasks may wait in the queue; `submit` blocks beyond that.
    pub fn queue_capacity(mut self, n: usize) -> Self {
        self.capacity = Some(n);
        self
    }

    /// Stack size of each worker thread, in bytes.
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = bytes;
        self
    }

    /// How long an extra (elastic or compensating) worker waits for work
    /// before it exits. Default: 10 s.
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.idle_timeout = d;
        self
    }

    /// The hard cap on compensating threads: when every worker is blocked
    /// while tasks are queued, the pool starts another worker, but never
    /// more than `max_workers + n` threads in total. `0` disables
    /// compensation (inline joins still prevent the join deadlock). Default: 64.
    pub fn compensation_limit(mut self, n: usize) -> Self {
        self.compensation_limit = n;
        self
    }

    /// The watchdog threshold: tasks running longer, or a queue that has not
    /// moved for longer, are logged (`log::warn!`) and counted in
    /// [`Stats::overdue`]; [`Pool::overdue`] lists them. `None` turns the
    /// watchdog off (and with it the per-task bookkeeping it needs).
    /// Default: 10 s.
    pub fn watchdog(mut self, threshold: Option<Duration>) -> Self {
        self.watchdog = threshold;
        self
    }

    /// The grace period used when a [`Pool`] is dropped without
    /// [`shutdown`](Pool::shutdown). Default: 5 s.
    pub fn drop_grace(mut self, d: Duration) -> Self {
        self.drop_grace = d;
        self
    }

    /// Make the pool's token a child of `parent` (for example the process's
    /// shutdown token): cancelling it cancels every task token of the pool.
    pub fn cancel_parent(mut self, parent: &Cancel) -> Self {
        self.parent = Some(parent.clone());
        self
    }

    /// Start the pool.
    ///
    /// Errors: `InvalidInput` for zero workers, a zero queue capacity,
    /// `max_workers < workers`, more than 32,767 threads or a zero watchdog
    /// threshold; the OS error if a thread cannot be started.
    pub fn build(self) -> io::Result<Pool> {
        let invalid = |msg: String| {
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("stead-pool {}: {msg}", self.name),
            ))
        };
        let workers = match self.workers {
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        if workers == 0 {
            return invalid("a pool needs at least one worker".into());
        }
        let max_workers = self.max_workers.unwrap_or(workers);
        if max_workers < workers {
            return invalid(format!(
                "max_workers ({max_workers}) is below workers ({workers})"
            ));
        }
        if max_workers > MAX_THREADS {
            return invalid(format!(
                "max_workers ({max_workers}) is above the limit of {MAX_THREADS}"
            ));
        }
        let capacity = self.capacity.unwrap_or((workers * 256).max(1024));
        if capacity == 0 {
            return invalid("the queue capacity must be at least 1".into());
        }
        if self.watchdog == Some(Duration::ZERO) {
            return invalid(
                "the watchdog threshold must be above zero (use None to disable it)".into(),
            );
        }
        let cfg = Config {
            name: self.name.as_str().into(),
            workers,
            max_workers,
            compensation_limit: self.compensation_limit,
            idle_timeout: self.idle_timeout,
            stack_size: self.stack_size,
            watchdog: self.watchdog,
        };
        let cancel = match &self.parent {
            Some(p) => p.child(),
            None => Cancel::new(),
        };
        let shared = Arc::new_cyclic(|me| Shared::new(cfg, capacity, cancel, me.clone()));
        let mut pool = Pool {
            shared: shared.clone(),
            watchdog: None,
            drop_grace: self.drop_grace,
            done: false,
        };
        shared.reserve_core(workers);
        for started in 0..workers {
            if let Err(e) = shared.spawn_reserved(Kind::Core) {
                // Give back the slots of the threads we will not start.
                for _ in started + 1..workers {
                    shared.unreserve_one();
                }
                pool.shutdown_inner(Duration::ZERO);
                pool.done = true;
                return Err(e);
            }
        }
        if let Some(threshold) = self.watchdog {
            match watchdog::spawn(shared.clone(), threshold) {
                Ok(h) => pool.watchdog = Some(h),
                Err(e) => {
                    pool.shutdown_inner(Duration::ZERO);
                    pool.done = true;
                    return Err(e);
                }
            }
        }
        Ok(pool)
    }
}

/// A pool of worker threads with a bounded queue.
///
/// See the [crate documentation](crate) for a tour. `Pool` is `Sync`: share
/// it by reference (or `Arc`), or hand tasks a [`PoolHandle`].
///
/// Dropping the pool shuts it down with the builder's
/// [`drop_grace`](PoolBuilder::drop_grace) and joins its threads.
pub struct Pool {
    shared: Arc<Shared>,
    watchdog: Option<ThreadHandle<()>>,
    drop_grace: Duration,
    done: bool,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.shared, f)
    }
}

/// Submission methods shared by [`Pool`] and [`PoolHandle`].
macro_rules! submit_methods {
    () => {
        /// Queue a task, blocking while the queue is full (backpressure).
        ///
        /// On a worker of any stead pool, waiting for room counts as
        /// blocking (the pool compensates if every worker waits).
        pub fn submit<F>(&self, task: F) -> JoinHandle<F::Output>
        where
            F: Task + 'static,
            F::Output: 'static,
        {
            self.task().submit(task)
        }

        /// Queue a task if there is room; otherwise hand it back.
        ///
        /// ```
        /// use stead_pool::{Pool, TrySubmitError};
        /// let pool = Pool::builder().workers(1).queue_capacity(1).build()?;
        /// let (tx, rx) = crossbeam_channel::bounded::<()>(0);
        /// let busy = pool.submit(move || { let _ = rx.recv(); });
        /// while !busy.is_running() { std::thread::yield_now(); }
        /// let queued = pool.submit(|| 1); // fills the one slot
        /// match pool.try_submit(|| 2) {
        ///     Err(TrySubmitError::Full(task)) => assert_eq!(task(), 2), // our closure, back
        ///     other => panic!("{other:?}"),
        /// }
        /// drop(tx);
        /// assert_eq!(queued.join()?, 1);
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        pub fn try_submit<F>(&self, task: F) -> Result<JoinHandle<F::Output>, TrySubmitError<F>>
        where
            F: Task + 'static,
            F::Output: 'static,
        {
            self.task().try_submit(task)
        }

        /// Queue a task, waiting at most `timeout` for room.
        pub fn submit_timeout<F>(
            &self,
            task: F,
            timeout: Duration,
        ) -> Result<JoinHandle<F::Output>, SubmitTimeoutError<F>>
        where
            F: Task + 'static,
            F::Output: 'static,
        {
            self.task().submit_timeout(task, timeout)
        }

        /// Queue a task, waiting until `deadline` for room.
        pub fn submit_deadline<F>(
            &self,
            task: F,
            deadline: Instant,
        ) -> Result<JoinHandle<F::Output>, SubmitTimeoutError<F>>
        where
            F: Task + 'static,
            F::Output: 'static,
        {
            self.task().submit_deadline(task, deadline)
        }

        /// Configure one task (a name, a deadline) before submitting it.
        ///
        /// ```
        /// let pool = stead_pool::Pool::new(1)?;
        /// let h = pool.task().name("resize").submit(|| 7);
        /// assert_eq!(h.name(), Some("resize"));
        /// assert_eq!(h.join()?, 7);
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        pub fn task(&self) -> TaskBuilder<'_> {
            TaskBuilder::new(&self.shared)
        }

        /// Run `f` as a blocking section: if every worker of the pool is
        /// blocked (here or in a stead blocking call) while tasks are queued,
        /// the pool starts a compensating worker. Use it around blocking
        /// calls stead does not know about (a database driver, `std` I/O,
        /// a foreign lock). Outside a worker thread it just runs `f`.
        ///
        /// Any thread may call it; it concerns the pool the current thread
        /// works for, which need not be this one.
        pub fn blocking<R>(&self, f: impl FnOnce() -> R) -> R {
            blocking::blocking(f)
        }

        /// A snapshot of the pool's counters.
        pub fn stats(&self) -> Stats {
            self.shared.stats()
        }

        /// Tasks that have been running for at least `older_than`, with their
        /// name, age, state, worker and the task they wait for. Empty when the
        /// watchdog is off.
        pub fn overdue(&self, older_than: Duration) -> Vec<TaskReport> {
            self.shared.overdue(older_than)
        }

        /// The pool's token: the parent of every task token. Cancelling it
        /// cancels every task that takes one, queued or running (queued ones
        /// are then skipped), and every such task submitted later.
        pub fn cancel_token(&self) -> &Cancel {
            &self.shared.cancel
        }

        /// The pool's name.
        pub fn name(&self) -> &str {
            self.shared.name()
        }
    };
}

impl Pool {
    /// A pool with `workers` threads and the other defaults of [`PoolBuilder`].
    ///
    /// Errors: `InvalidInput` for zero workers; the OS error if a thread
    /// cannot be started.
    pub fn new(workers: usize) -> io::Result<Pool> {
        PoolBuilder::new().workers(workers).build()
    }

    /// A builder to configure a pool.
    pub fn builder() -> PoolBuilder {
        PoolBuilder::new()
    }

    submit_methods!();

    /// A cloneable handle that can submit to this pool from anywhere,
    /// including from its own tasks. It does not keep the pool running:
    /// after shutdown, its submissions come back cancelled.
    pub fn handle(&self) -> PoolHandle {
        PoolHandle {
            shared: self.shared.clone(),
        }
    }

    /// Run tasks that borrow from the caller's stack on the pool's threads.
    ///
    /// Every task spawned on the scope is finished before `scope` returns.
    /// If the closure or a task that was not joined panicked, `scope`
    /// panics with that payload after all tasks are done. Called on a worker
    /// of this pool, the scope runs its own tasks that have not started
    /// while it waits, so it cannot deadlock on a busy pool.
    ///
    /// ```
    /// let pool = stead_pool::Pool::new(2)?;
    /// let mut words = vec!["a".to_string(), "b".to_string()];
    /// let total = 40;
    /// let n = pool.scope(|s| {
    ///     let (first, rest) = words.split_at_mut(1);
    ///     s.spawn(|| first[0].push('!'));          // mutable borrow
    ///     let h = s.spawn(|| rest[0].len() + total); // shared borrows
    ///     h.join().unwrap()
    /// });
    /// assert_eq!(n, 41);
    /// assert_eq!(words, ["a!", "b"]);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// A borrow cannot escape the scope: the handle of a task that borrows
    /// a local cannot be returned from it.
    ///
    /// ```compile_fail
    /// let pool = stead_pool::Pool::new(1)?;
    /// let v = vec![1, 2, 3];
    /// let h = pool.scope(|s| s.spawn(|| v.len())); // error: the handle borrows the scope
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// Nor can a task borrow something that dies inside the scope:
    ///
    /// ```compile_fail,E0373
    /// let pool = stead_pool::Pool::new(1)?;
    /// pool.scope(|s| {
    ///     let local = vec![1, 2, 3];
    ///     s.spawn(|| local.len()); // error: `local` may not live long enough
    /// });
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn scope<'env, F, R>(&self, f: F) -> R
    where
        F: for<'scope> FnOnce(&'scope Scope<'scope, 'env>) -> R,
    {
        run_scope(&self.shared, f)
    }

    /// A bounded, ordered parallel map: `f` runs on the pool for each item
    /// of `input`, at most `limit` items are in flight, and results come
    /// back in input order. The input is pulled lazily, a few items ahead of
    /// the consumer. A `limit` of 0 is taken as 1.
    ///
    /// ```
    /// let pool = stead_pool::Pool::new(2)?;
    /// let squares: Vec<u64> = pool
    ///     .map(1..=5u64, 4, |x| x * x)
    ///     .collect::<Result<_, _>>()?;
    /// assert_eq!(squares, [1, 4, 9, 16, 25]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn map<I, F, T>(&self, input: I, limit: usize, f: F) -> Map<'_, I::IntoIter, F, T>
    where
        I: IntoIterator,
        I::Item: Send + 'static,
        F: Fn(I::Item) -> T + Send + Sync + 'static,
        T: Send + 'static,
    {
        Map::new(&self.shared, input.into_iter(), limit, f)
    }

    /// Like [`map`](Pool::map), but results come back as they finish.
    ///
    /// ```
    /// let pool = stead_pool::Pool::new(2)?;
    /// let mut got: Vec<u64> = pool
    ///     .map_unordered(1..=5u64, 2, |x| x * 10)
    ///     .collect::<Result<_, _>>()?;
    /// got.sort();
    /// assert_eq!(got, [10, 20, 30, 40, 50]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn map_unordered<I, F, T>(
        &self,
        input: I,
        limit: usize,
        f: F,
    ) -> MapUnordered<'_, I::IntoIter, F, T>
    where
        I: IntoIterator,
        I::Item: Send + 'static,
        F: Fn(I::Item) -> T + Send + Sync + 'static,
        T: Send + 'static,
    {
        MapUnordered::new(&self.shared, input.into_iter(), limit, f)
    }

    /// Shut down: stop accepting tasks, let queued and running tasks finish
    /// until `grace` has passed, then cancel what is still queued (it never
    /// runs), fire the tokens of running tasks, wait for them to return and
    /// join every thread.
    ///
    /// A task that ignores its token delays the return; the pool logs what
    /// it still waits for every few seconds.
    ///
    /// ```
    /// use std::time::Duration;
    /// let pool = stead_pool::Pool::new(2)?;
    /// for i in 0..10 {
    ///     pool.submit(move || i * 2); // handles dropped: fire and forget
    /// }
    /// let report = pool.shutdown(Duration::from_secs(5));
    /// assert!(report.is_clean());
    /// assert_eq!(report.completed, 10);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn shutdown(mut self, grace: Duration) -> ShutdownReport {
        self.done = true;
        self.shutdown_inner(grace)
    }

    fn shutdown_inner(&mut self, grace: Duration) -> ShutdownReport {
        let shared = &self.shared;
        let start = Instant::now();
        let deadline = start.checked_add(grace);
        let before = shared.stats();
        shared.close();
        shared.wake_all();
        // A pool dropped by one of its own tasks cannot wait for itself.
        let me = usize::from(worker::on_worker_of(shared.id));
        let within_grace = shared.wait_live(me, deadline);
        let mut cancelled = 0;
        let mut interrupted = 0;
        if !within_grace {
            interrupted = shared.running().saturating_sub(me);
            // Empty the queue first, so workers freed by their tokens below
            // do not pick up more work.
            cancelled = shared.drain_cancel();
            shared.cancel.shutdown();
            shared.wake_all();
            log::warn!(
                "pool {}: grace period of {grace:?} over; cancelled {cancelled} queued tasks, \
                 waiting for {interrupted} running ones",
                shared.name()
            );
            while !shared.wait_live(me, Some(Instant::now() + Duration::from_secs(5))) {
                let stuck = shared.overdue(Duration::ZERO);
                log::warn!(
                    "pool {}: still waiting for {} running tasks to return{}",
                    shared.name(),
                    shared.running().saturating_sub(me),
                    if stuck.is_empty() {
                        String::new()
                    } else {
                        format!(
                            ": {}",
                            stuck
                                .iter()
                                .map(ToString::to_string)
                                .collect::<Vec<_>>()
                                .join("; ")
                        )
                    }
                );
            }
        }
        shared.cancel.shutdown();
        shared.stop.cancel();
        if let Some(w) = self.watchdog.take()
            && w.join().is_err()
        {
            log::error!("pool {}: the watchdog thread panicked", shared.name());
        }
        shared.join_threads();
        // Submissions through handles that raced with closing.
        cancelled += shared.drain_cancel();
        let after = shared.stats();
        ShutdownReport {
            completed: (after.completed + after.panicked) - (before.completed + before.panicked),
            cancelled,
            interrupted,
            within_grace,
            elapsed: start.elapsed(),
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if !self.done {
            self.done = true;
            let report = self.shutdown_inner(self.drop_grace);
            if !report.is_clean() {
                log::warn!("pool {} dropped: {report:?}", self.shared.name());
            }
        }
    }
}

/// A cloneable handle to submit to a [`Pool`] from anywhere, including its
/// own tasks (see also [`current`](crate::current)).
///
/// It does not keep the pool alive: once the pool shuts down,
/// [`submit`](PoolHandle::submit) returns a handle whose join reports the
/// task cancelled ([`CancelReason::Shutdown`]), and the `try_`/timeout
/// variants hand the task back as `Shutdown`.
#[derive(Clone)]
pub struct PoolHandle {
    shared: Arc<Shared>,
}

impl fmt::Debug for PoolHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.shared, f)
    }
}

impl PoolHandle {
    pub(crate) fn from_shared(shared: Arc<Shared>) -> PoolHandle {
        PoolHandle { shared }
    }

    submit_methods!();

    /// Whether the pool has started shutting down.
    pub fn is_shutdown(&self) -> bool {
        self.shared.is_closed()
    }
}

/// Options for one task; from [`Pool::task`] or [`PoolHandle::task`].
#[derive(Debug)]
#[must_use = "a task builder does nothing until a submit method is called"]
pub struct TaskBuilder<'p> {
    shared: &'p Arc<Shared>,
    name: Option<Arc<str>>,
    deadline: Option<Instant>,
}

impl<'p> TaskBuilder<'p> {
    pub(crate) fn new(shared: &'p Arc<Shared>) -> Self {
        TaskBuilder {
            shared,
            name: None,
            deadline: None,
        }
    }

    /// Name the task: it appears in the watchdog's reports, panic logs and
    /// [`JoinError`](crate::JoinError)s.
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Give the task a deadline: if it is still queued then, it never runs
    /// (its join reports [`CancelReason::DeadlineExceeded`]); if it takes its
    /// token ([`with_cancel`](crate::with_cancel)), the token fires then.
    pub fn deadline(mut self, deadline: Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// [`deadline`](TaskBuilder::deadline) `timeout` from now.
    pub fn timeout(self, timeout: Duration) -> Self {
        match Instant::now().checked_add(timeout) {
            Some(d) => self.deadline(d),
            None => self,
        }
    }

    fn cell<F: Task>(self, task: F) -> Arc<TaskCell<F>> {
        let shared = self.shared;
        let cancel = if task.wants_cancel() || self.deadline.is_some() {
            Some(match self.deadline {
                Some(d) => shared.cancel.child_with_deadline(d),
                None => shared.cancel.child(),
            })
        } else {
            None
        };
        let enqueued = if shared.cfg.watchdog.is_some() {
            shared.clock()
        } else {
            0
        };
        Arc::new(TaskCell::new(
            Header::new(shared.id, self.name, cancel, enqueued, None),
            task,
        ))
    }

    /// Queue the task, blocking while the queue is full.
    pub fn submit<F>(self, task: F) -> JoinHandle<F::Output>
    where
        F: Task + 'static,
        F::Output: 'static,
    {
        let shared = self.shared;
        let cell = self.cell(task);
        if shared.enqueue(cell.clone(), Wait::Until(None)).is_err() {
            // Closed (only through a handle): report it cancelled, unless a
            // worker already took it.
            if cell.cancel_queued(CancelReason::Shutdown) {
                shared.count_cancelled();
            }
        }
        JoinHandle::new(cell)
    }

    /// Queue the task if there is room; otherwise hand it back.
    pub fn try_submit<F>(self, task: F) -> Result<JoinHandle<F::Output>, TrySubmitError<F>>
    where
        F: Task + 'static,
        F::Output: 'static,
    {
        let shared = self.shared;
        let cell = self.cell(task);
        match shared.enqueue(cell.clone(), Wait::No) {
            Ok(()) => Ok(JoinHandle::new(cell)),
            Err(e) => match cell.take_back() {
                Some(f) if e == EnqueueError::Closed => Err(TrySubmitError::Shutdown(f)),
                Some(f) => Err(TrySubmitError::Full(f)),
                // A worker claimed it before we could take it back.
                None => Ok(JoinHandle::new(cell)),
            },
        }
    }

    /// Queue the task, waiting at most `timeout` for room.
    pub fn submit_timeout<F>(
        self,
        task: F,
        timeout: Duration,
    ) -> Result<JoinHandle<F::Output>, SubmitTimeoutError<F>>
    where
        F: Task + 'static,
        F::Output: 'static,
    {
        match Instant::now().checked_add(timeout) {
            Some(d) => self.submit_deadline(task, d),
            None => Ok(self.submit(task)),
        }
    }

    /// Queue the task, waiting until `deadline` for room.
    pub fn submit_deadline<F>(
        self,
        task: F,
        deadline: Instant,
    ) -> Result<JoinHandle<F::Output>, SubmitTimeoutError<F>>
    where
        F: Task + 'static,
        F::Output: 'static,
    {
        let shared = self.shared;
        let cell = self.cell(task);
        match shared.enqueue(cell.clone(), Wait::Until(Some(deadline))) {
            Ok(()) => Ok(JoinHandle::new(cell)),
            Err(e) => match cell.take_back() {
                Some(f) if e == EnqueueError::Closed => Err(SubmitTimeoutError::Shutdown(f)),
                Some(f) => Err(SubmitTimeoutError::Timeout(f)),
                None => Ok(JoinHandle::new(cell)),
            },
        }
    }
}

/// A handle to the pool the current thread works for, if it is a worker:
/// lets a task submit follow-up tasks to its own pool.
///
/// ```
/// let pool = stead_pool::Pool::new(1)?;
/// let h = pool.submit(|| {
///     let me = stead_pool::current().expect("on a worker");
///     // With one worker, joining a task queued behind us runs it inline.
///     me.submit(|| 20).join().unwrap() + 1
/// });
/// assert_eq!(h.join()?, 21);
/// assert!(stead_pool::current().is_none());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn current() -> Option<PoolHandle> {
    worker::current_pool().map(PoolHandle::from_shared)
}

// Pools, handles and join handles move between threads.
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Pool>();
    send_sync::<PoolHandle>();
    send_sync::<JoinHandle<u8>>();
    send_sync::<crate::JoinError>();
};
