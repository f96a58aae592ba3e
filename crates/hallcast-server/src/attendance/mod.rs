//! The attendance HTTP API: registry administration, join links, headcount declarations
//! from viewer pages and attendance reports.
//!
//! Owns only HTTP: parsing requests, checking bearer tokens, JSON request/response types
//! and status codes. Storage, tokens, folding and the report documents belong to
//! `hallcast-ledger` (and `hallcast-core`); this module never touches the media path.
//!
//! | method and path | who | what |
//! |---|---|---|
//! | `GET /api/v1/organisations` | admin | list (JSON) |
//! | `POST /api/v1/organisations` | admin | create `{"id","name"}` → 201 |
//! | `PUT /api/v1/organisations/{id}` | admin | rename `{"name"}` |
//! | `DELETE /api/v1/organisations/{id}` | admin | 204; 409 while it has points |
//! | `GET /api/v1/points[?format=csv]` | admin | list (JSON) or the registry CSV |
//! | `POST /api/v1/points` | admin | create `{"id","org_id","name","location","expected_headcount"}` → 201 |
//! | `GET/PUT/DELETE /api/v1/points/{id}` | admin | one point |
//! | `POST /api/v1/points/import` | admin | registry CSV body (≤ 8 MiB), all or nothing |
//! | `GET/POST /api/v1/conferences` | operator | list / create-or-rename `{"id","title","stream_key"?}` → 201 created (200 renamed) with `whip_url`, `stream_key`, `whep_url`, `watch_url`, `rtmp_url` (null: no RTMP ingest), `state` |
//! | `GET /api/v1/conferences/{id}` | operator | one conference, as above |
//! | `POST /api/v1/conferences/{id}/stream-key` | operator | rotate the stream key (`{"stream_key"}` or generated); a live broadcast goes on |
//! | `POST /api/v1/conferences/{id}/end` | operator | end: its live sessions end, WHIP is refused (403) until reopened |
//! | `POST /api/v1/conferences/{id}/reopen` | operator | open an ended conference again |
//! | `GET /api/v1/conferences/{id}/links?format=csv\|html\|json&point=&valid_hours=&lang=` | admin | join links (HTML: printable, QR per point) |
//! | `POST /api/v1/conferences/{id}/points/{point}/revoke` | admin | revoke that point's links |
//! | `POST /api/v1/conferences/{id}/headcount` | viewer (join token) | `{"n_people": 25, "event_id": "<32 hex>"?}`; answered once durable; a retry with the same `event_id` is stored once |
//! | `POST /api/v1/conferences/{id}/rollcalls` | admin | start a roll call `{"duration_s": 60}` → 201 `{"id","started_ms","deadline_ms",…}` (see [`rollcall`]) |
//! | `GET /api/v1/conferences/{id}/rollcalls` | admin | every roll call with each point's `answered` (people, at) / `no_answer` / `not_connected` |
//! | `POST /api/v1/conferences/{id}/rollcalls/{rollcall}/answer` | viewer (join token) | `{"n_people": 12, "event_id"?}`; answered once durable; idempotent; 410 after the deadline |
//! | `GET /api/v1/conferences/{id}/events` | admin | the conference's raw event log (JSON), for audits |
//! | `GET /api/v1/conferences/{id}/report?format=csv\|json\|html&lang=vi\|en&as_of_ms=` | admin | attendance report; JSON and HTML link each broadcast's recording (`recordings`: start, end, duration, bytes, state, url) |
//!
//! | `POST /api/v1/relay/events` | relay (relay credential) | `{"node","events":[EventJson...]}` from a child relay's outbox; appended keeping each event's origin node and run, idempotent by event id; `{"accepted","duplicates"}` (see [`relay_router`]) |
//!
//! "admin" and "operator" calls pass [`crate::access::Access::check`]: `Authorization: Bearer
//! <admin token>` (admin), or a console session cookie of an account with that role (admin ⊇
//! operator), with `X-CSRF-Token` on POST/PUT/DELETE. No admin token and no account disables
//! them (403). Errors are JSON: `{"error": "<code>", "message": "<Vietnamese> / <English>"}`.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hallcast_core::accounting::{
    ConferenceId, EndReason, Event, EventId, EventKind, OrgId, Organisation, PointId, PointInfo,
    ReportConfig, SessionChange,
};
use hallcast_ledger::render::{self, Format, Lang, RenderOptions};
use hallcast_ledger::transfer::is_point_level;
use hallcast_ledger::{
    Appended, Conference, EventJson, Ledger, LedgerError, OriginEvent, TokenError, new_event_id,
    now_ms,
};
use serde::{Deserialize, Serialize};

use crate::access::{Access, Role};
use crate::auth;
use crate::registry::{Registry, RegistryError};

/// Everything the attendance API needs.
#[derive(Clone, Debug)]
pub struct AttendanceCtx {
    pub ledger: Ledger,
    /// Bearer token of the admin API; empty disables it.
    pub admin_token: String,
    /// Public base URL of the relay, for join links (e.g. `https://hoinghi.example.vn`).
    pub public_base_url: String,
    /// How long a newly listed join link stays valid (default 30 days).
    pub link_validity: Duration,
    /// Grace window and the like for reports.
    pub report: ReportConfig,
    /// UTC offset of displayed times, minutes (default 420, Vietnam).
    pub utc_offset_minutes: i32,
    /// The conference registry (shared with WHIP/WHEP in the relay).
    pub registry: Arc<Registry>,
    /// Checks join links where the ledger cannot (an edge: the parent's public key and
    /// revocations); None: the ledger's own signer.
    pub join_verifier: Option<JoinVerifier>,
    /// The consoles' role check (accounts, sessions, the admin token).
    pub access: Arc<Access>,
    /// The WHEP events hub, told when a roll call starts (None: nobody is told).
    pub events: Option<Arc<crate::events::Hub>>,
    /// Roll calls known to this relay (deadlines, for answers).
    pub rollcalls: Arc<rollcall::RollCallBook>,
    /// The relay's recorder: reports link each broadcast's recording (None: recording off).
    pub recorder: Option<Arc<hallcast_record::Recorder>>,
    /// The SRT ingest's bound address (`[ingest] srt`), for the encoder details a conference
    /// lists (`srt_url`); None: SRT is off.
    pub srt_addr: Option<std::net::SocketAddr>,
    /// The RTMP ingest's server URL (`rtmp://HOST:PORT`), set once its listener is bound;
    /// unset: no RTMP ingest.
    pub rtmp_server: Arc<std::sync::OnceLock<String>>,
}

