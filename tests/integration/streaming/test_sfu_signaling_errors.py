"""Bad signaling gets a clear error (Chinese message) and leaves the live room untouched."""

from __future__ import annotations

import asyncio

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from streaming.bots import LocalChannel
from streaming.sfu import ParticipantIdentity
from streaming.signaling import MAX_MESSAGE_BYTES, SignalingError, parse_message, serve_participant

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("x" * (MAX_MESSAGE_BYTES + 1), "message_too_large"),
        ({"v": 1, "type": "offer", "sdp": "v=0\r\n" + "a=x\r\n" * 20000}, "message_too_large"),
        ("{not json", "invalid_json"),
        ([1, 2], "invalid_message"),
        ({"type": "join", "room": "r"}, "unsupported_version"),
        ({"v": 2, "type": "join", "room": "r"}, "unsupported_version"),
        ({"v": 1, "type": "dance"}, "unknown_type"),
        ({"v": 1, "type": "join"}, "invalid_message"),
        ({"v": 1, "type": "join", "room": "r", "evil": True}, "invalid_message"),
        ({"v": 1, "type": "offer", "sdp": "hello"}, "malformed_sdp"),
        ({"v": 1, "type": "offer", "sdp": "v=0\r\nm=audio x y\r\n"}, "malformed_sdp"),
    ],
)
def test_parse_message_rejects(raw, code):
    with pytest.raises(SignalingError) as caught:
        parse_message(raw)
    assert caught.value.code == code
    assert caught.value.message  # shown to the user, in Chinese
    assert not caught.value.message.isascii()


async def _offer_with_lines(kinds: list[str]) -> str:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    for kind in kinds:
        pc.addTransceiver(kind, direction="sendrecv")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


async def test_garbage_signaling_gets_errors_and_the_room_is_unaffected(
    rooms, classrooms, eventually
):
    classrooms.start("lead", "lead")
    viewer = classrooms.start("remote-a", "remote")
    await eventually(lambda: "lead_camera" in viewer.stats)
    await eventually(lambda: viewer.slot("lead_camera").frames > 10, timeout=15)
    room = await rooms.get("lesson-1")
    members_before = set(room.participants)

    channel = LocalChannel()
    hostile = ParticipantIdentity("remote-x", "捣乱", "remote", "lesson-1")
    server = asyncio.ensure_future(
        serve_participant(channel.server_send, channel.server_receive, hostile, rooms)
    )

    async def exchange(message: dict[str, object] | str) -> dict[str, object]:
        if isinstance(message, str):
            await channel.client_send_text(message)
        else:
            await channel.client_send(message)
        return await asyncio.wait_for(channel.client_receive(), 5)

    frames_before = viewer.slot("lead_camera").frames
    assert (await exchange({"v": 1, "type": "offer", "sdp": "v=0"}))["code"] == "malformed_sdp"
    assert (await exchange({"v": 1, "type": "raise_hand"}))["code"] == "out_of_order"
    reply = await exchange({"v": 1, "type": "join", "room": "lesson-2"})
    assert reply == {
        "v": 1,
        "type": "error",
        "code": "forbidden",
        "message": "无权加入该课堂",
    }
    assert (await exchange("z" * 70000))["code"] == "message_too_large"
    assert (await exchange({"v": 1, "type": "teleport"}))["code"] == "unknown_type"

    joined = await exchange({"v": 1, "type": "join", "room": "lesson-1"})
    assert joined["type"] == "joined"
    participants = await asyncio.wait_for(channel.client_receive(), 5)
    assert participants["type"] == "participants"

    # a syntactically fine SDP whose lines do not match the layout the SFU handed out
    wrong = await _offer_with_lines(["audio"])
    reply = await exchange({"v": 1, "type": "offer", "sdp": wrong})
    assert reply["code"] == "offer_mismatch"
    # an SDP aiortc itself refuses (no ICE credentials)
    broken = "\r\n".join(line for line in wrong.split("\r\n") if "ice-" not in line)
    reply = await exchange({"v": 1, "type": "offer", "sdp": broken})
    assert reply["code"] in ("sdp_rejected", "malformed_sdp")
    assert reply["message"]

    await channel.client_send({"v": 1, "type": "leave"})
    await asyncio.wait_for(server, 5)

    await eventually(lambda: viewer.slot("lead_camera").frames > frames_before + 15, timeout=10)
    assert set(room.participants) == members_before
    assert viewer.errors == []
    assert all(p["id"] != "remote-x" for p in viewer.participants)
