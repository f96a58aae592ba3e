//! The join-storm benchmark: does a storm of connection points joining, declaring their
//! headcount, leaving and rejoining slow the forwarding to the points already watching?
//!
//! One relay (`hallcast demo --no-source`) with the looping publisher; `steady` subscribers
//! join first and are measured through three phases:
//! 1. **quiet**: nothing else happens;
//! 2. **storm**: `points` registered connection points, each with its own signed join link,
//!    join as real WebRTC subscribers within `join_secs` (500 in 1 s by default), each
//!    declares its headcount (as the viewer page does), watches for `stay_secs`, leaves with a
//!    DELETE, and the whole wave repeats `waves` times (flapping points: every rejoin is a
//!    reconnect the ledger folds into the point's presence);
//! 3. **flood** (with `--flood-secs`): `flood_conns` clients POST WHEP offers back to back,
//!    half with one point's (leaked) join link, half with tokens that are no join link: the
//!    relay's limits answer 429 once their budgets are spent, and the steady subscribers' audio
//!    delay shows whether the flood reaches the media threads;
//! 4. **after**: quiet again, to see that nothing is left behind.
//!
//! In each phase: the relay's CPU per forwarded packet (its own accounting), the steady
//! subscribers' delivery by RTP sequence numbers, and their audio delay above the smallest
//! transit seen (see [`DelayLog`]), as percentiles over every audio packet of every steady
//! subscriber. The storm's clients run on their own thread, reniced, so that the load
//! generator's own handshakes compete with the relay as little as two shared cores allow.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::LocalSet;
use tracing::{info, warn};

use crate::bench::{self, Rig};
use crate::probe::{self, ProcSample, RelaySample};
use crate::report::{count_failures, nearest_rank};
use crate::signal;
use crate::subscribe::{self, DelayLog, Sub, SubscribeOptions, SubscribeReport, Totals};

#[derive(Debug, Clone)]
pub struct StormOptions {
    pub relay_bin: PathBuf,
    pub relay_args: Vec<String>,
    /// This binary, for the publisher process.
    pub load_bin: PathBuf,
    /// Subscribers watching throughout (the demo's own point).
    pub steady: usize,
    /// Connection points in the storm, each joining once per wave.
    pub points: usize,
    /// A wave's joins are spread evenly over this many seconds.
    pub join_secs: f64,
    /// How long each point of a wave watches before it leaves.
    pub stay_secs: f64,
    pub waves: usize,
    /// Length of the quiet phases before and after the storm.
    pub quiet: Duration,
    /// Storm clients offer audio only: the same signalling, ICE, DTLS and ledger work per
    /// join, without the video fan-out that 500 more viewers add.
    pub storm_audio_only: bool,
    /// Nice value of the storm's client thread (0: not reniced).
    pub storm_nice: i32,
    /// Length of the WHEP POST flood phase (0: none).
    pub flood_secs: f64,
    /// Concurrent clients of the flood.
    pub flood_conns: usize,
    pub work_dir: PathBuf,
    pub command_line: String,
}

/// Delay percentiles, in ms.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Tail {
    pub n: usize,
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Tail {
    fn of_us(mut us: Vec<u32>) -> Tail {
        if us.is_empty() {
            return Tail::default();
        }
        us.sort_unstable();
        let rank = |p: f64| f64::from(nearest_rank(&us, p)) / 1e3;
        Tail {
            n: us.len(),
            p50: rank(50.0),
            p99: rank(99.0),
            p999: rank(99.9),
            max: f64::from(us[us.len() - 1]) / 1e3,
        }
    }
}

/// One phase, as the steady subscribers and the relay saw it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Phase {
    pub name: String,
    pub secs: f64,
    pub relay_cores: f64,
    pub forwarded_packets: u64,
    pub relay_cpu_us_per_forwarded_packet: f64,
    /// WebRTC sessions the relay created, and attendance events its ledger stored durably.
    pub sessions_started: u64,
    pub ledger_events_stored: u64,
    /// Steady subscribers: packets received / packets sent to them (RTP sequence numbers).
    pub steady_seq_delivery: f64,
    /// The fewest packets a steady subscriber received.
    pub steady_min_packets: u64,
    pub steady_packets: u64,
    /// Steady subscribers' audio delay above the smallest transit seen.
    pub audio_delay_ms: Tail,
    /// CPU of this process (steady subscribers and storm clients), in cores.
    pub loadgen_cores: f64,
    pub machine_busy_cores: Option<f64>,
}

