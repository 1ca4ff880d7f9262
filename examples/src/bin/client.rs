//! A small load client on `ureq`: N threads hammer a URL for D seconds over
//! keep-alive connections, then print req/s and latency percentiles.
//! Useful to try a server without installing a load tool.
//!
//! ```text
//! cargo run --release -p stead-examples --bin client -- --url http://127.0.0.1:8080/ --threads 8 --secs 5
//! ```

use std::time::{Duration, Instant};

use clap::Parser;

/// Hammer a URL with N threads for D seconds and report throughput and latency.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// The URL to GET.
    #[arg(long, env = "CLIENT_URL", default_value = "http://127.0.0.1:8080/")]
    url: String,
    /// Concurrent client threads (one keep-alive connection each).
    #[arg(long, env = "CLIENT_THREADS", default_value_t = 8)]
    threads: usize,
    /// How long to run, in seconds (at most one hour).
    #[arg(long, env = "CLIENT_SECS", default_value_t = 5.0)]
    secs: f64,
    /// Per-request timeout in milliseconds.
    #[arg(long, env = "CLIENT_TIMEOUT_MS", default_value_t = 5000)]
    timeout_ms: u64,
}

#[derive(Default)]
struct Tally {
    ok: u64,
    errors: u64,
    latencies_us: Vec<u32>,
    first_error: Option<String>,
}

fn main() {
    let args = Args::parse();
    if !(args.secs > 0.0 && args.secs <= 3600.0) || args.threads == 0 || args.threads > 10_000 {
        eprintln!("client: --secs must be in (0, 3600] and --threads in 1..=10000");
        std::process::exit(2);
    }
    let end = Instant::now() + Duration::from_secs_f64(args.secs);
    let handles: Vec<_> = (0..args.threads)
        .map(|i| {
            let url = args.url.clone();
            let timeout = Duration::from_millis(args.timeout_ms);
            std::thread::Builder::new()
                .name(format!("client-{i}"))
                .spawn(move || run(&url, timeout, end))
                .expect("spawn client thread")
        })
        .collect();
    let mut total = Tally::default();
    for h in handles {
        let t = h.join().expect("client thread");
        total.ok += t.ok;
        total.errors += t.errors;
        total.latencies_us.extend(t.latencies_us);
        total.first_error = total.first_error.or(t.first_error);
    }
    total.latencies_us.sort_unstable();
    let pct = |p: f64| {
        let v = &total.latencies_us;
        if v.is_empty() {
            return f64::NAN;
        }
        v[((v.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0
    };
    println!(
        "{} requests in {:.1} s: {:.0} req/s, {} errors; latency p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms",
        total.ok,
        args.secs,
        total.ok as f64 / args.secs,
        total.errors,
        pct(0.5),
        pct(0.9),
        pct(0.99)
    );
    if let Some(e) = total.first_error {
        println!("first error: {e}");
    }
}

fn run(url: &str, timeout: Duration, end: Instant) -> Tally {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .into();
    let mut t = Tally::default();
    while Instant::now() < end {
        let start = Instant::now();
        let res = agent
            .get(url)
            .call()
            .and_then(|mut r| r.body_mut().read_to_vec().map(|_| r.status()));
        match res {
            Ok(status) if status.is_success() => {
                t.ok += 1;
                t.latencies_us
                    .push(start.elapsed().as_micros().min(u32::MAX as u128) as u32);
            }
            Ok(status) => {
                t.errors += 1;
                t.first_error
                    .get_or_insert_with(|| format!("HTTP {status}"));
            }
            Err(e) => {
                t.errors += 1;
                t.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    t
}
