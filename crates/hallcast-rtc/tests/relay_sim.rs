//! The relay state machine driven on virtual time through the in-memory network
//! (`hallcast_rtc::sim`): str0m publishers and viewers, datagram loss, shards, and a relay
//! pulling from another relay. Each test runs a few virtual seconds.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use hallcast_core::{Layer, VideoStatus};
use hallcast_rtc::relay::health::Liveness;
use hallcast_rtc::relay::{Command, Reply};
use hallcast_rtc::sim::{
    Datagram, LinkModel, LinkTrace, Net, PeerId, PublisherOpts, RelayId, rtp_info,
};
use hallcast_rtc::{Delivery, EndReason, EngineEvent, Role, SessionId, SnapshotConference};

const CONF: &str = "hall";

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// One relay with short liveness limits.
fn one_relay(net: &mut Net) -> RelayId {
    net.add_relay(|c| {
        c.liveness = Liveness {
            session_timeout: secs(3.0),
            connect_timeout: secs(4.0),
        }
    })
}

/// Runs until `p` is connected and has sent video for a moment.
fn live_publisher(net: &mut Net, relay: RelayId) -> PeerId {
    live_publisher_with(net, relay, PublisherOpts::default())
}

/// The same with `opts`.
fn live_publisher_with(net: &mut Net, relay: RelayId, opts: PublisherOpts) -> PeerId {
    net.live_publisher(relay, CONF, opts)
}

/// The viewer has received a whole keyframe and audio.
fn playing(net: &Net, v: PeerId) -> bool {
    let v = net.viewer(v);
    !v.complete_keyframes().is_empty() && !v.audio.is_empty()
}

fn session(net: &Net, p: PeerId) -> SessionId {
    net.peer(p).core().session.expect("a session")
}

/// When and why the relay ended `session`.
fn ended(net: &Net, session: SessionId) -> Option<(Instant, EndReason)> {
    net.events().iter().find_map(|(t, _, e)| match e {
        EngineEvent::SessionEnded {
            session: s, reason, ..
        } if *s == session => Some((*t, *reason)),
        _ => None,
    })
}

/// Video and audio arrived complete: no sequence gap, a whole keyframe, packets at a
/// plausible rate since `since`.
fn assert_plays_everything(net: &Net, v: PeerId, since: Instant, what: &str) {
    let viewer = net.viewer(v);
    assert!(
        !viewer.complete_keyframes().is_empty(),
        "{what}: no whole keyframe"
    );
    assert_eq!(
        viewer.missing_video(),
        Vec::<u64>::new(),
        "{what}: video gaps"
    );
    assert_eq!(
        viewer.missing_audio(),
        Vec::<u64>::new(),
        "{what}: audio gaps"
    );
    let late_video = viewer.video.iter().filter(|r| r.at >= since).count();
    let late_audio = viewer.audio.iter().filter(|r| r.at >= since).count();
    let span = net.now().saturating_duration_since(since).as_secs_f64();
    // About 95 video packets and 50 audio packets a second.
    assert!(
        late_video as f64 >= 60.0 * span,
        "{what}: {late_video} video packets in {span:.1} s"
    );
    assert!(
        late_audio as f64 >= 40.0 * span,
        "{what}: {late_audio} audio packets in {span:.1} s"
    );
}

/// Keyframe requests at the publisher are at least a second apart.
fn assert_coalesced(requests: &[(Instant, str0m::media::KeyframeRequestKind)]) {
    for w in requests.windows(2) {
        let gap = w[1].0 - w[0].0;
        assert!(
            gap >= secs(0.999),
            "two keyframe requests {gap:?} apart: {requests:?}"
        );
    }
}

#[test]
fn viewer_joining_mid_gop_gets_the_cached_keyframe_without_asking_the_publisher() {
    let mut net = Net::new();
    let r = one_relay(&mut net);
    let p = live_publisher(&mut net, r);
    let first_idr = net.publisher(p).idrs_sent[0];
    // 0.7 s into the 2 s GOP.
    net.run_until(first_idr + secs(0.7));
    let joined = net.now();
    let v = net.subscribe(r, CONF).expect("subscribe");
    assert!(net.run_until_cond(secs(1.0), |n| playing(n, v)));
    let keyframe = net.viewer(v).complete_keyframes()[0];
    let next_idr = first_idr + net.publisher(p).opts.gop;
    assert!(
        keyframe - joined < secs(0.3),
        "keyframe {:?} after joining",
        keyframe - joined
    );
    assert!(keyframe < next_idr, "the keyframe came from the cache");
    net.run_for(secs(1.5));
    assert_eq!(
        net.publisher(p)
            .keyframe_requests_between(joined, net.now()),
        0,
        "the join asked the publisher for a keyframe: {:?}",
        net.publisher(p).keyframe_requests
    );
    assert_plays_everything(&net, v, joined + secs(0.5), "joiner");
    assert_eq!(net.viewer(v).plis_sent, 0);
}

#[test]
fn lost_video_is_repaired_by_rtx_after_nacks() {
    let mut net = Net::new();
    let r = one_relay(&mut net);
    let _p = live_publisher(&mut net, r);
    let v = net.subscribe(r, CONF).expect("subscribe");
    let video_pts = net.viewer(v).video_pts.clone();
    let rtx_pts = net.viewer(v).rtx_pts.clone();
    let repairs = Rc::new(Cell::new(0u32));
    let seen = repairs.clone();
    // 5 % of the relay's video datagrams to the viewer (not their repairs) for 3 s.
    let stop_at = net.now() + secs(3.0);
    net.set_loss(
        net.relay_addr(r),
        net.peer(v).core().addr,
        Box::new(move |d: &Datagram| {
            let Some(h) = rtp_info(&d.contents) else {
                return false;
            };
            if rtx_pts.contains(&h.pt) {
                seen.set(seen.get() + 1);
            }
            d.sent < stop_at && video_pts.contains(&h.pt) && h.seq % 20 == 7
        }),
    );
    net.run_until(stop_at + secs(1.0));
    assert!(net.n_dropped >= 10, "only {} dropped", net.n_dropped);
    let viewer = net.viewer(v);
    assert!(viewer.nacks_sent > 0, "no NACK sent");
    assert!(
        u64::from(repairs.get()) >= net.n_dropped,
        "{} RTX packets for {} losses",
        repairs.get(),
        net.n_dropped
    );
    assert_eq!(
        viewer.missing_video(),
        Vec::<u64>::new(),
        "unrepaired losses"
    );
    assert!(
        viewer.video.len() > 300,
        "{} video packets",
        viewer.video.len()
    );
    assert!(playing(&net, v));
}

#[test]
fn simultaneous_plis_from_ten_viewers_reach_the_publisher_coalesced() {
    let mut net = Net::new();
    let r = one_relay(&mut net);
    let p = live_publisher(&mut net, r);
    let viewers: Vec<PeerId> = (0..10)
        .map(|_| net.subscribe(r, CONF).expect("subscribe"))
        .collect();
    assert!(net.run_until_cond(secs(2.0), |n| viewers.iter().all(|v| playing(n, *v))));
    let t0 = net.now();
    // Every viewer asks at once, then again every 100 ms for 2.5 s.
    for round in 0..25 {
        for v in &viewers {
            net.request_keyframe(*v);
        }
        net.run_until(t0 + secs(0.1 * f64::from(round + 1)));
    }
    net.run_for(secs(0.5));
    let requests = net.publisher(p).keyframe_requests.clone();
    let after: Vec<_> = requests.iter().filter(|(t, _)| *t >= t0).copied().collect();
    assert!(
        !after.is_empty(),
        "no keyframe request reached the publisher"
    );
    assert!(after.len() <= 4, "{after:?}");
    assert_coalesced(&requests);
}

/// How the first publisher goes away.
#[derive(Clone, Copy, PartialEq)]
enum Leave {
    /// Its session is ended (DELETE), then its page goes away.
    Deleted,
    /// It vanishes; the relay ends it after the session timeout.
    Vanished,
}

fn viewers_continue_across_a_publisher_reconnect(leave: Leave) {
    let mut net = Net::new();
    let r = one_relay(&mut net);
    let p1 = live_publisher(&mut net, r);
    let viewers = [
        net.subscribe(r, CONF).unwrap(),
        net.subscribe(r, CONF).unwrap(),
    ];
    net.run_for(secs(2.0));
    assert!(viewers.iter().all(|v| playing(&net, *v)));
    match leave {
        Leave::Deleted => {
            assert!(net.end(p1, EndReason::Deleted));
            net.vanish(p1);
            net.run_for(secs(1.0));
        }
        Leave::Vanished => {
            net.vanish(p1);
            net.run_for(secs(1.0));
            // Still live as far as the relay knows.
            assert!(matches!(
                net.publish(r, CONF),
                Err(hallcast_rtc::EngineError::AlreadyLive)
            ));
            let s1 = session(&net, p1);
            assert!(net.run_until_cond(secs(3.0), |n| ended(n, s1).is_some()));
            assert_eq!(ended(&net, s1).unwrap().1, EndReason::Timeout);
        }
    }
    let back = net.now();
    let p2 = net.publish(r, CONF).expect("publishing again");
    net.run_for(secs(3.0));
    assert!(net.publisher(p2).frames_sent > 60);
    for v in viewers {
        assert_eq!(ended(&net, session(&net, v)), None, "the viewer was ended");
        // The new publisher's first IDR, forwarded at once.
        let idr = net.publisher(p2).idrs_sent[0];
        let keyframes = net.viewer(v).complete_keyframes();
        assert!(
            keyframes.iter().any(|t| *t >= idr && *t - idr < secs(0.1)),
            "no keyframe right after the new publisher's first IDR: {keyframes:?}"
        );
        let after = net.viewer(v).video.iter().filter(|x| x.at > back).count();
        assert!(after > 150, "{after} video packets after the reconnect");
        // Sequence numbers go on from where the first publisher stopped: no gap, no jump.
        assert_plays_everything(&net, v, back + secs(0.5), "viewer");
    }
}

