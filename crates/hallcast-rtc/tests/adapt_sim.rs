//! Constrained links on virtual time (`hallcast_rtc::sim::LinkModel`): the capacity model
//! itself, with the real relay and real str0m peers on both ends, and what a viewer's
//! playback looks like behind it.

use std::time::{Duration, Instant};

use hallcast_rtc::relay::health::Liveness;
use hallcast_rtc::sim::{LinkModel, LinkTrace, Net, PeerId, PublisherOpts, RelayId};

const CONF: &str = "hall";

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn one_relay(net: &mut Net) -> RelayId {
    net.add_relay(|c| {
        c.liveness = Liveness {
            session_timeout: secs(3.0),
            connect_timeout: secs(4.0),
        }
    })
}

/// Runs until a publisher with `opts` on `relay` is connected and sending.
fn live_publisher(net: &mut Net, relay: RelayId, opts: PublisherOpts) -> PeerId {
    let p = net.publish_with(relay, CONF, opts).expect("publish");
    assert!(
        net.run_until_cond(secs(2.0), |n| n.publisher(p).frames_sent > 0),
        "the publisher never connected"
    );
    p
}

/// The viewer has received a whole keyframe and audio.
fn playing(net: &Net, v: PeerId) -> bool {
    let v = net.viewer(v);
    !v.complete_keyframes().is_empty() && !v.audio.is_empty()
}

mod capacity {
    //! The link model with real stacks on both ends. These hold whatever the relay's
    //! adaptation does: they constrain the publisher's uplink, where nobody adapts (the sim
    //! publisher sends at its fixed rate, its losses repaired by RTX).

    use super::*;

    /// A publisher of about 1 Mbit/s (the default stream) behind an uplink of `model`,
    /// set once it is live; the link's start.
    fn publisher_behind(net: &mut Net, r: RelayId, model: LinkModel) -> (PeerId, Instant) {
        let p = live_publisher(net, r, PublisherOpts::default());
        net.set_link(net.peer_addr(p), net.relay_addr(r), model);
        (p, net.now())
    }

    #[test]
    fn a_400_kbit_link_carries_at_most_400_kbit() {
        let mut net = Net::new();
        let r = one_relay(&mut net);
        let (p, t0) = publisher_behind(
            &mut net,
            r,
            LinkModel::new(LinkTrace::constant(400.0), 30_000),
        );
        let v = net.subscribe(r, CONF).expect("subscribe");
        net.run_until(t0 + secs(10.0));
        let link = net
            .link_stats(net.peer_addr(p), net.relay_addr(r))
            .expect("the link");
        // The publisher offers ~1 Mbit/s: the bottleneck is busy all the time, at its rate.
        for s in 2..10 {
            let (a, b) = (t0 + secs(f64::from(s)), t0 + secs(f64::from(s) + 1.0));
            let bps = link.throughput_bps(a, b);
            assert!(
                (0.9 * 400_000.0..=1.01 * 400_000.0).contains(&bps),
                "second {s}: {bps:.0} bit/s through a 400 kbit/s link"
            );
        }
        assert!(!link.queue_drops.is_empty(), "a full queue never dropped");
        // What reaches the viewer is no more than what crossed the link.
        let got = net.viewer(v).video_bps(t0 + secs(3.0), t0 + secs(10.0));
        assert!(got > 0.0 && got < 400_000.0, "viewer got {got:.0} bit/s");
    }

    #[test]
    fn the_queue_builds_delay_before_it_drops() {
        let mut net = Net::new();
        let r = one_relay(&mut net);
        let queue = 30_000;
        let (p, t0) = publisher_behind(
            &mut net,
            r,
            LinkModel::new(LinkTrace::constant(400.0), queue),
        );
        net.run_until(t0 + secs(6.0));
        let link = net
            .link_stats(net.peer_addr(p), net.relay_addr(r))
            .expect("the link");
        let first_drop = link.queue_drops[0];
        // A full queue holds 600 ms at 400 kbit/s; a datagram adds at most ~25 ms.
        let full = secs(queue as f64 * 8.0 / 400_000.0);
        let before = link.max_sojourn(t0, first_drop);
        assert!(
            before >= full.mul_f64(0.8),
            "delay reached only {before:?} before the first drop at {:?}",
            first_drop - t0
        );
        let worst = link.max_sojourn(t0, net.now());
        assert!(worst <= full + secs(0.03), "a datagram waited {worst:?}");
        // It started empty: the first datagram only waited for its own serialisation.
        let first = link.departures[0];
        assert!(first.left - first.sent <= secs(0.03), "{first:?}");
    }

