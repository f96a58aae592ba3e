//! Live H.264 encoding of the test card with OpenH264 (constrained baseline, Annex-B output).

use bytes::Bytes;
use openh264::OpenH264API;
use openh264::encoder::{
    BitRate, Complexity, Encoder, EncoderConfig, FrameRate, IntraFramePeriod, Profile,
    RateControlMode, SpsPpsStrategy, UsageType, VuiConfig,
};

use crate::card::I420Frame;

/// H.264 NAL unit type of an IDR slice.
pub const NAL_IDR: u8 = 5;
/// H.264 NAL unit type of a sequence parameter set.
pub const NAL_SPS: u8 = 7;
/// H.264 NAL unit type of a picture parameter set.
pub const NAL_PPS: u8 = 8;

/// How to encode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncoderSettings {
    pub fps: u32,
    pub bitrate_bps: u32,
    /// Frames from one IDR to the next (the GOP length).
    pub idr_interval_frames: u32,
}

/// An encoding failure inside OpenH264.
#[derive(Debug, thiserror::Error)]
#[error("openh264: {0}")]
pub struct EncodeError(String);

impl From<openh264::Error> for EncodeError {
    fn from(e: openh264::Error) -> Self {
        Self(e.to_string())
    }
}

/// One encoded picture: an Annex-B access unit (start codes, SPS and PPS before every IDR).
#[derive(Debug, Clone)]
pub struct EncodedFrame {
    pub data: Bytes,
    pub is_idr: bool,
}

/// OpenH264 configured for live streaming: constant bitrate, no frame skipping, no scene-change
/// IDRs (an IDR comes only every `idr_interval_frames` or on request), one thread.
pub struct H264Encoder {
    inner: Encoder,
    fps: u32,
    n_frames: u64,
}

impl H264Encoder {
    pub fn new(settings: EncoderSettings) -> Result<Self, EncodeError> {
        Self::build(settings, false)
    }

    /// An encoder that drops frames to hold `bitrate_bps`, as encoders do when the bitrate
    /// is set too low for the picture: [`H264Encoder::encode`] then returns an empty frame
    /// for a dropped picture.
    pub fn with_frame_skipping(settings: EncoderSettings) -> Result<Self, EncodeError> {
        Self::build(settings, true)
    }

    fn build(settings: EncoderSettings, skip_frames: bool) -> Result<Self, EncodeError> {
        let config = EncoderConfig::new()
            .usage_type(UsageType::CameraVideoRealTime)
            .profile(Profile::Baseline)
            .rate_control_mode(RateControlMode::Bitrate)
            .bitrate(BitRate::from_bps(settings.bitrate_bps))
            .max_frame_rate(FrameRate::from_hz(settings.fps as f32))
            .skip_frames(skip_frames)
            .intra_frame_period(IntraFramePeriod::from_num_frames(
                settings.idr_interval_frames.max(1),
            ))
            .scene_change_detect(false)
            .sps_pps_strategy(SpsPpsStrategy::ConstantId)
            .complexity(Complexity::Low)
            .num_threads(1)
            .vui(VuiConfig::bt601());
        let inner = Encoder::with_api_config(OpenH264API::from_source(), config)?;
        Ok(Self {
            inner,
            fps: settings.fps.max(1),
            n_frames: 0,
        })
    }

    /// Makes the next encoded frame an IDR.
    pub fn request_keyframe(&mut self) {
        self.inner.force_intra_frame();
    }

    /// Encodes one picture. Returns a frame (empty only when frame skipping is on and the
    /// encoder dropped this picture); the picture size may change between calls (the encoder
    /// restarts with an IDR).
    pub fn encode(&mut self, frame: &I420Frame) -> Result<EncodedFrame, EncodeError> {
        let ts = openh264::Timestamp::from_millis(self.n_frames * 1000 / u64::from(self.fps));
        let bitstream = self.inner.encode_at(frame, ts)?;
        let data = bitstream.to_vec();
        self.n_frames += 1;
        let is_idr = nal_unit_types(&data).any(|t| t == NAL_IDR);
        Ok(EncodedFrame {
            data: Bytes::from(data),
            is_idr,
        })
    }
}

/// The NAL unit types in an Annex-B byte stream, in order.
pub fn nal_unit_types(annexb: &[u8]) -> impl Iterator<Item = u8> + '_ {
    nal_units(annexb).filter_map(|nal| nal.first().map(|b| b & 0x1f))
}

/// The NAL units (without start codes) in an Annex-B byte stream.
pub fn nal_units(annexb: &[u8]) -> impl Iterator<Item = &[u8]> + '_ {
    let mut rest = annexb;
    std::iter::from_fn(move || {
        let start = find_start_code(rest)?;
        let body = &rest[start..];
        let end = find_start_code_prefix(body).unwrap_or(body.len());
        // Trailing zero bytes before the next start code belong to the next one (4-byte code).
        let mut nal = &body[..end];
        while let [head @ .., 0] = nal {
            nal = head;
        }
        rest = &body[end..];
        Some(nal)
    })
}

/// Index just past the first `00 00 01` in `b`.
fn find_start_code(b: &[u8]) -> Option<usize> {
    b.windows(3).position(|w| w == [0, 0, 1]).map(|i| i + 3)
}

/// Index of the first `00 00 01` in `b`.
fn find_start_code_prefix(b: &[u8]) -> Option<usize> {
    b.windows(3).position(|w| w == [0, 0, 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_annexb_into_nal_units() {
        let s = [
            0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 9, 9,
        ];
        let nals: Vec<&[u8]> = nal_units(&s).collect();
        assert_eq!(
            nals,
            vec![&[0x67, 1, 2][..], &[0x68, 3][..], &[0x65, 9, 9][..]]
        );
        assert_eq!(nal_unit_types(&s).collect::<Vec<_>>(), vec![7, 8, 5]);
        assert_eq!(nal_units(&[1, 2, 3]).count(), 0);
    }
}
