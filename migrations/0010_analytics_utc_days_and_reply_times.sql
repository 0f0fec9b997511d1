-- The analytics views count UTC days whatever the session's TimeZone
-- (0003 truncated in the session's zone), and reply times join them
-- (docs/analytics.md). `date_trunc(field, timestamptz, zone)` keeps `day`
-- a timestamptz, so the views are replaced in place and keep their grants.

create or replace view analytics.messages_per_day as
select date_trunc('day', created_at, 'UTC') as day,
       count(*) as messages,
       count(distinct conversation_id) as conversations
from messages
group by 1;

create or replace view analytics.active_users_per_day as
select date_trunc('day', created_at, 'UTC') as day,
       count(distinct sender_id) as active_users
from messages
group by 1;

create or replace view analytics.receipt_latency_per_day as
select date_trunc('day', created_at, 'UTC') as day,
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

-- A reply is a message whose predecessor in its conversation (the message
-- with the next lower seq) was sent by the other member; its reply time is
-- the time since that predecessor. A message after the sender's own is a
-- continuation, not a reply. created_at is each transaction's start, which
-- concurrent sends may order slightly against seq: such a reply counts 0 s.
create view analytics.replies as
select message_id,
       answered_message_id,
       created_at,
       greatest(extract(epoch from created_at - answered_at), 0)::float8 as reply_s
from (
    select id as message_id,
           sender_id,
           created_at,
           lag(id) over w as answered_message_id,
           lag(sender_id) over w as answered_sender_id,
           lag(created_at) over w as answered_at
    from messages
    window w as (partition by conversation_id order by seq)
) turns
where answered_sender_id <> sender_id;

-- Reply times per UTC day of the reply, in seconds.
create view analytics.reply_time_per_day as
select date_trunc('day', created_at, 'UTC') as day,
       count(*) as replies,
       percentile_cont(0.5) within group (order by reply_s) as reply_p50_s,
       percentile_cont(0.9) within group (order by reply_s) as reply_p90_s
from analytics.replies
group by 1;

grant select on analytics.replies, analytics.reply_time_per_day to duet_analyst;
