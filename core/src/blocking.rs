//! Announcing blocking sections to whoever owns the current thread.
//!
//! A worker pool or an event loop that runs user code on its threads wants to
//! know when that code blocks, so it can add a compensating worker (stead-pool)
//! or hand the thread's poller to a spare thread (stead-eventloop). Every
//! blocking wait in stead (a [`Conn`](crate::Conn) read or write that has to
//! wait, [`Cancel::wait`](crate::Cancel::wait), [`Cancel::sleep`](crate::Cancel::sleep))
//! calls [`enter`] on its slow path; user code marks its own with [`blocking`].
//! Nested sections notify only once.
//!
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use stead_core::blocking::{self, BlockingObserver};
//!
//! struct Count(AtomicUsize);
//! impl BlockingObserver for Count {
//!     fn enter(&self) { self.0.fetch_add(1, Ordering::SeqCst); }
//!     fn exit(&self) {}
//! }
//! let c = Arc::new(Count(AtomicUsize::new(0)));
//! blocking::set_observer(Some(c.clone()));
//! blocking::blocking(|| blocking::blocking(|| ()));
//! assert_eq!(c.0.load(Ordering::SeqCst), 1);
//! blocking::set_observer(None);
//! ```

use std::cell::{Cell, RefCell};
use std::sync::Arc;

/// Told when the current thread enters and leaves a blocking section.
pub trait BlockingObserver: Send + Sync {
    /// The thread is about to block.
    fn enter(&self);
    /// The thread no longer blocks.
    fn exit(&self);
}

thread_local! {
    static OBSERVER: RefCell<Option<Arc<dyn BlockingObserver>>> = const { RefCell::new(None) };
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// Set the current thread's observer; returns the previous one.
pub fn set_observer(obs: Option<Arc<dyn BlockingObserver>>) -> Option<Arc<dyn BlockingObserver>> {
    OBSERVER.with(|o| std::mem::replace(&mut *o.borrow_mut(), obs))
}

/// Whether the current thread has an observer.
pub fn has_observer() -> bool {
    OBSERVER.with(|o| o.borrow().is_some())
}

/// Whether [`enter`] here would tell anyone (an observer, or a hang-up
/// watch scope not armed yet): code that cannot tell in advance whether a
/// call will block tries it without blocking first only then.
pub(crate) fn would_notify() -> bool {
    DEPTH.with(Cell::get) == 0 && (crate::hangup::would_arm() || has_observer())
}

/// Mark the start of a blocking section; it ends when the guard drops.
pub fn enter() -> BlockingGuard {
    let depth = DEPTH.with(|d| {
        let v = d.get();
        d.set(v + 1);
        v
    });
    let obs = if depth == 0 {
        crate::hangup::on_block();
        OBSERVER.with(|o| o.borrow().clone())
    } else {
        None
    };
    if let Some(o) = &obs {
        o.enter();
    }
    BlockingGuard { obs }
}

/// Run `f` as a blocking section.
pub fn blocking<R>(f: impl FnOnce() -> R) -> R {
    let _g = enter();
    f()
}

/// Ends a blocking section when dropped.
#[must_use = "the section ends when the guard drops"]
pub struct BlockingGuard {
    obs: Option<Arc<dyn BlockingObserver>>,
}

impl Drop for BlockingGuard {
    fn drop(&mut self) {
        DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
        if let Some(o) = self.obs.take() {
            o.exit();
        }
    }
}
