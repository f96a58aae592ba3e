//! MPEG-TS demultiplexing of an encoder's stream (sans-IO: bytes in, [`TsEvent`]s out).
//!
//! [`TsDemux::push`] takes the bytes as they arrive (SRT messages carry 7 TS packets each, but
//! nothing here assumes it): it finds the 0x47 sync (three packets in a row at the 188-byte
//! pitch), hands aligned packets to `mpeg2ts-reader`'s demultiplexer (PAT, PMT, PES
//! reassembly, continuity counters) and turns its callbacks into events:
//! * H.264 (stream type 0x1B): one [`TsEvent::Video`] per PES packet, which is one access unit
//!   in Annex B (as every encoder muxes it), with PTS/DTS at 90 kHz, unwrapped past 33 bits. A PES
//!   without a timestamp is dropped. A continuity error (lost TS packets) drops the damaged
//!   access unit and every one after it until the next IDR: a viewer's keyframe request cannot
//!   reach an SRT encoder, so a freeze to the next keyframe is better than a smeared picture
//!   until then.
//! * AAC in ADTS (0x0F): one [`TsEvent::Audio`] per ADTS frame, its header removed, with the
//!   AudioSpecificConfig the header implies; a PES that carries several frames gives each its
//!   own PTS (1024 samples apart). Frames leave as soon as they are complete, not when the next
//!   PES starts.
//! * Audio and video codecs the relay cannot carry (HEVC, MPEG-1/2 video, MPEG-4 part 2,
//!   MPEG audio, AC-3, E-AC-3, LATM AAC, Opus in TS): [`TsEvent::Unsupported`] naming the
//!   codec, once per stream. The caller refuses the encoder. Data streams (SCTE-35, KLV,
//!   subtitles, ID3) are ignored.
//!
//! Only the first H.264 and the first ADTS stream of the first program are taken.

use std::collections::VecDeque;

use mpeg2ts_reader::demultiplex::{
    self, DemuxContext, FilterChangeset, FilterRequest, NullPacketFilter, PatPacketFilter,
    PmtPacketFilter,
};
use mpeg2ts_reader::descriptor::CoreDescriptors;
use mpeg2ts_reader::packet::Pid;
use mpeg2ts_reader::pes::{self, ElementaryStreamConsumer, PesContents, PesHeader, PtsDts};
use mpeg2ts_reader::psi::pmt::StreamInfo;
use mpeg2ts_reader::{StreamType, packet_filter_switch};

use crate::{adts, h264};

/// The TS packet size.
const PACKET: usize = 188;
const SYNC: u8 = 0x47;
/// An access unit larger than this is dropped (a 1080p IDR at a high bitrate is ~300 kB).
const MAX_ACCESS_UNIT: usize = 4 << 20;
/// The ADTS frames of one PES waiting to complete (a PES is a few kB in practice).
const MAX_AUDIO_PENDING: usize = 64 << 10;
/// Unparsed bytes kept while looking for sync; beyond them the oldest are dropped as garbage.
const MAX_PENDING: usize = 64 << 10;

/// What the demultiplexer found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TsEvent {
    /// One H.264 access unit in Annex B; timestamps at 90 kHz.
    Video {
        pts: i64,
        dts: i64,
        /// The access unit holds an IDR slice.
        keyframe: bool,
        data: Vec<u8>,
    },
    /// One raw AAC frame (no ADTS header); `pts` at 90 kHz.
    Audio {
        pts: i64,
        /// The AudioSpecificConfig of the frame (object type, sampling index, channels).
        asc: [u8; 2],
        frame: Vec<u8>,
    },
    /// A stream in a codec the relay cannot carry.
    Unsupported {
        codec: &'static str,
        stream_type: u8,
    },
    /// TS packets of the video were lost: video resumes at the next IDR.
    VideoLoss,
}

/// The demultiplexer of one encoder's stream.
pub struct TsDemux {
    demux: demultiplex::Demultiplex<Ctx>,
    ctx: Ctx,
    /// Bytes not yet handed to the demultiplexer.
    pending: Vec<u8>,
    /// `pending` starts at a packet boundary.
    aligned: bool,
    n_garbage_bytes: u64,
    n_bytes: u64,
}

