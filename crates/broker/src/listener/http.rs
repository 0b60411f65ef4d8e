//! HTTP for every listener that speaks it, one implementation: the `http` listener (the
//! control plane), HTTP on the TLS port and the `ws` listener, where a request head is
//! read first to tell a WebSocket upgrade (`/mqtt`) from a control-plane call, and HTTPS
//! with a client certificate on the TLS port (ALPN `x-amzn-http-ca`), where the requests
//! are the certificate's.
//!
//! The control plane is served by axum's router on hyper in both places; on the TLS port the head
//! already read is replayed in front of the stream ([`Replayed`]), so hyper sees the
//! request whole. What it answers comes from [`control::answer`]. The `http` listener also
//! serves `GET /metrics` (Prometheus text, [`crate::metrics`]).

use std::io;
use std::net::SocketAddr;
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
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::broker::Broker;
use crate::console;
use crate::control::{self, ApiRequest};
use crate::http_head::RequestHead;
use crate::metrics;
use crate::registry::CertificateIdentity;

/// A request head larger than this is refused (400).
const MAX_HEAD: usize = 16 * 1024;
/// How long one control-plane request on the TLS port may take in all (a slow body, a
/// slow custom authorizer under TestInvokeAuthorizer).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What one connection's requests are answered with: the broker, and the client
/// certificate its TLS handshake verified if it is an `x-amzn-http-ca` connection (then
/// the requests are that certificate's, with no signature to check).
#[derive(Clone)]
struct Served {
    broker: Arc<Broker>,
    certificate: Option<CertificateIdentity>,
}

/// Where an HTTP connection came in, which decides what its app serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    /// The `http` listener (and the plain `ws` listener's non-`/mqtt` requests): the
    /// control plane, the console and `/metrics`.
    Plain,
    /// HTTPS on the TLS port: the control plane and the console (no `/metrics`: the port
    /// faces devices).
    Https,
    /// HTTPS on ALPN `x-amzn-http-ca`: the client certificate's iot-data requests only.
    Certificate,
}

/// The control plane as an axum app: every method and path goes to [`control::answer`]
/// (or [`control::answer_for_certificate`]), but `/metrics` on the plain side and the
/// console's routes where no certificate is the caller.
fn app(broker: Arc<Broker>, certificate: Option<CertificateIdentity>, side: Side) -> Router {
    let router = Router::new();
    let router = if side == Side::Plain {
        router.route("/metrics", axum::routing::get(scrape))
    } else {
        router
    };
    let console = (side != Side::Certificate && certificate.is_none())
        .then(|| console::router(broker.clone(), side == Side::Https));
    let router = router.fallback(handle).with_state(Served {
        broker,
        certificate,
    });
    match console {
        Some(console) => router.merge(console),
        None => router,
    }
}

/// `GET /metrics`: the Prometheus text exposition; with `[admin] metrics_auth = true`, only
/// for a request signed by the admin key (403 otherwise).
async fn scrape(
    State(Served { broker, .. }): State<Served>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if broker.config.metrics_auth() {
        let headers = header_pairs(&headers);
        let request = ApiRequest {
            method: "GET",
            path: uri.path(),
            query: uri.query().unwrap_or(""),
            headers: &headers,
            body: b"",
        };
        if let Err(reason) = control::authenticate_admin(&broker, &request) {
            warn!(%reason, "GET /metrics refused: HTTP 403 (metrics_auth = true)");
            return (
                StatusCode::FORBIDDEN,
                [("content-type", "text/plain")],
                format!("{reason}\n"),
            )
                .into_response();
        }
    }
    let text = broker.metrics.render(&broker.router.metrics_snapshot());
    (
        StatusCode::OK,
        [("content-type", metrics::CONTENT_TYPE)],
        text,
    )
        .into_response()
}

/// The headers as `(name, value)` pairs, as the control plane reads them (values that are
/// not visible ASCII are left out: no signature or API field uses one).
fn header_pairs(headers: &HeaderMap) -> Vec<(&str, &str)> {
    headers
        .iter()
        .filter_map(|(name, value)| value.to_str().ok().map(|value| (name.as_str(), value)))
        .collect()
}

/// Serves one connection of the `http` listener whose first request head (`head`, replayed
/// in front of the stream) is not a `/mqtt` upgrade: keep-alive requests until the client
/// leaves or shutdown (requests under way finish). Every request head, and the wait for
/// the next one, is bounded by `[limits] handshake_timeout`: a client that stalls in a head
/// or sits idle does not hold its socket for longer.
pub(super) async fn serve_connection<S>(
    broker: Arc<Broker>,
    stream: S,
    head: Vec<u8>,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limit = broker.config.limits.handshake_timeout;
    let service = hyper_util::service::TowerToHyperService::new(app(broker, None, Side::Plain));
    let io = hyper_util::rt::TokioIo::new(Replayed {
        head: Bytes::from(head),
        stream,
    });
    let serving = http1(limit).serve_connection(io, service);
    let mut serving = std::pin::pin!(serving);
    let served = tokio::select! {
        served = serving.as_mut() => served,
        _ = shutdown.changed() => {
            serving.as_mut().graceful_shutdown();
            serving.await
        }
    };
    match served {
        Ok(()) => {}
        Err(error) if error.is_timeout() => {
            info!(%peer, "closing connection: no complete HTTP request head within {limit:?} (handshake_timeout)")
        }
        Err(error) => debug!(%peer, %error, "HTTP connection ended with an error"),
    }
}

