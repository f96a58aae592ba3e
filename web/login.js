// hallcast sign-in page: POST /api/v1/login, then back to the page that sent us here (?next=).
'use strict';

(() => {
  // Only same-origin paths: never an open redirect.
  function nextPath() {
    const n = new URLSearchParams(location.search).get('next') || '';
    return n.startsWith('/') && !n.startsWith('//') && !n.includes('\\') ? n : '/operator';
  }

  const form = document.getElementById('login-form');
  const error = document.getElementById('login-error');
  const submit = document.getElementById('login-submit');

  // Already signed in (e.g. a demo link opened from another site): go on.
  fetch('/api/v1/me', { credentials: 'same-origin', cache: 'no-store' })
    .then((r) => { if (r.ok) location.replace(nextPath()); })
    .catch(() => {});

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    error.hidden = true;
    submit.disabled = true;
    try {
      const r = await fetch('/api/v1/login', {
        method: 'POST',
        credentials: 'same-origin',
        headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
        body: JSON.stringify({
          name: document.getElementById('name').value.trim(),
          password: document.getElementById('password').value,
        }),
      });
      if (r.ok) {
        location.replace(nextPath());
        return;
      }
      let msg = `HTTP ${r.status}`;
      try { msg = (await r.json()).message || msg; } catch (_) { /* not JSON */ }
      error.textContent = msg;
      error.hidden = false;
      document.getElementById('password').select();
    } catch (e) {
      error.textContent = `Không kết nối được máy chủ / Cannot reach the relay: ${e.message}`;
      error.hidden = false;
    } finally {
      submit.disabled = false;
    }
  });
})();
