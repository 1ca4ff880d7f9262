//! Cancellation of queued and running tasks; task deadlines; the pool token.

mod util;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use stead_core::{Cancel, CancelReason};
use stead_pool::{Pool, with_cancel};
use util::{Gate, HANG, within};

/// A 1-worker pool (no compensation) whose worker is held until the gate opens.
fn held() -> (Pool, Gate, stead_pool::JoinHandle<()>) {
    let pool = Pool::builder()
        .workers(1)
        .compensation_limit(0)
        .build()
        .expect("pool");
    let gate = Gate::new();
    let g = gate.clone();
    let holder = pool.submit(move || g.wait_quietly());
    assert!(util::eventually(HANG, || holder.is_running()));
    (pool, gate, holder)
}

#[test]
fn a_cancelled_queued_task_never_runs_and_its_closure_is_dropped_at_once() {
    let (pool, gate, holder) = held();
    let ran = Arc::new(AtomicBool::new(false));
    let captured = util::tracker();
    let (r, c) = (ran.clone(), captured.clone());
    let h = pool.submit(move || {
        let _keep = c;
        r.store(true, Ordering::SeqCst);
    });
    assert_eq!(Arc::strong_count(&captured), 2);
    assert!(h.cancel(), "still queued, so it is removed");
    // The closure and its captures are gone right away, not when popped.
    assert_eq!(Arc::strong_count(&captured), 1);
    assert!(!h.cancel(), "second cancel is a no-op");
    assert!(h.is_finished());

    gate.open();
    holder.join().expect("holder");
    // A task queued after it runs, proving the worker went past the dead entry.
    pool.submit(|| ()).join().expect("later task");
    assert!(
        !ran.load(Ordering::SeqCst),
        "a cancelled task must never run"
    );
    assert!(h.join().expect_err("cancelled").is_cancelled());
    assert!(util::eventually(HANG, || pool.stats().cancelled == 1));
}

#[test]
fn a_running_task_sees_its_cancel() {
    let pool = Pool::new(1).expect("pool");
    let h = pool.submit(with_cancel(|c: &Cancel| {
        // Would sleep an hour; returns when cancelled.
        let r = c.sleep(Duration::from_secs(3600));
        (r.map_err(|e| e.reason()), c.reason())
    }));
    assert!(util::eventually(HANG, || h.is_running()));
    assert!(!h.cancel(), "already running: not removed, but signalled");
    let (r, reason) = within(HANG, "cancelled task", move || h.join().expect("returned"));
    assert_eq!(r, Err(CancelReason::Cancelled));
    assert_eq!(reason, Some(CancelReason::Cancelled));
}

#[test]
fn a_task_deadline_cancels_it_in_the_queue_and_while_running() {
    let (pool, gate, holder) = held();
    // Queued past its deadline: never runs.
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    let stale = pool
        .task()
        .timeout(Duration::from_millis(10))
        .submit(move || r.store(true, Ordering::SeqCst));
    let pause = Cancel::new();
    let _ = pause.sleep(Duration::from_millis(20)); // let the deadline pass
    gate.open();
    holder.join().expect("holder");
    let err = stale.join().expect_err("expired in the queue");
    assert_eq!(err.cancel_reason(), Some(CancelReason::DeadlineExceeded));
    assert!(!ran.load(Ordering::SeqCst));

    // Running past its deadline: its token fires.
    let t0 = Instant::now();
    let h = pool
        .task()
        .timeout(Duration::from_millis(30))
        .submit(with_cancel(|c: &Cancel| c.wait()));
    assert_eq!(
        within(HANG, "deadline", move || h.join().expect("ran")),
        CancelReason::DeadlineExceeded
    );
    assert!(t0.elapsed() >= Duration::from_millis(30));
}

#[test]
fn the_pool_token_is_the_parent_of_task_tokens() {
    let root = Cancel::new();
    let pool = Pool::builder()
        .workers(2)
        .cancel_parent(&root)
        .build()
        .expect("pool");
    let seen = Arc::new(AtomicUsize::new(0));
    let hs: Vec<_> = (0..2)
        .map(|_| {
            let s = seen.clone();
            pool.submit(with_cancel(move |c: &Cancel| {
                s.fetch_add(1, Ordering::SeqCst);
                c.wait()
            }))
        })
        .collect();
    assert!(util::eventually(HANG, || seen.load(Ordering::SeqCst) == 2));
    root.shutdown(); // e.g. the process's signal token
    for h in hs {
        assert_eq!(h.join().expect("ran"), CancelReason::Shutdown);
    }
    assert!(pool.cancel_token().is_cancelled());
    // Plain tasks do not depend on the token and still run.
    assert_eq!(pool.submit(|| 1).join().expect("plain task"), 1);
    // Token-taking tasks submitted now are born cancelled and skipped.
    let h = pool.submit(with_cancel(|_c: &Cancel| 1));
    assert_eq!(
        h.join().expect_err("skipped").cancel_reason(),
        Some(CancelReason::Shutdown)
    );
}

#[test]
fn cancel_after_finish_is_a_no_op() {
    let pool = Pool::new(1).expect("pool");
    let h = pool.submit(|| 3);
    assert!(util::eventually(HANG, || h.is_finished()));
    assert!(!h.cancel());
    assert_eq!(h.join().expect("value kept"), 3);
}

/// Cancel races with workers claiming the same tasks: every task either
/// ran exactly once (and `cancel` said `false`) or never ran (and `cancel`
/// said `true`), and `join` agrees.
#[test]
fn cancel_racing_with_workers_runs_each_task_at_most_once() {
    let pool = Pool::builder()
        .workers(2)
        .queue_capacity(64)
        .build()
        .expect("pool");
    let runs: Arc<Vec<AtomicUsize>> = Arc::new((0..5_000).map(|_| AtomicUsize::new(0)).collect());
    within(HANG, "cancel race", move || {
        let mut handles = std::collections::VecDeque::new();
        let mut outcomes = Vec::new();
        for i in 0..5_000 {
            let r = runs.clone();
            handles.push_back((i, pool.submit(move || r[i].fetch_add(1, Ordering::SeqCst))));
            if handles.len() > 8 {
                let (i, h) = handles.pop_front().expect("non-empty");
                let removed = h.cancel();
                outcomes.push((i, removed, h.join()));
            }
        }
        for (i, h) in handles {
            outcomes.push((i, false, h.join()));
        }
        let mut cancelled = 0;
        for (i, removed, joined) in outcomes {
            let n = runs[i].load(Ordering::SeqCst);
            if removed {
                cancelled += 1;
                assert_eq!(n, 0, "task {i} was cancelled but ran");
                assert!(joined.expect_err("cancelled").is_cancelled());
            } else {
                assert_eq!(n, 1, "task {i} should have run once");
                assert_eq!(joined.expect("ran"), 0);
            }
        }
        let s = pool.stats();
        assert_eq!(s.completed + cancelled, 5_000, "{s:?}");
    });
}
