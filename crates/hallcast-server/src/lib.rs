//! hallcast-server: the HTTP face of a relay — WHIP ingest, WHEP playback, the
//! viewer page, the JSON API and /metrics.
//!
//! This is the only crate that knows HTTP and JSON. It changes the media plane only
//! through [`hallcast_rtc::Engine`] commands and never touches a packet. Errors are
//! answered with a status and a plain-text message that says what was wrong; they
//! are logged once, here.

pub mod access;
pub mod attendance;
pub mod auth;
pub mod board;
pub mod drain;
pub mod edge;
mod error;
pub mod events;
mod health;
pub mod ingest;
mod ledger_hook;
pub mod limits;
mod metrics;
mod openapi;
pub mod outbox;
mod pages;
pub mod preflight;
pub mod recordings;
pub mod registry;
pub mod sessions;
pub mod tls;
pub mod tree;
mod whip;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use axum::routing::{get, post};
use hallcast_config::Config;
use hallcast_rtc::{Engine, EngineEvent, Role, SessionId};
use tokio::sync::mpsc;
use tracing::{info, warn};

pub use error::AppError;
pub use ledger_hook::LedgerHook;
pub use registry::Registry;

/// Who a viewer token identifies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewerIdentity {
    /// The connection point (điểm cầu), when the token is a per-point join link.
    pub point: Option<String>,
}

/// Checks WHEP bearer tokens that are not the conference's shared viewer token
/// (per-point join links). The attendance ledger provides the real one.
pub trait ViewerAuth: Send + Sync + 'static {
    fn verify(&self, conference: &str, token: &str) -> Option<ViewerIdentity>;
}

/// Accepts no join links: only the shared viewer token from the configuration.
pub struct SharedTokenOnly;

impl ViewerAuth for SharedTokenOnly {
    fn verify(&self, _conference: &str, _token: &str) -> Option<ViewerIdentity> {
        None
    }
}

/// Receives every engine event after the server has done its own bookkeeping
/// (the attendance ledger hooks in here).
pub trait EventHook: Send + Sync + 'static {
    fn on_event(&self, event: &EngineEvent, meta: Option<&SessionMeta>);
}

/// What the HTTP layer remembers of a session it created.
#[derive(Debug, Clone)]
pub struct SessionMeta {
    pub conference: String,
    pub role: Role,
    pub point: Option<String>,
    pub etag: String,
    pub created_at: std::time::SystemTime,
    /// Digest of the bearer credential that created the session: `DELETE` and `PATCH` on the
    /// resource must present the same one.
    pub credential: auth::Credential,
}

/// Appends series in the Prometheus text format to `/metrics`.
pub type MetricsWriter = Box<dyn Fn(&mut String) + Send + Sync>;

/// Shared state of the HTTP layer.
pub struct AppState {
    pub config: Arc<Config>,
    pub engine: Engine,
    /// The conference registry (WHIP/WHEP read it per request).
    pub registry: Arc<Registry>,
    pub viewer_auth: Box<dyn ViewerAuth>,
    pub sessions: Mutex<HashMap<SessionId, SessionMeta>>,
    pub started_at: Instant,
    /// More series for `/metrics` (the attendance ledger's counters), set once at start.
    pub extra_metrics: std::sync::OnceLock<MetricsWriter>,
    /// The relays below this one, and where points should be served.
    pub tree: Arc<tree::Tree>,
    /// Set on an edge: starts pulling a conference when a viewer asks for it (pull on demand).
    pub demand: std::sync::OnceLock<Arc<dyn Demand>>,
    /// WHEP server-sent events: per-session and per-conference cells the streams wait on.
    pub events: Arc<events::Hub>,
    /// The consoles' accounts, sessions and role check (shared with the attendance API).
    pub access: Arc<access::Access>,
    /// Graceful drain (SIGTERM): new sessions refused, viewers told to move.
    pub drain: Arc<drain::Drain>,
    /// Rate limits, session caps and refusal counters (`[limits]`).
    pub limits: Arc<limits::Limiter>,
    /// The recorder, set once at start when `[recording] enabled`.
    pub recorder: std::sync::OnceLock<Arc<hallcast_record::Recorder>>,
    /// The ingest gateway's latest refusal per conference (the pre-flight answer shows it).
    pub ingest_problems: ingest::IngestProblems,
}

