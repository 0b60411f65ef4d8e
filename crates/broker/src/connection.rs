//! One task per client connection: a thin I/O loop around the session state machine.
//!
//! The loop reads bytes, decodes packets, applies IoT Core's rules (pure checks in
//! [`crate::protocol`]), and writes whatever the session has ready, in batches: everything
//! queued is encoded into one buffer and written with one call.
//!
//! Most connections are idle most of the time, so an idle one is kept small: the opening
//! phase (CONNECT, authentication) runs in its own boxed future that is freed once the
//! connection is accepted, reads go through a per-thread scratch buffer so no read buffer
//! is held while waiting, and output and acknowledgement buffers are released whenever the
//! connection goes idle with them empty.
//! What remains while idle is the connection's state, one timer and one wake-up
//! registration (docs/DESIGN-NOTES.md, "Memory per connection").

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use iot::lifecycle::{self, DisconnectReason, EventContext};
use iot::{Action, RequestContext, ResourceKind};
use mqtt::{
    ConnAck, Connect, ConnectReturnCode, LastWill, Packet, Publish, PublishRef, QoS, SubAck,
    Subscribe, SubscribeReturnCode, Unsubscribe,
};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::auth::{Authorizer, Denied, ANONYMOUS};
use crate::authn;
use crate::authorizers::AuthorizedIdentity;
use crate::broker::{unix_millis, Broker, ConnectionId, LiveConnection, Session};
use crate::config::SubscribeDenied;
use crate::protocol::{self, Refusal};
use crate::registry::CertificateIdentity;
use crate::session::{Delivery, Outgoing};

/// How long a new connection may take to send CONNECT.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Stop encoding queued messages once a batch reaches this size; the rest waits for the
/// next write so one slow socket does not pin unbounded memory.
const WRITE_BATCH_BYTES: usize = 64 * 1024;
/// The most one read takes from a socket (the size of each worker thread's scratch buffer).
const MAX_READ_CHUNK: usize = 64 * 1024;

thread_local! {
    /// Every read lands here first and only what arrived is copied into the connection's
    /// input: a waiting connection holds no read buffer (a memcpy per read is cheaper
    /// than 64 KB per idle connection).
    static READ_SCRATCH: RefCell<Box<[u8]>> =
        RefCell::new(vec![0; MAX_READ_CHUNK].into_boxed_slice());
}

/// Who a connection authenticated as before MQTT began.
#[derive(Debug, Clone)]
pub enum Identity {
    /// The plain listener.
    Anonymous,
    /// A registered (or CA-vouched) client certificate: the principal is its id.
    Certificate(CertificateIdentity),
    /// SigV4 credentials: the principal is their identity id (e.g. a Cognito identity).
    Credentials { principal: String },
    /// A custom authorizer's answer: its principal id and the policies it returned.
    Authorizer(AuthorizedIdentity),
    /// Not yet: the CONNECT username carries authorizer fields (ALPN `mqtt`, or a bare
    /// WebSocket upgrade).
    AtConnect {
        protocols: Vec<&'static str>,
        server_name: Option<String>,
    },
}

impl Identity {
    pub fn principal(&self) -> &str {
        match self {
            Identity::Anonymous => ANONYMOUS,
            Identity::Certificate(certificate) => &certificate.certificate_id,
            Identity::Credentials { principal } => principal,
            Identity::Authorizer(authorized) => &authorized.principal_id,
            Identity::AtConnect { .. } => "unauthenticated",
        }
    }
}

/// How a transport hands a connection over: who it is, and when it must end at the latest
/// (WebSocket TTL, custom authorizer's disconnectAfterInSeconds).
#[derive(Debug, Clone)]
pub struct Admission {
    pub identity: Identity,
    pub lifetime: Option<(Duration, DisconnectReason)>,
}

impl From<Identity> for Admission {
    fn from(identity: Identity) -> Admission {
        Admission {
            identity,
            lifetime: None,
        }
    }
}

/// Serves one connection from accept to close.
///
/// Not an `async fn`: an async function keeps room for its arguments for its whole life,
/// and these (the stream, the admission) move into the opening phase, which is boxed.
pub fn serve<S>(
    broker: Arc<Broker>,
    stream: S,
    peer: SocketAddr,
    shutdown: watch::Receiver<bool>,
    admission: impl Into<Admission>,
) -> impl Future<Output = ()> + Send
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let opening = Box::pin(open(broker, stream, peer, shutdown, admission.into()));
    async move {
        let Some((mut connection, mut online)) = opening.await else {
            return;
        };
        let ending = connection.run(&mut online).await;
        Box::pin(connection.finish(online, ending)).await;
    }
}

