-- The read side: relaying the outbox, and full-text search.

-- The projector's relay marks a row once it is on the Redis stream. Rows
-- stay as the event history (analytics reads it); only unpublished ones are
-- indexed, so the relay's claim query stays small however long the log grows.
alter table outbox add column published_at timestamptz;
create index outbox_unpublished_idx on outbox (id) where published_at is null;

-- Wakes the relay as soon as events commit (NOTIFY is delivered at commit
-- and folded to one per transaction), instead of it polling hard.
create function outbox_notify() returns trigger language plpgsql as $$
begin
    perform pg_notify('duet_outbox', '');
    return null;
end
$$;
create trigger outbox_notify after insert on outbox
    for each statement execute function outbox_notify();

-- GET /search: full-text search over message text. The `simple`
-- configuration (no stemming, no stop words) suits chats in any language.
create index messages_text_search_idx on messages
    using gin (to_tsvector('simple', coalesce(text, '')));
