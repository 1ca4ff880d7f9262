//! Composable synchronous middleware: each wraps a [`Handler`] and is one.
//!
//! ```
//! use std::time::Duration;
//! use stead_http::{HandlerExt, Router};
//!
//! let app = Router::new()
//!     .get("/", |_req, _c| "hi")
//!     .timeout(Duration::from_secs(10))      // handler's Cancel fires at 10 s; 504 if it gave up
//!     .concurrency_limit(64, 256)            // 64 at once, 256 waiting, then 503 + Retry-After
//!     .log_requests();                       // one `log` line per request
//! # let _ = app;
//! ```
//!
//! Panics need no middleware: the server always turns a handler panic into
//! `500` and closes the connection.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use stead_core::{Cancel, CancelReason};

use crate::body::Body;
use crate::handler::Handler;
use crate::response::{IntoResponse, ResponseBody};

/// Adapters every handler gets.
pub trait HandlerExt: Handler + Sized {
    /// See [`RequestTimeout`].
    fn timeout(self, after: Duration) -> RequestTimeout<Self> {
        RequestTimeout::new(self, after)
    }
    /// See [`ConcurrencyLimit`].
    fn concurrency_limit(self, max_running: usize, max_waiting: usize) -> ConcurrencyLimit<Self> {
        ConcurrencyLimit::new(self, max_running, max_waiting)
    }
    /// See [`Logger`].
    fn log_requests(self) -> Logger<Self> {
        Logger::new(self)
    }
}

impl<H: Handler> HandlerExt for H {}

/// Gives the inner handler a [`Cancel`] that fires `after` the request
/// starts. If it fired by the time the handler returns, the response is
/// replaced by `504 Gateway Timeout` (configurable; Go's `TimeoutHandler`
/// uses 503). The handler must watch its token (stead's blocking calls do):
/// threads cannot be pre-empted.
#[derive(Debug, Clone)]
pub struct RequestTimeout<H> {
    inner: H,
    after: Duration,
    status: StatusCode,
}

impl<H: Handler> RequestTimeout<H> {
    /// Wrap `inner`.
    pub fn new(inner: H, after: Duration) -> Self {
        RequestTimeout {
            inner,
            after,
            status: StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The status answered on timeout (default 504).
    pub fn status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }
}

impl<H: Handler> Handler for RequestTimeout<H> {
    fn call(&self, req: Request<Body<'_>>, cancel: &Cancel) -> Response<ResponseBody> {
        let child = cancel.child_with_timeout(self.after);
        let resp = self.inner.call(req, &child);
        let timed_out = child.reason() == Some(CancelReason::DeadlineExceeded)
            && cancel.reason() != Some(CancelReason::DeadlineExceeded);
        if timed_out {
            return (self.status, "request timed out\n").into_response();
        }
        resp
    }
}

struct LimitState {
    running: usize,
    waiting: usize,
}

struct LimitShared {
    state: Mutex<LimitState>,
    freed: Condvar,
}

/// Runs at most `max_running` requests at once; up to `max_waiting` more
/// wait (at most [`max_wait`](ConcurrencyLimit::max_wait), and never past
/// their [`Cancel`]); beyond that, requests are shed at once with
/// `503 Service Unavailable` and `Retry-After`.
///
/// A bounded queue, so load beyond capacity turns into fast 503s instead of
/// memory growth and latency (DESIGN.md, failure mode 3).
pub struct ConcurrencyLimit<H> {
    inner: H,
    shared: Arc<LimitShared>,
    max_running: usize,
    max_waiting: usize,
    max_wait: Duration,
    retry_after: HeaderValue,
}

impl<H> std::fmt::Debug for ConcurrencyLimit<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConcurrencyLimit")
            .field("max_running", &self.max_running)
            .field("max_waiting", &self.max_waiting)
            .field("max_wait", &self.max_wait)
            .finish()
    }
}

