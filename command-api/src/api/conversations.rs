use duet_common::auth::BearerAuth;
use duet_common::error::{ApiResult, ErrorCode};
use duet_common::http::ApiTags;
use duet_common::ids::UserId;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use crate::{Commands, Conversation};

pub struct ConversationsApi(pub Commands);

#[derive(Object)]
#[oai(rename_all = "camelCase")]
struct CreateConversationRequest {
    /// The other user.
    peer_id: UserId,
}

#[derive(ApiResponse)]
enum CreateConversationResponse {
    /// The conversation already existed.
    #[oai(status = 200)]
    Existing(Json<Conversation>),
    /// The conversation was created.
    #[oai(status = 201)]
    Created(Json<Conversation>),
}

/// The refusals each operation here can answer, by operation id (for the API document).
pub const ERRORS: &[(&str, &[ErrorCode])] = &[(
    "createConversation",
    &[ErrorCode::CannotMessageSelf, ErrorCode::UserNotFound, ErrorCode::RecipientUnavailable, ErrorCode::UserBlocked],
)];

#[OpenApi(tag = "ApiTags::Conversations")]
impl ConversationsApi {
    /// Get or create the 1:1 conversation with another user.
    #[oai(path = "/conversations", method = "post", operation_id = "createConversation")]
    async fn create(&self, auth: BearerAuth, body: Json<CreateConversationRequest>) -> ApiResult<CreateConversationResponse> {
        let (conversation, created) = self.0.conversation_with(auth.user_id(), body.0.peer_id).await?;
        Ok(if created {
            CreateConversationResponse::Created(Json(conversation))
        } else {
            CreateConversationResponse::Existing(Json(conversation))
        })
    }
}
