"""Replay pages: the recordings a viewer may watch, and the player with chapters and 评课.

The player reads the same permission-filtered services as the JSON API; pupils get the video
only, teachers also the timestamped comments and the rubric (research/review.py decides).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select

from common.alliance.models import School, Subject, Teacher
from common.errors import AppError
from recordings import collections
from recordings import service as recordings
from recordings.models import Recording
from recordings.processing import incomplete_note
from recordings.schemas import RecordingFilters, RecordingMedia
from research import review
from web.deps import DbSession, MaybeAuth, SettingsDep
from web.library_search import may_search_comments, search_comments
from web.page_shell import denied, render
from web.routers.recordings import _out as recording_out

router = APIRouter(include_in_schema=False)

REPLAY_ROLES = frozenset({"bureau", "alliance_admin", "school_admin", "teacher", "student"})
STATUS_LABELS = {"recording": "录制中", "processing": "处理中", "ready": "可回放", "failed": "失败"}


def status_label(recording: Recording) -> str:
    """录制中 / 处理中 / 可回放 / 失败, marked 不完整 when the recording stops short."""
    label = STATUS_LABELS.get(recording.status, recording.status)
    return f"{label}（不完整）" if incomplete_note(recording.outputs) else label


def _source(media: RecordingMedia) -> tuple[str | None, str]:
    """The URL and MIME type the <video> plays: the MP4 once processed, else the raw WebM."""
    if media.mp4:
        return media.mp4, "video/mp4"
    if media.raw:
        return media.raw, "video/webm"
    return None, ""


REPROCESSABLE = frozenset({"failed", "ready"})


@router.get("/replays", response_class=HTMLResponse)
def replays_page(
    request: Request,
    auth: MaybeAuth,
    session: DbSession,
    q: Annotated[str | None, Query(max_length=100)] = None,
) -> Response:
    """录像回放: the recordings the viewer may watch, newest first, searchable."""
    if auth is None:
        return RedirectResponse("/login", status_code=303)
    if auth.account.role not in REPLAY_ROLES:
        return denied(request, session, auth, "教室终端不能浏览录像回放。")
    rows = recordings.search(session, auth.principal, RecordingFilters(q=q or None, limit=200))
    # pupils never read 评语, so they never find a lesson through one
    comment_hits = (
        search_comments(session, auth.principal, q)
        if q and may_search_comments(auth.principal)
        else []
    )
    subjects = {s.id: s.name for s in session.scalars(select(Subject))}
    teachers = {t.id: t.name for t in session.scalars(select(Teacher))}
    schools = {s.id: s.name for s in session.scalars(select(School))}
    # Teachers make 单元合集 here, from the recordings they may watch (the API checks again).
    can_collect = auth.account.role == "teacher"
    pickable = (
        recordings.search(session, auth.principal, RecordingFilters(limit=200))
        if can_collect
        else []
    )
    return render(
        request,
        session,
        auth,
        "replays.html",
        {
            "q": q or "",
            "comment_hits": comment_hits,
            "collections": collections.list_collections(session, auth.principal),
            "can_collect": can_collect,
            "pickable": [
                {
                    "id": r.id,
                    "label": f"{r.title} · {r.topic}" if r.topic else r.title,
                    "date": r.date,
                }
                for r in pickable
            ],
            "alliance_subjects": sorted(
                (
                    (s.id, s.name)
                    for s in session.scalars(
                        select(Subject).where(Subject.alliance_id == auth.account.alliance_id)
                    )
                ),
                key=lambda pair: pair[0],
            )
            if can_collect
            else [],
            "rows": [
                {
                    "id": r.id,
                    "title": r.title,
                    "topic": r.topic,
                    "date": r.date,
                    "school": schools.get(r.school_id, ""),
                    "subject": subjects.get(r.subject_id or 0, ""),
                    "teacher": teachers.get(r.teacher_id or 0, ""),
                    "status": status_label(r),
                    # 重新处理 (POST /api/recordings/{id}/process checks again): for those
                    # the viewer manages that failed, or whose web version may be made anew
                    "can_reprocess": r.status in REPROCESSABLE
                    and recordings.may_manage(
                        auth.principal,
                        alliance_id=r.alliance_id,
                        school_id=r.school_id,
                        teacher_id=r.teacher_id,
                    ),
                    "duration": review.format_moment(d)
                    if (d := review.duration_of(r)) is not None
                    else "",
                }
                for r in rows
            ],
        },
    )


@router.get("/replays/{recording_id}", response_class=HTMLResponse)
def replay_page(
    request: Request,
    recording_id: int,
    auth: MaybeAuth,
    session: DbSession,
    settings: SettingsDep,
    t: Annotated[float | None, Query(ge=0, le=86_400)] = None,
) -> Response:
    """The player: chapters, speed, resume; for teachers the comments and the rubric. ``t``
    starts at that moment (a search hit in a comment links there)."""
    if auth is None:
        return RedirectResponse("/login", status_code=303)
    principal = auth.principal
    try:
        recording = recordings.get_visible(session, principal, recording_id)
    except AppError as exc:
        return denied(request, session, auth, exc.message)
    # The library API's own view of the files (local disk or object storage).
    shown = recording_out(recording, media_root=settings.media_root)
    source, mime = _source(shown.media)
    duration = review.duration_of(recording)
    can_review = review.may_read(principal, recording)
    can_take_part = can_review and review.may_take_part(principal, recording)
    return render(
        request,
        session,
        auth,
        "replay.html",
        {
            "recording": recording,
            "source": source,
            "mime": mime,
            "poster": shown.media.poster,
            "hls": shown.media.hls,
            "thumbnails": shown.media.thumbnails,
            "chapters": [
                {**chapter, "at": review.format_moment(float(chapter.get("t", 0)))}
                for chapter in shown.chapters
            ],
            "duration": duration,
            "duration_label": review.format_moment(duration) if duration is not None else "—",
            "status": status_label(recording),
            "incomplete": incomplete_note(recording.outputs),
            "meeting_version": shown.meeting_version,
            "position": recordings.position_of(session, principal, recording.id),
            "start": t,
            "can_review": can_review,
            "can_take_part": can_take_part,
            "research_sessions": review.linkable_sessions(session, recording)
            if can_take_part
            else [],
        },
    )
