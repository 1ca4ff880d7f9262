//! Happy paths with a real client (ureq 3), in both modes: keep-alive
//! reuse, chunked upload, large streamed download, routing.

mod util;

use std::io::Read;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use stead_core::Cancel;
use stead_http::{Body, HandlerExt, Limits, Mode, RequestExt, ResponseBody, Router};
use util::*;

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(DEADLINE))
        .build()
        .into()
}

fn keep_alive_reuses_one_connection(mode: Mode) {
    let h = echo_server(mode);
    let agent = agent();
    for i in 0..5 {
        let url = format!("http://{}/n{i}", h.local_addr());
        let mut r = agent.get(&url).call().unwrap();
        assert_eq!(r.body_mut().read_to_string().unwrap(), format!("/n{i}"));
    }
    assert_eq!(
        h.stats().connections.accepted,
        1,
        "ureq reused its connection"
    );
    assert_eq!(h.stats().requests, 5);
    stop(h);
}

/// A reader of unknown length makes ureq send a chunked body.
fn chunked_upload(mode: Mode) {
    let h = start_with(
        mode,
        |b| b.limits(Limits::default().body(8 << 20)),
        |mut req: Request<Body>, _: &Cancel| {
            assert!(req.body().is_chunked());
            let mut sum = 0u64;
            let mut n = 0u64;
            let mut buf = [0u8; 8192];
            loop {
                let k = req.body_mut().read(&mut buf)?;
                if k == 0 {
                    break;
                }
                n += k as u64;
                sum += buf[..k].iter().map(|&b| u64::from(b)).sum::<u64>();
            }
            Ok::<_, std::io::Error>(format!("{n} {sum}"))
        },
    );
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let expected_sum: u64 = data.iter().map(|&b| u64::from(b)).sum();
    let reader = std::io::Cursor::new(data.clone());
    let mut r = agent()
        .post(format!("http://{}/up", h.local_addr()))
        .send(ureq::SendBody::from_owned_reader(reader))
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.body_mut().read_to_string().unwrap(),
        format!("{} {expected_sum}", data.len())
    );
    stop(h);
}

fn large_streamed_download(mode: Mode) {
    const SIZE: u64 = 16 << 20;
    let h = start(mode, |req: Request<Body>, _: &Cancel| {
        let pattern = (0..=255u8).cycle().take(SIZE as usize);
        let data: Vec<u8> = pattern.collect();
        if req.uri().path() == "/sized" {
            Response::new(ResponseBody::sized_reader(std::io::Cursor::new(data), SIZE))
        } else {
            Response::new(ResponseBody::reader(std::io::Cursor::new(data)))
        }
    });
    let agent = agent();
    for path in ["/sized", "/chunked"] {
        let r = agent
            .get(format!("http://{}{path}", h.local_addr()))
            .call()
            .unwrap();
        let (_, body) = r.into_parts();
        let mut reader = body.into_reader();
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0u64;
        loop {
            let n = reader.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            for (i, &b) in buf[..n].iter().enumerate() {
                assert_eq!(b, ((total + i as u64) % 256) as u8);
            }
            total += n as u64;
        }
        assert_eq!(total, SIZE, "{path}");
    }
    stop(h);
}

