//! Timers at scale: 1,000,000 timers inserted and then cancelled.
//!
//! - `stead_eventloop`: `EventLoop::after` x 1M, then `cancel_timer` x 1M
//!   (one timerfd, a heap with lazy deletion).
//! - `tokio_time`: 1M `tokio::time::sleep` futures created and polled once
//!   inside the runtime (which registers each in tokio's timer wheel), then
//!   dropped (which deregisters it): the tokio way to set and cancel a timer.

use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use stead_eventloop::EventLoop;

mod common;

const N: usize = 1_000_000;

fn timers(c: &mut Criterion) {
    let mut g = c.benchmark_group("timers_1m_insert_cancel");
    g.sample_size(10).throughput(Throughput::Elements(N as u64));
    g.bench_function("stead_eventloop", |b| {
        let mut lp = EventLoop::new().expect("event loop");
        let mut ids = Vec::with_capacity(N);
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                for i in 0..N {
                    let d = Duration::from_secs(60) + Duration::from_micros(i as u64);
                    ids.push(lp.after(d, |_| {}));
                }
                for id in ids.drain(..) {
                    black_box(lp.cancel_timer(id));
                }
                total += start.elapsed();
                // Let the loop drop its cancelled entries between samples.
                lp.dispatch(Some(Duration::ZERO)).expect("dispatch");
            }
            total
        })
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("tokio runtime");
    g.bench_function("tokio_time", |b| {
        let mut sleeps: Vec<Pin<Box<tokio::time::Sleep>>> = Vec::with_capacity(N);
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut cx = Context::from_waker(Waker::noop());
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    for i in 0..N {
                        let d = Duration::from_secs(60) + Duration::from_micros(i as u64);
                        let mut s = Box::pin(tokio::time::sleep(d));
                        // The first poll registers the timer.
                        assert!(s.as_mut().poll(&mut cx).is_pending());
                        sleeps.push(s);
                    }
                    sleeps.clear(); // dropping deregisters
                    total += start.elapsed();
                }
                total
            })
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = timers
}
criterion_main!(benches);
