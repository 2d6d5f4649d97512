"""Signaling protocol v1 between a classroom terminal (or browser) and the SFU.

Transport-agnostic: the web layer hands ``serve_participant`` two coroutines that send and
receive one JSON object each (a FastAPI WebSocket's ``send_json``/``receive_json``), the
identity it authenticated, and the room registry::

    @router.websocket("/ws/lessons/{room_id}")
    async def lesson_socket(websocket: WebSocket, identity: StreamIdentity) -> None:
        await websocket.accept()
        await serve_participant(websocket.send_json, websocket.receive_text, identity, rooms)

``receive`` may return a parsed ``dict`` or the raw text (then the size cap is exact).

Client → SFU: ``join {room, board?}``, ``offer {sdp}``, ``candidate {candidate, sdpMid}``,
``raise_hand``, ``lower_hand``, ``accept_hand {participant}``, ``revoke_hand {participant}``,
``inspect {participant|null}``, ``video_quality {quality: "auto"|"low"}`` ("low": only the base
temporal layer of the videos one receives), ``leave``; in a research meeting also ``lower_hand
{participant}`` (host), ``mute {participant?}`` / ``unmute {participant?}`` (oneself, or the
host for someone: unmuting someone lets them speak), ``mute_all {lock?}``, ``unlock_audio``,
``spotlight {participant|null}`` (host), ``share_screen {sharing}``, ``start_recording`` /
``stop_recording`` (host: the meeting goes into the recordings library).
SFU → client: ``joined {participant, role, media, participants}``, ``answer {sdp}``,
``participants {participants}`` (inspectors never listed), ``slots {slots}``,
``speaker {participant}``, ``meeting {spotlight, screen, audio_locked, recording}``,
``video_quality {quality}`` (the choice is applied), ``left``,
``closed``,
``error {code, message}`` (message in Chinese).
Every message carries ``"v": 1``. The client creates one transceiver per ``media`` entry, in
order (``send`` → sendonly, ``recv`` → recvonly), VP8 and Opus only, and offers; the SFU
answers with all its candidates (trickling the client's candidates is optional).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from aiortc.sdp import SessionDescription
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from common.logging import get_logger
from streaming.sfu.errors import StreamingError
from streaming.sfu.identity import ParticipantIdentity
from streaming.sfu.layout import primary_video_slot
from streaming.sfu.participant import Participant
from streaming.sfu.registry import RoomRegistry
from streaming.sfu.room import Room

log = get_logger(__name__)

PROTOCOL_VERSION = 1
MAX_MESSAGE_BYTES = 64 * 1024
OUTBOX_SIZE = 256
MAX_ERRORS = 20

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any] | str | bytes]]


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    v: Literal[1]


class Join(_Message):
    type: Literal["join"]
    room: str = Field(min_length=1, max_length=200)
    board: bool = False


class Offer(_Message):
    type: Literal["offer"]
    sdp: str = Field(min_length=1)


class Candidate(_Message):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    type: Literal["candidate"]
    candidate: str | None = Field(default=None, max_length=1000)
    sdp_mid: str | None = Field(default=None, alias="sdpMid", max_length=64)


class RaiseHand(_Message):
    type: Literal["raise_hand"]


class LowerHand(_Message):
    type: Literal["lower_hand"]
    participant: str | None = Field(default=None, max_length=200)


class AcceptHand(_Message):
    type: Literal["accept_hand"]
    participant: str = Field(min_length=1, max_length=200)


class RevokeHand(_Message):
    type: Literal["revoke_hand"]
    participant: str = Field(min_length=1, max_length=200)


class Inspect(_Message):
    type: Literal["inspect"]
    participant: str | None = Field(default=None, max_length=200)


class Leave(_Message):
    type: Literal["leave"]


class Mute(_Message):
    type: Literal["mute"]
    participant: str | None = Field(default=None, max_length=200)


class Unmute(_Message):
    type: Literal["unmute"]
    participant: str | None = Field(default=None, max_length=200)


class MuteAll(_Message):
    type: Literal["mute_all"]
    lock: bool = False


class UnlockAudio(_Message):
    type: Literal["unlock_audio"]


class Spotlight(_Message):
    type: Literal["spotlight"]
    participant: str | None = Field(default=None, max_length=200)


class ShareScreen(_Message):
    type: Literal["share_screen"]
    sharing: bool


class SetVideoQuality(_Message):
    """What this subscriber wants of the video it receives: ``low`` = base temporal layer only
    (a weak link, a small tile), ``auto`` = as much as its link carries."""

    type: Literal["video_quality"]
    quality: Literal["auto", "low"]


class StartRecording(_Message):
    type: Literal["start_recording"]


class StopRecording(_Message):
    type: Literal["stop_recording"]


ClientMessage = Annotated[
    Join
    | Offer
    | Candidate
    | RaiseHand
    | LowerHand
    | AcceptHand
    | RevokeHand
    | Inspect
    | Leave
    | Mute
    | Unmute
    | MuteAll
    | UnlockAudio
    | Spotlight
    | ShareScreen
    | SetVideoQuality
    | StartRecording
    | StopRecording,
    Field(discriminator="type"),
]
MESSAGE_TYPES = frozenset(
    {
        "join",
        "offer",
        "candidate",
        "raise_hand",
        "lower_hand",
        "accept_hand",
        "revoke_hand",
        "inspect",
        "leave",
        "mute",
        "unmute",
        "mute_all",
        "unlock_audio",
        "spotlight",
        "share_screen",
        "video_quality",
        "start_recording",
        "stop_recording",
    }
)
_client_message: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)


class SignalingError(StreamingError):
    code = "invalid_message"


def error_message(code: str, message: str) -> dict[str, Any]:
    return {"v": PROTOCOL_VERSION, "type": "error", "code": code, "message": message}


def parse_message(raw: dict[str, Any] | str | bytes) -> ClientMessage:
    """Validate one client message; raise ``SignalingError`` with a Chinese message."""
    if isinstance(raw, str | bytes):
        if len(raw) > MAX_MESSAGE_BYTES:
            raise SignalingError("消息过大（上限 64 KiB）", code="message_too_large")
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            raise SignalingError("消息不是有效的 JSON", code="invalid_json") from exc
    elif len(json.dumps(raw, ensure_ascii=False).encode()) > MAX_MESSAGE_BYTES:
        raise SignalingError("消息过大（上限 64 KiB）", code="message_too_large")
    if not isinstance(raw, dict):
        raise SignalingError("消息必须是 JSON 对象", code="invalid_message")
    if raw.get("v") != PROTOCOL_VERSION:
        raise SignalingError("不支持的协议版本，请使用 v=1", code="unsupported_version")
    kind = raw.get("type")
    if kind not in MESSAGE_TYPES:
        raise SignalingError(f"未知的消息类型：{str(kind)[:40]}", code="unknown_type")
    try:
        message = _client_message.validate_python(raw)
    except ValidationError as exc:
        fields = ", ".join(".".join(str(part) for part in e["loc"][1:]) for e in exc.errors())
        raise SignalingError(
            f"消息字段错误：{fields}", code="invalid_message", detail=exc.errors()
        ) from exc
    if isinstance(message, Offer):
        check_sdp(message.sdp)
    return message


def check_sdp(sdp: str) -> None:
    """Reject what aiortc's parser cannot read, before it touches a peer connection."""
    if not sdp.startswith("v=0"):
        raise SignalingError("SDP 格式错误：应以 v=0 开头", code="malformed_sdp")
    try:
        description = SessionDescription.parse(sdp)
    except Exception as exc:  # aiortc's parser raises ValueError, KeyError, IndexError...
        raise SignalingError("SDP 格式错误", code="malformed_sdp", detail=repr(exc)) from exc
    if not description.media:
        raise SignalingError("SDP 中没有媒体行", code="malformed_sdp")


