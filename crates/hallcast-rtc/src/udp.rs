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
//! **Source address** ([`SendQueue::push_from`]): a datagram may name the local IP it
//! leaves from, sent as an `IP_PKTINFO` (`ipi_spec_dst`) or `IPV6_PKTINFO` (`ipi6_addr`)
//! control message beside any `UDP_SEGMENT` one. On a socket bound to 0.0.0.0 / `::` the
//! kernel would otherwise pick the source by routing; a peer's ICE agent takes a STUN
//! response only from the address its request went to, so the engine names the address
//! the peer's datagrams arrived at (the real one from [`recv_with_destination`], never an
//! announced IP that is not local, as behind 1:1 NAT). A GSO run never spans two sources.
//! A source the host does not have makes the kernel refuse the message; when that error is
//! also one a refused GSO message gives (EINVAL), the run's first datagram is tried alone
//! to tell which: GSO is turned off only if it then goes through, else the run is dropped.
//!
//! `nix::sendmmsg` gives every message the same control messages, so the batch is built
//! with `libc::sendmmsg` directly (the only `unsafe` on the relay's data path).
//!
//! **Receiving** ([`recv_with_destination`]): `recvmsg` with `IP_PKTINFO` /
//! `IPV6_PKTINFO`, so every datagram comes with the address it was sent to (a socket bound
//! to 0.0.0.0 has many; behind 1:1 NAT it is the private one). [`candidate_destination`]
//! turns that into the announced ICE candidate str0m must be told about; replies to the
//! peer leave from the real address (above).

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

/// One queued datagram.
struct Queued {
    dest: SocketAddr,
    /// The local IP it must leave from (an `IP_PKTINFO` / `IPV6_PKTINFO` control message);
    /// `None`: the kernel picks (by routing, or the bound address).
    source: Option<IpAddr>,
    data: Vec<u8>,
}

/// Queued datagrams, flushed with `sendmmsg` (and GSO where sizes allow).
pub struct SendQueue {
    items: Vec<Queued>,
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

    /// Queues a datagram to `dest`, from the address the kernel picks.
    pub fn push(&mut self, dest: SocketAddr, datagram: Vec<u8>) {
        self.push_from(dest, None, datagram);
    }

