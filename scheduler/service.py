"""Solving an alliance's term timetable as a background job (start, progress, cancel)."""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING, Any

from common.db import get_engine, session_scope
from common.errors import ValidationFailedError
from common.jobs import JobContext, JobQueue
from common.logging import get_logger
from common.settings import Settings
from scheduler.alliance_bridge import Conversion, problem_from_alliance, store_solution
from scheduler.checker import check

if TYPE_CHECKING:
    from scheduler.domain import Solution
    from scheduler.solver import Progress

log = get_logger(__name__)

SOLVE_JOB = "solve_term_timetable"


def solve_job_id(term_id: int, token: str) -> str:
    return f"solve-term{term_id}-{token}"


def term_of_job(job_id: str) -> int | None:
    """The term a solve job belongs to (its id says so), for permission checks."""
    prefix, _, rest = job_id.partition("-term")
    if prefix != "solve" or "-" not in rest:
        return None
    number = rest.split("-", 1)[0]
    return int(number) if number.isdigit() else None


def register_jobs(queue: JobQueue, settings: Settings) -> None:
    """Register the timetable jobs on `queue` (the web app and `tongke worker` both call this)."""

    async def solve_term(
        ctx: JobContext, *, term_id: int, time_limit: float, seed: int = 0
    ) -> dict[str, Any]:
        from scheduler.solver import solve  # OR-Tools loads only where a solve runs

        engine = get_engine(settings.database_url)

        # The database work in threads: embedded, this job runs on the web process's loop,
        # which the in-process SFU forwards every classroom on.
        def load() -> Conversion:
            with session_scope(engine) as session:
                return problem_from_alliance(session, term_id=term_id)

        def store(solution: Solution) -> int:
            with session_scope(engine) as session:
                return store_solution(session, term_id=term_id, solution=solution)

        conversion = await asyncio.to_thread(load)
        problem = conversion.problem
        loop = asyncio.get_running_loop()
        stop = threading.Event()
        await ctx.report(
            0.0, f"开始求解：{len(problem.lessons)} 个教学任务，{problem.occurrences} 节课"
        )

        def on_progress(update: Progress) -> None:
            message = (
                f"{update.elapsed:.1f} 秒：硬约束冲突 {update.hard_violations}，"
                f"空堂 {update.idle_minutes} 分钟，下午主科 {update.late_main} 节"
            )
            future = asyncio.run_coroutine_threadsafe(
                ctx.report(min(update.elapsed / time_limit, 0.99), message), loop
            )
            future.add_done_callback(lambda f: f.exception())
            if ctx.cancelled:
                stop.set()

        result = await asyncio.to_thread(
            solve,
            problem,
            time_limit=time_limit,
            seed=seed,
            progress=on_progress,
            should_stop=stop.is_set,
        )
        if ctx.cancelled:
            raise asyncio.CancelledError
        if not result.feasible or result.solution is None:
            reasons = "；".join(result.explanation) or "在时限内没有找到可行课表，可延长求解时间"
            raise ValidationFailedError(f"无法排出课表：{reasons}")
        report = check(problem, result.solution)
        if not report.feasible:  # the solver and the checker must agree; never store a bad week
            raise ValidationFailedError(f"求解结果未通过检查：{report.violations[0].message}")
        stored = await asyncio.to_thread(store, result.solution)
        await ctx.report(1.0, f"完成：已保存 {stored} 节课")
        log.info("term timetable solved", term_id=term_id, lessons=stored, **report.soft)
        return {
            "term_id": term_id,
            "stored_lessons": stored,
            "hard_violations": report.hard,
            "idle_minutes": report.idle_minutes,
            "late_main": report.late_main,
            "seconds": round(result.wall_time, 2),
            "warnings": conversion.warnings,
        }

    # An infeasible or cancelled solve fails the same way again: no retries.
    queue.register(SOLVE_JOB, solve_term, max_retries=0)
