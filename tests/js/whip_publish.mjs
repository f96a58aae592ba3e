#!/usr/bin/env node
// Publishes Chromium's fake camera (1280x720) and fake microphone to a WHIP endpoint, like a
// browser-based hall encoder, and stays up for --duration seconds. Then DELETEs the session.
//
// stdout (JSON lines):
//   {"event":"published","status":201,"location":...,"degradation":...}   or the refusal: status + body
//   (degradation: the RTCRtpSender's degradationPreference as set, or why it was refused)
//   {"event":"progress","t":..,"frames_encoded":..,"layers":[...],"audio_packets_sent":..,"connection":..}
//   (a layer: {rid, frame_width, frame_height, frames_encoded, bytes_sent, packets_sent,
//    retransmitted_packets_sent, quality_limitation}: getStats' video outbound-rtp, one per rid)
//   {"event":"result","status":..,"body":..,"location":..,"frames_encoded":..,"layers":[...],
//    "audio_packets_sent":..,"connection_states":[...],"delete_status":..}
// Exit code 0 when the offer was accepted (201), 3 when the server refused it.

import { emit, launchBrowser, log, parseArgs, run, sleep } from './common.mjs';

const USAGE = `usage: whip_publish.mjs --url WHIP_URL --key STREAM_KEY [--codec h264|vp8] [--simulcast]
                        [--mute-audio] [--duration SECS] [--progress] [--shed-top AT:FOR]
                        [--header 'NAME: VALUE']
  --shed-top AT:FOR   (simulcast) stop sending the top layer AT seconds after publishing, for FOR
                      seconds (RTCRtpSender.setParameters, encodings[top].active), as an encoder
                      shedding its top layer under load; emits {"event":"shed"} and {"event":"restored"}
  --header 'N: V'     one extra request header on the WHIP POST`;

const args = parseArgs(
  { url: '', key: '', codec: 'h264', simulcast: false, mute_audio: false, duration: 30, progress: false, shed_top: '', header: '' },
  USAGE,
);