/// Reads CONNECT, authenticates and opens the session; `None` when the connection ends
/// before it is accepted (every reason is logged).
async fn open<S>(
    broker: Arc<Broker>,
    stream: S,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
    admission: Admission,
) -> Option<(Connection<S>, Online)>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut connection = Connection {
        id: broker.next_connection_id(),
        committed: broker.store.as_ref().map(|store| store.committed()),
        broker,
        stream,
        peer,
        input: BytesMut::new(),
        output: BytesMut::new(),
        pending_acks: VecDeque::new(),
    };
    let connect = tokio::select! {
        connect = tokio::time::timeout(CONNECT_TIMEOUT, connection.read_connect()) => connect,
        _ = shutdown.changed() => return None,
    };
    let connect = match connect {
        Ok(connect) => connect?,
        Err(_) => {
            info!(%peer, "closing connection: no CONNECT within {CONNECT_TIMEOUT:?}");
            return None;
        }
    };
    // From here on shutdown reaches the connection through its `LiveConnection`.
    let online = connection.accept(connect, admission).await?;
    Some((connection, online))
}

struct Connection<S> {
    broker: Arc<Broker>,
    stream: S,
    peer: SocketAddr,
    id: ConnectionId,
    /// Received bytes not yet decoded (a partial packet); empty and unallocated between
    /// packets.
    input: BytesMut,
    /// Encoded packets not yet written; unallocated once everything is written.
    output: BytesMut,
    /// Acknowledgements (PUBACK, SUBACK, UNSUBACK) held until the store has made what
    /// they acknowledge durable, in order (MQTT-4.6.0-2): `(packet, store sequence number)`.
    pending_acks: VecDeque<(Packet, u64)>,
    /// The store's durable sequence number; `None` in memory.
    committed: Option<watch::Receiver<u64>>,
}

/// What an accepted connection carries through its life.
struct Online {
    client_id: Arc<str>,
    session: Arc<Session>,
    /// Wakes the connection (messages queued, session taken over) or asks it to close.
    live: Arc<LiveConnection>,
    will: Option<Box<LastWill>>,
    keep_alive: Duration,
    /// Lifecycle events' `sessionIdentifier`, written out as a UUID when an event is sent.
    session_identifier: u128,
    version_number: u64,
    auth: Authorizer,
    /// When the connection must end at the latest, and why.
    ends_at: Option<(tokio::time::Instant, DisconnectReason)>,
}

/// Why the main loop ended, and whether the will is due.
struct Ending {
    reason: DisconnectReason,
    publish_will: bool,
}

impl Ending {
    fn abnormal(reason: DisconnectReason) -> Ending {
        Ending {
            reason,
            publish_will: true,
        }
    }
}

/// What woke the main loop, besides a wake-up.
enum Event {
    Timer,
    DurableProgress,
    Wrote(std::io::Result<bool>),
    Read(std::io::Result<usize>),
}

