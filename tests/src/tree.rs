//! A tree of relays on separate hosts (network namespaces), for the edge-tree tests (issue 10).
//!
//! ```text
//!   root namespace (the test) ──veth── [backbone: bridge br0] ──veth── central   10.77.S.1
//!                                                       ├──veth── edge-mid       10.77.S.2
//!                                                       ├──veth── edge-leaf-a    10.77.S.3 ──veth── point  10.78.S.x
//!                                                       └── ...                              (only to its edge)
//! ```
//! - [`Tree`]: one backbone namespace holding a Linux bridge, one namespace per relay host on it
//!   ([`Tree::relay_host`], `10.77.S.k/24`), one per point host linked by a veth pair **only** to its
//!   relay's namespace ([`Tree::point_under`], `10.78.S.4j+2/30`, default route via the relay; the
//!   relay's namespace does not forward, so a point reaches its edge and nothing else), or a point
//!   on the backbone itself ([`Tree::backbone_host`]: it reaches every relay, as a point that
//!   reaches the central over the internet).
//! - `S` is claimed atomically across processes: the backbone namespace is `hct{S}` and
//!   `ip netns add` fails if it exists, so concurrent tests (threads or processes) never share a
//!   subnet or a name. Other test files use 10.213.x.
//! - Everything is deleted on drop, also when the test fails or panics (`run` unwinds through the
//!   body's locals). **Declare the `Tree` before the relays and clients** so they are stopped first.
//! - The test process reaches the relays over HTTP directly: the root namespace has its own veth
//!   into the bridge (`10.77.S.254`). Why: admin API calls, `/readyz` and `/metrics` sampled ten
//!   times a second need no process per probe (`ip netns exec curl` would cost a fork and exec per
//!   sample on 2 cores). The root is a management host on the backbone only; it cannot reach the
//!   point links, and the relays' namespaces do not forward, so the tree's own paths are unchanged.
//!   [`Tree::reachable`] probes from inside a namespace (`ip netns exec NS curl`).
//! - Link failures: [`Tree::cut`]/[`Tree::restore`] (nftables drop rules between two hosts, both
//!   directions, in the first one's namespace: the root still reaches both) and
//!   [`Tree::link_down`]/[`Tree::link_up`] (the host's backbone interface, as a pulled cable).
//! - Relays: the central is `hallcast demo` ([`central_options`] for [`Demo::start`]), the edges
//!   `hallcast edge` ([`Edge::start`]); both on `IP:8080` (HTTP) and `IP:8443` (media) of their host.
//! - Clients in a point's namespace: Chromium viewer pages ([`pages_in`]), aiortc ([`aiortc_in`]),
//!   the `hallcast-load` subscribers ([`Load::start`]).

use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

use crate::client::{Client, ClientKind};
use crate::ctx::{Ctx, tail};
use crate::demo::DemoOptions;
use crate::netns::{ip, ipv4_only, nft};
use crate::prereq::{chromium_path, hallcast_bin};
use crate::proc::Proc;

/// HTTP port of every relay (each relay has its own host).
pub const HTTP_PORT: u16 = 8080;
/// Media port of every relay.
pub const MEDIA_PORT: u16 = 8443;
/// How long a relay may take to answer `/readyz` (a debug build on a busy 2-core machine).
const READY_TIMEOUT: Duration = Duration::from_secs(60);

fn cmd_out(program: &str, args: &[&str]) -> Result<std::process::Output> {
    Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("cannot run `{program}`"))
}

/// A fault at a random moment (issue 13 C.1): waits a seeded random time in `[0, max)` and
/// prints it with the seed. The seed is `HALLCAST_CHAOS_SEED` when set (to replay a printed
/// run), else the clock.
pub fn random_pause(what: &str, max: Duration) -> Duration {
    let seed = std::env::var("HALLCAST_CHAOS_SEED")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or_else(|| now_ms() as u64);
    let mut rng = crate::net::Prng::new(seed ^ what.len() as u64);
    let max_ms = max.as_millis().max(1) as u64;
    let wait = Duration::from_millis(rng.next_u64() % max_ms);
    eprintln!("{what}: after a random {wait:?} (HALLCAST_CHAOS_SEED={seed})");
    thread::sleep(wait);
    wait
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// One host of the tree: a network namespace and the address the others reach it at.
#[derive(Clone, Debug)]
pub struct Host {
    /// The test's name for it (`central`, `edge-mid`, `point-a`...).
    pub label: String,
    pub ns: String,
    pub ip: String,
    /// Its interface towards the backbone or its relay.
    pub dev: String,
    /// The far end of its link: the interface that sends toward this host (a bridge port in the
    /// backbone namespace, or its relay's end of a point link). Shaping its egress
    /// (`crate::shape`) limits what reaches this host.
    pub toward: LinkEnd,
}

/// One end of a veth link: a namespace and an interface in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkEnd {
    pub ns: String,
    pub dev: String,
}

