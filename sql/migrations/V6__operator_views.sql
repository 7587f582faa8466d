-- Operator views that answer what an operator asks in psql: how far did this event get (in
-- the stream? counted?), which posts drift under the retention the updaters really run
-- with, and what a dead letter's bytes say.

-- The inbox retention the updaters run with (TALLY_UPDATER_INBOX_RETENTION_SECS), recorded
-- by each updater when it first reaches Postgres: the views below cannot read an updater's
-- environment. One row; the updater that started last wins (the instances of a deployment
-- share one configuration).
CREATE TABLE updater_settings (
    singleton        boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    inbox_retention  interval NOT NULL CHECK (inbox_retention > interval '0'),
    recorded_at      timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT, INSERT, UPDATE ON updater_settings TO tally_updater;

-- count_drift as in V3, with the in-flight window following the recorded retention (8 days,
-- the updater's default, until an updater has recorded one): an unapplied event older than
-- the retention has had its inbox row pruned, or can no longer be delivered.
CREATE OR REPLACE VIEW count_drift AS
SELECT p.post_id,
       coalesce(c.likes, 0) AS counted_likes,
       a.likes AS actual_likes,
       coalesce(c.comments, 0) AS counted_comments,
       a.comments AS actual_comments,
       coalesce(f.likes, 0) AS in_flight_likes,
       coalesce(f.comments, 0) AS in_flight_comments
FROM posts p
LEFT JOIN post_counts c USING (post_id)
CROSS JOIN LATERAL (
    SELECT (SELECT count(*) FROM likes l WHERE l.post_id = p.post_id) AS likes,
           (SELECT count(*) FROM comments m
             WHERE m.post_id = p.post_id AND m.deleted_at IS NULL) AS comments
) a
LEFT JOIN (
    SELECT o.post_id,
           sum(CASE o.event_type WHEN 'like.added' THEN 1
                                 WHEN 'like.removed' THEN -1 ELSE 0 END)::bigint AS likes,
           sum(CASE o.event_type WHEN 'comment.added' THEN 1
                                 WHEN 'comment.removed' THEN -1 ELSE 0 END)::bigint AS comments
    FROM outbox o
    WHERE o.created_at > now() - coalesce((SELECT s.inbox_retention FROM updater_settings s),
                                          interval '8 days')
      AND NOT EXISTS (SELECT 1 FROM inbox i WHERE i.event_id = o.event_id)
      AND NOT EXISTS (SELECT 1 FROM dead_letters d WHERE d.event_id = o.event_id::text)
    GROUP BY o.post_id
) f USING (post_id)
WHERE coalesce(c.likes, 0) <> a.likes - coalesce(f.likes, 0)
   OR coalesce(c.comments, 0) <> a.comments - coalesce(f.comments, 0);

-- Every event the outbox still holds (the relay prunes it after TALLY_OUTBOX_RETENTION_SECS),
-- newest first, with who caused it and how far it got. No LIMIT: filter or add your own.
--
-- in_stream: the relay has published it and confirmed that to Postgres. A slot's catalog_xmin
-- is the oldest-running xid of a running-transactions record (logged every 15 s while WAL is
-- written, and at checkpoints) that the slot has confirmed past: every transaction older
-- than it had ended before that record, so its commit was streamed and confirmed. It is the
-- rule prune_outbox() applies with its own marks, read off the slot. A row is old enough when
-- its inserting transaction (xmin; outbox rows are never updated) is older than that, compared
-- by age, which is wraparound-safe. An event the updater received was in the stream too.
-- applied: the updater counted it (its id is in the inbox); NULL once it is older than the
-- inbox retention and no longer in the inbox, which then cannot tell.
-- state: the one-word answer to "is this event counted yet?".
CREATE OR REPLACE VIEW recent_events AS
SELECT o.created_at,
       o.event_type,
       o.post_id,
       o.event_id,
       now() - o.created_at AS age,
       o.payload ->> 'actor' AS actor,
       e.applied OR e.dead_lettered OR e.held_back OR e.confirmed AS in_stream,
       CASE WHEN e.applied THEN true
            WHEN o.created_at <= now() - coalesce(
                     (SELECT s.inbox_retention FROM updater_settings s), interval '8 days')
                THEN NULL
            ELSE false END AS applied,
       e.dead_lettered,
       CASE WHEN e.applied THEN 'counted'
            WHEN e.dead_lettered THEN 'dead-lettered'
            WHEN e.held_back THEN 'held back'
            WHEN e.confirmed THEN 'in stream'
            ELSE 'not yet in stream' END AS state
FROM outbox o
CROSS JOIN LATERAL (
    SELECT EXISTS (SELECT 1 FROM inbox i WHERE i.event_id = o.event_id) AS applied,
           EXISTS (SELECT 1 FROM dead_letters d WHERE d.event_id = o.event_id::text)
               AS dead_lettered,
           EXISTS (SELECT 1 FROM held_back h WHERE h.event_id = o.event_id) AS held_back,
           coalesce(age(o.xmin) > (
               SELECT min(age(s.catalog_xmin)) FROM pg_replication_slots s
               WHERE s.plugin = 'pgoutput' AND s.database = current_database()), false)
               AS confirmed
    -- Kept a subquery (not flattened into the outer query), so each row costs a few index
    -- probes: flattened, the planner hashes the whole inbox even for LIMIT 20.
    OFFSET 0
) e
ORDER BY o.created_at DESC;

-- A dead letter's bytes as JSON when they parse (jsonb refuses \u0000, which then shows as
-- text), else as UTF-8 text, else escaped (bytea 'escape' format). Immutable and without
-- table access, so any role may call it from the view.
CREATE FUNCTION dead_letter_payload(payload bytea, OUT as_json jsonb, OUT as_text text,
                                    OUT format text)
LANGUAGE plpgsql
IMMUTABLE
STRICT
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    BEGIN
        as_text := convert_from(payload, 'UTF8');
    EXCEPTION WHEN character_not_in_repertoire OR untranslatable_character
                   OR invalid_parameter_value OR program_limit_exceeded THEN
        as_text := encode(payload, 'escape');
        format := 'binary';
        RETURN;
    END;
    BEGIN
        as_json := as_text::jsonb;
        format := 'json';
    -- program_limit_exceeded: a poison message nested deeper than the parser's stack is text,
    -- never an error that would fail the whole view.
    EXCEPTION WHEN invalid_text_representation OR untranslatable_character
                   OR program_limit_exceeded THEN
        format := 'text';
    END;
END
$$;

-- dead_letters with the payload readable: payload (jsonb, NULL when it is not JSON),
-- payload_text (the text, or the escaped bytes) and payload_format (json, text or binary).
CREATE VIEW dead_letters_readable AS
SELECT d.dead_letter_id,
       d.failed_at,
       d.subject,
       d.event_id,
       d.reason,
       p.as_json AS payload,
       p.as_text AS payload_text,
       p.format AS payload_format,
       octet_length(d.payload) AS payload_bytes
FROM dead_letters d
CROSS JOIN LATERAL dead_letter_payload(d.payload) p
ORDER BY d.failed_at DESC, d.dead_letter_id DESC;

GRANT SELECT ON dead_letters_readable TO tally_api, tally_relay, tally_updater;
