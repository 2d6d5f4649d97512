"""听评课 on recorded lessons: the alliance's rubric, comments pinned to a moment, scores.

Access starts from the recording (``recordings.service.get_visible``: who may see it at all),
then the permission table's ``Kind.REVIEW`` at the recording's scope: teachers and school
admins of the alliance read and take part, pupils and classroom screens never see 评课, the
bureau reads everything. Taking part (commenting, scoring, linking) is for members of the
recording's alliance; moderation (deleting others' comments) is the table's MANAGE level, and
the bureau's oversight. Every write validates fully before it changes a row, inside the
caller's transaction, so a refused request leaves nothing behind.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from common.accounts.permissions import Action, Kind, Principal, Scope, authorize, can
from common.alliance import service as registry
from common.alliance.models import Alliance
from common.errors import (
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    ValidationFailedError,
)
from common.logging import get_logger
from recordings import service as recordings
from recordings.models import Recording
from research import review_schemas as rs
from research.models import ResearchGroup, ResearchSession
from research.resources import RESEARCH_SESSIONS
from research.review_models import (
    Observation,
    ObservationScore,
    ReviewComment,
    ReviewedLesson,
    Rubric,
    RubricCriterion,
)

log = get_logger(__name__)

# Every alliance starts from this rubric until its admin saves its own.
DEFAULT_RUBRIC_NAME = "课堂教学评价表"
DEFAULT_CRITERIA: tuple[rs.CriterionIn, ...] = (
    rs.CriterionIn(
        name="教学目标",
        description="目标明确具体，符合课程标准和学情，三维目标有机融合",
        max_score=15,
        weight=1.0,
    ),
    rs.CriterionIn(
        name="教学过程",
        description="环节清晰、层次分明，重点突出、难点突破，时间分配合理",
        max_score=25,
        weight=1.0,
    ),
    rs.CriterionIn(
        name="师生互动",
        description="主讲与远端课堂互动充分，学生参与面广，提问有效，反馈及时",
        max_score=20,
        weight=1.0,
    ),
    rs.CriterionIn(
        name="信息技术融合",
        description="同步课堂设备运用熟练，课件与媒体服务于教学，远端画面与声音清晰",
        max_score=15,
        weight=1.0,
    ),
    rs.CriterionIn(
        name="教学效果",
        description="达成教学目标，各教学点学生均有收获，课堂氛围积极",
        max_score=25,
        weight=1.0,
    ),
)


def format_moment(seconds: float) -> str:
    """mm:ss (h:mm:ss past an hour), as the player shows it."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


# --- who may do what ----------------------------------------------------------------------------
def review_scope(recording: Recording) -> Scope:
    return Scope(alliance_id=recording.alliance_id, school_id=recording.school_id)


def may_read(principal: Principal, recording: Recording) -> bool:
    return can(principal, Action.READ, Kind.REVIEW, review_scope(recording))


def may_take_part(principal: Principal, recording: Recording) -> bool:
    """Comment, score, link: readers who belong to the recording's alliance (not the bureau)."""
    return may_read(principal, recording) and principal.alliance_id == recording.alliance_id


def may_moderate(principal: Principal, recording: Recording) -> bool:
    """Remove anyone's comment: admins per the table, and the bureau overseeing the county."""
    return principal.role == "bureau" or can(
        principal, Action.MANAGE, Kind.REVIEW, review_scope(recording)
    )


def reviewable(session: Session, principal: Principal, recording_id: int) -> Recording:
    """The recording, if the caller may see it and its 评课 (404, then 403 otherwise)."""
    recording = recordings.get_visible(session, principal, recording_id)
    authorize(principal, Action.READ, Kind.REVIEW, review_scope(recording))
    return recording


def _authorize_take_part(principal: Principal, recording: Recording) -> None:
    if not may_take_part(principal, recording):
        raise PermissionDeniedError(
            "只有本教联体的教师和管理员可以参与评课",
            detail={"role": principal.role, "recording": recording.id},
        )


def duration_of(recording: Recording) -> float | None:
    duration = recordings.out_fields(recording)["duration_s"]
    return float(duration) if duration is not None else None


# --- rubric ------------------------------------------------------------------------------------
def _alliance(session: Session, alliance_id: int) -> Alliance:
    alliance = session.get(Alliance, alliance_id)
    if alliance is None:
        raise NotFoundError(f"教联体 {alliance_id} 不存在")
    return alliance


def _latest(session: Session, alliance_id: int) -> Rubric | None:
    return session.scalars(
        select(Rubric).where(Rubric.alliance_id == alliance_id).order_by(Rubric.version.desc())
    ).first()


