//! Shutdown reports, drop, and no threads left behind.

mod util;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use stead_core::{Cancel, CancelReason};
use stead_pool::{Pool, with_cancel};
use util::{Gate, HANG, eventually, threads_named, within};

#[test]
fn shutdown_finishes_queued_work_within_the_grace_period() {
    let pool = Pool::builder()
        .name("sd-clean")
        .workers(2)
        .build()
        .expect("pool");
    let ran = Arc::new(AtomicUsize::new(0));
    let gate = Gate::new();
    let g = gate.clone();
    let first = pool.submit(move || g.wait_quietly());
    for _ in 0..50 {
        let r = ran.clone();
        drop(pool.submit(move || {
            r.fetch_add(1, Ordering::SeqCst);
        }));
    }
    gate.open();
    let report = within(HANG, "clean shutdown", move || pool.shutdown(HANG));
    assert!(report.is_clean(), "{report:?}");
    assert!(report.within_grace);
    assert_eq!((report.cancelled, report.interrupted), (0, 0));
    assert_eq!(
        ran.load(Ordering::SeqCst),
        50,
        "queued work ran before shutdown returned"
    );
    assert!(report.completed <= 51);
    first.join().expect("first");
    assert!(
        threads_named("sd-clean").is_empty(),
        "{:?}",
        threads_named("sd-clean")
    );
}

#[test]
fn shutdown_cancels_what_the_grace_period_cannot_finish_and_reports_it() {
    let pool = Pool::builder()
        .name("sd-late")
        .workers(2)
        .compensation_limit(0)
        .build()
        .expect("pool");
    // Two running tasks that end only when their token fires...
    let running: Vec<_> = (0..2)
        .map(|_| pool.submit(with_cancel(|c: &Cancel| c.wait())))
        .collect();
    assert!(eventually(HANG, || running.iter().all(|h| h.is_running())));
    // ...and three queued behind them that never get a worker.
    let dropped = util::tracker();
    let queued: Vec<_> = (0..3)
        .map(|_| {
            let d = dropped.clone();
            pool.submit(move || drop(d))
        })
        .collect();
    let report = within(HANG, "late shutdown", move || {
        pool.shutdown(Duration::from_millis(50))
    });
    assert!(!report.within_grace);
    assert!(!report.is_clean());
    assert_eq!(report.cancelled, 3, "{report:?}");
    assert_eq!(report.interrupted, 2, "{report:?}");
    assert_eq!(report.completed, 2, "the interrupted tasks returned");
    assert!(report.elapsed >= Duration::from_millis(50));
    for h in running {
        assert_eq!(h.join().expect("returned"), CancelReason::Shutdown);
    }
    for h in queued {
        assert_eq!(
            h.join().expect_err("never ran").cancel_reason(),
            Some(CancelReason::Shutdown)
        );
    }
    assert_eq!(
        Arc::strong_count(&dropped),
        1,
        "cancelled closures were dropped"
    );
    assert!(threads_named("sd-late").is_empty());
}

#[test]
fn dropping_the_pool_joins_every_thread() {
    let alive = util::tracker();
    {
        let pool = Pool::builder()
            .name("sd-drop")
            .workers(3)
            .max_workers(4)
            .watchdog(Some(Duration::from_secs(1)))
            .build()
            .expect("pool");
        // Threads name themselves when they start.
        assert!(
            eventually(HANG, || threads_named("sd-drop").len() == 4),
            "3 workers + the watchdog: {:?}",
            threads_named("sd-drop")
        );
        for _ in 0..20 {
            let a = alive.clone();
            drop(pool.submit(move || drop(a)));
        }
        within(HANG, "drop", move || drop(pool));
    }
    assert!(
        threads_named("sd-drop").is_empty(),
        "{:?}",
        threads_named("sd-drop")
    );
    assert_eq!(Arc::strong_count(&alive), 1);
}

#[test]
fn handles_submitting_after_shutdown_get_cancelled_tasks_back() {
    let pool = Pool::new(1).expect("pool");
    let handle = pool.handle();
    assert!(!handle.is_shutdown());
    assert_eq!(handle.submit(|| 1).join().expect("ran"), 1);
    let report = pool.shutdown(HANG);
    assert!(report.is_clean());
    assert!(handle.is_shutdown());
    let err = handle.submit(|| 2).join().expect_err("pool is gone");
    assert_eq!(err.cancel_reason(), Some(CancelReason::Shutdown));
    match handle.try_submit(|| 3) {
        Err(e) if e.is_shutdown() => assert_eq!(e.into_inner()(), 3),
        other => panic!("expected Shutdown, got {other:?}"),
    }
    let e = handle
        .submit_timeout(|| 4, Duration::from_millis(10))
        .expect_err("pool is gone");
    assert!(e.is_shutdown());
    assert!(handle.stats().closed);
}

#[test]
fn a_pool_dropped_by_its_own_task_does_not_deadlock() {
    let pool = Pool::builder()
        .name("sd-self")
        .workers(1)
        .build()
        .expect("pool");
    let (tx, rx) = crossbeam_channel::bounded::<Pool>(1);
    let h = pool.submit(move || {
        let me = rx.recv().expect("pool arrives");
        drop(me); // shuts down its own pool from its worker
        "dropped"
    });
    tx.send(pool).expect("task alive");
    assert_eq!(
        within(HANG, "self drop", move || h.join().expect("ran")),
        "dropped"
    );
    assert!(eventually(HANG, || threads_named("sd-self").is_empty()));
}

#[test]
fn elastic_pools_grow_under_backlog_and_shrink_when_idle() {
    let pool = Pool::builder()
        .name("elastic")
        .workers(1)
        .max_workers(3)
        .idle_timeout(Duration::from_millis(50))
        .build()
        .expect("pool");
    let gate = Gate::new();
    let hs: Vec<_> = (0..6)
        .map(|_| {
            let g = gate.clone();
            pool.submit(move || g.wait_quietly())
        })
        .collect();
    assert!(
        eventually(HANG, || pool.stats().running == 3),
        "{:?}",
        pool.stats()
    );
    let s = pool.stats();
    assert_eq!(s.workers, 3, "grew to max_workers, not beyond: {s:?}");
    assert_eq!(s.compensating, 0);
    gate.open();
    within(HANG, "elastic", move || {
        for h in hs {
            h.join().expect("ran");
        }
    });
    assert!(
        eventually(HANG, || pool.stats().workers == 1),
        "{:?}",
        pool.stats()
    );
    // The retired threads exit right after they leave the count.
    let workers = || {
        threads_named("elastic-")
            .iter()
            .filter(|n| !n.contains("watch"))
            .count()
    };
    assert!(
        eventually(HANG, || workers() == 1),
        "{:?}",
        threads_named("elastic-")
    );
}
