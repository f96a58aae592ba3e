//! hallcast-config: the node's TOML schema, its defaults and its validation.
//!
//! One file per node; unknown keys are errors (a typo must not silently fall back to
//! a default). Every key can be overridden from the command line with
//! `--set section.key=value` (the value is parsed as TOML, or taken as a string),
//! and the most common ones also have their own flags in the binary. This crate does
//! no I/O beyond reading the file it is given.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

mod locate;

pub use locate::Position;

/// The whole configuration of one hallcast node.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub http: Http,
    pub media: Media,
    pub data: Data,
    pub admin: Admin,
    /// Who may sign in to the operator and admin consoles.
    pub access: AccessSection,
    /// The admin dashboard's alerts.
    pub alerts: Alerts,
    /// What this relay accepts from the relays below it (edges).
    pub relay: RelaySection,
    /// The relay above this one: set on an edge, empty on the central.
    pub upstream: Upstream,
    /// STUN/TURN servers announced to clients in `Link` headers.
    pub ice_servers: Vec<IceServer>,
    /// Conferences this node serves.
    pub conferences: Vec<ConferenceConfig>,
    /// How the node logs.
    pub log: Log,
    /// Rate limits, session caps and HTTP timeouts (docs/SECURITY.md, "Limits").
    pub limits: Limits,
    /// Recording each broadcast under `data.dir`.
    pub recording: RecordingSection,
    /// Ingest for encoders that do not speak WHIP (RTMP, SRT).
    pub ingest: Ingest,
}

/// Recording: each broadcast whose publisher is on this relay is written, as received (no
/// re-encoding), to `{data.dir}/recordings/{conference}/`: Matroska (.mkv) for H.264 + Opus,
/// WebM for VP8 + Opus. Ignored on an edge (the central records where the encoder publishes).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RecordingSection {
    pub enabled: bool,
    /// The most the recordings may take together, in bytes; beyond it the oldest are
    /// deleted (never the one being recorded, nor the newest finished one). 0: no limit.
    pub max_bytes: u64,
    /// Recordings that ended longer ago than this many days are deleted. 0: kept.
    pub max_age_days: u32,
}

impl Default for RecordingSection {
    fn default() -> Self {
        RecordingSection {
            enabled: true,
            max_bytes: 50_000_000_000,
            max_age_days: 90,
        }
    }
}

/// Ingest gateways: listeners for encoders that do not speak WHIP. Each publishes what it
/// receives to this relay over WHIP with the conference's stream key (hallcast-ingest).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Ingest {
    /// RTMP listen address (`rtmp://HOST:PORT/{conference}`, the stream key as the stream
    /// name), e.g. "0.0.0.0:1935". Empty or "off": no RTMP listener (the default).
    pub rtmp: String,
    /// SRT listen address (UDP; listener mode, MPEG-TS inside, the `streamid`
    /// `#!::r=CONFERENCE,m=publish,u=STREAM_KEY` or `CONFERENCE/STREAM_KEY`), e.g.
    /// "0.0.0.0:9710". Empty or "off": no SRT listener (the default).
    pub srt: String,
}

impl Ingest {
    /// The RTMP listen address, None when RTMP is off. Errors name what is wrong.
    pub fn rtmp_addr(&self) -> Result<Option<SocketAddr>, String> {
        listen_addr(&self.rtmp, "0.0.0.0:1935")
    }

    /// The SRT listen address, None when SRT is off. Errors name what is wrong.
    pub fn srt_addr(&self) -> Result<Option<SocketAddr>, String> {
        listen_addr(&self.srt, "0.0.0.0:9710")
    }
}

/// An ingest listen address: empty or "off" is None.
fn listen_addr(value: &str, example: &str) -> Result<Option<SocketAddr>, String> {
    let v = value.trim();
    if v.is_empty() || v.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    v.parse::<SocketAddr>().map(Some).map_err(|_| {
        format!("must be a listen address such as \"{example}\", or \"off\", not {v:?}")
    })
}

/// Rate limits, session caps and HTTP timeouts. Rates are token buckets (GCRA): `*_per_second`
/// is the sustained rate, `*_burst` how many may come at once. 0 turns that limit off.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// POST/PATCH/DELETE requests per client address (a whole organisation behind one NAT
    /// address joins at once: keep this generous). Trickle ICE and edges' relay requests are
    /// not counted.
    pub address_per_second: u32,
    pub address_burst: u32,
    /// POST/PATCH/DELETE requests per bearer token that is not shared (a point's join link): a
    /// leaked link hammering the relay.
    pub token_per_second: u32,
    pub token_burst: u32,
    /// Requests per trusted token: relay credentials, the admin token, stream keys and a
    /// conference's shared viewer token. Requests with a relay credential or the admin token
    /// are not counted against their address.
    pub trusted_per_second: u32,
    pub trusted_burst: u32,
    /// Refused credentials (answers 401 or 403) per client address, on every route (guessing
    /// the admin token or join links); when spent, every request from there is answered 429.
    pub auth_failures_per_second: u32,
    pub auth_failures_burst: u32,
    /// Viewer sessions (points, previews, child relays) per conference; then WHEP answers 503.
    pub max_sessions_per_conference: usize,
    /// Sessions (publishers, viewers, child relays) on this relay; then WHIP/WHEP answer 503.
    pub max_sessions: usize,
    /// The `Retry-After` (seconds) of a 503 for a full conference or relay.
    pub retry_after_secs: u64,
    /// A connection that has not sent a request's whole header within this many seconds is
    /// closed (slow or silent clients; also idle keep-alive connections).
    pub header_timeout_secs: u64,
    /// A request body not read completely within this many seconds is refused (408).
    pub body_timeout_secs: u64,
    /// Open HTTP connections at most; further ones wait in the kernel's backlog.
    pub max_connections: usize,
    /// Reverse proxies (their IP addresses) whose `X-Forwarded-For` names the client: the
    /// address limits then apply to the address the proxy saw. Empty: the TCP peer.
    pub trusted_proxies: Vec<IpAddr>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            address_per_second: 200,
            address_burst: 3000,
            token_per_second: 2,
            token_burst: 60,
            trusted_per_second: 500,
            trusted_burst: 5000,
            auth_failures_per_second: 2,
            auth_failures_burst: 100,
            max_sessions_per_conference: 2000,
            max_sessions: 5000,
            retry_after_secs: 5,
            header_timeout_secs: 10,
            body_timeout_secs: 30,
            max_connections: 10000,
            trusted_proxies: vec![],
        }
    }
}