/// The storm's clients.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StormClients {
    /// Every join of every wave, as one subscriber run reports it.
    pub joins: SubscribeReport,
    pub headcounts_acked: usize,
    pub headcount_failures: BTreeMap<String, usize>,
    /// From the first join of the first wave to the last client's end.
    pub secs: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StormResult {
    pub steady: usize,
    pub steady_connected: usize,
    pub points: usize,
    pub waves: usize,
    pub join_secs: f64,
    pub stay_secs: f64,
    #[serde(default)]
    pub storm_audio_only: bool,
    pub phases: Vec<Phase>,
    pub storm: StormClients,
    #[serde(default)]
    pub flood: Option<Flood>,
}

/// What the flood's clients were answered.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Flood {
    pub secs: f64,
    pub conns: usize,
    pub requests: u64,
    /// Answers by HTTP status (0: no answer).
    pub by_status: BTreeMap<u16, u64>,
}

/// Runs the benchmark. Needs a current-thread Tokio runtime; the steady subscribers run on
/// the calling thread, the storm's clients on a thread of their own.
pub async fn run(opts: &StormOptions) -> anyhow::Result<StormResult> {
    LocalSet::new().run_until(run_local(opts)).await
}

async fn run_local(opts: &StormOptions) -> anyhow::Result<StormResult> {
    anyhow::ensure!(opts.points > 0 && opts.waves > 0, "nothing to storm");
    let dir = opts.work_dir.join("storm");
    let mut rig = Rig::start(&opts.relay_bin, &opts.relay_args, &opts.load_bin, &dir).await?;
    let client = signal::http_client()?;
    let metrics_url = rig.info.metrics_url();
    let base = rig.info.http_base.trim_end_matches('/').to_string();
    anyhow::ensure!(
        !rig.info.admin_token.is_empty() && !rig.info.conference.is_empty(),
        "the relay's info file names no admin token or conference (too old a relay?)"
    );
    let tokens = register_points(&client, &base, &rig.info, opts.points).await?;
    let leaked = tokens.first().cloned();
    info!(n = tokens.len(), "points registered");

    // The steady subscribers.
    let phase = Rc::new(Cell::new(0usize));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut steady = Vec::with_capacity(opts.steady);
    let mut tasks = Vec::new();
    let sub_opts = SubscribeOptions {
        whep_url: rig.info.whep_url.clone(),
        token: rig.info.viewer_token.clone(),
        ..SubscribeOptions::default()
    };
    for _ in 0..opts.steady {
        let sub = Rc::new(Sub {
            delays: Some(DelayLog::new(phase.clone())),
            ..Sub::default()
        });
        steady.push(sub.clone());
        tasks.push(subscribe::spawn_subscriber(
            sub_opts.clone(),
            client.clone(),
            sub,
            stop_rx.clone(),
        ));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while steady.iter().any(|s| s.first_keyframe.get().is_none()) {
        if Instant::now() > deadline {
            bail!(
                "only {} of {} steady subscribers got a keyframe within 30 s",
                steady
                    .iter()
                    .filter(|s| s.first_keyframe.get().is_some())
                    .count(),
                opts.steady
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let the joiners' GOP bursts drain and the smallest transit be found.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let steady_connected = steady.iter().filter(|s| s.up.get()).count();

    let mut phases = Vec::new();
    // Quiet.
    phase.set(1);
    let s0 = Snap::take(&client, &metrics_url, &steady).await?;
    tokio::time::sleep(opts.quiet).await;
    let s1 = Snap::take(&client, &metrics_url, &steady).await?;
    phases.push(Phase::between("quiet", &s0, &s1, &steady, 1));

    // Storm.
    phase.set(2);
    let storm = {
        let (whep_url, headcount_url) = (
            rig.info.whep_url.clone(),
            format!(
                "{base}/api/v1/conferences/{}/headcount",
                rig.info.conference
            ),
        );
        let o = opts.clone();
        std::thread::Builder::new()
            .name("storm".into())
            .spawn(move || storm_thread(&o, tokens, whep_url, headcount_url))
            .context("starting the storm thread")?
    };
    loop {
        if storm.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let storm = storm
        .join()
        .map_err(|_| anyhow::anyhow!("the storm thread panicked"))??;
    let s2 = Snap::take(&client, &metrics_url, &steady).await?;
    phases.push(Phase::between("storm", &s1, &s2, &steady, 2));

    // Flood.
    let (flood, s2) = if opts.flood_secs > 0.0 {
        phase.set(4);
        let (o, url, leaked) = (
            opts.clone(),
            rig.info.whep_url.clone(),
            leaked.clone().context("no point to leak a link of")?,
        );
        let flood = std::thread::Builder::new()
            .name("flood".into())
            .spawn(move || flood_thread(&o, url, leaked))
            .context("starting the flood thread")?;
        while !flood.is_finished() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let flood = flood
            .join()
            .map_err(|_| anyhow::anyhow!("the flood thread panicked"))??;
        let s = Snap::take(&client, &metrics_url, &steady).await?;
        phases.push(Phase::between("flood", &s2, &s, &steady, 4));
        (Some(flood), s)
    } else {
        (None, s2)
    };

    // After.
    phase.set(3);
    tokio::time::sleep(opts.quiet).await;
    let s3 = Snap::take(&client, &metrics_url, &steady).await?;
    phases.push(Phase::between("after", &s2, &s3, &steady, 3));
    phase.set(0);

    let _ = stop_tx.send(true);
    for t in tasks {
        if let Err(e) = t.await {
            bail!("a steady subscriber task panicked: {e}");
        }
    }
    if let Ok(Some(status)) = rig.publisher.try_wait() {
        bail!("the publisher exited during the run ({status}); see publish.log");
    }
    bench::stop(&mut rig.publisher).await;
    bench::stop(&mut rig.relay).await;
    let result = StormResult {
        steady: opts.steady,
        steady_connected,
        points: opts.points,
        waves: opts.waves,
        join_secs: opts.join_secs,
        stay_secs: opts.stay_secs,
        storm_audio_only: opts.storm_audio_only,
        phases,
        storm,
        flood,
    };
    std::fs::write(
        dir.join("storm.json"),
        serde_json::to_string_pretty(&result)?,
    )?;
    Ok(result)
}

/// Imports `n` points (in 25 organisations of up to 20) and returns their join tokens.
async fn register_points(
    client: &reqwest::Client,
    base: &str,
    info: &bench::DemoInfo,
    n: usize,
) -> anyhow::Result<Vec<String>> {
    let mut csv = String::from("point_id,point_name,org_id,org_name,location,expected_headcount\n");
    for i in 0..n {
        let org = i / 20;
        let _ = writeln!(
            csv,
            "bao-{i:04},Điểm cầu bão {i},don-vi-bao-{org:02},Đơn vị {org},Phòng họp {i},20"
        );
    }
    let r = client
        .post(format!("{base}/api/v1/points/import"))
        .bearer_auth(&info.admin_token)
        .header("Content-Type", "text/csv")
        .body(csv)
        .send()
        .await
        .context("POST /api/v1/points/import")?;
    let status = r.status();
    if !status.is_success() {
        bail!(
            "importing the storm's points: HTTP {status}: {}",
            r.text().await.unwrap_or_default()
        );
    }
    let links: serde_json::Value = client
        .get(format!(
            "{base}/api/v1/conferences/{}/links?format=json",
            info.conference
        ))
        .bearer_auth(&info.admin_token)
        .send()
        .await
        .context("GET links")?
        .error_for_status()
        .context("GET links")?
        .json()
        .await
        .context("the links API answered no JSON")?;
    let tokens: Vec<String> = links
        .as_array()
        .context("the links API answered no list")?
        .iter()
        .filter(|l| {
            l["point_id"]
                .as_str()
                .is_some_and(|p| p.starts_with("bao-"))
        })
        .filter_map(|l| {
            let url = l["url"].as_str()?;
            url.split(['?', '&'])
                .find_map(|kv| kv.strip_prefix("token="))
                .map(str::to_string)
        })
        .collect();
    anyhow::ensure!(
        tokens.len() == n,
        "{} join links for {n} storm points",
        tokens.len()
    );
    Ok(tokens)
}

/// The counters at one instant.
struct Snap {
    t: Instant,
    relay: RelaySample,
    totals: Totals,
    per: Vec<u64>,
    me: ProcSample,
    busy: Option<f64>,
}

impl Snap {
    async fn take(
        client: &reqwest::Client,
        metrics_url: &str,
        subs: &[Rc<Sub>],
    ) -> anyhow::Result<Snap> {
        let relay = probe::scrape(client, metrics_url).await?;
        let (totals, per) = subscribe::totals(subs);
        Ok(Snap {
            t: Instant::now(),
            relay,
            totals,
            per,
            me: probe::proc_sample(None)?,
            busy: probe::machine_busy_seconds(),
        })
    }
}

impl Phase {
    fn between(name: &str, a: &Snap, b: &Snap, subs: &[Rc<Sub>], index: usize) -> Phase {
        let secs = b.t.duration_since(a.t).as_secs_f64();
        let cpu = b.relay.cpu_seconds - a.relay.cpu_seconds;
        let forwarded = b
            .relay
            .forwarded_packets
            .saturating_sub(a.relay.forwarded_packets);
        let expected = b.totals.expected - a.totals.expected;
        let samples: Vec<u32> = subs
            .iter()
            .filter_map(|s| s.delays.as_ref())
            .flat_map(|d| d.samples.borrow().get(index).cloned().unwrap_or_default())
            .collect();
        Phase {
            name: name.into(),
            secs,
            relay_cores: cpu / secs,
            forwarded_packets: forwarded,
            relay_cpu_us_per_forwarded_packet: if forwarded == 0 {
                0.0
            } else {
                cpu * 1e6 / forwarded as f64
            },
            sessions_started: b
                .relay
                .sessions_started
                .saturating_sub(a.relay.sessions_started),
            ledger_events_stored: b
                .relay
                .ledger_events_stored
                .saturating_sub(a.relay.ledger_events_stored),
            steady_seq_delivery: if expected == 0 {
                0.0
            } else {
                (b.totals.in_seq - a.totals.in_seq) as f64 / expected as f64
            },
            steady_min_packets: a
                .per
                .iter()
                .zip(&b.per)
                .map(|(x, y)| y - x)
                .min()
                .unwrap_or(0),
            steady_packets: (b.totals.video + b.totals.audio) - (a.totals.video + a.totals.audio),
            audio_delay_ms: Tail::of_us(samples),
            loadgen_cores: (b.me.cpu_seconds - a.me.cpu_seconds) / secs,
            machine_busy_cores: a.busy.zip(b.busy).map(|(x, y)| (y - x) / secs),
        }
    }
}

/// Lowers the calling thread's priority (Linux: `renice` of its thread id).
fn renice_this_thread(nice: i32) {
    if nice == 0 {
        return;
    }
    let tid = std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()));
    let Some(tid) = tid else {
        warn!("cannot find this thread's id; the storm runs at normal priority");
        return;
    };
    match std::process::Command::new("renice")
        .args(["-n", &nice.to_string(), "-p", &tid])
        .stdout(std::process::Stdio::null())
        .status()
    {
        Ok(s) if s.success() => {}
        other => warn!("renice of the storm thread failed ({other:?}); it runs at normal priority"),
    }
}

/// The flood's clients, on a thread of their own at the storm's nice value.
fn flood_thread(opts: &StormOptions, whep_url: String, leaked: String) -> anyhow::Result<Flood> {
    renice_this_thread(opts.storm_nice);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(flood(opts, whep_url, leaked))
}

async fn flood(opts: &StormOptions, whep_url: String, leaked: String) -> anyhow::Result<Flood> {
    // A real offer's shape matters little: most of the flood is refused before its body is
    // read (429, 401), and what passes is parsed and refused (400).
    const OFFER: &str = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";
    let client = signal::http_client()?;
    let started = Instant::now();
    let end = started + Duration::from_secs_f64(opts.flood_secs);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..opts.flood_conns.max(1) {
        let (client, url) = (client.clone(), whep_url.clone());
        let token = if i % 2 == 0 {
            leaked.clone()
        } else {
            format!("not-a-join-link-{i:04}")
        };
        tasks.spawn(async move {
            let mut by = BTreeMap::<u16, u64>::new();
            while Instant::now() < end {
                let status = match client
                    .post(&url)
                    .bearer_auth(&token)
                    .header("Content-Type", "application/sdp")
                    .body(OFFER)
                    .send()
                    .await
                {
                    Ok(r) => r.status().as_u16(),
                    Err(_) => 0,
                };
                *by.entry(status).or_default() += 1;
            }
            by
        });
    }
    let mut out = Flood {
        conns: opts.flood_conns.max(1),
        ..Flood::default()
    };
    while let Some(by) = tasks.join_next().await {
        for (status, n) in by? {
            *out.by_status.entry(status).or_default() += n;
            out.requests += n;
        }
    }
    out.secs = started.elapsed().as_secs_f64();
    Ok(out)
}

fn storm_thread(
    opts: &StormOptions,
    tokens: Vec<String>,
    whep_url: String,
    headcount_url: String,
) -> anyhow::Result<StormClients> {
    renice_this_thread(opts.storm_nice);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    LocalSet::new().block_on(&rt, storm_waves(opts, tokens, whep_url, headcount_url))
}

async fn storm_waves(
    opts: &StormOptions,
    tokens: Vec<String>,
    whep_url: String,
    headcount_url: String,
) -> anyhow::Result<StormClients> {
    let client = signal::http_client()?;
    let started = Instant::now();
    let mut subs: Vec<Rc<Sub>> = Vec::new();
    let acked = Rc::new(Cell::new(0usize));
    let hc_failures = Rc::new(std::cell::RefCell::new(Vec::<String>::new()));
    for wave in 0..opts.waves {
        let (stop_tx, stop_rx) = watch::channel(false);
        let start = tokio::time::Instant::now();
        let mut tasks = Vec::with_capacity(tokens.len() * 2);
        for (i, token) in tokens.iter().enumerate() {
            tokio::time::sleep_until(
                start + Duration::from_secs_f64(opts.join_secs * i as f64 / tokens.len() as f64),
            )
            .await;
            let sub = Rc::new(Sub::default());
            subs.push(sub.clone());
            let o = SubscribeOptions {
                whep_url: whep_url.clone(),
                token: token.clone(),
                join_timeout: Duration::from_secs(30),
                recv_buffer: 256 << 10,
                video: !opts.storm_audio_only,
                ..SubscribeOptions::default()
            };
            tasks.push(subscribe::spawn_subscriber(
                o,
                client.clone(),
                sub,
                stop_rx.clone(),
            ));
            // The headcount declaration the viewer page sends when a point joins.
            let (client, url, token) = (client.clone(), headcount_url.clone(), token.clone());
            let (acked, hc_failures) = (acked.clone(), hc_failures.clone());
            tasks.push(tokio::task::spawn_local(async move {
                let r = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&serde_json::json!({ "n_people": 15 + wave }))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status().is_success() => acked.set(acked.get() + 1),
                    Ok(r) => hc_failures
                        .borrow_mut()
                        .push(format!("HTTP {}", r.status())),
                    Err(e) => hc_failures.borrow_mut().push(format!("{e:#}")),
                }
            }));
        }
        tokio::time::sleep_until(start + Duration::from_secs_f64(opts.join_secs + opts.stay_secs))
            .await;
        let _ = stop_tx.send(true);
        for t in tasks {
            if let Err(e) = t.await {
                bail!("a storm task panicked: {e}");
            }
        }
        info!(wave, "storm wave done");
    }
    let hc_failures = hc_failures.borrow().clone();
    Ok(StormClients {
        joins: subscribe::report(subs.len(), &subs, None),
        headcounts_acked: acked.get(),
        headcount_failures: count_failures(&hc_failures),
        secs: started.elapsed().as_secs_f64(),
    })
}

/// The Markdown report.
pub fn markdown(opts: &StormOptions, r: &StormResult) -> String {
    let mut md = bench::report_header(
        "Join storm: does a storm of points joining slow forwarding to the points watching?",
        &opts.command_line,
    );
    let _ = writeln!(
        md,
        "- Storm clients receive {}.\n\
         - Relay: `hallcast demo --no-source` (release), SQLite ledger in its data directory; publisher: \
         `hallcast-load publish` (720p H.264 ~1.9 Mbit/s + Opus), its own process.\n\
         - Steady: {} str0m subscribers ({} connected) on the demo point's link, watching throughout.\n\
         - Storm: {} registered points, each with its own signed join link, join as real WebRTC subscribers \
         (ICE, DTLS-SRTP) within {} s and each POSTs a headcount declaration; they watch {} s, leave with a \
         DELETE, and the wave repeats {} times (every rejoin is a reconnect the ledger folds). The storm's \
         clients run on their own thread at nice {}.\n\
         - Audio delay: per steady subscriber, each Opus packet's arrival time minus its RTP time, above the \
         smallest such transit the subscriber saw (the publisher sends on an absolute 20 ms schedule), over \
         every audio packet of every steady subscriber in the phase.\n",
        if r.storm_audio_only {
            "audio only (the same signalling, ICE, DTLS-SRTP and ledger work per join, without the video \
             fan-out 500 more viewers add)"
        } else {
            "audio and video, like the steady ones"
        },
        r.steady,
        r.steady_connected,
        r.points,
        r.join_secs,
        r.stay_secs,
        r.waves,
        opts.storm_nice
    );
    let _ = writeln!(
        md,
        "| phase | secs | relay cores | µs CPU / fwd pkt | forwarded pkt/s | sessions started | ledger events stored | \
         steady delivered (RTP seq) | steady min pkts | audio delay p50 / p99 / p99.9 / max (ms) | loadgen cores | machine busy cores |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|---|");
    for p in &r.phases {
        let _ = writeln!(
            md,
            "| {} | {:.1} | {:.2} | {:.1} | {:.0} | {} | {} | {:.4} | {} | {:.1} / {:.1} / {:.1} / {:.1} | {:.2} | {} |",
            p.name,
            p.secs,
            p.relay_cores,
            p.relay_cpu_us_per_forwarded_packet,
            p.forwarded_packets as f64 / p.secs,
            p.sessions_started,
            p.ledger_events_stored,
            p.steady_seq_delivery,
            p.steady_min_packets,
            p.audio_delay_ms.p50,
            p.audio_delay_ms.p99,
            p.audio_delay_ms.p999,
            p.audio_delay_ms.max,
            p.loadgen_cores,
            p.machine_busy_cores
                .map_or_else(|| "–".into(), |c| format!("{c:.2}")),
        );
    }
    let s = &r.storm.joins;
    let _ = writeln!(
        md,
        "\nStorm clients: {} joins, {} connected, {} with a keyframe, failures {:?}; WHEP answer p50/p95/max \
         {:.0}/{:.0}/{:.0} ms; connected (ICE+DTLS) p50/p95/max {:.0}/{:.0}/{:.0} ms; first keyframe p50/p95/max \
         {:.0}/{:.0}/{:.0} ms; headcount declarations acknowledged {} (failures {:?}); the storm lasted {:.1} s.",
        s.n_subscribers,
        s.n_connected,
        s.n_with_keyframe,
        s.failures,
        s.answer_ms.p50,
        s.answer_ms.p95,
        s.answer_ms.max,
        s.connect_ms.p50,
        s.connect_ms.p95,
        s.connect_ms.max,
        s.ttfk_ms.p50,
        s.ttfk_ms.p95,
        s.ttfk_ms.max,
        r.storm.headcounts_acked,
        r.storm.headcount_failures,
        r.storm.secs
    );
    if let Some(f) = &r.flood {
        let _ = writeln!(
            md,
            "\nFlood: {} clients POSTed {} WHEP offers in {:.1} s ({:.0}/s; half with one point's join link, \
             half with tokens that are no join link), answered by status {:?} (0: no answer).",
            f.conns,
            f.requests,
            f.secs,
            f.requests as f64 / f.secs,
            f.by_status
        );
    }
    md
}