/// An edge's answer to a viewer of a conference it does not pull yet.
pub trait Demand: Send + Sync + 'static {
    /// Starts pulling `conference` if the parent has it live; resolves once it is live here
    /// (true) or it cannot be (false).
    fn demand(
        &self,
        conference: String,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + '_>>;
}

impl AppState {
    pub fn new(
        config: Arc<Config>,
        engine: Engine,
        registry: Arc<Registry>,
        viewer_auth: Box<dyn ViewerAuth>,
        tree: Arc<tree::Tree>,
    ) -> Arc<AppState> {
        Arc::new(AppState {
            access: Arc::new(access::Access::from_config(&config)),
            limits: Arc::new(limits::Limiter::new(&config.limits)),
            config,
            engine,
            registry,
            viewer_auth,
            sessions: Mutex::new(HashMap::new()),
            started_at: Instant::now(),
            extra_metrics: std::sync::OnceLock::new(),
            tree,
            demand: std::sync::OnceLock::new(),
            recorder: std::sync::OnceLock::new(),
            ingest_problems: ingest::IngestProblems::default(),
            events: Arc::new(events::Hub::new()),
            drain: Arc::new(drain::Drain::default()),
        })
    }

    pub(crate) fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, SessionMeta>> {
        // A poisoned lock only means another handler panicked mid-update of a plain
        // map; the map itself is still consistent enough to keep serving.
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The relay's HTTP application. `extra` is merged in (the attendance API).
pub fn app(state: Arc<AppState>, extra: Router) -> Router {
    let limit = state.config.http.max_body_bytes;
    let cors = HeaderValue::from_str(&state.config.http.cors_origin)
        .unwrap_or(HeaderValue::from_static("*"));
    Router::new()
        .route(
            "/whip/{conference}",
            post(whip::whip_post).options(whip::options),
        )
        .route(
            "/whip/{conference}/{session}",
            axum::routing::delete(whip::whip_delete)
                .patch(whip::whip_patch)
                .options(whip::options),
        )
        .route(
            "/whep/{conference}",
            post(whip::whep_post).options(whip::options),
        )
        .route(
            "/whep/{conference}/{session}",
            axum::routing::delete(whip::whep_delete)
                .patch(whip::whep_patch)
                .options(whip::options),
        )
        .route(
            "/whep/{conference}/{session}/events",
            post(events::subscribe).options(events::options),
        )
        .route(
            "/whep/{conference}/{session}/events/{token}",
            get(events::stream).options(events::options),
        )
        .route("/watch/{conference}", get(pages::watch))
        .route("/operator", get(pages::operator))
        .route("/admin", get(pages::admin))
        .route("/static/{file}", get(pages::static_file))
        .route("/", get(pages::index))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::metrics))
        .route("/api/openapi.json", get(openapi::document))
        .route(
            "/api/v1/conferences/{conference}/status",
            get(pages::status),
        )
        .route(
            "/api/v1/conferences/{conference}/preflight",
            get(preflight::preflight),
        )
        .route("/api/v1/conferences/{conference}/route", get(tree::route))
        .route("/api/v1/relay/report", post(tree::report))
        .route("/api/v1/tree", get(tree::tree))
        .route("/api/v1/sessions", get(sessions::sessions))
        .route("/api/v1/recordings", get(recordings::list))
        .route("/api/v1/recordings/{id}", get(recordings::download))
        .with_state(state.clone())
        .merge(access::router(state.access.clone()))
        .merge(extra)
        .layer(axum::middleware::from_fn(api_preflight))
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            limits::guard,
        ))
        .layer(axum::middleware::map_response(move |mut r: Response| {
            let cors = cors.clone();
            async move {
                let h = r.headers_mut();
                h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, cors);
                // A viewer page's address carries its point's join link (`?token=`): no request
                // it makes may pass that address on as a `Referer`. And no answer is sniffed
                // into another content type than the one it declares.
                h.insert(
                    header::REFERRER_POLICY,
                    HeaderValue::from_static("no-referrer"),
                );
                h.insert(
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                );
                h.insert(
                    header::ACCESS_CONTROL_EXPOSE_HEADERS,
                    HeaderValue::from_static(
                        "Location, ETag, Link, Retry-After, Accept-Post, Accept-Patch",
                    ),
                );
                r
            }
        }))
}

