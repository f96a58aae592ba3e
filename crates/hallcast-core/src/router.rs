//! One conference's forwarding engine, shaped after the data path:
//!
//! ```text
//! publisher ─► Producer ──────────────► fan-out ─► Consumer ─► Forward
//!              (per layer: GOP cache,              viewer: audio + one layer
//!               arrival, bitrate,                  relay:  audio + every layer
//!               keyframe-request coalescing)       (each stream: its own Egress,
//!                                                   seq/ts rewrite)
//! ```
//!
//! A [`Router`] owns the [`producer`](crate::producer) state and its consumers (see
//! [`consumer`](crate::consumer)). Everything is driven by method calls with the time
//! passed in: no clock reads, no sockets. Outputs are appended to an [`Outputs`] buffer
//! the caller owns and reuses, so the per-packet path allocates nothing: a forwarded
//! packet costs one `Arc` clone of the payload and a few integer operations per
//! consumer stream.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::alloc::{Allocator, PauseReason, Target};
use crate::consumer::{Consumer, ConsumerId, Forward, VideoStatus};
use crate::media::{Codec, Layer, MediaKind, SourcePacket};
use crate::producer::{LayerStats, Producer};

/// What the caller must do after a call into the router.
#[derive(Debug, Default)]
pub struct Outputs {
    pub forwards: Vec<Forward>,
    /// Layers for which a keyframe (PLI) must be requested from the publisher.
    pub keyframe_requests: Vec<Layer>,
}

impl Outputs {
    pub fn clear(&mut self) {
        self.forwards.clear();
        self.keyframe_requests.clear();
    }
}

/// A measured viewer's allocation, as the dashboard and the viewer page see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocation {
    /// The allocator's choice (`None`: the viewer's link is not measured).
    pub target: Option<Target>,
    pub estimate_bps: Option<u64>,
    /// What the estimator should probe towards.
    pub desired_bps: u64,
    /// The rate to keep the link at meanwhile, padding included: a sustained probe before
    /// a switch up (0: none). The driver hands it to the estimator's pacer.
    pub sustain_bps: u64,
    /// Target changes since the join.
    pub switches: u32,
    /// Why video is paused, if it is.
    pub pause: Option<PauseReason>,
    /// Estimator resets the allocator asked for since the join
    /// ([`crate::alloc::STUCK_RESET_PAUSED`]): the driver resets the viewer's estimator
    /// each time this grows.
    pub estimator_resets: u32,
    /// The estimate the last of those resets starts the fresh estimator from.
    pub reset_bps: Option<u64>,
}

/// The forwarding engine of one conference: a producer and its consumers.
#[derive(Debug, Default)]
pub struct Router {
    producer: Producer,
    /// Fanned out to in order; `index` maps ids to positions.
    consumers: Vec<Consumer>,
    index: HashMap<ConsumerId, usize>,
    n_gop_replays: u64,
    /// Benchmarks only: measured viewers get the fixed-threshold selector.
    fixed_threshold: bool,
}

impl Router {
    pub fn new() -> Self {
        Self::default()
    }

    /// A publisher went live with these codecs. Consumers stay; their streams restart
    /// on the new source's next keyframe, with continuous sequence numbers.
    pub fn source_started(
        &mut self,
        audio: Option<Codec>,
        video: Option<Codec>,
        now: Instant,
        out: &mut Outputs,
    ) {
        self.producer.start(audio, video);
        for c in &mut self.consumers {
            c.source_started(now);
        }
        if video.is_some() && self.consumers.iter().any(Consumer::wants_video) {
            self.producer.request_keyframe(Layer(0), now, out);
        }
    }

    /// The publisher left. Consumers stay attached (a reconnecting encoder resumes them).
    pub fn source_ended(&mut self) {
        self.producer.end();
        for c in &mut self.consumers {
            c.source_ended();
        }
    }

    pub fn is_live(&self) -> bool {
        self.producer.audio_codec().is_some() || self.producer.video_codec().is_some()
    }

    pub fn codecs(&self) -> (Option<Codec>, Option<Codec>) {
        (self.producer.audio_codec(), self.producer.video_codec())
    }

    pub fn n_consumers(&self) -> usize {
        self.consumers.len()
    }

    /// GOPs replayed to joiners (a relay consumer counts one per layer replayed).
    pub fn n_gop_replays(&self) -> u64 {
        self.n_gop_replays
    }

    /// Keyframe requests sent upstream (after coalescing).
    pub fn n_keyframe_requests(&self) -> u64 {
        self.producer.n_keyframe_requests()
    }

    /// Adds a viewer. If its target layer has a cached GOP, the viewer gets it at once
    /// (its first picture does not wait for the encoder's next keyframe); otherwise a
    /// keyframe is requested upstream (coalesced).
    pub fn add_viewer(&mut self, id: ConsumerId, now: Instant, out: &mut Outputs) {
        self.add(Consumer::viewer(id), now, out);
    }

    /// Adds a relay consumer: it gets the cached GOP of every active layer that has one
    /// at once, and a (coalesced) keyframe request goes upstream for active layers
    /// without one.
    pub fn add_relay_consumer(&mut self, id: ConsumerId, now: Instant, out: &mut Outputs) {
        self.add(Consumer::relay(id), now, out);
    }

    fn add(&mut self, mut consumer: Consumer, now: Instant, out: &mut Outputs) {
        if self.index.contains_key(&consumer.id) {
            return;
        }
        self.n_gop_replays += consumer.join(&mut self.producer, now, out);
        self.index.insert(consumer.id, self.consumers.len());
        self.consumers.push(consumer);
    }

    pub fn remove_consumer(&mut self, id: ConsumerId) {
        let Some(i) = self.index.remove(&id) else {
            return;
        };
        self.consumers.swap_remove(i);
        if let Some(moved) = self.consumers.get(i) {
            self.index.insert(moved.id, i);
        }
    }

    /// Adds a viewer whose link is measured: its [`Allocator`] starts from the estimator's
    /// start value, so it joins (and gets its GOP replay) on the highest layer that value
    /// covers; [`Router::on_estimate`] and [`Router::reallocate`] move it from there.
    pub fn add_adaptive_viewer(
        &mut self,
        id: ConsumerId,
        start_estimate_bps: u64,
        now: Instant,
        out: &mut Outputs,
    ) {
        if self.index.contains_key(&id) {
            return;
        }
        let layers = self.producer.layer_stats(now);
        let audio = self.producer.audio_bitrate_bps(now);
        let mut c = Consumer::viewer(id);
        let alloc = Allocator::new(now, start_estimate_bps, &layers, audio);
        c.start_allocation(if self.fixed_threshold {
            alloc.into_fixed_threshold()
        } else {
            alloc.with_sustained_probes()
        });
        self.add(c, now, out);
    }

    /// Benchmarks only: viewers measured from now on get the fixed-threshold selector
    /// ([`crate::alloc::fixed_threshold`]) instead of the allocator's policy.
    pub fn use_fixed_threshold(&mut self, on: bool) {
        self.fixed_threshold = on;
    }

    /// A viewer's new bandwidth estimate. Returns its allocation when the target changed
    /// (a switch was decided; the egress takes the new layer at its next keyframe,
    /// requested now).
    pub fn on_estimate(
        &mut self,
        id: ConsumerId,
        estimate_bps: u64,
        now: Instant,
        out: &mut Outputs,
    ) -> Option<Allocation> {
        let &i = self.index.get(&id)?;
        let layers = self.producer.layer_stats(now);
        let audio = self.producer.audio_bitrate_bps(now);
        let d = self.consumers[i].allocate(
            Some(estimate_bps),
            &layers,
            audio,
            &mut self.producer,
            now,
            out,
        )?;
        d.changed.then(|| self.allocation_at(i))
    }

    /// The estimator's own latest figure for a measured viewer, unsmoothed
    /// ([`crate::alloc::Allocator::on_raw_estimate`]).
    pub fn on_raw_estimate(&mut self, id: ConsumerId, bps: u64, now: Instant) {
        if let Some(&i) = self.index.get(&id) {
            self.consumers[i].on_raw_estimate(now, bps);
        }
    }

