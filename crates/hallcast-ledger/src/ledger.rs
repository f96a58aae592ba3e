//! The ledger handle: durable appends with group commit, the non-blocking sink for the
//! media path, crash recovery, registry, tokens and reports.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hallcast_core::accounting::{
    ConferenceId, EndReason, Event, EventId, EventKind, Folder, OrgId, Organisation, PointId,
    PointInfo, Report, ReportConfig, RollCall, SessionChange, SessionId, StoreOutage, build_report,
    roll_calls,
};
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

use crate::codec::{self, Row};
use crate::error::{LedgerError, Result};
use crate::registry::{self, Conference, ImportSummary};
use crate::store::{RunInfo, Store, StoreConfig};
use crate::token::{JoinClaims, Secret, TokenError, TokenSigner, TokenVerifier, join_link};
use crate::transfer::{Imported, OriginEvent, StoredEvent};

/// How to open the ledger.
#[derive(Debug, Clone)]
pub struct LedgerConfig {
    pub store: StoreConfig,
    /// This relay node's name, unique among the processes sharing one store ("central").
    pub node: String,
    /// Capacity of the queue in front of the writer (see [`EventSink::emit`]).
    pub queue_capacity: usize,
    /// Most events committed in one transaction.
    pub max_batch: usize,
    /// How often the node records that it is alive when idle (bounds how much presence a
    /// crash can add: sessions lost in a crash are closed at the last heartbeat).
    pub heartbeat: Duration,
    /// The join-token signing secret.
    pub secret: Secret,
    /// How long [`Ledger::append`] waits for its event to be stored while the store is
    /// unreachable before answering [`LedgerError::Pending`] (the event stays queued).
    pub append_wait: Duration,
    /// How long [`Ledger::close`] keeps retrying an unreachable store before it gives up on
    /// the events still queued (and says how many).
    pub close_wait: Duration,
    /// Longest pause between two attempts to reach an unreachable store.
    pub max_retry_delay: Duration,
}

impl LedgerConfig {
    /// Defaults: node "central", queue 65,536 events, batches of at most 8,192, heartbeat
    /// 2 s; during a store outage `append` waits 5 s, `close` 10 s, retries at most every 5 s.
    pub fn new(store: StoreConfig, secret: Secret) -> Self {
        Self {
            store,
            node: "central".into(),
            queue_capacity: 65_536,
            max_batch: 8_192,
            heartbeat: Duration::from_secs(2),
            secret,
            append_wait: Duration::from_secs(5),
            close_wait: Duration::from_secs(10),
            max_retry_delay: Duration::from_secs(5),
        }
    }
}

/// Outcome of a durable append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// The event is now stored.
    Stored,
    /// An event with this id was already stored; nothing changed.
    Duplicate,
}

/// Why [`EventSink::emit`] did not queue an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EmitError {
    #[error("ledger queue full: event dropped")]
    Full,
    #[error("ledger closed: event dropped")]
    Closed,
}

/// Counters of the ledger (cumulative since open).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LedgerStats {
    /// Events queued by `emit` or `append`.
    pub n_queued: u64,
    /// Events `emit` dropped because the queue was full or the ledger closed.
    pub n_dropped: u64,
    /// Events newly stored.
    pub n_stored: u64,
    /// Events whose id was already stored.
    pub n_duplicates: u64,
    /// Events that could not be stored (logged at `error`): a batch the store refused
    /// (not an outage) after retries, or events still queued when [`Ledger::close`] gave up
    /// on an unreachable store.
    pub n_failed: u64,
    /// Committed transactions.
    pub n_batches: u64,
    /// Largest committed batch.
    pub max_batch: u64,
    /// Events imported from other relays and newly stored ([`Ledger::import`]).
    pub n_imported: u64,
    /// Imported events whose id was already stored.
    pub n_import_duplicates: u64,
    /// Store outages that ended (each recorded in the store, see [`StoreOutage`]).
    pub n_outages: u64,
    /// Registry CSV files refused ([`Ledger::import_csv`]; nothing of them is stored)…
    pub n_registry_files_refused: u64,
    /// … and their bad lines.
    pub n_registry_lines_refused: u64,
    /// Events that waited out an outage in the queue and were stored when it ended.
    pub n_stored_late: u64,
    /// Events queued and not yet stored (or failed).
    pub n_pending: u64,
    /// Start of the current store outage (Unix ms): the store has not answered since.
    pub outage_since_ms: Option<i64>,
}

#[derive(Default)]
struct Stats {
    n_queued: AtomicU64,
    n_dropped: AtomicU64,
    n_stored: AtomicU64,
    n_duplicates: AtomicU64,
    n_failed: AtomicU64,
    n_batches: AtomicU64,
    max_batch: AtomicU64,
    n_imported: AtomicU64,
    n_import_duplicates: AtomicU64,
    n_outages: AtomicU64,
    n_stored_late: AtomicU64,
    n_registry_files_refused: AtomicU64,
    n_registry_lines_refused: AtomicU64,
    /// Unix ms of the current outage's first failure; 0 while the store answers.
    outage_since_ms: AtomicI64,
    /// Set by `close`: the writer gives up on an unreachable store at this instant.
    close_by: Mutex<Option<Instant>>,
}

impl Stats {
    /// Queued events not yet stored or failed.
    fn n_pending(&self) -> u64 {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        g(&self.n_queued)
            .saturating_sub(g(&self.n_stored) + g(&self.n_duplicates) + g(&self.n_failed))
    }

