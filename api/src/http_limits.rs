//! Slow and idle clients: a cap on open connections, a deadline for receiving each whole
//! request (`TALLY_HTTP_READ_TIMEOUT_SECS`) and one for waiting between requests
//! (`TALLY_HTTP_IDLE_TIMEOUT_SECS`). Without them a few hundred clients that send headers and
//! then trickle (or send nothing) hold the api's connections for ever.
//!
//! poem's server has only an inactivity timeout (any byte resets it, so a trickle never
//! trips it) and hyper's header timeout also runs while a kept-alive connection waits, so
//! neither says "a whole request within 10 s, and up to 60 s between requests". Here the
//! acceptor wraps each socket: the wrapper knows when a request's first byte arrived and
//! ends the connection (end of stream to hyper) when its head is late or it idled too long;
//! [`RequestClock`] hands the request's deadline to the body reader (`body_limit`), which
//! answers a late body with a 408 problem.

mod connection;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use poem::listener::{Acceptor, TcpAcceptor};
use poem::web::{LocalAddr, RemoteAddr};
use poem::{Endpoint, IntoResponse, Middleware, Request, Response, Result};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

use connection::{Connection, Connections, Phase};

/// How long the acceptor waits after a failed accept (e.g. out of file descriptors) before
/// trying again, rather than spinning.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// The two deadlines, as configured.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Longest to receive one whole request, from its first byte (or the connection's start).
    pub read: Duration,
    /// Longest a connection waits for its next request.
    pub idle: Duration,
}

/// The api's acceptor: at most `max` connections open (the next waits to be accepted until
/// one closes), each wrapped in a [`LimitedStream`].
pub struct LimitedAcceptor {
    inner: TcpAcceptor,
    slots: Arc<Semaphore>,
    timeouts: Timeouts,
    connections: Arc<Connections>,
}

impl std::fmt::Debug for LimitedAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LimitedAcceptor")
            .field("free_slots", &self.slots.available_permits())
            .field("timeouts", &self.timeouts)
            .finish_non_exhaustive()
    }
}

impl LimitedAcceptor {
    pub fn new(inner: TcpAcceptor, max: u32, timeouts: Timeouts) -> Self {
        Self {
            inner,
            slots: Arc::new(Semaphore::new(max as usize)),
            timeouts,
            connections: Arc::default(),
        }
    }

    /// The middleware that gives each request its deadline.
    pub fn request_clock(&self) -> RequestClock {
        RequestClock {
            connections: self.connections.clone(),
            read_timeout: self.timeouts.read,
        }
    }
}

impl Acceptor for LimitedAcceptor {
    type Io = LimitedStream;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.inner.local_addr()
    }

    async fn accept(
        &mut self,
    ) -> io::Result<(
        LimitedStream,
        LocalAddr,
        RemoteAddr,
        poem::http::uri::Scheme,
    )> {
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| io::Error::other("the connection slots are closed"))?;
        loop {
            match self.inner.accept().await {
                Ok((socket, local, remote, scheme)) => {
                    let stream = self.wrap(socket, &remote, slot);
                    return Ok((stream, local, remote, scheme));
                }
                Err(err) => {
                    tracing::warn!(error = %err, "accepting a connection failed; retrying");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                }
            }
        }
    }
}

impl LimitedAcceptor {
    fn wrap(
        &self,
        socket: TcpStream,
        remote: &RemoteAddr,
        slot: OwnedSemaphorePermit,
    ) -> LimitedStream {
        // A new connection's first request is due within the read timeout, like any other.
        let connection = Arc::new(Connection::new(Phase::Head(Instant::now())));
        let peer = remote.as_socket_addr().copied();
        if let Some(peer) = peer {
            self.connections.map().insert(peer, connection.clone());
        }
        LimitedStream {
            socket,
            connection,
            timeouts: self.timeouts,
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            peer,
            connections: self.connections.clone(),
            _slot: slot,
        }
    }
}

/// A client socket that ends (reads as closed) when its request head is late or it idled
/// too long. Dropping it frees its connection slot, after the socket is closed.
#[derive(Debug)]
pub struct LimitedStream {
    socket: TcpStream,
    connection: Arc<Connection>,
    timeouts: Timeouts,
    timer: Pin<Box<Sleep>>,
    peer: Option<SocketAddr>,
    connections: Arc<Connections>,
    _slot: OwnedSemaphorePermit,
}

impl Drop for LimitedStream {
    fn drop(&mut self) {
        if let Some(peer) = self.peer {
            let mut map = self.connections.map();
            if map
                .get(&peer)
                .is_some_and(|c| Arc::ptr_eq(c, &self.connection))
            {
                map.remove(&peer);
            }
        }
    }
}

impl AsyncRead for LimitedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.socket).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.connection.received();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                this.connection.park(cx.waker());
                let Some(deadline) = this.connection.deadline(this.timeouts) else {
                    return Poll::Pending;
                };
                if this.timer.deadline() != deadline {
                    this.timer.as_mut().reset(deadline);
                }
                match this.timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        tracing::debug!(peer = ?this.peer, "closing a late or idle connection");
                        // End of stream: hyper closes the connection (no request is in flight).
                        Poll::Ready(Ok(()))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
            ready => ready,
        }
    }
}

impl AsyncWrite for LimitedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.connection.sent();
        Pin::new(&mut this.socket).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.connection.sent();
        Pin::new(&mut this.socket).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.socket.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().socket).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().socket).poll_shutdown(cx)
    }
}

/// When a request must have arrived in full (its body included), and the timeout that set it.
#[derive(Debug, Clone, Copy)]
pub struct ReadDeadline {
    pub at: Instant,
    pub timeout: Duration,
}

/// Marks each request's connection busy while it is handled, and puts its [`ReadDeadline`]
/// in the request's extensions.
#[derive(Debug, Clone)]
pub struct RequestClock {
    connections: Arc<Connections>,
    read_timeout: Duration,
}

impl<E: Endpoint> Middleware<E> for RequestClock {
    type Output = RequestClockEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        RequestClockEndpoint {
            inner,
            clock: self.clone(),
        }
    }
}

/// [`RequestClock`] applied to an endpoint.
#[derive(Debug)]
pub struct RequestClockEndpoint<E> {
    inner: E,
    clock: RequestClock,
}

/// Sets the connection idle when the request is done, however its handling ends.
struct Done(Option<Arc<Connection>>);

impl Drop for Done {
    fn drop(&mut self) {
        if let Some(connection) = &self.0 {
            connection.end_request();
        }
    }
}

impl<E: Endpoint> Endpoint for RequestClockEndpoint<E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> Result<Response> {
        let connection = req
            .remote_addr()
            .as_socket_addr()
            .and_then(|peer| self.clock.connections.map().get(peer).cloned());
        let started = connection
            .as_ref()
            .map_or_else(Instant::now, |c| c.begin_request(req.version()));
        req.extensions_mut().insert(ReadDeadline {
            at: started + self.clock.read_timeout,
            timeout: self.clock.read_timeout,
        });
        let _done = Done(connection);
        Ok(self.inner.call(req).await?.into_response())
    }
}
