//! Shared test helpers: a line-based session ("ping" -> "pong") with
//! commands that block, spin, panic or park, and small client helpers.
#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crossbeam_channel::Sender;
use stead_core::Conn;
use stead_eventloop::{Session, SessionFactory, Verdict};

/// What a [`Lines`] session tells the test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// A handler is about to block in `Cancel::sleep` for the given ms.
    Sleeping(u64),
    /// A handler is about to block in `std::thread::sleep` (unannounced).
    Spinning(u64),
}

/// Commands, one per line:
/// - `ping` -> `pong`
/// - `sleep MS` -> `Cancel::sleep` on the connection token (a blocking
///   section stead announces) -> `slept` or `cancelled`
/// - `spin MS` -> `std::thread::sleep` (blocking nobody announces) -> `spun`
/// - `park MS` -> `ok`, then park with an MS timeout (on timeout: `timeout`)
/// - `panic` -> panics
/// - `close` -> closes
#[derive(Clone)]
pub struct LinesFactory {
    pub notes: Option<Sender<Note>>,
}

impl LinesFactory {
    pub fn new() -> Self {
        LinesFactory { notes: None }
    }
}

impl SessionFactory for LinesFactory {
    type Session = Lines;
    fn new_session(&self, _peer: SocketAddr) -> Lines {
        Lines {
            partial: Vec::new(),
            notes: self.notes.clone(),
        }
    }
}

pub struct Lines {
    partial: Vec<u8>,
    notes: Option<Sender<Note>>,
}

impl Lines {
    fn note(&self, n: Note) {
        if let Some(tx) = &self.notes {
            let _ = tx.send(n);
        }
    }

    /// Handle one line; `Some(verdict)` ends the callback.
    fn line(&mut self, conn: &mut Conn<TcpStream>, line: &str) -> Option<Verdict> {
        let mut words = line.split_whitespace();
        let cmd = words.next().unwrap_or("");
        let arg: u64 = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
        let reply = match cmd {
            "ping" => "pong\n",
            "sleep" => {
                self.note(Note::Sleeping(arg));
                match conn.cancel().sleep(Duration::from_millis(arg)) {
                    Ok(()) => "slept\n",
                    Err(_) => "cancelled\n",
                }
            }
            "spin" => {
                self.note(Note::Spinning(arg));
                std::thread::sleep(Duration::from_millis(arg));
                "spun\n"
            }
            "park" => {
                if conn.write_all(b"ok\n").is_err() {
                    return Some(Verdict::Close);
                }
                return Some(Verdict::Park {
                    timeout: Some(Duration::from_millis(arg)),
                });
            }
            "panic" => panic!("the test asked for a panic"),
            "close" => return Some(Verdict::Close),
            _ => "what?\n",
        };
        if conn.write_all(reply.as_bytes()).is_err() {
            return Some(Verdict::Close);
        }
        None
    }
}

impl Session for Lines {
    fn on_readable(&mut self, conn: &mut Conn<TcpStream>) -> Verdict {
        let mut buf = [0u8; 512];
        loop {
            match conn.get_mut().read(&mut buf) {
                Ok(0) => return Verdict::Close,
                Ok(n) => self.partial.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Verdict::Close,
            }
        }
        while let Some(pos) = self.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&line).trim().to_string();
            if let Some(v) = self.line(conn, &line) {
                return v;
            }
        }
        if self.partial.is_empty() {
            self.partial = Vec::new(); // idle connections hold no buffer
        }
        Verdict::Park { timeout: None }
    }

    fn on_timeout(&mut self, conn: &mut Conn<TcpStream>) -> Verdict {
        let _ = conn.write_all(b"timeout\n");
        Verdict::Close
    }
}

/// A client connection with a line reader.
pub struct Client {
    pub reader: BufReader<TcpStream>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Client {
            reader: BufReader::new(s),
        }
    }

    pub fn send(&mut self, line: &str) {
        self.reader
            .get_mut()
            .write_all(format!("{line}\n").as_bytes())
            .expect("send");
    }

    /// The next line (without the newline); `None` at end of stream.
    pub fn recv(&mut self) -> io::Result<Option<String>> {
        let mut s = String::new();
        match self.reader.read_line(&mut s)? {
            0 => Ok(None),
            _ => Ok(Some(s.trim_end().to_string())),
        }
    }

    pub fn ask(&mut self, line: &str) -> String {
        self.send(line);
        self.recv().expect("reply").expect("connection open")
    }

    pub fn set_read_timeout(&self, t: Duration) {
        self.reader.get_ref().set_read_timeout(Some(t)).unwrap();
    }
}

/// Number of threads in this process.
pub fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}
