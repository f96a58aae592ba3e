//! Batched sending: every datagram the engine produces while handling one wake-up
//! (a burst of received packets, a command, a timer) is queued and then handed to
//! the kernel with `sendmmsg`, up to [`MAX_BATCH`] datagrams per system call. A
//! fan-out of one packet to N subscribers thus costs N/64 syscalls, not N.

use std::io::IoSlice;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, sendmmsg};

/// Datagrams per `sendmmsg` call.
pub const MAX_BATCH: usize = 64;

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
}

/// Queued datagrams, flushed with `sendmmsg`.
#[derive(Default)]
pub struct SendQueue {
    items: Vec<(SocketAddr, Vec<u8>)>,
}

impl SendQueue {
    pub fn push(&mut self, dest: SocketAddr, datagram: Vec<u8>) {
        self.items.push((dest, datagram));
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Sends everything queued. Datagrams the kernel refuses (full socket buffer)
    /// are dropped and counted: this is UDP, and the stack's NACK/RTX repairs loss.
    pub fn flush(&mut self, socket: &impl AsRawFd) -> Flushed {
        let mut out = Flushed::default();
        let fd = socket.as_raw_fd();
        let mut start = 0;
        while start < self.items.len() {
            let chunk = &self.items[start..(start + MAX_BATCH).min(self.items.len())];
            let slices: Vec<[IoSlice<'_>; 1]> =
                chunk.iter().map(|(_, d)| [IoSlice::new(d)]).collect();
            let addrs: Vec<Option<SockaddrStorage>> = chunk
                .iter()
                .map(|(a, _)| Some(SockaddrStorage::from(*a)))
                .collect();
            let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(chunk.len(), None);
            let sent = match sendmmsg(
                fd,
                &mut headers,
                &slices,
                &addrs,
                [],
                MsgFlags::MSG_DONTWAIT,
            ) {
                Ok(results) => results.count(),
                Err(nix::errno::Errno::EAGAIN) => {
                    // The socket buffer is full: everything still queued is dropped.
                    out.dropped += self.items.len() - start;
                    break;
                }
                Err(_) => 0,
            };
            if sent == 0 {
                // The first datagram failed (EAGAIN, or an error such as an
                // unreachable destination): drop it and go on with the rest.
                out.dropped += 1;
                start += 1;
                continue;
            }
            out.sent += sent;
            out.bytes += chunk[..sent].iter().map(|(_, d)| d.len()).sum::<usize>();
            start += sent;
        }
        self.items.clear();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
