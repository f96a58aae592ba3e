//! Who may use the operator and admin consoles and their APIs: the one role check.
//!
//! Two ways in, nothing else:
//! * `Authorization: Bearer <admin token>` (`[admin] token`): the admin role, for scripts. Not an
//!   ambient credential, so no CSRF check.
//! * A signed-in console session: `POST /api/v1/login` with a configured account
//!   (`[[access.accounts]]`, argon2 PHC hashes) or a sign-in ticket link (`hallcast demo`) sets
//!   the `hallcast_session` cookie (HttpOnly, SameSite=Strict; the session lives on the server,
//!   the cookie is a random id) and the `hallcast_csrf` cookie (readable by the page). A
//!   state-changing request (anything but GET/HEAD/OPTIONS) must carry `X-CSRF-Token` equal to
//!   the session's CSRF value, and its `Origin` (when present) must be this relay, else 403.
//!
//! Any other bearer (a viewer link, a join link, a stream key) is refused with 401 before a
//! cookie is looked at: a viewer token never opens an operator or admin page or API.
//!
//! [`Access::check`] is what every operator/admin endpoint calls; [`Access::page`] guards the
//! console pages (303 to `/login?next=...`). Sessions are kept in memory: a restarted relay
//! signs everyone out. Secrets (session ids, tickets) are stored as SHA-256 digests only.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::{Json, Router};
use hallcast_config::{Account, AccountRole, Config};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::auth;

/// The session cookie (HttpOnly).
pub const SESSION_COOKIE: &str = "hallcast_session";
/// The CSRF cookie, read by the console pages and echoed in [`CSRF_HEADER`].
pub const CSRF_COOKIE: &str = "hallcast_csrf";
/// The header a state-changing console request carries.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Sessions kept at most (the oldest expiring is dropped beyond it).
const MAX_SESSIONS: usize = 10_000;
/// Password checks running at once: argon2 is memory-hard on purpose, so sign-in attempts
/// must not be able to take every core from the media threads.
const MAX_VERIFYING: usize = 2;
/// Wrong passwords for one name before its sign-ins pause for [`THROTTLE`].
const MAX_FAILURES: u32 = 5;
const THROTTLE: Duration = Duration::from_secs(30);

/// What a caller may do. `Admin` includes everything `Operator` may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Operator,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl From<AccountRole> for Role {
    fn from(r: AccountRole) -> Self {
        match r {
            AccountRole::Operator => Role::Operator,
            AccountRole::Admin => Role::Admin,
        }
    }
}

/// Who is asking, once checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The account name; `admin-token` for the bearer admin token.
    pub name: String,
    pub role: Role,
    /// True for a cookie session, false for the bearer admin token.
    pub session: bool,
}

/// A refusal: status, a stable code and a bilingual message (Vietnamese / English).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl Denied {
    fn new(status: StatusCode, code: &'static str, vi: &str, en: &str) -> Denied {
        Denied {
            status,
            code,
            message: format!("{vi} / {en}"),
        }
    }

    fn unauthenticated() -> Denied {
        Denied::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Chưa đăng nhập, hoặc thiếu/sai mã quản trị",
            "Not signed in, or missing or wrong admin token (Authorization: Bearer <token>)",
        )
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: &'a str,
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        tracing::debug!(status = %self.status, code = self.code, "{}", self.message);
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

impl From<Denied> for crate::AppError {
    fn from(d: Denied) -> Self {
        crate::AppError::new(d.status, d.message)
    }
}

/// A sign-in's secrets, as the cookies carry them.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub session: String,
    pub csrf: String,
    pub principal: Principal,
}

struct AccountEntry {
    name: String,
    role: Role,
    hash: String,
}

struct Session {
    name: String,
    role: Role,
    csrf: String,
    expires: Instant,
}

struct Ticket {
    name: String,
    expires: Instant,
}

