//! File-descriptor exhaustion at the HTTP level, in both modes. Its own test
//! binary because it lowers the process's `RLIMIT_NOFILE`.
//!
//! With every descriptor in use, `accept` fails with `EMFILE`: the server
//! logs why, backs off (CPU stays near zero while it waits, measured with
//! the process CPU clock), keeps serving the connections it already has,
//! and accepts the waiting client once descriptors are free again.

mod util;

use std::fs::File;
use std::io::Write;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
use rustix::time::{ClockId, clock_gettime};
use stead_http::Mode;
use util::*;

fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Keeps every log line (the server's explanation is part of the contract).
struct Keep(Mutex<Vec<String>>);

impl log::Log for Keep {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::Level::Warn
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            self.0.lock().unwrap().push(r.args().to_string());
        }
    }
    fn flush(&self) {}
}

fn logs() -> &'static Keep {
    static LOGS: OnceLock<&'static Keep> = OnceLock::new();
    LOGS.get_or_init(|| {
        let keep: &'static Keep = Box::leak(Box::new(Keep(Mutex::new(Vec::new()))));
        log::set_logger(keep).unwrap();
        log::set_max_level(log::LevelFilter::Warn);
        keep
    })
}

fn cpu_time() -> Duration {
    let t = clock_gettime(ClockId::ProcessCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

fn fd_exhaustion_backs_off_and_recovers(mode: Mode) {
    let _g = serial();
    let logs = logs();
    logs.0.lock().unwrap().clear();
    let h = start(mode, echo);
    let addr = h.local_addr();

    // A keep-alive connection established before the exhaustion.
    let mut old_client = connect(addr);
    let mut pending = Vec::new();
    old_client
        .write_all(b"GET /before HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(
        read_response(&mut old_client, &mut pending, false).body_str(),
        "/before"
    );

    // Leave a few descriptors, then take them all.
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
    // One for the new client's socket; the server has none.
    hog.pop();
    let mut new_client = connect(addr);
    new_client
        .write_all(b"GET /during HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let errors_before = h.stats().connections.accept_errors;
    let tried = wait_until(|| h.stats().connections.accept_errors >= errors_before + 2);

    // While exhausted: back-off, not a spin. Go's and stead's back-off
    // doubles from 5 ms to 1 s, so a 1 s window sees a handful of attempts.
    let cpu0 = cpu_time();
    let window = Duration::from_secs(1);
    std::thread::sleep(window); // the measurement window, not synchronisation
    let used = cpu_time() - cpu0;
    let attempts = h.stats().connections.accept_errors - errors_before;

    // The connection that was already open is still served.
    old_client
        .write_all(b"GET /still HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let still = read_response(&mut old_client, &mut pending, false);

    // Free the descriptors: the waiting client is accepted and served.
    drop(hog);
    setrlimit(Resource::Nofile, old).unwrap();
    assert!(tried, "{mode:?}: accept never failed: {:?}", h.stats());
    assert!(
        used < window / 10,
        "{mode:?}: {used:?} of CPU in a {window:?} window while out of descriptors \
         ({attempts} accept attempts)"
    );
    assert!(
        attempts < 50,
        "{mode:?}: {attempts} accept attempts in {window:?}"
    );
    assert_eq!(still.body_str(), "/still");
    let rs = parse_all(&read_to_close(&mut new_client));
    assert_eq!(rs.len(), 1);
    assert_eq!((rs[0].status, rs[0].body_str()), (200, "/during"));
    let lines = logs.0.lock().unwrap().clone();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("accept failed") && l.contains("file descriptors")),
        "the log explains the failure: {lines:?}"
    );
    assert!(
        wait_until(|| logs
            .0
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("accept recovered"))),
        "the log says it recovered"
    );
    drop(old_client);
    stop(h);
}

/// Poll `f` (every 5 ms) until it holds or `DEADLINE` passes.
fn wait_until(mut f: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + DEADLINE;
    while std::time::Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5)); // polling pause
    }
    f()
}

both_modes!(fd_exhaustion_backs_off_and_recovers);
