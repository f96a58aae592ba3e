//! A relay consumer: audio plus EVERY video layer, for an edge relay or an in-process
//! shard that serves its own viewers' layer choices.
//!
//! Each layer is its own outgoing stream with its own continuous sequence/timestamp
//! space: a layer starts at its first keyframe (or its cached GOP on join) and a
//! publisher reconnect continues each stream where it stopped, so downstream sees one
//! uninterrupted source. Keyframe requests name the layer they are for.
//!
//! A downstream relay may want fewer layers than exist (`wanted`: the layers its own
//! viewers use): the others are not forwarded at all, so an edge whose points all sit on
//! weak links pulls only the low layers. A layer wanted again restarts at its next
//! keyframe (asked for at once), continuing its own stream.
//!
//! When the link to the downstream relay is measured, an [`Allocator`] sees the wanted
//! layers as one ladder (layer i needs the bitrates of every wanted layer up to i) and
//! keeps the layers the link carries (`fit`); the lowest wanted layer always flows, since
//! a relay serves many points. Forwarded = wanted and fit.

use std::time::Instant;

use crate::alloc::{Allocator, Target};
use crate::consumer::egress::Egress;
use crate::consumer::{ConsumerId, VideoStatus};
use crate::media::{Codec, Layer, MediaKind, SourcePacket};
use crate::producer::{LayerStats, Producer};
use crate::router::Outputs;

#[derive(Debug)]
pub(crate) struct Relay {
    /// One outgoing stream per source layer, indexed by [`Layer::index`].
    video: [Egress; Layer::MAX],
    pub(crate) paused: bool,
    /// The layers the downstream relay wants (all by default).
    wanted: [bool; Layer::MAX],
    /// The layers its link carries (all, unless measured and too thin).
    fit: [bool; Layer::MAX],
    /// Present when the link is measured.
    pub(crate) alloc: Option<Box<Allocator>>,
}

impl Relay {
    pub(crate) fn new(initial_seq: u64) -> Self {
        Relay {
            video: std::array::from_fn(|_| Egress::new(initial_seq)),
            paused: false,
            wanted: [true; Layer::MAX],
            fit: [true; Layer::MAX],
            alloc: None,
        }
    }

    /// Forwarded layers: wanted and carried by the link.
    fn mask(&self) -> [bool; Layer::MAX] {
        std::array::from_fn(|i| self.wanted[i] && self.fit[i])
    }

    /// The layers as one ladder for the allocator: layer i "costs" every wanted layer up
    /// to it. An unwanted layer costs nothing more than the wanted ones below it (it is not
    /// sent), so the link's target does not move when the downstream relay's wishes do:
    /// a layer wanted again flows at once if the link carried it (measured: an edge whose
    /// viewer paused asked for layer 0 alone, the link's target fell to 0 as if the link
    /// had failed, and the layer wanted again a second later stayed blocked for a minute
    /// while the link's allocator waited to "climb" back, in tests/tree.rs).
    pub(crate) fn ladder(&self, layers: &[LayerStats; Layer::MAX]) -> [LayerStats; Layer::MAX] {
        let mut sum = 0;
        std::array::from_fn(|i| {
            if !layers[i].active {
                return LayerStats::default();
            }
            if self.wanted[i] {
                sum += layers[i].bitrate_bps;
            }
            if sum == 0 {
                // Below the lowest wanted layer: not a choice.
                return LayerStats::default();
            }
            LayerStats {
                bitrate_bps: sum,
                ..layers[i]
            }
        })
    }

    /// Applies the allocator's target: the wanted layers up to it (the lowest wanted
    /// one at least).
    pub(crate) fn apply_target(
        &mut self,
        target: Target,
        producer: &mut Producer,
        now: Instant,
        out: &mut Outputs,
    ) {
        let lowest = self.wanted.iter().position(|&w| w).unwrap_or(0);
        let fit = std::array::from_fn(|i| match target {
            Target::Layer(t) => i <= t.index().max(lowest),
            Target::Paused => i == lowest,
        });
        self.change(self.wanted, fit, producer, now, out);
    }

    pub(crate) fn wanted(&self) -> [bool; Layer::MAX] {
        self.wanted
    }

    /// The layers the downstream relay wants from now on: unwanted ones stop at once,
    /// newly wanted ones start at their next keyframe (requested now). A newly wanted layer
    /// gets a trial: the link's allocator warms up again ([`Allocator::rewarm`]), so the
    /// layer flows and the link's estimate can grow with it (measured: an edge whose viewer
    /// had paused pulled layer 0 alone, the link's estimate settled at 0.4 Mbit/s, and when
    /// the recovered viewer wanted layer 1 the link refused it at once and for good, in
    /// tests/tree.rs: an estimate never rises above 1.5× what the link delivers).
    pub(crate) fn set_wanted(
        &mut self,
        wanted: [bool; Layer::MAX],
        producer: &mut Producer,
        now: Instant,
        out: &mut Outputs,
    ) {
        let grew = (0..Layer::MAX).any(|i| wanted[i] && !self.wanted[i]);
        if grew && let Some(a) = self.alloc.as_deref_mut() {
            a.rewarm(now);
        }
        self.change(wanted, self.fit, producer, now, out);
    }

