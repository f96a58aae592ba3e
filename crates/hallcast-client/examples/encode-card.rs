//! Renders and encodes the test card, reporting bitrate and speed; optionally writes the H.264
//! elementary stream (Annex-B) for benchmarks that must not encode live.
//!
//! ```text
//! cargo run --release -p hallcast-client --example encode-card -- \
//!     [--size 1280x720] [--fps 30] [--bitrate 2000000] [--gop-secs 2] [--secs 10] \
//!     [--realtime] [--out card.h264]
//! ```
//! With `--realtime` frames are paced at the frame rate, so `time` gives the CPU share a live
//! publisher spends on video.

use std::io::Write as _;
use std::time::{Duration, Instant};

use hallcast_client::card::TestCard;
use hallcast_client::h264::{EncoderSettings, H264Encoder, NAL_SPS, nal_units};

fn main() -> anyhow::Result<()> {
    let mut size = (1280usize, 720usize);
    let mut fps = 30u32;
    let mut bitrate = 2_000_000u32;
    let mut gop_secs = 2.0f64;
    let mut secs = 10u32;
    let mut realtime = false;
    let mut out: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| anyhow::anyhow!("{a} needs a value"))
        };
        match a.as_str() {
            "--size" => {
                let v = value()?;
                let (w, h) = v
                    .split_once('x')
                    .ok_or_else(|| anyhow::anyhow!("--size WxH"))?;
                size = (w.parse()?, h.parse()?);
            }
            "--fps" => fps = value()?.parse()?,
            "--bitrate" => bitrate = value()?.parse()?,
            "--gop-secs" => gop_secs = value()?.parse()?,
            "--secs" => secs = value()?.parse()?,
            "--realtime" => realtime = true,
            "--out" => out = Some(value()?),
            other => anyhow::bail!("unknown argument {other}"),
        }
    }

    let mut card = TestCard::new(size.0, size.1, fps, "HALLCAST ENCODE BENCH");
    let mut encoder = H264Encoder::new(EncoderSettings {
        fps,
        bitrate_bps: bitrate,
        idr_interval_frames: (gop_secs * f64::from(fps)).round() as u32,
    })?;
    let mut file = out.as_deref().map(std::fs::File::create).transpose()?;

    let n_frames = u64::from(secs) * u64::from(fps);
    let period = Duration::from_secs(1) / fps;
    let start = Instant::now();
    let (mut bytes, mut n_idr, mut n_empty, mut busy) = (0u64, 0u64, 0u64, Duration::ZERO);
    let mut sps = None;
    for i in 0..n_frames {
        if realtime {
            let due = period * u32::try_from(i)?;
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        let t0 = Instant::now();
        let wall = Duration::from_millis(i * 1000 / u64::from(fps));
        let frame = encoder.encode(card.render(i, wall))?;
        busy += t0.elapsed();
        bytes += frame.data.len() as u64;
        n_idr += u64::from(frame.is_idr);
        n_empty += u64::from(frame.data.is_empty());
        if sps.is_none() {
            sps = nal_units(&frame.data)
                .find(|n| n.first().map(|b| b & 0x1f) == Some(NAL_SPS))
                .map(|n| {
                    n.get(1..4)
                        .map(|b| format!("{:02x}{:02x}{:02x}", b[0], b[1], b[2]))
                });
        }
        if let Some(f) = file.as_mut() {
            f.write_all(&frame.data)?;
        }
    }
    let wall = start.elapsed();
    let media_secs = n_frames as f64 / f64::from(fps);
    println!(
        "{}x{} @ {fps} fps, target {} kbit/s: {n_frames} frames ({n_empty} skipped by rate control), \
         {n_idr} IDR, {:.0} kbit/s, \
         render+encode {:.2} ms/frame ({:.0}% of one core at {fps} fps), wall {:.1} s, SPS profile-level-id {}",
        size.0,
        size.1,
        bitrate / 1000,
        bytes as f64 * 8.0 / media_secs / 1000.0,
        busy.as_secs_f64() * 1000.0 / n_frames as f64,
        busy.as_secs_f64() / media_secs * 100.0,
        wall.as_secs_f64(),
        sps.flatten().unwrap_or_else(|| "?".to_owned()),
    );
    Ok(())
}
