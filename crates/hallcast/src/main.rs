//! The `hallcast` binary: command-line definition and glue. Everything it runs lives
//! in the library crates; this file parses flags, installs logging and wires parts.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

mod attendance_cli;

use anyhow::Context;
use clap::{Parser, Subcommand};
use hallcast_config::{ConferenceConfig, Config, LogFormat};
use hallcast_core::accounting::{ConferenceId, OrgId, Organisation, PointId, PointInfo};
use hallcast_ledger::{Ledger, LedgerConfig, Secret, StoreConfig};
use hallcast_rtc::{Engine, EngineConfig};
use hallcast_server::attendance::{AttendanceCtx, LedgerViewerAuth};
use hallcast_server::edge::{Edge, EdgeHook, EdgeKeys, EdgeViewerAuth, Hooks};
use hallcast_server::tree::Tree;
use hallcast_server::{AppState, LedgerHook, Registry};
use tracing::{info, warn};

#[derive(Parser)]
#[command(
    name = "hallcast",
    version,
    about = "Livestream relay for conferences: WHIP in, WHEP out, attendance accounted"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Flags that override configuration keys (each maps to one key; `--set` reaches all).
#[derive(clap::Args, Clone, Default)]
struct Overrides {
    /// HTTP listen address (http.listen).
    #[arg(long, value_name = "ADDR")]
    http: Option<SocketAddr>,
    /// The one UDP media address (media.udp).
    #[arg(long, value_name = "ADDR")]
    media: Option<SocketAddr>,
    /// Address announced to peers as ICE candidate (media.public_ips); repeatable.
    #[arg(long = "public-ip", value_name = "IP")]
    public_ips: Vec<IpAddr>,
    /// Base URL for links handed out (http.public_url).
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,
    /// HTTPS: the certificate chain, PEM (http.tls_cert; with --tls-key).
    #[arg(long, value_name = "PEM")]
    tls_cert: Option<PathBuf>,
    /// HTTPS: the certificate's private key, PEM (http.tls_key).
    #[arg(long, value_name = "PEM")]
    tls_key: Option<PathBuf>,
    /// Data directory (data.dir).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// PostgreSQL URL for the ledger (data.database_url).
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// Any configuration key: --set section.key=value (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

impl Overrides {
    fn to_list(&self) -> Vec<String> {
        let mut v = Vec::new();
        if let Some(a) = self.http {
            v.push(format!("http.listen={a}"));
        }
        if let Some(a) = self.media {
            v.push(format!("media.udp={a}"));
        }
        if !self.public_ips.is_empty() {
            let ips: Vec<String> = self.public_ips.iter().map(|i| format!("\"{i}\"")).collect();
            v.push(format!("media.public_ips=[{}]", ips.join(",")));
        }
        if let Some(u) = &self.public_url {
            v.push(format!("http.public_url=\"{u}\""));
        }
        if let Some(p) = &self.tls_cert {
            v.push(format!(
                "http.tls_cert={}",
                toml_string(&p.display().to_string())
            ));
        }
        if let Some(p) = &self.tls_key {
            v.push(format!(
                "http.tls_key={}",
                toml_string(&p.display().to_string())
            ));
        }
        if let Some(d) = &self.data_dir {
            v.push(format!("data.dir=\"{}\"", d.display()));
        }
        if let Some(u) = &self.database_url {
            v.push(format!("data.database_url=\"{u}\""));
        }
        v.extend(self.set.iter().cloned());
        v
    }
}

/// `--log-format` (log.format): how `serve`, `edge` and `demo` write their log on stderr.
#[derive(clap::Args, Clone, Default)]
struct LogArgs {
    /// Log lines as text (default) or as one JSON object per line (log.format).
    #[arg(long = "log-format", value_name = "FORMAT", value_enum)]
    log_format: Option<LogFormatArg>,
}

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
enum LogFormatArg {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run a relay (the central relay by default).
    Serve {
        /// Configuration file (TOML); without it the embedded defaults are used.
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[command(flatten)]
        overrides: Overrides,
        #[command(flatten)]
        log: LogArgs,
    },
    /// Start a relay with one conference and a built-in test source, and print the viewer link.
    Demo {
        #[command(flatten)]
        overrides: Overrides,
        /// Write the demo's URLs and tokens as JSON to this file once the relay accepts requests.
        #[arg(long, value_name = "PATH")]
        info_file: Option<PathBuf>,
        /// Do not start the built-in source (publish with OBS, a browser or a test instead).
        #[arg(long)]
        no_source: bool,
        /// Keyframe interval of the built-in source, in seconds.
        #[arg(long, value_name = "SECS", default_value_t = 2.0)]
        keyframe_interval: f64,
        /// Make the built-in source send three simulcast layers by RID, as a browser does:
        /// "q" 320x180, "h" 640x360 and "f" 1280x720.
        #[arg(long)]
        simulcast: bool,
        #[command(flatten)]
        source: SourceFlags,
        #[command(flatten)]
        log: LogArgs,
    },
    /// Run an edge relay: a viewer of its parent (the central or another edge) that serves
    /// the parent's conferences to its own points.
    Edge {
        /// The parent relay's base URL (upstream.parent).
        #[arg(long, value_name = "URL")]
        parent: Option<String>,
        /// The relay credential the central issued (upstream.credential).
        #[arg(long, value_name = "TOKEN", env = "HALLCAST_RELAY_CREDENTIAL")]
        credential: Option<String>,
        /// Where to go when the parent is gone, in order (upstream.fallbacks); repeatable.
        #[arg(long = "fallback", value_name = "URL")]
        fallbacks: Vec<String>,
        /// Extra CA certificates (PEM) trusted for an https parent (upstream.ca_file).
        #[arg(long, value_name = "PEM")]
        ca_file: Option<PathBuf>,
        /// This edge's name in the tree and the attendance report (upstream.name).
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        /// Write the edge's addresses as JSON to this file once it accepts requests
        /// (`http_base`, `media_udp`, `media_udp_shards`, `name`, `parent`).
        #[arg(long, value_name = "PATH")]
        info_file: Option<PathBuf>,
        /// Configuration file (TOML); without it the embedded defaults are used.
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[command(flatten)]
        overrides: Overrides,
        #[command(flatten)]
        log: LogArgs,
    },
    #[command(flatten)]
    Attendance(attendance_cli::AttendanceCmd),
    /// Read a password on stdin and print its argon2id hash (a PHC string) for
    /// `[[access.accounts]] password_hash`.
    HashPassword,
    /// Check a configuration file: prints `FILE: ok (central|edge)` and exits 0, or prints
    /// each problem as `FILE:LINE:COL: key.path: message` on stderr and exits 1.
    Validate {
        #[arg(long, short)]
        config: PathBuf,
        #[command(flatten)]
        overrides: Overrides,
        /// Also print the effective configuration (TOML, every key) after the `ok` line.
        #[arg(long)]
        print: bool,
    },
}

/// Whether the log is JSON (set once, when logging is installed): a fatal error is then
/// logged as a JSON line too, so every line on stderr parses.
static JSON_LOG: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

/// Installs the log subscriber on stderr: the relay commands call it once their
/// configuration is read (the flag wins over `log.format`), every other command at start.
/// The level filter is `HALLCAST_LOG` (default `info`, the WebRTC stacks at `warn`).
fn init_logging(format: LogFormat) {
    if JSON_LOG.set(format == LogFormat::Json).is_err() {
        return;
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("HALLCAST_LOG").unwrap_or_else(|_| {
        // srt-protocol logs every datagram it cannot parse at warn: the SRT ingest counts them
        // in lines of its own instead.
        tracing_subscriber::EnvFilter::new(
            "info,str0m=warn,webrtc=warn,rtc=warn,srt_protocol=error,srt_tokio=error",
        )
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        // One object per line: timestamp, level, target, message and the event's fields at
        // the top level (flattened), and the spans it happened in.
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// The log format of a relay command: `--log-format`, else the configuration's (text when
/// the configuration could not be read: its error is then printed in that format).
fn log_format(flag: &LogArgs, config: Option<&Config>) -> LogFormat {
    match flag.log_format {
        Some(LogFormatArg::Json) => LogFormat::Json,
        Some(LogFormatArg::Text) => LogFormat::Text,
        None => config.map_or(LogFormat::Text, |c| c.log.format),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Validate {
        config,
        overrides,
        print,
    } = &cli.command
    {
        return validate(config, &overrides.to_list(), *print);
    }
    if !matches!(
        cli.command,
        Command::Serve { .. } | Command::Edge { .. } | Command::Demo { .. }
    ) {
        init_logging(LogFormat::Text);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if JSON_LOG.get() == Some(&true) => {
            tracing::error!(error = format!("{e:#}"), "exiting on an error");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve {
            config,
            overrides,
            log,
        } => {
            let config = Config::load(config.as_deref(), &overrides.to_list());
            init_logging(log_format(&log, config.as_ref().ok()));
            let mut config = config?;
            let srt = bind_srt(&mut config).await?;
            let relay = Relay::start(config).await?;
            start_ingest(&relay).await?;
            serve_srt(&relay, srt).await?;
            info!("relay ready on {}", relay.base_url);
            relay.run_until_signal().await
        }
        Command::Edge {
            parent,
            credential,
            fallbacks,
            ca_file,
            name,
            info_file,
            config,
            overrides,
            log,
        } => {
            let mut list = overrides.to_list();
            let quoted = |s: &str| toml_string(s);
            if let Some(p) = parent {
                list.push(format!("upstream.parent={}", quoted(&p)));
            }
            if let Some(c) = credential {
                list.push(format!("upstream.credential={}", quoted(&c)));
            }
            if !fallbacks.is_empty() {
                let v: Vec<String> = fallbacks.iter().map(|f| quoted(f)).collect();
                list.push(format!("upstream.fallbacks=[{}]", v.join(",")));
            }
            if let Some(f) = ca_file {
                list.push(format!(
                    "upstream.ca_file={}",
                    quoted(&f.display().to_string())
                ));
            }
            if let Some(n) = name {
                list.push(format!("upstream.name={}", quoted(&n)));
            }
            let config = Config::load(config.as_deref(), &list);
            init_logging(log_format(&log, config.as_ref().ok()));
            let config = config?;
            if config.upstream.parent.is_empty() {
                anyhow::bail!(
                    "an edge needs its parent: --parent URL (or upstream.parent in the config file)"
                );
            }
            for (key, on) in [
                (
                    "ingest.rtmp",
                    !matches!(config.ingest.rtmp_addr(), Ok(None)),
                ),
                ("ingest.srt", !matches!(config.ingest.srt_addr(), Ok(None))),
            ] {
                if on {
                    warn!(
                        "{key} is ignored on an edge: it serves its parent's conferences; set it on the central"
                    );
                }
            }
            let relay = Relay::start(config).await?;
            info!("edge relay ready on {}", relay.base_url);
            if let Some(path) = &info_file {
                let info = serde_json::json!({
                    "name": relay.state.tree.name,
                    "http_base": relay.base_url,
                    "parent": relay.state.config.upstream.parent,
                    "media_udp": relay.engine.local_addr().to_string(),
                    "media_udp_shards": relay.engine.udp_addrs().iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                });
                write_info(path, &info)?;
            }
            relay.run_until_signal().await
        }
        Command::Validate { .. } => unreachable!("main runs `validate` without the runtime"),
        Command::Attendance(cmd) => attendance_cli::run(cmd).await,
        Command::HashPassword => {
            use std::io::{IsTerminal, Read};
            if std::io::stdin().is_terminal() {
                eprintln!("Nhập mật khẩu rồi Enter / type the password, then Enter:");
            }
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read the password from stdin")?;
            // One line: the password without its line ending (a password may contain spaces).
            let password = text.lines().next().unwrap_or("");
            if password.is_empty() {
                anyhow::bail!("empty password on stdin");
            }
            let hash = hallcast_server::access::hash_password(password)
                .map_err(|e| anyhow::anyhow!("cannot hash the password: {e}"))?;
            println!("{hash}");
            Ok(())
        }
        Command::Demo {
            overrides,
            info_file,
            no_source,
            keyframe_interval,
            simulcast,
            source,
            log,
        } => {
            demo(
                overrides,
                info_file,
                no_source,
                keyframe_interval,
                simulcast,
                source,
                log,
            )
            .await
        }
    }
}

/// `hallcast validate`: the configuration crate's checks, and the console accounts' password
/// hashes (which the server crate parses), each problem on its own line of stderr.
fn validate(path: &std::path::Path, overrides: &[String], print: bool) -> ExitCode {
    let file = path.display().to_string();
    let problems = match Config::load(Some(path), overrides) {
        Ok(config) => {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let problems: Vec<hallcast_config::Problem> = config
                .access
                .accounts
                .iter()
                .enumerate()
                .filter_map(|(i, account)| {
                    let message =
                        hallcast_server::access::validate_accounts(std::slice::from_ref(account))
                            .err()?;
                    let key = format!("access.accounts[{i}].password_hash");
                    Some(hallcast_config::Problem {
                        at: hallcast_config::locate(&text, &key),
                        key,
                        message,
                    })
                })
                .chain(
                    // Certificate, key and CA files: read and parsed as the relay would.
                    hallcast_server::tls::check_files(&config)
                        .into_iter()
                        .map(|e| hallcast_config::Problem {
                            at: hallcast_config::locate(&text, e.key),
                            key: e.key.to_string(),
                            message: format!("{}: {}", e.path.display(), e.message),
                        }),
                )
                .collect();
            if problems.is_empty() {
                let role = if config.is_edge() { "edge" } else { "central" };
                println!("{file}: ok ({role})");
                if print {
                    print!("{}", config.to_toml());
                }
                return ExitCode::SUCCESS;
            }
            problems
        }
        Err(hallcast_config::ConfigError::Invalid { problems, .. }) => problems,
        Err(hallcast_config::ConfigError::Read { source, .. }) => {
            eprintln!("{file}: cannot read: {source}");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("{file}: {e}");
            return ExitCode::FAILURE;
        }
    };
    for p in &problems {
        eprintln!("{}", p.in_file(&file));
    }
    ExitCode::FAILURE
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The relay credential of the central: the configured one, or one generated once and kept
/// in the data directory (mode 0600).
fn central_relay_credential(config: &Config) -> anyhow::Result<String> {
    if !config.relay.credential.is_empty() {
        return Ok(config.relay.credential.clone());
    }
    let path = config.data.dir.join("relay-credential");
    match std::fs::read_to_string(&path) {
        Ok(t) if t.trim().len() >= 16 => Ok(t.trim().to_string()),
        Ok(_) => anyhow::bail!(
            "{} holds no usable relay credential (16 characters or more)",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let token = random_token(24);
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            f.write_all(token.as_bytes())?;
            f.sync_all()?;
            Ok(token)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// The node's name in the tree: configured, or the host and port of its public URL.
fn node_name(config: &Config, is_edge: bool) -> String {
    if !config.upstream.name.is_empty() {
        return config.upstream.name.clone();
    }
    if !is_edge {
        return "central".into();
    }
    let url = config.public_url();
    url.split("://")
        .nth(1)
        .unwrap_or(&url)
        .trim_end_matches('/')
        .to_string()
}

/// The central's join-link keys: its ledger's public key and revocations.
struct LedgerJoinKeys(Ledger);

impl hallcast_server::tree::JoinKeys for LedgerJoinKeys {
    fn public_key(&self) -> String {
        self.0.join_public_key()
    }
    fn revocations(&self) -> Vec<hallcast_server::tree::Revocation> {
        self.0
            .token_generations()
            .into_iter()
            .map(|(c, p, g)| hallcast_server::tree::Revocation {
                conference: c.into_string(),
                point: p.into_string(),
                generation: g,
            })
            .collect()
    }
}

/// A running relay: HTTP server + media engine + attendance ledger.
struct Relay {
    base_url: String,
    /// The credential child relays present here.
    relay_credential: String,
    engine: Engine,
    ledger: Ledger,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    state: Arc<AppState>,
    /// The whole HTTP surface (in-process publishers, the demo's built-in source and the
    /// ingest gateway, reach it over a loopback listener: see `loopback_http`).
    app: axum::Router,
    /// The RTMP ingest's server URL, for the consoles (set by `start_ingest`).
    rtmp_server: Arc<std::sync::OnceLock<String>>,
    /// On an edge: its loop (to tell the parent it drains) and its outbox's counters (to
    /// deliver the last attendance events before the exit).
    edge: Option<(Arc<Edge>, Arc<hallcast_server::outbox::OutboxStats>)>,
    /// SIGTERM's and SIGINT's streams, taken before the HTTP server starts: a signal that
    /// comes as soon as `/readyz` answers drains the relay instead of killing it.
    signals: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

/// Opens the attendance ledger the configuration names (SQLite in the data dir by default).
async fn open_ledger(config: &Config) -> anyhow::Result<Ledger> {
    std::fs::create_dir_all(&config.data.dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            config.data.dir.display()
        )
    })?;
    let secret = if config.admin.token_secret.is_empty() {
        Secret::load_or_create(&config.data.dir.join("join-secret"))?
    } else {
        Secret::from_bytes(config.admin.token_secret.as_bytes().to_vec())?
    };
    let store = if config.data.database_url.is_empty() {
        StoreConfig::sqlite_in(&config.data.dir)
    } else {
        StoreConfig::Postgres {
            url: config.data.database_url.clone(),
            schema: None,
        }
    };
    let mut ledger_config = LedgerConfig::new(store, secret);
    // Each relay's events carry its name, so the central's report says which relay served
    // each point.
    ledger_config.node = node_name(config, !config.upstream.parent.is_empty());
    let ledger = Ledger::open(ledger_config)
        .await
        .context("cannot open the attendance ledger")?;
    Ok(ledger)
}

impl Relay {
    async fn start(mut config: Config) -> anyhow::Result<Relay> {
        use tokio::signal::unix::{SignalKind, signal};
        let signals = Some((
            signal(SignalKind::terminate())?,
            signal(SignalKind::interrupt())?,
        ));
        let listener = tokio::net::TcpListener::bind(config.http.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.http.listen))?;
        config.http.listen = listener.local_addr()?;
        // HTTPS: the certificate and key, and an https parent's extra CAs, are read now, so a
        // bad file stops the start with its key named.
        let tls = if config.http.tls() {
            let (server_config, cert) =
                hallcast_server::tls::server_config(&config.http.tls_cert, &config.http.tls_key)
                    .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
            spawn_cert_reload_on_sighup(cert)?;
            Some(Arc::new(server_config))
        } else {
            None
        };
        let parent_client = hallcast_server::tls::parent_client(&config.upstream.ca_file)
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        let redirect = if config.http.redirect_from.is_empty() {
            None
        } else {
            let addr: std::net::SocketAddr = config
                .http
                .redirect_from
                .parse()
                .context("http.redirect_from")?;
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (http.redirect_from)"))?;
            let bound = l.local_addr()?;
            config.http.redirect_from = bound.to_string();
            Some(l)
        };
        if config.admin.token.is_empty() {
            config.admin.token = random_token(16);
            info!(admin_token = %config.admin.token, "no admin token configured; generated one for this run");
        }
        hallcast_server::access::validate_accounts(&config.access.accounts)
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        let ledger = open_ledger(&config).await?;
        // An edge with [[conferences]] is refused by the configuration's checks.
        let is_edge = config.is_edge();
        let relay_credential = if is_edge {
            if config.relay.credential.is_empty() {
                config.upstream.credential.clone()
            } else {
                config.relay.credential.clone()
            }
        } else {
            central_relay_credential(&config)?
        };
        // The conference registry: seeded by the file's [[conferences]], kept in the ledger,
        // changed by the admin API and the CLI; ending a conference ends its sessions.
        let registry = Arc::new(Registry::new(ledger.clone()));
        // Edges do not record: the central records each broadcast where the encoder publishes
        // (an edge's copy is the same media, pulled).
        let recorder = if config.recording.enabled && !is_edge {
            let names = registry.clone();
            let recorder = hallcast_record::Recorder::spawn(
                hallcast_record::RecorderConfig {
                    dir: config.data.dir.join("recordings"),
                    max_bytes: config.recording.max_bytes,
                    max_age: (config.recording.max_age_days > 0).then(|| {
                        Duration::from_secs(u64::from(config.recording.max_age_days) * 86_400)
                    }),
                    // About 10 s of a 1080p broadcast's packets.
                    capacity: 16_384,
                },
                Box::new(move |id: &str| names.get(id).map(|c| c.title.clone())),
            )
            .with_context(|| {
                format!(
                    "cannot create the recordings directory in {}",
                    config.data.dir.display()
                )
            })?;
            Some(Arc::new(recorder))
        } else {
            None
        };
        let (tx, rx) = tokio::sync::mpsc::channel(65_536);
        let engine = Engine::start(
            EngineConfig {
                bind: config.media.udp,
                public_ips: config.media.public_ips.clone(),
                session_timeout: Duration::from_secs(config.media.session_timeout_secs.max(1)),
                gso: config.media.gso,
                threads: config.media.threads,
                adaptation: config
                    .media
                    .adaptation
                    .then_some(config.media.start_bitrate_kbps.max(50) * 1000),
                tcp: config.media.tcp,
                record: recorder.as_ref().map(|r| r.sender()),
                realtime_priority: config.media.realtime_priority,
                ..EngineConfig::default()
            },
            tx,
        )
        .with_context(|| format!("cannot open the media port {}", config.media.udp))?;
        let base_url = config.public_url();
        let config = Arc::new(config);
        registry
            .seed(&config.conferences)
            .await
            .context("cannot load the conference registry")?;
        {
            let engine = engine.clone();
            registry.set_on_end(Box::new(move |conference: &str| {
                let engine = engine.clone();
                let conference = conference.to_string();
                tokio::spawn(async move {
                    match engine.end_conference(&conference).await {
                        Ok(n) => info!(%conference, n_sessions = n, "conference ended"),
                        Err(e) => warn!(%conference, "ending the conference's sessions: {e}"),
                    }
                });
            }));
        }
        hallcast_server::registry::spawn_refresh(registry.clone());
        let tree = Arc::new(Tree::new(
            node_name(&config, is_edge),
            base_url.clone(),
            relay_credential.clone(),
        ));
        let edge_keys = Arc::new(EdgeKeys::default());
        let outbox_stats = Arc::new(hallcast_server::outbox::OutboxStats::default());
        let edge_keys_for_api = edge_keys.clone();
        let viewer_auth: Box<dyn hallcast_server::ViewerAuth> = if is_edge {
            tree.set_keys(edge_keys.clone());
            Box::new(EdgeViewerAuth(edge_keys.clone()))
        } else {
            tree.set_keys(Arc::new(LedgerJoinKeys(ledger.clone())));
            spawn_point_orgs(ledger.clone(), tree.clone());
            Box::new(LedgerViewerAuth {
                ledger: ledger.clone(),
            })
        };
        let state = AppState::new(
            config.clone(),
            engine.clone(),
            registry.clone(),
            viewer_auth,
            tree,
        );
        if let Some(r) = &recorder {
            let _ = state.recorder.set(r.clone());
        }
        let ledger_hook: Arc<dyn hallcast_server::EventHook> =
            Arc::new(LedgerHook::new(ledger.sink()));
        let mut edge_parts = None;
        let hook: Arc<dyn hallcast_server::EventHook> = if is_edge {
            let (edge, upstream) = Edge::new(state.clone(), edge_keys, &config.upstream);
            edge_parts = Some((edge.clone(), outbox_stats.clone()));
            let _ = state.demand.set(edge.clone());
            hallcast_server::outbox::spawn_outbox_with_client(
                ledger.clone(),
                config.data.dir.join("outbox-cursor"),
                upstream,
                outbox_stats.clone(),
                parent_client,
            );
            edge.spawn();
            Arc::new(Hooks(vec![ledger_hook, Arc::new(EdgeHook(edge))]))
        } else {
            ledger_hook
        };
        hallcast_server::spawn_event_pump(state.clone(), rx, Some(hook));
        {
            let ledger = ledger.clone();
            let outbox = is_edge.then_some(outbox_stats);
            let _ = state.extra_metrics.set(Box::new(move |out: &mut String| {
                hallcast_server::attendance::write_ledger_metrics(&ledger, out);
                if let Some(o) = &outbox {
                    hallcast_server::outbox::write_outbox_metrics(o, out);
                }
            }));
        }
        let rtmp_server: Arc<std::sync::OnceLock<String>> = Arc::default();
        let mut ctx =
            AttendanceCtx::new(ledger.clone(), config.admin.token.clone(), base_url.clone())
                .with_rtmp_server(rtmp_server.clone())
                .with_registry(registry)
                .with_access(state.access.clone())
                .with_events(state.events.clone());
        if let Some(r) = &recorder {
            ctx = ctx.with_recorder(r.clone());
        }
        // Bound before the relay started (`bind_srt`): the port is known, 0 never stays.
        ctx.srt_addr = config.ingest.srt_addr().ok().flatten();
        if !is_edge {
            // Roll calls still running when the relay restarted reach the pages again.
            let ctx = ctx.clone();
            tokio::spawn(async move {
                match hallcast_server::attendance::restore_running_roll_calls(&ctx).await {
                    Ok(0) => {}
                    Ok(n) => info!(n_rollcalls = n, "roll calls still running announced again"),
                    Err(e) => warn!("reading the running roll calls: {e}"),
                }
            });
        }
        if is_edge {
            let keys = edge_keys_for_api.clone();
            ctx.join_verifier = Some(hallcast_server::attendance::JoinVerifier(Arc::new(
                move |token: &str| keys.claims(token),
            )));
        }
        let board = hallcast_server::board::BoardCtx::new(state.clone(), ctx.clone());
        board.set_alert_source(hallcast_server::preflight::PreflightAlerts::spawn(
            state.clone(),
        ));
        let attendance = hallcast_server::attendance::router(ctx.clone())
            .merge(hallcast_server::board::router(board))
            .merge(hallcast_server::attendance::relay_router(
                ctx,
                relay_credential.clone().into(),
            ));
        let app = hallcast_server::app(state.clone(), attendance);
        let app_for_demo = app.clone();
        if let Some(l) = redirect {
            let redirect = hallcast_server::tls::redirect_service(&config);
            info!(from = %config.http.redirect_from, to = %base_url, "redirecting plain HTTP to https");
            tokio::spawn(async move {
                if let Err(e) = axum::serve(l, redirect.into_make_service()).await {
                    warn!("the HTTP→HTTPS redirect listener stopped: {e}");
                }
            });
        }
        let limiter = state.limits.clone();
        let server = match tls {
            Some(tls) => {
                hallcast_server::tls::warn_if_public_url_is_http(&config);
                tokio::spawn(hallcast_server::tls::serve_tls(listener, app, tls, limiter))
            }
            None => tokio::spawn(hallcast_server::limits::serve(listener, app, limiter)),
        };
        Ok(Relay {
            base_url,
            relay_credential,
            engine,
            ledger,
            server,
            state,
            app: app_for_demo,
            edge: edge_parts,
            rtmp_server,
            signals,
        })
    }

    /// Runs until a signal. SIGINT (Ctrl-C) ends every session at once. SIGTERM drains (see
    /// `hallcast_server::drain`): new sessions refused, `/readyz` 503, the parent told, the
    /// viewers told to move; the relay exits once no viewer is left or after
    /// `http.drain_seconds`, and a second SIGTERM or a SIGINT during the drain stops it at
    /// once. Either way the sessions still here end as a shutdown (their leaves reach the
    /// ledger) and the exit status is 0.
    async fn run_until_signal(mut self) -> anyhow::Result<()> {
        let (mut term, mut int) = self
            .signals
            .take()
            .context("the relay's signal streams were already taken")?;
        let server = &mut self.server;
        let drain = tokio::select! {
            _ = int.recv() => {
                info!("interrupted; ending sessions");
                false
            }
            _ = term.recv() => true,
            r = server => {
                r??;
                anyhow::bail!("the HTTP server stopped");
            }
        };
        if drain {
            self.drain(&mut term, &mut int).await;
        }
        if let Some((edge, _)) = &self.edge {
            // The parent sees this edge leave now, not when its pulls time out.
            edge.release_pulls(Duration::from_secs(1)).await;
        }
        self.engine.shutdown().await;
        if let Some(r) = self.state.recorder.get().cloned() {
            // The broadcasts just ended: their files get their cues and duration.
            let _ = tokio::task::spawn_blocking(move || r.stop(Duration::from_secs(10))).await;
        }
        // Let the event pump hand the last session ends to the ledger, then make them durable.
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let Some((_, stats)) = &self.edge {
            // The leaves just written go up to the parent before the exit (the central's report
            // must not keep a point present here that has moved on).
            outbox_caught_up(&self.ledger, stats, Duration::from_secs(5)).await;
        }
        if let Err(e) = self.ledger.close().await {
            warn!("closing the ledger: {e}");
        }
        drop(self.state);
        Ok(())
    }

    /// The graceful drain after a first SIGTERM; returns when the relay should stop.
    async fn drain(
        &self,
        term: &mut tokio::signal::unix::Signal,
        int: &mut tokio::signal::unix::Signal,
    ) {
        use hallcast_server::drain::{DrainNotice, ExitReason, Step};
        let timeout = Duration::from_secs(self.state.config.http.drain_seconds);
        if timeout.is_zero() {
            info!("terminated; ending sessions (http.drain_seconds = 0: no drain)");
            return;
        }
        if self.edge.is_none() && !self.state.tree.has_live_edge(std::time::Instant::now()) {
            // A central with no live edge below it: its viewers have nowhere to move, and
            // waiting would only delay the restart they are waiting for.
            info!(
                viewers = viewer_sessions(&self.engine).await,
                "terminated; no live edge relay to move the viewers to: ending sessions now"
            );
            return;
        }
        let clock = self.state.drain.start(std::time::Instant::now(), timeout);
        info!(
            drain_seconds = timeout.as_secs(),
            viewers = viewer_sessions(&self.engine).await,
            "terminated; draining: new sessions refused, viewers told to move (SIGTERM again or SIGINT: stop now)"
        );
        let own = self.state.tree.url.trim_end_matches('/').to_string();
        let (url, parent) = match &self.edge {
            Some((edge, _)) => {
                // The parent first, so that the route lookups the viewers make next never
                // name this edge.
                if !edge.tell_parent_draining(Duration::from_secs(2)).await {
                    warn!(
                        "the parent relay did not acknowledge the drain within 2 s; telling the viewers anyway"
                    );
                }
                let parent = edge.parent_url();
                let home = self.state.tree.root();
                let home = home.trim_end_matches('/');
                let url = if home.is_empty() || home == own {
                    parent.clone()
                } else {
                    home.to_string()
                };
                (Some(url), Some(parent))
            }
            None => (None, None),
        };
        let deadline_ms = hallcast_ledger::now_ms() + timeout.as_millis() as i64;
        self.state.drain.notify(DrainNotice {
            relay: own,
            url,
            home: self.state.tree.root(),
            parent,
            deadline_ms,
        });
        loop {
            let viewers = viewer_sessions(&self.engine).await;
            match clock.step(std::time::Instant::now(), viewers) {
                Step::Exit(ExitReason::Empty) => {
                    info!(
                        after_ms = clock.started.elapsed().as_millis() as u64,
                        "drained: no viewer left; stopping"
                    );
                    return;
                }
                Step::Exit(ExitReason::Timeout) => {
                    info!(
                        viewers,
                        "drain timeout (http.drain_seconds); ending the remaining sessions"
                    );
                    return;
                }
                Step::Wait(d) => tokio::select! {
                    _ = tokio::time::sleep(d) => {}
                    _ = term.recv() => {
                        info!(viewers, "terminated again; ending the remaining sessions now");
                        return;
                    }
                    _ = int.recv() => {
                        info!(viewers, "interrupted; ending the remaining sessions now");
                        return;
                    }
                },
            }
        }
    }
}

/// Viewer sessions on this relay: points and child relays (never the hall's publisher nor this
/// edge's own pulls). 0 when the engine gives no snapshot.
async fn viewer_sessions(engine: &Engine) -> usize {
    use hallcast_rtc::Role;
    engine.snapshot().await.map_or(0, |s| {
        s.sessions
            .iter()
            .filter(|s| matches!(s.role, Role::Subscriber | Role::Relay))
            .count()
    })
}

/// Waits (at most `timeout`) until the edge's outbox has delivered every point-level event of
/// the local ledger to the parent.
async fn outbox_caught_up(
    ledger: &Ledger,
    stats: &hallcast_server::outbox::OutboxStats,
    timeout: Duration,
) {
    use hallcast_server::outbox::{MAX_BATCH, select_batch};
    let t0 = std::time::Instant::now();
    if let Err(e) = ledger.flush().await {
        warn!("flushing the ledger: {e}");
    }
    loop {
        let cursor = stats.cursor.load(std::sync::atomic::Ordering::Relaxed);
        let pending = match ledger.events_after(cursor, MAX_BATCH).await {
            Ok(page) => select_batch(cursor, page).map_or(0, |b| b.events.len()),
            Err(_) => 0,
        };
        if pending == 0 {
            return;
        }
        if t0.elapsed() >= timeout {
            warn!(
                pending,
                "attendance events not yet delivered to the parent relay; they go up when this edge runs again"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// SIGHUP: read `http.tls_cert` and `http.tls_key` again (a renewed certificate); new
/// connections get it, open ones keep theirs. A file that does not load keeps the old one.
fn spawn_cert_reload_on_sighup(cert: Arc<hallcast_server::tls::ServerCert>) -> anyhow::Result<()> {
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot listen for SIGHUP")?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            match cert.reload() {
                Ok(()) => info!("SIGHUP: TLS certificate reloaded"),
                Err(e) => warn!("SIGHUP: {e}; the certificate in use stays"),
            }
        }
    });
    Ok(())
}

/// Keeps the tree's point → organisation map (for redirects) in step with the registry.
fn spawn_point_orgs(ledger: Ledger, tree: Arc<Tree>) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(2));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            match ledger.points().await {
                Ok(points) => tree.set_point_orgs(
                    points
                        .into_iter()
                        .map(|p| (p.id.into_string(), p.org.into_string()))
                        .collect(),
                ),
                Err(e) => warn!("reading the points for redirects: {e}"),
            }
        }
    });
}

/// Writes an info file atomically (readers never see half of it).
fn write_info(path: &std::path::Path, info: &serde_json::Value) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(info)?)?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

fn random_token(n_bytes: usize) -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..n_bytes)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect()
}

/// How the demo's built-in source encodes: the defaults are a good hall encoder; the others
/// make it behave as encoders that get it wrong (the pre-flight checks' tests).
#[derive(Debug, Clone, clap::Args)]
struct SourceFlags {
    /// Video bitrate of the built-in source (of its top layer with --simulcast), in kbit/s.
    #[arg(long, value_name = "KBPS", default_value_t = 2000)]
    source_bitrate: u32,
    /// Picture size of the built-in source (of its top layer with --simulcast).
    #[arg(long, value_name = "WxH", default_value = "1280x720", value_parser = parse_size)]
    source_size: (u32, u32),
    /// What the built-in source's audio carries: a tone, digital silence, or no audio track.
    #[arg(long, value_enum, default_value_t = SourceAudio::Tone)]
    source_audio: SourceAudio,
    /// Let the built-in source's encoder drop frames to hold --source-bitrate (as an encoder
    /// set to a bitrate too low for its picture does).
    #[arg(long)]
    source_skip_frames: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum SourceAudio {
    Tone,
    Silence,
    None,
}

fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("{s:?} is not WIDTHxHEIGHT"))?;
    let parse = |v: &str| v.trim().parse::<u32>().map_err(|e| format!("{s:?}: {e}"));
    Ok((parse(w)?, parse(h)?))
}

