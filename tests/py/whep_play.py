#!/usr/bin/env python3
"""Plays a hallcast conference over WHEP with aiortc and decodes what it receives.

stdout (JSON lines):
  {"event": "posted", "status": 201, ...}          one per POST (several while waiting on 409)
  {"event": "redirected", "status": 307, "location": ..}   a 307/308 followed (same offer and token)
  {"event": "progress", "t": .., "frames_decoded": .., "audio_packets_received": .., ...}
  {"event": "result", "status": .., "frames_decoded": .., "first_frame_ms": ..,
   "frame_width": .., "frame_height": .., "audio_packets_received": .., "audio_frames_decoded": ..,
   "audio_played_s": .., "audio_peak": .., "video_codec": .., "audio_codec": .., "connection_states": [...],
   "delete_status": ..}
first_frame_ms is measured from the start of the WHEP POST that got the 201. audio_played_s is the
time from the first decoded audio frame to the end of playing (just before the DELETE; null when no
audio frame was decoded): Opus frames are 20 ms, so a healthy stream decodes about 50 a second of it.
audio_peak is the largest absolute decoded audio sample (0..1; 0 for digital silence).

With --wall-clock (for comparing with the relay's attendance ledger, which records Unix times):
every line also carries "wall_ms" (Unix milliseconds when it was printed), "posted" lines carry
the session's "location", a line
  {"event": "first_frame", "wall_ms": ..}                     when the first video frame is decoded
  {"event": "first_audio", "wall_ms": ..}                     when the first audio frame is decoded
are printed, and the result adds "first_frame_wall_ms", "first_audio_wall_ms",
"delete_sent_wall_ms" (just before the DELETE was sent) and "delete_done_wall_ms" (its answer
arrived).
"""

import argparse
import asyncio
import ssl
import sys
import time
from urllib.parse import urljoin

import aiohttp
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from common import codec_of, emit, log, retry_after_seconds, stop_on_signals, use_host_address, wait_until


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True, help="WHEP endpoint, e.g. http://127.0.0.1:8080/whep/demo")
    p.add_argument("--token", default="", help="viewer token (sent as a Bearer token)")
    p.add_argument("--ca-file", default="", help="PEM CA (or self-signed certificate) to trust for an https URL")
    p.add_argument("--duration", type=float, default=20.0, help="seconds to play (upper bound)")
    p.add_argument("--until-frames", type=int, default=0, help="stop early after this many decoded frames")
    p.add_argument("--until-audio", type=int, default=1, help="...and this many audio packets")
    p.add_argument("--wait-live", action="store_true", help="on 409 wait Retry-After and retry until --duration")
    p.add_argument("--progress", action="store_true", help="print a progress line every second")
    p.add_argument("--progress-interval", type=float, default=1.0,
                   help="seconds between progress lines (e.g. 0.2 to time a gap finely)")
    p.add_argument("--host-address", default="127.0.0.1", help="address of our ICE host candidate")
    p.add_argument("--wall-clock", action="store_true",
                   help="add Unix-time stamps (wall_ms) and print first_frame and first_audio lines")
    return p.parse_args()


def wall_ms() -> int:
    return int(time.time() * 1000)


class Counters:
    def __init__(self):
        self.frames = 0
        self.first_frame_at = None
        self.first_frame_wall_ms = None
        # Called once with the Unix time of the first decoded video frame (None: nothing to do).
        self.on_first_frame = None
        self.width = 0
        self.height = 0
        self.audio_frames = 0
        # The largest absolute decoded audio sample, 0..1 (0: silence).
        self.audio_peak = 0.0
        self.first_audio_at = None
        self.first_audio_wall_ms = None
        # Called once with the Unix time of the first decoded audio frame (None: nothing to do).
        self.on_first_audio = None


async def consume(track, counters: Counters):
    try:
        while True:
            frame = await track.recv()
            if track.kind == "video":
                counters.frames += 1
                if counters.first_frame_at is None:
                    counters.first_frame_at = time.monotonic()
                    counters.first_frame_wall_ms = wall_ms()
                    if counters.on_first_frame is not None:
                        counters.on_first_frame(counters.first_frame_wall_ms)
                counters.width, counters.height = frame.width, frame.height
            else:
                counters.audio_frames += 1
                samples = frame.to_ndarray()
                if samples.size:
                    peak = float(abs(samples).max())
                    if samples.dtype.kind == "i":
                        peak /= 32768.0
                    counters.audio_peak = max(counters.audio_peak, peak)
                if counters.first_audio_wall_ms is None:
                    counters.first_audio_at = time.monotonic()
                    counters.first_audio_wall_ms = wall_ms()
                    if counters.on_first_audio is not None:
                        counters.on_first_audio(counters.first_audio_wall_ms)
    except MediaStreamError:
        pass


async def audio_packets(pc) -> int:
    total = 0
    try:
        report = await pc.getStats()
    except Exception:  # noqa: BLE001 - stats are best effort while closing
        return 0
    for s in report.values():
        if getattr(s, "type", None) == "inbound-rtp" and getattr(s, "kind", None) == "audio":
            total += getattr(s, "packetsReceived", 0) or 0
    return total