/// The consoles' accounts, sessions and sign-in tickets, and the role check.
pub struct Access {
    admin_token: String,
    accounts: Vec<AccountEntry>,
    session_ttl: Duration,
    /// `scheme://host[:port]` of the relay's public URL: an `Origin` that may post.
    public_origin: String,
    /// Cookies get `Secure` when the relay serves TLS itself or its public URL is https.
    secure: bool,
    sessions: Mutex<HashMap<[u8; 32], Session>>,
    tickets: Mutex<HashMap<[u8; 32], Ticket>>,
    verifying: tokio::sync::Semaphore,
    /// Per name: wrong passwords in a row and when the last one came.
    failures: Mutex<HashMap<String, (u32, Instant)>>,
    /// Verified against when the name is unknown, so timing does not tell which names exist.
    dummy_hash: String,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("n_accounts", &self.accounts.len())
            .finish_non_exhaustive()
    }
}

/// Checks every account's hash parses; the relay refuses to start otherwise.
pub fn validate_accounts(accounts: &[Account]) -> Result<(), String> {
    for a in accounts {
        if !usable_hash(&a.password_hash) {
            return Err(format!(
                "access account {:?}: password_hash is not a valid argon2 PHC string; make one with `hallcast hash-password`",
                a.name
            ));
        }
    }
    Ok(())
}

/// A complete argon2 PHC string: algorithm, parameters, salt and hash.
fn usable_hash(phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| {
        h.hash.is_some()
            && h.salt.is_some()
            && argon2::Algorithm::new(h.algorithm.as_str()).is_ok()
            && argon2::Params::try_from(&h).is_ok()
    })
}

/// The argon2id PHC string of `password` (a fresh random salt), as `hallcast hash-password`
/// prints it.
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

