-- pgbench baseline: the naive design, the like transaction plus a counter UPDATE on the post's
-- row, so concurrent likes of one post queue on its row lock.
\set p random(1, :nposts)
\set u random(1, 2000000000)
BEGIN;
SELECT author_id FROM posts WHERE post_id = bench_post(:p) AND deleted_at IS NULL FOR SHARE;
INSERT INTO likes (post_id, user_id) VALUES (bench_post(:p), 'pgbench-' || :u) ON CONFLICT DO NOTHING;
UPDATE naive_counts SET likes = likes + 1 WHERE post_id = bench_post(:p);
COMMIT;
