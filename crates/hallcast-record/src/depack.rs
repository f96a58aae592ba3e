//! RTP depacketizers: H.264 (RFC 6184, packetization-mode 1: single NAL units, STAP-A,
//! FU-A) into access units in the length-prefixed (AVCC) form Matroska and MP4 store, with
//! the last SPS and PPS kept for the codec private data; VP8 (RFC 7741) into frames.
//!
//! Both take packets in arrival order. A gap in the sequence numbers (a packet lost, or
//! dropped on the way to the recorder) drops the frame it hit and every frame after it up
//! to the next keyframe, so what is written always decodes; [`Depacketizer::n_dropped`]
//! counts the frames left out. Bad payloads are errors, never panics.

use hallcast_core::Codec;

/// One video frame (access unit) ready to be muxed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// H.264: NAL units each preceded by its 4-byte big-endian length; VP8: the frame.
    pub data: Vec<u8>,
    pub rtp_ts: u32,
    pub keyframe: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DepackError {
    #[error("empty RTP payload")]
    Empty,
    #[error("truncated {0}")]
    Truncated(&'static str),
    #[error("unsupported H.264 NAL unit type {0} (packetization-mode 1 carries 1-23, 24, 28)")]
    UnsupportedNal(u8),
}

/// A depacketizer of one video codec.
#[derive(Debug)]
pub struct Depacketizer {
    codec: Codec,
    /// The frame being assembled.
    buf: Vec<u8>,
    ts: Option<u32>,
    keyframe: bool,
    /// The frame being assembled lost a packet.
    broken: bool,
    /// Frames are dropped until the next keyframe (at the start and after a loss).
    need_keyframe: bool,
    last_seq: Option<u64>,
    /// An H.264 fragmented NAL unit (FU-A) being reassembled.
    fu: Option<Vec<u8>>,
    sps: Option<Vec<u8>>,
    pps: Option<Vec<u8>>,
    n_dropped: u64,
}

impl Depacketizer {
    pub fn new(codec: Codec) -> Depacketizer {
        Depacketizer {
            codec,
            buf: Vec::new(),
            ts: None,
            keyframe: false,
            broken: false,
            need_keyframe: true,
            last_seq: None,
            fu: None,
            sps: None,
            pps: None,
            n_dropped: 0,
        }
    }

    /// Frames left out: incomplete, or between a loss and the next keyframe.
    pub fn n_dropped(&self) -> u64 {
        self.n_dropped
    }

    /// The last H.264 sequence and picture parameter sets seen (NAL units without a length).
    pub fn parameter_sets(&self) -> Option<(&[u8], &[u8])> {
        Some((self.sps.as_deref()?, self.pps.as_deref()?))
    }

    /// One RTP packet (`seq`: extended sequence number). Completed frames go to `out`.
    pub fn push(
        &mut self,
        seq: u64,
        ts: u32,
        marker: bool,
        payload: &[u8],
        out: &mut Vec<Frame>,
    ) -> Result<(), DepackError> {
        if let Some(last) = self.last_seq {
            if seq <= last {
                // A duplicate or a late repair: its frame was already judged.
                return Ok(());
            }
            if seq != last + 1 {
                self.broken = true;
                self.fu = None;
            }
        }
        self.last_seq = Some(seq);
        if payload.is_empty() {
            // Padding (bandwidth probing): it takes a sequence number, carries no media.
            return Ok(());
        }
        if self.ts.is_some_and(|t| t != ts) {
            // The previous frame ended without its marker packet.
            self.broken = true;
            self.finish(out);
        }
        self.ts = Some(ts);
        let r = match self.codec {
            Codec::H264 => self.push_h264(payload),
            Codec::Vp8 => self.push_vp8(payload),
            Codec::Opus => Ok(()),
        };
        if r.is_err() {
            self.broken = true;
        }
        if marker {
            self.finish(out);
        }
        r
    }

    fn finish(&mut self, out: &mut Vec<Frame>) {
        let Some(ts) = self.ts.take() else { return };
        let data = std::mem::take(&mut self.buf);
        let keyframe = std::mem::replace(&mut self.keyframe, false);
        let broken = std::mem::replace(&mut self.broken, false);
        self.fu = None;
        if broken {
            self.need_keyframe = true;
        }
        if broken || data.is_empty() || (self.need_keyframe && !keyframe) {
            self.n_dropped += 1;
            return;
        }
        self.need_keyframe = false;
        out.push(Frame {
            data,
            rtp_ts: ts,
            keyframe,
        });
    }

    fn push_h264(&mut self, p: &[u8]) -> Result<(), DepackError> {
        let Some(&first) = p.first() else {
            return Err(DepackError::Empty);
        };
        match first & 0x1f {
            1..=23 => self.nal(p),
            24 => {
                // STAP-A: [2-byte size][NAL]...
                let mut rest = &p[1..];
                while !rest.is_empty() {
                    if rest.len() < 2 {
                        return Err(DepackError::Truncated("STAP-A size"));
                    }
                    let n = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
                    let nal = rest
                        .get(2..2 + n)
                        .ok_or(DepackError::Truncated("STAP-A unit"))?;
                    if n > 0 {
                        self.nal(nal);
                    }
                    rest = &rest[2 + n..];
                }
            }
            28 => {
                let Some(&fu_header) = p.get(1) else {
                    return Err(DepackError::Truncated("FU-A header"));
                };
                let start = fu_header & 0x80 != 0;
                let end = fu_header & 0x40 != 0;
                if start {
                    let mut nal = Vec::with_capacity(p.len() * 4);
                    nal.push((first & 0xe0) | (fu_header & 0x1f));
                    nal.extend_from_slice(&p[2..]);
                    self.fu = Some(nal);
                } else if let Some(nal) = self.fu.as_mut() {
                    nal.extend_from_slice(&p[2..]);
                } else {
                    // A fragment whose start was lost.
                    self.broken = true;
                    return Ok(());
                }
                if end && let Some(nal) = self.fu.take() {
                    self.nal(&nal);
                }
            }
            t => return Err(DepackError::UnsupportedNal(t)),
        }
        Ok(())
    }

    fn nal(&mut self, nal: &[u8]) {
        match nal[0] & 0x1f {
            5 => self.keyframe = true,
            7 => self.sps = Some(nal.to_vec()),
            8 => self.pps = Some(nal.to_vec()),
            _ => {}
        }
        self.buf
            .extend_from_slice(&(nal.len() as u32).to_be_bytes());
        self.buf.extend_from_slice(nal);
    }

    fn push_vp8(&mut self, p: &[u8]) -> Result<(), DepackError> {
        let Some(&b0) = p.first() else {
            return Err(DepackError::Empty);
        };
        let mut i = 1;
        if b0 & 0x80 != 0 {
            let x = *p.get(1).ok_or(DepackError::Truncated("VP8 descriptor"))?;
            i = 2;
            if x & 0x80 != 0 {
                let pid = *p.get(i).ok_or(DepackError::Truncated("VP8 picture id"))?;
                i += if pid & 0x80 != 0 { 2 } else { 1 };
            }
            if x & 0x40 != 0 {
                i += 1;
            }
            if x & 0x30 != 0 {
                i += 1;
            }
        }
        let body = p.get(i..).ok_or(DepackError::Truncated("VP8 payload"))?;
        let start = b0 & 0x10 != 0 && b0 & 0x07 == 0;
        if start {
            if !self.buf.is_empty() {
                // A new frame's start inside this one: its end was lost.
                self.broken = true;
                self.buf.clear();
            }
            // The inverse key frame flag: bit 0 of the frame tag.
            self.keyframe = body.first().is_some_and(|b| b & 0x01 == 0);
        } else if self.buf.is_empty() {
            // A continuation whose start was lost.
            self.broken = true;
            return Ok(());
        }
        self.buf.extend_from_slice(body);
        Ok(())
    }
}

/// The width and height a VP8 key frame declares (RFC 6386 9.1), if `frame` is one.
pub fn vp8_dimensions(frame: &[u8]) -> Option<(u32, u32)> {
    if frame.len() < 10 || frame[0] & 0x01 != 0 || frame[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let w = u32::from(u16::from_le_bytes([frame[6], frame[7]]) & 0x3fff);
    let h = u32::from(u16::from_le_bytes([frame[8], frame[9]]) & 0x3fff);
    Some((w, h))
}

/// The AVCDecoderConfigurationRecord (ISO/IEC 14496-15) of one SPS and one PPS: Matroska's
/// `CodecPrivate` for `V_MPEG4/ISO/AVC`, with 4-byte NAL lengths.
pub fn avc_config(sps: &[u8], pps: &[u8]) -> Option<Vec<u8>> {
    if sps.len() < 4 || sps.len() > usize::from(u16::MAX) || pps.len() > usize::from(u16::MAX) {
        return None;
    }
    let mut v = vec![1, sps[1], sps[2], sps[3], 0xff, 0xe1];
    v.extend_from_slice(&(sps.len() as u16).to_be_bytes());
    v.extend_from_slice(sps);
    v.push(1);
    v.extend_from_slice(&(pps.len() as u16).to_be_bytes());
    v.extend_from_slice(pps);
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h264() -> Depacketizer {
        Depacketizer::new(Codec::H264)
    }

    const SPS: &[u8] = &[0x67, 0x42, 0xc0, 0x1f, 0xaa];
    const PPS: &[u8] = &[0x68, 0xce, 0x3c, 0x80];

    fn stap(nals: &[&[u8]]) -> Vec<u8> {
        let mut v = vec![24];
        for n in nals {
            v.extend_from_slice(&(n.len() as u16).to_be_bytes());
            v.extend_from_slice(n);
        }
        v
    }

    fn avcc(nals: &[&[u8]]) -> Vec<u8> {
        let mut v = vec![];
        for n in nals {
            v.extend_from_slice(&(n.len() as u32).to_be_bytes());
            v.extend_from_slice(n);
        }
        v
    }

    #[test]
    fn h264_stap_a_and_fu_a_make_one_access_unit() {
        let mut d = h264();
        let mut out = vec![];
        let idr = [0x65u8, 1, 2, 3, 4, 5, 6];
        d.push(1, 9000, false, &stap(&[SPS, PPS]), &mut out)
            .unwrap();
        // FU-A of the IDR in three fragments.
        d.push(2, 9000, false, &[0x7c, 0x85, 1, 2], &mut out)
            .unwrap();
        d.push(3, 9000, false, &[0x7c, 0x05, 3, 4], &mut out)
            .unwrap();
        d.push(4, 9000, true, &[0x7c, 0x45, 5, 6], &mut out)
            .unwrap();
        assert_eq!(
            out,
            vec![Frame {
                data: avcc(&[SPS, PPS, &idr]),
                rtp_ts: 9000,
                keyframe: true
            }]
        );
        assert_eq!(d.parameter_sets(), Some((SPS, PPS)));
        // A single-NAL P frame follows.
        d.push(5, 12000, true, &[0x41, 9, 9], &mut out).unwrap();
        assert_eq!(out[1].data, avcc(&[&[0x41, 9, 9]]));
        assert!(!out[1].keyframe);
        let cfg = avc_config(SPS, PPS).unwrap();
        assert_eq!(&cfg[..6], &[1, 0x42, 0xc0, 0x1f, 0xff, 0xe1]);
        assert_eq!(cfg.len(), 6 + 2 + SPS.len() + 1 + 2 + PPS.len());
    }

    #[test]
    fn a_loss_drops_frames_until_the_next_keyframe() {
        let mut d = h264();
        let mut out = vec![];
        // Frames before the first keyframe are not written.
        d.push(1, 0, true, &[0x41, 1], &mut out).unwrap();
        assert!(out.is_empty());
        d.push(2, 3000, true, &[0x65, 1], &mut out).unwrap();
        assert_eq!(out.len(), 1);
        // Sequence 3 (the start of a frame) is lost: that frame and the next P frame go.
        d.push(4, 6000, true, &[0x7c, 0x41, 7], &mut out).unwrap();
        d.push(5, 9000, true, &[0x41, 2], &mut out).unwrap();
        assert_eq!(out.len(), 1);
        // The next keyframe resumes.
        d.push(6, 12000, true, &[0x65, 3], &mut out).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(d.n_dropped(), 3);
        // Duplicates and late repairs are ignored.
        d.push(6, 12000, true, &[0x65, 3], &mut out).unwrap();
        d.push(3, 6000, false, &[0x7c, 0x81, 7], &mut out).unwrap();
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn padding_between_frames_costs_nothing() {
        let mut d = h264();
        let mut out = vec![];
        d.push(1, 0, true, &[0x65, 1], &mut out).unwrap();
        // Padding-only packets (no payload) with the last frame's timestamp.
        d.push(2, 0, false, &[], &mut out).unwrap();
        d.push(3, 0, false, &[], &mut out).unwrap();
        d.push(4, 3000, true, &[0x41, 2], &mut out).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(d.n_dropped(), 0);
    }

    #[test]
    fn a_missing_marker_ends_the_frame_at_the_next_timestamp() {
        let mut d = h264();
        let mut out = vec![];
        d.push(1, 0, false, &[0x65, 1], &mut out).unwrap();
        d.push(2, 3000, true, &[0x65, 2], &mut out).unwrap();
        // The first frame cannot be known complete: dropped, the second is a keyframe.
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].rtp_ts, 3000);
    }

    #[test]
    fn bad_h264_payloads_are_errors() {
        let mut d = h264();
        let mut out = vec![];
        // An empty payload is padding: no error, no frame.
        assert_eq!(d.push(1, 0, true, &[], &mut out), Ok(()));
        assert_eq!(
            d.push(2, 0, true, &[24, 0, 9, 1], &mut out),
            Err(DepackError::Truncated("STAP-A unit"))
        );
        assert_eq!(
            d.push(3, 0, true, &[28], &mut out),
            Err(DepackError::Truncated("FU-A header"))
        );
        assert_eq!(
            d.push(4, 0, true, &[29, 0], &mut out),
            Err(DepackError::UnsupportedNal(29))
        );
        assert!(out.is_empty());
    }

    fn vp8_key(w: u16, h: u16) -> Vec<u8> {
        let mut f = vec![0x50, 0x02, 0x00, 0x9d, 0x01, 0x2a];
        f.extend_from_slice(&w.to_le_bytes());
        f.extend_from_slice(&h.to_le_bytes());
        f.extend_from_slice(&[1, 2, 3]);
        f
    }

    #[test]
    fn vp8_frames_across_packets_with_extended_descriptors() {
        let mut d = Depacketizer::new(Codec::Vp8);
        let mut out = vec![];
        let key = vp8_key(640, 360);
        // X=1, S=1, PID=0; I=1 with a 15-bit picture id; then the first half of the frame.
        let mut p1 = vec![0x90, 0x80, 0x80, 0x01];
        p1.extend_from_slice(&key[..5]);
        let mut p2 = vec![0x80, 0x80, 0x80, 0x01];
        p2.extend_from_slice(&key[5..]);
        d.push(10, 90, false, &p1, &mut out).unwrap();
        d.push(11, 90, true, &p2, &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert!(out[0].keyframe);
        assert_eq!(out[0].data, key);
        assert_eq!(vp8_dimensions(&out[0].data), Some((640, 360)));
        // An inter frame (tag bit 0 set), short descriptor.
        d.push(12, 3090, true, &[0x10, 0x01, 0, 0], &mut out)
            .unwrap();
        assert_eq!(out.len(), 2);
        assert!(!out[1].keyframe);
        assert_eq!(vp8_dimensions(&out[1].data), None);
        assert_eq!(
            d.push(13, 6090, true, &[0x90], &mut out),
            Err(DepackError::Truncated("VP8 descriptor"))
        );
    }
}
