//! hallcast-rtc: the only crate that knows the WebRTC stack (str0m) and the media
//! socket.
//!
//! One task owns one UDP socket and every peer's `str0m::Rtc`; it routes datagrams
//! by 4-tuple (then by the STUN ufrag for a new address), feeds publisher packets into
//! the sans-IO [`hallcast_core::Conference`] and writes the core's per-subscriber
//! outputs into the subscribers' streams. HTTP talks to it only through
//! [`Engine`] commands; nothing here parses HTTP or JSON, and nothing here decides
//! policy (which layer, when to ask for a keyframe): that is the core's job.

mod dtls;
mod engine;
pub mod sdp_scan;
pub mod stun;
pub mod udp;

pub use engine::{
    DELIVERY_WINDOW, Delivery, EndReason, Engine, EngineConfig, EngineError, EngineEvent,
    EngineStats, Role, SessionId, SessionStarted, Snapshot, SnapshotConference,
};
