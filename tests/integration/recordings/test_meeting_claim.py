"""Who finishes a meeting recording (SQLite and PostgreSQL): of the processes that find it
unfinished, one takes it; its renewals keep it, and one taken by a process that died is taken
over once its lease ran out, after which the old claim renews, releases and writes nothing; a
process stopping mid-preview puts it back; lessons and finished meetings are never taken."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from recordings.meetings import (
    CLAIM_KEY,
    FINISH_LEASE_S,
    PENDING_MESSAGE,
    ClaimLostError,
    _published,
    claim_to_finish,
    new_recording_for_research_session,
    release_unfinished,
    renew_claim,
)
from recordings.models import Recording
from research.models import ResearchSession
from tests.conftest import DemoDatabase
from tests.fixtures.recordings import WCK_EN_4, make_recording


def _meeting_recording(db: DemoDatabase) -> int:
    with db.sessions() as session:
        first = session.scalars(select(ResearchSession.id).order_by(ResearchSession.id)).first()
        assert first is not None
        recording = new_recording_for_research_session(session, research_session_id=first)
        session.commit()
        return recording.id


def _state(db: DemoDatabase, recording_id: int) -> tuple[str, str]:
    with db.sessions() as session:
        row = session.get_one(Recording, recording_id)
        return row.status, row.status_message


def _taken_ago(db: DemoDatabase, recording_id: int, seconds: float) -> None:
    with db.sessions() as session:
        session.execute(
            update(Recording)
            .where(Recording.id == recording_id)
            .values(updated_at=datetime.now(UTC) - timedelta(seconds=seconds))
        )
        session.commit()


def _claim_of(db: DemoDatabase, recording_id: int) -> str | None:
    with db.sessions() as session:
        return session.get_one(Recording, recording_id).outputs.get(CLAIM_KEY)


def test_one_process_takes_an_unfinished_meeting_recording(db: DemoDatabase) -> None:
    recording_id = _meeting_recording(db)
    first = claim_to_finish(db.sessions, recording_id=recording_id)
    assert first is not None and _claim_of(db, recording_id) == first
    assert _state(db, recording_id) == ("processing", PENDING_MESSAGE)
    assert claim_to_finish(db.sessions, recording_id=recording_id) is None  # the second finder

    # renewed while its process works, the lease starts again: nobody takes it over
    _taken_ago(db, recording_id, FINISH_LEASE_S + 10)
    assert renew_claim(db.sessions, recording_id=recording_id, token=first)
    assert claim_to_finish(db.sessions, recording_id=recording_id) is None

    # its process died: within the lease nobody takes it over, after it one does, once
    _taken_ago(db, recording_id, FINISH_LEASE_S - 10)
    assert claim_to_finish(db.sessions, recording_id=recording_id) is None
    _taken_ago(db, recording_id, FINISH_LEASE_S + 10)
    second = claim_to_finish(db.sessions, recording_id=recording_id)
    assert second is not None and second != first
    assert claim_to_finish(db.sessions, recording_id=recording_id) is None

    # the first one, alive after all, has lost it: it neither renews, nor releases, nor
    # publishes over the new owner's work
    assert not renew_claim(db.sessions, recording_id=recording_id, token=first)
    release_unfinished(db.sessions, recording_id=recording_id, token=first)
    assert _state(db, recording_id) == ("processing", PENDING_MESSAGE)
    with pytest.raises(ClaimLostError):
        _published(
            db.sessions,
            recording_id=recording_id,
            job_id="stale",
            preview={"meeting_version": "preview"},
            message="stale",
            token=first,
        )
    assert _state(db, recording_id) == ("processing", PENDING_MESSAGE)
    assert _claim_of(db, recording_id) == second
    assert renew_claim(db.sessions, recording_id=recording_id, token=second)

    # a process stopping mid-preview puts it back for the next one
    release_unfinished(db.sessions, recording_id=recording_id, token=second)
    assert _state(db, recording_id)[0] == "recording"
    assert not renew_claim(db.sessions, recording_id=recording_id, token=second)
    assert claim_to_finish(db.sessions, recording_id=recording_id)

    # once its composition is queued, or it is ready, nobody takes it again
    with db.sessions() as session:
        session.get_one(Recording, recording_id).job_id = f"meeting-recording-{recording_id}"
        session.commit()
    _taken_ago(db, recording_id, FINISH_LEASE_S + 10)
    assert not claim_to_finish(db.sessions, recording_id=recording_id)
    release_unfinished(db.sessions, recording_id=recording_id)
    assert _state(db, recording_id)[0] == "processing"


def test_a_lessons_recording_is_never_taken_as_a_meeting(db: DemoDatabase) -> None:
    lesson = make_recording(db, WCK_EN_4, status="recording")
    assert not claim_to_finish(db.sessions, recording_id=lesson)
    assert _state(db, lesson)[0] == "recording"
