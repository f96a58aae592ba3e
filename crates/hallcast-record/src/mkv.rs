//! The Matroska / WebM muxer, sans-IO: it never touches a file. Each call appends
//! [`Op`]s — bytes to append at the end of the file, or bytes to write over an earlier
//! part of it — that the caller carries out in order.
//!
//! Layout, chosen so that a file cut off at any moment (the relay killed mid-broadcast)
//! still opens: `EBML header`, `Segment` of unknown size, a reserved `Void` where the
//! `SeekHead` goes at the end, `Info` (with a reserved `Void` where the `Duration` goes),
//! `Tracks`, `Tags` (conference id and name, broadcast start), then `Cluster`s — each
//! written with an unknown size and patched to its real size when the next one starts,
//! one per video keyframe (or every 5 s of audio). On [`Muxer::finish`]: the last
//! cluster's size, `Cues` (one point per cluster starting at a video keyframe), the
//! `SeekHead`, the `Duration` and the Segment's size. A file cut off before that has
//! every complete block, no duration and no cues: players (ffmpeg, VLC, mpv, browsers
//! for WebM) play it, and seek by scanning.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hallcast_core::Codec;

use crate::ebml;

/// One write the caller carries out, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Append at the end of the file.
    Append(Vec<u8>),
    /// Overwrite bytes already written, at this offset from the file's start.
    Patch { at: u64, bytes: Vec<u8> },
}

/// What the file says about the broadcast it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    pub conference_id: String,
    pub conference_name: Option<String>,
    /// When the broadcast started (wall clock, supplied by the caller).
    pub start: SystemTime,
    pub audio: Option<Codec>,
    pub video: Option<Codec>,
}

impl Metadata {
    /// Matroska for H.264, WebM for VP8 (and for audio alone).
    pub fn container(&self) -> Container {
        if self.video == Some(Codec::H264) {
            Container::Matroska
        } else {
            Container::Webm
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    Matroska,
    Webm,
}

impl Container {
    pub fn extension(self) -> &'static str {
        match self {
            Container::Matroska => "mkv",
            Container::Webm => "webm",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Container::Matroska => "video/x-matroska",
            Container::Webm => "video/webm",
        }
    }

    fn doc_type(self) -> &'static str {
        match self {
            Container::Matroska => "matroska",
            Container::Webm => "webm",
        }
    }
}

/// What the video track needs before the file's header can be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoSetup {
    pub width: u32,
    pub height: u32,
    /// H.264: the AVCDecoderConfigurationRecord; VP8: none.
    pub codec_private: Option<Vec<u8>>,
}

// Element ids (Matroska, RFC 9559).
const EBML: u32 = 0x1A45DFA3;
const SEGMENT: u32 = 0x18538067;
const SEEK_HEAD: u32 = 0x114D9B74;
const SEEK: u32 = 0x4DBB;
const SEEK_ID: u32 = 0x53AB;
const SEEK_POSITION: u32 = 0x53AC;
const INFO: u32 = 0x1549A966;
const TRACKS: u32 = 0x1654AE6B;
const TAGS: u32 = 0x1254C367;
const CLUSTER: u32 = 0x1F43B675;
const CUES: u32 = 0x1C53BB6B;
const SIMPLE_BLOCK: u32 = 0xA3;

const VIDEO_TRACK: u64 = 1;
const AUDIO_TRACK: u64 = 2;
/// Room kept for the SeekHead (four entries of 21 bytes and its own header).
const SEEK_HEAD_ROOM: usize = 100;
/// A cluster holds blocks within ±32 s of its timestamp; a new one starts well before.
const MAX_CLUSTER: i64 = 5_000;
/// Opus in Matroska: decoders need 80 ms before a seek point to converge.
const OPUS_SEEK_PREROLL_NS: u64 = 80_000_000;
/// Nanoseconds between the Unix epoch and Matroska's DateUTC origin (2001-01-01T00:00:00Z).
const MATROSKA_EPOCH_NS: i64 = 978_307_200 * 1_000_000_000;

