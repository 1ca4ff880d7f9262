//! stead-benches: the scenario machinery behind stead's benchmarks against
//! tokio. This is the only crate of the workspace where tokio, hyper and
//! futures appear; it is never published.
//!
//! The criterion benches live in `benches/` (see `README.md` there for the
//! scenarios and the latest numbers). This library holds the parts worth
//! testing on their own: thread and task ping-pong partners, the pipe
//! "bucket brigade" in both flavours, CPU pinning, and a poller for futures
//! that are always ready.
//!
//! # Example
//!
//! A round trip through a partner thread over two pipes, then one message
//! through a 10-stage brigade of threads:
//!
//! ```
//! use stead_benches::{PipeEcho, ThreadBrigade};
//!
//! let mut echo = PipeEcho::spawn(None)?;
//! assert_eq!(echo.round_trip(7)?, 7);
//!
//! let mut brigade = ThreadBrigade::new(10)?;
//! assert_eq!(brigade.pass(42)?, 42);
//! # Ok::<(), std::io::Error>(())
//! ```

use std::future::Future;
use std::io::{self, PipeReader, PipeWriter, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;

use rustix::thread::{CpuSet, sched_getaffinity, sched_setaffinity};

/// Stack size of the benchmark helper threads: they only shuffle bytes.
pub const HELPER_STACK: usize = 64 * 1024;

/// The lowest-numbered CPU this process may run on.
pub fn first_allowed_cpu() -> io::Result<usize> {
    let set = sched_getaffinity(None)?;
    (0..CpuSet::MAX_CPU)
        .find(|&c| set.is_set(c))
        .ok_or_else(|| io::Error::other("the affinity mask of this thread is empty"))
}

/// Restores the calling thread's previous CPU affinity when dropped.
///
/// Made by [`pin_current_thread`]; must be dropped on the thread that made it
/// (it is `!Send` for that reason).
#[must_use = "dropping the guard unpins the thread at once"]
pub struct AffinityGuard {
    previous: CpuSet,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Drop for AffinityGuard {
    fn drop(&mut self) {
        // Best effort: a failure leaves the thread pinned, which is harmless.
        let _ = sched_setaffinity(None, &self.previous);
    }
}

/// Pin the calling thread to `cpu` until the returned guard is dropped.
pub fn pin_current_thread(cpu: usize) -> io::Result<AffinityGuard> {
    if cpu >= CpuSet::MAX_CPU {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("cpu {cpu} is beyond the affinity mask size"),
        ));
    }
    let previous = sched_getaffinity(None)?;
    let mut only = CpuSet::new();
    only.set(cpu);
    sched_setaffinity(None, &only)
        .map_err(|e| io::Error::new(e.kind(), format!("pinning to cpu {cpu}: {e}")))?;
    Ok(AffinityGuard {
        previous,
        _not_send: std::marker::PhantomData,
    })
}

/// A connected loopback TCP pair `(client, server)`, both blocking, `TCP_NODELAY` set.
pub fn tcp_pair() -> io::Result<(TcpStream, TcpStream)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let client = TcpStream::connect(listener.local_addr()?)?;
    let (server, _) = listener.accept()?;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    Ok((client, server))
}

/// Read exactly one byte; a closed pipe is an `UnexpectedEof` error.
fn read_byte(r: &mut impl Read) -> io::Result<u8> {
    let mut b = [0u8; 1];
    r.read_exact(&mut b)?;
    Ok(b[0])
}

