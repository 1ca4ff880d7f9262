//! EventLoop: sources, the cross-thread handle and its bounded queue, and
//! the no-progress detector.

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crossbeam_channel::bounded;
use stead_core::Cancel;
use stead_eventloop::{EventLoop, Interest, PostAction, SubmitErrorKind};

/// Captures warnings so tests can assert the detector logs.
struct Capture;
static LOGS: Mutex<Vec<String>> = Mutex::new(Vec::new());
impl log::Log for Capture {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::Level::Warn
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            LOGS.lock().unwrap().push(r.args().to_string());
        }
    }
    fn flush(&self) {}
}
fn capture_logs() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        log::set_logger(&Capture).unwrap();
        log::set_max_level(log::LevelFilter::Warn);
    });
}

fn pair() -> (UnixStream, UnixStream) {
    let (a, b) = UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    b.set_nonblocking(true).unwrap();
    (a, b)
}

/// The loop closed its end: end of file, or a reset when it closed with
/// our data unread.
fn assert_closed(b: &mut UnixStream) {
    match b.read(&mut [0u8; 8]) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("expected the peer to be closed, got {other:?}"),
    }
}

#[test]
fn readable_callback_reads_and_remove_hands_the_source_back() {
    let mut lp = EventLoop::new().unwrap();
    let (a, mut b) = pair();
    let got = Rc::new(RefCell::new(Vec::new()));
    let g = got.clone();
    let token = lp
        .register(a, Interest::READ, move |r, s: &mut UnixStream, _| {
            assert!(r.readable);
            let mut buf = [0u8; 16];
            let n = s.read(&mut buf).unwrap();
            g.borrow_mut().extend_from_slice(&buf[..n]);
            PostAction::Continue
        })
        .unwrap();
    b.write_all(b"hello").unwrap();
    while got.borrow().len() < 5 {
        lp.dispatch(Some(Duration::from_secs(5))).unwrap();
    }
    assert_eq!(&got.borrow()[..], b"hello");
    assert!(lp.contains(token));
    // get_mut works outside the callback.
    lp.get_mut(token).unwrap().write_all(b"back").unwrap();
    let mut buf = [0u8; 4];
    b.set_nonblocking(false).unwrap();
    b.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"back");
    // Removed: handed back, still open, and no longer dispatched.
    let mut a = lp.remove(token).unwrap();
    assert!(!lp.contains(token));
    assert!(lp.remove(token).is_none());
    b.write_all(b"x").unwrap();
    lp.dispatch(Some(Duration::from_millis(20))).unwrap();
    assert_eq!(got.borrow().len(), 5);
    a.set_nonblocking(false).unwrap();
    let mut one = [0u8; 1];
    a.read_exact(&mut one).unwrap();
    assert_eq!(&one, b"x");
}

