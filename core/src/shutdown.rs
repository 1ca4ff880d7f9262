//! SIGINT/SIGTERM to a cancelled root token.
//!
//! The correct order of handling, as signal-hook spells it out: the handler
//! itself only sets flags and writes to a self-pipe; one thread (`stead-signals`)
//! reads the pipe and cancels the root token with [`CancelReason::Shutdown`].
//! A second SIGINT or SIGTERM while the first is being handled exits the
//! process at once with status 130 (the user pressed Ctrl-C twice).

use std::io;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::cancel::{Cancel, CancelReason};

static ROOT: OnceLock<Cancel> = OnceLock::new();

/// The process's shutdown token: cancelled with [`CancelReason::Shutdown`] on
/// the first SIGINT or SIGTERM; a second one exits at once.
///
/// The handlers are installed on the first call; later calls return the same
/// token. Make server and work tokens children of it, or pass it to
/// [`ServerHandle::run_until`](crate::ServerHandle::run_until) for a graceful drain.
///
/// ```no_run
/// let shutdown = stead_core::shutdown_on_signals().expect("install signal handlers");
/// shutdown.wait(); // until Ctrl-C or SIGTERM
/// ```
pub fn shutdown_on_signals() -> io::Result<Cancel> {
    if let Some(c) = ROOT.get() {
        return Ok(c.clone());
    }
    // Serialise installation: two racing first calls must not install twice.
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _g = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(c) = ROOT.get() {
        return Ok(c.clone());
    }
    let token = Cancel::new();
    let seen = Arc::new(AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        // Registered first, so it sees the flag as it was before this signal.
        signal_hook::flag::register_conditional_shutdown(sig, 130, seen.clone())
            .map_err(|e| context(e, "install the second-signal exit handler"))?;
        signal_hook::flag::register(sig, seen.clone())
            .map_err(|e| context(e, "install the shutdown flag handler"))?;
    }
    let mut signals =
        Signals::new([SIGINT, SIGTERM]).map_err(|e| context(e, "create the signal pipe"))?;
    let t = token.clone();
    std::thread::Builder::new()
        .name("stead-signals".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                let name = if sig == SIGINT { "SIGINT" } else { "SIGTERM" };
                log::info!("stead: {name} received, shutting down (send it again to exit at once)");
                t.cancel_with(CancelReason::Shutdown);
            }
        })
        .map_err(|e| context(e, "spawn the signal thread"))?;
    let _ = ROOT.set(token.clone());
    Ok(token)
}

fn context(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("stead: cannot {what}: {e}"))
}
