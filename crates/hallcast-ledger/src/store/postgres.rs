//! The PostgreSQL backend: the system of record when several machines share the ledger.
//!
//! Uses the blocking `postgres` client (a thin wrapper over `tokio-postgres` with its own
//! small runtime), so it fits the same blocking [`Store`] trait as SQLite and runs on the
//! writer thread or tokio's blocking pool. A batch is one `INSERT … SELECT FROM UNNEST(…)
//! ON CONFLICT (event_id) DO NOTHING RETURNING event_id`: one round trip per batch.
//! Durability is PostgreSQL's commit (`synchronous_commit` as the server is configured;
//! `on` by default).

use std::collections::HashSet;
use std::time::Duration;

use hallcast_core::accounting::{
    ConferenceId, Event, EventId, OrgId, Organisation, PointId, PointInfo, StoreOutage,
};
use postgres::{Client, GenericClient, NoTls, Statement};

use super::{RunInfo, SCHEMA_VERSION, Store};
use crate::codec::{self, Row};
use crate::error::{LedgerError, Result};
use crate::registry::Conference;
use crate::transfer::StoredEvent;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    seq        BIGSERIAL PRIMARY KEY,
    event_id   BYTEA  NOT NULL UNIQUE,
    conference TEXT   NOT NULL,
    point      TEXT,
    session    TEXT,
    at_ms      BIGINT NOT NULL,
    kind       TEXT   NOT NULL,
    value      BIGINT,
    node       TEXT   NOT NULL,
    run        BIGINT NOT NULL,
    stored_ms  BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_conference ON events (conference, seq);
CREATE INDEX IF NOT EXISTS events_by_run ON events (node, run, seq);
CREATE TABLE IF NOT EXISTS organisations (
    id   TEXT PRIMARY KEY,
    name TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS points (
    id                 TEXT PRIMARY KEY,
    org_id             TEXT NOT NULL REFERENCES organisations (id),
    name               TEXT NOT NULL,
    location           TEXT NOT NULL,
    expected_headcount BIGINT
);
CREATE TABLE IF NOT EXISTS conferences (
    id         TEXT PRIMARY KEY,
    title      TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS token_generations (
    conference TEXT   NOT NULL,
    point      TEXT   NOT NULL,
    generation BIGINT NOT NULL,
    PRIMARY KEY (conference, point)
);
CREATE TABLE IF NOT EXISTS nodes (
    node           TEXT PRIMARY KEY,
    run            BIGINT NOT NULL,
    run_started_ms BIGINT NOT NULL,
    last_alive_ms  BIGINT NOT NULL
);
";

/// Migration 2: the store outages each node recorded once its store was back.
const STORE_OUTAGES: &str = "
CREATE TABLE IF NOT EXISTS store_outages (
    node          TEXT   NOT NULL,
    run           BIGINT NOT NULL,
    from_ms       BIGINT NOT NULL,
    to_ms         BIGINT NOT NULL,
    n_stored_late BIGINT NOT NULL,
    n_dropped     BIGINT NOT NULL,
    recorded_ms   BIGINT NOT NULL,
    PRIMARY KEY (node, run, from_ms)
);
";

/// Brings the schema to [`SCHEMA_VERSION`] (see [`super`], "Schema versions"): every
/// migration not yet applied, in order, in one transaction that holds an advisory lock, so
/// that relays starting together migrate once. Refuses a schema newer than this build.
fn migrate(client: &mut Client) -> Result<()> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock(7395011)", &[])?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_version (
             version    BIGINT PRIMARY KEY,
             applied_ms BIGINT NOT NULL
         )",
    )?;
    let found: Option<i64> = tx
        .query_one("SELECT max(version) FROM schema_version", &[])?
        .try_get(0)?;
    let found = found.unwrap_or(0);
    super::check_version(found)?;
    for version in found + 1..=SCHEMA_VERSION {
        match version {
            1 => {
                // The tables as they were before schema versions existed (`IF NOT EXISTS`:
                // a ledger made then is adopted as version 1 unchanged), with the columns the
                // conference registry added later.
                tx.batch_execute(SCHEMA)?;
                tx.batch_execute(
                    "ALTER TABLE conferences ADD COLUMN IF NOT EXISTS stream_key TEXT NOT NULL DEFAULT '';
                     ALTER TABLE conferences ADD COLUMN IF NOT EXISTS viewer_token TEXT NOT NULL DEFAULT '';
                     ALTER TABLE conferences ADD COLUMN IF NOT EXISTS ended_ms BIGINT;
                     ALTER TABLE conferences ADD COLUMN IF NOT EXISTS seed_stream_key TEXT NOT NULL DEFAULT '';",
                )?;
            }
            2 => tx.batch_execute(STORE_OUTAGES)?,
            _ => unreachable!("SCHEMA_VERSION has a migration for every version"),
        }
        tx.execute(
            "INSERT INTO schema_version (version, applied_ms) VALUES ($1, $2)",
            &[&version, &crate::ledger::now_ms()],
        )?;
        tracing::info!(version, "ledger schema migrated (PostgreSQL)");
    }
    tx.commit()?;
    Ok(())
}

