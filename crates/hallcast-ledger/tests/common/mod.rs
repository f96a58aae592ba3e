//! The ledger suite, run once per backend (tests/sqlite.rs, tests/pg.rs).

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hallcast_core::accounting::{
    ConferenceId, EndReason, Event, EventId, EventKind, OrgId, Organisation, PointId, PointInfo,
    ReportConfig, SessionChange, SessionId, build_report, fold,
};
use hallcast_ledger::{
    Appended, Conference, EventJson, Ledger, LedgerConfig, LedgerError, OriginEvent, Secret,
    StoreConfig, TokenError, TokenSigner, TokenVerifier, new_event_id, now_ms,
};

/// A store for one test; keeps its temporary directory alive.
pub struct TestStore {
    pub config: StoreConfig,
    pub dir: Option<tempfile::TempDir>,
}

pub fn sqlite(_name: &str) -> TestStore {
    let dir = tempfile::tempdir().expect("temp dir");
    TestStore {
        config: StoreConfig::sqlite_in(dir.path()),
        dir: Some(dir),
    }
}

/// The PostgreSQL URL of the test server. Panics (fails the test) when missing: PG tests
/// never pass silently.
pub fn pg_url() -> String {
    match std::env::var("HALLCAST_TEST_PG_URL") {
        Ok(u) if !u.is_empty() => u,
        _ => panic!(
            "HALLCAST_TEST_PG_URL is not set. The pg-tests feature runs the ledger suite against \
             a real PostgreSQL server: run `eval \"$(scripts/pg-test-setup.sh)\"` first (it \
             installs and starts PostgreSQL 15 and prints the URL)."
        ),
    }
}

/// Runs blocking database code on a plain thread (the blocking `postgres` client must not
/// run on an async runtime's thread).
pub fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| s.spawn(f).join().expect("blocking helper panicked"))
}

/// A fresh schema per test in the test server.
pub fn pg(name: &str) -> TestStore {
    let url = pg_url();
    let schema = format!("t_{name}");
    off_runtime(|| {
        let mut c = postgres::Client::connect(&url, postgres::NoTls)
            .unwrap_or_else(|e| panic!("cannot connect to HALLCAST_TEST_PG_URL: {e}"));
        c.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
            .expect("drop old test schema");
    });
    TestStore {
        config: StoreConfig::Postgres {
            url,
            schema: Some(schema),
        },
        dir: None,
    }
}

pub fn secret() -> Secret {
    Secret::from_bytes(b"test-secret-0123456789".to_vec()).unwrap()
}

pub async fn open(store: &TestStore) -> Ledger {
    Ledger::open(LedgerConfig::new(store.config.clone(), secret()))
        .await
        .expect("open ledger")
}

fn conf() -> ConferenceId {
    ConferenceId::parse("hn-2025").unwrap()
}

fn pid(s: &str) -> PointId {
    PointId::parse(s).unwrap()
}

fn sess(point: &str, session: &str, at_ms: i64, change: SessionChange) -> Event {
    Event::session_event(
        new_event_id(),
        conf(),
        pid(point),
        test_session(session),
        at_ms,
        change,
    )
}

fn conf_event(at_ms: i64, kind: EventKind) -> Event {
    Event {
        event_id: new_event_id(),
        conference: conf(),
        at_ms,
        kind,
    }
}

const REGISTRY_CSV: &str = "point_id,point_name,org_id,org_name,location,expected_headcount\n\
    hn-1,Điểm cầu Ba Đình,ha-noi,Đảng ủy Thành phố Hà Nội,\"Phòng họp tầng 2, trụ sở\",40\n\
    hn-2,Điểm cầu Hoàn Kiếm,ha-noi,Đảng ủy Thành phố Hà Nội,Hoàn Kiếm,30\n\
    hue-1,Điểm cầu Thừa Thiên Huế,hue,Đảng ủy Huế,Huế,25\n\
    ct-1,Điểm cầu Ninh Kiều,can-tho,Đảng ủy Cần Thơ,Cần Thơ,\n";

pub async fn append_is_durable_and_idempotent(store: TestStore) {
    let ledger = open(&store).await;
    let t = 1_700_000_000_000;
    // Headcounts: no session is left open, so reopening adds no recovery events.
    let evs: Vec<Event> = (0..500)
        .map(|i| {
            conf_event(
                t + i,
                EventKind::Headcount {
                    point: pid("hn-1"),
                    n_people: i as u32,
                },
            )
        })
        .collect();
    for ev in &evs {
        assert_eq!(ledger.append(ev.clone()).await.unwrap(), Appended::Stored);
    }
    for ev in evs.iter().step_by(10) {
        assert_eq!(
            ledger.append(ev.clone()).await.unwrap(),
            Appended::Duplicate
        );
    }
    let stats = ledger.stats();
    assert_eq!(stats.n_stored, 500);
    assert_eq!(stats.n_duplicates, 50);
    assert_eq!(stats.n_failed, 0);
    ledger.close().await.unwrap();
    assert!(matches!(
        ledger.append(evs[0].clone()).await,
        Err(LedgerError::Closed)
    ));
    drop(ledger);

    let again = open(&store).await;
    assert_eq!(again.n_events().await.unwrap(), 500);
    let stored = again.events(&conf()).await.unwrap();
    assert_eq!(stored, evs, "events come back identical, in storage order");
    assert_eq!(again.count_event_id(evs[3].event_id).await.unwrap(), 1);
    assert_eq!(again.count_event_id(EventId(42)).await.unwrap(), 0);
    again.close().await.unwrap();
}

