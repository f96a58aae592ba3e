//! The ledger suite on PostgreSQL. Compiled only with `--features pg-tests`; then
//! `HALLCAST_TEST_PG_URL` must point at a real server (see scripts/pg-test-setup.sh) or
//! every test here fails with a message saying so.
//!
//! Below the suite: the store outage tests. They never stop the shared test server (other
//! tests use it at the same time); the ledger reaches PostgreSQL through a TCP proxy the test
//! owns ([`Proxy`]), which can cut every connection and refuse new ones, then let them
//! through again.

#![cfg(feature = "pg-tests")]

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hallcast_core::accounting::{
    ConferenceId, Event, EventId, EventKind, PointId, ReportConfig, SessionChange, SessionId,
};
use hallcast_ledger::render::{self, RenderOptions};
use hallcast_ledger::{
    EmitError, Ledger, LedgerConfig, LedgerError, StoreConfig, new_event_id, now_ms,
};

ledger_suite!(common::pg);

/// A TCP proxy in front of the test server: `cut` closes every connection and refuses new
/// ones (accepted, then closed at once: what a client sees of a server that went away);
/// `resume` lets connections through again.
struct Proxy {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (up2, conns2) = (up.clone(), conns.clone());
        // Runs until the test process ends (blocked in accept).
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if !up2.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                // Small writes both ways (a query, its answer): without this, Nagle and
                // delayed ACKs add 40 ms to each round trip through the proxy.
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let mut held = conns2.lock().unwrap();
                for s in [&client, &server] {
                    held.push(s.try_clone().unwrap());
                }
                drop(held);
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || pipe(client, server));
                std::thread::spawn(move || pipe(s2, c2));
            }
        });
        Proxy { addr, up, conns }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for s in self.conns.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    fn resume(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

/// A fresh schema on the test server, reached through a new proxy.
fn through_proxy(name: &str) -> (Proxy, StoreConfig) {
    let StoreConfig::Postgres { url, schema } = common::pg(name).config else {
        unreachable!("common::pg makes a PostgreSQL store")
    };
    // postgres://user:pass@HOST:PORT/db
    let (head, rest) = url.rsplit_once('@').expect("user@host in the test URL");
    let (host_port, db) = rest.split_once('/').expect("/database in the test URL");
    let target: SocketAddr = host_port
        .parse()
        .expect("HALLCAST_TEST_PG_URL's host is an IP:port");
    let proxy = Proxy::start(target);
    let url = format!("{head}@{}/{db}", proxy.addr);
    (proxy, StoreConfig::Postgres { url, schema })
}

fn config(store: StoreConfig) -> LedgerConfig {
    let mut cfg = LedgerConfig::new(store, common::secret());
    cfg.max_retry_delay = Duration::from_millis(200);
    cfg.append_wait = Duration::from_millis(500);
    cfg.heartbeat = Duration::from_millis(300);
    cfg
}

fn conf() -> ConferenceId {
    ConferenceId::parse("outage-2025").unwrap()
}

fn joined(point: &str, session: u128) -> Event {
    Event::session_event(
        new_event_id(),
        conf(),
        PointId::parse(point).unwrap(),
        SessionId(session),
        now_ms(),
        SessionChange::Started,
    )
}

fn broadcast_started() -> Event {
    Event {
        event_id: new_event_id(),
        conference: conf(),
        at_ms: now_ms(),
        kind: EventKind::BroadcastStarted,
    }
}

async fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < limit, "waited {limit:?} for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The database goes away mid-run and comes back: every event emitted meanwhile is stored
/// exactly once, a durable append answers `Pending` instead of hanging (and is stored too),
/// the ledger's counters show the outage while it lasts, and the report says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_loses_no_event_and_the_report_says_so() {
    let (proxy, store) = through_proxy("outage_no_loss");
    let ledger = Ledger::open(config(store)).await.expect("open");
    let sink = ledger.sink();
    let mut ids: Vec<EventId> = Vec::new();
    let start = broadcast_started();
    ids.push(start.event_id);
    ledger
        .append(start)
        .await
        .expect("stored before the outage");

    proxy.cut();
    let cut_at = now_ms();
    for i in 0..300u128 {
        let ev = joined(&format!("p-{}", i % 30), i + 1);
        ids.push(ev.event_id);
        sink.emit(ev).expect("the queue has room");
    }
    wait_for("the outage to show", Duration::from_secs(10), || {
        ledger.stats().outage_since_ms.is_some()
    })
    .await;
    // A durable append does not hang: it answers Pending after `append_wait`, and its event
    // stays queued.
    let t = Instant::now();
    let late = joined("p-late", 999);
    ids.push(late.event_id);
    match ledger.append(late).await {
        Err(LedgerError::Pending { since_ms }) => assert!(since_ms >= cut_at - 1_000),
        other => panic!("append during an outage: {other:?}"),
    }
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    // Reads fail (they do not hang) while the database is away.
    assert!(ledger.n_events().await.is_err());
    let s = ledger.stats();
    assert_eq!(s.n_pending, 301, "{s:?}");
    assert_eq!((s.n_failed, s.n_dropped, s.n_outages), (0, 0, 0), "{s:?}");
    tokio::time::sleep(Duration::from_millis(800)).await;

    proxy.resume();
    tokio::time::timeout(Duration::from_secs(30), ledger.flush())
        .await
        .expect("flush once the database is back")
        .unwrap();
    wait_for("the outage to end", Duration::from_secs(10), || {
        ledger.stats().n_outages == 1
    })
    .await;
    let s = ledger.stats();
    assert_eq!(s.outage_since_ms, None, "{s:?}");
    assert_eq!((s.n_failed, s.n_dropped, s.n_pending), (0, 0, 0), "{s:?}");
    assert_eq!(s.n_stored_late, 301, "{s:?}");

    // Nothing lost, nothing twice.
    for id in &ids {
        assert_eq!(ledger.count_event_id(*id).await.unwrap(), 1, "event {id}");
    }
    assert_eq!(ledger.events(&conf()).await.unwrap().len(), ids.len());

    // The outage is recorded durably and the report shows it.
    let report = ledger
        .report(&conf(), now_ms(), ReportConfig::default())
        .await
        .unwrap();
    assert_eq!(report.store_outages.len(), 1, "{:?}", report.store_outages);
    let o = &report.store_outages[0];
    assert_eq!(o.node, "central");
    assert_eq!((o.n_stored_late, o.n_dropped), (301, 0));
    assert!(
        o.from_ms >= cut_at - 1_000 && o.to_ms > o.from_ms + 500,
        "{o:?}"
    );
    let json = render::report_json(&report, None, &RenderOptions::default()).unwrap();
    assert!(
        json.contains("301 sự kiện được ghi muộn, 0 sự kiện bị mất"),
        "{json}"
    );
    ledger.close().await.unwrap();

    // Reopened (a restart, straight to the server this time), the record is still there.
    drop((ledger, proxy));
    let direct = StoreConfig::Postgres {
        url: common::pg_url(),
        schema: Some("t_outage_no_loss".into()),
    };
    let again = Ledger::open(config(direct)).await.unwrap();
    let report = again
        .report(&conf(), now_ms(), ReportConfig::default())
        .await
        .unwrap();
    assert_eq!(report.store_outages.len(), 1);
    again.close().await.unwrap();
}

