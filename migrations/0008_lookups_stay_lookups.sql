-- Key lookups that cannot turn into scans, whatever the statistics said
-- when a plan was made.
--
-- `duet_append` and `duet_receipts` run their cached generic plan (0005).
-- A plan made while `messages` looked empty joined the idempotency lookup
-- the other way round: it walked the whole (sender_id, client_msg_id)
-- index once per call and matched each entry against the batch. The plan
-- is kept until the statistics change, so on a new database every append
-- grew slower as the table grew (1.4 s per call at 55,000 messages, seen
-- with auto_explain). `limit 1` keeps each lateral lookup a subquery run
-- once per request, so it can only be an index probe; each key is unique,
-- so the result is the same. The member and conversation lookups of the
-- receipts get the same guard.
--
-- The functions are otherwise exactly as in 0005.

create or replace function duet_append(
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
    stored as (
        select m.*
        from req r
        cross join lateral (
            select * from messages m where m.sender_id = r.sender_id and m.client_msg_id = r.client_msg_id
            limit 1
        ) m
    ),
    -- The first request of each new key whose sender is a member stores it;
    -- later ones in the batch replay it.
    fresh as (
        select distinct on (r.sender_id, r.client_msg_id)
            r.id, r.conversation_id, r.sender_id, r.type, r.text, r.payload, r.client_msg_id, r.ord,
            case when r.sender_id = c.user_lo then c.user_hi else c.user_lo end as receiver_id,
            c.last_seq
        from req r
        join conv c on c.id = r.conversation_id and r.sender_id in (c.user_lo, c.user_hi)
        where not exists (select 1 from stored s where s.sender_id = r.sender_id and s.client_msg_id = r.client_msg_id)
        order by r.sender_id, r.client_msg_id, r.ord
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
    held as (
        select s.* from stored s
        union all
        select i.* from inserted i
    )
    select r.ord,
           exists (select 1 from conv c where c.id = r.conversation_id and r.sender_id in (c.user_lo, c.user_hi)),
           h.id, h.conversation_id, h.seq, h.sender_id, h.receiver_id, h.type, h.text, h.payload, h.client_msg_id, h.created_at
    from req r
    left join held h on h.sender_id = r.sender_id and h.client_msg_id = r.client_msg_id
    order by r.ord;
end
$$;

create or replace function duet_receipts(
    conversation_ids uuid[],
    user_ids uuid[],
    seqs bigint[],
    reads boolean[],
    at_time timestamptz,
    at_text text,
    event_version int
) returns table (
    ord bigint,
    member boolean,
    last_seq bigint,
    delivered bigint,
    read bigint,
    peer_id uuid,
    moved boolean
) language plpgsql
set plan_cache_mode = force_generic_plan
set enable_seqscan = off
as $$
#variable_conflict use_column
begin
    -- Member rows are locked in a fixed order, so concurrent batches apply
    -- one after the other and cannot deadlock; the next statement sees the
    -- markers they committed.
    -- (A nested loop takes the locks in its outer side's order.)
    perform 1
    from (
        select distinct r.conversation_id, r.user_id
        from unnest(conversation_ids, user_ids) as r(conversation_id, user_id)
        order by r.conversation_id, r.user_id
    ) r
    cross join lateral (
        select 1 from conversation_members m
        where m.conversation_id = r.conversation_id and m.user_id = r.user_id
        for update
    ) m;

    return query
    with req as (
        select r.*
        from unnest(conversation_ids, user_ids, seqs, reads) with ordinality as r(conversation_id, user_id, seq, is_read, ord)
    ),
    cur as (
        select distinct m.conversation_id, m.user_id, m.peer_id, m.last_delivered_seq, m.last_read_seq, c.last_seq
        from req r
        cross join lateral (
            select * from conversation_members m where m.conversation_id = r.conversation_id and m.user_id = r.user_id
            limit 1
        ) m
        cross join lateral (select c.last_seq from conversations c where c.id = r.conversation_id limit 1) c
    ),
    valid as (
        select r.ord, r.conversation_id, r.user_id, r.seq, r.is_read,
               c.peer_id, c.last_seq, c.last_delivered_seq as d0, c.last_read_seq as r0,
               coalesce(r.seq <= c.last_seq, false) as in_range
        from req r
        left join cur c on c.conversation_id = r.conversation_id and c.user_id = r.user_id
    ),
    -- Markers after each request and before it (greatest ignores nulls).
    running as (
        select v.*,
               greatest(v.d0, max(v.seq) filter (where v.in_range) over upto) as delivered,
               greatest(v.r0, max(v.seq) filter (where v.in_range and v.is_read) over upto) as read,
               greatest(v.d0, max(v.seq) filter (where v.in_range) over before) as delivered_before,
               greatest(v.r0, max(v.seq) filter (where v.in_range and v.is_read) over before) as read_before
        from valid v
        window upto as (partition by v.conversation_id, v.user_id order by v.ord rows between unbounded preceding and current row),
               before as (partition by v.conversation_id, v.user_id order by v.ord rows between unbounded preceding and 1 preceding)
    ),
    final as (
        select r.conversation_id, r.user_id, max(r.delivered) as delivered, max(r.read) as read, max(r.d0) as d0, max(r.r0) as r0
        from running r
        where r.peer_id is not null
        group by r.conversation_id, r.user_id
    ),
    changed as (
        select f.* from final f where f.delivered > f.d0 or f.read > f.r0
    ),
    written as (
        update conversation_members m set
            last_delivered_seq = f.delivered,
            last_read_seq = f.read,
            delivered_at = case when f.delivered > f.d0 then at_time else m.delivered_at end,
            read_at = case when f.read > f.r0 then at_time else m.read_at end
        from changed f
        where m.conversation_id = f.conversation_id and m.user_id = f.user_id
    ),
    events as (
        insert into outbox (event_type, conversation_id, payload)
        select e.event_type, e.conversation_id, jsonb_build_object(
            'version', event_version, 'type', e.event_type,
            'conversation_id', e.conversation_id, 'user_id', e.user_id, 'seq', e.seq, 'at', at_text)
        from (
            select 'delivered_up_to' as event_type, f.conversation_id, f.user_id, f.delivered as seq, 1 as k
            from changed f where f.delivered > f.d0
            union all
            select 'read_up_to', f.conversation_id, f.user_id, f.read, 2
            from changed f where f.read > f.r0
        ) e
        order by e.conversation_id, e.user_id, e.k
    )
    select r.ord, r.peer_id is not null, r.last_seq, r.delivered, r.read, r.peer_id,
           coalesce(r.in_range and (r.delivered > r.delivered_before or r.read > r.read_before), false)
    from running r
    order by r.ord;
end
$$;
