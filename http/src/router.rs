//! A router over `matchit`: path parameters, method matching, 404 and 405
//! with `Allow`.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use stead_core::Cancel;

use crate::body::Body;
use crate::handler::Handler;
use crate::response::{IntoResponse, ResponseBody};

/// Path parameters captured by a [`Router`] route, in the request's
/// extensions (see [`RequestExt::param`](crate::RequestExt::param)).
#[derive(Debug, Clone, Default)]
pub struct PathParams {
    /// All values, concatenated.
    values: String,
    /// Name and span of each value in `values`.
    entries: Vec<(Arc<str>, usize, usize)>,
}

impl PathParams {
    /// The value of parameter `name`, percent-decoded (`/files/a%20b` gives
    /// `a b` for `/files/{name}`; a request whose parameter does not decode
    /// to UTF-8 gets `400` before the handler runs).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _, _)| &**k == name)
            .map(|&(_, a, b)| &self.values[a..b])
    }

    /// Parameters in route order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries
            .iter()
            .map(|(k, a, b)| (&**k, &self.values[*a..*b]))
    }

    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

struct Route {
    /// Handlers by method, in registration order.
    methods: Vec<(Method, Box<dyn Handler>)>,
    any: Option<Box<dyn Handler>>,
    /// Parameter names, shared by every match.
    names: Vec<Arc<str>>,
    /// `Allow` for a 405.
    allow: HeaderValue,
}

impl Route {
    fn handler(&self, method: &Method) -> Option<&dyn Handler> {
        let found = self.methods.iter().find(|(m, _)| m == method);
        if let Some((_, h)) = found {
            return Some(&**h);
        }
        if method == Method::HEAD
            && let Some((_, h)) = self.methods.iter().find(|(m, _)| m == Method::GET)
        {
            return Some(&**h);
        }
        self.any.as_deref()
    }

    fn update_allow(&mut self) {
        let mut names: Vec<&str> = self.methods.iter().map(|(m, _)| m.as_str()).collect();
        if names.contains(&"GET") && !names.contains(&"HEAD") {
            names.push("HEAD");
        }
        let joined = names.join(", ");
        self.allow = HeaderValue::from_str(&joined).unwrap_or(HeaderValue::from_static(""));
    }
}

/// Routes requests by path (with `{param}` and `{*rest}` segments, see
/// `matchit`) and method. An unknown path gets `404`; a known path with
/// another method gets `405` with `Allow`. `HEAD` uses the `GET` handler
/// (the server sends no body).
///
/// ```
/// use http::Method;
/// use stead_http::{Router, RequestExt};
///
/// let router = Router::new()
///     .get("/", |_req, _c| "home")
///     .get("/users/{id}", |req, _c| format!("user {}", req.param("id").unwrap()))
///     .post("/users", |mut req, _c| {
///         let body = req.body_mut().read_all()?;
///         Ok::<_, std::io::Error>((http::StatusCode::CREATED, body))
///     })
///     .route(Method::DELETE, "/users/{id}", |_req: http::Request<stead_http::Body>, _: &stead_core::Cancel| http::StatusCode::NO_CONTENT);
/// # let _ = router;
/// ```
pub struct Router {
    paths: matchit::Router<usize>,
    routes: Vec<Route>,
    by_pattern: HashMap<String, usize>,
    fallback: Option<Box<dyn Handler>>,
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field("routes", &self.routes.len())
            .finish()
    }
}

impl Default for Router {
    fn default() -> Self {
        Router::new()
    }
}

/// A route could not be added.
#[derive(Debug)]
pub struct RouteError(String);

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RouteError {}

impl Router {
    /// An empty router (everything is 404).
    pub fn new() -> Self {
        Router {
            paths: matchit::Router::new(),
            routes: Vec::new(),
            by_pattern: HashMap::new(),
            fallback: None,
        }
    }

    /// Add `handler` for `method` on `path`, or report why it cannot be
    /// added (an invalid pattern, a conflict with another pattern, or the
    /// same method twice).
    pub fn try_route(
        mut self,
        method: Method,
        path: &str,
        handler: impl Handler,
    ) -> Result<Self, RouteError> {
        let idx = self.route_index(path)?;
        let route = &mut self.routes[idx];
        if route.methods.iter().any(|(m, _)| *m == method) {
            return Err(RouteError(format!(
                "stead-http: {method} {path} is routed twice"
            )));
        }
        route.methods.push((method, Box::new(handler)));
        route.update_allow();
        Ok(self)
    }

