//! tally's integration tests, one binary: the real services against real Postgres and NATS.

mod api;
mod auth;
mod chaos;
mod comments;
mod feed;
mod hostile;
mod instance;
mod likers;
mod pipeline;
mod posts;
mod read_your_writes;
mod relay;
mod roles;
mod toggle;
mod updater;
