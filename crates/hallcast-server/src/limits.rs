//! Limits (`[limits]`): rate limits per client address and per token, session caps, and the
//! HTTP server that closes slow or silent clients.
//!
//! * Rates are GCRA token buckets ([`Buckets`], sans-IO: the time is passed in). POST, PUT,
//!   PATCH and DELETE are charged to the client's address and to its bearer token (a point's
//!   join link; relay credentials, the admin token, stream keys and shared viewer tokens have
//!   their own, larger budget, and the first two are not charged to their address: an edge asks
//!   for many points). Trickle ICE (`PATCH` of a WHIP/WHEP session) is never limited, nor is
//!   media (UDP, not HTTP at all).
//! * Refused credentials (401/403 to a request with a bearer token, or to a sign-in) are charged
//!   to the address; once that budget is spent every such request from the address without a
//!   valid credential is answered 429 until it
//!   refills (guessing the admin token or join links; the points of an organisation that shares
//!   the guesser's NAT address still join).
//! * Viewer sessions per conference and sessions per relay are capped: WHEP answers 503.
//! * [`serve`]: HTTP/1.1 with a header read timeout (slow or silent clients are disconnected),
//!   a cap on open connections; [`guard`] bounds the time to send a body (408).
//!
//! Every refusal says why, carries `Retry-After`, and is counted in
//! `hallcast_limit_refusals_total{reason}`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use hallcast_config::Limits;
use hallcast_rtc::Role;

use crate::auth::{self, Credential, secret_matches};
use crate::{AppError, AppState};

/// Keys kept per bucket set before full (idle) buckets are forgotten.
const PRUNE_AT: usize = 4096;

/// A GCRA rate: `per_second` sustained, `burst` at once. Sans-IO: `now` is any monotonic
/// duration the caller keeps counting from.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    /// Time one request costs.
    cost: Duration,
    /// How far ahead of now the bucket may be booked (`burst` requests' cost).
    depth: Duration,
}

impl Rate {
    /// None when either is 0 (the limit is off).
    pub fn new(per_second: u32, burst: u32) -> Option<Rate> {
        if per_second == 0 || burst == 0 {
            return None;
        }
        let cost = Duration::from_secs(1) / per_second;
        Some(Rate {
            cost,
            depth: cost * burst,
        })
    }

    /// Charges one request to a bucket booked until `tat` (None: full). `Err` holds how long
    /// until one more would be allowed; the bucket is then unchanged.
    fn charge(&self, tat: Option<Duration>, now: Duration) -> Result<Duration, Duration> {
        let next = tat.unwrap_or(now).max(now) + self.cost;
        if next - now > self.depth {
            Err(next - now - self.depth)
        } else {
            Ok(next)
        }
    }
}

/// Buckets of one rate, by key.
#[derive(Debug)]
pub struct Buckets<K> {
    rate: Rate,
    tat: HashMap<K, Duration>,
}

impl<K: std::hash::Hash + Eq> Buckets<K> {
    pub fn new(rate: Rate) -> Self {
        Buckets {
            rate,
            tat: HashMap::new(),
        }
    }

    /// Charges one request to `key`'s bucket; `Err(wait)` when it is empty.
    pub fn check(&mut self, key: K, now: Duration) -> Result<(), Duration> {
        if self.tat.len() >= PRUNE_AT {
            // A bucket booked no further than now is full: forgetting it changes nothing.
            self.tat.retain(|_, t| *t > now);
        }
        let tat = self.rate.charge(self.tat.get(&key).copied(), now)?;
        self.tat.insert(key, tat);
        Ok(())
    }

    /// Whether one more request would be allowed (nothing charged); `Err(wait)` if not.
    pub fn peek(&self, key: &K, now: Duration) -> Result<(), Duration> {
        self.rate
            .charge(self.tat.get(key).copied(), now)
            .map(|_| ())
    }
}

/// Why a request was refused (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Address,
    Token,
    Trusted,
    AuthFailures,
    ConferenceFull,
    RelayFull,
    BodyTimeout,
    HeaderTimeout,
}

