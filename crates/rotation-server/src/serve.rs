//! The accept loop for plain HTTP and for TLS: HTTP/1.1 connections served
//! by hyper with a header-read timeout (a client that trickles its headers
//! is cut off, which `axum::serve` does not do) and a graceful shutdown that
//! stops accepting and lets open connections finish their requests. At
//! most [`Limits::max_connections`] connections are served at once: the
//! loop stops accepting until one closes, so further clients wait in the
//! kernel's listen backlog instead of exhausting file descriptors.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;

/// The longest a TLS handshake or a request's headers may take.
pub(crate) const MAX_HEADER_TIME: Duration = Duration::from_secs(10);

/// What one client may hold of the server.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Headers (and the TLS handshake) must arrive within this time.
    pub(crate) header_timeout: Duration,
    /// Most connections served at once.
    pub(crate) max_connections: usize,
}

/// Serves `app` on `listener` (over TLS with `tls`) until `stop` turns
/// true, then stops accepting and waits for the open connections' requests
/// to finish.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let header_timeout = limits.header_timeout;
    let acceptor = tls.map(TlsAcceptor::from);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot,
            _ = stop.wait_for(|s| *s) => break,
        };
        let Ok(slot) = slot else { break };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|s| *s) => break,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // E.g. too many open files: back off instead of spinning.
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(app.clone());
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            // Held until the connection ends.
            let _slot = slot;
            let served = match acceptor {
                None => connection(tcp, service, header_timeout, watcher).await,
                Some(acceptor) => match tokio::time::timeout(header_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => connection(stream, service, header_timeout, watcher).await,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                },
            };
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

async fn connection<S>(
    stream: S,
    service: TowerToHyperService<Router>,
    header_timeout: Duration,
    watcher: hyper_util::server::graceful::Watcher,
) -> hyper::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(stream), service);
    watcher.watch(connection).await
}
