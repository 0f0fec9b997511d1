//! Applies events to the per-user projections, idempotently and in any order.
//!
//! The relay publishes in claim order, not commit order, and a crashed
//! consumer's events are re-delivered, so an event may arrive late or twice.
//! Every update is therefore a merge that commutes: `last_seq` is the last
//! applied seq of the entry and only a higher seq replaces the preview;
//! markers take the maximum; unread is the set of seqs to the user above
//! their read marker. A Lua script keeps each merge atomic, so concurrent
//! consumers never interleave inside one.
//!
//! One script call carries many entries ([`apply_merges`]): every event makes
//! two merges (one per member), and a call costs Redis and Duet a round trip
//! and a pair of syscalls each, far more than the merge itself. A batch's
//! merges into the same entry are folded first ([`Fold`]), so the script
//! visits each entry once however many events touched it: markers take the
//! maximum, unread seqs are a union and only the newest message is encoded
//! for the preview. A call spans users, so it needs one Redis, not a cluster
//! (like the presence sweep).

use duet_common::ids::{ConversationId, UserId};
use std::collections::HashMap;
use std::sync::LazyLock;

use duet_common::AppContext;
use duet_common::domain::Message;
use duet_common::events::DomainEvent;
use fred::interfaces::ClientLike;
use fred::types::scripts::Script;
use sqlx::PgPool;

