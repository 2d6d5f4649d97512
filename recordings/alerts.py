"""Alerts a recorder raises about its storage (a light module: the web process's /metrics and
the service read it without loading the recorder's media stack)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Literal

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

AlertKind = Literal["low_disk", "disk_full", "write_failed"]
ALERT_KINDS: tuple[AlertKind, ...] = ("low_disk", "disk_full", "write_failed")
# Alerts raised in this process since it started, by kind (exported on /metrics).
ALERT_COUNTS: Counter[str] = Counter()


@dataclass(frozen=True)
class RecorderAlert:
    kind: AlertKind
    message: str  # for people, in Chinese
    at_s: float  # recording time when it was raised
    free_bytes: int | None = None
    detail: str = ""  # the error, for the log and for operators


class RecordingAlertsCollector(Collector):
    """``tongke_recording_alerts_total{kind}`` for a process's metrics registry."""

    def collect(self) -> list[CounterMetricFamily]:
        family = CounterMetricFamily(
            "tongke_recording_alerts",
            "Recording alerts raised in this process (low_disk, disk_full, write_failed)",
            labels=["kind"],
        )
        for kind in ALERT_KINDS:
            family.add_metric([kind], ALERT_COUNTS[kind])
        return [family]
