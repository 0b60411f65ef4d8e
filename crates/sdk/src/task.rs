//! The session task: the thin async shell around [`ClientSession`].
//!
//! One task per `connect*` call. It dials (a fresh SigV4 URL or custom-auth token for
//! every attempt), writes what the session decides, feeds it what the broker sends and
//! the clock's ticks, hands deliveries and completions to the callback thread, and
//! reconnects with back-off. It never runs user code.

use std::sync::Arc;
use std::time::Duration;

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use bytes::{Bytes, BytesMut};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::auth::{self, MetricsMode};
use crate::backoff::Backoff;
use crate::error::Error;
use crate::manager::{
    BoxFuture, Command, CustomAuth, Handler, Inner, Message, PublishOutcome, Sink,
};
use crate::mqtt5::ConnackProperties;
use crate::session::{ClientSession, Delivery, SessionConfig};
use crate::status::{Reason, Status, StatusEvent};
use crate::transport::{self, Target, Transport, WebSocketTarget};
use crate::QoS;

pub(crate) type UrlProvider = Arc<dyn Fn() -> BoxFuture<Result<String, Error>> + Send + Sync>;
pub(crate) type CustomAuthProvider =
    Arc<dyn Fn() -> BoxFuture<Result<CustomAuth, Error>> + Send + Sync>;

/// How each connection attempt is dialled.
pub(crate) enum Dial {
    /// Same target and credentials every time.
    Fixed {
        target: Target,
        username: Option<String>,
        password: Option<String>,
    },
    /// A SigV4-presigned `wss://` URL, signed afresh per attempt.
    SigV4 {
        target: Target,
        authority: String,
        region: String,
        credentials: SharedCredentialsProvider,
        username: Option<String>,
    },
    /// A URL the caller presigns, asked for per attempt.
    PresignedUrl {
        tls: Arc<rustls::ClientConfig>,
        provider: UrlProvider,
        username: Option<String>,
    },
    /// Custom-auth parameters asked for per attempt: in the CONNECT username (direct) or
    /// as upgrade headers (`websocket_url`).
    CustomAuth {
        target: Target,
        websocket_url: Option<String>,
        provider: CustomAuthProvider,
        host: String,
        metrics: MetricsMode,
    },
}

impl std::fmt::Debug for Dial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Targets only: never usernames, tokens or URLs (they carry credentials).
        match self {
            Dial::Fixed { target, .. } => f.debug_tuple("Fixed").field(target).finish(),
            Dial::SigV4 { target, .. } => f.debug_tuple("SigV4").field(target).finish(),
            Dial::PresignedUrl { .. } => f.write_str("PresignedUrl"),
            Dial::CustomAuth { target, .. } => f.debug_tuple("CustomAuth").field(target).finish(),
        }
    }
}

/// One attempt's target and CONNECT credentials.
struct Prepared {
    target: Target,
    username: Option<String>,
    password: Option<String>,
}