/// A join-link check other than the ledger's (see [`AttendanceCtx::join_verifier`]).
#[derive(Clone)]
pub struct JoinVerifier(pub Arc<VerifyFn>);

/// Checks a join token: its claims, or why it is refused.
pub type VerifyFn = dyn Fn(&str) -> Result<hallcast_ledger::JoinClaims, TokenError> + Send + Sync;

impl std::fmt::Debug for JoinVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JoinVerifier")
    }
}

impl AttendanceCtx {
    /// Defaults: links valid 30 days, 60 s grace, times in UTC+07:00.
    pub fn new(
        ledger: Ledger,
        admin_token: impl Into<String>,
        public_base_url: impl Into<String>,
    ) -> Self {
        let admin_token = admin_token.into();
        Self {
            access: Arc::new(Access::new(
                &admin_token,
                &[],
                Duration::from_secs(12 * 3600),
            )),
            registry: Arc::new(Registry::new(ledger.clone())),
            ledger,
            admin_token,
            public_base_url: public_base_url.into(),
            link_validity: Duration::from_secs(30 * 24 * 3600),
            report: ReportConfig::default(),
            utc_offset_minutes: 420,
            join_verifier: None,
            events: None,
            rollcalls: Arc::default(),
            recorder: None,
            srt_addr: None,
            rtmp_server: Arc::default(),
        }
    }

    /// Shares the cell the RTMP ingest's server URL is set in once it listens.
    pub fn with_rtmp_server(mut self, cell: Arc<std::sync::OnceLock<String>>) -> Self {
        self.rtmp_server = cell;
        self
    }

    /// Uses the relay's role check (its accounts and console sessions).
    pub fn with_access(mut self, access: Arc<Access>) -> Self {
        self.access = access;
        self
    }

    /// Tells viewer pages of roll calls through this hub (the relay's `AppState::events`).
    pub fn with_events(mut self, hub: Arc<crate::events::Hub>) -> Self {
        self.events = Some(hub);
        self
    }

    /// Links each broadcast's recording in the reports.
    pub fn with_recorder(mut self, recorder: Arc<hallcast_record::Recorder>) -> Self {
        self.recorder = Some(recorder);
        self
    }

    /// Uses the relay's registry (the one WHIP and WHEP read) instead of a private one.
    pub fn with_registry(mut self, registry: Arc<Registry>) -> Self {
        self.registry = registry;
        self
    }
}

type Ctx = State<Arc<AttendanceCtx>>;

/// The ledger's counters in the Prometheus text format, for the relay's `/metrics`.
pub fn write_ledger_metrics(ledger: &Ledger, out: &mut String) {
    use std::fmt::Write;
    let s = ledger.stats();
    let series = [
        (
            "hallcast_ledger_events_queued_total",
            "Attendance events handed to the ledger",
            s.n_queued,
        ),
        (
            "hallcast_ledger_events_stored_total",
            "Attendance events stored durably",
            s.n_stored,
        ),
        (
            "hallcast_ledger_events_duplicate_total",
            "Attendance events whose id was already stored",
            s.n_duplicates,
        ),
        (
            "hallcast_ledger_events_dropped_total",
            "Attendance events dropped because the ledger queue was full",
            s.n_dropped,
        ),
        (
            "hallcast_ledger_events_failed_total",
            "Attendance events that could not be stored (refused by the store, or still queued when the ledger closed during a store outage)",
            s.n_failed,
        ),
        (
            "hallcast_ledger_store_outages_total",
            "Times the ledger's store (database) was unreachable and came back",
            s.n_outages,
        ),
        (
            "hallcast_ledger_events_stored_late_total",
            "Attendance events that waited out a store outage in the queue and were then stored",
            s.n_stored_late,
        ),
        (
            "hallcast_ledger_batches_total",
            "Ledger transactions committed",
            s.n_batches,
        ),
        (
            "hallcast_ledger_events_imported_total",
            "Attendance events delivered by child relays and newly stored",
            s.n_imported,
        ),
        (
            "hallcast_ledger_events_import_duplicate_total",
            "Attendance events delivered by child relays that were already stored",
            s.n_import_duplicates,
        ),
        (
            "hallcast_registry_files_refused_total",
            "Registry CSV files refused at import (nothing of them stored)",
            s.n_registry_files_refused,
        ),
        (
            "hallcast_registry_lines_refused_total",
            "Bad lines of refused registry CSV files",
            s.n_registry_lines_refused,
        ),
    ];
    for (name, help, v) in series {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
        );
    }
    let outage_s = s
        .outage_since_ms
        .map_or(0.0, |since| (now_ms() - since).max(0) as f64 / 1000.0);
    let gauges = [
        (
            "hallcast_ledger_store_up",
            "1 while the ledger's store (database) answers, 0 during an outage",
            if s.outage_since_ms.is_some() {
                0.0
            } else {
                1.0
            },
        ),
        (
            "hallcast_ledger_store_outage_seconds",
            "How long the current store outage has lasted (0 when none)",
            outage_s,
        ),
        (
            "hallcast_ledger_events_pending",
            "Attendance events queued and not yet stored",
            s.n_pending as f64,
        ),
    ];
    for (name, help, v) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
    }
}

