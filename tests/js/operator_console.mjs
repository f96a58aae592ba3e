#!/usr/bin/env node
// Drives the operator console the way a hall operator does, in headless Chromium with the fake
// camera: /operator → the sign-in page (screenshot) → signs in with a name and password → creates
// a conference → publishes this browser's camera from the console over WHIP → the console's
// preview plays it and the pre-flight panel renders (screenshot) → stays up for --duration
// seconds (a viewer plays meanwhile), then stops the camera.
//
// A forged cross-site POST is tried too: a page of another site (http://localhost:PORT, the same
// relay under another name) posts .../end to the console's relay, by fetch and by a form.
//
// stdout (JSON lines):
//   {"event":"login_page","url":..,"text":..,"shot":{path, width, height, n_colours, ink_fraction}}
//   {"event":"signed_in","url":..}
//   {"event":"created","conference":..,"whip_url":..}
//   {"event":"published","status":201}
//   {"event":"progress","t":..,"live":..,"preview_frames":..,"publisher_frames":..,"preflight":[{id,status}],"preflight_note":..,
//    "recordings_shown":..,"recordings":[{text,href}]}
//   {"event":"console_shot","shot":{...}}
//   {"event":"forged","fetch_status":..,"form_done":..}
//   {"event":"ended","pill":..,"camera_stopped":..,"api_state":..} {"event":"reopened","pill":..}
//     (after --duration, or once --stop-file exists: "End the broadcast" clicked and confirmed,
//      then "Reopen to go live")
//   {"event":"result", ...the last progress, page_errors, states}
// `shot`: the screenshot decoded again by Chromium: how many distinct colours (sampled) and the
// fraction of pixels that differ from the top-left pixel's colour (a blank page has ~0).

import { emit, launchBrowser, log, parseArgs, run, sleep, measureShot } from './common.mjs';

const USAGE = `usage: operator_console.mjs --base URL --name NAME --password PW --conference ID --title T
                              --login-shot FILE.png --console-shot FILE.png [--duration SECS]
                              [--stop-file PATH]   (ends the broadcast from the console once PATH exists)`;

const args = parseArgs(
  { base: '', name: '', password: '', conference: '', title: '', login_shot: '', console_shot: '', duration: 60, stop_file: '' },
  USAGE,
);

// In the page: sample what the console's connections did.
function initScript() {
  const hc = (window.__hcOp = { pcs: [] });
  const Native = window.RTCPeerConnection;
  window.RTCPeerConnection = class extends Native {
    constructor(...a) {
      super(...a);
      hc.pcs.push(this);
    }
  };
}

async function stats(page) {
  return page.evaluate(async () => {
    const op = window.hallcastOperator || {};
    const sum = async (pc, type, key) => {
      if (!pc || pc.signalingState === 'closed') return 0;
      let n = 0;
      (await pc.getStats()).forEach((s) => {
        if (s.type === type && s.kind === 'video') n += s[key] || 0;
      });
      return n;
    };
    return {
      conference: op.conference,
      live: !!op.live,
      preview_frames: await sum(op.preview && op.preview.pc, 'inbound-rtp', 'framesDecoded'),
      publisher_frames: await sum(op.publisher && op.publisher.pc, 'outbound-rtp', 'framesEncoded'),
      publisher_status: op.publisher ? op.publisher.status : null,
      preflight_available: op.preflightAvailable,
      preflight: [...document.querySelectorAll('#preflight li')].map((li) => ({ id: li.dataset.check, status: li.dataset.status, text: li.innerText.replace(/\s+/g, ' ').trim() })),
      preflight_note: document.getElementById('preflight-note').textContent,
      recordings_shown: !document.getElementById('recordings-panel').hidden,
      recordings: [...document.querySelectorAll('#recordings tbody tr')].map((tr) => ({
        text: tr.innerText.replace(/\s+/g, ' ').trim(),
        href: (tr.querySelector('a') || {}).href || null,
      })),
      pill: document.getElementById('live-pill').textContent,
      message: document.getElementById('broadcast-message').textContent,
    };
  });
}

