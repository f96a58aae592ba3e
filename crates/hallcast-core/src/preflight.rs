//! Encoder pre-flight checks: what the relay can tell about a publisher's encoder from
//! what it receives, as green / amber / red lines that say what to change.
//!
//! A [`Preflight`] sits on one publisher's ingest. It is fed every source packet
//! ([`Preflight::on_packet`], with the RFC 6464 audio level when the packet carried one)
//! and every keyframe request sent upstream ([`Preflight::on_keyframe_request`]), and
//! answers a [`Report`] at any time ([`Preflight::report`]). Like the rest of the core it
//! never reads the clock: every time is an argument.
//!
//! Cost on the hot path (per packet): a few integer updates into fixed arrays — a ring of
//! one-second buckets and per-layer state. No allocation. Payload bytes are looked at only
//! on a keyframe's first packets (the H.264 SPS: profile, resolution; the VP8 key frame
//! header: resolution) and, for H.264, the first slice header of one frame in
//! [`SLICE_SAMPLE_EVERY`] (the slice type: B-frames). B-frames are also seen for free on
//! every frame: their RTP timestamps go backwards in sending order.
//!
//! The checks (ids as the API names them): `codec`, `keyframe_interval`, `b_frames`,
//! `bitrate`, `resolution`, `frame_rate`, `simulcast`, `audio`, `audio_level`. Each is
//! [`Status::Unknown`] until enough was received to judge. Thresholds are the constants
//! below; the advice texts are Vietnamese first, English second.
//!
//! Keyframe intervals: the relay itself asks for keyframes (a viewer joins, a layer
//! appears mid-GOP), and those keyframes say nothing about the encoder's own interval. A
//! keyframe that arrives within [`REQUESTED_KEYFRAME_WINDOW`] of a request for its layer
//! is *requested*; an interval is measured from any keyframe to the next unrequested one
//! (an encoder that restarts its GOP at a forced keyframe is measured right) and the
//! value is the longest of the last [`N_SPANS`] such intervals — or the time since the
//! last keyframe, when that is already longer (a 10 s interval shows red after 4 s, not
//! after 20).
//!
//! Ingest gateways (RTMP, SRT): a publisher the relay knows to be its own ingest gateway
//! ([`Preflight::with_protocol`]) passes on an encoder that never hears the viewers'
//! keyframe requests (PLI/FIR stop at the gateway), so its own interval is all a joining or
//! recovering viewer can wait for. For such a publisher the report carries
//! [`CheckId::KeyframeRequests`] (`keyframe_requests`) **in place of** `keyframe_interval`,
//! with advice that says so; every keyframe counts as the encoder's own (none is an answer),
//! and a long interval is never softened to amber by answered requests (there are none).
//! Thresholds: green up to [`INGEST_KEYFRAME_GREEN_MAX`] (2 s: what the advice and video
//! platforms ask of encoders, a recovering viewer waits 1 s on average), amber up to
//! [`INGEST_KEYFRAME_AMBER_MAX`] (4 s: a loss costs up to 4 s of frozen picture), red beyond
//! (x264's and OBS's automatic interval, 250 frames ≈ 8 s, lands here).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::media::{Codec, Layer, MediaKind, SourcePacket};

/// Keyframe interval: at most this is green (the spec's 2 s, plus rounding).
pub const KEYFRAME_GREEN_MAX: Duration = Duration::from_millis(2050);
/// Keyframe interval: at most this is amber; longer is red.
pub const KEYFRAME_AMBER_MAX: Duration = Duration::from_millis(4050);
/// A keyframe within this of a request for its layer is the relay's, not the encoder's.
pub const REQUESTED_KEYFRAME_WINDOW: Duration = Duration::from_millis(1500);
/// A publisher whose layers all answered a keyframe request this recently (and none left
/// unanswered) has sparse keyframes flagged amber, not red.
pub const ANSWERED_RECENTLY: Duration = Duration::from_secs(60);
/// Ingest gateways (RTMP/SRT): keyframe interval green up to this (2 s plus rounding).
pub const INGEST_KEYFRAME_GREEN_MAX: Duration = Duration::from_millis(2050);
/// Ingest gateways: amber up to this, red beyond (never softened: the encoder cannot answer
/// keyframe requests).
pub const INGEST_KEYFRAME_AMBER_MAX: Duration = Duration::from_millis(4050);
/// Keyframe intervals remembered per layer.
pub const N_SPANS: usize = 4;
/// Video bitrate, in bits per pixel per frame (at the measured frame rate, at least
/// [`BITRATE_MIN_FPS`]): at least this is green (720p30: 0.83 Mbit/s; 1080p30: 1.9 Mbit/s).
pub const BPP_GREEN: f64 = 0.03;
/// Below this is red (720p30: 0.41 Mbit/s).
pub const BPP_RED: f64 = 0.015;
/// The frame rate the bitrate check assumes at least (a low frame rate is the frame-rate
/// check's finding; it must not make a starved bitrate look sufficient).
pub const BITRATE_MIN_FPS: f64 = 24.0;
/// Resolution: the short side at least this is green (720p), at least
/// [`RESOLUTION_AMBER_MIN`] amber, else red.
pub const RESOLUTION_GREEN_MIN: u32 = 720;
pub const RESOLUTION_AMBER_MIN: u32 = 360;
/// Frame rate: at least this is green, at least [`FPS_AMBER_MIN`] amber, else red.
pub const FPS_GREEN_MIN: f64 = 24.0;
pub const FPS_AMBER_MIN: f64 = 15.0;
/// Audio level (RFC 6464, dB below full scale): the loudest packet of the window louder
/// than this is green; louder than [`LEVEL_SILENT_DBOV`] amber (very quiet); else red.
pub const LEVEL_GREEN_DBOV: u8 = 50;
pub const LEVEL_SILENT_DBOV: u8 = 70;
/// Without the level extension: an Opus packet of at most this many bytes carries
/// silence (a DTX or silence frame; speech and music take tens of bytes per 20 ms).
pub const OPUS_SILENT_MAX_BYTES: usize = 10;
/// Share of silent Opus packets in the window at which audio is judged silent.
pub const OPUS_SILENT_SHARE: f64 = 0.9;
/// H.264: sample the slice type of one frame in this many (odd, so an I/B/P pattern of
/// period 2 is not always sampled on the same phase).
pub const SLICE_SAMPLE_EVERY: u32 = 7;
/// Bitrate, frame rate and the audio level are measured over the last this many whole
/// seconds (the level over [`LEVEL_WINDOW_S`]).
pub const RATE_WINDOW_S: u64 = 5;
pub const LEVEL_WINDOW_S: u64 = 10;
/// How much must have been received before a measured check is judged.
pub const WARMUP: Duration = Duration::from_secs(3);
/// A layer or the audio that sent nothing for this long is absent.
pub const ABSENT_AFTER: Duration = Duration::from_millis(2000);

