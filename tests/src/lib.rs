//! Harness for hallcast's end-to-end tests: real WebRTC clients against a real `hallcast demo`.
//!
//! What it owns:
//! - starting `hallcast demo` on ephemeral ports with an info file ([`Demo`]), killed on drop by its
//!   own pid;
//! - running the test clients in `tests/js` (Chromium through playwright-core) and `tests/py`
//!   (aiortc) as child processes that print JSON lines ([`Client`]);
//! - a per-test scratch directory whose logs are printed when the test fails ([`run`]);
//! - a process-wide lock so tests that start browsers or encoders run one at a time on a
//!   2-core machine ([`Weight::Heavy`]);
//! - hand-written SDP offers and raw HTTP/UDP abuse for the bad-input tests ([`sdp`], [`net`]);
//! - a second network host in a namespace whose link a test can cut, two hosts joined only to
//!   each other, 1:1 NAT inside a namespace ([`netns`]);
//! - a tree of relays (`hallcast demo` + `hallcast edge`) on hosts of their own, with point hosts
//!   that reach only their edge ([`tree`]);
//! - a host's downlink shaped to a bandwidth with `tbf` ([`shape`]), and the time series the
//!   bandwidth-adaptation tests read: the relay's sessions API, the viewer's getStats ([`adapt`]);
//! - `/metrics` parsed by `prometheus_client`'s parser, the documented series, the Grafana
//!   dashboard's queries, relays with their log lines apart on stderr ([`obs`]).
//!
//! What it must never do: skip a test because a prerequisite is missing (it fails with a message
//! that says what to install), talk to any address but loopback, or leave a process behind.

pub mod adapt;
pub mod admin;
mod client;
mod ctx;
mod demo;
pub mod ffmpeg;
pub mod http;
pub mod net;
pub mod netns;
pub mod obs;
mod prereq;
pub mod proc;
pub mod results;
pub mod sdp;
pub mod shape;
pub mod tree;

pub use client::{Client, ClientKind};
pub use ctx::{Ctx, Weight, run};
pub use demo::{Demo, DemoOptions, Info};
pub use prereq::{chromium_path, hallcast_bin, node_bin, python_bin, repo_root};