    /// Queues a datagram to `dest` that leaves from `source` when given: a local IP of this
    /// host (on a socket bound to 0.0.0.0 / `::`, the address the peer's datagrams arrived
    /// at). Sending from an address the host does not have fails, and the datagram is
    /// dropped.
    pub fn push_from(&mut self, dest: SocketAddr, source: Option<IpAddr>, datagram: Vec<u8>) {
        if self.gso && !self.interleaved && self.items.last().is_none_or(|q| q.dest != dest) {
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
        self.items.push(Queued {
            dest,
            source,
            data: datagram,
        });
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// End (exclusive) of the message starting at item `i`: one datagram, or with GSO
    /// the longest run to the same destination, from the same source, that one
    /// `UDP_SEGMENT` send can carry.
    fn message_end(&self, i: usize) -> usize {
        let first = &self.items[i];
        let seg = first.data.len();
        let mut end = i + 1;
        if !self.gso || seg == 0 {
            return end;
        }
        let mut total = seg;
        while end < self.items.len() && end - i < MAX_SEGMENTS {
            let Queued { dest, source, data } = &self.items[end];
            if *dest != first.dest
                || *source != first.source
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
            self.items.sort_by_key(|q| q.dest);
            out.sorted = true;
        }
        self.interleaved = false;
        self.heads = [None; HEADS];
        let mut start = 0;
        let mut plan: Vec<(usize, usize)> = Vec::with_capacity(MAX_BATCH);
        // A GSO message with a source address failed with an error that GSO and a source
        // the host no longer has (EINVAL) both give: its first datagram goes alone, to tell
        // which. `Some(end)`: the failed run's end.
        let mut probe: Option<usize> = None;
        while start < self.items.len() {
            plan.clear();
            let mut i = start;
            while i < self.items.len() && plan.len() < MAX_BATCH {
                let end = if probe.is_some() && i == start {
                    i + 1
                } else {
                    self.message_end(i)
                };
                plan.push((i, end));
                i = end;
            }
            out.syscalls += 1;
            let probing = probe.take();
            match send_batch(fd, &self.items, &plan) {
                Ok(n) => {
                    if probing.is_some() {
                        // Plainly it went: segmenting was what the kernel refused.
                        self.gso = false;
                    }
                    for &(a, b) in &plan[..n] {
                        out.sent += b - a;
                        out.bytes += self.items[a..b].iter().map(|q| q.data.len()).sum::<usize>();
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
                    if self.items[start].source.is_some() {
                        probe = Some(plan[0].1);
                    } else {
                        // The kernel or the device cannot segment: send plainly from now on.
                        self.gso = false;
                    }
                }
                Err(_) => {
                    // The first message failed (e.g. an unreachable destination, a source
                    // address gone; a failed probe: the whole run): drop its datagrams and
                    // go on with the rest.
                    let end = probing.unwrap_or(plan[0].1);
                    out.dropped += end - start;
                    start = end;
                }
            }
        }
        self.items.clear();
        out
    }
}

/// One `sendmmsg` of the planned messages (`plan`: item ranges, several items = GSO).
/// A message carries a `UDP_SEGMENT` control message when it has several datagrams, and an
/// `IP_PKTINFO` (IPv4 source; also on an IPv6 socket sending to an IPv4-mapped peer) or
/// `IPV6_PKTINFO` one when its datagrams have a source address.
/// Returns how many messages the kernel took (at least one), or the first one's error.
///
/// The workspace denies `unsafe`; this function is the exception, because no safe
/// wrapper sends a batch whose messages carry different control messages (nix applies
/// one list to all; quinn-udp sends one destination per call). Its tests send through
/// a real socket and check every datagram's size, content and order.
#[allow(unsafe_code)]
fn send_batch(
    fd: std::os::fd::RawFd,
    items: &[Queued],
    plan: &[(usize, usize)],
) -> Result<usize, Errno> {
    /// Writes one control message (`level`, `ty`, `value`) at `at` and returns the bytes
    /// it takes (`CMSG_SPACE`).
    ///
    /// # Safety
    /// `at` must be aligned for `cmsghdr` and have `CMSG_SPACE(size_of::<T>())` writable
    /// bytes.
    unsafe fn put_cmsg<T>(at: *mut u8, level: libc::c_int, ty: libc::c_int, value: T) -> usize {
        let size = std::mem::size_of::<T>() as u32;
        // SAFETY: as the caller promises; CMSG_DATA points inside the same CMSG_SPACE bytes.
        unsafe {
            let c = at as *mut libc::cmsghdr;
            (*c).cmsg_level = level;
            (*c).cmsg_type = ty;
            (*c).cmsg_len = libc::CMSG_LEN(size) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut T, value);
            libc::CMSG_SPACE(size) as usize
        }
    }

    debug_assert!(!plan.is_empty() && plan.len() <= MAX_BATCH);
    let n_iov = plan.last().map_or(0, |p| p.1) - plan[0].0;
    // Everything the headers point into is allocated up front and not touched again
    // until the call returns.
    let mut iovs: Vec<libc::iovec> = Vec::with_capacity(n_iov);
    let names: Vec<SockaddrStorage> = plan
        .iter()
        .map(|&(a, _)| SockaddrStorage::from(items[a].dest))
        .collect();
    // SAFETY: CMSG_SPACE only computes a size.
    let (seg_space, info4_space, info6_space) = unsafe {
        (
            libc::CMSG_SPACE(std::mem::size_of::<u16>() as u32) as usize,
            libc::CMSG_SPACE(std::mem::size_of::<libc::in_pktinfo>() as u32) as usize,
            libc::CMSG_SPACE(std::mem::size_of::<libc::in6_pktinfo>() as u32) as usize,
        )
    };
    // Room for one message's control messages: a segment size and a source.
    let space = seg_space + info4_space.max(info6_space);
    // u64 words keep each control buffer aligned for `cmsghdr`.
    let words = space.div_ceil(8);
    let with_control = plan
        .iter()
        .filter(|&&(a, b)| b - a > 1 || items[a].source.is_some())
        .count();
    let mut control: Vec<u64> = vec![0; words * with_control];
    let mut control_at = 0;
    let mut hdrs: Vec<libc::mmsghdr> = Vec::with_capacity(plan.len());
    for &(a, b) in plan {
        for q in &items[a..b] {
            iovs.push(libc::iovec {
                iov_base: q.data.as_ptr() as *mut libc::c_void,
                iov_len: q.data.len(),
            });
        }
    }
    // Raw pointers taken once (`Vec::as_mut_ptr` makes no intermediate reference), so
    // the headers' pointers stay valid while later ones are made.
    let iov_base = iovs.as_mut_ptr();
    let control_base = control.as_mut_ptr();
    let mut iov_at = 0;
    for (k, &(a, b)) in plan.iter().enumerate() {
        let name = &names[k];
        // SAFETY: an all-zero msghdr is a valid empty header.
        let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
        h.msg_name = name.as_ptr() as *mut libc::c_void;
        h.msg_namelen = name.len();
        // SAFETY: `iov_at` < `iovs.len()`: the plan's ranges cover exactly the iovecs.
        h.msg_iov = unsafe { iov_base.add(iov_at) };
        h.msg_iovlen = (b - a) as _;
        iov_at += b - a;
        let source = items[a].source.map(|ip| ip.to_canonical());
        if b - a > 1 || source.is_some() {
            debug_assert!(control_at < with_control);
            // SAFETY: `control_at` < `with_control`, the number of `words`-sized slots.
            let buf = unsafe { control_base.add(control_at * words) } as *mut u8;
            control_at += 1;
            let mut used = 0;
            // SAFETY: `buf` is `words` zeroed u64s owned by `control`, which outlives the
            // call: 8-aligned, and `used` stays a multiple of CMSG_SPACE's alignment, so
            // every header written is aligned; at most one segment size and one source
            // are written, which is what `space` has room for.
            unsafe {
                if b - a > 1 {
                    let seg = items[a].data.len() as u16;
                    used += put_cmsg(buf.add(used), libc::SOL_UDP, libc::UDP_SEGMENT, seg);
                }
                match source {
                    Some(IpAddr::V4(ip)) => {
                        let info = libc::in_pktinfo {
                            ipi_ifindex: 0,
                            ipi_spec_dst: libc::in_addr {
                                s_addr: u32::from(ip).to_be(),
                            },
                            ipi_addr: libc::in_addr { s_addr: 0 },
                        };
                        used += put_cmsg(buf.add(used), libc::IPPROTO_IP, libc::IP_PKTINFO, info);
                    }
                    Some(IpAddr::V6(ip)) => {
                        let info = libc::in6_pktinfo {
                            ipi6_addr: libc::in6_addr {
                                s6_addr: ip.octets(),
                            },
                            ipi6_ifindex: 0,
                        };
                        used +=
                            put_cmsg(buf.add(used), libc::IPPROTO_IPV6, libc::IPV6_PKTINFO, info);
                    }
                    None => {}
                }
            }
            h.msg_control = buf as *mut libc::c_void;
            h.msg_controllen = used as _;
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

    /// Receives `n` datagrams on `rx` and returns each one's content and source address.
    fn recv_from_n(rx: &std::net::UdpSocket, n: usize) -> Vec<(Vec<u8>, SocketAddr)> {
        rx.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let mut buf = vec![0u8; 70_000];
        (0..n)
            .map(|_| {
                let (len, from) = rx.recv_from(&mut buf).unwrap();
                (buf[..len].to_vec(), from)
            })
            .collect()
    }

    #[test]
    fn a_socket_bound_to_the_unspecified_address_sends_from_the_source_asked_for() {
        // 127.0.0.0/8 is all local; the kernel's own choice towards 127.0.0.1 is 127.0.0.1.
        let tx = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        let port = tx.local_addr().unwrap().port();
        let rx: Vec<std::net::UdpSocket> = (0..3)
            .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        let to = |i: usize| rx[i].local_addr().unwrap();
        let from = |last: u8| Some(IpAddr::from([127, 0, 0, last]));
        let mut q = SendQueue::new(true);
        // rx0: one datagram from 127.0.0.2. rx1: a GSO run from 127.0.0.3, then a run from
        // 127.0.0.2 (the source changes: a new message). rx2: the kernel's choice.
        q.push_from(to(0), from(2), vec![0; 100]);
        for k in 0..5u8 {
            q.push_from(to(1), from(3), vec![k; 1200]);
        }
        for k in 5..8u8 {
            q.push_from(to(1), from(2), vec![k; 1200]);
        }
        q.push(to(2), vec![9; 50]);
        let f = q.flush(&tx);
        assert_eq!(f.sent, 10, "{f:?}");
        assert_eq!(f.dropped, 0, "{f:?}");
        assert_eq!(f.gso_messages, 2, "[1200×5] and [1200×3]: {f:?}");
        assert_eq!(f.syscalls, 1, "{f:?}");
        let at = |last: u8| SocketAddr::from(([127, 0, 0, last], port));

        let got = recv_from_n(&rx[0], 1);
        assert_eq!(got[0], (vec![0; 100], at(2)));
        let got = recv_from_n(&rx[1], 8);
        for (k, (data, src)) in got.iter().enumerate() {
            assert_eq!(data, &vec![k as u8; 1200], "datagram {k} out of order");
            let want = if k < 5 { at(3) } else { at(2) };
            assert_eq!(*src, want, "datagram {k} left from the wrong address");
        }
        let got = recv_from_n(&rx[2], 1);
        assert_eq!(got[0], (vec![9; 50], at(1)));
    }

    #[test]
    fn sources_survive_the_regrouping_of_an_interleaved_fan_out() {
        let tx = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        let port = tx.local_addr().unwrap().port();
        let rx: Vec<std::net::UdpSocket> = (0..3)
            .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        let mut q = SendQueue::new(true);
        for k in 0..4u8 {
            for (i, r) in rx.iter().enumerate() {
                let src = IpAddr::from([127, 0, 0, 2 + i as u8]);
                q.push_from(r.local_addr().unwrap(), Some(src), vec![k; 1000]);
            }
        }
        let f = q.flush(&tx);
        assert!(f.sorted);
        assert_eq!(f.sent, 12);
        assert_eq!(f.gso_messages, 3, "one run per peer: {f:?}");
        for (i, r) in rx.iter().enumerate() {
            let want = SocketAddr::from(([127, 0, 0, 2 + i as u8], port));
            for (k, (data, src)) in recv_from_n(r, 4).into_iter().enumerate() {
                assert_eq!(data, vec![k as u8; 1000]);
                assert_eq!(src, want);
            }
        }
    }

    /// Queues a GSO run (and a shorter last datagram) from `bad`, an address this host does
    /// not have, then a run from `good`, all to `rx`; checks that only the first run is
    /// dropped, the second arrives from `good`, and GSO stays on.
    fn bad_source_then_good(
        tx: &std::net::UdpSocket,
        rx: &std::net::UdpSocket,
        bad: IpAddr,
        good: IpAddr,
    ) {
        let to = rx.local_addr().unwrap();
        let mut q = SendQueue::new(true);
        for _ in 0..4 {
            q.push_from(to, Some(bad), vec![7; 800]);
        }
        q.push_from(to, Some(bad), vec![8; 100]);
        for k in 0..3u8 {
            q.push_from(to, Some(good), vec![k; 800]);
        }
        let f = q.flush(tx);
        assert_eq!(f.dropped, 5, "{f:?}");
        assert_eq!(f.sent, 3, "{f:?}");
        assert_eq!(f.gso_messages, 1, "{f:?}");
        assert!(q.gso(), "a bad source is not GSO's fault");
        for (k, (data, src)) in recv_from_n(rx, 3).into_iter().enumerate() {
            assert_eq!(data, vec![k as u8; 800]);
            assert_eq!(src.ip(), good);
        }
    }

    #[test]
    fn a_source_the_host_does_not_have_drops_its_datagrams_and_keeps_gso() {
        // TEST-NET addresses are none of this host's: the kernel refuses them. For IPv4 with
        // ENETUNREACH (EINVAL on older kernels); for IPv6 with EINVAL, which a refused GSO
        // message also gives: the run's first datagram is then tried alone, fails as well,
        // and the run is dropped without turning GSO off.
        let tx = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        bad_source_then_good(
            &tx,
            &rx,
            IpAddr::from([192, 0, 2, 1]),
            IpAddr::from([127, 0, 0, 2]),
        );
        let (Ok(tx), Ok(rx)) = (
            std::net::UdpSocket::bind("[::]:0"),
            std::net::UdpSocket::bind("[::1]:0"),
        ) else {
            eprintln!("no IPv6 loopback here: IPv6 skipped");
            return;
        };
        bad_source_then_good(
            &tx,
            &rx,
            "2001:db8::1".parse().unwrap(),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        );
    }

    #[test]
    fn an_ipv6_socket_sends_from_the_source_asked_for() {
        // A dual-stack socket: to an IPv4-mapped peer from an IPv4 source (IP_PKTINFO), and
        // to an IPv6 peer from ::1 (IPV6_PKTINFO; loopback has no second IPv6 address).
        let Ok(tx) = std::net::UdpSocket::bind("[::]:0") else {
            eprintln!("no IPv6 here: skipped");
            return;
        };
        let port = tx.local_addr().unwrap().port();
        let rx4 = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mapped = SocketAddr::new(
            Ipv4Addr::LOCALHOST.to_ipv6_mapped().into(),
            rx4.local_addr().unwrap().port(),
        );
        let mut q = SendQueue::new(true);
        for k in 0..3u8 {
            q.push_from(mapped, Some(IpAddr::from([127, 0, 0, 2])), vec![k; 600]);
        }
        let rx6 = std::net::UdpSocket::bind("[::1]:0").ok();
        if let Some(rx6) = &rx6 {
            for k in 0..3u8 {
                q.push_from(
                    rx6.local_addr().unwrap(),
                    Some(IpAddr::V6(Ipv6Addr::LOCALHOST)),
                    vec![k; 600],
                );
            }
        }
        let f = q.flush(&tx);
        assert_eq!(f.dropped, 0, "{f:?}");
        for (k, (data, src)) in recv_from_n(&rx4, 3).into_iter().enumerate() {
            assert_eq!(data, vec![k as u8; 600]);
            assert_eq!(src, SocketAddr::from(([127, 0, 0, 2], port)));
        }
        if let Some(rx6) = &rx6 {
            for (k, (data, src)) in recv_from_n(rx6, 3).into_iter().enumerate() {
                assert_eq!(data, vec![k as u8; 600]);
                assert_eq!(src, SocketAddr::new(Ipv6Addr::LOCALHOST.into(), port));
            }
        }
    }
}