async fn demo(
    overrides: Overrides,
    info_file: Option<PathBuf>,
    no_source: bool,
    keyframe_interval: f64,
    simulcast: bool,
    source: SourceFlags,
    log: LogArgs,
) -> anyhow::Result<()> {
    let mut overrides = overrides;
    if overrides.data_dir.is_none() && !overrides.set.iter().any(|s| s.starts_with("data.dir=")) {
        // Each demo run keeps its own ledger, so several demos (and tests) can run at once.
        overrides.data_dir =
            Some(std::env::temp_dir().join(format!("hallcast-demo-{}", std::process::id())));
    }
    let rtmp_given = overrides.set.iter().any(|s| s.starts_with("ingest.rtmp="));
    let srt_given = overrides.set.iter().any(|s| s.starts_with("ingest.srt="));
    let config = Config::load(None, &overrides.to_list());
    init_logging(log_format(&log, config.as_ref().ok()));
    let mut config = config?;
    if !rtmp_given {
        // The demo takes RTMP too, on loopback at a port of the system's choosing (in the
        // info file and printed); `--set ingest.rtmp=off` turns it off, an address moves it.
        config.ingest.rtmp = "127.0.0.1:0".into();
    }
    if !srt_given {
        // And SRT, the same way (`--set ingest.srt=off`, or an address).
        config.ingest.srt = "127.0.0.1:0".into();
    }
    let data_dir = config.data.dir.clone();
    let conference = "hoi-nghi-demo".to_string();
    let stream_key = random_token(16);
    config.conferences = vec![ConferenceConfig {
        id: conference.clone(),
        title: "Hội nghị demo — hallcast".into(),
        stream_key: stream_key.clone(),
        viewer_token: String::new(),
    }];
    // The consoles' demo accounts: one random password for this run, never printed; the printed
    // links sign in by tickets that live as long as the run.
    let demo_password = random_token(16);
    let demo_hash = hallcast_server::access::hash_password(&demo_password)
        .map_err(|e| anyhow::anyhow!("cannot hash the demo password: {e}"))?;
    for (name, role) in [
        ("operator", hallcast_config::AccountRole::Operator),
        ("admin", hallcast_config::AccountRole::Admin),
    ] {
        config.access.accounts.retain(|a| a.name != name);
        config.access.accounts.push(hallcast_config::Account {
            name: name.into(),
            role,
            password_hash: demo_hash.clone(),
        });
    }
    config.validate()?;
    let public_url_given = !config.http.public_url.is_empty();
    let srt = bind_srt(&mut config).await?;
    let mut relay = Relay::start(config).await?;
    if !public_url_given {
        relay.base_url = relay.state.config.public_url();
    }
    // A demo organisation and connection point, so the demo viewer is accounted like a real
    // point: its link carries the point's signed join token.
    let org = OrgId::parse("don-vi-demo")?;
    let point = PointId::parse("diem-cau-demo")?;
    relay
        .ledger
        .upsert_organisation(Organisation {
            id: org.clone(),
            name: "Đơn vị demo".into(),
        })
        .await?;
    relay
        .ledger
        .upsert_point(PointInfo {
            id: point.clone(),
            org,
            name: "Điểm cầu demo".into(),
            location: "Phòng họp demo".into(),
            expected_headcount: Some(20),
        })
        .await?;
    let expires = hallcast_ledger::now_ms() / 1000 + 7 * 24 * 3600;
    let viewer_token =
        relay
            .ledger
            .issue_token(&ConferenceId::parse(&conference)?, &point, expires);
    let base = relay.base_url.clone();
    let whip_url = format!("{base}/whip/{conference}");
    let whep_url = format!("{base}/whep/{conference}");
    let viewer_url = format!("{base}/watch/{conference}?token={viewer_token}");
    let ticket_ttl = Duration::from_secs(7 * 24 * 3600);
    let signed_in = |name: &str, next: &str| -> anyhow::Result<String> {
        let ticket = relay
            .state
            .access
            .issue_ticket(name, ticket_ttl)
            .context("the demo account is missing")?;
        Ok(format!("{base}/login/ticket/{ticket}?next={next}"))
    };
    let operator_url = signed_in(
        "operator",
        &format!("/operator%3Fconference%3D{conference}"),
    )?;
    let admin_url = signed_in("admin", "/admin")?;
    let rtmp = start_ingest(&relay).await?;
    // The encoder's URL, complete with the key (ffmpeg takes it as one; OBS and vMix as
    // server `rtmp://HOST:PORT/{conference}` + stream key).
    let rtmp_url = rtmp.map(|a| {
        let host = if a.ip().is_unspecified() {
            std::net::SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), a.port())
        } else {
            a
        };
        format!("rtmp://{host}/{conference}/{stream_key}")
    });
    let srt = serve_srt(&relay, srt).await?;
    // The encoder's URL, complete with the key. The streamid is not percent-encoded: ffmpeg 5
    // passes it through verbatim (newer ffmpeg decodes %XX, and nothing here needs it; the
    // relay also takes it percent-encoded).
    let srt_url = srt.map(|a| {
        format!(
            "srt://{}?streamid={}",
            loopback_if_unspecified(a),
            hallcast_ingest::streamid::format(&conference, &stream_key)
        )
    });
    let info = serde_json::json!({
        "conference": conference,
        "http_base": base,
        "whip_url": whip_url,
        "stream_key": stream_key,
        // RTMP ingest (null when off): rtmp://HOST:PORT/{conference}/{stream_key}.
        "rtmp_url": rtmp_url,
        // SRT ingest (null when off): srt://HOST:PORT?streamid=#!::r={conference},m=publish,u={stream_key}.
        "srt_url": srt_url,
        "whep_url": whep_url,
        "viewer_token": viewer_token,
        "viewer_url": viewer_url,
        "media_udp": relay.engine.local_addr().to_string(),
        "media_udp_shards": relay.engine.udp_addrs().iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        "admin_token": relay.state.config.admin.token,
        // Signed-in links to the consoles (sign-in tickets valid for this run).
        "operator_url": operator_url,
        "admin_url": admin_url,
        "relay_credential": relay.relay_credential,
        "point": point.as_str(),
        "data_dir": data_dir,
        // Whether the built-in source publishes three simulcast layers.
        "simulcast": simulcast && !no_source,
        // The plain-HTTP listener that redirects to https (http.redirect_from), if any.
        "redirect_from": relay.state.config.http.redirect_from,
    });
    if let Some(path) = &info_file {
        write_info(path, &info)?;
    }
    println!("\nhallcast demo is running.\n");
    println!(
        "  Mở liên kết này trong trình duyệt / open this link in a browser:\n\n    {viewer_url}\n"
    );
    println!("  WHIP (encoder): {whip_url}\n  stream key:     {stream_key}\n");
    if let (Some(a), Some(url)) = (rtmp, &rtmp_url) {
        println!(
            "  RTMP (OBS/vMix): server rtmp://{a}/{conference}  stream key: {stream_key}\n  RTMP (ffmpeg):   {url}\n"
        );
    }
    if let Some(url) = &srt_url {
        println!("  SRT (MPEG-TS):  {url}\n");
    }
    println!("  Bảng vận hành (đã đăng nhập) / operator console, signed in:\n    {operator_url}\n");
    println!("  Bảng quản trị (đã đăng nhập) / admin console, signed in:\n    {admin_url}\n");
    println!(
        "  Báo cáo điểm danh / attendance report:\n    hallcast report --data-dir {} --conference {conference} --format html > report.html\n",
        data_dir.display()
    );
    if !no_source {
        let opts = hallcast_client::SourceOptions {
            keyframe_interval: Duration::from_secs_f64(keyframe_interval.max(0.1)),
            label: "hallcast demo".into(),
            simulcast,
            width: source.source_size.0,
            height: source.source_size.1,
            bitrate_bps: source.source_bitrate.saturating_mul(1000),
            audio: match source.source_audio {
                SourceAudio::Tone => hallcast_client::AudioSource::Tone,
                SourceAudio::Silence => hallcast_client::AudioSource::Silence,
                SourceAudio::None => hallcast_client::AudioSource::None,
            },
            skip_frames: source.source_skip_frames,
            ..Default::default()
        };
        // The built-in source speaks plain HTTP only: with TLS on it publishes through a
        // loopback-only plain listener of this process.
        let source_url = if relay.state.config.http.tls() {
            format!("{}/whip/{conference}", loopback_http(&relay).await?)
        } else {
            whip_url
        };
        tokio::spawn(run_source(source_url, stream_key, opts));
    } else {
        println!("  (no built-in source: publish with your encoder)\n");
    }
    relay.run_until_signal().await
}

