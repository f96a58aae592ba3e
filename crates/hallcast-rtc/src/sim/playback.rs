//! What a simulated viewer would have shown: the frames it received, which of them a decoder
//! could have rendered and when, the freezes between them, the bitrate it received and the
//! gaps in its audio. Computed from the packets a [`Viewer`](super::Viewer) recorded, after
//! the relay's rewrite (one stream: sequence numbers continue across layer switches).
//!
//! The freeze definition follows Chromium's `freezeCount` in spirit: a gap between two
//! rendered frames longer than `max(3 × the median of the last 30 frame intervals, 150 ms)`
//! is a freeze.

use std::time::{Duration, Instant};

use super::{LayerSizes, Received};

/// One video frame (the packets of one RTP timestamp) as received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    pub ts: u32,
    /// Sequence numbers of its first and last packet received.
    pub first_seq: u64,
    pub last_seq: u64,
    /// Payload bytes received.
    pub bytes: usize,
    /// It carries a keyframe start (IDR or SPS).
    pub keyframe: bool,
    /// Its first packet received starts a keyframe: what a decoder joining (or a stream
    /// switching layers) here needs.
    pub starts_keyframe: bool,
    /// Every packet from its first to its marker arrived (repairs included), and the packet
    /// before it arrived (so nothing of it was lost before its first) or it is a keyframe.
    pub complete: bool,
    /// When its first packet arrived (the earliest copy).
    pub first_at: Instant,
    /// When its last missing packet arrived: it could be decoded from then on.
    pub done_at: Instant,
}

/// A gap between two rendered frames counted as a freeze.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freeze {
    /// The frame before the gap was rendered at `from`, the next one at `to`.
    pub from: Instant,
    pub to: Instant,
}

impl Freeze {
    pub fn duration(&self) -> Duration {
        self.to - self.from
    }
}

/// The frames a decoder could render (complete, and a keyframe or following a rendered
/// frame with no sequence gap), when, and the freezes.
#[derive(Debug, Clone, Default)]
pub struct Playback {
    /// Render instant (in order: a frame waits for the one before) and the frame.
    pub rendered: Vec<(Instant, Frame)>,
    pub freezes: Vec<Freeze>,
}

/// The shortest gap that counts as a freeze.
pub const MIN_FREEZE: Duration = Duration::from_millis(150);
/// Frame intervals in the running median.
const MEDIAN_WINDOW: usize = 30;

impl Playback {
    /// Freezes overlapping `[from, to)`, and their total time inside it.
    pub fn freezes_between(&self, from: Instant, to: Instant) -> (usize, Duration) {
        let mut n = 0;
        let mut total = Duration::ZERO;
        for f in &self.freezes {
            let (a, b) = (f.from.max(from), f.to.min(to));
            if a < b {
                n += 1;
                total += b - a;
            }
        }
        (n, total)
    }

    /// Frames rendered in `[from, to)`.
    pub fn n_rendered(&self, from: Instant, to: Instant) -> usize {
        self.rendered
            .iter()
            .filter(|(t, _)| *t >= from && *t < to)
            .count()
    }
}

/// The frames in `video`, in sequence order (the earliest copy of each packet counts).
pub fn frames(video: &[Received]) -> Vec<Frame> {
    let mut pkts: Vec<&Received> = video.iter().collect();
    pkts.sort_by_key(|r| (r.seq, r.at));
    pkts.dedup_by_key(|r| r.seq);
    let mut out: Vec<Frame> = vec![];
    // Whether the frame being built has had a sequence gap inside it, and its marker.
    let mut cur: Option<(Frame, bool, bool)> = None;
    let mut prev_seq: Option<u64> = None;
    for r in pkts {
        let contiguous = prev_seq.is_some_and(|p| p + 1 == r.seq);
        match &mut cur {
            Some((f, gap, marker)) if f.ts == r.ts && !*marker => {
                *gap |= !contiguous;
                f.last_seq = r.seq;
                f.bytes += r.len;
                f.keyframe |= r.keyframe_start;
                f.first_at = f.first_at.min(r.at);
                f.done_at = f.done_at.max(r.at);
                *marker = r.marker;
            }
            _ => {
                if let Some((f, gap, marker)) = cur.take() {
                    out.push(Frame {
                        complete: f.complete && !gap && marker,
                        ..f
                    });
                }
                let f = Frame {
                    ts: r.ts,
                    first_seq: r.seq,
                    last_seq: r.seq,
                    bytes: r.len,
                    keyframe: r.keyframe_start,
                    starts_keyframe: r.keyframe_start,
                    // Nothing of it was lost before this packet: the one before arrived,
                    // or this is the stream's first, or it starts a keyframe.
                    complete: contiguous || prev_seq.is_none() || r.keyframe_start,
                    first_at: r.at,
                    done_at: r.at,
                };
                cur = Some((f, false, r.marker));
            }
        }
        prev_seq = Some(r.seq);
    }
    if let Some((f, gap, marker)) = cur {
        out.push(Frame {
            complete: f.complete && !gap && marker,
            ..f
        });
    }
    out
}

