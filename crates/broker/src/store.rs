//! The durable store: persistent sessions, their queued QoS 1 messages, the retained
//! messages and the device shadows, in one redb file (`<data_dir>/store.redb`).
//!
//! redb because it is an embedded, pure-Rust, crash-safe (copy-on-write, checksummed
//! commits) transactional store: a SIGKILL or power loss leaves the last committed
//! transaction, never a half-written file to repair (mosquitto#3159) and never a full
//! rewrite (mosquitto#172). Writes go through one writer thread that commits in groups —
//! every operation waiting when a commit starts rides in it, one fsync for all — and
//! publishes the sequence number it has made durable, so a publisher can hold its PUBACK
//! until its message is on disk.
//!
//! A message is stored once, however many offline sessions queue it: each session's queue
//! holds 16-byte references (its sequence number, the message id), and a message row is
//! deleted when the last reference to it goes. The writer keeps the reference counts in
//! memory and rebuilds them at start from the references alone.
//!
//! When a write fails (a full disk, an I/O error) nothing later is reported durable, so
//! no PUBACK that needs the store goes out; the writer reopens the file and retries the
//! same changes until they commit, then acknowledgements resume by themselves.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mqtt::QoS;

use crate::message::MessageMeta;
use crate::metrics::Metrics;
use parking_lot::{Mutex, RwLock};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use shadow::{Shadow, ShadowId};
use tokio::sync::watch;

const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");
/// Messages, each once, in rows: a row holds consecutive messages of one commit group,
/// keyed by the first one's id (the store sequence number it was submitted under). Rows
/// rather than one entry per message keep a durable broker close to an in-memory one (one
/// B-tree insert per group, not per message); capped in size so that reading one message
/// back reads little else.
const MESSAGES: TableDefinition<u64, &[u8]> = TableDefinition::new("messages");
/// The last message id of each row of `MESSAGES`: lets the writer rebuild its reference
/// counts at start without reading the messages.
const MESSAGE_SPANS: TableDefinition<u64, u64> = TableDefinition::new("message_spans");
/// Each session's queue: rows of `(sequence number, message id)` references, keyed by
/// (client id, first sequence number). A reference is removed when its message is
/// acknowledged, dropped or expired.
const QUEUES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("queue_refs");
/// The layout before messages were stored once: whole messages per session. Moved into
/// the tables above when such a store is opened.
const LEGACY_QUEUES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("message_rows");
const RETAINED: TableDefinition<&str, &[u8]> = TableDefinition::new("retained");
/// Device shadows (tombstones of deleted ones included, so versions continue), keyed by
/// [`shadow_key`], each the `shadow::Shadow` as JSON.
const SHADOWS: TableDefinition<&str, &[u8]> = TableDefinition::new("shadows");
/// Small facts about the store: [`NEXT_MESSAGE_ID`].
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Message ids never repeat, even after every message row is gone.
const NEXT_MESSAGE_ID: &str = "next_message_id";

/// A group small enough to mean "traffic is light" waits this share of
/// `group_commit_max_delay` for company before committing.
const SMALL_GROUP: usize = 16;
/// A message row is closed once it holds this many bytes (a larger message gets a row
/// of its own).
const MESSAGE_ROW_BYTES: usize = 256 << 10;
/// References per queue row: deleting one rewrites its row, so rows stay small.
const QUEUE_ROW_REFS: usize = 1024;
/// Longest wait between two attempts to write after a failure.
const RETRY_MAX: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the store {path} cannot be opened: {source}. Move it aside (mv {path} {path}.broken) to start with an empty one; nothing is deleted for you")]
    Unreadable { path: PathBuf, source: redb::Error },
    #[error("the store {path} has an unreadable record ({what}). Move it aside (mv {path} {path}.broken) to start with an empty one")]
    Corrupt { path: PathBuf, what: String },
}

/// The store cannot be read now (a write failed and the file is being reopened).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the store cannot be read now")]
pub struct Unavailable;

/// A persistent session as stored: its subscriptions, when it expires (Unix ms; none
/// while connected), how long it lasts offline, and whether MQTT 5 made it (IoT Core does
/// not resume a session across versions). Records written before MQTT 5 read as 3.1.1
/// sessions with the configured expiry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub subscriptions: Vec<(String, u8)>,
    pub expires_at_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mqtt5: bool,
    /// The session expiry interval, in ms; `None`: the configured `session_expiry`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry_ms: Option<u64>,
}

/// A queued QoS 1 message or a retained message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub topic: Arc<str>,
    pub payload: Bytes,
    pub qos: QoS,
    pub meta: Option<Arc<MessageMeta>>,
}

/// Set in the first byte of a stored message that has MQTT 5 metadata.
const HAS_META: u8 = 0x80;

impl StoredMessage {
    /// `qos (1) | topic length (2) | topic | [meta] | payload`: messages are the bulk of
    /// the store, so they get a compact binary form rather than JSON. With MQTT 5
    /// metadata the first byte has `HAS_META` set and `meta` is `expires at (u64 Unix ms,
    /// 0 = never) | properties length (u32) | MQTT 5 property list`; records written
    /// before MQTT 5 have no such bit and read unchanged.
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(3 + self.topic.len() + self.payload.len());
        self.encode_into(&mut out);
        out
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        let flag = if self.meta.is_some() { HAS_META } else { 0 };
        out.push(self.qos as u8 | flag);
        out.extend_from_slice(&(self.topic.len() as u16).to_be_bytes());
        out.extend_from_slice(self.topic.as_bytes());
        if let Some(meta) = &self.meta {
            out.extend_from_slice(&meta.expires_at_ms.unwrap_or(0).to_be_bytes());
            let mut properties = bytes::BytesMut::new();
            mqtt::encode_publish_properties(&meta.properties, &mut properties);
            out.extend_from_slice(&(properties.len() as u32).to_be_bytes());
            out.extend_from_slice(&properties);
        }
        out.extend_from_slice(&self.payload);
    }

    fn decode(bytes: &[u8]) -> Option<StoredMessage> {
        let first = *bytes.first()?;
        let qos = QoS::from_u8(first & !HAS_META)?;
        let len = u16::from_be_bytes([*bytes.get(1)?, *bytes.get(2)?]) as usize;
        let topic: Arc<str> = std::str::from_utf8(bytes.get(3..3 + len)?).ok()?.into();
        let mut rest = bytes.get(3 + len..)?;
        let mut meta = None;
        if first & HAS_META != 0 {
            let expires_at_ms = u64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
            let properties_len = u32::from_be_bytes(rest.get(8..12)?.try_into().ok()?) as usize;
            let properties = Bytes::copy_from_slice(rest.get(12..12 + properties_len)?);
            let properties = mqtt::decode_publish_properties(properties).ok()?;
            meta = Some(Arc::new(MessageMeta {
                properties,
                expires_at_ms: (expires_at_ms != 0).then_some(expires_at_ms),
            }));
            rest = &rest[12 + properties_len..];
        }
        let payload = Bytes::copy_from_slice(rest);
        Some(StoredMessage {
            topic,
            payload,
            qos,
            meta,
        })
    }
}