/// One-second buckets kept: the longest window plus the second in progress.
const N_SECONDS: usize = LEVEL_WINDOW_S as usize + 1;

/// The verdict of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Green,
    Amber,
    Red,
    /// Not enough received yet.
    Unknown,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Green => "green",
            Status::Amber => "amber",
            Status::Red => "red",
            Status::Unknown => "unknown",
        }
    }
}

/// How the publisher reaches the relay: WHIP directly, or the relay's own ingest gateway
/// for an RTMP or SRT encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum IngestProtocol {
    #[default]
    Whip,
    Rtmp,
    Srt,
}

impl IngestProtocol {
    /// `WHIP`, `RTMP`, `SRT` (as the API and the console show it).
    pub fn as_str(self) -> &'static str {
        match self {
            IngestProtocol::Whip => "WHIP",
            IngestProtocol::Rtmp => "RTMP",
            IngestProtocol::Srt => "SRT",
        }
    }

    /// An encoder behind the relay's ingest gateway: keyframe requests cannot reach it.
    pub fn is_gateway(self) -> bool {
        self != IngestProtocol::Whip
    }
}

/// The checks, in the order the report lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CheckId {
    Codec,
    KeyframeInterval,
    /// An ingest gateway's encoder (RTMP/SRT): its keyframe interval, judged knowing that
    /// viewers' keyframe requests cannot reach it. Listed in place of
    /// [`CheckId::KeyframeInterval`]; not in [`CheckId::ALL`] (a WHIP publisher's list).
    KeyframeRequests,
    BFrames,
    Bitrate,
    Resolution,
    FrameRate,
    Simulcast,
    Audio,
    AudioLevel,
}

impl CheckId {
    pub const ALL: [CheckId; 9] = [
        CheckId::Codec,
        CheckId::KeyframeInterval,
        CheckId::BFrames,
        CheckId::Bitrate,
        CheckId::Resolution,
        CheckId::FrameRate,
        CheckId::Simulcast,
        CheckId::Audio,
        CheckId::AudioLevel,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CheckId::Codec => "codec",
            CheckId::KeyframeInterval => "keyframe_interval",
            CheckId::KeyframeRequests => "keyframe_requests",
            CheckId::BFrames => "b_frames",
            CheckId::Bitrate => "bitrate",
            CheckId::Resolution => "resolution",
            CheckId::FrameRate => "frame_rate",
            CheckId::Simulcast => "simulcast",
            CheckId::Audio => "audio",
            CheckId::AudioLevel => "audio_level",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub id: CheckId,
    pub status: Status,
    /// What was measured, for people ("2.0 s", "1280×720"); "—" when unknown.
    pub value: String,
    /// What to change (or that all is well), Vietnamese first.
    pub advice_vi: &'static str,
    pub advice_en: &'static str,
}

/// Every check, in [`CheckId::ALL`]'s order (for an ingest gateway's publisher,
/// [`CheckId::KeyframeRequests`] in place of [`CheckId::KeyframeInterval`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// How the publisher arrives (`None`: nothing published, [`Report::unknown`]).
    pub protocol: Option<IngestProtocol>,
    pub checks: Vec<Check>,
}

impl Report {
    /// Every check unknown (nothing received).
    pub fn unknown() -> Report {
        Report {
            protocol: None,
            checks: CheckId::ALL
                .iter()
                .map(|&id| check(id, Status::Unknown, String::from("—")))
                .collect(),
        }
    }

    pub fn get(&self, id: CheckId) -> Option<&Check> {
        self.checks.iter().find(|c| c.id == id)
    }
}

/// H.264 profile as the SPS states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct H264Profile {
    pub profile_idc: u8,
    /// constraint_set0..5 flags, as in the SPS byte.
    pub constraints: u8,
    pub level_idc: u8,
}

impl H264Profile {
    pub fn name(self) -> &'static str {
        match self.profile_idc {
            66 if self.constraints & 0x40 != 0 => "Constrained Baseline",
            66 => "Baseline",
            77 => "Main",
            88 => "Extended",
            100 => "High",
            110 => "High 10",
            122 => "High 4:2:2",
            244 => "High 4:4:4",
            _ => "other profile",
        }
    }

    fn status(self) -> Status {
        match self.profile_idc {
            66 | 77 => Status::Green,
            100 => Status::Amber,
            _ => Status::Red,
        }
    }
}

/// What one H.264 SPS says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sps {
    pub profile: H264Profile,
    pub width: u32,
    pub height: u32,
}

/// Counters of one second.
#[derive(Debug, Clone, Copy)]
struct Second {
    /// Second number since the origin (`u64::MAX`: never used).
    n: u64,
    video_bytes: [u64; Layer::MAX],
    frames: [u32; Layer::MAX],
    audio_packets: u32,
    /// Opus packets of at most [`OPUS_SILENT_MAX_BYTES`].
    audio_tiny: u32,
    /// Packets that carried an RFC 6464 level, and the loudest of them (smallest dBov).
    level_packets: u32,
    loudest_dbov: u8,
}

impl Second {
    const EMPTY: Second = Second {
        n: u64::MAX,
        video_bytes: [0; Layer::MAX],
        frames: [0; Layer::MAX],
        audio_packets: 0,
        audio_tiny: 0,
        level_packets: 0,
        loudest_dbov: 127,
    };
}

