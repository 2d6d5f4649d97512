"""Lead classroom → SFU → recorder: a WebM of the encoded media, nothing decoded or encoded."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import aiortc.rtcrtpreceiver
import av
import pytest
from aiortc import RTCRtpSender

from recordings.capture import LessonRecorder
from streaming.bots import AUDIO_PTIME, AUDIO_RATE
from tests.fixtures.recordings import line_starting, recorder_child

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def decoder_spy(monkeypatch: pytest.MonkeyPatch) -> set[int]:
    """ids of the track queues a decoder was created for (one per decoding receiver)."""
    decoding: set[int] = set()
    original = aiortc.rtcrtpreceiver.get_decoder  # type: ignore[attr-defined]

    def spy(codec):
        decoding.add(id(sys._getframe(1).f_locals["output_q"]))
        return original(codec)

    monkeypatch.setattr(aiortc.rtcrtpreceiver, "get_decoder", spy)
    return decoding


def _probe(path: Path) -> dict[str, object]:
    """Codecs, duration and decoded frame counts, read back the way a player would."""
    with av.open(str(path)) as container:
        codecs = sorted(s.codec_context.name for s in container.streams)
        frames = {"video": 0, "audio": 0}
        last = {"video": 0.0, "audio": 0.0}
        first: dict[str, float] = {}
        for frame in container.decode(*container.streams):
            kind = "video" if isinstance(frame, av.VideoFrame) else "audio"
            frames[kind] += 1
            if frame.time is not None:
                first.setdefault(kind, frame.time)
                last[kind] = max(last[kind], frame.time)
    return {"codecs": codecs, "frames": frames, "first": first, "last": last}


async def _packets_sent(sender: RTCRtpSender) -> int:
    report = await sender.getStats()
    return next(int(s.packetsSent) for s in report.values() if s.type == "outbound-rtp")


async def test_lead_lesson_is_recorded_without_transcoding(
    rooms, classrooms, eventually, decoder_spy, tmp_path
):
    room = await rooms.open("sync-1", kind="lesson")
    # the lead's packets (RTP timestamps) as the SFU got them
    heard: dict[str, list[int]] = {"audio": [], "video": []}

    def hear(track: Any, packet: Any) -> None:
        if track.participant_id == "lead":
            heard[track.kind].append(packet.timestamp)

    room.add_packet_tap(hear)
    recorder = LessonRecorder(room, tmp_path / "raw.webm")
    recorder.start()
    lead = classrooms.start("lead", "lead", fps=15)
    remote = classrooms.start("remote-1", "remote", tone_hz=660)
    await eventually(lambda: recorder.tap_packets > 0, timeout=15)
    started = time.monotonic()
    await eventually(lambda: remote.slot("lead_camera").frames > 5, timeout=15)
    await remote.raise_hand()
    await eventually(lambda: any(p["hand"] == "raised" for p in lead.participants))
    await lead.accept_hand("remote-1")
    await asyncio.sleep(max(0.0, 3.0 - (time.monotonic() - started)))
    # The lead stops sending first, so that all it sent is known and has reached the SFU.
    tone, camera = lead.tone, lead.camera
    assert tone is not None and camera is not None and lead.pc is not None
    assert tone.started_at is not None
    senders = {s.kind: s for s in lead.pc.getSenders() if s.track in (tone, camera)}
    tone.stop()
    camera.stop()
    tone_s = (tone.samples_sent / AUDIO_RATE, time.monotonic() - tone.started_at)
    await eventually(lambda: all(s.track is None for s in senders.values()))  # loops ended
    sent = {kind: await _packets_sent(sender) for kind, sender in senders.items()}
    with contextlib.suppress(AssertionError):  # a shortfall is told apart below
        await eventually(lambda: all(len(heard[k]) >= n for k, n in sent.items()), timeout=5)
    # ~3 s, less when the loaded machine held the in-process bot back (it never catches up)
    lesson_s = max(camera.frames / camera.fps, tone_s[0])
    summary = await recorder.stop()

    assert summary.tracks["video"].codec.lower() == "vp8"
    assert summary.tracks["audio"].codec.lower() == "opus"
    assert abs(summary.duration_s - lesson_s) < 0.6, (summary, lesson_s)
    assert summary.width == 320 and summary.height == 180
    probe = _probe(tmp_path / "raw.webm")
    assert probe["codecs"] == ["opus", "vp8"]
    frames = probe["frames"]
    assert isinstance(frames, dict)
    assert frames["video"] >= 10 * lesson_s, (probe, lesson_s)  # 15 fps from the first keyframe
    # Every 20 ms packet of the lead's mic is in the file, timed as sent: counted against
    # what the mic sent, not the wall clock, which the in-process bot's mic falls behind.
    lag = "lead's mic: {:.2f} s of tone in {:.2f} s".format(*tone_s)
    counts = (probe, summary.tracks["audio"], lag)
    mic = heard["audio"]
    assert frames["audio"] == len(mic) > 0, ("the SFU got", len(mic), *counts)
    first, last = probe["first"], probe["last"]
    assert isinstance(first, dict) and isinstance(last, dict)
    mic_span = (mic[-1] - mic[0]) % 2**32 / AUDIO_RATE
    assert abs(last["audio"] - first["audio"] - mic_span) < AUDIO_PTIME / 2, counts
    for kind, count in sent.items():
        assert len(heard[kind]) >= count, f"the SFU got {len(heard[kind])} of {count} {kind}"
    assert abs(max(last.values()) - lesson_s) < 0.6, (probe, lesson_s)

    # Nothing on the SFU side decoded (the bots do, hence the spy's other entries), and the
    # recorder's streams have no codec context at all: packets are muxed as they came.
    sfu_queues = {id(track.rtp_receiver.track._queue) for track in room.published_tracks()}
    assert decoder_spy and not decoder_spy & sfu_queues
    assert all(s.codec_context is None for s in recorder._writer._streams.values())

    sidecar = json.loads((tmp_path / "events.json").read_text("utf-8"))
    kinds = [e["kind"] for e in sidecar["events"]]
    assert "hand_raised" in kinds and "hand_accepted" in kinds, kinds
    assert all(0 <= e["t"] <= 5 for e in sidecar["events"])
    assert sidecar["gaps"] == []
    cpu_us = summary.process_seconds / max(summary.tap_packets, 1) * 1e6
    print(f"recorder: {summary.tap_packets} packets, {cpu_us:.1f} µs/packet on the writer thread")


async def test_a_reconnecting_lead_continues_the_same_file_with_the_gap_noted(
    rooms, classrooms, eventually, tmp_path
):
    room = await rooms.open("sync-1", kind="lesson")
    # when each connection's packets came, per kind and SSRC: [first, last] arrival
    arrivals: dict[tuple[str, int], list[float]] = {}

    def seen(track: Any, packet: Any) -> None:
        now = time.monotonic()
        arrivals.setdefault((track.kind, packet.ssrc), [now, now])[1] = now

    room.add_packet_tap(seen)
    recorder = LessonRecorder(room, tmp_path / "raw.webm")
    recorder.start()
    first = classrooms.start("lead", "lead")
    await eventually(lambda: recorder.tap_packets > 0, timeout=15)
    await asyncio.sleep(1.5)
    await classrooms.stop(first)
    await asyncio.sleep(1.0)
    classrooms.start("lead", "lead")  # the same classroom, a new connection and new SSRCs
    before = recorder.tap_packets
    await eventually(lambda: recorder.tap_packets > before + 50, timeout=15)
    await asyncio.sleep(1.5)
    summary = await recorder.stop()

    assert summary.tracks["video"].ssrcs == 2 and summary.tracks["audio"].ssrcs == 2
    gaps = {gap["kind"]: gap for gap in summary.gaps}
    assert set(gaps) == {"video", "audio"}, summary.gaps
    for kind, gap in gaps.items():
        # the gap noted is the outage as it happened: from the first connection's last packet
        # to the second's first (on a loaded machine the second took 3.4 s to come)
        old, new = sorted((times for (k, _), times in arrivals.items() if k == kind))
        outage = new[0] - old[1]
        assert outage > 1.0 and abs(gap["to_s"] - gap["from_s"] - outage) < 0.3, (gap, outage)
    probe = _probe(tmp_path / "raw.webm")
    last = probe["last"]
    assert isinstance(last, dict)
    assert last["video"] > gaps["video"]["to_s"], "video resumed after the gap"
    sidecar = json.loads((tmp_path / "events.json").read_text("utf-8"))
    assert len(sidecar["gaps"]) == 2
    assert {"publisher_left", "publisher_joined"} <= {e["kind"] for e in sidecar["events"]}


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from recordings.capture import LessonRecorder
    from streaming.bots import ClassroomBot, start_local, use_loopback_only
    from streaming.sfu import InProcessRoomRegistry, ParticipantIdentity

    async def main():
        use_loopback_only()
        rooms = InProcessRoomRegistry()
        room = await rooms.open("sync-1", kind="lesson")
        recorder = LessonRecorder(room, Path(sys.argv[1]))
        recorder.start()
        start_local(ClassroomBot(ParticipantIdentity("lead", "lead", "lead", "sync-1")), rooms)
        while recorder.tap_packets == 0:
            await asyncio.sleep(0.05)
        print("recording", flush=True)
        await asyncio.sleep(600)

    asyncio.run(main())
    """
)


def test_a_killed_recorder_leaves_a_playable_file(tmp_path):
    path = tmp_path / "raw.webm"
    child = recorder_child(CHILD, str(path))
    try:
        assert line_starting(child, "recording") == "recording", "the recorder never started"
        recording_since = time.monotonic()
        time.sleep(4.0)
        os.kill(child.pid, signal.SIGKILL)
        recorded_s = time.monotonic() - recording_since
    finally:
        child.kill()
        child.wait()
    probe = _probe(path)
    assert probe["codecs"] == ["opus", "vp8"]
    last = probe["last"]
    assert isinstance(last, dict)
    # playable up to at most the last 2 s before the kill
    assert last["video"] > recorded_s - 2.0, (probe, recorded_s)
    frames = probe["frames"]
    assert isinstance(frames, dict) and frames["video"] > 20
    ffprobe = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name", "-of", "csv=p=0", path],
        capture_output=True,
        text=True,
        check=True,
    )
    assert sorted(ffprobe.stdout.split()) == ["opus", "vp8"]