#[test]
fn viewers_continue_contiguously_across_a_publisher_reconnect_after_delete() {
    viewers_continue_across_a_publisher_reconnect(Leave::Deleted);
}

#[test]
fn viewers_continue_contiguously_across_a_publisher_reconnect_after_a_timeout() {
    viewers_continue_across_a_publisher_reconnect(Leave::Vanished);
}

#[test]
fn a_silent_viewer_is_ended_after_the_session_timeout() {
    let mut net = Net::new();
    let r = one_relay(&mut net);
    let _p = live_publisher(&mut net, r);
    let v = net.subscribe(r, CONF).unwrap();
    assert!(net.run_until_cond(secs(1.0), |n| playing(n, v)));
    net.run_for(secs(0.5));
    let gone = net.now();
    net.vanish(v);
    net.run_for(secs(2.5));
    assert_eq!(ended(&net, session(&net, v)), None, "ended too early");
    net.run_for(secs(1.5));
    let (at, reason) = ended(&net, session(&net, v)).expect("the silent viewer was not ended");
    assert_eq!(reason, EndReason::Timeout);
    let after = at - gone;
    assert!(
        after >= secs(3.0) - secs(0.3) && after <= secs(3.0) + secs(0.3),
        "ended {after:?} after going silent"
    );
}

#[test]
fn a_session_that_never_connects_is_ended_after_the_connect_timeout() {
    let mut net = Net::new();
    let r = one_relay(&mut net);
    let _p = live_publisher(&mut net, r);
    let created = net.now();
    let v = net.subscribe(r, CONF).unwrap();
    // The page got its answer and went away before any ICE check.
    net.vanish(v);
    net.run_for(secs(3.5));
    assert_eq!(ended(&net, session(&net, v)), None, "ended too early");
    net.run_for(secs(1.0));
    let (at, reason) = ended(&net, session(&net, v)).expect("not ended");
    assert_eq!(reason, EndReason::Timeout);
    assert!(at - created >= secs(4.0) && at - created <= secs(4.3));
    assert_eq!(net.relay(r).n_sessions(), 1, "only the publisher is left");
}

#[test]
fn a_vanished_viewer_does_not_disturb_the_others() {
    let mut net = Net::new();
    let r = one_relay(&mut net);
    let _p = live_publisher(&mut net, r);
    let viewers: Vec<PeerId> = (0..3).map(|_| net.subscribe(r, CONF).unwrap()).collect();
    assert!(net.run_until_cond(secs(1.0), |n| viewers.iter().all(|v| playing(n, *v))));
    let gone = net.now();
    net.vanish(viewers[0]);
    net.run_for(secs(4.5));
    assert!(ended(&net, session(&net, viewers[0])).is_some());
    for v in &viewers[1..] {
        assert_eq!(ended(&net, session(&net, *v)), None);
        assert_plays_everything(&net, *v, gone, "remaining viewer");
        // Still receiving at the end.
        let last = net.viewer(*v).video.last().unwrap().at;
        assert!(net.now() - last < secs(0.1));
    }
}

#[test]
fn shards_of_one_process_serve_viewers_from_one_publisher() {
    let mut net = Net::new();
    let shards = net.add_shards(2, |_| {});
    shards_serve_viewers_from_one_publisher(&mut net, &shards);
}

/// The same through the shards' sinks (the engine's way: a copy for another shard leaves
/// the moment it is made): the messages keep their order, so the other shard's viewers play
/// everything and its keyframe requests reach the publisher coalesced.
#[test]
fn shards_with_sinks_serve_viewers_from_one_publisher() {
    let mut net = Net::new();
    let shards = net.add_shards_with_sinks(2, |_| {});
    shards_serve_viewers_from_one_publisher(&mut net, &shards);
    assert!(
        net.n_shard_mail > 100,
        "the shards' messages did not go through their sinks ({})",
        net.n_shard_mail
    );
    assert_eq!(
        net.n_shard_mail_out_of_order, 0,
        "a copy handed over twice or out of order"
    );
}

/// A publisher that comes back to a conference whose viewers on both shards stayed: the
/// new source's relay consumer for the other shard sits after those viewers in its router,
/// and its copies still go through the sink once each, in order, ahead of the local ones
/// (`Relay::apply_outputs`); every viewer plays on.
#[test]
fn shards_with_sinks_serve_viewers_across_a_publisher_reconnect() {
    let mut net = Net::new();
    let shards = net.add_shards_with_sinks(2, |_| {});
    let p1 = live_publisher(&mut net, shards[0]);
    let viewers: Vec<(usize, PeerId)> = [0, 1, 0, 1]
        .into_iter()
        .map(|s| (s, net.subscribe(shards[s], CONF).expect("subscribe")))
        .collect();
    assert!(net.run_until_cond(secs(1.5), |n| viewers.iter().all(|(_, v)| playing(n, *v))));
    assert!(net.end(p1, EndReason::Deleted));
    net.vanish(p1);
    net.run_for(secs(1.0));
    let back = net.now();
    let p2 = net.publish(shards[0], CONF).expect("publishing again");
    net.run_for(secs(3.0));
    assert!(net.publisher(p2).frames_sent > 60);
    for (s, v) in &viewers {
        assert_eq!(ended(&net, session(&net, *v)), None, "the viewer was ended");
        let after = net.viewer(*v).video.iter().filter(|x| x.at > back).count();
        assert!(
            after > 150,
            "{after} video packets after the reconnect on shard {s}"
        );
        assert_plays_everything(&net, *v, back + secs(0.5), &format!("viewer on shard {s}"));
    }
    assert!(net.n_shard_mail > 100, "{}", net.n_shard_mail);
    assert_eq!(
        net.n_shard_mail_out_of_order, 0,
        "a copy handed over twice or out of order"
    );
}

fn shards_serve_viewers_from_one_publisher(net: &mut Net, shards: &[RelayId]) {
    let p = live_publisher(net, shards[0]);
    let viewers: Vec<(usize, PeerId)> = [0, 1, 0, 1]
        .into_iter()
        .map(|s| (s, net.subscribe(shards[s], CONF).expect("subscribe")))
        .collect();
    let start = net.now();
    assert!(net.run_until_cond(secs(1.5), |n| viewers.iter().all(|(_, v)| playing(n, *v))));
    net.run_for(secs(2.0));
    for (s, v) in &viewers {
        assert_plays_everything(net, *v, start + secs(1.0), &format!("viewer on shard {s}"));
        assert_eq!(net.peer(*v).core().relay, shards[*s]);
    }
    // A PLI from a viewer on shard 1 reaches the publisher on shard 0; a burst of them from
    // both shards reaches it coalesced.
    let t0 = net.now();
    net.request_keyframe(viewers[1].1);
    net.run_for(secs(0.5));
    assert_eq!(
        net.publisher(p).keyframe_requests_between(t0, net.now()),
        1,
        "the PLI from shard 1 did not reach the publisher: {:?}",
        net.publisher(p).keyframe_requests
    );
    net.run_for(secs(1.0));
    let t1 = net.now();
    for round in 0..15 {
        for (_, v) in &viewers {
            net.request_keyframe(*v);
        }
        net.run_until(t1 + secs(0.1 * f64::from(round + 1)));
    }
    net.run_for(secs(0.5));
    let requests = net.publisher(p).keyframe_requests.clone();
    assert!(requests.iter().any(|(t, _)| *t >= t1));
    assert_coalesced(&requests);
}

/// `downstream` pulls the conference from `upstream`, connected: the pull's session at
/// `downstream` and its relay consumer's at `upstream`.
fn connected_pull(net: &mut Net, downstream: RelayId, upstream: RelayId) -> (SessionId, SessionId) {
    let (pull, consumer) = net.pull(downstream, upstream, CONF).expect("pull");
    assert!(
        net.run_until_cond(secs(2.0), |n| n.events().iter().any(|(_, r, e)| {
            *r == downstream
                && matches!(e, EngineEvent::SessionConnected { session, .. } if *session == pull)
        })),
        "the pull never connected"
    );
    (pull, consumer)
}

#[test]
fn a_relay_pulling_from_another_serves_its_viewers() {
    let mut net = Net::new();
    let upstream = one_relay(&mut net);
    let downstream = one_relay(&mut net);
    let p = live_publisher(&mut net, upstream);
    let (_, consumer) = connected_pull(&mut net, downstream, upstream);
    // Upstream it is a relay consumer, not a viewer: not a point, not counted as one.
    assert!(
        net.events().iter().any(|(_, r, e)| *r == upstream
            && matches!(e, EngineEvent::SessionConnected { session, role: Role::Relay, .. }
                if *session == consumer)),
        "the upstream relay did not take the pull as a relay consumer"
    );
    let snap = net.relay(upstream).snapshot(net.now(), 0);
    let conf = snap
        .conferences
        .iter()
        .find(|c| &*c.id == CONF)
        .expect("conference");
    assert_eq!((conf.n_relays, conf.n_subscribers), (1, 0), "{conf:?}");
    let v = net
        .subscribe(downstream, CONF)
        .expect("subscribe downstream");
    let start = net.now();
    assert!(
        net.run_until_cond(secs(2.0), |n| playing(n, v)),
        "the downstream viewer got no keyframe and audio"
    );
    net.run_for(secs(2.0));
    assert_plays_everything(&net, v, start + secs(0.5), "downstream viewer");
    // The downstream viewer's PLI goes up through the pull to the publisher.
    let t0 = net.now();
    net.request_keyframe(v);
    net.run_for(secs(0.5));
    assert_eq!(
        net.publisher(p).keyframe_requests_between(t0, net.now()),
        1,
        "{:?}",
        net.publisher(p).keyframe_requests
    );
}

/// Runs until a simulcast publisher (q/h/f) on `relay` is connected and sending.
fn live_simulcast_publisher(net: &mut Net, relay: RelayId) -> PeerId {
    live_publisher_with(net, relay, PublisherOpts::simulcast())
}