/// Events that do not fit the queue during an outage are dropped, counted, and the report
/// names how many; everything that fit is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_beyond_the_queue_during_an_outage_are_dropped_and_reported() {
    let (proxy, store) = through_proxy("outage_overflow");
    let mut cfg = config(store);
    cfg.queue_capacity = 64;
    cfg.max_batch = 16;
    let ledger = Ledger::open(cfg).await.expect("open");
    let sink = ledger.sink();
    ledger.append(broadcast_started()).await.unwrap();

    proxy.cut();
    // One event takes the writer into the outage (it holds that batch and retries).
    let first = joined("p-0", 1);
    let mut kept = vec![first.event_id];
    sink.emit(first).unwrap();
    wait_for("the outage to show", Duration::from_secs(10), || {
        ledger.stats().outage_since_ms.is_some()
    })
    .await;
    let mut n_full = 0u64;
    for i in 0..300u128 {
        let ev = joined(&format!("p-{}", i % 10), i + 2);
        let id = ev.event_id;
        match sink.emit(ev) {
            Ok(()) => kept.push(id),
            Err(EmitError::Full) => n_full += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(
        kept.len(),
        1 + 64,
        "the queue holds 64 behind the batch in hand"
    );
    assert_eq!(n_full, 300 - 64);
    assert_eq!(ledger.stats().n_dropped, n_full);

    proxy.resume();
    tokio::time::timeout(Duration::from_secs(30), ledger.flush())
        .await
        .expect("flush once the database is back")
        .unwrap();
    wait_for("the outage to end", Duration::from_secs(10), || {
        ledger.stats().n_outages == 1
    })
    .await;
    for id in &kept {
        assert_eq!(ledger.count_event_id(*id).await.unwrap(), 1, "event {id}");
    }
    assert_eq!(ledger.events(&conf()).await.unwrap().len(), 1 + kept.len());
    let report = ledger
        .report(&conf(), now_ms(), ReportConfig::default())
        .await
        .unwrap();
    assert_eq!(report.store_outages.len(), 1);
    let o = &report.store_outages[0];
    assert_eq!((o.n_stored_late, o.n_dropped), (kept.len() as u64, n_full));
    let html = render::report_html(&report, None, &RenderOptions::default());
    assert!(
        html.contains(&format!(
            "{} sự kiện được ghi muộn, {n_full} sự kiện bị mất",
            kept.len()
        )),
        "{html}"
    );
    ledger.close().await.unwrap();
}

/// Closing while the database is away does not hang: after `close_wait` the ledger gives up,
/// counts the events it could not store, and says how many.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_during_an_outage_is_bounded_and_says_what_was_lost() {
    let (proxy, store) = through_proxy("outage_close");
    let mut cfg = config(store);
    cfg.close_wait = Duration::from_secs(1);
    let ledger = Ledger::open(cfg).await.expect("open");
    proxy.cut();
    for i in 0..10u128 {
        ledger.sink().emit(joined("p-1", i + 1)).unwrap();
    }
    wait_for("the outage to show", Duration::from_secs(10), || {
        ledger.stats().outage_since_ms.is_some()
    })
    .await;
    let t = Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(10), ledger.close())
        .await
        .expect("close is bounded")
        .expect_err("close says what was not stored");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(
        err.to_string().contains("10 event(s) were not stored"),
        "{err}"
    );
    assert_eq!(ledger.stats().n_failed, 10);
    drop(proxy);
}

/// Migrations on PostgreSQL: a new schema is at the current version; a schema a newer
/// release wrote is refused with a clear error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_version_and_a_newer_schema_is_refused() {
    let store = common::pg("schema_version");
    let ledger = common::open(&store).await;
    assert_eq!(
        ledger.schema_version().await.unwrap(),
        hallcast_ledger::store::SCHEMA_VERSION
    );
    ledger.close().await.unwrap();
    drop(ledger);
    let url = common::pg_url();
    common::off_runtime(|| {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        c.batch_execute(&format!(
            "INSERT INTO t_schema_version.schema_version (version, applied_ms) VALUES ({}, 0)",
            hallcast_ledger::store::SCHEMA_VERSION + 1
        ))
        .unwrap();
    });
    let err = Ledger::open(LedgerConfig::new(store.config.clone(), common::secret()))
        .await
        .expect_err("a newer schema is refused");
    assert!(matches!(err, LedgerError::SchemaTooNew { .. }), "{err}");
    assert!(
        err.to_string().contains("newer than this hallcast knows"),
        "{err}"
    );
}
