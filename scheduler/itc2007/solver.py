"""ITC-2007 track 3 solver: a CP-SAT feasible start, then simulated annealing on arrays.

CP-SAT assigns periods only (any course may sit in any room, since capacity is soft), rooms
are matched per period largest class to largest room, and the annealer (`anneal.py`) then
moves and swaps lectures between (period, room) slots without ever breaking a hard
constraint. With `workers` > 1 independent annealers with different seeds run in forked
processes from the same start and the best result wins.
"""

from __future__ import annotations

import logging
import multiprocessing
import queue
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from ortools.sat.python import cp_model  # type: ignore[import-untyped,unused-ignore]

from scheduler.itc2007 import anneal
from scheduler.itc2007.ctt import (
    CttFormatError,
    Instance,
    Placement,
    read_instance,
    write_solution,
)
from scheduler.itc2007.evaluate import evaluate

log = logging.getLogger(__name__)

Progress = Callable[[float, int, int], None]
"""Called as progress(elapsed_seconds, hard_violations, soft_cost) when the best improves."""

Int32 = NDArray[np.int32]

T_START = 2.0
T_END = 0.05
ROOM_MOVE_RATE = 0.25
# Worker i anneals with HARD_WEIGHTS[i % 2]: 0 keeps every state conflict-free (best on tight
# instances such as comp05), 4 lets conflicts in at that price (best on comp07 here).
HARD_WEIGHTS = (0.0, 4.0)
CHUNK = 200_000 if anneal.COMPILED else 5_000
START_SHARE = 0.3
START_LIMIT = 60.0
REPORT_EVERY = 1.0


@dataclass(frozen=True)
class Arrays:
    """The instance as index arrays: courses, rooms, teachers, curricula are numbered."""

    instance: Instance
    lec_course: Int32
    course_teacher: Int32
    curr_ptr: Int32
    curr_idx: Int32
    course_in_curr: NDArray[np.bool_]
    available: NDArray[np.bool_]
    capacity_penalty: Int32
    min_days: Int32
    teachers: int

    @classmethod
    def build(cls, instance: Instance) -> Arrays:
        course_index = {c.name: i for i, c in enumerate(instance.courses)}
        teacher_index: dict[str, int] = {}
        for c in instance.courses:
            teacher_index.setdefault(c.teacher, len(teacher_index))
        n_courses, n_curricula = len(instance.courses), len(instance.curricula)
        course_in_curr = np.zeros((n_courses, max(n_curricula, 1)), dtype=np.bool_)
        for q, curriculum in enumerate(instance.curricula):
            for name in curriculum.courses:
                course_in_curr[course_index[name], q] = True
        curr_ptr = np.zeros(n_courses + 1, dtype=np.int32)
        curr_ptr[1:] = np.cumsum(course_in_curr.sum(axis=1))
        curr_idx = np.nonzero(course_in_curr)[1].astype(np.int32)
        available = np.ones((n_courses, instance.periods), dtype=np.bool_)
        for u in instance.unavailability:
            available[course_index[u.course], u.day * instance.periods_per_day + u.period] = False
        students = np.array([c.students for c in instance.courses], dtype=np.int32)
        capacity = np.array([r.capacity for r in instance.rooms], dtype=np.int32)
        return cls(
            instance=instance,
            lec_course=np.repeat(
                np.arange(n_courses, dtype=np.int32),
                [c.lectures for c in instance.courses],
            ).astype(np.int32),
            course_teacher=np.array(
                [teacher_index[c.teacher] for c in instance.courses], dtype=np.int32
            ),
            curr_ptr=curr_ptr,
            curr_idx=curr_idx,
            course_in_curr=course_in_curr,
            available=available,
            capacity_penalty=np.maximum(0, students[:, None] - capacity[None, :]).astype(np.int32),
            min_days=np.array([c.min_working_days for c in instance.courses], dtype=np.int32),
            teachers=len(teacher_index),
        )

    def problem(self) -> tuple[Any, ...]:
        return (
            self.lec_course,
            self.course_teacher,
            self.curr_ptr,
            self.curr_idx,
            self.course_in_curr,
            self.available,
            self.capacity_penalty,
            self.min_days,
            self.instance.periods_per_day,
        )

    def state(self, lec_period: Int32, lec_room: Int32) -> tuple[Int32, ...]:
        """Count arrays for a complete, hard-feasible assignment."""
        inst = self.instance
        n_courses, n_rooms, n_periods = len(inst.courses), len(inst.rooms), inst.periods
        grid = np.full((n_rooms, n_periods), -1, dtype=np.int32)
        grid[lec_room, lec_period] = np.arange(len(lec_period), dtype=np.int32)
        course_period = np.zeros((n_courses, n_periods), dtype=np.int32)
        np.add.at(course_period, (self.lec_course, lec_period), 1)
        teacher_period = np.zeros((self.teachers, n_periods), dtype=np.int32)
        np.add.at(teacher_period, (self.course_teacher[self.lec_course], lec_period), 1)
        curr_period = (self.course_in_curr.T.astype(np.int32) @ course_period).astype(np.int32)
        course_day = course_period.reshape(n_courses, inst.days, inst.periods_per_day).sum(
            axis=2, dtype=np.int32
        )
        course_room = np.zeros((n_courses, n_rooms), dtype=np.int32)
        np.add.at(course_room, (self.lec_course, lec_room), 1)
        return (
            lec_period.copy(),
            lec_room.copy(),
            grid,
            course_period,
            teacher_period,
            curr_period,
            course_day,
            (course_day > 0).sum(axis=1, dtype=np.int32),
            course_room,
            (course_room > 0).sum(axis=1, dtype=np.int32),
            np.zeros(2, dtype=np.int32),
        )

    def placements(self, lec_period: Int32, lec_room: Int32) -> tuple[Placement, ...]:
        inst = self.instance
        return tuple(
            Placement(
                course=inst.courses[int(c)].name,
                room=inst.rooms[int(r)].name,
                day=int(p) // inst.periods_per_day,
                period=int(p) % inst.periods_per_day,
            )
            for c, p, r in zip(self.lec_course, lec_period, lec_room, strict=True)
            if p >= 0
        )


