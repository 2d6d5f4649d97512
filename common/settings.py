"""One validated configuration for every process (web, SFU worker, job worker)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator
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
    # STUN/TURN for browsers and the SFU; none needed when everyone reaches the server directly
    # (the embedded demo). Compose sets coturn here.
    ice_servers: list[dict[str, Any]] = Field(default_factory=list)
    # Rooms follow the timetable: a sync lesson's room opens this long before the lead's bell
    # and closes this long after the last classroom's bell. None: on, except in tests.
    lesson_scheduler: bool | None = None
    lesson_scheduler_interval_seconds: float = Field(default=30.0, gt=0)
    lesson_open_before_minutes: int = Field(default=5, ge=0, le=120)
    lesson_close_after_minutes: int = Field(default=5, ge=0, le=120)
    # `tongke demo` runs this many simulated live lessons (classroom bots over the real SFU).
    demo_classrooms: int = Field(default=2, ge=0, le=8)

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
        return self

    @property
    def runs_lesson_scheduler(self) -> bool:
        if self.lesson_scheduler is None:
            return self.environment != "test"
        return self.lesson_scheduler

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, validated once."""
    return Settings()
