//! The durable store: persistent sessions, their queued QoS 1 messages and the retained
//! messages, in one redb file (`<data_dir>/store.redb`).
//!
//! redb because it is an embedded, pure-Rust, crash-safe (copy-on-write, checksummed
//! commits) transactional store: a SIGKILL or power loss leaves the last committed
//! transaction, never a half-written file to repair (mosquitto#3159) and never a full
//! rewrite (mosquitto#172). Writes go through one writer thread that commits in groups —
//! every operation waiting when a commit starts rides in it, one fsync for all — and
//! publishes the sequence number it has made durable, so a publisher can hold its PUBACK
//! until its message is on disk.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mqtt::QoS;

use crate::message::MessageMeta;
use parking_lot::Mutex;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");
/// Queued messages in rows: each row holds the messages one commit group added to one
/// session, keyed by the first one's sequence number. One B-tree insert per session per
/// group instead of one per message is what keeps a durable broker close to an in-memory
/// one; a row is deleted once every message in it is acknowledged or dropped.
const MESSAGES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("message_rows");
const RETAINED: TableDefinition<&str, &[u8]> = TableDefinition::new("retained");

/// A group small enough to mean "traffic is light" waits this share of
/// `group_commit_max_delay` for company before committing.
const SMALL_GROUP: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the store {path} cannot be opened: {source}. Move it aside (mv {path} {path}.broken) to start with an empty one; nothing is deleted for you")]
    Unreadable { path: PathBuf, source: redb::Error },
    #[error("the store {path} has an unreadable record ({what}). Move it aside (mv {path} {path}.broken) to start with an empty one")]
    Corrupt { path: PathBuf, what: String },
}

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
    /// The session and all its queued messages.
    DeleteSession(Arc<str>),
    PutMessage(Arc<str>, u64, StoredMessage),
    DeleteMessage(Arc<str>, u64),
    PutRetained(StoredMessage),
    DeleteRetained(Arc<str>),
}

/// A persistent session read back: client id, record, queued messages by sequence number.
pub type RecoveredSession = (String, SessionRecord, Vec<(u64, StoredMessage)>);

/// What the store held at start-up.
#[derive(Debug, Default)]
pub struct Recovered {
    pub sessions: Vec<RecoveredSession>,
    pub retained: Vec<StoredMessage>,
}

pub struct Store {
    path: PathBuf,
    sender: Mutex<Option<mpsc::Sender<(u64, Op)>>>,
    next_seq: AtomicU64,
    committed: watch::Receiver<u64>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Commits made (tests check group commit with it).
    #[cfg_attr(not(test), allow(dead_code))]
    pub commits: Arc<AtomicU64>,
}

impl Store {
    /// Opens (or creates) the store and reads everything back.
    pub fn open(path: &Path, max_delay: Duration) -> Result<(Arc<Store>, Recovered), StoreError> {
        let unreadable = |source: redb::Error| StoreError::Unreadable {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|error| unreadable(redb::Error::Io(error)))?;
        }
        let db = Database::create(path).map_err(|error| unreadable(error.into()))?;
        let recovered = recover(&db, path)?;
        let (sender, receiver) = mpsc::channel();
        let (committed_tx, committed) = watch::channel(0);
        let commits = Arc::new(AtomicU64::new(0));
        let writer = {
            let commits = commits.clone();
            let path = path.to_path_buf();
            std::thread::Builder::new()
                .name("store-writer".into())
                .spawn(move || write_loop(db, receiver, committed_tx, max_delay, commits, path))
                .expect("spawn the store writer")
        };
        Ok((
            Arc::new(Store {
                path: path.to_path_buf(),
                sender: Mutex::new(Some(sender)),
                next_seq: AtomicU64::new(1),
                committed,
                writer: Mutex::new(Some(writer)),
                commits,
            }),
            recovered,
        ))
    }

    /// Queues a change; returns its sequence number, durable once [`Store::committed`]
    /// reaches it.
    pub fn submit(&self, op: Op) -> u64 {
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

    /// Commits what is queued and stops the writer.
    pub fn close(&self) {
        self.sender.lock().take();
        if let Some(writer) = self.writer.lock().take() {
            let _ = writer.join();
        }
    }
}

