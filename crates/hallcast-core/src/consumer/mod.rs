//! The consumer side of a [`Router`](crate::Router): who receives the source, and how.
//!
//! Every consumer gets the audio, rewritten into its own sequence/timestamp space. Its
//! video depends on what it is:
//! - a viewer receives ONE video layer (the highest active one not above its cap,
//!   switching only at a keyframe of the new layer) and can be paused;
//! - a relay consumer (an edge relay, an in-process shard) receives EVERY video
//!   layer, each in its own continuous space, so that it can serve its own viewers'
//!   layer choices.
//!
//! The per-stream rewrite state is an `Egress`; a consumer owns one for audio
//! and one per outgoing video stream.

pub(crate) mod egress;
pub(crate) mod relay;
pub(crate) mod viewer;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::alloc::{Allocator, Decision, PauseReason};
use crate::keyframe::Vp8Ids;
use crate::media::{Codec, Layer, MediaKind, SourcePacket};
use crate::producer::{LayerStats, Producer};
use crate::router::Outputs;
use egress::Egress;
use relay::Relay;
use viewer::Viewer;

/// Identifies a consumer (a viewer session or a downstream relay) in a router: the
/// consumer's session id ([`crate::SessionId`]) as a plain number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConsumerId(pub u128);

/// A packet to send to one consumer, headers already rewritten into the consumer's own
/// sequence and timestamp space (for a relay consumer: the space of the packet's layer).
#[derive(Debug, Clone)]
pub struct Forward {
    /// The consumer this packet is for.
    pub sub: ConsumerId,
    pub kind: MediaKind,
    /// The source layer of the packet (always 0 for audio). A viewer's video carries
    /// several layers over time in one stream; a relay consumer has one stream per layer.
    pub layer: Layer,
    /// Extended outgoing sequence number (starts below 2^16, so ROC 0).
    pub seq: u64,
    pub ts: u32,
    pub marker: bool,
    /// Copied from the source packet: this packet begins a keyframe.
    pub keyframe_start: bool,
    pub payload: Arc<[u8]>,
    /// When the source packet arrived; the stack uses it as the wallclock.
    pub arrival: Instant,
    /// VP8: the payload descriptor's picture numbers to write instead of the source's
    /// (`None`: unchanged). The payload itself is shared, never copied for this.
    pub vp8: Option<Vp8Ids>,
}

impl Forward {
    /// This packet as a source packet of another router (an in-process shard fed by a
    /// relay consumer): the rewritten sequence number and timestamp, everything else
    /// moved (the payload `Arc` too: no reference count traffic per packet).
    pub fn into_source(self) -> SourcePacket {
        SourcePacket {
            kind: self.kind,
            layer: self.layer,
            seq: self.seq,
            ts: self.ts,
            marker: self.marker,
            keyframe_start: self.keyframe_start,
            payload: self.payload,
            arrival: self.arrival,
        }
    }
}

/// Why a consumer's video is or is not flowing: a value the dashboard can show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoStatus {
    /// No publisher, or the publisher sends no video.
    NoSource,
    /// The consumer paused its video (audio continues). Takes precedence over the others.
    Paused,
    /// Waiting for a keyframe on the wanted layer (a relay consumer: on the highest
    /// active layer, when it forwards none yet).
    WaitingKeyframe { target: Layer },
    /// Forwarding this layer (a relay consumer: the highest layer it forwards).
    Forwarding { layer: Layer },
}

/// Deterministic, spread-out initial sequence numbers below 2^15 so that the first
/// outgoing packets have ROC 0 with room before a rollover.
fn initial_seq(id: ConsumerId) -> u64 {
    (id.0.wrapping_mul(7919) % 20_000) as u64 + 1_000
}

/// The video side of a consumer.
#[derive(Debug)]
enum Video {
    Viewer(Viewer),
    /// Boxed: three egresses, and viewers (the many) stay compact in the fan-out loop.
    Relay(Box<Relay>),
}

/// One consumer of a router.
#[derive(Debug)]
pub(crate) struct Consumer {
    pub(crate) id: ConsumerId,
    audio: Egress,
    video: Video,
}

impl Consumer {
    pub(crate) fn viewer(id: ConsumerId) -> Self {
        let seq = initial_seq(id);
        Consumer {
            id,
            audio: Egress::new(seq),
            video: Video::Viewer(Viewer::new(seq)),
        }
    }

    pub(crate) fn relay(id: ConsumerId) -> Self {
        let seq = initial_seq(id);
        Consumer {
            id,
            audio: Egress::new(seq),
            video: Video::Relay(Box::new(Relay::new(seq))),
        }
    }

