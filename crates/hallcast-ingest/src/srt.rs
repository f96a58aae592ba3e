//! The SRT listener: encoders push MPEG-TS over SRT (caller mode, as vMix, OBS, hardware
//! encoders and `ffmpeg -f mpegts srt://…` do), each connection becomes a [`Feed`].
//!
//! The SRT protocol is `srt-tokio`'s (listener mode, its access-control hook): every
//! connection request is answered from its `streamid` ([`crate::streamid`]) before the
//! handshake completes:
//! 1. a `streamid` that names no conference and key: rejected (bad request, 1400);
//! 2. [`Feed::start`] publishes to the relay with that key: a refusal (wrong key, no such
//!    conference, already live) is rejected as forbidden (libsrt's `SRT_REJX_FORBIDDEN`, 1403),
//!    any other failure as an internal error (1500), no answer within [`START_TIMEOUT`] or
//!    more than [`MAX_STARTING`] requests at once as unavailable (1503), each with a log line
//!    naming the encoder's address and why;
//! 3. accepted: its bytes go through the MPEG-TS demultiplexer ([`TsDemux`]) into the feed.
//!
//! A connection ends (SRT shutdown to the encoder, the feed's WHIP session deleted) when the
//! encoder leaves, when the stream carries a codec the relay cannot pass on (HEVC, MPEG-2,
//! MP2, AC-3…: a log line names it), when nothing in its first [`SYNC_TIMEOUT`] or
//! [`SYNC_BYTES`] is an MPEG-TS program with H.264 video, or when the relay ends the feed.
//! Datagrams on the port that are not SRT are dropped by `srt-tokio`; a log line counts them
//! (at most one every [`GARBAGE_LOG_INTERVAL`]). One connection's trouble never touches the
//! listener or the other connections: each runs in its own task.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use srt_tokio::access::RejectReason;
use srt_tokio::options::ListenerOptions;
use srt_tokio::{ConnectionRequest, SrtListener, SrtSocket};
use tracing::{debug, info, warn};

use crate::IngestError;
use crate::feed::{Feed, IngestTarget};
use crate::refusal::{Protocol, RefusalKind};
use crate::streamid;
use crate::ts::{TsDemux, TsEvent};

/// How long a new connection may send without an MPEG-TS program with H.264 video.
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(5);
/// How many bytes a new connection may send without one.
pub const SYNC_BYTES: u64 = 4 << 20;
/// At most one log line per this interval about datagrams that are not SRT.
pub const GARBAGE_LOG_INTERVAL: Duration = Duration::from_secs(10);
// Rejection codes as libsrt (and so ffmpeg, OBS, vMix) reads them: its "predefined" range is
// 1000 + an HTTP status (SRT_REJX_BAD_REQUEST, _FORBIDDEN, _ISE, _DOWN). `srt-protocol`'s own
// `ServerRejectReason` numbers them from 2000, which libsrt reports as application-defined.
const REJECT_BAD_REQUEST: i32 = 1400;
const REJECT_FORBIDDEN: i32 = 1403;
const REJECT_ERROR: i32 = 1500;
const REJECT_UNAVAILABLE: i32 = 1503;

/// Connection requests being answered at once (each is a WHIP POST to the relay); more are
/// rejected as unavailable (1503) until one is done.
pub const MAX_STARTING: usize = 16;
/// How long the relay may take to take a feed before the handshake is rejected (callers give
/// up after 3 s by default).
pub const START_TIMEOUT: Duration = Duration::from_millis(2500);

/// A bound SRT listener; [`SrtIngest::serve`] runs it.
#[derive(Debug)]
pub struct SrtIngest {
    listener: SrtListener,
    incoming: srt_tokio::SrtIncoming,
    local_addr: SocketAddr,
}

impl SrtIngest {
    /// Binds `bind` (UDP).
    ///
    /// # Errors
    /// When the address cannot be bound.
    pub async fn bind(bind: SocketAddr) -> std::io::Result<SrtIngest> {
        let socket = tokio::net::UdpSocket::bind(bind).await?;
        let local_addr = socket.local_addr()?;
        let options = ListenerOptions::new(local_addr)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
        let (listener, incoming) = SrtListener::bind_with_socket(options, socket).await?;
        Ok(SrtIngest {
            listener,
            incoming,
            local_addr,
        })
    }