/// A loopback-only plain-HTTP listener serving this relay's whole HTTP surface, for the
/// publishers inside this process (the demo's built-in source, the ingest gateway): they
/// speak plain HTTP, and reach the relay this way whether `http.listen` speaks TLS or binds
/// an address other than loopback. Returns its base URL.
async fn loopback_http(relay: &Relay) -> anyhow::Result<String> {
    let l = tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
        .await
        .context("cannot open the loopback HTTP listener for in-process publishers")?;
    let base = format!("http://{}", l.local_addr()?);
    let app = relay.app.clone();
    let limiter = relay.state.limits.clone();
    tokio::spawn(hallcast_server::limits::serve(l, app, limiter));
    Ok(base)
}

/// `a` with 127.0.0.1 / ::1 for a wildcard address (what a local encoder dials).
fn loopback_if_unspecified(a: SocketAddr) -> SocketAddr {
    match a.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), a.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(std::net::Ipv6Addr::LOCALHOST.into(), a.port())
        }
        _ => a,
    }
}

/// Binds the SRT ingest's listener when `ingest.srt` is set, before the relay starts, and
/// writes the bound address back into the configuration (a port 0 becomes the real one, which
/// the operator API's `srt_url` then shows).
async fn bind_srt(config: &mut Config) -> anyhow::Result<Option<hallcast_ingest::SrtIngest>> {
    let addr = config
        .ingest
        .srt_addr()
        .map_err(|m| anyhow::anyhow!("invalid configuration: ingest.srt {m}"))?;
    let Some(addr) = addr else {
        return Ok(None);
    };
    let srt = hallcast_ingest::SrtIngest::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (ingest.srt, UDP)"))?;
    config.ingest.srt = srt.local_addr().to_string();
    Ok(Some(srt))
}

