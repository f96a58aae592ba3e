//! Roll calls (điểm danh) over HTTP: an organiser starts one, every connected point's viewer
//! page is asked (WHEP server-sent event `rollcall`) and answers with its join token.
//!
//! | method and path | who | what |
//! |---|---|---|
//! | `POST /api/v1/conferences/{id}/rollcalls` | admin | `{"duration_s": 60}` (10..=3600, default 60) → 201 `{"id","conference","started_ms","deadline_ms","duration_s"}` once durable; 409 while another runs or when the conference has ended |
//! | `GET /api/v1/conferences/{id}/rollcalls` | admin | `{"conference","now_ms","running","rollcalls":[…]}`, oldest first, each with every point's outcome |
//! | `POST /api/v1/conferences/{id}/rollcalls/{rollcall}/answer` | viewer (join token) | `{"n_people": 12, "event_id": "<32 hex>"?}` → 200 once durable; idempotent; 410 after the deadline |
//!
//! Storage and meaning belong to the ledger (`RollCallStarted` / `RollCallAnswered` events)
//! and the core's `roll_calls` fold; this module checks, stores and tells the viewer pages.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use hallcast_core::accounting::{
    ConferenceId, Event, EventId, EventKind, RollCall, RollCallId, RollCallOutcome, running,
};
use hallcast_ledger::render::format_time;
use hallcast_ledger::{Appended, new_event_id, now_ms};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{ApiError, ApiResult, AttendanceCtx, Ctx, MAX_PEOPLE, admin, parse, point_of};
use crate::events::RollCallNotice;
use crate::registry::RegistryError;

/// Shortest and longest roll call, seconds.
pub const MIN_DURATION_S: u64 = 10;
pub const MAX_DURATION_S: u64 = 3600;
/// Duration when the request names none.
pub const DEFAULT_DURATION_S: u64 = 60;

/// The roll calls this relay knows of: (conference, started, deadline) per id, so that an
/// answer is checked without reading the conference's events. Filled when a roll call
/// starts, and from the ledger on a miss (after a restart).
#[derive(Debug, Default)]
pub struct RollCallBook {
    known: Mutex<HashMap<RollCallId, (ConferenceId, i64, i64)>>,
}

impl RollCallBook {
    fn get(&self, id: RollCallId) -> Option<(ConferenceId, i64, i64)> {
        self.known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
    }

