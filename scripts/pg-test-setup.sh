#!/usr/bin/env bash
# Makes a local PostgreSQL server ready for the ledger's PostgreSQL tests and prints the line
#   export HALLCAST_TEST_PG_URL=postgres://hallcast_test:hallcast_test@127.0.0.1:PORT/hallcast_test
# on stdout (everything else goes to stderr), so CI can do:
#   eval "$(scripts/pg-test-setup.sh)"
#   cargo test -p hallcast-ledger --features pg-tests
# Installs Debian's postgresql package when missing, creates and starts the cluster, and
# creates the role and database (idempotent; safe to run again). Needs root.
set -euo pipefail

log() { echo "pg-test-setup: $*" >&2; }

if ! command -v pg_ctlcluster >/dev/null 2>&1 || ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    log "installing PostgreSQL from Debian packages"
    apt-get update >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql >&2
fi

version="$(ls /usr/lib/postgresql | sort -V | tail -n 1)"
if ! pg_lsclusters -h 2>/dev/null | awk '{print $1" "$2}' | grep -qx "$version main"; then
    log "creating cluster $version/main"
    pg_createcluster "$version" main >&2
fi
port="$(pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" {print $3}')"
status="$(pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" {print $4}')"
if [ "$status" != "online" ]; then
    log "starting cluster $version/main on port $port"
    pg_ctlcluster "$version" main start >&2
fi
for _ in $(seq 1 60); do
    if pg_isready -q -h 127.0.0.1 -p "$port"; then break; fi
    sleep 0.5
done
pg_isready -h 127.0.0.1 -p "$port" >&2

psql_admin() { runuser -u postgres -- psql -p "$port" -v ON_ERROR_STOP=1 -tAq "$@"; }
if [ "$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = 'hallcast_test'")" != "1" ]; then
    log "creating role hallcast_test"
    psql_admin -c "CREATE ROLE hallcast_test LOGIN PASSWORD 'hallcast_test'" >&2
fi
if [ "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = 'hallcast_test'")" != "1" ]; then
    log "creating database hallcast_test"
    psql_admin -c "CREATE DATABASE hallcast_test OWNER hallcast_test" >&2
fi

echo "export HALLCAST_TEST_PG_URL=postgres://hallcast_test:hallcast_test@127.0.0.1:${port}/hallcast_test"