impl Default for TsDemux {
    fn default() -> Self {
        Self::new()
    }
}

impl TsDemux {
    pub fn new() -> TsDemux {
        let mut ctx = Ctx::default();
        let demux = demultiplex::Demultiplex::new(&mut ctx);
        TsDemux {
            demux,
            ctx,
            pending: Vec::new(),
            aligned: false,
            n_garbage_bytes: 0,
            n_bytes: 0,
        }
    }

    /// Feeds received bytes; events are then read with [`TsDemux::poll`].
    pub fn push(&mut self, bytes: &[u8]) {
        self.n_bytes += bytes.len() as u64;
        self.pending.extend_from_slice(bytes);
        let mut at = 0;
        loop {
            let rest = &self.pending[at..];
            if !self.aligned {
                match find_sync(rest) {
                    Sync::At(i) => {
                        self.n_garbage_bytes += i as u64;
                        at += i;
                        self.aligned = true;
                    }
                    Sync::Undecided(i) => {
                        self.n_garbage_bytes += i as u64;
                        at += i;
                        break;
                    }
                }
                continue;
            }
            // Whole packets that start with the sync byte go to the demultiplexer together.
            let n = rest
                .chunks_exact(PACKET)
                .take_while(|p| p[0] == SYNC)
                .count();
            if n > 0 {
                let end = at + n * PACKET;
                self.demux.push(&mut self.ctx, &self.pending[at..end]);
                at = end;
            }
            if self.pending.len() - at >= PACKET {
                // A packet without its sync byte: sync is lost (bytes lost or inserted).
                self.aligned = false;
                continue;
            }
            break;
        }
        self.pending.drain(..at);
        if self.pending.len() > MAX_PENDING {
            let drop = self.pending.len() - MAX_PENDING;
            self.n_garbage_bytes += drop as u64;
            self.pending.drain(..drop);
        }
    }

    /// The next event, in stream order.
    pub fn poll(&mut self) -> Option<TsEvent> {
        self.ctx.events.pop_front()
    }

    /// A program map table has been read (the stream is MPEG-TS and its streams are known).
    pub fn saw_pmt(&self) -> bool {
        self.ctx.saw_pmt
    }

    /// Whether the program has an H.264 stream and an ADTS AAC stream.
    pub fn has_video(&self) -> bool {
        self.ctx.video_pid.is_some()
    }

    pub fn has_audio(&self) -> bool {
        self.ctx.audio_pid.is_some()
    }

    /// Bytes skipped because they were not at a TS packet boundary.
    pub fn n_garbage_bytes(&self) -> u64 {
        self.n_garbage_bytes
    }

    /// Every byte pushed.
    pub fn n_bytes(&self) -> u64 {
        self.n_bytes
    }
}

/// Where the packets start: three packets in a row at the 188-byte pitch, or two that end the
/// buffer exactly (an SRT message of 7 packets seldom splits).
enum Sync {
    At(usize),
    /// Not decided yet: the bytes before this offset are not TS.
    Undecided(usize),
}

fn find_sync(buf: &[u8]) -> Sync {
    for i in 0..buf.len() {
        if buf[i] != SYNC {
            continue;
        }
        match (buf.get(i + PACKET), buf.get(i + 2 * PACKET)) {
            (None, _) => return Sync::Undecided(i),
            (Some(&SYNC), Some(&SYNC)) => return Sync::At(i),
            (Some(&SYNC), None) if buf.len() == i + 2 * PACKET => return Sync::At(i),
            (Some(&SYNC), None) => return Sync::Undecided(i),
            _ => {}
        }
    }
    Sync::Undecided(buf.len())
}

packet_filter_switch! {
    Filter<Ctx> {
        Pat: PatPacketFilter<Ctx>,
        Pmt: PmtPacketFilter<Ctx>,
        Video: pes::PesPacketFilter<Ctx, H264Stream>,
        Audio: pes::PesPacketFilter<Ctx, AdtsStream>,
        Null: NullPacketFilter<Ctx>,
    }
}

