-- The relay keeps one position instead of marking every outbox row.
--
-- Marking cost an UPDATE per event: a second heap tuple with the whole
-- payload, its index entries and WAL, and the dead tuple for vacuum. Now the
-- outbox is append-only and each row carries the id of the transaction that
-- wrote it. A row becomes relayable once every transaction that could still
-- write below it has ended: `txid < pg_snapshot_xmin(pg_current_snapshot())`.
-- Rows are relayed in (txid, id) order, so "everything up to (txid, id) is
-- published" is a position that never skips a row committed later
-- (docs/decisions/0004-read-side.md).
alter table outbox add column txid xid8;

-- Rows already here all take one txid below every transaction still running
-- (one that has not yet written its outbox row will write above it), and the
-- position starts just before the first unpublished row. Published rows after
-- it are published again: consumers are idempotent.
do $$
declare
    below_running xid8 := ((pg_snapshot_xmin(pg_current_snapshot())::text::bigint) - 1)::text::xid8;
begin
    update outbox set txid = below_running;
    create table relay_position (
        only_row  boolean primary key default true check (only_row),
        txid      xid8 not null,
        outbox_id bigint not null
    );
    insert into relay_position (txid, outbox_id)
    values (below_running,
            coalesce((select min(id) - 1 from outbox where published_at is null), (select max(id) from outbox), 0));
end
$$;

alter table outbox alter column txid set default pg_current_xact_id(), alter column txid set not null;
create index outbox_relay_idx on outbox (txid, id);
drop index outbox_unpublished_idx;
alter table outbox drop column published_at;
