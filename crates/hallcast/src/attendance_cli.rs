//! `hallcast points import|export`, `hallcast token`, `hallcast report`: the attendance
//! ledger from the command line (clap definitions and handlers; the binary wires them in).
//!
//! Each command opens the ledger itself (`--data-dir`, or `--database-url` for PostgreSQL),
//! so it works while the relay runs (SQLite WAL allows a second process) or without it. The
//! CLI opens the ledger as node `cli`, never as the relay's node, so it never triggers the
//! relay's crash recovery.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use hallcast_core::accounting::{ConferenceId, PointId, ReportConfig};
use hallcast_ledger::render::{self, Lang, RenderOptions};
use hallcast_ledger::{Ledger, LedgerConfig, Secret, StoreConfig, now_ms};

/// Where the ledger is, and the join-token secret.
#[derive(Debug, Clone, Args)]
pub struct LedgerArgs {
    /// Data directory: the SQLite ledger (ledger.sqlite3) and the join-token secret live here.
    #[arg(long, env = "HALLCAST_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// PostgreSQL URL (postgres://user:pass@host/db); when given, the ledger is there
    /// instead of in the data directory.
    #[arg(long, env = "HALLCAST_DATABASE_URL")]
    pub database_url: Option<String>,
    /// File holding the join-token signing secret; created with a random secret when
    /// missing. Every relay and CLI that shares a ledger must use the same secret.
    /// [default: DATA_DIR/join-secret]
    #[arg(long, env = "HALLCAST_SECRET_FILE")]
    pub secret_file: Option<PathBuf>,
}

impl LedgerArgs {
    /// The store this selects.
    pub fn store(&self) -> StoreConfig {
        match &self.database_url {
            Some(url) => StoreConfig::Postgres {
                url: url.clone(),
                schema: None,
            },
            None => StoreConfig::sqlite_in(&self.data_dir),
        }
    }

    /// The secret file path.
    pub fn secret_path(&self) -> PathBuf {
        self.secret_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("join-secret"))
    }

    async fn open(&self) -> anyhow::Result<Ledger> {
        let secret = Secret::load_or_create(&self.secret_path()).with_context(|| {
            format!(
                "reading the join-token secret {}",
                self.secret_path().display()
            )
        })?;
        let mut cfg = LedgerConfig::new(self.store(), secret);
        cfg.node = "cli".into();
        Ledger::open(cfg)
            .await
            .with_context(|| format!("opening the ledger ({})", self.store().describe()))
    }
}

/// The attendance subcommands.
#[derive(Debug, Subcommand)]
pub enum AttendanceCmd {
    /// Registry of connection points (điểm cầu) and organisations.
    Points {
        #[command(subcommand)]
        cmd: PointsCmd,
    },
    /// Join links (one signed link per connection point) as CSV or a printable page with QR codes.
    Token(TokenArgs),
    /// Attendance report (báo cáo điểm danh) of a conference.
    Report(ReportArgs),
    /// The conference registry (hội nghị): create, rename, rotate the stream key, end, reopen.
    /// A running relay on the same ledger takes the change within 2 s.
    Conference {
        #[command(subcommand)]
        cmd: ConferenceCmd,
    },
}

/// `hallcast conference …`
#[derive(Debug, Subcommand)]
pub enum ConferenceCmd {
    /// List the conferences (JSON lines).
    List {
        #[command(flatten)]
        out: ConferenceOut,
    },
    /// Create a conference (a stream key is generated unless given) or rename one.
    Create {
        /// Conference id: letters, digits, '.', '_' and '-'.
        #[arg(long)]
        id: String,
        /// Title shown to viewers.
        #[arg(long)]
        title: String,
        /// The hall encoder's stream key (at least 8 characters).
        #[arg(long)]
        stream_key: Option<String>,
        #[command(flatten)]
        out: ConferenceOut,
    },
    /// Give a conference a new stream key (generated unless given); a live broadcast goes on.
    RotateKey {
        #[arg(long)]
        id: String,
        #[arg(long)]
        stream_key: Option<String>,
        #[command(flatten)]
        out: ConferenceOut,
    },
    /// End a conference: its live sessions end and WHIP is refused until it is reopened.
    End {
        #[arg(long)]
        id: String,
        #[command(flatten)]
        out: ConferenceOut,
    },
    /// Open an ended conference again.
    Reopen {
        #[arg(long)]
        id: String,
        #[command(flatten)]
        out: ConferenceOut,
    },
}

