//! The admin dashboard's API: the roster board of a conference, its live stream, and the join
//! links' QR codes.
//!
//! | method and path | who | what |
//! |---|---|---|
//! | `GET /api/v1/conferences/{id}/board` | admin | the board (JSON, below) |
//! | `GET /api/v1/conferences/{id}/board/stream` | admin | `text/event-stream`: event `board` with the same JSON when it changed (checked every 500 ms), a keep-alive comment every 15 s |
//! | `GET /api/v1/conferences/{id}/links/qr/{point}.svg` | admin | the point's join link as a QR code (SVG) |
//!
//! The board: `{"conference", "live", "counts": {"organisations": [connected, expected],
//! "points": [connected, expected], "people": [declared, expected]}, "organisations": [{"id",
//! "name", "expected", "connected", "degraded", "missing", "points": [{"id", "name", "state",
//! "relay", "layer", "bitrate_bps", "rtt_ms", "loss", "freezes", "connected_s", "people"}]}],
//! "alerts": [{"id", "kind", "since_ms", "text_vi", "text_en", "point"?, "node"?}]}`.
//!
//! What it reads, never holding a lock across an await: the registry and the conference's
//! events from the ledger, this relay's engine snapshot (the live sessions and their
//! measures; never a media thread), the HTTP layer's session table (which point each session
//! is), the tree (relays down). The fold itself is `hallcast_core::accounting::board`: no
//! clock inside, the time is read here once per board.
//!
//! Alerts computed outside the board (the pre-flight analysis's `ingest_unhealthy` and
//! `audio_silent`) come in through [`AlertSource`], set once with [`BoardCtx::set_alert_source`].

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hallcast_core::VideoStatus;
use hallcast_core::accounting::{
    self, Alert, AlertKind, Board, BoardInput, ConferenceId, LiveSession, PointId, RelayDown,
};
use hallcast_ledger::now_ms;
use hallcast_rtc::Role;
use serde::Serialize;

use crate::AppState;
use crate::attendance::{ApiError, AttendanceCtx};
use crate::tree::NodeReport;

/// How often a stream recomputes the board (and at most how often it sends one).
pub const STREAM_INTERVAL: Duration = Duration::from_millis(500);
/// Keep-alive comment interval of the stream.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Alerts that other parts of the relay compute (the pre-flight analysis), merged into the
/// board as they are. Called once per board computation: must be cheap and never block.
pub trait AlertSource: Send + Sync + 'static {
    /// The alerts standing now for `conference` (kinds `ingest_unhealthy`, `audio_silent`).
    fn alerts(&self, conference: &str, now_ms: i64) -> Vec<Alert>;
}

/// Per session: (media bytes, at ms, last computed bits per second).
type Rates = HashMap<String, (u64, i64, Option<u64>)>;

/// What the board's routes need.
pub struct BoardCtx {
    state: Arc<AppState>,
    att: AttendanceCtx,
    grace_ms: i64,
    rates: Mutex<Rates>,
    alert_source: OnceLock<Arc<dyn AlertSource>>,
}

impl BoardCtx {
    /// The grace window is the relay's `[alerts] grace_seconds`.
    pub fn new(state: Arc<AppState>, att: AttendanceCtx) -> Arc<BoardCtx> {
        let grace_ms = i64::try_from(state.config.alerts.grace_seconds.saturating_mul(1000))
            .unwrap_or(i64::MAX);
        Arc::new(BoardCtx {
            state,
            att,
            grace_ms,
            rates: Mutex::new(HashMap::new()),
            alert_source: OnceLock::new(),
        })
    }

    /// Where `ingest_unhealthy` / `audio_silent` alerts come from (the pre-flight analysis).
    /// Set once; later calls are ignored.
    pub fn set_alert_source(&self, source: Arc<dyn AlertSource>) {
        let _ = self.alert_source.set(source);
    }

