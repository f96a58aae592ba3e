#!/usr/bin/env node
// The operator console showing an RTMP/SRT encoder's pre-flight, in headless Chromium: signs in,
// opens /operator?conference=ID, waits until the pre-flight panel shows every line asked for with
// --expect (`id=status`, repeatable as a comma list, e.g. `keyframe_requests=red,ingest_problem=red`)
// and the publisher's protocol (--protocol RTMP), then takes a full-page screenshot.
//
// stdout (JSON lines):
//   {"event":"result","lines":[{id,status,text}],"source":{protocol,text},"shot":{path,width,height,n_colours,ink_fraction},"page_errors":[...]}

import { emit, launchBrowser, log, parseArgs, run, measureShot } from './common.mjs';

const USAGE = `usage: operator_ingest.mjs --base URL --name NAME --password PW --conference ID
                           --expect ID=STATUS[,ID=STATUS...] --protocol RTMP|SRT --shot FILE.png`;

const args = parseArgs(
  { base: '', name: '', password: '', conference: '', expect: '', protocol: '', shot: '' },
  USAGE,
);

function panel(page) {
  return page.evaluate(() => {
    const source = document.getElementById('preflight-source');
    return {
      lines: [...document.querySelectorAll('#preflight li')].map((li) => ({
        id: li.dataset.check,
        status: li.dataset.status,
        text: li.innerText.replace(/\s+/g, ' ').trim(),
      })),
      source: { protocol: source && !source.hidden ? source.dataset.protocol : null, text: source ? source.innerText.trim() : '' },
    };
  });
}

run(async () => {
  if (!args.base || !args.name || !args.conference || !args.shot) {
    process.stderr.write(USAGE + '\n');
    return 2;
  }
  const expect = args.expect
    .split(',')
    .filter(Boolean)
    .map((e) => e.split('='));
  const pageErrors = [];
  const { context, close } = await launchBrowser();
  const page = context.pages()[0] || (await context.newPage());
  await page.setViewportSize({ width: 1366, height: 768 });
  page.on('pageerror', (e) => {
    pageErrors.push(String(e.message || e));
    log('page error:', e.message || e);
  });

  await page.goto(`${args.base}/operator?conference=${encodeURIComponent(args.conference)}`, { waitUntil: 'networkidle', timeout: 30_000 });
  await page.waitForSelector('#login-form', { timeout: 15_000 });
  await page.fill('#name', args.name);
  await page.fill('#password', args.password);
  await Promise.all([page.waitForURL(/\/operator/, { timeout: 30_000 }), page.click('#login-submit')]);
  await page.waitForFunction(() => window.hallcastOperator && window.hallcastOperator.ready, null, { timeout: 30_000 });
  if ((await page.evaluate(() => window.hallcastOperator.conference)) !== args.conference) {
    await page.selectOption('#conference-select', args.conference);
  }
  let last = null;
  try {
    await page.waitForFunction(
      ({ expect, protocol }) => {
        const line = (id) => document.querySelector(`#preflight li[data-check="${id}"]`);
        const source = document.getElementById('preflight-source');
        return (
          expect.every(([id, status]) => line(id) && line(id).dataset.status === status) &&
          (!protocol || (source && !source.hidden && source.dataset.protocol === protocol))
        );
      },
      { expect, protocol: args.protocol },
      { timeout: 40_000, polling: 500 },
    );
  } catch (e) {
    log('the panel did not show what was expected:', e.message);
  }
  last = await panel(page);
  await page.locator('#preflight-panel').scrollIntoViewIfNeeded();
  await page.screenshot({ path: args.shot, fullPage: true });
  const shot = { path: args.shot, ...(await measureShot(context, args.shot)) };
  emit({ event: 'result', ...last, shot, page_errors: pageErrors });
  await close();
  return 0;
});
