"""Quotas of the alliance policy, checked from recorded visits.

- 跟班听课: every member-school teacher sits in at the lead school at least one day a month.
- 指导: every lead-school subject leader (学科带头人, or a research group's leader) guides
  each member school at least twice a term.

A month's quota is due once the month (within the term) is over; the term's guidance is
half due at the term's midpoint and fully due at its end. `behind` means: less done than due.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from common.accounts.permissions import Action, Kind, Principal, Scope, authorize
from common.alliance.models import Alliance, School, Teacher, Term
from common.errors import NotFoundError, ValidationFailedError
from research import schemas as s
from research.models import ResearchGroup, Visit

SIT_IN_DAYS_PER_MONTH = 1
GUIDANCE_VISITS_PER_TERM = 2


@dataclass(frozen=True)
class Month:
    label: str  # YYYY-MM
    first: date
    last: date  # clamped to the term


def term_months(term: Term) -> list[Month]:
    months: list[Month] = []
    first = term.start_date
    while first <= term.end_date:
        following = (first.replace(day=1) + timedelta(days=32)).replace(day=1)
        last = min(following - timedelta(days=1), term.end_date)
        months.append(Month(first.strftime("%Y-%m"), first, last))
        first = following
    return months


def guidance_due(term: Term, as_of: date) -> int:
    if as_of > term.end_date:
        return GUIDANCE_VISITS_PER_TERM
    midpoint = term.start_date + (term.end_date - term.start_date) / 2
    return GUIDANCE_VISITS_PER_TERM // 2 if as_of > midpoint else 0


def _term_for(session: Session, principal: Principal, term_id: int | None) -> Term:
    if term_id is None:
        if principal.alliance_id is None:
            raise ValidationFailedError("请指定学期 term_id", field="term_id")
        term = session.scalar(
            select(Term).where(Term.alliance_id == principal.alliance_id, Term.is_current)
        )
        if term is None:
            raise ValidationFailedError("本教联体没有当前学期，请指定 term_id", field="term_id")
        return term
    found = session.get(Term, term_id)
    if found is None:
        raise NotFoundError(f"学期 {term_id} 不存在")
    return found


def _sees_sit_in(principal: Principal, teacher: Teacher) -> bool:
    if principal.role in ("bureau", "alliance_admin"):
        return True
    if principal.role == "school_admin":
        return teacher.school_id == principal.school_id
    return principal.teacher_id == teacher.id


def _sees_guidance(principal: Principal, leader: Teacher, school_id: int) -> bool:
    if principal.role in ("bureau", "alliance_admin"):
        return True
    if principal.role == "school_admin":
        return principal.school_id in (school_id, leader.school_id)
    return principal.teacher_id == leader.id


def quota_report(
    session: Session,
    principal: Principal,
    *,
    term_id: int | None,
    as_of: date,
    school_id: int | None = None,
) -> s.QuotaReport:
    """Sit-in and guidance quotas of a term, only the rows the principal may see."""
    term = _term_for(session, principal, term_id)
    authorize(principal, Action.READ, Kind.VISIT, Scope(alliance_id=term.alliance_id))
    alliance = session.get_one(Alliance, term.alliance_id)
    schools = {
        school.id: school
        for school in session.scalars(select(School).where(School.alliance_id == alliance.id))
    }
    if school_id is not None and school_id not in schools:
        raise ValidationFailedError(f"学校 {school_id} 不属于本教联体", field="school_id")
    lead = alliance.lead_school_id
    members = [sid for sid in schools if sid != lead]
    sit_in_days: dict[tuple[int, str], set[date]] = defaultdict(set)
    guidance_days: dict[tuple[int, int], set[date]] = defaultdict(set)
    visits = session.scalars(
        select(Visit).where(
            Visit.to_school_id.in_(list(schools)),
            Visit.day >= term.start_date,
            Visit.day <= term.end_date,
        )
    )
    for visit in visits:
        if visit.kind == "sit_in" and visit.to_school_id == lead:
            sit_in_days[(visit.teacher_id, visit.day.strftime("%Y-%m"))].add(visit.day)
        elif visit.kind == "guidance" and visit.from_school_id == lead:
            guidance_days[(visit.teacher_id, visit.to_school_id)].add(visit.day)

    months = term_months(term)
    sit_in: list[s.SitInQuota] = []
    if lead is not None:
        teachers = session.scalars(
            select(Teacher).where(Teacher.school_id.in_(members)).order_by(Teacher.id)
        )
        for teacher in teachers:
            if school_id is not None and teacher.school_id != school_id:
                continue
            if not _sees_sit_in(principal, teacher):
                continue
            rows = []
            for month in months:
                done = len(sit_in_days.get((teacher.id, month.label), ()))
                due = SIT_IN_DAYS_PER_MONTH if month.last < as_of else 0
                rows.append(
                    s.MonthQuota(
                        month=month.label,
                        days=done,
                        required=SIT_IN_DAYS_PER_MONTH,
                        due=due,
                        met=done >= SIT_IN_DAYS_PER_MONTH,
                        behind=done < due,
                    )
                )
            sit_in.append(
                s.SitInQuota(
                    teacher_id=teacher.id,
                    teacher_name=teacher.name,
                    school_id=teacher.school_id,
                    school_name=schools[teacher.school_id].name,
                    months=rows,
                    met=all(r.met for r in rows),
                    behind=any(r.behind for r in rows),
                )
            )

    guidance: list[s.GuidanceQuota] = []
    if lead is not None:
        group_leaders = select(ResearchGroup.leader_id).where(
            ResearchGroup.alliance_id == alliance.id, ResearchGroup.leader_id.is_not(None)
        )
        leaders = session.scalars(
            select(Teacher)
            .where(
                Teacher.school_id == lead,
                or_(Teacher.is_subject_leader, Teacher.id.in_(group_leaders)),
            )
            .order_by(Teacher.id)
        )
        due = guidance_due(term, as_of)
        for leader in leaders:
            for member in members:
                if school_id is not None and school_id not in (member, leader.school_id):
                    continue
                if not _sees_guidance(principal, leader, member):
                    continue
                done = len(guidance_days.get((leader.id, member), ()))
                guidance.append(
                    s.GuidanceQuota(
                        teacher_id=leader.id,
                        teacher_name=leader.name,
                        school_id=member,
                        school_name=schools[member].name,
                        visits=done,
                        required=GUIDANCE_VISITS_PER_TERM,
                        due=due,
                        met=done >= GUIDANCE_VISITS_PER_TERM,
                        behind=done < due,
                    )
                )
    return s.QuotaReport(
        term_id=term.id,
        alliance_id=alliance.id,
        as_of=as_of,
        sit_in=sit_in,
        guidance=guidance,
        behind_sit_in=sum(1 for q in sit_in if q.behind),
        behind_guidance=sum(1 for q in guidance if q.behind),
    )