fn recover(db: &Database, path: &Path) -> Result<Recovered, StoreError> {
    let unreadable = |source: redb::Error| StoreError::Unreadable {
        path: path.to_path_buf(),
        source,
    };
    let corrupt = |what: String| StoreError::Corrupt {
        path: path.to_path_buf(),
        what,
    };
    // Create the tables on a fresh store so reads below find them.
    let txn = db.begin_write().map_err(|e| unreadable(e.into()))?;
    {
        txn.open_table(SESSIONS).map_err(|e| unreadable(e.into()))?;
        txn.open_table(MESSAGES).map_err(|e| unreadable(e.into()))?;
        txn.open_table(RETAINED).map_err(|e| unreadable(e.into()))?;
    }
    txn.commit().map_err(|e| unreadable(e.into()))?;

    let txn = db.begin_read().map_err(|e| unreadable(e.into()))?;
    let sessions = txn.open_table(SESSIONS).map_err(|e| unreadable(e.into()))?;
    let messages = txn.open_table(MESSAGES).map_err(|e| unreadable(e.into()))?;
    let retained_table = txn.open_table(RETAINED).map_err(|e| unreadable(e.into()))?;
    let mut recovered = Recovered::default();
    for entry in sessions.iter().map_err(|e| unreadable(e.into()))? {
        let (key, value) = entry.map_err(|e| unreadable(e.into()))?;
        let client_id = key.value().to_owned();
        let record: SessionRecord = serde_json::from_slice(value.value())
            .map_err(|error| corrupt(format!("session {client_id:?}: {error}")))?;
        let mut queued = Vec::new();
        for entry in messages
            .range((client_id.as_str(), 0)..=(client_id.as_str(), u64::MAX))
            .map_err(|e| unreadable(e.into()))?
        {
            let (key, value) = entry.map_err(|e| unreadable(e.into()))?;
            let first = key.value().1;
            let row = decode_row(value.value())
                .ok_or_else(|| corrupt(format!("message row {first} of session {client_id:?}")))?;
            queued.extend(row);
        }
        recovered.sessions.push((client_id, record, queued));
    }
    for entry in retained_table.iter().map_err(|e| unreadable(e.into()))? {
        let (key, value) = entry.map_err(|e| unreadable(e.into()))?;
        let message = StoredMessage::decode(value.value())
            .ok_or_else(|| corrupt(format!("retained message on {:?}", key.value())))?;
        recovered.retained.push(message);
    }
    Ok(recovered)
}

fn write_loop(
    db: Database,
    receiver: mpsc::Receiver<(u64, Op)>,
    committed: watch::Sender<u64>,
    max_delay: Duration,
    commits: Arc<AtomicU64>,
    path: PathBuf,
) {
    let mut rows = match RowIndex::load(&db) {
        Ok(rows) => rows,
        Err(error) => {
            tracing::error!(path = %path.display(), %error, "store writer cannot index message rows; nothing will be made durable");
            return;
        }
    };
    let mut group = Vec::new();
    // After a failed commit nothing later may be reported durable: the failed group's
    // changes are gone, and a later sequence number would cover them.
    let mut failed = false;
    while let Ok(first) = receiver.recv() {
        group.push(first);
        group.extend(receiver.try_iter());
        if group.len() < SMALL_GROUP && !max_delay.is_zero() {
            let deadline = Instant::now() + max_delay;
            while let Some(left) = deadline.checked_duration_since(Instant::now()) {
                match receiver.recv_timeout(left) {
                    Ok(op) => group.push(op),
                    Err(_) => break,
                }
            }
            group.extend(receiver.try_iter());
        }
        let last = group.last().map(|(seq, _)| *seq).unwrap_or_default();
        match rows.apply(&db, group.drain(..).map(|(_, op)| op)) {
            Ok(()) if !failed => {
                commits.fetch_add(1, Ordering::Relaxed);
                committed.send_replace(last);
            }
            Ok(()) => {
                commits.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => {
                // Not acknowledging is the safe failure: publishers keep waiting for their
                // PUBACK and clients will resend. The index may now disagree with the file;
                // rebuild it from the file.
                tracing::error!(path = %path.display(), %error, "store commit failed; no acknowledgement that needs the store will be sent again until the broker restarts");
                failed = true;
                if let Ok(reloaded) = RowIndex::load(&db) {
                    rows = reloaded;
                }
            }
        }
    }
}

/// Appends one message to a row: `(seq u64, length u32, message)…`.
fn append_to_row(row: &mut Vec<u8>, seq: u64, message: &StoredMessage) {
    row.extend_from_slice(&seq.to_be_bytes());
    let length_at = row.len();
    row.extend_from_slice(&[0; 4]);
    message.encode_into(row);
    let length = (row.len() - length_at - 4) as u32;
    row[length_at..length_at + 4].copy_from_slice(&length.to_be_bytes());
}

fn decode_row(mut bytes: &[u8]) -> Option<Vec<(u64, StoredMessage)>> {
    let mut messages = Vec::new();
    while !bytes.is_empty() {
        let seq = u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?);
        let len = u32::from_be_bytes(bytes.get(8..12)?.try_into().ok()?) as usize;
        let message = StoredMessage::decode(bytes.get(12..12 + len)?)?;
        messages.push((seq, message));
        bytes = &bytes[12 + len..];
    }
    Some(messages)
}

