//! stead-pool: bounded worker pools for threads and blocking code: join
//! handles, scoped tasks, a bounded parallel map, and no starvation.
//!
//! # Hello, pool
//!
//! ```
//! use stead_pool::Pool;
//!
//! let pool = Pool::new(2)?;          // two worker threads
//! let h = pool.submit(|| 2 + 2);     // queue a task, get a handle
//! assert_eq!(h.join()?, 4);          // wait for its result
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Configuring
//!
//! [`Pool::builder`] sets the thread names (`name-1`, `name-2`, ...), the
//! number of workers, the queue capacity, the stack size, elastic growth
//! (`max_workers` and `idle_timeout`), the cap on compensating threads and
//! the watchdog threshold.
//!
//! ```
//! use std::time::Duration;
//! use stead_pool::Pool;
//!
//! let pool = Pool::builder()
//!     .name("thumbs")
//!     .workers(2)
//!     .queue_capacity(128)
//!     .max_workers(4)
//!     .idle_timeout(Duration::from_secs(30))
//!     .build()?;
//! let name = pool.submit(|| std::thread::current().name().map(String::from)).join()?;
//! assert!(name.unwrap().starts_with("thumbs-"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Backpressure
//!
//! Every queue is bounded. [`submit`](Pool::submit) blocks while the queue is
//! full; [`try_submit`](Pool::try_submit) hands the task back instead
//! (crossbeam-channel style: [`TrySubmitError::into_inner`]);
//! [`submit_timeout`](Pool::submit_timeout) waits a bounded time.
//!
//! ```
//! use std::time::Duration;
//! use stead_pool::{Pool, SubmitTimeoutError};
//!
//! let pool = Pool::builder().workers(1).queue_capacity(1).build()?;
//! let (release, gate) = crossbeam_channel::bounded::<()>(0);
//! let busy = pool.submit(move || gate.recv().is_ok()); // occupies the worker
//! while !busy.is_running() { std::thread::yield_now(); }
//! let queued = pool.submit(|| "queued");               // fills the queue
//!
//! match pool.submit_timeout(|| "late", Duration::from_millis(10)) {
//!     Err(SubmitTimeoutError::Timeout(task)) => assert_eq!(task(), "late"),
//!     other => panic!("{other:?}"),
//! }
//! release.send(())?;
//! assert!(busy.join()?);
//! assert_eq!(queued.join()?, "queued");
//! assert_eq!(pool.stats().rejected, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Joining, panics and cancellation
//!
//! A [`JoinHandle`] waits ([`join`](JoinHandle::join),
//! [`join_timeout`](JoinHandle::join_timeout)), polls
//! ([`try_join`](JoinHandle::try_join), [`is_finished`](JoinHandle::is_finished))
//! or cancels. A panic inside a task comes back as a [`JoinError`] carrying
//! the message; the worker goes on serving. A task wrapped in
//! [`with_cancel`] receives a [`Cancel`](stead_core::Cancel) token that
//! [`cancel`](JoinHandle::cancel), its deadline and shutdown fire; a task
//! cancelled before it starts never runs.
//!
//! ```
//! use stead_core::Cancel;
//! use stead_pool::{Pool, with_cancel};
//!
//! let pool = Pool::new(1)?;
//! let err = pool.submit(|| -> u32 { panic!("bad input") }).join().unwrap_err();
//! assert_eq!(err.panic_message(), Some("bad input"));
//! assert_eq!(pool.submit(|| 1).join()?, 1); // still serving
//!
//! let worker = pool.submit(with_cancel(|c: &Cancel| { c.wait(); "stopped" }));
//! let queued = pool.submit(|| unreachable!("never runs"));
//! assert!(queued.cancel());                       // removed from the queue
//! assert!(queued.join().unwrap_err().is_cancelled());
//! while !worker.is_running() { std::thread::yield_now(); }
//! worker.cancel();                                // fires its token
//! assert_eq!(worker.join()?, "stopped");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Scoped tasks
//!
//! [`Pool::scope`] runs tasks that borrow from the caller's stack; all of
//! them finish before it returns (like [`std::thread::scope`], on the pool's
//! threads).
//!
//! ```
//! let pool = stead_pool::Pool::new(2)?;
//! let data = vec![1u64, 2, 3, 4, 5, 6];
//! let (left, right) = data.split_at(3);
//! let sum = pool.scope(|s| {
//!     let a = s.spawn(|| left.iter().sum::<u64>());
//!     let b = s.spawn(|| right.iter().sum::<u64>());
//!     a.join().unwrap() + b.join().unwrap()
//! });
//! assert_eq!(sum, 21);
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # Bounded parallel map
//!
//! [`Pool::map`] is the threaded `buffered(n)`: the input is pulled lazily,
//! at most `n` items are in flight, results stream back in order.
//! [`Pool::map_unordered`] hands them back as they finish. For tiny items,
//! [`Map::batch`] runs several consecutive items per task.
//!
//! ```
//! let pool = stead_pool::Pool::new(2)?;
//! let lines = (0..1_000_000u64).map(|i| i.to_string()); // never collected
//! let total: usize = pool
//!     .map(lines, 16, |line| line.len())
//!     .map(|r| r.expect("no panics"))
//!     .take(1_000)
//!     .sum();
//! assert_eq!(total, 10 + 90 * 2 + 900 * 3);
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # No starvation
//!
//! The threaded form of "work that exists but never runs" is a pool whose
//! workers all wait on tasks still queued behind them. stead-pool prevents it
//! three ways:
//!
//! 1. A worker that joins a task of its own pool that has not started runs
//!    it inline instead of waiting.
//! 2. When every worker is blocked (inside a stead blocking call such as
//!    [`Cancel::wait`](stead_core::Cancel::wait), a join, a full-queue
//!    submit, or an explicit [`Pool::blocking`] section) while tasks are
//!    queued, the pool starts a compensating worker, up to a hard cap
//!    ([`PoolBuilder::compensation_limit`]), and logs it.
//! 3. A watchdog logs tasks that have run longer than a threshold and a
//!    queue that stopped moving; [`Pool::overdue`] and [`Stats`] report them.
//!
//! ```
//! use stead_core::Cancel;
//! use stead_pool::Pool;
//!
//! // One worker. The first task waits for a signal that only the second,
//! // queued behind it, gives: the pool starts a compensating worker.
//! let pool = Pool::new(1)?;
//! let signal = Cancel::new();
//! let s = signal.clone();
//! let waiter = pool.submit(move || s.wait());
//! let giver = pool.submit(move || signal.cancel());
//! waiter.join()?;
//! assert!(giver.join()?);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Cost
//!
//! A task is one allocation (its closure, result and state share one
//! `Arc`), one push on a bounded crossbeam channel and, for the joiner, one
//! uncontended lock. There is no pool-wide lock on the submit/run/join path:
//! thread counts live in one atomic word. Idle workers spin for a few
//! microseconds, then park; a submitter wakes a parked worker only when no
//! worker is already looking for work. A joiner spins for a few microseconds
//! (tiny tasks finish by then), then parks on a condition variable. Task
//! tokens ([`with_cancel`], deadlines) and names cost an allocation each and
//! are only made for tasks that ask.
//!
//! # Shutdown
//!
//! [`Pool::shutdown`] lets queued and running work finish within a grace
//! period, then cancels the rest and reports what it did. Dropping a pool
//! does the same with [`PoolBuilder::drop_grace`]. Either way every thread
//! is joined; none is left detached.
//!
//! ```
//! use std::time::Duration;
//! use stead_core::Cancel;
//! use stead_pool::{Pool, with_cancel};
//!
//! // No compensation here, so the queued task really has to wait.
//! let pool = Pool::builder().workers(1).compensation_limit(0).build()?;
//! let stuck = pool.submit(with_cancel(|c: &Cancel| { c.wait(); }));
//! while !stuck.is_running() { std::thread::yield_now(); }
//! let never = pool.submit(|| ());
//! let report = pool.shutdown(Duration::from_millis(50));
//! assert_eq!((report.interrupted, report.cancelled), (1, 1));
//! assert!(stuck.join().is_ok());               // it saw its token and returned
//! assert!(never.join().unwrap_err().is_cancelled());
//! # Ok::<(), std::io::Error>(())
//! ```
#![doc(test(attr(deny(warnings))))]
#![deny(unsafe_code)]

mod error;
mod handle;
mod map;
mod pool;
mod scope;
mod stats;
mod task;
mod watchdog;
mod worker;

pub use error::{JoinError, JoinTimeoutError, SubmitTimeoutError, TryJoinError, TrySubmitError};
pub use handle::JoinHandle;
pub use map::{Map, MapUnordered};
pub use pool::{Pool, PoolBuilder, PoolHandle, TaskBuilder, current};
pub use scope::{Scope, ScopedJoinHandle};
pub use stats::{ShutdownReport, Stats, TaskReport, TaskState};
pub use task::{Task, WithCancel, with_cancel};