#[derive(Default)]
pub struct Ctx {
    changeset: FilterChangeset<Filter>,
    events: VecDeque<TsEvent>,
    saw_pmt: bool,
    video_pid: Option<Pid>,
    audio_pid: Option<Pid>,
    n_programs: usize,
}

impl DemuxContext for Ctx {
    type F = Filter;

    fn filter_changeset(&mut self) -> &mut FilterChangeset<Filter> {
        &mut self.changeset
    }

    fn construct(&mut self, req: FilterRequest<'_, '_>) -> Filter {
        match req {
            FilterRequest::ByPid(Pid::PAT) => Filter::Pat(PatPacketFilter::default()),
            FilterRequest::ByPid(_) | FilterRequest::Nit { .. } => {
                Filter::Null(NullPacketFilter::default())
            }
            FilterRequest::Pmt {
                pid,
                program_number,
            } => {
                self.n_programs += 1;
                if self.n_programs > 1 {
                    return Filter::Null(NullPacketFilter::default());
                }
                Filter::Pmt(PmtPacketFilter::new(pid, program_number))
            }
            FilterRequest::ByStream {
                stream_type,
                stream_info,
                ..
            } => {
                self.saw_pmt = true;
                let pid = stream_info.elementary_pid();
                match classify(stream_type, stream_info) {
                    Kind::H264 if self.video_pid.is_none() || self.video_pid == Some(pid) => {
                        self.video_pid = Some(pid);
                        Filter::Video(pes::PesPacketFilter::new(H264Stream::default()))
                    }
                    Kind::Adts if self.audio_pid.is_none() || self.audio_pid == Some(pid) => {
                        self.audio_pid = Some(pid);
                        Filter::Audio(pes::PesPacketFilter::new(AdtsStream::default()))
                    }
                    Kind::Unsupported(codec) => {
                        self.events.push_back(TsEvent::Unsupported {
                            codec,
                            stream_type: stream_type.0,
                        });
                        Filter::Null(NullPacketFilter::default())
                    }
                    _ => Filter::Null(NullPacketFilter::default()),
                }
            }
        }
    }
}

enum Kind {
    H264,
    Adts,
    Unsupported(&'static str),
    /// Data, or a second stream of a kind already taken.
    Other,
}

fn classify(stream_type: StreamType, info: &StreamInfo<'_>) -> Kind {
    match stream_type.0 {
        0x1B => Kind::H264,
        0x0F => Kind::Adts,
        0x24 => Kind::Unsupported("HEVC (H.265)"),
        0x01 => Kind::Unsupported("MPEG-1 video"),
        0x02 => Kind::Unsupported("MPEG-2 video (H.262)"),
        0x10 => Kind::Unsupported("MPEG-4 part 2 video"),
        0x20 => Kind::Unsupported("H.264 MVC/SVC sub-bitstream"),
        0x21 => Kind::Unsupported("JPEG 2000 video"),
        0x33 => Kind::Unsupported("VVC (H.266)"),
        0x42 => Kind::Unsupported("AVS video"),
        0xD1 => Kind::Unsupported("Dirac video"),
        0xEA => Kind::Unsupported("VC-1 video"),
        0x03 => Kind::Unsupported("MPEG-1 audio (MP2/MP3)"),
        0x04 => Kind::Unsupported("MPEG-2 audio (MP2/MP3)"),
        0x11 => Kind::Unsupported("AAC in LATM"),
        0x81 => Kind::Unsupported("AC-3"),
        0x87 => Kind::Unsupported("E-AC-3"),
        0x06 => private_stream(info),
        _ => Kind::Other,
    }
}

/// A PES private stream (0x06) is audio when its descriptors say so (DVB's AC-3 and E-AC-3
/// descriptors, or a registration descriptor naming the codec).
fn private_stream(info: &StreamInfo<'_>) -> Kind {
    for d in info.descriptors::<CoreDescriptors<'_>>().flatten() {
        match d {
            CoreDescriptors::Registration(r) => {
                let id = r.format_identifier();
                let bytes: &[u8] = (&id).into();
                match bytes {
                    b"Opus" => return Kind::Unsupported("Opus in MPEG-TS"),
                    b"AC-3" => return Kind::Unsupported("AC-3"),
                    b"EAC3" => return Kind::Unsupported("E-AC-3"),
                    b"HEVC" => return Kind::Unsupported("HEVC (H.265)"),
                    _ => {}
                }
            }
            CoreDescriptors::UserPrivate(u) if u.tag == 0x6A => {
                return Kind::Unsupported("AC-3");
            }
            CoreDescriptors::UserPrivate(u) if u.tag == 0x7A => {
                return Kind::Unsupported("E-AC-3");
            }
            _ => {}
        }
    }
    Kind::Other
}

