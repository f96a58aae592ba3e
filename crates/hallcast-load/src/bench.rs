//! The end-to-end benchmark runner: for each N, a fresh relay (`hallcast demo --no-source`),
//! the looping publisher and N subscribers, each in its own process; the relay's own CPU and
//! memory accounting and counters are read over a window; results go to a Markdown table.
//!
//! A fresh relay per N keeps steps independent: memory freed by the previous step's sessions
//! but kept by the allocator would otherwise hide part of the next step's growth.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use tokio::process::{Child, Command};
use tracing::info;

use crate::probe::{self, RelaySample};
use crate::signal;
use crate::subscribe::SubscribeReport;

#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// The relay binary (`hallcast`, a release build for numbers that mean anything).
    pub relay_bin: PathBuf,
    /// Extra arguments for `hallcast demo`.
    pub relay_args: Vec<String>,
    /// The `hallcast-load` binary (this one) for the publisher and subscriber processes.
    pub load_bin: PathBuf,
    pub sizes: Vec<usize>,
    pub ramp_per_sec: f64,
    pub warmup: Duration,
    pub duration: Duration,
    /// Publisher-only window before the subscribers join (relay baseline CPU and RSS).
    pub baseline: Duration,
    /// Logs and per-step JSON go here.
    pub work_dir: PathBuf,
    /// A step during which other processes used more CPU than this (cores) is repeated...
    pub max_other_load: f64,
    /// ...up to this many runs in all; the quietest run is kept.
    pub attempts: usize,
    /// The command line to print in the report.
    pub command_line: String,
}

/// The relay with only the publisher, before subscribers join.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Baseline {
    pub secs: f64,
    pub cores: f64,
    pub rss_bytes: u64,
    pub rx_media_packets_per_sec: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Step {
    pub n: usize,
    pub baseline: Baseline,
    pub subscribe: SubscribeReport,
    /// CPU of the publisher process over its whole life (seconds) and its age.
    pub publisher_cpu_seconds: f64,
    pub publisher_secs: f64,
    /// Runs of this step (more than one when the machine was busy with other work).
    #[serde(default)]
    pub attempts: usize,
}

impl Step {
    /// CPU used in the window by processes other than the relay, the subscribers and the
    /// publisher (cores): the noise of a shared machine. None when not measured.
    pub fn other_load_cores(&self) -> Option<f64> {
        let w = self.subscribe.window.as_ref()?;
        let relay = w.relay.as_ref()?.cores;
        let publisher = self.publisher_cpu_seconds / self.publisher_secs.max(1e-9);
        Some((w.machine_busy_cores? - relay - w.loadgen_cpu_seconds / w.secs - publisher).max(0.0))
    }
}

/// Runs every step and returns the results; a step that fails stops the run.
pub async fn run(opts: &BenchOptions) -> anyhow::Result<Vec<Step>> {
    std::fs::create_dir_all(&opts.work_dir)
        .with_context(|| format!("creating {}", opts.work_dir.display()))?;
    anyhow::ensure!(
        opts.relay_bin.is_file(),
        "relay binary {} not found (build it: cargo build --release -p hallcast)",
        opts.relay_bin.display()
    );
    let mut steps = Vec::new();
    for &n in &opts.sizes {
        let mut best: Option<Step> = None;
        for attempt in 1..=opts.attempts.max(1) {
            info!(n, attempt, "step");
            let mut s = step(opts, n)
                .await
                .with_context(|| format!("step N={n} (logs in {})", opts.work_dir.display()))?;
            s.attempts = attempt;
            let other = s.other_load_cores().unwrap_or(0.0);
            if best
                .as_ref()
                .is_none_or(|b| other < b.other_load_cores().unwrap_or(0.0))
            {
                best = Some(s);
            }
            if let Some(b) = &mut best {
                b.attempts = attempt;
            }
            if other <= opts.max_other_load {
                break;
            }
            info!(
                n,
                other_load_cores = other,
                "other processes were busy in the window; repeating the step"
            );
        }
        let Some(step) = best else { continue };
        let json = serde_json::to_string_pretty(&step)?;
        std::fs::write(opts.work_dir.join(format!("n{n}.json")), json)?;
        steps.push(step);
    }
    Ok(steps)
}