#[test]
fn post_action_remove_closes_the_source() {
    let mut lp = EventLoop::new().unwrap();
    let (a, mut b) = pair();
    let calls = Rc::new(Cell::new(0));
    let c = calls.clone();
    let token = lp
        .register(a, Interest::READ, move |_, _: &mut UnixStream, _| {
            c.set(c.get() + 1);
            PostAction::Remove
        })
        .unwrap();
    b.write_all(b"bye").unwrap();
    lp.dispatch(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(calls.get(), 1);
    assert!(!lp.contains(token));
    b.set_nonblocking(false).unwrap();
    assert_closed(&mut b);
}

#[test]
fn disable_then_set_interest_re_enables() {
    let mut lp = EventLoop::new().unwrap();
    let (a, mut b) = pair();
    let calls = Rc::new(Cell::new(0));
    let c = calls.clone();
    let token = lp
        .register(a, Interest::READ, move |_, s: &mut UnixStream, _| {
            c.set(c.get() + 1);
            let _ = s.read(&mut [0u8; 64]);
            PostAction::Disable
        })
        .unwrap();
    b.write_all(b"1").unwrap();
    lp.dispatch(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(calls.get(), 1);
    b.write_all(b"2").unwrap();
    lp.dispatch(Some(Duration::from_millis(30))).unwrap();
    assert_eq!(calls.get(), 1, "disabled sources are silent");
    lp.set_interest(token, Interest::READ).unwrap();
    lp.dispatch(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(calls.get(), 2);
}

#[test]
fn writable_interest_and_callbacks_registering_sources() {
    let mut lp = EventLoop::new().unwrap();
    let (a, mut b) = pair();
    let (c, _d) = pair();
    let log = Rc::new(RefCell::new(Vec::new()));
    let l = log.clone();
    lp.register(a, Interest::READ, move |_, s: &mut UnixStream, lp| {
        let _ = s.read(&mut [0u8; 8]);
        // Register another source from inside a callback.
        let l2 = l.clone();
        let other = c.try_clone().unwrap();
        lp.register(other, Interest::WRITE, move |r, _: &mut UnixStream, _| {
            assert!(r.writable);
            l2.borrow_mut().push("writable");
            PostAction::Remove
        })
        .unwrap();
        l.borrow_mut().push("readable");
        PostAction::Remove
    })
    .unwrap();
    b.write_all(b"go").unwrap();
    while log.borrow().len() < 2 {
        lp.dispatch(Some(Duration::from_secs(5))).unwrap();
    }
    assert_eq!(*log.borrow(), ["readable", "writable"]);
}

#[test]
fn cross_thread_wake_interrupts_a_blocked_dispatch() {
    let (tx, rx) = bounded(1);
    let (done_tx, done_rx) = bounded(1);
    let t = std::thread::spawn(move || {
        let mut lp = EventLoop::new().unwrap();
        tx.send(lp.handle()).unwrap();
        // Nothing registered, no timers: without a wake this blocks forever.
        lp.dispatch(None).unwrap();
        done_tx.send(()).unwrap();
    });
    let handle = rx.recv().unwrap();
    handle.wake();
    done_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("wake() ended the wait");
    t.join().unwrap();
}

#[test]
fn submitted_closures_run_on_the_loop_thread() {
    let (tx, rx) = bounded(1);
    let stop = Cancel::new();
    let s = stop.clone();
    let t = std::thread::spawn(move || {
        let mut lp = EventLoop::new().unwrap();
        tx.send((lp.handle(), std::thread::current().id())).unwrap();
        lp.run(&s).unwrap();
        lp.stats()
    });
    let (handle, loop_thread) = rx.recv().unwrap();
    let (res_tx, res_rx) = bounded(100);
    for i in 0..100 {
        let res_tx = res_tx.clone();
        handle
            .submit(move |_| res_tx.send((i, std::thread::current().id())).unwrap())
            .unwrap();
    }
    for i in 0..100 {
        let (j, thread) = res_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(
            (i, thread),
            (j, loop_thread),
            "in order, on the loop thread"
        );
    }
    // A closure that arms a timer that stops the loop through the handle.
    let h2 = handle.clone();
    handle
        .submit(move |lp| {
            lp.after(Duration::from_millis(1), move |_| h2.stop());
        })
        .unwrap();
    let stats = t.join().unwrap();
    assert_eq!(stats.jobs_run, 101);
    assert_eq!(stats.timers_fired, 1);
    assert!(
        !stop.is_cancelled(),
        "stopped by LoopHandle::stop, not the token"
    );
}

#[test]
fn the_queue_is_bounded_and_hands_rejected_closures_back() {
    let mut lp = EventLoop::with_queue_capacity(2).unwrap();
    let handle = lp.handle();
    let ran = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for _ in 0..2 {
        let r = ran.clone();
        handle
            .try_submit(move |_| {
                r.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            })
            .unwrap();
    }
    let r = ran.clone();
    let err = handle
        .try_submit(move |_| {
            r.fetch_add(10, std::sync::atomic::Ordering::SeqCst);
        })
        .unwrap_err();
    assert_eq!(err.kind(), SubmitErrorKind::Full);
    let job = err.into_job();
    let err = handle
        .submit_timeout(job, Duration::from_millis(10))
        .unwrap_err();
    assert_eq!(err.kind(), SubmitErrorKind::Timeout);
    let job = err.into_job();
    lp.dispatch(Some(Duration::ZERO)).unwrap();
    assert_eq!(ran.load(std::sync::atomic::Ordering::SeqCst), 2);
    // Room again: the handed-back closure can be resubmitted.
    handle.try_submit(job).unwrap();
    lp.dispatch(Some(Duration::ZERO)).unwrap();
    assert_eq!(ran.load(std::sync::atomic::Ordering::SeqCst), 12);
    drop(lp);
    let err = handle.try_submit(|_| {}).unwrap_err();
    assert_eq!(err.kind(), SubmitErrorKind::Closed);
    assert_eq!(
        handle.submit(|_| {}).unwrap_err().kind(),
        SubmitErrorKind::Closed
    );
}

#[test]
fn a_blocking_submit_from_the_loop_thread_is_refused_not_deadlocked() {
    let mut lp = EventLoop::with_queue_capacity(1).unwrap();
    let handle = lp.handle();
    handle.try_submit(|_| {}).unwrap(); // the queue is now full
    let seen = Rc::new(Cell::new(None));
    let s = seen.clone();
    let h = handle.clone();
    lp.after(Duration::ZERO, move |_| {
        // The loop may have drained the queue before this timer ran: fill it
        // again from here, so the blocking submit below would wait forever.
        while h.try_submit(|_| {}).is_ok() {}
        s.set(Some(h.submit(|_| {}).unwrap_err().kind()));
    });
    while seen.get().is_none() {
        lp.dispatch(Some(Duration::from_secs(5))).unwrap();
    }
    assert_eq!(seen.get(), Some(SubmitErrorKind::WouldDeadlock));
}

#[test]
fn run_returns_when_the_token_is_cancelled_from_another_thread() {
    let cancel = Cancel::new();
    let c = cancel.clone();
    let (tx, rx) = bounded(1);
    let t = std::thread::spawn(move || {
        let mut lp = EventLoop::new().unwrap();
        tx.send(()).unwrap();
        lp.run(&c).unwrap();
    });
    rx.recv().unwrap();
    cancel.cancel();
    t.join().unwrap();
}

/// The proof: a source that stays readable and is never read is
/// detected, deregistered, closed and logged, instead of spinning forever.
#[test]
fn no_progress_detector_drops_a_readable_source_that_is_never_read() {
    capture_logs();
    let mut lp = EventLoop::new().unwrap();
    let (a, mut b) = pair();
    let calls = Rc::new(Cell::new(0u32));
    let c = calls.clone();
    let token = lp
        .register(a, Interest::READ, move |_, _: &mut UnixStream, _| {
            c.set(c.get() + 1);
            PostAction::Continue // claims all is well, reads nothing
        })
        .unwrap();
    b.write_all(b"never read").unwrap();
    for _ in 0..1000 {
        if !lp.contains(token) {
            break;
        }
        lp.dispatch(Some(Duration::from_secs(5))).unwrap();
    }
    assert!(!lp.contains(token), "the spinning source was dropped");
    // Three rounds to start measuring, then 64 without progress.
    assert_eq!(calls.get(), 3 + 64);
    assert_eq!(lp.stats().spins_detected, 1);
    b.set_nonblocking(false).unwrap();
    assert_closed(&mut b);
    assert!(
        LOGS.lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("without progress") || l.contains("no progress")),
        "a warning was logged"
    );
    // An idle loop stays idle afterwards (no spin): the wait times out.
    let rounds = lp.stats().rounds;
    lp.dispatch(Some(Duration::from_millis(20))).unwrap();
    assert_eq!(lp.stats().rounds, rounds + 1);
    assert_eq!(lp.stats().events, u64::from(calls.get()));
}

#[test]
fn no_progress_detector_catches_an_unread_end_of_file() {
    let mut lp = EventLoop::new().unwrap();
    let (a, b) = pair();
    let token = lp
        .register(a, Interest::READ, |_, _: &mut UnixStream, _| {
            PostAction::Continue
        })
        .unwrap();
    drop(b); // the peer hangs up; the callback never reads the EOF
    for _ in 0..1000 {
        if !lp.contains(token) {
            break;
        }
        lp.dispatch(Some(Duration::from_secs(5))).unwrap();
    }
    assert!(!lp.contains(token));
    assert_eq!(lp.stats().spins_detected, 1);
}

#[test]
fn explicit_no_progress_counts_for_sources_without_fionread() {
    let mut lp = EventLoop::new().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let _pending = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    // Like a callback whose accept fails with EMFILE: it cannot act.
    let token = lp
        .register(listener, Interest::READ, |_, _: &mut TcpListener, _| {
            PostAction::NoProgress
        })
        .unwrap();
    for _ in 0..1000 {
        if !lp.contains(token) {
            break;
        }
        lp.dispatch(Some(Duration::from_secs(5))).unwrap();
    }
    assert!(!lp.contains(token));
    assert_eq!(lp.stats().spins_detected, 1);
}

#[test]
fn a_busy_source_that_makes_progress_is_not_dropped() {
    let mut lp = EventLoop::new().unwrap();
    let (a, mut b) = pair();
    b.write_all(&[7u8; 5000]).unwrap();
    let read = Rc::new(Cell::new(0usize));
    let r = read.clone();
    // Reads 5 bytes per call: readable for 1,000 rounds in a row.
    let token = lp
        .register(a, Interest::READ, move |_, s: &mut UnixStream, _| {
            let mut buf = [0u8; 5];
            if let Ok(n) = s.read(&mut buf) {
                r.set(r.get() + n);
            }
            PostAction::Continue
        })
        .unwrap();
    while read.get() < 5000 {
        lp.dispatch(Some(Duration::from_secs(5))).unwrap();
    }
    assert!(lp.contains(token));
    assert_eq!(lp.stats().spins_detected, 0);
}
