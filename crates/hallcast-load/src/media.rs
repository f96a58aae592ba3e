//! The pre-encoded media the publisher loops, and the parsers that cut it into frames.
//!
//! Both files are made once by `assets/make-assets.sh` (ffmpeg) and embedded in the binary, so
//! a benchmark run encodes nothing: sending a frame costs a packetizer pass and SRTP only.

use std::sync::Arc;

/// 10 s of 1280x720 at 30 fps, H.264 constrained baseline, ~1.9 Mbit/s, an IDR every 2 s,
/// Annex B with an access unit delimiter before each frame.
pub static H264_LOOP: &[u8] = include_bytes!("../assets/loop-720p30.h264");
/// Frames per second of [`H264_LOOP`].
pub const H264_LOOP_FPS: u32 = 30;
/// 1 s of a 440 Hz tone as Ogg/Opus, 20 ms packets.
pub static OPUS_OGG: &[u8] = include_bytes!("../assets/tone-48k.ogg");
/// Duration of every packet of [`OPUS_OGG`], in 48 kHz samples (20 ms).
pub const OPUS_FRAME_SAMPLES: u32 = 960;

/// One coded picture, as Annex B bytes (4-byte start codes), delimiter removed.
#[derive(Debug, Clone)]
pub struct AccessUnit {
    pub data: Arc<[u8]>,
    /// Contains an IDR slice (NAL type 5).
    pub keyframe: bool,
}

/// Splits an Annex B H.264 stream into access units at its access unit delimiters (NAL 9).
/// NAL units before the first delimiter belong to the first access unit.
pub fn h264_access_units(stream: &[u8]) -> Vec<AccessUnit> {
    let mut units = Vec::new();
    let mut current: Vec<u8> = Vec::new();
    let mut keyframe = false;
    for nal in annexb_nals(stream) {
        let nal_type = nal[0] & 0x1f;
        if nal_type == 9 {
            if !current.is_empty() {
                units.push(AccessUnit {
                    data: Arc::from(std::mem::take(&mut current)),
                    keyframe,
                });
            }
            keyframe = false;
            continue;
        }
        keyframe |= nal_type == 5;
        current.extend_from_slice(&[0, 0, 0, 1]);
        current.extend_from_slice(nal);
    }
    if !current.is_empty() {
        units.push(AccessUnit {
            data: Arc::from(current),
            keyframe,
        });
    }
    units
}

