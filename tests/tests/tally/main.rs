//! tally's integration tests, one binary: the real services against real Postgres and NATS.

mod api;
mod auth;
mod bearer_challenges;
mod body_media_types;
mod chaos;
mod comments;
mod connection_cap;
mod cors;
mod cursor_format;
mod duplicate_json_keys;
mod error_details;
mod feed;
mod hostile;
mod idle_connections;
mod instance;
mod likers;
mod pipeline;
mod posts;
mod problem_titles;
mod read_your_writes;
mod relay;
mod roles;
mod slow_clients;
mod toggle;
mod updater;
mod user_ids;
