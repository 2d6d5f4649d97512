"""tongke-timetable/1: read, validate and write problems and solutions exactly as the spec says.

`validate_problem` and `validate_solution` report every problem of a document at once, each
with a JSON pointer, so an administrator can fix a file in one go; `load_problem` and
`load_solution` raise `ProblemFormatError` carrying that list.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.errors import ValidationFailedError
from scheduler.domain import (
    SYNC_FEATURE,
    WEEKDAYS,
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
DEFAULT_SYNC_TOLERANCE = 5

Source = dict[str, Any] | str | Path


@dataclass(frozen=True)
class Issue:
    """One problem in a document: where it is (a JSON pointer, "" for the whole) and what."""

    pointer: str
    message: str

    def __str__(self) -> str:
        return f"{self.pointer or '/'}: {self.message}"


class ProblemFormatError(ValidationFailedError):
    """A timetable document that cannot be used; `issues` lists every problem found."""

    code = "timetable_invalid"

    def __init__(self, issues: Sequence[Issue]) -> None:
        self.issues = list(issues)
        super().__init__(
            "\n".join(str(issue) for issue in self.issues),
            detail=[{"pointer": i.pointer, "message": i.message} for i in self.issues],
        )


# --------------------------------------------------------------------------- reading


def _parse_text(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ProblemFormatError(
            [
                Issue(
                    "",
                    f"not valid JSON: {error.msg} at line {error.lineno} column {error.colno} "
                    f"(character {error.pos})",
                )
            ]
        ) from error


def _read_any(source: Source) -> Any:
    if isinstance(source, dict):
        return source
    if isinstance(source, Path):
        try:
            text = source.read_text(encoding="utf-8")
        except UnicodeDecodeError as error:
            raise ProblemFormatError([Issue("", f"{source} is not UTF-8 text")]) from error
        return _parse_text(text)
    return _parse_text(source)


def _interval(raw: dict[str, Any]) -> Interval:
    return Interval(minutes(raw["start"]), minutes(raw["end"]))


def load_problem(source: Source, *, validate: bool = True) -> Problem:
    """Parse a problem document (dict, JSON text or path).

    With `validate` (the default) the document is checked first and `ProblemFormatError`
    lists every issue; without it the document is assumed valid.
    """
    data = _read_any(source)
    if validate:
        issues = validate_problem(data)
        if issues:
            raise ProblemFormatError(issues)
    elif not isinstance(data, dict):
        raise ProblemFormatError([Issue("", "the document must be a JSON object")])
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
        sync_tolerance=int(data.get("sync_tolerance_minutes", DEFAULT_SYNC_TOLERANCE)),
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


def load_solution(source: Source, problem: Problem | None = None) -> Solution:
    """Parse a solution document (dict, JSON text or path).

    The document's shape is always checked; with `problem`, its ids are checked against it
    too. Any issue raises `ProblemFormatError`.
    """
    data = _read_any(source)
    issues = validate_solution(data, problem)
    if issues:
        raise ProblemFormatError(issues)
    return Solution(
        lessons=[
            Placement(p["lesson"], p["day"], int(p["period"]), p["room"]) for p in data["lessons"]
        ],
        research_sessions=[
            ResearchPlacement(r["id"], r["day"], minutes(r["start"]))
            for r in data.get("research_sessions", [])
        ],
    )


# --------------------------------------------------------------------------- writing


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


def _span_json(interval: Interval) -> dict[str, str]:
    return {"start": hhmm(interval.start), "end": hhmm(interval.end)}


def dump_problem(problem: Problem) -> dict[str, Any]:
    """The problem as a tongke-timetable/1 document, keys in the spec's order.

    Optional keys are written only when the source had them (`Problem.present`,
    `Lesson.explicit`); feature sets are written sorted.
    """
    doc: dict[str, Any] = {
        "format": PROBLEM_FORMAT,
        "name": problem.name,
        "days": list(problem.days),
    }
    if "sync_tolerance_minutes" in problem.present:
        doc["sync_tolerance_minutes"] = problem.sync_tolerance
    if "research_window" in problem.present:
        doc["research_window"] = _span_json(problem.research_window)
    doc["campuses"] = [
        {"id": c.id, "name": c.name, "bell": [_span_json(b) for b in c.bell]}
        for c in problem.campuses.values()
    ]
    if "travel_minutes" in problem.present:
        # `travel` holds both directions in reading order, so the first of each pair is the
        # direction the source wrote.
        pairs: list[dict[str, Any]] = []
        written: set[tuple[str, str]] = set()
        for (a, b), travel in problem.travel.items():
            if (b, a) not in written:
                written.add((a, b))
                pairs.append({"from": a, "to": b, "minutes": travel})
        doc["travel_minutes"] = pairs
    doc["rooms"] = [
        {"id": r.id, "campus": r.campus, "capacity": r.capacity, "features": sorted(r.features)}
        for r in problem.rooms.values()
    ]
    teachers: list[dict[str, Any]] = []
    for t in problem.teachers.values():
        teacher: dict[str, Any] = {"id": t.id, "name": t.name}
        if t.max_lessons_per_day is not None:
            teacher["max_lessons_per_day"] = t.max_lessons_per_day
        if t.unavailable:
            teacher["unavailable"] = [
                {"day": u.day, **_span_json(u.interval)} for u in t.unavailable
            ]
        teachers.append(teacher)
    doc["teachers"] = teachers
    doc["classes"] = [
        {"id": c.id, "campus": c.campus, "grade": c.grade, "size": c.size, "home_room": c.home_room}
        for c in problem.classes.values()
    ]
    lessons: list[dict[str, Any]] = []
    for lesson in problem.lessons.values():
        raw: dict[str, Any] = {
            "id": lesson.id,
            "class": lesson.class_id,
            "subject": lesson.subject,
            "teacher": lesson.teacher,
            "per_week": lesson.per_week,
        }
        if "max_per_day" in lesson.explicit:
            raw["max_per_day"] = lesson.max_per_day
        if "room_features" in lesson.explicit:
            raw["room_features"] = sorted(lesson.room_features)
        if "prefer_morning" in lesson.explicit:
            raw["prefer_morning"] = lesson.prefer_morning
        lessons.append(raw)
    doc["lessons"] = lessons
    if "sync_groups" in problem.present:
        doc["sync_groups"] = [
            {"id": g.id, "lead": g.lead, "members": list(g.members)} for g in problem.sync_groups
        ]
    if "research_sessions" in problem.present:
        doc["research_sessions"] = [
            {"id": r.id, "subject": r.subject, "members": list(r.members), "minutes": r.minutes}
            for r in problem.research_sessions
        ]
    if "fixed" in problem.present:
        doc["fixed"] = [
            {"lesson": f.lesson, "day": f.day, "period": f.period} for f in problem.fixed
        ]
    return doc


# --------------------------------------------------------------------------- validation


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


def _hhmm_value(value: Any) -> int | None:
    if not isinstance(value, str) or len(value) != 5 or value[2] != ":":
        return None
    try:
        return minutes(value)
    except ValueError:
        return None


class _Issues:
    """Collects issues while walking a document; each typed getter returns None when bad."""

    def __init__(self) -> None:
        self.issues: list[Issue] = []

    def add(self, pointer: str, message: str) -> None:
        self.issues.append(Issue(pointer, message))

    def obj(self, value: Any, pointer: str, what: str) -> dict[str, Any] | None:
        if isinstance(value, dict):
            return value
        self.add(pointer, f"{what} must be a JSON object, got {_show(value)}")
        return None

    def _get(self, obj: dict[str, Any], key: str, pointer: str, what: str, required: bool) -> Any:
        if key not in obj:
            if required:
                self.add(f"{pointer}/{key}", f"{what}: required key '{key}' is missing")
            return None
        return obj[key]

    def string(
        self,
        obj: dict[str, Any],
        key: str,
        pointer: str,
        what: str,
        *,
        required: bool = True,
        allow_empty: bool = False,
    ) -> str | None:
        value = self._get(obj, key, pointer, what, required)
        if value is None and key not in obj:
            return None
        if not isinstance(value, str) or (not value and not allow_empty):
            kind = "a string" if allow_empty else "a non-empty string"
            self.add(f"{pointer}/{key}", f"{what}: '{key}' must be {kind}, got {_show(value)}")
            return None
        return value

    def integer(
        self,
        obj: dict[str, Any],
        key: str,
        pointer: str,
        what: str,
        *,
        minimum: int = 1,
        required: bool = True,
    ) -> int | None:
        value = self._get(obj, key, pointer, what, required)
        if value is None and key not in obj:
            return None
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
            self.add(f"{pointer}/{key}", f"{what}: '{key}' must be {kind}, got {_show(value)}")
            return None
        return value

    def boolean(self, obj: dict[str, Any], key: str, pointer: str, what: str) -> bool | None:
        if key not in obj:
            return None
        if not isinstance(obj[key], bool):
            self.add(f"{pointer}/{key}", f"{what}: '{key}' must be true or false")
            return None
        return bool(obj[key])

    def array(
        self,
        obj: dict[str, Any],
        key: str,
        pointer: str,
        what: str,
        *,
        required: bool = True,
        nonempty: bool = False,
    ) -> list[Any] | None:
        value = self._get(obj, key, pointer, what, required)
        if value is None and key not in obj:
            return None
        if not isinstance(value, list):
            self.add(f"{pointer}/{key}", f"{what}: '{key}' must be a list, got {_show(value)}")
            return None
        if nonempty and not value:
            self.add(f"{pointer}/{key}", f"{what}: '{key}' must not be empty")
            return None
        return value

    def strings(
        self,
        obj: dict[str, Any],
        key: str,
        pointer: str,
        what: str,
        *,
        required: bool = True,
        nonempty: bool = False,
    ) -> list[tuple[str, str]] | None:
        """A list of strings as (pointer, value) pairs; bad elements are reported and dropped."""
        values = self.array(obj, key, pointer, what, required=required, nonempty=nonempty)
        if values is None:
            return None
        good: list[tuple[str, str]] = []
        for i, value in enumerate(values):
            if isinstance(value, str) and value:
                good.append((f"{pointer}/{key}/{i}", value))
            else:
                self.add(f"{pointer}/{key}/{i}", f"{what}: must be a non-empty string")
        return good

    def time(self, obj: dict[str, Any], key: str, pointer: str, what: str) -> int | None:
        value = self._get(obj, key, pointer, what, True)
        if value is None and key not in obj:
            return None
        parsed = _hhmm_value(value)
        if parsed is None:
            self.add(
                f"{pointer}/{key}", f"{what}: '{key}' must be a HH:MM time, got {_show(value)}"
            )
        return parsed

    def span(self, obj: dict[str, Any], pointer: str, what: str) -> Interval | None:
        start = self.time(obj, "start", pointer, what)
        end = self.time(obj, "end", pointer, what)
        if start is None or end is None:
            return None
        if start >= end:
            self.add(f"{pointer}/end", f"{what}: end {hhmm(end)} is not after start {hhmm(start)}")
            return None
        return Interval(start, end)

    def day(
        self, obj: dict[str, Any], pointer: str, what: str, days: set[str] | None
    ) -> str | None:
        value = self.string(obj, "day", pointer, what)
        if value is None:
            return None
        if value not in WEEKDAYS:
            self.add(f"{pointer}/day", f"{what}: day {_show(value)} is not one of mon..sun")
            return None
        if days is not None and value not in days:
            self.add(f"{pointer}/day", f"{what}: day {value} is not one of the problem's days")
            return None
        return value


@dataclass
class _CampusRec:
    pointer: str
    id: str | None
    bell: tuple[Interval, ...] | None


@dataclass
class _RoomRec:
    pointer: str
    id: str | None
    campus: str | None
    capacity: int | None
    features: frozenset[str] | None


@dataclass
class _TeacherRec:
    pointer: str
    id: str | None
    name: str
    max_lessons_per_day: int | None
    unavailable: list[Unavailability] = field(default_factory=list)


@dataclass
class _ClassRec:
    pointer: str
    id: str | None
    campus: str | None
    size: int | None
    home_room: str | None


@dataclass
class _LessonRec:
    pointer: str
    id: str | None
    class_id: str | None
    teacher: str | None
    per_week: int | None
    max_per_day: int | None  # explicit value only
    max_per_day_bad: bool
    room_features: frozenset[str] | None


@dataclass
class _GroupRec:
    pointer: str
    id: str | None
    lead: str | None
    members: list[tuple[str, str]]


@dataclass
class _SessionRec:
    pointer: str
    id: str | None
    members: list[tuple[str, str]]
    minutes: int | None


@dataclass
class _FixedRec:
    pointer: str
    lesson: str | None
    day: str | None
    period: int | None


def _label(kind: str, ident: str | None, index: int) -> str:
    return f"{kind} {ident}" if ident is not None else f"{kind} [{index}]"


def _entities(v: _Issues, data: dict[str, Any], key: str, required: bool) -> list[Any]:
    items = v.array(data, key, "", "problem", required=required)
    return items if items is not None else []


def _identified(
    v: _Issues, data: dict[str, Any], key: str, noun: str, *, required: bool
) -> Iterator[tuple[int, str, dict[str, Any], str | None, str]]:
    """Each object in `data[key]` with its index, JSON pointer, id and a label for messages."""
    for i, raw in enumerate(_entities(v, data, key, required)):
        pointer = f"/{key}/{i}"
        obj = v.obj(raw, pointer, f"{noun} [{i}]")
        if obj is None:
            continue
        ident = v.string(obj, "id", pointer, f"{noun} [{i}]")
        yield i, pointer, obj, ident, _label(noun, ident, i)


def _register(v: _Issues, kind: str, records: Sequence[Any]) -> dict[str, Any]:
    """Index records by id; report every repeated id."""
    index: dict[str, Any] = {}
    for rec in records:
        if rec.id is None:
            continue
        if rec.id in index:
            v.add(
                f"{rec.pointer}/id",
                f"duplicate {kind} id {rec.id} (first defined at {index[rec.id].pointer})",
            )
        else:
            index[rec.id] = rec
    return index


def validate_problem(data: Any) -> list[Issue]:
    """Every issue that stops `data` from being a usable tongke-timetable/1 problem.

    Schema checks (types, required keys, HH:MM times, bell order) come first, then checks
    that would make the problem unsolvable whatever the solver does (unknown or duplicate
    ids, sync groups that cannot align, lessons without a room or without enough periods).
    Unknown keys are ignored.
    """
    v = _Issues()
    doc = v.obj(data, "", "the problem document")
    if doc is None:
        return v.issues

    fmt = v.string(doc, "format", "", "problem")
    if fmt is not None and fmt != PROBLEM_FORMAT:
        v.add("/format", f"format must be {PROBLEM_FORMAT!r}, got {_show(fmt)}")
    v.string(doc, "name", "", "problem", allow_empty=True)

    days = _validate_days(v, doc)
    day_set = set(days) if days is not None else None
    if "sync_tolerance_minutes" in doc:
        tolerance = v.integer(doc, "sync_tolerance_minutes", "", "problem", minimum=0)
    else:
        tolerance = DEFAULT_SYNC_TOLERANCE
    window = None
    if "research_window" in doc:
        raw_window = v.obj(doc["research_window"], "/research_window", "research_window")
        if raw_window is not None:
            window = v.span(raw_window, "/research_window", "research_window")

    campuses = _register(v, "campus", _parse_campuses(v, doc))
    rooms_list = _parse_rooms(v, doc)
    rooms: dict[str, _RoomRec] = _register(v, "room", rooms_list)
    teachers: dict[str, _TeacherRec] = _register(v, "teacher", _parse_teachers(v, doc, day_set))
    classes: dict[str, _ClassRec] = _register(v, "class", _parse_classes(v, doc))
    lessons: dict[str, _LessonRec] = _register(v, "lesson", _parse_lessons(v, doc))
    groups: list[_GroupRec] = _parse_groups(v, doc)
    _register(v, "sync group", groups)
    sessions: list[_SessionRec] = _parse_sessions(v, doc)
    _register(v, "research session", sessions)
    fixed = _parse_fixed(v, doc, day_set)

    _check_travel(v, doc, campuses)
    for room in rooms_list:
        if room.campus is not None and room.campus not in campuses:
            v.add(f"{room.pointer}/campus", f"room {room.id}: campus {room.campus} is not defined")
    for school_class in classes.values():
        _check_class(v, school_class, campuses, rooms)

    if window is None and "research_window" not in doc:
        bells = [b for c in campuses.values() if c.bell for b in c.bell]
        if bells:
            window = Interval(min(b.start for b in bells), max(b.end for b in bells))

    context = _Context(
        days=days,
        tolerance=tolerance,
        campuses=campuses,
        rooms=rooms,
        teachers=teachers,
        classes=classes,
        lessons=lessons,
    )
    group_of = _check_groups(v, context, groups)
    for lesson in lessons.values():
        _check_lesson(v, context, lesson, group_of.get(lesson.id or ""))
    _check_class_loads(v, context)
    _check_teacher_loads(v, context, groups)
    _check_sessions(v, teachers, sessions, window)
    _check_fixed(v, context, fixed)
    return v.issues


def _validate_days(v: _Issues, doc: dict[str, Any]) -> list[str] | None:
    raw_days = v.array(doc, "days", "", "problem", nonempty=True)
    if raw_days is None:
        return None
    days: list[str] = []
    for i, day in enumerate(raw_days):
        if not isinstance(day, str) or day not in WEEKDAYS:
            v.add(f"/days/{i}", f"day {_show(day)} is not one of mon, tue, wed, thu, fri, sat, sun")
        elif day in days:
            v.add(f"/days/{i}", f"day {day} is listed twice")
        else:
            days.append(day)
    return days or None


def _parse_campuses(v: _Issues, doc: dict[str, Any]) -> list[_CampusRec]:
    records = []
    for _i, pointer, obj, ident, what in _identified(v, doc, "campuses", "campus", required=True):
        v.string(obj, "name", pointer, what, allow_empty=True)
        bell = _parse_bell(v, obj, pointer, what)
        records.append(_CampusRec(pointer, ident, bell))
    if "campuses" in doc and isinstance(doc["campuses"], list) and not doc["campuses"]:
        v.add("/campuses", "problem: at least one campus is needed")
    return records


def _parse_bell(
    v: _Issues, obj: dict[str, Any], pointer: str, what: str
) -> tuple[Interval, ...] | None:
    raw_bell = v.array(obj, "bell", pointer, what, nonempty=True)
    if raw_bell is None:
        return None
    bell: list[Interval] = []
    ok = True
    for p, raw in enumerate(raw_bell):
        period_pointer = f"{pointer}/bell/{p}"
        period_obj = v.obj(raw, period_pointer, f"{what} period {p + 1}")
        span = (
            v.span(period_obj, period_pointer, f"{what} period {p + 1}")
            if period_obj is not None
            else None
        )
        if span is None:
            ok = False
            continue
        if bell and ok:
            previous = bell[-1]
            if span.start < previous.start:
                v.add(
                    period_pointer,
                    f"{what}: period {p + 1} ({span}) starts before period {p} ({previous}); "
                    "periods must be in bell order",
                )
                ok = False
            elif span.start < previous.end:
                v.add(
                    period_pointer,
                    f"{what}: period {p + 1} ({span}) overlaps period {p} ({previous})",
                )
                ok = False
        bell.append(span)
    return tuple(bell) if ok else None


def _parse_rooms(v: _Issues, doc: dict[str, Any]) -> list[_RoomRec]:
    records = []
    for _i, pointer, obj, ident, what in _identified(v, doc, "rooms", "room", required=True):
        campus = v.string(obj, "campus", pointer, what)
        capacity = v.integer(obj, "capacity", pointer, what)
        features = v.strings(obj, "features", pointer, what)
        records.append(
            _RoomRec(
                pointer,
                ident,
                campus,
                capacity,
                frozenset(f for _, f in features) if features is not None else None,
            )
        )
    return records


def _parse_teachers(v: _Issues, doc: dict[str, Any], days: set[str] | None) -> list[_TeacherRec]:
    records = []
    for i, pointer, obj, ident, what in _identified(v, doc, "teachers", "teacher", required=True):
        name = v.string(obj, "name", pointer, what, allow_empty=True)
        what = _label("teacher", ident, i) + (f" ({name})" if name else "")
        limit = v.integer(obj, "max_lessons_per_day", pointer, what, required=False)
        record = _TeacherRec(pointer, ident, name or "", limit)
        for u, raw_u in enumerate(v.array(obj, "unavailable", pointer, what, required=False) or []):
            u_pointer = f"{pointer}/unavailable/{u}"
            u_obj = v.obj(raw_u, u_pointer, f"{what}: unavailable interval")
            if u_obj is None:
                continue
            day = v.day(u_obj, u_pointer, f"{what}: unavailable interval", days)
            span = v.span(u_obj, u_pointer, f"{what}: unavailable interval")
            if day is not None and span is not None:
                record.unavailable.append(Unavailability(day, span))
        records.append(record)
    return records


def _parse_classes(v: _Issues, doc: dict[str, Any]) -> list[_ClassRec]:
    records = []
    for _i, pointer, obj, ident, what in _identified(v, doc, "classes", "class", required=True):
        campus = v.string(obj, "campus", pointer, what)
        v.integer(obj, "grade", pointer, what)
        size = v.integer(obj, "size", pointer, what)
        home_room = v.string(obj, "home_room", pointer, what)
        records.append(_ClassRec(pointer, ident, campus, size, home_room))
    return records


def _parse_lessons(v: _Issues, doc: dict[str, Any]) -> list[_LessonRec]:
    records = []
    for _i, pointer, obj, ident, what in _identified(v, doc, "lessons", "lesson", required=True):
        class_id = v.string(obj, "class", pointer, what)
        v.string(obj, "subject", pointer, what, allow_empty=True)
        teacher = v.string(obj, "teacher", pointer, what)
        per_week = v.integer(obj, "per_week", pointer, what)
        max_per_day = v.integer(obj, "max_per_day", pointer, what, required=False)
        features = v.strings(obj, "room_features", pointer, what, required=False)
        v.boolean(obj, "prefer_morning", pointer, what)
        records.append(
            _LessonRec(
                pointer,
                ident,
                class_id,
                teacher,
                per_week,
                max_per_day,
                "max_per_day" in obj and max_per_day is None,
                frozenset(f for _, f in features) if features is not None else frozenset(),
            )
        )
    return records


def _parse_groups(v: _Issues, doc: dict[str, Any]) -> list[_GroupRec]:
    records = []
    for _i, pointer, obj, ident, what in _identified(
        v, doc, "sync_groups", "sync group", required=False
    ):
        lead = v.string(obj, "lead", pointer, what)
        members = v.strings(obj, "members", pointer, what, nonempty=True)
        records.append(_GroupRec(pointer, ident, lead, members or []))
    return records


def _parse_sessions(v: _Issues, doc: dict[str, Any]) -> list[_SessionRec]:
    records = []
    for _i, pointer, obj, ident, what in _identified(
        v, doc, "research_sessions", "research session", required=False
    ):
        v.string(obj, "subject", pointer, what, allow_empty=True)
        members = v.strings(obj, "members", pointer, what, nonempty=True)
        length = v.integer(obj, "minutes", pointer, what)
        records.append(_SessionRec(pointer, ident, members or [], length))
    return records


def _parse_fixed(v: _Issues, doc: dict[str, Any], days: set[str] | None) -> list[_FixedRec]:
    records = []
    for i, raw in enumerate(_entities(v, doc, "fixed", False)):
        pointer = f"/fixed/{i}"
        obj = v.obj(raw, pointer, f"fixed entry [{i}]")
        if obj is None:
            continue
        lesson = v.string(obj, "lesson", pointer, f"fixed entry [{i}]")
        what = f"fixed entry [{i}]" + (f" of {lesson}" if lesson else "")
        day = v.day(obj, pointer, what, days)
        period = v.integer(obj, "period", pointer, what)
        records.append(_FixedRec(pointer, lesson, day, period))
    return records


def _check_travel(v: _Issues, doc: dict[str, Any], campuses: dict[str, _CampusRec]) -> None:
    seen: dict[frozenset[str], str] = {}
    for i, raw in enumerate(_entities(v, doc, "travel_minutes", False)):
        pointer = f"/travel_minutes/{i}"
        obj = v.obj(raw, pointer, f"travel entry [{i}]")
        if obj is None:
            continue
        what = f"travel entry [{i}]"
        a = v.string(obj, "from", pointer, what)
        b = v.string(obj, "to", pointer, what)
        v.integer(obj, "minutes", pointer, what, minimum=0)
        for key, campus in (("from", a), ("to", b)):
            if campus is not None and campus not in campuses:
                v.add(f"{pointer}/{key}", f"{what}: campus {campus} is not defined")
        if a is None or b is None:
            continue
        if a == b:
            v.add(pointer, f"{what}: travel from {a} to itself (same campus is always 0)")
            continue
        pair = frozenset((a, b))
        if pair in seen:
            v.add(pointer, f"{what}: travel between {a} and {b} is already given at {seen[pair]}")
        else:
            seen[pair] = pointer


def _check_class(
    v: _Issues,
    school_class: _ClassRec,
    campuses: dict[str, _CampusRec],
    rooms: dict[str, _RoomRec],
) -> None:
    what = f"class {school_class.id}"
    if school_class.campus is not None and school_class.campus not in campuses:
        v.add(
            f"{school_class.pointer}/campus", f"{what}: campus {school_class.campus} is not defined"
        )
    if school_class.home_room is None:
        return
    room = rooms.get(school_class.home_room)
    if room is None:
        v.add(
            f"{school_class.pointer}/home_room",
            f"{what}: home room {school_class.home_room} is not defined",
        )
        return
    if room.campus in campuses and school_class.campus and room.campus != school_class.campus:
        v.add(
            f"{school_class.pointer}/home_room",
            f"{what}: home room {room.id} is on campus {room.campus}, "
            f"not on the class's campus {school_class.campus}",
        )
    if (
        room.capacity is not None
        and school_class.size is not None
        and room.capacity < school_class.size
    ):
        v.add(
            f"{school_class.pointer}/home_room",
            f"{what}: home room {room.id} holds {room.capacity} but the class has "
            f"{school_class.size} pupils",
        )


@dataclass
class _Context:
    days: list[str] | None
    tolerance: int | None
    campuses: dict[str, _CampusRec]
    rooms: dict[str, _RoomRec]
    teachers: dict[str, _TeacherRec]
    classes: dict[str, _ClassRec]
    lessons: dict[str, _LessonRec]

    def bell_of(self, lesson: _LessonRec) -> tuple[str, tuple[Interval, ...]] | None:
        """(campus id, bell) of the lesson's class, when everything on the way is valid."""
        school_class = self.classes.get(lesson.class_id or "")
        if school_class is None or school_class.campus is None:
            return None
        campus = self.campuses.get(school_class.campus)
        if campus is None or campus.bell is None:
            return None
        return school_class.campus, campus.bell

    def max_per_day(self, lesson: _LessonRec) -> int | None:
        if lesson.max_per_day is not None:
            return lesson.max_per_day
        if lesson.max_per_day_bad or lesson.per_week is None or self.days is None:
            return None
        return default_max_per_day(lesson.per_week, len(self.days))


