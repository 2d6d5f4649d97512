"""Where the shared project data lies: `../shared` beside the checkout (as CI lays it out)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """`TONGKE_SHARED_DIR`, else `shared/` next to the repository."""
    path = Path(os.environ.get("TONGKE_SHARED_DIR") or REPO_ROOT.parent / "shared")
    if not (path / "data").is_dir():
        raise RuntimeError(f"shared data not found at {path}: set TONGKE_SHARED_DIR")
    return path


TIMETABLE_DATA = shared_dir() / "data" / "timetable"
ITC2007_DATA = shared_dir() / "data" / "itc2007"