    /// A measured viewer's round trip by its transport-wide feedback, and when the packet it
    /// measured was sent if known ([`crate::alloc::Allocator::on_rtt_sent`]).
    pub fn on_rtt(&mut self, id: ConsumerId, rtt: Duration, sent: Option<Instant>, now: Instant) {
        if let Some(&i) = self.index.get(&id) {
            self.consumers[i].on_rtt(now, rtt, sent);
        }
    }

    /// The rate a measured viewer's video is paced at ([`crate::alloc::Allocator::pace_bps`]).
    pub fn pace_bps(&self, id: ConsumerId, now: Instant) -> Option<u64> {
        let &i = self.index.get(&id)?;
        self.consumers[i].pace_bps(now)
    }

    /// The rate a measured viewer's live video is held to while its layer does not fit
    /// ([`crate::alloc::Allocator::throttle_bps`]).
    pub fn throttle_bps(&self, id: ConsumerId, now: Instant) -> Option<u64> {
        let &i = self.index.get(&id)?;
        self.consumers[i].throttle_bps(now)
    }

    /// A loss report on a measured viewer's link (the share of its packets lost over the
    /// last second). Returns its allocation when the target changed (a step down on loss,
    /// or a sustained probe aborted into a switch; see [`crate::alloc`]).
    pub fn on_loss(
        &mut self,
        id: ConsumerId,
        lost: f32,
        now: Instant,
        out: &mut Outputs,
    ) -> Option<Allocation> {
        let &i = self.index.get(&id)?;
        self.consumers[i].on_loss(now, lost)?;
        let layers = self.producer.layer_stats(now);
        let audio = self.producer.audio_bitrate_bps(now);
        let d = self.consumers[i].allocate(None, &layers, audio, &mut self.producer, now, out)?;
        d.changed.then(|| self.allocation_at(i))
    }

    /// Re-runs every measured viewer's allocator on its last estimate (layer bitrates
    /// change and hold times pass); call with [`Router::tick`]. Pushes the viewers whose
    /// target changed.
    pub fn reallocate(
        &mut self,
        now: Instant,
        out: &mut Outputs,
        changed: &mut Vec<(ConsumerId, Allocation)>,
    ) {
        if self.producer.video_codec().is_none() {
            return;
        }
        let layers = self.producer.layer_stats(now);
        let audio = self.producer.audio_bitrate_bps(now);
        for i in 0..self.consumers.len() {
            let d = self.consumers[i].allocate(None, &layers, audio, &mut self.producer, now, out);
            if d.is_some_and(|d| d.changed) {
                changed.push((self.consumers[i].id, self.allocation_at(i)));
            }
        }
    }

    /// A viewer's video from `first_seq` (its outgoing numbering) on was dropped before
    /// it left (a paused viewer's pacer queue). Its stream numbers from `first_seq` again,
    /// so the browser sees no gap to repair; a viewer that is not paused restarts at the
    /// next keyframe of its layer (requested now).
    pub fn video_dropped(
        &mut self,
        id: ConsumerId,
        first_seq: u64,
        now: Instant,
        out: &mut Outputs,
    ) {
        if let Some(&i) = self.index.get(&id) {
            self.consumers[i].video_dropped(first_seq, &mut self.producer, now, out);
        }
    }

    /// Measures a relay consumer's link: from now on its estimates ([`Router::on_estimate`])
    /// keep only the wanted layers the link carries (the lowest wanted one always flows).
    pub fn measure_relay(&mut self, id: ConsumerId, start_estimate_bps: u64, now: Instant) {
        let layers = self.producer.layer_stats(now);
        let audio = self.producer.audio_bitrate_bps(now);
        if let Some(&i) = self.index.get(&id) {
            self.consumers[i].measure_relay(start_estimate_bps, &layers, audio, now);
        }
    }

    /// The layers a relay consumer (a downstream relay) wants: only those are forwarded;
    /// a newly wanted one starts at its next keyframe, requested now. No effect on viewers.
    pub fn set_relay_layers(
        &mut self,
        id: ConsumerId,
        wanted: [bool; Layer::MAX],
        now: Instant,
        out: &mut Outputs,
    ) {
        if let Some(&i) = self.index.get(&id) {
            self.consumers[i].set_relay_layers(wanted, &mut self.producer, now, out);
        }
    }

    /// A relay consumer's wanted layers (`None`: unknown id, or a viewer).
    pub fn relay_layers(&self, id: ConsumerId) -> Option<[bool; Layer::MAX]> {
        let &i = self.index.get(&id)?;
        self.consumers[i].relay_layers()
    }

    /// A measured viewer's allocation (`None`: unknown id, or not measured).
    pub fn allocation(&self, id: ConsumerId) -> Option<Allocation> {
        let &i = self.index.get(&id)?;
        self.consumers[i].allocator()?;
        Some(self.allocation_at(i))
    }

    fn allocation_at(&self, i: usize) -> Allocation {
        let c = &self.consumers[i];
        let a = c.allocator();
        Allocation {
            target: a.map(Allocator::target),
            estimate_bps: a.and_then(Allocator::estimate_bps),
            desired_bps: a.map_or(0, Allocator::desired_bps),
            sustain_bps: a.map_or(0, Allocator::sustain_bps),
            switches: a.map_or(0, Allocator::switches),
            pause: c.pause_reason(),
            estimator_resets: a.map_or(0, Allocator::estimator_resets),
            reset_bps: a.and_then(Allocator::reset_bps),
        }
    }

    /// Caps the layer a viewer receives (the viewer's own wish; the allocator may cap it
    /// lower). Relay consumers
    /// receive every layer: no effect on them.
    pub fn set_max_layer(&mut self, id: ConsumerId, layer: Layer) {
        if let Some(&i) = self.index.get(&id) {
            self.consumers[i].set_max_layer(layer);
        }
    }

    /// Pauses or resumes a consumer's video (its audio always flows). Pausing stops
    /// the video at once; resuming restarts it at the next keyframe of its target
    /// layer (every active layer for a relay consumer), requested upstream through the
    /// coalesced path, with sequence numbers continuing where they stopped.
    pub fn set_paused(&mut self, id: ConsumerId, paused: bool, now: Instant, out: &mut Outputs) {
        if let Some(&i) = self.index.get(&id) {
            self.consumers[i].set_paused(paused, &mut self.producer, now, out);
        }
    }

    /// Why a consumer's video flows or not. A relay consumer reports the highest layer
    /// it forwards, or waits on the highest active layer while it forwards none.
    pub fn video_status(&self, id: ConsumerId) -> Option<VideoStatus> {
        let i = *self.index.get(&id)?;
        Some(self.consumers[i].video_status(&self.producer))
    }

    /// One packet from the publisher: cache and measure, then fan out to every consumer.
    pub fn on_packet(&mut self, pkt: &SourcePacket, out: &mut Outputs) {
        match pkt.kind {
            MediaKind::Audio => {
                let Some(codec) = self.producer.audio_codec() else {
                    return;
                };
                self.producer.ingest_audio(pkt);
                for c in &mut self.consumers {
                    c.on_audio(pkt, codec, out);
                }
            }
            MediaKind::Video => {
                let Some(codec) = self.producer.video_codec() else {
                    return;
                };
                let mid_gop = self.producer.ingest_video(pkt);
                let active = self.producer.active_layers(pkt.arrival);
                for c in &mut self.consumers {
                    c.on_video(active, pkt, codec, out);
                }
                if mid_gop {
                    // A layer appeared mid-GOP: ask for a keyframe so it becomes usable.
                    self.producer.request_keyframe(pkt.layer, pkt.arrival, out);
                }
            }
        }
    }

    /// A consumer lost its decoder state (PLI/FIR) on the stream of `layer` (`None`: its
    /// current or target stream). Coalesced upstream. A viewer has one video stream and
    /// asks for its current (or target) layer whatever `layer` says; a relay consumer
    /// asks for the named layer, or for every active layer with `None`. Paused consumers
    /// ask nothing.
    pub fn on_keyframe_request(
        &mut self,
        id: ConsumerId,
        layer: Option<Layer>,
        now: Instant,
        out: &mut Outputs,
    ) {
        if let Some(&i) = self.index.get(&id) {
            self.consumers[i].keyframe_request(layer, &mut self.producer, now, out);
        }
    }

