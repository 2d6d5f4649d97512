"""Simulated annealing kernel over array state with incremental (delta) cost updates.

Compiled with numba when it is installed (about 50x faster); otherwise the same functions run
as plain Python on the numpy arrays, which is correct but only good for small instances.

Rooms are exchanged slot for slot and unavailable periods are never used. Conflicts (two
lectures of one curriculum, one teacher or one course in a period) are either forbidden
(`hard_weight` 0: the state stays hard-feasible) or allowed at `hard_weight` per conflicting
pair, counted per curriculum, teacher and course; the best state kept is always conflict-free.
A move is applied as remove/insert steps that each return their exact soft-cost change (and
update the conflict count), and is undone the same way.

Trials: move one lecture to a (period, room) slot or swap it with the slot's lecture (the
room is, at a set rate, one its course already uses; a set share of trials move a lecture of a
course short of working days to a day the course does not meet, and another share move a
lecture isolated in its curriculum next to another lecture of that curriculum), Kempe-chain
swaps: the lectures of two periods (at a set rate two periods of one day) linked to a random
lecture by conflicts change period together, which never makes a conflict, keeping their rooms
where free (else the cheapest free room), and course-room moves: every lecture of a course goes
to one room, swapping with the lecture there (room stability). Kempe chains and course-room
moves are applied, priced exactly, and undone when rejected.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from typing import Any

import numpy as np

try:
    _numba: Any = importlib.import_module("numba")
except ImportError:
    _numba = None

COMPILED = _numba is not None

CAPACITY_WEIGHT = 1
MIN_DAYS_WEIGHT = 5
COMPACTNESS_WEIGHT = 2
STABILITY_WEIGHT = 1


def _jit(function: Callable[..., Any]) -> Callable[..., Any]:
    if _numba is None:
        return function
    compiled: Callable[..., Any] = _numba.njit(cache=True, nogil=True)(function)
    return compiled


# problem = (lec_course, course_teacher, curr_ptr, curr_idx, course_in_curr, available,
#            capacity_penalty, min_days, periods_per_day, conflict, course_first)
# conflict[c1, c2]: same course, same teacher or a shared curriculum; lectures of course c are
# course_first[c] .. course_first[c + 1] - 1.
# state   = (lec_period, lec_room, grid, course_period, teacher_period, curr_period,
#            course_day, course_days, course_room, course_rooms, violations)
# violations = [conflicting pairs, estimate mismatches (always 0 unless there is a bug),
#               Kempe chains tried, Kempe chains accepted, course-room moves tried,
#               course-room moves accepted, isolated-lecture trials proposed, spare]


@_jit
def _isolated_near(curr_period: Any, q: int, p: int, ppd: int) -> int:
    """Isolated lectures of curriculum q in periods p-1..p+1 of p's day."""
    first = p - p % ppd
    last = first + ppd - 1
    lo = p - 1 if p > first else p
    hi = p + 1 if p < last else p
    total = 0
    for s in range(lo, hi + 1):
        n = curr_period[q, s]
        if (
            n > 0
            and (s == first or curr_period[q, s - 1] == 0)
            and (s == last or curr_period[q, s + 1] == 0)
        ):
            total += n
    return total


@_jit
def _remove(problem: Any, state: Any, lecture: int) -> int:
    lec_course = problem[0]
    course_teacher = problem[1]
    curr_ptr = problem[2]
    curr_idx = problem[3]
    capacity_penalty = problem[6]
    min_days = problem[7]
    ppd = problem[8]
    (
        lec_period,
        lec_room,
        grid,
        course_period,
        teacher_period,
        curr_period,
        course_day,
        course_days,
        course_room,
        course_rooms,
        violations,
    ) = state
    c = lec_course[lecture]
    p = lec_period[lecture]
    r = lec_room[lecture]
    d = p // ppd
    delta = -CAPACITY_WEIGHT * capacity_penalty[c, r]
    grid[r, p] = -1
    t = course_teacher[c]
    course_period[c, p] -= 1
    teacher_period[t, p] -= 1
    clashes = course_period[c, p] + teacher_period[t, p]
    course_room[c, r] -= 1
    if course_room[c, r] == 0:
        if course_rooms[c] > 1:
            delta -= STABILITY_WEIGHT
        course_rooms[c] -= 1
    course_day[c, d] -= 1
    if course_day[c, d] == 0:
        if course_days[c] <= min_days[c]:
            delta += MIN_DAYS_WEIGHT
        course_days[c] -= 1
    for k in range(curr_ptr[c], curr_ptr[c + 1]):
        q = curr_idx[k]
        before = _isolated_near(curr_period, q, p, ppd)
        curr_period[q, p] -= 1
        clashes += curr_period[q, p]
        delta += COMPACTNESS_WEIGHT * (_isolated_near(curr_period, q, p, ppd) - before)
    violations[0] -= clashes
    lec_period[lecture] = -1
    lec_room[lecture] = -1
    return int(delta)


