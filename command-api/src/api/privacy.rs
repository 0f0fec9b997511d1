use duet_common::auth::BearerAuth;
use duet_common::error::{ApiResult, ErrorCode};
use duet_common::http::ApiTags;
use duet_common::ids::UserId;
use duet_common::privacy::PrivacySettings;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};

use crate::Commands;

pub struct PrivacyApi(pub Commands);

#[derive(ApiResponse)]
enum SetPrivacyResponse {
    /// The settings now in force.
    #[oai(status = 200)]
    Ok(Json<PrivacySettings>),
}

#[derive(ApiResponse)]
enum BlockResponse {
    /// Done (also when it already was).
    #[oai(status = 204)]
    Done,
}

/// The refusals each operation here can answer, by operation id (for the API document).
pub const ERRORS: &[(&str, &[ErrorCode])] = &[
    ("setPrivacy", &[]),
    ("blockUser", &[ErrorCode::CannotBlockSelf, ErrorCode::UserNotFound]),
    ("unblockUser", &[ErrorCode::UserNotFound]),
];

#[OpenApi(tag = "ApiTags::Privacy")]
impl PrivacyApi {
    /// Set who sees your presence and last seen: `everyone`, `contacts`
    /// (users you have sent a message to) or `nobody`. Reciprocal: with
    /// `nobody` you see no one's. Peers with a live session are told at once.
    #[oai(path = "/me/privacy", method = "post", operation_id = "setPrivacy")]
    async fn set(&self, auth: BearerAuth, body: Json<PrivacySettings>) -> ApiResult<SetPrivacyResponse> {
        Ok(SetPrivacyResponse::Ok(Json(self.0.set_privacy(auth.user_id(), body.0).await?)))
    }

    /// Block a user. Neither of you can then message the other or open a
    /// conversation, and neither sees the other's presence. The blocked user
    /// is not told: their sends are refused with `recipient_unavailable`,
    /// which names no reason.
    #[oai(path = "/users/:id/block", method = "post", operation_id = "blockUser")]
    async fn block(&self, auth: BearerAuth, id: Path<UserId>) -> ApiResult<BlockResponse> {
        self.0.block(auth.user_id(), id.0).await?;
        Ok(BlockResponse::Done)
    }

    /// Lift a block.
    #[oai(path = "/users/:id/unblock", method = "post", operation_id = "unblockUser")]
    async fn unblock(&self, auth: BearerAuth, id: Path<UserId>) -> ApiResult<BlockResponse> {
        self.0.unblock(auth.user_id(), id.0).await?;
        Ok(BlockResponse::Done)
    }
}
