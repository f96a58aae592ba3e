//! The three "encoders": the same access units pushed over WHIP (webrtc-rs, the publisher the
//! ingest gateway itself uses), RTMP (an `rml_rtmp` client session sending FLV video tags over
//! TCP) and SRT (an `srt-tokio` caller sending MPEG-TS, 7 TS packets per message).
//! [`Push::send`] returns the moment the frame was handed to the transport.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use futures_util::SinkExt;
use hallcast_client::{FeedPublisher, FeedVideo};
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult, PublishRequestType,
};
use rml_rtmp::time::RtmpTimestamp;
use srt_tokio::SrtSocket;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;

use crate::media::{self, TsMux};

/// Which ingest path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Path {
    Whip,
    Rtmp,
    Srt,
}

impl Path {
    pub fn name(self) -> &'static str {
        match self {
            Path::Whip => "whip",
            Path::Rtmp => "rtmp",
            Path::Srt => "srt",
        }
    }
}

/// What the pushes need from the demo's info file.
#[derive(Debug, Clone)]
pub struct Urls {
    pub whip_url: String,
    pub stream_key: String,
    pub rtmp_url: String,
    pub srt_url: String,
}

/// A connected push.
pub enum Push {
    Whip(FeedPublisher),
    Rtmp(Box<Rtmp>),
    Srt { socket: Box<SrtSocket>, mux: TsMux },
}

pub struct Rtmp {
    session: ClientSession,
    write: OwnedWriteHalf,
    reader: tokio::task::JoinHandle<()>,
    sent_header: bool,
}

/// 90 kHz ticks to RTMP milliseconds.
fn rtmp_ms(pts90: u64) -> RtmpTimestamp {
    RtmpTimestamp::new((pts90 / 90) as u32)
}

impl Push {
    /// Connects and, for WHIP, waits for the WebRTC connection (so the first frames are not
    /// queued); RTMP and SRT are ready when their publish is accepted (the gateway's own WHIP
    /// session comes up behind them).
    pub async fn connect(
        path: Path,
        urls: &Urls,
        srt_latency: Option<Duration>,
    ) -> anyhow::Result<Push> {
        match path {
            Path::Whip => {
                let p = hallcast_client::publish_feed(
                    &urls.whip_url,
                    &urls.stream_key,
                    Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                )
                .await
                .context("WHIP publish")?;
                tokio::time::timeout(Duration::from_secs(20), p.connected())
                    .await
                    .context("the WHIP publisher did not connect")?;
                if p.is_closed() {
                    bail!("the WHIP session ended while connecting");
                }
                Ok(Push::Whip(p))
            }
            Path::Rtmp => Ok(Push::Rtmp(Box::new(
                tokio::time::timeout(Duration::from_secs(20), rtmp_connect(&urls.rtmp_url))
                    .await
                    .context("RTMP connect timed out")??,
            ))),
            Path::Srt => {
                let rest = urls
                    .srt_url
                    .strip_prefix("srt://")
                    .with_context(|| format!("{} is not srt://", urls.srt_url))?;
                let (addr, query) = rest.split_once('?').context("no streamid in srt_url")?;
                let streamid = query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("streamid="))
                    .context("no streamid in srt_url")?;
                let addr: SocketAddr = addr.parse().context("srt_url address")?;
                // libsrt's default send buffer (SRTO_SNDBUF: 8192 packets), as encoders
                // have it: srt-tokio's default (46592 bytes, ~35 packets) drops the start of
                // any frame larger than that (a 720p IDR) before it is acknowledged, and the
                // gateway then waits for the next keyframe, forever.
                let mut b = SrtSocket::builder().set(|o| {
                    o.sender.buffer_size = srt_tokio::options::ByteCount(8192 * 1500);
                });
                if let Some(l) = srt_latency {
                    b = b.latency(l);
                }
                let socket =
                    tokio::time::timeout(Duration::from_secs(20), b.call(addr, Some(streamid)))
                        .await
                        .context("SRT call timed out")?
                        .context("SRT call")?;
                Ok(Push::Srt {
                    socket: Box::new(socket),
                    mux: TsMux::default(),
                })
            }
        }
    }

    /// The SRT latency both ends agreed on (the larger of the two asked for).
    pub fn srt_latency(&self) -> Option<Duration> {
        match self {
            Push::Srt { socket, .. } => Some(socket.settings().send_tsbpd_latency),
            _ => None,
        }
    }

    /// Sends frame `n` (Annex B with its SEI) stamped `pts` (90 kHz); returns when it was
    /// handed to the transport.
    pub async fn send(
        &mut self,
        pts: u64,
        annexb: Vec<u8>,
        keyframe: bool,
        first: bool,
    ) -> anyhow::Result<Instant> {
        match self {
            Push::Whip(p) => {
                let frame = FeedVideo {
                    ts: pts as i64,
                    annexb: Bytes::from(annexb),
                    keyframe,
                };
                let t = Instant::now();
                // A full queue drops the frame: the viewer counts it as lost.
                if !p.send_video(frame) && p.is_closed() {
                    bail!("the WHIP session is over");
                }
                Ok(t)
            }
            Push::Rtmp(r) => {
                let mut bytes = Vec::new();
                if !r.sent_header {
                    let (sps, pps) = media::parameter_sets(&annexb)
                        .context("the first frame carries no SPS/PPS")?;
                    let header = media::flv_avc_sequence_header(&sps, &pps);
                    bytes.extend(packet(r.session.publish_video_data(
                        Bytes::from(header),
                        rtmp_ms(pts),
                        false,
                    ))?);
                    r.sent_header = true;
                }
                let tag = media::flv_avc_nalus(&annexb, keyframe);
                bytes.extend(packet(r.session.publish_video_data(
                    Bytes::from(tag),
                    rtmp_ms(pts),
                    false,
                ))?);
                let t = Instant::now();
                r.write.write_all(&bytes).await.context("RTMP write")?;
                Ok(t)
            }
            Push::Srt { socket, mux } => {
                let ts = mux.frame(pts, &annexb, keyframe || first);
                let t = Instant::now();
                for chunk in ts.chunks(7 * 188) {
                    socket
                        .feed((t, Bytes::copy_from_slice(chunk)))
                        .await
                        .context("SRT send")?;
                }
                socket.flush().await.context("SRT send")?;
                Ok(t)
            }
        }
    }

    /// Ends the push the way an encoder does (WHIP DELETE, RTMP deleteStream and close, SRT
    /// shutdown).
    pub async fn stop(self) {
        match self {
            Push::Whip(p) => {
                let _ = p.stop().await;
            }
            Push::Rtmp(mut r) => {
                for res in r.session.stop_publishing().unwrap_or_default() {
                    if let ClientSessionResult::OutboundResponse(p) = res {
                        let _ = r.write.write_all(&p.bytes).await;
                    }
                }
                let _ = r.write.shutdown().await;
                r.reader.abort();
            }
            Push::Srt { mut socket, .. } => {
                let _ =
                    tokio::time::timeout(Duration::from_secs(2), socket.close_and_finish()).await;
            }
        }
    }
}

