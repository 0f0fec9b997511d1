-- Attachments: files in S3-compatible object storage, uploaded by a member
-- into a conversation through a presigned URL.
--
-- A row is written `pending` when the upload URL is issued, and becomes
-- `uploaded` once the server has checked the object with a HEAD (its size
-- and content type are the declared ones). Only an `uploaded` attachment of
-- the sender's, in the same conversation, can be sent in a message; the
-- message's payload repeats what a client needs (id, content type, size,
-- file name), so reading messages never joins this table.
--
-- The object key is `conversations/<conversation_id>/<id>`: a conversation's
-- objects share a prefix.

create table attachments (
    id              uuid primary key,
    conversation_id uuid not null references conversations (id),
    uploader_id     uuid not null references users (id),
    kind            text not null,
    content_type    text not null,
    size_bytes      bigint not null,
    file_name       text,
    object_key      text not null,
    status          text not null default 'pending',
    created_at      timestamptz not null default now(),
    uploaded_at     timestamptz,
    constraint attachments_object_key_key unique (object_key),
    constraint attachments_kind_known check (kind in ('image', 'video', 'audio', 'file')),
    constraint attachments_size_positive check (size_bytes > 0),
    constraint attachments_status_known check (status in ('pending', 'uploaded')),
    constraint attachments_uploaded_at_set check ((status = 'uploaded') = (uploaded_at is not null))
);