impl Reason {
    const ALL: [Reason; 8] = [
        Reason::Address,
        Reason::Token,
        Reason::Trusted,
        Reason::AuthFailures,
        Reason::ConferenceFull,
        Reason::RelayFull,
        Reason::BodyTimeout,
        Reason::HeaderTimeout,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Address => "address",
            Reason::Token => "token",
            Reason::Trusted => "trusted_token",
            Reason::AuthFailures => "auth_failures",
            Reason::ConferenceFull => "conference_full",
            Reason::RelayFull => "relay_full",
            Reason::BodyTimeout => "body_timeout",
            Reason::HeaderTimeout => "header_timeout",
        }
    }
}

/// The relay's limiter: its buckets and refusal counters.
pub struct Limiter {
    config: Limits,
    epoch: Instant,
    address: Option<Mutex<Buckets<IpAddr>>>,
    token: Option<Mutex<Buckets<Credential>>>,
    trusted: Option<Mutex<Buckets<Credential>>>,
    auth_failures: Option<Mutex<Buckets<IpAddr>>>,
    refusals: [AtomicU64; Reason::ALL.len()],
}

fn buckets<K: std::hash::Hash + Eq>(per_second: u32, burst: u32) -> Option<Mutex<Buckets<K>>> {
    Rate::new(per_second, burst).map(|r| Mutex::new(Buckets::new(r)))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Limiter {
    pub fn new(config: &Limits) -> Limiter {
        let c = config;
        Limiter {
            address: buckets(c.address_per_second, c.address_burst),
            token: buckets(c.token_per_second, c.token_burst),
            trusted: buckets(c.trusted_per_second, c.trusted_burst),
            auth_failures: buckets(c.auth_failures_per_second, c.auth_failures_burst),
            config: config.clone(),
            epoch: Instant::now(),
            refusals: Default::default(),
        }
    }

    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    pub fn count(&self, reason: Reason) {
        self.refusals[reason as usize].fetch_add(1, Relaxed);
    }

    /// Refusals so far, by reason.
    pub fn refusals(&self) -> Vec<(&'static str, u64)> {
        Reason::ALL
            .iter()
            .map(|r| (r.as_str(), self.refusals[*r as usize].load(Relaxed)))
            .collect()
    }

    /// The client's address: the TCP peer, or, when the peer is a trusted proxy, the last
    /// address in `X-Forwarded-For` that is not one.
    fn client(&self, req: &Request) -> Option<IpAddr> {
        let peer = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())?;
        let proxies = &self.config.trusted_proxies;
        if !proxies.contains(&peer) {
            return Some(peer);
        }
        let forwarded: Vec<IpAddr> = req
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|a| a.trim().parse().ok())
            .collect();
        Some(
            forwarded
                .into_iter()
                .rev()
                .find(|a| !proxies.contains(a))
                .unwrap_or(peer),
        )
    }
}

/// A 429 (or 503) that says why and when to come back.
fn refusal(status: StatusCode, wait: Duration, message: String) -> Response {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    AppError::new(status, message)
        .with_header(header::RETRY_AFTER, HeaderValue::from(secs.max(1)))
        .into_response()
}

fn too_many(limiter: &Limiter, reason: Reason, wait: Duration, what: &str) -> Response {
    limiter.count(reason);
    refusal(
        StatusCode::TOO_MANY_REQUESTS,
        wait,
        format!(
            "Quá nhiều yêu cầu, hãy thử lại sau / too many requests {what} (limits.{}): retry later",
            match reason {
                Reason::Address => "address_*",
                Reason::Token => "token_*",
                Reason::Trusted => "trusted_*",
                _ => "auth_failures_*",
            }
        ),
    )
}

/// The conference and whether the path is a WHIP/WHEP session resource (trickle ICE).
fn whip_whep(path: &str) -> Option<(&str, bool)> {
    let mut parts = path.trim_start_matches('/').split('/');
    let kind = parts.next()?;
    if kind != "whip" && kind != "whep" {
        return None;
    }
    let conference = parts.next()?;
    let resource = parts.next().is_some() && parts.next().is_none();
    Some((conference, resource))
}

