"""The recovery sweep: processing and compositions lost with their process, queued again.

A job of the in-process queue dies with the web process (a deploy, a crash, kill -9); with
Redis, a job arq gave up on (its worker killed past its tries) or whose Redis data was lost is
gone too. Either leaves a recording unfinished for ever: a lesson "processing" (处理中, no
progress), one ready on its raw file whose renditions stay "processing", a 教研 meeting ready on
its preview (``meeting_version == "preview"``) or "processing" without its composition. The
sweep finds such rows whose ``job_id`` no live job holds (``JobQueue.live``: the queue's own
status, and arq's) and queues the right job again, once: the row's ``job_id`` is swapped for
the next resume id by a compare-and-set, so of two processes sweeping at once one queues it,
under an id both would have chosen (``resume_job_id``). It runs at the embedded web process's
start (nothing is live then) and in ``tongke worker``, at its start and every
``SWEEP_EVERY_MIN`` minutes (``register_jobs``), which leaves alone the rows changed in the last
``NOTE_GRACE_S`` (another process may be queueing their job now): judged on the database
server's clock, which wrote ``updated_at`` too (``seconds_since``), so a worker whose host's
clock is off neither queues a job twice nor waits longer than the grace.

Not the sweep's: recordings still "recording" (the recorders' sweeps close them), a meeting
recording being finished (its preview: ``recordings.meetings`` takes those by lease), and what
a job failed for good (status "failed", renditions "failed", a composition failed on its
preview).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import CursorResult, and_, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from common.db import db_now, get_engine, seconds_since, session_factory, transaction
from common.jobs import JobContext, JobQueue
from common.logging import get_logger
from common.settings import Settings
from recordings import composition
from recordings.meetings import COMPOSE_JOB, COMPOSE_MESSAGE, PENDING_MESSAGE
from recordings.models import Recording
from recordings.processing import PROCESS_JOB, RESUMED_MESSAGE

log = get_logger(__name__)

SWEEP_JOB = "resume_unfinished_recordings"
SWEEP_EVERY_MIN = 5
# a row whose job is being queued just now (``finish_recording``, ``close_interrupted_recordings``:
# the job id is noted right after the enqueue; 重新处理 notes it just before, ``swap_job``) is
# left to the next sweep; only for a sweep that runs beside live processes (``tongke worker``)
NOTE_GRACE_S = 120.0
# a job that dies every time it is resumed (it fails before it can say why) is left at this
MAX_RESUMES = 5
PREVIEW_RESUMED_MESSAGE = "完整版合成中断，已重新开始；可先播放预览版"
_RESUME_SUFFIX = re.compile(r"-resume-(\d+)-[0-9a-f]{8}$")


@dataclass(frozen=True)
class UnfinishedWork:
    """A recording whose processing or composition is left undone, and the job that does it."""

    recording_id: int
    job: str  # PROCESS_JOB or COMPOSE_JOB
    job_id: str | None  # the job that was meant to do it
    message: str  # the status message once queued again


def resume_job_id(*, job: str, recording_id: int, lost: str | None) -> str | None:
    """The id of the next resumed run after ``lost``: the same for every sweeper that finds
    the same row, and new to the queue (it names the lost id: an id queued before is not
    queued again, ``JobQueue.enqueue``); None once it was resumed ``MAX_RESUMES`` times."""
    found = _RESUME_SUFFIX.search(lost or "")
    count = int(found.group(1)) + 1 if found else 1
    if count > MAX_RESUMES:
        return None
    prefix = "meeting-recording" if job == COMPOSE_JOB else "recording"
    of_lost = hashlib.sha1((lost or "").encode(), usedforsecurity=False).hexdigest()[:8]
    return f"{prefix}-{recording_id}-resume-{count}-{of_lost}"


def _work_of(row: Recording) -> UnfinishedWork | None:
    outputs = row.outputs or {}
    unfinished_renditions = row.status == "ready" and outputs.get("renditions") == "processing"
    if row.research_session_id is None:
        if row.status != "processing" and not unfinished_renditions:
            return None
        return UnfinishedWork(row.id, PROCESS_JOB, row.job_id, RESUMED_MESSAGE)
    # a meeting: its composition makes the file processing then works on (a composed meeting
    # whose renditions were lost is composed again: the job writes both parts' outputs)
    if row.job_id is None:
        # queued by the process that finished the recording, which died before it noted the
        # job (``finish_meeting_recording`` without a preview); else being finished (its
        # preview: 正在生成预览…), which recordings.meetings takes over itself
        awaiting = row.status == "processing" and row.status_message.endswith(COMPOSE_MESSAGE)
        if not awaiting:
            return None
        return UnfinishedWork(row.id, COMPOSE_JOB, None, composition.RESUMED_MESSAGE)
    if row.status == "processing" and row.status_message != PENDING_MESSAGE:
        return UnfinishedWork(row.id, COMPOSE_JOB, row.job_id, composition.RESUMED_MESSAGE)
    on_preview = outputs.get("meeting_version") == "preview"
    if row.status == "ready" and on_preview and outputs.get("composition") != "failed":
        return UnfinishedWork(row.id, COMPOSE_JOB, row.job_id, PREVIEW_RESUMED_MESSAGE)
    if unfinished_renditions:
        return UnfinishedWork(row.id, COMPOSE_JOB, row.job_id, composition.RESUMED_MESSAGE)
    return None


def unfinished_work(
    sessions: sessionmaker[Session], *, grace_s: float = 0.0
) -> list[UnfinishedWork]:
    """Recordings whose processing or composition is unfinished (whether a job still holds
    them is for the queue to say), of those unchanged for ``grace_s`` by the database's clock.
    A blocking call: run it in a thread."""
    query = (
        select(Recording)
        .where(
            Recording.media_deleted_at.is_(None),
            or_(
                Recording.status == "processing",
                and_(
                    Recording.status == "ready",
                    or_(
                        Recording.outputs["renditions"].as_string() == "processing",
                        Recording.outputs["meeting_version"].as_string() == "preview",
                    ),
                ),
            ),
        )
        .order_by(Recording.id)
    )
    if grace_s > 0:  # written on the database's clock, judged on it: no host's clock
        query = query.where(seconds_since(Recording.updated_at) >= grace_s)
    found = []
    with sessions() as session:
        for row in session.scalars(query):
            work = _work_of(row)
            if work is not None:
                found.append(work)
    return found


def swap_job(
    sessions: sessionmaker[Session],
    *,
    recording_id: int,
    noted: str | None,
    job_id: str,
    message: str | None = None,
) -> bool:
    """Swap the row's job id ``noted`` (as read; None: none) for ``job_id`` (and its status
    message for ``message``) before queueing that job: one conditional UPDATE, so of the
    processes that read the same row (sweepers, 重新处理) exactly one gets True and queues it.
    The row changed now, ``tongke worker``'s sweep leaves it for its grace meanwhile."""
    was = Recording.job_id.is_(None) if noted is None else Recording.job_id == noted
    fields = {"job_id": job_id, "updated_at": db_now()}
    with transaction(sessions) as session:
        taken = session.execute(
            update(Recording)
            .where(Recording.id == recording_id, was)
            .values(fields if message is None else {**fields, "status_message": message})
            .execution_options(synchronize_session=False)
        )
        return cast(CursorResult[Any], taken).rowcount == 1


