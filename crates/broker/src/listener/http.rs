//! HTTP for every listener that speaks it, one implementation: the `http` listener (the
//! control plane), and HTTP on the TLS port and the `ws` listener, where a request head is
//! read first to tell a WebSocket upgrade (`/mqtt`) from a control-plane call.
//!
//! The control plane is served by axum (hyper) in both places; on the TLS port the head
//! already read is replayed in front of the stream ([`Replayed`]), so hyper sees the
//! request whole. What it answers comes from [`control::answer`].

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::broker::Broker;
use crate::control::{self, ApiRequest};
use crate::http_head::RequestHead;

/// A request head larger than this is refused (400).
const MAX_HEAD: usize = 16 * 1024;
/// How long one control-plane request on the TLS port may take in all (a slow body, a
/// slow custom authorizer under TestInvokeAuthorizer).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The control plane as an axum app: every method and path goes to [`control::answer`].
fn app(broker: Arc<Broker>) -> Router {
    Router::new().fallback(handle).with_state(broker)
}

/// Serves the `http` listener until shutdown.
pub(super) async fn serve_listener(
    broker: Arc<Broker>,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
) {
    let result = axum::serve(listener, app(broker))
        .with_graceful_shutdown(async move {
            let _ = shutdown.changed().await;
        })
        .await;
    if let Err(error) = result {
        warn!(%error, "control plane stopped");
    }
}

async fn handle(
    State(broker): State<Arc<Broker>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .filter_map(|(name, value)| value.to_str().ok().map(|value| (name.as_str(), value)))
        .collect();
    let request = ApiRequest {
        method: method.as_str(),
        path: uri.path(),
        query: uri.query().unwrap_or(""),
        headers: &headers,
        body: &body,
    };
    let answer = control::answer(&broker, &request).await;
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match answer.error_kind {
        Some(kind) => (
            status,
            [
                ("x-amzn-ErrorType", kind),
                ("content-type", "application/json"),
            ],
            answer.body,
        )
            .into_response(),
        None => (status, [("content-type", "application/json")], answer.body).into_response(),
    }
}

/// Serves the control-plane request whose head was already read (HTTPS on the TLS port),
/// with the same app as the `http` listener: one request, then the connection closes (as
/// IoT Core's data endpoint does), within [`REQUEST_TIMEOUT`] and until shutdown.
pub(super) async fn serve_control_plane<S>(
    broker: &Arc<Broker>,
    stream: S,
    head: Vec<u8>,
    mut shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = hyper_util::rt::TokioIo::new(Replayed {
        head: Bytes::from(head),
        stream,
    });
    let service = hyper_util::service::TowerToHyperService::new(app(broker.clone()));
    let serving = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(broker.config.limits.handshake_timeout)
        .keep_alive(false)
        .serve_connection(io, service);
    tokio::select! {
        served = tokio::time::timeout(REQUEST_TIMEOUT, serving) => match served {
            Ok(Ok(())) => {}
            Ok(Err(error)) => debug!(%error, "control-plane connection ended with an error"),
            Err(_) => info!("closing control-plane connection on the TLS port: request not done within {REQUEST_TIMEOUT:?}"),
        },
        _ = shutdown.changed() => {}
    }
}

/// Reads a request head byte by byte up to its blank line, so nothing after it is taken
/// from the stream (WebSocket frames that follow belong to the WebSocket layer). Returns
/// the parsed head and its raw bytes; `None` if malformed or too large.
pub(super) async fn read_head<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> io::Result<Option<(RequestHead, Vec<u8>)>> {
    let mut head = Vec::with_capacity(1024);
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_HEAD {
            return Ok(None);
        }
        let mut byte = [0u8; 1];
        if stream.read(&mut byte).await? == 0 {
            return Ok(None);
        }
        head.push(byte[0]);
    }
    Ok(RequestHead::parse(&head).map(|parsed| (parsed, head)))
}

/// A short plain-text answer, then close (refusals of WebSocket upgrades, 404s).
pub(super) async fn respond<S: AsyncWrite + Unpin>(
    stream: &mut S,
    status: u16,
    reason: &str,
    body: &str,
) {
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// A stream that yields `head` before what `stream` has: hands hyper a request whose head
/// was read already.
struct Replayed<S> {
    head: Bytes,
    stream: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Replayed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.head.is_empty() {
            let n = self.head.len().min(buf.remaining());
            let part = self.head.split_to(n);
            buf.put_slice(&part);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Replayed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
