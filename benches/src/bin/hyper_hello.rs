//! The hyper twin of stead's `hello` example, for the load comparison:
//! hyper 1.x HTTP/1.1 on a multi-threaded tokio runtime, the same response
//! bytes (`Hello, World!`, `content-type: text/plain`, `date`).
//!
//! `hyper_hello [--addr HOST:PORT] [--workers N]`; prints
//! `hyper hello: listening on http://ADDR (workers: N)` once bound.

use std::convert::Infallible;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

async fn hello(_req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut res = Response::new(Full::new(Bytes::from_static(b"Hello, World!")));
    res.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain"),
    );
    Ok(res)
}

fn main() -> std::io::Result<()> {
    let (addr, workers) = stead_benches::server_args("127.0.0.1:8081", std::env::args().skip(1));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        println!(
            "hyper hello: listening on http://{} (workers: {workers})",
            listener.local_addr()?
        );
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(hello))
                    .await;
            });
        }
    })
}
