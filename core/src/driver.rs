//! The process-wide deadline driver: one thread, started on first use, that
//! cancels armed tokens when their deadlines pass.
//!
//! Only tokens that someone waits on without polling them (a file descriptor,
//! a channel, a callback) are armed; everything else checks its deadline
//! lazily. Entries hold weak references, so an armed token that is dropped
//! is freed at once and its entry is discarded when it comes due or when the
//! heap is compacted.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Instant;

use crate::cancel::{CancelReason, WeakCancel};

struct Entry {
    at: Instant,
    seq: u64,
    token: WeakCancel,
}

impl PartialEq for Entry {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Entry {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

#[derive(Default)]
struct State {
    heap: BinaryHeap<Reverse<Entry>>,
    seq: u64,
    /// Heap size after the last compaction; compaction runs when it doubles.
    compacted_len: usize,
    started: bool,
}

struct Driver {
    state: Mutex<State>,
    cond: Condvar,
}

fn driver() -> &'static Driver {
    static D: OnceLock<Driver> = OnceLock::new();
    D.get_or_init(|| Driver {
        state: Mutex::new(State::default()),
        cond: Condvar::new(),
    })
}

/// Cancel `token` with [`CancelReason::DeadlineExceeded`] at `at`.
pub(crate) fn arm(at: Instant, token: WeakCancel) {
    let d = driver();
    let mut st = d.state.lock().unwrap_or_else(|e| e.into_inner());
    if !st.started {
        let spawned = std::thread::Builder::new()
            .name("stead-deadlines".into())
            .stack_size(64 * 1024)
            .spawn(run);
        match spawned {
            Ok(_) => st.started = true,
            // Lazy checks still cancel the token; only fd/channel/callback
            // waiters lose their wake-up. Retried on the next arm.
            Err(e) => log::error!("stead: cannot start the deadline driver thread: {e}"),
        }
    }
    if st.heap.len() >= 1024 && st.heap.len() >= 2 * st.compacted_len {
        st.heap.retain(|Reverse(e)| !e.token.is_dead());
        st.compacted_len = st.heap.len();
    }
    let seq = st.seq;
    st.seq += 1;
    let earliest = st.heap.peek().is_none_or(|Reverse(e)| at < e.at);
    st.heap.push(Reverse(Entry { at, seq, token }));
    drop(st);
    if earliest {
        d.cond.notify_one();
    }
}

fn run() {
    let d = driver();
    let mut st = d.state.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let now = Instant::now();
        let mut due = Vec::new();
        while let Some(Reverse(e)) = st.heap.peek() {
            if e.at > now {
                break;
            }
            let Reverse(e) = st.heap.pop().expect("peeked");
            due.push(e.token);
        }
        if !due.is_empty() {
            drop(st);
            for t in due {
                if let Some(c) = t.upgrade() {
                    c.cancel_with(CancelReason::DeadlineExceeded);
                }
            }
            st = d.state.lock().unwrap_or_else(|e| e.into_inner());
            continue;
        }
        st = match st.heap.peek() {
            None => d.cond.wait(st).unwrap_or_else(|e| e.into_inner()),
            Some(Reverse(e)) => {
                let wait = e.at.saturating_duration_since(now);
                d.cond
                    .wait_timeout(st, wait)
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
        };
    }
}