    /// The board of `conference` now.
    pub async fn board(&self, conference: &str) -> Result<BoardDto, ApiError> {
        let id = ConferenceId::parse(conference).map_err(ApiError::bad_request)?;
        if self.att.registry.lookup(conference).await.is_none() {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                &format!("Không có hội nghị {conference:?}"),
                &format!("No conference {conference:?}"),
            ));
        }
        let ledger = &self.att.ledger;
        let events = ledger.events(&id).await?;
        let orgs = ledger.organisations().await?;
        let points = ledger.points().await?;
        // The relay that served each point elsewhere (an edge): the last other node named.
        let mut point_relays: Vec<(PointId, String)> = Vec::new();
        for (p, node) in ledger.point_nodes(&id).await? {
            if node == ledger.node() {
                continue;
            }
            match point_relays.last_mut() {
                Some((last, n)) if *last == p => *n = node,
                _ => point_relays.push((p, node)),
            }
        }
        let snap = self.state.engine.snapshot().await.map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "engine_unavailable",
                "Bộ chuyển tiếp tạm thời không trả lời",
                &format!("The media engine did not answer: {e}"),
            )
        })?;
        let now = now_ms();
        let live = snap
            .conferences
            .iter()
            .any(|c| &*c.id == conference && c.live);
        let metas: HashMap<_, _> = self
            .state
            .sessions()
            .iter()
            .filter(|(_, m)| m.conference == conference && m.point.is_some())
            .map(|(id, m)| (*id, (m.point.clone(), m.created_at)))
            .collect();
        let relay_name = self.state.tree.name.clone();
        let mut sessions = Vec::new();
        {
            let mut rates = self.rates.lock().unwrap_or_else(|p| p.into_inner());
            for s in snap
                .sessions
                .iter()
                .filter(|s| s.role == Role::Subscriber && &*s.conference == conference)
            {
                let Some((Some(point), created)) = metas.get(&s.id) else {
                    continue;
                };
                let Ok(point) = PointId::parse(point) else {
                    continue;
                };
                let key = s.id.to_string();
                let bps = rate(&mut rates, &key, s.media_bytes, now);
                sessions.push(LiveSession {
                    point,
                    relay: relay_name.clone(),
                    since_ms: created
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(now, |d| d.as_millis() as i64),
                    delivery: match s.delivery {
                        Some(hallcast_rtc::Delivery::Flowing) => accounting::Delivery::Flowing,
                        Some(hallcast_rtc::Delivery::AudioOnly) => accounting::Delivery::AudioOnly,
                        Some(hallcast_rtc::Delivery::Stalled) => accounting::Delivery::Stalled,
                        Some(hallcast_rtc::Delivery::Pending) | None => {
                            accounting::Delivery::Pending
                        }
                    },
                    layer: match s.video {
                        Some(VideoStatus::Forwarding { layer }) => Some(layer.0),
                        _ => None,
                    },
                    bitrate_bps: bps,
                    rtt_ms: s.rtt_ms,
                    loss: s.loss,
                });
            }
            // Forget sessions that ended.
            let alive: std::collections::HashSet<String> =
                snap.sessions.iter().map(|s| s.id.to_string()).collect();
            rates.retain(|k, _| alive.contains(k));
        }
        let mut relays_down = Vec::new();
        for c in self.state.tree.children(Instant::now()) {
            collect_down(&c, now, &mut relays_down);
        }
        let extra = self
            .alert_source
            .get()
            .map(|s| s.alerts(conference, now))
            .unwrap_or_default();
        let board = accounting::board(&BoardInput {
            now_ms: now,
            grace_ms: self.grace_ms,
            live,
            orgs: &orgs,
            points: &points,
            events: &events,
            sessions: &sessions,
            point_relays: &point_relays,
            relays_down: &relays_down,
            extra_alerts: &extra,
        });
        Ok(BoardDto::of(conference, board))
    }
}

/// A byte counter that has not moved for this long means nothing is sent: 0 bit/s.
const STALLED_AFTER_MS: i64 = 5_000;