impl<H: Handler> ConcurrencyLimit<H> {
    /// Wrap `inner`.
    pub fn new(inner: H, max_running: usize, max_waiting: usize) -> Self {
        ConcurrencyLimit {
            inner,
            shared: Arc::new(LimitShared {
                state: Mutex::new(LimitState {
                    running: 0,
                    waiting: 0,
                }),
                freed: Condvar::new(),
            }),
            max_running: max_running.max(1),
            max_waiting,
            max_wait: Duration::from_secs(10),
            retry_after: HeaderValue::from_static("1"),
        }
    }

    /// Longest time a request waits for a slot before it is shed (default 10 s).
    pub fn max_wait(mut self, d: Duration) -> Self {
        self.max_wait = d;
        self
    }

    /// The `Retry-After` value in seconds (default 1).
    pub fn retry_after(mut self, secs: u32) -> Self {
        self.retry_after = HeaderValue::from(secs);
        self
    }

    /// Requests running and waiting now.
    pub fn load(&self) -> (usize, usize) {
        let st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        (st.running, st.waiting)
    }

    fn shed(&self) -> Response<ResponseBody> {
        let mut r = (StatusCode::SERVICE_UNAVAILABLE, "overloaded, retry later\n").into_response();
        r.headers_mut()
            .insert(header::RETRY_AFTER, self.retry_after.clone());
        r
    }

    /// Take a slot, waiting if allowed. `false`: shed.
    fn acquire(&self, cancel: &Cancel) -> bool {
        let shared = &self.shared;
        let mut st = shared.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.running < self.max_running {
            st.running += 1;
            return true;
        }
        if st.waiting >= self.max_waiting {
            return false;
        }
        st.waiting += 1;
        drop(st);
        // Wake this waiter when the request is cancelled.
        let waker = {
            let shared = self.shared.clone();
            cancel.on_cancel(move |_| {
                let _g = shared.state.lock();
                shared.freed.notify_all();
            })
        };
        let _blocking = stead_core::blocking::enter();
        let deadline = Instant::now() + self.max_wait;
        let mut st = shared.state.lock().unwrap_or_else(|e| e.into_inner());
        let got = loop {
            if st.running < self.max_running {
                st.running += 1;
                break true;
            }
            let now = Instant::now();
            if now >= deadline || cancel.is_cancelled() {
                break false;
            }
            st = shared
                .freed
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        };
        st.waiting -= 1;
        drop(st);
        drop(waker);
        got
    }
}

/// Releases a slot, also when the handler panics.
struct Permit<'a>(&'a LimitShared);

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut st = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
        st.running -= 1;
        drop(st);
        self.0.freed.notify_one();
    }
}

impl<H: Handler> Handler for ConcurrencyLimit<H> {
    fn call(&self, req: Request<Body<'_>>, cancel: &Cancel) -> Response<ResponseBody> {
        if !self.acquire(cancel) {
            return self.shed();
        }
        let _permit = Permit(&self.shared);
        self.inner.call(req, cancel)
    }
}

/// Logs one line per request through `log` (target `stead_http::access`,
/// level info): peer, method, path, version, status, duration.
#[derive(Debug, Clone)]
pub struct Logger<H> {
    inner: H,
}

impl<H: Handler> Logger<H> {
    /// Wrap `inner`.
    pub fn new(inner: H) -> Self {
        Logger { inner }
    }
}

impl<H: Handler> Handler for Logger<H> {
    fn call(&self, req: Request<Body<'_>>, cancel: &Cancel) -> Response<ResponseBody> {
        if !log::log_enabled!(target: "stead_http::access", log::Level::Info) {
            return self.inner.call(req, cancel);
        }
        let start = Instant::now();
        let method = req.method().clone();
        let uri = req.uri().clone();
        let version = req.version();
        let peer = req.body().peer_addr();
        let resp = self.inner.call(req, cancel);
        let peer = peer.map_or_else(|| "-".to_owned(), |p| p.to_string());
        log::info!(
            target: "stead_http::access",
            "{peer} \"{method} {uri} {version:?}\" {} {}us",
            resp.status().as_u16(),
            start.elapsed().as_micros()
        );
        resp
    }
}
