//! Storage backends behind one blocking trait: SQLite (embedded default) and PostgreSQL.
//!
//! The trait is blocking on purpose: the event writer is a dedicated OS thread (group
//! commit), and every other call runs on tokio's blocking pool, so no backend ever blocks an
//! async task. Both backends keep the same tables:
//!
//! | table | what |
//! |---|---|
//! | `events` | the append-only log: `event_id` (16 bytes, unique), conference, point, session, `at_ms`, kind, value, the `node` and `run` that stored it, `stored_ms` |
//! | `organisations`, `points` | the registry |
//! | `conferences` | conferences known to the admin |
//! | `token_generations` | revocation: a join token is valid only with its pair's current generation |
//! | `nodes` | per relay node: current run and last heartbeat (crash recovery) |
//! | `store_outages` | per relay node: when it could not reach the store, how many events it stored late and dropped |
//! | `schema_version` | one row per migration applied: `version`, `applied_ms` |
//!
//! # Schema versions
//! Every connection migrates the schema when it opens: the migrations after the highest
//! `schema_version` row, in order, in one transaction (on PostgreSQL under an advisory lock,
//! on SQLite under `BEGIN IMMEDIATE`), each recording its row. Version 1 is the schema as it
//! was before versions existed (created with `IF NOT EXISTS`, so such a ledger is adopted
//! unchanged); version 2 adds `store_outages`. A store whose schema is newer than
//! [`SCHEMA_VERSION`] (written by a newer release) is refused with
//! [`LedgerError::SchemaTooNew`] instead of being written by code that does not know it.

use hallcast_core::accounting::{
    ConferenceId, Event, EventId, OrgId, Organisation, PointId, PointInfo, StoreOutage,
};

use crate::codec::Row;
use crate::error::{LedgerError, Result};
use crate::registry::Conference;
use crate::transfer::StoredEvent;

pub mod postgres;
pub mod sqlite;

/// The newest schema version this build knows (see the module docs, "Schema versions").
pub const SCHEMA_VERSION: i64 = 2;

/// Refuses a schema written by a newer release.
fn check_version(found: i64) -> Result<()> {
    if found > SCHEMA_VERSION {
        return Err(LedgerError::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(())
}

/// A relay node's current run and last sign of life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunInfo {
    pub run: i64,
    pub run_started_ms: i64,
    pub last_alive_ms: i64,
}

/// Where the ledger lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// A SQLite file (created if missing), in WAL mode with `synchronous=FULL`.
    Sqlite { path: std::path::PathBuf },
    /// A PostgreSQL database by URL (`postgres://user:pass@host:port/db`); `schema`, when
    /// given, is created if missing and used as the `search_path`.
    Postgres { url: String, schema: Option<String> },
}

impl StoreConfig {
    /// The embedded default: `<data_dir>/ledger.sqlite3`.
    pub fn sqlite_in(data_dir: &std::path::Path) -> Self {
        StoreConfig::Sqlite {
            path: data_dir.join("ledger.sqlite3"),
        }
    }

    /// Opens one connection (creating the schema when missing).
    pub fn connect(&self) -> Result<Box<dyn Store>> {
        Ok(match self {
            StoreConfig::Sqlite { path } => Box::new(sqlite::SqliteStore::open(path)?),
            StoreConfig::Postgres { url, schema } => {
                Box::new(postgres::PgStore::connect(url, schema.as_deref())?)
            }
        })
    }

    /// A description without credentials, for logs.
    pub fn describe(&self) -> String {
        match self {
            StoreConfig::Sqlite { path } => format!("sqlite:{}", path.display()),
            StoreConfig::Postgres { url, schema } => {
                let host = url.rsplit('@').next().unwrap_or("?");
                match schema {
                    Some(s) => format!("postgres:{host} (schema {s})"),
                    None => format!("postgres:{host}"),
                }
            }
        }
    }
}

/// One connection to a backend. Every method is blocking.
pub trait Store: Send {
    /// Whether the connection is known to be gone (a PostgreSQL server restarted or cut
    /// off): the caller should connect again before using it.
    fn is_broken(&self) -> bool {
        false
    }
    /// Whether the connection answers a round trip now (PostgreSQL: an empty query, at most
    /// 2 s). A connection the server cut while idle looks fine until it is used; callers
    /// that can reconnect (the ledger's reads) ask this first.
    fn is_alive(&mut self) -> bool {
        true
    }
    /// The highest migration applied ([`SCHEMA_VERSION`] once open).
    fn schema_version(&mut self) -> Result<i64>;
    /// Records a store outage this node saw during `run` (idempotent by node, run and
    /// start).
    fn record_outage(&mut self, run: i64, now_ms: i64, outage: &StoreOutage) -> Result<()>;
    /// Recorded store outages (of every node) that overlap `[from_ms, to_ms]`, by start.
    fn store_outages(&mut self, from_ms: i64, to_ms: i64) -> Result<Vec<StoreOutage>>;
    /// Appends rows in one transaction (durable when this returns `Ok`), stamping them with
    /// `node`/`run`, and records the node's heartbeat `now_ms` in the same transaction.
    /// Returns, per row, whether it was new (`false`: its event id was already stored).
    fn append(&mut self, node: &str, run: i64, now_ms: i64, rows: &[Row]) -> Result<Vec<bool>>;
    /// Records that `node` is alive at `now_ms` in run `run`.
    fn heartbeat(&mut self, node: &str, run: RunInfo) -> Result<()>;
    /// The node's last recorded run.
    fn last_run(&mut self, node: &str) -> Result<Option<RunInfo>>;
    /// All events of a conference, in storage order.
    fn events(&mut self, conference: &ConferenceId) -> Result<Vec<Event>>;
    /// All events stored by `node` during `run`, in storage order.
    fn events_of_run(&mut self, node: &str, run: i64) -> Result<Vec<Event>>;
    /// Events with `seq > after`, in `seq` order, at most `limit`, with their origin.
    fn events_after(&mut self, after: i64, limit: usize) -> Result<Vec<StoredEvent>>;
    /// Appends rows in one transaction, each stamped with its own origin `(node, run)`;
    /// never touches `nodes` (an imported node's run is not this store's to recover).
    /// Returns, per row, whether it was new.
    fn import(&mut self, now_ms: i64, rows: &[(Row, &str, i64)]) -> Result<Vec<bool>>;
    /// The distinct (point, node) pairs of a conference's session events: which relays
    /// served each point.
    fn point_nodes(&mut self, conference: &ConferenceId) -> Result<Vec<(PointId, String)>>;
    /// How many rows hold this event id (0 or 1; tests use it to prove "exactly once").
    fn count_event_id(&mut self, id: EventId) -> Result<u64>;
    /// Total stored events.
    fn n_events(&mut self) -> Result<u64>;

