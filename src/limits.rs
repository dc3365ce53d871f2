//! Connection limits (`WS_MAX_CONNECTIONS`, `WS_MAX_CONNECTIONS_PER_IP`).
//!
//! Counts are this node's: limits protect a node's own resources, so they are
//! deliberately not cluster-wide.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use crate::error::{AppError, Code};

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
