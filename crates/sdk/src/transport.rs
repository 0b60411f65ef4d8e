//! The byte pipe under an MQTT connection: TCP, TLS (tokio-rustls) or WebSocket
//! (tokio-tungstenite, over TCP or TLS), opened with the reason of any failure kept
//! ([`Reason`]): the HTTP status of a refused upgrade is read from the response, a TLS
//! alert from rustls's error, not from error text.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

use crate::status::Reason;

/// Where and how to connect.
#[derive(Clone)]
pub(crate) struct Target {
    pub(crate) host: String,
    pub(crate) port: u16,
    /// `None`: plain TCP.
    pub(crate) tls: Option<Arc<ClientConfig>>,
    /// MQTT over WebSocket: the URL (`wss://host[:port]/mqtt?...`) and extra upgrade headers.
    pub(crate) websocket: Option<WebSocketTarget>,
}

#[derive(Clone)]
pub(crate) struct WebSocketTarget {
    pub(crate) url: String,
    pub(crate) headers: Vec<(String, String)>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URL: a presigned one carries a signature and a session token.
        f.debug_struct("Target")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls.is_some())
            .field("websocket", &self.websocket.is_some())
            .finish()
    }
}

pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// An open connection.
pub(crate) enum Transport {
    Stream(Box<dyn Io>),
    WebSocket(Box<WebSocketStream<Box<dyn Io>>>),
}

/// An I/O error, or the rustls error inside it (tokio-rustls reports TLS failures,
/// received alerts included, as `io::Error`s wrapping a `rustls::Error`).
pub(crate) fn io_reason(e: std::io::Error) -> Reason {
    if e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()) {
        let inner = e.into_inner().expect("checked above");
        let tls = inner.downcast::<rustls::Error>().expect("checked above");
        return Reason::Tls(Arc::new(*tls));
    }
    Reason::Io(Arc::new(e))
}

pub(crate) fn websocket_reason(e: tungstenite::Error) -> Reason {
    match e {
        tungstenite::Error::Http(response) => {
            let body = response
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(&b[..b.len().min(512)]).into_owned())
                .filter(|b| !b.trim().is_empty());
            Reason::HttpStatus {
                status: response.status().as_u16(),
                body,
            }
        }
        tungstenite::Error::Io(e) => io_reason(e),
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
            Reason::ClosedByBroker
        }
        other => Reason::WebSocket(Arc::new(other)),
    }
}

/// Open the connection (TCP, then TLS, then the WebSocket upgrade, as `target` asks).
pub(crate) async fn open(target: &Target) -> Result<Transport, Reason> {
    let tcp = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(io_reason)?;
    // Without TCP_NODELAY a request published right after the PUBACK of the previous
    // answer waits for the broker's delayed ACK (Nagle): ~40 ms per request/response.
    tcp.set_nodelay(true).map_err(io_reason)?;
    let io: Box<dyn Io> = match &target.tls {
        None => Box::new(tcp),
        Some(config) => {
            let name = ServerName::try_from(target.host.clone()).map_err(|e| {
                Reason::Io(Arc::new(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("{:?} is not a TLS server name: {e}", target.host),
                )))
            })?;
            let tls = tokio_rustls::TlsConnector::from(config.clone())
                .connect(name, tcp)
                .await
                .map_err(io_reason)?;
            Box::new(tls)
        }
    };
    let Some(ws) = &target.websocket else {
        return Ok(Transport::Stream(io));
    };
    let mut request = ws
        .url
        .as_str()
        .into_client_request()
        .map_err(websocket_reason)?;
    let headers = request.headers_mut();
    headers.insert(
        "Sec-WebSocket-Protocol",
        http::HeaderValue::from_static("mqtt"),
    );
    for (k, v) in &ws.headers {
        match (
            http::HeaderName::try_from(k.as_str()),
            http::HeaderValue::try_from(v.as_str()),
        ) {
            (Ok(k), Ok(v)) => {
                headers.insert(k, v);
            }
            _ => tracing::warn!(header = %k, "custom-auth header not valid HTTP; left out"),
        }
    }
    let (stream, _response) = tokio_tungstenite::client_async(request, io)
        .await
        .map_err(websocket_reason)?;
    Ok(Transport::WebSocket(Box::new(stream)))
}

impl Transport {
    /// Read more bytes into `buf`. Cancel-safe (used in `select!`).
    pub(crate) async fn read(&mut self, buf: &mut BytesMut) -> Result<(), Reason> {
        match self {
            Transport::Stream(s) => {
                // Room for a full TLS record or several small packets per read.
                buf.reserve(16 * 1024);
                let read = s.read_buf(buf).await;
                match read {
                    Ok(0) => Err(Reason::ClosedByBroker),
                    Ok(_) => Ok(()),
                    Err(e) => Err(io_reason(e)),
                }
            }
            Transport::WebSocket(ws) => loop {
                match ws.next().await {
                    Some(Ok(Message::Binary(b))) => {
                        buf.extend_from_slice(&b);
                        return Ok(());
                    }
                    Some(Ok(Message::Close(_))) | None => return Err(Reason::ClosedByBroker),
                    Some(Ok(Message::Text(_))) => {
                        return Err(Reason::Protocol(
                            "text WebSocket frame: MQTT over WebSocket is binary".to_owned(),
                        ))
                    }
                    // tungstenite answers pings itself.
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(websocket_reason(e)),
                }
            },
        }
    }

    /// Write `bytes` (one or more whole packets) and flush.
    pub(crate) async fn write(&mut self, bytes: Bytes) -> Result<(), Reason> {
        match self {
            Transport::Stream(s) => {
                s.write_all(&bytes).await.map_err(io_reason)?;
                s.flush().await.map_err(io_reason)
            }
            Transport::WebSocket(ws) => ws
                .send(Message::Binary(bytes))
                .await
                .map_err(websocket_reason),
        }
    }

    /// Close politely (TLS close_notify, WebSocket close frame); errors do not matter.
    pub(crate) async fn close(&mut self) {
        match self {
            Transport::Stream(s) => {
                let _ = s.shutdown().await;
            }
            Transport::WebSocket(ws) => {
                let _ = SinkExt::close(&mut **ws).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_errors_inside_io_errors_are_recognised() {
        let alert = rustls::Error::AlertReceived(rustls::AlertDescription::BadCertificate);
        let e = std::io::Error::new(std::io::ErrorKind::InvalidData, alert);
        match io_reason(e) {
            Reason::Tls(t) => assert_eq!(
                *t,
                rustls::Error::AlertReceived(rustls::AlertDescription::BadCertificate)
            ),
            other => panic!("{other:?}"),
        }
        let plain = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(matches!(io_reason(plain), Reason::Io(_)));
    }

    #[test]
    fn an_upgrade_refusal_keeps_its_http_status() {
        let response = http::Response::builder()
            .status(403)
            .body(Some(b"Forbidden".to_vec()))
            .unwrap();
        match websocket_reason(tungstenite::Error::Http(Box::new(response))) {
            Reason::HttpStatus { status, body } => {
                assert_eq!(status, 403);
                assert_eq!(body.as_deref(), Some("Forbidden"));
            }
            other => panic!("{other:?}"),
        }
    }
}
