//! Firebase Cloud Messaging, HTTP v1 API.
//!
//! Auth is OAuth2 with a service-account key: a JWT signed with the key
//! (RS256) is exchanged at the key's `token_uri` for an access token, as
//! Google's own libraries do, and the token is cached until shortly before
//! it expires.

use std::time::Duration;

use anyhow::Context;
use duet_common::Settings;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::provider::{Notification, SendError, retry_after, unix_now};
use super::token_cache::TokenCache;

const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
/// Refresh this long before the token expires.
const EXPIRY_MARGIN: Duration = Duration::from_secs(60);

#[derive(Deserialize)]
struct ServiceAccount {
    client_email: String,
    private_key: String,
    private_key_id: Option<String>,
    token_uri: String,
    project_id: Option<String>,
}

#[derive(Serialize)]
struct GrantClaims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: u64,
}

pub struct Fcm {
    http: reqwest::Client,
    key: EncodingKey,
    key_id: Option<String>,
    client_email: String,
    token_uri: String,
    send_url: String,
    /// The OAuth access token, renewed shortly before it expires.
    token: TokenCache,
}

impl Fcm {
    /// FCM from settings; `None` (logged once) when no key is configured.
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Option<Self>> {
        let Some(path) = &settings.fcm_credentials else {
            tracing::info!("FCM push is off: DUET_FCM_CREDENTIALS is not set");
            return Ok(None);
        };
        let text = std::fs::read_to_string(path).with_context(|| format!("Failed to read DUET_FCM_CREDENTIALS ({})", path.display()))?;
        let account: ServiceAccount = serde_json::from_str(&text).context("DUET_FCM_CREDENTIALS is not a service-account JSON key")?;
        let key =
            EncodingKey::from_rsa_pem(account.private_key.as_bytes()).context("The service-account private key is not an RSA PEM key")?;
        let project = settings
            .fcm_project_id
            .clone()
            .or(account.project_id)
            .context("DUET_FCM_PROJECT_ID is not set and the key names no project_id")?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(settings.push_timeout_secs))
            .build()
            .context("Failed to build the FCM HTTP client")?;
        let base = settings.fcm_base_url.trim_end_matches('/');
        tracing::info!(project = %project, "FCM push is on");
        Ok(Some(Fcm {
            http,
            key,
            key_id: account.private_key_id,
            client_email: account.client_email,
            token_uri: account.token_uri,
            send_url: format!("{base}/v1/projects/{project}/messages:send"),
            token: TokenCache::default(),
        }))
    }

    /// A valid access token, fetched when the cached one is (nearly) expired.
    async fn access_token(&self) -> Result<String, SendError> {
        self.token.get(|| self.fetch_access_token()).await
    }

    /// A new access token from the token endpoint, and how long to use it.
    async fn fetch_access_token(&self) -> Result<(String, Duration), SendError> {
        let iat = unix_now();
        let claims = GrantClaims { iss: &self.client_email, scope: SCOPE, aud: &self.token_uri, iat, exp: iat + 3600 };
        let mut header = Header::new(Algorithm::RS256);
        header.kid = self.key_id.clone();
        let assertion =
            jsonwebtoken::encode(&header, &claims, &self.key).map_err(|e| SendError::Permanent(format!("signing the grant: {e}")))?;
        // A JWT is base64url and dots: nothing to percent-encode.
        let body = format!("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={assertion}");
        let response = self
            .http
            .post(&self.token_uri)
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| SendError::Retry { retry_after: None, error: format!("token endpoint: {e}") })?;
        let status = response.status();
        if !status.is_success() {
            let wait = retry_after(response.headers());
            let text = response.text().await.unwrap_or_default();
            let error = format!("token endpoint answered {status}: {text}");
            return Err(if status.is_server_error() || status.as_u16() == 429 {
                SendError::Retry { retry_after: wait, error }
            } else {
                SendError::Permanent(error)
            });
        }
        let token: TokenResponse =
            response.json().await.map_err(|e| SendError::Retry { retry_after: None, error: format!("token response: {e}") })?;
        let lifetime = Duration::from_secs(token.expires_in).saturating_sub(EXPIRY_MARGIN);
        Ok((token.access_token, lifetime))
    }

    pub async fn send(&self, device_token: &str, n: &Notification) -> Result<(), SendError> {
        let access = self.access_token().await?;
        let response = self
            .http
            .post(&self.send_url)
            .bearer_auth(access)
            .json(&message(device_token, n))
            .send()
            .await
            .map_err(SendError::from_transport)?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let wait = retry_after(response.headers());
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let error = &body["error"];
        let code = error["details"]
            .as_array()
            .and_then(|d| d.iter().find_map(|d| d["errorCode"].as_str()))
            .or(error["status"].as_str())
            .unwrap_or("")
            .to_owned();
        let text = format!("FCM {status} {code}: {}", error["message"].as_str().unwrap_or(""));
        if status.as_u16() == 401 {
            // The access token was refused: drop it so the retry fetches a new one.
            self.token.forget().await;
        }
        Err(match (status.as_u16(), code.as_str()) {
            (_, "UNREGISTERED") | (404, _) | (_, "SENDER_ID_MISMATCH") => SendError::BadToken(text),
            (400, "INVALID_ARGUMENT") if error["message"].as_str().is_some_and(|m| m.contains("registration token")) => {
                SendError::BadToken(text)
            }
            (401 | 429, _) | (500..=599, _) => SendError::Retry { retry_after: wait, error: text },
            _ => SendError::Permanent(text),
        })
    }
}

/// The HTTP v1 `messages:send` body. FCM `data` values must be strings.
fn message(token: &str, n: &Notification) -> Value {
    let mut data = json!({
        "conversationId": n.conversation_id.to_string(),
        "badge": n.badge.to_string(),
    });
    if n.silent {
        data["type"] = json!("badge");
        return json!({"message": {"token": token, "data": data, "android": {"priority": "NORMAL"}}});
    }
    data["type"] = json!("message");
    data["seq"] = json!(n.seq.to_string());
    json!({"message": {
        "token": token,
        "notification": {"title": n.title, "body": n.body},
        "data": data,
        "android": {
            "priority": "HIGH",
            "collapse_key": n.collapse_id,
            "notification": {"tag": n.collapse_id, "notification_count": n.badge},
        },
    }})
}