/// One change to the store.
#[derive(Debug)]
pub enum Op {
    PutSession(Arc<str>, SessionRecord),
    /// The session and all its queue references.
    DeleteSession(Arc<str>),
    /// A message, stored once, and its place in the first queue that keeps it
    /// `(client id, sequence number)`; its id is the sequence number [`Store::submit`]
    /// returns. It lives while a queue references it, and, with `held`, until
    /// [`Op::ReleaseMessage`] (the router fanning it out to more queues holds it, so that
    /// the first acknowledging early cannot free it before the others reference it).
    PutMessage {
        message: StoredMessage,
        queued: (Arc<str>, u64),
        held: bool,
    },
    /// The submitter of a message no longer needs it kept.
    ReleaseMessage(u64),
    /// `(client id, sequence number, message id)`: the message is in that session's queue.
    PutRef(Arc<str>, u64, u64),
    /// The session no longer holds the message.
    DeleteRef(Arc<str>, u64, u64),
    PutRetained(StoredMessage),
    DeleteRetained(Arc<str>),
    /// A shadow's state after an accepted update or delete (a tombstone then).
    PutShadow(ShadowId, Box<Shadow>),
    /// A tombstone no longer needed (its version is no longer continued).
    DeleteShadow(ShadowId),
}

/// A shadow's key in the store: `{thing}` for the classic shadow, `{thing}/{shadow}` for
/// a named one. Neither name may contain `/` (`shadow::topic`), so keys never collide.
fn shadow_key(id: &ShadowId) -> String {
    match &id.shadow {
        Some(name) => format!("{}/{name}", id.thing),
        None => id.thing.clone(),
    }
}

fn shadow_id_of_key(key: &str) -> ShadowId {
    match key.split_once('/') {
        Some((thing, name)) => ShadowId::named(thing, name),
        None => ShadowId::classic(key),
    }
}

/// A persistent session read back: client id, record, and its queue as
/// `(sequence number, message id)` in order (the messages are read when sent).
pub type RecoveredSession = (String, SessionRecord, Vec<(u64, u64)>);

/// What the store held at start-up.
#[derive(Debug, Default)]
pub struct Recovered {
    pub sessions: Vec<RecoveredSession>,
    pub retained: Vec<StoredMessage>,
    pub shadows: Vec<(ShadowId, Shadow)>,
}

/// What the writer thread and readers share.
struct Shared {
    /// The open file; `None` while the writer reopens it after a failed write.
    db: RwLock<Option<Arc<Database>>>,
    /// The highest sequence number committed (as `committed`, readable without a lock):
    /// a message may be evicted from memory only once the file has it.
    durable: AtomicU64,
}

pub struct Store {
    path: PathBuf,
    sender: Mutex<Option<mpsc::Sender<(u64, Op)>>>,
    next_seq: AtomicU64,
    committed: watch::Receiver<u64>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    shared: Arc<Shared>,
    /// Commits made (tests check group commit with it).
    #[cfg_attr(not(test), allow(dead_code))]
    pub commits: Arc<AtomicU64>,
}

fn open_database(path: &Path, cache_bytes: usize) -> Result<Database, redb::Error> {
    Ok(Database::builder()
        .set_cache_size(cache_bytes)
        .create(path)?)
}

impl Store {
    /// Opens (or creates) the store and reads back the sessions, their queues (as
    /// references) and the retained messages. `cache_bytes` bounds redb's page cache.
    /// (The broker opens it with [`Store::open_measured`]; tests need no metrics.)
    #[cfg(test)]
    pub fn open(
        path: &Path,
        max_delay: Duration,
        cache_bytes: usize,
    ) -> Result<(Arc<Store>, Recovered), StoreError> {
        Store::open_measured(path, max_delay, cache_bytes, Arc::default())
    }

    /// [`Store::open`], timing each group commit into `metrics`.
    pub fn open_measured(
        path: &Path,
        max_delay: Duration,
        cache_bytes: usize,
        metrics: Arc<Metrics>,
    ) -> Result<(Arc<Store>, Recovered), StoreError> {
        let unreadable = |source: redb::Error| StoreError::Unreadable {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|error| unreadable(redb::Error::Io(error)))?;
        }
        let db = open_database(path, cache_bytes).map_err(unreadable)?;
        let (recovered, index) = recover(&db, path)?;
        let first_seq = index.next_message_id();
        let (sender, receiver) = mpsc::channel();
        let (committed_tx, committed) = watch::channel(first_seq - 1);
        let commits = Arc::new(AtomicU64::new(0));
        let shared = Arc::new(Shared {
            db: RwLock::new(Some(Arc::new(db))),
            durable: AtomicU64::new(first_seq - 1),
        });
        let writer = {
            let writer = Writer {
                shared: shared.clone(),
                index,
                committed: committed_tx,
                max_delay,
                commits: commits.clone(),
                path: path.to_path_buf(),
                cache_bytes,
                metrics,
            };
            std::thread::Builder::new()
                .name("store-writer".into())
                .spawn(move || writer.run(receiver))
                .expect("spawn the store writer")
        };
        Ok((
            Arc::new(Store {
                path: path.to_path_buf(),
                sender: Mutex::new(Some(sender)),
                next_seq: AtomicU64::new(first_seq),
                committed,
                writer: Mutex::new(Some(writer)),
                shared,
                commits,
            }),
            recovered,
        ))
    }

    /// Queues a change; returns its sequence number, durable once [`Store::committed`]
    /// reaches it (for [`Op::PutMessage`], also the message's id).
    pub fn submit(&self, op: Op) -> u64 {
        // Numbered and sent under one lock: the writer sees changes in number order, so
        // a commit covers every number up to its last.
        let sender = self.sender.lock();
        let seq = self.next_seq.fetch_add(1, Ordering::AcqRel);
        match sender.as_ref() {
            Some(sender) if sender.send((seq, op)).is_ok() => seq,
            _ => {
                tracing::error!(path = %self.path.display(), "store writer is gone: change not persisted");
                seq
            }
        }
    }

    /// The highest sequence number made durable (fsync'd) so far.
    pub fn committed(&self) -> watch::Receiver<u64> {
        self.committed.clone()
    }

    /// The highest sequence number made durable, without waiting.
    pub fn durable(&self) -> u64 {
        self.shared.durable.load(Ordering::Acquire)
    }

    /// Reads committed messages back by id, in the order asked: `None` for an id the
    /// store does not have.
    pub fn load(&self, ids: &[u64]) -> Result<Vec<Option<StoredMessage>>, Unavailable> {
        let mut found: Vec<Option<StoredMessage>> = vec![None; ids.len()];
        let db = self.shared.db.read().clone().ok_or(Unavailable)?;
        let txn = db.begin_read().map_err(|_| Unavailable)?;
        let table = txn.open_table(MESSAGES).map_err(|_| Unavailable)?;
        let mut row: Vec<(u64, StoredMessage)> = Vec::new();
        for (slot, id) in found.iter_mut().zip(ids) {
            if slot.is_some() {
                continue;
            }
            let covered = row.first().is_some_and(|(first, _)| first <= id)
                && row.last().is_some_and(|(last, _)| id <= last);
            if !covered {
                row = match table.range(..=*id).map_err(|_| Unavailable)?.next_back() {
                    Some(entry) => {
                        let (_, value) = entry.map_err(|_| Unavailable)?;
                        decode_row(value.value()).unwrap_or_default()
                    }
                    None => Vec::new(),
                };
            }
            *slot = row
                .binary_search_by_key(id, |(id, _)| *id)
                .ok()
                .map(|index| row[index].1.clone());
        }
        Ok(found)
    }

    /// Commits what is queued, stops the writer and closes the file (an embedded broker
    /// started again in the same process opens it anew; redb locks it to one opener).
    pub fn close(&self) {
        self.sender.lock().take();
        if let Some(writer) = self.writer.lock().take() {
            let _ = writer.join();
        }
        self.shared.db.write().take();
    }
}

