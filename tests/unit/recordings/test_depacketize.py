"""The recorder's VP8 depacketizer: frames out in order, a repaired packet waited for, a lost
one given up on until the next keyframe."""

from __future__ import annotations

from recordings.depacketize import REORDER_WINDOW_S, EncodedFrame, Vp8Depacketizer

FRAME_S = 1 / 30
TICKS = 3000  # 90 kHz clock at 30 fps


def _packets(frame: int, *, keyframe: bool, parts: int = 3) -> list[dict[str, object]]:
    """One frame's RTP packets: a one-byte descriptor (S on the first), the VP8 header's
    key-frame bit (0: key) on the first byte of the frame."""
    packets = []
    for part in range(parts):
        first = part == 0
        descriptor = bytes([0x10 if first else 0x00])
        body = bytes([0x00 if keyframe else 0x01]) if first else b""
        packets.append(
            {
                "sequence_number": frame * parts + part,
                "timestamp": frame * TICKS,
                "marker": part == parts - 1,
                "payload": descriptor + body + bytes([frame, part]) * 50,
            }
        )
    return packets


def _run(
    depacketizer: Vp8Depacketizer, schedule: list[tuple[float, dict[str, object]]]
) -> list[EncodedFrame]:
    out: list[EncodedFrame] = []
    for arrival, packet in sorted(schedule, key=lambda item: item[0]):
        out += depacketizer.push(arrival=arrival, **packet)  # type: ignore[arg-type]
    return out


def test_a_packet_repaired_half_a_second_late_loses_no_frame() -> None:
    """What an 80-300 ms uplink with loss gives: the SFU's NACK brings the packet back after a
    round trip, or after its second ask 250 ms on; the frames behind it wait, in order."""
    schedule = []
    for frame in range(30):
        for part, packet in enumerate(_packets(frame, keyframe=frame == 0)):
            arrival = frame * FRAME_S + part * 0.001
            if frame == 5 and part == 1:
                arrival += 0.5  # lost on the way, repaired on the SFU's second NACK
            schedule.append((arrival, packet))
    depacketizer = Vp8Depacketizer()
    frames = _run(depacketizer, schedule)
    assert [f.timestamp for f in frames] == [n * TICKS for n in range(30)]
    assert depacketizer.stats.frames_lost == 0 and depacketizer.stats.frames_skipped == 0
    assert frames[5].data == b"\x01" + b"".join(bytes([5, part]) * 50 for part in range(3))
    assert not depacketizer.needs_keyframe


def test_a_packet_that_never_comes_loses_its_frame_and_the_rest_until_a_keyframe() -> None:
    schedule = []
    for frame in range(60):
        for part, packet in enumerate(_packets(frame, keyframe=frame in (0, 45))):
            if frame == 5 and part == 1:
                continue  # never repaired
            schedule.append((frame * FRAME_S + part * 0.001, packet))
    depacketizer = Vp8Depacketizer()
    frames = _run(depacketizer, schedule)
    written = [f.timestamp // TICKS for f in frames]
    # given up on once the window passed, the frames after it wait for the keyframe at 45
    assert written == [*range(5), *range(45, 60)]
    assert depacketizer.stats.frames_lost == 1
    assert depacketizer.stats.frames_skipped == 39
    assert not depacketizer.needs_keyframe  # the keyframe came
    # not before the window: the frame is held for REORDER_WINDOW_S after its first packet
    held = Vp8Depacketizer()
    early = [(a, p) for a, p in schedule if a < 5 * FRAME_S + REORDER_WINDOW_S - 0.05]
    assert [f.timestamp // TICKS for f in _run(held, early)] == [*range(5)]
    assert held.stats.frames_lost == 0


def test_duplicates_and_packets_of_written_frames_are_counted_not_written() -> None:
    first, second = _packets(0, keyframe=True), _packets(1, keyframe=False)
    schedule = [(0.0, p) for p in first] + [(0.01, first[1])] + [(0.04, p) for p in second]
    depacketizer = Vp8Depacketizer()
    frames = _run(depacketizer, schedule)
    assert [f.keyframe for f in frames] == [True, False]
    assert depacketizer.stats.late_packets == 1  # frame 0 was written when its copy came
    assert depacketizer.push(arrival=0.05, **second[0]) == []  # type: ignore[arg-type]
    assert depacketizer.stats.late_packets == 2


def test_a_tap_started_mid_frame_cuts_that_frame_it_does_not_lose_it() -> None:
    """A recorder started while the lead streams: its first packet was the second half of a
    frame whose start the SFU got 19 ms before (seen on loopback), and a retransmission of an
    earlier frame can follow. Neither was sent while tapping: cut, not lost."""
    schedule = []
    for frame in range(10, 60):
        for part, packet in enumerate(_packets(frame, keyframe=frame in (5, 40))):
            if frame == 10 and part == 0:
                continue  # went by before the tap
            schedule.append((frame * FRAME_S + part * 0.001, packet))
    straggler = _packets(9, keyframe=False)[1]  # the SFU's repair of the frame before
    schedule.append((11 * FRAME_S + 0.002, straggler))
    depacketizer = Vp8Depacketizer()
    frames = _run(depacketizer, schedule)
    # written from the first keyframe; before it, nothing could be decoded anyway
    assert [f.timestamp // TICKS for f in frames] == [*range(40, 60)]
    assert depacketizer.stats.frames_lost == 0  # 2 before 2026-12-06
    assert depacketizer.stats.frames_cut == 2  # frame 10's tail and frame 9's straggler
    assert depacketizer.stats.frames_skipped == 29  # 11-39, complete but before a keyframe


def test_a_stream_ended_mid_frame_cuts_its_last_frame_and_loses_a_frame_with_a_gap() -> None:
    """At the end (the recorder stopping, the publisher's connection replaced) the newest
    frame missing only its tail is cut; a frame missing a packet between packets the tap had,
    its start or its tail sent while tapping, is lost."""
    cut = Vp8Depacketizer()
    schedule = [(n * FRAME_S, p) for n in range(10) for p in _packets(n, keyframe=n == 0)][:-2]
    assert len(_run(cut, schedule)) == 9
    assert cut.flush() == []
    assert cut.stats.frames_lost == 0  # 1 before 2026-12-06
    assert cut.stats.frames_cut == 1

    gap = Vp8Depacketizer()
    # frame 7's tail, frame 8's start and the last frame's middle packet
    missing = {(7, 2), (8, 0), (9, 1)}
    holed = [
        (n * FRAME_S, p)
        for n in range(10)
        for part, p in enumerate(_packets(n, keyframe=n == 0))
        if (n, part) not in missing
    ]
    assert len(_run(gap, holed)) == 7
    gap.flush()
    assert gap.stats.frames_lost == 3
    assert gap.stats.frames_cut == 0