fn random_secret() -> String {
    let b: [u8; 32] = rand::random();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// `scheme://host[:port]` of a URL (the whole string when it has no path).
fn origin_of(url: &str) -> &str {
    let start = url.find("://").map_or(0, |i| i + 3);
    match url[start..].find('/') {
        Some(i) => &url[..start + i],
        None => url,
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// A same-origin path to go to after signing in; anything else becomes `/operator`.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.chars().any(|c| c.is_control() || c.is_whitespace()) =>
        {
            n.to_string()
        }
        _ => "/operator".into(),
    }
}

fn is_safe_method(m: &Method) -> bool {
    matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

impl Access {
    /// From the configuration: `[admin] token` and `[access]`. An account whose hash does not
    /// parse is left out (the relay checks [`validate_accounts`] before it starts).
    pub fn from_config(config: &Config) -> Access {
        let mut a = Access::new(
            &config.admin.token,
            &config.access.accounts,
            Duration::from_secs(config.access.session_hours.max(1) * 3600),
        );
        let public = config.public_url();
        a.public_origin = origin_of(&public).to_string();
        // Served over TLS here (http.tls_cert), or behind a TLS proxy (an https public URL).
        a.secure = config.http.tls() || public.starts_with("https://");
        a
    }

    /// Only a bearer admin token (`""`: none) and these accounts.
    pub fn new(admin_token: &str, accounts: &[Account], session_ttl: Duration) -> Access {
        let accounts = accounts
            .iter()
            .filter(|a| {
                let ok = usable_hash(&a.password_hash);
                if !ok {
                    tracing::warn!(account = %a.name, "unusable password hash: account disabled");
                }
                ok
            })
            .map(|a| AccountEntry {
                name: a.name.clone(),
                role: a.role.into(),
                hash: a.password_hash.clone(),
            })
            .collect();
        Access {
            admin_token: admin_token.to_string(),
            accounts,
            session_ttl,
            public_origin: String::new(),
            secure: false,
            sessions: Mutex::new(HashMap::new()),
            tickets: Mutex::new(HashMap::new()),
            verifying: tokio::sync::Semaphore::new(MAX_VERIFYING),
            failures: Mutex::new(HashMap::new()),
            // A hash of a random password nobody knows: only its cost matters.
            dummy_hash: hash_password(&random_secret()).unwrap_or_default(),
        }
    }

    /// Adds an account for this run (the demo's), replacing one of the same name.
    pub fn add_account(&mut self, name: &str, role: Role, password_hash: String) {
        self.accounts.retain(|a| a.name != name);
        self.accounts.push(AccountEntry {
            name: name.to_string(),
            role,
            hash: password_hash,
        });
    }

    /// The one role check of every operator/admin API. `method` is the request's: unsafe
    /// methods on a cookie session need the CSRF header and a same-origin `Origin`.
    pub fn check(
        &self,
        method: &Method,
        headers: &HeaderMap,
        need: Role,
    ) -> Result<Principal, Denied> {
        let p = self.authenticate(method, headers)?;
        if p.role < need {
            return Err(Denied::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "Tài khoản vận hành không được làm việc này; cần tài khoản quản trị",
                "An operator account may not do this: an admin account is needed",
            ));
        }
        Ok(p)
    }

    /// Who is asking, with the CSRF and origin checks; no role requirement.
    pub fn authenticate(&self, method: &Method, headers: &HeaderMap) -> Result<Principal, Denied> {
        if self.admin_token.is_empty() && self.accounts.is_empty() {
            return Err(Denied::new(
                StatusCode::FORBIDDEN,
                "admin_disabled",
                "API quản trị đang tắt (chưa cấu hình mã quản trị hay tài khoản)",
                "The admin API is disabled (no admin token or account configured)",
            ));
        }
        match auth::bearer(headers) {
            Ok(token) => {
                return if auth::secret_matches(token, &self.admin_token) {
                    Ok(Principal {
                        name: "admin-token".into(),
                        role: Role::Admin,
                        session: false,
                    })
                } else {
                    Err(Denied::new(
                        StatusCode::UNAUTHORIZED,
                        "unauthorized",
                        "Sai mã quản trị; liên kết xem và khóa luồng không mở được trang quản trị",
                        "Wrong admin token (viewer links, join links and stream keys do not open the consoles)",
                    ))
                };
            }
            Err(auth::BearerError::Malformed) => {
                return Err(Denied::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "Tiêu đề Authorization phải là \"Bearer <mã>\"",
                    auth::BearerError::Malformed.message(),
                ));
            }
            Err(auth::BearerError::Missing) => {}
        }
        let Some(id) = cookie(headers, SESSION_COOKIE) else {
            return Err(Denied::unauthenticated());
        };
        let (principal, csrf) = self.session(id).ok_or_else(|| {
            Denied::new(
                StatusCode::UNAUTHORIZED,
                "session_expired",
                "Phiên đăng nhập đã hết hạn; hãy đăng nhập lại",
                "The sign-in has expired: sign in again",
            )
        })?;
        if !is_safe_method(method) {
            self.same_origin(headers)?;
            let given = headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !auth::secret_matches(given, &csrf) {
                return Err(Denied::new(
                    StatusCode::FORBIDDEN,
                    "csrf",
                    "Thiếu hoặc sai mã chống giả mạo (X-CSRF-Token); hãy tải lại trang",
                    "Missing or wrong X-CSRF-Token header: reload the page",
                ));
            }
        }
        Ok(principal)
    }

    /// A state-changing request must come from this relay's own pages: `Origin`, when sent,
    /// names this host (or the configured public URL), and `Sec-Fetch-Site` is not cross-site.
    fn same_origin(&self, headers: &HeaderMap) -> Result<(), Denied> {
        let foreign = || {
            Denied::new(
                StatusCode::FORBIDDEN,
                "cross_origin",
                "Yêu cầu từ trang khác bị từ chối",
                "Refused: the request comes from another site",
            )
        };
        if headers
            .get("sec-fetch-site")
            .is_some_and(|v| v.as_bytes() == b"cross-site" || v.as_bytes() == b"same-site")
        {
            return Err(foreign());
        }
        let Some(origin) = headers.get(header::ORIGIN) else {
            return Ok(());
        };
        let origin = origin.to_str().map_err(|_| foreign())?;
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let authority = origin.split_once("://").map_or("", |(_, a)| a);
        let ok = (!host.is_empty() && authority.eq_ignore_ascii_case(host))
            || (!self.public_origin.is_empty() && origin.eq_ignore_ascii_case(&self.public_origin));
        if ok { Ok(()) } else { Err(foreign()) }
    }

    /// The live session of a cookie value, and its CSRF value.
    fn session(&self, id: &str) -> Option<(Principal, String)> {
        let now = Instant::now();
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let key = digest(id);
        let s = sessions.get(&key)?;
        if s.expires <= now {
            sessions.remove(&key);
            return None;
        }
        Some((
            Principal {
                name: s.name.clone(),
                role: s.role,
                session: true,
            },
            s.csrf.clone(),
        ))
    }

    fn open_session(&self, name: &str, role: Role) -> SignedIn {
        let session = random_secret();
        let csrf = random_secret();
        let now = Instant::now();
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        if sessions.len() >= MAX_SESSIONS {
            sessions.retain(|_, s| s.expires > now);
        }
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| *k)
        {
            sessions.remove(&oldest);
        }
        sessions.insert(
            digest(&session),
            Session {
                name: name.to_string(),
                role,
                csrf: csrf.clone(),
                expires: now + self.session_ttl,
            },
        );
        SignedIn {
            session,
            csrf,
            principal: Principal {
                name: name.to_string(),
                role,
                session: true,
            },
        }
    }

    /// Whether `token` is the admin token (`[admin] token`).
    pub fn is_admin_token(&self, token: &str) -> bool {
        auth::secret_matches(token, &self.admin_token)
    }

    /// Checks a name and password (argon2, at most [`MAX_VERIFYING`] at once, off the async
    /// threads) and opens a session.
    pub async fn sign_in(self: &Arc<Self>, name: &str, password: &str) -> Result<SignedIn, Denied> {
        if self.throttled(name) {
            return Err(Denied::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_attempts",
                "Sai mật khẩu quá nhiều lần; hãy thử lại sau 30 giây",
                "Too many wrong passwords: try again in 30 seconds",
            ));
        }
        let account = self
            .accounts
            .iter()
            .find(|a| a.name == name)
            .map(|a| (a.role, a.hash.clone()));
        let hash = account
            .as_ref()
            .map_or_else(|| self.dummy_hash.clone(), |(_, h)| h.clone());
        let password = password.to_string();
        let ok = {
            let _permit = self
                .verifying
                .acquire()
                .await
                .map_err(|_| Denied::unauthenticated())?;
            tokio::task::spawn_blocking(move || verify_password(&password, &hash))
                .await
                .unwrap_or(false)
        };
        self.note_attempt(name, ok && account.is_some());
        match account {
            Some((role, _)) if ok => Ok(self.open_session(name, role)),
            _ => Err(Denied::new(
                StatusCode::UNAUTHORIZED,
                "wrong_password",
                "Sai tên đăng nhập hoặc mật khẩu",
                "Wrong name or password",
            )),
        }
    }

    /// Whether `name` had [`MAX_FAILURES`] wrong passwords in a row, the last less than
    /// [`THROTTLE`] ago (slows guessing down without locking the account out for long).
    fn throttled(&self, name: &str) -> bool {
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures
            .get(name)
            .is_some_and(|(n, at)| *n >= MAX_FAILURES && at.elapsed() < THROTTLE)
    }

    fn note_attempt(&self, name: &str, ok: bool) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if ok {
            failures.remove(name);
            return;
        }
        if failures.len() >= MAX_SESSIONS {
            // Guessed names must not grow the map without bound.
            failures.retain(|_, (_, at)| at.elapsed() < THROTTLE);
        }
        let e = failures
            .entry(name.chars().take(64).collect())
            .or_insert((0, Instant::now()));
        if e.1.elapsed() >= THROTTLE {
            e.0 = 0;
        }
        e.0 += 1;
        e.1 = Instant::now();
    }

    /// A sign-in link's secret for `name`, valid for `ttl` and usable more than once (the
    /// demo prints such links). None if there is no such account.
    pub fn issue_ticket(&self, name: &str, ttl: Duration) -> Option<String> {
        self.accounts.iter().find(|a| a.name == name)?;
        let t = random_secret();
        self.tickets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                digest(&t),
                Ticket {
                    name: name.to_string(),
                    expires: Instant::now() + ttl,
                },
            );
        Some(t)
    }

    /// Opens a session for a valid ticket.
    pub fn redeem_ticket(&self, ticket: &str) -> Option<SignedIn> {
        let name = {
            let tickets = self.tickets.lock().unwrap_or_else(|p| p.into_inner());
            let t = tickets.get(&digest(ticket))?;
            (t.expires > Instant::now()).then(|| t.name.clone())?
        };
        let role = self.accounts.iter().find(|a| a.name == name)?.role;
        Some(self.open_session(&name, role))
    }

    /// Ends the session a request carries (if any).
    pub fn sign_out(&self, headers: &HeaderMap) {
        if let Some(id) = cookie(headers, SESSION_COOKIE) {
            self.sessions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&digest(id));
        }
    }

    /// Guards a console page (GET): the signed-in principal, else a 303 to the sign-in page
    /// (or a 403 page when the account's role is too low). `here` is the page's path and
    /// query, where the sign-in page sends the browser back to.
    #[allow(clippy::result_large_err)]
    pub fn page(&self, headers: &HeaderMap, here: &str, need: Role) -> Result<Principal, Response> {
        let session = cookie(headers, SESSION_COOKIE).and_then(|id| self.session(id));
        match session {
            Some((p, _)) if p.role >= need => Ok(p),
            Some(_) => Err((
                StatusCode::FORBIDDEN,
                Html(message_page(
                    "Không đủ quyền",
                    "Tài khoản này không mở được trang này; hãy đăng nhập bằng tài khoản quản trị.",
                    "This account cannot open this page: sign in with an admin account.",
                    here,
                )),
            )
                .into_response()),
            None => Err(see_other(&format!("/login?next={}", percent_encode(here)))),
        }
    }

    /// The `Set-Cookie` values of a sign-in.
    pub fn cookies(&self, s: &SignedIn) -> [HeaderValue; 2] {
        let secure = if self.secure { "; Secure" } else { "" };
        let age = self.session_ttl.as_secs();
        [
            HeaderValue::from_str(&format!(
                "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={age}{secure}",
                s.session
            )),
            HeaderValue::from_str(&format!(
                "{CSRF_COOKIE}={}; Path=/; SameSite=Strict; Max-Age={age}{secure}",
                s.csrf
            )),
        ]
        // Hex secrets and fixed text: always a valid header value.
        .map(|v| v.unwrap_or_else(|_| HeaderValue::from_static("")))
    }

    fn cleared_cookies(&self) -> [HeaderValue; 2] {
        [
            HeaderValue::from_static(
                "hallcast_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
            ),
            HeaderValue::from_static("hallcast_csrf=; Path=/; SameSite=Strict; Max-Age=0"),
        ]
    }
}

