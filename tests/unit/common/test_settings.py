from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pydantic import ValidationError

from common.settings import DEFAULT_SECRET_KEY, Settings


def test_defaults_are_an_embedded_sqlite_development_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TONGKE_DATABASE_URL", "TONGKE_REDIS_URL", "TONGKE_ENVIRONMENT"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(_env_file=None)
    assert settings.environment == "development"
    assert settings.is_sqlite
    assert settings.redis_url is None


def test_production_refuses_the_default_secret() -> None:
    with pytest.raises(ValidationError, match="TONGKE_SECRET_KEY"):
        Settings(environment="production", secret_key=DEFAULT_SECRET_KEY, _env_file=None)


def test_production_refuses_a_short_secret() -> None:
    with pytest.raises(ValidationError, match="32"):
        Settings(environment="production", secret_key="short", _env_file=None)


def test_production_accepts_a_long_random_secret() -> None:
    settings = Settings(environment="production", secret_key="x" * 48, _env_file=None)
    assert settings.environment == "production"


def test_settings_come_from_prefixed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TONGKE_REDIS_URL", "redis://127.0.0.1:6399/0")
    monkeypatch.setenv("TONGKE_SESSION_HOURS", "8")
    settings = Settings(_env_file=None)
    assert settings.redis_url == "redis://127.0.0.1:6399/0"
    assert settings.session_hours == 8


def test_loudness_is_linear_by_default_and_the_former_switch_reads_as_dynamic(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TONGKE_RECORDING_LOUDNESS", raising=False)
    monkeypatch.delenv("TONGKE_RECORDING_LOUDNORM", raising=False)
    assert Settings(_env_file=None).recording_loudness == "linear"
    monkeypatch.setenv("TONGKE_RECORDING_LOUDNORM", "true")
    assert Settings(_env_file=None).recording_loudness == "dynamic"
    monkeypatch.setenv("TONGKE_RECORDING_LOUDNESS", "off")
    assert Settings(_env_file=None).recording_loudness == "off"  # the new name wins
    monkeypatch.setenv("TONGKE_RECORDING_LOUDNORM", "false")
    monkeypatch.delenv("TONGKE_RECORDING_LOUDNESS")
    assert Settings(_env_file=None).recording_loudness == "linear"


def test_the_recording_ffmpeg_is_checked_at_start_up(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("TONGKE_RECORDING_FFMPEG", raising=False)
    assert Settings(_env_file=None).recording_ffmpeg == "ffmpeg"  # as before: not run
    # a name on PATH: the binary found is what processing runs
    monkeypatch.setenv("TONGKE_RECORDING_FFMPEG", "ffmpeg")
    found = Settings(_env_file=None).recording_ffmpeg
    assert found == shutil.which("ffmpeg") and Path(found).is_absolute()
    monkeypatch.setenv("TONGKE_RECORDING_FFMPEG", str(tmp_path / "ffmpeg"))
    with pytest.raises(ValidationError, match="TONGKE_RECORDING_FFMPEG: no executable"):
        Settings(_env_file=None)
    # a program that runs but lists no libx264 encoder (as an ffmpeg built without it)
    monkeypatch.setenv("TONGKE_RECORDING_FFMPEG", "true")
    with pytest.raises(ValidationError, match="not an ffmpeg with libx264"):
        Settings(_env_file=None)
