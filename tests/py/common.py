"""Shared plumbing for hallcast's aiortc test clients.

Every script prints one JSON object per line on stdout (``{"event": ...}``) and logs to stderr,
so the Rust harness can follow progress and read the final ``{"event": "result"}`` line.
"""

import asyncio
import json
import signal
import sys
import time

import aioice.ice


def use_host_address(address: str) -> None:
    """Make aiortc gather its host candidate on ``address`` only.

    aioice leaves out 127.0.0.1 when it lists the host's addresses, so on a machine whose relay
    listens on loopback it would only offer its other interfaces. The tests keep every packet on
    loopback: the one candidate is the address given here (127.0.0.1 by default).
    """

    def addresses(use_ipv4: bool, use_ipv6: bool) -> list:
        return [address]

    aioice.ice.get_host_addresses = addresses


def emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def log(*parts) -> None:
    stamp = time.strftime("%H:%M:%S")
    sys.stderr.write(f"[{stamp}] " + " ".join(str(p) for p in parts) + "\n")
    sys.stderr.flush()


def stop_on_signals(stop: asyncio.Event) -> None:
    """SIGTERM/SIGINT end the run gracefully (DELETE the session, print the result)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


def retry_after_seconds(value, default: float = 2.0) -> float:
    try:
        return min(30.0, max(0.5, float(value)))
    except (TypeError, ValueError):
        return default


def codec_of(sdp: str, kind: str):
    """The first codec the SDP lists for the first m-section of ``kind`` (e.g. "VP8")."""
    section = None
    for line in sdp.splitlines():
        if line.startswith("m="):
            if section is not None:
                break
            if line.startswith(f"m={kind} "):
                parts = line.split()
                section = parts[3] if len(parts) > 3 else ""
        elif section and line.startswith(f"a=rtpmap:{section} "):
            return line.split(" ", 1)[1].split("/")[0]
    return None


async def wait_until(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds`` unless ``stop`` is set first; True when stopped."""
    try:
        await asyncio.wait_for(stop.wait(), timeout=max(0.0, seconds))
        return True
    except asyncio.TimeoutError:
        return False
