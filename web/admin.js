// hallcast admin dashboard (/admin): the roster board with live counts, the relay tree, alerts
// with a sound, the attendance report and its exports, the registry (organisations, points, CSV
// import) and the join links (QR codes, print, revoke). Plain script, no build step; every call
// goes through window.hallcastApi (web/api.js).
//
// Live updates: GET /api/v1/conferences/{id}/board/stream is read with fetch (so the same
// credentials as every other call are sent: the session cookie, or the bearer token kept in
// sessionStorage), parsed as server-sent events; it reconnects by itself with backoff.
//
// For other scripts (the roll-call panel) and tests: window.hallcastAdmin = { conference,
// board, nBoards, nBeeps, feed }, and a `hallcast:conference` event on document when the
// conference changes (detail: the conference id).
'use strict';

(() => {
  const { api, headers } = window.hallcastApi;
  const $ = (sel, root = document) => root.querySelector(sel);
  const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

  const admin = {
    conference: '',
    board: null,
    nBoards: 0,
    nBeeps: 0,
    feed: 'connecting',
    tab: 'board',
  };
  window.hallcastAdmin = admin;

  // A token handed over in the fragment (/admin#token=...) is kept for this tab only.
  if (location.hash.startsWith('#token=')) {
    sessionStorage.setItem('hallcast_token', decodeURIComponent(location.hash.slice(7)));
    history.replaceState(null, '', location.pathname + location.search);
  }

  const STATE_TEXT = {
    connected: ['Đã kết nối', 'connected'],
    degraded: ['Chất lượng kém', 'degraded'],
    left: ['Vừa rời', 'left'],
    missing: ['Vắng', 'missing'],
  };

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else if (k === 'html') e.innerHTML = v;
      else e.setAttribute(k, v === true ? '' : v);
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  /** "Tiếng Việt" then a muted English gloss. */
  function bi(vi, en) {
    return [el('span', { class: 'vi' }, vi), ' ', el('span', { class: 'en' }, en)];
  }

  function toast(msg, bad) {
    const t = $('#toast');
    t.textContent = msg;
    t.className = bad ? 'bad' : '';
    t.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => { t.hidden = true; }, bad ? 8000 : 3000);
  }

  function fmtBps(b) {
    if (b === null || b === undefined) return '–';
    if (b >= 1e6) return `${(b / 1e6).toFixed(1)} Mbit/s`;
    return `${Math.round(b / 1e3)} kbit/s`;
  }

  function fmtDur(s) {
    if (s === null || s === undefined) return '–';
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    const sec = s % 60;
    return h ? `${h}:${String(m).padStart(2, '0')}:${String(sec).padStart(2, '0')}` : `${m}:${String(sec).padStart(2, '0')}`;
  }

  function fmtTime(ms) {
    return new Date(ms).toLocaleTimeString('vi-VN', { hour12: false });
  }

  function dash(v, f) {
    return v === null || v === undefined ? '–' : f ? f(v) : String(v);
  }

  // ----- conference picker -----

  async function loadConferences() {
    const list = await api('GET', '/api/v1/conferences');
    const sel = $('#conference');
    sel.replaceChildren(...list.map((c) => el('option', { value: c.id }, `${c.title || c.id} (${c.id})${c.state === 'ended' ? ' — đã kết thúc · ended' : ''}`)));
    const wanted = new URLSearchParams(location.search).get('conference');
    const pick = list.find((c) => c.id === wanted) || list.find((c) => c.state === 'open') || list[0];
    if (!pick) {
      $('#board').replaceChildren(el('p', { class: 'empty' }, ...bi('Chưa có hội nghị nào.', 'No conference yet.')));
      return;
    }
    sel.value = pick.id;
    selectConference(pick.id);
  }

  function selectConference(id) {
    admin.conference = id;
    const u = new URL(location.href);
    u.searchParams.set('conference', id);
    history.replaceState(null, '', u.pathname + u.search);
    document.dispatchEvent(new CustomEvent('hallcast:conference', { detail: id }));
    admin.board = null;
    knownAlerts = null;
    startStream();
    refreshTab();
  }

  // ----- the live board stream -----

  let streamAbort = null;

  function setFeed(state) {
    admin.feed = state;
    const f = $('#feed');
    f.dataset.state = state;
    $('#feed-text').textContent = {
      live: 'Trực tiếp · live',
      connecting: 'Đang kết nối… · connecting…',
      retry: 'Mất kết nối, đang thử lại · reconnecting',
    }[state] || state;
  }

  async function startStream() {
    if (streamAbort) streamAbort.abort();
    const ctl = new AbortController();
    streamAbort = ctl;
    const conf = admin.conference;
    let backoff = 500;
    while (!ctl.signal.aborted && conf === admin.conference) {
      setFeed('connecting');
      try {
        const r = await fetch(`/api/v1/conferences/${encodeURIComponent(conf)}/board/stream`, {
          headers: headers('GET', { Accept: 'text/event-stream' }),
          credentials: 'same-origin',
          cache: 'no-store',
          signal: ctl.signal,
        });
        if (!r.ok) {
          let msg = `HTTP ${r.status}`;
          try { msg = (await r.json()).message || msg; } catch (_) { /* not JSON */ }
          if (r.status === 401 && !sessionStorage.getItem('hallcast_token')) {
            location.href = `/login?next=${encodeURIComponent(location.pathname + location.search)}`;
            return;
          }
          throw new Error(msg);
        }
        setFeed('live');
        backoff = 500;
        const reader = r.body.getReader();
        const dec = new TextDecoder();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += dec.decode(value, { stream: true });
          let i;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, i);
            buf = buf.slice(i + 2);
            let event = 'message';
            const data = [];
            for (const line of block.split('\n')) {
              if (line.startsWith('event:')) event = line.slice(6).trim();
              else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
            }
            if (event === 'board' && data.length) onBoard(JSON.parse(data.join('\n')));
          }
        }
      } catch (e) {
        if (ctl.signal.aborted) return;
        console.warn('board stream:', e.message);
      }
      if (ctl.signal.aborted) return;
      setFeed('retry');
      await new Promise((res) => setTimeout(res, backoff));
      backoff = Math.min(backoff * 2, 10000);
    }
  }

  // The stream sends a board when something changed, not every second: times connected run on
  // here between two boards.
  setInterval(() => {
    if (!admin.boardAt) return;
    const extra = Math.floor((Date.now() - admin.boardAt) / 1000);
    $$('#board td[data-cs]').forEach((td) => {
      if (td.dataset.cs !== '') td.textContent = fmtDur(Number(td.dataset.cs) + extra);
    });
  }, 1000);

  function onBoard(b) {
    if (b.conference !== admin.conference) return;
    admin.board = b;
    admin.boardAt = Date.now();
    admin.nBoards += 1;
    renderCounts(b);
    renderBoard(b);
    renderAlerts(b.alerts);
    if (admin.tab === 'tree') renderTree();
  }

  function renderCounts(b) {
    const live = $('#live');
    live.className = `badge ${b.live ? 'on' : 'off'}`;
    live.replaceChildren(...(b.live ? bi('Đang phát', 'Live') : bi('Chưa phát', 'Not live')));
    $('#c-orgs').textContent = `${b.counts.organisations[0]}/${b.counts.organisations[1]}`;
    $('#c-points').textContent = `${b.counts.points[0]}/${b.counts.points[1]}`;
    $('#c-people').textContent = `${b.counts.people[0]}/${b.counts.people[1]}`;
  }

  // ----- roster board -----

  function renderBoard(b) {
    const onlyProblems = $('#only-problems').checked;
    const root = $('#board');
    if (!b.organisations.length) {
      root.replaceChildren(el('p', { class: 'empty' }, ...bi('Chưa có đơn vị nào trong danh sách — thêm ở thẻ "Đơn vị & điểm cầu".', 'No organisation registered yet — add them in the Registry tab.')));
      return;
    }
    const blocks = b.organisations.map((o) => {
      const rows = o.points
        .filter((p) => !onlyProblems || p.state !== 'connected')
        .map((p) => el('tr', { class: `st-row-${p.state}`, 'data-point': p.id, 'data-state': p.state },
          el('td', { class: 'name' }, el('b', {}, p.name), el('div', { class: 'muted' }, p.id)),
          el('td', {}, el('span', { class: `st st-${p.state}` }, `${STATE_TEXT[p.state][0]} · ${STATE_TEXT[p.state][1]}`)),
          el('td', {}, dash(p.relay)),
          el('td', { class: 'num' }, dash(p.layer)),
          el('td', { class: 'num' }, fmtBps(p.bitrate_bps)),
          el('td', { class: 'num' }, dash(p.rtt_ms, (v) => `${v} ms`)),
          el('td', { class: `num ${p.loss >= 0.05 ? 'warn' : ''}` }, dash(p.loss, (v) => `${(v * 100).toFixed(1)} %`)),
          el('td', { class: `num ${p.freezes ? 'warn' : ''}` }, String(p.freezes)),
          el('td', { class: 'num', 'data-cs': p.connected_s ?? '' }, fmtDur(p.connected_s)),
          el('td', { class: 'num' }, dash(p.people))));
      const present = o.connected + o.degraded;
      return el('section', { class: `org ${present === 0 ? 'org-none' : o.missing ? 'org-some' : 'org-all'}`, 'data-org': o.id },
        el('header', {},
          el('h3', {}, o.name, ' ', el('span', { class: 'muted' }, o.id)),
          el('div', { class: 'org-counts' },
            el('span', { class: 'big' }, `${present}/${o.expected}`),
            el('span', { class: 'st st-connected' }, `${o.connected} kết nối · connected`),
            o.degraded ? el('span', { class: 'st st-degraded' }, `${o.degraded} kém · degraded`) : null,
            o.missing ? el('span', { class: 'st st-missing' }, `${o.missing} vắng · missing`) : null)),
        rows.length ? el('table', { class: 'grid points' },
          el('thead', {}, el('tr', {}, [
            ['Điểm cầu', 'point'], ['Trạng thái', 'state'], ['Trạm', 'relay'], ['Lớp', 'layer'], ['Bitrate', ''],
            ['RTT', ''], ['Mất gói', 'loss'], ['Đóng băng', 'freezes'], ['Đã kết nối', 'connected'], ['Số người', 'people'],
          ].map(([vi, en]) => el('th', {}, vi, el('br'), el('span', { class: 'en' }, en))))),
          el('tbody', {}, rows)) : null);
    });
    root.replaceChildren(...blocks);
  }

  // ----- alerts -----

  let knownAlerts = null; // ids seen in the previous board (null: first board, no sound)
  const pastAlerts = [];
  let audio = null;

  function renderAlerts(alerts) {
    const ids = new Set(alerts.map((a) => a.id));
    if (knownAlerts) {
      const fresh = alerts.filter((a) => !knownAlerts.has(a.id));
      if (fresh.length) beep();
      for (const id of knownAlerts) {
        if (!ids.has(id)) {
          const gone = (renderAlerts.last || []).find((a) => a.id === id);
          if (gone) pastAlerts.unshift({ ...gone, cleared_ms: Date.now() });
        }
      }
      pastAlerts.splice(20);
    }
    knownAlerts = ids;
    renderAlerts.last = alerts;
    $('#n-alerts').textContent = String(alerts.length);
    $('#n-alerts').className = alerts.length ? 'pill hot' : 'pill';
    $('#no-alerts').hidden = alerts.length > 0;
    $('#alerts').replaceChildren(...alerts.slice().reverse().map((a) => el('li', { class: `alert alert-${a.kind}`, 'data-alert': a.id, 'data-kind': a.kind },
      el('div', { class: 'when' }, `${fmtTime(a.since_ms)} · ${a.kind}`),
      el('div', { class: 'vi' }, a.text_vi),
      el('div', { class: 'en' }, a.text_en))));
    $('#alerts-past').replaceChildren(...pastAlerts.map((a) => el('li', { class: 'alert past' },
      el('div', { class: 'when' }, `${fmtTime(a.since_ms)}–${fmtTime(a.cleared_ms)}`),
      el('div', { class: 'vi' }, a.text_vi))));
  }

  function beep() {
    admin.nBeeps += 1;
    if (!$('#sound').classList.contains('on') && !audio) {
      // Browsers start audio only after a gesture; try anyway (a kiosk may allow it).
      try { audio = new AudioContext(); } catch (_) { return; }
    }
    if (!audio) return;
    try {
      const t0 = audio.currentTime;
      for (let i = 0; i < 3; i++) {
        const o = audio.createOscillator();
        const g = audio.createGain();
        o.frequency.value = i % 2 ? 660 : 880;
        g.gain.setValueAtTime(0.0001, t0 + i * 0.25);
        g.gain.exponentialRampToValueAtTime(0.3, t0 + i * 0.25 + 0.02);
        g.gain.exponentialRampToValueAtTime(0.0001, t0 + i * 0.25 + 0.2);
        o.connect(g).connect(audio.destination);
        o.start(t0 + i * 0.25);
        o.stop(t0 + i * 0.25 + 0.22);
      }
    } catch (e) {
      console.warn('alert sound:', e.message);
    }
  }

  function bell(on) {
    const s = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
    s.setAttribute('class', 'bell');
    s.setAttribute('viewBox', '0 0 24 24');
    s.innerHTML = `<path d="M12 3a6 6 0 0 0-6 6v4l-2 3h16l-2-3V9a6 6 0 0 0-6-6zm-2 15a2 2 0 0 0 4 0" fill="${on ? 'currentColor' : 'none'}" stroke="currentColor" stroke-width="2" stroke-linejoin="round"/>`;
    return s;
  }

  $('#sound').addEventListener('click', async () => {
    const b = $('#sound');
    if (b.classList.toggle('on')) {
      audio = audio || new AudioContext();
      await audio.resume();
      b.setAttribute('aria-pressed', 'true');
      b.replaceChildren(bell(true), ...bi('Âm báo đang bật', 'Sound is on'));
    } else {
      b.setAttribute('aria-pressed', 'false');
      b.replaceChildren(bell(false), ...bi('Bật âm báo', 'Sound on'));
      if (audio) { await audio.close(); audio = null; }
    }
  });

  // ----- relay tree -----

  let treeData = null;

  async function loadTree() {
    try {
      treeData = await api('GET', '/api/v1/tree');
      renderTree();
    } catch (e) {
      $('#tree').replaceChildren(el('p', { class: 'error' }, e.message));
    }
  }

  function linkHealth(n) {
    if (n.state === 'down') return 'bad';
    const loss = n.uplink && n.uplink.loss;
    const rtt = n.uplink && n.uplink.rtt_ms;
    if (n.state === 'stale' || (loss !== null && loss >= 0.05) || (rtt !== null && rtt >= 300) || (n.uplink && n.uplink.state && n.uplink.state !== 'up')) return 'warn';
    return 'good';
  }

  function pointsOn(name) {
    const b = admin.board;
    if (!b) return [];
    return b.organisations.flatMap((o) => o.points).filter((p) => p.relay === name && (p.state === 'connected' || p.state === 'degraded'));
  }

  const NODE_STATE = {
    up: 'hoạt động · up',
    stale: 'chậm báo cáo · stale',
    down: 'mất liên lạc · down',
  };

  function nodeCard(n, root) {
    const load = n.load || {};
    const pts = pointsOn(n.name);
    const health = root ? 'good' : linkHealth(n);
    return el('li', { class: `node node-${n.state || 'up'}`, 'data-node': n.name },
      el('div', { class: `card link-${health}` },
        el('div', { class: 'node-head' },
          el('b', {}, n.name),
          el('span', { class: `st st-${n.state === 'down' ? 'missing' : n.state === 'stale' ? 'degraded' : 'connected'}` }, root ? 'trung tâm · central' : NODE_STATE[n.state] || n.state)),
        el('div', { class: 'muted' }, n.url || '', (n.organisations && n.organisations.length) ? ` — đơn vị · organisations: ${n.organisations.join(', ')}` : ''),
        el('div', { class: 'kv' },
          el('span', {}, `${load.viewers ?? 0} điểm cầu · viewers`),
          el('span', {}, `${load.relays ?? 0} trạm con · relays`),
          el('span', {}, `CPU ${(load.cpu ?? 0).toFixed(2)}`),
          el('span', {}, `vào · in ${fmtBps(load.bitrate_in_bps ?? 0)}`)),
        (root || n.state === 'down') ? null : el('div', { class: 'kv link' },
          el('span', {}, `liên kết · link: ${(n.uplink && n.uplink.state) || '–'}`),
          el('span', {}, `RTT ${dash(n.uplink && n.uplink.rtt_ms, (v) => `${v} ms`)}`),
          el('span', {}, `mất gói · loss ${dash(n.uplink && n.uplink.loss, (v) => `${(v * 100).toFixed(1)} %`)}`),
          el('span', {}, `báo cáo · report ${dash(n.last_report_ms, (v) => `${(v / 1000).toFixed(1)} s`)}`)),
        n.state === 'down' ? el('div', { class: 'kv link' }, `không báo cáo từ ${dash(n.last_report_ms, (v) => `${(v / 1000).toFixed(0)} s`)} · no report for ${dash(n.last_report_ms, (v) => `${(v / 1000).toFixed(0)} s`)}`) : null,
        pts.length ? el('div', { class: 'leaf-points' }, pts.map((p) => el('span', { class: `st st-${p.state}` }, p.name))) : null),
      (n.children && n.children.length) ? el('ul', {}, n.children.map((c) => nodeCard(c, false))) : null);
  }

  function renderTree() {
    if (!treeData) return;
    $('#tree').replaceChildren(el('ul', { class: 'tree' }, nodeCard(treeData, true)));
  }

  // ----- report -----

  async function loadReport() {
    const root = $('#report');
    try {
      const r = await api('GET', `/api/v1/conferences/${encodeURIComponent(admin.conference)}/report?format=json&lang=vi`);
      const s = r.summary;
      const fig = (vi, en, v) => el('div', { class: 'count' }, el('b', {}, v), el('span', { class: 'vi' }, vi), el('span', { class: 'en' }, en));
      const b = r.broadcast || {};
      root.replaceChildren(
        el('div', { class: 'counts report-figs' },
          fig('Đơn vị có kết nối', 'Organisations connected', `${s.n_orgs_connected}/${s.n_orgs}`),
          fig('Điểm cầu có kết nối', 'Points connected', `${s.n_points_connected}/${s.n_points}`),
          fig('Số người dự', 'People declared', `${s.total_headcount}/${s.total_expected_headcount}`),
          fig('Thời gian phát', 'Broadcast', b.start ? `${b.start.slice(11, 19)} – ${b.end ? b.end.slice(11, 19) : '…'}` : '–')),
        el('table', { class: 'grid', id: 'report-points' },
          el('thead', {}, el('tr', {}, [
            ['Đơn vị', 'organisation'], ['Điểm cầu', 'point'], ['Vào đầu tiên', 'first join'], ['Rời lần cuối', 'last leave'],
            ['Phút có mặt', 'minutes present'], ['% buổi phát', 'of the broadcast'], ['Gián đoạn', 'interruptions'], ['Số người', 'people'],
          ].map(([vi, en]) => el('th', {}, vi, el('br'), el('span', { class: 'en' }, en))))),
          el('tbody', {}, r.points.map((p) => el('tr', { class: p.connected ? '' : 'st-row-missing' },
            el('td', {}, p.org_name), el('td', {}, p.name),
            el('td', {}, p.first_join ? p.first_join.slice(11, 19) : '–'),
            el('td', {}, p.last_leave ? p.last_leave.slice(11, 19) : '–'),
            el('td', { class: 'num' }, p.minutes_present.toFixed(1)),
            el('td', { class: 'num' }, `${p.percent_of_broadcast.toFixed(0)} %`),
            el('td', { class: 'num' }, String(p.interruptions)),
            el('td', { class: 'num' }, dash(p.headcount)))))),
        recordingsTable(r.recordings || []));
    } catch (e) {
      root.replaceChildren(el('p', { class: 'error' }, e.message));
    }
  }

  // Each broadcast's recording (the report links them); a plain link: the console's
  // session cookie authorises the GET, and the browser streams the file to disk.
  function recordingsTable(recs) {
    const head = el('h2', {}, el('span', { class: 'vi' }, 'Bản ghi các buổi phát'), ' ', el('span', { class: 'en' }, 'Recordings'));
    if (!recs.length) {
      return el('section', { id: 'recordings' }, head, el('p', { class: 'empty' }, 'Chưa có bản ghi · no recording yet'));
    }
    const state = { complete: 'Hoàn tất · complete', recording: 'Đang ghi · recording', interrupted: 'Bị ngắt · interrupted' };
    return el('section', { id: 'recordings' }, head,
      el('table', { class: 'grid' },
        el('thead', {}, el('tr', {}, [
          ['Bắt đầu', 'start'], ['Kết thúc', 'end'], ['Thời lượng (phút)', 'minutes'], ['Dung lượng (MB)', 'size (MB)'], ['Trạng thái', 'state'], ['', ''],
        ].map(([vi, en]) => el('th', {}, vi, el('br'), el('span', { class: 'en' }, en))))),
        el('tbody', {}, recs.map((x) => el('tr', {},
          el('td', {}, x.start.slice(11, 19)),
          el('td', {}, x.end ? x.end.slice(11, 19) : '–'),
          el('td', { class: 'num' }, x.duration_ms == null ? '–' : (x.duration_ms / 60000).toFixed(1)),
          el('td', { class: 'num' }, (x.bytes / 1e6).toFixed(1)),
          el('td', {}, state[x.state] || x.state),
          el('td', {}, el('a', { href: x.url, download: '' }, 'Tải về · download')))))));
  }

  async function download(url, filename, open) {
    const r = await fetch(url, { headers: headers('GET', { Accept: '*/*' }), credentials: 'same-origin', cache: 'no-store' });
    if (!r.ok) {
      let msg = `HTTP ${r.status}`;
      try { msg = (await r.json()).message || msg; } catch (_) { /* not JSON */ }
      throw new Error(msg);
    }
    const blob = await r.blob();
    const href = URL.createObjectURL(blob);
    if (open) {
      window.open(href, '_blank', 'noopener');
    } else {
      const a = el('a', { href, download: filename });
      document.body.append(a);
      a.click();
      a.remove();
    }
    setTimeout(() => URL.revokeObjectURL(href), 60000);
  }

  $$('[data-report]').forEach((b) => b.addEventListener('click', async () => {
    const f = b.dataset.report;
    const c = encodeURIComponent(admin.conference);
    try {
      await download(`/api/v1/conferences/${c}/report?format=${f}&lang=${b.dataset.lang}`, `diem-danh-${admin.conference}.${f}`, f === 'html');
    } catch (e) { toast(e.message, true); }
  }));
  $('#report-refresh').addEventListener('click', loadReport);

  // ----- registry -----

  let orgs = [];
  let points = [];

  async function loadRegistry() {
    [orgs, points] = await Promise.all([api('GET', '/api/v1/organisations'), api('GET', '/api/v1/points')]);
    renderRegistry();
  }

  function renderRegistry() {
    const count = (id) => points.filter((p) => p.org_id === id).length;
    $('#orgs tbody').replaceChildren(...orgs.map((o) => {
      const name = el('input', { value: o.name, 'aria-label': 'Tên đơn vị · name' });
      return el('tr', { 'data-org': o.id },
        el('td', {}, o.id),
        el('td', {}, name),
        el('td', { class: 'num' }, String(count(o.id))),
        el('td', { class: 'acts' },
          el('button', { type: 'button', onclick: () => guarded(async () => { await api('PUT', `/api/v1/organisations/${encodeURIComponent(o.id)}`, { name: name.value }); toast('Đã lưu · saved'); await loadRegistry(); }) }, 'Lưu · save'),
          el('button', { type: 'button', class: 'danger', onclick: () => guarded(async () => {
            if (!confirm(`Xoá đơn vị ${o.id}? / Delete organisation ${o.id}?`)) return;
            await api('DELETE', `/api/v1/organisations/${encodeURIComponent(o.id)}`); await loadRegistry();
          }) }, 'Xoá · delete')));
    }));
    const orgOptions = () => orgs.map((o) => el('option', { value: o.id }, `${o.name} (${o.id})`));
    $('#point-form [name=org_id]').replaceChildren(...orgOptions());
    $('#points tbody').replaceChildren(...points.map((p) => {
      const org = el('select', { 'aria-label': 'Đơn vị · organisation' }, orgOptions());
      org.value = p.org_id;
      const name = el('input', { value: p.name, size: 18 });
      const loc = el('input', { value: p.location, size: 16 });
      const n = el('input', { type: 'number', min: 0, value: p.expected_headcount ?? '', style: 'width:5em' });
      return el('tr', { 'data-point': p.id },
        el('td', {}, p.id), el('td', {}, org), el('td', {}, name), el('td', {}, loc), el('td', {}, n),
        el('td', { class: 'acts' },
          el('button', { type: 'button', onclick: () => guarded(async () => {
            await api('PUT', `/api/v1/points/${encodeURIComponent(p.id)}`, { org_id: org.value, name: name.value, location: loc.value, expected_headcount: n.value === '' ? null : Number(n.value) });
            toast('Đã lưu · saved'); await loadRegistry();
          }) }, 'Lưu · save'),
          el('button', { type: 'button', class: 'danger', onclick: () => guarded(async () => {
            if (!confirm(`Xoá điểm cầu ${p.id}? / Delete point ${p.id}?`)) return;
            await api('DELETE', `/api/v1/points/${encodeURIComponent(p.id)}`); await loadRegistry();
          }) }, 'Xoá · delete')));
    }));
  }

  async function guarded(f) {
    try { await f(); } catch (e) { toast(e.message, true); }
  }

  $('#org-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const f = new FormData(ev.target);
    guarded(async () => {
      await api('POST', '/api/v1/organisations', { id: f.get('id').trim(), name: f.get('name').trim() });
      ev.target.reset();
      toast('Đã lưu đơn vị · organisation saved');
      await loadRegistry();
    });
  });

  $('#point-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const f = new FormData(ev.target);
    const n = f.get('expected_headcount');
    guarded(async () => {
      await api('POST', '/api/v1/points', {
        id: f.get('id').trim(), org_id: f.get('org_id'), name: f.get('name').trim(),
        location: f.get('location').trim(), expected_headcount: n === '' ? null : Number(n),
      });
      ev.target.reset();
      toast('Đã lưu điểm cầu · point saved');
      await loadRegistry();
    });
  });

  /** The relay's CSV error ("N problem(s)…:\nline 3: …\nline 7: …") as rows of (line, message). */
  function csvProblems(message) {
    const rows = [];
    for (const line of message.split('\n')) {
      const m = /^\s*line (\d+): (.*)$/.exec(line);
      if (m) rows.push([Number(m[1]), m[2]]);
    }
    return rows;
  }

  $('#import-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const file = $('#import-file').files[0];
    const out = $('#import-result');
    if (!file) return;
    out.replaceChildren(el('p', { class: 'muted' }, 'Đang nhập… · importing…'));
    try {
      const r = await api('POST', '/api/v1/points/import', await file.text(), { contentType: 'text/csv; charset=utf-8' });
      out.replaceChildren(el('p', { class: 'ok' }, ...bi(`Đã nhập ${r.n_points} điểm cầu của ${r.n_organisations} đơn vị.`, `Imported ${r.n_points} points of ${r.n_organisations} organisations.`)));
      await loadRegistry();
    } catch (e) {
      const rows = csvProblems(e.message);
      const head = e.message.split('\n')[0];
      out.replaceChildren(
        el('p', { class: 'error' }, ...bi('Không nhập gì: tệp có lỗi. ', 'Nothing imported: the file has errors.'), el('br'), head),
        rows.length ? el('table', { class: 'grid errors', id: 'import-errors' },
          el('thead', {}, el('tr', {}, el('th', {}, 'Dòng · line'), el('th', {}, 'Lỗi · problem'))),
          el('tbody', {}, rows.map(([n, m]) => el('tr', { 'data-line': n }, el('td', { class: 'num' }, String(n)), el('td', {}, m))))) : null);
    }
  });

  $('#export-csv').addEventListener('click', () => guarded(() => download('/api/v1/points?format=csv', 'diem-cau.csv', false)));

  // ----- join links -----

  let links = [];

  async function loadLinks() {
    const c = encodeURIComponent(admin.conference);
    links = await api('GET', `/api/v1/conferences/${c}/links?format=json`);
    const tbody = $('#links tbody');
    tbody.replaceChildren(...links.map((l) => el('tr', { 'data-point': l.point_id },
      el('td', {}, l.org_name || l.org_id),
      el('td', {}, el('b', {}, l.point_name), el('div', { class: 'muted' }, l.point_id)),
      el('td', { class: 'qr', 'data-qr': l.point_id }),
      el('td', { class: 'link' }, el('code', {}, l.url)),
      el('td', { class: 'acts' },
        el('button', { type: 'button', onclick: () => guarded(async () => { await copyText(l.url); toast('Đã chép · copied'); }) }, 'Chép · copy'),
        el('button', { type: 'button', class: 'danger', onclick: () => guarded(async () => {
          if (!confirm(`Thu hồi đường dẫn của ${l.point_name}? / Revoke ${l.point_name}'s links?`)) return;
          const r = await api('POST', `/api/v1/conferences/${c}/points/${encodeURIComponent(l.point_id)}/revoke`);
          toast(`Đã thu hồi (thế hệ ${r.generation}) · revoked (generation ${r.generation})`);
          await loadLinks();
        }) }, 'Thu hồi · revoke')))));
    // QR codes: SVG from the relay, fetched with the same credentials, shown inline.
    await Promise.all(links.map(async (l) => {
      try {
        const svg = await qrSvg(l.point_id);
        const cell = tbody.querySelector(`[data-qr="${CSS.escape(l.point_id)}"]`);
        if (cell) cell.innerHTML = svg;
      } catch (e) { console.warn('QR', l.point_id, e.message); }
    }));
  }

  /** Copies text; the clipboard API needs a secure context (https or localhost), so an admin
   * page served over plain http on a LAN falls back to a selected textarea. */
  async function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return;
    }
    const t = el('textarea', { style: 'position:fixed;left:-9999px' });
    t.value = text;
    document.body.append(t);
    t.select();
    const ok = document.execCommand('copy');
    t.remove();
    if (!ok) throw new Error('Không chép được, hãy chọn và chép tay · copy failed, select and copy by hand');
  }

  async function qrSvg(point) {
    const c = encodeURIComponent(admin.conference);
    const r = await fetch(`/api/v1/conferences/${c}/links/qr/${encodeURIComponent(point)}.svg`, { headers: headers('GET', { Accept: 'image/svg+xml' }), credentials: 'same-origin', cache: 'no-store' });
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    const text = await r.text();
    // Only an SVG document is put in the page.
    const doc = new DOMParser().parseFromString(text, 'image/svg+xml');
    const svg = doc.documentElement;
    if (svg.nodeName !== 'svg') throw new Error('not an SVG');
    $$('script', doc).forEach((s) => s.remove());
    return new XMLSerializer().serializeToString(svg);
  }

  /** The printable sheet: one card per point (organisation, point, QR code, link). */
  async function printSheet() {
    if (!links.length) await loadLinks();
    const title = $('#conference').selectedOptions[0]?.textContent || admin.conference;
    const sheet = $('#print-sheet');
    const cards = await Promise.all(links.map(async (l) => {
      const qr = el('div', { class: 'qr' });
      qr.innerHTML = await qrSvg(l.point_id).catch(() => '');
      return el('div', { class: 'pcard', 'data-point': l.point_id },
        qr,
        el('div', { class: 'muted' }, l.org_name || l.org_id),
        el('div', { class: 'big' }, l.point_name),
        el('code', {}, l.url));
    }));
    sheet.replaceChildren(
      el('h1', {}, title),
      el('p', {}, 'Mỗi điểm cầu dùng đúng đường dẫn của mình: mở bằng trình duyệt trên máy tính phòng họp, hoặc quét mã QR. · Each point uses its own link: open it in a browser on the room\'s computer, or scan the QR code.'),
      el('div', { class: 'pcards' }, cards));
    sheet.hidden = false;
    document.body.classList.add('printing');
    return sheet;
  }

  function endPrint() {
    document.body.classList.remove('printing');
    $('#print-sheet').hidden = true;
  }
  admin.printSheet = printSheet;
  admin.endPrint = endPrint;

  $('#links-print').addEventListener('click', () => guarded(async () => {
    await printSheet();
    window.addEventListener('afterprint', endPrint, { once: true });
    window.print();
  }));
  $('#links-csv').addEventListener('click', () => guarded(() => download(`/api/v1/conferences/${encodeURIComponent(admin.conference)}/links?format=csv`, `duong-dan-${admin.conference}.csv`, false)));

  // ----- tabs -----

  let treeTimer = null;

  function showTab(name) {
    admin.tab = name;
    $$('#tabs [role=tab]').forEach((b) => b.setAttribute('aria-selected', String(b.dataset.tab === name)));
    $$('.tab').forEach((s) => { s.hidden = s.id !== `tab-${name}`; });
    refreshTab();
  }

  function refreshTab() {
    clearInterval(treeTimer);
    treeTimer = null;
    if (!admin.conference) return;
    const name = admin.tab;
    if (name === 'tree') {
      loadTree();
      treeTimer = setInterval(loadTree, 2000);
    } else if (name === 'report') {
      loadReport();
    } else if (name === 'registry') {
      guarded(loadRegistry);
    } else if (name === 'links') {
      guarded(loadLinks);
    }
  }
  admin.showTab = showTab;

  $$('#tabs [role=tab]').forEach((b) => b.addEventListener('click', () => showTab(b.dataset.tab)));
  $('#conference').addEventListener('change', (ev) => selectConference(ev.target.value));
  $('#only-problems').addEventListener('change', () => admin.board && renderBoard(admin.board));

  guarded(loadConferences);
})();
