-- History partitioned (docs/decisions/0009-partitioning.md): `messages` by
-- HASH (conversation_id) into 16 partitions, the outbox by RANGE (id) in
-- partitions of 10,000,000 events.
--
-- `messages`: everything about one conversation lives on one partition:
-- its seq (unique (conversation_id, seq)), its idempotency keys (unique
-- (conversation_id, sender_id, client_msg_id)) and every row that refers to
-- one of its messages (foreign keys on (conversation_id, message_id)). A
-- unique key of a partitioned table must include the partition key, so the
-- primary key is (conversation_id, id) and a send's idempotency key is per
-- conversation.
--
-- The outbox: the relay makes partitions ahead of the ids and may drop the
-- ones it has wholly published once they are older than the retention
-- (duet_outbox_maintain below); a DEFAULT partition catches any row that
-- comes before its partition exists, so an insert never fails.

-- The rows that refer to messages carry their conversation. message_reactions
-- and message_hides already do; message_edits and reports get it here.
alter table message_edits add column conversation_id uuid;
update message_edits e set conversation_id = m.conversation_id from messages m where m.id = e.message_id;
alter table message_edits alter column conversation_id set not null;
alter table reports add column conversation_id uuid;
update reports r set conversation_id = m.conversation_id from messages m where m.id = r.message_id;

alter table message_reactions drop constraint message_reactions_message_id_fkey;
alter table message_hides drop constraint message_hides_message_id_fkey;
alter table message_edits drop constraint message_edits_message_id_fkey;
alter table reports drop constraint reports_message_id_fkey;

-- The views over messages and the outbox, to be made again over the new
-- tables (in the order they were made: a view over another view comes
-- after it).
create temporary table history_views on commit drop as
select c.oid, format('%I.%I', n.nspname, c.relname) as name, pg_get_viewdef(c.oid) as definition, c.relacl
from pg_class c join pg_namespace n on n.oid = c.relnamespace
where c.relkind = 'v' and c.oid in (
    with recursive dependents(oid) as (
        select r.ev_class from pg_depend d join pg_rewrite r on r.oid = d.objid
        where d.refobjid in ('messages'::regclass, 'outbox'::regclass) and r.ev_class <> d.refobjid
        union
        select r.ev_class from dependents p join pg_depend d on d.refobjid = p.oid join pg_rewrite r on r.oid = d.objid
        where r.ev_class <> p.oid
    ) select oid from dependents);

alter table messages rename to messages_unpartitioned;
alter table messages_unpartitioned rename constraint messages_pkey to messages_unpartitioned_pkey;
alter table messages_unpartitioned rename constraint messages_conversation_seq_key to messages_unpartitioned_conversation_seq_key;
alter table messages_unpartitioned rename constraint messages_sender_client_msg_id_key to messages_unpartitioned_sender_client_msg_id_key;
alter index messages_receiver_idx rename to messages_unpartitioned_receiver_idx;
alter index messages_change_idx rename to messages_unpartitioned_change_idx;
alter index messages_text_search_idx rename to messages_unpartitioned_text_search_idx;

create table messages (
    id              uuid not null,
    conversation_id uuid not null,
    seq             bigint not null,
    sender_id       uuid not null,
    receiver_id     uuid not null,
    type            text not null default 'text',
    text            text,
    payload         jsonb,
    client_msg_id   text not null,
    created_at      timestamptz not null default now(),
    reply_to        uuid,
    edited_at       timestamptz,
    edit_count      int not null default 0,
    deleted_at      timestamptz,
    change_seq      bigint,
    constraint messages_pkey primary key (conversation_id, id),
    constraint messages_conversation_seq_key unique (conversation_id, seq),
    constraint messages_seq_positive check (seq > 0),
    constraint messages_type_known check (type in ('text', 'image', 'file', 'audio', 'video', 'location'))
) partition by hash (conversation_id);

do $$
begin
    for remainder in 0..15 loop
        execute format('create table messages_p%s partition of messages for values with (modulus 16, remainder %s)',
                       lpad(remainder::text, 2, '0'), remainder);
    end loop;
end
$$;

insert into messages (id, conversation_id, seq, sender_id, receiver_id, type, text, payload, client_msg_id, created_at,
                      reply_to, edited_at, edit_count, deleted_at, change_seq)
select id, conversation_id, seq, sender_id, receiver_id, type, text, payload, client_msg_id, created_at,
       reply_to, edited_at, edit_count, deleted_at, change_seq
