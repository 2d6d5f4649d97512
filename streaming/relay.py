"""The web process's side of SFU workers: route a join to the room's worker and relay its
signaling frames both ways; list the rooms every worker hosts.

As in LiveKit's multi-node mode, the node a client's WebSocket lands on acts as a signaling
bridge to the node hosting the room, while media flows between the client and that node
directly. The browser keeps one origin (its session cookie, TLS at the reverse proxy) and the
workers' HTTP ports stay on the internal network.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import websockets
from websockets.asyncio.client import ClientConnection, connect

from common.errors import AppError, ConflictError
from common.logging import get_logger
from streaming.cluster import SfuCluster, WorkerInfo
from streaming.sfu.identity import ParticipantIdentity
from streaming.tickets import sign_ticket

log = get_logger(__name__)

SendText = Callable[[str], Awaitable[None]]
ReceiveText = Callable[[], Awaitable[str]]

MAX_FRAME_BYTES = 1 << 20  # the worker caps messages at 64 KiB itself and says so
CONNECT_TIMEOUT_S = 5.0
ROUTE_ATTEMPTS = 3
LISTING_TIMEOUT_S = 2.0


def _error(code: str, message: str) -> str:
    return json.dumps({"v": 1, "type": "error", "code": code, "message": message})


def _socket_url(worker: WorkerInfo) -> str:
    base = worker.url.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
    return f"{base}/sfu/ws"


async def _open_upstream(
    worker: WorkerInfo, identity: ParticipantIdentity, secret: str
) -> tuple[ClientConnection | None, dict[str, Any]]:
    """Connect to ``worker``; the socket (None if it refused) and its first frame."""
    ticket = sign_ticket(
        secret=secret, worker_id=worker.worker_id, purpose="join", identity=identity
    )
    upstream = await connect(
        _socket_url(worker),
        additional_headers={"Authorization": f"Bearer {ticket}"},
        open_timeout=CONNECT_TIMEOUT_S,
        max_size=MAX_FRAME_BYTES,
    )
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            first: dict[str, Any] = json.loads(await upstream.recv())
    except BaseException:
        await upstream.close()
        raise
    if first.get("type") == "route" and first.get("worker") == worker.worker_id:
        return upstream, first
    await upstream.close()
    return None, first


async def relay_to_worker(
    send: SendText,
    receive: ReceiveText,
    identity: ParticipantIdentity,
    *,
    cluster: SfuCluster,
    secret: str,
) -> None:
    """Find the worker hosting (or about to host) the identity's room and relay the
    participant's signaling there until either side closes."""
    upstream: ClientConnection | None = None
    for _ in range(ROUTE_ATTEMPTS):
        worker, owner = await cluster.placement(identity.room_id)
        if worker is None:
            log.info("sfu_no_worker", room=identity.room_id, owner=owner)
            break
        try:
            upstream, first = await _open_upstream(worker, identity, secret)
        except (OSError, TimeoutError, websockets.InvalidHandshake, websockets.ConnectionClosed):
            log.warning("sfu_worker_unreachable", worker=worker.worker_id, room=identity.room_id)
            await asyncio.sleep(0.2)
            continue
        if upstream is not None:
            break
        if first.get("type") == "error":
            await send(json.dumps(first, ensure_ascii=False))
            return
        # Another worker claimed the room between our look-up and the join: go there.
        log.info("sfu_room_moved", room=identity.room_id, owner=first.get("worker"))
    if upstream is None:
        await send(_error("sfu_unavailable", "课堂所在的媒体服务器暂时不可用，请稍后重试"))
        return
    async with upstream:
        await _pump(send, receive, upstream)


async def _pump(send: SendText, receive: ReceiveText, upstream: ClientConnection) -> None:
    async def downstream() -> None:
        async for frame in upstream:
            await send(frame if isinstance(frame, str) else frame.decode())

    async def upstream_frames() -> None:
        while True:
            await upstream.send(await receive())

    tasks = {
        asyncio.ensure_future(downstream()),
        asyncio.ensure_future(upstream_frames()),
    }
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def live_rooms(cluster: SfuCluster, *, secret: str) -> dict[str, list[dict[str, Any]]]:
    """room id → the participants the class sees, from every live worker (one that does not
    answer within ``LISTING_TIMEOUT_S`` is left out)."""
    workers = await cluster.workers()

    async def listing(client: httpx.AsyncClient, worker: WorkerInfo) -> list[dict[str, Any]]:
        ticket = sign_ticket(secret=secret, worker_id=worker.worker_id, purpose="rooms")
        try:
            response = await client.get(
                f"{worker.url}/sfu/rooms", headers={"Authorization": f"Bearer {ticket}"}
            )
            response.raise_for_status()
        except httpx.HTTPError as exc:
            log.warning("sfu_listing_failed", worker=worker.worker_id, error=str(exc))
            return []
        rooms: list[dict[str, Any]] = response.json()["rooms"]
        return rooms

    async with httpx.AsyncClient(timeout=LISTING_TIMEOUT_S) as client:
        found = await asyncio.gather(*(listing(client, worker) for worker in workers))
    rooms: dict[str, list[dict[str, Any]]] = {}
    for worker_rooms in found:
        for room in worker_rooms:
            with contextlib.suppress(KeyError, TypeError):
                rooms[room["room"]] = room["participants"]
    return rooms


RECORD_TIMEOUT_S = 10.0


class SfuUnavailableError(AppError):
    """No SFU worker could be reached for a room."""

    status_code = 503
    code = "sfu_unavailable"


async def command_recording(
    cluster: SfuCluster, *, secret: str, room_id: str, command: dict[str, Any]
) -> dict[str, Any]:
    """Have the worker hosting ``room_id`` (or, for a start, the one that should host it)
    start or stop a recording: ``command`` is ``{"action": "start", "recording_id",
    "sync_group_id"}`` or ``{"action": "stop", "recording_id"}``, already authorized here.
    A worker's refusal comes back as a ``ConflictError`` with its message."""
    async with httpx.AsyncClient(timeout=RECORD_TIMEOUT_S) as client:
        for _ in range(3):  # the room may move between looking it up and asking
            worker, _owner = await cluster.placement(room_id)
            if worker is None:
                raise SfuUnavailableError("媒体服务器暂时不可用，请稍后再试")
            ticket = sign_ticket(
                secret=secret, worker_id=worker.worker_id, purpose="record", command=command
            )
            try:
                response = await client.post(
                    f"{worker.url}/sfu/recordings", headers={"Authorization": f"Bearer {ticket}"}
                )
            except httpx.HTTPError as exc:
                log.warning("sfu_record_failed", worker=worker.worker_id, error=str(exc))
                raise SfuUnavailableError("媒体服务器暂时不可用，请稍后再试") from exc
            body: dict[str, Any] = response.json()
            if response.status_code == 409 and body.get("code") == "elsewhere":
                continue
            if response.status_code >= 400:
                log.warning("sfu_record_refused", worker=worker.worker_id, reply=body)
                if response.status_code == 409:
                    raise ConflictError(str(body.get("message", "录制操作被拒绝")))
                raise SfuUnavailableError("媒体服务器暂时不可用，请稍后再试")
            return body
    raise SfuUnavailableError("课堂正在迁移到另一台媒体服务器，请稍后再试")