/// The node's log output (always on stderr).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// `text` (default: one human-readable line per event) or `json` (one JSON object per
    /// line, for log collectors). The `--log-format` flag overrides it.
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The longest graceful drain `http.drain_seconds` may ask for.
pub const MAX_DRAIN_SECONDS: u64 = 3600;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Http {
    /// Address the HTTP server listens on (WHIP, WHEP, pages, API, /metrics).
    pub listen: SocketAddr,
    /// Base URL used in links handed out (viewer links, Location headers are relative).
    /// Empty: `http://<listen>`.
    pub public_url: String,
    /// Largest accepted request body (SDP offers, trickle fragments), in bytes.
    pub max_body_bytes: usize,
    /// Value of `Access-Control-Allow-Origin` on WHIP/WHEP responses.
    pub cors_origin: String,
    /// HTTPS without a reverse proxy: the certificate chain (PEM: the server's certificate
    /// first, then its intermediates; certbot's `fullchain.pem`). Set together with
    /// `tls_key`; then `listen` speaks only HTTPS. Empty: plain HTTP.
    pub tls_cert: PathBuf,
    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1; certbot's `privkey.pem`).
    pub tls_key: PathBuf,
    /// With TLS on: a second, plain-HTTP listen address that answers every request with a
    /// 308 redirect to the same path on the https URL (e.g. `0.0.0.0:80`). Empty: none.
    pub redirect_from: String,
    /// Graceful drain on SIGTERM: how long the relay waits, at most, for its viewers to move
    /// elsewhere in the tree before it ends the remaining sessions and exits. 0: no drain (the
    /// sessions end at once).
    pub drain_seconds: u64,
}

