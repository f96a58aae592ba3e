//! One conference's forwarding engine: ingest → GOP cache → fan-out → per-subscriber
//! egress (layer select → sequence/timestamp rewrite).
//!
//! Everything here is driven by method calls with the time passed in. Outputs are
//! appended to an [`Outputs`] buffer the caller owns and reuses, so the per-packet
//! path allocates nothing: a forwarded packet costs one `Arc` clone of the payload
//! and a few integer operations per subscriber.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::media::{Codec, Layer, MediaKind, SourcePacket};

/// At most one upstream keyframe request per layer in this interval, however many
/// subscribers ask.
pub const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_secs(1);
/// A layer that sent nothing for this long is treated as inactive.
pub const LAYER_INACTIVE_AFTER: Duration = Duration::from_millis(1500);
/// GOP cache bounds: past these the GOP is marked unusable until the next keyframe.
pub const GOP_MAX_PACKETS: usize = 8192;
pub const GOP_MAX_BYTES: usize = 16 * 1024 * 1024;

/// Identifies a subscriber (a viewer session or a downstream relay) in a conference: the
/// subscriber's session id ([`crate::SessionId`]) as a plain number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriberId(pub u128);

/// A packet to send to one subscriber, headers already rewritten into the
/// subscriber's own sequence and timestamp space.
#[derive(Debug, Clone)]
pub struct Forward {
    pub sub: SubscriberId,
    pub kind: MediaKind,
    /// Extended outgoing sequence number (starts below 2^16, so ROC 0).
    pub seq: u64,
    pub ts: u32,
    pub marker: bool,
    pub payload: Arc<[u8]>,
    /// When the source packet arrived; the stack uses it as the wallclock.
    pub arrival: Instant,
}

/// What the caller must do after a call into the engine.
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

/// Why a subscriber's video is or is not flowing: a value the dashboard can show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoStatus {
    /// No publisher, or the publisher sends no video.
    NoSource,
    /// Waiting for a keyframe on the wanted layer.
    WaitingKeyframe { target: Layer },
    /// Forwarding this layer.
    Forwarding { layer: Layer },
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
}

/// Per subscriber, per kind: the rewrite state of one outgoing stream.
#[derive(Debug, Clone)]
struct Egress {
    /// The layer currently forwarded; `None` until the stream (re)starts.
    current: Option<Layer>,
    /// out_seq = in_seq + seq_offset (wrapping in u64).
    seq_offset: u64,
    /// out_ts = in_ts + ts_offset (wrapping in u32).
    ts_offset: u32,
    /// Highest source seq forwarded on `current` (drops stale reordered packets).
    last_in_seq: u64,
    last_out_seq: u64,
    last_out_ts: u32,
    last_out_at: Option<Instant>,
    /// When this stream started waiting for a keyframe.
    waiting_since: Option<Instant>,
}

impl Egress {
    fn new(initial_seq: u64) -> Self {
        Egress {
            current: None,
            seq_offset: 0,
            ts_offset: 0,
            last_in_seq: 0,
            last_out_seq: initial_seq,
            last_out_ts: 0,
            last_out_at: None,
            waiting_since: None,
        }
    }

    /// Starts (or switches) to `layer` at `pkt`, keeping the outgoing sequence and
    /// timestamp continuous.
    fn start(&mut self, layer: Layer, pkt: &SourcePacket, clock_rate: u32) {
        let out_seq = self.last_out_seq.wrapping_add(1);
        self.seq_offset = out_seq.wrapping_sub(pkt.seq);
        let out_ts = match self.last_out_at {
            None => pkt.ts,
            Some(at) => {
                let elapsed = pkt.arrival.saturating_duration_since(at);
                let ticks = (elapsed.as_secs_f64() * f64::from(clock_rate)) as u32;
                self.last_out_ts.wrapping_add(ticks.max(1))
            }
        };
        self.ts_offset = out_ts.wrapping_sub(pkt.ts);
        self.current = Some(layer);
        self.last_in_seq = pkt.seq.wrapping_sub(1);
        self.waiting_since = None;
    }