def _check_groups(v: _Issues, context: _Context, groups: list[_GroupRec]) -> dict[str, _GroupRec]:
    """Reference, membership, per_week and bell-alignment checks; returns lesson -> group."""
    group_of: dict[str, _GroupRec] = {}
    for group in groups:
        what = f"sync group {group.id}"
        refs: list[tuple[str, str]] = []
        if group.lead is not None:
            refs.append((f"{group.pointer}/lead", group.lead))
        refs.extend(group.members)
        resolved: list[_LessonRec] = []
        for pointer, lesson_id in refs:
            lesson = context.lessons.get(lesson_id)
            if lesson is None:
                v.add(pointer, f"{what}: lesson {lesson_id} is not defined")
                continue
            other = group_of.get(lesson_id)
            if other is group:
                v.add(pointer, f"{what}: lesson {lesson_id} appears twice in the group")
                continue
            if other is not None:
                v.add(
                    pointer,
                    f"lesson {lesson_id} is in sync groups {other.id} and {group.id}; "
                    "a lesson may belong to one sync group only",
                )
                continue
            group_of[lesson_id] = group
            resolved.append(lesson)
        if len(resolved) != len(refs) or group.lead is None:
            continue
        per_weeks = {lesson.per_week for lesson in resolved}
        if None not in per_weeks and len(per_weeks) > 1:
            listing = ", ".join(f"{lesson.id}: {lesson.per_week}" for lesson in resolved)
            v.add(
                group.pointer,
                f"{what}: its lessons have different per_week ({listing}); "
                "all lessons of a sync group need the same per_week",
            )
        _check_group_alignment(v, context, group, resolved)
    return group_of


