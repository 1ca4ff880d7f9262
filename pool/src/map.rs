//! Bounded parallel maps over an iterator: the threaded `buffered(n)` and
//! `buffer_unordered(n)`.
//!
//! Both pull the input lazily on the consumer's thread and keep at most
//! `limit` items *outstanding*: pulled from the input and not yet handed
//! back to the consumer. So memory is bounded by `limit` whatever the length
//! of the input. Items are topped up in runs once half the limit has been
//! handed back, so workers get several items per wake-up. Results come back
//! as `Result<T, JoinError>`: a panicking item is reported in place and the
//! stream goes on.
//!
//! With [`Map::batch`] (default 1), each task runs up to `n` consecutive
//! items, which divides the per-task cost (an allocation, a queue push, a
//! join) for tiny items.

use std::collections::VecDeque;
use std::fmt;
use std::iter::Fuse;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use stead_core::{CancelReason, blocking};

use crate::error::JoinError;
use crate::handle::JoinHandle;
use crate::pool::TaskBuilder;
use crate::task::panic_message;
use crate::worker::{Shared, on_worker_of};

/// Run `f` on each item, catching each panic separately.
fn run_batch<I, T>(f: &(impl Fn(I) -> T + ?Sized), items: Vec<I>) -> Vec<Result<T, JoinError>> {
    items
        .into_iter()
        .map(|x| {
            panic::catch_unwind(AssertUnwindSafe(|| f(x)))
                .map_err(|p| JoinError::panicked_message(panic_message(&*p), None))
        })
        .collect()
}

/// A whole batch failed to run (cancelled): one error per item.
fn fail_batch<T>(e: &JoinError, n: usize) -> Vec<Result<T, JoinError>> {
    (0..n).map(|_| Err(e.replicate())).collect()
}

/// What both maps share: the lazily pulled input, the function, and the
/// count of items outstanding (pulled, not yet handed back) under `limit`.
struct Feed<'p, I: Iterator, F> {
    shared: &'p Arc<Shared>,
    input: Fuse<I>,
    f: Arc<F>,
    limit: usize,
    batch: usize,
    outstanding: usize,
}

/// The next items to hand to a worker.
enum Run<X> {
    One(X),
    Many(Vec<X>),
}

impl<'p, I: Iterator, F> Feed<'p, I, F> {
    fn new(shared: &'p Arc<Shared>, input: I, limit: usize, f: F) -> Self {
        Feed {
            shared,
            input: input.fuse(),
            f: Arc::new(f),
            limit: limit.max(1),
            batch: 1,
            outstanding: 0,
        }
    }

    /// Top up only once half the limit has been handed back, so workers
    /// get runs of items rather than one per wake-up.
    fn wants_top_up(&self) -> bool {
        self.outstanding <= self.limit / 2
    }

    /// The next run of input while there is room (`None`: full or the
    /// input is done). Single items come as `Run::One` when `single` allows
    /// it (no `Vec` for the one-item-per-task path).
    fn next_run(&mut self, single: bool) -> Option<Run<I::Item>> {
        if self.outstanding >= self.limit {
            return None;
        }
        let room = (self.limit - self.outstanding).min(self.batch);
        if single && (room == 1 || self.batch == 1) {
            let item = self.input.next()?;
            self.outstanding += 1;
            return Some(Run::One(item));
        }
        let items: Vec<I::Item> = self.input.by_ref().take(room).collect();
        if items.is_empty() {
            return None;
        }
        self.outstanding += items.len();
        Some(Run::Many(items))
    }

    /// Hand out runs of up to `n` items (at least 1, at most the limit).
    fn set_batch(&mut self, n: usize) {
        self.batch = n.clamp(1, self.limit);
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let (lo, hi) = self.input.size_hint();
        let n = self.outstanding;
        (lo.saturating_add(n), hi.and_then(|h| h.checked_add(n)))
    }

    fn debug(&self, name: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(name)
            .field("limit", &self.limit)
            .field("batch", &self.batch)
            .field("in_flight", &self.outstanding)
            .finish()
    }
}

/// A submitted unit of the ordered map.
enum Pending<T> {
    One(JoinHandle<T>),
    Batch(JoinHandle<Vec<Result<T, JoinError>>>, usize),
}

impl<T> Pending<T> {
    fn cancel(&self) {
        match self {
            Pending::One(h) => h.cancel(),
            Pending::Batch(h, _) => h.cancel(),
        };
    }
}