impl Dial {
    async fn prepare(&self) -> Result<Prepared, Error> {
        Ok(match self {
            Dial::Fixed {
                target,
                username,
                password,
            } => Prepared {
                target: target.clone(),
                username: username.clone(),
                password: password.clone(),
            },
            Dial::SigV4 {
                target,
                authority,
                region,
                credentials,
                username,
            } => {
                let creds = credentials
                    .provide_credentials()
                    .await
                    .map_err(|e| Error::Credentials(Box::new(e)))?;
                let url = auth::presign_websocket_url(
                    authority,
                    region,
                    auth::SIGV4_SERVICE,
                    &creds,
                    std::time::SystemTime::now(),
                    auth::PRESIGN_EXPIRES,
                )?;
                let mut target = target.clone();
                target.websocket = Some(WebSocketTarget {
                    url,
                    headers: Vec::new(),
                });
                Prepared {
                    target,
                    username: username.clone(),
                    password: None,
                }
            }
            Dial::PresignedUrl {
                tls,
                provider,
                username,
            } => Prepared {
                target: crate::manager::websocket_target(&provider().await?, tls.clone())?,
                username: username.clone(),
                password: None,
            },
            Dial::CustomAuth {
                target,
                websocket_url,
                provider,
                host,
                metrics,
            } => {
                let a = provider().await?;
                let signature = a.token_signature.as_deref();
                let mut target = target.clone();
                // WebSocket: the parameters are upgrade headers; direct: the username.
                let (user, password) = match websocket_url {
                    Some(url) => {
                        target.websocket = Some(WebSocketTarget {
                            url: url.clone(),
                            headers: auth::custom_auth_headers(
                                &a.authorizer_name,
                                &a.token_key_name,
                                &a.token_value,
                                signature,
                            ),
                        });
                        (None, None)
                    }
                    None => (
                        Some(auth::custom_auth_username(
                            a.username.as_deref(),
                            &a.authorizer_name,
                            &a.token_key_name,
                            &a.token_value,
                            signature,
                        )),
                        a.password.clone(),
                    ),
                };
                Prepared {
                    target,
                    username: auth::username_with_metrics(user.as_deref(), host, *metrics),
                    password,
                }
            }
        })
    }
}

/// The engine's token for an operation: where its end goes.
pub(crate) enum Token {
    Publish {
        qos: QoS,
        sink: Sink<PublishOutcome>,
    },
    Subscribe {
        filter: String,
        sink: Sink<()>,
    },
    Unsubscribe(Sink<()>),
}

enum End {
    /// The user disconnected (or dropped the last handle, or the manager is gone).
    User(Option<oneshot::Sender<()>>),
    /// The connection failed or was lost; `lasted` since its CONNACK.
    Lost {
        reason: Reason,
        lasted: Option<Duration>,
    },
}

pub(crate) struct SessionTask {
    inner: Arc<Inner>,
    generation: u64,
    session: ClientSession<Token>,
    dial: Dial,
    cmds: mpsc::UnboundedReceiver<Command>,
    commands_tx: mpsc::UnboundedSender<Command>,
    /// A `disconnect()` taken from the queue by `resubscribe`, for the connected loop.
    deferred_disconnect: Option<Option<oneshot::Sender<()>>>,
    finished: bool,
}

/// If the task is dropped without finishing (its runtime shut down), the manager must
/// not stay "connected" forever: report it and free the slot.
impl Drop for SessionTask {
    fn drop(&mut self) {
        if !self.finished {
            self.finish(Reason::TaskStopped, None);
        }
    }
}

/// Commands handled before the next write: enough to fill a segment with small
/// publishes and acknowledgements, few enough not to delay reads.
const COMMAND_BATCH: usize = 256;

fn now() -> std::time::Instant {
    Instant::now().into_std()
}

impl SessionTask {
    pub(crate) fn new(
        inner: Arc<Inner>,
        generation: u64,
        session: SessionConfig,
        dial: Dial,
        cmds: mpsc::UnboundedReceiver<Command>,
        commands_tx: mpsc::UnboundedSender<Command>,
    ) -> SessionTask {
        SessionTask {
            inner,
            generation,
            session: ClientSession::new(session),
            dial,
            cmds,
            commands_tx,
            deferred_disconnect: None,
            finished: false,
        }
    }

    fn report(&self, event: StatusEvent) {
        let sh = self.inner.lock();
        self.inner.report(&sh, self.generation, event);
    }

