// The organisers' side of the whole console flow (tests/operator_console.rs): signs in to the
// relay's sign-in page as an admin account, opens the admin dashboard (/admin) on a conference
// and follows one point's row on the roster board without ever reloading the page.
//
// Events on stdout (one JSON object a line):
//   {"event":"ready","at_ms"}                          the board is live (its stream answered)
//   {"event":"state","point","state","at_ms"}          the point's row changed state
//   {"event":"alert","point","kind","text","at_ms"}    an alert about the point appeared
//   {"event":"result","states","page_errors","shot":{path,width,height}}   at the end
// Ends after --duration seconds or once --stop-file exists, with a screenshot of the board.
import { existsSync } from 'node:fs';
import { emit, fail, launchBrowser, log, parseArgs, run, sleep } from './common.mjs';

const USAGE = `usage: admin_watch.mjs --base URL --name ADMIN --password PASSWORD --conference ID
  --point POINT_ID --shot FILE.png [--duration SECS] [--stop-file PATH]`;
const args = parseArgs(
  { base: '', name: '', password: '', conference: '', point: '', shot: '', duration: 120, stop_file: '' },
  USAGE,
);
for (const k of ['base', 'name', 'password', 'conference', 'point', 'shot']) {
  if (!args[k]) fail(`--${k} is required\n${USAGE}`);
}

run(async () => {
  const { context, close } = await launchBrowser();
  const pageErrors = [];
  const states = [];
  try {
    const page = await context.newPage();
    await page.setViewportSize({ width: 1366, height: 768 });
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    const target = `/admin?conference=${encodeURIComponent(args.conference)}`;
    await page.goto(`${args.base}/login?next=${encodeURIComponent(target)}`);
    await page.waitForSelector('#login-form', { timeout: 15_000 });
    await page.fill('#name', args.name);
    await page.fill('#password', args.password);
    await Promise.all([page.waitForURL(/\/admin/, { timeout: 30_000 }), page.click('#login-submit')]);
    await page.waitForFunction(
      () => window.hallcastAdmin && window.hallcastAdmin.nBoards > 0 && window.hallcastAdmin.feed === 'live',
      null,
      { timeout: 30_000 },
    );
    emit({ event: 'ready', at_ms: Date.now() });

    const deadline = Date.now() + args.duration * 1000;
    const alertsSeen = new Set();
    let last = null;
    while (Date.now() < deadline && !(args.stop_file && existsSync(args.stop_file))) {
      const seen = await page.evaluate((p) => {
        const row = document.querySelector(`#board tr[data-point="${CSS.escape(p)}"]`);
        const alerts = [...document.querySelectorAll('#alerts li[data-alert]')]
          .filter((li) => li.dataset.alert.endsWith(`:${p}`))
          .map((li) => ({ id: li.dataset.alert, kind: li.dataset.kind, text: li.textContent.trim() }));
        return { state: row ? row.dataset.state : null, alerts };
      }, args.point);
      const at = Date.now();
      if (seen.state !== last) {
        last = seen.state;
        states.push({ state: seen.state, at_ms: at });
        emit({ event: 'state', point: args.point, state: seen.state, at_ms: at });
      }
      for (const a of seen.alerts) {
        if (!alertsSeen.has(a.id)) {
          alertsSeen.add(a.id);
          emit({ event: 'alert', point: args.point, kind: a.kind, text: a.text, at_ms: at });
        }
      }
      await sleep(50);
    }
    await page.screenshot({ path: args.shot });
    log('board screenshot', args.shot);
    emit({ event: 'result', states, page_errors: pageErrors, shot: { path: args.shot, width: 1366, height: 768 } });
  } finally {
    await close();
  }
});