/// Bits per second of a session from its byte counter, over at least 400 ms; the last value
/// in between.
fn rate(rates: &mut Rates, key: &str, bytes: u64, now: i64) -> Option<u64> {
    match rates.get_mut(key) {
        Some((b, at, bps)) => {
            let dt = now - *at;
            // The engine refreshes a session's byte counter about once a second: a rate is
            // computed when the counter moved, over at least 400 ms.
            if bytes != *b && dt >= 400 {
                *bps = Some(bytes.saturating_sub(*b) * 8 * 1000 / dt as u64);
                *b = bytes;
                *at = now;
            } else if dt > STALLED_AFTER_MS {
                return Some(0);
            }
            *bps
        }
        None => {
            rates.insert(key.to_string(), (bytes, now, None));
            None
        }
    }
}

fn collect_down(n: &NodeReport, now: i64, out: &mut Vec<RelayDown>) {
    if n.state == "down" {
        out.push(RelayDown {
            node: n.name.clone(),
            since_ms: now - n.last_report_ms.unwrap_or(0) as i64,
        });
    }
    for c in &n.children {
        collect_down(c, now, out);
    }
}

// ----- DTOs -----

#[derive(Debug, Serialize, PartialEq)]
pub struct BoardDto {
    pub conference: String,
    pub live: bool,
    pub counts: Counts,
    pub organisations: Vec<OrgDto>,
    pub alerts: Vec<AlertDto>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Counts {
    pub organisations: [u32; 2],
    pub points: [u32; 2],
    pub people: [u64; 2],
}

#[derive(Debug, Serialize, PartialEq)]
pub struct OrgDto {
    pub id: String,
    pub name: String,
    pub expected: u32,
    pub connected: u32,
    pub degraded: u32,
    pub missing: u32,
    pub points: Vec<PointDto>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct PointDto {
    pub id: String,
    pub name: String,
    pub state: &'static str,
    pub relay: Option<String>,
    pub layer: Option<u8>,
    pub bitrate_bps: Option<u64>,
    pub rtt_ms: Option<u32>,
    pub loss: Option<f32>,
    pub freezes: u32,
    pub connected_s: Option<u64>,
    pub people: Option<u32>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct AlertDto {
    pub id: String,
    pub kind: &'static str,
    pub since_ms: i64,
    pub text_vi: String,
    pub text_en: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub point: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

impl BoardDto {
    fn of(conference: &str, b: Board) -> BoardDto {
        BoardDto {
            conference: conference.to_string(),
            live: b.live,
            counts: Counts {
                organisations: [b.n_orgs_connected, b.n_orgs],
                points: [b.n_points_connected, b.n_points],
                people: [b.n_people_declared, b.n_people_expected],
            },
            organisations: b
                .orgs
                .into_iter()
                .map(|o| OrgDto {
                    id: o.id.into_string(),
                    name: o.name,
                    expected: o.expected,
                    connected: o.connected,
                    degraded: o.degraded,
                    missing: o.missing,
                    points: o
                        .points
                        .into_iter()
                        .map(|p| PointDto {
                            id: p.id.into_string(),
                            name: p.name,
                            state: p.state.as_str(),
                            relay: p.relay,
                            layer: p.layer,
                            bitrate_bps: p.bitrate_bps,
                            rtt_ms: p.rtt_ms,
                            loss: p.loss,
                            freezes: p.freezes,
                            connected_s: p.connected_s,
                            people: p.people,
                        })
                        .collect(),
                })
                .collect(),
            alerts: b
                .alerts
                .into_iter()
                .map(|a| AlertDto {
                    id: a.id,
                    kind: alert_kind(a.kind),
                    since_ms: a.since_ms,
                    text_vi: a.text_vi,
                    text_en: a.text_en,
                    point: a.point.map(PointId::into_string),
                    node: a.node,
                })
                .collect(),
        }
    }

    /// The board without what changes every second by itself (time connected, bitrates),
    /// for deciding whether a stream sends it again.
    fn fingerprint(&self) -> String {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(orgs) = v["organisations"].as_array_mut() {
            for o in orgs {
                if let Some(points) = o["points"].as_array_mut() {
                    for p in points {
                        if let Some(m) = p.as_object_mut() {
                            // Coarse: a change of a whole minute or of a tenth of the rate.
                            let c = m.remove("connected_s").and_then(|c| c.as_u64());
                            m.insert("connected_m".into(), c.map(|c| c / 60).into());
                            let b = m.remove("bitrate_bps").and_then(|c| c.as_u64());
                            m.insert("bitrate_log".into(), b.map(|b| (b.max(1)).ilog2()).into());
                            let r = m.remove("rtt_ms").and_then(|c| c.as_u64());
                            m.insert("rtt_log".into(), r.map(|r| (r.max(1)).ilog2()).into());
                        }
                    }
                }
            }
        }
        v.to_string()
    }
}

fn alert_kind(k: AlertKind) -> &'static str {
    k.as_str()
}

// ----- routes -----

/// The board routes and the QR codes, state applied; merge into the relay's router.
pub fn router(ctx: Arc<BoardCtx>) -> Router {
    Router::new()
        .route("/api/v1/conferences/{id}/board", get(board))
        .route("/api/v1/conferences/{id}/board/stream", get(board_stream))
        .route("/api/v1/conferences/{id}/links/qr/{file}", get(qr))
        .with_state(ctx)
}

type Ctx = State<Arc<BoardCtx>>;

async fn board(
    State(ctx): Ctx,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<BoardDto>, ApiError> {
    crate::attendance::admin(&ctx.att, &axum::http::Method::GET, &headers)?;
    Ok(Json(ctx.board(&id).await?))
}

async fn board_stream(
    State(ctx): Ctx,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    crate::attendance::admin(&ctx.att, &axum::http::Method::GET, &headers)?;
    // The first board is computed before answering: an unknown conference is a 404, not an
    // empty stream.
    let first = ctx.board(&id).await?;
    struct Feed {
        ctx: Arc<BoardCtx>,
        id: String,
        pending: Option<BoardDto>,
        last: String,
        every: tokio::time::Interval,
    }
    let mut every = tokio::time::interval(STREAM_INTERVAL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let feed = Feed {
        ctx,
        id,
        pending: Some(first),
        last: String::new(),
        every,
    };
    let stream = futures_util::stream::unfold(feed, |mut feed| async move {
        loop {
            let b = match feed.pending.take() {
                Some(b) => b,
                None => {
                    feed.every.tick().await;
                    match feed.ctx.board(&feed.id).await {
                        Ok(b) => b,
                        Err(e) => {
                            tracing::debug!(conference = %feed.id, "board stream: {e:?}");
                            continue;
                        }
                    }
                }
            };
            let fp = b.fingerprint();
            if fp == feed.last {
                continue;
            }
            feed.last = fp;
            let ev = SseEvent::default()
                .event("board")
                .json_data(&b)
                .unwrap_or_else(|_| SseEvent::default().comment("unserialisable board"));
            return Some((Ok::<_, Infallible>(ev), feed));
        }
    });
    let mut r = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"))
        .into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Tell reverse proxies (nginx) not to buffer the stream.
    r.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(r)
}

async fn qr(
    State(ctx): Ctx,
    headers: HeaderMap,
    Path((id, file)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    crate::attendance::admin(&ctx.att, &axum::http::Method::GET, &headers)?;
    let Some(point) = file.strip_suffix(".svg") else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "Chỉ có mã QR dạng SVG: …/qr/<điểm cầu>.svg",
            "QR codes are served as SVG only: …/qr/<point>.svg",
        ));
    };
    let url = crate::attendance::join_link(&ctx.att, &id, point).await?;
    let svg = hallcast_ledger::render::qr_svg(&url).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "too_long",
            "Đường dẫn quá dài để tạo mã QR",
            "The join link is too long for a QR code",
        )
    })?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        svg,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use hallcast_core::accounting::{
        Event, EventId, EventKind, OrgId, Organisation, PointInfo, SessionChange, SessionId,
    };
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    const ADMIN: &str = "admin-token-for-tests";