    /// Periodic housekeeping (call every ~100–500 ms): consumers waiting for a
    /// keyframe or sitting on a layer that went silent get a (coalesced) request.
    pub fn tick(&mut self, now: Instant, out: &mut Outputs) {
        if self.producer.video_codec().is_none() {
            return;
        }
        let active = self.producer.active_layers(now);
        let mut wanted = [false; Layer::MAX];
        for c in &mut self.consumers {
            c.tick(active, now, &mut wanted);
        }
        for (i, w) in wanted.into_iter().enumerate() {
            if w {
                self.producer.request_keyframe(Layer(i as u8), now, out);
            }
        }
    }

    /// Per video layer: whether it is active, its measured bitrate and whether a GOP is
    /// cached (the allocator's inputs).
    pub fn layers(&self, now: Instant) -> [LayerStats; Layer::MAX] {
        self.producer.layer_stats(now)
    }

    /// The measured audio payload bitrate.
    pub fn audio_bitrate_bps(&self, now: Instant) -> u64 {
        self.producer.audio_bitrate_bps(now)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::producer::GOP_MAX_PACKETS;

    struct Src {
        t0: Instant,
        seq: [u64; 3],
        ts: [u32; 3],
        aseq: u64,
        ats: u32,
    }

    impl Src {
        fn new() -> Self {
            Src {
                t0: Instant::now(),
                seq: [100, 5000, 9000],
                ts: [1000, 777_000, 3_000_000],
                aseq: 40,
                ats: 0,
            }
        }
        /// One video frame of `n` packets on `layer` at `ms`.
        fn frame(&mut self, layer: u8, ms: u64, key: bool, n: usize) -> Vec<SourcePacket> {
            let li = layer as usize;
            self.ts[li] = self.ts[li].wrapping_add(3000);
            (0..n)
                .map(|k| {
                    self.seq[li] += 1;
                    SourcePacket {
                        kind: MediaKind::Video,
                        layer: Layer(layer),
                        seq: self.seq[li],
                        ts: self.ts[li],
                        marker: k + 1 == n,
                        keyframe_start: key && k == 0,
                        payload: Arc::from(vec![layer; 100 + k].into_boxed_slice()),
                        arrival: self.t0 + Duration::from_millis(ms),
                    }
                })
                .collect()
        }
        /// One single-packet frame of `bytes` bytes on `layer` at `ms`.
        fn sized(&mut self, layer: u8, ms: u64, key: bool, bytes: usize) -> SourcePacket {
            let li = layer as usize;
            self.ts[li] = self.ts[li].wrapping_add(900);
            self.seq[li] += 1;
            SourcePacket {
                kind: MediaKind::Video,
                layer: Layer(layer),
                seq: self.seq[li],
                ts: self.ts[li],
                marker: true,
                keyframe_start: key,
                payload: Arc::from(vec![layer; bytes].into_boxed_slice()),
                arrival: self.t0 + Duration::from_millis(ms),
            }
        }
        fn audio(&mut self, ms: u64) -> SourcePacket {
            self.aseq += 1;
            self.ats = self.ats.wrapping_add(960);
            SourcePacket {
                kind: MediaKind::Audio,
                layer: Layer(0),
                seq: self.aseq,
                ts: self.ats,
                marker: false,
                keyframe_start: false,
                payload: Arc::from(vec![9u8; 60].into_boxed_slice()),
                arrival: self.t0 + Duration::from_millis(ms),
            }
        }
        fn at(&self, ms: u64) -> Instant {
            self.t0 + Duration::from_millis(ms)
        }
    }

    fn video_for(out: &Outputs, sub: ConsumerId) -> Vec<&Forward> {
        out.forwards
            .iter()
            .filter(|f| f.sub == sub && f.kind == MediaKind::Video)
            .collect()
    }

    fn audio_for(out: &Outputs, sub: ConsumerId) -> Vec<&Forward> {
        out.forwards
            .iter()
            .filter(|f| f.sub == sub && f.kind == MediaKind::Audio)
            .collect()
    }

    fn layer_for(out: &Outputs, sub: ConsumerId, layer: u8) -> Vec<&Forward> {
        out.forwards
            .iter()
            .filter(|f| f.sub == sub && f.kind == MediaKind::Video && f.layer == Layer(layer))
            .collect()
    }

    fn assert_contiguous(fs: &[&Forward]) {
        for w in fs.windows(2) {
            assert_eq!(w[1].seq, w[0].seq + 1, "sequence must be contiguous");
        }
    }

    fn live(src: &Src) -> (Router, Outputs) {
        let mut c = Router::new();
        let mut out = Outputs::default();
        c.source_started(Some(Codec::Opus), Some(Codec::H264), src.at(0), &mut out);
        (c, out)
    }

    #[test]
    fn joiner_gets_cached_gop_at_once() {
        let mut src = Src::new();
        let (mut c, mut out) = live(&src);
        for p in src
            .frame(0, 0, true, 5)
            .iter()
            .chain(src.frame(0, 33, false, 2).iter())
        {
            c.on_packet(p, &mut out);
        }
        out.clear();
        c.add_viewer(ConsumerId(1), src.at(40), &mut out);
        let v = video_for(&out, ConsumerId(1));
        assert_eq!(v.len(), 7, "the whole GOP is replayed");
        assert_contiguous(&v);
        assert!(
            out.keyframe_requests.is_empty(),
            "no upstream request needed"
        );
        assert_eq!(c.n_gop_replays(), 1);
        let last_replayed = v.last().unwrap().seq;
        // The live stream continues right after the replay.
        out.clear();
        for p in &src.frame(0, 66, false, 2) {
            c.on_packet(p, &mut out);
        }
        let w = video_for(&out, ConsumerId(1));
        assert_eq!(w[0].seq, last_replayed + 1);
        assert_eq!(
            c.video_status(ConsumerId(1)),
            Some(VideoStatus::Forwarding { layer: Layer(0) })
        );
    }

    #[test]
    fn joiner_without_gop_waits_for_keyframe_and_requests_once_per_second() {
        let mut src = Src::new();
        let (mut c, mut out) = live(&src);
        for p in &src.frame(0, 0, false, 3) {
            c.on_packet(p, &mut out); // mid-GOP: no cache
        }
        assert_eq!(
            out.keyframe_requests,
            vec![Layer(0)],
            "a layer seen mid-GOP asks for a keyframe"
        );
        out.clear();
        c.add_viewer(ConsumerId(1), src.at(10), &mut out);
        c.add_viewer(ConsumerId(2), src.at(20), &mut out);
        c.on_keyframe_request(ConsumerId(1), None, src.at(500), &mut out);
        assert!(
            out.keyframe_requests.is_empty(),
            "coalesced into the request at t=0"
        );
        c.on_keyframe_request(ConsumerId(2), None, src.at(1100), &mut out);
        assert_eq!(
            out.keyframe_requests,
            vec![Layer(0)],
            "a new one after a second"
        );
        out.clear();
        for p in &src.frame(0, 1200, false, 2) {
            c.on_packet(p, &mut out);
        }
        assert!(
            out.forwards.iter().all(|f| f.kind != MediaKind::Video),
            "no delta frames before the keyframe"
        );
        for p in &src.frame(0, 1233, true, 3) {
            c.on_packet(p, &mut out);
        }
        assert_eq!(video_for(&out, ConsumerId(1)).len(), 3);
        assert_eq!(video_for(&out, ConsumerId(2)).len(), 3);
    }

    #[test]
    fn each_viewer_has_its_own_sequence_space_and_shared_payload() {
        let mut src = Src::new();
        let (mut c, mut out) = live(&src);
        c.add_viewer(ConsumerId(1), src.at(0), &mut out);
        c.add_viewer(ConsumerId(2), src.at(0), &mut out);
        out.clear();
        for p in &src.frame(0, 0, true, 4) {
            c.on_packet(p, &mut out);
        }
        let a = video_for(&out, ConsumerId(1));
        let b = video_for(&out, ConsumerId(2));
        assert_eq!(a.len(), 4);
        assert_ne!(a[0].seq, b[0].seq);
        assert!(a[0].seq < 65_536 && b[0].seq < 65_536);
        assert!(
            Arc::ptr_eq(&a[0].payload, &b[0].payload),
            "payload is shared, not copied"
        );
    }

    #[test]
    fn audio_flows_immediately_and_contiguously() {
        let mut src = Src::new();
        let (mut c, mut out) = live(&src);
        c.add_viewer(ConsumerId(7), src.at(0), &mut out);
        out.clear();
        for i in 0..5 {
            let p = src.audio(i * 20);
            c.on_packet(&p, &mut out);
        }
        let a: Vec<_> = out
            .forwards
            .iter()
            .filter(|f| f.kind == MediaKind::Audio)
            .collect();
        assert_eq!(a.len(), 5);
        assert_contiguous(&a);
        assert_eq!(a[1].ts.wrapping_sub(a[0].ts), 960);
    }

    #[test]
    fn a_late_packet_from_before_the_switch_point_is_not_forwarded() {
        // Found writing the rtp_rewrite fuzz target's invariant: a packet of the new layer older than the
        // keyframe the viewer switched at got the outgoing number of the old layer's last
        // packet (a duplicate sequence number with other content, on the wire).
        let mut src = Src::new();
        let (mut c, mut out) = live(&src);
        c.add_viewer(ConsumerId(1), src.at(0), &mut out);
        for p in &src.frame(0, 0, true, 2) {
            c.on_packet(p, &mut out);
        }
        let before = src.frame(2, 30, false, 2);
        c.on_packet(&before[0], &mut out);
        let sent: Vec<u64> = video_for(&out, ConsumerId(1))
            .iter()
            .map(|f| f.seq)
            .collect();
        out.clear();
        for p in &src.frame(2, 66, true, 2) {
            c.on_packet(p, &mut out);
        }
        assert_eq!(
            c.video_status(ConsumerId(1)),
            Some(VideoStatus::Forwarding { layer: Layer(2) })
        );
        // The second packet of the delta frame before the keyframe arrives late.
        c.on_packet(&before[1], &mut out);
        let v = video_for(&out, ConsumerId(1));
        assert_eq!(v.len(), 2, "only the keyframe's packets: {v:?}");
        for f in &v {
            assert!(!sent.contains(&f.seq), "sequence {} sent twice", f.seq);
        }
    }

    #[test]
    fn simulcast_switches_up_only_on_keyframe_and_stays_contiguous() {
        let mut src = Src::new();
        let (mut c, mut out) = live(&src);
        c.add_viewer(ConsumerId(1), src.at(0), &mut out);
        for p in &src.frame(0, 0, true, 2) {
            c.on_packet(p, &mut out);
        }
        assert_eq!(
            c.video_status(ConsumerId(1)),
            Some(VideoStatus::Forwarding { layer: Layer(0) })
        );
        out.clear();
        // Layer 2 appears mid-GOP: no switch yet, a keyframe is requested for it.
        for p in src
            .frame(2, 30, false, 3)
            .iter()
            .chain(src.frame(0, 33, false, 2).iter())
        {
            c.on_packet(p, &mut out);
        }
        assert!(out.keyframe_requests.contains(&Layer(2)));
        let v = video_for(&out, ConsumerId(1));
        assert_eq!(v.len(), 2, "still on layer 0 until layer 2's keyframe");
        let last = v.last().unwrap().seq;
        let last_ts = v.last().unwrap().ts;
        out.clear();
        for p in &src.frame(2, 66, true, 3) {
            c.on_packet(p, &mut out);
        }
        let v = video_for(&out, ConsumerId(1));
        assert_eq!(v.len(), 3);
        assert_eq!(v[0].seq, last + 1, "continuous across the switch");
        let dts = v[0].ts.wrapping_sub(last_ts);
        assert!(
            (2000..4000).contains(&dts),
            "timestamp advances by elapsed time, got {dts}"
        );
        assert_eq!(
            c.video_status(ConsumerId(1)),
            Some(VideoStatus::Forwarding { layer: Layer(2) })
        );
        // Capping the viewer moves it down on the next layer-0 keyframe only.
        c.set_max_layer(ConsumerId(1), Layer(0));
        out.clear();
        for p in src
            .frame(0, 100, false, 1)
            .iter()
            .chain(src.frame(2, 100, false, 1).iter())
        {
            c.on_packet(p, &mut out);
        }
        assert_eq!(
            video_for(&out, ConsumerId(1)).len(),
            1,
            "keeps layer 2 until layer 0 has a keyframe"
        );
        out.clear();
        for p in &src.frame(0, 133, true, 1) {
            c.on_packet(p, &mut out);
        }
        assert_eq!(
            c.video_status(ConsumerId(1)),
            Some(VideoStatus::Forwarding { layer: Layer(0) })
        );
    }

    /// A VP8 packet on `layer` whose descriptor carries PictureID `pid` (15 bits),
    /// TL0PICIDX `tl0` and KEYIDX `key` (RFC 7741).
    fn vp8_pkt(
        layer: u8,
        seq: u64,
        ms: u64,
        key: bool,
        pid: u16,
        tl0: u8,
        keyidx: u8,
    ) -> SourcePacket {
        let t0 = Instant::now();
        SourcePacket {
            kind: MediaKind::Video,
            layer: Layer(layer),
            seq,
            ts: 3000 * seq as u32,
            marker: true,
            keyframe_start: key,
            payload: Arc::from(
                vec![
                    0x90,
                    0xd0, // I, L, K
                    0x80 | (pid >> 8) as u8,
                    pid as u8,
                    tl0,
                    keyidx,
                    if key { 0x00 } else { 0x01 },
                    0,
                ]
                .into_boxed_slice(),
            ),
            arrival: t0 + Duration::from_millis(ms),
        }
    }

    #[test]
    fn vp8_picture_numbers_continue_across_a_layer_switch() {
        let src = Src::new();
        let mut c = Router::new();
        let mut out = Outputs::default();
        c.source_started(Some(Codec::Opus), Some(Codec::Vp8), src.at(0), &mut out);
        c.add_viewer(ConsumerId(1), src.at(0), &mut out);
        c.set_max_layer(ConsumerId(1), Layer(1));
        // Layer 1 numbers its pictures up to 32 767 (the 15-bit wrap), layer 0 from 100.
        for (i, key) in [true, false, false].into_iter().enumerate() {
            let n = i as u16;
            c.on_packet(
                &vp8_pkt(
                    1,
                    10 + n as u64,
                    33 * n as u64,
                    key,
                    32_765 + n,
                    250 + n as u8,
                    30,
                ),
                &mut out,
            );
            c.on_packet(
                &vp8_pkt(
                    0,
                    500 + n as u64,
                    33 * n as u64,
                    key,
                    100 + n,
                    7 + n as u8,
                    3,
                ),
                &mut out,
            );
        }
        let v = video_for(&out, ConsumerId(1));
        assert_eq!(v.len(), 3, "layer 1 only");
        assert!(
            v.iter().all(|f| f.vp8.is_none()),
            "no switch yet: numbers unchanged"
        );
        out.clear();
        // Down to layer 0 at its keyframe: its numbers continue layer 1's (32 767 wraps to 0,
        // TL0PICIDX 252 + 1, KEYIDX 30 + 1).
        c.set_max_layer(ConsumerId(1), Layer(0));
        c.on_packet(&vp8_pkt(0, 503, 99, true, 103, 10, 3), &mut out);
        c.on_packet(&vp8_pkt(0, 504, 132, false, 104, 11, 3), &mut out);
        let v = video_for(&out, ConsumerId(1));
        assert_eq!(v.len(), 2);
        let ids: Vec<_> = v.iter().map(|f| f.vp8.expect("rewritten")).collect();
        assert_eq!(ids[0].picture_id, Some((0, true)));
        assert_eq!(ids[1].picture_id, Some((1, true)));
        assert_eq!(ids[0].tl0_pic_idx, Some(253));
        assert_eq!(ids[1].tl0_pic_idx, Some(254));
        assert_eq!(ids[0].key_idx, Some(31));
        assert_eq!(ids[1].key_idx, Some(31));
    }

    #[test]
    fn publisher_restart_keeps_consumers_with_continuous_sequence() {
        let mut src = Src::new();
        let (mut c, mut out) = live(&src);
        c.add_viewer(ConsumerId(1), src.at(0), &mut out);
        out.clear();
        for p in &src.frame(0, 0, true, 3) {
            c.on_packet(p, &mut out);
        }
        let last = video_for(&out, ConsumerId(1)).last().unwrap().seq;
        c.source_ended();
        assert!(!c.is_live());
        let mut src2 = Src::new();
        src2.t0 = src.t0;
        src2.seq = [40_000, 0, 0];
        out.clear();
        c.source_started(Some(Codec::Opus), Some(Codec::H264), src.at(2000), &mut out);
        assert_eq!(out.keyframe_requests, vec![Layer(0)]);
        for p in &src2.frame(0, 2100, true, 2) {
            c.on_packet(p, &mut out);
        }
        let v = video_for(&out, ConsumerId(1));
        assert_eq!(v[0].seq, last + 1);
    }

    #[test]
    fn removed_consumer_gets_nothing_and_others_continue() {
        let mut src = Src::new();
        let (mut c, mut out) = live(&src);
        for id in 1..=3 {
            c.add_viewer(ConsumerId(id), src.at(0), &mut out);
        }
        c.remove_consumer(ConsumerId(1));
        out.clear();
        for p in &src.frame(0, 0, true, 2) {
            c.on_packet(p, &mut out);
        }
        assert!(video_for(&out, ConsumerId(1)).is_empty());
        assert_eq!(video_for(&out, ConsumerId(2)).len(), 2);
        assert_eq!(video_for(&out, ConsumerId(3)).len(), 2);
        assert_eq!(c.n_consumers(), 2);
    }

    #[test]
    fn gop_cache_overflow_makes_joiners_wait() {
        let mut src = Src::new();
        let (mut c, mut out) = live(&src);
        c.on_packet(&src.frame(0, 0, true, 1)[0], &mut out);
        for i in 0..GOP_MAX_PACKETS {
            c.on_packet(&src.frame(0, 1 + i as u64 / 100, false, 1)[0], &mut out);
        }
        out.clear();
        c.add_viewer(ConsumerId(1), src.at(200), &mut out);
        assert!(out.forwards.is_empty());
        assert_eq!(
            c.video_status(ConsumerId(1)),
            Some(VideoStatus::WaitingKeyframe { target: Layer(0) })
        );
    }

    fn around(bps: u64, want: u64) -> bool {
        bps.abs_diff(want) * 20 <= want
    }

    #[test]
    fn bitrate_is_measured_per_layer_and_a_stopped_layer_decays() {
        let mut src = Src::new();
        let (mut c, mut out) = live(&src);
        // Layer 0 at 1 Mbit/s (1250 B every 10 ms), layer 1 at 250 kbit/s for 2 s,
        // audio at 24 kbit/s (60 B every 20 ms).
        for i in 0..200u64 {
            c.on_packet(&src.sized(0, i * 10, i == 0, 1250), &mut out);
            if i % 4 == 0 {
                c.on_packet(&src.sized(1, i * 10, i == 0, 1250), &mut out);
            }
            if i % 2 == 0 {
                c.on_packet(&src.audio(i * 10), &mut out);
            }
        }
        let l = c.layers(src.at(2000));
        assert!(around(l[0].bitrate_bps, 1_000_000), "{:?}", l[0]);
        assert!(around(l[1].bitrate_bps, 250_000), "{:?}", l[1]);
        assert!(l[0].active && l[1].active && l[0].has_gop && l[1].has_gop);
        assert_eq!(l[2], LayerStats::default(), "layer 2 never sent");
        assert!(around(c.audio_bitrate_bps(src.at(2000)), 24_000));
        // Layer 1 and audio stop; layer 0 goes on for two more seconds.
        for i in 200..400u64 {
            c.on_packet(&src.sized(0, i * 10, false, 1250), &mut out);
        }
        let l = c.layers(src.at(4000));
        assert!(around(l[0].bitrate_bps, 1_000_000), "{:?}", l[0]);
        assert!(l[0].active);
        assert_eq!(l[1].bitrate_bps, 0, "a stopped layer decays to 0");
        assert!(!l[1].active, "and goes inactive");
        assert_eq!(c.audio_bitrate_bps(src.at(4000)), 0);
        // A new source starts from nothing.
        c.source_started(Some(Codec::Opus), Some(Codec::H264), src.at(4000), &mut out);
        assert_eq!(c.layers(src.at(4000)), [LayerStats::default(); Layer::MAX]);
    }

    #[test]
    fn paused_viewer_keeps_audio_and_resumes_video_at_a_keyframe_contiguously() {
        let mut src = Src::new();
        let (mut c, mut out) = live(&src);
        let v = ConsumerId(1);
        c.add_viewer(v, src.at(0), &mut out);
        for p in &src.frame(0, 0, true, 3) {
            c.on_packet(p, &mut out);
        }
        let last = video_for(&out, v).last().unwrap().seq;
        out.clear();
        c.set_paused(v, true, src.at(20), &mut out);
        assert_eq!(c.video_status(v), Some(VideoStatus::Paused));
        for ms in [33, 66, 100] {
            for p in &src.frame(0, ms, ms == 66, 2) {
                c.on_packet(p, &mut out);
            }
            c.on_packet(&src.audio(ms), &mut out);
        }
        c.on_keyframe_request(v, None, src.at(1200), &mut out);
        c.tick(src.at(1300), &mut out);
        assert!(video_for(&out, v).is_empty(), "no video while paused");
        assert_eq!(audio_for(&out, v).len(), 3, "audio continues");
        assert!(
            out.keyframe_requests.is_empty(),
            "a paused viewer asks nothing"
        );
        out.clear();
        // Unpause: no GOP burst (one is cached), a coalesced request, wait for a keyframe.
        c.set_paused(v, false, src.at(1400), &mut out);
        assert!(out.forwards.is_empty(), "no GOP replay on unpause");
        assert_eq!(out.keyframe_requests, vec![Layer(0)]);
        assert_eq!(c.n_gop_replays(), 0);
        assert_eq!(
            c.video_status(v),
            Some(VideoStatus::WaitingKeyframe { target: Layer(0) })
        );
        c.set_paused(v, true, src.at(1410), &mut out);
        c.set_paused(v, false, src.at(1420), &mut out);
        assert_eq!(out.keyframe_requests, vec![Layer(0)], "coalesced");
        for p in &src.frame(0, 1433, false, 2) {
            c.on_packet(p, &mut out);
        }
        assert!(
            video_for(&out, v).is_empty(),
            "no delta frame before the keyframe"
        );
        for p in src
            .frame(0, 1466, true, 2)
            .iter()
            .chain(src.frame(0, 1500, false, 2).iter())
        {
            c.on_packet(p, &mut out);
        }
        let w = video_for(&out, v);
        assert_eq!(w.len(), 4);
        assert!(w[0].keyframe_start);
        assert_eq!(w[0].seq, last + 1, "sequence continues across the pause");
        assert_contiguous(&w);
        assert_eq!(
            c.video_status(v),
            Some(VideoStatus::Forwarding { layer: Layer(0) })
        );
    }

    /// Sends one keyframe then `deltas` delta frames on each of the three layers,
    /// interleaved, from `ms` on.
    fn three_layers(src: &mut Src, c: &mut Router, ms: u64, deltas: u64, out: &mut Outputs) {
        for f in 0..=deltas {
            for layer in 0..3 {
                for p in &src.frame(layer, ms + f * 33, f == 0, 2) {
                    c.on_packet(p, out);
                }
            }
        }
    }

    /// 100 ms of a three-layer source at ~150 k / 500 k / 1.5 Mbit/s plus 40 kbit/s of
    /// audio, keyframes on every layer each second; the viewer's estimate (if any) is
    /// reported first. Returns the allocation changes.
    fn feed_100ms(
        src: &mut Src,
        c: &mut Router,
        ms: u64,
        estimate: Option<(ConsumerId, u64)>,
        out: &mut Outputs,
    ) -> Vec<Allocation> {
        let mut changes = Vec::new();
        if let Some((id, bps)) = estimate
            && let Some(a) = c.on_estimate(id, bps, src.at(ms), out)
        {
            changes.push(a);
        }
        let key = ms.is_multiple_of(1000);
        for (layer, bytes) in [(0u8, 1875), (1, 6250), (2, 18750)] {
            let p = src.sized(layer, ms, key, bytes);
            c.on_packet(&p, out);
        }
        for k in 0..5 {
            let mut a = src.audio(ms + k * 20);
            a.payload = Arc::from(vec![9u8; 100].into_boxed_slice());
            c.on_packet(&a, out);
        }
        let mut changed = Vec::new();
        c.tick(src.at(ms), out);
        c.reallocate(src.at(ms), out, &mut changed);
        changes.extend(changed.into_iter().map(|(_, a)| a));
        changes
    }

    #[test]
    fn an_adaptive_viewer_follows_its_estimate_at_keyframes_and_pauses_to_audio_only() {
        let mut src = Src::new();
        let (mut c, mut out) = live(&src);
        let v = ConsumerId(1);
        for ms in (0..2000).step_by(100) {
            feed_100ms(&mut src, &mut c, ms, None, &mut out);
        }
        out.clear();
        // Joins with a 1 Mbit/s start estimate: layer 1 (its GOP replayed), not the top.
        c.add_adaptive_viewer(v, 1_000_000, src.at(2000), &mut out);
        assert!(!layer_for(&out, v, 1).is_empty(), "layer 1's GOP replayed");
        assert!(layer_for(&out, v, 2).is_empty());
        #[derive(Default)]
        struct Rec {
            video: Vec<Forward>,
            audio: usize,
            log: Vec<(u64, Allocation)>,
        }
        fn run(c: &mut Router, src: &mut Src, r: &mut Rec, from: u64, to: u64, bps: u64) {
            let v = ConsumerId(1);
            for ms in (from..to).step_by(100) {
                let mut out = Outputs::default();
                for a in feed_100ms(src, c, ms, Some((v, bps)), &mut out) {
                    r.log.push((ms, a));
                }
                r.video.extend(video_for(&out, v).into_iter().cloned());
                r.audio += audio_for(&out, v).len();
            }
        }
        let mut r = Rec::default();
        // Probing proves 5 Mbit/s: the top layer, from its next keyframe (at 3 s).
        run(&mut c, &mut src, &mut r, 2000, 7000, 5_000_000);
        assert_eq!(r.log.len(), 1);
        assert_eq!(r.log[0].1.target, Some(Target::Layer(Layer(2))));
        assert_eq!(
            c.video_status(v),
            Some(VideoStatus::Forwarding { layer: Layer(2) })
        );
        let first_top = r.video.iter().position(|f| f.layer == Layer(2)).unwrap();
        assert!(r.video[first_top].keyframe_start, "switch up at a keyframe");
        // The link collapses to 150 kbit/s: down to layer 0 at once, then video pauses
        // (it stays far under layer 0's need); audio goes on.
        let before = (r.video.len(), r.audio);
        run(&mut c, &mut src, &mut r, 7000, 10_000, 150_000);
        assert_eq!(r.log.len(), 3);
        assert_eq!(r.log[1].1.target, Some(Target::Layer(Layer(0))));
        assert_eq!(r.log[2].1.target, Some(Target::Paused));
        assert_eq!(r.log[2].1.pause, Some(PauseReason::Bandwidth));
        assert_eq!(c.video_status(v), Some(VideoStatus::Paused));
        let paused_at = src.at(r.log[2].0);
        assert!(
            r.video[before.0..].iter().all(|f| f.arrival <= paused_at),
            "no video after the pause"
        );
        assert_eq!(r.audio - before.1, 150, "every audio packet meanwhile");
        // The link comes back to 600 kbit/s: layer 0 (not more: 1 needs headroom), by
        // itself, at a layer-0 keyframe.
        let before = r.video.len();
        run(&mut c, &mut src, &mut r, 10_000, 14_000, 600_000);
        assert_eq!(r.log.len(), 4);
        assert_eq!(r.log[3].1.target, Some(Target::Layer(Layer(0))));
        assert_eq!(r.log[3].1.pause, None);
        let resumed = &r.video[before..];
        assert!(
            !resumed.is_empty()
                && resumed[0].keyframe_start
                && resumed.iter().all(|f| f.layer == Layer(0))
        );
        assert_eq!(c.allocation(v).map(|a| a.switches), Some(4));
        // One continuous stream for the browser across every switch and the pause.
        let refs: Vec<&Forward> = r.video.iter().collect();
        assert_contiguous(&refs);
    }

    /// A viewer on the top layer (~1.5 Mbit/s of ~2.2 with every layer) whose estimate
    /// falls to `bps` at 7 s: the video it is forwarded from the switch down until its
    /// first frame of layer 1, and the switch's allocation.
    fn switch_down_to(bps: u64) -> (Vec<Forward>, Vec<Forward>, Allocation) {
        let mut src = Src::new();
        let (mut c, mut out) = live(&src);
        let v = ConsumerId(1);
        for ms in (0..2000).step_by(100) {
            feed_100ms(&mut src, &mut c, ms, None, &mut out);
        }
        c.add_adaptive_viewer(v, 5_000_000, src.at(2000), &mut out);
        let mut video: Vec<Forward> = Vec::new();
        let mut switch = None;
        for ms in (2000..12_000).step_by(100) {
            let mut out = Outputs::default();
            let bps = if ms < 7000 { 5_000_000 } else { bps };
            for a in feed_100ms(&mut src, &mut c, ms, Some((v, bps)), &mut out) {
                if ms >= 7000 && switch.is_none() {
                    switch = Some((video.len(), a));
                }
            }
            video.extend(video_for(&out, v).into_iter().cloned());
        }
        let (at, a) = switch.expect("no switch down");
        assert_eq!(a.target, Some(Target::Layer(Layer(1))), "{a:?}");
        let refs: Vec<&Forward> = video.iter().collect();
        assert_contiguous(&refs);
        let after = video.split_off(at);
        let first_l1 = after
            .iter()
            .position(|f| f.layer == Layer(1))
            .expect("layer 1 never came");
        assert!(after[first_l1].keyframe_start, "switched at a keyframe");
        (video, after[..first_l1].to_vec(), a)
    }

    #[test]
    fn a_switch_down_the_link_cannot_carry_stops_the_old_layer_at_once() {
        // 1.4 Mbit/s: layer 1 (~0.5 Mbit/s) fits, the top layer does not even by itself
        // (and the fall is not one to leave at once, under 0.7 of its need, which goes
        // lower).
        let (before, until_l1, _) = switch_down_to(1_400_000);
        assert!(before.iter().any(|f| f.layer == Layer(2)));
        assert_eq!(
            until_l1.len(),
            0,
            "top-layer packets forwarded after the switch down, before layer 1's keyframe"
        );
    }

    #[test]
    fn a_switch_down_the_link_still_carries_keeps_the_old_layer_until_the_new_keyframe() {
        // 1.6 Mbit/s: under the top layer's need (its bitrate with headroom for headers
        // and audio), not under its bitrate: its pictures still cross the link while the
        // viewer waits for layer 1's keyframe.
        let (_, until_l1, _) = switch_down_to(1_600_000);
        assert!(
            !until_l1.is_empty() && until_l1.iter().all(|f| f.layer == Layer(2)),
            "the top layer stopped before layer 1's keyframe: {} packets",
            until_l1.len()
        );
    }

    #[test]
    fn dropped_video_restarts_at_a_keyframe_without_a_sequence_gap() {
        let mut src = Src::new();
        let (mut c, mut out) = live(&src);
        let v = ConsumerId(1);
        c.add_viewer(v, src.at(0), &mut out);
        out.clear();
        let mut sent: Vec<Forward> = Vec::new();
        for ms in (0..500).step_by(100) {
            feed_100ms(&mut src, &mut c, ms, None, &mut out);
        }
        let mut fs: Vec<Forward> = video_for(&out, v).into_iter().cloned().collect();
        // The pacer sent the first two and dropped the rest.
        let first_dropped = fs[2].seq;
        sent.extend(fs.drain(..2));
        out.clear();
        c.video_dropped(v, first_dropped, src.at(500), &mut out);
        assert_eq!(
            out.keyframe_requests,
            vec![Layer(2)],
            "a keyframe is asked for at once"
        );
        out.clear();
        for ms in (500..1500).step_by(100) {
            feed_100ms(&mut src, &mut c, ms, None, &mut out);
        }
        let after: Vec<Forward> = video_for(&out, v).into_iter().cloned().collect();
        assert!(after[0].keyframe_start, "restarts at a keyframe");
        sent.extend(after);
        let refs: Vec<&Forward> = sent.iter().collect();
        assert_contiguous(&refs);
    }

    #[test]
    fn a_relay_consumer_gets_only_the_layers_it_wants() {
        let mut src = Src::new();
        let (mut c, mut out) = live(&src);
        let r = ConsumerId(9);
        c.add_relay_consumer(r, src.at(0), &mut out);
        out.clear();
        // Its viewers sit on layer 0 only.
        c.set_relay_layers(r, [true, false, false], src.at(0), &mut out);
        three_layers(&mut src, &mut c, 0, 3, &mut out);
        assert_eq!(layer_for(&out, r, 0).len(), 8);
        assert!(layer_for(&out, r, 1).is_empty() && layer_for(&out, r, 2).is_empty());
        assert_eq!(c.relay_layers(r), Some([true, false, false]));
        // One of them climbs: layer 1 again, from its next keyframe, asked for now.
        out.clear();
        c.set_relay_layers(r, [true, true, false], src.at(200), &mut out);
        assert_eq!(out.keyframe_requests, vec![Layer(1)]);
        three_layers(&mut src, &mut c, 1200, 1, &mut out);
        let l1 = layer_for(&out, r, 1);
        assert!(l1[0].keyframe_start && l1.len() == 4);
        assert!(layer_for(&out, r, 2).is_empty());
        // A viewer ignores it.
        c.add_viewer(ConsumerId(1), src.at(1300), &mut out);
        c.set_relay_layers(ConsumerId(1), [false; Layer::MAX], src.at(1300), &mut out);
        assert_eq!(c.relay_layers(ConsumerId(1)), None);
    }

    #[test]
    fn a_measured_relay_link_keeps_the_layers_it_carries() {
        let mut src = Src::new();
        let (mut c, mut out) = live(&src);
        let r = ConsumerId(9);
        for ms in (0..2000).step_by(100) {
            feed_100ms(&mut src, &mut c, ms, None, &mut out);
        }
        c.add_relay_consumer(r, src.at(2000), &mut out);
        c.measure_relay(r, 20_000_000, src.at(2000));
        let count = |out: &Outputs| -> [usize; 3] {
            std::array::from_fn(|l| layer_for(out, r, l as u8).len())
        };
        // The link carries 0.7 Mbit/s: layers 0 and 1 together need ~0.77: layer 0 only.
        let mut changes = Vec::new();
        for ms in (2000..8000).step_by(100) {
            out.clear();
            changes.extend(feed_100ms(
                &mut src,
                &mut c,
                ms,
                Some((r, 700_000)),
                &mut out,
            ));
        }
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(count(&out), [1, 0, 0], "only layer 0 flows");
        // The link recovers: every layer again, each from its keyframe.
        let mut seen = [0; 3];
        for ms in (8000..12_000).step_by(100) {
            out.clear();
            changes.extend(feed_100ms(
                &mut src,
                &mut c,
                ms,
                Some((r, 5_000_000)),
                &mut out,
            ));
            for (l, n) in count(&out).iter().enumerate() {
                seen[l] += n;
            }
        }
        assert_eq!(changes.len(), 2);
        assert_eq!(changes[1].target, Some(Target::Layer(Layer(2))));
        assert_eq!(count(&out), [1, 1, 1]);
        assert!(seen[1] >= 2 && seen[2] >= 2);
        // What the downstream relay asks for still bounds it.
        c.set_relay_layers(r, [true, false, false], src.at(12_000), &mut out);
        out.clear();
        let narrowed = feed_100ms(&mut src, &mut c, 12_000, Some((r, 5_000_000)), &mut out);
        assert_eq!(count(&out), [1, 0, 0]);
        // …without moving the link's own target: asking for less is not a failing link.
        assert!(narrowed.is_empty(), "{narrowed:?}");
        assert_eq!(
            c.allocation(r).and_then(|a| a.target),
            Some(Target::Layer(Layer(2)))
        );
        // Wanted again: it flows from its next keyframe, with no climb to wait for.
        c.set_relay_layers(r, [true, true, false], src.at(12_100), &mut out);
        let mut seen1 = 0;
        for ms in (12_100..14_100).step_by(100) {
            out.clear();
            let ch = feed_100ms(&mut src, &mut c, ms, Some((r, 5_000_000)), &mut out);
            assert!(ch.is_empty(), "{ch:?}");
            seen1 += count(&out)[1];
            assert_eq!(count(&out)[2], 0, "layer 2 is not wanted");
        }
        assert!(seen1 >= 2, "layer 1 flows again: {seen1}");
    }

    #[test]
    fn a_layer_wanted_again_gets_a_trial_on_a_link_measured_while_it_carried_less() {
        let mut src = Src::new();
        let (mut c, mut out) = live(&src);
        let r = ConsumerId(9);
        for ms in (0..2000).step_by(100) {
            feed_100ms(&mut src, &mut c, ms, None, &mut out);
        }
        c.add_relay_consumer(r, src.at(2000), &mut out);
        c.measure_relay(r, 20_000_000, src.at(2000));
        c.set_relay_layers(r, [true, false, false], src.at(2000), &mut out);
        let count = |out: &Outputs| -> [usize; 3] {
            std::array::from_fn(|l| layer_for(out, r, l as u8).len())
        };
        // Layer 0 alone wanted: the link's estimate settles at 0.7 Mbit/s, what an estimator
        // that sees 0.19 Mbit/s delivered may say; layers 0 and 1 together need ~0.77.
        for ms in (2000..6000).step_by(100) {
            out.clear();
            let ch = feed_100ms(&mut src, &mut c, ms, Some((r, 700_000)), &mut out);
            assert!(ch.is_empty(), "{ch:?}");
            assert_eq!(count(&out), [1, 0, 0]);
        }
        // Layer 1 wanted again: it flows for the trial, the estimate unchanged.
        c.set_relay_layers(r, [true, true, false], src.at(6000), &mut out);
        for ms in (6000..10_000).step_by(100) {
            out.clear();
            let ch = feed_100ms(&mut src, &mut c, ms, Some((r, 700_000)), &mut out);
            assert!(ch.is_empty(), "at {ms} ms: {ch:?}");
            assert_eq!(count(&out), [1, 1, 0], "at {ms} ms");
        }
        // The trial over and the estimate still short of the two layers: the link keeps
        // layer 0 alone (a trial, not a pass).
        let mut changes = Vec::new();
        for ms in (10_000..11_000).step_by(100) {
            out.clear();
            changes.extend(feed_100ms(
                &mut src,
                &mut c,
                ms,
                Some((r, 700_000)),
                &mut out,
            ));
        }
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(changes[0].target, Some(Target::Layer(Layer(0))));
        assert_eq!(count(&out), [1, 0, 0]);
    }

    #[test]
    fn relay_consumer_gets_every_layer_each_contiguous_and_feeds_a_shard() {
        let mut src = Src::new();
        let (mut c, mut out) = live(&src);
        let r = ConsumerId(9);
        c.add_relay_consumer(r, src.at(0), &mut out);
        c.add_viewer(ConsumerId(1), src.at(0), &mut out);
        c.set_max_layer(r, Layer(0)); // no effect on a relay consumer
        out.clear();
        three_layers(&mut src, &mut c, 0, 3, &mut out);
        for p in [src.audio(10), src.audio(30)] {
            c.on_packet(&p, &mut out);
        }
        for layer in 0..3 {
            let l = layer_for(&out, r, layer);
            assert_eq!(l.len(), 8, "layer {layer}: every packet");
            assert!(l[0].keyframe_start && !l[1].keyframe_start);
            assert_contiguous(&l);
        }
        assert_eq!(audio_for(&out, r).len(), 2);
        assert_eq!(
            c.video_status(r),
            Some(VideoStatus::Forwarding { layer: Layer(2) })
        );
        // A viewer, by contrast, has one stream: layers 0 and 1 until layer 2's keyframe.
        let viewer = video_for(&out, ConsumerId(1));
        assert_eq!(viewer.len(), 12);
        assert_contiguous(&viewer);
        assert!(viewer[4..].iter().all(|f| f.layer == Layer(2)));
        // In process, a relay consumer's output is another router's source.
        let mut shard = Router::new();
        let mut sout = Outputs::default();
        shard.source_started(Some(Codec::Opus), Some(Codec::H264), src.at(0), &mut sout);
        shard.add_viewer(ConsumerId(2), src.at(0), &mut sout);
        shard.add_relay_consumer(ConsumerId(3), src.at(0), &mut sout);
        for f in out.forwards.iter().filter(|f| f.sub == r) {
            shard.on_packet(&f.clone().into_source(), &mut sout);
        }
        assert_eq!(audio_for(&sout, ConsumerId(2)).len(), 2);
        assert!(!video_for(&sout, ConsumerId(2)).is_empty());
        for layer in 0..3 {
            let l = layer_for(&sout, ConsumerId(3), layer);
            assert_eq!(l.len(), 8);
            assert_contiguous(&l);
        }
    }

    #[test]
    fn relay_consumer_joins_with_the_gop_of_every_active_layer() {
        let mut src = Src::new();
        let (mut c, mut out) = live(&src);
        three_layers(&mut src, &mut c, 0, 2, &mut out);
        assert!(out.keyframe_requests.is_empty());
        out.clear();
        let r = ConsumerId(9);
        c.add_relay_consumer(r, src.at(80), &mut out);
        assert_eq!(c.n_gop_replays(), 3, "one replay per layer");
        assert!(out.keyframe_requests.is_empty(), "nothing to ask upstream");
        let mut last = [0; 3];
        for layer in 0..3 {
            let l = layer_for(&out, r, layer);
            assert_eq!(l.len(), 6, "layer {layer}: its whole GOP");
            assert!(l[0].keyframe_start);
            assert_contiguous(&l);
            last[layer as usize] = l.last().unwrap().seq;
        }
        out.clear();
        for layer in 0..3 {
            for p in &src.frame(layer, 100, false, 1) {
                c.on_packet(p, &mut out);
            }
            assert_eq!(
                layer_for(&out, r, layer)[0].seq,
                last[layer as usize] + 1,
                "layer {layer}: live continues after the replay"
            );
        }
    }

    #[test]
    fn relay_consumer_asks_for_active_layers_without_a_gop_on_join() {
        let mut src = Src::new();
        let (mut c, mut out) = live(&src);
        // Layer 1 appears mid-GOP (asked for at once), layers 0 and 2 with a keyframe.
        for (layer, key) in [(0, true), (1, false), (2, true)] {
            for p in &src.frame(layer, 0, key, 2) {
                c.on_packet(p, &mut out);
            }
        }
        assert_eq!(out.keyframe_requests, vec![Layer(1)]);
        for layer in 0..3 {
            for p in &src.frame(layer, 1050, false, 1) {
                c.on_packet(p, &mut out);
            }
        }
        out.clear();
        let r = ConsumerId(9);
        c.add_relay_consumer(r, src.at(1100), &mut out);
        assert_eq!(c.n_gop_replays(), 2);
        assert_eq!(
            out.keyframe_requests,
            vec![Layer(1)],
            "the layer without a GOP"
        );
        assert!(layer_for(&out, r, 1).is_empty());
        assert_eq!(layer_for(&out, r, 0).len(), 3);
        out.clear();
        c.tick(src.at(1200), &mut out);
        assert!(out.keyframe_requests.is_empty(), "coalesced");
        c.tick(src.at(2100), &mut out);
        assert_eq!(
            out.keyframe_requests,
            vec![Layer(1)],
            "still waiting on layer 1"
        );
        out.clear();
        for p in &src.frame(1, 2150, true, 2) {
            c.on_packet(p, &mut out);
        }
        assert_eq!(layer_for(&out, r, 1).len(), 2);
        c.tick(src.at(3200), &mut out);
        assert!(out.keyframe_requests.is_empty(), "every layer flows");
    }

    #[test]
    fn relay_consumer_continues_every_layer_across_a_publisher_restart() {
        let mut src = Src::new();
        let (mut c, mut out) = live(&src);
        let r = ConsumerId(9);
        c.add_relay_consumer(r, src.at(0), &mut out);
        out.clear();
        three_layers(&mut src, &mut c, 0, 1, &mut out);
        let last: Vec<_> = (0..3)
            .map(|l| {
                let f = *layer_for(&out, r, l).last().unwrap();
                (f.seq, f.ts)
            })
            .collect();
        c.source_ended();
        assert_eq!(c.video_status(r), Some(VideoStatus::NoSource));
        let mut src2 = Src::new();
        src2.t0 = src.t0;
        src2.seq = [40_000, 7, 61_000];
        src2.ts = [5, 4_000_000_000, 123];
        out.clear();
        c.source_started(Some(Codec::Opus), Some(Codec::H264), src.at(2000), &mut out);
        assert_eq!(out.keyframe_requests, vec![Layer(0)]);
        three_layers(&mut src2, &mut c, 2100, 1, &mut out);
        for (l, (seq, ts)) in last.into_iter().enumerate() {
            let v = layer_for(&out, r, l as u8);
            assert_eq!(v.len(), 4);
            assert_eq!(v[0].seq, seq + 1, "layer {l}: sequence continues");
            let dts = v[0].ts.wrapping_sub(ts);
            assert!(
                (180_000..200_000).contains(&dts),
                "layer {l}: timestamp advances by the ~2 s elapsed, got {dts}"
            );
            assert_contiguous(&v);
        }
    }

    #[test]
    fn relay_keyframe_requests_name_their_layer_and_are_coalesced() {
        let mut src = Src::new();
        let (mut c, mut out) = live(&src);
        let r = ConsumerId(9);
        c.add_relay_consumer(r, src.at(0), &mut out);
        three_layers(&mut src, &mut c, 0, 1, &mut out);
        out.clear();
        let before = c.n_keyframe_requests();
        c.on_keyframe_request(r, Some(Layer(2)), src.at(100), &mut out);
        assert_eq!(out.keyframe_requests, vec![Layer(2)]);
        c.on_keyframe_request(r, Some(Layer(2)), src.at(500), &mut out);
        c.on_keyframe_request(ConsumerId(77), Some(Layer(1)), src.at(500), &mut out);
        assert_eq!(
            out.keyframe_requests,
            vec![Layer(2)],
            "coalesced; unknown ids ignored"
        );
        c.on_keyframe_request(r, Some(Layer(1)), src.at(600), &mut out);
        c.on_keyframe_request(r, Some(Layer(2)), src.at(1100), &mut out);
        assert_eq!(
            out.keyframe_requests,
            vec![Layer(2), Layer(1), Layer(2)],
            "per layer, at most one a second"
        );
        assert_eq!(c.n_keyframe_requests() - before, 3);
    }

    #[test]
    fn paused_relay_consumer_keeps_audio_and_resumes_every_layer() {
        let mut src = Src::new();
        let (mut c, mut out) = live(&src);
        let r = ConsumerId(9);
        c.add_relay_consumer(r, src.at(0), &mut out);
        three_layers(&mut src, &mut c, 0, 1, &mut out);
        let last = layer_for(&out, r, 1).last().unwrap().seq;
        c.set_paused(r, true, src.at(100), &mut out);
        out.clear();
        three_layers(&mut src, &mut c, 1100, 1, &mut out);
        c.on_packet(&src.audio(1100), &mut out);
        assert!(video_for(&out, r).is_empty());
        assert_eq!(audio_for(&out, r).len(), 1);
        assert_eq!(c.video_status(r), Some(VideoStatus::Paused));
        out.clear();
        c.set_paused(r, false, src.at(1200), &mut out);
        assert!(out.forwards.is_empty(), "no GOP replay on unpause");
        assert_eq!(out.keyframe_requests, vec![Layer(0), Layer(1), Layer(2)]);
        three_layers(&mut src, &mut c, 1233, 0, &mut out);
        assert_eq!(layer_for(&out, r, 1)[0].seq, last + 1);
    }
}
