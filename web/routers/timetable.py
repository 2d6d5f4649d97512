"""Read-only weekly timetables (solving and 调课 arrive with the aligner)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter

from common.alliance import timetable
from web.deps import CurrentPrincipal, DbSession

router = APIRouter(prefix="/api", tags=["timetable"])


@router.get("/timetable/week")
def week(
    principal: CurrentPrincipal,
    session: DbSession,
    class_id: int | None = None,
    teacher_id: int | None = None,
    room_id: int | None = None,
    term_id: int | None = None,
) -> dict[str, Any]:
    """A class's, teacher's or room's week with wall-clock times and sync partners."""
    result = timetable.week(
        session,
        principal,
        class_id=class_id,
        teacher_id=teacher_id,
        room_id=room_id,
        term_id=term_id,
    )
    return asdict(result)