/// Per video layer.
#[derive(Debug, Clone, Copy, Default)]
struct LayerState {
    first_arrival: Option<Instant>,
    last_arrival: Option<Instant>,
    /// Highest source sequence number seen: older packets (retransmissions, reordering)
    /// are left out of frame and timestamp logic.
    max_seq: Option<u64>,
    last_ts: Option<u32>,
    n_frames: u64,
    /// Frames whose timestamp went backwards in sending order (B-frames).
    n_ts_regressions: u64,
    n_slices_sampled: u32,
    n_b_slices: u32,
    /// Last keyframe (any): its timestamp and arrival.
    last_kf_ts: Option<u32>,
    last_kf_at: Option<Instant>,
    last_request_at: Option<Instant>,
    /// The last requested keyframe that came (its arrival) and how long after its request.
    answered_at: Option<Instant>,
    answer_latency: Duration,
    /// Intervals ending in an unrequested keyframe, in 90 kHz ticks (ring).
    spans: [u32; N_SPANS],
    n_spans: usize,
    width: u32,
    height: u32,
    profile: Option<H264Profile>,
}

/// The pre-flight analysis of one publisher.
#[derive(Debug, Clone)]
pub struct Preflight {
    audio: Option<Codec>,
    video: Option<Codec>,
    /// Video layers the publisher offered (1: no simulcast).
    n_layers_offered: usize,
    started: Instant,
    seconds: [Second; N_SECONDS],
    layers: [LayerState; Layer::MAX],
    first_audio: Option<Instant>,
    last_audio: Option<Instant>,
    protocol: IngestProtocol,
}

impl Preflight {
    /// A publisher went live at `now` with these codecs and `n_layers_offered` video
    /// layers (simulcast RIDs; 1 without simulcast).
    pub fn new(
        audio: Option<Codec>,
        video: Option<Codec>,
        n_layers_offered: usize,
        now: Instant,
    ) -> Preflight {
        Preflight {
            audio,
            video,
            n_layers_offered: n_layers_offered.clamp(1, Layer::MAX),
            started: now,
            seconds: [Second::EMPTY; N_SECONDS],
            layers: Default::default(),
            first_audio: None,
            last_audio: None,
            protocol: IngestProtocol::Whip,
        }
    }

    /// The publisher arrives over `protocol` (default WHIP). Only the relay may say RTMP or
    /// SRT: it knows its own ingest gateway (see the module doc).
    pub fn with_protocol(mut self, protocol: IngestProtocol) -> Preflight {
        self.protocol = protocol;
        self
    }

    /// How the publisher arrives.
    pub fn protocol(&self) -> IngestProtocol {
        self.protocol
    }

    fn second(&mut self, at: Instant) -> &mut Second {
        let n = at.saturating_duration_since(self.started).as_secs();
        let slot = &mut self.seconds[(n % N_SECONDS as u64) as usize];
        if slot.n != n {
            *slot = Second { n, ..Second::EMPTY };
        }
        slot
    }

    /// One packet from the publisher. `audio_level`: the RFC 6464 level in dB below full
    /// scale (0 loudest, 127 silence) when the packet carried the extension.
    pub fn on_packet(&mut self, pkt: &SourcePacket, audio_level: Option<u8>) {
        let at = pkt.arrival;
        match pkt.kind {
            MediaKind::Audio => {
                self.first_audio.get_or_insert(at);
                self.last_audio = Some(at);
                let tiny = pkt.payload.len() <= OPUS_SILENT_MAX_BYTES;
                let s = self.second(at);
                s.audio_packets += 1;
                s.audio_tiny += u32::from(tiny);
                if let Some(level) = audio_level {
                    s.level_packets += 1;
                    s.loudest_dbov = s.loudest_dbov.min(level.min(127));
                }
            }
            MediaKind::Video => self.on_video(pkt),
        }
    }

    fn on_video(&mut self, pkt: &SourcePacket) {
        let i = pkt.layer.index();
        let codec = self.video;
        // Behind the ingest gateway no keyframe is an answer: the encoder never hears requests.
        let answers_requests = !self.protocol.is_gateway();
        let bytes = pkt.payload.len() as u64;
        let l = &mut self.layers[i];
        l.first_arrival.get_or_insert(pkt.arrival);
        l.last_arrival = Some(pkt.arrival);
        let in_order = l.max_seq.is_none_or(|m| pkt.seq > m);
        if in_order {
            l.max_seq = Some(pkt.seq);
        }
        let mut new_frame = false;
        if in_order && l.last_ts != Some(pkt.ts) {
            if let Some(prev) = l.last_ts
                && (pkt.ts.wrapping_sub(prev) as i32) < 0
            {
                l.n_ts_regressions += 1;
            }
            l.last_ts = Some(pkt.ts);
            l.n_frames += 1;
            new_frame = true;
            if codec == Some(Codec::H264)
                && l.n_frames.is_multiple_of(u64::from(SLICE_SAMPLE_EVERY))
                && let Some(t) = h264_first_slice_type(&pkt.payload)
            {
                l.n_slices_sampled += 1;
                l.n_b_slices += u32::from(t == SliceType::B);
            }
        }
        if pkt.keyframe_start {
            match codec {
                Some(Codec::H264) => {
                    if let Some(sps) = h264_find_sps(&pkt.payload) {
                        l.width = sps.width;
                        l.height = sps.height;
                        l.profile = Some(sps.profile);
                    }
                }
                Some(Codec::Vp8) => {
                    if let Some((w, h)) = vp8_keyframe_size(&pkt.payload) {
                        l.width = w;
                        l.height = h;
                    }
                }
                _ => {}
            }
            if l.last_kf_ts != Some(pkt.ts) {
                let requested = answers_requests
                    && l.last_request_at.is_some_and(|r| {
                        pkt.arrival.saturating_duration_since(r) <= REQUESTED_KEYFRAME_WINDOW
                    });
                if requested && let Some(r) = l.last_request_at {
                    l.answered_at = Some(pkt.arrival);
                    l.answer_latency = pkt.arrival.saturating_duration_since(r);
                }
                if !requested && let Some(prev) = l.last_kf_ts {
                    let ticks = pkt.ts.wrapping_sub(prev);
                    if (ticks as i32) > 0 {
                        l.spans[l.n_spans % N_SPANS] = ticks;
                        l.n_spans += 1;
                    }
                }
                l.last_kf_ts = Some(pkt.ts);
                l.last_kf_at = Some(pkt.arrival);
            }
        }
        let s = self.second(pkt.arrival);
        s.video_bytes[i] += bytes;
        s.frames[i] += u32::from(new_frame);
    }

    /// The relay asked the publisher for a keyframe on `layer`.
    pub fn on_keyframe_request(&mut self, layer: Layer, now: Instant) {
        self.layers[layer.index()].last_request_at = Some(now);
    }

