"""ITC-2007 track 3 `.ctt` instances and `course room day period` solutions."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from common.errors import ValidationFailedError

HEADER_FIELDS = (
    "Name",
    "Courses",
    "Rooms",
    "Days",
    "Periods_per_day",
    "Curricula",
    "Constraints",
)
SECTIONS = ("COURSES", "ROOMS", "CURRICULA", "UNAVAILABILITY_CONSTRAINTS")


class CttFormatError(ValidationFailedError):
    """A `.ctt` instance or a solution file that does not follow the format."""

    code = "itc2007_format"

    def __init__(self, message: str, *, source: str, line: int) -> None:
        super().__init__(f"{source}:{line}: {message}", detail={"source": source, "line": line})
        self.source = source
        self.line = line


@dataclass(frozen=True, slots=True)
class Course:
    name: str
    teacher: str
    lectures: int
    min_working_days: int
    students: int


@dataclass(frozen=True, slots=True)
class Room:
    name: str
    capacity: int


@dataclass(frozen=True, slots=True)
class Curriculum:
    name: str
    courses: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Unavailability:
    course: str
    day: int
    period: int


@dataclass(frozen=True, slots=True)
class Instance:
    name: str
    days: int
    periods_per_day: int
    courses: tuple[Course, ...]
    rooms: tuple[Room, ...]
    curricula: tuple[Curriculum, ...]
    unavailability: tuple[Unavailability, ...]

    @property
    def periods(self) -> int:
        return self.days * self.periods_per_day

    @property
    def lectures(self) -> int:
        return sum(course.lectures for course in self.courses)


@dataclass(frozen=True, slots=True, order=True)
class Placement:
    """One lecture of `course` in `room` at (`day`, `period`), both counted from 0."""

    course: str
    room: str
    day: int
    period: int


class _Lines:
    """Non-blank lines with their 1-based numbers, so every error can point at one."""

    def __init__(self, text: str, source: str) -> None:
        self.source = source
        self._items = [
            (number, line.split())
            for number, line in enumerate(text.splitlines(), start=1)
            if line.strip()
        ]
        self._next = 0
        self._last_line = text.count("\n") + 1

    def error(self, message: str, line: int | None = None) -> CttFormatError:
        return CttFormatError(message, source=self.source, line=line or self._last_line)

    def take(self, what: str) -> tuple[int, list[str]]:
        if self._next >= len(self._items):
            raise self.error(f"unexpected end of file, expected {what}")
        item = self._items[self._next]
        self._next += 1
        return item

    def rest(self) -> Iterator[tuple[int, list[str]]]:
        while self._next < len(self._items):
            yield self.take("a line")


def _integer(lines: _Lines, number: int, token: str, what: str, minimum: int = 0) -> int:
    try:
        value = int(token)
    except ValueError:
        raise lines.error(f"{what} must be an integer, got {token!r}", number) from None
    if value < minimum:
        raise lines.error(f"{what} must be at least {minimum}, got {value}", number)
    return value


def parse_instance(text: str, *, source: str = "<ctt>") -> Instance:
    """Parse the text of a `.ctt` instance; raise `CttFormatError` with the line at fault."""
    lines = _Lines(text, source)
    header: dict[str, str] = {}
    counts: dict[str, int] = {}
    for field in HEADER_FIELDS:
        number, tokens = lines.take(f"'{field}:'")
        if len(tokens) != 2 or tokens[0] != f"{field}:":
            raise lines.error(f"expected '{field}: <value>', got {' '.join(tokens)!r}", number)
        header[field] = tokens[1]
        if field != "Name":
            counts[field] = _integer(lines, number, tokens[1], field)
    days, periods_per_day = counts["Days"], counts["Periods_per_day"]

    def section(name: str) -> None:
        number, tokens = lines.take(f"'{name}:'")
        if tokens != [f"{name}:"]:
            raise lines.error(f"expected '{name}:', got {' '.join(tokens)!r}", number)

    section("COURSES")
    courses: list[Course] = []
    course_names: set[str] = set()
    for _ in range(counts["Courses"]):
        number, tokens = lines.take("a course line")
        if len(tokens) != 5:
            raise lines.error(
                "a course line is '<course> <teacher> <lectures> <min_days> <students>'", number
            )
        name, teacher = tokens[0], tokens[1]
        if name in course_names:
            raise lines.error(f"course {name!r} is listed twice", number)
        course_names.add(name)
        courses.append(
            Course(
                name=name,
                teacher=teacher,
                lectures=_integer(lines, number, tokens[2], "lectures"),
                min_working_days=_integer(lines, number, tokens[3], "min working days"),
                students=_integer(lines, number, tokens[4], "students"),
            )
        )

    section("ROOMS")
    rooms: list[Room] = []
    room_names: set[str] = set()
    for _ in range(counts["Rooms"]):
        number, tokens = lines.take("a room line")
        if len(tokens) != 2:
            raise lines.error("a room line is '<room> <capacity>'", number)
        if tokens[0] in room_names:
            raise lines.error(f"room {tokens[0]!r} is listed twice", number)
        room_names.add(tokens[0])
        rooms.append(Room(tokens[0], _integer(lines, number, tokens[1], "capacity")))

    section("CURRICULA")
    curricula: list[Curriculum] = []
    for _ in range(counts["Curricula"]):
        number, tokens = lines.take("a curriculum line")
        if len(tokens) < 2:
            raise lines.error("a curriculum line is '<curriculum> <n> <course>...'", number)
        size = _integer(lines, number, tokens[1], "curriculum size")
        members = tuple(tokens[2:])
        if len(members) != size:
            raise lines.error(
                f"curriculum {tokens[0]!r} announces {size} courses but lists {len(members)}",
                number,
            )
        for member in members:
            if member not in course_names:
                raise lines.error(f"curriculum {tokens[0]!r}: unknown course {member!r}", number)
        curricula.append(Curriculum(tokens[0], members))

    section("UNAVAILABILITY_CONSTRAINTS")
    unavailability: list[Unavailability] = []
    for _ in range(counts["Constraints"]):
        number, tokens = lines.take("an unavailability line")
        if len(tokens) != 3:
            raise lines.error("an unavailability line is '<course> <day> <period>'", number)
        if tokens[0] not in course_names:
            raise lines.error(f"unknown course {tokens[0]!r}", number)
        day = _integer(lines, number, tokens[1], "day")
        period = _integer(lines, number, tokens[2], "period")
        if day >= days or period >= periods_per_day:
            raise lines.error(f"day {day} period {period} is outside the week", number)
        unavailability.append(Unavailability(tokens[0], day, period))

    number, tokens = lines.take("'END.'")
    if tokens != ["END."]:
        raise lines.error(f"expected 'END.', got {' '.join(tokens)!r}", number)
    for number, tokens in lines.rest():
        raise lines.error(f"unexpected text after 'END.': {' '.join(tokens)!r}", number)
    return Instance(
        name=header["Name"],
        days=days,
        periods_per_day=periods_per_day,
        courses=tuple(courses),
        rooms=tuple(rooms),
        curricula=tuple(curricula),
        unavailability=tuple(unavailability),
    )


def read_instance(path: str | Path) -> Instance:
    """Read a `.ctt` file."""
    path = Path(path)
    return parse_instance(path.read_text(encoding="utf-8"), source=str(path))


def parse_solution(text: str, *, source: str = "<solution>") -> tuple[Placement, ...]:
    """Parse `course room day period` lines (day and period from 0)."""
    lines = _Lines(text, source)
    placements: list[Placement] = []
    for number, tokens in lines.rest():
        if len(tokens) != 4:
            raise lines.error("a solution line is '<course> <room> <day> <period>'", number)
        placements.append(
            Placement(
                course=tokens[0],
                room=tokens[1],
                day=_integer(lines, number, tokens[2], "day"),
                period=_integer(lines, number, tokens[3], "period"),
            )
        )
    return tuple(placements)


def read_solution(path: str | Path) -> tuple[Placement, ...]:
    """Read a solution file."""
    path = Path(path)
    return parse_solution(path.read_text(encoding="utf-8"), source=str(path))


def format_solution(placements: Iterable[Placement]) -> str:
    return "".join(f"{p.course} {p.room} {p.day} {p.period}\n" for p in placements)


def write_solution(path: str | Path, placements: Iterable[Placement]) -> None:
    """Write one `course room day period` line per lecture."""
    Path(path).write_text(format_solution(placements), encoding="utf-8")