/// Roll calls: the start and the answers are stored durably before they are acknowledged,
/// an answer resent with its event id is stored once, and they come back after a reopen as
/// per-point outcomes (answered / no answer / not connected) in `roll_calls` and in every
/// report document.
pub async fn roll_calls_durable_idempotent_and_reported(store: TestStore) {
    use hallcast_core::accounting::{RollCallId, RollCallOutcome};
    use hallcast_ledger::render::{self, Lang, RenderOptions};

    let ledger = open(&store).await;
    ledger
        .import_csv(REGISTRY_CSV.as_bytes().to_vec())
        .await
        .unwrap();
    let t = 1_700_000_000_000i64;
    let s = 1000i64;
    let ended = SessionChange::Ended {
        reason: EndReason::Deleted,
    };
    for ev in [
        conf_event(t, EventKind::BroadcastStarted),
        // hn-1 answers, hn-2 ignores it, hue-1 left before, ct-1 never came.
        sess("hn-1", "r1", t, SessionChange::MediaFlowing),
        sess("hn-2", "r2", t, SessionChange::MediaFlowing),
        sess("hue-1", "r3", t, SessionChange::MediaFlowing),
        sess("hue-1", "r3", t + 10 * s, ended),
    ] {
        assert_eq!(ledger.append(ev).await.unwrap(), Appended::Stored);
    }
    let start = conf_event(
        t + 20 * s,
        EventKind::RollCallStarted {
            deadline_ms: t + 80 * s,
        },
    );
    let rc = RollCallId::from(start.event_id);
    assert_eq!(ledger.append(start).await.unwrap(), Appended::Stored);
    let answer = conf_event(
        t + 30 * s,
        EventKind::RollCallAnswered {
            point: pid("hn-1"),
            rollcall: rc,
            n_people: 17,
        },
    );
    assert_eq!(
        ledger.append(answer.clone()).await.unwrap(),
        Appended::Stored
    );
    assert_eq!(
        ledger.append(answer.clone()).await.unwrap(),
        Appended::Duplicate,
        "a resent answer is stored once"
    );
    ledger.close().await.unwrap();
    drop(ledger);

    let again = open(&store).await;
    assert_eq!(again.count_event_id(answer.event_id).await.unwrap(), 1);
    let calls = again.roll_calls(&conf(), t + 90 * s).await.unwrap();
    assert_eq!(calls.len(), 1);
    let c = &calls[0];
    assert_eq!(
        (c.id, c.started_ms, c.deadline_ms),
        (rc, t + 20 * s, t + 80 * s)
    );
    assert!(!c.running);
    let got: Vec<(&str, RollCallOutcome)> = c
        .points
        .iter()
        .map(|p| (p.point.as_str(), p.outcome))
        .collect();
    assert_eq!(
        got,
        vec![
            ("ct-1", RollCallOutcome::NotConnected),
            (
                "hn-1",
                RollCallOutcome::Answered {
                    n_people: 17,
                    at_ms: t + 30 * s
                }
            ),
            ("hn-2", RollCallOutcome::NoAnswer),
            ("hue-1", RollCallOutcome::NotConnected),
        ]
    );
    // While it ran, at t+25 s: nobody had answered yet.
    let early = again.roll_calls(&conf(), t + 25 * s).await.unwrap();
    assert!(early[0].running);
    assert_eq!(early[0].n_answered(), 0);
    assert_eq!(early[0].n_no_answer(), 2);

    let report = again
        .report(&conf(), t + 90 * s, ReportConfig::default())
        .await
        .unwrap();
    assert_eq!(report.roll_calls, calls);
    // An answer is not a session: the relays of the points are the sessions' only.
    let hn1 = report
        .points
        .iter()
        .find(|r| r.point == pid("hn-1"))
        .unwrap();
    assert_eq!(hn1.relays, vec!["central".to_string()]);
    let opts = RenderOptions::default();
    let json: serde_json::Value =
        serde_json::from_str(&render::report_json(&report, None, &opts).unwrap()).unwrap();
    let rc_json = &json["roll_calls"][0];
    assert_eq!(rc_json["id"], rc.to_string());
    assert_eq!(rc_json["n_answered"], 1);
    assert_eq!(rc_json["n_no_answer"], 1);
    assert_eq!(rc_json["n_not_connected"], 2);
    assert_eq!(rc_json["points"][1]["outcome"], "answered");
    assert_eq!(rc_json["points"][1]["n_people"], 17);
    assert_eq!(rc_json["points"][2]["outcome"], "no_answer");
    let csv = String::from_utf8(render::report_csv(&report, &opts).unwrap()).unwrap();
    assert!(csv.lines().next().unwrap().contains("Điểm danh "), "{csv}");
    let hn1_line = csv.lines().find(|l| l.contains(",hn-1,")).unwrap();
    assert!(
        hn1_line.ends_with("đã trả lời: 17 người (2023-11-15 05:13:50)"),
        "{hn1_line}"
    );
    assert!(
        csv.lines()
            .any(|l| l.contains(",hn-2,") && l.ends_with(",không trả lời"))
    );
    assert!(
        csv.lines()
            .any(|l| l.contains(",ct-1,") && l.ends_with(",không kết nối"))
    );
    let en = RenderOptions {
        lang: Lang::En,
        ..RenderOptions::default()
    };
    let csv_en = String::from_utf8(render::report_csv(&report, &en).unwrap()).unwrap();
    assert!(csv_en.lines().next().unwrap().ends_with(",rollcall_1"));
    let html = render::report_html(&report, None, &opts);
    assert!(html.contains("data-point=\"hn-1\" data-outcome=\"answered\""));
    assert!(html.contains("data-point=\"hn-2\" data-outcome=\"no_answer\""));
    assert!(html.contains("data-point=\"hue-1\" data-outcome=\"not_connected\""));
    // Stored and wire form: the answer travels up the tree, the start does not.
    let stored = export_all(&again).await;
    let kinds: Vec<String> = stored
        .iter()
        .map(|e| EventJson::from(e).kind)
        .filter(|k| k.starts_with("rollcall"))
        .collect();
    assert_eq!(kinds, ["rollcall_started", "rollcall_answered"]);
    again.close().await.unwrap();
}

