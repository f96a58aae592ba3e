#!/usr/bin/env node
// The admin dashboard end to end, in one headless Chromium: the /admin page (1366x768, bearer
// admin token in sessionStorage) follows a real viewer page that joins with its point's link in
// a second tab, then leaves; then the registry tab imports a CSV with a bad row, and the join
// links are printed. Screenshots of each view, each with figures that tell a blank picture
// from a real one (measured in the browser: distinct colours, share of non-background pixels).
//
// Lines on stdout (JSON): {"event":"admin_ready"}, {"event":"viewer_posted", "at_ms"},
// {"event":"shown", "state", "at_ms"}, {"event":"viewer_closed", "at_ms"}, {"event":"alert",
// "at_ms", "alert"}, {"event":"import_errors", "rows"}, {"event":"screenshot", "name", "path",
// "distinct_colours", "non_background"}, and {"event":"result", ...}.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { emit, fail, launchBrowser, log, parseArgs, run, sleep } from './common.mjs';

const USAGE = `usage: admin_page.mjs --base URL --token ADMIN_TOKEN --admin-url SIGNED_IN_URL --conference ID --viewer-url URL
  --point POINT_ID --grace S --bad-csv FILE --out DIR
  --edge-viewer-url URL --edge-point POINT_ID --edge-name NAME   (a second point, served by an edge)`;

const opts = parseArgs({
  base: '', token: '', admin_url: '', conference: '', viewer_url: '', point: '', grace: 5, bad_csv: '', out: '',
  edge_viewer_url: '', edge_point: '', edge_name: '',
}, USAGE);
for (const k of ['base', 'token', 'admin_url', 'conference', 'viewer_url', 'point', 'bad_csv', 'out', 'edge_viewer_url', 'edge_point', 'edge_name']) {
  if (!opts[k]) fail(`--${k.replace(/_/g, '-')} is required\n${USAGE}`);
}

/** The state of the point's row on the board, or null when not rendered. */
function rowState(point) {
  const r = document.querySelector(`#board tr[data-point="${CSS.escape(point)}"]`);
  return r ? r.dataset.state : null;
}

/** Waits (polling in the page every 50 ms) until the point's row shows one of `states`. */
async function waitState(page, point, states, timeoutMs) {
  await page.waitForFunction(
    ([p, s]) => {
      const r = document.querySelector(`#board tr[data-point="${CSS.escape(p)}"]`);
      return r && s.includes(r.dataset.state);
    },
    [point, states],
    { timeout: timeoutMs, polling: 50 },
  );
  return Date.now();
}

