//! No starvation: tasks that join or wait on tasks submitted after them
//! complete instead of hanging. Each scenario runs under a deadline so a
//! regression fails instead of hanging the test suite.

mod util;

use std::sync::Arc;
use std::time::Duration;

use stead_core::Cancel;
use stead_pool::{JoinHandle, Pool, TaskState};
use util::{Gate, HANG, eventually, init_logs, logs_with, within};

/// `workers` tasks each join a task submitted *after* them (its handle
/// arrives through a channel). With compensation off, only inline joins can
/// save the pool: each worker runs the queued task it joins itself.
fn join_later_tasks(workers: usize) -> Vec<u32> {
    let pool = Pool::builder()
        .workers(workers)
        .compensation_limit(0)
        .build()
        .expect("pool");
    let mut senders = Vec::new();
    let mut joiners = Vec::new();
    for _ in 0..workers {
        let (tx, rx) = crossbeam_channel::bounded::<JoinHandle<u32>>(1);
        senders.push(tx);
        joiners.push(pool.submit(move || {
            let later = rx.recv().expect("handle arrives");
            later.join().expect("later task ran") + 1
        }));
    }
    // Every worker is now occupied by a joiner; these queue behind them.
    for (i, tx) in senders.into_iter().enumerate() {
        let i = i as u32;
        tx.send(pool.submit(move || 10 * i)).expect("joiner alive");
    }
    let out = joiners
        .into_iter()
        .map(|h| h.join().expect("joiner"))
        .collect();
    assert_eq!(
        pool.stats().compensations,
        0,
        "inline joins, not extra threads"
    );
    out
}

#[test]
fn one_worker_joining_a_later_task_runs_it_inline() {
    assert_eq!(within(HANG, "join-later-1", || join_later_tasks(1)), [1]);
}

#[test]
fn two_workers_joining_later_tasks_run_them_inline() {
    assert_eq!(
        within(HANG, "join-later-2", || join_later_tasks(2)),
        [1, 11]
    );
}

/// `workers` tasks wait (through `Cancel::wait`, a stead blocking call) for
/// signals that only tasks submitted after them give. Every worker blocks
/// while the givers are queued: the pool must start compensating workers.
fn wait_on_later_tasks(name: &str, workers: usize) -> u64 {
    init_logs();
    let pool = Pool::builder()
        .name(name)
        .workers(workers)
        .build()
        .expect("pool");
    let signals: Vec<Cancel> = (0..workers).map(|_| Cancel::new()).collect();
    let waiters: Vec<_> = signals
        .iter()
        .map(|s| {
            let s = s.clone();
            pool.submit(move || {
                s.wait();
            })
        })
        .collect();
    let givers: Vec<_> = signals
        .into_iter()
        .map(|s| pool.submit(move || s.cancel()))
        .collect();
    for h in waiters {
        h.join().expect("waiter");
    }
    for h in givers {
        assert!(h.join().expect("giver"));
    }
    pool.stats().compensations
}

#[test]
fn one_worker_waiting_on_a_later_task_gets_a_compensating_worker() {
    let started = within(HANG, "wait-later-1", || wait_on_later_tasks("starve1", 1));
    assert!(started >= 1, "a compensating worker was started");
    let logs = logs_with("pool starve1: all 1 workers are blocked");
    assert!(!logs.is_empty(), "compensation is logged");
    assert!(
        logs[0].contains("starting a compensating worker"),
        "{logs:?}"
    );
}

#[test]
fn two_workers_waiting_on_later_tasks_get_compensating_workers() {
    let started = within(HANG, "wait-later-2", || wait_on_later_tasks("starve2", 2));
    assert!(started >= 1);
}

#[test]
fn an_explicit_blocking_section_counts_as_blocked() {
    let pool = Arc::new(Pool::builder().workers(1).build().expect("pool"));
    let (tx, rx) = crossbeam_channel::bounded::<u32>(0);
    let p = pool.clone();
    // A plain channel receive is invisible to the pool unless marked.
    let waiter = pool.submit(move || p.blocking(|| rx.recv().expect("sender alive")));
    let sender = pool.submit(move || tx.send(7).expect("receiver alive"));
    let v = within(HANG, "blocking section", move || {
        sender.join().expect("sender");
        waiter.join().expect("waiter")
    });
    assert_eq!(v, 7);
    assert!(pool.stats().compensations >= 1);
}

#[test]
fn a_task_joining_its_own_subtask_on_one_worker_does_not_hang() {
    let pool = Pool::builder()
        .workers(1)
        .compensation_limit(0)
        .build()
        .expect("pool");
    let h = pool.submit(|| {
        let me = stead_pool::current().expect("on a worker");
        let subtasks: Vec<_> = (0..10u64).map(|i| me.submit(move || i * i)).collect();
        subtasks
            .into_iter()
            .map(|h| h.join().expect("subtask"))
            .sum::<u64>()
    });
    assert_eq!(
        within(HANG, "subtasks", move || h.join().expect("ran")),
        285
    );
}

