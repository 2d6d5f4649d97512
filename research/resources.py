"""Research groups, sessions and visits in the admin API's resource registry.

Importing this module registers them, so `web/routers/admin.py` serves list/get/create/
patch/delete for each with the same permission checks as every other resource.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

import common.alliance.resources  # noqa: F401  (parents: alliances, teachers)
from common.accounts.permissions import Kind, Principal
from common.alliance.models import School
from common.alliance.service import Resource, ScopePath, register
from research import schemas as s
from research import service
from research.models import ResearchGroup, ResearchSession, Visit


def group_out(group: ResearchGroup) -> s.ResearchGroupOut:
    return s.ResearchGroupOut(
        id=group.id,
        alliance_id=group.alliance_id,
        subject_id=group.subject_id,
        name=group.name,
        grade_band=group.grade_band,
        leader_id=group.leader_id,
        member_ids=[m.id for m in group.members],
        weekday=group.weekday,
        start_time=group.start_time,
        minutes=group.minutes,
        online_room=group.online_room,
    )


def _create_group(session: Session, _p: Principal, payload: s.ResearchGroupCreate) -> ResearchGroup:
    return service.create_group(session, payload=payload)


def _update_group(session: Session, row: ResearchGroup, payload: s.ResearchGroupUpdate) -> None:
    service.update_group(session, group=row, payload=payload)


RESEARCH_GROUPS = register(
    Resource(
        kind=Kind.RESEARCH,
        model=ResearchGroup,
        path="research-groups",
        create_schema=s.ResearchGroupCreate,
        update_schema=s.ResearchGroupUpdate,
        out_schema=s.ResearchGroupOut,
        scope_path=lambda: ScopePath(select(ResearchGroup), alliance=ResearchGroup.alliance_id),
        create=_create_group,
        update=_update_group,
        parent=("alliances", "alliance_id"),
        filters={
            "alliance_id": lambda: ResearchGroup.alliance_id,
            "subject_id": lambda: ResearchGroup.subject_id,
            "leader_id": lambda: ResearchGroup.leader_id,
        },
        to_out=group_out,
    )
)


def _create_session(
    session: Session, _p: Principal, payload: s.ResearchSessionCreate
) -> ResearchSession:
    return service.create_session(session, payload=payload)


def _update_session(
    session: Session, row: ResearchSession, payload: s.ResearchSessionUpdate
) -> None:
    service.update_session(session, row=row, payload=payload)


RESEARCH_SESSIONS = register(
    Resource(
        kind=Kind.RESEARCH,
        model=ResearchSession,
        path="research-sessions",
        create_schema=s.ResearchSessionCreate,
        update_schema=s.ResearchSessionUpdate,
        out_schema=s.ResearchSessionOut,
        scope_path=lambda: ScopePath(
            select(ResearchSession).join(
                ResearchGroup, ResearchSession.group_id == ResearchGroup.id
            ),
            alliance=ResearchGroup.alliance_id,
        ),
        create=_create_session,
        update=_update_session,
        parent=("research-groups", "group_id"),
        filters={
            "group_id": lambda: ResearchSession.group_id,
            "term_id": lambda: ResearchSession.term_id,
            "host_id": lambda: ResearchSession.host_id,
            "status": lambda: ResearchSession.status,
        },
    )
)


def _create_visit(session: Session, _p: Principal, payload: s.VisitCreate) -> Visit:
    return service.create_visit(session, payload=payload)


def _update_visit(session: Session, row: Visit, payload: s.VisitUpdate) -> None:
    service.update_visit(session, visit=row, payload=payload)


# A visit belongs to the visiting teacher's school: that school records and answers for it.
VISITS = register(
    Resource(
        kind=Kind.VISIT,
        model=Visit,
        path="visits",
        create_schema=s.VisitCreate,
        update_schema=s.VisitUpdate,
        out_schema=s.VisitOut,
        scope_path=lambda: ScopePath(
            select(Visit).join(School, Visit.from_school_id == School.id),
            alliance=School.alliance_id,
            school=School.id,
        ),
        create=_create_visit,
        update=_update_visit,
        parent=("teachers", "teacher_id"),
        filters={
            "teacher_id": lambda: Visit.teacher_id,
            "kind": lambda: Visit.kind,
            "from_school_id": lambda: Visit.from_school_id,
            "to_school_id": lambda: Visit.to_school_id,
        },
    )
)
