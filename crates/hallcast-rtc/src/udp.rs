//! Batched sending: every datagram the engine produces while handling one wake-up
//! (a burst of received packets, a command, a timer) is queued and then handed to
//! the kernel with `sendmmsg`, up to [`MAX_BATCH`] messages per system call. A
//! fan-out of one packet to N subscribers thus costs N/64 syscalls, not N.
//!
//! **UDP GSO**: consecutive datagrams to the same destination whose sizes allow it (all
//! the same size, the last one possibly shorter) go as one message with a `UDP_SEGMENT`
//! control message: the kernel walks its UDP/IP stack once and cuts the payload into the
//! original datagrams. That is what a GOP replay to a joiner, an RTX burst, or the packets
//! of one video frame to one subscriber look like. A fan-out of several source packets in
//! one wake-up interleaves peers (p1→s1…sN, p2→s1…sN); when the queue sees a peer come
//! back after others (checked against the first few peers, a few compares per push), the
//! flush first sorts the queue by peer, stably, so each peer's datagrams keep their order
//! and form a run. A queue of one packet per peer is never sorted. If the kernel refuses
//! GSO (no `UDP_SEGMENT`, or a device without checksum offload), the queue turns GSO off
//! for good and sends plainly.
//!
//! `nix::sendmmsg` gives every message the same control messages, so the batch is built
//! with `libc::sendmmsg` directly (the only `unsafe` in the relay).
//!
//! **Receiving** ([`recv_with_destination`]): `recvmsg` with `IP_PKTINFO` /
//! `IPV6_PKTINFO`, so every datagram comes with the address it was sent to (a socket bound
//! to 0.0.0.0 has many; behind 1:1 NAT it is the private one). [`candidate_destination`]
//! turns that into the announced ICE candidate str0m must be told about.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;

use nix::errno::Errno;
use nix::sys::socket::{SockaddrLike, SockaddrStorage};

/// Messages per `sendmmsg` call.
pub const MAX_BATCH: usize = 64;

/// Most datagrams in one GSO message (the kernel's `UDP_MAX_SEGMENTS` is 64 on older
/// kernels, 128 on newer ones).
pub const MAX_SEGMENTS: usize = 64;

/// Most payload bytes in one GSO message (it must fit one IP datagram).
const MAX_GSO_BYTES: usize = 65_000;

/// Socket buffer size asked for: a GOP replay to a joiner or a fan-out burst must
/// not overflow the kernel's default (~200 kB). The kernel caps it at
/// `net.core.{w,r}mem_max` unless the process may raise it.
pub const SOCKET_BUFFER_BYTES: usize = 8 * 1024 * 1024;

/// Enlarges the socket's send and receive buffers (best effort).
pub fn grow_buffers(socket: &std::net::UdpSocket) {
    use nix::sys::socket::{setsockopt, sockopt};
    for (name, r) in [
        (
            "SO_SNDBUFFORCE",
            setsockopt(socket, sockopt::SndBufForce, &SOCKET_BUFFER_BYTES),
        ),
        (
            "SO_RCVBUFFORCE",
            setsockopt(socket, sockopt::RcvBufForce, &SOCKET_BUFFER_BYTES),
        ),
    ] {
        if r.is_err() {
            // Not privileged: fall back to what the kernel allows.
            let _ = match name {
                "SO_SNDBUFFORCE" => setsockopt(socket, sockopt::SndBuf, &SOCKET_BUFFER_BYTES),
                _ => setsockopt(socket, sockopt::RcvBuf, &SOCKET_BUFFER_BYTES),
            };
        }
    }
}

/// Outcome of one flush.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Flushed {
    pub sent: usize,
    pub bytes: usize,
    pub dropped: usize,
    /// Messages that carried more than one datagram (UDP GSO).
    pub gso_messages: usize,
    /// System calls made.
    pub syscalls: usize,
    /// The queue was sorted by peer first (interleaved runs).
    pub sorted: bool,
}

/// Queued datagrams, flushed with `sendmmsg` (and GSO where sizes allow).
pub struct SendQueue {
    items: Vec<(SocketAddr, Vec<u8>)>,
    gso: bool,
    /// The first few distinct peers of this flush, to notice interleaving.
    heads: [Option<SocketAddr>; HEADS],
    /// A peer came back after others: sorting by peer will make GSO runs.
    interleaved: bool,
}

