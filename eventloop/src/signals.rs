//! Signals as loop events, through signal-hook's self-pipe.
//!
//! The handler signal-hook installs only records the signal and writes a
//! byte to a socket pair; the read end is registered in the loop's poller,
//! and the loop runs the callbacks on its own thread. signal-hook keeps a
//! chain of actions per signal, so this registration and stead-core's
//! `shutdown_on_signals` (or any other signal-hook user) all see every
//! delivery: nobody steals a signal from anybody, whatever the order of
//! installation. (A `signalfd` would need the signal blocked in every
//! thread, which would break those other handlers: that is why it is not
//! used.)

use std::io;
use std::os::raw::c_int;
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use polling::Poller;
use signal_hook::iterator::backend::SignalDelivery;
use signal_hook::iterator::exfiltrator::SignalOnly;

use crate::event_loop::{EventLoop, Interest, Mode, Registered, SignalId};
use crate::sys;

type Callback = Box<dyn FnMut(&mut EventLoop, c_int)>;

struct Handler {
    id: u64,
    signal: c_int,
    /// `None` while the callback runs.
    callback: Option<Callback>,
}

/// The loop's signal state: one self-pipe for all watched signals.
pub(crate) struct Signals {
    // Field order matters: the registration (which deletes the read end
    // from the poller) drops before the delivery that owns the read end.
    _reg: Registered<ReadEnd>,
    delivery: SignalDelivery<UnixStream, SignalOnly>,
    handlers: Vec<Handler>,
    next_id: u64,
}

/// A duplicate of the self-pipe's read end, registered in the poller.
struct ReadEnd(std::os::fd::OwnedFd);

impl std::os::fd::AsFd for ReadEnd {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl Signals {
    pub(crate) fn new(poller: &Arc<Poller>, key: usize) -> io::Result<Signals> {
        let (read, write) =
            UnixStream::pair().map_err(|e| sys::context(e, "create the signal self-pipe"))?;
        read.set_nonblocking(true)?;
        write.set_nonblocking(true)?;
        let dup = read
            .try_clone()
            .map_err(|e| sys::context(e, "duplicate the signal self-pipe"))?;
        let reg = Registered::new(
            poller,
            ReadEnd(dup.into()),
            Interest::READ,
            Mode::Level,
            key,
        )?;
        let delivery =
            SignalDelivery::with_pipe(read, write, SignalOnly, std::iter::empty::<c_int>())
                .map_err(|e| sys::context(e, "set up signal delivery"))?;
        Ok(Signals {
            _reg: reg,
            delivery,
            handlers: Vec::new(),
            next_id: 1,
        })
    }

    pub(crate) fn add(&mut self, signal: c_int, callback: Callback) -> io::Result<SignalId> {
        if !(1..=64).contains(&signal) || signal_hook::consts::FORBIDDEN.contains(&signal) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("stead-eventloop: signal {signal} cannot be watched"),
            ));
        }
        self.delivery
            .handle()
            .add_signal(signal)
            .map_err(|e| sys::context(e, &format!("install a handler for signal {signal}")))?;
        let id = self.next_id;
        self.next_id += 1;
        self.handlers.push(Handler {
            id,
            signal,
            callback: Some(callback),
        });
        Ok(SignalId(id))
    }

    pub(crate) fn remove(&mut self, id: SignalId) -> bool {
        let before = self.handlers.len();
        self.handlers.retain(|h| h.id != id.0);
        before != self.handlers.len()
    }

    /// Signals received since the last call (drains the self-pipe).
    pub(crate) fn pending(&mut self) -> Vec<c_int> {
        self.delivery.pending().collect()
    }

    pub(crate) fn ids_for(&self, signal: c_int) -> Vec<u64> {
        self.handlers
            .iter()
            .filter(|h| h.signal == signal)
            .map(|h| h.id)
            .collect()
    }

    pub(crate) fn take(&mut self, id: u64) -> Option<Callback> {
        self.handlers
            .iter_mut()
            .find(|h| h.id == id)
            .and_then(|h| h.callback.take())
    }

    /// Return a callback after it ran, unless it was removed meanwhile.
    pub(crate) fn put_back(&mut self, id: u64, cb: Callback) {
        if let Some(h) = self.handlers.iter_mut().find(|h| h.id == id) {
            h.callback = Some(cb);
        }
    }
}