    /// The bound address (the port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves encoders until the listener stops; each connection runs in its own task and
    /// its feed is published to `target`.
    pub async fn serve(self, target: IngestTarget) {
        let SrtIngest {
            mut listener,
            mut incoming,
            local_addr,
        } = self;
        let target = target.for_protocol(Protocol::Srt);
        let mut stats = listener.statistics().clone();
        let mut n_garbage_logged = 0;
        let mut last_garbage_log: Option<Instant> = None;
        let requests = incoming.incoming();
        let starting = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_STARTING));
        loop {
            tokio::select! {
                request = requests.next() => {
                    let Some(request) = request else {
                        warn!(%local_addr, "the SRT listener stopped");
                        return;
                    };
                    // A flood of connection requests must not become a flood of WHIP POSTs (which
                    // all come from loopback and share its request budget): beyond
                    // MAX_STARTING at once, the newest are turned away.
                    match starting.clone().try_acquire_owned() {
                        Ok(permit) => {
                            tokio::spawn(handle(request, target.clone(), permit));
                        }
                        Err(_) => {
                            warn!(
                                remote = %request.remote(),
                                "SRT ingest refused: {MAX_STARTING} connections are being set up already; try again"
                            );
                            tokio::spawn(reject(request, REJECT_UNAVAILABLE));
                        }
                    }
                }
                Some(s) = stats.next() => {
                    let n = s.rx_parse_errors;
                    if n > n_garbage_logged
                        && last_garbage_log.is_none_or(|t| t.elapsed() >= GARBAGE_LOG_INTERVAL)
                    {
                        warn!(
                            %local_addr,
                            n_dropped = n - n_garbage_logged,
                            "SRT ingest: datagrams that are not SRT dropped on the SRT port"
                        );
                        n_garbage_logged = n;
                        last_garbage_log = Some(Instant::now());
                    }
                }
            }
        }
    }
}

/// Answers one connection request, then carries its stream until it ends.
async fn handle(
    request: ConnectionRequest,
    target: IngestTarget,
    starting: tokio::sync::OwnedSemaphorePermit,
) {
    let remote = request.remote();
    let stream_id = request.stream_id().map(|s| s.to_string());
    let wanted = match streamid::parse(stream_id.as_deref()) {
        Ok(w) => w,
        Err(e) => {
            warn!(%remote, "SRT ingest refused: {e}");
            reject(request, REJECT_BAD_REQUEST).await;
            return;
        }
    };
    let conference = wanted.conference;
    let label = format!("srt {remote}");
    let t0 = Instant::now();
    let started = tokio::time::timeout(
        START_TIMEOUT,
        Feed::start(&target, &conference, &wanted.key, &label),
    )
    .await;
    let feed = match started {
        Ok(Ok(feed)) => feed,
        Ok(Err(IngestError::Refused(why))) => {
            warn!(%remote, %conference, "SRT ingest refused: {why}");
            reject(request, REJECT_FORBIDDEN).await;
            return;
        }
        Ok(Err(e)) => {
            warn!(%remote, %conference, "SRT ingest refused: {e}");
            reject(request, REJECT_ERROR).await;
            return;
        }
        Err(_) => {
            warn!(%remote, %conference, "SRT ingest refused: the relay did not take the feed within {START_TIMEOUT:?}");
            reject(request, REJECT_UNAVAILABLE).await;
            return;
        }
    };
    let socket = match request.accept(None).await {
        Ok(s) => s,
        Err(e) => {
            warn!(%remote, %conference, "SRT ingest: the handshake did not complete: {e}");
            feed.stop().await;
            return;
        }
    };
    drop(starting);
    info!(
        %remote,
        %conference,
        accept_ms = t0.elapsed().as_millis() as u64,
        "SRT ingest: encoder connected"
    );
    let mut feed = feed;
    let end = carry(socket, &mut feed, &conference, remote).await;
    match &end {
        End::EncoderLeft => info!(%remote, %conference, "SRT ingest: the encoder disconnected"),
        End::FeedClosed => info!(%remote, %conference, "SRT ingest: the relay ended the feed"),
        End::Refused(why) => {
            warn!(%remote, %conference, "SRT ingest refused: {why}");
            target.report_refusal(&conference, RefusalKind::BadPayload, why);
        }
        End::Unsupported(why) => {
            warn!(%remote, %conference, "SRT ingest refused: {why}");
            target.report_refusal(&conference, RefusalKind::UnsupportedCodec, why);
        }
    }
    feed.stop().await;
}

