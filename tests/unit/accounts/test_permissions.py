"""The policy table, judged case by case against what each role's user expects."""

from __future__ import annotations

import pytest

from common.accounts.permissions import Action, Kind, Principal, Scope, can

ALLIANCE, OTHER_ALLIANCE = 1, 2
SCHOOL, OTHER_SCHOOL = 10, 11
CLASS, OTHER_CLASS = 100, 101

bureau = Principal(account_id=1, role="bureau")
alliance_admin = Principal(account_id=2, role="alliance_admin", alliance_id=ALLIANCE)
school_admin = Principal(account_id=3, role="school_admin", alliance_id=ALLIANCE, school_id=SCHOOL)
teacher = Principal(
    account_id=4, role="teacher", alliance_id=ALLIANCE, school_id=SCHOOL, teacher_id=7
)
student = Principal(
    account_id=5,
    role="student",
    alliance_id=ALLIANCE,
    school_id=SCHOOL,
    class_id=CLASS,
    student_id=50,
)
terminal = Principal(
    account_id=6, role="terminal", alliance_id=ALLIANCE, school_id=SCHOOL, terminal_id=9
)

own_school = Scope(alliance_id=ALLIANCE, school_id=SCHOOL)
sister_school = Scope(alliance_id=ALLIANCE, school_id=OTHER_SCHOOL)
foreign_school = Scope(alliance_id=OTHER_ALLIANCE, school_id=99)
alliance_wide = Scope(alliance_id=ALLIANCE)
own_class = Scope(alliance_id=ALLIANCE, school_id=SCHOOL, class_id=CLASS)
other_class = Scope(alliance_id=ALLIANCE, school_id=SCHOOL, class_id=OTHER_CLASS)


@pytest.mark.parametrize(
    ("principal", "action", "kind", "scope", "expected"),
    [
        # the bureau sees everything and sets alliances up, but does not run schools
        (bureau, Action.READ, Kind.STUDENT, foreign_school, True),
        (bureau, Action.MANAGE, Kind.ALLIANCE, Scope(), True),
        (bureau, Action.MANAGE, Kind.CLASS, own_school, False),
        # an alliance admin runs the alliance, and nothing outside it
        (alliance_admin, Action.MANAGE, Kind.CLASS, sister_school, True),
        (alliance_admin, Action.READ, Kind.SCHOOL, foreign_school, False),
        (alliance_admin, Action.MANAGE, Kind.ALLIANCE, Scope(), False),
        # a school admin reads the alliance, manages only the own school
        (school_admin, Action.READ, Kind.CLASS, sister_school, True),
        (school_admin, Action.MANAGE, Kind.CLASS, own_school, True),
        (school_admin, Action.MANAGE, Kind.CLASS, sister_school, False),
        (school_admin, Action.READ, Kind.STUDENT, sister_school, False),
        (school_admin, Action.MANAGE, Kind.SUBJECT, alliance_wide, False),
        (school_admin, Action.READ, Kind.SUBJECT, alliance_wide, True),
        # teachers read the alliance's structure and their own pupils, change nothing
        (teacher, Action.READ, Kind.TIMETABLE, sister_school, True),
        (teacher, Action.READ, Kind.STUDENT, own_class, True),
        (teacher, Action.READ, Kind.STUDENT, sister_school, False),
        (teacher, Action.MANAGE, Kind.CLASS, own_school, False),
        # pupils see their own class and record only
        (student, Action.READ, Kind.TIMETABLE, own_class, True),
        (student, Action.READ, Kind.TIMETABLE, other_class, False),
        (student, Action.READ, Kind.CLASS, other_class, False),
        (student, Action.READ, Kind.SCHOOL, sister_school, False),
        (student, Action.READ, Kind.STUDENT, Scope(ALLIANCE, SCHOOL, CLASS, student_id=50), True),
        (student, Action.READ, Kind.STUDENT, Scope(ALLIANCE, SCHOOL, CLASS, student_id=51), False),
        # a classroom screen reads timetables, never pupils
        (terminal, Action.READ, Kind.TIMETABLE, sister_school, True),
        (terminal, Action.READ, Kind.STUDENT, own_class, False),
        (terminal, Action.READ, Kind.TERMINAL, Scope(ALLIANCE, SCHOOL, terminal_id=9), True),
        (terminal, Action.READ, Kind.TERMINAL, Scope(ALLIANCE, SCHOOL, terminal_id=8), False),
        # one's own account, whatever the role
        (teacher, Action.READ, Kind.ACCOUNT, Scope(ALLIANCE, SCHOOL, account_id=4), True),
        (teacher, Action.READ, Kind.ACCOUNT, Scope(ALLIANCE, SCHOOL, account_id=3), False),
    ],
)
def test_policy(
    principal: Principal, action: Action, kind: Kind, scope: Scope, expected: bool
) -> None:
    assert can(principal, action, kind, scope) is expected


def test_unknown_role_may_do_nothing() -> None:
    nobody = Principal(account_id=9, role="janitor", alliance_id=ALLIANCE, school_id=SCHOOL)
    assert not any(can(nobody, action, kind, own_school) for action in Action for kind in Kind)


def test_a_principal_without_alliance_never_matches_alliance_scoped_rules() -> None:
    stray = Principal(account_id=9, role="alliance_admin")
    assert not can(stray, Action.READ, Kind.SCHOOL, Scope(alliance_id=None, school_id=None))
