//! Applies events to the per-user projections, idempotently and in any order.
//!
//! The relay publishes in claim order, not commit order, and a crashed
//! consumer's events are re-delivered, so an event may arrive late or twice.
//! Every update is therefore a merge that commutes: `last_seq` is the last
//! applied seq of the entry and only a higher seq replaces the preview;
//! markers take the maximum; unread is the set of seqs to the user above
//! their read marker. One Lua script per (event, member) keeps each merge
//! atomic, so concurrent consumers never interleave inside one.

use std::sync::LazyLock;

use duet_common::AppContext;
use duet_common::domain::Message;
use duet_common::events::DomainEvent;
use fred::types::scripts::Script;
use sqlx::PgPool;
use uuid::Uuid;

use crate::keys;

/// KEYS = [list, entry, unread]; ARGV = [op, conversation, peer, ...op args].
static APPLY: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(
        r#"
local op, conv = ARGV[1], ARGV[2]
local entry = KEYS[2]
redis.call('HSETNX', entry, 'peer', ARGV[3])
for _, f in ipairs({'last_seq', 'my_delivered', 'my_read', 'peer_delivered', 'peer_read'}) do
  redis.call('HSETNX', entry, f, '0')
end
local function num(f) return tonumber(redis.call('HGET', entry, f)) end
if op == 'created' then
  -- ARGV[4] = created at (µs)
  redis.call('HSETNX', entry, 'created_at', ARGV[4])
  if num('last_seq') == 0 then redis.call('HSET', entry, 'updated_at', ARGV[4]) end
elseif op == 'message' then
  -- ARGV[4] = seq, ARGV[5] = created at (µs), ARGV[6] = message JSON, ARGV[7] = '1' if to this user
  local seq = tonumber(ARGV[4])
  if ARGV[7] == '1' and seq > num('my_read') then redis.call('ZADD', KEYS[3], ARGV[4], ARGV[4]) end
  if seq > num('last_seq') then
    redis.call('HSET', entry, 'last_seq', ARGV[4], 'last_message', ARGV[6], 'updated_at', ARGV[5])
  end
elseif op == 'marker' then
  -- ARGV[4] = field, ARGV[5] = seq
  if tonumber(ARGV[5]) > num(ARGV[4]) then redis.call('HSET', entry, ARGV[4], ARGV[5]) end
  if ARGV[4] == 'my_read' then redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', num('my_read')) end
elseif op == 'unread' then
  -- ARGV[4..] = seqs of messages to this user (from a rebuild)
  local read = num('my_read')
  for i = 4, #ARGV do
    if tonumber(ARGV[i]) > read then redis.call('ZADD', KEYS[3], ARGV[i], ARGV[i]) end
  end
end
redis.call('HSET', entry, 'unread', redis.call('ZCARD', KEYS[3]))
-- The list follows the entry, whatever came first: an entry created while a
-- rebuild was scanning survives its delete, while the list it was in does not.
local updated = redis.call('HGET', entry, 'updated_at')
if updated then redis.call('ZADD', KEYS[1], updated, conv) end
return 1
"#,
    )
});

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

/// Applies one op to `user`'s entry for `conversation` (whose other member is `peer`).
pub async fn apply_op(ctx: &AppContext, user: Uuid, peer: Uuid, conversation: Uuid, op: Op) -> anyhow::Result<()> {
    let keys = vec![
        keys::list(&ctx.keys, user),
        keys::entry(&ctx.keys, user, conversation),
        keys::unread(&ctx.keys, user, conversation),
    ];
    let mut args: Vec<String> = vec![String::new(), conversation.to_string(), peer.to_string()];
    match op {
        Op::Created { at_micros } => {
            args[0] = "created".into();
            args.push(at_micros.to_string());
        }
        Op::Message { message, to_user } => {
            args[0] = "message".into();
            args.push(message.seq.to_string());
            args.push(message.created_at.timestamp_micros().to_string());
            args.push(serde_json::to_string(&message)?);
            args.push(if to_user { "1" } else { "0" }.into());
        }
        Op::Marker { field, seq } => {
            args[0] = "marker".into();
            args.push(field.field().into());
            args.push(seq.to_string());
        }
        Op::Unread { seqs } => {
            args[0] = "unread".into();
            args.extend(seqs.iter().map(i64::to_string));
        }
    }
    let _: i64 = APPLY.evalsha_with_reload(ctx.redis.next(), keys, args).await?;
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

/// Applies one domain event to both members' projections.
pub async fn apply_event(ctx: &AppContext, pairs: &Pairs, event: DomainEvent) -> anyhow::Result<()> {
    match event {
        DomainEvent::ConversationCreated { conversation_id, user_lo, user_hi, at } => {
            let at_micros = at.timestamp_micros();
            let (a, b) = tokio::join!(
                apply_op(ctx, user_lo, user_hi, conversation_id, Op::Created { at_micros }),
                apply_op(ctx, user_hi, user_lo, conversation_id, Op::Created { at_micros }),
            );
            a.and(b)
        }
        DomainEvent::MessageAppended { message } => {
            let (c, s, r) = (message.conversation_id, message.sender_id, message.receiver_id);
            let (a, b) = tokio::join!(
                apply_op(ctx, s, r, c, Op::Message { message: message.clone(), to_user: false }),
                apply_op(ctx, r, s, c, Op::Message { message: message.clone(), to_user: true }),
            );
            a.and(b)
        }
        DomainEvent::DeliveredUpTo { conversation_id, user_id, seq, .. } => {
            markers(ctx, pairs, conversation_id, user_id, seq, Marker::MyDelivered, Marker::PeerDelivered).await
        }
        DomainEvent::ReadUpTo { conversation_id, user_id, seq, .. } => {
            markers(ctx, pairs, conversation_id, user_id, seq, Marker::MyRead, Marker::PeerRead).await
        }
    }
}

async fn markers(
    ctx: &AppContext,
    pairs: &Pairs,
    conversation: Uuid,
    user: Uuid,
    seq: i64,
    mine: Marker,
    theirs: Marker,
) -> anyhow::Result<()> {
    let peer = pairs.peer_of(conversation, user).await?;
    let (a, b) = tokio::join!(
        apply_op(ctx, user, peer, conversation, Op::Marker { field: mine, seq }),
        apply_op(ctx, peer, user, conversation, Op::Marker { field: theirs, seq }),
    );
    a.and(b)
}
