//! Sign-ins after the first: refresh, logout, log out everywhere, password change.

use duet_common::auth::BearerAuth;
use duet_common::domain::User;
use duet_common::error::{ApiResult, ErrorCode};
use duet_common::http::ApiTags;
use duet_common::json_string::JsonString;
use poem::Request;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::auth::{AuthResponse, user_agent};
use crate::Commands;
use crate::sessions;

pub struct SessionsApi(pub Commands);

#[derive(Object)]
#[oai(rename_all = "camelCase")]
struct RefreshRequest {
    /// The latest refresh token of the session (each one works once).
    #[oai(validator(min_length = 1, max_length = 256))]
    refresh_token: JsonString,
}

#[derive(Object)]
#[oai(rename_all = "camelCase")]
struct ChangePasswordRequest {
    #[oai(validator(min_length = 1, max_length = 1024))]
    current_password: JsonString,
    /// 8 to 256 characters, under the rules of registration.
    #[oai(validator(min_length = 8, max_length = 256))]
    new_password: JsonString,
}

#[derive(ApiResponse)]
enum RefreshResponse {
    /// A new access token and a new refresh token; the one sent is spent.
    #[oai(status = 200)]
    Ok(Json<AuthResponse>),
}

#[derive(ApiResponse)]
enum LogoutResponse {
    /// The session (or every session) is ended: its tokens are refused and its WebSockets closed (4401).
    #[oai(status = 204)]
    Ended,
}

#[derive(ApiResponse)]
enum ChangePasswordResponse {
    /// The password is changed, every session ended, and a new one started for the caller.
    #[oai(status = 200)]
    Ok(Json<AuthResponse>),
}

/// The refusals each operation here can answer, by operation id (for the API document).
pub const ERRORS: &[(&str, &[ErrorCode])] = &[
    ("refresh", &[ErrorCode::InvalidRefreshToken, ErrorCode::RefreshTokenReused, ErrorCode::SessionRevoked]),
    ("logout", &[]),
    ("logoutAll", &[]),
    ("changePassword", &[ErrorCode::PasswordTooShort, ErrorCode::PasswordTooLong, ErrorCode::WrongPassword]),
];

#[OpenApi(tag = "ApiTags::Auth")]
impl SessionsApi {
    /// Exchange a refresh token for a new access token and refresh token.
    /// A refresh token works once: presenting a spent one again revokes its
    /// whole session (`refresh_token_reused`), as only a copy can explain it.
    #[oai(path = "/auth/refresh", method = "post", operation_id = "refresh")]
    async fn refresh(&self, body: Json<RefreshRequest>) -> ApiResult<RefreshResponse> {
        let ctx = &self.0.ctx;
        let (user_id, issued) = sessions::refresh(ctx, &body.0.refresh_token).await?;
        let user = account(ctx, user_id).await?;
        Ok(RefreshResponse::Ok(Json(AuthResponse::new(issued, user))))
    }

    /// End the caller's session (the one its token belongs to).
    #[oai(path = "/auth/logout", method = "post", operation_id = "logout")]
    async fn logout(&self, auth: BearerAuth) -> ApiResult<LogoutResponse> {
        sessions::logout(&self.0.ctx, auth.user_id(), auth.session_id()).await?;
        Ok(LogoutResponse::Ended)
    }

    /// End every session of the caller, on every device.
    #[oai(path = "/auth/logout-all", method = "post", operation_id = "logoutAll")]
    async fn logout_all(&self, auth: BearerAuth) -> ApiResult<LogoutResponse> {
        sessions::logout_all(&self.0.ctx, auth.user_id()).await?;
        Ok(LogoutResponse::Ended)
    }

    /// Change the password: ends every session, and returns a new one for the caller.
    #[oai(path = "/auth/password", method = "post", operation_id = "changePassword")]
    async fn change_password(
        &self,
        req: &Request,
        auth: BearerAuth,
        body: Json<ChangePasswordRequest>,
    ) -> ApiResult<ChangePasswordResponse> {
        let ctx = &self.0.ctx;
        let Json(body) = body;
        let issued = sessions::change_password(
            ctx,
            auth.user_id(),
            body.current_password.into_inner(),
            body.new_password.into_inner(),
            user_agent(req),
        )
        .await?;
        let user = account(ctx, auth.user_id()).await?;
        Ok(ChangePasswordResponse::Ok(Json(AuthResponse::new(issued, user))))
    }
}

/// The caller's account, for the response.
async fn account(ctx: &duet_common::AppContext, user_id: duet_common::ids::UserId) -> Result<User, duet_common::ApiError> {
    Ok(sqlx::query_as("select id, email, phone, name, created_at, last_seen_at from users where id = $1")
        .bind(user_id)
        .fetch_one(&ctx.db)
        .await?)
}
