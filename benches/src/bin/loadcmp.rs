//! HTTP load comparison: stead's `hello` (thread and event modes) against the
//! hyper twin (`hyper_hello`), same machine, same run, interleaved rounds.
//! `std_hello` (plain `std` thread per connection, no timeouts or
//! cancellation) runs too, as the floor of the thread-per-connection model:
//! it separates what the model costs from what stead's thread mode adds.
//!
//! ```text
//! cargo run --release -p stead-benches --bin loadcmp -- --quick      # < 3 minutes
//! cargo run --release -p stead-benches --bin loadcmp -- --write      # full run, rewrites BENCHMARKS.md + chart
//! ```
//!
//! Options: `--conns 50,500,5000`, `--secs 5`, `--rounds 3`, `--idle 10000`
//! (connections for the idle-memory test, 0 to skip), `--client-threads 2`,
//! `--workers 2`, `--servers stead-threads,std-threads,stead-event,hyper`, `--no-build`,
//! `--no-wrk` (by default, when `wrk` is installed, each cell is also measured
//! with it right after the built-in generator, in its own column).
//!
//! The load generator is built in: each client thread drives its share of
//! keep-alive connections through its own epoll, one request in flight per
//! connection (closed loop), and records every latency. Loopback only; every
//! run is bounded by `--secs`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::event::epoll;

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: loadcmp\r\n\r\n";
const BODY: &[u8] = b"Hello, World!";

#[derive(Clone, Debug)]
struct Opts {
    conns: Vec<usize>,
    secs: f64,
    warmup: f64,
    rounds: usize,
    idle: usize,
    client_threads: usize,
    workers: usize,
    servers: Vec<String>,
    build: bool,
    write: bool,
    /// Also measure each cell with `wrk` (on when `wrk` is installed).
    wrk: bool,
}

fn parse_opts() -> Opts {
    let mut o = Opts {
        conns: vec![50, 500, 5000],
        secs: 5.0,
        warmup: 1.0,
        rounds: 3,
        idle: 10_000,
        client_threads: 2,
        workers: 2,
        servers: vec![
            "stead-threads".into(),
            "std-threads".into(),
            "stead-event".into(),
            "hyper".into(),
        ],
        build: true,
        write: false,
        wrk: have_wrk(),
    };
    let mut args = std::env::args().skip(1);
    let list = |v: Option<String>| -> Vec<String> {
        v.expect("a comma-separated list")
            .split(',')
            .map(str::to_string)
            .collect()
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => {
                o.conns = vec![50, 500];
                o.secs = 3.0;
                o.warmup = 0.5;
                o.rounds = 2;
                o.idle = 2_000;
            }
            "--conns" => {
                o.conns = list(args.next())
                    .iter()
                    .map(|s| s.parse().expect("--conns N,N"))
                    .collect()
            }
            "--secs" => o.secs = args.next().and_then(|v| v.parse().ok()).expect("--secs S"),
            "--rounds" => {
                o.rounds = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--rounds N")
            }
            "--idle" => o.idle = args.next().and_then(|v| v.parse().ok()).expect("--idle N"),
            "--client-threads" => {
                o.client_threads = args.next().and_then(|v| v.parse().ok()).expect("N")
            }
            "--workers" => o.workers = args.next().and_then(|v| v.parse().ok()).expect("N"),
            "--servers" => o.servers = list(args.next()),
            "--no-build" => o.build = false,
            "--no-wrk" => o.wrk = false,
            "--write" => o.write = true,
            "--help" | "-h" => {
                println!(
                    "{}",
                    include_str!("loadcmp.rs")
                        .lines()
                        .take_while(|l| l.starts_with("//!"))
                        .map(|l| l.trim_start_matches("//!").trim_start_matches(' '))
                        .collect::<Vec<_>>()
                        .join("\n")
                );
                std::process::exit(0);
            }
            other => {
                eprintln!("loadcmp: unknown argument {other} (try --help)");
                std::process::exit(2);
            }
        }
    }
    o
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("benches/ has a parent")
        .to_path_buf()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"))
        .join("release")
}