pub async fn emit_never_blocks_and_counts_drops(store: TestStore) {
    // Big queue: everything emitted is stored after a flush.
    let ledger = open(&store).await;
    let sink = ledger.sink();
    for i in 0..20_000 {
        sink.emit(sess("hn-1", "a", i, SessionChange::Frozen))
            .unwrap();
    }
    ledger.flush().await.unwrap();
    assert_eq!(ledger.n_events().await.unwrap(), 20_000);
    let s = ledger.stats();
    assert_eq!((s.n_stored, s.n_dropped), (20_000, 0));
    assert!(s.n_batches < 20_000, "group commit batches events: {s:?}");
    ledger.close().await.unwrap();
    assert!(
        sink.emit(sess("hn-1", "a", 0, SessionChange::Frozen))
            .is_err()
    );
    drop(ledger);

    // Tiny queue: the sink drops instead of waiting, and says so.
    let mut cfg = LedgerConfig::new(store.config.clone(), secret());
    cfg.queue_capacity = 2;
    cfg.max_batch = 2;
    let ledger = Ledger::open(cfg).await.unwrap();
    let sink = ledger.sink();
    let before = ledger.n_events().await.unwrap();
    let started = Instant::now();
    let mut n_ok = 0u64;
    for i in 0..5_000 {
        if sink
            .emit(sess("hn-2", "b", i, SessionChange::Frozen))
            .is_ok()
        {
            n_ok += 1;
        }
    }
    let took = started.elapsed();
    ledger.flush().await.unwrap();
    let s = ledger.stats();
    assert!(s.n_dropped > 0, "{s:?}");
    assert_eq!(s.n_dropped, sink.n_dropped());
    assert_eq!(n_ok + s.n_dropped, 5_000);
    assert_eq!(ledger.n_events().await.unwrap() - before, n_ok);
    assert!(
        took < Duration::from_secs(2),
        "emit must not wait: {took:?}"
    );
    ledger.close().await.unwrap();
}

