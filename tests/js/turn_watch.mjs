#!/usr/bin/env node
// A WHEP viewer in headless Chromium that may reach the relay only through TURN
// (`iceTransportPolicy: 'relay'`): it learns the ICE servers from the WHEP endpoint's `Link`
// headers (OPTIONS, as a WHEP client does before its offer), POSTs a non-trickle offer, and
// reports what getStats says: frames decoded and the selected candidate pair.
//
// stdout (JSON lines):
//   {"event":"ice_servers","announced":[{urls, username, credential}, ...],"used":[...]}
//   {"event":"result","frames_decoded":N,"frame_width":W,"local_candidate_type":"relay",
//    "local_candidate_address":..,"relay_protocol":"udp","remote_candidate_address":..,
//    "remote_candidate_port":..,"n_local_candidates":{"relay":1},"answer_link":[..]}

import { emit, fail, launchBrowser, log, parseArgs, run } from './common.mjs';

const USAGE = `usage: turn_watch.mjs --url WHEP_URL --token VIEWER_TOKEN [--frames N] [--timeout SECS] [--transport udp|tcp]
  --transport: keep only the announced TURN URLs with ?transport=udp|tcp (a network that lets only that out)`;
const args = parseArgs({ url: '', token: '', frames: 60, timeout: 30, transport: '' }, USAGE);
if (!args.url) fail(USAGE);

// Runs in the page (same origin as the relay).
async function watch({ url, token, frames, timeoutMs, transport }) {
  function parseIceServers(header) {
    const servers = [];
    if (!header) return servers;
    for (const part of header.split(/,(?=\s*<)/)) {
      const m = part.match(/<([^>]+)>(.*)/);
      if (!m) continue;
      const attrs = {};
      for (const a of m[2].split(';')) {
        const kv = a.match(/^\s*([\w-]+)\s*=\s*"?([^"]*)"?\s*$/);
        if (kv) attrs[kv[1].toLowerCase()] = kv[2];
      }
      if (attrs.rel !== 'ice-server') continue;
      const s = { urls: m[1] };
      if (attrs.username) s.username = attrs.username;
      if (attrs.credential) s.credential = attrs.credential;
      servers.push(s);
    }
    return servers;
  }
  const options = await fetch(url, { method: 'OPTIONS' });
  const announced = parseIceServers(options.headers.get('Link'));
  const iceServers = transport ? announced.filter((s) => s.urls.endsWith(`?transport=${transport}`)) : announced;
  const pc = new RTCPeerConnection({ iceServers, iceTransportPolicy: 'relay', bundlePolicy: 'max-bundle' });
  pc.addTransceiver('video', { direction: 'recvonly' });
  pc.addTransceiver('audio', { direction: 'recvonly' });
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((resolve) => {
    if (pc.iceGatheringState === 'complete') return resolve();
    pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && resolve());
    setTimeout(resolve, 10000);
  });
  const offer = pc.localDescription.sdp;
  const nLocal = {};
  for (const l of offer.split('\r\n')) {
    const m = l.match(/^a=candidate:\S+ \d+ \S+ \d+ \S+ \d+ typ (\S+)/);
    if (m) nLocal[m[1]] = (nLocal[m[1]] || 0) + 1;
  }
  const r = await fetch(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/sdp', Authorization: `Bearer ${token}` },
    body: offer,
  });
  if (r.status !== 201) return { error: `WHEP POST answered ${r.status}: ${await r.text()}`, iceServers, announced, nLocal };
  const answerLink = (r.headers.get('Link') || '').split(/,(?=\s*<)/).map((s) => s.trim()).filter(Boolean);
  await pc.setRemoteDescription({ type: 'answer', sdp: await r.text() });
  const deadline = Date.now() + timeoutMs;
  let out = { frames_decoded: 0 };
  while (Date.now() < deadline) {
    await new Promise((res) => setTimeout(res, 500));
    const stats = await pc.getStats();
    const byId = new Map();
    stats.forEach((s) => byId.set(s.id, s));
    let video = null;
    let pair = null;
    stats.forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video') video = s;
      if (s.type === 'transport' && s.selectedCandidatePairId) pair = byId.get(s.selectedCandidatePairId);
    });
    const local = pair ? byId.get(pair.localCandidateId) : null;
    const remote = pair ? byId.get(pair.remoteCandidateId) : null;
    out = {
      frames_decoded: video ? video.framesDecoded || 0 : 0,
      frame_width: video ? video.frameWidth || 0 : 0,
      connection_state: pc.connectionState,
      local_candidate_type: local ? local.candidateType : null,
      local_candidate_address: local ? `${local.address}:${local.port}` : null,
      relay_protocol: local ? local.relayProtocol || null : null,
      local_candidate_url: local ? local.url || null : null,
      remote_candidate_type: remote ? remote.candidateType : null,
      remote_candidate_address: remote ? remote.address : null,
      remote_candidate_port: remote ? remote.port : null,
    };
    if (out.frames_decoded >= frames) break;
  }
  pc.close();
  return { ...out, iceServers, announced, nLocal, answerLink };
}

run(async () => {
  const { context, close } = await launchBrowser();
  try {
    const page = context.pages()[0] || (await context.newPage());
    const origin = new URL(args.url).origin;
    await page.goto(`${origin}/healthz`);
    log('watching', args.url, 'through TURN only');
    const r = await page.evaluate(watch, { url: args.url, token: args.token, frames: args.frames, timeoutMs: args.timeout * 1000, transport: args.transport });
    emit({ event: 'ice_servers', announced: r.announced, used: r.iceServers });
    if (r.error) fail(r.error);
    const { iceServers, announced, nLocal, answerLink, ...rest } = r;
    emit({ event: 'result', ...rest, n_local_candidates: nLocal, answer_link: answerLink });
  } finally {
    await close();
  }
  return 0;
});
