"""Online research (教研) meeting rooms: attendance is taken from the room from when it opens.

A meeting room (``research-{id}``, kind "meeting") opens with its first participant, in the
web process or in the SFU worker that hosts it; whichever process opens it calls
``MeetingTrackers.ensure`` so the attendance tracker (``research.lesson_runs``) listens to the
room's events from its first join to its close, and (given ``recordings``) the host's
开始录制 / 停止录制 record the room right there, next to its packets (``recordings.meetings``);
a recording the room's previous process left unfinished (killed mid-meeting) is finished then.
"""

from __future__ import annotations

import weakref
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from sqlalchemy.orm import Session, sessionmaker

from common.logging import get_logger
from research.lesson_runs import AttendanceTracker, attach_attendance_tracker
from streaming.access import research_session_of_room
from streaming.sfu.room import Room

if TYPE_CHECKING:
    from recordings.meetings import MeetingRecordings

log = get_logger(__name__)


class Clock(Protocol):
    def now(self) -> datetime: ...


class MeetingTrackers:
    """Attaches one attendance tracker to each research meeting room, once."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        clock: Clock,
        *,
        recordings: MeetingRecordings | None = None,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self.recordings = recordings
        self._tracked: weakref.WeakKeyDictionary[Room, AttendanceTracker] = (
            weakref.WeakKeyDictionary()
        )

    def ensure(self, room: Room) -> AttendanceTracker | None:
        """The room's tracker, attached now if it has none (None: not a research meeting)."""
        research_session_id = research_session_of_room(room.room_id)
        if research_session_id is None or room.kind != "meeting" or room.closed:
            return None
        tracker = self._tracked.get(room)
        if tracker is None:
            tracker = attach_attendance_tracker(
                room, research_session_id, self._sessions, self._clock
            )
            self._tracked[room] = tracker
            room.recording_hooks = self.recordings
            if self.recordings is not None:
                # a recording the room's previous process left unfinished (it was killed)
                self.recordings.recover_room_soon(room)
            log.info("meeting_attendance_tracked", room=room.room_id)
        return tracker
