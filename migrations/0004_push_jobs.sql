-- Push notifications (issue 5). The job queue itself lives in the `apalis`
-- schema, created by apalis-postgres's own migrations at start-up.

-- One outstanding notification per (user, conversation): while a row
-- exists, new messages in that conversation do not enqueue another push.
-- Cleared when the user's marker moves (a device got or read the messages)
-- or when the job finds nothing to notify (user online, nothing unread).
create table push_collapse (
    user_id         uuid not null references users (id) on delete cascade,
    conversation_id uuid not null references conversations (id),
    -- names this notification: the idempotency key of its deliveries
    episode         uuid not null,
    created_at      timestamptz not null default now(),
    primary key (user_id, conversation_id)
);

-- Idempotency of push sends: a row is claimed ('sending') before the request
-- to FCM/APNs and marked 'sent' after it; a retried job skips any device that
-- already has a row, so one notification never reaches a device twice.
create table push_deliveries (
    episode    uuid not null,
    device_id  uuid not null,
    state      text not null,
    updated_at timestamptz not null default now(),
    primary key (episode, device_id),
    constraint push_deliveries_state_known check (state in ('sending', 'sent'))
);
create index push_deliveries_updated_idx on push_deliveries (updated_at);
