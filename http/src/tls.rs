//! HTTPS through rustls (feature `tls`).
//!
//! The crypto provider is *ring*: rustls' other provider, aws-lc-rs, builds
//! a large C library with cmake (and needs a C toolchain, plus Go or NASM on
//! some targets), which makes clean builds markedly slower and more fragile;
//! ring builds with only a C compiler and is enough for a server's TLS 1.2 /
//! 1.3 needs. Users who terminate TLS elsewhere leave the feature off and
//! compile none of it.
//!
//! The same adapter serves both modes: the rustls session lives next to
//! the connection (in the connection thread, or in the event-mode session
//! between readiness events) and [`TlsIo`] drives it over the non-blocking
//! socket, waiting through the [`Conn`] so timeouts and cancellation apply.
//! A peer's `close_notify` is an end of input: the request being served is
//! answered, then the connection closes, so trailing bytes after it can
//! never make a readiness loop spin.

use std::io::{self, BufRead, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::ServerConnection;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use stead_core::{Cancel, Conn};

use crate::io::Io;

/// A server certificate, its key, and the rustls settings that go with them.
///
/// ```
/// let tls = stead_http::TlsConfig::self_signed(&["localhost"]).unwrap();
/// assert!(tls.certificate_pem().unwrap().starts_with("-----BEGIN CERTIFICATE-----"));
/// // let server = stead_http::HttpServer::builder().tls(tls).bind("127.0.0.1:8443")?;
/// ```
#[derive(Clone)]
pub struct TlsConfig {
    config: Arc<rustls::ServerConfig>,
    leaf: Option<CertificateDer<'static>>,
    pem: Option<String>,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("alpn", &self.config.alpn_protocols)
            .finish_non_exhaustive()
    }
}

fn invalid(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("stead-http: {what}"))
}

impl TlsConfig {
    /// Load a certificate chain (leaf first) and its private key (PKCS#8,
    /// PKCS#1 or SEC1) from PEM files.
    pub fn from_pem_files(cert_chain: impl AsRef<Path>, key: impl AsRef<Path>) -> io::Result<Self> {
        let cert_path = cert_chain.as_ref();
        let key_path = key.as_ref();
        let certs = CertificateDer::pem_file_iter(cert_path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| {
                invalid(format!(
                    "cannot read certificates from {}: {e}",
                    cert_path.display()
                ))
            })?;
        let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| {
            invalid(format!(
                "cannot read a private key from {}: {e}",
                key_path.display()
            ))
        })?;
        TlsConfig::from_der(certs, key)
    }

    /// Parse a certificate chain and private key from PEM text.
    pub fn from_pem(cert_chain_pem: &[u8], key_pem: &[u8]) -> io::Result<Self> {
        let certs = CertificateDer::pem_slice_iter(cert_chain_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(format!("cannot parse certificates: {e}")))?;
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| invalid(format!("cannot parse the private key: {e}")))?;
        TlsConfig::from_der(certs, key)
    }

    /// A fresh self-signed certificate for `names` (e.g. `localhost`), for
    /// development and tests: clients must trust
    /// [`certificate_der`](TlsConfig::certificate_der) explicitly.
    pub fn self_signed(names: &[&str]) -> io::Result<Self> {
        let names: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
        let ck = rcgen::generate_simple_self_signed(names)
            .map_err(|e| invalid(format!("cannot generate a self-signed certificate: {e}")))?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
        let mut tls = TlsConfig::from_der(vec![ck.cert.der().clone()], key)?;
        tls.pem = Some(ck.cert.pem());
        Ok(tls)
    }

    /// Use a certificate chain and key already in DER form.
    pub fn from_der(
        cert_chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> io::Result<Self> {
        if cert_chain.is_empty() {
            return Err(invalid("no certificate found"));
        }
        let leaf = cert_chain[0].clone();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid(format!("TLS setup failed: {e}")))?
            .with_no_client_auth()
            .with_single_cert(cert_chain, key)
            .map_err(|e| invalid(format!("certificate and key do not fit: {e}")))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsConfig {
            config: Arc::new(config),
            leaf: Some(leaf),
            pem: None,
        })
    }

    /// Use a rustls configuration as is (client authentication, session
    /// resumption, another provider...).
    pub fn from_rustls(config: Arc<rustls::ServerConfig>) -> Self {
        TlsConfig {
            config,
            leaf: None,
            pem: None,
        }
    }

    /// The rustls configuration.
    pub fn rustls_config(&self) -> &Arc<rustls::ServerConfig> {
        &self.config
    }

    /// The leaf certificate (DER), when known.
    pub fn certificate_der(&self) -> Option<&CertificateDer<'static>> {
        self.leaf.as_ref()
    }

    /// The certificate in PEM form, for a [`self_signed`](TlsConfig::self_signed) one.
    pub fn certificate_pem(&self) -> Option<&str> {
        self.pem.as_deref()
    }
}

/// A new server session, or `None` (logged) if rustls refuses.
pub(crate) fn new_session(cfg: &Arc<rustls::ServerConfig>) -> Option<ServerConnection> {
    match ServerConnection::new(cfg.clone()) {
        Ok(s) => Some(s),
        Err(e) => {
            log::error!("stead-http: cannot start a TLS session: {e}");
            None
        }
    }
}

/// A TLS session driven over a [`Conn`]: the transport the connection state
/// machine uses for HTTPS, in both modes (in thread mode the `Conn` blocks
/// in its syscalls and reads block in `recv`).
pub(crate) struct TlsIo<'a> {
    conn: &'a mut Conn<TcpStream>,
    tls: &'a mut ServerConnection,
    /// The handshake must be done by then (it counts as header time).
    handshake_deadline: Instant,
}