fn recover(db: &Database, path: &Path) -> Result<(Recovered, Index), StoreError> {
    let unreadable = |source: redb::Error| StoreError::Unreadable {
        path: path.to_path_buf(),
        source,
    };
    let corrupt = |what: String| StoreError::Corrupt {
        path: path.to_path_buf(),
        what,
    };
    // Create the tables on a fresh store so reads below find them, and move a store of
    // the layout before messages were stored once into the current one.
    let txn = db.begin_write().map_err(|e| unreadable(e.into()))?;
    {
        txn.open_table(SESSIONS).map_err(|e| unreadable(e.into()))?;
        txn.open_table(RETAINED).map_err(|e| unreadable(e.into()))?;
        txn.open_table(SHADOWS).map_err(|e| unreadable(e.into()))?;
        let mut messages = txn.open_table(MESSAGES).map_err(|e| unreadable(e.into()))?;
        let mut spans = txn
            .open_table(MESSAGE_SPANS)
            .map_err(|e| unreadable(e.into()))?;
        let mut queues = txn.open_table(QUEUES).map_err(|e| unreadable(e.into()))?;
        let legacy = txn
            .open_table(LEGACY_QUEUES)
            .map_err(|e| unreadable(e.into()))?;
        let mut meta = txn.open_table(META).map_err(|e| unreadable(e.into()))?;
        let mut next_id = meta
            .get(NEXT_MESSAGE_ID)
            .map_err(|e| unreadable(e.into()))?
            .map_or(1, |next| next.value());
        let mut moved = 0;
        for entry in legacy.iter().map_err(|e| unreadable(e.into()))? {
            let (key, value) = entry.map_err(|e| unreadable(e.into()))?;
            let (client_id, first) = key.value();
            let row = decode_row(value.value())
                .ok_or_else(|| corrupt(format!("message row {first} of session {client_id:?}")))?;
            let (mut bytes, mut refs) = (Vec::new(), Vec::new());
            let first_id = next_id;
            for (seq, message) in row {
                append_to_row(&mut bytes, next_id, &message);
                refs.push((seq, next_id));
                next_id += 1;
            }
            if refs.is_empty() {
                continue;
            }
            moved += refs.len();
            messages
                .insert(first_id, bytes.as_slice())
                .map_err(|e| unreadable(e.into()))?;
            spans
                .insert(first_id, next_id - 1)
                .map_err(|e| unreadable(e.into()))?;
            for chunk in refs.chunks(QUEUE_ROW_REFS) {
                queues
                    .insert((client_id, chunk[0].0), encode_refs(chunk).as_slice())
                    .map_err(|e| unreadable(e.into()))?;
            }
        }
        drop(legacy);
        meta.insert(NEXT_MESSAGE_ID, next_id)
            .map_err(|e| unreadable(e.into()))?;
        if moved > 0 {
            tracing::info!(
                messages = moved,
                "store: queued messages moved to the stored-once layout"
            );
        }
    }
    txn.delete_table(LEGACY_QUEUES)
        .map_err(|e| unreadable(e.into()))?;
    txn.commit().map_err(|e| unreadable(e.into()))?;

    let mut index = Index::load(db).map_err(unreadable)?;
    // Rows nothing references: a crash came between their last reference's removal and
    // the commit that would have freed them. Free them now.
    let orphans: Vec<u64> = index
        .messages
        .iter()
        .filter(|(_, row)| row.refs == 0)
        .map(|(first, _)| *first)
        .collect();
    if !orphans.is_empty() {
        let txn = db.begin_write().map_err(|e| unreadable(e.into()))?;
        {
            let mut messages = txn.open_table(MESSAGES).map_err(|e| unreadable(e.into()))?;
            let mut spans = txn
                .open_table(MESSAGE_SPANS)
                .map_err(|e| unreadable(e.into()))?;
            for first in &orphans {
                messages.remove(first).map_err(|e| unreadable(e.into()))?;
                spans.remove(first).map_err(|e| unreadable(e.into()))?;
                index.messages.remove(first);
            }
        }
        txn.commit().map_err(|e| unreadable(e.into()))?;
    }

    let txn = db.begin_read().map_err(|e| unreadable(e.into()))?;
    let sessions = txn.open_table(SESSIONS).map_err(|e| unreadable(e.into()))?;
    let queues = txn.open_table(QUEUES).map_err(|e| unreadable(e.into()))?;
    let retained_table = txn.open_table(RETAINED).map_err(|e| unreadable(e.into()))?;
    let mut recovered = Recovered::default();
    for entry in sessions.iter().map_err(|e| unreadable(e.into()))? {
        let (key, value) = entry.map_err(|e| unreadable(e.into()))?;
        let client_id = key.value().to_owned();
        let record: SessionRecord = serde_json::from_slice(value.value())
            .map_err(|error| corrupt(format!("session {client_id:?}: {error}")))?;
        let mut queued = Vec::new();
        for entry in queues
            .range((client_id.as_str(), 0)..=(client_id.as_str(), u64::MAX))
            .map_err(|e| unreadable(e.into()))?
        {
            let (key, value) = entry.map_err(|e| unreadable(e.into()))?;
            let refs = decode_refs(value.value()).ok_or_else(|| {
                corrupt(format!(
                    "queue row {} of session {client_id:?}",
                    key.value().1
                ))
            })?;
            queued.extend(refs);
        }
        recovered.sessions.push((client_id, record, queued));
    }
    for entry in retained_table.iter().map_err(|e| unreadable(e.into()))? {
        let (key, value) = entry.map_err(|e| unreadable(e.into()))?;
        let message = StoredMessage::decode(value.value())
            .ok_or_else(|| corrupt(format!("retained message on {:?}", key.value())))?;
        recovered.retained.push(message);
    }
    let shadows = txn.open_table(SHADOWS).map_err(|e| unreadable(e.into()))?;
    for entry in shadows.iter().map_err(|e| unreadable(e.into()))? {
        let (key, value) = entry.map_err(|e| unreadable(e.into()))?;
        let shadow: Shadow = serde_json::from_slice(value.value())
            .map_err(|error| corrupt(format!("shadow {:?}: {error}", key.value())))?;
        recovered
            .shadows
            .push((shadow_id_of_key(key.value()), shadow));
    }
    Ok((recovered, index))
}