/// The NAL units of an Annex B stream (start codes of 3 or 4 bytes removed, empty units
/// skipped).
fn annexb_nals(stream: &[u8]) -> impl Iterator<Item = &[u8]> {
    // Positions just after each start code.
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= stream.len() {
        if stream[i] == 0 && stream[i + 1] == 0 && stream[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut nals = Vec::with_capacity(starts.len());
    for (k, &s) in starts.iter().enumerate() {
        let mut end = starts.get(k + 1).map_or(stream.len(), |&n| n - 3);
        // A 4-byte start code leaves a zero byte before the next 3-byte pattern.
        while end > s && stream[end - 1] == 0 {
            end -= 1;
        }
        if end > s {
            nals.push(&stream[s..end]);
        }
    }
    nals.into_iter()
}

/// The audio packets of a single-stream Ogg/Opus file (RFC 7845): pages are checked for the
/// capture pattern, segments joined into packets, and the `OpusHead`/`OpusTags` headers
/// dropped.
pub fn opus_packets(ogg: &[u8]) -> anyhow::Result<Vec<Arc<[u8]>>> {
    let mut packets: Vec<Vec<u8>> = Vec::new();
    let mut partial: Vec<u8> = Vec::new();
    let mut pos = 0;
    while pos < ogg.len() {
        let header = ogg
            .get(pos..pos + 27)
            .ok_or_else(|| anyhow::anyhow!("truncated Ogg page at byte {pos}"))?;
        anyhow::ensure!(
            &header[..4] == b"OggS",
            "no Ogg capture pattern at byte {pos}"
        );
        let n_segments = usize::from(header[26]);
        let lacing = ogg
            .get(pos + 27..pos + 27 + n_segments)
            .ok_or_else(|| anyhow::anyhow!("truncated Ogg lacing at byte {pos}"))?;
        let mut body = pos + 27 + n_segments;
        for &len in lacing {
            let len = usize::from(len);
            let seg = ogg
                .get(body..body + len)
                .ok_or_else(|| anyhow::anyhow!("truncated Ogg segment at byte {body}"))?;
            partial.extend_from_slice(seg);
            body += len;
            if len < 255 {
                packets.push(std::mem::take(&mut partial));
            }
        }
        pos = body;
    }
    anyhow::ensure!(partial.is_empty(), "Ogg stream ends inside a packet");
    let mut it = packets.into_iter();
    anyhow::ensure!(
        it.next().is_some_and(|p| p.starts_with(b"OpusHead")),
        "first Ogg packet is not OpusHead"
    );
    anyhow::ensure!(
        it.next().is_some_and(|p| p.starts_with(b"OpusTags")),
        "second Ogg packet is not OpusTags"
    );
    let audio: Vec<Arc<[u8]>> = it.filter(|p| !p.is_empty()).map(Arc::from).collect();
    anyhow::ensure!(!audio.is_empty(), "no Opus audio packets");
    Ok(audio)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loop_is_ten_seconds_with_an_idr_every_two() {
        let units = h264_access_units(H264_LOOP);
        assert_eq!(units.len(), 300, "10 s at 30 fps");
        let idrs: Vec<usize> = units
            .iter()
            .enumerate()
            .filter(|(_, u)| u.keyframe)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(idrs, vec![0, 60, 120, 180, 240]);
        // Every unit is Annex B and carries no delimiter any more.
        for u in &units {
            assert_eq!(&u.data[..4], &[0, 0, 0, 1]);
            assert!(annexb_nals(&u.data).all(|n| n[0] & 0x1f != 9));
        }
        // SPS and PPS travel with every IDR, so a joiner can decode from any of them.
        for &i in &idrs {
            let types: Vec<u8> = annexb_nals(&units[i].data).map(|n| n[0] & 0x1f).collect();
            assert!(
                types.contains(&7) && types.contains(&8),
                "IDR unit {i} has NAL types {types:?}"
            );
        }
        let bits = H264_LOOP.len() as f64 * 8.0 / 10.0;
        assert!((1.5e6..2.5e6).contains(&bits), "bitrate {bits} bit/s");
    }

    #[test]
    fn annexb_splits_three_and_four_byte_start_codes() {
        let s = [
            0, 0, 0, 1, 9, 0xf0, 0, 0, 1, 0x67, 1, 2, 0, 0, 0, 1, 0x65, 3,
        ];
        let nals: Vec<&[u8]> = annexb_nals(&s).collect();
        assert_eq!(
            nals,
            vec![&[9u8, 0xf0][..], &[0x67, 1, 2][..], &[0x65, 3][..]]
        );
        let units = h264_access_units(&s);
        assert_eq!(units.len(), 1);
        assert!(units[0].keyframe);
        assert_eq!(
            &*units[0].data,
            &[0, 0, 0, 1, 0x67, 1, 2, 0, 0, 0, 1, 0x65, 3][..]
        );
    }

    #[test]
    fn the_tone_has_fifty_opus_packets_of_twenty_ms() {
        let packets = opus_packets(OPUS_OGG).expect("valid asset");
        assert!(
            (50..=52).contains(&packets.len()),
            "{} packets",
            packets.len()
        );
        for p in &packets {
            // TOC: a CELT or SILK configuration of 20 ms, one frame (code 0).
            let config = p[0] >> 3;
            assert!(
                [1, 5, 9, 13, 15, 19, 23, 27, 31].contains(&config),
                "config {config}"
            );
            assert_eq!(p[0] & 3, 0);
        }
    }

    #[test]
    fn a_broken_ogg_is_refused() {
        assert!(opus_packets(b"OggT").is_err());
        assert!(opus_packets(&OPUS_OGG[..100]).is_err());
    }
}
