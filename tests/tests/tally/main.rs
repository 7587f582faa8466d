//! tally's integration tests, one binary: the real services against real Postgres and NATS.

mod api;
mod auth;
mod chaos;
mod comments;
mod deleted_post_id;
mod deleted_post_removals;
mod feed;
mod group_commit;
mod hostile;
mod likers;
mod pipeline;
mod posts;
mod read_your_writes;
mod relay;
mod roles;
mod toggle;
mod updater;
