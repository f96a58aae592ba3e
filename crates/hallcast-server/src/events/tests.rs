//! The events resources through `oneshot` (no socket): a running engine with no media, a viewer
//! session entered in the session table as `whep_post` would, and engine events fed to the hub
//! as the event pump does.

use std::time::SystemTime;

use axum::Router;
use axum::http::Request;
use hallcast_core::Layer;
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::*;
use crate::SessionMeta;
use crate::auth::Credential;

const TOKEN: &str = "viewer-token";

struct Fixture {
    app: Router,
    state: Arc<AppState>,
    session: SessionId,
    dir: std::path::PathBuf,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn fixture() -> Fixture {
    let (state, dir) = crate::test_state("hallcast-events").await;
    let session = SessionId(rand::random::<u128>() & !0xff);
    state.sessions().insert(
        session,
        SessionMeta {
            conference: "demo".into(),
            role: Role::Subscriber,
            point: None,
            etag: String::new(),
            created_at: SystemTime::now(),
            credential: Credential::of(TOKEN),
        },
    );
    let app = crate::app(state.clone(), Router::new());
    Fixture {
        app,
        state,
        session,
        dir,
    }
}

impl Fixture {
    fn events_url(&self) -> String {
        format!("/whep/demo/{}/events", self.session)
    }

    async fn post(
        &self,
        uri: &str,
        token: Option<&str>,
        body: &str,
    ) -> (StatusCode, String, String) {
        let mut req = Request::builder()
            .method("POST")
            .uri(uri)
            .header("content-type", "application/json");
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let resp = self
            .app
            .clone()
            .oneshot(req.body(Body::from(body.to_string())).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            location,
            String::from_utf8_lossy(&bytes).into_owned(),
        )
    }

    async fn get(&self, uri: &str) -> Response {
        let req = Request::builder()
            .uri(uri)
            .header("accept", "text/event-stream")
            .body(Body::empty())
            .unwrap();
        self.app.clone().oneshot(req).await.unwrap()
    }

    fn adaptation(&self, target: Option<u8>, paused: Option<PauseReason>) {
        self.state.events.on_event(&EngineEvent::Adaptation {
            conference: Arc::from("demo"),
            session: self.session,
            target: target.map(Layer),
            paused,
            estimate_bps: Some(480_000),
            switches: 1,
        });
    }
}

/// Reads SSE events (`(name, data)`) from a streaming body until `n` have come.
async fn read_events(body: &mut Body, n: usize) -> Vec<(String, String)> {
    let mut text = String::new();
    let mut out = Vec::new();
    while out.len() < n {
        let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .expect("an event within 5 s")
            .expect("the stream ended early")
            .unwrap();
        if let Ok(data) = frame.into_data() {
            text.push_str(&String::from_utf8_lossy(&data));
        }
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            let mut name = String::new();
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = v.trim().to_string();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data = v.trim().to_string();
                }
            }
            if !name.is_empty() {
                out.push((name, data));
            }
        }
    }
    out
}

