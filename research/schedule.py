"""期初规划: a research group's term of weekly sessions, with dates, hosts and topics.

Dates follow the 校历: holidays are skipped, and a make-up day (调休) runs the weekday it
follows, so a Wednesday group also meets on a Sunday that runs Wednesday's timetable.
Hosts come from `rotate_hosts` (fair, absences skipped, swaps applied).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

from common.alliance.models import WEEKDAYS, Term
from common.errors import ValidationFailedError
from research.rotation import Swap, rotate_hosts

SCHOOL_WEEKDAYS = WEEKDAYS[:5]


@dataclass(frozen=True)
class TermDays:
    """Which dates of a term run which weekday's timetable."""

    start: date
    end: date
    holidays: frozenset[date] = frozenset()
    makeup: Mapping[date, str] = field(default_factory=dict)

    @classmethod
    def of(cls, term: Term) -> TermDays:
        return cls(
            start=term.start_date,
            end=term.end_date,
            holidays=frozenset(d.day for d in term.calendar_days if d.kind == "holiday"),
            makeup={
                d.day: d.follows_weekday
                for d in term.calendar_days
                if d.kind == "makeup" and d.follows_weekday
            },
        )

    def contains(self, day: date) -> bool:
        return self.start <= day <= self.end

    def weekday_of(self, day: date) -> str | None:
        """The weekday whose timetable runs on `day`, or None (holiday, weekend, outside)."""
        if not self.contains(day) or day in self.holidays:
            return None
        if day in self.makeup:
            return self.makeup[day]
        weekday = WEEKDAYS[day.weekday()]
        return weekday if weekday in SCHOOL_WEEKDAYS else None

    def dates_for(self, weekday: str) -> list[date]:
        """Every date of the term that runs `weekday`'s timetable."""
        found: list[date] = []
        day = self.start
        while day <= self.end:
            if self.weekday_of(day) == weekday:
                found.append(day)
            day += timedelta(days=1)
        return found


@dataclass(frozen=True)
class PlannedSession:
    day: date
    host_id: int
    topic: str


def plan_sessions(
    *,
    days: Sequence[date],
    member_ids: Sequence[int],
    topics: Sequence[str] = (),
    absences: Mapping[date, Collection[int]] | None = None,
    swaps: Sequence[tuple[date, date]] = (),
    history: Mapping[int, int] | None = None,
    last_hosted: Mapping[int, date] | None = None,
) -> list[PlannedSession]:
    """Hosts and topics for `days` (ascending); topics go to sessions in order."""
    days = sorted(days)
    absences = absences or {}
    members = set(member_ids)
    if len(topics) > len(days):
        raise ValidationFailedError(
            f"主题有 {len(topics)} 个，但本学期只剩 {len(days)} 次可安排的教研", field="topics"
        )
    for day, away in absences.items():
        if day not in days:
            raise ValidationFailedError(f"请假日期 {day} 不是本组待安排的教研日", field="absences")
        strangers = sorted(set(away) - members)
        if strangers:
            raise ValidationFailedError(
                f"请假名单中的教师 {strangers} 不是本教研组成员", field="absences"
            )
    keys = [str(m) for m in member_ids]
    hosts = rotate_hosts(
        keys,
        days,
        absences={day: frozenset(str(t) for t in away) for day, away in absences.items()},
        history={str(k): v for k, v in (history or {}).items()},
        last_hosted={str(k): v for k, v in (last_hosted or {}).items()},
        swaps=[Swap(first, second) for first, second in swaps],
    )
    return [
        PlannedSession(
            day=assignment.session,
            host_id=int(assignment.host),
            topic=topics[i] if i < len(topics) else "",
        )
        for i, assignment in enumerate(hosts)
    ]
