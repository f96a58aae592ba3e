//! aiortc, an independent WebRTC implementation, on either end.

use std::time::Duration;

use anyhow::{Result, bail, ensure};
use hallcast_tests::results::{self, PlayResult, PublishResult, ensure_pages_playing};
use hallcast_tests::{Demo, DemoOptions, Weight, run};

use crate::util::{aiortc_player, aiortc_publisher, expect_published, is_2xx, viewer_pages};

const MIN_FRAMES: u64 = 60;

fn check_played(played: &PlayResult, what: &str) -> Result<()> {
    let mut problems = Vec::new();
    if played.status != Some(201) {
        bail!(
            "{what}: WHEP POST answered {:?} with body {:?}, expected 201",
            played.status,
            played.body
        );
    }
    if played.frames_decoded < MIN_FRAMES {
        problems.push(format!(
            "decoded {} video frames, expected at least {MIN_FRAMES}",
            played.frames_decoded
        ));
    }
    if played.frame_width == 0 {
        problems.push("decoded frames have no width".to_string());
    }
    problems.extend(played.audio_problems());
    if !is_2xx(&played.delete_status) {
        problems.push(format!(
            "DELETE of its WHEP session answered {:?}, expected 2xx",
            played.delete_status
        ));
    }
    ensure!(
        problems.is_empty(),
        "{what}: {} (result: {played:?})",
        problems.join("; ")
    );
    Ok(())
}

#[test]
fn aiortc_plays_the_demo_source_over_whep() {
    run(
        "aiortc_plays_the_demo_source_over_whep",
        Weight::Heavy,
        |ctx| {
            let mut demo = Demo::start(ctx, DemoOptions::default())?;
            let mut player = aiortc_player(ctx, &demo.info, 60, MIN_FRAMES as u32)?;
            let played: PlayResult =
                results::parse("aiortc player", &player.result(Duration::from_secs(90))?)?;
            demo.ensure_running()?;
            check_played(&played, "aiortc playing the demo source")?;
            ensure!(
                matches!(played.video_codec.as_deref(), Some("H264") | Some("VP8")),
                "the relay answered aiortc with video codec {:?}, expected H264 or VP8",
                played.video_codec
            );
            ensure!(
                played.audio_codec.as_deref() == Some("opus"),
                "audio codec {:?}, expected opus",
                played.audio_codec
            );
            Ok(())
        },
    );
}

/// aiortc publishes VP8 over WHIP; the viewer page in Chromium and an aiortc player both decode it.
#[test]
fn aiortc_publishes_vp8_and_chromium_and_aiortc_play() {
    run(
        "aiortc_publishes_vp8_and_chromium_and_aiortc_play",
        Weight::Heavy,
        |ctx| {
            let mut demo = Demo::without_source(ctx)?;
            let mut publisher = aiortc_publisher(ctx, &demo.info, 120)?;
            expect_published(&mut publisher, "aiortc's WHIP offer (VP8)")?;

            let mut viewer =
                viewer_pages(ctx, &demo.info.viewer_url, 1, 60, MIN_FRAMES as u32, &[])?;
            let mut player = aiortc_player(ctx, &demo.info, 60, MIN_FRAMES as u32)?;
            let pages = results::pages(&viewer.result(Duration::from_secs(100))?)?;
            let played: PlayResult =
                results::parse("aiortc player", &player.result(Duration::from_secs(100))?)?;
            demo.ensure_running()?;

            ensure_pages_playing(&pages, MIN_FRAMES)?;
            ensure!(
                pages[0]
                    .video_codec
                    .as_deref()
                    .is_some_and(|c| c.eq_ignore_ascii_case("video/VP8")),
                "the viewer page decoded {:?}, but aiortc published VP8",
                pages[0].video_codec
            );
            check_played(&played, "aiortc playing aiortc's VP8")?;
            ensure!(
                played.video_codec.as_deref() == Some("VP8"),
                "aiortc player got {:?}, expected VP8",
                played.video_codec
            );

            let published: PublishResult = results::parse("aiortc publisher", &publisher.stop()?)?;
            ensure!(
                is_2xx(&published.delete_status),
                "DELETE of the WHIP session ({:?}) answered {:?}, expected 2xx",
                published.location,
                published.delete_status
            );
            demo.ensure_running()
        },
    );
}