impl Http {
    /// Whether the HTTP server speaks HTTPS (`tls_cert` and `tls_key` are set).
    pub fn tls(&self) -> bool {
        !self.tls_cert.as_os_str().is_empty() && !self.tls_key.as_os_str().is_empty()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Media {
    /// The one UDP address every WebRTC peer talks to (open this port in firewalls).
    /// A specific IP, or 0.0.0.0 / `[::]` (every interface; `public_ips` is then required).
    pub udp: SocketAddr,
    /// Addresses announced as ICE host candidates, each on `udp`'s port; needed when `udp`
    /// binds 0.0.0.0 or behind 1:1 NAT (cloud VMs: the public address here, `udp` on the
    /// private one or 0.0.0.0). Empty: the bound address. A datagram sent to one of these
    /// counts as arriving there; one that arrives at another local address (the private
    /// address a 1:1 NAT translated to) counts as arriving at the first one of its family.
    pub public_ips: Vec<IpAddr>,
    /// A session from which nothing arrives for this many seconds is ended.
    pub session_timeout_secs: u64,
    /// Send runs of datagrams to one peer with UDP GSO (falls back by itself when the
    /// kernel refuses it).
    pub gso: bool,
    /// Media shards (threads), each with its own WebRTC sessions and its own UDP port:
    /// `udp`'s port for the first, the next ports for the others (open the range
    /// `port ..= port + threads - 1` in firewalls). 0: one per core.
    pub threads: usize,
    /// Bandwidth adaptation: each viewer's link is estimated from its own transport-wide
    /// feedback and it gets the simulcast layer that fits (audio only below the lowest).
    /// Off: every viewer gets the top layer (and negotiates no transport-wide feedback).
    pub adaptation: bool,
    /// The estimate a viewer starts from (kbit/s): it joins on the highest layer this
    /// covers, then probing finds its link's real capacity.
    pub start_bitrate_kbps: u64,
    /// ICE-TCP: also accept WebRTC over TCP on the same port(s) as `udp` (a passive TCP
    /// candidate next to each UDP one), for points whose network blocks UDP. UDP is
    /// preferred whenever it works.
    pub tcp: bool,
    /// Run the media shards' threads under the real-time policy SCHED_FIFO at this priority
    /// (1–99), so that no other process on the machine (a recorder, a database, viewers on
    /// a test machine) takes a shard's core in the middle of a fan-out; 0: the default
    /// policy. Needs CAP_SYS_NICE or an RLIMIT_RTPRIO of at least this (systemd:
    /// `LimitRTPRIO=`); without it the relay logs a warning and runs on the default policy.
    pub realtime_priority: u8,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Data {
    /// Where the node keeps its state (the attendance ledger).
    pub dir: PathBuf,
    /// PostgreSQL URL for the ledger; empty: SQLite in `dir`.
    pub database_url: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Admin {
    /// Bearer token for the admin API. Empty: generated at start and logged.
    pub token: String,
    /// Secret that signs join links (HMAC). Empty: generated once and kept in the data dir.
    pub token_secret: String,
}

/// Sign-in to the consoles (`/operator`, `/admin`): named accounts whose passwords are stored
/// as argon2 PHC strings (`hallcast hash-password` makes one). There is no default account and
/// no default password: without accounts only the admin token (`[admin] token`) opens the
/// admin API.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AccessSection {
    pub accounts: Vec<Account>,
    /// How long a console sign-in lasts, in hours (then the browser signs in again).
    pub session_hours: u64,
}

impl Default for AccessSection {
    fn default() -> Self {
        AccessSection {
            accounts: vec![],
            session_hours: 12,
        }
    }
}

/// One console account.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Account {
    /// The sign-in name.
    pub name: String,
    pub role: AccountRole,
    /// The password's argon2 hash as a PHC string (`$argon2id$v=19$...`), never the password.
    pub password_hash: String,
}

/// What an account may do: an admin may do everything an operator may.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum AccountRole {
    /// The AV operator in the hall: conferences, stream keys, going live and ending, pre-flight.
    Operator,
    /// The organisers: everything (registry, links, reports, the tree, sessions).
    Admin,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Alerts {
    /// A point that dropped during the live broadcast and has not come back within this many
    /// seconds raises a `point_dropped` alert on the admin dashboard (shorter reconnects are
    /// shown as "left", without an alert).
    pub grace_seconds: u64,
}

impl Default for Alerts {
    fn default() -> Self {
        Alerts { grace_seconds: 60 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RelaySection {
    /// The relay credential: the bearer token an edge presents to pull, report and deliver
    /// attendance here. Empty on the central: generated once and kept in the data dir
    /// (`relay-credential`); empty on an edge: the edge's own `upstream.credential`, so one
    /// credential is accepted by every relay of the tree.
    pub credential: String,
}

/// When an edge starts pulling a conference from its parent.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum PullMode {
    /// As soon as the conference is live upstream (a point's first picture comes from the
    /// edge's own GOP cache).
    #[default]
    Eager,
    /// When the first viewer (point or child edge) asks for it.
    OnDemand,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Upstream {
    /// The parent relay's base URL (the central or another edge). Empty: this relay is the
    /// central (the root of the tree).
    pub parent: String,
    /// The relay credential the central issued (its info file's `relay_credential`).
    pub credential: String,
    /// Where to go when the parent is gone, in order (a sibling edge, then the central).
    pub fallbacks: Vec<String>,
    /// When to start pulling a live conference.
    pub pull: PullMode,
    /// This edge's name in the tree and in attendance reports. Empty: the host and port of
    /// `http.public_url`.
    pub name: String,
    /// Organisations whose points the central sends here (307 redirects of their joins).
    pub organisations: Vec<String>,
    /// Also take points of any organisation the central spreads by load.
    pub open: bool,
    /// How often the edge reports to its parent (and learns conferences, join-link keys and
    /// revocations), in milliseconds.
    pub report_interval_ms: u64,
    /// Extra certificate authorities (PEM bundle) trusted for https parents and fallbacks,
    /// besides the system's store: a private CA, or a parent's self-signed certificate.
    /// Empty: the system's store only.
    pub ca_file: PathBuf,
}

impl Default for Upstream {
    fn default() -> Self {
        Upstream {
            parent: String::new(),
            credential: String::new(),
            fallbacks: vec![],
            pull: PullMode::Eager,
            name: String::new(),
            organisations: vec![],
            open: false,
            report_interval_ms: 1000,
            ca_file: PathBuf::new(),
        }
    }
}

impl Upstream {
    /// The parents in the order an edge tries them.
    pub fn parents(&self) -> Vec<String> {
        std::iter::once(&self.parent)
            .chain(&self.fallbacks)
            .filter(|u| !u.is_empty())
            .map(|u| u.trim_end_matches('/').to_string())
            .collect()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct IceServer {
    pub urls: Vec<String>,
    pub username: String,
    pub credential: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ConferenceConfig {
    /// URL-safe identifier: letters, digits, `-` and `_`.
    pub id: String,
    /// Title shown to viewers.
    pub title: String,
    /// The hall encoder's WHIP bearer token.
    pub stream_key: String,
    /// A shared viewer token accepted by WHEP in addition to per-point join links.
    /// Empty: only join links are accepted.
    pub viewer_token: String,
}

impl Default for Http {
    fn default() -> Self {
        Http {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: String::new(),
            max_body_bytes: 64 * 1024,
            cors_origin: "*".into(),
            tls_cert: PathBuf::new(),
            tls_key: PathBuf::new(),
            redirect_from: String::new(),
            drain_seconds: 30,
        }
    }
}

impl Default for Media {
    fn default() -> Self {
        Media {
            udp: SocketAddr::from(([127, 0, 0, 1], 8443)),
            public_ips: vec![],
            session_timeout_secs: 6,
            gso: true,
            threads: 0,
            adaptation: true,
            start_bitrate_kbps: 1000,
            tcp: true,
            realtime_priority: 0,
        }
    }
}

impl Default for Data {
    fn default() -> Self {
        Data {
            dir: PathBuf::from("./data"),
            database_url: String::new(),
        }
    }
}

/// One thing wrong with a configuration: which key, what, and where in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The key's path: `upstream.parent`, `conferences[1].stream_key`; for a syntax error the
    /// key or table it is in (`(document)` before any table).
    pub key: String,
    pub message: String,
    /// Where in the text: the key (of an unknown key, a failed check), or the value (of a
    /// wrong type, a syntax error). None when the key was set on the command line.
    pub at: Option<Position>,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(at) = self.at {
            write!(f, "{}:{}: ", at.line, at.column)?;
        }
        write!(f, "{}: {}", self.key, self.message)
    }
}

impl Problem {
    /// A problem not (yet) placed in a file.
    fn new(key: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            key: key.into(),
            message: message.into(),
            at: None,
        }
    }

    /// The line `hallcast validate` prints: `FILE:LINE:COL: key: message` (`FILE: key:
    /// message` for a key set on the command line).
    pub fn in_file(&self, file: &str) -> String {
        match self.at {
            Some(_) => format!("{file}:{self}"),
            None => format!("{file}: {self}"),
        }
    }
}

impl From<locate::Located> for Problem {
    fn from(l: locate::Located) -> Problem {
        Problem {
            key: l.key,
            message: l.message,
            at: Some(l.at),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid override {0:?}: expected section.key=value")]
    Override(String),
    /// Syntax errors, unknown keys, wrong types and failed checks, each with its key and place.
    #[error("invalid configuration: {}", show_problems(file.as_deref(), problems))]
    Invalid {
        /// The file the problems are in, when the configuration came from one.
        file: Option<PathBuf>,
        problems: Vec<Problem>,
    },
}

fn show_problems(file: Option<&Path>, problems: &[Problem]) -> String {
    let lines: Vec<String> = match file {
        Some(f) => {
            let f = f.display().to_string();
            problems.iter().map(|p| p.in_file(&f)).collect()
        }
        None => problems.iter().map(Problem::to_string).collect(),
    };
    lines.join("; ")
}

impl ConfigError {
    fn invalid(problems: Vec<Problem>) -> ConfigError {
        ConfigError::Invalid {
            file: None,
            problems,
        }
    }
}

impl Config {
    /// Loads a file (or the embedded defaults when `path` is None), applies
    /// `section.key=value` overrides, and validates. Problems name the file, line and key.
    pub fn load(path: Option<&Path>, overrides: &[String]) -> Result<Config, ConfigError> {
        let text = match path {
            Some(p) => std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.to_path_buf(),
                source,
            })?,
            None => String::new(),
        };
        Self::from_toml(&text, overrides).map_err(|e| match e {
            ConfigError::Invalid {
                file: None,
                problems,
            } => ConfigError::Invalid {
                file: path.map(Path::to_path_buf),
                problems,
            },
            e => e,
        })
    }

    /// Parses a configuration's text, applies overrides and validates. The text is checked
    /// alone first (syntax, unknown keys, types: one problem, placed), then with the
    /// overrides; the semantic checks run on the result and report every problem, each placed
    /// at its key in the text unless an override set it.
    pub fn from_toml(text: &str, overrides: &[String]) -> Result<Config, ConfigError> {
        let keys = locate::Keys::parse(text).map_err(|l| ConfigError::invalid(vec![l.into()]))?;
        let mut config: Config = toml::from_str(text)
            .map_err(|e| ConfigError::invalid(vec![keys.locate_error(text, &e).into()]))?;
        let mut overridden = Vec::new();
        if !overrides.is_empty() {
            let mut value: toml::Table = text.parse().map_err(|e: toml::de::Error| {
                ConfigError::invalid(vec![keys.locate_error(text, &e).into()])
            })?;
            for o in overrides {
                overridden.push(apply_override(&mut value, o)?);
            }
            config = toml::Value::Table(value)
                .try_into()
                .map_err(|e: toml::de::Error| {
                    ConfigError::invalid(vec![Problem::new(
                        "(command line)",
                        e.message().trim().to_string(),
                    )])
                })?;
        }
        let mut problems = config.problems();
        if problems.is_empty() {
            return Ok(config);
        }
        for p in &mut problems {
            let by_override = overridden.iter().any(|o: &String| {
                p.key == *o
                    || p.key.starts_with(&format!("{o}."))
                    || p.key.starts_with(&format!("{o}["))
            });
            if by_override {
                p.message.push_str(" (set on the command line)");
            } else if !text.trim().is_empty() {
                // A key whose section is not written at all: the file as a whole (1:1).
                p.at = Some(
                    keys.offset_of(&p.key)
                        .map_or(Position { line: 1, column: 1 }, |o| {
                            Position::of_offset(text, o)
                        }),
                );
            }
        }
        // In the file's order, the command line's last.
        problems.sort_by_key(|p| p.at.map_or((usize::MAX, 0), |a| (a.line, a.column)));
        Err(ConfigError::invalid(problems))
    }

    /// The semantic checks; `Err` lists every problem (not placed in a file).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let problems = self.problems();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::invalid(problems))
        }
    }

    /// Whether this configuration runs an edge (it has a parent) rather than the central.
    pub fn is_edge(&self) -> bool {
        !self.upstream.parent.is_empty()
    }

    /// The effective configuration as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot show: {e}\n"))
    }

    /// Every semantic problem, each naming its key.
    pub fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut problem = |key: String, message: String| out.push(Problem::new(key, message));
        if self.http.max_body_bytes < 1024 {
            problem("http.max_body_bytes".into(), "must be at least 1024".into());
        }
        if self.http.drain_seconds > MAX_DRAIN_SECONDS {
            problem(
                "http.drain_seconds".into(),
                format!(
                    "must be at most {MAX_DRAIN_SECONDS} (an hour); orchestrators kill a relay that takes longer to stop"
                ),
            );
        }
        if self.media.realtime_priority > 99 {
            problem(
                "media.realtime_priority".into(),
                format!(
                    "must be 0 (off) or a SCHED_FIFO priority from 1 to 99, not {}",
                    self.media.realtime_priority
                ),
            );
        }
        if self.media.udp.ip().is_unspecified() && self.media.public_ips.is_empty() {
            problem(
                "media.udp".into(),
                "binds an unspecified address: list the addresses peers reach in media.public_ips"
                    .into(),
            );
        }
        let urls = std::iter::once(("upstream.parent".to_string(), &self.upstream.parent)).chain(
            self.upstream
                .fallbacks
                .iter()
                .enumerate()
                .map(|(i, u)| (format!("upstream.fallbacks[{i}]"), u)),
        );
        for (key, url) in urls {
            if !url.is_empty() && !url.starts_with("http://") && !url.starts_with("https://") {
                problem(key, format!("must be an http(s) URL, not {url:?}"));
            }
        }
        if self.upstream.parent.is_empty() && !self.upstream.fallbacks.is_empty() {
            problem(
                "upstream.fallbacks".into(),
                "are set but upstream.parent is empty".into(),
            );
        }
        if self.is_edge() && self.upstream.credential.len() < 16 {
            problem(
                "upstream.credential".into(),
                "must be the relay credential the central issued (at least 16 characters)".into(),
            );
        }
        if !self.relay.credential.is_empty() && self.relay.credential.len() < 16 {
            problem(
                "relay.credential".into(),
                "must be at least 16 characters".into(),
            );
        }
        let (cert, key) = (&self.http.tls_cert, &self.http.tls_key);
        if cert.as_os_str().is_empty() != key.as_os_str().is_empty() {
            let (set, unset) = if key.as_os_str().is_empty() {
                ("http.tls_cert", "http.tls_key")
            } else {
                ("http.tls_key", "http.tls_cert")
            };
            problem(
                unset.into(),
                format!("must be set together with {set} (both PEM files), or both left empty"),
            );
        }
        if !self.http.redirect_from.is_empty() {
            match self.http.redirect_from.parse::<SocketAddr>() {
                Err(_) => problem(
                    "http.redirect_from".into(),
                    format!(
                        "must be a listen address such as \"0.0.0.0:80\", not {:?}",
                        self.http.redirect_from
                    ),
                ),
                Ok(_) if !self.http.tls() => problem(
                    "http.redirect_from".into(),
                    "redirects to https: set http.tls_cert and http.tls_key too".into(),
                ),
                Ok(a) if a == self.http.listen && a.port() != 0 => problem(
                    "http.redirect_from".into(),
                    "must differ from http.listen".into(),
                ),
                Ok(_) => {}
            }
        }
        if let Err(m) = self.ingest.rtmp_addr() {
            problem("ingest.rtmp".into(), m);
        }
        if let Ok(Some(a)) = self.ingest.rtmp_addr()
            && a == self.http.listen
            && a.port() != 0
        {
            problem("ingest.rtmp".into(), "must differ from http.listen".into());
        }
        if let Err(m) = self.ingest.srt_addr() {
            problem("ingest.srt".into(), m);
        }
        if let Ok(Some(a)) = self.ingest.srt_addr()
            && a.port() != 0
            && self.media.udp.port() == a.port()
            && (self.media.udp.ip() == a.ip()
                || self.media.udp.ip().is_unspecified()
                || a.ip().is_unspecified())
        {
            problem(
                "ingest.srt".into(),
                "must differ from media.udp (both are UDP ports)".into(),
            );
        }
        if self.upstream.report_interval_ms < 100 {
            problem(
                "upstream.report_interval_ms".into(),
                "must be at least 100".into(),
            );
        }
        let l = &self.limits;
        for (key, rate, burst) in [
            ("address", l.address_per_second, l.address_burst),
            ("token", l.token_per_second, l.token_burst),
            ("trusted", l.trusted_per_second, l.trusted_burst),
            (
                "auth_failures",
                l.auth_failures_per_second,
                l.auth_failures_burst,
            ),
        ] {
            if (rate == 0) != (burst == 0) {
                problem(
                    format!("limits.{key}_burst"),
                    format!(
                        "limits.{key}_per_second and limits.{key}_burst are both 0 (off) or both set"
                    ),
                );
            }
        }
        if l.retry_after_secs == 0 || l.retry_after_secs > 3600 {
            problem("limits.retry_after_secs".into(), "must be 1..=3600".into());
        }
        if l.header_timeout_secs == 0 || l.header_timeout_secs > 3600 {
            problem(
                "limits.header_timeout_secs".into(),
                "must be 1..=3600".into(),
            );
        }
        if l.body_timeout_secs == 0 || l.body_timeout_secs > 3600 {
            problem("limits.body_timeout_secs".into(), "must be 1..=3600".into());
        }
        if self.access.session_hours == 0 || self.access.session_hours > 24 * 31 {
            problem("access.session_hours".into(), "must be 1..=744".into());
        }
        let mut names = std::collections::HashSet::new();
        for (i, a) in self.access.accounts.iter().enumerate() {
            if a.name.trim().is_empty() || a.name.len() > 64 || a.name.chars().any(char::is_control)
            {
                problem(
                    format!("access.accounts[{i}].name"),
                    format!("{:?} must be 1..=64 printable characters", a.name),
                );
            } else if !names.insert(&a.name) {
                problem(
                    format!("access.accounts[{i}].name"),
                    format!("access account {:?} is listed twice", a.name),
                );
            }
            if !a.password_hash.starts_with("$argon2") {
                problem(
                    format!("access.accounts[{i}].password_hash"),
                    format!(
                        "access account {:?}: must be an argon2 PHC string ($argon2id$...; make one with `hallcast hash-password`), never the password itself",
                        a.name
                    ),
                );
            }
        }
        if self.is_edge() && !self.conferences.is_empty() {
            problem(
                "conferences".into(),
                "an edge serves its parent's conferences: remove [[conferences]] from its configuration".into(),
            );
        }
        let mut seen = std::collections::HashSet::new();
        for (i, c) in self.conferences.iter().enumerate() {
            if c.id.is_empty()
                || !c
                    .id
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
            {
                problem(
                    format!("conferences[{i}].id"),
                    format!(
                        "{:?} must be non-empty and use only letters, digits, '-' and '_'",
                        c.id
                    ),
                );
            } else if !seen.insert(&c.id) {
                problem(
                    format!("conferences[{i}].id"),
                    format!("conference {:?} is listed twice", c.id),
                );
            }
            if c.stream_key.len() < 8 {
                problem(
                    format!("conferences[{i}].stream_key"),
                    format!("conference {:?}: must be at least 8 characters", c.id),
                );
            }
        }
        out
    }

    /// The base URL for links handed out to clients.
    pub fn public_url(&self) -> String {
        if self.http.public_url.is_empty() {
            let scheme = if self.http.tls() { "https" } else { "http" };
            format!("{scheme}://{}", self.http.listen)
        } else {
            self.http.public_url.trim_end_matches('/').to_string()
        }
    }
}

/// Where `key` (a path such as `access.accounts[0].password_hash`) is written in `text`, or its
/// nearest written ancestor: for problems found outside this crate. None: the text does not
/// parse, or has neither.
pub fn locate(text: &str, key: &str) -> Option<Position> {
    let keys = locate::Keys::parse(text).ok()?;
    keys.offset_of(key).map(|o| Position::of_offset(text, o))
}

/// Sets one `section.key=value` in `root`; returns the key's path.
fn apply_override(root: &mut toml::Table, o: &str) -> Result<String, ConfigError> {
    let (path, raw) = o
        .split_once('=')
        .ok_or_else(|| ConfigError::Override(o.into()))?;
    let keys: Vec<&str> = path.trim().split('.').collect();
    if keys.iter().any(|k| k.is_empty()) {
        return Err(ConfigError::Override(o.into()));
    }
    // A TOML value if it parses as one (numbers, arrays, booleans, quoted strings),
    // otherwise the raw text as a string (addresses, paths).
    let value = format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let mut table = root;
    for k in &keys[..keys.len() - 1] {
        let entry = table
            .entry(k.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = entry
            .as_table_mut()
            .ok_or_else(|| ConfigError::Override(o.into()))?;
    }
    table.insert(keys[keys.len() - 1].to_string(), value);
    Ok(keys.join("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let c = Config::from_toml("", &[]).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.public_url(), "http://127.0.0.1:8080");
    }

    #[test]
    fn tls_keys_go_together_and_make_the_public_url_https() {
        let c = Config::from_toml(
            "[http]\nlisten = \"127.0.0.1:8443\"\ntls_cert = \"/etc/hc/fullchain.pem\"\ntls_key = \"/etc/hc/privkey.pem\"\nredirect_from = \"127.0.0.1:8080\"\n",
            &[],
        )
        .unwrap();
        assert!(c.http.tls());
        assert_eq!(c.public_url(), "https://127.0.0.1:8443");
        let c =
            Config::from_toml("", &["http.public_url=\"https://hall.example\"".into()]).unwrap();
        assert!(!c.http.tls());
        assert_eq!(c.public_url(), "https://hall.example");
        let e = Config::from_toml("[http]\ntls_cert = \"/a.pem\"\n", &[]).unwrap_err();
        assert!(e.to_string().contains("http.tls_key"), "{e}");
        let e = Config::from_toml("[http]\ntls_key = \"/k.pem\"\n", &[]).unwrap_err();
        assert!(e.to_string().contains("http.tls_cert"), "{e}");
        let e = Config::from_toml("[http]\nredirect_from = \"0.0.0.0:80\"\n", &[]).unwrap_err();
        assert!(
            e.to_string().contains("http.redirect_from") && e.to_string().contains("tls_cert"),
            "{e}"
        );
        let e = Config::from_toml(
            "[http]\ntls_cert = \"/a\"\ntls_key = \"/b\"\nredirect_from = \"port 80\"\n",
            &[],
        )
        .unwrap_err();
        assert!(e.to_string().contains("listen address"), "{e}");
        let c = Config::from_toml("[upstream]\nca_file = \"/etc/hc/ca.pem\"\n", &[]).unwrap();
        assert_eq!(c.upstream.ca_file, PathBuf::from("/etc/hc/ca.pem"));
    }

    #[test]
    fn access_accounts_parse_and_refuse_plain_passwords() {
        let c = Config::from_toml(
            "[access]\nsession_hours = 8\n[[access.accounts]]\nname = \"an\"\nrole = \"operator\"\npassword_hash = \"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA\"\n",
            &[],
        )
        .unwrap();
        assert_eq!(c.access.session_hours, 8);
        assert_eq!(c.access.accounts[0].role, AccountRole::Operator);
        let e = Config::from_toml(
            "[[access.accounts]]\nname = \"an\"\nrole = \"admin\"\npassword_hash = \"hunter2\"\n",
            &[],
        )
        .unwrap_err();
        assert!(e.to_string().contains("argon2"), "{e}");
        let e = Config::from_toml(
            "[[access.accounts]]\nname = \"an\"\nrole = \"root\"\npassword_hash = \"$argon2id$\"\n",
            &[],
        )
        .unwrap_err();
        assert!(e.to_string().contains("root"), "{e}");
        assert!(AccountRole::Admin > AccountRole::Operator);
    }

    #[test]
    fn log_format_is_text_unless_json_is_asked() {
        assert_eq!(Config::default().log.format, LogFormat::Text);
        let c = Config::from_toml("[log]\nformat = \"json\"\n", &[]).unwrap();
        assert_eq!(c.log.format, LogFormat::Json);
        let c = Config::from_toml("", &["log.format=json".into()]).unwrap();
        assert_eq!(c.log.format, LogFormat::Json);
        let e = Config::from_toml("[log]\nformat = \"xml\"\n", &[]).unwrap_err();
        assert!(e.to_string().contains("xml"), "{e}");
    }

    #[test]
    fn the_rtmp_ingest_is_an_address_or_off() {
        assert_eq!(Config::default().ingest.rtmp_addr(), Ok(None));
        let c = Config::from_toml("", &["ingest.rtmp=127.0.0.1:0".into()]).unwrap();
        assert_eq!(
            c.ingest.rtmp_addr(),
            Ok(Some("127.0.0.1:0".parse().unwrap()))
        );
        let c = Config::from_toml("[ingest]\nrtmp = \"off\"\n", &[]).unwrap();
        assert_eq!(c.ingest.rtmp_addr(), Ok(None));
        let c = Config::from_toml("", &["ingest.rtmp=".into()]).unwrap();
        assert_eq!(c.ingest.rtmp_addr(), Ok(None));
        let e = Config::from_toml("[ingest]\nrtmp = \"port 1935\"\n", &[]).unwrap_err();
        assert!(e.to_string().contains("ingest.rtmp"), "{e}");
    }

    #[test]
    fn the_srt_ingest_is_an_address_or_off() {
        assert_eq!(Config::default().ingest.srt_addr(), Ok(None));
        let c = Config::from_toml("", &["ingest.srt=127.0.0.1:0".into()]).unwrap();
        assert_eq!(
            c.ingest.srt_addr(),
            Ok(Some("127.0.0.1:0".parse().unwrap()))
        );
        let c = Config::from_toml("[ingest]\nsrt = \"off\"\n", &[]).unwrap();
        assert_eq!(c.ingest.srt_addr(), Ok(None));
        let c = Config::from_toml("", &["ingest.srt=".into()]).unwrap();
        assert_eq!(c.ingest.srt_addr(), Ok(None));
        let e = Config::from_toml("[ingest]\nsrt = \"udp 9710\"\n", &[]).unwrap_err();
        assert!(e.to_string().contains("ingest.srt"), "{e}");
        let e = Config::from_toml(
            "[media]\nudp = \"0.0.0.0:9710\"\n[ingest]\nsrt = \"127.0.0.1:9710\"\n",
            &[],
        )
        .unwrap_err();
        assert!(e.to_string().contains("media.udp"), "{e}");
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let e = Config::from_toml("[http]\nlisten_addr = \"1.2.3.4:5\"\n", &[]).unwrap_err();
        assert!(e.to_string().contains("listen_addr"), "{e}");
    }

    #[test]
    fn overrides_reach_every_key() {
        let c = Config::from_toml(
            "",
            &[
                "http.listen=0.0.0.0:9000".into(),
                "media.udp=10.0.0.1:3478".into(),
                "media.public_ips=[\"10.0.0.1\"]".into(),
                "data.dir=/var/lib/hallcast".into(),
                "media.session_timeout_secs=9".into(),
            ],
        )
        .unwrap();
        assert_eq!(c.http.listen.port(), 9000);
        assert_eq!(c.media.udp.port(), 3478);
        assert_eq!(c.data.dir, PathBuf::from("/var/lib/hallcast"));
        assert_eq!(c.media.session_timeout_secs, 9);
        assert!(Config::from_toml("", &["nonsense".into()]).is_err());
        assert!(Config::from_toml("", &["http.bogus=1".into()]).is_err());
    }

    #[test]
    fn validation_names_the_problem() {
        let e = Config::from_toml(
            "[[conferences]]\nid = \"bad id\"\nstream_key = \"12345678\"\n",
            &[],
        )
        .unwrap_err();
        assert!(e.to_string().contains("bad id"));
        let e = Config::from_toml("[media]\nudp = \"0.0.0.0:8443\"\n", &[]).unwrap_err();
        assert!(e.to_string().contains("public_ips"));
    }

    #[test]
    fn upstream_keys_parse_and_are_checked() {
        let c = Config::from_toml(
            "[upstream]\nparent = \"http://10.0.0.1:8080/\"\ncredential = \"0123456789abcdef\"\nfallbacks = [\"http://10.0.0.2:8080\"]\npull = \"on_demand\"\n",
            &[],
        )
        .unwrap();
        assert_eq!(
            c.upstream.parents(),
            vec!["http://10.0.0.1:8080", "http://10.0.0.2:8080"]
        );
        assert_eq!(c.upstream.pull, PullMode::OnDemand);
        let e = Config::from_toml(
            "[upstream]\nparent = \"http://x\"\ncredential = \"short\"\n",
            &[],
        )
        .unwrap_err();
        assert!(e.to_string().contains("upstream.credential"), "{e}");
        let e = Config::from_toml("[upstream]\nparent = \"ftp://x\"\n", &[]).unwrap_err();
        assert!(e.to_string().contains("ftp://x"), "{e}");
        assert!(Config::default().upstream.parents().is_empty());
    }

    /// The one problem of an invalid text.
    fn only_problem(text: &str, overrides: &[&str]) -> Problem {
        let overrides: Vec<String> = overrides.iter().map(|o| o.to_string()).collect();
        match Config::from_toml(text, &overrides) {
            Err(ConfigError::Invalid { problems, .. }) if problems.len() == 1 => {
                problems.into_iter().next().unwrap()
            }
            other => panic!("expected one problem in {text:?}, got {other:?}"),
        }
    }

    fn at(line: usize, column: usize) -> Option<Position> {
        Some(Position { line, column })
    }

    #[test]
    fn a_syntax_error_names_its_line_and_table() {
        let p = only_problem("[http]\nlisten = \"127.0.0.1:1\"\n\n[media\nudp = 1\n", &[]);
        assert_eq!(p.at.map(|a| a.line), Some(4), "{p}");
        assert_eq!(p.key, "http", "{p}");
        assert!(p.message.contains("unclosed table"), "{p}");
        let p = only_problem("[media]\ngso = tru\n", &[]);
        assert_eq!((p.at, p.key.as_str()), (at(2, 7), "media.gso"), "{p}");
        let p = only_problem("oops\n", &[]);
        assert_eq!(
            (p.at.map(|a| a.line), p.key.as_str()),
            (Some(1), "(document)")
        );
    }

    #[test]
    fn an_unknown_key_names_its_line_and_path() {
        let p = only_problem("# x\n[http]\nlisten_addr = \"1.2.3.4:5\"\n", &[]);
        assert_eq!(
            (p.at, p.key.as_str()),
            (at(3, 1), "http.listen_addr"),
            "{p}"
        );
        assert!(p.message.contains("unknown field `listen_addr`"), "{p}");
        let p = only_problem(
            "[[conferences]]\nid = \"a\"\nstream_kye = \"12345678\"\n",
            &[],
        );
        assert_eq!(
            (p.at, p.key.as_str()),
            (at(3, 1), "conferences[0].stream_kye")
        );
        let p = only_problem("\n[upstraem]\nparent = \"\"\n", &[]);
        assert_eq!((p.at, p.key.as_str()), (at(2, 2), "upstraem"), "{p}");
    }

    #[test]
    fn a_wrong_type_names_the_value_line_and_path() {
        let p = only_problem("[media]\n\nsession_timeout_secs = \"six\"\n", &[]);
        assert_eq!(
            (p.at, p.key.as_str()),
            (at(3, 24), "media.session_timeout_secs"),
            "{p}"
        );
        assert!(p.message.contains("invalid type"), "{p}");
        let p = only_problem("[http]\nlisten = \"nowhere\"\n", &[]);
        assert_eq!((p.at, p.key.as_str()), (at(2, 10), "http.listen"), "{p}");
        let p = only_problem("[log]\nformat = \"xml\"\n", &[]);
        assert_eq!(
            (p.at.map(|a| a.line), p.key.as_str()),
            (Some(2), "log.format")
        );
        assert!(p.message.contains("xml"), "{p}");
        // A missing required key is placed at its table.
        let p = only_problem(
            "\n[[access.accounts]]\nname = \"an\"\nrole = \"admin\"\n",
            &[],
        );
        assert_eq!(
            (p.at.map(|a| a.line), p.key.as_str()),
            (Some(2), "access.accounts[0]")
        );
        assert!(p.message.contains("password_hash"), "{p}");
    }

    #[test]
    fn a_failed_check_names_its_key_and_the_key_line() {
        let p = only_problem(
            "[upstream]\ncredential = \"0123456789abcdef\"\nparent = \"ftp://x\"\n",
            &[],
        );
        assert_eq!((p.at, p.key.as_str()), (at(3, 1), "upstream.parent"), "{p}");
        assert_eq!(p.message, "must be an http(s) URL, not \"ftp://x\"");
        let p = only_problem(
            "[[conferences]]\nid = \"a\"\nstream_key = \"12345678\"\n[[conferences]]\nid = \"b\"\n  stream_key = \"short\"\n",
            &[],
        );
        assert_eq!(
            (p.at, p.key.as_str()),
            (at(6, 3), "conferences[1].stream_key"),
            "{p}"
        );
        // A check on a key the file leaves at its default is placed at the nearest written
        // ancestor (here the conference's header).
        let p = only_problem("[[conferences]]\nid = \"a\"\n", &[]);
        assert_eq!(
            (p.at, p.key.as_str()),
            (at(1, 1), "conferences[0].stream_key"),
            "{p}"
        );
        let p = only_problem(
            "[upstream]\nparent = \"http://c:8080\"\ncredential = \"0123456789abcdef\"\n\n[[conferences]]\nid = \"a\"\nstream_key = \"12345678\"\n",
            &[],
        );
        assert_eq!(
            (p.at.map(|a| a.line), p.key.as_str()),
            (Some(5), "conferences"),
            "{p}"
        );
    }

    #[test]
    fn drain_seconds_defaults_to_30_and_is_bounded() {
        let c = Config::from_toml("", &[]).unwrap();
        assert_eq!(c.http.drain_seconds, 30);
        let c = Config::from_toml("[http]\ndrain_seconds = 0\n", &[]).unwrap();
        assert_eq!(c.http.drain_seconds, 0, "0: no drain");
        let p = only_problem("[http]\ndrain_seconds = 3601\n", &[]);
        assert_eq!(
            (p.at.map(|a| a.line), p.key.as_str()),
            (Some(2), "http.drain_seconds"),
            "{p}"
        );
        assert!(p.message.contains("at most 3600"), "{p}");
    }

    #[test]
    fn realtime_priority_is_off_by_default_and_a_fifo_priority_when_set() {
        let c = Config::from_toml("", &[]).unwrap();
        assert_eq!(c.media.realtime_priority, 0, "0: the default policy");
        let c = Config::from_toml("", &["media.realtime_priority=99".into()]).unwrap();
        assert_eq!(c.media.realtime_priority, 99);
        let p = only_problem("[media]\nrealtime_priority = 100\n", &[]);
        assert_eq!(
            (p.at.map(|a| a.line), p.key.as_str()),
            (Some(2), "media.realtime_priority"),
            "{p}"
        );
        assert!(p.message.contains("from 1 to 99, not 100"), "{p}");
    }

    #[test]
    fn every_failed_check_is_reported() {
        let e = Config::from_toml(
            "[http]\nmax_body_bytes = 10\n[media]\nudp = \"0.0.0.0:8443\"\n[access]\nsession_hours = 0\n",
            &[],
        )
        .unwrap_err();
        let ConfigError::Invalid { problems, .. } = &e else {
            panic!("{e}")
        };
        let got: Vec<(usize, &str)> = problems
            .iter()
            .map(|p| (p.at.unwrap().line, p.key.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (2, "http.max_body_bytes"),
                (4, "media.udp"),
                (6, "access.session_hours")
            ]
        );
    }

    #[test]
    fn a_value_set_on_the_command_line_is_not_placed_in_the_file() {
        let p = only_problem(
            "[upstream]\nparent = \"http://c\"\n",
            &["upstream.credential=short"],
        );
        assert_eq!((p.at, p.key.as_str()), (None, "upstream.credential"));
        assert!(p.message.ends_with("(set on the command line)"), "{p}");
        assert_eq!(p.in_file("f.toml"), format!("f.toml: {p}"));
        // Without a file (`hallcast edge --parent URL` alone) nothing is placed.
        let p = only_problem("", &["upstream.parent=\"http://c\""]);
        assert_eq!((p.at, p.key.as_str()), (None, "upstream.credential"));
        assert_eq!(
            p.to_string(),
            "upstream.credential: must be the relay credential the central issued (at least 16 characters)"
        );
        // An override that fixes the file's problem is accepted.
        assert!(
            Config::from_toml(
                "[media]\nudp = \"0.0.0.0:1\"\n",
                &["media.public_ips=[\"192.0.2.1\"]".into()]
            )
            .is_ok()
        );
    }

    #[test]
    fn a_loaded_file_names_itself_in_each_problem() {
        let dir = std::env::temp_dir().join(format!("hallcast-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.toml");
        std::fs::write(&path, "[media]\nthreads = -1\n").unwrap();
        let e = Config::load(Some(&path), &[]).unwrap_err();
        let want = format!("{}:2:11: media.threads: ", path.display());
        assert!(e.to_string().contains(&want), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Every `*.toml` in the repository's config/ folder.
    fn shipped_configs() -> Vec<PathBuf> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        files
    }

    #[test]
    fn every_shipped_config_loads_and_validates() {
        let files = shipped_configs();
        let names: Vec<String> = files
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        for want in ["central.toml", "edge.toml", "hallcast.toml"] {
            assert!(
                names.iter().any(|n| n == want),
                "config/{want} is missing: {names:?}"
            );
        }
        for f in &files {
            let c = Config::load(Some(f), &[]).unwrap_or_else(|e| panic!("{e}"));
            c.validate()
                .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            let name = f.file_name().unwrap().to_string_lossy();
            assert_eq!(c.is_edge(), name.starts_with("edge"), "{name}: role");
        }
        let hall = Config::load(
            Some(&files[names.iter().position(|n| n == "hallcast.toml").unwrap()]),
            &[],
        )
        .unwrap();
        assert!(!hall.conferences.is_empty());
    }

    #[test]
    fn limits_are_checked() {
        let mut c = Config::default();
        assert!(c.validate().is_ok());
        c.limits.token_burst = 0;
        c.limits.header_timeout_secs = 0;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("limits.token_burst"), "{e}");
        assert!(e.contains("limits.header_timeout_secs"), "{e}");
        // Both 0: that limit is off.
        let mut c = Config::default();
        c.limits.token_burst = 0;
        c.limits.token_per_second = 0;
        assert!(c.validate().is_ok());
        let c = Config::load(
            None,
            &[
                "limits.max_sessions_per_conference=3".into(),
                "limits.trusted_proxies=[\"10.0.0.1\"]".into(),
            ],
        )
        .unwrap();
        assert_eq!(c.limits.max_sessions_per_conference, 3);
        assert_eq!(
            c.limits.trusted_proxies,
            vec!["10.0.0.1".parse::<IpAddr>().unwrap()]
        );
    }

    /// The reference configs write every key of the schema (set, or commented out with its
    /// default), in its section: a key added to the schema must be added to them.
    #[test]
    fn the_reference_configs_show_every_key() {
        let defaults = toml::Table::try_from(Config::default()).unwrap();
        for name in ["central.toml", "edge.toml"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../config")
                .join(name);
            let text = std::fs::read_to_string(&path).unwrap();
            let mut missing = Vec::new();
            for (section, value) in &defaults {
                let Some(table) = value.as_table() else {
                    // Arrays of tables (conferences, ice_servers): an example is enough.
                    if !text.contains(&format!("[[{section}]]")) {
                        missing.push(format!("[[{section}]]"));
                    }
                    continue;
                };
                let body = section_body(&text, section);
                for key in table.keys() {
                    let written = body.as_deref().is_some_and(|b| {
                        b.lines().any(|l| {
                            let l = l.trim_start_matches(['#', ' ']);
                            l.strip_prefix(key.as_str())
                                .is_some_and(|rest| rest.trim_start().starts_with('='))
                        })
                    }) || text.contains(&format!("[[{section}.{key}]]"));
                    if !written {
                        missing.push(format!("{section}.{key}"));
                    }
                }
            }
            assert!(
                missing.is_empty(),
                "config/{name} does not show {missing:?}"
            );
        }
    }

    /// The lines of `[section]` (written or commented out) up to the next table header.
    fn section_body(text: &str, section: &str) -> Option<String> {
        let header = format!("[{section}]");
        let mut lines = text.lines();
        lines.find(|l| l.trim_start_matches(['#', ' ']) == header)?;
        let body: Vec<&str> = lines
            .take_while(|l| !l.trim_start_matches(['#', ' ']).starts_with('['))
            .collect();
        Some(body.join("\n"))
    }
}
