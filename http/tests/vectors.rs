//! The bad-input corpus: every vector in `tests/vectors/*.vec` (format in
//! `tests/vectors/README.md`) is sent over a real socket to a server in each
//! mode; the statuses, whether the connection closes, and which requests
//! reached the handler must be exactly as the vector says. A probe request
//! appended behind each vector must be served when the connection is kept
//! and never when it closes: nothing that follows a rejected request, and
//! nothing hidden in a body (`/smuggled...`), ever reaches a handler.
//!
//! A property test then mutates the corpus at random and runs the whole
//! connection state machine over it in memory ([`simulate`]): it never
//! panics, always ends, and only ever writes complete, well-formed
//! responses, none after one that said `Connection: close`.

mod util;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Request;
use proptest::prelude::*;
use stead_core::Cancel;
use stead_http::{Body, Handler, HttpServerHandle, Limits, Mode, RequestExt, Timeouts, simulate};
use util::*;

/// Appended behind every vector (unless it says `probe: no`).
const PROBE: &[u8] = b"GET /__probe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
const PROBE_PATH: &str = "/__probe";

#[derive(Debug, Clone)]
struct Vector {
    file: String,
    name: String,
    send: Vec<u8>,
    statuses: Vec<u16>,
    close: bool,
    served: Option<Vec<String>>,
    body: Option<Vec<u8>>,
    limits: Vec<(String, u64)>,
    probe: bool,
}

/// Decode the escapes of the vector format: `\r \n \t \0 \\ \xHH` and
/// `\(N*text)` (text repeated N times; text may use the other escapes).
fn unescape(s: &str) -> Result<Vec<u8>, String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let c = *b.get(i + 1).ok_or("trailing backslash")?;
        i += 2;
        match c {
            b'r' => out.push(b'\r'),
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'0' => out.push(0),
            b'\\' => out.push(b'\\'),
            b'x' => {
                let hex = s.get(i..i + 2).ok_or("short \\x escape")?;
                out.push(u8::from_str_radix(hex, 16).map_err(|e| format!("\\x{hex}: {e}"))?);
                i += 2;
            }
            b'(' => {
                let end = closing_paren(b, i).ok_or("unclosed \\( repetition")?;
                let (n, text) = s[i..end].split_once('*').ok_or("\\( needs N*text")?;
                let n: usize = n.parse().map_err(|e| format!("repeat count {n:?}: {e}"))?;
                let text = unescape(text)?;
                for _ in 0..n {
                    out.extend_from_slice(&text);
                }
                i = end + 1;
            }
            _ => return Err(format!("unknown escape \\{}", c as char)),
        }
    }
    Ok(out)
}

