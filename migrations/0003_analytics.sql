-- Views for analysts, meant to be queried on the replica through the
-- read-only role `duet_analyst` (docs/analytics.md).

create schema analytics;

create view analytics.messages_per_day as
select date_trunc('day', created_at) as day,
       count(*) as messages,
       count(distinct conversation_id) as conversations
from messages
group by 1;

-- A user is active on a day when they sent a message that day.
create view analytics.active_users_per_day as
select date_trunc('day', created_at) as day,
       count(distinct sender_id) as active_users
from messages
group by 1;

-- When each message was first delivered and first read: the first
-- cumulative marker event of its receiver that covers its seq.
create view analytics.message_receipts as
with marks as (
    select event_type,
           conversation_id,
           (payload ->> 'user_id')::uuid as user_id,
           (payload ->> 'seq')::bigint as seq,
           (payload ->> 'at')::timestamptz as at
    from outbox
    where event_type in ('delivered_up_to', 'read_up_to')
)
select m.id as message_id,
       m.created_at,
       (select min(d.at) from marks d
         where d.event_type = 'delivered_up_to' and d.conversation_id = m.conversation_id
           and d.user_id = m.receiver_id and d.seq >= m.seq) as delivered_at,
       (select min(r.at) from marks r
         where r.event_type = 'read_up_to' and r.conversation_id = m.conversation_id
           and r.user_id = m.receiver_id and r.seq >= m.seq) as read_at
from messages m;

-- Delivery and read latency percentiles per day, in seconds.
create view analytics.receipt_latency_per_day as
select date_trunc('day', created_at) as day,
       count(delivered_at) as delivered,
       percentile_cont(0.5) within group (order by extract(epoch from delivered_at - created_at)) as delivery_p50_s,
       percentile_cont(0.95) within group (order by extract(epoch from delivered_at - created_at)) as delivery_p95_s,
       percentile_cont(0.99) within group (order by extract(epoch from delivered_at - created_at)) as delivery_p99_s,
       count(read_at) as read,
       percentile_cont(0.5) within group (order by extract(epoch from read_at - created_at)) as read_p50_s,
       percentile_cont(0.95) within group (order by extract(epoch from read_at - created_at)) as read_p95_s,
       percentile_cont(0.99) within group (order by extract(epoch from read_at - created_at)) as read_p99_s
from analytics.message_receipts
group by 1;

-- The role is cluster-wide and every database of the cluster runs this
-- migration (tests make many), so it is created once and tolerated after.
do $$
begin
    create role duet_analyst nologin;
exception when duplicate_object or unique_violation then
    null;
end
$$;
do $$
begin
    execute format('grant connect on database %I to duet_analyst', current_database());
end
$$;
grant usage on schema analytics to duet_analyst;
grant select on all tables in schema analytics to duet_analyst;
