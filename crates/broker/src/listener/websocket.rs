//! HTTP on the TLS port (ALPN `http/1.1` or none), on the plain `ws` listener and on the
//! `http` listener: `GET /mqtt` upgraded to a WebSocket whose binary frames carry the MQTT
//! byte stream. Other requests go to the control plane (signed requests, the console);
//! on the `http` listener every other request does, on a keep-alive connection.
//!
//! The upgrade request is read and answered here rather than inside the WebSocket library
//! because authenticating it (SigV4, or a custom authorizer's HTTP call) is asynchronous
//! and a refusal must be an HTTP 403, never a WebSocket.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use futures_util::future::Either;
use futures_util::{FutureExt, Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tracing::{debug, info, warn};

use super::http::{read_head, respond, serve_connection, serve_control_plane, serves_request};
use crate::auth::{authenticate, Admission, Transport};
use crate::broker::Broker;
use crate::connection::{self, gated, opening_step, Abandoned};
use crate::metrics::Listener;

/// What a WebSocket connection reads into at a time (and keeps).
const WS_READ_BUFFER: usize = 8 * 1024;

/// Serves one HTTP connection: `/mqtt` upgrades become MQTT connections.
///
/// The HTTP part is boxed and followed by the MQTT connection with `then` (as the TLS
/// handshakes are): an open WebSocket connection keeps no room for the request it came with.
pub fn serve<S>(
    broker: Arc<Broker>,
    stream: S,
    peer: SocketAddr,
    shutdown: watch::Receiver<bool>,
    transport: Transport,
    listener: Listener,
) -> impl Future<Output = ()> + Send
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let upgrading = Box::pin(upgrade(
        broker.clone(),
        stream,
        peer,
        transport,
        listener,
        shutdown.clone(),
    ));
    gated(&broker, upgrading).then(move |upgraded| match upgraded {
        Some((ws, admission)) => Either::Left(connection::serve(
            broker,
            WsBytes::new(ws),
            peer,
            shutdown,
            listener,
            admission,
        )),
        None => Either::Right(std::future::ready(())),
    })
}

/// Answers the HTTP request: `Some` once `/mqtt` is upgraded and authenticated; `None` when
/// the request was answered otherwise (control plane, an error status) or the peer left.
async fn upgrade<S>(
    broker: Arc<Broker>,
    mut stream: S,
    peer: SocketAddr,
    transport: Transport,
    listener: Listener,
    mut shutdown: watch::Receiver<bool>,
) -> Option<(WebSocketStream<S>, Admission)>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limit = broker.config.limits.handshake_timeout;
    let read = match opening_step(limit, &mut shutdown, read_head(&mut stream)).await {
        Ok(Ok(Some(read))) => read,
        Ok(Ok(None)) => {
            respond(&mut stream, 400, "Bad Request", "malformed HTTP request\n").await;
            return None;
        }
        Ok(Err(error)) => {
            debug!(%peer, %error, "connection lost before a complete HTTP request head");
            return None;
        }
        Err(Abandoned::TimedOut) => {
            info!(%peer, "closing connection: no complete HTTP request head within {limit:?} (handshake_timeout)");
            return None;
        }
        Err(Abandoned::ShuttingDown) => return None,
    };
    let request = &read.request;
    if request.path != "/mqtt" {
        if listener == Listener::Http {
            serve_connection(broker, stream, read.received, peer, shutdown).await;
            return None;
        }
        // Here over HTTPS (as IoT Core's data endpoint serves HTTPS publish): the same app
        // as the `http` listener, for what it serves.
        if serves_request(request) {
            let https = matches!(transport, Transport::Tls { .. });
            serve_control_plane(&broker, stream, read.received, None, https, shutdown).await;
            return None;
        }
        info!(%peer, path = %request.path, "HTTP 404: only /mqtt and signed control-plane requests are served");
        respond(&mut stream, 404, "Not Found", "not found\n").await;
        return None;
    }
    let key = request.header("sec-websocket-key").map(str::to_owned);
    let upgrade = request.method == "GET"
        && request.header_has_token("upgrade", "websocket")
        && request.header_has_token("connection", "upgrade")
        && request.header("sec-websocket-version") == Some("13");
    let Some(key) = key.filter(|_| upgrade) else {
        info!(%peer, "HTTP 400: /mqtt needs a WebSocket upgrade (GET, Upgrade: websocket, Sec-WebSocket-Key, version 13)");
        respond(
            &mut stream,
            400,
            "Bad Request",
            "expected a WebSocket upgrade\n",
        )
        .await;
        return None;
    };
    // AWS SDKs ask for `mqtt`; the iOS SDK for `mqttv3.1`.
    let subprotocol = ["mqtt", "mqttv3.1"]
        .into_iter()
        .find(|protocol| request.header_has_token("sec-websocket-protocol", protocol));
    let admission =
        match authenticate::authenticate_upgrade(&broker.auth, request, peer, transport).await {
            Ok(admission) => admission,
            Err(reason) => {
                warn!(%peer, %reason, "WebSocket upgrade refused: HTTP 403");
                respond(&mut stream, 403, "Forbidden", &format!("{reason}\n")).await;
                return None;
            }
        };
    let mut response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n",
        derive_accept_key(key.as_bytes())
    );
    if let Some(protocol) = subprotocol {
        response.push_str(&format!("Sec-WebSocket-Protocol: {protocol}\r\n"));
    }
    response.push_str("\r\n");
    if stream.write_all(response.as_bytes()).await.is_err() {
        return None;
    }
    let mut config = WebSocketConfig::default();
    config.max_message_size = Some(iot::client_rules::max_packet_size(&broker.config.limits) * 2);
    // tungstenite fills its whole read buffer on the first read and keeps it: 128 KiB by
    // default, in every WebSocket connection, idle or waiting for its authorizer. A larger
    // frame still gets room for itself; it is only read in more pieces.
    config.read_buffer_size = WS_READ_BUFFER;
    // Frames the client sent right behind its request are the WebSocket's.
    let mut received = read.received;
    let early_frames = received.split_off(read.head_len);
    let ws = WebSocketStream::from_partially_read(stream, early_frames, Role::Server, Some(config))
        .await;
    Some((ws, admission))
}