impl<S> Connection<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    fn max_packet_size(&self) -> usize {
        protocol::max_packet_size(&self.broker.config.limits)
    }

    /// Reads until the first packet. Anything but a well-formed CONNECT closes the
    /// connection with a logged reason (and CONNACK 1 for an unsupported protocol level).
    async fn read_connect(&mut self) -> Option<Connect> {
        loop {
            let max_packet_size = self.max_packet_size();
            match mqtt::decode(&mut self.input, max_packet_size) {
                Ok(Some(Packet::Connect(connect))) => return Some(connect),
                Ok(Some(other)) => {
                    info!(peer = %self.peer, packet = other.name(), "closing connection: first packet is not CONNECT");
                    return None;
                }
                Ok(None) => {}
                Err(error) => {
                    if protocol::is_unsupported_protocol_level(&error) {
                        self.send_connack(false, ConnectReturnCode::UnacceptableProtocolVersion)
                            .await;
                    }
                    info!(peer = %self.peer, %error, "closing connection: malformed CONNECT");
                    return None;
                }
            }
            match poll_fn(|cx| self.poll_read(cx)).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Reads what the socket has (through the thread's scratch buffer) onto `input`.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        READ_SCRATCH.with_borrow_mut(|scratch| {
            let mut buf = ReadBuf::new(scratch);
            ready!(Pin::new(&mut self.stream).poll_read(cx, &mut buf))?;
            self.input.extend_from_slice(buf.filled());
            Poll::Ready(Ok(buf.filled().len()))
        })
    }

    /// Writes some of `output`, or flushes once it is empty; `Ok(true)` after a flush.
    fn poll_write_or_flush(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<bool>> {
        let stream = Pin::new(&mut self.stream);
        if self.output.is_empty() {
            ready!(stream.poll_flush(cx))?;
            return Poll::Ready(Ok(true));
        }
        match ready!(stream.poll_write(cx, &self.output))? {
            0 => Poll::Ready(Err(std::io::ErrorKind::WriteZero.into())),
            written => {
                self.output.advance(written);
                Poll::Ready(Ok(false))
            }
        }
    }

    /// Gives back buffers that hold nothing, so an idle connection keeps none.
    fn release_empty_buffers(&mut self) {
        if self.input.is_empty() && self.input.capacity() > 0 {
            self.input = BytesMut::new();
        }
        if self.output.is_empty() && self.output.capacity() > 0 {
            self.output = BytesMut::new();
        }
        if self.pending_acks.is_empty() && self.pending_acks.capacity() > 0 {
            self.pending_acks = VecDeque::new();
        }
    }

    async fn send_connack(&mut self, session_present: bool, code: ConnectReturnCode) {
        self.queue_packet(&Packet::ConnAck(ConnAck {
            session_present,
            code,
        }));
        let _ = self.flush().await;
    }

    /// Applies IoT Core's CONNECT rules, opens the session and answers CONNACK.
    async fn accept(&mut self, mut connect: Connect, admission: Admission) -> Option<Online> {
        let broker = self.broker.clone();
        let limits = &broker.config.limits;
        if connect.client_id.is_empty() && connect.clean_session {
            connect.client_id = protocol::assigned_client_id(self.id);
        }
        let Admission {
            mut identity,
            mut lifetime,
        } = admission;
        if let Identity::AtConnect {
            protocols,
            server_name,
        } = &identity
        {
            match authn::authenticate_connect(
                &broker,
                &connect,
                self.peer,
                protocols,
                server_name.as_deref(),
            )
            .await
            {
                Ok((authenticated, ttl)) => {
                    if let Some(ttl) = ttl {
                        lifetime = authn::shorter(lifetime, ttl);
                    }
                    identity = authenticated;
                }
                Err(reason) => {
                    warn!(client_id = %connect.client_id, peer = %self.peer, code = ?ConnectReturnCode::NotAuthorized, %reason, "CONNECT refused");
                    self.send_connack(false, ConnectReturnCode::NotAuthorized)
                        .await;
                    return None;
                }
            }
        }
        let context = connect_context(&connect, self.peer, &identity);
        let mut auth = match &identity {
            Identity::Authorizer(authorized) => Authorizer::with_policies(
                broker.policies.clone(),
                &authorized.principal_id,
                authorized.policies.clone(),
                context,
            ),
            _ => Authorizer::new(broker.policies.clone(), identity.principal(), context),
        };
        let now_secs = unix_millis() / 1000;
        let verdict = protocol::check_connect(&connect, limits)
            .and_then(|()| authorize_connect(&mut auth, &connect))
            .and_then(|()| {
                if broker.admit_connect(&connect.client_id, now_secs) {
                    Ok(())
                } else {
                    Err(Refusal::throttled(limits.connects_per_client_id_per_sec))
                }
            });
        if let Err(refusal) = verdict {
            warn!(client_id = %connect.client_id, principal = auth.principal(), peer = %self.peer, code = ?refusal.code, reason = %refusal.reason, "CONNECT refused");
            if let Some(code) = refusal.code {
                self.send_connack(false, code).await;
            }
            return None;
        }
        let max_connections = limits.max_connections;
        let open = broker.connections.fetch_add(1, Ordering::Relaxed) + 1;
        if max_connections > 0 && open > max_connections {
            broker.connections.fetch_sub(1, Ordering::Relaxed);
            warn!(client_id = %connect.client_id, peer = %self.peer, max_connections, "CONNECT refused: connection limit reached");
            self.send_connack(false, ConnectReturnCode::ServerUnavailable)
                .await;
            return None;
        }

        let authorizer_name = match &identity {
            Identity::Authorizer(authorized) => Some(authorized.authorizer.as_str()),
            _ => None,
        };
        let live = Arc::new(LiveConnection::new(auth.principal(), authorizer_name));
        let opened = broker.open_session(
            &connect.client_id,
            connect.clean_session,
            self.id,
            live.clone(),
        );
        // A persistent session exists for the client once CONNACK says so: wait until the
        // store has it (a few milliseconds; bounded so a sick disk cannot hang CONNECT).
        if let Some(committed) = &mut self.committed {
            let durable = opened.durable;
            let _ = tokio::time::timeout(
                Duration::from_secs(5),
                committed.wait_for(|done| *done >= durable),
            )
            .await;
        }
        if let Some(previous) = opened.took_over {
            info!(client_id = %connect.client_id, previous_connection = previous, "client id connected again: the older connection is closed (DUPLICATE_CLIENTID)");
        }
        broker.register_live(self.id, live.clone());
        let online = Online {
            live,
            client_id: opened.session.client_id.clone(),
            session: opened.session,
            will: connect.will.take().map(Box::new),
            keep_alive: limits.keep_alive_deadline(connect.keep_alive),
            session_identifier: rand::random(),
            version_number: broker.next_version_number(),
            auth,
            ends_at: lifetime.map(|(after, reason)| (tokio::time::Instant::now() + after, reason)),
        };
        self.queue_packet(&Packet::ConnAck(ConnAck {
            session_present: opened.session_present,
            code: ConnectReturnCode::Accepted,
        }));
        if opened.session_present {
            let redeliveries: Vec<Outgoing> = online
                .session
                .with_state(|state| state.redeliveries().collect());
            for outgoing in &redeliveries {
                encode_outgoing(&mut self.output, outgoing);
            }
        }
        info!(client_id = %online.client_id, principal = online.auth.principal(), peer = %self.peer, clean_session = connect.clean_session, session_present = opened.session_present, keep_alive = ?online.keep_alive, "client connected");
        self.publish_event(&online, |context| {
            lifecycle::connected_event(context, &self.peer.ip().to_string())
        });
        Some(online)
    }

    /// The connection's main loop; returns why it ended.
    ///
    /// One hand-written poll per turn rather than `select!`: only what must stay
    /// registered while idle lives across turns (one timer for keep-alive and lifetime,
    /// the store's progress while acknowledgements wait; the wake-up is a waker in the
    /// shared `LiveConnection`), which keeps an idle connection's future small.
    async fn run(&mut self, online: &mut Online) -> Ending {
        // Packets that arrived in the same read as CONNECT are already buffered.
        if let Err(ending) = self.handle_input(online) {
            return ending;
        }
        let mut last_read = tokio::time::Instant::now();
        let mut timer = pin!(tokio::time::sleep_until(next_deadline(last_read, online)));
        let mut durable: Option<Pin<Box<dyn Future<Output = ()> + Send>>> = None;
        let max_unacknowledged = self.broker.config.limits.max_inflight;
        let mut needs_flush = false;
        loop {
            self.release_acks();
            self.fill_output(online);
            if self.pending_acks.is_empty() {
                durable = None;
            } else if durable.is_none() {
                durable = self.durable_progress();
            }
            let live = &online.live;
            let mut woken = false;
            // Every source is polled in each pass (a wake-up does not keep writes and reads
            // waiting); the first ready one is handled, after a wake-up's checks. The timer
            // comes last, so a packet that arrived by the deadline is read before it counts.
            let event = poll_fn(|cx| {
                woken |= live.poll_woken(cx).is_ready();
                if let Some(progress) = &mut durable {
                    if progress.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Some(Event::DurableProgress));
                    }
                }
                // Write what is ready; once drained, flush: TLS and WebSocket writers
                // buffer, and the last bytes would otherwise wait for the next packet.
                if !self.output.is_empty() || needs_flush {
                    if let Poll::Ready(wrote) = self.poll_write_or_flush(cx) {
                        return Poll::Ready(Some(Event::Wrote(wrote)));
                    }
                }
                // Past the inbound window the client waits for PUBACKs: stop reading.
                if self.pending_acks.len() < max_unacknowledged {
                    if let Poll::Ready(read) = self.poll_read(cx) {
                        return Poll::Ready(Some(Event::Read(read)));
                    }
                }
                if timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Some(Event::Timer));
                }
                if woken {
                    return Poll::Ready(None);
                }
                // Going idle: give back what holds nothing (not on every pass, so a busy
                // connection keeps its buffers).
                self.release_empty_buffers();
                Poll::Pending
            })
            .await;
            if woken {
                if let Some(why) = online.live.reason() {
                    info!(client_id = %online.client_id, principal = online.auth.principal(), reason = %why, "closing connection (SERVER_INITIATED_DISCONNECT)");
                    // Its rights were withdrawn, or the broker is stopping: no last
                    // message in its name.
                    return Ending {
                        reason: DisconnectReason::ServerInitiatedDisconnect,
                        publish_will: false,
                    };
                }
                if !online.session.is_owned_by(self.id) {
                    return Ending::abnormal(DisconnectReason::DuplicateClientId);
                }
            }
            let Some(event) = event else {
                continue;
            };
            match event {
                Event::Timer => {
                    let now = tokio::time::Instant::now();
                    if let Some((at, reason)) = online.ends_at {
                        if now >= at {
                            info!(client_id = %online.client_id, %reason, "closing connection: its lifetime is over");
                            return Ending::abnormal(reason);
                        }
                    }
                    if now >= last_read + online.keep_alive {
                        info!(client_id = %online.client_id, keep_alive = ?online.keep_alive, "closing connection: keep-alive expired (no packet within 1.5 x keep-alive)");
                        return Ending::abnormal(DisconnectReason::MqttKeepAliveTimeout);
                    }
                    timer.as_mut().reset(next_deadline(last_read, online));
                }
                Event::DurableProgress => durable = None,
                Event::Wrote(Ok(flushed)) => needs_flush = !flushed,
                Event::Wrote(Err(error)) => {
                    debug!(client_id = %online.client_id, %error, "write failed");
                    return Ending::abnormal(DisconnectReason::ConnectionLost);
                }
                Event::Read(Ok(0) | Err(_)) => {
                    debug!(client_id = %online.client_id, "connection lost");
                    return Ending::abnormal(DisconnectReason::ConnectionLost);
                }
                Event::Read(Ok(_)) => {
                    // The timer is not moved on every read: it fires at the old
                    // deadline and is set again from here.
                    last_read = tokio::time::Instant::now();
                    if let Err(ending) = self.handle_input(online) {
                        return ending;
                    }
                }
            }
        }
    }

    /// A future that resolves when the store makes more durable; `None` in memory.
    fn durable_progress(&self) -> Option<Pin<Box<dyn Future<Output = ()> + Send>>> {
        // The clone has seen what `release_acks` saw, so it resolves on the next commit.
        let mut committed = self.committed.clone()?;
        Some(Box::pin(async move {
            if committed.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }))
    }

    /// Decodes and handles every complete packet in the input buffer.
    fn handle_input(&mut self, online: &mut Online) -> Result<(), Ending> {
        loop {
            let max_packet_size = self.max_packet_size();
            let packet = match mqtt::decode(&mut self.input, max_packet_size) {
                Ok(Some(packet)) => packet,
                Ok(None) => return Ok(()),
                Err(error) => {
                    warn!(client_id = %online.client_id, principal = online.auth.principal(), %error, "closing connection: malformed packet");
                    return Err(Ending::abnormal(DisconnectReason::ClientError));
                }
            };
            self.handle_packet(online, packet)?;
        }
    }

    fn handle_packet(&mut self, online: &mut Online, packet: Packet) -> Result<(), Ending> {
        match packet {
            Packet::Publish(publish) => self.handle_publish(online, publish),
            Packet::PubAck(pkid) => {
                if !online.session.with_state(|state| state.acknowledge(pkid)) {
                    debug!(client_id = %online.client_id, pkid, "PUBACK for an unknown packet id ignored");
                }
                Ok(())
            }
            Packet::Subscribe(subscribe) => self.handle_subscribe(online, subscribe),
            Packet::Unsubscribe(unsubscribe) => self.handle_unsubscribe(online, unsubscribe),
            Packet::PingReq => {
                self.queue_packet(&Packet::PingResp);
                Ok(())
            }
            Packet::Disconnect => Err(Ending {
                reason: DisconnectReason::ClientInitiatedDisconnect,
                publish_will: false,
            }),
            Packet::PubRec(_) | Packet::PubRel(_) | Packet::PubComp(_) => {
                warn!(client_id = %online.client_id, packet = packet.name(), "closing connection: QoS 2 is not supported (IoT Core)");
                Err(Ending::abnormal(DisconnectReason::ClientError))
            }
            other => {
                warn!(client_id = %online.client_id, packet = other.name(), "closing connection: packet not allowed from a client at this point");
                Err(Ending::abnormal(DisconnectReason::ClientError))
            }
        }
    }

    fn handle_publish(&mut self, online: &mut Online, publish: Publish) -> Result<(), Ending> {
        let limits = &self.broker.config.limits;
        if let Err(reason) = protocol::check_publish(&publish, limits) {
            warn!(client_id = %online.client_id, principal = online.auth.principal(), topic = %publish.topic, %reason, "closing connection: PUBLISH refused");
            return Err(Ending::abnormal(DisconnectReason::ClientError));
        }
        let mut allowed = online
            .auth
            .check(Action::Publish, ResourceKind::Topic, &publish.topic);
        if publish.retain && allowed.is_ok() {
            allowed = online
                .auth
                .check(Action::RetainPublish, ResourceKind::Topic, &publish.topic);
        }
        if let Err(denied) = allowed {
            log_denied(
                online,
                &denied,
                "PUBLISH denied: closing connection (FORBIDDEN_ACCESS)",
            );
            return Err(Ending::abnormal(DisconnectReason::ForbiddenAccess));
        }
        let mut durable = 0;
        // IoT Core keeps no retained messages on reserved topics.
        if publish.retain && !iot::is_reserved(&publish.topic) {
            durable = self
                .broker
                .retain(&publish.topic, publish.payload.clone(), publish.qos);
        }
        let routed = self
            .broker
            .route(&publish.topic, publish.payload, publish.qos);
        if publish.qos == QoS::AtLeastOnce {
            // The PUBACK promises at-least-once: it waits until every persistent session
            // that kept the message (and the retained store) has it on disk.
            self.acknowledge_when_durable(
                Packet::PubAck(publish.pkid),
                durable.max(routed.durable),
            );
        }
        Ok(())
    }

    /// Queues an acknowledgement to be sent once the store has reached `durable`.
    fn acknowledge_when_durable(&mut self, ack: Packet, durable: u64) {
        if self.pending_acks.is_empty() && self.committed.is_none() {
            // In memory everything is as durable as it gets: answer at once.
            self.queue_packet(&ack);
            return;
        }
        self.pending_acks.push_back((ack, durable));
        self.release_acks();
    }

    /// Sends, in order, every held acknowledgement whose subject is now durable.
    fn release_acks(&mut self) {
        if self.pending_acks.is_empty() {
            return;
        }
        let committed = self
            .committed
            .as_mut()
            .map_or(u64::MAX, |committed| *committed.borrow_and_update());
        while self
            .pending_acks
            .front()
            .is_some_and(|(_, needed)| *needed <= committed)
        {
            if let Some((ack, _)) = self.pending_acks.pop_front() {
                self.queue_packet(&ack);
            }
        }
    }

    fn handle_subscribe(
        &mut self,
        online: &mut Online,
        subscribe: Subscribe,
    ) -> Result<(), Ending> {
        // Packets still buffered when another connection took the client id over must not
        // change the session that now belongs to the new connection.
        if !online.session.is_owned_by(self.id) {
            return Err(Ending::abnormal(DisconnectReason::DuplicateClientId));
        }
        let limits = &self.broker.config.limits;
        let count_after = online.session.with_state(|state| {
            state.subscription_count()
                + subscribe
                    .filters
                    .iter()
                    .filter(|wanted| !state.is_subscribed(&wanted.filter))
                    .count()
        });
        if let Err(reason) = protocol::check_subscribe(&subscribe, count_after, limits) {
            warn!(client_id = %online.client_id, principal = online.auth.principal(), %reason, "closing connection: SUBSCRIBE refused");
            return Err(Ending::abnormal(DisconnectReason::ClientError));
        }
        let mut return_codes = Vec::with_capacity(subscribe.filters.len());
        let mut retained = Vec::new();
        let mut granted = Vec::with_capacity(subscribe.filters.len());
        for wanted in &subscribe.filters {
            let allowed =
                online
                    .auth
                    .check(Action::Subscribe, ResourceKind::TopicFilter, &wanted.filter);
            if let Err(denied) = allowed {
                if self.broker.config.subscribe_denied == SubscribeDenied::Disconnect {
                    log_denied(
                        online,
                        &denied,
                        "SUBSCRIBE denied: closing connection (FORBIDDEN_ACCESS)",
                    );
                    return Err(Ending::abnormal(DisconnectReason::ForbiddenAccess));
                }
                log_denied(online, &denied, "SUBSCRIBE denied: SUBACK failure (0x80)");
                return_codes.push(SubscribeReturnCode::Failure);
                continue;
            }
            granted.push(wanted.filter.as_str());
            online
                .session
                .with_state(|state| state.subscribe(&wanted.filter, wanted.qos));
            self.broker
                .add_subscription(&online.session, &wanted.filter, wanted.qos);
            return_codes.push(SubscribeReturnCode::Success(wanted.qos));
            for message in self.broker.retained_for(&wanted.filter) {
                retained.push(Delivery {
                    topic: message.topic,
                    payload: message.payload,
                    qos: message.qos.min(wanted.qos),
                    retain: true,
                });
            }
        }
        // The SUBACK is queued before any retained message, so the client sees them in
        // that order; for a persistent session it waits until the subscription is durable.
        let durable = self.broker.save_session(&online.session);
        self.acknowledge_when_durable(
            Packet::SubAck(SubAck {
                pkid: subscribe.pkid,
                return_codes,
            }),
            durable,
        );
        for delivery in retained {
            self.broker.deliver(&online.session, delivery);
        }
        debug!(client_id = %online.client_id, filters = ?granted, "subscribed");
        if !granted.is_empty() {
            self.publish_event(online, |context| {
                lifecycle::subscription_event(context, true, &granted)
            });
        }
        Ok(())
    }

    fn handle_unsubscribe(
        &mut self,
        online: &Online,
        unsubscribe: Unsubscribe,
    ) -> Result<(), Ending> {
        if !online.session.is_owned_by(self.id) {
            return Err(Ending::abnormal(DisconnectReason::DuplicateClientId));
        }
        for filter in &unsubscribe.filters {
            if online.session.with_state(|state| state.unsubscribe(filter)) {
                self.broker.remove_subscription(&online.session, filter);
            }
        }
        let durable = self.broker.save_session(&online.session);
        self.acknowledge_when_durable(Packet::UnsubAck(unsubscribe.pkid), durable);
        let filters: Vec<&str> = unsubscribe.filters.iter().map(String::as_str).collect();
        self.publish_event(online, |context| {
            lifecycle::subscription_event(context, false, &filters)
        });
        Ok(())
    }

    /// Moves what the session has ready into the output buffer, up to one batch. Each
    /// message is checked against `iot:Receive` here, at delivery, as IoT Core does; a
    /// refused one is dropped silently (logged once per topic).
    fn fill_output(&mut self, online: &mut Online) {
        if self.output.len() >= WRITE_BATCH_BYTES {
            return;
        }
        // Retained messages for a new subscription must not overtake its SUBACK.
        if self
            .pending_acks
            .iter()
            .any(|(ack, _)| matches!(ack, Packet::SubAck(_)))
        {
            return;
        }
        let id = self.id;
        let auth = &mut online.auth;
        let client_id = &online.client_id;
        let mut may_receive = |delivery: &Delivery| {
            let (allowed, denied) =
                auth.check_quietly(Action::Receive, ResourceKind::Topic, &delivery.topic);
            if let Some(denied) = denied {
                info!(client_id = %client_id, principal = auth.principal(), action = %denied.action, resource = %denied.resource, reason = %denied.decision.reason, "iot:Receive denied: message not delivered");
            }
            allowed
        };
        online.session.with_owned_state(id, |state| {
            while self.output.len() < WRITE_BATCH_BYTES {
                match state.next_outgoing_where(&mut may_receive) {
                    Some(outgoing) => encode_outgoing(&mut self.output, &outgoing),
                    None => break,
                }
            }
        });
    }

    fn queue_packet(&mut self, packet: &Packet) {
        mqtt::encode(packet, &mut self.output).expect("broker-built packets are encodable");
    }

    /// Writes all of `output`, then flushes (the opening and closing phases).
    async fn flush(&mut self) -> std::io::Result<()> {
        while !poll_fn(|cx| self.poll_write_or_flush(cx)).await? {}
        Ok(())
    }

    fn publish_event(
        &self,
        online: &Online,
        build: impl FnOnce(&EventContext) -> (String, String),
    ) {
        if !lifecycle::emits_events(&online.client_id) {
            return;
        }
        let context = EventContext {
            client_id: &online.client_id,
            timestamp_ms: unix_millis(),
            session_identifier: &crate::secrets::uuid_text(online.session_identifier),
            principal_identifier: online.auth.principal(),
            version_number: online.version_number,
        };
        let (topic, payload) = build(&context);
        self.broker
            .route(&topic, Bytes::from(payload), QoS::AtLeastOnce);
    }

    /// Tears down: last will, session detach, lifecycle event, connection count.
    async fn finish(mut self, mut online: Online, ending: Ending) {
        if ending.reason != DisconnectReason::DuplicateClientId {
            self.fill_output(&mut online);
            let _ = tokio::time::timeout(Duration::from_secs(1), self.flush()).await;
        }
        if ending.publish_will {
            if let Some(will) = &online.will {
                info!(client_id = %online.client_id, topic = %will.topic, "publishing last will");
                if will.retain {
                    self.broker
                        .retain(&will.topic, will.message.clone(), will.qos);
                }
                self.broker
                    .route(&will.topic, will.message.clone(), will.qos);
            }
        }
        self.broker.unregister_live(self.id);
        self.broker
            .close_session(&online.session, self.id, Instant::now());
        self.broker.connections.fetch_sub(1, Ordering::Relaxed);
        info!(client_id = %online.client_id, principal = online.auth.principal(), reason = %ending.reason, "client disconnected");
        self.publish_event(&online, |context| {
            lifecycle::disconnected_event(context, ending.reason)
        });
        let _ = self.stream.shutdown().await;
    }
}

