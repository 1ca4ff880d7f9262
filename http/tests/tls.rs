//! HTTPS in both modes, with a small blocking rustls client.
#![cfg(feature = "tls")]

mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::Request;
use stead_core::Cancel;
use stead_http::{Body, HttpServerHandle, Mode, Timeouts, TlsConfig};
use util::*;

fn tls_server(mode: Mode, timeouts: Timeouts) -> (HttpServerHandle, Arc<rustls::ClientConfig>) {
    let tls = TlsConfig::self_signed(&["localhost"]).unwrap();
    let client = client_config(&tls);
    let h = start_with(mode, |b| b.tls(tls).timeouts(timeouts), echo);
    (h, client)
}

fn client_config(tls: &TlsConfig) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(tls.certificate_der().unwrap().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn connect_tls(addr: std::net::SocketAddr, cfg: &Arc<rustls::ClientConfig>) -> Tls {
    let sock = connect(addr);
    let conn = rustls::ClientConnection::new(cfg.clone(), "localhost".try_into().unwrap()).unwrap();
    rustls::StreamOwned::new(conn, sock)
}

/// Read one response over TLS.
fn read_tls_response(s: &mut Tls, pending: &mut Vec<u8>) -> Resp {
    let start = Instant::now();
    let mut buf = [0u8; 16 * 1024];
    loop {
        if let Some((r, used)) = parse_one(pending, false) {
            pending.drain(..used);
            return r;
        }
        assert!(start.elapsed() < DEADLINE);
        let n = s.read(&mut buf).expect("TLS read");
        assert!(n > 0, "closed before a complete response");
        pending.extend_from_slice(&buf[..n]);
    }
}

fn https_keep_alive_requests(mode: Mode) {
    let (h, cfg) = tls_server(mode, Timeouts::default());
    let mut s = connect_tls(h.local_addr(), &cfg);
    let mut pending = Vec::new();
    for path in ["/one", "/two"] {
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
            .unwrap();
        let r = read_tls_response(&mut s, &mut pending);
        assert_eq!((r.status, r.body_str()), (200, path));
    }
    // A body larger than one TLS record both ways.
    let body = vec![b'z'; 100_000];
    s.write_all(
        format!(
            "POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    s.write_all(&body).unwrap();
    let r = read_tls_response(&mut s, &mut pending);
    assert_eq!(r.body, body);
    assert_eq!(h.stats().connections.accepted, 1);
    stop(h);
}

/// The request, then `close_notify`, then more bytes: answered, then closed.
fn close_notify_with_trailing_bytes_is_answered_then_closed(mode: Mode) {
    let (h, cfg) = tls_server(mode, Timeouts::default());
    let mut s = connect_tls(h.local_addr(), &cfg);
    s.write_all(b"GET /bye HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    s.conn.send_close_notify();
    while s.conn.wants_write() {
        s.conn.write_tls(&mut s.sock).unwrap();
    }
    s.sock
        .write_all(b"trailing bytes after close_notify")
        .unwrap();
    let mut pending = Vec::new();
    let r = read_tls_response(&mut s, &mut pending);
    assert_eq!(r.body_str(), "/bye");
    // Then the server ends the connection.
    let mut rest = Vec::new();
    let start = Instant::now();
    let _ = s.read_to_end(&mut rest);
    assert!(rest.is_empty());
    assert!(start.elapsed() < Duration::from_secs(5));
    stop(h);
}

fn plaintext_request_on_tls_port_is_closed_quickly(mode: Mode) {
    let (h, _cfg) = tls_server(mode, Timeouts::default());
    let start = Instant::now();
    let bytes = raw(h.local_addr(), b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let took = start.elapsed();
    assert!(!bytes.starts_with(b"HTTP/"), "answered in plaintext");
    // "Quickly": no waiting for a timeout. Loopback takes well under a
    // millisecond; 1 s is for a loaded shared machine.
    assert!(took < Duration::from_secs(1), "took {took:?}");
    stop(h);
}

fn stalled_handshake_is_closed_at_the_header_timeout(mode: Mode) {
    let (h, _cfg) = tls_server(mode, Timeouts::default().header(Duration::from_millis(300)));
    let mut s = connect(h.local_addr());
    let start = Instant::now();
    // A ClientHello that never completes: a record header promising more.
    s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).unwrap();
    let _ = read_to_close(&mut s);
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(5),
        "{took:?}"
    );
    stop(h);
}

fn handler_sees_https_requests_like_http(mode: Mode) {
    let tls = TlsConfig::self_signed(&["localhost"]).unwrap();
    let cfg = client_config(&tls);
    let h = start_with(
        mode,
        |b| b.tls(tls),
        |req: Request<Body>, _: &Cancel| {
            format!(
                "{} {}",
                req.method(),
                req.headers()["host"].to_str().unwrap()
            )
        },
    );
    let mut s = connect_tls(h.local_addr(), &cfg);
    s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let r = read_tls_response(&mut s, &mut Vec::new());
    assert_eq!(r.body_str(), "GET localhost");
    assert!(r.closes());
    stop(h);
}

/// A TLS client that closes (close_notify, then FIN) while its handler
/// waits: the handler's token fires with `Disconnected`.
fn tls_client_close_cancels_the_handler(mode: Mode) {
    let tls = TlsConfig::self_signed(&["localhost"]).unwrap();
    let cfg = client_config(&tls);
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let started_tx = std::sync::Mutex::new(started_tx);
    let done_tx = std::sync::Mutex::new(done_tx);
    let h = start_with(
        mode,
        |b| b.tls(tls),
        move |_req: Request<Body>, cancel: &Cancel| {
            let _ = started_tx.lock().unwrap().send(());
            let r = cancel.sleep(Duration::from_secs(30));
            let _ = done_tx.lock().unwrap().send(r.map_err(|c| c.reason()));
            "late"
        },
    );
    let mut s = connect_tls(h.local_addr(), &cfg);
    s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    started_rx.recv_timeout(DEADLINE).unwrap();
    s.conn.send_close_notify();
    while s.conn.wants_write() {
        s.conn.write_tls(&mut s.sock).unwrap();
    }
    drop(s);
    assert_eq!(
        done_rx.recv_timeout(DEADLINE).unwrap(),
        Err(stead_core::CancelReason::Disconnected)
    );
    stop(h);
}

both_modes!(
    tls_client_close_cancels_the_handler,
    https_keep_alive_requests,
    close_notify_with_trailing_bytes_is_answered_then_closed,
    plaintext_request_on_tls_port_is_closed_quickly,
    stalled_handshake_is_closed_at_the_header_timeout,
    handler_sees_https_requests_like_http,
);

#[test]
fn pem_files_load_and_bad_ones_are_clear_errors() {
    let dir = std::env::temp_dir().join(format!("stead-http-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    assert!(TlsConfig::from_pem_files(&cert, &key).is_ok());
    let err = TlsConfig::from_pem_files(&cert, dir.join("missing.pem")).unwrap_err();
    assert!(err.to_string().contains("missing.pem"), "{err}");
    let err = TlsConfig::from_pem_files(&key, &key).unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err}");
    let other = rcgen::generate_simple_self_signed(vec!["x".to_owned()]).unwrap();
    let err = TlsConfig::from_pem(
        ck.cert.pem().as_bytes(),
        other.signing_key.serialize_pem().as_bytes(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("do not fit"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
