-- Message changes: edit, unsend (delete for everyone), delete for me,
-- replies and reactions.
--
-- - `messages` gains `reply_to` (a message of the same conversation,
--   checked by `duet_append`), `edited_at` and `edit_count`, `deleted_at`
--   (an unsent message is a tombstone: its content columns are null) and
--   `change_seq`, the conversation's change position of the message's
--   latest change (null if never changed).
-- - `conversations.last_change`: a per-conversation change counter, moved
--   under the conversation row lock by every edit, unsend, delete-for-me
--   and reaction change. It is the sync cursor for changes to messages a
--   device already holds, as `last_seq` is the cursor for new ones.
-- - `message_reactions`: one emoji per user per message.
-- - `message_hides`: messages a user deleted for themselves only.
-- - `message_edits`: the idempotency keys of edits (no old text is kept:
--   an unsend must be able to erase every copy of the content).
-- - `outbox_message_idx` and `outbox_reply_idx`: find the outbox events
--   carrying a message's content (its own events, and the previews of the
--   replies quoting it), so an unsend erases them too.
-- - `unread_messages` no longer counts unsent messages or those the
--   member hid.
-- - `duet_append` takes the reply targets (`reply_tos`), refuses a reply
--   to a message that is not a live message of the same conversation
--   (`refusal` = 'reply_not_found'), writes the reply preview into the
--   event and returns it with the change columns of the stored message.

alter table messages
    add column reply_to uuid,
    add column edited_at timestamptz,
    add column edit_count int not null default 0,
    add column deleted_at timestamptz,
    add column change_seq bigint;

-- Sync's "changes since": the changed messages of a conversation by change position.
create index messages_change_idx on messages (conversation_id, change_seq) where change_seq is not null;

alter table conversations add column last_change bigint not null default 0;

create table message_reactions (
    message_id      uuid not null references messages (id) on delete cascade,
    user_id         uuid not null references users (id),
    conversation_id uuid not null,
    emoji           text not null,
    created_at      timestamptz not null,
    primary key (message_id, user_id)
);

create table message_hides (
    user_id         uuid not null references users (id),
    message_id      uuid not null references messages (id) on delete cascade,
    conversation_id uuid not null,
    -- the conversation's change position of the hide (sync's cursor)
    change_seq      bigint not null,
    created_at      timestamptz not null,
    primary key (user_id, message_id)
);
create index message_hides_sync_idx on message_hides (user_id, conversation_id, change_seq);

create table message_edits (
    sender_id      uuid not null references users (id),
    client_edit_id text not null,
    message_id     uuid not null references messages (id) on delete cascade,
    -- the message's edit count after this edit
    edit_count     int not null,
    created_at     timestamptz not null,
    primary key (sender_id, client_edit_id)
);

