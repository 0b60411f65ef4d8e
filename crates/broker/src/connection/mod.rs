//! One task per client connection: open → run → finish, a thin I/O shell around the
//! [`handler::PacketHandler`], which decides everything without a socket.
//!
//! The shell reads bytes into the handler, tells it how far the store has committed, and
//! writes what it queued, in batches: everything ready is encoded into one buffer and
//! written with one call.
//!
//! Most connections are idle most of the time, so an idle one is kept small: the opening
//! phase (CONNECT, authentication) runs in its own boxed future that is freed once the
//! connection is accepted, reads go through a per-thread scratch buffer so no read buffer
//! is held while waiting, and output and acknowledgement buffers are released whenever the
//! connection goes idle with them empty.
//! What remains while idle is the connection's state, one timer and one wake-up
//! registration (docs/DESIGN-NOTES.md, "Memory per connection").

pub(crate) mod handler;
pub(crate) mod opening;
pub(crate) mod rate;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use iot::lifecycle::DisconnectReason;
use mqtt::{Connect, ReasonCode};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::auth::{authenticate, Admission, Identity};
use crate::broker::Broker;
use crate::metrics::Listener;
use handler::{Ending, Online, PacketHandler};
pub(crate) use opening::{gated, opening_step, Abandoned};

/// The most one read takes from a socket (the size of each worker thread's scratch buffer).
const MAX_READ_CHUNK: usize = 64 * 1024;

thread_local! {
    /// Every read lands here first and only what arrived is copied into the connection's
    /// input: a waiting connection holds no read buffer (a memcpy per read is cheaper
    /// than 64 KB per idle connection).
    static READ_SCRATCH: RefCell<Box<[u8]>> =
        RefCell::new(vec![0; MAX_READ_CHUNK].into_boxed_slice());
}

/// Serves one connection from accept to close.
///
/// Not an `async fn`: an async function keeps room for its arguments for its whole life,
/// and these (the stream, the admission) move into the opening phase, which is boxed.
pub(crate) fn serve<S>(
    broker: Arc<Broker>,
    stream: S,
    peer: SocketAddr,
    shutdown: watch::Receiver<bool>,
    listener: Listener,
    admission: impl Into<Admission>,
) -> impl Future<Output = ()> + Send
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let opening = gated(
        &broker.clone(),
        Box::pin(open(
            broker,
            stream,
            peer,
            shutdown,
            listener,
            admission.into(),
        )),
    );
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
    listener: Listener,
    admission: Admission,
) -> Option<(Connection<S>, Online)>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut connection = Connection {
        committed: broker.router.store().map(|store| store.committed()),
        handler: PacketHandler::new(broker, peer),
        stream,
    };
    connection.handler.listener = listener;
    let limit = connection.handler.broker.config.limits.handshake_timeout;
    let connect = match opening_step(limit, &mut shutdown, connection.read_connect()).await {
        Ok(connect) => connect?,
        Err(Abandoned::TimedOut) => {
            info!(%peer, "closing connection: no CONNECT within {limit:?} (handshake_timeout)");
            return None;
        }
        Err(Abandoned::ShuttingDown) => return None,
    };
    // From here on shutdown reaches the connection through its `LiveConnection`.
    let started = std::time::Instant::now();
    let online = connection.accept(connect, admission).await;
    connection
        .handler
        .broker
        .metrics
        .connect_handled(started.elapsed());
    Some((connection, online?))
}

struct Connection<S> {
    handler: PacketHandler,
    stream: S,
    /// The store's durable sequence number; `None` in memory.
    committed: Option<watch::Receiver<u64>>,
}

/// What woke the main loop, besides a wake-up.
enum Event {
    Timer,
    /// A rate limit's wait is over (or its report is due).
    Throttle,
    DurableProgress,
    Wrote(std::io::Result<bool>),
    Read(std::io::Result<usize>),
}

