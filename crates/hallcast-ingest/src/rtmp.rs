//! The RTMP listener: `rtmp://HOST:PORT/{conference}` with the stream key as the stream name
//! (how OBS and vMix split "server" and "stream key"; `rtmp://HOST:PORT/{conference}/{key}`
//! as one URL for ffmpeg).
//!
//! Each connection is its own task: the handshake and the RTMP session are `rml_rtmp`'s
//! sans-IO state machines fed from the socket; a publish request starts a [`Feed`] (the
//! relay checks the key: a refusal is answered with `NetStream.Publish.BadName` and the
//! connection closed); video and audio messages go through [`crate::flv`] into the feed.
//! A bad connection (truncated handshake, garbage, unsupported codec) ends with one log line
//! and touches nothing else.

use std::net::SocketAddr;
use std::time::Duration;

use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, error, info, trace, warn};

use crate::IngestError;
use crate::feed::{Feed, IngestTarget};
use crate::flv::{self, AudioTag, VideoTag};
use crate::h264::{self, AvcConfig};
use crate::refusal::{Protocol, RefusalKind};

/// How long the RTMP handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection may stay silent before it is dropped.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Read buffer per connection.
const READ_BUF: usize = 64 * 1024;
/// Connections open at once from one address: a hall's encoder needs one (a backup encoder
/// on the same host a second); a stranger holding idle connections must not lock every
/// other address out.
pub const MAX_CONNECTIONS_PER_ADDRESS: usize = 8;
/// Connections open at once in all.
pub const MAX_CONNECTIONS: usize = 256;
/// Refused connections are logged at most this often (with how many since the last line).
const REFUSED_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Who holds how many connections: admitted ones are counted until their [`Slot`] drops.
#[derive(Debug, Default)]
pub struct Admission {
    by_address: std::collections::HashMap<std::net::IpAddr, usize>,
    total: usize,
}

impl Admission {
    /// A connection from `ip`, if it is within both caps.
    pub fn admit(
        this: &std::sync::Arc<std::sync::Mutex<Admission>>,
        ip: std::net::IpAddr,
    ) -> Option<Slot> {
        let mut a = this
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = a.by_address.get(&ip).copied().unwrap_or(0);
        if n >= MAX_CONNECTIONS_PER_ADDRESS || a.total >= MAX_CONNECTIONS {
            return None;
        }
        a.by_address.insert(ip, n + 1);
        a.total += 1;
        Some(Slot {
            admission: this.clone(),
            ip,
        })
    }
}

/// One admitted connection's place; given back when dropped.
#[derive(Debug)]
pub struct Slot {
    admission: std::sync::Arc<std::sync::Mutex<Admission>>,
    ip: std::net::IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut a = self
            .admission
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        a.total -= 1;
        if let Some(n) = a.by_address.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                a.by_address.remove(&self.ip);
            }
        }
    }
}

/// A bound RTMP listener.
#[derive(Debug)]
pub struct RtmpListener {
    listener: TcpListener,
}

