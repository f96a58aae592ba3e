// hallcast viewer page: plays a conference's hall feed over WHEP in a full-window video.
//
// No framework and no build step: this file is served as it is at /static/watch.js.
// The page lives at /watch/{conference}?token=...; it POSTs its offer to /whep/{conference}.
//
// States (window.hallcast.state, also body[data-state]):
//   connecting   -> first attempt in flight
//   waiting      -> the hall feed is not live yet (409); holds GET .../status?wait_live=25, which
//                   the relay answers when the hall goes live, and starts at once (a relay without
//                   the hold: retries after Retry-After)
//   live         -> media connection up
//   reconnecting -> connection lost (ICE failed/disconnected, no media, HTTP or network error);
//                   retries with exponential backoff and jitter, capped; during a backoff it
//                   probes /healthz of its relays about twice a second, and a relay that was
//                   unreachable and answers again (a restarted central) is tried at once;
//                   a relay that restarted quickly (its events stream broke, no media, yet it
//                   answers; or it refuses the session's stream: 404) is left at once too
//   ended        -> the broadcast ended (the relay says the feed is no longer live after we had it,
//                   or 410 Gone); keeps checking quietly and resumes if the hall publishes again
//   error        -> the link is not valid (401/403/404) or the browser cannot play; no retry
//
// WHEP server-sent events (the relay's Link rel="urn:ietf:params:whep:ext:core:server-sent-events"):
// after its offer is answered the page subscribes to `active`, `inactive`, `layers` and
// `viewercount` of its session. `layers` saying video is paused for bandwidth shows the audio-only
// notice (#audio-only) until video resumes; `inactive` while live (the hall stopped; the session
// is kept, so the picture comes back without a new offer) shows "ended" after a short grace, and
// `active` brings it back to live.
//
// Roll call (điểm danh): the page also asks for `rollcall` (a connection point's session only
// gets it): `{"id", "deadline_ms", "remaining_ms"}` when an organiser starts one, and again on
// every (re)subscription while it runs. The page shows #rollcall in the middle of the picture with
// a countdown; the point confirms its presence with its number of people, sent with its join
// token to POST /api/v1/conferences/{c}/rollcalls/{id}/answer (one event id per answer, reused on
// retries). The prompt goes away when answered or when the countdown ends; an answered roll call
// is remembered (sessionStorage) so a reload during the countdown does not ask again.
// window.hallcast.rollcall = { id, deadline, state: 'open'|'sending'|'answered'|'expired', n_people },
// and the `hallcast:rollcall` event says when it changes.
//
// Drain (the relay is stopping: SIGTERM): the page also asks for `drain`: `{"relay", "url", "home",
// "parent", "deadline_ms"}`. The page then moves make-before-break: it asks `url` (the central, else
// the parent; then home, then its own origin) for a route that avoids `relay`, connects there while
// the current session keeps playing, and only once the new connection is up does it show the new
// stream and DELETE the old session. A move that fails (503 + Retry-After from a relay that drains
// too, a network error) is retried while the old session still plays; if the old relay goes first,
// the page reconnects as after any loss. window.hallcast.drain = { relay, url, at, moved_at } and the
// `hallcast:drain` event say when it happens.
//
// Tests read window.hallcast = { state, pc, audioOnly, feedActive, viewers, layers, eventsUrl, ... }
// and listen to the `hallcast:state` and `hallcast:audioonly` events.
'use strict';

