//! A send stream stops writing the MID (and RID) header extension once the receiver's
//! report for its SSRC shows it has bound the SSRC (str0m's `remote_acked_ssrc`, as
//! libwebrtc does), also on a stream with an RTX SSRC: every video stream the relay sends.
//! Upstream str0m 0.25 acked the main SSRC only on streams without RTX, so forwarded video
//! carried its MID on every packet for the whole session (`vendor/str0m/PATCHES.md`, the
//! twelfth change). Virtual time, the in-memory network (`hallcast_rtc::sim`).

use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;
use std::time::{Duration, Instant};

use hallcast_rtc::sim::{Datagram, Net, PeerId, PublisherOpts, rtp_extensions, rtp_info};

const CONF: &str = "hall";

/// The MID extension's id: the sim's str0m peers offer str0m's standard map (`urn:ietf:params:
/// rtp-hdrext:sdes:mid` = 4) and the relay answers with the offer's ids.
const MID_ID: u8 = 4;

/// One media packet from the relay to a viewer: when, its payload type, whether it carried
/// the MID.
type Seen = Rc<RefCell<Vec<(Instant, u8, bool)>>>;

fn watch(net: &mut Net, relay_addr: std::net::SocketAddr, v: PeerId) -> Seen {
    let seen: Seen = Rc::default();
    let log = seen.clone();
    net.set_loss(
        relay_addr,
        net.peer(v).core().addr,
        Box::new(move |d: &Datagram| {
            if let Some(h) = rtp_info(&d.contents) {
                let mid = rtp_extensions(&d.contents)
                    .iter()
                    .any(|(id, _)| *id == MID_ID);
                log.borrow_mut().push((d.sent, h.pt, mid));
            }
            false
        }),
    );
    seen
}

#[test]
fn forwarded_video_and_audio_drop_the_mid_once_the_viewer_reports_their_ssrcs() {
    let mut net = Net::new();
    let relay = net.add_relay(|_| {});
    net.live_publisher(relay, CONF, PublisherOpts::default());
    let v = net.subscribe(relay, CONF).expect("subscribe");
    let relay_addr = net.relay_addr(relay);
    let seen = watch(&mut net, relay_addr, v);
    let start = net.now();
    net.run_for(Duration::from_secs(8));

    let viewer = net.viewer(v);
    let video_pts = viewer.video_pts.clone();
    let rtx_pts = viewer.rtx_pts.clone();
    assert!(
        !viewer.complete_keyframes().is_empty() && !viewer.audio.is_empty(),
        "the viewer did not play"
    );
    let seen = seen.borrow();
    let is_video = |pt: &u8| video_pts.contains(pt);
    let is_audio = |pt: &u8| !video_pts.contains(pt) && !rtx_pts.contains(pt);
    // The first packets name their MID (the receiver binds the SSRC from them): the
    // parser and the id are right, or the check below would pass vacuously.
    for (what, kind) in [
        ("video", &is_video as &dyn Fn(&u8) -> bool),
        ("audio", &is_audio),
    ] {
        let first: Vec<bool> = seen
            .iter()
            .filter(|(_, pt, _)| kind(pt))
            .take(5)
            .map(|(_, _, mid)| *mid)
            .collect();
        assert!(
            first.len() == 5 && first.iter().all(|m| *m),
            "{what}: the first packets did not carry the MID: {first:?}"
        );
        // The viewer's receiver reports come every second or so: the last 3 s carry none.
        let late: Vec<_> = seen
            .iter()
            .filter(|(t, pt, _)| kind(pt) && *t >= start + Duration::from_secs(5))
            .collect();
        let with_mid = late.iter().filter(|(_, _, mid)| *mid).count();
        assert!(late.len() > 50, "{what}: only {} late packets", late.len());
        assert_eq!(
            with_mid,
            0,
            "{what}: {with_mid} of {} packets in the last 3 s still carried the MID",
            late.len()
        );
    }
    let pts: HashSet<u8> = seen.iter().map(|(_, pt, _)| *pt).collect();
    assert!(pts.iter().any(is_video) && pts.iter().any(is_audio));
}