fn see_other(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn message_page(title: &str, vi: &str, en: &str, next: &str) -> String {
    format!(
        "<!doctype html><html lang=\"vi\"><meta charset=\"utf-8\"><title>{t} — hallcast</title>\
<link rel=\"stylesheet\" href=\"/static/console.css\"><body class=\"login\"><main class=\"card\">\
<h1>{t}</h1><p>{vi}</p><p lang=\"en\" class=\"en\">{en}</p>\
<p><a href=\"/login?next={n}\">Đăng nhập / Sign in</a></p></main></body></html>",
        t = html_escape(title),
        vi = html_escape(vi),
        en = html_escape(en),
        n = percent_encode(next),
    )
}

// ----- routes -----

const LOGIN_HTML: &str = include_str!("../../../web/login.html");

#[derive(Deserialize)]
struct LoginBody {
    name: String,
    password: String,
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

#[derive(Serialize)]
struct MeDto<'a> {
    name: &'a str,
    role: Role,
}

/// `GET /login`, `POST /api/v1/login`, `POST /api/v1/logout`, `GET /api/v1/me`,
/// `GET /login/ticket/{ticket}?next=`; state applied, merge into the relay's router.
pub fn router(access: Arc<Access>) -> Router {
    use axum::routing::{get, post};
    Router::new()
        .route("/login", get(login_page))
        .route("/login/ticket/{ticket}", get(ticket))
        .route("/api/v1/login", post(login))
        .route("/api/v1/logout", post(logout))
        .route("/api/v1/me", get(me))
        .with_state(access)
}

async fn login_page() -> Response {
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            // The sign-in form must not be framed by another site (clickjacking).
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        Html(LOGIN_HTML),
    )
        .into_response()
}

