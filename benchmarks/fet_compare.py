"""FET against tongke on the part of a problem FET can express; print figures.

    .venv/bin/python benchmarks/fet_compare.py [PROBLEM.json] [--limits 1,10] [--json OUT]

The problem (default: the shared example-medium) is projected with
`scheduler.io.fet.fet_projection` — one common bell, no travel, no research sessions, sync
as "same period" — and exported to `.fet`; `fet-cl` (Debian package `fet`) solves it, and
its `*_activities.xml` is read back into a solution. Our solver solves the same projection
at each time limit, and the full problem too. Every timetable is scored by
`scheduler.checker.check`: on the projection (the rules FET could express) and on the full
problem (what FET misses: sync lessons at different minutes under different bells,
travel, research sessions).

"first s" is the wall time to the first complete timetable: for FET the whole `fet-cl`
run (it stops at its first timetable: it has no soft constraints to improve); for ours,
reading and projecting the problem plus the solver's own first-feasible time. The ratios
compare ours at the largest limit with FET on the projection (the issue's target at 60 s
on example-medium: late main <= 0.05x and idle <= 0.35x).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from scheduler.checker import check
from scheduler.domain import Problem, Solution
from scheduler.io.fet import fet_projection, find_activities_xml, read_fet_activities, to_fet
from scheduler.io.timetable_json import load_problem
from scheduler.solver import solve

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "timetable"


@dataclass
class Scores:
    hard_projection: int | None = None
    idle_projection: int | None = None
    late_projection: int | None = None
    hard_full: int | None = None
    idle_full: int | None = None
    late_full: int | None = None
    full_violations_by_rule: dict[str, int] = field(default_factory=dict)


@dataclass
class Row:
    solver: str
    solved: str  # "projection" or "full"
    limit: float | None
    first_seconds: float | None
    scores: Scores


def _scores(
    projection: Problem, full: Problem, solution: Solution | None, *, judge_projection: bool
) -> Scores:
    scores = Scores()
    if solution is None:
        return scores
    if judge_projection:
        on_projection = check(projection, solution)
        scores.hard_projection = on_projection.hard
        scores.idle_projection = on_projection.idle_minutes
        scores.late_projection = on_projection.late_main
    on_full = check(full, solution)
    scores.hard_full = on_full.hard
    scores.idle_full = on_full.idle_minutes
    scores.late_full = on_full.late_main
    scores.full_violations_by_rule = {str(k): v for k, v in sorted(on_full.by_constraint().items())}
    return scores


def run_fet(
    projection: Problem, *, time_limit: int, seed: int, keep: Path | None
) -> tuple[Solution | None, float, str]:
    """(solution or None, wall seconds of fet-cl, its last output line)."""
    export = to_fet(projection)
    workdir = Path(tempfile.mkdtemp(prefix="tongke-fet-"))
    try:
        source = workdir / "projection.fet"
        source.write_text(export.xml, encoding="utf-8")
        seeds = [str(seed % 4_000_000_000 + k) for k in (1, 2, 3, 4, 5, 6)]
        command = [
            "fet-cl",
            f"--inputfile={source}",
            f"--outputdir={workdir / 'out'}",
            f"--timelimitseconds={time_limit}",
            "--htmllevel=0",
            *(
                f"--randomseeds{name}={value}"
                for name, value in zip(("10", "11", "12", "20", "21", "22"), seeds, strict=True)
            ),
        ]
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - started
        lines = (done.stdout + done.stderr).strip().splitlines()
        last = lines[-1] if lines else f"exit {done.returncode}"
        if keep is not None:
            shutil.copytree(workdir, keep, dirs_exist_ok=True)
        found = find_activities_xml(workdir / "out")
        if done.returncode != 0 or found is None:
            return None, wall, last
        text = found.read_text(encoding="utf-8")
        return read_fet_activities(projection, export, text), wall, last
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _fmt(value: object, spec: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return format(value, spec or ".2f")
    return str(value)


def _ratio(ours: int | None, fet: int | None) -> float | None:
    if ours is None or fet is None or fet == 0:
        return None
    return ours / fet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("problem", nargs="?", type=Path, default=DATA / "example-medium.json")
    parser.add_argument("--limits", default="1,10", help="our time limits in seconds, e.g. 1,60")
    parser.add_argument("--fet-limit", type=int, default=60, help="fet-cl --timelimitseconds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-full", action="store_true", help="skip solving the full problem")
    parser.add_argument("--keep-fet", type=Path, help="copy FET's input and output here")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()
    limits = [float(x) for x in args.limits.split(",")]

    started = time.perf_counter()
    full = load_problem(args.problem)
    projection = fet_projection(full)
    read_seconds = time.perf_counter() - started
    rows: list[Row] = []

    fet_solution, fet_wall, fet_said = run_fet(
        projection, time_limit=args.fet_limit, seed=args.seed, keep=args.keep_fet
    )
    rows.append(
        Row(
            "FET " + ("" if fet_solution else f"({fet_said})"),
            "projection",
            None,
            fet_wall if fet_solution else None,
            _scores(projection, full, fet_solution, judge_projection=True),
        )
    )
    for limit in limits:
        for solved, problem in (("projection", projection), ("full", full)):
            if solved == "full" and args.no_full:
                continue
            result = solve(problem, time_limit=limit, seed=args.seed, workers=args.workers)
            first = (
                read_seconds + result.first_feasible_seconds
                if result.first_feasible_seconds is not None
                else None
            )
            scores = _scores(
                projection, full, result.solution, judge_projection=solved == "projection"
            )
            rows.append(Row("tongke", solved, limit, first, scores))

    head = (
        f"{'solver':<10}{'solves':<12}{'limit s':>8}{'first s':>9}"
        f"{'hard':>6}{'idle min':>10}{'late main':>10}   "
        f"{'full: hard':>10}{'idle min':>10}{'late main':>10}  full violations by rule"
    )
    print(f"{full.name}: {full.occurrences} lesson occurrences; FET said: {fet_said}")
    print("(hard/idle/late first on the FET projection, then on the full problem)")
    print(head)
    for row in rows:
        sc = row.scores
        print(
            f"{row.solver[:10]:<10}{row.solved:<12}{_fmt(row.limit, 'g'):>8}"
            f"{_fmt(row.first_seconds):>9}{_fmt(sc.hard_projection):>6}"
            f"{_fmt(sc.idle_projection):>10}{_fmt(sc.late_projection):>10}   "
            f"{_fmt(sc.hard_full):>10}{_fmt(sc.idle_full):>10}{_fmt(sc.late_full):>10}  "
            f"{sc.full_violations_by_rule or ''}"
        )
    fet_row = rows[0]
    ours = [r for r in rows if r.solver == "tongke" and r.solved == "projection"]
    ratios: dict[str, float | None] = {}
    if ours:
        best = ours[-1]
        ratios = {
            "late_main": _ratio(best.scores.late_projection, fet_row.scores.late_projection),
            "idle_minutes": _ratio(best.scores.idle_projection, fet_row.scores.idle_projection),
        }
        print(
            f"ours/FET on the projection at {best.limit:g} s: late main "
            f"{_fmt(ratios['late_main'], '.3f')}x (target <= 0.05x), idle "
            f"{_fmt(ratios['idle_minutes'], '.3f')}x (target <= 0.35x)"
        )
    ours_full = [r for r in rows if r.solver == "tongke" and r.solved == "full"]
    if ours_full:
        best = ours_full[-1]
        mine, theirs = best.scores, fet_row.scores
        print(
            f"ours on the full problem at {best.limit:g} s vs FET judged on the full problem: "
            f"late main {_fmt(_ratio(mine.late_full, theirs.late_full), '.3f')}x, idle "
            f"{_fmt(_ratio(mine.idle_full, theirs.idle_full), '.3f')}x "
            f"(FET: {theirs.hard_full} hard violations there, ours: {mine.hard_full})"
        )
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {
                    "problem": str(args.problem),
                    "occurrences": full.occurrences,
                    "rows": [asdict(r) for r in rows],
                    "ratios_at_largest_limit": ratios,
                },
                ensure_ascii=False,
                indent=1,
            ),
            encoding="utf-8",
        )


if __name__ == "__main__":
    main()