    /// The report as of `now`.
    pub fn report(&self, now: Instant) -> Report {
        let active: [bool; Layer::MAX] = std::array::from_fn(|i| {
            self.layers[i]
                .last_arrival
                .is_some_and(|t| now.saturating_duration_since(t) < ABSENT_AFTER)
        });
        let top = (0..Layer::MAX).rev().find(|&i| active[i]);
        Report {
            protocol: Some(self.protocol),
            checks: vec![
                self.codec_check(top),
                self.keyframe_check(&active, now),
                self.b_frames_check(top),
                self.bitrate_check(top, now),
                self.resolution_check(top),
                self.frame_rate_check(top, now),
                self.simulcast_check(&active, now),
                self.audio_check(now),
                self.audio_level_check(now),
            ],
        }
    }

    /// Sums over the last `n` whole seconds before `now` (the second in progress is left
    /// out: it is partial), starting no earlier than the whole second after `since` (the
    /// partial second something started in is left out too), and the seconds summed.
    fn window(&self, now: Instant, n: u64, since: Option<Instant>) -> (Second, u64) {
        let cur = now.saturating_duration_since(self.started).as_secs();
        let mut first = cur.saturating_sub(n);
        if let Some(t) = since {
            first = first.max(t.saturating_duration_since(self.started).as_secs() + 1);
        }
        let mut sum = Second {
            n: 0,
            ..Second::EMPTY
        };
        for s in self.seconds.iter().filter(|s| (first..cur).contains(&s.n)) {
            for i in 0..Layer::MAX {
                sum.video_bytes[i] += s.video_bytes[i];
                sum.frames[i] += s.frames[i];
            }
            sum.audio_packets += s.audio_packets;
            sum.audio_tiny += s.audio_tiny;
            sum.level_packets += s.level_packets;
            sum.loudest_dbov = sum.loudest_dbov.min(s.loudest_dbov);
        }
        (sum, cur.saturating_sub(first))
    }

    /// Whether video on `layer` has been received for at least [`WARMUP`].
    fn warm(&self, layer: usize, now: Instant) -> bool {
        self.layers[layer]
            .first_arrival
            .is_some_and(|t| now.saturating_duration_since(t) >= WARMUP)
    }

    /// Frames per second and bits per second of `layer` (and of all layers) over the rate
    /// window, once the layer is warm.
    fn rates(&self, layer: usize, now: Instant) -> Option<(f64, u64, u64)> {
        if !self.warm(layer, now) {
            return None;
        }
        let (sum, secs) = self.window(now, RATE_WINDOW_S, self.layers[layer].first_arrival);
        if secs == 0 {
            return None;
        }
        let fps = f64::from(sum.frames[layer]) / secs as f64;
        let bps = sum.video_bytes[layer] * 8 / secs;
        let total = sum.video_bytes.iter().sum::<u64>() * 8 / secs;
        Some((fps, bps, total))
    }

    fn codec_check(&self, top: Option<usize>) -> Check {
        let audio = self.audio.map_or("", |a| match a {
            Codec::Opus => ", Opus",
            _ => "",
        });
        match self.video {
            None => check(CheckId::Codec, Status::Red, format!("no video{audio}")),
            Some(Codec::Vp8) => check(CheckId::Codec, Status::Green, format!("VP8{audio}")),
            Some(Codec::H264) => {
                let profile = top
                    .and_then(|i| self.layers[i].profile)
                    .or_else(|| self.layers.iter().find_map(|l| l.profile));
                match profile {
                    None => check(CheckId::Codec, Status::Unknown, format!("H.264{audio}")),
                    Some(p) => {
                        let mut v = format!("H.264 {}", p.name());
                        if p.level_idc != 0 {
                            let _ = write!(v, " {}.{}", p.level_idc / 10, p.level_idc % 10);
                        }
                        v.push_str(audio);
                        check(CheckId::Codec, p.status(), v)
                    }
                }
            }
            Some(Codec::Opus) => check(CheckId::Codec, Status::Red, "no video".into()),
        }
    }

    fn keyframe_check(&self, active: &[bool; Layer::MAX], now: Instant) -> Check {
        let (id, green_max, amber_max) = if self.protocol.is_gateway() {
            (
                CheckId::KeyframeRequests,
                INGEST_KEYFRAME_GREEN_MAX,
                INGEST_KEYFRAME_AMBER_MAX,
            )
        } else {
            (
                CheckId::KeyframeInterval,
                KEYFRAME_GREEN_MAX,
                KEYFRAME_AMBER_MAX,
            )
        };
        // The worst active layer decides.
        let mut worst: Option<(Duration, bool)> = None;
        for (i, l) in self.layers.iter().enumerate() {
            if !active[i] {
                continue;
            }
            let n = l.n_spans.min(N_SPANS);
            let longest = l.spans[..n]
                .iter()
                .max()
                .map(|&t| Duration::from_micros(u64::from(t) * 1_000_000 / 90_000));
            let open = l
                .last_kf_at
                .or(l.first_arrival)
                .map(|t| now.saturating_duration_since(t));
            let (d, lower_bound) = match (longest, open) {
                (Some(s), Some(o)) if o > s && o > green_max => (o, true),
                (Some(s), _) => (s, false),
                (None, Some(o)) if o > green_max => (o, true),
                _ => continue,
            };
            if worst.is_none_or(|(w, _)| d > w) {
                worst = Some((d, lower_bound));
            }
        }
        let Some((d, lower_bound)) = worst else {
            return check(id, Status::Unknown, "—".into());
        };
        let mut status = if d <= green_max {
            Status::Green
        } else if d <= amber_max {
            Status::Amber
        } else {
            Status::Red
        };
        let prefix = if lower_bound { "≥ " } else { "" };
        let mut value = format!("{prefix}{:.1} s", d.as_secs_f64());
        // A publisher that sends keyframes only when asked (a browser) and answers the relay's
        // requests gives every joiner and every repair a keyframe when needed: that is worth a
        // word (amber), not an alarm. An encoder with its own long interval stays red even if
        // it answers: its GOPs are what late joiners are replayed.
        if status == Status::Red
            && !self.protocol.is_gateway()
            && let Some(latency) = self.answers_keyframe_requests(active, now)
        {
            status = Status::Amber;
            value = format!("{value}; on request in {:.1} s", latency.as_secs_f64());
        }
        check(id, status, value)
    }