#[test]
fn event_set_parses_names_and_refuses_the_rest() {
    assert_eq!(
        EventSet::parse(br#"["active","layers"]"#),
        Ok(EventSet {
            active: true,
            layers: true,
            ..Default::default()
        })
    );
    for bad in [
        &b"{\"events\":[\"active\"]}"[..],
        b"\"active\"",
        b"[]",
        b"[\"active\",\"scte35\"]",
        b"[1]",
        b"not json",
    ] {
        assert!(
            EventSet::parse(bad).is_err(),
            "{:?} should be refused",
            String::from_utf8_lossy(bad)
        );
    }
    let unknown = EventSet::parse(br#"["reconnect"]"#).unwrap_err();
    assert!(
        unknown.contains("\"reconnect\"") && unknown.contains("viewercount"),
        "{unknown}"
    );
}

#[test]
fn link_names_the_session_resource_and_the_events() {
    let id = SessionId(0x1234 << 8);
    let link = link("demo", id).unwrap();
    assert_eq!(
        link.to_str().unwrap(),
        format!(
            "</whep/demo/{id}/events>; rel=\"urn:ietf:params:whep:ext:core:server-sent-events\"; \
             events=\"active,inactive,layers,viewercount,rollcall,drain\""
        )
    );
}

#[tokio::test]
async fn subscription_refuses_bad_bodies_and_other_credentials() {
    let f = fixture().await;
    let url = f.events_url();
    for (body, want) in [
        ("{\"active\":true}", StatusCode::BAD_REQUEST),
        ("[\"active\",\"nope\"]", StatusCode::BAD_REQUEST),
        ("[]", StatusCode::BAD_REQUEST),
        ("[active]", StatusCode::BAD_REQUEST),
    ] {
        let (status, _, text) = f.post(&url, Some(TOKEN), body).await;
        assert_eq!(status, want, "{body} → {status} {text}");
        assert!(!text.trim().is_empty(), "{body}: no message");
    }
    let big = format!("[{}]", vec!["\"active\""; 200].join(","));
    let (status, _, text) = f.post(&url, Some(TOKEN), &big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{text}");

    let (status, _, _) = f.post(&url, None, "[\"active\"]").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = f.post(&url, Some("someone-else"), "[\"active\"]").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let other = SessionId(rand::random::<u128>() & !0xff);
    let (status, _, _) = f
        .post(
            &format!("/whep/demo/{other}/events"),
            Some(TOKEN),
            "[\"active\"]",
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = f
        .post(
            &format!("/whep/other/{}/events", f.session),
            Some(TOKEN),
            "[\"active\"]",
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The stream URL needs the token a subscription minted, for this session.
    let (status, location, text) = f.post(&url, Some(TOKEN), "[\"active\"]").await;
    assert_eq!(status, StatusCode::CREATED, "{text}");
    let token = location.rsplit('/').next().unwrap();
    assert_eq!(token.len(), 32, "{location}");
    assert_eq!(location, format!("{url}/{token}"));
    let wrong = format!("{url}/{:032x}", rand::random::<u128>());
    assert_eq!(f.get(&wrong).await.status(), StatusCode::NOT_FOUND);
    let other_session = format!("/whep/demo/{other}/events/{token}");
    assert_eq!(f.get(&other_session).await.status(), StatusCode::NOT_FOUND);
    let req = Request::builder()
        .uri(&location)
        .header("accept", "application/json")
        .body(Body::empty())
        .unwrap();
    let resp = f.app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_ACCEPTABLE);
}

#[tokio::test]
async fn stream_sends_the_state_then_changes_and_ends_with_the_session() {
    let f = fixture().await;
    // An allocation made before the subscription is its first `layers`.
    f.adaptation(Some(0), None);
    let (status, location, text) = f
        .post(
            &f.events_url(),
            Some(TOKEN),
            "[\"active\",\"inactive\",\"layers\",\"viewercount\"]",
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{text}");
    let resp = f.get(&location).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers().get("content-type").unwrap(),
        "text/event-stream"
    );
    let mut body = resp.into_body();

    // Nothing published on this engine: inactive, 0 viewers, the allocation.
    let first = read_events(&mut body, 3).await;
    let names: Vec<&str> = first.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["inactive", "viewercount", "layers"], "{first:?}");
    assert_eq!(first[1].1, r#"{"viewercount":0}"#);
    let layers: serde_json::Value = serde_json::from_str(&first[2].1).unwrap();
    assert_eq!(layers["video"]["target"], 0);
    assert_eq!(layers["video"]["paused"], false);
    assert_eq!(layers["video"]["reason"], serde_json::Value::Null);
    assert_eq!(layers["video"]["estimate_bps"], 480_000);

    // The broadcast starts; the link weakens: video paused for bandwidth.
    f.state.events.on_event(&EngineEvent::BroadcastStarted {
        conference: Arc::from("demo"),
        session: SessionId(0x77 << 8),
    });
    let e = read_events(&mut body, 1).await;
    assert_eq!(e[0], ("active".to_string(), "{}".to_string()));
    f.adaptation(None, Some(PauseReason::Bandwidth));
    let e = read_events(&mut body, 1).await;
    assert_eq!(e[0].0, "layers");
    let layers: serde_json::Value = serde_json::from_str(&e[0].1).unwrap();
    assert_eq!(layers["video"]["paused"], true, "{layers}");
    assert_eq!(layers["video"]["reason"], "bandwidth", "{layers}");
    assert_eq!(layers["video"]["target"], serde_json::Value::Null);
    // Resumed.
    f.adaptation(Some(0), None);
    let e = read_events(&mut body, 1).await;
    let layers: serde_json::Value = serde_json::from_str(&e[0].1).unwrap();
    assert_eq!(layers["video"]["paused"], false, "{layers}");

    // The session ends: so does its stream, and its URL is gone.
    f.state.sessions().remove(&f.session);
    f.state.events.on_event(&EngineEvent::SessionEnded {
        conference: Arc::from("demo"),
        session: f.session,
        role: Role::Subscriber,
        reason: hallcast_rtc::EndReason::Deleted,
    });
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match body.frame().await {
                None => return true,
                Some(Ok(_)) => continue,
                Some(Err(_)) => return true,
            }
        }
    })
    .await;
    assert_eq!(end, Ok(true), "the stream should end with the session");
    assert_eq!(f.get(&location).await.status(), StatusCode::NOT_FOUND);
}

/// A roll call reaches a point's stream when it starts, and a stream opened during the
/// countdown (a point that rejoined) at subscription; never a viewer without a point, nor a
/// stream opened after the deadline.
#[tokio::test]
async fn rollcall_reaches_point_sessions_at_start_and_at_subscription() {
    let f = fixture().await;
    f.state.sessions().get_mut(&f.session).unwrap().point = Some("hn-1".into());
    async fn subscribe(f: &Fixture) -> Body {
        let (status, location, text) = f
            .post(
                &f.events_url(),
                Some(TOKEN),
                "[\"active\",\"inactive\",\"rollcall\"]",
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{text}");
        f.get(&location).await.into_body()
    }
    let mut body = subscribe(&f).await;
    assert_eq!(read_events(&mut body, 1).await[0].0, "inactive");
    let deadline_ms = hallcast_ledger::now_ms() + 60_000;
    f.state.events.start_rollcall(
        "demo",
        RollCallNotice {
            id: format!("{:032x}", 0xabcu128),
            started_ms: deadline_ms - 60_000,
            deadline_ms,
        },
    );
    let e = read_events(&mut body, 1).await;
    assert_eq!(e[0].0, "rollcall");
    let v: serde_json::Value = serde_json::from_str(&e[0].1).unwrap();
    assert_eq!(v["id"], format!("{:032x}", 0xabcu128));
    assert_eq!(v["deadline_ms"], deadline_ms);
    let remaining = v["remaining_ms"].as_i64().unwrap();
    assert!((50_000..=60_000).contains(&remaining), "{v}");
    drop(body);

    // The page reconnects during the countdown: a new stream hears of it at once.
    let mut again = subscribe(&f).await;
    let e = read_events(&mut again, 2).await;
    assert_eq!(e[1].0, "rollcall", "{e:?}");
    drop(again);

    // A viewer that is not a connection point is never asked.
    f.state.sessions().get_mut(&f.session).unwrap().point = None;
    let mut viewer = subscribe(&f).await;
    let e = read_events(&mut viewer, 1).await;
    assert_eq!(e[0].0, "inactive");
    let more = tokio::time::timeout(Duration::from_millis(300), read_events(&mut viewer, 1)).await;
    assert!(
        more.is_err(),
        "no rollcall for a viewer without a point: {more:?}"
    );
    drop(viewer);

    // After the deadline nobody is asked any more.
    f.state.sessions().get_mut(&f.session).unwrap().point = Some("hn-1".into());
    f.state.events.start_rollcall(
        "demo",
        RollCallNotice {
            id: format!("{:032x}", 0xdefu128),
            started_ms: hallcast_ledger::now_ms() - 60_001,
            deadline_ms: hallcast_ledger::now_ms() - 1,
        },
    );
    let mut late = subscribe(&f).await;
    let e = read_events(&mut late, 1).await;
    assert_eq!(e[0].0, "inactive");
    let more = tokio::time::timeout(Duration::from_millis(300), read_events(&mut late, 1)).await;
    assert!(
        more.is_err(),
        "an expired roll call is not announced: {more:?}"
    );
}

/// The relay starts draining: a stream that asked for `drain` hears where to go, once; a
/// stream opened during the drain hears it at subscription; one that did not ask hears nothing
/// of it (and a new WHEP POST meanwhile is refused: see `whep_post`).
#[tokio::test]
async fn drain_reaches_the_streams_that_asked_at_start_and_at_subscription() {
    let f = fixture().await;
    let (status, location, text) = f
        .post(&f.events_url(), Some(TOKEN), "[\"viewercount\",\"drain\"]")
        .await;
    assert_eq!(status, StatusCode::CREATED, "{text}");
    let mut body = f.get(&location).await.into_body();
    let first = read_events(&mut body, 1).await;
    assert_eq!(first[0].0, "viewercount");
    f.state
        .drain
        .start(std::time::Instant::now(), Duration::from_secs(30));
    let notice = crate::drain::DrainNotice {
        relay: "http://edge:8080".into(),
        url: Some("http://central:8080".into()),
        home: "http://central:8080".into(),
        parent: Some("http://central:8080".into()),
        deadline_ms: 1_700_000_030_000,
    };
    f.state.drain.notify(notice.clone());
    let e = read_events(&mut body, 1).await;
    assert_eq!(e[0].0, "drain");
    let v: serde_json::Value = serde_json::from_str(&e[0].1).unwrap();
    assert_eq!(v["url"], "http://central:8080", "{v}");
    assert_eq!(v["relay"], "http://edge:8080", "{v}");
    assert_eq!(v["deadline_ms"], 1_700_000_030_000i64, "{v}");
    // Opened during the drain: at subscription.
    let (_, location2, _) = f.post(&f.events_url(), Some(TOKEN), "[\"drain\"]").await;
    let mut body2 = f.get(&location2).await.into_body();
    let e = read_events(&mut body2, 1).await;
    assert_eq!(e[0].0, "drain", "{e:?}");
    // Not asked for: not sent (the next event is the viewer count's, nothing before it).
    let (_, location3, _) = f
        .post(&f.events_url(), Some(TOKEN), "[\"viewercount\"]")
        .await;
    let mut body3 = f.get(&location3).await.into_body();
    let e = read_events(&mut body3, 1).await;
    assert_eq!(e[0].0, "viewercount", "{e:?}");
}

impl Fixture {
    /// The conference "demo" in the registry (the status endpoint answers 404 otherwise).
    async fn register_demo(&self) {
        self.state
            .registry
            .create_or_rename(
                hallcast_core::accounting::ConferenceId::parse("demo").unwrap(),
                "Demo".into(),
                None,
            )
            .await
            .unwrap();
    }
}

/// A GET's status and body as text.
async fn get_text(app: Router, uri: &'static str) -> (StatusCode, String) {
    let req = Request::builder().uri(uri).body(Body::empty()).unwrap();
    let resp = app.oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test]
async fn a_held_status_request_answers_when_the_conference_goes_live() {
    let f = fixture().await;
    f.register_demo().await;
    let get = |uri: &'static str| get_text(f.app.clone(), uri);
    // Not live, no hold: answered at once.
    let (status, body) = get("/api/v1/conferences/demo/status").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("\"live\":false"), "{body}");
    // A bad hold is refused with what is wrong.
    let (status, body) = get("/api/v1/conferences/demo/status?wait_live=soon").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("wait_live"), "{body}");
    // Held: still waiting after 300 ms, answered live as soon as the broadcast starts
    // (the hold itself is 30 s).
    let held = tokio::spawn(get("/api/v1/conferences/demo/status?wait_live=30"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !held.is_finished(),
        "the held request was answered before the broadcast"
    );
    f.state.events.on_event(&EngineEvent::BroadcastStarted {
        conference: Arc::from("demo"),
        session: SessionId(7 << 8),
    });
    let (status, body) = tokio::time::timeout(Duration::from_secs(10), held)
        .await
        .expect("the held request was not answered when the broadcast started")
        .unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("\"live\":true"), "{body}");
    // Live already: a hold is answered at once.
    assert!(
        f.state
            .events
            .wait_live("demo", Duration::from_secs(30))
            .await
    );
    // Ended: a short hold runs out, not live.
    f.state.events.on_event(&EngineEvent::BroadcastEnded {
        conference: Arc::from("demo"),
        session: SessionId(7 << 8),
    });
    assert!(
        !f.state
            .events
            .wait_live("demo", Duration::from_millis(200))
            .await
    );
}

