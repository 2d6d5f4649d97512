"""轮流主办: fair host rotation for a research group's sessions over a term.

Each session goes to the available member who has hosted least (counting the group's
history), then to the one who hosted longest ago, then in member order. Absent members
are skipped for that session; agreed swaps exchange two sessions' hosts afterwards.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date

from common.errors import ValidationFailedError


@dataclass(frozen=True)
class Swap:
    """Two sessions exchange hosts (one cannot host that day, a colleague steps in)."""

    first: date
    second: date


@dataclass(frozen=True)
class HostAssignment:
    session: date
    host: str


def rotate_hosts(
    members: Sequence[str],
    sessions: Sequence[date],
    *,
    absences: Mapping[date, frozenset[str]] | None = None,
    history: Mapping[str, int] | None = None,
    last_hosted: Mapping[str, date] | None = None,
    swaps: Sequence[Swap] = (),
) -> list[HostAssignment]:
    """Hosts for `sessions` (in date order). Raises ValidationFailedError when impossible."""
    if not members:
        raise ValidationFailedError("教研组没有成员，无法安排主持人")
    if len(set(members)) != len(members):
        raise ValidationFailedError("教研组成员重复")
    absences = absences or {}
    counts = {member: (history or {}).get(member, 0) for member in members}
    last = dict(last_hosted or {})
    order = {member: i for i, member in enumerate(members)}
    hosts: dict[date, str] = {}
    for day in sorted(sessions):
        away = absences.get(day, frozenset())
        available = [m for m in members if m not in away]
        if not available:
            raise ValidationFailedError(f"{day} 全体成员请假，无法安排主持人")
        host = min(available, key=lambda m: (counts[m], last.get(m, date.min), order[m]))
        hosts[day] = host
        counts[host] += 1
        last[host] = day
    for swap in swaps:
        if swap.first not in hosts or swap.second not in hosts:
            raise ValidationFailedError(
                f"调换的教研日期 {swap.first} / {swap.second} 不在本学期安排中"
            )
        a, b = hosts[swap.first], hosts[swap.second]
        if b in absences.get(swap.first, frozenset()) or a in absences.get(
            swap.second, frozenset()
        ):
            raise ValidationFailedError(f"调换后主持人在 {swap.first} 或 {swap.second} 请假")
        hosts[swap.first], hosts[swap.second] = b, a
    return [HostAssignment(day, hosts[day]) for day in sorted(hosts)]