/// Spawn a named helper thread with a small stack, pinned to `cpu` if given.
/// Returns once the thread runs (and is pinned), so a pinning failure is
/// reported here instead of skewing the measurement.
fn spawn_helper<F>(name: String, cpu: Option<usize>, f: F) -> io::Result<JoinHandle<()>>
where
    F: FnOnce() + Send + 'static,
{
    let (ready_tx, ready_rx) = crossbeam_channel::bounded::<io::Result<()>>(1);
    let thread = std::thread::Builder::new()
        .name(name)
        .stack_size(HELPER_STACK)
        .spawn(move || {
            match cpu.map(pin_current_thread).transpose() {
                Ok(_pin) => {
                    let _ = ready_tx.send(Ok(()));
                    f(); // pinned (if asked) until `_pin` drops here
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            }
        })?;
    let ready = ready_rx
        .recv()
        .unwrap_or_else(|_| Err(io::Error::other("helper thread died while starting")));
    if let Err(e) = ready {
        let _ = thread.join();
        return Err(e);
    }
    Ok(thread)
}

/// A partner thread that echoes every byte it reads from one pipe into another.
///
/// [`round_trip`](PipeEcho::round_trip) is one ping-pong: two context
/// switches through the kernel's pipe wake-up path. Dropping it closes the
/// pipe, which ends the thread, and joins it.
pub struct PipeEcho {
    to: Option<PipeWriter>,
    from: PipeReader,
    thread: Option<JoinHandle<()>>,
}

impl PipeEcho {
    /// Start the partner, pinned to `cpu` if given.
    pub fn spawn(cpu: Option<usize>) -> io::Result<PipeEcho> {
        let (mut their_rx, to) = io::pipe()?;
        let (from, mut their_tx) = io::pipe()?;
        let thread = spawn_helper("pipe-echo".into(), cpu, move || {
            while let Ok(b) = read_byte(&mut their_rx) {
                if their_tx.write_all(&[b]).is_err() {
                    break;
                }
            }
        })?;
        Ok(PipeEcho {
            to: Some(to),
            from,
            thread: Some(thread),
        })
    }

    /// Send `b` to the partner and wait for it to come back.
    pub fn round_trip(&mut self, b: u8) -> io::Result<u8> {
        self.to
            .as_mut()
            .expect("writer present until drop")
            .write_all(&[b])?;
        read_byte(&mut self.from)
    }
}

impl Drop for PipeEcho {
    fn drop(&mut self) {
        self.to = None; // EOF for the partner
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A partner thread that echoes values over two `crossbeam_channel::bounded(1)` channels.
pub struct ChannelEcho {
    to: Option<crossbeam_channel::Sender<u64>>,
    from: crossbeam_channel::Receiver<u64>,
    thread: Option<JoinHandle<()>>,
}

impl ChannelEcho {
    /// Start the partner, pinned to `cpu` if given.
    pub fn spawn(cpu: Option<usize>) -> io::Result<ChannelEcho> {
        let (to, their_rx) = crossbeam_channel::bounded::<u64>(1);
        let (their_tx, from) = crossbeam_channel::bounded::<u64>(1);
        let thread = spawn_helper("channel-echo".into(), cpu, move || {
            for v in their_rx {
                if their_tx.send(v).is_err() {
                    break;
                }
            }
        })?;
        Ok(ChannelEcho {
            to: Some(to),
            from,
            thread: Some(thread),
        })
    }

    /// Send `v` to the partner and wait for it to come back.
    pub fn round_trip(&mut self, v: u64) -> io::Result<u64> {
        let gone = || io::Error::new(io::ErrorKind::BrokenPipe, "echo thread is gone");
        self.to
            .as_ref()
            .expect("sender present until drop")
            .send(v)
            .map_err(|_| gone())?;
        self.from.recv().map_err(|_| gone())
    }
}

impl Drop for ChannelEcho {
    fn drop(&mut self) {
        self.to = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `stages` threads linked by pipes: each reads a byte from its left pipe and
/// writes it to its right one. [`pass`](ThreadBrigade::pass) sends one byte
/// in at the head and waits for it at the tail: `stages` hops.
pub struct ThreadBrigade {
    head: Option<PipeWriter>,
    tail: PipeReader,
    threads: Vec<JoinHandle<()>>,
}

impl ThreadBrigade {
    /// Spawn the stages (one thread and one pipe each).
    pub fn new(stages: usize) -> io::Result<ThreadBrigade> {
        if stages == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a brigade needs at least one stage",
            ));
        }
        let (mut left, head) = io::pipe()?;
        let mut threads = Vec::with_capacity(stages);
        for i in 0..stages {
            let spawned = io::pipe().and_then(|(next_left, mut right)| {
                let mut input = std::mem::replace(&mut left, next_left);
                spawn_helper(format!("brigade-{i}"), None, move || {
                    while let Ok(b) = read_byte(&mut input) {
                        if right.write_all(&[b]).is_err() {
                            break;
                        }
                    }
                })
            });
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => {
                    // Closing the head ends the stages already started, in order.
                    drop(head);
                    for t in threads {
                        let _ = t.join();
                    }
                    return Err(e);
                }
            }
        }
        Ok(ThreadBrigade {
            head: Some(head),
            tail: left,
            threads,
        })
    }

    /// Number of stages.
    pub fn stages(&self) -> usize {
        self.threads.len()
    }

    /// Pass one byte through every stage.
    pub fn pass(&mut self, b: u8) -> io::Result<u8> {
        self.head
            .as_mut()
            .expect("head present until drop")
            .write_all(&[b])?;
        read_byte(&mut self.tail)
    }
}

impl Drop for ThreadBrigade {
    fn drop(&mut self) {
        // Closing the head ends stage 0, whose dropped pipe ends stage 1, ...
        self.head = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The tokio counterparts: tasks over `tokio::net::unix::pipe` and `tokio::sync::mpsc`.
pub mod tokio_side {
    use std::io;
    use std::time::{Duration, Instant};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::unix::pipe;
    use tokio::runtime::Runtime;
    use tokio::sync::mpsc;

    /// A multi-thread runtime with `workers` worker threads (all drivers on).
    pub fn multi_thread(workers: usize) -> io::Result<Runtime> {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name("bench-tokio")
            .enable_all()
            .build()
    }

    /// A current-thread runtime (all drivers on).
    pub fn current_thread() -> io::Result<Runtime> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    }

    async fn read_byte(rx: &mut pipe::Receiver) -> io::Result<u8> {
        let mut b = [0u8; 1];
        rx.read_exact(&mut b).await?;
        Ok(b[0])
    }

    /// `iters` round trips between two tasks over two tokio pipes; returns
    /// the time the round trips took (set-up excluded).
    pub fn pipe_ping_pong(rt: &Runtime, iters: u64) -> io::Result<Duration> {
        rt.block_on(async {
            let driver = tokio::spawn(async move {
                let (mut to, mut their_rx) = pipe::pipe()?;
                let (mut their_tx, mut from) = pipe::pipe()?;
                let echo = tokio::spawn(async move {
                    while let Ok(b) = read_byte(&mut their_rx).await {
                        if their_tx.write_all(&[b]).await.is_err() {
                            break;
                        }
                    }
                });
                let start = Instant::now();
                for i in 0..iters {
                    to.write_all(&[i as u8]).await?;
                    let b = read_byte(&mut from).await?;
                    debug_assert_eq!(b, i as u8);
                }
                let took = start.elapsed();
                drop(to);
                echo.await.map_err(io::Error::other)?;
                Ok::<_, io::Error>(took)
            });
            driver.await.map_err(io::Error::other)?
        })
    }

    /// `iters` round trips between two tasks over two `mpsc::channel(1)`s.
    pub fn mpsc_ping_pong(rt: &Runtime, iters: u64) -> io::Result<Duration> {
        rt.block_on(async {
            let driver = tokio::spawn(async move {
                let (to, mut their_rx) = mpsc::channel::<u64>(1);
                let (their_tx, mut from) = mpsc::channel::<u64>(1);
                let echo = tokio::spawn(async move {
                    while let Some(v) = their_rx.recv().await {
                        if their_tx.send(v).await.is_err() {
                            break;
                        }
                    }
                });
                let gone = || io::Error::new(io::ErrorKind::BrokenPipe, "echo task is gone");
                let start = Instant::now();
                for i in 0..iters {
                    to.send(i).await.map_err(|_| gone())?;
                    let v = from.recv().await.ok_or_else(gone)?;
                    debug_assert_eq!(v, i);
                }
                let took = start.elapsed();
                drop(to);
                echo.await.map_err(io::Error::other)?;
                Ok::<_, io::Error>(took)
            });
            driver.await.map_err(io::Error::other)?
        })
    }

    /// `iters` messages, one at a time, through `stages` tasks linked by
    /// tokio pipes; returns the time they took (set-up excluded).
    pub fn brigade(rt: &Runtime, stages: usize, iters: u64) -> io::Result<Duration> {
        if stages == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a brigade needs at least one stage",
            ));
        }
        rt.block_on(async {
            let driver = tokio::spawn(async move {
                let (mut head, mut left) = pipe::pipe()?;
                let mut tasks = Vec::with_capacity(stages);
                for _ in 0..stages {
                    let (mut right, next_left) = pipe::pipe()?;
                    let mut input = std::mem::replace(&mut left, next_left);
                    tasks.push(tokio::spawn(async move {
                        while let Ok(b) = read_byte(&mut input).await {
                            if right.write_all(&[b]).await.is_err() {
                                break;
                            }
                        }
                    }));
                }
                let mut tail = left;
                let start = Instant::now();
                for i in 0..iters {
                    head.write_all(&[i as u8]).await?;
                    let b = read_byte(&mut tail).await?;
                    debug_assert_eq!(b, i as u8);
                }
                let took = start.elapsed();
                drop(head);
                for t in tasks {
                    t.await.map_err(io::Error::other)?;
                }
                Ok::<_, io::Error>(took)
            });
            driver.await.map_err(io::Error::other)?
        })
    }
}