/// Whether the request carries a credential that is valid as such (the admin token, a relay
/// credential, a console session, a conference's stream key or shared viewer token, a join
/// link of the conference it asks for): an address that spent its refused-credential budget
/// (one guesser behind an organisation's NAT address) still serves these.
fn valid_credential(state: &AppState, req: &Request) -> bool {
    let Ok(token) = auth::bearer(req.headers()) else {
        return state
            .access
            .authenticate(req.method(), req.headers())
            .is_ok();
    };
    if state.tree.is_relay(token) || state.access.is_admin_token(token) {
        return true;
    }
    let Some((conference, _)) = whip_whep(req.uri().path()) else {
        return false;
    };
    state.registry.get(conference).is_some_and(|c| {
        secret_matches(token, &c.viewer_token) || secret_matches(token, &c.stream_key)
    }) || state.viewer_auth.verify(conference, token).is_some()
}

/// The limits middleware (outermost on the relay's router).
pub async fn guard(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let limiter = &state.limits;
    let client = limiter.client(&req);
    let now = limiter.now();
    // Guessing presents a credential: a bearer token, or a password at sign-in. Requests
    // without one (pages, /healthz, /metrics) are neither charged nor refused here.
    let presents =
        req.headers().contains_key(header::AUTHORIZATION) || req.uri().path() == "/api/v1/login";
    if presents
        && let (Some(ip), Some(b)) = (client, &limiter.auth_failures)
        && let Err(wait) = lock(b).peek(&ip, now)
        && !valid_credential(&state, &req)
    {
        return too_many(
            limiter,
            Reason::AuthFailures,
            wait,
            "after refused credentials",
        );
    }
    let method = req.method().clone();
    let mutating = matches!(
        method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    let path = req.uri().path().to_string();
    let trickle = method == Method::PATCH && whip_whep(&path).is_some_and(|(_, r)| r);
    if mutating && !trickle {
        let token = auth::bearer(req.headers()).ok();
        // Relay credentials and the admin token act for many points: not charged to the address.
        let privileged =
            token.is_some_and(|t| state.tree.is_relay(t) || state.access.is_admin_token(t));
        let shared = privileged
            || token.is_some_and(|t| {
                whip_whep(&path)
                    .and_then(|(c, _)| state.registry.get(c))
                    .is_some_and(|c| {
                        secret_matches(t, &c.viewer_token) || secret_matches(t, &c.stream_key)
                    })
            });
        if !privileged
            && let (Some(ip), Some(b)) = (client, &limiter.address)
            && let Err(wait) = lock(b).check(ip, now)
        {
            return too_many(limiter, Reason::Address, wait, "from this address");
        }
        if let Some(t) = token {
            let (bucket, reason) = if shared {
                (&limiter.trusted, Reason::Trusted)
            } else {
                (&limiter.token, Reason::Token)
            };
            if let Some(b) = bucket
                && let Err(wait) = lock(b).check(Credential::of(t), now)
            {
                return too_many(limiter, reason, wait, "with this token");
            }
        }
    }
    // A body not sent in time: the handler's read fails, the answer is 408.
    let timed_out = Arc::new(AtomicBool::new(false));
    let req = if mutating {
        let deadline =
            tokio::time::Instant::now() + Duration::from_secs(limiter.config.body_timeout_secs);
        let flag = timed_out.clone();
        req.map(|body| {
            let stream = body.into_data_stream();
            Body::from_stream(futures_util::stream::unfold(Some(stream), move |stream| {
                let flag = flag.clone();
                async move {
                    let mut stream = stream?;
                    match tokio::time::timeout_at(deadline, stream.next()).await {
                        Ok(Some(item)) => Some((item, Some(stream))),
                        Ok(None) => None,
                        Err(_) => {
                            flag.store(true, Relaxed);
                            Some((Err(axum::Error::new("body read timeout")), None))
                        }
                    }
                }
            }))
        })
    } else {
        req
    };
    let response = next.run(req).await;
    if timed_out.load(Relaxed) {
        limiter.count(Reason::BodyTimeout);
        let mut r = AppError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body was not sent within {} s (limits.body_timeout_secs)",
                limiter.config.body_timeout_secs
            ),
        )
        .into_response();
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return r;
    }
    if presents
        && matches!(
            response.status(),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        )
        && let (Some(ip), Some(b)) = (client, &limiter.auth_failures)
    {
        let _ = lock(b).check(ip, now);
    }
    response
}