// Runs inside the page. Kept free of closures over Node state: Playwright serialises it.
async function publishInPage({ url, key, codec, simulcast, muteAudio, header }) {
  const hc = (window.__hcPublisher = { states: [], pc: null, location: null });
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: true,
    video: { width: { exact: 1280 }, height: { exact: 720 }, frameRate: 30 },
  });
  // A muted microphone: the track is sent, as digital silence (RFC 6464 level 127).
  if (muteAudio) stream.getAudioTracks()[0].enabled = false;
  const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
  hc.pc = pc;
  pc.addEventListener('connectionstatechange', () => hc.states.push(pc.connectionState));
  pc.addTransceiver(stream.getAudioTracks()[0], { direction: 'sendonly', streams: [stream] });
  const init = { direction: 'sendonly', streams: [stream] };
  if (simulcast) {
    init.sendEncodings = [
      { rid: 'l', scaleResolutionDownBy: 4, maxBitrate: 200_000 },
      { rid: 'm', scaleResolutionDownBy: 2, maxBitrate: 700_000 },
      { rid: 'h', maxBitrate: 2_000_000 },
    ];
  }
  const video = pc.addTransceiver(stream.getVideoTracks()[0], init);

  const mime = `video/${codec}`.toLowerCase();
  const caps = RTCRtpSender.getCapabilities('video').codecs;
  let wanted = caps.filter((c) => c.mimeType.toLowerCase() === mime);
  if (codec === 'h264') {
    // The relay forwards packetization-mode 1; prefer constrained baseline, then baseline, then main.
    const rank = (c) => {
      const f = c.sdpFmtpLine || '';
      const profile = (f.match(/profile-level-id=([0-9a-f]{6})/i) || [])[1] || '';
      return ['42e01f', '42001f', '4d001f'].indexOf(profile.toLowerCase()) >>> 0;
    };
    wanted = wanted.filter((c) => /packetization-mode=1/.test(c.sdpFmtpLine || ''));
    wanted.sort((a, b) => rank(a) - rank(b));
  }
  if (wanted.length === 0) throw new Error(`this Chromium cannot send ${mime}`);
  const rtx = caps.filter((c) => c.mimeType.toLowerCase() === 'video/rtx');
  video.setCodecPreferences([...wanted, ...rtx]);

  await pc.setLocalDescription(await pc.createOffer());
  // The relay is ICE-lite with a host candidate, so trickling is not needed; still, give loopback
  // gathering a moment so the offer carries our candidates.
  await new Promise((resolve) => {
    if (pc.iceGatheringState === 'complete') return resolve();
    const timer = setTimeout(resolve, 2000);
    pc.addEventListener('icegatheringstatechange', () => {
      if (pc.iceGatheringState === 'complete') {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  const headers = { 'Content-Type': 'application/sdp', Authorization: `Bearer ${key}` };
  // One extra request header (e.g. the relay's ingest gateway's, which an outside publisher
  // must not be believed for).
  if (header) {
    const i = header.indexOf(':');
    headers[header.slice(0, i).trim()] = header.slice(i + 1).trim();
  }
  const response = await fetch(url, {
    method: 'POST',
    headers,
    body: pc.localDescription.sdp,
  });
  const body = await response.text();
  if (response.status !== 201) {
    pc.close();
    stream.getTracks().forEach((t) => t.stop());
    return { status: response.status, body, location: null };
  }
  const location = response.headers.get('Location');
  hc.location = location ? new URL(location, response.url).href : null;
  await pc.setRemoteDescription({ type: 'answer', sdp: body });
  // Like a hall encoder, which keeps its resolution and frame rate: libwebrtc's own
  // adaptation to a busy CPU is switched off (the test machine's 2 cores run this encoder,
  // the viewers' browsers and the relay; balanced, it scaled every layer to 3/4 and the top
  // one no longer decoded 1280 wide). Send-side bandwidth still turns layers on and off.
  // 'maintain-framerate-and-resolution' where this Chromium knows it, else 'maintain-resolution'.
  let degradation = null;
  for (const pref of ['maintain-framerate-and-resolution', 'maintain-resolution']) {
    try {
      const params = video.sender.getParameters();
      params.degradationPreference = pref;
      await video.sender.setParameters(params);
      degradation = video.sender.getParameters().degradationPreference ?? pref;
      break;
    } catch (e) {
      degradation = `refused: ${e}`;
    }
  }
  return { status: 201, body, location: hc.location, etag: response.headers.get('ETag'), degradation };
}

async function statsInPage() {
  const hc = window.__hcPublisher;
  const out = { frames_encoded: 0, layers: [], audio_packets_sent: 0, connection: hc.pc?.connectionState, codec: null };
  if (!hc.pc) return out;
  const report = await hc.pc.getStats();
  report.forEach((s) => {
    if (s.type !== 'outbound-rtp') return;
    if (s.kind === 'video') {
      out.frames_encoded += s.framesEncoded || 0;
      out.layers.push({
        rid: s.rid ?? null,
        frame_width: s.frameWidth ?? 0,
        frame_height: s.frameHeight ?? 0,
        frames_encoded: s.framesEncoded || 0,
        bytes_sent: s.bytesSent || 0,
        packets_sent: s.packetsSent || 0,
        retransmitted_packets_sent: s.retransmittedPacketsSent || 0,
        quality_limitation: s.qualityLimitationReason ?? null,
      });
      const codec = s.codecId && report.get(s.codecId);
      if (codec) out.codec = codec.mimeType;
    } else if (s.kind === 'audio') {
      out.audio_packets_sent += s.packetsSent || 0;
    }
  });
  out.layers.sort((a, b) => String(a.rid).localeCompare(String(b.rid)));
  return out;
}

async function deleteInPage() {
  const hc = window.__hcPublisher;
  let status = null;
  if (hc.location) {
    try {
      const r = await fetch(hc.location, { method: 'DELETE', headers: { Authorization: `Bearer ${hc.key}` } });
      status = r.status;
    } catch (e) {
      status = `error: ${e}`;
    }
  }
  hc.pc?.close();
  return status;
}

run(async () => {
  if (!args.url || !args.key) {
    process.stderr.write(USAGE + '\n');
    return 2;
  }
  if (!['h264', 'vp8'].includes(args.codec)) {
    process.stderr.write(`--codec must be h264 or vp8\n${USAGE}\n`);
    return 2;
  }
  const whip = new URL(args.url);
  let page;
  let published = null;
  let last = null;
  let deleteStatus = null;
  let finished = false;
  // One finish, awaited by every caller: the signal handler and the main loop both call it,
  // and the main loop closes the browser right after; returning early to the second caller
  // closed the browser under the first one's DELETE (seen once in CI).
  let finishing = null;
  const finish = () => (finishing ??= finishOnce());
  const finishOnce = async () => {
    finished = true;
    if (page && published?.status === 201) {
      last = await page.evaluate(statsInPage).catch(() => last);
      deleteStatus = await page.evaluate(deleteInPage).catch((e) => `error: ${e.message}`);
    }
    const states = page ? await page.evaluate(() => window.__hcPublisher?.states ?? []).catch(() => []) : [];
    emit({
      event: 'result',
      status: published?.status ?? null,
      body: published?.status === 201 ? undefined : published?.body,
      location: published?.location ?? null,
      ...(last ?? {}),
      connection_states: states,
      delete_status: deleteStatus,
    });
  };
  // A same-origin page for the publisher, served by Playwright itself: getUserMedia needs a
  // secure context (127.0.0.1 is one; a relay on another host's plain-HTTP address is made one
  // by Chromium's flag for exactly that) and same-origin fetches need no CORS.
  const origin = `${whip.protocol}//${whip.host}`;
  const { context, close } = await launchBrowser({
    onSignal: finish,
    extraArgs: [`--unsafely-treat-insecure-origin-as-secure=${origin}`],
  });
  page = context.pages()[0] ?? (await context.newPage());
  page.on('console', (m) => log('page:', m.text()));
  await page.route(`${origin}/__hallcast_test/publisher`, (route) =>
    route.fulfill({ status: 200, contentType: 'text/html', body: '<!doctype html><title>publisher</title>' }),
  );
  await page.goto(`${origin}/__hallcast_test/publisher`);

  const started = Date.now();
  published = await page.evaluate(publishInPage, {
    url: args.url,
    key: args.key,
    codec: args.codec,
    simulcast: args.simulcast,
    muteAudio: args.mute_audio,
    header: args.header,
  });
  await page.evaluate((key) => {
    window.__hcPublisher.key = key;
  }, args.key);
  emit({
    event: 'published',
    status: published.status,
    location: published.location,
    degradation: published.degradation ?? null,
    body: published.status === 201 ? undefined : published.body,
  });
  if (published.status !== 201) {
    await finish();
    await close();
    return 3;
  }
  log(`published to ${args.url}, session ${published.location}`);
  const deadline = started + args.duration * 1000;
  const [shedAt, shedFor] = args.shed_top ? args.shed_top.split(':').map(Number) : [Infinity, 0];
  let shed = 'no';
  const setTop = (active) => page.evaluate(async (on) => {
    const sender = window.__hcPublisher.pc.getSenders().find((x) => x.track && x.track.kind === 'video');
    const p = sender.getParameters();
    p.encodings[p.encodings.length - 1].active = on;
    await sender.setParameters(p);
  }, active);
  while (Date.now() < deadline && !finished) {
    await sleep(Math.min(args.shed_top ? 500 : 1000, Math.max(0, deadline - Date.now())));
    const t = (Date.now() - started) / 1000;
    if (shed === 'no' && t >= shedAt) {
      await setTop(false);
      shed = 'shed';
      emit({ event: 'shed', t });
    } else if (shed === 'shed' && t >= shedAt + shedFor) {
      await setTop(true);
      shed = 'restored';
      emit({ event: 'restored', t });
    }
    last = await page.evaluate(statsInPage);
    if (args.progress) emit({ event: 'progress', t: (Date.now() - started) / 1000, ...last });
  }
  await finish();
  await close();
  return 0;
});
