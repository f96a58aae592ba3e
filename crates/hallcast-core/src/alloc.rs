//! Bandwidth allocation for one viewer: which simulcast layer its link carries, or none.
//!
//! Inputs, all passed in: the viewer's bandwidth estimate (from its own transport-wide
//! feedback, or REMB), the source's measured layer bitrates and the audio bitrate, the
//! time. Output: a [`Target`] — a layer, or video paused (audio only) — and the bitrate
//! the estimator should probe towards before the next switch up.
//!
//! The policy, in the order it is applied:
//! - **Audio first.** What a layer *needs* is its measured bitrate plus the audio's, plus
//!   the packet overhead ([`need`]). Audio is never dropped by the allocator; when not even
//!   the lowest layer fits, video pauses.
//! - **Down at once.** The current layer stops fitting (estimate below its need) for
//!   [`DOWN_AFTER`]: go to the highest layer that fits (the lowest when none does). A
//!   congested link is relieved within a fraction of a second of the estimator noticing.
//!   Here "the estimate" is the lower of the smoothed one and the estimator's own latest
//!   ([`Allocator::on_raw_estimate`]): str0m emits an average of its last 3 s of estimates,
//!   which on a step down reads the old link for seconds (in tests/adaptation.rs the demo's
//!   viewer was sent to the middle layer on a 400 kbit/s link at a smoothed 975 kbit/s,
//!   and to the lowest 1.5 s later). Pausing goes by the smoothed estimate, except a pause
//!   at once (below). A raw figure that falls ([`RAW_FALL`]) ends a climb (below).
//! - **A plain fall at once, to the lowest layer** ([`DOWN_AT_ONCE_SHARE`]): an estimate
//!   under 0.7 of the current layer's need is a link that stepped down; the viewer goes to
//!   the lowest layer in the same step. The first figure after a step says the link fell,
//!   not where it landed; the lowest layer's keyframe is the quickest through a full queue.
//! - **A cut when the link cannot carry the old layer** ([`Decision::cut`]): a switch down
//!   while a loss report of [`PROBE_LOSS_ABORT`] or more is recent ([`CUT_LOSS_WINDOW`]), or
//!   with the estimate under the old layer's own bitrate ([`CUT_SHARE`]), stops the old
//!   layer at once instead of at the new layer's keyframe: what would still be sent of it
//!   is lost on the way and queues ahead of that keyframe and of the audio. A switch down on
//!   a link that still carries the old layer (the estimate between its bitrate and its need)
//!   keeps it until the keyframe, with no gap in the picture. After a cut the viewer's video
//!   is held to [`CUT_PACE_FACTOR`] × the new layer's bitrate for [`CUT_PACE_FOR`]
//!   ([`Allocator::throttle_bps`]), so its keyframe is not sent at an estimate that still
//!   reads above the link into a queue full of the old layer.
//! - **Pause with care.** On the lowest layer, video pauses when the estimate stays under
//!   [`PAUSE_SHARE`] of its need for [`PAUSE_AFTER`] while the link itself shows congestion
//!   (loss or a queue: an estimate that sees only the lowest layer is app-limited and sits
//!   near that share on a link with room to spare) (under [`PAUSE_AT_ONCE_SHARE`], by the
//!   lower of the smoothed and raw figures: after [`DOWN_AFTER`]; by the smoothed one alone
//!   within [`LOSS_SETTLE`] of a switch down or a failed probe), and resumes once it covers the need
//!   ([`RESUME_HEADROOM`]) for the up-hold, on the lowest layer whatever else fits (a paused
//!   viewer's estimate is its audio's and probe clusters', which a shaper's burst inflates). An estimator that sees little traffic estimates
//!   little: in the simulated network a viewer on layer 0 over a 600 kbit/s link was
//!   estimated at 170–290 kbit/s, and pausing at the plain need made it flap between audio
//!   only and video every 10 s.
//! - **Up with headroom and patience.** A higher layer must fit with [`UP_HEADROOM`] for the
//!   up-hold time before it is taken. Here "the estimate" is the estimator's own latest
//!   (when fresh, on a link that did not flap): the smoothed one trails a climb, and reads
//!   the old link after a fall, by seconds; the sustained probe below commits a switch up.
//!   The up-hold starts at [`UP_HOLD`] and doubles each time a switch down follows a switch
//!   up within [`FLAP_WINDOW`] (an oscillating link), up to [`UP_HOLD_MAX`]; it halves
//!   (down to [`UP_HOLD`]) after each [`CALM_AFTER`] without a switch down, and is back at
//!   [`UP_HOLD`] after a pause longer than [`FLAP_WINDOW`] (measured in tests/adaptation.rs:
//!   a flap on the weak link before the pause made each of the three steps back to the top
//!   wait ~3 s after the link recovered).
//!   With ample room (the estimate at [`AMPLE_HEADROOM`]× the higher layer's need) and no
//!   flapping, the hold is [`AMPLE_UP_HOLD`]: a link that came back is used again quickly.
//! - **A climbing estimate is not congestion.** While the estimate keeps rising (a rise
//!   within [`CLIMB_GRACE`] and no fall since), a layer that does not fit yet is kept: a
//!   delay- and loss-based estimator lowers its estimate only when the link says so, and
//!   between those signals it climbs by a few per cent a second from wherever the join's
//!   first GOP left it (measured in tests/adaptation.rs: an unshaped viewer's estimate at
//!   0.46 → 0.73 Mbit/s over the 4 s after its join while it received 1.3 Mbit/s whole,
//!   then a needless switch down at the end of the warm-up). The first fall ends it.
//! - **Warm-up.** For [`WARMUP`] after the join the estimate is still the estimator's start
//!   value or a probe's first results, not a measurement: no switch down, and switches up
//!   wait only [`WARMUP_UP_HOLD`], so a viewer on a good link climbs as fast as probing
//!   proves the capacity. (A viewer joins on the highest layer the start value covers, so
//!   a slow link is not handed the top layer's GOP first.)
//! - **Probing.** The desired bitrate handed to the estimator is the need of the next layer
//!   up times [`PROBE_HEADROOM`] (of the top layer while on it): str0m probes towards it,
//!   and an estimator only learns what it probes for — an estimate rarely rises above the
//!   desired bitrate, so the probe target must sit above the switch-up threshold.
//! - **A sustained probe before a switch up** (viewers: [`Allocator::with_sustained_probes`]).
//!   str0m's probe clusters are short bursts (a few dozen ~240-byte padding packets); a
//!   shaper's token bucket (`tbf`'s 8 KiB burst) swallows such a burst whole, and the
//!   estimate overshoots the link (measured in tests/adaptation.rs: 1.32–1.37 Mbit/s on a
//!   400 kbit/s link, then a switch up the link could not carry: 6 s of freezes, 2.8 % of the
//!   audio concealed). So the last [`PROBE_SUSTAIN`] of an up-hold is a *sustained* probe: the
//!   allocator asks for the higher layer's need as a sustained rate ([`Decision::sustain_bps`];
//!   the driver has str0m pad up to it), longer than any shaper's burst, and commits only if
//!   the estimate then covers the layer's need, having stayed above [`PROBE_ABORT_SHARE`] of
//!   it, no loss report during the probe reached [`PROBE_LOSS_ABORT`] and no queue built up
//!   on the link ([`QUEUE_OVERRUN`]). A failed probe stops the padding at once and makes the
//!   next one wait longer (the up-hold doubles, up to [`PROBE_FAILED_HOLD_MAX`], until a
//!   probe holds, or for [`PROBE_FAILED_LAPSE`] after the last failure): a link that cannot
//!   carry the layer is not made to drop packets every other second, and one that came
//!   back is not kept waiting by old failures.
//! - **One layer at a time.** After warm-up each sustained probe, and the switch up it
//!   carries, goes to the next layer only, whatever the estimate says fits further up: through a shaper with a
//!   burst the estimate reads a fast link, and a probe two layers up overruns a link that
//!   cannot carry the next one by both steps. Measured in tests/adaptation.rs before
//!   (docs/bench-data/2026-12-05-issue11-calm, `new-1-chromium`): a viewer on the lowest
//!   layer whose link had just stepped from 400 to 100 kbit/s read an estimate of
//!   1.19 Mbit/s (raw 1.43) and probed the top layer; the probe failed 0.29 s later, the
//!   queue it left read 814–843 ms for a second, and 3.09 % of the run's audio was
//!   concealed. The cost: on a link that did recover, the climb from the lowest layer to
//!   the top takes a second probe (about [`PROBE_SUSTAIN`] more). During warm-up the climb
//!   goes straight to where the estimate points (the join's right layer sooner). Relay links
//!   (no sustained probes: [`Allocator::with_sustained_probes`]) still go straight up.
//! - **Loss is congestion too.** A loss report ([`Allocator::on_loss`]: transport-wide
//!   feedback's lost share over the last second, or receiver reports' fraction lost) at
//!   [`LOSS_DOWN_SHARE`] or more steps the viewer down at once, without waiting for the
//!   estimator to fall: to the highest layer whose need fits what arrived (the current
//!   layer's need times the share not lost, times [`LOSS_STEP_MARGIN`]) — not within
//!   [`LOSS_SETTLE`] of a switch down or a failed sustained probe, plus the viewer's round
//!   trip (the report may still describe the layer just left, or the probe's padding). On
//!   the lowest layer, a loss report at [`LOSS_PAUSE_SHARE`] or more pauses video. A report right after a clean one is read over
//!   the span between them ([`ONSET_LOSS_SHARE`]): half of it lost is a link that stepped
//!   down, acted on at once.
//! - **A resume starts a fresh estimator.** The sustained probe that carries a resume from
//!   audio only proved the link carries the lowest layer; the estimator's state is the weak
//!   link's and the audio's, which probes little and rises slowly. The driver resets it from
//!   what the probe proved ([`Allocator::reset_bps`]), and the fresh one probes at once.
//! - **A paused viewer's estimator keeps probing.** Every [`REPROBE_EVERY`] of quiet while
//!   paused under the lowest layer's need, the probing target dips for one step
//!   ([`REPROBE_DIP`]); the step back up makes str0m probe, so a link that recovers is seen
//!   within seconds (str0m alone stops probing once audio fills an estimate made of audio).
//! - **An estimator that cannot rise is reset.** Quiet for [`STUCK_RESET_PAUSED`] while
//!   paused (for [`STUCK_RESET_LAYER`] below the highest layer, the next one not fitting,
//!   the estimate at [`STUCK_SHARE`] or more of the layer's need): the driver resets the
//!   viewer's estimator from its current estimate, and the fresh one probes. str0m's
//!   loss-based half can hold an estimate without rising or letting anyone probe.
//!
//! Layers that are inactive or not yet measured are skipped. A switch only *chooses* the
//! layer: the viewer's egress takes it at the next keyframe of that layer (see
//! `consumer::viewer`), so the decoder never sees an undecodable frame.
//!
//! Invariant: this type reads no clock and holds no reference to the router: the same
//! inputs give the same decisions (tested on virtual time below and in `hallcast-rtc`'s
//! simulated network).

use std::time::{Duration, Instant};

use crate::media::Layer;
use crate::producer::LayerStats;

