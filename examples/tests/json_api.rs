//! The json-api example, black-box: health, work (cache, 400/422, 504 with
//! cancellation, 503 + Retry-After on a full queue), fetch with the request's
//! deadline, and a clean exit on SIGINT.

mod common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::{Proc, agent};
use rustix::process::Signal;
use serde_json::Value;

const API: &str = env!("CARGO_BIN_EXE_json-api");

fn post(p: &Proc, path: &str, body: &str) -> (u16, Value, Option<String>) {
    let mut r = agent()
        .post(p.url(path))
        .header("content-type", "application/json")
        .send(body)
        .unwrap();
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let v: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
    (r.status().as_u16(), v, retry)
}

fn health(p: &Proc) -> Value {
    let mut r = agent().get(p.url("/health")).call().unwrap();
    assert_eq!(r.status(), 200);
    serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap()
}

fn stop(p: Proc) {
    p.signal(Signal::INT);
    let (status, out) = p.wait(Duration::from_secs(15));
    assert_eq!(status.code(), Some(0), "{out}");
}

#[test]
fn work_cache_and_input_errors() {
    let p = Proc::start(API, &["--addr", "127.0.0.1:0", "--mode", "threads"]);
    let h = health(&p);
    assert_eq!(h["status"], "ok");
    assert!(h["pool"]["workers"].as_u64().unwrap() >= 1);

    let (s, v, _) = post(&p, "/api/work", r#"{"input":"abc","rounds":1}"#);
    assert_eq!(s, 200);
    // SHA-256("abc")
    assert_eq!(
        v["digest"],
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(v["cached"], false);
    let (s, v, _) = post(&p, "/api/work", r#"{"input":"abc","rounds":1}"#);
    assert_eq!((s, v["cached"].as_bool()), (200, Some(true)));
    assert_eq!(health(&p)["cache"]["hits"], 1);

    let (s, v, _) = post(&p, "/api/work", r#"{"input":"abc","rounds":}"#);
    assert_eq!(s, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("malformed JSON"));
    let (s, _, _) = post(&p, "/api/work", r#"{"input":"abc"}"#);
    assert_eq!(s, 422);
    let (s, _, _) = post(&p, "/api/work", r#"{"input":5,"rounds":1}"#);
    assert_eq!(s, 422);
    let (s, _, _) = post(&p, "/api/work", r#"{"input":"a","rounds":0}"#);
    assert_eq!(s, 422);
    stop(p);
}

#[test]
fn deadline_exceeded_is_504_and_cancels_the_work() {
    let p = Proc::start(
        API,
        &[
            "--addr",
            "127.0.0.1:0",
            "--timeout-ms",
            "200",
            "--pool-threads",
            "1",
        ],
    );
    let start = Instant::now();
    let (s, v, _) = post(&p, "/api/work", r#"{"input":"slow","rounds":50000000}"#);
    assert_eq!(s, 504, "{v}");
    assert!(start.elapsed() < Duration::from_secs(5));
    // The task was cancelled: the single worker is free again.
    let deadline = Instant::now() + Duration::from_secs(5);
    while health(&p)["pool"]["running"] != 0 {
        assert!(Instant::now() < deadline, "cancelled work kept running");
    }
    let (s, _, _) = post(&p, "/api/work", r#"{"input":"quick","rounds":10}"#);
    assert_eq!(s, 200);
    stop(p);
}

#[test]
fn full_queue_is_503_with_retry_after_promptly() {
    let p = Proc::start(
        API,
        &[
            "--addr",
            "127.0.0.1:0",
            "--pool-threads",
            "1",
            "--queue",
            "1",
            "--timeout-ms",
            "4000",
            "--mode",
            "threads",
        ],
    );
    let url = p.url("/api/work");
    let long = |i: u32| {
        let url = url.clone();
        std::thread::spawn(move || {
            agent()
                .post(&url)
                .send(format!(r#"{{"input":"long{i}","rounds":50000000}}"#))
                .unwrap()
                .status()
                .as_u16()
        })
    };
    // Fill the pool one step at a time: one task running, then one queued
    // (sent together, the second could find the first still queued).
    let wait_for = |running: u64, queued: u64| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let h = health(&p);
            if h["pool"]["running"] == running && h["pool"]["queued"] == queued {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "pool never reached {running}/{queued}: {h}"
            );
        }
    };
    let mut busy = vec![long(0)];
    wait_for(1, 0);
    busy.push(long(1));
    wait_for(1, 1);
    let t0 = Instant::now();
    let (s, v, retry) = post(&p, "/api/work", r#"{"input":"one more","rounds":1}"#);
    let took = t0.elapsed();
    assert_eq!(s, 503, "{v}");
    assert_eq!(retry.as_deref(), Some("1"));
    assert!(took < Duration::from_millis(500), "503 took {took:?}");
    for b in busy {
        assert_eq!(b.join().unwrap(), 504);
    }
    stop(p);
}

#[test]
fn fetch_inherits_the_request_deadline_and_only_reaches_loopback() {
    let p = Proc::start(API, &["--addr", "127.0.0.1:0", "--timeout-ms", "300"]);
    let own = p.url("/health");
    let (s, v, _) = post(&p, "/api/fetch", &format!(r#"{{"url":"{own}"}}"#));
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], 200);
    assert!(v["body"].as_str().unwrap().contains("\"status\":\"ok\""));
    assert!(v["deadline_ms"].as_u64().unwrap() <= 300);

    // A server that accepts and never answers: the outbound call times out
    // with what is left of the 300 ms request deadline.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", silent.local_addr().unwrap());
    let t0 = Instant::now();
    let (s, v, _) = post(&p, "/api/fetch", &format!(r#"{{"url":"{url}"}}"#));
    assert_eq!(s, 504, "{v}");
    assert!(t0.elapsed() < Duration::from_secs(3));

    let (s, _, _) = post(&p, "/api/fetch", r#"{"url":"http://192.0.2.1/"}"#);
    assert_eq!(s, 403);
    let (s, _, _) = post(&p, "/api/fetch", r#"{"url":"ftp://127.0.0.1/"}"#);
    assert_eq!(s, 422);
    stop(p);
}