/// A relay with adaptation on (estimators starting at `start_bps`), a simulcast publisher whose
/// layer bitrates are measured, and a viewer that has just subscribed.
fn measured_viewer_of_simulcast(net: &mut Net, start_bps: u64) -> (RelayId, PeerId) {
    let (r, _p, v) = measured_viewer_with(net, start_bps, PublisherOpts::simulcast());
    (r, v)
}

/// Runs until the relay forwards `layer` to session `s`, at most `within`.
fn await_forwarding(net: &mut Net, r: RelayId, s: SessionId, layer: Layer, within: Duration) {
    assert!(
        net.run_until_cond(within, |n| video_status(n, r, s)
            == Some(VideoStatus::Forwarding { layer })),
        "not on {layer:?} within {within:?}: still at {:?}",
        video_status(net, r, s)
    );
}

/// [`measured_viewer_of_simulcast`] on a downlink of `kbps` with a queue of `queue_bytes`.
fn measured_viewer_on_link(
    net: &mut Net,
    start_bps: u64,
    kbps: f64,
    queue_bytes: usize,
) -> (RelayId, PeerId) {
    let (r, v) = measured_viewer_of_simulcast(net, start_bps);
    net.set_link(
        net.relay_addr(r),
        net.peer_addr(v),
        LinkModel::new(LinkTrace::constant(kbps), queue_bytes),
    );
    (r, v)
}

/// [`measured_viewer_of_simulcast`] with a publisher of `opts`; also returns the publisher.
fn measured_viewer_with(
    net: &mut Net,
    start_bps: u64,
    opts: PublisherOpts,
) -> (RelayId, PeerId, PeerId) {
    let r = net.add_relay(|c| c.adaptation = Some(start_bps));
    let p = live_publisher_with(net, r, opts);
    net.run_for(secs(1.5)); // layer bitrates measured
    let v = net.subscribe(r, CONF).expect("subscribe");
    (r, p, v)
}

/// tests/adaptation.rs's step on `v`'s downlink from now: 5 Mbit/s, then 400 kbit/s after
/// `after`, behind a shaper of 8 KB burst and 200 ms of queue at the low rate. Returns when
/// the step comes.
fn step_down_to_400_kbit(net: &mut Net, r: RelayId, v: PeerId, after: Duration) -> Instant {
    net.set_link(
        net.relay_addr(r),
        net.peer_addr(v),
        LinkModel::new(LinkTrace::constant(5_000.0).then(after, 400.0), 18_000),
    );
    net.now() + after
}

/// When the relay first switched `s` below the top layer, among the events kept.
fn switched_down(net: &Net, s: SessionId) -> Option<Instant> {
    net.events().iter().find_map(|(at, _, e)| match e {
        EngineEvent::Adaptation {
            session,
            target: Some(l),
            ..
        } if *session == s && *l < Layer(2) => Some(*at),
        _ => None,
    })
}

/// The conference as `relay`'s snapshot shows it now.
fn conference(net: &Net, relay: RelayId) -> SnapshotConference {
    net.relay(relay)
        .snapshot(net.now(), 0)
        .conferences
        .into_iter()
        .find(|c| &*c.id == CONF)
        .expect("conference")
}

/// What `relay`'s snapshot says about a session's video.
fn video_status(net: &Net, relay: RelayId, s: SessionId) -> Option<VideoStatus> {
    net.relay(relay)
        .snapshot(net.now(), 0)
        .sessions
        .into_iter()
        .find(|x| x.id == s)
        .expect("the session")
        .video
}

/// Payload bytes of every frame the viewer received whole (through its marker), and
/// whether it is a keyframe, in order.
fn whole_frames(net: &Net, v: PeerId) -> Vec<(bool, usize)> {
    whole_frames_since(net, v, None)
}

/// [`whole_frames`] of the packets that arrived after `since` (all with `None`).
fn whole_frames_since(net: &Net, v: PeerId, since: Option<Instant>) -> Vec<(bool, usize)> {
    let mut video: Vec<_> = net
        .viewer(v)
        .video
        .iter()
        .filter(|r| since.is_none_or(|t| r.at > t))
        .cloned()
        .collect();
    video.sort_by_key(|r| r.seq);
    video.dedup_by_key(|r| r.seq);
    let mut frames = vec![];
    let mut cur: Option<(u32, bool, usize)> = None;
    for r in &video {
        let (ts, key, bytes) = match cur {
            Some((ts, key, bytes)) if ts == r.ts => (ts, key, bytes + r.len),
            _ => (r.ts, r.keyframe_start, r.len),
        };
        cur = Some((ts, key, bytes));
        if r.marker {
            frames.push((key, bytes));
            cur = None;
        }
    }
    frames
}

/// The viewer's frames are all the top layer's (`f`: P frames of 4.4 kB, IDRs of 42 kB);
/// the others' are far smaller (0.5 and 1.8 kB, 8 and 18.8 kB).
fn assert_top_layer_frames(net: &Net, v: PeerId, what: &str) {
    let frames = whole_frames(net, v);
    assert!(frames.len() > 60, "{what}: {} whole frames", frames.len());
    let top = PublisherOpts::simulcast().simulcast.unwrap()[2];
    for (key, bytes) in &frames {
        let want = if *key { top.idr_bytes } else { top.p_bytes };
        assert!(
            *bytes >= want && *bytes <= want + 100,
            "{what}: a {} of {bytes} bytes, not the top layer's {want}",
            if *key { "keyframe" } else { "P frame" }
        );
    }
    assert!(
        frames.iter().any(|(key, _)| *key),
        "{what}: no whole keyframe"
    );
}

/// Each measured layer bitrate is within 30 % of what the publisher wrote on that layer
/// over the last second before `lag` ago (the meter counts arrivals, `lag` later).
fn assert_layer_bitrates(net: &Net, relay: RelayId, p: PeerId, lag: Duration, what: &str) {
    let measured = conference(net, relay).layer_bitrates;
    let to = net.now() - lag;
    for (layer, bps) in measured.iter().enumerate() {
        let sent = net.publisher(p).sent_bps(layer, to - secs(1.0), to);
        let ratio = *bps as f64 / sent as f64;
        assert!(
            (0.7..=1.3).contains(&ratio),
            "{what}: layer {layer} measured at {bps} bit/s, sent at {sent}: {measured:?}"
        );
    }
}

/// A PLI from the viewer (on the top layer) reaches the publisher once, for RID `f`.
fn assert_pli_reaches_the_top_layer(net: &mut Net, v: PeerId, p: PeerId) {
    let t0 = net.now();
    let before = net.publisher(p).keyframe_requests.len();
    net.request_keyframe(v);
    net.run_for(secs(0.5));
    let publisher = net.publisher(p);
    assert_eq!(
        publisher.keyframe_requests_between(t0, net.now()),
        1,
        "{:?}",
        publisher.keyframe_requests
    );
    assert_eq!(
        publisher.keyframe_request_rids[before..],
        [Some("f".into())],
        "the request was not for the top layer"
    );
}

#[test]
fn a_viewer_receives_the_top_layer_of_a_simulcast_publisher() {
    let mut net = Net::new();
    let r = one_relay(&mut net);
    let p = live_simulcast_publisher(&mut net, r);
    // The relay has taken every layer by its RID.
    net.run_for(secs(0.5));
    assert!(conference(&net, r).layer_bitrates.iter().all(|b| *b > 0));
    let v = net.subscribe(r, CONF).expect("subscribe");
    let start = net.now();
    assert!(net.run_until_cond(secs(1.0), |n| playing(n, v)));
    net.run_for(secs(2.5));
    assert_eq!(
        video_status(&net, r, session(&net, v)),
        Some(VideoStatus::Forwarding { layer: Layer(2) })
    );
    assert_top_layer_frames(&net, v, "viewer");
    assert_plays_everything(&net, v, start + secs(0.5), "viewer");
    // The top layer is about 110 packets a second (the middle one about 60).
    let late = net
        .viewer(v)
        .video
        .iter()
        .filter(|x| x.at >= start + secs(1.0))
        .count();
    assert!(late > 180, "{late} video packets in 2 s");
    assert_pli_reaches_the_top_layer(&mut net, v, p);
}

#[test]
fn measured_layer_bitrates_follow_the_publisher() {
    let mut net = Net::new();
    let r = one_relay(&mut net);
    let p = live_simulcast_publisher(&mut net, r);
    let first_idr = net.publisher(p).idrs_sent[0];
    // A window with the second IDRs in it, then one with P frames only.
    net.run_until(first_idr + secs(2.5));
    assert_layer_bitrates(&net, r, p, net.delay, "with IDRs");
    net.run_until(first_idr + secs(3.7));
    assert_layer_bitrates(&net, r, p, net.delay, "P frames");
    // And they are the three layers' own: about 150 kbit/s, 500 kbit/s, 1.2 Mbit/s.
    let measured = conference(&net, r).layer_bitrates;
    for (bps, nominal) in measured.iter().zip([150_000.0, 500_000.0, 1_200_000.0]) {
        let ratio = *bps as f64 / nominal;
        assert!((0.6..=1.4).contains(&ratio), "{measured:?}");
    }
}

#[test]
fn a_pulling_relay_receives_every_layer_and_serves_them() {
    let mut net = Net::new();
    let upstream = one_relay(&mut net);
    let downstream = one_relay(&mut net);
    let p = live_simulcast_publisher(&mut net, upstream);
    let (_, consumer) = connected_pull(&mut net, downstream, upstream);
    let v = net
        .subscribe(downstream, CONF)
        .expect("subscribe downstream");
    let start = net.now();
    assert!(
        net.run_until_cond(secs(2.0), |n| playing(n, v)),
        "the downstream viewer got no keyframe and audio"
    );
    net.run_for(secs(2.5));
    // Upstream forwards every layer to the pull; downstream measures all three.
    assert_eq!(
        video_status(&net, upstream, consumer),
        Some(VideoStatus::Forwarding { layer: Layer(2) })
    );
    let layers = net.relay(downstream).snapshot(net.now(), 0);
    let conf = layers.conferences.iter().find(|c| &*c.id == CONF).unwrap();
    assert!(conf.layer_bitrates.iter().all(|b| *b > 0), "{conf:?}");
    assert_layer_bitrates(&net, downstream, p, net.delay * 2, "downstream");
    assert_layer_bitrates(&net, upstream, p, net.delay, "upstream");
    // The downstream viewer gets the top layer, whole.
    assert_eq!(
        video_status(&net, downstream, session(&net, v)),
        Some(VideoStatus::Forwarding { layer: Layer(2) })
    );
    assert_top_layer_frames(&net, v, "downstream viewer");
    assert_plays_everything(&net, v, start + secs(0.5), "downstream viewer");
    // Its PLI goes up the pull on the top layer's section, to the top layer's RID.
    assert_pli_reaches_the_top_layer(&mut net, v, p);
}

