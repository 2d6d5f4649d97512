"""Live rooms: the signaling WebSockets to the SFU (synchronized lessons and online research
meetings), and the 巡课 list of rooms."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, FastAPI, Request, WebSocket
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocketDisconnect, WebSocketState

from common.accounts import service as accounts
from common.accounts.models import Account
from common.accounts.permissions import Principal
from common.alliance.models import SyncGroup
from common.db import transaction
from common.errors import AppError, AuthenticationError, PermissionDeniedError
from recordings.service import live_recording_alert
from streaming.access import (
    lesson_identity,
    meeting_identity,
    meeting_listing,
    research_session_of_room,
)
from streaming.lifecycle import LessonClock
from streaming.sfu.identity import ParticipantIdentity
from web.deps import SESSION_COOKIE, CurrentPrincipal, DbSession, principal_of
from web.lesson_rooms import LessonRooms

if TYPE_CHECKING:
    from streaming.meetings import MeetingTrackers

router = APIRouter(tags=["lessons"])


def _same_origin(websocket: WebSocket) -> bool:
    # Browsers send cookies on cross-site WebSocket handshakes: the Origin must be ours.
    origin = websocket.headers.get("origin")
    if origin is None:
        return True  # not a browser (terminals and bots use tokens anyway)
    return urlsplit(origin).netloc == websocket.headers.get("host")


IdentityOf = Callable[[Session, Account, Principal], ParticipantIdentity]


def _identify(app: FastAPI, websocket: WebSocket, identity_of: IdentityOf) -> ParticipantIdentity:
    token = websocket.query_params.get("token")
    via_cookie = token is None
    secret = token or websocket.cookies.get(SESSION_COOKIE)
    if not secret:
        raise AuthenticationError("请先登录或配对教室终端")
    if via_cookie and not _same_origin(websocket):
        raise PermissionDeniedError("跨站连接被拒绝")
    with transaction(app.state.sessions) as session:
        found = accounts.resolve_token(session, secret)
        if found is None or found[1].kind == "calendar":
            raise AuthenticationError("登录已失效，请重新登录")
        account, _ = found
        return identity_of(session, account, principal_of(account))


@router.websocket("/ws/lessons/{group_id}")
async def lesson_socket(websocket: WebSocket, group_id: int) -> None:
    """Signaling protocol v1 (see streaming/signaling.py) for one sync group's live lesson.

    Authenticate with the browser session cookie, or `?token=` for terminals and scripts.
    """

    def identity_of(db: Session, account: Account, principal: Principal) -> ParticipantIdentity:
        return lesson_identity(db, principal, group_id, display_name=account.display_name)

    await _serve_socket(websocket, identity_of)


@router.websocket("/ws/research/{session_id}")
async def research_socket(websocket: WebSocket, session_id: int) -> None:
    """Signaling protocol v1 for one research session's online meeting (教研): members
    publish, the host has the meeting controls, principals and the bureau look in unseen.
    Same authentication as the lesson socket."""
    clock = meeting_clock(websocket.app)

    def identity_of(db: Session, account: Account, principal: Principal) -> ParticipantIdentity:
        return meeting_identity(
            db, principal, session_id, display_name=account.display_name, now=clock.now()
        )

    await _serve_socket(websocket, identity_of)


def meeting_clock(app: FastAPI) -> LessonClock:
    """The clock meetings open by: the app's (tests fix it), else real time."""
    clock = getattr(app.state, "lesson_clock", None)
    return clock if isinstance(clock, LessonClock) else LessonClock()


def _meeting_trackers(app: FastAPI) -> MeetingTrackers:
    """The meeting rooms' trackers, recording with the process's one ``MeetingRecordings``
    (``app.state.meeting_recordings``, made at the start with rooms in process)."""
    trackers: MeetingTrackers | None = getattr(app.state, "meeting_trackers", None)
    if trackers is None:
        from streaming.meetings import MeetingTrackers

        trackers = app.state.meeting_trackers = MeetingTrackers(
            app.state.sessions,
            meeting_clock(app),
            recordings=getattr(app.state, "meeting_recordings", None),
        )
    return trackers


