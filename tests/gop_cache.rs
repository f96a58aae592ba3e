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
            Ok(())
        },
    );
}
