"""录播资源库: list and search recordings, stream them (Range), resume points, start/stop."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from common.jobs import JobQueue
from recordings import service
from recordings.models import Recording
from recordings.processing import PROCESS_JOB
from recordings.schemas import (
    PositionIn,
    PositionOut,
    RecordingFilters,
    RecordingMedia,
    RecordingOut,
    Rendition,
    StartRecording,
)
from streaming.access import lesson_room_id
from web.deps import CurrentPrincipal, DbSession, SettingsDep
from web.lesson_rooms import LessonRooms

router = APIRouter(prefix="/api/recordings", tags=["recordings"])

MEDIA_TYPES = {"mp4": "video/mp4", "raw": "video/webm", "poster": "image/jpeg"}


def active_recordings(request: Request) -> service.ActiveRecordings:
    active: service.ActiveRecordings | None = getattr(request.app.state, "recordings", None)
    if active is None:
        active = request.app.state.recordings = service.ActiveRecordings()
    return active


Active = Annotated[service.ActiveRecordings, Depends(active_recordings)]


def _out(
    recording: Recording, *, media_root: Path, replays: int = 0, position: float | None = None
) -> RecordingOut:
    base = f"/api/recordings/{recording.id}/media"
    outputs = recording.outputs or {}
    raw_exists = bool(recording.raw_path) and (media_root / recording.raw_path).is_file()
    media = RecordingMedia(
        mp4=f"{base}?rendition=mp4" if outputs.get("mp4") else None,
        raw=f"{base}?rendition=raw" if raw_exists else None,
        poster=f"{base}?rendition=poster" if outputs.get("poster") else None,
    )
    return RecordingOut(
        **service.out_fields(recording), media=media, replays=replays, my_position_s=position
    )


@router.get("", response_model=list[RecordingOut])
def list_recordings(
    principal: CurrentPrincipal,
    session: DbSession,
    settings: SettingsDep,
    filters: Annotated[RecordingFilters, Query()],
) -> list[RecordingOut]:
    """Recordings the caller may see: school, grade, subject, teacher, dates, `q` in title/topic."""
    rows = service.search(session, principal, filters)
    replays = service.replays_of(session, [r.id for r in rows])
    return [_out(r, media_root=settings.media_root, replays=replays.get(r.id, 0)) for r in rows]


@router.post("/start", response_model=RecordingOut, status_code=201)
async def start(
    body: StartRecording,
    principal: CurrentPrincipal,
    request: Request,
    settings: SettingsDep,
    active: Active,
) -> RecordingOut:
    """Record a sync group's live room by hand (meetings, a lesson outside the timetable)."""
    lesson_rooms: LessonRooms = request.app.state.rooms
    rooms = lesson_rooms.registry()
    jobs: JobQueue = request.app.state.jobs
    sessions = request.app.state.sessions
    room = await rooms.open(lesson_room_id(body.sync_group_id), kind="lesson")
    recording_id, _ = await service.attach_recorder(
        room,
        sync_group_id=body.sync_group_id,
        sessions=sessions,
        media_root=settings.media_root,
        jobs=jobs,
        active=active,
        principal=principal,
        topic=body.topic,
    )
    with sessions() as session:
        return _out(session.get_one(Recording, recording_id), media_root=settings.media_root)


@router.post("/{recording_id}/stop", response_model=RecordingOut)
async def stop(
    recording_id: int,
    principal: CurrentPrincipal,
    request: Request,
    settings: SettingsDep,
    active: Active,
) -> RecordingOut:
    """Stop recording; processing is queued at once (see `job_id`)."""
    sessions = request.app.state.sessions
    with sessions() as session:
        service.authorize_manage(principal, service.get_visible(session, principal, recording_id))
    await service.stop_recording(active, recording_id)
    with sessions() as session:
        return _out(session.get_one(Recording, recording_id), media_root=settings.media_root)


@router.post("/{recording_id}/process", response_model=RecordingOut)
async def reprocess(
    recording_id: int,
    principal: CurrentPrincipal,
    request: Request,
    settings: SettingsDep,
    session: DbSession,
) -> RecordingOut:
    """Run processing again (idempotent: the outputs are replaced whole)."""
    recording = service.get_visible(session, principal, recording_id)
    service.authorize_manage(principal, recording)
    jobs: JobQueue = request.app.state.jobs
    recording.job_id = await jobs.enqueue(PROCESS_JOB, recording_id=recording.id)
    session.flush()
    return _out(recording, media_root=settings.media_root)


@router.get("/{recording_id}", response_model=RecordingOut)
def get_recording(
    recording_id: int, principal: CurrentPrincipal, session: DbSession, settings: SettingsDep
) -> RecordingOut:
    recording = service.get_visible(session, principal, recording_id)
    return _out(
        recording,
        media_root=settings.media_root,
        replays=service.replays_of(session, [recording.id]).get(recording.id, 0),
        position=service.position_of(session, principal, recording.id),
    )


def _first_range_start(header: str) -> int | None:
    units, _, ranges = header.partition("=")
    first = ranges.split(",")[0].strip()
    if units.strip() != "bytes" or not first or first.startswith("-"):
        return None
    start = first.split("-")[0].strip()
    return int(start) if start.isdigit() else None


@router.get("/{recording_id}/media", response_class=FileResponse)
def media(
    recording_id: int,
    principal: CurrentPrincipal,
    session: DbSession,
    settings: SettingsDep,
    request: Request,
    rendition: Rendition = "mp4",
) -> FileResponse:
    """The file, with HTTP Range support so players can seek; only ever through this route."""
    recording = service.get_visible(session, principal, recording_id)
    path = service.media_path(settings.media_root, recording, rendition)
    size = path.stat().st_size
    start = _first_range_start(request.headers.get("range", ""))
    if start is not None and start >= size:
        raise StarletteHTTPException(416, headers={"Content-Range": f"bytes */{size}"})
    return FileResponse(
        path,
        media_type=MEDIA_TYPES[rendition],
        headers={"Cache-Control": "private, no-store"},
        content_disposition_type="inline",
    )


@router.post("/{recording_id}/position", response_model=PositionOut)
def position(
    recording_id: int, body: PositionIn, principal: CurrentPrincipal, session: DbSession
) -> PositionOut:
    """Where the viewer is (resume point); the first report of a viewing counts a replay."""
    recording = service.get_visible(session, principal, recording_id)
    view = service.record_position(session, principal, recording, position_s=body.position_s)
    return PositionOut(recording_id=recording.id, position_s=view.position_s, replays=view.replays)