/// The ordered map from [`Pool::map`](crate::Pool::map): results come back
/// in input order.
///
/// Dropping it cancels the items that have not started; running ones finish
/// and their results are dropped.
pub struct Map<'p, I: Iterator, F, T> {
    feed: Feed<'p, I, F>,
    pending: VecDeque<Pending<T>>,
    /// Results of the batch being handed back.
    ready: std::vec::IntoIter<Result<T, JoinError>>,
}

impl<'p, I, F, T> Map<'p, I, F, T>
where
    I: Iterator,
{
    pub(crate) fn new(shared: &'p Arc<Shared>, input: I, limit: usize, f: F) -> Self {
        let feed = Feed::new(shared, input, limit, f);
        Map {
            pending: VecDeque::with_capacity(feed.limit),
            feed,
            ready: Vec::new().into_iter(),
        }
    }

    /// Hand items to workers in runs of up to `n` consecutive items per task
    /// (capped at the limit; 0 is taken as 1). Fewer tasks for tiny items;
    /// but at most `limit / n` tasks run at once, so keep `limit / n` at or
    /// above the number of workers.
    ///
    /// ```
    /// let pool = stead_pool::Pool::new(2)?;
    /// let sum: u64 = pool.map(0..100_000u64, 256, |x| x & 1).batch(32).map(Result::unwrap).sum();
    /// assert_eq!(sum, 50_000);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn batch(mut self, n: usize) -> Self {
        self.feed.set_batch(n);
        self
    }

    /// Items pulled from the input and not yet handed back (never more than the limit).
    pub fn in_flight(&self) -> usize {
        self.feed.outstanding
    }
}

impl<I, F, T> Map<'_, I, F, T>
where
    I: Iterator,
    I::Item: Send + 'static,
    F: Fn(I::Item) -> T + Send + Sync + 'static,
    T: Send + 'static,
{
    fn top_up(&mut self) {
        if !self.feed.wants_top_up() {
            return;
        }
        while let Some(run) = self.feed.next_run(true) {
            let f = self.feed.f.clone();
            let task = TaskBuilder::new(self.feed.shared);
            let p = match run {
                Run::One(item) => Pending::One(task.submit(move || f(item))),
                Run::Many(items) => {
                    let n = items.len();
                    Pending::Batch(task.submit(move || run_batch(&*f, items)), n)
                }
            };
            self.pending.push_back(p);
        }
    }
}

impl<I, F, T> Iterator for Map<'_, I, F, T>
where
    I: Iterator,
    I::Item: Send + 'static,
    F: Fn(I::Item) -> T + Send + Sync + 'static,
    T: Send + 'static,
{
    type Item = Result<T, JoinError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.top_up();
        if let Some(r) = self.ready.next() {
            self.feed.outstanding -= 1;
            return Some(r);
        }
        match self.pending.pop_front()? {
            Pending::One(h) => {
                self.feed.outstanding -= 1;
                Some(h.join())
            }
            Pending::Batch(h, n) => {
                let results = match h.join() {
                    Ok(v) => v,
                    Err(e) => fail_batch(&e, n),
                };
                self.ready = results.into_iter();
                let r = self.ready.next()?;
                self.feed.outstanding -= 1;
                Some(r)
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.feed.size_hint()
    }
}

impl<I: Iterator, F, T> Drop for Map<'_, I, F, T> {
    fn drop(&mut self) {
        for p in self.pending.drain(..) {
            p.cancel();
        }
    }
}

impl<I: Iterator, F, T> fmt::Debug for Map<'_, I, F, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.feed.debug("Map", f)
    }
}

type Done<T> = (usize, Vec<Result<T, JoinError>>);

/// Sends a task's results; if the task is dropped without running
/// (cancelled), sends that instead, so the consumer never waits for it.
struct Reporter<T> {
    slot: usize,
    items: usize,
    tx: Sender<Done<T>>,
    sent: bool,
}

impl<T> Reporter<T> {
    fn send(&mut self, r: Vec<Result<T, JoinError>>) {
        self.sent = true;
        // Room is guaranteed: the channel holds `limit` entries and at most
        // `limit` tasks are in flight. A consumer that is gone just drops it.
        let _ = self.tx.try_send((self.slot, r));
    }
}

impl<T> Drop for Reporter<T> {
    fn drop(&mut self) {
        if !self.sent {
            let e = JoinError::cancelled(CancelReason::Cancelled, None);
            let r = fail_batch(&e, self.items);
            self.send(r);
        }
    }
}