    fn outage_since(&self) -> Option<i64> {
        match self.outage_since_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(ms),
        }
    }

    fn close_by(&self) -> Option<Instant> {
        *self.close_by.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn snapshot(&self) -> LedgerStats {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        LedgerStats {
            n_queued: g(&self.n_queued),
            n_dropped: g(&self.n_dropped),
            n_stored: g(&self.n_stored),
            n_duplicates: g(&self.n_duplicates),
            n_failed: g(&self.n_failed),
            n_batches: g(&self.n_batches),
            max_batch: g(&self.max_batch),
            n_imported: g(&self.n_imported),
            n_import_duplicates: g(&self.n_import_duplicates),
            n_outages: g(&self.n_outages),
            n_registry_files_refused: g(&self.n_registry_files_refused),
            n_registry_lines_refused: g(&self.n_registry_lines_refused),
            n_stored_late: g(&self.n_stored_late),
            n_pending: self.n_pending(),
            outage_since_ms: self.outage_since(),
        }
    }
}

type Ack = oneshot::Sender<Result<Appended>>;

enum Msg {
    Append(Event, Option<Ack>),
    Flush(oneshot::Sender<()>),
    Shutdown,
}

/// What crash recovery did when the ledger opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Recovery {
    /// The previous run of this node, if any.
    pub previous_run: Option<RunInfo>,
    /// Sessions left open by the previous run and now ended with `RelayLost`.
    pub n_sessions_closed: u32,
    /// Broadcasts left live by the previous run and now ended.
    pub n_broadcasts_closed: u32,
}

/// A join link for one point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinLink {
    pub point: PointInfo,
    pub org_name: String,
    pub token: String,
    pub url: String,
    /// Unix seconds.
    pub expires: i64,
}

/// The relay-facing, non-blocking handle: cheap to clone, never waits.
#[derive(Clone)]
pub struct EventSink {
    tx: SyncSender<Msg>,
    stats: Arc<Stats>,
}

impl EventSink {
    /// Queues an event for durable storage without ever blocking. When the bounded queue
    /// is full (the store has fallen behind by `queue_capacity` events) or the ledger is
    /// closed, the event is dropped, counted in [`LedgerStats::n_dropped`] and an error is
    /// returned; the media path must carry on regardless.
    pub fn emit(&self, ev: Event) -> Result<(), EmitError> {
        match self.tx.try_send(Msg::Append(ev, None)) {
            Ok(()) => {
                self.stats.n_queued.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(TrySendError::Full(_)) => {
                self.stats.n_dropped.fetch_add(1, Ordering::Relaxed);
                Err(EmitError::Full)
            }
            Err(TrySendError::Disconnected(_)) => {
                self.stats.n_dropped.fetch_add(1, Ordering::Relaxed);
                Err(EmitError::Closed)
            }
        }
    }

    /// Events dropped so far (queue full or closed).
    pub fn n_dropped(&self) -> u64 {
        self.stats.n_dropped.load(Ordering::Relaxed)
    }
}

struct Inner {
    node: String,
    run: i64,
    store_config: StoreConfig,
    append_wait: Duration,
    close_wait: Duration,
    store_description: String,
    sink: EventSink,
    db: Arc<Mutex<Box<dyn Store>>>,
    signer: TokenSigner,
    generations: RwLock<HashMap<(ConferenceId, PointId), u32>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    recovery: Recovery,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The last handle may go away on an async runtime thread, and closing a blocking
        // PostgreSQL connection must not run there: drop the reader connection on its own
        // short-lived thread.
        let db = std::mem::replace(
            &mut self.db,
            Arc::new(Mutex::new(Box::new(crate::store::Closed))),
        );
        let _ = std::thread::Builder::new()
            .name("hallcast-ledger-close".into())
            .spawn(move || drop(db));
    }
}

/// The attendance ledger. Cheap to clone; all clones share one writer.
#[derive(Clone)]
pub struct Ledger {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("store", &self.inner.store_description)
            .field("node", &self.inner.node)
            .field("run", &self.inner.run)
            .finish()
    }
}

/// Wall-clock time in Unix milliseconds (the I/O layer's clock).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A fresh event id: the current Unix millisecond in the top 48 bits, 80 random bits below
/// (the layout of UUIDv7). Uniqueness comes from the random bits; the time prefix keeps
/// the store's unique index append-mostly, which makes a batch touch a few index pages
/// instead of one page per event.
pub fn new_event_id() -> EventId {
    let ms = u128::from(u64::try_from(now_ms()).unwrap_or(0) & 0xffff_ffff_ffff);
    let random = rand::random::<u128>() & ((1u128 << 80) - 1);
    EventId((ms << 80) | random)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| LedgerError::Io(std::io::Error::other(format!("ledger task failed: {e}"))))?
}

impl Ledger {
    /// Opens the store (creating the schema), recovers what a crashed previous run of this
    /// node left open, and starts the writer thread.
    pub async fn open(cfg: LedgerConfig) -> Result<Self> {
        blocking(move || Self::open_blocking(cfg)).await
    }

