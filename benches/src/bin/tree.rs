//! The edge-tree benchmark (`docs/BENCHMARKS.md`, "Edge tree"; driven by
//! `benches/e2e/tree.sh`): a central relay, edges under it, viewers at the leaves, every one a
//! separate process on loopback (relays on their own 127.0.0.x addresses).
//!
//! - The central is `hallcast demo --no-source` fed by `hallcast-load publish` (the
//!   pre-encoded 720p H.264 + Opus loop, another process): the demo's built-in source encodes
//!   in the central's process and would count in its CPU.
//! - Each edge is `hallcast edge --parent URL --credential TOKEN` on fixed ports at its own
//!   address, its parent the central (`--chain`: the previous edge); its `/readyz` and then
//!   `hallcast_conference_live` in its `/metrics` say it is ready and pulling.
//! - Viewers: `hallcast-load` subscriber processes (WHEP with the demo's point join token),
//!   `--viewers` per leaf relay (the edges without children; the central when there is no
//!   edge), split over `--procs-per-leaf` processes, started under `nice` (`--loadgen-nice`).
//!
//! Over the measurement window (after every viewer is counted at its relay and a warm-up),
//! for every relay: its own CPU (`process_cpu_seconds_total`, from its `/proc/self/stat`: no
//! other process's CPU is in it), forwarded packets, and the delta of its per-hop transit
//! histogram (`hallcast_transit_seconds`: p50/p99/p99.9, interpolated inside the bucket,
//! buckets 4 per octave). The subscriber processes report delivery (RTP sequence numbers) and
//! their own CPU; the machine's busy time (`/proc/stat`) shows what else ran.
//!
//! Writes `--out` (JSON) and prints a Markdown summary.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use hallcast_load::probe::{self, Histogram, RelaySample};
use hallcast_load::signal;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

#[derive(Parser, Debug)]
#[command(about = "Central → edges → viewers on loopback: per-hop transit and CPU")]
struct Args {
    /// The relay binary (`hallcast`, release build).
    #[arg(long, env = "HALLCAST_BIN")]
    relay_bin: PathBuf,
    /// The load generator (default: `hallcast-load` next to this binary).
    #[arg(long)]
    load_bin: Option<PathBuf>,
    /// Edges (0: the viewers watch the central itself).
    #[arg(long, default_value_t = 1)]
    edges: usize,
    /// Edges in a chain (central → edge-1 → edge-2 → ...; viewers at the last) instead of
    /// all under the central.
    #[arg(long)]
    chain: bool,
    /// Viewers per leaf relay.
    #[arg(long, default_value_t = 50)]
    viewers: usize,
    /// Subscriber processes per leaf relay (the leaf's viewers split between them).
    #[arg(long, default_value_t = 1)]
    procs_per_leaf: usize,
    /// Viewers started per second, per subscriber process.
    #[arg(long, default_value_t = 10.0)]
    ramp_per_sec: f64,
    #[arg(long, default_value_t = 5.0)]
    warmup: f64,
    #[arg(long, default_value_t = 20.0)]
    duration: f64,
    /// Nice value of the subscriber processes (the relays keep 0).
    #[arg(long, default_value_t = 10)]
    loadgen_nice: i32,
    /// Pin the central to these CPUs (`taskset -c`), e.g. "0".
    #[arg(long)]
    pin_central: Option<String>,
    /// Pin everything else (edges, publisher, viewers) to these CPUs, e.g. "1".
    #[arg(long)]
    pin_others: Option<String>,
    /// Run every relay (central and edges) under the real-time policy SCHED_FIFO at this
    /// priority (`chrt -f`; needs root or CAP_SYS_NICE). On this bench the viewers are
    /// processes on the same cores as the relays: a relay's loopback send wakes them, and under
    /// the default policy a woken viewer can take the core in the middle of a fan-out, which
    /// the hop's transit then counts (docs/BENCHMARKS.md, "Edge tree": the leaf hop's share of
    /// copies over 1 ms).
    #[arg(long)]
    relay_fifo: Option<u8>,
    /// Extra argument for every relay (central and edges), e.g. `--set=media.threads=1`.
    #[arg(long = "relay-arg", allow_hyphen_values = true)]
    relay_args: Vec<String>,
    /// First port of the edges' fixed ports (edge i: HTTP base+10*i, media base+10*i+1...).
    #[arg(long, default_value_t = 21000)]
    base_port: u16,
    #[arg(long, default_value = "target/tree-bench")]
    work_dir: PathBuf,
    /// JSON result.
    #[arg(long)]
    out: Option<PathBuf>,
    /// A label for the run in the JSON and the summary.
    #[arg(long, default_value = "tree")]
    label: String,
}

