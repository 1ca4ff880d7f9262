//! Submission: backpressure, try_submit, timeouts, builder validation.

mod util;

use std::io::ErrorKind;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use stead_pool::{Pool, SubmitTimeoutError, TrySubmitError};
use util::{Gate, HANG, within};

/// A 1-worker pool whose worker is held by a task until `gate` opens, with
/// `queued` more tasks filling a queue of `cap`.
fn busy_pool(cap: usize) -> (Arc<Pool>, Gate, stead_pool::JoinHandle<()>) {
    let pool = Arc::new(
        Pool::builder()
            .name("busy")
            .workers(1)
            .queue_capacity(cap)
            .compensation_limit(0)
            .build()
            .expect("pool"),
    );
    let gate = Gate::new();
    let g = gate.clone();
    let holder = pool.submit(move || g.wait_quietly());
    assert!(util::eventually(HANG, || holder.is_running()));
    (pool, gate, holder)
}

#[test]
fn full_queue_blocks_submitter_until_a_slot_frees() {
    let (pool, gate, holder) = busy_pool(2);
    let a = pool.submit(|| 1);
    let b = pool.submit(|| 2);
    assert_eq!(pool.stats().queued, 2);

    // A third submission must block: run it on another thread and show it
    // has not returned while the queue stays full.
    let submitted = Arc::new(AtomicUsize::new(0));
    let started = Arc::new(Barrier::new(2));
    let (p, s, st) = (pool.clone(), submitted.clone(), started.clone());
    let submitter = std::thread::spawn(move || {
        st.wait();
        let h = p.submit(|| 3);
        s.store(1, Ordering::SeqCst);
        h.join().expect("third task")
    });
    started.wait();
    // It cannot get in while the worker is held and the queue is full.
    assert!(!util::eventually(Duration::from_millis(100), || submitted
        .load(Ordering::SeqCst)
        == 1));
    assert_eq!(pool.stats().queued, 2);

    gate.open(); // the worker frees, drains the queue, the submitter gets in
    assert_eq!(
        within(HANG, "submitter", move || submitter.join().expect("thread")),
        3
    );
    assert_eq!(submitted.load(Ordering::SeqCst), 1);
    holder.join().expect("holder");
    assert_eq!((a.join().expect("a"), b.join().expect("b")), (1, 2));
}

#[test]
fn try_submit_hands_the_task_back_when_full() {
    let (pool, gate, holder) = busy_pool(1);
    let queued = pool.submit(|| "queued");
    let captured = String::from("payload");
    let err = pool
        .try_submit(move || captured.len())
        .expect_err("queue is full");
    assert!(err.is_full());
    assert_eq!(err.to_string(), "submitting to a full pool queue");
    let task = err.into_inner();
    assert_eq!(task(), 7, "the very closure comes back, captures intact");
    assert_eq!(pool.stats().rejected, 1);

    // The io::Error conversion says WouldBlock.
    let e: std::io::Error = pool.try_submit(|| ()).expect_err("still full").into();
    assert_eq!(e.kind(), ErrorKind::WouldBlock);

    gate.open();
    holder.join().expect("holder");
    assert_eq!(queued.join().expect("queued"), "queued");
    // Room again.
    let h = pool.try_submit(|| 5).expect("room");
    assert_eq!(h.join().expect("ran"), 5);
}

#[test]
fn try_submit_with_cancel_task_comes_back_wrapped() {
    let (pool, gate, holder) = busy_pool(1);
    let _queued = pool.submit(|| ());
    match pool.try_submit(stead_pool::with_cancel(|_c: &stead_core::Cancel| 9)) {
        Err(TrySubmitError::Full(task)) => {
            let f = task.into_inner();
            assert_eq!(f(&stead_core::Cancel::new()), 9);
        }
        other => panic!("expected Full, got {other:?}"),
    }
    gate.open();
    holder.join().expect("holder");
}

#[test]
fn submit_timeout_gives_up_and_returns_the_task() {
    let (pool, gate, holder) = busy_pool(1);
    let _queued = pool.submit(|| ());
    let t0 = Instant::now();
    match pool.submit_timeout(|| 42, Duration::from_millis(30)) {
        Err(SubmitTimeoutError::Timeout(f)) => assert_eq!(f(), 42),
        other => panic!("expected a timeout, got {other:?}"),
    }
    let waited = t0.elapsed();
    // It waited for the deadline (lower bound is exact; no upper bound
    // asserted beyond "did not hang").
    assert!(waited >= Duration::from_millis(30), "waited {waited:?}");
    let past = Instant::now() - Duration::from_millis(1);
    let e = pool
        .submit_deadline(|| (), past)
        .expect_err("deadline already passed");
    assert!(e.is_timeout());
    let io: std::io::Error = e.into();
    assert_eq!(io.kind(), ErrorKind::TimedOut);
    assert_eq!(pool.stats().rejected, 2);
    gate.open();
    holder.join().expect("holder");
    // With room, it queues at once.
    let h = pool
        .submit_timeout(|| 1, Duration::from_secs(5))
        .expect("room");
    assert_eq!(h.join().expect("ran"), 1);
}

#[test]
fn threads_are_named_and_tasks_can_be_named() {
    let pool = Pool::builder()
        .name("namer")
        .workers(2)
        .build()
        .expect("pool");
    let name = pool
        .submit(|| std::thread::current().name().map(str::to_owned))
        .join()
        .expect("ran")
        .expect("named thread");
    assert!(name == "namer-1" || name == "namer-2", "{name}");
    assert_eq!(pool.name(), "namer");
    let h = pool.task().name("resize").submit(|| 1);
    assert_eq!(h.name(), Some("resize"));
    assert_eq!(h.join().expect("ran"), 1);
}

#[test]
fn builder_rejects_bad_configuration_with_clear_errors() {
    let cases = [
        (Pool::builder().workers(0), "at least one worker"),
        (
            Pool::builder().workers(2).queue_capacity(0),
            "queue capacity",
        ),
        (Pool::builder().workers(4).max_workers(2), "below workers"),
        (
            Pool::builder().workers(1).max_workers(1 << 20),
            "above the limit",
        ),
        (
            Pool::builder().workers(1).watchdog(Some(Duration::ZERO)),
            "watchdog",
        ),
    ];
    for (builder, needle) in cases {
        let err = builder.build().expect_err(needle);
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(err.to_string().contains(needle), "{err}");
    }
    assert_eq!(
        Pool::new(0).expect_err("zero").kind(),
        ErrorKind::InvalidInput
    );
}

#[test]
fn many_tasks_from_many_threads_all_run_once() {
    let pool = Arc::new(
        Pool::builder()
            .workers(2)
            .queue_capacity(8)
            .build()
            .expect("pool"),
    );
    let count = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (pool, count) = (pool.clone(), count.clone());
            std::thread::spawn(move || {
                let hs: Vec<_> = (0..2_000)
                    .map(|i| {
                        let c = count.clone();
                        pool.submit(move || {
                            c.fetch_add(1, Ordering::Relaxed);
                            i
                        })
                    })
                    .collect();
                hs.into_iter()
                    .map(|h| h.join().expect("ran"))
                    .sum::<usize>()
            })
        })
        .collect();
    let sums = within(HANG, "submitters", move || {
        threads
            .into_iter()
            .map(|t| t.join().expect("thread"))
            .collect::<Vec<_>>()
    });
    assert!(sums.iter().all(|&s| s == (0..2_000).sum::<usize>()));
    assert_eq!(count.load(Ordering::Relaxed), 8_000);
    let s = pool.stats();
    assert_eq!(s.completed, 8_000);
    assert_eq!(s.queued, 0);
}
