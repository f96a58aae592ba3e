//! Sans-IO media work of the ingest latency benchmark: the frame-counter SEI, FLV video tag
//! bodies (RTMP), a minimal MPEG-TS muxer (SRT), and the viewer's reassembly of H.264 frames
//! from RTP packets.

use std::collections::{HashMap, VecDeque};

use hallcast_ingest::h264::{NAL_AUD, NAL_PPS, NAL_SPS, annexb_nals, nal_type};

/// NAL unit type of supplemental enhancement information.
const NAL_SEI: u8 = 6;
/// SEI payload type "user data unregistered" (H.264 D.1.7): a UUID and free bytes.
const SEI_USER_DATA_UNREGISTERED: u8 = 5;
/// The UUID of the benchmark's SEI (ASCII: no zero bytes, so no emulation prevention).
const SEI_UUID: [u8; 16] = *b"hallcast-latency";
/// Payload: the UUID and the frame counter as 8 lowercase hex digits.
const SEI_PAYLOAD_LEN: u8 = 16 + 8;

const START_CODE: [u8; 4] = [0, 0, 0, 1];

/// The SEI NAL unit (without start code) carrying frame counter `n`.
pub fn sei_nal(n: u32) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + usize::from(SEI_PAYLOAD_LEN));
    v.extend_from_slice(&[NAL_SEI, SEI_USER_DATA_UNREGISTERED, SEI_PAYLOAD_LEN]);
    v.extend_from_slice(&SEI_UUID);
    v.extend_from_slice(format!("{n:08x}").as_bytes());
    // rbsp_trailing_bits.
    v.push(0x80);
    v
}

/// The frame counter of a NAL unit made by [`sei_nal`], if it is one.
pub fn parse_sei(nal: &[u8]) -> Option<u32> {
    if nal.len() < 3 + usize::from(SEI_PAYLOAD_LEN)
        || nal_type(nal) != NAL_SEI
        || nal[1] != SEI_USER_DATA_UNREGISTERED
        || nal[2] != SEI_PAYLOAD_LEN
        || nal[3..19] != SEI_UUID
    {
        return None;
    }
    let hex = std::str::from_utf8(&nal[19..27]).ok()?;
    u32::from_str_radix(hex, 16).ok()
}

/// The access unit (Annex B) with the SEI of frame `n` in front of its first slice (after any
/// SPS/PPS, as H.264 orders them). Access unit delimiters are left out.
pub fn with_sei(annexb: &[u8], n: u32) -> Vec<u8> {
    let sei = sei_nal(n);
    let mut out = Vec::with_capacity(annexb.len() + sei.len() + 8);
    let mut placed = false;
    for nal in annexb_nals(annexb) {
        let t = nal_type(nal);
        if t == NAL_AUD {
            continue;
        }
        if !placed && (1..=5).contains(&t) {
            out.extend_from_slice(&START_CODE);
            out.extend_from_slice(&sei);
            placed = true;
        }
        out.extend_from_slice(&START_CODE);
        out.extend_from_slice(nal);
    }
    if !placed {
        out.extend_from_slice(&START_CODE);
        out.extend_from_slice(&sei);
    }
    out
}

/// The SPS and PPS of an access unit, if it carries both.
pub fn parameter_sets(annexb: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let nals = annexb_nals(annexb);
    let sps = nals.iter().find(|n| nal_type(n) == NAL_SPS)?;
    let pps = nals.iter().find(|n| nal_type(n) == NAL_PPS)?;
    Some((sps.to_vec(), pps.to_vec()))
}

/// The body of an FLV/RTMP AVC sequence header tag (AVCDecoderConfigurationRecord, 4-byte
/// NAL lengths).
pub fn flv_avc_sequence_header(sps: &[u8], pps: &[u8]) -> Vec<u8> {
    let mut v = vec![0x17, 0, 0, 0, 0];
    v.push(1);
    v.extend_from_slice(sps.get(1..4).unwrap_or(&[0x42, 0xc0, 0x1f]));
    v.extend_from_slice(&[0xff, 0xe1]);
    v.extend_from_slice(&(sps.len() as u16).to_be_bytes());
    v.extend_from_slice(sps);
    v.push(1);
    v.extend_from_slice(&(pps.len() as u16).to_be_bytes());
    v.extend_from_slice(pps);
    v
}

/// The body of an FLV/RTMP AVC NALU tag: the access unit's NAL units behind 4-byte lengths,
/// composition time 0 (no B-frames).
pub fn flv_avc_nalus(annexb: &[u8], keyframe: bool) -> Vec<u8> {
    let mut v = Vec::with_capacity(annexb.len() + 16);
    v.extend_from_slice(&[if keyframe { 0x17 } else { 0x27 }, 1, 0, 0, 0]);
    for nal in annexb_nals(annexb) {
        if nal_type(nal) == NAL_AUD {
            continue;
        }
        v.extend_from_slice(&(nal.len() as u32).to_be_bytes());
        v.extend_from_slice(nal);
    }
    v
}

