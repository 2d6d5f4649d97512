"""What the library API takes and returns."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

Rendition = Literal["mp4", "raw", "poster", "preview"]


class RecordingMedia(BaseModel):
    """Authenticated URLs of the files (None until they exist)."""

    mp4: str | None = None
    raw: str | None = None
    poster: str | None = None
    hls: str | None = None  # master playlist: main + low-bitrate renditions
    thumbnails: str | None = None  # WebVTT index of the thumbnail sprite (seek previews)


class RecordingOut(BaseModel):
    id: int
    title: str
    topic: str
    status: str
    status_message: str
    date: date
    period: int | None
    alliance_id: int
    school_id: int
    campus_id: int | None
    class_id: int | None
    grade_level: int | None
    sync_group_id: int | None
    research_session_id: int | None
    subject_id: int | None
    teacher_id: int | None
    visible_class_ids: list[int]
    duration_s: float | None
    chapters: list[dict[str, Any]]
    # a 教研 meeting's: "preview" (mics mixed + the host's camera) until "composed"
    meeting_version: str | None = None
    media: RecordingMedia
    job_id: str | None
    created_at: datetime
    processed_at: datetime | None
    replays: int = 0
    my_position_s: float | None = None
    keep: bool = False  # exempt from the alliance's retention rule
    media_deleted_at: datetime | None = None  # status "expired": files removed by retention


class RecordingPatch(BaseModel):
    title: str | None = Field(default=None, min_length=1, max_length=200)
    topic: str | None = Field(default=None, max_length=200)
    keep: bool | None = None


class RetentionIn(BaseModel):
    keep_days: int | None = Field(default=None, ge=1, le=36500)  # None: keep until deleted


class RetentionOut(BaseModel):
    alliance_id: int
    keep_days: int | None


class RecordingFilters(BaseModel):
    school_id: int | None = None
    grade: int | None = Field(default=None, ge=1, le=12)
    subject_id: int | None = None
    teacher_id: int | None = None
    sync_group_id: int | None = None
    status: str | None = None
    date_from: date | None = None
    date_to: date | None = None
    q: str | None = Field(default=None, max_length=100)
    limit: int = Field(default=50, ge=1, le=500)
    offset: int = Field(default=0, ge=0)


class StartRecording(BaseModel):
    sync_group_id: int
    topic: str = Field(default="", max_length=200)


class PositionIn(BaseModel):
    position_s: float = Field(ge=0, le=24 * 3600)


class PositionOut(BaseModel):
    recording_id: int
    position_s: float
    replays: int


class CollectionIn(BaseModel):
    """单元合集: title, subject, grade and the unit's name."""

    title: str = Field(min_length=1, max_length=200)
    subject_id: int | None = None
    grade_level: int | None = Field(default=None, ge=1, le=12)
    unit_name: str = Field(min_length=1, max_length=200)
    # With the recordings too (the page's form): saved together, or nothing is saved.
    recording_ids: list[int] | None = Field(default=None, max_length=200)


class CollectionItemsIn(BaseModel):
    """The collection's recordings in their order (adds, removes and reorders at once)."""

    recording_ids: list[int] = Field(max_length=200)


class CollectionItemOut(BaseModel):
    recording_id: int
    title: str
    topic: str
    date: date
    position: int


class CollectionOut(BaseModel):
    id: int
    alliance_id: int
    title: str
    subject_id: int | None
    grade_level: int | None
    unit_name: str
    owner_name: str
    can_edit: bool
    items: list[CollectionItemOut]
