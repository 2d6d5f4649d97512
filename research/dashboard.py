"""The bureau dashboard: per school, subject and ISO week of a term, what actually happened.

Every figure is counted from records, never typed in:

- planned: synchronized-lesson occurrences from the timetable and the term calendar
  (``streaming.lifecycle.lesson_occurrences``: holidays skipped, make-up days included), up to
  ``as_of``. A lesson counts for the school of its lead class; ``received_planned`` counts it
  for each school with a member class.
- held: the occurrence's ``LessonRun.held`` (the lead classroom live for >= 80% of the slot).
- received_joined: a classroom of the member school was in the run for >= 80% of the slot.
- recorded: a ``Recording`` of the occurrence (by the run's recording id, or sync group, day
  and period) that is ``ready``.
- replayed: such a recording has a ``RecordingView`` by an account other than its teacher's.
- research: ``ResearchSession`` rows of the term by the group's subject, for every school with
  a member in the group: planned (all of them), held (status ``held``), and attendance of the
  held ones (members of the school with an ``Attendance`` row of more than zero seconds, out of
  the school's members of the group).
- quotas: ``research.quotas.quota_report`` as of ``as_of``: teachers behind per school.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import date, datetime, timedelta
from io import BytesIO
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from common.accounts.models import Account
from common.accounts.permissions import Action, Kind, Principal, Scope, authorize, visibility
from common.alliance.adjustments import adjusted_dates
from common.alliance.models import (
    Alliance,
    Lesson,
    School,
    SchoolClass,
    Subject,
    SyncGroup,
    Teacher,
    Term,
)
from common.errors import NotFoundError, PermissionDeniedError, ValidationFailedError
from recordings.models import Recording, RecordingView
from research.lesson_runs import HELD_SHARE, LessonRun, LessonRunClassroom
from research.models import Attendance, ResearchGroup, ResearchSession, research_group_members
from research.quotas import quota_report
from streaming.lifecycle import (
    LOCAL_TIMEZONE,
    LessonOccurrence,
    lesson_occurrences,
    timetable_weekday,
)

COUNTS = (
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


def iso_week(day: date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def week_start(day: date) -> date:
    return day - timedelta(days=day.weekday())


@dataclass
class Figures:
    planned: int = 0
    held: int = 0
    recorded: int = 0
    replayed: int = 0
    received_planned: int = 0
    received_joined: int = 0
    research_planned: int = 0
    research_held: int = 0
    attendance_expected: int = 0
    attendance_present: int = 0

    def add(self, other: Figures) -> None:
        for name in COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def attendance_rate(self) -> float | None:
        if not self.attendance_expected:
            return None
        return round(self.attendance_present / self.attendance_expected, 4)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "attendance_rate": self.attendance_rate}


@dataclass(frozen=True)
class QuotaWarning:
    kind: str  # sit_in / guidance
    teacher_name: str
    school_id: int
    school_name: str
    detail: str


@dataclass
class SchoolSummary:
    school_id: int
    school_name: str
    is_lead: bool
    figures: Figures = field(default_factory=Figures)
    sit_in_total: int = 0
    sit_in_behind: int = 0
    guidance_total: int = 0
    guidance_behind: int = 0


@dataclass
class Dashboard:
    alliance_id: int
    alliance_name: str
    term_id: int
    term_name: str
    start_date: date
    end_date: date
    as_of: date
    school_id: int | None
    subject_id: int | None
    weeks: list[tuple[str, date]]
    schools: list[SchoolSummary]
    subjects: dict[int, str]
    # (school id, subject id, ISO week) -> figures; only cells with something planned
    cells: dict[tuple[int, int, str], Figures]
    # research figures per week without double counting across schools
    research_by_week: dict[str, Figures]
    warnings: list[QuotaWarning]

    def week_totals(self) -> list[tuple[str, date, Figures]]:
        """The trend: per week, lessons summed over schools, research sessions counted once."""
        totals: dict[str, Figures] = {label: Figures() for label, _ in self.weeks}
        for (_, _, week), figures in self.cells.items():
            if week in totals:
                lessons = Figures(
                    planned=figures.planned,
                    held=figures.held,
                    recorded=figures.recorded,
                    replayed=figures.replayed,
                    received_planned=figures.received_planned,
                    received_joined=figures.received_joined,
                    attendance_expected=figures.attendance_expected,
                    attendance_present=figures.attendance_present,
                )
                totals[week].add(lessons)
        for week, research in self.research_by_week.items():
            if week in totals:
                totals[week].research_planned += research.research_planned
                totals[week].research_held += research.research_held
        return [(label, start, totals[label]) for label, start in self.weeks]

    def as_json(self) -> dict[str, Any]:
        school_names = {s.school_id: s.school_name for s in self.schools}
        return {
            "alliance": {"id": self.alliance_id, "name": self.alliance_name},
            "term": {
                "id": self.term_id,
                "name": self.term_name,
                "start_date": self.start_date.isoformat(),
                "end_date": self.end_date.isoformat(),
            },
            "as_of": self.as_of.isoformat(),
            "filters": {"school_id": self.school_id, "subject_id": self.subject_id},
            "weeks": [{"week": w, "starts": s.isoformat()} for w, s in self.weeks],
            "schools": [
                {
                    "school_id": s.school_id,
                    "school": s.school_name,
                    "is_lead": s.is_lead,
                    **s.figures.as_dict(),
                    "sit_in_total": s.sit_in_total,
                    "sit_in_behind": s.sit_in_behind,
                    "guidance_total": s.guidance_total,
                    "guidance_behind": s.guidance_behind,
                }
                for s in self.schools
            ],
            "rows": [
                {
                    "school_id": school_id,
                    "school": school_names.get(school_id, ""),
                    "subject_id": subject_id,
                    "subject": self.subjects.get(subject_id, ""),
                    "week": week,
                    **figures.as_dict(),
                }
                for (school_id, subject_id, week), figures in sorted(
                    self.cells.items(), key=lambda item: (item[0][2], item[0][0], item[0][1])
                )
            ],
            "trend": [
                {"week": week, "starts": start.isoformat(), **figures.as_dict()}
                for week, start, figures in self.week_totals()
            ],
            "quota_warnings": [asdict(w) for w in self.warnings],
        }


# -- permissions ------------------------------------------------------------------------------


def _term_for(session: Session, principal: Principal, term_id: int | None) -> Term:
    if term_id is not None:
        term = session.get(Term, term_id)
        if term is None:
            raise NotFoundError(f"学期 {term_id} 不存在")
        return term
    stmt = select(Term).where(Term.is_current).order_by(Term.alliance_id, Term.id)
    if principal.alliance_id is not None:
        stmt = stmt.where(Term.alliance_id == principal.alliance_id)
    term = session.scalars(stmt).first()
    if term is None:
        raise ValidationFailedError("没有当前学期，请指定 term_id", field="term_id")
    return term


def visible_terms(session: Session, principal: Principal) -> list[tuple[Term, str]]:
    """The terms whose dashboard the principal may open, with their alliance's name."""
    level = visibility(principal, Kind.DASHBOARD)
    if level is None:
        return []
    stmt = (
        select(Term, Alliance.name)
        .join(Alliance, Alliance.id == Term.alliance_id)
        .order_by(Alliance.id, Term.start_date.desc())
    )
    if level != "all":
        stmt = stmt.where(Term.alliance_id == (principal.alliance_id or -1))
    return [(term, name) for term, name in session.execute(stmt).all()]