/// `Command::SetVideo` on `v`'s session.
fn set_video(net: &mut Net, r: RelayId, v: PeerId, max_layer: Layer, paused: bool) {
    let session = session(net, v);
    match net.command(
        r,
        Command::SetVideo {
            session,
            max_layer,
            paused,
        },
    ) {
        Reply::Done(res) => res.expect("SetVideo"),
        other => panic!("unexpected reply to SetVideo: {other:?}"),
    }
}

/// The delivery states the relay reported for `session`, in order.
/// Resumes `v`'s video (capped at the top layer) and runs until a whole keyframe reaches it,
/// within `limit`; returns when it resumed.
fn resume_until_a_keyframe(net: &mut Net, r: RelayId, v: PeerId, limit: Duration) -> Instant {
    let resumed_at = net.now();
    set_video(net, r, v, Layer(2), false);
    assert!(
        net.run_until_cond(limit, |n| n
            .viewer(v)
            .complete_keyframes()
            .iter()
            .any(|t| *t > resumed_at)),
        "no keyframe after resuming"
    );
    resumed_at
}

fn deliveries(net: &Net, session: SessionId) -> Vec<Delivery> {
    net.events()
        .iter()
        .filter_map(|(_, _, e)| match e {
            EngineEvent::Delivery {
                session: s, state, ..
            } if *s == session => Some(*state),
            _ => None,
        })
        .collect()
}

#[test]
fn a_paused_viewer_keeps_its_audio_and_resumes_video_at_a_keyframe() {
    let mut net = Net::new();
    let r = one_relay(&mut net);
    let _p = live_publisher(&mut net, r);
    let v = net.subscribe(r, CONF).expect("subscribe");
    let other = net.subscribe(r, CONF).expect("subscribe");
    assert!(net.run_until_cond(secs(1.0), |n| playing(n, v) && playing(n, other)));
    net.run_for(secs(0.5));
    let s = session(&net, v);

    set_video(&mut net, r, v, Layer(2), true);
    let paused_at = net.now();
    net.run_for(secs(3.0));
    assert_eq!(video_status(&net, r, s), Some(VideoStatus::Paused));
    let resumed_at = net.now();
    let viewer = net.viewer(v);
    let video_while_paused = viewer
        .video
        .iter()
        .filter(|x| x.at > paused_at + net.delay * 2 && x.at <= resumed_at)
        .count();
    assert_eq!(video_while_paused, 0, "video reached a paused viewer");
    let audio_while_paused = viewer
        .audio
        .iter()
        .filter(|x| x.at > paused_at && x.at <= resumed_at)
        .count();
    assert!(
        audio_while_paused >= 120,
        "{audio_while_paused} audio packets in 3 s of pause"
    );
    // The health policy says so: audio only.
    assert_eq!(deliveries(&net, s).last(), Some(&Delivery::AudioOnly));

    resume_until_a_keyframe(&mut net, r, v, secs(2.5));
    net.run_for(secs(1.0));
    assert_eq!(
        video_status(&net, r, s),
        Some(VideoStatus::Forwarding { layer: Layer(0) })
    );
    // One stream to the browser: no sequence gap across the pause, audio never broke.
    assert_plays_everything(&net, v, net.now() - secs(0.8), "resumed viewer");
    assert_eq!(deliveries(&net, s).last(), Some(&Delivery::Flowing));
    // The other viewer saw nothing of it.
    assert_plays_everything(&net, other, paused_at, "other viewer");
}

/// A viewer paused while its join's GOP replay still waits in the backlog: none of the
/// replay reaches it paused, and its stream numbers on from what it received without
/// reusing a number (a browser's SRTP drops a reused number as a replay, silently: no gap
/// to NACK, no picture — a late joiner under load saw none for 5 to 20 s).
#[test]
fn a_viewer_paused_during_its_replay_gets_none_of_it_and_no_reused_numbers() {
    let mut net = Net::new();
    // Measured viewers: the replay is paced (what the pacer holds is dropped on a pause
    // too, and the stream is numbered from the first packet dropped).
    let r = net.add_relay(|c| c.adaptation = Some(1_000_000));
    let p = live_publisher_with(
        &mut net,
        r,
        PublisherOpts {
            gop: secs(4.0),
            ..PublisherOpts::default()
        },
    );
    // 3.6 s into the GOP: a replay of ~350 packets, more than one turn of the backlog.
    let first_idr = net.publisher(p).idrs_sent[0];
    net.run_until(first_idr + secs(3.6));
    let v = net.subscribe(r, CONF).expect("subscribe");
    let parked = |n: &Net| n.relay(r).stats().backlog_packets.load(Relaxed);
    assert!(
        net.run_until_cond(secs(1.0), |n| parked(n) > 0),
        "the joiner's replay was never parked"
    );
    set_video(&mut net, r, v, Layer(2), true);
    let paused_at = net.now();
    net.run_for(secs(2.0));
    // What str0m's pacer already held may still leave: at most the pacer's gate (12 kB,
    // under 50 ms at str0m's pace of this link's estimate).
    let late: Vec<u64> = net
        .viewer(v)
        .video
        .iter()
        .filter(|x| x.at > paused_at + Duration::from_millis(50) + net.delay * 2)
        .map(|x| x.seq)
        .collect();
    assert!(late.is_empty(), "video reached the paused viewer: {late:?}");

    set_video(&mut net, r, v, Layer(2), false);
    let resumed_at = net.now();
    assert!(
        net.run_until_cond(secs(5.0), |n| n
            .viewer(v)
            .complete_keyframes()
            .iter()
            .any(|t| *t > resumed_at)),
        "no keyframe after resuming"
    );
    net.run_for(secs(1.0));
    let mut ts_of = std::collections::HashMap::new();
    for x in &net.viewer(v).video {
        if let Some(ts) = ts_of.insert(x.seq, x.ts) {
            assert_eq!(ts, x.ts, "sequence number {} sent twice", x.seq);
        }
    }
    assert_plays_everything(&net, v, net.now() - secs(0.8), "resumed viewer");
}

#[test]
fn a_capped_viewer_moves_to_the_lower_layer_at_its_keyframe() {
    let mut net = Net::new();
    let r = one_relay(&mut net);
    let _p = live_simulcast_publisher(&mut net, r);
    let v = net.subscribe(r, CONF).expect("subscribe");
    assert!(net.run_until_cond(secs(1.0), |n| playing(n, v)));
    let s = session(&net, v);
    assert_eq!(
        video_status(&net, r, s),
        Some(VideoStatus::Forwarding { layer: Layer(2) })
    );
    set_video(&mut net, r, v, Layer(0), false);
    let capped_at = net.now();
    assert!(
        net.run_until_cond(secs(2.5), |n| video_status(n, r, s)
            == Some(VideoStatus::Forwarding { layer: Layer(0) })),
        "the viewer never moved to layer 0"
    );
    net.run_for(secs(1.5));
    // After the switch only the lowest layer's small frames arrive, in one continuous stream.
    let late: Vec<usize> = net
        .viewer(v)
        .video
        .iter()
        .filter(|x| x.at > net.now() - secs(1.0))
        .map(|x| x.len)
        .collect();
    let mean = late.iter().sum::<usize>() as f64 / late.len().max(1) as f64;
    assert!(
        !late.is_empty() && mean < 900.0,
        "mean payload {mean:.0} B after capping at layer 0"
    );
    assert_eq!(
        net.viewer(v).missing_video(),
        Vec::<u64>::new(),
        "video gaps"
    );
    assert!(net.now() > capped_at);
}

#[test]
fn snapshots_carry_each_sessions_state_rtt_and_bytes() {
    let mut net = Net::new();
    let r = one_relay(&mut net);
    let p = live_publisher(&mut net, r);
    let v = net.subscribe(r, CONF).expect("subscribe");
    assert!(net.run_until_cond(secs(1.0), |n| playing(n, v)));
    net.run_for(secs(3.0));
    let snap = net.relay(r).snapshot(net.now(), 0);
    let viewer = snap
        .sessions
        .iter()
        .find(|s| s.id == session(&net, v))
        .expect("the viewer in the snapshot");
    assert_eq!(viewer.role, Role::Subscriber);
    assert!(viewer.connected);
    assert_eq!(viewer.delivery, Some(Delivery::Flowing));
    assert_eq!(
        viewer.video,
        Some(VideoStatus::Forwarding { layer: Layer(0) })
    );
    // str0m's stats: the round trip over two 5 ms links, what was sent.
    let rtt = viewer.rtt_ms.expect("an RTT reading for the viewer");
    assert!(
        (8..=40).contains(&rtt),
        "viewer RTT {rtt} ms over 2 × 5 ms links"
    );
    assert!(viewer.media_bytes > 100_000, "{viewer:?}");
    let publisher = snap
        .sessions
        .iter()
        .find(|s| s.id == session(&net, p))
        .expect("the publisher in the snapshot");
    assert_eq!(publisher.role, Role::Publisher);
    assert!(publisher.media_bytes > 100_000, "{publisher:?}");
    let conf = conference(&net, r);
    assert!(
        conf.live && conf.n_subscribers == 1 && conf.layer_bitrates[0] > 0,
        "{conf:?}"
    );
    assert!(conf.audio_bitrate > 0, "{conf:?}");
}

