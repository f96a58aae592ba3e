//! The attendance API through `oneshot` (no socket), on a SQLite ledger in a temp dir.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use hallcast_core::accounting::{
    ConferenceId, Event, EventKind, PointId, RollCallId, SessionChange, SessionId,
};
use hallcast_ledger::{Ledger, LedgerConfig, Secret, StoreConfig, new_event_id, now_ms};
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::*;

const ADMIN: &str = "admin-secret";
const CSV: &str = "point_id,point_name,org_id,org_name,location,expected_headcount\n\
    hn-1,Điểm cầu Ba Đình,ha-noi,Đảng ủy Thành phố Hà Nội,Ba Đình,40\n\
    hn-2,Điểm cầu Hoàn Kiếm,ha-noi,Đảng ủy Thành phố Hà Nội,Hoàn Kiếm,30\n\
    hue-1,Điểm cầu Huế,hue,Đảng ủy Huế,Huế,25\n";

struct Fixture {
    app: Router,
    ledger: Ledger,
    dir: std::path::PathBuf,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn fixture(admin_token: &str) -> Fixture {
    let dir = std::env::temp_dir().join(format!("hallcast-attendance-{:032x}", rand_id()));
    let ledger = Ledger::open(LedgerConfig::new(
        StoreConfig::sqlite_in(&dir),
        Secret::from_bytes(b"0123456789abcdef0123".to_vec()).unwrap(),
    ))
    .await
    .unwrap();
    let ctx = AttendanceCtx::new(ledger.clone(), admin_token, "http://127.0.0.1:8080");
    Fixture {
        app: router(ctx),
        ledger,
        dir,
    }
}

fn rand_id() -> u128 {
    new_event_id().0
}

async fn call(
    app: &Router,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: Option<(&str, String)>,
) -> (StatusCode, String, String) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = match body {
        Some((ct, b)) => req.header("content-type", ct).body(Body::from(b)),
        None => req.body(Body::empty()),
    }
    .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, ct, String::from_utf8(bytes.to_vec()).unwrap())
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

