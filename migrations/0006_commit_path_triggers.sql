-- A moved delivered or read marker ends the user's outstanding notification
-- for that conversation (one of their devices has the messages now): the
-- next message notifies again. Done here, in the receipt's own transaction,
-- so it costs the receipt no round trip. Statement-level, so a batch of
-- receipts makes one delete.
create function end_push_collapse() returns trigger language plpgsql as $$
begin
    delete from push_collapse p
    using moved m
    where p.user_id = m.user_id and p.conversation_id = m.conversation_id;
    return null;
end
$$;
create trigger conversation_members_end_push_collapse after update on conversation_members
    referencing new table as moved
    for each statement execute function end_push_collapse();

-- No NOTIFY at commit. PostgreSQL serializes the commits of every
-- transaction that notifies (one database-wide lock, held through the WAL
-- flush), so it turned group commit across writers back into one commit at
-- a time. The relay is woken in-process by the writers of its own process
-- and polls for rows written by other processes.
drop trigger outbox_notify on outbox;
drop function outbox_notify();
