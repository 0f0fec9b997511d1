//! Hooks run after a command is durable, so other parts of the system (the
//! push jobs) can react without the command side depending on them.
//!
//! A hook runs on the caller's path after the commit, so it must be quick
//! (a Redis round trip and one small write) and must never fail the
//! command: whatever it cannot do, it logs.

use std::future::Future;
use std::pin::Pin;

use duet_common::domain::Message;
use uuid::Uuid;

pub type HookFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

pub trait CommandHooks: Send + Sync {
    /// A message was stored by this call (not on an idempotent replay).
    fn message_stored<'a>(&'a self, message: &'a Message) -> HookFuture<'a>;

    /// `user_id`'s delivered or read marker in the conversation moved forward.
    fn marker_moved<'a>(&'a self, user_id: Uuid, conversation_id: Uuid, read: bool) -> HookFuture<'a>;
}
