"""Event bus: publish small JSON events on dotted topics, subscribe by exact topic or glob.

``InProcessBus`` serves a single process (development, tests); ``RedisBus`` fans events out
to every process through redis pub/sub. Delivery is at-most-once: a subscriber that falls
behind loses its oldest events rather than slowing the publisher down.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import json
import re
import time
import uuid
from abc import ABC, abstractmethod
from types import TracebackType
from typing import Any, Self

import redis.asyncio as aioredis
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from common.logging import get_logger
from common.settings import Settings

log = get_logger(__name__)

DEFAULT_SUBSCRIBER_BUFFER = 1000
SUBSCRIBE_TIMEOUT_S = 10.0
_GLOB_CHARS = frozenset("*?[")


def _new_event_id() -> str:
    return uuid.uuid4().hex


class Event(BaseModel):
    """One published event. ``payload`` must be JSON-serialisable."""

    model_config = ConfigDict(frozen=True)

    topic: str
    payload: dict[str, Any]
    id: str = Field(default_factory=_new_event_id)
    ts: float = Field(default_factory=time.time)


def is_pattern(topic: str) -> bool:
    """Whether ``topic`` contains glob characters (``*``, ``?``, ``[``)."""
    return not _GLOB_CHARS.isdisjoint(topic)


def _check_topic(topic: str) -> None:
    if not topic or is_pattern(topic):
        raise ValueError(
            f"a published topic must be non-empty and free of glob characters: {topic!r}"
        )


class Subscription(ABC):
    """A live subscription: use as ``async with bus.subscribe("room.*") as events``.

    Iterating yields events until the subscription or its bus is closed. Events are buffered
    up to ``maxsize``; beyond that the oldest is dropped and counted in ``dropped``.
    """

    def __init__(self, pattern: str, *, maxsize: int) -> None:
        self.pattern = pattern
        self.dropped = 0
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue(maxsize)
        self._closed = False

    @property
    def closed(self) -> bool:
        """Whether the subscription has stopped receiving events."""
        return self._closed

    def _deliver(self, event: Event) -> None:
        # Never blocks: the publisher must not wait for a slow subscriber.
        if self._closed:
            return
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(event)

    def _end(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(None)

    @abstractmethod
    async def _open(self) -> None: ...

    @abstractmethod
    async def _release(self) -> None: ...

    async def close(self) -> None:
        """Unsubscribe; iteration ends after the events already buffered."""
        self._end()
        await self._release()

    async def __aenter__(self) -> Self:
        try:
            await self._open()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Event:
        if self._closed and self._queue.empty():
            raise StopAsyncIteration
        event = await self._queue.get()
        if event is None:
            raise StopAsyncIteration
        return event


class EventBus(ABC):
    """Publish/subscribe on dotted topics such as ``room.42.joined``."""

    @abstractmethod
    async def publish(self, topic: str, payload: dict[str, Any]) -> Event:
        """Send ``payload`` to every current subscriber whose pattern matches ``topic``."""

    @abstractmethod
    def subscribe(self, pattern: str, *, maxsize: int = DEFAULT_SUBSCRIBER_BUFFER) -> Subscription:
        """A subscription to an exact topic or a glob pattern; enter it to start receiving."""

    @abstractmethod
    async def close(self) -> None:
        """End every subscription and release connections."""


class _InProcessSubscription(Subscription):
    def __init__(self, bus: InProcessBus, pattern: str, *, maxsize: int) -> None:
        super().__init__(pattern, maxsize=maxsize)
        self._bus = bus
        self._matcher: re.Pattern[str] | None = (
            re.compile(fnmatch.translate(pattern)) if is_pattern(pattern) else None
        )

    def matches(self, topic: str) -> bool:
        if self._matcher is None:
            return topic == self.pattern
        return self._matcher.match(topic) is not None

    async def _open(self) -> None:
        self._bus._subscriptions.add(self)

    async def _release(self) -> None:
        self._bus._subscriptions.discard(self)


class InProcessBus(EventBus):
    """Events delivered to subscribers in this process only, through bounded asyncio queues."""

    def __init__(self) -> None:
        self._subscriptions: set[_InProcessSubscription] = set()

    async def publish(self, topic: str, payload: dict[str, Any]) -> Event:
        """Deliver to every matching subscriber of this process without waiting for any."""
        _check_topic(topic)
        event = Event(topic=topic, payload=payload)
        # Same check as RedisBus, so a payload that works here also works across processes.
        json.dumps(event.payload, ensure_ascii=False)
        for subscription in list(self._subscriptions):
            if subscription.matches(topic):
                subscription._deliver(event)
        return event

    def subscribe(self, pattern: str, *, maxsize: int = DEFAULT_SUBSCRIBER_BUFFER) -> Subscription:
        """A subscription to an exact topic or a glob pattern; enter it to start receiving."""
        return _InProcessSubscription(self, pattern, maxsize=maxsize)

    async def close(self) -> None:
        """End every subscription."""
        for subscription in list(self._subscriptions):
            await subscription.close()


class _RedisSubscription(Subscription):
    def __init__(self, bus: RedisBus, pattern: str, *, maxsize: int) -> None:
        super().__init__(pattern, maxsize=maxsize)
        self._bus = bus
        self._channel = bus.channel_prefix + pattern
        self._pubsub = bus._redis.pubsub()
        self._reader: asyncio.Task[None] | None = None

    async def _open(self) -> None:
        if is_pattern(self.pattern):
            await self._pubsub.psubscribe(self._channel)
        else:
            await self._pubsub.subscribe(self._channel)
        # Wait for the server's confirmation so that anything published after `__aenter__`
        # returns is guaranteed to reach this subscriber.
        async with asyncio.timeout(SUBSCRIBE_TIMEOUT_S):
            while True:
                message = await self._pubsub.get_message(timeout=None)
                if message is not None and message["type"] in ("subscribe", "psubscribe"):
                    break
        self._bus._subscriptions.add(self)
        self._reader = asyncio.create_task(self._read(), name=f"bus-reader:{self.pattern}")

    async def _read(self) -> None:
        # Drain the socket eagerly into the bounded queue: redis itself would otherwise
        # disconnect a client whose output buffer grows past its pub/sub limit.
        try:
            async for message in self._pubsub.listen():
                if message["type"] not in ("message", "pmessage"):
                    continue
                try:
                    event = Event.model_validate_json(message["data"])
                except ValidationError:
                    log.warning("bus.bad_message", channel=message["channel"])
                    continue
                self._deliver(event)
        except aioredis.RedisError as exc:
            log.error("bus.subscription_lost", pattern=self.pattern, error=str(exc))
        finally:
            self._end()

    async def _release(self) -> None:
        self._bus._subscriptions.discard(self)
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        await self._pubsub.aclose()  # type: ignore[no-untyped-call]


class RedisBus(EventBus):
    """Events shared by every process connected to one redis, as JSON over pub/sub.

    ``channel_prefix`` keeps this bus's channels apart from other users of the same redis.
    """

    def __init__(self, redis_url: str, *, channel_prefix: str = "tongke:bus:") -> None:
        if is_pattern(channel_prefix):
            raise ValueError(f"channel_prefix must not contain glob characters: {channel_prefix!r}")
        self.channel_prefix = channel_prefix
        self._redis: aioredis.Redis = aioredis.Redis.from_url(redis_url)
        self._subscriptions: set[_RedisSubscription] = set()

    async def publish(self, topic: str, payload: dict[str, Any]) -> Event:
        """Publish to every matching subscriber in every connected process."""
        _check_topic(topic)
        event = Event(topic=topic, payload=payload)
        data = json.dumps(event.model_dump(mode="json"), ensure_ascii=False)
        await self._redis.publish(self.channel_prefix + topic, data)
        return event

    def subscribe(self, pattern: str, *, maxsize: int = DEFAULT_SUBSCRIBER_BUFFER) -> Subscription:
        """A subscription to an exact topic or a glob pattern; enter it to start receiving."""
        return _RedisSubscription(self, pattern, maxsize=maxsize)

    async def close(self) -> None:
        """End every subscription and close the redis connection pool."""
        for subscription in list(self._subscriptions):
            await subscription.close()
        await self._redis.aclose()


def make_bus(settings: Settings) -> EventBus:
    """The bus for this deployment: redis when ``redis_url`` is configured, else in-process."""
    if settings.redis_url:
        return RedisBus(settings.redis_url)
    return InProcessBus()