/// The attendance routes, state applied; merge into the relay's router.
pub fn router(ctx: AttendanceCtx) -> Router {
    let ctx = Arc::new(ctx);
    Router::new()
        .route("/api/v1/organisations", get(list_orgs).post(create_org))
        .route(
            "/api/v1/organisations/{id}",
            axum::routing::put(update_org).delete(delete_org),
        )
        .route("/api/v1/points", get(list_points).post(create_point))
        .route(
            "/api/v1/points/import",
            post(import_points).layer(DefaultBodyLimit::max(8 << 20)),
        )
        .route(
            "/api/v1/points/{id}",
            get(get_point).put(update_point).delete(delete_point),
        )
        .route(
            "/api/v1/conferences",
            get(list_conferences).post(put_conference),
        )
        .route("/api/v1/conferences/{id}", get(get_conference))
        .route("/api/v1/conferences/{id}/stream-key", post(rotate_key))
        .route("/api/v1/conferences/{id}/end", post(end_conference))
        .route("/api/v1/conferences/{id}/reopen", post(reopen_conference))
        .route("/api/v1/conferences/{id}/links", get(links))
        .route(
            "/api/v1/conferences/{id}/points/{point}/revoke",
            post(revoke),
        )
        .route("/api/v1/conferences/{id}/headcount", post(headcount))
        .route(
            "/api/v1/conferences/{id}/rollcalls",
            get(rollcall::list).post(rollcall::start),
        )
        .route(
            "/api/v1/conferences/{id}/rollcalls/{rollcall}/answer",
            post(rollcall::answer),
        )
        .route("/api/v1/conferences/{id}/report", get(report))
        .route("/api/v1/conferences/{id}/events", get(events))
        .with_state(ctx)
}

/// Largest body of `POST /api/v1/relay/events` (an outbox sends at most 500 events, about
/// 150 KB): above the relay's general limit, which is sized for SDP.
pub const RELAY_EVENTS_MAX_BODY: usize = 4 << 20;

/// The parent-side route that child relays deliver attendance events to:
/// `POST /api/v1/relay/events` with `Authorization: Bearer <credential>` (the tree's relay
/// credential; empty disables the route: 403). Body `{"node": "<sender>", "events":
/// [EventJson...]}`: only point-level events (headcount, session), each keeping the node
/// and run that first stored it. Answer `{"accepted": N, "duplicates": M}` once all of them
/// are durable; 400 with a message naming the first bad event for a malformed body; 409
/// for an event that claims this relay's own node name.
pub fn relay_router(ctx: AttendanceCtx, credential: Arc<str>) -> Router {
    let relay = Arc::new(RelayCtx {
        ledger: ctx.ledger,
        credential,
    });
    Router::new()
        .route(
            "/api/v1/relay/events",
            post(relay_events).layer(DefaultBodyLimit::max(RELAY_EVENTS_MAX_BODY)),
        )
        .with_state(relay)
}

/// Lets the WHEP endpoint accept per-point join links: a link is valid for its own
/// conference only, and identifies its point.
pub struct LedgerViewerAuth {
    pub ledger: Ledger,
}

impl crate::ViewerAuth for LedgerViewerAuth {
    fn verify(&self, conference: &str, token: &str) -> Option<crate::ViewerIdentity> {
        let claims = self.ledger.verify_token(token).ok()?;
        (claims.conference.as_str() == conference).then(|| crate::ViewerIdentity {
            point: Some(claims.point.into_string()),
        })
    }
}

// ----- errors -----

/// An API error: status, a stable code and a bilingual message.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: &'a str,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, vi: &str, en: &str) -> Self {
        Self {
            status,
            code,
            message: format!("{vi} / {en}"),
        }
    }

    pub(crate) fn bad_request(detail: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "Yêu cầu không hợp lệ",
            &format!("Bad request: {detail}"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = %self.status, code = self.code, "{}", self.message);
        } else {
            tracing::debug!(status = %self.status, code = self.code, "{}", self.message);
        }
        (
            self.status,
            Json(ErrorBody {
                error: self.code,
                message: &self.message,
            }),
        )
            .into_response()
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::NotFound(id) => ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                &format!("Không có hội nghị {id:?}"),
                &format!("No conference {id:?}"),
            ),
            RegistryError::KeyTooShort => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid",
                &format!(
                    "Khóa luồng phải có ít nhất {} ký tự",
                    crate::registry::MIN_STREAM_KEY_LEN
                ),
                &e.to_string(),
            ),
            RegistryError::BadId(why) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid",
                "Mã hội nghị không hợp lệ",
                &why,
            ),
            RegistryError::Ledger(e) => e.into(),
        }
    }
}

impl From<LedgerError> for ApiError {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::NotFound(what) => ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                &format!("Không tìm thấy {what}"),
                &format!("Not found: {what}"),
            ),
            LedgerError::Conflict(why) => ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                "Xung đột với dữ liệu đã có",
                &why,
            ),
            LedgerError::Invalid(why) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid",
                "Dữ liệu không hợp lệ",
                &why,
            ),
            // The database is unreachable: the event is queued and will be stored when it
            // is back; sending the same event id again stores it once.
            LedgerError::Pending { .. } => {
                tracing::warn!(error = %e, "durable append answered before it was stored");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ledger_pending",
                    "Cơ sở dữ liệu điểm danh đang mất kết nối: sự kiện đã vào hàng đợi và sẽ được ghi khi kết nối lại",
                    "The attendance database is unreachable: the event is queued and will be stored when it is back",
                )
            }
            other => {
                tracing::error!(error = %other, "attendance ledger failure");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ledger_unavailable",
                    "Sổ điểm danh tạm thời không sẵn sàng",
                    "The attendance ledger is unavailable",
                )
            }
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        ApiError {
            status: r.status(),
            code: "bad_json",
            message: format!(
                "Nội dung JSON không hợp lệ / Invalid JSON body: {}",
                r.body_text()
            ),
        }
    }
}