/// Folded merges, one per entry. KEYS = [list, entry, unread] per entry; ARGV =
/// per entry: conversation, peer, created at ('' if not in the batch), the four
/// markers (0 if not in the batch), the newest message's seq (0 if none), its
/// created at and its JSON, '1' if a rebuild relists the entry, then the count
/// and the seqs of messages to the entry's owner.
static APPLY: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(
        r#"
-- One HMGET, at most one HSET, and the sorted sets only when they change:
-- each redis.call costs more than the little it does. Nothing is allocated
-- per entry but the HMGET reply, the HSET arguments and the unread batch.
local fields = {'peer', 'last_seq', 'my_delivered', 'my_read', 'peer_delivered', 'peer_read', 'created_at', 'updated_at', 'unread'}
local PEER, LAST_SEQ, MY_READ, CREATED_AT, UPDATED_AT, UNREAD = 1, 2, 4, 7, 8, 9
-- Sets field i of the entry, in the read values and in the HSET arguments.
local function put(cur, set, i, v)
  cur[i] = v
  set[#set + 1] = fields[i]
  set[#set + 1] = v
end
local function merge(list, entry, unread, a)
  local cur = redis.call('HMGET', entry, unpack(fields))
  local set = {}
  if not cur[PEER] then put(cur, set, PEER, ARGV[a + 1]) end
  for i = 2, 6 do
    if not cur[i] then put(cur, set, i, '0') end
  end
  -- A rebuild's entry comes after the rebuild deleted every set, entry and
  -- list: it recounts and relists whatever the entry held already.
  local rebuilt = ARGV[a + 10] == '1'
  -- The unread count follows its set: recounted when the set changed or the
  -- entry has no count yet.
  local recount = rebuilt or not cur[UNREAD]
  -- The list follows last activity.
  local listed = rebuilt
  local created = ARGV[a + 2]
  if created ~= '' then
    if not cur[CREATED_AT] then put(cur, set, CREATED_AT, created) end
    if tonumber(cur[LAST_SEQ]) == 0 and cur[UPDATED_AT] ~= created then
      put(cur, set, UPDATED_AT, created)
      listed = true
    end
  end
  -- Markers, fields 3 to 6, are ARGV[a + 3] to ARGV[a + 6].
  local read_before = cur[MY_READ]
  for i = 3, 6 do
    if tonumber(ARGV[a + i]) > tonumber(cur[i]) then put(cur, set, i, ARGV[a + i]) end
  end
  if rebuilt or cur[MY_READ] ~= read_before then
    recount = redis.call('ZREMRANGEBYSCORE', unread, '-inf', cur[MY_READ]) > 0 or recount
  end
  local read = tonumber(cur[MY_READ])
  local n = tonumber(ARGV[a + 11])
  local add = {}
  for i = a + 12, a + 11 + n do
    if tonumber(ARGV[i]) > read then
      add[#add + 1] = ARGV[i]
      add[#add + 1] = ARGV[i]
    end
    -- (unpack's limit on a call's arguments)
    if #add >= 1000 or (i == a + 11 + n and #add > 0) then
      recount = redis.call('ZADD', unread, unpack(add)) > 0 or recount
      add = {}
    end
  end
  if tonumber(ARGV[a + 7]) > tonumber(cur[LAST_SEQ]) then
    put(cur, set, LAST_SEQ, ARGV[a + 7])
    set[#set + 1] = 'last_message'
    set[#set + 1] = ARGV[a + 9]
    put(cur, set, UPDATED_AT, ARGV[a + 8])
    listed = true
  end
  if recount then
    local count = tostring(redis.call('ZCARD', unread))
    if cur[UNREAD] ~= count then put(cur, set, UNREAD, count) end
  end
  if #set > 0 then redis.call('HSET', entry, unpack(set)) end
  if listed and cur[UPDATED_AT] then redis.call('ZADD', list, cur[UPDATED_AT], ARGV[a]) end
  return a + 12 + n
end
local k, a = 1, 1
while a <= #ARGV do
  a = merge(KEYS[k], KEYS[k + 1], KEYS[k + 2], a)
  k = k + 3
end
return 1
"#,
    )
});

/// Most entries in one script call, and most arguments: Redis runs nothing
/// else while a script runs, so a call stays well under a millisecond.
const ENTRIES_PER_CALL: usize = 64;
const ARGS_PER_CALL: usize = 4096;
/// Most unread seqs of one entry per script entry: a rebuilt entry with more
/// goes in several (merges commute, so the pieces may land in any order).
const SEQS_PER_ENTRY: usize = 1000;

/// One merge into one user's entry for one conversation.
#[derive(Clone, Debug)]
pub enum Op {
    Created {
        at_micros: i64,
    },
    Message {
        message: Message,
        to_user: bool,
    },
    Marker {
        field: Marker,
        seq: i64,
    },
    /// A rebuild relists the entry, with the seqs of its unread messages.
    Rebuilt {
        unread: Vec<i64>,
    },
    /// The message at `seq` changed: the preview follows `message` (its new
    /// state) if it is the entry's last message; `gone` (unsent, or hidden
    /// by the entry's owner) takes it out of the unread set. Applied after
    /// the batch's other merges ([`changes`]).
    Changed {
        seq: i64,
        message: Option<Message>,
        gone: bool,
    },
}

/// Which marker a [`Op::Marker`] moves, from the entry owner's point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Marker {
    MyDelivered,
    MyRead,
    PeerDelivered,
    PeerRead,
}

/// An [`Op`] on `user`'s entry for `conversation`, whose other member is `peer`.
#[derive(Clone, Debug)]
pub struct Merge {
    pub user: UserId,
    pub peer: UserId,
    pub conversation: ConversationId,
    pub op: Op,
}

/// Every merge of a batch into one entry, as one: what applying them one by
/// one would leave, since each merge commutes with the others.
#[derive(Debug)]
struct Fold<'a> {
    user: UserId,
    peer: UserId,
    conversation: ConversationId,
    created_micros: Option<i64>,
    /// In the order of [`Marker`]; 0 is no news.
    markers: [i64; 4],
    newest: Option<&'a Message>,
    /// Seqs of messages to the entry's owner.
    to_user: Vec<i64>,
    rebuilt: bool,
}

impl<'a> Fold<'a> {
    fn new(merge: &Merge) -> Self {
        Fold {
            user: merge.user,
            peer: merge.peer,
            conversation: merge.conversation,
            created_micros: None,
            markers: [0; 4],
            newest: None,
            to_user: Vec::new(),
            rebuilt: false,
        }
    }

    fn add(&mut self, op: &'a Op) {
        match op {
            Op::Created { at_micros } => self.created_micros = Some(*at_micros),
            Op::Message { message, to_user } => {
                if *to_user {
                    self.to_user.push(message.seq);
                }
                if self.newest.is_none_or(|newest| message.seq > newest.seq) {
                    self.newest = Some(message);
                }
            }
            Op::Marker { field, seq } => {
                let marker = &mut self.markers[*field as usize];
                *marker = (*marker).max(*seq);
            }
            Op::Rebuilt { unread } => {
                self.to_user.extend_from_slice(unread);
                self.rebuilt = true;
            }
            // Never folded (see `fold`).
            Op::Changed { .. } => {}
        }
    }

    /// The script's arguments for this entry, in pieces of at most
    /// [`SEQS_PER_ENTRY`] unread seqs (the first piece carries the rest).
    fn push_args(&self, args: &mut Vec<String>) -> anyhow::Result<usize> {
        let mut pieces = 0;
        let mut seqs = self.to_user.chunks(SEQS_PER_ENTRY);
        loop {
            let piece = seqs.next().unwrap_or_default();
            let first = pieces == 0;
            args.extend([self.conversation.to_string(), self.peer.to_string()]);
            args.push(self.created_micros.filter(|_| first).map(|at| at.to_string()).unwrap_or_default());
            args.extend(self.markers.iter().map(|seq| if first { seq.to_string() } else { "0".into() }));
            match self.newest.filter(|_| first) {
                Some(message) => args.extend([
                    message.seq.to_string(),
                    message.created_at.timestamp_micros().to_string(),
                    serde_json::to_string(message)?,
                ]),
                None => args.extend(["0".into(), String::new(), String::new()]),
            }
            args.push(if self.rebuilt { "1" } else { "0" }.into());
            args.push(piece.len().to_string());
            args.extend(piece.iter().map(i64::to_string));
            pieces += 1;
            if seqs.len() == 0 {
                return Ok(pieces);
            }
        }
    }
}

/// `merges` folded per entry (user and conversation), in order of first appearance.
fn fold(merges: &[Merge]) -> Vec<Fold<'_>> {
    let mut folds: Vec<Fold> = Vec::new();
    let mut index: HashMap<(UserId, ConversationId), usize> = HashMap::with_capacity(merges.len());
    // Changes are applied on their own, after the folds (`changes`).
    for merge in merges.iter().filter(|m| !matches!(m.op, Op::Changed { .. })) {
        let i = *index.entry((merge.user, merge.conversation)).or_insert_with(|| {
            folds.push(Fold::new(merge));
            folds.len() - 1
        });
        folds[i].add(&merge.op);
    }
    folds
}

/// Applies `merges`: folded per entry, a script call per chunk of entries,
/// the chunks concurrently (merges commute). `Err` if any call failed:
/// applying again is harmless.
/// In a Redis Cluster a call's keys must share a slot: there, the folds are
/// grouped by their user's slot, and a call never spans two.
pub async fn apply_merges(ctx: &AppContext, merges: &[Merge]) -> anyhow::Result<()> {
    let mut folds = fold(merges);
    let slot = |fold: &Fold<'_>| match ctx.redis.next().is_clustered() {
        true => fred::util::redis_keyslot(ctx.keys.conversation_list(fold.user).as_bytes()),
        false => 0,
    };
    folds.sort_by_cached_key(slot);
    let mut calls = Vec::new();
    let (mut keys, mut args) = (Vec::new(), Vec::new());
    for (i, fold) in folds.iter().enumerate() {
        let pieces = fold.push_args(&mut args)?;
        for _ in 0..pieces {
            keys.extend([
                ctx.keys.conversation_list(fold.user),
                ctx.keys.entry(fold.user, fold.conversation),
                ctx.keys.unread(fold.user, fold.conversation),
            ]);
        }
        let last = i + 1 == folds.len() || slot(&folds[i + 1]) != slot(fold);
        if last || keys.len() / 3 >= ENTRIES_PER_CALL || args.len() >= ARGS_PER_CALL {
            let (keys, args) = (std::mem::take(&mut keys), std::mem::take(&mut args));
            calls.push(async move { APPLY.evalsha_with_reload::<i64, _, _>(ctx.redis.next(), keys, args).await });
        }
    }
    futures_util::future::try_join_all(calls).await?;
    // After the folds: a change must find the message it changes in the preview.
    changes::apply(ctx, merges).await
}