pub async fn registry_crud_and_csv(store: TestStore) {
    let ledger = open(&store).await;
    let summary = ledger
        .import_csv(REGISTRY_CSV.as_bytes().to_vec())
        .await
        .unwrap();
    assert_eq!((summary.n_organisations, summary.n_points), (3, 4));
    let orgs = ledger.organisations().await.unwrap();
    assert_eq!(orgs.len(), 3);
    assert_eq!(orgs[1].name, "Đảng ủy Thành phố Hà Nội");
    let points = ledger.points().await.unwrap();
    assert_eq!(points.len(), 4);
    let hn1 = points.iter().find(|p| p.id.as_str() == "hn-1").unwrap();
    assert_eq!(hn1.location, "Phòng họp tầng 2, trụ sở");
    assert_eq!(hn1.expected_headcount, Some(40));

    // Export, then import into a fresh store: identical registry.
    let csv = ledger.export_csv().await.unwrap();
    let text = String::from_utf8(csv.clone()).unwrap();
    assert!(text.contains("Điểm cầu Thừa Thiên Huế"));

    // Edit and remove.
    let mut p = hn1.clone();
    p.name = "Điểm cầu Ba Đình (mới)".into();
    ledger.upsert_point(p).await.unwrap();
    let orphan = PointInfo {
        id: pid("x-1"),
        org: OrgId::parse("nowhere").unwrap(),
        name: "x".into(),
        location: String::new(),
        expected_headcount: None,
    };
    assert!(matches!(
        ledger.upsert_point(orphan).await,
        Err(LedgerError::Conflict(_))
    ));
    let hue = OrgId::parse("hue").unwrap();
    assert!(matches!(
        ledger.remove_organisation(&hue).await,
        Err(LedgerError::Conflict(_))
    ));
    assert!(ledger.remove_point(&pid("hue-1")).await.unwrap());
    assert!(!ledger.remove_point(&pid("hue-1")).await.unwrap());
    assert!(ledger.remove_organisation(&hue).await.unwrap());
    ledger
        .upsert_organisation(Organisation {
            id: OrgId::parse("da-nang").unwrap(),
            name: "Đảng ủy Đà Nẵng".into(),
        })
        .await
        .unwrap();
    let points = ledger.points().await.unwrap();
    assert_eq!(points.len(), 3);
    assert_eq!(
        points
            .iter()
            .find(|p| p.id.as_str() == "hn-1")
            .unwrap()
            .name,
        "Điểm cầu Ba Đình (mới)"
    );

    // A bad file changes nothing, and is counted with its bad lines.
    let refused = ledger.stats();
    let bad = "point_id,org_id\nok-9,ha-noi\nbad id,ha-noi\nok-10,bad org\n";
    assert!(matches!(
        ledger.import_csv(bad.as_bytes().to_vec()).await,
        Err(LedgerError::Invalid(_))
    ));
    assert_eq!(ledger.points().await.unwrap().len(), 3);
    let after = ledger.stats();
    assert_eq!(
        (
            after.n_registry_files_refused - refused.n_registry_files_refused,
            after.n_registry_lines_refused - refused.n_registry_lines_refused
        ),
        (1, 2)
    );

    // Re-import the export: back to the original names, the removed point returns.
    ledger.import_csv(csv).await.unwrap();
    let points = ledger.points().await.unwrap();
    assert_eq!(points.len(), 4);
    assert_eq!(
        points
            .iter()
            .find(|p| p.id.as_str() == "hn-1")
            .unwrap()
            .name,
        "Điểm cầu Ba Đình"
    );

    let mut c = Conference::new(
        conf(),
        "Hội nghị học tập nghị quyết".into(),
        "stream-key-1".into(),
        1,
    );
    ledger.upsert_conference(c.clone()).await.unwrap();
    assert_eq!(ledger.conferences().await.unwrap(), vec![c.clone()]);
    // Every registry column is written on update (a rotated key, an end, a seed), the
    // creation time is kept.
    c.stream_key = "stream-key-2".into();
    c.viewer_token = "shared-viewers".into();
    c.ended_ms = Some(42);
    c.seed_stream_key = "stream-key-0".into();
    ledger
        .upsert_conference(Conference {
            created_ms: 99,
            ..c.clone()
        })
        .await
        .unwrap();
    assert_eq!(ledger.conferences().await.unwrap(), vec![c]);
    ledger.close().await.unwrap();
}

pub async fn tokens_verify_and_revoke(store: TestStore) {
    let ledger = open(&store).await;
    ledger
        .import_csv(REGISTRY_CSV.as_bytes().to_vec())
        .await
        .unwrap();
    let now_s = now_ms() / 1000;
    let t1 = ledger.issue_token(&conf(), &pid("hn-1"), now_s + 3600);
    let claims = ledger.verify_token(&t1).unwrap();
    assert_eq!((claims.conference, claims.point), (conf(), pid("hn-1")));
    assert!(matches!(
        ledger.verify_token(&ledger.issue_token(&conf(), &pid("hn-1"), now_s - 1)),
        Err(TokenError::Expired { .. })
    ));

    let links = ledger
        .join_links(&conf(), "http://127.0.0.1:8080/", now_s + 3600, None)
        .await
        .unwrap();
    assert_eq!(links.len(), 4);
    assert!(
        links[0]
            .url
            .starts_with("http://127.0.0.1:8080/watch/hn-2025?token=v2.")
    );
    assert_eq!(links[0].org_name, "Đảng ủy Cần Thơ");
    assert!(ledger.verify_token(&links[3].token).is_ok());

    // A link of the old form (v1, HMAC) handed out before keeps working at the ledger.
    let old = TokenSigner::new(secret()).issue_v1(&conf(), &pid("hn-1"), 0, now_s + 3600);
    assert!(old.starts_with("v1."));
    assert_eq!(ledger.verify_token(&old).unwrap().point, pid("hn-1"));
    // A relay with only the public key accepts the v2 link, not the v1 one.
    let verifier = TokenVerifier::from_public_key(&ledger.join_public_key()).unwrap();
    assert!(verifier.verify(&t1, now_s).is_ok());
    assert_eq!(verifier.verify(&old, now_s), Err(TokenError::NeedsSecret));
    assert!(ledger.token_generations().is_empty());

    assert_eq!(
        ledger.revoke_tokens(&conf(), &pid("hn-1")).await.unwrap(),
        1
    );
    assert_eq!(ledger.verify_token(&t1), Err(TokenError::Revoked));
    assert_eq!(ledger.verify_token(&old), Err(TokenError::Revoked));
    // The revocation view: what the edges get; with it the verifier refuses the link too.
    assert_eq!(ledger.token_generations(), vec![(conf(), pid("hn-1"), 1)]);
    let verifier = verifier.with_generations(ledger.token_generations());
    assert_eq!(verifier.verify(&t1, now_s), Err(TokenError::Revoked));
    assert_eq!(
        ledger.token_verifier().verify(&t1, now_s),
        Err(TokenError::Revoked)
    );
    let t2 = ledger.issue_token(&conf(), &pid("hn-1"), now_s + 3600);
    assert!(ledger.verify_token(&t2).is_ok());
    // Other points are untouched.
    assert!(
        ledger
            .verify_token(&ledger.issue_token(&conf(), &pid("hn-2"), now_s + 60))
            .is_ok()
    );
    let public_key = ledger.join_public_key();
    ledger.close().await.unwrap();
    drop(ledger);

    // Revocation survives a restart, and so does the signing key (derived from the secret).
    let again = open(&store).await;
    assert_eq!(again.join_public_key(), public_key);
    assert_eq!(again.token_generations(), vec![(conf(), pid("hn-1"), 1)]);
    assert_eq!(again.verify_token(&t1), Err(TokenError::Revoked));
    assert!(again.verify_token(&t2).is_ok());
    let only = again
        .join_links(&conf(), "http://h", now_s + 60, Some(&pid("hue-1")))
        .await
        .unwrap();
    assert_eq!(only.len(), 1);
    assert!(matches!(
        again
            .join_links(&conf(), "http://h", now_s + 60, Some(&pid("nope")))
            .await,
        Err(LedgerError::NotFound(_))
    ));
    again.close().await.unwrap();
}

