"""学校名册 (roster) as an Excel workbook: the blank template, and an all-or-nothing import.

The import reads four sheets (教室, 班级, 教师, 学生), checks every row against the file itself
and the database, and reports every problem at once. Only a file without a single error is
written, upserting by code in the caller's session (flush only; the caller commits).
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from io import BytesIO
from typing import Any, TypeVar

from openpyxl import Workbook, load_workbook
from openpyxl.comments import Comment
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.utils.exceptions import InvalidFileException
from openpyxl.worksheet.datavalidation import DataValidation
from openpyxl.worksheet.worksheet import Worksheet
from sqlalchemy import select
from sqlalchemy.orm import Session

from common.accounts.models import Account
from common.accounts.passwords import hash_password
from common.accounts.service import check_password_strength, create_account
from common.alliance.models import (
    Campus,
    Grade,
    Room,
    School,
    SchoolClass,
    Student,
    Subject,
    Teacher,
    grade_name,
)
from common.errors import ImportRowError, NotFoundError, ValidationFailedError
from common.logging import get_logger

log = get_logger(__name__)

K = TypeVar("K")
R = TypeVar("R")

MAX_FILE_BYTES = 5 * 1024 * 1024
MAX_ROWS = 20_000
# Styled but empty rows are streamed too; stop reading a sheet padded with millions of them.
MAX_SCANNED_ROWS = 5 * MAX_ROWS
FEATURE_CODES = {"录播": "sync", "录播教室": "sync", "sync": "sync"}
YES = frozenset({"是", "y", "yes", "true", "1", "√", "✓"})
NO = frozenset({"否", "n", "no", "false", "0", "×", "✗"})
NOT_XLSX = "文件不是有效的 Excel (.xlsx) 文件"
_SEPARATORS = re.compile(r"[,，、;；/\s]+")
_CHINESE_DIGITS = {numeral: i for i, numeral in enumerate("一二三四五六七八九", start=1)}

ROOMS = "教室"
CLASSES = "班级"
TEACHERS = "教师"
STUDENTS = "学生"
GUIDE = "说明"


# ---------------------------------------------------------------- sheet layout


@dataclass(frozen=True)
class Column:
    header: str
    required: bool
    width: int
    note: str
    example: str
    as_text: bool = False  # formatted as text in the template so 学号 0012 keeps its zeros
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class SheetLayout:
    title: str
    columns: tuple[Column, ...]

    @property
    def headers(self) -> tuple[str, ...]:
        return tuple(column.header for column in self.columns)


SHEETS: tuple[SheetLayout, ...] = (
    SheetLayout(
        ROOMS,
        (
            Column("编号", True, 16, "教室编号，全县唯一", "DJ-301", as_text=True),
            Column("名称", True, 20, "同一校区内不能重名", "三楼录播教室"),
            Column("校区编号", True, 12, "本校校区的编号", "DJ", as_text=True),
            Column("容纳人数", False, 10, "正整数，空着按 45", "50"),
            Column("功能", False, 20, "“录播”表示录播教室；多个用逗号或顿号分隔", "录播、多媒体"),
        ),
    ),
    SheetLayout(
        CLASSES,
        (
            Column("编号", True, 16, "班级编号，全县唯一", "DJ-2023-3-1", as_text=True),
            Column("名称", True, 14, "本校内不能重名", "三(1)班"),
            Column("年级", True, 8, "1 到 9 的整数", "3"),
            Column("校区编号", True, 12, "本校校区的编号", "DJ", as_text=True),
            Column("人数", False, 8, "正整数，空着按 40", "45"),
            Column(
                "教室编号",
                False,
                16,
                "本班教室；可以是本文件教室表中的教室",
                "DJ-301",
                as_text=True,
            ),
        ),
    ),
    SheetLayout(
        TEACHERS,
        (
            Column("工号", True, 14, "教师工号，全县唯一，也是登录名", "DJ-T001", as_text=True),
            Column("姓名", True, 12, "", "张红"),
            Column("校区编号", True, 12, "主要任教的校区", "DJ", as_text=True),
            Column(
                "任教学科",
                False,
                24,
                "联盟已登记的学科名，多个用逗号或顿号分隔",
                "语文、道德与法治",
            ),
            Column("骨干教师", False, 10, "是 / 否，空着按 否", "是", choices=("是", "否")),
            Column("学科带头人", False, 12, "是 / 否，空着按 否", "否", choices=("是", "否")),
            Column("每日最多节数", False, 14, "1 到 12 的整数，可空", "6"),
            Column("手机", False, 16, "可空", "13800000000", as_text=True),
        ),
    ),
    SheetLayout(
        STUDENTS,
        (
            Column("班级编号", True, 16, "班级表或系统中的班级编号", "DJ-2023-3-1", as_text=True),
            Column("学号", True, 14, "同一班级内不能重复", "2026001", as_text=True),
            Column("姓名", True, 12, "", "李明"),
        ),
    ),
)
LAYOUTS = {layout.title: layout for layout in SHEETS}

GUIDE_LINES = (
    "请在 教室、班级、教师、学生 四个工作表中填写，每行一条记录；第一行是表头，请勿修改表头文字。",
    "深色表头的列必须填写，浅色表头的列可以空着。",
    "按编号更新：编号（学生按 班级编号+学号）已存在就更新该记录，不存在就新增；"
    "文件中没有的记录不会被删除。",
    "教室、班级、教师的编号在全县唯一，不能与其他学校重复。",
    "整个文件一起检查：只要有一处错误就不会导入任何数据，并列出所有错误所在的工作表、行号和列。",
    "班级可以引用本文件教室表中的教室；学生可以引用本文件班级表中的班级。",
    "任教学科必须是本联盟已登记的学科名称。",
    "空行会被跳过，单元格前后的空格会被去掉。",
    f"文件不超过 5 MB，四个表合计不超过 {MAX_ROWS} 行。",
)

_HEADER_FONT = Font(bold=True, color="FFFFFF")
_REQUIRED_FILL = PatternFill("solid", fgColor="1F4E79")
_OPTIONAL_FILL = PatternFill("solid", fgColor="8EA9C1")


# ---------------------------------------------------------------- template


def roster_template() -> bytes:
    """A blank roster workbook for a school admin to fill in (examples are on the 说明 sheet)."""
    workbook = Workbook()
    guide = workbook.active
    assert isinstance(guide, Worksheet)
    guide.title = GUIDE
    _write_guide(guide)
    for layout in SHEETS:
        _write_data_sheet(workbook.create_sheet(layout.title), layout)
    buffer = BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def _write_guide(sheet: Worksheet) -> None:
    sheet.append(["学校名册导入说明"])
    sheet["A1"].font = Font(bold=True, size=14)
    for number, line in enumerate(GUIDE_LINES, start=1):
        sheet.append([f"{number}. {line}"])
    for layout in SHEETS:
        sheet.append([])
        sheet.append([f"工作表：{layout.title}"])
        sheet.cell(sheet.max_row, 1).font = Font(bold=True, size=12)
        sheet.append(["列", "是否必填", "填写说明", "示例"])
        for cell in sheet[sheet.max_row]:
            cell.font = Font(bold=True)
        for column in layout.columns:
            required = "必填" if column.required else "选填"
            sheet.append([column.header, required, column.note, column.example])
    for letter, width in zip("ABCD", (16, 10, 60, 20), strict=True):
        sheet.column_dimensions[letter].width = width


def _write_data_sheet(sheet: Worksheet, layout: SheetLayout) -> None:
    sheet.append(list(layout.headers))
    sheet.freeze_panes = "A2"
    for index, column in enumerate(layout.columns, start=1):
        letter = get_column_letter(index)
        cell = sheet.cell(1, index)
        cell.font = _HEADER_FONT
        cell.fill = _REQUIRED_FILL if column.required else _OPTIONAL_FILL
        cell.alignment = Alignment(horizontal="center")
        if column.note:
            cell.comment = Comment(column.note, "同课")
        dimension = sheet.column_dimensions[letter]
        dimension.width = column.width
        if column.as_text:
            dimension.number_format = "@"
        cells = f"{letter}2:{letter}{MAX_ROWS + 1}"
        if column.choices:
            _add_validation(
                sheet,
                cells,
                DataValidation(
                    type="list", formula1='"' + ",".join(column.choices) + '"', allow_blank=True
                ),
                f"请填写 {'或'.join(column.choices)}",
            )
        elif column.header == "年级":
            _add_validation(
                sheet,
                cells,
                DataValidation(
                    type="whole", operator="between", formula1="1", formula2="9", allow_blank=True
                ),
                "年级必须是 1 到 9 的整数",
            )


def _add_validation(sheet: Worksheet, cells: str, rule: DataValidation, message: str) -> None:
    rule.error = message
    rule.errorTitle = "输入有误"
    rule.showErrorMessage = True
    rule.add(cells)
    sheet.add_data_validation(rule)


# ---------------------------------------------------------------- reading the file


@dataclass(frozen=True)
class _Row:
    sheet: str
    number: int  # as Excel shows it
    cells: dict[str, str]

    def get(self, header: str) -> str:
        return self.cells.get(header, "")


class _Errors:
    """Every problem found in the file, reported together."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    @property
    def count(self) -> int:
        return len(self.rows)

    def add(self, row: _Row, column: str, message: str) -> None:
        self.rows.append(
            {"sheet": row.sheet, "row": row.number, "column": column, "message": message}
        )

    def raise_if_any(self) -> None:
        if not self.rows:
            return
        order = {layout.title: i for i, layout in enumerate(SHEETS)}

        def position(error: dict[str, Any]) -> tuple[int, int, int]:
            headers = LAYOUTS[error["sheet"]].headers
            column = headers.index(error["column"]) if error["column"] in headers else 0
            return order[error["sheet"]], error["row"], column

        self.rows.sort(key=position)
        raise ImportRowError(f"名册有 {len(self.rows)} 处错误，未导入任何数据", rows=self.rows)