def _new_version(
    session: Session,
    *,
    alliance_id: int,
    version: int,
    name: str,
    criteria: Sequence[rs.CriterionIn],
    account_id: int | None,
) -> Rubric:
    rubric = Rubric(
        alliance_id=alliance_id,
        version=version,
        name=name,
        created_by_account_id=account_id,
        criteria=[
            RubricCriterion(
                position=position,
                name=criterion.name,
                description=criterion.description,
                max_score=criterion.max_score,
                weight=criterion.weight,
            )
            for position, criterion in enumerate(criteria, start=1)
        ],
    )
    session.add(rubric)
    session.flush()
    return rubric


def current_rubric(session: Session, alliance_id: int) -> Rubric:
    """The alliance's current rubric; the default one is written on first use."""
    found = _latest(session, alliance_id)
    if found is not None:
        return found
    try:
        with session.begin_nested():
            return _new_version(
                session,
                alliance_id=alliance_id,
                version=1,
                name=DEFAULT_RUBRIC_NAME,
                criteria=DEFAULT_CRITERIA,
                account_id=None,
            )
    except IntegrityError:
        # Another request wrote the default at the same moment: use theirs.
        return session.scalars(
            select(Rubric).where(Rubric.alliance_id == alliance_id, Rubric.version == 1)
        ).one()


def seed_default_rubrics(session: Session) -> int:
    """Give every alliance without a rubric the default one (demo seed); returns how many."""
    created = 0
    for alliance_id in session.scalars(select(Alliance.id).order_by(Alliance.id)):
        if _latest(session, alliance_id) is None:
            current_rubric(session, alliance_id)
            created += 1
    return created


def read_rubric(session: Session, principal: Principal, alliance_id: int) -> Rubric:
    _alliance(session, alliance_id)
    authorize(principal, Action.READ, Kind.REVIEW, Scope(alliance_id=alliance_id))
    return current_rubric(session, alliance_id)


def save_rubric(
    session: Session, principal: Principal, alliance_id: int, payload: rs.RubricIn
) -> Rubric:
    """A new version of the alliance's rubric (scores given earlier keep their version)."""
    _alliance(session, alliance_id)
    authorize(principal, Action.MANAGE, Kind.REVIEW, Scope(alliance_id=alliance_id))
    latest = _latest(session, alliance_id)
    rubric = _new_version(
        session,
        alliance_id=alliance_id,
        version=(latest.version + 1) if latest else 1,
        name=payload.name,
        criteria=payload.criteria,
        account_id=principal.account_id,
    )
    log.info("rubric saved", alliance=alliance_id, version=rubric.version)
    return rubric


# --- comments ----------------------------------------------------------------------------------
def get_comment(
    session: Session, principal: Principal, comment_id: int
) -> tuple[ReviewComment, Recording]:
    comment = session.get(ReviewComment, comment_id)
    if comment is None:
        raise NotFoundError(f"评语 {comment_id} 不存在")
    return comment, reviewable(session, principal, comment.recording_id)


def comment_out(
    principal: Principal, recording: Recording, comment: ReviewComment
) -> rs.CommentOut:
    out = rs.CommentOut.model_validate(comment)
    out.can_edit = comment.author_account_id == principal.account_id and may_take_part(
        principal, recording
    )
    out.can_delete = out.can_edit or may_moderate(principal, recording)
    return out


def list_comments(
    session: Session, principal: Principal, recording: Recording
) -> list[rs.CommentOut]:
    """Threads in the order of the lesson; replies under their thread, oldest first."""
    rows = session.scalars(
        select(ReviewComment)
        .where(ReviewComment.recording_id == recording.id)
        .order_by(ReviewComment.at_seconds, ReviewComment.created_at, ReviewComment.id)
    ).all()
    threads: dict[int, rs.CommentOut] = {}
    for row in rows:
        if row.parent_id is None:
            threads[row.id] = comment_out(principal, recording, row)
    replies = sorted(
        (row for row in rows if row.parent_id is not None), key=lambda r: (r.created_at, r.id)
    )
    for row in replies:
        parent = threads.get(row.parent_id or 0)
        if parent is not None:
            parent.replies.append(comment_out(principal, recording, row))
    return list(threads.values())


def _author_fields(principal: Principal) -> dict[str, object]:
    return {
        "author_account_id": principal.account_id,
        "author_teacher_id": principal.teacher_id,
        "author_name": principal.display_name or f"账号 {principal.account_id}",
    }