/// A scripted history stored through the ledger, out of order and with duplicates, gives the
/// same report as the core fold over the clean history, and the expected numbers.
pub async fn report_from_stored_events(store: TestStore) {
    let ledger = open(&store).await;
    ledger
        .import_csv(REGISTRY_CSV.as_bytes().to_vec())
        .await
        .unwrap();
    let t = 1_700_000_000_000i64;
    let s = 1000i64;
    let h = vec![
        conf_event(t, EventKind::BroadcastStarted),
        sess("hn-1", "a1", t, SessionChange::Started),
        sess(
            "hn-1",
            "a1",
            t + 2 * s,
            SessionChange::FirstVideoSent { after_ms: 850 },
        ),
        sess(
            "hn-1",
            "a1",
            t + 100 * s,
            SessionChange::Ended {
                reason: EndReason::Timeout,
            },
        ),
        sess("hn-1", "a2", t + 120 * s, SessionChange::MediaFlowing),
        sess("hue-1", "b1", t + 300 * s, SessionChange::MediaFlowing),
        sess("hue-1", "b1", t + 400 * s, SessionChange::AudioOnly),
        sess("hue-1", "b1", t + 460 * s, SessionChange::VideoResumed),
        sess(
            "hue-1",
            "b1",
            t + 500 * s,
            SessionChange::Ended {
                reason: EndReason::Deleted,
            },
        ),
        conf_event(
            t + 10 * s,
            EventKind::Headcount {
                point: pid("hn-1"),
                n_people: 35,
            },
        ),
        conf_event(
            t + 310 * s,
            EventKind::Headcount {
                point: pid("hue-1"),
                n_people: 20,
            },
        ),
        conf_event(t + 3600 * s, EventKind::BroadcastEnded),
    ];
    let mut shuffled: Vec<Event> = h.iter().rev().cloned().collect();
    shuffled.extend(h.iter().step_by(3).cloned());
    for ev in shuffled {
        ledger.append(ev).await.unwrap();
    }
    let report = ledger
        .report(&conf(), t + 4000 * s, ReportConfig::default())
        .await
        .unwrap();
    let orgs = ledger.organisations().await.unwrap();
    let points = ledger.points().await.unwrap();
    let direct = build_report(
        &fold(conf(), &h, t + 4000 * s),
        &orgs,
        &points,
        &ReportConfig::default(),
    )
    .with_relays([
        (pid("hn-1"), "central".to_string()),
        (pid("hue-1"), "central".to_string()),
    ]);
    assert_eq!(report, direct);

    assert_eq!((report.n_points_connected, report.n_points), (2, 4));
    assert_eq!((report.n_orgs_connected, report.n_orgs), (2, 3));
    assert_eq!(report.total_headcount, 55);
    let hn1 = report
        .points
        .iter()
        .find(|r| r.point.as_str() == "hn-1")
        .unwrap();
    assert_eq!(hn1.present_ms, (98 + 3480) * s);
    assert_eq!(hn1.interruptions, 1);
    assert_eq!(hn1.longest_gap_ms, Some(20 * s));
    assert_eq!(hn1.first_video_after_ms, Some(850));
    assert_eq!(hn1.n_timeouts, 1);
    assert_eq!(hn1.late_join_ms, Some(2 * s));
    let hue = report
        .points
        .iter()
        .find(|r| r.point.as_str() == "hue-1")
        .unwrap();
    assert_eq!(hue.audio_only_ms, 60 * s);
    assert_eq!(hue.late_join_ms, Some(300 * s));
    let missing: Vec<&str> = report
        .missing()
        .flat_map(|o| o.missing.iter().map(|(p, _)| p.as_str()))
        .collect();
    assert_eq!(missing, vec!["ct-1", "hn-2"]);
    ledger.close().await.unwrap();
}

