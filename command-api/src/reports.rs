//! Reports of users and messages, stored for moderation.

use chrono::{DateTime, Utc};
use duet_common::ApiError;
use duet_common::error::ErrorCode;
use duet_common::ids::{ConversationId, MessageId, UserId};
use duet_common::ratelimit::Decision;
use poem_openapi::{Enum, Object};
use serde::Serialize;
use uuid::Uuid;

use crate::Commands;
use crate::appender::now_micros;

/// Why a user or message is reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Enum)]
#[serde(rename_all = "snake_case")]
#[oai(rename_all = "snake_case")]
pub enum ReportReason {
    Spam,
    Harassment,
    Hate,
    SexualContent,
    Violence,
    Impersonation,
    Scam,
    Other,
}

impl ReportReason {
    /// As stored in `reports.reason`.
    fn as_str(self) -> &'static str {
        match self {
            ReportReason::Spam => "spam",
            ReportReason::Harassment => "harassment",
            ReportReason::Hate => "hate",
            ReportReason::SexualContent => "sexual_content",
            ReportReason::Violence => "violence",
            ReportReason::Impersonation => "impersonation",
            ReportReason::Scam => "scam",
            ReportReason::Other => "other",
        }
    }
}

/// What is reported: a user, or a message in one of the reporter's conversations.
#[derive(Clone, Copy, Debug)]
pub enum ReportTarget {
    User(UserId),
    Message(MessageId),
}

/// A stored report.
#[derive(Clone, Debug, Serialize, Object)]
#[serde(rename_all = "camelCase")]
#[oai(rename_all = "camelCase")]
pub struct Report {
    pub id: Uuid,
    /// The reported user (the sender, when a message is reported).
    pub reported_user_id: UserId,
    pub created_at: DateTime<Utc>,
}

/// Most characters of a report's `details`.
pub const MAX_DETAILS_CHARS: usize = 1000;

impl Commands {
    /// Rate-limits and stores a report.
    pub async fn report(
        &self,
        reporter: UserId,
        target: ReportTarget,
        reason: ReportReason,
        details: Option<String>,
    ) -> Result<Report, ApiError> {
        let details = details.map(|d| d.trim().to_owned()).filter(|d| !d.is_empty());
        if details
            .as_deref()
            .is_some_and(|d| d.chars().count() > MAX_DETAILS_CHARS || d.chars().any(|c| c.is_control() && c != '\n' && c != '\t'))
        {
            return Err(ApiError::new(
                ErrorCode::InvalidDetails,
                format!("`details` must be at most {MAX_DETAILS_CHARS} characters, without control characters but line breaks and tabs"),
            ));
        }
        let key = self.ctx.keys.report_rate(reporter);
        if let Decision::Limited { retry_after_ms } = self.report_limiter.check(&self.ctx.fast_redis, &key).await {
            return Err(ApiError::RateLimited { retry_after_ms });
        }
        let (reported, message) = match target {
            ReportTarget::User(user) => {
                if user == reporter {
                    return Err(ApiError::new(ErrorCode::InvalidReportTarget, "you cannot report yourself"));
                }
                let exists: bool =
                    sqlx::query_scalar("select exists (select 1 from users where id = $1)").bind(user).fetch_one(&self.ctx.db).await?;
                if !exists {
                    return Err(ApiError::new(ErrorCode::UserNotFound, "no such user"));
                }
                (user, None)
            }
            ReportTarget::Message(message) => {
                let (sender, conversation): (UserId, ConversationId) = sqlx::query_as(
                    "select m.sender_id, m.conversation_id from messages m \
                     join conversation_members cm on cm.conversation_id = m.conversation_id and cm.user_id = $2 \
                     where m.id = $1",
                )
                .bind(message)
                .bind(reporter)
                .fetch_optional(&self.ctx.db)
                .await?
                .ok_or_else(|| ApiError::new(ErrorCode::MessageNotFound, "no such message in your conversations"))?;
                if sender == reporter {
                    return Err(ApiError::new(ErrorCode::InvalidReportTarget, "you cannot report your own message"));
                }
                (sender, Some((message, conversation)))
            }
        };
        let report = Report { id: Uuid::new_v4(), reported_user_id: reported, created_at: now_micros() };
        sqlx::query(
            "insert into reports (id, reporter_id, reported_user_id, message_id, reason, details, created_at, conversation_id) \
             values ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(report.id)
        .bind(reporter)
        .bind(reported)
        .bind(message.map(|(id, _)| id))
        .bind(reason.as_str())
        .bind(details)
        .bind(report.created_at)
        .bind(message.map(|(_, conversation)| conversation))
        .execute(&self.ctx.db)
        .await?;
        Ok(report)
    }
}