/// Admits one more viewer session of `conference`, or answers 503 with `Retry-After` when the
/// conference (`limits.max_sessions_per_conference`) or the relay (`limits.max_sessions`) is
/// full. Publishers and child relays are counted but never refused. Joins in flight are not
/// reserved: a burst may overshoot a cap by the joins being negotiated at that moment.
pub(crate) fn admit(state: &AppState, conference: &str) -> Result<(), AppError> {
    let c = &state.limits.config;
    let (total, here) = {
        let sessions = state.sessions();
        let here = sessions
            .values()
            .filter(|m| m.conference == conference && m.role != Role::Publisher)
            .count();
        (sessions.len(), here)
    };
    let full = |reason: Reason, message: String| {
        state.limits.count(reason);
        AppError::new(StatusCode::SERVICE_UNAVAILABLE, message)
            .with_header(header::RETRY_AFTER, HeaderValue::from(c.retry_after_secs))
    };
    if c.max_sessions_per_conference > 0 && here >= c.max_sessions_per_conference {
        return Err(full(
            Reason::ConferenceFull,
            format!(
                "Hội nghị đã đủ số người xem, hãy thử lại sau / the conference has its maximum of {} viewers (limits.max_sessions_per_conference): retry later",
                c.max_sessions_per_conference
            ),
        ));
    }
    if c.max_sessions > 0 && total >= c.max_sessions {
        return Err(full(
            Reason::RelayFull,
            format!(
                "Máy chủ đã đầy, hãy thử lại sau / this relay has its maximum of {} sessions (limits.max_sessions): retry later",
                c.max_sessions
            ),
        ));
    }
    Ok(())
}

/// `hallcast_limit_refusals_total{reason}`.
pub(crate) fn write_metrics(limiter: &Limiter, out: &mut String) {
    use std::fmt::Write;
    out.push_str(
        "# HELP hallcast_limit_refusals_total Requests and connections refused by [limits], by reason\n\
         # TYPE hallcast_limit_refusals_total counter\n",
    );
    for (reason, n) in limiter.refusals() {
        let _ = writeln!(
            out,
            "hallcast_limit_refusals_total{{reason=\"{reason}\"}} {n}"
        );
    }
}

