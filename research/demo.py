"""Demo research life for the seeded county: groups, a planned term, held sessions, visits.

Runs after `common.alliance.demo.seed_demo`, in the same transaction (flush only).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, time, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from common.alliance.demo import GROUP_NAME, RURAL_NAME
from common.alliance.models import Alliance, School, Subject, Teacher, Term, teacher_subjects
from research import review, service
from research import schemas as s

logger = logging.getLogger(__name__)

TOPICS: dict[str, tuple[str, ...]] = {
    "英语": (
        "新课标下的小学英语单元整体教学设计",
        "专递课堂中远端学生的口语互动",
        "绘本阅读课例研讨",
        "作业设计与分层评价",
    ),
    "音乐": ("专递音乐课的节奏训练", "合唱教学课例研讨"),
    "数学": ("同步课堂“图形的运动”课例研讨", "计算教学中的错例分析", "单元统一监测命题"),
}


@dataclass(frozen=True)
class GroupSpec:
    alliance: str
    subject: str
    name: str
    grade_band: str
    weekday: s.SchoolWeekday
    start: time


GROUPS = (
    GroupSpec(RURAL_NAME, "英语", "王村口联盟英语教研组", "三至六年级", "wed", time(15, 30)),
    GroupSpec(RURAL_NAME, "音乐", "王村口联盟音乐教研组", "一至六年级", "thu", time(15, 30)),
    GroupSpec(GROUP_NAME, "数学", "实验集团数学教研组", "一至六年级", "tue", time(15, 40)),
)


@dataclass(frozen=True)
class ResearchDemoSummary:
    groups: int
    sessions: int
    held: int
    visits: int


def _teachers_of(session: Session, alliance: Alliance, subject: Subject) -> list[Teacher]:
    return list(
        session.scalars(
            select(Teacher)
            .join(teacher_subjects, teacher_subjects.c.teacher_id == Teacher.id)
            .join(School, Teacher.school_id == School.id)
            .where(School.alliance_id == alliance.id, teacher_subjects.c.subject_id == subject.id)
            .order_by(Teacher.id)
        )
    )


def seed_research(session: Session) -> ResearchDemoSummary:
    """Research groups with a planned term, two held sessions, and a few visits."""
    alliances = {a.name: a for a in session.scalars(select(Alliance))}
    groups = []
    sessions = 0
    for spec in GROUPS:
        alliance = alliances[spec.alliance]
        subject = session.scalars(
            select(Subject).where(Subject.alliance_id == alliance.id, Subject.name == spec.subject)
        ).one()
        teachers = _teachers_of(session, alliance, subject)
        leader = next(
            (t for t in teachers if t.is_subject_leader),
            next(t for t in teachers if t.school_id == alliance.lead_school_id),
        )
        group = service.create_group(
            session,
            payload=s.ResearchGroupCreate(
                alliance_id=alliance.id,
                subject_id=subject.id,
                name=spec.name,
                grade_band=spec.grade_band,
                leader_id=leader.id,
                member_ids=[t.id for t in teachers],
                weekday=spec.weekday,
                start_time=spec.start,
                minutes=60,
            ),
        )
        session.flush()
        term = session.scalars(
            select(Term).where(Term.alliance_id == alliance.id, Term.is_current)
        ).one()
        plan = service.plan_term(session, group=group, term_id=term.id, topics=TOPICS[spec.subject])
        sessions += len(plan.planned)
        groups.append((group, plan))

    # The English group has met twice: attendance taken from who joined, minutes written.
    english, plan = groups[0]
    held = 0
    for row in plan.planned[:2]:
        begin = service.starts_at(row)
        for i, member in enumerate(english.members):
            late = timedelta(minutes=2 * i)
            service.record_attendance(
                session, row.id, member.id, begin + late, begin + timedelta(minutes=row.minutes)
            )
        row.minutes_text = f"{row.topic}：主持人说课，成员评议，形成改进意见三条。"
        held += 1

    rural = alliances[RURAL_NAME]
    lead = rural.lead_school_id
    english_teachers = [m for m in english.members if m.school_id != lead]
    by_school: dict[int, Teacher] = {}
    for teacher in english_teachers:
        by_school.setdefault(teacher.school_id, teacher)
    visitors = sorted(by_school.values(), key=lambda t: t.school_id)
    visits = [
        s.VisitCreate(
            kind="sit_in",
            teacher_id=visitors[0].id,
            to_school_id=lead or 0,
            day=date(2026, 9, 17),
            subject_id=english.subject_id,
            mode="on_site",
            note="跟班听四(1)班英语课",
        ),
        s.VisitCreate(
            kind="sit_in",
            teacher_id=visitors[-1].id,
            to_school_id=lead or 0,
            day=date(2026, 9, 24),
            subject_id=english.subject_id,
            mode="online",
            note="线上跟班听课",
        ),
        s.VisitCreate(
            kind="guidance",
            teacher_id=english.leader_id or 0,
            to_school_id=visitors[0].school_id,
            day=date(2026, 10, 15),
            subject_id=english.subject_id,
            mode="on_site",
            note="指导英语教研：专递课堂辅助教师的课堂组织",
        ),
    ]
    for visit in visits:
        service.create_visit(session, payload=visit)
    # 听评课: each alliance starts with the default rubric (教学目标 … 教学效果).
    review.seed_default_rubrics(session)
    session.flush()
    summary = ResearchDemoSummary(
        groups=len(groups), sessions=sessions, held=held, visits=len(visits)
    )
    logger.info("demo research seeded", extra={"groups": summary.groups, "held": summary.held})
    return summary
