#!/usr/bin/env python3
"""Publishes a synthetic hall feed to a WHIP endpoint with aiortc: a moving test pattern
(aiortc encodes it, VP8 by default) and a 440 Hz Opus tone, for --duration seconds, then DELETEs.

--no-video-frames: a hall whose camera failed. The offer still has its video (sendonly, the
chosen codec) but the video sender has no track, so only audio is ever sent.

stdout (JSON lines):
  {"event": "published", "status": 201, "location": ...}   or the refusal: status + body
  {"event": "progress", "t": .., "frames_sent": .., "connection": ..}
  {"event": "result", "status": .., "body": .., "location": .., "frames_sent": .., "video_codec": ..,
   "video_packets_sent": .., "audio_packets_sent": .., "connection_states": [...], "delete_status": ..}
Exit code 0 when the offer was accepted (201), 3 when the server refused it.
"""

import argparse
import asyncio
import fractions
import math
import sys
import time
from urllib.parse import urljoin

import aiohttp
import av
import numpy as np
from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from common import codec_of, emit, log, stop_on_signals, use_host_address, wait_until

VIDEO_CLOCK = 90000
AUDIO_RATE = 48000
AUDIO_PTIME = 0.020


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True, help="WHIP endpoint, e.g. http://127.0.0.1:8080/whip/demo")
    p.add_argument("--key", default="", help="stream key (sent as a Bearer token)")
    p.add_argument("--duration", type=float, default=30.0, help="seconds to publish")
    p.add_argument("--codec", choices=["vp8", "h264"], default="vp8")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=360)
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--progress", action="store_true", help="print a progress line every second")
    p.add_argument("--no-video-frames", action="store_true",
                   help="offer video (sendonly) but never send a video frame: only audio flows")
    p.add_argument("--host-address", default="127.0.0.1", help="address of our ICE host candidate")
    return p.parse_args()