async def main() -> int:
    args = parse_args()
    use_host_address(args.host_address)

    def out(obj: dict) -> None:
        if args.wall_clock:
            obj["wall_ms"] = wall_ms()
        emit(obj)

    stop = asyncio.Event()
    stop_on_signals(stop)
    started = time.monotonic()
    deadline = started + args.duration

    pc = RTCPeerConnection()
    states = []
    counters = Counters()
    if args.wall_clock:
        counters.on_first_frame = lambda at: emit({"event": "first_frame", "wall_ms": at})
        counters.on_first_audio = lambda at: emit({"event": "first_audio", "wall_ms": at})
    tasks = []

    @pc.on("connectionstatechange")
    def on_state():
        states.append(pc.connectionState)
        log("connection", pc.connectionState)

    @pc.on("track")
    def on_track(track):
        log("track", track.kind)
        tasks.append(asyncio.ensure_future(consume(track, counters)))

    pc.addTransceiver("audio", direction="recvonly")
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    offer = pc.localDescription.sdp

    headers = {"Content-Type": "application/sdp"}
    if args.token:
        headers["Authorization"] = f"Bearer {args.token}"
    result = {"event": "result", "status": None, "body": None}
    location = None
    posted_at = None
    answer = None
    played_until = None
    connector = None
    if args.ca_file:
        # Only this CA: an https relay with a test certificate (issue 13, HTTPS without a proxy).
        connector = aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=args.ca_file))
    async with aiohttp.ClientSession(connector=connector) as http:
        url = args.url
        while True:
            posted_at = time.monotonic()
            # A 307/308 (a relay sending its point to another relay of the tree) is followed by
            # hand, as a WHEP client must: the same offer and the same Authorization header to
            # the new URL (aiohttp would drop the header on a redirect to another origin).
            for _hop in range(4):
                async with http.post(url, data=offer, headers=headers, allow_redirects=False) as r:
                    body = await r.text()
                    status = r.status
                    retry_after = r.headers.get("Retry-After")
                    if status in (307, 308) and r.headers.get("Location"):
                        url = urljoin(str(r.url), r.headers["Location"])
                        out({"event": "redirected", "status": status, "location": url})
                        continue
                    if status == 201 and r.headers.get("Location"):
                        location = urljoin(str(r.url), r.headers["Location"])
                    break
            posted = {"event": "posted", "status": status, "retry_after": retry_after,
                      "body": None if status == 201 else body}
            if args.wall_clock:
                posted["location"] = location
            out(posted)
            result["status"] = status
            if status == 201:
                answer = body
                break
            result["body"] = body
            if status == 409 and args.wait_live and time.monotonic() < deadline:
                if await wait_until(stop, min(retry_after_seconds(retry_after), deadline - time.monotonic())):
                    break
                continue
            break

        if answer is not None:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
            result["video_codec"] = codec_of(answer, "video")
            result["audio_codec"] = codec_of(answer, "audio")
            while time.monotonic() < deadline and not stop.is_set():
                if await wait_until(stop, min(args.progress_interval, deadline - time.monotonic())):
                    break
                n_audio = await audio_packets(pc)
                if args.progress:
                    out({"event": "progress", "t": round(time.monotonic() - started, 2),
                         "frames_decoded": counters.frames, "audio_packets_received": n_audio,
                         "connection": pc.connectionState})
                if args.until_frames and counters.frames >= args.until_frames and n_audio >= args.until_audio:
                    break
            played_until = time.monotonic()
            result["audio_packets_received"] = await audio_packets(pc)
            if location:
                if args.wall_clock:
                    result["delete_sent_wall_ms"] = wall_ms()
                try:
                    async with http.delete(location, headers={k: v for k, v in headers.items()
                                                               if k == "Authorization"}) as r:
                        result["delete_status"] = r.status
                except aiohttp.ClientError as e:
                    result["delete_status"] = f"error: {e}"
                if args.wall_clock:
                    result["delete_done_wall_ms"] = wall_ms()

    result.update({
        "location": location,
        "frames_decoded": counters.frames,
        "first_frame_ms": None if counters.first_frame_at is None
        else round((counters.first_frame_at - posted_at) * 1000),
        "frame_width": counters.width,
        "frame_height": counters.height,
        "audio_frames_decoded": counters.audio_frames,
        "audio_peak": round(counters.audio_peak, 4),
        "audio_played_s": None if counters.first_audio_at is None or played_until is None
        else round(played_until - counters.first_audio_at, 3),
        "connection_states": states,
    })
    result.setdefault("audio_packets_received", 0)
    if args.wall_clock:
        result["first_frame_wall_ms"] = counters.first_frame_wall_ms
        result["first_audio_wall_ms"] = counters.first_audio_wall_ms
    await pc.close()
    for t in tasks:
        t.cancel()
    out(result)
    return 0 if result["status"] == 201 else 3


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
