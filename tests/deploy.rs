//! Deployment files, checked as far as this machine can (issue 14; docs/deploy.md).
//!
//! | test | what |
//! |---|---|
//! | `validate_accepts_every_shipped_config` | `hallcast validate --config config/*.toml`: exit 0, one line `FILE: ok (central\|edge)` |
//! | `validate_reports_each_problem_with_file_line_and_key` | a syntax error, an unknown key, a wrong type, failed checks, a bad password hash: exit 1, `FILE:LINE:COL: key: message` lines on stderr |
//! | `the_systemd_units_verify` | `systemd-analyze verify` on both units (the template as an instance) with no warning, and their `systemd-analyze security` exposure at most 2.0 |
//! | `the_units_start_validate_and_stop_as_documented` | the units' own ExecStartPre/ExecStart lines, run with the shipped configs: validate says ok; the central and an edge start, the edge becomes ready under the central, and each exits 0 on SIGTERM (a drain with no viewer: at once) well within TimeoutStopSec |
//! | `the_container_build_file_is_consistent` | every COPY source exists; the runtime stage runs as a non-root user; EXPOSE matches the image's config; ENTRYPOINT+CMD validate with `--public-ip` (and refuse without, naming media.udp); every file the crates embed is copied into the build |
//!
//! The container image itself is not built here (no registry for base images on these machines).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use hallcast_tests::net::free_udp_port;
use hallcast_tests::{hallcast_bin, repo_root};

fn run(cmd: &mut Command) -> Result<Output> {
    cmd.output().with_context(|| format!("cannot run {cmd:?}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A scratch directory removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Result<Scratch> {
        let dir =
            std::env::temp_dir().join(format!("hallcast-deploy-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        Ok(Scratch(dir))
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `hallcast validate` run from the repository root.
fn validate(args: &[&str]) -> Result<Output> {
    run(Command::new(hallcast_bin()?)
        .arg("validate")
        .args(args)
        .current_dir(repo_root()))
}

fn shipped_configs() -> Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(repo_root().join("config"))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    names.sort();
    Ok(names)
}

#[test]
fn validate_accepts_every_shipped_config() -> Result<()> {
    let names = shipped_configs()?;
    ensure!(
        names.len() >= 3,
        "config/ should hold at least hallcast.toml, central.toml and edge.toml: {names:?}"
    );
    for name in names {
        let file = format!("config/{name}");
        let out = validate(&["--config", &file])?;
        let role = if name.starts_with("edge") {
            "edge"
        } else {
            "central"
        };
        ensure!(
            out.status.success() && text(&out.stdout) == format!("{file}: ok ({role})\n"),
            "hallcast validate --config {file}: {}\nstdout: {}\nstderr: {}",
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        );
    }
    Ok(())
}

#[test]
fn validate_reports_each_problem_with_file_line_and_key() -> Result<()> {
    let dir = Scratch::new("validate")?;
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "syntax.toml",
            "[http]\nlisten = \"0.0.0.0:8080\"\n\n[media\nudp = \"0.0.0.0:8443\"\n",
            &[":4:7: http: unclosed table, expected `]`"],
        ),
        (
            "unknown.toml",
            "[upstream]\nparent = \"http://c:8080\"\ncredentail = \"0123456789abcdef\"\n",
            &[":3:1: upstream.credentail: unknown field `credentail`, expected one of"],
        ),
        (
            "type.toml",
            "[media]\nudp = \"127.0.0.1:8443\"\nthreads = \"two\"\n",
            &[":3:11: media.threads: invalid type: string \"two\", expected usize"],
        ),
        (
            "checks.toml",
            "[upstream]\nparent = \"ftp://central\"\ncredential = \"short\"\n\n[media]\nudp = \"0.0.0.0:8443\"\n",
            &[
                ":2:1: upstream.parent: must be an http(s) URL, not \"ftp://central\"",
                ":3:1: upstream.credential: must be the relay credential the central issued",
                ":6:1: media.udp: binds an unspecified address",
            ],
        ),
        (
            "hash.toml",
            "[[access.accounts]]\nname = \"an\"\nrole = \"admin\"\npassword_hash = \"$argon2id$v=19$garbage\"\n",
            &[
                ":4:1: access.accounts[0].password_hash: access account \"an\": password_hash is not a valid argon2 PHC string",
            ],
        ),
    ];
    for (name, body, want) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, body)?;
        let file = path.display().to_string();
        let out = validate(&["--config", &file])?;
        let stderr = text(&out.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        ensure!(
            out.status.code() == Some(1) && out.stdout.is_empty() && lines.len() == want.len(),
            "{name}: want exit 1, nothing on stdout and {} line(s) on stderr; got {}\nstdout: {}\nstderr: {stderr}",
            want.len(),
            out.status,
            text(&out.stdout)
        );
        for (line, w) in lines.iter().zip(want.iter()) {
            let w = format!("{file}{w}");
            ensure!(
                line.starts_with(&w),
                "{name}: want a line starting\n  {w}\ngot\n  {line}"
            );
        }
    }
    // `serve` and `edge` refuse the same file with the same places.
    let checks = dir.path().join("checks.toml").display().to_string();
    for command in ["serve", "edge"] {
        let out = run(Command::new(hallcast_bin()?).args([command, "--config", &checks]))?;
        let stderr = text(&out.stderr);
        ensure!(
            !out.status.success()
                && stderr.contains(&format!(
                    "{checks}:2:1: upstream.parent: must be an http(s) URL"
                ))
                && stderr.contains(&format!("{checks}:6:1: media.udp: binds")),
            "hallcast {command} with a bad file: {}\n{stderr}",
            out.status
        );
    }
    let out = validate(&["--config", "config/no-such-file.toml"])?;
    ensure!(
        out.status.code() == Some(1)
            && text(&out.stderr).starts_with("config/no-such-file.toml: cannot read: "),
        "a missing file: {} {}",
        out.status,
        text(&out.stderr)
    );
    Ok(())
}

/// `systemd-analyze`, or a loud failure: these checks must not pass by being skipped.
fn systemd_analyze() -> Result<PathBuf> {
    for candidate in ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"] {
        if Path::new(candidate).is_file() {
            return Ok(candidate.into());
        }
    }
    if let Ok(out) = Command::new("systemd-analyze").arg("--version").output()
        && out.status.success()
    {
        return Ok("systemd-analyze".into());
    }
    bail!(
        "systemd-analyze is MISSING, so the systemd units cannot be checked: install Debian's \
         `systemd` package (scripts/install-test-deps.sh does)"
    )
}