    fn insert(&self, id: RollCallId, conference: ConferenceId, started_ms: i64, deadline_ms: i64) {
        self.known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, (conference, started_ms, deadline_ms));
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct StartBody {
    #[serde(default)]
    duration_s: Option<u64>,
}

#[derive(Serialize)]
pub(super) struct StartedDto {
    id: String,
    conference: String,
    started_ms: i64,
    deadline_ms: i64,
    duration_s: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AnswerBody {
    n_people: u32,
    /// Idempotency key chosen by the page (32 hex digits). Absent: derived from the roll
    /// call, the point and the number, so the same answer sent twice is stored once.
    #[serde(default)]
    event_id: Option<String>,
}

#[derive(Serialize)]
pub(super) struct AnswerDto {
    conference: String,
    rollcall: String,
    point: String,
    n_people: u32,
    at_ms: i64,
    deadline_ms: i64,
    event_id: String,
    /// The event id was already stored: a retry, nothing new recorded.
    duplicate: bool,
}

#[derive(Serialize)]
pub(super) struct PointDto {
    point: String,
    name: String,
    org: Option<String>,
    org_name: String,
    registered: bool,
    /// `answered`, `no_answer` or `not_connected`.
    outcome: &'static str,
    /// `answered`: the people declared and when (Unix ms); null otherwise.
    n_people: Option<u32>,
    at_ms: Option<i64>,
}

#[derive(Serialize)]
pub(super) struct CountsDto {
    answered: u32,
    no_answer: u32,
    not_connected: u32,
}

#[derive(Serialize)]
pub(super) struct RollCallDto {
    id: String,
    started_ms: i64,
    deadline_ms: i64,
    running: bool,
    counts: CountsDto,
    /// People declared by the points that answered.
    n_people: u64,
    points: Vec<PointDto>,
}

#[derive(Serialize)]
pub(super) struct ListDto {
    conference: String,
    /// The relay's clock when it answered (for countdowns in pages whose clock is off).
    now_ms: i64,
    /// The id of the roll call running now, if any.
    running: Option<String>,
    rollcalls: Vec<RollCallDto>,
}

fn dto(c: &RollCall) -> RollCallDto {
    RollCallDto {
        id: c.id.to_string(),
        started_ms: c.started_ms,
        deadline_ms: c.deadline_ms,
        running: c.running,
        counts: CountsDto {
            answered: c.n_answered(),
            no_answer: c.n_no_answer(),
            not_connected: c.n_not_connected(),
        },
        n_people: c.n_people(),
        points: c
            .points
            .iter()
            .map(|p| {
                let (n_people, at_ms) = match p.outcome {
                    RollCallOutcome::Answered { n_people, at_ms } => (Some(n_people), Some(at_ms)),
                    _ => (None, None),
                };
                PointDto {
                    point: p.point.to_string(),
                    name: p.name.clone(),
                    org: p.org.as_ref().map(ToString::to_string),
                    org_name: p.org_name.clone(),
                    registered: p.registered,
                    outcome: p.outcome.as_str(),
                    n_people,
                    at_ms,
                }
            })
            .collect(),
    }
}

async fn known_conference(
    ctx: &AttendanceCtx,
    id: &str,
) -> ApiResult<(ConferenceId, std::sync::Arc<hallcast_ledger::Conference>)> {
    let conference = parse(id, ConferenceId::parse)?;
    let c = ctx
        .registry
        .lookup(id)
        .await
        .ok_or_else(|| RegistryError::NotFound(id.to_string()))?;
    Ok((conference, c))
}

/// `POST /api/v1/conferences/{id}/rollcalls`
pub(super) async fn start(
    State(ctx): Ctx,
    method: axum::http::Method,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<StartedDto>)> {
    admin(&ctx, &method, &headers)?;
    let (conference, c) = known_conference(&ctx, &id).await?;
    if c.ended_ms.is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conference_ended",
            "Hội nghị đã kết thúc, không điểm danh được",
            "The conference has ended: no roll call",
        ));
    }
    let b: StartBody = if body.is_empty() {
        StartBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("expected {{\"duration_s\": 60}}: {e}")))?
    };
    let duration_s = b.duration_s.unwrap_or(DEFAULT_DURATION_S);
    if !(MIN_DURATION_S..=MAX_DURATION_S).contains(&duration_s) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid",
            &format!("Thời gian điểm danh phải từ {MIN_DURATION_S} đến {MAX_DURATION_S} giây"),
            &format!("duration_s must be {MIN_DURATION_S}..={MAX_DURATION_S} seconds"),
        ));
    }
    let now = now_ms();
    let calls = ctx.ledger.roll_calls(&conference, now).await?;
    if let Some(r) = running(&calls) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "rollcall_running",
            &format!(
                "Đang có một lượt điểm danh, kết thúc lúc {}",
                format_time(r.deadline_ms, ctx.utc_offset_minutes)
            ),
            &format!(
                "A roll call is already running (id {}) until {}",
                r.id,
                format_time(r.deadline_ms, ctx.utc_offset_minutes)
            ),
        ));
    }
    let event_id = new_event_id();
    let deadline_ms = now + i64::try_from(duration_s * 1000).unwrap_or(i64::MAX / 2);
    // Acknowledged (and announced) only once durable.
    ctx.ledger
        .append(Event {
            event_id,
            conference: conference.clone(),
            at_ms: now,
            kind: EventKind::RollCallStarted { deadline_ms },
        })
        .await?;
    let rc = RollCallId::from(event_id);
    ctx.rollcalls
        .insert(rc, conference.clone(), now, deadline_ms);
    if let Some(hub) = &ctx.events {
        hub.start_rollcall(
            conference.as_str(),
            RollCallNotice {
                id: rc.to_string(),
                started_ms: now,
                deadline_ms,
            },
        );
    }
    tracing::info!(%conference, rollcall = %rc, duration_s, "roll call started");
    Ok((
        StatusCode::CREATED,
        Json(StartedDto {
            id: rc.to_string(),
            conference: conference.into_string(),
            started_ms: now,
            deadline_ms,
            duration_s,
        }),
    ))
}

