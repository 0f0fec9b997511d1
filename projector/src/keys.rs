//! Where the read side lives in Redis, all under the deployment's prefix.
//!
//! Per user `u` (the `{u}` hash tag keeps one user's keys in one cluster slot,
//! so a Lua script may touch all of them):
//! - `proj:{u}:convs`: sorted set of the user's conversation ids, scored by
//!   last activity in unix microseconds (ties: by id, like PostgreSQL's
//!   `order by updated_at desc, id desc`).
//! - `proj:{u}:c:<conv>`: hash, the user's entry for one conversation:
//!   `peer`, `created_at`, `updated_at` (µs), `last_seq`, `last_message`
//!   (the [`Message`](duet_common::domain::Message) JSON), `unread`, and the
//!   markers `my_delivered`, `my_read`, `peer_delivered`, `peer_read`.
//! - `proj:{u}:unread:<conv>`: sorted set of the seqs of messages to `u`
//!   after `my_read`; `unread` is its size.
//!
//! Shared: `events` (the stream of outbox events), `proj:ready` (set once
//! the projections are complete; absent means cold: readers use
//! PostgreSQL) and `proj:rebuild-lock`.

use duet_common::ids::{ConversationId, UserId};
use duet_common::redis::Keys;

/// The Redis stream the relay fills and the consumer groups read.
pub use duet_common::stream::events_key as stream;

pub fn ready(keys: &Keys) -> String {
    keys.key(format_args!("proj:ready"))
}

pub fn rebuild_lock(keys: &Keys) -> String {
    keys.key(format_args!("proj:rebuild-lock"))
}

pub fn list(keys: &Keys, user: UserId) -> String {
    keys.key(format_args!("proj:{{{user}}}:convs"))
}

pub fn entry(keys: &Keys, user: UserId, conversation: ConversationId) -> String {
    keys.key(format_args!("proj:{{{user}}}:c:{conversation}"))
}

pub fn unread(keys: &Keys, user: UserId, conversation: ConversationId) -> String {
    keys.key(format_args!("proj:{{{user}}}:unread:{conversation}"))
}

/// A SCAN pattern matching every per-user projection key.
pub fn all_projections(keys: &Keys) -> String {
    keys.key(format_args!("proj:{{*"))
}
