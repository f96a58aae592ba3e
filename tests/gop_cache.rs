//! A late joiner starts on the relay's cached GOP, not on the encoder's next keyframe.

use std::thread;
use std::time::Duration;

use anyhow::ensure;
use hallcast_tests::results::{self, ensure_pages_playing};
use hallcast_tests::{Demo, DemoOptions, Weight, run};

use crate::util::viewer_pages;

/// The built-in source's keyframe interval for this test.
const KEYFRAME_INTERVAL_S: u32 = 10;
/// When the viewer joins, counted from the relay being ready (the source starts with it): 2 s
/// after a keyframe, so the next one is about 8 s away.
const JOIN_AFTER: Duration = Duration::from_secs(12);
/// Not a speed target: anything well under the keyframe interval proves the GOP cache.
const MAX_FIRST_FRAME_MS: f64 = 4000.0;

#[test]
fn late_joiner_starts_from_the_gop_cache() {
    run(
        "late_joiner_starts_from_the_gop_cache",
        Weight::Heavy,
        |ctx| {
            let mut demo = Demo::start(
                ctx,
                DemoOptions {
                    keyframe_interval_s: Some(KEYFRAME_INTERVAL_S),
                    ..Default::default()
                },
            )?;
            let wait = JOIN_AFTER.saturating_sub(demo.ready_at.elapsed());
            thread::sleep(wait);
            demo.ensure_running()?;
            // Keyframe requests the relay sent its source before anyone watched (the source's
            // start may have needed some); the join must add none.
            let metrics_url = demo.info.url("/metrics");
            let before = reqwest::blocking::get(&metrics_url)?.text()?;
            let upstream_before = metric(&before, "hallcast_keyframe_requests_upstream_total");
            let mut viewer = viewer_pages(ctx, &demo.info.viewer_url, 1, 40, 30, &[])?;
            let pages = results::pages(&viewer.result(Duration::from_secs(80))?)?;
            demo.ensure_running()?;
            ensure_pages_playing(&pages, 30)?;
            let page = &pages[0];
            let first = page.first_frame_ms_from_post;
            ensure!(
                first.is_some_and(|ms| ms < MAX_FIRST_FRAME_MS),
                "the late joiner's first frame was decoded {first:?} ms after its WHEP POST (joined {:.1} s after the \
             relay was ready, source keyframe interval {KEYFRAME_INTERVAL_S} s): expected under {MAX_FIRST_FRAME_MS} ms, \
             i.e. the relay should send the cached GOP from the last keyframe instead of waiting for the next one",
                JOIN_AFTER.as_secs_f64()
            );

            // The demo's source also answers keyframe requests (PLI/FIR), so a quick first frame
            // alone could come from a fresh keyframe: the relay's own count says the joiner was
            // started from the cache, and that no keyframe request went upstream from the join
            // (neither the relay's own on a missing GOP, nor the joiner's PLI/FIR passed on).
            let metrics = reqwest::blocking::get(&metrics_url)?.text()?;
            let replays = metric(&metrics, "hallcast_gop_replays_total");
            let upstream = metric(&metrics, "hallcast_keyframe_requests_upstream_total");
            let downstream = metric(&metrics, "hallcast_keyframe_requests_downstream_total");
            ensure!(
                replays.is_some_and(|n| n >= 1.0),
                "/metrics has hallcast_gop_replays_total = {replays:?} after a late join (keyframe requests \
                 sent upstream: {upstream:?}); expected at least 1 joiner started from the cached GOP"
            );
            ensure!(
                upstream_before.is_some() && upstream == upstream_before,
                "/metrics has hallcast_keyframe_requests_upstream_total = {upstream_before:?} just before \
                 the late join and {upstream:?} after the joiner played (keyframe \
                 requests from viewers: {downstream:?}); expected no keyframe request sent to the source \
                 because of the join: the cached GOP alone should start the joiner"
            );
            // The replay is a burst of equal-size packets to one peer: the relay sends it with
            // UDP GSO (several datagrams per message) on this Linux kernel.
            let gso = metric(&metrics, "hallcast_tx_gso_messages_total");
            ensure!(
                gso.is_some_and(|n| n >= 1.0),
                "/metrics has hallcast_tx_gso_messages_total = {gso:?} after a GOP replay; expected the \
                 replay burst to go out as UDP GSO messages"
            );
            // The replay went through the relay's backlog (parked, then released in slices
            // after live packets): by now all of it has left and none was dropped.
            let parked = metric(&metrics, "hallcast_backlog_packets");
            let dropped = metric(&metrics, "hallcast_backlog_dropped_total");
            ensure!(
                parked == Some(0.0) && dropped == Some(0.0),
                "/metrics has hallcast_backlog_packets = {parked:?} and hallcast_backlog_dropped_total = \
                 {dropped:?} with one viewer playing; expected the joiner's replay fully released (0) \
                 and nothing dropped (0)"
            );
            Ok(())
        },
    );
}

/// The value of an unlabelled metric in Prometheus text.
pub(crate) fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::metric;

    #[test]
    fn reads_unlabelled_metrics() {
        let text = "# HELP hallcast_gop_replays_total x\nhallcast_gop_replays_total 3\nhallcast_gop_replays_total_other 9\n";
        assert_eq!(metric(text, "hallcast_gop_replays_total"), Some(3.0));
        assert_eq!(metric(text, "hallcast_missing"), None);
    }
}
