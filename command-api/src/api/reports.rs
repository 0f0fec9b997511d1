use duet_common::auth::BearerAuth;
use duet_common::error::{ApiError, ApiResult, ErrorCode};
use duet_common::http::ApiTags;
use duet_common::ids::{MessageId, UserId};
use duet_common::json_string::JsonString;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use crate::Commands;
use crate::reports::{Report, ReportReason, ReportTarget};

pub struct ReportsApi(pub Commands);

/// A report of a user, or of a message and so its sender.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
struct ReportRequest {
    /// The user reported. Give exactly one of `userId` and `messageId`.
    user_id: Option<UserId>,
    /// A message in one of your conversations; its sender is reported.
    message_id: Option<MessageId>,
    reason: ReportReason,
    /// Up to 1000 characters; line breaks and tabs are the only control
    /// characters allowed.
    #[oai(validator(max_length = 1000))]
    details: Option<JsonString>,
}

#[derive(ApiResponse)]
enum ReportResponse {
    /// The report is stored for moderation.
    #[oai(status = 201)]
    Created(Json<Report>),
}

/// The refusals each operation here can answer, by operation id (for the API document).
pub const ERRORS: &[(&str, &[ErrorCode])] = &[(
    "report",
    &[
        ErrorCode::InvalidReportTarget,
        ErrorCode::UserNotFound,
        ErrorCode::MessageNotFound,
        ErrorCode::InvalidDetails,
        ErrorCode::RateLimited,
    ],
)];

#[OpenApi(tag = "ApiTags::Privacy")]
impl ReportsApi {
    /// Report a user, or a message in one of your conversations, to the
    /// moderators. Limited per user (`DUET_REPORT_RATE_PER_SEC`, `DUET_REPORT_BURST`).
    #[oai(path = "/reports", method = "post", operation_id = "report")]
    async fn report(&self, auth: BearerAuth, body: Json<ReportRequest>) -> ApiResult<ReportResponse> {
        let Json(body) = body;
        let target = match (body.user_id, body.message_id) {
            (Some(user), None) => ReportTarget::User(user),
            (None, Some(message)) => ReportTarget::Message(message),
            _ => return Err(ApiError::new(ErrorCode::InvalidReportTarget, "give exactly one of `userId` and `messageId`").into()),
        };
        let report = self.0.report(auth.user_id(), target, body.reason, body.details.map(JsonString::into_inner)).await?;
        Ok(ReportResponse::Created(Json(report)))
    }
}