def _cell_text(value: object) -> str:
    """Cell content as trimmed text: 2026001, 2026001.0 and ' 2026001 ' all read '2026001'."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _read_workbook(data: bytes) -> dict[str, list[_Row]]:
    if len(data) > MAX_FILE_BYTES:
        raise ValidationFailedError("文件超过 5 MB 上限", field="file")
    if not data.startswith(b"PK\x03\x04"):
        hint = (
            "（旧版 .xls 请在 Excel 中另存为 .xlsx）"
            if data.startswith(b"\xd0\xcf\x11\xe0")
            else ""
        )
        raise ValidationFailedError(NOT_XLSX + hint, field="file")
    try:
        workbook = load_workbook(BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, InvalidFileException, KeyError, ValueError, OSError) as exc:
        raise ValidationFailedError(NOT_XLSX, field="file", detail=repr(exc)) from exc
    try:
        sheets = _find_sheets(workbook)
        _check_headers(sheets)
        budget = _RowBudget()
        return {title: list(_read_rows(title, sheet, budget)) for title, sheet in sheets.items()}
    except (zipfile.BadZipFile, KeyError, ValueError, TypeError, OSError, SyntaxError) as exc:
        # Sheets are parsed lazily in read-only mode, so a corrupt sheet shows up here.
        raise ValidationFailedError(NOT_XLSX, field="file", detail=repr(exc)) from exc
    finally:
        workbook.close()


def _find_sheets(workbook: Workbook) -> dict[str, Any]:
    by_title = {name.strip(): name for name in workbook.sheetnames}
    missing = [layout.title for layout in SHEETS if layout.title not in by_title]
    if missing:
        raise ValidationFailedError("缺少工作表：" + "、".join(missing), field="file")
    return {layout.title: workbook[by_title[layout.title]] for layout in SHEETS}


def _header_positions(sheet: Any) -> dict[str, int]:
    first = next(sheet.iter_rows(min_row=1, max_row=1, values_only=True), ())
    positions: dict[str, int] = {}
    for index, value in enumerate(first):
        header = _cell_text(value).rstrip("*＊").strip()
        positions.setdefault(header, index)
    return positions


def _check_headers(sheets: dict[str, Any]) -> None:
    problems = []
    for title, sheet in sheets.items():
        positions = _header_positions(sheet)
        missing = [
            c.header for c in LAYOUTS[title].columns if c.required and c.header not in positions
        ]
        if missing:
            problems.append(f"工作表 {title} 缺少列：" + "、".join(missing))
    if problems:
        raise ValidationFailedError("；".join(problems), field="file")


class _RowBudget:
    def __init__(self) -> None:
        self.scanned = 0
        self.kept = 0

    def take(self, *, empty: bool) -> None:
        self.scanned += 1
        self.kept += not empty
        if self.kept > MAX_ROWS or self.scanned > MAX_SCANNED_ROWS:
            raise ValidationFailedError(f"文件行数超过 {MAX_ROWS} 行上限", field="file")


def _read_rows(title: str, sheet: Any, budget: _RowBudget) -> Iterator[_Row]:
    positions = _header_positions(sheet)
    wanted = {h: positions[h] for h in LAYOUTS[title].headers if h in positions}
    # Read-only sheets yield gaps as empty rows, so the count matches Excel's row numbers.
    for number, values in enumerate(sheet.iter_rows(min_row=2, values_only=True), start=2):
        cells = {h: _cell_text(values[i]) if i < len(values) else "" for h, i in wanted.items()}
        empty = not any(cells.values())
        budget.take(empty=empty)
        if not empty:
            yield _Row(title, number, cells)


# ---------------------------------------------------------------- field parsing


def _text(row: _Row, header: str, errors: _Errors, *, max_length: int, required: bool) -> str:
    value = row.get(header)
    if required and not value:
        errors.add(row, header, f"{header}不能为空")
    elif len(value) > max_length:
        errors.add(row, header, f"{header}不能超过 {max_length} 个字符")
    return value


def _whole_number(value: str) -> int | None:
    """'3', '3.0' and ' 3 ' read 3; anything else None."""
    try:
        number = float(value)
    except ValueError:
        return None
    return int(number) if number.is_integer() else None


def _integer(
    row: _Row, header: str, errors: _Errors, *, low: int, high: int, required: bool = False
) -> int | None:
    value = row.get(header)
    if not value:
        if required:
            errors.add(row, header, f"{header}不能为空")
        return None
    number = _whole_number(value)
    if number is None or not low <= number <= high:
        errors.add(row, header, f"{header}必须是 {low} 到 {high} 的整数")
        return None
    return number


def _flag(row: _Row, header: str, errors: _Errors) -> bool:
    value = row.get(header).lower()
    if value and value not in YES | NO:
        errors.add(row, header, f"{header}只能填 是 或 否")
    return value in YES


def _names(row: _Row, header: str) -> list[str]:
    return list(dict.fromkeys(part for part in _SEPARATORS.split(row.get(header)) if part))


def _grade_level(row: _Row, errors: _Errors) -> int | None:
    """年级 as 3, '3', '三' or '三年级'."""
    spoken = row.get("年级").removesuffix("年级")
    if spoken in _CHINESE_DIGITS:
        return _CHINESE_DIGITS[spoken]
    return _integer(
        _Row(row.sheet, row.number, {**row.cells, "年级": spoken}),
        "年级",
        errors,
        low=1,
        high=9,
        required=True,
    )


def _check_unique(
    row: _Row, column: str, key: object, seen: dict[object, int], errors: _Errors, what: str
) -> None:
    if key in seen:
        errors.add(row, column, f"{what}重复（第 {seen[key]} 行已有）")
    else:
        seen[key] = row.number


# ---------------------------------------------------------------- one parser per sheet


@dataclass(frozen=True)
class RoomRow:
    row: _Row
    code: str
    name: str
    campus_code: str
    capacity: int
    features: tuple[str, ...]


@dataclass(frozen=True)
class ClassRow:
    row: _Row
    code: str
    name: str
    grade_level: int
    campus_code: str
    size: int
    home_room_code: str


@dataclass(frozen=True)
class TeacherRow:
    row: _Row
    code: str
    name: str
    campus_code: str
    subject_names: tuple[str, ...]
    is_backbone: bool
    is_subject_leader: bool
    max_lessons_per_day: int | None
    phone: str


@dataclass(frozen=True)
class StudentRow:
    row: _Row
    class_code: str
    student_no: str
    name: str


def _parse_rooms(rows: Sequence[_Row], errors: _Errors) -> list[RoomRow]:
    parsed: list[RoomRow] = []
    seen: dict[object, int] = {}
    for row in rows:
        before = errors.count
        code = _text(row, "编号", errors, max_length=40, required=True)
        if code:
            _check_unique(row, "编号", code, seen, errors, "编号")
        name = _text(row, "名称", errors, max_length=100, required=True)
        campus_code = _text(row, "校区编号", errors, max_length=30, required=True)
        capacity = _integer(row, "容纳人数", errors, low=1, high=1000)
        features = (FEATURE_CODES.get(name, name) for name in _names(row, "功能"))
        if errors.count == before:
            parsed.append(
                RoomRow(
                    row, code, name, campus_code, capacity or 45, tuple(dict.fromkeys(features))
                )
            )
    return parsed


def _parse_classes(rows: Sequence[_Row], errors: _Errors) -> list[ClassRow]:
    parsed: list[ClassRow] = []
    seen: dict[object, int] = {}
    for row in rows:
        before = errors.count
        code = _text(row, "编号", errors, max_length=40, required=True)
        if code:
            _check_unique(row, "编号", code, seen, errors, "编号")
        name = _text(row, "名称", errors, max_length=50, required=True)
        level = _grade_level(row, errors)
        campus_code = _text(row, "校区编号", errors, max_length=30, required=True)
        size = _integer(row, "人数", errors, low=1, high=200)
        room_code = _text(row, "教室编号", errors, max_length=40, required=False)
        if errors.count == before and level is not None:
            parsed.append(ClassRow(row, code, name, level, campus_code, size or 40, room_code))
    return parsed


def _parse_teachers(rows: Sequence[_Row], errors: _Errors) -> list[TeacherRow]:
    parsed: list[TeacherRow] = []
    seen: dict[object, int] = {}
    for row in rows:
        before = errors.count
        code = _text(row, "工号", errors, max_length=40, required=True)
        if code:
            _check_unique(row, "工号", code, seen, errors, "工号")
        teacher = TeacherRow(
            row,
            code,
            _text(row, "姓名", errors, max_length=50, required=True),
            _text(row, "校区编号", errors, max_length=30, required=True),
            tuple(_names(row, "任教学科")),
            _flag(row, "骨干教师", errors),
            _flag(row, "学科带头人", errors),
            _integer(row, "每日最多节数", errors, low=1, high=12),
            _text(row, "手机", errors, max_length=20, required=False),
        )
        if errors.count == before:
            parsed.append(teacher)
    return parsed


def _parse_students(rows: Sequence[_Row], errors: _Errors) -> list[StudentRow]:
    parsed: list[StudentRow] = []
    seen: dict[object, int] = {}
    for row in rows:
        before = errors.count
        class_code = _text(row, "班级编号", errors, max_length=40, required=True)
        student_no = _text(row, "学号", errors, max_length=30, required=True)
        if class_code and student_no:
            _check_unique(row, "学号", (class_code, student_no), seen, errors, "学号")
        name = _text(row, "姓名", errors, max_length=50, required=True)
        if errors.count == before:
            parsed.append(StudentRow(row, class_code, student_no, name))
    return parsed


# ---------------------------------------------------------------- what the database holds


@dataclass
class _Roster:
    sheets: dict[str, list[_Row]]
    rooms: list[RoomRow]
    classes: list[ClassRow]
    teachers: list[TeacherRow]
    students: list[StudentRow]


@dataclass
class _Existing:
    """This school's records by code, kept current while saving, and codes other schools hold."""

    school: School
    campuses: dict[str, Campus]
    subjects: dict[str, Subject]
    grades: dict[int, Grade]
    rooms: dict[str, Room]
    classes: dict[str, SchoolClass]
    teachers: dict[str, Teacher]
    students: dict[tuple[int, str], Student]
    foreign_rooms: set[str]
    foreign_classes: set[str]
    foreign_teachers: set[str]

    def campus_code(self, campus_id: int) -> str:
        return next(code for code, campus in self.campuses.items() if campus.id == campus_id)