def claim_resume(sessions: sessionmaker[Session], work: UnfinishedWork, *, job_id: str) -> bool:
    """Swap the row's lost job id for ``job_id`` with the resumed message (``swap_job``): of
    the sweepers that found the same row exactly one gets True."""
    return swap_job(
        sessions,
        recording_id=work.recording_id,
        noted=work.job_id,
        job_id=job_id,
        message=work.message,
    )


async def resume_unfinished(
    sessions: sessionmaker[Session], *, jobs: JobQueue, grace_s: float = 0.0
) -> list[str]:
    """Queue again, once, each unfinished recording's job that ``jobs`` no longer holds;
    returns the job ids queued. The database work runs in threads."""
    found = await asyncio.to_thread(unfinished_work, sessions, grace_s=grace_s)
    queued = []
    for work in found:
        if work.job_id is not None and await jobs.live(work.job_id):
            continue
        job_id = resume_job_id(job=work.job, recording_id=work.recording_id, lost=work.job_id)
        if job_id is None:
            log.error("recording_resume_given_up", recording=work.recording_id, job=work.job_id)
            continue
        if not await asyncio.to_thread(claim_resume, sessions, work, job_id=job_id):
            continue  # another sweeper took it
        # a process killed here leaves ``job_id`` unknown: the next sweep resumes it again
        await jobs.enqueue(work.job, job_id=job_id, recording_id=work.recording_id, resumed=True)
        log.warning(
            "recording_work_resumed",
            recording=work.recording_id,
            job=work.job,
            lost_job=work.job_id,
            job_id=job_id,
        )
        queued.append(job_id)
    return queued


def register_jobs(queue: JobQueue, settings: Settings) -> None:
    """Register the sweep as a job that ``tongke worker`` runs at its start and every
    ``SWEEP_EVERY_MIN`` minutes (the embedded web process calls ``resume_unfinished`` at its
    start instead)."""

    async def sweep_job(ctx: JobContext) -> dict[str, list[str]]:
        sessions = session_factory(get_engine(settings.database_url))
        return {"queued": await resume_unfinished(sessions, jobs=queue, grace_s=NOTE_GRACE_S)}

    queue.register(SWEEP_JOB, sweep_job, max_retries=0)
    queue.register_periodic(SWEEP_JOB, every_minutes=SWEEP_EVERY_MIN)
