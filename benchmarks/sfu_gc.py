"""What a full garbage collection costs an SFU worker with 64 subscriber peers, with and without
``gc.freeze`` after start-up (``TONGKE_SFU_GC_FREEZE``).

Each variant runs in a fresh process (the frozen generation is process-wide), alternating:

    .venv/bin/python benchmarks/sfu_gc.py [--peers 64] [--rounds 2]
"""

from __future__ import annotations

import argparse
import subprocess
import sys


def measure(freeze: bool, peers: int) -> str:
    """In this process: load what the worker loads, build ``peers`` subscriber peers, time
    seven full collections."""
    import gc
    import statistics
    import time

    from aiortc import RTCPeerConnection

    import recordings.service  # noqa: F401  (what the worker has loaded once it runs)
    import streaming.sfu.room
    import streaming.worker  # noqa: F401
    import web.cli
    import web.jobs  # noqa: F401
    from streaming.runtime import GcTuning, tune_gc
    from streaming.sfu.aiortc_hooks import HeldTrack

    if freeze:
        tune_gc(GcTuning(freeze=True))
    connections = []
    for _ in range(peers):
        pc = RTCPeerConnection()
        for kind in ("audio", "video"):
            pc.addTransceiver(HeldTrack(kind), direction="sendonly")
        connections.append(pc)
    gc.collect()
    pauses = []
    for _ in range(7):
        started = time.perf_counter()
        gc.collect(2)
        pauses.append((time.perf_counter() - started) * 1000)
    return (
        f"freeze={freeze} tracked={len(gc.get_objects())} frozen={gc.get_freeze_count()} "
        f"full_collection_ms min={min(pauses):.2f} median={statistics.median(pauses):.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--variant", choices=("freeze", "nofreeze"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant is not None:
        print(measure(args.variant == "freeze", args.peers), flush=True)
        return
    for _ in range(args.rounds):
        for variant in ("nofreeze", "freeze"):
            subprocess.run(
                [sys.executable, __file__, "--variant", variant, "--peers", str(args.peers)],
                check=True,
            )


if __name__ == "__main__":
    main()