/// The CORS preflight answer's headers (methods and request headers allowed, cached a day).
pub(crate) fn cors_preflight(
    h: &mut axum::http::HeaderMap,
    methods: &'static str,
    headers: &'static str,
) {
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(methods),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(headers),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
}

/// CORS preflight for the JSON API: a viewer page served by an edge asks the central (its
/// `home`) for a route with an `Authorization` header, which browsers check first with
/// `OPTIONS`. WHIP/WHEP resources answer `OPTIONS` themselves.
async fn api_preflight(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    if req.method() == axum::http::Method::OPTIONS && req.uri().path().starts_with("/api/v1/") {
        let mut r = Response::new(axum::body::Body::empty());
        *r.status_mut() = axum::http::StatusCode::NO_CONTENT;
        cors_preflight(
            r.headers_mut(),
            "GET, POST, OPTIONS",
            "Authorization, Content-Type, Accept",
        );
        return r;
    }
    next.run(req).await
}

/// Consumes engine events: keeps the session table in step and hands each event
/// to `hook`.
pub fn spawn_event_pump(
    state: Arc<AppState>,
    mut events: mpsc::Receiver<EngineEvent>,
    hook: Option<Arc<dyn EventHook>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(e) = events.recv().await {
            let meta = match &e {
                EngineEvent::SessionConnected { session, .. }
                | EngineEvent::FirstVideoSent { session, .. }
                | EngineEvent::BroadcastStarted { session, .. }
                | EngineEvent::BroadcastEnded { session, .. }
                | EngineEvent::Delivery { session, .. }
                | EngineEvent::Adaptation { session, .. } => state.sessions().get(session).cloned(),
                EngineEvent::SessionEnded { session, .. } => state.sessions().remove(session),
            };
            match &e {
                EngineEvent::BroadcastStarted {
                    conference,
                    session,
                } => info!(%conference, %session, "broadcast live"),
                EngineEvent::BroadcastEnded { conference, .. } => {
                    info!(%conference, "broadcast ended")
                }
                EngineEvent::SessionEnded {
                    reason, session, ..
                } if meta.is_none() => {
                    warn!(%session, ?reason, "ended session unknown to the HTTP layer")
                }
                _ => {}
            }
            state.events.on_event(&e);
            if let Some(h) = &hook {
                h.on_event(&e, meta.as_ref());
            }
        }
    })
}

/// Tests' relay state without a socket: a running engine with no media, a ledger in a fresh
/// temporary directory (`prefix` names it; the caller removes it), the default config and a
/// central's tree.
#[cfg(test)]
pub(crate) async fn test_state(prefix: &str) -> (Arc<AppState>, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!(
        "{prefix}-{:032x}",
        hallcast_ledger::new_event_id().0
    ));
    let ledger = hallcast_ledger::Ledger::open(hallcast_ledger::LedgerConfig::new(
        hallcast_ledger::StoreConfig::sqlite_in(&dir),
        hallcast_ledger::Secret::from_bytes(b"0123456789abcdef0123".to_vec()).unwrap(),
    ))
    .await
    .unwrap();
    let (tx, _rx) = mpsc::channel(16);
    let engine = Engine::start(hallcast_rtc::EngineConfig::default(), tx).expect("engine");
    let state = AppState::new(
        Arc::new(Config::default()),
        engine,
        Arc::new(registry::Registry::new(ledger)),
        Box::new(SharedTokenOnly),
        Arc::new(tree::Tree::new(
            "central".into(),
            "http://central".into(),
            String::new(),
        )),
    );
    (state, dir)
}