type ApiResult<T> = Result<T, ApiError>;

// ----- auth -----

/// The role check of every admin/operator endpoint here ([`crate::access::Access::check`]):
/// the bearer admin token, or a console session (with its CSRF check on unsafe methods).
fn require(ctx: &AttendanceCtx, method: &Method, headers: &HeaderMap, need: Role) -> ApiResult<()> {
    ctx.access
        .check(method, headers, need)
        .map(|_| ())
        .map_err(|d| ApiError {
            status: d.status,
            code: d.code,
            message: d.message,
        })
}

/// The admin check for routes outside this file (the board, roll calls): the bearer admin
/// token or an admin's console session (with its CSRF check on unsafe methods).
pub(crate) fn admin(ctx: &AttendanceCtx, method: &Method, headers: &HeaderMap) -> ApiResult<()> {
    require(ctx, method, headers, Role::Admin)
}

// ----- DTOs -----

#[derive(Serialize, Deserialize)]
struct OrgDto {
    id: String,
    name: String,
}

#[derive(Deserialize)]
struct OrgUpdate {
    name: String,
}

#[derive(Serialize, Deserialize)]
struct PointDto {
    id: String,
    org_id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    location: String,
    #[serde(default)]
    expected_headcount: Option<u32>,
}

#[derive(Deserialize)]
struct PointUpdate {
    org_id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    location: String,
    #[serde(default)]
    expected_headcount: Option<u32>,
}

/// `POST /api/v1/conferences`: create (a stream key is generated unless given) or rename.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConferencePut {
    id: String,
    title: String,
    #[serde(default)]
    stream_key: Option<String>,
}

/// `POST /api/v1/conferences/{id}/stream-key`: a new key (generated unless given).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct KeyPut {
    #[serde(default)]
    stream_key: Option<String>,
}

/// A conference as the admin sees it: with what the hall encoder and the viewers need.
#[derive(Serialize)]
struct ConferenceDto {
    id: String,
    title: String,
    created_ms: i64,
    /// `open` or `ended`.
    state: &'static str,
    ended_ms: Option<i64>,
    whip_url: String,
    stream_key: String,
    whep_url: String,
    watch_url: String,
    /// What an SRT encoder dials (null when the relay takes no SRT).
    srt_url: Option<String>,
    /// The RTMP ingest's server URL for this conference (`rtmp://HOST:PORT/{id}`; the stream
    /// key is the stream name), None when the relay takes no RTMP.
    rtmp_url: Option<String>,
}

impl ConferenceDto {
    fn of(ctx: &AttendanceCtx, c: &Conference) -> Self {
        let base = ctx.public_base_url.trim_end_matches('/');
        let id = c.id.as_str();
        ConferenceDto {
            id: id.to_string(),
            title: c.title.clone(),
            created_ms: c.created_ms,
            state: if c.ended_ms.is_some() {
                "ended"
            } else {
                "open"
            },
            ended_ms: c.ended_ms,
            whip_url: format!("{base}/whip/{id}"),
            stream_key: c.stream_key.clone(),
            whep_url: format!("{base}/whep/{id}"),
            watch_url: format!("{base}/watch/{id}"),
            srt_url: ctx.srt_addr.map(|a| srt_url(base, a, id, &c.stream_key)),
            rtmp_url: ctx.rtmp_server.get().map(|s| format!("{s}/{id}")),
        }
    }
}

/// The SRT URL an encoder dials for conference `id`: the listener's address (the public URL's
/// host when it listens on a wildcard), the streamid in the SRT access-control form that
/// `hallcast-ingest::streamid` reads, not percent-encoded (ffmpeg 5 passes it verbatim).
fn srt_url(base: &str, addr: std::net::SocketAddr, id: &str, key: &str) -> String {
    let host = if addr.ip().is_unspecified() {
        let authority = base
            .split("://")
            .nth(1)
            .unwrap_or(base)
            .split('/')
            .next()
            .unwrap_or_default();
        // Without the HTTP port; an IPv6 literal keeps its brackets.
        match authority.rfind(':') {
            Some(i) if !authority[i..].contains(']') => authority[..i].to_string(),
            _ => authority.to_string(),
        }
    } else {
        match addr.ip() {
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        }
    };
    format!(
        "srt://{host}:{}?streamid=#!::r={id},m=publish,u={key}",
        addr.port()
    )
}

#[derive(Serialize)]
struct ImportDto {
    n_organisations: usize,
    n_points: usize,
}

#[derive(Deserialize)]
struct HeadcountBody {
    n_people: u32,
    /// Idempotency key chosen by the client (32 hex digits), so that a retry after a lost
    /// answer is stored once. The relay picks one when it is absent.
    #[serde(default)]
    event_id: Option<String>,
}

#[derive(Serialize)]
struct HeadcountDto {
    conference: String,
    point: String,
    n_people: u32,
    at_ms: i64,
    event_id: String,
    /// The event id was already stored: this was a retry, nothing new was recorded.
    duplicate: bool,
}

/// One stored event, as the audit export shows it.
#[derive(Serialize)]
struct EventDto {
    event_id: String,
    at_ms: i64,
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    point: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    change: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    n_people: Option<u32>,
    /// `first_video_sent`: ms from the session's creation to the relay's first video packet.
    #[serde(skip_serializing_if = "Option::is_none")]
    after_ms: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    /// `rollcall_answered`: the roll call answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    rollcall: Option<String>,
    /// `rollcall_started`: when answers stop being accepted (Unix ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    deadline_ms: Option<i64>,
}

