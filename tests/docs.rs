//! The docs' command examples, run: every fenced ```sh block of README.md and docs/**/*.md that
//! the line `<!-- doc-test -->` directly precedes is a runnable example. Each one runs with
//! `bash -euo pipefail` from the repository root, the build's `debug/` directory (of
//! `$CARGO_TARGET_DIR`, else of the target directory this test was built in) first on PATH, within
//! 120 s; it must exit 0 and leave no process of its own behind. A failure names the file and the
//! line of the block's opening fence and shows what the block printed.
//!
//! Blocks must be self-contained: start and stop what they need, on 127.0.0.1 and free ports
//! (port 0), in scratch directories they remove. `cargo build -p hallcast` first (scripts/test.sh
//! does): the examples call the `hallcast` binary.
//!
//! The extractor and the runner are tested here too, on inline markdown: marked and unmarked
//! blocks, a marker that does not precede a sh block, a failing block (reported with its line), a
//! block that overruns its time and one that leaves a process behind.

use std::fs;
use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The line that marks the next block as runnable.
const MARKER: &str = "<!-- doc-test -->";
/// How long one block may take.
const BLOCK_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a block's processes may take to go away after it exits (a `kill` it sent last).
const LEFTOVER_GRACE: Duration = Duration::from_secs(3);
/// Most of a failing block's output shown (its end, where the error is).
const OUTPUT_SHOWN: usize = 6000;

/// The repository root: the parent of this test crate's directory (taken from this file's own
/// build, so a test binary built in another checkout reads that checkout's docs).
fn repo_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

/// One runnable example.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Block {
    /// The file, as shown in messages (relative to the repository root).
    file: String,
    /// 1-based line of the block's opening fence.
    line: usize,
    /// The commands, without the fences.
    code: String,
}

impl Block {
    fn place(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }
}

/// The marked blocks of one markdown text. A marker that is not directly followed by a ```sh
/// fence, and a marked block that is never closed, are errors (a typo must not silently turn an
/// example off).
fn extract(file: &str, text: &str) -> Result<Vec<Block>, String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut blocks = Vec::new();
    let mut i = 0;
    let mut in_fence = false;
    while i < lines.len() {
        let trimmed = lines[i].trim();
        if trimmed.starts_with("```") {
            // Fences of unmarked blocks are skipped whole: a marker quoted inside one is text.
            in_fence = !in_fence;
            i += 1;
            continue;
        }
        if in_fence || trimmed != MARKER {
            i += 1;
            continue;
        }
        let fence_line = i + 1;
        let fence = lines.get(fence_line).map(|l| l.trim_end());
        if fence != Some("```sh") {
            return Err(format!(
                "{file}:{}: `{MARKER}` must be directly followed by a ```sh fence (found {:?})",
                i + 1,
                fence.unwrap_or("the end of the file")
            ));
        }
        let mut code = String::new();
        let mut j = fence_line + 1;
        loop {
            match lines.get(j) {
                None => {
                    return Err(format!(
                        "{file}:{}: the marked ```sh block is never closed",
                        fence_line + 1
                    ));
                }
                Some(l) if l.trim() == "```" => break,
                Some(l) => {
                    code.push_str(l);
                    code.push('\n');
                }
            }
            j += 1;
        }
        blocks.push(Block {
            file: file.to_owned(),
            line: fence_line + 1,
            code,
        });
        i = j + 1;
    }
    Ok(blocks)
}

/// README.md and every docs/**/*.md, sorted.
fn markdown_files(root: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "md") {
                out.push(p);
            }
        }
    }
    let mut files = vec![root.join("README.md")];
    let mut docs = Vec::new();
    walk(&root.join("docs"), &mut docs);
    docs.sort();
    files.extend(docs);
    files
}

/// The build's `debug/` directory: `$CARGO_TARGET_DIR/debug` (relative to the repository root
/// when relative), else `debug/` of the target directory this test executable was built in
/// (`<target>/debug/deps/docs-<hash>`), else the repository's `target/debug`.
fn target_debug_dir(root: &Path) -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        let dir = if dir.is_absolute() {
            dir
        } else {
            root.join(dir)
        };
        return dir.join("debug");
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.join("debug")))
        .filter(|d| d.is_dir())
        .unwrap_or_else(|| root.join("target").join("debug"))
}

/// How the blocks run.
struct Runner {
    root: PathBuf,
    /// PATH for the blocks: the build's debug/ directory first.
    path: String,
    timeout: Duration,
    /// Scratch directory for scripts and outputs.
    scratch: PathBuf,
}

impl Runner {
    fn new(root: &Path, bin_dir: &Path, timeout: Duration) -> Runner {
        let old = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into());
        static N_RUNNERS: AtomicUsize = AtomicUsize::new(0);
        let scratch = std::env::temp_dir().join(format!(
            "hallcast-docs-{}-{}",
            std::process::id(),
            N_RUNNERS.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&scratch).expect("a scratch directory in the temp dir");
        Runner {
            root: root.to_path_buf(),
            path: format!("{}:{old}", bin_dir.display()),
            timeout,
            scratch,
        }
    }

