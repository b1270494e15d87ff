//! How many WebSocket connections may be open: overall and per client address.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, PoisonError};

use crate::metrics::Refusal;

/// Counts open WebSocket connections against `limits.max_connections` and
/// `limits.max_connections_per_ip`.
///
/// The client is the TCP peer's address; IPv6 clients are grouped by their /64 network,
/// because one host commonly holds a whole /64.
pub(crate) struct ConnectionLimiter {
    max_total: usize,
    max_per_client: usize,
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    total: usize,
    per_client: HashMap<IpAddr, usize>,
}

/// One open connection; gives its slot back when dropped.
pub(crate) struct Permit {
    limiter: Arc<ConnectionLimiter>,
    client: IpAddr,
}

impl ConnectionLimiter {
    pub(crate) fn new(max_total: usize, max_per_client: usize) -> Arc<Self> {
        Arc::new(ConnectionLimiter {
            max_total,
            max_per_client,
            open: Mutex::new(Open::default()),
        })
    }

    /// Takes a slot for a connection from `ip`, or says which limit is reached.
    pub(crate) fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Result<Permit, Refusal> {
        let client = client_key(ip);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if open.total >= self.max_total {
            return Err(Refusal::ConnectionLimit);
        }
        let count = open.per_client.entry(client).or_insert(0);
        if *count >= self.max_per_client {
            return Err(Refusal::IpLimit);
        }
        *count += 1;
        open.total += 1;
        Ok(Permit {
            limiter: self.clone(),
            client,
        })
    }

    #[cfg(test)]
    fn total(&self) -> usize {
        self.open.lock().unwrap().total
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut open = self
            .limiter
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        open.total -= 1;
        if let Some(count) = open.per_client.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                open.per_client.remove(&self.client);
            }
        }
    }
}

/// The address a limit applies to: IPv4 as is (IPv4-mapped IPv6 too), IPv6 by /64.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn per_client_limit_then_total_limit() {
        let limiter = ConnectionLimiter::new(3, 2);
        let a1 = limiter.try_acquire(ip("10.0.0.1")).unwrap();
        let _a2 = limiter.try_acquire(ip("10.0.0.1")).unwrap();
        assert_eq!(
            limiter.try_acquire(ip("10.0.0.1")).err(),
            Some(Refusal::IpLimit)
        );
        let _b1 = limiter.try_acquire(ip("10.0.0.2")).unwrap();
        assert_eq!(
            limiter.try_acquire(ip("10.0.0.3")).err(),
            Some(Refusal::ConnectionLimit)
        );
        drop(a1);
        assert_eq!(limiter.total(), 2);
        let _a3 = limiter.try_acquire(ip("10.0.0.1")).unwrap();
    }

    #[test]
    fn ipv6_clients_are_grouped_by_64() {
        let limiter = ConnectionLimiter::new(10, 1);
        let _p = limiter.try_acquire(ip("2001:db8:1:2::1")).unwrap();
        assert!(limiter.try_acquire(ip("2001:db8:1:2::ffff")).is_err());
        assert!(limiter.try_acquire(ip("2001:db8:1:3::1")).is_ok());
        assert_eq!(client_key(ip("::ffff:10.1.2.3")), ip("10.1.2.3"));
    }
}
