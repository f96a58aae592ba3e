//! The test clients (tests/js, tests/py) as child processes speaking JSON lines on stdout.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::ctx::{Ctx, tail};
use crate::prereq::{chromium_path, node_bin, python_bin, repo_root};
use crate::proc::Proc;

/// Which runtime runs the script.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientKind {
    /// `tests/js/<script>` under Node, driving Chromium.
    Browser,
    /// `tests/py/<script>` under the aiortc venv.
    Aiortc,
}

/// A running test client. Its stdout lines (JSON objects with an `event` key) are collected as
/// they come; `wait_for` follows them in order. Stopped (SIGTERM, then SIGKILL of its process
/// group) when dropped.
pub struct Client {
    label: String,
    proc: Proc,
    lines: Arc<Mutex<Vec<Value>>>,
    reader: Option<JoinHandle<()>>,
    cursor: usize,
    stderr_log: PathBuf,
}

impl Client {
    /// Starts `tests/js/<script>` or `tests/py/<script>` with `args`.
    pub fn start(ctx: &Ctx, kind: ClientKind, script: &str, args: &[String]) -> Result<Client> {
        Client::start_with_env(ctx, kind, script, args, &[])
    }

    /// `start` with extra environment variables (e.g. `HALLCAST_CHROMIUM`).
    pub fn start_with_env(
        ctx: &Ctx,
        kind: ClientKind,
        script: &str,
        args: &[String],
        env: &[(&str, &str)],
    ) -> Result<Client> {
        Client::start_full(ctx, kind, script, args, env, None)
    }

    /// `start` inside network namespace `netns` (`ip netns exec NETNS ...`): a client on
    /// another host (see [`crate::netns`]).
    pub fn start_in_netns(
        ctx: &Ctx,
        kind: ClientKind,
        script: &str,
        args: &[String],
        netns: &str,
    ) -> Result<Client> {
        Client::start_full(ctx, kind, script, args, &[], Some(netns))
    }

