import { launchBrowser, sleep } from '/work/wt-admin/tests/js/common.mjs';
const [base, token, shotPath, tab] = process.argv.slice(2);
const { context, close } = await launchBrowser();
await context.addInitScript((t) => { sessionStorage.setItem('hallcast_token', t); }, token);
const p = await context.newPage();
await p.setViewportSize({ width: 1366, height: 768 });
p.on('console', (m) => console.error('console', m.type(), m.text()));
p.on('pageerror', (e) => console.error('pageerror', String(e)));
p.on('response', (r) => { if (r.status() >= 400) console.error('HTTP', r.status(), r.url()); });
await p.goto(`${base}/admin?conference=hoi-nghi-demo`);
await sleep(3000);
if (tab) { await p.evaluate((t) => window.hallcastAdmin.showTab(t), tab); await sleep(2000); }
console.error(JSON.stringify(await p.evaluate(() => ({ n: window.hallcastAdmin.nBoards, feed: window.hallcastAdmin.feed, url: location.href }))));
await p.screenshot({ path: shotPath });
await close();
process.exit(0);