/// A relay that dies without closing its sessions, then restarts: the sessions are closed
/// at the last heartbeat, and each point shows one interrupted presence.
pub async fn relay_restart_recovery(store: TestStore) {
    let ledger = open(&store).await;
    ledger
        .import_csv(REGISTRY_CSV.as_bytes().to_vec())
        .await
        .unwrap();
    assert_eq!(ledger.recovery().previous_run, None);
    let t = now_ms() - 100_000;
    ledger
        .append(conf_event(t, EventKind::BroadcastStarted))
        .await
        .unwrap();
    for (p, s) in [("hn-1", "a1"), ("hue-1", "b1")] {
        ledger
            .append(sess(p, s, t + 1000, SessionChange::Started))
            .await
            .unwrap();
        ledger
            .append(sess(p, s, t + 1000, SessionChange::MediaFlowing))
            .await
            .unwrap();
    }
    // A session that ended properly is not touched by recovery.
    ledger
        .append(sess("hn-2", "c1", t + 1000, SessionChange::MediaFlowing))
        .await
        .unwrap();
    ledger
        .append(sess(
            "hn-2",
            "c1",
            t + 2000,
            SessionChange::Ended {
                reason: EndReason::Deleted,
            },
        ))
        .await
        .unwrap();
    // "Crash": the process goes away without emitting any end.
    drop(ledger);

    let ledger = open(&store).await;
    let rec = ledger.recovery();
    assert_eq!((rec.n_sessions_closed, rec.n_broadcasts_closed), (2, 1));
    let crash_at = rec.previous_run.unwrap().last_alive_ms;
    assert!(crash_at >= t + 2000);
    // The publisher and the points come back.
    let back = now_ms() + 5_000;
    ledger
        .append(conf_event(back, EventKind::BroadcastStarted))
        .await
        .unwrap();
    ledger
        .append(sess("hn-1", "a2", back + 1000, SessionChange::MediaFlowing))
        .await
        .unwrap();
    ledger
        .append(sess(
            "hue-1",
            "b2",
            back + 2000,
            SessionChange::MediaFlowing,
        ))
        .await
        .unwrap();
    let as_of = back + 60_000;
    let report = ledger
        .report(&conf(), as_of, ReportConfig::default())
        .await
        .unwrap();
    for (p, rejoin) in [("hn-1", back + 1000), ("hue-1", back + 2000)] {
        let r = report
            .points
            .iter()
            .find(|r| r.point.as_str() == p)
            .unwrap();
        assert_eq!(r.attendances.len(), 1, "{p}: one attendance");
        assert_eq!(r.interruptions, 1, "{p}");
        assert_eq!(r.intervals[0].start_ms, t + 1000, "{p}");
        assert_eq!(r.intervals[0].end_ms, crash_at, "{p}");
        assert_eq!(r.intervals[1].start_ms, rejoin, "{p}");
        assert!(r.present_at_horizon, "{p}");
    }
    ledger.close().await.unwrap();
    drop(ledger);

    // Recovery is not repeated: the next clean open finds nothing open from run 2.
    let ledger = open(&store).await;
    assert_eq!(ledger.run(), 3);
    assert_eq!(ledger.recovery().n_sessions_closed, 2); // a2 and b2 were left open by run 2
    let events = ledger.events(&conf()).await.unwrap();
    let n_lost = events
        .iter()
        .filter(|e| {
            matches!(
                e.kind,
                EventKind::Session {
                    change: SessionChange::Ended {
                        reason: EndReason::RelayLost
                    },
                    ..
                }
            )
        })
        .count();
    assert_eq!(n_lost, 4);
    ledger.close().await.unwrap();
}

/// `kill -9` of a process in the middle of an append storm: every event it saw
/// acknowledged is stored exactly once after reopening.
pub async fn crash_safety_kill_9(store: TestStore) {
    let bin = env!("CARGO_BIN_EXE_hallcast-ledger-storm");
    let mut cmd = Command::new(bin);
    match &store.config {
        StoreConfig::Sqlite { path } => {
            cmd.arg("--sqlite").arg(path);
        }
        StoreConfig::Postgres { url, schema } => {
            cmd.arg("--pg").arg(url);
            if let Some(s) = schema {
                cmd.arg("--schema").arg(s);
            }
        }
    }
    let mut child = cmd
        .args(["--tasks", "64"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the storm helper");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut acked: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.len() < 5_000 && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            acked.push(line);
        }
    }
    assert!(
        acked.len() >= 5_000,
        "the storm produced only {} acks",
        acked.len()
    );
    child.kill().expect("kill -9");
    let status = child.wait().expect("wait for the killed child");
    assert!(
        !status.success(),
        "the child must have been killed mid-storm"
    );
    // Lines already in the pipe were acknowledged before the kill: they count too.
    reader.join().expect("reader thread");
    acked.extend(rx.try_iter());

    let stored = off_runtime(|| {
        let mut db = store.config.connect().expect("reopen the store");
        db.events(&ConferenceId::parse("storm").unwrap())
            .expect("read back")
    });
    let mut counts: HashMap<EventId, u32> = HashMap::new();
    for ev in &stored {
        *counts.entry(ev.event_id).or_default() += 1;
    }
    assert!(
        counts.values().all(|n| *n == 1),
        "an event id is stored twice"
    );
    for line in &acked {
        let id: EventId = line
            .parse()
            .unwrap_or_else(|e| panic!("bad ack line {line:?}: {e}"));
        assert_eq!(
            counts.get(&id),
            Some(&1),
            "acknowledged event {id} is missing"
        );
    }
    assert!(stored.len() >= acked.len());

    // The relay node comes back: the 64 sessions it left flowing are closed.
    let ledger = Ledger::open(LedgerConfig::new(store.config.clone(), Secret::random()))
        .await
        .unwrap();
    assert_eq!(ledger.recovery().n_sessions_closed, 64);
    ledger.close().await.unwrap();
}