def _chunks(values: Iterable[Any], size: int = 500) -> Iterator[list[Any]]:
    # Keeps IN (...) lists under SQLite's bound-parameter limit.
    batch = list(values)
    for start in range(0, len(batch), size):
        yield batch[start : start + size]


def _codes_elsewhere(
    session: Session, model: type[Room | SchoolClass | Teacher], school_id: int, codes: set[str]
) -> set[str]:
    """Which of `codes` another school already uses (codes are unique county-wide)."""
    if model is Room:
        query = select(Room.code).join(Campus, Campus.id == Room.campus_id)
        query = query.where(Campus.school_id != school_id)
    elif model is SchoolClass:
        query = select(SchoolClass.code).where(SchoolClass.school_id != school_id)
    else:
        query = select(Teacher.code).where(Teacher.school_id != school_id)
    found: set[str] = set()
    for batch in _chunks(code for code in codes if code):
        found.update(session.scalars(query.where(model.code.in_(batch))))
    return found


def _load_existing(session: Session, school: School, roster: _Roster) -> _Existing:
    campuses = {
        c.code: c for c in session.scalars(select(Campus).where(Campus.school_id == school.id))
    }
    campus_ids = [campus.id for campus in campuses.values()]
    classes = {
        c.code: c
        for c in session.scalars(select(SchoolClass).where(SchoolClass.school_id == school.id))
    }
    subjects = session.scalars(select(Subject).where(Subject.alliance_id == school.alliance_id))
    grades = session.scalars(select(Grade).where(Grade.school_id == school.id))
    rooms = session.scalars(select(Room).where(Room.campus_id.in_(campus_ids)))
    teachers = session.scalars(select(Teacher).where(Teacher.school_id == school.id))
    sheets = roster.sheets
    room_codes = {r.get("编号") for r in sheets[ROOMS]} | {
        r.get("教室编号") for r in sheets[CLASSES]
    }
    class_codes = {r.get("编号") for r in sheets[CLASSES]} | {r.class_code for r in roster.students}
    teacher_codes = {r.get("工号") for r in sheets[TEACHERS]}
    return _Existing(
        school=school,
        campuses=campuses,
        subjects={subject.name: subject for subject in subjects},
        grades={grade.level: grade for grade in grades},
        rooms={room.code: room for room in rooms},
        classes=classes,
        teachers={teacher.code: teacher for teacher in teachers},
        students=_load_students(session, roster, classes),
        foreign_rooms=_codes_elsewhere(session, Room, school.id, room_codes),
        foreign_classes=_codes_elsewhere(session, SchoolClass, school.id, class_codes),
        foreign_teachers=_codes_elsewhere(session, Teacher, school.id, teacher_codes),
    )