impl From<&Event> for EventDto {
    fn from(ev: &Event) -> Self {
        let mut dto = EventDto {
            event_id: ev.event_id.to_string(),
            at_ms: ev.at_ms,
            kind: "",
            point: ev.point().map(|p| p.as_str().to_string()),
            session: ev.session().map(ToString::to_string),
            change: None,
            n_people: None,
            after_ms: None,
            reason: None,
            rollcall: None,
            deadline_ms: None,
        };
        match &ev.kind {
            EventKind::BroadcastStarted => dto.kind = "broadcast_started",
            EventKind::BroadcastEnded => dto.kind = "broadcast_ended",
            EventKind::Headcount { n_people, .. } => {
                dto.kind = "headcount";
                dto.n_people = Some(*n_people);
            }
            EventKind::RollCallStarted { deadline_ms } => {
                dto.kind = "rollcall_started";
                dto.deadline_ms = Some(*deadline_ms);
            }
            EventKind::RollCallAnswered {
                rollcall, n_people, ..
            } => {
                dto.kind = "rollcall_answered";
                dto.rollcall = Some(rollcall.to_string());
                dto.n_people = Some(*n_people);
            }
            EventKind::Session { change, .. } => {
                dto.kind = "session";
                dto.change = Some(match change {
                    SessionChange::Started => "started",
                    SessionChange::MediaFlowing => "media_flowing",
                    SessionChange::FirstVideoSent { after_ms } => {
                        dto.after_ms = Some(*after_ms);
                        "first_video_sent"
                    }
                    SessionChange::AudioOnly => "audio_only",
                    SessionChange::VideoResumed => "video_resumed",
                    SessionChange::Frozen => "frozen",
                    SessionChange::Unfrozen => "unfrozen",
                    SessionChange::Ended { reason } => {
                        dto.reason = Some(match reason {
                            EndReason::Deleted => "deleted",
                            EndReason::Timeout => "timeout",
                            EndReason::RelayShutdown => "relay_shutdown",
                            EndReason::RelayLost => "relay_lost",
                            EndReason::Error => "error",
                        });
                        "ended"
                    }
                });
            }
        }
        dto
    }
}

#[derive(Serialize)]
struct LinkDto {
    point_id: String,
    point_name: String,
    org_id: String,
    org_name: String,
    url: String,
    expires: i64,
}

#[derive(Serialize)]
struct RevokedDto {
    conference: String,
    point: String,
    generation: u32,
}

#[derive(Deserialize, Default)]
struct DocQuery {
    format: Option<String>,
    lang: Option<String>,
    point: Option<String>,
    valid_hours: Option<u64>,
    as_of_ms: Option<i64>,
}

const MAX_PEOPLE: u32 = 100_000;

fn parse<T>(s: &str, f: fn(&str) -> Result<T, hallcast_core::accounting::IdError>) -> ApiResult<T> {
    f(s).map_err(ApiError::bad_request)
}

fn check_text(what: &str, s: &str) -> ApiResult<()> {
    // The same rule as the CSV import's (length, control and bidi-override characters).
    match hallcast_ledger::registry::text_problem(what, s) {
        Some(problem) => Err(ApiError::bad_request(problem)),
        None => Ok(()),
    }
}

fn org_from(id: &str, name: String) -> ApiResult<Organisation> {
    check_text("name", &name)?;
    let id = parse(id, OrgId::parse)?;
    Ok(Organisation {
        name: if name.trim().is_empty() {
            id.to_string()
        } else {
            name
        },
        id,
    })
}

fn point_from(id: &str, u: PointUpdate) -> ApiResult<PointInfo> {
    check_text("name", &u.name)?;
    check_text("location", &u.location)?;
    let id = parse(id, PointId::parse)?;
    Ok(PointInfo {
        org: parse(&u.org_id, OrgId::parse)?,
        name: if u.name.trim().is_empty() {
            id.to_string()
        } else {
            u.name
        },
        location: u.location,
        expected_headcount: u.expected_headcount,
        id,
    })
}

fn point_dto(p: PointInfo) -> PointDto {
    PointDto {
        id: p.id.into_string(),
        org_id: p.org.into_string(),
        name: p.name,
        location: p.location,
        expected_headcount: p.expected_headcount,
    }
}

fn doc_options(ctx: &AttendanceCtx, q: &DocQuery) -> ApiResult<RenderOptions> {
    Ok(RenderOptions {
        lang: q.lang.as_deref().unwrap_or("vi").parse::<Lang>()?,
        utc_offset_minutes: ctx.utc_offset_minutes,
    })
}

