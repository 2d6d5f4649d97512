"""Every background job of the platform, registered in one place for the web app and workers."""

from __future__ import annotations

from common.jobs import JobQueue
from common.settings import Settings
from common.worker import register_jobs as register_common_jobs
from recordings.composition import register_jobs as register_meeting_recording_jobs
from recordings.processing import EXPIRE_JOB
from recordings.processing import register_jobs as register_recording_jobs
from recordings.requeue import register_jobs as register_recovery_jobs
from scheduler.service import register_jobs as register_timetable_jobs


def register_all(queue: JobQueue, settings: Settings) -> None:
    register_common_jobs(queue, settings)
    register_timetable_jobs(queue, settings)
    register_recording_jobs(queue, settings)
    register_meeting_recording_jobs(queue, settings)
    # `tongke worker` queues again what a lost job left unfinished, at its start and every
    # few minutes (the embedded web process does it at its start: web.app)
    register_recovery_jobs(queue, settings)
    # Retention is a daily chore: files past each alliance's keep-days, every night.
    queue.register_daily(EXPIRE_JOB, hour=settings.recording_expire_hour)
