//! When to try a failed push again: exponential backoff with jitter, never
//! sooner than the provider's `Retry-After`.

use std::time::Duration;

use rand::Rng;

/// Longest wait between two attempts.
pub const MAX_DELAY: Duration = Duration::from_secs(600);

/// The wait before attempt `next` (2, 3, …): `base · 2^(next-2)`, capped,
/// then "equal jitter" (a random point in its upper half) so a provider
/// outage does not bring every job back at the same instant.
pub fn delay(base: Duration, next: u32, retry_after: Option<Duration>) -> Duration {
    let exp = base.saturating_mul(1u32 << next.saturating_sub(2).min(16)).min(MAX_DELAY);
    let half = exp / 2;
    let jittered = half + rand::rng().random_range(Duration::ZERO..=half);
    jittered.max(retry_after.unwrap_or(Duration::ZERO).min(MAX_DELAY))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_stay_within_jitter_and_honour_retry_after() {
        let base = Duration::from_secs(2);
        for _ in 0..100 {
            let d2 = delay(base, 2, None);
            assert!(d2 >= Duration::from_secs(1) && d2 <= Duration::from_secs(2), "{d2:?}");
            let d4 = delay(base, 4, None);
            assert!(d4 >= Duration::from_secs(4) && d4 <= Duration::from_secs(8), "{d4:?}");
            assert!(delay(base, 40, None) <= MAX_DELAY);
            assert!(delay(base, 2, Some(Duration::from_secs(30))) >= Duration::from_secs(30));
        }
    }
}