impl Host {
    /// `http://IP:8080`: the base URL of a relay on this host.
    pub fn url(&self) -> String {
        format!("http://{}:{HTTP_PORT}", self.ip)
    }
}

/// The tree's namespaces and links; deleted on drop.
pub struct Tree {
    /// The instance number: the backbone is 10.77.S.0/24, point links are in 10.78.S.0/24.
    pub s: u32,
    /// The backbone namespace (`hct{S}`), holding bridge `br0`.
    pub backbone: String,
    root_if: String,
    namespaces: Vec<String>,
    n_relays: u32,
    n_points: u32,
    n_backbone_hosts: u32,
    /// nft tables made by `cut` (namespace, table), removed by `restore`.
    cuts: Vec<(String, String)>,
}

impl Tree {
    /// Claims a free instance number and builds the backbone (bridge + the root's veth).
    pub fn create() -> Result<Tree> {
        let pid = std::process::id();
        let start = pid % 240;
        let mut claimed = None;
        let mut last_err = String::new();
        for i in 0..240 {
            let s = 1 + (start + i * 7) % 240;
            let name = format!("hct{s}");
            match ip(&["netns", "add", &name]) {
                Ok(()) => {
                    claimed = Some(s);
                    break;
                }
                Err(e) => last_err = format!("{e:#}"),
            }
        }
        let s =
            claimed.with_context(|| format!("no free tree instance (hct1..hct240): {last_err}"))?;
        let mut tree = Tree {
            s,
            backbone: format!("hct{s}"),
            root_if: format!("hct{s}root"),
            namespaces: vec![format!("hct{s}")],
            n_relays: 0,
            n_points: 0,
            n_backbone_hosts: 0,
            cuts: Vec::new(),
        };
        // From here on Drop removes what was made.
        let bb = tree.backbone.clone();
        ipv4_only(&bb)?;
        ip(&["-n", &bb, "link", "set", "lo", "up"])?;
        ip(&["-n", &bb, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &bb, "link", "set", "br0", "up"])?;
        ip(&[
            "link",
            "add",
            &tree.root_if,
            "type",
            "veth",
            "peer",
            "name",
            "root",
            "netns",
            &bb,
        ])?;
        ip(&["-n", &bb, "link", "set", "root", "master", "br0"])?;
        ip(&["-n", &bb, "link", "set", "root", "up"])?;
        ip(&[
            "addr",
            "add",
            &format!("10.77.{s}.254/24"),
            "dev",
            &tree.root_if,
        ])?;
        ip(&["link", "set", &tree.root_if, "up"])?;
        tree.n_relays = 0;
        Ok(tree)
    }

    fn new_ns(&mut self, label: &str) -> Result<String> {
        let clean: String = label
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let name = format!("hct{}-{clean}", self.s);
        ip(&["netns", "add", &name])?;
        // Drop removes it from here on.
        self.namespaces.push(name.clone());
        ipv4_only(&name)?;
        ip(&["-n", &name, "link", "set", "lo", "up"])?;
        Ok(name)
    }