fn build() {
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(workspace())
        .args([
            "build",
            "--release",
            "-q",
            "-p",
            "stead-examples",
            "--bin",
            "hello",
            "-p",
            "stead-benches",
            "--bin",
            "hyper_hello",
            "--bin",
            "std_hello",
        ])
        .status()
        .expect("run cargo build");
    assert!(status.success(), "building the servers failed");
}

struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start(name: &str, workers: usize) -> Server {
        let dir = target_dir();
        let w = workers.to_string();
        let mut cmd = match name {
            "stead-threads" | "stead-event" => {
                let mut c = Command::new(dir.join("hello"));
                let mode = name.trim_start_matches("stead-");
                c.args(["--addr", "127.0.0.1:0", "--mode", mode, "--workers", &w]);
                c.args(["--max-connections", "15000"]);
                c
            }
            "hyper" => {
                let mut c = Command::new(dir.join("hyper_hello"));
                c.args(["--addr", "127.0.0.1:0", "--workers", &w]);
                c
            }
            "std-threads" => {
                let mut c = Command::new(dir.join("std_hello"));
                c.args(["--addr", "127.0.0.1:0"]);
                c
            }
            other => panic!("unknown server {other}"),
        };
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .env("RUST_LOG", "error")
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e} (build it, or drop --no-build)"));
        let mut out = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        let addr = loop {
            line.clear();
            if out.read_line(&mut line).expect("read server stdout") == 0 {
                panic!("{name} exited before printing its address");
            }
            if let Some(rest) = line.split("http://").nth(1) {
                let a = rest.split_whitespace().next().expect("address");
                break a.trim_end_matches('/').parse().expect("a socket address");
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = out.read_to_end(&mut sink);
        });
        Server { child, addr }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// utime + stime in seconds (USER_HZ is 100 in /proc on Linux).
    fn cpu_secs(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        let after = stat.rsplit(')').next().unwrap_or("");
        let f: Vec<&str> = after.split_whitespace().collect();
        let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
            + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
        ticks as f64 / 100.0
    }

    fn status_kb(&self, key: &str) -> u64 {
        status_kb(self.pid(), key)
    }

    fn threads(&self) -> u64 {
        self.status_kb("Threads:")
    }

    fn stop(mut self) {
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_raw(self.pid() as i32).expect("pid"),
            rustix::process::Signal::KILL,
        );
        let _ = self.child.wait();
    }
}

/// A numeric field of `/proc/PID/status` (kB for memory fields).
fn status_kb(pid: u32, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A server's points for the chart: (connections, req/s, p99 ms).
type Series = (String, Vec<(usize, f64, f64)>);

/// One client connection's state.
struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
    filled: usize,
    sent: Instant,
}

impl Client {
    /// Whether `buf` holds a whole response; consumes it.
    fn complete(&mut self) -> Option<bool> {
        let data = &self.buf[..self.filled];
        let end = data.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
        let head = std::str::from_utf8(&data[..end]).ok()?;
        let ok = head.starts_with("HTTP/1.1 200");
        let len = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())?
            })
            .unwrap_or(0);
        if self.filled < end + len {
            return None;
        }
        let ok = ok && &data[end..end + len] == BODY;
        self.buf.copy_within(end + len..self.filled, 0);
        self.filled -= end + len;
        Some(ok)
    }
}

#[derive(Default)]
struct LoadResult {
    requests: u64,
    errors: u64,
    reconnects: u64,
    latencies_us: Vec<u32>,
    secs: f64,
}

