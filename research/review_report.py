"""The per-lesson evaluation report (评课报告): one document, written as xlsx or PDF.

``build_report`` gathers what a report says (the lesson, each evaluator's scores under the
rubric version they used, averages, the timestamped comments); the two writers only lay it
out. The PDF uses ReportLab's built-in CID font ``STSong-Light``, so Chinese renders without
font files on the server.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from io import BytesIO

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font
from openpyxl.utils import get_column_letter
from sqlalchemy import select
from sqlalchemy.orm import Session

from common.alliance.models import School, Subject, Teacher
from recordings.models import Recording
from research import review
from research.review_models import ReviewComment

PDF_FONT = "STSong-Light"


@dataclass(frozen=True)
class CriterionColumn:
    name: str
    max_score: int
    weight: float


@dataclass(frozen=True)
class EvaluatorRow:
    name: str
    scores: list[float]
    overall: float
    remark: str


@dataclass(frozen=True)
class ScoreTable:
    rubric_name: str
    version: int
    criteria: list[CriterionColumn]
    rows: list[EvaluatorRow]
    averages: list[float | None]
    overall_average: float | None


@dataclass(frozen=True)
class CommentLine:
    moment: str
    author: str
    body: str
    is_reply: bool


@dataclass(frozen=True)
class EvaluationReport:
    recording_id: int
    title: str
    topic: str
    day: date
    school: str
    subject: str
    teacher: str
    duration: str
    tables: list[ScoreTable]
    comments: list[CommentLine]
    sessions: list[str]

    @property
    def filename(self) -> str:
        return f"evaluation-{self.recording_id}"


def _name(row: School | Subject | Teacher | None) -> str:
    return row.name if row is not None else "—"


def _average(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 2) if values else None


def build_report(session: Session, recording: Recording) -> EvaluationReport:
    tables = []
    for block in review.observations_by_rubric(session, recording):
        criteria = block.rubric.criteria
        rows = [
            EvaluatorRow(
                name=o.evaluator_name,
                scores=[
                    next(s.score for s in o.scores if s.criterion_id == c.id) for c in criteria
                ],
                overall=o.overall,
                remark=o.remark,
            )
            for o in block.observations
        ]
        tables.append(
            ScoreTable(
                rubric_name=block.rubric.name,
                version=block.rubric.version,
                criteria=[CriterionColumn(c.name, c.max_score, c.weight) for c in criteria],
                rows=rows,
                averages=[_average([r.scores[i] for r in rows]) for i in range(len(criteria))],
                overall_average=_average([r.overall for r in rows]),
            )
        )
    comments = _comments(session, recording.id)
    replies = [c for c in comments if c.parent_id is not None]
    lines: list[CommentLine] = []
    for root in (c for c in comments if c.parent_id is None):
        moment = review.format_moment(root.at_seconds)
        lines.append(CommentLine(moment, root.author_name, root.body, False))
        for reply in replies:
            if reply.parent_id == root.id:
                lines.append(CommentLine("", reply.author_name, reply.body, True))
    duration = review.duration_of(recording)
    return EvaluationReport(
        recording_id=recording.id,
        title=recording.title,
        topic=recording.topic,
        day=recording.date,
        school=_name(session.get(School, recording.school_id)),
        subject=_name(session.get(Subject, recording.subject_id) if recording.subject_id else None),
        teacher=_name(session.get(Teacher, recording.teacher_id) if recording.teacher_id else None),
        duration=review.format_moment(duration) if duration is not None else "—",
        tables=tables,
        comments=lines,
        sessions=[
            f"{s.day} {s.group_name}：{s.topic or '（无主题）'}"
            for s in review.linked_sessions(session, recording)
        ],
    )


def _comments(session: Session, recording_id: int) -> list[ReviewComment]:
    return list(
        session.scalars(
            select(ReviewComment)
            .where(ReviewComment.recording_id == recording_id)
            .order_by(ReviewComment.at_seconds, ReviewComment.created_at, ReviewComment.id)
        )
    )


def _score(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:g}"


def _facts(report: EvaluationReport) -> list[tuple[str, str]]:
    return [
        ("课题", report.title),
        ("主题", report.topic or "—"),
        ("日期", report.day.isoformat()),
        ("学校", report.school),
        ("学科", report.subject),
        ("授课教师", report.teacher),
        ("录像时长", report.duration),
        ("关联教研活动", "；".join(report.sessions) or "—"),
    ]


# --- xlsx --------------------------------------------------------------------------------------
def report_xlsx(report: EvaluationReport) -> bytes:
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = "评分"
    bold = Font(bold=True)
    sheet.append(["评课报告"])
    sheet["A1"].font = Font(bold=True, size=14)
    for label, value in _facts(report):
        sheet.append([label, value])
        sheet.cell(row=sheet.max_row, column=1).font = bold
    for table in report.tables:
        sheet.append([])
        sheet.append([f"{table.rubric_name}（第 {table.version} 版）"])
        sheet.cell(row=sheet.max_row, column=1).font = bold
        columns = [f"{c.name}（满分 {c.max_score}，权重 {c.weight:g}）" for c in table.criteria]
        sheet.append(["评课人", *columns, "综合得分（百分制）", "总评"])
        for cell in sheet[sheet.max_row]:
            cell.font = bold
        for row in table.rows:
            sheet.append([row.name, *row.scores, row.overall, row.remark])
        sheet.append(["平均", *table.averages, table.overall_average, ""])
        sheet.cell(row=sheet.max_row, column=1).font = bold
        if not table.rows:
            sheet.append(["（尚无评分）"])
    sheet.column_dimensions["A"].width = 16
    for column in range(2, 2 + max((len(t.criteria) for t in report.tables), default=0) + 2):
        sheet.column_dimensions[get_column_letter(column)].width = 20

    comments = workbook.create_sheet("评语")
    comments.append(["时间点", "评课人", "评语", "类型"])
    for cell in comments[1]:
        cell.font = bold
    for line in report.comments:
        comments.append([line.moment, line.author, line.body, "回复" if line.is_reply else "评语"])
        comments.cell(row=comments.max_row, column=3).alignment = Alignment(wrap_text=True)
    comments.column_dimensions["A"].width = 10
    comments.column_dimensions["B"].width = 14
    comments.column_dimensions["C"].width = 80
    buffer = BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


# --- PDF ---------------------------------------------------------------------------------------
def report_pdf(report: EvaluationReport) -> bytes:
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4, landscape
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.lib.units import mm
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    if PDF_FONT not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(UnicodeCIDFont(PDF_FONT))
    body = ParagraphStyle("body", fontName=PDF_FONT, fontSize=9.5, leading=14, wordWrap="CJK")
    heading = ParagraphStyle("heading", parent=body, fontSize=13, leading=20, spaceBefore=6)
    title = ParagraphStyle("title", parent=body, fontSize=18, leading=26, alignment=1)

    def text(value: str, style: ParagraphStyle = body) -> Paragraph:
        escaped = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        return Paragraph(escaped.replace("\n", "<br/>"), style)

    grid = TableStyle(
        [
            ("FONTNAME", (0, 0), (-1, -1), PDF_FONT),
            ("GRID", (0, 0), (-1, -1), 0.4, colors.grey),
            ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8f0ea")),
            ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ]
    )
    story: list[object] = [text("评课报告", title), Spacer(1, 4 * mm)]
    facts = Table(
        [[text(label), text(value)] for label, value in _facts(report)],
        colWidths=[32 * mm, 230 * mm],
    )
    facts.setStyle(
        TableStyle([("FONTNAME", (0, 0), (-1, -1), PDF_FONT), ("VALIGN", (0, 0), (-1, -1), "TOP")])
    )
    story.append(facts)
    for table in report.tables:
        story.append(text(f"{table.rubric_name}（第 {table.version} 版）", heading))
        header = [
            text("评课人"),
            *(text(f"{c.name}\n满分 {c.max_score}") for c in table.criteria),
            text("综合得分"),
            text("总评"),
        ]
        rows = [
            [text(r.name), *(text(_score(s)) for s in r.scores), text(_score(r.overall)),
             text(r.remark)]
            for r in table.rows
        ]  # fmt: skip
        average = [
            text("平均"),
            *(text(_score(a)) for a in table.averages),
            text(_score(table.overall_average)),
            text(""),
        ]
        widths = [28 * mm, *([18 * mm] * len(table.criteria)), 20 * mm]
        widths.append(max(262 * mm - sum(widths), 30 * mm))
        scores = Table([header, *rows, average], colWidths=widths, repeatRows=1)
        scores.setStyle(grid)
        story.append(scores)
        if not table.rows:
            story.append(text("（尚无评分）"))
    story.append(text("时间轴评语", heading))
    if report.comments:
        lines = Table(
            [[text("时间点"), text("评课人"), text("评语")]]
            + [[text(c.moment or "↳ 回复"), text(c.author), text(c.body)] for c in report.comments],
            colWidths=[22 * mm, 30 * mm, 210 * mm],
            repeatRows=1,
        )
        lines.setStyle(grid)
        story.append(lines)
    else:
        story.append(text("（尚无评语）"))
    buffer = BytesIO()
    document = SimpleDocTemplate(
        buffer,
        pagesize=landscape(A4),
        leftMargin=15 * mm,
        rightMargin=15 * mm,
        topMargin=12 * mm,
        bottomMargin=12 * mm,
        title=f"评课报告 · {report.title}",
        author="同课 tongke",
    )
    document.build(story)  # type: ignore[arg-type]
    return buffer.getvalue()