async def _serve_socket(websocket: WebSocket, identity_of: IdentityOf) -> None:
    try:
        identity = await run_in_threadpool(_identify, websocket.app, websocket, identity_of)
    except AppError as exc:
        await websocket.accept()
        await websocket.send_json(
            {"v": 1, "type": "error", "code": exc.code, "message": exc.message}
        )
        await websocket.close(code=4000 + exc.status_code)
        return
    await websocket.accept()
    cluster = websocket.app.state.sfu_cluster
    if cluster is not None:
        # Rooms live in SFU workers: relay this socket to the room's worker.
        from streaming.relay import relay_to_worker

        with contextlib.suppress(WebSocketDisconnect):  # the client left: nothing to tell it
            await relay_to_worker(
                websocket.send_text,
                websocket.receive_text,
                identity,
                cluster=cluster,
                secret=websocket.app.state.settings.secret_key,
            )
    else:
        from streaming.signaling import serve_participant  # aiortc loads with the first lesson

        registry = websocket.app.state.rooms.registry()
        room = None
        if identity.room_kind == "meeting":
            # Open the meeting here so its attendance is tracked from the first join.
            room = await registry.open(identity.room_id, kind="meeting")
            _meeting_trackers(websocket.app).ensure(room)
        try:
            await serve_participant(websocket.send_json, websocket.receive_text, identity, registry)
        finally:
            if room is not None:
                await registry.release(room)  # opened for a join that never came
    # Close unless either side already has (a send to a vanished client marks it closed).
    if WebSocketState.DISCONNECTED not in (websocket.client_state, websocket.application_state):
        with contextlib.suppress(WebSocketDisconnect):  # it vanished just now
            await websocket.close()


@router.get("/api/live-lessons")
async def live_lessons(
    principal: CurrentPrincipal, session: DbSession, request: Request
) -> list[dict[str, Any]]:
    """巡课: the synchronized lessons and online 教研 meetings (``kind`` "meeting") live right
    now that the caller may take part in or look in on."""
    now = meeting_clock(request.app).now()
    rooms = await _open_rooms(request.app)
    # who may see which room is read from the database: in the threadpool, as a plain route
    # would be, not on the loop the in-process SFU forwards every classroom on
    return await run_in_threadpool(_live_listing, session, principal, rooms, now)


def _live_listing(
    session: Session,
    principal: Principal,
    rooms: dict[str, list[dict[str, Any]]],
    now: datetime,
) -> list[dict[str, Any]]:
    live = []
    for room_id, participants in rooms.items():
        research_session_id = research_session_of_room(room_id)
        if research_session_id is not None:
            try:
                identity = meeting_identity(
                    session, principal, research_session_id, display_name="", now=now
                )
            except AppError:
                continue
            live.append(
                {
                    "kind": "meeting",
                    **meeting_listing(session, research_session_id),
                    "room": room_id,
                    "my_role": identity.role,
                    "participants": participants,
                    "websocket": f"/ws/research/{research_session_id}",
                }
            )
            continue
        if not room_id.startswith("sync-") or not room_id[5:].isdigit():
            continue
        try:
            identity = lesson_identity(session, principal, int(room_id[5:]), display_name="")
        except AppError:
            continue
        group = session.get_one(SyncGroup, int(room_id[5:]))
        live.append(
            {
                "sync_group_id": group.id,
                "code": group.code,
                "kind": group.kind,
                "my_role": identity.role,
                "participants": participants,
                "websocket": f"/ws/lessons/{group.id}",
                # a full or nearly full recording disk, shown on the 巡课 wall
                "recording_alert": live_recording_alert(session, group.id),
            }
        )
    return live


async def _open_rooms(app: FastAPI) -> dict[str, list[dict[str, Any]]]:
    """room id → its participants as the class sees them, wherever the rooms live."""
    cluster = app.state.sfu_cluster
    if cluster is not None:
        from streaming.relay import live_rooms

        return await live_rooms(cluster, secret=app.state.settings.secret_key)
    lesson_rooms: LessonRooms = app.state.rooms
    if not lesson_rooms.started:
        return {}
    rooms = lesson_rooms.registry()
    found = {}
    for room_id in await rooms.room_ids():
        room = await rooms.get(room_id)
        if room is not None:
            found[room_id] = room.visible_participants()
    return found