fn drive(addr: SocketAddr, conns: usize, warmup: Duration, secs: Duration) -> LoadResult {
    let mut clients = Vec::with_capacity(conns);
    let mut errors = 0;
    for _ in 0..conns {
        match TcpStream::connect(addr) {
            Ok(s) => {
                s.set_nodelay(true).ok();
                s.set_nonblocking(true).expect("nonblocking");
                clients.push(Client {
                    stream: s,
                    buf: vec![0; 4096],
                    filled: 0,
                    sent: Instant::now(),
                });
            }
            Err(_) => errors += 1,
        }
    }
    let ep = epoll::create(epoll::CreateFlags::CLOEXEC).expect("epoll");
    for (i, c) in clients.iter_mut().enumerate() {
        epoll::add(
            &ep,
            c.stream.as_fd(),
            epoll::EventData::new_u64(i as u64),
            epoll::EventFlags::IN,
        )
        .expect("epoll add");
        c.sent = Instant::now();
        if (&c.stream).write_all(REQUEST).is_err() {
            errors += 1;
        }
    }
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + secs;
    let mut res = LoadResult::default();
    let mut events = Vec::with_capacity(1024);
    let mut live = clients.len();
    while live > 0 {
        let now = Instant::now();
        if now >= end {
            break;
        }
        let left = end - now;
        let ts = rustix::event::Timespec {
            tv_sec: left.as_secs() as _,
            tv_nsec: left.subsec_nanos() as _,
        };
        events.clear();
        match epoll::wait(&ep, rustix::buffer::spare_capacity(&mut events), Some(&ts)) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => panic!("epoll_wait: {e}"),
        }
        for ev in &events {
            let i = ev.data.u64() as usize;
            let c = &mut clients[i];
            let mut dead = false;
            loop {
                if c.filled == c.buf.len() {
                    c.buf.resize(c.buf.len() * 2, 0);
                }
                match (&c.stream).read(&mut c.buf[c.filled..]) {
                    Ok(0) => {
                        dead = true;
                        break;
                    }
                    Ok(n) => c.filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        dead = true;
                        break;
                    }
                }
            }
            while let Some(ok) = c.complete() {
                let now = Instant::now();
                if now >= measure_from && now < end {
                    if ok {
                        res.requests += 1;
                        let us = (now - c.sent).as_micros().min(u32::MAX as u128) as u32;
                        res.latencies_us.push(us);
                    } else {
                        res.errors += 1;
                    }
                }
                c.sent = now;
                if (&c.stream).write_all(REQUEST).is_err() {
                    dead = true;
                    break;
                }
            }
            if dead {
                let _ = epoll::delete(&ep, c.stream.as_fd());
                // A close between responses is the server's keep-alive limit
                // (stead closes after 10,000 requests): reconnect, as wrk does.
                let clean = c.filled == 0;
                let fresh = clean.then(|| TcpStream::connect(addr).ok()).flatten();
                match fresh {
                    Some(s) => {
                        s.set_nodelay(true).ok();
                        s.set_nonblocking(true).expect("nonblocking");
                        c.stream = s;
                        res.reconnects += 1;
                        let ok = epoll::add(
                            &ep,
                            c.stream.as_fd(),
                            epoll::EventData::new_u64(i as u64),
                            epoll::EventFlags::IN,
                        )
                        .is_ok();
                        c.sent = Instant::now();
                        if !ok || (&c.stream).write_all(REQUEST).is_err() {
                            res.errors += 1;
                            live -= 1;
                        }
                    }
                    None => {
                        if Instant::now() >= measure_from {
                            res.errors += 1;
                        }
                        live -= 1;
                    }
                }
            }
        }
    }
    res.errors += errors;
    res.secs = secs.as_secs_f64();
    res
}

/// Run `conns` connections split over `threads` client threads.
fn load(addr: SocketAddr, conns: usize, threads: usize, o: &Opts) -> LoadResult {
    let threads = threads.clamp(1, conns.max(1));
    let warmup = Duration::from_secs_f64(o.warmup);
    let secs = Duration::from_secs_f64(o.secs);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let n = conns / threads + usize::from(t < conns % threads);
            std::thread::spawn(move || drive(addr, n, warmup, secs))
        })
        .collect();
    let mut total = LoadResult::default();
    for h in handles {
        let r = h.join().expect("client thread");
        total.requests += r.requests;
        total.errors += r.errors;
        total.reconnects += r.reconnects;
        total.latencies_us.extend(r.latencies_us);
        total.secs = r.secs;
    }
    total
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

#[derive(Clone, Copy, Debug, Default)]
struct Row {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    cpu_ms_per_1k: f64,
    peak_rss_mb: f64,
    threads: u64,
    errors: u64,
    /// req/s measured by `wrk` on the same server right after, if installed.
    wrk_rps: Option<f64>,
}

