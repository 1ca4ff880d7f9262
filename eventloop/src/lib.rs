//! stead-eventloop: readiness without futures, and a server mode in which
//! idle connections cost no thread.
//!
//! - [`EventLoop`]: a single-threaded reactor on the `polling` crate.
//!   Register any [`AsFd`](std::os::fd::AsFd) source with a callback; the
//!   loop owns the source and deregisters it before dropping it. Timers
//!   ([`after`](EventLoop::after), [`at`](EventLoop::at),
//!   [`every`](EventLoop::every)) share one `timerfd`; signals arrive as
//!   callbacks ([`on_signal`](EventLoop::on_signal)); other threads wake the
//!   loop and submit closures through a [`LoopHandle`] and a bounded queue.
//!   A source that is reported ready again and again while its callback
//!   makes no progress is dropped and logged instead of spinning.
//! - [`EventServer`]: TCP connections wait in epoll between requests; when
//!   one becomes readable its [`Session`] runs ordinary blocking code on the
//!   worker thread that saw the readiness. A handler that blocks has its
//!   worker's other connections handed to a spare thread, the way Go's
//!   runtime hands off a P (see [the design](EventServer#threading-design)).
//!
//! Linux only: epoll, timerfd and eventfd are the point.
//!
//! # A socket and a timer
//!
//! Every callback gets `&mut EventLoop`, so it can register sources, arm or
//! cancel timers, or stop the loop.
//!
//! ```
//! use std::io::{Read, Write};
//! use std::os::unix::net::UnixStream;
//! use std::time::Duration;
//! use stead_core::Cancel;
//! use stead_eventloop::{EventLoop, Interest, PostAction};
//!
//! let mut lp = EventLoop::new()?;
//! let (ours, mut theirs) = UnixStream::pair()?;
//! ours.set_nonblocking(true)?;
//!
//! // Echo whatever arrives.
//! lp.register(ours, Interest::READ, |_ready, sock: &mut UnixStream, _lp| {
//!     let mut buf = [0u8; 512];
//!     match sock.read(&mut buf) {
//!         Ok(0) => PostAction::Remove, // end of stream: deregister and close
//!         Ok(n) => {
//!             let _ = sock.write_all(&buf[..n]);
//!             PostAction::Continue
//!         }
//!         Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => PostAction::Continue,
//!         Err(_) => PostAction::Remove,
//!     }
//! })?;
//! theirs.write_all(b"ping")?;
//! lp.dispatch(Some(Duration::from_secs(5)))?; // one round: the echo runs
//! let mut reply = [0u8; 4];
//! theirs.read_exact(&mut reply)?;
//! assert_eq!(&reply, b"ping");
//!
//! // A timer that stops a running loop.
//! lp.after(Duration::from_millis(1), |lp| lp.stop());
//! lp.run(&Cancel::new())?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # Timers
//!
//! One `timerfd` on `CLOCK_MONOTONIC` drives all timers, kept in a 4-ary
//! heap with lazy deletion: inserting and cancelling a million pending
//! timers is cheap, and no timer costs a file descriptor. Periodic timers
//! run on a fixed grid (`start + k * period`), so they do not drift.
//!
//! ```
//! use std::time::Duration;
//! use stead_core::Cancel;
//! use stead_eventloop::EventLoop;
//!
//! let mut lp = EventLoop::new()?;
//! let never = lp.after(Duration::from_millis(5), |_| panic!("cancelled"));
//! assert!(lp.cancel_timer(never));
//! let mut ticks = 0;
//! lp.every(Duration::from_millis(2), move |lp| {
//!     ticks += 1;
//!     if ticks == 3 {
//!         lp.stop();
//!     }
//! })?;
//! lp.run(&Cancel::new())?; // returns at lp.stop()
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! **Clocks.** Timers follow the monotonic clock of [`Instant`](std::time::Instant):
//! setting the wall clock (an NTP step, `date -s`) moves none of them, and
//! they do not advance while the machine is suspended (a 1 s timer set
//! before a suspend fires about 1 s after the resume). Wall-clock schedules
//! ("at 03:00") should be recomputed in [`EventLoop::on_clock_change`],
//! which fires whenever the wall clock is set discontinuously.
//!
//! # Other threads
//!
//! [`LoopHandle`] is `Send + Clone`: [`wake`](LoopHandle::wake),
//! [`stop`](LoopHandle::stop), and [`submit`](LoopHandle::submit) closures
//! that run on the loop's thread with `&mut EventLoop`. The queue is
//! bounded: `submit` blocks while it is full (and refuses, rather than
//! deadlocks, on the loop's own thread), [`try_submit`](LoopHandle::try_submit)
//! hands the closure back.
//!
//! ```
//! use stead_core::Cancel;
//! use stead_eventloop::EventLoop;
//!
//! let stop = Cancel::new();
//! let (handle_tx, handle_rx) = crossbeam_channel::bounded(1);
//! let s = stop.clone();
//! let thread = std::thread::spawn(move || -> std::io::Result<()> {
//!     let mut lp = EventLoop::new()?;
//!     handle_tx.send(lp.handle()).unwrap();
//!     lp.run(&s)
//! });
//! let handle = handle_rx.recv().unwrap();
//! let (tx, rx) = crossbeam_channel::bounded(1);
//! handle.submit(move |lp| tx.send(lp.stats().jobs_run).unwrap()).unwrap();
//! assert_eq!(rx.recv().unwrap(), 1); // this closure is the first job
//! stop.cancel();
//! thread.join().unwrap()?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # Signals
//!
//! Signals arrive through signal-hook's self-pipe and run as callbacks on
//! the loop's thread. signal-hook chains handlers, so this coexists with
//! [`stead_core::shutdown_on_signals`]: a SIGTERM reaches both.
//!
//! ```
//! use std::time::Duration;
//! use signal_hook::consts::SIGUSR2;
//! use stead_eventloop::EventLoop;
//!
//! let mut lp = EventLoop::new()?;
//! let got = std::rc::Rc::new(std::cell::Cell::new(0));
//! let g = got.clone();
//! lp.on_signal(SIGUSR2, move |_, sig| g.set(sig))?;
//! signal_hook::low_level::raise(SIGUSR2)?;
//! while got.get() == 0 {
//!     lp.dispatch(Some(Duration::from_secs(1)))?;
//! }
//! assert_eq!(got.get(), SIGUSR2);
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # No spinning
//!
//! A level-triggered source whose callback does not consume its input
//! would be reported on every round, at 100% CPU. The loop watches each
//! registration (see [the detector](EventLoop#the-no-progress-detector))
//! and drops such a source with a warning; the event server closes a
//! connection whose session parks without reading. An idle loop or server
//! sleeps in `epoll_wait` with no timeout: 10,000 idle sockets cost no CPU.
//!
//! # The event server
//!
//! See [`EventServer`] for a complete echo server, and its
//! [module documentation](EventServer#threading-design) for the threading
//! design: per-worker level-triggered epoll sets, requests handled inline
//! by the thread that saw readiness, and a Go-style hand-off of a blocked
//! worker's connections to a spare thread.
#![doc(test(attr(deny(warnings))))]
#![deny(unsafe_code)]

mod event_loop;
mod server;
mod signals;
mod sys;
mod timer;

pub use event_loop::{
    EventLoop, Interest, Job, LoopHandle, LoopStats, Mode, PostAction, Readiness, SignalId,
    SubmitError, SubmitErrorKind, TimerId, Token,
};
pub use server::{
    EventServer, EventServerBuilder, EventServerHandle, EventStats, Session, SessionFactory,
    Verdict,
};
