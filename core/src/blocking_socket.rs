//! Blocking-syscall mode for a socket that keeps one thread for its life.
//!
//! A connection served by its own thread (thread per connection) can let the
//! kernel do the waiting: the socket stays in blocking mode, `recv` and
//! `send` block in the syscall, and `SO_RCVTIMEO` / `SO_SNDTIMEO` bound them.
//! That saves the `poll` a non-blocking wait needs before each read: one
//! syscall of the three a keep-alive request costs (see BENCHMARKS.md).
//!
//! Cancellation still interrupts promptly: a callback on the connection's
//! token shuts the socket down in both directions, which wakes a blocked
//! `recv` (end of input) or `send` (`EPIPE`); the caller then finds the token
//! cancelled and reports that instead. A cancelled connection is finished
//! anyway: every later operation on the `Conn` fails on the token first.
//! The callback is armed, so a token deadline fires it too.
//!
//! The callback runs on the cancelling thread, outside the token's lock, so
//! it reaches the descriptor through a slot that the `Conn` empties (under
//! the slot's lock) before its stream can close or change: on drop (field
//! order), and in `get_mut`, `into_inner`, `map`, `try_map` and
//! `replace_cancel`, which leave blocking mode (a replaced token must not
//! end the connection, and the non-blocking path needs no callback). The
//! hang-up registry follows the same discipline.
//!
//! The kernel timeout is the nearer of the operation's timeout and the
//! token's deadline, so a deadline holds even if the deadline thread could
//! not start; a signal that interrupts a call resumes it with the time left,
//! not a fresh timeout.

use std::io;
use std::net::TcpStream;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::io::Errno;
use rustix::net::sockopt::{self, Timeout as SockTimeout};

use crate::cancel::{CallbackGuard, Cancel};
use crate::io::Timeout;
use crate::sys::Interest;

/// The descriptor a cancel shuts down; `None` once the stream may close.
type Slot = Arc<Mutex<Option<RawFd>>>;

pub(crate) struct BlockingSocket {
    fd: Slot,
    /// Unregisters the shutdown callback when dropped.
    _on_cancel: CallbackGuard,
    /// The timeouts the socket carries now (`None`: not known yet), so they
    /// are set only when they change.
    rcv_timeout: Option<Option<Duration>>,
    snd_timeout: Option<Option<Duration>>,
}

#[allow(unsafe_code)]
fn register(slot: &Slot, cancel: &Cancel) -> CallbackGuard {
    let slot = slot.clone();
    cancel.on_cancel(move |_| {
        let fd = slot.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(raw) = *fd {
            // SAFETY: the slot holds the descriptor only while the `Conn`
            // owns its open stream; the `Conn` empties the slot under this
            // lock before the stream can close or be replaced, and we hold
            // the lock for the whole use.
            let fd = unsafe { BorrowedFd::borrow_raw(raw) };
            let _ = rustix::net::shutdown(fd, rustix::net::Shutdown::Both);
        }
    })
}

impl BlockingSocket {
    /// Put `stream` in blocking mode and shut it down when `cancel` fires.
    pub(crate) fn enable(stream: &TcpStream, cancel: &Cancel) -> io::Result<Self> {
        stream.set_nonblocking(false)?;
        let fd: Slot = Arc::new(Mutex::new(Some(stream.as_raw_fd())));
        let on_cancel = register(&fd, cancel);
        Ok(BlockingSocket {
            fd,
            _on_cancel: on_cancel,
            rcv_timeout: None,
            snd_timeout: None,
        })
    }

    /// Leave blocking mode: a cancel no longer touches the descriptor, which
    /// goes back to non-blocking without socket timeouts. Call while the
    /// stream is still the one this was enabled on.
    #[allow(unsafe_code)]
    pub(crate) fn leave(self) {
        let raw = self.fd.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(raw) = raw else { return };
        // SAFETY: the caller's stream, still open, owns this descriptor.
        let fd = unsafe { BorrowedFd::borrow_raw(raw) };
        let restore = || -> io::Result<()> {
            if self.rcv_timeout != Some(None) {
                sockopt::set_socket_timeout(fd, SockTimeout::Recv, None)?;
            }
            if self.snd_timeout != Some(None) {
                sockopt::set_socket_timeout(fd, SockTimeout::Send, None)?;
            }
            Ok(rustix::io::ioctl_fionbio(fd, true)?)
        };
        if let Err(e) = restore() {
            log::warn!("stead: cannot make a socket non-blocking again: {e}");
        }
    }

