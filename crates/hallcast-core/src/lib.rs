//! hallcast-core: the sans-IO engine of the relay.
//!
//! Owns forwarding (ingest → fan-out → per-subscriber egress), the keyframe policy,
//! the GOP cache and the attendance folding. It never touches sockets, never spawns
//! tasks and never reads the clock: time is always an argument.

pub mod accounting;
pub mod backlog;
pub mod forward;
pub mod keyframe;
pub mod media;

pub use accounting::SessionId;
pub use backlog::Backlog;
pub use forward::{Conference, Forward, Outputs, SubscriberId, VideoStatus};
pub use media::{Codec, Layer, MediaKind, SourcePacket};