async fn reject(request: ConnectionRequest, code: i32) {
    if let Err(e) = request.reject(RejectReason::ServerUnrecognized(code)).await {
        debug!("SRT ingest: rejecting a connection: {e}");
    }
}

enum End {
    EncoderLeft,
    FeedClosed,
    /// Not a stream the relay can read (not MPEG-TS, no H.264, malformed).
    Refused(String),
    /// A codec the relay cannot carry.
    Unsupported(String),
}

/// Moves one connection's MPEG-TS into its feed until one side ends.
async fn carry(
    mut socket: SrtSocket,
    feed: &mut Feed,
    conference: &str,
    remote: SocketAddr,
) -> End {
    let mut demux = TsDemux::new();
    let mut n_video = 0;
    let t0 = Instant::now();
    let mut check = tokio::time::interval(Duration::from_millis(500));
    let end = loop {
        tokio::select! {
            data = socket.next() => {
                let Some(Ok((_, bytes))) = data else {
                    break End::EncoderLeft;
                };
                demux.push(&bytes);
                if let Err(end) = forward(&mut demux, feed, &mut n_video) {
                    break end;
                }
            }
            _ = feed.closed() => break End::FeedClosed,
            _ = check.tick() => {
                if let Some(why) = not_a_stream(&demux, n_video, t0.elapsed()) {
                    break End::Refused(why);
                }
            }
        }
    };
    if demux.n_garbage_bytes() > 0 {
        debug!(%remote, %conference, n_bytes = demux.n_garbage_bytes(), "SRT ingest: bytes outside TS packets skipped");
    }
    if !matches!(end, End::EncoderLeft) {
        // SRT shutdown, so the encoder sees the end rather than a timeout.
        let _ = socket.close().await;
    }
    end
}

/// Why a connection that has sent for `elapsed` is not a stream this relay can carry yet.
fn not_a_stream(demux: &TsDemux, n_video: u64, elapsed: Duration) -> Option<String> {
    if n_video > 0 || (elapsed < SYNC_TIMEOUT && demux.n_bytes() < SYNC_BYTES) {
        return None;
    }
    Some(if demux.n_bytes() == 0 {
        format!("nothing received within {SYNC_TIMEOUT:?}")
    } else if !demux.saw_pmt() {
        format!(
            "not MPEG-TS: no program found in {} bytes ({} of them outside TS packets); send \
             MPEG-TS (ffmpeg: -f mpegts)",
            demux.n_bytes(),
            demux.n_garbage_bytes()
        )
    } else if !demux.has_video() {
        "the MPEG-TS program has no H.264 video stream".to_string()
    } else {
        format!("no H.264 keyframe within {SYNC_TIMEOUT:?}")
    })
}

/// Hands the demultiplexer's events to the feed.
fn forward(demux: &mut TsDemux, feed: &mut Feed, n_video: &mut u64) -> Result<(), End> {
    while let Some(event) = demux.poll() {
        let sent = match event {
            TsEvent::Video { pts, dts, data, .. } => {
                *n_video += 1;
                feed.video_h264(pts, dts, &data)
            }
            TsEvent::Audio { pts, asc, frame } => feed.audio_aac(pts, &asc, &frame),
            TsEvent::Unsupported { codec, stream_type } => {
                return Err(End::Unsupported(unsupported(codec, stream_type)));
            }
            TsEvent::VideoLoss => {
                debug!(conference = %feed.conference(), "SRT ingest: video packets lost; waiting for the next keyframe");
                Ok(())
            }
        };
        match sent {
            Ok(()) => {}
            Err(IngestError::Closed) => return Err(End::FeedClosed),
            Err(e @ IngestError::Unsupported(_)) => return Err(End::Unsupported(e.to_string())),
            Err(e) => return Err(End::Refused(e.to_string())),
        }
    }
    Ok(())
}

/// The log line's reason for a codec the relay cannot carry.
pub fn unsupported(codec: &str, stream_type: u8) -> String {
    format!(
        "unsupported codec {codec} (MPEG-TS stream type {stream_type:#04x}); hallcast takes \
         H.264 video and AAC audio: set the encoder to H.264 (x264, no B-frames) and AAC"
    )
}
