"""A file's age on its storage's clock (``recordings.storage_clock``): a real directory, and a
real place where nothing can be created (procfs), where the sweep learns nothing and says so."""

from __future__ import annotations

import os
from pathlib import Path

from structlog.testing import capture_logs

from recordings.storage_clock import StorageClock, storage_now


def test_a_files_age_is_read_on_its_storages_clock_and_the_probe_is_removed(
    tmp_path: Path,
) -> None:
    written = tmp_path / "raw.webm"
    written.write_bytes(b"\x1a\x45\xdf\xa3")
    now = storage_now(tmp_path)
    assert now is not None
    os.utime(written, (now - 300, now - 300))
    age = StorageClock().seconds_since_write(written)
    assert age is not None and 300 <= age < 310
    assert [p.name for p in tmp_path.iterdir()] == ["raw.webm"]


def test_a_storage_where_no_probe_can_be_made_says_so_and_judges_nothing() -> None:
    status = Path("/proc/self/status")  # a file whose directory takes no new file, even root's
    with capture_logs() as logs:
        assert StorageClock().seconds_since_write(status) is None
    (logged,) = logs
    assert logged["event"] == "recording_storage_clock_unreadable"
    assert logged["directory"] == "/proc/self" and logged["log_level"] == "warning"
