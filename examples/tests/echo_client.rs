//! The echo (event loop) and client (ureq) examples, black-box.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::Proc;
use rustix::process::Signal;

#[test]
fn echo_echoes_closes_idle_connections_and_stops_on_sigterm() {
    let p = Proc::start(
        env!("CARGO_BIN_EXE_echo"),
        &["--addr", "127.0.0.1:0", "--idle-secs", "1"],
    );
    let mut a = TcpStream::connect(p.addr).unwrap();
    a.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    let writer = {
        let mut w = a.try_clone().unwrap();
        let big = big.clone();
        std::thread::spawn(move || w.write_all(&big).unwrap())
    };
    let mut got = vec![0u8; big.len()];
    a.read_exact(&mut got).unwrap();
    writer.join().unwrap();
    assert_eq!(
        got, big,
        "large echo intact (the server buffers what we cannot take yet)"
    );

    // An idle connection is closed by the idle timer within ~1-2 s.
    let mut idle = TcpStream::connect(p.addr).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let t0 = Instant::now();
    assert_eq!(idle.read(&mut [0u8; 1]).unwrap(), 0);
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );

    p.signal(Signal::HUP);
    p.signal(Signal::TERM);
    let (status, out) = p.wait(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{out}");
    assert!(out.contains("stopped"), "{out}");
}

#[test]
fn client_reports_throughput_against_hello() {
    let hello = Proc::start(env!("CARGO_BIN_EXE_hello"), &["--addr", "127.0.0.1:0"]);
    let out = Command::new(env!("CARGO_BIN_EXE_client"))
        .args(["--url", &hello.url("/"), "--threads", "2", "--secs", "0.5"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(" req/s, 0 errors"), "{text}");
    let n: u64 = text.split_whitespace().next().unwrap().parse().unwrap();
    assert!(n > 0, "{text}");
    hello.signal(Signal::TERM);
    let (status, _) = hello.wait(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
}
