//! One test's scratch space and the process-wide lock for heavy tests.

use std::cell::RefCell;
use std::fs;
use std::io::{BufRead, BufReader};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};

/// How much of the machine a test takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Weight {
    /// Starts browsers, encoders or decoders: runs alone (the machine has 2 cores, and the relay
    /// under test must keep its share).
    Heavy,
    /// A relay with no media and a few HTTP requests: may run beside anything.
    Light,
}

static HEAVY: Mutex<()> = Mutex::new(());
static N_DIRS: AtomicU32 = AtomicU32::new(0);

/// What a running test owns: a scratch directory and the logs to show if it fails.
pub struct Ctx {
    name: String,
    dir: PathBuf,
    logs: RefCell<Vec<(String, PathBuf)>>,
    started: Instant,
}

impl Ctx {
    fn new(name: &str) -> Result<Ctx> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "hallcast-e2e-{}-{}-{}-{nanos:x}",
            name.replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
            std::process::id(),
            N_DIRS.fetch_add(1, Ordering::Relaxed),
        ));
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Ctx {
            name: name.to_string(),
            dir,
            logs: RefCell::new(Vec::new()),
            started: Instant::now(),
        })
    }

    /// The test's scratch directory (removed when the test ends; kept with
    /// `HALLCAST_KEEP_TMP=1`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A fresh path in the scratch directory; `stem` keeps it readable.
    pub fn path(&self, stem: &str) -> PathBuf {
        let n = N_DIRS.fetch_add(1, Ordering::Relaxed);
        self.dir.join(format!("{n:03}-{stem}"))
    }

    /// Registers a log file to print if the test fails.
    pub fn register_log(&self, label: &str, path: &Path) {
        self.logs
            .borrow_mut()
            .push((label.to_string(), path.to_path_buf()));
    }

    /// Seconds since the test started, for messages.
    pub fn elapsed_s(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// The logs were printed; the directory stays only with `HALLCAST_KEEP_TMP=1`.
    fn clean_up_after_failure(&self) {
        if std::env::var_os("HALLCAST_KEEP_TMP").is_some_and(|v| v == "1") {
            eprintln!("(kept {} because HALLCAST_KEEP_TMP=1)", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }

    /// Prints why the test failed first (a CI log that keeps only the head of the output still
    /// shows it), then the registered logs.
    fn dump_logs(&self, why: &str) {
        eprintln!(
            "==== test {} failed after {:.1} s: {why}\n==== logs follow ====",
            self.name,
            self.elapsed_s()
        );
        for (label, path) in self.logs.borrow().iter() {
            let lines = tail(path, 80);
            eprintln!(
                "---- {label} ({}; last {} lines) ----",
                path.display(),
                lines.len()
            );
            for line in lines {
                eprintln!("{line}");
            }
        }
        eprintln!("==== end of logs of {} ====", self.name);
    }
}

/// The last `n` lines of a file (empty if it cannot be read).
pub(crate) fn tail(path: &Path, n: usize) -> Vec<String> {
    let Ok(file) = fs::File::open(path) else {
        return Vec::new();
    };
    let mut lines: Vec<String> = BufReader::new(file).lines().map_while(|l| l.ok()).collect();
    if lines.len() > n {
        lines.drain(..lines.len() - n);
    }
    lines
}

/// Runs one test body with a scratch directory; heavy tests hold the process-wide lock. On
/// failure (an `Err` or a panic) the registered logs are printed, then the test fails with the
/// error. Everything the body started (relays, clients) is stopped by their `Drop` when the
/// body returns.
pub fn run(name: &str, weight: Weight, body: impl FnOnce(&Ctx) -> Result<()>) {
    let _guard = match weight {
        // A panicking heavy test poisons the lock; the next test may still run.
        Weight::Heavy => Some(
            HEAVY
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        ),
        Weight::Light => None,
    };
    let ctx = match Ctx::new(name) {
        Ok(ctx) => ctx,
        Err(e) => panic!("{e:#}"),
    };
    let outcome = catch_unwind(AssertUnwindSafe(|| body(&ctx)));
    match outcome {
        Ok(Ok(())) => {
            if std::env::var_os("HALLCAST_KEEP_TMP").is_some_and(|v| v == "1") {
                eprintln!("(kept {} because HALLCAST_KEEP_TMP=1)", ctx.dir.display());
            } else {
                let _ = fs::remove_dir_all(&ctx.dir);
            }
        }
        Ok(Err(e)) => {
            ctx.dump_logs(&format!("{e:#}"));
            ctx.clean_up_after_failure();
            panic!("{name}: {e:#}");
        }
        Err(panic) => {
            let why = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("a panic without a message");
            ctx.dump_logs(why);
            ctx.clean_up_after_failure();
            resume_unwind(panic);
        }
    }
}