    /// Rewrites `pkt` for this subscriber, or `None` for a stale packet.
    fn rewrite(
        &mut self,
        sub: SubscriberId,
        kind: MediaKind,
        pkt: &SourcePacket,
    ) -> Option<Forward> {
        if pkt.seq <= self.last_in_seq && self.last_in_seq.wrapping_sub(pkt.seq) < (1 << 15) {
            // Older than what we already forwarded on this layer: a retransmission the
            // stack already repaired, or a packet from before our starting point.
            if pkt.seq.wrapping_add(self.seq_offset) <= self.last_out_seq.saturating_sub(1 << 14)
                || self.last_out_at.is_none()
            {
                return None;
            }
        }
        let seq = pkt.seq.wrapping_add(self.seq_offset);
        let ts = pkt.ts.wrapping_add(self.ts_offset);
        if pkt.seq > self.last_in_seq || self.last_out_at.is_none() {
            self.last_in_seq = pkt.seq;
            self.last_out_seq = seq;
            self.last_out_ts = ts;
            self.last_out_at = Some(pkt.arrival);
        }
        Some(Forward {
            sub,
            kind,
            seq,
            ts,
            marker: pkt.marker,
            payload: pkt.payload.clone(),
            arrival: pkt.arrival,
        })
    }

    fn stop(&mut self) {
        self.current = None;
        self.waiting_since = None;
    }
}

#[derive(Debug)]
struct Subscriber {
    id: SubscriberId,
    audio: Egress,
    video: Egress,
    /// Highest layer this subscriber may receive (bandwidth allocation lowers it).
    max_layer: Layer,
}

/// The forwarding engine of one conference.
#[derive(Debug, Default)]
pub struct Conference {
    audio_codec: Option<Codec>,
    video_codec: Option<Codec>,
    layers: [LayerState; Layer::MAX],
    subscribers: Vec<Subscriber>,
    index: HashMap<SubscriberId, usize>,
    n_gop_replays: u64,
    n_keyframe_requests: u64,
}

impl Conference {
    pub fn new() -> Self {
        Self::default()
    }

    /// A publisher went live with these codecs. Subscribers stay; their streams
    /// restart on the new source's next keyframe, with continuous sequence numbers.
    pub fn source_started(
        &mut self,
        audio: Option<Codec>,
        video: Option<Codec>,
        now: Instant,
        out: &mut Outputs,
    ) {
        self.audio_codec = audio;
        self.video_codec = video;
        for layer in &mut self.layers {
            *layer = LayerState::default();
        }
        for sub in &mut self.subscribers {
            sub.audio.stop();
            sub.video.stop();
            sub.video.waiting_since = Some(now);
        }
        if video.is_some() && !self.subscribers.is_empty() {
            self.request_keyframe(Layer(0), now, out);
        }
    }

    /// The publisher left. Subscribers stay attached (a reconnecting encoder resumes them).
    pub fn source_ended(&mut self) {
        self.audio_codec = None;
        self.video_codec = None;
        for layer in &mut self.layers {
            *layer = LayerState::default();
        }
        for sub in &mut self.subscribers {
            sub.audio.stop();
            sub.video.stop();
        }
    }

    pub fn is_live(&self) -> bool {
        self.audio_codec.is_some() || self.video_codec.is_some()
    }

    pub fn codecs(&self) -> (Option<Codec>, Option<Codec>) {
        (self.audio_codec, self.video_codec)
    }

    pub fn n_subscribers(&self) -> usize {
        self.subscribers.len()
    }

    pub fn n_gop_replays(&self) -> u64 {
        self.n_gop_replays
    }

    pub fn n_keyframe_requests(&self) -> u64 {
        self.n_keyframe_requests
    }

    /// Adds a subscriber. If a GOP is cached, the subscriber gets it at once (its
    /// first picture does not wait for the encoder's next keyframe); otherwise a
    /// keyframe is requested upstream (coalesced).
    pub fn add_subscriber(&mut self, id: SubscriberId, now: Instant, out: &mut Outputs) {
        if self.index.contains_key(&id) {
            return;
        }
        // Deterministic, spread-out initial sequence numbers below 2^15 so that
        // the first outgoing packets have ROC 0 with room before a rollover.
        let initial_seq = (id.0.wrapping_mul(7919) % 20_000) as u64 + 1_000;
        let sub = Subscriber {
            id,
            audio: Egress::new(initial_seq),
            video: Egress::new(initial_seq),
            max_layer: Layer((Layer::MAX - 1) as u8),
        };
        self.index.insert(id, self.subscribers.len());
        self.subscribers.push(sub);
        let i = self.subscribers.len() - 1;
        self.start_video(i, now, out);
    }