/// A switch up needs the estimate to exceed the target layer's need by this factor.
pub const UP_HEADROOM: f64 = 1.15;
/// An estimate at least this multiple of a higher layer's need takes it after
/// [`AMPLE_UP_HOLD`] only.
pub const AMPLE_HEADROOM: f64 = 2.0;
/// The up-hold when the estimate leaves ample room.
pub const AMPLE_UP_HOLD: Duration = Duration::from_millis(500);
/// The estimator probes towards the next layer's need times this factor.
pub const PROBE_HEADROOM: f64 = 1.5;
/// A layer that stops fitting for this long is left.
pub const DOWN_AFTER: Duration = Duration::from_millis(300);
/// On the lowest layer, video pauses when the estimate stays under this share of its need
/// for [`PAUSE_AFTER`] while the link itself shows congestion (a loss report of
/// [`PROBE_LOSS_ABORT`] or more since the layer stopped fitting, or a queue of
/// [`QUEUE_OVERRUN`]). An estimator that sees only the lowest layer and the audio is
/// app-limited and settles at ~0.85 of what is acknowledged, i.e. ~0.7–0.8 of the layer's
/// need: right at this share. In the simulated oscillating link (2.5 ↔ 0.6 Mbit/s,
/// `hallcast-rtc/tests/adapt_sim.rs`) a viewer on layer 0 read 190–200 kbit/s against a
/// threshold of ~195 on a link that never carried less than 600, and one build paused it.
/// Below [`PAUSE_AT_ONCE_SHARE`] no such sign is asked for (see there).
pub const PAUSE_SHARE: f64 = 0.7;
/// … for this long.
pub const PAUSE_AFTER: Duration = Duration::from_millis(1500);
/// Under this share of the lowest layer's need (by the lower of the smoothed and raw
/// figures), video pauses after [`DOWN_AFTER`] only: the link plainly cannot carry it, and
/// the audio sharing the link suffers meanwhile. Was 0.5 of the smoothed figure: on a step
/// from 400 to 100 kbit/s (tests/adaptation.rs, Chromium's lowest layer ~0.15 Mbit/s, need
/// ~0.22) the raw figure read 0.14 Mbit/s 0.8 s after the step and fell under half the need
/// only 0.7 s later, while the smoothed one stayed at 0.23 for 2 s; the audio lost until
/// the pause was most of the run's concealment. Under [`PAUSE_SHARE`], not far above: the
/// simulated network's oscillating link (2.5 ↔ 0.6 Mbit/s) reads 90–120 kbit/s raw in its
/// falls, and pauses nobody at this share (`hallcast-rtc/tests/adapt_sim.rs`).
///
/// The raw figure counts here only once settled ([`LOSS_SETTLE`]). After a cut the
/// estimator's loss-based half remembers the old layer's losses and rises slowly: in
/// tests/adaptation.rs it still kept the raw figure under the lowest layer's need past the
/// settle in 3 of 16 runs, with the queue drained (5 ms) and nothing lost, and paused a viewer
/// whose 400 kbit/s link carried that layer (2.0–2.8 s after the step). Tried and dropped:
/// counting the raw figure only while the link also shows congestion itself (a queue of
/// [`QUEUE_OVERRUN`], or a loss report of [`PROBE_LOSS_ABORT`] within [`LOSS_WINDOW`]):
/// no such pause in 6 runs, but the pause on a step to 100 kbit/s came later (the demo's
/// median 2.3 s against 1.3–1.5 s, once 3.1 s) and more audio was concealed before it.
pub const PAUSE_AT_ONCE_SHARE: f64 = 0.65;
/// A paused viewer resumes (on the lowest layer) once the estimate covers its need by this
/// factor for the up-hold: the estimator probes towards 1.5× that need meanwhile.
pub const RESUME_HEADROOM: f64 = 1.0;
/// How long a higher layer must keep fitting before it is taken (base value).
pub const UP_HOLD: Duration = Duration::from_millis(1500);
/// The longest up-hold an oscillating link earns.
pub const UP_HOLD_MAX: Duration = Duration::from_secs(8);
/// A switch down this soon after a switch up counts as a flap (the up-hold doubles).
pub const FLAP_WINDOW: Duration = Duration::from_secs(10);
/// Each period this long without a switch down halves the up-hold (down to [`UP_HOLD`]).
pub const CALM_AFTER: Duration = Duration::from_secs(30);
/// How long after the join the warm-up rules apply.
pub const WARMUP: Duration = Duration::from_secs(4);
/// A rise of the estimate this recent (and no fall since) counts as climbing.
pub const CLIMB_GRACE: Duration = Duration::from_secs(2);
/// During warm-up, a higher layer is taken after fitting this long.
pub const WARMUP_UP_HOLD: Duration = Duration::from_millis(300);
/// How long a sustained probe sends at the higher layer's need before the switch up is
/// committed. Longer than a shaper's burst: `tbf`'s 8 KiB bucket and 200 ms queue, overrun by
/// 0.2–0.3 Mbit/s, fill in ~0.5 s; plus up to one relay tick (200 ms) before the padding
/// starts and the feedback's own delay.
pub const PROBE_SUSTAIN: Duration = Duration::from_millis(1200);
/// The longest up-hold failed sustained probes earn: each costs the link under a second of
/// overrun, and a link that comes back must not wait long for its next probe (the issue:
/// back on the top layer within 15 s of the link's recovery).
pub const PROBE_FAILED_HOLD_MAX: Duration = Duration::from_secs(4);
/// The longer up-hold of failed sustained probes lapses this long after the last failure:
/// it describes the link as it was then. Measured in tests/adaptation.rs: probes for the
/// middle layer that failed on the 400 kbit/s link made the resume from audio only, 15 s
/// later on a link that had recovered, wait 3 s more after the estimate covered the
/// lowest layer. A link that still cannot carry what is probed fails again sooner than
/// this (probes come every few seconds), so its longer hold stands.
pub const PROBE_FAILED_LAPSE: Duration = Duration::from_secs(10);
/// While paused with the estimate under the lowest layer's need, the probing target dips to
/// [`REPROBE_DIP`] of itself for one step this often (not within this long of the pause, of
/// the last dip, or of a loss report of [`PROBE_LOSS_ABORT`] or more): the step back up is an
/// increase, which makes str0m probe (an allocation probe at up to twice the estimate,
/// then exponential probes while they hold). Without it a paused viewer's estimate sinks
/// to about the audio's rate, where str0m does not probe at all: it probes periodically
/// only while the link is used under 65 % of the estimate, and audio alone uses all of an
/// estimate made of audio alone (measured in tests/adaptation.rs: the estimate stayed at
/// 41 kbit/s for 9.8 s after the link recovered, until str0m's stagnation probe).
pub const REPROBE_EVERY: Duration = Duration::from_secs(3);
/// The probing target's dip before a reprobe: more than the 5 % the driver ignores.
pub const REPROBE_DIP: f64 = 0.8;
/// Paused under the lowest layer's need and nothing stirring for this long (no switch, no
/// loss report of [`PROBE_LOSS_ABORT`] or more, no failed sustained probe, no rise of the
/// estimate by [`STIR_RISE`], no reset): the
/// estimator is reset ([`Allocation::estimator_resets`]; str0m's `Bwe::reset`, from the
/// current estimate), and the fresh one probes (at 3× and 6× the estimate, capped at twice
/// the probing target). Two [`REPROBE_EVERY`] dips that moved nothing come first.
///
/// Why: str0m's estimator can sit in a state where it neither rises nor probes. Its
/// loss-based half, once it has cut the estimate on loss ("decreasing"), raises it again
/// only up to 1.5× the acknowledged rate — while paused, the audio's — and stays
/// "decreasing" while its estimate is under the delay-based one; and its probe controller
/// probes (allocation, periodic, stagnation probes alike) only when the estimate is
/// delay-based or rising. So a paused viewer whose loss-based estimate ended above 1.5×
/// its audio is never probed again, whatever the link does. Seen end to end (CI of
/// tests/adaptation.rs, the demo and Chromium scenarios, ~1 run in 15): the estimate held
/// at 108–131 kbit/s for the 50 s after the shaping was removed, video never resumed. In
/// the simulated network an estimator stuck the same way at 59 kbit/s, under 1.5× the
/// audio: so while paused there is no condition on the estimate (a reset costs a paused
/// link two short probe bursts).
///
/// [`Allocation::estimator_resets`]: crate::router::Allocation::estimator_resets
pub const STUCK_RESET_PAUSED: Duration = Duration::from_secs(6);
/// The same for a paused viewer whose estimate is near the lowest layer's need (at
/// [`PAUSE_SHARE`] of it or more): one probe from resuming, and the link it measures is not
/// the weak one it was paused on. Measured in tests/adaptation.rs: after the shaping was
/// removed, the estimate climbed from 51 to 180 kbit/s (the need: ~217) within 5 s and
/// stayed there for 6 s, until the reset; back on top 15.4 s after the link recovered. (As
/// often as the paused viewer's reprobe dips, [`REPROBE_EVERY`]: a link that really sits
/// there gets a fresh estimator's two probe bursts every 3 s.)
pub const STUCK_RESET_NEAR: Duration = Duration::from_secs(3);
/// The same below the highest layer, the next one not fitting, with an estimate of
/// [`STUCK_SHARE`] or more of the current layer's need: the loss-based half caps the
/// estimate at 1.5× the current layer's rate the same way. str0m's own stagnation probe,
/// were it not blocked, comes after 15 s without a change.
pub const STUCK_RESET_LAYER: Duration = Duration::from_secs(15);
/// On a layer, the estimator is reset only when the estimate is this multiple of the
/// layer's need or more: an estimate near what the layer uses is a link at its capacity,
/// where resets would only add probe bursts every [`STUCK_RESET_LAYER`].
pub const STUCK_SHARE: f64 = 1.4;
/// An estimate this multiple of the lowest one since the last such rise stirs the
/// estimator too (no reset): it is rising, a probe lifted it. Measured in
/// tests/adaptation.rs: without it, resets came 2–4 s after the link recovered, in the
/// middle of the probes' climb, and the climb to the top layer took longer (median 14.2 s
/// against 11.5 s in the Chromium scenario, 7 runs each).
pub const STIR_RISE: f64 = 1.25;
/// A sustained probe fails when the estimate falls under this share of the probed layer's
/// need: a link that carries the padded rate shows an estimate near it (a little under at
/// times); one that cannot makes the estimator fall to what arrives.
pub const PROBE_ABORT_SHARE: f64 = 0.85;
/// A sustained probe with no verdict by then (the estimate between that share and the need)
/// fails.
pub const PROBE_SUSTAIN_MAX: Duration = Duration::from_millis(2400);
/// A loss report during a sustained probe at or above this share aborts it.
pub const PROBE_LOSS_ABORT: f32 = 0.05;
/// A loss report at or above this share steps the viewer down at once, to the highest layer
/// whose need fits what the link delivered (the current layer's need times the share that
/// arrived). Above what bursty random loss averages to over a second (the simulated
/// network's 30 % for 300 ms every 3 s: ~9 %), under what an overrun link drops (a
/// 0.6 Mbit/s layer on a 0.4 Mbit/s link: a third).
pub const LOSS_DOWN_SHARE: f32 = 0.2;
/// On the lowest layer, a loss report at or above this share pauses video at once (the
/// link delivered under 70 % of what the layer and the audio need; the estimate, taken on
/// a link that queues before it drops, falls seconds later). Measured in
/// tests/adaptation.rs: a step from 400 to 100 kbit/s with the viewer on the lowest layer
/// (~0.2 Mbit/s with the audio) was paused 2.3–3.4 s after it on the estimate alone, and the
/// audio lost meanwhile was most of the run's concealment.
pub const LOSS_PAUSE_SHARE: f32 = 0.3;
/// A step down on loss takes the highest layer whose need fits this share of what arrived.
/// The report undercounts an overrun link's loss (what waits in its queue is not reported
/// yet, and the second it covers may begin before the overrun), and a layer needing all
/// that arrived leaves no room for its keyframes: measured in tests/adaptation.rs, a step
/// from ~1.3 Mbit/s to a 400 kbit/s link reported 36 % lost, "what arrived" read 830
/// kbit/s, and the viewer went to a 620 kbit/s layer first and to the lowest one a second
/// later (two keyframe waits, 1.9 s of freezes). At 0.7 the demo's middle layer (~0.45
/// Mbit/s) still fitted a first report of 15–36 % and was taken on a 400 kbit/s link: its
/// keyframe took ~1 s through the link, and the lowest layer's another second (3.1 s of
/// freezes). Too low a step costs a few seconds of a smaller picture before a probe climbs
/// back; too high a step costs a second keyframe wait, frozen.
pub const LOSS_STEP_MARGIN: f64 = 0.5;
/// A loss report right after a clean one (under [`PROBE_LOSS_ABORT`]) tells more than its
/// share: the report covers the last [`LOSS_WINDOW`] of packets, and what the clean one
/// before it covered was not lost, so the new losses fell in the span between the two. Lost
/// over that span at this share or more, the link stepped down: the viewer steps down (by
/// that share; the lowest layer pauses) without waiting for the share over the whole
/// window to reach [`LOSS_DOWN_SHARE`]. Measured in tests/adaptation.rs before: the demo's
/// step from 2.2 to 0.4 Mbit/s read 0 % and then 21.6 % lost 250 ms apart (the second
/// second of the window was about four-fifths lost); taken as 21.6 %, "what arrived" fitted
/// the middle layer (0.61 Mbit/s), which the link could not carry either, and the lowest
/// layer came a second later (1.7 s of freezes, 0.46 s of audio concealed). Above what a
/// burst of random loss reads over a span (the simulated network's 30 % for 300 ms), under
/// what an overrun link drops (a 0.6 Mbit/s layer on a 0.4 Mbit/s link: a third, with its
/// audio; the top layer on it: four-fifths).
pub const ONSET_LOSS_SHARE: f32 = 0.5;
/// The window a transport-wide loss report covers (str0m: the last second).
pub const LOSS_WINDOW: Duration = Duration::from_secs(1);
/// The shortest span a report's new losses are spread over ([`ONSET_LOSS_SHARE`]): the
/// relay's stats interval (a receiver report in between may read clean sooner).
pub const ONSET_MIN_SPAN: Duration = Duration::from_millis(250);
/// A loss report this soon after a switch down does not step down again: it may still
/// describe the layer just left (the report covers the last second; the switch waits for a
/// keyframe, asked for at once). Plus the viewer's latest round trip by its transport-wide
/// feedback ([`Allocator::on_rtt`], up to [`RTT_SETTLE_MAX`]): the old layer's last packets
/// are reported that much later when they queue. Measured in tests/adaptation.rs before: a
/// cut from the demo's top layer to its lowest on a 400 kbit/s link (a 0.36 s queue) read
/// 47 % lost 0.7 s after the cut, still the top layer's losses, and a report after the
/// bare 1.2 s paused video on a link that carried the lowest layer (4.7 s without a
/// picture).
///
/// The same after a failed sustained probe: its padding is in the reports (dropped by the
/// link, queued ahead of the media). And a pause at once ([`PAUSE_AT_ONCE_SHARE`]) goes by
/// the smoothed estimate alone for that long, not the raw one: right after a cut or a
/// failed probe the estimator has just seen the overrun's losses. Measured in
/// tests/adaptation.rs before: 5 of 16 runs paused a viewer whose 400 kbit/s link carried
/// the lowest layer (3–4 s without a picture), 3 of them 2.1–2.7 s after the step to it, 2
/// right after a failed probe; with this, 3 of 16, all 2.0–2.8 s after the step (see
/// [`PAUSE_AT_ONCE_SHARE`]).
pub const LOSS_SETTLE: Duration = Duration::from_millis(1200);
/// A queue this long on the viewer's link (its round trip by transport-wide feedback above
/// the lowest of the last [`RTT_FLOOR_FOR`]) fails a sustained probe at once: the link cannot
/// carry the probed rate, and the audio waits in that queue (a browser conceals audio while
/// its delay climbs; a loss report comes only once the queue is full and drops, since a
/// packet's loss is known when a later one arrives). Measured in tests/adaptation.rs
/// before: a resume's probe at 0.22 Mbit/s on a 100 kbit/s link (the estimate, fooled by
/// the shaper's burst, read 0.21) ran until the round trip read 0.79 s, and the audio queued
/// behind it was concealed for 0.35 s.
///
/// A reading lags the queue it reports: it is the wait of a packet sent one round trip
/// earlier, and a link sent 2.5× what it carries (the lowest layer and the audio on
/// 100 kbit/s) holds 2.5× that wait by the time the feedback comes back. At 250 ms (the
/// figure before) a resume's probe on 100 kbit/s read 241 ms (under the bar), was carried,
/// and the viewer paused again 0.5 s later on 660 ms, the shaper dropping audio meanwhile
/// (tests/adaptation.rs, 1 run in 6); a step down stays at [`QUEUE_GROWN`].
///
/// A queue that also grows steps the viewer down ([`QUEUE_GROWTH_SHARE`]). Tried and dropped: a
/// queue merely held for two reports doing so. After a cut from the top layer to the
/// lowest on 400 kbit/s the round trip stayed at 200-320 ms for 1.5 s while the old layer's
/// queue and the new keyframe drained, and that paused a viewer whose link carried the
/// lowest layer (1 e2e run in 6).
pub const QUEUE_OVERRUN: Duration = Duration::from_millis(120);
/// A queue this long that grew at a fifth of the time passing or faster
/// over the last two readings or more (each reading over the one before; the first of them
/// may be a jump) is a link the viewer's video overruns by a quarter or more (sending at
/// 1.25× what the link carries, the queue a packet meets grows by a fifth of the time its
/// feedback takes to come back): the viewer goes to the lowest layer at once (a cut), and
/// from the lowest layer to audio only. One jump alone is a keyframe's burst; a queue that
/// drains (after a cut, a failed probe, a keyframe) does not grow; a reading that repeats
/// the last round trip exactly is no new feedback and is skipped. Measured in
/// tests/adaptation.rs before: on the step from 400 to 100 kbit/s, with a sustained probe
/// failed just before it, the round trip read 260, 539, 799 ms half a second apart while the
/// estimate stayed at 0.34 Mbit/s and the loss reports read 0-7 %; the pause came on the
/// loss report 1.8 s after the step, and the audio queued meanwhile was 3 % of the run's.
/// Not during warm-up or a sustained probe (which fails on the queue instead), nor within
/// the loss settle of a switch down.
pub const QUEUE_GROWTH_SHARE: f64 = 0.2;
/// How long a growing queue must be to step the viewer down ([`QUEUE_GROWTH_SHARE`]): longer
/// than what fails a sustained probe ([`QUEUE_OVERRUN`]), since a probe that fails only waits
/// for the next one while a step down costs a picture. Tried and dropped: the same 120 ms.
/// After a cut from the top layer to the lowest on 400 kbit/s the round trip read
/// 265–350 ms for 1.5 s while the old layer's queue, the new keyframe and repairs drained,
/// and a reading that rose twice just after the loss settle paused a viewer whose link
/// carried the lowest layer (1 e2e run in 6; 3 s without a picture).
///
/// **From calm, [`QUEUE_OVERRUN`] is enough**: a queue that rose from a reading under
/// [`QUEUE_CONGESTED`] (within [`RAW_FRESH`]) by [`QUEUE_CALM_RISE`] or more, and then grew at
/// [`QUEUE_GROWTH_SHARE`] to 120 ms, steps the viewer down. That is the link stepping down
/// under a viewer that sat on its layer: the queue starts from empty and climbs at the
/// overrun's rate. The drain after a cut starts from the old layer's full queue (265–350 ms
/// above), never from calm, and a receiver's CPU stall is one jump, not two rises. Measured
/// in tests/adaptation.rs before (the decision prints of 30 runs,
/// docs/bench-data/2026-12-05-issue11-calm): in 11 of them, on the step from 400 to
/// 100 kbit/s, the readings went calm, 34–186 ms, 123–421 ms, and the pause came 0.13–0.47 s
/// later (on the next reading, over 250 ms, or a loss report), the link's queue growing
/// ~0.9 ms a millisecond meanwhile, all of it ahead of the audio. No reading of the 30 runs
/// matched this outside such a step but one, of a viewer already paused.
pub const QUEUE_GROWN: Duration = Duration::from_millis(250);
/// The first rise from calm ([`QUEUE_GROWN`]): above the 1–15 ms of queue a receiver on a
/// loaded machine reads now and then ([`QUEUE_CONGESTED`]), so that a calm reading followed by
/// one jump (a stall) is not taken for two rises.
pub const QUEUE_CALM_RISE: Duration = Duration::from_millis(20);
/// A fall of the estimate moves a viewer down (or pauses it) only when its link says it is
/// congested as well: a loss report of [`PROBE_LOSS_ABORT`] or more since [`LOSS_WINDOW`]
/// before the estimate fell under the layer's need, a queue of this long in the last two
/// round-trip readings (fresh: [`RAW_FRESH`]), or one of [`QUEUE_OVERRUN`] in the last.
/// Without transport-wide feedback (a REMB-only receiver) there is no such reading, and the
/// estimate, the receiver's own judgement, is taken alone.
///
/// Why: a delay-based estimator backs off on a delay trend whatever made it, and on a link
/// that carries the layer its back-off lands just under the layer's need (0.85 × what was
/// delivered, the delivered rate being the layer's own). A receiver on a loaded machine
/// stamps arrivals late now and then (Chromium reads the socket on a thread that competes
/// for the cores), which reads as a queue the link does not have. Measured in
/// tests/adaptation.rs before (3 runs, debug relay, 2 cores shared with three Chromiums): the
/// unshaped viewer was moved down four times in a run, each time with a queue of 1–15 ms and
/// no loss (raw estimates of 0.33–1.24 Mbit/s on a link that carries 1 Gbit/s), while the
/// shaped viewer's falls came with queues of 235 and 274 ms; two runs in three failed on it.
/// A shaped link's queue passes this within a few hundred milliseconds of a step (tbf's
/// 200 ms; a router's buffer), a policing link loses packets: both corroborate at once.
///
/// Tried and dropped: two readings only, without the single one of [`QUEUE_OVERRUN`] (a
/// receiver that stalls for ~170 ms reads as one such queue, and still moved the unshaped
/// viewer down in 2 of 3 runs after this change). On `relay_sim`'s step to 400 kbit/s the
/// switch then waited for the second reading, 0.50 s after the step, and the lower layer's
/// first picture came 0.74 s after the switch (its bar: 0.7 s).
pub const QUEUE_CONGESTED: Duration = Duration::from_millis(50);
/// An estimate under the layer's need this long without the link's word
/// ([`QUEUE_CONGESTED`]) is an estimator fooled by the receiver's timing: it is restarted from
/// the layer's need with [`UP_HEADROOM`] (at most once per [`FLAP_WINDOW`]; str0m's pacer goes
/// by the estimate, so a low one would hold the layer's video back). Long enough for two
/// round-trip readings (every 250 ms) after the fall. If the link was congested after all,
/// the fresh estimator falls again and its queue or losses show this time.
pub const UNPROVEN_RESET: Duration = Duration::from_millis(600);
/// Without a restart allowed ([`UNPROVEN_RESET`]), an estimate under the need this long moves
/// the viewer down even without the link's word.
pub const DOWN_UNPROVEN: Duration = Duration::from_secs(4);
/// A round-trip reading comes with the session's stats, every 250 ms, so the feedback it was
/// taken from may be that much older: the packet it measured was sent at the latest this long
/// before the reading's round trip. Used to tell a queue on what was sent after a failed
/// sustained probe (the link's own) from the probe's. Only for a reading whose packet's send
/// instant is not known ([`Allocator::on_rtt`]); the relay knows it ([`Allocator::on_rtt_sent`],
/// str0m's `PeerStats::rtt_sent_at`), and guessing cost time: in tests/adaptation.rs
/// (2026-12-07, a decision print) a probe failed 0.2 s after the step to 100 kbit/s, and the
/// readings of 345, 551, 657 and 811 ms over the next second, which grew at every step and
/// (by their round trips and the feedback's interval) measured what was sent after the
/// failure, were all put before it by this slack; the pause came 0.8 s after the last of them,
/// on the settle's end, with the queue at 800 ms ahead of the audio.
///
/// Measured in tests/adaptation.rs (docs/bench-data/2026-12-05-issue11-resume, new-3-demo): a
/// probe failed on the 400 kbit/s link as it fell to 100 kbit/s (queue 121 ms); the readings
/// of what was sent after it grew (167, 291, 430 … 830 ms) while the settle after the failure
/// held the pause back 2.2 s. Such a probe, under way as the link steps down, was the most
/// frequent cause of a late pause in docs/bench-data/2026-12-05-issue11-calm (about one run in
/// three; queues of 600–850 ms ahead of the audio), where the rule landed: its round with the
/// rule met every bar of the issue in 4 runs of 6, against none of 6 at 40a4369.
pub const READING_SLACK: Duration = Duration::from_millis(250);
/// A failed sustained probe leaves its padding queued on the link, and its failure's reading
/// lags that queue (it measured a packet sent one round trip and up to a stats interval
/// before). Within the failure's settle, a grown queue read on what was sent after the failure
/// counts ([`READING_SLACK`]) when it is this long, or when the reading it grew from measured
/// what was sent after the failure too; a shorter one grown from a reading of before the
/// failure may be the probe's leftover draining on a link that carries the layer. Seen in
/// tests/adaptation.rs (docs/bench-data/2026-12-07-issue11-no-probe-on-a-queue, evidence,
/// b3-noprobe-4): a probe for layer 1 failed on the 400 kbit/s link on a reading of 93 ms
/// (of a packet sent 155 ms before the failure, the queue growing ~0.6 ms a millisecond under
/// the probe); the next reading, 147 ms, measured a packet sent 40 ms after the failure, and
/// the viewer was paused for 2.3 s on a link that carried the lowest layer; the readings after
/// it were 20 and 3 ms. Where a probe failed as the link stepped to 100 kbit/s, the first
/// readings of what was sent after the failure were 736–845 ms in the decision prints, past
/// this: their pause comes as before.
pub const FAILED_PROBE_LEFT: Duration = QUEUE_GROWN;
/// The window of the round trip's floor ([`QUEUE_OVERRUN`]); an older floor is replaced by
/// the current round trip.
pub const RTT_FLOOR_FOR: Duration = Duration::from_secs(30);
/// The most a round trip lengthens [`LOSS_SETTLE`].
pub const RTT_SETTLE_MAX: Duration = Duration::from_secs(1);
/// A switch down is a cut (the old layer stops at once, see [`Decision::cut`]) when the
/// estimate is under this share of the old layer's bitrate...
pub const CUT_SHARE: f64 = 1.0;
/// ... or a loss report of [`PROBE_LOSS_ABORT`] or more came within this long.
pub const CUT_LOSS_WINDOW: Duration = Duration::from_secs(1);
/// A raw estimate older than this is not used ([`Allocator::on_raw_estimate`]).
pub const RAW_FRESH: Duration = Duration::from_secs(1);
/// A layer whose need the estimate (the lower of smoothed and raw) falls under this share
/// of is left at once, without [`DOWN_AFTER`], for the lowest layer: a delay-based
/// estimator's ordinary back-off is to 0.85 × what was delivered (~0.8 of the layer's need
/// on a link that carried it), so a fall under 0.7 of the need is a link that stepped down,
/// and each 250 ms of waiting fills its queue further ahead of the audio and of the lower
/// layer's keyframe. Measured in tests/adaptation.rs before: the first raw estimate under
/// the top layer's need came 0.4 s after a step to 400 kbit/s (0.74 Mbit/s against a need
/// of 1.26) and the switch 0.3 s after it.
///
/// Why the lowest layer and not the highest that fits: the first figure after a step says
/// the link fell, not where it landed — it is 0.85 × what was delivered over the last half
/// second or so, most of it before the step (0.74 Mbit/s on a 0.4 Mbit/s link in the
/// Chromium scenario, 1.1–1.2 Mbit/s in the demo's). Taking the highest layer that fits half
/// of it sent the demo's viewer to its middle layer (0.48 Mbit/s) and to the lowest 0.8 s
/// later: two keyframe waits through a full queue, 1.85 s of freeze. The lowest layer's
/// keyframe is the smallest through that queue; the climb back goes by probes.
pub const DOWN_AT_ONCE_SHARE: f64 = 0.7;
/// A raw estimate at this share of the previous one or lower is a fall: it ends a climb
/// (see [`CLIMB_GRACE`]; the smoothed estimate lags a fall by seconds).
pub const RAW_FALL: f64 = 0.85;
/// After a cut ([`Decision::cut`]) the viewer's video is held to this multiple of the new
/// layer's bitrate ([`Allocator::throttle_bps`]), and under [`CUT_PACE_SHARE`] of the
/// estimate less the audio's need...
pub const CUT_PACE_FACTOR: f64 = 2.0;
/// ... (see above) ...
pub const CUT_PACE_SHARE: f64 = 0.6;
/// ... for this long: the new layer's keyframe (asked for at the switch) and what follows
/// it, until the bottleneck's queue has drained.
pub const CUT_PACE_FOR: Duration = Duration::from_secs(2);
/// The throttle never goes under this.
pub const CUT_PACE_MIN_BPS: u64 = 32_000;
/// Packet overhead on top of payload bitrates: RTP, SRTP, UDP and IP headers (about 60
/// bytes a packet: ~5 % of a full video packet, more for audio's small ones).
const OVERHEAD_FACTOR: f64 = 1.08;
/// Audio's own header overhead: 50 packets a second of ~60 bytes of headers.
const AUDIO_OVERHEAD_BPS: u64 = 24_000;

/// Why a viewer's video is paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PauseReason {
    /// Not even the lowest layer fits the viewer's link: audio only until it recovers.
    Bandwidth,
    /// The viewer asked (its page is hidden, or the user chose audio only).
    Viewer,
}

impl PauseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            PauseReason::Bandwidth => "bandwidth",
            PauseReason::Viewer => "viewer",
        }
    }
}

/// What the allocator gives a viewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Layer(Layer),
    /// Audio only: the link cannot carry the lowest layer.
    Paused,
}

