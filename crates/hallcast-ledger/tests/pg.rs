//! The ledger suite on PostgreSQL. Compiled only with `--features pg-tests`; then
//! `HALLCAST_TEST_PG_URL` must point at a real server (see scripts/pg-test-setup.sh) or
//! every test here fails with a message saying so.

#![cfg(feature = "pg-tests")]

mod common;

ledger_suite!(common::pg);
