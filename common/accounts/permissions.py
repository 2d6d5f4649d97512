"""Who may read or manage what: the one place where roles meet resources.

Every resource lives at a `Scope` (its alliance, school, class, student). Each role has, per
resource kind, the widest scope level it may read and the widest it may manage. Routes ask
`authorize(...)` for single resources and `visibility(...)` to filter lists; nothing else
decides access.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from common.errors import PermissionDeniedError

Level = Literal["all", "alliance", "school", "class", "self"]


class Action(StrEnum):
    READ = "read"
    MANAGE = "manage"


class Kind(StrEnum):
    ALLIANCE = "alliance"
    SCHOOL = "school"
    CAMPUS = "campus"
    BELLS = "bells"
    TERM = "term"
    SUBJECT = "subject"
    ROOM = "room"
    TERMINAL = "terminal"
    CLASS = "class"
    TEACHER = "teacher"
    STUDENT = "student"
    TIMETABLE = "timetable"  # the week, and the sync groups that tie schools together
    LESSON = "lesson"  # 教学任务: class × subject × teacher × periods per week
    ACCOUNT = "account"
    RESEARCH = "research"  # 教研: groups, sessions, attendance
    VISIT = "visit"  # 跟班听课 and 指导 visits
    RECORDING = "recording"  # recorded lessons; pupils: only those shown to their class
    DASHBOARD = "dashboard"  # the bureau dashboard: what was planned, held, recorded, replayed
    REVIEW = "review"  # 听评课 on recordings: comments, rubric scores; never pupils


@dataclass(frozen=True)
class Principal:
    account_id: int
    role: str
    display_name: str = ""
    alliance_id: int | None = None
    school_id: int | None = None
    class_id: int | None = None
    teacher_id: int | None = None
    student_id: int | None = None
    terminal_id: int | None = None


@dataclass(frozen=True)
class Scope:
    """Where a resource lives; `None` on a level means the resource sits above it."""

    alliance_id: int | None = None
    school_id: int | None = None
    class_id: int | None = None
    student_id: int | None = None
    account_id: int | None = None
    terminal_id: int | None = None

    def is_personal_to(self, principal: Principal) -> bool:
        return any(
            mine is not None and mine == theirs
            for mine, theirs in (
                (self.account_id, principal.account_id),
                (self.student_id, principal.student_id),
                (self.terminal_id, principal.terminal_id),
            )
        )


_STRUCTURE = (
    Kind.ALLIANCE,
    Kind.SCHOOL,
    Kind.CAMPUS,
    Kind.BELLS,
    Kind.TERM,
    Kind.SUBJECT,
    Kind.ROOM,
    Kind.CLASS,
    Kind.TEACHER,
    Kind.TIMETABLE,
    Kind.LESSON,
)

_PERSONAL = frozenset({Kind.ACCOUNT, Kind.STUDENT, Kind.TERMINAL})

# role -> kind -> (read level, manage level)
_Rule = tuple[Level | None, Level | None]
POLICY: dict[str, dict[Kind, _Rule]] = {
    # The county bureau oversees every alliance and sets them up; schools run themselves.
    "bureau": {
        **{kind: ("all", None) for kind in Kind},
        Kind.ALLIANCE: ("all", "all"),
        Kind.SCHOOL: ("all", "all"),
        Kind.ACCOUNT: ("all", "all"),
    },
    "alliance_admin": {kind: ("alliance", "alliance") for kind in Kind},
    "school_admin": {
        **{kind: ("alliance", None) for kind in _STRUCTURE},
        Kind.SCHOOL: ("alliance", "school"),
        Kind.CAMPUS: ("alliance", "school"),
        Kind.BELLS: ("alliance", "school"),
        Kind.ROOM: ("alliance", "school"),
        Kind.TERMINAL: ("school", "school"),
        Kind.CLASS: ("alliance", "school"),
        Kind.TEACHER: ("alliance", "school"),
        Kind.STUDENT: ("school", "school"),
        Kind.LESSON: ("alliance", "school"),
        Kind.ACCOUNT: ("school", "school"),
        # Research is alliance-wide; a school records its own teachers' visits.
        Kind.RESEARCH: ("alliance", None),
        Kind.VISIT: ("alliance", "school"),
        # Their school's recordings and those shown to its classes (recordings/service.py).
        Kind.RECORDING: ("school", "school"),
        # Their own school's figures only (research/dashboard.py narrows the query to it).
        Kind.DASHBOARD: ("school", None),
        # 评课 of the recordings they see; they moderate those of their own school.
        Kind.REVIEW: ("alliance", "school"),
    },
    # Teachers see the alliance's structure (sync lessons cross schools), pupils of their school.
    "teacher": {
        **{kind: ("alliance", None) for kind in _STRUCTURE},
        Kind.STUDENT: ("school", None),
        Kind.ACCOUNT: ("self", None),
        # Leaders and hosts manage their own sessions: a row-level rule in research/service.py.
        Kind.RESEARCH: ("alliance", None),
        Kind.VISIT: ("alliance", None),
        # The lead teacher starts and stops their own lesson's recording (recordings/service.py).
        Kind.RECORDING: ("alliance", None),
        # Any teacher of the alliance observes and scores its recorded lessons.
        Kind.REVIEW: ("alliance", None),
    },
    "terminal": {
        **{kind: ("alliance", None) for kind in _STRUCTURE},
        Kind.TERMINAL: ("self", None),
        Kind.ACCOUNT: ("self", None),
    },
    # Pupils see their own school and class, never other pupils.
    "student": {
        Kind.ALLIANCE: ("alliance", None),
        Kind.SCHOOL: ("school", None),
        Kind.CAMPUS: ("school", None),
        Kind.BELLS: ("school", None),
        Kind.TERM: ("alliance", None),
        Kind.SUBJECT: ("alliance", None),
        Kind.ROOM: ("school", None),
        Kind.CLASS: ("class", None),
        Kind.TEACHER: ("school", None),
        Kind.TIMETABLE: ("class", None),
        Kind.LESSON: ("class", None),
        Kind.STUDENT: ("self", None),
        Kind.ACCOUNT: ("self", None),
        # Recordings of minors are never public: "class" means shown to the pupil's class.
        Kind.RECORDING: ("class", None),
    },
}

# Roles an account of each role may create or edit (no one raises anyone above themselves).
GRANTABLE_ROLES: dict[str, frozenset[str]] = {
    "bureau": frozenset({"bureau", "alliance_admin"}),
    "alliance_admin": frozenset(
        {"alliance_admin", "school_admin", "teacher", "terminal", "student"}
    ),
    "school_admin": frozenset({"teacher", "terminal", "student"}),
}


def rule(principal: Principal, kind: Kind, action: Action) -> Level | None:
    read, manage = POLICY.get(principal.role, {}).get(kind, (None, None))
    return read if action is Action.READ else manage


def _within(principal: Principal, level: Level, kind: Kind, scope: Scope, action: Action) -> bool:
    if level == "all":
        return True
    if level == "self":
        return scope.is_personal_to(principal)
    if principal.alliance_id is None or scope.alliance_id != principal.alliance_id:
        return False
    if level == "alliance":
        return True
    if scope.school_id is None:
        # Alliance-wide things (subjects, terms) are readable by every member of the alliance;
        # people and devices above school level (alliance admins) are not.
        return action is Action.READ and kind not in _PERSONAL
    if scope.school_id != principal.school_id:
        return False
    if level == "school":
        return True
    # "class": the pupil's own class; school-wide things (bells, rooms) have no class.
    return scope.class_id is None or scope.class_id == principal.class_id


def can(principal: Principal, action: Action, kind: Kind, scope: Scope) -> bool:
    level = rule(principal, kind, action)
    return level is not None and _within(principal, level, kind, scope, action)


def authorize(principal: Principal, action: Action, kind: Kind, scope: Scope) -> None:
    """Raise PermissionDeniedError unless the principal may act on a resource at this scope."""
    if not can(principal, action, kind, scope):
        verb = "查看" if action is Action.READ else "修改"
        raise PermissionDeniedError(
            f"没有权限{verb}此{KIND_LABELS[kind]}",
            detail={"role": principal.role, "kind": kind.value, "action": action.value},
        )


def visibility(principal: Principal, kind: Kind) -> Level | None:
    """The read level for list queries: callers filter rows by it (None: nothing)."""
    return rule(principal, kind, Action.READ)


KIND_LABELS: dict[Kind, str] = {
    Kind.ALLIANCE: "教联体",
    Kind.SCHOOL: "学校",
    Kind.CAMPUS: "校区",
    Kind.BELLS: "作息时间",
    Kind.TERM: "学期",
    Kind.SUBJECT: "学科",
    Kind.ROOM: "教室",
    Kind.TERMINAL: "教室终端",
    Kind.CLASS: "班级",
    Kind.TEACHER: "教师",
    Kind.STUDENT: "学生",
    Kind.TIMETABLE: "课表",
    Kind.LESSON: "教学任务",
    Kind.ACCOUNT: "账号",
    Kind.RESEARCH: "教研活动",
    Kind.VISIT: "听课指导记录",
    Kind.RECORDING: "录像",
    Kind.DASHBOARD: "数据看板",
    Kind.REVIEW: "评课记录",
}