/// `GET /api/v1/conferences/{id}/rollcalls`
pub(super) async fn list(
    State(ctx): Ctx,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<ListDto>> {
    admin(&ctx, &axum::http::Method::GET, &headers)?;
    let (conference, _) = known_conference(&ctx, &id).await?;
    let now = now_ms();
    let calls = ctx.ledger.roll_calls(&conference, now).await?;
    Ok(Json(ListDto {
        conference: conference.into_string(),
        now_ms: now,
        running: running(&calls).map(|r| r.id.to_string()),
        rollcalls: calls.iter().map(dto).collect(),
    }))
}

/// `POST /api/v1/conferences/{id}/rollcalls/{rollcall}/answer`
pub(super) async fn answer(
    State(ctx): Ctx,
    headers: HeaderMap,
    Path((id, rollcall)): Path<(String, String)>,
    body: Result<Json<AnswerBody>, JsonRejection>,
) -> ApiResult<Json<AnswerDto>> {
    let conference = parse(&id, ConferenceId::parse)?;
    let point = point_of(&ctx, &headers, &conference)?;
    let rc = parse(&rollcall, RollCallId::parse)?;
    let Json(b) = body?;
    if b.n_people == 0 || b.n_people > MAX_PEOPLE {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid",
            &format!("Số người dự phải từ 1 đến {MAX_PEOPLE}"),
            &format!("n_people must be 1..={MAX_PEOPLE}"),
        ));
    }
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "Không có lượt điểm danh này",
            &format!("No roll call {rc} in conference {conference}"),
        )
    };
    let (started_ms, deadline_ms) = match ctx.rollcalls.get(rc) {
        Some((c, s, d)) if c == conference => (s, d),
        Some(_) => return Err(not_found()),
        None => {
            // An edge learns of its parent's roll calls through the tree's sync (the hub);
            // the central, or a relay after a restart, from its ledger.
            let relayed = ctx
                .events
                .as_ref()
                .and_then(|h| h.rollcall(conference.as_str()))
                .filter(|n| RollCallId::parse(&n.id).ok() == Some(rc));
            let (s, d) = match relayed {
                Some(n) => (n.started_ms, n.deadline_ms),
                None => {
                    let calls = ctx.ledger.roll_calls(&conference, now_ms()).await?;
                    let c = calls.iter().find(|c| c.id == rc).ok_or_else(not_found)?;
                    (c.started_ms, c.deadline_ms)
                }
            };
            ctx.rollcalls.insert(rc, conference.clone(), s, d);
            (s, d)
        }
    };
    let event_id = match b.event_id.as_deref() {
        Some(s) => s
            .parse::<EventId>()
            .map_err(|e| ApiError::bad_request(format!("event_id must be 32 hex digits: {e}")))?,
        None => derived_id(&conference, rc, point.as_str(), b.n_people),
    };
    let at_ms = now_ms().max(started_ms);
    if at_ms > deadline_ms {
        // A retry of an answer stored in time is still a success.
        if ctx.ledger.count_event_id(event_id).await? > 0 {
            return Ok(Json(AnswerDto {
                conference: conference.into_string(),
                rollcall: rc.to_string(),
                point: point.into_string(),
                n_people: b.n_people,
                at_ms,
                deadline_ms,
                event_id: event_id.to_string(),
                duplicate: true,
            }));
        }
        return Err(ApiError::new(
            StatusCode::GONE,
            "rollcall_over",
            &format!(
                "Đã hết thời gian điểm danh (hạn chót {})",
                format_time(deadline_ms, ctx.utc_offset_minutes)
            ),
            &format!(
                "The roll call is over: answers were accepted until {}",
                format_time(deadline_ms, ctx.utc_offset_minutes)
            ),
        ));
    }
    // Answered only once durable.
    let appended = ctx
        .ledger
        .append(Event {
            event_id,
            conference: conference.clone(),
            at_ms,
            kind: EventKind::RollCallAnswered {
                point: point.clone(),
                rollcall: rc,
                n_people: b.n_people,
            },
        })
        .await?;
    Ok(Json(AnswerDto {
        conference: conference.into_string(),
        rollcall: rc.to_string(),
        point: point.into_string(),
        n_people: b.n_people,
        at_ms,
        deadline_ms,
        event_id: event_id.to_string(),
        duplicate: appended == Appended::Duplicate,
    }))
}

/// The answer's id when the page gives none: the same answer gives the same id.
fn derived_id(conference: &ConferenceId, rc: RollCallId, point: &str, n_people: u32) -> EventId {
    let mut h = Sha256::new();
    h.update(b"hallcast-rollcall-answer\n");
    h.update(conference.as_str().as_bytes());
    h.update(b"\n");
    h.update(rc.0.to_be_bytes());
    h.update(point.as_bytes());
    h.update(b"\n");
    h.update(n_people.to_be_bytes());
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    EventId::from_bytes(b)
}

/// Tells the viewer pages of the roll calls still running (after a restart the hub is
/// empty): reads every conference's roll calls from the ledger once.
pub async fn restore_running(ctx: &AttendanceCtx) -> hallcast_ledger::Result<usize> {
    let Some(hub) = &ctx.events else {
        return Ok(0);
    };
    let mut n = 0;
    let now = now_ms();
    for c in ctx.ledger.conferences().await? {
        let calls = ctx.ledger.roll_calls(&c.id, now).await?;
        if let Some(r) = running(&calls) {
            ctx.rollcalls
                .insert(r.id, c.id.clone(), r.started_ms, r.deadline_ms);
            hub.start_rollcall(
                c.id.as_str(),
                RollCallNotice {
                    id: r.id.to_string(),
                    started_ms: r.started_ms,
                    deadline_ms: r.deadline_ms,
                },
            );
            n += 1;
        }
    }
    Ok(n)
}
