//! Signals as loop events (a `harness = false` binary: the test harness's
//! threads and its own handling must not interfere with signal delivery).
//!
//! Proves: delivery of SIGUSR1/SIGHUP to `on_signal` callbacks on the loop
//! thread, also when raised from another thread; coexistence with
//! stead-core's `shutdown_on_signals` (one SIGTERM reaches both, whatever
//! the order of installation); removal; clear errors for bad signals.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use signal_hook::consts::{SIGHUP, SIGKILL, SIGTERM, SIGUSR1, SIGUSR2};
use signal_hook::low_level::raise;
use stead_core::CancelReason;
use stead_eventloop::EventLoop;

fn main() {
    let mut lp = EventLoop::new().expect("loop");
    let seen: Rc<RefCell<Vec<i32>>> = Rc::default();

    // Bad input is an error, not a panic inside signal-hook.
    for bad in [SIGKILL, 0, -3, 1000] {
        let err = lp.on_signal(bad, |_, _| {}).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "signal {bad}");
    }

    // Ours first, then stead-core's shutdown handling for SIGINT/SIGTERM.
    for sig in [SIGUSR1, SIGHUP, SIGTERM] {
        let s = seen.clone();
        lp.on_signal(sig, move |_, got| s.borrow_mut().push(got))
            .expect("on_signal");
    }
    let usr2_seen: Rc<RefCell<u32>> = Rc::default();
    let u = usr2_seen.clone();
    let usr2 = lp
        .on_signal(SIGUSR2, move |_, _| *u.borrow_mut() += 1)
        .unwrap();
    let shutdown = stead_core::shutdown_on_signals().expect("core signal handling");
    // Bound the whole test: a child token with a deadline.
    let bounded = shutdown.child_with_timeout(Duration::from_secs(20));

    // 1. Raised on this thread.
    raise(SIGUSR1).unwrap();
    run_until(&mut lp, &bounded, || seen.borrow().contains(&SIGUSR1));

    // 2. Raised from another thread (process-directed delivery).
    std::thread::spawn(|| raise(SIGHUP).unwrap())
        .join()
        .unwrap();
    run_until(&mut lp, &bounded, || seen.borrow().contains(&SIGHUP));

    // 3. Removed callbacks are not called (the handler stays installed, so
    //    SIGUSR2's default action, terminating the process, does not happen).
    raise(SIGUSR2).unwrap();
    run_until(&mut lp, &bounded, || *usr2_seen.borrow() == 1);
    assert!(lp.remove_signal(usr2));
    assert!(!lp.remove_signal(usr2));
    raise(SIGUSR2).unwrap();
    raise(SIGUSR1).unwrap();
    let before = seen.borrow().iter().filter(|s| **s == SIGUSR1).count();
    run_until(&mut lp, &bounded, || {
        seen.borrow().iter().filter(|s| **s == SIGUSR1).count() > before
    });
    assert_eq!(*usr2_seen.borrow(), 1, "removed callback was called");

    // 4. One SIGTERM reaches both the loop's callback and stead-core's
    //    shutdown token: nobody steals the signal.
    raise(SIGTERM).unwrap();
    // `run` returns when the core's token is cancelled by its own thread.
    lp.run(&bounded).unwrap();
    assert_eq!(
        shutdown.reason(),
        Some(CancelReason::Shutdown),
        "core saw SIGTERM"
    );
    // The loop's SIGTERM callback runs in the same or the next round.
    run_until(
        &mut lp,
        &stead_core::Cancel::with_timeout(Duration::from_secs(20)),
        || seen.borrow().contains(&SIGTERM),
    );
    assert!(lp.stats().signals >= 4);
    println!("signals: ok ({} deliveries)", lp.stats().signals);
}

fn run_until(lp: &mut EventLoop, limit: &stead_core::Cancel, done: impl Fn() -> bool) {
    while !done() {
        assert!(!limit.is_cancelled(), "timed out waiting for a signal");
        lp.dispatch(Some(Duration::from_millis(200))).unwrap();
    }
}
