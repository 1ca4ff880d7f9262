//! Cancellation tokens: `stead_core::Cancel` vs `tokio_util::sync::CancellationToken`.
//!
//! - `new`: make a root token and drop it.
//! - `child`: make a child of a live root and drop it (link + unlink).
//! - `check`: ask a live token whether it is cancelled (the per-operation cost).
//! - `check_deadline`: the same on a token with a (far) deadline; stead reads
//!   the clock on every check. tokio's token has no deadline, so its column is
//!   the hand-written equivalent `is_cancelled() || Instant::now() >= deadline`.
//! - `cancel_with_child`: make a root with one child, cancel the root (which
//!   cancels the child), drop both.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use stead_core::Cancel;
use tokio_util::sync::CancellationToken;

mod common;

fn cancel(c: &mut Criterion) {
    let mut g = c.benchmark_group("cancel");

    g.bench_function("new/stead", |b| b.iter(|| black_box(Cancel::new())));
    g.bench_function("new/tokio", |b| {
        b.iter(|| black_box(CancellationToken::new()))
    });

    let root = Cancel::new();
    g.bench_function("child/stead", |b| b.iter(|| black_box(root.child())));
    let troot = CancellationToken::new();
    g.bench_function("child/tokio", |b| b.iter(|| black_box(troot.child_token())));

    let live = root.child();
    g.bench_function("check/stead", |b| {
        b.iter(|| black_box(&live).check().is_ok())
    });
    let tlive = troot.child_token();
    g.bench_function("check/tokio", |b| {
        b.iter(|| !black_box(&tlive).is_cancelled())
    });

    let far = Duration::from_secs(3600);
    let timed = root.child_with_timeout(far);
    g.bench_function("check_deadline/stead", |b| {
        b.iter(|| black_box(&timed).check().is_ok())
    });
    let deadline = Instant::now() + far;
    g.bench_function("check_deadline/tokio", |b| {
        b.iter(|| {
            let t = black_box(&tlive);
            !(t.is_cancelled() || Instant::now() >= black_box(deadline))
        })
    });

    g.bench_function("cancel_with_child/stead", |b| {
        b.iter(|| {
            let r = Cancel::new();
            let c = r.child();
            r.cancel();
            assert!(c.is_cancelled());
        })
    });
    g.bench_function("cancel_with_child/tokio", |b| {
        b.iter(|| {
            let r = CancellationToken::new();
            let c = r.child_token();
            r.cancel();
            assert!(c.is_cancelled());
        })
    });
    g.finish();
    assert_eq!(
        root.child_count(),
        2,
        "bench children were unlinked on drop"
    );
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = cancel
}
criterion_main!(benches);
