//! The rewrite state of one outgoing stream: maps a source stream's sequence numbers and
//! timestamps into the consumer's own continuous space, across layer switches and
//! publisher restarts.

use std::time::Instant;

use crate::consumer::{ConsumerId, Forward};
use crate::media::{Layer, MediaKind, SourcePacket};
use crate::router::Outputs;

/// Per consumer, per outgoing stream: the rewrite state.
#[derive(Debug, Clone)]
pub(crate) struct Egress {
    /// The source layer currently forwarded; `None` until the stream (re)starts.
    pub(crate) current: Option<Layer>,
    /// out_seq = in_seq + seq_offset (wrapping in u64).
    seq_offset: u64,
    /// out_ts = in_ts + ts_offset (wrapping in u32).
    ts_offset: u32,
    /// Highest source seq forwarded on `current` (drops stale reordered packets).
    last_in_seq: u64,
    /// The source seq `current` started at: older packets of it are from before the switch
    /// (their outgoing numbers would repeat the previous run's last ones).
    start_in_seq: u64,
    last_out_seq: u64,
    last_out_ts: u32,
    last_out_at: Option<Instant>,
    /// When this stream started waiting for a keyframe.
    pub(crate) waiting_since: Option<Instant>,
}

impl Egress {
    pub(crate) fn new(initial_seq: u64) -> Self {
        Egress {
            current: None,
            seq_offset: 0,
            ts_offset: 0,
            last_in_seq: 0,
            start_in_seq: 0,
            last_out_seq: initial_seq,
            last_out_ts: 0,
            last_out_at: None,
            waiting_since: None,
        }
    }

    /// Starts (or switches) to `layer` at `pkt`, keeping the outgoing sequence and
    /// timestamp continuous.
    pub(crate) fn start(&mut self, layer: Layer, pkt: &SourcePacket, clock_rate: u32) {
        let out_seq = self.last_out_seq.wrapping_add(1);
        self.seq_offset = out_seq.wrapping_sub(pkt.seq);
        let out_ts = match self.last_out_at {
            None => pkt.ts,
            Some(at) => {
                let elapsed = pkt.arrival.saturating_duration_since(at);
                let ticks = (elapsed.as_secs_f64() * f64::from(clock_rate)) as u32;
                self.last_out_ts.wrapping_add(ticks.max(1))
            }
        };
        self.ts_offset = out_ts.wrapping_sub(pkt.ts);
        self.current = Some(layer);
        self.last_in_seq = pkt.seq.wrapping_sub(1);
        self.start_in_seq = pkt.seq;
        self.waiting_since = None;
    }

    /// Starts `layer` at the first packet of its cached `gop` and rewrites the whole GOP
    /// into `out` (a joiner's first picture without waiting for the encoder).
    pub(crate) fn replay(
        &mut self,
        id: ConsumerId,
        layer: Layer,
        gop: &[SourcePacket],
        clock_rate: u32,
        out: &mut Outputs,
    ) {
        let Some(first) = gop.first() else {
            return;
        };
        self.start(layer, first, clock_rate);
        for pkt in gop {
            if let Some(f) = self.rewrite(id, MediaKind::Video, pkt) {
                out.forwards.push(f);
            }
        }
    }

    /// Rewrites `pkt` for consumer `sub`, or `None` for a stale packet.
    pub(crate) fn rewrite(
        &mut self,
        sub: ConsumerId,
        kind: MediaKind,
        pkt: &SourcePacket,
    ) -> Option<Forward> {
        if pkt.seq < self.start_in_seq && self.start_in_seq - pkt.seq < (1 << 15) {
            // From before this run's first packet (a late packet of the frame before the
            // keyframe we switched at): useless to the decoder, and its number is taken.
            return None;
        }
        if pkt.seq <= self.last_in_seq && self.last_in_seq.wrapping_sub(pkt.seq) < (1 << 15) {
            // Older than what we already forwarded on this layer: a retransmission the
            // stack already repaired, or a packet from before our starting point.
            if pkt.seq.wrapping_add(self.seq_offset) <= self.last_out_seq.saturating_sub(1 << 14)
                || self.last_out_at.is_none()
            {
                return None;
            }
        }
        let seq = pkt.seq.wrapping_add(self.seq_offset);
        let ts = pkt.ts.wrapping_add(self.ts_offset);
        if pkt.seq > self.last_in_seq || self.last_out_at.is_none() {
            self.last_in_seq = pkt.seq;
            self.last_out_seq = seq;
            self.last_out_ts = ts;
            self.last_out_at = Some(pkt.arrival);
        }
        Some(Forward {
            sub,
            kind,
            layer: match kind {
                MediaKind::Audio => Layer(0),
                MediaKind::Video => pkt.layer,
            },
            seq,
            ts,
            marker: pkt.marker,
            keyframe_start: pkt.keyframe_start,
            payload: pkt.payload.clone(),
            arrival: pkt.arrival,
        })
    }

    /// Stops forwarding because the packets from `next_seq` on were dropped before they
    /// left (a paused viewer's pacer queue): the next [`Egress::start`] reuses those numbers, so
    /// the receiver sees no gap to repair.
    pub(crate) fn rewind(&mut self, next_seq: u64) {
        if next_seq <= self.last_out_seq {
            self.last_out_seq = next_seq.wrapping_sub(1);
        }
        self.stop();
    }

    /// Stops forwarding; the next [`Egress::start`] continues the outgoing sequence.
    pub(crate) fn stop(&mut self) {
        self.current = None;
        self.waiting_since = None;
    }
}
