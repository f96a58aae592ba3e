//! The `hallcast-load` binary: flags and glue around the library.
//!
//! ```text
//! hallcast-load --whep URL --token T --subscribers N [--duration S] [--ramp-per-sec R] [--metrics URL]
//!               [--publish-whip URL --key K]          # N subscribers (and optionally the publisher); JSON on stdout
//! hallcast-load publish --whip URL --key K [--duration S]   # the looping publisher alone
//! hallcast-load bench --relay-bin PATH [--sizes 50,100,200] [--out FILE]   # the end-to-end benchmark
//! hallcast-load storm --relay-bin PATH [--steady 50] [--points 500] [--out FILE]   # the join-storm benchmark
//! ```

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use hallcast_load::bench::{self, BenchOptions};
use hallcast_load::publish::{self, PublishOptions};
use hallcast_load::storm::{self, StormOptions};
use hallcast_load::subscribe::{self, SubscribeOptions};
use tokio::sync::watch;

#[derive(Parser)]
#[command(
    name = "hallcast-load",
    version,
    about = "WebRTC load generator and end-to-end benchmark for hallcast"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    #[command(flatten)]
    subscribe: SubscribeArgs,
}

#[derive(Subcommand)]
enum Cmd {
    /// Publish the pre-encoded loop over WHIP until stopped (or for --duration).
    Publish(PublishArgs),
    /// Run the end-to-end benchmark (relay, publisher and subscribers as processes).
    Bench(BenchArgs),
    /// Run the join-storm benchmark: steady subscribers measured while points join in a storm.
    Storm(StormArgs),
}

#[derive(Args)]
struct StormArgs {
    /// The relay binary to measure (default: $HALLCAST_BIN).
    #[arg(long, value_name = "PATH", env = "HALLCAST_BIN")]
    relay_bin: PathBuf,
    /// An extra argument for the relay (`hallcast demo`); repeatable.
    #[arg(long = "relay-arg", value_name = "ARG", allow_hyphen_values = true)]
    relay_args: Vec<String>,
    /// Subscribers watching throughout.
    #[arg(long, value_name = "N", default_value_t = 50)]
    steady: usize,
    /// Connection points in the storm.
    #[arg(long, value_name = "N", default_value_t = 500)]
    points: usize,
    /// Seconds over which a wave's joins are spread.
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    join_secs: f64,
    /// Seconds each point watches before it leaves.
    #[arg(long, value_name = "SECS", default_value_t = 4.0)]
    stay_secs: f64,
    /// Waves of joins (2 or more: flapping points).
    #[arg(long, value_name = "N", default_value_t = 3)]
    waves: usize,
    /// Length of the quiet phases before and after the storm.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    quiet: f64,
    /// Storm clients offer audio only (isolates the joins' cost from the fan-out of more viewers).
    #[arg(long)]
    storm_audio_only: bool,
    /// Nice value of the storm's client thread.
    #[arg(long, value_name = "N", default_value_t = 10)]
    storm_nice: i32,
    /// After the storm, a phase of this many seconds in which clients flood the relay with WHEP
    /// POSTs (half with one point's join link, half with tokens that are no join link); 0: none.
    #[arg(long, value_name = "SECS", default_value_t = 0.0)]
    flood_secs: f64,
    /// Concurrent clients of the flood.
    #[arg(long, value_name = "N", default_value_t = 32)]
    flood_conns: usize,
    /// Write the Markdown report here (it is always printed too).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Logs and the JSON result.
    #[arg(long, value_name = "DIR", default_value = "target/e2e-bench")]
    work_dir: PathBuf,
}