fn document(format: Format, body: Vec<u8>, filename: &str) -> Response {
    let mut r = ([(header::CONTENT_TYPE, format.content_type())], body).into_response();
    if format == Format::Csv
        && let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\""))
    {
        r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

// ----- organisations -----

async fn list_orgs(
    State(ctx): Ctx,
    method: Method,
    headers: HeaderMap,
) -> ApiResult<Json<Vec<OrgDto>>> {
    require(&ctx, &method, &headers, Role::Admin)?;
    let orgs = ctx.ledger.organisations().await?;
    Ok(Json(
        orgs.into_iter()
            .map(|o| OrgDto {
                id: o.id.into_string(),
                name: o.name,
            })
            .collect(),
    ))
}

async fn create_org(
    State(ctx): Ctx,
    method: Method,
    headers: HeaderMap,
    body: Result<Json<OrgDto>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<OrgDto>)> {
    require(&ctx, &method, &headers, Role::Admin)?;
    let Json(dto) = body?;
    let org = org_from(&dto.id, dto.name)?;
    ctx.ledger.upsert_organisation(org.clone()).await?;
    Ok((
        StatusCode::CREATED,
        Json(OrgDto {
            id: org.id.into_string(),
            name: org.name,
        }),
    ))
}

async fn update_org(
    State(ctx): Ctx,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Json<OrgUpdate>, JsonRejection>,
) -> ApiResult<Json<OrgDto>> {
    require(&ctx, &method, &headers, Role::Admin)?;
    let Json(u) = body?;
    let org = org_from(&id, u.name)?;
    ctx.ledger.upsert_organisation(org.clone()).await?;
    Ok(Json(OrgDto {
        id: org.id.into_string(),
        name: org.name,
    }))
}

async fn delete_org(
    State(ctx): Ctx,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    require(&ctx, &method, &headers, Role::Admin)?;
    let id = parse(&id, OrgId::parse)?;
    if ctx.ledger.remove_organisation(&id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(LedgerError::NotFound(format!("organisation {id}")).into())
    }
}

// ----- points -----

async fn list_points(
    State(ctx): Ctx,
    method: Method,
    headers: HeaderMap,
    Query(q): Query<DocQuery>,
) -> ApiResult<Response> {
    require(&ctx, &method, &headers, Role::Admin)?;
    match q.format.as_deref() {
        Some("csv") => {
            let csv = ctx.ledger.export_csv().await?;
            Ok(document(Format::Csv, csv, "diem-cau.csv"))
        }
        None | Some("json") => {
            let points = ctx.ledger.points().await?;
            Ok(Json(points.into_iter().map(point_dto).collect::<Vec<_>>()).into_response())
        }
        Some(other) => Err(ApiError::bad_request(format!(
            "format {other:?}: use json or csv"
        ))),
    }
}

async fn create_point(
    State(ctx): Ctx,
    method: Method,
    headers: HeaderMap,
    body: Result<Json<PointDto>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<PointDto>)> {
    require(&ctx, &method, &headers, Role::Admin)?;
    let Json(dto) = body?;
    let p = point_from(
        &dto.id,
        PointUpdate {
            org_id: dto.org_id,
            name: dto.name,
            location: dto.location,
            expected_headcount: dto.expected_headcount,
        },
    )?;
    ctx.ledger.upsert_point(p.clone()).await?;
    Ok((StatusCode::CREATED, Json(point_dto(p))))
}

async fn get_point(
    State(ctx): Ctx,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<PointDto>> {
    require(&ctx, &method, &headers, Role::Admin)?;
    let id = parse(&id, PointId::parse)?;
    let p = ctx
        .ledger
        .points()
        .await?
        .into_iter()
        .find(|p| p.id == id)
        .ok_or_else(|| LedgerError::NotFound(format!("point {id}")))?;
    Ok(Json(point_dto(p)))
}

async fn update_point(
    State(ctx): Ctx,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Json<PointUpdate>, JsonRejection>,
) -> ApiResult<Json<PointDto>> {
    require(&ctx, &method, &headers, Role::Admin)?;
    let Json(u) = body?;
    let p = point_from(&id, u)?;
    ctx.ledger.upsert_point(p.clone()).await?;
    Ok(Json(point_dto(p)))
}

async fn delete_point(
    State(ctx): Ctx,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    require(&ctx, &method, &headers, Role::Admin)?;
    let id = parse(&id, PointId::parse)?;
    if ctx.ledger.remove_point(&id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(LedgerError::NotFound(format!("point {id}")).into())
    }
}

async fn import_points(
    State(ctx): Ctx,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<ImportDto>> {
    require(&ctx, &method, &headers, Role::Admin)?;
    if body.is_empty() {
        return Err(ApiError::bad_request("empty body: send the registry CSV"));
    }
    let s = ctx.ledger.import_csv(body.to_vec()).await?;
    Ok(Json(ImportDto {
        n_organisations: s.n_organisations,
        n_points: s.n_points,
    }))
}

// ----- conferences, links, revocation -----

async fn list_conferences(
    State(ctx): Ctx,
    method: Method,
    headers: HeaderMap,
) -> ApiResult<Json<Vec<ConferenceDto>>> {
    require(&ctx, &method, &headers, Role::Operator)?;
    ctx.registry.refresh().await?;
    Ok(Json(
        ctx.registry
            .all()
            .iter()
            .map(|c| ConferenceDto::of(&ctx, c))
            .collect(),
    ))
}

async fn put_conference(
    State(ctx): Ctx,
    method: Method,
    headers: HeaderMap,
    body: Result<Json<ConferencePut>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<ConferenceDto>)> {
    require(&ctx, &method, &headers, Role::Operator)?;
    let Json(dto) = body?;
    check_text("title", &dto.title)?;
    let id = parse(&dto.id, ConferenceId::parse)?;
    let (c, created) = ctx
        .registry
        .create_or_rename(id, dto.title, dto.stream_key)
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(ConferenceDto::of(&ctx, &c))))
}

async fn get_conference(
    State(ctx): Ctx,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<ConferenceDto>> {
    require(&ctx, &method, &headers, Role::Operator)?;
    let c = ctx
        .registry
        .lookup(&id)
        .await
        .ok_or_else(|| RegistryError::NotFound(id.clone()))?;
    Ok(Json(ConferenceDto::of(&ctx, &c)))
}

async fn rotate_key(
    State(ctx): Ctx,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<ConferenceDto>> {
    require(&ctx, &method, &headers, Role::Operator)?;
    let id = parse(&id, ConferenceId::parse)?;
    let put: KeyPut = if body.is_empty() {
        KeyPut::default()
    } else {
        serde_json::from_slice(&body).map_err(ApiError::bad_request)?
    };
    let c = ctx.registry.rotate_key(&id, put.stream_key).await?;
    Ok(Json(ConferenceDto::of(&ctx, &c)))
}

async fn end_conference(
    State(ctx): Ctx,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<ConferenceDto>> {
    change_conference(&ctx, &method, &headers, &id, async |r, id| r.end(id).await).await
}

async fn reopen_conference(
    State(ctx): Ctx,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<ConferenceDto>> {
    change_conference(&ctx, &method, &headers, &id, async |r, id| {
        r.reopen(id).await
    })
    .await
}

/// An admin's change of one conference's state: authorised, then the id parsed, then `change`.
async fn change_conference(
    ctx: &AttendanceCtx,
    method: &Method,
    headers: &HeaderMap,
    id: &str,
    change: impl AsyncFnOnce(&Registry, &ConferenceId) -> Result<Arc<Conference>, RegistryError>,
) -> ApiResult<Json<ConferenceDto>> {
    require(ctx, method, headers, Role::Operator)?;
    let id = parse(id, ConferenceId::parse)?;
    let c = change(&ctx.registry, &id).await?;
    Ok(Json(ConferenceDto::of(ctx, &c)))
}

async fn title_of(ctx: &AttendanceCtx, id: &ConferenceId) -> ApiResult<Option<String>> {
    Ok(ctx.ledger.conference(id).await?.map(|c| c.title))
}

async fn links(
    State(ctx): Ctx,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<DocQuery>,
) -> ApiResult<Response> {
    require(&ctx, &method, &headers, Role::Admin)?;
    let conference = parse(&id, ConferenceId::parse)?;
    let opts = doc_options(&ctx, &q)?;
    let only = q
        .point
        .as_deref()
        .map(|p| parse(p, PointId::parse))
        .transpose()?;
    let valid_s = match q.valid_hours {
        Some(h) if h == 0 || h > 24 * 366 => {
            return Err(ApiError::bad_request("valid_hours must be 1..=8784"));
        }
        Some(h) => h * 3600,
        None => ctx.link_validity.as_secs(),
    };
    let expires = now_ms() / 1000 + i64::try_from(valid_s).unwrap_or(i64::MAX / 2);
    let links = ctx
        .ledger
        .join_links(&conference, &ctx.public_base_url, expires, only.as_ref())
        .await?;
    match q.format.as_deref().unwrap_or("html") {
        "csv" => Ok(document(
            Format::Csv,
            render::links_csv(&links, &opts)?,
            &format!("duong-dan-{conference}.csv"),
        )),
        "html" => {
            let title = title_of(&ctx, &conference).await?;
            let html = render::links_html(conference.as_str(), title.as_deref(), &links, &opts);
            Ok(document(Format::Html, html.into_bytes(), ""))
        }
        "json" => Ok(Json(
            links
                .into_iter()
                .map(|l| LinkDto {
                    point_id: l.point.id.into_string(),
                    point_name: l.point.name,
                    org_id: l.point.org.into_string(),
                    org_name: l.org_name,
                    url: l.url,
                    expires: l.expires,
                })
                .collect::<Vec<_>>(),
        )
        .into_response()),
        other => Err(ApiError::bad_request(format!(
            "format {other:?}: use html, csv or json"
        ))),
    }
}

/// A fresh join link of one point for a conference (valid for the configured time).
pub(crate) async fn join_link(
    ctx: &AttendanceCtx,
    conference: &str,
    point: &str,
) -> ApiResult<String> {
    if ctx.registry.lookup(conference).await.is_none() {
        return Err(RegistryError::NotFound(conference.to_string()).into());
    }
    let conference = parse(conference, ConferenceId::parse)?;
    let point = parse(point, PointId::parse)?;
    let expires =
        now_ms() / 1000 + i64::try_from(ctx.link_validity.as_secs()).unwrap_or(i64::MAX / 2);
    let links = ctx
        .ledger
        .join_links(&conference, &ctx.public_base_url, expires, Some(&point))
        .await?;
    links
        .into_iter()
        .next()
        .map(|l| l.url)
        .ok_or_else(|| LedgerError::NotFound(format!("point {point}")).into())
}

async fn revoke(
    State(ctx): Ctx,
    method: Method,
    headers: HeaderMap,
    Path((id, point)): Path<(String, String)>,
) -> ApiResult<Json<RevokedDto>> {
    require(&ctx, &method, &headers, Role::Admin)?;
    let conference = parse(&id, ConferenceId::parse)?;
    let point = parse(&point, PointId::parse)?;
    let generation = ctx.ledger.revoke_tokens(&conference, &point).await?;
    Ok(Json(RevokedDto {
        conference: conference.into_string(),
        point: point.into_string(),
        generation,
    }))
}

// ----- viewer: headcount -----

/// The point a viewer request's join token (`Authorization: Bearer`) names, checked to be
/// valid (signature, expiry, revocation) and for `conference`.
fn point_of(
    ctx: &AttendanceCtx,
    headers: &HeaderMap,
    conference: &ConferenceId,
) -> ApiResult<PointId> {
    let Ok(token) = auth::bearer(headers) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Thiếu mã tham dự của điểm cầu",
            "Missing the point's join token (Authorization: Bearer <token>)",
        ));
    };
    let verified = match &ctx.join_verifier {
        Some(v) => (v.0)(token),
        None => ctx.ledger.verify_token(token),
    };
    let claims = verified.map_err(|e| {
        let vi = match e {
            TokenError::Expired { .. } => "Đường dẫn tham dự đã hết hạn",
            TokenError::Revoked => "Đường dẫn tham dự đã bị thu hồi",
            _ => "Mã tham dự không hợp lệ",
        };
        ApiError::new(StatusCode::UNAUTHORIZED, "bad_token", vi, &e.to_string())
    })?;
    if &claims.conference != conference {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "wrong_conference",
            "Đường dẫn này dành cho hội nghị khác",
            &format!("This join link is for conference {}", claims.conference),
        ));
    }
    Ok(claims.point)
}

