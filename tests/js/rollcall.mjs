#!/usr/bin/env node
// A roll call (điểm danh) end to end in one headless Chromium: four connection points' viewer
// pages, and the admin roll call panel (web/admin-rollcall.js) on a page of the test's own.
//
// The points, in the order given by --points (id=token,...):
//   1st answers the prompt with --people-a people;
//   2nd ignores it (its prompt must go away at the deadline; a late answer is refused);
//   3rd is disconnected: its page is closed before the roll call starts;
//   4th rejoins during the countdown: its page is closed and opened again, and the new page
//       must get the prompt (the relay sends `rollcall` at subscription) and answers with
//       --people-d people.
// The roll call is started by clicking the panel's start button on the admin dashboard's
// "Điểm danh" tab (/admin, signed in by the demo's admin_url: a cookie session).
//
// stdout (JSON lines): {"event":"step", "step": ...} as it goes, then
//   {"event":"result", rollcall_id, started_ms, deadline_ms, prompt_text, prompt_ms:{point: ms},
//    rejoin_prompt_ms, answered:{point: n}, ignored_final_state, ignored_hidden, late_status,
//    late_body, panel:{answered:[…], no_answer:[…], not_connected:[…]}, panel_people,
//    screenshots:[{name, path, width, height, distinct_colors, luma_stddev}], page_errors:[…]}

import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { emit, launchBrowser, log, parseArgs, run, sleep } from './common.mjs';

const USAGE = `usage: rollcall.mjs --base http://IP:PORT --conference ID --admin-token T
                    --points a=TOKEN,b=TOKEN,c=TOKEN,d=TOKEN --out-dir DIR
                    [--duration 30] [--people-a 12] [--people-d 7]`;

const args = parseArgs(
  { base: '', conference: '', admin_token: '', admin_url: '', points: '', out_dir: '', duration: 30, people_a: 12, people_d: 7 },
  USAGE,
);

const points = args.points.split(',').map((kv) => {
  const i = kv.indexOf('=');
  return { id: kv.slice(0, i), token: kv.slice(i + 1) };
});
if (points.length !== 4 || !args.base || !args.conference || !args.admin_token || !args.admin_url || !args.out_dir) {
  process.stderr.write(USAGE + '\n');
  process.exit(2);
}
const [pA, pB, pC, pD] = points;
const base = args.base.replace(/\/$/, '');
const conf = encodeURIComponent(args.conference);
const watchUrl = (p) => `${base}/watch/${conf}?token=${encodeURIComponent(p.token)}`;
const step = (name, extra = {}) => {
  log(`step: ${name}`);
  emit({ event: 'step', step: name, wall_ms: Date.now(), ...extra });
};

const pageErrors = [];