/// A relay of the tree: its process, its base URL, its name and its parent's index (None:
/// the central).
struct Node {
    name: String,
    base: String,
    child: Child,
    parent: Option<usize>,
}

/// Every viewer of the benchmark joins from 127.0.0.1 with the demo point's one join link:
/// the relays' per-address and per-token join limits (`limits.*`, there against a leaked link
/// or a flood) would refuse most of 500 joins (seen 2026-12-03: 109 of 500 connected).
const LIMITS_OFF: [&str; 8] = [
    "--set",
    "limits.token_per_second=0",
    "--set",
    "limits.token_burst=0",
    "--set",
    "limits.address_per_second=0",
    "--set",
    "limits.address_burst=0",
];

/// `program` pinned to `pin`'s CPUs, at nice `nice` and under SCHED_FIFO at `fifo` (`chrt -f`),
/// each when given.
fn wrapped(pin: &Option<String>, nice: Option<i32>, fifo: Option<u8>, program: &Path) -> Command {
    let mut argv: Vec<String> = Vec::new();
    if let Some(cpus) = pin {
        argv.extend(["taskset".into(), "-c".into(), cpus.clone()]);
    }
    if let Some(n) = nice {
        argv.extend(["nice".into(), "-n".into(), n.to_string()]);
    }
    if let Some(p) = fifo {
        argv.extend(["chrt".into(), "-f".into(), p.to_string()]);
    }
    argv.push(program.display().to_string());
    let mut c = Command::new(&argv[0]);
    c.args(&argv[1..]);
    c.stdin(Stdio::null()).kill_on_drop(true);
    c
}

