//! The relay's own CPU per forwarded packet, without the kernel: the sans-IO `Relay` on the
//! simulated network (`hallcast_rtc::sim::Net`, virtual time, in-memory str0m peers), the
//! time spent inside every `Relay` call (the network's relay hook; the program is one busy
//! thread, so this is its CPU time unless the machine preempts it, which the median of the
//! rounds absorbs) divided by the RTP packets the viewers received.
//!
//! What it is for: an A/B of a change to the forwarding path (the relay, the core, str0m)
//! with far less noise than `hallcast-load bench` on a shared machine, whose figure is
//! mostly the kernel's UDP path and the other processes' cache traffic. It does not replace
//! that benchmark (no sockets, no `sendmmsg`, no driver) and is not comparable with the
//! floor's figure; it measures what a change to the relay's own work does.
//!
//! Setup: the sim's publisher (~1 Mbit/s H.264, 2 s GOP, + Opus), N viewers joining at
//! once, bandwidth adaptation as the server's default has it (measured, paced viewers;
//! `--adaptation-off` for viewers without it), links without loss or limit. After every
//! viewer connected, 6 s of forwarding (the estimators' warm-up, the join's GOP replays),
//! then `--seconds` (default 10) of virtual time measured. The hook's own clock reads (two
//! `Instant::now()` per relay call, tens of ns) are inside the figure, the same for every
//! build (a thread CPU clock costs a system call per read, ~0.6 µs per packet here).
//!
//! Usage: `relay_cpu [N] [--seconds S] [--adaptation-off] [--rounds R]` (default N 100, R 3);
//! prints one line per round and the median.

use std::cell::Cell;
use std::time::{Duration, Instant};

use hallcast_rtc::EngineConfig;
use hallcast_rtc::sim::{Net, PeerId};

const CONF: &str = "hall";

thread_local! {
    /// When the current relay call began.
    static ENTERED: Cell<Option<Instant>> = const { Cell::new(None) };
    /// Time spent inside relay calls, and how many calls.
    static INSIDE: Cell<(Duration, u64)> = const { Cell::new((Duration::ZERO, 0)) };
}

fn relay_hook(entering: bool) {
    let now = Instant::now();
    if entering {
        ENTERED.with(|e| e.set(Some(now)));
    } else if let Some(since) = ENTERED.with(Cell::take) {
        INSIDE.with(|i| {
            let (d, calls) = i.get();
            i.set((d + (now - since), calls + 1));
        });
    }
}

fn received(net: &Net, viewers: &[PeerId]) -> usize {
    viewers
        .iter()
        .map(|v| net.viewer(*v).video.len() + net.viewer(*v).audio.len())
        .sum()
}

struct Round {
    ns_per_packet: f64,
    packets: usize,
    calls: u64,
    wall_s: f64,
}

fn round(n: usize, seconds: u64, adaptation: Option<u64>) -> Round {
    let wall = Instant::now();
    let mut net = Net::new();
    net.set_relay_hook(relay_hook);
    let r = net.add_relay(|c| c.adaptation = adaptation);
    let p = net.publish(r, CONF).expect("publish");
    assert!(
        net.run_until_cond(Duration::from_secs(3), |n| n.publisher(p).frames_sent > 0),
        "the publisher never connected"
    );
    net.run_for(Duration::from_secs(4));
    let viewers: Vec<PeerId> = (0..n)
        .map(|_| net.subscribe(r, CONF).expect("subscribe"))
        .collect();
    let ok = net.run_until_cond(Duration::from_secs(10), |net| {
        viewers
            .iter()
            .all(|v| net.peer(*v).core().connected_at.is_some())
    });
    assert!(ok, "not every viewer connected");
    net.run_for(Duration::from_secs(6));
    let before = received(&net, &viewers);
    INSIDE.with(|i| i.set((Duration::ZERO, 0)));
    net.run_for(Duration::from_secs(seconds));
    let (inside, calls) = INSIDE.with(Cell::get);
    let packets = received(&net, &viewers) - before;
    assert!(packets > 0, "nothing was forwarded");
    Round {
        ns_per_packet: inside.as_nanos() as f64 / packets as f64,
        packets,
        calls,
        wall_s: wall.elapsed().as_secs_f64(),
    }
}

fn main() {
    let mut n = 100;
    let mut seconds = 10;
    let mut rounds = 3;
    let mut adaptation = EngineConfig::default().adaptation;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seconds" => {
                seconds = args
                    .next()
                    .and_then(|s| s.parse().ok())
                    .expect("--seconds S")
            }
            "--rounds" => {
                rounds = args
                    .next()
                    .and_then(|s| s.parse().ok())
                    .expect("--rounds R")
            }
            "--adaptation-off" => adaptation = None,
            _ => n = a.parse().expect("a viewer count"),
        }
    }
    let mut figures = vec![];
    for i in 1..=rounds {
        let r = round(n, seconds, adaptation);
        println!(
            "round {i}: N = {n}, {:.3} µs relay CPU / received packet ({} packets in {seconds} s virtual, {} relay calls, wall {:.1} s)",
            r.ns_per_packet / 1e3,
            r.packets,
            r.calls,
            r.wall_s
        );
        figures.push(r.ns_per_packet);
    }
    figures.sort_by(f64::total_cmp);
    println!(
        "median: {:.3} µs (adaptation {})",
        figures[figures.len() / 2] / 1e3,
        if adaptation.is_some() { "on" } else { "off" }
    );
}
