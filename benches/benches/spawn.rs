//! Spawn (or submit) a tiny task and wait for its result.
//!
//! - `one/*`: one task at a time: spawn, then join, repeat (latency).
//! - `batch256/*`: spawn 256 tasks, then join them all (throughput; criterion
//!   reports elements/s, and time per iteration / 256 is the cost per task).
//!
//! Sides:
//! - `std_thread`: `std::thread::spawn` + `join` (a fresh OS thread per task).
//! - `threadpool`: the `threadpool` crate (2 workers), `execute` + a
//!   crossbeam channel to carry the result back.
//! - `tokio_mt2`: `tokio::spawn` + `.await` from inside a task of a
//!   multi-thread runtime with 2 workers (the usual shape of tokio code).
//! - `tokio_ct`: the same on a current-thread runtime.
//!
// TODO(stead-pool): add `stead_pool` submit + join here once the crate
// lands, on the same inputs (2 workers, same batch size).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use stead_benches::tokio_side;
use tokio::runtime::Runtime;

mod common;

const BATCH: u64 = 256;

/// Time `iters` rounds of `batch` spawns followed by `batch` joins, run
/// inside a task of `rt`.
fn tokio_spawn_join(rt: &Runtime, iters: u64, batch: u64) -> Duration {
    rt.block_on(async move {
        tokio::spawn(async move {
            let mut handles = Vec::with_capacity(batch as usize);
            let start = Instant::now();
            for _ in 0..iters {
                for i in 0..batch {
                    handles.push(tokio::spawn(async move { black_box(i) }));
                }
                for h in handles.drain(..) {
                    black_box(h.await.expect("task ran"));
                }
            }
            start.elapsed()
        })
        .await
        .expect("driver task ran")
    })
}

fn std_spawn_join(batch: u64) {
    let handles: Vec<_> = (0..batch)
        .map(|i| std::thread::spawn(move || black_box(i)))
        .collect();
    for h in handles {
        black_box(h.join().expect("thread ran"));
    }
}

fn pool_submit_join(
    pool: &threadpool::ThreadPool,
    tx: &crossbeam_channel::Sender<u64>,
    rx: &crossbeam_channel::Receiver<u64>,
    batch: u64,
) {
    for i in 0..batch {
        let tx = tx.clone();
        pool.execute(move || tx.send(black_box(i)).expect("receiver alive"));
    }
    for _ in 0..batch {
        black_box(rx.recv().expect("task ran"));
    }
}

fn spawn(c: &mut Criterion) {
    let mt = tokio_side::multi_thread(2).expect("runtime");
    let ct = tokio_side::current_thread().expect("runtime");
    let pool = threadpool::Builder::new()
        .num_threads(2)
        .thread_name("bench-threadpool".into())
        .build();
    let (tx, rx) = crossbeam_channel::bounded::<u64>(BATCH as usize);

    for (name, batch) in [("one", 1), ("batch256", BATCH)] {
        let mut g = c.benchmark_group(format!("spawn/{name}"));
        g.throughput(Throughput::Elements(batch));
        g.bench_function("std_thread", |b| b.iter(|| std_spawn_join(batch)));
        g.bench_function("threadpool", |b| {
            b.iter(|| pool_submit_join(&pool, &tx, &rx, batch))
        });
        g.bench_function("tokio_mt2", |b| {
            b.iter_custom(|iters| tokio_spawn_join(&mt, iters, batch))
        });
        g.bench_function("tokio_ct", |b| {
            b.iter_custom(|iters| tokio_spawn_join(&ct, iters, batch))
        });
        g.finish();
    }
    pool.join();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = spawn
}
criterion_main!(benches);