fn signed_in_response(access: &Access, s: &SignedIn, mut r: Response) -> Response {
    for c in access.cookies(s) {
        r.headers_mut().append(header::SET_COOKIE, c);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

async fn login(
    State(access): State<Arc<Access>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    // Only this relay's own sign-in page may sign a browser in (no login CSRF).
    if let Err(d) = access.same_origin(&headers) {
        return d.into_response();
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json {
        return Denied::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "bad_request",
            "Hãy gửi JSON {\"name\", \"password\"}",
            "Send JSON {\"name\", \"password\"} with Content-Type: application/json",
        )
        .into_response();
    }
    let body: LoginBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return Denied::new(
                StatusCode::BAD_REQUEST,
                "bad_json",
                "Nội dung JSON không hợp lệ",
                &format!("Invalid JSON body: {e}"),
            )
            .into_response();
        }
    };
    match access.sign_in(&body.name, &body.password).await {
        Ok(s) => {
            tracing::info!(account = %s.principal.name, role = s.principal.role.as_str(), "signed in");
            signed_in_response(&access, &s, StatusCode::NO_CONTENT.into_response())
        }
        Err(d) => {
            tracing::info!(account = %body.name, "sign-in refused");
            d.into_response()
        }
    }
}

async fn logout(State(access): State<Arc<Access>>, method: Method, headers: HeaderMap) -> Response {
    if cookie(&headers, SESSION_COOKIE).is_some()
        && let Err(d) = access.authenticate(&method, &headers)
        && d.code != "session_expired"
    {
        return d.into_response();
    }
    access.sign_out(&headers);
    let mut r = StatusCode::NO_CONTENT.into_response();
    for c in access.cleared_cookies() {
        r.headers_mut().append(header::SET_COOKIE, c);
    }
    r
}

