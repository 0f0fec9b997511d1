//! Apple Push Notification service, token-based auth over HTTP/2.
//!
//! The provider token is an ES256 JWT (`kid` = key id, `iss` = team id,
//! `iat`). Apple refuses tokens older than an hour and throttles ones renewed
//! more often than every 20 minutes, so one token is reused for 40 minutes.

use std::time::Duration;

use anyhow::Context;
use duet_common::Settings;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::provider::{Notification, SendError, retry_after, unix_now};
use super::token_cache::TokenCache;

/// Inside Apple's window of 20 to 60 minutes.
const TOKEN_LIFETIME: Duration = Duration::from_secs(40 * 60);

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    iat: u64,
}

#[derive(Deserialize)]
struct ErrorBody {
    reason: String,
}

pub struct Apns {
    http: reqwest::Client,
    key: EncodingKey,
    key_id: String,
    team_id: String,
    topic: String,
    base: String,
    /// The provider token, renewed every `TOKEN_LIFETIME`.
    token: TokenCache,
}

impl Apns {
    /// APNs from settings; `None` (logged once) when no key is configured.
    /// A key without its id, team or topic is a configuration error.
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Option<Self>> {
        let Some(path) = &settings.apns_key else {
            tracing::info!("APNs push is off: DUET_APNS_KEY is not set");
            return Ok(None);
        };
        let pem = std::fs::read(path).with_context(|| format!("Failed to read DUET_APNS_KEY ({})", path.display()))?;
        let key = EncodingKey::from_ec_pem(&pem).context("DUET_APNS_KEY is not a PKCS#8 P-256 (.p8) key")?;
        let need =
            |value: &Option<String>, name: &str| value.clone().with_context(|| format!("DUET_APNS_KEY is set, so {name} must be too"));
        let http = reqwest::Client::builder()
            // APNs speaks only HTTP/2; over TLS ALPN would agree on it anyway,
            // and a plain-http base (tests) needs prior knowledge.
            .http2_prior_knowledge()
            .timeout(Duration::from_secs(settings.push_timeout_secs))
            .build()
            .context("Failed to build the APNs HTTP client")?;
        tracing::info!("APNs push is on");
        Ok(Some(Apns {
            http,
            key,
            key_id: need(&settings.apns_key_id, "DUET_APNS_KEY_ID")?,
            team_id: need(&settings.apns_team_id, "DUET_APNS_TEAM_ID")?,
            topic: need(&settings.apns_topic, "DUET_APNS_TOPIC")?,
            base: settings.apns_base_url.trim_end_matches('/').to_owned(),
            token: TokenCache::default(),
        }))
    }

    async fn provider_token(&self) -> Result<String, SendError> {
        self.token
            .get(|| async {
                let mut header = Header::new(Algorithm::ES256);
                header.kid = Some(self.key_id.clone());
                let token = jsonwebtoken::encode(&header, &Claims { iss: &self.team_id, iat: unix_now() }, &self.key)
                    .map_err(|e| SendError::Permanent(format!("signing the provider token: {e}")))?;
                Ok((token, TOKEN_LIFETIME))
            })
            .await
    }

    pub async fn send(&self, device_token: &str, n: &Notification) -> Result<(), SendError> {
        let jwt = self.provider_token().await?;
        let (push_type, priority) = if n.silent { ("background", "5") } else { ("alert", "10") };
        let response = self
            .http
            .post(format!("{}/3/device/{device_token}", self.base))
            .header("authorization", format!("bearer {jwt}"))
            .header("apns-topic", &self.topic)
            .header("apns-push-type", push_type)
            .header("apns-priority", priority)
            .header("apns-collapse-id", &n.collapse_id)
            .json(&payload(n))
            .send()
            .await
            .map_err(SendError::from_transport)?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let wait = retry_after(response.headers());
        let reason = response.json::<ErrorBody>().await.map(|b| b.reason).unwrap_or_default();
        let text = format!("APNs {status} {reason}");
        if matches!(reason.as_str(), "ExpiredProviderToken" | "InvalidProviderToken") {
            self.token.forget().await;
        }
        Err(match (status.as_u16(), reason.as_str()) {
            (410, _) | (_, "Unregistered" | "BadDeviceToken" | "DeviceTokenNotForTopic") => SendError::BadToken(text),
            (403, "ExpiredProviderToken") | (429, _) | (500..=599, _) => SendError::Retry { retry_after: wait, error: text },
            _ => SendError::Permanent(text),
        })
    }
}

/// The JSON payload: `aps` plus our own keys.
fn payload(n: &Notification) -> Value {
    if n.silent {
        return json!({"aps": {"content-available": 1, "badge": n.badge}, "type": "badge", "conversationId": n.conversation_id});
    }
    json!({
        "aps": {"alert": {"title": n.title, "body": n.body}, "badge": n.badge, "sound": "default", "thread-id": n.conversation_id},
        "type": "message",
        "conversationId": n.conversation_id,
        "seq": n.seq,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEST_KEY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/push/TEST-ONLY-apns-key.p8");

    #[test]
    fn apns_is_off_without_a_key_and_refuses_a_key_without_its_ids() {
        let mut settings = Settings::from_env().unwrap();
        settings.apns_key = None;
        assert!(Apns::from_settings(&settings).unwrap().is_none());
        settings.apns_key = Some(TEST_KEY.into());
        settings.apns_key_id = Some("ABC123DEFG".into());
        settings.apns_team_id = None;
        let error = Apns::from_settings(&settings).err().expect("refused").to_string();
        assert!(error.contains("DUET_APNS_TEAM_ID"), "{error}");
        settings.apns_team_id = Some("TEAM123456".into());
        settings.apns_topic = Some("app.duet.test".into());
        assert!(Apns::from_settings(&settings).unwrap().is_some());
    }
}
