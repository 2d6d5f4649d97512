"""One validated configuration for every process (web, SFU worker, job worker)."""

from __future__ import annotations

import shutil
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SECRET_KEY = "change-me-in-production"


class Settings(BaseSettings):
    """Settings read from `TONGKE_*` environment variables (and an optional `.env`)."""

    model_config = SettingsConfigDict(env_prefix="TONGKE_", env_file=".env", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    database_url: str = "sqlite:///./var/tongke.db"
    redis_url: str | None = None
    media_root: Path = Path("./var/media")
    secret_key: str = DEFAULT_SECRET_KEY
    host: str = "127.0.0.1"
    port: int = 8000
    # Cookies carry the Secure flag unless the app is served over plain HTTP on purpose.
    cookie_secure: bool = False
    session_hours: int = Field(default=12, ge=1, le=24 * 30)
    login_max_failures: int = Field(default=5, ge=1)
    login_window_seconds: int = Field(default=300, ge=1)
    log_level: str = "INFO"
    log_json: bool = False
    # Database statements run on a thread that runs an event loop (the SFU's, which forwards
    # every classroom of the process) are logged as ``db_on_event_loop`` ("log", once per
    # place) or refused ("raise"); "off" installs nothing (common.loop_guard).
    db_loop_guard: Literal["off", "log", "raise"] = "off"
    # Places the guard lets pass: prefixes of its ``where`` ("path:line" from the project's
    # root). Empty in production; the tests' configuration lists tests/ and its allow-list.
    db_loop_guard_allow: list[str] = Field(default_factory=list)
    # STUN/TURN for browsers and the SFU; none needed when everyone reaches the server directly
    # (the embedded demo). Compose sets coturn here.
    ice_servers: list[dict[str, Any]] = Field(default_factory=list)
    # TURN for browsers with credentials minted per user that expire (streaming.ice): these
    # URLs ("turn:HOST:3478?transport=udp", ...) and the secret coturn has as
    # static-auth-secret. A credential must outlive the longest peer connection made with it:
    # coturn refuses to refresh an allocation once its name's expiry has passed.
    turn_urls: list[str] = Field(default_factory=list)
    turn_secret: SecretStr | None = None
    turn_credential_ttl_seconds: int = Field(default=24 * 3600, ge=3600, le=7 * 24 * 3600)
    # Rooms follow the timetable: a sync lesson's room opens this long before the lead's bell
    # and closes this long after the last classroom's bell. None: on, except in tests.
    lesson_scheduler: bool | None = None
    lesson_scheduler_interval_seconds: float = Field(default=30.0, gt=0)
    lesson_open_before_minutes: int = Field(default=5, ge=0, le=120)
    lesson_close_after_minutes: int = Field(default=5, ge=0, le=120)
    # `tongke demo` runs this many simulated live lessons (classroom bots over the real SFU).
    demo_classrooms: int = Field(default=2, ge=0, le=8)
    # Recordings on S3-compatible storage (MinIO, Ceph, a cloud bucket) when a bucket is set;
    # otherwise under media_root. Media is streamed through the app after its permission check.
    s3_bucket: str | None = None
    s3_endpoint_url: str | None = None  # e.g. http://minio:9000; None: AWS
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    s3_prefix: str = ""  # key prefix inside the bucket, e.g. "tongke/"
    # Keep the local copy of outputs after the upload (a cache); raw captures stay until uploaded.
    s3_keep_local: bool = False
    # EBU R128 loudness normalisation (-16 LUFS) of recordings' web versions. "linear": one
    # gain per recording from a measuring pass over its audio (seconds of CPU, no memory to
    # speak of); "dynamic": ffmpeg's one-pass loudnorm (about doubles a run's memory); "off".
    # Lessons transcoded while recorded (recording_live_hls) get, for "linear", a streaming
    # dynaudnorm to the same target (recordings.processing.LIVE_NORMALISER).
    recording_loudness: Literal["linear", "dynamic", "off"] = "linear"
    # The former switch: true (ffmpeg's one-pass loudnorm) is read as recording_loudness
    # "dynamic" when that is not set; false changes nothing.
    recording_loudnorm: bool | None = None
    # Retention runs daily at this hour, school time (arq cron in `tongke worker` with Redis,
    # a task of the web process when embedded): files past each alliance's keep-days go.
    recording_expire_hour: int = Field(default=3, ge=0, le=23)
    # A recording whose room nobody hosts and whose file stood still this long (on the media
    # storage's clock) is over (its worker died and no classroom came back); a worker's sweep
    # then finalizes it.
    recording_abandon_seconds: float = Field(default=120.0, gt=0)
    # Below this much free space where recordings are written, each recorder raises a
    # 录像存储空间不足 alert (on its recording, the 巡课 wall and /metrics); a full disk stops
    # the recording at that point and never the live lesson.
    recording_min_free_mb: int = Field(default=1024, ge=0)
    # A recorded 教研 meeting's preview (recordings.meeting_preview): the mics mixed into chunks
    # of this many seconds while it runs, joined with the host's camera at the stop, so it
    # plays seconds after the end while the composition runs. 0: no preview.
    recording_meeting_chunk_seconds: float = Field(default=60.0, ge=0)
    # The process finishing a stopped 教研 recording (preview, composition queued) holds it on
    # a lease it renews every quarter of it; killed, its work is taken over once the lease ran
    # out (recordings.meetings.FinishClaim). Same value in every process.
    recording_meeting_finish_lease_seconds: float = Field(default=40.0, ge=0.5, le=600)
    # A graceful stop (SIGTERM, deploy) lets the finishing in progress run this long before it
    # hands what is left back to the next process.
    recording_meeting_finish_grace_seconds: float = Field(default=20.0, ge=0, le=300)
    # H.264/HLS made while the lesson is recorded (recordings.live_hls), so the web versions are
    # ready seconds after the end instead of minutes: ~27 % of a core per recorded 360p stream
    # (both renditions, niced; see README). At most this many at once per host (web process and
    # SFU workers together); lessons beyond the cap, and a live run that trails the lesson by
    # more than the lag, are transcoded after the end as before.
    recording_live_hls: bool = True
    recording_live_hls_max_streams: int = Field(default=2, ge=0, le=64)
    recording_live_hls_max_lag_seconds: float = Field(default=120.0, gt=0)
    # The ffmpeg that makes recordings' web versions (processing and live HLS; ffprobe and
    # meetings' composition keep the one on PATH): a path or a name on PATH. A build linked
    # against few libraries takes ~45 MiB less per run, the same output byte for byte
    # (1080p main rendition 124 -> 81 MiB; docs/deployment.md). Checked at start-up when set.
    recording_ffmpeg: str = "ffmpeg"
    # SFU workers (`tongke sfu`): with Redis, rooms live in worker processes that register in
    # Redis and claim rooms there; the web process authenticates joins and relays signaling to
    # the room's worker. None: on exactly when TONGKE_REDIS_URL is set; off: rooms in process.
    sfu_workers: bool | None = None
    sfu_host: str = "127.0.0.1"
    sfu_port: int = Field(default=8100, ge=1, le=65535)
    # How the web process reaches this worker's HTTP/WebSocket port; default from host/port
    # (the container's hostname when listening on every interface).
    sfu_advertise_url: str | None = None
    # A worker's registration and its room claims expire this long after its last heartbeat;
    # a dead worker's rooms can be claimed by another worker after that.
    sfu_lease_seconds: float = Field(default=10.0, ge=0.5, le=300)
    # A worker's media sockets: a fixed UDP range (what compose publishes / a firewall opens)
    # and the address announced in ICE candidates when the worker sits behind NAT.
    sfu_udp_port_min: int | None = Field(default=None, ge=1, le=65535)
    sfu_udp_port_max: int | None = Field(default=None, ge=1, le=65535)
    sfu_public_ip: str | None = None
    # A worker's cyclic garbage collector (streaming.runtime): freeze what start-up allocated
    # out of every collection, and the young-generation threshold (None: CPython's 700).
    sfu_gc_freeze: bool = True
    sfu_gc_threshold: int | None = Field(default=None, ge=100, le=10_000_000)
    # The worker's nice value (None: as started). Below 0 the kernel runs it before the web
    # app, jobs and ffmpeg on a busy server; needs CAP_SYS_NICE (compose adds it).
    sfu_nice: int | None = Field(default=None, ge=-20, le=19)
    # The SFU's shortcuts around aiortc (streaming.sfu.aiortc_hooks): publishers' SRTP handed
    # over straight from the UDP socket, SRTP without pylibsrtp's per-call allocation, no
    # sender reports from idle receive slots. False keeps aiortc's own paths, to compare.
    sfu_aiortc_shortcuts: bool = True
    # One timer for the worker's periodic work (streaming.sfu.ticker): rooms' housekeeping,
    # sender reports and the loop-lag sampler on one 250 ms tick. False gives each its own
    # timer (the sampler 20 a second), to compare.
    sfu_shared_tick: bool = True
    # Subscribers' SRTCP (receiver reports, NACK, PLI, REMB) handled straight from the UDP
    # socket as publishers' SRTP is (streaming.sfu.aiortc_hooks). False: aiortc's path.
    sfu_fast_rtcp: bool = True

    @model_validator(mode="after")
    def _read_the_former_loudness_switch(self) -> Settings:
        if self.recording_loudnorm and "recording_loudness" not in self.model_fields_set:
            self.recording_loudness = "dynamic"
        return self

    @model_validator(mode="after")
    def _check_recording_ffmpeg(self) -> Settings:
        if "recording_ffmpeg" in self.model_fields_set:
            self.recording_ffmpeg = recording_ffmpeg_path(self.recording_ffmpeg)
        return self

    @model_validator(mode="after")
    def _refuse_default_secret(self) -> Settings:
        if self.environment == "production" and (
            self.secret_key == DEFAULT_SECRET_KEY or len(self.secret_key) < 32
        ):
            raise ValueError(
                "TONGKE_SECRET_KEY must be set to a random string of at least 32 characters "
                "outside development, e.g. the output of "
                "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`"
            )
        if (self.sfu_udp_port_min is None) != (self.sfu_udp_port_max is None) or (
            self.sfu_udp_port_min is not None
            and self.sfu_udp_port_max is not None
            and self.sfu_udp_port_min > self.sfu_udp_port_max
        ):
            raise ValueError("set TONGKE_SFU_UDP_PORT_MIN <= TONGKE_SFU_UDP_PORT_MAX, or neither")
        if bool(self.turn_urls) != (self.turn_secret is not None):
            raise ValueError("set TONGKE_TURN_URLS and TONGKE_TURN_SECRET together, or neither")
        if bad := [url for url in self.turn_urls if not url.startswith(("turn:", "turns:"))]:
            raise ValueError(f"TONGKE_TURN_URLS takes turn: or turns: URLs, not {bad[0]!r}")
        if (
            self.environment == "production"
            and self.turn_secret is not None
            and len(self.turn_secret.get_secret_value()) < 32
        ):
            # every credential is an HMAC of a known name: a short secret falls to a search
            raise ValueError("TONGKE_TURN_SECRET must be at least 32 random characters")
        if self.sfu_workers and not self.redis_url:
            raise ValueError("TONGKE_SFU_WORKERS needs TONGKE_REDIS_URL (rooms are routed there)")
        return self

    @property
    def routes_to_sfu_workers(self) -> bool:
        """Whether rooms live in `tongke sfu` workers (else in the web process)."""
        if self.sfu_workers is None:
            return bool(self.redis_url)
        return self.sfu_workers

    @property
    def runs_lesson_scheduler(self) -> bool:
        if self.lesson_scheduler is None:
            return self.environment != "test"
        return self.lesson_scheduler

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def recording_ffmpeg_path(name: str) -> str:
    """The absolute path of ``name`` (a path or a name on PATH), or ValueError unless it is an
    ffmpeg that runs here and has libx264 (what every web version is encoded with)."""
    found = shutil.which(name)
    if found is None:
        raise ValueError(f"TONGKE_RECORDING_FFMPEG: no executable {name!r}")
    try:
        encoders = subprocess.run(
            [found, "-hide_banner", "-encoders"], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ValueError(f"TONGKE_RECORDING_FFMPEG: {found} does not run: {exc}") from exc
    if not any(line.split()[1:2] == ["libx264"] for line in encoders.splitlines()):
        raise ValueError(f"TONGKE_RECORDING_FFMPEG: {found} is not an ffmpeg with libx264")
    return str(Path(found).absolute())


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, validated once."""
    return Settings()
