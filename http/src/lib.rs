//! stead-http: a strict, fast HTTP/1.1 server on plain threads and
//! blocking I/O, in two modes behind one builder.
//!
//! # Hello, world
//!
//! ```
//! use std::io::{Read, Write};
//! use std::time::Duration;
//! use http::Request;
//! use stead_core::Cancel;
//! use stead_http::{Body, HttpServer};
//!
//! let handle = HttpServer::bind("127.0.0.1:0")?
//!     .serve(|_req: Request<Body>, _: &Cancel| "Hello, world!\n");
//!
//! let mut client = std::net::TcpStream::connect(handle.local_addr())?;
//! client.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
//! let mut response = String::new();
//! client.read_to_string(&mut response)?;
//! assert!(response.starts_with("HTTP/1.1 200 OK\r\n"));
//! assert!(response.ends_with("\r\n\r\nHello, world!\n"));
//!
//! // In a program: handle.run_until(&stead_core::shutdown_on_signals()?, Duration::from_secs(10));
//! let report = handle.shutdown(Duration::from_secs(1));
//! assert!(report.is_clean());
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # Requests and responses
//!
//! Handlers use the [`http`] crate's types, so code moves freely between
//! stead, hyper, axum and ureq: a handler gets a `http::Request<`[`Body`]`>`
//! and a [`Cancel`](stead_core::Cancel), and returns anything
//! [`IntoResponse`] (a `Response<B>` for any `B: Into<`[`ResponseBody`]`>`,
//! a string, a status, `(StatusCode, T)`, a `Result`). The request body is
//! a `Read` borrowed from the connection (decoded, limited, honest about
//! truncation); a response body is bytes, any `Read`, or a function that
//! writes chunks.
//!
//! # Routing and middleware
//!
//! ```
//! use std::time::Duration;
//! use http::StatusCode;
//! use stead_http::{HandlerExt, RequestExt, Router};
//!
//! let app = Router::new()
//!     .get("/hello/{name}", |req, _cancel| format!("Hello, {}!\n", req.param("name").unwrap()))
//!     .post("/echo", |mut req, _cancel| {
//!         let body = req.body_mut().read_all()?; // 413/400/408 via `?` on a bad body
//!         Ok::<_, std::io::Error>((StatusCode::OK, body))
//!     })
//!     .timeout(Duration::from_secs(5))
//!     .concurrency_limit(128, 1024)
//!     .log_requests();
//! # let _ = app;
//! ```
//!
//! # What the server enforces
//!
//! Parsing ([`parse_request_head`], [`ChunkedDecoder`]) and serialisation
//! ([`write_response_head`]) are pure functions over bytes, separate from
//! I/O, and strict (RFC 9112): conflicting or malformed `Content-Length`,
//! any `Transfer-Encoding` but a single final `chunked`, `Transfer-Encoding`
//! on HTTP/1.0, whitespace before a colon, obs-fold, bare CR/LF or NUL,
//! missing or duplicate `Host` are rejected with 400 (501 for unknown
//! codings, 505 for other versions) and the connection closes. [`Limits`]
//! and [`Timeouts`] bound every request (414/431/413/408), including
//! slowloris clients. Keep-alive, pipelining (in order), `Expect:
//! 100-continue` (sent when the handler first reads), `HEAD`, a cached
//! `Date`, and graceful shutdown are handled for you; a handler panic
//! becomes a 500 and closes the connection.
//!
//! # Modes, limits and timeouts
//!
//! [`Mode::Threads`] runs each connection on its own thread (stead-core's
//! server); [`Mode::Event`] parks idle connections in per-worker pollers
//! (stead-eventloop), holding no thread and no read buffer for them. The
//! same connection state machine serves both; behaviour is identical.
//!
//! ```
//! use std::time::Duration;
//! use stead_http::{HttpServer, Limits, Mode, Router, Timeouts};
//!
//! let handle = HttpServer::builder()
//!     .mode(Mode::Event)
//!     .workers(2)
//!     .max_connections(50_000)
//!     .limits(Limits::default().body(16 << 20))
//!     .timeouts(Timeouts::default().keep_alive(Duration::from_secs(5)))
//!     .bind("127.0.0.1:0")?
//!     .serve(Router::new().get("/", |_req, _c| "ok"));
//! println!("listening on {}", handle.local_addr());
//! handle.shutdown(Duration::from_secs(1));
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! [`simulate`] runs the state machine over bytes in memory: handy to test
//! a handler against raw requests without sockets.
//!
//! # TLS
//!
//! With the `tls` feature, `HttpServerBuilder::tls` serves HTTPS through
//! rustls (ring provider): certificates from PEM files or a self-signed
//! development certificate (`TlsConfig`).
#![doc(test(attr(deny(warnings))))]
#![forbid(unsafe_code)]

mod body;
mod buf;
mod chunked;
mod config;
mod conn;
mod date;
mod handler;
mod io;
pub mod middleware;
mod parse;
mod response;
mod router;
mod server;
#[cfg(feature = "tls")]
mod tls;

pub use body::{Body, BodyError, BodyErrorKind};
pub use chunked::{ChunkError, ChunkedDecoder, Decoded, write_chunk_size};
pub use config::{Limits, Timeouts};
pub use conn::{simulate, simulate_event};
pub use date::{DATE_LEN, format_http_date, http_date};
pub use handler::{BoxHandler, Handler, RequestExt, SharedHandler};
pub use middleware::{ConcurrencyLimit, HandlerExt, Logger, RequestTimeout};
pub use parse::{BodyFraming, HeadError, RequestHead, parse_request_head};
pub use response::{
    ChunkedWriter, ConnectionHeader, IntoResponse, ResponseBody, ResponseFraming, html, json,
    status, text, with_content_type, write_response_head,
};
pub use router::{PathParams, RouteError, Router};
pub use server::{HttpServer, HttpServerBuilder, HttpServerHandle, HttpStats, Mode};
#[cfg(feature = "tls")]
pub use tls::TlsConfig;

/// The `http` crate, re-exported.
pub use http;
