// A waiting viewer page's first frame after the hall goes live. Per round: `hallcast demo
// --no-source` (RELAY, on loopback), the viewer page opened in headless Chromium until it shows
// "waiting", a further random 0-2 s (where a page's retry cycle stands when the hall goes live is
// not up to it), then a WHIP publisher (`hallcast-load publish`, LOAD); prints the time from the
// publisher's start to the page's first decoded frame (the page's requestVideoFrameCallback,
// converted to wall time).
//
//   node benches/e2e/waiting_page.mjs --relay target/release/hallcast \
//     --load target/release/hallcast-load --rounds 5
//
// Run from the repository root after `npm ci` in tests/js (playwright-core) and with Chromium
// installed (scripts/install-test-deps.sh). Output: one JSON line per round, then a summary line.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { launchBrowser, parseArgs, emit, run } from '../../tests/js/common.mjs';

const USAGE = 'node benches/e2e/waiting_page.mjs --relay BIN --load BIN [--rounds N] [--port P]';
const args = parseArgs({ relay: '', load: '', rounds: 5, port: 18100 }, USAGE);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitFile(path, ms) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (existsSync(path) && readFileSync(path, 'utf8').trim()) return JSON.parse(readFileSync(path, 'utf8'));
    await sleep(50);
  }
  throw new Error(`no ${path}`);
}

run(async () => {
  if (!args.relay || !args.load) {
    process.stderr.write(USAGE + '\n');
    return 2;
  }
  const { context, close } = await launchBrowser();
  const results = [];
  try {
    for (let r = 1; r <= Number(args.rounds); r++) {
      const dir = mkdtempSync(join(tmpdir(), 'hallcast-waiting-'));
      const http = `127.0.0.1:${args.port}`;
      const relay = spawn(args.relay, ['demo', '--no-source', '--http', http, '--media', `127.0.0.1:${Number(args.port) + 1}`,
        '--data-dir', join(dir, 'data'), '--info-file', join(dir, 'info.json')], { stdio: 'ignore' });
      let publisher = null;
      const page = await context.newPage();
      try {
        const info = await waitFile(join(dir, 'info.json'), 20_000);
        await page.goto(info.viewer_url);
        await page.waitForFunction(() => window.hallcast && window.hallcast.state === 'waiting', null, { timeout: 30_000 });
        await sleep(Math.random() * 2000);
        await page.evaluate(() => {
          window.__firstFrameWall = null;
          const v = document.querySelector('video');
          v.requestVideoFrameCallback(() => {
            window.__firstFrameWall = Date.now();
          });
        });
        const started = Date.now();
        publisher = spawn(args.load, ['publish', '--whip', info.whip_url, '--key', info.stream_key, '--duration', '20'], { stdio: 'ignore' });
        await page.waitForFunction(() => window.__firstFrameWall !== null, null, { timeout: 30_000, polling: 20 });
        const firstFrame = await page.evaluate(() => window.__firstFrameWall);
        const row = { round: r, first_frame_ms: firstFrame - started };
        results.push(row);
        emit(row);
      } finally {
        await page.close().catch(() => {});
        if (publisher) publisher.kill('SIGTERM');
        relay.kill('SIGTERM');
        await sleep(500);
        rmSync(dir, { recursive: true, force: true });
      }
    }
  } finally {
    await close();
  }
  const ms = results.map((x) => x.first_frame_ms).sort((a, b) => a - b);
  emit({ summary: true, relay: args.relay, rounds: ms.length, first_frame_ms: ms, median: ms[Math.floor(ms.length / 2)] });
  return 0;
});
