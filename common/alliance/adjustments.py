"""What happens on a date: the weekly timetable with the applied 调课 of that date.

The stored timetable is a weekly pattern (``TimetableEntry``: lesson, weekday, period, room).
An applied ``TimetableAdjustment`` changes single dates: an occurrence moves to another
period (maybe another date of the same week), is taught by a substitute, or is cancelled.
``dated_placements`` is the one place that combines the two; week views, the lesson-room
scheduler, the dashboard and the ICS export read dates through it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, selectinload

from common.alliance.models import (
    WEEKDAYS,
    Term,
    TimetableAdjustment,
    TimetableAdjustmentItem,
    TimetableEntry,
)

WEEKEND = frozenset({"sat", "sun"})


def timetable_weekday(term: Term, day: date) -> str | None:
    """The weekday whose timetable runs on ``day``: None outside the term, on holidays and
    weekends; a make-up day runs the weekday it follows."""
    if not term.start_date <= day <= term.end_date:
        return None
    weekday = WEEKDAYS[day.weekday()]
    for calendar_day in term.calendar_days:
        if calendar_day.day != day:
            continue
        if calendar_day.kind == "holiday":
            return None
        if calendar_day.kind == "makeup" and calendar_day.follows_weekday:
            return calendar_day.follows_weekday
    return None if weekday in WEEKEND else weekday


def week_dates(day: date) -> list[date]:
    """Monday … Sunday of the week ``day`` falls in."""
    monday = day - timedelta(days=day.weekday())
    return [monday + timedelta(days=i) for i in range(7)]


@dataclass(frozen=True)
class DatedPlacement:
    """One lesson occurrence on a date; ``weekday`` is the timetable day whose bells apply."""

    lesson_id: int
    day: date
    weekday: str
    period: int
    room_id: int | None
    moved: bool = False  # placed here by an applied adjustment
    substitute_id: int | None = None
    adjustment_id: int | None = None


def adjusted_dates(session: Session, *, term_id: int) -> set[date]:
    """Every date an applied adjustment of the term changes."""
    dates: set[date] = set()
    for old_date, new_date in session.execute(
        select(TimetableAdjustmentItem.old_date, TimetableAdjustmentItem.new_date)
        .join(TimetableAdjustment)
        .where(TimetableAdjustment.term_id == term_id, TimetableAdjustment.status == "applied")
    ):
        dates.add(old_date)
        if new_date is not None:
            dates.add(new_date)
    return dates


def applied_adjustments(
    session: Session, *, term_id: int, days: Iterable[date]
) -> list[TimetableAdjustment]:
    """Applied adjustments of the term with an item on one of ``days``, oldest first."""
    wanted = sorted(set(days))
    if not wanted:
        return []
    touching = select(TimetableAdjustmentItem.adjustment_id).where(
        or_(
            TimetableAdjustmentItem.old_date.in_(wanted),
            TimetableAdjustmentItem.new_date.in_(wanted),
        )
    )
    return list(
        session.scalars(
            select(TimetableAdjustment)
            .where(
                TimetableAdjustment.term_id == term_id,
                TimetableAdjustment.status == "applied",
                TimetableAdjustment.id.in_(touching),
            )
            .options(selectinload(TimetableAdjustment.items))
            .order_by(TimetableAdjustment.id)
        )
    )


def dated_placements(
    session: Session,
    term: Term,
    days: Iterable[date],
    *,
    adjustments: list[TimetableAdjustment] | None = None,
) -> list[DatedPlacement]:
    """Every lesson occurrence on ``days``: the weekly pattern with the applied adjustments.

    ``adjustments`` replaces the stored ones (used to judge a plan before it is saved)."""
    wanted = sorted(set(days))
    weekday_of = {d: w for d in wanted if (w := timetable_weekday(term, d)) is not None}
    by_weekday: dict[str, list[tuple[int, int, int | None]]] = {}
    if weekday_of:
        for lesson_id, weekday, period, room_id in session.execute(
            select(
                TimetableEntry.lesson_id,
                TimetableEntry.day,
                TimetableEntry.period,
                TimetableEntry.room_id,
            ).where(
                TimetableEntry.term_id == term.id,
                TimetableEntry.day.in_(set(weekday_of.values())),
            )
        ):
            by_weekday.setdefault(weekday, []).append((lesson_id, period, room_id))
    placed: dict[tuple[int, date, int], DatedPlacement] = {}
    for day, weekday in weekday_of.items():
        for lesson_id, period, room_id in by_weekday.get(weekday, []):
            placed[lesson_id, day, period] = DatedPlacement(
                lesson_id, day, weekday, period, room_id
            )
    if adjustments is None:
        adjustments = applied_adjustments(session, term_id=term.id, days=wanted)
    for adjustment in adjustments:
        # Removals first: two lessons of one adjustment may swap periods.
        for item in adjustment.items:
            if item.kind in ("move", "cancel"):
                placed.pop((item.lesson_id, item.old_date, item.old_period), None)
        for item in adjustment.items:
            if item.kind == "move" and item.new_date in weekday_of and item.new_period:
                placed[item.lesson_id, item.new_date, item.new_period] = DatedPlacement(
                    item.lesson_id,
                    item.new_date,
                    weekday_of[item.new_date],
                    item.new_period,
                    item.new_room_id,
                    moved=True,
                    adjustment_id=adjustment.id,
                )
            elif item.kind == "substitute":
                key = (item.lesson_id, item.old_date, item.old_period)
                if key in placed:
                    placed[key] = replace(
                        placed[key],
                        substitute_id=item.substitute_teacher_id,
                        adjustment_id=adjustment.id,
                    )
    return sorted(placed.values(), key=lambda p: (p.day, p.period, p.lesson_id))
