//! Sans-IO chunked transfer coding (RFC 9112 §7.1): an incremental,
//! strict decoder with bounded extensions and trailers, and the encoder
//! helpers responses use.

use std::fmt;
use std::ops::Range;

/// Why a chunked body was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkError(&'static str);

impl ChunkError {
    /// What was wrong.
    pub fn reason(&self) -> &'static str {
        self.0
    }
}

impl fmt::Display for ChunkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid chunked body: {}", self.0)
    }
}

impl std::error::Error for ChunkError {}

/// The result of one [`ChunkedDecoder::decode`] step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// Bytes of the input used (framing and data); drop them from the input.
    pub consumed: usize,
    /// Where in the input the body data of this step lies (may be empty).
    pub data: Range<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Start of a chunk-size line: a hex digit must follow.
    SizeStart,
    /// Inside the hex digits of the size.
    Size,
    /// Whitespace after the size: only more whitespace or `;` may follow.
    SizeWs,
    /// Inside chunk extensions, up to CR.
    Ext,
    /// CR of the size line seen: LF must follow.
    SizeLf,
    /// Chunk data.
    Data,
    /// After chunk data: CR must follow.
    DataCr,
    /// After the data's CR: LF must follow.
    DataLf,
    /// Start of a trailer field line, or the final empty line.
    TrailerStart,
    /// Inside a trailer field name.
    TrailerName,
    /// Inside a trailer field value.
    TrailerValue,
    /// CR of a trailer line seen: LF must follow.
    TrailerLf,
    /// CR of the final empty line seen: LF must follow.
    EndLf,
    /// The body is complete.
    Done,
}

/// Longest chunk-size, in hex digits (leading zeros included).
const MAX_SIZE_DIGITS: u8 = 32;

/// An incremental decoder for a chunked request body.
///
/// Feed it input as it arrives; each step consumes framing and at most one
/// run of data. Bare LF, whitespace other than before `;`, signs, `0x`,
/// size overflow, oversized extensions or trailers, obs-fold in trailers and
/// missing CRLF after data are all errors. Trailer fields are validated and
/// discarded.
///
/// ```
/// use stead_http::ChunkedDecoder;
/// let mut dec = ChunkedDecoder::new(16 * 1024, 16 * 1024);
/// let mut input: &[u8] = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-T: 1\r\n\r\n";
/// let mut body = Vec::new();
/// while !dec.is_done() {
///     let step = dec.decode(input, usize::MAX).unwrap();
///     body.extend_from_slice(&input[step.data.clone()]);
///     input = &input[step.consumed..];
/// }
/// assert_eq!(body, b"hello world");
/// assert!(input.is_empty());
/// ```
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    /// The chunk size being parsed, then the data left in the chunk.
    size: u64,
    digits: u8,
    ext_used: usize,
    max_ext: usize,
    trailer_used: usize,
    max_trailers: usize,
}

impl ChunkedDecoder {
    /// A decoder allowing `max_extensions` bytes of chunk extensions and
    /// `max_trailers` bytes of trailer section in total.
    pub fn new(max_extensions: usize, max_trailers: usize) -> Self {
        ChunkedDecoder {
            state: State::SizeStart,
            size: 0,
            digits: 0,
            ext_used: 0,
            max_ext: max_extensions,
            trailer_used: 0,
            max_trailers,
        }
    }

    /// Whether the terminating chunk and trailer section have been consumed.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Data bytes left in the current chunk (0 between chunks).
    pub fn chunk_remaining(&self) -> u64 {
        if self.state == State::Data {
            self.size
        } else {
            0
        }
    }

