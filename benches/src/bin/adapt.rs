//! Bandwidth adaptation on virtual time (`docs/BENCHMARKS.md`, "Bandwidth adaptation"): the
//! real relay and real str0m peers in the simulated network (`hallcast_rtc::sim`), one
//! simulcast publisher (q/h/f: ~150 k, 500 k, 1.2 Mbit/s, an IDR every 2 s), one viewer whose
//! downlink is a bottleneck following a trace, behind a drop-tail queue.
//!
//! Per trace and per layer selector, from what the viewer received (its frames' sizes tell
//! their layer; the relay's rewrite makes one stream of them):
//! - **converge**: after each rate change that changes the highest layer that fits (the
//!   worst of them for ramps and oscillations), how long until the viewer receives a layer that
//!   fits the new rate (down: and stays at or under it until the next change; up: reaches
//!   it). A layer *fits* when its nominal bitrate × 1.1 plus 60 kbit/s (audio and headers)
//!   is at most the rate. "-": never.
//! - **switches/min**: layer changes seen by the viewer, plus pauses and resumes (a video
//!   gap over 1 s while audio flows, whatever its cause), per minute.
//! - **video gaps**: the time in those gaps (paused for bandwidth, or video stuck behind a
//!   link it overruns).
//! - **video/capacity**: the video payload bitrate the viewer received over the link's
//!   mean rate (after the first 5 s).
//! - **freeze**: total time in freezes (a gap between rendered frames over max(3 × the
//!   median frame interval, 150 ms), Chromium's definition), and their number; audio-only
//!   pauses count as freezes too (the picture stops).
//! - **queue p95**: the 95th percentile of the time datagrams spent in the bottleneck's
//!   queue: the delay the viewer's media took beyond the propagation delay.
//!
//! Selectors: `relay` (the relay's own: `RelayConfig::adaptation` on, start estimate
//! 1 Mbit/s, str0m's TWCC estimator feeding `hallcast_core::alloc`), `fixed` (the same
//! estimator feeding `hallcast_core::alloc::fixed_threshold`: the highest layer whose need
//! the estimate covers, re-chosen on every estimate, no hysteresis, hold or warm-up), `none` (adaptation off:
//! the viewer gets the top layer and keeps it), `oracle` (the bench sets `Command::SetVideo` to the highest layer that fits the *true*
//! rate every 100 ms, no hysteresis: the best a selector can do without an estimator).
//!
//! CPU per feedback packet: the thread's CPU time inside the relay's `handle_datagram` for
//! RTCP datagrams from the viewer (TWCC feedback every 50 ms, receiver reports), per
//! datagram.
//!
//! Usage: `adapt [--trace NAME]... [--selector NAME]...`; prints a Markdown table.

use std::cell::Cell;
use std::time::{Duration, Instant};

use clap::Parser;
use hallcast_core::Layer;
use hallcast_rtc::EngineEvent;
use hallcast_rtc::relay::{Command, Reply};
use hallcast_rtc::sim::{Datagram, LayerSizes, LinkModel, LinkTrace, Net, PeerId, PublisherOpts};

const CONF: &str = "bench";
/// The relay's estimator start value (`[media] start_bitrate_kbps`' default).
const START_BPS: u64 = 1_000_000;
/// Bytes of the bottleneck's queue: 1 s at 400 kbit/s, 80 ms at 5 Mbit/s.
const QUEUE_BYTES: usize = 50_000;
/// What a viewer needs besides video: audio and packet headers.
const AUDIO_AND_HEADERS_BPS: f64 = 60_000.0;
/// A video gap longer than this while audio flows is a pause.
const PAUSE_GAP: Duration = Duration::from_secs(1);
/// The start of a run not scored for bitrate share (join, warm-up).
const WARMUP: Duration = Duration::from_secs(5);

#[derive(Parser, Debug)]
#[command(about = "Bandwidth adaptation on virtual time: convergence, switches, share, freezes")]
struct Args {
    /// Traces to run (default: all): step, ramp, oscillate, loss.
    #[arg(long = "trace")]
    traces: Vec<String>,
    /// Selectors to compare (default: all): relay, none, oracle.
    #[arg(long = "selector")]
    selectors: Vec<String>,
    /// Also print (to stderr) each run's allocation changes with the link's state over
    /// the second before each: to see why the relay switched.
    #[arg(long)]
    timeline: bool,
}

