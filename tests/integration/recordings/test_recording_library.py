"""The library API: who sees which recording, streaming with Range, resume points, start/stop."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import update

from common.jobs import InProcessJobQueue, JobContext
from recordings.models import Recording
from recordings.processing import PROCESS_JOB
from recordings.requeue import NOTE_GRACE_S, resume_unfinished
from tests.conftest import DemoDatabase, bearer
from tests.fixtures.recordings import WCK_EN_3, WCK_EN_4, make_recording, place_raw

pytestmark = pytest.mark.timeout(120)


def _recording(db: DemoDatabase, media_root: Path, sample: Path, sync_group_id: int) -> int:
    recording_id = make_recording(db, sync_group_id, status="processing")
    place_raw(db, recording_id, media_root, sample)
    return recording_id


@pytest.fixture
def recordings(db: DemoDatabase, app: FastAPI, sample_webm: Path) -> dict[str, int]:
    media_root = app.state.settings.media_root
    return {
        "cy_4_1": _recording(db, media_root, sample_webm, WCK_EN_4),
        "cy_3_1": _recording(db, media_root, sample_webm, WCK_EN_3),
    }


def test_a_student_sees_and_streams_only_recordings_shown_to_their_class(
    client: TestClient, recordings: dict[str, int], sample_webm: Path
) -> None:
    student = bearer(client, "student-cy-4-1")
    mine, other = recordings["cy_4_1"], recordings["cy_3_1"]

    listed = client.get("/api/recordings", headers=student)
    assert listed.status_code == 200
    assert [r["id"] for r in listed.json()] == [mine]
    assert client.get(f"/api/recordings/{mine}", headers=student).status_code == 200

    size = sample_webm.stat().st_size
    ranged = client.get(
        f"/api/recordings/{mine}/media?rendition=raw",
        headers={**student, "Range": "bytes=100-1099"},
    )
    assert ranged.status_code == 206, ranged.text
    assert ranged.headers["content-range"] == f"bytes 100-1099/{size}"
    assert ranged.content == sample_webm.read_bytes()[100:1100]
    assert ranged.headers["content-type"] == "video/webm"

    # another class of the same alliance: neither listed nor readable nor streamable
    assert client.get(f"/api/recordings/{other}", headers=student).status_code == 403
    streamed = client.get(f"/api/recordings/{other}/media?rendition=raw", headers=student)
    assert streamed.status_code == 403
    assert streamed.json()["error"]["code"] == "forbidden"


def test_other_alliances_terminals_and_strangers_see_nothing(
    client: TestClient, recordings: dict[str, int]
) -> None:
    mine = recordings["cy_4_1"]
    for username in ("student-dj-4-1", "teacher-ye"):
        headers = bearer(client, username)
        assert client.get(f"/api/recordings/{mine}", headers=headers).status_code == 403
        assert client.get("/api/recordings", headers=headers).json() == []
    anonymous = client.get(f"/api/recordings/{mine}/media?rendition=raw")
    assert anonymous.status_code == 401
    assert client.get("/api/recordings").status_code == 401
    # staff of the alliance and the bureau see both
    for username in ("teacher-wang", "admin-wck", "bureau"):
        listed = client.get("/api/recordings", headers=bearer(client, username)).json()
        assert {r["id"] for r in listed} >= set(recordings.values()), username
    # a school admin sees what is shown to their school's classes, by school filter too
    principal = bearer(client, "principal-cy")
    assert {r["id"] for r in client.get("/api/recordings", headers=principal).json()} == set(
        recordings.values()
    )


def test_search_filters(client: TestClient, recordings: dict[str, int]) -> None:
    admin = bearer(client, "admin-wck")

    def ids(query: str) -> set[int]:
        response = client.get(f"/api/recordings?{query}", headers=admin)
        assert response.status_code == 200, response.text
        return {r["id"] for r in response.json()}

    assert ids("grade=4") == {recordings["cy_4_1"]}
    assert ids("q=friends") == set(recordings.values())
    assert ids("q=四年级") == {recordings["cy_4_1"]}
    assert ids("q=nothing-like-this") == set()
    assert ids("teacher_id=76") == set(recordings.values())
    assert ids("date_from=2000-01-01&date_to=2000-12-31") == set()
    assert client.get("/api/recordings?grade=99", headers=admin).status_code == 422


def test_bad_ranges_unknown_ids_and_missing_renditions(
    client: TestClient, recordings: dict[str, int], sample_webm: Path
) -> None:
    student = bearer(client, "student-cy-4-1")
    mine = recordings["cy_4_1"]
    size = sample_webm.stat().st_size
    beyond = client.get(
        f"/api/recordings/{mine}/media?rendition=raw",
        headers={**student, "Range": f"bytes={size + 10}-"},
    )
    assert beyond.status_code == 416
    assert beyond.headers["content-range"] == f"bytes */{size}"
    assert client.get("/api/recordings/999999", headers=student).status_code == 404
    assert client.get("/api/recordings/999999/media", headers=student).status_code == 404
    # not processed yet: no MP4 to stream
    assert (
        client.get(f"/api/recordings/{mine}/media?rendition=mp4", headers=student).status_code
        == 404
    )
    assert (
        client.get(f"/api/recordings/{mine}/media?rendition=x", headers=student).status_code == 422
    )


def test_resume_position_counts_one_replay_per_viewing(
    client: TestClient, recordings: dict[str, int]
) -> None:
    student = bearer(client, "student-cy-4-1")
    mine = recordings["cy_4_1"]
    first = client.post(
        f"/api/recordings/{mine}/position", json={"position_s": 12.5}, headers=student
    )
    assert first.status_code == 200
    assert first.json() == {"recording_id": mine, "position_s": 12.5, "replays": 1}
    again = client.post(
        f"/api/recordings/{mine}/position", json={"position_s": 30}, headers=student
    )
    assert again.json()["replays"] == 1  # the same viewing
    got = client.get(f"/api/recordings/{mine}", headers=student).json()
    assert got["my_position_s"] == 30 and got["replays"] == 1
    bad = client.post(f"/api/recordings/{mine}/position", json={"position_s": -1}, headers=student)
    assert bad.status_code == 422
    other = client.post(
        f"/api/recordings/{recordings['cy_3_1']}/position", json={"position_s": 1}, headers=student
    )
    assert other.status_code == 403


def test_start_and_stop_by_hand(client: TestClient) -> None:
    for username in ("student-cy-4-1", "teacher-lei", "principal-cy", "teacher-ye"):
        refused = client.post(
            "/api/recordings/start",
            json={"sync_group_id": WCK_EN_4},
            headers=bearer(client, username),
        )
        assert refused.status_code == 403, (username, refused.text)
    lead_teacher = bearer(client, "teacher-wang")
    started = client.post(
        "/api/recordings/start",
        json={"sync_group_id": WCK_EN_4, "topic": "Unit 4"},
        headers=lead_teacher,
    )
    assert started.status_code == 201, started.text
    body = started.json()
    assert body["status"] == "recording" and body["topic"] == "Unit 4"
    assert body["title"].startswith("四年级英语")
    assert body["visible_class_ids"] == [22, 28, 34]
    twice = client.post(
        "/api/recordings/start", json={"sync_group_id": WCK_EN_4}, headers=lead_teacher
    )
    assert twice.status_code == 409
    assert (
        client.post(
            "/api/recordings/start", json={"sync_group_id": 999}, headers=lead_teacher
        ).status_code
        == 404
    )

    stopped = client.post(f"/api/recordings/{body['id']}/stop", headers=lead_teacher)
    assert stopped.status_code == 200, stopped.text
    # nobody published: nothing to process, and the reason says so
    assert stopped.json()["status"] == "failed"
    assert "没有收到" in stopped.json()["status_message"]
    assert (
        client.post(f"/api/recordings/{body['id']}/stop", headers=lead_teacher).status_code == 409
    )


def test_reprocessing_is_for_whoever_manages_the_recording(
    client: TestClient, db: DemoDatabase, recordings: dict[str, int]
) -> None:
    """重新处理 (its database work in threads): refused to a pupil of the class, another
    teacher, the bureau and another alliance's admin, with nothing written; its lead teacher
    queues it, once even while ``tongke worker``'s sweep resumes the same lost job, and not
    while its job is live (409: a second would run beside it)."""
    mine = recordings["cy_4_1"]
    with db.sessions() as session:
        before = session.get_one(Recording, mine).job_id
    for username in ("student-cy-4-1", "teacher-ye", "bureau", "admin-sy"):
        refused = client.post(f"/api/recordings/{mine}/process", headers=bearer(client, username))
        assert refused.status_code == 403, (username, refused.text)
        assert refused.json()["error"]["message"] in ("没有权限管理此录像", "没有权限查看此录像")
    with db.sessions() as session:
        assert session.get_one(Recording, mine).job_id == before
    missing = client.post("/api/recordings/999999/process", headers=bearer(client, "teacher-wang"))
    assert missing.status_code == 404
    lead_teacher = bearer(client, "teacher-wang")
    queued = client.post(f"/api/recordings/{mine}/process", headers=lead_teacher)
    assert queued.status_code == 200, queued.text
    assert queued.json()["job_id"] is not None and queued.json()["job_id"] != before

    # a row whose job was lost 3 minutes ago; a worker's sweep runs while the route queues:
    # noted before it is queued (the sweep's compare-and-set), the row just changed is left
    # to the sweep's next round (its grace), and the job runs once
    lost_row = make_recording(db, status="processing")
    lost = f"recording-{lost_row}-5150"
    with db.sessions() as session, session.begin():
        session.execute(
            update(Recording)
            .where(Recording.id == lost_row)
            .values(job_id=lost, updated_at=datetime.now(UTC) - timedelta(minutes=3))
        )
    web_jobs = client.app.state.jobs  # type: ignore[attr-defined]
    enqueue = web_jobs.enqueue
    swept: list[str] = []

    async def process(_ctx: JobContext, **_kwargs: Any) -> None:
        pass

    async def enqueue_while_a_worker_sweeps(name: str, **kwargs: Any) -> str:
        worker = InProcessJobQueue()
        worker.register(PROCESS_JOB, process)
        swept.extend(await resume_unfinished(db.sessions, jobs=worker, grace_s=NOTE_GRACE_S))
        await worker.close()
        return str(await enqueue(name, **kwargs))

    web_jobs.enqueue = enqueue_while_a_worker_sweeps
    try:
        again = client.post(f"/api/recordings/{lost_row}/process", headers=lead_teacher)
    finally:
        del web_jobs.enqueue
    assert again.status_code == 200, again.text
    assert swept == []  # queued once: by 重新处理
    with db.sessions() as session:
        assert session.get_one(Recording, lost_row).job_id == again.json()["job_id"] != lost

    # a row whose job is live (queued, the row still ready; then running): a second would
    # run beside it on the same outputs, so none is queued and the teacher is told why; once
    # that job is over without finishing the row (it died), 重新处理 runs it again
    release = threading.Event()

    async def held(_ctx: JobContext, **_kwargs: Any) -> None:
        await asyncio.to_thread(release.wait, 60)

    web_jobs.register("held_processing", held)
    busy = make_recording(db)
    portal = client.portal  # the app's loop, where its queue runs jobs
    assert portal is not None
    running = portal.call(partial(web_jobs.enqueue, "held_processing", recording_id=busy))
    with db.sessions() as session, session.begin():
        session.get_one(Recording, busy).job_id = running
    try:
        for status in ("ready", "processing"):
            with db.sessions() as session, session.begin():
                session.get_one(Recording, busy).status = status
            refused = client.post(f"/api/recordings/{busy}/process", headers=lead_teacher)
            assert refused.status_code == 409, refused.text
            assert refused.json()["error"]["message"] == "正在处理中，请等待完成后再重新处理"
            with db.sessions() as session:
                assert session.get_one(Recording, busy).job_id == running
    finally:
        release.set()
    assert portal.call(partial(web_jobs.wait, running)).state == "complete"
    rerun = client.post(f"/api/recordings/{busy}/process", headers=lead_teacher)
    assert rerun.status_code == 200, rerun.text
    assert rerun.json()["job_id"] not in (None, running)