const TS_PACKET: usize = 188;
const PMT_PID: u16 = 0x1000;
const VIDEO_PID: u16 = 0x100;

/// A minimal MPEG-TS muxer for one H.264 stream (program 1, PCR on the video PID), as an
/// encoder muxes it: one PES per access unit with an access unit delimiter in front. The PES
/// length is set when it fits in 16 bits (0 otherwise; ffmpeg writes 0 for video by default,
/// and the gateway's demuxer ends a PES at the next one either way).
#[derive(Debug, Default)]
pub struct TsMux {
    cc: HashMap<u16, u8>,
}

impl TsMux {
    /// The TS packets of one access unit (Annex B) presented at `pts` (90 kHz), preceded by
    /// the PAT and the PMT when `tables`.
    pub fn frame(&mut self, pts: u64, annexb: &[u8], tables: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(annexb.len() + annexb.len() / 150 * 4 + 3 * TS_PACKET);
        if tables {
            let pat = [
                0x00, // table_id
                0xb0,
                13, // section_syntax_indicator, section_length
                0x00,
                0x01, // transport_stream_id
                0xc1,
                0x00,
                0x00, // version 0, current; section 0 of 0
                0x00,
                0x01, // program_number 1
                0xe0 | (PMT_PID >> 8) as u8,
                PMT_PID as u8,
            ];
            self.psi(&mut out, 0, &pat);
            let pmt = [
                0x02, // table_id
                0xb0,
                18, // section_syntax_indicator, section_length
                0x00,
                0x01, // program_number
                0xc1,
                0x00,
                0x00, // version 0, current; section 0 of 0
                0xe0 | (VIDEO_PID >> 8) as u8,
                VIDEO_PID as u8, // PCR_PID
                0xf0,
                0x00, // program_info_length 0
                0x1b, // H.264
                0xe0 | (VIDEO_PID >> 8) as u8,
                VIDEO_PID as u8,
                0xf0,
                0x00, // ES_info_length 0
            ];
            self.psi(&mut out, PMT_PID, &pmt);
        }
        let pts = pts & ((1 << 33) - 1);
        let mut es = vec![0, 0, 0, 1, NAL_AUD, 0xf0];
        es.extend_from_slice(annexb);
        let mut pes = vec![0, 0, 1, 0xe0];
        let len = es.len() + 8;
        pes.extend_from_slice(&(if len <= 0xffff { len as u16 } else { 0 }).to_be_bytes());
        pes.extend_from_slice(&[0x80, 0x80, 5]);
        pes.extend_from_slice(&[
            0x21 | ((pts >> 29) as u8 & 0x0e),
            (pts >> 22) as u8,
            ((pts >> 14) as u8 & 0xfe) | 1,
            (pts >> 7) as u8,
            ((pts << 1) as u8 & 0xfe) | 1,
        ]);
        pes.extend_from_slice(&es);
        // PCR 100 ms behind the PTS (the decoder's buffer), base only.
        let pcr = pts.saturating_sub(9000);
        let pcr_field = [
            0x10, // PCR_flag
            (pcr >> 25) as u8,
            (pcr >> 17) as u8,
            (pcr >> 9) as u8,
            (pcr >> 1) as u8,
            ((pcr as u8 & 1) << 7) | 0x7e,
            0,
        ];
        let mut pos = 0;
        let mut first = true;
        while pos < pes.len() {
            let mut af: Option<Vec<u8>> = first.then(|| pcr_field.to_vec());
            let af_size = |af: &Option<Vec<u8>>| af.as_ref().map_or(0, |b| 1 + b.len());
            let mut space = TS_PACKET - 4 - af_size(&af);
            let left = pes.len() - pos;
            if left < space {
                let stuff = space - left;
                match &mut af {
                    Some(body) => body.extend(std::iter::repeat_n(0xff, stuff)),
                    None if stuff == 1 => af = Some(Vec::new()),
                    None => {
                        let mut body = vec![0x00];
                        body.extend(std::iter::repeat_n(0xff, stuff - 2));
                        af = Some(body);
                    }
                }
                space = left;
            }
            let cc = self.next_cc(VIDEO_PID);
            out.extend_from_slice(&[
                0x47,
                (if first { 0x40 } else { 0 }) | (VIDEO_PID >> 8) as u8,
                VIDEO_PID as u8,
                (if af.is_some() { 0x30 } else { 0x10 }) | cc,
            ]);
            if let Some(body) = &af {
                out.push(body.len() as u8);
                out.extend_from_slice(body);
            }
            out.extend_from_slice(&pes[pos..pos + space]);
            pos += space;
            first = false;
        }
        out
    }