/// Encodes one delivery as PUBLISH. The topic and payload are borrowed from the shared
/// message, never copied into a new allocation per subscriber.
fn encode_outgoing(output: &mut BytesMut, outgoing: &Outgoing) {
    let delivery = &outgoing.delivery;
    let publish = PublishRef {
        dup: outgoing.dup,
        qos: delivery.qos,
        retain: delivery.retain,
        topic: &delivery.topic,
        pkid: outgoing.pkid.unwrap_or(0),
        payload: &delivery.payload,
    };
    mqtt::encode_publish(&publish, output).expect("routed messages are encodable");
}

/// What a CONNECT tells the policy engine: client id, source address, connect attributes.
fn connect_context(connect: &Connect, peer: SocketAddr, identity: &Identity) -> RequestContext {
    let mut connect_attributes = Vec::new();
    if !connect.clean_session {
        connect_attributes.push("PersistentConnect".to_owned());
    }
    if connect.will.is_some() {
        connect_attributes.push("LastWill".to_owned());
    }
    let mut context = RequestContext {
        client_id: Some(connect.client_id.clone()),
        source_ip: Some(peer.ip()),
        connect_attributes,
        ..RequestContext::default()
    };
    match identity {
        Identity::Certificate(certificate) => {
            let fields = |names: &std::collections::BTreeMap<String, String>| {
                names.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
            };
            let facts = context.facts_mut();
            facts.certificate_subject = fields(&certificate.subject);
            facts.certificate_issuer = fields(&certificate.issuer);
        }
        Identity::Credentials { principal } => {
            context.facts_mut().cognito_identity_id = Some(principal.clone());
        }
        _ => {}
    }
    context
}