    fn change(
        &mut self,
        wanted: [bool; Layer::MAX],
        fit: [bool; Layer::MAX],
        producer: &mut Producer,
        now: Instant,
        out: &mut Outputs,
    ) {
        let before = self.mask();
        self.wanted = wanted;
        self.fit = fit;
        let after = self.mask();
        if after == before {
            return;
        }
        for (i, egress) in self.video.iter_mut().enumerate() {
            if before[i] && !after[i] {
                egress.stop();
            }
        }
        if !self.paused && producer.video_codec().is_some() {
            self.request_missing(producer.active_layers(now), producer, now, out);
        }
    }

    /// Starts every active layer: its cached GOP at once where there is one, a
    /// (coalesced) keyframe request where not. Inactive layers' GOPs are not replayed:
    /// they are stale, and the layer may resume mid-GOP. Returns the number of GOPs
    /// replayed.
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
        let active = producer.active_layers(now);
        let mut replays = 0;
        let mask = self.mask();
        for (i, egress) in self.video.iter_mut().enumerate() {
            let layer = Layer(i as u8);
            if !active[i] || !mask[i] {
                continue;
            }
            if let Some(gop) = producer.gop(layer) {
                egress.replay(id, layer, gop, codec, out);
                replays += 1;
            }
        }
        self.request_missing(active, producer, now, out);
        replays
    }

    pub(crate) fn on_video(
        &mut self,
        id: ConsumerId,
        pkt: &SourcePacket,
        codec: Codec,
        out: &mut Outputs,
    ) {
        if self.paused || !(self.wanted[pkt.layer.index()] && self.fit[pkt.layer.index()]) {
            return;
        }
        let egress = &mut self.video[pkt.layer.index()];
        if egress.current.is_none() && pkt.keyframe_start {
            egress.start(pkt.layer, pkt, codec);
        }
        if egress.current.is_some()
            && let Some(f) = egress.rewrite(id, MediaKind::Video, pkt)
        {
            out.forwards.push(f);
        }
    }

    /// Stops every layer (source change); `waiting_since` marks layers that will wait
    /// for the new source's keyframes.
    pub(crate) fn stop(&mut self, waiting_since: Option<Instant>) {
        for egress in &mut self.video {
            egress.stop();
            if !self.paused {
                egress.waiting_since = waiting_since;
            }
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
        self.stop(Some(now));
        if !paused && producer.video_codec().is_some() {
            self.request_missing(producer.active_layers(now), producer, now, out);
        }
    }

    /// A keyframe request on the stream of `layer`; `None` asks for every active layer
    /// (layer 0 when none is).
    pub(crate) fn keyframe_request(
        &self,
        layer: Option<Layer>,
        producer: &mut Producer,
        now: Instant,
        out: &mut Outputs,
    ) {
        if self.paused {
            return;
        }
        match layer {
            Some(layer) if self.wanted[layer.index()] => producer.request_keyframe(layer, now, out),
            Some(_) => {}
            None => {
                let active = producer.active_layers(now);
                if !active.contains(&true) {
                    producer.request_keyframe(Layer(0), now, out);
                }
                for (i, _) in active.iter().enumerate().filter(|(_, a)| **a) {
                    if self.mask()[i] {
                        producer.request_keyframe(Layer(i as u8), now, out);
                    }
                }
            }
        }
    }

    /// Wants a keyframe on every active layer it does not forward yet (on layer 0 when
    /// nothing is active and nothing forwarded, like a viewer).
    pub(crate) fn tick(&mut self, active: [bool; Layer::MAX], wanted: &mut [bool; Layer::MAX]) {
        if self.paused {
            return;
        }
        for (i, egress) in self.video.iter().enumerate() {
            if active[i] && self.wanted[i] && self.fit[i] && egress.current.is_none() {
                wanted[i] = true;
            }
        }
        if !active.contains(&true) && self.video.iter().all(|e| e.current.is_none()) {
            wanted[0] = true;
        }
    }

    /// Paused, no source, forwarding (the highest layer forwarded) or waiting for a
    /// keyframe (of the highest active layer) when no layer is forwarded yet.
    pub(crate) fn status(&self, producer: &Producer) -> VideoStatus {
        if self.paused {
            return VideoStatus::Paused;
        }
        if producer.video_codec().is_none() {
            return VideoStatus::NoSource;
        }
        if let Some(layer) = self.video.iter().rev().find_map(|e| e.current) {
            return VideoStatus::Forwarding { layer };
        }
        let target = producer
            .active_layers_latest()
            .and_then(|active| active.iter().rposition(|&a| a))
            .map_or(Layer(0), |i| Layer(i as u8));
        VideoStatus::WaitingKeyframe { target }
    }

    /// Keyframe requests for every active layer not forwarded yet (layer 0 when nothing
    /// is active and nothing forwarded); those layers start waiting now.
    fn request_missing(
        &mut self,
        active: [bool; Layer::MAX],
        producer: &mut Producer,
        now: Instant,
        out: &mut Outputs,
    ) {
        let mut wanted = [false; Layer::MAX];
        self.tick(active, &mut wanted);
        for (i, egress) in self.video.iter_mut().enumerate() {
            if wanted[i] {
                egress.waiting_since = Some(now);
                producer.request_keyframe(Layer(i as u8), now, out);
            }
        }
    }
}
