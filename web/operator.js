// hallcast operator console (/operator): pick or create a conference, connect the hall encoder
// (WHIP URL + stream key), preview what the relay receives, the pre-flight checks, end/reopen,
// and publish this browser's camera as a fallback. Plain script, no build step; every API call
// goes through window.hallcastApi (session cookie + CSRF header).
//
// The preview is a WHEP session authorised by the conference's stream key: it carries no point,
// so the attendance ledger never accounts it.
'use strict';

(() => {
  const { api } = window.hallcastApi;
  const $ = (id) => document.getElementById(id);
  const POLL_MS = 2000;
  const CHECKS = [
    ['codec', 'Codec và profile', 'Codec and profile'],
    ['keyframe_interval', 'Khoảng keyframe', 'Keyframe interval'],
    ['b_frames', 'B-frame', 'B-frames'],
    ['bitrate', 'Tốc độ bit', 'Bitrate'],
    ['resolution', 'Độ phân giải', 'Resolution'],
    ['frame_rate', 'Tốc độ khung hình', 'Frame rate'],
    ['simulcast', 'Lớp simulcast', 'Simulcast layers'],
    ['audio', 'Có âm thanh', 'Audio present'],
    ['audio_level', 'Mức âm thanh', 'Audio level'],
  ];
  // An RTMP/SRT encoder (the relay's ingest gateway publishes it): this line takes the place of
  // keyframe_interval, saying that viewers' keyframe requests cannot reach the encoder.
  const INGEST_KEYFRAME = ['keyframe_requests', 'Khung hình chính', 'Keyframes, RTMP/SRT'];
  const PROTOCOL_NOTE = {
    WHIP: ['WHIP (WebRTC)', 'WHIP (WebRTC)'],
    RTMP: ['RTMP, qua cổng nhận của máy chủ', 'RTMP, through the relay\'s ingest gateway'],
    SRT: ['SRT, qua cổng nhận của máy chủ', 'SRT, through the relay\'s ingest gateway'],
  };
  const STATUS_VI = { green: 'Tốt', amber: 'Lưu ý', red: 'Cần sửa', unknown: 'Chưa rõ' };

  // What tests and curious operators can read.
  const state = (window.hallcastOperator = {
    conference: null,
    info: null,
    live: false,
    preview: null, // { pc, url }
    publisher: null, // { pc, url, stream }
    preflight: null,
    preflightAvailable: null,
  });

  function say(text) {
    $('broadcast-message').textContent = text;
  }

  function toast(text) {
    const t = document.createElement('div');
    t.className = 'toast';
    t.textContent = text;
    document.body.append(t);
    setTimeout(() => t.remove(), 1800);
  }

  // ---------------------------------------------------------------- conferences

  async function loadConferences(select) {
    const list = await api('GET', '/api/v1/conferences');
    const sel = $('conference-select');
    sel.textContent = '';
    for (const c of list) {
      const o = document.createElement('option');
      o.value = c.id;
      o.textContent = `${c.title} (${c.id})${c.state === 'ended' ? ' — đã kết thúc / ended' : ''}`;
      sel.append(o);
    }
    const wanted = select || new URLSearchParams(location.search).get('conference');
    const pick = list.find((c) => c.id === wanted) || list.find((c) => c.state === 'open') || list[0];
    if (pick) {
      sel.value = pick.id;
      await choose(pick.id);
    } else {
      $('new-conference').hidden = false;
      say('Chưa có hội nghị nào: hãy tạo một hội nghị. / No conference yet: create one.');
    }
  }

  async function choose(id) {
    if (state.conference !== id) {
      stopPreview();
      await stopCamera();
    }
    state.conference = id;
    const u = new URL(location.href);
    u.searchParams.set('conference', id);
    history.replaceState(null, '', u.pathname + u.search);
    const info = await api('GET', `/api/v1/conferences/${encodeURIComponent(id)}`);
    // Another conference chosen meanwhile (the first load's answer arriving after a new
    // conference was created): its answer wins, not this stale one.
    if (state.conference !== id) return;
    show(info);
    await poll();
    await loadRecordings();
  }

  function show(info) {
    state.info = info;
    $('whip-url').textContent = info.whip_url;
    $('stream-key').textContent = info.stream_key;
    // SRT encoders (vMix, hardware, ffmpeg): the whole URL, the key inside its streamid.
    $('srt-url').textContent = info.srt_url || '';
    $('srt-field').hidden = !info.srt_url;
    $('srt-note').hidden = !info.srt_url;
    // RTMP ingest (null when the relay takes none): the server URL; the key is the stream name.
    $('rtmp-url').textContent = info.rtmp_url || '';
    $('rtmp-row').hidden = !info.rtmp_url;
    $('rtmp-notes').hidden = !info.rtmp_url;
    const ended = info.state === 'ended';
    $('end-broadcast').hidden = ended;
    $('reopen').hidden = !ended;
    $('publish-camera').disabled = ended;
    renderPill();
  }

  function renderPill() {
    const pill = $('live-pill');
    const ended = state.info && state.info.state === 'ended';
    pill.className = 'status-pill' + (ended ? ' ended' : state.live ? ' live' : '');
    pill.textContent = ended
      ? 'Đã kết thúc / Ended'
      : state.live
        ? '● Đang phát / Live'
        : 'Chờ bộ mã hóa / Waiting for the encoder';
  }

  async function createConference(ev) {
    ev.preventDefault();
    $('new-conference-error').textContent = '';
    try {
      const c = await api('POST', '/api/v1/conferences', { id: $('new-id').value.trim(), title: $('new-title').value.trim() });
      $('new-conference').hidden = true;
      $('new-conference-form').reset();
      await loadConferences(c.id);
      toast('Đã tạo hội nghị / Conference created');
    } catch (e) {
      $('new-conference-error').textContent = e.message;
    }
  }

  async function change(what) {
    if (!state.conference) return;
    if (what === 'end' && !confirm('Kết thúc phát sóng? Mọi điểm cầu sẽ ngừng nhận hình.\nEnd the broadcast? Every point stops receiving.')) return;
    try {
      const c = await api('POST', `/api/v1/conferences/${encodeURIComponent(state.conference)}/${what}`);
      show(c);
      if (what === 'end') {
        stopPreview();
        await stopCamera();
      }
      say(what === 'end' ? 'Đã kết thúc phát sóng. / The broadcast has ended.' : 'Đã mở lại: bộ mã hóa có thể phát. / Reopened: the encoder may publish.');
      await loadConferences(state.conference);
    } catch (e) {
      say(e.message);
    }
  }

  async function rotateKey() {
    if (!confirm('Tạo khóa luồng mới? Bộ mã hóa phải dùng khóa mới cho lần phát sau.\nCreate a new stream key?')) return;
    try {
      show(await api('POST', `/api/v1/conferences/${encodeURIComponent(state.conference)}/stream-key`));
      toast('Đã đổi khóa luồng / New stream key');
    } catch (e) {
      say(e.message);
    }
  }

  // ---------------------------------------------------------------- recordings

  const REC_STATE = { complete: 'Hoàn tất · complete', recording: 'Đang ghi · recording', interrupted: 'Bị ngắt · interrupted' };

  // The chosen conference's recordings, newest first; the panel stays hidden when the relay
  // records nothing ([recording] enabled = false). A download is a plain link: the session
  // cookie authorises the GET and the browser streams the file to disk.
  async function loadRecordings() {
    const id = state.conference;
    if (!id) return;
    let answer;
    try {
      answer = await api('GET', `/api/v1/recordings?conference=${encodeURIComponent(id)}`);
    } catch (_) {
      return; // the next refresh tries again
    }
    if (id !== state.conference) return;
    state.recordings = answer.recordings;
    $('recordings-panel').hidden = !answer.enabled;
    const recs = answer.recordings.slice().sort((a, b) => b.start_ms - a.start_ms);
    $('recordings-empty').hidden = recs.length > 0;
    $('recordings').hidden = recs.length === 0;
    const time = (ms) => new Date(ms).toLocaleString('vi-VN');
    const cell = (text, cls) => {
      const td = document.createElement('td');
      td.textContent = text;
      if (cls) td.className = cls;
      return td;
    };
    $('recordings').tBodies[0].replaceChildren(...recs.map((r) => {
      const tr = document.createElement('tr');
      const a = document.createElement('a');
      a.href = r.download_url;
      a.download = r.file_name;
      a.textContent = 'Tải về · download';
      const link = document.createElement('td');
      link.append(a);
      tr.append(
        cell(time(r.start_ms)),
        cell(r.end_ms == null ? '–' : time(r.end_ms)),
        cell(r.duration_ms == null ? '–' : (r.duration_ms / 60000).toFixed(1), 'num'),
        cell((r.bytes / 1e6).toFixed(1), 'num'),
        cell(REC_STATE[r.state] || r.state),
        link,
      );
      return tr;
    }));
  }

  // ---------------------------------------------------------------- live status, preview

  async function poll() {
    const id = state.conference;
    if (!id) return;
    try {
      const r = await fetch(`/api/v1/conferences/${encodeURIComponent(id)}/status`, { cache: 'no-store' });
      if (r.ok && id === state.conference) {
        const s = await r.json();
        state.live = !!s.live;
        renderPill();
      }
    } catch (_) { /* the next poll tries again */ }
    if (state.live && !state.preview) startPreview();
    if (!state.live && state.preview && state.preview.pc.connectionState !== 'connecting') stopPreview();
    await pollPreflight();
  }

  function gathered(pc) {
    return new Promise((resolve) => {
      if (pc.iceGatheringState === 'complete') return resolve();
      const timer = setTimeout(resolve, 1500);
      pc.addEventListener('icegatheringstatechange', () => {
        if (pc.iceGatheringState === 'complete') {
          clearTimeout(timer);
          resolve();
        }
      });
    });
  }

  async function startPreview() {
    const info = state.info;
    if (!info) return;
    const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
    const p = (state.preview = { pc, url: null, key: info.stream_key });
    pc.addTransceiver('audio', { direction: 'recvonly' });
    pc.addTransceiver('video', { direction: 'recvonly' });
    pc.addEventListener('connectionstatechange', () => {
      if (['failed', 'closed'].includes(pc.connectionState) && state.preview === p) stopPreview();
    });
    try {
      await pc.setLocalDescription(await pc.createOffer());
      await gathered(pc);
      const r = await fetch(info.whep_url, {
        method: 'POST',
        headers: { 'Content-Type': 'application/sdp', Authorization: `Bearer ${info.stream_key}` },
        body: pc.localDescription.sdp,
      });
      if (r.status !== 201) throw new Error(`WHEP ${r.status}: ${(await r.text()).trim()}`);
      const loc = r.headers.get('Location');
      p.url = loc ? new URL(loc, r.url).href : null;
      await pc.setRemoteDescription({ type: 'answer', sdp: await r.text() });
      if (state.preview !== p) return release(p);
      $('preview').srcObject = new MediaStream(pc.getReceivers().map((x) => x.track));
      $('preview').play().catch(() => {});
    } catch (e) {
      console.warn('hallcast: preview failed', e);
      if (state.preview === p) stopPreview();
    }
  }

  function release(p) {
    if (p.url) {
      fetch(p.url, { method: 'DELETE', headers: { Authorization: `Bearer ${p.key}` }, keepalive: true }).catch(() => {});
    }
    p.pc.close();
  }

  function stopPreview() {
    const p = state.preview;
    state.preview = null;
    if (p) release(p);
    $('preview').srcObject = null;
  }

  // ---------------------------------------------------------------- pre-flight (helper B's API)

  async function pollPreflight() {
    const id = state.conference;
    let report = null;
    let note = '';
    try {
      report = await api('GET', `/api/v1/conferences/${encodeURIComponent(id)}/preflight`, null, { noRedirect: true });
      state.preflightAvailable = true;
    } catch (e) {
      if (e.status === 404 || e.status === 405) {
        state.preflightAvailable = false;
        note = 'Máy chủ này chưa có phân tích trước khi phát. / Pre-flight analysis is not available on this relay.';
      } else {
        note = e.message;
      }
    }
    if (id !== state.conference) return;
    state.preflight = report;
    renderPreflight(report, note);
  }

  function renderPreflight(report, note) {
    const byId = new Map(((report && report.checks) || []).map((c) => [c.id, c]));
    const ul = $('preflight');
    ul.textContent = '';
    const problem = report && report.ingest_problem;
    if (problem) ul.append(problemLine(problem));
    for (const entry of CHECKS) {
      const [id, vi, en] = entry[0] === 'keyframe_interval' && byId.has(INGEST_KEYFRAME[0]) ? INGEST_KEYFRAME : entry;
      const c = byId.get(id) || { id, status: 'unknown' };
      const status = ['green', 'amber', 'red'].includes(c.status) ? c.status : 'unknown';
      const li = document.createElement('li');
      li.dataset.check = id;
      li.dataset.status = status;
      const dot = document.createElement('span');
      dot.className = `dot ${status}`;
      dot.title = status;
      const name = document.createElement('span');
      name.className = 'name';
      name.innerHTML = '<b></b> <span class="en"></span>';
      name.querySelector('b').textContent = vi;
      name.querySelector('.en').textContent = en;
      name.title = `${vi} / ${en}`;
      const value = document.createElement('span');
      value.className = 'value';
      value.textContent = c.value || STATUS_VI[status];
      const advice = document.createElement('span');
      advice.className = 'advice';
      if (c.advice_vi || c.advice_en) {
        advice.textContent = c.advice_vi || '';
        const e = document.createElement('span');
        e.className = 'en';
        e.textContent = c.advice_en || '';
        advice.append(e);
      } else if (status === 'unknown') {
        advice.textContent = 'Chưa đủ dữ liệu · Not enough received yet';
      }
      li.append(dot, name, value, advice);
      ul.append(li);
    }
    $('preflight-note').textContent = note || (report && !report.live ? 'Chưa nhận luồng. / Nothing is published yet.' : '');
    const source = $('preflight-source');
    const protocol = report && report.live && PROTOCOL_NOTE[report.protocol];
    source.textContent = '';
    source.hidden = !protocol;
    if (protocol) {
      source.dataset.protocol = report.protocol;
      source.innerHTML = 'Nguồn phát: <b></b> <span class="en"></span>';
      source.querySelector('b').textContent = protocol[0];
      source.querySelector('.en').textContent = `Publisher: ${protocol[1]}`;
    }
  }

  // The ingest gateway's latest refused push of this conference: a red line above the checks.
  function problemLine(p) {
    const li = document.createElement('li');
    li.dataset.check = 'ingest_problem';
    li.dataset.status = 'red';
    const dot = document.createElement('span');
    dot.className = 'dot red';
    dot.title = 'red';
    const name = document.createElement('span');
    name.className = 'name';
    name.innerHTML = '<b>Bộ mã hoá bị từ chối</b> <span class="en">Encoder refused</span>';
    name.title = 'Bộ mã hoá bị từ chối / Encoder refused';
    const value = document.createElement('span');
    value.className = 'value';
    const at = new Date(p.at_ms);
    value.textContent = `${p.protocol} · ${at.toLocaleTimeString('vi-VN')}`;
    const advice = document.createElement('span');
    advice.className = 'advice';
    advice.textContent = p.message_vi || '';
    const e = document.createElement('span');
    e.className = 'en';
    e.textContent = p.message_en || '';
    advice.append(e);
    li.append(dot, name, value, advice);
    return li;
  }

  // ---------------------------------------------------------------- publish this browser's camera

  async function publishCamera() {
    const info = state.info;
    if (!info || state.publisher) return;
    $('publish-camera').disabled = true;
    say('Đang mở camera… / Opening the camera…');
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 1280, height: 720, frameRate: 30 } });
    } catch (e) {
      say(`Không mở được camera / Cannot open the camera: ${e.message}`);
      $('publish-camera').disabled = false;
      return;
    }
    const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
    const pub = (state.publisher = { pc, url: null, stream, status: null, key: info.stream_key });
    pc.addTransceiver(stream.getAudioTracks()[0], { direction: 'sendonly', streams: [stream] });
    const video = pc.addTransceiver(stream.getVideoTracks()[0], { direction: 'sendonly', streams: [stream] });
    // H.264 constrained baseline first (what halls' viewers decode everywhere), else the default.
    try {
      const caps = RTCRtpSender.getCapabilities('video').codecs;
      const rank = (c) => ['42e01f', '42001f', '4d001f'].indexOf((((c.sdpFmtpLine || '').match(/profile-level-id=([0-9a-f]{6})/i) || [])[1] || '').toLowerCase()) >>> 0;
      const h264 = caps.filter((c) => c.mimeType.toLowerCase() === 'video/h264' && /packetization-mode=1/.test(c.sdpFmtpLine || '')).sort((a, b) => rank(a) - rank(b));
      const rest = caps.filter((c) => !h264.includes(c));
      if (h264.length) video.setCodecPreferences([...h264, ...rest]);
    } catch (_) { /* default order */ }
    try {
      await pc.setLocalDescription(await pc.createOffer());
      await gathered(pc);
      const r = await fetch(info.whip_url, {
        method: 'POST',
        headers: { 'Content-Type': 'application/sdp', Authorization: `Bearer ${info.stream_key}` },
        body: pc.localDescription.sdp,
      });
      pub.status = r.status;
      if (r.status !== 201) throw new Error(`${(await r.text()).trim()} (HTTP ${r.status})`);
      const loc = r.headers.get('Location');
      pub.url = loc ? new URL(loc, r.url).href : null;
      await pc.setRemoteDescription({ type: 'answer', sdp: await r.text() });
      $('publish-camera').hidden = true;
      $('stop-camera').hidden = false;
      say('Đang phát từ camera của trình duyệt này. / Publishing this browser\'s camera.');
      setTimeout(poll, 1000);
    } catch (e) {
      say(`Không phát được / Cannot publish: ${e.message}`);
      await stopCamera();
    }
  }

  async function stopCamera() {
    const pub = state.publisher;
    state.publisher = null;
    if (pub) {
      if (pub.url) {
        await fetch(pub.url, { method: 'DELETE', headers: { Authorization: `Bearer ${pub.key}` } }).catch(() => {});
      }
      pub.pc.close();
      pub.stream.getTracks().forEach((t) => t.stop());
    }
    $('publish-camera').hidden = false;
    $('publish-camera').disabled = !!(state.info && state.info.state === 'ended');
    $('stop-camera').hidden = true;
  }

  // ---------------------------------------------------------------- wiring

  async function copy(id) {
    const text = $(id).textContent;
    try {
      await navigator.clipboard.writeText(text);
    } catch (_) {
      const r = document.createRange();
      r.selectNodeContents($(id));
      getSelection().removeAllRanges();
      getSelection().addRange(r);
      document.execCommand('copy');
    }
    toast('Đã sao chép / Copied');
  }

  async function start() {
    document.querySelectorAll('button.copy').forEach((b) => b.addEventListener('click', () => copy(b.dataset.copy)));
    $('conference-select').addEventListener('change', (e) => choose(e.target.value).catch((err) => say(err.message)));
    $('new-conference-toggle').addEventListener('click', () => {
      $('new-conference').hidden = !$('new-conference').hidden;
      if (!$('new-conference').hidden) $('new-id').focus();
    });
    $('new-conference-form').addEventListener('submit', createConference);
    $('end-broadcast').addEventListener('click', () => change('end'));
    $('reopen').addEventListener('click', () => change('reopen'));
    $('rotate-key').addEventListener('click', rotateKey);
    $('publish-camera').addEventListener('click', publishCamera);
    $('stop-camera').addEventListener('click', stopCamera);
    $('logout').addEventListener('click', async () => {
      await stopCamera();
      stopPreview();
      await api('POST', '/api/v1/logout').catch(() => {});
      location.href = '/login?next=/operator';
    });
    window.addEventListener('pagehide', () => {
      stopPreview();
      stopCamera();
    });
    renderPreflight(null, '');
    try {
      const me = await api('GET', '/api/v1/me');
      $('who').textContent = `${me.name} (${me.role === 'admin' ? 'quản trị / admin' : 'vận hành / operator'})`;
      await loadConferences();
    } catch (e) {
      say(e.message);
    }
    setInterval(() => poll().catch(() => {}), POLL_MS);
    // Recordings change at a broadcast's start and end: every 10 s is soon enough.
    setInterval(() => loadRecordings().catch(() => {}), 10000);
    state.ready = true;
  }

  start();
})();