/// Loads the step results a previous run saved in `dir` (`n<N>.json`), to render them again.
pub fn load(dir: &Path, sizes: &[usize]) -> anyhow::Result<Vec<Step>> {
    sizes
        .iter()
        .map(|n| {
            let path = dir.join(format!("n{n}.json"));
            let bytes =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))
        })
        .collect()
}

/// The relay's demo info file.
#[derive(Debug, Deserialize)]
pub(crate) struct DemoInfo {
    pub whip_url: String,
    pub stream_key: String,
    pub whep_url: String,
    pub viewer_token: String,
    pub http_base: String,
    pub media_udp: std::net::SocketAddr,
    /// Every media shard's address (relays with `media.threads` > 1).
    #[serde(default)]
    pub media_udp_shards: Vec<std::net::SocketAddr>,
    #[serde(default)]
    pub conference: String,
    #[serde(default)]
    pub admin_token: String,
}

impl DemoInfo {
    pub(crate) fn metrics_url(&self) -> String {
        format!("{}/metrics", self.http_base.trim_end_matches('/'))
    }
}

/// A log file in `dir`, for a child's stdout or stderr.
pub(crate) fn log_file(dir: &Path, name: &str) -> anyhow::Result<Stdio> {
    Ok(std::fs::File::create(dir.join(name))
        .with_context(|| format!("creating {name}"))?
        .into())
}

/// A fresh relay (`hallcast demo --no-source`, its data under `dir`) with the looping
/// publisher live on it and its first GOP cached.
pub(crate) struct Rig {
    pub relay: Child,
    pub publisher: Child,
    pub info: DemoInfo,
    pub publisher_started: Instant,
}

impl Rig {
    pub(crate) async fn start(
        relay_bin: &Path,
        relay_args: &[String],
        load_bin: &Path,
        dir: &Path,
    ) -> anyhow::Result<Rig> {
        std::fs::create_dir_all(dir)?;
        let info_path = dir.join("info.json");
        let _ = std::fs::remove_file(&info_path);
        let mut relay = Command::new(relay_bin)
            .args([
                "demo",
                "--no-source",
                "--http",
                "127.0.0.1:0",
                "--media",
                "127.0.0.1:0",
                "--info-file",
            ])
            .arg(&info_path)
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(relay_args)
            .stdin(Stdio::null())
            .stdout(log_file(dir, "relay.out")?)
            .stderr(log_file(dir, "relay.log")?)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", relay_bin.display()))?;
        let info = wait_for_info(&info_path, &mut relay).await?;
        let client = signal::http_client()?;
        let mut publisher = Command::new(load_bin)
            .args([
                "publish",
                "--whip",
                &info.whip_url,
                "--key",
                &info.stream_key,
            ])
            .stdin(Stdio::null())
            .stdout(log_file(dir, "publish.json")?)
            .stderr(log_file(dir, "publish.log")?)
            .kill_on_drop(true)
            .spawn()
            .context("starting the publisher")?;
        let publisher_started = Instant::now();
        wait_until_live(&client, &info.metrics_url(), &mut publisher).await?;
        // Let the publisher's first GOP reach the relay's cache and the rates settle.
        tokio::time::sleep(Duration::from_secs(2)).await;
        Ok(Rig {
            relay,
            publisher,
            info,
            publisher_started,
        })
    }
}

