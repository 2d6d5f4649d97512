"""The FastAPI application: one app for every role's browser pages and the JSON API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import text

from common.bus import make_bus
from common.db import get_engine, session_factory
from common.jobs import DAILY_LEDGER_NAME, DailySchedule, FileDailyLedger, make_job_queue
from common.logging import configure_logging, get_logger
from common.loop_guard import install_db_loop_guard
from common.ratelimit import make_failure_limiter
from common.settings import Settings, get_settings
from recordings.requeue import resume_unfinished
from recordings.service import ActiveRecordings
from streaming.lifecycle import LessonScheduler, RecordingTarget
from web.errors import error_body, install_error_handlers
from web.jobs import register_all
from web.lesson_rooms import LessonRooms
from web.metrics import install_metrics
from web.routers import (
    adjust,
    admin,
    auth,
    collections,
    dashboard,
    lessons,
    pages,
    replay_pages,
    research,
    research_materials,
    research_pages,
    reviews,
    roster,
    roster_pages,
    sync_pages,
    timetable,
)
from web.routers import recordings as recordings_router

STATIC_DIR = Path(__file__).parent / "static"
log = get_logger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app for `settings` (default: from the environment)."""
    settings = settings or get_settings()
    configure_logging(level=settings.log_level, json=settings.log_json)
    engine = get_engine(settings.database_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # lessons hosted here are forwarded on this loop: database work on it is watched
        guard = app.state.db_loop_guard = install_db_loop_guard(
            settings.db_loop_guard, settings.db_loop_guard_allow
        )
        try:
            async with running(app):
                yield
        finally:
            if guard is not None:
                guard.remove()

    @asynccontextmanager
    async def running(app: FastAPI) -> AsyncIterator[None]:
        # Embedded: in-process bus and job queue; with TONGKE_REDIS_URL: Redis and arq.
        app.state.bus = make_bus(settings)
        app.state.jobs = make_job_queue(settings)
        app.state.rooms = LessonRooms(settings.ice_servers)
        # With SFU workers the rooms, and the timetable scheduler that opens them, live there.
        app.state.sfu_cluster = None
        if settings.routes_to_sfu_workers and settings.redis_url:
            from streaming.cluster import SfuCluster

            app.state.sfu_cluster = SfuCluster(
                settings.redis_url, lease_seconds=settings.sfu_lease_seconds
            )
        register_all(app.state.jobs, settings)
        # With Redis, `tongke worker` runs the daily jobs (arq cron); embedded, this process does.
        app.state.daily_jobs = (
            None
            if settings.redis_url
            else DailySchedule(
                app.state.jobs, ledger=FileDailyLedger(settings.media_root / DAILY_LEDGER_NAME)
            )
        )
        if app.state.daily_jobs is not None:
            app.state.daily_jobs.start()
        if not settings.redis_url:
            # Embedded, the last process's jobs died with it: its unfinished processing and
            # compositions are queued again (with Redis, `tongke worker` sweeps for lost jobs).
            try:
                await resume_unfinished(app.state.sessions, jobs=app.state.jobs)
            except Exception:  # the database may come back: the next start sweeps again
                log.exception("recording_resume_failed")
        recordings = getattr(app.state, "recordings", None)
        app.state.recordings = recordings or ActiveRecordings.from_settings(settings)
        app.state.lesson_scheduler = None
        if settings.runs_lesson_scheduler and app.state.sfu_cluster is None:
            app.state.lesson_scheduler = LessonScheduler(
                sessions=app.state.sessions,
                rooms=app.state.rooms.registry,
                open_before=timedelta(minutes=settings.lesson_open_before_minutes),
                close_after=timedelta(minutes=settings.lesson_close_after_minutes),
                interval=settings.lesson_scheduler_interval_seconds,
                recording=RecordingTarget(
                    media_root=settings.media_root,
                    jobs=app.state.jobs,
                    active=app.state.recordings,
                ),
            )
            app.state.lesson_scheduler.start()
        app.state.meeting_recordings = None
        if app.state.sfu_cluster is None:
            # Meeting rooms live in this process, recorded by this one object (their trackers
            # use it too): a recording the last process left unfinished (killed mid-meeting or
            # mid-preview) is finished now, in the background.
            from recordings.meetings import MeetingRecordings

            app.state.meeting_recordings = MeetingRecordings.from_settings(
                app.state.sessions, settings, app.state.jobs
            )
            try:
                await app.state.meeting_recordings.recover_interrupted()
            except Exception:  # the database may come back: the room's next opening retries
                log.exception("meeting_recording_recover_failed")
        log.info(
            "tongke web started",
            database=engine.url.render_as_string(hide_password=True),
            redis=bool(settings.redis_url),
            sfu="workers" if app.state.sfu_cluster is not None else "in process",
        )
        try:
            yield
        finally:
            log.info("tongke web stopping")
            if app.state.lesson_scheduler is not None:
                await app.state.lesson_scheduler.stop()
            if app.state.daily_jobs is not None:
                await app.state.daily_jobs.stop()
            await app.state.rooms.close_all()
            await app.state.recordings.close()  # no live encoder outlives the process
            # previews in flight: finished within their grace, what is left to the next start
            if app.state.meeting_recordings is not None:
                await app.state.meeting_recordings.close()
            if app.state.sfu_cluster is not None:
                await app.state.sfu_cluster.close()
            await app.state.jobs.close()
            await app.state.bus.close()

    app = FastAPI(
        title="同课 tongke",
        description="教联体同步课堂、课表对齐、录播资源与网络教研平台 API",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessions = session_factory(engine)
    app.state.login_limiter = make_failure_limiter(
        settings.redis_url,
        max_failures=settings.login_max_failures,
        window_seconds=settings.login_window_seconds,
    )
    install_error_handlers(app)
    install_metrics(app)

    @app.get("/healthz", include_in_schema=False, response_model=None)
    def healthz() -> dict[str, Any] | JSONResponse:
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except Exception as exc:  # the probe must answer, whatever the database says
            log.warning("health check failed", error=str(exc))
            return JSONResponse(error_body("unhealthy", "数据库不可用"), status_code=503)
        return {"status": "ok"}

    app.include_router(auth.router)
    app.include_router(admin.router)
    app.include_router(timetable.router)
    app.include_router(adjust.router)
    app.include_router(roster.router)
    app.include_router(roster_pages.router)
    app.include_router(sync_pages.router)
    app.include_router(lessons.router)
    app.include_router(research.router)
    app.include_router(research_pages.router)
    app.include_router(research_materials.router)
    app.include_router(recordings_router.router)
    app.include_router(collections.router)
    app.include_router(reviews.router)
    app.include_router(replay_pages.router)
    app.include_router(dashboard.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
