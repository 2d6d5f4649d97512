"""How long ago a file was last written, on the clock that stamped it: the storage's.

A recording's files get their modification time from the clock of the storage they live on
(on NFS, the file server's), not from the host that reads them, whose clock may run ahead or
behind: a sweep that compared the time with its own clock closed a recording another SFU
worker was still writing (ahead), or waited longer than it should (behind). "Now" on that
storage is read the same way: an empty probe file created in the file's own directory (so on
the same file system), its time read back, and removed. One probe per directory per
``StorageClock`` (one sweep), only for the files a sweep has to judge.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from common.logging import get_logger

log = get_logger(__name__)

# what the probes are named: whatever lists a recording's folder passes them over
PROBE_PREFIX = ".tongke-clock-"


def is_probe(path: Path) -> bool:
    return path.name.startswith(PROBE_PREFIX)


def fresh_stat(path: Path) -> os.stat_result:
    """The file's attributes as its storage has them now: read on an open file, since an NFS
    client checks them with the server at each open (close-to-open), where a plain stat may
    answer from its attribute cache (``acregmax``, up to 60 s old)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.fstat(fd)
    finally:
        os.close(fd)


def storage_now(directory: Path) -> float | None:
    """Now on the clock of the storage that holds ``directory`` (epoch seconds): the time the
    storage gives a file created there. None when no file can be created there (read-only,
    missing), logged: the caller then judges nothing by it."""
    probe = directory / f"{PROBE_PREFIX}{uuid.uuid4().hex}"
    try:
        # created empty: no write of ours to cache, the storage stamps the creation itself
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        try:
            return probe.stat().st_mtime
        finally:
            probe.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("recording_storage_clock_unreadable", directory=str(directory), error=str(exc))
        return None


class StorageClock:
    """The storage's "now" for each directory asked about, read once (a sweep's files)."""

    def __init__(self) -> None:
        self._now: dict[Path, float | None] = {}

    def seconds_since_write(self, path: Path, *, written: float | None = None) -> float | None:
        """Seconds since ``path`` was last written (``written``: its mtime, if already read),
        on its storage's clock; never below 0 (the probe's time may be coarser than the
        file's). None when the storage's clock cannot be read (``storage_now``)."""
        if written is None:
            written = fresh_stat(path).st_mtime
        return self.seconds_since(path.parent, written=written)

    def seconds_since(self, directory: Path, *, written: float) -> float | None:
        """Seconds since ``written`` (epoch seconds) on the clock of the storage holding
        ``directory``; never below 0. None when that clock cannot be read (``storage_now``)."""
        if directory not in self._now:
            self._now[directory] = storage_now(directory)
        now = self._now[directory]
        return None if now is None else max(0.0, now - written)
