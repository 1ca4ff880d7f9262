//! stead-pool against tokio on the same work.
//!
//! - `submit_join/*`: one tiny task submitted and joined, from inside a task
//!   of the pool / runtime (the shape of code that fans out work), 2 workers.
//! - `throughput_1m/*`: 1,000,000 tiny fire-and-forget tasks, then wait for
//!   all of them (a shared counter + one completion signal), 2 workers.
//! - `bounded_map/*`: 100,000 items through a bounded parallel map with 64 in
//!   flight, results in order: `Pool::map` vs
//!   `futures::stream::iter(..).map(tokio::spawn).buffered(64)`.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures::StreamExt;
use stead_pool::Pool;

mod common;

fn tokio_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn stead_pool() -> Pool {
    Pool::builder()
        .name("bench")
        .workers(2)
        .queue_capacity(4096)
        .build()
        .expect("pool")
}

fn submit_join(c: &mut Criterion) {
    let mut g = c.benchmark_group("submit_join");
    let pool = stead_pool();
    g.bench_function("stead_pool", |b| {
        b.iter_custom(|iters| {
            // Measured inside a pool task, as the tokio side runs inside a task.
            let h = pool.handle();
            pool.submit(move || {
                let start = Instant::now();
                for i in 0..iters {
                    black_box(h.submit(move || black_box(i)).join().expect("join"));
                }
                start.elapsed()
            })
            .join()
            .expect("outer join")
        })
    });
    let rt = tokio_rt();
    g.bench_function("tokio_mt2", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async move {
                tokio::spawn(async move {
                    let start = Instant::now();
                    for i in 0..iters {
                        black_box(
                            tokio::spawn(async move { black_box(i) })
                                .await
                                .expect("join"),
                        );
                    }
                    start.elapsed()
                })
                .await
                .expect("outer")
            })
        })
    });
    g.finish();
}

const MILLION: u64 = 1_000_000;

fn throughput(c: &mut Criterion) {
    let mut g = c.benchmark_group("throughput_1m");
    g.sample_size(10).throughput(Throughput::Elements(MILLION));
    let pool = stead_pool();
    g.bench_function("stead_pool", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let done = Arc::new(AtomicU64::new(0));
                let (tx, rx) = crossbeam_channel::bounded::<()>(1);
                let start = Instant::now();
                for _ in 0..MILLION {
                    let (done, tx) = (done.clone(), tx.clone());
                    // Fire and forget: the handle is dropped, the task still runs.
                    drop(pool.submit(move || {
                        if done.fetch_add(1, Ordering::Relaxed) + 1 == MILLION {
                            let _ = tx.send(());
                        }
                    }));
                }
                rx.recv().expect("all tasks ran");
                total += start.elapsed();
            }
            total
        })
    });
    let rt = tokio_rt();
    g.bench_function("tokio_mt2", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async move {
                tokio::spawn(async move {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let done = Arc::new(AtomicU64::new(0));
                        let notify = Arc::new(tokio::sync::Notify::new());
                        let start = Instant::now();
                        for _ in 0..MILLION {
                            let (done, notify) = (done.clone(), notify.clone());
                            tokio::spawn(async move {
                                if done.fetch_add(1, Ordering::Relaxed) + 1 == MILLION {
                                    notify.notify_one();
                                }
                            });
                        }
                        notify.notified().await;
                        total += start.elapsed();
                    }
                    total
                })
                .await
                .expect("outer")
            })
        })
    });
    g.finish();
}

const ITEMS: u64 = 100_000;

fn bounded_map(c: &mut Criterion) {
    let mut g = c.benchmark_group("bounded_map");
    g.sample_size(10).throughput(Throughput::Elements(ITEMS));
    let pool = stead_pool();
    g.bench_function("stead_pool_map", |b| {
        b.iter(|| {
            let sum: u64 = pool
                .map(0..ITEMS, 64, |x| black_box(x) * 2)
                .map(|r| r.expect("no panic"))
                .sum();
            assert_eq!(sum, ITEMS * (ITEMS - 1));
        })
    });
    let rt = tokio_rt();
    g.bench_function("tokio_buffered", |b| {
        b.iter(|| {
            rt.block_on(async {
                let sum: u64 = futures::stream::iter(0..ITEMS)
                    .map(|x| tokio::spawn(async move { black_box(x) * 2 }))
                    .buffered(64)
                    .map(|r| r.expect("no panic"))
                    .fold(0, |a, b| async move { a + b })
                    .await;
                assert_eq!(sum, ITEMS * (ITEMS - 1));
            })
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = submit_join, throughput, bounded_map
}
criterion_main!(benches);