/// Where the registry is, and the relay's public URL for the printed WHIP/WHEP URLs.
#[derive(Debug, Clone, Args)]
pub struct ConferenceOut {
    /// The relay's public base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub base_url: String,
    #[command(flatten)]
    pub ledger: LedgerArgs,
}

/// `hallcast points …`
#[derive(Debug, Subcommand)]
pub enum PointsCmd {
    /// Import a registry CSV (point_id,point_name,org_id,org_name,location,expected_headcount;
    /// UTF-8; Vietnamese headers accepted). All or nothing; existing entries are updated.
    Import {
        /// The CSV file.
        file: PathBuf,
        #[command(flatten)]
        ledger: LedgerArgs,
    },
    /// Export the registry as CSV (UTF-8 with BOM, opens correctly in Excel).
    Export {
        /// Write to this file instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
        #[command(flatten)]
        ledger: LedgerArgs,
    },
}

/// Output format of the join links.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LinkFormat {
    Csv,
    Html,
}

/// Output format of the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Csv,
    Json,
    Html,
}

/// Document language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LangArg {
    Vi,
    En,
}

impl From<LangArg> for Lang {
    fn from(l: LangArg) -> Self {
        match l {
            LangArg::Vi => Lang::Vi,
            LangArg::En => Lang::En,
        }
    }
}

/// `hallcast token …`
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// Conference id.
    #[arg(long)]
    pub conference: String,
    /// Only this connection point (default: every registered point).
    #[arg(long)]
    pub point: Option<String>,
    #[arg(long, value_enum, default_value_t = LinkFormat::Csv)]
    pub format: LinkFormat,
    /// Public base URL of the relay, as the points will reach it.
    #[arg(
        long,
        env = "HALLCAST_PUBLIC_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub base_url: String,
    /// How long the links stay valid, in hours.
    #[arg(long, default_value_t = 720)]
    pub valid_hours: u64,
    /// Language of the HTML page (its switch offers the other one).
    #[arg(long, value_enum, default_value_t = LangArg::Vi)]
    pub lang: LangArg,
    /// Write to this file instead of standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub ledger: LedgerArgs,
}

/// `hallcast report …`
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Conference id.
    #[arg(long)]
    pub conference: String,
    #[arg(long, value_enum, default_value_t = ReportFormat::Html)]
    pub format: ReportFormat,
    /// Language of the CSV headers and of the HTML page.
    #[arg(long, value_enum, default_value_t = LangArg::Vi)]
    pub lang: LangArg,
    /// Report as of this time (Unix milliseconds); default now.
    #[arg(long)]
    pub as_of_ms: Option<i64>,
    /// Reconnections within this many seconds count as one attendance.
    #[arg(long, default_value_t = 60)]
    pub grace_s: u32,
    /// UTC offset of the times shown, in minutes (Vietnam: 420).
    #[arg(long, default_value_t = 420, allow_hyphen_values = true)]
    pub utc_offset_minutes: i32,
    /// Write to this file instead of standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub ledger: LedgerArgs,
}

fn write_out(output: Option<&Path>, bytes: &[u8]) -> anyhow::Result<()> {
    match output {
        Some(p) => std::fs::write(p, bytes).with_context(|| format!("writing {}", p.display())),
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(bytes)?;
            out.flush()?;
            Ok(())
        }
    }
}

/// One conference as a JSON line: what the hall encoder and the viewers need.
fn print_conference(base_url: &str, c: &hallcast_ledger::Conference) {
    let base = base_url.trim_end_matches('/');
    let id = c.id.as_str();
    println!(
        "{}",
        serde_json::json!({
            "id": id,
            "title": c.title,
            "state": if c.ended_ms.is_some() { "ended" } else { "open" },
            "ended_ms": c.ended_ms,
            "whip_url": format!("{base}/whip/{id}"),
            "stream_key": c.stream_key,
            "whep_url": format!("{base}/whep/{id}"),
            "watch_url": format!("{base}/watch/{id}"),
        })
    );
}

