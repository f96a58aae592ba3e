//! Observability checks: `/metrics` parsed by the Prometheus client library's own text parser
//! (`prometheus_client`, a subprocess in the tests' venv: `py/parse_metrics.py`), the table of
//! documented series in docs/OBSERVABILITY.md, the series the Grafana dashboard queries, and a
//! relay process whose stdout and stderr are kept apart (its log lines alone on stderr).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde::Deserialize;
use serde_json::Value;

use crate::ctx::{Ctx, tail};
use crate::prereq::{hallcast_bin, python_bin, repo_root};
use crate::proc::Proc;

/// How long a relay may take to write its info file (a debug build on a busy 2-core machine).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// One metric family as `prometheus_client` parsed it.
#[derive(Debug, Clone, Deserialize)]
pub struct Family {
    /// The parser's family name (a counter's without `_total`).
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub help: String,
    /// The name as exposed and documented (a counter's with `_total`).
    pub series: String,
    pub samples: Vec<Sample>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// A number, or "nan"/"inf" as a string.
    pub value: Value,
}

/// A parsed `/metrics` answer.
#[derive(Debug, Clone, Deserialize)]
pub struct Exposition {
    pub families: Vec<Family>,
    /// The names of the raw text's `# TYPE` lines, in order (the parser merges repeated
    /// families, which a Prometheus server refuses).
    #[serde(skip)]
    pub type_lines: Vec<String>,
}

impl Exposition {
    /// The series names (as documented) of every family.
    pub fn series(&self) -> BTreeSet<String> {
        self.families.iter().map(|f| f.series.clone()).collect()
    }

    /// What a Prometheus server would refuse that the parser lets through: a second `# TYPE`
    /// line for one name, and two samples with the same name and labels.
    pub fn duplicates(&self) -> Vec<String> {
        let mut seen = BTreeSet::new();
        let mut dup: Vec<String> = self
            .type_lines
            .iter()
            .filter(|n| !seen.insert(n.to_string()))
            .map(|n| format!("# TYPE {n}"))
            .collect();
        let mut seen = BTreeSet::new();
        for s in self.families.iter().flat_map(|f| &f.samples) {
            if !seen.insert((s.name.clone(), s.labels.clone())) {
                dup.push(format!("{}{:?}", s.name, s.labels));
            }
        }
        dup
    }

    pub fn family(&self, series: &str) -> Option<&Family> {
        self.families.iter().find(|f| f.series == series)
    }

    /// The value of the sample named `name` whose labels are exactly `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.families
            .iter()
            .flat_map(|f| &f.samples)
            .find(|s| {
                s.name == name
                    && s.labels.len() == labels.len()
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .and_then(|s| s.value.as_f64())
    }
}

/// Parses a Prometheus text exposition with `prometheus_client.parser` (in the tests' venv);
/// fails with the parser's message if it rejects the text.
pub fn parse_exposition(text: &str) -> Result<Exposition> {
    let python = python_bin()?;
    let script = repo_root().join("tests/py/parse_metrics.py");
    let probe = Command::new(&python)
        .args(["-c", "import prometheus_client.parser"])
        .output()?;
    ensure!(
        probe.status.success(),
        "{} cannot import prometheus_client ({}); run scripts/install-test-deps.sh",
        python.display(),
        String::from_utf8_lossy(&probe.stderr).trim()
    );
    let mut child = Command::new(&python)
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {}", script.display()))?;
    child
        .stdin
        .take()
        .context("no stdin")?
        .write_all(text.as_bytes())?;
    let out = child.wait_with_output()?;
    ensure!(
        out.status.success(),
        "{}\nthe exposition was:\n{text}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let mut parsed: Exposition =
        serde_json::from_slice(&out.stdout).context("parse_metrics.py printed no JSON")?;
    parsed.type_lines = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    Ok(parsed)
}

/// The series listed in docs/OBSERVABILITY.md's tables (first column, in backticks).
pub fn documented_series() -> Result<BTreeSet<String>> {
    let path = repo_root().join("docs/OBSERVABILITY.md");
    let text = fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .filter(|n| n.starts_with("hallcast_") || n.starts_with("process_"))
        .map(str::to_string)
        .collect())
}

/// Every metric name the Grafana dashboard's queries use (`expr` of every target, `definition`
/// of every template variable), as written
/// (a histogram's `_bucket` included).
pub fn dashboard_metrics() -> Result<BTreeSet<String>> {
    let path = repo_root().join("deploy/grafana/hallcast.json");
    let text = fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
    let dash: Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", path.display()))?;
    let mut exprs = Vec::new();
    collect_exprs(&dash, &mut exprs);
    ensure!(!exprs.is_empty(), "{} has no queries", path.display());
    let mut names = BTreeSet::new();
    for e in exprs {
        let mut ident = String::new();
        let mut in_string = false;
        for c in e.chars().chain(std::iter::once(' ')) {
            if c == '"' {
                in_string = !in_string;
            }
            if !in_string && (c.is_ascii_alphanumeric() || c == '_' || c == ':') {
                ident.push(c);
                continue;
            }
            if ident.starts_with("hallcast_") || ident.starts_with("process_") {
                names.insert(ident.clone());
            }
            ident.clear();
        }
    }
    Ok(names)
}

fn collect_exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    // Panel queries, and template variables' `label_values(...)`.
                    ("expr" | "definition", Value::String(s)) => out.push(s.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

/// The series a queried name belongs to: a histogram's `_bucket`/`_sum`/`_count` are its
/// family's.
pub fn series_of(name: &str, known: &BTreeSet<String>) -> String {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix)
            && known.contains(base)
        {
            return base.to_string();
        }
    }
    name.to_string()
}

