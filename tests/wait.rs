//! Polling until something holds, with a deadline: the one way tests (and the
//! dashboard benchmark, which includes this file) wait, never a fixed sleep.

use std::time::{Duration, Instant};

/// Polls `check` until it gives a value (`limit` at most, then fails naming `what`).
pub fn wait_for_within<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