async fn conference(cmd: ConferenceCmd) -> anyhow::Result<()> {
    use hallcast_server::Registry;
    let out = match &cmd {
        ConferenceCmd::List { out }
        | ConferenceCmd::Create { out, .. }
        | ConferenceCmd::RotateKey { out, .. }
        | ConferenceCmd::End { out, .. }
        | ConferenceCmd::Reopen { out, .. } => out.clone(),
    };
    let l = out.ledger.open().await?;
    let registry = Registry::new(l.clone());
    let id = |s: &str| ConferenceId::parse(s).context("--id");
    let result: anyhow::Result<Vec<std::sync::Arc<hallcast_ledger::Conference>>> = async {
        Ok(match cmd {
            ConferenceCmd::List { .. } => {
                registry.refresh().await?;
                registry.all()
            }
            ConferenceCmd::Create {
                id: i,
                title,
                stream_key,
                ..
            } => vec![
                registry
                    .create_or_rename(id(&i)?, title, stream_key)
                    .await?
                    .0,
            ],
            ConferenceCmd::RotateKey {
                id: i, stream_key, ..
            } => vec![registry.rotate_key(&id(&i)?, stream_key).await?],
            ConferenceCmd::End { id: i, .. } => vec![registry.end(&id(&i)?).await?],
            ConferenceCmd::Reopen { id: i, .. } => vec![registry.reopen(&id(&i)?).await?],
        })
    }
    .await;
    l.close().await?;
    for c in result? {
        print_conference(&out.base_url, &c);
    }
    Ok(())
}

/// Runs one attendance subcommand.
pub async fn run(cmd: AttendanceCmd) -> anyhow::Result<()> {
    match cmd {
        AttendanceCmd::Conference { cmd } => conference(cmd).await,
        AttendanceCmd::Points {
            cmd: PointsCmd::Import { file, ledger },
        } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let l = ledger.open().await?;
            let result = l.import_csv(bytes).await;
            l.close().await?;
            let s = result.with_context(|| format!("importing {}", file.display()))?;
            eprintln!(
                "Đã nhập {} điểm cầu của {} đơn vị / Imported {} points of {} organisations",
                s.n_points, s.n_organisations, s.n_points, s.n_organisations
            );
            Ok(())
        }
        AttendanceCmd::Points {
            cmd: PointsCmd::Export { output, ledger },
        } => {
            let l = ledger.open().await?;
            let csv = l.export_csv().await;
            l.close().await?;
            write_out(output.as_deref(), &csv?)
        }
        AttendanceCmd::Token(a) => {
            let conference = ConferenceId::parse(&a.conference).context("--conference")?;
            let point = a
                .point
                .as_deref()
                .map(PointId::parse)
                .transpose()
                .context("--point")?;
            if a.valid_hours == 0 {
                bail!("--valid-hours must be at least 1");
            }
            let valid = Duration::from_secs(a.valid_hours.saturating_mul(3600));
            let expires = now_ms() / 1000 + i64::try_from(valid.as_secs()).unwrap_or(i64::MAX / 2);
            let l = a.ledger.open().await?;
            let links = l
                .join_links(&conference, &a.base_url, expires, point.as_ref())
                .await;
            let title = l.conference(&conference).await.map(|c| c.map(|c| c.title));
            l.close().await?;
            let links = links?;
            if links.is_empty() {
                bail!(
                    "no connection points are registered: run `hallcast points import FILE.csv` first"
                );
            }
            let opts = RenderOptions {
                lang: a.lang.into(),
                ..RenderOptions::default()
            };
            let bytes = match a.format {
                LinkFormat::Csv => render::links_csv(&links, &opts)?,
                LinkFormat::Html => {
                    render::links_html(conference.as_str(), title?.as_deref(), &links, &opts)
                        .into_bytes()
                }
            };
            write_out(a.output.as_deref(), &bytes)
        }
        AttendanceCmd::Report(a) => {
            let conference = ConferenceId::parse(&a.conference).context("--conference")?;
            let l = a.ledger.open().await?;
            let cfg = ReportConfig {
                grace_ms: i64::from(a.grace_s) * 1000,
            };
            let report = l
                .report(&conference, a.as_of_ms.unwrap_or_else(now_ms), cfg)
                .await;
            let title = l.conference(&conference).await.map(|c| c.map(|c| c.title));
            l.close().await?;
            let (report, title) = (report?, title?);
            let opts = RenderOptions {
                lang: a.lang.into(),
                utc_offset_minutes: a.utc_offset_minutes,
            };
            let recordings = local_recordings(&a.ledger.data_dir, conference.as_str());
            let bytes = match a.format {
                ReportFormat::Csv => render::report_csv_with(&report, &opts, &recordings)?,
                ReportFormat::Json => {
                    render::report_json_with(&report, title.as_deref(), &opts, &recordings)?
                        .into_bytes()
                }
                ReportFormat::Html => {
                    render::report_html_with(&report, title.as_deref(), &opts, &recordings)
                        .into_bytes()
                }
            };
            write_out(a.output.as_deref(), &bytes)
        }
    }
}