@_jit
def _insert(problem: Any, state: Any, lecture: int, p: int, r: int) -> int:
    lec_course = problem[0]
    course_teacher = problem[1]
    curr_ptr = problem[2]
    curr_idx = problem[3]
    capacity_penalty = problem[6]
    min_days = problem[7]
    ppd = problem[8]
    (
        lec_period,
        lec_room,
        grid,
        course_period,
        teacher_period,
        curr_period,
        course_day,
        course_days,
        course_room,
        course_rooms,
        violations,
    ) = state
    c = lec_course[lecture]
    d = p // ppd
    delta = CAPACITY_WEIGHT * capacity_penalty[c, r]
    grid[r, p] = lecture
    t = course_teacher[c]
    clashes = course_period[c, p] + teacher_period[t, p]
    course_period[c, p] += 1
    teacher_period[t, p] += 1
    if course_room[c, r] == 0:
        if course_rooms[c] > 0:
            delta += STABILITY_WEIGHT
        course_rooms[c] += 1
    course_room[c, r] += 1
    if course_day[c, d] == 0:
        if course_days[c] < min_days[c]:
            delta -= MIN_DAYS_WEIGHT
        course_days[c] += 1
    course_day[c, d] += 1
    for k in range(curr_ptr[c], curr_ptr[c + 1]):
        q = curr_idx[k]
        before = _isolated_near(curr_period, q, p, ppd)
        clashes += curr_period[q, p]
        curr_period[q, p] += 1
        delta += COMPACTNESS_WEIGHT * (_isolated_near(curr_period, q, p, ppd) - before)
    violations[0] += clashes
    lec_period[lecture] = p
    lec_room[lecture] = r
    return int(delta)


@_jit
def _fits(problem: Any, state: Any, c: int, p: int, leaving: int) -> bool:
    """Whether course c can take period p once course `leaving` (or -1) has left it."""
    course_teacher = problem[1]
    curr_ptr = problem[2]
    curr_idx = problem[3]
    course_in_curr = problem[4]
    available = problem[5]
    course_period = state[3]
    teacher_period = state[4]
    curr_period = state[5]
    if not available[c, p] or course_period[c, p] > 0:
        return False
    t = course_teacher[c]
    n = teacher_period[t, p]
    if leaving >= 0 and course_teacher[leaving] == t:
        n -= 1
    if n > 0:
        return False
    for k in range(curr_ptr[c], curr_ptr[c + 1]):
        q = curr_idx[k]
        n = curr_period[q, p]
        if leaving >= 0 and course_in_curr[leaving, q]:
            n -= 1
        if n > 0:
            return False
    return True


@_jit
def _count(curr_period: Any, q: int, s: int, pa: int, da: int, pb: int, db: int) -> int:
    n = curr_period[q, s]
    if s == pa:
        n += da
    if s == pb:
        n += db
    return int(n)


@_jit
def _isolated_after(
    curr_period: Any, q: int, s: int, ppd: int, pa: int, da: int, pb: int, db: int
) -> int:
    """Whether s is isolated for curriculum q (times its lectures) once pa, pb change."""
    n = _count(curr_period, q, s, pa, da, pb, db)
    if n <= 0:
        return 0
    first = s - s % ppd
    if s > first and _count(curr_period, q, s - 1, pa, da, pb, db) > 0:
        return 0
    if s < first + ppd - 1 and _count(curr_period, q, s + 1, pa, da, pb, db) > 0:
        return 0
    return int(n)


