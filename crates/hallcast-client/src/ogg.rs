//! Ogg/Opus demuxing (RFC 3533, RFC 7845) and Opus packet framing checks (RFC 6716 §3).
//!
//! Only what the built-in tone needs: one logical stream, pages checked by CRC, packets joined
//! across segments and pages, the two header packets checked and skipped.

use bytes::Bytes;

/// The built-in tone: exactly 1 s of 440 Hz, mono Opus, 50 packets of 20 ms
/// (made by `scripts/make-assets.sh`).
pub static TONE_OGG: &[u8] = include_bytes!("../../../assets/tone-440hz.ogg");

/// Samples per second of every Opus stream's RTP clock and of Opus durations.
pub const OPUS_CLOCK_RATE: u32 = 48_000;

/// Why an Ogg/Opus stream was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OggError {
    #[error("truncated Ogg page at byte {0}")]
    Truncated(usize),
    #[error("no Ogg capture pattern at byte {0}")]
    NoCapture(usize),
    #[error("unsupported Ogg version {0}")]
    Version(u8),
    #[error("Ogg page CRC mismatch at byte {0}")]
    Crc(usize),
    #[error("more than one logical stream (serials {0:#x} and {1:#x})")]
    Multiplexed(u32, u32),
    #[error("stream ends inside a packet")]
    UnfinishedPacket,
    #[error("first packet is not an OpusHead")]
    NoOpusHead,
    #[error("second packet is not an OpusTags")]
    NoOpusTags,
    #[error("Opus packet {index}: {reason}")]
    BadPacket { index: usize, reason: &'static str },
}

/// The audio packets of an Ogg/Opus stream, headers checked and skipped.
pub fn opus_packets(ogg: &[u8]) -> Result<Vec<Bytes>, OggError> {
    let mut packets = ogg_packets(ogg)?.into_iter();
    let head = packets.next().ok_or(OggError::NoOpusHead)?;
    // "OpusHead", version 1 (upper nibble 0 = compatible), channel count >= 1.
    if head.len() < 19 || !head.starts_with(b"OpusHead") || head[8] >> 4 != 0 || head[9] == 0 {
        return Err(OggError::NoOpusHead);
    }
    let tags = packets.next().ok_or(OggError::NoOpusTags)?;
    if !tags.starts_with(b"OpusTags") {
        return Err(OggError::NoOpusTags);
    }
    let audio: Vec<Bytes> = packets.collect();
    for (index, p) in audio.iter().enumerate() {
        opus_packet_samples(p).map_err(|reason| OggError::BadPacket { index, reason })?;
    }
    Ok(audio)
}

/// Splits an Ogg byte stream of one logical stream into its packets.
pub fn ogg_packets(ogg: &[u8]) -> Result<Vec<Bytes>, OggError> {
    let mut packets = Vec::new();
    let mut partial: Vec<u8> = Vec::new();
    let mut serial = None;
    let mut pos = 0;
    while pos < ogg.len() {
        let header = ogg.get(pos..pos + 27).ok_or(OggError::Truncated(pos))?;
        if &header[..4] != b"OggS" {
            return Err(OggError::NoCapture(pos));
        }
        if header[4] != 0 {
            return Err(OggError::Version(header[4]));
        }
        let page_serial = u32::from_le_bytes([header[14], header[15], header[16], header[17]]);
        match serial {
            None => serial = Some(page_serial),
            Some(s) if s != page_serial => return Err(OggError::Multiplexed(s, page_serial)),
            Some(_) => {}
        }
        let stored_crc = u32::from_le_bytes([header[22], header[23], header[24], header[25]]);
        let n_segments = usize::from(header[26]);
        let lacing = ogg
            .get(pos + 27..pos + 27 + n_segments)
            .ok_or(OggError::Truncated(pos))?;
        let body_len: usize = lacing.iter().map(|l| usize::from(*l)).sum();
        let page_end = pos + 27 + n_segments + body_len;
        let page = ogg.get(pos..page_end).ok_or(OggError::Truncated(pos))?;
        if ogg_crc(page) != stored_crc {
            return Err(OggError::Crc(pos));
        }

        let mut at = pos + 27 + n_segments;
        for &len in lacing {
            let len = usize::from(len);
            partial.extend_from_slice(&ogg[at..at + len]);
            at += len;
            if len < 255 {
                packets.push(Bytes::from(std::mem::take(&mut partial)));
            }
        }
        pos = page_end;
    }
    if !partial.is_empty() {
        return Err(OggError::UnfinishedPacket);
    }
    Ok(packets)
}

