//! Client-disconnect detection for work in progress.
//!
//! While a request's handler runs, nobody reads its connection, so a client
//! that gives up (closes or resets the connection) goes unnoticed until the
//! response is written. [`Conn::begin_hangup_watch`](crate::Conn::begin_hangup_watch)
//! opens a *watch scope* on the current thread; if the thread then blocks in
//! a stead wait (anything that calls [`blocking::enter`](crate::blocking::enter):
//! `Cancel::sleep`, `Cancel::wait`, a blocked `Conn` read or write, a pool
//! join), the connection is armed, once per scope, with
//! `EPOLLRDHUP | EPOLLONESHOT` in one process-wide epoll set. One lazily
//! started thread (`stead-hangup`) waits on that set; when the peer has
//! closed its side with no unread input left (or reset the connection) it
//! cancels the connection's token with [`CancelReason::Disconnected`].
//!
//! A scope costs nothing until the thread blocks (a thread-local store), and
//! one `epoll_ctl` when it does; requests that never block pay no syscall.
//! Unread input before the end of stream (a pipelined request followed by a
//! half-close) is not a disconnect, as in nginx: the request is answered.
//!
//! The registry entry of a connection is owned by its `Conn` and dropped
//! (under the registry lock, taking the descriptor out of the epoll set)
//! before the socket can close or be replaced: on drop (field order), and
//! in `get_mut`, `into_inner`, `map`, `try_map` and `replace_cancel`. That
//! is what keeps the raw descriptor the watcher uses valid. A scope that
//! armed the connection takes it out of the set when it ends, so nothing
//! is watched between requests.

use std::cell::Cell;
use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::{Mutex, MutexGuard, OnceLock};

use rustix::event::epoll;

use crate::cancel::{Cancel, CancelReason, WeakCancel};

struct Entry {
    /// The connection's descriptor; open while the entry exists.
    fd: RawFd,
    cancel: WeakCancel,
    /// Any end of input counts, even with unread input before it (TLS,
    /// where that input may be only a closing alert).
    any_eof: bool,
    /// In the epoll set now (armed, or fired and disabled): a later arm
    /// uses `MOD`, and the end of the scope or the registration removes it.
    added: bool,
}

struct Registry {
    next: u64,
    entries: HashMap<u64, Entry>,
}

struct Watcher {
    epoll: OwnedFd,
    registry: Mutex<Registry>,
}

/// The process-wide watcher; `None` if its epoll set or thread could not be created.
fn watcher() -> Option<&'static Watcher> {
    static W: OnceLock<Option<Watcher>> = OnceLock::new();
    W.get_or_init(|| {
        let epoll = match epoll::create(epoll::CreateFlags::CLOEXEC) {
            Ok(e) => e,
            Err(e) => {
                log::error!("stead: cannot create the hang-up watcher's epoll set: {e}");
                return None;
            }
        };
        Some(Watcher {
            epoll,
            registry: Mutex::new(Registry {
                next: 1,
                entries: HashMap::new(),
            }),
        })
    })
    .as_ref()
}

fn lock(w: &Watcher) -> MutexGuard<'_, Registry> {
    // Nothing panics while the lock is held; the data stays consistent anyway.
    w.registry.lock().unwrap_or_else(|e| e.into_inner())
}

/// Start the watcher thread once; `false` if it cannot run.
fn ensure_thread() -> bool {
    static STARTED: OnceLock<bool> = OnceLock::new();
    *STARTED.get_or_init(|| {
        let spawned = std::thread::Builder::new()
            .name("stead-hangup".into())
            .stack_size(64 * 1024)
            .spawn(run);
        match spawned {
            Ok(_) => true,
            Err(e) => {
                log::error!(
                    "stead: cannot start the hang-up watcher thread: {e}; client disconnects \
                     will not cancel requests"
                );
                false
            }
        }
    })
}

/// A connection's registry entry; dropping it unregisters the connection.
/// Held by the `Conn`, declared before its stream so it drops first.
pub(crate) struct Registration {
    id: u64,
}

impl Registration {
    /// Register `fd` (not armed yet).
    pub(crate) fn new(fd: BorrowedFd<'_>, cancel: &Cancel, any_eof: bool) -> Option<Registration> {
        let w = watcher()?;
        let mut reg = lock(w);
        let id = reg.next;
        reg.next += 1;
        reg.entries.insert(
            id,
            Entry {
                fd: std::os::fd::AsRawFd::as_raw_fd(&fd),
                cancel: cancel.downgrade(),
                any_eof,
                added: false,
            },
        );
        Some(Registration { id })
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }
}

impl Drop for Registration {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        let Some(w) = watcher() else { return };
        let mut reg = lock(w);
        if let Some(entry) = reg.entries.remove(&self.id)
            && entry.added
        {
            // SAFETY: the `Conn` drops its registration before its stream
            // (field order, and explicitly wherever the stream may be
            // replaced or moved out: `get_mut`, `into_inner`, `map`,
            // `try_map`), so the descriptor is still open here.
            let fd = unsafe { BorrowedFd::borrow_raw(entry.fd) };
            let _ = epoll::delete(w.epoll.as_fd(), fd);
        }
    }
}