fn router_params_404_405(mode: Mode) {
    let app = Router::new()
        .get("/users/{id}", |req, _| {
            format!("user {}", req.param("id").unwrap())
        })
        .post("/users", |mut req, _| {
            let body = req.body_mut().read_all()?;
            Ok::<_, std::io::Error>((StatusCode::CREATED, body))
        })
        .get("/files/{*path}", |req, _| {
            req.param("path").unwrap().to_owned()
        });
    let h = start(mode, app);
    let agent = agent();
    let base = format!("http://{}", h.local_addr());
    let mut r = agent.get(format!("{base}/users/42")).call().unwrap();
    assert_eq!(r.body_mut().read_to_string().unwrap(), "user 42");
    let mut r = agent.get(format!("{base}/files/a/b.txt")).call().unwrap();
    assert_eq!(r.body_mut().read_to_string().unwrap(), "a/b.txt");
    // Parameters are percent-decoded (an encoded slash stays one segment).
    let mut r = agent
        .get(format!("{base}/users/J%C3%BCrgen%2Fx%20y"))
        .call()
        .unwrap();
    assert_eq!(r.body_mut().read_to_string().unwrap(), "user Jürgen/x y");
    // Not UTF-8 once decoded, or a broken escape: 400 before the handler.
    let r = agent.get(format!("{base}/users/%FF")).call().unwrap();
    assert_eq!(r.status(), 400);
    let r = agent.get(format!("{base}/users/%zz")).call().unwrap();
    assert_eq!(r.status(), 400);
    let mut r = agent.post(format!("{base}/users")).send("ann").unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.body_mut().read_to_string().unwrap(), "ann");
    let r = agent.get(format!("{base}/nope")).call().unwrap();
    assert_eq!(r.status(), 404);
    let r = agent.delete(format!("{base}/users/1")).call().unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET, HEAD");
    let r = agent.head(format!("{base}/users/7")).call().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], "6");
    stop(h);
}

fn request_timeout_middleware_is_504(mode: Mode) {
    let app = (|_req: Request<Body>, cancel: &Cancel| {
        // Waits for its token, as a well-behaved handler does.
        let reason = cancel.wait_timeout(DEADLINE);
        format!("{reason:?}")
    })
    .timeout(Duration::from_millis(100));
    let h = start(mode, app);
    let r = agent()
        .get(format!("http://{}/", h.local_addr()))
        .call()
        .unwrap();
    assert_eq!(r.status(), 504);
    stop(h);
}

fn concurrency_limit_sheds_with_503(mode: Mode) {
    let (entered_tx, entered_rx) = std::sync::mpsc::channel::<()>();
    let entered_tx = std::sync::Mutex::new(entered_tx);
    let (release_tx, release_rx) = crossbeam_like::pair();
    let app = (move |req: Request<Body>, _: &Cancel| {
        if req.uri().path() == "/block" {
            entered_tx.lock().unwrap().send(()).unwrap();
            release_rx.wait();
        }
        "done"
    })
    .concurrency_limit(1, 0);
    let h = start(mode, app);
    let addr = h.local_addr();
    let blocker = std::thread::spawn(move || {
        let mut r = agent().get(format!("http://{addr}/block")).call().unwrap();
        r.body_mut().read_to_string().unwrap()
    });
    entered_rx.recv_timeout(DEADLINE).unwrap();
    let r = agent().get(format!("http://{addr}/other")).call().unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    release_tx.release();
    assert_eq!(blocker.join().unwrap(), "done");
    let mut r = agent().get(format!("http://{addr}/other")).call().unwrap();
    assert_eq!(r.body_mut().read_to_string().unwrap(), "done");
    stop(h);
}

/// A one-shot gate usable from a `Fn` handler.
mod crossbeam_like {
    use std::sync::{Arc, Condvar, Mutex};

    pub struct Gate(Arc<(Mutex<bool>, Condvar)>);

    pub fn pair() -> (Gate, Gate) {
        let g = Arc::new((Mutex::new(false), Condvar::new()));
        (Gate(g.clone()), Gate(g))
    }

    impl Gate {
        pub fn release(&self) {
            *self.0.0.lock().unwrap() = true;
            self.0.1.notify_all();
        }

        pub fn wait(&self) {
            let open = self.0.0.lock().unwrap();
            let (open, _) = self
                .0
                .1
                .wait_timeout_while(open, super::DEADLINE, |open| !*open)
                .unwrap();
            assert!(*open, "gate never released");
        }
    }
}

both_modes!(
    keep_alive_reuses_one_connection,
    chunked_upload,
    large_streamed_download,
    router_params_404_405,
    request_timeout_middleware_is_504,
    concurrency_limit_sheds_with_503,
);