impl<S> Connection<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// Reads until the first packet. Anything but a well-formed CONNECT closes the
    /// connection (the handler logs why and queues CONNACK 1 where that is the answer).
    async fn read_connect(&mut self) -> Option<Connect> {
        loop {
            match self.handler.decode_connect() {
                Ok(Some(connect)) => return Some(connect),
                Ok(None) => {}
                Err(()) => {
                    let _ = self.flush().await;
                    return None;
                }
            }
            match poll_fn(|cx| self.poll_read(cx)).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Reads what the socket has (through the thread's scratch buffer) onto the input.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        READ_SCRATCH.with_borrow_mut(|scratch| {
            let mut buf = ReadBuf::new(scratch);
            ready!(Pin::new(&mut self.stream).poll_read(cx, &mut buf))?;
            let read = buf.filled().len();
            self.handler.input.extend_from_slice(buf.filled());
            self.handler.broker.metrics.bytes_in.add(read as u64);
            Poll::Ready(Ok(read))
        })
    }

    /// Writes some of the output, or flushes once it is empty; `Ok(true)` after a flush.
    fn poll_write_or_flush(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<bool>> {
        let stream = Pin::new(&mut self.stream);
        let output = &mut self.handler.output;
        if output.is_empty() {
            ready!(stream.poll_flush(cx))?;
            return Poll::Ready(Ok(true));
        }
        match ready!(stream.poll_write(cx, output))? {
            0 => Poll::Ready(Err(std::io::ErrorKind::WriteZero.into())),
            written => {
                output.advance(written);
                self.handler.broker.metrics.bytes_out.add(written as u64);
                Poll::Ready(Ok(false))
            }
        }
    }

    /// Gives back buffers that hold nothing, so an idle connection keeps none.
    fn release_empty_buffers(&mut self) {
        let handler = &mut self.handler;
        if handler.input.is_empty() && handler.input.capacity() > 0 {
            handler.input = BytesMut::new();
        }
        if handler.output.is_empty() && handler.output.capacity() > 0 {
            handler.output = BytesMut::new();
        }
        if handler.pending_acks.is_empty() && handler.pending_acks.capacity() > 0 {
            handler.pending_acks = VecDeque::new();
        }
    }

    /// Tells the handler how far the store has committed, while acknowledgements wait for
    /// it (otherwise the handler's older figure only makes a new one wait one pass).
    fn observe_committed(&mut self) {
        if self.handler.pending_acks.is_empty() {
            return;
        }
        if let Some(committed) = &mut self.committed {
            self.handler.committed = *committed.borrow_and_update();
        }
    }

    /// Authenticates a CONNECT that carries authorizer fields, lets the handler admit it,
    /// and sends CONNACK once what it promises is durable.
    async fn accept(&mut self, connect: Connect, admission: Admission) -> Option<Online> {
        let Admission {
            mut identity,
            mut lifetime,
        } = admission;
        if let Identity::AtConnect {
            protocols,
            server_name,
        } = &identity
        {
            let auth = &self.handler.broker.auth;
            let peer = self.handler.peer;
            match authenticate::authenticate_connect(
                auth,
                &connect,
                peer,
                protocols,
                server_name.as_deref(),
            )
            .await
            {
                Ok((authenticated, ttl)) => {
                    if let Some(ttl) = ttl {
                        lifetime = authenticate::shorter(lifetime, ttl);
                    }
                    identity = authenticated;
                }
                Err(reason) => {
                    warn!(client_id = %connect.client_id, %peer, code = %ReasonCode::NOT_AUTHORIZED, %reason, "CONNECT refused");
                    self.handler
                        .queue_connack(false, ReasonCode::NOT_AUTHORIZED);
                    let _ = self.flush().await;
                    return None;
                }
            }
        }
        let Some(admitted) = self.handler.admit(connect, &identity, lifetime) else {
            let _ = self.flush().await;
            return None;
        };
        // A persistent session exists for the client once CONNACK says so: wait until the
        // store has it (a few milliseconds; bounded so a sick disk cannot hang CONNECT).
        if let Some(committed) = &mut self.committed {
            let durable = admitted.durable;
            let _ = tokio::time::timeout(
                Duration::from_secs(5),
                committed.wait_for(|done| *done >= durable),
            )
            .await;
        }
        self.handler.go_online(&admitted.online);
        Some(admitted.online)
    }

    /// The connection's main loop; returns why it ended.
    ///
    /// One hand-written poll per turn rather than `select!`: only what must stay
    /// registered while idle lives across turns (one timer for keep-alive and lifetime,
    /// the store's progress while acknowledgements wait; the wake-up is a waker in the
    /// shared `LiveConnection`), which keeps an idle connection's future small.
    async fn run(&mut self, online: &mut Online) -> Ending {
        // Packets that arrived in the same read as CONNECT are already buffered.
        if let Err(ending) = self.handler.handle_input(online) {
            return ending;
        }
        let mut last_read = tokio::time::Instant::now();
        let mut timer = pin!(tokio::time::sleep_until(next_deadline(last_read, online)));
        let mut durable: Option<Pin<Box<dyn Future<Output = ()> + Send>>> = None;
        // Only while a rate limit holds something back (boxed: most connections never do).
        let mut throttle: Option<Pin<Box<tokio::time::Sleep>>> = None;
        let max_unacknowledged = self.handler.broker.config.limits.max_inflight;
        let mut needs_flush = false;
        loop {
            self.observe_committed();
            self.handler.release_acks();
            self.handler.fill_output(online);
            if self.handler.pending_acks.is_empty() {
                durable = None;
            } else if durable.is_none() {
                durable = self.durable_progress();
            }
            let throttling = self.handler.throttling(online);
            let read_paused = throttling.is_some_and(|t| t.read_paused);
            match throttling.and_then(|t| t.wake_at) {
                Some(at) => {
                    let at = tokio::time::Instant::from_std(at);
                    match &mut throttle {
                        Some(sleep) if sleep.deadline() == at => {}
                        Some(sleep) => sleep.as_mut().reset(at),
                        None => throttle = Some(Box::pin(tokio::time::sleep_until(at))),
                    }
                }
                None => throttle = None,
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
                if !self.handler.output.is_empty() || needs_flush {
                    if let Poll::Ready(wrote) = self.poll_write_or_flush(cx) {
                        return Poll::Ready(Some(Event::Wrote(wrote)));
                    }
                }
                if let Some(sleep) = &mut throttle {
                    if sleep.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Some(Event::Throttle));
                    }
                }
                // Past the inbound window the client waits for PUBACKs: stop reading. Over
                // the byte rate too: what was read waits in the input (TCP pushes back).
                if self.handler.pending_acks.len() < max_unacknowledged && !read_paused {
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
                    info!(client_id = %online.client_id, principal = online.policy.principal(), reason = %why, "closing connection (SERVER_INITIATED_DISCONNECT)");
                    // Its rights were withdrawn, or the broker is stopping: no last
                    // message in its name.
                    let code = if why == crate::session::SHUTDOWN_REASON {
                        ReasonCode::SERVER_SHUTTING_DOWN
                    } else {
                        ReasonCode::ADMINISTRATIVE_ACTION
                    };
                    // DeleteConnection: IoT Core publishes the will unless asked not to,
                    // and ends the session with `cleanSession=true`.
                    if let Some(kick) = online.live.api_kick() {
                        if kick.clean_session && online.session.is_owned_by(self.handler.id) {
                            online.session.set_expiry(Duration::ZERO);
                        }
                        return Ending {
                            reason: DisconnectReason::ApiInitiatedDisconnect,
                            publish_will: !kick.prevent_will,
                            disconnect: Some((code, why)),
                        };
                    }
                    return Ending {
                        reason: DisconnectReason::ServerInitiatedDisconnect,
                        publish_will: false,
                        disconnect: Some((code, why)),
                    };
                }
                if !online.session.is_owned_by(self.handler.id) {
                    return Ending::abnormal(DisconnectReason::DuplicateClientId).telling(
                        ReasonCode::SESSION_TAKEN_OVER,
                        "another connection with the same client id",
                    );
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
                            return Ending::abnormal(reason).telling(
                                ReasonCode::MAXIMUM_CONNECT_TIME,
                                "the connection's lifetime is over",
                            );
                        }
                    }
                    if now >= last_read + online.keep_alive {
                        info!(client_id = %online.client_id, keep_alive = ?online.keep_alive, "closing connection: keep-alive expired (no packet within 1.5 x keep-alive)");
                        return Ending::abnormal(DisconnectReason::MqttKeepAliveTimeout).telling(
                            ReasonCode::KEEP_ALIVE_TIMEOUT,
                            "no packet received for 1.5 times the keep-alive",
                        );
                    }
                    timer.as_mut().reset(next_deadline(last_read, online));
                }
                Event::Throttle => {
                    // Input held back by the byte rate may go on; the next pass retries
                    // held deliveries and sets the next wake-up.
                    throttle = None;
                    if let Err(ending) = self.handler.handle_input(online) {
                        return ending;
                    }
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
                    if let Err(ending) = self.handler.handle_input(online) {
                        return ending;
                    }
                }
            }
        }
    }

    /// A future that resolves when the store makes more durable; `None` in memory.
    fn durable_progress(&self) -> Option<Pin<Box<dyn Future<Output = ()> + Send>>> {
        // The clone has seen what `observe_committed` saw, so it resolves on the next commit.
        let mut committed = self.committed.clone()?;
        Some(Box::pin(async move {
            if committed.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }))
    }

    /// Writes all of the output, then flushes (the opening and closing phases).
    async fn flush(&mut self) -> std::io::Result<()> {
        while !poll_fn(|cx| self.poll_write_or_flush(cx)).await? {}
        Ok(())
    }

    /// Tears down: what is ready goes out (bounded), with an MQTT 5 client's DISCONNECT
    /// last, then the handler closes the session (will, detach, lifecycle event), then
    /// the socket.
    async fn finish(mut self, mut online: Online, ending: Ending) {
        if ending.reason != DisconnectReason::DuplicateClientId {
            self.handler.fill_output(&mut online);
        }
        self.handler.queue_disconnect(&ending);
        let _ = tokio::time::timeout(Duration::from_secs(1), self.flush()).await;
        self.handler.close(&online, ending);
        let _ = self.stream.shutdown().await;
    }
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
