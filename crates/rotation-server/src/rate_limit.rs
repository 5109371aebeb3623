//! Request limits per token, and validation attempts per token and secret.
//!
//! Both are GCRA limiters (the `governor` crate) kept in memory, per
//! replica: a client spreading its requests over replicas gets each
//! replica's allowance. A refused request is 429 `rate_limited` with
//! `Retry-After`; nothing it asked for happens.

use std::num::NonZeroU32;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::ApiError;

/// The server's limiters; a limit of 0 turns one off.
pub(crate) struct Limits {
    /// Requests per second of one token (bursts of twice that).
    per_token: Option<DefaultKeyedRateLimiter<String>>,
    /// `:validate` calls per minute of one token on one secret.
    validate: Option<DefaultKeyedRateLimiter<(String, String)>>,
    clock: DefaultClock,
}

impl Limits {
    /// Limiters allowing `per_token_per_second` requests per token (0: no
    /// limit) and `validate_per_minute` validations per token and secret
    /// (0: no limit).
    pub(crate) fn new(per_token_per_second: u32, validate_per_minute: u32) -> Self {
        let per_token = NonZeroU32::new(per_token_per_second).map(|rate| {
            let burst = NonZeroU32::new(rate.get().saturating_mul(2)).unwrap_or(rate);
            RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        let validate = NonZeroU32::new(validate_per_minute).map(|rate| RateLimiter::keyed(Quota::per_minute(rate)));
        Limits {
            per_token,
            validate,
            clock: DefaultClock::default(),
        }
    }

    /// Counts a request of `token_id`; `rate_limited` once it is over its rate.
    pub(crate) fn check_token(&self, token_id: &str) -> Result<(), ApiError> {
        let Some(limiter) = &self.per_token else {
            return Ok(());
        };
        limiter.check_key(&token_id.to_owned()).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            ApiError::rate_limited(
                format!("token {token_id} sent more requests than its rate limit allows; retry later"),
                wait.as_secs_f64().ceil() as u64,
            )
        })
    }

    /// Counts a validation by `token_id` of the secret at `path`;
    /// `rate_limited` once that pair is over its rate.
    pub(crate) fn check_validation(&self, token_id: &str, path: &str) -> Result<(), ApiError> {
        let Some(limiter) = &self.validate else {
            return Ok(());
        };
        limiter
            .check_key(&(token_id.to_owned(), path.to_owned()))
            .map_err(|not_until| {
                let wait = not_until.wait_time_from(self.clock.now());
                ApiError::rate_limited(
                    format!("token {token_id} presented too many values for validation to secret {path}; retry later"),
                    wait.as_secs_f64().ceil() as u64,
                )
            })
    }

    /// Forgets keys whose allowance is back to full, so memory stays
    /// bounded by the recently active tokens and secrets.
    pub(crate) fn forget_idle(&self) {
        if let Some(limiter) = &self.per_token {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        if let Some(limiter) = &self.validate {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_over_its_rate_is_refused_with_a_retry_time() {
        let limits = Limits::new(1, 0);
        // A burst of twice the rate passes, the next request does not.
        assert!(limits.check_token("a").is_ok());
        assert!(limits.check_token("a").is_ok());
        let refused = limits.check_token("a").unwrap_err();
        assert_eq!(refused.reason(), rotation_core::Reason::RateLimited);
        // Another token has its own allowance.
        assert!(limits.check_token("b").is_ok());
    }

    #[test]
    fn validations_are_limited_per_token_and_secret() {
        let limits = Limits::new(0, 2);
        assert!(limits.check_validation("a", "x").is_ok());
        assert!(limits.check_validation("a", "x").is_ok());
        assert!(limits.check_validation("a", "x").is_err());
        assert!(limits.check_validation("a", "y").is_ok());
        assert!(limits.check_validation("b", "x").is_ok());
    }

    #[test]
    fn zero_turns_a_limit_off() {
        let limits = Limits::new(0, 0);
        for _ in 0..1000 {
            assert!(limits.check_token("a").is_ok());
            assert!(limits.check_validation("a", "x").is_ok());
        }
    }
}
