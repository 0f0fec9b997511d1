-- Presence privacy, blocking and reporting.
--
-- - `users.presence_visibility`: who sees the user's presence and last
--   seen: `everyone`, `contacts` (default) or `nobody`.
-- - `contacts`: (user, contact) once the user has sent the contact a
--   message; written by `duet_append` on the pair's first message.
-- - `blocks`: (blocker, blocked). A block either way stops new messages
--   (in `duet_append`, which now also answers a `refusal`) and hides
--   presence both ways.
-- - `reports`: reports of users and messages, kept for moderation.
-- - `presence_visible(viewer, target)`: the one definition of who sees
--   whose presence, used by every read and every fan-out.

alter table users add column presence_visibility text not null default 'contacts',
    add constraint users_presence_visibility_known check (presence_visibility in ('everyone', 'contacts', 'nobody'));

create table contacts (
    user_id    uuid not null references users (id),
    contact_id uuid not null references users (id),
    -- when user_id first sent contact_id a message
    since      timestamptz not null,
    primary key (user_id, contact_id)
);

insert into contacts (user_id, contact_id, since)
select m.sender_id, m.receiver_id, min(m.created_at) from messages m group by m.sender_id, m.receiver_id;

create table blocks (
    blocker_id uuid not null references users (id),
    blocked_id uuid not null references users (id),
    created_at timestamptz not null default now(),
    primary key (blocker_id, blocked_id),
    constraint blocks_not_self check (blocker_id <> blocked_id)
);
-- "Who blocked me": the reverse probe of presence and the send check is
-- served by the primary key (both columns are always given).

create table reports (
    id               uuid primary key,
    reporter_id      uuid not null references users (id),
    reported_user_id uuid not null references users (id),
    -- set when a message is reported
    message_id       uuid references messages (id),
    reason           text not null,
    details          text,
    created_at       timestamptz not null default now(),
    constraint reports_reason_known check (reason in ('spam', 'harassment', 'hate', 'sexual_content', 'violence', 'impersonation', 'scam', 'other'))
);
create index reports_reported_user_idx on reports (reported_user_id, created_at);

create function presence_visible(viewer uuid, target uuid) returns boolean
language sql stable
as $$
    select viewer = target or (
        exists (select 1 from users v where v.id = viewer and v.presence_visibility <> 'nobody')
        and exists (
            select 1 from users t
            where t.id = target
              and (t.presence_visibility = 'everyone'
                   or (t.presence_visibility = 'contacts'
                       and exists (select 1 from contacts k where k.user_id = target and k.contact_id = viewer)))
        )
        and not exists (select 1 from blocks b where b.blocker_id = target and b.blocked_id = viewer)
        and not exists (select 1 from blocks b where b.blocker_id = viewer and b.blocked_id = target)
    )
$$;

-- `duet_append` as in 0008, plus: a block between the pair refuses a new
-- message (the `refusal` column), and the first message of a sender to a
-- receiver records the contact. The result gains a column, so the
-- function is dropped and created again.
drop function duet_append(uuid[], uuid[], uuid[], text[], text[], jsonb[], text[], timestamptz, text, int);

create function duet_append(
    ids uuid[],
    conversation_ids uuid[],
    sender_ids uuid[],
    types text[],
    texts text[],
    payloads jsonb[],
    client_msg_ids text[],
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
    created_at timestamptz
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
        from unnest(ids, conversation_ids, sender_ids, types, texts, payloads, client_msg_ids)
            with ordinality as r(id, conversation_id, sender_id, type, text, payload, client_msg_id, ord)
    ),
    conv as (
        select c.id, c.user_lo, c.user_hi, c.last_seq
        from conversations c where c.id = any(duet_append.conversation_ids)
    ),
    -- Each request whose sender is a member, with its receiver.
    sendable as (
        select r.*, c.last_seq,
            case when r.sender_id = c.user_lo then c.user_hi else c.user_lo end as receiver_id
        from req r
        join conv c on c.id = r.conversation_id and r.sender_id in (c.user_lo, c.user_hi)
    ),
    -- A block between sender and receiver, either way, stops a new message:
    -- 'blocked' when the receiver blocked the sender, 'blocking' when the
    -- sender blocked the receiver. Two primary-key probes per request.
    barred as (
        select s.ord, case
            when exists (select 1 from blocks b where b.blocker_id = s.receiver_id and b.blocked_id = s.sender_id) then 'blocked'
            when exists (select 1 from blocks b where b.blocker_id = s.sender_id and b.blocked_id = s.receiver_id) then 'blocking'
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
            s.id, s.conversation_id, s.sender_id, s.type, s.text, s.payload, s.client_msg_id, s.ord,
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
        insert into messages (id, conversation_id, seq, sender_id, receiver_id, type, text, payload, client_msg_id, created_at)
        select n.id, n.conversation_id, n.seq, n.sender_id, n.receiver_id, n.type, n.text, n.payload, n.client_msg_id, at_time
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
                'createdAt', at_text))
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
        select s.* from stored s
        union all
        select i.* from inserted i
    )
    select r.ord,
           exists (select 1 from conv c where c.id = r.conversation_id and r.sender_id in (c.user_lo, c.user_hi)),
           b.refusal,
           h.id, h.conversation_id, h.seq, h.sender_id, h.receiver_id, h.type, h.text, h.payload, h.client_msg_id, h.created_at
    from req r
    left join barred b on b.ord = r.ord
    left join held h on h.sender_id = r.sender_id and h.client_msg_id = r.client_msg_id
    order by r.ord;
end
$$;
