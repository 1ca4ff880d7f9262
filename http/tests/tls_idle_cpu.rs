//! A TLS peer that sends `close_notify` followed by more bytes must cost no
//! CPU afterwards (the rustls busy-loop incident, DESIGN.md failure mode 2).
//!
//! Alone in its test binary so that the process CPU clock measures only the
//! server (and this idle test).
#![cfg(feature = "tls")]

mod util;

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use stead_http::{Mode, TlsConfig};
use util::*;

fn process_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
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

#[test]
fn close_notify_with_trailing_bytes_costs_no_cpu() {
    for mode in [Mode::Threads, Mode::Event] {
        let tls = TlsConfig::self_signed(&["localhost"]).unwrap();
        let cfg = client_config(&tls);
        let h = start_with(mode, |b| b.tls(tls), echo);
        let mut peers = Vec::new();
        for _ in 0..20 {
            let sock = connect(h.local_addr());
            let conn = rustls::ClientConnection::new(cfg.clone(), "localhost".try_into().unwrap())
                .unwrap();
            let mut s = rustls::StreamOwned::new(conn, sock);
            s.write_all(b"GET /x HTTP/1.1\r\nHost: localhost\r\n\r\n")
                .unwrap();
            s.conn.send_close_notify();
            while s.conn.wants_write() {
                s.conn.write_tls(&mut s.sock).unwrap();
            }
            s.sock.write_all(b"more bytes after close_notify").unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            // Answered...
            while parse_one(&got, false).is_none() {
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0, "closed without an answer");
                got.extend_from_slice(&buf[..n]);
            }
            // ...then the TCP socket stays open on our side, as a lazy peer's would.
            peers.push(s);
        }
        // The idle window: a spinning server thread would burn ~all of it.
        let before = process_cpu();
        std::thread::sleep(Duration::from_millis(500)); // the measurement window, not synchronisation
        let used = process_cpu() - before;
        assert!(
            used < Duration::from_millis(60),
            "{mode:?}: {used:?} of CPU in a 500 ms idle window"
        );
        drop(peers);
        stop(h);
    }
}