impl<'a> TlsIo<'a> {
    pub(crate) fn new(
        conn: &'a mut Conn<TcpStream>,
        tls: &'a mut ServerConnection,
        handshake_deadline: Instant,
    ) -> Self {
        TlsIo {
            conn,
            tls,
            handshake_deadline,
        }
    }

    /// Send every queued TLS record, waiting for the socket as needed.
    fn flush_tls(&mut self) -> io::Result<()> {
        while self.tls.wants_write() {
            // Through the `Conn` (not `get_mut`, which would end the
            // connection's hang-up watch registration and blocking mode):
            // the write timeout and the token bound each write.
            // `Conn::write` waits out `WouldBlock` and retries `Interrupted`.
            if self.tls.write_tls(&mut *self.conn)? == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
        }
        Ok(())
    }

    /// Wait for input, bounding the wait by the handshake deadline while
    /// the handshake runs.
    fn wait_input(&mut self) -> io::Result<()> {
        self.within_handshake_deadline(|io| io.conn.wait_readable())
    }

    /// Run `f` (which waits on the connection) with the read timeout
    /// bounded by the handshake deadline while the handshake runs.
    fn within_handshake_deadline<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> io::Result<T>,
    ) -> io::Result<T> {
        if !self.tls.is_handshaking() {
            return f(self);
        }
        let left = self
            .handshake_deadline
            .saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(handshake_timeout());
        }
        let saved = self.conn.read_timeout();
        let t = saved.map_or(left, |s| s.min(left));
        self.conn.set_read_timeout(Some(t));
        let r = f(self);
        self.conn.set_read_timeout(saved);
        r
    }

    fn read_impl(&mut self, buf: &mut [u8], block: bool) -> io::Result<usize> {
        loop {
            match self.tls.reader().read(buf) {
                Ok(n) => return Ok(n), // 0: close_notify, a clean end of input
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // TCP closed without close_notify: also the end of input.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            // Handshake messages (or alerts) to send before reading more.
            self.flush_tls()?;
            let got = if block && self.conn.blocks_in_syscalls() {
                self.read_tls_blocking()
            } else {
                self.tls.read_tls(&mut CountedRead(&mut *self.conn))
            };
            match got {
                Ok(0) => {
                    // TCP EOF or close_notify: the end of input, after any
                    // plaintext still buffered.
                    return Ok(self.tls.reader().read(buf).unwrap_or(0));
                }
                Ok(_) => {
                    if let Err(e) = self.tls.process_new_packets() {
                        // Tell the peer (best effort) and give up: a
                        // plaintext request on the TLS port ends here.
                        let _ = self.flush_tls();
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("stead-http: TLS error: {e}"),
                        ));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !block {
                        return Err(e);
                    }
                    self.wait_input()?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Thread mode ([`Conn::blocks_in_syscalls`]): one blocking `recv`
    /// within the read timeout (and the handshake deadline while the
    /// handshake runs) instead of a `poll` and a non-blocking read.
    fn read_tls_blocking(&mut self) -> io::Result<usize> {
        self.within_handshake_deadline(|io| io.tls.read_tls(&mut BlockingRead(&mut *io.conn)))
    }

    /// Plaintext waiting, or an end of input (close_notify / EOF) that the
    /// poller will not report again.
    fn has_buffered_input(&mut self) -> bool {
        !matches!(self.tls.reader().fill_buf(), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// Whether the handshake is still running.
    pub(crate) fn is_handshaking(&self) -> bool {
        self.tls.is_handshaking()
    }
}

fn handshake_timeout() -> io::Error {
    stead_core::Timeout {
        op: "read",
        after: Duration::ZERO,
    }
    .into()
}

impl Io for TlsIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_impl(buf, true)
    }

    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_impl(buf, false)
    }

    fn wait_readable(&mut self) -> io::Result<()> {
        // In thread mode the read that follows waits itself.
        if self.has_buffered_input() || self.conn.blocks_in_syscalls() {
            return Ok(());
        }
        self.wait_input()
    }

    fn write_all(&mut self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            let n = self.tls.writer().write(buf)?;
            buf = &buf[n..];
            if !buf.is_empty() {
                // rustls' buffer is full: send what it holds first.
                self.flush_tls()?;
            }
        }
        Ok(())
    }

    fn write_all2(&mut self, a: &[u8], b: &[u8]) -> io::Result<()> {
        self.write_all(a)?;
        self.write_all(b)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_tls()
    }

    fn set_read_timeout(&mut self, t: Option<Duration>) {
        self.conn.set_read_timeout(t);
    }

    fn mark_idle(&self) -> bool {
        self.conn.mark_idle()
    }

    fn mark_active(&self) -> bool {
        self.conn.mark_active()
    }

    fn is_draining(&self) -> bool {
        self.conn.is_draining()
    }

    fn cancel(&self) -> &Cancel {
        self.conn.cancel()
    }

    fn close_write(&mut self) {
        self.tls.send_close_notify();
        let _ = self.flush_tls();
        let _ = self.conn.shutdown(std::net::Shutdown::Write);
    }

    fn begin_hangup_watch(&mut self) {
        self.conn.begin_hangup_watch_encrypted()
    }

    fn end_hangup_watch(&mut self) {
        self.conn.end_hangup_watch()
    }
}

/// Reads through the blocking [`Conn`] read (thread mode).
struct BlockingRead<'a>(&'a mut stead_core::Conn<std::net::TcpStream>);

impl io::Read for BlockingRead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Read::read(self.0, buf)
    }
}

/// Reads through [`Conn::try_read`] so the bytes count as progress for the
/// event server's spin detector (and the token is checked).
struct CountedRead<'a>(&'a mut stead_core::Conn<std::net::TcpStream>);

impl io::Read for CountedRead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}