def feasible_start(arrays: Arrays, *, time_limit: float, seed: int) -> tuple[Int32, Int32] | None:
    """Periods from CP-SAT (one worker, so the result depends only on the seed), rooms matched."""
    inst = arrays.instance
    model = cp_model.CpModel()
    n_courses, n_periods = len(inst.courses), inst.periods
    x: dict[tuple[int, int], Any] = {}
    for c in range(n_courses):
        for p in range(n_periods):
            if arrays.available[c, p]:
                x[c, p] = model.new_bool_var(f"x_c{c}_p{p}")
        model.add(sum(x[c, p] for p in range(n_periods) if (c, p) in x) == inst.courses[c].lectures)
    groups: list[list[int]] = [
        list(np.nonzero(arrays.course_in_curr[:, q])[0]) for q in range(len(inst.curricula))
    ]
    groups += [list(np.nonzero(arrays.course_teacher == t)[0]) for t in range(arrays.teachers)]
    for group in groups:
        if len(group) > 1:
            for p in range(n_periods):
                model.add_at_most_one(x[c, p] for c in group if (c, p) in x)
    for p in range(n_periods):
        model.add(sum(x[c, p] for c in range(n_courses) if (c, p) in x) <= len(inst.rooms))
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    solver.parameters.random_seed = seed
    solver.parameters.max_time_in_seconds = max(time_limit, 0.1)
    status = solver.solve(model)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        log.warning("itc2007 start not found", extra={"status": solver.status_name(status)})
        return None
    students = np.array([c.students for c in inst.courses])
    rooms_by_size = np.argsort([-r.capacity for r in inst.rooms], kind="stable")
    lec_period = np.empty(len(arrays.lec_course), dtype=np.int32)
    lec_room = np.empty(len(arrays.lec_course), dtype=np.int32)
    first_lecture = np.concatenate(([0], np.cumsum([c.lectures for c in inst.courses])))
    taken = np.zeros(n_courses, dtype=np.int64)
    for p in range(n_periods):
        present = [c for c in range(n_courses) if (c, p) in x and solver.value(x[c, p])]
        present.sort(key=lambda c: -students[c])
        for rank, c in enumerate(present):
            lecture = first_lecture[c] + taken[c]
            taken[c] += 1
            lec_period[lecture] = p
            lec_room[lecture] = rooms_by_size[rank]
    return lec_period, lec_room