    pub fn remove_subscriber(&mut self, id: SubscriberId) {
        let Some(i) = self.index.remove(&id) else {
            return;
        };
        self.subscribers.swap_remove(i);
        if let Some(moved) = self.subscribers.get(i) {
            self.index.insert(moved.id, i);
        }
    }

    /// Caps the layer a subscriber receives (bandwidth allocation's lever).
    pub fn set_max_layer(&mut self, id: SubscriberId, layer: Layer) {
        if let Some(&i) = self.index.get(&id) {
            self.subscribers[i].max_layer = layer;
        }
    }

    pub fn video_status(&self, id: SubscriberId) -> Option<VideoStatus> {
        let sub = &self.subscribers[*self.index.get(&id)?];
        Some(match (self.video_codec, sub.video.current) {
            (None, _) => VideoStatus::NoSource,
            (Some(_), Some(layer)) => VideoStatus::Forwarding { layer },
            (Some(_), None) => VideoStatus::WaitingKeyframe {
                target: self.target_layer(sub.max_layer, None),
            },
        })
    }

    /// One packet from the publisher: cache, then fan out to every subscriber.
    pub fn on_packet(&mut self, pkt: &SourcePacket, out: &mut Outputs) {
        match pkt.kind {
            MediaKind::Audio => {
                if self.audio_codec.is_none() {
                    return;
                }
                for sub in &mut self.subscribers {
                    if sub.audio.current.is_none() {
                        sub.audio.start(Layer(0), pkt, Codec::Opus.clock_rate());
                    }
                    if let Some(f) = sub.audio.rewrite(sub.id, MediaKind::Audio, pkt) {
                        out.forwards.push(f);
                    }
                }
            }
            MediaKind::Video => {
                let Some(codec) = self.video_codec else {
                    return;
                };
                let li = pkt.layer.index();
                let became_active = self.layers[li].last_arrival.is_none();
                self.layers[li].last_arrival = Some(pkt.arrival);
                self.layers[li].gop.push(pkt);
                let active = self.active_layers(pkt.arrival);
                for sub in &mut self.subscribers {
                    let target = target_of(active, sub.max_layer, sub.video.current);
                    if sub.video.current != Some(target)
                        && pkt.layer == target
                        && pkt.keyframe_start
                    {
                        sub.video.start(target, pkt, codec.clock_rate());
                    }
                    if sub.video.current == Some(pkt.layer)
                        && let Some(f) = sub.video.rewrite(sub.id, MediaKind::Video, pkt)
                    {
                        out.forwards.push(f);
                    }
                }
                if became_active && !pkt.keyframe_start {
                    // A layer appeared mid-GOP: ask for a keyframe so it becomes usable.
                    self.request_keyframe(pkt.layer, pkt.arrival, out);
                }
            }
        }
    }

    /// A subscriber lost its decoder state (PLI/FIR). Coalesced upstream.
    pub fn on_keyframe_request(&mut self, id: SubscriberId, now: Instant, out: &mut Outputs) {
        let Some(&i) = self.index.get(&id) else {
            return;
        };
        let layer = self.subscribers[i]
            .video
            .current
            .unwrap_or_else(|| self.target_layer(self.subscribers[i].max_layer, None));
        self.request_keyframe(layer, now, out);
    }

