#!/usr/bin/env node
// Opens N tabs of hallcast's viewer page (/watch/{conference}?token=...) in one headless Chromium
// and reports, per page, what WebRTC's getStats says it received.
//
// An init script wraps RTCPeerConnection (so every connection the page makes is seen, also across
// reconnects), notes when the page POSTs an SDP offer, and samples `window.hallcast.state`.
//
// stdout (JSON lines):
//   {"event":"progress","t":..,"wall_ms":..,"pages":[{page, state, frames_decoded, audio_packets_received,
//      origin, session_url, frame_width, frame_height, fps, freeze_count, total_freezes_duration_s,
//      pause_count, total_pauses_duration_s, video_bytes_received, audio_bytes_received,
//      video_pli_count, video_nack_count, video_packets_lost, video_keyframes_decoded,
//      video_frames_received, video_frames_dropped,
//      audio_samples_received, audio_concealed_samples, text_seen}, ...]}
//      (every --progress-interval seconds, default 1: a time series of what getStats says)
//   {"event":"result","pages":[{page, frames_decoded, frame_width, frame_height, audio_packets_received,
//      audio_samples_received, audio_concealed_samples, audio_silent_concealed_samples,
//      audio_samples_duration_s, first_frame_ms, first_frame_ms_from_post, states, state,
//      video_codec, n_peer_connections, n_offers_posted, muted, origin, session_url, selected_pair,
//      ice_servers, page_errors}, ...]}
// `selected_pair`: the ICE candidate pair getStats names selected on the page's newest connection that
// has one ({local_candidate_type, local_protocol, relay_protocol, local_candidate_url,
// remote_candidate_type, remote_candidate_address, remote_candidate_port}; null if none);
// `ice_servers`: that connection's getConfiguration().iceServers (what the page gave it).
// `origin` is the page's location.origin (after the relay's redirects: the relay that served the page),
// `session_url` its current WHEP session (window.hallcast.sessionUrl: the relay it plays from now).
// The audio_* counters are getStats' inbound-rtp audio packetsReceived, totalSamplesReceived,
// concealedSamples, silentConcealedSamples and totalSamplesDuration (and audio_energy its
// totalAudioEnergy: the sum of squared levels × durations, 0 for silence), summed over the page's
// connections (each at its highest value seen).
// --until-frames N ends the run early once every page decoded N frames and received
// --until-audio packets of audio.
// audio_only / audio_only_visible / feed_active / viewers: what the page made of the relay's
// events (window.hallcast.audioOnly, the #audio-only notice shown, `active`/`inactive`,
// `viewercount`). --until-audio-only ends the run once page 0 shows the audio-only notice
// (a --screenshot is then of that state); --audio-only-screenshot FILE.png takes one of page 0
// the first time it shows the notice, and the run goes on.
// freeze_count / total_freezes_duration_s / pause_count / total_pauses_duration_s are getStats'
// inbound-rtp video freezeCount, totalFreezesDuration, pauseCount, totalPausesDuration (a gap of
// more than 5 s between rendered frames is a pause, not a freeze), video_bytes_received and
// audio_bytes_received its bytesReceived, fps its framesPerSecond; all summed over the page's
// connections like the audio counters.
// --watch-text TEXT: `text_seen` says whether the page's visible text contains TEXT (e.g. the
// "audio only" notice); --text-screenshot FILE.png takes a screenshot of the first page the first
// time it does.

import { emit, launchBrowser, log, parseArgs, run, sleep } from './common.mjs';

const USAGE = `usage: watch_pages.mjs --url VIEWER_URL [--pages N] [--duration SECS] [--until-frames N]
                       [--until-audio PACKETS] [--progress] [--progress-interval SECS]
                       [--screenshot FILE.png] [--lang vi|en] [--until-audio-only]
                       [--audio-only-screenshot FILE.png]
                       [--watch-text TEXT] [--text-screenshot FILE.png]
                       [--headcount N]   (page 0 answers the headcount prompt with N)
                       [--spki BASE64]   (trust an https relay's certificate by its SPKI sha256)
                       [--serve-web DIR] (development: the page and /static/* from DIR instead of the relay)`;

const args = parseArgs(
  { url: '', pages: 1, duration: 30, until_frames: 0, until_audio: 1, progress: false, progress_interval: 1, screenshot: '', lang: '', headcount: 0, serve_web: '', spki: '', until_audio_only: false, audio_only_screenshot: '', watch_text: '', text_screenshot: '' },
  USAGE,
);

