//! The watchdog: one thread per pool (when enabled) that reports tasks
//! running longer than a threshold and a queue that stopped moving.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::worker::Shared;

/// How often the watchdog looks, for a given threshold.
fn interval(threshold: Duration) -> Duration {
    (threshold / 4).clamp(Duration::from_millis(1), Duration::from_millis(2500))
}

pub(crate) fn spawn(
    shared: Arc<Shared>,
    threshold: Duration,
) -> io::Result<thread::JoinHandle<()>> {
    let name = format!("{}-watchdog", shared.name());
    thread::Builder::new()
        .name(name.clone())
        .stack_size(128 * 1024)
        .spawn(move || run(&shared, threshold))
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("stead-pool: cannot start thread {name}: {e}"),
            )
        })
}

fn run(shared: &Shared, threshold: Duration) {
    let every = interval(threshold);
    // (worker, start time) -> when it was last logged.
    let mut logged: HashMap<(usize, u64), Instant> = HashMap::new();
    let mut last_started = shared.started_total();
    let mut stalled_since: Option<Instant> = None;
    let mut stall_logged: Option<Instant> = None;
    while shared.stop.wait_timeout(every).is_none() {
        shared.tick();
        let now = Instant::now();

        let overdue = shared.overdue(threshold);
        shared.set_overdue(overdue.len());
        logged.retain(|k, _| overdue.iter().any(|r| (r.worker_index, r.started) == *k));
        for r in &overdue {
            let key = (r.worker_index, r.started);
            let due = logged
                .get(&key)
                .is_none_or(|t| now.saturating_duration_since(*t) >= threshold);
            if due {
                log::warn!("pool {}: {r}", shared.name());
                logged.insert(key, now);
            }
        }

        // A queue that holds work while no task starts: starvation, or every
        // worker busy for longer than the threshold.
        let started = shared.started_total();
        let queued = shared.queued();
        if queued > 0 && started == last_started {
            let since = *stalled_since.get_or_insert(now);
            let stalled = now.saturating_duration_since(since);
            let due = stall_logged.is_none_or(|t| now.saturating_duration_since(t) >= threshold);
            if stalled >= threshold && due {
                let s = shared.stats();
                log::warn!(
                    "pool {}: {queued} tasks queued and none started for {stalled:?} \
                     ({} workers: {} running, {} blocked)",
                    shared.name(),
                    s.workers,
                    s.running,
                    s.blocked
                );
                stall_logged = Some(now);
            }
            shared.check_starvation();
        } else {
            stalled_since = None;
            stall_logged = None;
        }
        last_started = started;
    }
}
