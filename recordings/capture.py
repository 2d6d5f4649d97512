"""Record a room's encoded media as it streams: RTP → frames → Matroska/WebM, no decode or encode.

``LessonRecorder`` taps the SFU (``Room.add_packet_tap``) for one publisher's camera and mic
(by default the lead classroom). The tap only appends to an inbox; a task of the recorder
drains the inbox every ``flush_interval_s`` on a worker thread, where packets are
depacketized (``recordings.depacketize``) and muxed with PyAV into a WebM file that grows as
the lesson goes: Matroska clusters of at most a second, flushed to disk as each one closes,
so a killed process leaves a file playable up to its last cluster.

Timestamps come from RTP (90 kHz video, 48 kHz audio), each stream anchored at the arrival of
its first packet relative to the recording's first packet. A publisher that reconnects comes
back with a new SSRC and new RTP clocks: the stream is re-anchored at its new arrival time, so
the file carries on with a gap, which the sidecar JSON (``events.json``) lists beside the
lesson's events (hands, speakers) for chapters.

A failing disk never disturbs the live lesson. The recorder checks the free space every few
seconds and raises a ``low_disk`` alert below ``min_free_bytes``; when a write fails (a full
disk: ``disk_full``; anything else: ``write_failed``) it raises that alert once, stops
tapping and writing (the file stays playable up to its last whole cluster) and closes
cleanly when the lesson ends. Alerts go to ``on_alert`` callbacks (the service notes them on
the recording row, where the library and the 巡课 wall show them), to the log, and to the
``tongke_recording_alerts_total`` counter on ``/metrics``.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import shutil
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import av
from av.container import OutputContainer
from av.stream import Stream

from common.logging import get_logger
from recordings.alerts import ALERT_COUNTS, AlertKind, RecorderAlert
from recordings.depacketize import (
    EncodedFrame,
    OpusDepacketizer,
    Vp8Depacketizer,
    vp8_frame_size,
)

if TYPE_CHECKING:
    from aiortc.rtp import RtpPacket

    from streaming.sfu.events import RoomEvent
    from streaming.sfu.room import Room
    from streaming.sfu.track import PublishedTrack

log = get_logger(__name__)

MediaKind = Literal["audio", "video"]
CLOCK_RATES: dict[MediaKind, int] = {"video": 90000, "audio": 48000}
# Packets are stamped in RTP clock units; the muxer rescales to Matroska's milliseconds (and
# changes the stream's own time_base when it writes the header, so never read it back).
TIME_BASES: dict[MediaKind, Fraction] = {
    kind: Fraction(1, rate) for kind, rate in CLOCK_RATES.items()
}
SIDECAR_VERSION = 1
# Events worth a chapter mark or a line in the replay's margin.
RECORDED_EVENTS = frozenset(
    {
        "lesson_started",
        "lesson_ended",
        "publisher_joined",
        "publisher_left",
        "hand_raised",
        "hand_lowered",
        "hand_accepted",
        "hand_revoked",
        "speaker_changed",
    }
)
RecorderCallback = Callable[["LessonRecorder"], Awaitable[None] | None]

# Below this much free space where a recording is written, a ``low_disk`` alert is raised
# (a 45-minute 1 Mbit/s lesson takes ~340 MB, its web versions ~250 MB more).
DEFAULT_MIN_FREE_BYTES = 1024 * 1024 * 1024
DISK_CHECK_INTERVAL_S = 5.0
MAX_SUMMARY_ERRORS = 20
AlertCallback = Callable[["LessonRecorder", RecorderAlert], None]


def _clock(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600:d}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def _size(free: int) -> str:
    mib = free / 1024 / 1024
    if mib >= 1024:
        return f"{mib / 1024:.1f} GB"
    return f"{mib:.1f} MB" if mib < 10 else f"{mib:.0f} MB"


def _is_disk_full(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if getattr(seen, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def free_bytes_at(path: Path) -> int | None:
    """Free space for unprivileged writes on the file system that holds ``path`` (or its
    nearest existing parent); None when it cannot be read."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            try:
                return shutil.disk_usage(candidate).free
            except OSError:
                return None
    return None


@dataclass(slots=True)
class _Tapped:
    kind: MediaKind
    codec: str
    ssrc: int
    sequence_number: int
    timestamp: int
    marker: bool
    payload: bytes
    arrival: float  # time.monotonic()