const INSERT_BATCH: &str = "
INSERT INTO events (event_id, conference, point, session, at_ms, kind, value, node, run, stored_ms)
SELECT u.event_id, u.conference, u.point, u.session, u.at_ms, u.kind, u.value, $8, $9, $10
FROM UNNEST($1::bytea[], $2::text[], $3::text[], $4::text[], $5::int8[], $6::text[], $7::int8[])
    AS u (event_id, conference, point, session, at_ms, kind, value)
ON CONFLICT (event_id) DO NOTHING
RETURNING event_id";

/// Like `INSERT_BATCH`, with a node and a run per row (events imported from another relay).
const IMPORT_BATCH: &str = "
INSERT INTO events (event_id, conference, point, session, at_ms, kind, value, node, run, stored_ms)
SELECT u.event_id, u.conference, u.point, u.session, u.at_ms, u.kind, u.value, u.node, u.run, $10
FROM UNNEST($1::bytea[], $2::text[], $3::text[], $4::text[], $5::int8[], $6::text[], $7::int8[],
            $8::text[], $9::int8[])
    AS u (event_id, conference, point, session, at_ms, kind, value, node, run)
ON CONFLICT (event_id) DO NOTHING
RETURNING event_id";

const EVENT_COLUMNS: &str = "event_id, conference, point, session, at_ms, kind, value";

/// One PostgreSQL connection.
pub struct PgStore {
    client: Client,
    insert: Statement,
}

fn valid_schema(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl PgStore {
    /// Connects, selects `schema` (creating it when missing) and migrates the tables to
    /// [`SCHEMA_VERSION`].
    pub fn connect(url: &str, schema: Option<&str>) -> Result<Self> {
        let mut config: postgres::Config = url.parse()?;
        // An unreachable server must fail an attempt within seconds (the writer retries;
        // a read answers an error), not after the kernel's minutes of TCP retries. Each is
        // kept when the URL sets it (`connect_timeout=`, `tcp_user_timeout=`).
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(Duration::from_secs(15));
        }
        if config.get_keepalives_idle() == Duration::from_secs(2 * 60 * 60) {
            // The client's default (2 h) would notice a silently dead server far too late.
            config.keepalives_idle(Duration::from_secs(30));
        }
        let mut client = config.connect(NoTls)?;
        if let Some(s) = schema {
            if !valid_schema(s) {
                return Err(LedgerError::Invalid(format!(
                    "PostgreSQL schema name {s:?}: use [a-z_][a-z0-9_]{{0,62}}"
                )));
            }
            client.batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS \"{s}\"; SET search_path TO \"{s}\""
            ))?;
        }
        migrate(&mut client)?;
        let insert = client.prepare(INSERT_BATCH)?;
        Ok(Self { client, insert })
    }
}