/// Whether `wrk` is on the PATH.
fn have_wrk() -> bool {
    Command::new("wrk")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Drive `addr` with wrk (same connections and duration); its req/s.
fn wrk_rps(addr: SocketAddr, conns: usize, o: &Opts) -> Option<f64> {
    let threads = o.client_threads.clamp(1, conns.max(1)).to_string();
    let out = Command::new("wrk")
        .args(["-t", &threads, "-c", &conns.to_string()])
        .args(["-d", &format!("{}s", o.secs.ceil() as u64)])
        .arg(format!("http://{addr}/"))
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains("Non-2xx") || text.contains("Socket errors") {
        eprintln!("loadcmp: wrk reported errors:\n{text}");
    }
    text.lines()
        .find(|l| l.starts_with("Requests/sec:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

fn one_run(server: &str, conns: usize, o: &Opts) -> Row {
    let s = Server::start(server, o.workers);
    let cpu0 = s.cpu_secs();
    // Sample the server's thread count while the load runs.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (stop, pid) = (stop.clone(), s.pid());
        std::thread::spawn(move || {
            let mut max = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                max = max.max(status_kb(pid, "Threads:"));
                std::thread::sleep(Duration::from_millis(100)); // a sampling interval
            }
            max
        })
    };
    let mut r = load(s.addr, conns, o.client_threads, o);
    let cpu = s.cpu_secs() - cpu0;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let threads = sampler.join().unwrap_or(0);
    let peak = s.status_kb("VmHWM:");
    let wrk_rps = if o.wrk {
        wrk_rps(s.addr, conns, o)
    } else {
        None
    };
    s.stop();
    r.latencies_us.sort_unstable();
    let total_secs = o.secs + o.warmup;
    Row {
        rps: r.requests as f64 / r.secs,
        p50_ms: percentile(&r.latencies_us, 0.50),
        p99_ms: percentile(&r.latencies_us, 0.99),
        // CPU is measured over warm-up + window; scale requests to match.
        cpu_ms_per_1k: cpu * 1000.0 / (r.requests as f64 * total_secs / r.secs / 1000.0),
        peak_rss_mb: peak as f64 / 1024.0,
        threads,
        errors: r.errors,
        wrk_rps,
    }
}

/// RSS per idle keep-alive connection: open `n`, one request each, then idle.
fn idle_memory(server: &str, n: usize, o: &Opts) -> Option<(f64, u64, usize)> {
    let s = Server::start(server, o.workers);
    let mut warm = TcpStream::connect(s.addr).ok()?;
    warm.write_all(REQUEST).ok()?;
    let mut buf = [0u8; 512];
    let _ = warm.read(&mut buf);
    let base = s.status_kb("VmRSS:");
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        match TcpStream::connect(s.addr) {
            Ok(c) => conns.push(c),
            Err(e) => {
                eprintln!(
                    "loadcmp: idle test stopped at {} connections: {e}",
                    conns.len()
                );
                break;
            }
        }
    }
    // Stop at the first connection the server does not answer (it is at
    // its connection limit, the rest wait in the backlog): waiting out a
    // timeout per connection would let the served ones reach their
    // keep-alive timeout before the measurement.
    let mut served = 0usize;
    for c in &mut conns {
        c.set_read_timeout(Some(Duration::from_secs(2))).ok();
        let answered = c.write_all(REQUEST).is_ok() && c.read(&mut buf).is_ok_and(|n| n > 0);
        if !answered {
            eprintln!("loadcmp: idle test: {server} answered {served} of {n} connections");
            break;
        }
        served += 1;
    }
    let rss = s.status_kb("VmRSS:");
    let threads = s.threads();
    let per = (rss.saturating_sub(base)) as f64 * 1024.0 / served.max(1) as f64;
    drop(conns);
    s.stop();
    Some((per, threads, served))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    if v.is_empty() {
        f64::NAN
    } else {
        v[v.len() / 2]
    }
}

fn main() {
    let o = parse_opts();
    if o.build {
        eprintln!("loadcmp: building hello, hyper_hello and std_hello (release)...");
        build();
    }
    let started = Instant::now();
    // results[(conns, server)] = rows over rounds
    let mut results: BTreeMap<(usize, String), Vec<Row>> = BTreeMap::new();
    for round in 0..o.rounds {
        for &conns in &o.conns {
            // Rotate the order each round so no server always goes first.
            let mut order = o.servers.clone();
            let k = round % order.len().max(1);
            order.rotate_left(k);
            for server in &order {
                let row = one_run(server, conns, &o);
                eprintln!(
                    "round {} conns {conns:>5} {server:<14} {:>9.0} req/s  p50 {:>6.2} ms  p99 {:>7.2} ms  errors {}",
                    round + 1,
                    row.rps,
                    row.p50_ms,
                    row.p99_ms,
                    row.errors
                );
                results
                    .entry((conns, server.clone()))
                    .or_default()
                    .push(row);
            }
        }
    }
    let med = |rows: &[Row], f: fn(&Row) -> f64| median(rows.iter().map(f).collect());
    let mut table = String::new();
    table.push_str("| conns | server | req/s | vs hyper | p50 ms | p99 ms | p99 vs hyper | CPU ms / 1k req | peak RSS MB | threads | errors | wrk req/s |\n");
    table.push_str("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    let mut chart: Vec<Series> = o.servers.iter().map(|s| (s.clone(), vec![])).collect();
    for &conns in &o.conns {
        let hyper = results.get(&(conns, "hyper".to_string()));
        let h_rps = hyper.map(|r| med(r, |x| x.rps));
        let h_p99 = hyper.map(|r| med(r, |x| x.p99_ms));
        for (server, series) in chart.iter_mut() {
            let Some(rows) = results.get(&(conns, server.clone())) else {
                continue;
            };
            let (rps, p50, p99) = (
                med(rows, |x| x.rps),
                med(rows, |x| x.p50_ms),
                med(rows, |x| x.p99_ms),
            );
            series.push((conns, rps, p99));
            let ratio = |a: f64, b: Option<f64>| b.map_or("-".into(), |b| format!("{:.2}x", a / b));
            table.push_str(&format!(
                "| {conns} | {server} | {rps:.0} | {} | {p50:.2} | {p99:.2} | {} | {:.1} | {:.1} | {} | {} | {} |\n",
                ratio(rps, h_rps),
                ratio(p99, h_p99),
                med(rows, |x| x.cpu_ms_per_1k),
                med(rows, |x| x.peak_rss_mb),
                rows.iter().map(|r| r.threads).max().unwrap_or(0),
                rows.iter().map(|r| r.errors).sum::<u64>(),
                {
                    let w: Vec<f64> = rows.iter().filter_map(|r| r.wrk_rps).collect();
                    if w.is_empty() { "-".to_string() } else { format!("{:.0}", median(w)) }
                },
            ));
        }
    }
    let mut idle = String::new();
    if o.idle > 0 {
        idle.push_str(&format!(
            "\n| server | RSS per idle keep-alive connection | connections (of {} opened) | threads |\n|---|---:|---:|---:|\n",
            o.idle
        ));
        // The floor server's idle cost is its thread stacks: not measured.
        for server in o.servers.iter().filter(|s| *s != "std-threads") {
            if let Some((per, threads, served)) = idle_memory(server, o.idle, &o) {
                idle.push_str(&format!(
                    "| {server} | {:.1} KB | {served} | {threads} |\n",
                    per / 1024.0
                ));
            }
        }
    }
    let meta = format!(
        "Machine: {} cores, {}; commit {}; {}; {} rounds x {} s (+{} s warm-up) per cell, medians; \
         {} client threads, {} server workers; load generator in the same machine (loopback).",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model(),
        git_commit(),
        utc_date(),
        o.rounds,
        o.secs,
        o.warmup,
        o.client_threads,
        o.workers
    );
    println!("\n{meta}\n\n{table}{idle}");
    eprintln!("loadcmp: done in {:.0} s", started.elapsed().as_secs_f64());
    if o.write {
        let cmd = std::env::args().skip(1).collect::<Vec<_>>().join(" ");
        let section = format!(
            "<!-- loadcmp:start -->\n{meta}\n\nReproduce: `cargo run --release -p stead-benches --bin loadcmp -- {cmd}`\n\n{table}{idle}\n![req/s and p99 vs connections](benches/results/http.svg)\n<!-- loadcmp:end -->"
        );
        update_benchmarks_md(&section);
        write_chart(&chart);
        eprintln!("loadcmp: wrote BENCHMARKS.md and benches/results/http.svg");
    }
}

fn update_benchmarks_md(section: &str) {
    let path = workspace().join("BENCHMARKS.md");
    let old = std::fs::read_to_string(&path).unwrap_or_else(|_| "# Benchmarks\n\n".into());
    let new = match (
        old.find("<!-- loadcmp:start -->"),
        old.find("<!-- loadcmp:end -->"),
    ) {
        (Some(a), Some(b)) => format!(
            "{}{}{}",
            &old[..a],
            section,
            &old[b + "<!-- loadcmp:end -->".len()..]
        ),
        _ => format!("{old}\n## HTTP load: stead vs hyper\n\n{section}\n"),
    };
    std::fs::write(&path, new).expect("write BENCHMARKS.md");
}

/// Two panels (req/s, p99) against connections, one line per server, as SVG.
fn write_chart(series: &[Series]) {
    let colors = ["#1f77b4", "#2ca02c", "#d62728", "#9467bd"];
    let (w, h, pad) = (420.0, 260.0, 50.0);
    let mut svg = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{}' height='{}' font-family='sans-serif' font-size='11'>\n",
        2.0 * w,
        h + 30.0
    );
    for (panel, (title, pick)) in [("req/s", 1usize), ("p99 latency (ms)", 2usize)]
        .iter()
        .enumerate()
    {
        let x0 = panel as f64 * w;
        let all: Vec<f64> = series
            .iter()
            .flat_map(|(_, pts)| pts.iter().map(|p| if *pick == 1 { p.1 } else { p.2 }))
            .filter(|v| v.is_finite())
            .collect();
        let ymax = all.iter().cloned().fold(0.0, f64::max).max(1e-9) * 1.1;
        let xs: Vec<usize> = series
            .first()
            .map(|s| s.1.iter().map(|p| p.0).collect())
            .unwrap_or_default();
        let n = xs.len().max(2) as f64;
        let px = |i: usize| x0 + pad + (w - 2.0 * pad) * i as f64 / (n - 1.0);
        let py = |v: f64| h - pad + 20.0 - (h - 2.0 * pad) * v / ymax;
        svg.push_str(&format!(
            "<text x='{}' y='16' text-anchor='middle' font-size='13'>{title}</text>\n",
            x0 + w / 2.0
        ));
        svg.push_str(&format!(
            "<line x1='{a}' y1='{b}' x2='{c}' y2='{b}' stroke='#999'/><line x1='{a}' y1='{d}' x2='{a}' y2='{b}' stroke='#999'/>\n",
            a = x0 + pad,
            b = h - pad + 20.0,
            c = x0 + w - pad,
            d = pad - 10.0
        ));
        for (i, x) in xs.iter().enumerate() {
            svg.push_str(&format!(
                "<text x='{}' y='{}' text-anchor='middle'>{x} conns</text>\n",
                px(i),
                h - pad + 36.0
            ));
        }
        for k in 0..=4 {
            let v = ymax * k as f64 / 4.0;
            svg.push_str(&format!(
                "<text x='{}' y='{}' text-anchor='end'>{}</text>\n",
                x0 + pad - 4.0,
                py(v) + 4.0,
                if v >= 1000.0 {
                    format!("{:.0}k", v / 1000.0)
                } else {
                    format!("{v:.1}")
                }
            ));
        }
        for (si, (name, pts)) in series.iter().enumerate() {
            let c = colors[si % colors.len()];
            let path: Vec<String> = pts
                .iter()
                .enumerate()
                .map(|(i, p)| format!("{:.1},{:.1}", px(i), py(if *pick == 1 { p.1 } else { p.2 })))
                .collect();
            svg.push_str(&format!(
                "<polyline fill='none' stroke='{c}' stroke-width='2' points='{}'/>\n",
                path.join(" ")
            ));
            if panel == 0 {
                svg.push_str(&format!(
                    "<text x='{}' y='{}' fill='{c}'>{name}</text>\n",
                    x0 + pad + 8.0,
                    pad + 4.0 + 14.0 * si as f64
                ));
            }
        }
    }
    svg.push_str("</svg>\n");
    let dir = workspace().join("benches/results");
    std::fs::create_dir_all(&dir).expect("create benches/results");
    std::fs::write(dir.join("http.svg"), svg).expect("write chart");
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn git_commit() -> String {
    Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(workspace())
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

fn utc_date() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