run(async () => {
  if (!args.base || !args.name || !args.conference) {
    process.stderr.write(USAGE + '\n');
    return 2;
  }
  let last = {};
  const pageErrors = [];
  let page;
  const { context, close } = await launchBrowser({
    onSignal: async () => {
      emit({ event: 'result', ...last, page_errors: pageErrors });
    },
  });
  await context.addInitScript(initScript);
  page = context.pages()[0] || (await context.newPage());
  await page.setViewportSize({ width: 1366, height: 768 });
  page.on('pageerror', (e) => {
    pageErrors.push(String(e.message || e));
    log('page error:', e.message || e);
  });
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') log(`console.${m.type()}:`, m.text());
  });

  // Not signed in: the console sends us to the sign-in page.
  await page.goto(`${args.base}/operator`, { waitUntil: 'networkidle', timeout: 30_000 });
  await page.waitForSelector('#login-form', { timeout: 15_000 });
  await page.screenshot({ path: args.login_shot });
  emit({
    event: 'login_page',
    url: page.url(),
    text: (await page.innerText('body')).replace(/\s+/g, ' ').trim().slice(0, 300),
    shot: { path: args.login_shot, ...(await measureShot(context, args.login_shot)) },
  });

  // A wrong password first: the page says so and stays.
  await page.fill('#name', args.name);
  await page.fill('#password', 'not the password');
  await page.click('#login-submit');
  await page.waitForSelector('#login-error:not([hidden])', { timeout: 15_000 });
  const wrong = (await page.textContent('#login-error')).trim();
  emit({ event: 'wrong_password', message: wrong, url: page.url() });

  await page.fill('#password', args.password);
  await Promise.all([page.waitForURL(/\/operator/, { timeout: 30_000 }), page.click('#login-submit')]);
  await page.waitForFunction(() => window.hallcastOperator && window.hallcastOperator.ready, null, { timeout: 30_000 });
  emit({ event: 'signed_in', url: page.url(), who: (await page.textContent('#who')).trim() });

  // Create the conference from the console.
  if (await page.isHidden('#new-conference')) await page.click('#new-conference-toggle');
  await page.fill('#new-id', args.conference);
  await page.fill('#new-title', args.title);
  await page.click('#new-conference-submit');
  // The console shows the new conference (its own details, not the first one's still on screen).
  await page.waitForFunction((id) => window.hallcastOperator.conference === id && window.hallcastOperator.info && window.hallcastOperator.info.id === id, args.conference, { timeout: 20_000 });
  emit({ event: 'created', conference: args.conference, whip_url: await page.textContent('#whip-url'), url: page.url() });

  // Publish the fake camera from the console.
  await page.click('#publish-camera');
  await page.waitForFunction(() => window.hallcastOperator.publisher && window.hallcastOperator.publisher.status, null, { timeout: 30_000 });
  const status = await page.evaluate(() => window.hallcastOperator.publisher.status);
  emit({ event: 'published', status, message: await page.textContent('#broadcast-message') });

  // A forged cross-site POST from another site (localhost is not 127.0.0.1's site).
  const foreign = args.base.replace('127.0.0.1', 'localhost');
  const forgedPage = await context.newPage();
  let forged = { error: null };
  try {
    await forgedPage.goto(`${foreign}/login`, { waitUntil: 'domcontentloaded', timeout: 15_000 });
    forged = await forgedPage.evaluate(async ({ base, id }) => {
      const out = {};
      try {
        const r = await fetch(`${base}/api/v1/conferences/${id}/end`, { method: 'POST', credentials: 'include', mode: 'no-cors' });
        out.fetch_type = r.type;
      } catch (e) {
        out.fetch_error = String(e);
      }
      // A classic form post in a hidden frame.
      const f = document.createElement('iframe');
      f.name = 'sink';
      f.style.display = 'none';
      document.body.append(f);
      const form = document.createElement('form');
      form.method = 'POST';
      form.action = `${base}/api/v1/conferences/${id}/end`;
      form.target = 'sink';
      document.body.append(form);
      const loaded = new Promise((res) => f.addEventListener('load', res));
      form.submit();
      await Promise.race([loaded, new Promise((res) => setTimeout(res, 5000))]);
      out.form_done = true;
      return out;
    }, { base: args.base, id: args.conference });
  } catch (e) {
    forged.error = String(e.message || e);
  }
  await forgedPage.close();
  emit({ event: 'forged', ...forged });

  const started = Date.now();
  let shot = false;
  const { existsSync } = await import('node:fs');
  while ((Date.now() - started) / 1000 < args.duration && !(args.stop_file && existsSync(args.stop_file))) {
    last = await stats(page);
    emit({ event: 'progress', t: (Date.now() - started) / 1000, ...last });
    if (!shot && last.preview_frames >= 30 && last.preflight.length === 9 && last.recordings.length > 0) {
      await sleep(1500); // let the preview settle on a picture
      await page.screenshot({ path: args.console_shot });
      emit({ event: 'console_shot', shot: { path: args.console_shot, ...(await measureShot(context, args.console_shot)) } });
      shot = true;
    }
    await sleep(1000);
  }
  // End the broadcast from the console (it asks first), then reopen it.
  page.on('dialog', (d) => d.accept());
  await page.click('#end-broadcast');
  await page.waitForSelector('#reopen:not([hidden])', { timeout: 20_000 });
  await page.waitForFunction(() => !window.hallcastOperator.publisher && !window.hallcastOperator.preview, null, { timeout: 20_000 }).catch(() => {});
  emit({
    event: 'ended',
    pill: (await page.textContent('#live-pill')).trim(),
    camera_stopped: await page.evaluate(() => !window.hallcastOperator.publisher),
    preview_stopped: await page.evaluate(() => !window.hallcastOperator.preview),
    message: (await page.textContent('#broadcast-message')).trim(),
    // The relay's own word, read before "Reopen" is clicked (the test reads the event later).
    api_state: await page.evaluate(async (id) => {
      const r = await fetch(`/api/v1/conferences/${encodeURIComponent(id)}`, { credentials: 'same-origin' });
      return r.ok ? (await r.json()).state : `HTTP ${r.status}`;
    }, args.conference),
  });
  await page.click('#reopen');
  await page.waitForSelector('#end-broadcast:not([hidden])', { timeout: 20_000 });
  emit({ event: 'reopened', pill: (await page.textContent('#live-pill')).trim() });
  last = await stats(page);
  emit({ event: 'result', ...last, page_errors: pageErrors });
  await close();
  return 0;
});