// Injected before any script of the page runs.
function initScript() {
  const hc = (window.__hcTest = {
    pcs: [],
    maxima: [],
    posts: [],
    states: [],
    firstFrameAt: null,
    firstFramePost: null,
    videoCodec: null,
    frameWidth: 0,
    frameHeight: 0,
    fps: null,
    watchText: '',
    selectedPair: null,
    iceServers: null,
  });
  const Native = window.RTCPeerConnection;
  window.RTCPeerConnection = class extends Native {
    constructor(...a) {
      super(...a);
      hc.pcs.push(this);
      hc.maxima.push({
        frames: 0, audio: 0, samples: 0, concealed: 0, silent: 0, duration: 0,
        freezes: 0, freezeS: 0, pauses: 0, pauseS: 0, videoBytes: 0, audioBytes: 0,
        plis: 0, nacks: 0, videoLost: 0, keyframes: 0, framesReceived: 0, framesDropped: 0,
      });
    }
  };
  const nativeFetch = window.fetch;
  window.fetch = function (input, init) {
    const headers = new Headers((init && init.headers) || {});
    if (init && String(init.method).toUpperCase() === 'POST' && /application\/sdp/i.test(headers.get('content-type') || '')) {
      hc.posts.push(performance.now());
    }
    return nativeFetch.apply(this, arguments);
  };
  const noteState = () => {
    const s = window.hallcast && window.hallcast.state;
    if (s && hc.states[hc.states.length - 1] !== s) hc.states.push(s);
  };
  setInterval(noteState, 50);
  window.addEventListener('hallcast:state', noteState);

  let sampling = false;
  hc.sample = async () => {
    if (sampling) return;
    sampling = true;
    try {
      for (let i = 0; i < hc.pcs.length; i++) {
        const pc = hc.pcs[i];
        if (pc.signalingState === 'closed') continue;
        let report;
        try {
          report = await pc.getStats();
        } catch {
          continue;
        }
        let frames = 0;
        let audio = 0;
        let samples = 0;
        let concealed = 0;
        let silent = 0;
        let duration = 0;
        let freezes = 0;
        let freezeS = 0;
        let pauses = 0;
        let pauseS = 0;
        let videoBytes = 0;
        let audioBytes = 0;
        let plis = 0;
        let nacks = 0;
        let videoLost = 0;
        let keyframes = 0;
        let framesReceived = 0;
        let framesDropped = 0;
        let energy = 0;
        report.forEach((s) => {
          if (s.type !== 'inbound-rtp') return;
          if (s.kind === 'video') {
            frames += s.framesDecoded || 0;
            if (s.frameWidth) {
              hc.frameWidth = s.frameWidth;
              hc.frameHeight = s.frameHeight;
            }
            freezes += s.freezeCount || 0;
            freezeS += s.totalFreezesDuration || 0;
            pauses += s.pauseCount || 0;
            pauseS += s.totalPausesDuration || 0;
            videoBytes += s.bytesReceived || 0;
            plis += s.pliCount || 0;
            nacks += s.nackCount || 0;
            videoLost += s.packetsLost || 0;
            keyframes += s.keyFramesDecoded || 0;
            framesReceived += s.framesReceived || 0;
            framesDropped += s.framesDropped || 0;
            if (typeof s.framesPerSecond === 'number') hc.fps = s.framesPerSecond;
            const codec = s.codecId && report.get(s.codecId);
            if (codec) hc.videoCodec = codec.mimeType;
          } else if (s.kind === 'audio') {
            audio += s.packetsReceived || 0;
            samples += s.totalSamplesReceived || 0;
            concealed += s.concealedSamples || 0;
            silent += s.silentConcealedSamples || 0;
            duration += s.totalSamplesDuration || 0;
            energy += s.totalAudioEnergy || 0;
            audioBytes += s.bytesReceived || 0;
          }
        });
        let pair = null;
        report.forEach((s) => {
          if (s.type === 'transport' && s.selectedCandidatePairId) pair = report.get(s.selectedCandidatePairId);
        });
        if (pair) {
          const l = report.get(pair.localCandidateId) || {};
          const r = report.get(pair.remoteCandidateId) || {};
          hc.selectedPair = {
            local_candidate_type: l.candidateType || null,
            local_protocol: l.protocol || null,
            relay_protocol: l.relayProtocol || null,
            local_candidate_url: l.url || null,
            remote_candidate_type: r.candidateType || null,
            remote_candidate_address: r.address || null,
            remote_candidate_port: r.port || null,
          };
          hc.iceServers = (pc.getConfiguration().iceServers || []).map((x) => ({ urls: x.urls }));
        }
        const m = hc.maxima[i];
        m.frames = Math.max(m.frames, frames);
        m.audio = Math.max(m.audio, audio);
        m.samples = Math.max(m.samples, samples);
        m.concealed = Math.max(m.concealed, concealed);
        m.silent = Math.max(m.silent, silent);
        m.duration = Math.max(m.duration, duration);
        m.energy = Math.max(m.energy || 0, energy);
        m.freezes = Math.max(m.freezes, freezes);
        m.freezeS = Math.max(m.freezeS, freezeS);
        m.pauses = Math.max(m.pauses, pauses);
        m.pauseS = Math.max(m.pauseS, pauseS);
        m.videoBytes = Math.max(m.videoBytes, videoBytes);
        m.audioBytes = Math.max(m.audioBytes, audioBytes);
        for (const [k, v] of Object.entries({ plis, nacks, videoLost, keyframes, framesReceived, framesDropped })) {
          m[k] = Math.max(m[k], v);
        }
      }
      const total = hc.maxima.reduce((a, m) => a + m.frames, 0);
      if (total > 0 && hc.firstFrameAt === null) {
        hc.firstFrameAt = performance.now();
        const before = hc.posts.filter((t) => t <= hc.firstFrameAt);
        hc.firstFramePost = before.length ? before[before.length - 1] : null;
      }
    } finally {
      sampling = false;
    }
  };
  // Fine sampling until the first frame (it dates the first frame), then once a second.
  const tick = async () => {
    await hc.sample();
    setTimeout(tick, hc.firstFrameAt === null ? 50 : 1000);
  };
  setTimeout(tick, 50);

  hc.summary = async () => {
    await hc.sample();
    noteState();
    const video = document.querySelector('video');
    const sum = (k) => hc.maxima.reduce((a, m) => a + m[k], 0);
    const text = (document.body && document.body.innerText) || '';
    return {
      frames_decoded: hc.maxima.reduce((a, m) => a + m.frames, 0),
      audio_packets_received: hc.maxima.reduce((a, m) => a + m.audio, 0),
      audio_samples_received: hc.maxima.reduce((a, m) => a + m.samples, 0),
      audio_concealed_samples: hc.maxima.reduce((a, m) => a + m.concealed, 0),
      audio_silent_concealed_samples: hc.maxima.reduce((a, m) => a + m.silent, 0),
      audio_samples_duration_s: hc.maxima.reduce((a, m) => a + m.duration, 0),
      audio_energy: hc.maxima.reduce((a, m) => a + (m.energy || 0), 0),
      frame_width: hc.frameWidth,
      frame_height: hc.frameHeight,
      freeze_count: sum('freezes'),
      total_freezes_duration_s: sum('freezeS'),
      pause_count: sum('pauses'),
      total_pauses_duration_s: sum('pauseS'),
      video_bytes_received: sum('videoBytes'),
      audio_bytes_received: sum('audioBytes'),
      // The receiver's repairs (diagnosis of freezes): keyframe requests and NACKs it sent,
      // video packets lost, keyframes decoded, frames received and dropped.
      video_pli_count: sum('plis'),
      video_nack_count: sum('nacks'),
      video_packets_lost: sum('videoLost'),
      video_keyframes_decoded: sum('keyframes'),
      video_frames_received: sum('framesReceived'),
      video_frames_dropped: sum('framesDropped'),
      fps: hc.fps,
      text_seen: !!hc.watchText && text.includes(hc.watchText),
      visible_text: text.replace(/\s+/g, ' ').trim().slice(0, 300),
      first_frame_ms: hc.firstFrameAt === null ? null : Math.round(hc.firstFrameAt),
      first_frame_ms_from_post:
        hc.firstFrameAt === null || hc.firstFramePost === null ? null : Math.round(hc.firstFrameAt - hc.firstFramePost),
      states: hc.states.slice(),
      state: (window.hallcast && window.hallcast.state) || null,
      has_hallcast_pc: !!(window.hallcast && window.hallcast.pc),
      video_codec: hc.videoCodec,
      n_peer_connections: hc.pcs.length,
      n_offers_posted: hc.posts.length,
      selected_pair: hc.selectedPair,
      ice_servers: hc.iceServers,
      muted: video ? video.muted : null,
      origin: location.origin,
      session_url: (window.hallcast && window.hallcast.sessionUrl) || null,
      video_width: video ? video.videoWidth : null,
      lang: document.documentElement.lang,
      status_text: (document.getElementById('status-title') || {}).textContent || null,
      secure_context: window.isSecureContext,
      badge_text: (document.getElementById('badge') || {}).textContent || null,
      audio_only: !!(window.hallcast && window.hallcast.audioOnly),
      audio_only_visible: (() => {
        const el = document.getElementById('audio-only');
        return !!el && !el.hidden && el.getClientRects().length > 0 ? el.textContent.replace(/\s+/g, ' ').trim() : null;
      })(),
      feed_active: window.hallcast ? window.hallcast.feedActive : null,
      viewers: window.hallcast ? window.hallcast.viewers : null,
    };
  };
}

