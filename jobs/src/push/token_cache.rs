//! The one bearer token a push provider's requests carry (FCM's OAuth
//! access token, APNs' provider JWT), reused until it is due for renewal
//! and renewed by one caller at a time.

use std::future::Future;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use super::provider::SendError;

#[derive(Default)]
pub struct TokenCache {
    /// The token and when to stop using it.
    token: Mutex<Option<(String, Instant)>>,
}

impl TokenCache {
    /// The cached token, or a new one from `renew`, which says how long the
    /// new token may be used. Callers meanwhile wait for it, so a provider
    /// sees one renewal, not one per request.
    pub async fn get<F, Fut>(&self, renew: F) -> Result<String, SendError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(String, Duration), SendError>>,
    {
        let mut cached = self.token.lock().await;
        if let Some((token, until)) = cached.as_ref()
            && Instant::now() < *until
        {
            return Ok(token.clone());
        }
        let (token, lifetime) = renew().await?;
        *cached = Some((token.clone(), Instant::now() + lifetime));
        Ok(token)
    }

    /// Drops the token (the provider refused it): the next request renews.
    pub async fn forget(&self) {
        *self.token.lock().await = None;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test]
    async fn a_token_is_reused_until_it_lapses_or_is_forgotten() {
        let cache = TokenCache::default();
        let renewals = AtomicU32::new(0);
        let renew = |lifetime| {
            let n = renewals.fetch_add(1, Ordering::SeqCst) + 1;
            async move { Ok((format!("t{n}"), lifetime)) }
        };
        assert_eq!(cache.get(|| renew(Duration::from_secs(60))).await.unwrap(), "t1");
        assert_eq!(cache.get(|| renew(Duration::from_secs(60))).await.unwrap(), "t1");
        cache.forget().await;
        assert_eq!(cache.get(|| renew(Duration::ZERO)).await.unwrap(), "t2");
        assert_eq!(cache.get(|| renew(Duration::from_secs(60))).await.unwrap(), "t3", "a lapsed token is renewed");
        let failed = cache.get(|| async { Err(SendError::Permanent("no".into())) }).await;
        assert!(failed.is_ok(), "a good token is not renewed at all");
    }
}