fn read_events(rows: Vec<postgres::Row>) -> Result<Vec<Event>> {
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let id: Vec<u8> = r.try_get(0)?;
        let conference: String = r.try_get(1)?;
        let point: Option<String> = r.try_get(2)?;
        let session: Option<String> = r.try_get(3)?;
        let kind: String = r.try_get(5)?;
        out.push(codec::from_row(
            &id,
            &conference,
            point.as_deref(),
            session.as_deref(),
            r.try_get(4)?,
            &kind,
            r.try_get(6)?,
        )?);
    }
    Ok(out)
}

fn corrupt<T, E: std::fmt::Display>(r: std::result::Result<T, E>) -> Result<T> {
    r.map_err(|e| LedgerError::Corrupt(e.to_string()))
}

fn upsert_org(c: &mut impl GenericClient, org: &Organisation) -> Result<()> {
    c.execute(
        "INSERT INTO organisations (id, name) VALUES ($1, $2)
         ON CONFLICT (id) DO UPDATE SET name = excluded.name",
        &[&org.id.as_str(), &org.name],
    )?;
    Ok(())
}

fn upsert_point(c: &mut impl GenericClient, p: &PointInfo) -> Result<()> {
    let known = c.query_opt(
        "SELECT 1 FROM organisations WHERE id = $1",
        &[&p.org.as_str()],
    )?;
    if known.is_none() {
        return Err(LedgerError::Conflict(format!(
            "point {}: organisation {} is not registered",
            p.id, p.org
        )));
    }
    let expected: Option<i64> = p.expected_headcount.map(i64::from);
    c.execute(
        "INSERT INTO points (id, org_id, name, location, expected_headcount)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (id) DO UPDATE SET org_id = excluded.org_id, name = excluded.name,
             location = excluded.location, expected_headcount = excluded.expected_headcount",
        &[
            &p.id.as_str(),
            &p.org.as_str(),
            &p.name,
            &p.location,
            &expected,
        ],
    )?;
    Ok(())
}

impl Store for PgStore {
    fn is_broken(&self) -> bool {
        self.client.is_closed()
    }

    fn is_alive(&mut self) -> bool {
        self.client.is_valid(Duration::from_secs(2)).is_ok()
    }

    fn schema_version(&mut self) -> Result<i64> {
        let v: Option<i64> = self
            .client
            .query_one("SELECT max(version) FROM schema_version", &[])?
            .try_get(0)?;
        Ok(v.unwrap_or(0))
    }