def _check_group_alignment(
    v: _Issues, context: _Context, group: _GroupRec, resolved: list[_LessonRec]
) -> None:
    tolerance = context.tolerance
    lead, members = resolved[0], resolved[1:]
    lead_bell = context.bell_of(lead)
    if tolerance is None or lead_bell is None:
        return
    lead_campus, lead_periods = lead_bell
    aligned = [True] * len(lead_periods)
    for member in members:
        member_bell = context.bell_of(member)
        if member_bell is None:
            return
        member_campus, member_periods = member_bell
        matches = [
            any(abs(p.start - q.start) <= tolerance for q in member_periods) for p in lead_periods
        ]
        if not any(matches):
            v.add(
                group.pointer,
                f"sync group {group.id}: no period of campus {lead_campus} (lead {lead.id}) "
                f"starts within {tolerance} min of a period of campus {member_campus} "
                f"({member.id}), so the lessons can never be taught together",
            )
            return
        aligned = [a and m for a, m in zip(aligned, matches, strict=True)]
    count = sum(aligned)
    if count == 0:
        v.add(
            group.pointer,
            f"sync group {group.id}: no period of campus {lead_campus} (lead {lead.id}) starts "
            f"within {tolerance} min of a period on every member campus at once",
        )
        return
    limit = context.max_per_day(lead)
    if context.days is None or lead.per_week is None or limit is None:
        return
    most = min(count, limit) * len(context.days)
    if lead.per_week > most:
        v.add(
            group.pointer,
            f"sync group {group.id}: only {count} period(s) a day of campus {lead_campus} align "
            f"with all member campuses (at most {most} a week with max_per_day {limit}), but "
            f"per_week is {lead.per_week}",
        )