    fn open_blocking(cfg: LedgerConfig) -> Result<Self> {
        if cfg.node.is_empty() || cfg.queue_capacity == 0 || cfg.max_batch == 0 {
            return Err(LedgerError::Invalid(
                "ledger node name, queue capacity and batch size must be non-empty".into(),
            ));
        }
        let mut writer_store = cfg.store.connect()?;
        let mut reader_store = cfg.store.connect()?;
        let now = now_ms();
        let previous = writer_store.last_run(&cfg.node)?;
        let run = previous.map_or(1, |p| p.run + 1);
        writer_store.heartbeat(
            &cfg.node,
            RunInfo {
                run,
                run_started_ms: now,
                last_alive_ms: now,
            },
        )?;
        let mut recovery = Recovery {
            previous_run: previous,
            ..Recovery::default()
        };
        if let Some(prev) = previous {
            let events = writer_store.events_of_run(&cfg.node, prev.run)?;
            let (closing, n_sessions, n_broadcasts) = recovery_events(&cfg.node, prev, &events);
            if !closing.is_empty() {
                let rows: Vec<Row> = closing.iter().map(codec::to_row).collect();
                writer_store.append(&cfg.node, run, now, &rows)?;
                tracing::warn!(
                    node = %cfg.node,
                    previous_run = prev.run,
                    last_alive_ms = prev.last_alive_ms,
                    n_sessions,
                    n_broadcasts,
                    "previous run ended without closing its sessions; closed them at its last heartbeat"
                );
            }
            recovery.n_sessions_closed = n_sessions;
            recovery.n_broadcasts_closed = n_broadcasts;
        }
        let generations = reader_store
            .token_generations()?
            .into_iter()
            .map(|(c, p, g)| ((c, p), g))
            .collect();

        let stats = Arc::new(Stats::default());
        let (tx, rx) = mpsc::sync_channel(cfg.queue_capacity);
        let w = Writer {
            store: writer_store,
            config: cfg.store.clone(),
            node: cfg.node.clone(),
            run,
            run_started_ms: now,
            heartbeat: cfg.heartbeat,
            max_batch: cfg.max_batch,
            max_retry_delay: cfg.max_retry_delay,
            stats: stats.clone(),
            outage: None,
            unrecorded: Vec::new(),
        };
        let handle = std::thread::Builder::new()
            .name("hallcast-ledger-writer".into())
            .spawn(move || w.run(rx))?;
        Ok(Self {
            inner: Arc::new(Inner {
                node: cfg.node,
                run,
                store_description: cfg.store.describe(),
                store_config: cfg.store,
                append_wait: cfg.append_wait,
                close_wait: cfg.close_wait,
                sink: EventSink { tx, stats },
                db: Arc::new(Mutex::new(reader_store)),
                signer: TokenSigner::new(cfg.secret),
                generations: RwLock::new(generations),
                writer: Mutex::new(Some(handle)),
                recovery,
            }),
        })
    }

    /// The non-blocking handle for the media path.
    pub fn sink(&self) -> EventSink {
        self.inner.sink.clone()
    }

    /// What crash recovery did at open.
    pub fn recovery(&self) -> Recovery {
        self.inner.recovery
    }

    /// This node's run number (1 on first open, +1 per open).
    pub fn run(&self) -> i64 {
        self.inner.run
    }

    /// Counters.
    pub fn stats(&self) -> LedgerStats {
        self.inner.sink.stats.snapshot()
    }

    /// Stores an event and resolves once its batch is committed (durable). Waits for room
    /// in the queue instead of dropping.
    ///
    /// While the store is unreachable (an outage) it waits at most
    /// [`LedgerConfig::append_wait`], then answers [`LedgerError::Pending`]: the event stays
    /// queued and is stored when the store is back, so a caller that retries with the same
    /// event id stores it once. When the queue is also full it answers
    /// [`LedgerError::NotStored`] at once (the event was not queued).
    pub async fn append(&self, ev: Event) -> Result<Appended> {
        let (ack, mut done) = oneshot::channel();
        let msg = Msg::Append(ev, Some(ack));
        let stats = &self.inner.sink.stats;
        match self.inner.sink.tx.try_send(msg) {
            Ok(()) => {}
            Err(TrySendError::Disconnected(_)) => return Err(LedgerError::Closed),
            Err(TrySendError::Full(_)) if stats.outage_since().is_some() => {
                return Err(LedgerError::NotStored(
                    "the ledger's store is unreachable and its queue is full".into(),
                ));
            }
            Err(TrySendError::Full(msg)) => {
                let tx = self.inner.sink.tx.clone();
                blocking(move || tx.send(msg).map_err(|_| LedgerError::Closed)).await?;
            }
        }
        stats.n_queued.fetch_add(1, Ordering::Relaxed);
        loop {
            match tokio::time::timeout(self.inner.append_wait, &mut done).await {
                Ok(answer) => return answer.map_err(|_| LedgerError::Closed)?,
                // Slow but reachable (a long backlog): keep waiting.
                Err(_) => {
                    if let Some(since_ms) = stats.outage_since() {
                        return Err(LedgerError::Pending { since_ms });
                    }
                }
            }
        }
    }

    /// Resolves once every event queued before this call is committed (or failed). During
    /// a store outage that is when the store is back: callers that must not wait (health
    /// checks) look at [`LedgerStats::outage_since_ms`] first.
    pub async fn flush(&self) -> Result<()> {
        let (ack, done) = oneshot::channel();
        let tx = self.inner.sink.tx.clone();
        blocking(move || tx.send(Msg::Flush(ack)).map_err(|_| LedgerError::Closed)).await?;
        done.await.map_err(|_| LedgerError::Closed)
    }

    /// Commits what is queued, records a last heartbeat and stops the writer. Later appends
    /// fail with [`LedgerError::Closed`]; reads keep working.
    ///
    /// Bounded: when the store is unreachable the writer keeps trying for
    /// [`LedgerConfig::close_wait`], then gives up on the events still queued, counts them in
    /// [`LedgerStats::n_failed`], logs them, and this answers [`LedgerError::NotStored`]
    /// saying how many.
    pub async fn close(&self) -> Result<()> {
        let tx = self.inner.sink.tx.clone();
        let stats = self.inner.sink.stats.clone();
        let failed_before = stats.n_failed.load(Ordering::Relaxed);
        *stats.close_by.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(Instant::now() + self.inner.close_wait);
        let handle = self
            .inner
            .writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        blocking(move || {
            // An error means the writer is already gone: nothing left to commit. A full
            // queue frees up once the writer stores or gives up (bounded by `close_wait`).
            let _ = tx.send(Msg::Shutdown);
            if let Some(h) = handle {
                h.join().map_err(|_| {
                    LedgerError::Io(std::io::Error::other("ledger writer panicked"))
                })?;
            }
            Ok(())
        })
        .await?;
        let n_lost = stats.n_failed.load(Ordering::Relaxed) - failed_before;
        if n_lost > 0 {
            return Err(LedgerError::NotStored(format!(
                "{n_lost} event(s) were not stored: the store was unreachable when the ledger closed"
            )));
        }
        Ok(())
    }

