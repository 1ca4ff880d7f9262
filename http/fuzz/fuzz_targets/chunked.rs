//! The chunked decoder: never panics, never reports data outside what it
//! consumed, and decodes the same however the input is split.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stead_http::{ChunkError, ChunkedDecoder};

fn decode(pieces: &[&[u8]], max: usize) -> Result<(Vec<u8>, bool), ChunkError> {
    let mut dec = ChunkedDecoder::new(256, 256);
    let mut out = Vec::new();
    for piece in pieces {
        let mut p: &[u8] = piece;
        while !p.is_empty() && !dec.is_done() {
            let step = dec.decode(p, max)?;
            assert!(step.consumed <= p.len());
            assert!(step.data.start <= step.data.end && step.data.end <= step.consumed);
            assert!(step.data.len() <= max);
            out.extend_from_slice(&p[step.data.clone()]);
            p = &p[step.consumed..];
        }
    }
    Ok((out, dec.is_done()))
}

fuzz_target!(|data: &[u8]| {
    let Some((&[cut, max], data)) = data.split_first_chunk::<2>() else {
        return;
    };
    let k = usize::from(cut) * data.len() / 256;
    let whole = decode(&[data], usize::MAX);
    let split = decode(&[&data[..k], &data[k..]], usize::from(max).max(1));
    assert_eq!(whole, split);
});
