//! Connection hardening for the HTTPS listener: how long a client may take for its headers,
//! its TLS handshake and its body, how long a connection may sit idle, how many connections
//! are held at once, and HTTP/2's per-connection limits.
//!
//! axum-server exposes hyper's builder (header-read timeout, HTTP/2 limits), the TLS handshake
//! timeout and a first-request timeout; what it lacks (a connection limit and an idle timeout
//! that also covers HTTP/2 and knows about requests in flight) is the acceptor below, which sits
//! under TLS so it sees the raw connection.

use axum::body::{Body, Bytes, HttpBody};
use axum_server::accept::Accept;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// The listener's limits. Defaults are [`ConnectionLimits::DEFAULT`] (and in the README).
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// A request's headers must arrive within this (also bounds an HTTP/1.1 connection waiting
    /// for its next request, and a new connection's first request).
    pub header_read_timeout: Duration,
    /// A connection with no request in flight and no bytes moving for this long is closed.
    pub idle_timeout: Duration,
    /// Connections held at once; beyond it new connections are accepted and closed at once.
    pub max_connections: usize,
    pub tls_handshake_timeout: Duration,
    /// A request body must be read completely within this, counted from the first read.
    pub body_read_timeout: Duration,
    pub http2_max_concurrent_streams: u32,
    pub http2_max_header_list_size: u32,
}

impl ConnectionLimits {
    pub const DEFAULT: ConnectionLimits = ConnectionLimits {
        header_read_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(120),
        // Above the 4096 change-feed polls a server lets wait, so the edge fleet's long polls
        // meet the feed's own limit (429 with Retry-After) before a closed connection.
        max_connections: 4352,
        tls_handshake_timeout: Duration::from_secs(10),
        body_read_timeout: Duration::from_secs(30),
        http2_max_concurrent_streams: 100,
        http2_max_header_list_size: 16 * 1024,
    };
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits::DEFAULT
    }
}

/// File descriptors the server needs besides its client connections: the store's pool, audit
/// files, TLS and certificate files, logs.
const RESERVED_FDS: u64 = 256;

/// Raises the soft open-file limit towards what `max_connections` needs (as Go's runtime does:
/// many systems start a service at 1024), up to the hard limit; warns when even that is too low,
/// since past it accept() fails and every client is refused rather than the newest.
pub fn raise_open_file_limit(limits: &ConnectionLimits) {
    let wanted = limits.max_connections as u64 + RESERVED_FDS;
    match rlimit::increase_nofile_limit(wanted) {
        Ok(got) if got < wanted => tracing::warn!(
            open_files = got,
            max_connections = limits.max_connections,
            "the open-file limit is below --max-connections plus {RESERVED_FDS}: raise LimitNOFILE (ulimit -n) or lower --max-connections"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not read or raise the open-file limit"),
    }
}

/// Applies the limits to an axum-server TLS server.
pub fn harden<A>(
    mut server: axum_server::Server<std::net::SocketAddr, A>,
    limits: &ConnectionLimits,
) -> axum_server::Server<std::net::SocketAddr, A> {
    let builder = server.http_builder();
    builder
        .http1()
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .max_concurrent_streams(limits.http2_max_concurrent_streams)
        .max_header_list_size(limits.http2_max_header_list_size);
    // hyper's header timer starts only once HTTP/1 is detected; this also bounds the protocol
    // sniffing and HTTP/2's preface, so a connection that never sends a request is cut as fast.
    server.first_request_timeout(limits.header_read_timeout)
}

/// Bounds the number of connections and closes idle ones. Goes under the TLS acceptor.
#[derive(Clone)]
pub struct Guard {
    slots: Arc<Semaphore>,
    idle: Duration,
    refused: Arc<AtomicU64>,
    /// When the last refusal was logged (ms since `since`): a flood logs once a minute, not
    /// once per connection.
    warned_ms: Arc<AtomicU64>,
    since: Instant,
}

impl Guard {
    pub fn new(limits: &ConnectionLimits) -> Guard {
        Guard {
            slots: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            idle: limits.idle_timeout,
            refused: Arc::default(),
            warned_ms: Arc::new(AtomicU64::new(u64::MAX)),
            since: Instant::now(),
        }
    }
}

impl<S> Accept<TcpStream, S> for Guard {
    type Stream = IdleStream;
    type Service = Tracked<S>;
    type Future = std::future::Ready<io::Result<(IdleStream, Tracked<S>)>>;

    /// Beyond the limit the connection is closed at once, before any TLS: a 503 would need the
    /// handshake and a request read — the very work (CPU, a held socket) the limit protects —
    /// and the Azure SDKs retry a refused connection with back-off as they retry a 503.
    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            let n = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
            let now = self.since.elapsed().as_millis() as u64;
            let last = self.warned_ms.load(Ordering::Relaxed);
            if (last == u64::MAX || now.saturating_sub(last) >= 60_000)
                && self
                    .warned_ms
                    .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                tracing::warn!(
                    refused_total = n,
                    "connection limit reached; new connections are closed until some end"
                );
            }
            return std::future::ready(Err(io::Error::other("connection limit reached")));
        };
        let activity = Arc::new(Activity::new());
        let _ = stream.set_nodelay(true);
        std::future::ready(Ok((
            IdleStream {
                io: stream,
                idle: self.idle,
                timer: Box::pin(tokio::time::sleep(self.idle)),
                activity: activity.clone(),
                _slot: slot,
            },
            Tracked {
                inner: service,
                activity,
            },
        )))
    }
}