/// 33-bit timestamps made monotonic: each value is placed in the wrap period closest to the
/// previous one.
#[derive(Default)]
struct Unwrap {
    last: Option<i64>,
}

impl Unwrap {
    const PERIOD: i64 = 1 << 33;

    fn unwrap(&mut self, v: u64) -> i64 {
        let v = (v & (Self::PERIOD as u64 - 1)) as i64;
        let out = match self.last {
            None => v,
            Some(last) => {
                let base = last - last.rem_euclid(Self::PERIOD);
                [base - Self::PERIOD + v, base + v, base + Self::PERIOD + v]
                    .into_iter()
                    .min_by_key(|c| (c - last).abs())
                    .unwrap_or(v)
            }
        };
        self.last = Some(out);
        out
    }
}

/// The PTS and DTS of a PES header, if it is a parsed one with a valid PTS.
fn timestamps<'a>(header: &PesHeader<'a>) -> Option<(u64, Option<u64>, &'a [u8])> {
    let PesContents::Parsed(Some(parsed)) = header.contents() else {
        return None;
    };
    let (pts, dts) = match parsed.pts_dts() {
        Ok(PtsDts::PtsOnly(Ok(pts))) => (pts.value(), None),
        Ok(PtsDts::Both {
            pts: Ok(pts),
            dts: Ok(dts),
        }) => (pts.value(), Some(dts.value())),
        _ => return None,
    };
    Some((pts, dts, parsed.payload()))
}

/// One H.264 elementary stream: PES packets → access units.
pub struct H264Stream {
    buf: Vec<u8>,
    /// PTS, DTS of the access unit in `buf`; `None`: nothing to emit (no PES start seen, no
    /// timestamp, damaged or too large).
    at: Option<(i64, i64)>,
    clock: Unwrap,
    /// Dropping access units until the next IDR (at the start and after a loss).
    waiting_idr: bool,
}

impl Default for H264Stream {
    fn default() -> Self {
        H264Stream {
            buf: Vec::new(),
            at: None,
            clock: Unwrap::default(),
            waiting_idr: true,
        }
    }
}

impl ElementaryStreamConsumer<Ctx> for H264Stream {
    fn start_stream(&mut self, _ctx: &mut Ctx) {}

    fn begin_packet(&mut self, _ctx: &mut Ctx, header: PesHeader<'_>) {
        self.buf.clear();
        self.at = None;
        if let Some((pts, dts, payload)) = timestamps(&header) {
            let dts = self.clock.unwrap(dts.unwrap_or(pts));
            // PTS ≥ DTS, within a few frames: unwrapped next to the DTS.
            let mut pts_clock = Unwrap { last: Some(dts) };
            let pts = pts_clock.unwrap(pts);
            self.at = Some((pts, dts));
            self.buf.extend_from_slice(payload);
        }
    }

    fn continue_packet(&mut self, _ctx: &mut Ctx, data: &[u8]) {
        if self.at.is_none() {
            return;
        }
        if self.buf.len() + data.len() > MAX_ACCESS_UNIT {
            self.at = None;
            self.waiting_idr = true;
            return;
        }
        self.buf.extend_from_slice(data);
    }

    fn end_packet(&mut self, ctx: &mut Ctx) {
        let Some((pts, dts)) = self.at.take() else {
            return;
        };
        let keyframe = has_idr(&self.buf);
        if self.waiting_idr && !keyframe {
            return;
        }
        self.waiting_idr = false;
        ctx.events.push_back(TsEvent::Video {
            pts,
            dts,
            keyframe,
            data: std::mem::take(&mut self.buf),
        });
    }

