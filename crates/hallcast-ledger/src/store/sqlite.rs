//! The embedded backend: one SQLite file, WAL journal, `synchronous=FULL` (a committed
//! batch survives power loss, not only a process crash).

use std::path::Path;

use hallcast_core::accounting::{
    ConferenceId, Event, EventId, OrgId, Organisation, PointId, PointInfo, StoreOutage,
};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{RunInfo, SCHEMA_VERSION, Store};
use crate::codec::{self, Row};
use crate::error::{LedgerError, Result};
use crate::registry::Conference;
use crate::transfer::StoredEvent;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    seq        INTEGER PRIMARY KEY,
    event_id   BLOB    NOT NULL UNIQUE,
    conference TEXT    NOT NULL,
    point      TEXT,
    session    TEXT,
    at_ms      INTEGER NOT NULL,
    kind       TEXT    NOT NULL,
    value      INTEGER,
    node       TEXT    NOT NULL,
    run        INTEGER NOT NULL,
    stored_ms  INTEGER NOT NULL
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
    expected_headcount INTEGER
);
CREATE TABLE IF NOT EXISTS conferences (
    id         TEXT PRIMARY KEY,
    title      TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS token_generations (
    conference TEXT NOT NULL,
    point      TEXT NOT NULL,
    generation INTEGER NOT NULL,
    PRIMARY KEY (conference, point)
);
CREATE TABLE IF NOT EXISTS nodes (
    node           TEXT PRIMARY KEY,
    run            INTEGER NOT NULL,
    run_started_ms INTEGER NOT NULL,
    last_alive_ms  INTEGER NOT NULL
);
";

/// Columns added to `conferences` after its first release (the conference registry), with their
/// definitions: added to a ledger made before them, so an old data directory keeps working.
const CONFERENCE_COLUMNS: [(&str, &str); 4] = [
    ("stream_key", "TEXT NOT NULL DEFAULT ''"),
    ("viewer_token", "TEXT NOT NULL DEFAULT ''"),
    ("ended_ms", "INTEGER"),
    ("seed_stream_key", "TEXT NOT NULL DEFAULT ''"),
];

fn migrate_conferences(conn: &Connection) -> Result<()> {
    let mut have = Vec::new();
    {
        let mut stmt = conn.prepare("SELECT name FROM pragma_table_info('conferences')")?;
        for name in stmt.query_map([], |r| r.get::<_, String>(0))? {
            have.push(name?);
        }
    }
    for (name, def) in CONFERENCE_COLUMNS {
        if !have.iter().any(|h| h == name) {
            conn.execute_batch(&format!("ALTER TABLE conferences ADD COLUMN {name} {def}"))?;
        }
    }
    Ok(())
}

/// Migration 2: the store outages each node recorded once its store was back.
const STORE_OUTAGES: &str = "
CREATE TABLE IF NOT EXISTS store_outages (
    node          TEXT    NOT NULL,
    run           INTEGER NOT NULL,
    from_ms       INTEGER NOT NULL,
    to_ms         INTEGER NOT NULL,
    n_stored_late INTEGER NOT NULL,
    n_dropped     INTEGER NOT NULL,
    recorded_ms   INTEGER NOT NULL,
    PRIMARY KEY (node, run, from_ms)
);
";

/// Brings the schema to [`SCHEMA_VERSION`] (see [`super`], "Schema versions"): every
/// migration not yet applied, in order, in one `BEGIN IMMEDIATE` transaction. Refuses a
/// schema newer than this build.
fn migrate(conn: &mut Connection) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_version (
             version    INTEGER PRIMARY KEY,
             applied_ms INTEGER NOT NULL
         )",
    )?;
    let found: Option<i64> =
        tx.query_row("SELECT max(version) FROM schema_version", [], |r| r.get(0))?;
    let found = found.unwrap_or(0);
    super::check_version(found)?;
    for version in found + 1..=SCHEMA_VERSION {
        match version {
            1 => {
                // The tables as they were before schema versions existed (`IF NOT EXISTS`:
                // a ledger made then is adopted as version 1 unchanged).
                tx.execute_batch(SCHEMA)?;
                migrate_conferences(&tx)?;
            }
            2 => tx.execute_batch(STORE_OUTAGES)?,
            _ => unreachable!("SCHEMA_VERSION has a migration for every version"),
        }
        tx.execute(
            "INSERT INTO schema_version (version, applied_ms) VALUES (?1, ?2)",
            params![version, crate::ledger::now_ms()],
        )?;
        tracing::info!(version, "ledger schema migrated (SQLite)");
    }
    tx.commit()?;
    Ok(())
}

