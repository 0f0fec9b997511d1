use duet_common::client_ip::ClientIp;
use duet_common::domain::User;
use duet_common::error::{ApiResult, ErrorCode};
use duet_common::http::ApiTags;
use duet_common::json_string::JsonString;
use poem::Request;
use poem::http::header;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use crate::Commands;
use crate::accounts::{self, Registration};
use crate::sessions::{self, Issued};

pub struct AuthApi(pub Commands);

#[derive(Object)]
struct RegisterRequest {
    /// Login email; compared case-insensitively.
    #[oai(validator(min_length = 3, max_length = 254))]
    email: JsonString,
    /// 8 to 256 characters, hard to guess (a zxcvbn score of 3 or more: a few
    /// unrelated words, not a name, a date or a keyboard pattern).
    #[oai(validator(min_length = 8, max_length = 256))]
    password: JsonString,
    /// Display name, 1 to 100 characters (trimmed).
    #[oai(validator(min_length = 1, max_length = 100))]
    name: JsonString,
    /// Phone number in E.164 form, e.g. `+14155550123`.
    #[oai(validator(pattern = r"^\+[1-9][0-9]{7,14}$"))]
    phone: Option<JsonString>,
}

#[derive(Object)]
struct LoginRequest {
    #[oai(validator(min_length = 1, max_length = 254))]
    email: JsonString,
    #[oai(validator(min_length = 1, max_length = 1024))]
    password: JsonString,
}

/// A signed-in caller's tokens (register, login, refresh, password change).
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub(super) struct AuthResponse {
    /// Bearer access token (JWT), short-lived: refresh it before `expiresIn` runs out.
    pub token: String,
    /// Seconds until `token` expires.
    pub expires_in: i64,
    /// Opaque refresh token for `POST /auth/refresh`; each refresh spends it and returns a new one.
    pub refresh_token: String,
    /// Seconds until `refreshToken` expires if unused.
    pub refresh_expires_in: i64,
    pub user: User,
}

impl AuthResponse {
    pub(super) fn new(issued: Issued, user: User) -> Self {
        AuthResponse {
            token: issued.access.token,
            expires_in: issued.access.expires_in,
            refresh_token: issued.refresh_token,
            refresh_expires_in: issued.refresh_expires_in,
            user,
        }
    }
}

/// The client's User-Agent, kept as the sign-in's device label.
pub(super) fn user_agent(req: &Request) -> Option<&str> {
    req.headers().get(header::USER_AGENT).and_then(|v| v.to_str().ok())
}

#[derive(ApiResponse)]
enum RegisterResponse {
    /// The account was created.
    #[oai(status = 201)]
    Created(Json<AuthResponse>),
}

#[derive(ApiResponse)]
enum LoginResponse {
    #[oai(status = 200)]
    Ok(Json<AuthResponse>),
}

/// The refusals each operation here can answer, by operation id (for the API document).
pub const ERRORS: &[(&str, &[ErrorCode])] = &[
    (
        "register",
        &[
            ErrorCode::InvalidEmail,
            ErrorCode::PasswordTooShort,
            ErrorCode::PasswordTooLong,
            ErrorCode::PasswordTooWeak,
            ErrorCode::InvalidPassword,
            ErrorCode::InvalidName,
            ErrorCode::InvalidPhone,
            ErrorCode::EmailTaken,
            ErrorCode::PhoneTaken,
            ErrorCode::RateLimited,
        ],
    ),
    ("login", &[ErrorCode::Unauthorized, ErrorCode::InvalidEmail, ErrorCode::InvalidPassword, ErrorCode::RateLimited]),
];

#[OpenApi(tag = "ApiTags::Auth")]
impl AuthApi {
    /// Create an account and sign in: an access token and a refresh token. Limited per client IP.
    #[oai(path = "/auth/register", method = "post", operation_id = "register")]
    async fn register(&self, req: &Request, body: Json<RegisterRequest>, ip: ClientIp) -> ApiResult<RegisterResponse> {
        let Json(body) = body;
        self.0.guard.registration(&self.0.ctx, ip.0).await?;
        let user = accounts::register(
            &self.0.ctx.db,
            Registration {
                email: body.email.into_inner(),
                password: body.password.into_inner(),
                name: body.name.into_inner(),
                phone: body.phone.map(JsonString::into_inner),
            },
        )
        .await?;
        let issued = sessions::start(&self.0.ctx, user.id, user_agent(req)).await?;
        Ok(RegisterResponse::Created(Json(AuthResponse::new(issued, user))))
    }

    /// Sign in: an access token and a refresh token. Wrong email and wrong
    /// password get the same 401. Attempts are limited per client IP and,
    /// with growing delays, per account (429).
    #[oai(path = "/auth/login", method = "post", operation_id = "login")]
    async fn login(&self, req: &Request, body: Json<LoginRequest>, ip: ClientIp) -> ApiResult<LoginResponse> {
        let Json(body) = body;
        self.0.guard.login_attempt(&self.0.ctx, &body.email, ip.0).await?;
        let user = accounts::login(&self.0.ctx.db, &body.email, body.password.into_inner()).await?;
        self.0.guard.login_succeeded(&self.0.ctx, &body.email, ip.0).await;
        let issued = sessions::start(&self.0.ctx, user.id, user_agent(req)).await?;
        Ok(LoginResponse::Ok(Json(AuthResponse::new(issued, user))))
    }
}
