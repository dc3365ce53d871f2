//! The retry schedule: exponential backoff from `WEBHOOK_RETRY_BASE_MS`,
//! doubling per failed attempt, capped at `WEBHOOK_RETRY_MAX_MS`, each delay
//! jittered to 50–100 % of its value (so endpoints that failed together do
//! not get their retries all at once). A delivery is dead when an attempt
//! fails at least `WEBHOOK_RETRY_FOR_MS` after its window began (its
//! creation, or a manual redelivery): retries span at least that long.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub base: Duration,
    pub max: Duration,
    pub window: Duration,
}

impl RetryPolicy {
    /// The delay after `failed` failed attempts (1 = the first), before jitter.
    pub fn delay(&self, failed: u32) -> Duration {
        let shift = failed.saturating_sub(1).min(40);
        let ms = (self.base.as_millis() as u64).saturating_mul(1u64 << shift);
        Duration::from_millis(ms).min(self.max)
    }

    /// When to try again after attempt number `failed` failed at `now` (ms),
    /// with `jitter` in [0, 1); `None` = the delivery is dead.
    pub fn next_at(&self, failed: u32, window_start: i64, now: i64, jitter: f64) -> Option<i64> {
        if now - window_start >= self.window.as_millis() as i64 {
            return None;
        }
        let d = self.delay(failed).as_millis() as f64;
        let jittered = d * (0.5 + 0.5 * jitter.clamp(0.0, 1.0));
        Some(now + jittered.round().max(1.0) as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default() -> RetryPolicy {
        RetryPolicy {
            base: Duration::from_secs(10),
            max: Duration::from_secs(3600),
            window: Duration::from_secs(86_400),
        }
    }

    #[test]
    fn doubles_then_caps() {
        let p = default();
        let secs: Vec<u64> = (1..=11).map(|n| p.delay(n).as_secs()).collect();
        assert_eq!(
            secs,
            [10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600]
        );
        assert_eq!(p.delay(1000).as_secs(), 3600, "no overflow");
    }

    #[test]
    fn jitter_stays_within_half_to_full_delay() {
        let p = default();
        assert_eq!(p.next_at(1, 0, 1_000, 0.0), Some(1_000 + 5_000));
        assert_eq!(p.next_at(1, 0, 1_000, 0.999_999), Some(1_000 + 10_000));
        assert_eq!(p.next_at(3, 0, 1_000, 0.5), Some(1_000 + 30_000));
    }

    #[test]
    fn dead_only_after_the_whole_window() {
        let p = default();
        let day = 86_400_000;
        assert!(p.next_at(30, 0, day - 1, 0.0).is_some());
        assert_eq!(p.next_at(30, 0, day, 0.0), None);
        // Attempts with the largest jitter still cover the window: simulate.
        let (mut now, mut n) = (0i64, 1u32);
        while let Some(next) = p.next_at(n, 0, now, 1.0) {
            now = next;
            n += 1;
        }
        assert!(now >= day, "retried for {now} ms");
        assert!((25..=40).contains(&n), "{n} attempts");
    }
}
