//! hallcast-ingest: the ingest gateway for encoders that do not speak WHIP (RTMP, and SRT with
//! MPEG-TS inside). It receives the encoder's stream, passes H.264 through, transcodes AAC
//! to Opus, and publishes the result **to the relay it runs in, over WHIP**, with the
//! conference's own stream key — an ingest gateway is a publisher of its relay, as an edge
//! relay is a viewer of its parent.
//!
//! # What it owns
//! - [`feed`]: the stable API every ingest feeds ([`Feed`]): H.264 access units and AAC frames
//!   in, a WHIP publisher (`hallcast_client::publish_feed`) out.
//! - [`h264`], [`aac`], [`adts`], [`flv`]: sans-IO bitstream work (AVCC → Annex B, parameter
//!   sets, AAC → Opus, ADTS headers, FLV tag bodies).
//! - [`refusal`]: what the gateway tells the relay about refused encoders (the operator's
//!   pre-flight answer shows it), and the header naming the protocol on its WHIP POST.
//! - [`rtmp`]: the RTMP listener (`rtmp://HOST:PORT/{conference}`, the stream key as the
//!   stream name), built on `rml_rtmp`'s sans-IO handshake and session.
//! - [`srt`]: the SRT listener (`srt-tokio`, listener mode; [`streamid`] names the conference
//!   and carries the key, answered in the handshake), and [`TsDemux`] (sans-IO MPEG-TS
//!   demultiplexing on `mpeg2ts-reader`: H.264 access units and AAC frames for the feed).
//!
//! # What it must never do
//! - Reach into the relay: no core, no engine, no ledger. The stream key is checked by the
//!   relay's WHIP endpoint and nowhere else.
//! - Re-encode video, or block the runtime on an encoder's socket (each connection is its own
//!   task; bad input ends that connection only).

pub mod aac;
pub mod adts;
pub mod feed;
pub mod flv;

pub mod h264;
pub mod refusal;
pub mod rtmp;
pub mod srt;
pub mod streamid;
mod ts;

pub use feed::{Feed, IngestTarget};
pub use hallcast_client::FeedStats;
pub use refusal::{INGEST_HEADER, Protocol, Refusal, RefusalKind, RefusalSink};
pub use srt::SrtIngest;
pub use ts::{TsDemux, TsEvent};

/// An ingest failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    /// The relay refused the publish (wrong key, unknown conference, already live).
    #[error("refused: {0}")]
    Refused(String),
    /// Publishing to the relay failed for another reason (network, WebRTC).
    #[error("publishing to the relay failed: {0}")]
    Publish(String),
    /// A codec or format the ingest cannot carry.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// Malformed input.
    #[error("invalid input: {0}")]
    Invalid(String),
    /// The WHIP session is over.
    #[error("the feed's WHIP session is over")]
    Closed,
}
