//! hallcast-core: the sans-IO engine of the relay.
//!
//! Owns forwarding — a [`Router`] per conference: its [`producer`] (per-layer GOP cache,
//! bitrate, keyframe-request coalescing) fanned out to its [`consumer`]s (viewers: one
//! layer; relay consumers: every layer), each with its own sequence/timestamp rewrite —
//! the keyframe detection and the attendance folding. It never touches sockets, never spawns
//! tasks and never reads the clock: time is always an argument.

pub mod accounting;
pub mod alloc;
pub mod backlog;
pub mod consumer;
pub mod keyframe;
pub mod media;
pub mod pacer;
pub mod preflight;
pub mod producer;
pub mod router;

pub use accounting::SessionId;
pub use alloc::{Allocator, PauseReason, Target};
pub use backlog::Backlog;
pub use consumer::{ConsumerId, Forward, VideoStatus};
pub use media::{Codec, Layer, MediaKind, SourcePacket};
pub use pacer::Pacer;
pub use producer::LayerStats;
pub use router::{Allocation, Outputs, Router};
