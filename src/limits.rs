//! Connection limits (`WS_MAX_CONNECTIONS`, `WS_MAX_CONNECTIONS_PER_IP`).
//!
//! Counts are this node's: limits protect a node's own resources, so they are
//! deliberately not cluster-wide.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use crate::error::{AppError, Code};

/// Binary attachments in one Socket.IO packet. Events carry JSON only (an
/// attachment is refused with VALIDATION_FAILED), so the parser keeps
/// little for a packet that waits for its attachments; beyond these the
/// connection is closed. socketioxide's defaults (10,000 and 10 MB) let one
/// unauthenticated connection pin 10 MB.
pub const BINARY_MAX_ATTACHMENTS: usize = 4;
/// Bytes of binary attachments in one packet.
pub const BINARY_MAX_BYTES: usize = 16 * 1024;

#[derive(Default)]
pub struct ConnectionLimits {
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

impl ConnectionLimits {
    /// Admits one connection from `ip` (if known) or refuses with LIMIT_EXCEEDED.
    /// `total` is the node's current connection count.
    pub fn admit(
        &self,
        ip: Option<IpAddr>,
        total: usize,
        max_total: Option<usize>,
        max_per_ip: Option<usize>,
    ) -> Result<(), AppError> {
        if max_total.is_some_and(|max| total >= max) {
            return Err(AppError::new(
                Code::LimitExceeded,
                "this server is at its connection limit; retry later or on another node",
            ));
        }
        let Some(ip) = ip else { return Ok(()) };
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        let count = per_ip.entry(ip).or_insert(0);
        if max_per_ip.is_some_and(|max| *count >= max) {
            return Err(AppError::new(
                Code::LimitExceeded,
                format!("too many connections from {ip}"),
            ));
        }
        *count += 1;
        Ok(())
    }

    pub fn release(&self, ip: Option<IpAddr>) {
        let Some(ip) = ip else { return };
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = per_ip.get_mut(&ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                per_ip.remove(&ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_ip_and_total_limits() {
        let l = ConnectionLimits::default();
        let ip: IpAddr = [127, 0, 0, 1].into();
        assert!(l.admit(Some(ip), 0, None, Some(2)).is_ok());
        assert!(l.admit(Some(ip), 1, None, Some(2)).is_ok());
        assert_eq!(
            l.admit(Some(ip), 2, None, Some(2)).unwrap_err().code,
            Code::LimitExceeded
        );
        l.release(Some(ip));
        assert!(l.admit(Some(ip), 1, None, Some(2)).is_ok());
        assert_eq!(
            l.admit(None, 5, Some(5), None).unwrap_err().code,
            Code::LimitExceeded
        );
    }
}

/// A per-socket token bucket (`WS_RATE_LIMIT` events/s, `WS_RATE_BURST`),
/// plus the count of refusals that marks sustained abuse.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: std::time::Instant,
    window_start: std::time::Instant,
    refused_in_window: u32,
}

/// What the bucket says about one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Allowed,
    Limited,
    /// Refused so often for so long that the socket should be dropped.
    Abusive,
}

/// Refusals within this window that make a client abusive: ten seconds of
/// sending at least twice the allowed rate.
const ABUSE_WINDOW: std::time::Duration = std::time::Duration::from_secs(10);

impl TokenBucket {
    pub fn new(rate: f64, burst: f64) -> Self {
        let now = std::time::Instant::now();
        Self {
            rate,
            burst,
            tokens: burst,
            last: now,
            window_start: now,
            refused_in_window: 0,
        }
    }

    pub fn admit(&mut self) -> Admission {
        self.admit_at(std::time::Instant::now())
    }

    fn admit_at(&mut self, now: std::time::Instant) -> Admission {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Admission::Allowed;
        }
        if now.saturating_duration_since(self.window_start) > ABUSE_WINDOW {
            self.window_start = now;
            self.refused_in_window = 0;
        }
        self.refused_in_window += 1;
        let abuse_threshold = (self.rate * ABUSE_WINDOW.as_secs_f64()).max(self.burst) as u32;
        if self.refused_in_window > abuse_threshold {
            Admission::Abusive
        } else {
            Admission::Limited
        }
    }
}

#[cfg(test)]
mod bucket_tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn burst_then_rate() {
        let mut b = TokenBucket::new(10.0, 20.0);
        let t0 = Instant::now();
        let allowed = (0..25)
            .filter(|_| b.admit_at(t0) == Admission::Allowed)
            .count();
        assert_eq!(allowed, 20, "the burst");
        assert_eq!(
            b.admit_at(t0 + Duration::from_millis(100)),
            Admission::Allowed,
            "refilled one token"
        );
        assert_eq!(
            b.admit_at(t0 + Duration::from_millis(100)),
            Admission::Limited
        );
    }

    #[test]
    fn sustained_abuse_is_detected() {
        let mut b = TokenBucket::new(5.0, 10.0);
        let t0 = Instant::now();
        let verdicts: Vec<Admission> = (0..200)
            .map(|i| b.admit_at(t0 + Duration::from_millis(i * 10)))
            .collect();
        assert!(verdicts.contains(&Admission::Limited));
        assert_eq!(verdicts.last(), Some(&Admission::Abusive));
    }
}
