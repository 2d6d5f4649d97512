"""A whole term of the demo's 王村口 alliance, fast-forwarded: the dashboard equals what happened.

For each school day the timetable's synchronized lessons are driven through the lesson-run
tracker with a deterministic pseudo-random pattern (held fully, held with a gap, cut short
below 80%, never started; remote classrooms in, partly in or absent), some are recorded (ready
or still processing) and replayed (by the teacher, who does not count, or by others); every
research session gets a varying attendance through the meeting tracker. The simulation keeps
its own counters of what it did, and the dashboard must show exactly those per school,
subject and ISO week.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select

from common.accounts.models import Account
from common.accounts.permissions import Principal
from common.alliance.demo import RURAL_NAME
from common.alliance.models import (
    Alliance,
    Campus,
    ClassroomTerminal,
    Lesson,
    Room,
    School,
    SchoolClass,
    SyncGroup,
    Teacher,
    Term,
)
from recordings.models import Recording, RecordingView
from research.dashboard import build_dashboard
from research.lesson_runs import LessonRun, attach_attendance_tracker, attach_run_tracker
from research.models import Attendance, ResearchGroup, ResearchSession, Visit
from research.schemas import VisitCreate
from research.service import create_visit
from streaming.lifecycle import LOCAL_TIMEZONE, lesson_occurrences
from streaming.sfu.events import EventHub, RoomEvent, RoomEventKind
from tests.conftest import DemoDatabase

FIELDS = (
    "planned",
    "held",
    "recorded",
    "replayed",
    "received_planned",
    "received_joined",
    "research_planned",
    "research_held",
    "attendance_expected",
    "attendance_present",
)


class Clock:
    def __init__(self) -> None:
        self.moment = datetime(2026, 9, 1, 7, 0, tzinfo=LOCAL_TIMEZONE)

    def now(self) -> datetime:
        return self.moment


@dataclass
class FakeRoom:
    events: EventHub = field(default_factory=EventHub)

    def emit(self, kind: RoomEventKind, participant: str | None, **detail: Any) -> None:
        self.events.emit(RoomEvent(kind, "sim", participant, detail))


@dataclass(frozen=True)
class GroupFacts:
    subject_id: int
    lead_school: int
    lead_teacher: int
    members: tuple[int, ...]  # member schools other than the lead's


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def week_of(day: date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


async def test_a_simulated_term_shows_exactly_what_happened(sqlite_db: DemoDatabase) -> None:
    sessions = sqlite_db.sessions
    counters: dict[tuple[int, int, str], Counter[str]] = defaultdict(Counter)
    patterns: Counter[str] = Counter()
    clock = Clock()

    with sessions() as session:
        alliance = session.scalars(select(Alliance).where(Alliance.name == RURAL_NAME)).one()
        term = session.scalars(
            select(Term).where(Term.alliance_id == alliance.id, Term.is_current)
        ).one()
        term_id, first_day, last_day = term.id, term.start_date, term.end_date
        # A fresh term: the seed's two held research sessions start over.
        term_sessions = select(ResearchSession.id).where(ResearchSession.term_id == term_id)
        session.execute(delete(Attendance).where(Attendance.session_id.in_(term_sessions)))
        for row in session.scalars(
            select(ResearchSession).where(ResearchSession.term_id == term_id)
        ):
            row.status = "planned"
        # ... and without the demo's invented lesson history (research/demo_history.py).
        session.execute(
            delete(LessonRun).where(
                LessonRun.sync_group_id.in_(
                    select(SyncGroup.id).where(SyncGroup.term_id == term_id)
                )
            )
        )
        school_of_lesson = dict(
            session.execute(
                select(Lesson.id, SchoolClass.school_id).join(
                    SchoolClass, SchoolClass.id == Lesson.class_id
                )
            ).all()
        )
        groups: dict[int, GroupFacts] = {}
        for group in session.scalars(select(SyncGroup).where(SyncGroup.term_id == term_id)):
            lead = session.get_one(Lesson, group.lead_lesson_id)
            lead_school = school_of_lesson[lead.id]
            groups[group.id] = GroupFacts(
                lead.subject_id,
                lead_school,
                lead.teacher_id,
                tuple(
                    sorted({school_of_lesson[m.lesson_id] for m in group.members} - {lead_school})
                ),
            )
        terminal_of_school: dict[int, str] = {}
        for terminal_id, school_id in session.execute(
            select(ClassroomTerminal.id, Campus.school_id)
            .join(Room, Room.id == ClassroomTerminal.room_id)
            .join(Campus, Campus.id == Room.campus_id)
            .order_by(ClassroomTerminal.id)
        ).all():
            terminal_of_school.setdefault(school_id, f"terminal-{terminal_id}")
        # Every lead teacher can watch their own recordings; the bureau watches others'.
        teacher_account: dict[int, int] = {}
        for facts in groups.values():
            account = session.scalars(
                select(Account).where(Account.teacher_id == facts.lead_teacher)
            ).first()
            if account is None:
                teacher = session.get_one(Teacher, facts.lead_teacher)
                account = Account(
                    username=f"sim-teacher-{teacher.id}",
                    display_name=teacher.name,
                    role="teacher",
                    alliance_id=alliance.id,
                    school_id=teacher.school_id,
                    teacher_id=teacher.id,
                )
                session.add(account)
                session.flush()
            teacher_account[facts.lead_teacher] = account.id
        viewer = session.scalars(select(Account.id).where(Account.username == "bureau")).one()
        session.commit()

    # -- the lessons, day by day --------------------------------------------------------------
    day = first_day
    while day <= last_day:
        with sessions() as session:
            occurrences = [o for o in lesson_occurrences(session, day) if o.sync_group_id in groups]
        for occurrence in occurrences:
            facts = groups[occurrence.sync_group_id]
            rng = random.Random(f"{occurrence.sync_group_id}/{day}/{occurrence.lead_period}")
            slot = (occurrence.ends_at - occurrence.starts_at).total_seconds()
            week = week_of(day)
            lead_cell = counters[(facts.lead_school, facts.subject_id, week)]
            lead_cell["planned"] += 1
            pattern = rng.choice(("full", "full", "gap", "short", "never"))
            patterns[pattern] += 1
            live: list[tuple[float, float]] = {
                "full": [(-120.0, slot + 60)],
                "gap": [(0.0, 0.4 * slot), (0.5 * slot, slot)],  # 90%: held
                "short": [(0.0, 0.6 * slot)],  # 60%: not held
                "never": [],
            }[pattern]
            lead_cell["held"] += int(pattern in ("full", "gap"))

            recording_id = None
            if live and rng.random() < 0.6:
                status = "ready" if rng.random() < 0.8 else "processing"
                with sessions() as session:
                    recording = Recording(
                        alliance_id=alliance.id,
                        school_id=facts.lead_school,
                        sync_group_id=occurrence.sync_group_id,
                        subject_id=facts.subject_id,
                        teacher_id=facts.lead_teacher,
                        date=day,
                        period=occurrence.lead_period,
                        title=f"sim {occurrence.code} {day}",
                        status=status,
                    )
                    session.add(recording)
                    session.flush()
                    recording_id = recording.id
                    replay = rng.choice(("none", "teacher", "other", "both"))
                    if status == "ready":
                        patterns[f"replay-{replay}"] += 1
                        if replay in ("teacher", "both"):
                            session.add(
                                RecordingView(
                                    account_id=teacher_account[facts.lead_teacher],
                                    recording_id=recording.id,
                                )
                            )
                        if replay in ("other", "both"):
                            session.add(RecordingView(account_id=viewer, recording_id=recording.id))
                            lead_cell["replayed"] += 1
                        lead_cell["recorded"] += 1
                    session.commit()

            remote: dict[int, list[tuple[float, float]]] = {}
            for school in facts.members:
                cell = counters[(school, facts.subject_id, week)]
                cell["received_planned"] += 1
                presence = rng.choice(("in", "in", "part", "absent"))
                patterns[f"remote-{presence}"] += 1
                if presence == "in":
                    remote[school] = [(-60.0, 0.3 * slot), (0.3 * slot - 5, slot + 30)]
                    cell["received_joined"] += 1
                elif presence == "part":
                    remote[school] = [(0.0, 0.5 * slot)]

            room = FakeRoom()
            clock.moment = occurrence.starts_at - timedelta(minutes=5)
            tracker = attach_run_tracker(
                room,
                occurrence,
                sessions,
                clock,
                recording_id=recording_id,
                checkpoint_seconds=3600,
            )
            timeline: list[tuple[float, int, RoomEventKind, str, dict[str, Any]]] = []
            lead_id = terminal_of_school[facts.lead_school]
            for start, end in live:
                timeline.append((start, 0, "participant_joined", lead_id, {"role": "lead"}))
                timeline.append((start, 1, "publisher_joined", lead_id, {"source": "camera"}))
                timeline.append((end, 0, "publisher_left", lead_id, {"source": "camera"}))
                timeline.append((end, 1, "participant_left", lead_id, {"role": "lead"}))
            for school, spans in remote.items():
                pid = terminal_of_school[school]
                for start, end in spans:
                    timeline.append((start, 2, "participant_joined", pid, {"role": "remote"}))
                    timeline.append((end, -1, "participant_left", pid, {"role": "remote"}))
            for offset, _, kind, pid, detail in sorted(timeline, key=lambda t: (t[0], t[1])):
                clock.moment = occurrence.starts_at + timedelta(seconds=offset)
                room.emit(kind, pid, **detail)
            clock.moment = occurrence.ends_at + timedelta(minutes=5)
            if live:
                room.emit("lesson_ended", None)
            await tracker.stop()
        day += timedelta(days=1)

    # -- the research meetings ----------------------------------------------------------------
    with sessions() as session:
        research = [
            (row.id, row.day, row.start_time, row.minutes, row.group_id)
            for row in session.scalars(
                select(ResearchSession)
                .where(ResearchSession.term_id == term_id)
                .order_by(ResearchSession.day)
            )
        ]
        members_by_group: dict[int, list[tuple[int, int]]] = {}
        subject_of_group: dict[int, int] = {}
        for research_group in session.scalars(
            select(ResearchGroup).where(ResearchGroup.alliance_id == alliance.id)
        ):
            members_by_group[research_group.id] = [
                (m.id, m.school_id) for m in research_group.members
            ]
            subject_of_group[research_group.id] = research_group.subject_id
    for research_id, meeting_day, start_time, minutes, group_id in research:
        rng = random.Random(f"research/{research_id}")
        members = members_by_group[group_id]
        week = week_of(meeting_day)
        turnout = rng.choice(("none", "some", "all"))
        patterns[f"research-{turnout}"] += 1
        attendees = {
            "none": [],
            "some": rng.sample(members, rng.randint(1, max(1, len(members) - 1))),
            "all": list(members),
        }[turnout]
        for school in {s for _, s in members}:
            cell = counters[(school, subject_of_group[group_id], week)]
            cell["research_planned"] += 1
            if attendees:
                cell["research_held"] += 1
                cell["attendance_expected"] += sum(1 for _, s in members if s == school)
                cell["attendance_present"] += sum(1 for _, s in attendees if s == school)
        begin = datetime.combine(meeting_day, start_time, LOCAL_TIMEZONE)
        room = FakeRoom()
        clock.moment = begin
        meeting = attach_attendance_tracker(room, research_id, sessions, clock)
        for index, (teacher_id, _) in enumerate(attendees):
            clock.moment = begin + timedelta(minutes=index % 7)
            room.emit("participant_joined", f"teacher-{teacher_id}", role="meeting")
        for index, (teacher_id, _) in enumerate(attendees):
            # Some leave early, one in three drops out and comes back.
            clock.moment = begin + timedelta(minutes=minutes - 3 * (index % 4))
            room.emit("participant_left", f"teacher-{teacher_id}", role="meeting")
            if index % 3 == 0:
                clock.moment += timedelta(minutes=1)
                room.emit("participant_joined", f"teacher-{teacher_id}", role="meeting")
                clock.moment += timedelta(minutes=1)
                room.emit("participant_left", f"teacher-{teacher_id}", role="meeting")
        await meeting.stop()

    # -- 跟班听课 and 指导 visits ------------------------------------------------------------------
    # Member-school teachers sit in at the lead school on some months; the lead school's
    # subject leaders and group leaders guide each member school 0–3 times.
    behind: Counter[tuple[str, int]] = Counter()
    with sessions() as session:
        lead_school_id = alliance.lead_school_id
        assert lead_school_id is not None
        session.execute(
            delete(Visit).where(
                Visit.to_school_id.in_(select(School.id).where(School.alliance_id == alliance.id))
            )
        )
        months = sorted({(d.year, d.month) for d in _days(first_day, last_day)})
        member_schools = sorted({school for facts in groups.values() for school in facts.members})
        for teacher in session.scalars(
            select(Teacher).where(Teacher.school_id.in_(member_schools)).order_by(Teacher.id)
        ):
            rng = random.Random(f"sit-in/{teacher.id}")
            missed = False
            for year, month in months:
                if rng.random() < 0.8:
                    visit_day = max(first_day, date(year, month, 1)) + timedelta(days=2)
                    create_visit(
                        session,
                        payload=VisitCreate(
                            kind="sit_in",
                            teacher_id=teacher.id,
                            to_school_id=lead_school_id,
                            day=min(visit_day, last_day),
                        ),
                    )
                else:
                    missed = True
            patterns["sit-in-behind" if missed else "sit-in-met"] += 1
            behind[("sit_in", teacher.school_id)] += int(missed)
        group_leaders = select(ResearchGroup.leader_id).where(
            ResearchGroup.alliance_id == alliance.id
        )
        for leader in session.scalars(
            select(Teacher)
            .where(
                Teacher.school_id == lead_school_id,
                Teacher.is_subject_leader | Teacher.id.in_(group_leaders),
            )
            .order_by(Teacher.id)
        ):
            for school in member_schools:
                visits = random.Random(f"guidance/{leader.id}/{school}").randint(0, 3)
                for n in range(visits):
                    create_visit(
                        session,
                        payload=VisitCreate(
                            kind="guidance",
                            teacher_id=leader.id,
                            to_school_id=school,
                            day=first_day + timedelta(days=20 + 30 * n),
                        ),
                    )
                patterns["guidance-behind" if visits < 2 else "guidance-met"] += 1
                behind[("guidance", school)] += int(visits < 2)
        session.commit()

    # Every branch of the simulation ran at least once.
    for expected in (
        "full",
        "gap",
        "short",
        "never",
        "replay-none",
        "replay-teacher",
        "replay-other",
        "replay-both",
        "remote-in",
        "remote-part",
        "remote-absent",
        "research-none",
        "research-some",
        "research-all",
        "sit-in-met",
        "sit-in-behind",
        "guidance-met",
        "guidance-behind",
    ):
        assert patterns[expected] > 0, (expected, patterns)

    # -- the dashboard ------------------------------------------------------------------------
    with sessions() as session:
        dashboard = build_dashboard(
            session, Principal(account_id=viewer, role="bureau"), term_id=term_id, as_of=last_day
        ).as_json()
    shown = {
        (row["school_id"], row["subject_id"], row["week"]): {name: row[name] for name in FIELDS}
        for row in dashboard["rows"]
    }
    simulated = {key: {name: counter[name] for name in FIELDS} for key, counter in counters.items()}
    assert shown.keys() == simulated.keys()
    wrong = [(key, shown[key], simulated[key]) for key in shown if shown[key] != simulated[key]]
    assert not wrong, wrong[:5]

    per_school: dict[int, Counter[str]] = defaultdict(Counter)
    for (school, _, _), counter in counters.items():
        per_school[school].update(counter)
    for school in dashboard["schools"]:
        for name in FIELDS:
            assert school[name] == per_school[school["school_id"]][name], (school, name)
    # The term is over: every month's 跟班听课 and both 指导 visits are due.
    for school in dashboard["schools"]:
        assert school["sit_in_behind"] == behind[("sit_in", school["school_id"])], school
        assert school["guidance_behind"] == behind[("guidance", school["school_id"])], school
    assert len(dashboard["quota_warnings"]) == sum(behind.values())
    trend = {row["week"]: row for row in dashboard["trend"]}
    for name in ("planned", "held", "recorded", "replayed"):
        by_week: Counter[str] = Counter()
        for (_, _, week), counter in counters.items():
            by_week[week] += counter[name]
        assert {w: r[name] for w, r in trend.items() if r[name]} == {
            w: n for w, n in by_week.items() if n
        }
    total_planned = sum(c["planned"] for c in counters.values())
    total_held = sum(c["held"] for c in counters.values())
    assert 0 < total_held < total_planned