/// What a decoder would render from `frames` (in sequence order, see [`frames`]).
pub fn playback(frames: &[Frame]) -> Playback {
    let mut p = Playback::default();
    let mut prev: Option<&Frame> = None;
    let mut decoding = false;
    let mut intervals: Vec<Duration> = vec![];
    for f in frames {
        let follows = prev.is_some_and(|q| q.last_seq + 1 == f.first_seq);
        decoding = f.complete && (f.keyframe || (decoding && follows));
        prev = Some(f);
        if !decoding {
            continue;
        }
        let at = p
            .rendered
            .last()
            .map_or(f.done_at, |(t, _)| f.done_at.max(*t));
        if let Some((last, _)) = p.rendered.last() {
            let gap = at - *last;
            if gap > freeze_threshold(&intervals) {
                p.freezes.push(Freeze {
                    from: *last,
                    to: at,
                });
            }
            intervals.push(gap);
            if intervals.len() > MEDIAN_WINDOW {
                intervals.remove(0);
            }
        }
        p.rendered.push((at, *f));
    }
    p
}

fn freeze_threshold(intervals: &[Duration]) -> Duration {
    if intervals.is_empty() {
        return MIN_FREEZE;
    }
    let mut v = intervals.to_vec();
    v.sort_unstable();
    (v[v.len() / 2] * 3).max(MIN_FREEZE)
}

/// Payload bits per second of `packets` arriving in `[from, to)`.
pub fn bitrate(packets: &[Received], from: Instant, to: Instant) -> f64 {
    let bytes: usize = packets
        .iter()
        .filter(|r| r.at >= from && r.at < to)
        .map(|r| r.len)
        .sum();
    bytes as f64 * 8.0 / (to - from).as_secs_f64()
}

/// Gaps between consecutive arrivals of `packets` (in arrival order) in `[from, to)` longer
/// than `min`: (the arrival before the gap, the gap). A window with no packet at all is one
/// gap from `from` to `to`.
pub fn gaps(
    packets: &[Received],
    from: Instant,
    to: Instant,
    min: Duration,
) -> Vec<(Instant, Duration)> {
    let mut at: Vec<Instant> = packets
        .iter()
        .map(|r| r.at)
        .filter(|t| *t >= from && *t < to)
        .collect();
    at.sort_unstable();
    let mut out = vec![];
    let mut last = from;
    for t in at.iter().copied().chain([to]) {
        if t - last > min {
            out.push((last, t - last));
        }
        last = t;
    }
    out
}

/// Which of `layers` (low to high) a frame of `bytes` payload bytes is: the one whose
/// slice size for that frame type is nearest (the packetisation adds a few bytes per
/// packet).
pub fn layer_of(layers: &[LayerSizes], keyframe: bool, bytes: usize) -> Option<usize> {
    layers
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let want = if keyframe { l.idr_bytes } else { l.p_bytes } as f64;
            (i, (bytes as f64 / want).ln().abs())
        })
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(t0: Instant, ms: u64, seq: u64, ts: u32, marker: bool, key: bool) -> Received {
        Received {
            at: t0 + Duration::from_millis(ms),
            seq,
            ts,
            marker,
            len: 1000,
            keyframe_start: key,
        }
    }

    /// 30 fps frames of two packets, from `first` (a keyframe) on; `skip` seqs are lost.
    fn stream(t0: Instant, n: u32, skip: &[u64]) -> Vec<Received> {
        let mut v = vec![];
        for i in 0..n {
            let seq = 2 * u64::from(i);
            let ms = u64::from(i) * 33;
            let ts = i * 3000;
            v.push(pkt(t0, ms, seq, ts, false, i == 0));
            v.push(pkt(t0, ms + 1, seq + 1, ts, true, false));
        }
        v.retain(|r| !skip.contains(&r.seq));
        v
    }

    #[test]
    fn whole_frames_render_without_freezes() {
        let t0 = Instant::now();
        let f = frames(&stream(t0, 60, &[]));
        assert_eq!(f.len(), 60);
        assert!(f.iter().all(|f| f.complete));
        let p = playback(&f);
        assert_eq!(p.rendered.len(), 60);
        assert!(p.freezes.is_empty());
    }

    #[test]
    fn a_lost_packet_freezes_until_the_next_keyframe() {
        let t0 = Instant::now();
        // Frame 10 loses its second packet; a keyframe comes at frame 30.
        let mut s = stream(t0, 60, &[21]);
        for r in &mut s {
            if r.seq == 60 {
                r.keyframe_start = true;
            }
        }
        let f = frames(&s);
        assert!(!f[10].complete);
        let p = playback(&f);
        // Frames 0..10 and 30..60 render.
        assert_eq!(p.rendered.len(), 10 + 30);
        assert_eq!(p.freezes.len(), 1);
        let d = p.freezes[0].duration();
        assert!(
            d > Duration::from_millis(600) && d < Duration::from_millis(700),
            "{d:?}"
        );
    }

    #[test]
    fn a_repair_completes_its_frame_late() {
        let t0 = Instant::now();
        let mut s = stream(t0, 30, &[21]);
        // The repair of seq 21 arrives 200 ms later: frame 10 and everything after wait.
        s.push(pkt(t0, 10 * 33 + 200, 21, 10 * 3000, true, false));
        let p = playback(&frames(&s));
        assert_eq!(p.rendered.len(), 30);
        assert_eq!(p.freezes.len(), 1);
        // Packets kept arriving: no gap; after the last one, a gap to the window's end.
        let min = Duration::from_millis(100);
        assert!(gaps(&s, t0, t0 + Duration::from_secs(1), min).is_empty());
        let tail = gaps(&s, t0, t0 + Duration::from_secs(2), min);
        assert_eq!(tail.len(), 1, "{tail:?}");
        assert!(tail[0].1 > Duration::from_millis(950), "{tail:?}");
    }
}
