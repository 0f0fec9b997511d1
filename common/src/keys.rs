//! Every Redis key and channel Duet uses, in one place, all under the
//! deployment's prefix (`DUET_REDIS_PREFIX`, `duet:` by default).
//!
//! Nothing in Redis is the record: PostgreSQL is. What is here is
//! coordination (presence, rate limits, the event stream, live channels)
//! and caches that can be rebuilt (the projections).
//!
//! | key | type | what |
//! |---|---|---|
//! | `user:<u>` | channel | live events for user `u`'s sessions ([`crate::live`]) |
//! | `events` | stream | the outbox events, read by consumer groups ([`crate::stream`]) |
//! | `presence:user:<u>` | string, TTL | `u` is online ([`crate::presence`]) |
//! | `presence:sessions:<u>` | sorted set, TTL | `u`'s session ids, scored by when each expires |
//! | `presence:expiries` | sorted set | when each user's presence lapses |
//! | `lastseen:pending` | sorted set | last-seen times not yet written to PostgreSQL ([`crate::last_seen`]) |
//! | `rl:send:<u>`, `rl:handshake:<ip>`, `rl:lookup:<u>`, `rl:search:<u>` | hash, TTL | token buckets ([`crate::ratelimit`]) |
//! | `rl:login:ip:<ip>`, `rl:register:<ip>`, `rl:upload:<u>` | integer, TTL | per-window counts ([`crate::throttle::Window`]) |
//! | `rl:login:pair:<email>:<ip>`, `rl:login:account:<email>` | hash, TTL | login backoffs ([`crate::throttle::Backoff`]) |
//! | `rl:login:known:<email>:<ip>` | string, TTL | the account logged in from this IP (exempt from the account-wide backoff) |
//! | `proj:{u}:convs` | sorted set | `u`'s conversation ids by last activity (µs; ties by id) |
//! | `proj:{u}:c:<c>` | hash | `u`'s entry for conversation `c`: `peer`, `created_at`, `updated_at` (µs), `last_seq`, `last_message` (the message JSON), `unread`, and the markers `my_delivered`, `my_read`, `peer_delivered`, `peer_read` |
//! | `proj:{u}:unread:<c>` | sorted set | seqs of messages to `u` after `my_read`; `unread` is its size |
//! | `proj:ready` | string | the projections are complete (absent: cold, readers use PostgreSQL) |
//! | `proj:rebuild-lock` | string, TTL | one rebuild at a time |
//!
//! The `{u}` hash tag keeps one user's projection keys in one cluster slot,
//! so one Lua script may touch all of them.

use std::net::IpAddr;

use crate::ids::{ConversationId, UserId};

/// Names of Redis keys and channels under the deployment's prefix.
#[derive(Clone, Debug)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: impl Into<String>) -> Self {
        Keys { prefix: prefix.into() }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn key(&self, rest: std::fmt::Arguments<'_>) -> String {
        format!("{}{}", self.prefix, rest)
    }

    /// The channel of one user's live events.
    pub fn user_channel(&self, user: UserId) -> String {
        self.key(format_args!("user:{user}"))
    }

    /// The stream the relay fills and the consumer groups read.
    pub fn events(&self) -> String {
        self.key(format_args!("events"))
    }

    pub fn presence(&self, user: UserId) -> String {
        self.key(format_args!("presence:user:{user}"))
    }

    /// What [`Keys::presence`] keys start with.
    pub fn presence_prefix(&self) -> String {
        self.key(format_args!("presence:user:"))
    }

    pub fn presence_sessions(&self, user: UserId) -> String {
        self.key(format_args!("presence:sessions:{user}"))
    }

    pub fn presence_expiries(&self) -> String {
        self.key(format_args!("presence:expiries"))
    }

    pub fn last_seen_pending(&self) -> String {
        self.key(format_args!("lastseen:pending"))
    }

    /// The bucket of a user's sends, REST and WebSocket together.
    pub fn send_rate(&self, user: UserId) -> String {
        self.key(format_args!("rl:send:{user}"))
    }

    /// The bucket of a user's reports.
    pub fn report_rate(&self, user: UserId) -> String {
        self.key(format_args!("rl:report:{user}"))
    }

    /// The bucket of WebSocket handshakes from one client address.
    pub fn handshake_rate(&self, ip: IpAddr) -> String {
        self.key(format_args!("rl:handshake:{ip}"))
    }

    pub fn lookup_rate(&self, user: UserId) -> String {
        self.key(format_args!("rl:lookup:{user}"))
    }

    pub fn search_rate(&self, user: UserId) -> String {
        self.key(format_args!("rl:search:{user}"))
    }

    pub fn login_ip(&self, ip: IpAddr) -> String {
        self.key(format_args!("rl:login:ip:{ip}"))
    }

    /// Login attempts for one (canonical) email from one IP.
    pub fn login_pair(&self, email: &str, ip: IpAddr) -> String {
        self.key(format_args!("rl:login:pair:{email}:{ip}"))
    }

    /// Login attempts for one (canonical) email from every IP.
    pub fn login_account(&self, email: &str) -> String {
        self.key(format_args!("rl:login:account:{email}"))
    }

    /// Set when the account logged in from this IP.
    pub fn login_known(&self, email: &str, ip: IpAddr) -> String {
        self.key(format_args!("rl:login:known:{email}:{ip}"))
    }

    /// Attachment uploads a user started in the current hour.
    pub fn upload_rate(&self, user: UserId) -> String {
        self.key(format_args!("rl:upload:{user}"))
    }

    pub fn register_ip(&self, ip: IpAddr) -> String {
        self.key(format_args!("rl:register:{ip}"))
    }

    pub fn projections_ready(&self) -> String {
        self.key(format_args!("proj:ready"))
    }

    pub fn rebuild_lock(&self) -> String {
        self.key(format_args!("proj:rebuild-lock"))
    }

    pub fn conversation_list(&self, user: UserId) -> String {
        self.key(format_args!("proj:{{{user}}}:convs"))
    }

    pub fn entry(&self, user: UserId, conversation: ConversationId) -> String {
        self.key(format_args!("proj:{{{user}}}:c:{conversation}"))
    }

    pub fn unread(&self, user: UserId, conversation: ConversationId) -> String {
        self.key(format_args!("proj:{{{user}}}:unread:{conversation}"))
    }

    /// A SCAN pattern matching every per-user projection key.
    pub fn all_projections(&self) -> String {
        self.key(format_args!("proj:{{*"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_users_projection_keys_share_one_hash_tag() {
        let keys = Keys::new("duet:");
        let (user, conversation) = (UserId::new(), ConversationId::new());
        let tag = format!("{{{user}}}");
        for key in [keys.conversation_list(user), keys.entry(user, conversation), keys.unread(user, conversation)] {
            assert!(key.starts_with("duet:proj:") && key.contains(&tag), "{key}");
        }
    }
}