/// The writer thread: commits groups of changes, and rides out failed writes.
struct Writer {
    shared: Arc<Shared>,
    index: Index,
    committed: watch::Sender<u64>,
    max_delay: Duration,
    commits: Arc<AtomicU64>,
    path: PathBuf,
    cache_bytes: usize,
    metrics: Arc<Metrics>,
}

impl Writer {
    fn run(mut self, receiver: mpsc::Receiver<(u64, Op)>) {
        let mut group: Vec<(u64, Op)> = Vec::new();
        // The error of the last failed attempt while writes fail.
        let mut failing: Option<String> = None;
        let mut retry = Duration::from_millis(50);
        let mut closed = false;
        loop {
            if group.is_empty() {
                match receiver.recv() {
                    Ok(first) => group.push(first),
                    Err(_) => return,
                }
            }
            loop {
                match receiver.try_recv() {
                    Ok(op) => group.push(op),
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => {
                        closed = true;
                        break;
                    }
                }
            }
            if failing.is_none() && group.len() < SMALL_GROUP && !self.max_delay.is_zero() {
                let deadline = Instant::now() + self.max_delay;
                while let Some(left) = deadline.checked_duration_since(Instant::now()) {
                    match receiver.recv_timeout(left) {
                        Ok(op) => group.push(op),
                        Err(_) => break,
                    }
                }
                group.extend(receiver.try_iter());
            }
            let last = group.last().map(|(seq, _)| *seq).unwrap_or_default();
            let db = self.shared.db.read().clone();
            let started = Instant::now();
            let result = match &db {
                Some(db) => self.index.apply(db, &group).map_err(|e| e.to_string()),
                None => Err("the store file is not open".to_owned()),
            };
            drop(db);
            match result {
                Ok(()) => {
                    self.metrics.store_committed(started.elapsed());
                    self.commits.fetch_add(1, Ordering::Relaxed);
                    self.shared.durable.store(last, Ordering::Release);
                    self.committed.send_replace(last);
                    if failing.take().is_some() {
                        tracing::warn!(path = %self.path.display(), "store: writes succeed again; QoS 1 acknowledgements resumed");
                    }
                    group.clear();
                    retry = Duration::from_millis(50);
                }
                Err(error) => {
                    // The failed group is kept and retried whole: nothing after it may be
                    // reported durable before it is, and publishers wait for their PUBACK.
                    if failing.is_none() {
                        tracing::error!(path = %self.path.display(), "store: write failed ({error}); QoS 1 acknowledgements paused");
                    }
                    failing = Some(error);
                    if closed && retry >= RETRY_MAX {
                        tracing::error!(path = %self.path.display(), changes = group.len(), "store: closed while writes fail; the last changes were not written");
                        return;
                    }
                    std::thread::sleep(retry);
                    retry = (retry * 2).min(RETRY_MAX);
                    self.reopen();
                }
            }
        }
    }