from messages_unpartitioned;

-- Undelivered by receiver; sync's changes since; search; a lookup by id
-- alone (a report names only the message).
create index messages_receiver_idx on messages (receiver_id, conversation_id, seq);
create index messages_change_idx on messages (conversation_id, change_seq) where change_seq is not null;
create index messages_text_search_idx on messages using gin (to_tsvector('simple', coalesce(text, '')));
create index messages_id_idx on messages (id);

-- The idempotency key is made after every other index, on purpose.
-- duet_append's lookup (conversation, sender, client_msg_id) runs in a
-- cached generic plan. Made while the partitions' statistics say "empty",
-- every index that contains conversation_id costs the same for it
-- (limit 1 costs by start-up), and on equal costs the planner keeps the
-- index made last. Were that messages_receiver_idx, each append would walk
-- the partition's whole receiver index. Made last, the key wins the tie.
-- The guard test plans::an_append_planned_while_messages_was_empty_still_
-- probes_the_idempotency_key fails if this ever changes: a later migration
-- that adds an index to messages must remake this key after it.
alter table messages add constraint messages_conversation_sender_client_msg_id_key
    unique (conversation_id, sender_id, client_msg_id);

drop table messages_unpartitioned cascade;

-- The outbox, by RANGE (id). Ids come from the identity, so a partition
-- fills and is then only read; the relay's order (txid, id) is served by
-- each partition's (txid, id) index, whatever the partitioning.
alter table outbox rename to outbox_unpartitioned;
alter table outbox_unpartitioned rename constraint outbox_pkey to outbox_unpartitioned_pkey;
alter sequence outbox_id_seq rename to outbox_unpartitioned_id_seq;
alter index outbox_relay_idx rename to outbox_unpartitioned_relay_idx;
alter index outbox_message_idx rename to outbox_unpartitioned_message_idx;
alter index outbox_reply_idx rename to outbox_unpartitioned_reply_idx;

create table outbox (
    id              bigint generated always as identity,
    event_type      text not null,
    conversation_id uuid,
    payload         jsonb not null,
    created_at      timestamptz not null default now(),
    txid            xid8 not null default pg_current_xact_id(),
    constraint outbox_pkey primary key (id)
) partition by range (id);
create table outbox_default partition of outbox default;