impl RtmpListener {
    /// Binds `addr` (port 0: an ephemeral port, see [`RtmpListener::local_addr`]).
    pub async fn bind(addr: SocketAddr) -> std::io::Result<Self> {
        Ok(Self {
            listener: TcpListener::bind(addr).await?,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts connections forever, each in its own task publishing to `target`.
    pub async fn serve(self, target: IngestTarget) {
        let target = target.for_protocol(Protocol::Rtmp);
        let admission = std::sync::Arc::new(std::sync::Mutex::new(Admission::default()));
        let mut refused = 0u64;
        let mut refused_logged: Option<tokio::time::Instant> = None;
        loop {
            match self.listener.accept().await {
                Ok((stream, peer)) => {
                    let Some(slot) = Admission::admit(&admission, peer.ip()) else {
                        // Closed at once: the address (or the listener) is at its cap.
                        drop(stream);
                        refused += 1;
                        if refused_logged.is_none_or(|t| t.elapsed() >= REFUSED_LOG_INTERVAL) {
                            warn!(
                                %peer,
                                n_refused = refused,
                                "RTMP connection refused: at most {MAX_CONNECTIONS_PER_ADDRESS} \
                                 connections per address and {MAX_CONNECTIONS} in all are open"
                            );
                            refused = 0;
                            refused_logged = Some(tokio::time::Instant::now());
                        }
                        continue;
                    };
                    let target = target.clone();
                    tokio::spawn(async move {
                        let _slot = slot;
                        let _ = stream.set_nodelay(true);
                        match connection(stream, peer, &target).await {
                            Ok(()) => info!(%peer, "RTMP connection closed"),
                            Err(End::Refused(m)) => {
                                warn!(%peer, "RTMP publish refused: {m}; connection closed");
                            }
                            Err(End::Unsupported(m)) => {
                                error!(%peer, "RTMP stream refused: {m}; connection closed");
                            }
                            Err(e) => warn!(%peer, "RTMP connection dropped: {e}"),
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait a little, keep serving.
                    warn!("RTMP accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// Why a connection ended early.
#[derive(Debug, thiserror::Error)]
enum End {
    #[error("handshake failed: {0}")]
    Handshake(String),
    #[error("RTMP protocol error: {0}")]
    Protocol(String),
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("invalid stream: {0}")]
    Invalid(String),
    #[error("silent for {0:?}")]
    Idle(Duration),
    #[error("the relay ended the feed (conference ended or relay stopping)")]
    FeedClosed,
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
}

impl From<IngestError> for End {
    fn from(e: IngestError) -> Self {
        match e {
            IngestError::Refused(m) => End::Refused(m),
            IngestError::Unsupported(m) => End::Unsupported(m),
            IngestError::Closed => End::FeedClosed,
            e @ (IngestError::Publish(_) | IngestError::Invalid(_)) => End::Invalid(e.to_string()),
        }
    }
}

async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    target: &IngestTarget,
) -> Result<(), End> {
    let mut buf = vec![0u8; READ_BUF];
    let remaining = handshake(&mut stream, &mut buf).await?;
    debug!(%peer, "RTMP handshake done");
    let (session, results) = ServerSession::new(ServerSessionConfig::new())
        .map_err(|e| End::Protocol(format!("{e:?}")))?;
    let mut conn = Conn {
        session,
        peer,
        target,
        app: String::new(),
        feed: None,
        avc: None,
        asc: None,
        n_invalid: 0,
    };
    let result = async {
        conn.handle(&mut stream, results).await?;
        if !remaining.is_empty() {
            let results = conn.input(&remaining)?;
            conn.handle(&mut stream, results).await?;
        }
        loop {
            let read = {
                let closed = async {
                    match &conn.feed {
                        Some(f) => f.closed().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    r = tokio::time::timeout(IDLE_TIMEOUT, stream.read(&mut buf)) => Some(r),
                    () = closed => None,
                }
            };
            let n = match read {
                None => return Err(End::FeedClosed),
                Some(Err(_)) => return Err(End::Idle(IDLE_TIMEOUT)),
                Some(Ok(r)) => r?,
            };
            if n == 0 {
                return Ok(());
            }
            let results = conn.input(&buf[..n])?;
            if matches!(conn.handle(&mut stream, results).await?, Flow::Finished) {
                return Ok(());
            }
        }
    }
    .await;
    if let Some(feed) = conn.feed.take() {
        feed.stop().await;
    }
    result
}

/// Runs the server side of the handshake; returns the bytes that came after it.
async fn handshake(stream: &mut TcpStream, buf: &mut [u8]) -> Result<Vec<u8>, End> {
    let mut hs = Handshake::new(PeerType::Server);
    let mut n_total = 0usize;
    let work = async {
        // Socket errors count as a failed handshake, with how far it got.
        let io = |e: std::io::Error, n: usize| End::Handshake(format!("{e} after {n} bytes"));
        loop {
            let n = stream.read(buf).await.map_err(|e| io(e, n_total))?;
            if n == 0 {
                return Err(End::Handshake(format!(
                    "the peer closed the connection after {n_total} bytes"
                )));
            }
            n_total += n;
            match hs
                .process_bytes(&buf[..n])
                .map_err(|e| End::Handshake(format!("{e:?} (not an RTMP client?)")))?
            {
                HandshakeProcessResult::InProgress { response_bytes } => {
                    stream
                        .write_all(&response_bytes)
                        .await
                        .map_err(|e| io(e, n_total))?;
                }
                HandshakeProcessResult::Completed {
                    response_bytes,
                    remaining_bytes,
                } => {
                    stream
                        .write_all(&response_bytes)
                        .await
                        .map_err(|e| io(e, n_total))?;
                    return Ok(remaining_bytes);
                }
            }
        }
    };
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, work).await {
        Ok(r) => r,
        Err(_) => Err(End::Handshake(format!(
            "incomplete after {HANDSHAKE_TIMEOUT:?}"
        ))),
    }
}

#[derive(Debug)]
enum Flow {
    Continue,
    /// The publisher said it is done.
    Finished,
    /// Send what is queued (the refusal), then end with this.
    Refuse(End),
}

/// One RTMP connection's state.
struct Conn<'a> {
    session: ServerSession,
    peer: SocketAddr,
    target: &'a IngestTarget,
    /// The RTMP application: the conference.
    app: String,
    feed: Option<Feed>,
    avc: Option<AvcConfig>,
    asc: Option<Vec<u8>>,
    n_invalid: u64,
}

impl Conn<'_> {
    fn input(&mut self, bytes: &[u8]) -> Result<Vec<ServerSessionResult>, End> {
        self.session
            .handle_input(bytes)
            .map_err(|e| End::Protocol(format!("{e:?}")))
    }

    async fn handle(
        &mut self,
        stream: &mut TcpStream,
        results: Vec<ServerSessionResult>,
    ) -> Result<Flow, End> {
        let mut queue = std::collections::VecDeque::from(results);
        let mut flow = Flow::Continue;
        while let Some(r) = queue.pop_front() {
            match r {
                ServerSessionResult::OutboundResponse(p) => stream.write_all(&p.bytes).await?,
                ServerSessionResult::RaisedEvent(ev) => {
                    let (more, f) = self.event(ev).await?;
                    queue.extend(more);
                    if !matches!(f, Flow::Continue) {
                        flow = f;
                    }
                }
                ServerSessionResult::UnhandleableMessageReceived(m) => {
                    trace!(peer = %self.peer, ?m, "RTMP message ignored");
                }
            }
        }
        match flow {
            Flow::Refuse(end) => {
                let _ = stream.flush().await;
                Err(end)
            }
            f => Ok(f),
        }
    }

    async fn event(
        &mut self,
        ev: ServerSessionEvent,
    ) -> Result<(Vec<ServerSessionResult>, Flow), End> {
        let protocol = |e: rml_rtmp::sessions::ServerSessionError| End::Protocol(format!("{e:?}"));
        match ev {
            ServerSessionEvent::ConnectionRequested {
                request_id,
                app_name,
            } => {
                self.app = app_name.trim_matches('/').to_owned();
                debug!(peer = %self.peer, app = %self.app, "RTMP connect");
                let r = self.session.accept_request(request_id).map_err(protocol)?;
                Ok((r, Flow::Continue))
            }
            ServerSessionEvent::PublishStreamRequested {
                request_id,
                app_name,
                stream_key,
                ..
            } => {
                let conference = app_name.trim_matches('/').to_owned();
                // Encoders may append parameters to the stream name (`key?foo=bar`).
                let key = stream_key.split('?').next().unwrap_or_default().to_owned();
                if self.feed.is_some() {
                    let r = self
                        .session
                        .reject_request(
                            request_id,
                            "NetStream.Publish.BadName",
                            "already publishing",
                        )
                        .map_err(protocol)?;
                    return Ok((r, Flow::Continue));
                }
                let label = format!("rtmp {}", self.peer);
                match Feed::start(self.target, &conference, &key, &label).await {
                    Ok(feed) => {
                        self.feed = Some(feed);
                        let r = self.session.accept_request(request_id).map_err(protocol)?;
                        info!(peer = %self.peer, %conference, "RTMP publish accepted");
                        Ok((r, Flow::Continue))
                    }
                    Err(e) => {
                        let message = e.to_string();
                        // Tell the encoder before closing, so it shows why.
                        let r = self
                            .session
                            .reject_request(request_id, "NetStream.Publish.BadName", &message)
                            .unwrap_or_default();
                        Ok((r, Flow::Refuse(e.into())))
                    }
                }
            }
            ServerSessionEvent::PublishStreamFinished { .. } => Ok((vec![], Flow::Finished)),
            ServerSessionEvent::VideoDataReceived {
                data, timestamp, ..
            } => {
                let r = self.video(&data, i64::from(timestamp.value));
                self.report(r)?;
                Ok((vec![], Flow::Continue))
            }
            ServerSessionEvent::AudioDataReceived {
                data, timestamp, ..
            } => {
                let r = self.audio(&data, i64::from(timestamp.value));
                self.report(r)?;
                Ok((vec![], Flow::Continue))
            }
            ServerSessionEvent::StreamMetadataChanged { metadata, .. } => {
                debug!(peer = %self.peer, ?metadata, "RTMP stream metadata");
                Ok((vec![], Flow::Continue))
            }
            ServerSessionEvent::PlayStreamRequested { request_id, .. } => {
                let r = self
                    .session
                    .reject_request(
                        request_id,
                        "NetStream.Play.Failed",
                        "this server takes publishers only; watch with the viewer page",
                    )
                    .map_err(protocol)?;
                Ok((r, Flow::Continue))
            }
            other => {
                trace!(peer = %self.peer, ?other, "RTMP event");
                Ok((vec![], Flow::Continue))
            }
        }
    }

    fn video(&mut self, body: &[u8], ts_ms: i64) -> Result<(), End> {
        let Some(feed) = self.feed.as_mut() else {
            return Ok(());
        };
        match flv::parse_video(body) {
            Ok(VideoTag::AvcSequenceHeader(record)) => {
                let avc = AvcConfig::parse(record)?;
                info!(
                    peer = %self.peer,
                    conference = feed.conference(),
                    profile = format!("{:02x}{:02x}{:02x}", avc.profile[0], avc.profile[1], avc.profile[2]),
                    "RTMP H.264 sequence header"
                );
                self.avc = Some(avc);
            }
            Ok(VideoTag::AvcNalus {
                keyframe,
                cts,
                data,
            }) => {
                let Some(avc) = &self.avc else {
                    // Frames before the sequence header cannot be decoded.
                    return Ok(());
                };
                let mut annexb = if keyframe {
                    avc.parameter_sets_annexb()
                } else {
                    Vec::new()
                };
                match h264::avcc_to_annexb(data, avc.length_size) {
                    Ok(au) => annexb.extend_from_slice(&au),
                    Err(e) => return self.invalid(e),
                }
                let dts = ts_ms * 90;
                feed.video_h264(dts + i64::from(cts) * 90, dts, &annexb)?;
            }
            Ok(VideoTag::Other) => {}
            Err(IngestError::Invalid(m)) => return self.invalid(IngestError::Invalid(m)),
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    fn audio(&mut self, body: &[u8], ts_ms: i64) -> Result<(), End> {
        let Some(feed) = self.feed.as_mut() else {
            return Ok(());
        };
        match flv::parse_audio(body) {
            Ok(AudioTag::AacSequenceHeader(asc)) => self.asc = Some(asc.to_vec()),
            Ok(AudioTag::AacRaw(frame)) => {
                if let Some(asc) = &self.asc {
                    feed.audio_aac(ts_ms * 90, asc, frame)?;
                }
            }
            Err(IngestError::Invalid(m)) => return self.invalid(IngestError::Invalid(m)),
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    /// A media message's outcome: a stream ended for its codec or for bad data is reported
    /// to the relay (the conference's operator sees it), then passed on.
    fn report(&self, r: Result<(), End>) -> Result<(), End> {
        if let (Err(e), Some(feed)) = (&r, &self.feed) {
            let kind = match e {
                End::Unsupported(_) => Some(RefusalKind::UnsupportedCodec),
                End::Invalid(_) => Some(RefusalKind::BadPayload),
                _ => None,
            };
            if let Some(kind) = kind {
                self.target
                    .report_refusal(feed.conference(), kind, &e.to_string());
            }
        }
        r
    }

    /// A malformed message: skipped, logged now and then.
    fn invalid(&mut self, e: IngestError) -> Result<(), End> {
        if self.n_invalid.is_multiple_of(100) {
            warn!(peer = %self.peer, "RTMP: skipping a malformed message: {e}");
        }
        self.n_invalid += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::{Arc, Mutex};

    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))
    }

    #[test]
    fn connections_are_capped_per_address_and_in_all_and_given_back() {
        let a = Arc::new(Mutex::new(Admission::default()));
        let mut from_one: Vec<Slot> = (0..MAX_CONNECTIONS_PER_ADDRESS)
            .map(|_| Admission::admit(&a, ip(1)).expect("within the per-address cap"))
            .collect();
        assert!(
            Admission::admit(&a, ip(1)).is_none(),
            "one address over its cap"
        );
        let other = Admission::admit(&a, ip(2)).expect("another address is not locked out");
        from_one.pop();
        assert!(
            Admission::admit(&a, ip(1)).is_some(),
            "a closed connection gives its place back"
        );
        drop((from_one, other));
        assert_eq!(a.lock().unwrap().total, 0);
        assert!(a.lock().unwrap().by_address.is_empty());

        let all: Vec<Slot> = (0..MAX_CONNECTIONS as u32)
            .map(|i| Admission::admit(&a, ip(i)).expect("within the total cap"))
            .collect();
        assert!(
            Admission::admit(&a, ip(100_000)).is_none(),
            "a new address over the total cap"
        );
        drop(all);
        assert!(Admission::admit(&a, ip(100_000)).is_some());
    }
}