/// The unordered map from [`Pool::map_unordered`](crate::Pool::map_unordered):
/// results come back as they finish.
///
/// Dropping it cancels the items that have not started.
pub struct MapUnordered<'p, I: Iterator, F, T> {
    feed: Feed<'p, I, F>,
    /// In-flight tasks by slot; their results arrive on `rx`.
    slots: Vec<Option<JoinHandle<()>>>,
    free: Vec<usize>,
    tx: Sender<Done<T>>,
    rx: Receiver<Done<T>>,
    ready: std::vec::IntoIter<Result<T, JoinError>>,
}

impl<'p, I, F, T> MapUnordered<'p, I, F, T>
where
    I: Iterator,
{
    pub(crate) fn new(shared: &'p Arc<Shared>, input: I, limit: usize, f: F) -> Self {
        let feed = Feed::new(shared, input, limit, f);
        let limit = feed.limit;
        let (tx, rx) = crossbeam_channel::bounded(limit);
        MapUnordered {
            feed,
            slots: Vec::with_capacity(limit),
            free: Vec::with_capacity(limit),
            tx,
            rx,
            ready: Vec::new().into_iter(),
        }
    }

    /// Hand items to workers in runs of up to `n` per task; see [`Map::batch`].
    pub fn batch(mut self, n: usize) -> Self {
        self.feed.set_batch(n);
        self
    }

    /// Items pulled from the input and not yet handed back (never more than the limit).
    pub fn in_flight(&self) -> usize {
        self.feed.outstanding
    }
}

impl<I, F, T> MapUnordered<'_, I, F, T>
where
    I: Iterator,
    I::Item: Send + 'static,
    F: Fn(I::Item) -> T + Send + Sync + 'static,
    T: Send + 'static,
{
    fn top_up(&mut self) {
        if !self.feed.wants_top_up() {
            return;
        }
        while let Some(run) = self.feed.next_run(false) {
            let items = match run {
                Run::Many(items) => items,
                Run::One(item) => vec![item],
            };
            let slot = self.free.pop().unwrap_or_else(|| {
                self.slots.push(None);
                self.slots.len() - 1
            });
            let n = items.len();
            let mut reporter = Reporter {
                slot,
                items: n,
                tx: self.tx.clone(),
                sent: false,
            };
            let f = self.feed.f.clone();
            let h = TaskBuilder::new(self.feed.shared).submit(move || {
                let results = run_batch(&*f, items);
                let panicked = results.iter().find_map(|r| {
                    r.as_ref()
                        .err()
                        .and_then(|e| e.panic_message().map(str::to_owned))
                });
                reporter.send(results);
                if let Some(msg) = panicked {
                    // Let the pool count and log it too.
                    panic::resume_unwind(Box::new(msg));
                }
            });
            self.slots[slot] = Some(h);
        }
    }

    fn receive(&mut self) -> Done<T> {
        if let Ok(d) = self.rx.try_recv() {
            return d;
        }
        if on_worker_of(self.feed.shared.id) {
            // A worker must not wait behind its own queue: run not-yet-started
            // tasks here until one result is in.
            for i in 0..self.slots.len() {
                if let Some(h) = &self.slots[i]
                    && h.raw().run_inline()
                    && let Ok(d) = self.rx.try_recv()
                {
                    return d;
                }
            }
        }
        let _blocking = blocking::enter();
        match self.rx.recv() {
            Ok(d) => d,
            // Unreachable: `self` holds a sender.
            Err(_) => (usize::MAX, Vec::new()),
        }
    }
}

impl<I, F, T> Iterator for MapUnordered<'_, I, F, T>
where
    I: Iterator,
    I::Item: Send + 'static,
    F: Fn(I::Item) -> T + Send + Sync + 'static,
    T: Send + 'static,
{
    type Item = Result<T, JoinError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.top_up();
        loop {
            if let Some(r) = self.ready.next() {
                self.feed.outstanding -= 1;
                return Some(r);
            }
            if self.feed.outstanding == 0 {
                return None;
            }
            let (slot, results) = self.receive();
            if let Some(h) = self.slots.get_mut(slot) {
                *h = None;
                self.free.push(slot);
            }
            self.ready = results.into_iter();
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.feed.size_hint()
    }
}

impl<I: Iterator, F, T> Drop for MapUnordered<'_, I, F, T> {
    fn drop(&mut self) {
        for h in self.slots.drain(..).flatten() {
            h.cancel();
        }
    }
}

impl<I: Iterator, F, T> fmt::Debug for MapUnordered<'_, I, F, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.feed.debug("MapUnordered", f)
    }
}
