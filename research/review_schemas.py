"""Pydantic shapes of the 听评课 API: rubric, comments, scores, links, the evaluation summary."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator

from common.alliance.schemas import Out, Shape

COMMENT_MAX_CHARS = 2000
REMARK_MAX_CHARS = 2000
MAX_CRITERIA = 20
ReportFormat = Literal["xlsx", "pdf"]


def _body(value: str) -> str:
    text = value.strip()
    if not text:
        raise ValueError("评语不能为空")
    if len(text) > COMMENT_MAX_CHARS:
        raise ValueError(f"评语不能超过 {COMMENT_MAX_CHARS} 字（现有 {len(text)} 字）")
    return text


CommentBody = Annotated[str, AfterValidator(_body)]


# --- rubric -------------------------------------------------------------------------------------
class CriterionIn(Shape):
    name: str
    description: str = ""
    max_score: int
    weight: float = 1.0

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        text = value.strip()
        if not text:
            raise ValueError("评分项名称不能为空")
        if len(text) > 50:
            raise ValueError(f"评分项名称不能超过 50 字：{text[:20]}…")
        return text

    @field_validator("description")
    @classmethod
    def _description(cls, value: str) -> str:
        text = value.strip()
        if len(text) > 500:
            raise ValueError("评分项说明不能超过 500 字")
        return text

    @field_validator("max_score")
    @classmethod
    def _max_score(cls, value: int) -> int:
        if value <= 0:
            raise ValueError("满分必须大于 0")
        if value > 1000:
            raise ValueError("满分不能超过 1000")
        return value

    @field_validator("weight")
    @classmethod
    def _weight(cls, value: float) -> float:
        if not value > 0:
            raise ValueError("权重必须大于 0")
        if value > 100:
            raise ValueError("权重不能超过 100")
        return value


class RubricIn(Shape):
    """The whole rubric, in order; saving it starts a new version."""

    name: str = "课堂教学评价表"
    criteria: list[CriterionIn]

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        text = value.strip()
        if not text or len(text) > 100:
            raise ValueError("评价表名称应为 1 到 100 字")
        return text

    @field_validator("criteria")
    @classmethod
    def _criteria(cls, value: list[CriterionIn]) -> list[CriterionIn]:
        if not value:
            raise ValueError("评价表至少需要一个评分项")
        if len(value) > MAX_CRITERIA:
            raise ValueError(f"评分项不能超过 {MAX_CRITERIA} 个")
        seen: set[str] = set()
        for criterion in value:
            if criterion.name in seen:
                raise ValueError(f"评分项名称重复：{criterion.name}")
            seen.add(criterion.name)
        return value


class CriterionOut(Out):
    id: int
    position: int
    name: str
    description: str
    max_score: int
    weight: float


class RubricOut(Out):
    id: int
    alliance_id: int
    version: int
    name: str
    created_at: datetime
    criteria: list[CriterionOut]


# --- comments -----------------------------------------------------------------------------------
class CommentCreate(Shape):
    """A new comment at `at_seconds`, or with `parent_id` a reply (at its thread's moment)."""

    body: CommentBody
    at_seconds: float | None = None
    parent_id: int | None = None

    @field_validator("at_seconds")
    @classmethod
    def _moment(cls, value: float | None) -> float | None:
        if value is not None and value < 0:
            raise ValueError("时间点不能为负数")
        return value


class ReplyCreate(Shape):
    body: CommentBody


class CommentUpdate(Shape):
    body: CommentBody


class CommentOut(Out):
    id: int
    recording_id: int
    parent_id: int | None
    at_seconds: float
    body: str
    author_name: str
    author_account_id: int | None
    author_teacher_id: int | None
    created_at: datetime
    edited_at: datetime | None
    can_edit: bool = False
    can_delete: bool = False
    replies: list[CommentOut] = Field(default_factory=list)


# --- scores -------------------------------------------------------------------------------------
class ScoreIn(Shape):
    criterion_id: int
    score: float


class ObservationIn(Shape):
    """One evaluator's full score set; submitting again replaces it."""

    scores: list[ScoreIn]
    remark: str = ""

    @field_validator("remark")
    @classmethod
    def _remark(cls, value: str) -> str:
        text = value.strip()
        if len(text) > REMARK_MAX_CHARS:
            raise ValueError(f"总评不能超过 {REMARK_MAX_CHARS} 字")
        return text


class ScoreOut(Out):
    criterion_id: int
    criterion_name: str
    max_score: int
    score: float


class ObservationOut(Out):
    id: int
    recording_id: int
    rubric_id: int
    rubric_version: int
    evaluator_account_id: int
    evaluator_teacher_id: int | None
    evaluator_name: str
    overall: float
    remark: str
    scores: list[ScoreOut]
    updated_at: datetime


class CriterionAverage(Out):
    criterion_id: int
    name: str
    max_score: int
    average: float | None


class LinkIn(Shape):
    research_session_id: int


class LinkedSessionOut(Out):
    research_session_id: int
    recording_id: int
    group_name: str
    day: str
    topic: str
    status: str


class EvaluationSummary(Out):
    """Everything the 评课 panel shows: the rubric to score against, everyone's scores."""

    recording_id: int
    rubric: RubricOut
    observations: list[ObservationOut]
    mine: ObservationOut | None
    averages: list[CriterionAverage]
    overall_average: float | None
    can_take_part: bool
    sessions: list[LinkedSessionOut]
