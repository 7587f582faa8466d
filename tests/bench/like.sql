-- pgbench baseline: the api's like transaction in plain SQL (post check, like row, outbox row).
-- -D nposts=1 puts every like on the hot post.
\set p random(1, :nposts)
\set u random(1, 2000000000)
BEGIN;
SELECT author_id FROM posts WHERE post_id = bench_post(:p) AND deleted_at IS NULL FOR SHARE;
INSERT INTO likes (post_id, user_id) VALUES (bench_post(:p), 'pgbench-' || :u) ON CONFLICT DO NOTHING;
INSERT INTO outbox (event_id, event_type, subject, post_id, payload)
SELECT e, 'like.added', 'tally.like.added.' || bench_post(:p), bench_post(:p),
       json_build_object('version', 1, 'id', e, 'type', 'like.added', 'time', now(),
                         'post_id', bench_post(:p), 'post_author', 'bench', 'actor', 'pgbench-' || :u)
FROM gen_random_uuid() AS e;
COMMIT;
