use duet_common::auth::BearerAuth;
use duet_common::error::{ApiResult, ErrorCode};
use duet_common::http::ApiTags;
use duet_common::ids::ConversationId;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};

use crate::Queries;
use crate::conversations::{self, ConversationPage, ConversationSummary};
use crate::history::{self, MessagePage, PageRequest};

pub struct ConversationsQueryApi(pub Queries);

#[derive(ApiResponse)]
enum ListResponse {
    #[oai(status = 200)]
    Ok(Json<ConversationPage>),
}

#[derive(ApiResponse)]
enum GetResponse {
    #[oai(status = 200)]
    Ok(Json<ConversationSummary>),
}

#[derive(ApiResponse)]
enum MessagesResponse {
    /// `X-Duet-Read-Source` says whether the replica or the primary served the page.
    #[oai(status = 200)]
    Ok(Json<MessagePage>, #[oai(header = "X-Duet-Read-Source")] String),
}

/// The refusals each operation here can answer, by operation id (for the API document).
pub const ERRORS: &[(&str, &[ErrorCode])] = &[
    ("listConversations", &[ErrorCode::InvalidLimit, ErrorCode::InvalidCursor]),
    ("getConversation", &[ErrorCode::ConversationNotFound]),
    ("listMessages", &[ErrorCode::ConversationNotFound, ErrorCode::InvalidSeq, ErrorCode::InvalidRange, ErrorCode::InvalidLimit]),
];

#[OpenApi(tag = "ApiTags::Conversations")]
impl ConversationsQueryApi {
    /// The caller's conversations, most recently active first, with unread
    /// counts and both members' read/delivered markers.
    ///
    /// Consistency: the list is a projection of the message log. Right after
    /// a send or a receipt (yours or the peer's) it can trail for a moment:
    /// a median of 7 ms and a 99th percentile under 50 ms on one busy node
    /// (`docs/projector-benchmark.md`, "live lag").
    /// For what was just sent, trust the send's answer, the WebSocket events,
    /// or the history, which is read-your-writes.
    #[oai(path = "/conversations", method = "get", operation_id = "listConversations")]
    async fn list(
        &self,
        auth: BearerAuth,
        /// `nextCursor` of the previous page.
        #[oai(validator(max_length = 100))]
        cursor: Query<Option<String>>,
        /// 1 to 100; default 20.
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        limit: Query<Option<u32>>,
    ) -> ApiResult<ListResponse> {
        let page = conversations::list(&self.0, auth.user_id(), cursor.0.as_deref(), limit.0).await?;
        Ok(ListResponse::Ok(Json(page)))
    }

    /// One of the caller's conversations, with its unread count and markers.
    ///
    /// Consistency: like the list, a projection that can trail a send or a
    /// receipt for a moment (median 7 ms on one node).
    #[oai(path = "/conversations/:id", method = "get", operation_id = "getConversation")]
    async fn get(&self, auth: BearerAuth, id: Path<ConversationId>) -> ApiResult<GetResponse> {
        Ok(GetResponse::Ok(Json(conversations::get(&self.0, auth.user_id(), id.0).await?)))
    }

    /// Message history by seq, oldest first within a page. Without
    /// `afterSeq`, pages go back from `beforeSeq` (or the newest message);
    /// with it, forward from `afterSeq`.
    ///
    /// Consistency: read-your-writes. Pages come from a read replica, but
    /// never from one behind the newest seq the client names (`minSeq`, or
    /// `afterSeq`): pass your last send's seq as `minSeq` to be sure to see it.
    #[oai(path = "/conversations/:id/messages", method = "get", operation_id = "listMessages")]
    async fn messages(
        &self,
        auth: BearerAuth,
        id: Path<ConversationId>,
        /// Only messages with a lower seq.
        #[oai(name = "beforeSeq", validator(minimum(value = "0")))]
        before_seq: Query<Option<i64>>,
        /// Only messages with a higher seq; the page starts right after it.
        #[oai(name = "afterSeq", validator(minimum(value = "0")))]
        after_seq: Query<Option<i64>>,
        /// The newest seq the client knows exists (e.g. its own last send):
        /// the page is never served from a replica that has not reached it.
        #[oai(name = "minSeq", validator(minimum(value = "0")))]
        min_seq: Query<Option<i64>>,
        /// 1 to 100; default 50.
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        limit: Query<Option<i64>>,
    ) -> ApiResult<MessagesResponse> {
        self.0.cache.peer_in(id.0, auth.user_id()).await?;
        let req = PageRequest { before_seq: before_seq.0, after_seq: after_seq.0, min_seq: min_seq.0, limit: limit.0 };
        let (page, source) = history::page(&self.0.ctx, &self.0.metrics, id.0, auth.user_id(), req).await?;
        Ok(MessagesResponse::Ok(Json(page), source.as_str().to_owned()))
    }
}