def _load_students(
    session: Session, roster: _Roster, classes: dict[str, SchoolClass]
) -> dict[tuple[int, str], Student]:
    class_ids = {classes[r.class_code].id for r in roster.students if r.class_code in classes}
    students: dict[tuple[int, str], Student] = {}
    for batch in _chunks(class_ids):
        for student in session.scalars(select(Student).where(Student.class_id.in_(batch))):
            students[student.class_id, student.student_no] = student
    return students


# ---------------------------------------------------------------- checks against the database


def _check_campus(row: _Row, campus_code: str, existing: _Existing, errors: _Errors) -> bool:
    if campus_code in existing.campuses:
        return True
    errors.add(row, "校区编号", f"校区编号 {campus_code} 不属于本校")
    return False


def _check_code_free(row: _Row, column: str, code: str, foreign: set[str], errors: _Errors) -> None:
    if code in foreign:
        errors.add(row, column, f"{column} {code} 已被其他学校使用")


def _check_names_free(
    rows: Sequence[RoomRow | ClassRow],
    taken: dict[tuple[str, str], str],
    scope: str,
    errors: _Errors,
) -> None:
    """Names unique per campus (rooms) or school (classes) once the file is applied."""
    for item in rows:
        key = (item.campus_code if isinstance(item, RoomRow) else "", item.name)
        holder = taken.get(key)
        if holder is not None:
            errors.add(item.row, "名称", f"{scope}已有名为 {item.name} 的记录（{holder}）")
        else:
            taken[key] = f"第 {item.row.number} 行"


