"""H.264/HLS while the lesson is recorded, so that only the tail is left when it ends.

Next to each ``LessonRecorder`` (same host: the raw file is local) a ``LiveTranscoder`` feeds
the growing ``raw.webm`` into one ffmpeg run per HLS rendition, built by
``recordings.processing.rendition_arguments`` exactly as after the lesson, only reading
``pipe:0``. The file is read in chunks as the recorder's clusters land and written to each
ffmpeg's stdin; when the recorder has closed the file, the rest is fed and stdin closed, so the
encoders finish at once (ffmpeg's ``-follow 1`` also reads a growing WebM, but only ends after
its ``-rw_timeout``, which it retries: ~3 x the timeout after the end, measured here).

The work folder ``.live-hls/`` beside the raw file holds the renditions (the layout
``make_renditions`` builds in its own work folder) and ``live.json``, the transcoder's state
with a heartbeat, so that the processing job (in this process or in ``tongke worker``) can
tell a live run that finished, one still finishing the tail, and one that died.
``renditions_from_live`` waits for the tail, validates what was made, and finishes it with
``recordings.processing.finish_renditions`` (master playlist, thumbnail sprite from the low
rendition's key frames, MP4 by remuxing the main one); anything else returns None and the job
falls back to the full ``make_renditions``.

Loudness: a live run encodes before the whole lesson's loudness is known, so the default
linear normalisation (one gain from a measure of the whole, ``recordings.processing.Loudness``)
cannot apply; in its place the audio goes through a streaming normaliser aiming at the same
-16 LUFS (``LIVE_NORMALISER``: dynaudnorm on 2 s frames, 8 s of audio held back, which only
the live segments' lag sees), and the main run meters what comes out (``achieved_lufs``, in
its stderr at the end: nothing to measure after the bell). ``dynamic`` (one-pass loudnorm)
applies here as after the lesson, ``off`` leaves the level (``live_loudness``).

ffmpeg runs under ``nice``. A host runs at most ``max_per_host`` live transcodes at once
(counted by lock files in a local folder, shared by the web process and every SFU worker of
the host; a lock goes with its process); lessons beyond that are processed after the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import re
import shutil
import socket
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from common.logging import get_logger
from recordings.processing import (
    HLS_DIR,
    LOW,
    MAIN,
    SEGMENT_S,
    Loudness,
    LoudnessMode,
    MediaFacts,
    ProcessingError,
    Rendition,
    Report,
    _parse_progress,
    complete_playlist,
    finish_renditions,
    metered_lufs,
    rendition_arguments,
    rendition_playlist,
    without_huge_pages,
)

if TYPE_CHECKING:
    from common.settings import Settings
    from recordings.capture import LessonRecorder

log = get_logger(__name__)

LIVE_DIR = ".live-hls"
STATE_NAME = "live.json"
CHUNK_BYTES = 256 * 1024
POLL_S = 0.2
HEARTBEAT_S = 1.0
# A state whose heartbeat is older than this belongs to a transcoder that died with its process.
STALE_AFTER_S = 10.0
# The renditions must last as long as the raw file, within this (the ffprobe check).
MAX_DURATION_ERROR_S = 0.5
RUNNING_STATES = ("starting", "running", "finishing")


def live_loudness(mode: LoudnessMode) -> Loudness:
    """What a live run does to the level for the configured ``mode``: it encodes the lesson
    as it is recorded, before the loudness of the whole is known, so ``linear`` (one gain
    measured over the whole) becomes the streaming ``live-dynaudnorm``; ``dynamic`` needs no
    measure and applies as it is; ``off`` stays as recorded."""
    if mode == "linear":
        return Loudness("live-dynaudnorm")
    return Loudness("dynamic") if mode == "dynamic" else Loudness()


@dataclass(frozen=True)
class LiveHlsPolicy:
    """Whether and how recorders of this process transcode while they record."""

    enabled: bool = True
    max_per_host: int = 2
    max_lag_s: float = 120.0
    nice: int = 10
    # the configured mode; what a live run applies for it: live_loudness
    loudness: LoudnessMode = "linear"
    ffmpeg: str = "ffmpeg"  # Settings.recording_ffmpeg
    slots_dir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()) / "tongke-live-hls")

    @classmethod
    def from_settings(cls, settings: Settings) -> LiveHlsPolicy:
        return cls(
            enabled=settings.recording_live_hls and settings.recording_live_hls_max_streams > 0,
            max_per_host=settings.recording_live_hls_max_streams,
            max_lag_s=settings.recording_live_hls_max_lag_seconds,
            loudness=settings.recording_loudness,
            ffmpeg=settings.recording_ffmpeg,
        )


class HostSlot:
    """One of the host's ``max_per_host`` live transcodes: an exclusive lock on a file, which
    the kernel releases if the process dies."""

    def __init__(self, handle: IO[bytes], path: Path) -> None:
        self._handle: IO[bytes] | None = handle
        self.path = path

    @classmethod
    def acquire(cls, policy: LiveHlsPolicy) -> HostSlot | None:
        policy.slots_dir.mkdir(parents=True, exist_ok=True)
        for index in range(policy.max_per_host):
            path = policy.slots_dir / f"slot-{index}.lock"
            handle = path.open("ab")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            return cls(handle, path)
        return None

    def release(self) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


def read_state(work: Path) -> dict[str, Any] | None:
    try:
        state: dict[str, Any] = json.loads((work / STATE_NAME).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return state


def _gone(state: dict[str, Any]) -> bool:
    """Whether the process that owns a running state is gone: its heartbeat stopped, or, on
    this host, the process no longer exists (killed, or a zombie nobody reaped)."""
    if time.time() - float(state.get("heartbeat", 0)) > STALE_AFTER_S:
        return True
    if state.get("host") != socket.gethostname() or not isinstance(state.get("pid"), int):
        return False
    try:
        stat = Path(f"/proc/{state['pid']}/stat").read_text("ascii")
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def _facts_of_growing(raw: Path) -> MediaFacts | None:
    """Streams of the raw file from its header, once the recorder has written it."""
    import av  # loads only where a recorder runs

    try:
        with av.open(str(raw)) as container:
            video = container.streams.video
            return MediaFacts(
                duration_s=0.0,
                has_video=bool(video),
                has_audio=bool(container.streams.audio),
                width=video[0].codec_context.width if video else 0,
                height=video[0].codec_context.height if video else 0,
            )
    except (av.FFmpegError, OSError, IndexError):
        return None


@dataclass
class _Encoder:
    rendition: Rendition
    process: asyncio.subprocess.Process
    out_s: float = 0.0
    stderr: deque[str] = field(default_factory=lambda: deque(maxlen=5))
    summary: list[str] = field(default_factory=list)  # a loudness meter's, at the end


class LiveTranscoder:
    """Transcodes one growing raw WebM into ``.live-hls/`` beside it; owns its task and its
    ffmpeg processes. ``finish()`` when the recorder has closed the file."""

    def __init__(self, raw: Path, *, policy: LiveHlsPolicy, slot: HostSlot | None = None) -> None:
        self.raw = raw
        self.work = raw.parent / LIVE_DIR
        self.policy = policy
        self._slot = slot
        self._closed = asyncio.Event()
        self._encoders: list[_Encoder] = []
        self._task: asyncio.Task[None] | None = None
        self._state: dict[str, Any] = {}
        self.fed_bytes = 0
        self.outcome: str | None = None  # "done" or "failed: <reason>"
        self.on_ended: Callable[[], object] | None = None
        self.ended_at: float | None = None  # time.perf_counter()

    def start(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)
        (self.work / HLS_DIR).mkdir(parents=True)
        self._state = {
            "state": "starting",
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "loudness": live_loudness(self.policy.loudness).mode,
            "started_at": time.time(),
        }
        self._write_state()
        self._task = asyncio.ensure_future(self._run())
        log.info("live_hls_started", raw=str(self.raw))

    def finish(self) -> None:
        """The recorder closed the raw file: feed what is left, then let the encoders end."""
        self._closed.set()

    async def wait(self) -> None:
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await self.wait()

    def kill_encoders(self) -> None:
        """SIGKILL the ffmpeg runs (what a crash or the OOM killer does)."""
        for encoder in self._encoders:
            if encoder.process.returncode is None:
                encoder.process.kill()

    @property
    def encoder_pids(self) -> list[int]:
        return [encoder.process.pid for encoder in self._encoders]

    @property
    def media_s(self) -> float:
        """Seconds of media every rendition has encoded."""
        return min((e.out_s for e in self._encoders), default=0.0)

    # -- the task -----------------------------------------------------------------------

    async def _run(self) -> None:
        heartbeat = asyncio.ensure_future(self._heartbeat())
        try:
            await self._transcode()
            self.outcome = "done"
            self._state.update(state="done", finished_at=time.time())
        except asyncio.CancelledError:
            self.outcome = "failed: cancelled"
            self._state.update(state="failed", reason="cancelled")
            raise
        except Exception as exc:
            self.outcome = f"failed: {exc}"
            self._state.update(state="failed", reason=str(exc)[:300])
            log.warning("live_hls_failed", raw=str(self.raw), error=str(exc))
        finally:
            heartbeat.cancel()
            for encoder in self._encoders:
                if encoder.process.returncode is None:
                    encoder.process.kill()
                    await encoder.process.wait()
            self._state.update(fed_bytes=self.fed_bytes, media_s=round(self.media_s, 3))
            with contextlib.suppress(OSError):
                self._write_state()
            if self._slot is not None:
                self._slot.release()
            self.ended_at = time.perf_counter()
            if self.on_ended is not None:
                self.on_ended()
            log.info("live_hls_ended", raw=str(self.raw), outcome=self.outcome)

    async def _transcode(self) -> None:
        facts = await self._wait_for_header()
        renditions = [MAIN, LOW] if facts.has_video else [MAIN]
        level = live_loudness(self.policy.loudness)
        for rendition in renditions:
            arguments = rendition_arguments(
                Path("pipe:0"),
                self.work,
                rendition=rendition,
                facts=facts,
                loudness=level,
                # what the normaliser achieved, measured as the main run encodes it
                meter=rendition is MAIN and facts.has_audio and level.mode == "live-dynaudnorm",
            )
            without_huge_pages()  # as after the lesson (recordings.processing)
            process = await asyncio.create_subprocess_exec(
                "nice", "-n", str(self.policy.nice),
                self.policy.ffmpeg, "-hide_banner", "-y", *arguments,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            self._encoders.append(_Encoder(rendition, process))
        self._state.update(
            state="running",
            renditions=[r.name for r in renditions],
            has_video=facts.has_video,
            has_audio=facts.has_audio,
        )
        readers = [asyncio.ensure_future(self._read_output(e)) for e in self._encoders]
        try:
            await self._feed()
            self._state["state"] = "finishing"
            codes = [await e.process.wait() for e in self._encoders]
            await asyncio.gather(*readers)
        finally:
            for reader in readers:
                reader.cancel()
        for encoder, code in zip(self._encoders, codes, strict=True):
            if code != 0:
                tail = " | ".join(encoder.stderr)
                raise RuntimeError(f"ffmpeg {encoder.rendition.name} exit {code}: {tail}")
        for encoder in self._encoders:
            playlist = rendition_playlist(self.work, encoder.rendition.name)
            await asyncio.to_thread(complete_playlist, playlist)
        achieved = metered_lufs("\n".join(self._encoders[0].summary))
        if achieved is not None:
            self._state["achieved_lufs"] = achieved

    async def _wait_for_header(self) -> MediaFacts:
        while True:
            closed = self._closed.is_set()
            if self.raw.exists() and self.raw.stat().st_size > 0:
                facts = await asyncio.to_thread(_facts_of_growing, self.raw)
                if facts is not None and (facts.has_video or facts.has_audio):
                    return facts
            if closed:
                raise RuntimeError("the recorder closed without a readable file")
            await asyncio.sleep(POLL_S)

    async def _feed(self) -> None:
        with self.raw.open("rb") as source:
            while True:
                closed = self._closed.is_set()  # before reading: then EOF is the real end
                chunk = source.read(CHUNK_BYTES)
                if chunk:
                    await self._write(chunk)
                    self._check_lag()
                    continue
                if closed:
                    break
                await asyncio.sleep(POLL_S)
        for encoder in self._encoders:
            assert encoder.process.stdin is not None
            encoder.process.stdin.close()
            with contextlib.suppress(ConnectionError):
                await encoder.process.stdin.wait_closed()

    async def _write(self, chunk: bytes) -> None:
        for encoder in self._encoders:
            stdin = encoder.process.stdin
            assert stdin is not None
            if encoder.process.returncode is not None:
                raise RuntimeError(f"ffmpeg {encoder.rendition.name} ended early")
            try:
                stdin.write(chunk)
                await stdin.drain()
            except ConnectionError as exc:
                raise RuntimeError(f"ffmpeg {encoder.rendition.name} ended early") from exc
        self.fed_bytes += len(chunk)

    def _check_lag(self) -> None:
        """Give up (the job then transcodes after the end) rather than trail the lesson by
        more than ``max_lag_s`` of media: the file's unread bytes at the rate fed so far."""
        encoded = self.media_s
        if encoded < 10 * SEGMENT_S:
            return
        backlog = self.raw.stat().st_size - self.fed_bytes
        lag_s = backlog / (self.fed_bytes / encoded)
        self._state["lag_s"] = round(lag_s, 1)
        if lag_s > self.policy.max_lag_s:
            raise RuntimeError(f"fell {lag_s:.0f} s behind the recording")

    async def _read_output(self, encoder: _Encoder) -> None:
        async def progress() -> None:
            assert encoder.process.stdout is not None
            async for raw in encoder.process.stdout:
                seconds = _parse_progress(raw.decode(errors="replace"))
                if seconds is not None:
                    encoder.out_s = seconds

        async def errors() -> None:
            assert encoder.process.stderr is not None
            async for raw in encoder.process.stderr:
                line = raw.decode(errors="replace").strip()
                encoder.stderr.append(line)
                if encoder.summary or "Summary:" in line:
                    encoder.summary.append(line)

        await asyncio.gather(progress(), errors())

    async def _heartbeat(self) -> None:
        while True:
            self._state.update(
                heartbeat=time.time(), fed_bytes=self.fed_bytes, media_s=round(self.media_s, 3)
            )
            # written here, not on a thread: a write still in flight when the task ends could
            # replace the final state with a "running" one
            self._write_state()
            await asyncio.sleep(HEARTBEAT_S)

    def _write_state(self) -> None:
        self._state["heartbeat"] = time.time()
        temporary = self.work / f".{STATE_NAME}.tmp"
        temporary.write_text(json.dumps(self._state), "utf-8")
        os.replace(temporary, self.work / STATE_NAME)