/// A stored row: its last sequence number and how many of its messages are still wanted.
#[derive(Debug, Clone, Copy)]
struct RowState {
    last: u64,
    live: u32,
}

/// A row being filled by the current group.
struct OpenRow {
    first: u64,
    last: u64,
    live: u32,
    bytes: Vec<u8>,
}

/// The writer's knowledge of which rows exist, so that deleting one message is a counter
/// decrement, and deleting a row happens only when its last message goes.
#[derive(Default)]
struct RowIndex {
    sessions: std::collections::HashMap<Arc<str>, std::collections::BTreeMap<u64, RowState>>,
}

impl RowIndex {
    fn load(db: &Database) -> Result<RowIndex, redb::Error> {
        let mut index = RowIndex::default();
        let txn = db.begin_read()?;
        let table = txn.open_table(MESSAGES)?;
        for entry in table.iter()? {
            let (key, value) = entry?;
            let (client_id, first) = key.value();
            let messages = decode_row(value.value()).unwrap_or_default();
            let last = messages.last().map_or(first, |(seq, _)| *seq);
            index.sessions.entry(client_id.into()).or_default().insert(
                first,
                RowState {
                    last,
                    live: messages.len() as u32,
                },
            );
        }
        Ok(index)
    }

    fn apply(&mut self, db: &Database, ops: impl Iterator<Item = Op>) -> Result<(), redb::Error> {
        let mut txn = db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        {
            let mut sessions = txn.open_table(SESSIONS)?;
            let mut messages = txn.open_table(MESSAGES)?;
            let mut retained = txn.open_table(RETAINED)?;
            let mut open: std::collections::HashMap<Arc<str>, OpenRow> =
                std::collections::HashMap::new();
            for op in ops {
                match op {
                    Op::PutSession(client_id, record) => {
                        let json = serde_json::to_vec(&record).expect("session records serialize");
                        sessions.insert(&*client_id, json.as_slice())?;
                    }
                    Op::DeleteSession(client_id) => {
                        open.remove(&client_id);
                        self.sessions.remove(&client_id);
                        sessions.remove(&*client_id)?;
                        messages
                            .retain_in((&*client_id, 0)..=(&*client_id, u64::MAX), |_, _| false)?;
                    }
                    Op::PutMessage(client_id, seq, message) => {
                        let row = open.entry(client_id).or_insert_with(|| OpenRow {
                            first: seq,
                            last: seq,
                            live: 0,
                            bytes: Vec::with_capacity(4096),
                        });
                        row.last = seq;
                        row.live += 1;
                        append_to_row(&mut row.bytes, seq, &message);
                    }
                    Op::DeleteMessage(client_id, seq) => {
                        if let Some(row) = open
                            .get_mut(&client_id)
                            .filter(|row| row.first <= seq && seq <= row.last)
                        {
                            row.live = row.live.saturating_sub(1);
                            continue;
                        }
                        let Some(rows) = self.sessions.get_mut(&client_id) else {
                            continue;
                        };
                        let Some((&first, state)) = rows.range_mut(..=seq).next_back() else {
                            continue;
                        };
                        if seq > state.last {
                            continue;
                        }
                        state.live = state.live.saturating_sub(1);
                        if state.live == 0 {
                            rows.remove(&first);
                            messages.remove((&*client_id, first))?;
                        }
                    }
                    Op::PutRetained(message) => {
                        retained.insert(&*message.topic, message.encode().as_slice())?;
                    }
                    Op::DeleteRetained(topic) => {
                        retained.remove(&*topic)?;
                    }
                }
            }
            for (client_id, row) in open {
                if row.live == 0 {
                    continue;
                }
                messages.insert((&*client_id, row.first), row.bytes.as_slice())?;
                self.sessions.entry(client_id).or_default().insert(
                    row.first,
                    RowState {
                        last: row.last,
                        live: row.live,
                    },
                );
            }
        }
        txn.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(topic: &str, payload: &'static [u8]) -> StoredMessage {
        StoredMessage {
            topic: topic.into(),
            payload: Bytes::from_static(payload),
            qos: QoS::AtLeastOnce,
            meta: None,
        }
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
        {
            let (store, recovered) = Store::open(&path, Duration::from_millis(1)).unwrap();
            assert!(recovered.sessions.is_empty());
            let record = SessionRecord {
                subscriptions: vec![("a/#".into(), 1)],
                expires_at_ms: None,
                mqtt5: false,
                expiry_ms: None,
            };
            store.submit(Op::PutSession("c1".into(), record));
            store.submit(Op::PutMessage("c1".into(), 1, message("a/1", b"one")));
            store.submit(Op::PutMessage("c1".into(), 2, message("a/2", b"two")));
            store.submit(Op::PutMessage("c1".into(), 3, message("a/3", b"three")));
            store.submit(Op::DeleteMessage("c1".into(), 2));
            store.submit(Op::PutSession(
                "gone".into(),
                SessionRecord {
                    subscriptions: vec![],
                    expires_at_ms: Some(1),
                    mqtt5: false,
                    expiry_ms: None,
                },
            ));
            store.submit(Op::PutMessage("gone".into(), 1, message("x", b"x")));
            store.submit(Op::DeleteSession("gone".into()));
            store.submit(Op::PutRetained(message("r/1", b"kept")));
            store.submit(Op::PutRetained(message("r/2", b"deleted")));
            let last = store.submit(Op::DeleteRetained("r/2".into()));
            wait_durable(&store, last).await;
            store.close();
        }
        let (_store, recovered) = Store::open(&path, Duration::ZERO).unwrap();
        assert_eq!(recovered.sessions.len(), 1);
        let (client_id, record, queued) = &recovered.sessions[0];
        assert_eq!(client_id, "c1");
        assert_eq!(record.subscriptions, vec![("a/#".to_owned(), 1)]);
        // Message 2 shared a row with live messages, so it may come back (a duplicate is
        // allowed, a loss is not); 1 and 3 must.
        let seqs: Vec<u64> = queued.iter().map(|(seq, _)| *seq).collect();
        assert!(seqs.starts_with(&[1]) && seqs.ends_with(&[3]), "{seqs:?}");
        assert_eq!(&queued.last().unwrap().1.payload[..], b"three");
        assert_eq!(recovered.retained, vec![message("r/1", b"kept")]);
    }

    #[tokio::test]
    async fn a_fully_acknowledged_row_is_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        {
            let (store, _) = Store::open(&path, Duration::from_millis(5)).unwrap();
            let record = SessionRecord {
                subscriptions: vec![],
                expires_at_ms: None,
                mqtt5: false,
                expiry_ms: None,
            };
            store.submit(Op::PutSession("c".into(), record));
            let mut last = 0;
            for seq in 1..=100 {
                last = store.submit(Op::PutMessage("c".into(), seq, message("t", b"p")));
            }
            wait_durable(&store, last).await;
            for seq in 1..=100 {
                last = store.submit(Op::DeleteMessage("c".into(), seq));
            }
            wait_durable(&store, last).await;
            store.close();
        }
        let (_store, recovered) = Store::open(&path, Duration::ZERO).unwrap();
        assert!(recovered.sessions[0].2.is_empty());
    }

    #[tokio::test]
    async fn many_changes_share_few_commits() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(&dir.path().join("s.redb"), Duration::from_millis(2)).unwrap();
        let mut last = 0;
        for seq in 0..2000u64 {
            last = store.submit(Op::PutMessage("c".into(), seq, message("t", b"p")));
        }
        wait_durable(&store, last).await;
        let commits = store.commits.load(Ordering::Relaxed);
        assert!(commits < 200, "{commits} commits for 2000 changes");
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
        let error = Store::open(&path, Duration::ZERO)
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
    }
}

#[cfg(test)]
mod churn {
    use super::*;

    /// 10,000 persistent sessions that each queue a message and then expire, twice: the
    /// file must not keep growing, because redb reuses the pages freed by deletions.
    #[tokio::test(flavor = "multi_thread")]
    async fn disk_size_stays_bounded_under_session_churn() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        let (store, _) = Store::open(&path, Duration::ZERO).unwrap();
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
                store.submit(Op::PutMessage(
                    client_id.clone(),
                    1,
                    StoredMessage {
                        topic: "sensors/a".into(),
                        payload: Bytes::from(vec![7u8; 200]),
                        qos: QoS::AtLeastOnce,
                        meta: None,
                    },
                ));
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
