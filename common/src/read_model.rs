//! The read model: the projections the projector writes to Redis, as the
//! query side and the tests read them (one user's conversation list, one
//! entry, a raw dump of everything to compare a live projector with a
//! rebuild), and the one SQL definition of what they hold, for readers
//! that fall back to PostgreSQL and for the rebuild. The keys are in
//! [`crate::keys`].

use crate::ids::{ConversationId, UserId};
use std::collections::{BTreeMap, HashMap};

use crate::AppContext;
use crate::domain::Message;
use chrono::{DateTime, Utc};
use fred::prelude::*;
use fred::types::sorted_sets::{ZRange, ZRangeBound, ZRangeKind};

/// Whether the projections are complete; when not (cold, or being
/// rebuilt), readers answer from PostgreSQL.
pub async fn is_ready(ctx: &AppContext) -> anyhow::Result<bool> {
    let n: i64 = ctx.redis.next().exists(ctx.keys.projections_ready()).await?;
    Ok(n == 1)
}

/// One user's view of one conversation, as the projection holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub conversation_id: ConversationId,
    pub peer_id: UserId,
    pub last_seq: i64,
    pub last_message: Option<Message>,
    pub unread: i64,
    pub my_delivered: i64,
    pub my_read: i64,
    pub peer_delivered: i64,
    pub peer_read: i64,
    pub updated_at: DateTime<Utc>,
}

/// Keyset position in a list: last activity (µs), then conversation id, both descending.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    pub updated_micros: i64,
    pub conversation_id: ConversationId,
}

/// Up to `limit` entries after `after`, newest activity first, and whether more follow.
pub async fn list(ctx: &AppContext, user: UserId, after: Option<Position>, limit: usize) -> anyhow::Result<(Vec<Entry>, bool)> {
    let client = ctx.redis.next();
    let key = ctx.keys.conversation_list(user);
    // A score bound, inclusive: fred would send a string as a lexical bound
    // (`[…`), which ZREVRANGEBYSCORE refuses. Microseconds fit an f64 exactly.
    let max = ZRange {
        kind: ZRangeKind::Inclusive,
        range: after.map_or(ZRangeBound::InfiniteScore, |p| ZRangeBound::Score(p.updated_micros as f64)),
    };
    let mut ids: Vec<ConversationId> = Vec::with_capacity(limit + 1);
    let mut offset = 0i64;
    let chunk = limit as i64 + 16;
    // Members tied with the cursor's score may precede it; skip those.
    loop {
        let page: Vec<(String, f64)> = client.zrevrangebyscore(&key, &max, "-inf", true, Some((offset, chunk))).await?;
        let got = page.len() as i64;
        for (member, score) in page {
            let id: ConversationId = member.parse()?;
            let skip = after.is_some_and(|p| score as i64 == p.updated_micros && id >= p.conversation_id);
            if !skip {
                ids.push(id);
            }
        }
        if ids.len() > limit || got < chunk {
            break;
        }
        offset += got;
    }
    let more = ids.len() > limit;
    ids.truncate(limit);
    let mut entries = Vec::with_capacity(ids.len());
    for (id, hash) in ids.iter().zip(read_hashes(ctx, user, &ids).await?) {
        if let Some(entry) = to_entry(*id, hash)? {
            entries.push(entry);
        }
    }
    Ok((entries, more))
}

/// The user's entry for one conversation, if projected.
pub async fn entry(ctx: &AppContext, user: UserId, conversation: ConversationId) -> anyhow::Result<Option<Entry>> {
    let hash = read_hashes(ctx, user, &[conversation]).await?.pop().unwrap_or_default();
    to_entry(conversation, hash)
}

async fn read_hashes(ctx: &AppContext, user: UserId, ids: &[ConversationId]) -> anyhow::Result<Vec<HashMap<String, String>>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let pipeline = ctx.redis.next().pipeline();
    for id in ids {
        let _: () = pipeline.hgetall(ctx.keys.entry(user, *id)).await?;
    }
    Ok(pipeline.all().await?)
}

fn to_entry(conversation_id: ConversationId, hash: HashMap<String, String>) -> anyhow::Result<Option<Entry>> {
    // An entry is listed once its creation or a message is applied.
    let Some(updated) = hash.get("updated_at") else { return Ok(None) };
    let num = |f: &str| hash.get(f).map(|v| v.parse::<i64>()).transpose().map(Option::unwrap_or_default);
    Ok(Some(Entry {
        conversation_id,
        peer_id: hash.get("peer").map(|p| p.parse()).transpose()?.unwrap_or_default(),
        last_seq: num("last_seq")?,
        last_message: hash.get("last_message").map(|m| serde_json::from_str(m)).transpose()?,
        unread: num("unread")?,
        my_delivered: num("my_delivered")?,
        my_read: num("my_read")?,
        peer_delivered: num("peer_delivered")?,
        peer_read: num("peer_read")?,
        updated_at: DateTime::from_timestamp_micros(updated.parse()?).unwrap_or_default(),
    }))
}

/// Every projection key with its content, in a canonical text form.
pub async fn dump(ctx: &AppContext) -> anyhow::Result<BTreeMap<String, String>> {
    let client = ctx.redis.next();
    let found = crate::redis::scan_all(client, ctx.keys.all_projections()).await?;
    let prefix_len = ctx.keys.prefix().len();
    let mut out = BTreeMap::new();
    for key in found {
        let name = key.as_str().unwrap_or_default().to_owned();
        let kind: String = client.r#type(&name).await?;
        let content = match kind.as_str() {
            "hash" => {
                let map: HashMap<String, String> = client.hgetall(&name).await?;
                format!("{:?}", map.into_iter().collect::<BTreeMap<_, _>>())
            }
            "zset" => {
                let items: Vec<(String, f64)> = client.zrange(&name, 0, -1, None, false, None, true).await?;
                format!("{items:?}")
            }
            other => format!("<{other}>"),
        };
        out.insert(name[prefix_len..].to_owned(), content);
    }
    Ok(out)
}