def resolve_scope(
    session: Session, principal: Principal, *, term_id: int | None, school_id: int | None
) -> tuple[Term, int | None]:
    """The term and school the principal may see: a principal (school level) only their own
    school, whatever they asked for; 403 for anyone without a dashboard."""
    level = visibility(principal, Kind.DASHBOARD)
    if level is None:
        raise PermissionDeniedError(
            "没有权限查看数据看板", detail={"role": principal.role, "kind": "dashboard"}
        )
    term = _term_for(session, principal, term_id)
    if level == "school":
        if school_id is not None and school_id != principal.school_id:
            raise PermissionDeniedError("只能查看本校的数据看板", detail={"role": principal.role})
        school_id = principal.school_id
    authorize(
        principal,
        Action.READ,
        Kind.DASHBOARD,
        Scope(alliance_id=term.alliance_id, school_id=school_id),
    )
    if school_id is not None:
        school = session.get(School, school_id)
        if school is None or school.alliance_id != term.alliance_id:
            raise ValidationFailedError(f"学校 {school_id} 不属于本教联体", field="school_id")
    return term, school_id


def resolve_subject(session: Session, term: Term, subject: str | None) -> int | None:
    """A subject given by id or by name, within the term's alliance."""
    if subject is None or not subject.strip():
        return None
    text = subject.strip()
    stmt = select(Subject).where(Subject.alliance_id == term.alliance_id)
    stmt = (
        stmt.where(Subject.id == int(text)) if text.isdigit() else stmt.where(Subject.name == text)
    )
    found = session.scalars(stmt).first()
    if found is None:
        raise ValidationFailedError(f"学科「{text}」不属于本教联体", field="subject")
    return found.id


