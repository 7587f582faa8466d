//! tally's integration tests, one binary: the real services against real Postgres and NATS.

mod api;
mod auth;
mod body_media_types;
mod chaos;
mod comments;
mod connection_cap;
mod cors;
mod duplicate_json_keys;
mod feed;
mod hostile;
mod idle_connections;
mod likers;
mod pipeline;
mod posts;
mod read_your_writes;
mod relay;
mod roles;
mod slow_clients;
mod toggle;
mod updater;
