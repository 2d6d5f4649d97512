"""Who finishes a meeting recording (SQLite and PostgreSQL): of the processes that find it
unfinished, one takes it; its renewals keep it, and one taken by a process that died is taken
over once its lease ran out, after which the old claim renews, releases and writes nothing; a
process stopping mid-preview puts it back; lessons and finished meetings are never taken. The
lease is judged on the database's clock: a finder whose host's clock is 10 minutes off neither
takes over a live lease nor waits past one that ran out."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from common.jobs import InProcessJobQueue
from recordings import meetings
from recordings.meetings import (
    CLAIM_KEY,
    EMPTY_MESSAGE,
    FINISH_LEASE_S,
    PENDING_MESSAGE,
    ClaimLostError,
    MeetingRecordings,
    _published,
    claim_to_finish,
    new_recording_for_research_session,
    release_unfinished,
    renew_claim,
    unfinished_meetings,
)
from recordings.models import Recording
from recordings.storage_clock import storage_now
from research.models import ResearchSession
from tests.conftest import DemoDatabase
from tests.fixtures.recordings import WCK_EN_4, make_recording, skew_clock


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


@pytest.mark.parametrize(
    "skew", [timedelta(minutes=10), timedelta(minutes=-10)], ids=["ahead", "behind"]
)
async def test_a_finder_whose_clock_is_off_judges_the_lease_on_the_databases(
    db: DemoDatabase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, skew: timedelta
) -> None:
    # the product's database calls in threads, as the finder makes them (the loop guard)
    recording_id = await asyncio.to_thread(_meeting_recording, db)
    research_session_id = _research_session_of(db, recording_id)
    held = await asyncio.to_thread(claim_to_finish, db.sessions, recording_id=recording_id)
    assert held is not None  # a finisher, renewing
    assert await asyncio.to_thread(renew_claim, db.sessions, recording_id=recording_id, token=held)
    media_root = tmp_path / "media"  # no files: the taker fails it at once (nothing recorded)
    finder = MeetingRecordings(db.sessions, media_root, InProcessJobQueue())
    skew_clock(monkeypatch, meetings, skew)  # the finder's host, ahead or behind
    try:
        # the lease is live: nobody takes it over, and a finder looks again when it ends
        assert (
            await asyncio.to_thread(claim_to_finish, db.sessions, recording_id=recording_id) is None
        )
        assert await finder.recover_interrupted(research_session_id=research_session_id) == []
        assert set(finder.lookouts) == {research_session_id} and not finder.finishing
        assert _claim_of(db, recording_id) == held
        (found,) = await asyncio.to_thread(  # what the finder waits: the lease's time left
            unfinished_meetings,
            db.sessions,
            media_root=media_root,
            research_session_id=research_session_id,
        )
        assert found.lease_left_s == pytest.approx(FINISH_LEASE_S, abs=5)

        # its finisher died and the lease ran out: taken over now, not minutes later
        _taken_ago(db, recording_id, FINISH_LEASE_S + 5)
        tried = await finder.recover_interrupted(research_session_id=research_session_id)
        assert tried == [recording_id]
        await asyncio.gather(*finder.finishing.values())
        assert _state(db, recording_id) == ("failed", EMPTY_MESSAGE)
    finally:
        await finder.close()


@pytest.mark.parametrize(
    "skew", [timedelta(minutes=10), timedelta(minutes=-10)], ids=["ahead", "behind"]
)
async def test_a_sweeper_whose_clock_is_off_judges_a_meetings_files_on_their_storages_clock(
    db: DemoDatabase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, skew: timedelta
) -> None:
    """A meeting recording nobody holds is finished once its files stood still for the
    sweep's ``stale_after_s``, by the clock of the storage that stamped them (with no file
    yet, since the row was made, by the database's): its host's clock, ahead or behind,
    finishes no meeting still being recorded and leaves no stale one unfinished."""
    recording_id = await asyncio.to_thread(_meeting_recording, db)
    research_session_id = _research_session_of(db, recording_id)
    media_root = tmp_path / "media"
    finder = MeetingRecordings(db.sessions, media_root, InProcessJobQueue())
    skew_clock(monkeypatch, meetings, skew)  # the sweeping worker's host

    async def swept() -> list[int]:
        return await finder.recover_interrupted(
            research_session_id=research_session_id, stale_after_s=120
        )

    try:
        assert await swept() == [], "no file yet, the row made just now"
        with db.sessions() as session, session.begin():  # made 5 minutes ago
            session.execute(
                update(Recording)
                .where(Recording.id == recording_id)
                .values(created_at=datetime.now(UTC) - timedelta(seconds=300))
            )
        with db.sessions() as session:
            folder = (media_root / session.get_one(Recording, recording_id).raw_path).parent
        folder.mkdir(parents=True)
        written = folder / "teacher-1.webm"
        written.write_bytes(b"\x1a\x45\xdf\xa3" + bytes(4000))  # a recorder writing now
        assert await swept() == [], "its file was just written"
        now = storage_now(folder)
        assert now is not None
        os.utime(written, (now - 300, now - 300))  # 5 minutes ago, on the storage's clock
        assert await swept() == [recording_id]
        await asyncio.gather(*finder.finishing.values())
        assert _state(db, recording_id) == ("failed", EMPTY_MESSAGE)  # no timeline in it
        assert [p.name for p in folder.iterdir()] == ["teacher-1.webm"], "no probe left"
    finally:
        await finder.close()


def _research_session_of(db: DemoDatabase, recording_id: int) -> int:
    with db.sessions() as session:
        research_session_id = session.get_one(Recording, recording_id).research_session_id
    assert research_session_id is not None
    return research_session_id
