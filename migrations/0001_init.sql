-- Duet's schema: accounts, 1:1 conversations, the message log, per-member
-- markers, device tokens, and the outbox of domain events.

create table users (
    id            uuid primary key,
    -- stored lower-cased; the unique constraint is the source of truth for "taken"
    email         text not null,
    phone         text,
    name          text not null,
    password_hash text not null,
    created_at    timestamptz not null default now(),
    last_seen_at  timestamptz,
    constraint users_email_key unique (email),
    constraint users_phone_key unique (phone)
);

-- One row per unordered pair, stored as (lo, hi) so the pair is unique.
create table conversations (
    id         uuid primary key,
    user_lo    uuid not null references users (id),
    user_hi    uuid not null references users (id),
    -- the seq of the newest message; appends lock this row to assign seqs
    last_seq   bigint not null default 0,
    created_at timestamptz not null default now(),
    -- last activity (newest message or creation)
    updated_at timestamptz not null default now(),
    constraint conversations_pair_key unique (user_lo, user_hi),
    constraint conversations_pair_ordered check (user_lo < user_hi),
    constraint conversations_last_seq_nonnegative check (last_seq >= 0)
);
create index conversations_user_hi_idx on conversations (user_hi);

-- The durable message log. seq is per conversation, gap-free, from 1.
-- sender and receiver are the conversation's pair (checked on append), so
-- they carry no foreign keys of their own: that keeps the hot insert lean.
create table messages (
    id              uuid primary key,
    conversation_id uuid not null references conversations (id),
    seq             bigint not null,
    sender_id       uuid not null,
    receiver_id     uuid not null,
    type            text not null default 'text',
    text            text,
    payload         jsonb,
    client_msg_id   text not null,
    created_at      timestamptz not null default now(),
    constraint messages_conversation_seq_key unique (conversation_id, seq),
    constraint messages_sender_client_msg_id_key unique (sender_id, client_msg_id),
    constraint messages_seq_positive check (seq > 0),
    constraint messages_type_known check (type in ('text', 'image', 'file', 'audio', 'video', 'location'))
);
-- History by seq is served by messages_conversation_seq_key.
-- Undelivered by receiver: seq > the receiver's last_delivered_seq.
create index messages_receiver_idx on messages (receiver_id, conversation_id, seq);

-- Each member's position in a conversation. Markers only move forward.
create table conversation_members (
    conversation_id    uuid not null references conversations (id),
    user_id            uuid not null references users (id),
    peer_id            uuid not null references users (id),
    last_delivered_seq bigint not null default 0,
    last_read_seq      bigint not null default 0,
    delivered_at       timestamptz,
    read_at            timestamptz,
    primary key (conversation_id, user_id),
    constraint conversation_members_read_le_delivered check (last_read_seq <= last_delivered_seq),
    constraint conversation_members_seq_nonnegative check (last_read_seq >= 0)
);
create index conversation_members_user_idx on conversation_members (user_id);

create table device_tokens (
    id           uuid primary key,
    user_id      uuid not null references users (id) on delete cascade,
    platform     text not null,
    token        text not null,
    created_at   timestamptz not null default now(),
    last_seen_at timestamptz not null default now(),
    constraint device_tokens_token_key unique (token),
    constraint device_tokens_platform_known check (platform in ('ios', 'android'))
);
create index device_tokens_user_idx on device_tokens (user_id);

-- Domain events, written in the same transaction as the change they
-- describe. The projector relays them; ids grow but are not commit-ordered,
-- so consumers order by the seq inside each event, never by id.
create table outbox (
    id              bigint generated always as identity primary key,
    event_type      text not null,
    conversation_id uuid,
    payload         jsonb not null,
    created_at      timestamptz not null default now()
);