/// One SQLite connection.
pub struct SqliteStore {
    conn: Connection,
}

impl SqliteStore {
    /// Opens (or creates) the file and its schema.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)?;
        }
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // 64 MiB of page cache: the unique index on event ids stays in memory.
        conn.pragma_update(None, "cache_size", -65_536)?;
        migrate(&mut conn)?;
        Ok(Self { conn })
    }
}

fn read_events(
    stmt: &mut rusqlite::Statement<'_>,
    params: impl rusqlite::Params,
) -> Result<Vec<Event>> {
    let mut rows = stmt.query(params)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let id: Vec<u8> = r.get(0)?;
        let conference: String = r.get(1)?;
        let point: Option<String> = r.get(2)?;
        let session: Option<String> = r.get(3)?;
        let kind: String = r.get(5)?;
        out.push(codec::from_row(
            &id,
            &conference,
            point.as_deref(),
            session.as_deref(),
            r.get(4)?,
            &kind,
            r.get(6)?,
        )?);
    }
    Ok(out)
}

const EVENT_COLUMNS: &str = "event_id, conference, point, session, at_ms, kind, value";

fn upsert_org(conn: &Connection, org: &Organisation) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO organisations (id, name) VALUES (?1, ?2)
         ON CONFLICT (id) DO UPDATE SET name = excluded.name",
    )?
    .execute(params![org.id.as_str(), org.name])?;
    Ok(())
}

fn upsert_point(conn: &Connection, p: &PointInfo) -> Result<()> {
    let org_known: Option<i64> = conn
        .prepare_cached("SELECT 1 FROM organisations WHERE id = ?1")?
        .query_row(params![p.org.as_str()], |r| r.get(0))
        .optional()?;
    if org_known.is_none() {
        return Err(LedgerError::Conflict(format!(
            "point {}: organisation {} is not registered",
            p.id, p.org
        )));
    }
    conn.prepare_cached(
        "INSERT INTO points (id, org_id, name, location, expected_headcount)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (id) DO UPDATE SET org_id = excluded.org_id, name = excluded.name,
             location = excluded.location, expected_headcount = excluded.expected_headcount",
    )?
    .execute(params![
        p.id.as_str(),
        p.org.as_str(),
        p.name,
        p.location,
        p.expected_headcount
    ])?;
    Ok(())
}

fn parse_corrupt<T, E: std::fmt::Display>(r: std::result::Result<T, E>) -> Result<T> {
    r.map_err(|e| LedgerError::Corrupt(e.to_string()))
}

impl Store for SqliteStore {
    fn schema_version(&mut self) -> Result<i64> {
        let v: Option<i64> =
            self.conn
                .query_row("SELECT max(version) FROM schema_version", [], |r| r.get(0))?;
        Ok(v.unwrap_or(0))
    }