struct Scenario {
    name: &'static str,
    what: &'static str,
    trace: LinkTrace,
    length: Duration,
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "step",
            what: "5 → 0.4 Mbit/s at 20 s → 5 at 40 s",
            trace: LinkTrace::step_down_up(5000.0, 400.0, secs(20.0), secs(40.0)),
            length: secs(60.0),
        },
        Scenario {
            name: "ramp",
            what: "5 → 0.3 Mbit/s over 10–30 s, back to 5 over 40–50 s",
            trace: LinkTrace::ramp(5000.0, 300.0, secs(10.0), secs(20.0), secs(1.0)).then_ramp(
                secs(40.0),
                5000.0,
                secs(10.0),
                secs(1.0),
            ),
            length: secs(60.0),
        },
        Scenario {
            name: "oscillate",
            what: "2.5 ↔ 0.6 Mbit/s, period 10 s",
            trace: LinkTrace::square(2500.0, 600.0, secs(10.0), secs(60.0)),
            length: secs(60.0),
        },
        Scenario {
            name: "loss",
            what: "5 Mbit/s, 30 % loss for 300 ms every 3 s",
            trace: LinkTrace::constant(5000.0).with_loss_bursts(
                secs(5.0),
                secs(3.0),
                secs(0.3),
                0.3,
                secs(60.0),
            ),
            length: secs(60.0),
        },
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Selector {
    Relay,
    Fixed,
    None,
    Oracle,
}

impl Selector {
    fn name(self) -> &'static str {
        match self {
            Selector::Relay => "relay",
            Selector::Fixed => "fixed",
            Selector::None => "none",
            Selector::Oracle => "oracle",
        }
    }

    fn all() -> [Selector; 4] {
        [
            Selector::Relay,
            Selector::Fixed,
            Selector::None,
            Selector::Oracle,
        ]
    }
}

/// The layers' sizes and nominal bitrates (payload, bit/s).
fn layers() -> ([LayerSizes; 3], [f64; 3]) {
    let opts = PublisherOpts::simulcast();
    let sizes = opts.simulcast.expect("simulcast");
    let gop_frames = opts.gop.as_secs_f64() * f64::from(opts.fps);
    let bps = sizes.map(|l| {
        (l.idr_bytes as f64 + (gop_frames - 1.0) * l.p_bytes as f64) * 8.0 / opts.gop.as_secs_f64()
    });
    (sizes, bps)
}

/// The highest layer that fits `rate_bps`, if any.
fn fitting(rate_bps: f64, nominal: &[f64; 3]) -> Option<usize> {
    (0..3)
        .rev()
        .find(|&l| nominal[l] * 1.1 + AUDIO_AND_HEADERS_BPS <= rate_bps)
}

// ------------------------------------------------------------------ CPU per feedback

thread_local! {
    static VIEWER_ADDR: Cell<Option<std::net::SocketAddr>> = const { Cell::new(None) };
    static ENTERED: Cell<Option<Duration>> = const { Cell::new(None) };
    static FEEDBACK_CPU: Cell<Duration> = const { Cell::new(Duration::ZERO) };
    static FEEDBACK_N: Cell<u64> = const { Cell::new(0) };
}

fn thread_cpu() -> Duration {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .expect("the thread's CPU clock");
    Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32)
}

/// An SRTCP datagram: RTP version 2 and an RTCP packet type (SR, RR, SDES, BYE, APP,
/// RTPFB, PSFB) in the clear header.
fn is_rtcp(b: &[u8]) -> bool {
    b.len() >= 8 && b[0] >> 6 == 2 && (200..=206).contains(&b[1])
}

fn datagram_hook(d: &Datagram, entering: bool) {
    if VIEWER_ADDR.get() != Some(d.from) || !is_rtcp(&d.contents) {
        return;
    }
    if entering {
        ENTERED.set(Some(thread_cpu()));
    } else if let Some(t0) = ENTERED.take() {
        FEEDBACK_CPU.set(FEEDBACK_CPU.get() + thread_cpu().saturating_sub(t0));
        FEEDBACK_N.set(FEEDBACK_N.get() + 1);
    }
}

// ------------------------------------------------------------------ one run

struct Outcome {
    /// Per rate change: (when, from, to, convergence).
    converge: Vec<(Duration, u64, u64, Option<Duration>)>,
    switches_per_min: f64,
    share: f64,
    freeze: Duration,
    n_freezes: usize,
    audio_only: Duration,
    queue_p95: Duration,
    feedback_us: f64,
    n_feedback: u64,
}