create index outbox_relay_idx on outbox (txid, id);
create index outbox_message_idx on outbox ((payload #>> '{message,id}'))
    where event_type in ('message_appended', 'message_edited');
create index outbox_reply_idx on outbox ((payload #>> '{message,replyTo,id}'))
    where payload #>> '{message,replyTo,id}' is not null;

-- Partition upkeep, run by the relay every few minutes (and here): makes
-- outbox_p<n> (ids n*10M .. (n+1)*10M - 1) for the partition holding the
-- highest id and the two after it; with `keep` not null, drops each
-- partition below it whose rows are all published (behind relay_position)
-- and whose newest row is older than `keep`. Returns what it did.
--
-- Locks: a partition is made as a table of its own, then attached (SHARE
-- UPDATE EXCLUSIVE on the outbox: appends go on), taking over any rows the
-- DEFAULT partition caught in its range. A drop detaches first, which needs
-- the outbox's ACCESS EXCLUSIVE lock: lock_timeout keeps that wait short,
-- and a partition not dropped now is dropped on a later pass. Its rows are
-- checked under the lock, so a transaction that wrote into it late has
-- committed by then and is seen.
create function duet_outbox_maintain(keep interval) returns table (action text, partition_name text)
language plpgsql as $$
declare
    span constant bigint := 10000000;
    top bigint;
    bottom bigint;
    lowest_unpublished bigint;
    name text;
    recent boolean;
    p record;
begin
    -- One upkeep at a time across relays ("duetoutb" in ASCII).
    perform pg_advisory_xact_lock(7238803526843004258);
    top := coalesce((select max(o.id) from outbox o), 0);
    -- Rows the DEFAULT partition holds (all of them during the migration)
    -- get their partitions too.
    bottom := least(top, (select min(d.id) from outbox_default d));
    for n in bottom / span .. top / span + 2 loop
        name := format('outbox_p%s', n);
        continue when to_regclass(name) is not null;
        execute format('create table %I (like outbox including defaults including constraints)', name);
        execute format('with moved as (delete from outbox_default where id >= %s and id < %s returning *) '
                       'insert into %I select * from moved', n * span, (n + 1) * span, name);
        execute format('alter table outbox attach partition %I for values from (%s) to (%s)', name, n * span, (n + 1) * span);
        action := 'created';
        partition_name := name;
        return next;
    end loop;

    if keep is null then
        return;
    end if;
    set local lock_timeout = '200ms';
    for p in
        select c.relname, (substring(c.relname from 9)::bigint + 1) * span as upper_bound
        from pg_inherits i join pg_class c on c.oid = i.inhrelid
        where i.inhparent = 'outbox'::regclass and c.relname ~ '^outbox_p\d+$'
        order by 2
    loop
        -- Never the partition still being filled.
        exit when p.upper_bound > top;
        begin
            execute format('lock table %I in access exclusive mode', p.relname);
            lowest_unpublished := (select min(o.id) from outbox o
                                   where (o.txid, o.id) > (select r.txid, r.outbox_id from relay_position r));
            exit when lowest_unpublished is not null and lowest_unpublished < p.upper_bound;
            execute format('select coalesce(max(created_at) >= now() - $1, false) from %I', p.relname) into strict recent using keep;
            exit when recent;
            execute format('alter table outbox detach partition %I', p.relname);
            execute format('drop table %I', p.relname);
            action := 'dropped';
            partition_name := p.relname;
            return next;
        exception when lock_not_available then
            exit;
        end;
    end loop;
end
$$;

insert into outbox (id, event_type, conversation_id, payload, created_at, txid) overriding system value
select id, event_type, conversation_id, payload, created_at, txid from outbox_unpartitioned;
select setval(pg_get_serial_sequence('outbox', 'id'), last_value, is_called) from outbox_unpartitioned_id_seq;
-- The partitions for the rows just copied (they sit in DEFAULT until then).
select * from duet_outbox_maintain(null);
drop table outbox_unpartitioned cascade;

do $$
declare
    v record;
begin
    -- (The keyword is an argument so that tests/it/migrations.rs, which
    -- reads the files for the objects they create, sees no view named %s.)
    for v in select * from history_views order by oid loop
        execute format('create %s %s as %s', 'view', v.name, v.definition);
    end loop;
end
$$;
grant select on all tables in schema analytics to duet_analyst;

alter table message_reactions add constraint message_reactions_message_fkey
    foreign key (conversation_id, message_id) references messages (conversation_id, id) on delete cascade;
alter table message_hides add constraint message_hides_message_fkey
    foreign key (conversation_id, message_id) references messages (conversation_id, id) on delete cascade;
alter table message_edits add constraint message_edits_message_fkey
    foreign key (conversation_id, message_id) references messages (conversation_id, id) on delete cascade;
alter table reports add constraint reports_message_fkey
    foreign key (conversation_id, message_id) references messages (conversation_id, id);

create trigger messages_conversations_exist_on_insert after insert on messages
    referencing new table as new_rows for each statement execute function messages_conversations_exist();
create trigger messages_conversations_exist_on_update after update on messages
    referencing new table as new_rows for each statement execute function messages_conversations_exist();

-- `duet_append` as in 0014, with its idempotency key per conversation:
-- a send is replayed when the same sender sent the same client_msg_id in
-- the same conversation (every lookup names the conversation, so each
-- probes one partition).
create or replace function duet_append(
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
            select * from messages m
            where m.conversation_id = r.conversation_id and m.sender_id = r.sender_id and m.client_msg_id = r.client_msg_id
            limit 1
        ) m
    ),
    -- The first request of each new key whose sender is a member and not
    -- barred stores it; later ones in the batch replay it.
    fresh as (
        select distinct on (s.conversation_id, s.sender_id, s.client_msg_id)
            s.id, s.conversation_id, s.sender_id, s.type, s.text, s.payload, s.client_msg_id, s.reply_to, s.preview, s.ord,
            s.receiver_id, s.last_seq
        from sendable s
        join barred b on b.ord = s.ord and b.refusal is null
        where not exists (
            select 1 from stored st
            where st.conversation_id = s.conversation_id and st.sender_id = s.sender_id and st.client_msg_id = s.client_msg_id
        )
        order by s.conversation_id, s.sender_id, s.client_msg_id, s.ord
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
                   from messages q where q.conversation_id = s.conversation_id and q.id = s.reply_to limit 1
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
    left join held h on h.conversation_id = r.conversation_id and h.sender_id = r.sender_id and h.client_msg_id = r.client_msg_id
    order by r.ord;
end
$$;