/// How many first peers [`SendQueue::push`] remembers.
const HEADS: usize = 4;

impl Default for SendQueue {
    fn default() -> Self {
        Self::new(true)
    }
}

impl SendQueue {
    /// A queue; `gso` false never tries UDP GSO.
    pub fn new(gso: bool) -> Self {
        SendQueue {
            items: Vec::new(),
            gso: gso && cfg!(target_os = "linux"),
            heads: [None; HEADS],
            interleaved: false,
        }
    }

    /// Whether GSO is (still) in use: the kernel may have refused it.
    pub fn gso(&self) -> bool {
        self.gso
    }

    pub fn push(&mut self, dest: SocketAddr, datagram: Vec<u8>) {
        if self.gso && !self.interleaved && self.items.last().is_none_or(|(d, _)| *d != dest) {
            for h in &mut self.heads {
                match h {
                    Some(a) if *a == dest => {
                        self.interleaved = true;
                        break;
                    }
                    Some(_) => {}
                    None => {
                        *h = Some(dest);
                        break;
                    }
                }
            }
        }
        self.items.push((dest, datagram));
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// End (exclusive) of the message starting at item `i`: one datagram, or with GSO
    /// the longest run to the same destination that one `UDP_SEGMENT` send can carry.
    fn message_end(&self, i: usize) -> usize {
        let (dest, first) = &self.items[i];
        let seg = first.len();
        let mut end = i + 1;
        if !self.gso || seg == 0 {
            return end;
        }
        let mut total = seg;
        while end < self.items.len() && end - i < MAX_SEGMENTS {
            let (d, data) = &self.items[end];
            if d != dest
                || data.is_empty()
                || data.len() > seg
                || total + data.len() > MAX_GSO_BYTES
            {
                break;
            }
            total += data.len();
            end += 1;
            if data.len() < seg {
                break; // a shorter datagram can only be the last segment
            }
        }
        end
    }

    /// Sends everything queued. Datagrams the kernel refuses (full socket buffer)
    /// are dropped and counted: this is UDP, and the stack's NACK/RTX repairs loss.
    pub fn flush(&mut self, socket: &impl AsRawFd) -> Flushed {
        let mut out = Flushed::default();
        let fd = socket.as_raw_fd();
        if self.interleaved && self.gso {
            // Stable: each peer's datagrams stay in the order they were produced.
            self.items.sort_by_key(|(d, _)| *d);
            out.sorted = true;
        }
        self.interleaved = false;
        self.heads = [None; HEADS];
        let mut start = 0;
        let mut plan: Vec<(usize, usize)> = Vec::with_capacity(MAX_BATCH);
        while start < self.items.len() {
            plan.clear();
            let mut i = start;
            while i < self.items.len() && plan.len() < MAX_BATCH {
                let end = self.message_end(i);
                plan.push((i, end));
                i = end;
            }
            out.syscalls += 1;
            match send_batch(fd, &self.items, &plan) {
                Ok(n) => {
                    for &(a, b) in &plan[..n] {
                        out.sent += b - a;
                        out.bytes += self.items[a..b].iter().map(|(_, d)| d.len()).sum::<usize>();
                        out.gso_messages += usize::from(b - a > 1);
                    }
                    start = plan[n - 1].1;
                }
                Err(Errno::EAGAIN) => {
                    // The socket buffer is full: everything still queued is dropped.
                    out.dropped += self.items.len() - start;
                    break;
                }
                Err(Errno::EIO | Errno::EINVAL | Errno::EOPNOTSUPP | Errno::ENOPROTOOPT)
                    if plan[0].1 - plan[0].0 > 1 =>
                {
                    // The kernel or the device cannot segment: send plainly from now on.
                    self.gso = false;
                }
                Err(_) => {
                    // The first message failed (e.g. an unreachable destination): drop
                    // its datagrams and go on with the rest.
                    out.dropped += plan[0].1 - plan[0].0;
                    start = plan[0].1;
                }
            }
        }
        self.items.clear();
        out
    }
}

/// One `sendmmsg` of the planned messages (`plan`: item ranges, several items = GSO).
/// Returns how many messages the kernel took (at least one), or the first one's error.
///
/// The workspace denies `unsafe`; this function is the exception, because no safe
/// wrapper sends a batch whose messages carry different control messages (nix applies
/// one list to all; quinn-udp sends one destination per call). Its tests send through
/// a real socket and check every datagram's size, content and order.
#[allow(unsafe_code)]
fn send_batch(
    fd: std::os::fd::RawFd,
    items: &[(SocketAddr, Vec<u8>)],
    plan: &[(usize, usize)],
) -> Result<usize, Errno> {
    debug_assert!(!plan.is_empty() && plan.len() <= MAX_BATCH);
    let n_iov = plan.last().map_or(0, |p| p.1) - plan[0].0;
    // Everything the headers point into is allocated up front and not touched again
    // until the call returns.
    let mut iovs: Vec<libc::iovec> = Vec::with_capacity(n_iov);
    let names: Vec<SockaddrStorage> = plan
        .iter()
        .map(|&(a, _)| SockaddrStorage::from(items[a].0))
        .collect();
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<u16>() as u32) } as usize;
    // u64 words keep each control buffer aligned for `cmsghdr`.
    let words = space.div_ceil(8);
    let mut control: Vec<u64> = vec![0; words * plan.len()];
    let mut hdrs: Vec<libc::mmsghdr> = Vec::with_capacity(plan.len());
    for &(a, b) in plan {
        for (_, d) in &items[a..b] {
            iovs.push(libc::iovec {
                iov_base: d.as_ptr() as *mut libc::c_void,
                iov_len: d.len(),
            });
        }
    }
    let mut iov_at = 0;
    for (k, &(a, b)) in plan.iter().enumerate() {
        let name = &names[k];
        // SAFETY: an all-zero msghdr is a valid empty header.
        let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
        h.msg_name = name.as_ptr() as *mut libc::c_void;
        h.msg_namelen = name.len();
        h.msg_iov = iovs[iov_at..].as_mut_ptr();
        h.msg_iovlen = (b - a) as _;
        iov_at += b - a;
        if b - a > 1 {
            let seg = items[a].1.len() as u16;
            h.msg_control = control[k * words..].as_mut_ptr() as *mut libc::c_void;
            h.msg_controllen = space as _;
            // SAFETY: msg_control points to `space` zeroed, aligned bytes owned by
            // `control`, which outlives the call; CMSG_FIRSTHDR is non-null for a
            // buffer of CMSG_SPACE(2) bytes.
            unsafe {
                let c = libc::CMSG_FIRSTHDR(&h);
                (*c).cmsg_level = libc::SOL_UDP;
                (*c).cmsg_type = libc::UDP_SEGMENT;
                (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<u16>() as u32) as _;
                std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut u16, seg);
            }
        }
        hdrs.push(libc::mmsghdr {
            msg_hdr: h,
            msg_len: 0,
        });
    }
    // SAFETY: every header points into `iovs`, `names` and `control` (alive and not
    // moved until after the call) and the iovecs into `items`' buffers.
    let r = unsafe {
        libc::sendmmsg(
            fd,
            hdrs.as_mut_ptr(),
            hdrs.len() as libc::c_uint,
            libc::MSG_DONTWAIT,
        )
    };
    if r < 0 {
        Err(Errno::last())
    } else if r == 0 {
        Err(Errno::EAGAIN)
    } else {
        Ok(r as usize)
    }
}