#[tokio::test]
async fn admin_token_is_required() {
    let f = fixture(ADMIN).await;
    let (s, ct, body) = call(&f.app, "GET", "/api/v1/points", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(ct.starts_with("application/json"));
    assert_eq!(json(&body)["error"], "unauthorized");
    let (s, _, _) = call(&f.app, "GET", "/api/v1/points", Some("nope"), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _, _) = call(
        &f.app,
        "GET",
        "/api/v1/conferences/c/report",
        Some("x"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    let off = fixture("").await;
    let (s, _, body) = call(&off.app, "GET", "/api/v1/points", Some(""), None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(json(&body)["error"], "admin_disabled");
}

#[tokio::test]
async fn registry_admin_api() {
    let f = fixture(ADMIN).await;
    let (s, _, body) = call(
        &f.app,
        "POST",
        "/api/v1/points/import",
        Some(ADMIN),
        Some(("text/csv", CSV.into())),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(json(&body)["n_points"], 3);

    let (s, _, body) = call(&f.app, "GET", "/api/v1/points", Some(ADMIN), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(json(&body).as_array().unwrap().len(), 3);

    let (s, ct, body) = call(
        &f.app,
        "GET",
        "/api/v1/points?format=csv",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(ct.starts_with("text/csv"));
    assert!(body.starts_with('\u{feff}'));
    assert!(body.contains("Đảng ủy Thành phố Hà Nội"));

    // Create, edit, read, delete.
    let (s, _, _) = call(
        &f.app,
        "POST",
        "/api/v1/organisations",
        Some(ADMIN),
        Some((
            "application/json",
            r#"{"id":"ct","name":"Đảng ủy Cần Thơ"}"#.into(),
        )),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _, _) = call(
        &f.app,
        "POST",
        "/api/v1/points",
        Some(ADMIN),
        Some((
            "application/json",
            r#"{"id":"ct-1","org_id":"ct","name":"Điểm cầu Ninh Kiều","expected_headcount":12}"#
                .into(),
        )),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _, body) = call(
        &f.app,
        "PUT",
        "/api/v1/points/ct-1",
        Some(ADMIN),
        Some((
            "application/json",
            r#"{"org_id":"ct","name":"Ninh Kiều","location":"Tầng 3"}"#.into(),
        )),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (_, _, body) = call(&f.app, "GET", "/api/v1/points/ct-1", Some(ADMIN), None).await;
    assert_eq!(json(&body)["location"], "Tầng 3");
    let (s, _, body) = call(
        &f.app,
        "DELETE",
        "/api/v1/organisations/ct",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    let (s, _, _) = call(&f.app, "DELETE", "/api/v1/points/ct-1", Some(ADMIN), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _, _) = call(&f.app, "DELETE", "/api/v1/points/ct-1", Some(ADMIN), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, _) = call(
        &f.app,
        "DELETE",
        "/api/v1/organisations/ct",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);

    // Bad input: clear 4xx JSON errors.
    let (s, _, body) = call(
        &f.app,
        "POST",
        "/api/v1/points",
        Some(ADMIN),
        Some((
            "application/json",
            r#"{"id":"x-1","org_id":"missing"}"#.into(),
        )),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(json(&body)["message"].as_str().unwrap().contains("missing"));
    let (s, _, body) = call(
        &f.app,
        "POST",
        "/api/v1/points",
        Some(ADMIN),
        Some((
            "application/json",
            r#"{"id":"bad id","org_id":"hue"}"#.into(),
        )),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(json(&body)["error"], "bad_request");
    let (s, _, body) = call(
        &f.app,
        "POST",
        "/api/v1/points",
        Some(ADMIN),
        Some(("application/json", "{not json".into())),
    )
    .await;
    assert!(s.is_client_error());
    assert_eq!(json(&body)["error"], "bad_json");
    let (s, _, body) = call(
        &f.app,
        "POST",
        "/api/v1/points/import",
        Some(ADMIN),
        Some(("text/csv", "point_id,org_id\nbad id,x\n".into())),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(json(&body)["message"].as_str().unwrap().contains("line 2"));
}

#[tokio::test]
async fn join_links_headcount_and_revocation() {
    let f = fixture(ADMIN).await;
    f.ledger.import_csv(CSV.as_bytes().to_vec()).await.unwrap();
    let (s, _, body) = call(
        &f.app,
        "POST",
        "/api/v1/conferences",
        Some(ADMIN),
        Some((
            "application/json",
            r#"{"id":"hn-2025","title":"Hội nghị quán triệt"}"#.into(),
        )),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");

    let (s, ct, csv) = call(
        &f.app,
        "GET",
        "/api/v1/conferences/hn-2025/links?format=csv",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(ct.starts_with("text/csv"));
    assert_eq!(csv.lines().count(), 4);
    let (s, ct, html) = call(
        &f.app,
        "GET",
        "/api/v1/conferences/hn-2025/links",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(ct.starts_with("text/html"));
    assert_eq!(html.matches("<svg").count(), 3);
    assert!(html.contains("Hội nghị quán triệt"));
    let (_, _, body) = call(
        &f.app,
        "GET",
        "/api/v1/conferences/hn-2025/links?format=json&point=hue-1",
        Some(ADMIN),
        None,
    )
    .await;
    let links = json(&body);
    let url = links[0]["url"].as_str().unwrap();
    assert!(url.starts_with("http://127.0.0.1:8080/watch/hn-2025?token="));
    let token = url.split("token=").nth(1).unwrap().to_owned();

    // The viewer page declares its headcount with its join token.
    let (s, _, body) = call(
        &f.app,
        "POST",
        "/api/v1/conferences/hn-2025/headcount",
        Some(&token),
        Some(("application/json", r#"{"n_people": 25}"#.into())),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(json(&body)["point"], "hue-1");
    let events = f
        .ledger
        .events(&ConferenceId::parse("hn-2025").unwrap())
        .await
        .unwrap();
    assert_eq!(events.len(), 1, "the declaration is durable when answered");
    assert_eq!(json(&body)["event_id"], events[0].event_id.to_string());
    assert_eq!(json(&body)["duplicate"], false);

    // A retry with the page's own event id is stored once and says so.
    let retry = r#"{"n_people": 26, "event_id": "000000000000000000000000000abc12"}"#;
    for duplicate in [false, true] {
        let (s, _, body) = call(
            &f.app,
            "POST",
            "/api/v1/conferences/hn-2025/headcount",
            Some(&token),
            Some(("application/json", retry.into())),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{body}");
        assert_eq!(json(&body)["event_id"], "000000000000000000000000000abc12");
        assert_eq!(json(&body)["duplicate"], duplicate);
    }
    let (s, _, body) = call(
        &f.app,
        "POST",
        "/api/v1/conferences/hn-2025/headcount",
        Some(&token),
        Some((
            "application/json",
            r#"{"n_people": 26, "event_id": "not-hex"}"#.into(),
        )),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("event_id"), "{body}");

    // The audit export lists both stored declarations, admin only.
    let (s, _, _) = call(
        &f.app,
        "GET",
        "/api/v1/conferences/hn-2025/events",
        Some(&token),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _, body) = call(
        &f.app,
        "GET",
        "/api/v1/conferences/hn-2025/events",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let log = json(&body);
    let log = log.as_array().unwrap();
    assert_eq!(log.len(), 2, "{body}");
    assert!(
        log.iter()
            .all(|e| e["kind"] == "headcount" && e["point"] == "hue-1")
    );
    assert_eq!(
        log.iter().filter(|e| e["n_people"] == 26).count(),
        1,
        "{body}"
    );

    let (s, _, _) = call(
        &f.app,
        "POST",
        "/api/v1/conferences/other/headcount",
        Some(&token),
        Some(("application/json", r#"{"n_people": 25}"#.into())),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _, _) = call(
        &f.app,
        "POST",
        "/api/v1/conferences/hn-2025/headcount",
        None,
        Some(("application/json", r#"{"n_people": 25}"#.into())),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _, _) = call(
        &f.app,
        "POST",
        "/api/v1/conferences/hn-2025/headcount",
        Some(&token),
        Some(("application/json", r#"{"n_people": 1000000}"#.into())),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _, _) = call(
        &f.app,
        "POST",
        "/api/v1/conferences/hn-2025/headcount",
        Some(&token),
        Some(("application/json", r#"{"n_people": -3}"#.into())),
    )
    .await;
    assert!(s.is_client_error());

    // Revoke: the old link stops working, also for WHEP.
    let auth = LedgerViewerAuth {
        ledger: f.ledger.clone(),
    };
    assert!(crate::ViewerAuth::verify(&auth, "hn-2025", &token).is_some());
    assert!(crate::ViewerAuth::verify(&auth, "other", &token).is_none());
    let (s, _, body) = call(
        &f.app,
        "POST",
        "/api/v1/conferences/hn-2025/points/hue-1/revoke",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(json(&body)["generation"], 1);
    let (s, _, body) = call(
        &f.app,
        "POST",
        "/api/v1/conferences/hn-2025/headcount",
        Some(&token),
        Some(("application/json", r#"{"n_people": 30}"#.into())),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(json(&body)["message"].as_str().unwrap().contains("thu hồi"));
    assert!(crate::ViewerAuth::verify(&auth, "hn-2025", &token).is_none());
}

#[tokio::test]
async fn report_in_three_formats() {
    let f = fixture(ADMIN).await;
    f.ledger.import_csv(CSV.as_bytes().to_vec()).await.unwrap();
    let c = ConferenceId::parse("hn-2025").unwrap();
    let t = now_ms() - 600_000;
    let ev = |at, kind| Event {
        event_id: new_event_id(),
        conference: c.clone(),
        at_ms: at,
        kind,
    };
    let s = |p: &str, at, change| {
        ev(
            at,
            EventKind::Session {
                point: PointId::parse(p).unwrap(),
                session: SessionId(1),
                change,
            },
        )
    };
    for e in [
        ev(t, EventKind::BroadcastStarted),
        s("hn-1", t + 1_000, SessionChange::MediaFlowing),
        ev(
            t + 2_000,
            EventKind::Headcount {
                point: PointId::parse("hn-1").unwrap(),
                n_people: 33,
            },
        ),
        ev(t + 300_000, EventKind::BroadcastEnded),
    ] {
        f.ledger.append(e).await.unwrap();
    }
    let (st, ct, body) = call(
        &f.app,
        "GET",
        "/api/v1/conferences/hn-2025/report?format=json",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert!(ct.starts_with("application/json"));
    let r = json(&body);
    assert_eq!(r["summary"]["n_points_connected"], 1);
    assert_eq!(r["summary"]["n_points"], 3);
    assert_eq!(r["summary"]["n_orgs_connected"], 1);
    assert_eq!(r["summary"]["total_headcount"], 33);
    assert_eq!(r["points"][0]["point_id"], "hn-1");
    assert_eq!(r["points"][0]["present_ms"], 299_000);

    let (st, ct, csv) = call(
        &f.app,
        "GET",
        "/api/v1/conferences/hn-2025/report?format=csv",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert!(ct.starts_with("text/csv"));
    assert!(csv.contains("Số phút dự"));
    assert_eq!(csv.lines().count(), 4);
    let (_, _, csv_en) = call(
        &f.app,
        "GET",
        "/api/v1/conferences/hn-2025/report?format=csv&lang=en",
        Some(ADMIN),
        None,
    )
    .await;
    assert!(csv_en.contains("minutes_present"));

    let (st, ct, html) = call(
        &f.app,
        "GET",
        "/api/v1/conferences/hn-2025/report?format=html",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert!(ct.starts_with("text/html"));
    assert!(html.contains("Báo cáo điểm danh") && html.contains("Attendance report"));
    assert!(html.contains("1/3"));
    assert!(!html.contains("<script"));

    let (st, _, body) = call(
        &f.app,
        "GET",
        "/api/v1/conferences/hn-2025/report?format=pdf",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(
        json(&body)["message"]
            .as_str()
            .unwrap()
            .contains("csv, json or html")
    );
    let (st, _, _) = call(
        &f.app,
        "GET",
        "/api/v1/conferences/bad%20id/report",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn relay_events_route_checks_credential_and_body_and_is_idempotent() {
    let f = fixture(ADMIN).await;
    let app = relay_router(
        AttendanceCtx::new(f.ledger.clone(), ADMIN, "http://127.0.0.1:8080"),
        Arc::from("relay-cred-0123"),
    );
    let conf = ConferenceId::parse("hn-2025").unwrap();
    let ev = Event::session_event(
        new_event_id(),
        conf.clone(),
        PointId::parse("hn-1").unwrap(),
        SessionId(7),
        now_ms(),
        SessionChange::MediaFlowing,
    );
    let origin = hallcast_ledger::OriginEvent {
        event: ev.clone(),
        node: "edge-a".into(),
        run: 3,
    };
    let body = serde_json::json!({
        "node": "edge-a",
        "events": [EventJson::from(&origin)],
    })
    .to_string();
    let post = async |token: Option<&str>, body: String| {
        call(
            &app,
            "POST",
            "/api/v1/relay/events",
            token,
            Some(("application/json", body)),
        )
        .await
    };

    let (s, _, _) = post(None, body.clone()).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _, b) = post(Some("wrong"), body.clone()).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(json(&b)["error"], "unauthorized");
    let (s, _, b) = post(Some("relay-cred-0123"), "{\"node\":".into()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        json(&b)["message"].as_str().unwrap().contains("events"),
        "{b}"
    );
    let mut bad = serde_json::to_value(EventJson::from(&origin)).unwrap();
    bad["kind"] = "teleported".into();
    let (s, _, b) = post(
        Some("relay-cred-0123"),
        serde_json::json!({"node": "edge-a", "events": [bad]}).to_string(),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(b.contains("unknown kind"), "{b}");
    // Broadcast events never travel between relays.
    let broadcast = hallcast_ledger::OriginEvent {
        event: Event {
            event_id: new_event_id(),
            conference: conf.clone(),
            at_ms: now_ms(),
            kind: EventKind::BroadcastStarted,
        },
        node: "edge-a".into(),
        run: 3,
    };
    let (s, _, b) = post(
        Some("relay-cred-0123"),
        serde_json::json!({"node": "edge-a", "events": [EventJson::from(&broadcast)]}).to_string(),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(b.contains("point-level"), "{b}");
    // An event claiming this relay's own node name.
    let mut mine = origin.clone();
    mine.node = f.ledger.node().to_owned();
    let (s, _, _) = post(
        Some("relay-cred-0123"),
        serde_json::json!({"node": "x", "events": [EventJson::from(&mine)]}).to_string(),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(
        f.ledger.n_events().await.unwrap(),
        0,
        "nothing stored so far"
    );

    let (s, _, b) = post(Some("relay-cred-0123"), body.clone()).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        json(&b),
        serde_json::json!({"accepted": 1, "duplicates": 0})
    );
    let (s, _, b) = post(Some("relay-cred-0123"), body.clone()).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        json(&b),
        serde_json::json!({"accepted": 0, "duplicates": 1})
    );
    let stored = f.ledger.events_after(0, 10).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!((stored[0].node.as_str(), stored[0].run), ("edge-a", 3));
    assert_eq!(stored[0].event, ev);

    // An empty credential disables the route.
    let off = relay_router(
        AttendanceCtx::new(f.ledger.clone(), ADMIN, "http://127.0.0.1:8080"),
        Arc::from(""),
    );
    let (s, _, _) = call(
        &off,
        "POST",
        "/api/v1/relay/events",
        Some(""),
        Some(("application/json", body)),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

/// Roll calls through the API: start (admin), answer (join token; idempotent; refused after
/// the deadline), list with each point's outcome, and the hub told of the start.
#[tokio::test]
async fn rollcall_start_answer_list_and_deadline() {
    let f = fixture(ADMIN).await;
    f.ledger.import_csv(CSV.as_bytes().to_vec()).await.unwrap();
    let hub = Arc::new(crate::events::Hub::new());
    let ctx = AttendanceCtx::new(f.ledger.clone(), ADMIN, "http://127.0.0.1:8080")
        .with_events(hub.clone());
    let app = router(ctx);
    let (s, _, body) = call(
        &app,
        "POST",
        "/api/v1/conferences",
        Some(ADMIN),
        Some(("application/json", r#"{"id":"hn-2025","title":"T"}"#.into())),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let conf = ConferenceId::parse("hn-2025").unwrap();
    let t = now_ms() - 60_000;
    // hn-1 and hn-2 are connected, hue-1 left before the roll call.
    for (point, sid, at, ended) in [
        ("hn-1", 1u128, t, false),
        ("hn-2", 2, t, false),
        ("hue-1", 3, t, false),
        ("hue-1", 3, t + 1000, true),
    ] {
        let change = if ended {
            SessionChange::Ended {
                reason: EndReason::Deleted,
            }
        } else {
            SessionChange::Started
        };
        f.ledger
            .append(Event::session_event(
                new_event_id(),
                conf.clone(),
                PointId::parse(point).unwrap(),
                SessionId(sid),
                at,
                change,
            ))
            .await
            .unwrap();
    }
    let rollcalls = "/api/v1/conferences/hn-2025/rollcalls";
    let start = |d: &str| Some(("application/json", format!(r#"{{"duration_s":{d}}}"#)));
    assert_eq!(
        call(&app, "POST", rollcalls, None, start("60")).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (s, _, body) = call(&app, "POST", rollcalls, Some(ADMIN), start("5")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert!(json(&body)["message"].as_str().unwrap().contains(" / "));
    let (s, _, body) = call(
        &app,
        "POST",
        "/api/v1/conferences/nope/rollcalls",
        Some(ADMIN),
        start("60"),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{body}");
    let (s, _, body) = call(&app, "POST", rollcalls, Some(ADMIN), start("60")).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let started = json(&body);
    let id = started["id"].as_str().unwrap().to_owned();
    assert_eq!(
        started["deadline_ms"].as_i64().unwrap() - started["started_ms"].as_i64().unwrap(),
        60_000
    );
    let (s, _, body) = call(&app, "POST", rollcalls, Some(ADMIN), start("60")).await;
    assert_eq!(
        s,
        StatusCode::CONFLICT,
        "a second one while the first runs: {body}"
    );

    let exp = now_ms() / 1000 + 3600;
    let tok = |p: &str| {
        f.ledger
            .issue_token(&conf, &PointId::parse(p).unwrap(), exp)
    };
    let answer_uri = format!("{rollcalls}/{id}/answer");
    let body_of = |n: u32, eid: Option<&str>| {
        let b = match eid {
            Some(e) => format!(r#"{{"n_people":{n},"event_id":"{e}"}}"#),
            None => format!(r#"{{"n_people":{n}}}"#),
        };
        Some(("application/json", b))
    };
    assert_eq!(
        call(&app, "POST", &answer_uri, None, body_of(3, None))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(&app, "POST", &answer_uri, Some(ADMIN), body_of(3, None))
            .await
            .0,
        StatusCode::UNAUTHORIZED,
        "the admin token is no join link"
    );
    let hn1 = tok("hn-1");
    let (s, _, body) = call(&app, "POST", &answer_uri, Some(&hn1), body_of(0, None)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    let (s, _, body) = call(
        &app,
        "POST",
        &format!("{rollcalls}/{:032x}/answer", 7),
        Some(&hn1),
        body_of(3, None),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{body}");
    let eid = format!("{:032x}", rand_id());
    let (s, _, body) = call(
        &app,
        "POST",
        &answer_uri,
        Some(&hn1),
        body_of(12, Some(&eid)),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(json(&body)["duplicate"], false);
    assert_eq!(json(&body)["point"], "hn-1");
    let (s, _, body) = call(
        &app,
        "POST",
        &answer_uri,
        Some(&hn1),
        body_of(12, Some(&eid)),
    )
    .await;
    assert_eq!(
        (s, json(&body)["duplicate"].clone()),
        (StatusCode::OK, true.into())
    );
    // Without an id, the same answer twice is stored once too.
    let (_, _, b1) = call(&app, "POST", &answer_uri, Some(&hn1), body_of(12, None)).await;
    let (_, _, b2) = call(&app, "POST", &answer_uri, Some(&hn1), body_of(12, None)).await;
    assert_eq!(json(&b1)["duplicate"], false);
    assert_eq!(json(&b2)["duplicate"], true);
    assert_eq!(json(&b1)["event_id"], json(&b2)["event_id"]);

    let (s, _, body) = call(&app, "GET", rollcalls, Some(ADMIN), None).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let list = json(&body);
    assert_eq!(list["running"], id.as_str());
    let rc = &list["rollcalls"][0];
    assert_eq!(rc["id"], id.as_str());
    assert_eq!(rc["counts"]["answered"], 1);
    assert_eq!(rc["counts"]["no_answer"], 1);
    assert_eq!(rc["counts"]["not_connected"], 1);
    let outcome = |p: &str| {
        rc["points"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["point"] == p)
            .cloned()
            .unwrap()
    };
    assert_eq!(outcome("hn-1")["outcome"], "answered");
    assert_eq!(outcome("hn-1")["n_people"], 12);
    assert!(outcome("hn-1")["at_ms"].as_i64().is_some());
    assert_eq!(outcome("hn-2")["outcome"], "no_answer");
    assert_eq!(outcome("hue-1")["outcome"], "not_connected");
    assert_eq!(
        call(&app, "GET", rollcalls, None, None).await.0,
        StatusCode::UNAUTHORIZED
    );

    // An earlier roll call that is over (stored directly): answers are refused with 410,
    // except a retry of an answer stored in time.
    let old = new_event_id();
    f.ledger
        .append(Event {
            event_id: old,
            conference: conf.clone(),
            at_ms: t + 2000,
            kind: EventKind::RollCallStarted {
                deadline_ms: t + 12_000,
            },
        })
        .await
        .unwrap();
    let in_time = new_event_id();
    f.ledger
        .append(Event {
            event_id: in_time,
            conference: conf.clone(),
            at_ms: t + 3000,
            kind: EventKind::RollCallAnswered {
                point: PointId::parse("hn-2").unwrap(),
                rollcall: RollCallId::from(old),
                n_people: 4,
            },
        })
        .await
        .unwrap();
    let old_uri = format!("{rollcalls}/{old}/answer");
    let hn2 = tok("hn-2");
    let (s, _, body) = call(&app, "POST", &old_uri, Some(&hn2), body_of(5, None)).await;
    assert_eq!(s, StatusCode::GONE, "{body}");
    assert!(body.contains("hết thời gian điểm danh"), "{body}");
    let (s, _, body) = call(
        &app,
        "POST",
        &old_uri,
        Some(&hn2),
        body_of(4, Some(&in_time.to_string())),
    )
    .await;
    assert_eq!(
        (s, json(&body)["duplicate"].clone()),
        (StatusCode::OK, true.into()),
        "{body}"
    );
    let (_, _, body) = call(&app, "GET", rollcalls, Some(ADMIN), None).await;
    let list = json(&body);
    assert_eq!(list["rollcalls"].as_array().unwrap().len(), 2);
    assert_eq!(list["rollcalls"][0]["id"], old.to_string(), "oldest first");
    assert_eq!(list["rollcalls"][0]["running"], false);
    // The report lists both.
    let (_, _, body) = call(
        &app,
        "GET",
        "/api/v1/conferences/hn-2025/report?format=json",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(json(&body)["roll_calls"].as_array().unwrap().len(), 2);

    // After a restart the hub is empty: the running roll call is announced again.
    assert_eq!(hub.rollcall("hn-2025").map(|n| n.id), Some(id.clone()));
    let fresh = Arc::new(crate::events::Hub::new());
    let ctx = AttendanceCtx::new(f.ledger.clone(), ADMIN, "http://127.0.0.1:8080")
        .with_events(fresh.clone());
    assert_eq!(rollcall::restore_running(&ctx).await.unwrap(), 1);
    let n = fresh.rollcall("hn-2025").unwrap();
    assert_eq!(n.id, id);
    assert_eq!(n.deadline_ms, started["deadline_ms"].as_i64().unwrap());

    // An ended conference takes no roll call.
    let (s, _, _) = call(
        &app,
        "POST",
        "/api/v1/conferences/hn-2025/end",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, body) = call(&app, "POST", rollcalls, Some(ADMIN), start("60")).await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    assert_eq!(json(&body)["error"], "conference_ended");
}

#[test]
fn srt_urls_name_the_host_encoders_dial() {
    let a = |s: &str| s.parse::<std::net::SocketAddr>().unwrap();
    assert_eq!(
        srt_url(
            "https://hoinghi.example.vn",
            a("0.0.0.0:9710"),
            "hn-1",
            "k1"
        ),
        "srt://hoinghi.example.vn:9710?streamid=#!::r=hn-1,m=publish,u=k1"
    );
    assert_eq!(
        srt_url("http://127.0.0.1:8080/", a("[::]:9710"), "c", "k"),
        "srt://127.0.0.1:9710?streamid=#!::r=c,m=publish,u=k"
    );
    assert_eq!(
        srt_url("http://[2001:db8::1]:8080", a("0.0.0.0:9710"), "c", "k"),
        "srt://[2001:db8::1]:9710?streamid=#!::r=c,m=publish,u=k"
    );
    assert_eq!(
        srt_url("https://x.example", a("198.51.100.7:9000"), "c", "k"),
        "srt://198.51.100.7:9000?streamid=#!::r=c,m=publish,u=k"
    );
}