    /// redb fails every operation after an I/O error until the file is closed: close it,
    /// open it again (it comes back at its last commit) and rebuild the index from it.
    fn reopen(&mut self) {
        let old = self.shared.db.write().take();
        if let Some(mut old) = old {
            // Readers hold it only for one read.
            loop {
                match Arc::try_unwrap(old) {
                    Ok(db) => {
                        drop(db);
                        break;
                    }
                    Err(still_shared) => {
                        old = still_shared;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            }
        }
        let reopened = open_database(&self.path, self.cache_bytes)
            .and_then(|db| Index::load(&db).map(|index| (db, index)));
        match reopened {
            Ok((db, index)) => {
                self.index = index;
                *self.shared.db.write() = Some(Arc::new(db));
            }
            Err(error) => {
                tracing::debug!(path = %self.path.display(), %error, "store: reopening failed; trying again");
            }
        }
    }
}

/// Appends one message to a row: `(id u64, length u32, message)…`.
fn append_to_row(row: &mut Vec<u8>, id: u64, message: &StoredMessage) {
    row.extend_from_slice(&id.to_be_bytes());
    let length_at = row.len();
    row.extend_from_slice(&[0; 4]);
    message.encode_into(row);
    let length = (row.len() - length_at - 4) as u32;
    row[length_at..length_at + 4].copy_from_slice(&length.to_be_bytes());
}

fn decode_row(mut bytes: &[u8]) -> Option<Vec<(u64, StoredMessage)>> {
    let mut messages = Vec::new();
    while !bytes.is_empty() {
        let id = u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?);
        let len = u32::from_be_bytes(bytes.get(8..12)?.try_into().ok()?) as usize;
        let message = StoredMessage::decode(bytes.get(12..12 + len)?)?;
        messages.push((id, message));
        bytes = &bytes[12 + len..];
    }
    Some(messages)
}

/// One reference in a session's queue: `(sequence number, message id)`.
type QueueRef = (u64, u64);

/// A queue row: `(sequence number u64, message id u64)…`.
fn encode_refs(refs: &[(u64, u64)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(refs.len() * 16);
    for (seq, id) in refs {
        out.extend_from_slice(&seq.to_be_bytes());
        out.extend_from_slice(&id.to_be_bytes());
    }
    out
}

fn decode_refs(bytes: &[u8]) -> Option<Vec<(u64, u64)>> {
    if !bytes.len().is_multiple_of(16) {
        return None;
    }
    Some(
        bytes
            .chunks_exact(16)
            .map(|pair| {
                let seq = u64::from_be_bytes(pair[..8].try_into().expect("8 bytes"));
                let id = u64::from_be_bytes(pair[8..].try_into().expect("8 bytes"));
                (seq, id)
            })
            .collect(),
    )
}

/// A stored message row: its last id and how many references it still has.
#[derive(Debug, Clone, Copy)]
struct MessageRow {
    last: u64,
    refs: u32,
}

/// A message row being filled by the current group.
struct NewMessageRow {
    first: u64,
    last: u64,
    refs: i64,
    bytes: Vec<u8>,
}

/// The writer's knowledge of the file: which message rows exist and how many references
/// each has, and which queue rows each session has, so that a reference change needs no
/// read except of the one queue row it touches.
#[derive(Default)]
struct Index {
    /// By first message id.
    messages: BTreeMap<u64, MessageRow>,
    /// Per session, by first sequence number: the row's last sequence number.
    queues: HashMap<Arc<str>, BTreeMap<u64, u64>>,
    /// Above every message id ever stored (ids never repeat).
    next_id: u64,
}

impl Index {
    fn load(db: &Database) -> Result<Index, redb::Error> {
        let mut index = Index::default();
        let txn = db.begin_read()?;
        if let Some(next) = txn.open_table(META)?.get(NEXT_MESSAGE_ID)? {
            index.next_id = next.value();
        }
        for entry in txn.open_table(MESSAGE_SPANS)?.iter()? {
            let (first, last) = entry?;
            index.next_id = index.next_id.max(last.value() + 1);
            index.messages.insert(
                first.value(),
                MessageRow {
                    last: last.value(),
                    refs: 0,
                },
            );
        }
        for entry in txn.open_table(QUEUES)?.iter()? {
            let (key, value) = entry?;
            let (client_id, first) = key.value();
            let refs = decode_refs(value.value()).unwrap_or_default();
            let last = refs.last().map_or(first, |(seq, _)| *seq);
            index
                .queues
                .entry(client_id.into())
                .or_default()
                .insert(first, last);
            for (_, id) in refs {
                if let Some((_, row)) = index.messages.range_mut(..=id).next_back() {
                    if id <= row.last {
                        row.refs += 1;
                    }
                }
            }
        }
        Ok(index)
    }

    fn next_message_id(&self) -> u64 {
        self.next_id.max(1)
    }

    /// Counts a reference to message `id` more (`delta` 1) or less (-1).
    fn count_ref(
        &self,
        new_rows: &mut [NewMessageRow],
        changed: &mut HashMap<u64, i64>,
        id: u64,
        delta: i64,
    ) {
        let at = new_rows.partition_point(|row| row.first <= id);
        if let Some(row) = at.checked_sub(1).map(|at| &mut new_rows[at]) {
            if id <= row.last {
                row.refs += delta;
                return;
            }
        }
        if let Some((first, row)) = self.messages.range(..=id).next_back() {
            if id <= row.last {
                *changed.entry(*first).or_default() += delta;
            }
        }
    }

    fn apply(&mut self, db: &Database, group: &[(u64, Op)]) -> Result<(), redb::Error> {
        let mut txn = db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        {
            let mut sessions = txn.open_table(SESSIONS)?;
            let mut messages = txn.open_table(MESSAGES)?;
            let mut spans = txn.open_table(MESSAGE_SPANS)?;
            let mut queues = txn.open_table(QUEUES)?;
            let mut retained = txn.open_table(RETAINED)?;
            let mut shadows = txn.open_table(SHADOWS)?;
            let mut meta = txn.open_table(META)?;
            let mut new_rows: Vec<NewMessageRow> = Vec::new();
            // Reference count changes of rows already stored.
            let mut changed: HashMap<u64, i64> = HashMap::new();
            // This group's references per session, in sequence order; a reference deleted
            // within the group gets message id 0.
            let mut new_refs: HashMap<Arc<str>, Vec<(u64, u64)>> = HashMap::new();
            // References to delete from stored queue rows: session → row → (sequence
            // number, message id). Applied at the end, where the row is read: only a
            // reference that is there and names that message is removed and uncounted (a
            // late acknowledgement from a replaced session of the same client id must not
            // touch its successor's queue).
            let mut deleted: HashMap<Arc<str>, BTreeMap<u64, BTreeSet<QueueRef>>> = HashMap::new();
            for (seq, op) in group {
                match op {
                    Op::PutSession(client_id, record) => {
                        let json = serde_json::to_vec(record).expect("session records serialize");
                        sessions.insert(&**client_id, json.as_slice())?;
                    }
                    Op::PutMessage {
                        message,
                        queued: (client_id, queue_seq),
                        held,
                    } => {
                        let open = new_rows
                            .last()
                            .is_some_and(|row| row.bytes.len() < MESSAGE_ROW_BYTES);
                        if !open {
                            new_rows.push(NewMessageRow {
                                first: *seq,
                                last: *seq,
                                refs: 0,
                                // Grown by doubling from nothing, a row was a chain of
                                // reallocations on the writer's hot path.
                                bytes: Vec::with_capacity(16 << 10),
                            });
                        }
                        let row = new_rows.last_mut().expect("pushed above");
                        row.last = *seq;
                        row.refs += 1 + i64::from(*held);
                        append_to_row(&mut row.bytes, *seq, message);
                        new_refs
                            .entry(client_id.clone())
                            .or_default()
                            .push((*queue_seq, *seq));
                    }
                    Op::ReleaseMessage(id) => {
                        self.count_ref(&mut new_rows, &mut changed, *id, -1);
                    }
                    Op::PutRef(client_id, queue_seq, id) => {
                        self.count_ref(&mut new_rows, &mut changed, *id, 1);
                        new_refs
                            .entry(client_id.clone())
                            .or_default()
                            .push((*queue_seq, *id));
                    }
                    Op::DeleteRef(client_id, queue_seq, id) => {
                        if let Some(refs) = new_refs.get_mut(client_id) {
                            if let Ok(at) = refs.binary_search_by_key(queue_seq, |(s, _)| *s) {
                                if refs[at].1 == *id {
                                    refs[at].1 = 0;
                                    self.count_ref(&mut new_rows, &mut changed, *id, -1);
                                    continue;
                                }
                            }
                        }
                        let Some((first, last)) = self
                            .queues
                            .get(client_id)
                            .and_then(|rows| rows.range(..=*queue_seq).next_back())
                        else {
                            continue;
                        };
                        if queue_seq > last {
                            continue;
                        }
                        deleted
                            .entry(client_id.clone())
                            .or_default()
                            .entry(*first)
                            .or_default()
                            .insert((*queue_seq, *id));
                    }
                    Op::DeleteSession(client_id) => {
                        sessions.remove(&**client_id)?;
                        for (_, id) in new_refs.remove(client_id).unwrap_or_default() {
                            if id != 0 {
                                self.count_ref(&mut new_rows, &mut changed, id, -1);
                            }
                        }
                        // Its pending deletions are moot: every reference goes below.
                        deleted.remove(client_id);
                        self.queues.remove(client_id);
                        let range = (&**client_id, 0)..=(&**client_id, u64::MAX);
                        let mut rows = Vec::new();
                        for entry in queues.range(range)? {
                            let (key, value) = entry?;
                            rows.push((
                                key.value().1,
                                decode_refs(value.value()).unwrap_or_default(),
                            ));
                        }
                        for (first, refs) in rows {
                            queues.remove((&**client_id, first))?;
                            for (_, id) in refs {
                                self.count_ref(&mut new_rows, &mut changed, id, -1);
                            }
                        }
                    }
                    Op::PutRetained(message) => {
                        retained.insert(&*message.topic, message.encode().as_slice())?;
                    }
                    Op::DeleteRetained(topic) => {
                        retained.remove(&**topic)?;
                    }
                    Op::PutShadow(id, shadow) => {
                        let json = serde_json::to_vec(shadow).expect("shadows serialize");
                        shadows.insert(shadow_key(id).as_str(), json.as_slice())?;
                    }
                    Op::DeleteShadow(id) => {
                        shadows.remove(shadow_key(id).as_str())?;
                    }
                }
            }
            // Stored queue rows that lost references: rewritten without them, or deleted.
            for (client_id, rows) in deleted {
                for (first, gone) in rows {
                    let refs = match queues.get((&*client_id, first))? {
                        Some(row) => decode_refs(row.value()).unwrap_or_default(),
                        None => continue,
                    };
                    let (removed, kept): (Vec<QueueRef>, Vec<QueueRef>) =
                        refs.into_iter().partition(|entry| gone.contains(entry));
                    if removed.is_empty() {
                        continue;
                    }
                    for (_, id) in removed {
                        self.count_ref(&mut new_rows, &mut changed, id, -1);
                    }
                    if kept.is_empty() {
                        queues.remove((&*client_id, first))?;
                        if let Some(index) = self.queues.get_mut(&client_id) {
                            index.remove(&first);
                        }
                    } else {
                        queues.insert((&*client_id, first), encode_refs(&kept).as_slice())?;
                    }
                }
            }
            for (client_id, refs) in new_refs {
                let refs: Vec<(u64, u64)> = refs.into_iter().filter(|(_, id)| *id != 0).collect();
                for chunk in refs.chunks(QUEUE_ROW_REFS) {
                    let (first, last) = (chunk[0].0, chunk[chunk.len() - 1].0);
                    queues.insert((&*client_id, first), encode_refs(chunk).as_slice())?;
                    self.queues
                        .entry(client_id.clone())
                        .or_default()
                        .insert(first, last);
                }
            }
            if let Some(row) = new_rows.last() {
                self.next_id = self.next_id.max(row.last + 1);
                meta.insert(NEXT_MESSAGE_ID, self.next_id)?;
            }
            for row in new_rows {
                // A row whose messages were all delivered and acknowledged (or dropped)
                // within the group is never written.
                if row.refs <= 0 {
                    continue;
                }
                messages.insert(row.first, row.bytes.as_slice())?;
                spans.insert(row.first, row.last)?;
                self.messages.insert(
                    row.first,
                    MessageRow {
                        last: row.last,
                        refs: row.refs as u32,
                    },
                );
            }
            for (first, delta) in changed {
                let Some(row) = self.messages.get_mut(&first) else {
                    continue;
                };
                let refs = (i64::from(row.refs) + delta).max(0);
                row.refs = refs as u32;
                if refs == 0 {
                    messages.remove(first)?;
                    spans.remove(first)?;
                    self.messages.remove(&first);
                }
            }
        }
        txn.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::ReadableTableMetadata;

    const CACHE: usize = 1 << 20;

    fn message(topic: &str, payload: &'static [u8]) -> StoredMessage {
        StoredMessage {
            topic: topic.into(),
            payload: Bytes::from_static(payload),
            qos: QoS::AtLeastOnce,
            meta: None,
        }
    }

    fn record() -> SessionRecord {
        SessionRecord {
            subscriptions: vec![("a/#".into(), 1)],
            expires_at_ms: None,
            mqtt5: false,
            expiry_ms: None,
        }
    }

    /// Stores a message queued by `sessions` as the router does: put with the first
    /// session's reference (sequence number `seq`), one reference per other session, and
    /// the release of a message held for them. Returns its id and the last change.
    fn queue(store: &Store, sessions: &[&str], seq: u64, message: StoredMessage) -> (u64, u64) {
        let held = sessions.len() > 1;
        let id = store.submit(Op::PutMessage {
            message,
            queued: (sessions[0].into(), seq),
            held,
        });
        let mut last = id;
        for client_id in &sessions[1..] {
            last = store.submit(Op::PutRef((*client_id).into(), seq, id));
        }
        if held {
            last = store.submit(Op::ReleaseMessage(id));
        }
        (id, last)
    }

    fn rows(path: &Path) -> (usize, usize) {
        let db = Database::create(path).unwrap();
        let txn = db.begin_read().unwrap();
        let messages = txn.open_table(MESSAGES).unwrap().len().unwrap() as usize;
        let queues = txn.open_table(QUEUES).unwrap().len().unwrap() as usize;
        (messages, queues)
    }

    #[test]
    fn messages_with_mqtt5_metadata_round_trip_and_old_records_still_read() {
        let meta = MessageMeta {
            properties: mqtt::PublishProperties {
                content_type: Some("application/json".into()),
                user_properties: vec![("b".into(), "2".into()), ("a".into(), "1".into())],
                correlation_data: Some(Bytes::from_static(b"\x00\x01")),
                message_expiry_interval: Some(30),
                ..Default::default()
            },
            expires_at_ms: Some(1_700_000_030_000),
        };
        let with_meta = StoredMessage {
            meta: Some(Arc::new(meta)),
            ..message("a/b", b"payload")
        };
        assert_eq!(StoredMessage::decode(&with_meta.encode()), Some(with_meta));
        // The pre-MQTT 5 layout: qos, topic length, topic, payload.
        let old = [1u8, 0, 1, b't', b'x'];
        assert_eq!(StoredMessage::decode(&old), Some(message("t", b"x")));
    }

    async fn wait_durable(store: &Store, seq: u64) {
        let mut committed = store.committed();
        committed.wait_for(|done| *done >= seq).await.unwrap();
    }

    #[tokio::test]
    async fn everything_committed_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        let ids = {
            let (store, recovered) = Store::open(&path, Duration::from_millis(1), CACHE).unwrap();
            assert!(recovered.sessions.is_empty());
            store.submit(Op::PutSession("c1".into(), record()));
            let (one, _) = queue(&store, &["c1"], 1, message("a/1", b"one"));
            let (two, _) = queue(&store, &["c1"], 2, message("a/2", b"two"));
            let (three, _) = queue(&store, &["c1"], 3, message("a/3", b"three"));
            store.submit(Op::DeleteRef("c1".into(), 2, two));
            store.submit(Op::PutSession("gone".into(), record()));
            queue(&store, &["gone"], 1, message("x", b"x"));
            store.submit(Op::DeleteSession("gone".into()));
            store.submit(Op::PutRetained(message("r/1", b"kept")));
            store.submit(Op::PutRetained(message("r/2", b"deleted")));
            let last = store.submit(Op::DeleteRetained("r/2".into()));
            wait_durable(&store, last).await;
            store.close();
            [one, two, three]
        };
        let (store, recovered) = Store::open(&path, Duration::ZERO, CACHE).unwrap();
        assert_eq!(recovered.sessions.len(), 1);
        let (client_id, record, queued) = &recovered.sessions[0];
        assert_eq!(client_id, "c1");
        assert_eq!(record.subscriptions, vec![("a/#".to_owned(), 1)]);
        assert_eq!(
            queued,
            &vec![(1, ids[0]), (3, ids[2])],
            "exactly what is still queued"
        );
        // (Message two shares its row with live ones: its bytes stay until they go.)
        let loaded = store.load(&[ids[0], ids[2]]).unwrap();
        let payloads: Vec<_> = loaded
            .iter()
            .map(|m| m.as_ref().map(|m| &m.payload[..]))
            .collect();
        assert_eq!(payloads, [Some(&b"one"[..]), Some(&b"three"[..])]);
        assert_eq!(recovered.retained, vec![message("r/1", b"kept")]);
    }

    #[tokio::test]
    async fn shadows_survive_reopening_the_last_write_of_each_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        let shadow = |version: u64, deleted_at: Option<u64>| Shadow {
            desired: serde_json::json!({"a": {"b": [1, 2]}}).as_object().cloned(),
            version,
            timestamp: 1_700_000_000 + version,
            deleted_at,
            ..Shadow::default()
        };
        let classic = ShadowId::classic("lamp");
        let named = ShadowId::named("lamp", "$cfg:1");
        let other = ShadowId::named("lamp-2", "cfg");
        let forgotten = ShadowId::named("lamp-2", "old");
        {
            let (store, recovered) = Store::open(&path, Duration::from_millis(1), CACHE).unwrap();
            assert!(recovered.shadows.is_empty());
            store.submit(Op::PutShadow(classic.clone(), Box::new(shadow(1, None))));
            store.submit(Op::PutShadow(classic.clone(), Box::new(shadow(2, None))));
            store.submit(Op::PutShadow(named.clone(), Box::new(shadow(7, None))));
            store.submit(Op::PutShadow(named.clone(), Box::new(shadow(7, Some(5)))));
            store.submit(Op::PutShadow(
                forgotten.clone(),
                Box::new(shadow(3, Some(1))),
            ));
            store.submit(Op::DeleteShadow(forgotten));
            let last = store.submit(Op::PutShadow(other.clone(), Box::new(shadow(1, None))));
            wait_durable(&store, last).await;
            store.close();
        }
        let (_store, mut recovered) = Store::open(&path, Duration::ZERO, CACHE).unwrap();
        recovered.shadows.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            recovered.shadows,
            vec![
                (classic, shadow(2, None)),
                (named, shadow(7, Some(5))),
                (other, shadow(1, None)),
            ],
            "the last write of each, tombstone included"
        );
    }

