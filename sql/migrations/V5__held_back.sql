-- Events the updater holds back because applying them now would take a count below zero.
-- Such an event (an unlike, a comment removal) has usually overtaken the event it undoes, so
-- it is redelivered for a while before it is dead-lettered. The hold is timed from
-- first_held_at, in the database: a delivery count is no clock, as failed batches (Postgres
-- down) and killed updaters also use up deliveries.
CREATE TABLE held_back (
    event_id       uuid PRIMARY KEY,
    post_id        uuid NOT NULL,
    event_type     text NOT NULL,
    first_held_at  timestamptz NOT NULL DEFAULT now(),
    last_held_at   timestamptz NOT NULL DEFAULT now(),
    holds          integer NOT NULL DEFAULT 1
);

GRANT SELECT, INSERT, UPDATE, DELETE ON held_back TO tally_updater;

-- What is held back right now: rows whose event is neither applied (inbox) nor dead-lettered.
-- The updater deletes the others when it prunes the inbox.
CREATE VIEW events_held_back AS
SELECT h.*
FROM held_back h
WHERE NOT EXISTS (SELECT 1 FROM inbox i WHERE i.event_id = h.event_id)
  AND NOT EXISTS (SELECT 1 FROM dead_letters d WHERE d.event_id = h.event_id::text);
GRANT SELECT ON events_held_back TO tally_api, tally_relay, tally_updater;