const UNITS: [&str; 2] = ["hallcast.service", "hallcast-edge@.service"];

/// A unit's text with the installed binary's path replaced by the built one (verify checks
/// that ExecStart's program exists).
fn unit_for_here(name: &str) -> Result<String> {
    let path = repo_root().join("deploy/systemd").join(name);
    let unit = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    ensure!(
        unit.contains("/usr/local/bin/hallcast "),
        "{name} should run /usr/local/bin/hallcast (docs/deploy.md installs it there)"
    );
    Ok(unit.replace(
        "/usr/local/bin/hallcast ",
        &format!("{} ", hallcast_bin()?.display()),
    ))
}

/// `Key=value` lines of a unit (a key may repeat).
fn directives(unit: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in unit.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with('[') {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            out.entry(k.trim().to_string())
                .or_default()
                .push(v.trim().to_string());
        }
    }
    out
}

#[test]
fn the_systemd_units_verify() -> Result<()> {
    let analyze = systemd_analyze()?;
    let dir = Scratch::new("units")?;
    for name in UNITS {
        let unit = unit_for_here(name)?;
        let d = directives(&unit);
        let one = |k: &str| d.get(k).and_then(|v| v.last()).map(String::as_str);
        for (key, want) in [
            ("DynamicUser", "yes"),
            ("ProtectSystem", "strict"),
            ("NoNewPrivileges", "yes"),
            ("CapabilityBoundingSet", ""),
            ("KillSignal", "SIGTERM"),
        ] {
            ensure!(
                one(key) == Some(want),
                "{name}: {key}={want} expected, got {:?}",
                one(key)
            );
        }
        ensure!(
            one("StateDirectory").is_some(),
            "{name}: no StateDirectory="
        );
        ensure!(
            one("ExecStartPre").is_some_and(|c| c.contains(" validate --config ")),
            "{name}: ExecStartPre= must run `hallcast validate --config`"
        );
        let stop = one("TimeoutStopSec").unwrap_or("");
        let secs: u64 = stop.trim_end_matches('s').parse().unwrap_or(0);
        let drain = hallcast_config::Config::default().http.drain_seconds;
        ensure!(
            secs >= drain + 10,
            "{name}: TimeoutStopSec={stop:?} leaves no time to stop cleanly after the default \
             drain (http.drain_seconds = {drain})"
        );

        // The template is verified as itself and as an instance.
        let mut files = vec![dir.path().join(name)];
        if name.ends_with("@.service") {
            files.push(dir.path().join(name.replace("@.", "@hanoi.")));
        }
        for file in &files {
            std::fs::write(file, &unit)?;
            let out = run(Command::new(&analyze).arg("verify").arg(file))?;
            let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
            ensure!(
                out.status.success() && said.trim().is_empty(),
                "systemd-analyze verify {}: {}\n{said}",
                file.display(),
                out.status
            );
            let out = run(Command::new(&analyze)
                .args(["security", "--offline=yes", "--no-pager"])
                .arg(file))?;
            let said = text(&out.stdout);
            let level = said
                .lines()
                .find_map(|l| l.split("Overall exposure level for ").nth(1))
                .and_then(|rest| rest.split(": ").nth(1))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<f64>().ok())
                .with_context(|| {
                    format!(
                        "no exposure level in `systemd-analyze security` of {}: {said}{}",
                        file.display(),
                        text(&out.stderr)
                    )
                })?;
            // docs/deploy.md records 1.1 ("OK"); 2.0 leaves room for systemd's scoring to move.
            ensure!(
                level <= 2.0,
                "{}: exposure {level} (docs/deploy.md says 1.1)\n{said}",
                file.display()
            );
        }
    }
    Ok(())
}

