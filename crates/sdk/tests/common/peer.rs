//! A scripted MQTT 3.1.1 peer: a "broker" of a few lines over a loopback TCP listener,
//! driven step by step by the test, for what only the wire shows (CONNECT flags, DUP,
//! packet ids on resend, what is written before CONNACK, PUBACKs withheld, a connection
//! dropped on cue). It speaks through the workspace's `mqtt` codec, not through the SDK.
//!
//! Every wait is bounded by [`STEP`]: a step that does not happen panics with what the
//! peer saw instead, so a test fails rather than hangs.

use std::time::Duration;

use bytes::BytesMut;
use mqtt::{
    Ack, ConnAck, Connect, Packet, Protocol, Publish, ReasonCode, SubAck, Subscribe, UnsubAck,
    Unsubscribe,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The longest any one scripted step waits.
pub const STEP: Duration = Duration::from_secs(5);

const MAX_PACKET: usize = 1 << 20;

/// The listening side: one [`PeerConn`] per accepted connection.
pub struct Peer {
    listener: TcpListener,
}

impl Peer {
    pub async fn bind() -> Peer {
        Peer {
            listener: TcpListener::bind("127.0.0.1:0").await.unwrap(),
        }
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().unwrap().port()
    }

    /// The next connection (panics after [`STEP`]).
    pub async fn accept(&self) -> PeerConn {
        self.accept_within(STEP)
            .await
            .expect("peer: no connection attempt")
    }

    /// The next connection, or `None` when none comes within `within`.
    pub async fn accept_within(&self, within: Duration) -> Option<PeerConn> {
        let (stream, _) = tokio::time::timeout(within, self.listener.accept())
            .await
            .ok()?
            .unwrap();
        Some(PeerConn {
            stream,
            buf: BytesMut::new(),
            seen: Vec::new(),
        })
    }
}

/// One client connection, read and written only when the test says so.
pub struct PeerConn {
    stream: TcpStream,
    buf: BytesMut,
    /// Every packet read so far, in order (PINGREQs included).
    pub seen: Vec<Packet>,
}

impl PeerConn {
    /// The next packet, `Ok(None)` on EOF, `Err(())` when none comes within `within`.
    /// PINGREQ is answered (and recorded) here, so a waiting test keeps the link alive.
    pub async fn next_within(&mut self, within: Duration) -> Result<Option<Packet>, ()> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match mqtt::decode(&mut self.buf, MAX_PACKET, Protocol::V311) {
                Ok(Some(p)) => {
                    self.seen.push(p.clone());
                    if p == Packet::PingReq {
                        self.send(Packet::PingResp).await;
                    }
                    return Ok(Some(p));
                }
                Ok(None) => {}
                Err(e) => panic!("peer: undecodable bytes from the client: {e}"),
            }
            let mut chunk = [0u8; 8192];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) => return Err(()),
                Ok(Ok(0)) | Ok(Err(_)) => return Ok(None),
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// The next packet other than PINGREQ (panics on EOF or after [`STEP`]).
    pub async fn next(&mut self) -> Packet {
        loop {
            match self.next_within(STEP).await {
                Ok(Some(Packet::PingReq)) => {}
                Ok(Some(p)) => return p,
                Ok(None) => panic!("peer: connection closed; seen {:?}", self.seen),
                Err(()) => panic!("peer: no packet within {STEP:?}; seen {:?}", self.seen),
            }
        }
    }

    pub async fn send(&mut self, p: Packet) {
        let mut out = BytesMut::new();
        mqtt::encode(&p, &mut out, Protocol::V311).unwrap();
        // The client may have gone; the test's next step says what that means.
        let _ = self.stream.write_all(&out).await;
    }

    pub async fn expect_connect(&mut self) -> Connect {
        match self.next().await {
            Packet::Connect(c) => c,
            other => panic!("peer: expected CONNECT, got {other:?}"),
        }
    }

    pub async fn connack(&mut self, session_present: bool) {
        self.send(Packet::ConnAck(ConnAck::new(
            session_present,
            ReasonCode::SUCCESS,
        )))
        .await;
    }

    /// CONNECT in, CONNACK (accepted) out.
    pub async fn handshake(&mut self, session_present: bool) -> Connect {
        let c = self.expect_connect().await;
        self.connack(session_present).await;
        c
    }

    pub async fn expect_publish(&mut self) -> Publish {
        match self.next().await {
            Packet::Publish(p) => p,
            other => panic!("peer: expected PUBLISH, got {other:?}"),
        }
    }

    pub async fn expect_subscribe(&mut self) -> Subscribe {
        match self.next().await {
            Packet::Subscribe(s) => s,
            other => panic!("peer: expected SUBSCRIBE, got {other:?}"),
        }
    }

    pub async fn expect_unsubscribe(&mut self) -> Unsubscribe {
        match self.next().await {
            Packet::Unsubscribe(u) => u,
            other => panic!("peer: expected UNSUBSCRIBE, got {other:?}"),
        }
    }

    pub async fn puback(&mut self, pkid: u16) {
        self.send(Packet::PubAck(Ack::new(pkid))).await;
    }

    /// SUBACK granting every filter of `s` at its requested QoS.
    pub async fn suback(&mut self, s: &Subscribe) {
        let return_codes = s
            .filters
            .iter()
            .map(|f| ReasonCode::granted(f.qos))
            .collect();
        self.send(Packet::SubAck(SubAck {
            pkid: s.pkid,
            return_codes,
            properties: Default::default(),
        }))
        .await;
    }

    pub async fn unsuback(&mut self, u: &Unsubscribe) {
        self.send(Packet::UnsubAck(UnsubAck {
            pkid: u.pkid,
            reason_codes: Vec::new(),
            properties: Default::default(),
        }))
        .await;
    }

    /// Wait until the client ends the connection (DISCONNECT or EOF), answering PINGREQs;
    /// `false` when it is still open after `within`. Other packets are recorded in `seen`.
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_within(left).await {
                Ok(None) | Ok(Some(Packet::Disconnect(_))) => return true,
                Ok(Some(_)) => {}
                Err(()) => return false,
            }
        }
    }

    /// Nothing but PINGREQ arrives for `within` (and the connection stays open).
    pub async fn quiet_for(&mut self, within: Duration) -> Result<(), Option<Packet>> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_within(left).await {
                Err(()) => return Ok(()),
                Ok(Some(Packet::PingReq)) => {}
                Ok(other) => return Err(other),
            }
        }
    }
}
