use duet_common::domain::User;
use duet_common::error::ApiResult;
use duet_common::http::ApiTags;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use crate::Commands;
use crate::accounts::{self, Registration};

pub struct AuthApi(pub Commands);

#[derive(Object)]
struct RegisterRequest {
    /// Login email; compared case-insensitively.
    email: String,
    /// At least 8 characters.
    password: String,
    /// Display name, 1 to 100 characters.
    name: String,
    /// Optional phone number in E.164 form.
    phone: Option<String>,
}

#[derive(Object)]
struct LoginRequest {
    email: String,
    password: String,
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

#[OpenApi(tag = "ApiTags::Auth")]
impl AuthApi {
    /// Create an account and sign in.
    #[oai(path = "/auth/register", method = "post", operation_id = "register")]
    async fn register(&self, body: Json<RegisterRequest>) -> ApiResult<RegisterResponse> {
        let Json(body) = body;
        let user = accounts::register(
            &self.0.ctx.db,
            Registration { email: body.email, password: body.password, name: body.name, phone: body.phone },
        )
        .await?;
        let token = self.0.ctx.jwt.issue(user.id)?;
        Ok(RegisterResponse::Created(Json(AuthResponse { token, user })))
    }

    /// Sign in. Wrong email and wrong password get the same 401.
    #[oai(path = "/auth/login", method = "post", operation_id = "login")]
    async fn login(&self, body: Json<LoginRequest>) -> ApiResult<LoginResponse> {
        let Json(body) = body;
        let user = accounts::login(&self.0.ctx.db, &body.email, body.password).await?;
        let token = self.0.ctx.jwt.issue(user.id)?;
        Ok(LoginResponse::Ok(Json(AuthResponse { token, user })))
    }
}
