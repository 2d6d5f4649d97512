"""What one wake-up of an otherwise idle event loop costs in CPU on this machine.

At small fan-out the SFU's CPU per forwarded packet is mostly not Python: its event loop
sleeps between packets, and every datagram or timer that wakes it costs the process a
context switch in and out (on a VM, timer and interrupt handling too). This measures, in a
uvloop process as the worker runs (CPU from ``/proc/self/schedstat``, in ns):

- ``timer``: a task sleeping ``1/rate`` s in a loop;
- ``udp``: datagrams of 1100 bytes arriving at ``rate`` per second from another process, to a
  protocol that only counts them (the cost of waking for a packet, before any SRTP or RTP);
- ``loop_lag``: the worker's loop-lag sampler (``streaming.runtime.LoopLag``) on a timer of its
  own (20 per second, ``TONGKE_SFU_SHARED_TICK=false``) and on the shared tick (4 per second).

    .venv/bin/python benchmarks/loop_wakeups.py [--seconds 10] [--rate 160]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import uvloop

from streaming.runtime import LOOP_LAG_INTERVAL_S, LoopLag
from streaming.sfu.ticker import TICK_S

SENDER = """
import socket, sys, time
rate, seconds, port = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
payload = bytes(1100)
start = time.monotonic()
n = 0
while time.monotonic() - start < seconds:
    n += 1
    sock.sendto(payload, ("127.0.0.1", port))
    time.sleep(max(0.0, start + n / rate - time.monotonic()))
"""


def cpu_ns() -> int:
    with open("/proc/self/schedstat") as schedstat:
        return int(schedstat.read().split()[0])


async def measure(seconds: float, load: Callable[[], Awaitable[Any]] | None) -> float:
    """CPU ms per second of this process while ``load`` runs (nothing: the idle loop)."""
    task = asyncio.ensure_future(load()) if load is not None else None
    await asyncio.sleep(0.5)
    started_ns, started = cpu_ns(), time.monotonic()
    await asyncio.sleep(seconds)
    used_ns, elapsed = cpu_ns() - started_ns, time.monotonic() - started
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return used_ns / 1e6 / elapsed


class Counter(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.count = 0

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.count += 1


async def main(seconds: float, rate: float) -> None:
    idle = await measure(seconds, None)

    async def timer() -> None:
        while True:
            await asyncio.sleep(1 / rate)

    timer_ms = await measure(seconds, timer)

    loop = asyncio.get_running_loop()
    counter = Counter()
    transport, _ = await loop.create_datagram_endpoint(lambda: counter, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    sender = subprocess.Popen(
        [sys.executable, "-c", SENDER, str(rate), str(seconds + 1.5), str(port)]
    )
    udp_ms = await measure(seconds, None)
    received = counter.count
    sender.wait()
    transport.close()

    async def sampler(interval: float | None) -> None:
        lag = LoopLag(None, interval=interval)
        lag.start()
        try:
            await asyncio.Event().wait()
        finally:
            await lag.stop()

    own_ms = await measure(seconds, lambda: sampler(LOOP_LAG_INTERVAL_S))
    shared_ms = await measure(seconds, lambda: sampler(None))
    udp_rate = received / (seconds + 0.5)
    print(f"idle loop: {idle:.3f} ms CPU/s")
    print(
        f"timer at {rate:g}/s: {timer_ms - idle:.3f} ms CPU/s = "
        f"{(timer_ms - idle) * 1000 / rate:.1f} µs per wake-up"
    )
    print(
        f"udp at ~{udp_rate:.0f} datagrams/s: {udp_ms - idle:.3f} ms CPU/s = "
        f"{(udp_ms - idle) * 1000 / max(udp_rate, 1):.1f} µs per datagram"
    )
    print(
        f"loop-lag sampler on its own timer ({1 / LOOP_LAG_INTERVAL_S:g}/s): "
        f"{own_ms - idle:.3f} ms CPU/s; on the shared tick ({1 / TICK_S:g}/s): "
        f"{shared_ms - idle:.3f} ms CPU/s"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=160.0)
    args = parser.parse_args()
    uvloop.run(main(args.seconds, args.rate))
