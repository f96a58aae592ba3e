//! `hallcast demo` as a child process on ephemeral ports.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::ctx::{Ctx, tail};
use crate::prereq::hallcast_bin;
use crate::proc::Proc;

/// How long the relay may take to write its info file (a debug build on a busy 2-core machine).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Flags for `hallcast demo`.
#[derive(Clone, Debug, Default)]
pub struct DemoOptions {
    /// `--no-source`: the conference waits for an external publisher.
    pub no_source: bool,
    /// `--simulcast`: the built-in source sends three layers by RID (`q` 320x180, `h` 640x360,
    /// `f` 1280x720; issue 11).
    pub simulcast: bool,
    /// `--keyframe-interval SECS` for the built-in source.
    pub keyframe_interval_s: Option<u32>,
    /// `--media IP:PORT`; `None` lets the relay pick (`IP:0`).
    pub media_port: Option<u16>,
    /// The address for `--http` and `--media`; `None` is 127.0.0.1.
    pub ip: Option<String>,
    /// `--http IP:PORT`; `None` lets the relay pick (`IP:0`). A restarted relay reuses its
    /// predecessor's ports this way.
    pub http_port: Option<u16>,
    /// `--data-dir`; `None` is a fresh directory in the test's scratch space. A restarted relay
    /// reuses its predecessor's ledger (and join-token secret) this way.
    pub data_dir: Option<PathBuf>,
    /// Run the relay inside this network namespace (`ip netns exec NETNS hallcast demo ...`).
    pub netns: Option<String>,
    /// `--media` exactly as given (e.g. `0.0.0.0:0`); overrides `ip`/`media_port` for media.
    pub media_addr: Option<String>,
    /// `--public-ip` flags (the addresses announced as ICE candidates).
    pub public_ips: Vec<String>,
    /// `--public-url` (the base of the URLs in the info file).
    pub public_url: Option<String>,
    /// `--set KEY=VALUE` configuration overrides (e.g. `media.threads=2`).
    pub set: Vec<String>,
    /// `--source-bitrate KBPS` for the built-in source.
    pub source_bitrate_kbps: Option<u32>,
    /// `--source-size WxH` for the built-in source.
    pub source_size: Option<(u32, u32)>,
    /// `--source-audio tone|silence|none` for the built-in source.
    pub source_audio: Option<&'static str>,
    /// `--source-skip-frames`: the built-in source's encoder drops frames to hold its bitrate.
    pub source_skip_frames: bool,
    /// Names this relay's files in the test's scratch directory (`demo-<tag>-info.json`,
    /// `demo-<tag>.log`, ...), so one test can run several relays at once.
    pub tag: Option<String>,
}

/// The info file the relay writes as soon as it accepts requests.
#[derive(Clone, Debug)]
pub struct Info {
    pub conference: String,
    pub whip_url: String,
    pub stream_key: String,
    pub whep_url: String,
    pub viewer_token: String,
    pub viewer_url: String,
    /// `http://127.0.0.1:PORT` (from `http_base`, or derived from `whep_url`).
    pub http_base: String,
    pub raw: Value,
}

impl Info {
    fn parse(raw: Value) -> Result<Info> {
        let field = |key: &str| -> Result<String> {
            match raw.get(key) {
                Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
                Some(other) => bail!("key `{key}` is not a non-empty string: {other}"),
                None => bail!("key `{key}` is missing"),
            }
        };
        let absolute = |key: &str| -> Result<String> {
            let url = field(key)?;
            if !url.starts_with("http://") && !url.starts_with("https://") {
                bail!("key `{key}` is not an absolute http URL: {url}");
            }
            Ok(url)
        };
        let whep_url = absolute("whep_url")?;
        let http_base = match raw.get("http_base").and_then(Value::as_str) {
            Some(base) => base.trim_end_matches('/').to_string(),
            None => origin_of(&whep_url),
        };
        Ok(Info {
            conference: field("conference")?,
            whip_url: absolute("whip_url")?,
            stream_key: field("stream_key")?,
            whep_url,
            viewer_token: field("viewer_token")?,
            viewer_url: absolute("viewer_url")?,
            http_base,
            raw,
        })
    }

    /// A non-empty string key of the info file beyond the common ones (`admin_token`,
    /// `relay_credential`, ...).
    pub fn key(&self, key: &str) -> Result<String> {
        self.raw[key]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .with_context(|| format!("the demo's info file has no {key}: {}", self.raw))
    }

    /// `http_base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.http_base)
    }
}

/// `scheme://host:port` of an absolute URL.
pub(crate) fn origin_of(url: &str) -> String {
    let after_scheme = url.find("://").map(|i| i + 3).unwrap_or(0);
    match url[after_scheme..].find('/') {
        Some(i) => url[..after_scheme + i].to_string(),
        None => url.to_string(),
    }
}

/// A running `hallcast demo`; stopped (by its pid: SIGTERM, then SIGKILL) when dropped.
pub struct Demo {
    proc: Proc,
    pub info: Info,
    /// When the info file appeared: the relay was accepting requests from then on.
    pub ready_at: Instant,
    /// The media port, when the test chose it.
    pub media_port: Option<u16>,
    data_dir: PathBuf,
    log: PathBuf,
}

impl Demo {
    /// `hallcast demo --no-source`: the tests publish their own feed.
    pub fn without_source(ctx: &Ctx) -> Result<Demo> {
        Demo::start(
            ctx,
            DemoOptions {
                no_source: true,
                ..Default::default()
            },
        )
    }