class PatternTrack(MediaStreamTrack):
    """Colour bars drifting sideways, a bouncing square and a frame counter bar: every frame
    differs, so the encoder sends real inter frames."""

    kind = "video"

    def __init__(self, width: int, height: int, fps: int):
        super().__init__()
        self.width, self.height, self.fps = width, height, fps
        x = np.arange(width, dtype=np.int32)
        bars = np.array([[235, 235, 235], [0, 235, 235], [235, 235, 0], [0, 235, 0],
                         [235, 0, 235], [0, 0, 235], [235, 0, 0], [16, 16, 16]], dtype=np.uint8)
        row = bars[(x * len(bars)) // width]
        self.base = np.repeat(row[np.newaxis, :, :], height, axis=0)
        self.n = 0
        self.start = None

    async def recv(self):
        if self.start is None:
            self.start = time.monotonic()
        due = self.start + self.n / self.fps
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        n = self.n
        self.n += 1
        img = np.roll(self.base, (n * 4) % self.width, axis=1).copy()
        side = self.height // 5
        cx = int((self.width - side) * (0.5 + 0.5 * math.sin(n / 23.0)))
        cy = int((self.height - side) * (0.5 + 0.5 * math.sin(n / 17.0)))
        img[cy:cy + side, cx:cx + side] = (255 - 2 * (n % 128), (n * 3) % 256, 40)
        bar = self.height // 12
        filled = int(self.width * ((n % self.fps) + 1) / self.fps)
        img[-bar:, :] = 16
        img[-bar:, :filled] = 200
        frame = av.VideoFrame.from_ndarray(img, format="bgr24")
        frame.pts = int(n * VIDEO_CLOCK / self.fps)
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        return frame


class ToneTrack(MediaStreamTrack):
    """A 440 Hz tone, 20 ms per frame, paced in real time."""

    kind = "audio"

    def __init__(self):
        super().__init__()
        self.samples = int(AUDIO_RATE * AUDIO_PTIME)
        self.n = 0
        self.start = None

    async def recv(self):
        if self.start is None:
            self.start = time.monotonic()
        due = self.start + self.n * AUDIO_PTIME
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        t0 = self.n * self.samples
        t = (np.arange(self.samples) + t0) / AUDIO_RATE
        pcm = (0.2 * 32767 * np.sin(2 * math.pi * 440.0 * t)).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = AUDIO_RATE
        frame.pts = t0
        frame.time_base = fractions.Fraction(1, AUDIO_RATE)
        self.n += 1
        return frame


async def sent_counts(pc):
    video = audio = 0
    try:
        report = await pc.getStats()
    except Exception:  # noqa: BLE001 - stats are best effort while closing
        return video, audio
    for s in report.values():
        if getattr(s, "type", None) == "outbound-rtp":
            if getattr(s, "kind", None) == "video":
                video += getattr(s, "packetsSent", 0) or 0
            elif getattr(s, "kind", None) == "audio":
                audio += getattr(s, "packetsSent", 0) or 0
    return video, audio


def frames_sent(video) -> int:
    return 0 if video is None else video.n


async def main() -> int:
    args = parse_args()
    use_host_address(args.host_address)
    stop = asyncio.Event()
    stop_on_signals(stop)
    started = time.monotonic()

    pc = RTCPeerConnection()
    states = []

    @pc.on("connectionstatechange")
    def on_state():
        states.append(pc.connectionState)
        log("connection", pc.connectionState)

    video = None if args.no_video_frames else PatternTrack(args.width, args.height, args.fps)
    pc.addTransceiver(ToneTrack(), direction="sendonly")
    # Without a track the sender is offered (sendonly, with its SSRC) and never sends.
    vt = pc.addTransceiver(video if video is not None else "video", direction="sendonly")
    mime = "video/VP8" if args.codec == "vp8" else "video/H264"
    codecs = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == mime]
    if args.codec == "h264":
        codecs = [c for c in codecs if c.parameters.get("packetization-mode") == "1"] or codecs
    vt.setCodecPreferences(codecs)
    await pc.setLocalDescription(await pc.createOffer())

    headers = {"Content-Type": "application/sdp"}
    if args.key:
        headers["Authorization"] = f"Bearer {args.key}"
    result = {"event": "result", "status": None, "body": None, "location": None}
    async with aiohttp.ClientSession() as http:
        async with http.post(args.url, data=pc.localDescription.sdp, headers=headers) as r:
            body = await r.text()
            result["status"] = r.status
            if r.status == 201 and r.headers.get("Location"):
                result["location"] = urljoin(str(r.url), r.headers["Location"])
        emit({"event": "published", "status": result["status"], "location": result["location"],
              "body": None if result["status"] == 201 else body})
        if result["status"] != 201:
            result["body"] = body
        else:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
            result["video_codec"] = codec_of(body, "video")
            log("publishing", result["video_codec"], "to", args.url)
            deadline = started + args.duration
            while time.monotonic() < deadline:
                if await wait_until(stop, min(1.0, deadline - time.monotonic())):
                    break
                if args.progress:
                    v, a = await sent_counts(pc)
                    emit({"event": "progress", "t": round(time.monotonic() - started, 2),
                          "frames_sent": frames_sent(video), "video_packets_sent": v, "audio_packets_sent": a,
                          "connection": pc.connectionState})
            result["video_packets_sent"], result["audio_packets_sent"] = await sent_counts(pc)
            if result["location"]:
                auth = {k: v for k, v in headers.items() if k == "Authorization"}
                try:
                    async with http.delete(result["location"], headers=auth) as r:
                        result["delete_status"] = r.status
                except aiohttp.ClientError as e:
                    result["delete_status"] = f"error: {e}"

    result["frames_sent"] = frames_sent(video)
    result["connection_states"] = states
    await pc.close()
    emit(result)
    return 0 if result["status"] == 201 else 3


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