pub async fn open_node(store: &TestStore, node: &str) -> Ledger {
    let mut cfg = LedgerConfig::new(store.config.clone(), secret());
    cfg.node = node.into();
    Ledger::open(cfg).await.expect("open ledger")
}

/// Every event of a ledger, paging through `events_after` with a small page.
async fn export_all(ledger: &Ledger) -> Vec<hallcast_ledger::StoredEvent> {
    let mut out: Vec<hallcast_ledger::StoredEvent> = Vec::new();
    loop {
        let after = out.last().map_or(0, |e| e.seq);
        let page = ledger.events_after(after, 3).await.unwrap();
        assert!(page.len() <= 3);
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

/// What an edge sends: its point-level events, through the JSON wire form.
fn over_the_wire(events: &[hallcast_ledger::StoredEvent]) -> Vec<OriginEvent> {
    events
        .iter()
        .filter(|e| hallcast_ledger::transfer::is_point_level(&e.event))
        .map(|e| {
            let text = serde_json::to_string(&EventJson::from(e)).unwrap();
            let back: EventJson = serde_json::from_str(&text).unwrap();
            OriginEvent::try_from(back).unwrap()
        })
        .collect()
}

fn point_row<'a>(
    r: &'a hallcast_core::accounting::Report,
    p: &str,
) -> &'a hallcast_core::accounting::PointRow {
    r.points.iter().find(|r| r.point.as_str() == p).unwrap()
}

