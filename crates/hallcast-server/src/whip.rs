//! WHIP (RFC 9725) ingest and WHEP playback: the same resource model, two roles.

use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use hallcast_ledger::Conference;
use hallcast_rtc::{EndReason, Role, SessionId, SessionStarted};

use crate::auth::{self, Credential, secret_matches};
use crate::{AppError, AppState, SessionMeta, ViewerIdentity};

const SDP: &str = "application/sdp";
const TRICKLE: &str = "application/trickle-ice-sdpfrag";

pub async fn options(State(state): State<Arc<AppState>>) -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    let h = r.headers_mut();
    h.insert(
        header::ALLOW,
        HeaderValue::from_static("OPTIONS, POST, DELETE, PATCH"),
    );
    h.insert("accept-post", HeaderValue::from_static(SDP));
    h.insert("accept-patch", HeaderValue::from_static(TRICKLE));
    crate::cors_preflight(
        h,
        "OPTIONS, POST, DELETE, PATCH",
        "Authorization, Content-Type, If-Match",
    );
    for link in ice_links(&state) {
        h.append(header::LINK, link);
    }
    r
}

pub async fn whip_post(
    State(state): State<Arc<AppState>>,
    Path(conference): Path<String>,
    listener: Option<axum::Extension<crate::ingest::IngestListener>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, AppError> {
    // The relay's own RTMP/SRT gateway, on its loopback listener only.
    let protocol = crate::ingest::protocol_of(&headers, listener.map(|e| e.0));
    if !state.config.upstream.parent.is_empty() {
        return Err(AppError::new(
            StatusCode::FORBIDDEN,
            format!(
                "Đây là relay biên, không nhận luồng phát / this is an edge relay: publish to the central relay ({})",
                state.tree.root()
            ),
        ));
    }
    let conf = conference_of(&state, &conference).await?;
    // Authenticate before the body is read: a wrong key is a 401 whatever it sent.
    let token = bearer(&headers)?;
    let conf = if secret_matches(token, &conf.stream_key) {
        conf
    } else {
        // The key may have been rotated by another process (the CLI) a moment ago.
        state.registry.refresh_on_miss().await;
        match state.registry.get(&conference) {
            Some(c) if secret_matches(token, &c.stream_key) => c,
            _ => {
                return Err(AppError::new(
                    StatusCode::UNAUTHORIZED,
                    "wrong stream key for this conference",
                ));
            }
        }
    };
    if conf.ended_ms.is_some() {
        return Err(AppError::new(
            StatusCode::FORBIDDEN,
            "Hội nghị đã kết thúc / the conference has ended: reopen it to broadcast again",
        ));
    }
    // Draining: the publisher that is here keeps broadcasting; a new one goes elsewhere.
    state.drain.refuse()?;
    let offer = sdp_body(&state, &headers, body).await?;
    let started = state
        .engine
        .publish_as(&conference, offer, protocol)
        .await?;
    // A publisher was accepted: an earlier refused push is history.
    state.ingest_problems.clear(&conference);
    Ok(created(
        &state,
        "whip",
        &conference,
        started,
        Role::Publisher,
        None,
        Credential::of(token),
    ))
}

pub async fn whep_post(
    State(state): State<Arc<AppState>>,
    Path(conference): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, AppError> {
    let conf = conference_of(&state, &conference).await?;
    if conf.ended_ms.is_some() {
        // Final: the viewer page stops retrying (a conference that is only not live yet, or
        // between publishers, is a 409 with Retry-After).
        return Err(AppError::new(
            StatusCode::GONE,
            "Hội nghị đã kết thúc / the conference has ended",
        ));
    }
    // Authenticate before the body is read.
    let token = bearer(&headers)?;
    if state.tree.is_relay(token) {
        // A child relay pulling every layer (its offer comes from `Engine::pull`).
        state.drain.refuse()?;
        let offer = sdp_body(&state, &headers, body).await?;
        let started = subscribe_or_demand(&state, &conference, offer, true).await?;
        return Ok(created(
            &state,
            "whep",
            &conference,
            started,
            Role::Relay,
            None,
            Credential::of(token),
        ));
    }
    let identity = if secret_matches(token, &conf.viewer_token) {
        ViewerIdentity { point: None }
    } else if secret_matches(token, &conf.stream_key) {
        // The operator console's preview of the incoming feed: whoever may publish may watch
        // what they publish. No point, so never accounted in attendance (the ledger hook counts
        // only sessions of a point).
        ViewerIdentity { point: None }
    } else {
        state
            .viewer_auth
            .verify(&conference, token)
            .ok_or_else(|| {
                AppError::new(
                    StatusCode::UNAUTHORIZED,
                    "invalid, expired or revoked viewer token",
                )
            })?
    };
    // A point whose organisation has an edge is served there.
    if identity.point.is_some()
        && let Some(r) =
            crate::tree::redirect(&state, &conference, token, &format!("/whep/{conference}"))
    {
        return Ok(r);
    }
    // Draining: 503 + Retry-After; the viewer page retries through the route lookup.
    state.drain.refuse()?;
    crate::limits::admit(&state, &conference)?;
    let offer = sdp_body(&state, &headers, body).await?;
    let started = subscribe_or_demand(&state, &conference, offer, false).await?;
    Ok(created(
        &state,
        "whep",
        &conference,
        started,
        Role::Subscriber,
        identity.point,
        Credential::of(token),
    ))
}

/// Subscribes; on an edge that does not pull the conference yet (pull on demand), starts
/// pulling it first.
async fn subscribe_or_demand(
    state: &AppState,
    conference: &str,
    offer: String,
    relay: bool,
) -> Result<SessionStarted, AppError> {
    let go = |offer: String| async move {
        if relay {
            state.engine.subscribe_relay(conference, offer).await
        } else {
            state.engine.subscribe(conference, offer).await
        }
    };
    match go(offer.clone()).await {
        Err(hallcast_rtc::EngineError::NotLive) => match state.demand.get() {
            Some(d) if d.demand(conference.to_string()).await => Ok(go(offer).await?),
            _ => Err(hallcast_rtc::EngineError::NotLive.into()),
        },
        r => Ok(r?),
    }
}

/// `DELETE /whip/{conference}/{session}`.
pub async fn whip_delete(
    state: State<Arc<AppState>>,
    path: Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    resource_delete(state, path, headers, Role::Publisher).await
}

/// `DELETE /whep/{conference}/{session}`.
pub async fn whep_delete(
    state: State<Arc<AppState>>,
    path: Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    resource_delete(state, path, headers, Role::Subscriber).await
}

/// `PATCH /whip/{conference}/{session}`.
pub async fn whip_patch(
    state: State<Arc<AppState>>,
    path: Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, AppError> {
    resource_patch(state, path, headers, body, Role::Publisher).await
}

/// `PATCH /whep/{conference}/{session}`.
pub async fn whep_patch(
    state: State<Arc<AppState>>,
    path: Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, AppError> {
    resource_patch(state, path, headers, body, Role::Subscriber).await
}

/// Ends a session. Only the credential that created it may (the publisher's stream key, the
/// viewer's own token); anything else is refused and changes nothing.
async fn resource_delete(
    State(state): State<Arc<AppState>>,
    Path((conference, session)): Path<(String, String)>,
    headers: HeaderMap,
    role: Role,
) -> Result<Response, AppError> {
    let id = session_of(&state, &conference, &session, role, &headers)?;
    if !state.engine.end(id, EndReason::Deleted).await? {
        // Ended meanwhile (a timeout, the conference ended): its end event is on its way.
        return Err(AppError::new(StatusCode::NOT_FOUND, "no such session"));
    }
    Ok(StatusCode::OK.into_response())
}

/// Trickle ICE (RFC 8840 fragments). ICE restarts are not supported: the client
/// starts a new session instead (the relay keeps its place in the fan-out cheap).
async fn resource_patch(
    State(state): State<Arc<AppState>>,
    Path((conference, session)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
    role: Role,
) -> Result<Response, AppError> {
    let id = session_of(&state, &conference, &session, role, &headers)?;
    let etag = state
        .sessions()
        .get(&id)
        .map(|m| m.etag.clone())
        .unwrap_or_default();
    if content_type(&headers) != TRICKLE {
        return Err(AppError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("PATCH takes Content-Type: {TRICKLE}"),
        ));
    }
    if let Some(m) = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok())
        && m != "*"
        && m != etag
    {
        return Err(AppError::new(
            StatusCode::PRECONDITION_FAILED,
            "If-Match does not match the session's ETag",
        ));
    }
    let body = read_body(&state, body).await?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| AppError::new(StatusCode::BAD_REQUEST, "the fragment is not UTF-8"))?;
    if text.lines().any(|l| l.starts_with("a=ice-ufrag:"))
        && headers.get(header::IF_MATCH).is_some_and(|v| v == "*")
    {
        return Err(AppError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "ICE restart is not supported: DELETE this session and POST a new offer",
        ));
    }
    let candidates: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("a=candidate:"))
        .map(str::to_string)
        .collect();
    state.engine.trickle(id, candidates).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn created(
    state: &AppState,
    kind: &str,
    conference: &str,
    started: SessionStarted,
    role: Role,
    point: Option<String>,
    credential: Credential,
) -> Response {
    let SessionStarted { session, answer } = started;
    let etag = format!("\"{session}\"");
    state.sessions().insert(
        session,
        SessionMeta {
            conference: conference.to_string(),
            role,
            point,
            etag: etag.clone(),
            created_at: SystemTime::now(),
            credential,
        },
    );
    let location = format!("/{kind}/{conference}/{session}");
    let mut r = (StatusCode::CREATED, [(header::CONTENT_TYPE, SDP)], answer).into_response();
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&location) {
        h.insert(header::LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert("accept-patch", HeaderValue::from_static(TRICKLE));
    for link in ice_links(state) {
        h.append(header::LINK, link);
    }
    if role == Role::Subscriber
        && let Some(link) = crate::events::link(conference, session)
    {
        h.append(header::LINK, link);
    }
    r
}

fn ice_links(state: &AppState) -> Vec<HeaderValue> {
    let mut out = Vec::new();
    for s in &state.config.ice_servers {
        for url in &s.urls {
            let mut v = format!("<{url}>; rel=\"ice-server\"");
            if !s.username.is_empty() {
                v.push_str(&format!(
                    "; username=\"{}\"; credential=\"{}\"; credential-type=\"password\"",
                    s.username, s.credential
                ));
            }
            if let Ok(h) = HeaderValue::from_str(&v) {
                out.push(h);
            }
        }
    }
    out
}

async fn conference_of(state: &AppState, id: &str) -> Result<Arc<Conference>, AppError> {
    state.registry.lookup(id).await.ok_or_else(|| {
        AppError::new(
            StatusCode::NOT_FOUND,
            format!("no conference {id:?} on this relay"),
        )
    })
}

/// The session a resource URL names (a publisher's under `/whip`, a viewer's under `/whep`),
/// if the request carries the credential that created it.
pub(crate) fn session_of(
    state: &AppState,
    conference: &str,
    session: &str,
    role: Role,
    headers: &HeaderMap,
) -> Result<SessionId, AppError> {
    let not_found = || AppError::new(StatusCode::NOT_FOUND, "no such session (it may have ended)");
    let id: SessionId = session.parse().map_err(|_| not_found())?;
    // A WHEP resource is a viewer's or a child relay's pull (both POSTed to /whep): an edge
    // that lets go of a pull DELETEs it with its relay credential, as a viewer does with its link.
    let serves = |r: Role| r == role || (role == Role::Subscriber && r == Role::Relay);
    let credential = match state.sessions().get(&id) {
        Some(m) if m.conference == conference && serves(m.role) => m.credential,
        _ => return Err(not_found()),
    };
    let token = bearer(headers)?;
    if !credential.matches(&Credential::of(token)) {
        return Err(AppError::new(
            StatusCode::FORBIDDEN,
            "this session was started with another credential: only its own stream key or \
             viewer token may change or end it",
        ));
    }
    Ok(id)
}

pub(crate) fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// Reads a body of at most `http.max_body_bytes`.
async fn read_body(state: &AppState, body: Body) -> Result<Bytes, AppError> {
    let limit = state.config.http.max_body_bytes;
    axum::body::to_bytes(body, limit).await.map_err(|_| {
        AppError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than {limit} bytes (http.max_body_bytes)"),
        )
    })
}

/// Checks the content type, then reads the SDP offer.
async fn sdp_body(state: &AppState, headers: &HeaderMap, body: Body) -> Result<String, AppError> {
    let ct = content_type(headers);
    if ct != SDP {
        let got = if ct.is_empty() {
            "none".to_string()
        } else {
            ct
        };
        return Err(AppError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("expected Content-Type: {SDP}, got {got}"),
        ));
    }
    let body = read_body(state, body).await?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| AppError::new(StatusCode::BAD_REQUEST, "the SDP offer is not UTF-8"))?;
    if !text.trim_start().starts_with("v=0") {
        return Err(AppError::new(
            StatusCode::BAD_REQUEST,
            "malformed SDP offer: it must start with \"v=0\"",
        ));
    }
    Ok(text.to_string())
}

fn bearer(headers: &HeaderMap) -> Result<&str, AppError> {
    auth::bearer(headers).map_err(|e| AppError::new(StatusCode::UNAUTHORIZED, e.message()))
}
