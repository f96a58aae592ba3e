//! ffmpeg as a hall encoder for the ingest tests (RTMP in `tests/ingest.rs`, SRT in
//! `tests/ingest_srt.rs`): started with its output in the test's scratch directory (shown when
//! the test fails), and the wait for an encoder the relay refused to give up.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::Ctx;
use crate::proc::Proc;

/// Starts `ffmpeg -hide_banner -nostdin -loglevel warning -re ARGS…` (inputs, codecs, output);
/// its stdout and stderr go to `<tag>.log` in the scratch directory, returned with the process.
pub fn spawn(ctx: &Ctx, tag: &str, args: &[&str]) -> Result<(Proc, PathBuf)> {
    let log = ctx.path(&format!("{tag}.log"));
    let out = File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-loglevel", "warning", "-re"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    ctx.register_log(&format!("ffmpeg {tag}"), &log);
    let proc = Proc::spawn(&mut cmd, false).context(
        "cannot start ffmpeg (with libx264, libx265 and libsrt): run scripts/install-test-deps.sh \
         or apt-get install -y --no-install-recommends ffmpeg",
    )?;
    Ok((proc, log))
}

/// Waits up to `within` for an encoder the relay refused or dropped to give up, and fails
/// unless it exited with an error (a success means its stream was taken).
pub fn expect_refused(ff: &mut Proc, log: &Path, within: Duration, what: &str) -> Result<()> {
    match ff.wait_timeout(within)? {
        Some(status) if !status.success() => Ok(()),
        Some(status) => {
            bail!("{what}: ffmpeg exited with {status}, as if its stream had been taken")
        }
        None => bail!(
            "{what}: ffmpeg still sending after {within:?}; the relay did not refuse it. Its output:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        ),
    }
}