    fn organisations(&mut self) -> Result<Vec<Organisation>>;
    fn points(&mut self) -> Result<Vec<PointInfo>>;
    fn upsert_organisation(&mut self, org: &Organisation) -> Result<()>;
    /// Fails with `Conflict` when the point's organisation is not registered.
    fn upsert_point(&mut self, point: &PointInfo) -> Result<()>;
    /// Fails with `Conflict` while the organisation has points. `Ok(false)`: not found.
    fn remove_organisation(&mut self, id: &OrgId) -> Result<bool>;
    fn remove_point(&mut self, id: &PointId) -> Result<bool>;
    /// Upserts organisations then points, all or nothing.
    fn import_registry(&mut self, orgs: &[Organisation], points: &[PointInfo]) -> Result<()>;

    fn conferences(&mut self) -> Result<Vec<Conference>>;
    fn upsert_conference(&mut self, conference: &Conference) -> Result<()>;

    /// Every (conference, point) whose tokens were revoked at least once, with its generation.
    fn token_generations(&mut self) -> Result<Vec<(ConferenceId, PointId, u32)>>;
    /// Revokes every token of the pair issued so far; returns the new generation.
    fn bump_token_generation(&mut self, conference: &ConferenceId, point: &PointId) -> Result<u32>;
}

/// A store that refuses everything (what a dropped ledger leaves behind).
pub(crate) struct Closed;

impl Store for Closed {
    fn schema_version(&mut self) -> Result<i64> {
        Err(LedgerError::Closed)
    }
    fn record_outage(&mut self, _: i64, _: i64, _: &StoreOutage) -> Result<()> {
        Err(LedgerError::Closed)
    }
    fn store_outages(&mut self, _: i64, _: i64) -> Result<Vec<StoreOutage>> {
        Err(LedgerError::Closed)
    }
    fn append(&mut self, _: &str, _: i64, _: i64, _: &[Row]) -> Result<Vec<bool>> {
        Err(LedgerError::Closed)
    }
    fn heartbeat(&mut self, _: &str, _: RunInfo) -> Result<()> {
        Err(LedgerError::Closed)
    }
    fn last_run(&mut self, _: &str) -> Result<Option<RunInfo>> {
        Err(LedgerError::Closed)
    }
    fn events(&mut self, _: &ConferenceId) -> Result<Vec<Event>> {
        Err(LedgerError::Closed)
    }
    fn events_of_run(&mut self, _: &str, _: i64) -> Result<Vec<Event>> {
        Err(LedgerError::Closed)
    }
    fn events_after(&mut self, _: i64, _: usize) -> Result<Vec<StoredEvent>> {
        Err(LedgerError::Closed)
    }
    fn import(&mut self, _: i64, _: &[(Row, &str, i64)]) -> Result<Vec<bool>> {
        Err(LedgerError::Closed)
    }
    fn point_nodes(&mut self, _: &ConferenceId) -> Result<Vec<(PointId, String)>> {
        Err(LedgerError::Closed)
    }
    fn count_event_id(&mut self, _: EventId) -> Result<u64> {
        Err(LedgerError::Closed)
    }
    fn n_events(&mut self) -> Result<u64> {
        Err(LedgerError::Closed)
    }
    fn organisations(&mut self) -> Result<Vec<Organisation>> {
        Err(LedgerError::Closed)
    }
    fn points(&mut self) -> Result<Vec<PointInfo>> {
        Err(LedgerError::Closed)
    }
    fn upsert_organisation(&mut self, _: &Organisation) -> Result<()> {
        Err(LedgerError::Closed)
    }
    fn upsert_point(&mut self, _: &PointInfo) -> Result<()> {
        Err(LedgerError::Closed)
    }
    fn remove_organisation(&mut self, _: &OrgId) -> Result<bool> {
        Err(LedgerError::Closed)
    }
    fn remove_point(&mut self, _: &PointId) -> Result<bool> {
        Err(LedgerError::Closed)
    }
    fn import_registry(&mut self, _: &[Organisation], _: &[PointInfo]) -> Result<()> {
        Err(LedgerError::Closed)
    }
    fn conferences(&mut self) -> Result<Vec<Conference>> {
        Err(LedgerError::Closed)
    }
    fn upsert_conference(&mut self, _: &Conference) -> Result<()> {
        Err(LedgerError::Closed)
    }
    fn token_generations(&mut self) -> Result<Vec<(ConferenceId, PointId, u32)>> {
        Err(LedgerError::Closed)
    }
    fn bump_token_generation(&mut self, _: &ConferenceId, _: &PointId) -> Result<u32> {
        Err(LedgerError::Closed)
    }
}
