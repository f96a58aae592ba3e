//! The ingest latency benchmark (`docs/BENCHMARKS.md`, "Ingest" → "Latency"; driven by
//! `benches/e2e/ingest_latency.sh`): per video frame, the time from the moment the "encoder"
//! hands the frame to its transport to the moment a WebRTC viewer of the relay holds the whole
//! frame (every RTP packet of its timestamp up to the marker), for three ingest paths carrying
//! the same H.264 (`hallcast-load`'s 720p30 constrained-baseline loop, an IDR every 2 s):
//!
//! - **WHIP**: `hallcast_client::publish_feed`, the webrtc-rs publisher the ingest gateway
//!   itself uses, in this process;
//! - **RTMP**: an `rml_rtmp` client session sending FLV AVC tags over TCP to the relay's RTMP
//!   listener (the gateway in the relay's process publishes over WHIP to the relay);
//! - **SRT**: an `srt-tokio` caller sending MPEG-TS (one PES per frame, 7 TS packets per SRT
//!   message) to the relay's SRT listener.
//!
//! One process, one clock: the pushes and the viewer (str0m, RTP mode, see [`viewer`]) run
//! here; `hallcast demo --no-source` is the relay. Frames are told apart across the relay by
//! an SEI "user data unregistered" NAL unit carrying a frame counter in every access unit
//! (the gateway passes SEI through; the RTP payloader sends it as its own packet, or in the
//! STAP-A with SPS and PPS).
//!
//! Each run: connect the push, send at 30 fps, let the viewer join `--join-after` seconds in
//! (mid-GOP: its first picture comes from the relay's GOP cache, and the time from its WHEP
//! POST to that picture is reported), skip `--warmup` seconds after its first picture, then
//! measure every frame sent during `--duration` seconds. A frame the viewer never holds whole
//! counts as lost. Paths are interleaved (whip, rtmp, srt, whip, ...) `--rounds` times.
//!
//! Writes `--out` (JSON: every run and every frame's latency) and prints a Markdown summary.

mod media;
mod push;
mod viewer;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use hallcast_load::media::{H264_LOOP, H264_LOOP_FPS, h264_access_units};
use hallcast_load::probe::{self, RelaySample};
use hallcast_load::report::nearest_rank;
use hallcast_load::signal;
use serde_json::{Value, json};
use tokio::process::Command;
use tokio::sync::watch;

use push::{Path, Push, Urls};

#[derive(Parser, Debug)]
#[command(about = "Encoder → first viewer latency per frame: WHIP vs RTMP vs SRT ingest")]
struct Args {
    /// The relay binary (`hallcast`).
    #[arg(long, env = "HALLCAST_BIN")]
    relay_bin: PathBuf,
    /// Ingest paths, in the order each round runs them.
    #[arg(long, value_delimiter = ',', default_value = "whip,rtmp,srt")]
    paths: Vec<Path>,
    /// Rounds (each runs every path once).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Seconds measured per run.
    #[arg(long, default_value_t = 20.0)]
    duration: f64,
    /// Seconds skipped after the viewer's first picture.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// The viewer joins this many seconds after the push started.
    #[arg(long, default_value_t = 3.0)]
    join_after: f64,
    /// The SRT caller's latency (ms; the connection takes the larger of the caller's and the
    /// listener's). Default: srt-tokio's (120 ms).
    #[arg(long)]
    srt_latency_ms: Option<u64>,
    /// Extra argument for the relay, e.g. `--set=media.threads=1`.
    #[arg(long = "relay-arg", allow_hyphen_values = true)]
    relay_args: Vec<String>,
    #[arg(long, default_value = "target/ingest-latency")]
    work_dir: PathBuf,
    /// JSON result.
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long, default_value = "ingest-latency")]
    label: String,
}

/// How long the push goes on after the window.
const TAIL: Duration = Duration::from_millis(1500);

/// One run of one path.
struct Run {
    path: Path,
    round: usize,
    /// Latency of every frame sent in the window and held whole by the viewer (ms), in
    /// sending order.
    latencies_ms: Vec<f64>,
    sent_in_window: usize,
    first_picture_ms: Option<f64>,
    srt_latency_ms: Option<f64>,
    frames_sent: usize,
}

