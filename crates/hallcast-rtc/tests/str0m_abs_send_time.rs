//! The abs-send-time header extension the relay writes on forwarded packets: 24 bits of 6.18
//! fixed-point seconds of the send time's unix time, wrapping every 64 s. str0m computes it in
//! integers from a cached epoch offset (`vendor/str0m/PATCHES.md`, the fourteenth change;
//! upstream went through `SystemTime` and an `i128` division for every packet). Checked here
//! against an independent computation from the virtual clock: each packet's value, less the
//! value of its send time, is one constant within a rounding step, and that constant is the
//! small gap between the two clocks' readings of "now" (milliseconds), not seconds.
//! Virtual time, the in-memory network (`hallcast_rtc::sim`).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use hallcast_rtc::sim::{Datagram, Net, PublisherOpts, rtp_extensions, rtp_info};

const CONF: &str = "hall";

/// abs-send-time's id: the sim's str0m peers offer str0m's standard map (abs-send-time = 2)
/// and the relay answers with the offer's ids.
const AST_ID: u8 = 2;

/// One unit of 6.18 fixed point: 2^-18 s.
const UNITS_PER_SEC: u64 = 1 << 18;
/// The field wraps at 64 s.
const WRAP: i64 = 1 << 24;

/// The value of header extension `id`, if the packet carries it.
fn extension(b: &[u8], id: u8) -> Option<&[u8]> {
    rtp_extensions(b)
        .into_iter()
        .find_map(|(i, v)| (i == id).then_some(v))
}

/// 6.18 of a unix time, by the definition: whole units of 2^-18 s, modulo 64 s (nanosecond
/// arithmetic in `u128`, unlike the relay's).
fn six_eighteen(unix: Duration) -> i64 {
    ((unix.as_nanos() * u128::from(UNITS_PER_SEC) / 1_000_000_000) % (WRAP as u128)) as i64
}

/// The signed distance from `b` to `a` on the 24-bit circle.
fn circular(a: i64, b: i64) -> i64 {
    let d = (a - b).rem_euclid(WRAP);
    if d >= WRAP / 2 { d - WRAP } else { d }
}

#[test]
fn the_reference_computation_wraps_at_64_seconds() {
    assert_eq!(
        six_eighteen(Duration::from_millis(64_500)),
        (UNITS_PER_SEC / 2) as i64
    );
    assert_eq!(circular(1, WRAP - 1), 2);
    assert_eq!(circular(WRAP - 1, 1), -2);
}

#[test]
fn forwarded_packets_carry_their_send_time_in_abs_send_time() {
    let mut net = Net::new();
    // The virtual clock starts at the real one: a virtual instant's unix time is the unix
    // time read now plus its distance from now (to within the µs between the two reads).
    let (anchor, anchor_unix) = (net.now(), SystemTime::now());
    let anchor_unix = anchor_unix
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after the epoch");
    let relay = net.add_relay(|_| {});
    net.live_publisher(relay, CONF, PublisherOpts::default());
    let v = net.subscribe(relay, CONF).expect("subscribe");
    let relay_addr = net.relay_addr(relay);
    let seen: Rc<RefCell<Vec<(Instant, i64)>>> = Rc::default();
    let log = seen.clone();
    net.set_loss(
        relay_addr,
        net.peer(v).core().addr,
        Box::new(move |d: &Datagram| {
            if rtp_info(&d.contents).is_some()
                && let Some(&[a, b, c]) = extension(&d.contents, AST_ID)
            {
                log.borrow_mut()
                    .push((d.sent, i64::from(u32::from_be_bytes([0, a, b, c]))));
            }
            false
        }),
    );
    net.run_for(Duration::from_secs(6));
    assert!(
        !net.viewer(v).complete_keyframes().is_empty(),
        "the viewer did not play"
    );

    let seen = seen.borrow();
    assert!(
        seen.len() > 500,
        "only {} packets with abs-send-time",
        seen.len()
    );
    let offsets: Vec<i64> = seen
        .iter()
        .map(|(sent, ast)| {
            let expected = six_eighteen(anchor_unix + sent.duration_since(anchor));
            circular(*ast, expected)
        })
        .collect();
    let (lo, hi) = (
        *offsets.iter().min().expect("some"),
        *offsets.iter().max().expect("some"),
    );
    // One constant: the two clocks' gap g (str0m's and this test's reads of the system
    // clock), in units of 2^-18 s (3.8 µs), not a whole number of them. The relay floors the
    // send time's whole microseconds to units, the reference floors nanoseconds, so the
    // difference before flooring lies in (g - 0.262, g] units (a microsecond is 0.262 units)
    // and the floors' difference takes up to three neighbouring values: two when g's
    // fraction is at least 0.262, three (-2..=0, measured in ~1 run in 4) when it is less.
    // A drift moves the offsets by whole units per second over the seconds seen.
    assert!(
        hi - lo <= 2,
        "abs-send-time drifts from the send times: offsets {lo}..={hi} units of 2^-18 s"
    );
    // And the constant is the clocks' gap, not a lost epoch or second count.
    let gap_ms = lo.abs() as f64 * 1000.0 / UNITS_PER_SEC as f64;
    assert!(
        gap_ms < 50.0,
        "abs-send-time is {gap_ms:.1} ms away from the send times' unix time"
    );
    // The packets span seconds: a wrong seconds field would have shown above.
    let span = seen.last().expect("some").0 - seen[0].0;
    assert!(span > Duration::from_secs(4), "packets over {span:?} only");
}