/// Serves the bound SRT listener: each encoder's stream is published to this relay over WHIP
/// ([`ingest_target`]). Returns its address (logged).
async fn serve_srt(
    relay: &Relay,
    srt: Option<hallcast_ingest::SrtIngest>,
) -> anyhow::Result<Option<SocketAddr>> {
    let Some(srt) = srt else {
        return Ok(None);
    };
    let target = ingest_target(relay).await?;
    let bound = srt.local_addr();
    info!(
        srt = %bound,
        "SRT ingest listening: srt://{bound}?streamid=#!::r={{conference}},m=publish,u={{stream key}} (MPEG-TS)"
    );
    tokio::spawn(srt.serve(target));
    Ok(Some(bound))
}

/// Where the in-process ingest gateways (RTMP, SRT) publish: a loopback-only plain listener
/// of their own (like [`loopback_http`], with `hallcast_server::ingest::IngestListener` on
/// every request, so the relay believes the protocol their WHIP POSTs name), with the media
/// path pinned to the relay's bound media address (loopback when it binds a wildcard), which
/// a gateway reaches even when the relay announces public IPs it cannot. The gateway's
/// refusals go to the relay's pre-flight answer ([`RelayRefusals`]).
async fn ingest_target(relay: &Relay) -> anyhow::Result<hallcast_ingest::IngestTarget> {
    let media_ip = loopback_if_unspecified(relay.engine.local_addr()).ip();
    let l = tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
        .await
        .context("cannot open the loopback HTTP listener for the ingest gateway")?;
    let base = format!("http://{}", l.local_addr()?);
    let app = hallcast_server::ingest::ingest_listener_app(relay.app.clone());
    tokio::spawn(hallcast_server::limits::serve(
        l,
        app,
        relay.state.limits.clone(),
    ));
    Ok(hallcast_ingest::IngestTarget::new(base)
        .with_media_ip(media_ip)
        .with_refusals(Arc::new(RelayRefusals(relay.state.clone()))))
}