/// The muxer of one file. Timestamps are milliseconds from the broadcast's start (the
/// file's time scale is 1 ms).
#[derive(Debug)]
pub struct Muxer {
    meta: Metadata,
    /// Bytes written so far (the end of the file).
    len: u64,
    header_written: bool,
    /// Offset of the Segment's data (its children's positions are relative to it).
    segment_data: u64,
    seek_head_at: u64,
    duration_at: u64,
    info_pos: u64,
    tracks_pos: u64,
    tags_pos: u64,
    /// The open cluster: its offset and timestamp.
    cluster: Option<(u64, i64)>,
    /// (time, cluster position relative to the segment's data) of keyframe clusters.
    cues: Vec<(i64, u64)>,
    /// The latest block time, and the earliest.
    last_ms: i64,
    first_ms: Option<i64>,
    n_blocks: u64,
    finished: bool,
}

impl Muxer {
    pub fn new(meta: Metadata) -> Muxer {
        Muxer {
            meta,
            len: 0,
            header_written: false,
            segment_data: 0,
            seek_head_at: 0,
            duration_at: 0,
            info_pos: 0,
            tracks_pos: 0,
            tags_pos: 0,
            cluster: None,
            cues: Vec::new(),
            last_ms: 0,
            first_ms: None,
            n_blocks: 0,
            finished: false,
        }
    }

    pub fn metadata(&self) -> &Metadata {
        &self.meta
    }

