"""ITC-2007 track 3 solver: a CP-SAT feasible start, then simulated annealing on arrays.

CP-SAT assigns periods only (any course may sit in any room, since capacity is soft), rooms
are matched per period largest class to largest room, and the annealer (`anneal.py`) then
moves and swaps lectures between (period, room) slots (some aimed at isolated lectures),
swaps Kempe chains between periods (half of them within a day) and gathers a course's lectures
in one room.
The start temperature is calibrated from sampled worsening trials. With `workers` > 1,
annealers with different profiles (conflict-free or conflicts at a price; one cooling or
reheated cycles) and seeds run in forked processes from the same start, compare their best
timetables halfway (a worker behind continues from the best one), and the best result wins.
"""

from __future__ import annotations

import logging
import multiprocessing
import queue
import sys
import threading
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


@dataclass(frozen=True)
class Profile:
    """One worker's annealing parameters (see anneal.P_*); temperatures are multiples of the
    calibrated start temperature."""

    hard_weight: float
    t_start: float = 1.0
    t_end: float = 1.0 / 40.0
    room_move: float = 0.25
    kempe: float = 0.03
    days: float = 0.05
    stable_room: float = 0.3
    isolated: float = 0.1  # plain trials aimed at an isolated lecture of a curriculum
    course_room: float = 0.01  # trials putting all lectures of a course in one room
    kempe_day: float = 0.5  # Kempe chains between two periods of one day
    cycles: int = 1  # cooling cycles over the budget, each from the best timetable so far
    reheat: float = 0.5  # start temperature of each further cycle, relative to the one before

    def params(self, base: float) -> NDArray[np.float64]:
        params = np.zeros(anneal.N_PARAMS, dtype=np.float64)
        params[anneal.P_T_START] = self.t_start * base
        params[anneal.P_T_END] = self.t_end * base
        params[anneal.P_ROOM_MOVE] = self.room_move
        params[anneal.P_HARD_WEIGHT] = self.hard_weight
        params[anneal.P_KEMPE] = self.kempe
        params[anneal.P_DAYS] = self.days
        params[anneal.P_STABLE_ROOM] = self.stable_room
        params[anneal.P_ISOLATED] = self.isolated
        params[anneal.P_COURSE_ROOM] = self.course_room
        params[anneal.P_KEMPE_DAY] = self.kempe_day
        return params


