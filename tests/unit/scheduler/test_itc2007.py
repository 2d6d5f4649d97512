"""ITC-2007 track 3: the .ctt parser, the UD2 evaluator on hand-checked toy cases, the solver."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from scheduler.itc2007 import anneal
from scheduler.itc2007.ctt import (
    CttFormatError,
    Instance,
    Placement,
    parse_instance,
    read_instance,
    read_solution,
    write_solution,
)
from scheduler.itc2007.evaluate import evaluate
from scheduler.itc2007.solver import Arrays, Profile, feasible_start, run_itc2007, solve
from tests.shared_data import ITC2007_DATA

DATA = ITC2007_DATA
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason="ITC-2007 instances not present")

# A zero-cost timetable of toy.ctt worked out by hand: every day TecCos sits next to a Geotec
# lecture (curriculum Cur2) and next to a Cur1 lecture; TecCos avoids days 2 and 3's blocked
# periods, ArcTec avoids day 4; SceCosC meets on three days, everyone keeps one room.
TOY_ZERO = (
    Placement("TecCos", "B", 0, 0),
    Placement("ArcTec", "B", 0, 1),
    Placement("Geotec", "A", 0, 1),
    Placement("SceCosC", "B", 0, 2),
    Placement("TecCos", "B", 1, 0),
    Placement("ArcTec", "B", 1, 1),
    Placement("Geotec", "A", 1, 1),
    Placement("TecCos", "B", 2, 2),
    Placement("SceCosC", "B", 2, 3),
    Placement("Geotec", "A", 2, 3),
    Placement("TecCos", "B", 3, 0),
    Placement("ArcTec", "B", 3, 1),
    Placement("Geotec", "A", 3, 1),
    Placement("TecCos", "B", 4, 0),
    Placement("SceCosC", "B", 4, 1),
    Placement("Geotec", "A", 4, 1),
)


@pytest.fixture(scope="module")
def toy() -> Instance:
    if not DATA.is_dir():
        pytest.skip("ITC-2007 instances not present")
    return read_instance(DATA / "toy.ctt")


def replaced(old: Placement, new: Placement) -> list[Placement]:
    placements = list(TOY_ZERO)
    placements[placements.index(old)] = new
    return placements


def test_parse_toy(toy: Instance) -> None:
    assert toy.name == "ToyExample"
    assert (toy.days, toy.periods_per_day, toy.periods) == (5, 4, 20)
    assert [c.name for c in toy.courses] == ["SceCosC", "ArcTec", "TecCos", "Geotec"]
    assert toy.courses[2].teacher == "Rosa"
    assert (toy.courses[2].lectures, toy.courses[2].min_working_days) == (5, 4)
    assert toy.courses[2].students == 40
    assert [(r.name, r.capacity) for r in toy.rooms] == [("A", 32), ("B", 50)]
    assert toy.curricula[1].courses == ("TecCos", "Geotec")
    assert len(toy.unavailability) == 8
    assert toy.unavailability[4].course == "ArcTec"
    assert (toy.unavailability[4].day, toy.unavailability[4].period) == (4, 0)
    assert toy.lectures == 16


@needs_data
def test_parse_comp01() -> None:
    comp01 = read_instance(DATA / "comp01.ctt")
    assert comp01.name == "Fis0506-1"
    assert (len(comp01.courses), len(comp01.rooms), len(comp01.curricula)) == (30, 6, 14)
    assert (comp01.days, comp01.periods_per_day) == (5, 6)
    assert len(comp01.unavailability) == 53
    assert comp01.lectures == 160


def test_malformed_instance_names_the_line(toy: Instance) -> None:
    text = (DATA / "toy.ctt").read_text()
    broken = text.replace("ArcTec Indaco 3 2 42", "ArcTec Indaco three 2 42")
    with pytest.raises(CttFormatError) as error:
        parse_instance(broken, source="toy.ctt")
    assert error.value.line == 11
    assert "toy.ctt:11" in str(error.value)
    assert "lectures" in str(error.value)

    with pytest.raises(CttFormatError) as error:
        parse_instance(text.replace("Cur2 2 TecCos Geotec", "Cur2 2 TecCos"), source="x")
    assert error.value.line == 21

    with pytest.raises(CttFormatError) as error:
        parse_instance(text.replace("END.", ""), source="x")
    assert "END." in str(error.value)


def test_solution_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "toy.sol"
    write_solution(path, TOY_ZERO)
    assert path.read_text().splitlines()[0] == "TecCos B 0 0"
    assert read_solution(path) == TOY_ZERO


def test_malformed_solution_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.sol"
    path.write_text("TecCos B 0 0\nGeotec A one 1\n")
    with pytest.raises(CttFormatError) as error:
        read_solution(path)
    assert error.value.line == 2


def test_hand_built_timetable_costs_nothing(toy: Instance) -> None:
    result = evaluate(toy, TOY_ZERO)
    assert (result.hard, result.cost) == (0, 0)


def test_room_capacity_and_room_stability(toy: Instance) -> None:
    # ArcTec (42 students) into A (32) and Geotec into B at day 0, period 1:
    # 10 students over, and both courses now use two rooms.
    placements = replaced(Placement("ArcTec", "B", 0, 1), Placement("ArcTec", "A", 0, 1))
    placements[placements.index(Placement("Geotec", "A", 0, 1))] = Placement("Geotec", "B", 0, 1)
    result = evaluate(toy, placements)
    assert result.hard == 0
    assert (result.room_capacity, result.room_stability) == (10, 2)
    assert result.cost == 12


def test_min_working_days_and_the_isolated_lecture_it_leaves(toy: Instance) -> None:
    # SceCosC leaves day 4 for day 0, period 3: it meets on 2 days of 3 (5) and TecCos is
    # then alone in Cur1 on day 4 (2).
    placements = replaced(Placement("SceCosC", "B", 4, 1), Placement("SceCosC", "B", 0, 3))
    result = evaluate(toy, placements)
    assert result.hard == 0
    assert (result.min_working_days, result.curriculum_compactness) == (5, 2)
    assert result.cost == 7


def test_curriculum_compactness(toy: Instance) -> None:
    # Geotec moves to day 1, period 3: TecCos (period 0) and Geotec are both isolated in Cur2.
    placements = replaced(Placement("Geotec", "A", 1, 1), Placement("Geotec", "A", 1, 3))
    result = evaluate(toy, placements)
    assert result.hard == 0
    assert result.curriculum_compactness == 4
    assert result.cost == 4


def test_lectures_missing_and_extra(toy: Instance) -> None:
    assert evaluate(toy, TOY_ZERO[1:]).lectures == 1
    extra = evaluate(toy, [*TOY_ZERO, Placement("Geotec", "A", 0, 3)])
    assert extra.lectures == 1
    assert extra.hard == 1


def test_room_occupancy(toy: Instance) -> None:
    placements = replaced(Placement("Geotec", "A", 0, 1), Placement("Geotec", "B", 0, 1))
    result = evaluate(toy, placements)
    assert (result.room_occupancy, result.conflicts) == (0 + 1, 0)
    assert result.hard == 1


def test_curriculum_conflict(toy: Instance) -> None:
    # Geotec next to TecCos in the same period: one Cur2 conflict.
    placements = replaced(Placement("Geotec", "A", 1, 1), Placement("Geotec", "A", 1, 0))
    result = evaluate(toy, placements)
    assert (result.conflicts, result.hard) == (1, 1)


def test_teacher_conflict_counts_each_pair_once(toy: Instance) -> None:
    # Give Geotec SceCosC's teacher: they already meet together at (2, 3) and (4, 1); Geotec
    # moving next to SceCosC at (0, 2) makes a third conflict.
    courses = tuple(
        dataclasses.replace(c, teacher="Ocra") if c.name == "Geotec" else c for c in toy.courses
    )
    shared_teacher = dataclasses.replace(toy, courses=courses)
    assert evaluate(shared_teacher, TOY_ZERO).conflicts == 2
    placements = replaced(Placement("Geotec", "A", 0, 1), Placement("Geotec", "A", 0, 2))
    assert evaluate(shared_teacher, placements).conflicts == 3
    # ArcTec and TecCos share Cur1; a shared teacher as well still makes one conflict.
    courses = tuple(
        dataclasses.replace(c, teacher="Rosa") if c.name == "ArcTec" else c for c in toy.courses
    )
    placements = replaced(Placement("ArcTec", "B", 1, 1), Placement("ArcTec", "A", 1, 0))
    assert evaluate(dataclasses.replace(toy, courses=courses), placements).conflicts == 1


def test_availability(toy: Instance) -> None:
    placements = replaced(Placement("TecCos", "B", 2, 2), Placement("TecCos", "B", 2, 0))
    result = evaluate(toy, placements)
    assert result.availability == 1


def test_unknown_room_is_a_hard_violation(toy: Instance) -> None:
    placements = replaced(Placement("Geotec", "A", 0, 1), Placement("Geotec", "Z", 0, 1))
    result = evaluate(toy, placements)
    assert result.unknown == ("Geotec Z 0 1",)
    assert result.hard == 2  # the unknown line, and Geotec one lecture short


def test_solve_toy_is_feasible_and_scored_like_the_evaluator(toy: Instance) -> None:
    seen: list[tuple[float, int, int]] = []
    placements, cost, hard = solve(
        toy, time_limit=2.0, seed=3, workers=2, progress=lambda *x: seen.append(x)
    )
    result = evaluate(toy, placements)
    assert hard == 0
    assert result.hard == 0
    assert result.cost == cost
    assert len(placements) == toy.lectures
    assert seen and seen[0][1] == 0


def test_solve_is_deterministic_for_a_seed_and_an_iteration_budget(toy: Instance) -> None:
    runs = [solve(toy, time_limit=60.0, seed=7, workers=1, max_iterations=20_000) for _ in range(2)]
    assert runs[0] == runs[1]
    assert evaluate(toy, runs[0][0]).cost == runs[0][1]


def test_workers_stop_as_soon_as_one_reaches_soft_cost_zero(
    toy: Instance, caplog: pytest.LogCaptureFixture
) -> None:
    # Nothing beats a soft cost of 0: the toy gets there within a few thousand iterations,
    # so neither worker should go on to spend its whole (large) iteration budget.
    budget = 20_000_000
    with caplog.at_level("INFO", logger="scheduler.itc2007.solver"):
        _placements, cost, hard = solve(
            toy, time_limit=300.0, seed=5, workers=2, max_iterations=budget
        )
    assert (cost, hard) == (0, 0)
    solved = [r for r in caplog.records if r.getMessage() == "itc2007 solved"]
    assert len(solved) == 1
    iterations = solved[0].iterations  # type: ignore[attr-defined]
    assert len(iterations) == 2
    assert all(done < budget // 10 for done in iterations), iterations


@needs_data
def test_two_workers_exchanging_midway_are_deterministic_for_an_iteration_budget() -> None:
    # The workers compare their best timetables halfway (and the second reheats from the best):
    # with an iteration budget the result still depends only on the seed.
    instance = read_instance(DATA / "comp01.ctt")
    runs = [
        solve(instance, time_limit=120.0, seed=2, workers=2, max_iterations=400_000)
        for _ in range(2)
    ]
    assert runs[0] == runs[1]
    result = evaluate(instance, runs[0][0])
    assert (result.hard, result.cost) == (0, runs[0][1])


def test_run_itc2007_writes_a_feasible_solution(tmp_path: Path, capsys) -> None:
    if not DATA.is_dir():
        pytest.skip("ITC-2007 instances not present")
    out = tmp_path / "comp01.sol"
    assert run_itc2007(DATA / "comp01.ctt", out, 3.0, 1) == 0
    instance = read_instance(DATA / "comp01.ctt")
    result = evaluate(instance, read_solution(out))
    assert result.hard == 0
    assert f"soft {result.cost}" in capsys.readouterr().out


def test_run_itc2007_malformed_exit_code(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.ctt"
    bad.write_text("Name: x\nCourses: many\n")
    assert run_itc2007(bad, tmp_path / "out.sol", 1.0, 0) == 2
    assert "bad.ctt:2" in capsys.readouterr().err


@needs_data
@pytest.mark.parametrize("hard_weight", [0.0, 4.0])
def test_annealer_estimates_match_exact_updates(hard_weight: float) -> None:
    # The annealer accepts on an estimated change and applies it exactly; any disagreement is
    # counted in violations[1]. The tracked soft cost must equal the evaluator's.
    instance = read_instance(DATA / "comp01.ctt")
    arrays = Arrays.build(instance)
    start = feasible_start(arrays, time_limit=10.0, seed=0)
    assert start is not None
    lec_period, lec_room = start
    cost = evaluate(instance, arrays.placements(lec_period, lec_room)).cost
    state = arrays.state(lec_period, lec_room)
    best_period, best_room = lec_period.copy(), lec_room.copy()
    anneal.seed(5)
    params = Profile(hard_weight=hard_weight, t_start=3.0, t_end=0.5, room_move=0.3).params(1.0)
    cost, best = anneal.anneal(
        arrays.problem(), state, best_period, best_room, cost, cost, 20_000, params
    )
    assert state[10][1] == 0
    assert state[10][3] > 0  # some Kempe chains were accepted
    current = evaluate(instance, arrays.placements(state[0], state[1]))
    assert current.cost == cost
    assert (current.conflicts > 0) == (state[10][0] > 0)
    assert evaluate(instance, arrays.placements(best_period, best_room)).cost == best


@needs_data
@pytest.mark.parametrize("hard_weight", [0.0, 4.0])
def test_kempe_chains_keep_the_timetable_feasible_and_the_cost_exact(hard_weight: float) -> None:
    # Only Kempe-chain swaps: from a conflict-free start they never make a conflict, and after
    # thousands of accepted chains the incremental cost is still the evaluator's.
    instance = read_instance(DATA / "comp01.ctt")
    arrays = Arrays.build(instance)
    start = feasible_start(arrays, time_limit=10.0, seed=1)
    assert start is not None
    lec_period, lec_room = start
    cost = evaluate(instance, arrays.placements(lec_period, lec_room)).cost
    state = arrays.state(lec_period, lec_room)
    best_period, best_room = lec_period.copy(), lec_room.copy()
    anneal.seed(11)
    params = Profile(hard_weight=hard_weight, t_start=5.0, t_end=1.0, kempe=1.0).params(1.0)
    cost, best = anneal.anneal(
        arrays.problem(), state, best_period, best_room, cost, cost, 20_000, params
    )
    violations = state[10]
    assert violations[1] == 0
    assert violations[3] > 1_000  # accepted chains
    assert violations[0] == 0
    current = evaluate(instance, arrays.placements(state[0], state[1]))
    assert current.hard == 0
    assert current.cost == cost
    best_result = evaluate(instance, arrays.placements(best_period, best_room))
    assert (best_result.hard, best_result.cost) == (0, best)


def _comp01_start(seed: int) -> tuple[Instance, Arrays, Any, Any, int]:
    instance = read_instance(DATA / "comp01.ctt")
    arrays = Arrays.build(instance)
    start = feasible_start(arrays, time_limit=10.0, seed=seed)
    assert start is not None
    lec_period, lec_room = start
    cost = evaluate(instance, arrays.placements(lec_period, lec_room)).cost
    return instance, arrays, lec_period, lec_room, cost


@needs_data
@pytest.mark.parametrize("hard_weight", [0.0, 4.0])
def test_course_room_moves_change_rooms_only_and_keep_the_cost_exact(hard_weight: float) -> None:
    # Only course-room moves (all lectures of a course into one room, swapping with the
    # lecture there): periods never change, and the cost stays the evaluator's.
    instance, arrays, lec_period, lec_room, cost = _comp01_start(seed=2)
    state = arrays.state(lec_period, lec_room)
    best_period, best_room = lec_period.copy(), lec_room.copy()
    anneal.seed(13)
    params = Profile(
        hard_weight=hard_weight, t_start=2.0, t_end=0.5, course_room=1.0, kempe=0.0
    ).params(1.0)
    cost, best = anneal.anneal(
        arrays.problem(), state, best_period, best_room, cost, cost, 5_000, params
    )
    violations = state[10]
    assert violations[1] == 0
    assert violations[5] > 100  # accepted course-room moves
    assert violations[0] == 0
    assert (state[0] == lec_period).all()
    assert (state[1] != lec_room).any()
    current = evaluate(instance, arrays.placements(state[0], state[1]))
    assert (current.hard, current.cost) == (0, cost)
    start_rooms = evaluate(instance, arrays.placements(lec_period, lec_room))
    assert current.room_stability < start_rooms.room_stability
    assert evaluate(instance, arrays.placements(best_period, best_room)).cost == best


def _same_day_neighbours(period: int, ppd: int) -> list[int]:
    first = period - period % ppd
    return [s for s in (period - 1, period + 1) if first <= s < first + ppd]


@needs_data
def test_isolated_trial_moves_an_isolated_lecture_next_to_its_curriculum() -> None:
    _, arrays, lec_period, lec_room, _ = _comp01_start(seed=0)
    state = arrays.state(lec_period, lec_room)
    problem = arrays.problem()
    ppd = arrays.instance.periods_per_day
    curr_period = state[5]
    anneal.seed(3)
    found = 0
    for _ in range(200):
        lecture, target = anneal._isolated_trial(problem, state)
        if lecture < 0:
            continue
        found += 1
        period = int(lec_period[lecture])
        curricula = [
            int(q) for q in np.nonzero(arrays.course_in_curr[arrays.lec_course[lecture]])[0]
        ]
        # In some curriculum of its course the lecture has no neighbour on its day, the
        # target is free and sits next to another lecture of that curriculum.
        assert any(
            all(curr_period[q, s] == 0 for s in _same_day_neighbours(period, ppd))
            and curr_period[q, target] == 0
            and any(
                curr_period[q, s] > 0 and s != period
                for s in _same_day_neighbours(int(target), ppd)
            )
            for q in curricula
        )
    assert found > 50


@needs_data
@pytest.mark.parametrize("hard_weight", [0.0, 4.0])
def test_isolated_trials_and_same_day_kempe_chains_keep_the_cost_exact(
    hard_weight: float,
) -> None:
    # Half the trials aimed at isolated lectures, Kempe chains only within a day: the
    # estimate always matches the exact update, and the tracked cost is the evaluator's.
    instance, arrays, lec_period, lec_room, cost = _comp01_start(seed=3)
    state = arrays.state(lec_period, lec_room)
    best_period, best_room = lec_period.copy(), lec_room.copy()
    anneal.seed(17)
    params = Profile(
        hard_weight=hard_weight, t_start=3.0, t_end=0.5, isolated=0.5, kempe=0.2, kempe_day=1.0
    ).params(1.0)
    cost, best = anneal.anneal(
        arrays.problem(), state, best_period, best_room, cost, cost, 20_000, params
    )
    violations = state[10]
    assert violations[1] == 0
    assert violations[6] > 1_000  # isolated-lecture trials proposed
    assert violations[3] > 100  # accepted same-day chains
    current = evaluate(instance, arrays.placements(state[0], state[1]))
    assert current.cost == cost
    assert (current.conflicts > 0) == (violations[0] > 0)
    best_result = evaluate(instance, arrays.placements(best_period, best_room))
    assert (best_result.hard, best_result.cost) == (0, best)


@needs_data
def test_same_day_kempe_chains_keep_every_lecture_on_its_day() -> None:
    instance, arrays, lec_period, lec_room, cost = _comp01_start(seed=4)
    state = arrays.state(lec_period, lec_room)
    anneal.seed(19)
    params = Profile(
        hard_weight=0.0, t_start=5.0, t_end=1.0, kempe=1.0, kempe_day=1.0, isolated=0.0
    ).params(1.0)
    cost, _ = anneal.anneal(
        arrays.problem(), state, lec_period.copy(), lec_room.copy(), cost, cost, 5_000, params
    )
    ppd = instance.periods_per_day
    assert state[10][3] > 100
    assert (state[0] != lec_period).any()
    assert (state[0] // ppd == lec_period // ppd).all()
    current = evaluate(instance, arrays.placements(state[0], state[1]))
    assert (current.hard, current.cost) == (0, cost)
