//! The floor of per-packet relay cost on this machine: what forwarding the e2e bench's packet
//! stream to N subscribers costs with no WebRTC stack at all.
//!
//! Per source packet and per subscriber the sender does only what any SRTP relay must: copy the
//! packet (a 12-byte RTP header with the subscriber's SSRC and sequence number, then the payload)
//! into a fresh buffer, protect it with the subscriber's own key — AEAD_AES_256_GCM as RFC 7714,
//! the profile str0m 0.25 (dimpl 0.9, DTLS 1.2) negotiates with str0m peers and with browsers —
//! and queue it in the relay's own [`SendQueue`] (sendmmsg, UDP GSO), flushed once per turn.
//! No ICE, DTLS, RTCP, NACK history, header extensions, session lookup or pacing logic.
//!
//! The packets are the e2e bench's: the load generator's pre-encoded 720p H.264 loop cut into
//! RTP payloads the way str0m's packetizer does it for the publisher (STAP-A for SPS+PPS, single
//! NAL units, FU-A; 1120-byte payloads: str0m's 1150-byte MTU less the SRTP tag, 16-aligned) at
//! 30 frames/s, and the Opus tone at 50 packets/s.
//!
//! **Turns.** The relay flushes its queue once per wake-up; a wake-up handles whatever arrived.
//! `--turn frame` gives the floor the most favourable case: all packets of a video frame in one
//! turn, written subscriber by subscriber, so each subscriber's packets of the frame form one
//! GSO run. `--turn packet` flushes after every source packet (no GSO run longer than one).
//!
//! **What is measured.** The receivers (N UDP sockets on 127.0.0.1) live in a child process
//! (`floor --receive N`) so that this process's CPU (`getrusage(RUSAGE_SELF)`, user + system)
//! is the sender alone: building, protecting and sending, kernel send path included (on
//! loopback, delivery into the receiving sockets is done by the sending syscall and is counted
//! here too, as it is for the relay). Wall time is not used except to pace the stream.
//!
//! Output: one JSON object on stdout.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use aws_lc_rs::aead::{AES_128_GCM, AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use clap::{Parser, ValueEnum};
use hallcast_load::media::{H264_LOOP, H264_LOOP_FPS, OPUS_OGG, h264_access_units, opus_packets};
use hallcast_rtc::udp::{Flushed, SendQueue, grow_buffers};
use nix::sys::resource::{UsageWho, getrusage};