/// The two members of a conversation (immutable, so cached for good).
#[derive(Clone)]
pub struct Pairs {
    db: PgPool,
    cache: moka::future::Cache<ConversationId, (UserId, UserId)>,
}

impl Pairs {
    pub fn new(db: PgPool) -> Self {
        Pairs { db, cache: moka::future::Cache::builder().max_capacity(100_000).build() }
    }

    /// The other member of `conversation`, seen from `user`.
    pub async fn peer_of(&self, conversation: ConversationId, user: UserId) -> anyhow::Result<UserId> {
        let db = self.db.clone();
        let (lo, hi) = self
            .cache
            .try_get_with(conversation, async move {
                sqlx::query_as::<_, (UserId, UserId)>("select user_lo, user_hi from conversations where id = $1")
                    .bind(conversation)
                    .fetch_optional(&db)
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("event for unknown conversation {conversation}"))
            })
            .await
            .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        Ok(if user == lo { hi } else { lo })
    }
}

/// The merges of one domain event: one into each member's entry (none for
/// a reaction, which no projection shows; one for a hide, the hider's).
pub async fn merges(pairs: &Pairs, event: DomainEvent) -> anyhow::Result<Vec<Merge>> {
    let merge = |user, peer, conversation, op| Merge { user, peer, conversation, op };
    Ok(match event {
        DomainEvent::MessageEdited { message } | DomainEvent::MessageDeleted { message } => {
            let (c, s, r, seq) = (message.conversation_id, message.sender_id, message.receiver_id, message.seq);
            let gone = message.deleted_at.is_some();
            vec![
                merge(s, r, c, Op::Changed { seq, message: Some(message.clone()), gone: false }),
                merge(r, s, c, Op::Changed { seq, message: Some(message), gone }),
            ]
        }
        DomainEvent::MessageHidden { conversation_id: c, user_id, seq, .. } => {
            let peer = pairs.peer_of(c, user_id).await?;
            vec![merge(user_id, peer, c, Op::Changed { seq, message: None, gone: true })]
        }
        DomainEvent::ReactionChanged { .. } => Vec::new(),
        other => pairs_of(pairs, other).await?.into(),
    })
}

