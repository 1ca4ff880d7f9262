//! The syscalls stead-eventloop needs, through `rustix`. No `unsafe` here.
//!
//! - `timerfd` on `CLOCK_MONOTONIC` (absolute expiry) for the loop's timers,
//!   and one on `CLOCK_REALTIME` with `TFD_TIMER_CANCEL_ON_SET` that reports
//!   wall-clock jumps;
//! - `eventfd` for waking a server shard;
//! - plain `epoll` for the server's per-worker pollers (the hot path: one
//!   `epoll_wait` and nothing else per round, see the server module);
//! - `FIONREAD` for the no-progress detector.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use rustix::event::epoll;
use rustix::event::{EventfdFlags, Timespec};
use rustix::io::Errno;
use rustix::time::{
    ClockId, Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, timerfd_create,
    timerfd_settime,
};

/// Adds "stead-eventloop: cannot {what}" to an error.
pub(crate) fn context(e: impl Into<io::Error>, what: &str) -> io::Error {
    let e = e.into();
    io::Error::new(e.kind(), format!("stead-eventloop: cannot {what}: {e}"))
}

/// `CLOCK_MONOTONIC` now, in nanoseconds (the clock `Instant` uses on Linux).
pub(crate) fn monotonic_ns() -> u64 {
    ts_to_ns(rustix::time::clock_gettime(ClockId::Monotonic))
}

fn ts_to_ns(ts: Timespec) -> u64 {
    (ts.tv_sec.max(0) as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec.max(0) as u64)
}

fn ns_to_ts(ns: u64) -> Timespec {
    Timespec {
        tv_sec: (ns / 1_000_000_000) as _,
        tv_nsec: (ns % 1_000_000_000) as _,
    }
}

fn duration_to_ts(d: Duration) -> Timespec {
    Timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as _,
        tv_nsec: d.subsec_nanos() as _,
    }
}

const TS_ZERO: Timespec = Timespec {
    tv_sec: 0,
    tv_nsec: 0,
};

/// A non-blocking, close-on-exec `CLOCK_MONOTONIC` timerfd.
pub(crate) fn timerfd_monotonic() -> io::Result<OwnedFd> {
    timerfd_create(
        TimerfdClockId::Monotonic,
        TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
    )
    .map_err(|e| context(e, "create a timerfd"))
}

/// Arm `fd` to expire at the absolute monotonic time `at_ns`, or disarm it.
pub(crate) fn timerfd_set_abs(fd: BorrowedFd<'_>, at_ns: Option<u64>) -> io::Result<()> {
    // An absolute time of zero would disarm the timer: use 1 ns for "now".
    let value = at_ns.map_or(TS_ZERO, |ns| ns_to_ts(ns.max(1)));
    let spec = Itimerspec {
        it_interval: TS_ZERO,
        it_value: value,
    };
    timerfd_settime(fd, TimerfdTimerFlags::ABSTIME, &spec)
        .map(drop)
        .map_err(|e| context(e, "arm the timerfd"))
}

/// What reading a timerfd said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimerRead {
    /// It expired this many times.
    Expired(u64),
    /// Nothing to read (a spurious wake-up, or already read).
    Nothing,
    /// The realtime clock was set (`ECANCELED`, only with `CANCEL_ON_SET`).
    ClockSet,
}

/// Read a timerfd without blocking.
pub(crate) fn timerfd_read(fd: BorrowedFd<'_>) -> io::Result<TimerRead> {
    let mut buf = [0u8; 8];
    loop {
        return match rustix::io::read(fd, &mut buf) {
            Ok(8) => Ok(TimerRead::Expired(u64::from_ne_bytes(buf))),
            Ok(_) | Err(Errno::AGAIN) => Ok(TimerRead::Nothing),
            Err(Errno::CANCELED) => Ok(TimerRead::ClockSet),
            Err(Errno::INTR) => continue,
            Err(e) => Err(context(e, "read the timerfd")),
        };
    }
}

/// A `CLOCK_REALTIME` timerfd armed far in the future with
/// `TFD_TIMER_CANCEL_ON_SET`: it becomes readable (and `read` fails with
/// `ECANCELED`) whenever the wall clock is set discontinuously.
pub(crate) fn clock_change_fd() -> io::Result<OwnedFd> {
    let fd = timerfd_create(
        TimerfdClockId::Realtime,
        TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
    )
    .map_err(|e| context(e, "create a realtime timerfd"))?;
    arm_clock_change_fd(fd.as_fd())?;
    Ok(fd)
}

/// (Re-)arm the clock-change timerfd; needed after each reported change.
pub(crate) fn arm_clock_change_fd(fd: BorrowedFd<'_>) -> io::Result<()> {
    let spec = Itimerspec {
        it_interval: TS_ZERO,
        // Year ~2255: far enough never to expire for real.
        it_value: Timespec {
            tv_sec: 9_000_000_000,
            tv_nsec: 0,
        },
    };
    timerfd_settime(
        fd,
        TimerfdTimerFlags::ABSTIME | TimerfdTimerFlags::CANCEL_ON_SET,
        &spec,
    )
    .map(drop)
    .map_err(|e| context(e, "arm the clock-change timerfd"))
}

/// Bytes waiting to be read (`FIONREAD`), or `None` for descriptors that do
/// not support it (listening sockets, eventfds, timerfds...).
pub(crate) fn pending_bytes(fd: BorrowedFd<'_>) -> Option<u64> {
    rustix::io::ioctl_fionread(fd).ok()
}

/// A non-blocking, close-on-exec eventfd.
pub(crate) fn eventfd() -> io::Result<OwnedFd> {
    rustix::event::eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)
        .map_err(|e| context(e, "create an eventfd"))
}

/// Make an eventfd readable. Cannot fail for a valid eventfd short of
/// counter overflow, which leaves it readable anyway.
pub(crate) fn eventfd_signal(fd: BorrowedFd<'_>) {
    let _ = rustix::io::write(fd, &1u64.to_ne_bytes());
}

/// Reset an eventfd to not readable.
pub(crate) fn eventfd_drain(fd: BorrowedFd<'_>) {
    let _ = rustix::io::read(fd, &mut [0u8; 8]);
}

/// A new close-on-exec epoll instance.
pub(crate) fn epoll_create() -> io::Result<OwnedFd> {
    epoll::create(epoll::CreateFlags::CLOEXEC).map_err(|e| context(e, "create an epoll instance"))
}

/// Level-triggered read interest (hang-ups and errors are always reported).
pub(crate) fn epoll_add_read(ep: BorrowedFd<'_>, fd: BorrowedFd<'_>, key: u64) -> io::Result<()> {
    epoll::add(
        ep,
        fd,
        epoll::EventData::new_u64(key),
        epoll::EventFlags::IN | epoll::EventFlags::RDHUP,
    )
    .map_err(io::Error::from)
}

/// Remove `fd` from `ep`; errors (already removed) are ignored.
pub(crate) fn epoll_del(ep: BorrowedFd<'_>, fd: BorrowedFd<'_>) {
    let _ = epoll::delete(ep, fd);
}

/// Wait for events; `EINTR` is reported as zero events.
pub(crate) fn epoll_wait(
    ep: BorrowedFd<'_>,
    events: &mut Vec<epoll::Event>,
    timeout: Option<Duration>,
) -> io::Result<()> {
    events.clear();
    let ts = timeout.map(duration_to_ts);
    match epoll::wait(ep, rustix::buffer::spare_capacity(events), ts.as_ref()) {
        Ok(_) | Err(Errno::INTR) => Ok(()),
        Err(e) => Err(context(e, "wait on epoll")),
    }
}
