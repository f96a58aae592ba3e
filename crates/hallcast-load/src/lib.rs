//! hallcast-load: the load generator and the end-to-end benchmark of a relay.
//!
//! # What it owns
//! - [`subscribe`]: many real WebRTC subscribers in one process and one thread. Each does the
//!   real WHEP POST, full ICE (controlling, not lite), DTLS client, SRTP, RTCP receiver reports
//!   and NACKs; it counts the RTP packets and bytes it receives and times the first keyframe
//!   from its WHEP POST.
//! - [`publish`]: a WHIP publisher that loops a pre-encoded 720p H.264 file and an Opus tone at
//!   their real rates (nothing is encoded at run time), answering keyframe requests by jumping
//!   to the file's next IDR.
//! - [`bench`]: the runner behind `benches/e2e/run.sh`: starts `hallcast demo --no-source`,
//!   the publisher and N subscribers in separate processes, reads the relay's own CPU and memory
//!   accounting and counters over a window, and writes the table of `docs/BENCHMARKS-e2e.md`.
//! - [`storm`]: the join-storm benchmark behind `benches/e2e/storm.sh`: steady subscribers
//!   measured while hundreds of registered points join, declare headcounts, leave and rejoin.
//! - The media assets in `assets/` and the script that makes them.
//!
//! # Why str0m here, while client roles elsewhere use webrtc-rs
//! The product's test source and test publishers are webrtc-rs peers. A load generator has a
//! different job: hundreds of peers that must cost little next to the relay they measure, on
//! the same two cores. str0m is sans-IO: a peer is one `Rtc` value driven by one poll loop,
//! with no tasks, channels or interceptor chain per peer and no per-peer timers beyond one
//! deadline, and its RTP mode hands over packets without depacketizing or a jitter buffer.
//! What that costs is measured on every run and printed next to the relay's figures
//! (`loadgen_cpu_us_per_packet`, `loadgen_rss_bytes`; see `docs/BENCHMARKS-e2e.md`). Measured
//! here (2-core EPYC): 200 peers receiving 58 000 packets/s cost this process about 0.45 cores,
//! 6–10 µs of CPU per received packet including the kernel's receive path and SRTP, and about
//! 0.2 MiB of memory per peer — so the subscribers never use more CPU than the relay they
//! measure.
//!
//! # What it must never do
//! - Be linked by the relay: it is a client of a relay over HTTP and UDP only, and knows
//!   nothing of hallcast's crates.
//! - Send anywhere but the URLs it is given and the ICE candidates their answers name (the
//!   benchmarks run on loopback); every run is bounded in count and time.
//! - Encode media at run time, or install a tracing subscriber from library code (the binary
//!   does that).
//!
//! Errors are `anyhow` throughout: every caller of this tool crate only reports them.

use std::net::{IpAddr, SocketAddr};

pub mod bench;
pub mod media;
pub mod probe;
pub mod publish;
pub mod report;
pub mod signal;
pub mod storm;
pub mod subscribe;

/// A non-blocking UDP socket on `ip` (any free port) with the given receive and send buffer
/// sizes, for the Tokio runtime of the caller. The kernel caps the sizes at
/// `net.core.rmem_max` / `wmem_max`; a smaller buffer only risks drops in bursts.
pub(crate) fn udp_socket(ip: IpAddr, buffer: usize) -> anyhow::Result<tokio::net::UdpSocket> {
    let domain = if ip.is_ipv4() {
        socket2::Domain::IPV4
    } else {
        socket2::Domain::IPV6
    };
    let s = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    let _ = s.set_recv_buffer_size(buffer);
    let _ = s.set_send_buffer_size(buffer);
    s.set_nonblocking(true)?;
    s.bind(&SocketAddr::new(ip, 0).into())?;
    Ok(tokio::net::UdpSocket::from_std(s.into())?)
}
