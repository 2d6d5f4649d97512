"""同步课堂设置 page: an alliance admin groups a lead lesson with remote classes' lessons.

Changes go through the generic `/api/sync-groups` resource (validated and authorised
there); the page only lists a term's groups and lessons and offers the choices that fit.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from common.alliance.models import Campus, Lesson, SchoolClass, SyncGroup
from web.deps import DbSession, MaybeAuth
from web.page_shell import denied, render
from web.routers.adjust import _managed_terms
from web.routers.pages import SYNC_KIND_LABELS, group_rows, sync_groups

router = APIRouter(include_in_schema=False)


def _lesson_rows(session: Session, term_ids: list[int]) -> list[dict[str, Any]]:
    lessons = session.scalars(
        select(Lesson)
        .where(Lesson.term_id.in_(term_ids))
        .options(
            joinedload(Lesson.school_class)
            .joinedload(SchoolClass.campus)
            .joinedload(Campus.school),
            joinedload(Lesson.subject),
            joinedload(Lesson.teacher),
        )
        .order_by(Lesson.id)
    ).unique()
    rows = []
    for lesson in lessons:
        campus = lesson.school_class.campus
        place = (
            campus.school.name
            if campus.name == campus.school.name
            else (f"{campus.school.name}·{campus.name}")
        )
        rows.append(
            {
                "id": lesson.id,
                "term_id": lesson.term_id,
                "campus_id": campus.id,
                "subject_id": lesson.subject_id,
                "per_week": lesson.per_week,
                "label": f"{place} {lesson.school_class.name} {lesson.subject.name}"
                f"（{lesson.teacher.name}，每周 {lesson.per_week} 节）",
            }
        )
    return rows


@router.get("/admin/sync-groups", response_class=HTMLResponse)
def sync_groups_page(request: Request, auth: MaybeAuth, session: DbSession) -> Response:
    if auth is None:
        return RedirectResponse("/login", status_code=303)
    terms = _managed_terms(session, auth.principal)
    if not terms:
        return denied(request, session, auth, "只有教联体管理员可以设置本教联体的同步课堂。")
    term_ids = [t.id for t in terms]
    groups = sync_groups(session, SyncGroup.term_id.in_(term_ids))
    rows = group_rows(session, groups)
    for row, group in zip(rows, groups, strict=True):
        row["term_id"] = group.term_id
    grouped = {g.lead_lesson_id for g in groups} | {m.lesson_id for g in groups for m in g.members}
    lessons = _lesson_rows(session, term_ids)
    for lesson in lessons:
        lesson["grouped"] = lesson["id"] in grouped
    return render(
        request,
        session,
        auth,
        "admin_sync_groups.html",
        {"terms": terms, "groups": rows, "lessons": lessons, "kinds": SYNC_KIND_LABELS},
    )