/// A `hallcast` process (any subcommand writing an `--info-file`), its stdout and stderr in
/// files of their own; stopped (SIGTERM, then SIGKILL) on drop.
pub struct Relay {
    proc: Proc,
    pub info: Value,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

impl Relay {
    /// Runs `hallcast ARGS --info-file F` and returns once F holds JSON.
    pub fn start(ctx: &Ctx, label: &str, args: &[String]) -> Result<Relay> {
        let stem = label.replace(|c: char| !c.is_ascii_alphanumeric(), "-");
        let info_path = ctx.path(&format!("{stem}-info.json"));
        let mut args = args.to_vec();
        args.push("--info-file".into());
        args.push(info_path.display().to_string());
        Relay::spawn(ctx, label, &args, |_| {
            let text = fs::read_to_string(&info_path).ok()?;
            serde_json::from_str::<Value>(&text).ok()
        })
    }

    /// Runs `hallcast ARGS` (a command without `--info-file`: `serve`) that listens on
    /// `base`, and returns once `base/readyz` answers 200; its info is `{"http_base": base}`.
    pub fn start_at(ctx: &Ctx, label: &str, args: &[String], base: &str) -> Result<Relay> {
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?;
        Relay::spawn(ctx, label, args, |_| {
            let r = http.get(format!("{base}/readyz")).send().ok()?;
            (r.status() == 200).then(|| serde_json::json!({ "http_base": base }))
        })
    }

    fn spawn(
        ctx: &Ctx,
        label: &str,
        args: &[String],
        ready: impl Fn(&Path) -> Option<Value>,
    ) -> Result<Relay> {
        let bin = hallcast_bin()?;
        let stem = label.replace(|c: char| !c.is_ascii_alphanumeric(), "-");
        let stdout = ctx.path(&format!("{stem}.stdout"));
        let stderr = ctx.path(&format!("{stem}.stderr"));
        let mut cmd = Command::new(&bin);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(File::create(&stdout)?)
            .stderr(File::create(&stderr)?);
        ctx.register_log(&format!("{label} (stderr)"), &stderr);
        let shown = format!("{cmd:?}");
        let mut proc = Proc::spawn(&mut cmd, false)?;
        let started = Instant::now();
        loop {
            if let Some(status) = proc.try_wait()? {
                bail!(
                    "`{shown}` exited with {status} before it was ready; stderr:\n{}",
                    tail(&stderr, 40).join("\n")
                );
            }
            if let Some(info) = ready(&stderr) {
                return Ok(Relay {
                    proc,
                    info,
                    stdout,
                    stderr,
                });
            }
            if started.elapsed() > START_TIMEOUT {
                bail!("`{shown}` was not ready within {START_TIMEOUT:?}");
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// `info["http_base"]`.
    pub fn base(&self) -> String {
        self.info["http_base"]
            .as_str()
            .unwrap_or_default()
            .trim_end_matches('/')
            .to_string()
    }

    /// Fails if the process has exited.
    pub fn ensure_running(&mut self) -> Result<()> {
        if let Some(status) = self.proc.try_wait()? {
            bail!(
                "the relay exited during the test with {status}; stderr:\n{}",
                tail(&self.stderr, 40).join("\n")
            );
        }
        Ok(())
    }

    /// SIGTERM (SIGKILL after `grace`); how it exited.
    pub fn stop(&mut self, grace: Duration) -> Result<ExitStatus> {
        self.proc
            .terminate(grace)
            .context("the relay could not be waited for after SIGTERM")
    }
}

/// Reads `path` and returns each non-empty line that is not a JSON object, with its number.
pub fn non_json_lines(path: &Path) -> Result<(usize, Vec<(usize, String)>)> {
    let text = fs::read_to_string(path)?;
    let mut n = 0;
    let mut bad = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        n += 1;
        match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(_)) => {}
            _ => bad.push((i + 1, line.to_string())),
        }
    }
    Ok((n, bad))
}
