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

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Parse(String),
    #[error("invalid override {0:?}: expected section.key=value")]
    Override(String),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Loads a file (or the embedded defaults when `path` is None), applies
    /// `section.key=value` overrides, and validates.
    pub fn load(path: Option<&Path>, overrides: &[String]) -> Result<Config, ConfigError> {
        let text = match path {
            Some(p) => std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.to_path_buf(),
                source,
            })?,
            None => String::new(),
        };
        Self::from_toml(&text, overrides)
    }

    pub fn from_toml(text: &str, overrides: &[String]) -> Result<Config, ConfigError> {
        let mut value: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::Parse(e.to_string()))?;
        for o in overrides {
            apply_override(&mut value, o)?;
        }
        let config: Config = toml::Value::Table(value)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Parse(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.http.max_body_bytes < 1024 {
            return Err(ConfigError::Invalid(
                "http.max_body_bytes must be at least 1024".into(),
            ));
        }
        if self.media.udp.ip().is_unspecified() && self.media.public_ips.is_empty() {
            return Err(ConfigError::Invalid(
                "media.udp binds an unspecified address: list the addresses peers reach in media.public_ips".into(),
            ));
        }
        for url in std::iter::once(&self.upstream.parent).chain(&self.upstream.fallbacks) {
            if !url.is_empty() && !url.starts_with("http://") && !url.starts_with("https://") {
                return Err(ConfigError::Invalid(format!(
                    "upstream parent {url:?} must be an http:// or https:// URL"
                )));
            }
        }
        if self.upstream.parent.is_empty() && !self.upstream.fallbacks.is_empty() {
            return Err(ConfigError::Invalid(
                "upstream.fallbacks are set but upstream.parent is empty".into(),
            ));
        }
        if !self.upstream.parent.is_empty() && self.upstream.credential.len() < 16 {
            return Err(ConfigError::Invalid(
                "upstream.credential must be the relay credential the central issued (at least 16 characters)".into(),
            ));
        }
        if !self.relay.credential.is_empty() && self.relay.credential.len() < 16 {
            return Err(ConfigError::Invalid(
                "relay.credential must be at least 16 characters".into(),
            ));
        }
        if self.upstream.report_interval_ms < 100 {
            return Err(ConfigError::Invalid(
                "upstream.report_interval_ms must be at least 100".into(),
            ));
        }
        if self.access.session_hours == 0 || self.access.session_hours > 24 * 31 {
            return Err(ConfigError::Invalid(
                "access.session_hours must be 1..=744".into(),
            ));
        }
        let mut names = std::collections::HashSet::new();
        for a in &self.access.accounts {
            if a.name.trim().is_empty() || a.name.len() > 64 || a.name.chars().any(char::is_control)
            {
                return Err(ConfigError::Invalid(format!(
                    "access account name {:?} must be 1..=64 printable characters",
                    a.name
                )));
            }
            if !names.insert(&a.name) {
                return Err(ConfigError::Invalid(format!(
                    "access account {:?} is listed twice",
                    a.name
                )));
            }
            if !a.password_hash.starts_with("$argon2") {
                return Err(ConfigError::Invalid(format!(
                    "access account {:?}: password_hash must be an argon2 PHC string ($argon2id$...; make one with `hallcast hash-password`), never the password itself",
                    a.name
                )));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for c in &self.conferences {
            if c.id.is_empty()
                || !c
                    .id
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
            {
                return Err(ConfigError::Invalid(format!(
                    "conference id {:?} must be non-empty and use only letters, digits, '-' and '_'",
                    c.id
                )));
            }
            if c.stream_key.len() < 8 {
                return Err(ConfigError::Invalid(format!(
                    "conference {:?}: stream_key must be at least 8 characters",
                    c.id
                )));
            }
            if !seen.insert(&c.id) {
                return Err(ConfigError::Invalid(format!(
                    "conference {:?} is listed twice",
                    c.id
                )));
            }
        }
        Ok(())
    }

    /// The base URL for links handed out to clients.
    pub fn public_url(&self) -> String {
        if self.http.public_url.is_empty() {
            format!("http://{}", self.http.listen)
        } else {
            self.http.public_url.trim_end_matches('/').to_string()
        }
    }
}

fn apply_override(root: &mut toml::Table, o: &str) -> Result<(), ConfigError> {
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
    Ok(())
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

    #[test]
    fn shipped_example_config_parses() {
        let text = include_str!("../../../config/hallcast.toml");
        let c = Config::from_toml(text, &[]).expect("config/hallcast.toml must parse");
        assert!(!c.conferences.is_empty());
    }
}