/// Loss on an edge's uplink is repaired from the parent's history: the edge NACKs its parent,
/// the parent resends by RTX, and the edge's own viewer sees every packet.
#[test]
fn loss_on_a_pull_is_repaired_by_the_parent_and_the_edge_viewer_misses_nothing() {
    let mut net = Net::new();
    let upstream = one_relay(&mut net);
    let downstream = one_relay(&mut net);
    let _p = live_publisher(&mut net, upstream);
    connected_pull(&mut net, downstream, upstream);
    let v = net
        .subscribe(downstream, CONF)
        .expect("subscribe downstream");
    assert!(
        net.run_until_cond(secs(2.0), |n| playing(n, v)),
        "the downstream viewer does not play"
    );
    let start = net.now();
    // Every 20th large RTP datagram (video; audio is small) on the uplink, for 3 s.
    let stop_at = start + secs(3.0);
    net.set_loss(
        net.relay_addr(upstream),
        net.relay_addr(downstream),
        Box::new(move |d: &Datagram| {
            d.sent < stop_at
                && d.contents.len() > 300
                && rtp_info(&d.contents).is_some_and(|h| h.seq % 20 == 7)
        }),
    );
    net.run_until(stop_at + secs(1.5));
    assert!(
        net.n_dropped >= 10,
        "only {} datagrams dropped on the uplink",
        net.n_dropped
    );
    assert_plays_everything(&net, v, start, "the edge's viewer after uplink loss");
    assert_eq!(
        net.viewer(v).missing_video(),
        Vec::<u64>::new(),
        "unrepaired losses at the edge's viewer"
    );
}

#[test]
fn live_forwards_are_transit_samples_and_replays_are_not() {
    let mut net = Net::new();
    let r = one_relay(&mut net);
    let _p = live_publisher(&mut net, r);
    let v = net.subscribe(r, CONF).expect("subscribe");
    assert!(
        net.run_until_cond(secs(3.0), |n| playing(n, v)),
        "the viewer never played"
    );
    net.run_for(secs(2.0));
    let stats = net.relay(r).stats();
    let forwarded = stats
        .forwarded_packets
        .load(std::sync::atomic::Ordering::Relaxed);
    let samples = stats.transit.count();
    // Virtual time stands still while the relay works: every transit is 0.
    assert_eq!(stats.transit.counts()[0], samples);
    assert_eq!(stats.transit.sum(), Duration::ZERO);
    // Two seconds of live audio and video at least; the replayed GOP is not counted.
    assert!(samples > 200, "{samples} samples");
    assert!(
        samples < forwarded,
        "{samples} samples of {forwarded} forwarded (the replay is no transit)"
    );
}

/// A downstream relay's link (measured: adaptation on) hands out a frame at once: its video
/// is not paced, and str0m's due timeouts are handled inside one drain (str0m hands out one
/// packet per timeout, paced or not). Virtual time stands still while a relay works, so
/// every transit sample at the upstream relay is 0; before, each further packet of a frame
/// waited for the session's next turn (1 µs later here, ~1.1 ms on a real, quiet relay
/// whose loop sleeps in milliseconds).
#[test]
fn a_relay_links_frames_leave_at_once() {
    let mut net = Net::new();
    let upstream = net.add_relay(|c| c.adaptation = Some(1_000_000));
    let downstream = net.add_relay(|c| c.adaptation = Some(1_000_000));
    let _p = live_publisher(&mut net, upstream);
    connected_pull(&mut net, downstream, upstream);
    let v = net.subscribe(downstream, CONF).expect("subscribe");
    assert!(
        net.run_until_cond(secs(3.0), |n| playing(n, v)),
        "the downstream viewer never played"
    );
    net.run_for(secs(3.0));
    let stats = net.relay(upstream).stats();
    let samples = stats.transit.count();
    assert!(samples > 300, "{samples} samples");
    assert_eq!(
        stats.transit.sum(),
        Duration::ZERO,
        "packets waited on the relay link ({samples} samples)"
    );
}

/// A measured viewer's packets wait in its pacers (the relay's and str0m's, at about the
/// estimate): that wait is transit too. A packet's sample is taken when its datagram leaves
/// (found by its SSRC and sequence number), not when it was written: on a 400 kbit/s link,
/// a keyframe of the lowest layer (~10 kB) leaves over ~200 ms, so some samples are tens of
/// milliseconds of virtual time. (Taken at the write, as before, every sample was 0 here.)
#[test]
fn a_paced_viewers_transit_counts_the_wait_in_its_pacers() {
    let mut net = Net::new();
    let (r, v) = measured_viewer_on_link(&mut net, 300_000, 400.0, 18_000);
    assert!(
        net.run_until_cond(secs(4.0), |n| playing(n, v)),
        "the viewer never played"
    );
    net.run_for(secs(4.0));
    let stats = net.relay(r).stats();
    let counts = stats.transit.counts();
    let samples = stats.transit.count();
    let over_10ms: u64 = counts[hallcast_rtc::transit::bucket_of(10_000_000)..]
        .iter()
        .sum();
    assert!(samples > 200, "{samples} samples");
    assert!(
        over_10ms > 0 && stats.transit.sum() > Duration::from_millis(100),
        "no sample saw the pacing: {over_10ms} over 10 ms, sum {:?}, {samples} samples",
        stats.transit.sum()
    );
}

/// Points waiting when the broadcast starts: a measured viewer that connected before the
/// publisher did gets the source's first keyframe about as fast as one that joins a running
/// source, not at an estimate that fell while there was no video to send. Before, the relay
/// handed the viewer's estimator the audio's need as its probing target; str0m caps its
/// first probes at twice the target, and their results set the estimate (1 → 0.54 → 0.38
/// Mbit/s before any video, end to end): the demo source's 65 kB first keyframe then reached
/// the viewer at ~0.55 Mbit/s.
#[test]
fn a_viewer_waiting_when_the_broadcast_starts_gets_the_first_keyframe_at_once() {
    let mut net = Net::new();
    let r = net.add_relay(|c| c.adaptation = Some(1_000_000));
    // The demo source's shape: ~2 Mbit/s, an IDR of ~64 kB.
    let opts = PublisherOpts {
        idr_bytes: 64_000,
        p_bytes: 8_000,
        ..PublisherOpts::default()
    };
    let t0 = net.now();
    let p = net.publish_with(r, CONF, opts).expect("publish");
    // The publisher's first datagrams are lost for 0.5 s: its session is live (viewers are
    // accepted) but connects after the viewer.
    let until = net.now() + secs(0.5);
    let publisher = net.peer_addr(p);
    net.set_loss(
        publisher,
        net.relay_addr(r),
        Box::new(move |d: &Datagram| d.sent < until),
    );
    let v = net.subscribe(r, CONF).expect("subscribe");
    assert!(
        net.run_until_cond(secs(3.0), |n| !n.publisher(p).idrs_sent.is_empty()),
        "the publisher never sent an IDR"
    );
    let first_idr = net.publisher(p).idrs_sent[0];
    let viewer_connected = net.viewer(v).core.connected_at.expect("viewer connected");
    assert!(
        viewer_connected + secs(0.3) < first_idr,
        "the viewer connected at {:?}, the first IDR left at {:?}: not the case under test",
        viewer_connected - t0,
        first_idr - t0
    );
    assert!(
        net.run_until_cond(secs(4.0), |n| !n.viewer(v).complete_keyframes().is_empty()),
        "the viewer never had a whole keyframe"
    );
    let took = net.viewer(v).complete_keyframes()[0] - first_idr;
    // 64 kB at the start estimate paced at 1.1× is ~0.47 s.
    assert!(
        took < secs(0.6),
        "the first keyframe reached the viewer {took:?} after the publisher sent it"
    );
}

/// Adaptation on, an unconstrained link: the measured viewer joins on the layer the start
/// estimate covers, probing proves the link, and it climbs to the top layer by itself,
/// switching at a keyframe, with the relay's estimate and allocation visible in its snapshot.
#[test]
fn a_measured_viewer_on_a_good_link_climbs_to_the_top_layer() {
    let mut net = Net::new();
    let (r, v) = measured_viewer_of_simulcast(&mut net, 1_000_000);
    assert!(net.run_until_cond(secs(1.0), |n| playing(n, v)));
    let s = session(&net, v);
    await_forwarding(&mut net, r, s, Layer(2), secs(8.0));
    let snap = net.relay(r).snapshot(net.now(), 0);
    let a = snap
        .sessions
        .iter()
        .find(|x| x.id == s)
        .and_then(|x| x.adaptation)
        .expect("a measured viewer");
    assert_eq!(a.target, Some(hallcast_core::Target::Layer(Layer(2))));
    assert!(a.estimate_bps.unwrap() > 1_000_000, "{a:?}");
    assert!(net.events().iter().any(|(_, _, e)| matches!(
        e,
        EngineEvent::Adaptation { session, target: Some(Layer(2)), .. } if *session == s
    )));
    net.run_for(secs(3.0));
    assert_top_layer_frames_since(&net, v, net.now() - secs(2.0));
}

/// A measured viewer on a good link: what its pacer lets go at once (str0m's 40 ms burst)
/// leaves at the pacer's next deadline in one turn, not one packet per turn of the relay's
/// loop (a turn and a `sendmmsg` slot per packet were most of a paced packet's cost,
/// docs/bench-data/2026-12-05-issue9-burst). The first packet after a write still goes alone,
/// so audio taken in meanwhile goes ahead of the rest (adapt_sim's audio-gap tests).
#[test]
fn a_paced_viewers_frame_leaves_in_one_turn_after_its_first_packet() {
    let mut net = Net::new();
    let (r, v) = measured_viewer_on_link(&mut net, 1_000_000, 20_000.0, 1_000_000);
    let s = session(&net, v);
    await_forwarding(&mut net, r, s, Layer(2), secs(8.0));
    let (sent, per_turn, _) = video_datagrams_per_instant(&mut net, r, v, secs(2.0));
    assert!(sent > 250, "{sent} video datagrams");
    assert!(
        per_turn >= 2.0,
        "{sent} video datagrams, {per_turn:.2} an instant"
    );
}

