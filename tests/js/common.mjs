// Shared plumbing for hallcast's browser test clients: argument parsing, JSON-lines output, and a
// headless Chromium launched with the flags that work on the test machines (docs: TESTING.md).
//
// Every script prints one JSON object per line on stdout (`{"event": ...}`) and logs to stderr,
// so the Rust harness can follow progress and read the final `{"event":"result"}` line.

import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Parses `--name value` / `--flag` arguments against a table of defaults (types follow the defaults). */
export function parseArgs(defaults, usage) {
  const out = { ...defaults };
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--help' || arg === '-h') {
      process.stderr.write(usage + '\n');
      process.exit(0);
    }
    if (!arg.startsWith('--')) fail(`unexpected argument ${arg}\n${usage}`);
    const key = arg.slice(2).replace(/-/g, '_');
    if (!(key in defaults)) fail(`unknown option ${arg}\n${usage}`);
    if (typeof defaults[key] === 'boolean') {
      out[key] = true;
      continue;
    }
    const value = argv[++i];
    if (value === undefined) fail(`option ${arg} needs a value`);
    if (typeof defaults[key] === 'number') {
      out[key] = Number(value);
      if (!Number.isFinite(out[key])) fail(`option ${arg} needs a number, got ${value}`);
    } else {
      out[key] = value;
    }
  }
  return out;
}

export function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

export function log(...parts) {
  process.stderr.write(`[${new Date().toISOString()}] ${parts.join(' ')}\n`);
}

export function fail(message) {
  emit({ event: 'error', message });
  process.stderr.write(message + '\n');
  process.exit(2);
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** The Chromium binary: $HALLCAST_CHROMIUM, else Debian's /usr/bin/chromium. */
export function chromiumPath() {
  const path = process.env.HALLCAST_CHROMIUM || '/usr/bin/chromium';
  if (!existsSync(path)) {
    fail(`Chromium not found at ${path}: run scripts/install-test-deps.sh (apt-get install chromium) or set HALLCAST_CHROMIUM`);
  }
  return path;
}

export const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-default-apps',
  '--disable-extensions',
  '--mute-audio',
  '--use-fake-device-for-media-stream=fps=30',
  '--use-fake-ui-for-media-stream',
  '--autoplay-policy=no-user-gesture-required',
  // Without this Chromium gathers no 127.x host candidates.
  '--allow-loopback-in-peer-connection',
  // Plain host candidates instead of .local mDNS names.
  '--disable-features=WebRtcHideLocalIpsWithMdns',
  // Background tabs must keep decoding at full rate: several viewer pages share one browser.
  '--disable-background-timer-throttling',
  '--disable-renderer-backgrounding',
  '--disable-backgrounding-occluded-windows',
];

/**
 * Launches Chromium with a fresh user-data-dir (removed again by `close`; in
 * `HALLCAST_PROFILE_PARENT`, the test's scratch directory, when the harness sets it). Returns
 * `{ context, close }`. SIGTERM/SIGINT call `onSignal` (if given) and then close the browser.
 */
export async function launchBrowser({ onSignal, extraArgs = [] } = {}) {
  const executablePath = chromiumPath();
  let chromium;
  try {
    ({ chromium } = await import('playwright-core'));
  } catch (e) {
    fail(`playwright-core is not installed in tests/js (run scripts/install-test-deps.sh, or npm ci in tests/js): ${e.message}`);
  }
  // In the test's own scratch directory when the harness names it (tests/src/client.rs), so
  // a profile goes with that directory even when this process is killed before `close` runs.
  const userDataDir = mkdtempSync(
    join(process.env.HALLCAST_PROFILE_PARENT || tmpdir(), 'hallcast-chromium-'),
  );
  let context;
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath,
      headless: true,
      args: [...CHROMIUM_FLAGS, ...extraArgs],
      viewport: { width: 1280, height: 720 },
      handleSIGINT: false,
      handleSIGTERM: false,
      handleSIGHUP: false,
      timeout: 60_000,
    });
  } catch (e) {
    rmSync(userDataDir, { recursive: true, force: true });
    fail(`could not launch Chromium (${executablePath}): ${e.message}`);
  }
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    try {
      await Promise.race([context.close(), sleep(10_000)]);
    } catch (e) {
      log('closing the browser failed:', e.message);
    }
    rmSync(userDataDir, { recursive: true, force: true });
  };
  let signalled = false;
  const onSig = async (sig) => {
    if (signalled) return;
    signalled = true;
    shuttingDown = true;
    log(`got ${sig}, shutting down`);
    try {
      if (onSignal) await onSignal(sig);
    } finally {
      await close();
      process.exit(0);
    }
  };
  process.on('SIGTERM', () => onSig('SIGTERM'));
  process.on('SIGINT', () => onSig('SIGINT'));
  return { context, close };
}

// Set once SIGTERM/SIGINT is being handled: the main loop may then fail on the closing browser,
// which is not an error (the signal handler reports and exits).
let shuttingDown = false;

/** Runs `main`, turning an exception into an `error` line and exit code 1. */
export function run(main) {
  main().then(
    (code) => {
      if (!shuttingDown) process.exit(code ?? 0);
    },
    (e) => {
      if (shuttingDown) return;
      emit({ event: 'error', message: String(e && e.stack ? e.stack : e) });
      process.stderr.write(`${e && e.stack ? e.stack : e}\n`);
      process.exit(1);
    },
  );
}

// A screenshot decoded again in a new page of `context`: its size, how many distinct colours
// (sampled) and the fraction of pixels that differ from the top-left one (a blank page has ~0).
export async function measureShot(context, path) {
  const { readFileSync } = await import('node:fs');
  const b64 = readFileSync(path).toString('base64');
  const page = await context.newPage();
  try {
    return await page.evaluate(async (src) => {
      const img = new Image();
      img.src = src;
      await img.decode();
      const c = document.createElement('canvas');
      c.width = img.naturalWidth;
      c.height = img.naturalHeight;
      const g = c.getContext('2d');
      g.drawImage(img, 0, 0);
      const d = g.getImageData(0, 0, c.width, c.height).data;
      const colours = new Set();
      let ink = 0;
      let n = 0;
      const [r0, g0, b0] = [d[0], d[1], d[2]];
      for (let i = 0; i < d.length; i += 4 * 7) {
        n++;
        colours.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
        if (Math.abs(d[i] - r0) + Math.abs(d[i + 1] - g0) + Math.abs(d[i + 2] - b0) > 30) ink++;
      }
      return { width: c.width, height: c.height, n_colours: colours.size, ink_fraction: ink / n };
    }, `data:image/png;base64,${b64}`);
  } finally {
    await page.close();
  }
}
