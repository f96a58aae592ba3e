//! A child process that is always stopped: SIGTERM, a grace period, then SIGKILL.

use std::process::{Child, Command, ExitStatus};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// A spawned child, stopped on drop. Started in its own process group, so that what it starts
/// (Chromium under Node) can be stopped with it, by that group's id.
pub struct Proc {
    child: Child,
    kill_group: bool,
    done: bool,
}

impl Proc {
    pub fn spawn(cmd: &mut Command, kill_group: bool) -> Result<Proc> {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {cmd:?}"))?;
        Ok(Proc {
            child,
            kill_group,
            done: false,
        })
    }

    pub fn take_stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.child.stdout.take()
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        let status = self.child.try_wait()?;
        if status.is_some() {
            self.reap_group();
        }
        Ok(status)
    }

    /// Waits up to `timeout` for the process to exit by itself.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, up to `grace` to exit, then SIGKILL (to the whole group for clients).
    pub fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        if let Ok(Some(status)) = self.try_wait() {
            return Some(status);
        }
        signal(&self.child.id().to_string(), "TERM");
        if let Ok(Some(status)) = self.wait_timeout(grace) {
            return Some(status);
        }
        if self.kill_group {
            signal(&format!("-{}", self.child.id()), "KILL");
        }
        let _ = self.child.kill();
        let status = self.child.wait().ok();
        self.reap_group();
        status
    }

    /// SIGTERM only (no wait, no SIGKILL): what an orchestrator sends first.
    pub(crate) fn sigterm(&mut self) {
        if let Ok(None) = self.try_wait() {
            signal(&self.child.id().to_string(), "TERM");
        }
    }

    /// SIGKILL now, no grace (to the whole group for clients): a crash as the others see it.
    pub fn kill(&mut self) -> Option<ExitStatus> {
        if let Ok(Some(status)) = self.try_wait() {
            return Some(status);
        }
        if self.kill_group {
            signal(&format!("-{}", self.child.id()), "KILL");
        }
        let _ = self.child.kill();
        let status = self.child.wait().ok();
        self.reap_group();
        status
    }

    /// After the leader exited: whatever is left of its group (a browser whose driver died) goes too.
    fn reap_group(&mut self) {
        if self.kill_group && !self.done {
            self.done = true;
            signal(&format!("-{}", self.child.id()), "KILL");
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.terminate(Duration::from_secs(5));
    }
}

/// `kill -SIG target` through the shell's builtin (no procps needed, no unsafe code).
fn signal(target: &str, sig: &str) {
    let _ = Command::new("sh")
        .args(["-c", &format!("kill -{sig} {target} 2>/dev/null")])
        .status();
}