/// Below the top layer the link is the one being stepped and probed: a measured viewer's
/// video still leaves one packet per turn of the relay's loop, as before the burst per turn
/// (with it there, the demo source's viewer paused later at the step to 100 kbit/s in
/// end-to-end runs, docs/bench-data/2026-12-05-issue9-burst and -on-top).
#[test]
fn below_the_top_layer_a_paced_viewers_video_leaves_one_packet_a_turn() {
    let mut net = Net::new();
    let (r, v) = measured_viewer_on_link(&mut net, 600_000, 1_000.0, 60_000);
    let s = session(&net, v);
    net.run_for(secs(6.0));
    assert_eq!(
        video_status(&net, r, s),
        Some(VideoStatus::Forwarding { layer: Layer(1) })
    );
    // A GOP (2 s) holds one keyframe of layer 1 (16 packets), more than the pacer's 40 ms
    // burst at this rate (~5 packets): with the burst per turn, up to 4 left at one instant.
    let (sent, _, most) = video_datagrams_per_instant(&mut net, r, v, secs(2.0));
    assert_eq!(
        video_status(&net, r, s),
        Some(VideoStatus::Forwarding { layer: Layer(1) })
    );
    assert!(sent > 100, "{sent} video datagrams");
    // One at the pacer's deadline, and at most one more written at that instant.
    assert!(most <= 2, "{sent} video datagrams, {most} at one instant");
}

/// Runs `for_` and returns the video datagrams the relay sent `v` meanwhile (audio and RTCP
/// are a few hundred bytes at most): how many, how many left at one instant on average, and
/// the most at one instant.
fn video_datagrams_per_instant(
    net: &mut Net,
    r: RelayId,
    v: PeerId,
    for_: Duration,
) -> (usize, f64, usize) {
    let from = net.now();
    net.run_for(for_);
    let link = net
        .link_stats(net.relay_addr(r), net.peer_addr(v))
        .expect("the viewer's downlink");
    let sent: Vec<Instant> = link
        .departures
        .iter()
        .filter(|d| d.sent >= from && d.bytes > 400)
        .map(|d| d.sent)
        .collect();
    let mut instants = 0;
    let mut most = 0;
    for run in sent.chunk_by(|a, b| a == b) {
        instants += 1;
        most = most.max(run.len());
    }
    (sent.len(), sent.len() as f64 / instants.max(1) as f64, most)
}

/// Every whole frame the viewer received after `since` is a top-layer frame.
fn assert_top_layer_frames_since(net: &Net, v: PeerId, since: Instant) {
    let top = PublisherOpts::simulcast().simulcast.unwrap()[2];
    let frames = whole_frames_since(net, v, Some(since));
    assert!(frames.len() > 30, "{} frames", frames.len());
    for (i, (key, bytes)) in frames.iter().enumerate() {
        let want = if *key { top.idr_bytes } else { top.p_bytes };
        // The first frame may have started before `since`.
        if i > 0 || *bytes >= want {
            assert!(
                *bytes >= want && *bytes <= want + 100,
                "a {bytes}-byte frame"
            );
        }
    }
}

/// The status and value of one pre-flight check in `relay`'s snapshot.
fn preflight_check(net: &Net, relay: RelayId, id: &str) -> (&'static str, String) {
    let report = conference(net, relay)
        .preflight
        .expect("the ingesting shard reports the pre-flight checks");
    let c = report
        .checks
        .iter()
        .find(|c| c.id.as_str() == id)
        .expect("every check is listed");
    (c.status.as_str(), c.value.clone())
}

#[test]
fn the_snapshot_carries_the_publishers_preflight_checks() {
    let mut net = Net::new();
    let r = one_relay(&mut net);
    // A keyframe every 6 s.
    let p = live_publisher_with(
        &mut net,
        r,
        PublisherOpts {
            gop: secs(6.0),
            ..PublisherOpts::simulcast()
        },
    );
    let first_idr = net.publisher(p).idrs_sent[0];
    net.run_until(first_idr + secs(1.0));
    assert_eq!(preflight_check(&net, r, "keyframe_interval").0, "unknown");
    net.run_until(first_idr + secs(4.5));
    // Red before the second keyframe: 4 s without one is enough to know.
    let (status, value) = preflight_check(&net, r, "keyframe_interval");
    assert_eq!(status, "red", "{value}");
    assert!(value.starts_with("≥ 4."), "{value}");
    assert_eq!(
        preflight_check(&net, r, "simulcast"),
        ("green", "3 of 3 layers".to_string())
    );
    assert_eq!(preflight_check(&net, r, "audio").0, "green");
    // 80-byte Opus packets, no level extension: sound by the packet sizes.
    assert_eq!(preflight_check(&net, r, "audio_level").0, "green");
    let (status, value) = preflight_check(&net, r, "b_frames");
    assert_eq!(status, "green", "{value}");
    let (status, value) = preflight_check(&net, r, "codec");
    assert_eq!(status, "green", "{value}");
    assert!(value.starts_with("H.264 Constrained Baseline"), "{value}");
    // After the second keyframe: the interval itself.
    net.run_until(first_idr + secs(6.5));
    assert_eq!(
        preflight_check(&net, r, "keyframe_interval"),
        ("red", "6.0 s".to_string())
    );
    // The publisher leaves: no report (and here no conference either: nobody watched).
    net.end(p, EndReason::Deleted);
    net.run_for(secs(0.5));
    let snapshot = net.relay(r).snapshot(net.now(), 0);
    let conf = snapshot.conferences.iter().find(|c| &*c.id == CONF);
    assert!(conf.is_none_or(|c| c.preflight.is_none()));
}

/// The conference's snapshot counts the keyframe requests its viewers sent and those the
/// relay sent its publisher (one per PLI the publisher got, never more than the viewers
/// asked), and the media bytes sent to its viewers, which do not go back when a viewer leaves.
#[test]
fn a_conferences_snapshot_counts_keyframe_requests_and_bytes_sent() {
    let mut net = Net::new();
    let r = one_relay(&mut net);
    let p = live_publisher(&mut net, r);
    let viewers: Vec<PeerId> = (0..3)
        .map(|_| net.subscribe(r, CONF).expect("subscribe"))
        .collect();
    assert!(net.run_until_cond(secs(2.0), |n| viewers.iter().all(|v| playing(n, *v))));
    let before = conference(&net, r);
    let t0 = net.now();
    // Each viewer asks 4 times, 300 ms apart.
    for round in 0..4 {
        for v in &viewers {
            net.request_keyframe(*v);
        }
        net.run_until(t0 + secs(0.3 * f64::from(round + 1)));
    }
    net.run_for(secs(1.5));
    let after = conference(&net, r);
    let asked = after.keyframe_requests_downstream - before.keyframe_requests_downstream;
    assert_eq!(asked, 12, "keyframe requests counted from the viewers");
    let sent = after.keyframe_requests_upstream - before.keyframe_requests_upstream;
    let reached = net.publisher(p).keyframe_requests_between(t0, net.now()) as u64;
    assert!(
        sent >= 1 && sent <= asked && sent >= reached,
        "sent {sent} keyframe requests upstream for {asked} asked; the publisher got {reached}"
    );
    assert!(after.sent_bytes > before.sent_bytes, "{after:?}");
    assert!(
        after.sent_bytes > 3 * 50_000,
        "3 viewers playing for 2 s were sent {} bytes",
        after.sent_bytes
    );
    // A viewer leaves: its bytes stay counted.
    assert!(net.end(viewers[0], EndReason::Deleted));
    net.run_for(secs(0.5));
    let left = conference(&net, r);
    assert_eq!(left.n_subscribers, 2);
    assert!(
        left.sent_bytes >= after.sent_bytes,
        "bytes sent went back from {} to {} when a viewer left",
        after.sent_bytes,
        left.sent_bytes
    );
}

/// A binding request that ends with FINGERPRINT, made valid again after an edit (a
/// parser checks it; a relay must see the edited message, not a corrupt one).
fn refingerprint(mut m: Vec<u8>) -> Vec<u8> {
    let n = m.len();
    assert_eq!(&m[n - 8..n - 4], &[0x80, 0x28, 0, 4], "FINGERPRINT last");
    let crc = hallcast_rtc::stun::fingerprint(&m[..n - 8]);
    m[n - 4..].copy_from_slice(&crc.to_be_bytes());
    m
}

/// `check` with the local ufrag in its USERNAME replaced by as many `z`s (a session
/// nobody has), FINGERPRINT recomputed.
fn for_nobody(check: &[u8]) -> Vec<u8> {
    let mut m = check.to_vec();
    let mut at = 20;
    while at + 4 <= m.len() {
        let typ = u16::from_be_bytes([m[at], m[at + 1]]);
        let len = usize::from(u16::from_be_bytes([m[at + 2], m[at + 3]]));
        if typ == 0x0006 {
            let colon = m[at + 4..at + 4 + len]
                .iter()
                .position(|&b| b == b':')
                .expect("a colon in USERNAME");
            m[at + 4..at + 4 + colon].fill(b'z');
            return refingerprint(m);
        }
        at += 4 + len.div_ceil(4) * 4;
    }
    panic!("no USERNAME in the check");
}