(() => {
  const STRINGS = {
    vi: {
      connecting: 'Đang kết nối…',
      connecting_detail: 'Đang kết nối tới máy chủ phát.',
      waiting: 'Đang chờ tín hiệu hội trường…',
      badge_waiting: 'Chờ tín hiệu',
      waiting_detail: 'Hội trường chưa phát. Hình ảnh và âm thanh sẽ tự xuất hiện khi buổi phát bắt đầu.',
      live: 'Trực tiếp',
      reconnecting: 'Đang kết nối lại…',
      reconnecting_detail: (n) => (n > 1 ? `Đường truyền bị gián đoạn. Đang thử lại (lần ${n})…` : 'Đường truyền bị gián đoạn. Đang thử lại…'),
      offline_detail: 'Máy tính đang mất kết nối mạng. Trang sẽ tự kết nối lại khi có mạng.',
      ended: 'Đã kết thúc',
      ended_detail: 'Buổi phát từ hội trường đã kết thúc. Nếu hội trường phát lại, hình ảnh sẽ tự xuất hiện.',
      ended_final_detail: 'Buổi phát từ hội trường đã kết thúc. Cảm ơn quý vị đã theo dõi.',
      error: 'Không thể xem',
      error_token: 'Liên kết xem không hợp lệ hoặc đã hết hạn. Vui lòng lấy lại liên kết từ ban tổ chức.',
      error_conference: 'Không tìm thấy hội nghị này. Vui lòng kiểm tra lại liên kết.',
      error_codec: 'Trình duyệt này không giải mã được tín hiệu hội trường. Hãy dùng Chrome, Edge hoặc Firefox bản mới.',
      error_status: (code, text) => `Máy chủ từ chối kết nối (mã ${code}).${text ? ' ' + text : ''}`,
      error_webrtc: 'Trình duyệt này không hỗ trợ WebRTC. Hãy dùng Chrome, Edge hoặc Firefox bản mới.',
      unmute: 'Bật tiếng',
      mute: 'Tắt tiếng',
      fullscreen: 'Toàn màn hình',
      headcount_question: 'Số người dự tại điểm cầu',
      headcount_edit: 'Sửa số người dự',
      headcount_short: 'Số người dự',
      send: 'Gửi',
      later: 'Để sau',
      sending: 'Đang gửi…',
      people: (n) => `${n} người`,
      headcount_saved: (n) => `Đã ghi nhận ${n} người dự.`,
      headcount_invalid: 'Vui lòng nhập số người (một số nguyên dương).',
      headcount_failed: 'Chưa gửi được, vui lòng thử lại.',
      rollcall_title: 'Điểm danh',
      rollcall_left: 'Còn',
      rollcall_question: 'Ban tổ chức đề nghị điểm cầu xác nhận có mặt và số người dự.',
      rollcall_confirm: 'Xác nhận có mặt',
      rollcall_saved: (n) => `Đã điểm danh: ${n} người có mặt.`,
      rollcall_over: 'Đã hết thời gian điểm danh.',
      rollcall_denied: 'Liên kết này không điểm danh được.',
      headcount_denied: 'Liên kết không có quyền khai báo số người dự.',
      audio_only: 'Chỉ có tiếng — đường truyền yếu',
      audio_only_detail: 'Hình ảnh sẽ tự trở lại khi đường truyền tốt hơn.',
      lang_other: 'EN',
      lang_other_title: 'English',
    },
    en: {
      connecting: 'Connecting…',
      connecting_detail: 'Connecting to the relay.',
      waiting: 'Waiting for the hall feed…',
      badge_waiting: 'Waiting',
      waiting_detail: 'The hall is not broadcasting yet. Picture and sound will start by themselves when it does.',
      live: 'Live',
      reconnecting: 'Reconnecting…',
      reconnecting_detail: (n) => (n > 1 ? `The connection was interrupted. Retrying (attempt ${n})…` : 'The connection was interrupted. Retrying…'),
      offline_detail: 'This computer is offline. The page will reconnect by itself when the network is back.',
      ended: 'Ended',
      ended_detail: 'The broadcast from the hall has ended. If the hall goes live again, it will start here by itself.',
      ended_final_detail: 'The broadcast from the hall has ended. Thank you for watching.',
      error: 'Cannot play',
      error_token: 'This viewing link is not valid or has expired. Please ask the organisers for the link again.',
      error_conference: 'This conference was not found. Please check the link.',
      error_codec: 'This browser cannot decode the hall feed. Please use a recent Chrome, Edge or Firefox.',
      error_status: (code, text) => `The relay refused the connection (status ${code}).${text ? ' ' + text : ''}`,
      error_webrtc: 'This browser does not support WebRTC. Please use a recent Chrome, Edge or Firefox.',
      unmute: 'Turn sound on',
      mute: 'Mute',
      fullscreen: 'Full screen',
      headcount_question: 'People attending at this connection point',
      headcount_edit: 'Change the number of attendees',
      headcount_short: 'Attendees',
      send: 'Send',
      later: 'Later',
      sending: 'Sending…',
      people: (n) => `${n} ${n === 1 ? 'person' : 'people'}`,
      headcount_saved: (n) => `Recorded: ${n} ${n === 1 ? 'person' : 'people'} attending.`,
      headcount_invalid: 'Please enter the number of people (a positive whole number).',
      headcount_failed: 'Could not send it, please try again.',
      rollcall_title: 'Roll call',
      rollcall_left: 'Time left',
      rollcall_question: 'The organisers ask this connection point to confirm it is present, with the number of people.',
      rollcall_confirm: 'Confirm presence',
      rollcall_saved: (n) => `Roll call answered: ${n} ${n === 1 ? 'person' : 'people'} present.`,
      rollcall_over: 'The roll call is over.',
      rollcall_denied: 'This link cannot answer the roll call.',
      headcount_denied: 'This link may not declare a headcount.',
      audio_only: 'Audio only — weak connection',
      audio_only_detail: 'The picture will come back by itself when the connection improves.',
      lang_other: 'VI',
      lang_other_title: 'Tiếng Việt',
    },
  };

  // Reconnect policy: exponential backoff with jitter, capped.
  const BACKOFF_BASE_MS = 1000;
  const BACKOFF_CAP_MS = 30000;
  // 409 Retry-After bounds (seconds) and the default when the header is missing or unreadable.
  const RETRY_AFTER_MIN_S = 1;
  const RETRY_AFTER_MAX_S = 60;
  const RETRY_AFTER_DEFAULT_S = 3;
  // How long ICE may stay "disconnected" before we give up on the session.
  const DISCONNECTED_GRACE_MS = 4000;
  // A session that does not connect in this time is dropped and retried.
  const CONNECT_TIMEOUT_MS = 15000;
  // No RTP at all (audio or video) for this long while live: the feed stopped; re-negotiate.
  const STALL_MS = 8000;
  const WATCHDOG_PERIOD_MS = 500;
  // No RTP for this long: ask whether the relay itself is still there (a dead edge refuses at
  // once). ICE alone takes about 5 s to call the connection disconnected.
  const QUIET_PROBE_MS = 1000;
  // After the relay was found gone, retries come this soon (jittered) for a few attempts: the
  // central keeps naming a dead edge for up to 3 s (until it is `stale`), so exponential
  // backoff would push the reconnect past it.
  const RELAY_GONE_RETRY_MS = 600;
  const RELAY_GONE_QUICK_TRIES = 6;
  // While a backoff longer than this runs, the page probes its relays' /healthz about this
  // often (jittered): a relay seen unreachable and then answering again (a restarted central, a
  // link back up) is tried at once instead of after the rest of a backoff that may have grown to
  // 30 s. Only that down-then-up change triggers it, so a relay that answers but cannot serve
  // (a UDP block, a refusal) keeps its backoff.
  const RETURN_PROBE_MS = 500;
  // For this long after such a return a 409 (the feed not live yet) is asked again after about
  // RETURN_PROBE_MS instead of its Retry-After.
  const RETURN_QUICK_409_MS = 6000;
  // While the hall is not live (409), the page holds a status request the relay answers the
  // moment the conference goes live (GET /api/v1/conferences/{c}/status?wait_live=S) and
  // connects then, instead of offering again every Retry-After (up to ~2.4 s late, and a
  // request every 2 s from each waiting point). Not live after the hold: it offers again at
  // once. A relay that answers sooner and not live (one without the hold) keeps the
  // Retry-After.
  const WAIT_LIVE_S = 25;
  // Longest wait for local ICE candidates before sending the offer (the relay is ICE-lite).
  const GATHER_WAIT_MS = 1000;
  const IDLE_HIDE_MS = 4000;
  // The WHEP events extension, and the events the page asks for.
  const EVENTS_REL = 'urn:ietf:params:whep:ext:core:server-sent-events';
  const EVENTS = ['active', 'inactive', 'layers', 'viewercount', 'rollcall', 'drain'];
  // What older relays accept (they refuse unknown names with 400): before drains, before roll calls.
  const EVENTS_BEFORE_DRAIN = ['active', 'inactive', 'layers', 'viewercount', 'rollcall'];
  const EVENTS_BEFORE_ROLLCALL = ['active', 'inactive', 'layers', 'viewercount'];
  // `inactive` while live: how long before the page says the broadcast ended (a publisher's
  // reconnect or an edge changing parents comes back within it).
  const FEED_INACTIVE_GRACE_MS = 3000;
  // An unanswered headcount prompt folds into its toolbar button after this long, so it does
  // not cover the picture on a wall all day.
  const HEADCOUNT_FOLD_MS = 90000;

  const $ = (id) => document.getElementById(id);
  const video = $('video');
  const ui = {
    title: $('status-title'),
    statusConference: $('status-conference'),
    detail: $('status-detail'),
    badge: $('badge'),
    conference: $('conference'),
    unmute: $('unmute'),
    muteToggle: $('mute-toggle'),
    fullscreen: $('fullscreen'),
    lang: $('lang'),
    headcountButton: $('headcount-button'),
    headcountValue: $('headcount-value'),
    form: $('headcount'),
    input: $('headcount-input'),
    later: $('headcount-later'),
    message: $('headcount-message'),
    audioOnly: $('audio-only'),
    rollcall: $('rollcall'),
    rollcallInput: $('rollcall-input'),
    rollcallCountdown: $('rollcall-countdown'),
    rollcallBar: $('rollcall-bar'),
    rollcallMessage: $('rollcall-message'),
  };

  const params = new URLSearchParams(location.search);
  const token = params.get('token') || '';
  const pathParts = location.pathname.split('/').filter(Boolean);
  const conference = decodeURIComponent(pathParts[pathParts.length - 1] || '');
  const whepUrl = new URL(`/whep/${encodeURIComponent(conference)}`, location.href).href;
  // The central relay, when this page was sent to an edge: where to ask for another relay if
  // this one goes away.
  const home = (() => {
    try {
      const h = params.get('home');
      return h ? new URL(h).origin : null;
    } catch {
      return null;
    }
  })();
  const ROUTE_TIMEOUT_MS = 1500;
  const headcountUrl = new URL(`/api/v1/conferences/${encodeURIComponent(conference)}/headcount`, location.href).href;

  const storage = {
    get(key) {
      try {
        return localStorage.getItem(key);
      } catch {
        return null;
      }
    },
    set(key, value) {
      try {
        localStorage.setItem(key, value);
      } catch {
        // Private mode or storage disabled: the choice just is not remembered.
      }
    },
  };

  const initialLang = (() => {
    const fromUrl = params.get('lang');
    if (fromUrl === 'vi' || fromUrl === 'en') return fromUrl;
    const stored = storage.get('hallcast.lang');
    return stored === 'en' ? 'en' : 'vi';
  })();

  const hallcast = (window.hallcast = {
    state: 'connecting',
    pc: null,
    conference,
    lang: initialLang,
    stateLog: [],
    sessionUrl: null,
    attempts: 0,
    // From the relay's events: video paused because the link is too weak (audio only).
    audioOnly: false,
    // The broadcast is live (`active`) or not (`inactive`); null: not heard yet.
    feedActive: null,
    viewers: null,
    // The last `layers` event's `video` object.
    layers: null,
    eventsUrl: null,
    // The roll call shown (or last shown): { id, deadline, state, n_people }; null: none yet.
    rollcall: null,
    // The last `drain` heard: { relay, url, at, moved_at }; null: none.
    drain: null,
    reconnect: () => connectNow(),
  });

  let statusDetail = { key: 'connecting_detail', args: [] };
  let everLive = false;
  let finalEnd = false;
  let failures = 0;
  // Consecutive failures since this page's relay was found gone (0: it was not).
  let goneTries = 0;
  // The origin of the relay found gone (the central must not name it again).
  let goneRelay = null;
  let generation = 0;
  let retryTimer = null;
  // The probe that watches for an unreachable relay's return during a backoff; bumping the
  // generation stops it.
  let returnTimer = null;
  let returnGen = 0;
  // The held status request while waiting for the hall (see WAIT_LIVE_S).
  let liveWait = null;
  // When the probe last saw a relay come back (0: never).
  let returnedAt = 0;
  // The last loss was the relay being unreachable (a refused or failed request).
  let lostUnreachable = false;
  let session = null; // { gen, pc, url, connectTimer, disconnectTimer, lastPackets, lastProgress }
  // A move away from a draining relay: { old (the session still playing), base (where to ask
  // for a route), avoid (the draining relay's origin) }; null: none under way.
  let moving = null;
  let iceServers = [];
  let autoplayBlocked = false;
  let userMuted = false;
  let headcountSupported = true;
  let conferenceTitle = null;
  let headcountValue = null;

  // ---------------------------------------------------------------- text and language

  function t(key, ...args) {
    const table = STRINGS[hallcast.lang] || STRINGS.vi;
    const v = table[key] ?? STRINGS.vi[key] ?? key;
    return typeof v === 'function' ? v(...args) : v;
  }

  function renderText() {
    document.documentElement.lang = hallcast.lang;
    document.querySelectorAll('[data-i18n]').forEach((el) => {
      if (el === ui.badge || el === ui.title) return;
      el.textContent = t(el.dataset.i18n);
    });
    document.querySelectorAll('[data-i18n-title]').forEach((el) => {
      el.title = t(el.dataset.i18nTitle);
      el.setAttribute('aria-label', el.title);
    });
    ui.lang.textContent = t('lang_other');
    ui.lang.title = t('lang_other_title');
    ui.lang.setAttribute('aria-label', t('lang_other_title'));
    ui.muteToggle.title = video.muted ? t('unmute') : t('mute');
    ui.muteToggle.setAttribute('aria-label', ui.muteToggle.title);
    ui.muteToggle.dataset.muted = String(video.muted);
    ui.headcountButton.title = t('headcount_edit');
    ui.headcountButton.setAttribute('aria-label', t('headcount_edit'));
    ui.headcountValue.textContent = headcountValue === null ? t('headcount_short') : t('people', headcountValue);
    renderState();
  }

  function renderState() {
    const s = hallcast.state;
    ui.title.textContent = t(s);
    ui.badge.textContent = t(`badge_${s}` in STRINGS.vi ? `badge_${s}` : s);
    ui.detail.textContent = statusDetail ? t(statusDetail.key, ...statusDetail.args) : '';
    document.title = `${s === 'live' ? '● ' : ''}${t(s)} · ${conferenceTitle || conference || 'hallcast'}`;
  }

  function setLang(lang) {
    hallcast.lang = lang;
    storage.set('hallcast.lang', lang);
    renderText();
  }

  // ---------------------------------------------------------------- state

  function setState(state, detailKey = null, ...detailArgs) {
    statusDetail = detailKey ? { key: detailKey, args: detailArgs } : null;
    const changed = hallcast.state !== state;
    hallcast.state = state;
    document.body.dataset.state = state;
    renderState();
    if (changed) {
      hallcast.stateLog.push({ state, at: Date.now() });
      if (hallcast.stateLog.length > 200) hallcast.stateLog.shift();
      window.dispatchEvent(new CustomEvent('hallcast:state', { detail: { state } }));
    }
  }

  // ---------------------------------------------------------------- WHEP session

  function backoffMs(n) {
    const exp = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** Math.max(0, n - 1));
    // Jitter: between half and the full delay, so hundreds of points do not retry in step.
    return Math.round(exp / 2 + Math.random() * (exp / 2));
  }

  function retryAfterMs(response) {
    const raw = response.headers.get('Retry-After');
    let seconds = RETRY_AFTER_DEFAULT_S;
    if (raw !== null) {
      const n = Number(raw.trim());
      if (Number.isFinite(n)) {
        seconds = n;
      } else {
        const date = Date.parse(raw);
        if (!Number.isNaN(date)) seconds = (date - Date.now()) / 1000;
      }
    }
    seconds = Math.min(RETRY_AFTER_MAX_S, Math.max(RETRY_AFTER_MIN_S, seconds));
    return Math.round(seconds * 1000 * (1 + Math.random() * 0.2));
  }

  // `Link: <turn:host:3478>; rel="ice-server"; username="u"; credential="c"` (WHIP/WHEP).
  function parseIceServers(header) {
    if (!header) return [];
    const servers = [];
    for (const part of header.split(/,(?=\s*<)/)) {
      const m = part.match(/<([^>]+)>(.*)/);
      if (!m) continue;
      const attrs = {};
      for (const a of m[2].split(';')) {
        const kv = a.match(/^\s*([\w-]+)\s*=\s*"?([^"]*)"?\s*$/);
        if (kv) attrs[kv[1].toLowerCase()] = kv[2];
      }
      if (attrs.rel !== 'ice-server') continue;
      const server = { urls: m[1] };
      if (attrs.username) server.username = attrs.username;
      if (attrs.credential) server.credential = attrs.credential;
      servers.push(server);
    }
    return servers;
  }

  /** Waiting for the hall at the relay that answered `relayUrl` with 409: connect the moment
   * it says the conference is live; else after what is left of `fallbackMs`. */
  function waitLive(relayUrl, fallbackMs) {
    stopWaitLive();
    const gen = generation;
    const ctl = new AbortController();
    liveWait = ctl;
    const started = Date.now();
    const url = new URL(
      `/api/v1/conferences/${encodeURIComponent(conference)}/status?wait_live=${WAIT_LIVE_S}`,
      relayUrl,
    );
    const then = (live) => {
      if (liveWait !== ctl || gen !== generation) return;
      liveWait = null;
      scheduleConnect(live ? 0 : Math.max(0, fallbackMs - (Date.now() - started)));
    };
    fetch(url, { signal: ctl.signal, cache: 'no-store' })
      .then((r) => (r.ok ? r.json() : null))
      .then((st) => then(!!(st && st.live)))
      .catch(() => then(false));
  }

  function stopWaitLive() {
    if (liveWait) liveWait.abort();
    liveWait = null;
  }

  function scheduleConnect(ms) {
    clearTimeout(retryTimer);
    retryTimer = setTimeout(connect, ms);
    watchForReturn(ms);
  }

  /** During a backoff of `ms`: connect at once when a relay this page would try (its own
   * origin, home) goes from unreachable to answering. */
  function watchForReturn(ms) {
    const gen = ++returnGen;
    clearTimeout(returnTimer);
    if (ms <= 2 * RETURN_PROBE_MS) return;
    const until = Date.now() + ms - RETURN_PROBE_MS;
    const bases = [...new Set([location.origin, home].filter(Boolean))];
    // Just found unreachable: it may answer again before the first probe (a quick restart).
    // Not again within a while of a return, so a relay that answers /healthz but fails every
    // offer keeps its backoff.
    let sawDown = lostUnreachable && Date.now() - returnedAt > RETURN_QUICK_409_MS;
    const next = () => {
      returnTimer = setTimeout(probe, Math.round(RETURN_PROBE_MS * (0.75 + Math.random() / 2)));
    };
    const probe = async () => {
      if (gen !== returnGen || finalEnd || Date.now() > until) return;
      const alive = await Promise.all(bases.map((b) => relayAlive(b)));
      if (gen !== returnGen || finalEnd) return;
      if (alive.some((a) => a)) {
        if (sawDown) {
          console.info('hallcast: the relay answers again; reconnecting now');
          returnedAt = Date.now();
          connectNow();
          return;
        }
      } else {
        sawDown = true;
      }
      next();
    };
    next();
  }

  function connectNow() {
    scheduleConnect(0);
  }

  function endSession(s, { notifyServer = true } = {}) {
    if (!s) return;
    clearTimeout(s.connectTimer);
    clearTimeout(s.disconnectTimer);
    clearTimeout(s.inactiveTimer);
    if (s.events) {
      s.events.close();
      s.events = null;
    }
    if (notifyServer && s.url) {
      const url = s.url;
      s.url = null;
      fetch(url, { method: 'DELETE', headers: authHeaders(), keepalive: true }).catch(() => {});
    }
    try {
      s.pc.close();
    } catch {
      // already closed
    }
    if (session === s) {
      session = null;
      hallcast.sessionUrl = null;
      hallcast.eventsUrl = null;
      hallcast.feedActive = null;
      hallcast.layers = null;
      setAudioOnly(false);
    }
  }

  function authHeaders(extra = {}) {
    return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
  }

  /** The media connection is gone (or never came up): tear down and retry with backoff. */
  function lost(s, why, { relayGone = false } = {}) {
    if (!s || s !== session) return;
    console.info(`hallcast: connection lost (${why})`);
    if (relayGone) {
      goneTries = 1;
      try {
        goneRelay = new URL(s.url || location.href).origin;
      } catch {
        goneRelay = null;
      }
    } else if (goneTries > 0) {
      goneTries += 1;
    }
    endSession(s);
    failures += 1;
    lostUnreachable = relayGone || why.startsWith('network');
    if (oldStillPlays()) {
      // A move that failed: the old session keeps playing; try again soon.
      scheduleConnect(backoffMs(Math.min(failures, 3)));
      return;
    }
    setState('reconnecting', navigator.onLine === false ? 'offline_detail' : 'reconnecting_detail', failures);
    const quick = goneTries > 0 && goneTries <= RELAY_GONE_QUICK_TRIES && home;
    scheduleConnect(quick ? Math.round(RELAY_GONE_RETRY_MS * (0.5 + Math.random() / 2)) : backoffMs(failures));
  }

  /** Where to POST the offer: the relay this page came from, or, after a loss, whatever
   * relay the central (home) assigns now (a live edge, or the central itself). */
  async function resolveWhep() {
    let bases = failures > 0 && home ? [home, location.origin] : [location.origin];
    if (home && !bases.includes(home)) bases.push(home);
    // Nobody answered: after a loss, home's own WHEP endpoint (it serves the point or sends
    // it on with a 307), not this page's relay, which may be the one that died.
    let fallback = failures > 0 && home ? `${home}/whep/${encodeURIComponent(conference)}` : whepUrl;
    let avoidRelay = goneTries > 0 ? goneRelay : null;
    if (moving) {
      // Away from a draining relay: where it said to ask, then home, never the relay itself.
      bases = [...new Set([moving.base, home, location.origin].filter((b) => b && b !== moving.avoid))];
      // A draining central with nowhere named: its own route lookup still names a live edge.
      if (!bases.length) bases = [location.origin];
      avoidRelay = moving.avoid;
      const to = moving.base || home;
      if (to && to !== moving.avoid) fallback = `${to}/whep/${encodeURIComponent(conference)}`;
    }
    for (const base of bases) {
      try {
        const avoid = avoidRelay ? `?avoid=${encodeURIComponent(avoidRelay)}` : '';
        const r = await fetch(`${base}/api/v1/conferences/${encodeURIComponent(conference)}/route${avoid}`, {
          headers: authHeaders({ Accept: 'application/json' }),
          signal: AbortSignal.timeout(ROUTE_TIMEOUT_MS),
        });
        if (r.ok) {
          const j = await r.json();
          // The serving relay's STUN/TURN servers (RTCIceServer objects), for this very offer:
          // a network that blocks UDP needs its TURN server before the first connection.
          if (Array.isArray(j.ice_servers) && j.ice_servers.length) iceServers = j.ice_servers;
          if (j.whep) return j.whep;
        }
        if (r.status === 401 || r.status === 404) break; // the POST will say why
      } catch {
        // That relay is unreachable: try the next.
      }
    }
    return fallback;
  }

  /** The relay this page plays from: alive? (A dead edge refuses at once; a cut link times out.) */
  async function relayAlive(url) {
    try {
      const r = await fetch(new URL('/healthz', url).href, { signal: AbortSignal.timeout(1000), cache: 'no-store' });
      return r.ok;
    } catch {
      return false;
    }
  }

  function gathered(pc) {
    return new Promise((resolve) => {
      if (pc.iceGatheringState === 'complete') return resolve();
      const timer = setTimeout(resolve, GATHER_WAIT_MS);
      pc.addEventListener('icegatheringstatechange', () => {
        if (pc.iceGatheringState === 'complete') {
          clearTimeout(timer);
          resolve();
        }
      });
    });
  }

  // ---------------------------------------------------------------- relay events (WHEP SSE)

  /** The events resource a WHEP answer names in its `Link` header, or null. */
  function eventsLink(header, base) {
    if (!header) return null;
    for (const part of header.split(/,(?=\s*<)/)) {
      const m = part.match(/<([^>]+)>(.*)/);
      if (!m) continue;
      const rel = m[2].match(/;\s*rel\s*=\s*"?([^";]+)"?/i);
      if (rel && rel[1].trim() === EVENTS_REL) {
        try {
          return new URL(m[1], base).href;
        } catch {
          return null;
        }
      }
    }
    return null;
  }

  /** Subscribes to the session's events; the media never depends on it. */
  async function subscribeEvents(s, url) {
    if (typeof EventSource !== 'function') return;
    let response;
    try {
      const ask = (names) =>
        fetch(url, {
          method: 'POST',
          headers: authHeaders({ 'Content-Type': 'application/json' }),
          body: JSON.stringify(names),
        });
      response = await ask(EVENTS);
      if (response.status === 400) response = await ask(EVENTS_BEFORE_DRAIN);
      if (response.status === 400) response = await ask(EVENTS_BEFORE_ROLLCALL);
    } catch (e) {
      console.info(`hallcast: no relay events (${e})`);
      return;
    }
    const loc = response.headers.get('Location');
    if (s !== session || response.status !== 201 || !loc) return;
    const es = new EventSource(new URL(loc, response.url).href);
    s.events = es;
    hallcast.eventsUrl = es.url;
    const json = (e) => {
      try {
        return JSON.parse(e.data);
      } catch {
        return null;
      }
    };
    es.addEventListener('active', () => onFeed(s, true));
    es.addEventListener('inactive', () => onFeed(s, false));
    es.addEventListener('layers', (e) => {
      if (s !== session) return;
      const video = (json(e) || {}).video || null;
      hallcast.layers = video;
      setAudioOnly(!!(video && video.paused && video.reason === 'bandwidth'));
    });
    es.addEventListener('viewercount', (e) => {
      const n = (json(e) || {}).viewercount;
      if (s === session && Number.isInteger(n)) hallcast.viewers = n;
    });
    es.addEventListener('rollcall', (e) => {
      if (s === session) onRollcall(json(e));
    });
    es.addEventListener('drain', (e) => {
      if (s === session) onDrain(s, json(e) || {});
    });
    es.addEventListener('open', () => {
      s.streamBrokeAt = 0;
    });
    es.addEventListener('error', () => {
      if (s !== session) return es.close();
      // CONNECTING: the stream broke (the relay went away, or restarted); the browser asks
      // again. The watchdog weighs it with the media (see there).
      if (es.readyState === EventSource.CONNECTING) {
        s.streamBrokeAt = Date.now();
        return;
      }
      // CLOSED: the relay refused the stream again (404: the session ended there).
      if (es.readyState === EventSource.CLOSED) {
        s.events = null;
        // Holding an ended broadcast's session: the relay let it go, so ask again quietly
        // (409 keeps the page "ended" and polls; 201 plays the new broadcast).
        if (hallcast.state === 'ended') {
          endSession(s);
          scheduleConnect(RETRY_AFTER_DEFAULT_S * 1000);
        } else if (hallcast.state === 'live') {
          // Playing a session the relay no longer has (it restarted): a new one now.
          returnedAt = Date.now();
          lost(s, 'session gone at the relay');
        }
      }
    });
  }

  function originOf(url) {
    try {
      return url ? new URL(url).origin : null;
    } catch {
      return null;
    }
  }

  /** Whether a move is under way and its old session still plays (the page stays "live"). */
  function oldStillPlays() {
    return !!(moving && moving.old && moving.old.pc.connectionState === 'connected');
  }

  /** The relay is draining: connect elsewhere first, then let go of this session. */
  function onDrain(s, notice) {
    if (moving || s !== session) return;
    const avoid = originOf(notice.relay) || originOf(s.url);
    moving = { old: s, base: originOf(notice.url), avoid };
    hallcast.drain = { relay: avoid, url: moving.base, at: Date.now(), moved_at: null };
    window.dispatchEvent(new CustomEvent('hallcast:drain', { detail: { ...hallcast.drain } }));
    console.info(`hallcast: the relay ${avoid} is draining; moving (to ${moving.base || home || 'the route'})`);
    // Spread a room's pages over a second, so they do not all ask the central at once.
    scheduleConnect(Math.round(Math.random() * 1000));
  }

  /** The new session of a move is up: show it, and let go of the old one. */
  function finishMove(s) {
    const old = s.replaces;
    s.replaces = null;
    if (moving && moving.old === old) moving = null;
    video.srcObject = s.stream;
    startPlayback();
    if (old) endSession(old);
    if (hallcast.drain) hallcast.drain.moved_at = Date.now();
    window.dispatchEvent(new CustomEvent('hallcast:drain', { detail: { ...hallcast.drain } }));
  }

  /** The relay says the broadcast is live (`active`) or not (`inactive`). */
  function onFeed(s, live) {
    if (s !== session) return;
    hallcast.feedActive = live;
    clearTimeout(s.inactiveTimer);
    if (live) {
      if (hallcast.state === 'ended' && s.pc.connectionState === 'connected') {
        // The hall is back on the same session: its media resumes without a new offer.
        s.lastProgress = Date.now();
        setState('live');
      }
    } else if (hallcast.state === 'live') {
      s.inactiveTimer = setTimeout(() => {
        if (s === session && hallcast.feedActive === false && hallcast.state === 'live') {
          setState('ended', 'ended_detail');
        }
      }, FEED_INACTIVE_GRACE_MS);
    }
  }

  function setAudioOnly(on) {
    if (hallcast.audioOnly === on) return;
    hallcast.audioOnly = on;
    ui.audioOnly.hidden = !on;
    document.body.classList.toggle('audio-only', on);
    window.dispatchEvent(new CustomEvent('hallcast:audioonly', { detail: { audioOnly: on } }));
  }

  async function connect() {
    clearTimeout(retryTimer);
    stopWaitLive();
    returnGen += 1;
    clearTimeout(returnTimer);
    lostUnreachable = false;
    if (finalEnd) return;
    const gen = ++generation;
    // Moving away from a draining relay: its session keeps playing until the new one is up.
    if (moving && moving.old.pc.connectionState !== 'connected') {
      // The old relay went first: an ordinary reconnect (still avoiding it).
      if (moving.old !== session) endSession(moving.old);
      goneRelay = moving.avoid;
      goneTries = Math.max(goneTries, 1);
      moving = null;
    }
    const replaces = moving ? moving.old : null;
    if (session !== replaces) endSession(session);
    hallcast.attempts += 1;
    if (typeof RTCPeerConnection !== 'function') {
      setState('error', 'error_webrtc');
      return;
    }
    // The route first: it names the relay and hands over its STUN/TURN servers, which the
    // connection needs before it gathers (behind a UDP block only a TURN candidate connects;
    // a connection made before the answer would offer none and fail after CONNECT_TIMEOUT_MS).
    const target = await resolveWhep();
    if (gen !== generation || finalEnd) return;
    const pc = new RTCPeerConnection({ iceServers, bundlePolicy: 'max-bundle' });
    const s = {
      gen,
      pc,
      url: null,
      connectTimer: null,
      disconnectTimer: null,
      inactiveTimer: null,
      events: null,
      lastPackets: -1,
      lastProgress: Date.now(),
      // When its events stream broke (0: it did not, or it is back).
      streamBrokeAt: 0,
      // The session of a draining relay this one replaces (ended once this one is up).
      replaces,
      stream: null,
    };
    session = s;
    hallcast.pc = pc;
    pc.addTransceiver('audio', { direction: 'recvonly' });
    pc.addTransceiver('video', { direction: 'recvonly' });
    pc.addEventListener('connectionstatechange', () => onConnectionState(s));

    let response;
    try {
      await pc.setLocalDescription(await pc.createOffer());
      await gathered(pc);
      if (s !== session) return;
      response = await fetch(target, {
        method: 'POST',
        headers: authHeaders({ 'Content-Type': 'application/sdp' }),
        body: pc.localDescription.sdp,
      });
    } catch (e) {
      if (s !== session) return;
      console.warn('hallcast: offer failed', e);
      return lost(s, `network: ${e}`);
    }
    if (s !== session) {
      // Superseded while the POST was in flight: release what the relay may have created.
      if (response.status === 201 && response.headers.get('Location')) {
        const url = new URL(response.headers.get('Location'), response.url).href;
        fetch(url, { method: 'DELETE', headers: authHeaders(), keepalive: true }).catch(() => {});
      }
      return;
    }

    if (response.status === 201) {
      const loc = response.headers.get('Location');
      s.url = loc ? new URL(loc, response.url).href : null;
      hallcast.sessionUrl = s.url;
      const servers = parseIceServers(response.headers.get('Link'));
      if (servers.length) iceServers = servers;
      const events = eventsLink(response.headers.get('Link'), response.url);
      if (events) subscribeEvents(s, events);
      let answer;
      try {
        answer = await response.text();
        await pc.setRemoteDescription({ type: 'answer', sdp: answer });
      } catch (e) {
        console.warn('hallcast: bad answer', e);
        return lost(s, `answer: ${e}`);
      }
      if (s !== session) return;
      s.stream = new MediaStream(pc.getReceivers().map((r) => r.track));
      if (!s.replaces) {
        video.srcObject = s.stream;
        startPlayback();
      }
      s.connectTimer = setTimeout(() => {
        if (pc.connectionState !== 'connected') lost(s, 'connect timeout');
      }, CONNECT_TIMEOUT_MS);
      return;
    }

    // Refused: no session on the relay.
    endSession(s, { notifyServer: false });
    const text = (await response.text().catch(() => '')).trim().slice(0, 300);
    if (response.status === 409) {
      // The hall feed is not live (yet, or any more).
      failures = 0;
      if (everLive) setState('ended', 'ended_detail');
      else setState('waiting', 'waiting_detail');
      // A relay that has just come back gets its publisher back within moments (a restarted
      // central's own source, an encoder that reconnects): ask again about every half second for a
      // while rather than after its Retry-After.
      const justBack = Date.now() - returnedAt < RETURN_QUICK_409_MS;
      const wait = retryAfterMs(response);
      if (justBack) scheduleConnect(Math.min(wait, Math.round(RETURN_PROBE_MS * (0.75 + Math.random() / 2))));
      else waitLive(response.url || target, wait);
    } else if (response.status === 410) {
      finalEnd = true;
      setState('ended', 'ended_final_detail');
    } else if ((response.status === 401 || response.status === 403) && response.redirected) {
      // Sent on to another relay (307), which got no token: browsers drop Authorization on a
      // cross-origin redirect. Not the link's fault: retry (the route lookup comes first).
      failures += 1;
      setState('reconnecting', 'reconnecting_detail', failures);
      scheduleConnect(backoffMs(failures));
    } else if (response.status === 401 || response.status === 403) {
      setState('error', 'error_token');
    } else if (response.status === 404) {
      setState('error', 'error_conference');
    } else if (response.status === 422 || response.status === 415) {
      setState('error', 'error_codec');
      console.warn(`hallcast: ${response.status} ${text}`);
    } else if (response.status >= 400 && response.status < 500 && response.status !== 408 && response.status !== 429) {
      setState('error', 'error_status', response.status, text);
    } else {
      // 5xx, 408, 429, redirects we could not follow: transient, retry.
      failures += 1;
      if (hallcast.state !== 'waiting' && !oldStillPlays()) setState('reconnecting', 'reconnecting_detail', failures);
      const wait = response.headers.get('Retry-After') ? retryAfterMs(response) : backoffMs(failures);
      scheduleConnect(wait);
    }
  }

  function onConnectionState(s) {
    if (s !== session) return;
    const st = s.pc.connectionState;
    if (st === 'connected') {
      clearTimeout(s.connectTimer);
      clearTimeout(s.disconnectTimer);
      s.disconnectTimer = null;
      s.lastProgress = Date.now();
      failures = 0;
      goneTries = 0;
      everLive = true;
      setState('live');
      if (s.replaces) finishMove(s);
      else startPlayback();
    } else if (st === 'disconnected') {
      // Often recovers by itself within a few seconds (ICE consent); give it that chance.
      clearTimeout(s.disconnectTimer);
      s.disconnectTimer = setTimeout(() => lost(s, 'ice disconnected'), DISCONNECTED_GRACE_MS);
      // Unless the relay itself is gone: then reconnect (through home) at once.
      if (s.url) {
        relayAlive(s.url).then((alive) => {
          if (!alive && s === session && s.pc.connectionState !== 'connected') lost(s, 'relay gone', { relayGone: true });
        });
      }
    } else if (st === 'failed' || st === 'closed') {
      lost(s, `connection ${st}`);
    }
  }

  // Media watchdog: a live connection that stops carrying RTP (the relay dropped us, or the
  // broadcast ended without the connection closing) is re-negotiated; the relay then says
  // whether the feed is still live (201) or not (409).
  async function watchdog() {
    const s = session;
    if (!s || hallcast.state !== 'live' || s.pc.connectionState !== 'connected') return;
    let packets = 0;
    try {
      const report = await s.pc.getStats();
      report.forEach((r) => {
        if (r.type === 'inbound-rtp') packets += r.packetsReceived || 0;
      });
    } catch {
      return;
    }
    if (s !== session) return;
    const now = Date.now();
    if (packets !== s.lastPackets) {
      s.lastPackets = packets;
      s.lastProgress = now;
      s.probed = false;
    } else if (now - s.lastProgress > STALL_MS) {
      lost(s, 'no media');
    } else if (now - s.lastProgress > QUIET_PROBE_MS && !s.probed && s.url) {
      // Once per quiet stretch: a relay that died is left at once, through home.
      s.probed = true;
      const alive = await relayAlive(s.url);
      if (s !== session || s.lastPackets !== packets) return;
      if (!alive) {
        lost(s, 'relay gone', { relayGone: true });
      } else if (s.streamBrokeAt) {
        // The relay answers, but its events stream broke and no media comes: it restarted
        // (a crash and a quick restart) and no longer has this session. A new one now, rather
        // than after ICE gives up or STALL_MS.
        returnedAt = Date.now();
        lost(s, 'relay restarted');
      }
    }
  }

  // ---------------------------------------------------------------- playback and sound

  async function startPlayback() {
    video.muted = userMuted || autoplayBlocked;
    try {
      await video.play();
      renderText();
    } catch (e) {
      if (e && e.name === 'NotAllowedError') {
        // Autoplay with sound is blocked: play muted and offer a clear way to turn sound on.
        autoplayBlocked = true;
        video.muted = true;
        ui.unmute.hidden = false;
        renderText();
        video.play().catch(() => {});
      }
      // AbortError: a newer srcObject replaced this one; the next call plays it.
    }
  }

  function unmute() {
    autoplayBlocked = false;
    userMuted = false;
    video.muted = false;
    ui.unmute.hidden = true;
    video.play().catch(() => {});
    renderText();
  }

  function toggleMute() {
    if (video.muted) {
      unmute();
    } else {
      userMuted = true;
      video.muted = true;
      renderText();
    }
  }

  function toggleFullscreen() {
    if (document.fullscreenElement) {
      document.exitFullscreen().catch(() => {});
    } else {
      document.documentElement.requestFullscreen?.().catch(() => {});
    }
  }

  // ---------------------------------------------------------------- headcount

  const headcountKey = `hallcast.headcount.${conference}`;

  let foldTimer = null;
  let headcountTouched = false;

  function showHeadcountForm() {
    if (!headcountSupported) return;
    clearTimeout(foldTimer);
    headcountTouched = false;
    foldTimer = setTimeout(() => {
      // Fold only if nobody started to answer.
      if (!ui.form.hidden && !headcountTouched) hideHeadcountForm();
    }, HEADCOUNT_FOLD_MS);
    ui.form.hidden = false;
    ui.message.textContent = '';
    ui.message.className = 'message';
    const remembered = headcountValue ?? storage.get(headcountKey);
    if (remembered && !ui.input.value) ui.input.value = remembered;
    ui.input.focus({ preventScroll: true });
    ui.input.select?.();
  }

  function hideHeadcountForm() {
    ui.form.hidden = true;
    if (headcountSupported) ui.headcountButton.hidden = false;
  }

  function dropHeadcount() {
    headcountSupported = false;
    ui.form.hidden = true;
    ui.headcountButton.hidden = true;
  }

  /** 32 random hex digits (an attendance event id). */
  function newEventId() {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  }

  async function submitHeadcount(event) {
    event.preventDefault();
    const raw = ui.input.value.trim();
    const n = Number(raw);
    if (!/^\d+$/.test(raw) || !Number.isSafeInteger(n) || n < 1 || n > 100000) {
      ui.message.textContent = t('headcount_invalid');
      ui.message.className = 'message bad';
      return;
    }
    const submit = ui.form.querySelector('button[type=submit]');
    submit.disabled = true;
    ui.message.textContent = t('sending');
    ui.message.className = 'message';
    try {
      // One id per declaration: a retry after a lost answer is recorded once.
      const body = JSON.stringify({ n_people: n, event_id: newEventId() });
      let response = null;
      for (let attempt = 0; ; attempt++) {
        try {
          response = await fetch(headcountUrl, {
            method: 'POST',
            headers: authHeaders({ 'Content-Type': 'application/json' }),
            body,
          });
          if (response.status < 500 || attempt >= 2) break;
        } catch (e) {
          if (attempt >= 2) throw e;
        }
        await new Promise((resolve) => setTimeout(resolve, 1000 * (attempt + 1)));
      }
      if (response.ok) {
        headcountValue = n;
        storage.set(headcountKey, String(n));
        ui.message.textContent = t('headcount_saved', n);
        ui.message.className = 'message good';
        renderText();
        setTimeout(hideHeadcountForm, 1200);
      } else if (response.status === 404 || response.status === 501) {
        // This relay does not keep attendance: no prompt at all.
        dropHeadcount();
      } else if (response.status === 401 || response.status === 403) {
        ui.message.textContent = t('headcount_denied');
        ui.message.className = 'message bad';
      } else {
        ui.message.textContent = t('headcount_failed');
        ui.message.className = 'message bad';
      }
    } catch {
      ui.message.textContent = t('headcount_failed');
      ui.message.className = 'message bad';
    } finally {
      submit.disabled = false;
    }
  }

  // ---------------------------------------------------------------- roll call (điểm danh)

  const ROLLCALL_TICK_MS = 250;
  let rollcallTimer = null;
  let rollcallEventId = null;
  let rollcallTotalMs = 0;

  // Remembered per tab (sessionStorage: a reload during the countdown does not ask again) and per
  // link (two points' pages in one browser are two answers).
  const rollcallKey = (id) => `hallcast.rollcall.${conference}.${id}.${token.slice(-24)}`;
  const answeredStore = {
    get(key) {
      try {
        return sessionStorage.getItem(key);
      } catch {
        return null;
      }
    },
    set(key, value) {
      try {
        sessionStorage.setItem(key, value);
      } catch {
        // Storage disabled: a reload may ask again; answering twice is harmless.
      }
    },
  };

  function setRollcall(state, extra = {}) {
    hallcast.rollcall = { ...hallcast.rollcall, state, ...extra };
    document.body.dataset.rollcall = state;
    window.dispatchEvent(new CustomEvent('hallcast:rollcall', { detail: { ...hallcast.rollcall } }));
  }

  /** The relay announced a roll call (at its start, or on (re)subscription while it runs). */
  function onRollcall(data) {
    if (!data || typeof data.id !== 'string' || !/^[0-9a-f]{1,32}$/.test(data.id)) return;
    const remaining = Number.isFinite(data.remaining_ms) ? data.remaining_ms : data.deadline_ms - Date.now();
    if (!(remaining > 0)) return;
    if (answeredStore.get(rollcallKey(data.id))) return; // answered already (before a reload)
    const current = hallcast.rollcall;
    // The same roll call again (the events stream reconnected): keep what is being typed.
    if (current && current.id === data.id && current.state !== 'expired') return;
    // The page's clock may be off: count down from what the relay says is left.
    const deadline = Date.now() + remaining;
    rollcallTotalMs = remaining;
    rollcallEventId = null;
    hallcast.rollcall = { id: data.id, deadline, n_people: null };
    setRollcall('open');
    if (!ui.form.hidden) hideHeadcountForm();
    ui.rollcallMessage.textContent = '';
    ui.rollcallMessage.className = 'message';
    const remembered = headcountValue ?? storage.get(headcountKey);
    ui.rollcallInput.value = remembered || '';
    ui.rollcall.querySelector('button[type=submit]').disabled = false;
    ui.rollcall.hidden = false;
    ui.rollcallInput.focus({ preventScroll: true });
    ui.rollcallInput.select?.();
    clearInterval(rollcallTimer);
    rollcallTimer = setInterval(tickRollcall, ROLLCALL_TICK_MS);
    tickRollcall();
  }

  function tickRollcall() {
    const rc = hallcast.rollcall;
    if (!rc) return;
    const left = Math.max(0, rc.deadline - Date.now());
    const s = Math.ceil(left / 1000);
    ui.rollcallCountdown.textContent = `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
    ui.rollcallBar.style.transform = `scaleX(${rollcallTotalMs > 0 ? left / rollcallTotalMs : 0})`;
    if (left <= 0 && (rc.state === 'open' || rc.state === 'sending')) {
      clearInterval(rollcallTimer);
      setRollcall('expired');
      ui.rollcall.hidden = true;
    }
  }

  function closeRollcall(afterMs) {
    clearInterval(rollcallTimer);
    setTimeout(() => {
      if (hallcast.rollcall && hallcast.rollcall.state !== 'open') ui.rollcall.hidden = true;
    }, afterMs);
  }

  async function submitRollcall(event) {
    event.preventDefault();
    const rc = hallcast.rollcall;
    if (!rc || rc.state !== 'open') return;
    const raw = ui.rollcallInput.value.trim();
    const n = Number(raw);
    if (!/^\d+$/.test(raw) || !Number.isSafeInteger(n) || n < 1 || n > 100000) {
      ui.rollcallMessage.textContent = t('headcount_invalid');
      ui.rollcallMessage.className = 'message bad';
      return;
    }
    const submit = ui.rollcall.querySelector('button[type=submit]');
    submit.disabled = true;
    setRollcall('sending');
    ui.rollcallMessage.textContent = t('sending');
    ui.rollcallMessage.className = 'message';
    // One id per answer, kept across retries: a retry after a lost reply is recorded once.
    rollcallEventId = rollcallEventId || newEventId();
    const url = new URL(
      `/api/v1/conferences/${encodeURIComponent(conference)}/rollcalls/${rc.id}/answer`,
      location.href,
    ).href;
    const body = JSON.stringify({ n_people: n, event_id: rollcallEventId });
    let response = null;
    try {
      for (let attempt = 0; ; attempt++) {
        try {
          response = await fetch(url, {
            method: 'POST',
            headers: authHeaders({ 'Content-Type': 'application/json' }),
            body,
          });
          if (response.status < 500 || attempt >= 2) break;
        } catch (e) {
          if (attempt >= 2) throw e;
        }
        await new Promise((resolve) => setTimeout(resolve, 700 * (attempt + 1)));
      }
    } catch {
      response = null;
    }
    if (!hallcast.rollcall || hallcast.rollcall.id !== rc.id) return;
    if (response && response.ok) {
      answeredStore.set(rollcallKey(rc.id), String(n));
      storage.set(headcountKey, String(n));
      setRollcall('answered', { n_people: n });
      ui.rollcallMessage.textContent = t('rollcall_saved', n);
      ui.rollcallMessage.className = 'message good';
      closeRollcall(1500);
      return;
    }
    if (response && response.status === 410) {
      setRollcall('expired');
      ui.rollcallMessage.textContent = t('rollcall_over');
      ui.rollcallMessage.className = 'message bad';
      closeRollcall(2500);
      return;
    }
    // Still open: the point may try again before the deadline.
    setRollcall('open');
    submit.disabled = false;
    ui.rollcallMessage.textContent =
      response && (response.status === 401 || response.status === 403) ? t('rollcall_denied') : t('headcount_failed');
    ui.rollcallMessage.className = 'message bad';
  }

  // ---------------------------------------------------------------- conference title

  // The relay may describe the conference (GET /api/v1/conferences/{id}/status → {"title": ...});
  // without it the page shows the conference id.
  async function loadTitle() {
    try {
      const url = new URL(`/api/v1/conferences/${encodeURIComponent(conference)}/status`, location.href);
      const response = await fetch(url, { headers: authHeaders({ Accept: 'application/json' }) });
      if (!response.ok) return;
      const status = await response.json();
      if (status && typeof status.title === 'string' && status.title.trim()) {
        conferenceTitle = status.title.trim();
        ui.conference.textContent = conferenceTitle;
        ui.statusConference.textContent = conferenceTitle;
        ui.conference.title = conference;
        renderState();
      }
    } catch {
      // No title: the id stays.
    }
  }

  // ---------------------------------------------------------------- idle UI (projector friendly)

  let idleTimer = null;
  function poke() {
    document.body.classList.remove('idle');
    clearTimeout(idleTimer);
    idleTimer = setTimeout(() => document.body.classList.add('idle'), IDLE_HIDE_MS);
  }

  // ---------------------------------------------------------------- wiring

  ui.conference.textContent = conference;
  ui.statusConference.textContent = conference;
  ui.unmute.addEventListener('click', (e) => {
    e.stopPropagation();
    unmute();
  });
  $('stage').addEventListener('click', () => {
    if (autoplayBlocked) unmute();
  });
  video.addEventListener('dblclick', toggleFullscreen);
  ui.muteToggle.addEventListener('click', toggleMute);
  ui.fullscreen.addEventListener('click', toggleFullscreen);
  ui.lang.addEventListener('click', () => setLang(hallcast.lang === 'vi' ? 'en' : 'vi'));
  ui.headcountButton.addEventListener('click', () => (ui.form.hidden ? showHeadcountForm() : hideHeadcountForm()));
  ui.form.addEventListener('submit', submitHeadcount);
  ui.input.addEventListener('input', () => {
    headcountTouched = true;
  });
  ui.later.addEventListener('click', hideHeadcountForm);
  ui.rollcall.addEventListener('submit', submitRollcall);
  ui.form.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') hideHeadcountForm();
  });
  // Shortcuts for a room PC: M toggles the sound, F full screen (not while typing a number).
  document.addEventListener('keydown', (e) => {
    if (e.target instanceof HTMLInputElement || e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.key === 'm' || e.key === 'M') toggleMute();
    else if (e.key === 'f' || e.key === 'F') toggleFullscreen();
  });
  for (const ev of ['mousemove', 'mousedown', 'keydown', 'touchstart']) {
    document.addEventListener(ev, poke, { passive: true });
  }
  window.addEventListener('online', () => {
    if (hallcast.state === 'reconnecting') connectNow();
  });
  window.addEventListener('offline', () => {
    if (hallcast.state === 'reconnecting') setState('reconnecting', 'offline_detail');
  });
  window.addEventListener('pagehide', () => {
    finalEnd = true;
    clearTimeout(retryTimer);
    endSession(session);
  });
  window.addEventListener('pageshow', (e) => {
    // Back from the back/forward cache: the session was ended on pagehide, start a new one.
    if (e.persisted) {
      finalEnd = false;
      connectNow();
    }
  });

  renderText();
  poke();
  setInterval(watchdog, WATCHDOG_PERIOD_MS);
  setState('connecting', 'connecting_detail');
  connect();
  loadTitle();
  // Ask for the headcount once the page has settled; it never blocks the picture (nor asks
  // twice while a roll call prompt, which asks the same, is open).
  setTimeout(() => {
    if (ui.rollcall.hidden) showHeadcountForm();
  }, 1500);
})();