    #[tokio::test]
    async fn a_message_queued_by_many_sessions_is_stored_once_and_freed_by_the_last() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        let sessions: Vec<String> = (0..10).map(|n| format!("s{n}")).collect();
        let names: Vec<&str> = sessions.iter().map(String::as_str).collect();
        let big = StoredMessage {
            payload: Bytes::from(vec![7u8; 100_000]),
            ..message("big/t", b"")
        };
        let id = {
            let (store, _) = Store::open(&path, Duration::from_millis(1), CACHE).unwrap();
            let (id, last) = queue(&store, &names, 1, big.clone());
            wait_durable(&store, last).await;
            for name in &names[..9] {
                store.submit(Op::DeleteSession((*name).into()));
            }
            let last = store.submit(Op::PutSession("s9".into(), record()));
            wait_durable(&store, last).await;
            assert_eq!(store.load(&[id]).unwrap(), vec![Some(big.clone())]);
            store.close();
            id
        };
        assert_eq!(rows(&path), (1, 1), "one message row, one queue row left");
        assert!(
            std::fs::metadata(&path).unwrap().len() < 2_000_000,
            "stored once, not ten times"
        );
        {
            let (store, recovered) = Store::open(&path, Duration::ZERO, CACHE).unwrap();
            assert_eq!(recovered.sessions[0].2, vec![(1, id)]);
            assert_eq!(store.load(&[id]).unwrap(), vec![Some(big)]);
            let last = store.submit(Op::DeleteRef("s9".into(), 1, id));
            wait_durable(&store, last).await;
            assert_eq!(store.load(&[id]).unwrap(), vec![None]);
            store.close();
        }
        assert_eq!(rows(&path), (0, 0), "the last reference freed the message");
    }

    #[tokio::test]
    async fn message_ids_never_repeat_and_committed_messages_are_readable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        let first = {
            let (store, _) = Store::open(&path, Duration::from_millis(50), CACHE).unwrap();
            let (id, _) = queue(&store, &["c"], 1, message("t", b"gone at once"));
            let last = store.submit(Op::DeleteRef("c".into(), 1, id));
            wait_durable(&store, last).await;
            store.close();
            id
        };
        let (store, _) = Store::open(&path, Duration::from_millis(50), CACHE).unwrap();
        let (id, last) = queue(&store, &["c", "d"], 1, message("t", b"fresh"));
        assert!(id > first, "{id} after {first}");
        assert!(store.durable() < id, "within the 50 ms group delay");
        wait_durable(&store, last).await;
        assert!(store.durable() >= last);
        assert_eq!(
            store.load(&[id]).unwrap()[0].as_ref().unwrap().payload,
            "fresh"
        );
    }

    #[tokio::test]
    async fn a_store_of_the_per_session_layout_is_moved_to_the_stored_once_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut sessions = txn.open_table(SESSIONS).unwrap();
                let json = serde_json::to_vec(&record()).unwrap();
                sessions.insert("old", json.as_slice()).unwrap();
                let mut legacy = txn.open_table(LEGACY_QUEUES).unwrap();
                let mut row = Vec::new();
                append_to_row(&mut row, 4, &message("a/1", b"one"));
                append_to_row(&mut row, 5, &message("a/2", b"two"));
                legacy.insert(("old", 4), row.as_slice()).unwrap();
            }
            txn.commit().unwrap();
        }
        let (store, recovered) = Store::open(&path, Duration::ZERO, CACHE).unwrap();
        let (_, _, queued) = &recovered.sessions[0];
        let seqs: Vec<u64> = queued.iter().map(|(seq, _)| *seq).collect();
        assert_eq!(seqs, [4, 5]);
        let ids: Vec<u64> = queued.iter().map(|(_, id)| *id).collect();
        let loaded = store.load(&ids).unwrap();
        assert_eq!(loaded[1].as_ref().unwrap().payload, "two");
        let (next, _) = queue(&store, &["old"], 6, message("t", b"new"));
        assert!(next > ids[1]);
    }

    #[tokio::test]
    async fn a_late_acknowledgement_from_a_replaced_session_leaves_its_successor_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        let (old, new) = {
            let (store, _) = Store::open(&path, Duration::from_millis(1), CACHE).unwrap();
            let (old, last) = queue(&store, &["c"], 1, message("t", b"old"));
            wait_durable(&store, last).await;
            // The client id starts a new session; its first message has sequence number 1 too.
            store.submit(Op::DeleteSession("c".into()));
            store.submit(Op::PutSession("c".into(), record()));
            let (new, last) = queue(&store, &["c"], 1, message("t", b"new"));
            wait_durable(&store, last).await;
            let last = store.submit(Op::DeleteRef("c".into(), 1, old));
            wait_durable(&store, last).await;
            store.close();
            (old, new)
        };
        let (store, recovered) = Store::open(&path, Duration::ZERO, CACHE).unwrap();
        assert_eq!(recovered.sessions[0].2, vec![(1, new)]);
        assert_eq!(
            store.load(&[old, new]).unwrap()[1]
                .as_ref()
                .unwrap()
                .payload,
            "new"
        );
        assert_eq!(
            store.load(&[old]).unwrap(),
            vec![None],
            "the old message was freed"
        );
    }

    #[tokio::test]
    async fn a_fully_acknowledged_queue_leaves_no_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        {
            let (store, _) = Store::open(&path, Duration::from_millis(5), CACHE).unwrap();
            store.submit(Op::PutSession("c".into(), record()));
            let mut ids = Vec::new();
            let mut last = 0;
            for seq in 1..=1000 {
                let (id, done) = queue(&store, &["c"], seq, message("t", b"p"));
                ids.push(id);
                last = done;
            }
            wait_durable(&store, last).await;
            // Acknowledged one by one, in many groups.
            for (seq, id) in (1..=1000).zip(&ids) {
                last = store.submit(Op::DeleteRef("c".into(), seq, *id));
                if seq % 100 == 0 {
                    wait_durable(&store, last).await;
                }
            }
            wait_durable(&store, last).await;
            store.close();
        }
        assert_eq!(rows(&path), (0, 0));
        let (_store, recovered) = Store::open(&path, Duration::ZERO, CACHE).unwrap();
        assert!(recovered.sessions[0].2.is_empty());
    }

    #[tokio::test]
    async fn many_changes_share_few_commits() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) =
            Store::open(&dir.path().join("s.redb"), Duration::from_millis(2), CACHE).unwrap();
        let mut last = 0;
        for seq in 0..2000u64 {
            last = queue(&store, &["c"], seq, message("t", b"p")).1;
        }
        wait_durable(&store, last).await;
        let commits = store.commits.load(Ordering::Relaxed);
        assert!(commits < 200, "{commits} commits for 2000 messages");
    }

    #[test]
    fn unreadable_store_says_how_to_move_it_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        std::fs::write(
            &path,
            b"this is not a redb file, it is garbage from a bad disk",
        )
        .unwrap();
        let error = Store::open(&path, Duration::ZERO, CACHE)
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("mv "), "{error}");
        assert!(path.exists(), "the broken store must be left in place");
    }

    #[test]
    fn messages_round_trip_their_binary_form() {
        let original = message("a/b/c", b"\x00\x01binary");
        assert_eq!(StoredMessage::decode(&original.encode()), Some(original));
        assert_eq!(StoredMessage::decode(&[1, 0]), None);
        let refs = [(1, 7), (2, 9), (u64::MAX, 1)];
        assert_eq!(decode_refs(&encode_refs(&refs)).unwrap(), refs);
        assert_eq!(decode_refs(&[0; 15]), None);
    }
}