create index outbox_message_idx on outbox ((payload #>> '{message,id}'))
    where event_type in ('message_appended', 'message_edited');
-- Replies carry the quoted text in their preview: only replies are indexed.
create index outbox_reply_idx on outbox ((payload #>> '{message,replyTo,id}'))
    where payload #>> '{message,replyTo,id}' is not null;

create or replace view unread_messages as
select cm.user_id, m.conversation_id, m.seq, m.id as message_id, m.text
from conversation_members cm
join messages m
  on m.conversation_id = cm.conversation_id
 and m.receiver_id = cm.user_id
 and m.seq > cm.last_read_seq
where m.deleted_at is null
  and not exists (select 1 from message_hides h where h.user_id = cm.user_id and h.message_id = m.id);

drop function duet_append(uuid[], uuid[], uuid[], text[], text[], jsonb[], text[], timestamptz, text, int);

-- `duet_append` as in 0013, plus replies: `reply_tos` (null elements for
-- messages that reply to nothing). A reply costs one primary-key probe; a
-- message that replies to nothing costs nothing more.
create function duet_append(
    ids uuid[],
    conversation_ids uuid[],
    sender_ids uuid[],
    types text[],
    texts text[],
    payloads jsonb[],
    client_msg_ids text[],
    reply_tos uuid[],
    at_time timestamptz,
    at_text text,
    event_version int
) returns table (
    ord bigint,
    member boolean,
    refusal text,
    id uuid,
    conversation_id uuid,
    seq bigint,
    sender_id uuid,
    receiver_id uuid,
    type text,
    text text,
    payload jsonb,
    client_msg_id text,
    created_at timestamptz,
    reply_to jsonb,
    edited_at timestamptz,
    edit_count int,
    deleted_at timestamptz,
    change_seq bigint
) language plpgsql
set plan_cache_mode = force_generic_plan
set enable_seqscan = off
as $$
#variable_conflict use_column
begin
    -- Locked in id order, so concurrent batches cannot deadlock. The next
    -- statement takes a new snapshot: every append that held these locks
    -- before us is visible to its idempotency read.
    perform 1 from conversations c where c.id = any(duet_append.conversation_ids) order by c.id for update;

    return query
    with req as (
        select r.*
        from unnest(ids, conversation_ids, sender_ids, types, texts, payloads, client_msg_ids, reply_tos)
            with ordinality as r(id, conversation_id, sender_id, type, text, payload, client_msg_id, reply_to, ord)
    ),
    conv as (
        select c.id, c.user_lo, c.user_hi, c.last_seq
        from conversations c where c.id = any(duet_append.conversation_ids)
    ),
    -- Each request whose sender is a member, with its receiver and, for a
    -- reply, the preview of the message it quotes (null if that is not a
    -- live message of the conversation).
    sendable as (
        select r.*, c.last_seq,
            case when r.sender_id = c.user_lo then c.user_hi else c.user_lo end as receiver_id,
            case when r.reply_to is not null then (
                select jsonb_build_object('id', q.id, 'seq', q.seq, 'senderId', q.sender_id, 'type', q.type, 'text', q.text)
                from messages q
                where q.id = r.reply_to and q.conversation_id = r.conversation_id and q.deleted_at is null
                limit 1
            ) end as preview
        from req r
        join conv c on c.id = r.conversation_id and r.sender_id in (c.user_lo, c.user_hi)
    ),
    -- A block between sender and receiver, either way, stops a new message:
    -- 'blocked' when the receiver blocked the sender, 'blocking' when the
    -- sender blocked the receiver. Two primary-key probes per request.
    -- A reply to nothing the conversation holds: 'reply_not_found'.
    barred as (
        select s.ord, case
            when exists (select 1 from blocks b where b.blocker_id = s.receiver_id and b.blocked_id = s.sender_id) then 'blocked'
            when exists (select 1 from blocks b where b.blocker_id = s.sender_id and b.blocked_id = s.receiver_id) then 'blocking'
            when s.reply_to is not null and s.preview is null then 'reply_not_found'
        end as refusal
        from sendable s
    ),
    stored as (
        select m.*
        from req r
        cross join lateral (
            select * from messages m where m.sender_id = r.sender_id and m.client_msg_id = r.client_msg_id
            limit 1
        ) m
    ),
    -- The first request of each new key whose sender is a member and not
    -- barred stores it; later ones in the batch replay it.
    fresh as (
        select distinct on (s.sender_id, s.client_msg_id)
            s.id, s.conversation_id, s.sender_id, s.type, s.text, s.payload, s.client_msg_id, s.reply_to, s.preview, s.ord,
            s.receiver_id, s.last_seq
        from sendable s
        join barred b on b.ord = s.ord and b.refusal is null
        where not exists (select 1 from stored st where st.sender_id = s.sender_id and st.client_msg_id = s.client_msg_id)
        order by s.sender_id, s.client_msg_id, s.ord
    ),
    numbered as (
        select f.*, f.last_seq + row_number() over (partition by f.conversation_id order by f.ord) as seq
        from fresh f
    ),
    inserted as (
        insert into messages (id, conversation_id, seq, sender_id, receiver_id, type, text, payload, client_msg_id, created_at, reply_to)
        select n.id, n.conversation_id, n.seq, n.sender_id, n.receiver_id, n.type, n.text, n.payload, n.client_msg_id, at_time, n.reply_to
        from numbered n
        returning messages.*
    ),
    moved as (
        update conversations c set last_seq = n.last_seq, updated_at = at_time
        from (select n.conversation_id, max(n.seq) as last_seq from numbered n group by n.conversation_id) n
        where c.id = n.conversation_id
    ),
    events as (
        insert into outbox (event_type, conversation_id, payload)
        select 'message_appended', n.conversation_id, jsonb_build_object(
            'version', event_version,
            'type', 'message_appended',
            'message', jsonb_build_object(
                'id', n.id, 'conversationId', n.conversation_id, 'seq', n.seq,
                'senderId', n.sender_id, 'receiverId', n.receiver_id, 'type', n.type,
                'text', n.text, 'payload', n.payload, 'clientMsgId', n.client_msg_id,
                'createdAt', at_text, 'replyTo', n.preview))
        from numbered n
        order by n.conversation_id, n.seq
    ),
    -- The sender has now messaged the receiver: a contact, for presence
    -- visibility. Written on a pair's first message only; after that a
    -- primary-key probe finds it and writes nothing.
    contacted as (
        insert into contacts (user_id, contact_id, since)
        select distinct n.sender_id, n.receiver_id, at_time from numbered n
        on conflict do nothing
    ),
    held as (
        select s.id, s.conversation_id, s.seq, s.sender_id, s.receiver_id, s.type, s.text, s.payload, s.client_msg_id,
               s.created_at, s.edited_at, s.edit_count, s.deleted_at, s.change_seq,
               case when s.reply_to is not null then (
                   select jsonb_build_object('id', q.id, 'seq', q.seq, 'senderId', q.sender_id, 'type', q.type, 'text', q.text,
                                             'deletedAt', q.deleted_at)
                   from messages q where q.id = s.reply_to limit 1
               ) end as preview
        from stored s
        union all
        select i.id, i.conversation_id, i.seq, i.sender_id, i.receiver_id, i.type, i.text, i.payload, i.client_msg_id,
               i.created_at, i.edited_at, i.edit_count, i.deleted_at, i.change_seq, n.preview
        from inserted i join numbered n on n.id = i.id
    )
    select r.ord,
           exists (select 1 from conv c where c.id = r.conversation_id and r.sender_id in (c.user_lo, c.user_hi)),
           b.refusal,
           h.id, h.conversation_id, h.seq, h.sender_id, h.receiver_id, h.type, h.text, h.payload, h.client_msg_id, h.created_at,
           h.preview, h.edited_at, h.edit_count, h.deleted_at, h.change_seq
    from req r
    left join barred b on b.ord = r.ord
    left join held h on h.sender_id = r.sender_id and h.client_msg_id = r.client_msg_id
    order by r.ord;
end
$$;
