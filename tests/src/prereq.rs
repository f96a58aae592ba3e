//! Where the tests find what they run, and the messages they fail with when it is missing.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

const INSTALL_HINT: &str = "run scripts/install-test-deps.sh (scripts/test.sh does it for you)";

/// The workspace root (the parent of the `tests` crate).
pub fn repo_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

/// The `hallcast` binary: `$HALLCAST_BIN`, else the one cargo built next to this test binary
/// (`target/<profile>/deps/e2e-<hash>` → `target/<profile>/hallcast`).
pub fn hallcast_bin() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("HALLCAST_BIN") {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!(
                "HALLCAST_BIN points to {}, which is not a file",
                path.display()
            );
        }
        return Ok(path);
    }
    let exe = std::env::current_exe().context("cannot find the test executable's path")?;
    let mut candidates = Vec::new();
    if let Some(deps) = exe.parent() {
        if let Some(profile_dir) = deps.parent() {
            candidates.push(profile_dir.join("hallcast"));
        }
        candidates.push(deps.join("hallcast"));
    }
    for c in &candidates {
        if c.is_file() {
            return Ok(c.clone());
        }
    }
    bail!(
        "the hallcast binary was not found (looked at {}). Build it first with `cargo build -p hallcast` \
         (scripts/test.sh does), or set HALLCAST_BIN",
        candidates
            .iter()
            .map(|c| c.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// `node` from PATH (or `$HALLCAST_NODE`), with playwright-core installed in tests/js.
pub fn node_bin() -> Result<PathBuf> {
    let node = std::env::var_os("HALLCAST_NODE")
        .map(PathBuf::from)
        .unwrap_or_else(|| "node".into());
    let out = Command::new(&node).arg("--version").output().with_context(|| {
        format!("cannot run `{}`: Node.js 20 or newer is needed for the browser tests; {INSTALL_HINT}", node.display())
    })?;
    if !out.status.success() {
        bail!(
            "`{} --version` failed: {}",
            node.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let playwright = repo_root().join("tests/js/node_modules/playwright-core/package.json");
    if !playwright.is_file() {
        bail!(
            "playwright-core is not installed ({} is missing): {INSTALL_HINT}",
            playwright.display()
        );
    }
    Ok(node)
}

/// The Python with aiortc: `$HALLCAST_PYTHON`, else the venv at tests/py/.venv.
pub fn python_bin() -> Result<PathBuf> {
    let python = match std::env::var_os("HALLCAST_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => repo_root().join("tests/py/.venv/bin/python"),
    };
    if !python.is_file() {
        bail!(
            "no Python with aiortc at {}: {INSTALL_HINT}, or set HALLCAST_PYTHON",
            python.display()
        );
    }
    let out = Command::new(&python)
        .args(["-c", "import aiortc, aiohttp, numpy, av"])
        .output()
        .with_context(|| format!("cannot run {}", python.display()))?;
    if !out.status.success() {
        bail!(
            "{} cannot import aiortc/aiohttp/numpy/av: {}; {INSTALL_HINT}",
            python.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(python)
}

/// Chromium: `$HALLCAST_CHROMIUM`, else Debian's /usr/bin/chromium.
pub fn chromium_path() -> Result<PathBuf> {
    let path = std::env::var_os("HALLCAST_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/usr/bin/chromium".into());
    if !path.is_file() {
        bail!(
            "Chromium not found at {}: {INSTALL_HINT} (apt-get install chromium)",
            path.display()
        );
    }
    Ok(path)
}
