"""调课 figures: repair example-small and example-medium after one teacher's absence.

    .venv/bin/python benchmarks/timetable_repair.py [--teachers N] [--seed N] [--day DAY]

For a seeded choice of absent teachers, with and without substitutes, prints the repair
time, how many occurrences moved against how many were forced off their slot, the
substitutions, and the checker's verdict on the new timetable.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from scheduler.checker import check
from scheduler.io.timetable_json import load_problem, load_solution
from scheduler.repair import repair

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "timetable"
EXAMPLES = ("example-small", "example-medium")


def _row(*cells: object) -> str:
    widths = (16, 8, 5, 6, 8, 8, 6, 12, 10)
    return "".join(
        f"{c!s:>{w}}" if i else f"{c!s:<{w}}"
        for i, (c, w) in enumerate(zip(cells, widths, strict=True))
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--teachers", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--day", default="tue")
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    print(
        _row(
            "instance",
            "teacher",
            "day",
            "mode",
            "time s",
            "moved",
            "forced",
            "substituted",
            "checker",
        )
    )
    for name in EXAMPLES:
        problem = load_problem(args.data / f"{name}.json")
        solution = load_solution(args.data / f"{name}.solution.json", problem)
        teachers = sorted(
            {problem.lessons[p.lesson].teacher for p in solution.lessons if p.day == args.day}
        )
        for teacher in random.Random(args.seed).sample(teachers, min(args.teachers, len(teachers))):
            for mode in ("none", "auto"):
                result = repair(
                    problem, solution, absent_teacher=teacher, day=args.day, substitute=mode
                )
                if result.solution is None:
                    verdict = "no repair"
                else:
                    report = check(problem, result.solution)
                    verdict = "feasible" if report.feasible else f"{report.hard} hard"
                print(
                    _row(
                        name,
                        teacher,
                        args.day,
                        mode,
                        f"{result.wall_time:.2f}",
                        result.moved if result.feasible else "-",
                        result.must_move,
                        len(result.substitutions),
                        verdict,
                    ),
                    flush=True,
                )
                if not result.feasible:
                    print(f"    {result.reason}")


if __name__ == "__main__":
    main()
