//! One token bucket per user (per company and user id) on this node, shared
//! by all the user's sockets: without it, opening N sockets multiplies the
//! per-socket rate limit by N.
//!
//! Per node: a user whose sockets are spread over K nodes gets K buckets.
//! Sharing the bucket across nodes would put a Redis round trip on every
//! incoming event; the per-socket and per-IP limits still hold everywhere.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use crate::limits::{Admission, TokenBucket};

/// A user's bucket; sockets hold it, the registry only remembers it.
pub type UserBucket = Arc<Mutex<TokenBucket>>;

pub struct UserRates {
    rate: f64,
    burst: f64,
    /// Weak, so a user's bucket goes away with its last socket; dead
    /// entries are swept when the map has doubled since the last sweep.
    buckets: Mutex<Registry>,
}

#[derive(Default)]
struct Registry {
    by_user: HashMap<(String, String), Weak<Mutex<TokenBucket>>>,
    sweep_at: usize,
}

impl UserRates {
    pub fn new(rate: f64, burst: f64) -> Self {
        Self {
            rate,
            burst,
            buckets: Mutex::new(Registry::default()),
        }
    }

    /// The bucket of this user, shared with its other sockets on this node.
    pub fn bucket(&self, company: &str, user: &str) -> UserBucket {
        let mut reg = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let key = (company.to_string(), user.to_string());
        if let Some(bucket) = reg.by_user.get(&key).and_then(Weak::upgrade) {
            return bucket;
        }
        let bucket = Arc::new(Mutex::new(TokenBucket::new(self.rate, self.burst)));
        reg.by_user.insert(key, Arc::downgrade(&bucket));
        if reg.by_user.len() >= reg.sweep_at {
            reg.by_user.retain(|_, w| w.strong_count() > 0);
            reg.sweep_at = (reg.by_user.len() * 2).max(1024);
        }
        bucket
    }

    /// Users with a live bucket (for tests and diagnostics).
    pub fn tracked(&self) -> usize {
        let reg = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        reg.by_user
            .values()
            .filter(|w| w.strong_count() > 0)
            .count()
    }
}

/// Takes a token from a user's bucket.
pub fn admit(bucket: &UserBucket) -> Admission {
    bucket.lock().unwrap_or_else(|e| e.into_inner()).admit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_of_one_user_share_a_bucket_that_goes_with_the_last() {
        let rates = UserRates::new(1.0, 3.0);
        let a = rates.bucket("acme", "u1");
        let b = rates.bucket("acme", "u1");
        let other = rates.bucket("acme", "u2");
        let elsewhere = rates.bucket("globex", "u1");
        let allowed = [&a, &b, &a, &b]
            .iter()
            .filter(|bk| admit(bk) == Admission::Allowed)
            .count();
        assert_eq!(allowed, 3, "one burst for both sockets");
        assert_eq!(admit(&other), Admission::Allowed);
        assert_eq!(
            admit(&elsewhere),
            Admission::Allowed,
            "companies never share"
        );
        assert_eq!(rates.tracked(), 3);
        drop((a, b));
        assert_eq!(rates.tracked(), 2);
        let fresh = rates.bucket("acme", "u1");
        assert_eq!(
            admit(&fresh),
            Admission::Allowed,
            "a new bucket after the last socket left"
        );
    }
}