    pub fn header_written(&self) -> bool {
        self.header_written
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Milliseconds from the first block to the end of the last one written.
    pub fn duration_ms(&self) -> i64 {
        self.first_ms.map_or(0, |f| self.end_ms() - f.min(0))
    }

    fn end_ms(&self) -> i64 {
        // The last block lasts about a frame (20 ms of Opus, a video frame at 50 fps).
        self.last_ms + 20
    }

    fn append(&mut self, ops: &mut Vec<Op>, bytes: Vec<u8>) {
        self.len += bytes.len() as u64;
        ops.push(Op::Append(bytes));
    }

    /// Writes the EBML header, the Segment's start, Info, Tracks and Tags. `video` is
    /// needed when the file has a video track.
    pub fn write_header(&mut self, video: Option<&VideoSetup>, ops: &mut Vec<Op>) {
        if self.header_written {
            return;
        }
        self.header_written = true;
        let container = self.meta.container();
        let mut b = Vec::with_capacity(1024);
        ebml::master(&mut b, EBML, |b| {
            ebml::uint(b, 0x4286, 1); // EBMLVersion
            ebml::uint(b, 0x42F7, 1); // EBMLReadVersion
            ebml::uint(b, 0x42F2, 4); // EBMLMaxIDLength
            ebml::uint(b, 0x42F3, 8); // EBMLMaxSizeLength
            ebml::string(b, 0x4282, container.doc_type()); // DocType
            ebml::uint(b, 0x4287, 4); // DocTypeVersion
            ebml::uint(b, 0x4285, 2); // DocTypeReadVersion
        });
        ebml::id(&mut b, SEGMENT);
        b.extend_from_slice(&ebml::UNKNOWN_SIZE);
        self.segment_data = b.len() as u64;
        self.seek_head_at = b.len() as u64;
        ebml::void(&mut b, SEEK_HEAD_ROOM);

        self.info_pos = b.len() as u64 - self.segment_data;
        let start_unix_ns = self
            .meta
            .start
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_nanos() as i64;
        let title = match &self.meta.conference_name {
            Some(name) => format!("{name} ({})", self.meta.conference_id),
            None => self.meta.conference_id.clone(),
        };
        let mut info = Vec::new();
        ebml::uint(&mut info, 0x2AD7B1, 1_000_000); // TimestampScale: 1 ms
        ebml::int(&mut info, 0x4461, start_unix_ns - MATROSKA_EPOCH_NS); // DateUTC
        ebml::string(&mut info, 0x7BA9, &title); // Title
        ebml::string(&mut info, 0x4D80, "hallcast"); // MuxingApp
        ebml::string(&mut info, 0x5741, "hallcast"); // WritingApp
        let info_header = {
            let mut h = Vec::new();
            ebml::id(&mut h, INFO);
            ebml::size(&mut h, info.len() as u64 + 11);
            h
        };
        b.extend_from_slice(&info_header);
        b.extend_from_slice(&info);
        // Room for the Duration (2-byte id, 1-byte size, 8-byte float).
        self.duration_at = b.len() as u64;
        ebml::void(&mut b, 11);

        self.tracks_pos = b.len() as u64 - self.segment_data;
        let meta = &self.meta;
        ebml::master(&mut b, TRACKS, |b| {
            if let (Some(codec), Some(v)) = (meta.video, video) {
                ebml::master(b, 0xAE, |t| {
                    ebml::uint(t, 0xD7, VIDEO_TRACK); // TrackNumber
                    ebml::uint(t, 0x73C5, VIDEO_TRACK); // TrackUID
                    ebml::uint(t, 0x83, 1); // TrackType: video
                    ebml::uint(t, 0x9C, 0); // FlagLacing
                    ebml::string(t, 0x22B59C, "und"); // Language
                    let id = if codec == Codec::H264 {
                        "V_MPEG4/ISO/AVC"
                    } else {
                        "V_VP8"
                    };
                    ebml::string(t, 0x86, id); // CodecID
                    if let Some(p) = &v.codec_private {
                        ebml::binary(t, 0x63A2, p); // CodecPrivate
                    }
                    ebml::master(t, 0xE0, |v2| {
                        ebml::uint(v2, 0xB0, u64::from(v.width)); // PixelWidth
                        ebml::uint(v2, 0xBA, u64::from(v.height)); // PixelHeight
                    });
                });
            }
            if meta.audio == Some(Codec::Opus) {
                ebml::master(b, 0xAE, |t| {
                    ebml::uint(t, 0xD7, AUDIO_TRACK);
                    ebml::uint(t, 0x73C5, AUDIO_TRACK);
                    ebml::uint(t, 0x83, 2); // TrackType: audio
                    ebml::uint(t, 0x9C, 0);
                    ebml::string(t, 0x22B59C, "und");
                    ebml::string(t, 0x86, "A_OPUS");
                    ebml::binary(t, 0x63A2, &opus_head());
                    ebml::uint(t, 0x56AA, 0); // CodecDelay (no pre-skip: joined mid-stream)
                    ebml::uint(t, 0x56BB, OPUS_SEEK_PREROLL_NS); // SeekPreRoll
                    ebml::master(t, 0xE1, |a| {
                        ebml::float(a, 0xB5, 48_000.0); // SamplingFrequency
                        ebml::uint(a, 0x9F, 2); // Channels
                    });
                });
            }
        });

        self.tags_pos = b.len() as u64 - self.segment_data;
        let start = iso8601(self.meta.start);
        ebml::master(&mut b, TAGS, |b| {
            ebml::master(b, 0x7373, |tag| {
                ebml::master(tag, 0x63C0, |t| ebml::uint(t, 0x68CA, 50)); // Targets: the whole
                let mut simple = |name: &str, value: &str| {
                    ebml::master(tag, 0x67C8, |s| {
                        ebml::string(s, 0x45A3, name); // TagName
                        ebml::string(s, 0x4487, value); // TagString
                    });
                };
                simple("TITLE", &title);
                simple("CONFERENCE_ID", &meta.conference_id);
                if let Some(name) = &meta.conference_name {
                    simple("CONFERENCE_NAME", name);
                }
                simple("DATE_RECORDED", &start);
                simple("BROADCAST_START", &start);
            });
        });
        self.append(ops, b);
    }

    /// One frame of `track` at `t_ms`. Needs the header written.
    fn block(&mut self, track: u64, t_ms: i64, keyframe: bool, data: &[u8], ops: &mut Vec<Op>) {
        if !self.header_written || self.finished {
            return;
        }
        let new_cluster = match self.cluster {
            None => true,
            Some((_, c)) => {
                (track == VIDEO_TRACK && keyframe)
                    || t_ms - c >= MAX_CLUSTER
                    || t_ms - c < -(i16::MAX as i64) / 2
            }
        };
        if new_cluster {
            self.close_cluster(ops);
            let at = self.len;
            let mut c = Vec::with_capacity(32);
            ebml::id(&mut c, CLUSTER);
            c.extend_from_slice(&ebml::UNKNOWN_SIZE);
            ebml::uint(&mut c, 0xE7, t_ms.max(0) as u64); // Timestamp
            self.append(ops, c);
            self.cluster = Some((at, t_ms.max(0)));
            if track == VIDEO_TRACK && keyframe || self.meta.video.is_none() {
                self.cues.push((t_ms.max(0), at - self.segment_data));
            }
        }
        let Some((_, cluster_ms)) = self.cluster else {
            return;
        };
        let rel = (t_ms - cluster_ms).clamp(i64::from(i16::MIN), i64::from(i16::MAX)) as i16;
        let mut b = Vec::with_capacity(data.len() + 16);
        ebml::id(&mut b, SIMPLE_BLOCK);
        ebml::size(&mut b, data.len() as u64 + 4);
        b.push(0x80 | track as u8); // track number as a 1-byte vint
        b.extend_from_slice(&rel.to_be_bytes());
        b.push(if keyframe { 0x80 } else { 0x00 });
        b.extend_from_slice(data);
        self.append(ops, b);
        self.last_ms = self.last_ms.max(t_ms);
        self.first_ms = Some(self.first_ms.map_or(t_ms, |f| f.min(t_ms)));
        self.n_blocks += 1;
    }

    pub fn video(&mut self, t_ms: i64, keyframe: bool, data: &[u8], ops: &mut Vec<Op>) {
        self.block(VIDEO_TRACK, t_ms, keyframe, data, ops);
    }

    pub fn audio(&mut self, t_ms: i64, data: &[u8], ops: &mut Vec<Op>) {
        // Every Opus packet decodes on its own.
        self.block(AUDIO_TRACK, t_ms, true, data, ops);
    }

    fn close_cluster(&mut self, ops: &mut Vec<Op>) {
        if let Some((at, _)) = self.cluster.take() {
            let size = self.len - at - 12;
            ops.push(Op::Patch {
                at: at + 4,
                bytes: ebml::size8(size).to_vec(),
            });
        }
    }

    /// Ends the file: the last cluster's size, Cues, SeekHead, Duration, the Segment's size.
    pub fn finish(&mut self, ops: &mut Vec<Op>) {
        if self.finished || !self.header_written {
            self.finished = true;
            return;
        }
        self.finished = true;
        self.close_cluster(ops);
        let cues_pos = self.len - self.segment_data;
        let mut cues = Vec::new();
        if !self.cues.is_empty() {
            let track = if self.meta.video.is_some() {
                VIDEO_TRACK
            } else {
                AUDIO_TRACK
            };
            ebml::master(&mut cues, CUES, |b| {
                for &(t, pos) in &self.cues {
                    ebml::master(b, 0xBB, |p| {
                        ebml::uint(p, 0xB3, t as u64); // CueTime
                        ebml::master(p, 0xB7, |tp| {
                            ebml::uint(tp, 0xF7, track); // CueTrack
                            ebml::uint(tp, 0xF1, pos); // CueClusterPosition
                        });
                    });
                }
            });
        }
        let has_cues = !cues.is_empty();
        if has_cues {
            self.append(ops, cues);
        }
        let mut seek = Vec::new();
        ebml::master(&mut seek, SEEK_HEAD, |b| {
            let mut entry = |id: u32, pos: u64| {
                ebml::master(b, SEEK, |s| {
                    let mut idb = Vec::new();
                    ebml::id(&mut idb, id);
                    ebml::binary(s, SEEK_ID, &idb);
                    ebml::uint8(s, SEEK_POSITION, pos);
                });
            };
            entry(INFO, self.info_pos);
            entry(TRACKS, self.tracks_pos);
            entry(TAGS, self.tags_pos);
            if has_cues {
                entry(CUES, cues_pos);
            }
        });
        if seek.len() + 2 <= SEEK_HEAD_ROOM {
            let rest = SEEK_HEAD_ROOM - seek.len();
            ebml::void(&mut seek, rest);
            ops.push(Op::Patch {
                at: self.seek_head_at,
                bytes: seek,
            });
        }
        let mut d = Vec::new();
        ebml::float(&mut d, 0x4489, self.duration_ms() as f64);
        ops.push(Op::Patch {
            at: self.duration_at,
            bytes: d,
        });
        ops.push(Op::Patch {
            at: self.segment_data - 8,
            bytes: ebml::size8(self.len - self.segment_data).to_vec(),
        });
    }
}

/// The OpusHead of a 48 kHz stereo stream (RFC 7845 5.1), Matroska's A_OPUS CodecPrivate.
fn opus_head() -> Vec<u8> {
    let mut h = b"OpusHead".to_vec();
    h.push(1); // version
    h.push(2); // channels
    h.extend_from_slice(&0u16.to_le_bytes()); // pre-skip
    h.extend_from_slice(&48_000u32.to_le_bytes());
    h.extend_from_slice(&0i16.to_le_bytes()); // output gain
    h.push(0); // channel mapping family
    h
}

/// `2026-12-01T09:30:00Z`, from a wall-clock time.
pub fn iso8601(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}