    /// Starts the video of a consumer that just joined: GOP replay where one is cached,
    /// a coalesced keyframe request where not. Returns the number of GOPs replayed.
    pub(crate) fn join(&mut self, producer: &mut Producer, now: Instant, out: &mut Outputs) -> u64 {
        match &mut self.video {
            Video::Viewer(v) => v.join(self.id, producer, now, out),
            Video::Relay(r) => r.join(self.id, producer, now, out),
        }
    }

    pub(crate) fn on_audio(&mut self, pkt: &SourcePacket, codec: Codec, out: &mut Outputs) {
        if self.audio.current.is_none() {
            self.audio.start(Layer(0), pkt, codec);
        }
        if let Some(f) = self.audio.rewrite(self.id, MediaKind::Audio, pkt) {
            out.forwards.push(f);
        }
    }

    pub(crate) fn on_video(
        &mut self,
        active: [bool; Layer::MAX],
        pkt: &SourcePacket,
        codec: Codec,
        out: &mut Outputs,
    ) {
        match &mut self.video {
            Video::Viewer(v) => v.on_video(self.id, active, pkt, codec, out),
            Video::Relay(r) => r.on_video(self.id, pkt, codec, out),
        }
    }

    /// A (new) publisher went live: every stream restarts on the new source, video at
    /// its next keyframe, all with continuous outgoing sequence numbers.
    pub(crate) fn source_started(&mut self, now: Instant) {
        self.audio.stop();
        match &mut self.video {
            Video::Viewer(v) => v.stop(Some(now)),
            Video::Relay(r) => r.stop(Some(now)),
        }
    }

    pub(crate) fn source_ended(&mut self) {
        self.audio.stop();
        match &mut self.video {
            Video::Viewer(v) => v.stop(None),
            Video::Relay(r) => r.stop(None),
        }
    }

    pub(crate) fn wants_video(&self) -> bool {
        match &self.video {
            Video::Viewer(v) => !v.paused,
            Video::Relay(r) => !r.paused,
        }
    }

    /// Caps a viewer's layer (its own wish); a relay consumer receives every layer and
    /// ignores it.
    pub(crate) fn set_max_layer(&mut self, layer: Layer) {
        if let Video::Viewer(v) = &mut self.video {
            v.set_wish_max(layer);
        }
    }

    /// The allocator, when the consumer's link is measured.
    pub(crate) fn allocator(&self) -> Option<&Allocator> {
        match &self.video {
            Video::Viewer(v) => v.alloc.as_deref(),
            Video::Relay(r) => r.alloc.as_deref(),
        }
    }

    /// Measures a relay consumer's link from now on (`start_bps`: its estimator's start).
    pub(crate) fn measure_relay(
        &mut self,
        start_bps: u64,
        layers: &[LayerStats; Layer::MAX],
        audio_bps: u64,
        now: Instant,
    ) {
        if let Video::Relay(r) = &mut self.video {
            let ladder = r.ladder(layers);
            r.alloc = Some(Box::new(Allocator::new(now, start_bps, &ladder, audio_bps)));
        }
    }

    /// A loss report on a measured viewer's link, for its allocator (`None`: not a measured
    /// viewer; a relay link's estimator already weighs its loss).
    pub(crate) fn on_loss(&mut self, now: Instant, lost: f32) -> Option<()> {
        match &mut self.video {
            Video::Viewer(v) => {
                v.alloc.as_mut()?.on_loss(now, lost);
                Some(())
            }
            Video::Relay(_) => None,
        }
    }

    /// A measured viewer's raw estimate (see [`Allocator::on_raw_estimate`]).
    pub(crate) fn on_raw_estimate(&mut self, now: Instant, bps: u64) {
        if let Video::Viewer(v) = &mut self.video
            && let Some(a) = v.alloc.as_mut()
        {
            a.on_raw_estimate(now, bps);
        }
    }

    /// A measured viewer's round trip (see [`Allocator::on_rtt_sent`]).
    pub(crate) fn on_rtt(&mut self, now: Instant, rtt: Duration, sent: Option<Instant>) {
        if let Video::Viewer(v) = &mut self.video
            && let Some(a) = v.alloc.as_mut()
        {
            match sent {
                Some(sent) => a.on_rtt_sent(now, rtt, sent),
                None => a.on_rtt(now, rtt),
            }
        }
    }

    /// A measured viewer's pacing rate (see [`Allocator::pace_bps`]).
    pub(crate) fn pace_bps(&self, now: Instant) -> Option<u64> {
        match &self.video {
            Video::Viewer(v) => v.alloc.as_ref()?.pace_bps(now),
            Video::Relay(_) => None,
        }
    }