#[derive(Debug, Clone, Copy, Default)]
struct Quantiles {
    n: usize,
    p50: f64,
    p95: f64,
    p99: f64,
    mean: f64,
    min: f64,
    max: f64,
}

impl Quantiles {
    fn of(values: &[f64]) -> Quantiles {
        if values.is_empty() {
            return Quantiles::default();
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        Quantiles {
            n: v.len(),
            p50: nearest_rank(&v, 50.0),
            p95: nearest_rank(&v, 95.0),
            p99: nearest_rank(&v, 99.0),
            mean: v.iter().sum::<f64>() / v.len() as f64,
            min: v[0],
            max: v[v.len() - 1],
        }
    }

    fn json(&self) -> Value {
        let r = |x: f64| (x * 100.0).round() / 100.0;
        json!({
            "n": self.n, "p50": r(self.p50), "p95": r(self.p95), "p99": r(self.p99),
            "mean": r(self.mean), "min": r(self.min), "max": r(self.max),
        })
    }
}

async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if start.elapsed() > limit {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn relay_sample(client: &reqwest::Client, base: &str) -> Option<RelaySample> {
    probe::scrape(client, &format!("{base}/metrics")).await.ok()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// One run: push, viewer, window.
async fn run_once(
    a: &Args,
    path: Path,
    round: usize,
    urls: &Urls,
    whep_url: &str,
    token: &str,
    client: &reqwest::Client,
) -> anyhow::Result<Run> {
    let units = h264_access_units(H264_LOOP);
    anyhow::ensure!(
        units.first().is_some_and(|u| u.keyframe),
        "the loop does not start with a keyframe"
    );
    let frame = Duration::from_secs(1) / H264_LOOP_FPS;
    let tick = 90_000 / u64::from(H264_LOOP_FPS);
    let mut push = Push::connect(path, urls, a.srt_latency_ms.map(Duration::from_millis)).await?;
    let srt_latency_ms = push.srt_latency().map(ms);

    // The encoder: frames at 30 fps until told to stop; returns when each was handed over.
    let (stop_push_tx, mut stop_push) = watch::channel(false);
    let sender = tokio::spawn(async move {
        let start = tokio::time::Instant::now();
        let mut sends: Vec<Instant> = Vec::new();
        let mut result = Ok(());
        for n in 0u32.. {
            if *stop_push.borrow() {
                break;
            }
            let u = &units[n as usize % units.len()];
            let au = media::with_sei(&u.data, n);
            match push
                .send(
                    // Any origin: 10 s in, as an encoder's clock would be.
                    10 * 90_000 + u64::from(n) * tick,
                    au,
                    u.keyframe,
                    n == 0,
                )
                .await
            {
                Ok(t) => sends.push(t),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep_until(start + frame * (n + 1)) => {}
                _ = stop_push.changed() => {}
            }
        }
        push.stop().await;
        result.map(|()| sends)
    });

    tokio::time::sleep(Duration::from_secs_f64(a.join_after)).await;
    let (stop_view_tx, stop_view) = watch::channel(false);
    let (first_tx, mut first_rx) = watch::channel(None);
    let viewer = {
        let (client, url, token) = (client.clone(), whep_url.to_owned(), token.to_owned());
        tokio::spawn(async move { viewer::watch(&client, &url, &token, stop_view, first_tx).await })
    };
    let first =
        tokio::time::timeout(Duration::from_secs(20), first_rx.wait_for(Option::is_some)).await;
    let first_at = match first {
        Ok(Ok(t)) => (*t).context("no first picture")?,
        _ => {
            let _ = stop_push_tx.send(true);
            let _ = stop_view_tx.send(true);
            let v = viewer.await;
            let s = sender.await;
            bail!(
                "{}: the viewer had no picture within 20 s (viewer: {:?}, push: {:?})",
                path.name(),
                v.map(|r| r.map(|w| w.video_packets)),
                s.map(|r| r.map(|v| v.len()))
            );
        }
    };
    let window_start = first_at + Duration::from_secs_f64(a.warmup);
    let window_end = window_start + Duration::from_secs_f64(a.duration);
    // The push goes on after the window: what was sent in it gets time to arrive (SRT holds
    // frames for its latency, and the gateway's TS demuxer ends a frame when the next begins).
    tokio::time::sleep_until((window_end + TAIL).into()).await;
    let _ = stop_push_tx.send(true);
    let sends = sender.await.context("the push task")??;
    let _ = stop_view_tx.send(true);
    let watched = viewer.await.context("the viewer task")??;

    let mut latencies_ms = Vec::new();
    let mut sent_in_window = 0;
    for (n, &t) in sends.iter().enumerate() {
        if t < window_start || t >= window_end {
            continue;
        }
        sent_in_window += 1;
        if let Some(&r) = watched.frames.get(&(n as u32)) {
            latencies_ms.push(ms(r.saturating_duration_since(t)));
        }
    }
    let first_picture_ms = watched
        .posted_at
        .zip(watched.first_picture)
        .map(|(p, f)| ms(f.saturating_duration_since(p)));

    // The next run publishes to the same conference: wait until this broadcast is over.
    let base = whep_url
        .split("/whep/")
        .next()
        .context("whep_url")?
        .to_owned();
    wait_for(
        "the conference to go off air",
        Duration::from_secs(20),
        || {
            let (c, b) = (client, &base);
            async move { relay_sample(c, b).await.filter(|s| !s.live).map(|_| ()) }
        },
    )
    .await?;

    Ok(Run {
        path,
        round,
        latencies_ms,
        sent_in_window,
        first_picture_ms,
        srt_latency_ms,
        frames_sent: sends.len(),
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    anyhow::ensure!(a.relay_bin.is_file(), "{} missing", a.relay_bin.display());
    anyhow::ensure!(!a.paths.is_empty(), "no --paths");
    let dir = a.work_dir.join(&a.label);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let client = signal::http_client()?;

    let info_path = dir.join("relay-info.json");
    let mut relay = Command::new(&a.relay_bin)
        .args(["demo", "--no-source", "--http", "127.0.0.1:0"])
        .args(["--media", "127.0.0.1:0", "--info-file"])
        .arg(&info_path)
        .arg("--data-dir")
        .arg(dir.join("relay-data"))
        .args(&a.relay_args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.join("relay.out"))?)
        .stderr(std::fs::File::create(dir.join("relay.log"))?)
        .kill_on_drop(true)
        .spawn()
        .context("starting the relay")?;
    let info: Value = wait_for("the relay's info file", Duration::from_secs(60), || {
        let p = info_path.clone();
        async move { serde_json::from_slice(&std::fs::read(&p).ok()?).ok() }
    })
    .await?;
    let field = |k: &str| -> anyhow::Result<String> {
        info[k]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("`{k}` missing in the relay's info file (RTMP/SRT off?)"))
    };
    let urls = Urls {
        whip_url: field("whip_url")?,
        stream_key: field("stream_key")?,
        rtmp_url: field("rtmp_url")?,
        srt_url: field("srt_url")?,
    };
    let (whep_url, token) = (field("whep_url")?, field("viewer_token")?);

    let mut runs = Vec::new();
    let mut failures = Vec::new();
    for round in 0..a.rounds {
        for &path in &a.paths {
            eprintln!("round {round}: {}", path.name());
            match run_once(&a, path, round, &urls, &whep_url, &token, &client).await {
                Ok(r) => {
                    let q = Quantiles::of(&r.latencies_ms);
                    eprintln!(
                        "  {} frames of {} whole, p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms; first picture {:?} ms",
                        q.n, r.sent_in_window, q.p50, q.p95, q.p99, r.first_picture_ms
                    );
                    runs.push(r);
                }
                Err(e) => {
                    eprintln!("  failed: {e:#}");
                    failures.push(
                        json!({"path": path.name(), "round": round, "error": format!("{e:#}")}),
                    );
                }
            }
        }
    }
    let _ = relay.start_kill();
    let _ = relay.wait().await;

    // Per path: all frames of all runs pooled, and each run's own figures.
    let mut md = format!(
        "{}: {} round(s) of {} s per path, viewer joins {} s in, warm-up {} s; bench {} build\n\n\
         | path | frames (whole / sent) | p50 ms | p95 ms | p99 ms | max ms | extra p50 / p95 / p99 over WHIP (ms) | run p50s (ms) | first picture (ms, per run) |\n\
         |---|---:|---:|---:|---:|---:|---|---|---|\n",
        a.label,
        a.rounds,
        a.duration,
        a.join_after,
        a.warmup,
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
    );
    let pooled = |p: Path| -> (Quantiles, usize) {
        let mut all = Vec::new();
        let mut sent = 0;
        for r in runs.iter().filter(|r| r.path == p) {
            all.extend_from_slice(&r.latencies_ms);
            sent += r.sent_in_window;
        }
        (Quantiles::of(&all), sent)
    };
    let whip = a
        .paths
        .contains(&Path::Whip)
        .then(|| pooled(Path::Whip).0)
        .filter(|q| q.n > 0);
    let mut summary = serde_json::Map::new();
    for &p in &a.paths {
        if summary.contains_key(p.name()) {
            continue;
        }
        let (q, sent) = pooled(p);
        let extra = whip.map(|w| {
            json!({
                "p50": ((q.p50 - w.p50) * 100.0).round() / 100.0,
                "p95": ((q.p95 - w.p95) * 100.0).round() / 100.0,
                "p99": ((q.p99 - w.p99) * 100.0).round() / 100.0,
            })
        });
        let mine: Vec<&Run> = runs.iter().filter(|r| r.path == p).collect();
        let run_p50: Vec<String> = mine
            .iter()
            .map(|r| format!("{:.1}", Quantiles::of(&r.latencies_ms).p50))
            .collect();
        let firsts: Vec<String> = mine
            .iter()
            .map(|r| r.first_picture_ms.map_or("–".into(), |v| format!("{v:.0}")))
            .collect();
        md.push_str(&format!(
            "| {} | {} / {} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} | {} |\n",
            p.name(),
            q.n,
            sent,
            q.p50,
            q.p95,
            q.p99,
            q.max,
            match (&extra, p) {
                (_, Path::Whip) => "–".to_owned(),
                (Some(e), _) => format!("{} / {} / {}", e["p50"], e["p95"], e["p99"]),
                (None, _) => "?".to_owned(),
            },
            run_p50.join(", "),
            firsts.join(", "),
        ));
        summary.insert(
            p.name().into(),
            json!({
                "latency_ms": q.json(),
                "frames_sent_in_windows": sent,
                "frames_lost": sent.saturating_sub(q.n),
                "extra_over_whip_ms": extra,
            }),
        );
    }
    if let Some(l) = runs.iter().find_map(|r| r.srt_latency_ms) {
        md.push_str(&format!("\nSRT latency agreed with the relay: {l:.0} ms\n"));
    }
    for f in &failures {
        md.push_str(&format!("\nFAILED: {f}\n"));
    }
    let result = json!({
        "label": a.label,
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "bench_build": if cfg!(debug_assertions) { "debug" } else { "release" },
        "relay_bin": a.relay_bin.display().to_string(),
        "duration_secs": a.duration,
        "warmup_secs": a.warmup,
        "join_after_secs": a.join_after,
        "srt_caller_latency_ms": a.srt_latency_ms,
        "summary": summary,
        "runs": runs.iter().map(|r| json!({
            "path": r.path.name(),
            "round": r.round,
            "frames_sent": r.frames_sent,
            "frames_sent_in_window": r.sent_in_window,
            "latency_ms": Quantiles::of(&r.latencies_ms).json(),
            "first_picture_ms": r.first_picture_ms,
            "srt_latency_ms": r.srt_latency_ms,
            "frame_latencies_ms": r.latencies_ms.iter().map(|v| (v * 100.0).round() / 100.0).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "failures": failures,
    });
    if let Some(out) = &a.out {
        std::fs::write(out, serde_json::to_vec_pretty(&result)?)?;
    }
    println!("{md}");
    if !failures.is_empty() {
        bail!("{} run(s) failed", failures.len());
    }
    Ok(())
}
