//! The connection's read buffer.

/// Bytes received and not yet used: `buf[start..end]`.
///
/// INVARIANT: `start <= end <= buf.len()`; `buf` is fully initialised (its
/// length is its usable capacity), so reads go straight into it without
/// `unsafe`.
pub(crate) struct ReadBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    base: usize,
}

impl std::fmt::Debug for ReadBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadBuf")
            .field("len", &self.len())
            .field("capacity", &self.buf.len())
            .finish()
    }
}

impl ReadBuf {
    /// A buffer of `cap` bytes; it grows only while a request head is
    /// larger, and shrinks back when emptied.
    pub(crate) fn new(cap: usize) -> Self {
        ReadBuf {
            buf: vec![0; cap],
            start: 0,
            end: 0,
            base: cap,
        }
    }

    #[inline]
    pub(crate) fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.end - self.start
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Drop `n` bytes from the front.
    #[inline]
    pub(crate) fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.len());
        self.start += n.min(self.len());
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Room to read into, at least `min` bytes (compacting, then growing).
    pub(crate) fn spare(&mut self, min: usize) -> &mut [u8] {
        if self.buf.len() - self.end < min {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.buf.len() - self.end < min {
                self.buf.resize(self.end + min, 0);
                let cap = self.buf.capacity();
                self.buf.resize(cap, 0);
            }
        }
        &mut self.buf[self.end..]
    }

    /// `n` bytes were read into [`spare`](ReadBuf::spare).
    #[inline]
    pub(crate) fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }

    /// Append bytes.
    #[cfg(test)]
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        let spare = self.spare(bytes.len());
        spare[..bytes.len()].copy_from_slice(bytes);
        self.filled(bytes.len());
    }

    /// Move this buffer out (for a parked session), leaving an empty one
    /// that allocates its usual size on first use.
    pub(crate) fn take(&mut self) -> ReadBuf {
        std::mem::replace(
            self,
            ReadBuf {
                buf: Vec::new(),
                start: 0,
                end: 0,
                base: self.base,
            },
        )
    }

    pub(crate) fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// Give memory back after an unusually large head.
    pub(crate) fn shrink(&mut self) {
        if self.is_empty() && self.buf.len() != self.base {
            // Larger after an unusual head, or smaller (taken by a parked
            // session): back to the usual size.
            self.buf = vec![0; self.base];
            self.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compacts_and_grows() {
        let mut b = ReadBuf::new(8);
        b.spare(1)[..8].copy_from_slice(b"abcdefgh");
        b.filled(8);
        b.consume(6);
        assert_eq!(b.data(), b"gh");
        let s = b.spare(4);
        assert!(s.len() >= 4);
        s[..2].copy_from_slice(b"ij");
        b.filled(2);
        assert_eq!(b.data(), b"ghij");
        let s = b.spare(100);
        assert!(s.len() >= 100);
        assert_eq!(b.data(), b"ghij");
        b.consume(4);
        b.shrink();
        assert_eq!(b.spare(1).len(), 8);
    }

    #[test]
    fn take_leaves_an_empty_buffer_of_the_same_size_class() {
        let mut b = ReadBuf::new(8);
        b.push(b"xyabc");
        b.consume(2);
        let taken = b.take();
        assert_eq!(taken.data(), b"abc");
        assert!(b.is_empty());
        b.shrink();
        assert_eq!(b.spare(1).len(), 8);
        b.push(b"z");
        assert_eq!(b.data(), b"z");
    }
}