    /// Add `handler` for `method` on `path`.
    ///
    /// # Panics
    ///
    /// On an invalid or conflicting pattern (a programming error found at
    /// startup); [`try_route`](Router::try_route) returns it instead.
    pub fn route(self, method: Method, path: &str, handler: impl Handler) -> Self {
        self.try_route(method, path, handler)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Add `handler` for every method not routed otherwise on `path`.
    ///
    /// # Panics
    ///
    /// On an invalid or conflicting pattern.
    pub fn any(mut self, path: &str, handler: impl Handler) -> Self {
        let idx = self.route_index(path).unwrap_or_else(|e| panic!("{e}"));
        self.routes[idx].any = Some(Box::new(handler));
        self
    }

    /// The handler for paths no route matches (default: `404 Not Found`).
    pub fn fallback(mut self, handler: impl Handler) -> Self {
        self.fallback = Some(Box::new(handler));
        self
    }

    fn route_index(&mut self, path: &str) -> Result<usize, RouteError> {
        if let Some(&idx) = self.by_pattern.get(path) {
            return Ok(idx);
        }
        let idx = self.routes.len();
        self.paths
            .insert(path, idx)
            .map_err(|e| RouteError(format!("stead-http: cannot route {path}: {e}")))?;
        self.by_pattern.insert(path.to_owned(), idx);
        self.routes.push(Route {
            methods: Vec::new(),
            any: None,
            names: param_names(path),
            allow: HeaderValue::from_static(""),
        });
        Ok(idx)
    }
}

/// Append `raw` to `out`, percent-decoded; `false` if a `%` is not followed
/// by two hex digits or the result is not UTF-8.
fn push_decoded(out: &mut String, raw: &str) -> bool {
    if !raw.contains('%') {
        out.push_str(raw);
        return true;
    }
    let b = raw.as_bytes();
    let mut bytes = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = |c: u8| (c as char).to_digit(16);
            match (
                b.get(i + 1).and_then(|&c| hex(c)),
                b.get(i + 2).and_then(|&c| hex(c)),
            ) {
                (Some(h), Some(l)) => bytes.push((h * 16 + l) as u8),
                _ => return false,
            }
            i += 3;
        } else {
            bytes.push(b[i]);
            i += 1;
        }
    }
    match String::from_utf8(bytes) {
        Ok(s) => {
            out.push_str(&s);
            true
        }
        Err(_) => false,
    }
}

fn param_names(path: &str) -> Vec<Arc<str>> {
    let mut out = Vec::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        if rest[open + 1..].starts_with('{') {
            rest = &rest[open + 2..];
            continue;
        }
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        let name = rest[open + 1..open + close].trim_start_matches('*');
        out.push(Arc::from(name));
        rest = &rest[open + close + 1..];
    }
    out
}

macro_rules! method_fns {
    ($($(#[$doc:meta])* $name:ident => $method:ident;)*) => {
        impl Router {
            $(
                $(#[$doc])*
                ///
                /// # Panics
                ///
                /// On an invalid or conflicting pattern.
                pub fn $name<F, R>(self, path: &str, handler: F) -> Self
                where
                    F: Fn(Request<Body<'_>>, &Cancel) -> R + Send + Sync + 'static,
                    R: IntoResponse,
                {
                    self.route(Method::$method, path, handler)
                }
            )*
        }
    };
}

method_fns! {
    /// Route `GET` (and `HEAD`) on `path` to a closure.
    get => GET;
    /// Route `POST` on `path` to a closure.
    post => POST;
    /// Route `PUT` on `path` to a closure.
    put => PUT;
    /// Route `DELETE` on `path` to a closure.
    delete => DELETE;
    /// Route `PATCH` on `path` to a closure.
    patch => PATCH;
}

impl Handler for Router {
    fn call(&self, mut req: Request<Body<'_>>, cancel: &Cancel) -> Response<ResponseBody> {
        let matched = match self.paths.at(req.uri().path()) {
            Ok(m) => m,
            Err(_) => {
                return match &self.fallback {
                    Some(f) => f.call(req, cancel),
                    None => StatusCode::NOT_FOUND.into_response(),
                };
            }
        };
        let route = &self.routes[*matched.value];
        let Some(handler) = route.handler(req.method()) else {
            let mut r = StatusCode::METHOD_NOT_ALLOWED.into_response();
            r.headers_mut().insert(header::ALLOW, route.allow.clone());
            return r;
        };
        if !matched.params.is_empty() {
            let mut params = PathParams::default();
            for (k, v) in matched.params.iter() {
                let start = params.values.len();
                if !push_decoded(&mut params.values, v) {
                    return (
                        StatusCode::BAD_REQUEST,
                        format!("path parameter {k} is not valid percent-encoded UTF-8\n"),
                    )
                        .into_response();
                }
                let name = match route.names.iter().find(|n| &***n == k) {
                    Some(n) => n.clone(),
                    None => Arc::from(k),
                };
                params.entries.push((name, start, params.values.len()));
            }
            req.extensions_mut().insert(params);
        }
        handler.call(req, cancel)
    }
}
