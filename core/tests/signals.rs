//! `harness = false`: the test harness's threads would get in the way of
//! signal delivery, so this binary runs its checks from `main`, and forks
//! itself (through `Command`) for the check that must exit the process.

use std::process::Command;
use std::time::Duration;

use rustix::process::{Signal, getpid, kill_process};
use stead_core::{CancelReason, shutdown_on_signals};

fn child() -> ! {
    let token = shutdown_on_signals().expect("install handlers");
    assert!(
        token.same(&shutdown_on_signals().unwrap()),
        "one token per process"
    );
    kill_process(getpid(), Signal::TERM).unwrap();
    let r = token.wait_timeout(Duration::from_secs(10));
    assert_eq!(r, Some(CancelReason::Shutdown));
    println!("first signal cancelled the token");
    // A second signal exits at once, with 130.
    kill_process(getpid(), Signal::INT).unwrap();
    std::thread::sleep(Duration::from_secs(10));
    println!("second signal did not exit");
    std::process::exit(3)
}

fn main() {
    if std::env::var_os("STEAD_SIGNALS_CHILD").is_some() {
        child();
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .env("STEAD_SIGNALS_CHILD", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("first signal cancelled the token"),
        "child said: {stdout} / {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(130), "second signal exits with 130");
    println!("test signals::first_cancels_second_exits ... ok");
    println!("test result: ok. 1 passed; 0 failed");
}
