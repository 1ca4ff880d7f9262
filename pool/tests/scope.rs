//! Scoped tasks borrowing from the caller's stack.

mod util;

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};

use stead_core::Cancel;
use stead_pool::{Pool, with_cancel};
use util::{Gate, HANG, within};

#[test]
fn tasks_borrow_shared_and_mutable_data_from_the_stack() {
    let pool = Pool::new(2).expect("pool");
    let input: Vec<u64> = (1..=1000).collect();
    let mut out = [0u64; 4];
    let counter = AtomicUsize::new(0);
    pool.scope(|s| {
        for (chunk, slot) in input.chunks(250).zip(out.iter_mut()) {
            let counter = &counter;
            s.spawn(move || {
                *slot = chunk.iter().sum();
                counter.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    // Every task finished before scope returned.
    assert_eq!(counter.load(Ordering::SeqCst), 4);
    assert_eq!(out.iter().sum::<u64>(), 500_500);
    assert_eq!(out[0], (1..=250).sum::<u64>());
}

#[test]
fn scope_returns_the_closure_value_and_handles_join() {
    let pool = Pool::new(2).expect("pool");
    let text = String::from("hello scoped world");
    let words = pool.scope(|s| {
        let a = s.spawn(|| text.split(' ').count());
        let b = s.spawn(|| text.len());
        (a.join().expect("a"), b.join().expect("b"))
    });
    assert_eq!(words, (3, 18));
}

#[test]
fn an_unjoined_panicking_task_makes_scope_panic_after_all_tasks_finish() {
    let pool = Pool::new(2).expect("pool");
    let finished = AtomicUsize::new(0);
    let r = panic::catch_unwind(AssertUnwindSafe(|| {
        pool.scope(|s| {
            s.spawn(|| panic!("task failed"));
            for _ in 0..10 {
                s.spawn(|| {
                    finished.fetch_add(1, Ordering::SeqCst);
                });
            }
        })
    }));
    let payload = r.expect_err("scope must propagate the panic");
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"task failed"));
    assert_eq!(
        finished.load(Ordering::SeqCst),
        10,
        "others still joined first"
    );
    // Pool is fine afterwards.
    assert_eq!(pool.submit(|| 1).join().expect("ran"), 1);
}

#[test]
fn a_joined_panic_is_an_error_not_a_scope_panic() {
    let pool = Pool::new(1).expect("pool");
    let msg = pool.scope(|s| {
        let h = s.spawn(|| -> u8 { panic!("handled") });
        h.join()
            .expect_err("panicked")
            .panic_message()
            .map(str::to_owned)
    });
    assert_eq!(msg.as_deref(), Some("handled"));
}

#[test]
fn a_panicking_scope_body_still_waits_for_its_tasks() {
    let pool = Pool::new(2).expect("pool");
    let done = AtomicUsize::new(0);
    let gate = Gate::new();
    let r = panic::catch_unwind(AssertUnwindSafe(|| {
        pool.scope(|s| {
            let g = gate.clone();
            let d = &done;
            s.spawn(move || {
                g.wait_quietly();
                d.fetch_add(1, Ordering::SeqCst);
            });
            gate.open();
            panic!("body failed");
        })
    }));
    assert_eq!(
        r.expect_err("propagated").downcast_ref::<&str>(),
        Some(&"body failed")
    );
    assert_eq!(done.load(Ordering::SeqCst), 1);
}

#[test]
fn scoped_tasks_can_spawn_more_and_take_a_cancel_token() {
    let pool = Pool::new(2).expect("pool");
    let total = AtomicUsize::new(0);
    pool.scope(|s| {
        for i in 0..4 {
            let total = &total;
            s.spawn(move || {
                s.spawn(move || {
                    total.fetch_add(i, Ordering::SeqCst);
                });
            });
        }
        let h = s.spawn(with_cancel(|c: &Cancel| c.is_cancelled()));
        assert!(!h.join().expect("ran"));
    });
    assert_eq!(total.load(Ordering::SeqCst), 6);
}

#[test]
fn scope_on_a_one_worker_pool_from_its_own_worker_does_not_deadlock() {
    // The only worker runs a task that opens a scope: the scope's tasks are
    // queued behind it, so the scope runs them itself while it waits.
    let pool = std::sync::Arc::new(
        Pool::builder()
            .workers(1)
            .compensation_limit(0)
            .build()
            .expect("pool"),
    );
    let p = pool.clone();
    let h = pool.submit(move || {
        let data = vec![1u32; 100];
        p.scope(|s| {
            let hs: Vec<_> = data
                .chunks(10)
                .map(|c| s.spawn(move || c.iter().sum::<u32>()))
                .collect();
            // Some joined explicitly, the rest left for the scope.
            hs.into_iter()
                .take(3)
                .map(|h| h.join().expect("ran"))
                .sum::<u32>()
        })
    });
    assert_eq!(
        within(HANG, "nested scope", move || h.join().expect("ran")),
        30
    );
    drop(pool);
}

#[test]
fn a_scope_runs_many_tasks_through_a_small_queue() {
    let pool = Pool::builder()
        .workers(2)
        .queue_capacity(64)
        .build()
        .expect("pool");
    let n = AtomicUsize::new(0);
    pool.scope(|s| {
        for _ in 0..20_000 {
            s.spawn(|| {
                n.fetch_add(1, Ordering::Relaxed);
            });
        }
    });
    assert_eq!(n.load(Ordering::Relaxed), 20_000);
    assert_eq!(pool.stats().completed, 20_000);
}