@_jit
def _compactness_change(curr_period: Any, q: int, ppd: int, pa: int, pb: int) -> int:
    """Change in isolated lectures of q when one of its lectures moves from pa to pb."""
    total = 0
    for side in range(2):
        centre = pa if side == 0 else pb
        first = centre - centre % ppd
        lo = centre - 1 if centre > first else centre
        hi = centre + 1 if centre < first + ppd - 1 else centre
        for s in range(lo, hi + 1):
            # Periods near both ends are counted once, with pa's neighbourhood.
            if side == 1 and s // ppd == pa // ppd and abs(s - pa) <= 1:
                continue
            total += _isolated_after(curr_period, q, s, ppd, pa, -1, pb, 1)
            total -= _isolated_after(curr_period, q, s, ppd, pa, 0, pb, 0)
    return total


@_jit
def _course_change(problem: Any, state: Any, c: int, p1: int, r1: int, p2: int, r2: int) -> int:
    """Room capacity, room stability and working-days change of course c moving p1,r1->p2,r2."""
    capacity_penalty = problem[6]
    min_days = problem[7]
    ppd = problem[8]
    course_day = state[6]
    course_days = state[7]
    course_room = state[8]
    course_rooms = state[9]
    delta = CAPACITY_WEIGHT * (capacity_penalty[c, r2] - capacity_penalty[c, r1])
    if r1 != r2:
        n = course_rooms[c]
        m = n
        if course_room[c, r1] == 1:
            m -= 1
        if course_room[c, r2] == 0:
            m += 1
        delta += STABILITY_WEIGHT * (max(0, m - 1) - max(0, n - 1))
    d1 = p1 // ppd
    d2 = p2 // ppd
    if d1 != d2:
        n = course_days[c]
        m = n
        if course_day[c, d1] == 1:
            m -= 1
        if course_day[c, d2] == 0:
            m += 1
        delta += MIN_DAYS_WEIGHT * (max(0, min_days[c] - m) - max(0, min_days[c] - n))
    return int(delta)


@_jit
def _estimate(
    problem: Any, state: Any, c1: int, p1: int, r1: int, c2: int, p2: int, r2: int, strict: bool
) -> tuple[int, int]:
    """(soft change, conflict change) of c1: p1,r1 -> p2,r2 and c2 (or -1) the other way."""
    course_teacher = problem[1]
    curr_ptr = problem[2]
    curr_idx = problem[3]
    course_in_curr = problem[4]
    ppd = problem[8]
    teacher_period = state[4]
    curr_period = state[5]
    soft = _course_change(problem, state, c1, p1, r1, p2, r2)
    if c2 >= 0:
        soft += _course_change(problem, state, c2, p2, r2, p1, r1)
    hard = 0
    if p1 == p2:
        return soft, hard
    t1 = course_teacher[c1]
    for k in range(curr_ptr[c1], curr_ptr[c1 + 1]):
        q = curr_idx[k]
        if c2 < 0 or not course_in_curr[c2, q]:
            soft += COMPACTNESS_WEIGHT * _compactness_change(curr_period, q, ppd, p1, p2)
    if c2 >= 0:
        for k in range(curr_ptr[c2], curr_ptr[c2 + 1]):
            q = curr_idx[k]
            if not course_in_curr[c1, q]:
                soft += COMPACTNESS_WEIGHT * _compactness_change(curr_period, q, ppd, p2, p1)
    if strict:
        return soft, hard
    hard -= teacher_period[t1, p1] - 1
    added = teacher_period[t1, p2]
    for k in range(curr_ptr[c1], curr_ptr[c1 + 1]):
        q = curr_idx[k]
        hard -= curr_period[q, p1] - 1
        added += curr_period[q, p2]
        if c2 >= 0 and course_in_curr[c2, q]:
            added -= 1
    if c2 >= 0:
        t2 = course_teacher[c2]
        if t2 == t1:
            added -= 2
        hard -= teacher_period[t2, p2] - 1
        added += teacher_period[t2, p1]
        for k in range(curr_ptr[c2], curr_ptr[c2 + 1]):
            q = curr_idx[k]
            hard -= curr_period[q, p2] - 1
            added += curr_period[q, p1]
            if course_in_curr[c1, q]:
                added -= 1
    return soft, hard + added


