//! FLV tag bodies as RTMP carries them (video and audio messages; sans-IO): the codec checks
//! and the AVC/AAC packet types. Anything but H.264 (FLV codec id 7) and AAC (sound format
//! 10) is [`IngestError::Unsupported`], with the codec named.

use crate::IngestError;

/// FLV video codec id of H.264.
pub const CODEC_AVC: u8 = 7;
/// FLV sound format of AAC.
pub const SOUND_AAC: u8 = 10;

/// A parsed video message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoTag<'a> {
    /// The AVCDecoderConfigurationRecord (SPS/PPS, NAL length size).
    AvcSequenceHeader(&'a [u8]),
    /// One access unit of AVCC NAL units. `cts`: composition time offset in ms (pts − dts);
    /// non-zero means B-frames.
    AvcNalus {
        keyframe: bool,
        cts: i32,
        data: &'a [u8],
    },
    /// End of sequence, or a video info/command frame: nothing to forward.
    Other,
}

/// A parsed audio message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioTag<'a> {
    /// The AudioSpecificConfig.
    AacSequenceHeader(&'a [u8]),
    /// One raw AAC frame.
    AacRaw(&'a [u8]),
}

/// The name of an FLV video codec id.
pub fn video_codec_name(id: u8) -> &'static str {
    match id {
        1 => "JPEG",
        2 => "Sorenson H.263 (flv1)",
        3 => "Screen video",
        4 => "On2 VP6",
        5 => "On2 VP6 with alpha",
        6 => "Screen video v2",
        7 => "H.264/AVC",
        12 => "HEVC (non-standard FLV id 12)",
        13 => "AV1 (non-standard FLV id 13)",
        _ => "unknown",
    }
}

/// The name of an FLV sound format.
pub fn sound_format_name(id: u8) -> &'static str {
    match id {
        0 => "linear PCM",
        1 => "ADPCM",
        2 => "MP3",
        3 => "linear PCM little-endian",
        4..=6 => "Nellymoser",
        7 => "G.711 A-law",
        8 => "G.711 mu-law",
        10 => "AAC",
        11 => "Speex",
        14 => "MP3 8 kHz",
        15 => "device-specific",
        _ => "unknown",
    }
}

/// Parses a video message body.
pub fn parse_video(body: &[u8]) -> Result<VideoTag<'_>, IngestError> {
    let first = *body
        .first()
        .ok_or_else(|| IngestError::Invalid("empty video message".into()))?;
    if first & 0x80 != 0 {
        // Enhanced RTMP: a FourCC names the codec (hvc1, av01, vp09).
        let fourcc = body
            .get(1..5)
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .unwrap_or_else(|| "?".into());
        return Err(IngestError::Unsupported(format!(
            "video codec {fourcc:?} (enhanced RTMP); only H.264 is supported"
        )));
    }
    let frame_type = first >> 4;
    let codec = first & 0x0f;
    if codec != CODEC_AVC {
        return Err(IngestError::Unsupported(format!(
            "video codec {} (FLV codec id {codec}); only H.264 (id 7) is supported",
            video_codec_name(codec)
        )));
    }
    if frame_type == 5 {
        return Ok(VideoTag::Other);
    }
    if body.len() < 5 {
        return Err(IngestError::Invalid(
            "AVC video message shorter than 5 bytes".into(),
        ));
    }
    // SI24, big-endian.
    let raw = (u32::from(body[2]) << 16) | (u32::from(body[3]) << 8) | u32::from(body[4]);
    let cts = ((raw << 8) as i32) >> 8;
    match body[1] {
        0 => Ok(VideoTag::AvcSequenceHeader(&body[5..])),
        1 => Ok(VideoTag::AvcNalus {
            keyframe: frame_type == 1,
            cts,
            data: &body[5..],
        }),
        2 => Ok(VideoTag::Other),
        t => Err(IngestError::Invalid(format!("AVC packet type {t}"))),
    }
}

