//! Accepting and serving connections. latchkey runs hyper itself, rather
//! than through poem's `Server`, so that every connection is bounded: how
//! many are open, how long one may take to send a request's headers, how
//! long it may sit idle, how many HTTP/2 streams it may hold and how large
//! its headers may be, and how long a graceful shutdown waits for it.

use std::{
    collections::BTreeSet,
    convert::Infallible,
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard},
    task::{Context, Poll},
    time::Duration,
};

use http_body_util::combinators::BoxBody;
use hyper::{
    body::{Body, Bytes, Frame, Incoming, SizeHint},
    http::{uri::Scheme, Version},
    service::service_fn,
};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use poem::{
    web::{LocalAddr, RemoteAddr},
    Addr, Endpoint,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{watch, Notify, OwnedSemaphorePermit, Semaphore},
    task::JoinSet,
    time::Instant,
};

use crate::{config::Limits, http::middleware::BODY_LIMIT};

/// A request's line and headers may take this much in all (HTTP/1), or its
/// header list this much as HTTP/2 counts it; beyond, the answer is `431`.
pub const MAX_HEADERS_SIZE: usize = 16 * 1024;

/// Connections latchkey serves at once unless told otherwise, when the
/// process may open enough files.
const DEFAULT_MAX_CONNECTIONS: u64 = 4096;

/// How long accepting pauses after the kernel refused a connection (out of
/// descriptors, most likely), rather than spinning on the error.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What bounds each connection, taken from the abuse limits.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub request_timeout: Duration,
    pub max_connections: usize,
    pub http2_max_streams: u32,
}

impl ConnectionLimits {
    pub fn new(limits: &Limits) -> ConnectionLimits {
        let max_connections = limits
            .max_connections
            .map_or_else(default_max_connections, u64::from);
        ConnectionLimits {
            header_timeout: limits.header_timeout,
            idle_timeout: limits.idle_timeout,
            request_timeout: limits.request_timeout,
            max_connections: usize::try_from(max_connections).unwrap_or(usize::MAX),
            http2_max_streams: limits.http2_max_streams,
        }
    }
}

/// 4096, or fewer when the open-file limit is lower: a quarter of that
/// limit (at least 64 descriptors) is left to the database, the data
/// directory's files and the logs, so that a full house of clients never
/// makes the server itself fail to open a file.
pub fn default_max_connections() -> u64 {
    match open_file_limit() {
        Some(limit) => limit
            .saturating_sub((limit / 4).max(64))
            .clamp(1, DEFAULT_MAX_CONNECTIONS),
        None => DEFAULT_MAX_CONNECTIONS,
    }
}

#[cfg(unix)]
fn open_file_limit() -> Option<u64> {
    rlimit::getrlimit(rlimit::Resource::NOFILE)
        .ok()
        .map(|(soft, _hard)| soft)
}

#[cfg(not(unix))]
fn open_file_limit() -> Option<u64> {
    None
}