/// The bitrate a viewer needs to receive `layer_bps` of video with the audio.
pub fn need(layer_bps: u64, audio_bps: u64) -> u64 {
    ((layer_bps + audio_bps) as f64 * OVERHEAD_FACTOR) as u64 + AUDIO_OVERHEAD_BPS
}

/// The per-viewer allocator state.
#[derive(Debug, Clone)]
pub struct Allocator {
    target: Target,
    joined_at: Instant,
    /// The candidate layer above the target that fits with headroom, and since when.
    up: Option<(Target, Instant)>,
    /// Since when the target no longer fits.
    down_since: Option<Instant>,
    up_hold: Duration,
    last_up_at: Option<Instant>,
    calm_since: Option<Instant>,
    estimate_bps: Option<u64>,
    /// When the estimate last rose, if it has not fallen since.
    rose_at: Option<Instant>,
    desired_bps: u64,
    switches: u32,
    /// Benchmarks only: behave as [`fixed_threshold`] (no hysteresis, no hold, no warm-up).
    fixed: bool,
    /// Switches up are preceded by a sustained probe (viewers).
    sustained_probes: bool,
    /// The sustained probe under way: the layer it probes for, since when.
    probe: Option<(Target, Instant)>,
    /// The rate the link should carry meanwhile (0: no probe).
    sustain_bps: u64,
    /// A loss report not acted on yet: when, and the lost share.
    loss: Option<(Instant, f32)>,
    /// The last switch down.
    down_at: Option<Instant>,
    /// The round trip when it came ([`Allocator::past_settle`]).
    down_rtt: Duration,
    /// The up-hold at least, after failed sustained probes (zero after one that held).
    probe_backoff: Duration,
    /// The last failed sustained probe.
    probe_failed_at: Option<Instant>,
    /// The queue read when the last sustained probe failed ([`READING_SLACK`]).
    probe_failed_queue: Duration,
    /// When the packet of the latest round-trip reading was sent, at the latest.
    last_sent: Option<Instant>,
    /// The same for the reading before it ([`FAILED_PROBE_LEFT`]).
    prev_sent: Option<Instant>,
    /// The last dip of the probing target while paused ([`REPROBE_EVERY`]).
    reprobed_at: Option<Instant>,
    /// The last loss report of [`PROBE_LOSS_ABORT`] or more.
    lossy_at: Option<Instant>,
    /// The last step whose loss reports were all under [`PROBE_LOSS_ABORT`]: when, and the
    /// worst of them ([`ONSET_LOSS_SHARE`]).
    clean: Option<(Instant, f32)>,
    /// The estimator's own latest figure ([`Allocator::on_raw_estimate`]), and when.
    raw: Option<(Instant, u64)>,
    /// The latest round trip by transport-wide feedback ([`Allocator::on_rtt`]).
    rtt: Option<Duration>,
    /// The lowest round trip since then ([`RTT_FLOOR_FOR`]).
    rtt_floor: Option<(Instant, Duration)>,
    /// The queue by the latest round trip (above its floor; [`QUEUE_OVERRUN`],
    /// [`QUEUE_GROWN`]) and when it was read, how many readings in a row it grew at
    /// [`QUEUE_GROWTH_SHARE`], and whether a growing queue was seen since the last update.
    last_queue: Option<(Instant, Duration)>,
    /// The reading before `last_queue` ([`QUEUE_CONGESTED`]).
    prev_queue: Option<(Instant, Duration)>,
    /// The last restart of an estimator whose fall the link did not confirm
    /// ([`UNPROVEN_RESET`]).
    unproven_reset_at: Option<Instant>,
    queue_growths: u32,
    queue_grew: bool,
    /// The last sign that the estimator is alive to the link: a switch, a loss report of
    /// [`PROBE_LOSS_ABORT`] or more, a failed sustained probe, a rise by [`STIR_RISE`], an
    /// estimator reset.
    stirred_at: Option<Instant>,
    /// Estimator resets asked for ([`STUCK_RESET_PAUSED`], [`STUCK_RESET_LAYER`], a resume).
    estimator_resets: u32,
    /// The estimate the last of them starts the fresh estimator from (set with each).
    reset_bps: Option<u64>,
    /// The lowest estimate since the estimate last rose by [`STIR_RISE`].
    low_water: Option<u64>,
    /// The last cut, and the rate the video is held to after it ([`CUT_PACE_FOR`]).
    cut_pace: Option<(Instant, u64)>,
}

/// One step's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub target: Target,
    /// The target changed in this step.
    pub changed: bool,
    /// The bitrate the estimator should probe towards.
    pub desired_bps: u64,
    /// The rate to keep the link at meanwhile, media and padding together (a sustained
    /// probe before a switch up; 0: none). For str0m: `Bwe::set_bitrate`'s minimum.
    pub sustain_bps: u64,
    /// A switch down whose old layer the link no longer carries (see [`CUT_SHARE`]): its
    /// video stops now instead of running on until the new layer's keyframe.
    pub cut: bool,
}

impl Allocator {
    /// A viewer that joins now. `estimate_bps` is the estimator's start value: the viewer
    /// starts on the highest layer whose need it covers (the lowest layer when none), so
    /// its first picture — a cached GOP — does not overrun a slow link.
    pub fn new(
        now: Instant,
        estimate_bps: u64,
        layers: &[LayerStats; Layer::MAX],
        audio_bps: u64,
    ) -> Self {
        let target = fitting(estimate_bps, 1.0, layers, audio_bps)
            .or_else(|| lowest(layers))
            .map_or(Target::Layer(top_or_zero(layers)), Target::Layer);
        Allocator {
            target,
            joined_at: now,
            up: None,
            down_since: None,
            up_hold: UP_HOLD,
            last_up_at: None,
            calm_since: None,
            estimate_bps: Some(estimate_bps),
            rose_at: None,
            desired_bps: 0,
            switches: 0,
            fixed: false,
            sustained_probes: false,
            probe: None,
            sustain_bps: 0,
            loss: None,
            down_at: None,
            down_rtt: Duration::ZERO,
            probe_backoff: Duration::ZERO,
            probe_failed_at: None,
            probe_failed_queue: Duration::ZERO,
            last_sent: None,
            prev_sent: None,
            reprobed_at: None,
            lossy_at: None,
            clean: None,
            raw: None,
            rtt: None,
            rtt_floor: None,
            last_queue: None,
            prev_queue: None,
            unproven_reset_at: None,
            queue_growths: 0,
            queue_grew: false,
            stirred_at: None,
            estimator_resets: 0,
            reset_bps: None,
            low_water: None,
            cut_pace: None,
        }
    }

    /// Every switch up is preceded by a sustained probe of [`PROBE_SUSTAIN`] at the higher
    /// layer's need (see the module's doc). For viewers, whose driver pads the link to
    /// [`Decision::sustain_bps`].
    pub fn with_sustained_probes(mut self) -> Self {
        self.sustained_probes = true;
        self
    }

    /// A loss report on the viewer's link: the share of packets lost (transport-wide
    /// feedback over the last second, or a receiver report's fraction lost). Acted on at the
    /// next [`Allocator::update`].
    /// The estimator's latest figure, before the smoothing the estimates given to
    /// [`Allocator::update`] went through (str0m averages its estimates over 3 s: on a
    /// step down the average lags the link by seconds). The lower of the two decides
    /// whether the current layer still fits, how far a switch down goes, whether it is a
    /// cut, and the pacing rate ([`Allocator::pace_bps`]); the raw one alone decides
    /// switches up, resumes and a sustained probe's verdict (see `up_to`; not on a link
    /// that flapped). A plain pause stays with the smoothed estimate (the raw one
    /// undershoots a link that drops: in the simulated oscillating link, 2.5 ↔ 0.6 Mbit/s,
    /// it read 90–120 kbit/s and paused the viewer).
    pub fn on_raw_estimate(&mut self, now: Instant, bps: u64) {
        if let Some((_, prev)) = self.raw
            && (bps as f64) <= prev as f64 * RAW_FALL
        {
            self.rose_at = None;
        }
        self.raw = Some((now, bps));
    }

    /// The rate to pace the viewer's video at: the estimate a switch down goes by.
    pub fn pace_bps(&self, now: Instant) -> Option<u64> {
        self.estimate_bps.map(|e| self.down_to(now, e))
    }

    /// The rate to hold the viewer's live video to (`None`: not held): for [`CUT_PACE_FOR`]
    /// after a cut, [`CUT_PACE_FACTOR`] × the new layer's bitrate, under [`CUT_PACE_SHARE`]
    /// of the estimate less the audio's need. A cut happens on a link that cannot carry the
    /// old layer: its queue is full of it, and the new layer's keyframe, sent at the
    /// estimate's pace (which still reads above the link), is largely dropped there and
    /// repaired by retransmissions that queue as well. Measured in tests/adaptation.rs
    /// before: after a switch from the top layer to the lowest on a 400 kbit/s link, the
    /// relay sent 0.45–0.5 Mbit/s of its keyframe and frames, then 0.35 Mbit/s of
    /// retransmissions for 0.4 s; the first picture of the lowest layer came 1.1 s after the
    /// switch. Not during a sustained probe, a pause, or for the fixed selector.
    pub fn throttle_bps(&self, now: Instant) -> Option<u64> {
        let (at, bps) = self.cut_pace?;
        let live = now.saturating_duration_since(at) < CUT_PACE_FOR
            && !self.fixed
            && self.probe.is_none()
            && self.target != Target::Paused;
        live.then_some(bps)
    }

    /// The viewer's round trip by its transport-wide feedback: a packet's send to the
    /// feedback that reports it, so what waits in the link's queue counts
    /// ([`LOSS_SETTLE`], [`QUEUE_OVERRUN`], [`QUEUE_GROWN`]).
    pub fn on_rtt(&mut self, now: Instant, rtt: Duration) {
        self.on_reading(now, rtt, now.checked_sub(rtt + READING_SLACK));
    }

    /// A round-trip reading whose packet was sent at `sent` (the latest transport-wide
    /// feedback's last packet): what a failed probe's settle asks of it is then exact, not
    /// bounded by [`READING_SLACK`].
    pub fn on_rtt_sent(&mut self, now: Instant, rtt: Duration, sent: Instant) {
        self.on_reading(now, rtt, Some(sent));
    }

    fn on_reading(&mut self, now: Instant, rtt: Duration, sent: Option<Instant>) {
        if self.rtt == Some(rtt) {
            // No feedback since the last reading.
            return;
        }
        self.rtt = Some(rtt);
        let floor = match self.rtt_floor {
            Some((at, f)) if f <= rtt && now.saturating_duration_since(at) < RTT_FLOOR_FOR => f,
            _ => {
                self.rtt_floor = Some((now, rtt));
                rtt
            }
        };
        let queue = rtt.saturating_sub(floor);
        self.queue_growths = match self.last_queue {
            Some((at, q))
                if queue > q
                    && (queue - q).as_secs_f64()
                        >= now.saturating_duration_since(at).as_secs_f64() * QUEUE_GROWTH_SHARE =>
            {
                self.queue_growths + 1
            }
            _ => 0,
        };
        // The reading before the last calm and recent, the last one risen from it
        // ([`QUEUE_CALM_RISE`]).
        let from_calm = match (self.prev_queue, self.last_queue) {
            (Some((at, p)), Some((_, l))) => {
                p < QUEUE_CONGESTED
                    && l >= p + QUEUE_CALM_RISE
                    && now.saturating_duration_since(at) <= RAW_FRESH
            }
            _ => false,
        };
        if (self.queue_growths >= 2 && queue >= QUEUE_GROWN)
            || (from_calm && self.queue_growths >= 1 && queue >= QUEUE_OVERRUN)
        {
            self.queue_grew = true;
        }
        self.prev_queue = self.last_queue;
        self.last_queue = Some((now, queue));
        self.prev_sent = std::mem::replace(&mut self.last_sent, sent);
    }

    pub fn on_loss(&mut self, now: Instant, lost: f32) {
        if lost.is_finite() {
            // Several reports before an update: the worst counts.
            let worst = self.loss.map_or(lost, |(_, l)| l.max(lost));
            self.loss = Some((now, worst));
        }
    }

    /// The rate the link should carry now (a sustained probe; 0: none).
    pub fn sustain_bps(&self) -> u64 {
        self.sustain_bps
    }

    /// The same allocator reduced to the [`fixed_threshold`] selector, the baseline the
    /// benchmarks compare the policy with.
    pub fn into_fixed_threshold(mut self) -> Self {
        self.fixed = true;
        self
    }

    pub fn target(&self) -> Target {
        self.target
    }

    /// The warm-up rules apply again from `now`, as after a join: for [`WARMUP`] no switch
    /// down and short up-holds. For a link asked to carry more than it did (a relay link
    /// whose downstream relay wants a layer it did not): its estimate was taken while it
    /// carried less, and a delay-based estimator does not rise above 1.5× what it sees
    /// delivered, so the estimate says nothing yet about the added layer.
    pub fn rewarm(&mut self, now: Instant) {
        self.joined_at = now;
        self.down_since = None;
    }

    pub fn estimate_bps(&self) -> Option<u64> {
        self.estimate_bps
    }

    /// Target changes since the join (switches up or down, pauses and resumes).
    pub fn switches(&self) -> u32 {
        self.switches
    }

    pub fn desired_bps(&self) -> u64 {
        self.desired_bps
    }

    /// Estimator resets asked for since the join: the driver resets the viewer's estimator
    /// each time this grows (see [`STUCK_RESET_PAUSED`]).
    pub fn estimator_resets(&self) -> u32 {
        self.estimator_resets
    }

    /// The estimate the last reset ([`Allocator::estimator_resets`]) starts from.
    pub fn reset_bps(&self) -> Option<u64> {
        self.reset_bps
    }

