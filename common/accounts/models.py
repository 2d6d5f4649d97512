"""Accounts (people and classroom devices) and their login tokens."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from common.db import Base, TimestampMixin, utcnow

ROLES = ("bureau", "alliance_admin", "school_admin", "teacher", "terminal", "student")
TOKEN_KINDS = ("session", "api", "device", "calendar")


class Account(TimestampMixin, Base):
    """Who may log in. The scope columns say which alliance/school/class the role applies to."""

    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(20))
    # Devices have no password: they authenticate with a token received at pairing.
    password_hash: Mapped[str | None] = mapped_column(String(200), default=None)
    is_active: Mapped[bool] = mapped_column(default=True)
    alliance_id: Mapped[int | None] = mapped_column(
        ForeignKey("alliances.id", ondelete="CASCADE"), default=None
    )
    school_id: Mapped[int | None] = mapped_column(
        ForeignKey("schools.id", ondelete="CASCADE"), default=None
    )
    class_id: Mapped[int | None] = mapped_column(
        ForeignKey("classes.id", ondelete="CASCADE"), default=None
    )
    teacher_id: Mapped[int | None] = mapped_column(
        ForeignKey("teachers.id", ondelete="CASCADE"), default=None, unique=True
    )
    student_id: Mapped[int | None] = mapped_column(
        ForeignKey("students.id", ondelete="CASCADE"), default=None, unique=True
    )
    terminal_id: Mapped[int | None] = mapped_column(
        ForeignKey("classroom_terminals.id", ondelete="CASCADE"), default=None, unique=True
    )
    last_login_at: Mapped[datetime | None] = mapped_column(default=None)


class AuthToken(Base):
    """A browser session, an API token or a device token. Only the SHA-256 of the secret is kept."""

    __tablename__ = "auth_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(10))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    csrf_token: Mapped[str | None] = mapped_column(String(64), default=None)
    label: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked: Mapped[bool] = mapped_column(default=False)