/// The MQTT byte stream inside a WebSocket: binary frames in, binary frames out. A packet
/// may span frames and a frame may hold several packets; the MQTT decoder does not care.
pub struct WsBytes<S> {
    ws: WebSocketStream<S>,
    pending: Bytes,
}

impl<S> WsBytes<S> {
    pub fn new(ws: WebSocketStream<S>) -> Self {
        WsBytes {
            ws,
            pending: Bytes::new(),
        }
    }
}

fn to_io(error: tokio_tungstenite::tungstenite::Error) -> io::Error {
    io::Error::other(error)
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsBytes<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(buf.remaining());
                buf.put_slice(&self.pending[..n]);
                self.pending.advance(n);
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut self.ws).poll_next(cx)) {
                Some(Ok(Message::Binary(data))) => self.pending = data,
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {
                    // tungstenite queued the pong; get it onto the wire.
                    let _ = Pin::new(&mut self.ws).poll_flush(cx);
                }
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "text frame on an MQTT WebSocket (MQTT needs binary frames)",
                    )))
                }
                Some(Ok(Message::Close(_))) | None => return Poll::Ready(Ok(())),
                Some(Err(error)) => return Poll::Ready(Err(to_io(error))),
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsBytes<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(Pin::new(&mut self.ws).poll_ready(cx)).map_err(to_io)?;
        Pin::new(&mut self.ws)
            .start_send(Message::binary(Bytes::copy_from_slice(buf)))
            .map_err(to_io)?;
        // Frames are sent as they are written: the connection already batches packets.
        let _ = Pin::new(&mut self.ws).poll_flush(cx).map_err(to_io)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.ws).poll_flush(cx).map_err(to_io)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.ws).poll_close(cx).map_err(to_io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::{SinkExt, StreamExt};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// The MQTT byte stream survives frames that split packets and frames that hold
    /// several, and what the broker writes goes out as binary frames.
    #[tokio::test]
    async fn mqtt_bytes_cross_binary_frames_in_both_directions() {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let mut client = WebSocketStream::from_raw_socket(client_io, Role::Client, None).await;
        let server = WebSocketStream::from_raw_socket(server_io, Role::Server, None).await;
        let mut bytes = WsBytes::new(server);
        // PINGREQ split over two frames, then PINGREQ + DISCONNECT in one.
        for frame in [&[0xC0u8][..], &[0x00], &[0xC0, 0x00, 0xE0, 0x00]] {
            client.send(Message::binary(frame.to_vec())).await.unwrap();
        }
        let mut received = [0u8; 6];
        bytes.read_exact(&mut received).await.unwrap();
        assert_eq!(received, [0xC0, 0x00, 0xC0, 0x00, 0xE0, 0x00]);
        bytes.write_all(&[0xD0, 0x00]).await.unwrap();
        bytes.flush().await.unwrap();
        match client.next().await {
            Some(Ok(Message::Binary(data))) => assert_eq!(&data[..], &[0xD0, 0x00]),
            other => panic!("expected a binary frame, got {other:?}"),
        }
        // A text frame is not MQTT: the stream fails, it does not pass the text on.
        client.send(Message::text("hello")).await.unwrap();
        let mut more = [0u8; 1];
        assert!(bytes.read(&mut more).await.is_err());
    }
}