    /// Every active layer sends keyframes only on request (no interval of its own measured),
    /// answered one within [`ANSWERED_RECENTLY`] and has none waiting unanswered past
    /// [`REQUESTED_KEYFRAME_WINDOW`]: the slowest answer.
    fn answers_keyframe_requests(
        &self,
        active: &[bool; Layer::MAX],
        now: Instant,
    ) -> Option<Duration> {
        let mut slowest = Duration::ZERO;
        let mut any = false;
        for (i, l) in self.layers.iter().enumerate() {
            if !active[i] {
                continue;
            }
            if l.n_spans > 0 {
                return None;
            }
            let answered = l.answered_at?;
            if now.saturating_duration_since(answered) > ANSWERED_RECENTLY {
                return None;
            }
            if let Some(r) = l.last_request_at
                && r > answered
                && now.saturating_duration_since(r) > REQUESTED_KEYFRAME_WINDOW
            {
                return None;
            }
            slowest = slowest.max(l.answer_latency);
            any = true;
        }
        any.then_some(slowest)
    }

    fn b_frames_check(&self, top: Option<usize>) -> Check {
        match self.video {
            Some(Codec::Vp8) => return check(CheckId::BFrames, Status::Green, "none (VP8)".into()),
            Some(Codec::H264) => {}
            _ => return check(CheckId::BFrames, Status::Unknown, "—".into()),
        }
        let seen_b = self
            .layers
            .iter()
            .any(|l| l.n_b_slices > 0 || l.n_ts_regressions > 0);
        if seen_b {
            let (b, sampled) = self.layers.iter().fold((0, 0), |(b, s), l| {
                (b + l.n_b_slices, s + l.n_slices_sampled)
            });
            let value = if sampled > 0 && b > 0 {
                format!("yes ({b} of {sampled} sampled frames)")
            } else {
                "yes (frames out of order)".into()
            };
            return check(CheckId::BFrames, Status::Red, value);
        }
        // Judged once enough frames were seen (2 s at 30 fps) on the top layer.
        match top {
            Some(i) if self.layers[i].n_frames >= 60 => {
                check(CheckId::BFrames, Status::Green, "none".into())
            }
            _ => check(CheckId::BFrames, Status::Unknown, "—".into()),
        }
    }

    fn bitrate_check(&self, top: Option<usize>, now: Instant) -> Check {
        let Some((top, (fps, bps, total))) = top.and_then(|t| Some((t, self.rates(t, now)?)))
        else {
            return check(CheckId::Bitrate, Status::Unknown, "—".into());
        };
        let l = &self.layers[top];
        let mut value = format_bps(bps);
        if total > bps {
            let _ = write!(value, " (all layers {})", format_bps(total));
        }
        if l.width == 0 || l.height == 0 {
            return check(CheckId::Bitrate, Status::Unknown, value);
        }
        let pixels = f64::from(l.width) * f64::from(l.height) * fps.clamp(BITRATE_MIN_FPS, 60.0);
        let bpp = bps as f64 / pixels;
        let status = if bpp >= BPP_GREEN {
            Status::Green
        } else if bpp >= BPP_RED {
            Status::Amber
        } else {
            Status::Red
        };
        let _ = write!(value, " at {}×{}", l.width, l.height);
        check(CheckId::Bitrate, status, value)
    }

    fn resolution_check(&self, top: Option<usize>) -> Check {
        let Some(l) = top.map(|i| &self.layers[i]).filter(|l| l.width > 0) else {
            return check(CheckId::Resolution, Status::Unknown, "—".into());
        };
        let short = l.width.min(l.height);
        let status = if short >= RESOLUTION_GREEN_MIN {
            Status::Green
        } else if short >= RESOLUTION_AMBER_MIN {
            Status::Amber
        } else {
            Status::Red
        };
        check(
            CheckId::Resolution,
            status,
            format!("{}×{}", l.width, l.height),
        )
    }

    fn frame_rate_check(&self, top: Option<usize>, now: Instant) -> Check {
        let Some((fps, _, _)) = top.and_then(|t| self.rates(t, now)) else {
            return check(CheckId::FrameRate, Status::Unknown, "—".into());
        };
        let status = if fps >= FPS_GREEN_MIN - 0.5 {
            Status::Green
        } else if fps >= FPS_AMBER_MIN - 0.5 {
            Status::Amber
        } else {
            Status::Red
        };
        check(CheckId::FrameRate, status, format!("{fps:.0} fps"))
    }

    fn simulcast_check(&self, active: &[bool; Layer::MAX], now: Instant) -> Check {
        let n_active = active.iter().filter(|&&a| a).count();
        let warm = (0..Layer::MAX).any(|i| self.warm(i, now));
        if self.video.is_none() || !warm {
            return check(CheckId::Simulcast, Status::Unknown, "—".into());
        }
        let value = format!("{n_active} of {} layers", self.n_layers_offered);
        let status = if n_active >= 2 && n_active == self.n_layers_offered {
            Status::Green
        } else if n_active == 0 {
            Status::Red
        } else {
            Status::Amber
        };
        check(CheckId::Simulcast, status, value)
    }

    fn audio_check(&self, now: Instant) -> Check {
        let Some(codec) = self.audio else {
            return check(CheckId::Audio, Status::Red, "no audio track".into());
        };
        match self.last_audio {
            Some(t) if now.saturating_duration_since(t) < ABSENT_AFTER => {
                check(CheckId::Audio, Status::Green, codec.name().into())
            }
            Some(t) => check(
                CheckId::Audio,
                Status::Red,
                format!(
                    "nothing for {:.0} s",
                    now.saturating_duration_since(t).as_secs_f64()
                ),
            ),
            None if now.saturating_duration_since(self.started) >= WARMUP => {
                check(CheckId::Audio, Status::Red, "no audio packets".into())
            }
            None => check(CheckId::Audio, Status::Unknown, "—".into()),
        }
    }

