//! The request head parser: never panics, and a prefix gives either "need
//! more", the same error, or (when the head fits in the prefix) the same head.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stead_http::{Limits, parse_request_head};

fuzz_target!(|data: &[u8]| {
    // Small limits so the limit paths are reached too.
    let limits = Limits::default().request_line(256).head(1024).headers(16);
    let Some((&cut, data)) = data.split_first() else {
        return;
    };
    let full = parse_request_head(data, &limits);
    if let Ok(Some(head)) = &full {
        assert!(head.len <= data.len());
    }
    let k = usize::from(cut) * data.len() / 256;
    match parse_request_head(&data[..k], &limits) {
        Ok(None) => {}
        Ok(Some(head)) => {
            let f = full.as_ref().expect("prefix parsed, whole failed");
            let f = f.as_ref().expect("prefix complete, whole partial");
            assert_eq!(head.len, f.len);
            assert_eq!(head.method, f.method);
            assert_eq!(head.uri, f.uri);
            assert_eq!(head.headers, f.headers);
            assert_eq!(head.framing, f.framing);
        }
        Err(e) => assert_eq!(Err(e), full.map(|_| ())),
    }
});