    fn start_full(
        ctx: &Ctx,
        kind: ClientKind,
        script: &str,
        args: &[String],
        env: &[(&str, &str)],
        netns: Option<&str>,
    ) -> Result<Client> {
        let (program, dir) = match kind {
            ClientKind::Browser => {
                chromium_path()?;
                (node_bin()?, repo_root().join("tests/js"))
            }
            ClientKind::Aiortc => (python_bin()?, repo_root().join("tests/py")),
        };
        let script_path = dir.join(script);
        if !script_path.is_file() {
            bail!("test client {} is missing", script_path.display());
        }
        let stem = script.split('.').next().unwrap_or(script);
        let label = format!(
            "{stem}#{}",
            ctx.path("")
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("?")
                .trim_end_matches('-')
        );
        let stdout_log = ctx.path(&format!("{stem}.stdout.log"));
        let stderr_log = ctx.path(&format!("{stem}.stderr.log"));
        let stderr = File::create(&stderr_log)
            .with_context(|| format!("cannot create {}", stderr_log.display()))?;
        let mut cmd = match netns {
            // `ip netns exec` execs the program: same pid and process group.
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&program);
                c
            }
            None => Command::new(&program),
        };
        if kind == ClientKind::Browser {
            // Chromium's profile goes in the test's scratch directory (tests/js/common.mjs), and
            // is removed with it even when the page process dies before it closes the browser.
            cmd.env("HALLCAST_PROFILE_PARENT", ctx.dir());
        }
        if kind == ClientKind::Aiortc {
            // Unbuffered, so progress lines arrive when printed.
            cmd.arg("-u");
        }
        cmd.arg(&script_path)
            .args(args)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .envs(env.iter().copied());
        ctx.register_log(&format!("{label} stderr"), &stderr_log);
        ctx.register_log(&format!("{label} stdout"), &stdout_log);
        let mut proc = Proc::spawn(&mut cmd, true)?;
        let stdout = proc
            .take_stdout()
            .context("client stdout was not captured")?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        let mut copy = File::create(&stdout_log)
            .with_context(|| format!("cannot create {}", stdout_log.display()))?;
        let reader = thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
                let _ = writeln!(copy, "{line}");
                let value = serde_json::from_str::<Value>(&line)
                    .unwrap_or_else(|_| serde_json::json!({ "event": "text", "text": line }));
                sink.lock().unwrap_or_else(|p| p.into_inner()).push(value);
            }
        });
        Ok(Client {
            label,
            proc,
            lines,
            reader: Some(reader),
            cursor: 0,
            stderr_log,
        })
    }

    /// Every event printed so far.
    pub fn events(&self) -> Vec<Value> {
        self.lines.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The last event named `name` printed so far.
    pub fn last(&self, name: &str) -> Option<Value> {
        self.events().into_iter().rev().find(|v| v["event"] == name)
    }

    /// Waits until an event not yet consumed by an earlier `wait_for` satisfies `pred`; returns it
    /// and consumes everything up to it. Fails on timeout, on an `error` event, or if the client
    /// exits first, with what it printed.
    pub fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let events = self.events();
            for (i, ev) in events.iter().enumerate().skip(self.cursor) {
                if ev["event"] == "error" {
                    bail!(
                        "{} reported an error while waiting for {what}: {}",
                        self.label,
                        ev["message"]
                    );
                }
                if pred(ev) {
                    self.cursor = i + 1;
                    return Ok(ev.clone());
                }
            }
            self.cursor = self.cursor.max(events.len());
            let exited = self.proc.try_wait()?;
            if let Some(status) = exited {
                // Let the reader drain what was printed last.
                self.join_reader();
                let events = self.events();
                if let Some((i, ev)) = events
                    .iter()
                    .enumerate()
                    .skip(self.cursor)
                    .find(|(_, ev)| pred(ev))
                {
                    self.cursor = i + 1;
                    return Ok(ev.clone());
                }
                bail!(
                    "{} exited ({status}) before {what}; last output: {}\nstderr:\n{}",
                    self.label,
                    last_events(&events, 5),
                    tail(&self.stderr_log, 25).join("\n")
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "timed out after {timeout:?} waiting for {what} from {}; last output: {}",
                    self.label,
                    last_events(&events, 5)
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits up to `timeout` for the client to end by itself (stopping it after that), then
    /// returns its `result` event.
    pub fn result(&mut self, timeout: Duration) -> Result<Value> {
        if self.proc.wait_timeout(timeout)?.is_none() {
            self.proc.terminate(Duration::from_secs(15));
        }
        self.take_result()
    }

    /// Stops the client now (SIGTERM: it reports and cleans up) and returns its `result` event.
    pub fn stop(&mut self) -> Result<Value> {
        self.proc.terminate(Duration::from_secs(15));
        self.take_result()
    }

    /// Kills the client with SIGKILL (its whole process group): it neither reports nor
    /// DELETEs its session, as when a viewer's machine loses power.
    pub fn kill(&mut self) {
        self.proc.kill();
        self.join_reader();
    }

    /// The client's process id (the leader of its process group).
    pub fn pid(&self) -> u32 {
        self.proc.id()
    }

    fn take_result(&mut self) -> Result<Value> {
        self.join_reader();
        let events = self.events();
        if let Some(err) = events.iter().find(|v| v["event"] == "error") {
            bail!("{} reported an error: {}", self.label, err["message"]);
        }
        match events.iter().rev().find(|v| v["event"] == "result") {
            Some(result) => Ok(result.clone()),
            None => bail!(
                "{} printed no result; last output: {}\nstderr:\n{}",
                self.label,
                last_events(&events, 5),
                tail(&self.stderr_log, 25).join("\n")
            ),
        }
    }

    fn join_reader(&mut self) {
        if let Some(reader) = self.reader.take() {
            // The reader ends at EOF; if a grandchild still holds stdout open, do not hang on it.
            let deadline = Instant::now() + Duration::from_secs(5);
            while !reader.is_finished() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(20));
            }
            if reader.is_finished() {
                let _ = reader.join();
            }
        }
    }
}

fn last_events(events: &[Value], n: usize) -> String {
    if events.is_empty() {
        return "(nothing)".to_string();
    }
    events[events.len().saturating_sub(n)..]
        .iter()
        .map(|v| {
            let mut s = v.to_string();
            if s.len() > 600 {
                // At a character boundary: the events carry Vietnamese text.
                let mut end = 600;
                while !s.is_char_boundary(end) {
                    end -= 1;
                }
                s.truncate(end);
                s.push('…');
            }
            s
        })
        .collect::<Vec<_>>()
        .join("\n  ")
}