    fn audio_level_check(&self, now: Instant) -> Check {
        let warm = self
            .first_audio
            .is_some_and(|t| now.saturating_duration_since(t) >= WARMUP);
        let live = self
            .last_audio
            .is_some_and(|t| now.saturating_duration_since(t) < ABSENT_AFTER);
        if !warm || !live {
            return check(CheckId::AudioLevel, Status::Unknown, "—".into());
        }
        let (sum, _) = self.window(now, LEVEL_WINDOW_S, self.first_audio);
        if sum.audio_packets == 0 {
            return check(CheckId::AudioLevel, Status::Unknown, "—".into());
        }
        // The extension on most packets: judge by the level.
        if sum.level_packets * 2 > sum.audio_packets {
            let loudest = sum.loudest_dbov;
            let status = if loudest < LEVEL_GREEN_DBOV {
                Status::Green
            } else if loudest < LEVEL_SILENT_DBOV {
                Status::Amber
            } else {
                Status::Red
            };
            let value = if loudest >= 127 {
                "silent (−127 dBov)".to_owned()
            } else {
                format!("peak −{loudest} dBov")
            };
            return check(CheckId::AudioLevel, status, value);
        }
        // Else by the Opus packet sizes: silence and DTX frames are a few bytes.
        let share = f64::from(sum.audio_tiny) / f64::from(sum.audio_packets);
        if share >= OPUS_SILENT_SHARE {
            check(
                CheckId::AudioLevel,
                Status::Red,
                format!("silent ({:.0} % silence frames)", share * 100.0),
            )
        } else {
            check(
                CheckId::AudioLevel,
                Status::Green,
                format!("sound ({:.0} % silence frames)", share * 100.0),
            )
        }
    }
}

fn format_bps(bps: u64) -> String {
    if bps >= 1_000_000 {
        format!("{:.1} Mbit/s", bps as f64 / 1e6)
    } else {
        format!("{} kbit/s", bps / 1000)
    }
}

fn check(id: CheckId, status: Status, value: String) -> Check {
    let (advice_vi, advice_en) = advice(id, status);
    Check {
        id,
        status,
        value,
        advice_vi,
        advice_en,
    }
}

/// What to tell the operator: per check and status, Vietnamese then English.
pub fn advice(id: CheckId, status: Status) -> (&'static str, &'static str) {
    use CheckId as C;
    use Status as S;
    match (id, status) {
        (_, S::Unknown) => (
            "Đang đo, chờ vài giây tín hiệu từ bộ mã hoá.",
            "Measuring: waiting for a few seconds of the encoder's feed.",
        ),
        (C::Codec, S::Green) => ("Codec phù hợp.", "The codec suits viewers' browsers."),
        (C::Codec, S::Amber) => (
            "H.264 High: một số thiết bị không giải mã được. Chọn profile Main hoặc Baseline trong bộ mã hoá.",
            "H.264 High: some devices cannot decode it. Set the encoder's profile to Main or Baseline.",
        ),
        (C::Codec, S::Red) => (
            "Không có hình hoặc profile H.264 mà trình duyệt không giải mã được (10-bit, 4:2:2, 4:4:4). Bật video, chọn H.264 Main hoặc Baseline (8-bit, 4:2:0).",
            "No video, or an H.264 profile browsers cannot decode (10-bit, 4:2:2, 4:4:4). Send video as H.264 Main or Baseline (8-bit, 4:2:0).",
        ),
        (C::KeyframeInterval, S::Green) => (
            "Khoảng cách khung khoá tốt (≤ 2 giây).",
            "Keyframe interval is fine (≤ 2 s).",
        ),
        (C::KeyframeInterval, S::Amber) => (
            "Khung khoá thưa (hơn 2 giây). Phát từ trình duyệt: không cần làm gì, máy chủ tự xin khung khoá khi cần. Bộ mã hoá (OBS, vMix, phần cứng): đặt khoảng khung khoá 1–2 giây.",
            "Keyframes are sparse (over 2 s apart). Publishing from a browser: nothing to do, the relay asks for keyframes when it needs them. An encoder (OBS, vMix, hardware): set the keyframe interval to 1–2 s.",
        ),
        (C::KeyframeInterval, _) => (
            "Khung khoá quá thưa: điểm cầu vào muộn phải chờ lâu mới có hình. Đặt khoảng khung khoá (keyframe interval / GOP) là 1–2 giây (OBS: Keyframe Interval = 1 hoặc 2).",
            "Keyframes are too far apart: points joining late wait long for a picture. Set the keyframe interval (GOP) to 1–2 s (OBS: Keyframe Interval = 1 or 2).",
        ),
        (C::KeyframeRequests, S::Green) => (
            "Khoảng cách khung hình chính tốt (≤ 2 giây). Bộ mã hoá RTMP/SRT không nhận được yêu cầu khung hình chính từ người xem, nên giữ nguyên 1–2 giây.",
            "Keyframe interval is fine (≤ 2 s). An RTMP/SRT encoder cannot receive viewers' keyframe requests: keep it at 1–2 s.",
        ),
        (C::KeyframeRequests, S::Amber) => (
            "Bộ mã hoá RTMP/SRT không nhận được yêu cầu khung hình chính từ người xem: người xem bị mất gói phải chờ tới khung hình chính kế tiếp (hơn 2 giây). Đặt khoảng cách khung hình chính (keyframe interval) 1–2 giây.",
            "An RTMP/SRT encoder cannot receive viewers' keyframe requests: a viewer who lost packets waits for its next keyframe (over 2 s). Set the keyframe interval to 1–2 s.",
        ),
        (C::KeyframeRequests, _) => (
            "Bộ mã hoá RTMP/SRT không nhận được yêu cầu khung hình chính từ người xem, mà khung hình chính cách nhau quá xa (hơn 4 giây): người xem bị mất gói hoặc mới vào phải chờ lâu, hình đứng. Đặt khoảng cách khung hình chính (keyframe interval / GOP) 1–2 giây (OBS: Keyframe Interval = 1 hoặc 2; vMix: Keyframe Interval 1–2 s; ffmpeg: -g bằng 1–2 lần số khung hình/giây).",
            "An RTMP/SRT encoder cannot receive viewers' keyframe requests, and its keyframes are far apart (over 4 s): viewers who lost packets or just joined wait long on a frozen picture. Set the keyframe interval (GOP) to 1–2 s (OBS: Keyframe Interval = 1 or 2; vMix: keyframe interval 1–2 s; ffmpeg: -g of 1–2 times the frame rate).",
        ),
        (C::BFrames, S::Green) => ("Không có B-frame.", "No B-frames."),
        (C::BFrames, _) => (
            "Bộ mã hoá gửi B-frame: trình duyệt bị giật hình. Tắt B-frame (B-frames = 0, hoặc profile Baseline; OBS x264: bframes=0).",
            "The encoder sends B-frames: browsers stutter. Turn B-frames off (B-frames = 0, or the Baseline profile; OBS x264: bframes=0).",
        ),
        (C::Bitrate, S::Green) => (
            "Tốc độ bit đủ cho độ phân giải này.",
            "The bitrate suits the resolution.",
        ),
        (C::Bitrate, S::Amber) => (
            "Tốc độ bit hơi thấp: hình sẽ nhoè khi có chuyển động. Tăng bitrate (720p: 1,5–2,5 Mbit/s; 1080p: 3–4,5 Mbit/s) hoặc giảm độ phân giải.",
            "The bitrate is low: the picture smears on motion. Raise the bitrate (720p: 1.5–2.5 Mbit/s; 1080p: 3–4.5 Mbit/s) or lower the resolution.",
        ),
        (C::Bitrate, S::Red) => (
            "Tốc độ bit quá thấp: hình vỡ khối. Đặt bitrate video 720p: 1,5–2,5 Mbit/s; 1080p: 3–4,5 Mbit/s (CBR), hoặc giảm độ phân giải.",
            "The bitrate is far too low: the picture breaks into blocks. Set the video bitrate to 1.5–2.5 Mbit/s for 720p, 3–4.5 Mbit/s for 1080p (CBR), or lower the resolution.",
        ),
        (C::Resolution, S::Green) => ("Độ phân giải tốt.", "The resolution is fine."),
        (C::Resolution, _) => (
            "Độ phân giải thấp: chữ trên màn chiếu khó đọc. Đặt độ phân giải ra (output) 1280×720 hoặc 1920×1080.",
            "The resolution is low: text on the projected picture is hard to read. Set the output resolution to 1280×720 or 1920×1080.",
        ),
        (C::FrameRate, S::Green) => ("Số khung hình/giây tốt.", "The frame rate is fine."),
        (C::FrameRate, _) => (
            "Số khung hình/giây thấp: hình giật. Đặt 25 hoặc 30 fps; nếu máy quá tải, giảm độ phân giải hoặc chọn preset nhẹ hơn.",
            "The frame rate is low: motion is jerky. Set 25 or 30 fps; if the machine is overloaded, lower the resolution or pick a faster preset.",
        ),
        (C::Simulcast, S::Green) => (
            "Có nhiều lớp (simulcast): điểm cầu mạng yếu vẫn có hình.",
            "Several layers (simulcast): points on weak links still get a picture.",
        ),
        (C::Simulcast, S::Amber) => (
            "Chỉ có một lớp hình: điểm cầu mạng yếu sẽ chỉ có tiếng. Bật simulcast nếu bộ mã hoá hỗ trợ (OBS 30+: WHIP Simulcast), hoặc giảm bitrate.",
            "Only one video layer: points on weak links get audio only. Turn on simulcast if the encoder has it (OBS 30+: WHIP simulcast), or lower the bitrate.",
        ),
        (C::Simulcast, S::Red) => (
            "Không nhận được lớp hình nào. Kiểm tra nguồn video của bộ mã hoá.",
            "No video layer is arriving. Check the encoder's video source.",
        ),
        (C::Audio, S::Green) => ("Có âm thanh.", "Audio is arriving."),
        (C::Audio, _) => (
            "Không có âm thanh. Thêm nguồn âm thanh (mixer/micro) vào bộ mã hoá và bật gửi audio (Opus).",
            "No audio. Add the audio source (mixer, microphone) to the encoder and make sure it sends audio (Opus).",
        ),
        (C::AudioLevel, S::Green) => ("Có tiếng.", "Sound is present."),
        (C::AudioLevel, S::Amber) => (
            "Âm thanh rất nhỏ. Tăng mức tín hiệu từ bàn trộn hoặc gain của micro.",
            "Audio is very quiet. Raise the mixer's output level or the microphone gain.",
        ),
        (C::AudioLevel, S::Red) => (
            "Âm thanh im lặng: không ai nghe được. Kiểm tra micro/bàn trộn có được cắm và bật tiếng, nguồn âm thanh của bộ mã hoá có bị tắt (mute) không.",
            "Audio is silent: nobody will hear anything. Check the microphone/mixer is connected and unmuted, and the encoder's audio source is not muted.",
        ),
    }
}

