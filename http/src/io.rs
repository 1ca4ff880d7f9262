//! The transport the connection state machine runs over: a plain
//! [`Conn`], a TLS session over one, or memory (fuzzing and simulation).

use std::io::{self, IoSlice, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use stead_core::Conn;

/// What the connection state machine needs from a transport.
///
/// `read`/`write_*` block (honouring the timeouts and the connection's
/// token); `try_read` never blocks.
pub(crate) trait Io: Send {
    /// Read at least one byte, blocking up to the read timeout; `Ok(0)` at EOF.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Read without blocking: `WouldBlock` when nothing is available now.
    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Block until a read would not block (up to the read timeout).
    fn wait_readable(&mut self) -> io::Result<()>;
    /// Write all of `buf`.
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()>;
    /// Write all of `a` then all of `b`, in one syscall where possible.
    fn write_all2(&mut self, a: &[u8], b: &[u8]) -> io::Result<()>;
    /// Push out anything buffered (TLS records).
    fn flush(&mut self) -> io::Result<()>;
    /// Timeout for each blocking read.
    fn set_read_timeout(&mut self, t: Option<Duration>);
    /// See [`Conn::mark_idle`].
    fn mark_idle(&self) -> bool;
    /// See [`Conn::mark_active`].
    fn mark_active(&self) -> bool;
    /// See [`Conn::is_draining`].
    fn is_draining(&self) -> bool;
    /// The connection's token.
    fn cancel(&self) -> &stead_core::Cancel;
    /// Finish the write side (TLS `close_notify`, then a TCP half-close).
    fn close_write(&mut self);
    /// A handler starts: cancel the token if the client goes away while it
    /// blocks (see [`Conn::begin_hangup_watch`]).
    fn begin_hangup_watch(&mut self) {}
    /// The handler returned.
    fn end_hangup_watch(&mut self) {}
}

/// Write `a` and `b` with vectored writes until both are out.
pub(crate) fn write_all2<W: Write + ?Sized>(
    w: &mut W,
    mut a: &[u8],
    mut b: &[u8],
) -> io::Result<()> {
    while !a.is_empty() {
        let n = w.write_vectored(&[IoSlice::new(a), IoSlice::new(b)])?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        if n < a.len() {
            a = &a[n..];
        } else {
            b = &b[n - a.len()..];
            a = &[];
        }
    }
    if !b.is_empty() {
        w.write_all(b)?;
    }
    Ok(())
}

impl Io for Conn<TcpStream> {
    #[inline]
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Read::read(self, buf)
    }

    #[inline]
    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Conn::try_read(self, buf)
    }

    fn wait_readable(&mut self) -> io::Result<()> {
        if self.blocks_in_syscalls() {
            // The read that follows waits itself (same timeout, same
            // cancellation): polling first would only add a syscall.
            return Ok(());
        }
        Conn::wait_readable(self)
    }

    #[inline]
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        Write::write_all(self, buf)
    }

    fn write_all2(&mut self, a: &[u8], b: &[u8]) -> io::Result<()> {
        write_all2(self, a, b)
    }

    #[inline]
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    #[inline]
    fn set_read_timeout(&mut self, t: Option<Duration>) {
        Conn::set_read_timeout(self, t)
    }

    #[inline]
    fn mark_idle(&self) -> bool {
        Conn::mark_idle(self)
    }

    #[inline]
    fn mark_active(&self) -> bool {
        Conn::mark_active(self)
    }

    #[inline]
    fn is_draining(&self) -> bool {
        Conn::is_draining(self)
    }

    fn cancel(&self) -> &stead_core::Cancel {
        Conn::cancel(self)
    }

    fn close_write(&mut self) {
        let _ = self.shutdown(std::net::Shutdown::Write);
    }

    #[inline]
    fn begin_hangup_watch(&mut self) {
        Conn::begin_hangup_watch(self)
    }

    #[inline]
    fn end_hangup_watch(&mut self) {
        Conn::end_hangup_watch(self)
    }
}

/// An in-memory transport: input arrives in the given pieces, output is
/// collected. Reading past the last piece is EOF. For fuzzing and for
/// deterministic tests of the whole state machine.
pub(crate) struct MemoryIo<'a> {
    pieces: std::slice::Iter<'a, &'a [u8]>,
    current: &'a [u8],
    pub(crate) output: Vec<u8>,
    cancel: stead_core::Cancel,
    /// Event flavour: `try_read` reports `WouldBlock` at the end of each
    /// piece (the next piece is the next readiness).
    event: bool,
    /// `WouldBlock` was reported at the end of the current piece.
    yielded: bool,
}

impl<'a> MemoryIo<'a> {
    /// Input pieces not read at all yet.
    #[cfg(test)]
    pub(crate) fn unread_pieces(&self) -> usize {
        self.pieces.len()
    }

    pub(crate) fn new(pieces: &'a [&'a [u8]]) -> Self {
        MemoryIo {
            pieces: pieces.iter(),
            current: &[],
            output: Vec::new(),
            cancel: stead_core::Cancel::new(),
            event: false,
            yielded: false,
        }
    }

    /// Input arriving one piece per readiness, for the event mode's path.
    pub(crate) fn new_event(pieces: &'a [&'a [u8]]) -> Self {
        MemoryIo {
            event: true,
            ..MemoryIo::new(pieces)
        }
    }
}

impl Io for MemoryIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.pieces.next() {
                Some(p) => self.current = p,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current = &self.current[n..];
        Ok(n)
    }

    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.event
            && self.current.is_empty()
            && !self.yielded
            && !self.pieces.as_slice().is_empty()
        {
            self.yielded = true;
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.yielded = false;
        self.read(buf)
    }

    fn wait_readable(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.output.extend_from_slice(buf);
        Ok(())
    }

    fn write_all2(&mut self, a: &[u8], b: &[u8]) -> io::Result<()> {
        self.output.extend_from_slice(a);
        self.output.extend_from_slice(b);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn set_read_timeout(&mut self, _: Option<Duration>) {}

    fn mark_idle(&self) -> bool {
        true
    }

    fn mark_active(&self) -> bool {
        true
    }

    fn is_draining(&self) -> bool {
        false
    }

    fn cancel(&self) -> &stead_core::Cancel {
        &self.cancel
    }

    fn close_write(&mut self) {}
}
