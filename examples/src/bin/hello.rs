//! `hello`: the smallest complete stead service, and the README's first command.
//!
//! ```text
//! cargo run --release -p stead-examples --bin hello
//! curl http://127.0.0.1:8080/
//! curl http://127.0.0.1:8080/sleep/250
//! curl --data-binary @Cargo.toml http://127.0.0.1:8080/echo
//! ```
//!
//! Routes: `GET /` -> `Hello, World!`; `GET /sleep/{ms}` -> waits `ms`
//! milliseconds (cancellable: the request's token fires when the client goes
//! away or the shutdown grace period ends), then 200; `POST /echo` -> the
//! request body back; `GET /stats` -> how many sleeps are in progress and
//! how many were abandoned by their client. On SIGINT/SIGTERM it stops
//! accepting at once, lets in-flight requests finish within `--grace`
//! seconds and exits 0.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clap::{Parser, ValueEnum};
use stead_core::CancelReason;
use stead_http::http::StatusCode;
use stead_http::{HttpServer, Mode, RequestExt, ResponseBody, Router, with_content_type};

/// A hello-world HTTP server on stead.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "HELLO_ADDR", default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Server mode: `event` parks idle keep-alive connections in per-worker
    /// pollers; `threads` runs one thread per connection.
    #[arg(long, env = "HELLO_MODE", value_enum, default_value_t = ModeArg::Event)]
    mode: ModeArg,
    /// Worker threads in event mode (default: the number of CPUs).
    #[arg(long, env = "HELLO_WORKERS")]
    workers: Option<usize>,
    /// Event mode: do not yield the CPU between batches of ready
    /// connections (for CPUs reserved for the server; see BENCHMARKS.md).
    #[arg(long, env = "HELLO_NO_YIELD")]
    no_yield: bool,
    /// Maximum concurrent connections (accepting pauses at the limit).
    #[arg(long, env = "HELLO_MAX_CONNECTIONS", default_value_t = 10_000)]
    max_connections: usize,
    /// Seconds in-flight requests get to finish after SIGINT/SIGTERM.
    #[arg(long, env = "HELLO_GRACE", default_value_t = 10.0)]
    grace: f64,
    /// Longest `/sleep/{ms}` accepted, in milliseconds.
    #[arg(long, env = "HELLO_MAX_SLEEP_MS", default_value_t = 60_000)]
    max_sleep_ms: u64,
    #[command(flatten)]
    tls: TlsArgs,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum ModeArg {
    Threads,
    Event,
}

/// TLS options (the `tls` feature, on by default in the examples).
#[derive(clap::Args, Debug)]
struct TlsArgs {
    /// Serve HTTPS: with `--cert`/`--key` PEM files, or a generated
    /// self-signed certificate for localhost.
    #[arg(long, env = "HELLO_TLS")]
    tls: bool,
    /// Certificate chain (PEM); implies --tls.
    #[arg(long, env = "HELLO_CERT", requires = "key")]
    cert: Option<std::path::PathBuf>,
    /// Private key (PEM); implies --tls.
    #[arg(long, env = "HELLO_KEY", requires = "cert")]
    key: Option<std::path::PathBuf>,
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = Args::parse();
    if let Err(e) = run(args) {
        eprintln!("hello: {e}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> std::io::Result<()> {
    if !(args.grace >= 0.0 && args.grace <= 3600.0) {
        return Err(std::io::Error::other(
            "--grace must be between 0 and 3600 seconds",
        ));
    }
    let shutdown = stead_core::shutdown_on_signals()?;
    let max_sleep = args.max_sleep_ms;
    // Sleeps in progress, and sleeps the client abandoned, for `GET /stats`
    // (and the tests).
    let sleeping = Arc::new(AtomicU64::new(0));
    let abandoned = Arc::new(AtomicU64::new(0));
    let (sleeping_w, sleeping_r) = (sleeping.clone(), sleeping);
    let (abandoned_w, abandoned_r) = (abandoned.clone(), abandoned);
    let app = Router::new()
        .get("/", |_req, _cancel| {
            with_content_type("text/plain", ResponseBody::from_static(b"Hello, World!"))
        })
        .get("/sleep/{ms}", move |req, cancel| {
            let Some(ms) = req.param("ms").and_then(|v| v.parse::<u64>().ok()) else {
                return (
                    StatusCode::BAD_REQUEST,
                    "sleep needs a whole number of milliseconds\n".to_string(),
                );
            };
            if ms > max_sleep {
                return (StatusCode::BAD_REQUEST, format!("at most {max_sleep} ms\n"));
            }
            sleeping_w.fetch_add(1, Ordering::SeqCst);
            let slept = cancel.sleep(Duration::from_millis(ms));
            if slept.is_err_and(|e| e.reason() == CancelReason::Disconnected) {
                abandoned_w.fetch_add(1, Ordering::SeqCst);
            }
            sleeping_w.fetch_sub(1, Ordering::SeqCst);
            match slept {
                Ok(()) => (StatusCode::OK, format!("slept {ms} ms\n")),
                Err(e) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("sleep cut short: {e}\n"),
                ),
            }
        })
        .get("/stats", move |_req, _cancel| {
            format!(
                "sleeping {}\nabandoned {}\n",
                sleeping_r.load(Ordering::SeqCst),
                abandoned_r.load(Ordering::SeqCst)
            )
        })
        .post("/echo", |mut req, _cancel| {
            let body = req.body_mut().read_all()?;
            Ok::<_, std::io::Error>(body)
        });

    let mode = match args.mode {
        ModeArg::Threads => Mode::Threads,
        ModeArg::Event => Mode::Event,
    };
    let mut builder = HttpServer::builder()
        .mode(mode)
        .max_connections(args.max_connections)
        .yield_after_batch(!args.no_yield);
    if let Some(n) = args.workers {
        builder = builder.workers(n);
    }
    let scheme = configure_tls(&args.tls, &mut builder)?;
    let server = builder.bind(args.addr)?;
    let addr = server.local_addr()?;
    let handle = server.serve(app);
    println!(
        "stead hello: listening on {scheme}://{addr} (mode: {}, Ctrl-C to stop)",
        match mode {
            Mode::Threads => "threads",
            _ => "event",
        }
    );
    let report = handle.run_until(&shutdown, Duration::from_secs_f64(args.grace));
    println!("stead hello: stopped: {report}");
    Ok(())
}

#[cfg(feature = "tls")]
fn configure_tls(
    t: &TlsArgs,
    builder: &mut stead_http::HttpServerBuilder,
) -> std::io::Result<&'static str> {
    use stead_http::TlsConfig;
    let cfg = match (&t.cert, &t.key) {
        (Some(cert), Some(key)) => TlsConfig::from_pem_files(cert, key)?,
        _ if t.tls => TlsConfig::self_signed(&["localhost", "127.0.0.1"])?,
        _ => return Ok("http"),
    };
    *builder = std::mem::take(builder).tls(cfg);
    Ok("https")
}

#[cfg(not(feature = "tls"))]
fn configure_tls(
    t: &TlsArgs,
    _builder: &mut stead_http::HttpServerBuilder,
) -> std::io::Result<&'static str> {
    if t.tls || t.cert.is_some() {
        return Err(std::io::Error::other(
            "this build has no TLS: rebuild with `--features tls`",
        ));
    }
    Ok("http")
}