/// The watch scope of the current thread: the registration id, and whether
/// it was armed during this scope.
#[derive(Clone, Copy)]
struct Scope {
    id: u64,
    armed: bool,
}

thread_local! {
    static SCOPE: Cell<Option<Scope>> = const { Cell::new(None) };
}

/// Open the current thread's scope for registration `id`.
pub(crate) fn begin(id: u64) {
    SCOPE.with(|s| s.set(Some(Scope { id, armed: false })));
}

/// Close the current thread's scope for registration `id` (a scope of
/// another registration is left alone); if it armed the connection, take
/// the connection out of the epoll set (`fd` is its open descriptor), so
/// nothing is watched between requests: not a later reset either, which
/// would otherwise be reported again and again (`EPOLLHUP`/`EPOLLERR` are
/// always reported).
pub(crate) fn end(id: u64, fd: BorrowedFd<'_>) {
    let scope = SCOPE.with(|s| {
        let cur = s.get();
        if cur.is_some_and(|c| c.id == id) {
            s.set(None);
        }
        cur
    });
    if let (
        Some(Scope {
            id: sid,
            armed: true,
        }),
        Some(w),
    ) = (scope, watcher())
        && sid == id
    {
        let mut reg = lock(w);
        if let Some(entry) = reg.entries.get_mut(&id)
            && entry.added
        {
            entry.added = false;
            let _ = epoll::delete(w.epoll.as_fd(), fd);
        }
    }
}

/// Whether [`on_block`] would arm a connection now.
pub(crate) fn would_arm() -> bool {
    SCOPE.with(|s| s.get().is_some_and(|s| !s.armed))
}

/// Called by [`blocking::enter`](crate::blocking::enter) at depth 0: arm the
/// scope's connection, once per scope.
pub(crate) fn on_block() {
    let Some(mut scope) = SCOPE.with(Cell::get) else {
        return;
    };
    if scope.armed {
        return;
    }
    scope.armed = true;
    SCOPE.with(|s| s.set(Some(scope)));
    if let Err(e) = arm(scope.id) {
        log::debug!("stead: cannot watch a connection for hang-up: {e}");
    }
}

#[allow(unsafe_code)]
fn arm(id: u64) -> io::Result<()> {
    let Some(w) = watcher() else { return Ok(()) };
    if !ensure_thread() {
        return Ok(());
    }
    let mut reg = lock(w);
    let Some(entry) = reg.entries.get_mut(&id) else {
        return Ok(());
    };
    // SAFETY: the entry exists, and entries are removed (under this lock,
    // which we hold) by `Registration::drop`, which the `Conn` holding the
    // registration runs before its socket can close or be replaced (field
    // order; `get_mut`, `into_inner`, `map`, `try_map` and `replace_cancel`
    // drop the registration first). So `entry.fd` is open for the borrow.
    let fd = unsafe { BorrowedFd::borrow_raw(entry.fd) };
    let flags = epoll::EventFlags::RDHUP | epoll::EventFlags::ONESHOT;
    let data = epoll::EventData::new_u64(id);
    if entry.added {
        epoll::modify(w.epoll.as_fd(), fd, data, flags)?;
    } else {
        epoll::add(w.epoll.as_fd(), fd, data, flags)?;
        entry.added = true;
    }
    Ok(())
}

/// The watcher thread.
#[allow(unsafe_code)]
fn run() {
    let Some(w) = watcher() else { return };
    let mut events: Vec<epoll::Event> = Vec::with_capacity(64);
    loop {
        events.clear();
        match epoll::wait(
            w.epoll.as_fd(),
            rustix::buffer::spare_capacity(&mut events),
            None,
        ) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => {
                log::error!("stead: the hang-up watcher stopped: {e}");
                return;
            }
        }
        let mut gone = Vec::new();
        {
            let reg = lock(w);
            for ev in &events {
                let (flags, data) = (ev.flags, ev.data);
                let Some(entry) = reg.entries.get(&data.u64()) else {
                    continue; // unregistered meanwhile
                };
                let hard = flags.intersects(epoll::EventFlags::HUP | epoll::EventFlags::ERR);
                let disconnected = hard || entry.any_eof || {
                    // SAFETY: as in `arm`: the entry exists and we hold the
                    // registry lock, so the connection is not closed yet.
                    let fd = unsafe { BorrowedFd::borrow_raw(entry.fd) };
                    rustix::io::ioctl_fionread(fd).is_ok_and(|n| n == 0)
                };
                if disconnected {
                    gone.push(entry.cancel.upgrade());
                }
            }
        }
        for c in gone.into_iter().flatten() {
            // A panicking `on_cancel` callback must not end disconnect
            // detection for the whole process.
            let fired = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                c.cancel_with(CancelReason::Disconnected);
            }));
            if fired.is_err() {
                log::error!("stead: an on_cancel callback panicked on the hang-up watcher thread");
            }
        }
    }
}
