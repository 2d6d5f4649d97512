"""tongke-timetable/1: read and write problems and solutions exactly as the spec says."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from scheduler.domain import (
    Campus,
    Fixed,
    Interval,
    Lesson,
    Placement,
    Problem,
    ResearchPlacement,
    ResearchSession,
    Room,
    SchoolClass,
    Solution,
    SyncGroup,
    Teacher,
    Unavailability,
    default_max_per_day,
    hhmm,
    minutes,
)

PROBLEM_FORMAT = "tongke-timetable/1"
SOLUTION_FORMAT = "tongke-timetable-solution/1"
OPTIONAL_KEYS = (
    "travel_minutes",
    "sync_groups",
    "research_sessions",
    "fixed",
    "research_window",
    "sync_tolerance_minutes",
)


def _read(source: dict[str, Any] | str | Path) -> dict[str, Any]:
    if isinstance(source, dict):
        return source
    text = Path(source).read_text(encoding="utf-8") if isinstance(source, Path) else source
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("the document must be a JSON object")
    return data


def _interval(raw: dict[str, Any]) -> Interval:
    return Interval(minutes(raw["start"]), minutes(raw["end"]))


def load_problem(source: dict[str, Any] | str | Path) -> Problem:
    """Parse a problem document (dict, JSON text or path). Assumes it is valid."""
    data = _read(source)
    days = tuple(data["days"])
    campuses = {
        c["id"]: Campus(c["id"], c.get("name", c["id"]), tuple(_interval(b) for b in c["bell"]))
        for c in data["campuses"]
    }
    travel: dict[tuple[str, str], int] = {}
    for pair in data.get("travel_minutes", []):
        travel[(pair["from"], pair["to"])] = int(pair["minutes"])
        travel[(pair["to"], pair["from"])] = int(pair["minutes"])
    rooms = {
        r["id"]: Room(r["id"], r["campus"], int(r["capacity"]), frozenset(r.get("features", [])))
        for r in data["rooms"]
    }
    teachers = {
        t["id"]: Teacher(
            t["id"],
            t.get("name", t["id"]),
            t.get("max_lessons_per_day"),
            tuple(Unavailability(u["day"], _interval(u)) for u in t.get("unavailable", [])),
        )
        for t in data["teachers"]
    }
    classes = {
        c["id"]: SchoolClass(c["id"], c["campus"], int(c["grade"]), int(c["size"]), c["home_room"])
        for c in data["classes"]
    }
    lessons = {}
    for raw in data["lessons"]:
        per_week = int(raw["per_week"])
        lessons[raw["id"]] = Lesson(
            id=raw["id"],
            class_id=raw["class"],
            subject=raw["subject"],
            teacher=raw["teacher"],
            per_week=per_week,
            max_per_day=int(raw.get("max_per_day") or default_max_per_day(per_week, len(days))),
            room_features=frozenset(raw.get("room_features", [])),
            prefer_morning=bool(raw.get("prefer_morning", False)),
            explicit=frozenset(
                key for key in ("max_per_day", "room_features", "prefer_morning") if key in raw
            ),
        )
    bells = [interval for campus in campuses.values() for interval in campus.bell]
    window = (
        _interval(data["research_window"])
        if "research_window" in data
        else Interval(min(b.start for b in bells), max(b.end for b in bells))
    )
    return Problem(
        name=data.get("name", ""),
        days=days,
        sync_tolerance=int(data.get("sync_tolerance_minutes", 5)),
        research_window=window,
        campuses=campuses,
        travel=travel,
        rooms=rooms,
        teachers=teachers,
        classes=classes,
        lessons=lessons,
        sync_groups=tuple(
            SyncGroup(g["id"], g["lead"], tuple(g["members"])) for g in data.get("sync_groups", [])
        ),
        research_sessions=tuple(
            ResearchSession(r["id"], r["subject"], tuple(r["members"]), int(r["minutes"]))
            for r in data.get("research_sessions", [])
        ),
        fixed=tuple(Fixed(f["lesson"], f["day"], int(f["period"])) for f in data.get("fixed", [])),
        present=frozenset(key for key in OPTIONAL_KEYS if key in data),
    )


def load_solution(source: dict[str, Any] | str | Path) -> Solution:
    data = _read(source)
    return Solution(
        lessons=[
            Placement(p["lesson"], p["day"], int(p["period"]), p["room"]) for p in data["lessons"]
        ],
        research_sessions=[
            ResearchPlacement(r["id"], r["day"], minutes(r["start"]))
            for r in data.get("research_sessions", [])
        ],
    )


def dump_solution(solution: Solution) -> dict[str, Any]:
    return {
        "format": SOLUTION_FORMAT,
        "lessons": [
            {"lesson": p.lesson, "day": p.day, "period": p.period, "room": p.room}
            for p in solution.lessons
        ],
        "research_sessions": [
            {"id": r.id, "day": r.day, "start": hhmm(r.start)} for r in solution.research_sessions
        ],
    }
