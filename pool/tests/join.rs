//! Join handles: join, join_timeout, try_join, is_finished; panics.

mod util;

use std::io::ErrorKind;
use std::time::Duration;

use stead_core::CancelReason;
use stead_pool::{JoinTimeoutError, Pool, TryJoinError};
use util::{Gate, HANG, within};

#[test]
fn join_returns_the_value() -> Result<(), Box<dyn std::error::Error>> {
    let pool = Pool::new(2)?;
    let h = pool.submit(|| 2 + 2);
    assert_eq!(h.join()?, 4);
    let v = vec![1, 2, 3];
    let h = pool.submit(move || v.into_iter().sum::<i32>());
    assert_eq!(h.join()?, 6);
    Ok(())
}

#[test]
fn join_timeout_hands_the_handle_back() {
    let pool = Pool::new(1).expect("pool");
    let gate = Gate::new();
    let g = gate.clone();
    let h = pool.submit(move || {
        g.wait_quietly();
        "done"
    });
    let h = match h.join_timeout(Duration::from_millis(20)) {
        Err(JoinTimeoutError::Timeout(h)) => h,
        other => panic!("expected a timeout, got {other:?}"),
    };
    assert!(!h.is_finished());
    gate.open();
    let v = within(HANG, "join", move || h.join().expect("ran"));
    assert_eq!(v, "done");
}

#[test]
fn try_join_and_is_finished() {
    let pool = Pool::new(1).expect("pool");
    let gate = Gate::new();
    let g = gate.clone();
    let h = pool.submit(move || {
        g.wait_quietly();
        7
    });
    let h = match h.try_join() {
        Err(TryJoinError::NotFinished(h)) => h,
        other => panic!("expected NotFinished, got {other:?}"),
    };
    gate.open();
    assert!(util::eventually(HANG, || h.is_finished()));
    assert_eq!(h.try_join().expect("finished"), 7);
}

#[test]
fn a_panic_is_returned_with_its_message_and_the_worker_keeps_serving() {
    let pool = Pool::builder()
        .name("panics")
        .workers(1)
        .build()
        .expect("pool");
    let n = std::hint::black_box(42);
    let h = pool.task().name("boom").submit(move || -> u32 {
        panic!("bad input: {n}");
    });
    let err = h.join().expect_err("it panicked");
    assert!(err.is_panic());
    assert!(!err.is_cancelled());
    assert_eq!(err.panic_message(), Some("bad input: 42"));
    assert_eq!(err.task_name(), Some("boom"));
    assert_eq!(err.to_string(), "task 'boom' panicked: bad input: 42");
    let payload = err.into_panic().expect("payload kept");
    assert_eq!(
        payload.downcast_ref::<String>().map(String::as_str),
        Some("bad input: 42")
    );

    // Same single worker serves on, many times.
    for i in 0..100 {
        assert_eq!(pool.submit(move || i).join().expect("ran"), i);
    }
    // A static-str panic, through io::Error.
    let err = pool
        .submit(|| panic!("static"))
        .join()
        .expect_err("panicked");
    assert_eq!(err.panic_message(), Some("static"));
    let io: std::io::Error = err.into();
    assert_eq!(io.kind(), ErrorKind::Other);
    assert!(io.to_string().contains("static"));

    let s = pool.stats();
    assert_eq!((s.panicked, s.completed), (2, 100));
    assert_eq!(s.workers, 1, "no thread was lost to the panics");
}

#[test]
fn detached_task_still_runs() {
    let pool = Pool::new(1).expect("pool");
    let (tx, rx) = crossbeam_channel::bounded(1);
    drop(pool.submit(move || tx.send(5).expect("receiver alive")));
    assert_eq!(rx.recv_timeout(HANG).expect("detached task ran"), 5);
}

#[test]
fn join_of_a_cancelled_task_says_why() {
    let pool = Pool::builder()
        .workers(1)
        .compensation_limit(0)
        .build()
        .expect("pool");
    let gate = Gate::new();
    let g = gate.clone();
    let holder = pool.submit(move || g.wait_quietly());
    let h = pool.task().name("late").submit(|| 1);
    assert!(h.cancel());
    let err = h.join().expect_err("cancelled");
    assert!(err.is_cancelled());
    assert_eq!(err.cancel_reason(), Some(CancelReason::Cancelled));
    assert_eq!(
        err.to_string(),
        "task 'late' was cancelled before it ran: operation cancelled"
    );
    gate.open();
    holder.join().expect("holder");
}