@dataclass
class _Run:
    best_cost: int
    best_period: Int32
    best_room: Int32
    iterations: int


def _anneal_run(
    arrays: Arrays,
    lec_period: Int32,
    lec_room: Int32,
    cost: int,
    *,
    deadline: float,
    started: float,
    seed: int,
    max_iterations: int | None,
    hard_weight: float,
    report: Callable[[float, int], None],
) -> _Run:
    """Cool geometrically over the budget: the time left, or max_iterations if given."""
    anneal.seed(seed)
    problem = arrays.problem()
    state = arrays.state(lec_period, lec_room)
    best_period, best_room = lec_period.copy(), lec_room.copy()
    best_cost = cost
    budget = deadline - started
    done = 0
    last_report = 0.0

    def progress_at() -> float:
        if max_iterations is not None:
            return done / max_iterations
        return (time.monotonic() - started) / budget

    previous = 0.0
    while True:
        share = progress_at()
        if share >= 1.0 or time.monotonic() >= deadline:
            break
        step = CHUNK
        if max_iterations is not None:
            step = min(step, max_iterations - done)
        next_share = min(1.0, share + (share - previous if done else 0.001))
        previous = share
        t_from = T_START * (T_END / T_START) ** share
        t_to = T_START * (T_END / T_START) ** next_share
        reported_best = best_cost
        cost, best_cost = anneal.anneal(
            problem,
            state,
            best_period,
            best_room,
            cost,
            best_cost,
            step,
            t_from,
            t_to,
            ROOM_MOVE_RATE,
            hard_weight,
        )
        done += step
        now = time.monotonic()
        if best_cost < reported_best and now - last_report >= REPORT_EVERY:
            last_report = now
            report(now - started, int(best_cost))
    return _Run(int(best_cost), best_period, best_room, done)


def _worker(
    arrays: Arrays,
    lec_period: Int32,
    lec_room: Int32,
    cost: int,
    deadline: float,
    started: float,
    seed: int,
    max_iterations: int | None,
    index: int,
    messages: Any,
) -> None:
    run = _anneal_run(
        arrays,
        lec_period,
        lec_room,
        cost,
        deadline=deadline,
        started=started,
        seed=seed,
        max_iterations=max_iterations,
        hard_weight=HARD_WEIGHTS[index % len(HARD_WEIGHTS)],
        report=lambda elapsed, best: messages.put(("progress", index, elapsed, best)),
    )
    messages.put(("done", index, run))


