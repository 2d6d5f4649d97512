"""`tongke timetable …`: solve, check, repair and ITC-2007, for files in tongke-timetable/1."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="课表对齐：求解、检查、调课（tongke-timetable/1 文件）", no_args_is_help=True
)


@app.command()
def check(
    problem: Annotated[Path, typer.Argument(help="问题文件 PROBLEM.json")],
    solution: Annotated[Path, typer.Argument(help="课表文件 SOLUTION.json")],
) -> None:
    """Evaluate a solution: one line per violated hard constraint, then the soft terms.

    Exit 0 feasible, 1 infeasible, 2 malformed input.
    """
    from scheduler.checker import run_check

    raise typer.Exit(run_check(problem, solution))