/// `iot:Connect` on the client id, and `iot:Publish` (plus `iot:RetainPublish`) on the will
/// topic: IoT Core refuses a will the principal could not publish with CONNACK 5.
fn authorize_connect(auth: &mut Authorizer, connect: &Connect) -> Result<(), Refusal> {
    let mut checks = vec![(
        Action::Connect,
        ResourceKind::Client,
        connect.client_id.as_str(),
    )];
    if let Some(will) = &connect.will {
        checks.push((Action::Publish, ResourceKind::Topic, will.topic.as_str()));
        if will.retain {
            checks.push((
                Action::RetainPublish,
                ResourceKind::Topic,
                will.topic.as_str(),
            ));
        }
    }
    for (action, kind, name) in checks {
        auth.check(action, kind, name).map_err(|denied| {
            Refusal::not_authorized(format!(
                "{} on {}: {}",
                denied.action, denied.resource, denied.decision.reason
            ))
        })?;
    }
    Ok(())
}

fn log_denied(online: &Online, denied: &Denied, what: &str) {
    warn!(client_id = %online.client_id, principal = online.auth.principal(), action = %denied.action, resource = %denied.resource, reason = %denied.decision.reason, "{what}");
}

/// When the timer must next look: the keep-alive deadline, or the end of the
/// connection's lifetime if that comes first.
fn next_deadline(last_read: tokio::time::Instant, online: &Online) -> tokio::time::Instant {
    let keep_alive = last_read + online.keep_alive;
    match online.ends_at {
        Some((at, _)) => keep_alive.min(at),
        None => keep_alive,
    }
}
