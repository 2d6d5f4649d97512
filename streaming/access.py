"""Who may join which synchronized lesson, and in which role (from the alliance's records)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from common.accounts.permissions import Principal
from common.alliance.models import ClassroomTerminal, Lesson, Room, SchoolClass, SyncGroup, Term
from common.errors import NotFoundError, PermissionDeniedError
from streaming.sfu.identity import ParticipantIdentity, Role

INSPECTOR_ROLES = frozenset({"bureau", "alliance_admin", "school_admin"})


def lesson_room_id(sync_group_id: int) -> str:
    return f"sync-{sync_group_id}"


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
