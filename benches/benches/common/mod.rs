//! Settings shared by every bench target: short runs, so that
//! `cargo bench -p stead-benches` finishes in a few minutes on 2 cores.

use std::time::Duration;

use criterion::Criterion;

/// 1 s warm-up, 3 s measurement, 30 samples.
pub fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
}
