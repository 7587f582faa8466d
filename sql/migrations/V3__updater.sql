-- The updater in production: the drift view nets out events still in flight, and the
-- updater role may read the outbox, which reconcile needs to tell in-flight events from drift.

-- While the pipeline runs, the source tables are ahead of post_counts by the events not yet
-- applied: outbox rows in neither the inbox nor dead_letters. A post is in drift only when
-- its count differs by more than those. Events older than the inbox retention (8 days by
-- default, TALLY_UPDATER_INBOX_RETENTION_SECS) can no longer be delivered, so they are never
-- in flight. Scans every post: for spot checks, filter by post_id.
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
-- One pass over the recent outbox for all posts (it has no index on post_id).
LEFT JOIN (
    SELECT o.post_id,
           sum(CASE o.event_type WHEN 'like.added' THEN 1
                                 WHEN 'like.removed' THEN -1 ELSE 0 END)::bigint AS likes,
           sum(CASE o.event_type WHEN 'comment.added' THEN 1
                                 WHEN 'comment.removed' THEN -1 ELSE 0 END)::bigint AS comments
    FROM outbox o
    WHERE o.created_at > now() - interval '8 days'
      AND NOT EXISTS (SELECT 1 FROM inbox i WHERE i.event_id = o.event_id)
      AND NOT EXISTS (SELECT 1 FROM dead_letters d WHERE d.event_id = o.event_id::text)
    GROUP BY o.post_id
) f USING (post_id)
WHERE coalesce(c.likes, 0) <> a.likes - coalesce(f.likes, 0)
   OR coalesce(c.comments, 0) <> a.comments - coalesce(f.comments, 0);

-- reconcile: events in the outbox but not yet in the inbox are in flight, not drift.
GRANT SELECT ON outbox TO tally_updater;