// ---------------------------------------------------------------- receiving

/// One datagram received by [`recv_with_destination`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Bytes written into the buffer.
    pub len: usize,
    pub source: SocketAddr,
    /// The IP the datagram was addressed to (its IP header's destination as it reached
    /// this host, i.e. after any NAT), from `IP_PKTINFO` / `IPV6_PKTINFO`; `None` when
    /// the kernel attached none ([`enable_destination_info`] not called).
    pub destination: Option<IpAddr>,
}

/// Asks the kernel to attach each received datagram's destination address
/// (`IP_PKTINFO`; on an IPv6 socket `IPV6_RECVPKTINFO`, plus `IP_PKTINFO` for a
/// dual-stack socket's IPv4 datagrams when the kernel allows it).
pub fn enable_destination_info(socket: &std::net::UdpSocket) -> std::io::Result<()> {
    use nix::sys::socket::{setsockopt, sockopt};
    match socket.local_addr()? {
        SocketAddr::V4(_) => setsockopt(socket, sockopt::Ipv4PacketInfo, &true)?,
        SocketAddr::V6(_) => {
            setsockopt(socket, sockopt::Ipv6RecvPacketInfo, &true)?;
            let _ = setsockopt(socket, sockopt::Ipv4PacketInfo, &true);
        }
    }
    Ok(())
}