    pub fn start(ctx: &Ctx, opts: DemoOptions) -> Result<Demo> {
        let bin = hallcast_bin()?;
        let stem = match &opts.tag {
            Some(tag) => format!("demo-{tag}"),
            None => "demo".to_string(),
        };
        let info_path = ctx.path(&format!("{stem}-info.json"));
        let data_dir = opts
            .data_dir
            .clone()
            .unwrap_or_else(|| ctx.path(&format!("{stem}-data")));
        let log = ctx.path(&format!("{stem}.log"));
        let ip = opts.ip.clone().unwrap_or_else(|| "127.0.0.1".to_string());
        let media = opts
            .media_addr
            .clone()
            .unwrap_or_else(|| format!("{ip}:{}", opts.media_port.unwrap_or(0)));
        let mut cmd = match &opts.netns {
            // `ip netns exec` execs the relay: the pid stopped on drop is the relay's.
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&bin);
                c
            }
            None => Command::new(&bin),
        };
        cmd.arg("demo")
            .args(["--http", &format!("{ip}:{}", opts.http_port.unwrap_or(0))])
            .args(["--media", &media])
            .arg("--info-file")
            .arg(&info_path)
            .arg("--data-dir")
            .arg(&data_dir);
        if opts.no_source {
            cmd.arg("--no-source");
        }
        if opts.simulcast {
            cmd.arg("--simulcast");
        }
        if let Some(secs) = opts.keyframe_interval_s {
            cmd.args(["--keyframe-interval", &secs.to_string()]);
        }
        if let Some(kbps) = opts.source_bitrate_kbps {
            cmd.args(["--source-bitrate", &kbps.to_string()]);
        }
        if let Some((w, h)) = opts.source_size {
            cmd.args(["--source-size", &format!("{w}x{h}")]);
        }
        if opts.source_skip_frames {
            cmd.arg("--source-skip-frames");
        }
        if let Some(audio) = opts.source_audio {
            cmd.args(["--source-audio", audio]);
        }
        for public_ip in &opts.public_ips {
            cmd.args(["--public-ip", public_ip]);
        }
        for kv in &opts.set {
            cmd.args(["--set", kv]);
        }
        if let Some(url) = &opts.public_url {
            cmd.args(["--public-url", url]);
        }
        let out = File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let err = out.try_clone()?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        ctx.register_log(&format!("hallcast {stem}"), &log);
        let args = format!("{cmd:?}");
        let started = Instant::now();
        let mut proc = Proc::spawn(&mut cmd, false)?;
        let mut last_problem = String::from("the info file was never written");
        loop {
            if let Some(status) = proc.try_wait()? {
                bail!(
                    "`{args}` exited with {status} before writing its info file; its output:\n{}",
                    tail(&log, 40).join("\n")
                );
            }
            if let Ok(text) = fs::read_to_string(&info_path) {
                match serde_json::from_str::<Value>(&text) {
                    Ok(raw) => match Info::parse(raw) {
                        Ok(info) => {
                            return Ok(Demo {
                                proc,
                                info,
                                ready_at: Instant::now(),
                                media_port: opts.media_port,
                                data_dir,
                                log,
                            });
                        }
                        Err(e) => {
                            last_problem = format!(
                                "info file {} is not as agreed: {e:#}\n{text}",
                                info_path.display()
                            )
                        }
                    },
                    // Possibly half-written: try again.
                    Err(e) => {
                        last_problem = format!(
                            "info file {} is not JSON ({e}): {text}",
                            info_path.display()
                        )
                    }
                }
            }
            if started.elapsed() > START_TIMEOUT {
                bail!("`{args}` did not become ready within {START_TIMEOUT:?}: {last_problem}");
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Fails if the relay process has exited.
    pub fn ensure_running(&mut self) -> Result<()> {
        if let Some(status) = self.proc.try_wait()? {
            bail!(
                "hallcast demo exited during the test with {status}; its output:\n{}",
                tail(&self.log, 40).join("\n")
            );
        }
        Ok(())
    }

    pub fn pid(&self) -> u32 {
        self.proc.id()
    }

    /// The relay's log file (its stdout and stderr).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The relay's `--data-dir` (its ledger and join-token secret).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Stops the relay the orderly way (SIGTERM; SIGKILL only after `grace`) and returns how it
    /// exited.
    pub fn stop(&mut self, grace: Duration) -> Result<ExitStatus> {
        self.proc
            .terminate(grace)
            .context("hallcast demo could not be waited for after SIGTERM")
    }

    /// Kills the relay with SIGKILL: a crash, nothing is closed in an orderly way.
    pub fn kill(&mut self) -> Result<ExitStatus> {
        self.proc
            .kill()
            .context("hallcast demo could not be waited for after SIGKILL")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_of_urls() {
        assert_eq!(
            origin_of("http://127.0.0.1:8080/whep/demo"),
            "http://127.0.0.1:8080"
        );
        assert_eq!(origin_of("http://127.0.0.1:8080"), "http://127.0.0.1:8080");
    }

    #[test]
    fn info_requires_the_agreed_keys() {
        let ok = serde_json::json!({
            "conference": "demo",
            "whip_url": "http://127.0.0.1:1/whip/demo",
            "stream_key": "k",
            "whep_url": "http://127.0.0.1:1/whep/demo",
            "viewer_token": "t",
            "viewer_url": "http://127.0.0.1:1/watch/demo?token=t",
        });
        let info = Info::parse(ok.clone()).expect("complete info parses");
        assert_eq!(info.http_base, "http://127.0.0.1:1");
        let mut missing = ok.clone();
        missing.as_object_mut().map(|o| o.remove("viewer_token"));
        assert!(Info::parse(missing).is_err());
        let mut relative = ok;
        relative["whep_url"] = "/whep/demo".into();
        assert!(Info::parse(relative).is_err());
    }
}