async function answerHeadcount(page, n) {
  try {
    const form = page.locator('#headcount');
    await form.waitFor({ state: 'visible', timeout: 15_000 });
    await page.fill('#headcount-input', String(n));
    const responded = page
      .waitForResponse((r) => r.request().method() === 'POST' && /\/headcount$/.test(new URL(r.url()).pathname), { timeout: 15_000 })
      .catch(() => null);
    await page.click('#headcount button[type=submit]');
    const response = await responded;
    let sent = null;
    let answer = null;
    if (response) {
      try { sent = response.request().postDataJSON(); } catch { sent = null; }
      try { answer = await response.json(); } catch { answer = null; }
    }
    await sleep(2000);
    const shown = await page.evaluate((status) => {
      const visible = (id) => {
        const el = document.getElementById(id);
        return !!el && !el.hidden && el.getClientRects().length > 0;
      };
      return {
        api_status: status,
        form_visible: visible('headcount'),
        button_visible: visible('headcount-button'),
        button_text: document.getElementById('headcount-button').textContent.trim(),
        message: document.getElementById('headcount-message').textContent.trim(),
      };
    }, response ? response.status() : null);
    return { ...shown, sent, answer };
  } catch (e) {
    return { error: String(e.message || e) };
  }
}

run(async () => {
  if (!args.url || args.pages < 1) {
    process.stderr.write(USAGE + '\n');
    return 2;
  }
  const { context, close } = await launchBrowser({
    onSignal: async () => {
      await report();
    },
    // An https relay with a test certificate: trusted by its key's hash, which keeps the page a
    // secure context (--ignore-certificate-errors would not).
    extraArgs: args.spki ? [`--ignore-certificate-errors-spki-list=${args.spki}`] : [],
  });
  if (args.lang) {
    await context.addInitScript((lang) => localStorage.setItem('hallcast.lang', lang), args.lang);
  }
  await context.addInitScript(initScript);
  if (args.watch_text) {
    await context.addInitScript((t) => {
      window.__hcTest.watchText = t;
    }, args.watch_text);
  }
  if (args.serve_web) {
    // Development aid: try page changes against a relay whose binary still embeds older files.
    const { readFileSync } = await import('node:fs');
    const { join } = await import('node:path');
    const origin = new URL(args.url).origin;
    const types = { html: 'text/html', js: 'text/javascript', css: 'text/css' };
    const serve = (file) => (route) =>
      route.fulfill({ status: 200, contentType: types[file.split('.').pop()], body: readFileSync(join(args.serve_web, file)) });
    await context.route(`${origin}/watch/**`, serve('watch.html'));
    await context.route(`${origin}/static/watch.js`, serve('watch.js'));
    await context.route(`${origin}/static/watch.css`, serve('watch.css'));
  }
  const pages = [];
  const pageErrors = [];
  for (let i = 0; i < args.pages; i++) {
    const page = i === 0 && context.pages().length ? context.pages()[0] : await context.newPage();
    pageErrors.push([]);
    page.on('pageerror', (e) => {
      pageErrors[i].push(String(e.message || e));
      log(`page ${i} error:`, e.message || e);
    });
    page.on('console', (m) => {
      // The page's own notes (`hallcast: connection lost (...)`) date its reconnects in the log.
      if (m.type() === 'error' || m.type() === 'warning' || (m.type() === 'info' && m.text().startsWith('hallcast:'))) {
        log(`page ${i} console.${m.type()}:`, m.text());
      }
    });
    page.on('requestfailed', (r) => log(`page ${i} request failed: ${r.method()} ${r.url()}: ${(r.failure() || {}).errorText}`));
    pages.push(page);
  }
  const started = Date.now();
  await Promise.all(pages.map((p) => p.goto(args.url, { waitUntil: 'domcontentloaded', timeout: 30_000 })));

  // Answer the headcount prompt on page 0 the way a person would, and note what the page shows.
  let headcount = null;
  const headcountDone = args.headcount > 0 ? answerHeadcount(pages[0], args.headcount).then((h) => (headcount = h)) : null;

  // Each page's last summary and when it was read. The final report races the signal that
  // ends this script: the same SIGTERM reaches Chromium (one process group) and can close the
  // page first. A summary read within two progress intervals stands in then, marked `stale`; an
  // older one (a page that died earlier) does not, and the page reports its error.
  const lastGood = pages.map(() => null);
  const summaries = async () =>
    Promise.all(
      pages.map(async (p, i) => {
        try {
          const s = { page: i, ...(await p.evaluate(() => window.__hcTest.summary())), page_errors: pageErrors[i] };
          lastGood[i] = { at: Date.now(), s };
          return s;
        } catch (e) {
          const msg = String(e.message || e);
          const fresh = lastGood[i] && Date.now() - lastGood[i].at <= 2 * args.progress_interval * 1000;
          if (reported && fresh && /has been closed/.test(msg)) {
            return { ...lastGood[i].s, stale: msg, page_errors: pageErrors[i] };
          }
          return { page: i, error: msg, page_errors: pageErrors[i] };
        }
      }),
    );

  let reported = false;
  async function report() {
    if (reported) return;
    reported = true;
    if (headcountDone) await Promise.race([headcountDone, sleep(10_000)]);
    const result = await summaries();
    if (result[0]) result[0].headcount = headcount;
    if (args.screenshot) {
      await pages[0].screenshot({ path: args.screenshot }).catch((e) => log('screenshot failed:', e.message));
    }
    emit({ event: 'result', elapsed_s: (Date.now() - started) / 1000, pages: result });
  }

  const deadline = started + args.duration * 1000;
  let audioOnlyShot = false;
  let textShot = false;
  while (Date.now() < deadline) {
    await sleep(Math.min(args.progress_interval * 1000, Math.max(0, deadline - Date.now())));
    if (reported) break;
    const s = await summaries();
    if (args.progress) {
      emit({
        event: 'progress',
        t: (Date.now() - started) / 1000,
        wall_ms: Date.now(),
        pages: s.map((p) => ({
          page: p.page,
          state: p.state,
          frames_decoded: p.frames_decoded,
          audio_packets_received: p.audio_packets_received,
          n_peer_connections: p.n_peer_connections,
          n_offers_posted: p.n_offers_posted,
          status_text: p.status_text,
          audio_only: p.audio_only,
          audio_only_visible: p.audio_only_visible,
          origin: p.origin,
          session_url: p.session_url,
          frame_width: p.frame_width,
          frame_height: p.frame_height,
          fps: p.fps,
          freeze_count: p.freeze_count,
          total_freezes_duration_s: p.total_freezes_duration_s,
          pause_count: p.pause_count,
          total_pauses_duration_s: p.total_pauses_duration_s,
          video_bytes_received: p.video_bytes_received,
          audio_bytes_received: p.audio_bytes_received,
          video_pli_count: p.video_pli_count,
          video_nack_count: p.video_nack_count,
          video_packets_lost: p.video_packets_lost,
          video_keyframes_decoded: p.video_keyframes_decoded,
          video_frames_received: p.video_frames_received,
          video_frames_dropped: p.video_frames_dropped,
          audio_samples_received: p.audio_samples_received,
          audio_concealed_samples: p.audio_concealed_samples,
          text_seen: p.text_seen,
        })),
      });
    }
    const showing = s.findIndex((p) => p.text_seen);
    if (args.text_screenshot && !textShot && showing >= 0) {
      textShot = true;
      await pages[showing]
        .screenshot({ path: args.text_screenshot })
        .then(() => emit({ event: 'text_screenshot', page: showing, path: args.text_screenshot, wall_ms: Date.now() }))
        .catch((e) => log('screenshot failed:', e.message));
    }
    if (
      args.until_frames > 0 &&
      s.every((p) => p.frames_decoded >= args.until_frames && p.audio_packets_received >= args.until_audio)
    ) {
      break;
    }
    if (args.audio_only_screenshot && !audioOnlyShot && s[0] && s[0].audio_only_visible) {
      audioOnlyShot = true;
      await sleep(1000); // the notice's fade-in and the dimmed picture settle
      await pages[0].screenshot({ path: args.audio_only_screenshot }).catch((e) => log('screenshot failed:', e.message));
      emit({ event: 'screenshot', path: args.audio_only_screenshot, t: (Date.now() - started) / 1000 });
    }
    if (args.until_audio_only && s[0] && s[0].audio_only_visible) {
      await sleep(1000); // the notice's fade-in and the dimmed picture settle
      break;
    }
  }
  await report();
  await close();
  return 0;
});
