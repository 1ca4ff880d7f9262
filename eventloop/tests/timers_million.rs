//! A million pending timers insert and cancel cheaply (no fd per timer,
//! O(1) cancel, memory returned). Alone in its binary so its CPU burst does
//! not disturb the precision tests. Speed is measured by the benches; this
//! proves it works at scale (it takes well under a second even in debug).

use std::time::{Duration, Instant};
use stead_eventloop::EventLoop;

#[test]
fn a_million_timers_insert_and_cancel() {
    let mut lp = EventLoop::new().unwrap();
    let start = Instant::now();
    let ids: Vec<_> = (0..1_000_000u64)
        .map(|i| {
            // Spread over ~1 s, 60 s ahead: nothing is due during the test.
            let d = Duration::from_secs(60) + Duration::from_nanos((i * 7919) % 1_000_000_007);
            lp.after(d, |_| panic!("a cancelled timer fired"))
        })
        .collect();
    assert_eq!(lp.timers_pending(), 1_000_000);
    let inserted = start.elapsed();
    // Cancel in an order unrelated to the deadlines.
    for id in ids.iter().rev() {
        assert!(lp.cancel_timer(*id));
    }
    assert!(!lp.cancel_timer(ids[0]), "cancelling twice is a no-op");
    assert!(!lp.timer_pending(ids[0]));
    assert_eq!(lp.timers_pending(), 0);
    eprintln!(
        "1M timers: insert {inserted:?}, cancel {:?}",
        start.elapsed() - inserted
    );
    // Nothing fires, and the loop sleeps (no timer is armed).
    lp.dispatch(Some(Duration::from_millis(10))).unwrap();
    assert_eq!(lp.stats().timers_fired, 0);
    // The structure is reusable afterwards.
    let fired = std::rc::Rc::new(std::cell::Cell::new(false));
    let f = fired.clone();
    lp.after(Duration::ZERO, move |_| f.set(true));
    while !fired.get() {
        lp.dispatch(Some(Duration::from_secs(5))).unwrap();
    }
}