@dataclass
class TrackSummary:
    codec: str = ""
    packets: int = 0
    frames: int = 0
    keyframes: int = 0
    frames_lost: int = 0
    frames_cut: int = 0
    frames_skipped: int = 0
    late_packets: int = 0
    duplicates: int = 0
    ssrcs: int = 0
    first_pts_s: float | None = None
    last_pts_s: float | None = None


@dataclass
class RecordingSummary:
    """What the recorder wrote; also stored in the sidecar under ``"summary"``."""

    path: str
    events_path: str
    started_at: float | None = None  # wall clock (epoch s) of the first packet
    duration_s: float = 0.0
    bytes: int = 0
    width: int | None = None
    height: int | None = None
    tracks: dict[str, TrackSummary] = field(default_factory=dict)
    gaps: list[dict[str, Any]] = field(default_factory=list)
    process_seconds: float = 0.0  # worker-thread time spent depacketizing and muxing
    tap_packets: int = 0
    errors: list[str] = field(default_factory=list)


class _TrackState:
    """One recorded media kind across the publisher's connections (one SSRC each)."""

    def __init__(self, kind: MediaKind) -> None:
        self.kind: MediaKind = kind
        self.clock = CLOCK_RATES[kind]
        self.summary = TrackSummary()
        self.ssrc: int | None = None
        self.depacketizer: Vp8Depacketizer | OpusDepacketizer | None = None
        self.base_ts = 0  # unwrapped RTP timestamp of the current SSRC's first frame
        self.anchor = 0  # its pts, in clock units from the recording's start
        self.anchored = False
        self.arrival_of_ssrc = 0.0
        self.last_pts: int | None = None
        self.keyframe_wanted = False

    def new_depacketizer(self) -> Vp8Depacketizer | OpusDepacketizer:
        return Vp8Depacketizer() if self.kind == "video" else OpusDepacketizer()

    def fold_stats(self) -> None:
        if self.depacketizer is None:
            return
        stats, summary = self.depacketizer.stats, self.summary
        summary.packets += stats.packets
        summary.frames_lost += stats.frames_lost
        summary.frames_cut += stats.frames_cut
        summary.frames_skipped += stats.frames_skipped
        summary.late_packets += stats.late_packets
        summary.duplicates += stats.duplicates


