//! Ping-pong between two parties; the time reported is one round trip (two
//! hand-overs: there and back).
//!
//! Group `context_switch/pipe`: one byte over a pair of pipes.
//! - `threads`: the bench thread and a partner thread, unpinned (on this
//!   2-core machine they usually run on different cores).
//! - `threads_pinned`: both pinned to the same CPU (a true context switch
//!   per hand-over, as an async task switch is on one worker).
//! - `tokio_ct`: two tasks on a current-thread runtime over
//!   `tokio::net::unix::pipe` (epoll readiness per hand-over).
//! - `tokio_mt2`: the same on a multi-thread runtime with 2 workers.
//!
//! Group `context_switch/channel`: a value over two bounded(1) channels.
//! - `crossbeam_threads` / `crossbeam_threads_pinned`: two threads over
//!   `crossbeam_channel::bounded(1)`.
//! - `tokio_ct` / `tokio_mt2`: two tasks over `tokio::sync::mpsc::channel(1)`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use stead_benches::{ChannelEcho, PipeEcho, first_allowed_cpu, pin_current_thread, tokio_side};

mod common;

fn time_round_trips<T>(iters: u64, mut round_trip: impl FnMut(u64) -> T) -> Duration {
    let start = Instant::now();
    for i in 0..iters {
        black_box(round_trip(i));
    }
    start.elapsed()
}

fn pipe(c: &mut Criterion) {
    let cpu = first_allowed_cpu().expect("affinity");
    let mut g = c.benchmark_group("context_switch/pipe");
    {
        let mut echo = PipeEcho::spawn(None).expect("echo thread");
        g.bench_function("threads", |b| {
            b.iter_custom(|n| time_round_trips(n, |i| echo.round_trip(i as u8).expect("echo")))
        });
    }
    {
        let _pin = pin_current_thread(cpu).expect("pin");
        let mut echo = PipeEcho::spawn(Some(cpu)).expect("echo thread");
        g.bench_function("threads_pinned", |b| {
            b.iter_custom(|n| time_round_trips(n, |i| echo.round_trip(i as u8).expect("echo")))
        });
    }
    let ct = tokio_side::current_thread().expect("runtime");
    g.bench_function("tokio_ct", |b| {
        b.iter_custom(|n| tokio_side::pipe_ping_pong(&ct, n).expect("ping-pong"))
    });
    let mt = tokio_side::multi_thread(2).expect("runtime");
    g.bench_function("tokio_mt2", |b| {
        b.iter_custom(|n| tokio_side::pipe_ping_pong(&mt, n).expect("ping-pong"))
    });
    g.finish();
}

fn channel(c: &mut Criterion) {
    let cpu = first_allowed_cpu().expect("affinity");
    let mut g = c.benchmark_group("context_switch/channel");
    {
        let mut echo = ChannelEcho::spawn(None).expect("echo thread");
        g.bench_function("crossbeam_threads", |b| {
            b.iter_custom(|n| time_round_trips(n, |i| echo.round_trip(i).expect("echo")))
        });
    }
    {
        let _pin = pin_current_thread(cpu).expect("pin");
        let mut echo = ChannelEcho::spawn(Some(cpu)).expect("echo thread");
        g.bench_function("crossbeam_threads_pinned", |b| {
            b.iter_custom(|n| time_round_trips(n, |i| echo.round_trip(i).expect("echo")))
        });
    }
    let ct = tokio_side::current_thread().expect("runtime");
    g.bench_function("tokio_ct", |b| {
        b.iter_custom(|n| tokio_side::mpsc_ping_pong(&ct, n).expect("ping-pong"))
    });
    let mt = tokio_side::multi_thread(2).expect("runtime");
    g.bench_function("tokio_mt2", |b| {
        b.iter_custom(|n| tokio_side::mpsc_ping_pong(&mt, n).expect("ping-pong"))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = pipe, channel
}
criterion_main!(benches);