    fn record_outage(&mut self, run: i64, now_ms: i64, o: &StoreOutage) -> Result<()> {
        let late = i64::try_from(o.n_stored_late).unwrap_or(i64::MAX);
        let dropped = i64::try_from(o.n_dropped).unwrap_or(i64::MAX);
        self.conn.execute(
            "INSERT OR IGNORE INTO store_outages
                 (node, run, from_ms, to_ms, n_stored_late, n_dropped, recorded_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![o.node, run, o.from_ms, o.to_ms, late, dropped, now_ms],
        )?;
        Ok(())
    }

    fn store_outages(&mut self, from_ms: i64, to_ms: i64) -> Result<Vec<StoreOutage>> {
        let mut stmt = self.conn.prepare(
            "SELECT node, from_ms, to_ms, n_stored_late, n_dropped FROM store_outages
             WHERE from_ms <= ?2 AND to_ms >= ?1 ORDER BY from_ms, node",
        )?;
        let rows = stmt.query_map(params![from_ms, to_ms], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
            ))
        })?;
        let mut out = Vec::new();
        for r in rows {
            let (node, from_ms, to_ms, late, dropped) = r?;
            let bad =
                |e: std::num::TryFromIntError| LedgerError::Corrupt(format!("store outage: {e}"));
            out.push(StoreOutage {
                node,
                from_ms,
                to_ms,
                n_stored_late: u64::try_from(late).map_err(bad)?,
                n_dropped: u64::try_from(dropped).map_err(bad)?,
            });
        }
        Ok(out)
    }

    fn append(&mut self, node: &str, run: i64, now_ms: i64, rows: &[Row]) -> Result<Vec<bool>> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut fresh = Vec::with_capacity(rows.len());
        {
            let mut ins = tx.prepare_cached(
                "INSERT OR IGNORE INTO events
                 (event_id, conference, point, session, at_ms, kind, value, node, run, stored_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?;
            for r in rows {
                let n = ins.execute(params![
                    &r.event_id[..],
                    r.conference,
                    r.point,
                    r.session,
                    r.at_ms,
                    r.kind,
                    r.value,
                    node,
                    run,
                    now_ms
                ])?;
                fresh.push(n == 1);
            }
            tx.prepare_cached("UPDATE nodes SET last_alive_ms = ?2 WHERE node = ?1 AND run = ?3")?
                .execute(params![node, now_ms, run])?;
        }
        tx.commit()?;
        Ok(fresh)
    }

    fn heartbeat(&mut self, node: &str, run: RunInfo) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO nodes (node, run, run_started_ms, last_alive_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (node) DO UPDATE SET run = excluded.run,
                     run_started_ms = excluded.run_started_ms, last_alive_ms = excluded.last_alive_ms",
            )?
            .execute(params![node, run.run, run.run_started_ms, run.last_alive_ms])?;
        Ok(())
    }

    fn last_run(&mut self, node: &str) -> Result<Option<RunInfo>> {
        Ok(self
            .conn
            .prepare_cached("SELECT run, run_started_ms, last_alive_ms FROM nodes WHERE node = ?1")?
            .query_row(params![node], |r| {
                Ok(RunInfo {
                    run: r.get(0)?,
                    run_started_ms: r.get(1)?,
                    last_alive_ms: r.get(2)?,
                })
            })
            .optional()?)
    }

    fn events(&mut self, conference: &ConferenceId) -> Result<Vec<Event>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE conference = ?1 ORDER BY seq"
        ))?;
        read_events(&mut stmt, params![conference.as_str()])
    }

    fn events_of_run(&mut self, node: &str, run: i64) -> Result<Vec<Event>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE node = ?1 AND run = ?2 ORDER BY seq"
        ))?;
        read_events(&mut stmt, params![node, run])
    }

    fn events_after(&mut self, after: i64, limit: usize) -> Result<Vec<StoredEvent>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {EVENT_COLUMNS}, seq, node, run FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2"
        ))?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut rows = stmt.query(params![after, limit])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let id: Vec<u8> = r.get(0)?;
            let conference: String = r.get(1)?;
            let point: Option<String> = r.get(2)?;
            let session: Option<String> = r.get(3)?;
            let kind: String = r.get(5)?;
            let event = codec::from_row(
                &id,
                &conference,
                point.as_deref(),
                session.as_deref(),
                r.get(4)?,
                &kind,
                r.get(6)?,
            )?;
            out.push(StoredEvent {
                seq: r.get(7)?,
                event,
                node: r.get(8)?,
                run: r.get(9)?,
            });
        }
        Ok(out)
    }

    fn import(&mut self, now_ms: i64, rows: &[(Row, &str, i64)]) -> Result<Vec<bool>> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut fresh = Vec::with_capacity(rows.len());
        {
            let mut ins = tx.prepare_cached(
                "INSERT OR IGNORE INTO events
                 (event_id, conference, point, session, at_ms, kind, value, node, run, stored_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?;
            for (r, node, run) in rows {
                let n = ins.execute(params![
                    &r.event_id[..],
                    r.conference,
                    r.point,
                    r.session,
                    r.at_ms,
                    r.kind,
                    r.value,
                    node,
                    run,
                    now_ms
                ])?;
                fresh.push(n == 1);
            }
        }
        tx.commit()?;
        Ok(fresh)
    }

    fn point_nodes(&mut self, conference: &ConferenceId) -> Result<Vec<(PointId, String)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT DISTINCT point, node FROM events
             WHERE conference = ?1 AND session IS NOT NULL
               AND kind <> 'rollcall_answered' ORDER BY point, node",
        )?;
        let rows = stmt.query_map(params![conference.as_str()], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (p, node) = row?;
            out.push((parse_corrupt(PointId::parse(&p))?, node));
        }
        Ok(out)
    }

    fn count_event_id(&mut self, id: EventId) -> Result<u64> {
        let n: i64 = self
            .conn
            .prepare_cached("SELECT count(*) FROM events WHERE event_id = ?1")?
            .query_row(params![&id.to_bytes()[..]], |r| r.get(0))?;
        Ok(n.max(0) as u64)
    }

    fn n_events(&mut self) -> Result<u64> {
        let n: i64 = self
            .conn
            .query_row("SELECT count(*) FROM events", [], |r| r.get(0))?;
        Ok(n.max(0) as u64)
    }

    fn organisations(&mut self) -> Result<Vec<Organisation>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, name FROM organisations ORDER BY id")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, name) = row?;
            out.push(Organisation {
                id: parse_corrupt(OrgId::parse(&id))?,
                name,
            });
        }
        Ok(out)
    }

    fn points(&mut self) -> Result<Vec<PointInfo>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, org_id, name, location, expected_headcount FROM points ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Option<u32>>(4)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, org, name, location, expected_headcount) = row?;
            out.push(PointInfo {
                id: parse_corrupt(PointId::parse(&id))?,
                org: parse_corrupt(OrgId::parse(&org))?,
                name,
                location,
                expected_headcount,
            });
        }
        Ok(out)
    }

    fn upsert_organisation(&mut self, org: &Organisation) -> Result<()> {
        upsert_org(&self.conn, org)
    }

    fn upsert_point(&mut self, point: &PointInfo) -> Result<()> {
        upsert_point(&self.conn, point)
    }

    fn remove_organisation(&mut self, id: &OrgId) -> Result<bool> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n_points: i64 = tx.query_row(
            "SELECT count(*) FROM points WHERE org_id = ?1",
            params![id.as_str()],
            |r| r.get(0),
        )?;
        if n_points > 0 {
            return Err(LedgerError::Conflict(format!(
                "organisation {id} still has {n_points} point(s); remove or move them first"
            )));
        }
        let n = tx.execute(
            "DELETE FROM organisations WHERE id = ?1",
            params![id.as_str()],
        )?;
        tx.commit()?;
        Ok(n > 0)
    }

    fn remove_point(&mut self, id: &PointId) -> Result<bool> {
        let n = self
            .conn
            .execute("DELETE FROM points WHERE id = ?1", params![id.as_str()])?;
        Ok(n > 0)
    }

    fn import_registry(&mut self, orgs: &[Organisation], points: &[PointInfo]) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        for o in orgs {
            upsert_org(&tx, o)?;
        }
        for p in points {
            upsert_point(&tx, p)?;
        }
        tx.commit()?;
        Ok(())
    }

    fn conferences(&mut self) -> Result<Vec<Conference>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, title, created_ms, stream_key, viewer_token, ended_ms, seed_stream_key
             FROM conferences ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, Option<i64>>(5)?,
                r.get::<_, String>(6)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, title, created_ms, stream_key, viewer_token, ended_ms, seed_stream_key) = row?;
            out.push(Conference {
                id: parse_corrupt(ConferenceId::parse(&id))?,
                title,
                created_ms,
                stream_key,
                viewer_token,
                ended_ms,
                seed_stream_key,
            });
        }
        Ok(out)
    }

    fn upsert_conference(&mut self, c: &Conference) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO conferences
                     (id, title, created_ms, stream_key, viewer_token, ended_ms, seed_stream_key)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (id) DO UPDATE SET title = excluded.title,
                     stream_key = excluded.stream_key, viewer_token = excluded.viewer_token,
                     ended_ms = excluded.ended_ms, seed_stream_key = excluded.seed_stream_key",
            )?
            .execute(params![
                c.id.as_str(),
                c.title,
                c.created_ms,
                c.stream_key,
                c.viewer_token,
                c.ended_ms,
                c.seed_stream_key
            ])?;
        Ok(())
    }

    fn token_generations(&mut self) -> Result<Vec<(ConferenceId, PointId, u32)>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT conference, point, generation FROM token_generations")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, u32>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (c, p, g) = row?;
            out.push((
                parse_corrupt(ConferenceId::parse(&c))?,
                parse_corrupt(PointId::parse(&p))?,
                g,
            ));
        }
        Ok(out)
    }

    fn bump_token_generation(&mut self, conference: &ConferenceId, point: &PointId) -> Result<u32> {
        let g: u32 = self
            .conn
            .prepare_cached(
                "INSERT INTO token_generations (conference, point, generation) VALUES (?1, ?2, 1)
                 ON CONFLICT (conference, point) DO UPDATE SET generation = generation + 1
                 RETURNING generation",
            )?
            .query_row(params![conference.as_str(), point.as_str()], |r| r.get(0))?;
        Ok(g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ledger_made_before_the_conference_registry_opens_with_its_conferences() {
        let dir = std::env::temp_dir().join(format!("hallcast-sqlite-{}", crate::new_event_id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ledger.sqlite3");
        {
            // The conferences table as the first release made it.
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE conferences (id TEXT PRIMARY KEY, title TEXT NOT NULL,
                                           created_ms INTEGER NOT NULL);
                 INSERT INTO conferences VALUES ('hoi-nghi', 'Hội nghị', 7);",
            )
            .unwrap();
        }
        let mut store = SqliteStore::open(&path).unwrap();
        let cs = store.conferences().unwrap();
        assert_eq!(
            cs,
            vec![Conference::new(
                ConferenceId::parse("hoi-nghi").unwrap(),
                "Hội nghị".into(),
                String::new(),
                7
            )]
        );
        // Opening again finds the columns there and adds nothing.
        drop(store);
        let mut store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.conferences().unwrap(), cs);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn migrations_adopt_old_ledgers_and_refuse_newer_schemas() {
        let dir = tempfile::tempdir().unwrap();

        // A fresh file: every migration, recorded.
        let fresh = dir.path().join("fresh.sqlite3");
        let mut store = SqliteStore::open(&fresh).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        let o = StoreOutage {
            node: "central".into(),
            from_ms: 1_000,
            to_ms: 5_000,
            n_stored_late: 7,
            n_dropped: 1,
        };
        store.record_outage(3, 6_000, &o).unwrap();
        store.record_outage(3, 6_500, &o).unwrap(); // recorded twice: stored once
        assert_eq!(store.store_outages(0, 10_000).unwrap(), vec![o.clone()]);
        assert_eq!(store.store_outages(5_000, 9_000).unwrap(), vec![o.clone()]);
        assert!(store.store_outages(5_001, 9_000).unwrap().is_empty());
        drop(store);
        // Opening again applies nothing twice.
        let store = SqliteStore::open(&fresh).unwrap();
        let n: i64 = store
            .conn
            .query_row("SELECT count(*) FROM schema_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, SCHEMA_VERSION);
        drop(store);

        // A ledger made before schema versions (the first release's tables, an event in
        // them): adopted as version 1, migrated, its event kept.
        let old = dir.path().join("old.sqlite3");
        {
            let conn = Connection::open(&old).unwrap();
            conn.execute_batch(SCHEMA).unwrap();
            conn.execute(
                "INSERT INTO events (event_id, conference, at_ms, kind, node, run, stored_ms)
                 VALUES (?1, 'c', 1, 'broadcast_started', 'central', 1, 1)",
                params![vec![7u8; 16]],
            )
            .unwrap();
        }
        let mut store = SqliteStore::open(&old).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        assert_eq!(store.n_events().unwrap(), 1);
        assert!(store.conferences().unwrap().is_empty());
        assert!(store.store_outages(0, i64::MAX).unwrap().is_empty());
        drop(store);

        // A newer release's schema: refused, named, untouched.
        {
            let conn = Connection::open(&old).unwrap();
            conn.execute(
                "INSERT INTO schema_version (version, applied_ms) VALUES (?1, 0)",
                params![SCHEMA_VERSION + 1],
            )
            .unwrap();
        }
        let err = SqliteStore::open(&old)
            .err()
            .expect("a newer schema is refused");
        assert!(
            matches!(err, LedgerError::SchemaTooNew { found, supported }
                if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION),
            "{err}"
        );
        assert!(
            err.to_string().contains("newer than this hallcast knows"),
            "{err}"
        );
    }
}