async fn me(State(access): State<Arc<Access>>, method: Method, headers: HeaderMap) -> Response {
    match access.authenticate(&method, &headers) {
        Ok(p) => Json(MeDto {
            name: &p.name,
            role: p.role,
        })
        .into_response(),
        Err(d) => d.into_response(),
    }
}

async fn ticket(
    State(access): State<Arc<Access>>,
    Path(ticket): Path<String>,
    Query(q): Query<NextQuery>,
) -> Response {
    let next = safe_next(q.next.as_deref());
    match access.redeem_ticket(&ticket) {
        Some(s) => {
            tracing::info!(account = %s.principal.name, "signed in by a ticket link");
            signed_in_response(&access, &s, see_other(&next))
        }
        None => (
            StatusCode::UNAUTHORIZED,
            Html(message_page(
                "Liên kết đăng nhập không hợp lệ",
                "Liên kết đăng nhập này không hợp lệ hoặc đã hết hạn.",
                "This sign-in link is invalid or has expired.",
                &next,
            )),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(name: &str, role: AccountRole, password: &str) -> Account {
        Account {
            name: name.into(),
            role,
            password_hash: hash_password(password).unwrap(),
        }
    }

    fn access() -> Arc<Access> {
        Arc::new(Access::new(
            "admin-token-0123456789",
            &[
                account("an", AccountRole::Operator, "mat-khau-an"),
                account("binh", AccountRole::Admin, "mat-khau-binh"),
            ],
            Duration::from_secs(3600),
        ))
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn cookie_of(s: &SignedIn) -> String {
        format!("{SESSION_COOKIE}={}; {CSRF_COOKIE}={}", s.session, s.csrf)
    }

    #[test]
    fn hashes_are_argon2id_phc_strings_and_verify() {
        let h = hash_password("mật khẩu").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password("mật khẩu", &h));
        assert!(!verify_password("mat khau", &h));
        assert_ne!(h, hash_password("mật khẩu").unwrap(), "salted");
        assert!(validate_accounts(&[account("x", AccountRole::Admin, "p")]).is_ok());
        let bad = Account {
            name: "x".into(),
            role: AccountRole::Admin,
            password_hash: "$argon2id$nonsense".into(),
        };
        assert!(validate_accounts(&[bad]).is_err());
        // The dummy hash verifies nothing but is complete (its cost is what makes an unknown
        // name take as long as a known one).
        assert!(usable_hash(&access().dummy_hash));
    }

    #[tokio::test]
    async fn sign_in_roles_csrf_and_origin() {
        let a = access();
        assert_eq!(
            a.sign_in("an", "wrong").await.unwrap_err().code,
            "wrong_password"
        );
        assert_eq!(
            a.sign_in("nobody", "mat-khau-an").await.unwrap_err().code,
            "wrong_password"
        );
        let op = a.sign_in("an", "mat-khau-an").await.unwrap();
        let c = cookie_of(&op);
        // GET needs no CSRF header.
        let p = a
            .check(&Method::GET, &headers(&[("cookie", &c)]), Role::Operator)
            .unwrap();
        assert_eq!(
            (p.name.as_str(), p.role, p.session),
            ("an", Role::Operator, true)
        );
        // An operator is not an admin.
        let d = a
            .check(&Method::GET, &headers(&[("cookie", &c)]), Role::Admin)
            .unwrap_err();
        assert_eq!(d.status, StatusCode::FORBIDDEN);
        // POST without / with a wrong CSRF header, or from another origin: 403.
        for h in [
            headers(&[("cookie", &c)]),
            headers(&[("cookie", &c), ("x-csrf-token", "nope")]),
            headers(&[
                ("cookie", &c),
                ("x-csrf-token", &op.csrf),
                ("origin", "http://evil.example"),
                ("host", "127.0.0.1:8080"),
            ]),
            headers(&[
                ("cookie", &c),
                ("x-csrf-token", &op.csrf),
                ("sec-fetch-site", "cross-site"),
            ]),
        ] {
            let d = a.check(&Method::POST, &h, Role::Operator).unwrap_err();
            assert_eq!(d.status, StatusCode::FORBIDDEN, "{h:?}");
            assert!(d.message.contains(" / "), "bilingual: {}", d.message);
        }
        let ok = headers(&[
            ("cookie", &c),
            ("x-csrf-token", &op.csrf),
            ("origin", "http://127.0.0.1:8080"),
            ("host", "127.0.0.1:8080"),
        ]);
        assert!(a.check(&Method::POST, &ok, Role::Operator).is_ok());
        // The bearer admin token is admin; any other bearer is refused even with a cookie.
        let p = a
            .check(
                &Method::POST,
                &headers(&[("authorization", "Bearer admin-token-0123456789")]),
                Role::Admin,
            )
            .unwrap();
        assert_eq!(p.role, Role::Admin);
        let d = a
            .check(
                &Method::GET,
                &headers(&[("authorization", "Bearer a-viewer-token"), ("cookie", &c)]),
                Role::Operator,
            )
            .unwrap_err();
        assert_eq!(d.status, StatusCode::UNAUTHORIZED);
        // Nothing at all: 401. Signed out: 401.
        let d = a
            .check(&Method::GET, &HeaderMap::new(), Role::Operator)
            .unwrap_err();
        assert_eq!(d.status, StatusCode::UNAUTHORIZED);
        a.sign_out(&headers(&[("cookie", &c)]));
        let d = a
            .check(&Method::GET, &headers(&[("cookie", &c)]), Role::Operator)
            .unwrap_err();
        assert_eq!(d.code, "session_expired");
        // The admin account is an admin.
        let ad = a.sign_in("binh", "mat-khau-binh").await.unwrap();
        assert!(
            a.check(
                &Method::GET,
                &headers(&[("cookie", &cookie_of(&ad))]),
                Role::Admin
            )
            .is_ok()
        );
    }

    #[tokio::test]
    async fn wrong_passwords_in_a_row_pause_that_name() {
        let a = access();
        for _ in 0..MAX_FAILURES {
            assert_eq!(
                a.sign_in("an", "x").await.unwrap_err().code,
                "wrong_password"
            );
        }
        // Even the right password waits now; another name does not.
        let d = a.sign_in("an", "mat-khau-an").await.unwrap_err();
        assert_eq!(d.status, StatusCode::TOO_MANY_REQUESTS);
        assert!(a.sign_in("binh", "mat-khau-binh").await.is_ok());
        // After the pause the right password works, and resets the count.
        a.failures.lock().unwrap().get_mut("an").unwrap().1 = Instant::now() - THROTTLE;
        assert!(a.sign_in("an", "mat-khau-an").await.is_ok());
        assert!(!a.failures.lock().unwrap().contains_key("an"));
    }

    #[test]
    fn sessions_expire_and_tickets_sign_in() {
        let mut a = Access::new("", &[], Duration::from_millis(30));
        assert_eq!(
            a.check(&Method::GET, &HeaderMap::new(), Role::Operator)
                .unwrap_err()
                .code,
            "admin_disabled"
        );
        a.add_account("demo", Role::Admin, hash_password("x").unwrap());
        assert!(a.issue_ticket("nobody", Duration::from_secs(60)).is_none());
        let t = a.issue_ticket("demo", Duration::from_secs(60)).unwrap();
        assert!(a.redeem_ticket("not-a-ticket").is_none());
        let s = a.redeem_ticket(&t).unwrap();
        assert_eq!(s.principal.role, Role::Admin);
        // Usable again (a demo link opened twice).
        assert!(a.redeem_ticket(&t).is_some());
        let h = headers(&[("cookie", &cookie_of(&s))]);
        assert!(a.check(&Method::GET, &h, Role::Admin).is_ok());
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(
            a.check(&Method::GET, &h, Role::Admin).unwrap_err().code,
            "session_expired"
        );
        let page = a.page(&h, "/operator?c=x", Role::Operator).unwrap_err();
        assert_eq!(page.status(), StatusCode::SEE_OTHER);
        assert_eq!(
            page.headers()[header::LOCATION],
            "/login?next=/operator%3Fc%3Dx"
        );
    }

    #[test]
    fn next_is_same_origin_only() {
        assert_eq!(safe_next(Some("/admin?x=1")), "/admin?x=1");
        for bad in [
            "//evil.example/",
            "https://evil.example/",
            "/\\evil",
            "",
            "/a b",
        ] {
            assert_eq!(safe_next(Some(bad)), "/operator", "{bad}");
        }
        assert_eq!(safe_next(None), "/operator");
    }

    #[test]
    fn cookies_are_httponly_and_strict() {
        let mut a = Access::new("t", &[], Duration::from_secs(60));
        a.add_account("demo", Role::Operator, hash_password("x").unwrap());
        let s = a
            .redeem_ticket(&a.issue_ticket("demo", Duration::from_secs(5)).unwrap())
            .unwrap();
        let [session, csrf] = a.cookies(&s);
        let session = session.to_str().unwrap();
        let csrf = csrf.to_str().unwrap();
        assert!(session.starts_with("hallcast_session="));
        assert!(session.contains("HttpOnly") && session.contains("SameSite=Strict"));
        assert!(session.contains("Path=/"));
        assert!(csrf.starts_with("hallcast_csrf=") && !csrf.contains("HttpOnly"));
        assert!(csrf.contains("SameSite=Strict"));
    }
}