@_jit
def seed(value: int) -> None:
    np.random.seed(value)


# params for `anneal` (a float64 array, so the kernel's signature stays fixed):
P_T_START = 0
P_T_END = 1
P_ROOM_MOVE = 2  # share of plain moves that keep the period and change the room only
P_HARD_WEIGHT = 3  # 0: never leave hard feasibility; > 0: price per conflicting pair
P_KEMPE = 4  # share of trials that are Kempe-chain swaps between two periods
P_DAYS = 5  # share of trials that move a lecture of a course short of working days
P_STABLE_ROOM = 6  # share of room choices that take a room the course already uses
P_ISOLATED = 7  # share of plain trials that move an isolated lecture next to its curriculum
P_COURSE_ROOM = 8  # share of trials that put every lecture of a course in one room
P_KEMPE_DAY = 9  # share of Kempe chains whose second period is on the first one's day
N_PARAMS = 10


@_jit
def _chain_room(problem: Any, state: Any, c: int, p: int) -> int:
    """The cheapest free room of period p for course c (capacity, plus a room it does not use)."""
    capacity_penalty = problem[6]
    grid = state[2]
    course_room = state[8]
    best = -1
    best_cost = 1 << 30
    for r in range(grid.shape[0]):
        if grid[r, p] >= 0:
            continue
        cost = capacity_penalty[c, r]
        if course_room[c, r] == 0:
            cost += STABILITY_WEIGHT
        if cost < best_cost:
            best_cost = cost
            best = r
    return best


@_jit
def _kempe(
    problem: Any,
    state: Any,
    l1: int,
    p2: int,
    chain: Any,
    old_p: Any,
    old_r: Any,
    mark: Any,
    stamp: int,
) -> tuple[int, int]:
    """Swap periods p1 (l1's) and p2 for l1's Kempe chain: the lectures of both periods linked
    to l1 by conflicts. Returns (chain length, soft change) with the swap applied, or (0, 0)
    when it cannot be done (an unavailable period, too few rooms)."""
    lec_course = problem[0]
    available = problem[5]
    conflict = problem[9]
    lec_period = state[0]
    lec_room = state[1]
    grid = state[2]
    rooms = grid.shape[0]
    p1 = lec_period[l1]
    n = 1
    chain[0] = l1
    mark[l1] = stamp
    head = 0
    moved_1 = 0  # chain lectures leaving p1
    while head < n:
        x = chain[head]
        head += 1
        cx = lec_course[x]
        px = lec_period[x]
        other = p2 if px == p1 else p1
        if px == p1:
            moved_1 += 1
        if not available[cx, other]:
            return 0, 0
        for r in range(rooms):
            y = grid[r, other]
            if y >= 0 and mark[y] != stamp and conflict[cx, lec_course[y]]:
                mark[y] = stamp
                chain[n] = y
                n += 1
    moved_2 = n - moved_1
    count_1 = 0
    count_2 = 0
    for r in range(rooms):
        if grid[r, p1] >= 0:
            count_1 += 1
        if grid[r, p2] >= 0:
            count_2 += 1
    if count_1 - moved_1 + moved_2 > rooms or count_2 - moved_2 + moved_1 > rooms:
        return 0, 0
    delta = 0
    for j in range(n):
        x = chain[j]
        old_p[j] = lec_period[x]
        old_r[j] = lec_room[x]
        delta += _remove(problem, state, x)
    # Lectures whose room is free in the new period keep it; the others take the cheapest.
    for keep in range(2):
        for j in range(n):
            x = chain[j]
            if lec_period[x] >= 0:
                continue
            target = p2 if old_p[j] == p1 else p1
            r = old_r[j]
            if grid[r, target] >= 0:
                if keep == 0:
                    continue
                r = _chain_room(problem, state, lec_course[x], target)
            delta += _insert(problem, state, x, target, r)
    return n, delta