run(async () => {
  const { context, close } = await launchBrowser();
  const pageErrors = [];
  const statesSeen = [];
  const screenshots = [];
  try {
    const admin = await context.newPage();
    await admin.setViewportSize({ width: 1366, height: 768 });
    admin.on('pageerror', (e) => pageErrors.push(String(e)));
    admin.on('console', (m) => { if (m.type() === 'error') log('admin console:', m.text()); });

    // Signed in as the organisers are: the demo's signed-in admin link (a ticket) sets the
    // session cookie; the page then runs on that cookie (and its CSRF header), no token.
    await admin.goto(opts.admin_url);
    if (!new URL(admin.url()).pathname.startsWith('/admin')) fail(`the admin link led to ${admin.url()}`);
    const cookies = await context.cookies(opts.base);
    if (!cookies.some((c) => c.name === 'hallcast_session' && c.httpOnly)) fail(`no HttpOnly session cookie after the admin link: ${JSON.stringify(cookies.map((c) => c.name))}`);
    await admin.goto(`${opts.base}/admin?conference=${encodeURIComponent(opts.conference)}`);
    await admin.waitForFunction(() => window.hallcastAdmin && window.hallcastAdmin.nBoards > 0 && window.hallcastAdmin.feed === 'live', null, { timeout: 30000 });
    // Survives only if the page is never reloaded.
    await admin.evaluate(() => { window.__noReload = 'still-here'; });
    const initial = await admin.evaluate(rowState, opts.point);
    statesSeen.push(initial);
    emit({ event: 'admin_ready', state: initial, at_ms: Date.now() });

    // Record each state change of the point's row, as the page shows it.
    await admin.exposeFunction('__reportState', (s) => { statesSeen.push(s); emit({ event: 'shown', state: s, at_ms: Date.now() }); });
    await admin.evaluate((p) => {
      let last = null;
      setInterval(() => {
        const r = document.querySelector(`#board tr[data-point="${CSS.escape(p)}"]`);
        const s = r ? r.dataset.state : null;
        if (s !== last) { last = s; window.__reportState(s); }
      }, 50);
    }, opts.point);

    // ---- a real viewer joins with its point link ----
    const viewer = await context.newPage();
    let postedAt = null;
    viewer.on('response', (r) => {
      if (postedAt === null && r.request().method() === 'POST' && /\/whep\/[^/]+$/.test(new URL(r.url()).pathname) && r.status() === 201) {
        postedAt = Date.now();
        emit({ event: 'viewer_posted', at_ms: postedAt });
      }
    });
    await viewer.goto(opts.viewer_url);
    const shownConnected = await waitState(admin, opts.point, ['connected', 'degraded'], 30000);
    await viewer.waitForFunction(() => document.body.dataset.state === 'live', null, { timeout: 30000 });
    const viewerLiveAt = Date.now();
    // Let the figures (bitrate, RTT, time connected) fill in.
    await sleep(2500);
    screenshots.push(await shot(admin, 'board-connected'));

    // ---- a second point joins through its link: redirected to its organisation's edge ----
    const edgeViewer = await context.newPage();
    const edgeJoinAt = Date.now();
    await edgeViewer.goto(opts.edge_viewer_url);
    await waitState(admin, opts.edge_point, ['connected', 'degraded'], 30000);
    const edgePointShownMs = Date.now() - edgeJoinAt;
    await admin.waitForFunction(([p, n]) => {
      const r = document.querySelector(`#board tr[data-point="${CSS.escape(p)}"]`);
      return r && r.children[2].textContent === n;
    }, [opts.edge_point, opts.edge_name], { timeout: 15000, polling: 100 });
    const edgeViewerUrl = edgeViewer.url();
    screenshots.push(await shot(admin, 'board-two-relays'));

    await admin.click('#tabs [data-tab="tree"]');
    await admin.waitForFunction((p) => document.querySelector('#tree .node .node .leaf-points') !== null, opts.edge_point, { timeout: 10000 });
    await sleep(300);
    screenshots.push(await shot(admin, 'tree'));
    const treeText = await admin.textContent('#tree');
    await edgeViewer.close({ runBeforeUnload: true });
    // The test kills the edge relay now: the tree shows it down and an edge_down alert fires.
    emit({ event: 'tree_shown', text: treeText, at_ms: Date.now() });
    const edgeAlert = await admin.waitForSelector('#alerts li[data-kind="edge_down"]', { timeout: 30000 });
    const edgeAlertAt = Date.now();
    const edgeAlertText = await edgeAlert.textContent();
    await admin.waitForSelector('#tree .node-down', { timeout: 10000 });
    screenshots.push(await shot(admin, 'tree-edge-down'));
    await admin.click('#tabs [data-tab="board"]');

    // The test declared 17 people for the point meanwhile: the header counts them.
    await admin.waitForFunction(() => document.querySelector('#c-people').textContent === '17/120', null, { timeout: 10000 }).catch(() => {});
    const countsPresent = await admin.evaluate(() => ({
      orgs: document.querySelector('#c-orgs').textContent,
      points: document.querySelector('#c-points').textContent,
      people: document.querySelector('#c-people').textContent,
    }));

    // ---- it leaves ----
    const boardsBefore = await admin.evaluate(() => window.hallcastAdmin.nBeeps);
    await viewer.close({ runBeforeUnload: true });
    const closedAt = Date.now();
    emit({ event: 'viewer_closed', at_ms: closedAt });
    const shownGone = await waitState(admin, opts.point, ['left', 'missing'], 20000);
    const goneState = await admin.evaluate(rowState, opts.point);
    const alertHandle = await admin.waitForSelector(`#alerts li[data-alert="point_dropped:${opts.point}"]`, { timeout: (opts.grace + 30) * 1000 });
    const alertAt = Date.now();
    const alertText = await alertHandle.textContent();
    emit({ event: 'alert', at_ms: alertAt, alert: alertText });
    const shownMissing = await waitState(admin, opts.point, ['missing'], 5000);
    await sleep(300);
    const nBeeps = await admin.evaluate(() => window.hallcastAdmin.nBeeps);
    const noReload = await admin.evaluate(() => window.__noReload);
    const counts = await admin.evaluate(() => ({
      orgs: document.querySelector('#c-orgs').textContent,
      points: document.querySelector('#c-points').textContent,
      people: document.querySelector('#c-people').textContent,
    }));
    screenshots.push(await shot(admin, 'board-missing-alert'));

    // ---- registry: a CSV with a bad row ----
    await admin.click('#tabs [data-tab="registry"]');
    await admin.waitForSelector('#points tbody tr', { timeout: 10000 });
    await admin.setInputFiles('#import-file', { name: 'diem-cau.csv', mimeType: 'text/csv', buffer: readFileSync(opts.bad_csv) });
    await admin.click('#import-form button[type="submit"]');
    await admin.waitForSelector('#import-errors tbody tr', { timeout: 10000 });
    const importRows = await admin.$$eval('#import-errors tbody tr', (trs) => trs.map((tr) => ({ line: Number(tr.dataset.line), text: tr.textContent })));
    emit({ event: 'import_errors', rows: importRows });
    screenshots.push(await shot(admin, 'registry'));
    // Edit a point in place: its name.
    const renamed = 'Quận Hoàn Kiếm (phòng 2)';
    await admin.fill('#points tr[data-point="hn-02"] td:nth-child(3) input', renamed);
    await admin.click('#points tr[data-point="hn-02"] td.acts button:not(.danger)');
    await admin.waitForFunction((n) => {
      const i = document.querySelector('#points tr[data-point="hn-02"] td:nth-child(3) input');
      return i && i.value === n && document.querySelector('#toast:not([hidden])');
    }, renamed, { timeout: 10000 });

    // ---- the report tab ----
    await admin.click('#tabs [data-tab="report"]');
    await admin.waitForSelector('#report-points tbody tr', { timeout: 10000 });
    // The broadcast being recorded is listed with its download link.
    await admin.waitForSelector('#recordings tbody tr a[download]', { timeout: 10000 });
    const recordingHrefs = await admin.$$eval('#recordings tbody tr a[download]', (as) => as.map((a) => a.href));
    emit({ event: 'recordings_shown', hrefs: recordingHrefs, at_ms: Date.now() });
    screenshots.push(await shot(admin, 'report'));

    // ---- join links: the table with QR codes, then the printable sheet ----
    await admin.click('#tabs [data-tab="links"]');
    await admin.waitForSelector('#links td.qr svg', { timeout: 15000 });
    // The QR codes are fetched in parallel: wait until every row has its own.
    await admin.waitForFunction(() => document.querySelectorAll('#links td.qr svg').length
      === document.querySelectorAll('#links tbody tr').length, null, { timeout: 15000 });
    const nQr = await admin.$$eval('#links td.qr svg', (s) => s.length);
    screenshots.push(await shot(admin, 'links'));
    // Revoke one point's links (the confirmation is accepted), then take its new link.
    const linkOf = (p) => admin.$eval(`#links tr[data-point="${p}"] td.link code`, (c) => c.textContent);
    const oldLink = await linkOf('hn-01');
    admin.once('dialog', (d) => d.accept());
    await admin.click('#links tr[data-point="hn-01"] button.danger');
    await admin.waitForFunction((old) => {
      const c = document.querySelector('#links tr[data-point="hn-01"] td.link code');
      return c && c.textContent !== old && document.querySelector('#links td.qr svg');
    }, oldLink, { timeout: 10000 });
    const newLink = await linkOf('hn-01');
    await admin.evaluate(() => window.hallcastAdmin.printSheet());
    await admin.waitForSelector('#print-sheet .pcard .qr svg', { timeout: 15000 });
    await admin.emulateMedia({ media: 'print' });
    screenshots.push(await shot(admin, 'links-print'));
    await admin.emulateMedia({ media: null });
    await admin.evaluate(() => window.hallcastAdmin.endPrint());

    emit({
      event: 'result',
      initial_state: initial,
      viewer_posted_ms: postedAt,
      shown_connected_ms: shownConnected,
      viewer_live_ms: viewerLiveAt,
      viewer_closed_ms: closedAt,
      shown_gone_ms: shownGone,
      gone_state: goneState,
      alert_ms: alertAt,
      alert_text: alertText,
      shown_missing_ms: shownMissing,
      beeps_before: boardsBefore,
      beeps_after: nBeeps,
      no_reload: noReload === 'still-here',
      states_seen: statesSeen,
      counts,
      counts_present: countsPresent,
      tree_text: treeText,
      edge_point_shown_ms: edgePointShownMs,
      edge_viewer_url: edgeViewerUrl,
      edge_alert_ms: edgeAlertAt,
      edge_alert_text: edgeAlertText,
      import_errors: importRows,
      n_qr: nQr,
      renamed_point: renamed,
      revoked_old_link: oldLink,
      revoked_new_link: newLink,
      screenshots,
      page_errors: pageErrors,
    });
  } finally {
    await close();
  }
  return 0;

  /** A screenshot of the page and how far from blank it is (decoded in a scratch page). */
  async function shot(page, name) {
    const path = join(opts.out, `${name}.png`);
    const png = await page.screenshot({ path, fullPage: false });
    const scratch = await context.newPage();
    const stats = await scratch.evaluate(async (b64) => {
      const img = new Image();
      img.src = `data:image/png;base64,${b64}`;
      await img.decode();
      const c = document.createElement('canvas');
      c.width = img.width;
      c.height = img.height;
      const g = c.getContext('2d');
      g.drawImage(img, 0, 0);
      const d = g.getImageData(0, 0, c.width, c.height).data;
      const hist = new Map();
      for (let i = 0; i < d.length; i += 4) {
        const k = ((d[i] >> 3) << 10) | ((d[i + 1] >> 3) << 5) | (d[i + 2] >> 3);
        hist.set(k, (hist.get(k) || 0) + 1);
      }
      const n = d.length / 4;
      const top = Math.max(...hist.values());
      return { width: c.width, height: c.height, distinct_colours: hist.size, non_background: 1 - top / n };
    }, png.toString('base64'));
    await scratch.close();
    const out = { name, path, ...stats };
    emit({ event: 'screenshot', ...out });
    return out;
  }
});
