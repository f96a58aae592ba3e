//! The source side of a [`Router`](crate::Router): what the publisher sends, layer by
//! layer.
//!
//! Per video layer the producer keeps the GOP cache (the packets since the last
//! keyframe, replayed to joiners), the last arrival (a layer that sent nothing for
//! [`LAYER_INACTIVE_AFTER`] is inactive), the keyframe-request coalescing (at most one
//! upstream request per layer per [`KEYFRAME_REQUEST_INTERVAL`], however many consumers
//! ask) and a measured bitrate. Audio has a measured bitrate too.
//!
//! Bitrates are payload bytes over a sliding window of [`BITRATE_WINDOW`], kept in a
//! fixed ring of buckets stamped by packet arrival times: no clock reads, no allocation.

use std::time::{Duration, Instant};

use crate::media::{Codec, Layer, SourcePacket};
use crate::router::Outputs;

/// At most one upstream keyframe request per layer in this interval, however many
/// consumers ask.
pub const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_secs(1);
/// A layer that sent nothing for this long is treated as inactive.
pub const LAYER_INACTIVE_AFTER: Duration = Duration::from_millis(1500);
/// GOP cache bounds: past these the GOP is marked unusable until the next keyframe.
pub const GOP_MAX_PACKETS: usize = 8192;
pub const GOP_MAX_BYTES: usize = 16 * 1024 * 1024;
/// The window the bitrates are measured over.
pub const BITRATE_WINDOW: Duration = Duration::from_secs(1);

/// Width of one bucket of the bitrate window, in milliseconds.
const RATE_BUCKET_MS: u64 = 100;
/// Buckets in a full window.
const RATE_BUCKETS: u64 = BITRATE_WINDOW.as_millis() as u64 / RATE_BUCKET_MS;

/// What the router knows about one video layer of the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LayerStats {
    /// The layer sent something within [`LAYER_INACTIVE_AFTER`].
    pub active: bool,
    /// Payload bitrate over the last [`BITRATE_WINDOW`], in bits per second.
    pub bitrate_bps: u64,
    /// A GOP is cached (a joiner on this layer gets a picture at once).
    pub has_gop: bool,
}

/// Bytes over a sliding window: one slot per [`RATE_BUCKET_MS`] bucket (numbered from
/// the first packet), the full window plus the bucket in progress.
#[derive(Debug, Clone, Default)]
pub(crate) struct RateMeter {
    origin: Option<Instant>,
    /// (bucket number, bytes), slot `n % len` holds bucket `n`.
    slots: [(u64, u64); RATE_BUCKETS as usize + 1],
}

impl RateMeter {
    fn bucket(origin: Instant, at: Instant) -> u64 {
        let d = at.saturating_duration_since(origin);
        (d.as_secs() * 1000 + u64::from(d.subsec_millis())) / RATE_BUCKET_MS
    }

    pub(crate) fn record(&mut self, at: Instant, bytes: usize) {
        let origin = *self.origin.get_or_insert(at);
        let b = Self::bucket(origin, at);
        let n = self.slots.len() as u64;
        let slot = &mut self.slots[(b % n) as usize];
        if slot.0 != b {
            *slot = (b, 0);
        }
        slot.1 += bytes as u64;
    }

    /// Bits per second over the window ending at `now` (the bucket in progress plus the
    /// full buckets before it, [`BITRATE_WINDOW`] of them; less while the meter is
    /// younger than that).
    pub(crate) fn bps(&self, now: Instant) -> u64 {
        let Some(origin) = self.origin else {
            return 0;
        };
        let cur = Self::bucket(origin, now);
        let oldest = cur.saturating_sub(RATE_BUCKETS);
        let bytes: u64 = self
            .slots
            .iter()
            .filter(|(b, _)| (oldest..=cur).contains(b))
            .map(|&(_, bytes)| bytes)
            .sum();
        let age = now.saturating_duration_since(origin);
        let into_bucket = age.saturating_sub(Duration::from_millis(cur * RATE_BUCKET_MS));
        let span = (BITRATE_WINDOW + into_bucket)
            .min(age)
            .max(Duration::from_millis(RATE_BUCKET_MS));
        (u128::from(bytes) * 8 * 1_000_000 / span.as_micros().max(1)) as u64
    }
}

#[derive(Debug, Default)]
struct GopCache {
    packets: Vec<SourcePacket>,
    bytes: usize,
    /// RTP timestamp of the keyframe that starts `packets`.
    keyframe_ts: Option<u32>,
    /// False when the cache overflowed or the GOP's start was never seen.
    usable: bool,
}

impl GopCache {
    fn push(&mut self, pkt: &SourcePacket) {
        if pkt.keyframe_start && self.keyframe_ts != Some(pkt.ts) {
            self.packets.clear();
            self.bytes = 0;
            self.keyframe_ts = Some(pkt.ts);
            self.usable = true;
        }
        if !self.usable {
            return;
        }
        if self.packets.len() >= GOP_MAX_PACKETS || self.bytes + pkt.payload.len() > GOP_MAX_BYTES {
            self.reset();
            return;
        }
        self.bytes += pkt.payload.len();
        self.packets.push(pkt.clone());
    }

    fn reset(&mut self) {
        self.packets.clear();
        self.bytes = 0;
        self.keyframe_ts = None;
        self.usable = false;
    }

    fn replayable(&self) -> Option<&[SourcePacket]> {
        (self.usable && !self.packets.is_empty()).then_some(self.packets.as_slice())
    }
}

