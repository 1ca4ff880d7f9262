//! Cross-thread wake-up latency, round trip: a plain thread asks a sleeping
//! event loop (or a parked tokio task) to run something and waits for the
//! answer.
//!
//! - `stead_loop_handle`: `LoopHandle::submit` wakes an `EventLoop` blocked
//!   in epoll (eventfd), the closure answers over a crossbeam channel.
//! - `tokio_mpsc`: a task parked in `mpsc::Receiver::recv` on a
//!   current-thread runtime (its own thread) is woken by `send` from the
//!   caller and answers over a crossbeam channel.

use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use stead_core::Cancel;
use stead_eventloop::EventLoop;

mod common;

fn wakeup(c: &mut Criterion) {
    let mut g = c.benchmark_group("cross_thread_wakeup");
    let (handle_tx, handle_rx) = crossbeam_channel::bounded(1);
    let stop = Cancel::new();
    let s = stop.clone();
    let lp_thread = std::thread::spawn(move || {
        let mut lp = EventLoop::new().expect("event loop");
        handle_tx.send(lp.handle()).expect("send handle");
        lp.run(&s).expect("run");
    });
    let handle = handle_rx.recv().expect("handle");
    let (ack_tx, ack_rx) = crossbeam_channel::bounded::<()>(1);
    g.bench_function("stead_loop_handle", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let ack = ack_tx.clone();
                handle
                    .submit(move |_| {
                        let _ = ack.send(());
                    })
                    .expect("submit");
                ack_rx.recv().expect("ack");
            }
            start.elapsed()
        })
    });
    stop.cancel();
    handle.wake();
    lp_thread.join().expect("loop thread");

    let (tx, mut rx) = tokio::sync::mpsc::channel::<crossbeam_channel::Sender<()>>(1);
    let rt_thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("tokio runtime");
        rt.block_on(async move {
            while let Some(ack) = rx.recv().await {
                let _ = ack.send(());
            }
        });
    });
    g.bench_function("tokio_mpsc", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                tx.blocking_send(ack_tx.clone()).expect("send");
                ack_rx.recv().expect("ack");
            }
            start.elapsed()
        })
    });
    drop(tx);
    rt_thread.join().expect("runtime thread");
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = wakeup
}
criterion_main!(benches);