    /// A new estimate (or, with the last one again, a periodic re-evaluation as layer
    /// bitrates change and hold times pass).
    pub fn update(
        &mut self,
        now: Instant,
        estimate_bps: u64,
        layers: &[LayerStats; Layer::MAX],
        audio_bps: u64,
    ) -> Decision {
        match self.estimate_bps {
            Some(e) if estimate_bps > e => self.rose_at = Some(now),
            Some(e) if estimate_bps < e => self.rose_at = None,
            _ => {}
        }
        self.estimate_bps = Some(estimate_bps);
        // A rise of a quarter over the lowest estimate since the last stir: the estimator
        // is alive (a probe lifted it, or it climbs), not stuck.
        match self.low_water {
            Some(low) if estimate_bps as f64 >= low as f64 * STIR_RISE => {
                self.stirred_at = Some(now);
                self.low_water = Some(estimate_bps);
            }
            Some(low) if estimate_bps >= low => {}
            _ => self.low_water = Some(estimate_bps),
        }
        if self.fixed {
            let target = fixed_threshold(estimate_bps, layers, audio_bps);
            let changed = target != self.target;
            self.target = target;
            self.switches += u32::from(changed);
            self.desired_bps = desired(target, layers, audio_bps);
            return Decision {
                target,
                changed,
                desired_bps: self.desired_bps,
                sustain_bps: 0,
                cut: false,
            };
        }
        let warm = now.saturating_duration_since(self.joined_at) < WARMUP;
        if let Some(d) = self.calm_since
            && now.saturating_duration_since(d) >= CALM_AFTER
        {
            // Calm for a while: halve the hold (once per calm period).
            self.up_hold = (self.up_hold / 2).max(UP_HOLD);
            self.calm_since = Some(now);
        }
        if self.target == Target::Paused
            && self
                .down_at
                .is_some_and(|d| now.saturating_duration_since(d) >= FLAP_WINDOW)
        {
            // Paused longer than a flap: whatever oscillation doubled the hold is over, and
            // the link that comes back is climbed at the base pace.
            self.up_hold = UP_HOLD;
            self.last_up_at = None;
        }
        if self
            .probe_failed_at
            .is_some_and(|f| now.saturating_duration_since(f) >= PROBE_FAILED_LAPSE)
        {
            // No failed probe for a while: the failures described the link as it was.
            self.probe_backoff = Duration::ZERO;
            self.probe_failed_at = None;
        }
        let before = self.target;
        let loss = self.loss.take();
        // The share lost over the span since the last clean report, when that says more
        // than the report's own ([`ONSET_LOSS_SHARE`]); not while a sustained probe's
        // padding may be in the window (under way, failed or carried within it).
        let onset = match (loss, self.clean) {
            (Some((at, lost)), Some((clean_at, clean_lost)))
                if lost >= PROBE_LOSS_ABORT
                    && self.probe.is_none()
                    && all_past(now, [self.probe_failed_at, self.last_up_at], LOSS_WINDOW) =>
            {
                let span = at.saturating_duration_since(clean_at);
                (span < LOSS_WINDOW).then(|| {
                    let share = span.max(ONSET_MIN_SPAN).as_secs_f32() / LOSS_WINDOW.as_secs_f32();
                    ((lost - clean_lost).max(0.0) / share).min(1.0)
                })
            }
            _ => None,
        }
        .filter(|&l| l >= ONSET_LOSS_SHARE);
        match loss {
            Some((at, lost)) if lost >= PROBE_LOSS_ABORT => {
                self.lossy_at = Some(at);
                self.stirred_at = Some(at);
            }
            Some((at, lost)) => self.clean = Some((at, lost)),
            None => {}
        }

        // The current target may have vanished (a layer stopped): re-anchor on what exists.
        if let Target::Layer(l) = self.target
            && !usable(&layers[l.index()])
        {
            let lower = (0..l.index())
                .rev()
                .find(|&i| usable(&layers[i]))
                .map(|i| Layer(i as u8));
            if let Some(l2) = lower.or_else(|| lowest(layers)) {
                self.target = Target::Layer(l2);
            }
        }

        // Loss: one layer down at once (not during a sustained probe: its padding is what the
        // link dropped, and the probe ends below; nor right after a switch down or a failed
        // probe: `settled`).
        let settle = LOSS_SETTLE + self.rtt.unwrap_or_default().min(RTT_SETTLE_MAX);
        let settled = all_past(now, [self.down_at, self.probe_failed_at], settle);
        if let (Some((_, lost)), Target::Layer(cur), None) = (loss, self.target, self.probe)
            && (lost >= LOSS_DOWN_SHARE || onset.is_some())
            && settled
        {
            let lost = onset.map_or(lost, |o| o.max(lost));
            if let Some(lower) = loss_step(cur, lost, layers, audio_bps) {
                // No higher than the raw estimate fits either.
                let fits = fitting(self.down_to(now, estimate_bps), 1.0, layers, audio_bps)
                    .or_else(|| lowest(layers))
                    .unwrap_or(lower);
                self.target = Target::Layer(lower.min(fits));
                self.switched_down(now);
            } else if (lost >= LOSS_PAUSE_SHARE || onset.is_some()) && lowest(layers) == Some(cur) {
                // On the lowest layer, and the link delivered well under its need: the
                // audio sharing the link is being lost too.
                self.target = Target::Paused;
                self.switched_down(now);
            }
        }

        // A growing queue: to the lowest layer, from there to audio only. Not within the
        // settle, unless the queue grew on what was sent after a failed probe ended
        // (READING_SLACK): the probe's padding had stopped, the link itself is short
        // (FAILED_PROBE_LEFT: from a reading of what the probe left, only past QUEUE_GROWN).
        let grew_after_probe = match (self.probe_failed_at, self.last_sent, self.last_queue) {
            (Some(failed), Some(sent), Some((_, q))) => {
                sent > failed
                    && q > self.probe_failed_queue
                    && (q >= FAILED_PROBE_LEFT || self.prev_sent.is_some_and(|p| p > failed))
            }
            _ => false,
        };
        let overrun = std::mem::take(&mut self.queue_grew)
            && !warm
            && (settled || (grew_after_probe && all_past(now, [self.down_at], settle)))
            && self.probe.is_none()
            && self.target == before;
        if overrun {
            let next = match self.target {
                Target::Layer(cur) if lowest(layers).is_some_and(|l| l < cur) => {
                    lowest(layers).map(Target::Layer)
                }
                Target::Layer(_) => Some(Target::Paused),
                Target::Paused => None,
            };
            if let Some(next) = next {
                self.target = next;
                self.switched_down(now);
            }
        }

        // Down (not during warm-up: the estimate is not a measurement yet; nor while it
        // climbs: the link has not said it is congested).
        let mut restart = None;
        let climbing = self
            .rose_at
            .is_some_and(|r| now.saturating_duration_since(r) < CLIMB_GRACE);
        let fits_now = warm
            || climbing
            || match self.target {
                Target::Layer(l) => {
                    let n = need(layers[l.index()].bitrate_bps, audio_bps);
                    self.down_to(now, estimate_bps) >= n || !usable(&layers[l.index()])
                }
                Target::Paused => true,
            };
        if fits_now {
            self.down_since = None;
        } else {
            let since = *self.down_since.get_or_insert(now);
            let held = now.saturating_duration_since(since);
            let cur = match self.target {
                Target::Layer(l) => l,
                Target::Paused => Layer(0),
            };
            // A plain fall: to the lowest layer, at once.
            let at_once = match self.target {
                Target::Layer(l) => {
                    let n = need(layers[l.index()].bitrate_bps, audio_bps) as f64;
                    (self.down_to(now, estimate_bps) as f64) < n * DOWN_AT_ONCE_SHARE
                }
                Target::Paused => false,
            };
            let lower = fitting(self.down_to(now, estimate_bps), 1.0, layers, audio_bps)
                .filter(|&f| f < cur && !at_once);
            let lowest = lowest(layers).filter(|&l| l < cur);
            // A lower layer that fits, else the lowest one; on the lowest, pause only when
            // the estimate stays well under its need (an estimate taken while sending little
            // runs low: pausing on it would flap).
            let due = match (lower, lowest) {
                (Some(l), _) | (None, Some(l)) if held >= DOWN_AFTER || at_once => {
                    Some(Target::Layer(l))
                }
                (None, None)
                    if {
                        let n = need(layers[cur.index()].bitrate_bps, audio_bps) as f64;
                        let e = estimate_bps as f64;
                        (held >= PAUSE_AFTER
                            && e < n * PAUSE_SHARE
                            && self.link_shows_congestion(since, settle))
                            || (held >= DOWN_AFTER && {
                                // The raw figure only once settled (see LOSS_SETTLE).
                                let low = if settled {
                                    self.down_to(now, estimate_bps)
                                } else {
                                    estimate_bps
                                };
                                (low as f64) < n * PAUSE_AT_ONCE_SHARE
                            })
                    } =>
                {
                    Some(Target::Paused)
                }
                _ => None,
            };
            // The link's word on the fall (QUEUE_CONGESTED), else a restart of the estimator.
            let proven = self.rtt.is_none()
                || held >= DOWN_UNPROVEN
                || self.link_confirms_fall(now, since, settle);
            match due {
                Some(next) if proven => {
                    self.target = next;
                    self.switched_down(now);
                }
                // Unconfirmed, and the link has had its say on this layer (past a switch
                // down's settle, a reading of what was sent since): a fooled estimator.
                Some(_)
                    if held >= UNPROVEN_RESET
                        && self.read_past_settle(now, settle)
                        && self
                            .unproven_reset_at
                            .is_none_or(|r| now.saturating_duration_since(r) >= FLAP_WINDOW) =>
                {
                    let n = need(layers[cur.index()].bitrate_bps, audio_bps) as f64;
                    restart = Some((n * UP_HEADROOM) as u64);
                    self.unproven_reset_at = Some(now);
                    self.down_since = None;
                }
                _ => {}
            }
        }

        // A sustained probe under way is judged on what the link does with its rate.
        if self.target == before
            && let Some((probed, started)) = self.probe
        {
            let up_to = self.up_to(now, estimate_bps);
            self.judge_probe(now, probed, started, up_to, loss, layers, audio_bps);
        } else if self.target == before {
            // Up.
            let up_to = self.up_to(now, estimate_bps);
            let best = fitting(up_to, UP_HEADROOM, layers, audio_bps);
            let resume = fitting(up_to, RESUME_HEADROOM, layers, audio_bps);
            let higher = match (self.target, best.or(resume)) {
                // From audio only, the lowest layer, whatever the estimate says fits: a
                // paused viewer's estimate is made of its audio and str0m's probe clusters,
                // and through a shaper with a burst (a token bucket: tbf's 8 kB, a
                // router's) a cluster passes at line rate and reads as a fast link.
                // Measured in tests/adaptation.rs (docs/bench-data/2026-12-05-issue11-where,
                // run d3): paused on a 100 kbit/s link with the estimate at 0.72 Mbit/s, a
                // probe went straight for the middle layer, failed 0.28 s later, and left a
                // 750 ms queue that took 3 s to drain beside the audio.
                (Target::Paused, Some(_)) => lowest(layers).map(Target::Layer),
                // After warm-up, one sustained probe and one layer at a time (module docs).
                (Target::Layer(cur), Some(b)) if b > cur && !warm && self.sustained_probes => {
                    next_up(self.target, layers).map(Target::Layer)
                }
                (Target::Layer(cur), Some(b)) if b > cur => Some(Target::Layer(b)),
                _ => None,
            };
            match higher {
                None => self.up = None,
                Some(h) => {
                    // A better candidate restarts nothing: the hold counts from when any
                    // higher layer first fitted.
                    let since = match self.up {
                        Some((_, s)) => s,
                        None => now,
                    };
                    self.up = Some((h, since));
                    // Plenty of room (twice the need): no reason to wait long.
                    let ample = match h {
                        Target::Layer(l) => {
                            up_to as f64
                                >= need(layers[l.index()].bitrate_bps, audio_bps) as f64
                                    * AMPLE_HEADROOM
                        }
                        Target::Paused => false,
                    };
                    let hold = if warm {
                        WARMUP_UP_HOLD
                    } else if ample && self.up_hold <= UP_HOLD {
                        // (Not on a link that flapped: its longer hold stands.)
                        AMPLE_UP_HOLD
                    } else {
                        self.up_hold
                    };
                    let hold = hold.max(self.probe_backoff);
                    let held = now.saturating_duration_since(since);
                    if !self.sustained_probes {
                        if held >= hold && self.down_since.is_none() {
                            self.target = h;
                            self.up = None;
                            self.last_up_at = Some(now);
                        }
                    } else if held + PROBE_SUSTAIN >= hold.max(PROBE_SUSTAIN)
                        && self.down_since.is_none()
                    {
                        // The hold's last PROBE_SUSTAIN (all of it when shorter): probe.
                        self.probe = Some((h, now));
                    }
                }
            }
        }
        if self.target != before {
            // A switch ends a probe (its own commit, or a switch down meanwhile).
            self.probe = None;
        }
        self.sustain_bps = match self.probe {
            Some((Target::Layer(l), _)) => need(layers[l.index()].bitrate_bps, audio_bps),
            _ => 0,
        };

        let changed = self.target != before;
        // A switch down on a link that loses packets, or whose estimate is under what the
        // old layer sends by itself: what would still be sent of it until the new layer's
        // keyframe is lost on the way or delays that keyframe (and the audio).
        let cut = changed
            && match (before, self.target) {
                (Target::Layer(old), Target::Layer(new)) if new < old => {
                    overrun
                        || self
                            .lossy_at
                            .is_some_and(|t| now.saturating_duration_since(t) < CUT_LOSS_WINDOW)
                        || (self.down_to(now, estimate_bps) as f64)
                            < layers[old.index()].bitrate_bps as f64 * CUT_SHARE
                }
                _ => false,
            };
        if changed {
            self.switches += 1;
            self.stirred_at = Some(now);
            self.cut_pace = match self.target {
                Target::Layer(l) if cut => {
                    let video = (layers[l.index()].bitrate_bps as f64 * CUT_PACE_FACTOR) as u64;
                    let room = ((self.down_to(now, estimate_bps) as f64 * CUT_PACE_SHARE) as u64)
                        .saturating_sub(need(0, audio_bps));
                    Some((now, video.min(room).max(CUT_PACE_MIN_BPS)))
                }
                _ => None,
            };
        }
        self.desired_bps = desired(self.target, layers, audio_bps);
        let nudge = match restart {
            // An estimator fooled by the receiver's timing: restarted at the layer's need.
            Some(bps) => {
                self.reset_estimator(now, bps);
                None
            }
            None => self.nudge(now, warm, estimate_bps, layers, audio_bps),
        };
        match nudge {
            Some(Nudge::Reset) => {
                // A fresh estimator probes at once: no dip this step.
                self.reset_estimator(now, estimate_bps);
            }
            Some(Nudge::Dip) => {
                // One step lower: the next step's target is an increase again.
                self.desired_bps = (self.desired_bps as f64 * REPROBE_DIP) as u64;
                self.reprobed_at = Some(now);
            }
            None => {}
        }
        Decision {
            target: self.target,
            changed,
            desired_bps: self.desired_bps,
            sustain_bps: self.sustain_bps,
            cut,
        }
    }

    /// What the estimator needs to be made to probe, if anything (never for the fixed
    /// selector, during the warm-up or a sustained probe, or with a switch up in view).
    ///
    /// - [`Nudge::Reset`]: nothing has stirred it for [`STUCK_RESET_PAUSED`] (paused under
    ///   the lowest layer's need) or [`STUCK_RESET_LAYER`] (below the highest layer, the next
    ///   one not fitting, the estimate at [`STUCK_SHARE`] or more of the layer's need): an
    ///   estimator that may be unable to rise or probe.
    /// - [`Nudge::Dip`]: paused under the lowest layer's need and quiet for
    ///   [`REPROBE_EVERY`] (since the pause, the last dip or reset, and the last loss report).
    fn nudge(
        &self,
        now: Instant,
        warm: bool,
        estimate_bps: u64,
        layers: &[LayerStats; Layer::MAX],
        audio_bps: u64,
    ) -> Option<Nudge> {
        if self.fixed || warm || self.probe.is_some() || self.up.is_some() {
            return None;
        }
        let (after, sent) = match self.target {
            Target::Paused => {
                if fitting(estimate_bps, RESUME_HEADROOM, layers, audio_bps).is_some() {
                    return None;
                }
                let near = lowest(layers).is_some_and(|l| {
                    estimate_bps as f64
                        >= need(layers[l.index()].bitrate_bps, audio_bps) as f64 * PAUSE_SHARE
                });
                let after = if near {
                    STUCK_RESET_NEAR
                } else {
                    STUCK_RESET_PAUSED
                };
                (after, 0)
            }
            Target::Layer(l) => {
                let higher = (l.index() + 1..Layer::MAX).any(|i| usable(&layers[i]));
                if !higher
                    || fitting(estimate_bps, UP_HEADROOM, layers, audio_bps).is_some_and(|b| b > l)
                {
                    return None;
                }
                (
                    STUCK_RESET_LAYER,
                    need(layers[l.index()].bitrate_bps, audio_bps),
                )
            }
        };
        if all_past(now, [Some(self.joined_at), self.stirred_at], after)
            && estimate_bps as f64 >= sent as f64 * STUCK_SHARE
        {
            return Some(Nudge::Reset);
        }
        let dip = self.target == Target::Paused
            && all_past(
                now,
                [self.down_at, self.reprobed_at, self.lossy_at],
                REPROBE_EVERY,
            );
        dip.then_some(Nudge::Dip)
    }

    /// A sustained probe for `probed` (padding the link to its need since `started`): taken
    /// once it ran [`PROBE_SUSTAIN`] and the estimate covers the need; failed on a loss report
    /// of [`PROBE_LOSS_ABORT`] or more during it, an estimate under [`PROBE_ABORT_SHARE`] of
    /// the need (the link could not carry the rate: a delay- or loss-based estimator falls
    /// to what arrives), the current layer no longer fitting, or no verdict by
    /// [`PROBE_SUSTAIN_MAX`]. (Between the two shares the estimate is what a link carrying
    /// exactly the padded rate shows: the probe goes on.)
    #[allow(clippy::too_many_arguments)]
    fn judge_probe(
        &mut self,
        now: Instant,
        probed: Target,
        started: Instant,
        estimate_bps: u64,
        loss: Option<(Instant, f32)>,
        layers: &[LayerStats; Layer::MAX],
        audio_bps: u64,
    ) {
        let Target::Layer(l) = probed else {
            self.probe = None;
            return;
        };
        let n = need(layers[l.index()].bitrate_bps, audio_bps) as f64;
        let e = estimate_bps as f64;
        let ran = now.saturating_duration_since(started);
        let failed = self.down_since.is_some()
            || !usable(&layers[l.index()])
            || loss.is_some_and(|(at, lost)| at > started && lost >= PROBE_LOSS_ABORT)
            // A queue on the link ([`QUEUE_OVERRUN`], one report): the link cannot
            // carry the rate, and the audio waits behind it. Measured in tests/adaptation.rs
            // before: a resume's probe at 0.22 Mbit/s on a 100 kbit/s link (the estimate,
            // fooled by the shaper's burst, read 0.21) ran until the round trip read 0.79 s,
            // and the audio queued behind it was concealed for 0.35 s.
            || self.last_queue.is_some_and(|(_, q)| q >= QUEUE_OVERRUN)
            || e < n * PROBE_ABORT_SHARE
            || ran >= PROBE_SUSTAIN_MAX;
        if failed {
            self.probe = None;
            self.up = None;
            self.probe_failed(now);
        } else if ran >= PROBE_SUSTAIN && e >= n {
            if self.target == Target::Paused {
                // A resume: the link carried the lowest layer's need for the whole probe,
                // and the estimator's state is the weak link's and the audio's (its
                // loss-based half may still cap it at 1.5x what the audio delivered, and it
                // probes only on a rising target). A fresh one from what the probe proved
                // probes at 3x and 6x of it at once (capped at twice the next layer's
                // probing target). Measured in tests/adaptation.rs: resumed with the
                // estimate at 0.13 Mbit/s, the demo's viewer sat on the lowest layer with
                // its estimate at 0.25-0.29 Mbit/s for 8 s on an unshaped link.
                self.reset_estimator(now, estimate_bps);
            }
            self.target = probed;
            self.probe = None;
            self.up = None;
            self.last_up_at = Some(now);
            // The link carried it: what failed before says nothing about it now.
            self.probe_backoff = Duration::ZERO;
        }
    }

    /// Asks the driver for a fresh estimator starting at `from_bps` (it probes at once).
    fn reset_estimator(&mut self, now: Instant, from_bps: u64) {
        self.estimator_resets += 1;
        self.reset_bps = Some(from_bps);
        self.stirred_at = Some(now);
        self.reprobed_at = Some(now);
    }

    /// A sustained probe failed: the link could not carry the layer. The next one waits
    /// longer (the up-hold is at least twice what it was, [`UP_HOLD`] doubled first), so the
    /// link is not made to drop packets every other second — up to [`PROBE_FAILED_HOLD_MAX`],
    /// and only until a probe holds or [`PROBE_FAILED_LAPSE`] passes without another failure
    /// (unlike a flap's longer hold, which halves only after calm periods: a link that came
    /// back is used again soon).
    fn probe_failed(&mut self, now: Instant) {
        self.probe_backoff = (self.probe_backoff.max(UP_HOLD) * 2).min(PROBE_FAILED_HOLD_MAX);
        self.probe_failed_at = Some(now);
        self.probe_failed_queue = self.last_queue.map_or(Duration::ZERO, |(_, q)| q);
        self.stirred_at = Some(now);
    }

    /// Bookkeeping of a switch down (or a pause).
    /// The estimate a switch down goes by: the smoothed one, or the raw one when lower
    /// and fresh ([`RAW_FRESH`]).
    fn down_to(&self, now: Instant, estimate_bps: u64) -> u64 {
        match self.raw {
            Some((at, raw)) if now.saturating_duration_since(at) <= RAW_FRESH => {
                raw.min(estimate_bps)
            }
            _ => estimate_bps,
        }
    }

    /// The estimate a switch up (or resume) and a sustained probe's verdict go by: the
    /// raw one when fresh ([`RAW_FRESH`]), else the smoothed one. The smoothed figure is a
    /// 3 s average: on a link that came back it trails the estimator by seconds at every
    /// step of the climb (measured in tests/adaptation.rs: the paused demo viewer's
    /// smoothed estimate at 94, 185, 253, 472 kbit/s one half-second after another while
    /// the estimator's probes had already found the room); and after a fall it still reads
    /// the old link (the higher of the two started a sustained probe for the layer just
    /// left right after a switch down, whose padding delayed the lower layer's keyframe:
    /// relay_sim's step, 0.77 s to its picture against 0.53). A raw figure that overshoots
    /// the link (a probe burst swallowed by a shaper's bucket) only starts the up-hold; the
    /// sustained probe at the end of it is what commits, and it fails on a link that
    /// cannot carry the layer. Not a raw figure from before the last switch down: it
    /// describes the link before the fall (the smoothed estimate can show a fall first: in
    /// relay_sim's step the switch came on a smoothed 0.75 Mbit/s with the last raw figure,
    /// 0.1 s old, at 3.4, and a sustained probe for the top layer started at once). Not on
    /// a link that flapped (its up-hold doubled): there the raw figure reads the top of
    /// each swing, and the smoothed one's lag is what keeps a switch up from landing just
    /// before the next fall (in the simulated oscillating link, 2.5 ↔ 0.6 Mbit/s every
    /// 5 s, switches up on the raw figure came late in the high phases, and the falls
    /// after them paused the viewer).
    fn up_to(&self, now: Instant, estimate_bps: u64) -> u64 {
        match self.raw {
            Some((at, raw))
                if now.saturating_duration_since(at) <= RAW_FRESH
                    && self.up_hold <= UP_HOLD
                    && self.down_at.is_none_or(|d| at > d) =>
            {
                raw
            }
            _ => estimate_bps,
        }
    }

    /// The viewer's link itself says it is congested: a loss report of [`PROBE_LOSS_ABORT`]
    /// or more since `since` (and not within `settle` of the last switch down, where it may
    /// describe the layer just left), or a queue of [`QUEUE_OVERRUN`] by the latest round
    /// trip. See [`PAUSE_SHARE`].
    fn link_shows_congestion(&self, since: Instant, settle: Duration) -> bool {
        let after = self.down_at.map_or(since, |d| since.max(d + settle));
        self.lossy_at.is_some_and(|l| l >= after)
            || self.last_queue.is_some_and(|(_, q)| q >= QUEUE_OVERRUN)
    }

    /// The viewer's link confirms a fall of the estimate under the layer's need that began
    /// at `since` ([`QUEUE_CONGESTED`]): a loss report of [`PROBE_LOSS_ABORT`] or more since
    /// [`LOSS_WINDOW`] before it, a queue of [`QUEUE_CONGESTED`] in the last two fresh
    /// round-trip readings, or one of [`QUEUE_OVERRUN`] in the last. Once the `settle` of the
    /// last switch down has passed, only what describes the layer the viewer is on counts:
    /// a loss report made past the settle, a reading of a packet sent past it whose queue is
    /// not draining ([`Allocator::read_past_settle`]; until there is one, neither a switch
    /// nor a restart of the estimator).
    ///
    /// Why: the reports and readings within the settle describe what the layer left did (a
    /// cut's old layer overran the link, and its queue drains after it), while the
    /// estimator's raw figure, fed those losses, can stay under the new layer's need past
    /// the settle. Measured in tests/adaptation.rs before (viewer A on 400 kbit/s, 2 runs of
    /// 16): after a cut to the lowest layer, 28–50 % lost in the next reports and a queue of
    /// 300 ms draining; past the settle the raw figure paused the viewer, once proven by the
    /// cut's own loss report (the round trip by then at its floor), once by a reading of the
    /// drain (309, then 187 ms), and it stayed audio only for 5.5 and 8.5 s on a link that
    /// carried the layer. Now the estimator is restarted instead ([`UNPROVEN_RESET`]). Within
    /// the settle the old evidence still counts: a fall from the top straight to a link that
    /// cannot carry the lowest layer either is paused on it by the smoothed estimate.
    fn link_confirms_fall(&self, now: Instant, since: Instant, settle: Duration) -> bool {
        let past = self.past_settle(now, settle);
        let from = since.checked_sub(LOSS_WINDOW).unwrap_or(since);
        let from = past.map_or(from, |p| from.max(p));
        // A reading of at least `min`, taken within RAW_FRESH (past the settle: the last one
        // says it of the layer the viewer is on).
        let sent_past = self.read_past_settle(now, settle);
        let queued = |r: Option<(Instant, Duration)>, min: Duration| {
            r.is_some_and(|(at, q)| q >= min && now.saturating_duration_since(at) <= RAW_FRESH)
        };
        self.lossy_at.is_some_and(|l| l >= from)
            || (sent_past
                && (queued(self.last_queue, QUEUE_OVERRUN)
                    || (queued(self.last_queue, QUEUE_CONGESTED)
                        && queued(self.prev_queue, QUEUE_CONGESTED))))
    }

    /// Once the settle of the last switch down has ended, from when what the link says
    /// describes the layer the viewer is on: the end of `settle` (by the round trip now) or
    /// of the one the round trip at the switch made, the later (a queue that drained since
    /// shortens the round trip, not what the reports made meanwhile describe).
    fn past_settle(&self, now: Instant, settle: Duration) -> Option<Instant> {
        let then = LOSS_SETTLE + self.down_rtt.min(RTT_SETTLE_MAX);
        self.down_at
            .filter(|&d| now >= d + settle)
            .map(|d| d + settle.max(then))
    }

