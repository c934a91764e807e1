//! Rate limiting per target: requests to one scheme://host:port are spaced at
//! least 1/rate apart, across every run in the process.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Default)]
pub struct RateLimiter {
    next: Mutex<HashMap<String, Instant>>,
}

impl RateLimiter {
    /// Waits for this request's slot; `per_second <= 0` means no limit.
    pub async fn wait(&self, target: &str, per_second: f64) {
        if per_second <= 0.0 || !per_second.is_finite() {
            return;
        }
        let slot = {
            let Ok(mut next) = self.next.lock() else {
                return;
            };
            let now = Instant::now();
            let entry = next.entry(target.to_string()).or_insert(now);
            let slot = (*entry).max(now);
            *entry = slot + Duration::from_secs_f64(1.0 / per_second);
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}