async fn headcount(
    State(ctx): Ctx,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Json<HeadcountBody>, JsonRejection>,
) -> ApiResult<Json<HeadcountDto>> {
    let conference = parse(&id, ConferenceId::parse)?;
    let point = point_of(&ctx, &headers, &conference)?;
    let Json(b) = body?;
    if b.n_people > MAX_PEOPLE {
        return Err(ApiError::bad_request(format!(
            "n_people must be at most {MAX_PEOPLE}"
        )));
    }
    let event_id = match b.event_id.as_deref() {
        None => new_event_id(),
        Some(s) => s
            .parse::<EventId>()
            .map_err(|e| ApiError::bad_request(format!("event_id must be 32 hex digits: {e}")))?,
    };
    let at_ms = now_ms();
    // Answered only once the declaration is durable.
    let appended = ctx
        .ledger
        .append(Event {
            event_id,
            conference: conference.clone(),
            at_ms,
            kind: EventKind::Headcount {
                point: point.clone(),
                n_people: b.n_people,
            },
        })
        .await?;
    Ok(Json(HeadcountDto {
        conference: conference.into_string(),
        point: point.into_string(),
        n_people: b.n_people,
        at_ms,
        event_id: event_id.to_string(),
        duplicate: appended == Appended::Duplicate,
    }))
}