/// The ingest gateway's refusals, kept by the relay for the conference's operator.
struct RelayRefusals(Arc<AppState>);

impl hallcast_ingest::RefusalSink for RelayRefusals {
    fn refused(&self, r: hallcast_ingest::Refusal) {
        let protocol = match r.protocol {
            hallcast_ingest::Protocol::Rtmp => hallcast_core::preflight::IngestProtocol::Rtmp,
            hallcast_ingest::Protocol::Srt => hallcast_core::preflight::IngestProtocol::Srt,
        };
        hallcast_server::ingest::record_refusal(
            &self.0,
            &r.conference,
            protocol,
            r.message_vi(),
            r.message_en(),
        );
    }
}

/// Starts the RTMP ingest gateway when `ingest.rtmp` is set: the RTMP listener, publishing
/// each encoder's stream to this relay over WHIP ([`ingest_target`]). Returns the listener's
/// bound address.
async fn start_ingest(relay: &Relay) -> anyhow::Result<Option<std::net::SocketAddr>> {
    let config = &relay.state.config;
    let addr = config
        .ingest
        .rtmp_addr()
        .map_err(|m| anyhow::anyhow!("invalid configuration: ingest.rtmp {m}"))?;
    let Some(addr) = addr else {
        return Ok(None);
    };
    let listener = hallcast_ingest::rtmp::RtmpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (ingest.rtmp)"))?;
    let bound = listener.local_addr()?;
    let target = ingest_target(relay).await?;
    info!(rtmp = %bound, "RTMP ingest listening: rtmp://{bound}/{{conference}}, the stream key as the stream name");
    // What encoders are told: the host of the relay's public URL, the listener's port.
    let host = url_host(&relay.base_url).unwrap_or("127.0.0.1");
    let _ = relay
        .rtmp_server
        .set(format!("rtmp://{host}:{}", bound.port()));
    tokio::spawn(listener.serve(target));
    Ok(Some(bound))
}

