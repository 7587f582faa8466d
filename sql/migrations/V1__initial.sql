-- tally's initial schema: the source tables the api writes, the outbox the relay streams,
-- the count table the updater maintains, the updater's inbox and dead letters, one role per
-- service with only the grants it needs, and the insert-only publication on the outbox.

-- Posts are the set of likeable items. A deleted post keeps its row (deleted_at set) so the
-- id cannot be taken again by someone else and late events still find their post.
CREATE TABLE posts (
    post_id     uuid PRIMARY KEY,
    author_id   text NOT NULL CHECK (char_length(author_id) BETWEEN 1 AND 128),
    created_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz
);

-- One row per (post, user): liking twice is one row; unliking deletes it.
CREATE TABLE likes (
    post_id     uuid NOT NULL REFERENCES posts (post_id),
    user_id     text NOT NULL CHECK (char_length(user_id) BETWEEN 1 AND 128),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (post_id, user_id)
);
-- "Who liked", newest first, with keyset pagination on (created_at, user_id).
CREATE INDEX likes_by_post_newest ON likes (post_id, created_at DESC, user_id DESC);

CREATE TABLE comments (
    comment_id  uuid PRIMARY KEY,
    post_id     uuid NOT NULL REFERENCES posts (post_id),
    author_id   text NOT NULL CHECK (char_length(author_id) BETWEEN 1 AND 128),
    body        text NOT NULL CHECK (char_length(body) BETWEEN 1 AND 2000),
    created_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz
);
CREATE INDEX comments_by_post_newest ON comments (post_id, created_at DESC, comment_id DESC)
    WHERE deleted_at IS NULL;

-- One row per domain event, inserted in the same transaction as the change it describes and
-- never updated. The payload is json (not jsonb) so consumers get the exact bytes the api
-- wrote; headers carries what travels onto the NATS message (e.g. traceparent).
CREATE TABLE outbox (
    event_id    uuid PRIMARY KEY,
    event_type  text NOT NULL,
    subject     text NOT NULL,
    post_id     uuid NOT NULL,
    payload     json NOT NULL,
    headers     json NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outbox_created_at ON outbox (created_at);

-- The denormalized counts every feed reads. Written by the updater alone.
CREATE TABLE post_counts (
    post_id     uuid PRIMARY KEY,
    likes       bigint NOT NULL DEFAULT 0 CHECK (likes >= 0),
    comments    bigint NOT NULL DEFAULT 0 CHECK (comments >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- The updater's de-duplication ledger: an event id recorded here has been applied.
CREATE TABLE inbox (
    event_id      uuid PRIMARY KEY,
    processed_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX inbox_processed_at ON inbox (processed_at);

-- Events the updater could not apply, kept for inspection.
CREATE TABLE dead_letters (
    dead_letter_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subject         text NOT NULL,
    event_id        text,
    payload         bytea NOT NULL,
    reason          text NOT NULL,
    failed_at       timestamptz NOT NULL DEFAULT now()
);

-- The relay streams outbox inserts only: rows are never updated, and pruning deletes must
-- not be published.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'tally_outbox') THEN
        CREATE PUBLICATION tally_outbox FOR TABLE outbox WITH (publish = 'insert');
    END IF;
END
$$;

-- Roles are cluster-wide while this schema is per database, so creating them must tolerate
-- another database (or a concurrent migration) having created them first. They get no
-- password here: set one per deployment with ALTER ROLE ... PASSWORD.
DO $$
DECLARE
    spec record;
BEGIN
    FOR spec IN SELECT * FROM (VALUES
        ('tally_api', false),
        ('tally_relay', true),
        ('tally_updater', false)) AS s(name, replication)
    LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = spec.name) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I LOGIN %s', spec.name,
                    CASE WHEN spec.replication THEN 'REPLICATION' ELSE '' END);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;
            END;
        END IF;
    END LOOP;
END
$$;

GRANT USAGE ON SCHEMA public TO tally_api, tally_relay, tally_updater;

-- api: writes the source tables and the outbox in one transaction; reads counts.
GRANT SELECT, INSERT, UPDATE, DELETE ON posts, likes, comments TO tally_api;
GRANT INSERT ON outbox TO tally_api;
GRANT SELECT ON post_counts, inbox TO tally_api;

-- relay: reads the outbox (through the replication slot and for pruning checks).
GRANT SELECT ON outbox TO tally_relay;

-- updater: owns the counts, the inbox and dead letters; reads the source tables to reconcile.
GRANT SELECT, INSERT, UPDATE ON post_counts TO tally_updater;
GRANT SELECT, INSERT, DELETE ON inbox TO tally_updater;
GRANT SELECT, INSERT ON dead_letters TO tally_updater;
GRANT SELECT ON posts, likes, comments TO tally_updater;

-- Operator views: psql is a first-class interface.

-- Every pgoutput slot: is its relay connected, how far behind is it, how much WAL it pins.
CREATE VIEW relay_slots AS
SELECT slot_name,
       database,
       active,
       active_pid,
       confirmed_flush_lsn,
       pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint AS lag_bytes,
       pg_size_pretty(pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)) AS lag,
       pg_size_pretty(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)) AS retained_wal
FROM pg_replication_slots
WHERE plugin = 'pgoutput';

-- Posts whose denormalized counts differ from the source tables. Empty once the pipeline
-- has drained; a row that stays is drift. Scans everything: for spot checks, filter by post.
CREATE VIEW count_drift AS
SELECT p.post_id,
       coalesce(c.likes, 0) AS counted_likes,
       (SELECT count(*) FROM likes l WHERE l.post_id = p.post_id) AS actual_likes,
       coalesce(c.comments, 0) AS counted_comments,
       (SELECT count(*) FROM comments m
         WHERE m.post_id = p.post_id AND m.deleted_at IS NULL) AS actual_comments
FROM posts p
LEFT JOIN post_counts c USING (post_id)
WHERE coalesce(c.likes, 0) <> (SELECT count(*) FROM likes l WHERE l.post_id = p.post_id)
   OR coalesce(c.comments, 0) <> (SELECT count(*) FROM comments m
                                   WHERE m.post_id = p.post_id AND m.deleted_at IS NULL);

-- Recent events written by the api, newest first, with how long ago.
CREATE VIEW recent_events AS
SELECT created_at, event_type, post_id, event_id, now() - created_at AS age
FROM outbox
ORDER BY created_at DESC
LIMIT 50;

GRANT SELECT ON relay_slots, count_drift, recent_events TO tally_api, tally_relay, tally_updater;
