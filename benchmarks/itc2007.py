"""ITC-2007 track 3 (UD2): solve comp01–comp14 and compare with the best known costs.

Run: .venv/bin/python benchmarks/itc2007.py [--time-limit 300] [--instances comp01,comp05]
     [--data ../shared/data/itc2007] [--seed 0] [--workers 2] [--json results.json]
     [--compare]
Prints per instance the hard violations and soft cost (both from the evaluator), the best
known cost and (cost+1)/(best+1), then the mean ratio. Target from the issue: every instance
hard-feasible and a mean ratio of at most 1.5 at 300 s on 2 cores. With --compare each
instance is solved twice in a row, by the baseline trial mix and the current one.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

from scheduler.itc2007.ctt import read_instance
from scheduler.itc2007.evaluate import evaluate
from scheduler.itc2007.solver import PROFILES, Profile, solve

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "itc2007"
INSTANCES = [f"comp{i:02d}" for i in range(1, 15)]
TARGET_RATIO = 1.5


def best_known(data: Path) -> dict[str, int]:
    """The `| compNN | cost |` rows of BEST_KNOWN.md."""
    text = (data / "BEST_KNOWN.md").read_text(encoding="utf-8")
    return {name: int(cost) for name, cost in re.findall(r"\|\s*(comp\d+)\s*\|\s*(\d+)\s*\|", text)}


def baseline_profiles() -> tuple[Profile, ...]:
    """The workers' profiles without the soft-term moves (isolated lectures, course rooms,
    same-day Kempe chains): the trial mix before they were added."""
    return tuple(
        dataclasses.replace(profile, isolated=0.0, course_room=0.0, kempe_day=0.0)
        for profile in PROFILES
    )


def summary(rows: list[dict[str, Any]], label: str) -> tuple[float | None, bool]:
    ratios = [row["ratio"] for row in rows if row["ratio"] is not None]
    mean_ratio = sum(ratios) / len(ratios) if ratios else None
    feasible = all(row["hard"] == 0 for row in rows)
    if mean_ratio is not None:
        verdict = "meets" if feasible and mean_ratio <= TARGET_RATIO else "misses"
        print(
            f"{label}mean (cost+1)/(best+1) = {mean_ratio:.3f}; all feasible: {feasible}; "
            f"{verdict} the target (<= {TARGET_RATIO}, all feasible)"
        )
    return mean_ratio, feasible


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--time-limit", type=float, default=300.0)
    parser.add_argument("--instances", default=",".join(INSTANCES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--compare",
        action="store_true",
        help="per instance, run the baseline trial mix (no soft-term moves) and then the "
        "current one with the same seed and limit, so both see the same machine load",
    )
    args = parser.parse_args(argv)

    best = best_known(args.data)
    names = [name.strip() for name in args.instances.split(",") if name.strip()]
    configs: list[tuple[str, tuple[Profile, ...]]] = [("current", PROFILES)]
    if args.compare:
        configs.insert(0, ("baseline", baseline_profiles()))
    rows: dict[str, list[dict[str, Any]]] = {label: [] for label, _ in configs}
    print(
        f"{'instance':8} {'config':8} {'hard':>4} {'cost':>5} {'best':>5} {'ratio':>6} "
        f"{'seconds':>7}"
    )
    for name in names:
        instance = read_instance(args.data / f"{name}.ctt")
        for label, profiles in configs:
            started = time.monotonic()
            placements, solver_cost, _ = solve(
                instance,
                time_limit=args.time_limit,
                seed=args.seed,
                workers=args.workers,
                profiles=profiles,
            )
            seconds = time.monotonic() - started
            scored = evaluate(instance, placements)
            known = best.get(name)
            ratio = (scored.cost + 1) / (known + 1) if known is not None else None
            rows[label].append(
                {
                    "instance": name,
                    "hard": scored.hard,
                    "cost": scored.cost,
                    "solver_cost": solver_cost,
                    "best_known": known,
                    "ratio": ratio,
                    "seconds": round(seconds, 1),
                }
            )
            ratio_text = f"{ratio:6.2f}" if ratio is not None else "     -"
            known_text = f"{known:5d}" if known is not None else "    -"
            print(
                f"{name:8} {label:8} {scored.hard:4d} {scored.cost:5d} {known_text} "
                f"{ratio_text} {seconds:7.1f}",
                flush=True,
            )
    results: dict[str, Any] = {}
    feasible = True
    for label, _ in configs:
        mean_ratio, config_feasible = summary(rows[label], f"{label}: " if args.compare else "")
        feasible = feasible and config_feasible
        results[label] = {
            "instances": rows[label],
            "mean_ratio": mean_ratio,
            "all_feasible": config_feasible,
        }
    if args.json is not None:
        payload: dict[str, Any] = {
            "time_limit": args.time_limit,
            "seed": args.seed,
            "workers": args.workers,
        }
        if args.compare:
            payload["configs"] = results
        else:
            payload.update(results["current"])
        args.json.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    return 0 if feasible else 1


if __name__ == "__main__":
    sys.exit(main())
