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
//! One script call carries many merges ([`apply_merges`]): every event makes
//! two (one per member), and a call costs Redis and Duet a round trip and a
//! pair of syscalls each, far more than the merge itself. A call spans users,
//! so it needs one Redis, not a cluster (like the presence sweep).

use std::sync::LazyLock;

use duet_common::AppContext;
use duet_common::domain::Message;
use duet_common::events::DomainEvent;
use fred::types::scripts::Script;
use sqlx::PgPool;
use uuid::Uuid;

use crate::keys;

/// Merges applied in order. KEYS = [list, entry, unread] per merge; ARGV = per
/// merge its argument count n, then n arguments: op, conversation, peer, ...op args.
static APPLY: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(
        r#"
-- One HMGET, at most one HSET, and the sorted sets only when they change:
-- each redis.call costs more than the little it does, and a merge runs for
-- every member of every event. Nothing is allocated per merge but the
-- HMGET reply and the HSET arguments.
local fields = {'peer', 'last_seq', 'my_delivered', 'my_read', 'peer_delivered', 'peer_read', 'created_at', 'updated_at', 'unread'}
local PEER, LAST_SEQ, MY_READ, CREATED_AT, UPDATED_AT, UNREAD = 1, 2, 4, 7, 8, 9
local index = {}
for i, f in ipairs(fields) do index[f] = i end
-- Sets field i of the entry, in the read values and in the HSET arguments.
local function put(cur, set, i, v)
  cur[i] = v
  set[#set + 1] = fields[i]
  set[#set + 1] = v
end
local function merge(list, entry, unread, a, n)
  local op = ARGV[a]
  local cur = redis.call('HMGET', entry, unpack(fields))
  local set = {}
  if not cur[PEER] then put(cur, set, PEER, ARGV[a + 2]) end
  for i = 2, 6 do
    if not cur[i] then put(cur, set, i, '0') end
  end
  -- The unread count follows its set: recounted when the set changed, when
  -- the entry has no count yet, and on a rebuild's merge (which comes after
  -- the rebuild deleted every set and entry).
  local recount = not cur[UNREAD]
  if op == 'created' then
    -- ARGV[a+3] = created at (µs)
    if not cur[CREATED_AT] then put(cur, set, CREATED_AT, ARGV[a + 3]) end
    if tonumber(cur[LAST_SEQ]) == 0 then put(cur, set, UPDATED_AT, ARGV[a + 3]) end
  elseif op == 'message' then
    -- ARGV[a+3] = seq, [a+4] = created at (µs), [a+5] = message JSON, [a+6] = '1' if to this user
    local seq = tonumber(ARGV[a + 3])
    if ARGV[a + 6] == '1' and seq > tonumber(cur[MY_READ]) then
      recount = redis.call('ZADD', unread, ARGV[a + 3], ARGV[a + 3]) > 0 or recount
    end
    if seq > tonumber(cur[LAST_SEQ]) then
      put(cur, set, LAST_SEQ, ARGV[a + 3])
      set[#set + 1] = 'last_message'
      set[#set + 1] = ARGV[a + 5]
      put(cur, set, UPDATED_AT, ARGV[a + 4])
    end
  elseif op == 'marker' then
    -- ARGV[a+3] = field, [a+4] = seq
    local i = index[ARGV[a + 3]]
    if tonumber(ARGV[a + 4]) > tonumber(cur[i]) then put(cur, set, i, ARGV[a + 4]) end
    if i == MY_READ then
      recount = redis.call('ZREMRANGEBYSCORE', unread, '-inf', cur[MY_READ]) > 0 or recount
    end
  elseif op == 'unread' then
    -- ARGV[a+3 ..] = seqs of messages to this user (from a rebuild)
    local read = tonumber(cur[MY_READ])
    for i = a + 3, a + n - 1 do
      if tonumber(ARGV[i]) > read then redis.call('ZADD', unread, ARGV[i], ARGV[i]) end
    end
    recount = true
  end
  if recount then
    local count = tostring(redis.call('ZCARD', unread))
    if cur[UNREAD] ~= count then put(cur, set, UNREAD, count) end
  end
  if #set > 0 then redis.call('HSET', entry, unpack(set)) end
  -- The list follows the entry, whatever came first: an entry created while a
  -- rebuild was scanning survives its delete, while the list it was in does not.
  if cur[UPDATED_AT] then redis.call('ZADD', list, cur[UPDATED_AT], ARGV[a + 1]) end
end
local k, a = 1, 1
while a <= #ARGV do
  local n = tonumber(ARGV[a])
  merge(KEYS[k], KEYS[k + 1], KEYS[k + 2], a + 1, n)
  k, a = k + 3, a + 1 + n
end
return 1
"#,
    )
});

/// Most merges in one script call, and most arguments: Redis runs nothing
/// else while a script runs, so a call stays well under a millisecond.
const MERGES_PER_CALL: usize = 64;
const ARGS_PER_CALL: usize = 4096;

/// One merge into one user's entry for one conversation.
#[derive(Clone, Debug)]
pub enum Op {
    Created { at_micros: i64 },
    Message { message: Message, to_user: bool },
    Marker { field: Marker, seq: i64 },
    Unread { seqs: Vec<i64> },
}

/// Which marker a [`Op::Marker`] moves, from the entry owner's point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Marker {
    MyDelivered,
    MyRead,
    PeerDelivered,
    PeerRead,
}