fn set_video(net: &mut Net, v: PeerId, max_layer: usize, paused: bool) {
    let relay = net.peer(v).core().relay;
    let session = net.peer(v).core().session.expect("a session");
    match net.command(
        relay,
        Command::SetVideo {
            session,
            max_layer: Layer(max_layer as u8),
            paused,
        },
    ) {
        Reply::Done(r) => r.expect("SetVideo"),
        other => panic!("unexpected reply to SetVideo: {other:?}"),
    }
}

fn run(s: &Scenario, sel: Selector, timeline: bool) -> Outcome {
    let (sizes, nominal) = layers();
    let mut net = Net::new();
    let r = net.add_relay(|c| {
        if matches!(sel, Selector::Relay | Selector::Fixed) {
            c.adaptation = Some(START_BPS);
            c.fixed_threshold = sel == Selector::Fixed;
        }
    });
    let p = net
        .publish_with(r, CONF, PublisherOpts::simulcast())
        .expect("publish");
    assert!(
        net.run_until_cond(secs(2.0), |n| n.publisher(p).frames_sent > 0),
        "the publisher never connected"
    );
    // Every layer measured by the relay.
    net.run_for(secs(1.5));
    let v = net.subscribe(r, CONF).expect("subscribe");
    let (down, up) = (net.relay_addr(r), net.peer_addr(v));
    net.set_link(down, up, LinkModel::new(s.trace.clone(), QUEUE_BYTES));
    VIEWER_ADDR.set(Some(up));
    FEEDBACK_CPU.set(Duration::ZERO);
    FEEDBACK_N.set(0);
    net.set_datagram_hook(datagram_hook);
    let t0 = net.now();
    let mut chosen: Option<Option<usize>> = None;
    while net.now() < t0 + s.length {
        if sel == Selector::Oracle {
            let rate = s.trace.bps_at(net.now() - t0) as f64;
            let want = fitting(rate, &nominal);
            if chosen != Some(want) {
                set_video(&mut net, v, want.unwrap_or(0), want.is_none());
                chosen = Some(want);
            }
        }
        net.run_for(secs(0.1));
    }
    let end = net.now();
    let viewer = net.viewer(v);
    let received = viewer.received_layers(&sizes);
    let playback = viewer.playback();

    // Layer changes, pauses and resumes as the viewer saw them.
    let mut switches = 0;
    let mut audio_only = Duration::ZERO;
    for w in received.windows(2) {
        let ((a, la, _), (b, lb, _)) = (w[0], w[1]);
        if la != lb {
            switches += 1;
        }
        if b - a > PAUSE_GAP && viewer.audio_gaps(a, b, secs(0.2)).is_empty() {
            switches += 2;
            audio_only += b - a;
        }
    }
    let minutes = s.length.as_secs_f64() / 60.0;

    // Convergence after each rate change that changes the layer that fits (a ramp's small
    // steps inside one layer's range are not a change to converge to).
    let mut changes: Vec<(Duration, u64)> = vec![];
    let mut last_ideal = fitting(s.trace.bps_at(Duration::ZERO) as f64, &nominal);
    for (at, bps) in s.trace.changes() {
        let ideal = fitting(bps as f64, &nominal);
        if ideal != last_ideal {
            changes.push((at, bps));
            last_ideal = ideal;
        }
    }
    let mut converge = vec![];
    for (i, &(at, bps)) in changes.iter().enumerate() {
        let before = s.trace.bps_at(at.saturating_sub(Duration::from_nanos(1)));
        let next = changes.get(i + 1).map_or(end, |(t, _)| t0 + *t);
        let (from, ideal) = (t0 + at, fitting(bps as f64, &nominal));
        let after: Vec<&(Instant, usize, _)> = received
            .iter()
            .filter(|(t, _, _)| *t >= from && *t < next)
            .collect();
        let done = if bps < before {
            // Down: the first frame from which every frame until the next change fits.
            match ideal {
                Some(ideal) => {
                    let last_bad = after.iter().rposition(|(_, l, _)| *l > ideal);
                    match last_bad {
                        None => after.first().map(|(t, _, _)| *t),
                        Some(i) => after.get(i + 1).map(|(t, _, _)| *t),
                    }
                }
                // Nothing fits: until the last frame.
                None => Some(after.last().map_or(from, |(t, _, _)| *t)),
            }
        } else {
            // Up: the first frame on the layer that fits (or higher).
            let ideal = ideal.unwrap_or(0);
            after
                .iter()
                .find(|(_, l, _)| *l >= ideal)
                .map(|(t, _, _)| *t)
        };
        converge.push((
            at,
            before,
            bps,
            done.map(|t| t.saturating_duration_since(from)),
        ));
    }

    let scored = t0 + WARMUP;
    let share = viewer.video_bps(scored, end) / s.trace.mean_bps(WARMUP, end - t0);
    let (n_freezes, freeze) = playback.freezes_between(t0 + secs(2.0), end);
    let link = net.link_stats(down, up).expect("the downlink");
    if timeline {
        eprintln!(
            "{} / {}: t, target, pause, estimate | over the last second: link throughput, longest queue wait, queue drops, losses",
            s.name,
            sel.name()
        );
        for (t, _, e) in net.events() {
            if let EngineEvent::Adaptation {
                target,
                paused,
                estimate_bps,
                ..
            } = e
            {
                let (a, b) = (t.checked_sub(secs(1.0)).unwrap_or(*t), *t);
                let drops = link
                    .queue_drops
                    .iter()
                    .filter(|d| **d >= a && **d < b)
                    .count();
                let lost = link
                    .departures
                    .iter()
                    .filter(|d| d.lost && d.left >= a && d.left < b)
                    .count();
                eprintln!(
                    "  {:6.2} s {target:?} {paused:?} {:?} kbit/s | {:.0} kbit/s, {:.0} ms, {drops}, {lost}",
                    t.saturating_duration_since(t0).as_secs_f64(),
                    estimate_bps.map(|e| e / 1000),
                    link.throughput_bps(a, b) / 1e3,
                    link.max_sojourn(a, b).as_secs_f64() * 1e3,
                );
            }
        }
    }
    let mut sojourn: Vec<Duration> = link.departures.iter().map(|d| d.left - d.sent).collect();
    sojourn.sort_unstable();
    let queue_p95 = sojourn
        .get(sojourn.len() * 95 / 100)
        .copied()
        .unwrap_or_default();
    let n_feedback = FEEDBACK_N.get();
    Outcome {
        converge,
        switches_per_min: f64::from(switches) / minutes,
        share,
        freeze,
        n_freezes,
        audio_only,
        queue_p95,
        feedback_us: FEEDBACK_CPU.get().as_secs_f64() * 1e6 / n_feedback.max(1) as f64,
        n_feedback,
    }
}

