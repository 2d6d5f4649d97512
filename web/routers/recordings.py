"""录播资源库: list and search recordings, stream them (Range), resume points, start/stop."""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path, PurePosixPath
from typing import Annotated, Literal, cast
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, Response, StreamingResponse
from sqlalchemy.orm import Session, sessionmaker
from starlette.exceptions import HTTPException as StarletteHTTPException

from common.accounts.permissions import Principal
from common.db import transaction
from common.errors import AppError, ConflictError, NotFoundError
from common.jobs import JobQueue
from common.settings import Settings
from recordings import requeue, service
from recordings.meetings import COMPOSE_JOB, being_finished
from recordings.models import Recording
from recordings.processing import PROCESS_JOB, content_type
from recordings.schemas import (
    PositionIn,
    PositionOut,
    RecordingFilters,
    RecordingMedia,
    RecordingOut,
    RecordingPatch,
    Rendition,
    RetentionIn,
    RetentionOut,
    StartRecording,
)
from recordings.storage import MediaStorage, remote_storage
from streaming.access import lesson_room_id
from web.deps import CurrentPrincipal, DbSession, SettingsDep
from web.lesson_rooms import LessonRooms
from web.library_search import CommentHit, search_comments

router = APIRouter(prefix="/api/recordings", tags=["recordings"])

REPROCESS_WHILE_LIVE = "正在处理中，请等待完成后再重新处理"

