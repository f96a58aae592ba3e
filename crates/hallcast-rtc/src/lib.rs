//! hallcast-rtc: the only crate that knows the WebRTC stack (str0m) and the media
//! sockets.
//!
//! [`relay::Relay`] is the relay as a sans-IO state machine (one per media shard): it owns
//! every peer's `str0m::Rtc`, routes datagrams by 4-tuple (then by the STUN ufrag for a new
//! address), feeds sources' packets into each conference's router
//! ([`hallcast_core::Router`]) and writes the router's outputs into consumers' streams.
//! [`Engine`] (`driver.rs`) is the thin I/O around it: per shard a thread, a UDP socket and
//! the clock. HTTP talks to it only through [`Engine`] commands; nothing here parses HTTP or
//! JSON, and nothing here decides forwarding policy (which layer, when to ask for a
//! keyframe): that is the core's job.

mod api;
mod driver;
mod dtls;
pub mod relay;
pub mod sdp_scan;
/// An in-memory network and str0m peers for tests and benchmarks on virtual time.
pub mod sim;
pub mod stun;
pub mod tcp;
pub mod transit;
pub mod udp;

pub use api::{
    Delivery, EndReason, EngineConfig, EngineError, EngineEvent, EngineStats, Role, RxDrop,
    SessionStarted, Snapshot, SnapshotConference, SnapshotSession, SnapshotShard,
};
pub use driver::Engine;
pub use hallcast_core::SessionId;
pub use relay::health::DELIVERY_WINDOW;
pub use transit::TransitHistogram;
