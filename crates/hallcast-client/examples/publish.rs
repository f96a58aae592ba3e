//! Publishes the test source to a WHIP endpoint until Ctrl-C (then DELETEs the session), or
//! until the session ends.
//!
//! ```text
//! cargo run --release -p hallcast-client --example publish -- http://127.0.0.1:8080/whip/conf-1 KEY \
//!     [--size 1280x720] [--fps 30] [--bitrate 2000000] [--gop-secs 2] [--label "HOI NGHI"]
//! ```

use std::time::Duration;

use hallcast_client::{SourceOptions, WhipError, publish};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: publish WHIP_URL STREAM_KEY [--size WxH] [--fps N] [--bitrate BPS] \
                 [--gop-secs S] [--label TEXT]";
    let url = args.next().ok_or_else(|| anyhow::anyhow!(usage))?;
    let key = args.next().ok_or_else(|| anyhow::anyhow!(usage))?;
    let mut opts = SourceOptions::default();
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
                (opts.width, opts.height) = (w.parse()?, h.parse()?);
            }
            "--fps" => opts.fps = value()?.parse()?,
            "--bitrate" => opts.bitrate_bps = value()?.parse()?,
            "--gop-secs" => opts.keyframe_interval = Duration::from_secs_f64(value()?.parse()?),
            "--label" => opts.label = value()?,
            other => anyhow::bail!("unknown argument {other}\n{usage}"),
        }
    }

    let publisher = match publish(&url, &key, opts).await {
        Ok(p) => p,
        Err(e) => {
            if e.downcast_ref::<WhipError>().and_then(WhipError::status) == Some(409) {
                eprintln!("the conference is already live");
            }
            return Err(e);
        }
    };
    println!("publishing, session {}", publisher.resource());
    let mut report = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = publisher.closed() => {
                println!("session ended: {:?}", publisher.stats());
                break;
            }
            _ = tokio::signal::ctrl_c() => {
                println!("stopping: {:?}", publisher.stats());
                break;
            }
            _ = report.tick() => println!("{:?}", publisher.stats()),
        }
    }
    publisher.stop().await
}