/// A control-message buffer for [`recv_with_destination`] (made once, reused).
pub fn control_buffer() -> Vec<u8> {
    nix::cmsg_space!(libc::in_pktinfo, libc::in6_pktinfo)
}

/// Receives one datagram (non-blocking: `WouldBlock` when there is none) with its source
/// and, when enabled, its destination address. `control` comes from [`control_buffer`].
pub fn recv_with_destination(
    socket: &impl AsRawFd,
    buf: &mut [u8],
    control: &mut [u8],
) -> std::io::Result<Received> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let msg = recvmsg::<SockaddrStorage>(
        socket.as_raw_fd(),
        &mut iov,
        Some(control),
        MsgFlags::MSG_DONTWAIT,
    )?;
    let source = msg
        .address
        .as_ref()
        .and_then(|a| {
            a.as_sockaddr_in()
                .map(|v4| SocketAddr::from(*v4))
                .or_else(|| a.as_sockaddr_in6().map(|v6| SocketAddr::from(*v6)))
        })
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "datagram without an IP source address",
            )
        })?;
    let mut destination = None;
    // Err: the control buffer was too small (truncated): no destination then.
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            match c {
                ControlMessageOwned::Ipv4PacketInfo(info) => {
                    let ip = Ipv4Addr::from(u32::from_be(info.ipi_addr.s_addr));
                    destination = Some(IpAddr::V4(ip));
                }
                ControlMessageOwned::Ipv6PacketInfo(info) => {
                    destination = Some(IpAddr::V6(Ipv6Addr::from(info.ipi6_addr.s6_addr)));
                }
                _ => {}
            }
        }
    }
    Ok(Received {
        len: msg.bytes,
        source,
        destination,
    })
}