@_jit
def _kempe_undo(problem: Any, state: Any, n: int, chain: Any, old_p: Any, old_r: Any) -> int:
    delta = 0
    for j in range(n):
        delta += _remove(problem, state, chain[j])
    for j in range(n):
        delta += _insert(problem, state, chain[j], old_p[j], old_r[j])
    return delta


@_jit
def _isolated_trial(problem: Any, state: Any) -> tuple[int, int]:
    """(lecture, period): a lecture isolated in a random curriculum and a free period of that
    curriculum next to another of its lectures, or (-1, -1) when none turns up."""
    lec_course = problem[0]
    course_in_curr = problem[4]
    min_days = problem[7]
    ppd = problem[8]
    grid = state[2]
    curr_period = state[5]
    course_day = state[6]
    course_days = state[7]
    curricula = curr_period.shape[0]
    periods = curr_period.shape[1]
    rooms = grid.shape[0]
    for _ in range(4):
        q = np.random.randint(0, curricula)
        start = np.random.randint(0, periods)
        s = -1
        for k in range(periods):
            x = (start + k) % periods
            first = x - x % ppd
            if (
                curr_period[q, x] == 1
                and (x == first or curr_period[q, x - 1] == 0)
                and (x == first + ppd - 1 or curr_period[q, x + 1] == 0)
            ):
                s = x
                break
        if s < 0:
            continue
        l1 = -1
        for r in range(rooms):
            y = grid[r, s]
            if y >= 0 and course_in_curr[lec_course[y], q]:
                l1 = y
                break
        if l1 < 0:
            continue
        c = lec_course[l1]
        # Leaving s's day would cost a working day the course needs: stay on a day it has not.
        keep_days = course_day[c, s // ppd] == 1 and course_days[c] <= min_days[c]
        # Another lecture of q with a free neighbour period on its day.
        start = np.random.randint(0, periods)
        side = np.random.randint(0, 2)
        for k in range(periods):
            x = (start + k) % periods
            if x == s or curr_period[q, x] == 0:
                continue
            first = x - x % ppd
            if keep_days and x // ppd != s // ppd and course_day[c, x // ppd] > 0:
                continue
            for j in range(2):
                t = x - 1 if (side + j) % 2 == 0 else x + 1
                if t < first or t >= first + ppd or t == s or curr_period[q, t] > 0:
                    continue
                return l1, t
    return -1, -1


@_jit
def _course_room(problem: Any, state: Any, swapped: Any, partner: Any, from_room: Any) -> Any:
    """Choose a course-room move: every lecture of a random course (mostly one using several
    rooms) goes to room r (one it uses, or any room half of the time), swapping with the
    lecture in r at its period. Lists the lectures that change room, the lecture each swaps
    with (or -1) and the room it leaves; returns (how many, r)."""
    course_first = problem[10]
    lec_period = state[0]
    lec_room = state[1]
    grid = state[2]
    course_rooms = state[9]
    courses = course_first.shape[0] - 1
    rooms = grid.shape[0]
    c = -1
    for _ in range(4):
        x = np.random.randint(0, courses)
        if course_rooms[x] > 1 or np.random.random() < 0.1:
            c = x
            break
    if c < 0:
        return 0, 0
    first = course_first[c]
    count = course_first[c + 1] - first
    if np.random.random() < 0.5:
        r = lec_room[first + np.random.randint(0, count)]
    else:
        r = np.random.randint(0, rooms)
    n = 0
    for x in range(first, first + count):
        if lec_room[x] == r:
            continue
        swapped[n] = x
        partner[n] = grid[r, lec_period[x]]
        from_room[n] = lec_room[x]
        n += 1
    return n, r


@_jit
def _course_room_apply(
    problem: Any,
    state: Any,
    n: int,
    r: int,
    swapped: Any,
    partner: Any,
    from_room: Any,
    undo: bool,
) -> int:
    """Apply the room swaps listed by `_course_room` (or undo them, in reverse order) and
    return the exact soft change. Periods stay, so conflicts do not change."""
    lec_period = state[0]
    delta = 0
    for i in range(n):
        j = n - 1 - i if undo else i
        x = swapped[j]
        y = partner[j]
        p = lec_period[x]
        x_room = from_room[j] if undo else r
        y_room = r if undo else from_room[j]
        delta += _remove(problem, state, x)
        if y >= 0:
            delta += _remove(problem, state, y)
        delta += _insert(problem, state, x, p, x_room)
        if y >= 0:
            delta += _insert(problem, state, y, p, y_room)
    return delta


@_jit
def _propose(problem: Any, state: Any, params: Any) -> tuple[int, int, int]:
    """A plain move/swap trial: (lecture, new period, new room), or lecture -1 for none."""
    lec_course = problem[0]
    min_days = problem[7]
    ppd = problem[8]
    course_first = problem[10]
    lec_period = state[0]
    lec_room = state[1]
    grid = state[2]
    course_day = state[6]
    course_days = state[7]
    lectures = lec_course.shape[0]
    courses = min_days.shape[0]
    rooms = grid.shape[0]
    periods = grid.shape[1]
    days = periods // ppd
    l1 = -1
    p2 = -1
    if np.random.random() < params[P_DAYS]:
        # A course short of working days: a lecture on a day it meets more than once goes to a
        # day it does not meet at all.
        for _ in range(4):
            c = np.random.randint(0, courses)
            if course_days[c] >= min_days[c]:
                continue
            first = course_first[c]
            count = course_first[c + 1] - first
            offset = np.random.randint(0, count)
            for k in range(count):
                x = first + (offset + k) % count
                if course_day[c, lec_period[x] // ppd] > 1:
                    l1 = x
                    break
            if l1 < 0:
                continue
            start = np.random.randint(0, days)
            for k in range(days):
                d = (start + k) % days
                if course_day[c, d] == 0:
                    p2 = d * ppd + np.random.randint(0, ppd)
                    break
            break
        if p2 < 0:
            l1 = -1
    if l1 < 0 and params[P_ISOLATED] > 0.0 and np.random.random() < params[P_ISOLATED]:
        l1, p2 = _isolated_trial(problem, state)
        if l1 >= 0:
            state[10][6] += 1
    if l1 < 0:
        l1 = np.random.randint(0, lectures)
        p1 = lec_period[l1]
        p2 = p1 if np.random.random() < params[P_ROOM_MOVE] else np.random.randint(0, periods)
    c1 = lec_course[l1]
    if np.random.random() < params[P_STABLE_ROOM]:
        first = course_first[c1]
        r2 = lec_room[first + np.random.randint(0, course_first[c1 + 1] - first)]
    else:
        r2 = np.random.randint(0, rooms)
    return l1, p2, r2


@_jit
def anneal(
    problem: Any,
    state: Any,
    best_period: Any,
    best_room: Any,
    cost: int,
    best_cost: int,
    iterations: int,
    params: Any,
) -> tuple[int, int]:
    """Run `iterations` trials cooling geometrically from params[P_T_START] to P_T_END.

    `cost` is the soft cost of `state`; the best conflict-free state is copied into
    best_period/best_room. Returns the final soft cost and the best cost.
    """
    lec_course = problem[0]
    available = problem[5]
    lec_period = state[0]
    lec_room = state[1]
    grid = state[2]
    course_period = state[3]
    violations = state[10]
    lectures = lec_course.shape[0]
    periods = grid.shape[1]
    t_start = params[P_T_START]
    t_end = params[P_T_END]
    hard_weight = params[P_HARD_WEIGHT]
    kempe_rate = params[P_KEMPE]
    course_room_rate = params[P_COURSE_ROOM]
    ppd = problem[8]
    strict = hard_weight <= 0.0
    log_ratio = math.log(t_end / t_start)
    chain = np.empty(lectures, dtype=np.int32)
    old_p = np.empty(lectures, dtype=np.int32)
    old_r = np.empty(lectures, dtype=np.int32)
    mark = np.zeros(lectures, dtype=np.int64)
    for it in range(iterations):
        temperature = t_start * math.exp(log_ratio * it / iterations)
        if course_room_rate > 0.0 and np.random.random() < course_room_rate:
            n, r = _course_room(problem, state, chain, old_p, old_r)
            if n == 0:
                continue
            violations[4] += 1
            delta = _course_room_apply(problem, state, n, r, chain, old_p, old_r, False)
            if delta > 0 and np.random.random() >= math.exp(-delta / temperature):
                if _course_room_apply(problem, state, n, r, chain, old_p, old_r, True) != -delta:
                    violations[1] += 1
                continue
            violations[5] += 1
            cost += delta
            if cost < best_cost and violations[0] == 0:
                best_cost = cost
                best_period[:] = lec_period
                best_room[:] = lec_room
            continue
        if kempe_rate > 0.0 and np.random.random() < kempe_rate:
            l1 = np.random.randint(0, lectures)
            p1 = lec_period[l1]
            if ppd > 1 and np.random.random() < params[P_KEMPE_DAY]:
                p2 = p1 - p1 % ppd + np.random.randint(0, ppd - 1)
                if p2 >= p1:
                    p2 += 1
            else:
                p2 = np.random.randint(0, periods - 1)
                if p2 >= p1:
                    p2 += 1
            clashes = violations[0]
            n, delta = _kempe(problem, state, l1, p2, chain, old_p, old_r, mark, it + 1)
            if n == 0:
                continue
            violations[2] += 1
            energy = delta + hard_weight * (violations[0] - clashes)
            if energy > 0 and np.random.random() >= math.exp(-energy / temperature):
                if _kempe_undo(problem, state, n, chain, old_p, old_r) != -delta:
                    violations[1] += 1
                continue
            violations[3] += 1
            cost += delta
            if cost < best_cost and violations[0] == 0:
                best_cost = cost
                best_period[:] = lec_period
                best_room[:] = lec_room
            continue
        l1, p2, r2 = _propose(problem, state, params)
        p1 = lec_period[l1]
        r1 = lec_room[l1]
        c1 = lec_course[l1]
        if p2 == p1 and r2 == r1:
            continue
        l2 = grid[r2, p2]
        c2 = -1
        if l2 >= 0:
            c2 = lec_course[l2]
            if c2 == c1:
                continue
        if p2 != p1:
            if strict:
                if not _fits(problem, state, c1, p2, c2):
                    continue
                if c2 >= 0 and not _fits(problem, state, c2, p1, c1):
                    continue
            else:
                if not available[c1, p2] or course_period[c1, p2] > 0:
                    continue
                if c2 >= 0 and (not available[c2, p1] or course_period[c2, p1] > 0):
                    continue
        soft, hard = _estimate(problem, state, c1, p1, r1, c2, p2, r2, strict)
        energy = soft + hard_weight * hard
        if energy > 0 and np.random.random() >= math.exp(-energy / temperature):
            continue
        clashes = violations[0]
        delta = _remove(problem, state, l1)
        if l2 >= 0:
            delta += _remove(problem, state, l2)
        delta += _insert(problem, state, l1, p2, r2)
        if l2 >= 0:
            delta += _insert(problem, state, l2, p1, r1)
        if delta != soft or violations[0] - clashes != hard:
            violations[1] += 1  # the estimate disagrees with the exact update: a bug
        cost += delta
        if cost < best_cost and violations[0] == 0:
            best_cost = cost
            best_period[:] = lec_period
            best_room[:] = lec_room
    return cost, best_cost


@_jit
def sample_worsening(problem: Any, state: Any, params: Any, samples: int, out: Any) -> int:
    """Estimated soft changes of up to `samples` random hard-feasible plain trials that make
    the cost worse, written to `out`; returns how many. The state is left as it was."""
    lec_course = problem[0]
    lec_period = state[0]
    lec_room = state[1]
    grid = state[2]
    found = 0
    for _ in range(samples):
        l1, p2, r2 = _propose(problem, state, params)
        p1 = lec_period[l1]
        r1 = lec_room[l1]
        c1 = lec_course[l1]
        if p2 == p1 and r2 == r1:
            continue
        l2 = grid[r2, p2]
        c2 = -1
        if l2 >= 0:
            c2 = lec_course[l2]
            if c2 == c1:
                continue
        if p2 != p1:
            if not _fits(problem, state, c1, p2, c2):
                continue
            if c2 >= 0 and not _fits(problem, state, c2, p1, c1):
                continue
        soft, _ = _estimate(problem, state, c1, p1, r1, c2, p2, r2, True)
        if soft > 0:
            out[found] = soft
            found += 1
    return found
