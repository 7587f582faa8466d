//! tally's integration tests, one binary: the real services against real Postgres and NATS.

mod api;
mod auth;
mod bearer_challenges;
mod chaos;
mod comments;
mod cursor_format;
mod error_details;
mod feed;
mod hostile;
mod likers;
mod pipeline;
mod posts;
mod problem_titles;
mod read_your_writes;
mod relay;
mod roles;
mod toggle;
mod updater;
mod user_ids;
