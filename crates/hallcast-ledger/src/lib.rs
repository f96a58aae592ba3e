//! hallcast-ledger: the attendance store (báo cáo điểm danh).
//!
//! Owns: the registry of organisations and connection points (with its CSV form), the
//! conferences, join tokens (Ed25519 `v2`, HMAC `v1` still accepted; expiry, revocation), the append-only durable
//! event log with idempotent event ids on SQLite (embedded default) or PostgreSQL, crash
//! recovery of a relay node's open sessions, and the attendance reports as files (CSV,
//! JSON, printable HTML, join-link pages with QR codes).
//!
//! Never: decides what an event means (the fold in `hallcast_core::accounting` does), blocks
//! the media path (the relay only calls [`EventSink::emit`], a `try_send` into a bounded
//! queue), updates or deletes an event once stored, serves HTTP (the server crate does), or
//! installs a tracing subscriber.
//!
//! # Writing events
//! * [`EventSink::emit`] — for the relay's media path: never blocks, never awaits. When the
//!   bounded queue (default 65,536 events) is full the event is dropped, counted in
//!   [`LedgerStats::n_dropped`], and `Err(EmitError::Full)` is returned. A full queue means
//!   the store has fallen that far behind; export `n_dropped` as a metric and alert on it.
//! * [`Ledger::append`] — for callers that need the durable acknowledgement (headcount
//!   declarations, recovery, outbox delivery): resolves only once the batch holding the event
//!   is committed. It waits for room in the queue instead of dropping.
//!
//! One writer thread per [`Ledger`] drains the queue and commits everything waiting (up to
//! `max_batch`, default 8,192) in one transaction: group commit. SQLite runs in WAL mode with
//! `synchronous=FULL`, so an acknowledged event survives `kill -9` and power loss; PostgreSQL
//! acknowledges after its commit. Event ids are the idempotency key (`UNIQUE`, insert-or-
//! ignore): storing an event twice stores it once, and [`Appended::Duplicate`] says so.
//!
//! # When the store is unreachable (an outage)
//! The writer keeps the batch it was storing and retries it, pausing 50 ms then doubling up
//! to [`LedgerConfig::max_retry_delay`] (5 s), with a fresh connection each time, until it
//! is stored: nothing that fits the queue is lost, and new events wait in the queue (only a
//! full queue drops, as above). A batch the store *refuses* while answering is given up
//! after 5 attempts (`n_failed`). Meanwhile [`LedgerStats::outage_since_ms`] says since
//! when; `append` answers [`LedgerError::Pending`] after [`LedgerConfig::append_wait`] (the
//! event stays queued); `close` gives up after [`LedgerConfig::close_wait`] and says how
//! many events were not stored. Reads fail and reconnect once the store answers. When a
//! write succeeds again the node records the outage (from, to, events stored late, events
//! dropped) in the store's `store_outages` table; [`Ledger::report`] attaches those that
//! overlap the broadcast (`Report::with_store_outages`, folded in the core) and [`render`]
//! prints the notice. docs/postgresql.md is the operator's side of this.
//!
//! # Schema versions
//! Every connection migrates the schema to [`store::SCHEMA_VERSION`] when it opens and
//! refuses a newer one ([`LedgerError::SchemaTooNew`]); see [`store`].
//!
//! # Crash recovery
//! The writer records a heartbeat (with every batch, and every 2 s when idle) under the
//! node's name and run number. When a node opens the ledger again after a crash, every
//! session its previous run left open is ended with `EndReason::RelayLost` at the previous
//! run's last heartbeat, and every broadcast left live is ended there too. So a relay
//! restart shows as one interrupted presence per point, and a crash adds at most one
//! heartbeat interval of presence. Recovery event ids are derived from
//! (node, run, conference, point, session), so recovery is idempotent as well.
//!
//! # Edge relays: events move up the tree
//! An edge relay runs its own `Ledger` on a local SQLite file: its relay code calls `emit`
//! exactly as the central does, so nothing is lost while the uplink is down. The server
//! crate's outbox reads it in `seq` order from a stored cursor ([`Ledger::events_after`]),
//! sends its point-level events ([`transfer::is_point_level`]) to the parent, which appends
//! them with [`Ledger::import`], and advances its cursor only once they are durable there.
//! A batch resent after a timeout or a crash is harmless: event ids make every store
//! idempotent, and the fold ignores arrival order. Each event keeps the `node` and `run`
//! that first stored it, so crash recovery of one node never touches another node's
//! sessions (see [`Ledger::import`] for what that means for an edge that is cut off), and
//! the report names the relay that served each point. Node names must therefore be unique
//! in the tree (and among the processes that share a store).
//!
//! # Reports
//! [`Ledger::report`] loads a conference's events and the registry, folds them in the core
//! and returns `hallcast_core::accounting::Report`; [`render`] turns it into CSV, JSON or
//! HTML (see that module for why the documents live here).
//!
//! # Testing
//! `cargo test -p hallcast-ledger` runs everything on SQLite. The PostgreSQL backend runs the
//! same suite with `--features pg-tests`; then `HALLCAST_TEST_PG_URL` must be set (e.g. by
//! `eval "$(scripts/pg-test-setup.sh)"`) and the tests **fail**, never skip, without it.

mod codec;
mod error;
mod ledger;
pub mod registry;
pub mod render;
pub mod store;
mod token;
pub mod transfer;

pub use error::{LedgerError, Result};
pub use ledger::{
    Appended, EmitError, EventSink, JoinLink, Ledger, LedgerConfig, LedgerStats, Recovery,
    new_event_id, now_ms,
};
pub use registry::{Conference, ImportSummary};
pub use store::{RunInfo, Store, StoreConfig};
pub use token::{JoinClaims, Secret, TokenError, TokenSigner, TokenVerifier, join_link};
pub use transfer::{EventJson, Imported, OriginEvent, StoredEvent};