    /// Periodic housekeeping (call every ~100–500 ms): subscribers waiting for a
    /// keyframe or sitting on a layer that went silent get a (coalesced) request.
    pub fn tick(&mut self, now: Instant, out: &mut Outputs) {
        if self.video_codec.is_none() {
            return;
        }
        let active = self.active_layers(now);
        let mut wanted = [false; Layer::MAX];
        for sub in &mut self.subscribers {
            let target = target_of(active, sub.max_layer, sub.video.current);
            if sub.video.current != Some(target) {
                let since = *sub.video.waiting_since.get_or_insert(now);
                if now.saturating_duration_since(since) >= Duration::from_millis(200)
                    || sub.video.current.is_none()
                {
                    wanted[target.index()] = true;
                }
            } else {
                sub.video.waiting_since = None;
            }
        }
        for (i, w) in wanted.into_iter().enumerate() {
            if w {
                self.request_keyframe(Layer(i as u8), now, out);
            }
        }
    }

    fn start_video(&mut self, i: usize, now: Instant, out: &mut Outputs) {
        let Some(codec) = self.video_codec else {
            return;
        };
        let active = self.active_layers(now);
        let sub = &mut self.subscribers[i];
        let target = target_of(active, sub.max_layer, None);
        match self.layers[target.index()].gop.replayable() {
            Some(gop) => {
                sub.video.start(target, &gop[0], codec.clock_rate());
                for pkt in gop {
                    if let Some(f) = sub.video.rewrite(sub.id, MediaKind::Video, pkt) {
                        out.forwards.push(f);
                    }
                }
                self.n_gop_replays += 1;
            }
            None => {
                sub.video.waiting_since = Some(now);
                self.request_keyframe(target, now, out);
            }
        }
    }