    /// Decode from the start of `input`.
    ///
    /// Stops after the first run of data (at most `max_data` bytes), when
    /// the input is used up, or when the body is complete; never consumes
    /// bytes after the end of the body. Returns how much input was used and
    /// where the data lies in it.
    pub fn decode(&mut self, input: &[u8], max_data: usize) -> Result<Decoded, ChunkError> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::SizeStart => match hex(b) {
                    Some(d) => {
                        self.size = u64::from(d);
                        self.digits = 1;
                        self.state = State::Size;
                    }
                    None => return Err(ChunkError("invalid chunk size")),
                },
                State::Size => match hex(b) {
                    Some(d) => {
                        self.digits += 1;
                        if self.digits > MAX_SIZE_DIGITS || self.size > (u64::MAX >> 4) {
                            return Err(ChunkError("chunk size too large"));
                        }
                        self.size = (self.size << 4) | u64::from(d);
                    }
                    None => match b {
                        b'\r' => self.state = State::SizeLf,
                        b';' => {
                            self.count_ext()?;
                            self.state = State::Ext;
                        }
                        b' ' | b'\t' => {
                            self.count_ext()?;
                            self.state = State::SizeWs;
                        }
                        _ => return Err(ChunkError("invalid chunk size")),
                    },
                },
                State::SizeWs => {
                    self.count_ext()?;
                    match b {
                        b' ' | b'\t' => {}
                        b';' => self.state = State::Ext,
                        _ => return Err(ChunkError("whitespace after chunk size")),
                    }
                }
                State::Ext => match b {
                    b'\r' => self.state = State::SizeLf,
                    b'\t' | 0x20..=0x7e | 0x80..=0xff => self.count_ext()?,
                    _ => return Err(ChunkError("invalid byte in chunk extension")),
                },
                State::SizeLf => {
                    if b != b'\n' {
                        return Err(ChunkError("chunk size line not ended by CRLF"));
                    }
                    self.state = if self.size == 0 {
                        State::TrailerStart
                    } else {
                        State::Data
                    };
                }
                State::Data => {
                    let avail = (input.len() - i) as u64;
                    let n = self.size.min(avail).min(max_data as u64) as usize;
                    if n == 0 {
                        break;
                    }
                    self.size -= n as u64;
                    if self.size == 0 {
                        self.state = State::DataCr;
                    }
                    return Ok(Decoded {
                        consumed: i + n,
                        data: i..i + n,
                    });
                }
                State::DataCr => {
                    if b != b'\r' {
                        return Err(ChunkError("chunk data not followed by CRLF"));
                    }
                    self.state = State::DataLf;
                }
                State::DataLf => {
                    if b != b'\n' {
                        return Err(ChunkError("chunk data not followed by CRLF"));
                    }
                    self.state = State::SizeStart;
                }
                State::TrailerStart => {
                    self.count_trailer()?;
                    match b {
                        b'\r' => self.state = State::EndLf,
                        b' ' | b'\t' => return Err(ChunkError("obs-fold in trailer")),
                        _ if is_tchar(b) => self.state = State::TrailerName,
                        _ => return Err(ChunkError("invalid trailer field")),
                    }
                }
                State::TrailerName => {
                    self.count_trailer()?;
                    match b {
                        b':' => self.state = State::TrailerValue,
                        _ if is_tchar(b) => {}
                        _ => return Err(ChunkError("invalid trailer field name")),
                    }
                }
                State::TrailerValue => {
                    self.count_trailer()?;
                    match b {
                        b'\r' => self.state = State::TrailerLf,
                        b'\t' | 0x20..=0x7e | 0x80..=0xff => {}
                        _ => return Err(ChunkError("invalid byte in trailer value")),
                    }
                }
                State::TrailerLf => {
                    self.count_trailer()?;
                    if b != b'\n' {
                        return Err(ChunkError("trailer line not ended by CRLF"));
                    }
                    self.state = State::TrailerStart;
                }
                State::EndLf => {
                    if b != b'\n' {
                        return Err(ChunkError("chunked body not ended by CRLF"));
                    }
                    self.state = State::Done;
                    return Ok(Decoded {
                        consumed: i + 1,
                        data: i + 1..i + 1,
                    });
                }
                State::Done => break,
            }
            i += 1;
        }
        Ok(Decoded {
            consumed: i,
            data: i..i,
        })
    }

    fn count_ext(&mut self) -> Result<(), ChunkError> {
        self.ext_used += 1;
        if self.ext_used > self.max_ext {
            return Err(ChunkError("chunk extensions too large"));
        }
        Ok(())
    }

    fn count_trailer(&mut self) -> Result<(), ChunkError> {
        self.trailer_used += 1;
        if self.trailer_used > self.max_trailers {
            return Err(ChunkError("trailers too large"));
        }
        Ok(())
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Append a chunk-size line (`<hex>\r\n`) for a chunk of `len` bytes.
///
/// ```
/// let mut out = Vec::new();
/// stead_http::write_chunk_size(&mut out, 255);
/// assert_eq!(out, b"ff\r\n");
/// ```
pub fn write_chunk_size(out: &mut Vec<u8>, len: usize) {
    let mut digits = [0u8; 16];
    let mut n = len;
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b"0123456789abcdef"[n & 0xf];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8]) -> Result<(Vec<u8>, usize), ChunkError> {
        let mut dec = ChunkedDecoder::new(64, 64);
        let mut out = Vec::new();
        let mut pos = 0;
        while !dec.is_done() {
            let step = dec.decode(&input[pos..], usize::MAX)?;
            out.extend_from_slice(&input[pos..][step.data.clone()]);
            if step.consumed == 0 {
                break;
            }
            pos += step.consumed;
        }
        assert!(dec.is_done(), "incomplete");
        Ok((out, pos))
    }

    #[test]
    fn valid_bodies() {
        assert_eq!(decode_all(b"0\r\n\r\n").unwrap(), (vec![], 5));
        assert_eq!(
            decode_all(b"3\r\nabc\r\n0\r\n\r\nNEXT").unwrap(),
            (b"abc".to_vec(), 13)
        );
        assert_eq!(
            decode_all(b"A\r\n0123456789\r\n000\r\n\r\n").unwrap().0,
            b"0123456789"
        );
        assert_eq!(
            decode_all(b"3 ;a=b\r\nabc\r\n0;x=\"y\"\r\nT: v\r\n\r\n")
                .unwrap()
                .0,
            b"abc"
        );
    }

    #[test]
    fn invalid_bodies() {
        for bad in [
            &b"-3\r\nabc\r\n0\r\n\r\n"[..],
            b"+3\r\nabc\r\n0\r\n\r\n",
            b"0x3\r\nabc\r\n0\r\n\r\n",
            b"3\nabc\r\n0\r\n\r\n",
            b"3\r\nabcX\r\n0\r\n\r\n",
            b"3\r\nabc\n0\r\n\r\n",
            b"3 \r\nabc\r\n0\r\n\r\n",
            b"\r\n",
            b"g\r\n",
            b"ffffffffffffffffff\r\n",
            b"3;\0\r\nabc\r\n0\r\n\r\n",
            b"0\r\n folded\r\n\r\n",
            b"0\r\nX : v\r\n\r\n",
            b"0\r\n\n",
        ] {
            assert!(
                decode_all(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long_ext = format!("1;{}\r\na\r\n0\r\n\r\n", "e".repeat(100));
        assert!(decode_all(long_ext.as_bytes()).is_err());
        let long_trailer = format!("0\r\nX: {}\r\n\r\n", "t".repeat(100));
        assert!(decode_all(long_trailer.as_bytes()).is_err());
    }

    #[test]
    fn byte_at_a_time() {
        let input = b"5\r\nhello\r\n1;e=1\r\n!\r\n0\r\nA: b\r\n\r\n";
        let mut dec = ChunkedDecoder::new(64, 64);
        let mut out = Vec::new();
        for i in 0..input.len() {
            let step = dec.decode(&input[i..i + 1], 1).unwrap();
            assert_eq!(step.consumed, 1);
            out.extend_from_slice(&input[i..i + 1][step.data]);
        }
        assert!(dec.is_done());
        assert_eq!(out, b"hello!");
    }

    #[test]
    fn chunk_size_encoding() {
        for n in [0usize, 1, 15, 16, 4096, usize::MAX] {
            let mut v = Vec::new();
            write_chunk_size(&mut v, n);
            assert_eq!(v, format!("{n:x}\r\n").into_bytes());
        }
    }
}
