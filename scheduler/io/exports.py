"""Timetable exports per class, teacher, room or campus: xlsx, ICS calendars, printable HTML."""

from __future__ import annotations

import html
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from icalendar import Calendar, Event
from openpyxl import Workbook
from openpyxl.styles import Alignment, Font, PatternFill

from scheduler.domain import WEEKDAYS, Problem, Solution, hhmm
from scheduler.views import DAY_LABELS, ViewEntry, ViewKind, entries, title_of

TIMEZONE = ZoneInfo("Asia/Shanghai")
_SYNC_FILL = PatternFill("solid", fgColor="E2F4EC")


def _cell_text(entry: ViewEntry, kind: ViewKind) -> str:
    parts = [f"{hhmm(entry.time.start)}–{hhmm(entry.time.end)} {entry.title}"]
    if kind != "class" and entry.class_id:
        parts.append(entry.class_id)
    if kind != "teacher" and entry.teacher:
        parts.append(entry.teacher)
    if kind not in ("room",) and entry.room:
        parts.append(entry.room)
    if entry.sync_note:
        parts.append(entry.sync_note)
    if entry.change:
        parts.append(f"【调】{entry.change}")
    return "\n".join(parts)


# A dated week: weekday -> what one class/teacher/room/campus has on that week's date.
DatedWeek = Mapping[str, list[ViewEntry]]


def _by_day(
    problem: Problem, items: list[ViewEntry], dated: DatedWeek | None = None
) -> dict[str, list[ViewEntry]]:
    grouped: dict[str, list[ViewEntry]] = {day: [] for day in problem.days}
    for entry in items:
        grouped.setdefault(entry.day, []).append(entry)
    if dated is not None:
        grouped = {day: list(dated.get(day, [])) for day in problem.days}
    return grouped


def to_xlsx(
    problem: Problem,
    solution: Solution,
    kind: ViewKind,
    keys: Iterable[str],
    dated: Mapping[str, DatedWeek] | None = None,
) -> bytes:
    """One sheet per class/teacher/room/campus: a column per day, lessons in time order;
    ``dated`` (key -> weekday -> entries) prints one dated week instead of the pattern."""
    workbook = Workbook()
    workbook.remove(workbook.active)  # type: ignore[arg-type]
    for key in keys:
        sheet = workbook.create_sheet(title=key[:31])
        sheet.append([title_of(problem, kind, key)])
        sheet["A1"].font = Font(bold=True, size=14)
        grouped = _by_day(
            problem, entries(problem, solution, kind, key), dated.get(key) if dated else None
        )
        sheet.append([DAY_LABELS[day] for day in problem.days])
        for cell in sheet[2]:
            cell.font = Font(bold=True)
        depth = max((len(v) for v in grouped.values()), default=0)
        for row in range(depth):
            values = []
            for day in problem.days:
                day_entries = grouped[day]
                values.append(_cell_text(day_entries[row], kind) if row < len(day_entries) else "")
            sheet.append(values)
            for column, day in enumerate(problem.days, start=1):
                day_entries = grouped[day]
                cell = sheet.cell(row=row + 3, column=column)
                cell.alignment = Alignment(wrap_text=True, vertical="top")
                if row < len(day_entries) and day_entries[row].sync_note:
                    cell.fill = _SYNC_FILL
        for column in range(1, len(problem.days) + 1):
            sheet.column_dimensions[chr(64 + column)].width = 30
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


@dataclass(frozen=True)
class TermCalendar:
    """Which dates run which weekday's timetable: term span, holidays, make-up days."""

    start: date
    end: date
    holidays: frozenset[date] = frozenset()
    makeup: Mapping[date, str] = field(default_factory=dict)

    def teaching_days(self) -> Iterable[tuple[date, str]]:
        day = self.start
        while day <= self.end:
            if day in self.makeup:
                yield day, self.makeup[day]
            elif day not in self.holidays and day.weekday() < 5:
                yield day, WEEKDAYS[day.weekday()]
            day += timedelta(days=1)