# -- the figures ------------------------------------------------------------------------------


def _days(first: date, last: date) -> Iterator[date]:
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)


def term_occurrences(
    session: Session, term: Term, first: date, last: date
) -> Iterator[LessonOccurrence]:
    """The synchronized lessons of ``first`` … ``last`` (``lesson_occurrences`` day by day).

    Two days that run the same weekday's timetable have the same lessons at the same bells,
    so the timetable is read once per weekday and its lessons moved to each day; a day that
    an applied 调课 changes (or that lends its weekday's template) is read on its own.
    """
    adjusted = adjusted_dates(session, term_id=term.id)
    read: dict[str, tuple[date, list[LessonOccurrence]]] = {}
    for day in _days(first, last):
        weekday = timetable_weekday(term, day)
        if weekday is None:
            continue
        if day in adjusted:
            yield from lesson_occurrences(session, day)
            continue
        if weekday not in read:
            read[weekday] = (day, lesson_occurrences(session, day))
        for template in read[weekday][1]:
            yield replace(
                template,
                day=day,
                starts_at=datetime.combine(day, template.starts_at.timetz()),
                ends_at=datetime.combine(day, template.ends_at.timetz()),
            )


@dataclass(frozen=True)
class _GroupInfo:
    subject_id: int
    lead_school_id: int
    member_school_ids: frozenset[int]


def _groups(session: Session, term: Term) -> dict[int, _GroupInfo]:
    school_of_lesson = dict(
        session.execute(
            select(Lesson.id, SchoolClass.school_id)
            .join(SchoolClass, SchoolClass.id == Lesson.class_id)
            .where(Lesson.term_id == term.id)
        ).all()
    )
    subject_of_lesson = dict(
        session.execute(select(Lesson.id, Lesson.subject_id).where(Lesson.term_id == term.id)).all()
    )
    groups: dict[int, _GroupInfo] = {}
    for group in session.scalars(select(SyncGroup).where(SyncGroup.term_id == term.id)):
        lead_school = school_of_lesson[group.lead_lesson_id]
        groups[group.id] = _GroupInfo(
            subject_id=subject_of_lesson[group.lead_lesson_id],
            lead_school_id=lead_school,
            member_school_ids=frozenset(
                school_of_lesson[m.lesson_id]
                for m in group.members
                if school_of_lesson[m.lesson_id] != lead_school
            ),
        )
    return groups


