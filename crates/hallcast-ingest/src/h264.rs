//! H.264 bitstream helpers (sans-IO): Annex B NAL units, AVCC (length-prefixed) to Annex B,
//! the AVCDecoderConfigurationRecord of an RTMP sequence header, and parameter sets put in
//! front of every IDR.

use crate::IngestError;

/// NAL unit types that matter here.
pub const NAL_IDR: u8 = 5;
pub const NAL_SPS: u8 = 7;
pub const NAL_PPS: u8 = 8;
/// An access unit delimiter.
pub const NAL_AUD: u8 = 9;

const START_CODE: [u8; 4] = [0, 0, 0, 1];

/// The NAL units of an Annex B buffer (without their start codes). Bytes before the first
/// start code are skipped; empty units are left out.
pub fn annexb_nals(buf: &[u8]) -> Vec<&[u8]> {
    let mut nals = Vec::new();
    let mut i = 0;
    let mut start: Option<usize> = None;
    while i + 3 <= buf.len() {
        if buf[i] == 0 && buf[i + 1] == 0 && buf[i + 2] == 1 {
            if let Some(s) = start {
                // A 4-byte start code's leading zero belongs to it, not to the previous unit.
                let mut end = i;
                while end > s && buf[end - 1] == 0 {
                    end -= 1;
                }
                if end > s {
                    nals.push(&buf[s..end]);
                }
            }
            i += 3;
            start = Some(i);
        } else {
            i += 1;
        }
    }
    if let Some(s) = start
        && s < buf.len()
    {
        nals.push(&buf[s..]);
    }
    nals
}

/// The type of a NAL unit (its first byte's low 5 bits).
pub fn nal_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |b| b & 0x1f)
}

/// AVCC NAL units (each behind a big-endian length of `length_size` bytes) to Annex B.
pub fn avcc_to_annexb(avcc: &[u8], length_size: usize) -> Result<Vec<u8>, IngestError> {
    if !(1..=4).contains(&length_size) {
        return Err(IngestError::Invalid(format!(
            "AVC NAL length size {length_size} (must be 1 to 4)"
        )));
    }
    let mut out = Vec::with_capacity(avcc.len() + 16);
    let mut rest = avcc;
    while !rest.is_empty() {
        if rest.len() < length_size {
            return Err(IngestError::Invalid("truncated AVC NAL length".into()));
        }
        let (len_bytes, tail) = rest.split_at(length_size);
        let len = len_bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        if len > tail.len() {
            return Err(IngestError::Invalid(format!(
                "AVC NAL unit of {len} bytes with only {} left",
                tail.len()
            )));
        }
        let (nal, tail) = tail.split_at(len);
        if !nal.is_empty() {
            out.extend_from_slice(&START_CODE);
            out.extend_from_slice(nal);
        }
        rest = tail;
    }
    Ok(out)
}

/// What an AVCDecoderConfigurationRecord (ISO 14496-15 5.2.4.1) says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvcConfig {
    /// `profile_idc`, `constraint flags`, `level_idc`.
    pub profile: [u8; 3],
    /// Bytes of each NAL unit's length prefix (1, 2 or 4).
    pub length_size: usize,
    pub sps: Vec<Vec<u8>>,
    pub pps: Vec<Vec<u8>>,
}

impl AvcConfig {
    /// Parses the record of an FLV/RTMP AVC sequence header.
    pub fn parse(buf: &[u8]) -> Result<Self, IngestError> {
        let bad = |what: &str| IngestError::Invalid(format!("AVC decoder configuration: {what}"));
        if buf.len() < 7 {
            return Err(bad("shorter than 7 bytes"));
        }
        if buf[0] != 1 {
            return Err(bad("version is not 1"));
        }
        let profile = [buf[1], buf[2], buf[3]];
        let length_size = usize::from(buf[4] & 0x03) + 1;
        let mut pos = 5;
        let read_sets = |count: usize, pos: &mut usize| -> Result<Vec<Vec<u8>>, IngestError> {
            let mut sets = Vec::with_capacity(count);
            for _ in 0..count {
                let len_bytes = buf.get(*pos..*pos + 2).ok_or_else(|| bad("truncated"))?;
                let len = usize::from(u16::from_be_bytes([len_bytes[0], len_bytes[1]]));
                let set = buf
                    .get(*pos + 2..*pos + 2 + len)
                    .ok_or_else(|| bad("truncated parameter set"))?;
                sets.push(set.to_vec());
                *pos += 2 + len;
            }
            Ok(sets)
        };
        let n_sps = usize::from(buf[pos] & 0x1f);
        pos += 1;
        let sps = read_sets(n_sps, &mut pos)?;
        let n_pps = usize::from(*buf.get(pos).ok_or_else(|| bad("no PPS count"))?);
        pos += 1;
        let pps = read_sets(n_pps, &mut pos)?;
        if sps.is_empty() || pps.is_empty() {
            return Err(bad("no SPS or no PPS"));
        }
        Ok(Self {
            profile,
            length_size,
            sps,
            pps,
        })
    }

    /// The SPS and PPS in Annex B, to put in front of a keyframe.
    pub fn parameter_sets_annexb(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for set in self.sps.iter().chain(&self.pps) {
            out.extend_from_slice(&START_CODE);
            out.extend_from_slice(set);
        }
        out
    }
}

/// Remembers the latest SPS/PPS of a stream and puts them in front of every IDR access unit
/// that lacks them, so that a receiver can start decoding at any keyframe.
#[derive(Debug, Clone, Default)]
pub struct ParameterSets {
    sps: Option<Vec<u8>>,
    pps: Option<Vec<u8>>,
}