/// An edge that pulls on demand: asked by a held status request (a waiting page is a viewer),
/// it pulls once its parent is live, and the hold is answered live.
struct FakeEdge {
    state: std::sync::Weak<AppState>,
    /// Whether the parent is live, and how often the edge was asked.
    parent_live: std::sync::atomic::AtomicBool,
    asked: AtomicUsize,
}

impl crate::Demand for FakeEdge {
    fn demand(
        &self,
        conference: String,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + '_>> {
        Box::pin(async move {
            self.asked.fetch_add(1, Ordering::SeqCst);
            if !self.parent_live.load(Ordering::SeqCst) {
                return false;
            }
            // The pull is live here: the engine says so.
            if let Some(state) = self.state.upgrade() {
                state.events.on_event(&EngineEvent::BroadcastStarted {
                    conference: Arc::from(conference.as_str()),
                    session: SessionId(9 << 8),
                });
            }
            true
        })
    }
}

#[tokio::test]
async fn a_held_status_request_on_an_edge_asks_it_to_pull() {
    let f = fixture().await;
    f.register_demo().await;
    let edge = Arc::new(FakeEdge {
        state: Arc::downgrade(&f.state),
        parent_live: std::sync::atomic::AtomicBool::new(false),
        asked: AtomicUsize::new(0),
    });
    assert!(f.state.demand.set(edge.clone()).is_ok());
    let held = tokio::spawn(get_text(
        f.app.clone(),
        "/api/v1/conferences/demo/status?wait_live=30",
    ));
    // The parent is not live: the edge is asked again while the request is held.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert!(
        !held.is_finished(),
        "answered while the parent was not live"
    );
    assert!(
        edge.asked.load(Ordering::SeqCst) >= 2,
        "the edge was asked {} times in 1.2 s",
        edge.asked.load(Ordering::SeqCst)
    );
    // The parent goes live: the edge pulls at the next ask and the hold is answered.
    edge.parent_live.store(true, Ordering::SeqCst);
    let (status, body) = tokio::time::timeout(Duration::from_secs(10), held)
        .await
        .expect("the held request was not answered once the edge could pull")
        .unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("\"live\":true"), "{body}");
}
