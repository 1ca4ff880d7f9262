//! Its own test binary, because it lowers the process's file-descriptor limit:
//! accept fails with EMFILE, the server backs off without spinning, logs once,
//! and serves again once descriptors are free.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, unbounded};
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
use rustix::time::{ClockId, clock_gettime};
use stead_core::{Conn, Server};

/// Forwards every log line to a channel so the test can wait on events.
struct ChannelLogger(Sender<String>);

impl log::Log for ChannelLogger {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, r: &log::Record<'_>) {
        let _ = self.0.send(format!("{} {}", r.level(), r.args()));
    }
    fn flush(&self) {}
}

fn wait_for_log(rx: &Receiver<String>, needle: &str) -> String {
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("no log line containing {needle:?}"));
        if line.contains(needle) {
            return line;
        }
    }
}

fn cpu_time() -> Duration {
    let t = clock_gettime(ClockId::ProcessCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

#[test]
fn accept_backs_off_on_emfile_and_recovers() {
    let (tx, logs) = unbounded();
    log::set_logger(Box::leak(Box::new(ChannelLogger(tx)))).unwrap();
    log::set_max_level(log::LevelFilter::Debug);

    // A connection limit that cannot fit the descriptor limit is lowered up
    // front, with a warning naming the numbers (here 2 descriptors per
    // connection, as for a non-blocking thread-mode one; 64 kept for the rest).
    let saved = getrlimit(Resource::Nofile);
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(1000),
            maximum: saved.maximum,
        },
    )
    .unwrap();
    assert_eq!(stead_core::fit_fd_limit(100, 2), 100);
    assert_eq!(stead_core::fit_fd_limit(10_000, 2), 468);
    let line = wait_for_log(&logs, "open-file limit");
    assert!(line.contains("max_connections 10000"), "{line}");
    assert!(line.contains("at most 468"), "{line}");
    setrlimit(Resource::Nofile, saved).unwrap();

    let handle = Server::bind("127.0.0.1:0").unwrap().serve(|mut c: Conn| {
        let mut req = [0u8; 5];
        if c.read_exact(&mut req).is_ok() && &req == b"ping\n" {
            let _ = c.write_all(b"pong\n");
        }
    });
    let addr = handle.local_addr();

    // Leave room for a few descriptors, then use them all up.
    let old = getrlimit(Resource::Nofile);
    let open_now = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(open_now + 16),
            maximum: old.maximum,
        },
    )
    .unwrap();
    let mut hog = Vec::new();
    while let Ok(f) = File::open("/dev/null") {
        hog.push(f);
    }
    // Free one for the client's own socket; the server has none left. A
    // server thread may take the freed descriptor first (the accept thread
    // creates its wake-up eventfd at its first wait): free another then.
    let mut client = loop {
        assert!(hog.pop().is_some(), "no descriptor left to free");
        match TcpStream::connect(addr) {
            Ok(c) => break c,
            Err(e) if e.raw_os_error() == Some(24) => continue, // EMFILE
            Err(e) => panic!("connect: {e}"),
        }
    };
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    client.write_all(b"ping\n").unwrap();
    let line = wait_for_log(&logs, "accept failed");
    assert!(
        line.contains("file descriptors"),
        "the log explains: {line}"
    );

    // While exhausted, the accept loop sleeps between attempts: no spin.
    let cpu0 = cpu_time();
    let window = Duration::from_millis(500);
    std::thread::sleep(window); // a measurement window, not synchronisation
    let used = cpu_time() - cpu0;
    assert!(
        used < window / 5,
        "accept loop burned {used:?} of CPU in {window:?}"
    );
    assert!(handle.stats().accept_errors >= 2, "it kept retrying");

    // Free the descriptors: the waiting connection is accepted and served.
    drop(hog);
    let mut r = BufReader::new(client);
    let mut s = String::new();
    r.read_line(&mut s).unwrap();
    assert_eq!(s, "pong\n");
    wait_for_log(&logs, "accept recovered");
    setrlimit(Resource::Nofile, old).unwrap();
    handle.shutdown(Duration::from_secs(5));
}
