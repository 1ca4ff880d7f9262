//! The few syscalls stead-core needs, through `rustix`: eventfd for
//! cancellation descriptors and `poll` for waiting on a socket and a token
//! together. No `unsafe` here.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::time::Instant;

use rustix::event::{EventfdFlags, PollFd, PollFlags, Timespec};

/// A non-blocking, close-on-exec eventfd.
///
/// The error is the raw OS error (e.g. `EMFILE`), so callers can classify it
/// (an accept loop backs off on descriptor exhaustion).
pub(crate) fn eventfd() -> io::Result<OwnedFd> {
    Ok(rustix::event::eventfd(
        0,
        EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK,
    )?)
}

/// Make an eventfd readable. Errors cannot happen for a valid eventfd short
/// of counter overflow, which leaves it readable anyway.
pub(crate) fn eventfd_signal(fd: BorrowedFd<'_>) {
    let _ = rustix::io::write(fd, &1u64.to_ne_bytes());
}

/// Read an eventfd to zero (non-blocking; nothing to read is fine).
pub(crate) fn eventfd_drain(fd: BorrowedFd<'_>) {
    let mut buf = [0u8; 8];
    let _ = rustix::io::read(fd, &mut buf);
}

/// This thread's wake-up eventfd, created on first use and closed when the
/// thread exits.
pub(crate) fn thread_wake_fd() -> io::Result<std::sync::Arc<OwnedFd>> {
    thread_local! {
        static WAKE: std::cell::OnceCell<std::sync::Arc<OwnedFd>> = const { std::cell::OnceCell::new() };
    }
    WAKE.with(|w| {
        if let Some(fd) = w.get() {
            return Ok(fd.clone());
        }
        let fd = std::sync::Arc::new(eventfd()?);
        let _ = w.set(fd.clone());
        Ok(fd)
    })
}

/// What ended a [`wait`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Woke {
    /// The descriptor is ready (or has an error/hang-up to report).
    Ready,
    /// The cancellation descriptor became readable.
    Cancelled,
    /// The deadline passed.
    TimedOut,
}

/// Which readiness to wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interest {
    Read,
    Write,
}

impl Interest {
    /// The operation, as named in a [`Timeout`](crate::Timeout).
    pub(crate) fn op(self) -> &'static str {
        match self {
            Interest::Read => "read",
            Interest::Write => "write",
        }
    }
}

/// Wait until `fd` is ready for `interest`, `cancel` is readable, or `deadline` passes.
pub(crate) fn wait(
    fd: BorrowedFd<'_>,
    interest: Interest,
    cancel: Option<BorrowedFd<'_>>,
    deadline: Option<Instant>,
) -> io::Result<Woke> {
    let flags = match interest {
        Interest::Read => PollFlags::IN,
        Interest::Write => PollFlags::OUT,
    };
    loop {
        let timeout = match deadline {
            None => None,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(Woke::TimedOut);
                }
                Some(Timespec {
                    tv_sec: left.as_secs() as _,
                    tv_nsec: left.subsec_nanos() as _,
                })
            }
        };
        let mut fds = [
            PollFd::from_borrowed_fd(fd, flags),
            PollFd::from_borrowed_fd(cancel.unwrap_or(fd), PollFlags::IN),
        ];
        let n = if cancel.is_some() { 2 } else { 1 };
        match rustix::event::poll(&mut fds[..n], timeout.as_ref()) {
            Ok(0) => continue, // re-check the deadline; loops only on early wake-ups
            Ok(_) => {
                if n == 2 && !fds[1].revents().is_empty() {
                    return Ok(Woke::Cancelled);
                }
                return Ok(Woke::Ready);
            }
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Whether an accept error means "out of a resource, back off and retry".
pub(crate) fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error().map(rustix::io::Errno::from_raw_os_error),
        Some(
            rustix::io::Errno::MFILE
                | rustix::io::Errno::NFILE
                | rustix::io::Errno::NOBUFS
                | rustix::io::Errno::NOMEM
        )
    )
}

/// Whether an accept error concerns only the connection being accepted.
pub(crate) fn is_transient_accept_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    ) || matches!(
        e.raw_os_error().map(rustix::io::Errno::from_raw_os_error),
        Some(rustix::io::Errno::PROTO | rustix::io::Errno::PERM)
    )
}