def build_dashboard(
    session: Session,
    principal: Principal,
    *,
    term_id: int | None = None,
    school_id: int | None = None,
    subject: str | None = None,
    as_of: date | None = None,
) -> Dashboard:
    """The dashboard of a term as the principal may see it (403 for teachers and pupils)."""
    term, school_id = resolve_scope(session, principal, term_id=term_id, school_id=school_id)
    subject_id = resolve_subject(session, term, subject)
    as_of = as_of or datetime.now(LOCAL_TIMEZONE).date()
    alliance = session.get_one(Alliance, term.alliance_id)
    schools = list(
        session.scalars(select(School).where(School.alliance_id == alliance.id).order_by(School.id))
    )
    subjects = dict(
        session.execute(
            select(Subject.id, Subject.name)
            .where(Subject.alliance_id == alliance.id)
            .order_by(Subject.id)
        ).all()
    )
    last_day = min(term.end_date, as_of)
    weeks: list[tuple[str, date]] = []
    for day in _days(term.start_date, last_day):
        if not weeks or weeks[-1][0] != iso_week(day):
            weeks.append((iso_week(day), week_start(day)))

    def wanted(school: int, subject_of: int) -> bool:
        return (school_id is None or school == school_id) and (
            subject_id is None or subject_of == subject_id
        )

    cells: dict[tuple[int, int, str], Figures] = defaultdict(Figures)
    _lesson_figures(session, term, last_day, cells, wanted)
    research_by_week = _research_figures(session, term, last_day, cells, wanted)

    summaries = {
        school.id: SchoolSummary(school.id, school.name, school.id == alliance.lead_school_id)
        for school in schools
        if school_id is None or school.id == school_id
    }
    for (school, _, _), figures in cells.items():
        if school in summaries:
            summaries[school].figures.add(figures)
    warnings: list[QuotaWarning] = []
    report = quota_report(
        session, principal, term_id=term.id, as_of=last_day + timedelta(days=1), school_id=school_id
    )
    for sit_in in report.sit_in:
        if (summary := summaries.get(sit_in.school_id)) is not None:
            summary.sit_in_total += 1
            if sit_in.behind:
                summary.sit_in_behind += 1
                missing = [m.month for m in sit_in.months if m.behind]
                warnings.append(
                    QuotaWarning(
                        "sit_in",
                        sit_in.teacher_name,
                        sit_in.school_id,
                        sit_in.school_name,
                        f"跟班听课未达标：{'、'.join(missing)}",
                    )
                )
    for guidance in report.guidance:
        if (summary := summaries.get(guidance.school_id)) is not None:
            summary.guidance_total += 1
            if guidance.behind:
                summary.guidance_behind += 1
                warnings.append(
                    QuotaWarning(
                        "guidance",
                        guidance.teacher_name,
                        guidance.school_id,
                        guidance.school_name,
                        f"已指导 {guidance.visits} 次，应达 {guidance.due} 次"
                        f"（学期要求 {guidance.required} 次）",
                    )
                )
    return Dashboard(
        alliance_id=alliance.id,
        alliance_name=alliance.name,
        term_id=term.id,
        term_name=term.name,
        start_date=term.start_date,
        end_date=term.end_date,
        as_of=as_of,
        school_id=school_id,
        subject_id=subject_id,
        weeks=weeks,
        schools=list(summaries.values()),
        subjects=subjects,
        cells=dict(cells),
        research_by_week=research_by_week,
        warnings=warnings,
    )


