"""The bureau dashboard: JSON, an xlsx export, and the page with server-rendered SVG charts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select

from common.accounts.permissions import Kind, visibility
from common.alliance.models import School
from common.errors import AppError, ValidationFailedError
from research.dashboard import Dashboard, build_dashboard, dashboard_xlsx, visible_terms
from web.deps import CurrentPrincipal, DbSession, MaybeAuth
from web.page_shell import denied, render

router = APIRouter(tags=["dashboard"])

TermId = Annotated[int | None, Query(description="学期；缺省为当前学期")]
SchoolId = Annotated[int | None, Query(description="只看一所学校")]
SubjectFilter = Annotated[
    str | None, Query(max_length=40, description="只看一个学科（学科 id 或名称）")
]
AsOf = Annotated[date | None, Query(description="统计截止日期；缺省为今天")]


@router.get("/api/dashboard")
def dashboard_json(
    principal: CurrentPrincipal,
    session: DbSession,
    term_id: TermId = None,
    school_id: SchoolId = None,
    subject: SubjectFilter = None,
    as_of: AsOf = None,
) -> dict[str, Any]:
    """Per school, subject and ISO week: sync lessons planned / held / recorded / replayed,
    research sessions planned / held and attendance, quota warnings, and the term's trend."""
    return build_dashboard(
        session, principal, term_id=term_id, school_id=school_id, subject=subject, as_of=as_of
    ).as_json()


@router.get("/api/dashboard.xlsx")
def dashboard_export(
    principal: CurrentPrincipal,
    session: DbSession,
    term_id: TermId = None,
    school_id: SchoolId = None,
    subject: SubjectFilter = None,
    as_of: AsOf = None,
) -> Response:
    """The same figures as a workbook, one sheet per table."""
    dashboard = build_dashboard(
        session, principal, term_id=term_id, school_id=school_id, subject=subject, as_of=as_of
    )
    return Response(
        dashboard_xlsx(dashboard),
        media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        headers={
            "Content-Disposition": f'attachment; filename="dashboard-term-{dashboard.term_id}.xlsx"'
        },
    )


# -- the page ---------------------------------------------------------------------------------

CHART_WIDTH = 640
CHART_HEIGHT = 220
MARGIN = {"left": 36, "right": 28, "top": 12, "bottom": 28}


@dataclass(frozen=True)
class Series:
    key: str
    label: str
    color: str


LESSON_SERIES = (
    Series("planned", "计划", "#94a3b8"),
    Series("held", "开出", "#1d4ed8"),
    Series("recorded", "录制", "#15803d"),
    Series("replayed", "被回看", "#b45309"),
)
RESEARCH_SERIES = (
    Series("research_planned", "教研计划", "#94a3b8"),
    Series("research_held", "教研开展", "#7c3aed"),
)


def line_chart(
    weeks: list[str], values: dict[str, list[float]], series: tuple[Series, ...]
) -> dict[str, Any]:
    """Polylines, axis ticks and labels for a small inline SVG (the template draws them)."""
    plot_w = CHART_WIDTH - MARGIN["left"] - MARGIN["right"]
    plot_h = CHART_HEIGHT - MARGIN["top"] - MARGIN["bottom"]
    top = max([1.0, *(v for s in series for v in values[s.key])])
    step = plot_w / max(1, len(weeks) - 1)

    def x(index: int) -> float:
        return round(MARGIN["left"] + index * step, 1)

    def y(value: float) -> float:
        return round(MARGIN["top"] + plot_h - value / top * plot_h, 1)

    lines = [
        {
            "label": s.label,
            "color": s.color,
            "points": " ".join(f"{x(i)},{y(v)}" for i, v in enumerate(values[s.key])),
            "dots": [(x(i), y(v), v) for i, v in enumerate(values[s.key])],
        }
        for s in series
    ]
    every = max(1, len(weeks) // 8)
    return {
        "width": CHART_WIDTH,
        "height": CHART_HEIGHT,
        "left": MARGIN["left"],
        "right": CHART_WIDTH - MARGIN["right"],
        "bottom": MARGIN["top"] + plot_h,
        "top": MARGIN["top"],
        "max": int(top) if top == int(top) else top,
        "lines": lines,
        "ticks": [
            {"x": x(i), "label": week.split("-W")[1] if "-W" in week else week}
            for i, week in enumerate(weeks)
            if i % every == 0 or i == len(weeks) - 1
        ],
    }


def _charts(dashboard: Dashboard) -> dict[str, Any]:
    trend = dashboard.week_totals()
    weeks = [week for week, _, _ in trend]
    values: dict[str, list[float]] = {
        key: [float(getattr(figures, key)) for _, _, figures in trend]
        for key in ("planned", "held", "recorded", "replayed", "research_planned", "research_held")
    }
    return {
        "lessons": line_chart(weeks, values, LESSON_SERIES),
        "research": line_chart(weeks, values, RESEARCH_SERIES),
    }


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.0f}%"


@router.get("/dashboard", response_class=HTMLResponse, include_in_schema=False)
def dashboard_page(
    request: Request,
    auth: MaybeAuth,
    session: DbSession,
    term_id: TermId = None,
    school: Annotated[str | None, Query(alias="school_id", max_length=12)] = None,
    subject: SubjectFilter = None,
) -> Response:
    """数据看板: per-school summary, the term's trend as SVG charts (with tables), export."""
    if auth is None:
        return RedirectResponse("/login", status_code=303)
    principal = auth.principal
    if visibility(principal, Kind.DASHBOARD) is None:
        return denied(request, session, auth, "只有教育局、教联体管理员和校长可以查看数据看板。")
    # The filter form sends "" for 全部; a school or subject of another term's alliance (the
    # term was just switched) falls back to the whole alliance.
    school_id = int(school) if school and school.isdigit() else None
    try:
        try:
            dashboard = build_dashboard(
                session, principal, term_id=term_id, school_id=school_id, subject=subject or None
            )
        except ValidationFailedError:
            school_id = subject = None
            dashboard = build_dashboard(session, principal, term_id=term_id)
    except AppError as exc:
        return denied(request, session, auth, exc.message)
    data = dashboard.as_json()
    query = {
        key: value
        for key, value in (
            ("term_id", dashboard.term_id),
            ("school_id", school_id),
            ("subject", subject),
        )
        if value not in (None, "")
    }
    schools_in_alliance = [
        {"id": school.id, "name": school.name}
        for school in session.scalars(
            select(School).where(School.alliance_id == dashboard.alliance_id).order_by(School.id)
        )
        if principal.role != "school_admin" or school.id == principal.school_id
    ]
    return render(
        request,
        session,
        auth,
        "dashboard.html",
        {
            "dashboard": data,
            "terms": [
                {"id": term.id, "label": f"{alliance} · {term.name}"}
                for term, alliance in visible_terms(session, principal)
            ],
            "school_options": schools_in_alliance,
            "subject_options": sorted(dashboard.subjects.items()),
            "selected": {
                "term_id": dashboard.term_id,
                "school_id": dashboard.school_id,
                "subject_id": dashboard.subject_id,
            },
            "school_locked": principal.role == "school_admin",
            "charts": _charts(dashboard),
            "percent": _percent,
            "export_url": "/api/dashboard.xlsx?" + urlencode(query),
        },
    )
