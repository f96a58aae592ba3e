//! hallcast-ledger: the attendance store (báo cáo điểm danh).
//!
//! Owns: the registry of organisations and connection points (with its CSV form), the
//! conferences, join tokens (HMAC-SHA256, expiry, revocation), the append-only durable
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
//! # Crash recovery
//! The writer records a heartbeat (with every batch, and every 2 s when idle) under the
//! node's name and run number. When a node opens the ledger again after a crash, every
//! session its previous run left open is ended with `EndReason::RelayLost` at the previous
//! run's last heartbeat, and every broadcast left live is ended there too. So a relay
//! restart shows as one interrupted presence per point, and a crash adds at most one
//! heartbeat interval of presence. Recovery event ids are derived from
//! (node, run, conference, point, session), so recovery is idempotent as well.
//!
//! # Edge relays: a durable outbox (design, not built yet)
//! An edge relay runs its own `Ledger` on a local SQLite file as an *outbox*: its relay code
//! calls `emit` exactly as the central does, so nothing is lost while the uplink is down. A
//! forwarder task reads the outbox in `seq` order from a stored cursor, sends batches to the
//! central (an authenticated `POST` of events, answered only after the central's
//! `Ledger::append` acknowledged all of them), then advances its cursor. A batch resent after
//! a timeout or a crash is harmless: event ids make the central's store idempotent, and the
//! fold ignores arrival order. The central stamps delivered events with the edge's node
//! name, so crash recovery of one node never touches another node's sessions. Node names
//! must therefore be unique among the processes that share a store.
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

pub use error::{LedgerError, Result};
pub use ledger::{
    Appended, EmitError, EventSink, JoinLink, Ledger, LedgerConfig, LedgerStats, Recovery,
    new_event_id, now_ms,
};
pub use registry::{Conference, ImportSummary};
pub use store::{RunInfo, Store, StoreConfig};
pub use token::{JoinClaims, Secret, TokenError, TokenSigner, join_link};
