//! Settings of attachments: the S3-compatible object store the server signs
//! upload and download URLs for, and the limits uploads must keep.
//!
//! Attachments are off when `DUET_S3_ENDPOINT` is unset: their endpoints
//! answer 503 `attachments_unavailable` and the rest of Duet runs as before.

use std::fmt;
use std::str::FromStr;

/// A secret setting: kept out of `Debug` output, so logging the settings never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the one place that signs with it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.to_owned())
    }
}

const MIB: u64 = 1024 * 1024;

#[derive(Clone, Debug, clap::Args)]
pub struct AttachmentSettings {
    /// S3-compatible endpoint the server signs for and checks uploads at, path-style
    /// (`http://127.0.0.1:9000`); attachments are off when unset.
    #[arg(long, env = "DUET_S3_ENDPOINT", value_parser = parse_endpoint)]
    pub s3_endpoint: Option<String>,

    /// The endpoint as clients reach it, in the URLs they are given; defaults to `DUET_S3_ENDPOINT`.
    #[arg(long, env = "DUET_S3_PUBLIC_ENDPOINT", value_parser = parse_endpoint)]
    pub s3_public_endpoint: Option<String>,

    /// Bucket holding every attachment, keyed `conversations/<conversationId>/<attachmentId>`.
    #[arg(long, env = "DUET_S3_BUCKET", default_value = "duet")]
    pub s3_bucket: String,

    /// Region the signatures name.
    #[arg(long, env = "DUET_S3_REGION", default_value = "us-east-1")]
    pub s3_region: String,

    /// Access key id of the credentials that sign; required with `DUET_S3_ENDPOINT`.
    #[arg(long, env = "DUET_S3_ACCESS_KEY", hide_env_values = true)]
    pub s3_access_key: Option<Secret>,

    /// Secret key of those credentials; required with `DUET_S3_ENDPOINT`.
    #[arg(long, env = "DUET_S3_SECRET_KEY", hide_env_values = true)]
    pub s3_secret_key: Option<Secret>,

    /// Lifetime of an upload or download URL, in seconds (1 to 604800, S3's limit).
    #[arg(long, env = "DUET_ATTACHMENT_URL_TTL_SECS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=604_800))]
    pub attachment_url_ttl_secs: u64,

    /// Largest image, in bytes.
    #[arg(long, env = "DUET_ATTACHMENT_MAX_IMAGE_BYTES", default_value_t = 20 * MIB)]
    pub attachment_max_image_bytes: u64,

    /// Largest video, in bytes.
    #[arg(long, env = "DUET_ATTACHMENT_MAX_VIDEO_BYTES", default_value_t = 100 * MIB)]
    pub attachment_max_video_bytes: u64,

    /// Largest audio attachment (voice note), in bytes.
    #[arg(long, env = "DUET_ATTACHMENT_MAX_AUDIO_BYTES", default_value_t = 20 * MIB)]
    pub attachment_max_audio_bytes: u64,

    /// Largest file, in bytes.
    #[arg(long, env = "DUET_ATTACHMENT_MAX_FILE_BYTES", default_value_t = 100 * MIB)]
    pub attachment_max_file_bytes: u64,

    /// Uploads a user may start per hour, across all nodes.
    #[arg(long, env = "DUET_ATTACHMENT_UPLOADS_PER_HOUR", default_value_t = 200)]
    pub attachment_uploads_per_hour: u32,
}

impl AttachmentSettings {
    /// Credentials are required once an endpoint is set.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.s3_endpoint.is_some() && (self.s3_access_key.is_none() || self.s3_secret_key.is_none()) {
            anyhow::bail!("DUET_S3_ACCESS_KEY and DUET_S3_SECRET_KEY must be set with DUET_S3_ENDPOINT");
        }
        if self.s3_bucket.is_empty() || self.s3_region.is_empty() {
            anyhow::bail!("DUET_S3_BUCKET and DUET_S3_REGION must not be empty");
        }
        Ok(())
    }
}

/// An `http` or `https` URL with a host and nothing after the path.
fn parse_endpoint(value: &str) -> Result<String, String> {
    let uri: poem::http::Uri = value.parse().map_err(|e| format!("not a URL: {e}"))?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    if !scheme_ok || uri.host().is_none() || uri.query().is_some() {
        return Err("an http(s) URL with a host and no query, such as http://127.0.0.1:9000".into());
    }
    Ok(value.trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_http_urls_with_a_host() {
        assert_eq!(parse_endpoint("http://127.0.0.1:9000/").unwrap(), "http://127.0.0.1:9000");
        assert!(parse_endpoint("https://s3.example.com/prefix").is_ok());
        for bad in ["127.0.0.1:9000", "ftp://x", "http://x/?a=1", "/path"] {
            assert!(parse_endpoint(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        assert_eq!(format!("{:?}", Some(Secret::from("hunter2"))), "Some(Secret(***))");
    }
}