/// Serves `endpoint` on `listener` until `stop` completes; then stops
/// accepting, asks every connection to close once its requests are
/// answered, and waits up to `drain` for them before dropping the rest.
pub async fn serve<E>(
    listener: TcpListener,
    endpoint: E,
    limits: ConnectionLimits,
    stop: impl Future<Output = ()>,
    drain: Duration,
) where
    E: Endpoint + 'static,
{
    let local = listener.local_addr().ok();
    let endpoint = Arc::new(endpoint);
    let builder = Arc::new(builder(&limits));
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let (closing, closing_seen) = watch::channel(false);
    let mut connections = JoinSet::new();
    tracing::info!(
        addr = %local.map_or_else(|| "unknown".to_owned(), |a| a.to_string()),
        max_connections = limits.max_connections,
        "accepting connections"
    );
    tokio::pin!(stop);
    loop {
        // Past the cap, new connections wait in the kernel's backlog: the
        // process never runs out of descriptors for its own files.
        let permit = tokio::select! {
            biased;
            () = &mut stop => break,
            Some(done) = connections.join_next() => { report(done); continue; }
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut stop => break,
            Some(done) = connections.join_next() => { report(done); continue; }
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let local = local.unwrap_or(peer);
        connections.spawn(serve_connection(
            Connection {
                stream,
                peer,
                local,
                permit,
            },
            Arc::clone(&endpoint),
            Arc::clone(&builder),
            limits,
            closing_seen.clone(),
        ));
    }
    drop(listener);
    let _ = closing.send(true);
    let open = connections.len();
    if open > 0 {
        tracing::info!(connections = open, "draining connections");
    }
    let drained = tokio::time::timeout(drain, async {
        while let Some(done) = connections.join_next().await {
            report(done);
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = connections.len(),
            ?drain,
            "connections still open after the drain timeout are dropped"
        );
        connections.shutdown().await;
    }
}

fn report(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        if e.is_panic() {
            tracing::error!(error = %e, "a connection task panicked");
        }
    }
}

/// HTTP/1.1, and HTTP/2 for clients that speak it from the first byte (h2c
/// with prior knowledge).
fn builder(limits: &ConnectionLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // No timer: the header and idle timeouts are this module's own (see
    // `Activity`), since hyper's header timer starts the moment a keep-alive
    // connection goes idle and so would cut every one at the header timeout.
    builder
        .http1()
        .keep_alive(true)
        .max_buf_size(MAX_HEADERS_SIZE);
    builder
        .http2()
        .max_concurrent_streams(limits.http2_max_streams)
        .max_header_list_size(u32::try_from(MAX_HEADERS_SIZE).unwrap_or(u32::MAX))
        // A client that opens and cancels streams faster than they are
        // served is sent away (CVE-2023-44487), as is one that keeps
        // sending frames the server must reset.
        .max_pending_accept_reset_streams(20)
        .max_local_error_reset_streams(1024)
        // No request body this API takes is larger, so no stream needs a
        // larger window to send one.
        .initial_stream_window_size(u32::try_from(BODY_LIMIT).unwrap_or(u32::MAX));
    builder
}

/// An accepted connection and the permit it holds until it closes.
struct Connection {
    stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    permit: OwnedSemaphorePermit,
}

async fn serve_connection<E: Endpoint + 'static>(
    connection: Connection,
    endpoint: Arc<E>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    limits: ConnectionLimits,
    mut closing: watch::Receiver<bool>,
) {
    let Connection {
        stream,
        peer,
        local,
        permit: _permit,
    } = connection;
    // Answers are small and written whole: no reason to wait for more.
    let _ = stream.set_nodelay(true);
    let activity = Arc::new(Activity::new(Instant::now()));
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: Arc::clone(&activity),
    });
    let service = {
        let activity = Arc::clone(&activity);
        service_fn(move |req: hyper::Request<Incoming>| {
            let request = Activity::begin(&activity, req.version());
            let endpoint = Arc::clone(&endpoint);
            async move {
                let req = poem::Request::from((
                    req,
                    LocalAddr(Addr::SocketAddr(local)),
                    RemoteAddr(Addr::SocketAddr(peer)),
                    Scheme::HTTP,
                ));
                let resp: hyper::Response<BoxBody<Bytes, io::Error>> =
                    endpoint.get_response(req).await.into();
                Ok::<_, Infallible>(resp.map(|body| Answer {
                    body,
                    _request: request,
                }))
            }
        })
    };
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let mut winding_down = None;
    loop {
        let (at, expiry) = activity.phase().deadline(&limits, winding_down);
        tokio::select! {
            served = conn.as_mut() => {
                if let Err(e) = served {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            () = tokio::time::sleep_until(at) => match expiry {
                Expiry::Drop => {
                    tracing::debug!(%peer, "connection dropped: its client is too slow");
                    return;
                }
                Expiry::WindDown => {
                    conn.as_mut().graceful_shutdown();
                    winding_down = Some(Instant::now());
                }
            },
            () = activity.changed.notified() => {}
            _ = closing.wait_for(|closing| *closing), if winding_down.is_none() => {
                conn.as_mut().graceful_shutdown();
                winding_down = Some(Instant::now());
            }
        }
    }
}

/// What a connection is doing, which says how long it may go on doing it.
struct Activity {
    phase: Mutex<Phase>,
    /// Woken at every change of phase, so the deadline is recomputed.
    changed: Notify,
}

#[derive(Debug, Clone)]
struct Phase {
    /// When each request in flight began, with a number to tell apart two
    /// that began at once.
    requests: BTreeSet<(Instant, u64)>,
    next_request: u64,
    /// Since when the connection has had no request in flight.
    waiting_since: Instant,
    /// Since when the client has been sending a request's headers: from
    /// the accept for the first request, from its next byte for an idle
    /// HTTP/1 connection; `None` while a request is in flight or the
    /// connection idles.
    head_since: Option<Instant>,
    /// HTTP/2 connections send frames while idle (pings, settings), which
    /// are no request's headers.
    http2: bool,
}

/// What happens when a connection's deadline passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    /// Closed at once: nothing it is doing deserves an answer any more.
    Drop,
    /// Asked to close once its requests are answered (HTTP/2: GOAWAY).
    WindDown,
}

impl Phase {
    /// When the connection has used up its time, and what happens then.
    /// `winding_down` is when it was asked to close, if it was.
    fn deadline(
        &self,
        limits: &ConnectionLimits,
        winding_down: Option<Instant>,
    ) -> (Instant, Expiry) {
        // A request past its timeout has had its 503; one whose answer the
        // client still has not taken a header timeout later never will.
        if let Some(&(oldest, _)) = self.requests.first() {
            return (
                oldest + limits.request_timeout + limits.header_timeout,
                Expiry::Drop,
            );
        }
        if let Some(since) = self.head_since {
            return (since + limits.header_timeout, Expiry::Drop);
        }
        match winding_down {
            // Nothing in flight: what is left is the client's to read.
            Some(since) => (since + limits.header_timeout, Expiry::Drop),
            None => (self.waiting_since + limits.idle_timeout, Expiry::WindDown),
        }
    }
}