/// str0m's default datagram MTU (`DATAGRAM_MTU_TARGET`) less its SRTP overhead (the largest
/// tag, 16), rounded down to the SRTP block size: the payload size its packetizer is given.
const PAYLOAD_MTU: usize = (1150 - 16) / 16 * 16;
const RTP_HEADER: usize = 12;
const TAG_LEN: usize = 16;
const PT_VIDEO: u8 = 96;
const PT_AUDIO: u8 = 111;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Turn {
    /// A video frame's packets (or one audio packet) per flush.
    Frame,
    /// One source packet per flush.
    Packet,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Cipher {
    /// SRTP_AEAD_AES_256_GCM: what str0m 0.25 negotiates (DTLS 1.2 server and client).
    Aes256Gcm,
    /// SRTP_AEAD_AES_128_GCM, for comparison.
    Aes128Gcm,
}

#[derive(Debug, Parser)]
#[command(about = "Floor of per-packet relay cost: copy + SRTP + sendmmsg/GSO, no WebRTC stack")]
struct Args {
    /// Subscribers (receiving sockets).
    #[arg(long, short = 'n', default_value_t = 100)]
    subscribers: usize,
    /// Measured window (seconds).
    #[arg(long, default_value_t = 20.0)]
    duration: f64,
    /// Unmeasured lead-in (seconds).
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// UDP GSO in the send queue.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    gso: bool,
    #[arg(long, value_enum, default_value_t = Turn::Frame)]
    turn: Turn,
    #[arg(long, value_enum, default_value_t = Cipher::Aes256Gcm)]
    cipher: Cipher,
    /// Internal: run as the receiver process with this many sockets.
    #[arg(long, hide = true)]
    receive: Option<usize>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(n) = args.receive {
        return receive(n);
    }
    send(&args)
}

// ------------------------------------------------------------------------------ the stream

/// One RTP payload of the source stream.
struct SourcePacket {
    video: bool,
    marker: bool,
    payload: Vec<u8>,
}

/// One turn of the source: what arrives together, and when (from the stream's start).
struct SourceTurn {
    at: Duration,
    /// RTP timestamp increment of this turn's stream before it.
    ts_step: u32,
    packets: Vec<SourcePacket>,
}

/// The e2e publisher's stream over one loop of the H.264 file (10 s): video frames at 30/s,
/// Opus packets at 50/s, in time order.
fn source_turns() -> anyhow::Result<Vec<SourceTurn>> {
    let units = h264_access_units(H264_LOOP);
    let opus = opus_packets(OPUS_OGG)?;
    let mut turns = Vec::new();
    let mut pk = H264Packetizer::default();
    let frame = Duration::from_secs(1) / H264_LOOP_FPS;
    for (i, u) in units.iter().enumerate() {
        let payloads = pk.packetize(&u.data);
        let last = payloads.len().saturating_sub(1);
        turns.push(SourceTurn {
            at: frame * i as u32,
            ts_step: 90_000 / H264_LOOP_FPS,
            packets: payloads
                .into_iter()
                .enumerate()
                .map(|(k, payload)| SourcePacket {
                    video: true,
                    marker: k == last,
                    payload,
                })
                .collect(),
        });
    }
    let span = frame * units.len() as u32;
    let audio_step = Duration::from_millis(20);
    let mut k = 0usize;
    while audio_step * (k as u32) < span {
        turns.push(SourceTurn {
            at: audio_step * k as u32,
            ts_step: 960,
            packets: vec![SourcePacket {
                video: false,
                marker: false,
                payload: opus[k % opus.len()].to_vec(),
            }],
        });
        k += 1;
    }
    turns.sort_by_key(|t| t.at);
    Ok(turns)
}

/// str0m 0.25's H.264 packetizer (`packet/h264.rs`) as the publisher's frame writer uses it:
/// SPS and PPS are held back and sent as one STAP-A before the next NAL unit, NAL units that
/// fit go whole, larger ones as FU-A; delimiters are dropped.
#[derive(Default)]
struct H264Packetizer {
    sps: Option<Vec<u8>>,
    pps: Option<Vec<u8>>,
}

impl H264Packetizer {
    fn packetize(&mut self, annexb: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for nal in nals(annexb) {
            self.emit(nal, &mut out);
        }
        out
    }

    fn emit(&mut self, nal: &[u8], out: &mut Vec<Vec<u8>>) {
        let mtu = PAYLOAD_MTU;
        let ty = nal[0] & 0x1f;
        match ty {
            9 => return,
            7 => {
                self.sps = Some(nal.to_vec());
                return;
            }
            8 => {
                self.pps = Some(nal.to_vec());
                return;
            }
            _ => {}
        }
        if let (Some(sps), Some(pps)) = (self.sps.take(), self.pps.take()) {
            let mut stap = vec![24u8];
            stap.extend((sps.len() as u16).to_be_bytes());
            stap.extend_from_slice(&sps);
            stap.extend((pps.len() as u16).to_be_bytes());
            stap.extend_from_slice(&pps);
            if stap.len() <= mtu {
                out.push(stap);
            }
        }
        if nal.len() <= mtu {
            out.push(nal.to_vec());
            return;
        }
        let body = &nal[1..];
        let chunks: Vec<&[u8]> = body.chunks(mtu - 2).collect();
        let last = chunks.len() - 1;
        for (i, c) in chunks.into_iter().enumerate() {
            let mut p = Vec::with_capacity(2 + c.len());
            p.push(28 | (nal[0] & 0x60));
            let mut h = ty;
            if i == 0 {
                h |= 0x80;
            } else if i == last {
                h |= 0x40;
            }
            p.push(h);
            p.extend_from_slice(c);
            out.push(p);
        }
    }
}

/// NAL units of an Annex B stream (start codes removed).
fn nals(s: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= s.len() {
        if s[i] == 0 && s[i + 1] == 0 && s[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut v = Vec::new();
    for (k, &a) in starts.iter().enumerate() {
        let mut end = starts.get(k + 1).map_or(s.len(), |&n| n - 3);
        while end > a && s[end - 1] == 0 {
            end -= 1;
        }
        if end > a {
            v.push(&s[a..end]);
        }
    }
    v
}

// ------------------------------------------------------------------------------ SRTP

/// One outgoing RTP stream to one subscriber.
struct Stream {
    ssrc: u32,
    /// Extended sequence number: ROC << 16 | SEQ.
    index: u64,
    ts: u32,
}

/// A subscriber: its address, its SRTP key and salt, its two streams.
struct Subscriber {
    dest: SocketAddr,
    key: LessSafeKey,
    salt: [u8; 12],
    video: Stream,
    audio: Stream,
}

impl Subscriber {
    /// The SRTP packet of `p` for this subscriber (RFC 3550 header, RFC 7714 AEAD): header and
    /// payload copied into a fresh buffer, payload sealed in place, tag appended.
    fn protect(&mut self, p: &SourcePacket) -> Vec<u8> {
        let (s, pt) = if p.video {
            (&mut self.video, PT_VIDEO)
        } else {
            (&mut self.audio, PT_AUDIO)
        };
        let seq = s.index as u16;
        let roc = (s.index >> 16) as u32;
        s.index += 1;
        let mut buf = Vec::with_capacity(RTP_HEADER + p.payload.len() + TAG_LEN);
        buf.push(0x80);
        buf.push(pt | if p.marker { 0x80 } else { 0 });
        buf.extend_from_slice(&seq.to_be_bytes());
        buf.extend_from_slice(&s.ts.to_be_bytes());
        buf.extend_from_slice(&s.ssrc.to_be_bytes());
        buf.extend_from_slice(&p.payload);
        // RFC 7714 §8.1: IV = (0x0000 || SSRC || ROC || SEQ) XOR salt.
        let mut iv = [0u8; 12];
        iv[2..6].copy_from_slice(&s.ssrc.to_be_bytes());
        iv[6..10].copy_from_slice(&roc.to_be_bytes());
        iv[10..12].copy_from_slice(&seq.to_be_bytes());
        for (b, k) in iv.iter_mut().zip(self.salt) {
            *b ^= k;
        }
        let (header, body) = buf.split_at_mut(RTP_HEADER);
        let tag = self
            .key
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(iv), Aad::from(&*header), body)
            .expect("AES-GCM seal");
        buf.extend_from_slice(tag.as_ref());
        buf
    }
}

/// Deterministic key material (a benchmark needs no secrecy; distinct keys per subscriber do
/// matter: one key schedule each, as in the relay).
fn material(i: usize, len: usize) -> Vec<u8> {
    let mut x = (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

// ------------------------------------------------------------------------------ sender

fn cpu_seconds() -> (f64, f64) {
    let u = getrusage(UsageWho::RUSAGE_SELF).expect("getrusage");
    let s = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 * 1e-6;
    (s(u.user_time()), s(u.system_time()))
}

#[derive(Default)]
struct Totals {
    source_packets: u64,
    datagrams: u64,
    flushed: Flushed,
    flushes: u64,
}

impl Totals {
    fn add(&mut self, f: Flushed) {
        self.flushes += 1;
        self.flushed.sent += f.sent;
        self.flushed.bytes += f.bytes;
        self.flushed.dropped += f.dropped;
        self.flushed.gso_messages += f.gso_messages;
        self.flushed.syscalls += f.syscalls;
    }
}

fn send(args: &Args) -> anyhow::Result<()> {
    let n = args.subscribers;
    anyhow::ensure!(n > 0, "at least one subscriber");
    let turns = source_turns()?;
    let loop_len = Duration::from_secs(1) / H264_LOOP_FPS * 300;

    // The receivers, in their own process.
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .args(["--receive", &n.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting the receiver process")?;
    let mut child_out = BufReader::new(child.stdout.take().expect("piped"));
    let mut line = String::new();
    child_out.read_line(&mut line)?;
    let ports: Vec<u16> = serde_json::from_str::<serde_json::Value>(&line)
        .context("receiver ports")?["ports"]
        .as_array()
        .context("ports")?
        .iter()
        .map(|p| p.as_u64().unwrap_or(0) as u16)
        .collect();
    anyhow::ensure!(ports.len() == n, "receiver opened {} sockets", ports.len());

    let alg = match args.cipher {
        Cipher::Aes256Gcm => &AES_256_GCM,
        Cipher::Aes128Gcm => &AES_128_GCM,
    };
    let mut subs: Vec<Subscriber> = ports
        .iter()
        .enumerate()
        .map(|(i, &port)| {
            let m = material(i, alg.key_len() + 12);
            let key = LessSafeKey::new(UnboundKey::new(alg, &m[..alg.key_len()]).expect("key"));
            let mut salt = [0u8; 12];
            salt.copy_from_slice(&m[alg.key_len()..]);
            Subscriber {
                dest: SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port),
                key,
                salt,
                // Start near a ROC boundary so the extended index is exercised.
                video: Stream {
                    ssrc: 0x1000_0000 + i as u32,
                    index: 65_000,
                    ts: 0,
                },
                audio: Stream {
                    ssrc: 0x2000_0000 + i as u32,
                    index: 65_000,
                    ts: 0,
                },
            }
        })
        .collect();

    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    grow_buffers(&socket);
    socket.set_nonblocking(true)?;
    let mut sendq = SendQueue::new(args.gso);

    let warmup = Duration::from_secs_f64(args.warmup);
    let window = Duration::from_secs_f64(args.duration);
    let start = Instant::now();
    let mut all = Totals::default();
    let mut measured = Totals::default();
    let mut cpu0 = None;
    let mut cpu1 = (0.0, 0.0);
    let mut t_window = (start, start);
    'outer: for lap in 0u32.. {
        for t in &turns {
            let due = start + loop_len * lap + t.at;
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            let elapsed = due.saturating_duration_since(start);
            if elapsed >= warmup + window {
                cpu1 = cpu_seconds();
                t_window.1 = Instant::now();
                break 'outer;
            }
            let in_window = elapsed >= warmup;
            if in_window && cpu0.is_none() {
                cpu0 = Some(cpu_seconds());
                t_window.0 = Instant::now();
            }
            let video = t.packets[0].video;
            for s in &mut subs {
                let st = if video { &mut s.video } else { &mut s.audio };
                st.ts = st.ts.wrapping_add(t.ts_step);
            }
            let counters = if in_window { &mut measured } else { &mut all };
            match args.turn {
                Turn::Frame => {
                    for s in &mut subs {
                        for p in &t.packets {
                            let d = s.protect(p);
                            sendq.push(s.dest, d);
                        }
                    }
                    counters.add(sendq.flush(&socket));
                }
                Turn::Packet => {
                    for p in &t.packets {
                        for s in &mut subs {
                            let d = s.protect(p);
                            sendq.push(s.dest, d);
                        }
                        counters.add(sendq.flush(&socket));
                    }
                }
            }
            counters.source_packets += t.packets.len() as u64;
            counters.datagrams += (t.packets.len() * n) as u64;
        }
    }
    let cpu0 = cpu0.context("the window never started")?;

    // Let the receivers drain, then ask for their count.
    std::thread::sleep(Duration::from_millis(300));
    drop(child.stdin.take());
    let mut rest = String::new();
    child_out.read_to_string(&mut rest)?;
    let status = child.wait()?;
    if !status.success() {
        bail!("receiver process failed: {status}");
    }
    let rx: serde_json::Value = serde_json::from_str(rest.trim()).context("receiver report")?;
    let received = rx["datagrams"].as_u64().unwrap_or(0);

    let user = cpu1.0 - cpu0.0;
    let sys = cpu1.1 - cpu0.1;
    let cpu = user + sys;
    let m = &measured;
    let sent_total = (all.flushed.sent + m.flushed.sent) as u64;
    let secs = (t_window.1 - t_window.0).as_secs_f64();
    let report = serde_json::json!({
        "n": n,
        "gso": args.gso,
        "gso_in_use_at_end": sendq.gso(),
        "turn": format!("{:?}", args.turn).to_lowercase(),
        "cipher": match args.cipher { Cipher::Aes256Gcm => "SRTP_AEAD_AES_256_GCM", Cipher::Aes128Gcm => "SRTP_AEAD_AES_128_GCM" },
        "window_secs": secs,
        "source_packets": m.source_packets,
        "source_packets_per_sec": m.source_packets as f64 / secs,
        "datagrams_sent": m.flushed.sent,
        "datagrams_per_sec": m.flushed.sent as f64 / secs,
        "avg_datagram_bytes": m.flushed.bytes as f64 / m.flushed.sent.max(1) as f64,
        "cpu_seconds": cpu,
        "cpu_user_seconds": user,
        "cpu_sys_seconds": sys,
        "cores": cpu / secs,
        "us_per_packet": cpu * 1e6 / m.datagrams.max(1) as f64,
        "datagrams_dropped_send": m.flushed.dropped,
        "flushes": m.flushes,
        "syscalls": m.flushed.syscalls,
        "datagrams_per_syscall": m.flushed.sent as f64 / m.flushed.syscalls.max(1) as f64,
        "gso_messages": m.flushed.gso_messages,
        "gso_messages_per_sec": m.flushed.gso_messages as f64 / secs,
        "whole_run": {
            "datagrams_sent": sent_total,
            "datagrams_dropped_send": all.flushed.dropped + m.flushed.dropped,
            "datagrams_received": received,
            "datagrams_lost": sent_total.saturating_sub(received),
            "receiver_cpu_seconds": rx["cpu_seconds"],
        },
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

// ------------------------------------------------------------------------------ receiver

/// The receiver process: `n` sockets on 127.0.0.1, their ports printed as one JSON line,
/// drained until stdin closes; then the datagrams and bytes received and this process's CPU.
fn receive(n: usize) -> anyhow::Result<()> {
    let mut sockets = Vec::with_capacity(n);
    for _ in 0..n {
        let s = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
        grow_buffers(&s);
        s.set_nonblocking(true)?;
        sockets.push(s);
    }
    let ports: Vec<u16> = sockets
        .iter()
        .map(|s| s.local_addr().map(|a| a.port()))
        .collect::<Result<_, _>>()?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", serde_json::json!({ "ports": ports }))?;
        out.flush()?;
    }
    let datagrams = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    rt.block_on(async {
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
            let _ = stop_tx.send(());
        });
        let mut tasks = Vec::new();
        for s in sockets {
            let s = tokio::net::UdpSocket::from_std(s)?;
            let (d, b) = (datagrams.clone(), bytes.clone());
            tasks.push(tokio::spawn(async move {
                let mut buf = vec![0u8; 2048];
                while let Ok(len) = s.recv(&mut buf).await {
                    d.fetch_add(1, Relaxed);
                    b.fetch_add(len as u64, Relaxed);
                }
            }));
        }
        let _ = stop_rx.await;
        for t in tasks {
            t.abort();
        }
        anyhow::Ok(())
    })?;
    let (u, s) = cpu_seconds();
    println!(
        "{}",
        serde_json::json!({
            "datagrams": datagrams.load(Relaxed),
            "bytes": bytes.load(Relaxed),
            "cpu_seconds": u + s,
        })
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_matches_the_e2e_publisher() {
        let turns = source_turns().expect("assets");
        let video: usize = turns
            .iter()
            .filter(|t| t.packets[0].video)
            .map(|t| t.packets.len())
            .sum();
        let audio: usize = turns.iter().filter(|t| !t.packets[0].video).count();
        // 10 s of media: ~240 video packets/s (the e2e bench forwards ~239.5/s) and 50 audio.
        assert!((2300..2500).contains(&video), "{video} video packets");
        assert_eq!(audio, 500);
        for t in &turns {
            for p in &t.packets {
                assert!(p.payload.len() <= PAYLOAD_MTU);
            }
        }
    }

    #[test]
    fn protect_is_rfc7714_shaped_and_opens() {
        let mut s = Subscriber {
            dest: SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 9),
            key: LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7u8; 32]).expect("key")),
            salt: [3u8; 12],
            video: Stream {
                ssrc: 0x0102_0304,
                index: 0x1_0005,
                ts: 42,
            },
            audio: Stream {
                ssrc: 9,
                index: 0,
                ts: 0,
            },
        };
        let p = SourcePacket {
            video: true,
            marker: true,
            payload: vec![0x65; 100],
        };
        let mut d = s.protect(&p);
        assert_eq!(d.len(), RTP_HEADER + 100 + TAG_LEN);
        assert_eq!(&d[..4], &[0x80, 0x80 | PT_VIDEO, 0x00, 0x05]);
        assert_eq!(&d[8..12], &[1, 2, 3, 4]);
        let mut iv = [0u8; 12];
        iv[2..6].copy_from_slice(&[1, 2, 3, 4]);
        iv[6..10].copy_from_slice(&1u32.to_be_bytes());
        iv[10..12].copy_from_slice(&5u16.to_be_bytes());
        for b in &mut iv {
            *b ^= 3;
        }
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7u8; 32]).expect("key"));
        let (h, body) = d.split_at_mut(RTP_HEADER);
        let plain = key
            .open_in_place(Nonce::assume_unique_for_key(iv), Aad::from(&*h), body)
            .expect("opens");
        assert_eq!(plain, &[0x65; 100][..]);
    }
}
