-- The relay in production: outbox retention that never prunes an unpublished row, done by a
-- SECURITY DEFINER function because the relay role may only read the outbox, and a richer
-- relay_slots view for operators.

-- Safe points for pruning. Each row pairs a WAL position with the oldest transaction still
-- running when it was taken: every transaction older than that had finished, so its commit
-- record lies before the position. Once a slot's confirmed_flush_lsn passes the position,
-- every outbox row inserted by those older transactions was published.
CREATE TABLE outbox_prune_marks (
    mark_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    wal_lsn      pg_lsn NOT NULL,
    oldest_xid   xid8 NOT NULL
);

-- Deletes at most batch_size outbox rows older than retention that the slot has certainly
-- streamed, and records a new safe point for the next call. Returns the rows deleted; the
-- caller repeats while a full batch came back. Rows of a slot that does not exist (or is
-- on another database) are never deleted.
CREATE FUNCTION prune_outbox(slot text, retention interval, batch_size integer)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    confirmed pg_lsn;
    safe outbox_prune_marks;
    safe_xid xid;
    oldest xid8;
    deleted bigint;
BEGIN
    IF batch_size < 1 OR retention < interval '0' THEN
        RAISE EXCEPTION 'prune_outbox: batch_size must be positive and retention not negative';
    END IF;
    -- The oldest running transaction first, then the WAL position: a transaction that
    -- commits in between is still counted as running, never as before the position.
    oldest := pg_snapshot_xmin(pg_current_snapshot());
    INSERT INTO public.outbox_prune_marks (wal_lsn, oldest_xid)
    VALUES (pg_current_wal_insert_lsn(), oldest);

    SELECT s.confirmed_flush_lsn INTO confirmed
    FROM pg_replication_slots s
    WHERE s.slot_name = slot AND s.database = current_database();
    IF confirmed IS NULL THEN
        RETURN 0;
    END IF;

    SELECT * INTO safe FROM public.outbox_prune_marks m
    WHERE m.wal_lsn <= confirmed
    ORDER BY m.mark_id DESC
    LIMIT 1;
    IF safe IS NULL THEN
        RETURN 0;
    END IF;
    -- Older safe points are superseded; newer ones wait for the slot to pass them.
    DELETE FROM public.outbox_prune_marks m WHERE m.mark_id < safe.mark_id;

    -- Compare 32-bit xids by age, which is wraparound-safe: a row is old enough when its
    -- inserting transaction is older than the safe point's oldest running one. Frozen rows
    -- have the largest age, so they count as old.
    safe_xid := (safe.oldest_xid::text::numeric % 4294967296)::text::xid;
    DELETE FROM public.outbox o
    WHERE o.ctid = ANY (ARRAY(
        SELECT i.ctid FROM public.outbox i
        WHERE i.created_at < now() - retention
          AND age(i.xmin) > age(safe_xid)
        ORDER BY i.created_at
        LIMIT batch_size));
    GET DIAGNOSTICS deleted = ROW_COUNT;
    RETURN deleted;
END
$$;

REVOKE ALL ON FUNCTION prune_outbox(text, interval, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION prune_outbox(text, interval, integer) TO tally_relay;

-- Every pgoutput slot of this database: is a relay streaming it (and which backend), how far
-- behind it is in bytes and in time since it last confirmed, and how much WAL it pins.
DROP VIEW relay_slots;
CREATE VIEW relay_slots AS
SELECT s.slot_name,
       s.database,
       s.active,
       s.active_pid,
       r.client_addr,
       r.application_name,
       s.confirmed_flush_lsn,
       pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn)::bigint AS lag_bytes,
       pg_size_pretty(pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn)) AS lag,
       now() - r.reply_time AS since_last_reply,
       pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn)::bigint AS retained_wal_bytes,
       pg_size_pretty(pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn)) AS retained_wal,
       s.wal_status
FROM pg_replication_slots s
LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid
WHERE s.plugin = 'pgoutput' AND s.database = current_database();

GRANT SELECT ON relay_slots TO tally_api, tally_relay, tally_updater;