/// The conference's recordings in the data directory (`{data_dir}/recordings`), oldest
/// first, linked as `file://` paths: the command runs on the relay's host. A recording
/// without an end whose file changed within the last 10 s is taken as still recording (the
/// command cannot ask the relay), otherwise as interrupted.
fn local_recordings(data_dir: &Path, conference: &str) -> Vec<render::RecordingLink> {
    let now_ms = now_ms();
    let mut list: Vec<_> =
        hallcast_record::store::list(&data_dir.join("recordings"), &Default::default())
            .into_iter()
            .filter(|r| r.conference == conference)
            .collect();
    list.sort_by_key(|r| r.start_ms);
    list.into_iter()
        .map(|r| {
            let state = if r.end_ms.is_none() && now_ms - r.modified_ms < 10_000 {
                "recording"
            } else {
                r.state.as_str()
            };
            let path = std::fs::canonicalize(&r.path).unwrap_or_else(|_| r.path.clone());
            render::RecordingLink {
                id: r.id,
                start_ms: r.start_ms,
                end_ms: r.end_ms,
                duration_ms: r.duration_ms,
                bytes: r.bytes,
                state: state.into(),
                url: format!("file://{}", path.display()),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: AttendanceCmd,
    }

    fn parse(args: &[&str]) -> AttendanceCmd {
        Cli::try_parse_from(std::iter::once("hallcast").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{e}"))
            .cmd
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn import_export_token_report() {
        let dir = std::env::temp_dir().join(format!(
            "hallcast-cli-{:032x}",
            hallcast_ledger::new_event_id().0
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let d = dir.to_str().unwrap().to_owned();
        let csv = dir.join("points.csv");
        std::fs::write(
            &csv,
            "point_id,point_name,org_id,org_name,location,expected_headcount\n\
             hn-1,Điểm cầu Ba Đình,ha-noi,Đảng ủy Hà Nội,Ba Đình,40\n\
             hue-1,Điểm cầu Huế,hue,Đảng ủy Huế,Huế,25\n",
        )
        .unwrap();
        run(parse(&[
            "points",
            "import",
            csv.to_str().unwrap(),
            "--data-dir",
            &d,
        ]))
        .await
        .unwrap();

        let out = dir.join("export.csv");
        run(parse(&[
            "points",
            "export",
            "-o",
            out.to_str().unwrap(),
            "--data-dir",
            &d,
        ]))
        .await
        .unwrap();
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(text.contains("Đảng ủy Hà Nội"));
        assert_eq!(text.lines().count(), 3);

        let links = dir.join("links.html");
        run(parse(&[
            "token",
            "--conference",
            "hn-2025",
            "--format",
            "html",
            "--base-url",
            "https://hoinghi.example.vn",
            "-o",
            links.to_str().unwrap(),
            "--data-dir",
            &d,
        ]))
        .await
        .unwrap();
        let html = std::fs::read_to_string(&links).unwrap();
        assert_eq!(html.matches("<svg").count(), 2);
        assert!(html.contains("https://hoinghi.example.vn/watch/hn-2025?token=v2."));
        assert!(dir.join("join-secret").exists());

        let report = dir.join("report.json");
        run(parse(&[
            "report",
            "--conference",
            "hn-2025",
            "--format",
            "json",
            "-o",
            report.to_str().unwrap(),
            "--data-dir",
            &d,
        ]))
        .await
        .unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
        assert_eq!(v["summary"]["n_points"], 2);
        assert_eq!(v["summary"]["n_points_connected"], 0);

        let err = run(parse(&[
            "token",
            "--conference",
            "bad id",
            "--data-dir",
            &d,
        ]))
        .await
        .unwrap_err();
        assert!(format!("{err:#}").contains("conference"));
        let missing = run(parse(&[
            "points",
            "import",
            dir.join("nope.csv").to_str().unwrap(),
            "--data-dir",
            &d,
        ]))
        .await
        .unwrap_err();
        assert!(format!("{missing:#}").contains("nope.csv"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