/// The merges of an event that touches both members' entries alike.
async fn pairs_of(pairs: &Pairs, event: DomainEvent) -> anyhow::Result<[Merge; 2]> {
    let merge = |user, peer, conversation, op| Merge { user, peer, conversation, op };
    Ok(match event {
        DomainEvent::ConversationCreated { conversation_id: c, user_lo, user_hi, at } => {
            let at_micros = at.timestamp_micros();
            [merge(user_lo, user_hi, c, Op::Created { at_micros }), merge(user_hi, user_lo, c, Op::Created { at_micros })]
        }
        DomainEvent::MessageAppended { message } => {
            let (c, s, r) = (message.conversation_id, message.sender_id, message.receiver_id);
            [
                merge(s, r, c, Op::Message { message: message.clone(), to_user: false }),
                merge(r, s, c, Op::Message { message, to_user: true }),
            ]
        }
        DomainEvent::DeliveredUpTo { conversation_id: c, user_id, seq, .. } => {
            let peer = pairs.peer_of(c, user_id).await?;
            [
                merge(user_id, peer, c, Op::Marker { field: Marker::MyDelivered, seq }),
                merge(peer, user_id, c, Op::Marker { field: Marker::PeerDelivered, seq }),
            ]
        }
        DomainEvent::ReadUpTo { conversation_id: c, user_id, seq, .. } => {
            let peer = pairs.peer_of(c, user_id).await?;
            [
                merge(user_id, peer, c, Op::Marker { field: Marker::MyRead, seq }),
                merge(peer, user_id, c, Op::Marker { field: Marker::PeerRead, seq }),
            ]
        }
        other => anyhow::bail!("`{}` is not an event of both members", other.event_type()),
    })
}

/// Applies one domain event to both members' projections.
pub async fn apply_event(ctx: &AppContext, pairs: &Pairs, event: DomainEvent) -> anyhow::Result<()> {
    apply_merges(ctx, &merges(pairs, event).await?).await
}

mod changes;
#[cfg(test)]
mod tests;