/// The index of the `)` closing a `\(` whose text starts at `i` (nested
/// repetitions allowed; escaped characters skipped).
fn closing_paren(b: &[u8], mut i: usize) -> Option<usize> {
    let mut depth = 1;
    while i < b.len() {
        match b[i] {
            b'\\' if b.get(i + 1) == Some(&b'(') => {
                depth += 1;
                i += 2;
            }
            b'\\' => i += 2,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    None
}

fn parse_file(file: &str, text: &str) -> Result<Vec<Vector>, String> {
    let mut out: Vec<Vector> = Vec::new();
    let mut has_rfc = false;
    let finish = |v: &Vector, has_rfc: bool| -> Result<(), String> {
        let at = format!("{file} [{}]", v.name);
        if v.send.is_empty() {
            return Err(format!("{at}: no send line"));
        }
        if v.statuses.is_empty() {
            return Err(format!("{at}: no expect line"));
        }
        if !has_rfc {
            return Err(format!("{at}: no rfc line"));
        }
        Ok(())
    };
    for (no, line) in text.lines().enumerate() {
        let at = || format!("{file}:{}", no + 1);
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[') {
            if let Some(v) = out.last() {
                finish(v, has_rfc)?;
            }
            let name = name
                .strip_suffix(']')
                .ok_or_else(|| format!("{}: bad section", at()))?;
            out.push(Vector {
                file: file.to_owned(),
                name: name.to_owned(),
                send: Vec::new(),
                statuses: Vec::new(),
                close: true,
                served: None,
                body: None,
                limits: Vec::new(),
                probe: true,
            });
            has_rfc = false;
            continue;
        }
        let (key, value) = line
            .split_once(": ")
            .or_else(|| line.strip_suffix(':').map(|k| (k, "")))
            .ok_or_else(|| format!("{}: expected `key: value`", at()))?;
        let v = out
            .last_mut()
            .ok_or_else(|| format!("{}: a key before the first [vector]", at()))?;
        match key {
            "rfc" => has_rfc = true,
            "send" => v
                .send
                .extend(unescape(value).map_err(|e| format!("{}: {e}", at()))?),
            "expect" => {
                let mut words: Vec<&str> = value.split_whitespace().collect();
                v.close = match words.pop() {
                    Some("close") => true,
                    Some("keep") => false,
                    _ => return Err(format!("{}: expect ends with close or keep", at())),
                };
                v.statuses = words
                    .iter()
                    .map(|w| w.parse().map_err(|_| format!("{}: bad status {w}", at())))
                    .collect::<Result<_, _>>()?;
                if v.statuses.is_empty() {
                    return Err(format!("{}: expect needs a status", at()));
                }
            }
            "served" => {
                v.served = Some(if value.trim() == "-" {
                    Vec::new()
                } else {
                    value.split_whitespace().map(str::to_owned).collect()
                })
            }
            "body" => v.body = Some(unescape(value).map_err(|e| format!("{}: {e}", at()))?),
            "limits" => {
                for kv in value.split_whitespace() {
                    let (k, n) = kv
                        .split_once('=')
                        .ok_or_else(|| format!("{}: limits take key=N", at()))?;
                    let n = n.parse().map_err(|_| format!("{}: bad number {n}", at()))?;
                    v.limits.push((k.to_owned(), n));
                }
            }
            "probe" => {
                v.probe = match value {
                    "yes" => true,
                    "no" => false,
                    _ => return Err(format!("{}: probe is yes or no", at())),
                }
            }
            _ => return Err(format!("{}: unknown key {key:?}", at())),
        }
    }
    if let Some(v) = out.last() {
        finish(v, has_rfc)?;
    }
    Ok(out)
}

fn load() -> Vec<Vector> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("tests/vectors")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "vec"))
        .collect();
    files.sort();
    let mut all = Vec::new();
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&f).unwrap();
        all.extend(parse_file(&name, &text).unwrap_or_else(|e| panic!("{e}")));
    }
    all
}

fn limits_of(v: &Vector) -> Limits {
    let mut l = Limits::default();
    for (k, n) in &v.limits {
        l = match k.as_str() {
            "body" => l.body(*n),
            "headers" => l.headers(*n as usize),
            "head" => l.head(*n as usize),
            "request_line" => l.request_line(*n as usize),
            "chunk_extensions" => l.chunk_extensions(*n as usize),
            "trailers" => l.trailers(*n as usize),
            "drain" => l.drain(*n),
            _ => panic!("{} [{}]: unknown limit {k}", v.file, v.name),
        };
    }
    l
}

/// What each client connection (by its port) got its handler to see, for
/// one server: a client port is unique among one server's live connections,
/// but not across servers, nor over time (see `check`).
type Seen = Arc<Mutex<BTreeMap<u16, Vec<String>>>>;

/// Records the path of every request it is called for (by client port),
/// then answers with the request body (or the body's error).
fn recorder(seen: Seen) -> impl Handler {
    move |mut req: Request<Body>, _: &Cancel| -> Result<Vec<u8>, std::io::Error> {
        let port = req.peer_addr().map_or(0, |a| a.port());
        seen.lock()
            .unwrap()
            .entry(port)
            .or_default()
            .push(req.uri().path().to_owned());
        req.body_mut().read_all()
    }
}

/// Short timeouts so vectors that leave a request incomplete end quickly.
fn timeouts() -> Timeouts {
    Timeouts::default()
        .header(Duration::from_millis(700))
        .body_idle(Duration::from_millis(700))
        .keep_alive(Duration::from_millis(700))
        .linger(Duration::from_millis(700))
}

fn start_server(mode: Mode, limits: Limits, seen: &Seen) -> HttpServerHandle {
    start_with(
        mode,
        |b| b.limits(limits).timeouts(timeouts()),
        recorder(seen.clone()),
    )
}