    /// A host on the backbone at `10.77.S.{index}` (a veth into the bridge).
    fn attach_to_backbone(&mut self, label: &str, index: u32) -> Result<Host> {
        let ns = self.new_ns(label)?;
        let bb_if = format!("h{index}");
        ip(&[
            "-n",
            &self.backbone,
            "link",
            "add",
            &bb_if,
            "type",
            "veth",
            "peer",
            "name",
            "bb0",
            "netns",
            &ns,
        ])?;
        ip(&["-n", &self.backbone, "link", "set", &bb_if, "master", "br0"])?;
        ip(&["-n", &self.backbone, "link", "set", &bb_if, "up"])?;
        let addr = format!("10.77.{}.{index}", self.s);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "bb0",
        ])?;
        ip(&["-n", &ns, "link", "set", "bb0", "up"])?;
        Ok(Host {
            label: label.to_string(),
            ns,
            ip: addr,
            dev: "bb0".into(),
            toward: LinkEnd {
                ns: self.backbone.clone(),
                dev: bb_if,
            },
        })
    }

    /// A relay's host on the backbone (`10.77.S.1` for the first, then .2, .3...).
    pub fn relay_host(&mut self, label: &str) -> Result<Host> {
        self.n_relays += 1;
        ensure!(self.n_relays < 100, "too many relays in one tree");
        self.attach_to_backbone(label, self.n_relays)
    }

    /// A point's host on the backbone (`10.77.S.101`...): it reaches every relay directly.
    pub fn backbone_host(&mut self, label: &str) -> Result<Host> {
        self.n_backbone_hosts += 1;
        ensure!(self.n_backbone_hosts < 100, "too many backbone hosts");
        self.attach_to_backbone(label, 100 + self.n_backbone_hosts)
    }

    /// A point's host linked only to `relay`'s namespace (`10.78.S.4j+2/30`, the relay's side
    /// `.4j+1`), default route via the relay: it reaches the relay's addresses (the relay's
    /// kernel takes datagrams to any of its own addresses) and nothing beyond (no forwarding).
    pub fn point_under(&mut self, label: &str, relay: &Host) -> Result<Host> {
        let j = self.n_points;
        self.n_points += 1;
        ensure!(j < 63, "too many points in one tree");
        let ns = self.new_ns(label)?;
        let relay_if = format!("pt{j}");
        ip(&[
            "-n", &relay.ns, "link", "add", &relay_if, "type", "veth", "peer", "name", "up0",
            "netns", &ns,
        ])?;
        let relay_side = format!("10.78.{}.{}", self.s, 4 * j + 1);
        let point_side = format!("10.78.{}.{}", self.s, 4 * j + 2);
        ip(&[
            "-n",
            &relay.ns,
            "addr",
            "add",
            &format!("{relay_side}/30"),
            "dev",
            &relay_if,
        ])?;
        ip(&["-n", &relay.ns, "link", "set", &relay_if, "up"])?;
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{point_side}/30"),
            "dev",
            "up0",
        ])?;
        ip(&["-n", &ns, "link", "set", "up0", "up"])?;
        ip(&["-n", &ns, "route", "add", "default", "via", &relay_side])?;
        Ok(Host {
            label: label.to_string(),
            ns,
            ip: point_side,
            dev: "up0".into(),
            toward: LinkEnd {
                ns: relay.ns.clone(),
                dev: relay_if,
            },
        })
    }

    /// Cuts the link between `a` and `b`: nftables in `a`'s namespace drops everything to and
    /// from `b`'s address (both hosts stay reachable from the test and from the others).
    pub fn cut(&mut self, a: &Host, b: &Host) -> Result<()> {
        let table = format!("cut_{}", b.ip.replace('.', "_"));
        nft(&a.ns, &["add", "table", "ip", &table])?;
        self.cuts.push((a.ns.clone(), table.clone()));
        for (chain, hook, dir) in [("in", "input", "saddr"), ("out", "output", "daddr")] {
            nft(
                &a.ns,
                &[
                    "add",
                    "chain",
                    "ip",
                    &table,
                    chain,
                    &format!("{{ type filter hook {hook} priority 0; }}"),
                ],
            )?;
            nft(
                &a.ns,
                &["add", "rule", "ip", &table, chain, "ip", dir, &b.ip, "drop"],
            )?;
        }
        Ok(())
    }

    /// Undoes `cut(a, b)`.
    pub fn restore(&mut self, a: &Host, b: &Host) -> Result<()> {
        let table = format!("cut_{}", b.ip.replace('.', "_"));
        nft(&a.ns, &["delete", "table", "ip", &table])?;
        self.cuts.retain(|(ns, t)| !(ns == &a.ns && t == &table));
        Ok(())
    }

    /// The host's link goes down (a pulled cable: "Network is unreachable" on its side).
    pub fn link_down(&self, h: &Host) -> Result<()> {
        ip(&["-n", &h.ns, "link", "set", &h.dev, "down"])
    }

    /// Undoes `link_down`.
    pub fn link_up(&self, h: &Host) -> Result<()> {
        ip(&["-n", &h.ns, "link", "set", &h.dev, "up"])
    }

    /// Whether an HTTP GET of `url` from inside `from`'s namespace gets any answer within 2 s.
    pub fn reachable(&self, from: &Host, url: &str) -> Result<bool> {
        let out = cmd_out(
            "ip",
            &[
                "netns",
                "exec",
                &from.ns,
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "--max-time",
                "2",
                "-w",
                "%{http_code}",
                url,
            ],
        )?;
        let code = String::from_utf8_lossy(&out.stdout);
        Ok(out.status.success() && code.trim() != "000")
    }

    /// Every namespace of this tree that exists now (after drop: none).
    pub fn existing_namespaces(prefix: &str) -> Result<Vec<String>> {
        let out = cmd_out("ip", &["netns", "list"])?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|n| *n == prefix || n.starts_with(&format!("{prefix}-")))
            .map(str::to_string)
            .collect())
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.root_if]);
        // Points and relays first, the backbone (the claim on S) last.
        for ns in self.namespaces.iter().rev() {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

/// `hallcast demo` on `host` (`IP:8080`, media `IP:8443`, announcing `IP`), inside its namespace.
pub fn central_options(host: &Host) -> DemoOptions {
    DemoOptions {
        netns: Some(host.ns.clone()),
        ip: Some(host.ip.clone()),
        http_port: Some(HTTP_PORT),
        media_port: Some(MEDIA_PORT),
        public_ips: vec![host.ip.clone()],
        public_url: Some(host.url()),
        ..Default::default()
    }
}

/// Flags of `hallcast edge` beyond the host's addresses.
#[derive(Clone, Debug, Default)]
pub struct EdgeOptions {
    /// `--parent URL`.
    pub parent: String,
    /// `--credential TOKEN` (the central's `relay_credential`).
    pub credential: String,
    /// `--fallback URL`, in order.
    pub fallbacks: Vec<String>,
    /// `--set KEY=VALUE` (e.g. `upstream.organisations=["org"]`).
    pub set: Vec<String>,
    /// `--data-dir`; `None`: a fresh directory in the scratch space.
    pub data_dir: Option<PathBuf>,
}

/// The admin token every edge is started with (`--set admin.token=...`), to read its ledger.
pub const EDGE_ADMIN_TOKEN: &str = "edge-admin-token-for-tests";

/// A running `hallcast edge` on its host; stopped (SIGTERM, then SIGKILL) on drop.
pub struct Edge {
    proc: Proc,
    pub name: String,
    pub host: Host,
    /// `http://IP:8080`.
    pub url: String,
    data_dir: PathBuf,
    log: PathBuf,
}

impl Edge {
    /// `ip netns exec NS hallcast edge --parent .. --credential .. [--fallback ..] --http IP:8080
    /// --media IP:8443 --public-ip IP --public-url http://IP:8080 --name NAME --data-dir D
    /// --set admin.token=".."`; returns once `/readyz` answers 200.
    pub fn start(ctx: &Ctx, host: &Host, name: &str, opts: EdgeOptions) -> Result<Edge> {
        let bin = hallcast_bin()?;
        let data_dir = opts
            .data_dir
            .clone()
            .unwrap_or_else(|| ctx.path(&format!("{name}-data")));
        let log = ctx.path(&format!("{name}.log"));
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &host.ns])
            .arg(&bin)
            .arg("edge")
            .args(["--parent", &opts.parent])
            .args(["--credential", &opts.credential]);
        for f in &opts.fallbacks {
            cmd.args(["--fallback", f]);
        }
        cmd.args(["--http", &format!("{}:{HTTP_PORT}", host.ip)])
            .args(["--media", &format!("{}:{MEDIA_PORT}", host.ip)])
            .args(["--public-ip", &host.ip])
            .args(["--public-url", &host.url()])
            .args(["--name", name])
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--set", &format!("admin.token=\"{EDGE_ADMIN_TOKEN}\"")]);
        for kv in &opts.set {
            cmd.args(["--set", kv]);
        }
        let out = File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let err = out.try_clone()?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        ctx.register_log(&format!("hallcast edge {name}"), &log);
        let args = format!("{cmd:?}");
        let mut proc = Proc::spawn(&mut cmd, false)?;
        let url = host.url();
        let http = http_client()?;
        let started = Instant::now();
        let mut last;
        loop {
            if let Some(status) = proc.try_wait()? {
                bail!(
                    "`{args}` exited with {status} before /readyz answered; its output:\n{}",
                    tail(&log, 40).join("\n")
                );
            }
            match http.get(format!("{url}/readyz")).send() {
                Ok(r) if r.status().as_u16() == 200 => break,
                Ok(r) => last = format!("/readyz answered {}", r.status()),
                Err(e) => last = format!("/readyz: {e}"),
            }
            if started.elapsed() > READY_TIMEOUT {
                bail!("`{args}` was not ready within {READY_TIMEOUT:?}: {last}");
            }
            thread::sleep(Duration::from_millis(100));
        }
        Ok(Edge {
            proc,
            name: name.to_string(),
            host: host.clone(),
            url,
            data_dir,
            log,
        })
    }

    /// Fails if the edge has exited.
    pub fn ensure_running(&mut self) -> Result<()> {
        if let Some(status) = self.proc.try_wait()? {
            bail!(
                "hallcast edge {} exited during the test with {status}; its output:\n{}",
                self.name,
                tail(&self.log, 40).join("\n")
            );
        }
        Ok(())
    }

    pub fn pid(&self) -> u32 {
        self.proc.id()
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    /// kill -9 (its pid): a crash.
    pub fn kill(&mut self) -> Result<()> {
        self.proc
            .kill()
            .context("hallcast edge could not be waited for after SIGKILL")?;
        Ok(())
    }

    /// SIGTERM alone (the edge drains: see `hallcast_server::drain`); [`Edge::wait_exit`] then.
    pub fn sigterm(&mut self) {
        self.proc.sigterm();
    }

    /// Its exit status once it has exited, waiting at most `timeout` (None: still running).
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<Option<std::process::ExitStatus>> {
        self.proc.wait_timeout(timeout)
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        self.proc.terminate(grace);
    }

    /// `url` + `path`.
    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }
}