// ------------------------------------------------------------------ bitstream parsing

/// Reads bits of an H.264 RBSP straight from the NAL payload, skipping emulation
/// prevention bytes (00 00 03) on the fly: no copy.
struct BitReader<'a> {
    data: &'a [u8],
    byte: usize,
    bit: u8,
    zeros: u8,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8]) -> Self {
        BitReader {
            data,
            byte: 0,
            bit: 0,
            zeros: 0,
        }
    }

    fn bit(&mut self) -> Option<u32> {
        if self.bit == 0 {
            // Entering a new byte: skip an emulation prevention byte.
            if self.zeros >= 2 && self.data.get(self.byte) == Some(&3) {
                self.byte += 1;
                self.zeros = 0;
            }
            let b = *self.data.get(self.byte)?;
            if b == 0 {
                self.zeros += 1;
            } else {
                self.zeros = 0;
            }
        }
        let b = *self.data.get(self.byte)?;
        let v = (b >> (7 - self.bit)) & 1;
        self.bit += 1;
        if self.bit == 8 {
            self.bit = 0;
            self.byte += 1;
        }
        Some(u32::from(v))
    }

    fn bits(&mut self, n: u32) -> Option<u32> {
        let mut v = 0;
        for _ in 0..n {
            v = (v << 1) | self.bit()?;
        }
        Some(v)
    }

    /// Exp-Golomb ue(v).
    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        Some((1u32 << zeros) - 1 + self.bits(zeros)?)
    }

    fn se(&mut self) -> Option<i32> {
        let k = self.ue()?;
        Some(if k % 2 == 1 {
            k.div_ceil(2) as i32
        } else {
            -((k / 2) as i32)
        })
    }
}