/// Serves `app` on `listener` over HTTP/1.1: each request knows its peer
/// (`ConnectInfo<SocketAddr>`); a connection that does not send a request's header within
/// `limits.header_timeout_secs` (silent, slow, or idle between requests) is closed; at most
/// `limits.max_connections` are open at once. (`crate::tls::serve_tls` is the same over TLS.)
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    limiter: Arc<Limiter>,
) -> std::io::Result<()> {
    let slots = connection_slots(&limiter);
    loop {
        let slot = take_slot(&slots).await?;
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: wait, do not spin or stop serving.
                tracing::warn!(error = %e, "accepting an HTTP connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let app = app.clone();
        let limiter = limiter.clone();
        tokio::spawn(async move {
            let _slot = slot;
            serve_connection(stream, peer, app, limiter).await;
        });
    }
}

/// `limits.header_timeout_secs`: how long a connection may take to send a request's header
/// (and, over TLS, to finish its handshake).
pub fn header_timeout(limiter: &Limiter) -> Duration {
    Duration::from_secs(limiter.config.header_timeout_secs)
}

/// The cap on open HTTP connections (`limits.max_connections`; None: no cap).
pub fn connection_slots(limiter: &Limiter) -> Option<Arc<tokio::sync::Semaphore>> {
    (limiter.config.max_connections > 0)
        .then(|| Arc::new(tokio::sync::Semaphore::new(limiter.config.max_connections)))
}

/// Waits for a free connection slot (held for the connection's life).
pub async fn take_slot(
    slots: &Option<Arc<tokio::sync::Semaphore>>,
) -> std::io::Result<Option<tokio::sync::OwnedSemaphorePermit>> {
    match slots {
        Some(s) => Ok(Some(
            s.clone()
                .acquire_owned()
                .await
                .map_err(std::io::Error::other)?,
        )),
        None => Ok(None),
    }
}

/// One HTTP/1.1 connection (plain TCP, or TLS once handshaken) from `peer`, with the header
/// read timeout.
pub async fn serve_connection<S>(
    stream: S,
    peer: SocketAddr,
    app: axum::Router,
    limiter: Arc<Limiter>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::ServiceExt;

    let header_timeout = header_timeout(&limiter);
    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        let mut req = req.map(Body::new);
        req.extensions_mut().insert(ConnectInfo(peer));
        app.clone().oneshot(req)
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    if let Err(e) = conn.await {
        if e.is_timeout() {
            limiter.count(Reason::HeaderTimeout);
            tracing::debug!(%peer, "closed a connection that sent no request header in time");
        } else {
            tracing::trace!(%peer, error = %e, "HTTP connection error");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let mut b = Buckets::new(Rate::new(10, 5).unwrap());
        let t0 = Duration::from_secs(100);
        for _ in 0..5 {
            assert_eq!(b.check("a", t0), Ok(()));
        }
        // Empty: the next one is 100 ms away.
        assert_eq!(b.check("a", t0), Err(100 * MS));
        assert_eq!(b.peek(&"a", t0 + 50 * MS), Err(50 * MS));
        // Another key has its own bucket.
        assert_eq!(b.check("b", t0), Ok(()));
        // 100 ms later one more, and not two.
        assert_eq!(b.check("a", t0 + 100 * MS), Ok(()));
        assert!(b.check("a", t0 + 100 * MS).is_err());
        // Idle for a second: the whole burst again.
        let t1 = t0 + Duration::from_secs(2);
        for _ in 0..5 {
            assert_eq!(b.check("a", t1), Ok(()));
        }
        assert!(b.check("a", t1).is_err());
    }

    #[test]
    fn peek_charges_nothing_and_a_refusal_changes_nothing() {
        let mut b = Buckets::new(Rate::new(1, 2).unwrap());
        let t = Duration::from_secs(5);
        assert!(b.peek(&1, t).is_ok());
        assert!(b.peek(&1, t).is_ok());
        assert!(b.check(1, t).is_ok());
        assert!(b.check(1, t).is_ok());
        for _ in 0..10 {
            assert_eq!(b.check(1, t), Err(Duration::from_secs(1)));
        }
        assert!(b.check(1, t + Duration::from_secs(1)).is_ok());
    }

    #[test]
    fn zero_turns_a_limit_off_and_full_buckets_are_forgotten() {
        assert!(Rate::new(0, 10).is_none());
        assert!(Rate::new(10, 0).is_none());
        let mut b = Buckets::new(Rate::new(1000, 1).unwrap());
        let t = Duration::from_secs(1);
        for k in 0..PRUNE_AT as u32 {
            b.check(k, t).unwrap();
        }
        // A second later every bucket is full again: the map is pruned, not grown.
        b.check(u32::MAX, t + Duration::from_secs(1)).unwrap();
        assert_eq!(b.tat.len(), 1);
    }

    #[test]
    fn whip_whep_paths() {
        assert_eq!(whip_whep("/whep/c"), Some(("c", false)));
        assert_eq!(whip_whep("/whip/c/123"), Some(("c", true)));
        assert_eq!(whip_whep("/whep/c/123/events"), Some(("c", false)));
        assert_eq!(whip_whep("/api/v1/x"), None);
    }

    #[test]
    fn the_client_is_the_peer_unless_it_is_a_trusted_proxy() {
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let limiter = Limiter::new(&Limits {
            trusted_proxies: vec![proxy],
            ..Limits::default()
        });
        let req = |peer: &str, xff: Option<&str>| {
            let mut r = Request::new(Body::empty());
            r.extensions_mut()
                .insert(ConnectInfo(SocketAddr::new(peer.parse().unwrap(), 1)));
            if let Some(x) = xff {
                r.headers_mut()
                    .insert("x-forwarded-for", HeaderValue::from_str(x).unwrap());
            }
            r
        };
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        // Anyone else's X-Forwarded-For is ignored.
        assert_eq!(
            limiter.client(&req("192.0.2.7", Some("198.51.100.1"))),
            ip("192.0.2.7")
        );
        // The proxy's: the last address it did not add itself (the left ones are the client's
        // own claims).
        assert_eq!(
            limiter.client(&req("10.0.0.1", Some("1.1.1.1, 198.51.100.1, 10.0.0.1"))),
            ip("198.51.100.1")
        );
        assert_eq!(limiter.client(&req("10.0.0.1", None)), ip("10.0.0.1"));
        assert_eq!(limiter.client(&Request::new(Body::empty())), None);
    }
}
