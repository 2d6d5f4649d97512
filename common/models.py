"""Imports every table so that metadata (Alembic, tests) sees the whole schema."""

from common.accounts.models import Account, AuthToken
from common.alliance.models import (
    Alliance,
    BellSchedule,
    CalendarDay,
    Campus,
    ClassroomTerminal,
    Grade,
    Lesson,
    Period,
    Room,
    School,
    SchoolClass,
    Student,
    Subject,
    SyncGroup,
    SyncGroupMember,
    Teacher,
    Term,
    TimetableEntry,
    TravelTime,
)
from common.db import Base
from recordings.models import (
    Recording,
    RecordingCollection,
    RecordingCollectionItem,
    RecordingView,
)
from research.lesson_runs import LessonRun, LessonRunClassroom
from research.materials import ResearchMaterial
from research.models import Attendance, ResearchGroup, ResearchSession, Visit
from research.review_models import (
    Observation,
    ObservationScore,
    ReviewComment,
    ReviewedLesson,
    Rubric,
    RubricCriterion,
)

__all__ = [
    "Account",
    "Alliance",
    "Attendance",
    "AuthToken",
    "Base",
    "BellSchedule",
    "CalendarDay",
    "Campus",
    "ClassroomTerminal",
    "Grade",
    "Lesson",
    "LessonRun",
    "LessonRunClassroom",
    "Observation",
    "ObservationScore",
    "Period",
    "Recording",
    "RecordingCollection",
    "RecordingCollectionItem",
    "RecordingView",
    "ResearchGroup",
    "ResearchMaterial",
    "ResearchSession",
    "ReviewComment",
    "ReviewedLesson",
    "Room",
    "Rubric",
    "RubricCriterion",
    "School",
    "SchoolClass",
    "Student",
    "Subject",
    "SyncGroup",
    "SyncGroupMember",
    "Teacher",
    "Term",
    "TimetableEntry",
    "TravelTime",
    "Visit",
]