async fn step(opts: &BenchOptions, n: usize) -> anyhow::Result<Step> {
    let dir = opts.work_dir.join(format!("n{n}"));
    // Every subscriber of this bench uses the demo point's one join link: the relay's
    // per-token limit (limits.token_*, there to stop a leaked link) is turned off for it.
    let mut relay_args = opts.relay_args.clone();
    relay_args.extend(
        [
            "--set",
            "limits.token_per_second=0",
            "--set",
            "limits.token_burst=0",
        ]
        .map(String::from),
    );
    let Rig {
        mut relay,
        mut publisher,
        info,
        publisher_started,
    } = Rig::start(&opts.relay_bin, &relay_args, &opts.load_bin, &dir).await?;
    let metrics_url = info.metrics_url();
    let client = signal::http_client()?;

    let b0 = probe::scrape(&client, &metrics_url).await?;
    let t0 = Instant::now();
    tokio::time::sleep(opts.baseline).await;
    let b1 = probe::scrape(&client, &metrics_url).await?;
    let secs = t0.elapsed().as_secs_f64();
    let baseline = Baseline {
        secs,
        cores: (b1.cpu_seconds - b0.cpu_seconds) / secs,
        rss_bytes: b1.rss_bytes,
        rx_media_packets_per_sec: (b1.rx_media_packets - b0.rx_media_packets) as f64 / secs,
    };

    let timeout = Duration::from_secs_f64(n as f64 / opts.ramp_per_sec)
        + opts.warmup
        + opts.duration
        + Duration::from_secs(60);
    let sub = Command::new(&opts.load_bin)
        .args([
            "--whep",
            &info.whep_url,
            "--token",
            &info.viewer_token,
            "--metrics",
            &metrics_url,
        ])
        .args([
            "--subscribers",
            &n.to_string(),
            "--ramp-per-sec",
            &opts.ramp_per_sec.to_string(),
        ])
        .args(["--warmup", &opts.warmup.as_secs_f64().to_string()])
        .args(
            std::iter::once(info.media_udp)
                .chain(info.media_udp_shards.iter().copied())
                .flat_map(|a| ["--watch-udp-port".to_string(), a.port().to_string()]),
        )
        .args(["--duration", &opts.duration.as_secs_f64().to_string()])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        // tokio's `output()` pipes stdout and stderr whatever was set before (a
        // `.stderr(file)` here was silently replaced: a failed subscriber's error was
        // captured and dropped), so its stderr is written to the log from `out`.
        .output();
    let out = tokio::time::timeout(timeout, sub)
        .await
        .context("the subscriber process did not finish in time")??;
    std::fs::write(dir.join("subscribe.json"), &out.stdout)?;
    std::fs::write(dir.join("subscribe.log"), &out.stderr)?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
        bail!(
            "the subscriber process failed ({}): {}; see subscribe.log",
            out.status,
            last.unwrap_or("nothing on stderr")
        );
    }
    let subscribe: SubscribeReport =
        serde_json::from_slice(&out.stdout).context("parsing the subscriber report")?;

    let publisher_cpu_seconds = match publisher.id() {
        Some(pid) => probe::proc_sample(Some(pid))
            .map(|p| p.cpu_seconds)
            .unwrap_or(0.0),
        None => 0.0,
    };
    let publisher_secs = publisher_started.elapsed().as_secs_f64();
    if let Ok(Some(status)) = publisher.try_wait() {
        bail!("the publisher exited during the step ({status}); see publish.log");
    }
    stop(&mut publisher).await;
    stop(&mut relay).await;
    Ok(Step {
        n,
        baseline,
        subscribe,
        publisher_cpu_seconds,
        publisher_secs,
        attempts: 1,
    })
}

pub(crate) async fn stop(child: &mut Child) {
    // Both children are disposable: the relay's state dies with it.
    let _ = child.start_kill();
    let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
}

