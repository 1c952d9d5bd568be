//! Serving: the accept loop, HTTP/1.1 with upgrades, the client's address and the graceful drain.
//!
//! This is the one serve path of Switchyard: the application, the test fixtures and every crate's
//! tests use it, so what is tested is what runs. It serves HTTP/1.1 on the accepted stream itself
//! (not `axum::serve`, which wraps the stream for HTTP/2 detection): a WebSocket upgrade then hands the
//! engine the bare `TcpStream` back, and hyper's read-ahead buffer is freed instead of being carried
//! inside `Upgraded` for the life of the connection.
//!
//! With [`Serve::tls`] every accepted stream goes through a TLS handshake first, in the connection's
//! own task (see [`crate::tls`]); a plain listener takes exactly the path it takes without TLS.

use crate::limits::{ConnectionGuard, ConnectionLimiter};
use crate::tls::Tls;
use crate::RemoteAddr;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::{Service, ServiceExt};

/// The request type every service under [`Serve`] receives.
pub type Request = http::Request<Incoming>;

/// Serves an HTTP service (an axum `Router`, an [`EngineService`](crate::EngineService), ...) on a
/// listener until a shutdown future completes, then drains open requests for a bounded time. Built by
/// [`serve`]; `.await` it (or call [`Serve::run`]).
pub struct Serve<S> {
    listener: TcpListener,
    service: S,
    shutdown: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    drain_timeout: Duration,
    header_read_timeout: Duration,
    tls: Option<Tls>,
    connection_limit: Option<Arc<ConnectionLimiter>>,
}

/// Serves `service` on `listener` until dropped or until [`Serve::with_graceful_shutdown`]'s future
/// completes. Await the returned value (or call [`Serve::run`]).
pub fn serve<S>(listener: TcpListener, service: S) -> Serve<S> {
    Serve {
        listener,
        service,
        shutdown: None,
        drain_timeout: Duration::from_secs(10),
        header_read_timeout: Duration::from_secs(30),
        tls: None,
        connection_limit: None,
    }
}

impl<S, B> Serve<S>
where
    S: Service<Request, Response = http::Response<B>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    /// Stops accepting when `signal` completes, then lets open HTTP requests finish (at most the
    /// drain timeout). Upgraded WebSocket connections are not HTTP requests: the layer above closes
    /// those itself.
    pub fn with_graceful_shutdown(mut self, signal: impl Future<Output = ()> + Send + 'static) -> Self {
        self.shutdown = Some(Box::pin(signal));
        self
    }

    /// How long open HTTP requests may take to finish after shutdown (default 10 s).
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// How long a client may take to send a request's headers (default 30 s).
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// Serves https (and wss) instead of plain HTTP: each accepted connection completes a TLS
    /// handshake first, in its own task, within the handshake timeout of `tls`.
    pub fn tls(mut self, tls: impl Into<Tls>) -> Self {
        self.tls = Some(tls.into());
        self
    }

    /// Limits open connections per client IP: over the limit, a connection is answered
    /// `429 Too Many Requests` and closed right after accept, before any HTTP is parsed (with TLS it is
    /// closed without an answer: there is no TLS session to answer in). A connection counts from
    /// accept until it ends, including the life of a WebSocket upgraded from it.
    pub fn connection_limit(mut self, limiter: Arc<ConnectionLimiter>) -> Self {
        self.connection_limit = Some(limiter);
        self
    }

    /// The accept loop. Returns after shutdown and the drain.
    pub async fn run(self) -> std::io::Result<()> {
        let Serve { listener, service, shutdown, drain_timeout, header_read_timeout, tls, connection_limit } = self;
        // Every connection task holds a receiver; the sender learns when the last one is gone.
        let (stop, stopped) = watch::channel(false);
        let mut shutdown = shutdown.unwrap_or_else(|| Box::pin(std::future::pending()));
        loop {
            let (stream, addr) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: log, back off briefly, keep serving.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = &mut shutdown => break,
            };
            let guard = match &connection_limit {
                None => None,
                Some(limiter) => match limiter.try_acquire(addr.ip()) {
                    Some(guard) => Some(guard),
                    None if tls.is_some() => continue,
                    None => {
                        tokio::spawn(crate::limits::refuse(stream));
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            match &tls {
                None => {
                    tokio::spawn(connection(
                        stream,
                        addr,
                        guard,
                        service.clone(),
                        header_read_timeout,
                        stopped.clone(),
                    ));
                }
                Some(tls) => spawn_tls_connection(
                    tls.clone(),
                    stream,
                    addr,
                    guard,
                    service.clone(),
                    header_read_timeout,
                    stopped.clone(),
                ),
            }
        }
        drop(listener);
        drop(stopped);
        let _ = stop.send(true);
        tokio::select! {
            _ = stop.closed() => {}
            _ = tokio::time::sleep(drain_timeout) => {
                tracing::warn!(timeout = ?drain_timeout, "open HTTP requests did not finish in time")
            }
        }
        Ok(())
    }
}

impl<S, B> std::future::IntoFuture for Serve<S>
where
    S: Service<Request, Response = http::Response<B>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Output = std::io::Result<()>;
    type IntoFuture = Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

/// Runs hyper's HTTP/1.1 connection (with upgrades) on one accepted stream, tagging each request with
/// the client's address, and shuts it down gracefully when `stopped` turns true.
pub fn spawn_connection<IO, S, B>(
    io: IO,
    addr: SocketAddr,
    service: S,
    header_read_timeout: Duration,
    stopped: watch::Receiver<bool>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<Request, Response = http::Response<B>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    tokio::spawn(connection(io, addr, None, service, header_read_timeout, stopped));
}

/// Like [`spawn_connection`], behind a TLS handshake that runs in the spawned task (bounded by the
/// handshake timeout, and abandoned at shutdown).
fn spawn_tls_connection<S, B>(
    tls: Tls,
    stream: tokio::net::TcpStream,
    addr: SocketAddr,
    guard: Option<ConnectionGuard>,
    service: S,
    header_read_timeout: Duration,
    mut stopped: watch::Receiver<bool>,
) where
    S: Service<Request, Response = http::Response<B>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    tokio::spawn(async move {
        let stream = tokio::select! {
            stream = tls.accept(stream, addr) => match stream {
                Some(stream) => stream,
                None => return,
            },
            _ = stopped.wait_for(|stop| *stop) => return,
        };
        connection(stream, addr, guard, service, header_read_timeout, stopped).await
    });
}

/// hyper's HTTP/1.1 connection on `io`, as one future for the connection's task. With a per-IP
/// connection `guard`, every request carries a clone of it, so a WebSocket upgraded from the
/// connection keeps it counted after hyper lets go.
fn connection<IO, S, B>(
    io: IO,
    addr: SocketAddr,
    guard: Option<ConnectionGuard>,
    service: S,
    header_read_timeout: Duration,
    mut stopped: watch::Receiver<bool>,
) -> impl Future<Output = ()> + Send
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<Request, Response = http::Response<B>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let service = hyper::service::service_fn(move |mut req: Request| {
        req.extensions_mut().insert(RemoteAddr(addr));
        if let Some(guard) = &guard {
            req.extensions_mut().insert(guard.clone());
        }
        service.clone().oneshot(req)
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    async move {
        tokio::pin!(connection);
        let result = tokio::select! {
            result = connection.as_mut() => result,
            _ = async { stopped.wait_for(|stop| *stop).await.map(|_| ()) } => {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "HTTP connection ended with an error");
        }
    }
}
