//! The service's state and decisions, without a lock, a store or a clock of its own: the
//! shadows by id (tombstones kept, so that versions continue after a delete), the
//! per-thing admission limits (requests in flight, requests per second), and what one
//! request does — the change to keep and the answers to publish. `super` holds it under
//! a mutex and adds durability and publishing.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;
use shadow::document::{self, DELETED_VERSION_KEPT_SECS};
use shadow::{Operation, Rejection, Response, Shadow, ShadowId};

use crate::token_bucket::TokenBucket;

use super::Origin;

/// Per-thing rate buckets are swept of idle (full) ones when their map grows past this
/// (and then past twice what the sweep left): a broker serving many things forgets those
/// that went quiet, at a cost spread over the requests that grew the map.
const SWEEP_BUCKETS_AT: usize = 1024;
/// Limit hits are logged at most this often; the ones in between are counted in the next.
const LIMIT_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// The limits the service applies, from `[limits]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ServiceLimits {
    pub(crate) document: shadow::Limits,
    pub(crate) inflight_per_thing: usize,
    /// 0 = off.
    pub(crate) requests_per_thing_per_sec: u32,
}

impl ServiceLimits {
    pub(crate) fn from_config(limits: &iot::Limits) -> ServiceLimits {
        let defaults = shadow::Limits::default();
        ServiceLimits {
            document: shadow::Limits::new(
                limits.shadow_max_state_bytes,
                limits.shadow_max_depth,
                defaults.max_client_token_bytes,
            ),
            inflight_per_thing: limits.shadow_inflight_per_thing,
            requests_per_thing_per_sec: limits.shadow_requests_per_thing_per_sec,
        }
    }
}

/// Which limit refused a request with 429.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LimitHit {
    InFlight,
    Rate,
}

/// What one request did.
#[derive(Debug)]
pub(crate) struct Applied {
    /// The answer (the document the caller gets) or the rejection.
    pub(crate) result: Result<Value, Rejection>,
    /// `(topic, payload)` to publish to MQTT subscribers, in order.
    pub(crate) answers: Vec<(String, Bytes)>,
    /// The shadow's new state, to make durable before the answers go out.
    pub(crate) change: Option<Shadow>,
    /// The request counts against its thing's in-flight limit until
    /// [`Table::answered`] is called for it.
    pub(crate) in_flight: bool,
    /// Set when a limit refused the request.
    pub(crate) limit_hit: Option<LimitHit>,
}

/// Limit hits since the last warning, for rate-limited logging.
#[derive(Debug, Default)]
struct LimitLog {
    logged_at: Option<Instant>,
    unlogged: u64,
}

pub(crate) struct Table {
    limits: ServiceLimits,
    shadows: BTreeMap<ShadowId, Shadow>,
    /// Requests answered but not yet published, by thing (absent: none).
    in_flight: HashMap<String, usize>,
    buckets: HashMap<String, TokenBucket>,
    sweep_buckets_at: usize,
    limit_log: LimitLog,
}

impl Table {
    /// The table over recovered shadows, without the tombstones deleted before `epoch`
    /// minus [`DELETED_VERSION_KEPT_SECS`] (a re-created shadow starts at version 1
    /// again, so they are not needed): their ids are returned, for the store to forget.
    pub(crate) fn new(
        limits: ServiceLimits,
        recovered: Vec<(ShadowId, Shadow)>,
        epoch: u64,
    ) -> (Table, Vec<ShadowId>) {
        let cutoff = epoch.saturating_sub(DELETED_VERSION_KEPT_SECS);
        let (expired, kept): (Vec<_>, Vec<_>) = recovered
            .into_iter()
            .partition(|(_, shadow)| shadow.deleted_at.is_some_and(|at| at < cutoff));
        let table = Table {
            limits,
            shadows: kept.into_iter().collect(),
            in_flight: HashMap::new(),
            buckets: HashMap::new(),
            sweep_buckets_at: SWEEP_BUCKETS_AT,
            limit_log: LimitLog::default(),
        };
        (table, expired.into_iter().map(|(id, _)| id).collect())
    }

    pub(crate) fn limits(&self) -> &ServiceLimits {
        &self.limits
    }

    /// The shadow as the service holds it (a tombstone for a deleted one).
    #[cfg(test)]
    pub(crate) fn get(&self, id: &ShadowId) -> Option<&Shadow> {
        self.shadows.get(id)
    }

