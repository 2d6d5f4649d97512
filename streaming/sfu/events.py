"""Room events for recording and research: lesson start/end, publishers, hands, speakers."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from common.logging import get_logger

log = get_logger(__name__)

RoomEventKind = Literal[
    "lesson_started",
    "lesson_ended",
    "participant_joined",
    "participant_left",
    "publisher_joined",
    "publisher_left",
    "hand_raised",
    "hand_lowered",
    "hand_accepted",
    "hand_revoked",
    "speaker_changed",
    "muted_all",
    "spotlight_changed",
    "screen_share_changed",
    "recording_started",
    "recording_stopped",
    "room_closed",
]

EventListener = Callable[["RoomEvent"], Awaitable[None] | None]


@dataclass(frozen=True, slots=True)
class RoomEvent:
    kind: RoomEventKind
    room_id: str
    participant_id: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)
    at: float = field(default_factory=time.time)


class EventStream:
    """A bounded queue of events; when the consumer falls behind the oldest are dropped."""

    def __init__(self, hub: EventHub, maxsize: int) -> None:
        self._hub = hub
        self._queue: asyncio.Queue[RoomEvent | None] = asyncio.Queue(maxsize)
        self.dropped = 0

    def _put(self, event: RoomEvent | None) -> None:
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(event)

    def close(self) -> None:
        self._hub._streams.discard(self)

    async def __aiter__(self) -> AsyncIterator[RoomEvent]:
        while True:
            event = await self._queue.get()
            if event is None:
                return
            yield event


class EventHub:
    """Fan-out of a room's events to listeners (callbacks) and streams (async iterators).

    Emitting never waits: a listener's coroutine runs as a task the hub owns.
    """

    def __init__(self) -> None:
        self._listeners: list[EventListener] = []
        self._streams: set[EventStream] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.history: list[RoomEvent] = []

    def listen(self, listener: EventListener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def subscribe(self, *, maxsize: int = 256) -> EventStream:
        stream = EventStream(self, maxsize)
        self._streams.add(stream)
        return stream

    def emit(self, event: RoomEvent) -> None:
        self.history.append(event)
        for listener in list(self._listeners):
            try:
                result = listener(event)
            except Exception:
                log.exception("room_event_listener_failed", kind=event.kind)
                continue
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        for stream in self._streams:
            stream._put(event)

    async def close(self) -> None:
        for stream in list(self._streams):
            stream._put(None)
        self._streams.clear()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