fn packet(
    r: Result<ClientSessionResult, rml_rtmp::sessions::ClientSessionError>,
) -> anyhow::Result<Vec<u8>> {
    match r.map_err(|e| anyhow::anyhow!("RTMP session: {e:?}"))? {
        ClientSessionResult::OutboundResponse(p) => Ok(p.bytes),
        _ => Ok(Vec::new()),
    }
}

/// `rtmp://HOST:PORT/{app}/{stream key}`: TCP, handshake, connect, publish.
async fn rtmp_connect(url: &str) -> anyhow::Result<Rtmp> {
    let rest = url
        .strip_prefix("rtmp://")
        .with_context(|| format!("{url} is not rtmp://"))?;
    let (host, path) = rest.split_once('/').context("no app in rtmp_url")?;
    let (app, key) = path.rsplit_once('/').context("no stream key in rtmp_url")?;
    let mut stream = TcpStream::connect(host).await.context("RTMP TCP connect")?;
    // Each tag leaves at once, as librtmp (OBS) sets it.
    stream.set_nodelay(true)?;

    let mut hs = Handshake::new(PeerType::Client);
    let p0p1 = hs
        .generate_outbound_p0_and_p1()
        .map_err(|e| anyhow::anyhow!("RTMP handshake: {e:?}"))?;
    stream.write_all(&p0p1).await?;
    let mut buf = vec![0u8; 16 * 1024];
    let leftover = loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            bail!("the server closed during the RTMP handshake");
        }
        match hs
            .process_bytes(&buf[..n])
            .map_err(|e| anyhow::anyhow!("RTMP handshake: {e:?}"))?
        {
            HandshakeProcessResult::InProgress { response_bytes } => {
                stream.write_all(&response_bytes).await?;
            }
            HandshakeProcessResult::Completed {
                response_bytes,
                remaining_bytes,
            } => {
                stream.write_all(&response_bytes).await?;
                break remaining_bytes;
            }
        }
    };

    let (mut session, initial) = ClientSession::new(ClientSessionConfig::new())
        .map_err(|e| anyhow::anyhow!("RTMP session: {e:?}"))?;
    let mut out = Vec::new();
    for r in initial {
        if let ClientSessionResult::OutboundResponse(p) = r {
            out.extend(p.bytes);
        }
    }
    out.extend(packet(session.request_connection(app.to_owned()))?);
    stream.write_all(&out).await?;
    let mut input = leftover;
    let mut connected = false;
    loop {
        let results = session
            .handle_input(&input)
            .map_err(|e| anyhow::anyhow!("RTMP session: {e:?}"))?;
        let mut out = Vec::new();
        for r in results {
            match r {
                ClientSessionResult::OutboundResponse(p) => out.extend(p.bytes),
                ClientSessionResult::RaisedEvent(ClientSessionEvent::ConnectionRequestAccepted) => {
                    connected = true;
                    out.extend(packet(
                        session.request_publishing(key.to_owned(), PublishRequestType::Live),
                    )?);
                }
                ClientSessionResult::RaisedEvent(
                    ClientSessionEvent::ConnectionRequestRejected { description },
                ) => bail!("RTMP connect rejected: {description}"),
                ClientSessionResult::RaisedEvent(ClientSessionEvent::PublishRequestAccepted) => {
                    stream.write_all(&out).await?;
                    let (mut read, write) = stream.into_split();
                    // The server's acknowledgements and pings are read and dropped.
                    let reader = tokio::spawn(async move {
                        let mut buf = vec![0u8; 4096];
                        while matches!(read.read(&mut buf).await, Ok(n) if n > 0) {}
                    });
                    return Ok(Rtmp {
                        session,
                        write,
                        reader,
                        sent_header: false,
                    });
                }
                ClientSessionResult::RaisedEvent(
                    ClientSessionEvent::UnhandleableOnStatusCode { code },
                ) => bail!("RTMP publish refused: {code}"),
                _ => {}
            }
        }
        stream.write_all(&out).await?;
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            bail!(
                "the server closed the RTMP connection ({})",
                if connected {
                    "publish refused"
                } else {
                    "connect refused"
                }
            );
        }
        input = buf[..n].to_vec();
    }
}