/// One access unit after [`ParameterSets::complete`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessUnit {
    pub annexb: Vec<u8>,
    /// Holds an IDR slice.
    pub keyframe: bool,
}

impl ParameterSets {
    /// Records the SPS/PPS the access unit carries and returns it, with the remembered
    /// SPS/PPS in front if it holds an IDR without them. Access unit delimiters are dropped
    /// (WebRTC receivers do not need them).
    pub fn complete(&mut self, annexb: &[u8]) -> AccessUnit {
        let nals = annexb_nals(annexb);
        let mut has_sps = false;
        let mut has_pps = false;
        let mut keyframe = false;
        for nal in &nals {
            match nal_type(nal) {
                NAL_SPS => {
                    has_sps = true;
                    self.sps = Some(nal.to_vec());
                }
                NAL_PPS => {
                    has_pps = true;
                    self.pps = Some(nal.to_vec());
                }
                NAL_IDR => keyframe = true,
                _ => {}
            }
        }
        let mut out = Vec::with_capacity(annexb.len() + 64);
        if keyframe {
            if !has_sps && let Some(sps) = &self.sps {
                out.extend_from_slice(&START_CODE);
                out.extend_from_slice(sps);
            }
            if !has_pps && let Some(pps) = &self.pps {
                out.extend_from_slice(&START_CODE);
                out.extend_from_slice(pps);
            }
        }
        for nal in nals.iter().filter(|n| nal_type(n) != NAL_AUD) {
            out.extend_from_slice(&START_CODE);
            out.extend_from_slice(nal);
        }
        AccessUnit {
            annexb: out,
            keyframe,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annexb_units_are_split_on_3_and_4_byte_start_codes() {
        let buf = [
            0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 4, 5, 0,
        ];
        let nals = annexb_nals(&buf);
        assert_eq!(
            nals,
            vec![&[0x67, 1, 2][..], &[0x68, 3][..], &[0x65, 4, 5, 0][..]]
        );
        assert_eq!(nal_type(nals[2]), NAL_IDR);
        assert!(annexb_nals(&[1, 2, 3]).is_empty());
    }

    #[test]
    fn avcc_becomes_annexb_and_bad_lengths_are_errors() {
        let avcc = [0, 0, 0, 2, 0x65, 9, 0, 0, 0, 1, 0x41];
        assert_eq!(
            avcc_to_annexb(&avcc, 4).expect("valid"),
            vec![0, 0, 0, 1, 0x65, 9, 0, 0, 0, 1, 0x41]
        );
        assert_eq!(
            avcc_to_annexb(&[0, 2, 0x65, 9], 2).expect("valid"),
            vec![0, 0, 0, 1, 0x65, 9]
        );
        assert!(avcc_to_annexb(&[0, 0, 0, 9, 0x65], 4).is_err());
        assert!(avcc_to_annexb(&[0, 0], 4).is_err());
        assert!(avcc_to_annexb(&[0], 0).is_err());
    }

    /// The record ffmpeg's libx264 writes (High profile, 4-byte lengths, one SPS, one PPS).
    const RECORD: [u8; 19] = [
        1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 4, 0x67, 0x64, 0, 0x1f, 1, 0, 3, 0x68, 0xeb, 0xe3, 0,
    ];

    #[test]
    fn the_decoder_configuration_record_gives_the_parameter_sets() {
        let c = AvcConfig::parse(&RECORD[..18]).expect("valid record");
        assert_eq!(c.profile, [0x64, 0, 0x1f]);
        assert_eq!(c.length_size, 4);
        assert_eq!(c.sps, vec![vec![0x67, 0x64, 0, 0x1f]]);
        assert_eq!(c.pps, vec![vec![0x68, 0xeb, 0xe3]]);
        assert_eq!(
            c.parameter_sets_annexb(),
            vec![
                0, 0, 0, 1, 0x67, 0x64, 0, 0x1f, 0, 0, 0, 1, 0x68, 0xeb, 0xe3
            ]
        );
        for cut in 0..18 {
            assert!(AvcConfig::parse(&RECORD[..cut]).is_err(), "cut at {cut}");
        }
        let mut v2 = RECORD;
        v2[0] = 2;
        assert!(AvcConfig::parse(&v2).is_err());
    }

    #[test]
    fn parameter_sets_go_in_front_of_every_idr_that_lacks_them() {
        let mut ps = ParameterSets::default();
        let first = ps.complete(&[
            0, 0, 0, 1, 0x67, 1, 0, 0, 0, 1, 0x68, 2, 0, 0, 0, 1, 0x65, 3,
        ]);
        assert!(first.keyframe);
        assert_eq!(annexb_nals(&first.annexb).len(), 3);
        // A P frame is left alone, without its delimiter.
        let p = ps.complete(&[0, 0, 0, 1, 0x09, 0xf0, 0, 0, 0, 1, 0x41, 4]);
        assert!(!p.keyframe);
        assert_eq!(p.annexb, vec![0, 0, 0, 1, 0x41, 4]);
        // A bare IDR gets the remembered SPS and PPS.
        let idr = ps.complete(&[0, 0, 1, 0x65, 5]);
        assert!(idr.keyframe);
        assert_eq!(
            idr.annexb,
            vec![
                0, 0, 0, 1, 0x67, 1, 0, 0, 0, 1, 0x68, 2, 0, 0, 0, 1, 0x65, 5
            ]
        );
    }
}