    /// One read or write (`call(dontwait)` runs the syscall, with
    /// `MSG_DONTWAIT` when asked), blocking up to `timeout` and until
    /// `cancel` fires.
    pub(crate) fn run(
        &mut self,
        fd: BorrowedFd<'_>,
        cancel: &Cancel,
        interest: Interest,
        timeout: Option<Duration>,
        mut call: impl FnMut(bool) -> rustix::io::Result<usize>,
    ) -> io::Result<usize> {
        let timed_out = || -> io::Error {
            Timeout {
                op: interest.op(),
                after: timeout.unwrap_or_default(),
            }
            .into()
        };
        // Someone wants to know when this thread blocks (a hang-up watch, a
        // pool or event loop observer): try without blocking first and
        // announce the block only if it happens, as the non-blocking path does.
        let zero = timeout == Some(Duration::ZERO);
        let _section = if zero || crate::blocking::would_notify() {
            loop {
                match call(true) {
                    Err(Errno::INTR) => {}
                    Err(Errno::AGAIN) if zero => return Err(timed_out()),
                    Err(Errno::AGAIN) => break Some(crate::blocking::enter()),
                    r => return finish(r, cancel, interest),
                }
            }
        } else {
            None
        };
        // The kernel's timer gets the nearer of the operation's timeout and
        // the token's deadline (without a deadline, the same value every
        // time: no `setsockopt` per call).
        let mut left = match (timeout, cancel.remaining()) {
            (Some(t), Some(r)) => Some(t.min(r)),
            (t, r) => t.or(r),
        };
        let until = left.map(|l| Instant::now() + l);
        loop {
            if left.is_some_and(|l| l.is_zero()) {
                cancel.check()?;
                return Err(timed_out());
            }
            self.set_timeout(fd, interest, left)?;
            match call(false) {
                // A signal: go again with the time left, not a fresh timeout.
                Err(Errno::INTR) => {
                    cancel.check()?;
                    left = until.map(|u| u.saturating_duration_since(Instant::now()));
                }
                // A blocking call says `EAGAIN` only when its timer ran out,
                // unless someone made the shared descriptor non-blocking.
                Err(Errno::AGAIN) if until.is_none_or(|u| Instant::now() < u) => {
                    cancel.check()?;
                    return Err(io::Error::new(
                        io::ErrorKind::WouldBlock,
                        "stead: the socket of a blocking-syscall Conn was made non-blocking elsewhere",
                    ));
                }
                Err(Errno::AGAIN) => {
                    cancel.check()?;
                    return Err(timed_out());
                }
                r => return finish(r, cancel, interest),
            }
        }
    }

    fn set_timeout(
        &mut self,
        fd: BorrowedFd<'_>,
        interest: Interest,
        t: Option<Duration>,
    ) -> io::Result<()> {
        let (current, id) = match interest {
            Interest::Read => (&mut self.rcv_timeout, SockTimeout::Recv),
            Interest::Write => (&mut self.snd_timeout, SockTimeout::Send),
        };
        if *current != Some(t) {
            sockopt::set_socket_timeout(fd, id, t)?;
            *current = Some(t);
        }
        Ok(())
    }
}

/// A cancel's shutdown shows as end of input or an error: report it as the
/// cancellation it is.
pub(crate) fn finish(
    r: rustix::io::Result<usize>,
    cancel: &Cancel,
    interest: Interest,
) -> io::Result<usize> {
    match r {
        Ok(0) if interest == Interest::Read => {
            cancel.check()?;
            Ok(0)
        }
        Ok(n) => Ok(n),
        Err(e) => {
            cancel.check()?;
            Err(e.into())
        }
    }
}

impl Drop for BlockingSocket {
    fn drop(&mut self) {
        // The stream closes next: a late cancel must not touch its number.
        *self.fd.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}
