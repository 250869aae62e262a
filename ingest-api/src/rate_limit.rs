//! Per-tenant rate limiting: a token bucket per tenant on each API instance. Over the limit,
//! requests get 429 with `Retry-After`, so one noisy tenant cannot starve the others.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use crate::error::ApiError;

/// Token buckets by tenant.
#[derive(Debug)]
pub struct RateLimiter {
    /// Tokens added per second.
    rate: f64,
    /// Bucket size: the burst a tenant may send at once.
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
}

impl RateLimiter {
    /// `rate` requests per second with bursts of `burst`.
    pub fn new(rate: f64, burst: f64) -> Self {
        Self {
            rate: rate.max(0.001),
            burst: burst.max(1.0),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `tenant_id`, or answers 429 with the seconds until one is free.
    pub fn check(&self, tenant_id: &str) -> Result<(), ApiError> {
        let now = Instant::now();
        let Ok(mut buckets) = self.buckets.lock() else {
            // A poisoned lock only means another request panicked; limiting is best effort.
            return Ok(());
        };
        if buckets.len() > 100_000 {
            // Idle tenants' buckets are full anyway; forgetting them changes nothing.
            buckets.retain(|_, b| {
                now.duration_since(b.refilled).as_secs_f64() * self.rate < self.burst
            });
        }
        let bucket = buckets.entry(tenant_id.to_string()).or_insert(Bucket {
            tokens: self.burst,
            refilled: now,
        });
        let elapsed = now.duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let wait = ((1.0 - bucket.tokens) / self.rate).ceil().max(1.0);
        metrics::counter!("tributary_api_rate_limited_total").increment(1);
        Err(ApiError {
            retry_after: Some(wait.min(f64::from(u32::MAX)) as u32),
            ..ApiError::new(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests for this tenant; retry after the indicated delay",
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_limits_then_refills_per_tenant() {
        let limiter = RateLimiter::new(1000.0, 3.0);
        for _ in 0..3 {
            assert!(limiter.check("a").is_ok());
        }
        let refused = limiter.check("a").expect_err("over the burst");
        assert_eq!(refused.status, 429);
        assert_eq!(refused.retry_after, Some(1));
        assert!(limiter.check("b").is_ok(), "other tenants are unaffected");
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert!(limiter.check("a").is_ok(), "refilled");
    }
}
