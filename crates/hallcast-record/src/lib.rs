//! hallcast-record: recording each broadcast, as received, into a Matroska (H.264 + Opus)
//! or WebM (VP8 + Opus) file — no re-encoding.
//!
//! Owns: the RTP depacketizers ([`depack`]), the muxer ([`mkv`]), one broadcast's
//! recording from source packets to file writes ([`recording`]) — all sans-IO: bytes in,
//! values out, no file, no clock — and the thin I/O around them ([`store`]): one recorder
//! thread that owns the files under `{data_dir}/recordings/{conference}/`, the listing the
//! HTTP API reads and the size/age limit.
//!
//! Must never: block or slow the media threads (they hand it [`Item`]s through a bounded
//! channel with `try_send` and count what a full channel drops), re-encode, or know HTTP or
//! JSON.

pub mod depack;
mod ebml;
pub mod mkv;
pub mod recording;
pub mod store;

use std::sync::Arc;
use std::time::Instant;

use hallcast_core::{Codec, SessionId, SourcePacket};

pub use mkv::{Container, Metadata, Muxer, Op};
pub use recording::Recording;
pub use store::{RecordTx, Recorder, RecorderConfig, RecorderStats, RecordingInfo};

/// What a media shard hands the recorder. A broadcast is one publisher session: a
/// publisher that reconnects starts a new broadcast, so a new file.
#[derive(Debug, Clone)]
pub enum Item {
    Started {
        broadcast: SessionId,
        conference: Arc<str>,
        audio: Option<Codec>,
        video: Option<Codec>,
        at: Instant,
    },
    /// Audio, or video of the recorded layer: the relay's recording viewer forwards the
    /// best active simulcast layer in one continuous stream (it switches at keyframes).
    Packet {
        broadcast: SessionId,
        packet: SourcePacket,
    },
    Ended {
        broadcast: SessionId,
        at: Instant,
    },
}
