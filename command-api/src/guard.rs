//! Brute-force and sign-up limits on the account endpoints.
//!
//! Login follows OWASP's authentication guidance: slow guessing down
//! without handing an attacker a way to lock the real user out.
//!
//! - Per client IP, every attempt on any account counts
//!   (`DUET_LOGIN_PER_IP_PER_MIN`): one address cannot stuff credentials.
//! - Per account and IP, `DUET_LOGIN_FREE_ATTEMPTS` attempts, then delays
//!   of 1 s, 2 s, 4 s … up to `DUET_LOGIN_BACKOFF_CAP_SECS`: the guesser is
//!   slowed; only someone behind the same address shares the delay.
//! - Per account from every IP together, a higher allowance
//!   (`DUET_LOGIN_ACCOUNT_FREE_ATTEMPTS`) and a short cap
//!   (`DUET_LOGIN_ACCOUNT_BACKOFF_CAP_SECS`): a botnet gets a few guesses a
//!   minute, and the real user waits at most the cap; not even that from an
//!   address they logged in from before (remembered for 30 days).
//!
//! A success clears the account's counts, so the limits weigh on failures.
//! Registration is limited per client IP (`DUET_REGISTER_PER_IP_PER_HOUR`).
//! Refusals are 429 `rate_limited` with `Retry-After`.

use std::net::IpAddr;
use std::time::Duration;

use duet_common::domain::canonical_email;
use duet_common::log_throttle::LogThrottle;
use duet_common::ratelimit::Decision;
use duet_common::throttle::{Backoff, Window};
use duet_common::{ApiError, AppContext, Settings};
use fred::prelude::*;

/// How long an account remembers an address it logged in from.
pub const KNOWN_ADDRESS_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// The account endpoints' limits.
#[derive(Clone, Debug)]
pub struct Guard {
    login_ip: Window,
    pair: Backoff,
    account: Backoff,
    register: Window,
}

impl Guard {
    pub fn new(settings: &Settings) -> Self {
        Guard {
            login_ip: Window::new(settings.login_per_ip_per_min, Duration::from_secs(60)),
            pair: Backoff::new(settings.login_free_attempts, Duration::from_secs(settings.login_backoff_cap_secs)),
            account: Backoff::new(settings.login_account_free_attempts, Duration::from_secs(settings.login_account_backoff_cap_secs)),
            register: Window::new(settings.register_per_ip_per_hour, Duration::from_secs(3600)),
        }
    }

    /// Counts a login attempt, or refuses it (429) while a limit is spent.
    pub async fn login_attempt(&self, ctx: &AppContext, email: &str, ip: Option<IpAddr>) -> Result<(), ApiError> {
        let (redis, keys) = (&ctx.fast_redis, &ctx.keys);
        let email = canonical_email(email);
        if let Some(ip) = ip {
            refuse_if_limited(self.login_ip.check(redis, &keys.login_ip(ip)).await)?;
            refuse_if_limited(self.pair.attempt(redis, &keys.login_pair(&email, ip)).await)?;
            if known_address(ctx, &email, ip).await {
                return Ok(());
            }
        }
        refuse_if_limited(self.account.attempt(redis, &keys.login_account(&email)).await)
    }

    /// After a successful login: the counts are cleared and the address remembered.
    pub async fn login_succeeded(&self, ctx: &AppContext, email: &str, ip: Option<IpAddr>) {
        let (redis, keys) = (&ctx.fast_redis, &ctx.keys);
        let email = canonical_email(email);
        self.account.clear(redis, &keys.login_account(&email)).await;
        let Some(ip) = ip else { return };
        self.pair.clear(redis, &keys.login_pair(&email, ip)).await;
        let (key, ttl) = (keys.login_known(&email, ip), Expiration::EX(KNOWN_ADDRESS_TTL.as_secs() as i64));
        if let Err(e) = redis.call(|client| async move { client.set::<(), _, _>(key, 1, Some(ttl), None, false).await }).await {
            static FAILED: LogThrottle = LogThrottle::every_10s();
            if let Some(suppressed) = FAILED.check() {
                tracing::warn!(error = %e, suppressed, "could not remember a login address");
            }
        }
    }

    /// Counts a registration from `ip`, or refuses it (429).
    pub async fn registration(&self, ctx: &AppContext, ip: Option<IpAddr>) -> Result<(), ApiError> {
        match ip {
            Some(ip) => refuse_if_limited(self.register.check(&ctx.fast_redis, &ctx.keys.register_ip(ip)).await),
            None => Ok(()),
        }
    }
}

async fn known_address(ctx: &AppContext, email: &str, ip: IpAddr) -> bool {
    let key = ctx.keys.login_known(email, ip);
    ctx.fast_redis.call(|client| async move { client.exists::<u32, _>(key).await }).await.unwrap_or(0) > 0
}

fn refuse_if_limited(decision: Decision) -> Result<(), ApiError> {
    match decision {
        Decision::Limited { retry_after_ms } => Err(ApiError::RateLimited { retry_after_ms }),
        Decision::Allowed | Decision::AllowedLocally => Ok(()),
    }
}