    /// The last round-trip reading says what the link does with the layer the viewer is on
    /// ([`Allocator::link_confirms_fall`]): the settle of the last switch down has not ended,
    /// or the reading measured a packet sent past it and its queue is not draining (still
    /// [`QUEUE_CONGESTED`] or more, and fallen by as much since the reading before: what the
    /// layer left is still leaving; the next reading tells whether a queue stays). A link
    /// that carries its layer with a standing queue moves it by tens of milliseconds from
    /// one reading to the next (keyframes, the feedback's timing: 108 then 68 ms in
    /// `adapt`'s ramp as the link reached 0.3 Mbit/s); one that drains what a cut left falls
    /// at its spare share of the time passing (309 then 187 ms, above).
    fn read_past_settle(&self, now: Instant, settle: Duration) -> bool {
        let draining = match (self.prev_queue, self.last_queue) {
            (Some((_, p)), Some((_, l))) => l >= QUEUE_CONGESTED && l + QUEUE_CONGESTED <= p,
            _ => false,
        };
        self.past_settle(now, settle)
            .is_none_or(|p| self.last_sent.is_some_and(|s| s >= p) && !draining)
    }

    fn switched_down(&mut self, now: Instant) {
        self.down_since = None;
        self.up = None;
        self.probe = None;
        self.down_at = Some(now);
        self.down_rtt = self.rtt.unwrap_or_default();
        // One doubling per switch up, however many steps down follow it.
        if self
            .last_up_at
            .take()
            .is_some_and(|u| now.saturating_duration_since(u) < FLAP_WINDOW)
        {
            self.up_hold = (self.up_hold * 2).min(UP_HOLD_MAX);
        }
        self.calm_since = Some(now);
    }
}

/// How [`Allocator::update`] makes a viewer's estimator probe when it would not by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Nudge {
    /// Reset it ([`STUCK_RESET_PAUSED`]).
    Reset,
    /// Dip the probing target for one step ([`REPROBE_EVERY`]).
    Dip,
}

/// Every one of `times` that happened is at least `d` before `now`.
fn all_past<const N: usize>(now: Instant, times: [Option<Instant>; N], d: Duration) -> bool {
    times
        .into_iter()
        .flatten()
        .all(|t| now.saturating_duration_since(t) >= d)
}

/// Where heavy loss on `cur` leads: what the link delivered is about `cur`'s need times the
/// share that arrived, so the highest lower layer whose need fits that; the lowest usable
/// layer when none does (never a pause: see the module's doc); `None` on the lowest.
fn loss_step(
    cur: Layer,
    lost: f32,
    layers: &[LayerStats; Layer::MAX],
    audio_bps: u64,
) -> Option<Layer> {
    let delivered = need(layers[cur.index()].bitrate_bps, audio_bps) as f64
        * (1.0 - f64::from(lost))
        * LOSS_STEP_MARGIN;
    (0..cur.index())
        .rev()
        .filter(|&i| usable(&layers[i]))
        .find(|&i| need(layers[i].bitrate_bps, audio_bps) as f64 <= delivered)
        .map(|i| Layer(i as u8))
        .or_else(|| lowest(layers).filter(|&l| l < cur))
}

/// A layer the allocator can choose: active and measured.
fn usable(s: &LayerStats) -> bool {
    s.active && s.bitrate_bps > 0
}

fn lowest(layers: &[LayerStats; Layer::MAX]) -> Option<Layer> {
    (0..Layer::MAX)
        .find(|&i| usable(&layers[i]))
        .map(|i| Layer(i as u8))
}

fn top_or_zero(layers: &[LayerStats; Layer::MAX]) -> Layer {
    (0..Layer::MAX)
        .rev()
        .find(|&i| layers[i].active)
        .map_or(Layer(0), |i| Layer(i as u8))
}

/// The highest usable layer whose need, times `factor`, the estimate covers.
fn fitting(
    estimate_bps: u64,
    factor: f64,
    layers: &[LayerStats; Layer::MAX],
    audio_bps: u64,
) -> Option<Layer> {
    (0..Layer::MAX)
        .rev()
        .filter(|&i| usable(&layers[i]))
        .find(|&i| need(layers[i].bitrate_bps, audio_bps) as f64 * factor <= estimate_bps as f64)
        .map(|i| Layer(i as u8))
}

/// The next usable layer above `target` (the lowest one when paused).
fn next_up(target: Target, layers: &[LayerStats; Layer::MAX]) -> Option<Layer> {
    let from = match target {
        Target::Paused => 0,
        Target::Layer(l) => l.index() + 1,
    };
    (from..Layer::MAX)
        .find(|&i| usable(&layers[i]))
        .map(|i| Layer(i as u8))
}

/// What to probe for: the next usable layer above the target with headroom (the top
/// layer's need while on it, so the estimate keeps tracking the link).
///
/// Nothing (0) while no such layer has a measured bitrate — a viewer that joined before the
/// source's video, at a broadcast's start: the driver then hands the estimator no target,
/// and str0m's probe controller, which caps its first probes at twice the target, waits
/// for one. Measured before (tests/tree.rs, viewers joining as the demo's source went
/// live): the target was the audio's need, the first probes ran at ~0.2 Mbit/s and their
/// results *set* the estimate, 1 → 0.54 → 0.38 Mbit/s before the first video packet; the
/// source's first keyframe (65 kB) then reached the viewer at ~0.55 Mbit/s, and its first
/// picture came 0.6–2.8 s after the join (75 ms for a viewer joining a running source).
fn desired(target: Target, layers: &[LayerStats; Layer::MAX], audio_bps: u64) -> u64 {
    let next = next_up(target, layers).or(match target {
        Target::Layer(l) => Some(l),
        Target::Paused => None,
    });
    next.map(|l| layers[l.index()].bitrate_bps)
        .filter(|&bps| bps > 0)
        .map_or(0, |bps| {
            (need(bps, audio_bps) as f64 * PROBE_HEADROOM) as u64
        })
}

/// The fixed-threshold selector the benchmarks compare against: the highest layer whose
/// need fits the estimate, every time, no hysteresis, no pause rule beyond "nothing fits".
pub fn fixed_threshold(
    estimate_bps: u64,
    layers: &[LayerStats; Layer::MAX],
    audio_bps: u64,
) -> Target {
    fitting(estimate_bps, 1.0, layers, audio_bps).map_or(Target::Paused, Target::Layer)
}

#[cfg(test)]
mod tests {
    use super::*;

    const AUDIO: u64 = 40_000;

    fn layers() -> [LayerStats; Layer::MAX] {
        let l = |bps| LayerStats {
            active: true,
            bitrate_bps: bps,
            has_gop: true,
        };
        [l(150_000), l(500_000), l(1_500_000)]
    }

    /// Drives an allocator every 100 ms over `(until_ms, estimate)` steps; returns the
    /// decisions' (ms, target) changes.
    fn run(
        a: &mut Allocator,
        t0: Instant,
        from_ms: u64,
        steps: &[(u64, u64)],
    ) -> Vec<(u64, Target)> {
        let mut changes = Vec::new();
        let mut ms = from_ms;
        for &(until, est) in steps {
            while ms < until {
                let d = a.update(t0 + Duration::from_millis(ms), est, &layers(), AUDIO);
                if d.changed {
                    changes.push((ms, d.target));
                }
                ms += 100;
            }
        }
        changes
    }

    #[test]
    fn joins_on_the_highest_layer_the_start_estimate_covers() {
        let t0 = Instant::now();
        let a = Allocator::new(t0, 1_000_000, &layers(), AUDIO);
        assert_eq!(a.target(), Target::Layer(Layer(1)));
        let a = Allocator::new(t0, 100_000, &layers(), AUDIO);
        assert_eq!(a.target(), Target::Layer(Layer(0)), "never paused at join");
        let a = Allocator::new(t0, 5_000_000, &layers(), AUDIO);
        assert_eq!(a.target(), Target::Layer(Layer(2)));
    }

    #[test]
    fn climbs_fast_during_warmup_then_steps_down_and_recovers() {
        let t0 = Instant::now();
        let mut a = Allocator::new(t0, 1_000_000, &layers(), AUDIO);
        // Probing proves 5 Mbit/s: top layer within the warm-up hold.
        let c = run(&mut a, t0, 0, &[(10_500, 5_000_000)]);
        assert_eq!(c.first(), Some(&(300, Target::Layer(Layer(2)))));
        // Step down to 0.4 Mbit/s at 10.5 s, under DOWN_AT_ONCE_SHARE of the top layer's
        // need: layer 0 at once.
        let c = run(&mut a, t0, 10_500, &[(20_000, 400_000)]);
        assert_eq!(c, vec![(10_500, Target::Layer(Layer(0)))]);
        // Back to 5 Mbit/s at 20 s: ample room, no flap (the last switch up was over 10 s
        // before the switch down): up after the short hold.
        let c = run(&mut a, t0, 20_000, &[(40_000, 5_000_000)]);
        assert_eq!(c, vec![(20_500, Target::Layer(Layer(2)))]);
        assert_eq!(a.switches(), 3);
    }

    /// Down to layer 0 at 5 s and paused at 6.6 s (the link loses some of layer 0, past the
    /// loss settle of the switch down), then `recovered` from 10 s to 20 s: the allocator
    /// and its changes.
    fn paused_then(t0: Instant, recovered: u64) -> (Allocator, Vec<(u64, Target)>) {
        let mut a = Allocator::new(t0, 2_000_000, &layers(), AUDIO);
        let mut c = run(&mut a, t0, 0, &[(5_000, 2_000_000), (6_300, 150_000)]);
        a.on_loss(t0 + Duration::from_millis(6_300), 0.1);
        c.extend(run(
            &mut a,
            t0,
            6_300,
            &[(10_000, 150_000), (20_000, recovered)],
        ));
        (a, c)
    }

    #[test]
    fn asks_for_no_probe_until_a_layer_is_measured() {
        // A viewer that joined before the source's video: nothing to probe for yet.
        let t0 = Instant::now();
        let none = [LayerStats::default(); Layer::MAX];
        let mut a = Allocator::new(t0, 1_000_000, &none, AUDIO);
        let d = a.update(t0 + Duration::from_millis(100), 1_000_000, &none, AUDIO);
        assert_eq!(d.desired_bps, 0, "{d:?}");
        // The source's video measured: the probe target is the layer above, with headroom.
        let d = a.update(t0 + Duration::from_millis(200), 1_000_000, &layers(), AUDIO);
        assert!(d.desired_bps >= need(500_000, AUDIO), "{d:?}");
    }

    #[test]
    fn pauses_below_the_lowest_layer_and_resumes_by_itself() {
        let (a, c) = paused_then(Instant::now(), 600_000);
        assert_eq!(
            c,
            vec![
                // Down to the lowest layer at once, paused when it stays well under its need.
                (5_000, Target::Layer(Layer(0))),
                (6_600, Target::Paused),
                // 600 kbit/s does not cover layer 1's need with headroom (1.15 × 607 k):
                // layer 0 only, after the short hold (600 k is over twice layer 0's need).
                (10_500, Target::Layer(Layer(0))),
            ]
        );
        assert!(
            a.desired_bps() > need(500_000, AUDIO),
            "probes towards layer 1"
        );
    }

    #[test]
    fn a_resume_from_audio_only_takes_the_lowest_layer_first() {
        // Paused; then an estimate that covers the top layer twice over (a probe cluster
        // through a shaper's burst reads like that as well).
        let (_, c) = paused_then(Instant::now(), 3_000_000);
        assert_eq!(
            c,
            vec![
                (5_000, Target::Layer(Layer(0))),
                (6_600, Target::Paused),
                // The lowest layer first, after the short hold…
                (10_500, Target::Layer(Layer(0))),
                // …then the top after the up-hold there (the old rule went straight to it).
                (12_100, Target::Layer(Layer(2))),
            ]
        );
    }

    #[test]
    fn an_app_limited_estimate_near_the_pause_share_pauses_only_a_congested_link() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let n0 = need(150_000, AUDIO) as f64;
        // Between PAUSE_AT_ONCE_SHARE and PAUSE_SHARE of layer 0's need: where an estimator
        // that sees only layer 0 and the audio settles.
        let low = (n0 * (PAUSE_AT_ONCE_SHARE + PAUSE_SHARE) / 2.0) as u64;
        let on_layer_0 = || {
            let mut a = Allocator::new(t0, 2_000_000, &layers(), AUDIO);
            let c = run(&mut a, t0, 0, &[(5_000, 2_000_000), (5_100, low)]);
            assert_eq!(c, vec![(5_000, Target::Layer(Layer(0)))]);
            a
        };

        // Nothing lost, no queue: the link carries layer 0, which stays for 20 s.
        let mut a = on_layer_0();
        a.on_rtt(at(5_100), Duration::from_millis(40));
        let c = run(&mut a, t0, 5_100, &[(25_000, low)]);
        assert_eq!(c, vec![], "paused on an app-limited estimate");

        // The same estimate with 10 % lost: paused PAUSE_AFTER after it stopped fitting.
        let mut a = on_layer_0();
        let mut c = run(&mut a, t0, 5_100, &[(6_500, low)]);
        a.on_loss(at(6_500), 0.1);
        c.extend(run(&mut a, t0, 6_500, &[(10_000, low)]));
        assert_eq!(c, vec![(6_600, Target::Paused)]);