/// The HTTP/1 server both listeners use; `head_timeout` bounds each request head.
fn http1(head_timeout: Duration) -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(head_timeout);
    builder
}

async fn handle(
    State(Served {
        broker,
        certificate,
    }): State<Served>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let headers = header_pairs(&headers);
    let request = ApiRequest {
        method: method.as_str(),
        path: uri.path(),
        query: uri.query().unwrap_or(""),
        headers: &headers,
        body: &body,
    };
    let answer = match certificate {
        Some(certificate) => control::answer_for_certificate(&broker, &request, certificate).await,
        None => control::answer(&broker, &request).await,
    };
    answer.into_response()
}

/// Serves one control-plane request over HTTPS on the TLS port, whose head may have been
/// read already (`head`, replayed in front of the stream), with the same app as the `http`
/// listener: one request, then the connection closes (as IoT Core's data endpoint does),
/// within [`REQUEST_TIMEOUT`] and until shutdown. With `certificate` (ALPN
/// `x-amzn-http-ca`) the request is that certificate holder's. `https` is false only for
/// the plain `ws` listener's requests.
pub(super) async fn serve_control_plane<S>(
    broker: &Arc<Broker>,
    stream: S,
    head: Vec<u8>,
    certificate: Option<CertificateIdentity>,
    https: bool,
    mut shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = hyper_util::rt::TokioIo::new(Replayed {
        head: Bytes::from(head),
        stream,
    });
    let side = match (&certificate, https) {
        (Some(_), _) => Side::Certificate,
        (None, true) => Side::Https,
        (None, false) => Side::Plain,
    };
    let service =
        hyper_util::service::TowerToHyperService::new(app(broker.clone(), certificate, side));
    let serving = http1(broker.config.limits.handshake_timeout)
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

/// Whether the control-plane app answers `request` where `/mqtt` is the main business (the
/// TLS port, the `ws` listener): a SigV4-signed request, a Cognito JSON 1.1 call, a user
/// pool's JWKS, or the console. Anything else is a 404 there.
pub(super) fn serves_request(request: &RequestHead) -> bool {
    request.header("authorization").is_some()
        || request.header("x-amz-target").is_some()
        || console::serves(&request.path)
        || control::serves_unsigned(&request.method, &request.path)
}

/// A request head read up to its blank line: the parsed head, every byte received
/// (`received[..head_len]` is the head; what follows arrived in the same reads and belongs
/// to the next layer: WebSocket frames, or a body for the control plane).
pub(super) struct ReadHead {
    pub request: RequestHead,
    pub received: Vec<u8>,
    pub head_len: usize,
}

/// Reads a request head in whatever pieces the client sends it (one read per piece, not
/// per byte); `None` if malformed, larger than [`MAX_HEAD`], or cut short.
pub(super) async fn read_head<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> io::Result<Option<ReadHead>> {
    let mut received = Vec::with_capacity(1024);
    let mut searched = 0;
    loop {
        if let Some(head_len) = head_end(&received, searched) {
            return Ok(
                RequestHead::parse(&received[..head_len]).map(|request| ReadHead {
                    request,
                    received,
                    head_len,
                }),
            );
        }
        if received.len() >= MAX_HEAD {
            return Ok(None);
        }
        // The blank line may straddle two reads: look again at the last three bytes.
        searched = received.len().saturating_sub(3);
        if stream.read_buf(&mut received).await? == 0 {
            return Ok(None);
        }
    }
}

/// Where a request head ends (just past its blank line), looking from `from` on only, so
/// a head that arrives a byte at a time is not scanned over and over.
fn head_end(received: &[u8], from: usize) -> Option<usize> {
    received[from..]
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .map(|at| from + at + 4)
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[test]
    fn the_head_ends_after_its_blank_line_wherever_the_search_starts() {
        let bytes = b"GET / HTTP/1.1\r\nHost: h\r\n\r\nFRAME";
        let end = bytes.len() - "FRAME".len();
        for from in 0..end - 3 {
            assert_eq!(head_end(bytes, from), Some(end), "from {from}");
        }
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: h\r\n", 0), None);
    }

    /// A head sent in pieces (the blank line split between two) is found, and the bytes
    /// that followed it in the same write are kept for the next layer.
    #[tokio::test]
    async fn a_head_in_pieces_is_read_whole_and_what_follows_is_kept() {
        let (mut client, mut server) = tokio::io::duplex(64 * 1024);
        let reading = tokio::spawn(async move { read_head(&mut server).await });
        for piece in [
            &b"GET /mqtt?a=1 HTTP/1.1\r\nHo"[..],
            b"st: h\r\n\r",
            b"\nFRAME",
        ] {
            client.write_all(piece).await.unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let read = reading.await.unwrap().unwrap().unwrap();
        assert_eq!(
            (read.request.path.as_str(), read.request.query.as_str()),
            ("/mqtt", "a=1")
        );
        assert_eq!(&read.received[read.head_len..], b"FRAME");
    }

    #[tokio::test]
    async fn an_endless_or_cut_short_head_is_refused() {
        let endless = vec![b'a'; MAX_HEAD + 10];
        assert!(read_head(&mut &endless[..]).await.unwrap().is_none());
        assert!(read_head(&mut &b"GET / HTTP/1.1\r\n"[..])
            .await
            .unwrap()
            .is_none());
    }
}