    async fn with_store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Store) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let db = self.inner.db.clone();
        let config = self.inner.store_config.clone();
        blocking(move || {
            let mut guard = db.lock().unwrap_or_else(|p| p.into_inner());
            // A connection the server dropped (PostgreSQL restarted, or unreachable for a
            // while) is replaced; until that succeeds, reads fail with the connect error.
            if guard.is_broken() || !guard.is_alive() {
                *guard = config.connect()?;
            }
            f(guard.as_mut())
        })
        .await
    }

    // ----- events -----

    /// All stored events of a conference (storage order).
    pub async fn events(&self, conference: &ConferenceId) -> Result<Vec<Event>> {
        let c = conference.clone();
        self.with_store(move |s| s.events(&c)).await
    }

    /// Up to `limit` stored events after log position `seq` (0: from the start), in log
    /// order, each with the node and run that first stored it: what an outbox sends up.
    ///
    /// On SQLite the log position is the commit order (one writer at a time), so a cursor
    /// over `seq` never skips an event committed later. On PostgreSQL with several writers
    /// a lower `seq` may commit after a higher one; an outbox reading a PostgreSQL ledger
    /// could skip it. Edge relays use SQLite.
    pub async fn events_after(&self, seq: i64, limit: usize) -> Result<Vec<StoredEvent>> {
        self.with_store(move |s| s.events_after(seq, limit)).await
    }

    /// Appends events stored first by other relays (a child's outbox delivery), keeping
    /// each one's origin node and run, in one transaction: durable when this returns.
    /// Idempotent by event id: an event already stored is counted in `n_duplicates`.
    ///
    /// # Origin, recovery and reports (the decision)
    /// Imported rows keep their origin `(node, run)` and this ledger never writes the
    /// `nodes` table for them. Crash recovery reads only `(own node, own previous run)`
    /// (`events_of_run`), so it never closes another relay's sessions: an edge's session
    /// that is open here stays open until the edge's own `Ended` event arrives — the edge is
    /// the one authority on its sessions, including its own `RelayLost` after it crashes,
    /// which it writes in its ledger and forwards like any other event. While an edge is
    /// cut off, its open sessions count as present here (up to the report's horizon, and
    /// only while the broadcast is live); when the link returns the delivered events
    /// correct the report, since the fold depends only on the set of events. The price:
    /// an edge that never comes back leaves its sessions open here until the broadcast
    /// ends. Closing them here as lost would be wrong the other way round (a 10-minute
    /// link cut would become an absence that the edge's events could not undo, because
    /// an `Ended` event cannot be retracted).
    ///
    /// So an event claiming this ledger's own node name is refused (`Conflict`): it would
    /// make recovery treat another process's sessions as this one's. Node names must be
    /// unique in the tree.
    pub async fn import(&self, events: Vec<OriginEvent>) -> Result<Imported> {
        if events.is_empty() {
            return Ok(Imported::default());
        }
        if let Some(e) = events.iter().find(|e| e.node == self.inner.node) {
            return Err(LedgerError::Conflict(format!(
                "event {} claims this relay's own node name {:?}; relay node names must be unique",
                e.event.event_id, e.node
            )));
        }
        let stats = self.inner.sink.stats.clone();
        self.with_store(move |s| {
            let rows: Vec<(Row, &str, i64)> = events
                .iter()
                .map(|e| (codec::to_row(&e.event), e.node.as_str(), e.run))
                .collect();
            let fresh = s.import(now_ms(), &rows)?;
            let n_accepted = fresh.iter().filter(|f| **f).count() as u64;
            let done = Imported {
                n_accepted,
                n_duplicates: fresh.len() as u64 - n_accepted,
            };
            stats
                .n_imported
                .fetch_add(done.n_accepted, Ordering::Relaxed);
            stats
                .n_import_duplicates
                .fetch_add(done.n_duplicates, Ordering::Relaxed);
            Ok(done)
        })
        .await
    }

    /// This ledger's relay node name.
    pub fn node(&self) -> &str {
        &self.inner.node
    }

    /// How many stored rows carry this event id (0 or 1).
    pub async fn count_event_id(&self, id: EventId) -> Result<u64> {
        self.with_store(move |s| s.count_event_id(id)).await
    }

    /// Total stored events.
    pub async fn n_events(&self) -> Result<u64> {
        self.with_store(|s| s.n_events()).await
    }

    /// Recorded store outages (of every node) overlapping `[from_ms, to_ms]`, by start.
    pub async fn store_outages(&self, from_ms: i64, to_ms: i64) -> Result<Vec<StoreOutage>> {
        self.with_store(move |s| s.store_outages(from_ms, to_ms))
            .await
    }

    /// The store's schema version (see [`crate::store`], "Schema versions").
    pub async fn schema_version(&self) -> Result<i64> {
        self.with_store(|s| s.schema_version()).await
    }

    // ----- reports -----

    /// Builds the attendance report of a conference from the stored events, at the horizon
    /// `as_of_ms`. Each point's row names the relay nodes that stored its session events
    /// (`PointRow::relays`).
    pub async fn report(
        &self,
        conference: &ConferenceId,
        as_of_ms: i64,
        cfg: ReportConfig,
    ) -> Result<Report> {
        let c = conference.clone();
        self.with_store(move |s| {
            let events = s.events(&c)?;
            let orgs = s.organisations()?;
            let points = s.points()?;
            let served = s.point_nodes(&c)?;
            let mut folder = Folder::with_capacity(c.clone(), events.len());
            folder.extend(&events);
            let presence = folder.finish(as_of_ms);
            let calls = roll_calls(&c, &events, &orgs, &points, as_of_ms);
            let outages = match (presence.live.first(), presence.live.last()) {
                (Some(first), Some(last)) => s.store_outages(first.start_ms, last.end_ms)?,
                _ => Vec::new(),
            };
            Ok(build_report(&presence, &orgs, &points, &cfg)
                .with_relays(served)
                .with_roll_calls(calls)
                .with_store_outages(outages))
        })
        .await
    }

    /// The roll calls of a conference at the horizon `as_of_ms`, oldest first, each with
    /// every point's outcome (answered / no answer / not connected).
    pub async fn roll_calls(
        &self,
        conference: &ConferenceId,
        as_of_ms: i64,
    ) -> Result<Vec<RollCall>> {
        let c = conference.clone();
        self.with_store(move |s| {
            let events = s.events(&c)?;
            Ok(roll_calls(
                &c,
                &events,
                &s.organisations()?,
                &s.points()?,
                as_of_ms,
            ))
        })
        .await
    }

    /// The relay nodes that stored session events of each point of a conference (a point
    /// served by several relays over time appears once per node), sorted by point and node.
    pub async fn point_nodes(&self, conference: &ConferenceId) -> Result<Vec<(PointId, String)>> {
        let c = conference.clone();
        self.with_store(move |s| s.point_nodes(&c)).await
    }

    // ----- registry -----

    pub async fn organisations(&self) -> Result<Vec<Organisation>> {
        self.with_store(|s| s.organisations()).await
    }

    pub async fn points(&self) -> Result<Vec<PointInfo>> {
        self.with_store(|s| s.points()).await
    }

    pub async fn upsert_organisation(&self, org: Organisation) -> Result<()> {
        self.with_store(move |s| s.upsert_organisation(&org)).await
    }

    /// Fails with `Conflict` when the point's organisation is not registered.
    pub async fn upsert_point(&self, point: PointInfo) -> Result<()> {
        self.with_store(move |s| s.upsert_point(&point)).await
    }

    /// `Ok(false)` when not found; `Conflict` while it still has points.
    pub async fn remove_organisation(&self, id: &OrgId) -> Result<bool> {
        let id = id.clone();
        self.with_store(move |s| s.remove_organisation(&id)).await
    }

    /// `Ok(false)` when not found. The point's events stay in the log.
    pub async fn remove_point(&self, id: &PointId) -> Result<bool> {
        let id = id.clone();
        self.with_store(move |s| s.remove_point(&id)).await
    }

    /// Imports a registry CSV (see [`crate::registry`]); all or nothing.
    pub async fn import_csv(&self, bytes: Vec<u8>) -> Result<ImportSummary> {
        let file = match registry::parse_csv_counted(&bytes) {
            Ok(file) => file,
            Err(refused) => {
                let stats = &self.inner.sink.stats;
                stats
                    .n_registry_files_refused
                    .fetch_add(1, Ordering::Relaxed);
                stats
                    .n_registry_lines_refused
                    .fetch_add(refused.n_lines, Ordering::Relaxed);
                return Err(refused.error);
            }
        };
        self.with_store(move |s| {
            s.import_registry(&file.organisations, &file.points)?;
            Ok(ImportSummary {
                n_organisations: file.organisations.len(),
                n_points: file.points.len(),
            })
        })
        .await
    }

    /// Exports the registry as CSV.
    pub async fn export_csv(&self) -> Result<Vec<u8>> {
        self.with_store(|s| registry::to_csv(&s.organisations()?, &s.points()?))
            .await
    }

    pub async fn conferences(&self) -> Result<Vec<Conference>> {
        self.with_store(|s| s.conferences()).await
    }

    /// One conference of the registry.
    pub async fn conference(&self, id: &ConferenceId) -> Result<Option<Conference>> {
        let id = id.clone();
        self.with_store(move |s| Ok(s.conferences()?.into_iter().find(|c| c.id == id)))
            .await
    }

    /// Creates a conference or replaces every field of an existing one but its creation time.
    pub async fn upsert_conference(&self, conference: Conference) -> Result<()> {
        self.with_store(move |s| s.upsert_conference(&conference))
            .await
    }

    // ----- join tokens -----

    fn generation(&self, conference: &ConferenceId, point: &PointId) -> u32 {
        let map = self
            .inner
            .generations
            .read()
            .unwrap_or_else(|p| p.into_inner());
        map.get(&(conference.clone(), point.clone()))
            .copied()
            .unwrap_or(0)
    }

    /// The Ed25519 public key of the join tokens this ledger issues (base64url of 32 bytes),
    /// for relays that verify links without the secret ([`TokenVerifier`]).
    pub fn join_public_key(&self) -> String {
        self.inner.signer.public_key()
    }

    /// Every (conference, point) whose links were revoked at least once, with its current
    /// generation, from the in-memory cache (no store access), sorted. With
    /// [`Ledger::join_public_key`] this is all a [`TokenVerifier`] needs.
    pub fn token_generations(&self) -> Vec<(ConferenceId, PointId, u32)> {
        let map = self
            .inner
            .generations
            .read()
            .unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<(ConferenceId, PointId, u32)> = map
            .iter()
            .filter(|(_, g)| **g != 0)
            .map(|((c, p), g)| (c.clone(), p.clone(), *g))
            .collect();
        out.sort();
        out
    }

    /// A verifier of this ledger's `v2` links with its current revocations: what an edge
    /// relay builds from its parent's sync.
    pub fn token_verifier(&self) -> TokenVerifier {
        self.inner
            .signer
            .verifier()
            .with_generations(self.token_generations())
    }

    /// Issues a join token (`v2`) valid until `expires` (Unix seconds).
    pub fn issue_token(&self, conference: &ConferenceId, point: &PointId, expires: i64) -> String {
        let g = self.generation(conference, point);
        self.inner.signer.issue(conference, point, g, expires)
    }

    /// Checks a join token (`v2`, or `v1` from before) now: signature, expiry and revocation. Never touches the store
    /// (revocations are cached in memory), so the WHEP path can call it directly.
    pub fn verify_token(&self, token: &str) -> Result<JoinClaims, TokenError> {
        self.verify_token_at(token, now_ms().div_euclid(1000))
    }

    /// [`Ledger::verify_token`] at `now` (Unix seconds).
    pub fn verify_token_at(&self, token: &str, now: i64) -> Result<JoinClaims, TokenError> {
        let claims = self.inner.signer.verify(token, now)?;
        if claims.generation != self.generation(&claims.conference, &claims.point) {
            return Err(TokenError::Revoked);
        }
        Ok(claims)
    }

    /// Revokes every join token issued so far for the pair; returns the new generation.
    pub async fn revoke_tokens(&self, conference: &ConferenceId, point: &PointId) -> Result<u32> {
        let (c, p) = (conference.clone(), point.clone());
        let g = self
            .with_store(move |s| s.bump_token_generation(&c, &p))
            .await?;
        self.inner
            .generations
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert((conference.clone(), point.clone()), g);
        Ok(g)
    }

    /// Join links of a conference for every registered point (or just `only`), by
    /// organisation then point.
    pub async fn join_links(
        &self,
        conference: &ConferenceId,
        base_url: &str,
        expires: i64,
        only: Option<&PointId>,
    ) -> Result<Vec<JoinLink>> {
        let orgs = self.organisations().await?;
        let names: BTreeMap<OrgId, String> = orgs.into_iter().map(|o| (o.id, o.name)).collect();
        let mut points = self.points().await?;
        if let Some(p) = only {
            points.retain(|x| &x.id == p);
            if points.is_empty() {
                return Err(LedgerError::NotFound(format!("point {p}")));
            }
        }
        points.sort_by(|a, b| (&a.org, &a.id).cmp(&(&b.org, &b.id)));
        Ok(points
            .into_iter()
            .map(|p| {
                let token = self.issue_token(conference, &p.id, expires);
                JoinLink {
                    url: join_link(base_url, conference, &token),
                    org_name: names.get(&p.org).cloned().unwrap_or_default(),
                    point: p,
                    token,
                    expires,
                }
            })
            .collect())
    }
}

