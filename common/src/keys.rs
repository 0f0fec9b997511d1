//! Every Redis key and channel Duet uses, in one place, all under the
//! deployment's prefix (`DUET_REDIS_PREFIX`, `duet:` by default).
//!
//! Nothing in Redis is the record: PostgreSQL is. What is here is
//! coordination (presence, rate limits, the event stream, live channels)
//! and caches that can be rebuilt (the projections).
//!
//! | key | type | what |
//! |---|---|---|
//! | `user:{u}` | shard channel | live events for user `u`'s sessions ([`crate::live`]; `SPUBLISH`/`SSUBSCRIBE`) |
//! | `events:{n}` | stream | shard `n` of the outbox events, read by consumer groups ([`crate::stream`]; [`stream_shard`]) |
//! | `events` | stream | the unsharded stream of earlier versions, drained once after an upgrade |
//! | `presence:{p<n>}:user:<u>` | string, TTL | `u` is online ([`crate::presence`]; `n` = [`presence_shard`] of `u`) |
//! | `presence:{p<n>}:sessions:<u>` | sorted set, TTL | `u`'s session ids, scored by when each expires |
//! | `presence:{p<n>}:expiries` | sorted set | when the presence of each user of shard `n` lapses |
//! | `lastseen:{p<n>}:pending` | sorted set | last-seen times of shard `n`'s users not yet written to PostgreSQL ([`crate::last_seen`]) |
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
//! Redis Cluster: every script and multi-key command touches one hash slot,
//! named by the `{...}` hash tag. The `{u}` tag keeps one user's projection
//! keys and channel in one slot, so one Lua script may touch all of them.
//! Presence and pending last-seen times are written on every connect and
//! heartbeat, and their sweepers need one user's keys and the expiry set in
//! one script: they are split over [`PRESENCE_SHARDS`] tags (`{p0}` ...),
//! spread over the masters, and the sweepers walk every shard. The event
//! stream is split over `DUET_STREAM_SHARDS` streams for the same reason.
//! Rate-limit scripts touch one key each and need no tag. The prefix must
//! not contain `{`, or it would become every key's hash tag.

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

    /// The (shard) channel of one user's live events.
    pub fn user_channel(&self, user: UserId) -> String {
        self.key(format_args!("user:{{{user}}}"))
    }

    /// The user whose channel this is (see [`Keys::user_channel`]).
    pub fn user_of_channel(&self, channel: &str) -> Option<UserId> {
        channel.strip_prefix(&self.prefix)?.strip_prefix("user:{")?.strip_suffix('}')?.parse().ok()
    }

    /// Shard `shard` of the event stream (see [`stream_shard`]).
    pub fn events(&self, shard: u16) -> String {
        self.key(format_args!("events:{{{shard}}}"))
    }

    /// Every shard of the event stream, in shard order.
    pub fn event_streams(&self, shards: u16) -> Vec<String> {
        (0..shards).map(|shard| self.events(shard)).collect()
    }

    /// The one event stream of versions before the stream was sharded.
    pub fn unsharded_events(&self) -> String {
        self.key(format_args!("events"))
    }

    pub fn presence(&self, user: UserId) -> String {
        self.key(format_args!("presence:{{p{}}}:user:{user}", presence_shard(user)))
    }

    /// What the [`Keys::presence`] keys of presence shard `shard` start with.
    pub fn presence_prefix(&self, shard: u16) -> String {
        self.key(format_args!("presence:{{p{shard}}}:user:"))
    }

    pub fn presence_sessions(&self, user: UserId) -> String {
        self.key(format_args!("presence:{{p{}}}:sessions:{user}", presence_shard(user)))
    }

    /// When the presence of each user of presence shard `shard` lapses.
    pub fn presence_expiries(&self, shard: u16) -> String {
        self.key(format_args!("presence:{{p{shard}}}:expiries"))
    }

    /// Pending last-seen times of the users of presence shard `shard`.
    pub fn last_seen_pending(&self, shard: u16) -> String {
        self.key(format_args!("lastseen:{{p{shard}}}:pending"))
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

/// Shards of presence and pending last-seen times (see the module docs).
/// Fixed: changing it strands what the old shards hold.
pub const PRESENCE_SHARDS: u16 = 32;

/// The presence shard of a user.
pub fn presence_shard(user: UserId) -> u16 {
    (user.0.as_u128() % u128::from(PRESENCE_SHARDS)) as u16
}

/// The event stream shard of a conversation's events, of `shards`: its id
/// modulo the count (ids are UUIDv7, whose low bits are random). Events
/// without a conversation go to shard 0. Stable across processes and
/// versions, so one conversation's events stay in one stream, in order.
pub fn stream_shard(conversation: Option<ConversationId>, shards: u16) -> u16 {
    conversation.map_or(0, |c| (c.0.as_u128() % u128::from(shards.max(1))) as u16)
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
        assert_eq!(keys.user_channel(user), format!("duet:user:{tag}"));
        assert_eq!(keys.user_of_channel(&keys.user_channel(user)), Some(user));
    }

    #[test]
    fn a_users_presence_keys_share_their_shards_tag() {
        let keys = Keys::new("duet:");
        let user = UserId::new();
        let shard = presence_shard(user);
        let tag = format!("{{p{shard}}}");
        for key in [keys.presence(user), keys.presence_sessions(user), keys.presence_expiries(shard), keys.last_seen_pending(shard)] {
            assert!(key.contains(&tag), "{key}");
        }
        assert!(keys.presence(user).starts_with(&keys.presence_prefix(shard)));
    }

    #[test]
    fn a_conversation_stays_on_one_stream_shard() {
        let conversation = ConversationId::new();
        let shard = stream_shard(Some(conversation), 4);
        assert!(shard < 4);
        assert_eq!(stream_shard(Some(conversation), 4), shard);
        assert_eq!(stream_shard(None, 4), 0);
        assert_eq!(stream_shard(Some(conversation), 1), 0);
        let used: std::collections::BTreeSet<u16> = (0..200).map(|_| stream_shard(Some(ConversationId::new()), 4)).collect();
        assert_eq!(used.len(), 4, "new conversations spread over every shard");
    }
}