#[test]
fn a_worker_blocked_on_a_full_queue_of_its_own_pool_is_compensated() {
    // One worker, one queue slot: a task that submits three subtasks to its
    // own pool blocks on the full queue, which only it could drain.
    let pool = Pool::builder()
        .workers(1)
        .queue_capacity(1)
        .build()
        .expect("pool");
    let h = pool.submit(|| {
        let me = stead_pool::current().expect("on a worker");
        let hs: Vec<_> = (1..=3u32).map(|i| me.submit(move || i)).collect();
        hs.into_iter()
            .map(|h| h.join().expect("subtask"))
            .sum::<u32>()
    });
    assert_eq!(
        within(HANG, "full own queue", move || h.join().expect("ran")),
        6
    );
    assert!(pool.stats().compensations >= 1);
}

#[test]
fn compensation_respects_its_hard_cap_and_extra_workers_retire() {
    init_logs();
    let pool = Pool::builder()
        .name("capped")
        .workers(1)
        .compensation_limit(1)
        .idle_timeout(Duration::from_millis(50))
        .build()
        .expect("pool");
    let gate = Gate::new();
    // Three tasks that block through stead: 1 worker + at most 1 compensating.
    let blocked: Vec<_> = (0..3)
        .map(|_| {
            let g = gate.clone();
            pool.submit(move || g.wait())
        })
        .collect();
    assert!(eventually(HANG, || {
        let s = pool.stats();
        s.blocked == 2 && s.queued == 1
    }));
    let s = pool.stats();
    assert_eq!((s.workers, s.compensating), (2, 1), "{s:?}");
    assert!(eventually(HANG, || !logs_with(
        "pool capped: all 2 workers are blocked"
    )
    .is_empty()));
    assert!(
        logs_with("thread cap (2) is reached")
            .iter()
            .any(|l| l.starts_with("ERROR"))
    );
    gate.open();
    within(HANG, "capped", move || {
        for h in blocked {
            h.join().expect("ran");
        }
    });
    // The compensating worker retires after the idle timeout.
    assert!(
        eventually(HANG, || pool.stats().workers == 1),
        "{:?}",
        pool.stats()
    );
    assert_eq!(pool.stats().compensating, 0);
}

#[test]
fn the_watchdog_reports_long_running_and_stalled_tasks() {
    init_logs();
    let pool = Pool::builder()
        .name("watched")
        .workers(1)
        .compensation_limit(0)
        .watchdog(Some(Duration::from_millis(40)))
        .build()
        .expect("pool");
    let gate = Gate::new();
    let g = gate.clone();
    let stuck = pool.task().name("stuck-job").submit(move || g.wait());
    let queued = pool.task().name("behind").submit(|| ());
    assert!(
        eventually(HANG, || pool.stats().overdue == 1),
        "{:?}",
        pool.stats()
    );
    let reports = pool.overdue(Duration::from_millis(40));
    assert_eq!(reports.len(), 1, "{reports:?}");
    let r = &reports[0];
    assert_eq!(r.name.as_deref(), Some("stuck-job"));
    assert_eq!(r.state, TaskState::Blocked);
    assert!(r.age >= Duration::from_millis(40));
    assert_eq!(r.worker.as_deref(), Some("watched-1"));
    assert!(eventually(HANG, || logs_with(
        "pool watched: task 'stuck-job' blocked for"
    )
    .iter()
    .any(|l| l.starts_with("WARN"))));
    assert!(eventually(HANG, || !logs_with(
        "pool watched: 1 tasks queued and none started"
    )
    .is_empty()));
    gate.open();
    within(HANG, "watched", move || {
        stuck.join().expect("stuck");
        queued.join().expect("queued");
    });
    // The queued task waited past the threshold: reported when it started.
    assert!(!logs_with("pool watched: task 'behind' waited about").is_empty());
    assert!(eventually(HANG, || pool.stats().overdue == 0));
}

#[test]
fn the_watchdog_names_the_task_a_joiner_waits_for() {
    let pool = Pool::builder()
        .workers(2)
        .watchdog(Some(Duration::from_millis(30)))
        .build()
        .expect("pool");
    let gate = Gate::new();
    let g = gate.clone();
    let slow = pool.task().name("slow").submit(move || g.wait_quietly());
    assert!(eventually(HANG, || slow.is_running()));
    let (tx, rx) = crossbeam_channel::bounded(1);
    let joiner = pool.task().name("joiner").submit(move || {
        let h: JoinHandle<()> = rx.recv().expect("handle");
        h.join().expect("slow");
    });
    tx.send(slow).expect("joiner alive");
    assert!(eventually(HANG, || pool
        .overdue(Duration::from_millis(30))
        .iter()
        .any(|r| r.name.as_deref() == Some("joiner")
            && r.state == TaskState::Blocked
            && r.waiting_for.as_deref() == Some("task 'slow'"))));
    gate.open();
    within(HANG, "joiner", move || joiner.join().expect("joiner"));
}