/// When a connection last moved bytes, and how many of its requests are being handled.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }

    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// When the connection becomes idle-expired; a request in flight (a long poll, a slow
    /// store) keeps it alive.
    fn deadline(&self, idle: Duration) -> Instant {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            self.touch();
        }
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed)) + idle
    }
}

/// The accepted TCP stream: holds its connection slot and fails its I/O once idle too long,
/// which makes hyper close the connection.
pub struct IdleStream {
    io: TcpStream,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
    activity: Arc<Activity>,
    _slot: OwnedSemaphorePermit,
}

impl IdleStream {
    /// Called when I/O would wait: arms the timer, or fails if the connection is idle-expired.
    fn check_idle(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        loop {
            let deadline = self.activity.deadline(self.idle);
            if deadline <= Instant::now() {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "idle connection"));
            }
            if self.timer.deadline() != deadline {
                self.timer.as_mut().reset(deadline);
            }
            if self.timer.as_mut().poll(cx).is_pending() {
                return Ok(());
            }
        }
    }

    fn on<T>(&mut self, cx: &mut Context<'_>, polled: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match polled {
            Poll::Ready(r) => {
                self.activity.touch();
                Poll::Ready(r)
            }
            Poll::Pending => {
                self.check_idle(cx)?;
                Poll::Pending
            }
        }
    }
}

impl AsyncRead for IdleStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        this.on(cx, polled)
    }
}

impl AsyncWrite for IdleStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        this.on(cx, polled)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_flush(cx);
        this.on(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.on(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// The connection's service, counting its requests in flight for the idle timer.
#[derive(Clone)]
pub struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

impl<S, R> tower_service::Service<R> for Tracked<S>
where
    S: tower_service::Service<R>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        self.activity.in_flight.fetch_add(1, Ordering::Relaxed);
        let guard = InFlight(self.activity.clone());
        let fut = self.inner.call(request);
        Box::pin(async move {
            let out = fut.await;
            drop(guard);
            out
        })
    }
}

/// Gives every request body a total read deadline, counted from its first read. hyper has no
/// body timeout, and tower-http's restarts its timer on every frame, so a client trickling a
/// byte at a time would never hit it. The handlers see a body error and answer it in their own
/// error shape.
pub fn body_deadline(request: axum::extract::Request, limit: Duration) -> axum::extract::Request {
    request.map(|body| {
        Body::new(DeadlineBody {
            inner: body,
            limit,
            timer: None,
        })
    })
}

struct DeadlineBody {
    inner: Body,
    limit: Duration,
    timer: Option<Pin<Box<Sleep>>>,
}

#[derive(Debug, thiserror::Error)]
#[error("the request body was not received within {0:?}")]
struct BodyTimeout(Duration);

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let limit = this.limit;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        ready!(timer.as_mut().poll(cx));
        Poll::Ready(Some(Err(axum::Error::new(BodyTimeout(limit)))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
