from __future__ import annotations

from collections import Counter
from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.errors import ValidationFailedError
from research.rotation import Swap, rotate_hosts

MONDAYS = [date(2026, 9, 7) + timedelta(weeks=i) for i in range(18)]


@given(st.integers(min_value=1, max_value=9), st.integers(min_value=1, max_value=18))
@settings(max_examples=60, deadline=None)
def test_without_absences_hosts_differ_by_at_most_one(members_count: int, weeks: int) -> None:
    members = [f"t{i}" for i in range(members_count)]
    hosted = Counter(a.host for a in rotate_hosts(members, MONDAYS[:weeks]))
    counts = [hosted.get(m, 0) for m in members]
    assert max(counts) - min(counts) <= 1
    assert sum(counts) == weeks


def test_absent_members_are_skipped_and_catch_up_later() -> None:
    members = ["王丽娟", "雷晓芬", "蓝美玲"]
    absences = {MONDAYS[0]: frozenset({"王丽娟"}), MONDAYS[1]: frozenset({"王丽娟", "雷晓芬"})}
    plan = rotate_hosts(members, MONDAYS[:6], absences=absences)
    assert plan[0].host != "王丽娟" and plan[1].host == "蓝美玲"
    assert Counter(a.host for a in plan) == Counter({"王丽娟": 2, "雷晓芬": 2, "蓝美玲": 2})


def test_history_from_earlier_terms_counts() -> None:
    plan = rotate_hosts(["a", "b", "c"], MONDAYS[:2], history={"a": 3, "b": 3, "c": 1})
    assert [p.host for p in plan] == ["c", "c"]


def test_a_swap_exchanges_two_sessions_and_keeps_the_counts() -> None:
    members = ["a", "b", "c"]
    base = rotate_hosts(members, MONDAYS[:3])
    swapped = rotate_hosts(members, MONDAYS[:3], swaps=[Swap(MONDAYS[0], MONDAYS[2])])
    assert swapped[0].host == base[2].host and swapped[2].host == base[0].host
    assert Counter(a.host for a in swapped) == Counter(a.host for a in base)


def test_a_swap_onto_an_absence_is_refused() -> None:
    with pytest.raises(ValidationFailedError, match="请假"):
        rotate_hosts(
            ["a", "b"],
            MONDAYS[:2],
            absences={MONDAYS[1]: frozenset({"a"})},
            swaps=[Swap(MONDAYS[0], MONDAYS[1])],
        )


def test_impossible_rotations_say_why() -> None:
    with pytest.raises(ValidationFailedError, match="没有成员"):
        rotate_hosts([], MONDAYS[:1])
    with pytest.raises(ValidationFailedError, match="全体成员请假"):
        rotate_hosts(["a"], MONDAYS[:1], absences={MONDAYS[0]: frozenset({"a"})})
