"""Record an online 教研 meeting as it streams: every participant's own files, plus a timeline.

No decode or encode during the meeting: each participant's camera and mic go to one WebM and
their screen share to another, each written by a ``LessonRecorder`` (``recordings.capture``)
that taps only that participant's tracks, so a participant who drops and rejoins carries on
in the same file with the gap noted in its sidecar. Beside them, ``meeting.json`` keeps who
was there and what happened when (joins and leaves, the active speaker, screen shares, mute
all), replaced atomically on every change so a crash leaves a readable timeline. After the
meeting a job (``recordings.composition``) turns all of it into one replayable file.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common.logging import get_logger
from recordings.alerts import RecorderAlert
from recordings.capture import DEFAULT_MIN_FREE_BYTES, LessonRecorder

if TYPE_CHECKING:
    from recordings.meeting_preview import PreviewChunker
    from streaming.sfu.events import RoomEvent
    from streaming.sfu.room import Room

log = get_logger(__name__)

TIMELINE_NAME = "meeting.json"
TIMELINE_VERSION = 1
TRACKS_DIR = "tracks"
# What the composition follows, and what the replay's chapters are made of.
TIMELINE_EVENTS = frozenset(
    {
        "participant_joined",
        "participant_left",
        "speaker_changed",
        "screen_share_changed",
        "spotlight_changed",
        "muted_all",
    }
)
MeetingCallback = Callable[["MeetingRecorder"], Awaitable[None] | None]


@dataclass
class MeetingParticipant:
    """One participant of the recording and the files that hold their media."""

    name: str
    host: bool
    camera: str  # camera and mic, relative to the recording's folder
    screen: str | None = None


@dataclass
class MeetingTimeline:
    """``meeting.json``: times are seconds from ``started_at`` (wall clock, epoch seconds)."""

    started_at: float
    stopped_at: float | None = None
    participants: dict[str, MeetingParticipant] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def duration_s(self) -> float | None:
        return None if self.stopped_at is None else round(self.stopped_at - self.started_at, 3)

    def as_document(self) -> dict[str, Any]:
        return {
            "version": TIMELINE_VERSION,
            "started_at": self.started_at,
            "stopped_at": self.stopped_at,
            "duration_s": self.duration_s,
            "participants": {pid: asdict(p) for pid, p in self.participants.items()},
            "events": self.events,
        }

    @classmethod
    def read(cls, path: Path) -> MeetingTimeline:
        document = json.loads(path.read_text("utf-8"))
        return cls(
            started_at=float(document["started_at"]),
            stopped_at=document.get("stopped_at"),
            participants={
                pid: MeetingParticipant(**fields)
                for pid, fields in document.get("participants", {}).items()
            },
            events=list(document.get("events", [])),
        )


def write_timeline(path: Path, timeline: MeetingTimeline) -> None:
    """Replace ``meeting.json`` atomically (small: a few hundred events for an hour)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(timeline.as_document(), ensure_ascii=False, indent=1), "utf-8")
    os.replace(temporary, path)