    fn record_outage(&mut self, run: i64, now_ms: i64, o: &StoreOutage) -> Result<()> {
        let late = i64::try_from(o.n_stored_late).unwrap_or(i64::MAX);
        let dropped = i64::try_from(o.n_dropped).unwrap_or(i64::MAX);
        self.client.execute(
            "INSERT INTO store_outages
                 (node, run, from_ms, to_ms, n_stored_late, n_dropped, recorded_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (node, run, from_ms) DO NOTHING",
            &[
                &o.node, &run, &o.from_ms, &o.to_ms, &late, &dropped, &now_ms,
            ],
        )?;
        Ok(())
    }

    fn store_outages(&mut self, from_ms: i64, to_ms: i64) -> Result<Vec<StoreOutage>> {
        let rows = self.client.query(
            "SELECT node, from_ms, to_ms, n_stored_late, n_dropped FROM store_outages
             WHERE from_ms <= $2 AND to_ms >= $1 ORDER BY from_ms, node",
            &[&from_ms, &to_ms],
        )?;
        rows.into_iter()
            .map(|r| {
                let late: i64 = r.try_get(3)?;
                let dropped: i64 = r.try_get(4)?;
                Ok(StoreOutage {
                    node: r.try_get(0)?,
                    from_ms: r.try_get(1)?,
                    to_ms: r.try_get(2)?,
                    n_stored_late: corrupt(u64::try_from(late))?,
                    n_dropped: corrupt(u64::try_from(dropped))?,
                })
            })
            .collect()
    }

    fn append(&mut self, node: &str, run: i64, now_ms: i64, rows: &[Row]) -> Result<Vec<bool>> {
        let ids: Vec<&[u8]> = rows.iter().map(|r| &r.event_id[..]).collect();
        let confs: Vec<&str> = rows.iter().map(|r| r.conference.as_str()).collect();
        let points: Vec<Option<&str>> = rows.iter().map(|r| r.point.as_deref()).collect();
        let sessions: Vec<Option<&str>> = rows.iter().map(|r| r.session.as_deref()).collect();
        let ats: Vec<i64> = rows.iter().map(|r| r.at_ms).collect();
        let kinds: Vec<&str> = rows.iter().map(|r| r.kind).collect();
        let values: Vec<Option<i64>> = rows.iter().map(|r| r.value).collect();
        let mut tx = self.client.transaction()?;
        let inserted = tx.query(
            &self.insert,
            &[
                &ids, &confs, &points, &sessions, &ats, &kinds, &values, &node, &run, &now_ms,
            ],
        )?;
        tx.execute(
            "UPDATE nodes SET last_alive_ms = $2 WHERE node = $1 AND run = $3",
            &[&node, &now_ms, &run],
        )?;
        tx.commit()?;
        let mut new_ids: HashSet<Vec<u8>> = HashSet::with_capacity(inserted.len());
        for r in inserted {
            new_ids.insert(r.try_get(0)?);
        }
        Ok(rows
            .iter()
            .map(|r| new_ids.remove(&r.event_id[..]))
            .collect())
    }

    fn heartbeat(&mut self, node: &str, run: RunInfo) -> Result<()> {
        self.client.execute(
            "INSERT INTO nodes (node, run, run_started_ms, last_alive_ms) VALUES ($1, $2, $3, $4)
             ON CONFLICT (node) DO UPDATE SET run = excluded.run,
                 run_started_ms = excluded.run_started_ms, last_alive_ms = excluded.last_alive_ms",
            &[&node, &run.run, &run.run_started_ms, &run.last_alive_ms],
        )?;
        Ok(())
    }

    fn last_run(&mut self, node: &str) -> Result<Option<RunInfo>> {
        let row = self.client.query_opt(
            "SELECT run, run_started_ms, last_alive_ms FROM nodes WHERE node = $1",
            &[&node],
        )?;
        Ok(match row {
            Some(r) => Some(RunInfo {
                run: r.try_get(0)?,
                run_started_ms: r.try_get(1)?,
                last_alive_ms: r.try_get(2)?,
            }),
            None => None,
        })
    }

    fn events(&mut self, conference: &ConferenceId) -> Result<Vec<Event>> {
        let rows = self.client.query(
            &format!("SELECT {EVENT_COLUMNS} FROM events WHERE conference = $1 ORDER BY seq"),
            &[&conference.as_str()],
        )?;
        read_events(rows)
    }

    fn events_of_run(&mut self, node: &str, run: i64) -> Result<Vec<Event>> {
        let rows = self.client.query(
            &format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE node = $1 AND run = $2 ORDER BY seq"
            ),
            &[&node, &run],
        )?;
        read_events(rows)
    }

