//! The event-mode server holds 10,000 concurrent keep-alive connections with
//! `workers` + a few threads, and idles without CPU while they are open.
//!
//! The fd limit here is 20,000 per process (hard limit too, so it cannot be
//! raised), and 10,000 connections need 20,000 sockets: the client side runs
//! in a child process (this binary again, with `STEAD_10K_CLIENT` set).
//! `harness = false` so this binary can be its own client.

mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use crossbeam_channel::bounded;
use rustix::time::{ClockId, clock_gettime};
use stead_eventloop::EventServer;
use util::{LinesFactory, thread_count};

const N: usize = 10_000;

fn main() {
    if let Ok(addr) = std::env::var("STEAD_10K_CLIENT") {
        client(addr.parse().expect("address"));
        return;
    }
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let rss_before = rss_kib();
    let h = EventServer::builder()
        .workers(workers)
        .max_connections(N + 100)
        .backlog(4096)
        .bind("127.0.0.1:0")
        .expect("bind")
        .serve(LinesFactory::new());
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env("STEAD_10K_CLIENT", h.local_addr().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the client process");
    let mut to_child = child.stdin.take().unwrap();
    let from_child = child.stdout.take().unwrap();
    let (tx, rx) = bounded(4);
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(from_child).lines() {
            if tx.send(line.unwrap_or_default()).is_err() {
                break;
            }
        }
    });
    let expect = |want: &str| {
        let got = rx
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("no '{want}' from the client"));
        assert_eq!(got, want);
    };

    // Round 1: 10,000 connections, one request each.
    expect("round1 ok");
    let stats = h.stats();
    assert_eq!(stats.accepted, N as u64);
    assert_eq!(stats.active, N as u64);
    // main + reader + workers + acceptor + monitor.
    let threads = thread_count();
    let names: Vec<String> = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_string())
        .collect();
    println!(
        "{N} connections: {threads} threads in the server process ({workers} workers): {names:?}"
    );
    // main + reader + workers + acceptor + monitor = workers + 4. Allow two
    // spares: on this shared machine a worker preempted for more than the
    // 10 ms budget in the middle of a callback looks like a blocked handler,
    // and the monitor hands its shard to a spare (which idles, then exits).
    let es = h.event_stats();
    assert!(threads <= workers + 4 + 2, "{threads} threads");
    assert!(es.threads <= workers + 2, "{es:?}");
    let rss = rss_kib().saturating_sub(rss_before);
    println!(
        "RSS growth: {rss} KiB, {} bytes per connection",
        rss * 1024 / N
    );

    // Idle: 10,000 open connections cost no CPU. (A measurement window,
    // not synchronisation.)
    let cpu0 = cpu();
    std::thread::sleep(Duration::from_millis(300));
    let idle_cpu = cpu() - cpu0;
    println!("idle 300 ms with {N} connections: {idle_cpu:?} CPU");
    assert!(idle_cpu < Duration::from_millis(30), "{idle_cpu:?}");

    // Round 2 on the same connections: keep-alive.
    writeln!(to_child, "again").unwrap();
    expect("round2 ok");
    assert_eq!(h.stats().accepted, N as u64, "no reconnects");

    let report = h.shutdown(Duration::from_secs(2));
    println!("shutdown: {report}");
    assert_eq!(report.open_at_start, N);
    // (The last sessions may still be returning from round 2: they drain.)
    assert_eq!(report.idle_closed + report.drained, N);
    assert!(report.is_clean());
    writeln!(to_child, "closed?").unwrap();
    expect("closed ok");
    drop(to_child);
    assert!(child.wait().unwrap().success());
    reader.join().unwrap();
    println!("server_10k: ok");
}

fn client(addr: SocketAddr) {
    let mut conns: Vec<TcpStream> = (0..N)
        .map(|i| {
            let c = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {i}: {e}"));
            c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
            c
        })
        .collect();
    let round = |conns: &mut Vec<TcpStream>| {
        for c in conns.iter_mut() {
            c.write_all(b"ping\n").unwrap();
        }
        for c in conns.iter_mut() {
            let mut got = [0u8; 5];
            c.read_exact(&mut got).unwrap();
            assert_eq!(&got, b"pong\n");
        }
    };
    round(&mut conns);
    println!("round1 ok");
    let mut stdin = std::io::stdin().lock();
    let mut line = String::new();
    stdin.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "again");
    round(&mut conns);
    println!("round2 ok");
    line.clear();
    stdin.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "closed?");
    for c in &mut conns {
        assert_eq!(c.read(&mut [0u8; 1]).unwrap(), 0, "closed by the server");
    }
    println!("closed ok");
}

fn cpu() -> Duration {
    let t = clock_gettime(ClockId::ProcessCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

fn rss_kib() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
