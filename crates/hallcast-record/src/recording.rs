//! One broadcast's recording, sans-IO: source packets in, file writes ([`Op`]s) out.
//!
//! Time: the file's zero is the broadcast's start (an `Instant` the relay supplies). Each
//! track is anchored at its first packet's arrival and advances by its RTP timestamps
//! (unwrapped), so the media's own clock — not arrival jitter — spaces the frames, and
//! audio and video stay within one arrival's jitter of each other.
//!
//! Video is written from its first keyframe: the header needs the frame size (and for H.264
//! the SPS and PPS), so audio that arrives before it waits in a bounded queue (the oldest
//! dropped beyond [`MAX_PENDING_AUDIO`]).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use hallcast_core::preflight::parse_sps;
use hallcast_core::{Codec, MediaKind, SourcePacket};

use crate::depack::{DepackError, Depacketizer, Frame, avc_config, vp8_dimensions};
use crate::mkv::{Metadata, Muxer, Op, VideoSetup};

/// Opus packets (20 ms each) kept while waiting for the first video keyframe: 60 s.
pub const MAX_PENDING_AUDIO: usize = 3000;

/// RTP time of one track mapped onto the file's milliseconds.
#[derive(Debug)]
struct TrackClock {
    rate: i64,
    offset_ms: i64,
    last_raw: u32,
    /// Unwrapped RTP time since the first packet.
    ext: i64,
}

impl TrackClock {
    fn new(rate: u32, offset_ms: i64, ts: u32) -> TrackClock {
        TrackClock {
            rate: i64::from(rate.max(1)),
            offset_ms,
            last_raw: ts,
            ext: 0,
        }
    }

    fn ms(&mut self, ts: u32) -> i64 {
        self.ext += i64::from(ts.wrapping_sub(self.last_raw) as i32);
        self.last_raw = ts;
        self.offset_ms + self.ext * 1000 / self.rate
    }
}

#[derive(Debug)]
pub struct Recording {
    muxer: Muxer,
    start: Instant,
    depack: Option<Depacketizer>,
    video_clock: Option<TrackClock>,
    audio_clock: Option<TrackClock>,
    pending_audio: VecDeque<(i64, Arc<[u8]>)>,
    frames: Vec<Frame>,
    n_bad_packets: u64,
    n_audio_dropped: u64,
}

impl Recording {
    /// A recording starting at `start`; an audio-only one writes its header into `ops`
    /// at once (nothing to wait for).
    pub fn new(meta: Metadata, start: Instant, ops: &mut Vec<Op>) -> Recording {
        let depack = meta.video.map(Depacketizer::new);
        let mut muxer = Muxer::new(meta);
        if depack.is_none() {
            muxer.write_header(None, ops);
        }
        Recording {
            muxer,
            start,
            depack,
            video_clock: None,
            audio_clock: None,
            pending_audio: VecDeque::new(),
            frames: Vec::new(),
            n_bad_packets: 0,
            n_audio_dropped: 0,
        }
    }

    pub fn muxer(&self) -> &Muxer {
        &self.muxer
    }

    /// Video frames left out (incomplete or after a loss, until the next keyframe) and
    /// packets that did not parse.
    pub fn n_video_dropped(&self) -> u64 {
        self.depack.as_ref().map_or(0, |d| d.n_dropped())
    }

    pub fn n_bad_packets(&self) -> u64 {
        self.n_bad_packets
    }

    pub fn n_audio_dropped(&self) -> u64 {
        self.n_audio_dropped
    }

    fn offset_ms(&self, arrival: Instant) -> i64 {
        arrival.saturating_duration_since(self.start).as_millis() as i64
    }

    /// One packet of the broadcast (audio, or video of the recorded layer).
    pub fn push(&mut self, p: &SourcePacket, ops: &mut Vec<Op>) -> Result<(), DepackError> {
        match p.kind {
            MediaKind::Audio => {
                if self.muxer.metadata().audio != Some(Codec::Opus) {
                    return Ok(());
                }
                let offset = self.offset_ms(p.arrival);
                let clock = self
                    .audio_clock
                    .get_or_insert_with(|| TrackClock::new(48_000, offset, p.ts));
                let t = clock.ms(p.ts);
                if self.muxer.header_written() {
                    self.muxer.audio(t, &p.payload, ops);
                } else {
                    if self.pending_audio.len() >= MAX_PENDING_AUDIO {
                        self.pending_audio.pop_front();
                        self.n_audio_dropped += 1;
                    }
                    self.pending_audio.push_back((t, p.payload.clone()));
                }
                Ok(())
            }
            MediaKind::Video => {
                let Some(codec) = self.muxer.metadata().video else {
                    return Ok(());
                };
                let offset = self.offset_ms(p.arrival);
                let rate = codec.clock_rate();
                self.video_clock
                    .get_or_insert_with(|| TrackClock::new(rate, offset, p.ts));
                let Some(d) = self.depack.as_mut() else {
                    return Ok(());
                };
                let r = d.push(p.seq, p.ts, p.marker, &p.payload, &mut self.frames);
                if r.is_err() {
                    self.n_bad_packets += 1;
                }
                let mut frames = std::mem::take(&mut self.frames);
                for f in frames.drain(..) {
                    self.video_frame(codec, f, ops);
                }
                self.frames = frames;
                r
            }
        }
    }

    fn video_frame(&mut self, codec: Codec, f: Frame, ops: &mut Vec<Op>) {
        if !self.muxer.header_written() {
            if !f.keyframe {
                return;
            }
            let Some(setup) = self.video_setup(codec, &f) else {
                // A keyframe without its parameter sets: wait for the next one.
                return;
            };
            self.muxer.write_header(Some(&setup), ops);
            for (t, data) in std::mem::take(&mut self.pending_audio) {
                self.muxer.audio(t, &data, ops);
            }
        }
        let Some(clock) = self.video_clock.as_mut() else {
            return;
        };
        let t = clock.ms(f.rtp_ts);
        self.muxer.video(t, f.keyframe, &f.data, ops);
    }

    fn video_setup(&self, codec: Codec, f: &Frame) -> Option<VideoSetup> {
        match codec {
            Codec::H264 => {
                let (sps, pps) = self.depack.as_ref()?.parameter_sets()?;
                let parsed = parse_sps(sps)?;
                Some(VideoSetup {
                    width: parsed.width,
                    height: parsed.height,
                    codec_private: Some(avc_config(sps, pps)?),
                })
            }
            Codec::Vp8 => {
                let (width, height) = vp8_dimensions(&f.data)?;
                Some(VideoSetup {
                    width,
                    height,
                    codec_private: None,
                })
            }
            Codec::Opus => None,
        }
    }

    /// The broadcast ended: the file's index and duration.
    pub fn finish(&mut self, ops: &mut Vec<Op>) {
        self.muxer.finish(ops);
    }
}