/// Issue 13 B.6: garbage at the media port from strangers (random bytes, RTP and STUN for
/// nobody, a viewer's own STUN check replayed with its integrity broken) and malformed RTP,
/// RTCP and DTLS from a connected viewer's own address after DTLS: each stranger's datagram
/// is dropped and counted under its reason, no session ends, and every viewer keeps
/// receiving everything. A viewer's valid check replayed from 40 addresses leaves the
/// relay routing at most `MAX_ADDRS_PER_SESSION` addresses to its session.
#[test]
fn garbage_is_dropped_and_counted_by_reason_and_viewers_miss_nothing() {
    use hallcast_rtc::RxDrop;
    use std::sync::atomic::Ordering::Relaxed;
    let mut net = Net::new();
    let r = one_relay(&mut net);
    let _p = live_publisher(&mut net, r);
    let v = net.subscribe(r, CONF).unwrap();
    let other = net.subscribe(r, CONF).unwrap();
    // The viewer's own binding requests, as a hostile network on its path sees them.
    let checks: Rc<RefCell<Vec<Vec<u8>>>> = Rc::default();
    let seen = checks.clone();
    let relay_addr = net.relay_addr(r);
    net.set_loss(
        net.peer_addr(v),
        relay_addr,
        Box::new(move |d| {
            if d.contents.len() >= 20 && d.contents[0..2] == [0, 1] {
                seen.borrow_mut().push(d.contents.clone());
            }
            false
        }),
    );
    assert!(net.run_until_cond(secs(2.0), |n| playing(n, v) && playing(n, other)));
    assert!(
        net.run_until_cond(secs(10.0), |_| !checks.borrow().is_empty()),
        "the viewer sent no binding request to capture"
    );
    let check = checks.borrow()[0].clone();
    // MESSAGE-INTEGRITY (20 bytes) is followed by FINGERPRINT (8): flip a byte of it.
    let mut broken = check.clone();
    let n = broken.len();
    broken[n - 12] ^= 0xff;
    let broken = refingerprint(broken);
    let nobody = for_nobody(&check);
    let viewer_addr = net.peer_addr(v);
    let stats = net.relay(r).stats().clone();
    let count = |why: RxDrop| stats.rx_dropped[why as usize].load(Relaxed);
    let before: Vec<u64> = RxDrop::ALL.iter().map(|&w| count(w)).collect();
    let since = net.now();
    let rounds = 100u64;
    for i in 0..rounds {
        let stranger: std::net::SocketAddr = format!("10.66.0.{}:{}", 1 + i % 200, 40_000 + i)
            .parse()
            .unwrap();
        let now = net.now();
        let relay = net.relay_mut(r);
        // Not WebRTC at all.
        relay.handle_datagram(now, stranger, relay_addr, &[0xff; 33]);
        relay.handle_datagram(now, stranger, relay_addr, &[]);
        // RTP for nobody.
        let mut rtp = vec![0x80, 96, 0, i as u8, 0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef];
        rtp.extend_from_slice(&[0x55; 100]);
        relay.handle_datagram(now, stranger, relay_addr, &rtp);
        // STUN naming nobody, and the viewer's own check with a broken integrity.
        relay.handle_datagram(now, stranger, relay_addr, &nobody);
        relay.handle_datagram(now, stranger, relay_addr, &broken);
        // From the viewer's own address, after DTLS: RTP and RTCP that are not SRTP, and a
        // DTLS record cut short.
        relay.handle_datagram(now, viewer_addr, relay_addr, &rtp);
        let mut rtcp = vec![0x80, 200, 0, 6];
        rtcp.extend_from_slice(&[0x33; 24]);
        relay.handle_datagram(now, viewer_addr, relay_addr, &rtcp);
        relay.handle_datagram(
            now,
            viewer_addr,
            relay_addr,
            &[0x16, 0xfe, 0xfd, 0, 0, 0, 0],
        );
        net.run_for(secs(0.02));
    }
    let delta: Vec<u64> = RxDrop::ALL
        .iter()
        .zip(&before)
        .map(|(&w, b)| count(w) - b)
        .collect();
    let by = |w: RxDrop| delta[w as usize];
    assert_eq!(by(RxDrop::NotWebrtc), 2 * rounds, "{delta:?}");
    assert_eq!(by(RxDrop::UnknownAddress), rounds, "{delta:?}");
    assert_eq!(by(RxDrop::UnknownUfrag), rounds, "{delta:?}");
    assert_eq!(by(RxDrop::StunRefused), rounds, "{delta:?}");
    for p in [v, other] {
        assert_eq!(ended(&net, session(&net, p)), None);
    }
    net.run_for(secs(0.5));
    assert_plays_everything(&net, v, since, "the viewer whose address sent garbage");
    assert_plays_everything(&net, other, since, "the other viewer");

    // The valid check replayed from 40 addresses: the routing table stays bounded.
    for i in 0..40u16 {
        let replayer: std::net::SocketAddr = format!("10.67.0.1:{}", 50_000 + i).parse().unwrap();
        let now = net.now();
        net.relay_mut(r)
            .handle_datagram(now, replayer, relay_addr, &check);
    }
    let sv = session(&net, v);
    let n_addrs = net.relay(r).n_addresses(sv);
    // 41 addresses offered (its own and 40 replayers): the table is full, not past it.
    assert_eq!(
        n_addrs,
        hallcast_rtc::relay::MAX_ADDRS_PER_SESSION,
        "addresses routed to one session after 40 replays"
    );
    let since = net.now();
    net.run_for(secs(8.0));
    assert_eq!(ended(&net, sv), None);
    assert!(
        net.viewer(v).video.iter().filter(|r| r.at >= since).count() > 400,
        "the viewer stopped receiving after the replays"
    );
}

/// Drains what `relay` handed the recorder so far.
fn record_items(net: &mut Net, relay: RelayId) -> Vec<hallcast_record::Item> {
    std::iter::from_fn(|| net.relay_mut(relay).poll_record()).collect()
}

/// The recorded video packets in `items` of `broadcast`: (layer, keyframe start, seq).
fn recorded_video(items: &[hallcast_record::Item], broadcast: SessionId) -> Vec<(u8, bool, u64)> {
    use hallcast_core::MediaKind;
    use hallcast_record::Item;
    items
        .iter()
        .filter_map(|i| match i {
            Item::Packet {
                broadcast: b,
                packet,
            } if *b == broadcast && packet.kind == MediaKind::Video => {
                Some((packet.layer.0, packet.keyframe_start, packet.seq))
            }
            _ => None,
        })
        .collect()
}

/// The recorder is a viewer of the producer: audio throughout, the top simulcast layer from
/// its first keyframe; when the encoder stops sending the top layer the recording goes on
/// with the next layer from its keyframe, and back to the top at the top's next keyframe,
/// in one continuous sequence space (the file has no gap and no undecodable frame).
#[test]
fn the_recorder_gets_each_broadcast_with_audio_and_the_best_layer_at_keyframes() {
    use hallcast_core::{Codec, MediaKind};
    use hallcast_record::Item;
    let mut net = Net::new();
    let r = net.add_relay(|c| c.record = true);
    let p = live_simulcast_publisher(&mut net, r);
    net.run_for(secs(2.0));
    let items = record_items(&mut net, r);
    let Some(Item::Started {
        broadcast,
        conference,
        audio,
        video,
        ..
    }) = items.first().cloned()
    else {
        panic!("the broadcast's start comes first: {:?}", items.first());
    };
    assert_eq!(broadcast, session(&net, p));
    assert_eq!(&*conference, CONF);
    assert_eq!((audio, video), (Some(Codec::Opus), Some(Codec::H264)));
    for i in &items[1..] {
        assert!(
            matches!(i, Item::Packet { broadcast: b, .. } if *b == broadcast),
            "only packets of the broadcast follow: {i:?}"
        );
    }
    let n_audio = items
        .iter()
        .filter(|i| matches!(i, Item::Packet { packet, .. } if packet.kind == MediaKind::Audio))
        .count();
    assert!(n_audio > 50, "{n_audio} audio packets in 2 s");
    let mut video = recorded_video(&items, broadcast);
    assert!(!video.is_empty(), "no video recorded in 2 s");
    assert!(
        video.iter().all(|(l, _, _)| *l == 2),
        "the recording starts with the top layer (not the lowest one, whose packets come first)"
    );
    assert!(video[0].1, "the recorded video starts at a keyframe");

    // The encoder sheds its top layer: the recording goes on with layer 1, from a keyframe.
    net.publisher_mut(p).stopped_layers = 0b100;
    net.run_for(secs(5.0));
    let items = record_items(&mut net, r);
    let shed = recorded_video(&items, broadcast);
    let first_low = shed
        .iter()
        .position(|(l, _, _)| *l == 1)
        .expect("layer 1 is recorded once the top layer stopped");
    assert!(
        shed[first_low].1,
        "the switch down is at a keyframe of layer 1"
    );
    assert!(
        shed[first_low..].iter().all(|(l, _, _)| *l == 1),
        "layer 1 after the switch"
    );
    // The top layer is back: the recording returns to it at its keyframe.
    net.publisher_mut(p).stopped_layers = 0;
    net.run_for(secs(5.0));
    let items = record_items(&mut net, r);
    let back = recorded_video(&items, broadcast);
    let first_top = back
        .iter()
        .position(|(l, _, _)| *l == 2)
        .expect("the top layer is recorded again");
    assert!(
        back[first_top].1,
        "the switch up is at a keyframe of the top layer"
    );
    assert!(back[first_top..].iter().all(|(l, _, _)| *l == 2));
    // One continuous sequence space across both switches.
    video.extend(shed);
    video.extend(back);
    for w in video.windows(2) {
        assert_eq!(
            w[1].2,
            w[0].2 + 1,
            "the recorded video's sequence has a gap"
        );
    }

    // The publisher leaves: the broadcast ends. It comes back: a new broadcast, a new file.
    assert!(net.end(p, EndReason::Deleted));
    net.run_for(secs(0.2));
    let items = record_items(&mut net, r);
    assert!(
        matches!(items.last(), Some(Item::Ended { broadcast: b, .. }) if *b == broadcast),
        "{:?}",
        items.last()
    );
    let p2 = live_simulcast_publisher(&mut net, r);
    let items = record_items(&mut net, r);
    assert!(
        matches!(items.first(), Some(Item::Started { broadcast: b, .. })
            if *b == session(&net, p2) && *b != broadcast),
        "{:?}",
        items.first()
    );
}

#[test]
fn without_recording_the_relay_hands_the_recorder_nothing() {
    let mut net = Net::new();
    let r = one_relay(&mut net);
    let _p = live_publisher(&mut net, r);
    net.run_for(secs(1.0));
    assert!(record_items(&mut net, r).is_empty());
}

