"""Two (or more) configurations of the tongke SFU worker measured alternately in one run.

The machine is shared, so a "before" measured at 22:10 and an "after" at 22:40 compare two
loads more than two configurations. This runs `tongke bench sfu`'s own ``bench_room`` for each
variant in turn — ABBA order per repetition, a fresh worker per run — and prints, per variant
and subscriber count, the median and the range over the repetitions.

    unshare -n sh -c 'ip link set lo up && .venv/bin/python benchmarks/sfu_variants.py \\
        --variant before:SFU_GC_FREEZE=false --variant after: --subscribers 32,64 --repeat 3'

A variant is ``name:KEY=VALUE,KEY=VALUE`` of ``TONGKE_*`` settings for the worker (without the
prefix); ``name:`` is the defaults. ``name@PATH:...`` runs the worker from another checkout
(e.g. ``git archive BASE | tar -x -C /tmp/base``), to compare two commits in one run:

    unshare -n sh -c 'ip link set lo up && .venv/bin/python benchmarks/sfu_variants.py \\
        --variant before@/tmp/base: --variant after: --subscribers 1,8 --repeat 4'
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

from streaming.bench import WARM_UP_S, alternating, bench_room, median_runs
from streaming.bench_tongke import parse_variant, tongke_sfu, variant_source

GROUPED = ("variant", "subscribers")
FIGURES = (
    "us_per_packet",
    "us_per_packet_marginal",
    "cpu_percent_per_subscriber",
    "cpu_percent_publisher_only",
    "delay_ms_p50",
    "delay_ms_p99",
    "sfu_loop_lag_ms_p99",
    "sfu_loop_lag_own_ms_p99",
    "sfu_cpu_wait_percent",
    "sfu_gc_pause_ms_max",
    "sfu_gc_collections",
    "sfu_gc_full_collections",
    "first_frame_ms",
    "connected_ms",
    "answer_ms",
    "late_join_first_frame_ms",
    "late_join_connected_ms",
    "late_join_answer_ms",
    "cpu_percent",
    "delivered_ratio",
)


async def measure(
    variants: list[tuple[str, dict[str, str]]],
    *,
    subscribers: list[int],
    repeat: int,
    seconds: float,
    resolution: str,
) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="tongke-variants-") as work:
        for repetition in range(repeat):
            for variant, settings in alternating(variants, repetition):
                name, source = variant_source(variant)
                async with tongke_sfu(Path(work), settings, source) as open_room:
                    for count in subscribers:
                        run = await bench_room(
                            open_room,
                            Path(work),
                            resolution=resolution,
                            subscribers=count,
                            seconds=seconds,
                            warm_up=WARM_UP_S,
                        )
                        run |= {"variant": name, "repetition": repetition}
                        runs.append(run)
                        print(
                            name,
                            count,
                            " ".join(f"{key}={run.get(key)}" for key in FIGURES),
                            flush=True,
                        )
    return runs


def table(runs: list[dict[str, Any]], variants: list[str], subscribers: list[int]) -> str:
    rows = {(r["variant"], r["subscribers"]): r for r in median_runs(runs, by=GROUPED)}
    lines = ["| figure | subs | " + " | ".join(variants) + " |"]
    lines.append("|---|---:|" + "---:|" * len(variants))
    for figure in FIGURES:
        for count in subscribers:
            cells = []
            for name in variants:
                row = rows.get((name, count), {})
                value = row.get(figure)
                if value is None:
                    cells.append("–")
                    continue
                low, high = row["ranges"][figure]
                cells.append(f"{value:g} ({low:g}–{high:g})")
            lines.append(f"| {figure} | {count} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", action="append", required=True)
    parser.add_argument("--subscribers", default="32,64")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--resolution", default="640x360")
    parser.add_argument("--json")
    args = parser.parse_args()
    logging.getLogger("aiortc").setLevel(logging.ERROR)
    logging.getLogger("aioice").setLevel(logging.ERROR)
    variants = [parse_variant(text) for text in args.variant]
    counts = [int(n) for n in args.subscribers.split(",")]
    runs = asyncio.run(
        measure(
            variants,
            subscribers=counts,
            repeat=args.repeat,
            seconds=args.seconds,
            resolution=args.resolution,
        )
    )
    print(table(runs, [variant_source(name)[0] for name, _ in variants], counts))
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": runs}, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