/// Run one vector against `addr`; `Err` describes what differed.
fn check(v: &Vector, addr: SocketAddr, seen: &Seen) -> Result<(), String> {
    let mut s = connect(addr);
    let port = s.local_addr().unwrap().port();
    // The kernel may hand out a port an earlier, finished connection to this
    // server used: forget what that one saw. (Nothing of this connection has
    // been sent yet.)
    seen.lock().unwrap().remove(&port);
    let mut input = v.send.clone();
    if v.probe {
        input.extend_from_slice(PROBE);
    }
    // The server may answer and close before it has read everything (413,
    // 431): a failed write is fine, what it answered is what counts.
    let writer = {
        let mut w = s.try_clone().unwrap();
        std::thread::spawn(move || {
            let _ = w.write_all(&input);
        })
    };
    let bytes = read_to_close(&mut s);
    writer.join().unwrap();
    let text = String::from_utf8_lossy(&bytes);
    let mut rest = &bytes[..];
    let mut rs = Vec::new();
    while !rest.is_empty() {
        match parse_one(rest, false) {
            Some((r, used)) => {
                rs.push(r);
                rest = &rest[used..];
            }
            None => return Err(format!("incomplete response: {text:?}")),
        }
    }
    let seen: Vec<String> = seen.lock().unwrap().get(&port).cloned().unwrap_or_default();
    let mut want = v.statuses.clone();
    if v.probe && !v.close {
        want.push(200);
    }
    let got: Vec<u16> = rs.iter().map(|r| r.status).collect();
    if got != want {
        return Err(format!("statuses {got:?}, want {want:?}; got {text:?}"));
    }
    if v.close {
        let last = rs.last().unwrap();
        if last.status >= 200 && !last.closes() {
            return Err(format!("last response lacks Connection: close: {text:?}"));
        }
        if seen.iter().any(|p| p == PROBE_PATH) {
            return Err(format!(
                "the request behind a closing one was served: {seen:?}"
            ));
        }
    } else if v.probe && seen.last().map(String::as_str) != Some(PROBE_PATH) {
        return Err(format!(
            "connection kept but the probe was not served: {seen:?}"
        ));
    }
    if let Some(p) = seen.iter().find(|p| p.starts_with("/smuggled")) {
        return Err(format!("smuggled request {p} was served: {seen:?}"));
    }
    if let Some(want) = &v.served {
        let got: Vec<&String> = seen.iter().filter(|p| *p != PROBE_PATH).collect();
        if got
            .iter()
            .map(|s| s.as_str())
            .ne(want.iter().map(|s| s.as_str()))
        {
            return Err(format!("served {got:?}, want {want:?}"));
        }
    }
    if let Some(body) = &v.body {
        let first = rs.iter().find(|r| r.status >= 200).unwrap();
        if &first.body != body {
            return Err(format!(
                "first body {:?}, want {:?}",
                String::from_utf8_lossy(&first.body),
                String::from_utf8_lossy(body)
            ));
        }
    }
    Ok(())
}

fn run_all(mode: Mode) {
    let vectors = load();
    // One server (and its own record of what it served) per distinct
    // limits; vectors run 8 at a time.
    let mut servers: BTreeMap<String, (HttpServerHandle, Seen)> = BTreeMap::new();
    for v in &vectors {
        let key = format!("{:?}", v.limits);
        servers.entry(key).or_insert_with(|| {
            let seen = Seen::default();
            (start_server(mode, limits_of(v), &seen), seen)
        });
    }
    let failures = Mutex::new(Vec::new());
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|sc| {
        for _ in 0..8 {
            sc.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(v) = vectors.get(i) else { break };
                    let (server, seen) = &servers[&format!("{:?}", v.limits)];
                    let addr = server.local_addr();
                    let r = catch_unwind(AssertUnwindSafe(|| check(v, addr, seen))).unwrap_or_else(
                        |p| {
                            Err(p
                                .downcast_ref::<String>()
                                .cloned()
                                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                                .unwrap_or_else(|| "panicked".into()))
                        },
                    );
                    if let Err(e) = r {
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("{} [{}]: {e}", v.file, v.name));
                    }
                }
            });
        }
    });
    for (_, (h, _)) in servers {
        stop(h);
    }
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{mode:?}: {} of {} vectors failed:\n{}",
        failures.len(),
        vectors.len(),
        failures.join("\n")
    );
}

#[test]
fn corpus_is_well_formed_and_large_enough() {
    let vectors = load();
    assert!(vectors.len() >= 60, "only {} vectors", vectors.len());
    let mut names = std::collections::HashSet::new();
    for v in &vectors {
        assert!(names.insert(&v.name), "duplicate vector name {}", v.name);
    }
    assert_eq!(unescape(r"a\r\n\x41\(3*ab)\\").unwrap(), b"a\r\nAababab\\");
    assert_eq!(unescape(r"\(2*x\(2*y)\x29)").unwrap(), b"xyy)xyy)");
}

#[test]
fn every_vector_threads() {
    run_all(Mode::Threads);
}

#[test]
fn every_vector_event() {
    run_all(Mode::Event);
}

