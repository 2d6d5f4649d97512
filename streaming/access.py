"""Who may join which synchronized lesson or online research meeting, and in which role (from
the alliance's records)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from common.accounts.permissions import Principal
from common.alliance.models import (
    ClassroomTerminal,
    Lesson,
    Room,
    SchoolClass,
    Subject,
    SyncGroup,
    Term,
)
from common.errors import ConflictError, NotFoundError, PermissionDeniedError
from research import service as research
from research.models import ResearchGroup, ResearchSession
from streaming.sfu.identity import ParticipantIdentity, Role

INSPECTOR_ROLES = frozenset({"bureau", "alliance_admin", "school_admin"})


def lesson_room_id(sync_group_id: int) -> str:
    return f"sync-{sync_group_id}"


def sync_group_of_room(room_id: str) -> int | None:
    """The sync group a lesson room belongs to (None for other rooms)."""
    prefix, _, number = room_id.partition("-")
    return int(number) if prefix == "sync" and number.isdigit() else None


def _campus_of(session: Session, lesson: Lesson) -> int:
    return session.get_one(SchoolClass, lesson.class_id).campus_id


def lesson_identity(
    session: Session, principal: Principal, sync_group_id: int, *, display_name: str
) -> ParticipantIdentity:
    """The identity to join a sync group's live lesson with, or a 403/404 error.

    The lead classroom (its terminal, or the lead teacher) publishes to everyone; member
    classrooms (their terminals, or the assisting teachers) are remote; principals and the
    bureau look in as invisible inspectors. Pupils watch through their classroom's screen.
    """
    group = session.get(SyncGroup, sync_group_id)
    if group is None:
        raise NotFoundError(f"同步课堂 {sync_group_id} 不存在")
    alliance_id = session.get_one(Term, group.term_id).alliance_id
    if principal.role != "bureau" and principal.alliance_id != alliance_id:
        raise PermissionDeniedError("这节同步课堂不属于你的教联体")
    lead = session.get_one(Lesson, group.lead_lesson_id)
    members = [session.get_one(Lesson, m.lesson_id) for m in group.members]
    role: Role | None = None
    campus = ""
    participant_id = f"account-{principal.account_id}"
    if principal.role == "terminal" and principal.terminal_id is not None:
        terminal = session.get_one(ClassroomTerminal, principal.terminal_id)
        room = session.get_one(Room, terminal.room_id)
        participant_id = f"terminal-{terminal.id}"
        campus = str(room.campus_id)
        if _campus_of(session, lead) == room.campus_id:
            role = "lead"
        elif any(_campus_of(session, m) == room.campus_id for m in members):
            role = "remote"
    elif principal.role == "teacher" and principal.teacher_id is not None:
        participant_id = f"teacher-{principal.teacher_id}"
        if lead.teacher_id == principal.teacher_id:
            role = "lead"
        elif any(m.teacher_id == principal.teacher_id for m in members):
            role = "remote"
    elif principal.role in INSPECTOR_ROLES:
        if principal.role == "school_admin":
            schools = {session.get_one(SchoolClass, x.class_id).school_id for x in [lead, *members]}
            if principal.school_id not in schools:
                # A principal looks in on lessons their own school takes part in.
                raise PermissionDeniedError("只能巡视本校参与的同步课堂")
        role = "inspector"
    if role is None:
        raise PermissionDeniedError("你不是这节同步课堂的主讲、远端或巡课人员")
    return ParticipantIdentity(
        participant_id=participant_id,
        display_name=display_name,
        role=role,
        room_id=lesson_room_id(group.id),
        room_kind="lesson",
        campus=campus,
    )


# A research meeting's room opens this long before its start for members (the host, the
# leader and the alliance admin: earlier, to set up) and stays joinable this long after it.
MEETING_OPENS_BEFORE = timedelta(minutes=15)
MEETING_HOST_OPENS_BEFORE = timedelta(minutes=60)
MEETING_CLOSES_AFTER = timedelta(minutes=30)
MEETING_INSPECTOR_ROLES = frozenset({"bureau", "school_admin"})


def meeting_room_id(research_session_id: int) -> str:
    return f"research-{research_session_id}"


def meeting_listing(session: Session, research_session_id: int) -> dict[str, object]:
    """What the 巡课 list shows of a live meeting: its group, subject, host and topic."""
    row = session.get_one(ResearchSession, research_session_id)
    group = session.get_one(ResearchGroup, row.group_id)
    subject = session.get(Subject, group.subject_id)
    return {
        "research_session_id": row.id,
        "group": group.name,
        "subject": subject.name if subject is not None else "",
        "host": row.host.name if row.host is not None else None,
        "topic": row.topic,
    }


def research_session_of_room(room_id: str) -> int | None:
    """The research session a meeting room belongs to (None for other rooms)."""
    prefix, _, number = room_id.partition("-")
    return int(number) if prefix == "research" and number.isdigit() else None


def meeting_identity(
    session: Session,
    principal: Principal,
    research_session_id: int,
    *,
    display_name: str | None = None,
    now: datetime | None = None,
) -> ParticipantIdentity:
    """The identity to join a research session's online meeting with, or a 403/404/409 error.

    The group's members and leader take part (everyone publishes); the session's host, the
    leader and the alliance admin also get the host controls; principals and the bureau look
    in as invisible inspectors. The room is open from ``MEETING_OPENS_BEFORE`` the start
    (hosts: ``MEETING_HOST_OPENS_BEFORE``) to ``MEETING_CLOSES_AFTER`` the end.
    """
    row = session.get(ResearchSession, research_session_id)
    if row is None:
        raise NotFoundError(f"教研活动 {research_session_id} 不存在")
    group = session.get_one(ResearchGroup, row.group_id)
    if principal.role in ("student", "terminal"):
        raise PermissionDeniedError("线上教研只面向教师和管理人员")
    if principal.role != "bureau" and principal.alliance_id != group.alliance_id:
        raise PermissionDeniedError("这次教研不属于你的教联体")
    teacher_id = principal.teacher_id
    member = teacher_id is not None and (
        teacher_id == group.leader_id
        or teacher_id == row.host_id
        or any(m.id == teacher_id for m in group.members)
    )
    host = research.may_run_session(principal, group, row)
    role: Role
    if member or principal.role == "alliance_admin":
        role = "meeting"
    elif principal.role in MEETING_INSPECTOR_ROLES:
        role, host = "inspector", False
    else:
        raise PermissionDeniedError("你不是这个教研组的成员")
    _check_meeting_open(row, host=host, now=now or datetime.now(research.TIMEZONE))
    participant_id = f"teacher-{teacher_id}" if teacher_id is not None else None
    return ParticipantIdentity(
        participant_id=participant_id or f"account-{principal.account_id}",
        display_name=display_name or principal.display_name,
        role=role,
        room_id=meeting_room_id(row.id),
        room_kind="meeting",
        host=host,
    )


def _check_meeting_open(row: ResearchSession, *, host: bool, now: datetime) -> None:
    if row.status == "cancelled":
        raise ConflictError("本次教研已取消")
    starts = research.starts_at(row)
    ends = starts + timedelta(minutes=row.minutes)
    opens = starts - (MEETING_HOST_OPENS_BEFORE if host else MEETING_OPENS_BEFORE)
    if now < opens:
        raise ConflictError(
            f"本次教研 {starts:%m月%d日 %H:%M} 开始，"
            f"开始前 {int((starts - opens).total_seconds() // 60)} 分钟起可以进入"
        )
    if now > ends + MEETING_CLOSES_AFTER:
        raise ConflictError(f"本次教研已于 {ends:%m月%d日 %H:%M} 结束")
