//! `json-api`: a small microservice of the kind async Rust is usually chosen
//! for, on plain threads. JSON in and out, CPU-heavy work offloaded to a
//! bounded `stead-pool` with a per-request deadline, a bounded LRU cache,
//! an outbound HTTP call that inherits the request's deadline, and a
//! graceful shutdown on Ctrl-C.
//!
//! ```text
//! cargo run --release -p stead-examples --bin json-api
//! curl http://127.0.0.1:8082/health
//! curl -d '{"input":"hello","rounds":100000}' http://127.0.0.1:8082/api/work
//! curl -d '{"url":"http://127.0.0.1:8082/health"}' http://127.0.0.1:8082/api/fetch
//! ```
//!
//! - `GET /health`: status, pool and cache statistics.
//! - `POST /api/work` `{"input": "...", "rounds": N}`: iterated SHA-256 on the
//!   pool -> `{"digest", "elapsed_ms", "cached"}`. Malformed JSON -> 400, a
//!   well-formed body of the wrong shape -> 422, over the deadline -> 504 (the
//!   task is cancelled), pool queue full -> 503 with `Retry-After`.
//! - `POST /api/fetch` `{"url": "..."}`: GET the URL with ureq, with the
//!   request's remaining deadline as the outbound timeout. Only loopback URLs
//!   unless `--fetch-any-host`.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use stead_core::{Cancel, Cancelled};
use stead_http::http::{self, HeaderValue, Response, StatusCode, header};
use stead_http::{Body, HttpServer, Mode, ResponseBody, Router};
use stead_pool::{JoinTimeoutError, Pool, TrySubmitError, with_cancel};