def attach(recorder: LessonRecorder, policy: LiveHlsPolicy | None) -> LiveTranscoder | None:
    """Start transcoding what ``recorder`` writes, if the policy allows and the host has a free
    slot; the transcoder finishes when the recorder stops (register before callbacks that
    queue processing). None: the lesson's renditions are made after the end."""
    if policy is None or not policy.enabled:
        return None
    try:
        slot = HostSlot.acquire(policy)
    except OSError:
        log.exception("live_hls_not_started", raw=str(recorder.path))
        return None
    if slot is None:
        log.info("live_hls_skipped", raw=str(recorder.path), reason="host at its cap")
        return None
    transcoder = LiveTranscoder(recorder.path, policy=policy, slot=slot)
    try:
        transcoder.start()
    except OSError:  # a full disk, say: the lesson is recorded all the same
        slot.release()
        log.exception("live_hls_not_started", raw=str(recorder.path))
        return None

    def recorder_stopped(_: LessonRecorder) -> None:
        transcoder.finish()

    recorder.on_stopped.append(recorder_stopped)
    return transcoder


# -- after the end: the processing job's side ---------------------------------------------


def _playlist(path: Path) -> tuple[list[float], list[str], bool]:
    """Segment durations, segment names and whether the playlist is closed (ENDLIST)."""
    durations: list[float] = []
    names: list[str] = []
    text = path.read_text("utf-8")
    for line in text.splitlines():
        if line.startswith("#EXTINF:"):
            durations.append(float(line.removeprefix("#EXTINF:").split(",")[0]))
        elif line and not line.startswith("#"):
            names.append(line.strip())
    return durations, names, "#EXT-X-ENDLIST" in text


