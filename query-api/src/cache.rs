//! In-process caches for hot reads that are safe to cache.
//!
//! - Membership: who is in a conversation never changes once it exists, so a
//!   positive answer is cached (a negative one is not: the caller may be
//!   about to create it). Checked on the primary, so a lagging replica never
//!   turns a fresh conversation into a 404.
//! - Names: a user's display name, shown in conversation lists; a short TTL
//!   bounds how stale a renamed user can look.

use duet_common::ids::{ConversationId, UserId};
use std::collections::HashMap;
use std::time::Duration;

use duet_common::ApiError;
use moka::future::Cache;
use sqlx::PgPool;

#[derive(Clone)]
pub struct Caches {
    db: PgPool,
    /// (conversation, member) → the other member.
    peers: Cache<(ConversationId, UserId), UserId>,
    names: Cache<UserId, String>,
}

impl Caches {
    pub fn new(db: PgPool) -> Self {
        Caches {
            db,
            peers: Cache::builder().max_capacity(100_000).time_to_live(Duration::from_secs(600)).build(),
            names: Cache::builder().max_capacity(100_000).time_to_live(Duration::from_secs(60)).build(),
        }
    }

    /// The other member of `conversation`, or `conversation_not_found` if
    /// `user` is not in it (the same answer as for an unknown conversation).
    pub async fn peer_in(&self, conversation: ConversationId, user: UserId) -> Result<UserId, ApiError> {
        if let Some(peer) = self.peers.get(&(conversation, user)).await {
            return Ok(peer);
        }
        let peer: UserId = sqlx::query_scalar("select peer_id from conversation_members where conversation_id = $1 and user_id = $2")
            .bind(conversation)
            .bind(user)
            .fetch_optional(&self.db)
            .await?
            .ok_or_else(ApiError::conversation_not_found)?;
        self.peers.insert((conversation, user), peer).await;
        Ok(peer)
    }

    /// Display names of `users` (unknown ids are left out).
    pub async fn names(&self, users: &[UserId]) -> Result<HashMap<UserId, String>, ApiError> {
        let mut found = HashMap::with_capacity(users.len());
        let mut missing = Vec::new();
        for user in users {
            match self.names.get(user).await {
                Some(name) => {
                    found.insert(*user, name);
                }
                None => missing.push(*user),
            }
        }
        if !missing.is_empty() {
            let rows: Vec<(UserId, String)> =
                sqlx::query_as("select id, name from users where id = any($1)").bind(&missing).fetch_all(&self.db).await?;
            for (id, name) in rows {
                self.names.insert(id, name.clone()).await;
                found.insert(id, name);
            }
        }
        Ok(found)
    }
}