#[cfg(test)]
mod churn {
    use super::*;

    /// 10,000 persistent sessions that each queue a message and then expire, three times:
    /// the file must not keep growing, because redb reuses the pages freed by deletions.
    #[tokio::test(flavor = "multi_thread")]
    async fn disk_size_stays_bounded_under_session_churn() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        let (store, _) = Store::open(&path, Duration::ZERO, 1 << 20).unwrap();
        let mut sizes = Vec::new();
        for round in 0..3 {
            let mut last = 0;
            for n in 0..10_000 {
                let client_id: Arc<str> = format!("churn-{round}-{n}").into();
                let record = SessionRecord {
                    subscriptions: vec![("sensors/#".into(), 1)],
                    expires_at_ms: Some(1),
                    mqtt5: false,
                    expiry_ms: None,
                };
                store.submit(Op::PutSession(client_id.clone(), record));
                store.submit(Op::PutMessage {
                    message: StoredMessage {
                        topic: "sensors/a".into(),
                        payload: Bytes::from(vec![7u8; 200]),
                        qos: QoS::AtLeastOnce,
                        meta: None,
                    },
                    queued: (client_id.clone(), 1),
                    held: false,
                });
                last = store.submit(Op::DeleteSession(client_id));
            }
            store
                .committed()
                .wait_for(|done| *done >= last)
                .await
                .unwrap();
            sizes.push(std::fs::metadata(&path).unwrap().len());
        }
        store.close();
        assert!(
            sizes[2] <= sizes[0] + sizes[0] / 2 + (1 << 20),
            "store grows with churn: {sizes:?} bytes after each round"
        );
    }
}
