//! The object store, through presigned SigV4 URLs (rusty-s3 signs; nothing
//! here holds a connection of its own but the HTTP client).
//!
//! Clients are given URLs on the public endpoint (`DUET_S3_PUBLIC_ENDPOINT`),
//! signed for one object, one method and a short time. The server's own
//! requests (the HEAD that checks an upload, the DELETE of a refused one) go
//! to `DUET_S3_ENDPOINT`, also presigned, so one signing path serves both.
//!
//! An upload URL signs `content-type` and `content-length`: the store itself
//! refuses an upload of another type or size, so nobody can park more bytes
//! in the bucket than the server allowed. The HEAD at completion checks it
//! again, for stores that do not.

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use duet_common::error::ApiError;
use duet_common::settings::AttachmentSettings;
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};

/// How long the server waits for the store on its own requests.
const STORE_TIMEOUT: Duration = Duration::from_secs(10);

/// A URL a client may use until `expires_at`.
#[derive(Clone, Debug)]
pub struct SignedUrl {
    pub url: String,
    pub expires_at: DateTime<Utc>,
}

/// What the store says of an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    pub size: Option<u64>,
    pub content_type: Option<String>,
}

/// The bucket, as the server and as clients reach it.
#[derive(Clone, Debug)]
pub struct Storage {
    /// The endpoint the server's own requests go to.
    internal: Bucket,
    /// The endpoint in the URLs clients are given.
    public: Bucket,
    credentials: Credentials,
    ttl: Duration,
    http: reqwest::Client,
}

impl Storage {
    /// The store of `settings`, or `None` when attachments are off.
    pub fn from_settings(settings: &AttachmentSettings) -> anyhow::Result<Option<Self>> {
        let Some(endpoint) = &settings.s3_endpoint else { return Ok(None) };
        let bucket = |endpoint: &str| -> anyhow::Result<Bucket> {
            let url = endpoint.parse::<url::Url>().with_context(|| format!("DUET_S3 endpoint `{endpoint}` is not a URL"))?;
            Bucket::new(url, UrlStyle::Path, settings.s3_bucket.clone(), settings.s3_region.clone())
                .with_context(|| format!("DUET_S3 endpoint `{endpoint}` cannot address a bucket"))
        };
        let (Some(key), Some(secret)) = (&settings.s3_access_key, &settings.s3_secret_key) else {
            anyhow::bail!("DUET_S3_ACCESS_KEY and DUET_S3_SECRET_KEY must be set with DUET_S3_ENDPOINT");
        };
        Ok(Some(Storage {
            internal: bucket(endpoint)?,
            public: bucket(settings.s3_public_endpoint.as_deref().unwrap_or(endpoint))?,
            credentials: Credentials::new(key.expose(), secret.expose()),
            ttl: Duration::from_secs(settings.attachment_url_ttl_secs),
            http: reqwest::Client::builder().timeout(STORE_TIMEOUT).build().context("Failed to build the object store's HTTP client")?,
        }))
    }

    /// A PUT of exactly `size` bytes of `content_type` to `key`.
    pub fn upload_url(&self, key: &str, content_type: &str, size: i64) -> SignedUrl {
        let mut action = self.public.put_object(Some(&self.credentials), key);
        let length = size.to_string();
        action.headers_mut().insert("content-length", length.as_str());
        action.headers_mut().insert("content-type", content_type);
        self.signed(&action)
    }

    /// A GET of `key`.
    pub fn download_url(&self, key: &str) -> SignedUrl {
        self.signed(&self.public.get_object(Some(&self.credentials), key))
    }

    /// The object's size and content type; `None` if there is no such object.
    pub async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, ApiError> {
        let url = self.internal.head_object(Some(&self.credentials), key).sign(self.ttl);
        let response = self.http.head(url).send().await.map_err(unreachable)?;
        match response.status() {
            reqwest::StatusCode::NOT_FOUND => Ok(None),
            status if status.is_success() => Ok(Some(ObjectInfo {
                size: header(&response, reqwest::header::CONTENT_LENGTH).and_then(|v| v.parse().ok()),
                content_type: header(&response, reqwest::header::CONTENT_TYPE).map(str::to_owned),
            })),
            status => Err(ApiError::Internal(anyhow::anyhow!("the object store answered a HEAD with {status}"))),
        }
    }

    /// Deletes `key`; deleting a missing object succeeds.
    pub async fn delete(&self, key: &str) -> Result<(), ApiError> {
        let url = self.internal.delete_object(Some(&self.credentials), key).sign(self.ttl);
        let response = self.http.delete(url).send().await.map_err(unreachable)?;
        match response.status() {
            status if status.is_success() || status == reqwest::StatusCode::NOT_FOUND => Ok(()),
            status => Err(ApiError::Internal(anyhow::anyhow!("the object store answered a DELETE with {status}"))),
        }
    }

    /// Signs `action` for the configured lifetime. The promised expiry is
    /// taken before signing, at whole seconds as the signature counts, so
    /// the URL works at least until then.
    fn signed<'a>(&self, action: &impl S3Action<'a>) -> SignedUrl {
        let now = Utc::now().timestamp();
        let url = action.sign(self.ttl).to_string();
        let ttl = chrono::Duration::seconds(self.ttl.as_secs() as i64);
        let expires_at = DateTime::from_timestamp(now, 0).expect("now is representable") + ttl;
        SignedUrl { url, expires_at }
    }
}

fn header(response: &reqwest::Response, name: reqwest::header::HeaderName) -> Option<&str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The store did not answer: nothing was decided, the client may retry.
fn unreachable(e: reqwest::Error) -> ApiError {
    tracing::warn!(error = %e, "the object store is unreachable");
    ApiError::Unavailable("object storage is unavailable; try again".into())
}
