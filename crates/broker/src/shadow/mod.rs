//! The Device Shadow service inside the broker: classic and named shadows per thing,
//! reached by the reserved MQTT topics (`$aws/things/{thing}/shadow[/name/{shadow}]/…`,
//! handed over by the connection) and by the iot-data HTTP API (`control`).
//!
//! The documents' rules are the `shadow` crate's; this module keeps the shadows and
//! makes the answers true: [`table`] holds every shadow in memory (the authority; deleted
//! ones as tombstones so versions continue) with the per-thing limits, under one mutex.
//! Each accepted change is submitted to the durable store ([`Op::PutShadow`]) under that
//! mutex, and its answers go to one dispatcher (a thread) in the same order; it
//! publishes them only once the store reports the change durable, so a client that saw
//! `/update/accepted` finds the shadow after a SIGKILL, and one thing's answers keep the
//! order of its requests. Answers are routed as any QoS 1 message (`Router::route`):
//! only subscribers get them, with `iot:Receive` checked on delivery.

mod table;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use mqtt::QoS;
use parking_lot::Mutex;
use serde_json::Value;
use shadow::{Operation, Rejection, Shadow, ShadowId};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};

use crate::clock::unix_millis;
use crate::config::Config;
use crate::router::Router;
use crate::store::{Op, Store};

use table::{Applied, LimitHit, ServiceLimits, Table};

/// Who sent a request: what is published for it differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// A client's PUBLISH to a request topic: the answer goes to `/accepted` or
    /// `/rejected` (plus `/delta` and `/documents` for an update).
    Mqtt,
    /// An iot-data HTTP call: the caller gets the answer; an accepted update still
    /// publishes `/update/accepted`, `/update/delta` and `/update/documents`, and an
    /// accepted delete `/delete/accepted`; a rejection publishes nothing.
    Http,
}

/// The answer IoT Core returns when it cannot: the service stopped under a request.
const INTERNAL_FAILURE: &str = "Internal service failure";

/// Where an HTTP caller waits for its request's result.
type Reply = oneshot::Sender<Result<Value, Rejection>>;

/// One request's answers, waiting for the store.
struct Pending {
    /// The store sequence number that makes the request's change durable (0: none).
    durable: u64,
    /// The thing whose in-flight count this request holds, if it does.
    in_flight: Option<String>,
    answers: Vec<(String, Bytes)>,
    /// Where an HTTP caller waits for the result.
    reply: Option<(Reply, Result<Value, Rejection>)>,
}

pub(crate) struct ShadowService {
    table: Arc<Mutex<Table>>,
    /// `None` with `in_memory = true`.
    store: Option<Arc<Store>>,
    dispatch: mpsc::UnboundedSender<Pending>,
}

impl ShadowService {
    /// The service over the shadows the store recovered; starts its dispatcher.
    pub(crate) fn new(
        config: &Config,
        store: Option<Arc<Store>>,
        router: Arc<Router>,
        recovered: Vec<(ShadowId, Shadow)>,
    ) -> ShadowService {
        let (table, expired) = Table::new(
            ServiceLimits::from_config(&config.limits),
            recovered,
            unix_millis() / 1000,
        );
        if let Some(store) = &store {
            for id in expired {
                store.submit(Op::DeleteShadow(id));
            }
        }
        let table = Arc::new(Mutex::new(table));
        let (dispatch, pending) = mpsc::unbounded_channel();
        let committed = store.as_ref().map(|store| store.committed());
        // On a thread of its own rather than a task: `Broker::new` needs no runtime (the
        // handler's tests build brokers in plain tests), and the thread ends with the
        // service, when the channel closes.
        let answers = dispatcher(pending, committed, router, table.clone());
        std::thread::Builder::new()
            .name("shadow-answers".into())
            .spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .build()
                    .expect("a current-thread runtime without drivers builds")
                    .block_on(answers)
            })
            .expect("spawn the shadow dispatcher");
        ShadowService {
            table,
            store,
            dispatch,
        }
    }

    /// Applies one request; publishes its answers to MQTT subscribers (as [`Origin`]
    /// says); resolves once they are published, i.e. after the change is durable, with
    /// the answer document or the rejection.
    pub(crate) async fn request(
        &self,
        id: ShadowId,
        operation: Operation,
        payload: Bytes,
        origin: Origin,
    ) -> Result<Value, Rejection> {
        let (reply, replied) = oneshot::channel();
        self.submit(&id, operation, &payload, origin, Some(reply));
        replied
            .await
            .unwrap_or_else(|_| Err(Rejection::new(500, INTERNAL_FAILURE)))
    }

    /// For the connection's `PacketHandler`, which is synchronous: applies the request
    /// now; the dispatcher publishes its answers when durable.
    pub(crate) fn submit_mqtt(&self, id: ShadowId, operation: Operation, payload: Bytes) {
        self.submit(&id, operation, &payload, Origin::Mqtt, None);
    }

    /// A thing's named shadows (never the classic one, never deleted ones), sorted,
    /// at most `page_size` after `next_token`: `(names, next_token)`.
    pub(crate) fn list_named(
        &self,
        thing: &str,
        page_size: usize,
        next_token: Option<&str>,
    ) -> (Vec<String>, Option<String>) {
        self.table.lock().list_named(thing, page_size, next_token)
    }

    fn submit(
        &self,
        id: &ShadowId,
        operation: Operation,
        payload: &[u8],
        origin: Origin,
        reply: Option<Reply>,
    ) {
        let now = Instant::now();
        let epoch = unix_millis() / 1000;
        let mut table = self.table.lock();
        let applied = table.apply(id, operation, payload, origin, now, epoch);
        log_outcome(&mut table, id, operation, origin, &applied, now);
        let Applied {
            result,
            answers,
            change,
            in_flight,
            ..
        } = applied;
        // Submitted and queued under the table's lock: the store numbers changes in the
        // order the dispatcher receives them, so it never waits out of order.
        let durable = match (change, &self.store) {
            (Some(shadow), Some(store)) => {
                store.submit(Op::PutShadow(id.clone(), Box::new(shadow)))
            }
            _ => 0,
        };
        let pending = Pending {
            durable,
            in_flight: in_flight.then(|| id.thing.clone()),
            answers,
            reply: reply.map(|reply| (reply, result)),
        };
        if self.dispatch.send(pending).is_err() {
            // Only at shutdown: the dispatcher stopped when the store closed.
            warn!(%id, operation = operation.as_str(), "shadow service stopped: request not answered");
            if in_flight {
                table.answered(&id.thing);
            }
        }
    }
}