/// Events that close what a crashed run left open: every session not ended, at the later
/// of the run's last heartbeat and the session's own last event; every live broadcast,
/// likewise. Ids are derived from (node, run, conference, point, session), so running the
/// recovery twice stores nothing twice.
fn recovery_events(node: &str, prev: RunInfo, events: &[Event]) -> (Vec<Event>, u32, u32) {
    #[derive(Default)]
    struct Open {
        last_at: i64,
        ended: bool,
    }
    let mut sessions: BTreeMap<(ConferenceId, PointId, SessionId), Open> = BTreeMap::new();
    /// The latest broadcast event of a conference (by fold order) and its latest time.
    struct Live {
        key: (i64, u8, u128),
        live: bool,
        last_at: i64,
    }
    let mut broadcasts: BTreeMap<ConferenceId, Live> = BTreeMap::new();
    for ev in events {
        match &ev.kind {
            EventKind::Session {
                point,
                session,
                change,
            } => {
                let o = sessions
                    .entry((ev.conference.clone(), point.clone(), *session))
                    .or_default();
                o.last_at = o.last_at.max(ev.at_ms);
                if matches!(change, SessionChange::Ended { .. }) {
                    o.ended = true;
                }
            }
            EventKind::BroadcastStarted | EventKind::BroadcastEnded => {
                let key = (ev.at_ms, ev.kind.same_instant_rank(), ev.event_id.0);
                let start = matches!(ev.kind, EventKind::BroadcastStarted);
                let e = broadcasts.entry(ev.conference.clone()).or_insert(Live {
                    key,
                    live: start,
                    last_at: ev.at_ms,
                });
                if key >= e.key {
                    e.key = key;
                    e.live = start;
                }
                e.last_at = e.last_at.max(ev.at_ms);
            }
            EventKind::Headcount { .. }
            | EventKind::RollCallStarted { .. }
            | EventKind::RollCallAnswered { .. } => {}
        }
    }
    let id = |parts: &[&str]| {
        let mut h = Sha256::new();
        h.update(b"hallcast-relay-lost\n");
        h.update(node.as_bytes());
        h.update(b"\n");
        h.update(prev.run.to_be_bytes());
        for p in parts {
            h.update(b"\n");
            h.update(p.as_bytes());
        }
        let d = h.finalize();
        let mut b = [0u8; 16];
        b.copy_from_slice(&d[..16]);
        EventId::from_bytes(b)
    };
    let mut out = Vec::new();
    let mut n_sessions = 0u32;
    for ((conference, point, session), o) in sessions {
        if o.ended {
            continue;
        }
        n_sessions += 1;
        out.push(Event {
            event_id: id(&[conference.as_str(), point.as_str(), &session.to_string()]),
            at_ms: prev.last_alive_ms.max(o.last_at),
            kind: EventKind::Session {
                point,
                session,
                change: SessionChange::Ended {
                    reason: EndReason::RelayLost,
                },
            },
            conference,
        });
    }
    let mut n_broadcasts = 0u32;
    for (conference, Live { live, last_at, .. }) in broadcasts {
        if !live {
            continue;
        }
        n_broadcasts += 1;
        out.push(Event {
            event_id: id(&[conference.as_str(), "broadcast"]),
            at_ms: prev.last_alive_ms.max(last_at),
            kind: EventKind::BroadcastEnded,
            conference,
        });
    }
    (out, n_sessions, n_broadcasts)
}