/// Poll `fut` once with a no-op waker and return its output.
///
/// For futures that are always ready (the trait-table bench); panics if
/// `fut` is pending, because nothing would ever wake it.
#[inline]
pub fn poll_ready<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("poll_ready: the future is pending"),
    }
}

/// The command line of the load comparison's twin servers (`hyper_hello`,
/// `std_hello`): `[--addr HOST:PORT] [--workers N]`, with `default_addr`
/// and the number of CPUs as defaults. `--help` prints the usage and exits;
/// a bad argument prints what is wrong and the usage, and exits with status 2.
///
/// ```
/// let (addr, workers) = stead_benches::server_args(
///     "127.0.0.1:9", ["--workers", "3"].into_iter().map(String::from));
/// assert_eq!((addr.port(), workers), (9, 3));
/// ```
pub fn server_args(
    default_addr: &str,
    args: impl IntoIterator<Item = String>,
) -> (std::net::SocketAddr, usize) {
    let usage =
        format!("usage: [--addr HOST:PORT (default {default_addr})] [--workers N (default: CPUs)]");
    let bad = |what: String| -> ! {
        eprintln!("{what}\n{usage}");
        std::process::exit(2)
    };
    let mut addr = default_addr.parse().expect("default address");
    let mut workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut args = args.into_iter();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--addr" => match args.next().map(|v| v.parse()) {
                Some(Ok(v)) => addr = v,
                _ => bad("--addr needs HOST:PORT".into()),
            },
            "--workers" => match args.next().map(|v| v.parse::<usize>()) {
                Some(Ok(n)) if n > 0 => workers = n,
                _ => bad("--workers needs a positive number".into()),
            },
            "-h" | "--help" => {
                println!("{usage}");
                std::process::exit(0)
            }
            other => bad(format!("unknown argument {other}")),
        }
    }
    (addr, workers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipe_echo_round_trips_and_joins_on_drop() {
        let mut echo = PipeEcho::spawn(None).unwrap();
        for i in 0..=255u8 {
            assert_eq!(echo.round_trip(i).unwrap(), i);
        }
        drop(echo); // must not hang
    }

    #[test]
    fn pinned_partners_work_and_the_pin_is_undone() {
        let cpu = first_allowed_cpu().unwrap();
        let before = sched_getaffinity(None).unwrap();
        {
            let _g = pin_current_thread(cpu).unwrap();
            let now = sched_getaffinity(None).unwrap();
            assert_eq!(now.count(), 1);
            assert!(now.is_set(cpu));
            let mut echo = PipeEcho::spawn(Some(cpu)).unwrap();
            assert_eq!(echo.round_trip(9).unwrap(), 9);
            let mut chan = ChannelEcho::spawn(Some(cpu)).unwrap();
            assert_eq!(chan.round_trip(99).unwrap(), 99);
        }
        assert_eq!(sched_getaffinity(None).unwrap(), before);
    }

    #[test]
    fn pinning_to_an_impossible_cpu_is_an_error() {
        let err = pin_current_thread(CpuSet::MAX_CPU).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn channel_echo_round_trips() {
        let mut echo = ChannelEcho::spawn(None).unwrap();
        for i in 0..1000 {
            assert_eq!(echo.round_trip(i).unwrap(), i);
        }
    }

    #[test]
    fn thread_brigade_passes_every_message_through_every_stage() {
        let mut b = ThreadBrigade::new(50).unwrap();
        assert_eq!(b.stages(), 50);
        for i in 0..20u8 {
            assert_eq!(b.pass(i).unwrap(), i);
        }
        assert_eq!(
            ThreadBrigade::new(0).err().unwrap().kind(),
            io::ErrorKind::InvalidInput
        );
    }

    #[test]
    fn tokio_ping_pongs_and_brigade_complete_on_both_runtimes() {
        for rt in [
            tokio_side::multi_thread(2).unwrap(),
            tokio_side::current_thread().unwrap(),
        ] {
            tokio_side::pipe_ping_pong(&rt, 300).unwrap();
            tokio_side::mpsc_ping_pong(&rt, 300).unwrap();
            tokio_side::brigade(&rt, 50, 20).unwrap();
            assert!(tokio_side::brigade(&rt, 0, 1).is_err());
        }
    }

    #[test]
    fn poll_ready_returns_the_output_and_rejects_pending() {
        assert_eq!(poll_ready(async { 41 + 1 }), 42);
        let r = std::panic::catch_unwind(|| poll_ready(std::future::pending::<()>()));
        assert!(r.is_err());
    }
}
