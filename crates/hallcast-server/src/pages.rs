//! The pages the relay serves: the viewer page and its static files, a small
//! landing page, and the conference status used by pages and dashboards.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Serialize;

use crate::{AppError, AppState};

/// Files of `web/`, embedded so the binary is self-contained.
const STATIC: &[(&str, &str, &str)] = &[
    (
        "watch.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../web/watch.js"),
    ),
    (
        "watch.css",
        "text/css; charset=utf-8",
        include_str!("../../../web/watch.css"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../web/api.js"),
    ),
    (
        "console.css",
        "text/css; charset=utf-8",
        include_str!("../../../web/console.css"),
    ),
    (
        "login.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../web/login.js"),
    ),
    (
        "operator.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../web/operator.js"),
    ),
    (
        "admin.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../web/admin.js"),
    ),
    (
        "admin.css",
        "text/css; charset=utf-8",
        include_str!("../../../web/admin.css"),
    ),
    (
        "admin-rollcall.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../web/admin-rollcall.js"),
    ),
];
const WATCH_HTML: &str = include_str!("../../../web/watch.html");
const OPERATOR_HTML: &str = include_str!("../../../web/operator.html");
const ADMIN_HTML: &str = include_str!("../../../web/admin.html");

/// `GET /operator`: the operator console, for a signed-in operator or admin (others are sent
/// to `/login?next=/operator...`).
pub async fn operator(
    State(state): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    console_page(
        &state,
        &headers,
        &uri,
        crate::access::Role::Operator,
        OPERATOR_HTML,
    )
}

/// `GET /admin`: the admin dashboard, for a signed-in admin (others are sent to
/// `/login?next=/admin...`; an operator gets a 403 page).
pub async fn admin(
    State(state): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    console_page(
        &state,
        &headers,
        &uri,
        crate::access::Role::Admin,
        ADMIN_HTML,
    )
}

/// A console page behind the sign-in: the page for `role` and above, else the access
/// check's answer (a 303 to `/login?next=<this page>`, or a 403 page).
fn console_page(
    state: &AppState,
    headers: &axum::http::HeaderMap,
    uri: &axum::http::Uri,
    role: crate::access::Role,
    html: &'static str,
) -> Response {
    let here = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    match state.access.page(headers, here, role) {
        Ok(_) => (
            [
                (header::CACHE_CONTROL, "no-store"),
                (header::X_FRAME_OPTIONS, "DENY"),
            ],
            Html(html),
        )
            .into_response(),
        Err(r) => r,
    }
}

pub async fn watch(
    State(state): State<Arc<AppState>>,
    Path(conference): Path<String>,
    query: axum::extract::Query<crate::tree::WatchQuery>,
) -> Result<Response, AppError> {
    // A point whose organisation has an edge watches from there.
    if let Some(r) = crate::tree::watch_redirect(&state, &conference, &query) {
        return Ok(r);
    }
    if state.registry.lookup(&conference).await.is_none() {
        return Err(AppError::new(
            StatusCode::NOT_FOUND,
            format!(
                "Không có hội nghị {conference:?} / no conference {conference:?} on this relay"
            ),
        ));
    }
    Ok(([(header::CACHE_CONTROL, "no-cache")], Html(WATCH_HTML)).into_response())
}

pub async fn static_file(Path(file): Path<String>) -> Response {
    match STATIC.iter().find(|(name, _, _)| *name == file) {
        Some((_, mime, body)) => (
            [
                (header::CONTENT_TYPE, *mime),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such file\n").into_response(),
    }
}

pub async fn index(State(state): State<Arc<AppState>>) -> Html<String> {
    let mut items = String::new();
    for c in state.registry.all() {
        items.push_str(&format!(
            "<li><b>{}</b> <code>{}</code> — WHIP <code>/whip/{}</code>, WHEP <code>/whep/{}</code></li>",
            html_escape(&c.title),
            html_escape(c.id.as_str()),
            html_escape(c.id.as_str()),
            html_escape(c.id.as_str())
        ));
    }
    Html(format!(
        "<!doctype html><html lang=\"vi\"><meta charset=\"utf-8\"><title>hallcast</title>\
<body style=\"font-family:sans-serif;max-width:50em;margin:2em auto\"><h1>hallcast</h1>\
<p>Trạm phát hội nghị trực tuyến / conference relay.</p><ul>{items}</ul>\
<p><a href=\"/metrics\">/metrics</a> · <a href=\"/healthz\">/healthz</a></p></body></html>"
    ))
}

#[derive(Serialize)]
struct Status {
    conference: String,
    title: String,
    live: bool,
    audio_codec: Option<&'static str>,
    video_codec: Option<&'static str>,
    n_viewers: usize,
}

/// The longest `wait_live` a status request may ask for, seconds.
pub const WAIT_LIVE_MAX_S: u64 = 30;
/// How often a held status request on an edge asks it to pull (it pulls once its parent
/// has the conference live).
const DEMAND_RECHECK: Duration = Duration::from_millis(500);

#[derive(serde::Deserialize)]
pub struct StatusQuery {
    /// Hold the answer until the conference is live, at most this many seconds (capped at
    /// [`WAIT_LIVE_MAX_S`]); 0 or absent: answer at once.
    #[serde(default)]
    wait_live: u64,
}

pub async fn status(
    State(state): State<Arc<AppState>>,
    Path(conference): Path<String>,
    query: Result<Query<StatusQuery>, QueryRejection>,
) -> Result<Response, AppError> {
    let Query(query) = query.map_err(|e| {
        AppError::new(
            StatusCode::BAD_REQUEST,
            format!("wait_live must be a whole number of seconds: {e}"),
        )
    })?;
    let conf = state.registry.lookup(&conference).await.ok_or_else(|| {
        AppError::new(
            StatusCode::NOT_FOUND,
            format!("no conference {conference:?}"),
        )
    })?;
    let mut snap = state.engine.snapshot().await?;
    let mut live = snap
        .conferences
        .iter()
        .any(|c| *c.id == *conference && c.live);
    if !live && query.wait_live > 0 {
        let deadline =
            tokio::time::Instant::now() + Duration::from_secs(query.wait_live.min(WAIT_LIVE_MAX_S));
        let demand = state.demand.get();
        loop {
            // An edge pulls for a waiting page as for an offer (pull on demand: a waiting
            // page is a viewer); it learns that the parent went live from its sync.
            if let Some(d) = demand
                && d.demand(conference.clone()).await
            {
                live = true;
                break;
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            let step = match demand {
                Some(_) => left.min(DEMAND_RECHECK),
                None => left,
            };
            // The snapshot may trail the event: the event's word counts.
            if state.events.wait_live(&conference, step).await {
                live = true;
                break;
            }
        }
        if live {
            snap = state.engine.snapshot().await?;
        }
    }
    let c = snap.conferences.iter().find(|c| *c.id == *conference);
    let body = Status {
        conference: conference.clone(),
        title: conf.title.clone(),
        live,
        audio_codec: c.and_then(|c| c.audio_codec),
        video_codec: c.and_then(|c| c.video_codec),
        n_viewers: c.map_or(0, |c| c.n_subscribers),
    };
    Ok(axum::Json(body).into_response())
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