fn mbit(bps: u64) -> String {
    format!("{:.1}", bps as f64 / 1e6)
}

fn main() {
    let args = Args::parse();
    let selectors: Vec<Selector> = Selector::all()
        .into_iter()
        .filter(|s| args.selectors.is_empty() || args.selectors.iter().any(|n| n == s.name()))
        .collect();
    println!(
        "| trace | selector | converge after each change | switches/min | video/capacity | freeze (n) | video gaps > 1 s | queue p95 | relay CPU per viewer RTCP |"
    );
    println!("|---|---|---|---:|---:|---:|---:|---:|---:|");
    for s in scenarios() {
        if !args.traces.is_empty() && !args.traces.iter().any(|n| n == s.name) {
            continue;
        }
        for &sel in &selectors {
            let wall = Instant::now();
            let o = run(&s, sel, args.timeline);
            let converge: Vec<String> = o
                .converge
                .iter()
                .map(|(at, from, to, d)| {
                    format!(
                        "{:.0} s {}→{}: {}",
                        at.as_secs_f64(),
                        mbit(*from),
                        mbit(*to),
                        d.map_or("-".into(), |d| format!("{:.1} s", d.as_secs_f64()))
                    )
                })
                .collect();
            // A long list (the ramps) is summarised.
            let converge = if converge.len() > 4 {
                let worst = o
                    .converge
                    .iter()
                    .map(|c| c.3.map_or(f64::INFINITY, |d| d.as_secs_f64()))
                    .fold(0.0, f64::max);
                format!("{} layer changes, worst {worst:.1} s", converge.len())
            } else {
                converge.join("; ")
            };
            println!(
                "| {} ({}) | {} | {} | {:.1} | {:.0} % | {:.1} s ({}) | {:.1} s | {:.0} ms | {:.1} µs ({} pkts) |",
                s.name,
                s.what,
                sel.name(),
                converge,
                o.switches_per_min,
                o.share * 100.0,
                o.freeze.as_secs_f64(),
                o.n_freezes,
                o.audio_only.as_secs_f64(),
                o.queue_p95.as_secs_f64() * 1e3,
                o.feedback_us,
                o.n_feedback,
            );
            eprintln!(
                "{} / {}: {:.1} s of wall time",
                s.name,
                sel.name(),
                wall.elapsed().as_secs_f64()
            );
        }
    }
}