/// An edge's events exported and imported into the central twice: stored once each, with
/// the edge's node and run; the central's report equals the edge's for the edge's points
/// and names the relay; the central's crash recovery leaves the edge's open sessions
/// alone, and the edge's own recovery, forwarded, closes them.
pub async fn transfer_between_ledgers(make: fn(&str) -> TestStore) {
    let (store_a, store_b) = (make("transfer_edge"), make("transfer_central"));
    let edge = open_node(&store_a, "edge-a").await;
    let central = open_node(&store_b, "central").await;
    for l in [&edge, &central] {
        l.import_csv(REGISTRY_CSV.as_bytes().to_vec())
            .await
            .unwrap();
    }
    let t = now_ms() - 100_000;
    // The broadcast as each relay sees it (the edge's come from its own pull: never sent).
    for l in [&edge, &central] {
        l.append(conf_event(t, EventKind::BroadcastStarted))
            .await
            .unwrap();
    }
    // Edge points: hn-1 comes and goes, hue-1 stays connected, with a headcount.
    for ev in [
        sess("hn-1", "e1", t + 1000, SessionChange::Started),
        sess("hn-1", "e1", t + 1500, SessionChange::MediaFlowing),
        sess(
            "hn-1",
            "e1",
            t + 20_000,
            SessionChange::Ended {
                reason: EndReason::Deleted,
            },
        ),
        sess("hue-1", "e2", t + 2000, SessionChange::MediaFlowing),
        conf_event(
            t + 3000,
            EventKind::Headcount {
                point: pid("hue-1"),
                n_people: 17,
            },
        ),
    ] {
        edge.append(ev).await.unwrap();
    }
    // The central serves hn-2 itself and leaves it open.
    central
        .append(sess("hn-2", "c1", t + 4000, SessionChange::MediaFlowing))
        .await
        .unwrap();

    let exported = export_all(&edge).await;
    assert_eq!(exported.len(), 6);
    assert!(exported.windows(2).all(|w| w[0].seq < w[1].seq));
    assert!(
        exported
            .iter()
            .all(|e| e.node == "edge-a" && e.run == edge.run())
    );
    let sent = over_the_wire(&exported);
    assert_eq!(sent.len(), 5, "the broadcast event stays at the edge");

    // Part of it first (a batch that timed out), then everything, then everything again.
    let first = central.import(sent[..2].to_vec()).await.unwrap();
    assert_eq!((first.n_accepted, first.n_duplicates), (2, 0));
    let all = central.import(sent.clone()).await.unwrap();
    assert_eq!((all.n_accepted, all.n_duplicates), (3, 2));
    let again = central.import(sent.clone()).await.unwrap();
    assert_eq!((again.n_accepted, again.n_duplicates), (0, 5));
    let s = central.stats();
    assert_eq!((s.n_imported, s.n_import_duplicates), (5, 7));
    for e in &sent {
        assert_eq!(central.count_event_id(e.event.event_id).await.unwrap(), 1);
    }
    let at_central = export_all(&central).await;
    for e in &sent {
        let stored = at_central
            .iter()
            .find(|s| s.event.event_id == e.event.event_id)
            .unwrap();
        assert_eq!((stored.node.as_str(), stored.run), ("edge-a", edge.run()));
        assert_eq!(stored.event, e.event);
    }
    // An event claiming the central's own node name is refused.
    let mut mine = sent[0].clone();
    mine.node = "central".into();
    mine.event.event_id = new_event_id();
    assert!(matches!(
        central.import(vec![mine]).await,
        Err(LedgerError::Conflict(_))
    ));
    assert_eq!(central.import(vec![]).await.unwrap().n_accepted, 0);

    let as_of = now_ms();
    let cfg = ReportConfig::default();
    let ra = edge.report(&conf(), as_of, cfg).await.unwrap();
    let rb = central.report(&conf(), as_of, cfg).await.unwrap();
    for p in ["hn-1", "hue-1"] {
        assert_eq!(point_row(&ra, p), point_row(&rb, p), "{p}");
        assert_eq!(point_row(&rb, p).relays, ["edge-a"], "{p}");
    }
    assert_eq!(point_row(&rb, "hn-2").relays, ["central"]);
    assert!(point_row(&rb, "hue-1").present_at_horizon);
    assert_eq!(point_row(&rb, "hue-1").headcount.unwrap().n_people, 17);
    // The documents say it too.
    let opts = hallcast_ledger::render::RenderOptions::default();
    let csv = String::from_utf8(hallcast_ledger::render::report_csv(&rb, &opts).unwrap()).unwrap();
    let header = csv.lines().next().unwrap();
    assert!(header.ends_with("Trạm phục vụ"), "{header}");
    assert!(
        csv.lines()
            .any(|l| l.contains("hue-1") && l.ends_with(",edge-a")),
        "{csv}"
    );
    let json = hallcast_ledger::render::report_json(&rb, None, &opts).unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let hue = v["points"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["point_id"] == "hue-1")
        .unwrap();
    assert_eq!(hue["relays"], serde_json::json!(["edge-a"]));
    assert!(hallcast_ledger::render::report_html(&rb, None, &opts).contains("edge-a"));

    // The central crashes and comes back: it closes its own open session (hn-2) and not
    // the edge's (hue-1), whose node and run it does not own.
    drop(central);
    let central = open_node(&store_b, "central").await;
    assert_eq!(central.recovery().n_sessions_closed, 1);
    // The publisher comes back at the central.
    let back = now_ms() + 1;
    central
        .append(conf_event(back, EventKind::BroadcastStarted))
        .await
        .unwrap();
    let rb = central.report(&conf(), back + 10_000, cfg).await.unwrap();
    assert!(!point_row(&rb, "hn-2").present_at_horizon);
    assert!(
        point_row(&rb, "hue-1").present_at_horizon,
        "the edge's session stays open"
    );

    // The edge crashes and comes back: its recovery closes hue-1, and that event, forwarded
    // from the cursor, closes it at the central too.
    let cursor = exported.last().unwrap().seq;
    drop(edge);
    let edge = open_node(&store_a, "edge-a").await;
    assert_eq!(edge.recovery().n_sessions_closed, 1);
    let more = edge.events_after(cursor, 100).await.unwrap();
    let lost = over_the_wire(&more);
    assert_eq!(lost.len(), 1, "{more:?}");
    assert_eq!((lost[0].node.as_str(), lost[0].run), ("edge-a", edge.run()));
    assert_eq!(central.import(lost.clone()).await.unwrap().n_accepted, 1);
    let horizon = now_ms().max(lost[0].event.at_ms) + 10_000;
    let rb = central.report(&conf(), horizon, cfg).await.unwrap();
    assert!(!point_row(&rb, "hue-1").present_at_horizon);
    assert_eq!(point_row(&rb, "hue-1").relays, ["edge-a"]);
    edge.close().await.unwrap();
    central.close().await.unwrap();
}

/// Generates one test per suite function for a backend.
#[macro_export]
macro_rules! ledger_suite {
    ($make:path) => {
        $crate::ledger_suite!(@each $make;
            append_is_durable_and_idempotent,
            emit_never_blocks_and_counts_drops,
            registry_crud_and_csv,
            tokens_verify_and_revoke,
            report_from_stored_events,
            relay_restart_recovery,
            crash_safety_kill_9,
            roll_calls_durable_idempotent_and_reported
        );
        $crate::ledger_suite!(@two $make; transfer_between_ledgers);
    };
    (@two $make:path; $($name:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                common::$name($make).await
            }
        )*
    };
    (@each $make:path; $($name:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                common::$name($make(stringify!($name))).await
            }
        )*
    };
}

/// A distinct session id for each test name ("s1", "a", ...): the bytes of the name.
fn test_session(name: &str) -> SessionId {
    assert!(name.len() <= 16, "test session names are at most 16 bytes");
    SessionId(name.bytes().fold(0u128, |acc, b| (acc << 8) | b as u128))
}
