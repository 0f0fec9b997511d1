use duet_common::auth::BearerAuth;
use duet_common::domain::{PublicUser, User};
use duet_common::error::{ApiResult, ErrorCode};
use duet_common::http::ApiTags;
use duet_common::ids::UserId;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};

use crate::{Queries, users};

pub struct UsersApi(pub Queries);

#[derive(ApiResponse)]
enum MeResponse {
    #[oai(status = 200)]
    Ok(Json<User>),
}

#[derive(ApiResponse)]
enum UserResponse {
    #[oai(status = 200)]
    Ok(Json<PublicUser>),
}

/// The refusals each operation here can answer, by operation id (for the API document).
pub const ERRORS: &[(&str, &[ErrorCode])] = &[
    ("me", &[]),
    ("lookupUser", &[ErrorCode::UserNotFound, ErrorCode::InvalidEmail, ErrorCode::RateLimited]),
    ("getUser", &[ErrorCode::UserNotFound]),
];

#[OpenApi(tag = "ApiTags::Users")]
impl UsersApi {
    /// The caller's own account.
    #[oai(path = "/me", method = "get", operation_id = "me")]
    async fn me(&self, auth: BearerAuth) -> ApiResult<MeResponse> {
        Ok(MeResponse::Ok(Json(users::me(&self.0.ctx.db, auth.user_id()).await?)))
    }

    /// Find a user by exact email, to start a conversation with them
    /// (`lastSeenAt` as for `getUser`). Limited per user.
    #[oai(path = "/users/lookup", method = "get", operation_id = "lookupUser")]
    async fn lookup(
        &self,
        auth: BearerAuth,
        #[oai(validator(min_length = 1, max_length = 254))] email: Query<String>,
    ) -> ApiResult<UserResponse> {
        self.0.limit_lookup(auth.user_id()).await?;
        Ok(UserResponse::Ok(Json(users::lookup_by_email(&self.0.ctx.db, auth.user_id(), &email.0).await?)))
    }

    /// A user's public profile, with when they were last seen if their
    /// presence privacy lets the caller see it.
    #[oai(path = "/users/:id", method = "get", operation_id = "getUser")]
    async fn get(&self, auth: BearerAuth, id: Path<UserId>) -> ApiResult<UserResponse> {
        Ok(UserResponse::Ok(Json(users::by_id(&self.0.ctx.db, auth.user_id(), id.0).await?)))
    }
}