def _check_rooms(roster: _Roster, existing: _Existing, errors: _Errors) -> None:
    in_file = {item.code for item in roster.rooms}
    taken = {
        (existing.campus_code(room.campus_id), room.name): f"编号 {room.code}"
        for room in existing.rooms.values()
        if room.code not in in_file
    }
    for item in roster.rooms:
        _check_campus(item.row, item.campus_code, existing, errors)
        _check_code_free(item.row, "编号", item.code, existing.foreign_rooms, errors)
    _check_names_free(roster.rooms, taken, "本校区", errors)


def _room_campuses(roster: _Roster, existing: _Existing) -> dict[str, str]:
    """Campus code of every room a class may use: this school's rooms, overridden by the file."""
    campuses = {code: existing.campus_code(room.campus_id) for code, room in existing.rooms.items()}
    campuses.update({row.get("编号"): row.get("校区编号") for row in roster.sheets[ROOMS]})
    return campuses


def _check_home_room(
    item: ClassRow, rooms: dict[str, str], existing: _Existing, errors: _Errors
) -> None:
    code = item.home_room_code
    if not code:
        return
    if code in rooms:
        campus = rooms[code]
        if campus in existing.campuses and campus != item.campus_code:
            message = f"教室 {code} 在校区 {campus}，不在校区 {item.campus_code}"
            errors.add(item.row, "教室编号", message)
    elif code in existing.foreign_rooms:
        errors.add(item.row, "教室编号", f"教室编号 {code} 不属于本校")
    else:
        errors.add(item.row, "教室编号", f"教室编号 {code} 不存在（本表或系统中）")