    /// Runs one block: `Ok(seconds)`, or why it failed with what it printed.
    fn run(&self, n: usize, block: &Block) -> Result<f64, String> {
        let script = self.scratch.join(format!("block-{n}.sh"));
        let output = self.scratch.join(format!("block-{n}.out"));
        let mut f = fs::File::create(&script).map_err(|e| format!("{}: {e}", script.display()))?;
        f.write_all(block.code.as_bytes())
            .map_err(|e| format!("{}: {e}", script.display()))?;
        drop(f);
        let out = fs::File::create(&output).map_err(|e| format!("{}: {e}", output.display()))?;
        let err = out
            .try_clone()
            .map_err(|e| format!("{}: {e}", output.display()))?;
        let started = Instant::now();
        // Output goes to a file, not a pipe: a process the block left running must not keep the
        // runner waiting for an end of file. Its own process group: the runner can find and end
        // whatever the block started.
        let mut child = Command::new("bash")
            .args(["-euo", "pipefail"])
            .arg(&script)
            .current_dir(&self.root)
            .env("PATH", &self.path)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("{}: cannot start bash: {e}", block.place()))?;
        let pgid = child.id();
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break Some(s),
                Ok(None) if started.elapsed() >= self.timeout => break None,
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                Err(e) => return Err(format!("{}: waiting for bash: {e}", block.place())),
            }
        };
        let took = started.elapsed().as_secs_f64();
        let shown = || tail(&fs::read_to_string(&output).unwrap_or_default());
        let Some(status) = status else {
            kill_group(pgid);
            let _ = child.wait();
            return Err(format!(
                "{}: did not finish within {} s (its processes were killed). Its output:\n{}",
                block.place(),
                self.timeout.as_secs(),
                shown()
            ));
        };
        // What the block started must be gone (it stops what it starts).
        let deadline = Instant::now() + LEFTOVER_GRACE;
        let mut left = group_members(pgid);
        while !left.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            left = group_members(pgid);
        }
        if !left.is_empty() {
            kill_group(pgid);
        }
        if !status.success() {
            return Err(format!(
                "{}: failed ({status}) after {took:.1} s. Its output:\n{}",
                block.place(),
                shown()
            ));
        }
        if !left.is_empty() {
            return Err(format!(
                "{}: exited 0 but left processes running (now killed): {}. Its output:\n{}",
                block.place(),
                left.join(", "),
                shown()
            ));
        }
        Ok(took)
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.scratch);
    }
}

/// The last [`OUTPUT_SHOWN`] bytes of a block's output (at a character boundary).
fn tail(s: &str) -> String {
    if s.len() <= OUTPUT_SHOWN {
        return s.to_owned();
    }
    let mut start = s.len() - OUTPUT_SHOWN;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("[… {} bytes before]\n{}", start, &s[start..])
}

/// Live processes (not zombies) of process group `pgid`, as "pid command".
fn group_members(pgid: u32) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses.
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let comm = stat
            .find('(')
            .map_or("?", |open| &stat[open + 1..close.max(open + 1)]);
        let mut rest = stat[close + 1..].split_whitespace();
        let state = rest.next().unwrap_or("");
        let _ppid = rest.next();
        let pgrp = rest.next().and_then(|p| p.parse::<u32>().ok());
        if pgrp == Some(pgid) && state != "Z" && state != "X" {
            out.push(format!("{pid} {comm}"));
        }
    }
    out
}

/// SIGKILL to the whole group (through the shell's `kill`: no unsafe code, no procps).
fn kill_group(pgid: u32) {
    let _ = Command::new("sh")
        .arg("-c")
        .arg(format!("kill -KILL -{pgid} 2>/dev/null"))
        .status();
}

#[test]
fn the_docs_command_examples_run() {
    let root = repo_root();
    let bin_dir = target_debug_dir(&root);
    assert!(
        bin_dir.join("hallcast").is_file(),
        "{} has no hallcast binary: the examples run it. Build it first with `cargo build -p \
         hallcast` (scripts/test.sh does)",
        bin_dir.display()
    );
    let mut blocks = Vec::new();
    let mut errors = Vec::new();
    for path in markdown_files(&root) {
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                errors.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        let shown = path
            .strip_prefix(&root)
            .unwrap_or(&path)
            .display()
            .to_string();
        match extract(&shown, &text) {
            Ok(b) => blocks.extend(b),
            Err(e) => errors.push(e),
        }
    }
    assert!(
        !blocks.is_empty(),
        "no `{MARKER}` block was found in README.md or docs/: nothing was checked"
    );
    let runner = Runner::new(&root, &bin_dir, BLOCK_TIMEOUT);
    for (n, block) in blocks.iter().enumerate() {
        match runner.run(n, block) {
            Ok(took) => eprintln!("ok   {} ({took:.1} s)", block.place()),
            Err(e) => {
                eprintln!("FAIL {}", block.place());
                errors.push(e);
            }
        }
    }
    assert!(
        errors.is_empty(),
        "{} of {} doc examples failed (PATH starts with {}):\n\n{}",
        errors.len(),
        blocks.len(),
        bin_dir.display(),
        errors.join("\n\n")
    );
}

