//! Media vocabulary shared by the whole core: kinds, codecs, layers and packets.

use std::sync::Arc;
use std::time::Instant;

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    Audio,
    Video,
}

/// The codecs hallcast forwards. The relay never transcodes; it only needs to know
/// enough of each payload format to find keyframes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    Opus,
    H264,
    Vp8,
}

impl Codec {
    pub fn kind(self) -> MediaKind {
        match self {
            Codec::Opus => MediaKind::Audio,
            Codec::H264 | Codec::Vp8 => MediaKind::Video,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Codec::Opus => "opus",
            Codec::H264 => "H264",
            Codec::Vp8 => "VP8",
        }
    }

    /// RTP clock rate.
    pub fn clock_rate(self) -> u32 {
        match self {
            Codec::Opus => 48_000,
            Codec::H264 | Codec::Vp8 => 90_000,
        }
    }

    /// Whether this payload starts a keyframe (an H.264 IDR/SPS, a VP8 key frame's
    /// first packet). Opus packets are all independently decodable: false.
    pub fn starts_keyframe(self, payload: &[u8]) -> bool {
        match self {
            Codec::Opus => false,
            Codec::H264 => crate::keyframe::h264_starts_keyframe(payload),
            Codec::Vp8 => crate::keyframe::vp8_starts_keyframe(payload),
        }
    }
}

/// A simulcast layer index: 0 is the lowest resolution. A non-simulcast source has
/// only layer 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Layer(pub u8);

impl Layer {
    pub const MAX: usize = 3;

    pub fn index(self) -> usize {
        usize::from(self.0).min(Self::MAX - 1)
    }
}

/// One RTP packet from the publisher, after SRTP and the WebRTC stack's own
/// reordering/RTX handling. The payload is shared: every subscriber gets the same
/// allocation, only headers are rewritten.
#[derive(Debug, Clone)]
pub struct SourcePacket {
    pub kind: MediaKind,
    pub layer: Layer,
    /// Extended (64-bit, rollover-free) sequence number of the source stream.
    pub seq: u64,
    /// RTP timestamp as sent by the publisher.
    pub ts: u32,
    pub marker: bool,
    /// Whether this packet begins a keyframe (see [`Codec::starts_keyframe`]).
    pub keyframe_start: bool,
    pub payload: Arc<[u8]>,
    /// When the packet arrived at the relay.
    pub arrival: Instant,
}