async function openPoint(context, p) {
  const page = await context.newPage();
  page.on('pageerror', (e) => pageErrors.push(`${p.id}: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') log(`${p.id} console: ${m.text()}`);
  });
  await page.goto(watchUrl(p));
  return page;
}

const isLive = () => window.hallcast && window.hallcast.state === 'live';
const promptOpen = () =>
  window.hallcast &&
  window.hallcast.rollcall &&
  window.hallcast.rollcall.state === 'open' &&
  !document.getElementById('rollcall').hidden;

async function adminGet(path) {
  const r = await fetch(`${base}${path}`, { headers: { Authorization: `Bearer ${args.admin_token}` } });
  if (!r.ok) throw new Error(`GET ${path} → ${r.status} ${await r.text()}`);
  return r.json();
}

/** Waits until the relay's event log has an `ended` session event of point `id`. */
async function sessionEnded(id, timeoutMs) {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    const events = await adminGet(`/api/v1/conferences/${conf}/events`);
    if (events.some((e) => e.kind === 'session' && e.change === 'ended' && e.point === id)) return true;
    await sleep(300);
  }
  return false;
}

/** Pixel statistics of a PNG, computed in a page (no image library in Node). */
async function pixelStats(page, path) {
  const src = 'data:image/png;base64,' + readFileSync(path).toString('base64');
  return page.evaluate(async (s) => {
    const img = new Image();
    img.src = s;
    await img.decode();
    const c = document.createElement('canvas');
    c.width = img.width;
    c.height = img.height;
    const g = c.getContext('2d');
    g.drawImage(img, 0, 0);
    const d = g.getImageData(0, 0, c.width, c.height).data;
    const colors = new Set();
    let sum = 0;
    let sum2 = 0;
    let n = 0;
    for (let i = 0; i < d.length; i += 4 * 5) {
      const y = d[i] * 0.299 + d[i + 1] * 0.587 + d[i + 2] * 0.114;
      sum += y;
      sum2 += y * y;
      n += 1;
      colors.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
    }
    const mean = sum / n;
    return { width: c.width, height: c.height, distinct_colors: colors.size, luma_stddev: Math.sqrt(Math.max(0, sum2 / n - mean * mean)) };
  }, src);
}

function panelLists() {
  const out = {};
  for (const col of document.querySelectorAll('#rollcall-panel .rc-col')) {
    out[col.dataset.outcome] = [...col.querySelectorAll('li[data-point]')].map((li) => li.dataset.point).sort();
  }
  out.people = (document.getElementById('rollcall-people') || {}).textContent || null;
  out.running = (document.getElementById('rollcall-current') || {}).dataset?.running || null;
  return out;
}

run(async () => {
  const { context, close } = await launchBrowser();
  const shots = [];
  const result = { event: 'result', page_errors: pageErrors, screenshots: shots, prompt_ms: {}, answered: {} };
  try {
    // Every point connects and plays.
    const pages = {};
    for (const p of points) pages[p.id] = await openPoint(context, p);
    for (const p of points) await pages[p.id].waitForFunction(isLive, null, { timeout: 60_000 });
    step('all points live');

    // The 3rd point leaves before the roll call: its page closes (DELETE on pagehide).
    await pages[pC.id].close({ runBeforeUnload: true });
    delete pages[pC.id];
    if (!(await sessionEnded(pC.id, 30_000))) throw new Error(`the relay never recorded ${pC.id}'s session as ended`);
    step('disconnected point gone', { point: pC.id });

    // The admin dashboard's roll-call tab, signed in as the organisers are: the demo's
    // signed-in admin link sets the session cookie, the page runs on it (and its CSRF header).
    const admin = await context.newPage();
    admin.on('pageerror', (e) => pageErrors.push(`admin: ${e.message}`));
    await admin.setViewportSize({ width: 1366, height: 768 });
    await admin.goto(args.admin_url);
    await admin.goto(`${base}/admin?conference=${encodeURIComponent(args.conference)}`);
    if (new URL(admin.url()).pathname !== '/admin') throw new Error(`the admin page led to ${admin.url()}`);
    await admin.click('#tabs [data-tab="rollcall"]');
    await admin.waitForFunction(() => window.hallcastRollcall && window.hallcastRollcall.nPolls >= 1, null, { timeout: 15_000 });
    await admin.selectOption('#rollcall-duration', String(args.duration));
    const clickedAt = Date.now();
    await admin.click('#rollcall-start');
    await admin.waitForFunction(() => window.hallcastRollcall.data && window.hallcastRollcall.data.running, null, { timeout: 10_000 });
    const started = await admin.evaluate(() => {
      const d = window.hallcastRollcall.data;
      return d.rollcalls.find((r) => r.id === d.running);
    });
    result.rollcall_id = started.id;
    result.started_ms = started.started_ms;
    result.deadline_ms = started.deadline_ms;
    step('roll call started from the panel', { id: started.id, deadline_ms: started.deadline_ms });

    // Every connected point is asked.
    for (const p of [pA, pB, pD]) {
      await pages[p.id].waitForFunction(promptOpen, null, { timeout: 10_000 });
      result.prompt_ms[p.id] = Date.now() - clickedAt;
    }
    result.prompt_text = await pages[pA.id].evaluate(() => document.getElementById('rollcall').innerText);
    const promptShot = join(args.out_dir, 'rollcall-prompt.png');
    await pages[pA.id].screenshot({ path: promptShot });
    shots.push({ name: 'viewer prompt', path: promptShot, ...(await pixelStats(admin, promptShot)) });
    step('prompt shown on every connected point', { prompt_ms: result.prompt_ms });

    // The 1st answers.
    await pages[pA.id].fill('#rollcall-input', String(args.people_a));
    await pages[pA.id].click('#rollcall button[type=submit]');
    await pages[pA.id].waitForFunction(() => window.hallcast.rollcall.state === 'answered', null, { timeout: 10_000 });
    await pages[pA.id].waitForFunction(() => document.getElementById('rollcall').hidden, null, { timeout: 5_000 });
    result.answered[pA.id] = args.people_a;
    step('first point answered', { point: pA.id });

    // The 4th drops and rejoins during the countdown: the new page is asked at once.
    await pages[pD.id].close({ runBeforeUnload: true });
    const rejoinAt = Date.now();
    pages[pD.id] = await openPoint(context, pD);
    await pages[pD.id].waitForFunction(promptOpen, null, { timeout: 20_000 });
    result.rejoin_prompt_ms = Date.now() - rejoinAt;
    await pages[pD.id].fill('#rollcall-input', String(args.people_d));
    await pages[pD.id].click('#rollcall button[type=submit]');
    await pages[pD.id].waitForFunction(() => window.hallcast.rollcall.state === 'answered', null, { timeout: 10_000 });
    result.answered[pD.id] = args.people_d;
    step('rejoined point got the prompt and answered', { point: pD.id, rejoin_prompt_ms: result.rejoin_prompt_ms });

    // The 2nd ignores it: at the deadline its prompt goes away; a late answer is refused.
    const wait = result.deadline_ms - Date.now() + 1500;
    if (wait > 0) await sleep(wait);
    result.ignored_final_state = await pages[pB.id].evaluate(() => window.hallcast.rollcall && window.hallcast.rollcall.state);
    result.ignored_hidden = await pages[pB.id].evaluate(() => document.getElementById('rollcall').hidden);
    const late = await pages[pB.id].evaluate(
      async ({ url, token }) => {
        const r = await fetch(url, {
          method: 'POST',
          headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
          body: JSON.stringify({ n_people: 3 }),
        });
        return { status: r.status, body: await r.text() };
      },
      { url: `${base}/api/v1/conferences/${conf}/rollcalls/${started.id}/answer`, token: pB.token },
    );
    result.late_status = late.status;
    result.late_body = late.body;
    step('deadline passed', { ignored_state: result.ignored_final_state, late_status: late.status });

    // The panel, by its own polling, shows the outcome.
    await admin.waitForFunction(
      () => {
        const cur = document.getElementById('rollcall-current');
        return cur && cur.dataset.running === 'false';
      },
      null,
      { timeout: 15_000 },
    );
    result.panel = await admin.evaluate(panelLists);
    const adminShot = join(args.out_dir, 'rollcall-admin.png');
    await admin.screenshot({ path: adminShot });
    shots.push({ name: 'admin panel', path: adminShot, ...(await pixelStats(admin, adminShot)) });
    step('panel shows the outcome', { panel: result.panel });
    emit(result);
    return 0;
  } finally {
    await close();
  }
});