#[derive(Debug, Default)]
struct LayerState {
    gop: GopCache,
    last_arrival: Option<Instant>,
    last_keyframe_request: Option<Instant>,
    rate: RateMeter,
}

/// The source of one router: its codecs and per-layer state.
#[derive(Debug, Default)]
pub(crate) struct Producer {
    audio_codec: Option<Codec>,
    video_codec: Option<Codec>,
    layers: [LayerState; Layer::MAX],
    audio_rate: RateMeter,
    n_keyframe_requests: u64,
}

impl Producer {
    /// A (new) publisher: every per-layer state starts over.
    pub(crate) fn start(&mut self, audio: Option<Codec>, video: Option<Codec>) {
        self.audio_codec = audio;
        self.video_codec = video;
        self.layers = Default::default();
        self.audio_rate = RateMeter::default();
    }

    pub(crate) fn end(&mut self) {
        self.start(None, None);
    }

    pub(crate) fn audio_codec(&self) -> Option<Codec> {
        self.audio_codec
    }

    pub(crate) fn video_codec(&self) -> Option<Codec> {
        self.video_codec
    }

    pub(crate) fn n_keyframe_requests(&self) -> u64 {
        self.n_keyframe_requests
    }

    pub(crate) fn ingest_audio(&mut self, pkt: &SourcePacket) {
        self.audio_rate.record(pkt.arrival, pkt.payload.len());
    }

    /// Caches and measures a video packet. Returns true when its layer was never seen
    /// before and this packet is not a keyframe start: the layer appeared mid-GOP and
    /// needs a keyframe to become usable.
    pub(crate) fn ingest_video(&mut self, pkt: &SourcePacket) -> bool {
        let layer = &mut self.layers[pkt.layer.index()];
        let became_active = layer.last_arrival.is_none();
        layer.last_arrival = Some(pkt.arrival);
        layer.gop.push(pkt);
        layer.rate.record(pkt.arrival, pkt.payload.len());
        became_active && !pkt.keyframe_start
    }

    /// The cached GOP of `layer`, if one can be replayed.
    pub(crate) fn gop(&self, layer: Layer) -> Option<&[SourcePacket]> {
        self.layers[layer.index()].gop.replayable()
    }

    /// Asks the publisher for a keyframe on `layer`, unless one was asked for within
    /// [`KEYFRAME_REQUEST_INTERVAL`].
    pub(crate) fn request_keyframe(&mut self, layer: Layer, now: Instant, out: &mut Outputs) {
        let state = &mut self.layers[layer.index()];
        let due = state
            .last_keyframe_request
            .is_none_or(|t| now.saturating_duration_since(t) >= KEYFRAME_REQUEST_INTERVAL);
        if due {
            state.last_keyframe_request = Some(now);
            self.n_keyframe_requests += 1;
            out.keyframe_requests.push(layer);
        }
    }

    pub(crate) fn active_layers(&self, now: Instant) -> [bool; Layer::MAX] {
        let mut active = [false; Layer::MAX];
        for (i, l) in self.layers.iter().enumerate() {
            active[i] = l
                .last_arrival
                .is_some_and(|t| now.saturating_duration_since(t) < LAYER_INACTIVE_AFTER);
        }
        active
    }

    /// The active layers as of the latest video arrival (for callers without a `now`);
    /// `None` before any video arrived.
    pub(crate) fn active_layers_latest(&self) -> Option<[bool; Layer::MAX]> {
        let latest = self.layers.iter().filter_map(|l| l.last_arrival).max()?;
        Some(self.active_layers(latest))
    }

    pub(crate) fn layer_stats(&self, now: Instant) -> [LayerStats; Layer::MAX] {
        let active = self.active_layers(now);
        let mut stats = [LayerStats::default(); Layer::MAX];
        for (i, l) in self.layers.iter().enumerate() {
            stats[i] = LayerStats {
                active: active[i],
                bitrate_bps: l.rate.bps(now),
                has_gop: l.gop.replayable().is_some(),
            };
        }
        stats
    }

    pub(crate) fn audio_bitrate_bps(&self, now: Instant) -> u64 {
        self.audio_rate.bps(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn meter_reads_a_steady_rate_over_its_window() {
        let t0 = Instant::now();
        let mut m = RateMeter::default();
        // 1250 bytes every 10 ms: 1 Mbit/s.
        for i in 0..200 {
            m.record(ms(t0, i * 10), 1250);
        }
        for at in [1990, 1995, 2000, 2050] {
            let bps = m.bps(ms(t0, at));
            assert!(
                (950_000..=1_050_000).contains(&bps),
                "at {at} ms: {bps} bit/s"
            );
        }
        // Young meter: measured over its age, not the full window.
        let mut young = RateMeter::default();
        for i in 0..30 {
            young.record(ms(t0, i * 10), 1250);
        }
        let bps = young.bps(ms(t0, 300));
        assert!((950_000..=1_050_000).contains(&bps), "young: {bps}");
    }

    #[test]
    fn meter_forgets_what_left_the_window() {
        let t0 = Instant::now();
        let mut m = RateMeter::default();
        for i in 0..100 {
            m.record(ms(t0, i * 10), 1250);
        }
        let half = m.bps(ms(t0, 1500));
        assert!((400_000..=600_000).contains(&half), "{half}");
        assert_eq!(m.bps(ms(t0, 2200)), 0);
        assert_eq!(m.bps(ms(t0, 60_000)), 0);
        assert_eq!(RateMeter::default().bps(t0), 0);
    }
}
