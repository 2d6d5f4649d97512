"""Active speaker detection from RFC 6464 audio levels (or Opus packet sizes without them)."""

from __future__ import annotations

from collections.abc import Iterable

# RFC 6464 levels are -dBov: 0 is the loudest, 127 silence.
VOICED_LEVEL = 50
# Without the header extension: a voiced Opus frame is far larger than a comfort-noise one.
VOICED_OPUS_BYTES = 40


def level_from_opus_size(payload_size: int) -> int:
    return 30 if payload_size >= VOICED_OPUS_BYTES else 127


class SpeakerDetector:
    """Counts voiced packets per participant over an evaluation window and keeps the order in
    which participants last became the active speaker (most recent first)."""

    def __init__(self, *, min_voiced_share: float = 0.4, switch_margin: float = 1.5) -> None:
        self._voiced: dict[str, int] = {}
        self._packets: dict[str, int] = {}
        self._min_voiced_share = min_voiced_share
        self._switch_margin = switch_margin
        self.active: str | None = None
        self.order: list[str] = []
        self.ignored: set[str] = set()  # muted: never become the active speaker

    def add_participant(self, participant_id: str) -> None:
        if participant_id not in self.order:
            self.order.append(participant_id)

    def remove_participant(self, participant_id: str) -> None:
        if participant_id in self.order:
            self.order.remove(participant_id)
        self._voiced.pop(participant_id, None)
        self._packets.pop(participant_id, None)
        if self.active == participant_id:
            self.active = None

    def add_level(self, participant_id: str, level: int) -> None:
        """Hot path: one call per audio packet."""
        packets = self._packets
        packets[participant_id] = packets.get(participant_id, 0) + 1
        if level <= VOICED_LEVEL:
            voiced = self._voiced
            voiced[participant_id] = voiced.get(participant_id, 0) + 1

    def evaluate(self) -> str | None:
        """Close the window; return the new active speaker if it changed."""
        scores = {
            participant: voiced / max(self._packets.get(participant, 0), 1)
            for participant, voiced in self._voiced.items()
            if participant not in self.ignored
        }
        self._voiced.clear()
        self._packets.clear()
        if not scores:
            return None
        loudest = max(scores, key=lambda participant: scores[participant])
        if scores[loudest] < self._min_voiced_share or loudest == self.active:
            return None
        current = scores.get(self.active, 0.0) if self.active is not None else 0.0
        if current and scores[loudest] < current * self._switch_margin:
            return None
        self.active = loudest
        if loudest in self.order:
            self.order.remove(loudest)
        self.order.insert(0, loudest)
        return loudest

    def ranked(self, candidates: Iterable[str]) -> list[str]:
        wanted = set(candidates)
        return [participant for participant in self.order if participant in wanted]