    fn next_cc(&mut self, pid: u16) -> u8 {
        let cc = self.cc.entry(pid).or_insert(15);
        *cc = (*cc + 1) & 0x0f;
        *cc
    }

    /// One PSI section (without its CRC) in one TS packet.
    fn psi(&mut self, out: &mut Vec<u8>, pid: u16, section: &[u8]) {
        let cc = self.next_cc(pid);
        let start = out.len();
        out.extend_from_slice(&[0x47, 0x40 | (pid >> 8) as u8, pid as u8, 0x10 | cc, 0]);
        out.extend_from_slice(section);
        out.extend_from_slice(&crc32_mpeg(section).to_be_bytes());
        out.resize(start + TS_PACKET, 0xff);
    }
}

/// CRC-32/MPEG-2 (polynomial 0x04C11DB7, not reflected, initial value all ones).
fn crc32_mpeg(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04c1_1db7
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The frame counter carried by an H.264 RTP payload (RFC 6184): a single SEI NAL unit, or
/// one inside a STAP-A aggregate (the payloader puts SPS and PPS together with the next unit).
pub fn rtp_h264_counter(payload: &[u8]) -> Option<u32> {
    match payload.first()? & 0x1f {
        NAL_SEI => parse_sei(payload),
        24 => {
            let mut i = 1;
            while i + 2 <= payload.len() {
                let len = usize::from(u16::from_be_bytes([payload[i], payload[i + 1]]));
                let nal = payload.get(i + 2..i + 2 + len)?;
                if let Some(n) = parse_sei(nal) {
                    return Some(n);
                }
                i += 2 + len;
            }
            None
        }
        _ => None,
    }
}

/// A frame the viewer has received whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Complete {
    pub counter: u32,
    pub keyframe: bool,
}

#[derive(Debug, Default)]
struct Partial {
    min_seq: u64,
    marker_seq: Option<u64>,
    n_packets: u64,
    counter: Option<u32>,
    keyframe: bool,
    done: bool,
}

/// Reassembles the viewer's H.264 frames by RTP timestamp: a frame is whole when its packet
/// with the SEI (its first: the SEI precedes the slices) and its marker packet have arrived
/// and every sequence number between them.
#[derive(Debug, Default)]
pub struct FrameAssembler {
    frames: HashMap<u32, Partial>,
    order: VecDeque<u32>,
}

/// Frames kept in progress (a few seconds at 30 fps; older ones are forgotten).
const MAX_PARTIAL: usize = 256;