def to_ics(
    problem: Problem,
    solution: Solution,
    kind: ViewKind,
    key: str,
    calendar: TermCalendar,
    dated: Mapping[date, list[ViewEntry]] | None = None,
) -> bytes:
    """A calendar a teacher subscribes to on a phone: one event per lesson on every school day.

    ``dated`` replaces the weekly lessons of single dates (applied 调课): those days get
    exactly its entries, a moved lesson at its new time, a substituted one in the
    substitute's calendar instead of the absent teacher's."""
    cal = Calendar()
    cal.add("prodid", "-//tongke//timetable//ZH")
    cal.add("version", "2.0")
    cal.add("x-wr-calname", title_of(problem, kind, key))
    cal.add("x-wr-timezone", "Asia/Shanghai")
    by_weekday: dict[str, list[ViewEntry]] = {}
    for entry in entries(problem, solution, kind, key):
        by_weekday.setdefault(entry.day, []).append(entry)
    stamp = datetime(2026, 1, 1, tzinfo=TIMEZONE)
    for day, weekday in calendar.teaching_days():
        on_day = dated[day] if dated is not None and day in dated else by_weekday.get(weekday, [])
        for entry in on_day:
            event = Event()
            start = datetime.combine(day, datetime.min.time(), TIMEZONE) + timedelta(
                minutes=entry.time.start
            )
            event.add(
                "uid", f"{entry.lesson or entry.title}-{day.isoformat()}-{entry.time.start}@tongke"
            )
            event.add("dtstamp", stamp)
            event.add("dtstart", start)
            event.add("dtend", start + timedelta(minutes=entry.time.length))
            summary = entry.title + (f" {entry.class_id}" if entry.class_id else "")
            event.add("summary", f"【调】{summary}" if entry.change else summary)
            event.add("location", f"{entry.campus} {entry.room or ''}".strip())
            notes = [note for note in (entry.change, entry.sync_note) if note]
            if notes:
                event.add("description", "\n".join(notes))
            cal.add_component(event)
    ical: bytes = cal.to_ical()
    return ical


def to_html(
    problem: Problem,
    solution: Solution,
    kind: ViewKind,
    keys: Iterable[str],
    dated: Mapping[str, DatedWeek] | None = None,
) -> str:
    """A printable page (A4 landscape), one table per class/teacher/room/campus (``dated``:
    one dated week, as in ``to_xlsx``)."""
    sections = []
    for key in keys:
        grouped = _by_day(
            problem, entries(problem, solution, kind, key), dated.get(key) if dated else None
        )
        head = "".join(f"<th>{DAY_LABELS[d]}</th>" for d in problem.days)
        cells = []
        for day in problem.days:
            items = "".join(
                f'<div class="lesson{" sync" if e.sync_note else ""}'
                f'{" adjusted" if e.change else ""}">'
                + "<br>".join(html.escape(line) for line in _cell_text(e, kind).split("\n"))
                + "</div>"
                for e in grouped[day]
            )
            cells.append(f"<td>{items}</td>")
        sections.append(
            f"<section><h1>{html.escape(title_of(problem, kind, key))}</h1>"
            f"<table><thead><tr>{head}</tr></thead><tbody><tr>{''.join(cells)}</tr></tbody></table>"
            "</section>"
        )
    return (
        '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>课表</title><style>'
        "@page{size:A4 landscape;margin:10mm}"
        "body{font-family:'Noto Sans CJK SC',sans-serif;font-size:10pt}"
        "section{page-break-after:always}table{border-collapse:collapse;width:100%;table-layout:fixed}"
        "th,td{border:1px solid #999;vertical-align:top;padding:3px}"
        ".lesson{margin-bottom:4px}.sync{background:#e2f4ec}.adjusted{outline:1px dashed #d97706}"
        "</style></head><body>" + "".join(sections) + "</body></html>"
    )
