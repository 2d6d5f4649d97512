"""听评课 API: comments on a recording's timeline, the alliance's rubric, scores, links, reports."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Response

from research import review
from research import review_schemas as rs
from research.review_report import build_report, report_pdf, report_xlsx
from web.deps import CurrentPrincipal, DbSession

router = APIRouter(prefix="/api", tags=["reviews"])

REPORT_TYPES = {
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "pdf": "application/pdf",
}


# --- comments -----------------------------------------------------------------------------------
@router.get("/recordings/{recording_id}/comments", response_model=list[rs.CommentOut])
def list_comments(
    recording_id: int, principal: CurrentPrincipal, session: DbSession
) -> list[rs.CommentOut]:
    """评语 threads in the order of the lesson, each with its replies."""
    recording = review.reviewable(session, principal, recording_id)
    return review.list_comments(session, principal, recording)


@router.post("/recordings/{recording_id}/comments", response_model=rs.CommentOut, status_code=201)
def add_comment(
    recording_id: int, body: rs.CommentCreate, principal: CurrentPrincipal, session: DbSession
) -> rs.CommentOut:
    """A comment pinned to `at_seconds`, or with `parent_id` a reply in that thread."""
    recording = review.reviewable(session, principal, recording_id)
    comment = review.add_comment(session, principal, recording, body)
    return review.comment_out(principal, recording, comment)


@router.post("/review-comments/{comment_id}/replies", response_model=rs.CommentOut, status_code=201)
def reply(
    comment_id: int, body: rs.ReplyCreate, principal: CurrentPrincipal, session: DbSession
) -> rs.CommentOut:
    """A reply; it belongs to the same recording and moment as the comment it answers."""
    parent, recording = review.get_comment(session, principal, comment_id)
    comment = review.reply_to(session, principal, parent, recording, body.body)
    return review.comment_out(principal, recording, comment)


@router.patch("/review-comments/{comment_id}", response_model=rs.CommentOut)
def edit_comment(
    comment_id: int, body: rs.CommentUpdate, principal: CurrentPrincipal, session: DbSession
) -> rs.CommentOut:
    """Authors edit their own comments."""
    comment, recording = review.get_comment(session, principal, comment_id)
    review.edit_comment(session, principal, comment, recording, body.body)
    return review.comment_out(principal, recording, comment)


@router.delete("/review-comments/{comment_id}", status_code=204)
def delete_comment(comment_id: int, principal: CurrentPrincipal, session: DbSession) -> Response:
    """The author, an admin of the recording's school or alliance, or the bureau."""
    comment, recording = review.get_comment(session, principal, comment_id)
    review.delete_comment(session, principal, comment, recording)
    return Response(status_code=204)


# --- rubric -------------------------------------------------------------------------------------
@router.get("/alliances/{alliance_id}/rubric", response_model=rs.RubricOut)
def get_rubric(alliance_id: int, principal: CurrentPrincipal, session: DbSession) -> rs.RubricOut:
    """The alliance's current 评课 rubric (the default one until its admin saves another)."""
    return rs.RubricOut.model_validate(review.read_rubric(session, principal, alliance_id))


@router.put("/alliances/{alliance_id}/rubric", response_model=rs.RubricOut)
def put_rubric(
    alliance_id: int, body: rs.RubricIn, principal: CurrentPrincipal, session: DbSession
) -> rs.RubricOut:
    """Save the rubric as a new version; scores given earlier keep theirs."""
    return rs.RubricOut.model_validate(review.save_rubric(session, principal, alliance_id, body))


# --- scores -------------------------------------------------------------------------------------
@router.get("/recordings/{recording_id}/evaluations", response_model=rs.EvaluationSummary)
def evaluations(
    recording_id: int, principal: CurrentPrincipal, session: DbSession
) -> rs.EvaluationSummary:
    """The rubric to score against, every evaluator's scores, averages, linked sessions."""
    recording = review.reviewable(session, principal, recording_id)
    return review.evaluation_summary(session, principal, recording)


@router.put("/recordings/{recording_id}/evaluations/mine", response_model=rs.ObservationOut)
def submit_evaluation(
    recording_id: int, body: rs.ObservationIn, principal: CurrentPrincipal, session: DbSession
) -> rs.ObservationOut:
    """The caller's full score set; submitting again replaces it whole."""
    recording = review.reviewable(session, principal, recording_id)
    return review.observation_out(review.submit_observation(session, principal, recording, body))


@router.get("/recordings/{recording_id}/evaluation-report")
def evaluation_report(
    recording_id: int,
    principal: CurrentPrincipal,
    session: DbSession,
    format: rs.ReportFormat = "xlsx",
) -> Response:
    """评课报告 of one lesson as xlsx or PDF."""
    recording = review.reviewable(session, principal, recording_id)
    report = build_report(session, recording)
    content = report_xlsx(report) if format == "xlsx" else report_pdf(report)
    name = f"{report.filename}.{format}"
    chinese = quote(f"评课报告-{recording.title}.{format}")
    return Response(
        content,
        media_type=REPORT_TYPES[format],
        headers={
            "Content-Disposition": f"attachment; filename=\"{name}\"; filename*=UTF-8''{chinese}",
            "Cache-Control": "private, no-store",
        },
    )


# --- research sessions reviewing the lesson -----------------------------------------------------
@router.get(
    "/recordings/{recording_id}/research-sessions", response_model=list[rs.LinkedSessionOut]
)
def linked_sessions(
    recording_id: int, principal: CurrentPrincipal, session: DbSession
) -> list[rs.LinkedSessionOut]:
    recording = review.reviewable(session, principal, recording_id)
    return review.linked_sessions(session, recording)


@router.post(
    "/recordings/{recording_id}/research-sessions",
    response_model=list[rs.LinkedSessionOut],
    status_code=201,
)
def link_session(
    recording_id: int, body: rs.LinkIn, principal: CurrentPrincipal, session: DbSession
) -> list[rs.LinkedSessionOut]:
    """A 教研 session of the alliance reviews this lesson."""
    recording = review.reviewable(session, principal, recording_id)
    review.link_session(session, principal, recording, body.research_session_id)
    return review.linked_sessions(session, recording)


@router.delete("/recordings/{recording_id}/research-sessions/{session_id}", status_code=204)
def unlink_session(
    recording_id: int, session_id: int, principal: CurrentPrincipal, session: DbSession
) -> Response:
    recording = review.reviewable(session, principal, recording_id)
    review.unlink_session(session, principal, recording, session_id)
    return Response(status_code=204)