impl FrameAssembler {
    /// One received packet (extended sequence number); `Some` the first time its frame is
    /// whole.
    pub fn push(
        &mut self,
        ts: u32,
        seq: u64,
        marker: bool,
        keyframe: bool,
        payload: &[u8],
    ) -> Option<Complete> {
        let f = self.frames.entry(ts).or_insert_with(|| {
            self.order.push_back(ts);
            Partial {
                min_seq: seq,
                ..Partial::default()
            }
        });
        f.min_seq = f.min_seq.min(seq);
        f.n_packets += 1;
        f.keyframe |= keyframe;
        if marker {
            f.marker_seq = Some(seq);
        }
        if f.counter.is_none() {
            f.counter = rtp_h264_counter(payload);
        }
        let whole = match (f.counter, f.marker_seq) {
            (Some(_), Some(m)) => !f.done && m >= f.min_seq && f.n_packets == m - f.min_seq + 1,
            _ => false,
        };
        let out = if whole {
            f.done = true;
            f.counter.map(|counter| Complete {
                counter,
                keyframe: f.keyframe,
            })
        } else {
            None
        };
        while self.order.len() > MAX_PARTIAL {
            if let Some(old) = self.order.pop_front() {
                self.frames.remove(&old);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hallcast_ingest::flv::{VideoTag, parse_video};
    use hallcast_ingest::{TsDemux, TsEvent};

    const IDR: [u8; 22] = [
        0, 0, 0, 1, 0x09, 0xf0, 0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x1f, 0, 0, 0, 1, 0x68, 0xce, 0, 0,
    ];

    fn idr() -> Vec<u8> {
        let mut v = IDR.to_vec();
        v.extend_from_slice(&[0, 1, 0x65, 0x88, 0x84, 0x21]);
        v
    }

    #[test]
    fn the_sei_goes_before_the_first_slice_and_reads_back() {
        let au = with_sei(&idr(), 0x1234_abcd);
        let nals = annexb_nals(&au);
        let types: Vec<u8> = nals.iter().map(|n| nal_type(n)).collect();
        assert_eq!(types, vec![7, 8, 6, 5]);
        assert_eq!(parse_sei(nals[2]), Some(0x1234_abcd));
        assert_eq!(parse_sei(nals[3]), None);
        assert_eq!(parse_sei(&sei_nal(7)[..10]), None);
        let (sps, pps) = parameter_sets(&au).expect("both");
        assert_eq!((sps[0], pps[0]), (0x67, 0x68));
    }

    #[test]
    fn the_flv_tags_parse_as_the_rtmp_ingest_reads_them() {
        let au = with_sei(&idr(), 3);
        let (sps, pps) = parameter_sets(&au).expect("both");
        let header = flv_avc_sequence_header(&sps, &pps);
        let Ok(VideoTag::AvcSequenceHeader(record)) = parse_video(&header) else {
            panic!("not a sequence header");
        };
        let avc = hallcast_ingest::h264::AvcConfig::parse(record).expect("valid record");
        assert_eq!((avc.sps, avc.pps), (vec![sps], vec![pps]));
        let tag = flv_avc_nalus(&au, true);
        let Ok(VideoTag::AvcNalus {
            keyframe,
            cts,
            data,
        }) = parse_video(&tag)
        else {
            panic!("not NAL units");
        };
        assert!(keyframe);
        assert_eq!(cts, 0);
        let annexb = hallcast_ingest::h264::avcc_to_annexb(data, 4).expect("valid");
        assert_eq!(annexb, au);
    }

    #[test]
    fn the_ts_muxer_round_trips_through_the_srt_ingest_demuxer() {
        let mut mux = TsMux::default();
        let mut demux = TsDemux::new();
        // Frames of several sizes: one packet, exactly filling packets, several packets, and
        // one larger than a 16-bit PES length.
        let sizes = [10usize, 150, 151, 152, 1000, 70_000, 20];
        let mut sent = Vec::new();
        for (i, size) in sizes.iter().enumerate() {
            let mut au = if i == 0 {
                idr()
            } else {
                vec![0, 0, 0, 1, 0x41]
            };
            au.extend((0..*size).map(|k| (k % 200 + 1) as u8));
            let au = with_sei(&au, i as u32);
            let ts = mux.frame(90_000 + i as u64 * 3000, &au, i == 0);
            assert_eq!(ts.len() % TS_PACKET, 0);
            demux.push(&ts);
            sent.push(au);
        }
        let mut got = Vec::new();
        while let Some(e) = demux.poll() {
            if let TsEvent::Video { pts, data, .. } = e {
                got.push((pts, data));
            }
        }
        // The demuxer ends a PES when the next one starts: the last frame is still open.
        assert_eq!(got.len(), sizes.len() - 1);
        for (i, (pts, data)) in got.iter().enumerate() {
            assert_eq!(*pts, 90_000 + i as i64 * 3000);
            let counter = annexb_nals(data).into_iter().find_map(parse_sei);
            assert_eq!(counter, Some(i as u32));
            assert_eq!(
                annexb_nals(data)
                    .into_iter()
                    .filter(|n| nal_type(n) != NAL_AUD)
                    .collect::<Vec<_>>(),
                annexb_nals(&sent[i])
            );
        }
    }

    #[test]
    fn frames_are_whole_when_every_packet_from_the_sei_to_the_marker_arrived() {
        let sei = sei_nal(42);
        let mut stap = vec![24u8];
        for nal in [&[0x67u8, 1, 2][..], &[0x68, 3], &sei] {
            stap.extend_from_slice(&(nal.len() as u16).to_be_bytes());
            stap.extend_from_slice(nal);
        }
        assert_eq!(rtp_h264_counter(&stap), Some(42));
        assert_eq!(rtp_h264_counter(&sei), Some(42));
        assert_eq!(rtp_h264_counter(&[24, 0, 9, 1]), None);

        let mut a = FrameAssembler::default();
        // In order.
        assert_eq!(a.push(1000, 10, false, true, &stap), None);
        assert_eq!(a.push(1000, 11, false, false, &[0x7c, 0x85]), None);
        assert_eq!(
            a.push(1000, 12, true, false, &[0x7c, 0x45]),
            Some(Complete {
                counter: 42,
                keyframe: true
            })
        );
        // A gap: not whole until the missing packet arrives (a retransmission).
        let p = sei_nal(43);
        assert_eq!(a.push(4000, 13, false, false, &p), None);
        assert_eq!(a.push(4000, 15, true, false, &[0x41]), None);
        assert_eq!(
            a.push(4000, 14, false, false, &[0x7c, 0x05]),
            Some(Complete {
                counter: 43,
                keyframe: false
            })
        );
        // Reported once.
        assert_eq!(a.push(4000, 14, false, false, &[0x7c, 0x05]), None);
        // Without its SEI packet a frame is never whole.
        assert_eq!(a.push(7000, 17, true, false, &[0x41]), None);
    }

    #[test]
    fn the_psi_crc_is_mpeg2s() {
        // CRC-32/MPEG-2 check value.
        assert_eq!(crc32_mpeg(b"123456789"), 0x0376_e6e7);
    }
}