def _check_lesson(
    v: _Issues, context: _Context, lesson: _LessonRec, group: _GroupRec | None
) -> None:
    what = f"lesson {lesson.id}"
    school_class = context.classes.get(lesson.class_id or "")
    if lesson.class_id is not None and lesson.class_id not in context.classes:
        v.add(f"{lesson.pointer}/class", f"{what}: class {lesson.class_id} is not defined")
    teacher = context.teachers.get(lesson.teacher or "")
    if lesson.teacher is not None and teacher is None:
        v.add(f"{lesson.pointer}/teacher", f"{what}: teacher {lesson.teacher} is not defined")

    # Rooms: a lesson with required features picks a room on its campus.
    needed = set(lesson.room_features or ())
    if group is not None:
        needed.add(SYNC_FEATURE)
    rooms_known = all(
        r.campus is not None and r.features is not None and r.capacity is not None
        for r in context.rooms.values()
    )
    if (
        needed
        and rooms_known
        and school_class is not None
        and school_class.campus is not None
        and school_class.size is not None
    ):
        size = school_class.size
        fits = [
            r
            for r in context.rooms.values()
            if r.campus == school_class.campus
            and needed <= (r.features or frozenset())
            and (r.capacity or 0) >= size
        ]
        if not fits:
            why = f" (sync group {group.id} needs a '{SYNC_FEATURE}' room)" if group else ""
            v.add(
                f"{lesson.pointer}/room_features" if lesson.room_features else lesson.pointer,
                f"{what}: no room on campus {school_class.campus} has "
                f"{', '.join(sorted(needed))} and room for {size} pupils{why}",
            )

    limit = context.max_per_day(lesson)
    if lesson.per_week is None or limit is None or context.days is None:
        return
    days = context.days
    if lesson.per_week > len(days) * limit:
        v.add(
            f"{lesson.pointer}/per_week",
            f"{what}: per_week {lesson.per_week} is more than {len(days)} days × "
            f"max_per_day {limit}",
        )
        return
    bell = context.bell_of(lesson)
    if bell is None:
        return
    campus, periods = bell
    unavailable = teacher.unavailable if teacher is not None else []
    possible = 0
    for day in days:
        blocked = [u.interval for u in unavailable if u.day == day]
        free = sum(1 for p in periods if not any(p.overlaps(b) for b in blocked))
        possible += min(free, limit)
    if lesson.per_week > possible:
        because = f"; teacher {lesson.teacher} is unavailable in some" if unavailable else ""
        v.add(
            f"{lesson.pointer}/per_week",
            f"{what}: per_week {lesson.per_week} but only {possible} periods are available "
            f"(campus {campus} has {len(periods)} a day, at most {limit} a day{because})",
        )