        // With a standing queue on the link instead: readings every 250 ms, each of a packet
        // sent 50 ms before its round trip. Those sent within the settle of the switch down
        // (5 000 + LOSS_SETTLE + the round trip = 6 360 ms) may be the old layer's queue
        // draining; the first sent past it (6 750 - 210 = 6 540 ms) confirms.
        let mut a = on_layer_0();
        a.on_rtt(at(5_100), Duration::from_millis(40));
        let mut c = run(&mut a, t0, 5_100, &[(5_250, low)]);
        for t in (5_250..10_000).step_by(250) {
            let rtt = Duration::from_millis(40 + (t / 250) % 2) + QUEUE_OVERRUN;
            a.on_rtt_sent(at(t), rtt, at(t) - rtt - Duration::from_millis(50));
            c.extend(run(&mut a, t0, t, &[(t + 250, low)]));
        }
        assert_eq!(c, vec![(6_750, Target::Paused)]);
    }

    #[test]
    fn a_fall_the_link_does_not_confirm_restarts_the_estimator_instead_of_a_switch() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let ms = Duration::from_millis;
        // On the top layer with round-trip readings every 250 ms (floor 5 ms); at 10 s the
        // estimate falls to 0.85 of the top layer's need, the estimator's back-off.
        let fall = (need(1_500_000, AUDIO) as f64 * 0.85) as u64;
        let on_top = || {
            let mut a = on_top_for_10_s(t0);
            a.on_rtt(at(9_750), ms(5));
            a
        };
        // Drives 100 ms steps from `from` to `until` at `est`, a round-trip reading of
        // `queue` above the floor every 250 ms; the changes and the estimator restarts.
        let drive = |a: &mut Allocator, from: u64, until: u64, est: u64, queue: u64| {
            let mut changes = Vec::new();
            let mut restarts = Vec::new();
            for t in (from..until).step_by(50) {
                if t % 250 == 0 {
                    // (A reading that repeats the last is no new feedback: vary it.)
                    a.on_rtt(at(t), ms(5 + queue + (t / 250) % 2));
                }
                if t % 100 == 0 {
                    let resets = a.estimator_resets();
                    let d = a.update(at(t), est, &layers(), AUDIO);
                    if d.changed {
                        changes.push((t, d.target));
                    }
                    if a.estimator_resets() > resets {
                        restarts.push((t, a.reset_bps()));
                    }
                }
            }
            (changes, restarts)
        };

        // No loss, a queue of a few milliseconds: the layer stays; UNPROVEN_RESET after the
        // fall the estimator restarts at the layer's need with UP_HEADROOM.
        let mut a = on_top();
        let (changes, restarts) = drive(&mut a, 10_000, 12_000, fall, 3);
        assert_eq!(
            changes,
            vec![],
            "a fall the link did not confirm moved the viewer"
        );
        let restart = (need(1_500_000, AUDIO) as f64 * UP_HEADROOM) as u64;
        assert_eq!(restarts, vec![(10_600, Some(restart))]);
        // An estimate that stays low (here: the restarted estimator falls again at once) is
        // not restarted again within FLAP_WINDOW: DOWN_UNPROVEN after the restart, the viewer
        // goes down without the link's word.
        let (changes, restarts) = drive(&mut a, 12_000, 17_000, fall, 3);
        assert_eq!(restarts, vec![]);
        assert_eq!(changes, vec![(14_700, Target::Layer(Layer(1)))]);

        // The same fall with a standing queue of QUEUE_CONGESTED in two readings: down
        // DOWN_AFTER after it, as before.
        let mut a = on_top();
        let (changes, restarts) = drive(&mut a, 10_000, 12_000, fall, 60);
        assert_eq!(changes, vec![(10_300, Target::Layer(Layer(1)))]);
        assert_eq!(restarts, vec![]);
        // One reading of that queue is not enough (a stall at the receiver), a loss report is.
        let mut a = on_top();
        a.on_rtt(at(10_000), ms(65));
        let c = run(&mut a, t0, 10_000, &[(10_500, fall)]);
        assert_eq!(c, vec![]);
        a.on_loss(at(10_500), 0.1);
        assert_eq!(
            a.update(at(10_500), fall, &layers(), AUDIO).target,
            Target::Layer(Layer(1))
        );

        // A receiver without transport-wide feedback (no round trip): its estimate alone.
        let mut a = on_top_for_10_s(t0);
        let c = run(&mut a, t0, 10_000, &[(11_000, fall)]);
        assert_eq!(c, vec![(10_300, Target::Layer(Layer(1)))]);
    }

    #[test]
    fn a_plain_fall_is_left_at_once_for_the_lowest_layer() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let on_top = || {
            let mut a = Allocator::new(t0, 5_000_000, &layers(), AUDIO);
            run(&mut a, t0, 0, &[(10_000, 5_000_000)]);
            assert_eq!(a.target(), Target::Layer(Layer(2)));
            a
        };
        // 1.1 Mbit/s: under 0.7 × the top layer's need (1.69 Mbit/s). Layer 1 (need 607
        // kbit/s) fits the figure, but the figure is only the first of a fall: layer 0, in
        // the same step, a cut.
        let mut a = on_top();
        let d = a.update(at(10_000), 1_100_000, &layers(), AUDIO);
        assert_eq!(d.target, Target::Layer(Layer(0)));
        assert!(d.changed && d.cut, "{d:?}");
        // 0.8 × the need: an estimator's back-off; the layer is left after DOWN_AFTER only,
        // for the highest layer that fits the figure itself.
        let mut b = on_top();
        let e = (need(1_500_000, AUDIO) as f64 * 0.8) as u64;
        let c = run(&mut b, t0, 10_000, &[(11_000, e)]);
        assert_eq!(c, vec![(10_300, Target::Layer(Layer(1)))]);
        // The raw figure counts as well: a fall seen there first is acted on at once.
        let mut r = on_top();
        r.on_raw_estimate(at(10_000), 700_000);
        let d = r.update(at(10_000), 5_000_000, &layers(), AUDIO);
        assert_eq!(d.target, Target::Layer(Layer(0)));
    }

    #[test]
    fn a_raw_fall_ends_a_climb() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        // As in a_climbing_estimate_keeps_the_layer_until_it_falls: on the top layer, the
        // estimate climbs from 0.5 Mbit/s, raw and smoothed alike; the layer is kept.
        let climbed = || {
            let mut a = Allocator::new(t0, 5_000_000, &layers(), AUDIO);
            a.update(at(0), 5_000_000, &layers(), AUDIO);
            let mut est = 500_000;
            for ms in (1..=16).map(|i| 1_000 + i * 500) {
                a.on_raw_estimate(at(ms), est);
                let d = a.update(at(ms), est, &layers(), AUDIO);
                assert_eq!(d.target, Target::Layer(Layer(2)), "at {ms} ms");
                est += 40_000;
            }
            (a, est - 40_000)
        };
        // The raw figure dips by a tenth (the smoothed one, an average, has not moved):
        // noise, still climbing.
        let (mut a, last) = climbed();
        a.on_raw_estimate(at(9_250), last * 9 / 10);
        let d = a.update(at(9_250), last, &layers(), AUDIO);
        assert_eq!(d.target, Target::Layer(Layer(2)), "{d:?}");
        // It falls by a fifth: the climb is over, and the layer that does not fit is left
        // (at once, for the lowest: 0.88 Mbit/s is under 0.7 of its need).
        let (mut a, last) = climbed();
        a.on_raw_estimate(at(9_250), last * 4 / 5);
        let d = a.update(at(9_250), last, &layers(), AUDIO);
        assert_eq!(d.target, Target::Layer(Layer(0)), "{d:?}");
    }

    #[test]
    fn after_a_cut_video_is_held_to_twice_the_new_layer_for_a_while() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut a = on_top_for_10_s(t0);
        assert_eq!(a.throttle_bps(at(10_000)), None, "no cut yet");
        let d = a.update(at(10_000), 700_000, &layers(), AUDIO);
        assert!(d.cut);
        // Twice layer 0's 150 kbit/s; 0.6 × 700 k less the audio's need is more.
        assert_eq!(a.throttle_bps(at(10_000)), Some(300_000));
        assert_eq!(a.throttle_bps(at(10_000) + CUT_PACE_FOR / 2), Some(300_000));
        assert_eq!(a.throttle_bps(at(10_000) + CUT_PACE_FOR), None, "lapsed");
        // Under the estimate: 0.6 × 300 k less the audio's need (67 k).
        let mut b = Allocator::new(t0, 5_000_000, &layers(), AUDIO);
        run(&mut b, t0, 0, &[(10_000, 5_000_000)]);
        b.on_raw_estimate(at(10_000), 300_000);
        assert!(b.update(at(10_000), 5_000_000, &layers(), AUDIO).cut);
        assert_eq!(b.throttle_bps(at(10_000)), Some(180_000 - need(0, AUDIO)));
        // A switch down on a link that still carries the old layer is no cut: no throttle.
        let mut c = Allocator::new(t0, 5_000_000, &layers(), AUDIO);
        run(&mut c, t0, 0, &[(10_000, 5_000_000)]);
        let ch = run(&mut c, t0, 10_000, &[(11_000, 1_600_000)]);
        assert_eq!(ch, vec![(10_300, Target::Layer(Layer(1)))]);
        assert_eq!(c.throttle_bps(at(10_300)), None);
        // A pause ends it.
        a.update(at(10_100), 40_000, &layers(), AUDIO);
        let ch = run(&mut a, t0, 10_100, &[(12_000, 40_000)]);
        assert_eq!(a.target(), Target::Paused, "{ch:?}");
        assert_eq!(a.throttle_bps(at(11_000)), None);
    }

    #[test]
    fn a_paused_viewer_reprobes_every_few_quiet_seconds() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let paused = || {
            let mut a = Allocator::new(t0, 2_000_000, &layers(), AUDIO).with_sustained_probes();
            let c = run(&mut a, t0, 0, &[(5_000, 2_000_000), (10_000, 60_000)]);
            // Well under the need: layer 0 at once (a plain fall), paused DOWN_AFTER later.
            assert_eq!(c.last(), Some(&(5_400, Target::Paused)));
            a
        };
        let normal = desired(Target::Paused, &layers(), AUDIO);
        // The probing target over 10 s of an estimate made of audio alone, every 100 ms.
        let targets = |a: &mut Allocator, lossy: bool| -> Vec<(u64, u64)> {
            (100..200)
                .map(|i| i * 100)
                .map(|ms| {
                    if lossy && ms % 1_000 == 0 {
                        a.on_loss(at(ms), 0.1);
                    }
                    (ms, a.update(at(ms), 60_000, &layers(), AUDIO).desired_bps)
                })
                .collect()
        };
        // Quiet: every 3 s a dip or (every other time, from 6 s after the pause) an
        // estimator reset instead; the rest normal.
        let mut a = paused();
        let t = targets(&mut a, false);
        let dips: Vec<u64> = t
            .iter()
            .filter(|&&(_, d)| d != normal)
            .map(|&(ms, _)| ms)
            .collect();
        assert_eq!(dips, vec![14_400], "{t:?}");
        assert_eq!(a.estimator_resets(), 2);
        assert!(
            t.iter()
                .all(|&(_, d)| d == normal || d == (normal as f64 * REPROBE_DIP) as u64)
        );
        // A link that still loses what little it is sent: no reprobe.
        let mut b = paused();
        assert!(targets(&mut b, true).iter().all(|&(_, d)| d == normal));
        // Once the estimate covers the lowest layer, the sustained probe takes over: no dip.
        let mut c = paused();
        run(&mut c, t0, 10_000, &[(12_900, 60_000)]);
        let d = c.update(at(12_900), 600_000, &layers(), AUDIO);
        assert!(d.desired_bps >= normal && d.sustain_bps > 0, "{d:?}");
    }

    #[test]
    fn an_estimator_that_neither_rises_nor_stirs_is_reset() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        // The times (ms) an allocator asks for an estimator reset, driven every 100 ms from
        // `from` to 40 s on `estimate`, with a loss report of 10 % every second if `lossy`.
        let resets = |a: &mut Allocator, from: u64, estimate: u64, lossy: bool| -> Vec<u64> {
            let mut seen = a.estimator_resets();
            let mut out = Vec::new();
            for ms in (from / 100..400).map(|i| i * 100) {
                if lossy && ms % 1_000 == 0 {
                    a.on_loss(at(ms), 0.1);
                }
                a.update(at(ms), estimate, &layers(), AUDIO);
                if a.estimator_resets() > seen {
                    seen = a.estimator_resets();
                    out.push(ms);
                }
            }
            out
        };
        let paused = || {
            let mut a = Allocator::new(t0, 2_000_000, &layers(), AUDIO).with_sustained_probes();
            let c = run(&mut a, t0, 0, &[(5_000, 2_000_000), (10_000, 60_000)]);
            assert_eq!(c.last(), Some(&(5_400, Target::Paused)));
            assert_eq!(a.estimator_resets(), 0);
            a
        };
        // Paused, the estimate stuck above the audio's need (67 kbit/s) but under the lowest
        // layer's (229 kbit/s): its rise from 60 to 120 kbit/s at 10 s stirred it; a reset
        // 6 s later, and every 6 s after.
        let mut a = paused();
        assert_eq!(
            resets(&mut a, 10_000, 120_000, false),
            vec![16_000, 22_000, 28_000, 34_000]
        );
        // Near the lowest layer's need (180 kbit/s, 0.79 of it): one probe from resuming,
        // reset sooner.
        let mut n = paused();
        assert_eq!(
            resets(&mut n, 10_000, 180_000, false),
            vec![
                13_000, 16_000, 19_000, 22_000, 25_000, 28_000, 31_000, 34_000, 37_000
            ]
        );
        // Between resets the dips go on (3 s after each).
        let normal = desired(Target::Paused, &layers(), AUDIO);
        let d = a.update(at(41_100), 120_000, &layers(), AUDIO);
        assert_eq!(d.desired_bps, normal);
        // Whatever the estimate (here about the audio's need).
        let mut b = paused();
        assert_eq!(
            resets(&mut b, 10_000, 60_000, false),
            vec![11_400, 17_400, 23_400, 29_400, 35_400]
        );
        // A link that keeps losing: the estimator is alive to it.
        let mut c = paused();
        assert_eq!(resets(&mut c, 10_000, 60_000, true), Vec::<u64>::new());
        // An estimate that keeps rising (a quarter every 4 s): alive too.
        let mut r = paused();
        let mut seen = Vec::new();
        for ms in (100..400).map(|i| i * 100) {
            let e = (60_000.0 * 1.3_f64.powi(((ms - 10_000) / 4_000) as i32)) as u64;
            // (Under the lowest layer's need all along.)
            let e = e.min(220_000);
            r.update(at(ms), e, &layers(), AUDIO);
            seen.push(r.estimator_resets());
        }
        // Flat until 14 s (a reset 6 s after the pause), then rising until 30 s (60 → 220
        // kbit/s) with no reset while far under the need; near it (171 kbit/s from 26 s,
        // 220 from 30 s) resets come STUCK_RESET_NEAR after each stir (a rise, a reset).
        let at_ms: Vec<u64> = seen
            .windows(2)
            .enumerate()
            .filter(|(_, w)| w[1] > w[0])
            .map(|(i, _)| 10_000 + (i as u64 + 1) * 100)
            .collect();
        assert_eq!(
            at_ms,
            vec![11_400, 29_000, 33_000, 36_000, 39_000],
            "{seen:?}"
        );
        // On the lowest layer (229 kbit/s), the estimate at 400 kbit/s: above 1.4× what is
        // sent, under the middle layer's need (607 kbit/s). A reset 15 s after the join.
        let mut l = Allocator::new(t0, 400_000, &layers(), AUDIO).with_sustained_probes();
        assert_eq!(l.target(), Target::Layer(Layer(0)));
        assert_eq!(resets(&mut l, 0, 400_000, false), vec![15_000, 30_000]);
        assert_eq!(l.target(), Target::Layer(Layer(0)));
        // The estimate at what the layer uses (a link at its capacity): no reset.
        let mut m = Allocator::new(t0, 300_000, &layers(), AUDIO).with_sustained_probes();
        assert_eq!(resets(&mut m, 0, 300_000, false), Vec::<u64>::new());
        // On the top layer nothing is wanted higher: no reset.
        let mut top = Allocator::new(t0, 5_000_000, &layers(), AUDIO).with_sustained_probes();
        assert_eq!(resets(&mut top, 0, 5_000_000, false), Vec::<u64>::new());
    }

    #[test]
    fn an_oscillating_link_earns_a_longer_up_hold() {
        let t0 = Instant::now();
        let mut a = Allocator::new(t0, 5_000_000, &layers(), AUDIO);
        // Square wave: 4 s at 5 Mbit/s, 4 s at 0.4 Mbit/s, for two minutes, after warm-up.
        let mut steps = vec![(10_000, 5_000_000)];
        let mut t = 10_000;
        while t < 130_000 {
            steps.push((t + 4_000, 400_000));
            steps.push((t + 8_000, 5_000_000));
            t += 8_000;
        }
        let c = run(&mut a, t0, 0, &steps);
        let ups = c
            .iter()
            .filter(|(_, t)| *t == Target::Layer(Layer(2)))
            .count();
        // A fixed threshold follows every edge of the wave.
        let mut fixed_ups = 0;
        let mut prev = Target::Layer(Layer(2));
        for &(until, est) in &steps {
            let t = fixed_threshold(est, &layers(), AUDIO);
            if t != prev && t == Target::Layer(Layer(2)) && until > 10_000 {
                fixed_ups += 1;
            }
            prev = t;
        }
        assert_eq!(fixed_ups, 15);
        // The hold doubles past the good half-period: the viewer stops climbing into the
        // drops, and tries again only after each calm period.
        assert!(ups * 3 <= fixed_ups, "{ups} switches up: {c:?}");
        // Every bad half-period is still left within DOWN_AFTER (never stuck above the link).
        for w in c.windows(2) {
            if w[0].1 == Target::Layer(Layer(2)) {
                assert_eq!(w[1].1, Target::Layer(Layer(0)));
            }
        }
    }

    #[test]
    fn bursty_loss_of_estimate_below_down_after_does_not_switch() {
        let t0 = Instant::now();
        let mut a = Allocator::new(t0, 5_000_000, &layers(), AUDIO);
        // After warm-up, 200 ms dips every 2 s (shorter than DOWN_AFTER), to 0.8 × the top
        // layer's need: an estimator's back-off, not a plain fall (DOWN_AT_ONCE_SHARE).
        let dip = (need(1_500_000, AUDIO) as f64 * 0.8) as u64;
        let mut steps = vec![(10_000, 5_000_000)];
        let mut t = 10_000;
        while t < 60_000 {
            steps.push((t + 200, dip));
            steps.push((t + 2_000, 5_000_000));
            t += 2_000;
        }
        let c = run(&mut a, t0, 0, &steps);
        assert!(c.is_empty(), "{c:?}");
    }

    #[test]
    fn a_climbing_estimate_keeps_the_layer_until_it_falls() {
        let t0 = Instant::now();
        // Joined on the top layer at 5 Mbit/s; the join's GOP knocks the estimate down to
        // 0.5 Mbit/s at 1 s, from where it climbs 40 kbit/s every 500 ms, past the warm-up.
        let mut a = Allocator::new(t0, 5_000_000, &layers(), AUDIO);
        let mut steps = vec![(1_000, 5_000_000)];
        let mut est = 500_000;
        let mut t = 1_000;
        while t < 12_000 {
            t += 500;
            steps.push((t, est));
            est += 40_000;
        }
        let c = run(&mut a, t0, 0, &steps);
        assert!(c.is_empty(), "a climbing estimate switched: {c:?}");
        // It falls (the link said so), under DOWN_AT_ONCE_SHARE of the top layer's need:
        // down at once, to the lowest layer.
        let c = run(&mut a, t0, 12_000, &[(14_000, 900_000)]);
        assert_eq!(c.first(), Some(&(12_000, Target::Layer(Layer(0)))));
        // A flat estimate is not climbing: after the grace, it counts (over
        // DOWN_AT_ONCE_SHARE of the need: after DOWN_AFTER).
        let mut b = Allocator::new(t0, 5_000_000, &layers(), AUDIO);
        let c = run(&mut b, t0, 0, &[(4_000, 5_000_000), (5_000, 1_300_000)]);
        assert_eq!(c, vec![(4_300, Target::Layer(Layer(1)))]);
        let c = run(&mut b, t0, 5_000, &[(5_100, 900_000), (9_000, 900_000)]);
        assert!(c.is_empty(), "{c:?}");
    }

    #[test]
    fn a_vanished_layer_is_left_for_the_next_one_down() {
        let t0 = Instant::now();
        let mut a = Allocator::new(t0, 5_000_000, &layers(), AUDIO);
        assert_eq!(a.target(), Target::Layer(Layer(2)));
        let mut l = layers();
        l[2] = LayerStats::default();
        let d = a.update(t0 + Duration::from_secs(10), 5_000_000, &l, AUDIO);
        assert_eq!(d.target, Target::Layer(Layer(1)));
        assert!(d.changed);
    }

    /// A viewer past its warm-up on layer 0 of a 400 kbit/s link, with sustained probes.
    /// A viewer on the top layer of a 5 Mbit/s link for 10 s.
    fn on_top_for_10_s(t0: Instant) -> Allocator {
        let mut a = Allocator::new(t0, 5_000_000, &layers(), AUDIO);
        run(&mut a, t0, 0, &[(10_000, 5_000_000)]);
        a
    }

    fn on_a_400_kbit_link(t0: Instant) -> Allocator {
        let mut a = Allocator::new(t0, 400_000, &layers(), AUDIO).with_sustained_probes();
        assert_eq!(a.target(), Target::Layer(Layer(0)));
        assert!(run(&mut a, t0, 0, &[(10_000, 400_000)]).is_empty());
        a
    }

    /// On a 400 kbit/s link, a sustained probe for layer 1 fails on a 150 ms queue at 10.6 s.
    fn probe_failed_on_a_400_kbit_link(t0: Instant) -> Allocator {
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut b = on_a_400_kbit_link(t0);
        b.on_rtt(at(10_000), Duration::from_millis(5));
        run_sustained(&mut b, t0, 10_000, &[(10_600, 1_350_000)]);
        b.on_rtt(at(10_600), Duration::from_millis(155));
        let d = b.update(at(10_600), 1_350_000, &layers(), AUDIO);
        assert_eq!((d.sustain_bps, d.target), (0, Target::Layer(Layer(0))));
        b
    }

    /// Target changes, and the sustained rate asked for at each step (ms, bit/s).
    type Sustained = (Vec<(u64, Target)>, Vec<(u64, u64)>);

    /// Like [`run`], also returning the sustained rate asked for at each step.
    fn run_sustained(
        a: &mut Allocator,
        t0: Instant,
        from_ms: u64,
        steps: &[(u64, u64)],
    ) -> Sustained {
        let mut changes = Vec::new();
        let mut sustain = Vec::new();
        let mut ms = from_ms;
        for &(until, est) in steps {
            while ms < until {
                let d = a.update(t0 + Duration::from_millis(ms), est, &layers(), AUDIO);
                if d.changed {
                    changes.push((ms, d.target));
                }
                sustain.push((ms, d.sustain_bps));
                ms += 100;
            }
        }
        (changes, sustain)
    }

    #[test]
    fn an_estimate_that_overshoots_during_a_short_probe_burst_does_not_switch_up() {
        // What tests/adaptation.rs measured: str0m's probe clusters fit in the shaper's
        // burst and the estimate reads 1.35 Mbit/s on a 400 kbit/s link, for under a second
        // (until the padding sustained at layer 1's need fills the queue and the estimator
        // sees the delay).
        let t0 = Instant::now();
        let mut a = on_a_400_kbit_link(t0);
        let steps = [(10_800, 1_350_000), (20_000, 400_000)];
        let (c, sustain) = run_sustained(&mut a, t0, 10_000, &steps);
        assert!(c.is_empty(), "switched on a burst: {c:?}");
        // The link was asked to carry layer 1's need during the burst, and nothing after.
        let l1 = need(500_000, AUDIO);
        assert!(
            sustain.iter().any(|&(ms, b)| ms < 10_800 && b == l1),
            "{sustain:?}"
        );
        assert!(
            sustain.iter().all(|&(ms, b)| ms < 10_800 || b == 0),
            "{sustain:?}"
        );
        // The allocator without sustained probes takes the bait (ample room: 0.5 s).
        let mut plain = Allocator::new(t0, 400_000, &layers(), AUDIO);
        run(&mut plain, t0, 0, &[(10_000, 400_000)]);
        let c = run(&mut plain, t0, 10_000, &steps);
        assert_eq!(c.first(), Some(&(10_500, Target::Layer(Layer(1)))));
        // The failed probe doubled the hold: a second burst as long as the first, right
        // after, is not even probed for its full length before it ends.
        let (c, _) = run_sustained(
            &mut a,
            t0,
            20_000,
            &[(21_500, 1_350_000), (30_000, 400_000)],
        );
        assert!(c.is_empty(), "{c:?}");
    }

    #[test]
    fn a_failed_probes_longer_hold_lapses_after_a_quiet_while() {
        let t0 = Instant::now();
        let steps = |a: &mut Allocator| {
            // A burst the link cannot carry: the probe fails (at ~10.8 s)...
            run_sustained(a, t0, 10_000, &[(10_800, 1_350_000), (25_000, 400_000)]);
            // ... then, 14 s later, the link carries 1.35 Mbit/s.
            run_sustained(a, t0, 25_000, &[(30_000, 1_350_000)]).0
        };
        // Ample room: the hold is the probe itself, layer 1 after PROBE_SUSTAIN.
        let mut a = on_a_400_kbit_link(t0);
        assert_eq!(steps(&mut a), vec![(26_200, Target::Layer(Layer(1)))]);
        // 4 s after the failure, the doubled hold (3 s) stands.
        let mut b = on_a_400_kbit_link(t0);
        run_sustained(
            &mut b,
            t0,
            10_000,
            &[(10_800, 1_350_000), (15_000, 400_000)],
        );
        let (c, _) = run_sustained(&mut b, t0, 15_000, &[(20_000, 1_350_000)]);
        assert_eq!(c, vec![(18_000, Target::Layer(Layer(1)))]);
    }

    #[test]
    fn a_sustained_probe_that_holds_switches_up() {
        let t0 = Instant::now();
        let mut a = on_a_400_kbit_link(t0);
        // The link really carries 1.35 Mbit/s: padding at layer 1's need from the first
        // fitting estimate (ample room: the hold is the probe), layer 1 once it held.
        let (c, sustain) = run_sustained(&mut a, t0, 10_000, &[(13_000, 1_350_000)]);
        assert_eq!(c, vec![(11_200, Target::Layer(Layer(1)))]);
        let l1 = need(500_000, AUDIO);
        assert!(
            sustain
                .iter()
                .all(|&(ms, b)| if ms < 11_200 { b == l1 } else { b == 0 }),
            "{sustain:?}"
        );
        assert_eq!(a.sustain_bps(), 0);
        // A paused viewer resumes only after a sustained probe at layer 0's need.
        let mut b = on_a_400_kbit_link(t0);
        let (c, _) = run_sustained(&mut b, t0, 10_000, &[(12_000, 100_000)]);
        assert_eq!(c, vec![(10_300, Target::Paused)]);
        let (c, sustain) = run_sustained(&mut b, t0, 12_000, &[(16_000, 600_000)]);
        let l0 = need(150_000, AUDIO);
        assert!(sustain.iter().any(|&(_, s)| s == l0), "{sustain:?}");
        // (600 kbit/s is twice layer 0's need: the hold is the probe.)
        assert_eq!(c, vec![(13_200, Target::Layer(Layer(0)))]);
    }

    #[test]
    fn a_resume_carried_by_its_probe_resets_the_estimator_from_what_it_proved() {
        let t0 = Instant::now();
        let mut a = on_a_400_kbit_link(t0);
        let (c, _) = run_sustained(&mut a, t0, 10_000, &[(12_000, 100_000)]);
        assert_eq!(c, vec![(10_300, Target::Paused)]);
        let resets = a.estimator_resets();
        let (c, _) = run_sustained(&mut a, t0, 12_000, &[(16_000, 600_000)]);
        assert_eq!(c, vec![(13_200, Target::Layer(Layer(0)))]);
        assert_eq!(a.estimator_resets(), resets + 1, "no reset at the resume");
        assert_eq!(a.reset_bps(), Some(600_000));
        // A switch up between layers resets nothing.
        let (c, _) = run_sustained(&mut a, t0, 16_000, &[(22_000, 1_350_000)]);
        assert_eq!(
            c.last().map(|&(_, t)| t),
            Some(Target::Layer(Layer(1))),
            "{c:?}"
        );
        assert_eq!(a.estimator_resets(), resets + 1);
    }

    #[test]
    fn a_switch_up_goes_by_the_raw_estimate_but_not_on_a_link_that_flapped() {
        let t0 = Instant::now();
        // Smoothed 400 kbit/s (layer 0's link); the estimator itself reads 1.35 Mbit/s.
        let drive = |a: &mut Allocator, from_ms: u64, until_ms: u64, est: u64, raw: u64| {
            let mut first = None;
            for ms in (from_ms..until_ms).step_by(100) {
                if ms % 250 == 0 {
                    a.on_raw_estimate(t0 + Duration::from_millis(ms), raw);
                }
                let d = a.update(t0 + Duration::from_millis(ms), est, &layers(), AUDIO);
                if d.changed && first.is_none() {
                    first = Some((ms, d.target));
                }
            }
            first
        };
        let mut a = on_a_400_kbit_link(t0);
        let up = drive(&mut a, 10_000, 14_000, 400_000, 1_350_000);
        assert_eq!(up, Some((11_200, Target::Layer(Layer(1)))));
        // The same on a link whose up-hold doubled (a flap): the smoothed figure rules.
        let mut b = on_a_400_kbit_link(t0);
        b.up_hold = UP_HOLD * 2;
        assert_eq!(drive(&mut b, 10_000, 14_000, 400_000, 1_350_000), None);
        // Nor when the raw figure is the lower: the smoothed one trails a fall.
        let mut d = on_a_400_kbit_link(t0);
        assert_eq!(drive(&mut d, 10_000, 14_000, 1_350_000, 400_000), None);
        // Nor a raw figure from before a switch down: the smoothed one showed the fall first.
        let mut e = Allocator::new(t0, 2_000_000, &layers(), AUDIO).with_sustained_probes();
        assert!(run(&mut e, t0, 0, &[(10_000, 2_000_000)]).is_empty());
        e.on_raw_estimate(t0 + Duration::from_millis(9_900), 2_000_000);
        let (c, sustain) = run_sustained(&mut e, t0, 10_000, &[(10_800, 300_000)]);
        assert_eq!(c, vec![(10_000, Target::Layer(Layer(0)))]);
        assert!(sustain.iter().all(|&(_, b)| b == 0), "{sustain:?}");
        // A stale raw figure is not used.
        let mut c = on_a_400_kbit_link(t0);
        c.on_raw_estimate(t0 + Duration::from_millis(8_000), 1_350_000);
        assert!(run(&mut c, t0, 10_000, &[(14_000, 400_000)]).is_empty());
    }

    #[test]
    fn an_estimate_near_the_padded_rate_keeps_the_probe_going() {
        let t0 = Instant::now();
        let l0 = need(150_000, AUDIO);
        let paused = |t0| {
            let mut a = on_a_400_kbit_link(t0);
            let (c, _) = run_sustained(&mut a, t0, 10_000, &[(12_000, 100_000)]);
            assert_eq!(c, vec![(10_300, Target::Paused)]);
            a
        };
        // Resuming: the estimate reads 600 kbit/s, then, padded to layer 0's need, about
        // that need (92 % of it: what a link carrying exactly the padded rate shows), then
        // over it. The probe goes on past PROBE_SUSTAIN and takes layer 0 once the estimate
        // covers the need.
        let mut a = paused(t0);
        let steps = [
            (12_300, 600_000),
            (13_500, l0 * 92 / 100),
            (14_000, l0 + 10_000),
        ];
        let (c, sustain) = run_sustained(&mut a, t0, 12_000, &steps);
        assert_eq!(c, vec![(13_500, Target::Layer(Layer(0)))]);
        assert!(
            sustain.iter().all(|&(ms, b)| (b == l0) == (ms < 13_500)),
            "{sustain:?}"
        );
        // Never over the need: no verdict by PROBE_SUSTAIN_MAX, the probe failed.
        let mut b = paused(t0);
        let (c, sustain) = run_sustained(
            &mut b,
            t0,
            12_000,
            &[(12_300, 600_000), (15_000, l0 * 92 / 100)],
        );
        assert!(c.is_empty(), "{c:?}");
        assert_eq!(sustain.last(), Some(&(14_900, 0)));
        assert!(
            sustain.iter().any(|&(ms, b)| ms == 14_300 && b == l0),
            "{sustain:?}"
        );
        // Under 85 % of the need: failed at once.
        let mut d = paused(t0);
        let (c, sustain) = run_sustained(
            &mut d,
            t0,
            12_000,
            &[(12_300, 600_000), (13_000, l0 * 80 / 100)],
        );
        assert!(c.is_empty(), "{c:?}");
        assert_eq!(sustain[3], (12_300, 0), "{sustain:?}");
    }

    #[test]
    fn after_warm_up_a_viewer_probes_and_climbs_one_layer_at_a_time() {
        let t0 = Instant::now();
        // On the lowest layer of a weak link; then an estimate that covers the top layer
        // twice over (through a shaper's burst a probe cluster reads like that too).
        let mut a = on_a_400_kbit_link(t0);
        let (c, sustain) = run_sustained(&mut a, t0, 10_000, &[(16_000, 5_000_000)]);
        let probed: Vec<u64> = sustain.iter().map(|&(_, b)| b).filter(|&b| b > 0).collect();
        // The first probe is for layer 1 only (the old rule probed the top layer at once)…
        assert_eq!(probed.first(), Some(&need(500_000, AUDIO)), "{sustain:?}");
        // …and the climb takes layer 1, then the top after its own probe.
        assert_eq!(
            c.iter().map(|&(_, t)| t).collect::<Vec<_>>(),
            vec![Target::Layer(Layer(1)), Target::Layer(Layer(2))],
            "{c:?}"
        );
        assert!(probed.contains(&need(1_500_000, AUDIO)), "{sustain:?}");
        // During warm-up the climb still goes straight to where the estimate points.
        let mut w = Allocator::new(t0, 400_000, &layers(), AUDIO).with_sustained_probes();
        let (c, _) = run_sustained(&mut w, t0, 0, &[(3_000, 5_000_000)]);
        assert_eq!(
            c.first().map(|&(_, t)| t),
            Some(Target::Layer(Layer(2))),
            "{c:?}"
        );
    }

    #[test]
    fn loss_during_a_sustained_probe_aborts_it() {
        let t0 = Instant::now();
        let mut a = on_a_400_kbit_link(t0);
        let (c, _) = run_sustained(&mut a, t0, 10_000, &[(10_600, 1_350_000)]);
        assert!(c.is_empty());
        assert_eq!(a.sustain_bps(), need(500_000, AUDIO), "probing");
        // The estimate still reads high, but the link drops the padding: 8 % lost.
        a.on_loss(t0 + Duration::from_millis(10_550), 0.08);
        let d = a.update(
            t0 + Duration::from_millis(10_600),
            1_350_000,
            &layers(),
            AUDIO,
        );
        assert_eq!(
            (d.target, d.changed, d.sustain_bps),
            (Target::Layer(Layer(0)), false, 0)
        );
        // The hold doubled (3 s, no ample shortcut after a failure): no new probe for the
        // first 1.8 s, then 1.2 s of probing, then layer 1.
        let (c, sustain) = run_sustained(&mut a, t0, 10_700, &[(16_000, 1_350_000)]);
        assert_eq!(c, vec![(13_700, Target::Layer(Layer(1)))]);
        assert!(
            sustain
                .iter()
                .all(|&(ms, b)| (b != 0) == (12_500..13_700).contains(&ms)),
            "{sustain:?}"
        );
        // Light loss (under the abort share) does not abort a probe.
        let mut b = on_a_400_kbit_link(t0);
        run_sustained(&mut b, t0, 10_000, &[(10_600, 1_350_000)]);
        b.on_loss(t0 + Duration::from_millis(10_550), 0.02);
        let (c, _) = run_sustained(&mut b, t0, 10_600, &[(12_000, 1_350_000)]);
        assert_eq!(c, vec![(11_200, Target::Layer(Layer(1)))]);
    }

    #[test]
    fn heavy_loss_steps_down_at_once_to_what_arrived_and_pauses_on_the_lowest_layer() {
        let t0 = Instant::now();
        let mut a = Allocator::new(t0, 5_000_000, &layers(), AUDIO).with_sustained_probes();
        run(&mut a, t0, 0, &[(10_000, 5_000_000)]);
        assert_eq!(a.target(), Target::Layer(Layer(2)));
        let at = |ms| t0 + Duration::from_millis(ms);
        // Loss under the share: nothing.
        a.on_loss(at(10_000), 0.1);
        assert!(!a.update(at(10_000), 5_000_000, &layers(), AUDIO).changed);
        // A fifth lost while the estimate still reads 5 Mbit/s: half of what arrived (0.68
        // Mbit/s) fits layer 1.
        a.on_loss(at(10_100), 0.2);
        let d = a.update(at(10_100), 5_000_000, &layers(), AUDIO);
        assert_eq!((d.target, d.changed), (Target::Layer(Layer(1)), true));
        assert!(d.cut, "a switch down on a losing link cuts the old layer");
        // The next report may still describe the layer just left: no second step. (The
        // estimate now fits layer 1, not layer 2: no sustained probe, whose padding would
        // be what the link lost — a loss report during a probe only ends the probe.)
        a.on_loss(at(11_100), 0.35);
        assert!(!a.update(at(11_100), 1_000_000, &layers(), AUDIO).changed);
        // Still heavy after the settle time: down again.
        a.on_loss(at(12_200), 0.35);
        let d = a.update(at(12_200), 1_000_000, &layers(), AUDIO);
        assert_eq!(d.target, Target::Layer(Layer(0)));
        // On the lowest layer: a quarter lost is not enough to pause (the estimate decides)...
        a.on_loss(at(13_500), 0.25);
        assert!(!a.update(at(13_500), 1_000_000, &layers(), AUDIO).changed);
        // ... 30 % or more pauses video at once, whatever the estimate still reads.
        a.on_loss(at(14_800), 0.45);
        let d = a.update(at(14_800), 1_000_000, &layers(), AUDIO);
        assert_eq!((d.target, d.changed), (Target::Paused, true));
        assert_eq!(a.switches(), 3);
        // A third lost on the top layer: half of what arrived (0.55 Mbit/s) no longer fits
        // layer 1 (0.61 Mbit/s with the audio): layer 0, one keyframe wait, not two.
        let mut t = Allocator::new(t0, 5_000_000, &layers(), AUDIO).with_sustained_probes();
        run(&mut t, t0, 0, &[(10_000, 5_000_000)]);
        t.on_loss(at(10_000), 0.35);
        let d = t.update(at(10_000), 5_000_000, &layers(), AUDIO);
        assert_eq!((d.target, d.changed), (Target::Layer(Layer(0)), true));
        // 80 % lost on the top layer: what arrived (0.34 Mbit/s) fits layer 0 only.
        let mut c = Allocator::new(t0, 5_000_000, &layers(), AUDIO).with_sustained_probes();
        run(&mut c, t0, 0, &[(10_000, 5_000_000)]);
        c.on_loss(at(10_000), 0.8);
        let d = c.update(at(10_000), 5_000_000, &layers(), AUDIO);
        assert_eq!((d.target, d.changed), (Target::Layer(Layer(0)), true));
        // During a probe heavy loss ends the probe, and the layer is kept.
        let mut b = on_a_400_kbit_link(t0);
        run_sustained(&mut b, t0, 10_000, &[(10_600, 1_350_000)]);
        b.on_loss(at(10_550), 0.5);
        let d = b.update(at(10_600), 1_350_000, &layers(), AUDIO);
        assert_eq!((d.target, d.sustain_bps), (Target::Layer(Layer(0)), 0));
    }

    #[test]
    fn loss_right_after_a_clean_report_is_read_over_the_span_between_them() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        // On the top layer (need ~1.64 Mbit/s), the estimate still high; a clean report at
        // 10 s, then `lost` at `then_ms`: the decision.
        let after_clean = |clean: Option<f32>, then_ms: u64, lost: f32| {
            let mut a = Allocator::new(t0, 5_000_000, &layers(), AUDIO).with_sustained_probes();
            run(&mut a, t0, 0, &[(10_000, 5_000_000)]);
            assert_eq!(a.target(), Target::Layer(Layer(2)));
            if let Some(c) = clean {
                a.on_loss(at(10_000), c);
            }
            assert!(!a.update(at(10_000), 5_000_000, &layers(), AUDIO).changed);
            a.on_loss(at(then_ms), lost);
            a.update(at(then_ms), 5_000_000, &layers(), AUDIO)
        };
        // 22 % over the window, 250 ms after a clean report: ~88 % of the span's packets
        // lost; what arrived fits the lowest layer only, in one step.
        let d = after_clean(Some(0.0), 10_250, 0.22);
        assert_eq!(
            (d.target, d.changed, d.cut),
            (Target::Layer(Layer(0)), true, true)
        );
        // The clean report's own losses are not counted twice (0.22 - 0.04 over a quarter).
        let d = after_clean(Some(0.04), 10_250, 0.22);
        assert_eq!((d.target, d.changed), (Target::Layer(Layer(0)), true));
        // The same share with no clean report before it, or one a whole window earlier: half
        // of what arrived (0.64 Mbit/s) fits layer 1 (~0.59).
        let d = after_clean(None, 10_250, 0.22);
        assert_eq!((d.target, d.changed), (Target::Layer(Layer(1)), true));
        let d = after_clean(Some(0.0), 11_000, 0.22);
        assert_eq!((d.target, d.changed), (Target::Layer(Layer(1)), true));
        // A burst of random loss (30 % over the span: 7.5 % of the window) moves nothing.
        let d = after_clean(Some(0.0), 10_250, 0.075);
        assert!(!d.changed);
        // Nor a report that was not clean before (10 %: the span rule needs a clean one).
        let d = after_clean(Some(0.1), 10_250, 0.19);
        assert!(!d.changed);

        // On the lowest layer: 15 % of the window right after a clean report (60 % of the
        // span) pauses video; 15 % alone does not.
        let on_lowest = |clean: bool| {
            let mut a = on_a_400_kbit_link(t0);
            if clean {
                a.on_loss(at(10_000), 0.0);
            }
            assert!(!a.update(at(10_000), 400_000, &layers(), AUDIO).changed);
            a.on_loss(at(10_250), 0.15);
            a.update(at(10_250), 400_000, &layers(), AUDIO)
        };
        assert_eq!(on_lowest(true).target, Target::Paused);
        assert_eq!(on_lowest(false).target, Target::Layer(Layer(0)));

        // Not a sustained probe's own losses: the probe fails on them, and the reports of the
        // second after it still hold them.
        let mut b = on_a_400_kbit_link(t0);
        run_sustained(&mut b, t0, 10_000, &[(10_500, 1_350_000)]);
        assert_eq!(b.sustain_bps(), need(500_000, AUDIO), "probing");
        b.on_loss(at(10_500), 0.0);
        assert!(!b.update(at(10_500), 1_350_000, &layers(), AUDIO).changed);
        b.on_loss(at(10_750), 0.15);
        let d = b.update(at(10_750), 1_350_000, &layers(), AUDIO);
        assert_eq!(
            (d.target, d.sustain_bps),
            (Target::Layer(Layer(0)), 0),
            "failed"
        );
        // (28 % after the clean report 500 ms before: 56 % of the span.)
        b.on_loss(at(11_000), 0.28);
        let d = b.update(at(11_000), 1_350_000, &layers(), AUDIO);
        assert_eq!(
            d.target,
            Target::Layer(Layer(0)),
            "paused on the probe's losses"
        );
    }

    #[test]
    fn after_a_switch_down_loss_reports_settle_for_longer_on_a_queued_link() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        // Cut from the top layer to the lowest at 10 s on a report of 80 % lost; then 45 %
        // lost at `then_ms` (the old layer's losses, or the lowest layer's own): paused?
        let paused_at = |rtt: Option<u64>, then_ms: u64| {
            let mut a = Allocator::new(t0, 5_000_000, &layers(), AUDIO).with_sustained_probes();
            run(&mut a, t0, 0, &[(10_000, 5_000_000)]);
            if let Some(r) = rtt {
                a.on_rtt(at(9_900), Duration::from_millis(r));
            }
            a.on_loss(at(10_000), 0.8);
            let d = a.update(at(10_000), 5_000_000, &layers(), AUDIO);
            assert_eq!((d.target, d.cut), (Target::Layer(Layer(0)), true));
            a.on_loss(at(then_ms), 0.45);
            a.update(at(then_ms), 5_000_000, &layers(), AUDIO).target == Target::Paused
        };
        // No round trip known: the bare settle (1.2 s).
        assert!(!paused_at(None, 11_100));
        assert!(paused_at(None, 11_300));
        // A 0.4 s round trip (a queue): 1.6 s.
        assert!(!paused_at(Some(400), 11_500));
        assert!(paused_at(Some(400), 11_700));
        // At most a second more, whatever the round trip.
        assert!(!paused_at(Some(5_000), 12_100));
        assert!(paused_at(Some(5_000), 12_300));
    }

    #[test]
    fn a_sustained_probe_fails_on_a_queue_it_builds() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let ms = Duration::from_millis;
        // A sustained probe for layer 1 from layer 0; round trips of 5 ms, then `rtt` at
        // 10.6 s: the decision then.
        let probe = |rtt: u64| {
            let mut b = on_a_400_kbit_link(t0);
            b.on_rtt(at(10_000), ms(5));
            run_sustained(&mut b, t0, 10_000, &[(10_600, 1_350_000)]);
            assert_eq!(b.sustain_bps(), need(500_000, AUDIO), "probing");
            b.on_rtt(at(10_600), ms(rtt));
            (b.update(at(10_600), 1_350_000, &layers(), AUDIO), b)
        };
        // 150 ms above the floor at the first report: the padding stops, the layer is kept.
        let (d, _) = probe(150);
        assert_eq!(
            (d.target, d.changed, d.sustain_bps),
            (Target::Layer(Layer(0)), false, 0)
        );
        // 100 ms: the probe goes on, and carries the switch up.
        let (d, mut b) = probe(100);
        assert_eq!(d.sustain_bps, need(500_000, AUDIO));
        b.on_rtt(at(10_700), ms(8));
        let (c, _) = run_sustained(&mut b, t0, 10_700, &[(12_000, 1_350_000)]);
        assert_eq!(c, vec![(11_200, Target::Layer(Layer(1)))]);
        // The floor is the lowest of the last 30 s: a link whose round trip is 400 ms by
        // itself has no queue at 450.
        let mut f = on_a_400_kbit_link(t0);
        f.on_rtt(at(10_000), ms(400));
        run_sustained(&mut f, t0, 10_000, &[(10_600, 1_350_000)]);
        f.on_rtt(at(10_600), ms(450));
        assert_ne!(
            f.update(at(10_600), 1_350_000, &layers(), AUDIO)
                .sustain_bps,
            0
        );
    }

    #[test]
    fn what_a_failed_probe_left_in_the_reports_does_not_pause_a_viewer_its_link_carries() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let ms = Duration::from_millis;
        let failed = || probe_failed_on_a_400_kbit_link(t0);
        // The reports after it carry its padding: 35 % lost, a queue that grows, the raw
        // estimate at 100 kbit/s. Layer 0 is kept.
        let mut b = failed();
        let mut changes = Vec::new();
        for (t, rtt) in [(10_700, 300), (10_950, 420), (11_200, 560), (11_450, 600)] {
            b.on_loss(at(t), 0.35);
            b.on_rtt(at(t), ms(rtt));
            b.on_raw_estimate(at(t), 100_000);
            changes.extend(run(&mut b, t0, t, &[(t + 200, 400_000)]));
        }
        assert_eq!(changes, vec![], "{:?}", b.target());
        // A queue that grows on what was sent after the probe ended (READING_SLACK) is the
        // link's own: the viewer goes to audio only within the settle.
        let mut b = failed();
        let mut changes = Vec::new();
        for (t, rtt) in [(10_850, 180), (11_100, 280), (11_350, 420), (11_600, 560)] {
            b.on_rtt(at(t), ms(rtt));
            changes.extend(run(&mut b, t0, t, &[(t + 200, 400_000)]));
        }
        assert_eq!(changes, vec![(11_350, Target::Paused)]);
        // Once the reports are past it (LOSS_SETTLE and the round trip), the same readings
        // are the link's: audio only.
        let mut b = failed();
        run(&mut b, t0, 10_700, &[(12_300, 400_000)]);
        b.on_loss(at(12_300), 0.35);
        assert_eq!(
            b.update(at(12_300), 400_000, &layers(), AUDIO).target,
            Target::Paused
        );
        let mut b = failed();
        run(&mut b, t0, 10_700, &[(12_300, 400_000)]);
        b.on_raw_estimate(at(12_300), 100_000);
        // (With the link's word on the fall: a reading of QUEUE_OVERRUN, see QUEUE_CONGESTED.)
        b.on_rtt(at(12_300), ms(300));
        let c = run(&mut b, t0, 12_300, &[(13_000, 400_000)]);
        assert_eq!(
            c,
            vec![(12_600, Target::Paused)],
            "the raw figure, DOWN_AFTER later"
        );
    }

    #[test]
    fn a_queue_read_on_what_was_sent_after_a_failed_probe_counts_by_when_it_was_sent() {
        // Seen end to end (tests/adaptation.rs, a decision print): a sustained probe fails
        // just as the link falls to 100 kbit/s, and the readings that follow grow at every
        // step. Each packet's send instant (its reading's feedback came ~100 ms before the
        // stats) tells which of them measured what was sent after the failure.
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let ms = Duration::from_millis;
        let failed = || probe_failed_on_a_400_kbit_link(t0);
        let readings = [(10_850, 345), (11_100, 551), (11_350, 657), (11_600, 811)];
        // Sent 10 405, 10 449, 10 593 (the probe's) and 10 689 ms (after it): audio only on
        // the last.
        let mut b = failed();
        let mut changes = Vec::new();
        for (t, rtt) in readings {
            b.on_rtt_sent(at(t), ms(rtt), at(t - rtt - 100));
            changes.extend(run(&mut b, t0, t, &[(t + 200, 400_000)]));
        }
        assert_eq!(changes, vec![(11_600, Target::Paused)]);
        // Without the send instants, READING_SLACK puts every one of them before the failure:
        // nothing until the settle ends.
        let mut b = failed();
        let mut changes = Vec::new();
        for (t, rtt) in readings {
            b.on_rtt(at(t), ms(rtt));
            changes.extend(run(&mut b, t0, t, &[(t + 200, 400_000)]));
        }
        assert_eq!(changes, vec![]);
    }

    #[test]
    fn what_a_failed_probe_left_read_on_what_was_sent_after_it_does_not_pause_a_viewer_its_link_carries()
     {
        // Seen end to end (FAILED_PROBE_LEFT): a probe fails on a reading that lags the queue
        // it built; the next reading, of a packet sent just after the failure, meets what the
        // probe left and is above the failure's reading, grown from calm. Then it drains.
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let ms = Duration::from_millis;
        // The failure at 10 600 ms read 150 ms of queue (a packet sent at 10 195 at the
        // latest, READING_SLACK); 225 ms read on a packet sent at 10 640.
        let mut b = probe_failed_on_a_400_kbit_link(t0);
        let mut changes = Vec::new();
        for (t, rtt, sent) in [
            (10_850, 230, 10_640),
            (11_100, 60, 11_000),
            (11_350, 8, 11_300),
        ] {
            b.on_rtt_sent(at(t), ms(rtt), at(sent));
            changes.extend(run(&mut b, t0, t, &[(t + 200, 400_000)]));
        }
        assert_eq!(changes, vec![], "paused on the probe's leftover");
        // Past FAILED_PROBE_LEFT the same reading is the link's own: audio only at once.
        let mut b = probe_failed_on_a_400_kbit_link(t0);
        b.on_rtt_sent(at(10_850), ms(300), at(10_640));
        let c = run(&mut b, t0, 10_850, &[(11_000, 400_000)]);
        assert_eq!(c, vec![(10_850, Target::Paused)]);
        // Growth read wholly on what was sent after the failure counts under it too: the
        // leftover drained to calm, then the queue rose again within the settle.
        let mut b = probe_failed_on_a_400_kbit_link(t0);
        let mut changes = Vec::new();
        let readings = [
            (10_850, 45, 10_700),
            (11_100, 105, 10_920),
            (11_350, 165, 11_110),
        ];
        for (t, rtt, sent) in readings {
            b.on_rtt_sent(at(t), ms(rtt), at(sent));
            changes.extend(run(&mut b, t0, t, &[(t + 200, 400_000)]));
        }
        assert_eq!(changes, vec![(11_350, Target::Paused)]);
    }

    #[test]
    fn what_a_cut_left_does_not_confirm_a_fall_on_the_layer_it_went_to() {
        // Seen end to end (tests/adaptation.rs, viewer A on 400 kbit/s): a cut from the top
        // layer to the lowest, 28 % lost in the next report (the old layer's), then clean
        // reports and a round trip at its floor; the estimator's raw figure, fed those
        // losses, stayed under the lowest layer's need, and past the settle the viewer was
        // paused for 5.5 s on a link that carried the layer.
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let ms = Duration::from_millis;
        let cut = || {
            let mut a = on_top_for_10_s(t0);
            a.on_rtt(at(9_750), ms(5));
            a.on_rtt(at(10_000), ms(290));
            assert!(a.update(at(10_000), 700_000, &layers(), AUDIO).cut);
            a
        };
        // Every 100 ms to `until`: a report every 250 ms (`loss` lost, a round trip of
        // `rtt`), the raw figure at `raw` until the estimator restarts, at the restart's
        // figure after; the changes and the restarts.
        let drive = |a: &mut Allocator, from: u64, until: u64, raw: u64, loss: f32, rtt: u64| {
            let (mut changes, mut restarts) = (Vec::new(), Vec::new());
            for t in (from..until).step_by(50) {
                if t % 250 == 0 {
                    a.on_loss(at(t), loss);
                    a.on_rtt(at(t), ms(rtt + (t / 250) % 2));
                }
                if t % 100 == 0 {
                    a.on_raw_estimate(at(t), a.reset_bps().unwrap_or(raw));
                    let resets = a.estimator_resets();
                    let d = a.update(at(t), 700_000, &layers(), AUDIO);
                    if d.changed {
                        changes.push((t, d.target));
                    }
                    if a.estimator_resets() > resets {
                        restarts.push(t);
                    }
                }
            }
            (changes, restarts)
        };
        // The old layer's queue and losses for 0.75 s after the cut.
        let mut a = cut();
        let (changes, _) = drive(&mut a, 10_050, 10_800, 100_000, 0.28, 280);
        assert_eq!(changes, vec![]);
        // Then clean reports, no queue: layer 0 stays, the estimator is restarted instead.
        let (changes, restarts) = drive(&mut a, 10_800, 14_000, 100_000, 0.0, 5);
        assert_eq!(changes, vec![], "paused on the cut's own losses");
        assert_eq!(restarts.len(), 1, "{restarts:?}");
        assert_eq!(a.target(), Target::Layer(Layer(0)));

        // A link that cannot carry layer 0 either goes on losing past the settle: paused.
        let mut a = cut();
        drive(&mut a, 10_050, 10_800, 100_000, 0.28, 280);
        let (changes, _) = drive(&mut a, 10_800, 14_000, 100_000, 0.12, 5);
        assert_eq!(
            changes.first().map(|c| c.1),
            Some(Target::Paused),
            "{changes:?}"
        );

        // The old layer's queue draining past the settle (seen too: 309, then 187 ms, the
        // losses 30-50 %, then 17 and 5 %): each reading's packet was sent within the
        // settle, and the first one sent past it reads the link calm. Layer 0 stays.
        let mut a = cut();
        let mut changes = Vec::new();
        let readings = [
            (10_250, 320, 0.30),
            (10_500, 315, 0.50),
            (10_750, 312, 0.50),
            (11_000, 309, 0.17),
            (11_250, 300, 0.17),
            (11_500, 250, 0.046),
            (11_750, 187, 0.0),
        ];
        let calm = (12_000..15_000)
            .step_by(250)
            .map(|t| (t, 8 + (t / 250) % 2, 0.0));
        for (t, rtt, lost) in readings.into_iter().chain(calm) {
            a.on_loss(at(t), lost);
            a.on_rtt_sent(at(t), ms(rtt), at(t - rtt - 50));
            for step in [t, t + 100, t + 200] {
                a.on_raw_estimate(at(step), a.reset_bps().unwrap_or(100_000));
                let d = a.update(at(step), 700_000, &layers(), AUDIO);
                if d.changed {
                    changes.push((step, d.target));
                }
            }
        }
        assert_eq!(
            changes,
            vec![],
            "paused on the drain of the layer the cut left"
        );
        assert_eq!(a.estimator_resets(), 1);
    }

    #[test]
    fn right_after_a_cut_a_pause_at_once_goes_by_the_smoothed_estimate() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut a = on_top_for_10_s(t0);
        assert!(a.update(at(10_000), 700_000, &layers(), AUDIO).cut);
        // The estimator has just seen the old layer's losses: its raw figure dips to 100
        // kbit/s while the smoothed one reads 700. Layer 0 is kept until settled...
        let mut changes = Vec::new();
        for t in (10_100..11_200).step_by(100) {
            a.on_raw_estimate(at(t), 100_000);
            changes.extend(run(&mut a, t0, t, &[(t + 100, 700_000)]));
        }
        assert_eq!(changes, vec![]);
        // ... then a raw figure that stays there pauses it (LOSS_SETTLE: 1.2 s, no round
        // trip read here).
        for t in (11_200..11_700).step_by(100) {
            a.on_raw_estimate(at(t), 100_000);
            changes.extend(run(&mut a, t0, t, &[(t + 100, 700_000)]));
        }
        assert_eq!(changes, vec![(11_200, Target::Paused)]);
        // A smoothed estimate that falls under the need pauses at once, settled or not.
        let mut b = on_top_for_10_s(t0);
        assert!(b.update(at(10_000), 700_000, &layers(), AUDIO).cut);
        let c = run(&mut b, t0, 10_100, &[(11_000, 60_000)]);
        assert_eq!(c, vec![(10_400, Target::Paused)]);
    }

    #[test]
    fn a_growing_queue_sends_the_viewer_to_the_lowest_layer_and_then_to_audio_only() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let ms = Duration::from_millis;
        // `a` driven with the estimate `est` and round trips of 5 ms every `every` ms for
        // the 750 ms before `from`, then `rtts` (ms) from `from`, `every` ms apart: the
        // decisions that changed.
        let queued_every = |every: u64, mut a: Allocator, from: u64, est: u64, rtts: &[u64]| {
            for t in (from - 750..from).step_by(every as usize) {
                a.on_rtt(at(t), ms(5 + (t / every) % 2));
                a.update(at(t), est, &layers(), AUDIO);
            }
            let mut changes = Vec::new();
            for (i, &r) in rtts.iter().enumerate() {
                let t = from + every * i as u64;
                a.on_rtt(at(t), ms(r));
                let d = a.update(at(t), est, &layers(), AUDIO);
                if d.changed {
                    changes.push((t, d.target, d.cut));
                }
            }
            changes
        };
        let queued = |a, from, est, rtts: &[u64]| queued_every(250, a, from, est, rtts);
        let on_top = || {
            let mut a = Allocator::new(t0, 5_000_000, &layers(), AUDIO).with_sustained_probes();
            run(&mut a, t0, 0, &[(7_000, 5_000_000)]);
            assert_eq!(a.target(), Target::Layer(Layer(2)));
            a
        };
        // 260 then 540 ms (the step to 100 kbit/s): the lowest layer, the old one cut.
        assert_eq!(
            queued(on_top(), 10_000, 5_000_000, &[260, 540]),
            vec![(10_250, Target::Layer(Layer(0)), true)]
        );
        // A queue that drains, or holds, or grows from under the overrun: nothing.
        assert_eq!(
            queued(on_top(), 10_000, 5_000_000, &[360, 320, 200, 290]),
            vec![]
        );
        assert_eq!(
            queued(on_top(), 10_000, 5_000_000, &[300, 320, 330]),
            vec![]
        );
        assert_eq!(queued(on_top(), 10_000, 5_000_000, &[60, 110, 150]), vec![]);
        assert_eq!(
            queued(on_top(), 10_000, 5_000_000, &[80, 100, 245, 240]),
            vec![]
        );
        // From calm (under QUEUE_CONGESTED), two rises to QUEUE_OVERRUN are enough: a link
        // that stepped down under a viewer that sat on its layer (the readings of a step from
        // 400 to 100 kbit/s; round trips here, over a 5 ms floor). Rising but still under it,
        // or one jump alone (a receiver's stall): nothing.
        assert_eq!(
            queued(on_top(), 10_000, 5_000_000, &[100, 245, 240]),
            vec![(10_250, Target::Layer(Layer(0)), true)]
        );
        assert_eq!(
            queued(on_a_400_kbit_link(t0), 11_000, 400_000, &[39, 128]),
            vec![(11_250, Target::Paused, false)]
        );
        assert_eq!(
            queued(on_a_400_kbit_link(t0), 11_000, 400_000, &[40, 110, 118]),
            vec![]
        );
        assert_eq!(
            queued(on_a_400_kbit_link(t0), 11_000, 400_000, &[200, 5, 5]),
            vec![]
        );
        assert_eq!(
            queued(on_a_400_kbit_link(t0), 11_000, 400_000, &[20, 200]),
            vec![]
        );
        // On the lowest layer: audio only.
        assert_eq!(
            queued(on_a_400_kbit_link(t0), 11_000, 400_000, &[300, 420]),
            vec![(11_250, Target::Paused, false)]
        );
        // During warm-up: nothing.
        let fresh = Allocator::new(t0, 5_000_000, &layers(), AUDIO).with_sustained_probes();
        assert_eq!(queued(fresh, 3_000, 5_000_000, &[300, 600]), vec![]);
        // Readings 100 ms apart: the queue growing 60 ms a reading is caught at its first
        // reading over [`QUEUE_GROWN`]; a keyframe's jump that then holds, or a queue growing
        // slower than a fifth of the time, is not; a repeated reading (no new feedback)
        // neither breaks nor extends a run.
        assert_eq!(
            queued_every(
                100,
                on_a_400_kbit_link(t0),
                11_000,
                400_000,
                &[60, 120, 180, 240, 300]
            ),
            vec![(11_400, Target::Paused, false)]
        );
        assert_eq!(
            queued_every(100, on_top(), 10_000, 5_000_000, &[280, 290, 280, 300, 310]),
            vec![]
        );
        assert_eq!(
            queued_every(
                100,
                on_top(),
                10_000,
                5_000_000,
                &[200, 215, 230, 245, 260, 275]
            ),
            vec![]
        );
        assert_eq!(
            queued_every(100, on_top(), 10_000, 5_000_000, &[150, 150, 150, 280]),
            vec![(10_300, Target::Layer(Layer(0)), true)]
        );
    }

    #[test]
    fn a_switch_down_cuts_the_old_layer_only_when_the_link_cannot_carry_it() {
        let t0 = Instant::now();
        // The first decision after `est` has held long enough to switch down.
        let down = |est: u64| {
            let mut a = Allocator::new(t0, 5_000_000, &layers(), AUDIO);
            run(&mut a, t0, 0, &[(10_000, 5_000_000)]);
            (10_000..12_000)
                .step_by(100)
                .map(|ms| a.update(t0 + Duration::from_millis(ms), est, &layers(), AUDIO))
                .find(|d| d.changed)
                .expect("no switch down")
        };
        // Under the top layer's need (1.5 Mbit/s with headroom and audio), over its bitrate:
        // its pictures still cross until layer 1's keyframe.
        let d = down(1_550_000);
        assert_eq!((d.target, d.cut), (Target::Layer(Layer(1)), false));
        // Under its bitrate: the link cannot carry it at all.
        let d = down(1_400_000);
        assert_eq!((d.target, d.cut), (Target::Layer(Layer(1)), true));
        // A switch up is never a cut.
        let mut a = Allocator::new(t0, 5_000_000, &layers(), AUDIO);
        run(&mut a, t0, 0, &[(10_000, 5_000_000), (14_000, 700_000)]);
        assert_eq!(a.target(), Target::Layer(Layer(1)));
        let up = (14_000..40_000)
            .step_by(100)
            .map(|ms| a.update(t0 + Duration::from_millis(ms), 5_000_000, &layers(), AUDIO))
            .find(|d| d.changed)
            .expect("no switch up");
        assert_eq!((up.target, up.cut), (Target::Layer(Layer(2)), false));
    }

    #[test]
    fn a_switch_down_goes_by_the_raw_estimate_when_lower_and_so_does_a_pause_at_once() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        // Drives `a` from `from_ms` with the smoothed estimate `est` and a fresh raw figure
        // `raw` every 250 ms; the first change.
        let drive = |a: &mut Allocator, from_ms: u64, est: u64, raw: u64| {
            (from_ms..from_ms + 3000).step_by(50).find_map(|ms| {
                if ms % 250 == 0 {
                    a.on_raw_estimate(at(ms), raw);
                }
                let d = a.update(at(ms), est, &layers(), AUDIO);
                d.changed.then_some((ms - from_ms, d))
            })
        };
        let on_top = || {
            let mut a = Allocator::new(t0, 5_000_000, &layers(), AUDIO);
            run(&mut a, t0, 0, &[(10_000, 5_000_000)]);
            assert_eq!(a.target(), Target::Layer(Layer(2)));
            a
        };
        // The smoothed estimate still reads the old link; the estimator's own figure has
        // fallen to 1.3 Mbit/s (over DOWN_AT_ONCE_SHARE of the need): down after the usual
        // hold, to layer 1.
        let mut a = on_top();
        let (after, d) = drive(&mut a, 10_000, 5_000_000, 1_300_000).expect("no switch");
        assert_eq!(d.target, Target::Layer(Layer(1)));
        assert!(
            after <= DOWN_AFTER.as_millis() as u64 + 100,
            "switched {after} ms after the raw figure fell"
        );
        // Smoothed 1.2 Mbit/s would pick layer 1; the raw 0.3 Mbit/s fits only layer 0.
        let mut a = on_top();
        let (_, d) = drive(&mut a, 10_000, 1_200_000, 300_000).expect("no switch");
        assert_eq!(d.target, Target::Layer(Layer(0)));
        // On layer 0 (need 229 kbit/s), a raw figure under the need but over
        // PAUSE_AT_ONCE_SHARE of it does not pause: the smoothed one (0.3 Mbit/s, over the
        // need) decides...
        let mut a = on_top();
        run(&mut a, t0, 10_000, &[(12_000, 300_000)]);
        assert_eq!(a.target(), Target::Layer(Layer(0)));
        assert!(
            drive(&mut a, 12_000, 300_000, 160_000).is_none(),
            "paused on a raw figure over PAUSE_AT_ONCE_SHARE"
        );
        // ... one under that share pauses after DOWN_AFTER: the
        // smoothed figure lags a link that fell (measured in tests/adaptation.rs: on a
        // step to 100 kbit/s, 0.23 Mbit/s for 2 s while the raw one read 0.1).
        let (after, d) = drive(&mut a, 15_000, 300_000, 100_000).expect("no pause");
        assert_eq!(d.target, Target::Paused);
        assert!(after <= DOWN_AFTER.as_millis() as u64 + 250, "{after} ms");
        // A stale raw figure is not used.
        let mut a = on_top();
        a.on_raw_estimate(at(8_000), 300_000);
        assert!(
            (10_000..13_000)
                .step_by(100)
                .all(|ms| !a.update(at(ms), 5_000_000, &layers(), AUDIO).changed),
            "switched on a raw figure older than RAW_FRESH"
        );
    }

    #[test]
    fn the_fixed_threshold_selector_has_no_hysteresis() {
        assert_eq!(
            fixed_threshold(700_000, &layers(), AUDIO),
            Target::Layer(Layer(1))
        );
        assert_eq!(fixed_threshold(100_000, &layers(), AUDIO), Target::Paused);
    }
}
