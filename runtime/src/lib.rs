//! What every tally service process (api, relay, updater) shares at run time, written once:
//! which replica it is (`TALLY_INSTANCE`) and the log line format that names it.

pub mod instance;