def add_comment(
    session: Session, principal: Principal, recording: Recording, payload: rs.CommentCreate
) -> ReviewComment:
    """A comment at a moment of the lesson, or (``parent_id``) a reply in that thread."""
    _authorize_take_part(principal, recording)
    if payload.parent_id is not None:
        parent = session.get(ReviewComment, payload.parent_id)
        if parent is None:
            raise ValidationFailedError(
                f"所回复的评语 {payload.parent_id} 不存在", field="parent_id"
            )
        if parent.recording_id != recording.id:
            raise ValidationFailedError(
                "所回复的评语不属于这段录像",
                field="parent_id",
                detail={"parent_recording": parent.recording_id, "recording": recording.id},
            )
        return _reply(session, principal, parent, payload.body)
    if payload.at_seconds is None:
        raise ValidationFailedError("请指定评语所在的时间点", field="at_seconds")
    duration = duration_of(recording)
    if duration is None:
        raise ConflictError(
            "录像尚未生成，暂不能在时间轴上评课", detail={"status": recording.status}
        )
    if not math.isfinite(payload.at_seconds) or payload.at_seconds > duration + 0.5:
        raise ValidationFailedError(
            f"时间点超出录像时长（录像共 {format_moment(duration)}）",
            field="at_seconds",
            detail={"at_seconds": payload.at_seconds, "duration_s": duration},
        )
    comment = ReviewComment(
        recording_id=recording.id,
        at_seconds=round(min(payload.at_seconds, duration), 1),
        body=payload.body,
        **_author_fields(principal),
    )
    session.add(comment)
    session.flush()
    return comment


def _reply(
    session: Session, principal: Principal, parent: ReviewComment, body: str
) -> ReviewComment:
    # One level of threads: a reply to a reply joins the same thread.
    root_id = parent.parent_id or parent.id
    reply = ReviewComment(
        recording_id=parent.recording_id,
        parent_id=root_id,
        at_seconds=parent.at_seconds,
        body=body,
        **_author_fields(principal),
    )
    session.add(reply)
    session.flush()
    return reply


def reply_to(
    session: Session,
    principal: Principal,
    parent: ReviewComment,
    recording: Recording,
    body: str,
) -> ReviewComment:
    _authorize_take_part(principal, recording)
    return _reply(session, principal, parent, body)


def edit_comment(
    session: Session,
    principal: Principal,
    comment: ReviewComment,
    recording: Recording,
    body: str,
) -> ReviewComment:
    _authorize_take_part(principal, recording)
    if comment.author_account_id != principal.account_id:
        raise PermissionDeniedError("只能修改自己的评语", detail={"comment": comment.id})
    comment.body = body
    comment.edited_at = datetime.now(UTC)
    session.flush()
    return comment


def delete_comment(
    session: Session, principal: Principal, comment: ReviewComment, recording: Recording
) -> None:
    """The author, or a moderator; a thread's replies go with its first comment."""
    own = comment.author_account_id == principal.account_id and may_take_part(principal, recording)
    if not own and not may_moderate(principal, recording):
        raise PermissionDeniedError("只能删除自己的评语", detail={"comment": comment.id})
    session.execute(
        delete(ReviewComment)
        .where(ReviewComment.parent_id == comment.id)
        .execution_options(synchronize_session="fetch")
    )
    session.delete(comment)
    session.flush()
    log.info("comment deleted", comment=comment.id, by=principal.account_id, own=own)


# --- scores ------------------------------------------------------------------------------------
def weighted_overall(rubric: Rubric, scores: dict[int, float]) -> float:
    """The weighted share of full marks, 0–100, one decimal."""
    total_weight = sum(c.weight for c in rubric.criteria)
    earned = sum(c.weight * scores[c.id] / c.max_score for c in rubric.criteria)
    return round(100 * earned / total_weight, 1)


