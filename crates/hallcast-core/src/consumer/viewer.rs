//! A viewer: audio plus ONE video layer, the highest active layer not above its cap.
//!
//! Layer changes happen only at a keyframe of the new layer, so the decoder never sees a
//! frame it cannot decode; the outgoing stream stays continuous across them. A viewer can
//! pause its video (its audio continues); unpausing waits for the next keyframe of its
//! target layer (requested through the coalesced path) rather than replaying a GOP burst.
//!
//! Two parties limit a viewer's video: the viewer itself (`SetVideo`: a layer cap, a pause)
//! and, when its link is measured, the bandwidth [`Allocator`]. The effective cap is the
//! lower of the two, and video is paused when either pauses it; the viewer's own pause
//! wins the reason.

use std::time::{Duration, Instant};

use crate::alloc::{Allocator, PauseReason, Target};
use crate::consumer::egress::Egress;
use crate::consumer::{ConsumerId, VideoStatus};
use crate::media::{Codec, Layer, MediaKind, SourcePacket};
use crate::producer::Producer;
use crate::router::Outputs;

/// A viewer waiting this long for a keyframe of a layer it wants to switch to asks for
/// one (a viewer with no video at all asks at once).
const SWITCH_REQUEST_AFTER: Duration = Duration::from_millis(200);

#[derive(Debug)]
pub(crate) struct Viewer {
    video: Egress,
    /// Highest layer this viewer may receive: the lower of its own cap and the
    /// allocator's choice.
    pub(crate) max_layer: Layer,
    /// Video paused, by the viewer or by the allocator.
    pub(crate) paused: bool,
    /// The viewer's own wishes (`SetVideo`).
    wish_max: Layer,
    wish_paused: bool,
    /// Present once the viewer's link is measured (adaptation on). Boxed: touched per
    /// estimate, not per packet, so the fan-out loop's viewers stay compact.
    pub(crate) alloc: Option<Box<Allocator>>,
}

impl Viewer {
    pub(crate) fn new(initial_seq: u64) -> Self {
        let top = Layer((Layer::MAX - 1) as u8);
        Viewer {
            video: Egress::new(initial_seq),
            max_layer: top,
            paused: false,
            wish_max: top,
            wish_paused: false,
            alloc: None,
        }
    }

    /// The viewer's own cap.
    pub(crate) fn set_wish_max(&mut self, layer: Layer) {
        self.wish_max = layer;
        self.max_layer = self.effective_max();
    }

    /// The viewer's own pause; applies the effective state.
    pub(crate) fn set_wish_paused(
        &mut self,
        paused: bool,
        producer: &mut Producer,
        now: Instant,
        out: &mut Outputs,
    ) {
        self.wish_paused = paused;
        let effective = self.effective_paused();
        self.set_paused(effective, producer, now, out);
    }

    fn effective_max(&self) -> Layer {
        match self.alloc.as_deref().map(Allocator::target) {
            Some(Target::Layer(l)) => l.min(self.wish_max),
            _ => self.wish_max,
        }
    }

    fn effective_paused(&self) -> bool {
        self.wish_paused || self.alloc.as_deref().map(Allocator::target) == Some(Target::Paused)
    }

    /// Why the video is paused, if it is.
    pub(crate) fn pause_reason(&self) -> Option<PauseReason> {
        if self.wish_paused {
            Some(PauseReason::Viewer)
        } else if self.paused {
            Some(PauseReason::Bandwidth)
        } else {
            None
        }
    }

    /// Video from `first_seq` on was dropped before it left (a paused viewer's pacer queue):
    /// number from `first_seq` again; unless paused, restart at the next keyframe of the
    /// target layer.
    pub(crate) fn video_dropped(
        &mut self,
        first_seq: u64,
        producer: &mut Producer,
        now: Instant,
        out: &mut Outputs,
    ) {
        self.video.rewind(first_seq);
        if self.paused || producer.video_codec().is_none() {
            return;
        }
        self.video.waiting_since = Some(now);
        let target = target_of(producer.active_layers(now), self.max_layer, None);
        producer.request_keyframe(target, now, out);
    }

    /// Applies the allocator's cap before the join (the join's GOP replay is of that layer).
    pub(crate) fn apply_cap_only(&mut self) {
        self.max_layer = self.effective_max();
    }