class _Session:
    """One participant's signaling session; owns its outbox writer task."""

    def __init__(
        self, send: Send, receive: Receive, identity: ParticipantIdentity, rooms: RoomRegistry
    ) -> None:
        self._send = send
        self._receive = receive
        self._identity = identity
        self._rooms = rooms
        self._outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue(OUTBOX_SIZE)
        self._held: list[dict[str, Any]] | None = []  # room messages held until "joined"
        self._gone = asyncio.Event()
        self._room: Room | None = None
        self._participant: Participant | None = None
        self._errors = 0

    def notify(self, message: dict[str, Any]) -> None:
        """Called by the room; never blocks it. A client that stops reading is dropped."""
        if self._held is not None:
            self._held.append(message)
            return
        try:
            self._outbox.put_nowait(message)
        except asyncio.QueueFull:
            log.warning("signaling_outbox_full", participant=self._identity.participant_id)
            self._gone.set()

    def _reply(self, message: dict[str, Any]) -> None:
        try:
            self._outbox.put_nowait(message)
        except asyncio.QueueFull:
            self._gone.set()

    async def _write(self) -> None:
        try:
            while True:
                await self._send(await self._outbox.get())
        except asyncio.CancelledError:
            raise
        except Exception:
            log.info("signaling_send_failed", participant=self._identity.participant_id)
            self._gone.set()

    async def run(self) -> None:
        writer = asyncio.ensure_future(self._write())
        try:
            await self._serve()
        finally:
            await self._leave()
            await self._flush(writer)

    async def _flush(self, writer: asyncio.Future[None]) -> None:
        """Give the writer a moment to deliver the last replies (e.g. ``left``)."""
        for _ in range(100):
            if self._gone.is_set() or self._outbox.empty() or writer.done():
                break
            await asyncio.sleep(0.01)
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)

    async def _serve(self) -> None:
        while not self._gone.is_set():
            raw = await self._next_raw()
            if raw is None:
                return
            try:
                message = parse_message(raw)
                if await self._handle(message):
                    return
            except StreamingError as exc:
                self._errors += 1
                log.info(
                    "signaling_error",
                    participant=self._identity.participant_id,
                    code=exc.code,
                    detail=str(exc.detail)[:500] if exc.detail else None,
                )
                self._reply(error_message(exc.code, exc.message))
                if self._errors >= MAX_ERRORS:
                    self._reply(error_message("too_many_errors", "错误消息过多，连接已关闭"))
                    return

    async def _next_raw(self) -> dict[str, Any] | str | bytes | None:
        receiving = asyncio.ensure_future(self._receive())
        gone = asyncio.ensure_future(self._gone.wait())
        try:
            await asyncio.wait({receiving, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
        if not receiving.done():
            receiving.cancel()
            await asyncio.gather(receiving, return_exceptions=True)
            return None
        if receiving.exception() is not None:
            return None  # the transport closed
        return receiving.result()

    def _joined(self) -> tuple[Room, Participant]:
        if self._room is None or self._participant is None:
            raise SignalingError("消息顺序错误：请先加入课堂", code="out_of_order")
        participant = self._participant
        while participant.replacement is not None:
            participant = participant.replacement
        self._participant = participant
        return self._room, participant

    async def _handle(self, message: ClientMessage) -> bool:
        """Handle one message; True when the session is over."""
        if isinstance(message, Join):
            await self._join(message)
            return False
        room, participant = self._joined()
        match message:
            case Offer(sdp=sdp):
                answer = await room.negotiate(participant, sdp)
                self._reply({"v": PROTOCOL_VERSION, "type": "answer", "sdp": answer})
            case Candidate(candidate=candidate, sdp_mid=sdp_mid):
                if candidate:  # an empty candidate marks the end of gathering
                    await participant.add_ice_candidate(candidate, sdp_mid)
            case RaiseHand():
                room.raise_hand(participant)
            case LowerHand(participant=target):
                room.lower_hand(participant, target)
            case AcceptHand(participant=target):
                room.accept_hand(participant, target)
            case RevokeHand(participant=target):
                room.revoke_hand(participant, target)
            case Inspect(participant=target):
                room.inspect(participant, target)
            case Mute(participant=target):
                room.mute(participant, target)
            case Unmute(participant=target):
                room.unmute(participant, target)
            case MuteAll(lock=lock):
                room.mute_all(participant, lock=lock)
            case UnlockAudio():
                room.unlock_audio(participant)
            case Spotlight(participant=target):
                room.set_spotlight(participant, target)
            case ShareScreen(sharing=sharing):
                room.share_screen(participant, sharing)
            case SetVideoQuality(quality=quality):
                participant.set_quality(quality, primary_video_slot(participant.layout))
                self._reply({"v": PROTOCOL_VERSION, "type": "video_quality", "quality": quality})
            case StartRecording():
                await room.start_recording(participant)
            case StopRecording():
                await room.stop_recording(participant)
            case Leave():
                await self._leave()
                self._reply({"v": PROTOCOL_VERSION, "type": "left"})
                return True
        return False

    async def _join(self, message: Join) -> None:
        if self._room is not None:
            raise SignalingError("已经加入课堂", code="out_of_order")
        identity = self._identity
        if message.room != identity.room_id:
            raise SignalingError("无权加入该课堂", code="forbidden")
        room = await self._rooms.open(identity.room_id, kind=identity.room_kind)
        participant = await room.join(identity, notify=self.notify, board=message.board)
        self._room, self._participant = room, participant
        joined = {
            "v": PROTOCOL_VERSION,
            "type": "joined",
            "participant": identity.participant_id,
            "role": identity.role,
            "host": identity.host,
            "room": identity.room_id,
            "media": [line.as_message() for line in participant.layout],
            "participants": room.visible_participants(),
        }
        if room.kind == "meeting":
            joined["meeting"] = room.meeting_state()
        self._reply(joined)
        held, self._held = self._held or [], None
        for queued in held:
            self.notify(queued)

    async def _leave(self) -> None:
        room, participant = self._room, self._participant
        self._room = self._participant = None
        if room is None or participant is None:
            return
        while participant.replacement is not None:
            participant = participant.replacement
        await room.leave(participant)
        await self._rooms.release(room)


async def serve_participant(
    send: Send, receive: Receive, identity: ParticipantIdentity, rooms: RoomRegistry
) -> None:
    """Run one participant's signaling session until it leaves or its transport closes."""
    await _Session(send, receive, identity, rooms).run()
