"""What a composed meeting recording shows when, and its chapters (no media: the timeline only)."""

from __future__ import annotations

from typing import Any

from recordings.composition import Segment, chapter_events, video_segments
from recordings.meeting_capture import MeetingParticipant, MeetingTimeline


def timeline(*events: tuple[float, str, str, dict[str, Any]]) -> MeetingTimeline:
    return MeetingTimeline(
        started_at=1000.0,
        stopped_at=1060.0,
        participants={
            "host": MeetingParticipant(name="王老师", host=True, camera="tracks/p1.webm"),
            "li": MeetingParticipant(name="李老师", host=False, camera="tracks/p2.webm"),
            "zhao": MeetingParticipant(
                name="赵老师", host=False, camera="tracks/p3.webm", screen="tracks/p3-screen.webm"
            ),
        },
        events=[
            {"t": t, "kind": kind, "participant": pid, "detail": detail}
            for t, kind, pid, detail in events
        ],
    )


JOINED: list[tuple[float, str, str, dict[str, Any]]] = [
    (0.0, "participant_joined", "host", {}),
    (0.0, "participant_joined", "li", {}),
    (0.0, "participant_joined", "zhao", {}),
]


def test_the_picture_follows_the_speaker_and_a_shared_screen_wins() -> None:
    meeting = timeline(
        *JOINED,
        (5.0, "speaker_changed", "li", {}),
        (20.0, "screen_share_changed", "zhao", {"sharing": True}),
        (25.0, "speaker_changed", "host", {}),  # while a screen is shared it stays
        (40.0, "screen_share_changed", "zhao", {"sharing": False}),
    )
    shown = video_segments(
        meeting, cameras={"host", "li", "zhao"}, screens={"zhao"}, duration_s=60.0
    )
    assert shown == [
        Segment(0.0, 5.0, ("host", "camera")),  # nobody spoke yet: the host
        Segment(5.0, 20.0, ("li", "camera")),
        Segment(20.0, 40.0, ("zhao", "screen")),
        Segment(40.0, 60.0, ("host", "camera")),
    ]


def test_who_left_or_has_no_camera_is_not_shown() -> None:
    meeting = timeline(
        *JOINED,
        (5.0, "speaker_changed", "li", {}),
        (10.0, "participant_left", "li", {}),
        (15.0, "speaker_changed", "zhao", {}),
        (30.0, "screen_share_changed", "zhao", {"sharing": True}),
    )
    # the host's camera sent nothing, zhao's screen file is empty
    shown = video_segments(meeting, cameras={"li", "zhao"}, screens=set(), duration_s=60.0)
    assert shown == [
        Segment(0.0, 10.0, ("li", "camera")),  # the first present camera, then the speaker
        Segment(10.0, 60.0, ("zhao", "camera")),
    ]


def test_chapters_name_the_speakers_and_the_screen() -> None:
    meeting = timeline(
        *JOINED,
        (5.0, "speaker_changed", "li", {}),
        (20.0, "screen_share_changed", "zhao", {"sharing": True}),
        (40.0, "screen_share_changed", "zhao", {"sharing": False}),
        (70.0, "speaker_changed", "host", {}),  # after the end
    )
    marks = chapter_events(meeting, duration_s=60.0)
    assert [(m["t"], m["title"]) for m in marks] == [(5.0, "李老师发言"), (20.0, "赵老师共享屏幕")]