#[derive(Args)]
struct SubscribeArgs {
    /// WHEP endpoint of the conference.
    #[arg(long, value_name = "URL")]
    whep: Option<String>,
    /// Viewer token (sent as a Bearer token).
    #[arg(long, value_name = "T")]
    token: Option<String>,
    /// Number of subscribers.
    #[arg(long, value_name = "N", default_value_t = 1)]
    subscribers: usize,
    /// Measurement window in seconds, after the ramp and the warm-up (0: join statistics only).
    #[arg(long, value_name = "SECS", default_value_t = 20.0)]
    duration: f64,
    /// Seconds between the last subscriber's start and the window.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    warmup: f64,
    /// Subscribers started per second.
    #[arg(long, value_name = "R", default_value_t = 20.0)]
    ramp_per_sec: f64,
    /// The relay's /metrics, read at both ends of the window (relay CPU per packet, delivery).
    #[arg(long, value_name = "URL")]
    metrics: Option<String>,
    /// How long a subscriber waits for the feed (409) and then for ICE + DTLS, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 20.0)]
    join_timeout: f64,
    /// Local IP the sockets bind to.
    #[arg(long, value_name = "IP", default_value = "127.0.0.1")]
    bind: IpAddr,
    /// A local UDP port (the relay's media port) whose kernel drops are reported; repeatable.
    #[arg(long = "watch-udp-port", value_name = "PORT")]
    watch_udp_ports: Vec<u16>,
    /// Also run the looping publisher in this process, to this WHIP endpoint.
    #[arg(long, value_name = "URL", requires = "key")]
    publish_whip: Option<String>,
    /// Stream key for --publish-whip.
    #[arg(long, value_name = "K")]
    key: Option<String>,
}

#[derive(Args)]
struct PublishArgs {
    #[arg(long, value_name = "URL")]
    whip: String,
    #[arg(long, value_name = "K")]
    key: String,
    /// Stop after this many seconds (default: until killed).
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    #[arg(long, value_name = "IP", default_value = "127.0.0.1")]
    bind: IpAddr,
}

#[derive(Args)]
struct BenchArgs {
    /// The relay binary to measure (default: $HALLCAST_BIN).
    #[arg(long, value_name = "PATH", env = "HALLCAST_BIN")]
    relay_bin: PathBuf,
    /// An extra argument for the relay (`hallcast demo`), e.g. `--set=media.gso=false`;
    /// repeatable.
    #[arg(long = "relay-arg", value_name = "ARG", allow_hyphen_values = true)]
    relay_args: Vec<String>,
    /// Subscriber counts, one step each.
    #[arg(long, value_delimiter = ',', default_value = "50,100,200")]
    sizes: Vec<usize>,
    #[arg(long, value_name = "R", default_value_t = 20.0)]
    ramp_per_sec: f64,
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    warmup: f64,
    #[arg(long, value_name = "SECS", default_value_t = 20.0)]
    duration: f64,
    /// Publisher-only window before the subscribers join.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    baseline: f64,
    /// Repeat a step when other processes used more than this many cores during its window...
    #[arg(long, value_name = "CORES", default_value_t = 0.3)]
    max_other_load: f64,
    /// ...up to this many runs of the step (the quietest is kept).
    #[arg(long, value_name = "N", default_value_t = 3)]
    attempts: usize,
    /// Write the Markdown report here (it is always printed too).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Do not measure: render the report from the per-step JSON a previous run left in DIR.
    #[arg(long, value_name = "DIR")]
    from_json_dir: Option<PathBuf>,
    /// Logs and per-step JSON.
    #[arg(long, value_name = "DIR", default_value = "target/e2e-bench")]
    work_dir: PathBuf,
}

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HALLCAST_LOAD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,hallcast_load=info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
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
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Some(Cmd::Publish(a)) => {
            let opts = PublishOptions {
                whip_url: a.whip,
                stream_key: a.key,
                bind_ip: a.bind,
                duration: a.duration.map(Duration::from_secs_f64),
                join_timeout: Duration::from_secs(20),
            };
            let (stop_tx, stop_rx) = watch::channel(false);
            let report = tokio::select! {
                r = publish::run(&opts, stop_rx) => r?,
                _ = shutdown_signal() => {
                    let _ = stop_tx.send(true);
                    anyhow::bail!("interrupted");
                }
            };
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
        Some(Cmd::Bench(a)) => {
            let opts = BenchOptions {
                relay_bin: a.relay_bin,
                relay_args: a.relay_args,
                load_bin: std::env::current_exe().context("locating this binary")?,
                sizes: a.sizes,
                ramp_per_sec: a.ramp_per_sec,
                warmup: Duration::from_secs_f64(a.warmup),
                duration: Duration::from_secs_f64(a.duration),
                baseline: Duration::from_secs_f64(a.baseline),
                work_dir: a.work_dir,
                max_other_load: a.max_other_load,
                attempts: a.attempts,
                command_line: std::env::args().collect::<Vec<_>>().join(" "),
            };
            let steps = match &a.from_json_dir {
                Some(dir) => bench::load(dir, &opts.sizes)?,
                None => bench::run(&opts).await?,
            };
            let md = bench::markdown(&opts, &steps);
            if let Some(path) = &a.out {
                std::fs::write(path, &md).with_context(|| format!("writing {}", path.display()))?;
            }
            println!("{md}");
            Ok(())
        }
        Some(Cmd::Storm(a)) => {
            let opts = StormOptions {
                relay_bin: a.relay_bin,
                relay_args: a.relay_args,
                load_bin: std::env::current_exe().context("locating this binary")?,
                steady: a.steady,
                points: a.points,
                join_secs: a.join_secs,
                stay_secs: a.stay_secs,
                waves: a.waves,
                quiet: Duration::from_secs_f64(a.quiet),
                storm_nice: a.storm_nice,
                storm_audio_only: a.storm_audio_only,
                flood_secs: a.flood_secs,
                flood_conns: a.flood_conns,
                work_dir: a.work_dir,
                command_line: std::env::args().collect::<Vec<_>>().join(" "),
            };
            let result = storm::run(&opts).await?;
            let md = storm::markdown(&opts, &result);
            if let Some(path) = &a.out {
                std::fs::write(path, &md).with_context(|| format!("writing {}", path.display()))?;
            }
            println!("{md}");
            Ok(())
        }
        None => subscribe_cmd(cli.subscribe).await,
    }
}

