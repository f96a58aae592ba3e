//! Media shards: with `media.threads=2` the relay runs two media threads, each on its own UDP
//! port; viewers are spread over both, the hall feed reaches the second shard in-process, and
//! every viewer plays.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use hallcast_tests::http::Http;
use hallcast_tests::results::{self, ensure_pages_playing};
use hallcast_tests::{Ctx, Demo, DemoOptions, Weight, run};

use crate::util::viewer_pages;

const MIN_FRAMES: u64 = 60;
const N_PAGES: u32 = 4;

/// Sessions per shard from `hallcast_shard_sessions{shard="i",...} N` lines.
fn shard_sessions(metrics: &str) -> Vec<(usize, u64)> {
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix("hallcast_shard_sessions{shard=\""))
        .filter_map(|rest| {
            let (shard, rest) = rest.split_once('"')?;
            let n = rest.rsplit_once(' ')?.1.trim().parse().ok()?;
            Some((shard.parse().ok()?, n))
        })
        .collect()
}

#[test]
fn viewers_spread_over_two_media_shards_all_play() {
    run(
        "viewers_spread_over_two_media_shards_all_play",
        Weight::Heavy,
        |ctx: &Ctx| {
            let mut demo = Demo::start(
                ctx,
                DemoOptions {
                    set: vec!["media.threads=2".into()],
                    ..Default::default()
                },
            )?;
            let ports: Vec<u16> = demo.info.raw["media_udp_shards"]
                .as_array()
                .context("the info file has no media_udp_shards list")?
                .iter()
                .filter_map(|a| a.as_str()?.rsplit_once(':')?.1.parse().ok())
                .collect();
            ensure!(
                ports.len() == 2 && ports[1] == ports[0] + 1,
                "two shards on consecutive ports expected, the info file says {ports:?}"
            );
            let http = Http::new(&demo.info.http_base)?;
            let mut pages = viewer_pages(
                ctx,
                &demo.info.viewer_url,
                N_PAGES,
                60,
                MIN_FRAMES as u32,
                &[],
            )?;
            // While the pages play: every shard carries sessions (the built-in source on one,
            // the viewers spread over both).
            let start = Instant::now();
            let mut most = [0u64; 2];
            while start.elapsed() < Duration::from_secs(40) && most.iter().any(|n| *n < 2) {
                let text = http.get("/metrics", None)?.body;
                for (shard, n) in shard_sessions(&text) {
                    if shard < 2 {
                        most[shard] = most[shard].max(n);
                    }
                }
                std::thread::sleep(Duration::from_millis(300));
            }
            ensure!(
                most.iter().all(|n| *n >= 2),
                "sessions were not spread over both shards (most seen per shard: {most:?})"
            );
            let result = pages.result(Duration::from_secs(100))?;
            demo.ensure_running()?;
            let pages = results::pages(&result)?;
            ensure!(
                pages.len() == N_PAGES as usize,
                "expected {N_PAGES} viewer pages, got {}",
                pages.len()
            );
            ensure_pages_playing(&pages, MIN_FRAMES)?;
            Ok(())
        },
    );
}

#[cfg(test)]
mod unit {
    #[test]
    fn reads_shard_sessions() {
        let t = "# HELP x\nhallcast_shard_sessions{shard=\"0\",udp=\"127.0.0.1:5000\"} 3\nhallcast_shard_sessions{shard=\"1\",udp=\"127.0.0.1:5001\"} 2\n";
        assert_eq!(super::shard_sessions(t), vec![(0, 3), (1, 2)]);
    }
}