impl Marker {
    fn field(self) -> &'static str {
        match self {
            Marker::MyDelivered => "my_delivered",
            Marker::MyRead => "my_read",
            Marker::PeerDelivered => "peer_delivered",
            Marker::PeerRead => "peer_read",
        }
    }
}

/// An [`Op`] on `user`'s entry for `conversation`, whose other member is `peer`.
#[derive(Clone, Debug)]
pub struct Merge {
    pub user: Uuid,
    pub peer: Uuid,
    pub conversation: Uuid,
    pub op: Op,
}

impl Merge {
    /// The op's arguments, after the op's name, conversation and peer.
    fn push_args(&self, args: &mut Vec<String>) -> anyhow::Result<()> {
        let count = args.len();
        args.push(String::new());
        let name = match &self.op {
            Op::Created { .. } => "created",
            Op::Message { .. } => "message",
            Op::Marker { .. } => "marker",
            Op::Unread { .. } => "unread",
        };
        args.extend([name.to_owned(), self.conversation.to_string(), self.peer.to_string()]);
        match &self.op {
            Op::Created { at_micros } => args.push(at_micros.to_string()),
            Op::Message { message, to_user } => {
                args.push(message.seq.to_string());
                args.push(message.created_at.timestamp_micros().to_string());
                args.push(serde_json::to_string(message)?);
                args.push(if *to_user { "1" } else { "0" }.into());
            }
            Op::Marker { field, seq } => {
                args.push(field.field().into());
                args.push(seq.to_string());
            }
            Op::Unread { seqs } => args.extend(seqs.iter().map(i64::to_string)),
        }
        args[count] = (args.len() - count - 1).to_string();
        Ok(())
    }
}

/// Applies `merges`, a script call per chunk of them, the chunks concurrently
/// (merges commute). `Err` if any call failed: applying again is harmless.
pub async fn apply_merges(ctx: &AppContext, merges: &[Merge]) -> anyhow::Result<()> {
    let mut calls = Vec::new();
    let (mut keys, mut args) = (Vec::new(), Vec::new());
    for (i, merge) in merges.iter().enumerate() {
        keys.extend([
            keys::list(&ctx.keys, merge.user),
            keys::entry(&ctx.keys, merge.user, merge.conversation),
            keys::unread(&ctx.keys, merge.user, merge.conversation),
        ]);
        merge.push_args(&mut args)?;
        let last = i + 1 == merges.len();
        if last || keys.len() / 3 >= MERGES_PER_CALL || args.len() >= ARGS_PER_CALL {
            let (keys, args) = (std::mem::take(&mut keys), std::mem::take(&mut args));
            calls.push(async move { APPLY.evalsha_with_reload::<i64, _, _>(ctx.redis.next(), keys, args).await });
        }
    }
    futures_util::future::try_join_all(calls).await?;
    Ok(())
}

/// The two members of a conversation (immutable, so cached for good).
#[derive(Clone)]
pub struct Pairs {
    db: PgPool,
    cache: moka::future::Cache<Uuid, (Uuid, Uuid)>,
}

impl Pairs {
    pub fn new(db: PgPool) -> Self {
        Pairs { db, cache: moka::future::Cache::builder().max_capacity(100_000).build() }
    }

    /// The other member of `conversation`, seen from `user`.
    pub async fn peer_of(&self, conversation: Uuid, user: Uuid) -> anyhow::Result<Uuid> {
        let db = self.db.clone();
        let (lo, hi) = self
            .cache
            .try_get_with(conversation, async move {
                sqlx::query_as::<_, (Uuid, Uuid)>("select user_lo, user_hi from conversations where id = $1")
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

/// The merges of one domain event: one into each member's entry.
pub async fn merges(pairs: &Pairs, event: DomainEvent) -> anyhow::Result<[Merge; 2]> {
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
    })
}

/// Applies one domain event to both members' projections.
pub async fn apply_event(ctx: &AppContext, pairs: &Pairs, event: DomainEvent) -> anyhow::Result<()> {
    apply_merges(ctx, &merges(pairs, event).await?).await
}