# Worker i anneals with PROFILES[i % 2]: hard weight 0 keeps every state conflict-free (best on
# tight instances such as comp05), 4 lets conflicts in at that price (better on comp07).
PROFILES = (Profile(hard_weight=0.0), Profile(hard_weight=4.0, t_start=1.5, cycles=2))
# The start temperature accepts a small worsening trial (the lower quartile of sampled ones
# from the start) with this probability, within [T_MIN, T_MAX].
ACCEPT_AT_START = 0.25
T_MIN = 1.0
T_MAX = 20.0
# Shares of the budget where the workers compare their best timetables; a worker whose best is
# worse than another's continues from that one.
SHARE_AT = (0.5,)
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
    conflict: NDArray[np.bool_]
    course_first: Int32

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
        course_teacher = np.array(
            [teacher_index[c.teacher] for c in instance.courses], dtype=np.int32
        )
        shares = course_in_curr.astype(np.int32)
        conflict = (shares @ shares.T > 0) | (course_teacher[:, None] == course_teacher[None, :])
        np.fill_diagonal(conflict, True)
        course_first = np.zeros(n_courses + 1, dtype=np.int32)
        course_first[1:] = np.cumsum([c.lectures for c in instance.courses])
        students = np.array([c.students for c in instance.courses], dtype=np.int32)
        capacity = np.array([r.capacity for r in instance.rooms], dtype=np.int32)
        return cls(
            instance=instance,
            lec_course=np.repeat(
                np.arange(n_courses, dtype=np.int32),
                [c.lectures for c in instance.courses],
            ).astype(np.int32),
            course_teacher=course_teacher,
            curr_ptr=curr_ptr,
            curr_idx=curr_idx,
            course_in_curr=course_in_curr,
            available=available,
            capacity_penalty=np.maximum(0, students[:, None] - capacity[None, :]).astype(np.int32),
            min_days=np.array([c.min_working_days for c in instance.courses], dtype=np.int32),
            teachers=len(teacher_index),
            conflict=conflict,
            course_first=course_first,
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
            self.conflict,
            self.course_first,
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
            np.zeros(8, dtype=np.int32),
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


Exchange = Callable[[int, Int32, Int32], tuple[int, Int32, Int32] | None]
"""exchange(best_cost, best_period, best_room) -> a better timetable to continue from."""


def calibrate(arrays: Arrays, lec_period: Int32, lec_room: Int32, seed: int) -> float:
    """Start temperature from sampled worsening trials of the start timetable."""
    anneal.seed(seed)
    samples = 4000
    out = np.zeros(samples, dtype=np.int64)
    found = anneal.sample_worsening(
        arrays.problem(),
        arrays.state(lec_period, lec_room),
        # Unaimed trials, so the start temperature does not depend on the aimed moves' rates.
        Profile(hard_weight=0.0, isolated=0.0).params(1.0),
        samples,
        out,
    )
    if found < 10:
        return T_MIN
    small = float(np.percentile(out[:found], 25))
    return float(min(T_MAX, max(T_MIN, small / -np.log(ACCEPT_AT_START))))


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
    profile: Profile,
    base_temperature: float,
    report: Callable[[float, int], None],
    exchange: Exchange | None = None,
    optimal: Callable[[], bool] | None = None,
    found_optimal: Callable[[], None] | None = None,
) -> _Run:
    """Cool geometrically over the budget: the time left, or max_iterations if given.

    A soft cost of 0 cannot be beaten, so the run stops there (and says so through
    ``found_optimal``), as it does when ``optimal`` says another worker got there."""
    anneal.seed(seed)
    problem = arrays.problem()
    state = arrays.state(lec_period, lec_room)
    best_period, best_room = lec_period.copy(), lec_room.copy()
    best_cost = cost
    budget = deadline - started
    done = 0
    last_report = 0.0
    params = profile.params(base_temperature)
    t_start, t_end = params[anneal.P_T_START], params[anneal.P_T_END]
    cycles = max(1, profile.cycles)
    # Events stop a chunk: exchanges with the other workers, and the ends of cooling cycles
    # (the next cycle reheats and starts from the best timetable).
    exchanges = set(SHARE_AT) if exchange is not None else set()
    boundaries = {k / cycles for k in range(1, cycles)}
    events = sorted(exchanges | boundaries)
    event = 0

    def progress_at() -> float:
        if max_iterations is not None:
            return done / max_iterations
        return (time.monotonic() - started) / budget

    def temperature(share: float) -> float:
        cycle = min(int(share * cycles), cycles - 1)
        high = t_start * profile.reheat**cycle
        return float(high * (t_end / high) ** (share * cycles - cycle))

    previous = 0.0
    while best_cost > 0 and not (optimal is not None and optimal()):
        share = progress_at()
        if share >= 1.0 or time.monotonic() >= deadline:
            break
        while event < len(events) and share >= events[event]:
            at = events[event]
            event += 1
            restart = at in boundaries
            if exchange is not None and at in exchanges:
                better = exchange(int(best_cost), best_period, best_room)
                if better is not None and better[0] < best_cost:
                    best_cost = better[0]
                    best_period[:] = better[1]
                    best_room[:] = better[2]
                    restart = True
            if restart:
                cost = best_cost
                state = arrays.state(best_period, best_room)
        step = CHUNK
        if max_iterations is not None:
            step = min(step, max_iterations - done)
            if event < len(events):
                step = min(step, max(1, int(events[event] * max_iterations) - done))
            next_share = (done + step) / max_iterations
        else:
            next_share = min(1.0, share + (share - previous if done else 0.001))
            if event < len(events):
                next_share = min(next_share, max(events[event], share))
        previous = share
        params[anneal.P_T_START] = temperature(share)
        # Just below the event, so a chunk ending there ends the cycle's cooling.
        params[anneal.P_T_END] = temperature(max(share, next_share - 1e-9))
        reported_best = best_cost
        cost, best_cost = anneal.anneal(
            problem, state, best_period, best_room, cost, best_cost, step, params
        )
        done += step
        now = time.monotonic()
        if best_cost < reported_best and (now - last_report >= REPORT_EVERY or best_cost == 0):
            last_report = now
            report(now - started, int(best_cost))
    if best_cost == 0 and found_optimal is not None:
        found_optimal()
    if exchange is not None:
        # A worker that stops early still takes part in the remaining exchanges.
        for at in events[event:]:
            if at in exchanges:
                exchange(int(best_cost), best_period, best_room)
    return _Run(int(best_cost), best_period, best_room, done)