async fn wait_for_info(path: &Path, relay: &mut Child) -> anyhow::Result<DemoInfo> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(bytes) = std::fs::read(path) {
            return serde_json::from_slice(&bytes)
                .with_context(|| format!("parsing {}", path.display()));
        }
        if let Some(status) = relay.try_wait()? {
            bail!("the relay exited before it was ready ({status}); see relay.log");
        }
        if Instant::now() >= deadline {
            bail!("the relay wrote no {} within 20 s", path.display());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_until_live(
    client: &reqwest::Client,
    metrics_url: &str,
    publisher: &mut Child,
) -> anyhow::Result<RelaySample> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(s) = probe::scrape(client, metrics_url).await
            && s.live
            && s.rx_media_packets > 0
        {
            return Ok(s);
        }
        if let Some(status) = publisher.try_wait()? {
            bail!("the publisher exited before the feed went live ({status}); see publish.log");
        }
        if Instant::now() >= deadline {
            bail!("the feed did not go live within 20 s of starting the publisher");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The Markdown report: context, the exact command, the table, the definitions.
pub fn markdown(opts: &BenchOptions, steps: &[Step]) -> String {
    let mut md = report_header(
        "End-to-end benchmark: one publisher, N real WebRTC subscribers",
        &opts.command_line,
    );
    let _ = writeln!(
        md,
        "- Relay: `hallcast demo --no-source`, the binary given above (release profile), a fresh process per N.\n\
         - Publisher: `hallcast-load publish`, its own process: a pre-encoded 1280x720 H.264 loop (constrained \
         baseline, 30 fps, ~1.9 Mbit/s, IDR every 2 s) and Opus at 50 packets/s over WHIP (str0m).\n\
         - Subscribers: `hallcast-load`, one process, one thread, N str0m peers (full ICE, DTLS-SRTP, RTCP RR/NACK, \
         RTX negotiated), started at {} per second; {} s warm-up after the last one, then a {} s window.\n\
         - CPU and RSS are the relay process's own accounting (`process_cpu_seconds_total`, \
         `process_resident_memory_bytes` on its `/metrics`, i.e. `/proc/self/stat`), read at both ends of the window \
         together with its packet counters. Wall time is not used.\n",
        opts.ramp_per_sec,
        opts.warmup.as_secs_f64(),
        opts.duration.as_secs_f64()
    );
    let _ = writeln!(
        md,
        "| N | connected / keyframe | relay CPU (cores) | µs CPU / forwarded pkt | µs CPU / sent datagram | \
         marginal µs / fwd pkt | forwarded pkt/s | relay RSS (MiB) | RSS / subscriber (KiB) | delivered / forwarded | delivered (RTP seq) | \
         TTFK p50 / p95 / max (ms) | loadgen cores | loadgen µs / pkt |"
    );
    let _ = writeln!(
        md,
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for s in steps {
        let r = &s.subscribe;
        let Some(w) = &r.window else { continue };
        let Some(rw) = &w.relay else { continue };
        let marginal = if rw.forwarded_packets == 0 {
            0.0
        } else {
            (rw.cpu_seconds - s.baseline.cores * w.secs).max(0.0) * 1e6
                / rw.forwarded_packets as f64
        };
        let n_meas = w.n_subscribers_measured.max(1) as f64;
        let rss_per_sub = (rw.t1.rss_bytes as f64 - s.baseline.rss_bytes as f64) / n_meas / 1024.0;
        let _ = writeln!(
            md,
            "| {} | {} / {} | {:.2} | {:.1} | {:.1} | {:.1} | {:.0} | {:.0} → {:.0} | {:.0} | {:.4} | {:.4} | {:.0} / {:.0} / {:.0} | {:.2} | {:.1} |",
            s.n,
            r.n_connected,
            r.n_with_keyframe,
            rw.cores,
            rw.cpu_us_per_forwarded_packet,
            rw.cpu_us_per_tx_datagram,
            marginal,
            rw.forwarded_packets as f64 / w.secs,
            s.baseline.rss_bytes as f64 / 1048576.0,
            rw.t1.rss_bytes as f64 / 1048576.0,
            rss_per_sub,
            rw.delivered_ratio,
            w.seq_delivery_ratio,
            r.ttfk_ms.p50,
            r.ttfk_ms.p95,
            r.ttfk_ms.max,
            w.loadgen_cpu_seconds / w.secs,
            w.loadgen_cpu_us_per_packet,
        );
    }
    let _ = writeln!(md, "\nPer step, also measured (same window):\n");
    let _ = writeln!(
        md,
        "| N | relay baseline (publisher only, cores) | publisher cores | machine busy (cores) | other processes (cores) | runs | relay tx dropped | \
         kernel drops: relay socket / subscriber sockets | failures | min pkts / subscriber | WHEP answer p50 (ms) | \
         connected p50 (ms) | first packet p50 (ms) | loadgen RSS / subscriber (KiB) | relay datagrams / syscall | relay GSO messages / s |"
    );
    let _ = writeln!(
        md,
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for s in steps {
        let r = &s.subscribe;
        let Some(w) = &r.window else { continue };
        let dropped = w
            .relay
            .as_ref()
            .map_or(0, |rw| rw.t1.tx_dropped.saturating_sub(rw.t0.tx_dropped));
        let (per_syscall, gso_per_sec) =
            w.relay
                .as_ref()
                .map_or(("n/a".to_string(), "n/a".to_string()), |rw| {
                    let calls = rw.t1.tx_syscalls.saturating_sub(rw.t0.tx_syscalls);
                    let gso = rw.t1.tx_gso_messages.saturating_sub(rw.t0.tx_gso_messages);
                    if calls == 0 {
                        ("n/a".to_string(), "n/a".to_string())
                    } else {
                        (
                            format!("{:.1}", rw.tx_datagrams as f64 / calls as f64),
                            format!("{:.0}", gso as f64 / w.secs.max(1e-9)),
                        )
                    }
                });
        let failures = if r.failures.is_empty() {
            "0".to_string()
        } else {
            r.failures
                .iter()
                .map(|(k, v)| format!("{v}× {k}"))
                .collect::<Vec<_>>()
                .join("; ")
        };
        let _ = writeln!(
            md,
            "| {} | {:.3} | {:.3} | {} | {} | {} | {} | {} / {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.0} | {} | {} |",
            s.n,
            s.baseline.cores,
            s.publisher_cpu_seconds / s.publisher_secs.max(1e-9),
            w.machine_busy_cores
                .map_or("n/a".into(), |c| format!("{c:.2}")),
            s.other_load_cores()
                .map_or("n/a".into(), |c| format!("{c:.2}")),
            s.attempts,
            dropped,
            w.watched_socket_drops,
            w.subscriber_socket_drops,
            failures.replace('|', "/"),
            w.min_packets_per_subscriber,
            r.answer_ms.p50,
            r.connect_ms.p50,
            r.first_packet_ms.p50,
            w.loadgen_rss_bytes as f64 / w.n_subscribers_measured.max(1) as f64 / 1024.0,
            per_syscall,
            gso_per_sec,
        );
    }
    let _ = writeln!(
        md,
        "\nDefinitions:\n\n\
         - *µs CPU / forwarded pkt*: relay CPU seconds in the window / `hallcast_forwarded_packets_total` delta \
         (RTP packets written to subscribers). *µs CPU / sent datagram*: the same over `hallcast_tx_datagrams_total` \
         (also RTCP, STUN, retransmissions). *marginal*: the publisher-only baseline CPU subtracted first.\n\
         - *RSS / subscriber*: (relay RSS at the end of the window − RSS with the publisher only) / subscribers \
         connected at the start of the window.\n\
         - *delivered / forwarded*: distinct RTP packets the subscribers received in the window (str0m drops \
         duplicates; repairs count once) / packets the relay forwarded in the window. It counts packets still queued in the subscribers' \
         socket buffers at the end of the window as missing, so it dips when the load generator lags. \
         *delivered (RTP seq)*: packets received / packets sent by sequence number on every subscriber stream \
         (gaps that NACK/RTX did not fill are losses); lag does not affect it.\n\
         - *TTFK*: time from sending the WHEP POST to receiving the last packet of the first keyframe, per \
         subscriber, over all N.\n\
         - *loadgen*: CPU of the subscriber process (all N peers) in the window, per core and per received packet. \
         It shares the two cores with the relay.\n\
         - *other processes*: machine busy time (`/proc/stat`) minus the relay, the subscribers and the publisher; a \
         step with more than {:.2} cores of it is run again (up to {} runs; the quietest is kept).\n\
         - *kernel drops*: datagrams the kernel discarded on the relay's media socket / on the subscribers' sockets \
         (full receive buffers, `/proc/net/udp`) in the window.\n",
        opts.max_other_load, opts.attempts
    );
    md
}

/// A report's title, where and when it was measured, and the command that measured it.
pub(crate) fn report_header(title: &str, command_line: &str) -> String {
    let cpu = cpu_model().unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    format!(
        "# {title}\n\nMeasured {} on {cpu}, {cores} cores (a shared machine), everything on loopback.\n\n\
         ```\n{command_line}\n```\n\n",
        utc_date(std::time::SystemTime::now())
    )
}

fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("model name"))?;
    Some(line.split_once(':')?.1.trim().to_string())
}

/// `YYYY-MM-DD` (UTC) of a time, without a date library.
fn utc_date(t: std::time::SystemTime) -> String {
    let days = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0) as i64;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        let at = |secs: u64| utc_date(std::time::UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(at(0), "1970-01-01");
        assert_eq!(at(951_782_400), "2000-02-29");
        assert_eq!(at(1_764_288_000), "2025-11-28");
    }
}