def validate_live(hls: Path, *, facts: MediaFacts, renditions: list[str]) -> str | None:
    """What is wrong with live renditions (None: usable): every playlist closed, every
    segment and init there and non-empty, the renditions' segments aligned, and their length
    within ``MAX_DURATION_ERROR_S`` of the raw file."""
    lengths: dict[str, list[float]] = {}
    for name in renditions:
        playlist = hls / name / "index.m3u8"
        if not playlist.is_file() or not (hls / f"master-{name}.m3u8").is_file():
            return f"{name}: no playlist"
        durations, segments, closed = _playlist(playlist)
        if not closed or not segments or len(durations) != len(segments):
            return f"{name}: playlist not closed"
        init = re.search(r'URI="([^"]+)"', playlist.read_text("utf-8"))
        files = [*segments, *([init.group(1)] if init else [])]
        if not init or any(
            not (hls / name / f).is_file() or (hls / name / f).stat().st_size == 0 for f in files
        ):
            return f"{name}: a segment is missing"
        total = sum(durations)
        if abs(total - facts.duration_s) > MAX_DURATION_ERROR_S:
            return f"{name}: {total:.2f} s of {facts.duration_s:.2f} s"
        lengths[name] = durations
    first = next(iter(lengths.values()))
    for name, durations in lengths.items():
        if len(durations) != len(first) or any(
            abs(a - b) > 0.1 for a, b in zip(durations, first, strict=True)
        ):
            return f"{name}: segments not aligned"
    return None


