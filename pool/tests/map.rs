//! The bounded parallel map, ordered and unordered.

mod util;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use stead_pool::Pool;
use util::{HANG, within};

/// Counts items pulled from the input and items in flight (pulled, not yet
/// handed back), and records the peak of the latter.
#[derive(Default)]
struct Meter {
    pulled: AtomicUsize,
    peak: AtomicUsize,
}

impl Meter {
    fn pull(&self, returned: usize) {
        let pulled = self.pulled.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak.fetch_max(pulled - returned, Ordering::Relaxed);
    }
}

/// Feed `n` items through an ordered map and check order, laziness and the
/// bound on outstanding items (pulled from the input, not yet returned to the
/// consumer), which is what bounds memory whatever the input's length.
fn ordered_stream(n: u64, limit: usize, batch: usize) -> usize {
    let pool = Pool::builder()
        .name("ordered")
        .workers(2)
        .build()
        .expect("pool");
    let meter = Arc::new(Meter::default());
    let returned = Arc::new(AtomicUsize::new(0));
    let (m, r) = (meter.clone(), returned.clone());
    let input = (0..n).inspect(move |_| m.pull(r.load(Ordering::Relaxed)));
    let t0 = Instant::now();
    let mut expected = 0u64;
    let mut max_in_flight = 0;
    let mut map = pool.map(input, limit, |x| x.wrapping_mul(3)).batch(batch);
    while let Some(out) = map.next() {
        assert_eq!(
            out.expect("no panics"),
            expected.wrapping_mul(3),
            "out of order"
        );
        expected += 1;
        returned.fetch_add(1, Ordering::Relaxed);
        max_in_flight = max_in_flight.max(map.in_flight());
    }
    assert_eq!(expected, n);
    assert_eq!(meter.pulled.load(Ordering::Relaxed), n as usize);
    let peak = meter.peak.load(Ordering::Relaxed);
    assert!(peak <= limit, "peak outstanding {peak} > limit {limit}");
    assert!(max_in_flight <= limit);
    eprintln!(
        "{n} ordered items (limit {limit}, batch {batch}) in {:?}, peak outstanding {peak}",
        t0.elapsed()
    );
    peak
}

/// 10 million items. Memory is bounded by the limit (256 items), which the
/// meter proves by counting items pulled but not yet returned. Items go to
/// workers in batches of 32 so that the test runs in seconds in a debug
/// build; the per-item path is covered by the next test.
#[test]
fn ordered_map_streams_10m_items_in_order_with_bounded_memory() {
    let peak = ordered_stream(10_000_000, 256, 32);
    assert!(
        peak > 32,
        "several batches were in flight at once (peak {peak})"
    );
}

/// One task per item (the default).
#[test]
fn ordered_map_per_item_streams_in_order_within_the_limit() {
    let peak = ordered_stream(100_000, 16, 1);
    assert!(peak >= 2, "items ran in parallel (peak {peak})");
}

#[test]
fn ordered_map_pulls_input_lazily() {
    let pool = Pool::new(2).expect("pool");
    let pulled = Arc::new(AtomicUsize::new(0));
    let p = pulled.clone();
    // An endless input: only bounded look-ahead may be pulled.
    let input = (0u64..).inspect(move |_| {
        p.fetch_add(1, Ordering::SeqCst);
    });
    let mut m = pool.map(input, 4, |x| x + 1);
    assert_eq!(
        pulled.load(Ordering::SeqCst),
        0,
        "nothing pulled before the first next()"
    );
    let first: Vec<u64> = m.by_ref().take(10).map(|r| r.expect("ok")).collect();
    assert_eq!(first, (1..=10).collect::<Vec<_>>());
    assert!(m.in_flight() <= 4);
    assert!(pulled.load(Ordering::SeqCst) <= 10 + 4);
    drop(m); // cancels what is queued
}

#[test]
fn unordered_map_returns_everything_within_the_limit() {
    let pool = Pool::new(2).expect("pool");
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (r, p) = (running.clone(), peak.clone());
    let mut got: Vec<u64> = pool
        .map_unordered(0..5_000u64, 3, move |x| {
            let now = r.fetch_add(1, Ordering::SeqCst) + 1;
            p.fetch_max(now, Ordering::SeqCst);
            r.fetch_sub(1, Ordering::SeqCst);
            x * 2
        })
        .map(|r| r.expect("no panics"))
        .collect();
    got.sort_unstable();
    assert_eq!(got, (0..5_000u64).map(|x| x * 2).collect::<Vec<_>>());
    assert!(peak.load(Ordering::SeqCst) <= 3);
}

#[test]
fn a_panicking_item_is_reported_in_place_and_the_stream_goes_on() {
    let pool = Pool::new(2).expect("pool");
    let out: Vec<_> = pool
        .map(0..6u32, 2, |x| {
            if x == 3 { panic!("item {x} is bad") } else { x }
        })
        .collect();
    assert_eq!(out.len(), 6);
    for (i, r) in out.iter().enumerate() {
        match r {
            Ok(v) => assert_eq!(*v as usize, i),
            Err(e) => {
                assert_eq!(i, 3);
                assert_eq!(e.panic_message(), Some("item 3 is bad"));
            }
        }
    }
    let mut un: Vec<_> = pool
        .map_unordered(0..6u32, 2, |x| if x == 3 { panic!("bad") } else { x })
        .collect();
    un.sort_by_key(|r| r.as_ref().map_or(u32::MAX, |v| *v));
    assert_eq!(un.iter().filter(|r| r.is_err()).count(), 1);
    assert_eq!(
        un.last()
            .and_then(|r| r.as_ref().err())
            .and_then(|e| e.panic_message()),
        Some("bad")
    );
}

#[test]
fn a_map_consumed_on_a_worker_of_the_same_pool_does_not_starve() {
    // One worker, no compensation: the consumer occupies the only worker,
    // so its items must be run inline by the consumer itself.
    let pool = Arc::new(
        Pool::builder()
            .workers(1)
            .compensation_limit(0)
            .build()
            .expect("pool"),
    );
    let p = pool.clone();
    let h = pool.submit(move || {
        let ordered: u64 = p.map(0..100u64, 8, |x| x).map(|r| r.expect("ok")).sum();
        let unordered: u64 = p
            .map_unordered(0..100u64, 8, |x| x)
            .map(|r| r.expect("ok"))
            .sum();
        (ordered, unordered)
    });
    assert_eq!(
        within(HANG, "map on worker", move || h.join().expect("ran")),
        (4950, 4950)
    );
}