async fn subscribe_cmd(a: SubscribeArgs) -> anyhow::Result<()> {
    let (Some(whep), Some(token)) = (a.whep, a.token) else {
        anyhow::bail!("--whep and --token are required (or use a subcommand; see --help)");
    };
    let opts = SubscribeOptions {
        whep_url: whep,
        token,
        n_subscribers: a.subscribers,
        ramp_per_sec: a.ramp_per_sec,
        warmup: Duration::from_secs_f64(a.warmup),
        duration: Duration::from_secs_f64(a.duration),
        metrics_url: a.metrics,
        bind_ip: a.bind,
        join_timeout: Duration::from_secs_f64(a.join_timeout),
        watch_udp_ports: a.watch_udp_ports,
        ..SubscribeOptions::default()
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let publisher = a.publish_whip.map(|whip| {
        let popts = PublishOptions {
            whip_url: whip,
            stream_key: a.key.unwrap_or_default(),
            bind_ip: a.bind,
            duration: None,
            join_timeout: opts.join_timeout,
        };
        async move { publish::run(&popts, stop_rx).await }
    });
    let (report, publisher_report) = match publisher {
        None => (subscribe::run(&opts).await?, None),
        Some(p) => {
            let subs = async {
                let r = subscribe::run(&opts).await;
                let _ = stop_tx.send(true);
                r
            };
            let (r, p) = tokio::join!(subs, p);
            (r?, Some(p.context("publisher")?))
        }
    };
    let mut json = serde_json::to_value(&report)?;
    if let (Some(p), Some(obj)) = (publisher_report, json.as_object_mut()) {
        obj.insert("publisher".into(), serde_json::to_value(p)?);
    }
    println!("{}", serde_json::to_string_pretty(&json)?);
    Ok(())
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
