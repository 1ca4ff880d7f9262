//! Start an example binary on port 0, learn its address from the startup
//! line, signal it, and wait for its exit with a deadline.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub struct Proc {
    pub child: Child,
    pub addr: SocketAddr,
    pub first_line: String,
    rest: crossbeam_channel::Receiver<String>,
}

impl Proc {
    /// Start `bin` with `args`; waits (up to 30 s) for "listening on SCHEME://ADDR".
    pub fn start(bin: &str, args: &[&str]) -> Proc {
        let mut child = Command::new(bin)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {bin}: {e}"));
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = crossbeam_channel::unbounded();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("{bin} printed no startup line"));
        let addr = line
            .split("://")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        Proc {
            child,
            addr,
            first_line: line,
            rest: rx,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn signal(&self, sig: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        rustix::process::kill_process(pid, sig).unwrap();
    }

    /// Wait for the exit (killing it after `limit`), returning the status and the rest of stdout.
    pub fn wait(mut self, limit: Duration) -> (ExitStatus, String) {
        let deadline = Instant::now() + limit;
        let mut out = String::new();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                while let Ok(l) = self.rest.recv_timeout(Duration::from_millis(200)) {
                    out.push_str(&l);
                    out.push('\n');
                }
                return (status, out);
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!("process did not exit within {limit:?}");
            }
            // Waiting for another process: block on its output with a timeout.
            if let Ok(l) = self.rest.recv_timeout(Duration::from_millis(20)) {
                out.push_str(&l);
                out.push('\n');
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A ureq agent that returns 4xx/5xx as responses, with a 10 s timeout.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

/// Read a whole HTTP/1.1 response from a raw stream that the server closes
/// or that carries `Content-Length`.
pub fn read_response(s: &mut std::net::TcpStream) -> String {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).unwrap_or(0);
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text[..end].lines().find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse::<usize>().unwrap())
            });
            if let Some(len) = len
                && buf.len() >= end + 4 + len
            {
                break;
            }
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}