    fn events_after(&mut self, after: i64, limit: usize) -> Result<Vec<StoredEvent>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.client.query(
            &format!(
                "SELECT {EVENT_COLUMNS}, seq, node, run FROM events WHERE seq > $1
                 ORDER BY seq LIMIT $2"
            ),
            &[&after, &limit],
        )?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let id: Vec<u8> = r.try_get(0)?;
            let conference: String = r.try_get(1)?;
            let point: Option<String> = r.try_get(2)?;
            let session: Option<String> = r.try_get(3)?;
            let kind: String = r.try_get(5)?;
            let event = codec::from_row(
                &id,
                &conference,
                point.as_deref(),
                session.as_deref(),
                r.try_get(4)?,
                &kind,
                r.try_get(6)?,
            )?;
            out.push(StoredEvent {
                seq: r.try_get(7)?,
                event,
                node: r.try_get(8)?,
                run: r.try_get(9)?,
            });
        }
        Ok(out)
    }

    fn import(&mut self, now_ms: i64, rows: &[(Row, &str, i64)]) -> Result<Vec<bool>> {
        let ids: Vec<&[u8]> = rows.iter().map(|(r, ..)| &r.event_id[..]).collect();
        let confs: Vec<&str> = rows.iter().map(|(r, ..)| r.conference.as_str()).collect();
        let points: Vec<Option<&str>> = rows.iter().map(|(r, ..)| r.point.as_deref()).collect();
        let sessions: Vec<Option<&str>> = rows.iter().map(|(r, ..)| r.session.as_deref()).collect();
        let ats: Vec<i64> = rows.iter().map(|(r, ..)| r.at_ms).collect();
        let kinds: Vec<&str> = rows.iter().map(|(r, ..)| r.kind).collect();
        let values: Vec<Option<i64>> = rows.iter().map(|(r, ..)| r.value).collect();
        let nodes: Vec<&str> = rows.iter().map(|(_, n, _)| *n).collect();
        let runs: Vec<i64> = rows.iter().map(|(_, _, run)| *run).collect();
        let mut tx = self.client.transaction()?;
        let inserted = tx.query(
            IMPORT_BATCH,
            &[
                &ids, &confs, &points, &sessions, &ats, &kinds, &values, &nodes, &runs, &now_ms,
            ],
        )?;
        tx.commit()?;
        let mut new_ids: HashSet<Vec<u8>> = HashSet::with_capacity(inserted.len());
        for r in inserted {
            new_ids.insert(r.try_get(0)?);
        }
        Ok(rows
            .iter()
            .map(|(r, ..)| new_ids.remove(&r.event_id[..]))
            .collect())
    }

    fn point_nodes(&mut self, conference: &ConferenceId) -> Result<Vec<(PointId, String)>> {
        let rows = self.client.query(
            "SELECT DISTINCT point, node FROM events
             WHERE conference = $1 AND session IS NOT NULL
               AND kind <> 'rollcall_answered' ORDER BY point, node",
            &[&conference.as_str()],
        )?;
        rows.into_iter()
            .map(|r| {
                let p: String = r.try_get(0)?;
                Ok((corrupt(PointId::parse(&p))?, r.try_get(1)?))
            })
            .collect()
    }

    fn count_event_id(&mut self, id: EventId) -> Result<u64> {
        let bytes = id.to_bytes();
        let n: i64 = self
            .client
            .query_one(
                "SELECT count(*) FROM events WHERE event_id = $1",
                &[&&bytes[..]],
            )?
            .try_get(0)?;
        Ok(n.max(0) as u64)
    }

    fn n_events(&mut self) -> Result<u64> {
        let n: i64 = self
            .client
            .query_one("SELECT count(*) FROM events", &[])?
            .try_get(0)?;
        Ok(n.max(0) as u64)
    }

    fn organisations(&mut self) -> Result<Vec<Organisation>> {
        let rows = self
            .client
            .query("SELECT id, name FROM organisations ORDER BY id", &[])?;
        rows.into_iter()
            .map(|r| {
                let id: String = r.try_get(0)?;
                Ok(Organisation {
                    id: corrupt(OrgId::parse(&id))?,
                    name: r.try_get(1)?,
                })
            })
            .collect()
    }

    fn points(&mut self) -> Result<Vec<PointInfo>> {
        let rows = self.client.query(
            "SELECT id, org_id, name, location, expected_headcount FROM points ORDER BY id",
            &[],
        )?;
        rows.into_iter()
            .map(|r| {
                let id: String = r.try_get(0)?;
                let org: String = r.try_get(1)?;
                let expected: Option<i64> = r.try_get(4)?;
                Ok(PointInfo {
                    id: corrupt(PointId::parse(&id))?,
                    org: corrupt(OrgId::parse(&org))?,
                    name: r.try_get(2)?,
                    location: r.try_get(3)?,
                    expected_headcount: expected.map(u32::try_from).transpose().map_err(|e| {
                        LedgerError::Corrupt(format!("expected headcount of {id}: {e}"))
                    })?,
                })
            })
            .collect()
    }

    fn upsert_organisation(&mut self, org: &Organisation) -> Result<()> {
        upsert_org(&mut self.client, org)
    }

    fn upsert_point(&mut self, point: &PointInfo) -> Result<()> {
        upsert_point(&mut self.client, point)
    }

    fn remove_organisation(&mut self, id: &OrgId) -> Result<bool> {
        let mut tx = self.client.transaction()?;
        let n_points: i64 = tx
            .query_one(
                "SELECT count(*) FROM points WHERE org_id = $1",
                &[&id.as_str()],
            )?
            .try_get(0)?;
        if n_points > 0 {
            return Err(LedgerError::Conflict(format!(
                "organisation {id} still has {n_points} point(s); remove or move them first"
            )));
        }
        let n = tx.execute("DELETE FROM organisations WHERE id = $1", &[&id.as_str()])?;
        tx.commit()?;
        Ok(n > 0)
    }

    fn remove_point(&mut self, id: &PointId) -> Result<bool> {
        let n = self
            .client
            .execute("DELETE FROM points WHERE id = $1", &[&id.as_str()])?;
        Ok(n > 0)
    }

    fn import_registry(&mut self, orgs: &[Organisation], points: &[PointInfo]) -> Result<()> {
        let mut tx = self.client.transaction()?;
        for o in orgs {
            upsert_org(&mut tx, o)?;
        }
        for p in points {
            upsert_point(&mut tx, p)?;
        }
        tx.commit()?;
        Ok(())
    }

    fn conferences(&mut self) -> Result<Vec<Conference>> {
        let rows = self.client.query(
            "SELECT id, title, created_ms, stream_key, viewer_token, ended_ms, seed_stream_key
             FROM conferences ORDER BY id",
            &[],
        )?;
        rows.into_iter()
            .map(|r| {
                let id: String = r.try_get(0)?;
                Ok(Conference {
                    id: corrupt(ConferenceId::parse(&id))?,
                    title: r.try_get(1)?,
                    created_ms: r.try_get(2)?,
                    stream_key: r.try_get(3)?,
                    viewer_token: r.try_get(4)?,
                    ended_ms: r.try_get(5)?,
                    seed_stream_key: r.try_get(6)?,
                })
            })
            .collect()
    }

    fn upsert_conference(&mut self, c: &Conference) -> Result<()> {
        self.client.execute(
            "INSERT INTO conferences
                 (id, title, created_ms, stream_key, viewer_token, ended_ms, seed_stream_key)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (id) DO UPDATE SET title = excluded.title,
                 stream_key = excluded.stream_key, viewer_token = excluded.viewer_token,
                 ended_ms = excluded.ended_ms, seed_stream_key = excluded.seed_stream_key",
            &[
                &c.id.as_str(),
                &c.title,
                &c.created_ms,
                &c.stream_key,
                &c.viewer_token,
                &c.ended_ms,
                &c.seed_stream_key,
            ],
        )?;
        Ok(())
    }

    fn token_generations(&mut self) -> Result<Vec<(ConferenceId, PointId, u32)>> {
        let rows = self.client.query(
            "SELECT conference, point, generation FROM token_generations",
            &[],
        )?;
        rows.into_iter()
            .map(|r| {
                let c: String = r.try_get(0)?;
                let p: String = r.try_get(1)?;
                let g: i64 = r.try_get(2)?;
                Ok((
                    corrupt(ConferenceId::parse(&c))?,
                    corrupt(PointId::parse(&p))?,
                    corrupt(u32::try_from(g))?,
                ))
            })
            .collect()
    }

    fn bump_token_generation(&mut self, conference: &ConferenceId, point: &PointId) -> Result<u32> {
        let g: i64 = self
            .client
            .query_one(
                "INSERT INTO token_generations (conference, point, generation) VALUES ($1, $2, 1)
                 ON CONFLICT (conference, point)
                 DO UPDATE SET generation = token_generations.generation + 1
                 RETURNING generation",
                &[&conference.as_str(), &point.as_str()],
            )?
            .try_get(0)?;
        corrupt(u32::try_from(g))
    }
}