    pub(crate) async fn run(mut self) {
        let mqtt = self.inner.config.mqtt.clone();
        let mut backoff = Backoff::new(mqtt.backoff);
        let mut first = true;
        let (reason, done) = 'session: loop {
            if !first {
                self.report(StatusEvent::new(Status::Connecting));
            }
            first = false;
            match self.run_connection().await {
                End::User(done) => break 'session (Reason::UserDisconnect, done),
                End::Lost { reason, lasted } => {
                    tracing::warn!(%reason, "connection ended");
                    if !mqtt.auto_reconnect {
                        break 'session (reason, None);
                    }
                    self.report(StatusEvent::ended(reason.clone()));
                    if let Some(l) = lasted {
                        backoff.connection_lost(l);
                    }
                    let delay = backoff.next_delay(fastrand::f64());
                    tracing::info!(?delay, "reconnecting after back-off");
                    let sleep = tokio::time::sleep(delay);
                    tokio::pin!(sleep);
                    loop {
                        let deadline = self.session.next_deadline();
                        tokio::select! {
                            _ = &mut sleep => break,
                            cmd = self.cmds.recv() => match cmd {
                                None => break 'session (Reason::UserDisconnect, None),
                                Some(Command::Disconnect(done)) => {
                                    break 'session (Reason::UserDisconnect, done)
                                }
                                Some(c) => self.command(c),
                            },
                            _ = sleep_until(deadline) => {
                                let _ = self.session.on_tick(now());
                                self.drain();
                            }
                        }
                    }
                }
            }
        };
        self.finish(reason, done);
    }

    /// End of the session: fail what is open, free the manager (if this session is still
    /// its current one) and report why, in one locked step.
    fn finish(&mut self, reason: Reason, done: Option<oneshot::Sender<()>>) {
        self.finished = true;
        // State and status first, so that whoever hears an operation fail below already
        // sees the status that explains it.
        let queued: Vec<_> = {
            let mut sh = self.inner.lock();
            if sh.generation == self.generation {
                self.inner
                    .report(&sh, self.generation, StatusEvent::ended(reason.clone()));
                sh.live = None;
                sh.connack = None;
                // Streams and callbacks end with the session; internal ones stay.
                sh.subscriptions
                    .retain(|s| matches!(s.handler, Handler::Internal(_)));
                sh.queue.drain(..).collect()
            } else {
                Vec::new()
            }
        };
        self.drain();
        // A user's disconnect is `Disconnected`; any other end says why.
        let why = match &reason {
            Reason::UserDisconnect => None,
            other => Some(StatusEvent::ended(other.clone())),
        };
        let open = self
            .session
            .fail_all(|| why.clone().map_or(Error::Disconnected, Error::Connection));
        self.complete_all(open);
        for (_, sink) in queued {
            sink.complete(Err(Error::Disconnected), &self.inner.dispatcher);
        }
        while let Ok(c) = self.cmds.try_recv() {
            fail_command(c, &self.inner);
        }
        tracing::info!("session ended");
        if let Some(done) = done {
            let _ = done.send(());
        }
    }

    fn complete_all(&self, completions: Vec<(Token, Result<(), Error>)>) {
        for (token, r) in completions {
            self.complete(token, r);
        }
    }

    fn complete(&self, token: Token, r: Result<(), Error>) {
        let d = &self.inner.dispatcher;
        match token {
            Token::Publish { qos, sink } => {
                let outcome = match qos {
                    QoS::AtMostOnce => PublishOutcome::Sent,
                    QoS::AtLeastOnce => PublishOutcome::Acknowledged,
                };
                if let Err(e) = &r {
                    tracing::warn!(error = %e, "publish failed");
                }
                sink.complete(r.map(|()| outcome), d)
            }
            Token::Subscribe { filter, sink } => {
                if let Err(e) = &r {
                    tracing::warn!(%filter, error = %e, "subscribe failed");
                }
                sink.complete(r, d)
            }
            Token::Unsubscribe(sink) => sink.complete(r, d),
        }
    }

    /// Hand what the session produced to the user: completions and deliveries.
    fn drain(&mut self) {
        while let Some((token, r)) = self.session.poll_completion() {
            self.complete(token, r);
        }
        while let Some(d) = self.session.poll_delivery() {
            self.deliver(d);
        }
    }

    fn command(&mut self, c: Command) {
        let t = now();
        match c {
            Command::Publish(p, sink) => {
                let qos = p.qos;
                self.session.publish(p, Token::Publish { qos, sink }, t);
            }
            Command::Subscribe { filter, qos, sink } => {
                let token = Token::Subscribe {
                    filter: filter.clone(),
                    sink,
                };
                self.session.subscribe(vec![(filter, qos)], token, t);
            }
            Command::Unsubscribe { filter, sink } => {
                self.session
                    .unsubscribe(vec![filter], Token::Unsubscribe(sink), t);
            }
            Command::Ack(pkid) => self.session.ack_delivery(pkid, t),
            Command::Disconnect(_) => unreachable!("handled by the callers"),
        }
        self.drain();
    }

    /// Hand a message to every matching subscription on the callback thread; a QoS 1
    /// message is acknowledged once all of them have it.
    fn deliver(&self, d: Delivery) {
        let p = d.publish;
        let message = Message {
            topic: p.topic,
            payload: p.payload,
            qos: if p.qos == mqtt::QoS::AtMostOnce {
                QoS::AtMostOnce
            } else {
                QoS::AtLeastOnce
            },
            retain: p.retain,
            dup: p.dup,
            properties: crate::mqtt5::from_wire_properties(p.properties),
        };
        let handlers: Vec<Handler> = self
            .inner
            .lock()
            .subscriptions
            .iter()
            .filter(|s| crate::topic::matches(&s.filter, &message.topic))
            .map(|s| s.handler.clone())
            .collect();
        if handlers.is_empty() {
            tracing::debug!(topic = %message.topic, "message matches no subscription");
        }
        let ack = d.ack;
        let acks = self.commands_tx.clone();
        self.inner.dispatcher.run(move || {
            for h in handlers {
                match h {
                    Handler::Callback(cb) => {
                        (cb.lock().unwrap_or_else(|e| e.into_inner()))(&message)
                    }
                    Handler::Internal(cb) => cb(&message.topic, &message.payload),
                    // Back-pressure: wait for room rather than drop (and never acknowledge
                    // what was dropped). A dropped stream returns at once.
                    Handler::Stream(tx) => {
                        let _ = tx.blocking_send(message.clone());
                    }
                }
            }
            if let Some(pkid) = ack {
                let _ = acks.send(Command::Ack(pkid));
            }
        });
    }

    /// Connect, then run the connection until it ends.
    async fn run_connection(&mut self) -> End {
        let connect_timeout = self.inner.config.mqtt.connect_timeout;
        // Commands that come while dialling wait here: the session is busy connecting.
        let mut early = Vec::new();
        let opened: Result<_, End> = {
            let attempt = tokio::time::timeout(
                connect_timeout,
                open(&mut self.session, &self.dial, &self.inner),
            );
            tokio::pin!(attempt);
            loop {
                tokio::select! {
                    r = &mut attempt => break match r {
                        Err(_) => Err(End::Lost {
                            reason: Reason::ConnectTimeout(connect_timeout),
                            lasted: None,
                        }),
                        Ok(Err(reason)) => Err(End::Lost { reason, lasted: None }),
                        Ok(Ok(x)) => Ok(x),
                    },
                    cmd = self.cmds.recv() => match cmd {
                        None => break Err(End::User(None)),
                        Some(Command::Disconnect(done)) => break Err(End::User(done)),
                        Some(c) => early.push(c),
                    },
                }
            }
        };
        for c in early {
            self.command(c);
        }
        let (mut transport, mut buf, connack) = match opened {
            Ok(x) => x,
            Err(end) => {
                self.session.on_connection_lost();
                return end;
            }
        };
        let connected_at = Instant::now();
        let session_present = connack.session_present;
        // Connected (a CONNACK on record): the offline queue goes to the session (in order,
        // behind what it re-sends), and new publishes come as commands from now on.
        let queued: Vec<_> = {
            let mut sh = self.inner.lock();
            sh.connack = Some(connack);
            sh.queue.drain(..).collect()
        };
        tracing::info!(session_present, "connected");
        self.report(StatusEvent {
            status: Status::Connected,
            reason: None,
            session_present,
        });
        // Subscriptions before the offline queue (a queued message may be for one of
        // them), and the offline queue before publishes made since.
        let newer = self.resubscribe(session_present);
        for (p, sink) in queued {
            self.command(Command::Publish(p, sink));
        }
        for c in newer {
            self.command(c);
        }
        let end = self.drive(&mut transport, &mut buf).await;
        self.inner.lock().connack = None;
        self.session.on_connection_lost();
        match end {
            Ok(done) => {
                transport.close().await;
                End::User(done)
            }
            Err(reason) => End::Lost {
                reason,
                lasted: Some(connected_at.elapsed()),
            },
        }
    }

    /// Re-subscribe what the broker does not hold: everything in the table when the
    /// session is new (unless `auto_resubscribe` is off), minus what is already on its way.
    ///
    /// The table is read, and the commands already queued are taken, under the lock that
    /// `subscribe` holds while it adds a row and queues its SUBSCRIBE: so a subscription
    /// made just now is sent once (by its own command), not twice. The publishes among
    /// those commands are returned, not sent: they were made after the offline queue's,
    /// which the caller sends first.
    #[must_use]
    fn resubscribe(&mut self, session_present: bool) -> Vec<Command> {
        if session_present || !self.inner.config.mqtt.auto_resubscribe {
            return Vec::new();
        }
        let (table, queued) = {
            let sh = self.inner.lock();
            let table: Vec<(String, QoS)> = sh
                .subscriptions
                .iter()
                .map(|s| (s.filter.clone(), s.qos))
                .collect();
            let mut queued = Vec::new();
            while let Ok(c) = self.cmds.try_recv() {
                queued.push(c);
            }
            (table, queued)
        };
        let mut disconnect = None;
        let mut publishes = Vec::new();
        for c in queued {
            match c {
                Command::Disconnect(done) => disconnect = Some(done),
                c @ Command::Publish(..) => publishes.push(c),
                c => self.command(c),
            }
        }
        let pending = self.session.pending_filters();
        let mut wanted: Vec<(String, QoS)> = Vec::new();
        for (filter, qos) in table {
            if pending.contains(&filter) {
                continue;
            }
            match wanted.iter_mut().find(|(f, _)| *f == filter) {
                Some((_, q)) => *q = (*q).max(qos),
                None => wanted.push((filter, qos)),
            }
        }
        for (filter, qos) in wanted {
            tracing::debug!(%filter, "re-subscribing");
            self.command(Command::Subscribe {
                filter,
                qos,
                sink: Sink::None,
            });
        }
        if let Some(done) = disconnect {
            // Put it back: the connected loop handles it first thing.
            self.deferred_disconnect = Some(done);
        }
        publishes
    }

    /// The connected loop. `Ok` on a user disconnect (DISCONNECT written), `Err` with why
    /// the connection ended otherwise.
    async fn drive(
        &mut self,
        transport: &mut Transport,
        buf: &mut BytesMut,
    ) -> Result<Option<oneshot::Sender<()>>, Reason> {
        let protocol = self.session.protocol();
        let max = self.inner.config.mqtt.max_packet_size;
        let mut out = BytesMut::new();
        loop {
            if let Some(done) = self.deferred_disconnect.take() {
                return self.goodbye(transport, done).await;
            }
            self.drain();
            while let Some(p) = self.session.poll_transmit() {
                mqtt::encode(&p, &mut out, protocol)
                    .map_err(|e| Reason::Protocol(format!("cannot encode {}: {e}", p.name())))?;
            }
            if !out.is_empty() {
                transport.write(out.split().freeze()).await?;
            }
            // Packets already buffered (several can arrive in one read).
            loop {
                match mqtt::decode(buf, max, protocol) {
                    Ok(Some(p)) => self.session.on_packet(p, now())?,
                    Ok(None) => break,
                    Err(e) => return Err(Reason::Protocol(format!("malformed packet: {e}"))),
                }
            }
            if self.session.has_transmit() {
                continue;
            }
            self.drain();
            let deadline = self.session.next_deadline();
            tokio::select! {
                r = transport.read(buf) => r?,
                cmd = self.cmds.recv() => match cmd {
                    None => return self.goodbye(transport, None).await,
                    Some(Command::Disconnect(done)) => return self.goodbye(transport, done).await,
                    Some(c) => {
                        self.command(c);
                        // Take what else is ready, so one write carries many packets.
                        for _ in 0..COMMAND_BATCH {
                            match self.cmds.try_recv() {
                                Ok(Command::Disconnect(done)) => {
                                    return self.goodbye(transport, done).await
                                }
                                Ok(c) => self.command(c),
                                Err(_) => break,
                            }
                        }
                    }
                },
                _ = sleep_until(deadline) => self.session.on_tick(now())?,
            }
        }
    }

    /// Write DISCONNECT; the broker then discards the will and closes its side.
    async fn goodbye(
        &mut self,
        transport: &mut Transport,
        done: Option<oneshot::Sender<()>>,
    ) -> Result<Option<oneshot::Sender<()>>, Reason> {
        let mut out = BytesMut::new();
        let packet = self.session.disconnect_packet();
        if mqtt::encode(&packet, &mut out, self.session.protocol()).is_ok() {
            let _ =
                tokio::time::timeout(Duration::from_secs(2), transport.write(out.freeze())).await;
        }
        Ok(done)
    }
}