def _check_class_loads(v: _Issues, context: _Context) -> None:
    if context.days is None:
        return
    load: Counter[str] = Counter()
    for lesson in context.lessons.values():
        if lesson.class_id is not None and lesson.per_week is not None:
            load[lesson.class_id] += lesson.per_week
    for class_id, needed in load.items():
        school_class = context.classes.get(class_id)
        if school_class is None or school_class.campus is None:
            continue
        campus = context.campuses.get(school_class.campus)
        if campus is None or campus.bell is None:
            continue
        week = len(campus.bell) * len(context.days)
        if needed > week:
            v.add(
                school_class.pointer,
                f"class {class_id}: its lessons need {needed} periods a week but campus "
                f"{school_class.campus} has only {week} ({len(campus.bell)} periods × "
                f"{len(context.days)} days)",
            )


def _check_teacher_loads(v: _Issues, context: _Context, groups: list[_GroupRec]) -> None:
    if context.days is None:
        return
    lead_teacher = {}
    for group in groups:
        lead = context.lessons.get(group.lead or "")
        for _, member in group.members:
            if lead is not None:
                lead_teacher[member] = lead.teacher
    load: Counter[str] = Counter()
    for lesson in context.lessons.values():
        if lesson.teacher is None or lesson.per_week is None:
            continue
        if lead_teacher.get(lesson.id or "") == lesson.teacher:
            continue  # taught together with the lead lesson
        load[lesson.teacher] += lesson.per_week
    for teacher_id, needed in load.items():
        teacher = context.teachers.get(teacher_id)
        if teacher is None or teacher.max_lessons_per_day is None:
            continue
        most = teacher.max_lessons_per_day * len(context.days)
        if needed > most:
            v.add(
                f"{teacher.pointer}/max_lessons_per_day",
                f"teacher {teacher_id} ({teacher.name}): {needed} lessons a week but at most "
                f"{teacher.max_lessons_per_day} a day × {len(context.days)} days = {most}",
            )