    /// Applies the allocator's (new) target: the cap at once (the egress follows at the
    /// target layer's next keyframe, asked for now), the pause or resume. `cut`: a switch
    /// down stops the old layer now rather than at the new layer's keyframe.
    pub(crate) fn apply_allocation(
        &mut self,
        cut: bool,
        producer: &mut Producer,
        now: Instant,
        out: &mut Outputs,
    ) {
        self.max_layer = self.effective_max();
        let paused = self.effective_paused();
        if paused != self.paused {
            self.set_paused(paused, producer, now, out);
        } else if !paused && producer.video_codec().is_some() {
            let target = target_of(
                producer.active_layers(now),
                self.max_layer,
                self.video.current,
            );
            if self.video.current != Some(target) {
                if cut && self.video.current.is_some_and(|c| c > target) {
                    self.video.stop();
                }
                self.video.waiting_since.get_or_insert(now);
                producer.request_keyframe(target, now, out);
            }
        }
    }

    /// Starts the video of a joiner: the cached GOP of its target layer at once, or a
    /// (coalesced) keyframe request. Returns the number of GOPs replayed.
    pub(crate) fn join(
        &mut self,
        id: ConsumerId,
        producer: &mut Producer,
        now: Instant,
        out: &mut Outputs,
    ) -> u64 {
        let Some(codec) = producer.video_codec() else {
            return 0;
        };
        let target = target_of(producer.active_layers(now), self.max_layer, None);
        match producer.gop(target) {
            Some(gop) => {
                self.video.replay(id, target, gop, codec, out);
                1
            }
            None => {
                self.video.waiting_since = Some(now);
                producer.request_keyframe(target, now, out);
                0
            }
        }
    }

    pub(crate) fn on_video(
        &mut self,
        id: ConsumerId,
        active: [bool; Layer::MAX],
        pkt: &SourcePacket,
        codec: Codec,
        out: &mut Outputs,
    ) {
        if self.paused {
            return;
        }
        let target = target_of(active, self.max_layer, self.video.current);
        if self.video.current != Some(target) && pkt.layer == target && pkt.keyframe_start {
            self.video.start(target, pkt, codec);
        }
        if self.video.current == Some(pkt.layer)
            && let Some(f) = self.video.rewrite(id, MediaKind::Video, pkt)
        {
            out.forwards.push(f);
        }
    }

    /// Stops the video (source change); `waiting_since` marks a viewer that will wait for
    /// the new source's keyframe.
    pub(crate) fn stop(&mut self, waiting_since: Option<Instant>) {
        self.video.stop();
        if !self.paused {
            self.video.waiting_since = waiting_since;
        }
    }

    pub(crate) fn set_paused(
        &mut self,
        paused: bool,
        producer: &mut Producer,
        now: Instant,
        out: &mut Outputs,
    ) {
        if paused == self.paused {
            return;
        }
        self.paused = paused;
        self.video.stop();
        if !paused && producer.video_codec().is_some() {
            let target = target_of(producer.active_layers(now), self.max_layer, None);
            self.video.waiting_since = Some(now);
            producer.request_keyframe(target, now, out);
        }
    }

    pub(crate) fn keyframe_request(
        &self,
        producer: &mut Producer,
        now: Instant,
        out: &mut Outputs,
    ) {
        if self.paused {
            return;
        }
        let layer = self
            .video
            .current
            .unwrap_or_else(|| self.target_latest(producer));
        producer.request_keyframe(layer, now, out);
    }

    pub(crate) fn tick(
        &mut self,
        active: [bool; Layer::MAX],
        now: Instant,
        wanted: &mut [bool; Layer::MAX],
    ) {
        if self.paused {
            return;
        }
        let target = target_of(active, self.max_layer, self.video.current);
        if self.video.current != Some(target) {
            let since = *self.video.waiting_since.get_or_insert(now);
            if now.saturating_duration_since(since) >= SWITCH_REQUEST_AFTER
                || self.video.current.is_none()
            {
                wanted[target.index()] = true;
            }
        } else {
            self.video.waiting_since = None;
        }
    }

    pub(crate) fn status(&self, producer: &Producer) -> VideoStatus {
        if self.paused {
            return VideoStatus::Paused;
        }
        match (producer.video_codec(), self.video.current) {
            (None, _) => VideoStatus::NoSource,
            (Some(_), Some(layer)) => VideoStatus::Forwarding { layer },
            (Some(_), None) => VideoStatus::WaitingKeyframe {
                target: self.target_latest(producer),
            },
        }
    }

    /// The target layer as of the latest video arrival (layer 0 before any).
    fn target_latest(&self, producer: &Producer) -> Layer {
        match producer.active_layers_latest() {
            Some(active) => target_of(active, self.max_layer, None),
            None => Layer(0),
        }
    }
}

/// The layer a viewer should receive: the highest active layer not above its cap. With
/// nothing active it keeps what it has (or layer 0).
fn target_of(active: [bool; Layer::MAX], max: Layer, current: Option<Layer>) -> Layer {
    (0..=max.index())
        .rev()
        .find(|&i| active[i])
        .map(|i| Layer(i as u8))
        .or(current)
        .unwrap_or(Layer(0))
}