def _lesson_figures(
    session: Session,
    term: Term,
    last_day: date,
    cells: dict[tuple[int, int, str], Figures],
    wanted: Callable[[int, int], bool],
) -> None:
    groups = _groups(session, term)
    if not groups:
        return
    runs = {
        (run.sync_group_id, run.day, run.lead_period): run
        for run in session.scalars(
            select(LessonRun).where(
                LessonRun.sync_group_id.in_(list(groups)),
                LessonRun.day >= term.start_date,
                LessonRun.day <= last_day,
            )
        )
    }
    joined: dict[int, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for run_id, school, seconds in session.execute(
        select(LessonRunClassroom.run_id, LessonRunClassroom.school_id, LessonRunClassroom.seconds)
        .join(LessonRun, LessonRun.id == LessonRunClassroom.run_id)
        .where(
            LessonRun.sync_group_id.in_(list(groups)),
            LessonRunClassroom.role == "remote",
            LessonRunClassroom.school_id.is_not(None),
        )
    ).all():
        if school is not None:
            # Two screens of one school in the room (terminal and teacher): the longer counts.
            joined[run_id][school] = max(joined[run_id][school], seconds)
    recordings = list(
        session.scalars(
            select(Recording).where(
                Recording.sync_group_id.in_(list(groups)),
                Recording.date >= term.start_date,
                Recording.date <= last_day,
            )
        )
    )
    teacher_of = {r.id: r.teacher_id for r in recordings}
    replayed_ids = {
        recording_id
        for recording_id, viewer_teacher in session.execute(
            select(RecordingView.recording_id, Account.teacher_id)
            .join(Account, Account.id == RecordingView.account_id)
            .where(RecordingView.recording_id.in_(list(teacher_of)))
        ).all()
        if viewer_teacher is None or viewer_teacher != teacher_of[recording_id]
    }
    by_id = {r.id: r for r in recordings}
    by_key: dict[tuple[int, date, int | None], list[Recording]] = defaultdict(list)
    for r in recordings:
        if r.sync_group_id is not None:
            by_key[(r.sync_group_id, r.date, r.period)].append(r)

    for occurrence in term_occurrences(session, term, term.start_date, last_day):
        day = occurrence.day
        info = groups.get(occurrence.sync_group_id)
        if info is None:
            continue  # another alliance's lesson
        week = iso_week(day)
        run = runs.get((occurrence.sync_group_id, day, occurrence.lead_period))
        matched = [
            *by_key.get((occurrence.sync_group_id, day, occurrence.lead_period), []),
            *by_key.get((occurrence.sync_group_id, day, None), []),
        ]
        if run is not None and run.recording_id in by_id:
            matched.append(by_id[run.recording_id])
        if wanted(info.lead_school_id, info.subject_id):
            cell = cells[(info.lead_school_id, info.subject_id, week)]
            cell.planned += 1
            cell.held += int(run is not None and run.held)
            cell.recorded += int(any(r.status == "ready" for r in matched))
            cell.replayed += int(any(r.id in replayed_ids for r in matched))
        slot = (occurrence.ends_at - occurrence.starts_at).total_seconds()
        for school in info.member_school_ids:
            if not wanted(school, info.subject_id):
                continue
            cell = cells[(school, info.subject_id, week)]
            cell.received_planned += 1
            seconds = joined[run.id].get(school, 0) if run is not None else 0
            cell.received_joined += int(seconds >= HELD_SHARE * slot)


def _research_figures(
    session: Session,
    term: Term,
    last_day: date,
    cells: dict[tuple[int, int, str], Figures],
    wanted: Callable[[int, int], bool],
) -> dict[str, Figures]:
    groups = {
        g.id: g
        for g in session.scalars(
            select(ResearchGroup).where(ResearchGroup.alliance_id == term.alliance_id)
        )
    }
    members: dict[int, dict[int, set[int]]] = defaultdict(lambda: defaultdict(set))
    for group_id, teacher_id, school in session.execute(
        select(
            research_group_members.c.research_group_id,
            research_group_members.c.teacher_id,
            Teacher.school_id,
        )
        .join(Teacher, Teacher.id == research_group_members.c.teacher_id)
        .where(research_group_members.c.research_group_id.in_(list(groups)))
    ).all():
        members[group_id][school].add(teacher_id)
    sessions = list(
        session.scalars(
            select(ResearchSession).where(
                ResearchSession.term_id == term.id,
                ResearchSession.group_id.in_(list(groups)),
                ResearchSession.day <= last_day,
            )
        )
    )
    present: dict[int, set[int]] = defaultdict(set)
    for session_id, teacher_id in session.execute(
        select(Attendance.session_id, Attendance.teacher_id).where(
            Attendance.session_id.in_([r.id for r in sessions]), Attendance.seconds > 0
        )
    ).all():
        present[session_id].add(teacher_id)
    by_week: dict[str, Figures] = defaultdict(Figures)
    for row in sessions:
        group = groups[row.group_id]
        week = iso_week(row.day)
        held = row.status == "held"
        counted = False
        for school, teachers in members[group.id].items():
            if not wanted(school, group.subject_id):
                continue
            counted = True
            cell = cells[(school, group.subject_id, week)]
            cell.research_planned += 1
            cell.research_held += int(held)
            if held:
                cell.attendance_expected += len(teachers)
                cell.attendance_present += len(teachers & present[row.id])
        if counted:
            by_week[week].research_planned += 1
            by_week[week].research_held += int(held)
    return dict(by_week)


# -- export -----------------------------------------------------------------------------------

SUMMARY_HEADERS = (
    ("school", "学校"),
    ("planned", "同步课计划节数"),
    ("held", "开出节数"),
    ("recorded", "录制节数"),
    ("replayed", "被回看节数"),
    ("received_planned", "接收计划节数"),
    ("received_joined", "接收到课节数"),
    ("research_planned", "教研计划场次"),
    ("research_held", "教研开展场次"),
    ("attendance_rate", "教研出勤率"),
    ("sit_in_behind", "跟班听课未达标人数"),
    ("guidance_behind", "指导未达标项数"),
)
ROW_HEADERS = (
    ("week", "周次"),
    ("school", "学校"),
    ("subject", "学科"),
    ("planned", "同步课计划节数"),
    ("held", "开出节数"),
    ("recorded", "录制节数"),
    ("replayed", "被回看节数"),
    ("received_planned", "接收计划节数"),
    ("received_joined", "接收到课节数"),
    ("research_planned", "教研计划场次"),
    ("research_held", "教研开展场次"),
    ("attendance_expected", "应出勤人次"),
    ("attendance_present", "实出勤人次"),
)
TREND_HEADERS = (
    ("week", "周次"),
    ("starts", "周一日期"),
    ("planned", "同步课计划节数"),
    ("held", "开出节数"),
    ("recorded", "录制节数"),
    ("replayed", "被回看节数"),
    ("research_planned", "教研计划场次"),
    ("research_held", "教研开展场次"),
    ("attendance_rate", "教研出勤率"),
)
WARNING_HEADERS = (
    ("school_name", "学校"),
    ("teacher_name", "教师"),
    ("kind", "类别"),
    ("detail", "情况"),
)
WARNING_KINDS = {"sit_in": "跟班听课", "guidance": "指导"}


def dashboard_xlsx(dashboard: Dashboard) -> bytes:
    """The dashboard as a workbook: one sheet per table, Chinese headers."""
    from openpyxl import Workbook

    data = dashboard.as_json()
    workbook = Workbook()
    sheets: list[tuple[str, tuple[tuple[str, str], ...], list[dict[str, Any]]]] = [
        ("学校汇总", SUMMARY_HEADERS, data["schools"]),
        ("分周明细", ROW_HEADERS, data["rows"]),
        ("学期趋势", TREND_HEADERS, data["trend"]),
        (
            "配额预警",
            WARNING_HEADERS,
            [
                {**w, "kind": WARNING_KINDS.get(w["kind"], w["kind"])}
                for w in data["quota_warnings"]
            ],
        ),
    ]
    first = True
    for title, headers, rows in sheets:
        sheet = workbook.active if first else workbook.create_sheet()
        assert sheet is not None
        first = False
        sheet.title = title
        sheet.append([label for _, label in headers])
        for row in rows:
            sheet.append([_cell(row.get(key)) for key, _ in headers])
    buffer = BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def _cell(value: Any) -> Any:
    return "" if value is None else value