/// Check that `out` is a sequence of complete, well-formed HTTP/1.1
/// responses with nothing after one that says `Connection: close`; return
/// how many are final (not `100 Continue`).
fn well_formed(out: &[u8]) -> Result<usize, String> {
    let mut rest = out;
    let mut n = 0;
    while !rest.is_empty() {
        if !rest.starts_with(b"HTTP/1.1 ") {
            return Err(format!(
                "not a response: {:?}",
                String::from_utf8_lossy(rest)
            ));
        }
        let (r, used) = catch_unwind(|| parse_one(rest, false))
            .map_err(|_| format!("malformed: {:?}", String::from_utf8_lossy(rest)))?
            .ok_or_else(|| format!("truncated: {:?}", String::from_utf8_lossy(rest)))?;
        rest = &rest[used..];
        if r.status >= 200 {
            n += 1;
        }
        if r.closes() && !rest.is_empty() {
            return Err(format!(
                "bytes after Connection: close: {:?}",
                String::from_utf8_lossy(rest)
            ));
        }
    }
    Ok(n)
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Truncate(usize),
}

fn mutate(mut input: Vec<u8>, muts: &[Mutation]) -> Vec<u8> {
    for m in muts {
        let len = input.len();
        if len == 0 {
            break;
        }
        match *m {
            Mutation::Flip(at, b) => input[at % len] ^= b,
            Mutation::Insert(at, b) => input.insert(at % (len + 1), b),
            Mutation::Delete(at) => {
                input.remove(at % len);
            }
            Mutation::Truncate(at) => input.truncate(at % (len + 1)),
        }
    }
    input
}

fn mutation() -> impl Strategy<Value = Mutation> {
    // Bytes that matter to HTTP framing, and any byte.
    let special = prop::sample::select(vec![
        b'\r', b'\n', b' ', b'\t', b':', b';', b',', 0, b'0', b'f', 0x80, b'"',
    ]);
    let byte = prop_oneof![special, any::<u8>()];
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(a, b)| Mutation::Flip(a, b)),
        (any::<usize>(), byte).prop_map(|(a, b)| Mutation::Insert(a, b)),
        any::<usize>().prop_map(Mutation::Delete),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, ..ProptestConfig::default() })]

    /// The fuzz target `connection`, on the stable toolchain and seeded by
    /// the corpus: mutated vectors, split into arbitrary reads.
    #[test]
    fn mutated_vectors_never_break_the_state_machine(
        pick in any::<prop::sample::Index>(),
        muts in prop::collection::vec(mutation(), 0..6),
        cuts in prop::collection::vec(any::<usize>(), 0..4),
        with_probe in any::<bool>(),
    ) {
        let vectors = corpus();
        let v = pick.get(vectors);
        let mut input = v.send.clone();
        if with_probe {
            input.extend_from_slice(PROBE);
        }
        let input = mutate(input, &muts);
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
        points.sort_unstable();
        let mut pieces: Vec<&[u8]> = Vec::new();
        let mut last = 0;
        for p in points {
            pieces.push(&input[last..p]);
            last = p;
        }
        pieces.push(&input[last..]);
        let seen: Seen = Arc::default();
        let out = simulate(&pieces, limits_of(v), &recorder(seen.clone()));
        let n = well_formed(&out).map_err(TestCaseError::fail)?;
        let served = seen.lock().unwrap().values().map(Vec::len).sum::<usize>();
        // Every handler call produced exactly one final response.
        prop_assert!(served <= n, "{served} served, {n} final responses");
    }
}

/// The corpus, loaded once for the property test.
fn corpus() -> &'static [Vector] {
    static CORPUS: std::sync::OnceLock<Vec<Vector>> = std::sync::OnceLock::new();
    CORPUS.get_or_init(load)
}

#[test]
fn the_probe_is_served_on_a_clean_connection() {
    // The harness itself: a plain request, then the probe, both served.
    for mode in [Mode::Threads, Mode::Event] {
        let seen: Seen = Arc::default();
        let h = start_server(mode, Limits::default(), &seen);
        let v = Vector {
            file: "inline".into(),
            name: "plain".into(),
            send: b"GET /plain HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            statuses: vec![200],
            close: false,
            served: Some(vec!["/plain".into()]),
            body: Some(Vec::new()),
            limits: Vec::new(),
            probe: true,
        };
        check(&v, h.local_addr(), &seen).unwrap();
        // And a wrong expectation is caught.
        let wrong = Vector {
            close: true,
            ..v.clone()
        };
        assert!(check(&wrong, h.local_addr(), &seen).is_err());
        stop(h);
    }
}
