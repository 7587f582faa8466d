-- tally-bench's helper objects, created in the benchmark's own database after the migrations.

-- Post n's id: a fixed UUID per integer, so pgbench scripts and wrk scripts name the same posts.
CREATE FUNCTION bench_post(n bigint) RETURNS uuid
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN ('00000000-0000-7000-8000-' || lpad(to_hex(n), 12, '0'))::uuid;

-- 100,000 posts: the "spread" scenarios and the feed reads pick among them; post 1 is the hot one.
INSERT INTO posts (post_id, author_id)
SELECT bench_post(n), 'author-' || (n % 1000) FROM generate_series(1, 100000) AS n;

-- The naive design's counter, updated inside each like's transaction.
CREATE TABLE naive_counts (post_id uuid PRIMARY KEY, likes bigint NOT NULL DEFAULT 0);
INSERT INTO naive_counts (post_id) SELECT bench_post(n) FROM generate_series(1, 100000) AS n;

-- A time-ordered UUID (version 7), as the api gives every event (`Uuid::now_v7`); Postgres 15
-- has no uuidv7(). The version 4 ids the backlog had before scattered the updater's inbox
-- inserts over the whole index, which the api's events never do.
CREATE FUNCTION bench_uuid_v7() RETURNS uuid
    LANGUAGE sql VOLATILE
    RETURN encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid())
        PLACING substring(int8send((extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
        FROM 1 FOR 6), 52, 1), 53, 1), 'hex')::uuid;

-- A backlog of `events` like.added outbox rows, one transaction each (as the api writes them),
-- spread over the first `posts` posts.
CREATE PROCEDURE bench_backlog(events bigint, posts bigint)
LANGUAGE plpgsql AS $$
DECLARE
    i bigint := 0;
    e uuid;
    p uuid;
BEGIN
    WHILE i < events LOOP
        e := bench_uuid_v7();
        p := bench_post(1 + (random() * (posts - 1))::bigint);
        INSERT INTO outbox (event_id, event_type, subject, post_id, payload)
        VALUES (e, 'like.added', 'tally.like.added.' || p, p,
                json_build_object('version', 1, 'id', e, 'type', 'like.added', 'time', now(),
                                  'post_id', p, 'post_author', 'bench', 'actor', 'backlog-' || i));
        COMMIT;
        i := i + 1;
    END LOOP;
END $$;
