"""An SFU worker with no room: its CPU and how often it wakes, per configuration, alternately.

What a worker costs before it forwards anything (heartbeats, the loop-lag sampler, timers)
is paid again per packet at small fan-out (README, "CPU per packet at small fan-out"). This
starts a fresh worker per variant and repetition (ABBA, as ``benchmarks/sfu_variants.py``)
and prints its CPU (ms per second, from its threads' run time) and its main thread's
wake-ups per second (voluntary context switches).

    unshare -n sh -c 'ip link set lo up && .venv/bin/python benchmarks/sfu_idle.py \\
        --variant before:SFU_SHARED_TICK=false --variant after: --repeat 3 --seconds 20'
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from streaming.bench import _cpu_seconds, wake_ups
from streaming.bench_tongke import parse_variant, sfu_worker

SETTLE_S = 3.0


def measure(settings: dict[str, str], seconds: float, work: Path) -> tuple[float, float]:
    """(CPU ms per second, wake-ups per second) of an idle worker over ``seconds``."""
    with sfu_worker(work, settings) as worker:
        time.sleep(SETTLE_S)  # start-up (migrations, the first sweep) is not idle time
        cpu_0, wakes_0, wall_0 = _cpu_seconds(worker.pid), wake_ups(worker.pid), time.monotonic()
        time.sleep(seconds)
        cpu_1, wakes_1, wall_1 = _cpu_seconds(worker.pid), wake_ups(worker.pid), time.monotonic()
    elapsed = wall_1 - wall_0
    return 1000 * (cpu_1 - cpu_0) / elapsed, (wakes_1 - wakes_0) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", action="append", required=True)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    variants = [parse_variant(text) for text in args.variant]
    results: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in variants}
    with tempfile.TemporaryDirectory(prefix="tongke-idle-") as work:
        for repetition in range(args.repeat):
            order = variants if repetition % 2 == 0 else list(reversed(variants))
            for name, settings in order:
                cpu_ms, wakes = measure(settings, args.seconds, Path(work))
                results[name].append((cpu_ms, wakes))
                print(f"{name} cpu_ms_per_s={cpu_ms:.2f} wake_ups_per_s={wakes:.1f}", flush=True)
    print("| variant | CPU ms/s | wake-ups/s |")
    print("|---|---:|---:|")
    for name, values in results.items():
        cells = []
        for index in range(2):
            column = [value[index] for value in values]
            cells.append(f"{statistics.median(column):.2f} ({min(column):.2f}–{max(column):.2f})")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