/// Sleeps until `deadline` (forever without one).
async fn sleep_until(deadline: Option<std::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

fn fail_command(c: Command, inner: &Inner) {
    let d = &inner.dispatcher;
    match c {
        Command::Publish(_, sink) => sink.complete(Err(Error::Disconnected), d),
        Command::Subscribe { sink, .. } | Command::Unsubscribe { sink, .. } => {
            sink.complete(Err(Error::Disconnected), d)
        }
        Command::Disconnect(Some(done)) => {
            let _ = done.send(());
        }
        Command::Ack(_) | Command::Disconnect(None) => {}
    }
}

/// Dial, send CONNECT, read the CONNACK.
async fn open(
    session: &mut ClientSession<Token>,
    dial: &Dial,
    inner: &Inner,
) -> Result<(Transport, BytesMut, ConnackProperties), Reason> {
    let prepared = dial
        .prepare()
        .await
        .map_err(|e| Reason::Prepare(Arc::new(e)))?;
    let mut transport = transport::open(&prepared.target).await?;
    let connect = session.connect_packet(prepared.username, prepared.password.map(Bytes::from));
    let protocol = session.protocol();
    let mut out = BytesMut::new();
    mqtt::encode(&connect, &mut out, protocol)
        .map_err(|e| Reason::Protocol(format!("cannot encode CONNECT: {e}")))?;
    transport.write(out.freeze()).await?;
    session.on_connect_written(now());
    let mut buf = BytesMut::with_capacity(4096);
    let max = inner.config.mqtt.max_packet_size;
    loop {
        match mqtt::decode(&mut buf, max, protocol) {
            Ok(Some(mqtt::Packet::ConnAck(ack))) => {
                session.on_connack(&ack, now())?;
                return Ok((transport, buf, crate::mqtt5::connack_properties(&ack)));
            }
            Ok(Some(other)) => {
                return Err(Reason::Protocol(format!("{} before CONNACK", other.name())))
            }
            Ok(None) => transport.read(&mut buf).await?,
            Err(e) => return Err(Reason::Protocol(format!("malformed packet: {e}"))),
        }
    }
}