    fn request_keyframe(&mut self, layer: Layer, now: Instant, out: &mut Outputs) {
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

    fn active_layers(&self, now: Instant) -> [bool; Layer::MAX] {
        let mut active = [false; Layer::MAX];
        for (i, l) in self.layers.iter().enumerate() {
            active[i] = l
                .last_arrival
                .is_some_and(|t| now.saturating_duration_since(t) < LAYER_INACTIVE_AFTER);
        }
        active
    }

    fn target_layer(&self, max: Layer, current: Option<Layer>) -> Layer {
        let now = self.layers.iter().filter_map(|l| l.last_arrival).max();
        match now {
            Some(now) => target_of(self.active_layers(now), max, current),
            None => Layer(0),
        }
    }
}

/// The layer a subscriber should receive: the highest active layer not above its
/// cap. With nothing active it keeps what it has (or layer 0).
fn target_of(active: [bool; Layer::MAX], max: Layer, current: Option<Layer>) -> Layer {
    (0..=max.index())
        .rev()
        .find(|&i| active[i])
        .map(|i| Layer(i as u8))
        .or(current)
        .unwrap_or(Layer(0))
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn video_for(out: &Outputs, sub: SubscriberId) -> Vec<&Forward> {
        out.forwards
            .iter()
            .filter(|f| f.sub == sub && f.kind == MediaKind::Video)
            .collect()
    }

    fn assert_contiguous(fs: &[&Forward]) {
        for w in fs.windows(2) {
            assert_eq!(w[1].seq, w[0].seq + 1, "sequence must be contiguous");
        }
    }

    fn live(src: &Src) -> (Conference, Outputs) {
        let mut c = Conference::new();
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
        c.add_subscriber(SubscriberId(1), src.at(40), &mut out);
        let v = video_for(&out, SubscriberId(1));
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
        let w = video_for(&out, SubscriberId(1));
        assert_eq!(w[0].seq, last_replayed + 1);
        assert_eq!(
            c.video_status(SubscriberId(1)),
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
        c.add_subscriber(SubscriberId(1), src.at(10), &mut out);
        c.add_subscriber(SubscriberId(2), src.at(20), &mut out);
        c.on_keyframe_request(SubscriberId(1), src.at(500), &mut out);
        assert!(
            out.keyframe_requests.is_empty(),
            "coalesced into the request at t=0"
        );
        c.on_keyframe_request(SubscriberId(2), src.at(1100), &mut out);
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
        assert_eq!(video_for(&out, SubscriberId(1)).len(), 3);
        assert_eq!(video_for(&out, SubscriberId(2)).len(), 3);
    }

    #[test]
    fn each_subscriber_has_its_own_sequence_space_and_shared_payload() {
        let mut src = Src::new();
        let (mut c, mut out) = live(&src);
        c.add_subscriber(SubscriberId(1), src.at(0), &mut out);
        c.add_subscriber(SubscriberId(2), src.at(0), &mut out);
        out.clear();
        for p in &src.frame(0, 0, true, 4) {
            c.on_packet(p, &mut out);
        }
        let a = video_for(&out, SubscriberId(1));
        let b = video_for(&out, SubscriberId(2));
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
        c.add_subscriber(SubscriberId(7), src.at(0), &mut out);
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
    fn simulcast_switches_up_only_on_keyframe_and_stays_contiguous() {
        let mut src = Src::new();
        let (mut c, mut out) = live(&src);
        c.add_subscriber(SubscriberId(1), src.at(0), &mut out);
        for p in &src.frame(0, 0, true, 2) {
            c.on_packet(p, &mut out);
        }
        assert_eq!(
            c.video_status(SubscriberId(1)),
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
        let v = video_for(&out, SubscriberId(1));
        assert_eq!(v.len(), 2, "still on layer 0 until layer 2's keyframe");
        let last = v.last().unwrap().seq;
        let last_ts = v.last().unwrap().ts;
        out.clear();
        for p in &src.frame(2, 66, true, 3) {
            c.on_packet(p, &mut out);
        }
        let v = video_for(&out, SubscriberId(1));
        assert_eq!(v.len(), 3);
        assert_eq!(v[0].seq, last + 1, "continuous across the switch");
        let dts = v[0].ts.wrapping_sub(last_ts);
        assert!(
            (2000..4000).contains(&dts),
            "timestamp advances by elapsed time, got {dts}"
        );
        assert_eq!(
            c.video_status(SubscriberId(1)),
            Some(VideoStatus::Forwarding { layer: Layer(2) })
        );
        // Capping the subscriber moves it down on the next layer-0 keyframe only.
        c.set_max_layer(SubscriberId(1), Layer(0));
        out.clear();
        for p in src
            .frame(0, 100, false, 1)
            .iter()
            .chain(src.frame(2, 100, false, 1).iter())
        {
            c.on_packet(p, &mut out);
        }
        assert_eq!(
            video_for(&out, SubscriberId(1)).len(),
            1,
            "keeps layer 2 until layer 0 has a keyframe"
        );
        out.clear();
        for p in &src.frame(0, 133, true, 1) {
            c.on_packet(p, &mut out);
        }
        assert_eq!(
            c.video_status(SubscriberId(1)),
            Some(VideoStatus::Forwarding { layer: Layer(0) })
        );
    }

    #[test]
    fn publisher_restart_keeps_subscribers_with_continuous_sequence() {
        let mut src = Src::new();
        let (mut c, mut out) = live(&src);
        c.add_subscriber(SubscriberId(1), src.at(0), &mut out);
        out.clear();
        for p in &src.frame(0, 0, true, 3) {
            c.on_packet(p, &mut out);
        }
        let last = video_for(&out, SubscriberId(1)).last().unwrap().seq;
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
        let v = video_for(&out, SubscriberId(1));
        assert_eq!(v[0].seq, last + 1);
    }

    #[test]
    fn removed_subscriber_gets_nothing_and_others_continue() {
        let mut src = Src::new();
        let (mut c, mut out) = live(&src);
        for id in 1..=3 {
            c.add_subscriber(SubscriberId(id), src.at(0), &mut out);
        }
        c.remove_subscriber(SubscriberId(1));
        out.clear();
        for p in &src.frame(0, 0, true, 2) {
            c.on_packet(p, &mut out);
        }
        assert!(video_for(&out, SubscriberId(1)).is_empty());
        assert_eq!(video_for(&out, SubscriberId(2)).len(), 2);
        assert_eq!(video_for(&out, SubscriberId(3)).len(), 2);
        assert_eq!(c.n_subscribers(), 2);
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
        c.add_subscriber(SubscriberId(1), src.at(200), &mut out);
        assert!(out.forwards.is_empty());
        assert_eq!(
            c.video_status(SubscriberId(1)),
            Some(VideoStatus::WaitingKeyframe { target: Layer(0) })
        );
    }
}
