//! stead-core: the foundation of stead, network services on plain threads
//! and blocking I/O.
//!
//! - [`Cancel`]: a cloneable cancellation token with children, deadlines and
//!   a reason; wait on it directly, through a file descriptor, a
//!   `crossbeam_channel` receiver, or a callback.
//! - [`Conn`] and [`Listener`]: blocking `read`/`write`/`accept` that return
//!   promptly (milliseconds) when the token fires or a timeout passes, with an
//!   `io::Error` that says which ([`Cancelled`], [`Timeout`]).
//! - [`shutdown_on_signals`]: SIGINT/SIGTERM become a cancelled root token.
//! - [`Server`]: a thread-per-connection TCP server with a connection limit
//!   (backpressure on accept), contained panics, back-off on resource
//!   exhaustion, and a graceful [`shutdown`](ServerHandle::shutdown).
//!
//! # Example
//!
//! An echo server that drains gracefully:
//!
//! ```
//! use std::io::{Read, Write};
//! use std::time::Duration;
//! use stead_core::{Conn, Server};
//!
//! let handle = Server::builder()
//!     .max_connections(1000)
//!     .bind("127.0.0.1:0")?
//!     .serve(|mut conn: Conn| {
//!         conn.set_read_timeout(Some(Duration::from_secs(30)));
//!         let mut buf = [0u8; 4096];
//!         loop {
//!             if !conn.mark_idle() { break } // draining: close instead of waiting
//!             let n = match conn.read(&mut buf) { Ok(0) | Err(_) => break, Ok(n) => n };
//!             if !conn.mark_active() { break } // a drain closed us while idle
//!             if conn.write_all(&buf[..n]).is_err() { break }
//!         }
//!     });
//!
//! let mut client = std::net::TcpStream::connect(handle.local_addr())?;
//! client.write_all(b"hi")?;
//! let mut got = [0u8; 2];
//! client.read_exact(&mut got)?;
//! assert_eq!(&got, b"hi");
//!
//! // In a real program: handle.run_until(&stead_core::shutdown_on_signals()?, grace)
//! let report = handle.shutdown(Duration::from_secs(5));
//! assert_eq!(report.idle_closed, 1);
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # Cancellation and deadlines
//!
//! ```
//! use std::time::Duration;
//! use stead_core::{Cancel, CancelReason};
//!
//! let server = Cancel::new();
//! let request = server.child_with_timeout(Duration::from_millis(10));
//! // A cancellable sleep ends at the request's deadline, not after a second.
//! let err = request.sleep(Duration::from_secs(1)).unwrap_err();
//! assert_eq!(err.reason(), CancelReason::DeadlineExceeded);
//! assert!(!server.is_cancelled()); // never the reverse
//! ```
#![doc(test(attr(deny(warnings))))]
#![deny(unsafe_code)]

mod backoff;
pub mod blocking;
mod blocking_socket;
mod cancel;
mod driver;
mod hangup;
mod io;
mod server;
mod shutdown;
mod sys;

pub use cancel::{CallbackGuard, Cancel, CancelFd, CancelReason, Cancelled, Never};
pub use io::{Conn, ConnTracker, Listener, Timeout};
pub use server::{
    Drain, Handler, Job, Server, ServerBuilder, ServerHandle, ServerStats, ShutdownReport, Spawner,
    ThreadSpawner, bind_listener, fit_fd_limit, graceful_shutdown,
};
pub use shutdown::shutdown_on_signals;