@dataclass
class _Shared:
    """Best timetables of the workers in shared memory, compared at each SHARE_AT point."""

    costs: Any
    periods: Any
    rooms: Any
    barrier: Any
    lectures: int
    solved: Any  # an Event: a worker reached soft cost 0, so the others stop too

    def exchange(
        self, index: int, best_cost: int, best_period: Int32, best_room: Int32
    ) -> tuple[int, Int32, Int32] | None:
        n = self.lectures
        self.costs[index] = best_cost
        self.periods[index * n : (index + 1) * n] = best_period.tolist()
        self.rooms[index * n : (index + 1) * n] = best_room.tolist()
        try:
            self.barrier.wait(timeout=60.0)
            costs = list(self.costs)
            winner = min(range(len(costs)), key=lambda i: (costs[i], i))
            better = None
            if costs[winner] < best_cost:
                better = (
                    int(costs[winner]),
                    np.array(self.periods[winner * n : (winner + 1) * n], dtype=np.int32),
                    np.array(self.rooms[winner * n : (winner + 1) * n], dtype=np.int32),
                )
            # Nobody writes the next round before everyone has read this one.
            self.barrier.wait(timeout=60.0)
        except threading.BrokenBarrierError:
            return None
        return better


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
    base_temperature: float,
    profile: Profile,
    shared: _Shared,
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
        profile=profile,
        base_temperature=base_temperature,
        report=lambda elapsed, best: messages.put(("progress", index, elapsed, best)),
        exchange=lambda best, period, room: shared.exchange(index, best, period, room),
        optimal=shared.solved.is_set,
        found_optimal=shared.solved.set,
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
    profiles: tuple[Profile, ...] = PROFILES,
) -> tuple[tuple[Placement, ...], int, int]:
    """Return (placements, soft cost, hard violations) within about `time_limit` seconds.

    The trajectory is fixed by `seed`; with `max_iterations` (per worker) the result is too,
    as long as `time_limit` is long enough not to cut the run short. With only a time limit
    the number of iterations, and so the result, depends on the machine's speed. Worker i
    anneals with profiles[i % len(profiles)].
    """
    started = time.monotonic()
    deadline = started + time_limit
    arrays = Arrays.build(instance)
    start = feasible_start(arrays, time_limit=min(START_LIMIT, START_SHARE * time_limit), seed=seed)
    if start is None and deadline - time.monotonic() > 1.0:
        # On a loaded machine the share can be too short; nothing can run without a start.
        start = feasible_start(arrays, time_limit=deadline - time.monotonic() - 0.5, seed=seed)
    if start is None:
        placements: tuple[Placement, ...] = ()
        result = evaluate(instance, placements)
        return placements, result.cost, result.hard
    lec_period, lec_room = start
    initial = evaluate(instance, arrays.placements(lec_period, lec_room))
    if progress is not None:
        progress(time.monotonic() - started, initial.hard, initial.cost)
    if initial.hard or initial.cost == 0:
        return arrays.placements(lec_period, lec_room), initial.cost, initial.hard

    def report(best: int) -> None:
        if progress is not None:
            progress(time.monotonic() - started, 0, best)

    # Leave a little time to collect results and write the solution.
    anneal_deadline = deadline - min(0.5, 0.05 * time_limit)
    base_temperature = calibrate(arrays, lec_period, lec_room, seed)
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
                profile=profiles[0],
                base_temperature=base_temperature,
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
            base_temperature=base_temperature,
            profiles=profiles,
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
            "worker_costs": [run.best_cost for run in runs],
            "base_temperature": base_temperature,
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
    base_temperature: float,
    profiles: tuple[Profile, ...],
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
        profiles[0].params(base_temperature),
    )
    context = multiprocessing.get_context("fork")
    messages = context.Queue()
    lectures = len(lec_period)
    shared = _Shared(
        costs=context.Array("q", workers, lock=False),
        periods=context.Array("i", workers * lectures, lock=False),
        rooms=context.Array("i", workers * lectures, lock=False),
        barrier=context.Barrier(workers),
        lectures=lectures,
        solved=context.Event(),
    )
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
                base_temperature,
                profiles[index % len(profiles)],
                shared,
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