// ----- audit: the raw event log -----

async fn events(
    State(ctx): Ctx,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<EventDto>>> {
    require(&ctx, &method, &headers, Role::Admin)?;
    let conference = parse(&id, ConferenceId::parse)?;
    let events = ctx.ledger.events(&conference).await?;
    Ok(Json(events.iter().map(EventDto::from).collect()))
}

// ----- relay: events from child relays -----

struct RelayCtx {
    ledger: Ledger,
    credential: Arc<str>,
}

#[derive(Deserialize)]
struct RelayEventsBody {
    node: String,
    events: Vec<EventJson>,
}

#[derive(Serialize)]
struct RelayEventsDto {
    accepted: u64,
    duplicates: u64,
}

async fn relay_events(
    State(ctx): State<Arc<RelayCtx>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<RelayEventsDto>> {
    if ctx.credential.is_empty() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "relay_disabled",
            "Chưa cấu hình mã trạm chuyển tiếp",
            "Relay delivery is disabled (no relay credential configured)",
        ));
    }
    match auth::bearer(&headers) {
        Ok(t) if auth::secret_matches(t, &ctx.credential) => {}
        _ => {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Thiếu hoặc sai mã trạm chuyển tiếp",
                "Missing or wrong relay credential (Authorization: Bearer <credential>)",
            ));
        }
    }
    let b: RelayEventsBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "expected {{\"node\": \"<name>\", \"events\": [...]}}: {e}"
        ))
    })?;
    if b.node.is_empty() || b.node.len() > hallcast_ledger::transfer::MAX_NODE_LEN {
        return Err(ApiError::bad_request("node must be a non-empty relay name"));
    }
    let mut events = Vec::with_capacity(b.events.len());
    for j in b.events {
        let ev = OriginEvent::try_from(j).map_err(|e| ApiError::bad_request(e.to_string()))?;
        if !is_point_level(&ev.event) {
            return Err(ApiError::bad_request(format!(
                "event {}: only point-level events (headcount, session) are relayed",
                ev.event.event_id
            )));
        }
        events.push(ev);
    }
    let n = events.len();
    let done = ctx.ledger.import(events).await?;
    tracing::debug!(
        sender = %b.node,
        n_events = n,
        n_accepted = done.n_accepted,
        n_duplicates = done.n_duplicates,
        "events delivered by a child relay"
    );
    Ok(Json(RelayEventsDto {
        accepted: done.n_accepted,
        duplicates: done.n_duplicates,
    }))
}

// ----- report -----

async fn report(
    State(ctx): Ctx,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<DocQuery>,
) -> ApiResult<Response> {
    require(&ctx, &method, &headers, Role::Admin)?;
    let conference = parse(&id, ConferenceId::parse)?;
    let opts = doc_options(&ctx, &q)?;
    let format: Format = q.format.as_deref().unwrap_or("json").parse()?;
    let as_of = q.as_of_ms.unwrap_or_else(now_ms);
    let report = ctx.ledger.report(&conference, as_of, ctx.report).await?;
    let title = title_of(&ctx, &conference).await?;
    let recordings = match &ctx.recorder {
        Some(r) => crate::recordings::of_conference(r, conference.as_str())
            .await
            .iter()
            .map(|r| {
                let dto = crate::recordings::RecordingDto::of(r, &ctx.public_base_url);
                render::RecordingLink {
                    id: dto.id,
                    start_ms: dto.start_ms,
                    end_ms: dto.end_ms,
                    duration_ms: dto.duration_ms,
                    bytes: dto.bytes,
                    state: dto.state,
                    url: dto.download_url,
                }
            })
            .collect(),
        None => vec![],
    };
    let body = match format {
        Format::Csv => render::report_csv_with(&report, &opts, &recordings)?,
        Format::Json => {
            render::report_json_with(&report, title.as_deref(), &opts, &recordings)?.into_bytes()
        }
        Format::Html => {
            render::report_html_with(&report, title.as_deref(), &opts, &recordings).into_bytes()
        }
    };
    Ok(document(
        format,
        body,
        &format!("diem-danh-{conference}.csv"),
    ))
}

pub mod rollcall;

pub use rollcall::restore_running as restore_running_roll_calls;

#[cfg(test)]
mod tests;
