"""A solved timetable seen from one class, teacher, room or campus (what the exports print)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from scheduler.domain import Interval, Problem, Solution

ViewKind = Literal["class", "teacher", "room", "campus"]
DAY_LABELS = {
    "mon": "周一",
    "tue": "周二",
    "wed": "周三",
    "thu": "周四",
    "fri": "周五",
    "sat": "周六",
    "sun": "周日",
}


@dataclass(frozen=True)
class ViewEntry:
    day: str
    period: int | None  # None for research sessions, which follow no bell
    time: Interval
    campus: str
    title: str  # subject, or "集体教研 · 数学"
    class_id: str | None
    teacher: str | None
    room: str | None
    sync_note: str | None  # "同步课堂 主讲：东街 dj-4-1（dj-lb）→ 远端：后江 hj-4-3（hj-lb）"
    lesson: str | None = None
    change: str | None = None  # 调课 on a date: "调课：原9月7日周一第2节" or "代课：张伟"


def _sync_notes(problem: Problem, solution: Solution) -> dict[tuple[str, str, int], str]:
    """(lesson, day, period) -> a description naming the lead and the remote classrooms."""
    placed: dict[tuple[str, str], list[tuple[int, str]]] = {}
    for p in solution.lessons:
        placed.setdefault((p.lesson, p.day), []).append((p.period, p.room))
    notes: dict[tuple[str, str, int], str] = {}
    for group in problem.sync_groups:
        lead = problem.lessons[group.lead]
        for day in problem.days:
            for period, room in placed.get((group.lead, day), []):
                start = problem.slot(group.lead, period).start
                remotes: list[str] = []
                matched: list[tuple[str, int]] = []
                for member in group.members:
                    options = placed.get((member, day), [])
                    if not options:
                        continue
                    best = min(options, key=lambda o: abs(problem.slot(member, o[0]).start - start))
                    matched.append((member, best[0]))
                    remotes.append(
                        f"{problem.campus_of(member).name} "
                        f"{problem.lessons[member].class_id}（{best[1]}）"
                    )
                text = (
                    f"同步课堂 {group.id} 主讲：{problem.campus_of(group.lead).name} "
                    f"{lead.class_id}（{room}）→ 远端：{'、'.join(remotes)}"
                )
                notes[(group.lead, day, period)] = text
                for member, member_period in matched:
                    notes[(member, day, member_period)] = text
    return notes


def entries(problem: Problem, solution: Solution, kind: ViewKind, key: str) -> list[ViewEntry]:
    """Every lesson (and research session, for teachers) of one class/teacher/room/campus."""
    notes = _sync_notes(problem, solution)
    result: list[ViewEntry] = []
    for p in solution.lessons:
        lesson = problem.lessons[p.lesson]
        campus = problem.campus_of(p.lesson)
        wanted = {
            "class": lesson.class_id == key,
            "teacher": lesson.teacher == key,
            "room": p.room == key,
            "campus": campus.id == key,
        }[kind]
        if wanted:
            result.append(
                ViewEntry(
                    day=p.day,
                    period=p.period,
                    time=campus.interval(p.period),
                    campus=campus.name,
                    title=lesson.subject,
                    class_id=lesson.class_id,
                    teacher=problem.teachers[lesson.teacher].name,
                    room=p.room,
                    sync_note=notes.get((p.lesson, p.day, p.period)),
                    lesson=p.lesson,
                )
            )
    if kind == "teacher":
        sessions = {s.id: s for s in problem.research_sessions}
        for placed in solution.research_sessions:
            session = sessions[placed.id]
            if key in session.members:
                result.append(
                    ViewEntry(
                        day=placed.day,
                        period=None,
                        time=Interval(placed.start, placed.start + session.minutes),
                        campus="线上",
                        title=f"集体教研 · {session.subject}",
                        class_id=None,
                        teacher=None,
                        room="网络教研室",
                        sync_note=None,
                    )
                )
    order = {day: i for i, day in enumerate(problem.days)}
    result.sort(key=lambda e: (order.get(e.day, 99), e.time.start))
    return result


def title_of(problem: Problem, kind: ViewKind, key: str) -> str:
    if kind == "teacher":
        return f"{problem.teachers[key].name}老师课表"
    if kind == "class":
        school_class = problem.classes[key]
        return f"{problem.campuses[school_class.campus].name} {key} 课表"
    if kind == "room":
        room = problem.rooms[key]
        return f"{problem.campuses[room.campus].name} {key} 教室课表"
    return f"{problem.campuses[key].name} 总课表"