class _MediaWriter:
    """The thread side: depacketize, time-stamp, mux, keep the sidecar. One thread at a time."""

    def __init__(
        self,
        path: Path,
        events_path: Path,
        *,
        metadata: dict[str, str],
        cluster_ms: int,
        audio_only_after_s: float,
    ) -> None:
        self.path = path
        self.events_path = events_path
        self.metadata = metadata
        self.cluster_ms = cluster_ms
        self.audio_only_after_s = audio_only_after_s
        self.summary = RecordingSummary(path=str(path), events_path=str(events_path))
        self.tracks: dict[MediaKind, _TrackState] = {
            "video": _TrackState("video"),
            "audio": _TrackState("audio"),
        }
        self.events: list[dict[str, Any]] = []
        self._t0: float | None = None  # monotonic arrival of the first packet
        self._wall_t0: float | None = None
        self._container: OutputContainer | None = None
        self._streams: dict[MediaKind, Stream] = {}
        self._waiting: list[tuple[MediaKind, EncodedFrame, int]] = []  # until the header
        self._dirty = True
        self._closed = False
        self.close_error: Exception | None = None

    # -- packets ----------------------------------------------------------------------

    def process(self, batch: list[_Tapped], events: list[RoomEvent]) -> set[MediaKind]:
        """Handle a batch; returns the kinds whose publisher should send a keyframe."""
        started = time.perf_counter()
        wanted: set[MediaKind] = set()
        for tapped in batch:
            self._packet(tapped)
        for event in events:
            self._event(event)
        for kind, state in self.tracks.items():
            if state.keyframe_wanted:
                state.keyframe_wanted = False
                wanted.add(kind)
        self._open_audio_only_if_no_video(batch[-1].arrival if batch else None)
        self.summary.process_seconds += time.perf_counter() - started
        if self._dirty:
            self.write_sidecar()
        return wanted

    def _packet(self, tapped: _Tapped) -> None:
        if self._closed:
            return
        if self._t0 is None:
            self._t0 = tapped.arrival
            self._wall_t0 = time.time() - (time.monotonic() - tapped.arrival)
            self.summary.started_at = self._wall_t0
        state = self.tracks[tapped.kind]
        if tapped.ssrc != state.ssrc:
            self._switch_ssrc(state, tapped)
        assert state.depacketizer is not None
        was_waiting = state.depacketizer.needs_keyframe
        frames = state.depacketizer.push(
            sequence_number=tapped.sequence_number,
            timestamp=tapped.timestamp,
            marker=tapped.marker,
            payload=tapped.payload,
            arrival=tapped.arrival,
        )
        if state.depacketizer.needs_keyframe and not was_waiting:
            state.keyframe_wanted = True  # a frame was lost: ask for a fresh start
        for frame in frames:
            self._frame(state, frame)

    def _switch_ssrc(self, state: _TrackState, tapped: _Tapped) -> None:
        if state.depacketizer is not None:
            for frame in state.depacketizer.flush():
                self._frame(state, frame)
            state.fold_stats()
        assert self._t0 is not None
        previous = state.ssrc
        state.ssrc = tapped.ssrc
        state.summary.codec = tapped.codec
        state.summary.ssrcs += 1
        state.depacketizer = state.new_depacketizer()
        state.anchored = False
        state.arrival_of_ssrc = tapped.arrival
        state.keyframe_wanted = state.kind == "video"
        if previous is not None:
            log.info("recording_publisher_reconnected", kind=state.kind, path=str(self.path))

    def _frame(self, state: _TrackState, frame: EncodedFrame) -> None:
        assert self._t0 is not None
        if not state.anchored:
            # Re-anchor the new connection's RTP clock at its arrival: a reconnect shows as
            # a gap in the timeline, never as frames piling onto earlier ones.
            arrival_pts = round((state.arrival_of_ssrc - self._t0) * state.clock)
            floor = 0 if state.last_pts is None else state.last_pts + 1
            state.base_ts = frame.timestamp
            state.anchor = max(arrival_pts, floor)
            state.anchored = True
            if state.last_pts is not None:
                self.summary.gaps.append(
                    {
                        "kind": state.kind,
                        "from_s": round(state.last_pts / state.clock, 3),
                        "to_s": round(state.anchor / state.clock, 3),
                        "reason": "publisher_reconnected",
                    }
                )
                self._dirty = True
        pts = state.anchor + frame.timestamp - state.base_ts
        if state.last_pts is not None and pts <= state.last_pts:
            state.summary.late_packets += 1
            return
        state.last_pts = pts
        seconds = pts / state.clock
        if state.summary.first_pts_s is None:
            state.summary.first_pts_s = round(seconds, 3)
        state.summary.last_pts_s = round(seconds, 3)
        state.summary.frames += 1
        state.summary.keyframes += frame.keyframe
        if self._container is None:
            if state.kind == "video" and frame.keyframe:
                size = vp8_frame_size(frame.data)
                self._open(video_size=size or (640, 360))
            else:
                self._waiting.append((state.kind, frame, pts))
                return
        self._mux(state.kind, frame, pts)

    def _open_audio_only_if_no_video(self, now: float | None) -> None:
        if self._container is not None or self._t0 is None or now is None:
            return
        if now - self._t0 >= self.audio_only_after_s and self.tracks["video"].ssrc is None:
            self._open(video_size=None)

    def _open(self, *, video_size: tuple[int, int] | None) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        container = av.open(
            str(self.path),
            "w",
            format="webm",
            container_options={
                # Close a cluster every second and flush it: the crash-safety unit.
                "cluster_time_limit": str(self.cluster_ms),
                "flush_packets": "1",
            },
        )
        container.metadata.update(self.metadata)
        if video_size is not None:
            width, height = video_size
            video = container.add_mux_stream("vp8", width=width, height=height)
            video.time_base = TIME_BASES["video"]
            self._streams["video"] = video
            self.summary.width, self.summary.height = width, height
        audio = container.add_mux_stream("opus", rate=CLOCK_RATES["audio"])
        audio.time_base = TIME_BASES["audio"]
        self._streams["audio"] = audio
        self._container = container
        waiting, self._waiting = self._waiting, []
        for kind, frame, pts in waiting:
            self._mux(kind, frame, pts)

    def _mux(self, kind: MediaKind, frame: EncodedFrame, pts: int) -> None:
        stream = self._streams.get(kind)
        if stream is None or self._container is None:
            return
        packet = av.Packet(frame.data)
        packet.stream = stream
        packet.time_base = TIME_BASES[kind]
        packet.pts = packet.dts = pts
        packet.is_keyframe = frame.keyframe
        self._container.mux(packet)

    # -- events and the sidecar -------------------------------------------------------

    def _event(self, event: RoomEvent) -> None:
        if event.kind not in RECORDED_EVENTS:
            return
        at = event.at - self._wall_t0 if self._wall_t0 is not None else 0.0
        self.events.append(
            {
                "t": round(max(at, 0.0), 3),
                "kind": event.kind,
                "participant": event.participant_id,
                "detail": dict(event.detail),
                "at": event.at,
            }
        )
        self._dirty = True

    def write_sidecar(self) -> None:
        """Replace the sidecar atomically, so a crash leaves the previous or the new one."""
        self._dirty = False
        document = {
            "version": SIDECAR_VERSION,
            "media": self.path.name,
            "started_at": self._wall_t0,
            "events": self.events,
            "gaps": self.summary.gaps,
            "summary": asdict(self.summary),
        }
        self.events_path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.events_path.with_name(self.events_path.name + ".tmp")
        temporary.write_text(json.dumps(document, ensure_ascii=False, indent=1), "utf-8")
        os.replace(temporary, self.events_path)

    # -- the end ----------------------------------------------------------------------

    def close(self) -> RecordingSummary:
        """Flush, close the file and write the sidecar; an I/O error (a full disk) is kept in
        ``close_error`` instead of raised: the clusters written so far stay playable."""
        if self._closed:
            return self.summary
        self._closed = True
        try:
            for state in self.tracks.values():
                if state.depacketizer is not None:
                    for frame in state.depacketizer.flush():
                        self._frame(state, frame)
                    state.fold_stats()
                    state.depacketizer = None
            if self._container is None and self._waiting:
                self._open(video_size=None)
        except Exception as exc:
            self.close_error = exc
        if self._container is not None:
            try:
                self._container.close()
            except Exception as exc:  # writing the cues
                self.close_error = self.close_error or exc
            self._container = None
        self.summary.tracks = {kind: state.summary for kind, state in self.tracks.items()}
        ends = [
            s.summary.last_pts_s - (s.summary.first_pts_s or 0.0)
            for s in self.tracks.values()
            if s.summary.last_pts_s is not None
        ]
        self.summary.duration_s = round(max(ends, default=0.0), 3)
        self.summary.bytes = self.path.stat().st_size if self.path.exists() else 0
        try:
            self.write_sidecar()
        except OSError as exc:
            self.close_error = self.close_error or exc
        return self.summary