struct Writer {
    store: Box<dyn Store>,
    config: StoreConfig,
    node: String,
    run: i64,
    run_started_ms: i64,
    heartbeat: Duration,
    max_batch: usize,
    max_retry_delay: Duration,
    stats: Arc<Stats>,
    /// The outage under way: its first failure (Unix ms) and `n_dropped` then.
    outage: Option<(i64, u64)>,
    /// Outages that ended but could not be recorded yet (the store failed again).
    unrecorded: Vec<StoreOutage>,
}

/// Attempts at a batch the store refuses while it answers (not an outage) before the batch
/// is given up as failed.
const REFUSED_ATTEMPTS: usize = 5;
/// First pause after a failed write; doubled after each failure up to `max_retry_delay`.
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(50);

/// Why the writer stopped retrying a batch.
enum GaveUp {
    /// The store answers but refuses this batch (not an outage).
    Refused(LedgerError),
    /// The ledger is closing and its `close_wait` ran out while the store was unreachable.
    Closing(LedgerError),
}

impl Writer {
    fn run(mut self, rx: Receiver<Msg>) {
        let mut batch: Vec<Msg> = Vec::with_capacity(self.max_batch);
        let mut last_beat = Instant::now();
        loop {
            let wait = self.heartbeat.saturating_sub(last_beat.elapsed());
            match rx.recv_timeout(wait) {
                Ok(m) => batch.push(m),
                Err(RecvTimeoutError::Timeout) => {
                    self.beat();
                    last_beat = Instant::now();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
            while batch.len() < self.max_batch {
                match rx.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            let (shutdown, abandoned) = self.commit(&mut batch);
            last_beat = Instant::now();
            if abandoned {
                self.abandon_queue(&rx);
                return;
            }
            if shutdown {
                break;
            }
        }
        self.beat();
    }

    /// The ledger is closing and the store stayed unreachable: every event still queued is
    /// given up (counted as failed, its waiter answered), then the writer stops.
    fn abandon_queue(&mut self, rx: &Receiver<Msg>) {
        let mut n = 0u64;
        while let Ok(m) = rx.try_recv() {
            match m {
                Msg::Append(_, ack) => {
                    n += 1;
                    if let Some(ack) = ack {
                        let _ = ack.send(Err(LedgerError::NotStored(
                            "the store was unreachable when the ledger closed".into(),
                        )));
                    }
                }
                Msg::Flush(done) => {
                    let _ = done.send(());
                }
                Msg::Shutdown => {}
            }
        }
        self.stats.n_failed.fetch_add(n, Ordering::Relaxed);
        tracing::error!(
            n_events = self.stats.n_failed.load(Ordering::Relaxed),
            "ledger closed while its store was unreachable: events not stored (see n_failed)"
        );
    }

    fn beat(&mut self) {
        let info = RunInfo {
            run: self.run,
            run_started_ms: self.run_started_ms,
            last_alive_ms: now_ms(),
        };
        self.reconnect_if_broken();
        match self.store.heartbeat(&self.node, info) {
            Ok(()) => self.store_answered(),
            Err(e) if is_outage(&e) => self.store_failed(&e),
            Err(e) => tracing::warn!(error = %e, "ledger heartbeat failed"),
        }
    }

    fn reconnect_if_broken(&mut self) {
        if self.store.is_broken()
            && let Ok(s) = self.config.connect()
        {
            self.store = s;
        }
    }

    /// A write failed because the store cannot be reached: an outage starts (or goes on).
    fn store_failed(&mut self, e: &LedgerError) {
        if self.outage.is_none() {
            let since = now_ms();
            self.outage = Some((since, self.stats.n_dropped.load(Ordering::Relaxed)));
            self.stats.outage_since_ms.store(since, Ordering::Relaxed);
            tracing::error!(
                error = %e,
                n_pending = self.stats.n_pending(),
                "ledger store unreachable: attendance events wait in the queue until it is back"
            );
        }
    }

    /// A write succeeded: an outage under way ends and is recorded (with the events that
    /// waited for it and the events dropped meanwhile), as are earlier ones not yet recorded.
    /// Called before the batch just stored is counted, so its events count as late.
    fn store_answered(&mut self) {
        if let Some((from_ms, dropped_before)) = self.outage.take() {
            let to_ms = now_ms();
            let n_late = self.stats.n_pending();
            let n_dropped = self
                .stats
                .n_dropped
                .load(Ordering::Relaxed)
                .saturating_sub(dropped_before);
            self.stats.outage_since_ms.store(0, Ordering::Relaxed);
            self.stats.n_outages.fetch_add(1, Ordering::Relaxed);
            self.stats
                .n_stored_late
                .fetch_add(n_late, Ordering::Relaxed);
            tracing::warn!(
                from_ms,
                to_ms,
                n_stored_late = n_late,
                n_dropped,
                "ledger store reachable again: the events that waited are being stored"
            );
            self.unrecorded.push(StoreOutage {
                node: self.node.clone(),
                from_ms,
                to_ms,
                n_stored_late: n_late,
                n_dropped,
            });
        }
        while let Some(o) = self.unrecorded.first() {
            match self.store.record_outage(self.run, now_ms(), o) {
                Ok(()) => {
                    self.unrecorded.remove(0);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "recording a ledger store outage failed; retrying later");
                    break;
                }
            }
        }
    }

    /// Commits the batch's events in one transaction, then answers every waiter. Returns
    /// whether a shutdown was requested, and whether the writer gave up on an unreachable
    /// store while closing.
    fn commit(&mut self, batch: &mut Vec<Msg>) -> (bool, bool) {
        let rows: Vec<Row> = batch
            .iter()
            .filter_map(|m| match m {
                Msg::Append(ev, _) => Some(codec::to_row(ev)),
                _ => None,
            })
            .collect();
        let result = if rows.is_empty() {
            Ok(Vec::new())
        } else {
            self.store_batch(&rows)
        };
        let mut shutdown = false;
        let mut abandoned = false;
        match &result {
            Ok(fresh) => {
                let n_new = fresh.iter().filter(|f| **f).count() as u64;
                self.stats.n_stored.fetch_add(n_new, Ordering::Relaxed);
                self.stats
                    .n_duplicates
                    .fetch_add(fresh.len() as u64 - n_new, Ordering::Relaxed);
                if !rows.is_empty() {
                    self.stats.n_batches.fetch_add(1, Ordering::Relaxed);
                    self.stats
                        .max_batch
                        .fetch_max(rows.len() as u64, Ordering::Relaxed);
                }
            }
            Err(gave_up) => {
                self.stats
                    .n_failed
                    .fetch_add(rows.len() as u64, Ordering::Relaxed);
                let e = match gave_up {
                    GaveUp::Refused(e) => e,
                    GaveUp::Closing(e) => {
                        abandoned = true;
                        e
                    }
                };
                tracing::error!(error = %e, n_events = rows.len(), "ledger batch could not be stored");
            }
        }
        let mut i = 0usize;
        for m in batch.drain(..) {
            match m {
                Msg::Append(_, ack) => {
                    let answer = match &result {
                        Ok(fresh) => Ok(if fresh.get(i).copied().unwrap_or(false) {
                            Appended::Stored
                        } else {
                            Appended::Duplicate
                        }),
                        Err(GaveUp::Refused(e) | GaveUp::Closing(e)) => {
                            Err(LedgerError::NotStored(e.to_string()))
                        }
                    };
                    i += 1;
                    if let Some(ack) = ack {
                        // The caller may have stopped waiting; nothing to do then.
                        let _ = ack.send(answer);
                    }
                }
                Msg::Flush(done) => {
                    let _ = done.send(());
                }
                Msg::Shutdown => shutdown = true,
            }
        }
        (shutdown, abandoned)
    }

    /// Stores the rows, however long the store stays unreachable: retries with a doubling
    /// pause capped at `max_retry_delay`, reconnecting before each attempt. Gives up only
    /// on a store that answers but refuses the batch ([`REFUSED_ATTEMPTS`] times), or when
    /// the ledger is closing and its `close_wait` has run out.
    fn store_batch(&mut self, rows: &[Row]) -> Result<Vec<bool>, GaveUp> {
        let mut n_refused = 0usize;
        let mut n_failed = 0u64;
        let mut delay = FIRST_RETRY_DELAY;
        loop {
            self.reconnect_if_broken();
            let e = match self.store.append(&self.node, self.run, now_ms(), rows) {
                Ok(fresh) => {
                    self.store_answered();
                    return Ok(fresh);
                }
                Err(e) => e,
            };
            n_failed += 1;
            if is_outage(&e) {
                self.store_failed(&e);
                if n_failed.is_power_of_two() {
                    tracing::warn!(error = %e, attempt = n_failed, n_pending = self.stats.n_pending(),
                        "ledger store still unreachable; retrying");
                }
            } else {
                n_refused += 1;
                tracing::warn!(error = %e, attempt = n_refused, "ledger append refused; retrying");
                if n_refused >= REFUSED_ATTEMPTS {
                    return Err(GaveUp::Refused(e));
                }
            }
            // Sleep in short slices so that a close is noticed promptly.
            let until = Instant::now() + delay;
            loop {
                if let Some(by) = self.stats.close_by()
                    && Instant::now() >= by
                {
                    return Err(GaveUp::Closing(e));
                }
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                std::thread::sleep(left.min(Duration::from_millis(100)));
            }
            delay = (delay * 2).min(self.max_retry_delay);
            // Force a fresh connection after a failure: a half-dead one may not know yet.
            if let Ok(s) = self.config.connect() {
                self.store = s;
            }
        }
    }
}

/// Whether a store error means "cannot reach the store" (retried until it answers) rather
/// than "the store refuses this" (given up after a few attempts).
fn is_outage(e: &LedgerError) -> bool {
    match e {
        // No SQLSTATE: the connection failed or closed. Class 08: connection exception; 57:
        // operator intervention (shutdown, restart); 53: insufficient resources (disk full,
        // too many connections); 58: system error (I/O); 40: transaction rollback
        // (serialization, deadlock).
        LedgerError::Postgres(pe) => match pe.code() {
            None => true,
            Some(code) => {
                let c = code.code();
                ["08", "57", "53", "58", "40"]
                    .iter()
                    .any(|class| c.starts_with(class))
            }
        },
        // Busy, locked, full disk, I/O error, cannot open: the file is not usable right now.
        LedgerError::Sqlite(rusqlite::Error::SqliteFailure(f, _)) => matches!(
            f.code,
            rusqlite::ErrorCode::DatabaseBusy
                | rusqlite::ErrorCode::DatabaseLocked
                | rusqlite::ErrorCode::DiskFull
                | rusqlite::ErrorCode::SystemIoFailure
                | rusqlite::ErrorCode::CannotOpen
        ),
        LedgerError::Io(_) => true,
        _ => false,
    }
}