    /// A measured viewer's throttle (see [`Allocator::throttle_bps`]).
    pub(crate) fn throttle_bps(&self, now: Instant) -> Option<u64> {
        match &self.video {
            Video::Viewer(v) => v.alloc.as_ref()?.throttle_bps(now),
            Video::Relay(_) => None,
        }
    }

    /// Turns on bandwidth allocation for a viewer that has not joined yet.
    pub(crate) fn start_allocation(&mut self, alloc: Allocator) {
        if let Video::Viewer(v) = &mut self.video {
            v.alloc = Some(Box::new(alloc));
            v.apply_cap_only();
        }
    }

    /// Runs the viewer's allocator on `estimate_bps` (`None`: its last estimate) and
    /// applies a changed target. Returns the decision (`None`: no allocator).
    pub(crate) fn allocate(
        &mut self,
        estimate_bps: Option<u64>,
        layers: &[LayerStats; Layer::MAX],
        audio_bps: u64,
        producer: &mut Producer,
        now: Instant,
        out: &mut Outputs,
    ) -> Option<Decision> {
        match &mut self.video {
            Video::Viewer(v) => {
                let a = v.alloc.as_mut()?;
                let est = estimate_bps.or(a.estimate_bps())?;
                let d = a.update(now, est, layers, audio_bps);
                if d.changed {
                    v.apply_allocation(d.cut, producer, now, out);
                }
                Some(d)
            }
            Video::Relay(r) => {
                let ladder = r.ladder(layers);
                let a = r.alloc.as_mut()?;
                let est = estimate_bps.or(a.estimate_bps())?;
                let d = a.update(now, est, &ladder, audio_bps);
                if d.changed {
                    r.apply_target(d.target, producer, now, out);
                }
                Some(d)
            }
        }
    }

    /// A relay consumer's wanted layers (a viewer ignores it).
    pub(crate) fn set_relay_layers(
        &mut self,
        wanted: [bool; Layer::MAX],
        producer: &mut Producer,
        now: Instant,
        out: &mut Outputs,
    ) {
        if let Video::Relay(r) = &mut self.video {
            r.set_wanted(wanted, producer, now, out);
        }
    }

    /// A relay consumer's wanted layers (`None` for a viewer).
    pub(crate) fn relay_layers(&self) -> Option<[bool; Layer::MAX]> {
        match &self.video {
            Video::Relay(r) => Some(r.wanted()),
            Video::Viewer(_) => None,
        }
    }

    /// A viewer's video from `first_seq` on was dropped before it left.
    pub(crate) fn video_dropped(
        &mut self,
        first_seq: u64,
        producer: &mut Producer,
        now: Instant,
        out: &mut Outputs,
    ) {
        if let Video::Viewer(v) = &mut self.video {
            v.video_dropped(first_seq, producer, now, out);
        }
    }

    pub(crate) fn pause_reason(&self) -> Option<PauseReason> {
        match &self.video {
            Video::Viewer(v) => v.pause_reason(),
            Video::Relay(r) => r.paused.then_some(PauseReason::Viewer),
        }
    }

    pub(crate) fn set_paused(
        &mut self,
        paused: bool,
        producer: &mut Producer,
        now: Instant,
        out: &mut Outputs,
    ) {
        match &mut self.video {
            Video::Viewer(v) => v.set_wish_paused(paused, producer, now, out),
            Video::Relay(r) => r.set_paused(paused, producer, now, out),
        }
    }

    /// The consumer lost decoder state on the stream of `layer` (`None`: its
    /// current/target stream).
    pub(crate) fn keyframe_request(
        &self,
        layer: Option<Layer>,
        producer: &mut Producer,
        now: Instant,
        out: &mut Outputs,
    ) {
        match &self.video {
            Video::Viewer(v) => v.keyframe_request(producer, now, out),
            Video::Relay(r) => r.keyframe_request(layer, producer, now, out),
        }
    }

    /// Marks in `wanted` the layers this consumer is waiting on a keyframe of.
    pub(crate) fn tick(
        &mut self,
        active: [bool; Layer::MAX],
        now: Instant,
        wanted: &mut [bool; Layer::MAX],
    ) {
        match &mut self.video {
            Video::Viewer(v) => v.tick(active, now, wanted),
            Video::Relay(r) => r.tick(active, wanted),
        }
    }

    pub(crate) fn video_status(&self, producer: &Producer) -> VideoStatus {
        match &self.video {
            Video::Viewer(v) => v.status(producer),
            Video::Relay(r) => r.status(producer),
        }
    }
}
