//! Keyframe detection on RTP payloads, codec by codec.
//!
//! Only the first packet of a keyframe needs to be recognised: the GOP cache and the
//! layer switcher both start at that packet.

/// H.264 (RFC 6184, packetization-mode 1): a single NAL unit, a STAP-A aggregate or
/// the first fragment of an FU-A that carries an IDR slice (5) or an SPS (7). Encoders
/// send SPS/PPS right before an IDR, so an SPS marks the start of the keyframe.
pub fn h264_starts_keyframe(payload: &[u8]) -> bool {
    let Some(&first) = payload.first() else {
        return false;
    };
    match first & 0x1f {
        5 | 7 => true,
        // STAP-A: 1 byte header, then (u16 size, NAL)*
        24 => {
            let mut rest = &payload[1..];
            while rest.len() > 2 {
                let size = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
                let Some(nal) = rest.get(2..2 + size) else {
                    return false;
                };
                if let Some(&h) = nal.first()
                    && matches!(h & 0x1f, 5 | 7)
                {
                    return true;
                }
                rest = &rest[2 + size..];
            }
            false
        }
        // FU-A: start bit set and the fragmented NAL is an IDR.
        28 => payload
            .get(1)
            .is_some_and(|&fu| fu & 0x80 != 0 && matches!(fu & 0x1f, 5 | 7)),
        _ => false,
    }
}

/// VP8 (RFC 7741): the payload descriptor, then for the first packet of a frame
/// (S=1, PID=0) the VP8 payload header whose P bit is 0 on a key frame.
pub fn vp8_starts_keyframe(payload: &[u8]) -> bool {
    let Some(&b0) = payload.first() else {
        return false;
    };
    let x = b0 & 0x80 != 0;
    let s = b0 & 0x10 != 0;
    let pid = b0 & 0x07;
    if !s || pid != 0 {
        return false;
    }
    let mut i = 1;
    if x {
        let Some(&ext) = payload.get(i) else {
            return false;
        };
        i += 1;
        let (has_i, has_l, has_t, has_k) = (
            ext & 0x80 != 0,
            ext & 0x40 != 0,
            ext & 0x20 != 0,
            ext & 0x10 != 0,
        );
        if has_i {
            let Some(&pic) = payload.get(i) else {
                return false;
            };
            i += if pic & 0x80 != 0 { 2 } else { 1 };
        }
        if has_l {
            i += 1;
        }
        if has_t || has_k {
            i += 1;
        }
    }
    payload.get(i).is_some_and(|&h| h & 0x01 == 0)
}

/// The picture-numbering fields of a VP8 payload descriptor (RFC 7741 §4.2), present or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Vp8Ids {
    /// PictureID, and whether it is the 15-bit form (M=1) or the 7-bit one.
    pub picture_id: Option<(u16, bool)>,
    pub tl0_pic_idx: Option<u8>,
    pub key_idx: Option<u8>,
}

/// Reads a VP8 payload descriptor's PictureID, TL0PICIDX and KEYIDX (`None`: too short,
/// or no extension).
pub fn vp8_ids(payload: &[u8]) -> Option<Vp8Ids> {
    let b0 = *payload.first()?;
    if b0 & 0x80 == 0 {
        return None;
    }
    let ext = *payload.get(1)?;
    let mut i = 2;
    let mut ids = Vp8Ids::default();
    if ext & 0x80 != 0 {
        let pic = *payload.get(i)?;
        if pic & 0x80 != 0 {
            let lo = *payload.get(i + 1)?;
            ids.picture_id = Some(((u16::from(pic & 0x7f) << 8) | u16::from(lo), true));
            i += 2;
        } else {
            ids.picture_id = Some((u16::from(pic), false));
            i += 1;
        }
    }
    if ext & 0x40 != 0 {
        ids.tl0_pic_idx = Some(*payload.get(i)?);
        i += 1;
    }
    if ext & 0x10 != 0 {
        ids.key_idx = Some(*payload.get(i)? & 0x1f);
    }
    Some(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn h264_single_nal_types() {
        assert!(h264_starts_keyframe(&[0x65, 1, 2])); // IDR
        assert!(h264_starts_keyframe(&[0x67, 1, 2])); // SPS
        assert!(!h264_starts_keyframe(&[0x41, 1, 2])); // non-IDR slice
        assert!(!h264_starts_keyframe(&[]));
    }

    #[test]
    fn h264_stap_a_with_sps() {
        // STAP-A [SPS(3 bytes), PPS(2 bytes)]
        let p = [0x78, 0, 3, 0x67, 1, 2, 0, 2, 0x68, 9];
        assert!(h264_starts_keyframe(&p));
        let p = [0x78, 0, 2, 0x06, 1, 0, 2, 0x41, 9]; // SEI + P slice
        assert!(!h264_starts_keyframe(&p));
        let truncated = [0x78, 0, 9, 0x67];
        assert!(!h264_starts_keyframe(&truncated));
    }

    #[test]
    fn h264_fu_a() {
        assert!(h264_starts_keyframe(&[0x7c, 0x85, 0])); // start, IDR
        assert!(!h264_starts_keyframe(&[0x7c, 0x05, 0])); // middle fragment
        assert!(!h264_starts_keyframe(&[0x7c, 0x81, 0])); // start, P slice
    }

    #[test]
    fn vp8_descriptor_variants() {
        // S=1, PID=0, no extension, payload header P=0 -> key frame
        assert!(vp8_starts_keyframe(&[0x10, 0x00]));
        assert!(!vp8_starts_keyframe(&[0x10, 0x01])); // inter frame
        assert!(!vp8_starts_keyframe(&[0x00, 0x00])); // not a frame start
        // X=1, I=1 with 15-bit picture id, then header
        assert!(vp8_starts_keyframe(&[0x90, 0x80, 0x81, 0x23, 0x00]));
        assert!(!vp8_starts_keyframe(&[0x90, 0x80, 0x81, 0x23, 0x01]));
        // X=1, I, L, T present
        assert!(vp8_starts_keyframe(&[0x90, 0xe0, 0x05, 0x00, 0x00, 0x9c]));
        assert!(!vp8_starts_keyframe(&[0x90, 0xe0, 0x05]));
    }

    #[test]
    fn vp8_ids_of_each_descriptor_shape() {
        // X=1, I L T K, 15-bit PictureID 0x1234, TL0PICIDX 7, TID 2 / KEYIDX 5.
        let p = [0x90, 0xf0, 0x80 | 0x12, 0x34, 7, 0x80 | 5, 0x9d];
        assert_eq!(
            vp8_ids(&p),
            Some(Vp8Ids {
                picture_id: Some((0x1234, true)),
                tl0_pic_idx: Some(7),
                key_idx: Some(5),
            })
        );
        // 7-bit PictureID only.
        let p = [0x90, 0x80, 0x45, 0x9d];
        assert_eq!(vp8_ids(&p).unwrap().picture_id, Some((0x45, false)));
        // No extension, or truncated.
        assert_eq!(vp8_ids(&[0x10, 0x9d]), None);
        assert_eq!(vp8_ids(&[0x90, 0xc0, 0x81]), None);
    }
}
