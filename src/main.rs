use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};
use rustix::event::{poll, PollFd, PollFlags, eventfd, EventfdFlags};

fn main() {
    let mode = std::env::args().nth(1).unwrap();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = l.local_addr().unwrap();
    let n = 200_000;
    let mode2 = mode.clone();
    let srv = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_nodelay(true).unwrap();
        let efd = eventfd(0, EventfdFlags::NONBLOCK).unwrap();
        if mode2 != "block" { s.set_nonblocking(true).unwrap(); }
        let mut buf = [0u8; 64];
        loop {
            if mode2 == "poll" {
                loop {
                    let ts = rustix::time::Timespec { tv_sec: 60, tv_nsec: 0 };
                    let mut fds = [PollFd::from_borrowed_fd(s.as_fd(), PollFlags::IN), PollFd::from_borrowed_fd(efd.as_fd(), PollFlags::IN)];
                    poll(&mut fds, Some(&ts)).unwrap();
                    let _ = Instant::now();
                    match s.read(&mut buf) { Ok(0) => return, Ok(_) => break, Err(_) => continue }
                }
            } else if mode2 == "pollnt" {
                loop {
                    let mut fds = [PollFd::from_borrowed_fd(s.as_fd(), PollFlags::IN), PollFd::from_borrowed_fd(efd.as_fd(), PollFlags::IN)];
                    poll(&mut fds, None).unwrap();
                    match s.read(&mut buf) { Ok(0) => return, Ok(_) => break, Err(_) => continue }
                }
            } else {
                if s.read(&mut buf).unwrap() == 0 { return; }
            }
            s.write_all(b"pong").unwrap();
        }
    });
    let mut c = TcpStream::connect(a).unwrap();
    c.set_nodelay(true).unwrap();
    let mut buf = [0u8; 64];
    let t = Instant::now();
    for _ in 0..n { c.write_all(b"ping").unwrap(); c.read(&mut buf).unwrap(); }
    let el = t.elapsed();
    drop(c);
    srv.join().unwrap();
    println!("{mode}: {:.2} us/rt", el.as_secs_f64() * 1e6 / n as f64);
    let _ = Duration::ZERO;
}
