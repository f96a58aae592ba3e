//! hallcast end to end: real WebRTC clients (headless Chromium through playwright-core, aiortc)
//! against `hallcast demo`, nothing mocked in the media path.
//!
//! One test binary made of modules (one per subject). Tests that start browsers or encoders are
//! `Weight::Heavy` and run one at a time; see `hallcast_tests::run`. Prerequisites (the
//! `hallcast` binary, Chromium, Node with playwright-core, the aiortc venv) are installed by
//! `scripts/install-test-deps.sh`; a missing one fails the test with a message saying so.

mod access;
mod admin_page;
mod aiortc;
mod attendance;
mod bad_input;
mod chromium;
mod gop_cache;
mod http_surface;
mod https;
mod limits;
mod observability;
mod openapi;
mod operator_console;
mod preflight;
mod recording;
mod rollcall;
mod server_addresses;
mod sessions;
mod shards;
mod simulcast;
mod util;
mod viewer_events;
mod viewer_page;