/// One log line per rejection (debug for an HTTP caller, who sees the error itself);
/// limit hits at warn, at most once a second with the count since the last.
fn log_outcome(
    table: &mut Table,
    id: &ShadowId,
    operation: Operation,
    origin: Origin,
    applied: &Applied,
    now: Instant,
) {
    let Err(rejection) = &applied.result else {
        return;
    };
    let thing = id.thing.as_str();
    let shadow = id.shadow.as_deref().unwrap_or("");
    let (code, message) = (rejection.code, rejection.message.as_str());
    if let Some(hit) = applied.limit_hit {
        let limits = table.limits();
        let limit = match hit {
            LimitHit::InFlight => format!(
                "shadow_inflight_per_thing ({}) reached",
                limits.inflight_per_thing
            ),
            LimitHit::Rate => format!(
                "shadow_requests_per_thing_per_sec ({}/s) exceeded",
                limits.requests_per_thing_per_sec
            ),
        };
        let Some(hits) = table.log_limit_hit(now) else {
            debug!(
                thing,
                shadow,
                operation = operation.as_str(),
                ?origin,
                code,
                message,
                "shadow request refused: {limit}"
            );
            return;
        };
        warn!(
            thing,
            shadow,
            operation = operation.as_str(),
            ?origin,
            code,
            message,
            hits,
            "shadow request refused: {limit}"
        );
        return;
    }
    match origin {
        Origin::Mqtt => {
            info!(
                thing,
                shadow,
                operation = operation.as_str(),
                code,
                message,
                "shadow request rejected"
            )
        }
        Origin::Http => {
            debug!(
                thing,
                shadow,
                operation = operation.as_str(),
                code,
                message,
                "shadow request rejected"
            )
        }
    }
}

/// Publishes each request's answers in the order received, each once the store has
/// made its change durable (`committed` is `None` without a store).
async fn dispatcher(
    mut pending: mpsc::UnboundedReceiver<Pending>,
    mut committed: Option<watch::Receiver<u64>>,
    router: Arc<Router>,
    table: Arc<Mutex<Table>>,
) {
    while let Some(next) = pending.recv().await {
        if let Some(committed) = committed.as_mut().filter(|_| next.durable > 0) {
            let durable = committed
                .wait_for(|done| *done >= next.durable)
                .await
                .is_ok();
            if !durable {
                // The store closed (shutdown) before the change was written: it is not
                // durable, so nothing about it may be announced.
                warn!(
                    pending = pending.len() + 1,
                    "store closed: shadow answers not published"
                );
                return;
            }
        }
        for (topic, payload) in next.answers {
            router.route(&topic, payload, QoS::AtLeastOnce);
        }
        if let Some(thing) = &next.in_flight {
            table.lock().answered(thing);
        }
        if let Some((reply, result)) = next.reply {
            // The HTTP caller may have gone away; nothing to do then.
            let _ = reply.send(result);
        }
    }
}
