"""Where rooms live follows the settings: SFU workers with Redis, the web process without."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from common.settings import Settings


def test_rooms_move_to_sfu_workers_exactly_when_redis_is_configured() -> None:
    assert not Settings(redis_url=None).routes_to_sfu_workers
    assert Settings(redis_url="redis://127.0.0.1:6379/0").routes_to_sfu_workers
    # Redis for jobs and the bus only, rooms kept in the web process
    assert not Settings(
        redis_url="redis://127.0.0.1:6379/0", sfu_workers=False
    ).routes_to_sfu_workers


def test_sfu_workers_without_redis_are_refused() -> None:
    with pytest.raises(ValidationError, match="TONGKE_SFU_WORKERS needs TONGKE_REDIS_URL"):
        Settings(sfu_workers=True, redis_url=None)


@pytest.mark.parametrize(("low", "high"), [(40000, None), (None, 40100), (40100, 40000)])
def test_a_media_port_range_needs_both_ends_in_order(low: int | None, high: int | None) -> None:
    with pytest.raises(ValidationError, match="TONGKE_SFU_UDP_PORT_MIN"):
        Settings(sfu_udp_port_min=low, sfu_udp_port_max=high)


def test_the_compose_media_settings_are_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TONGKE_SFU_UDP_PORT_MIN", "40000")
    monkeypatch.setenv("TONGKE_SFU_UDP_PORT_MAX", "40100")
    monkeypatch.setenv("TONGKE_SFU_PUBLIC_IP", "203.0.113.10")
    monkeypatch.setenv("TONGKE_SFU_ADVERTISE_URL", "http://sfu:8100")

    settings = Settings()

    assert (settings.sfu_udp_port_min, settings.sfu_udp_port_max) == (40000, 40100)
    assert settings.sfu_public_ip == "203.0.113.10"
    assert settings.sfu_advertise_url == "http://sfu:8100"


def test_the_abandoned_recording_threshold_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().recording_abandon_seconds == 120
    monkeypatch.setenv("TONGKE_RECORDING_ABANDON_SECONDS", "300")
    assert Settings().recording_abandon_seconds == 300
    with pytest.raises(ValidationError, match="recording_abandon_seconds"):
        Settings(recording_abandon_seconds=0)
