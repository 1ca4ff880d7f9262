//! Build-cost twin of `hyper-hello`: the same server, on stead.
use std::time::Duration;
use stead_http::{HttpServer, Mode, ResponseBody, Router, with_content_type};

fn main() -> std::io::Result<()> {
    let shutdown = stead_core::shutdown_on_signals()?;
    let app = Router::new().get("/", |_req, _cancel| {
        with_content_type("text/plain", ResponseBody::from_static(b"Hello, World!"))
    });
    let handle = HttpServer::builder()
        .mode(Mode::Event)
        .bind("127.0.0.1:8080")?
        .serve(app);
    handle.run_until(&shutdown, Duration::from_secs(10));
    Ok(())
}
