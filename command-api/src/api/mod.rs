//! The command side's HTTP operations (poem-openapi), one file per area.

mod attachments;
mod auth;
mod conversations;
mod devices;
mod message_changes;
mod messages;
mod privacy;
mod reports;
mod sessions;

pub use attachments::AttachmentsApi;
pub use auth::AuthApi;
pub use conversations::ConversationsApi;
pub use devices::DevicesApi;
pub use message_changes::MessageChangesApi;
pub use messages::MessagesApi;
pub use privacy::PrivacyApi;
pub use reports::ReportsApi;
pub use sessions::SessionsApi;

use duet_common::ErrorCode;

use crate::Commands;

/// Every command-side operation.
pub type CommandApi =
    (AuthApi, SessionsApi, ConversationsApi, MessagesApi, AttachmentsApi, MessageChangesApi, DevicesApi, PrivacyApi, ReportsApi);

/// The refusals of every command-side operation, by operation id.
pub fn errors() -> impl Iterator<Item = (&'static str, &'static [ErrorCode])> {
    [
        auth::ERRORS,
        sessions::ERRORS,
        conversations::ERRORS,
        messages::ERRORS,
        attachments::ERRORS,
        message_changes::ERRORS,
        devices::ERRORS,
        privacy::ERRORS,
        reports::ERRORS,
    ]
    .into_iter()
    .flatten()
    .copied()
}

pub fn api(commands: Commands) -> CommandApi {
    (
        AuthApi(commands.clone()),
        SessionsApi(commands.clone()),
        ConversationsApi(commands.clone()),
        MessagesApi(commands.clone()),
        AttachmentsApi(commands.clone()),
        MessageChangesApi(commands.clone()),
        DevicesApi(commands.clone()),
        PrivacyApi(commands.clone()),
        ReportsApi(commands),
    )
}
