//! The application interface: a handler turns a request into a response.

use std::net::SocketAddr;
use std::sync::Arc;

use http::{Request, Response};
use stead_core::Cancel;

use crate::body::Body;
use crate::response::{IntoResponse, ResponseBody};
use crate::router::PathParams;

/// Turns a request into a response, on the connection's thread (thread
/// mode) or a worker (event mode). Blocking is fine; long waits should
/// watch `cancel`.
///
/// `cancel` fires on shutdown (at the end of the grace period), when the
/// connection fails, and at the deadline a [`RequestTimeout`](crate::RequestTimeout)
/// middleware sets.
///
/// Implemented for closures `Fn(Request<Body>, &Cancel) -> impl IntoResponse`.
/// Annotate the parameter types when passing a closure straight to
/// [`serve`](crate::HttpServer::serve) (the [`Router`](crate::Router)
/// methods infer them):
///
/// ```
/// use http::{Request, Response};
/// use stead_core::Cancel;
/// use stead_http::{Body, Handler, ResponseBody};
///
/// let h = |req: Request<Body>, _: &Cancel| format!("you asked for {}", req.uri().path());
/// let resp = Handler::call(&h, Request::new(Body::empty()), &Cancel::new());
/// assert_eq!(resp.status(), 200);
///
/// struct Hello;
/// impl Handler for Hello {
///     fn call(&self, _req: Request<Body<'_>>, _: &Cancel) -> Response<ResponseBody> {
///         Response::new("hello".into())
///     }
/// }
/// let resp = Hello.call(Request::new(Body::empty()), &Cancel::new());
/// assert_eq!(resp.body().len(), Some(5));
/// ```
pub trait Handler: Send + Sync + 'static {
    /// Handle one request.
    fn call(&self, req: Request<Body<'_>>, cancel: &Cancel) -> Response<ResponseBody>;
}

impl<F, R> Handler for F
where
    F: Fn(Request<Body<'_>>, &Cancel) -> R + Send + Sync + 'static,
    R: IntoResponse,
{
    #[inline]
    fn call(&self, req: Request<Body<'_>>, cancel: &Cancel) -> Response<ResponseBody> {
        self(req, cancel).into_response()
    }
}

/// A shared handler (e.g. one router served by two servers).
#[derive(Debug)]
pub struct SharedHandler<H: ?Sized>(pub Arc<H>);

impl<H: ?Sized> Clone for SharedHandler<H> {
    fn clone(&self) -> Self {
        SharedHandler(self.0.clone())
    }
}

impl<H: Handler + ?Sized> Handler for SharedHandler<H> {
    fn call(&self, req: Request<Body<'_>>, cancel: &Cancel) -> Response<ResponseBody> {
        self.0.call(req, cancel)
    }
}

/// Type-erased handler.
pub type BoxHandler = Box<dyn Handler>;

impl Handler for BoxHandler {
    fn call(&self, req: Request<Body<'_>>, cancel: &Cancel) -> Response<ResponseBody> {
        (**self).call(req, cancel)
    }
}

/// Conveniences on requests.
pub trait RequestExt {
    /// A path parameter captured by the [`Router`](crate::Router) (raw,
    /// still percent-encoded).
    fn param(&self, name: &str) -> Option<&str>;
    /// All path parameters.
    fn params(&self) -> Option<&PathParams>;
    /// The client's address.
    fn peer_addr(&self) -> Option<SocketAddr>;
}

impl RequestExt for Request<Body<'_>> {
    fn param(&self, name: &str) -> Option<&str> {
        self.params()?.get(name)
    }

    fn params(&self) -> Option<&PathParams> {
        self.extensions().get::<PathParams>()
    }

    fn peer_addr(&self) -> Option<SocketAddr> {
        self.body().peer_addr()
    }
}