def _checked_scores(
    session: Session, rubric: Rubric, payload: rs.ObservationIn
) -> dict[int, float]:
    """criterion id -> score, or the first problem as a clear error (nothing is written)."""
    criteria = {c.id: c for c in rubric.criteria}
    given: dict[int, float] = {}
    stale = []
    for item in payload.scores:
        if item.criterion_id in given:
            raise ValidationFailedError(
                f"评分项 {item.criterion_id} 重复提交", field="scores", detail=item.criterion_id
            )
        if item.criterion_id not in criteria:
            stale.append(item.criterion_id)
        given[item.criterion_id] = item.score
    if stale:
        older = session.scalar(
            select(func.count())
            .select_from(RubricCriterion)
            .join(Rubric, Rubric.id == RubricCriterion.rubric_id)
            .where(RubricCriterion.id.in_(stale), Rubric.alliance_id == rubric.alliance_id)
        )
        if older == len(stale):
            raise ConflictError(
                f"评价表已更新为第 {rubric.version} 版，请刷新页面后重新评分",
                detail={"version": rubric.version},
            )
        raise ValidationFailedError(
            f"未知的评分项：{'、'.join(str(i) for i in stale)}", field="scores", detail=stale
        )
    missing = [c.name for c in rubric.criteria if c.id not in given]
    if missing:
        raise ValidationFailedError(
            f"缺少评分项：{'、'.join(missing)}", field="scores", detail=missing
        )
    for criterion_id, score in given.items():
        criterion = criteria[criterion_id]
        if not math.isfinite(score) or not 0 <= score <= criterion.max_score:
            raise ValidationFailedError(
                f"“{criterion.name}”的得分应在 0 到 {criterion.max_score} 之间",
                field="scores",
                detail={"criterion_id": criterion_id, "score": score},
            )
    return given


def my_observation(
    session: Session, principal: Principal, recording: Recording
) -> Observation | None:
    return session.scalars(
        select(Observation).where(
            Observation.recording_id == recording.id,
            Observation.evaluator_account_id == principal.account_id,
        )
    ).one_or_none()


def submit_observation(
    session: Session, principal: Principal, recording: Recording, payload: rs.ObservationIn
) -> Observation:
    """The caller's score set for the recording; a second submission replaces the first."""
    _authorize_take_part(principal, recording)
    rubric = current_rubric(session, recording.alliance_id)
    scores = _checked_scores(session, rubric, payload)
    overall = weighted_overall(rubric, scores)
    observation = my_observation(session, principal, recording)
    if observation is None:
        observation = Observation(
            recording_id=recording.id,
            evaluator_account_id=principal.account_id,
            evaluator_teacher_id=principal.teacher_id,
            evaluator_name=principal.display_name or f"账号 {principal.account_id}",
            rubric_id=rubric.id,
            overall=overall,
            remark=payload.remark,
        )
        session.add(observation)
    else:
        observation.scores.clear()
        session.flush()  # the old set goes before the new one meets the unique constraint
        observation.rubric_id = rubric.id
        observation.overall = overall
        observation.remark = payload.remark
        observation.updated_at = datetime.now(UTC)
    observation.scores.extend(
        ObservationScore(criterion_id=c.id, score=scores[c.id]) for c in rubric.criteria
    )
    session.flush()
    session.refresh(observation, ["rubric"])
    return observation


def observation_out(observation: Observation) -> rs.ObservationOut:
    names = {c.id: c for c in observation.rubric.criteria}
    return rs.ObservationOut(
        id=observation.id,
        recording_id=observation.recording_id,
        rubric_id=observation.rubric_id,
        rubric_version=observation.rubric.version,
        evaluator_account_id=observation.evaluator_account_id,
        evaluator_teacher_id=observation.evaluator_teacher_id,
        evaluator_name=observation.evaluator_name,
        overall=observation.overall,
        remark=observation.remark,
        scores=[
            rs.ScoreOut(
                criterion_id=s.criterion_id,
                criterion_name=names[s.criterion_id].name,
                max_score=names[s.criterion_id].max_score,
                score=s.score,
            )
            for s in sorted(observation.scores, key=lambda s: names[s.criterion_id].position)
        ],
        updated_at=observation.updated_at,
    )


def observations_of(session: Session, recording: Recording) -> list[Observation]:
    return list(
        session.scalars(
            select(Observation)
            .where(Observation.recording_id == recording.id)
            .order_by(Observation.created_at, Observation.id)
        )
    )


def _average(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 2) if values else None


def evaluation_summary(
    session: Session, principal: Principal, recording: Recording
) -> rs.EvaluationSummary:
    rubric = current_rubric(session, recording.alliance_id)
    observations = observations_of(session, recording)
    current = [o for o in observations if o.rubric_id == rubric.id]
    mine = next((o for o in observations if o.evaluator_account_id == principal.account_id), None)
    averages = [
        rs.CriterionAverage(
            criterion_id=c.id,
            name=c.name,
            max_score=c.max_score,
            average=_average(
                [s.score for o in current for s in o.scores if s.criterion_id == c.id]
            ),
        )
        for c in rubric.criteria
    ]
    return rs.EvaluationSummary(
        recording_id=recording.id,
        rubric=rs.RubricOut.model_validate(rubric),
        observations=[observation_out(o) for o in observations],
        mine=observation_out(mine) if mine else None,
        averages=averages,
        overall_average=_average([o.overall for o in observations]),
        can_take_part=may_take_part(principal, recording),
        sessions=linked_sessions(session, recording),
    )


