"""演示历史 — DEMO ONLY: past lesson runs for the demo county, so its dashboard is not empty.

These rows are invented (deterministically) for the demo database, as if the lesson rooms of
the weeks before ``DEMO_HISTORY_UNTIL`` had been tracked; a real installation gets its lesson
runs only from ``research.lesson_runs`` trackers. Seeded by ``common.alliance.demo.seed_demo``.
"""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, date, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

if TYPE_CHECKING:
    from streaming.lifecycle import LessonOccurrence

from common.alliance.models import (
    Campus,
    ClassroomTerminal,
    Lesson,
    Room,
    SchoolClass,
    SyncGroup,
    Term,
)
from research.lesson_runs import (
    HELD_SHARE,
    Interval,
    LessonRun,
    LessonRunClassroom,
    covered_seconds,
    merge_intervals,
)

DEMO_HISTORY_UNTIL = date(2026, 11, 27)  # the last day with invented runs (a Friday)
SEED = 20260901


def seed_lesson_history(session: Session, *, until: date = DEMO_HISTORY_UNTIL) -> int:
    """Invent the demo terms' lesson runs up to ``until``; returns how many were written."""
    from streaming.lifecycle import lesson_occurrences, timetable_weekday

    rng = random.Random(SEED)
    terminal_of_school: dict[int, str] = {}
    for terminal_id, school_id in session.execute(
        select(ClassroomTerminal.id, Campus.school_id)
        .join(Room, Room.id == ClassroomTerminal.room_id)
        .join(Campus, Campus.id == Room.campus_id)
        .order_by(ClassroomTerminal.id)
    ).all():
        terminal_of_school.setdefault(school_id, f"terminal-{terminal_id}")
    school_of_lesson = dict(
        session.execute(
            select(Lesson.id, SchoolClass.school_id).join(
                SchoolClass, SchoolClass.id == Lesson.class_id
            )
        ).all()
    )
    schools: dict[int, tuple[int, list[int]]] = {}
    for group in session.scalars(select(SyncGroup)):
        lead = school_of_lesson[group.lead_lesson_id]
        members = sorted({school_of_lesson[m.lesson_id] for m in group.members} - {lead})
        schools[group.id] = (lead, members)
    terms = list(session.scalars(select(Term).where(Term.is_current).order_by(Term.id)))
    if not terms:
        return 0
    # Days that run the same weekdays have the same lessons: read the timetable once for each.
    seen: dict[tuple[str | None, ...], tuple[date, list[LessonOccurrence]]] = {}
    written = 0
    day = min(term.start_date for term in terms)
    while day <= until:
        runs_as = tuple(timetable_weekday(term, day) for term in terms)
        if all(weekday is None for weekday in runs_as):
            day += timedelta(days=1)
            continue
        if runs_as not in seen:
            seen[runs_as] = (day, lesson_occurrences(session, day))
        first_seen, occurrences = seen[runs_as]
        shift = day - first_seen
        for template in occurrences:
            occurrence = replace(
                template,
                day=day,
                starts_at=template.starts_at + shift,
                ends_at=template.ends_at + shift,
            )
            lead, members = schools[occurrence.sync_group_id]
            start = occurrence.starts_at.timestamp()
            slot = occurrence.ends_at.timestamp() - start
            roll = rng.random()
            live: list[Interval] = (
                [(start - 60, start + slot + 30)]
                if roll < 0.72
                else [(start, start + 0.45 * slot), (start + 0.52 * slot, start + slot)]
                if roll < 0.82
                else [(start + 0.1 * slot, start + 0.6 * slot)]
                if roll < 0.92
                else []
            )
            run = LessonRun(
                sync_group_id=occurrence.sync_group_id,
                day=occurrence.day,
                lead_period=occurrence.lead_period,
                planned_start=occurrence.starts_at.astimezone(UTC),
                planned_end=occurrence.ends_at.astimezone(UTC),
                lead_intervals=[list(span) for span in live],
                lead_live_seconds=round(covered_seconds(live, start, start + slot)),
                held=covered_seconds(live, start, start + slot) >= HELD_SHARE * slot,
            )
            present: list[tuple[str, int, list[Interval]]] = []
            if live and lead in terminal_of_school:
                present.append(("lead", lead, live))
            for member in members:
                if member in terminal_of_school and live and rng.random() < 0.9:
                    joined_until = slot if rng.random() < 0.85 else 0.5 * slot
                    present.append(("remote", member, [(start - 120, start + joined_until)]))
            run.classrooms = [
                LessonRunClassroom(
                    participant_id=terminal_of_school[school],
                    role=role,
                    school_id=school,
                    intervals=[list(span) for span in merge_intervals(spans)],
                    seconds=round(covered_seconds(spans, start, start + slot)),
                )
                for role, school, spans in present
            ]
            session.add(run)
            written += 1
        day += timedelta(days=1)
    session.flush()
    return written
