//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use stead_core::Cancel;

/// Generous bound for "must not hang" checks on a noisy shared machine.
pub const HANG: Duration = Duration::from_secs(20);

/// Run `f` on a helper thread and fail the test (instead of hanging forever)
/// if it does not finish within `limit`.
pub fn within<R: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> R + Send + 'static,
) -> R {
    let (tx, rx) = crossbeam_channel::bounded(1);
    let t = thread::Builder::new()
        .name(format!("test-{what}"))
        .spawn(move || {
            let _ = tx.send(f());
        })
        .expect("spawn test thread");
    match rx.recv_timeout(limit) {
        Ok(r) => {
            t.join().expect("test thread");
            r
        }
        Err(_) => panic!("{what}: did not finish within {limit:?} (deadlock?)"),
    }
}

/// Poll `cond` until it holds or `limit` passes (asserting an eventual
/// state, not ordering events). Returns whether it held.
pub fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    let pause = Cancel::new();
    while Instant::now() < end {
        if cond() {
            return true;
        }
        let _ = pause.sleep(Duration::from_millis(1));
    }
    cond()
}

/// A one-shot gate: tasks `wait()` until the test `open()`s it.
#[derive(Clone, Default)]
pub struct Gate(Cancel);

impl Gate {
    pub fn new() -> Gate {
        Gate(Cancel::new())
    }
    pub fn open(&self) {
        self.0.cancel();
    }
    /// Wait without announcing a blocking section (so the pool does not
    /// compensate): a crossbeam channel, not a stead call.
    pub fn wait_quietly(&self) {
        let rx = self.0.channel();
        let _ = rx.recv();
    }
    /// Wait through stead (`Cancel::wait`, a blocking section).
    pub fn wait(&self) {
        self.0.wait();
    }
}

/// Names of this process's threads that start with `prefix` (Linux).
pub fn threads_named(prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for e in dir.flatten() {
            if let Ok(name) = std::fs::read_to_string(e.path().join("comm")) {
                let name = name.trim_end().to_owned();
                if name.starts_with(prefix) {
                    out.push(name);
                }
            }
        }
    }
    out
}

/// A process-wide logger that keeps messages for assertions.
struct Capture(Mutex<Vec<String>>);

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, r: &log::Record) {
        let mut v = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if v.len() < 100_000 {
            v.push(format!("{} {}", r.level(), r.args()));
        }
    }
    fn flush(&self) {}
}

static LOGS: OnceLock<&'static Capture> = OnceLock::new();

fn capture() -> &'static Capture {
    LOGS.get_or_init(|| {
        let c: &'static Capture = Box::leak(Box::new(Capture(Mutex::new(Vec::new()))));
        let _ = log::set_logger(c);
        log::set_max_level(log::LevelFilter::Debug);
        c
    })
}

/// Start capturing log lines (idempotent).
pub fn init_logs() {
    capture();
}

/// Captured log lines that contain `needle` (tests use distinct pool names).
pub fn logs_with(needle: &str) -> Vec<String> {
    capture()
        .0
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|l| l.contains(needle))
        .cloned()
        .collect()
}

/// An `Arc<()>` whose count tells how many clones tasks still hold.
pub fn tracker() -> Arc<()> {
    Arc::new(())
}
