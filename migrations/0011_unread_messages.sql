-- Unread, defined once: the messages to a member after their read marker.
-- Every reader that counts or lists unread messages in PostgreSQL uses this
-- view (the query side's fallback for conversation lists, the gateway's
-- sync, push badges, the projection rebuild), so they cannot disagree with
-- each other; the projector keeps the same set in Redis
-- (`duet_common::read_model`).
create view unread_messages as
select cm.user_id, m.conversation_id, m.seq, m.id as message_id, m.text
from conversation_members cm
join messages m
  on m.conversation_id = cm.conversation_id
 and m.receiver_id = cm.user_id
 and m.seq > cm.last_read_seq;