def _live_mode(state: dict[str, Any]) -> str:
    """The level mode a live run applied (a state written before the modes: its bool)."""
    if "loudness" in state:
        return str(state["loudness"])
    return "dynamic" if state.get("loudnorm") else "off"


async def renditions_from_live(
    raw: Path,
    *,
    out_dir: Path,
    facts: MediaFacts,
    loudness: LoudnessMode,
    report: Report | None = None,
    ffmpeg: str = "ffmpeg",
) -> dict[str, Any] | None:
    """The outputs of ``make_renditions``, from the live transcoder's work: waits while it
    finishes the tail, checks it, and does only what is left. None (and the live work
    removed) when there is no live run, it died, was cut short, or its output fails the
    checks: the caller transcodes in full."""
    work = out_dir / LIVE_DIR
    state = read_state(work)
    if state is None:
        return None
    while state is not None and state.get("state") in RUNNING_STATES:
        if _gone(state):
            break
        if report is not None:
            done = float(state.get("media_s", 0.0))
            share = min(done / facts.duration_s, 1.0) if facts.duration_s else 0.0
            await report(0.05 + 0.8 * share, f"实时转码收尾 {done:.0f}/{facts.duration_s:.0f} 秒")
        await asyncio.sleep(POLL_S)
        state = read_state(work)
    problem: str | None
    if state is None or state.get("state") != "done":
        problem = f"live transcoder {state.get('state') if state else 'gone'}: " + str(
            (state or {}).get("reason", "no heartbeat")
        )
    elif _live_mode(state) != live_loudness(loudness).mode:
        problem = "loudness normalisation differs"
    elif state.get("fed_bytes") != raw.stat().st_size:
        problem = f"fed {state.get('fed_bytes')} of {raw.stat().st_size} bytes"
    else:
        problem = await asyncio.to_thread(
            validate_live, work / HLS_DIR, facts=facts, renditions=list(state["renditions"])
        )
    if problem is not None or state is None:
        log.warning("live_hls_unusable", raw=str(raw), problem=problem)
        shutil.rmtree(work, ignore_errors=True)
        return None
    has_low = "low" in state["renditions"]
    low = rendition_playlist(work, LOW.name)
    try:
        outputs = await finish_renditions(
            work,
            out_dir=out_dir,
            facts=facts,
            renditions=list(state["renditions"]),
            loudness=replace(live_loudness(loudness), achieved_lufs=state.get("achieved_lufs"))
            if facts.has_audio
            else Loudness(),
            # the sprite from the low rendition, decoding only its key frames (every SEGMENT_S)
            sprite_from=low if has_low else raw,
            key_frames_only=has_low,
            report=report,
            ffmpeg=ffmpeg,
        )
    except (ProcessingError, OSError) as exc:  # the work is gone: the full path starts afresh
        log.warning("live_hls_finish_failed", raw=str(raw), error=str(exc))
        return None
    outputs["renditions_from"] = "live"
    return outputs