/// Ogg's CRC-32 (polynomial 0x04C11DB7, not reflected, zero init) over a page whose CRC field
/// is taken as zero.
fn ogg_crc(page: &[u8]) -> u32 {
    let mut crc: u32 = 0;
    for (i, &byte) in page.iter().enumerate() {
        let b = if (22..26).contains(&i) { 0 } else { byte };
        crc ^= u32::from(b) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04C1_1DB7
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The duration of an Opus packet in 48 kHz samples, after checking that its TOC byte and
/// framing are well formed (RFC 6716 §3.1–3.2, rules R1–R7 as far as lengths go).
pub fn opus_packet_samples(packet: &[u8]) -> Result<u32, &'static str> {
    let (&toc, rest) = packet.split_first().ok_or("empty packet")?;
    let config = toc >> 3;
    let frame = match config {
        0..=11 => [480, 960, 1920, 2880][usize::from(config % 4)],
        12..=15 => [480, 960][usize::from(config % 2)],
        _ => [120, 240, 480, 960][usize::from(config % 4)],
    };
    let n_frames = match toc & 0b11 {
        0 => {
            if rest.len() > 1275 {
                return Err("frame longer than 1275 bytes");
            }
            1
        }
        1 => {
            if rest.len() % 2 != 0 {
                return Err("code 1 packet with an odd payload length");
            }
            2
        }
        2 => {
            let (first_len, used) = frame_length(rest).ok_or("code 2 packet without a length")?;
            if used + first_len > rest.len() {
                return Err("code 2 first frame overruns the packet");
            }
            2
        }
        _ => {
            let (&count, _) = rest.split_first().ok_or("code 3 packet without a count")?;
            let m = u32::from(count & 0x3f);
            if m == 0 {
                return Err("code 3 packet with zero frames");
            }
            m
        }
    };
    let total = frame * n_frames;
    if total > 5760 {
        return Err("packet longer than 120 ms");
    }
    Ok(total)
}

/// An Opus frame length (1 or 2 bytes): `(length, bytes used)`.
fn frame_length(b: &[u8]) -> Option<(usize, usize)> {
    match *b.first()? {
        l @ 0..=251 => Some((usize::from(l), 1)),
        l => Some((usize::from(*b.get(1)?) * 4 + usize::from(l), 2)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tone_is_fifty_twenty_ms_packets() {
        let packets = opus_packets(TONE_OGG).expect("the built-in tone parses");
        assert_eq!(packets.len(), 50);
        for p in &packets {
            assert_eq!(opus_packet_samples(p), Ok(960));
            // Mono, one frame per packet.
            assert_eq!(p[0] & 0b111, 0, "toc {:#04x}", p[0]);
        }
        let total: u32 = packets
            .iter()
            .map(|p| opus_packet_samples(p).unwrap_or(0))
            .sum();
        assert_eq!(total, OPUS_CLOCK_RATE);
    }

    #[test]
    fn corruption_is_detected() {
        let mut bad = TONE_OGG.to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 0x55;
        assert!(matches!(opus_packets(&bad), Err(OggError::Crc(_))));
        assert!(matches!(
            opus_packets(&TONE_OGG[..TONE_OGG.len() - 3]),
            Err(OggError::Truncated(_))
        ));
        assert!(matches!(
            opus_packets(b"RIFF0000000000000000000000000"),
            Err(OggError::NoCapture(0))
        ));
    }

    #[test]
    fn toc_rules() {
        // config 31 (CELT FB 20 ms), code 0.
        assert_eq!(opus_packet_samples(&[31 << 3, 1, 2]), Ok(960));
        // code 1 needs an even payload.
        assert!(opus_packet_samples(&[(31 << 3) | 1, 1, 2, 3]).is_err());
        assert_eq!(opus_packet_samples(&[(31 << 3) | 1, 1, 2]), Ok(1920));
        // code 2 with a first frame that overruns.
        assert!(opus_packet_samples(&[(31 << 3) | 2, 5, 1]).is_err());
        // code 3: 6 x 20 ms is the 120 ms limit; 7 is over.
        assert_eq!(opus_packet_samples(&[(31 << 3) | 3, 6]), Ok(5760));
        assert!(opus_packet_samples(&[(31 << 3) | 3, 7]).is_err());
        assert!(opus_packet_samples(&[(31 << 3) | 3, 0]).is_err());
        assert!(opus_packet_samples(&[]).is_err());
        // SILK 60 ms.
        assert_eq!(opus_packet_samples(&[3 << 3]), Ok(2880));
    }
}