/// A measured viewer switched down when its link steps from 5 to 0.4 Mbit/s gets no more
/// repairs of the layer it left: they would only queue before the lower layer's keyframe on a
/// link already dropping (measured in tests/adaptation.rs: ~1 Mbit/s sent toward a 400 kbit/s
/// link for the second after such a switch, repairs of the top layer among it). The viewer
/// joins straight onto the top layer, so this switch is its first: before the relay recorded
/// the layer a viewer joins on, a first switch was not seen as a switch down at all (4 repairs
/// of the top layer 0.5–0.7 s after the switch here).
#[test]
fn a_switch_down_on_a_stepped_down_link_stops_the_repairs_of_the_layer_left() {
    let mut net = Net::new();
    let (r, v) = measured_viewer_of_simulcast(&mut net, 5_000_000);
    let step_at = step_down_to_400_kbit(&mut net, r, v, secs(4.0));
    let s = session(&net, v);
    net.run_until(step_at);
    let nacks_at_step = net.viewer(v).nacks_sent;
    assert_eq!(
        video_status(&net, r, s),
        Some(VideoStatus::Forwarding { layer: Layer(2) }),
        "not on the top layer before the step"
    );
    net.take_events();
    assert!(
        net.run_until_cond(secs(4.0), |n| switched_down(n, s).is_some()),
        "no switch down after the step"
    );
    let at = switched_down(&net, s).unwrap();
    net.run_for(secs(2.0));
    let viewer = net.viewer(v);
    // The old layer's packets: up to the last one received before the switch.
    let last_old = viewer
        .video
        .iter()
        .filter(|x| x.at <= at)
        .map(|x| x.seq)
        .max()
        .expect("video before the switch");
    // What the link's queue (200 ms at 400 kbit/s) already held at the switch may still land.
    let late_repairs: Vec<u64> = viewer
        .video
        .iter()
        .filter(|x| x.at > at + secs(0.4) && x.seq <= last_old)
        .map(|x| x.seq)
        .collect();
    let nacks = viewer.nacks_sent - nacks_at_step;
    eprintln!(
        "switch {:?} after the step; {nacks} NACKs since the step, {} late repairs",
        at - step_at,
        late_repairs.len()
    );
    assert!(
        nacks > 0,
        "the viewer asked for no repair after the step: the test shows nothing"
    );
    assert_eq!(
        late_repairs,
        Vec::<u64>::new(),
        "repairs of the layer left, after the switch"
    );
}

/// A measured viewer on the top layer of a 2.5 Mbit/s link (the top layer fits, the estimate
/// stays near the link), just as the source has sent its next keyframe (42 kB: it reaches the
/// relay as one burst). Returns the relay and the viewer.
fn on_top_at_a_keyframe(net: &mut Net) -> (RelayId, PeerId) {
    let (r, p, v) = measured_viewer_with(net, 2_000_000, PublisherOpts::simulcast());
    net.set_link(
        net.relay_addr(r),
        net.peer_addr(v),
        LinkModel::new(LinkTrace::constant(2_500.0), 60_000),
    );
    assert!(
        net.run_until_cond(secs(3.0), |n| playing(n, v)),
        "never played"
    );
    let s = session(net, v);
    net.run_for(secs(3.0));
    assert_eq!(
        video_status(net, r, s),
        Some(VideoStatus::Forwarding { layer: Layer(2) }),
        "not on the top layer"
    );
    let idrs = net.publisher(p).idrs_sent.len();
    assert!(
        net.run_until_cond(secs(3.0), |n| n.publisher(p).idrs_sent.len() > idrs),
        "no keyframe from the source"
    );
    (r, v)
}

#[test]
fn the_gate_counts_the_video_written_since_str0m_last_sampled_its_queue() {
    // A measured viewer on the top layer; the source's keyframe (42 kB) arrives in one burst.
    // str0m samples its send queue only at the session's timeouts: had the gate read only
    // that sample, the whole keyframe would have been handed to str0m before the sample
    // moved, and nothing would wait in the relay's pacer to be dropped by a pause.
    let mut net = Net::new();
    let (r, v) = on_top_at_a_keyframe(&mut net);
    // The burst has reached the relay; str0m paces it out at ~1.1 × the estimate.
    net.run_for(secs(0.02));
    let dropped = net.relay(r).stats().paced_dropped.load(Relaxed);
    set_video(&mut net, r, v, Layer(2), true);
    let now_dropped = net.relay(r).stats().paced_dropped.load(Relaxed);
    assert!(
        now_dropped > dropped,
        "the pause found none of the keyframe waiting in the relay: str0m had been handed all of it"
    );
}

#[test]
fn on_a_stepped_down_link_the_switch_comes_within_0_5_s_and_the_lower_layers_picture_0_7_s_later() {
    // tests/adaptation.rs's step (5 → 0.4 Mbit/s, a shaper of 8 KB burst and 200 ms of queue)
    // with a source that answers keyframe requests at once, as Chromium and the demo's do.
    // What delays the lower layer's keyframe is what the link must carry before it: the
    // top layer's packets str0m was already handed. Measured here: 1.75 s from the switch to
    // the first lower-layer picture with the gate at 200 ms reading str0m's stale queue
    // figure and the top layer running on until the new keyframe; 1.03 s with the gate at
    // 50 ms counting what was written since, and the top layer cut at the switch (the switch
    // 0.74 s after the step, after DOWN_AFTER); 0.80 s with the switch at once on the plain
    // fall (0.34 s after the step); 0.53 s with the new layer paced after the cut
    // (`Allocator::throttle_bps`).
    let mut net = Net::new();
    let opts = PublisherOpts {
        idr_on_request: true,
        ..PublisherOpts::simulcast()
    };
    let (r, _p, v) = measured_viewer_with(&mut net, 1_000_000, opts);
    let step_at = step_down_to_400_kbit(&mut net, r, v, secs(12.0));
    let s = session(&net, v);
    net.run_until(step_at);
    assert_eq!(
        video_status(&net, r, s),
        Some(VideoStatus::Forwarding { layer: Layer(2) }),
        "not on the top layer before the step"
    );
    net.take_events();
    net.run_for(secs(6.0));
    let switched = switched_down(&net, s).expect("no switch down after the step");
    let sizes = PublisherOpts::simulcast().simulcast.expect("simulcast");
    let first_lower = net
        .viewer(v)
        .received_layers(&sizes)
        .into_iter()
        .find(|(t, l, _)| *t > switched && *l < 2)
        .map(|(t, _, _)| t - switched);
    eprintln!(
        "switch {:?} after the step, first lower-layer picture {first_lower:?} after the switch",
        switched - step_at
    );
    assert!(
        switched - step_at <= secs(0.5),
        "the switch came {:?} after the step",
        switched - step_at
    );
    assert!(
        first_lower.is_some_and(|d| d <= secs(0.7)),
        "the lower layer's first picture came {first_lower:?} after the switch"
    );
}

#[test]
fn a_pause_drops_the_video_str0m_has_not_sent() {
    // A measured viewer on the top layer of a 2.5 Mbit/s link; the source's keyframe (42 kB)
    // arrives in one burst and str0m paces it out at ~1.1 × the estimate, its gate holding
    // the rest. The viewer pauses 20 ms into it: nothing more of that keyframe leaves, from
    // the relay's pacer or from str0m's, and no repair of it (patch `StreamTx::drop_unsent`).
    // Before, str0m sent what it held and repaired what was lost: at a bandwidth pause on a 100 kbit/s link (tests/adaptation.rs), 31–73
    // kbit/s of media for 2–3 s against the audio's 16–22, all of it ahead of the audio.
    let mut net = Net::new();
    let (r, v) = on_top_at_a_keyframe(&mut net);
    // A quarter of the keyframe's packets lost on the way until the pause: the viewer asks
    // for them again after it, and they are not resent (the stream is paused: its next
    // picture is a keyframe).
    let video_pts = net.viewer(v).video_pts.clone();
    let until = net.now() + secs(0.02);
    net.set_loss(
        net.relay_addr(r),
        net.peer_addr(v),
        Box::new(move |d: &Datagram| {
            d.sent <= until
                && rtp_info(&d.contents)
                    .is_some_and(|h| video_pts.contains(&h.pt) && h.seq % 4 == 1)
        }),
    );
    net.run_for(secs(0.02));
    let at = net.now();
    set_video(&mut net, r, v, Layer(2), true);
    let nacks_at = net.viewer(v).nacks_sent;
    net.run_for(secs(1.0));
    let nacks_after = net.viewer(v).nacks_sent - nacks_at;
    // Video datagrams (over 300 bytes: audio's are ~140), repairs included, the relay handed
    // the link after the pause.
    let link = net
        .link_stats(net.relay_addr(r), net.peer_addr(v))
        .expect("the viewer's link");
    let video_before = link
        .departures
        .iter()
        .filter(|d| d.sent > at - secs(0.02) && d.sent <= at && d.bytes > 300)
        .count();
    let video_after: Vec<Duration> = link
        .departures
        .iter()
        .filter(|d| d.sent > at && d.bytes > 300)
        .map(|d| d.sent - at)
        .collect();
    eprintln!(
        "{video_before} video datagrams in the 20 ms before the pause, {} after; {nacks_after} \
         NACKs after it",
        video_after.len()
    );
    assert!(
        video_before > 0 && nacks_after > 0,
        "no video was leaving when the viewer paused, or nothing was asked for again: the test \
         shows nothing"
    );
    assert_eq!(
        video_after,
        Vec::<Duration>::new(),
        "video left the relay after the pause"
    );
    // Resumed, the stream numbers on from what left: one stream, no gap to NACK.
    let resumed_at = resume_until_a_keyframe(&mut net, r, v, secs(3.0));
    net.run_for(secs(1.0));
    let viewer = net.viewer(v);
    let last_before = viewer
        .video
        .iter()
        .filter(|x| x.at <= at + secs(0.1))
        .map(|x| x.seq)
        .max()
        .expect("video before the pause");
    let gaps: Vec<u64> = viewer
        .missing_video()
        .into_iter()
        .filter(|&q| q > last_before)
        .collect();
    assert_eq!(gaps, Vec::<u64>::new(), "video gaps after the pause");
    let resumed = viewer.video.iter().filter(|x| x.at > resumed_at).count();
    assert!(resumed >= 60, "{resumed} video packets after resuming");
}
