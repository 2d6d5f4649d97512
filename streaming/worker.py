"""The SFU worker process (`tongke sfu`): hosts lesson (and research meeting) rooms and
serves their signaling.

A worker registers itself in Redis (``streaming.cluster``) with a heartbeat that carries its
load, claims each room it opens there and renews the claims with the same heartbeat. The web
process authenticates a join and relays its signaling here over ``/sfu/ws`` with a signed
ticket (``streaming.tickets``); media (ICE/UDP) goes between the browser and this process
directly. Next to the packets live what must: the recorders and the lesson-run trackers, both
attached by the timetable scheduler that runs here and opens only the rooms the directory
places on this worker. A research meeting's room opens with its first join here, and its
attendance tracker (``streaming.meetings``) with it.

HTTP: ``GET /healthz`` (503 while Redis has not heard from this worker for a lease),
``GET /metrics`` (Prometheus; per subscriber its protection level and bandwidth estimate),
``GET /sfu/rooms`` (ticket ``rooms``: the rooms and who is in them, for the 巡课 list),
``POST /sfu/recordings`` (ticket ``record``: start or stop the recording the web process
authorized), ``WS /sfu/ws`` (ticket ``join``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from fastapi import FastAPI, Request, Response, WebSocket
from fastapi.responses import JSONResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from redis.exceptions import RedisError
from starlette.websockets import WebSocketDisconnect, WebSocketState

from common.jobs import JobQueue, make_job_queue
from common.logging import get_logger
from common.loop_guard import install_db_loop_guard
from common.settings import Settings
from recordings.alerts import RecordingAlertsCollector
from streaming.cluster import SfuCluster, WorkerInfo
from streaming.runtime import (
    LOOP_LAG_INTERVAL_S,
    GcPauses,
    GcTuning,
    LoopLag,
    gc_gauges,
    serve,
    set_priority,
    tune_gc,
    untune_gc,
)
from streaming.tickets import Purpose, TicketError, identity_of, read_ticket

log = get_logger(__name__)

RegisterJobs = Callable[[JobQueue, Settings], None]

SWEEP_EVERY_BEATS = 30
# The meetings' part of the sweep runs this often, in leases of their finishers: a finisher
# killed mid-preview is found within half a lease and taken over when its lease ends.
MEETING_SWEEP_LEASES = 0.5

# Close codes of the internal socket (4000 + the HTTP status it stands for).
CLOSE_BAD_TICKET = 4401
CLOSE_ELSEWHERE = 4409
CLOSE_UNAVAILABLE = 4503


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def advertised_url(settings: Settings, *, host: str, port: int) -> str:
    """Where the web process reaches a worker listening on ``host:port``."""
    if settings.sfu_advertise_url:
        return settings.sfu_advertise_url.rstrip("/")
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostname()  # the container's name on the compose network
    return f"http://{host}:{port}"


class SfuWorker:
    """One worker's rooms, its Redis registration and heartbeat, and its lesson scheduler."""

    def __init__(
        self,
        settings: Settings,
        *,
        worker_id: str,
        url: str,
        register_jobs: RegisterJobs | None = None,
    ) -> None:
        if not settings.redis_url:
            raise ValueError("an SFU worker needs TONGKE_REDIS_URL")
        from aiortc import RTCConfiguration, RTCIceServer

        from streaming.sfu.aiortc_hooks import set_aiortc_shortcuts, set_fast_rtcp
        from streaming.sfu.media_ports import MediaPorts, configure_media_ports
        from streaming.sfu.registry import ClaimedRoomRegistry
        from streaming.sfu.ticker import set_shared_ticks

        set_aiortc_shortcuts(settings.sfu_aiortc_shortcuts)
        set_fast_rtcp(settings.sfu_fast_rtcp)
        set_shared_ticks(settings.sfu_shared_tick)

        configure_media_ports(
            MediaPorts(
                port_min=settings.sfu_udp_port_min,
                port_max=settings.sfu_udp_port_max,
                announced_ip=settings.sfu_public_ip or None,
            )
        )
        self.settings = settings
        self.worker_id = worker_id
        self.url = url
        self.cluster = SfuCluster(settings.redis_url, lease_seconds=settings.sfu_lease_seconds)
        self.rooms = ClaimedRoomRegistry(
            self.cluster,
            worker_id,
            configuration=RTCConfiguration(
                iceServers=[RTCIceServer(**server) for server in settings.ice_servers]
            ),
        )
        self.last_heartbeat: float | None = None  # time.monotonic() of the last good one
        self._register_jobs = register_jobs
        self._jobs: JobQueue | None = None
        self._recording: Any = None  # streaming.lifecycle.RecordingTarget, made on first use
        self._scheduler: Any = None  # streaming.lifecycle.LessonScheduler
        self._meetings: Any = None  # streaming.meetings.MeetingTrackers, made on first use
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._soon_task: asyncio.Task[None] | None = None
        self._beat_again = False

    # -- load -------------------------------------------------------------------------

    def info(self) -> WorkerInfo:
        rooms = self.rooms.rooms()
        return WorkerInfo(
            worker_id=self.worker_id,
            url=self.url,
            rooms=len(rooms),
            participants=sum(len(room.participants) for room in rooms),
        )

    @property
    def healthy(self) -> bool:
        return (
            self.last_heartbeat is not None
            and time.monotonic() - self.last_heartbeat < self.settings.sfu_lease_seconds
        )

    # -- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        await self._beat()  # Redis unreachable at start-up: fail loudly, compose restarts us
        # The first sweep now, not a hundred seconds into the first lesson: what it loads
        # (the recordings and database modules, an executor thread, ~13 MiB) is then part of
        # the worker's start-up, frozen with it (``streaming.runtime``), not a jump mid-lesson.
        await self._sweep()
        self._heartbeat_task = asyncio.create_task(self._heartbeats(), name="sfu-heartbeat")
        if self.settings.runs_lesson_scheduler:
            self._start_scheduler()
        log.info("sfu_worker_started", worker=self.worker_id, url=self.url)

    def _start_scheduler(self) -> None:
        from streaming.lifecycle import LessonScheduler

        settings = self.settings
        self._scheduler = LessonScheduler(
            sessions=self._sessions(),
            rooms=lambda: self.rooms,
            open_before=timedelta(minutes=settings.lesson_open_before_minutes),
            close_after=timedelta(minutes=settings.lesson_close_after_minutes),
            interval=settings.lesson_scheduler_interval_seconds,
            recording=self.recording_target(),
            placement=self.may_host,
        )
        self._scheduler.start()

    def _job_queue(self) -> JobQueue:
        """Where this worker queues processing (recordings it made), made on first use."""
        if self._jobs is None:
            self._jobs = make_job_queue(self.settings)
            if self._register_jobs is not None:
                self._register_jobs(self._jobs, self.settings)
        return self._jobs

    def _sessions(self) -> Any:
        from common.db import get_engine, session_factory

        return session_factory(get_engine(self.settings.database_url))

    def recording_target(self) -> Any:
        """The recorders running here (timetabled and started by hand) and where they write."""
        if self._recording is None:
            from recordings.service import ActiveRecordings
            from streaming.lifecycle import RecordingTarget

            self._recording = RecordingTarget(
                media_root=self.settings.media_root,
                jobs=self._job_queue(),
                active=ActiveRecordings.from_settings(self.settings),
            )
        return self._recording

    async def _resume_interrupted_recording(self, room: Any) -> None:
        """A lesson room's first join here: carry on a recording a dead worker left behind."""
        from recordings.service import resume_interrupted_recordings
        from streaming.access import sync_group_of_room

        sync_group_id = sync_group_of_room(room.room_id)
        if sync_group_id is None:
            return
        target = self.recording_target()
        try:
            continuation = await resume_interrupted_recordings(
                room,
                sync_group_id=sync_group_id,
                sessions=self._sessions(),
                media_root=target.media_root,
                jobs=target.jobs,
                active=target.active,
            )
        except Exception:  # the join must go on whatever happened to an old recording
            log.exception("sfu_recording_resume_failed", room=room.room_id)
            return
        if continuation is not None:
            log.info("sfu_recording_resumed", room=room.room_id, recording=continuation)

    async def record(self, command: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Start or stop a recording the web process authorized (a ``record`` ticket's
        command): the HTTP status and body to answer with."""
        from common.errors import AppError
        from recordings.service import record_into
        from streaming.access import lesson_room_id
        from streaming.sfu.errors import RoomOwnedElsewhere

        target = self.recording_target()
        recording_id = int(command["recording_id"])
        if command.get("action") == "stop":
            recorder = target.active.by_id.get(recording_id)
            if recorder is None:
                return 409, {"code": "not_recording", "message": "这段录像没有在录制"}
            await recorder.stop()
            return 200, {"recording_id": recording_id, "worker": self.worker_id}
        sync_group_id = int(command["sync_group_id"])
        try:
            room = await self.rooms.open(lesson_room_id(sync_group_id), kind="lesson")
        except RoomOwnedElsewhere as exc:
            return 409, {
                "code": "elsewhere",
                "message": "课堂在另一台媒体服务器上",
                "worker": exc.owner,
            }
        try:
            await record_into(
                room,
                recording_id=recording_id,
                sync_group_id=sync_group_id,
                sessions=self._sessions(),
                media_root=target.media_root,
                jobs=target.jobs,
                active=target.active,
            )
        except AppError as exc:
            return exc.status_code, {"code": exc.code, "message": exc.message}
        with contextlib.suppress(RedisError):
            await self._beat()
        log.info("sfu_recording_started", worker=self.worker_id, recording=recording_id)
        return 200, {"recording_id": recording_id, "worker": self.worker_id}

    def meeting_trackers(self) -> Any:
        """The research meetings' attendance trackers (``streaming.meetings``)."""
        if self._meetings is None:
            from common.db import get_engine, session_factory
            from recordings.meetings import MeetingRecordings
            from streaming.lifecycle import LessonClock
            from streaming.meetings import MeetingTrackers

            sessions = session_factory(get_engine(self.settings.database_url))
            self._meetings = MeetingTrackers(
                sessions,
                LessonClock(),
                recordings=MeetingRecordings.from_settings(
                    sessions, self.settings, self._job_queue()
                ),
            )
        return self._meetings

    async def may_host(self, room_id: str) -> bool:
        return await self.cluster.may_host(room_id, self.worker_id)

    async def stop(self) -> None:
        for task in (self._heartbeat_task, self._soon_task):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self._scheduler is not None:
            await self._scheduler.stop()
        await self.rooms.close_all()  # releases the claims: other workers may take the rooms
        if self._recording is not None:
            await self._recording.active.close()  # no live encoder outlives the worker
        with contextlib.suppress(RedisError):
            await self.cluster.deregister(self.worker_id)  # no new joins routed here
        if self._meetings is not None and self._meetings.recordings is not None:
            # the meetings' recordings stopped by the hosts or just now with their rooms are
            # finished within the grace (recording_meeting_finish_grace_seconds); what is left
            # then goes back to the next worker
            await self._meetings.recordings.close()
        if self._jobs is not None:
            await self._jobs.close()
        await self.cluster.close()
        log.info("sfu_worker_stopped", worker=self.worker_id)

    def beat_soon(self) -> None:
        """Report the load without holding anyone up: one beat at a time, and one more after
        it for what changed meanwhile (a burst of 64 joins is one or two beats, not 64 awaited
        before each join's route)."""
        if self._soon_task is not None and not self._soon_task.done():
            self._beat_again = True
            return
        self._soon_task = asyncio.create_task(self._beats_soon(), name="sfu-beat-soon")

    async def _beats_soon(self) -> None:
        again = True
        while again:
            self._beat_again = False
            try:
                await self._beat()
            except RedisError as exc:  # the regular heartbeat tries again
                log.warning("sfu_heartbeat_failed", worker=self.worker_id, error=str(exc))
            again = self._beat_again

    async def _beat(self) -> None:
        await self.rooms.renew_claims()
        await self.cluster.heartbeat(self.info())
        self.last_heartbeat = time.monotonic()

    async def _heartbeats(self) -> None:
        interval = self.settings.sfu_lease_seconds / 3
        lease_s = self.settings.recording_meeting_finish_lease_seconds
        meetings_every = max(1, round(lease_s * MEETING_SWEEP_LEASES / interval))
        beats = 0
        while True:
            await asyncio.sleep(interval)
            try:
                await self._beat()
            except RedisError as exc:  # keep serving the rooms; health turns red after a lease
                log.warning("sfu_heartbeat_failed", worker=self.worker_id, error=str(exc))
            beats += 1
            if beats % SWEEP_EVERY_BEATS == 0:
                await self._sweep()
            elif beats % meetings_every == 0:
                await self._sweep(lessons=False)

    async def _sweep(self, *, lessons: bool = True) -> None:
        try:
            if lessons:
                await self.close_abandoned_recordings()
            await self.finish_abandoned_meetings()
        except Exception:  # a database hiccup must not stop the heartbeat or the start
            log.exception("sfu_recording_sweep_failed", worker=self.worker_id)

    async def finish_abandoned_meetings(self, *, stale_after_s: float | None = None) -> list[int]:
        """Finish the meeting recordings a dead worker left in rooms nobody hosts any more
        and whose files stood still for ``stale_after_s`` (default: ``recording_abandon_seconds``;
        a room opened again finishes its own at once), and those whose finisher died (its
        lease ran out; one still running is looked at again when it ends): preview,
        composition queued, once across workers (``recordings.meetings``). Returns the ids
        this worker tried."""
        from streaming.access import meeting_room_id

        async def hosted(research_session_id: int) -> bool:
            return await self.cluster.owner(meeting_room_id(research_session_id)) is not None

        recordings = self.meeting_trackers().recordings
        return list(
            await recordings.recover_interrupted(
                stale_after_s=(
                    self.settings.recording_abandon_seconds
                    if stale_after_s is None
                    else stale_after_s
                ),
                hosted=hosted,
            )
        )

    async def close_abandoned_recordings(self, *, stale_after_s: float | None = None) -> int:
        """Finalize the recordings a dead worker left in rooms nobody hosts any more (the
        lesson is over) and whose file stood still for ``stale_after_s`` (default: the
        ``recording_abandon_seconds`` setting; a join within it resumes the recording);
        returns how many. Idempotent, so every worker may sweep."""
        if stale_after_s is None:
            stale_after_s = self.settings.recording_abandon_seconds
        from recordings.service import close_interrupted_recordings, groups_recording
        from streaming.access import lesson_room_id

        sessions = self._sessions()
        closed = 0
        for group in await asyncio.to_thread(groups_recording, sessions):
            if await self.cluster.owner(lesson_room_id(group)) is not None:
                continue  # hosted: its worker records it, or resumes it on the next join
            target = self.recording_target()
            closed += len(
                await close_interrupted_recordings(
                    sync_group_id=group,
                    sessions=sessions,
                    media_root=target.media_root,
                    jobs=target.jobs,
                    running=set(target.active.by_id),
                    stale_after_s=stale_after_s,
                )
            )
        return closed

    # -- signaling --------------------------------------------------------------------

    async def serve(self, websocket: WebSocket) -> str:
        """One participant's relayed signaling socket (see the module docstring); returns
        how it went: ``served``, ``bad_ticket``, ``elsewhere`` or ``unavailable``."""
        from streaming.sfu.errors import RoomOwnedElsewhere
        from streaming.signaling import error_message, serve_participant

        await websocket.accept()
        try:
            claims = read_ticket(
                _bearer(websocket.headers.get("authorization")),
                secret=self.settings.secret_key,
                worker_id=self.worker_id,
                purpose="join",
            )
            identity = identity_of(claims)
        except TicketError as exc:
            await websocket.send_json(error_message(exc.code, exc.message))
            await websocket.close(CLOSE_BAD_TICKET)
            return "bad_ticket"
        try:
            room = await self.rooms.open(identity.room_id, kind=identity.room_kind)
        except RoomOwnedElsewhere as exc:
            await websocket.send_json({"v": 1, "type": "route", "worker": exc.owner})
            await websocket.close(CLOSE_ELSEWHERE)
            return "elsewhere"
        except RedisError:
            log.exception("sfu_claim_failed", room=identity.room_id)
            await websocket.send_json(error_message("sfu_unavailable", "媒体服务器暂时不可用"))
            await websocket.close(CLOSE_UNAVAILABLE)
            return "unavailable"
        if room.kind == "meeting":
            self.meeting_trackers().ensure(room)  # attendance from the room's first join
        elif not room.participants:
            await self._resume_interrupted_recording(room)
        if room.participants:
            self.beat_soon()  # a room placed already: its load may follow the join
        else:
            with contextlib.suppress(RedisError):
                await self._beat()  # a new room, registered before the next one is placed
        await websocket.send_json({"v": 1, "type": "route", "worker": self.worker_id})
        try:
            await serve_participant(
                websocket.send_json, websocket.receive_text, identity, self.rooms
            )
        finally:
            await self.rooms.release(room)  # opened for a join that never came
        # Close unless either side already has (a send to a vanished client marks it closed).
        if WebSocketState.DISCONNECTED not in (websocket.client_state, websocket.application_state):
            with contextlib.suppress(WebSocketDisconnect):  # it vanished just now
                await websocket.close()
        return "served"

    def room_listing(self) -> list[dict[str, Any]]:
        return [
            {"room": room.room_id, "kind": room.kind, "participants": room.visible_participants()}
            for room in self.rooms.rooms()
        ]


class ProtectionCollector(Collector):
    """Per subscriber on ``/metrics``: the protection level it receives (and each ladder's),
    its bandwidth estimate, and the playout delay it is told."""

    def __init__(self, worker: SfuWorker) -> None:
        self._worker = worker

    def collect(self) -> Iterator[GaugeMetricFamily]:
        labels = ["room", "participant"]
        level = GaugeMetricFamily(
            "tongke_sfu_subscriber_protection_level",
            "What a subscriber receives: 0 full, 1 main video only, 2 its base layer, 3 audio",
            labels=[*labels, "ladder"],
        )
        estimate = GaugeMetricFamily(
            "tongke_sfu_subscriber_estimate_bps",
            "A subscriber's last receive bandwidth estimate (REMB) judged, bits/s",
            labels=labels,
        )
        playout = GaugeMetricFamily(
            "tongke_sfu_subscriber_playout_delay_ms",
            "The minimum playout delay a subscriber's video is told (longest of its slots; "
            "0 on a clean path), ms",
            labels=labels,
        )
        for room in self._worker.rooms.rooms():
            for stats in room.protection_stats():
                ids = [room.room_id, stats["participant"]]
                playout.add_metric(ids, stats["playout_delay_ms"])
                level.add_metric([*ids, "applied"], stats["level"])
                level.add_metric([*ids, "loss"], stats["loss_level"])
                level.add_metric([*ids, "bandwidth"], stats["bandwidth_level"])
                if stats["estimate_bps"] is not None:
                    estimate.add_metric(ids, stats["estimate_bps"])
        yield level
        yield estimate
        yield playout


def _bearer(header: str | None) -> str:
    if header is None or not header.startswith("Bearer "):
        return ""
    return header[len("Bearer ") :]


def create_worker_app(
    settings: Settings,
    *,
    worker_id: str,
    url: str,
    register_jobs: RegisterJobs | None = None,
) -> FastAPI:
    """The worker's ASGI app; the worker starts and stops with its lifespan."""
    worker = SfuWorker(settings, worker_id=worker_id, url=url, register_jobs=register_jobs)
    metrics = CollectorRegistry(auto_describe=True)
    Gauge("tongke_sfu_rooms", "Rooms open on this worker", registry=metrics).set_function(
        lambda: len(worker.rooms.rooms())
    )
    Gauge(
        "tongke_sfu_participants", "Participants in this worker's rooms", registry=metrics
    ).set_function(lambda: worker.info().participants)
    sockets = Counter(
        "tongke_sfu_signaling_sockets",
        "Relayed signaling sockets by outcome (served, bad_ticket, elsewhere, unavailable)",
        ["outcome"],
        registry=metrics,
    )

    metrics.register(RecordingAlertsCollector())  # recorders of this worker's rooms
    metrics.register(ProtectionCollector(worker))
    gc_pauses = GcPauses(metrics)
    loop_lag = LoopLag(metrics, interval=None if settings.sfu_shared_tick else LOOP_LAG_INTERVAL_S)
    gc_gauges(metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # every room of the worker is forwarded on this loop
        guard = app.state.db_loop_guard = install_db_loop_guard(
            settings.db_loop_guard, settings.db_loop_guard_allow
        )
        try:
            async with running():
                yield
        finally:
            if guard is not None:
                guard.remove()

    @asynccontextmanager
    async def running() -> AsyncIterator[None]:
        await worker.start()
        gc_before = tune_gc(
            GcTuning(freeze=settings.sfu_gc_freeze, threshold0=settings.sfu_gc_threshold)
        )
        gc_pauses.install()
        loop_lag.start()
        try:
            yield
        finally:
            await loop_lag.stop()
            gc_pauses.remove()
            await worker.stop()
            untune_gc(gc_before)

    app = FastAPI(title="tongke SFU worker", lifespan=lifespan, openapi_url=None)
    app.state.worker = worker

    @app.get("/healthz", response_model=None)
    def healthz() -> dict[str, Any] | JSONResponse:
        info = worker.info()
        body = {
            "status": "ok" if worker.healthy else "unhealthy",
            "worker": worker.worker_id,
            "rooms": info.rooms,
            "participants": info.participants,
        }
        return body if worker.healthy else JSONResponse(body, status_code=503)

    @app.get("/metrics")
    def prometheus() -> Response:
        return Response(generate_latest(metrics), media_type=CONTENT_TYPE_LATEST)

    def ticket_claims(request: Request, purpose: Purpose) -> dict[str, Any] | JSONResponse:
        """The request's ticket claims, or the 401 to answer with."""
        try:
            return read_ticket(
                _bearer(request.headers.get("authorization")),
                secret=settings.secret_key,
                worker_id=worker.worker_id,
                purpose=purpose,
            )
        except TicketError as exc:
            return JSONResponse({"code": exc.code, "message": exc.message}, status_code=401)

    @app.get("/sfu/rooms", response_model=None)
    def rooms(request: Request) -> dict[str, Any] | JSONResponse:
        claims = ticket_claims(request, "rooms")
        if isinstance(claims, JSONResponse):
            return claims
        return {"worker": worker.worker_id, "rooms": worker.room_listing()}

    @app.post("/sfu/recordings", response_model=None)
    async def recordings(request: Request) -> dict[str, Any] | JSONResponse:
        claims = ticket_claims(request, "record")
        if isinstance(claims, JSONResponse):
            return claims
        command = claims.get("cmd")
        if not isinstance(command, dict) or command.get("action") not in ("start", "stop"):
            return JSONResponse({"code": "bad_command", "message": "录制指令无效"}, status_code=400)
        status, body = await worker.record(command)
        return body if status == 200 else JSONResponse(body, status_code=status)

    @app.websocket("/sfu/ws")
    async def signaling(websocket: WebSocket) -> None:
        sockets.labels(await worker.serve(websocket)).inc()

    return app


def run_sfu_worker(
    settings: Settings,
    *,
    host: str,
    port: int,
    worker_id: str,
    register_jobs: RegisterJobs | None = None,
) -> None:
    """Serve the worker until SIGTERM/SIGINT (uvicorn), rooms closed and claims released."""
    if settings.sfu_nice is not None:
        set_priority(settings.sfu_nice)  # before uvicorn starts threads, which inherit it
    app = create_worker_app(
        settings,
        worker_id=worker_id,
        url=advertised_url(settings, host=host, port=port),
        register_jobs=register_jobs,
    )
    serve(app, host=host, port=port, shared_tick=settings.sfu_shared_tick)