/// A JSON microservice on stead: pool-offloaded work, a cache, outbound calls.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "API_ADDR", default_value = "127.0.0.1:8082")]
    addr: SocketAddr,
    /// Server mode.
    #[arg(long, env = "API_MODE", value_enum, default_value_t = ModeArg::Event)]
    mode: ModeArg,
    /// HTTP worker threads in event mode (default: the number of CPUs).
    #[arg(long, env = "API_WORKERS")]
    workers: Option<usize>,
    /// Threads of the work pool (default: the number of CPUs).
    #[arg(long, env = "API_POOL_THREADS")]
    pool_threads: Option<usize>,
    /// Capacity of the work pool's queue; beyond it requests get 503.
    #[arg(long, env = "API_QUEUE", default_value_t = 64)]
    queue: usize,
    /// Entries in the result cache (0 disables it).
    #[arg(long, env = "API_CACHE_SIZE", default_value_t = 1024)]
    cache_size: usize,
    /// Per-request deadline in milliseconds.
    #[arg(long, env = "API_TIMEOUT_MS", default_value_t = 5000)]
    timeout_ms: u64,
    /// Largest `rounds` accepted by /api/work.
    #[arg(long, env = "API_MAX_ROUNDS", default_value_t = 50_000_000)]
    max_rounds: u64,
    /// Allow /api/fetch to reach hosts other than loopback.
    #[arg(long, env = "API_FETCH_ANY_HOST")]
    fetch_any_host: bool,
    /// Seconds in-flight requests get to finish after SIGINT/SIGTERM.
    #[arg(long, env = "API_GRACE", default_value_t = 10.0)]
    grace: f64,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum ModeArg {
    Threads,
    Event,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkRequest {
    input: String,
    rounds: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FetchRequest {
    url: String,
}

struct Cache {
    map: Option<Mutex<lru::LruCache<(String, u64), String>>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

struct App {
    pool: Pool,
    cache: Cache,
    max_rounds: u64,
    fetch_any_host: bool,
    agent: ureq::Agent,
    /// Per-request deadline: each handler works under a child token with it,
    /// so every error, a deadline included, is answered in JSON.
    timeout: Duration,
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    if let Err(e) = run(Args::parse()) {
        eprintln!("json-api: {e}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> std::io::Result<()> {
    if !(0.0..=3600.0).contains(&args.grace) || args.timeout_ms == 0 || args.queue == 0 {
        return Err(std::io::Error::other(
            "--grace must be 0..=3600 s; --timeout-ms and --queue must be positive",
        ));
    }
    let shutdown = stead_core::shutdown_on_signals()?;
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    let pool = Pool::builder()
        .name("work")
        .workers(args.pool_threads.unwrap_or(cpus))
        .queue_capacity(args.queue)
        .build()?;
    let app = Arc::new(App {
        pool,
        cache: Cache {
            map: NonZeroUsize::new(args.cache_size).map(|n| Mutex::new(lru::LruCache::new(n))),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        },
        max_rounds: args.max_rounds,
        timeout: Duration::from_millis(args.timeout_ms),
        fetch_any_host: args.fetch_any_host,
        agent: ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into(),
    });
    let (a, b, c) = (app.clone(), app.clone(), app.clone());
    let router = Router::new()
        .get("/health", move |_req, _cancel| health(&a))
        .post("/api/work", move |req, cancel| work(&b, req, cancel))
        .post("/api/fetch", move |req, cancel| fetch(&c, req, cancel));
    let mode = match args.mode {
        ModeArg::Threads => Mode::Threads,
        ModeArg::Event => Mode::Event,
    };
    let mut builder = HttpServer::builder().mode(mode);
    if let Some(n) = args.workers {
        builder = builder.workers(n);
    }
    let server = builder.bind(args.addr)?;
    let addr = server.local_addr()?;
    let handle = server.serve(router);
    println!(
        "stead json-api: listening on http://{addr} (mode: {:?}, pool: {} threads, queue {})",
        args.mode,
        app.pool.stats().workers,
        args.queue
    );
    let report = handle.run_until(&shutdown, Duration::from_secs_f64(args.grace));
    println!("stead json-api: stopped: {report}");
    Ok(())
}

/// A JSON response with a status.
fn reply(status: StatusCode, v: Value) -> Response<ResponseBody> {
    let mut r = stead_http::json(serde_json::to_vec(&v).unwrap_or_default());
    *r.status_mut() = status;
    r
}

fn error(status: StatusCode, msg: impl std::fmt::Display) -> Response<ResponseBody> {
    reply(status, json!({ "error": msg.to_string() }))
}

/// Read and decode a JSON body: 400 for malformed JSON, 422 for the wrong
/// shape (the error is the status and message to answer with).
fn decode<T: serde::de::DeserializeOwned>(
    req: &mut http::Request<Body<'_>>,
) -> Result<T, (StatusCode, String)> {
    let bytes = req.body_mut().read_all().map_err(|e| {
        let status =
            stead_http::BodyError::from_io(&e).map_or(StatusCode::BAD_REQUEST, |b| b.status());
        (status, format!("cannot read the request body: {e}"))
    })?;
    serde_json::from_slice(&bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => (StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
        _ => (StatusCode::BAD_REQUEST, format!("malformed JSON: {e}")),
    })
}

fn health(app: &App) -> Response<ResponseBody> {
    let p = app.pool.stats();
    let entries = app
        .cache
        .map
        .as_ref()
        .map_or(0, |m| m.lock().map_or(0, |m| m.len()));
    reply(
        StatusCode::OK,
        json!({
            "status": "ok",
            "pool": {
                "workers": p.workers,
                "queued": p.queued,
                "capacity": p.capacity,
                "running": p.running,
                "completed": p.completed,
                "rejected": p.rejected,
                "panicked": p.panicked,
                "cancelled": p.cancelled,
                "compensating": p.compensating,
            },
            "cache": {
                "entries": entries,
                "hits": app.cache.hits.load(Ordering::Relaxed),
                "misses": app.cache.misses.load(Ordering::Relaxed),
            },
        }),
    )
}

/// Iterated SHA-256, checking the token every 4,096 rounds.
fn digest(input: &str, rounds: u64, cancel: &Cancel) -> Result<String, Cancelled> {
    let mut d: [u8; 32] = Sha256::digest(input.as_bytes()).into();
    for i in 1..rounds {
        if i % 4096 == 0 {
            cancel.check()?;
        }
        d = Sha256::digest(d).into();
    }
    Ok(d.iter().map(|b| format!("{b:02x}")).collect())
}

fn work(app: &App, mut req: http::Request<Body<'_>>, cancel: &Cancel) -> Response<ResponseBody> {
    let cancel = &cancel.child_with_timeout(app.timeout);
    let w: WorkRequest = match decode(&mut req) {
        Ok(w) => w,
        Err((status, msg)) => return error(status, msg),
    };
    if w.rounds == 0 || w.rounds > app.max_rounds {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("rounds must be between 1 and {}", app.max_rounds),
        );
    }
    let key = (w.input, w.rounds);
    if let Some(hit) = app
        .cache
        .map
        .as_ref()
        .and_then(|m| m.lock().ok()?.get(&key).cloned())
    {
        app.cache.hits.fetch_add(1, Ordering::Relaxed);
        return reply(
            StatusCode::OK,
            json!({ "digest": hit, "elapsed_ms": 0, "cached": true }),
        );
    }
    app.cache.misses.fetch_add(1, Ordering::Relaxed);
    let start = Instant::now();
    let (input, rounds) = (key.0.clone(), key.1);
    let mut task = app.pool.task().name("sha256");
    if let Some(d) = cancel.deadline() {
        task = task.deadline(d);
    }
    let handle = match task.try_submit(with_cancel(move |c: &Cancel| digest(&input, rounds, c))) {
        Ok(h) => h,
        Err(TrySubmitError::Full(_)) => {
            let mut r = error(
                StatusCode::SERVICE_UNAVAILABLE,
                "work queue is full, retry later",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return r;
        }
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e),
    };
    let waited = match cancel.deadline() {
        Some(d) => handle.join_deadline(d),
        None => handle.join().map_err(JoinTimeoutError::Failed),
    };
    match waited {
        Ok(Ok(hex)) => {
            if let Some(m) = &app.cache.map
                && let Ok(mut m) = m.lock()
            {
                m.put(key, hex.clone());
            }
            let ms = start.elapsed().as_secs_f64() * 1000.0;
            reply(
                StatusCode::OK,
                json!({ "digest": hex, "elapsed_ms": ms, "cached": false }),
            )
        }
        Ok(Err(c)) => error(StatusCode::GATEWAY_TIMEOUT, format!("work cancelled: {c}")),
        Err(JoinTimeoutError::Timeout(h)) => {
            h.cancel();
            error(
                StatusCode::GATEWAY_TIMEOUT,
                "deadline exceeded; work cancelled",
            )
        }
        Err(JoinTimeoutError::Failed(e)) if e.is_cancelled() => error(
            StatusCode::GATEWAY_TIMEOUT,
            "deadline exceeded before the work started",
        ),
        Err(JoinTimeoutError::Failed(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

fn is_loopback_url(url: &str) -> bool {
    let Ok(uri) = url.parse::<http::Uri>() else {
        return false;
    };
    match uri.host() {
        Some("localhost") => true,
        Some(h) => h
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

fn fetch(app: &App, mut req: http::Request<Body<'_>>, cancel: &Cancel) -> Response<ResponseBody> {
    let cancel = &cancel.child_with_timeout(app.timeout);
    let f: FetchRequest = match decode(&mut req) {
        Ok(f) => f,
        Err((status, msg)) => return error(status, msg),
    };
    if !f.url.starts_with("http://") && !f.url.starts_with("https://") {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "url must be http:// or https://",
        );
    }
    if !app.fetch_any_host && !is_loopback_url(&f.url) {
        return error(
            StatusCode::FORBIDDEN,
            "only loopback URLs (start with --fetch-any-host to allow others)",
        );
    }
    // The outbound call gets what is left of this request's deadline.
    let remaining = cancel.remaining().unwrap_or(Duration::from_secs(30));
    if remaining.is_zero() {
        return error(
            StatusCode::GATEWAY_TIMEOUT,
            "deadline exceeded before the fetch",
        );
    }
    let res = app
        .agent
        .get(&f.url)
        .config()
        .timeout_global(Some(remaining))
        .build()
        .call()
        .and_then(|mut r| {
            let status = r.status().as_u16();
            let body = r.body_mut().with_config().limit(1 << 20).read_to_vec()?;
            Ok((status, body))
        });
    match res {
        Ok((status, body)) => reply(
            StatusCode::OK,
            json!({
                "status": status,
                "bytes": body.len(),
                "body": String::from_utf8_lossy(&body[..body.len().min(1024)]),
                "deadline_ms": remaining.as_millis() as u64,
            }),
        ),
        Err(ureq::Error::Timeout(t)) => error(
            StatusCode::GATEWAY_TIMEOUT,
            format!("outbound call timed out ({t})"),
        ),
        Err(e) => error(
            StatusCode::BAD_GATEWAY,
            format!("outbound call failed: {e}"),
        ),
    }
}