/// Parses an audio message body.
pub fn parse_audio(body: &[u8]) -> Result<AudioTag<'_>, IngestError> {
    let first = *body
        .first()
        .ok_or_else(|| IngestError::Invalid("empty audio message".into()))?;
    let format = first >> 4;
    if format == 9 {
        let fourcc = body
            .get(1..5)
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .unwrap_or_else(|| "?".into());
        return Err(IngestError::Unsupported(format!(
            "audio codec {fourcc:?} (enhanced RTMP); only AAC is supported"
        )));
    }
    if format != SOUND_AAC {
        return Err(IngestError::Unsupported(format!(
            "audio codec {} (FLV sound format {format}); only AAC (10) is supported",
            sound_format_name(format)
        )));
    }
    match body.get(1) {
        Some(0) => Ok(AudioTag::AacSequenceHeader(&body[2..])),
        Some(1) => Ok(AudioTag::AacRaw(&body[2..])),
        Some(t) => Err(IngestError::Invalid(format!("AAC packet type {t}"))),
        None => Err(IngestError::Invalid(
            "AAC audio message shorter than 2 bytes".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avc_video_tags_are_parsed_with_their_composition_time() {
        assert_eq!(
            parse_video(&[0x17, 0, 0, 0, 0, 1, 0x64]),
            Ok(VideoTag::AvcSequenceHeader(&[1, 0x64]))
        );
        assert_eq!(
            parse_video(&[0x17, 1, 0, 0, 0, 0, 0, 0, 2, 0x65, 1]),
            Ok(VideoTag::AvcNalus {
                keyframe: true,
                cts: 0,
                data: &[0, 0, 0, 2, 0x65, 1]
            })
        );
        // An inter frame shown 66 ms after it is decoded (a B-frame stream).
        assert_eq!(
            parse_video(&[0x27, 1, 0, 0, 66, 9]),
            Ok(VideoTag::AvcNalus {
                keyframe: false,
                cts: 66,
                data: &[9]
            })
        );
        // Negative composition offsets are sign-extended.
        assert!(matches!(
            parse_video(&[0x27, 1, 0xff, 0xff, 0xfe]),
            Ok(VideoTag::AvcNalus { cts: -2, .. })
        ));
        assert_eq!(parse_video(&[0x17, 2, 0, 0, 0]), Ok(VideoTag::Other));
        assert!(matches!(
            parse_video(&[0x17, 1, 0]),
            Err(IngestError::Invalid(_))
        ));
        assert!(matches!(parse_video(&[]), Err(IngestError::Invalid(_))));
    }

    #[test]
    fn other_video_codecs_are_refused_by_name() {
        let Err(IngestError::Unsupported(m)) = parse_video(&[0x22, 0, 0]) else {
            panic!("flv1 accepted");
        };
        assert!(m.contains("Sorenson H.263"), "{m}");
        let Err(IngestError::Unsupported(m)) = parse_video(b"\x90hvc1....") else {
            panic!("enhanced HEVC accepted");
        };
        assert!(m.contains("hvc1"), "{m}");
        assert!(matches!(
            parse_video(&[0x1c, 1, 0, 0, 0]),
            Err(IngestError::Unsupported(_))
        ));
    }

    #[test]
    fn aac_audio_tags_are_parsed_and_others_refused() {
        assert_eq!(
            parse_audio(&[0xaf, 0, 0x12, 0x10]),
            Ok(AudioTag::AacSequenceHeader(&[0x12, 0x10]))
        );
        assert_eq!(parse_audio(&[0xaf, 1, 7, 8]), Ok(AudioTag::AacRaw(&[7, 8])));
        let Err(IngestError::Unsupported(m)) = parse_audio(&[0x2f, 0xff]) else {
            panic!("MP3 accepted");
        };
        assert!(m.contains("MP3"), "{m}");
        assert!(matches!(parse_audio(&[0xaf]), Err(IngestError::Invalid(_))));
        assert!(matches!(parse_audio(&[]), Err(IngestError::Invalid(_))));
    }
}
