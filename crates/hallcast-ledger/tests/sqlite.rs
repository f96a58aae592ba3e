//! The ledger suite on SQLite (the embedded default).

mod common;

ledger_suite!(common::sqlite);
