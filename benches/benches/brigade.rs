//! The "bucket brigade": 500 stages linked by pipes, one byte passed from
//! the head to the tail, one message at a time.
//!
//! - `threads`: 500 OS threads (64 KiB stacks), each blocked in `read` on its
//!   pipe; the bench thread writes the head and reads the tail.
//! - `tokio_ct`: 500 tasks over `tokio::net::unix::pipe` on a current-thread runtime.
//! - `tokio_mt2`: the same on a multi-thread runtime with 2 workers.
//!
//! criterion's time is per message (500 hops); the group's throughput is set
//! to 500 elements, so the reported elements/s are hops/s. The README lists
//! ns per hop = time per message / 500.

use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use stead_benches::{ThreadBrigade, tokio_side};

mod common;

const STAGES: usize = 500;

fn brigade(c: &mut Criterion) {
    let mut g = c.benchmark_group("brigade");
    g.throughput(Throughput::Elements(STAGES as u64));
    {
        let mut b500 = ThreadBrigade::new(STAGES).expect("spawn the stages");
        g.bench_function("threads", |b| {
            b.iter_custom(|n| {
                let start = Instant::now();
                for i in 0..n {
                    assert_eq!(b500.pass(i as u8).expect("pass"), i as u8);
                }
                start.elapsed()
            })
        });
    }
    let ct = tokio_side::current_thread().expect("runtime");
    g.bench_function("tokio_ct", |b| {
        b.iter_custom(|n| tokio_side::brigade(&ct, STAGES, n).expect("brigade"))
    });
    let mt = tokio_side::multi_thread(2).expect("runtime");
    g.bench_function("tokio_mt2", |b| {
        b.iter_custom(|n| tokio_side::brigade(&mt, STAGES, n).expect("brigade"))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = brigade
}
criterion_main!(benches);