def _sources_of_lead(room: Room, track: PublishedTrack) -> bool:
    participant = room.participants.get(track.participant_id)
    if participant is None:
        return False
    if room.kind == "lesson":
        return participant.role == "lead" and track.source in ("camera", "mic")
    return track.source in ("camera", "mic")


class LessonRecorder:
    """Records one publisher's camera and mic of a room into ``path`` (WebM) as it streams.

    ``start()`` taps the room; ``stop()`` (or the room's ``lesson_ended``) drains what is
    left, closes the file and writes the sidecar; ``on_stopped`` callbacks run after that.
    By default the lead classroom is recorded; ``publisher_id`` picks another participant
    (in a meeting room, without it, the first participant heard or seen is recorded) and
    ``sources`` which of its tracks (a meeting's screen share goes to a file of its own).
    """

    def __init__(
        self,
        room: Room,
        path: Path,
        *,
        events_path: Path | None = None,
        publisher_id: str | None = None,
        sources: tuple[str, ...] = ("camera", "mic"),
        metadata: dict[str, str] | None = None,
        flush_interval_s: float = 0.25,
        cluster_ms: int = 1000,
        audio_only_after_s: float = 5.0,
        min_free_bytes: int = DEFAULT_MIN_FREE_BYTES,
    ) -> None:
        self.room = room
        self.path = Path(path)
        self.events_path = events_path or self.path.with_name("events.json")
        self.publisher_id = publisher_id
        self.sources = sources
        self.flush_interval_s = flush_interval_s
        self.on_stopped: list[RecorderCallback] = []
        self.on_alert: list[AlertCallback] = []
        self.alerts: list[RecorderAlert] = []
        self.min_free_bytes = min_free_bytes
        # after a failed write nothing more is tapped or written: packets the tap let go
        self.dropped_packets = 0
        self._broken = False
        self._next_disk_check = 0.0
        self.summary: RecordingSummary | None = None
        self._writer = _MediaWriter(
            self.path,
            self.events_path,
            metadata=metadata or {},
            cluster_ms=cluster_ms,
            audio_only_after_s=audio_only_after_s,
        )
        self._inbox: deque[_Tapped] = deque()
        self._events: deque[RoomEvent] = deque()
        self._selected: dict[PublishedTrack, bool] = {}
        self._tracks: dict[MediaKind, PublishedTrack] = {}
        self._remove_tap: Callable[[], None] | None = None
        self._stop_listening: Callable[[], None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping: asyncio.Task[RecordingSummary] | None = None
        self._lock = threading.Lock()  # the writer runs on one worker thread at a time
        self._in_flight: asyncio.Future[set[MediaKind]] | None = None
        self.tap_packets = 0

    @property
    def running(self) -> bool:
        return self._task is not None and self._stopping is None

    @property
    def backlog(self) -> int:
        """Tapped packets not yet written (the inbox the worker thread drains)."""
        return len(self._inbox)

    def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("recorder already started")
        self._remove_tap = self.room.add_packet_tap(self._tap)
        self._stop_listening = self.room.events.listen(self._on_event)
        self._task = asyncio.ensure_future(self._drain_loop())
        log.info("recording_started", room=self.room.room_id, path=str(self.path))

    # -- the hot path: runs for every RTP packet of every published track --------------

    def _tap(self, track: PublishedTrack, packet: RtpPacket) -> None:
        selected = self._selected.get(track)
        if selected is None:
            selected = self._select(track)
        if selected:
            if self._broken:
                self.dropped_packets += 1
                return
            self.tap_packets += 1
            self._inbox.append(
                _Tapped(
                    track.kind,
                    track.codec_name or "",
                    packet.ssrc,
                    packet.sequence_number,
                    packet.timestamp,
                    packet.marker == 1,
                    packet.payload,
                    time.monotonic(),
                )
            )

    def _select(self, track: PublishedTrack) -> bool:
        wanted = (
            track.participant_id == self.publisher_id and track.source in self.sources
            if self.publisher_id is not None
            else _sources_of_lead(self.room, track)
        )
        codec = (track.codec_name or "").lower()
        if wanted and codec not in ("vp8", "opus"):
            log.warning("recording_codec_unsupported", codec=codec, room=self.room.room_id)
            wanted = False
        current = self._tracks.get(track.kind)
        if wanted and current is not None and current.participant_id != track.participant_id:
            wanted = False  # one publisher per recording (a meeting's first one)
        if wanted:
            if self.publisher_id is None and self.room.kind == "meeting":
                self.publisher_id = track.participant_id
            self._tracks[track.kind] = track
        self._selected[track] = wanted
        return wanted

    def _on_event(self, event: RoomEvent) -> None:
        self._events.append(event)
        if event.kind == "lesson_ended":
            self.stop_soon()

    # -- draining ---------------------------------------------------------------------

    async def _drain_loop(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval_s)
            await self._drain()
            now = time.monotonic()
            if now >= self._next_disk_check:
                self._next_disk_check = now + DISK_CHECK_INTERVAL_S
                self.check_disk()

    def check_disk(self) -> None:
        """Raise ``low_disk`` (once) when the recording's file system runs short of space."""
        if self._broken or any(alert.kind == "low_disk" for alert in self.alerts):
            return
        free = free_bytes_at(self.path.parent)
        if free is not None and free < self.min_free_bytes:
            self._alert(
                "low_disk",
                f"录像存储空间不足：仅剩 {_size(free)}，请尽快清理；"
                "空间用尽时录像将中断，直播课堂不受影响",
                free_bytes=free,
            )

    def _recorded_s(self) -> float:
        ends = [s.summary.last_pts_s or 0.0 for s in self._writer.tracks.values()]
        return max(ends, default=0.0)

    def _alert(
        self, kind: AlertKind, message: str, *, free_bytes: int | None = None, detail: str = ""
    ) -> None:
        alert = RecorderAlert(kind, message, round(self._recorded_s(), 3), free_bytes, detail)
        self.alerts.append(alert)
        ALERT_COUNTS[kind] += 1
        log.error(
            "recording_alert",
            kind=kind,
            room=self.room.room_id,
            path=str(self.path),
            at_s=alert.at_s,
            free_bytes=free_bytes,
            detail=detail,
        )
        for callback in self.on_alert:
            try:
                callback(self, alert)
            except Exception:
                log.exception("recording_alert_callback_failed", path=str(self.path))

    async def _drain(self) -> None:
        batch = [self._inbox.popleft() for _ in range(len(self._inbox))]
        events = [self._events.popleft() for _ in range(len(self._events))]
        if self._broken:
            self.dropped_packets += len(batch)
            return
        if not batch and not events:
            return
        # Shielded: stopping cancels the drain loop, and a batch still queued for a worker
        # thread would be dropped with it; ``_stop`` waits for this one instead.
        self._in_flight = asyncio.ensure_future(asyncio.to_thread(self._process, batch, events))
        try:
            wanted = await asyncio.shield(self._in_flight)
        except asyncio.CancelledError:
            raise  # ``_stop`` takes over the batch in flight
        except Exception as exc:
            self._in_flight = None
            self._write_failed(exc)
            return
        self._in_flight = None
        for kind in wanted:
            track = self._tracks.get(kind)
            if track is not None:
                track.request_keyframe()

    def _write_failed(self, exc: BaseException) -> None:
        """A full disk or a muxer error must never disturb the live lesson: raise the alert
        once, stop tapping and writing, keep what the file holds."""
        detail = f"{type(exc).__name__}: {exc}"
        errors = self._writer.summary.errors
        if len(errors) < MAX_SUMMARY_ERRORS:
            errors.append(detail)
        if self._broken:
            return
        self._broken = True
        self._inbox.clear()
        stopped_at = _clock(self._recorded_s())
        if _is_disk_full(exc):
            self._alert(
                "disk_full",
                f"录像存储空间已满，录像止于 {stopped_at}；直播课堂不受影响，请清理磁盘",
                free_bytes=free_bytes_at(self.path.parent),
                detail=detail,
            )
        else:
            self._alert(
                "write_failed",
                f"录像写入失败，录像止于 {stopped_at}；直播课堂不受影响",
                detail=detail,
            )

    def _process(self, batch: list[_Tapped], events: list[RoomEvent]) -> set[MediaKind]:
        with self._lock:
            return self._writer.process(batch, events)

    # -- stopping ---------------------------------------------------------------------

    def stop_soon(self) -> None:
        """Stop in the background (from an event listener, which must not wait)."""
        if self._stopping is None and self._task is not None:
            self._stopping = asyncio.ensure_future(self._stop())

    async def stop(self) -> RecordingSummary:
        """Stop tapping, write what is left, close the file; returns what was recorded."""
        if self._task is None:
            raise RuntimeError("recorder was never started")
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._stop())
        return await asyncio.shield(self._stopping)

    async def _stop(self) -> RecordingSummary:
        if self._remove_tap is not None:
            self._remove_tap()
        if self._stop_listening is not None:
            self._stop_listening()
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        if self._in_flight is not None:
            # the batch the cancelled loop was writing: finished before the last one
            [outcome] = await asyncio.gather(self._in_flight, return_exceptions=True)
            if isinstance(outcome, Exception):
                self._write_failed(outcome)
        await self._drain()
        self._writer.summary.tap_packets = self.tap_packets
        self.summary = await asyncio.to_thread(self._close_writer)
        if self._writer.close_error is not None:
            self._write_failed(self._writer.close_error)
        log.info(
            "recording_stopped",
            room=self.room.room_id,
            path=str(self.path),
            duration_s=self.summary.duration_s,
            bytes=self.summary.bytes,
        )
        for callback in self.on_stopped:
            try:
                result = callback(self)
                if result is not None:
                    await result
            except Exception:
                log.exception("recording_stop_callback_failed", path=str(self.path))
        return self.summary

    def _close_writer(self) -> RecordingSummary:
        with self._lock:
            return self._writer.close()