def _check_classes(roster: _Roster, existing: _Existing, errors: _Errors) -> None:
    in_file = {item.code for item in roster.classes}
    taken = {
        ("", school_class.name): f"编号 {school_class.code}"
        for school_class in existing.classes.values()
        if school_class.code not in in_file
    }
    rooms = _room_campuses(roster, existing)
    for item in roster.classes:
        if _check_campus(item.row, item.campus_code, existing, errors):
            _check_home_room(item, rooms, existing, errors)
        _check_code_free(item.row, "编号", item.code, existing.foreign_classes, errors)
    _check_names_free(roster.classes, taken, "本校", errors)


def _check_teachers(roster: _Roster, existing: _Existing, errors: _Errors) -> None:
    for item in roster.teachers:
        _check_campus(item.row, item.campus_code, existing, errors)
        _check_code_free(item.row, "工号", item.code, existing.foreign_teachers, errors)
        unknown = [name for name in item.subject_names if name not in existing.subjects]
        if unknown:
            errors.add(item.row, "任教学科", f"学科 {'、'.join(unknown)} 未在本联盟登记")


def _check_students(roster: _Roster, existing: _Existing, errors: _Errors) -> None:
    in_file = {row.get("编号") for row in roster.sheets[CLASSES]}
    for item in roster.students:
        code = item.class_code
        if code in in_file or code in existing.classes:
            continue
        if code in existing.foreign_classes:
            errors.add(item.row, "班级编号", f"班级编号 {code} 不属于本校")
        else:
            errors.add(item.row, "班级编号", f"班级编号 {code} 不存在（本表或系统中）")