    fn continuity_error(&mut self, ctx: &mut Ctx) {
        self.at = None;
        if !self.waiting_idr {
            ctx.events.push_back(TsEvent::VideoLoss);
        }
        self.waiting_idr = true;
    }
}

/// Whether an Annex B access unit holds an IDR slice.
fn has_idr(annexb: &[u8]) -> bool {
    h264::annexb_nals(annexb)
        .into_iter()
        .any(|n| h264::nal_type(n) == h264::NAL_IDR)
}

/// One ADTS elementary stream: PES packets → raw AAC frames.
#[derive(Default)]
pub struct AdtsStream {
    buf: Vec<u8>,
    /// PTS of the next frame in `buf` (advanced by each frame's duration); `None`: skipping.
    next_pts: Option<i64>,
    clock: Unwrap,
}

impl AdtsStream {
    /// Emits every complete ADTS frame at the front of `buf`.
    fn drain_frames(&mut self, ctx: &mut Ctx) {
        let mut at = 0;
        while let Some(pts) = self.next_pts {
            let rest = &self.buf[at..];
            // The frame's length is in its header; wait until all of it is here.
            let Some(len) = adts_frame_len(rest) else {
                break;
            };
            if rest.len() < len {
                break;
            }
            let Ok(f) = adts::parse(&rest[..len]) else {
                // Not an ADTS frame: drop the rest of this PES.
                self.next_pts = None;
                break;
            };
            let Some(rate) = sample_rate(f.asc) else {
                self.next_pts = None;
                break;
            };
            ctx.events.push_back(TsEvent::Audio {
                pts,
                asc: f.asc,
                frame: f.frame.to_vec(),
            });
            // 1024 samples per frame, in 90 kHz ticks.
            self.next_pts = Some(pts + 1024 * 90_000 / i64::from(rate));
            at += f.len;
        }
        self.buf.drain(..at);
        if self.next_pts.is_none() || self.buf.len() > MAX_AUDIO_PENDING {
            self.buf.clear();
            self.next_pts = None;
        }
    }
}

impl ElementaryStreamConsumer<Ctx> for AdtsStream {
    fn start_stream(&mut self, _ctx: &mut Ctx) {}

    fn begin_packet(&mut self, ctx: &mut Ctx, header: PesHeader<'_>) {
        self.buf.clear();
        self.next_pts = None;
        if let Some((pts, _, payload)) = timestamps(&header) {
            self.next_pts = Some(self.clock.unwrap(pts));
            self.buf.extend_from_slice(payload);
            self.drain_frames(ctx);
        }
    }

    fn continue_packet(&mut self, ctx: &mut Ctx, data: &[u8]) {
        if self.next_pts.is_some() {
            self.buf.extend_from_slice(data);
            self.drain_frames(ctx);
        }
    }

    fn end_packet(&mut self, _ctx: &mut Ctx) {
        self.buf.clear();
        self.next_pts = None;
    }

    fn continuity_error(&mut self, _ctx: &mut Ctx) {
        self.buf.clear();
        self.next_pts = None;
    }
}

/// The length an ADTS header at the start of `b` gives its frame (`None`: fewer than 6 bytes,
/// or no sync word).
fn adts_frame_len(b: &[u8]) -> Option<usize> {
    if b.len() < 6 || b[0] != 0xFF || b[1] & 0xF0 != 0xF0 {
        return if b.len() < 6 { None } else { Some(0) };
    }
    Some((usize::from(b[3] & 0x03) << 11) | (usize::from(b[4]) << 3) | usize::from(b[5] >> 5))
}

