#!/usr/bin/env node
// One connection point's viewer page that takes part in a roll call (điểm danh): it opens its
// join link (following the relay's redirects, e.g. to its organisation's edge), plays, waits for
// the roll call prompt (started by the test through the admin API) and answers it.
//
// stdout (JSON lines):
//   {"event":"live", origin, wall_ms}             the page plays (origin: the relay that served it)
//   {"event":"prompt", id, wall_ms, text}         the prompt is shown
//   {"event":"result", origin, rollcall_id, state, answered_ms, page_errors, screenshot?}

import { emit, launchBrowser, log, parseArgs, run } from './common.mjs';

const USAGE = 'usage: rollcall_point.mjs --url JOIN_LINK [--people 9] [--timeout 120] [--screenshot FILE.png]';
const args = parseArgs({ url: '', people: 9, timeout: 120, screenshot: '' }, USAGE);

run(async () => {
  if (!args.url) throw new Error(USAGE);
  const { context, close } = await launchBrowser();
  const errors = [];
  try {
    const page = await context.newPage();
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(args.url);
    await page.waitForFunction(() => window.hallcast && window.hallcast.state === 'live', null, {
      timeout: 60_000,
    });
    const origin = await page.evaluate(() => location.origin);
    emit({ event: 'live', origin, wall_ms: Date.now() });
    await page.waitForFunction(
      () =>
        window.hallcast.rollcall &&
        window.hallcast.rollcall.state === 'open' &&
        !document.getElementById('rollcall').hidden,
      null,
      { timeout: args.timeout * 1000 },
    );
    const id = await page.evaluate(() => window.hallcast.rollcall.id);
    const text = await page.evaluate(() => document.getElementById('rollcall').innerText);
    emit({ event: 'prompt', id, wall_ms: Date.now(), text });
    if (args.screenshot) await page.screenshot({ path: args.screenshot }).catch((e) => log('screenshot:', e.message));
    await page.fill('#rollcall-input', String(args.people));
    await page.click('#rollcall button[type=submit]');
    await page.waitForFunction(() => ['answered', 'expired'].includes(window.hallcast.rollcall.state), null, {
      timeout: 20_000,
    });
    const state = await page.evaluate(() => window.hallcast.rollcall.state);
    emit({ event: 'result', origin, rollcall_id: id, state, answered_ms: Date.now(), page_errors: errors });
    return 0;
  } finally {
    await close();
  }
});
