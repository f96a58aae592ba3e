//! The rewrite state of one outgoing stream: maps a source stream's sequence numbers and
//! timestamps into the consumer's own continuous space, across layer switches and
//! publisher restarts.

use std::time::Instant;

use crate::consumer::{ConsumerId, Forward};
use crate::keyframe::{Vp8Ids, vp8_ids};
use crate::media::{Codec, Layer, MediaKind, SourcePacket};
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
    /// VP8: the payload descriptor's picture numbering, continued across switches.
    vp8: Option<Vp8Numbering>,
}

/// VP8 picture numbering in a consumer's own space. Each simulcast layer numbers its
/// pictures (PictureID, TL0PICIDX, KEYIDX) from its own random start; a receiver that saw
/// one layer's numbers takes the next layer's as a jump (measured with Chromium in
/// tests/adaptation.rs: after a switch to a layer numbered "behind" the one left, every
/// delta frame was dropped as old; only keyframes decoded, one per 3 s keyframe request).
/// So at each (re)start the numbers continue from the last ones sent, as the sequence
/// numbers do.
#[derive(Debug, Clone, Copy, Default)]
struct Vp8Numbering {
    /// Added to the source's numbers (wrapping in each field's width).
    pid_offset: u16,
    tl0_offset: u8,
    key_offset: u8,
    /// The last numbers sent.
    last: Vp8Ids,
}

/// The next number after `last` in a field of `bits` bits, as an offset from `value`.
fn offset_after(last: u16, value: u16, bits: u32) -> u16 {
    let mask = ((1u32 << bits) - 1) as u16;
    last.wrapping_add(1).wrapping_sub(value) & mask
}

impl Vp8Numbering {
    /// A (re)start at a packet whose numbers are `ids`: they continue the last ones sent.
    fn restart(&mut self, ids: Vp8Ids) {
        if let (Some((last, _)), Some((pid, long))) = (self.last.picture_id, ids.picture_id) {
            self.pid_offset = offset_after(last, pid, if long { 15 } else { 7 });
        }
        if let (Some(last), Some(tl0)) = (self.last.tl0_pic_idx, ids.tl0_pic_idx) {
            self.tl0_offset = offset_after(u16::from(last), u16::from(tl0), 8) as u8;
        }
        if let (Some(last), Some(key)) = (self.last.key_idx, ids.key_idx) {
            self.key_offset = offset_after(u16::from(last), u16::from(key), 5) as u8;
        }
    }

    /// The numbers `ids` become; `newest`: the packet is the newest sent so far.
    fn rewrite(&mut self, ids: Vp8Ids, newest: bool) -> Vp8Ids {
        let out = Vp8Ids {
            picture_id: ids.picture_id.map(|(pid, long)| {
                let mask = if long { 0x7fff } else { 0x7f };
                (pid.wrapping_add(self.pid_offset) & mask, long)
            }),
            tl0_pic_idx: ids.tl0_pic_idx.map(|t| t.wrapping_add(self.tl0_offset)),
            key_idx: ids.key_idx.map(|k| k.wrapping_add(self.key_offset) & 0x1f),
        };
        if newest {
            self.last.picture_id = out.picture_id.or(self.last.picture_id);
            self.last.tl0_pic_idx = out.tl0_pic_idx.or(self.last.tl0_pic_idx);
            self.last.key_idx = out.key_idx.or(self.last.key_idx);
        }
        out
    }

    /// Whether the numbers are rewritten at all (no switch yet: they pass unchanged).
    fn rewrites(&self) -> bool {
        self.pid_offset != 0 || self.tl0_offset != 0 || self.key_offset != 0
    }
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
            vp8: None,
        }
    }

    /// Starts (or switches) to `layer` at `pkt`, keeping the outgoing sequence,
    /// timestamp (and VP8 picture numbering) continuous.
    pub(crate) fn start(&mut self, layer: Layer, pkt: &SourcePacket, codec: Codec) {
        let clock_rate = codec.clock_rate();
        if codec == Codec::Vp8 {
            let n = self.vp8.get_or_insert_with(Vp8Numbering::default);
            if let Some(ids) = vp8_ids(&pkt.payload) {
                n.restart(ids);
            }
        } else {
            self.vp8 = None;
        }
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
        codec: Codec,
        out: &mut Outputs,
    ) {
        let Some(first) = gop.first() else {
            return;
        };
        self.start(layer, first, codec);
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
        let newest = pkt.seq > self.last_in_seq || self.last_out_at.is_none();
        if newest {
            self.last_in_seq = pkt.seq;
            self.last_out_seq = seq;
            self.last_out_ts = ts;
            self.last_out_at = Some(pkt.arrival);
        }
        let vp8 = match (&mut self.vp8, kind) {
            (Some(n), MediaKind::Video) => vp8_ids(&pkt.payload)
                .map(|ids| n.rewrite(ids, newest))
                .filter(|_| n.rewrites()),
            _ => None,
        };
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
            vp8,
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