impl Activity {
    fn new(accepted: Instant) -> Activity {
        Activity {
            phase: Mutex::new(Phase {
                requests: BTreeSet::new(),
                next_request: 0,
                waiting_since: accepted,
                head_since: Some(accepted),
                http2: false,
            }),
            changed: Notify::new(),
        }
    }

    fn phase(&self) -> MutexGuard<'_, Phase> {
        // The phase is consistent after every statement that changes it, so
        // a panic elsewhere leaves nothing half done.
        self.phase.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A request's headers have arrived; it is in flight until the
    /// returned guard is dropped with its answer.
    fn begin(activity: &Arc<Activity>, version: Version) -> InFlight {
        let key = {
            let mut phase = activity.phase();
            phase.http2 |= version == Version::HTTP_2;
            phase.head_since = None;
            let key = (Instant::now(), phase.next_request);
            phase.next_request += 1;
            phase.requests.insert(key);
            key
        };
        activity.changed.notify_one();
        InFlight {
            activity: Arc::clone(activity),
            key,
        }
    }

    /// Bytes arrived from the client.
    fn read(&self) {
        let started = {
            let mut phase = self.phase();
            let starts = phase.requests.is_empty() && phase.head_since.is_none() && !phase.http2;
            if starts {
                phase.head_since = Some(Instant::now());
            }
            starts
        };
        if started {
            self.changed.notify_one();
        }
    }
}

/// A request in flight, from its headers to the end of its answer.
struct InFlight {
    activity: Arc<Activity>,
    key: (Instant, u64),
}

impl Drop for InFlight {
    fn drop(&mut self) {
        {
            let mut phase = self.activity.phase();
            phase.requests.remove(&self.key);
            if phase.requests.is_empty() {
                phase.waiting_since = Instant::now();
            }
        }
        self.activity.changed.notify_one();
    }
}

/// A response body that keeps its request in flight until it is sent or
/// dropped.
struct Answer {
    body: BoxBody<Bytes, io::Error>,
    _request: InFlight,
}

impl Body for Answer {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The socket, telling the connection's activity when bytes arrive.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn limits() -> ConnectionLimits {
        ConnectionLimits {
            header_timeout: 10 * SECOND,
            idle_timeout: 60 * SECOND,
            request_timeout: 30 * SECOND,
            max_connections: 8,
            http2_max_streams: 8,
        }
    }

    fn phase(at: Instant) -> Phase {
        Activity::new(at).phase().clone()
    }

    #[test]
    fn a_new_connection_has_the_header_timeout_to_send_its_first_request() {
        let accepted = Instant::now();
        let phase = phase(accepted);
        assert_eq!(
            phase.deadline(&limits(), None),
            (accepted + 10 * SECOND, Expiry::Drop)
        );
    }

    #[test]
    fn an_idle_connection_winds_down_after_the_idle_timeout_and_is_dropped_a_header_timeout_later()
    {
        let accepted = Instant::now();
        let mut phase = phase(accepted);
        phase.head_since = None;
        assert_eq!(
            phase.deadline(&limits(), None),
            (accepted + 60 * SECOND, Expiry::WindDown)
        );
        let asked = accepted + 60 * SECOND;
        assert_eq!(
            phase.deadline(&limits(), Some(asked)),
            (asked + 10 * SECOND, Expiry::Drop)
        );
    }

    #[test]
    fn a_request_in_flight_is_bounded_by_its_timeout_and_then_the_header_timeout() {
        let accepted = Instant::now();
        let mut phase = phase(accepted);
        phase.head_since = None;
        phase.requests.insert((accepted + SECOND, 0));
        phase.requests.insert((accepted + 2 * SECOND, 1));
        assert_eq!(
            phase.deadline(&limits(), Some(accepted)),
            (accepted + 41 * SECOND, Expiry::Drop)
        );
    }

    #[test]
    fn bytes_on_an_idle_http1_connection_start_a_header_timeout_but_not_on_http2() {
        let activity = Activity::new(Instant::now());
        activity.phase().head_since = None;
        activity.read();
        assert!(activity.phase().head_since.is_some());

        let activity = Activity::new(Instant::now());
        {
            let mut phase = activity.phase();
            phase.head_since = None;
            phase.http2 = true;
        }
        activity.read();
        assert!(activity.phase().head_since.is_none());
    }

    #[test]
    fn the_default_connection_cap_leaves_room_below_the_open_file_limit() {
        let cap = default_max_connections();
        assert!((1..=DEFAULT_MAX_CONNECTIONS).contains(&cap));
        if let Some(limit) = open_file_limit() {
            assert!(cap < limit, "{cap} connections with {limit} files");
        }
    }
}
