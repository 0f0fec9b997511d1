use duet_common::auth::BearerAuth;
use duet_common::error::{ApiResult, ErrorCode};
use duet_common::http::ApiTags;
use duet_common::privacy::PrivacySettings;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};

use crate::Queries;
use crate::users::{self, BlockList};

pub struct PrivacyQueryApi(pub Queries);

#[derive(ApiResponse)]
enum PrivacyResponse {
    #[oai(status = 200)]
    Ok(Json<PrivacySettings>),
}

#[derive(ApiResponse)]
enum BlocksResponse {
    #[oai(status = 200)]
    Ok(Json<BlockList>),
}

/// The refusals each operation here can answer, by operation id (for the API document).
pub const ERRORS: &[(&str, &[ErrorCode])] = &[("getPrivacy", &[]), ("listBlocks", &[])];

#[OpenApi(tag = "ApiTags::Privacy")]
impl PrivacyQueryApi {
    /// Your privacy settings.
    #[oai(path = "/me/privacy", method = "get", operation_id = "getPrivacy")]
    async fn get(&self, auth: BearerAuth) -> ApiResult<PrivacyResponse> {
        Ok(PrivacyResponse::Ok(Json(users::privacy(&self.0.ctx.db, auth.user_id()).await?)))
    }

    /// The users you have blocked, most recently blocked first.
    #[oai(path = "/blocks", method = "get", operation_id = "listBlocks")]
    async fn blocks(&self, auth: BearerAuth) -> ApiResult<BlocksResponse> {
        Ok(BlocksResponse::Ok(Json(users::blocks(&self.0.ctx.db, auth.user_id()).await?)))
    }
}