def _check_sessions(
    v: _Issues,
    teachers: dict[str, _TeacherRec],
    sessions: list[_SessionRec],
    window: Interval | None,
) -> None:
    for session in sessions:
        what = f"research session {session.id}"
        seen: set[str] = set()
        for pointer, member in session.members:
            if member not in teachers:
                v.add(pointer, f"{what}: teacher {member} is not defined")
            elif member in seen:
                v.add(pointer, f"{what}: teacher {member} is listed twice")
            seen.add(member)
        if window is not None and session.minutes is not None and session.minutes > window.length:
            v.add(
                f"{session.pointer}/minutes",
                f"{what}: lasts {session.minutes} min but the research window {window} is only "
                f"{window.length} min long",
            )


def _check_fixed(v: _Issues, context: _Context, fixed: list[_FixedRec]) -> None:
    per_lesson: defaultdict[str, list[_FixedRec]] = defaultdict(list)
    seen: dict[tuple[str, str, int], str] = {}
    class_slots: dict[tuple[str, str, int], _FixedRec] = {}
    for entry in fixed:
        if entry.lesson is None:
            continue
        lesson = context.lessons.get(entry.lesson)
        if lesson is None:
            v.add(f"{entry.pointer}/lesson", f"fixed entry: lesson {entry.lesson} is not defined")
            continue
        bell = context.bell_of(lesson)
        if entry.period is not None and bell is not None and entry.period > len(bell[1]):
            v.add(
                f"{entry.pointer}/period",
                f"fixed entry of {entry.lesson}: period {entry.period} is out of range "
                f"(campus {bell[0]} has {len(bell[1])} periods)",
            )
            continue
        if entry.day is None or entry.period is None:
            continue
        key = (entry.lesson, entry.day, entry.period)
        if key in seen:
            v.add(
                entry.pointer,
                f"fixed entry of {entry.lesson} {entry.day} p{entry.period} repeats {seen[key]}",
            )
            continue
        seen[key] = entry.pointer
        per_lesson[entry.lesson].append(entry)
        if lesson.class_id is not None:
            slot = (lesson.class_id, entry.day, entry.period)
            clash = class_slots.get(slot)
            if clash is not None:
                v.add(
                    entry.pointer,
                    f"fixed entry of {entry.lesson}: class {lesson.class_id} already has "
                    f"{clash.lesson} fixed to {entry.day} p{entry.period} ({clash.pointer})",
                )
            else:
                class_slots[slot] = entry
    for lesson_id, entries in per_lesson.items():
        lesson = context.lessons[lesson_id]
        if lesson.per_week is not None and len(entries) > lesson.per_week:
            v.add(
                entries[lesson.per_week].pointer,
                f"lesson {lesson_id} has {len(entries)} fixed entries but per_week is "
                f"{lesson.per_week}",
            )
        limit = context.max_per_day(lesson)
        by_day = Counter(entry.day for entry in entries)
        for day, count in by_day.items():
            if limit is not None and count > limit:
                first = next(e for e in entries if e.day == day)
                v.add(
                    first.pointer,
                    f"lesson {lesson_id} has {count} fixed entries on {day} but max_per_day "
                    f"is {limit}",
                )