/// The sampling rate an AudioSpecificConfig names (`None`: a reserved or explicit index).
fn sample_rate(asc: [u8; 2]) -> Option<u32> {
    const RATES: [u32; 13] = [
        96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025,
        8_000, 7_350,
    ];
    let index = ((asc[0] & 0x07) << 1) | (asc[1] >> 7);
    RATES.get(usize::from(index)).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    const H264_AAC: &[u8] = include_bytes!("../testdata/h264-aac.ts");
    const HEVC_AAC: &[u8] = include_bytes!("../testdata/hevc-aac.ts");
    const H264_MP2: &[u8] = include_bytes!("../testdata/h264-mp2.ts");

    fn events(chunks: impl IntoIterator<Item = Vec<u8>>) -> (TsDemux, Vec<TsEvent>) {
        let mut d = TsDemux::new();
        let mut out = Vec::new();
        for c in chunks {
            d.push(&c);
            while let Some(e) = d.poll() {
                out.push(e);
            }
        }
        (d, out)
    }

    fn video(ev: &[TsEvent]) -> Vec<(i64, i64, bool, &[u8])> {
        ev.iter()
            .filter_map(|e| match e {
                TsEvent::Video {
                    pts,
                    dts,
                    keyframe,
                    data,
                } => Some((*pts, *dts, *keyframe, data.as_slice())),
                _ => None,
            })
            .collect()
    }

    fn audio(ev: &[TsEvent]) -> Vec<(i64, [u8; 2], usize)> {
        ev.iter()
            .filter_map(|e| match e {
                TsEvent::Audio {
                    pts, asc, frame, ..
                } => Some((*pts, *asc, frame.len())),
                _ => None,
            })
            .collect()
    }

    /// The TS packets of a file with the ones `drop` selects removed.
    fn without(ts: &[u8], mut drop: impl FnMut(usize, &[u8]) -> bool) -> Vec<u8> {
        ts.chunks(PACKET)
            .enumerate()
            .filter(|(i, p)| !drop(*i, p))
            .flat_map(|(_, p)| p.to_vec())
            .collect()
    }

    fn pid(p: &[u8]) -> u16 {
        (u16::from(p[1] & 0x1F) << 8) | u16::from(p[2])
    }

    #[test]
    fn ffmpeg_h264_and_aac_demultiplexed() {
        let (d, ev) = events([H264_AAC.to_vec()]);
        assert!(d.saw_pmt() && d.has_video() && d.has_audio());
        assert_eq!(d.n_garbage_bytes(), 0);
        let v = video(&ev);
        // 30 frames; the last stays open until a next PES would start it.
        assert_eq!(
            v.len(),
            29,
            "{:?}",
            v.iter().map(|f| f.0).collect::<Vec<_>>()
        );
        for (i, (pts, dts, keyframe, data)) in v.iter().enumerate() {
            // IDR every 15 frames, 3000 ticks (90 kHz) apart, no B-frames.
            assert_eq!(*keyframe, i % 15 == 0, "frame {i}");
            assert_eq!(pts, dts);
            assert_eq!(*pts - v[0].0, 3000 * i as i64);
            assert!(data.starts_with(&[0, 0, 0, 1]) || data.starts_with(&[0, 0, 1]));
        }
        // The first access unit carries SPS and PPS before the IDR.
        let types: Vec<u8> = h264::annexb_nals(v[0].3)
            .into_iter()
            .map(h264::nal_type)
            .collect();
        assert!(
            types.contains(&7) && types.contains(&8) && types.contains(&5),
            "{types:?}"
        );
        let a = audio(&ev);
        assert_eq!(a.len(), 48);
        for (i, (pts, asc, len)) in a.iter().enumerate() {
            // AAC-LC (2), 48 kHz (index 3), mono: 00010 0011 0001 000.
            assert_eq!(*asc, [0x11, 0x88]);
            assert!(*len > 0);
            // 1024 samples at 48 kHz = 1920 ticks.
            assert_eq!(*pts - a[0].0, 1920 * i as i64);
        }
        assert!(
            !ev.iter()
                .any(|e| matches!(e, TsEvent::Unsupported { .. } | TsEvent::VideoLoss))
        );
    }

    #[test]
    fn any_chunking_gives_the_same_events() {
        let (_, whole) = events([H264_AAC.to_vec()]);
        for size in [1, 7, 100, 188, 1316, 4000] {
            let (_, ev) = events(H264_AAC.chunks(size).map(<[u8]>::to_vec));
            assert_eq!(ev, whole, "chunks of {size}");
        }
    }

    #[test]
    fn garbage_before_and_inside_is_skipped() {
        let mut noisy = vec![0x47u8; 5];
        noisy.extend((0..1000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
        let cut = 40 * PACKET + 17;
        noisy.extend_from_slice(&H264_AAC[..cut]);
        noisy.extend_from_slice(b"not a transport stream at all");
        noisy.extend_from_slice(&H264_AAC[cut..]);
        let (d, ev) = events(noisy.chunks(1316).map(<[u8]>::to_vec));
        assert!(d.n_garbage_bytes() >= 1005);
        let v = video(&ev);
        // Frames after the damage still come, starting again at an IDR.
        assert!(v.len() >= 14, "{}", v.len());
        assert!(v[0].2);
        assert!(audio(&ev).len() >= 30);
    }

    #[test]
    fn lost_video_packets_wait_for_the_next_idr() {
        let (_, whole) = events([H264_AAC.to_vec()]);
        let video_pid = H264_AAC
            .chunks(PACKET)
            .map(pid)
            .find(|&p| p == 0x100)
            .expect("ffmpeg's first stream is on PID 0x100");
        // Drop the TS packet that starts the third access unit.
        let mut n = 0;
        let damaged = without(H264_AAC, |_, p| {
            if pid(p) != video_pid || p[1] & 0x40 == 0 {
                return false;
            }
            n += 1;
            n == 3
        });
        let (_, ev) = events([damaged]);
        assert!(ev.contains(&TsEvent::VideoLoss));
        let v = video(&ev);
        let w = video(&whole);
        // The first frame came; the damaged ones (the second, whose end was not seen, and the
        // third) and the rest of their GOP are gone; the second GOP is whole.
        assert_eq!(v[0].0, w[0].0);
        assert_eq!(v.len(), 1 + w[15..].len());
        assert_eq!(v[1..], w[15..]);
        // Audio is untouched.
        assert_eq!(audio(&ev), audio(&whole));
    }

    #[test]
    fn unsupported_codecs_are_named() {
        let (_, ev) = events([HEVC_AAC.to_vec()]);
        assert!(ev.contains(&TsEvent::Unsupported {
            codec: "HEVC (H.265)",
            stream_type: 0x24
        }));
        assert!(video(&ev).is_empty());
        let (_, ev) = events([H264_MP2.to_vec()]);
        assert!(
            ev.iter().any(|e| matches!(
                e,
                TsEvent::Unsupported {
                    stream_type: 0x03 | 0x04,
                    ..
                }
            )),
            "{:?}",
            ev.iter()
                .filter(|e| !matches!(e, TsEvent::Video { .. }))
                .collect::<Vec<_>>()
        );
        // Reported once, although the PMT repeats.
        assert_eq!(
            ev.iter()
                .filter(|e| matches!(e, TsEvent::Unsupported { .. }))
                .count(),
            1
        );
    }

    #[test]
    fn not_a_transport_stream() {
        let noise: Vec<u8> = (0..200_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
            .collect();
        let (d, ev) = events(noise.chunks(1316).map(<[u8]>::to_vec));
        assert!(ev.is_empty());
        assert!(!d.saw_pmt());
        assert!(d.n_garbage_bytes() > 190_000);
        // A buffer of sync bytes only: aligned, but nothing in it.
        let (d, ev) = events([vec![0x47; 20 * PACKET]]);
        assert!(ev.is_empty() && !d.saw_pmt());
    }

    #[test]
    fn timestamps_unwrap_past_33_bits() {
        let mut u = Unwrap::default();
        let top = (1u64 << 33) - 3000;
        assert_eq!(u.unwrap(top), top as i64);
        assert_eq!(u.unwrap(0), 1 << 33);
        assert_eq!(u.unwrap(3000), (1 << 33) + 3000);
        // A small step back (a B-frame's PTS) stays in the same period.
        assert_eq!(u.unwrap(1000), (1 << 33) + 1000);
        let mut u = Unwrap::default();
        assert_eq!(u.unwrap(1000), 1000);
        assert_eq!(u.unwrap((1 << 33) - 500), -500);
    }

    #[test]
    fn sample_rates_of_audio_specific_configs() {
        assert_eq!(sample_rate([0x11, 0x88]), Some(48_000));
        assert_eq!(sample_rate([0x12, 0x10]), Some(44_100));
        assert_eq!(sample_rate([0x17, 0x88]), None);
    }
}
