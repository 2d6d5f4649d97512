"""Which processing run an ffmpeg command line is, for the per-run memory figures."""

from __future__ import annotations

from pathlib import Path

from recordings.composition import compose_arguments
from recordings.ffmpeg_memory import ffmpeg_run_name
from recordings.processing import (
    LOW,
    MAIN,
    Loudness,
    MediaFacts,
    ThumbnailGrid,
    rendition_arguments,
    sprite_arguments,
)

FACTS = MediaFacts(duration_s=60.0, has_video=True, has_audio=True, width=1920, height=1080)
RAW = Path("/media/1/raw.webm")


def command(arguments: list[str]) -> list[str]:
    return ["ffmpeg", "-hide_banner", "-nostdin", "-y", *arguments]


def test_renditions_are_named_by_their_stream_map_though_the_input_is_webm() -> None:
    for rendition in (MAIN, LOW):
        arguments = rendition_arguments(
            RAW, Path("/work"), rendition=rendition, facts=FACTS, loudness=Loudness("dynamic")
        )
        assert ffmpeg_run_name(command(arguments)) == rendition.name


def test_the_sprite_the_mp4_and_a_composed_meeting_by_their_output() -> None:
    grid = ThumbnailGrid.for_media(FACTS)
    sprite = sprite_arguments(RAW, Path("/work/thumbs.jpg"), grid=grid)
    assert ffmpeg_run_name(command(sprite)) == "sprite"
    remux = ["-i", "/work/hls/main/index.m3u8", "-c", "copy", "/work/lesson.mp4"]
    assert ffmpeg_run_name(command(remux)) == "mp4"
    composed, _ = compose_arguments(
        [], [], Path("/media/2/.raw.partial.webm"), duration_s=60.0, canvas=(1280, 720)
    )
    assert ffmpeg_run_name(command(composed)) == "compose"
    assert ffmpeg_run_name(["ffmpeg", "-version"]) == "other"
