//! The floor of the thread-per-connection model, for the load comparison:
//! `std::net` and one `std::thread` per connection, blocking reads and
//! writes, `httparse`, and the same response bytes as `hello` and
//! `hyper_hello`. No timeouts, cancellation, limits or drain: it shows what
//! any thread-per-connection server costs on this machine, so the table can
//! separate the model's cost (this server vs hyper) from stead's own
//! (stead's thread mode vs this server).
//!
//! `std_hello [--addr HOST:PORT]`; prints
//! `std hello: listening on http://ADDR` once bound. Not a server to deploy:
//! a client that never sends holds its thread forever.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};

const BODY: &[u8] = b"Hello, World!";

fn main() -> io::Result<()> {
    // `--workers` is accepted for symmetry with the other servers; a thread
    // per connection has no worker count.
    let (addr, _workers) = stead_benches::server_args("127.0.0.1:8082", std::env::args().skip(1));
    let listener = TcpListener::bind(addr)?;
    println!("std hello: listening on http://{}", listener.local_addr()?);
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                let spawned = std::thread::Builder::new()
                    .stack_size(64 * 1024)
                    .spawn(move || {
                        let _ = serve(stream);
                    });
                if let Err(e) = spawned {
                    eprintln!("spawn: {e}");
                }
            }
            Err(e) => {
                eprintln!("accept: {e}");
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
    }
}

/// Answer every complete request in the buffer, then read more; one write
/// per batch of (pipelined) requests.
fn serve(mut stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = vec![0u8; 8192];
    let mut len = 0;
    let mut out = Vec::with_capacity(256);
    loop {
        let n = stream.read(&mut buf[len..])?;
        if n == 0 {
            return Ok(());
        }
        len += n;
        let mut start = 0;
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(&buf[start..len]) {
                Ok(httparse::Status::Complete(used)) => {
                    start += used;
                    out.extend_from_slice(
                        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 13\r\ndate: ",
                    );
                    out.extend_from_slice(&stead_http::http_date());
                    out.extend_from_slice(b"\r\n\r\n");
                    out.extend_from_slice(BODY);
                }
                Ok(httparse::Status::Partial) => break,
                Err(_) => return Ok(()),
            }
        }
        buf.copy_within(start..len, 0);
        len -= start;
        if len == buf.len() {
            return Ok(()); // head larger than the buffer
        }
        if !out.is_empty() {
            stream.write_all(&out)?;
            out.clear();
        }
    }
}
