//! tally's integration tests, one binary: the real services against real Postgres and NATS.

mod api;
mod chaos;
mod feed;
mod hostile;
mod pipeline;
mod read_your_writes;
mod relay;
mod roles;
mod toggle;
mod updater;