const SAMPLE: &str = "\
# Title

```sh
echo not marked
```

<!-- doc-test -->
```sh
echo first
echo second
```

Some text.

```text
<!-- doc-test -->
quoted inside a fence: not a marker
```

<!-- doc-test -->
```sh
echo before the failure
false
echo never printed
```
";

#[test]
fn the_extractor_takes_only_marked_sh_blocks_with_their_lines() {
    let blocks = extract("sample.md", SAMPLE).expect("the sample parses");
    assert_eq!(
        blocks,
        vec![
            Block {
                file: "sample.md".into(),
                line: 8,
                code: "echo first\necho second\n".into(),
            },
            Block {
                file: "sample.md".into(),
                line: 21,
                code: "echo before the failure\nfalse\necho never printed\n".into(),
            },
        ]
    );
}

#[test]
fn the_extractor_refuses_a_marker_without_a_sh_block_and_an_open_block() {
    let e = extract("a.md", "text\n<!-- doc-test -->\n\n```sh\necho hi\n```\n").unwrap_err();
    assert!(e.starts_with("a.md:2: "), "{e}");
    let e = extract("b.md", "<!-- doc-test -->\n```bash\necho hi\n```\n").unwrap_err();
    assert!(e.starts_with("b.md:1: "), "{e}");
    let e = extract("c.md", "<!-- doc-test -->\n```sh\necho hi\n").unwrap_err();
    assert!(e.starts_with("c.md:2: "), "{e}");
    assert!(e.contains("never closed"), "{e}");
}

fn sample_runner(timeout: Duration) -> Runner {
    let root = repo_root();
    Runner::new(&root, &target_debug_dir(&root), timeout)
}

#[test]
fn a_failing_block_is_reported_with_its_file_line_and_output() {
    let blocks = extract("sample.md", SAMPLE).expect("the sample parses");
    let runner = sample_runner(Duration::from_secs(20));
    runner.run(0, &blocks[0]).expect("the first block passes");
    let e = runner.run(1, &blocks[1]).unwrap_err();
    assert!(e.starts_with("sample.md:21: failed"), "{e}");
    assert!(e.contains("before the failure"), "{e}");
    assert!(!e.contains("never printed"), "set -e stops at `false`: {e}");
    // pipefail: a failure inside a pipeline fails the block.
    let piped = Block {
        file: "p.md".into(),
        line: 3,
        code: "false | cat\n".into(),
    };
    assert!(
        runner
            .run(2, &piped)
            .unwrap_err()
            .starts_with("p.md:3: failed")
    );
    // -u: an unset variable fails the block.
    let unset = Block {
        file: "u.md".into(),
        line: 4,
        code: "echo \"$NO_SUCH_VARIABLE_HERE\"\n".into(),
    };
    assert!(
        runner
            .run(3, &unset)
            .unwrap_err()
            .starts_with("u.md:4: failed")
    );
}

#[test]
fn a_block_runs_from_the_repository_root_with_the_build_first_on_path() {
    let root = repo_root();
    let runner = sample_runner(Duration::from_secs(20));
    let bin_dir = target_debug_dir(&root);
    let check = Block {
        file: "w.md".into(),
        line: 1,
        code: format!(
            "test \"$PWD\" = {:?}\ntest \"${{PATH%%:*}}\" = {:?}\ntest -f README.md\n",
            root.display().to_string(),
            bin_dir.display().to_string()
        ),
    };
    runner.run(0, &check).expect("cwd and PATH as documented");
}

#[test]
fn a_block_that_overruns_is_killed_and_reported() {
    let runner = sample_runner(Duration::from_secs(1));
    let slow = Block {
        file: "slow.md".into(),
        line: 9,
        code: "echo started\nsleep 30\n".into(),
    };
    let started = Instant::now();
    let e = runner.run(0, &slow).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10), "{e}");
    assert!(e.starts_with("slow.md:9: did not finish within 1 s"), "{e}");
    assert!(e.contains("started"), "{e}");
}

#[test]
fn a_block_that_leaves_a_process_behind_fails_and_the_process_is_ended() {
    let runner = sample_runner(Duration::from_secs(20));
    let pid_file =
        std::env::temp_dir().join(format!("hallcast-docs-leak-{}.pid", std::process::id()));
    let leaky = Block {
        file: "leak.md".into(),
        line: 5,
        code: format!(
            "sleep 300 &\necho \"$!\" > {:?}\n",
            pid_file.display().to_string()
        ),
    };
    let e = runner.run(0, &leaky).unwrap_err();
    assert!(
        e.starts_with("leak.md:5: exited 0 but left processes running"),
        "{e}"
    );
    assert!(e.contains("sleep"), "{e}");
    let pid = fs::read_to_string(&pid_file).unwrap_or_default();
    let _ = fs::remove_file(&pid_file);
    let pid: u32 = pid.trim().parse().expect("the block wrote its child's pid");
    std::thread::sleep(Duration::from_millis(300));
    let alive = fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z"))
        .unwrap_or(false);
    assert!(!alive, "the left-over sleep {pid} was not ended");
}
