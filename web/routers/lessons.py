"""Live synchronized lessons: the signaling WebSocket to the SFU, and the 巡课 list of rooms."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, FastAPI, Request, WebSocket
from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocketState

from common.accounts import service as accounts
from common.alliance.models import SyncGroup
from common.db import transaction
from common.errors import AppError, AuthenticationError, PermissionDeniedError
from streaming.access import lesson_identity
from streaming.sfu.identity import ParticipantIdentity
from web.deps import SESSION_COOKIE, CurrentPrincipal, DbSession, principal_of
from web.lesson_rooms import LessonRooms

router = APIRouter(tags=["lessons"])


def _same_origin(websocket: WebSocket) -> bool:
    # Browsers send cookies on cross-site WebSocket handshakes: the Origin must be ours.
    origin = websocket.headers.get("origin")
    if origin is None:
        return True  # not a browser (terminals and bots use tokens anyway)
    return urlsplit(origin).netloc == websocket.headers.get("host")


def _identify(app: FastAPI, websocket: WebSocket, group_id: int) -> ParticipantIdentity:
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
        return lesson_identity(
            session, principal_of(account), group_id, display_name=account.display_name
        )


@router.websocket("/ws/lessons/{group_id}")
async def lesson_socket(websocket: WebSocket, group_id: int) -> None:
    """Signaling protocol v1 (see streaming/signaling.py) for one sync group's live lesson.

    Authenticate with the browser session cookie, or `?token=` for terminals and scripts.
    """
    try:
        identity = await run_in_threadpool(_identify, websocket.app, websocket, group_id)
    except AppError as exc:
        await websocket.accept()
        await websocket.send_json(
            {"v": 1, "type": "error", "code": exc.code, "message": exc.message}
        )
        await websocket.close(code=4000 + exc.status_code)
        return
    from streaming.signaling import serve_participant  # aiortc loads with the first lesson

    await websocket.accept()
    await serve_participant(
        websocket.send_json, websocket.receive_text, identity, websocket.app.state.rooms.registry()
    )
    if websocket.client_state is WebSocketState.CONNECTED:
        await websocket.close()


@router.get("/api/live-lessons")
async def live_lessons(
    principal: CurrentPrincipal, session: DbSession, request: Request
) -> list[dict[str, Any]]:
    """巡课: the synchronized lessons live right now that the caller may look in on."""
    lesson_rooms: LessonRooms = request.app.state.rooms
    if not lesson_rooms.started:
        return []
    rooms = lesson_rooms.registry()
    live = []
    for room_id in await rooms.room_ids():
        if not room_id.startswith("sync-") or not room_id[5:].isdigit():
            continue
        room = await rooms.get(room_id)
        if room is None:
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
                "participants": room.visible_participants(),
                "websocket": f"/ws/lessons/{group.id}",
            }
        )
    return live