MEDIA_TYPES = {
    "mp4": "video/mp4",
    "raw": "video/webm",
    "poster": "image/jpeg",
    "preview": "video/webm",
}


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
    outputs = {} if recording.media_deleted_at else (recording.outputs or {})
    preview = service.playing_preview(recording)
    raw_key = service.preview_key(recording) if preview else recording.raw_path
    raw_exists = bool(
        raw_key
        and not recording.media_deleted_at
        and ((media_root / raw_key).is_file() or outputs.get("stored") == "s3")
    )
    media = RecordingMedia(
        mp4=f"{base}?rendition=mp4" if outputs.get("mp4") else None,
        raw=f"{base}?rendition={'preview' if preview else 'raw'}" if raw_exists else None,
        poster=f"{base}?rendition=poster" if outputs.get("poster") else None,
        hls=f"/api/recordings/{recording.id}/hls/{PurePosixPath(outputs['hls']).name}"
        if outputs.get("hls")
        else None,
        thumbnails=f"/api/recordings/{recording.id}/thumbnails/{outputs['thumbnails']['index']}"
        if outputs.get("thumbnails")
        else None,
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


@router.get("/comment-hits", response_model=list[CommentHit])
def comment_hits(
    principal: CurrentPrincipal,
    session: DbSession,
    q: Annotated[str, Query(min_length=1, max_length=100)],
) -> list[CommentHit]:
    """听评课 comments containing every word of `q`, with their moment (teachers and admins;
    pupils and terminals get 403: they never read comments)."""
    return search_comments(session, principal, q)


@router.post("/start", response_model=RecordingOut, status_code=201)
async def start(
    body: StartRecording,
    principal: CurrentPrincipal,
    request: Request,
    settings: SettingsDep,
    active: Active,
) -> RecordingOut:
    """Record a sync group's live room by hand (meetings, a lesson outside the timetable);
    with SFU workers, the worker hosting the room records it."""
    if request.app.state.sfu_cluster is not None:
        return await _start_on_worker(body, principal, request, settings)
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
    return await _recording_out(sessions, recording_id, media_root=settings.media_root)


async def _recording_out(
    sessions: sessionmaker[Session], recording_id: int, *, media_root: Path
) -> RecordingOut:
    """A started or stopped recording as it is now, read in a thread: these routes run on
    the event loop, which the in-process SFU shares with them (a slow database there would
    freeze every live lesson)."""

    def read() -> RecordingOut:
        with sessions() as session:
            return _out(session.get_one(Recording, recording_id), media_root=media_root)

    return await asyncio.to_thread(read)


def _drop_unstarted(sessions: sessionmaker[Session], recording_id: int) -> None:
    with transaction(sessions) as session:  # nothing half-saved
        session.delete(session.get_one(Recording, recording_id))


def _sync_group_to_stop(
    sessions: sessionmaker[Session], principal: Principal, recording_id: int
) -> int | None:
    with sessions() as session:
        recording = service.get_visible(session, principal, recording_id)
        service.authorize_manage(principal, recording)
        return recording.sync_group_id


async def _start_on_worker(
    body: StartRecording, principal: Principal, request: Request, settings: Settings
) -> RecordingOut:
    from streaming.relay import command_recording

    sessions = request.app.state.sessions
    row = await asyncio.to_thread(  # who may record is checked here, not in the worker
        service.new_recording_row,
        sessions,
        sync_group_id=body.sync_group_id,
        topic=body.topic,
        principal=principal,
    )
    recording_id = row.recording_id
    try:
        await command_recording(
            request.app.state.sfu_cluster,
            secret=settings.secret_key,
            room_id=lesson_room_id(body.sync_group_id),
            command={
                "action": "start",
                "recording_id": recording_id,
                "sync_group_id": body.sync_group_id,
            },
        )
    except AppError:
        await asyncio.to_thread(_drop_unstarted, sessions, recording_id)
        raise
    return await _recording_out(sessions, recording_id, media_root=settings.media_root)


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
    sync_group_id = await asyncio.to_thread(_sync_group_to_stop, sessions, principal, recording_id)
    cluster = request.app.state.sfu_cluster
    if cluster is None:
        await service.stop_recording(active, recording_id)
    elif sync_group_id is None:
        raise ConflictError("这段录像没有在录制")
    else:
        from streaming.relay import command_recording

        await command_recording(
            cluster,
            secret=settings.secret_key,
            room_id=lesson_room_id(sync_group_id),
            command={"action": "stop", "recording_id": recording_id},
        )
    return await _recording_out(sessions, recording_id, media_root=settings.media_root)


def _job_to_reprocess(
    sessions: sessionmaker[Session], principal: Principal, recording_id: int, *, lease_s: float
) -> tuple[str, str | None]:
    """The job that processes the recording again, and the job id the row notes now. Refused
    while a process finishes a meeting's recording (its preview, on a lease of ``lease_s``)."""
    with sessions() as session:
        recording = service.get_visible(session, principal, recording_id)
        service.authorize_manage(principal, recording)
        if recording.research_session_id is None:
            job = PROCESS_JOB
        elif being_finished(session, recording_id, lease_s=lease_s):
            raise ConflictError(REPROCESS_WHILE_LIVE, detail={"finishing": recording_id})
        else:
            job = COMPOSE_JOB
        return job, recording.job_id


@router.post("/{recording_id}/process", response_model=RecordingOut)
async def reprocess(
    recording_id: int,
    principal: CurrentPrincipal,
    request: Request,
    settings: SettingsDep,
) -> RecordingOut:
    """Run processing again (idempotent: the outputs are replaced whole). A 教研 meeting is composed
    again from its teachers' files first (also how one whose recording process died is
    recovered: the files are crash-safe). Refused (409) while the job the row notes is live
    (queued or running: ``JobQueue.live``, what the recovery sweep asks too; queued, the row may
    still say ready) or a process makes a meeting's preview (its lease runs): a second would run
    beside it on the same outputs. A job or finisher that died is run again. The job's id is
    noted before it is queued, by the recovery sweep's compare-and-set (``requeue.swap_job``): a
    sweep resuming the same lost job meanwhile does not queue it twice. The database is read and
    written in threads, as in ``start``: this runs on the loop the in-process SFU forwards on."""
    sessions = request.app.state.sessions
    job, noted = await asyncio.to_thread(
        _job_to_reprocess,
        sessions,
        principal,
        recording_id,
        lease_s=settings.recording_meeting_finish_lease_seconds,
    )
    jobs: JobQueue = request.app.state.jobs
    if noted is not None and await jobs.live(noted):
        raise ConflictError(REPROCESS_WHILE_LIVE, detail={"job_id": noted})
    job_id = uuid.uuid4().hex
    # noted before it is queued, by the sweep's compare-and-set: of this and a sweep resuming
    # the same lost job, one queues it (False: the sweep did, just now)
    if await asyncio.to_thread(
        requeue.swap_job, sessions, recording_id=recording_id, noted=noted, job_id=job_id
    ):
        await jobs.enqueue(job, job_id=job_id, recording_id=recording_id)
    return await _recording_out(sessions, recording_id, media_root=settings.media_root)


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


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """The first range of a ``Range: bytes=...`` header as (start, end), inclusive; None for
    no header or one we ignore (the whole file is sent). Raises 416 when it starts past the end."""
    units, _, ranges = header.partition("=")
    first = ranges.split(",")[0].strip()
    if units.strip().lower() != "bytes" or "-" not in first:
        return None
    start_text, _, end_text = first.partition("-")
    start_text, end_text = start_text.strip(), end_text.strip()
    if not start_text:
        if not end_text.isdigit() or int(end_text) == 0:
            return None
        return max(size - int(end_text), 0), size - 1  # the last n bytes
    if not start_text.isdigit() or (end_text and not end_text.isdigit()):
        return None
    start = int(start_text)
    if start >= size:
        raise StarletteHTTPException(416, headers={"Content-Range": f"bytes */{size}"})
    end = min(int(end_text), size - 1) if end_text else size - 1
    return (start, end) if end >= start else None


def stream_stored(
    storage: MediaStorage, key: str, *, size: int, media_type: str, range_header: str
) -> StreamingResponse:
    """An object of the bucket passed on with HTTP Range (206), read in chunks."""
    headers = {"Accept-Ranges": "bytes", "Cache-Control": "private, no-store"}
    wanted = parse_range(range_header, size)
    if size == 0:
        return StreamingResponse(iter(()), media_type=media_type, headers=headers)
    start, end = wanted if wanted is not None else (0, size - 1)
    headers["Content-Length"] = str(end - start + 1)
    if wanted is not None:
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    return StreamingResponse(
        storage.read_range(key, start, end),
        status_code=206 if wanted is not None else 200,
        media_type=media_type,
        headers=headers,
    )


def serve_media(
    settings: Settings,
    key: str,
    *,
    media_type: str,
    request: Request,
    download_name: str | None = None,
) -> Response:
    """A recording's file from local disk, or else from the bucket; the caller has checked
    the viewer may see it. With ``download_name`` the browser saves it under that name."""
    path = service.local_file(settings.media_root, key)
    if path is not None:
        parse_range(request.headers.get("range", ""), path.stat().st_size)  # 416 past the end
        return FileResponse(
            path,
            media_type=media_type,
            headers={"Cache-Control": "private, no-store"},
            filename=download_name,
            content_disposition_type="attachment" if download_name else "inline",
        )
    remote = remote_storage(settings)
    stored = remote.size(key) if remote is not None else None
    if remote is None or stored is None:
        raise NotFoundError("录像文件不存在")
    response = stream_stored(
        remote,
        key,
        size=stored,
        media_type=media_type,
        range_header=request.headers.get("range", ""),
    )
    if download_name:
        response.headers["Content-Disposition"] = (
            f"attachment; filename*=utf-8''{quote(download_name)}"
        )
    return response


class MediaAccess:
    """What every media route needs: who asks, the database, where files live, the request."""

    def __init__(
        self,
        principal: CurrentPrincipal,
        session: DbSession,
        settings: SettingsDep,
        request: Request,
    ) -> None:
        self.principal = principal
        self.session = session
        self.settings = settings
        self.request = request


MediaRequest = Annotated[MediaAccess, Depends()]
MediaKind = Literal["rendition", "hls", "thumbnails", "download"]


def _serve_media(access: MediaAccess, kind: MediaKind, recording_id: int, name: str) -> Response:
    """One recording file after the viewer's permission check, for every request: a rendition
    (``name``: mp4, raw, poster), an HLS playlist or segment, a thumbnail file, or the download
    (the MP4 when made, else the raw WebM, named after the title)."""
    recording = service.get_visible(access.session, access.principal, recording_id)
    download_name = None
    if kind == "hls":
        key, media_type = service.hls_key(recording, name), content_type(name)
    elif kind == "thumbnails":
        key, media_type = service.thumbnails_key(recording, name), content_type(name)
    else:
        rendition: Rendition = cast(Rendition, name)
        if kind == "download":
            outputs = recording.outputs or {}
            preview = service.playing_preview(recording)
            rendition = "mp4" if outputs.get("mp4") else "preview" if preview else "raw"
            title = re.sub(r'[\\/:*?"<>|\s]+', "_", recording.title).strip("_")
            suffix = ".mp4" if rendition == "mp4" else ".webm"
            download_name = (title or f"recording-{recording.id}") + suffix
        key, media_type = service.media_key(recording, rendition), MEDIA_TYPES[rendition]
    return serve_media(
        access.settings,
        key,
        media_type=media_type,
        request=access.request,
        download_name=download_name,
    )


@router.get(
    "/{recording_id}/media",
    response_class=Response,
    responses={200: {"content": {"video/mp4": {}, "video/webm": {}, "image/jpeg": {}}}},
)
def media(recording_id: int, access: MediaRequest, rendition: Rendition = "mp4") -> Response:
    """The file, with HTTP Range support so players can seek; only ever through this route."""
    return _serve_media(access, "rendition", recording_id, rendition)


@router.get(
    "/{recording_id}/hls/{path:path}",
    response_class=Response,
    responses={200: {"content": {"application/vnd.apple.mpegurl": {}, "video/iso.segment": {}}}},
)
def hls(recording_id: int, path: str, access: MediaRequest) -> Response:
    """HLS master playlist (`master.m3u8`), rendition playlists and fMP4 segments; the same
    permission check as the MP4, for every request."""
    return _serve_media(access, "hls", recording_id, path)


@router.get(
    "/{recording_id}/thumbnails/{name}",
    response_class=Response,
    responses={200: {"content": {"text/vtt": {}, "image/jpeg": {}}}},
)
def thumbnails(recording_id: int, name: str, access: MediaRequest) -> Response:
    """The thumbnail sprite and its WebVTT index (tiles as `sprite.jpg#xywh=x,y,w,h`)."""
    return _serve_media(access, "thumbnails", recording_id, name)


@router.get(
    "/{recording_id}/download",
    response_class=Response,
    responses={200: {"content": {"video/mp4": {}, "video/webm": {}}}},
)
def download(recording_id: int, access: MediaRequest) -> Response:
    """Save the lesson: the MP4 when it is made, else the raw WebM; named after its title."""
    return _serve_media(access, "download", recording_id, "")


@router.patch("/{recording_id}", response_model=RecordingOut)
def patch(
    recording_id: int,
    body: RecordingPatch,
    principal: CurrentPrincipal,
    session: DbSession,
    settings: SettingsDep,
) -> RecordingOut:
    """Edit title, topic (search follows) or `keep` (exempt from the retention rule)."""
    recording = service.get_visible(session, principal, recording_id)
    service.update_recording(
        session, principal, recording, title=body.title, topic=body.topic, keep=body.keep
    )
    return _out(recording, media_root=settings.media_root)


@router.get("/retention/{alliance_id}", response_model=RetentionOut)
def get_retention(
    alliance_id: int, principal: CurrentPrincipal, session: DbSession
) -> RetentionOut:
    """How many days after the lesson the alliance keeps recordings' files (null: no limit)."""
    keep_days = service.retention_of(session, principal, alliance_id)
    return RetentionOut(alliance_id=alliance_id, keep_days=keep_days)


@router.put("/retention/{alliance_id}", response_model=RetentionOut)
def put_retention(
    alliance_id: int, body: RetentionIn, principal: CurrentPrincipal, session: DbSession
) -> RetentionOut:
    """Set the alliance's rule (alliance administrators); `tongke recordings expire`, or the
    `expire_recordings` job, deletes the files past it. Recordings marked `keep` stay."""
    keep_days = service.set_retention(session, principal, alliance_id, keep_days=body.keep_days)
    return RetentionOut(alliance_id=alliance_id, keep_days=keep_days)


@router.delete("/{recording_id}", status_code=204)
def delete(
    recording_id: int,
    principal: CurrentPrincipal,
    session: DbSession,
    settings: SettingsDep,
    active: Active,
) -> Response:
    """Delete a recording and every file of it (local disk and object storage)."""
    recording = service.get_visible(session, principal, recording_id)
    service.authorize_manage(principal, recording)
    service.delete_recording(
        session,
        recording=recording,
        media_root=settings.media_root,
        remote=remote_storage(settings),
        active=active,
    )
    return Response(status_code=204)


@router.post("/{recording_id}/position", response_model=PositionOut)
def position(
    recording_id: int, body: PositionIn, principal: CurrentPrincipal, session: DbSession
) -> PositionOut:
    """Where the viewer is (resume point); the first report of a viewing counts a replay."""
    recording = service.get_visible(session, principal, recording_id)
    view = service.record_position(session, principal, recording, position_s=body.position_s)
    return PositionOut(recording_id=recording.id, position_s=view.position_s, replays=view.replays)