# ---------------------------------------------------------------- logins (optional)


@dataclass
class _Logins:
    teachers: list[TeacherRow] = field(default_factory=list)
    students: list[StudentRow] = field(default_factory=list)


def _student_username(item: StudentRow) -> str:
    return f"{item.class_code}-{item.student_no}"


def _plan_logins(
    session: Session, roster: _Roster, existing: _Existing, errors: _Errors
) -> _Logins:
    """Rows whose person has no login yet, after checking their usernames are free."""
    teacher_ids = [t.id for t in existing.teachers.values()]
    student_ids = [s.id for s in existing.students.values()]
    with_login: set[int | None] = set()
    for batch in _chunks(teacher_ids):
        with_login.update(
            session.scalars(select(Account.teacher_id).where(Account.teacher_id.in_(batch)))
        )
    with_student_login: set[int | None] = set()
    for batch in _chunks(student_ids):
        with_student_login.update(
            session.scalars(select(Account.student_id).where(Account.student_id.in_(batch)))
        )
    logins = _Logins()
    for teacher in roster.teachers:
        known = existing.teachers.get(teacher.code)
        if known is None or known.id not in with_login:
            logins.teachers.append(teacher)
    for student in roster.students:
        school_class = existing.classes.get(student.class_code)
        known_student = (
            existing.students.get((school_class.id, student.student_no)) if school_class else None
        )
        if known_student is None or known_student.id not in with_student_login:
            logins.students.append(student)
    _check_usernames(session, logins, errors)
    return logins


def _check_usernames(session: Session, logins: _Logins, errors: _Errors) -> None:
    wanted: list[tuple[str, _Row, str]] = [(t.code, t.row, "工号") for t in logins.teachers]
    wanted += [(_student_username(s), s.row, "学号") for s in logins.students]
    taken: set[str] = set()
    for batch in _chunks({username for username, _, _ in wanted}):
        taken.update(session.scalars(select(Account.username).where(Account.username.in_(batch))))
    seen: dict[str, _Row] = {}
    for username, row, column in wanted:
        if len(username) > 64:
            errors.add(row, column, f"登录名 {username} 超过 64 个字符")
        elif username in taken:
            errors.add(row, column, f"登录名 {username} 已被其他账号使用")
        elif username in seen:
            first = seen[username]
            errors.add(row, column, f"登录名 {username} 与{first.sheet}表第 {first.number} 行重复")
        else:
            seen[username] = row


def _create_logins(
    session: Session, logins: _Logins, existing: _Existing, default_password: str | None
) -> int:
    if not logins.teachers and not logins.students:
        return 0
    school = existing.school
    # argon2 costs ~0.1 s a hash: hash the shared first password once, not once per pupil.
    password_hash = hash_password(default_password) if default_password else None
    created = 0
    for teacher_row in logins.teachers:
        teacher = existing.teachers[teacher_row.code]
        account = create_account(
            session,
            username=teacher.code,
            display_name=teacher.name,
            role="teacher",
            alliance_id=school.alliance_id,
            school_id=school.id,
            teacher_id=teacher.id,
        )
        account.password_hash = password_hash
        created += 1
    for student_row in logins.students:
        school_class = existing.classes[student_row.class_code]
        student = existing.students[school_class.id, student_row.student_no]
        account = create_account(
            session,
            username=_student_username(student_row),
            display_name=student.name,
            role="student",
            alliance_id=school.alliance_id,
            school_id=school.id,
            class_id=school_class.id,
            student_id=student.id,
        )
        account.password_hash = password_hash
        created += 1
    session.flush()
    return created


# ---------------------------------------------------------------- saving


@dataclass
class SheetCounts:
    created: int = 0
    updated: int = 0

    def upsert(self, session: Session, known: dict[K, R], key: K, create: Callable[[], R]) -> R:
        """The row already ``known`` under ``key`` (counted updated), else a new one made by
        ``create``, added to the session and to ``known`` (counted created)."""
        row = known.get(key)
        if row is None:
            row = known[key] = create()
            session.add(row)
            self.created += 1
        else:
            self.updated += 1
        return row


@dataclass
class RosterImportResult:
    rooms: SheetCounts = field(default_factory=SheetCounts)
    classes: SheetCounts = field(default_factory=SheetCounts)
    teachers: SheetCounts = field(default_factory=SheetCounts)
    students: SheetCounts = field(default_factory=SheetCounts)
    grades_created: int = 0
    accounts_created: int = 0


