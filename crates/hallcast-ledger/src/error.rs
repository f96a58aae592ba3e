//! Errors of the ledger.

use hallcast_core::accounting::IdError;

/// A failure of the ledger or its store.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] postgres::Error),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// A stored row that cannot be read back as an event or registry entry.
    #[error("corrupt ledger row: {0}")]
    Corrupt(String),
    /// The request names something that does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The request conflicts with what is stored (e.g. removing an organisation that still
    /// has points, or a point whose organisation is not registered).
    #[error("conflict: {0}")]
    Conflict(String),
    /// Input that does not parse (CSV, identifiers, configuration).
    #[error("invalid input: {0}")]
    Invalid(String),
    /// The batch holding the event could not be committed (after retries).
    #[error("event not stored: {0}")]
    NotStored(String),
    /// The store's schema was written by a newer release of hallcast: this one refuses to
    /// touch it (run the newer release, or restore a backup made before the upgrade).
    #[error(
        "the ledger's schema is version {found}, newer than this hallcast knows ({supported}): \
         it was upgraded by a newer release; run that release or newer against it"
    )]
    SchemaTooNew { found: i64, supported: i64 },
    /// The store is unreachable and the event waited longer than the caller allows; it
    /// stays queued and is stored when the store is back (idempotent by its event id).
    #[error(
        "event queued, not yet stored: the ledger's store is unreachable since {since_ms} (Unix ms); it will be stored when the store is back"
    )]
    Pending { since_ms: i64 },
    /// The writer thread is gone (ledger closed).
    #[error("the ledger is closed")]
    Closed,
}

impl From<IdError> for LedgerError {
    fn from(e: IdError) -> Self {
        LedgerError::Invalid(e.to_string())
    }
}

pub type Result<T, E = LedgerError> = std::result::Result<T, E>;