    async fn get(app: &Router, uri: &str, token: Option<&str>) -> (StatusCode, String, String) {
        let mut req = Request::get(uri);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let r = app
            .clone()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = r.status();
        let ct = r
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap_or_default().to_string())
            .unwrap_or_default();
        let body = r.into_body().collect().await.unwrap().to_bytes();
        (status, ct, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn board_json_qr_and_refusals_through_the_router() {
        let (state, dir) = crate::test_state("hallcast-board").await;
        let ledger = state.registry.ledger().clone();
        let att = AttendanceCtx::new(ledger.clone(), ADMIN, "http://relay.test")
            .with_registry(state.registry.clone());
        let app = router(BoardCtx::new(state.clone(), att));
        state
            .registry
            .create_or_rename(ConferenceId::parse("c1").unwrap(), "Hội nghị".into(), None)
            .await
            .unwrap();
        ledger
            .upsert_organisation(Organisation {
                id: OrgId::parse("o1").unwrap(),
                name: "Đơn vị 1".into(),
            })
            .await
            .unwrap();
        for p in ["p1", "p2"] {
            ledger
                .upsert_point(PointInfo {
                    id: PointId::parse(p).unwrap(),
                    org: OrgId::parse("o1").unwrap(),
                    name: format!("Điểm {p}"),
                    location: String::new(),
                    expected_headcount: Some(10),
                })
                .await
                .unwrap();
        }

        let (s, _, _) = get(&app, "/api/v1/conferences/c1/board", None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        let (s, _, body) = get(&app, "/api/v1/conferences/nope/board", Some(ADMIN)).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{body}");
        assert!(body.contains("Không có hội nghị") && body.contains("No conference"));

        let (s, _, body) = get(&app, "/api/v1/conferences/c1/board", Some(ADMIN)).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        let b: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(b["counts"]["points"], serde_json::json!([0, 2]));
        assert_eq!(b["organisations"][0]["points"][0]["state"], "missing");

        // A session of p1 stored by this relay: p1 is connected.
        ledger
            .append(Event {
                event_id: EventId(7),
                conference: ConferenceId::parse("c1").unwrap(),
                at_ms: now_ms() - 3_000,
                kind: EventKind::Session {
                    point: PointId::parse("p1").unwrap(),
                    session: SessionId(9),
                    change: SessionChange::Started,
                },
            })
            .await
            .unwrap();
        let (_, _, body) = get(&app, "/api/v1/conferences/c1/board", Some(ADMIN)).await;
        let b: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(b["counts"]["points"], serde_json::json!([1, 2]));
        assert_eq!(b["counts"]["organisations"], serde_json::json!([1, 1]));
        let p1 = &b["organisations"][0]["points"][0];
        assert_eq!(
            (p1["id"].as_str(), p1["state"].as_str()),
            (Some("p1"), Some("connected"))
        );
        assert!(
            p1["connected_s"]
                .as_u64()
                .is_some_and(|s| (2..=5).contains(&s)),
            "{p1}"
        );

        let (s, ct, body) = get(&app, "/api/v1/conferences/c1/links/qr/p1.svg", Some(ADMIN)).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(ct, "image/svg+xml");
        assert!(
            body.starts_with("<?xml") || body.starts_with("<svg"),
            "{body:.80}"
        );
        let (s, _, _) = get(&app, "/api/v1/conferences/c1/links/qr/p1.png", Some(ADMIN)).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (s, _, _) = get(&app, "/api/v1/conferences/c1/links/qr/zz.svg", Some(ADMIN)).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (s, _, _) = get(&app, "/api/v1/conferences/c1/links/qr/p1.svg", None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        let (s, _, body) = get(
            &app,
            "/api/v1/conferences/c1/links/qr/b%20d.svg",
            Some(ADMIN),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn rates_need_400_ms_and_forget_nothing_in_between() {
        let mut r = HashMap::new();
        assert_eq!(rate(&mut r, "s", 0, 0), None);
        assert_eq!(rate(&mut r, "s", 1000, 200), None);
        assert_eq!(rate(&mut r, "s", 125_000, 1000), Some(1_000_000));
        assert_eq!(rate(&mut r, "s", 130_000, 1100), Some(1_000_000));
        // The counter did not move yet: the last rate, not zero.
        assert_eq!(rate(&mut r, "s", 125_000, 1800), Some(1_000_000));
        assert_eq!(rate(&mut r, "s", 250_000, 2000), Some(1_000_000));
        // Still for more than 5 s: nothing is sent.
        assert_eq!(rate(&mut r, "s", 250_000, 7_100), Some(0));
    }
}