def validate_solution(data: Any, problem: Problem | None = None) -> list[Issue]:
    """Every issue in a solution document's shape; with `problem`, unknown ids too.

    Whether the placements are *feasible* is the checker's business (`scheduler.checker`).
    """
    v = _Issues()
    doc = v.obj(data, "", "the solution document")
    if doc is None:
        return v.issues
    fmt = v.string(doc, "format", "", "solution")
    if fmt is not None and fmt != SOLUTION_FORMAT:
        v.add("/format", f"format must be {SOLUTION_FORMAT!r}, got {_show(fmt)}")
    for i, raw in enumerate(v.array(doc, "lessons", "", "solution") or []):
        pointer = f"/lessons/{i}"
        obj = v.obj(raw, pointer, f"placement [{i}]")
        if obj is None:
            continue
        lesson = v.string(obj, "lesson", pointer, f"placement [{i}]")
        what = f"placement [{i}]" + (f" of {lesson}" if lesson else "")
        v.day(obj, pointer, what, None)
        v.integer(obj, "period", pointer, what)
        room = v.string(obj, "room", pointer, what)
        if problem is not None:
            if lesson is not None and lesson not in problem.lessons:
                v.add(f"{pointer}/lesson", f"{what}: lesson {lesson} is not in the problem")
            if room is not None and room not in problem.rooms:
                v.add(f"{pointer}/room", f"{what}: room {room} is not in the problem")
    known = {session.id for session in problem.research_sessions} if problem else None
    for i, raw in enumerate(
        v.array(doc, "research_sessions", "", "solution", required=False) or []
    ):
        pointer = f"/research_sessions/{i}"
        obj = v.obj(raw, pointer, f"research placement [{i}]")
        if obj is None:
            continue
        ident = v.string(obj, "id", pointer, f"research placement [{i}]")
        what = f"research placement [{i}]" + (f" of {ident}" if ident else "")
        v.day(obj, pointer, what, None)
        v.time(obj, "start", pointer, what)
        if known is not None and ident is not None and ident not in known:
            v.add(f"{pointer}/id", f"{what}: research session {ident} is not in the problem")
    return v.issues
