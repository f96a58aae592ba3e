//! ICE-TCP, passive (RFC 6544): for networks that block UDP, each media shard also accepts
//! TCP connections on its media port, and carries STUN, DTLS and SRTP on them as RFC 4571
//! frames (a 2-byte big-endian length, then one packet). A browser whose UDP is blocked
//! connects out to the relay's `tcptype passive` candidate by itself; no TURN server is needed
//! when the relay's port is reachable over TCP.
//!
//! This is the driver's side: accepting, framing, per-connection tasks. The relay state
//! machine sees the frames as datagrams of protocol TCP ([`crate::relay::Relay::handle_tcp`])
//! and marks its transmits for a TCP peer ([`crate::relay::Transmit::tcp`]); the shard's loop
//! routes those to the connection's writer. A connection belongs to no session by itself: its
//! first STUN check (ufrag and integrity, as over UDP) ties its address to one, and its frames
//! are dropped and counted like stray datagrams until then.
//!
//! Limits (a TCP connection costs more than a datagram): at most [`MAX_CONNECTIONS`] per shard
//! (more are closed at once), a frame over [`MAX_FRAME`] closes its connection, and a
//! connection silent for [`IDLE`] is closed (a live peer sends a consent check every few
//! seconds).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tracing::{debug, warn};

/// Most simultaneous ICE-TCP connections per shard.
pub const MAX_CONNECTIONS: usize = 2048;
/// The largest frame accepted: a WebRTC packet fits a path MTU (~1500 bytes); a bigger
/// frame is not from a WebRTC peer.
pub const MAX_FRAME: usize = 8192;
/// A connection that sends nothing for this long is closed.
pub const IDLE: Duration = Duration::from_secs(30);
/// Frames queued toward one connection before more are dropped (a peer that does not read).
const WRITE_QUEUE: usize = 512;

/// What a connection's tasks tell the shard.
pub(crate) enum TcpIn {
    /// A connection from `peer`: frames for it go to `writer`.
    Open {
        peer: SocketAddr,
        writer: mpsc::Sender<Vec<u8>>,
    },
    /// One frame from `peer`, received on the local address `local`.
    Frame {
        peer: SocketAddr,
        local: SocketAddr,
        data: Vec<u8>,
    },
    Closed {
        peer: SocketAddr,
    },
}

/// Splits a byte stream into RFC 4571 frames. Sans-IO: fed whatever the socket read.
#[derive(Debug, Default)]
pub struct Deframer {
    buf: Vec<u8>,
}

/// A frame longer than [`MAX_FRAME`] (or empty): the stream is not RFC 4571 WebRTC.
#[derive(Debug, PartialEq, Eq)]
pub struct BadFrame(pub usize);

impl Deframer {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame, if one has arrived.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, BadFrame> {
        if self.buf.len() < 2 {
            return Ok(None);
        }
        let len = usize::from(u16::from_be_bytes([self.buf[0], self.buf[1]]));
        if len == 0 || len > MAX_FRAME {
            return Err(BadFrame(len));
        }
        if self.buf.len() < 2 + len {
            return Ok(None);
        }
        let frame = self.buf[2..2 + len].to_vec();
        self.buf.drain(..2 + len);
        Ok(Some(frame))
    }
}

/// Appends `packet` framed (RFC 4571) to `out`.
pub fn frame_into(out: &mut Vec<u8>, packet: &[u8]) {
    let len = u16::try_from(packet.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&packet[..usize::from(len)]);
}

/// Accepts connections on `listener` for one shard until the shard's runtime ends.
pub(crate) async fn accept(listener: TcpListener, to_shard: mpsc::Sender<TcpIn>) {
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                warn!("ICE-TCP accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if open.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
            debug!(%peer, "ICE-TCP: too many connections, closing");
            continue;
        }
        let Ok(local) = stream.local_addr() else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (mut rd, mut wr) = stream.into_split();
        let (wtx, mut wrx) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
        if to_shard
            .send(TcpIn::Open { peer, writer: wtx })
            .await
            .is_err()
        {
            return;
        }
        open.fetch_add(1, Ordering::Relaxed);
        // Writer: every queued frame in one write.
        tokio::spawn(async move {
            let mut out = Vec::with_capacity(16 * 1024);
            while let Some(p) = wrx.recv().await {
                out.clear();
                frame_into(&mut out, &p);
                while let Ok(p) = wrx.try_recv() {
                    frame_into(&mut out, &p);
                    if out.len() >= 64 * 1024 {
                        break;
                    }
                }
                if wr.write_all(&out).await.is_err() {
                    break;
                }
            }
            let _ = wr.shutdown().await;
        });
        // Reader: frames to the shard until EOF, an error, a bad frame or silence.
        let to_shard = to_shard.clone();
        let open = open.clone();
        tokio::spawn(async move {
            let mut deframer = Deframer::default();
            let mut buf = vec![0u8; 16 * 1024];
            'read: loop {
                let n = match tokio::time::timeout(IDLE, rd.read(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                    Ok(Ok(n)) => n,
                };
                deframer.push(&buf[..n]);
                loop {
                    match deframer.next_frame() {
                        Ok(Some(data)) => {
                            let frame = TcpIn::Frame { peer, local, data };
                            if to_shard.send(frame).await.is_err() {
                                break 'read;
                            }
                        }
                        Ok(None) => break,
                        Err(BadFrame(len)) => {
                            debug!(%peer, len, "ICE-TCP: not an RFC 4571 frame, closing");
                            break 'read;
                        }
                    }
                }
            }
            open.fetch_sub(1, Ordering::Relaxed);
            let _ = to_shard.send(TcpIn::Closed { peer }).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_across_reads_and_joined_in_one_come_out_whole() {
        let mut wire = Vec::new();
        frame_into(&mut wire, b"stun");
        frame_into(&mut wire, &[7u8; 1200]);
        frame_into(&mut wire, b"x");
        let mut d = Deframer::default();
        let mut got = Vec::new();
        for chunk in wire.chunks(5) {
            d.push(chunk);
            while let Some(f) = d.next_frame().unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got, vec![b"stun".to_vec(), vec![7u8; 1200], b"x".to_vec()]);
        assert_eq!(d.next_frame(), Ok(None));
    }

    #[test]
    fn an_oversized_or_empty_frame_is_refused() {
        let mut d = Deframer::default();
        d.push(&((MAX_FRAME + 1) as u16).to_be_bytes());
        assert_eq!(d.next_frame(), Err(BadFrame(MAX_FRAME + 1)));
        let mut d = Deframer::default();
        d.push(&[0, 0, 1]);
        assert_eq!(d.next_frame(), Err(BadFrame(0)));
    }
}
