//! The command side's HTTP operations (poem-openapi), one file per area.

mod auth;
mod conversations;
mod devices;
mod messages;

pub use auth::AuthApi;
pub use conversations::ConversationsApi;
pub use devices::DevicesApi;
pub use messages::MessagesApi;

use crate::Commands;

/// Every command-side operation.
pub type CommandApi = (AuthApi, ConversationsApi, MessagesApi, DevicesApi);

pub fn api(commands: Commands) -> CommandApi {
    (AuthApi(commands.clone()), ConversationsApi(commands.clone()), MessagesApi(commands.clone()), DevicesApi(commands))
}