# --- research sessions that review the lesson --------------------------------------------------
def linked_sessions(session: Session, recording: Recording) -> list[rs.LinkedSessionOut]:
    rows = session.execute(
        select(ResearchSession, ResearchGroup.name)
        .join(ReviewedLesson, ReviewedLesson.research_session_id == ResearchSession.id)
        .join(ResearchGroup, ResearchGroup.id == ResearchSession.group_id)
        .where(ReviewedLesson.recording_id == recording.id)
        .order_by(ResearchSession.day, ResearchSession.id)
    ).all()
    return [
        rs.LinkedSessionOut(
            research_session_id=row.id,
            recording_id=recording.id,
            group_name=group_name,
            day=row.day.isoformat(),
            topic=row.topic,
            status=row.status,
        )
        for row, group_name in rows
    ]


def linkable_sessions(session: Session, recording: Recording) -> list[rs.LinkedSessionOut]:
    """The alliance's 教研 sessions, newest first, for choosing which one reviews the lesson."""
    rows = session.execute(
        select(ResearchSession, ResearchGroup.name)
        .join(ResearchGroup, ResearchGroup.id == ResearchSession.group_id)
        .where(ResearchGroup.alliance_id == recording.alliance_id)
        .order_by(ResearchSession.day.desc(), ResearchSession.id)
    ).all()
    return [
        rs.LinkedSessionOut(
            research_session_id=row.id,
            recording_id=recording.id,
            group_name=group_name,
            day=row.day.isoformat(),
            topic=row.topic,
            status=row.status,
        )
        for row, group_name in rows
    ]


def link_session(
    session: Session, principal: Principal, recording: Recording, research_session_id: int
) -> ReviewedLesson:
    """A 教研 session of the same alliance reviews this lesson."""
    _authorize_take_part(principal, recording)
    research_session: ResearchSession = registry.get(
        session, principal, RESEARCH_SESSIONS, research_session_id
    )
    group = session.get_one(ResearchGroup, research_session.group_id)
    if group.alliance_id != recording.alliance_id:
        raise ValidationFailedError("教研活动与录像不属于同一个教联体", field="research_session_id")
    if session.get(ReviewedLesson, (research_session_id, recording.id)) is not None:
        raise ConflictError("这节课已关联到该教研活动")
    link = ReviewedLesson(
        research_session_id=research_session_id,
        recording_id=recording.id,
        linked_by_account_id=principal.account_id,
    )
    session.add(link)
    session.flush()
    return link


def unlink_session(
    session: Session, principal: Principal, recording: Recording, research_session_id: int
) -> None:
    link = session.get(ReviewedLesson, (research_session_id, recording.id))
    if link is None:
        raise NotFoundError("这节课没有关联到该教研活动")
    own = link.linked_by_account_id == principal.account_id and may_take_part(principal, recording)
    if not own and not may_moderate(principal, recording):
        raise PermissionDeniedError("只能取消自己建立的关联")
    session.delete(link)
    session.flush()


@dataclass(frozen=True)
class RubricBlock:
    """Observations scored against one version of the rubric."""

    rubric: Rubric
    observations: list[Observation]


def observations_by_rubric(session: Session, recording: Recording) -> list[RubricBlock]:
    """The current version first, then older ones that still have scores."""
    current = current_rubric(session, recording.alliance_id)
    blocks: dict[int, RubricBlock] = {current.id: RubricBlock(current, [])}
    for observation in observations_of(session, recording):
        block = blocks.setdefault(observation.rubric_id, RubricBlock(observation.rubric, []))
        block.observations.append(observation)
    return sorted(blocks.values(), key=lambda b: -b.rubric.version)


def recent_comments_by(
    session: Session, principal: Principal, *, limit: int = 5
) -> list[tuple[ReviewComment, Recording]]:
    """The principal's own latest 评语 (threads and replies), on recordings they still see."""
    rows = session.execute(
        select(ReviewComment, Recording)
        .join(Recording, ReviewComment.recording_id == Recording.id)
        .where(ReviewComment.author_account_id == principal.account_id)
        .order_by(ReviewComment.created_at.desc(), ReviewComment.id.desc())
        .limit(limit * 4)
    ).all()
    found = [(comment, recording) for comment, recording in rows if may_read(principal, recording)]
    return found[:limit]
