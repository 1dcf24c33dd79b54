//! Optional throttling in Azure's shape, off unless configured: per-vault request limits (429
//! `Throttled` with Retry-After, as Key Vault answers) and token-endpoint limits per client id
//! and per source address (429 in the OAuth error shape). governor's keyed GCRA limiters do
//! the counting: lock-free, and a well-kept crate rather than our own token buckets.

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

/// Limits; `None` is no limit. Counts are per window, with the whole window's worth allowed
/// as a burst.
#[derive(Debug, Clone, Default)]
pub struct ThrottleLimits {
    /// Data-plane requests per vault per 10 seconds (Key Vault's own unit).
    pub vault_per_10s: Option<NonZeroU32>,
    /// Token requests per client id per minute.
    pub token_per_client_per_min: Option<NonZeroU32>,
    /// Token requests per source address per minute.
    pub token_per_address_per_min: Option<NonZeroU32>,
}

/// Keys kept before limiters that are full again are forgotten (client ids are caller input).
const MAX_KEYS: usize = 10_000;

struct Keyed<K: Hash + Eq + Clone>(DefaultKeyedRateLimiter<K>);

impl<K: Hash + Eq + Clone> Keyed<K> {
    fn new(count: Option<NonZeroU32>, window: Duration) -> Option<Keyed<K>> {
        let count = count?;
        let quota = Quota::with_period(window / count.get())?.allow_burst(count);
        Some(Keyed(RateLimiter::keyed(quota)))
    }

    /// Ok, or the seconds to wait (at least 1).
    fn check(&self, key: &K) -> Result<(), u32> {
        if self.0.len() > MAX_KEYS {
            self.0.retain_recent();
        }
        self.0.check_key(key).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            u32::try_from(wait.as_secs_f64().ceil() as u64)
                .unwrap_or(u32::MAX)
                .max(1)
        })
    }
}

pub struct Throttle {
    vault: Option<Keyed<String>>,
    token_client: Option<Keyed<String>>,
    token_address: Option<Keyed<IpAddr>>,
}

impl Throttle {
    pub fn new(limits: &ThrottleLimits) -> Throttle {
        let minute = Duration::from_secs(60);
        Throttle {
            vault: Keyed::new(limits.vault_per_10s, Duration::from_secs(10)),
            token_client: Keyed::new(limits.token_per_client_per_min, minute),
            token_address: Keyed::new(limits.token_per_address_per_min, minute),
        }
    }

    /// A data-plane request to this vault: Ok, or the Retry-After seconds.
    pub fn vault(&self, vault_id: &str) -> Result<(), u32> {
        match &self.vault {
            Some(l) => l.check(&vault_id.to_string()),
            None => Ok(()),
        }
    }

    /// A token request from this address for this client id: Ok, or the Retry-After seconds.
    pub fn token(&self, client_id: Option<&str>, address: IpAddr) -> Result<(), u32> {
        if let Some(l) = &self.token_address {
            l.check(&address)?;
        }
        match (&self.token_client, client_id) {
            (Some(l), Some(id)) => l.check(&id.to_string()),
            _ => Ok(()),
        }
    }
}