/// Parses an SPS NAL unit (header byte included).
pub fn parse_sps(nal: &[u8]) -> Option<Sps> {
    if nal.first()? & 0x1f != 7 {
        return None;
    }
    let mut r = BitReader::new(nal.get(1..)?);
    let profile_idc = r.bits(8)? as u8;
    let constraints = r.bits(8)? as u8;
    let level_idc = r.bits(8)? as u8;
    r.ue()?; // seq_parameter_set_id
    let mut chroma_format_idc = 1;
    let mut separate_colour_plane = false;
    if matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format_idc = r.ue()?;
        if chroma_format_idc == 3 {
            separate_colour_plane = r.bit()? == 1;
        }
        r.ue()?; // bit_depth_luma_minus8
        r.ue()?; // bit_depth_chroma_minus8
        r.bit()?; // qpprime_y_zero_transform_bypass_flag
        if r.bit()? == 1 {
            // seq_scaling_matrix_present_flag
            let n = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..n {
                if r.bit()? == 1 {
                    let size = if i < 6 { 16 } else { 64 };
                    let (mut last, mut next) = (8i32, 8i32);
                    for _ in 0..size {
                        if next != 0 {
                            let delta = r.se()?;
                            next = (last + delta + 256) % 256;
                        }
                        if next != 0 {
                            last = next;
                        }
                    }
                }
            }
        }
    }
    r.ue()?; // log2_max_frame_num_minus4
    let poc_type = r.ue()?;
    if poc_type == 0 {
        r.ue()?;
    } else if poc_type == 1 {
        r.bit()?;
        r.se()?;
        r.se()?;
        let n = r.ue()?;
        if n > 255 {
            return None;
        }
        for _ in 0..n {
            r.se()?;
        }
    }
    r.ue()?; // max_num_ref_frames
    r.bit()?; // gaps_in_frame_num_value_allowed_flag
    // Checked arithmetic throughout: the fields come from the network (a crafted SPS with
    // huge values must not overflow; the recorder's fuzz target found one).
    let width_mbs = r.ue()?.checked_add(1)?;
    let height_map_units = r.ue()?.checked_add(1)?;
    let frame_mbs_only = r.bit()?;
    if frame_mbs_only == 0 {
        r.bit()?; // mb_adaptive_frame_field_flag
    }
    r.bit()?; // direct_8x8_inference_flag
    let (mut cl, mut cr, mut ct, mut cb) = (0, 0, 0, 0);
    if r.bit()? == 1 {
        cl = r.ue()?;
        cr = r.ue()?;
        ct = r.ue()?;
        cb = r.ue()?;
    }
    let (sub_w, sub_h) = match (chroma_format_idc, separate_colour_plane) {
        (0, _) | (3, true) => (1, 1),
        (1, _) => (2, 2),
        (2, _) => (2, 1),
        _ => (1, 1),
    };
    let crop_x = sub_w;
    let crop_y = sub_h * (2 - frame_mbs_only);
    let crop = |unit: u32, a: u32, b: u32| a.checked_add(b)?.checked_mul(unit);
    let width = width_mbs
        .checked_mul(16)?
        .checked_sub(crop(crop_x, cl, cr)?)?;
    let height = height_map_units
        .checked_mul(16 * (2 - frame_mbs_only))?
        .checked_sub(crop(crop_y, ct, cb)?)?;
    if width == 0 || height == 0 || width > 16384 || height > 16384 {
        return None;
    }
    Some(Sps {
        profile: H264Profile {
            profile_idc,
            constraints,
            level_idc,
        },
        width,
        height,
    })
}

/// Finds and parses an SPS in an H.264 RTP payload: a single NAL unit or a STAP-A.
pub fn h264_find_sps(payload: &[u8]) -> Option<Sps> {
    match payload.first()? & 0x1f {
        7 => parse_sps(payload),
        24 => {
            let mut rest = payload.get(1..)?;
            while rest.len() > 2 {
                let size = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
                let nal = rest.get(2..2 + size)?;
                if nal.first().is_some_and(|h| h & 0x1f == 7) {
                    return parse_sps(nal);
                }
                rest = &rest[2 + size..];
            }
            None
        }
        _ => None,
    }
}

/// An H.264 slice's type, folded (0/5 → P, 1/6 → B, 2/7 → I, SP/SI as P/I).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SliceType {
    P,
    B,
    I,
}

/// The type of the first slice in an H.264 RTP payload: a single slice NAL (1 or 5), the
/// first fragment of an FU-A carrying one, or the first slice of a STAP-A.
pub fn h264_first_slice_type(payload: &[u8]) -> Option<SliceType> {
    let first = *payload.first()?;
    let slice_data = match first & 0x1f {
        1 | 5 => payload.get(1..)?,
        28 => {
            let fu = *payload.get(1)?;
            if fu & 0x80 == 0 || !matches!(fu & 0x1f, 1 | 5) {
                return None;
            }
            payload.get(2..)?
        }
        24 => {
            let mut rest = payload.get(1..)?;
            loop {
                if rest.len() <= 2 {
                    return None;
                }
                let size = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
                let nal = rest.get(2..2 + size)?;
                if nal.first().is_some_and(|h| matches!(h & 0x1f, 1 | 5)) {
                    break nal.get(1..)?;
                }
                rest = &rest[2 + size..];
            }
        }
        _ => return None,
    };
    let mut r = BitReader::new(slice_data);
    r.ue()?; // first_mb_in_slice
    match r.ue()? % 5 {
        0 | 3 => Some(SliceType::P),
        1 => Some(SliceType::B),
        _ => Some(SliceType::I),
    }
}

/// The size of a VP8 key frame from its first RTP packet (RFC 7741 descriptor, then the
/// VP8 frame tag, start code and dimensions, RFC 6386 §9.1).
pub fn vp8_keyframe_size(payload: &[u8]) -> Option<(u32, u32)> {
    let b0 = *payload.first()?;
    let mut i = 1;
    if b0 & 0x80 != 0 {
        let ext = *payload.get(i)?;
        i += 1;
        if ext & 0x80 != 0 {
            i += if payload.get(i)? & 0x80 != 0 { 2 } else { 1 };
        }
        if ext & 0x40 != 0 {
            i += 1;
        }
        if ext & 0x30 != 0 {
            i += 1;
        }
    }
    let h = payload.get(i..i + 10)?;
    if h[0] & 0x01 != 0 || h[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let w = u32::from(u16::from_le_bytes([h[6], h[7]]) & 0x3fff);
    let ht = u32::from(u16::from_le_bytes([h[8], h[9]]) & 0x3fff);
    (w > 0 && ht > 0).then_some((w, ht))
}

#[cfg(test)]
mod tests;