/// A blocking HTTP client (5 s timeout, redirects not followed).
pub fn http_client() -> Result<reqwest::blocking::Client> {
    Ok(reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .build()?)
}

/// The relay's `/metrics` text (`base`: `http://IP:PORT`).
pub fn metrics(base: &str) -> Result<String> {
    let r = http_client()?
        .get(format!("{base}/metrics"))
        .send()
        .with_context(|| format!("GET {base}/metrics: no answer"))?;
    ensure!(
        r.status().is_success(),
        "GET {base}/metrics answered {}",
        r.status()
    );
    Ok(r.text()?)
}

/// A metric's value: `name` alone, or `name{labels}` when `labels` is given (exactly as
/// printed, e.g. `conference="demo"`).
pub fn metric(text: &str, name: &str, labels: Option<&str>) -> Option<f64> {
    let key = match labels {
        Some(l) => format!("{name}{{{l}}}"),
        None => name.to_string(),
    };
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(&key).and_then(|r| r.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
}

/// Waits until the relay at `base` has `conference` live (`hallcast_conference_live` is 1 in
/// its `/metrics`): an edge pulls it from its parent.
pub fn wait_live(base: &str, conference: &str, timeout: Duration) -> Result<Duration> {
    wait_metric(
        base,
        "hallcast_conference_live",
        conference,
        timeout,
        &format!("have conference {conference} live"),
        |v| Ok(v.is_some_and(|v| v >= 1.0)),
    )
}

/// Waits until the relay at `base` counts exactly `want` relay consumers of `conference`
/// (`hallcast_relay_consumers` in its `/metrics`); fails at once if it ever counts more (a
/// child pulling twice). An edge counts a conference live as soon as its parent lists it (it
/// syncs every second), before its pull is up and before the parent's next snapshot shows it.
pub fn wait_relay_consumers(
    base: &str,
    conference: &str,
    want: f64,
    timeout: Duration,
) -> Result<Duration> {
    wait_metric(
        base,
        "hallcast_relay_consumers",
        conference,
        timeout,
        &format!("count {want} relay consumers of {conference}"),
        |v| match v {
            Some(v) if v > want => bail!(
                "the relay at {base} counts {v} relay consumers of {conference}, more than the \
                 {want} expected"
            ),
            v => Ok(v == Some(want)),
        },
    )
}

/// Polls `name{conference="…"}` in the `/metrics` of the relay at `base` every 200 ms until
/// `done` says so (its error ends the wait), or fails after `timeout` saying it did not `what`.
fn wait_metric(
    base: &str,
    name: &str,
    conference: &str,
    timeout: Duration,
    what: &str,
    done: impl Fn(Option<f64>) -> Result<bool>,
) -> Result<Duration> {
    let started = Instant::now();
    let label = format!("conference=\"{conference}\"");
    let mut last;
    loop {
        match metrics(base) {
            Ok(text) => {
                let v = metric(&text, name, Some(&label));
                if done(v)? {
                    return Ok(started.elapsed());
                }
                last = format!("{name}{{{label}}} = {v:?}");
            }
            Err(e) => last = format!("{e:#}"),
        }
        if started.elapsed() > timeout {
            bail!("the relay at {base} did not {what} within {timeout:?}: {last}");
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// A script that runs Chromium inside `ns` (for `HALLCAST_CHROMIUM`): Playwright drives it over
/// its pipe from the root namespace.
pub fn chromium_wrapper(ctx: &Ctx, ns: &str) -> Result<PathBuf> {
    let chromium = chromium_path()?;
    let path = ctx.path("chromium-in-netns.sh");
    // HALLCAST_CHROMIUM_LOG=DIR: each Chromium's WebRTC log (video receive, NACK, keyframe
    // requests) in DIR/{namespace}-{pid}.log, for diagnosing freezes.
    let (flags, redirect) = match std::env::var_os("HALLCAST_CHROMIUM_LOG") {
        Some(dir) => (
            " --enable-logging=stderr --v=0 \
             --vmodule=*/webrtc/modules/video_coding/*=3,*/webrtc/video/*=2"
                .to_string(),
            format!(" 2>>{}/{ns}-$$.log", Path::new(&dir).display()),
        ),
        None => (String::new(), String::new()),
    };
    fs::write(
        &path,
        format!(
            "#!/bin/sh\nexec ip netns exec {ns} {}{flags} \"$@\"{redirect}\n",
            chromium.display()
        ),
    )?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;
    Ok(path)
}

/// Audio packets a viewer page waits for before ending early: 3 s of Opus (as `util.rs`).
pub const PAGE_UNTIL_AUDIO_PACKETS: u32 = 150;
/// Audio packets an aiortc player waits for before ending early: 5 s of Opus (as `util.rs`).
pub const AIORTC_UNTIL_AUDIO_PACKETS: u32 = 250;

/// `n_pages` tabs of the viewer page at `url` in one Chromium running inside `point`'s namespace
/// (`tests/js/watch_pages.mjs --progress`); ends early once every page decoded `until_frames`
/// frames and received PAGE_UNTIL_AUDIO_PACKETS audio packets.
pub fn pages_in(
    ctx: &Ctx,
    point: &Host,
    url: &str,
    n_pages: u32,
    duration_s: u32,
    until_frames: u32,
) -> Result<Client> {
    pages_in_with(ctx, point, url, n_pages, duration_s, until_frames, &[])
}

/// [`pages_in`] with more flags of `watch_pages.mjs` (e.g. `--progress-interval 0.25`).
pub fn pages_in_with(
    ctx: &Ctx,
    point: &Host,
    url: &str,
    n_pages: u32,
    duration_s: u32,
    until_frames: u32,
    extra: &[&str],
) -> Result<Client> {
    let wrapper = chromium_wrapper(ctx, &point.ns)?;
    let wrapper = wrapper.to_string_lossy().to_string();
    let args: Vec<String> = [
        "--url",
        url,
        "--progress",
        "--pages",
        &n_pages.to_string(),
        "--duration",
        &duration_s.to_string(),
        "--until-frames",
        &until_frames.to_string(),
        "--until-audio",
        &PAGE_UNTIL_AUDIO_PACKETS.to_string(),
    ]
    .iter()
    .chain(extra)
    .map(|s| s.to_string())
    .collect();
    Client::start_with_env(
        ctx,
        ClientKind::Browser,
        "watch_pages.mjs",
        &args,
        &[("HALLCAST_CHROMIUM", &wrapper)],
    )
}

/// aiortc (`tests/py/whep_play.py --wait-live --progress --wall-clock`) inside `point`'s
/// namespace, its ICE host candidate on the point's address; `until_frames` 0: play the whole
/// duration. `extra`: more flags (e.g. `--progress-interval 0.2`).
pub fn aiortc_in(
    ctx: &Ctx,
    point: &Host,
    whep_url: &str,
    token: &str,
    duration_s: u32,
    until_frames: u32,
    extra: &[&str],
) -> Result<Client> {
    let mut args: Vec<String> = [
        "--host-address",
        &point.ip,
        "--url",
        whep_url,
        "--token",
        token,
        "--duration",
        &duration_s.to_string(),
        "--until-frames",
        &until_frames.to_string(),
        "--until-audio",
        &AIORTC_UNTIL_AUDIO_PACKETS.to_string(),
        "--wait-live",
        "--progress",
        "--wall-clock",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    Client::start_in_netns(ctx, ClientKind::Aiortc, "whep_play.py", &args, &point.ns)
}

/// The `hallcast-load` binary: `$HALLCAST_LOAD_BIN`, else beside `hallcast`.
pub fn load_bin() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("HALLCAST_LOAD_BIN") {
        return Ok(PathBuf::from(p));
    }
    let hallcast = hallcast_bin()?;
    let p = hallcast.with_file_name("hallcast-load");
    ensure!(
        p.is_file(),
        "the hallcast-load binary was not found at {}: build it with `cargo build -p hallcast-load` \
         (or set HALLCAST_LOAD_BIN)",
        p.display()
    );
    Ok(p)
}

/// How many `hallcast-load` subscribers join, how fast, and how long they stay.
#[derive(Clone, Copy, Debug)]
pub struct LoadPlan {
    pub subscribers: usize,
    /// Joins started per second.
    pub ramp_per_sec: f64,
    /// Seconds after the last join before the measurement window.
    pub warmup_s: f64,
    /// The measurement window, in seconds.
    pub duration_s: f64,
}

/// `hallcast-load` subscribers inside a point's namespace (str0m WHEP subscribers, no decoding);
/// its JSON report is read when it ends.
pub struct Load {
    proc: Proc,
    out: PathBuf,
    label: String,
}

impl Load {
    /// The subscribers of `plan` to `whep_url` with `token`, bound to the point's address.
    pub fn start(
        ctx: &Ctx,
        point: &Host,
        whep_url: &str,
        token: &str,
        plan: LoadPlan,
    ) -> Result<Load> {
        let bin = load_bin()?;
        let out = ctx.path(&format!("load-{}.json", point.label));
        let err_log = ctx.path(&format!("load-{}.log", point.label));
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &point.ns])
            .arg(&bin)
            .args(["--whep", whep_url, "--token", token])
            .args(["--subscribers", &plan.subscribers.to_string()])
            .args(["--ramp-per-sec", &plan.ramp_per_sec.to_string()])
            .args(["--warmup", &plan.warmup_s.to_string()])
            .args(["--duration", &plan.duration_s.to_string()])
            .args(["--bind", &point.ip])
            .stdin(Stdio::null())
            .stdout(File::create(&out)?)
            .stderr(File::create(&err_log)?);
        ctx.register_log(&format!("hallcast-load at {}", point.label), &err_log);
        Ok(Load {
            proc: Proc::spawn(&mut cmd, true)?,
            out,
            label: point.label.clone(),
        })
    }

    /// Waits up to `timeout` for the run to end; returns its JSON report.
    pub fn result(&mut self, timeout: Duration) -> Result<Value> {
        let status = self.proc.wait_timeout(timeout)?;
        let text = fs::read_to_string(&self.out).unwrap_or_default();
        match status {
            None => {
                self.proc.terminate(Duration::from_secs(5));
                bail!(
                    "hallcast-load at {} did not end within {timeout:?}",
                    self.label
                )
            }
            Some(s) if !s.success() => bail!(
                "hallcast-load at {} exited with {s}; stdout: {text}",
                self.label
            ),
            Some(_) => serde_json::from_str(&text).with_context(|| {
                format!(
                    "hallcast-load at {} printed no JSON report: {text}",
                    self.label
                )
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::metric;

    #[test]
    fn reads_labelled_and_unlabelled_metrics() {
        let text = "# HELP x y\nhallcast_keyframe_requests_upstream_total 4\n\
                    hallcast_conference_live{conference=\"demo\"} 1\n\
                    hallcast_conference_live{conference=\"demo2\"} 0\n";
        assert_eq!(
            metric(text, "hallcast_keyframe_requests_upstream_total", None),
            Some(4.0)
        );
        assert_eq!(
            metric(
                text,
                "hallcast_conference_live",
                Some("conference=\"demo2\"")
            ),
            Some(0.0)
        );
        assert_eq!(metric(text, "hallcast_conference_live", None), None);
    }
}
