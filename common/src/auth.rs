//! Access tokens (JWT, HS256, algorithm pinned, keys chosen by `kid`), the
//! one authentication check of REST and the WebSocket, and password hashing
//! (argon2id).

use crate::ids::{AuthSessionId, UserId};
use std::collections::HashMap;
use std::sync::LazyLock;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng};
use chrono::Utc;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use poem::Request;
use poem_openapi::{SecurityScheme, auth::Bearer};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::AppContext;
use crate::error::{ApiError, ErrorCode, ErrorResponse};
use crate::settings::Settings;

/// The claims Duet puts in, and requires of, every access token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: UserId,
    /// The sign-in (refresh-token family) the token belongs to: revoking it ends the token.
    pub sid: AuthSessionId,
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    /// Token id, for audit logs.
    pub jti: Uuid,
}

/// Signs access tokens with the newest key and verifies them with any
/// configured key, chosen by the token's `kid` (`Settings::signing_keys`).
pub struct JwtKeys {
    /// The key id written in every new token's header, and its key.
    signing_kid: String,
    encoding: EncodingKey,
    /// Every configured key by id: tokens signed before a rotation stay valid while their key is listed.
    decoding: HashMap<String, DecodingKey>,
    validation: Validation,
    issuer: String,
    audience: String,
    ttl_secs: i64,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKeys")
            .field("signing_kid", &self.signing_kid)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

/// A signed access token and when it expires.
#[derive(Clone, Debug)]
pub struct AccessToken {
    pub token: String,
    /// Seconds from now until `exp`.
    pub expires_in: i64,
}

impl JwtKeys {
    pub fn new(settings: &Settings) -> anyhow::Result<Self> {
        let keys = settings.signing_keys()?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[&settings.jwt_issuer]);
        validation.set_audience(&[&settings.jwt_audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = 5;
        let (signing_kid, signing_secret) = keys.last().cloned().ok_or_else(|| anyhow::anyhow!("no signing key"))?;
        let mut decoding = HashMap::new();
        for (kid, secret) in &keys {
            decoding.insert(kid.clone(), DecodingKey::from_secret(secret.as_bytes())?);
        }
        Ok(JwtKeys {
            signing_kid,
            encoding: EncodingKey::from_secret(signing_secret.as_bytes())?,
            decoding,
            validation,
            issuer: settings.jwt_issuer.clone(),
            audience: settings.jwt_audience.clone(),
            ttl_secs: i64::try_from(settings.jwt_ttl_secs)?,
        })
    }

    /// A fresh access token for `user_id` in the sign-in `session`, signed with the newest key.
    pub fn issue(&self, user_id: UserId, session: AuthSessionId) -> Result<AccessToken, ApiError> {
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub: user_id,
            sid: session,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            iat: now,
            nbf: now,
            exp: now + self.ttl_secs,
            jti: Uuid::new_v4(),
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.signing_kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &self.encoding)
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("signing a token: {e}")))?;
        Ok(AccessToken { token, expires_in: self.ttl_secs })
    }

    /// The claims of a validly signed, current token. A token signed with a
    /// configured key that has only expired gets `token_expired` (refresh
    /// it); any other is refused alike, including one without a `kid` or
    /// with a `kid` no longer configured.
    pub fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        let refused = |why: &dyn std::fmt::Display| {
            tracing::debug!(error = %why, "token refused");
            ApiError::Unauthorized("invalid or expired token".into())
        };
        let header = jsonwebtoken::decode_header(token).map_err(|e| refused(&e))?;
        let Some(key) = header.kid.as_deref().and_then(|kid| self.decoding.get(kid)) else {
            return Err(refused(&"no kid, or a kid that is not configured"));
        };
        jsonwebtoken::decode::<Claims>(token, key, &self.validation).map(|data| data.claims).map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => ApiError::new(ErrorCode::TokenExpired, "the access token has expired; refresh it"),
            _ => refused(&e),
        })
    }
}

/// The checks every authenticated request and WebSocket passes, in one
/// place: a valid token (`JwtKeys::verify`) of a sign-in that is neither
/// revoked nor expired, of an account that exists (`SessionCheck`).
pub async fn authenticate(ctx: &AppContext, token: &str) -> Result<Claims, ApiError> {
    let claims = ctx.jwt.verify(token)?;
    ctx.session_check.check(&claims).await?;
    Ok(claims)
}

/// The authenticated caller of an HTTP operation.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT", checker = "check_bearer")]
pub struct BearerAuth(pub Claims);

impl BearerAuth {
    pub fn user_id(&self) -> UserId {
        self.0.sub
    }

    /// The sign-in this request's token belongs to.
    pub fn session_id(&self) -> AuthSessionId {
        self.0.sid
    }
}

async fn check_bearer(req: &Request, bearer: Bearer) -> poem::Result<Claims> {
    let ctx = req
        .data::<AppContext>()
        .ok_or_else(|| poem::Error::from(ErrorResponse::from(ApiError::Internal(anyhow::anyhow!("no AppContext in request data")))))?;
    authenticate(ctx, &bearer.token).await.map_err(|e| ErrorResponse::from(e).into())
}

/// Each argon2 hash takes 19 MiB and a core for tens of milliseconds: at most
/// this many run at once, so a burst of sign-ups or logins queues instead of
/// exhausting memory (256 at once would need almost 5 GiB).
static HASHING: LazyLock<tokio::sync::Semaphore> = LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    tokio::sync::Semaphore::new(cores * 2)
});

/// Hashes a password with argon2id and a random salt (on a blocking thread).
pub async fn hash_password(password: String) -> Result<String, ApiError> {
    let _permit = HASHING.acquire().await.map_err(|e| ApiError::Internal(e.into()))?;
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("hashing a password: {e}")))
    })
    .await
    .map_err(|e| ApiError::Internal(e.into()))?
}

/// A hash of a password no one has, verified when the email is unknown so
/// that a login takes the same time whether or not the account exists.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default().hash_password(b"duet-dummy-password", &salt).expect("hashing a constant").to_string()
});

/// Whether `password` matches `hash`; with no hash, spends the same time and says no.
pub async fn verify_password(password: String, hash: Option<String>) -> Result<bool, ApiError> {
    let _permit = HASHING.acquire().await.map_err(|e| ApiError::Internal(e.into()))?;
    tokio::task::spawn_blocking(move || {
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| DUMMY_HASH.clone());
        let parsed = PasswordHash::new(&hash).map_err(|e| ApiError::Internal(anyhow::anyhow!("stored hash: {e}")))?;
        Ok(Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok() && known)
    })
    .await
    .map_err(|e| ApiError::Internal(e.into()))?
}
