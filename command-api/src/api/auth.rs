use duet_common::client_ip::ClientIp;
use duet_common::domain::User;
use duet_common::error::{ApiResult, ErrorCode};
use duet_common::http::ApiTags;
use duet_common::json_string::JsonString;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use crate::Commands;
use crate::accounts::{self, Registration};

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

#[derive(Object)]
struct AuthResponse {
    /// Bearer access token (JWT).
    token: String,
    user: User,
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
    /// Create an account and sign in. Limited per client IP.
    #[oai(path = "/auth/register", method = "post", operation_id = "register")]
    async fn register(&self, body: Json<RegisterRequest>, ip: ClientIp) -> ApiResult<RegisterResponse> {
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
        let token = self.0.ctx.jwt.issue(user.id)?;
        Ok(RegisterResponse::Created(Json(AuthResponse { token, user })))
    }

    /// Sign in. Wrong email and wrong password get the same 401. Attempts are
    /// limited per client IP and, with growing delays, per account (429).
    #[oai(path = "/auth/login", method = "post", operation_id = "login")]
    async fn login(&self, body: Json<LoginRequest>, ip: ClientIp) -> ApiResult<LoginResponse> {
        let Json(body) = body;
        self.0.guard.login_attempt(&self.0.ctx, &body.email, ip.0).await?;
        let user = accounts::login(&self.0.ctx.db, &body.email, body.password.into_inner()).await?;
        self.0.guard.login_succeeded(&self.0.ctx, &body.email, ip.0).await;
        let token = self.0.ctx.jwt.issue(user.id)?;
        Ok(LoginResponse::Ok(Json(AuthResponse { token, user })))
    }
}
