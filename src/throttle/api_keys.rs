//! Failed API-key attempts per client address: after `API_KEY_FAILURE_LIMIT`
//! failures within a minute, every attempt from that address (even with a
//! valid key, so a guesser learns nothing) is answered 429 until the minute
//! is over. IPv6 clients are counted per /64, the block one host usually
//! has; IPv4-mapped addresses as IPv4.
//!
//! Per node. The map holds at most [`MAX_CLIENTS`] addresses; when it is full
//! of unexpired windows it is cleared rather than grown (an attacker with
//! that many addresses is beyond a per-address throttle anyway).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const WINDOW: Duration = Duration::from_secs(60);
pub const MAX_CLIENTS: usize = 65_536;

pub struct KeyFailures {
    limit: u32,
    by_client: Mutex<HashMap<IpAddr, Window>>,
}

#[derive(Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

/// The address a client is counted under.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut seg = v6.segments();
                seg[4..].fill(0);
                IpAddr::from(seg)
            }
        },
    }
}

impl KeyFailures {
    pub fn new(limit: u32) -> Self {
        Self {
            limit,
            by_client: Mutex::new(HashMap::new()),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Window>> {
        self.by_client.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How long `ip` must wait, if it used up its failures in this window.
    pub fn blocked(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let map = self.map();
        let w = map.get(&client_key(ip))?;
        let ends = w.started + WINDOW;
        (w.failures >= self.limit && now < ends).then(|| ends - now)
    }

    /// Counts one failed attempt from `ip`.
    pub fn failed(&self, ip: IpAddr, now: Instant) {
        let mut map = self.map();
        let key = client_key(ip);
        if !map.contains_key(&key) && map.len() >= MAX_CLIENTS {
            map.retain(|_, w| now < w.started + WINDOW);
            if map.len() >= MAX_CLIENTS {
                map.clear();
            }
        }
        let w = map.entry(key).or_insert(Window {
            started: now,
            failures: 0,
        });
        if now >= w.started + WINDOW {
            *w = Window {
                started: now,
                failures: 0,
            };
        }
        w.failures = w.failures.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_limit_until_the_window_ends() {
        let f = KeyFailures::new(3);
        let t0 = Instant::now();
        let ip: IpAddr = [10, 0, 0, 1].into();
        for _ in 0..3 {
            assert_eq!(f.blocked(ip, t0), None);
            f.failed(ip, t0);
        }
        let wait = f
            .blocked(ip, t0 + Duration::from_secs(10))
            .expect("blocked");
        assert_eq!(wait, Duration::from_secs(50));
        assert_eq!(f.blocked([10, 0, 0, 2].into(), t0), None, "per address");
        assert_eq!(f.blocked(ip, t0 + WINDOW), None, "a new window");
        f.failed(ip, t0 + WINDOW);
        assert_eq!(f.blocked(ip, t0 + WINDOW), None, "counting starts over");
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_v4_as_v4() {
        let f = KeyFailures::new(1);
        let t0 = Instant::now();
        f.failed("2001:db8:1:2::1".parse().unwrap(), t0);
        assert!(
            f.blocked("2001:db8:1:2:ffff::9".parse().unwrap(), t0)
                .is_some()
        );
        assert!(f.blocked("2001:db8:1:3::1".parse().unwrap(), t0).is_none());
        f.failed("::ffff:192.0.2.7".parse().unwrap(), t0);
        assert!(f.blocked([192, 0, 2, 7].into(), t0).is_some());
    }

    #[test]
    fn the_map_is_bounded() {
        let f = KeyFailures::new(1);
        let t0 = Instant::now();
        for i in 0..(MAX_CLIENTS as u32 + 10) {
            f.failed(IpAddr::from(i.to_be_bytes()), t0);
        }
        assert!(f.map().len() <= MAX_CLIENTS);
    }
}
