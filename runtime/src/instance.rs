//! Which running copy of a service this is (`TALLY_INSTANCE`): several replicas of the api,
//! relay and updater run side by side, and an operator must tell them apart in
//! `pg_stat_activity`, in nats-server's connection list, in the metrics and in the logs. The
//! three services share this crate, so the rules for the name and the log format live here
//! once.

use std::fmt;

use tracing::Subscriber;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The environment variable every service reads its instance name from.
pub const VAR: &str = "TALLY_INSTANCE";
/// The longest instance name. Postgres keeps 63 bytes of `application_name`, and the
/// longest service prefix (`tally-updater/`) takes 14 of them.
pub const MAX_LEN: usize = 48;
/// The label of each service's info metric (`tally_api_instance_info{tally_instance="…"} 1`)
/// that carries the instance name. An info metric, not a label on every series: that is
/// Prometheus' advice for a value constant over a target's life (join it with
/// `* on (instance) group_left (tally_instance)`), and it leaves every existing series as it
/// was. Not `instance`: Prometheus sets that label itself, to the scraped `host:port`, and
/// would rename ours to `exported_instance`.
pub const METRIC_LABEL: &str = "tally_instance";

/// A valid instance name: 1 to [`MAX_LEN`] printable ASCII characters, no spaces.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Instance(String);

/// Why a `TALLY_INSTANCE` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "must be 1 to {MAX_LEN} printable ASCII characters without spaces, e.g. myhost-12345 (got {len} characters{odd})"
)]
pub struct InvalidInstance {
    len: usize,
    odd: &'static str,
}

impl Instance {
    /// Checks `value` against the rules (a trimmed value: stray whitespace from a shell or a
    /// compose file is not part of the name).
    pub fn new(value: &str) -> Result<Self, InvalidInstance> {
        let value = value.trim();
        let len = value.chars().count();
        let printable = value.bytes().all(|b| b.is_ascii_graphic());
        if len == 0 || len > MAX_LEN || !printable {
            let odd = if printable {
                ""
            } else {
                ", some not printable ASCII"
            };
            return Err(InvalidInstance { len, odd });
        }
        Ok(Self(value.to_owned()))
    }

    /// The default: this host's name and this process' id, e.g. `myhost-12345`, which tells
    /// apart replicas on different hosts and on one host alike. A host name that is too long
    /// is cut, and characters the rules refuse become `_`, so the default is always valid.
    pub fn of_this_process() -> Self {
        let pid = std::process::id().to_string();
        let host = whoami::hostname().unwrap_or_default();
        let room = MAX_LEN - pid.len() - 1;
        let host: String = host
            .chars()
            .take(room)
            .map(|c| if c.is_ascii_graphic() { c } else { '_' })
            .collect();
        let host = if host.is_empty() { "host".into() } else { host };
        Self(format!("{host}-{pid}"))
    }

    /// The name as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name `service` (e.g. `tally-api`) gives itself to Postgres and NATS:
    /// `tally-api/myhost-12345`.
    pub fn client_name(&self, service: &str) -> String {
        format!("{service}/{}", self.0)
    }

    /// The label set of the service's info metric (`tally_<service>_instance_info`).
    pub fn metric_labels(&self) -> Vec<(&'static str, String)> {
        vec![(METRIC_LABEL, self.0.clone())]
    }

    /// The value parser for clap (`value_parser = Instance::parse`).
    pub fn parse(value: &str) -> Result<Self, InvalidInstance> {
        Self::new(value)
    }
}

impl fmt::Display for Instance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A log line format that starts every line with `instance=<name> ` and then writes what
/// `inner` writes. A field on a span would miss the lines of tasks spawned outside it (every
/// connection's task in poem, for one); the format sees every line.
#[derive(Debug, Clone)]
pub struct LogFormat<F> {
    instance: Instance,
    inner: F,
}

impl<F> LogFormat<F> {
    /// `inner` is the format the service would use otherwise, e.g.
    /// `tracing_subscriber::fmt::format()`.
    pub fn new(instance: Instance, inner: F) -> Self {
        Self { instance, inner }
    }
}

impl<S, N, F> FormatEvent<S, N> for LogFormat<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> fmt::Result {
        write!(writer, "instance={} ", self.instance)?;
        self.inner.format_event(ctx, writer, event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_name_with_a_pid_is_a_valid_instance() {
        let instance = Instance::new(" web-3.eu-west_1:8080 ").map(|i| i.to_string());
        assert_eq!(instance, Ok("web-3.eu-west_1:8080".to_owned()));
    }

    #[test]
    fn empty_spaced_control_or_overlong_names_are_refused() {
        for value in [
            "",
            "   ",
            "two words",
            "bell\u{7}",
            "caf\u{e9}",
            &"x".repeat(49),
        ] {
            assert!(Instance::new(value).is_err(), "{value:?} was accepted");
        }
        assert!(Instance::new(&"x".repeat(MAX_LEN)).is_ok());
    }

    #[test]
    fn the_default_is_valid_and_ends_with_the_pid() {
        let instance = Instance::of_this_process();
        assert!(Instance::new(instance.as_str()).is_ok(), "{instance}");
        assert!(
            instance
                .as_str()
                .ends_with(&format!("-{}", std::process::id())),
            "{instance}"
        );
    }

    #[test]
    fn the_client_name_puts_the_service_first() {
        let instance = Instance::new("myhost-12345").map(|i| i.client_name("tally-api"));
        assert_eq!(instance.as_deref(), Ok("tally-api/myhost-12345"));
    }
}
