//! Its own test binary: counts live token nodes process-wide, so nothing
//! else may create tokens concurrently.

use std::time::Duration;
use stead_core::Cancel;

#[test]
fn a_million_short_lived_children_leave_no_growth() {
    let parent = Cancel::with_timeout(Duration::from_secs(3600));
    let base = Cancel::live_tokens();
    for i in 0..1_000_000u32 {
        let c = parent.child();
        if i % 2 == 0 {
            // Grandchildren and cancelled children are freed as well.
            let g = c.child();
            g.cancel();
        }
    }
    assert_eq!(Cancel::live_tokens(), base);
    assert_eq!(parent.child_count(), 0);
    // Cancelling the parent now finds no stale links.
    parent.cancel();
}
