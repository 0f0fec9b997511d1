-- A message's conversation must exist: checked once per statement instead
-- of once per row.
--
-- The foreign key checked each inserted message with a row trigger running
-- a query of its own: about 20 µs of PostgreSQL CPU per message, a fifth of
-- what a batch append costs (`scripts/bench-floor`'s append step: 15,073
-- messages/s with it, 19,012 without). The same rule checked over the
-- statement's transition table costs two set-based queries per batch.
-- Like the foreign key, the check locks each referenced conversation
-- FOR KEY SHARE, and a conversation that messages refer to can be neither
-- deleted nor re-keyed; the error is the same (23503, naming
-- `messages_conversation_id_fkey`).

alter table messages drop constraint messages_conversation_id_fkey;

create function messages_conversations_exist() returns trigger language plpgsql as $$
declare
    wanted bigint;
    found bigint;
begin
    select count(distinct n.conversation_id) into wanted from new_rows n;
    perform 1 from conversations c where c.id in (select n.conversation_id from new_rows n) for key share of c;
    get diagnostics found = row_count;
    if found < wanted then
        raise foreign_key_violation using
            constraint = 'messages_conversation_id_fkey',
            message = 'insert or update on table "messages" violates foreign key constraint "messages_conversation_id_fkey"',
            detail = 'A message refers to a conversation that does not exist.';
    end if;
    return null;
end
$$;

create trigger messages_conversations_exist_on_insert after insert on messages
    referencing new table as new_rows for each statement execute function messages_conversations_exist();
-- Messages are never updated by Duet; this keeps the rule whoever does.
create trigger messages_conversations_exist_on_update after update on messages
    referencing new table as new_rows for each statement execute function messages_conversations_exist();

-- After the row is gone (as the foreign key's own check): a delete waits
-- for the key-share locks of inserts still running, so by now their
-- messages are committed, and in READ COMMITTED (all Duet uses) this
-- query's snapshot sees them.
create function conversations_keep_their_messages() returns trigger language plpgsql as $$
begin
    if (tg_op = 'DELETE' or old.id is distinct from new.id)
        and exists (select 1 from messages m where m.conversation_id = old.id) then
        raise foreign_key_violation using
            constraint = 'messages_conversation_id_fkey',
            message = 'update or delete on table "conversations" violates foreign key constraint "messages_conversation_id_fkey" on table "messages"',
            detail = format('Key (id)=(%s) is still referenced from table "messages".', old.id);
    end if;
    return null;
end
$$;

create trigger conversations_keep_their_messages after delete or update of id on conversations
    for each row execute function conversations_keep_their_messages();
