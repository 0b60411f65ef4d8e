//! HTTP on the TLS port (ALPN `http/1.1` or none). Only the request head is read; every
//! request gets a short answer until MQTT over WebSocket (`GET /mqtt`) is built.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::info;

const MAX_HEAD: usize = 16 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, peer: SocketAddr) {
    let mut head = Vec::with_capacity(1024);
    let path = match tokio::time::timeout(READ_TIMEOUT, read_path(&mut stream, &mut head)).await {
        Ok(Ok(Some(path))) => path,
        Ok(Ok(None)) => {
            respond(&mut stream, 400, "Bad Request", "malformed HTTP request\n").await;
            return;
        }
        Ok(Err(_)) | Err(_) => return,
    };
    let (status, reason, body) = if path.split('?').next() == Some("/mqtt") {
        (
            501,
            "Not Implemented",
            "MQTT over WebSocket is not available in this version\n",
        )
    } else {
        (404, "Not Found", "not found\n")
    };
    info!(%peer, %path, status, "HTTP request on the TLS port");
    respond(&mut stream, status, reason, body).await;
}

/// Reads until the end of the request head; `None` when it is not valid HTTP/1.x.
async fn read_path<S: AsyncRead + Unpin>(
    stream: &mut S,
    head: &mut Vec<u8>,
) -> std::io::Result<Option<String>> {
    loop {
        let mut chunk = [0u8; 1024];
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Ok(None);
        }
        head.extend_from_slice(&chunk[..read]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(head) {
            Ok(httparse::Status::Complete(_)) => return Ok(request.path.map(str::to_owned)),
            Ok(httparse::Status::Partial) if head.len() < MAX_HEAD => {}
            _ => return Ok(None),
        }
    }
}

async fn respond<S: AsyncWrite + Unpin>(stream: &mut S, status: u16, reason: &str, body: &str) {
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}
