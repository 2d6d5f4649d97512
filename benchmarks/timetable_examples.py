"""Solve the shared timetable examples and a generated county-size instance; print figures.

    .venv/bin/python benchmarks/timetable_examples.py [LIMITS] [--county-limit S] [--seed N]

LIMITS is a comma-separated list of time limits in seconds (default "1,10"; the issue's
figures use "1,60"). Every solution, and the shipped reference solution, is scored by
`scheduler.checker`. The county-size instance (8 campuses, ~115 classes) is solved with
`--county-limit` (default 3) and peak resident memory is reported.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

from scheduler.checker import check
from scheduler.domain import Problem, Solution
from scheduler.generate import generate_problem
from scheduler.io.timetable_json import load_problem, load_solution
from scheduler.solver import solve

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "timetable"
EXAMPLES = ("example-small", "example-shifted-small", "example-medium")


def _judge(problem: Problem, solution: Solution | None) -> tuple[str, str, str]:
    if solution is None:
        return ("-", "-", "-")
    report = check(problem, solution)
    return (str(report.hard), str(report.idle_minutes), str(report.late_main))


def _row(name: str, limit: str, first: str, hard: str, idle: str, late: str) -> str:
    return f"{name:<24}{limit:>8}{first:>12}{hard:>6}{idle:>10}{late:>10}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("limits", nargs="?", default="1,10")
    parser.add_argument("--county-limit", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    limits = [float(x) for x in args.limits.split(",")]

    print(_row("instance", "limit s", "first feas s", "hard", "idle min", "late main"))
    for name in EXAMPLES:
        problem = load_problem(args.data / f"{name}.json")
        reference = load_solution(args.data / f"{name}.solution.json")
        print(_row(name, "ref", "-", *_judge(problem, reference)))
        for limit in limits:
            result = solve(problem, time_limit=limit, seed=args.seed)
            first = (
                f"{result.first_feasible_seconds:.2f}"
                if result.first_feasible_seconds is not None
                else "none"
            )
            print(_row(name, f"{limit:g}", first, *_judge(problem, result.solution)), flush=True)

    started = time.perf_counter()
    county = load_problem(generate_problem(campuses=8, classes=115, seed=args.seed))
    build = time.perf_counter() - started
    result = solve(county, time_limit=args.county_limit, seed=args.seed)
    first = (
        f"{result.first_feasible_seconds:.2f}"
        if result.first_feasible_seconds is not None
        else "none"
    )
    print(
        _row(
            f"county {len(county.classes)}cl/{county.occurrences}occ",
            f"{args.county_limit:g}",
            first,
            *_judge(county, result.solution),
        )
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"county: generated in {build:.2f} s, solve wall {result.wall_time:.2f} s, "
        f"{result.lns_rounds} LNS rounds; peak RSS of this process {peak:.0f} MiB"
    )


if __name__ == "__main__":
    main()
