// hallcast admin: the roll call panel (điểm danh). No framework, no build step; served as-is at
// /static/admin-rollcall.js, after /static/api.js (window.hallcastApi).
//
// Renders into <section id="rollcall-panel"> wherever it is (the /admin page, or any page that
// has the section): a duration and a button that starts a roll call
// (POST /api/v1/conferences/{c}/rollcalls), then the latest roll call live — countdown, and
// which points answered (people, when), did not answer, were not connected — polling
// GET /api/v1/conferences/{c}/rollcalls every 2 s; earlier roll calls below.
//
// The conference, first found wins: the section's `data-conference`, window.hallcastAdmin.conference
// (the /admin page), `?conference=` of the page's URL. It follows changes: the `hallcast:conference`
// event on document (detail: the id, as /admin sends it), or window.hallcastRollcall.setConference(id).
// Tests read window.hallcastRollcall = { conference, data (the last list), nPolls, lastError }.
'use strict';

(() => {
  const POLL_MS = 2000;
  const TICK_MS = 250;
  const DURATIONS = [30, 60, 120, 300];
  const DEFAULT_DURATION = 60;

  const panel = document.getElementById('rollcall-panel');
  if (!panel) return;
  // Looked up at each call: api.js may load after this script.
  const hapi = {
    api: (...a) => {
      if (!window.hallcastApi) throw new Error('api.js chưa được nạp / api.js is not loaded');
      return window.hallcastApi.api(...a);
    },
  };

  const state = (window.hallcastRollcall = {
    conference: '',
    data: null,
    nPolls: 0,
    lastError: null,
    setConference: (id) => setConference(id),
  });
  // The relay's clock minus ours (countdowns follow the relay's deadline).
  let skewMs = 0;
  let pollTimer = null;
  let tickTimer = null;
  let generation = 0;

  // ---------------------------------------------------------------- small DOM helpers

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : v);
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  /** Vietnamese first, English second. */
  const bi = (vi, en) => [el('span', { class: 'vi' }, vi), ' ', el('span', { class: 'en' }, en)];

  function time(ms) {
    const d = new Date(ms);
    return d.toLocaleTimeString('vi-VN', { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
  }

  function clock(ms) {
    const s = Math.max(0, Math.ceil(ms / 1000));
    return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
  }

  // ---------------------------------------------------------------- style (scoped to the panel)

  const css = `
#rollcall-panel{--rc-ok:#1a7f43;--rc-ok-bg:#e3f5ea;--rc-no:#9a6400;--rc-no-bg:#fff3d6;--rc-off:#b42318;--rc-off-bg:#fde7e4;--rc-line:#dde3ea;--rc-soft:#5b6876}
#rollcall-panel .rc-head{display:flex;flex-wrap:wrap;align-items:center;gap:.6rem 1rem;margin-bottom:.8rem}
#rollcall-panel h2{margin:0;font-size:1.25rem}
#rollcall-panel .en{color:var(--rc-soft);font-weight:normal;font-size:.92em}
#rollcall-panel .rc-controls{display:flex;flex-wrap:wrap;align-items:center;gap:.5rem}
#rollcall-panel select,#rollcall-panel button{font:inherit;height:2.2rem;padding:0 .7rem;border:1px solid var(--rc-line);border-radius:8px;background:#fff}
#rollcall-panel button.rc-start{background:#1f6feb;border-color:#1f6feb;color:#fff;font-weight:600;cursor:pointer}
#rollcall-panel button.rc-start .en{color:inherit;opacity:.85}
#rollcall-panel button:disabled{opacity:.55;cursor:not-allowed}
#rollcall-panel .rc-msg{min-height:1.2em;margin:.2rem 0 .6rem;color:var(--rc-soft)}
#rollcall-panel .rc-msg.bad{color:var(--rc-off)}
#rollcall-panel .rc-current{border:1px solid var(--rc-line);border-radius:10px;padding:.7rem .9rem;background:#fff}
#rollcall-panel .rc-summary{display:flex;flex-wrap:wrap;gap:.4rem 1.2rem;align-items:baseline;margin-bottom:.6rem}
#rollcall-panel .rc-clock{font-size:1.6rem;font-weight:700;font-variant-numeric:tabular-nums;color:var(--rc-no)}
#rollcall-panel .rc-over{font-weight:600;color:var(--rc-soft)}
#rollcall-panel .rc-cols{display:grid;grid-template-columns:repeat(3,minmax(0,1fr));gap:.7rem}
#rollcall-panel .rc-col{border-radius:8px;padding:.5rem .6rem;min-height:4rem}
#rollcall-panel .rc-col h3{margin:0 0 .35rem;font-size:1rem}
#rollcall-panel .rc-col[data-outcome=answered]{background:var(--rc-ok-bg)}
#rollcall-panel .rc-col[data-outcome=answered] h3{color:var(--rc-ok)}
#rollcall-panel .rc-col[data-outcome=no_answer]{background:var(--rc-no-bg)}
#rollcall-panel .rc-col[data-outcome=no_answer] h3{color:var(--rc-no)}
#rollcall-panel .rc-col[data-outcome=not_connected]{background:var(--rc-off-bg)}
#rollcall-panel .rc-col[data-outcome=not_connected] h3{color:var(--rc-off)}
#rollcall-panel .rc-col ul{list-style:none;margin:0;padding:0;max-height:22rem;overflow:auto}
#rollcall-panel .rc-col li{display:flex;justify-content:space-between;gap:.5rem;padding:.2rem 0;border-top:1px solid rgba(0,0,0,.06)}
#rollcall-panel .rc-col li:first-child{border-top:0}
#rollcall-panel .rc-org{color:var(--rc-soft);font-size:.88em}
#rollcall-panel .rc-people{font-variant-numeric:tabular-nums;white-space:nowrap;text-align:right}
#rollcall-panel .rc-empty{color:var(--rc-soft);font-style:italic}
#rollcall-panel table{border-collapse:collapse;width:100%;margin-top:.4rem}
#rollcall-panel th,#rollcall-panel td{border-bottom:1px solid var(--rc-line);padding:.25rem .4rem;text-align:left}
#rollcall-panel td.n{text-align:right;font-variant-numeric:tabular-nums}
#rollcall-panel details{margin-top:.8rem}
`;
  if (!document.getElementById('rollcall-style')) {
    document.head.append(el('style', { id: 'rollcall-style' }, css));
  }

  // ---------------------------------------------------------------- skeleton

  const durationSel = el(
    'select',
    { id: 'rollcall-duration', 'aria-label': 'Thời gian điểm danh / Roll call duration' },
    DURATIONS.map((s) =>
      el('option', { value: String(s), selected: s === DEFAULT_DURATION }, s < 60 ? `${s} giây / s` : `${s / 60} phút / min`),
    ),
  );
  const startBtn = el('button', { type: 'button', id: 'rollcall-start', class: 'rc-start' }, bi('Bắt đầu điểm danh', 'Start roll call'));
  const msg = el('p', { class: 'rc-msg', role: 'status', 'aria-live': 'polite' });
  const current = el('div', { class: 'rc-current', id: 'rollcall-current' });
  const history = el('div', { id: 'rollcall-history' });
  panel.replaceChildren(
    el(
      'div',
      { class: 'rc-head' },
      el('h2', {}, bi('Điểm danh', 'Roll call')),
      el('div', { class: 'rc-controls' }, el('label', { for: 'rollcall-duration' }, bi('Thời gian', 'Duration')), durationSel, startBtn),
    ),
    msg,
    current,
    history,
  );

  function say(vi, en, bad = false) {
    msg.replaceChildren(...(vi ? bi(vi, en) : []));
    msg.className = bad ? 'rc-msg bad' : 'rc-msg';
  }

  // ---------------------------------------------------------------- rendering

  const COLS = [
    ['answered', 'Đã trả lời', 'Answered'],
    ['no_answer', 'Không trả lời', 'No answer'],
    ['not_connected', 'Không kết nối', 'Not connected'],
  ];

  function pointItem(p) {
    const name = el('span', {}, p.name || p.point, ' ', el('span', { class: 'rc-org' }, p.org_name ? `· ${p.org_name}` : ''));
    const right =
      p.outcome === 'answered'
        ? el('span', { class: 'rc-people' }, `${p.n_people} người · ${time(p.at_ms)}`)
        : el('span', { class: 'rc-people rc-org' }, p.point);
    return el('li', { 'data-point': p.point }, name, right);
  }

  function renderCurrent(rc) {
    if (!rc) {
      current.replaceChildren(el('p', { class: 'rc-empty' }, bi('Chưa có lượt điểm danh nào.', 'No roll call yet.')));
      current.dataset.rollcall = '';
      return;
    }
    current.dataset.rollcall = rc.id;
    current.dataset.running = String(rc.running);
    const clockEl = rc.running
      ? el('span', { class: 'rc-clock', id: 'rollcall-clock' }, clock(rc.deadline_ms - (Date.now() + skewMs)))
      : el('span', { class: 'rc-over' }, bi('Đã kết thúc', 'Over'));
    const summary = el(
      'div',
      { class: 'rc-summary' },
      el('strong', {}, bi(`Lượt lúc ${time(rc.started_ms)}`, `started ${time(rc.started_ms)}`)),
      clockEl,
      el('span', {}, bi('Số người', 'People'), ': ', el('b', { id: 'rollcall-people' }, String(rc.n_people))),
    );
    const cols = el(
      'div',
      { class: 'rc-cols' },
      COLS.map(([outcome, vi, en]) => {
        const pts = rc.points.filter((p) => p.outcome === outcome);
        return el(
          'section',
          { class: 'rc-col', 'data-outcome': outcome },
          el('h3', {}, bi(vi, en), ` (${pts.length})`),
          pts.length ? el('ul', {}, pts.map(pointItem)) : el('p', { class: 'rc-empty' }, '—'),
        );
      }),
    );
    current.replaceChildren(summary, cols);
  }

  function renderHistory(list) {
    const older = list.slice(0, -1).reverse();
    if (!older.length) {
      history.replaceChildren();
      return;
    }
    const rows = older.map((rc) =>
      el(
        'tr',
        { 'data-rollcall': rc.id },
        el('td', {}, time(rc.started_ms)),
        el('td', { class: 'n' }, String(rc.counts.answered)),
        el('td', { class: 'n' }, String(rc.counts.no_answer)),
        el('td', { class: 'n' }, String(rc.counts.not_connected)),
        el('td', { class: 'n' }, String(rc.n_people)),
      ),
    );
    history.replaceChildren(
      el(
        'details',
        {},
        el('summary', {}, bi(`Các lượt trước (${older.length})`, `Earlier roll calls (${older.length})`)),
        el(
          'table',
          {},
          el(
            'tr',
            {},
            el('th', {}, bi('Bắt đầu', 'Started')),
            el('th', {}, bi('Đã trả lời', 'Answered')),
            el('th', {}, bi('Không trả lời', 'No answer')),
            el('th', {}, bi('Không kết nối', 'Not connected')),
            el('th', {}, bi('Số người', 'People')),
          ),
          rows,
        ),
      ),
    );
  }

  function render() {
    const d = state.data;
    const list = (d && d.rollcalls) || [];
    const latest = list.length ? list[list.length - 1] : null;
    startBtn.disabled = !state.conference || !!(d && d.running);
    renderCurrent(latest);
    renderHistory(list);
    clearInterval(tickTimer);
    if (latest && latest.running) {
      tickTimer = setInterval(() => {
        const c = document.getElementById('rollcall-clock');
        const left = latest.deadline_ms - (Date.now() + skewMs);
        if (c) c.textContent = clock(left);
        if (left <= 0) {
          clearInterval(tickTimer);
          poll();
        }
      }, TICK_MS);
    }
  }

  // ---------------------------------------------------------------- data

  function listUrl() {
    return `/api/v1/conferences/${encodeURIComponent(state.conference)}/rollcalls`;
  }

  async function poll() {
    clearTimeout(pollTimer);
    const gen = generation;
    if (state.conference) {
      try {
        const d = await hapi.api('GET', listUrl());
        if (gen !== generation) return;
        skewMs = typeof d.now_ms === 'number' ? d.now_ms - Date.now() : 0;
        state.data = d;
        state.nPolls += 1;
        state.lastError = null;
        render();
      } catch (e) {
        if (gen !== generation) return;
        state.lastError = e.message;
        say(e.message, '', true);
      }
    }
    if (gen === generation) pollTimer = setTimeout(poll, POLL_MS);
  }

  async function start() {
    if (!state.conference) return;
    startBtn.disabled = true;
    say('Đang bắt đầu…', 'Starting…');
    try {
      const r = await hapi.api('POST', listUrl(), { duration_s: Number(durationSel.value) });
      say(`Đã bắt đầu điểm danh, hạn chót ${time(r.deadline_ms)}.`, `Roll call started, deadline ${time(r.deadline_ms)}.`);
    } catch (e) {
      say(e.message, '', true);
    }
    await poll();
  }

  function setConference(id) {
    id = typeof id === 'string' ? id : (id && id.id) || '';
    if (id === state.conference) return;
    state.conference = id;
    state.data = null;
    generation += 1;
    say('', '');
    render();
    poll();
  }

  startBtn.addEventListener('click', start);
  document.addEventListener('hallcast:conference', (e) => setConference(e.detail));
  window.addEventListener('hallcast:conference', (e) => setConference(e.detail));

  const initial =
    panel.dataset.conference ||
    (window.hallcastAdmin && window.hallcastAdmin.conference) ||
    new URLSearchParams(location.search).get('conference') ||
    '';
  render();
  setConference(initial);
})();
