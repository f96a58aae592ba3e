// hallcast consoles: one fetch helper for /operator and /admin (no framework, no build step;
// served as-is at /static/api.js).
//
// Credentials, in this order:
//  * the signed-in session: the relay's `hallcast_session` cookie (HttpOnly, SameSite=Strict) is
//    sent by the browser itself; every state-changing request (POST/PUT/PATCH/DELETE) carries the
//    `X-CSRF-Token` header, the value of the `hallcast_csrf` cookie (double submit);
//  * a bearer token kept in sessionStorage under `hallcast_token` (scripts, tests): sent as
//    `Authorization: Bearer <token>`.
// Answers: JSON bodies are parsed; a non-2xx answer throws an Error whose message is the
// relay's bilingual message (the error body's `message`, "tiếng Việt / English") and whose
// `status` is the HTTP status. A 401 on a page sends the browser to /login?next=<this page>.
'use strict';

(() => {
  function cookie(name) {
    const m = document.cookie.split(';').map((c) => c.trim()).find((c) => c.startsWith(name + '='));
    return m ? decodeURIComponent(m.slice(name.length + 1)) : '';
  }

  function headers(method, extra) {
    const h = Object.assign({ Accept: 'application/json' }, extra || {});
    const token = sessionStorage.getItem('hallcast_token');
    if (token) h.Authorization = `Bearer ${token}`;
    if (method !== 'GET' && method !== 'HEAD') {
      const csrf = cookie('hallcast_csrf');
      if (csrf) h['X-CSRF-Token'] = csrf;
    }
    return h;
  }

  async function api(method, url, body, opts) {
    const init = { method, headers: headers(method), credentials: 'same-origin', cache: 'no-store' };
    if (body !== undefined && body !== null) {
      if (typeof body === 'string' || body instanceof Blob || body instanceof FormData) {
        init.body = body;
        if (opts && opts.contentType) init.headers['Content-Type'] = opts.contentType;
      } else {
        init.body = JSON.stringify(body);
        init.headers['Content-Type'] = 'application/json';
      }
    }
    const r = await fetch(url, init);
    const text = await r.text();
    let data = text;
    try { data = text ? JSON.parse(text) : null; } catch (_) { /* not JSON */ }
    if (!r.ok) {
      if (r.status === 401 && !(opts && opts.noRedirect) && !sessionStorage.getItem('hallcast_token')) {
        location.href = `/login?next=${encodeURIComponent(location.pathname + location.search)}`;
      }
      const msg = data && typeof data === 'object'
        ? data.message || data.error || text
        : text || `HTTP ${r.status}`;
      const e = new Error(msg);
      e.status = r.status;
      e.body = data;
      throw e;
    }
    return data;
  }

  window.hallcastApi = { api, headers, cookie };
})();
