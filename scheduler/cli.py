"""`tongke timetable …`: solve, check, repair and ITC-2007, for files in tongke-timetable/1."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

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


@app.command()
def solve(
    problem: Annotated[Path, typer.Argument(help="问题文件 PROBLEM.json")],
    output: Annotated[Path, typer.Option("-o", "--output", help="写出课表 SOLUTION.json")],
    time_limit: Annotated[float, typer.Option("--time-limit", min=0.1, help="秒")] = 10.0,
    seed: Annotated[int, typer.Option(help="随机种子（同一种子结果可复现）")] = 0,
) -> None:
    """Build every campus's timetable at once, sync lessons aligned by wall-clock time.

    Prints progress as it improves, writes the best solution, ends with the hard count and
    each soft term. Exit 0 feasible, 1 infeasible (with the reasons), 2 malformed input.
    """
    from scheduler.solver import run_solve

    raise typer.Exit(run_solve(problem, output, time_limit, seed))


@app.command()
def itc2007(
    instance: Annotated[Path, typer.Argument(help="ITC-2007 第 3 赛道实例 INSTANCE.ctt")],
    output: Annotated[Path, typer.Option("-o", "--output", help="写出 SOLUTION.sol")],
    time_limit: Annotated[float, typer.Option("--time-limit", min=0.1, help="秒")] = 300.0,
    seed: Annotated[int, typer.Option(help="随机种子")] = 0,
) -> None:
    """Solve an ITC-2007 track 3 (curriculum-based course timetabling) instance.

    Exit 0 hard-feasible, 1 not, 2 malformed input.
    """
    from scheduler.itc2007.solver import run_itc2007

    raise typer.Exit(run_itc2007(instance, output, time_limit, seed))


@app.command()
def repair(
    problem: Annotated[Path, typer.Argument(help="问题文件 PROBLEM.json")],
    solution: Annotated[Path, typer.Argument(help="现行课表 SOLUTION.json")],
    absent: Annotated[str, typer.Option("--absent", help="请假教师 id")],
    day: Annotated[str, typer.Option("--day", help="请假日（如 tue）")],
    output: Annotated[Path, typer.Option("-o", "--output", help="写出调整后的课表 NEW.json")],
    substitute: Annotated[
        str, typer.Option("--substitute", help="auto：优先安排同学科教师代课；none：只调课")
    ] = "none",
    time_limit: Annotated[float, typer.Option("--time-limit", min=0.1, help="秒")] = 5.0,
) -> None:
    """调课: a teacher is absent for a day; move (or cover) their lessons, changing as few
    other lessons as possible, and list every change.

    Exit 0 repaired, 1 no feasible repair (with the reason), 2 bad input or unknown
    teacher/day.
    """
    from scheduler.repair import run_repair

    if substitute not in ("auto", "none"):
        typer.echo(f"--substitute must be auto or none, not {substitute!r}")
        raise typer.Exit(2)
    mode: Literal["auto", "none"] = "auto" if substitute == "auto" else "none"
    raise typer.Exit(run_repair(problem, solution, output, absent, day, mode, time_limit))