/// The destination str0m is told a datagram arrived at, which must be one of the announced
/// ICE host candidates (`announced` IPs, each on the bound port): str0m's ICE agent drops a
/// STUN request whose destination matches no local candidate, and in ICE-lite it has only
/// host candidates (no server-reflexive one with a private base).
///
/// `real` (the datagram's destination IP; `None`: unknown, taken as `bound`'s IP) is kept
/// when it is announced. Otherwise the first announced IP of the same family is used: the
/// datagram reached a socket bound to 0.0.0.0 without destination info, or came through
/// 1:1 NAT, which rewrote the public address to this host's private one. With no announced
/// IP of its family, `real` stays (str0m will not match it).
pub fn candidate_destination(
    real: Option<IpAddr>,
    bound: SocketAddr,
    announced: &[IpAddr],
) -> SocketAddr {
    let real = real.unwrap_or(bound.ip()).to_canonical();
    let ip = if announced.contains(&real) {
        real
    } else {
        announced
            .iter()
            .copied()
            .find(|a| a.is_ipv4() == real.is_ipv4())
            .unwrap_or(real)
    };
    SocketAddr::new(ip, bound.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends one datagram to `to` from a fresh socket and receives it on `rx` (made
    /// non-blocking by the caller's loop: retried until it arrives).
    fn recv_one(rx: &std::net::UdpSocket, to: SocketAddr) -> Received {
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.send_to(b"hello", to).unwrap();
        let mut buf = [0u8; 64];
        let mut control = control_buffer();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        loop {
            match recv_with_destination(rx, &mut buf, &mut control) {
                Ok(r) => {
                    assert_eq!(&buf[..r.len], b"hello");
                    assert_eq!(r.source, tx.local_addr().unwrap());
                    return r;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(std::time::Instant::now() < deadline, "nothing arrived");
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(e) => panic!("recv: {e}"),
            }
        }
    }

    #[test]
    fn a_socket_bound_to_the_unspecified_address_learns_each_datagrams_destination() {
        let rx = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        enable_destination_info(&rx).unwrap();
        let port = rx.local_addr().unwrap().port();
        // 127.0.0.0/8 is all local: two destinations reach the same 0.0.0.0 socket.
        for ip in [Ipv4Addr::new(127, 0, 0, 1), Ipv4Addr::new(127, 0, 0, 2)] {
            let r = recv_one(&rx, SocketAddr::from((ip, port)));
            assert_eq!(r.destination, Some(IpAddr::V4(ip)));
            assert_eq!(r.len, 5);
        }
    }

    #[test]
    fn a_socket_bound_to_one_address_reports_it() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        enable_destination_info(&rx).unwrap();
        let r = recv_one(&rx, rx.local_addr().unwrap());
        assert_eq!(r.destination, Some(IpAddr::from([127, 0, 0, 1])));
    }

    #[test]
    fn without_destination_info_none_is_reported() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let r = recv_one(&rx, rx.local_addr().unwrap());
        assert_eq!(r.destination, None);
    }

    #[test]
    fn destinations_map_to_announced_candidates() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let public = [ip("203.0.113.7"), ip("198.51.100.9"), ip("2001:db8::7")];
        let any: SocketAddr = "0.0.0.0:8443".parse().unwrap();
        let at = |s: &str| SocketAddr::new(ip(s), 8443);
        // An announced destination is kept, whichever of several it is.
        assert_eq!(
            candidate_destination(Some(ip("198.51.100.9")), any, &public),
            at("198.51.100.9")
        );
        assert_eq!(
            candidate_destination(Some(ip("2001:db8::7")), any, &public),
            at("2001:db8::7")
        );
        // 1:1 NAT: the private address the NAT translated to → the first public one of
        // the same family.
        assert_eq!(
            candidate_destination(Some(ip("10.0.0.5")), any, &public),
            at("203.0.113.7")
        );
        assert_eq!(
            candidate_destination(Some(ip("fd00::5")), any, &public),
            at("2001:db8::7")
        );
        // Unknown destination: the bound address stands in (0.0.0.0 → first IPv4).
        assert_eq!(candidate_destination(None, any, &public), at("203.0.113.7"));
        // No public_ips: the bound address is the one candidate, and stays.
        let bound: SocketAddr = "10.0.0.5:8443".parse().unwrap();
        assert_eq!(
            candidate_destination(Some(ip("10.0.0.5")), bound, &[bound.ip()]),
            bound
        );
        // No announced IP of the family: left as it is.
        assert_eq!(
            candidate_destination(Some(ip("fd00::5")), bound, &[bound.ip()]),
            at("fd00::5")
        );
        // An IPv4 datagram on a dual-stack socket (IPv4-mapped) counts as IPv4.
        assert_eq!(
            candidate_destination(Some(ip("::ffff:203.0.113.7")), any, &public),
            at("203.0.113.7")
        );
    }

    #[test]
    fn sends_a_batch_to_several_destinations() {
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let rx: Vec<std::net::UdpSocket> = (0..3)
            .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        let mut q = SendQueue::default();
        for round in 0..50u8 {
            for r in &rx {
                q.push(
                    r.local_addr().unwrap(),
                    vec![round; 100 + usize::from(round)],
                );
            }
        }
        assert_eq!(q.len(), 150);
        let f = q.flush(&tx);
        assert_eq!(f.sent, 150);
        assert_eq!(f.dropped, 0);
        assert!(f.sorted, "three peers interleaved");
        // Sizes grow every round, so each peer's run is cut at every datagram: no GSO.
        assert_eq!(f.gso_messages, 0);
        assert_eq!(f.syscalls, 3, "150 datagrams in batches of 64");
        assert!(q.is_empty());
        let mut buf = [0u8; 512];
        for r in &rx {
            r.set_read_timeout(Some(std::time::Duration::from_secs(2)))
                .unwrap();
            for round in 0..50u8 {
                let n = r.recv(&mut buf).unwrap();
                assert_eq!(n, 100 + usize::from(round));
                assert_eq!(buf[0], round);
            }
        }
    }

    /// Sends `sizes` (datagram i filled with byte i) to one receiver through a queue and
    /// returns the flush outcome and the datagrams as received.
    fn send_sizes(gso: bool, sizes: &[usize]) -> (Flushed, Vec<Vec<u8>>) {
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let mut q = SendQueue::new(gso);
        for (i, n) in sizes.iter().enumerate() {
            q.push(rx.local_addr().unwrap(), vec![i as u8; *n]);
        }
        let f = q.flush(&tx);
        let mut got = Vec::new();
        let mut buf = vec![0u8; 70_000];
        for _ in sizes {
            let n = rx.recv(&mut buf).unwrap();
            got.push(buf[..n].to_vec());
        }
        (f, got)
    }

    fn expect_exact(sizes: &[usize], got: &[Vec<u8>]) {
        assert_eq!(got.len(), sizes.len());
        for (i, (n, d)) in sizes.iter().zip(got).enumerate() {
            assert_eq!(d.len(), *n, "datagram {i} arrived with the wrong size");
            assert!(
                d.iter().all(|b| *b == i as u8),
                "datagram {i} arrived out of order or mixed"
            );
        }
    }

    #[test]
    fn a_run_to_one_destination_goes_as_gso_and_arrives_as_the_original_datagrams() {
        // A keyframe burst: full-size packets, a short last one, then the next frame.
        let mut sizes = vec![1200; 10];
        sizes.push(300);
        sizes.extend([1100, 1100, 1100]);
        let (f, got) = send_sizes(true, &sizes);
        expect_exact(&sizes, &got);
        assert_eq!(f.sent, sizes.len());
        assert_eq!(f.dropped, 0);
        assert_eq!(f.bytes, sizes.iter().sum::<usize>());
        assert_eq!(f.gso_messages, 2, "[1200×10, 300] and [1100×3]");
        assert_eq!(f.syscalls, 1);
    }

    #[test]
    fn runs_are_cut_where_sizes_or_limits_forbid_gso() {
        // A larger datagram after smaller ones, a shorter one mid-run, and more than
        // MAX_SEGMENTS equal datagrams.
        let mut sizes = vec![500, 500, 900, 900, 400, 900];
        sizes.extend(std::iter::repeat_n(200, MAX_SEGMENTS + 5));
        let (f, got) = send_sizes(true, &sizes);
        expect_exact(&sizes, &got);
        assert_eq!(f.sent, sizes.len());
        // [500,500] [900,900,400] [900,200] [200×64] [200×4]: five GSO messages, one call.
        assert_eq!(f.gso_messages, 5, "{f:?}");
        assert_eq!(f.syscalls, 1, "{f:?}");
    }

    #[test]
    fn without_gso_every_datagram_is_its_own_message() {
        let sizes = vec![1200; 20];
        let (f, got) = send_sizes(false, &sizes);
        expect_exact(&sizes, &got);
        assert_eq!(f.gso_messages, 0);
        assert_eq!(f.sent, 20);
    }

    #[test]
    fn an_interleaved_fan_out_is_regrouped_per_peer_in_order() {
        // Three source packets of one frame (1200, 1200, 500 bytes) fanned out to 5 peers,
        // after one unrelated datagram to a sixth: the queue holds p1→s1..s5, p2→…, p3→….
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let peers: Vec<std::net::UdpSocket> = (0..6)
            .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        let mut q = SendQueue::new(true);
        q.push(peers[5].local_addr().unwrap(), vec![9; 80]);
        let sizes = [1200usize, 1200, 500];
        for (k, n) in sizes.iter().enumerate() {
            for p in &peers[..5] {
                q.push(p.local_addr().unwrap(), vec![k as u8; *n]);
            }
        }
        let f = q.flush(&tx);
        assert!(f.sorted);
        assert_eq!(f.sent, 16);
        assert_eq!(
            f.gso_messages, 5,
            "one GSO message per fanned-out peer: {f:?}"
        );
        assert_eq!(f.syscalls, 1);
        let mut buf = [0u8; 2048];
        for p in &peers[..5] {
            p.set_read_timeout(Some(std::time::Duration::from_secs(2)))
                .unwrap();
            for (k, n) in sizes.iter().enumerate() {
                let got = p.recv(&mut buf).unwrap();
                assert_eq!(got, *n);
                assert!(
                    buf[..got].iter().all(|b| *b == k as u8),
                    "peer got packet {k} out of order"
                );
            }
        }
        peers[5]
            .set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        assert_eq!(peers[5].recv(&mut buf).unwrap(), 80);

        // One packet per peer: nothing to regroup, no sort.
        for p in &peers {
            q.push(p.local_addr().unwrap(), vec![1; 100]);
        }
        let f = q.flush(&tx);
        assert!(!f.sorted);
        assert_eq!(f.sent, 6);
    }
}
