//! ADTS (the framing of AAC in MPEG-TS, ISO 13818-7 6.2): the header parsed into the
//! AudioSpecificConfig a decoder wants and the raw frame after it (sans-IO).

use crate::IngestError;

/// One ADTS frame of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdtsFrame<'a> {
    /// The 2-byte AudioSpecificConfig equivalent to the header (object type, rate, channels).
    pub asc: [u8; 2],
    /// The raw AAC frame (no header, no CRC).
    pub frame: &'a [u8],
    /// Bytes of the buffer this ADTS frame took (header + frame): where the next one starts.
    pub len: usize,
}

/// Parses the ADTS frame at the start of `buf` (MPEG-TS PES payloads hold one or several back
/// to back: call again on `&buf[frame.len..]`).
pub fn parse(buf: &[u8]) -> Result<AdtsFrame<'_>, IngestError> {
    let bad = |what: &str| IngestError::Invalid(format!("ADTS: {what}"));
    if buf.len() < 7 {
        return Err(bad("shorter than a header"));
    }
    if buf[0] != 0xff || buf[1] & 0xf0 != 0xf0 {
        return Err(bad("no syncword"));
    }
    let protection_absent = buf[1] & 0x01 == 1;
    let profile = (buf[2] >> 6) & 0x03; // object type - 1
    let freq_index = (buf[2] >> 2) & 0x0f;
    let channel_config = ((buf[2] & 0x01) << 2) | (buf[3] >> 6);
    let frame_len =
        (usize::from(buf[3] & 0x03) << 11) | (usize::from(buf[4]) << 3) | usize::from(buf[5] >> 5);
    let n_raw_blocks = buf[6] & 0x03;
    let header_len = if protection_absent { 7 } else { 9 };
    if freq_index > 12 {
        return Err(bad("reserved sampling frequency index"));
    }
    if n_raw_blocks != 0 {
        return Err(bad("several raw data blocks in one frame (unsupported)"));
    }
    if frame_len < header_len || frame_len > buf.len() {
        return Err(bad("frame length beyond the buffer"));
    }
    let object_type = profile + 1;
    let asc = [
        (object_type << 3) | (freq_index >> 1),
        ((freq_index & 1) << 7) | (channel_config << 3),
    ];
    Ok(AdtsFrame {
        asc,
        frame: &buf[header_len..frame_len],
        len: frame_len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ADTS header as ffmpeg writes it: AAC-LC, 44.1 kHz, stereo, no CRC, `len` in total.
    fn header(len: usize) -> [u8; 7] {
        [
            0xff,
            0xf1,
            0x50,
            0x80 | ((len >> 11) as u8 & 0x03),
            (len >> 3) as u8,
            (((len & 7) as u8) << 5) | 0x1f,
            0xfc,
        ]
    }

    #[test]
    fn the_header_gives_the_audio_specific_config_and_the_frame() {
        let mut buf = header(10).to_vec();
        buf.extend_from_slice(&[1, 2, 3]);
        buf.extend_from_slice(&header(8));
        buf.push(9);
        let a = parse(&buf).expect("first frame");
        // AAC-LC (2), 44.1 kHz (index 4), 2 channels: 0x12 0x10, what ffmpeg's FLV muxer sends.
        assert_eq!(a.asc, [0x12, 0x10]);
        assert_eq!(a.frame, &[1, 2, 3]);
        assert_eq!(a.len, 10);
        let b = parse(&buf[a.len..]).expect("second frame");
        assert_eq!(b.frame, &[9]);
    }

    #[test]
    fn bad_headers_are_errors() {
        assert!(parse(&[0xff, 0xf1, 0x50]).is_err());
        assert!(parse(&[0, 0, 0, 0, 0, 0, 0, 0]).is_err());
        // Longer than the buffer.
        assert!(parse(&header(100)).is_err());
        // Shorter than its own header.
        assert!(parse(&header(3)).is_err());
    }
}
