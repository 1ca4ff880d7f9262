//! What a cancellable read costs over a plain `std::io::Read` when data is
//! ready (the fast path; goal: < 5 % overhead).
//!
//! A connected pair (loopback TCP, or a Unix stream pair) per case. Each
//! batch, the writer side writes `BATCH` reads' worth of bytes first, then
//! the clock runs while the reader does `BATCH` reads of `READ` bytes each,
//! so every read finds data waiting and never blocks:
//! - `std`: `Read::read` on the blocking std stream.
//! - `std_nonblocking`: the same std stream in non-blocking mode, to separate
//!   the cost of the mode (none expected) from the cost of `Conn`.
//! - `stead`: `Read::read` on `stead_core::Conn` wrapping the same kind of
//!   stream (non-blocking fd, a live `Cancel` checked per call).
//!
//! Reported: time per read call.
//!
//! The per-call difference (a few ns at most) is far below the run-to-run
//! noise of a ~400 ns syscall on a shared VM, where separate criterion runs
//! of the same code differ by ±30 %. So before the criterion groups, a paired
//! A/B run alternates 512-read batches of the three cases (ABC CBA ...) for
//! `PAIRED_ROUNDS` rounds, so drift hits every case alike, and prints the
//! median ns per read of each case and the ratio `stead / std`.

use std::hint::black_box;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use stead_benches::tcp_pair;
use stead_core::{Cancel, Conn};

mod common;

/// Bytes per read: small, so the per-call overhead shows.
const READ: usize = 64;
/// Reads per timed batch (32 KiB written up front, well under the socket buffers).
const BATCH: u64 = 512;
/// Rounds of the paired A/B run (each round times one batch of every case).
const PAIRED_ROUNDS: usize = 2000;

/// Time `iters` reads of `READ` bytes from `reader`, refilling through `writer`
/// between timed batches.
fn timed_reads(iters: u64, writer: &mut impl Write, reader: &mut impl Read) -> Duration {
    let fill = vec![0x5a_u8; READ * BATCH as usize];
    let mut buf = [0u8; READ];
    let mut left = iters;
    let mut total = Duration::ZERO;
    while left > 0 {
        let n = left.min(BATCH);
        writer
            .write_all(&fill[..READ * n as usize])
            .expect("fill the socket");
        let start = Instant::now();
        for _ in 0..n {
            // Each read takes at most READ bytes, so the reads never outrun
            // the bytes written: no read can block.
            let got = reader.read(black_box(&mut buf)).expect("read");
            debug_assert_eq!(got, READ);
        }
        total += start.elapsed();
        left -= n;
    }
    total
}

/// A named reader: times `iters` reads on its own socket pair.
type Case = (&'static str, Box<dyn FnMut(u64) -> Duration>);

fn case<W, R>(name: &'static str, mut w: W, mut r: R) -> Case
where
    W: Write + 'static,
    R: Read + 'static,
{
    (
        name,
        Box::new(move |iters| timed_reads(iters, &mut w, &mut r)),
    )
}

/// std blocking, std non-blocking and `Conn` over loopback TCP.
fn tcp_cases() -> std::io::Result<Vec<Case>> {
    let (w1, r1) = tcp_pair()?;
    let (w2, r2) = tcp_pair()?;
    r2.set_nonblocking(true)?;
    let (w3, r3) = tcp_pair()?;
    let conn = Conn::new(r3, Cancel::new())?;
    Ok(vec![
        case("std", w1, r1),
        case("std_nonblocking", w2, r2),
        case("stead", w3, conn),
    ])
}

/// The same three over Unix stream pairs.
fn unix_cases() -> std::io::Result<Vec<Case>> {
    let (w1, r1) = UnixStream::pair()?;
    let (w2, r2) = UnixStream::pair()?;
    r2.set_nonblocking(true)?;
    let (w3, r3) = UnixStream::pair()?;
    r3.set_nonblocking(true)?;
    let conn = Conn::from_nonblocking(r3, Cancel::new());
    Ok(vec![
        case("std", w1, r1),
        case("std_nonblocking", w2, r2),
        case("stead", w3, conn),
    ])
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Alternate batches of every case, forwards then backwards, and print the
/// median time per read of each and `stead / std`.
fn paired(kind: &str, cases: &mut [Case], rounds: usize) {
    let mut samples = vec![Vec::with_capacity(rounds); cases.len()];
    for round in 0..rounds {
        for k in 0..cases.len() {
            let i = if round % 2 == 0 {
                k
            } else {
                cases.len() - 1 - k
            };
            let took = (cases[i].1)(BATCH);
            samples[i].push(took.as_nanos() as f64 / BATCH as f64);
        }
    }
    let medians: Vec<f64> = samples.iter_mut().map(|s| median(s)).collect();
    let of = |name| {
        let i = cases.iter().position(|c| c.0 == name).expect("case exists");
        medians[i]
    };
    let line: Vec<String> = cases
        .iter()
        .zip(&medians)
        .map(|(c, m)| format!("{} {m:.1} ns", c.0))
        .collect();
    println!(
        "cancellable_io paired A/B, {kind}, {READ} B reads, {rounds} rounds: {}; stead/std = {:.3}, stead/std_nonblocking = {:.3}",
        line.join(", "),
        of("stead") / of("std"),
        of("stead") / of("std_nonblocking"),
    );
}

fn cancellable_io(c: &mut Criterion) {
    // `cargo bench` passes --bench; `cargo test --benches` does not: keep
    // the test-mode run short.
    let rounds = if std::env::args().any(|a| a == "--bench") {
        PAIRED_ROUNDS
    } else {
        10
    };
    let mut g = c.benchmark_group("cancellable_io");
    for (kind, cases) in [("tcp", tcp_cases()), ("unix", unix_cases())] {
        let mut cases = cases.expect("socket pairs");
        paired(kind, &mut cases, rounds);
        for (name, f) in &mut cases {
            g.bench_function(BenchmarkId::new(*name, format!("{kind}_{READ}B")), |b| {
                b.iter_custom(&mut **f)
            });
        }
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = cancellable_io
}
criterion_main!(benches);