class MeetingRecorder:
    """Records a meeting room from ``start()`` until ``stop()`` or the room closes.

    ``folder`` is the recording's folder; the participants' files go under ``tracks/``.
    ``on_stopped`` callbacks run once every file is closed and the timeline is final.
    """

    def __init__(
        self,
        room: Room,
        folder: Path,
        *,
        flush_interval_s: float = 0.25,
        min_free_bytes: int = DEFAULT_MIN_FREE_BYTES,
        preview_chunk_s: float | None = None,
    ) -> None:
        self.room = room
        self.folder = folder
        self.flush_interval_s = flush_interval_s
        self.min_free_bytes = min_free_bytes
        # the mics mixed minute by minute for the preview (recordings.meeting_preview)
        self.preview_chunk_s = preview_chunk_s
        self.chunker: PreviewChunker | None = None
        self.timeline_path = folder / TIMELINE_NAME
        self.timeline = MeetingTimeline(started_at=time.time())
        self.on_stopped: list[MeetingCallback] = []
        # a storage alert of any participant's recorder, once per kind for the meeting
        self.on_alert: list[Callable[[MeetingRecorder, RecorderAlert], None]] = []
        self.alerts: list[RecorderAlert] = []
        self.recorders: dict[tuple[str, str], LessonRecorder] = {}  # (participant, file kind)
        self._stop_listening: Callable[[], None] | None = None
        self._stopping: asyncio.Task[None] | None = None
        self._unseen: set[str] = set()  # inspectors

    @property
    def running(self) -> bool:
        return self._stop_listening is not None and self._stopping is None

    def start(self) -> None:
        self.timeline.started_at = time.time()
        self._stop_listening = self.room.events.listen(self._on_event)
        for pid, participant in self.room.participants.items():
            if participant.role == "inspector":
                self._unseen.add(pid)
                continue
            self._note("participant_joined", pid, {"role": participant.role}, at=0.0)
            self._follow(pid)
            if "screen" in participant.published and participant.negotiated:
                self._follow(pid, screen=True)
        # what the picture starts from: who is speaking and who shares right now
        if self.room.speakers.active is not None:
            self._note("speaker_changed", self.room.speakers.active, {}, at=0.0)
        if self.room.screen_sharer is not None:
            self._note("screen_share_changed", self.room.screen_sharer, {"sharing": True}, at=0.0)
        self._write_timeline()
        if self.preview_chunk_s:
            from recordings.meeting_preview import PreviewChunker

            self.chunker = PreviewChunker(self.folder, self.timeline, chunk_s=self.preview_chunk_s)
            self.chunker.start()
        log.info("meeting_recording_started", room=self.room.room_id, folder=str(self.folder))

    def _follow(self, pid: str, *, screen: bool = False) -> None:
        """Start the recorder of one participant's camera and mic (or screen), once."""
        key = (pid, "screen" if screen else "camera")
        if key in self.recorders:
            return
        participant = self.room.participants.get(pid)
        if participant is None:
            return
        entry = self.timeline.participants.get(pid)
        if entry is None:
            index = len(self.timeline.participants) + 1
            entry = MeetingParticipant(
                name=participant.identity.display_name,
                host=participant.identity.host,
                camera=f"{TRACKS_DIR}/p{index}.webm",
            )
            self.timeline.participants[pid] = entry
        if screen:
            entry.screen = entry.camera.replace(".webm", "-screen.webm")
        relative = entry.screen if screen and entry.screen else entry.camera
        path = self.folder / relative
        recorder = LessonRecorder(
            self.room,
            path,
            events_path=path.with_suffix(".events.json"),
            publisher_id=pid,
            sources=("screen",) if screen else ("camera", "mic"),
            metadata={"title": entry.name, "comment": f"meeting {self.room.room_id}"},
            flush_interval_s=self.flush_interval_s,
            min_free_bytes=self.min_free_bytes,
        )
        recorder.on_alert.append(self._recorder_alert)
        self.recorders[key] = recorder
        recorder.start()

    def _recorder_alert(self, _recorder: LessonRecorder, alert: RecorderAlert) -> None:
        if any(seen.kind == alert.kind for seen in self.alerts):
            return
        self.alerts.append(alert)
        for callback in self.on_alert:
            try:
                callback(self, alert)
            except Exception:
                log.exception("meeting_alert_callback_failed", room=self.room.room_id)

    def _on_event(self, event: RoomEvent) -> Awaitable[None] | None:
        if event.kind == "room_closed":
            return self.stop()
        if self._stopping is not None:
            return None
        pid = event.participant_id
        if event.detail.get("role") == "inspector" and pid is not None:
            self._unseen.add(pid)  # 巡课 looks in unseen: neither recorded nor listed
        if pid in self._unseen:
            return None
        if event.kind == "participant_joined" and pid is not None:
            self._follow(pid)
        elif event.kind == "publisher_joined" and pid is not None:
            self._follow(pid, screen=event.detail.get("source") == "screen")
        if event.kind in TIMELINE_EVENTS:
            self._note(event.kind, pid, dict(event.detail), at=event.at - self.timeline.started_at)
            self._write_timeline()
        return None

    def _note(self, kind: str, pid: str | None, detail: dict[str, Any], *, at: float) -> None:
        self.timeline.events.append(
            {"t": round(max(at, 0.0), 3), "kind": kind, "participant": pid, "detail": detail}
        )

    def _write_timeline(self) -> None:
        write_timeline(self.timeline_path, self.timeline)

    async def stop(self) -> None:
        """Stop every participant's recorder, finish the timeline, run ``on_stopped``."""
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._stop())
        await asyncio.shield(self._stopping)

    async def _stop(self) -> None:
        if self._stop_listening is not None:
            self._stop_listening()
        self.timeline.stopped_at = time.time()
        if self.chunker is not None:
            await self.chunker.stop()
        await asyncio.gather(*(recorder.stop() for recorder in self.recorders.values()))
        self._write_timeline()
        log.info(
            "meeting_recording_stopped",
            room=self.room.room_id,
            duration_s=self.timeline.duration_s,
            files=len(self.recorders),
        )
        for callback in self.on_stopped:
            try:
                result = callback(self)
                if result is not None:
                    await result
            except Exception:
                log.exception("meeting_recording_stop_callback_failed", folder=str(self.folder))