def _save_grades(session: Session, roster: _Roster, existing: _Existing) -> int:
    missing = sorted({item.grade_level for item in roster.classes} - existing.grades.keys())
    for level in missing:
        grade = Grade(school_id=existing.school.id, level=level, name=grade_name(level))
        session.add(grade)
        existing.grades[level] = grade
    session.flush()
    return len(missing)


def _save_rooms(
    session: Session, roster: _Roster, existing: _Existing, counts: SheetCounts
) -> None:
    for item in roster.rooms:
        room = counts.upsert(session, existing.rooms, item.code, partial(Room, code=item.code))
        room.campus_id = existing.campuses[item.campus_code].id
        room.name = item.name
        room.capacity = item.capacity
        room.features = list(item.features)
    session.flush()


def _save_classes(
    session: Session, roster: _Roster, existing: _Existing, counts: SheetCounts
) -> None:
    for item in roster.classes:
        school_class = counts.upsert(
            session,
            existing.classes,
            item.code,
            partial(SchoolClass, code=item.code, school_id=existing.school.id),
        )
        school_class.name = item.name
        school_class.grade_id = existing.grades[item.grade_level].id
        school_class.campus_id = existing.campuses[item.campus_code].id
        school_class.size = item.size
        home_room = existing.rooms[item.home_room_code] if item.home_room_code else None
        school_class.home_room_id = home_room.id if home_room else None
    session.flush()


def _save_teachers(
    session: Session, roster: _Roster, existing: _Existing, counts: SheetCounts
) -> None:
    for item in roster.teachers:
        teacher = counts.upsert(
            session,
            existing.teachers,
            item.code,
            partial(Teacher, code=item.code, school_id=existing.school.id),
        )
        teacher.name = item.name
        teacher.home_campus_id = existing.campuses[item.campus_code].id
        teacher.subjects = [existing.subjects[name] for name in item.subject_names]
        teacher.is_backbone = item.is_backbone
        teacher.is_subject_leader = item.is_subject_leader
        teacher.max_lessons_per_day = item.max_lessons_per_day
        teacher.phone = item.phone
    session.flush()


def _save_students(
    session: Session, roster: _Roster, existing: _Existing, counts: SheetCounts
) -> None:
    for item in roster.students:
        class_id = existing.classes[item.class_code].id
        student = counts.upsert(
            session,
            existing.students,
            (class_id, item.student_no),
            partial(Student, class_id=class_id, student_no=item.student_no),
        )
        student.name = item.name
    session.flush()


# ---------------------------------------------------------------- entry point


def import_roster(
    session: Session,
    *,
    school_id: int,
    data: bytes,
    create_accounts: bool = False,
    default_password: str | None = None,
) -> RosterImportResult:
    """Import a filled-in roster workbook for one school, all or nothing.

    Raises ValidationFailedError when the file itself is unusable and ImportRowError listing
    every bad row; writes (flush only) only when the whole file is valid. With
    `create_accounts`, teachers (username = 工号) and students (username = 班级编号-学号)
    without a login get one, with `default_password` or no password yet.
    """
    if create_accounts and default_password is not None:
        check_password_strength(default_password)
    school = session.get(School, school_id)
    if school is None:
        raise NotFoundError("学校不存在")
    sheets = _read_workbook(data)
    errors = _Errors()
    roster = _Roster(
        sheets=sheets,
        rooms=_parse_rooms(sheets[ROOMS], errors),
        classes=_parse_classes(sheets[CLASSES], errors),
        teachers=_parse_teachers(sheets[TEACHERS], errors),
        students=_parse_students(sheets[STUDENTS], errors),
    )
    existing = _load_existing(session, school, roster)
    _check_rooms(roster, existing, errors)
    _check_classes(roster, existing, errors)
    _check_teachers(roster, existing, errors)
    _check_students(roster, existing, errors)
    logins = _plan_logins(session, roster, existing, errors) if create_accounts else _Logins()
    errors.raise_if_any()

    result = RosterImportResult()
    result.grades_created = _save_grades(session, roster, existing)
    _save_rooms(session, roster, existing, result.rooms)
    _save_classes(session, roster, existing, result.classes)
    _save_teachers(session, roster, existing, result.teachers)
    _save_students(session, roster, existing, result.students)
    result.accounts_created = _create_logins(session, logins, existing, default_password)
    log.info(
        "roster_imported",
        school_id=school_id,
        rooms=len(roster.rooms),
        classes=len(roster.classes),
        teachers=len(roster.teachers),
        students=len(roster.students),
        accounts=result.accounts_created,
    )
    return result
