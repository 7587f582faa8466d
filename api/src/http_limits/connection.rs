//! One connection's state machine: idle, receiving a request's head, or busy with a request
//! (HTTP/1), or multiplexed (HTTP/2); and the deadline each state sets. Shared by the socket
//! wrapper, which sees bytes, and the request middleware, which sees requests.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Waker;

use poem::http::Version;
use tokio::time::Instant;

use super::Timeouts;

/// Where an HTTP/1 connection is.
#[derive(Debug, Clone, Copy)]
pub(super) enum Phase {
    /// Waiting, since then, for the first byte of its next request.
    Idle(Instant),
    /// Receiving a request's head, begun then.
    Head(Instant),
    /// A request's head is in: its body's deadline and its handler are [`super::RequestClock`]'s.
    Busy,
    /// HTTP/2: several requests at once, so only inactivity ends it (since the last byte).
    Multiplexed(Instant),
}

/// One connection's phase, shared by its socket wrapper and its requests.
#[derive(Debug)]
pub(super) struct Connection {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    phase: Phase,
    /// Who last found nothing to read. Its timer was set for the phase it read in, and hyper
    /// reads again only when woken, so it is woken when a request ends to set the idle one.
    parked: Option<Waker>,
}

impl Connection {
    pub(super) fn new(phase: Phase) -> Self {
        Self {
            state: Mutex::new(State {
                phase,
                parked: None,
            }),
        }
    }

    fn with_state<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn with_phase<T>(&self, f: impl FnOnce(&mut Phase) -> T) -> T {
        self.with_state(|state| f(&mut state.phase))
    }

    /// A read found nothing: remember who to wake when the deadline moves.
    pub(super) fn park(&self, waker: &Waker) {
        self.with_state(|state| match &state.parked {
            Some(parked) if parked.will_wake(waker) => {}
            _ => state.parked = Some(waker.clone()),
        });
    }

    /// Bytes arrived: an idle connection starts receiving a request.
    pub(super) fn received(&self) {
        self.with_phase(|phase| match phase {
            Phase::Idle(_) => *phase = Phase::Head(Instant::now()),
            Phase::Multiplexed(last) => *last = Instant::now(),
            Phase::Head(_) | Phase::Busy => {}
        });
    }

    /// Bytes went out: an HTTP/2 connection is active.
    pub(super) fn sent(&self) {
        self.with_phase(|phase| {
            if let Phase::Multiplexed(last) = phase {
                *last = Instant::now();
            }
        });
    }

    /// When the connection must end unless something changes.
    pub(super) fn deadline(&self, timeouts: Timeouts) -> Option<Instant> {
        self.with_phase(|phase| match *phase {
            Phase::Idle(since) | Phase::Multiplexed(since) => Some(since + timeouts.idle),
            Phase::Head(started) => Some(started + timeouts.read),
            Phase::Busy => None,
        })
    }

    /// A request's head is in; returns when the request began.
    pub(super) fn begin_request(&self, version: Version) -> Instant {
        let now = Instant::now();
        self.with_phase(|phase| {
            if version >= Version::HTTP_2 {
                *phase = Phase::Multiplexed(now);
                return now;
            }
            let started = match *phase {
                Phase::Head(started) => started,
                _ => now,
            };
            *phase = Phase::Busy;
            started
        })
    }

    /// The answer is out: an HTTP/1 connection waits for its next request.
    pub(super) fn end_request(&self) {
        let parked = self.with_state(|state| match state.phase {
            Phase::Busy => {
                state.phase = Phase::Idle(Instant::now());
                state.parked.take()
            }
            _ => None,
        });
        if let Some(waker) = parked {
            waker.wake();
        }
    }
}

/// The open connections by peer address, so a request finds its connection.
#[derive(Debug, Default)]
pub(super) struct Connections(Mutex<HashMap<SocketAddr, Arc<Connection>>>);

impl Connections {
    pub(super) fn map(&self) -> MutexGuard<'_, HashMap<SocketAddr, Arc<Connection>>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_deadline_is_the_read_timeout_while_receiving_none_while_busy_and_idle_after() {
        let timeouts = Timeouts {
            read: Duration::from_secs(10),
            idle: Duration::from_secs(60),
        };
        let connection = Connection::new(Phase::Head(Instant::now()));
        let head = connection.deadline(timeouts);

        let started = connection.begin_request(Version::HTTP_11);
        assert_eq!(head, Some(started + timeouts.read));
        assert_eq!(connection.deadline(timeouts), None);

        connection.end_request();
        let idle = connection.deadline(timeouts).unwrap_or(started);
        assert!(idle >= started + timeouts.idle);

        connection.received();
        let next = connection.deadline(timeouts).unwrap_or(idle);
        assert!(
            next < idle,
            "a new request's head is due within the read timeout"
        );
    }

    #[test]
    fn an_http2_connection_ends_only_after_the_idle_timeout_of_inactivity() {
        let timeouts = Timeouts {
            read: Duration::from_secs(10),
            idle: Duration::from_secs(60),
        };
        let connection = Connection::new(Phase::Head(Instant::now()));
        let started = connection.begin_request(Version::HTTP_2);
        connection.end_request();
        let deadline = connection.deadline(timeouts).unwrap_or(started);
        assert!(deadline >= started + timeouts.idle);
    }
}