    #[test]
    fn a_step_changes_throughput_at_the_step() {
        let mut net = Net::new();
        let r = one_relay(&mut net);
        let trace = LinkTrace::constant(2000.0).then(secs(4.0), 400.0);
        let (p, t0) = publisher_behind(&mut net, r, LinkModel::new(trace, 30_000));
        net.run_until(t0 + secs(9.0));
        let link = net
            .link_stats(net.peer_addr(p), net.relay_addr(r))
            .expect("the link");
        let at = |a: f64, b: f64| link.throughput_bps(t0 + secs(a), t0 + secs(b));
        // Before: all of the ~1 Mbit/s, below the rate; the queue only holds a keyframe's
        // burst (16 kB: 64 ms at 2 Mbit/s; the sim publisher does not pace).
        let before = at(1.0, 4.0);
        assert!(
            (800_000.0..1_600_000.0).contains(&before),
            "{before:.0} bit/s before"
        );
        let waited = link.max_sojourn(t0 + secs(1.0), t0 + secs(3.9));
        assert!(waited < secs(0.1), "{waited:?} in the queue before the step");
        // From the step on: the new rate, at once.
        for (a, b) in [(4.0, 4.5), (4.5, 6.0), (6.0, 9.0)] {
            let bps = at(a, b);
            assert!(
                (0.85 * 400_000.0..=1.01 * 400_000.0).contains(&bps),
                "{bps:.0} bit/s in [{a}, {b}) s"
            );
        }
    }

    #[test]
    fn loss_bursts_lose_about_their_share_and_the_relay_repairs_them() {
        let mut net = Net::new();
        let r = one_relay(&mut net);
        // 10 % loss in 300 ms bursts every 2 s, plenty of rate.
        let trace = LinkTrace::constant(5000.0).with_loss_bursts(
            secs(1.0),
            secs(2.0),
            secs(0.3),
            0.1,
            secs(7.0),
        );
        let (p, t0) = publisher_behind(&mut net, r, LinkModel::new(trace, 100_000));
        let v = net.subscribe(r, CONF).expect("subscribe");
        assert!(net.run_until_cond(secs(2.0), |n| playing(n, v)));
        net.run_until(t0 + secs(9.0));
        let link = net
            .link_stats(net.peer_addr(p), net.relay_addr(r))
            .expect("the link");
        let in_bursts = link
            .departures
            .iter()
            .filter(|d| {
                let t = d.left - t0;
                (1..7).step_by(2).any(|s| {
                    let s = f64::from(s);
                    t >= secs(s) && t < secs(s + 0.3)
                })
            })
            .count();
        let lost = link.n_lost();
        assert!(
            lost > 0 && lost < in_bursts / 4,
            "{lost} of {in_bursts} lost"
        );
        assert!(
            link.departures
                .iter()
                .filter(|d| d.lost)
                .all(|d| trace_in_burst(d.left - t0)),
            "a loss outside a burst"
        );
        // NACK/RTX between publisher and relay: the viewer misses nothing.
        assert_eq!(net.viewer(v).missing_video(), Vec::<u64>::new());
    }

    fn trace_in_burst(t: Duration) -> bool {
        (1..7)
            .step_by(2)
            .any(|s| t >= secs(f64::from(s)) && t < secs(f64::from(s) + 0.3))
    }

    #[test]
    fn an_ample_downlink_plays_without_freezes() {
        let mut net = Net::new();
        let r = one_relay(&mut net);
        let _p = live_publisher(&mut net, r, PublisherOpts::default());
        let v = net.subscribe(r, CONF).expect("subscribe");
        net.set_link(
            net.relay_addr(r),
            net.peer_addr(v),
            LinkModel::new(LinkTrace::constant(20_000.0), 200_000),
        );
        assert!(net.run_until_cond(secs(2.0), |n| playing(n, v)));
        let t0 = net.now();
        net.run_for(secs(5.0));
        let viewer = net.viewer(v);
        let playback = viewer.playback();
        assert_eq!(playback.freezes, vec![], "freezes on an ample link");
        // 30 fps.
        let n = playback.n_rendered(t0, net.now());
        assert!((140..=160).contains(&n), "{n} frames rendered in 5 s");
        let gaps = viewer.audio_gaps(t0, net.now(), secs(0.05));
        assert_eq!(gaps, vec![], "audio gaps");
        let bps = viewer.video_bps(t0, net.now());
        assert!((800_000.0..1_300_000.0).contains(&bps), "{bps:.0} bit/s");
    }
}
