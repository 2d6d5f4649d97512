"""The event bus, run against both the in-process bus and a real redis-server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from common.bus import Event, EventBus, InProcessBus, RedisBus, Subscription, make_bus
from common.settings import Settings

DELIVERY_TIMEOUT_S = 5.0
QUIET_PERIOD_S = 0.2


def _isolated_redis_bus(redis_url: str) -> RedisBus:
    # A channel prefix per test keeps tests on the shared session redis apart.
    return RedisBus(redis_url, channel_prefix=f"test:{uuid.uuid4().hex}:")


@pytest.fixture(params=["inprocess", pytest.param("redis", marks=pytest.mark.redis)])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[EventBus]:
    event_bus: EventBus
    if request.param == "inprocess":
        event_bus = InProcessBus()
    else:
        event_bus = _isolated_redis_bus(request.getfixturevalue("redis_server"))
    yield event_bus
    await event_bus.close()


async def next_event(subscription: Subscription) -> Event:
    return await asyncio.wait_for(anext(subscription), DELIVERY_TIMEOUT_S)


async def assert_quiet(subscription: Subscription) -> None:
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(anext(subscription), QUIET_PERIOD_S)


async def test_subscriber_receives_published_event(bus: EventBus) -> None:
    async with bus.subscribe("room.7.joined") as events:
        sent = await bus.publish("room.7.joined", {"terminal": "t-1"})
        received = await next_event(events)

    assert received == sent
    assert received.topic == "room.7.joined"
    assert received.payload == {"terminal": "t-1"}


async def test_pattern_subscription_receives_matching_topics_only(bus: EventBus) -> None:
    async with bus.subscribe("room.*") as events:
        await bus.publish("room.1.joined", {"n": 1})
        await bus.publish("lesson.1.started", {"n": 2})
        await bus.publish("room.2.left", {"n": 3})

        first = await next_event(events)
        second = await next_event(events)
        await assert_quiet(events)

    assert [first.topic, second.topic] == ["room.1.joined", "room.2.left"]


async def test_unsubscribed_subscriber_gets_nothing_more(bus: EventBus) -> None:
    async with bus.subscribe("room.1.joined") as events:
        pass
    await bus.publish("room.1.joined", {"late": True})

    assert events.closed
    assert [event async for event in events] == []


async def test_unicode_payload_round_trips(bus: EventBus) -> None:
    payload = {"课程": "数学", "教师": "张老师", "备注": "第三节 · 同步课堂 ✓"}
    async with bus.subscribe("research.听评课") as events:
        await bus.publish("research.听评课", payload)
        received = await next_event(events)

    assert received.payload == payload
    assert received.topic == "research.听评课"


async def test_two_subscribers_both_receive(bus: EventBus) -> None:
    async with bus.subscribe("room.3.*") as first, bus.subscribe("room.3.joined") as second:
        sent = await bus.publish("room.3.joined", {"school": "城关中学"})

        assert await next_event(first) == sent
        assert await next_event(second) == sent


async def test_subscribers_of_different_topics_do_not_cross_talk(bus: EventBus) -> None:
    async with bus.subscribe("room.1.*") as room_one, bus.subscribe("room.2.*") as room_two:
        await bus.publish("room.1.joined", {"room": 1})
        await bus.publish("room.2.joined", {"room": 2})

        assert (await next_event(room_one)).payload == {"room": 1}
        assert (await next_event(room_two)).payload == {"room": 2}
        await assert_quiet(room_one)
        await assert_quiet(room_two)


async def test_slow_subscriber_drops_oldest_without_blocking_publisher(bus: EventBus) -> None:
    async with bus.subscribe("tick", maxsize=3) as events:
        for seq in range(10):
            await asyncio.wait_for(bus.publish("tick", {"seq": seq}), DELIVERY_TIMEOUT_S)

        async with asyncio.timeout(DELIVERY_TIMEOUT_S):
            while events.dropped < 7:
                await asyncio.sleep(0.01)
        kept = [(await next_event(events)).payload["seq"] for _ in range(3)]

    assert kept == [7, 8, 9]
    assert events.dropped == 7


async def test_closing_the_bus_ends_subscriptions(bus: EventBus) -> None:
    async with bus.subscribe("room.*") as events:
        await bus.close()
        remaining = [event async for event in events]

    assert remaining == []
    assert events.closed


async def test_publishing_to_a_pattern_is_refused(bus: EventBus) -> None:
    with pytest.raises(ValueError, match="glob"):
        await bus.publish("room.*", {})


@pytest.mark.redis
async def test_redis_bus_delivers_between_separate_connections(redis_server: str) -> None:
    prefix = f"test:{uuid.uuid4().hex}:"
    web, sfu = (
        RedisBus(redis_server, channel_prefix=prefix),
        RedisBus(redis_server, channel_prefix=prefix),
    )
    other_deployment = _isolated_redis_bus(redis_server)
    try:
        async with sfu.subscribe("room.*") as events:
            await other_deployment.publish("room.1.joined", {"from": "elsewhere"})
            sent = await web.publish("room.1.joined", {"from": "web"})

            assert await next_event(events) == sent
            await assert_quiet(events)
    finally:
        for event_bus in (web, sfu, other_deployment):
            await event_bus.close()


async def test_make_bus_picks_redis_only_when_configured() -> None:
    local = make_bus(Settings(redis_url=None))
    shared = make_bus(Settings(redis_url="redis://127.0.0.1:1/0"))

    assert isinstance(local, InProcessBus)
    assert isinstance(shared, RedisBus)
    await local.close()
    await shared.close()