def solve(
    instance: Instance,
    *,
    time_limit: float,
    seed: int = 0,
    workers: int = 2,
    progress: Progress | None = None,
    max_iterations: int | None = None,
) -> tuple[tuple[Placement, ...], int, int]:
    """Return (placements, soft cost, hard violations) within about `time_limit` seconds.

    The trajectory is fixed by `seed`; with `max_iterations` (per worker) the result is too,
    as long as `time_limit` is long enough not to cut the run short. With only a time limit
    the number of iterations, and so the result, depends on the machine's speed.
    """
    started = time.monotonic()
    deadline = started + time_limit
    arrays = Arrays.build(instance)
    start = feasible_start(arrays, time_limit=min(START_LIMIT, START_SHARE * time_limit), seed=seed)
    if start is None:
        placements: tuple[Placement, ...] = ()
        result = evaluate(instance, placements)
        return placements, result.cost, result.hard
    lec_period, lec_room = start
    initial = evaluate(instance, arrays.placements(lec_period, lec_room))
    if progress is not None:
        progress(time.monotonic() - started, initial.hard, initial.cost)
    if initial.hard:
        return arrays.placements(lec_period, lec_room), initial.cost, initial.hard

    def report(best: int) -> None:
        if progress is not None:
            progress(time.monotonic() - started, 0, best)

    # Leave a little time to collect results and write the solution.
    anneal_deadline = deadline - min(0.5, 0.05 * time_limit)
    if workers <= 1:
        runs = [
            _anneal_run(
                arrays,
                lec_period,
                lec_room,
                initial.cost,
                deadline=anneal_deadline,
                started=time.monotonic(),
                seed=seed,
                max_iterations=max_iterations,
                hard_weight=HARD_WEIGHTS[0],
                report=lambda _elapsed, best: report(best),
            )
        ]
    else:
        runs = _parallel(
            arrays,
            lec_period,
            lec_room,
            initial.cost,
            workers=workers,
            deadline=anneal_deadline,
            seed=seed,
            max_iterations=max_iterations,
            report=report,
        )
    best = min(runs, key=lambda run: run.best_cost)
    placements = arrays.placements(best.best_period, best.best_room)
    check = evaluate(instance, placements)
    if check.cost != best.best_cost or check.hard:
        log.error(
            "itc2007 incremental cost disagrees with the evaluator",
            extra={"incremental": best.best_cost, "cost": check.cost, "hard": check.hard},
        )
    log.info(
        "itc2007 solved",
        extra={
            "instance": instance.name,
            "cost": best.best_cost,
            "iterations": [run.iterations for run in runs],
        },
    )
    return placements, best.best_cost, check.hard


def _parallel(
    arrays: Arrays,
    lec_period: Int32,
    lec_room: Int32,
    cost: int,
    *,
    workers: int,
    deadline: float,
    seed: int,
    max_iterations: int | None,
    report: Callable[[int], None],
) -> list[_Run]:
    # Compile (or load the cache) once here so the forked workers inherit the machine code.
    anneal.anneal(
        arrays.problem(),
        arrays.state(lec_period, lec_room),
        lec_period.copy(),
        lec_room.copy(),
        cost,
        cost,
        0,
        T_START,
        T_END,
        ROOM_MOVE_RATE,
        HARD_WEIGHTS[0],
    )
    context = multiprocessing.get_context("fork")
    messages = context.Queue()
    started = time.monotonic()
    processes = [
        context.Process(
            target=_worker,
            args=(
                arrays,
                lec_period,
                lec_room,
                cost,
                deadline,
                started,
                seed * 1000 + index,
                max_iterations,
                index,
                messages,
            ),
            daemon=True,
        )
        for index in range(workers)
    ]
    for process in processes:
        process.start()
    runs: dict[int, _Run] = {}
    best_seen = cost
    try:
        while len(runs) < workers:
            try:
                message = messages.get(timeout=1.0)
            except queue.Empty:
                if not any(p.is_alive() for p in processes) and messages.empty():
                    break
                continue
            if message[0] == "progress":
                if message[3] < best_seen:
                    best_seen = message[3]
                    report(best_seen)
            else:
                runs[message[1]] = message[2]
    finally:
        for process in processes:
            process.join(timeout=5)
            if process.is_alive():
                process.terminate()
    if not runs:
        raise RuntimeError("every annealing worker died")
    return [runs[index] for index in sorted(runs)]


def run_itc2007(
    instance_path: str | Path, out_path: str | Path, time_limit: float, seed: int = 0
) -> int:
    """CLI entry: solve, print progress lines, write the solution.

    Exit code 0 when the solution is hard-feasible, 1 when it is not, 2 on a malformed file.
    """
    try:
        instance = read_instance(instance_path)
    except (CttFormatError, OSError) as error:
        sys.stderr.write(f"error: {error}\n")
        return 2

    def show(elapsed: float, hard: int, cost: int) -> None:
        sys.stdout.write(f"{elapsed:8.1f}s  hard {hard:3d}  soft {cost:5d}\n")
        sys.stdout.flush()

    placements, cost, hard = solve(instance, time_limit=time_limit, seed=seed, progress=show)
    write_solution(out_path, placements)
    sys.stdout.write(f"{instance.name}: hard {hard} soft {cost} -> {out_path}\n")
    return 0 if hard == 0 else 1
