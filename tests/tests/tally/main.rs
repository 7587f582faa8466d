//! tally's integration tests, one binary: the real services against real Postgres and NATS.

mod api;
mod auth;
mod chaos;
mod comment_body_blank;
mod comment_body_controls;
mod comment_body_length;
mod comment_body_nfc;
mod comments;
mod count_drift_retention;
mod dead_letters_readable;
mod feed;
mod hostile;
mod likers;
mod pipeline;
mod posts;
mod read_your_writes;
mod recent_events_by_post;
mod recent_events_progress;
mod reconcile_needs_the_updater_role;
mod reconcile_no_such_post;
mod relay;
mod roles;
mod toggle;
mod updater;