/// The host of an `http(s)://` URL (`[v6]` bracketed as written), without the port.
fn url_host(url: &str) -> Option<&str> {
    let authority = url.split_once("://")?.1.split('/').next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    if authority.starts_with('[') {
        return authority.find(']').map(|i| &authority[..=i]);
    }
    Some(authority.split(':').next().unwrap_or(authority)).filter(|h| !h.is_empty())
}

/// Keeps the built-in source publishing, republishing with backoff if it drops.
async fn run_source(whip_url: String, key: String, opts: hallcast_client::SourceOptions) {
    let mut backoff = Duration::from_millis(500);
    loop {
        match hallcast_client::publish(&whip_url, &key, opts.clone()).await {
            Ok(publisher) => {
                info!("built-in source is live");
                backoff = Duration::from_millis(500);
                publisher.closed().await;
                warn!("built-in source disconnected; republishing");
                // End the WHIP session so the relay frees the conference at
                // once; otherwise the republish would meet a 409.
                let _ = publisher.stop().await;
            }
            Err(e) => warn!("built-in source could not publish: {e:#}"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

#[cfg(test)]
mod tests {
    use super::url_host;

    #[test]
    fn the_gateway_and_the_relay_name_the_ingest_header_alike() {
        assert_eq!(
            hallcast_ingest::INGEST_HEADER,
            hallcast_server::ingest::INGEST_HEADER
        );
    }

    #[test]
    fn url_hosts_lose_their_port_and_keep_ipv6_brackets() {
        assert_eq!(url_host("http://127.0.0.1:8080"), Some("127.0.0.1"));
        assert_eq!(url_host("https://hall.example/x"), Some("hall.example"));
        assert_eq!(
            url_host("https://[2001:db8::1]:8443/"),
            Some("[2001:db8::1]")
        );
        assert_eq!(
            url_host("http://u:p@relay.example:80"),
            Some("relay.example")
        );
        assert_eq!(url_host("relay.example"), None);
    }
}