fn log(dir: &Path, name: &str) -> anyhow::Result<Stdio> {
    Ok(std::fs::File::create(dir.join(name))
        .with_context(|| format!("creating {name}"))?
        .into())
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
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One scrape of a relay: its counters and its transit histogram.
struct Scrape {
    sample: RelaySample,
    transit: Histogram,
}

async fn scrape(client: &reqwest::Client, base: &str) -> anyhow::Result<Scrape> {
    let text = probe::get_text(client, &format!("{base}/metrics")).await?;
    Ok(Scrape {
        sample: RelaySample::parse(&text),
        transit: Histogram::parse(&text, "hallcast_transit_seconds"),
    })
}

fn us(s: Option<f64>) -> Value {
    s.map_or(Value::Null, |v| json!((v * 1e7).round() / 10.0))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let load_bin = match &a.load_bin {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("no parent dir")?
            .join("hallcast-load"),
    };
    anyhow::ensure!(a.relay_bin.is_file(), "{} missing", a.relay_bin.display());
    anyhow::ensure!(load_bin.is_file(), "{} missing", load_bin.display());
    let dir = a.work_dir.join(&a.label);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let client = signal::http_client()?;

    // The central.
    let info_path = dir.join("central-info.json");
    let central = wrapped(&a.pin_central, None, a.relay_fifo, &a.relay_bin)
        .args(["demo", "--no-source", "--http", "127.0.0.1:0"])
        .args(["--media", "127.0.0.1:0", "--info-file"])
        .arg(&info_path)
        .arg("--data-dir")
        .arg(dir.join("central-data"))
        .args(LIMITS_OFF)
        .args(&a.relay_args)
        .stdout(log(&dir, "central.out")?)
        .stderr(log(&dir, "central.log")?)
        .spawn()
        .context("starting the central")?;
    let info: Value = wait_for("the central's info file", Duration::from_secs(30), || {
        let p = info_path.clone();
        async move {
            let bytes = std::fs::read(&p).ok()?;
            serde_json::from_slice(&bytes).ok()
        }
    })
    .await?;
    let field = |k: &str| -> anyhow::Result<String> {
        info[k]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("`{k}` missing in the central's info file"))
    };
    let (central_base, conference) = (field("http_base")?, field("conference")?);
    let token = field("viewer_token")?;
    let mut nodes = vec![Node {
        name: "central".into(),
        base: central_base.trim_end_matches('/').to_owned(),
        child: central,
        parent: None,
    }];

    // The publisher.
    let publisher = wrapped(&a.pin_others, None, None, &load_bin)
        .args(["publish", "--whip", &field("whip_url")?, "--key"])
        .arg(field("stream_key")?)
        .stdout(log(&dir, "publish.json")?)
        .stderr(log(&dir, "publish.log")?)
        .spawn()
        .context("starting the publisher")?;
    let publisher_pid = publisher.id();
    wait_for(
        "the feed live at the central",
        Duration::from_secs(30),
        || {
            let (c, b) = (&client, &nodes[0].base);
            async move {
                scrape(c, b)
                    .await
                    .ok()
                    .filter(|s| s.sample.live)
                    .map(|_| ())
            }
        },
    )
    .await?;

    // The edges.
    if a.edges > 0 {
        let credential = field("relay_credential")?;
        for i in 1..=a.edges {
            let parent = if a.chain { i - 1 } else { 0 };
            let ip = format!("127.0.0.{}", 10 + i);
            let http_port = a.base_port + 10 * i as u16;
            let name = format!("edge-{i}");
            let child = wrapped(&a.pin_others, None, a.relay_fifo, &a.relay_bin)
                .args(["edge", "--parent", &nodes[parent].base, "--credential"])
                .arg(&credential)
                .args(["--http", &format!("{ip}:{http_port}")])
                .args(["--media", &format!("{ip}:{}", http_port + 1)])
                .args(["--name", &name, "--data-dir"])
                .arg(dir.join(format!("{name}-data")))
                .args(LIMITS_OFF)
                .args(&a.relay_args)
                .stdout(log(&dir, &format!("{name}.out"))?)
                .stderr(log(&dir, &format!("{name}.log"))?)
                .spawn()
                .with_context(|| format!("starting {name}"))?;
            nodes.push(Node {
                name,
                base: format!("http://{ip}:{http_port}"),
                child,
                parent: Some(parent),
            });
            let base = nodes[i].base.clone();
            let what = format!("{} ready and pulling", nodes[i].name);
            wait_for(&what, Duration::from_secs(30), || {
                let (c, b) = (&client, &base);
                async move {
                    probe::get_text(c, &format!("{b}/readyz")).await.ok()?;
                    scrape(c, b)
                        .await
                        .ok()
                        .filter(|s| s.sample.live)
                        .map(|_| ())
                }
            })
            .await?;
        }
        // The parent's GOP reaches the edges' caches.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    // Viewers at the leaves.
    let leaves: Vec<usize> = (0..nodes.len())
        .filter(|i| !nodes.iter().any(|n| n.parent == Some(*i)))
        .collect();
    let procs = a.procs_per_leaf.max(1);
    let mut subs = Vec::new();
    for &leaf in &leaves {
        for k in 0..procs {
            let n = a.viewers / procs + usize::from(k < a.viewers % procs);
            if n == 0 {
                continue;
            }
            let tag = format!("sub-{}-{k}", nodes[leaf].name);
            let child = wrapped(&a.pin_others, Some(a.loadgen_nice), None, &load_bin)
                .args([
                    "--whep",
                    &format!("{}/whep/{conference}", nodes[leaf].base),
                    "--token",
                    &token,
                ])
                .args(["--subscribers", &n.to_string()])
                .args(["--ramp-per-sec", &a.ramp_per_sec.to_string()])
                // Their own windows (delivery, their CPU) start after their ramp and the
                // warm-up and outlast this one.
                .args(["--warmup", &a.warmup.to_string()])
                .args(["--duration", &(a.duration + 15.0).to_string()])
                .arg("--metrics")
                .arg(format!("{}/metrics", nodes[leaf].base))
                .stdout(log(&dir, &format!("{tag}.json"))?)
                .stderr(log(&dir, &format!("{tag}.log"))?)
                .spawn()
                .with_context(|| format!("starting {tag}"))?;
            subs.push((tag, child));
        }
    }
    let expected = a.viewers * leaves.len();
    let t_start = Instant::now();
    let counted = wait_for(
        "every viewer counted at its relay",
        Duration::from_secs_f64(a.viewers as f64 / a.ramp_per_sec + 40.0),
        || {
            let (c, nodes, leaves) = (&client, &nodes, &leaves);
            async move {
                let mut n = 0;
                for &l in leaves {
                    n += scrape(c, &nodes[l].base).await.ok()?.sample.n_subscribers as usize;
                }
                (n >= expected).then_some(n)
            }
        },
    )
    .await;
    let joined_secs = t_start.elapsed().as_secs_f64();
    if let Err(e) = &counted {
        eprintln!("warning: {e}; measuring anyway");
    }
    tokio::time::sleep(Duration::from_secs_f64(a.warmup)).await;

    // The window.
    let mut s0 = Vec::new();
    for n in &nodes {
        s0.push(scrape(&client, &n.base).await?);
    }
    let pub0 = publisher_pid.and_then(|p| probe::proc_sample(Some(p)).ok());
    let sub_pids: Vec<Option<u32>> = subs.iter().map(|(_, c)| c.id()).collect();
    let subs0: Vec<f64> = sub_pids
        .iter()
        .map(|p| {
            p.and_then(|p| probe::proc_sample(Some(p)).ok())
                .map_or(0.0, |s| s.cpu_seconds)
        })
        .collect();
    let busy0 = probe::machine_busy_seconds();
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(a.duration)).await;
    let mut s1 = Vec::new();
    for n in &nodes {
        s1.push(scrape(&client, &n.base).await?);
    }
    let secs = t0.elapsed().as_secs_f64();
    let busy1 = probe::machine_busy_seconds();
    let pub1 = publisher_pid.and_then(|p| probe::proc_sample(Some(p)).ok());
    let subs_cpu: f64 = sub_pids
        .iter()
        .zip(&subs0)
        .map(|(p, c0)| {
            p.and_then(|p| probe::proc_sample(Some(p)).ok())
                .map_or(0.0, |s| s.cpu_seconds - c0)
        })
        .sum();

    // Results per relay.
    let mut relays = Vec::new();
    let mut relays_cpu = 0.0;
    let mut md = String::new();
    md.push_str(&format!(
        "{}: {} edge(s){}, {} viewers per leaf, window {:.1} s\n\n\
         | relay | viewers | consumers | cores | µs CPU / fwd pkt | fwd pkt/s | transit p50 / p99 / p99.9 (µs) | mean | > 1 ms |\n\
         |---|---:|---:|---:|---:|---:|---|---:|---:|\n",
        a.label,
        a.edges,
        if a.chain { " in a chain" } else { "" },
        a.viewers,
        secs
    ));
    for (i, n) in nodes.iter().enumerate() {
        let (b, e) = (&s0[i], &s1[i]);
        let cpu = e.sample.cpu_seconds - b.sample.cpu_seconds;
        relays_cpu += cpu;
        let fwd = e
            .sample
            .forwarded_packets
            .saturating_sub(b.sample.forwarded_packets);
        let d = e.transit.since(&b.transit);
        let consumers = nodes.iter().filter(|c| c.parent == Some(i)).count();
        let (p50, p99, p999) = (d.quantile(0.5), d.quantile(0.99), d.quantile(0.999));
        let mean = (d.count > 0.0).then(|| d.sum / d.count);
        let over_1ms = d.above(0.001);
        let cpu_us = (fwd > 0).then(|| cpu / fwd as f64 * 1e6);
        relays.push(json!({
            "name": n.name,
            "parent": n.parent.map(|p| nodes[p].name.clone()),
            "viewers": e.sample.n_subscribers,
            "relay_consumers": consumers,
            "cpu_seconds": cpu,
            "cores": cpu / secs,
            "forwarded_packets": fwd,
            "cpu_us_per_forwarded_packet": cpu_us,
            "rx_media_packets": e.sample.rx_media_packets.saturating_sub(b.sample.rx_media_packets),
            "tx_dropped": e.sample.tx_dropped.saturating_sub(b.sample.tx_dropped),
            "keyframe_requests_upstream": e.sample.keyframe_requests_upstream.saturating_sub(b.sample.keyframe_requests_upstream),
            "transit": {
                "samples": d.count,
                "p50_us": us(p50), "p99_us": us(p99), "p999_us": us(p999),
                "mean_us": us(mean),
                "over_1ms": over_1ms,
                "buckets_le_seconds": d.le.iter().map(|x| if x.is_finite() { json!(x) } else { json!("+Inf") }).collect::<Vec<_>>(),
                "cumulative": d.cumulative,
            },
        }));
        let f = |v: Option<f64>| v.map_or("–".into(), |v| format!("{:.0}", v * 1e6));
        md.push_str(&format!(
            "| {} | {} | {} | {:.3} | {} | {:.0} | {} / {} / {} | {} | {} |\n",
            n.name,
            e.sample.n_subscribers,
            consumers,
            cpu / secs,
            cpu_us.map_or("–".into(), |v| format!("{v:.2}")),
            fwd as f64 / secs,
            f(p50),
            f(p99),
            f(p999),
            f(mean),
            over_1ms,
        ));
    }
    let publisher_cpu = match (pub0, pub1) {
        (Some(x), Some(y)) => y.cpu_seconds - x.cpu_seconds,
        _ => 0.0,
    };
    let machine = match (busy0, busy1) {
        (Some(x), Some(y)) => Some((y - x) / secs),
        _ => None,
    };
    let other = machine.map(|m| (m - (relays_cpu + subs_cpu + publisher_cpu) / secs).max(0.0));
    md.push_str(&format!(
        "\n{}loadgen {:.2} cores (nice {}), publisher {:.3} cores, machine busy {} cores, other processes {} cores; viewers counted after {:.1} s\n",
        // Only what the bench itself set (`--relay-fifo`); a relay's own
        // `media.realtime_priority` is in its log.
        a.relay_fifo
            .map_or(String::new(), |p| format!("relays under chrt -f {p}; ")),
        subs_cpu / secs,
        a.loadgen_nice,
        publisher_cpu / secs,
        machine.map_or("?".into(), |m| format!("{m:.2}")),
        other.map_or("?".into(), |m| format!("{m:.2}")),
        joined_secs
    ));

    // The subscriber processes finish their own windows and print their reports.
    let mut sub_reports = Vec::new();
    for (tag, mut child) in subs {
        let status = tokio::time::timeout(Duration::from_secs(120), child.wait()).await;
        let report: Value = std::fs::read(dir.join(format!("{tag}.json")))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null);
        let w = &report["window"];
        md.push_str(&format!(
            "{tag}: connected {}/{}, with keyframe {}, delivery (RTP seq) {}, loadgen µs/pkt {}{}\n",
            report["n_connected"],
            report["n_subscribers"],
            report["n_with_keyframe"],
            w["seq_delivery_ratio"],
            w["loadgen_cpu_us_per_packet"],
            match status {
                Ok(Ok(s)) if s.success() => String::new(),
                other => format!(" (exit: {other:?})"),
            }
        ));
        sub_reports.push(json!({"tag": tag, "report": report}));
    }
    for n in &mut nodes {
        let _ = n.child.start_kill();
    }
    let result = json!({
        "label": a.label,
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "edges": a.edges,
        "chain": a.chain,
        "viewers_per_leaf": a.viewers,
        "procs_per_leaf": procs,
        "window_secs": secs,
        "viewers_counted_after_secs": joined_secs,
        "relays": relays,
        "loadgen_cores": subs_cpu / secs,
        "loadgen_nice": a.loadgen_nice,
        "publisher_cores": publisher_cpu / secs,
        "machine_busy_cores": machine,
        "other_load_cores": other,
        "pin_central": a.pin_central,
        "relay_fifo": a.relay_fifo,
        "pin_others": a.pin_others,
        "subscribers": sub_reports,
    });
    if let Some(out) = &a.out {
        std::fs::write(out, serde_json::to_vec_pretty(&result)?)?;
    }
    println!("{md}");
    Ok(())
}