/// A unit's ExecStartPre= or ExecStart= command, with the variables systemd would set.
fn command_of(unit: &str, key: &str, vars: &[(&str, &Path)]) -> Result<Vec<String>> {
    let d = directives(unit);
    let line = d
        .get(key)
        .and_then(|v| v.first())
        .with_context(|| format!("no {key}="))?;
    Ok(line
        .split_whitespace()
        .map(|word| {
            let mut w = word.to_string();
            for (name, value) in vars {
                w = w.replace(&format!("${{{name}}}"), &value.display().to_string());
            }
            w
        })
        .collect())
}

/// A started relay, stopped by SIGTERM (or killed by its pid on drop).
struct Started {
    name: &'static str,
    child: Child,
    stderr: PathBuf,
}

impl Started {
    fn start(
        name: &'static str,
        argv: &[String],
        extra: &[String],
        log: PathBuf,
    ) -> Result<Started> {
        let child = Command::new(&argv[0])
            .args(&argv[1..])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("cannot start {argv:?}"))?;
        Ok(Started {
            name,
            child,
            stderr: log,
        })
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits until `url` answers 200.
    fn wait_for(&mut self, url: &str, within: Duration) -> Result<()> {
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} exited ({status}) before {url} answered:\n{}",
                    self.name,
                    self.log()
                );
            }
            if http.get(url).send().is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{url} did not answer 200 within {within:?}:\n{}",
                    self.log()
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM, as systemd's KillSignal=; returns how long the relay took to exit 0.
    fn terminate(mut self, within: Duration) -> Result<Duration> {
        let pid = self.child.id().to_string();
        let sent = Instant::now();
        let out = run(Command::new("kill").args(["-TERM", &pid]))?;
        ensure!(
            out.status.success(),
            "kill -TERM {pid}: {}",
            text(&out.stderr)
        );
        loop {
            if let Some(status) = self.child.try_wait()? {
                let took = sent.elapsed();
                ensure!(
                    status.success(),
                    "{} exited with {status} on SIGTERM:\n{}",
                    self.name,
                    self.log()
                );
                let log = self.log();
                // No viewer: the drain (docs/deploy.md) ends at once; a central with no live edge
                // below it (the edge stopped first) does not drain at all.
                ensure!(
                    (log.contains("terminated; draining")
                        && log.contains("drained: no viewer left; stopping"))
                        || log.contains("terminated; no live edge relay to move the viewers to"),
                    "{} did not log its stop:\n{log}",
                    self.name
                );
                return Ok(took);
            }
            if sent.elapsed() > within {
                bail!(
                    "{} still running {within:?} after SIGTERM:\n{}",
                    self.name,
                    self.log()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn free_tcp_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

#[test]
fn the_units_start_validate_and_stop_as_documented() -> Result<()> {
    let dir = Scratch::new("run")?;
    let central_unit = unit_for_here("hallcast.service")?;
    let edge_unit = unit_for_here("hallcast-edge@.service")?;
    // LoadCredential=NAME:SOURCE: the service reads the shipped config under NAME.
    let credential = |unit: &str, shipped: &str, creds: &Path| -> Result<()> {
        let d = directives(unit);
        let lc = d
            .get("LoadCredential")
            .and_then(|v| v.first())
            .context("no LoadCredential=")?;
        let (name, source) = lc.split_once(':').context("LoadCredential=NAME:PATH")?;
        ensure!(
            source.starts_with("/etc/hallcast/"),
            "LoadCredential= should read /etc/hallcast/: {source}"
        );
        std::fs::create_dir_all(creds)?;
        std::fs::copy(repo_root().join("config").join(shipped), creds.join(name))?;
        Ok(())
    };
    let central_creds = dir.path().join("central-creds");
    let central_state = dir.path().join("central-state");
    credential(&central_unit, "central.toml", &central_creds)?;
    std::fs::create_dir_all(&central_state)?;
    let central_vars = [
        ("CREDENTIALS_DIRECTORY", central_creds.as_path()),
        ("STATE_DIRECTORY", central_state.as_path()),
    ];
    let edge_creds = dir.path().join("edge-creds");
    let edge_state = dir.path().join("edge-state");
    credential(&edge_unit, "edge.toml", &edge_creds)?;
    std::fs::create_dir_all(&edge_state)?;
    let edge_vars = [
        ("CREDENTIALS_DIRECTORY", edge_creds.as_path()),
        ("STATE_DIRECTORY", edge_state.as_path()),
    ];

    for (unit, vars, role) in [
        (&central_unit, &central_vars, "central"),
        (&edge_unit, &edge_vars, "edge"),
    ] {
        let pre = command_of(unit, "ExecStartPre", vars)?;
        let out = run(Command::new(&pre[0]).args(&pre[1..]))?;
        ensure!(
            out.status.success() && text(&out.stdout).ends_with(&format!(": ok ({role})\n")),
            "{pre:?}: {}\n{}{}",
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        );
    }

    // The shipped configs listen on every interface with placeholder addresses; here both run
    // on loopback, and the edge's parent is the central (its placeholder credential accepted).
    let c_http = free_tcp_port()?;
    let c_udp = free_udp_port()?;
    let credential_value = "change-this-relay-credential";
    let central = command_of(&central_unit, "ExecStart", &central_vars)?;
    let mut central = Started::start(
        "the central",
        &central,
        &[
            format!("--http=127.0.0.1:{c_http}"),
            format!("--media=127.0.0.1:{c_udp}"),
            format!("--public-url=http://127.0.0.1:{c_http}"),
            "--set=media.public_ips=[]".into(),
            format!("--set=relay.credential=\"{credential_value}\""),
        ],
        dir.path().join("central.log"),
    )?;
    central.wait_for(
        &format!("http://127.0.0.1:{c_http}/readyz"),
        Duration::from_secs(20),
    )?;
    ensure!(
        central_state.join("join-secret").is_file(),
        "the central keeps its state in $STATE_DIRECTORY (--data-dir): {:?}",
        std::fs::read_dir(&central_state)?.collect::<Vec<_>>()
    );

    let e_http = free_tcp_port()?;
    let e_udp = free_udp_port()?;
    let edge = command_of(&edge_unit, "ExecStart", &edge_vars)?;
    let mut edge = Started::start(
        "the edge",
        &edge,
        &[
            format!("--http=127.0.0.1:{e_http}"),
            format!("--media=127.0.0.1:{e_udp}"),
            format!("--public-url=http://127.0.0.1:{e_http}"),
            "--set=media.public_ips=[]".into(),
            format!("--parent=http://127.0.0.1:{c_http}"),
        ],
        dir.path().join("edge.log"),
    )?;
    // Ready only once its parent (the central) answers its reports.
    edge.wait_for(
        &format!("http://127.0.0.1:{e_http}/readyz"),
        Duration::from_secs(20),
    )?;

    let limit = Duration::from_secs(10);
    let took = edge.terminate(limit)?;
    eprintln!("the edge stopped {took:?} after SIGTERM");
    let took = central.terminate(limit)?;
    eprintln!("the central stopped {took:?} after SIGTERM");
    Ok(())
}

/// A build file's instructions: (stage index, INSTRUCTION, arguments), continuation lines
/// joined, comments dropped.
fn instructions(text: &str) -> Vec<(usize, String, String)> {
    let mut out = Vec::new();
    let mut stage = 0;
    let mut pending = String::new();
    for line in text.lines() {
        let t = line.trim();
        if pending.is_empty() && (t.starts_with('#') || t.is_empty()) {
            continue;
        }
        if let Some(head) = t.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        pending.push_str(t);
        let full = std::mem::take(&mut pending);
        let (op, args) = full.split_once(char::is_whitespace).unwrap_or((&full, ""));
        let op = op.to_ascii_uppercase();
        if op == "FROM" {
            stage += 1;
        }
        out.push((stage, op, args.trim().to_string()));
    }
    out
}

#[test]
fn the_container_build_file_is_consistent() -> Result<()> {
    let root = repo_root();
    let file = root.join("deploy/container/Dockerfile");
    let body = std::fs::read_to_string(&file)?;
    let ins = instructions(&body);
    let n_stages = ins.iter().map(|(s, ..)| *s).max().unwrap_or(0);
    ensure!(
        n_stages >= 2,
        "a multi-stage build is expected: {n_stages} stage(s)"
    );
    let stage_names: Vec<String> = ins
        .iter()
        .filter(|(_, op, _)| op == "FROM")
        .filter_map(|(_, _, a)| a.split_whitespace().nth(2).map(str::to_string))
        .collect();

    // COPY sources: in the repository (the context is its root), or an earlier stage.
    let mut copied_dirs = Vec::new();
    let mut config_in_image = BTreeMap::new();
    for (stage, op, args) in &ins {
        if op != "COPY" {
            continue;
        }
        let words: Vec<&str> = args.split_whitespace().collect();
        let from = words.iter().find_map(|w| w.strip_prefix("--from="));
        let paths: Vec<&str> = words
            .iter()
            .copied()
            .filter(|w| !w.starts_with("--"))
            .collect();
        ensure!(
            paths.len() >= 2,
            "COPY {args}: source and destination expected"
        );
        let (dest, sources) = paths.split_last().context("COPY")?;
        match from {
            Some(stage_name) => ensure!(
                stage_names.iter().any(|n| n == stage_name),
                "COPY --from={stage_name}: no such stage ({stage_names:?})"
            ),
            None => {
                for s in sources {
                    let p = root.join(s);
                    ensure!(
                        p.exists(),
                        "COPY {s}: not in the repository ({})",
                        p.display()
                    );
                    if *stage == 1 {
                        copied_dirs.push(s.trim_end_matches('/').to_string());
                    }
                    if *stage == n_stages && s.ends_with(".toml") {
                        config_in_image.insert(dest.to_string(), s.to_string());
                    }
                }
            }
        }
    }

    // Every file a crate embeds (include_str!/include_bytes!) must be in the build stage.
    let mut embedded = Vec::new();
    collect_includes(&root.join("crates"), &mut embedded)?;
    ensure!(
        !embedded.is_empty(),
        "no include_str!/include_bytes! found under crates/"
    );
    for path in &embedded {
        let rel = path
            .strip_prefix(&root)
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned();
        ensure!(
            copied_dirs
                .iter()
                .any(|d| rel == *d || rel.starts_with(&format!("{d}/"))),
            "{rel} is embedded in a binary but the build stage does not copy it ({copied_dirs:?})"
        );
    }

    // The runtime stage runs as a user other than root.
    let runtime = |op: &str| -> Vec<String> {
        ins.iter()
            .filter(|(s, o, _)| *s == n_stages && o == op)
            .map(|(_, _, a)| a.clone())
            .collect()
    };
    let user = runtime("USER")
        .pop()
        .context("the runtime stage sets no USER")?;
    let name = user.split(':').next().unwrap_or("");
    ensure!(
        !name.is_empty() && name != "root" && name != "0",
        "the runtime stage runs as {user:?}"
    );

    // ENTRYPOINT + CMD: a relay on the image's config, which validates once given the public
    // address (docs/deploy.md says to pass --public-ip) and not without it.
    let json_words = |s: &str| -> Result<Vec<String>> {
        let s = s.trim();
        ensure!(
            s.starts_with('[') && s.ends_with(']'),
            "exec form expected: {s}"
        );
        Ok(s[1..s.len() - 1]
            .split(',')
            .map(|w| w.trim().trim_matches('"').to_string())
            .filter(|w| !w.is_empty())
            .collect())
    };
    let entrypoint = json_words(&runtime("ENTRYPOINT").pop().context("no ENTRYPOINT")?)?;
    ensure!(
        entrypoint == ["/usr/local/bin/hallcast"],
        "ENTRYPOINT should be the binary alone: {entrypoint:?}"
    );
    ensure!(
        runtime("COPY")
            .iter()
            .any(|a| a.contains("--from=") && a.ends_with(" /usr/local/bin/hallcast")),
        "the runtime stage should copy the built binary to /usr/local/bin/hallcast"
    );
    let cmd = json_words(&runtime("CMD").pop().context("no CMD")?)?;
    ensure!(
        cmd.first().map(String::as_str) == Some("serve"),
        "CMD should run `serve`: {cmd:?}"
    );
    let at = cmd
        .iter()
        .position(|w| w == "--config")
        .context("CMD gives no --config")?;
    let in_image = cmd.get(at + 1).context("--config without a path")?;
    let source = config_in_image
        .get(in_image)
        .with_context(|| format!("CMD's config {in_image} is not copied into the image"))?;
    // `serve ARGS` → `validate ARGS`, the config's path in the image → its source here.
    let mut args: Vec<String> = cmd[1..].to_vec();
    args[at] = source.clone();
    let str_args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = validate(&str_args)?;
    ensure!(
        out.status.code() == Some(1)
            && text(&out.stderr).contains(": media.udp: binds an unspecified address"),
        "without --public-ip the image's config should be refused, naming media.udp: {}\n{}",
        out.status,
        text(&out.stderr)
    );
    let mut with_ip = str_args.clone();
    with_ip.extend(["--public-ip", "192.0.2.10"]);
    let out = validate(&with_ip)?;
    ensure!(
        out.status.success() && text(&out.stdout) == format!("{source}: ok (central)\n"),
        "hallcast validate {with_ip:?}: {}\n{}{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );

    // EXPOSE: the config's HTTP port (tcp) and media port (udp).
    let config = std::fs::read_to_string(root.join(source))?;
    let port_of = |section: &str, key: &str| -> Option<String> {
        let body = config.split(&format!("[{section}]")).nth(1)?;
        let line = body.lines().find(|l| l.trim_start().starts_with(key))?;
        Some(
            line.rsplit(':')
                .next()?
                .trim()
                .trim_matches('"')
                .to_string(),
        )
    };
    let exposed = runtime("EXPOSE").join(" ");
    for (port, proto) in [
        (port_of("http", "listen"), "tcp"),
        (port_of("media", "udp"), "udp"),
    ] {
        let port = port.context("the image's config sets http.listen and media.udp")?;
        ensure!(
            exposed
                .split_whitespace()
                .any(|e| e == format!("{port}/{proto}")),
            "EXPOSE {exposed} lacks {port}/{proto}"
        );
    }

    // The ignore file keeps build output and test installs out of the context.
    let ignore = std::fs::read_to_string(root.join("deploy/container/Dockerfile.dockerignore"))?;
    for entry in ["target", "tests/js/node_modules", "tests/py/.venv"] {
        ensure!(
            ignore.lines().any(|l| l.trim() == entry),
            "Dockerfile.dockerignore should exclude {entry}"
        );
    }
    Ok(())
}

/// The files `include_str!`/`include_bytes!` name in the .rs files under `dir`, resolved.
fn collect_includes(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_includes(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            let body = std::fs::read_to_string(&path)?;
            for macro_name in ["include_str!(\"", "include_bytes!(\""] {
                for piece in body.split(macro_name).skip(1) {
                    let Some(rel) = piece.split('"').next() else {
                        continue;
                    };
                    let parent = path.parent().context("a file has a parent")?;
                    let target = normalize(&parent.join(rel));
                    ensure!(
                        target.exists(),
                        "{} includes {rel}, which is missing",
                        path.display()
                    );
                    out.push(target);
                }
            }
        }
    }
    Ok(())
}

/// `a/b/../c` → `a/c` (without touching the file system).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}