    /// Applies one request at `now` (`epoch`: the same instant in Unix seconds, the
    /// documents' timestamps).
    pub(crate) fn apply(
        &mut self,
        id: &ShadowId,
        operation: Operation,
        payload: &[u8],
        origin: Origin,
        now: Instant,
        epoch: u64,
    ) -> Applied {
        let document_limits = self.limits.document;
        let refuse = |rejection: Rejection, limit_hit: Option<LimitHit>| {
            let rejection = rejection
                .with_client_token(document::client_token(payload, &document_limits))
                .with_timestamp(epoch);
            Applied {
                answers: rejected(id, operation, origin, &rejection),
                result: Err(rejection),
                change: None,
                in_flight: false,
                limit_hit,
            }
        };
        if let Err(error) = id.validate() {
            return refuse(Rejection::new(400, error.to_string()), None);
        }
        let in_flight = self.in_flight.get(&id.thing).copied().unwrap_or(0);
        if in_flight >= self.limits.inflight_per_thing {
            return refuse(Rejection::too_many_requests(), Some(LimitHit::InFlight));
        }
        if !self.admit_rate(&id.thing, now) {
            return refuse(Rejection::too_many_requests(), Some(LimitHit::Rate));
        }
        let limits = &self.limits.document;
        let current = self.shadows.get(id);
        let label = id.shadow.as_deref().unwrap_or(&id.thing);
        let outcome = match operation {
            Operation::Get => document::get(current, label, payload, epoch, limits).map(|got| {
                // IoT Core answers an HTTP GetThingShadow to the caller only.
                let answers = match origin {
                    Origin::Mqtt => vec![answer(id, operation, Response::Accepted, &got)],
                    Origin::Http => Vec::new(),
                };
                (got, answers, None)
            }),
            Operation::Update => document::update(current, payload, epoch, limits).map(|update| {
                let mut answers = vec![answer(id, operation, Response::Accepted, &update.accepted)];
                if let Some(delta) = &update.delta {
                    answers.push(answer(id, operation, Response::Delta, delta));
                }
                answers.push(answer(
                    id,
                    operation,
                    Response::Documents,
                    &update.documents,
                ));
                (update.accepted, answers, Some(update.shadow))
            }),
            Operation::Delete => {
                document::delete(current, label, payload, epoch, limits).map(|(tombstone, gone)| {
                    let answers = vec![answer(id, operation, Response::Accepted, &gone)];
                    (gone, answers, Some(tombstone))
                })
            }
        };
        *self.in_flight.entry(id.thing.clone()).or_default() += 1;
        match outcome {
            Ok((document, answers, change)) => {
                if let Some(shadow) = &change {
                    self.shadows.insert(id.clone(), shadow.clone());
                }
                Applied {
                    result: Ok(document),
                    answers,
                    change,
                    in_flight: true,
                    limit_hit: None,
                }
            }
            Err(mut rejection) => {
                // Echo what the engine left out: IoT Core's error documents carry the
                // request's clientToken and a timestamp.
                if rejection.client_token.is_none() {
                    rejection.client_token = document::client_token(payload, &document_limits);
                }
                rejection.timestamp.get_or_insert(epoch);
                Applied {
                    answers: rejected(id, operation, origin, &rejection),
                    result: Err(rejection),
                    change: None,
                    in_flight: true,
                    limit_hit: None,
                }
            }
        }
    }

    /// A request of `thing` counted in flight has been answered.
    pub(crate) fn answered(&mut self, thing: &str) {
        if let Some(count) = self.in_flight.get_mut(thing) {
            *count -= 1;
            if *count == 0 {
                self.in_flight.remove(thing);
            }
        }
    }

    /// Whether a limit hit should be logged now; the hits since the last log line,
    /// this one included, when it should.
    pub(crate) fn log_limit_hit(&mut self, now: Instant) -> Option<u64> {
        let log = &mut self.limit_log;
        log.unlogged += 1;
        let due = log
            .logged_at
            .is_none_or(|at| now.saturating_duration_since(at) >= LIMIT_LOG_INTERVAL);
        if !due {
            return None;
        }
        log.logged_at = Some(now);
        Some(std::mem::take(&mut log.unlogged))
    }

    fn admit_rate(&mut self, thing: &str, now: Instant) -> bool {
        let per_sec = u64::from(self.limits.requests_per_thing_per_sec);
        if per_sec == 0 {
            return true;
        }
        if self.buckets.len() >= self.sweep_buckets_at {
            self.buckets.retain(|_, bucket| !bucket.holds(per_sec, now));
            self.sweep_buckets_at = (self.buckets.len() * 2).max(SWEEP_BUCKETS_AT);
        }
        self.buckets
            .entry(thing.to_owned())
            .or_insert_with(|| TokenBucket::new(per_sec, now))
            .try_take(1, now)
    }

    /// The names of `thing`'s named shadows that exist, sorted, at most `page_size`
    /// (at least 1) after `next_token`; and the token of the next page when there is one
    /// (the last name returned: names sort as bytes, and a token is only ever handed back).
    pub(crate) fn list_named(
        &self,
        thing: &str,
        page_size: usize,
        next_token: Option<&str>,
    ) -> (Vec<String>, Option<String>) {
        let page_size = page_size.max(1);
        let after = match next_token {
            Some(name) => ShadowId::named(thing, name),
            // The classic shadow sorts first among a thing's shadows (`None` < `Some`).
            None => ShadowId::classic(thing),
        };
        let mut names: Vec<String> = self
            .shadows
            .range((Bound::Excluded(after), Bound::Unbounded))
            .take_while(|(id, _)| id.thing == thing)
            .filter(|(_, shadow)| shadow.exists())
            .filter_map(|(id, _)| id.shadow.clone())
            .take(page_size + 1)
            .collect();
        let next = (names.len() > page_size).then(|| {
            names.truncate(page_size);
            names[page_size - 1].clone()
        });
        (names, next)
    }
}

fn answer(
    id: &ShadowId,
    operation: Operation,
    response: Response,
    body: &Value,
) -> (String, Bytes) {
    let payload = serde_json::to_vec(body).expect("JSON values serialize");
    (id.response_topic(operation, response), Bytes::from(payload))
}

/// `/…/rejected` for an MQTT request; nothing for an HTTP one (the caller gets the error,
/// MQTT subscribers do not).
fn rejected(
    id: &ShadowId,
    operation: Operation,
    origin: Origin,
    rejection: &Rejection,
) -> Vec<(String, Bytes)> {
    match origin {
        Origin::Mqtt => vec![answer(
            id,
            operation,
            Response::Rejected,
            &rejection.to_json(),
        )],
        Origin::Http => Vec::new(),
    }
}
