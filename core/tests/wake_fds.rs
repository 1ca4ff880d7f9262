//! Its own test binary (it counts the process's open descriptors): blocking
//! waits use the waiting thread's eventfd, not one per connection or token.

use std::io::{ErrorKind, Read};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use stead_core::{Cancel, Conn};

fn pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (s, _) = l.accept().unwrap();
    (c, s)
}

#[test]
fn blocking_waits_use_one_wake_fd_per_thread_not_per_connection() {
    thread::spawn(|| {
        let count = || std::fs::read_dir("/proc/self/fd").unwrap().count();
        let mut conns = Vec::new();
        let (_first_client, first) = pair();
        let mut first = Conn::new(first, Cancel::new()).unwrap();
        first.set_read_timeout(Some(Duration::from_millis(1)));
        let _ = first.read(&mut [0u8; 1]); // creates this thread's eventfd
        let before = count();
        for _ in 0..50 {
            let (c, s) = pair();
            let mut conn = Conn::new(s, Cancel::new()).unwrap();
            conn.set_read_timeout(Some(Duration::from_millis(1)));
            assert_eq!(
                conn.read(&mut [0u8; 1]).unwrap_err().kind(),
                ErrorKind::TimedOut
            );
            conns.push((c, conn));
        }
        // Two sockets per pair; no descriptor per blocked connection.
        assert_eq!(count() - before, 100);
    })
    .join()
    .unwrap();
}
