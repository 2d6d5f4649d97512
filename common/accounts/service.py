"""Accounts: creation, login, tokens (browser sessions, API tokens, device tokens)."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from common.accounts.models import ROLES, Account, AuthToken
from common.accounts.passwords import (
    MIN_PASSWORD_LENGTH,
    hash_password,
    needs_rehash,
    verify_password,
)
from common.db import utcnow
from common.errors import AuthenticationError, ConflictError, ValidationFailedError

# Which scope columns each role must carry.
REQUIRED_SCOPE: dict[str, tuple[str, ...]] = {
    "bureau": (),
    "alliance_admin": ("alliance_id",),
    "school_admin": ("alliance_id", "school_id"),
    "teacher": ("alliance_id", "school_id", "teacher_id"),
    "terminal": ("alliance_id", "school_id", "terminal_id"),
    "student": ("alliance_id", "school_id", "class_id", "student_id"),
}


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _aware(moment: datetime) -> datetime:
    # SQLite returns naive datetimes even for timezone-aware columns.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def check_password_strength(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationFailedError(f"密码至少需要 {MIN_PASSWORD_LENGTH} 个字符", field="password")


def create_account(
    session: Session,
    *,
    username: str,
    display_name: str,
    role: str,
    password: str | None = None,
    alliance_id: int | None = None,
    school_id: int | None = None,
    class_id: int | None = None,
    teacher_id: int | None = None,
    student_id: int | None = None,
    terminal_id: int | None = None,
) -> Account:
    """Create an account after checking the role's scope; devices get no password."""
    if role not in ROLES:
        raise ValidationFailedError(f"未知角色：{role}", field="role")
    scope = {
        "alliance_id": alliance_id,
        "school_id": school_id,
        "class_id": class_id,
        "teacher_id": teacher_id,
        "student_id": student_id,
        "terminal_id": terminal_id,
    }
    for column in REQUIRED_SCOPE[role]:
        if scope[column] is None:
            raise ValidationFailedError(f"角色 {role} 需要 {column}", field=column)
    username = username.strip()
    if not username:
        raise ValidationFailedError("用户名不能为空", field="username")
    if session.scalar(select(Account.id).where(Account.username == username)) is not None:
        raise ConflictError(f"用户名 {username} 已存在", field="username")
    if role == "terminal":
        password = None
    elif password is not None:
        check_password_strength(password)
    account = Account(
        username=username,
        display_name=display_name,
        role=role,
        password_hash=hash_password(password) if password else None,
        **scope,
    )
    session.add(account)
    session.flush()
    return account


def authenticate(session: Session, *, username: str, password: str) -> Account:
    """The account for a username and password, or AuthenticationError (same for both faults)."""
    account = session.scalar(select(Account).where(Account.username == username.strip()))
    ok = verify_password(account.password_hash if account else None, password)
    if account is None or not ok or not account.is_active or account.role == "terminal":
        raise AuthenticationError("用户名或密码错误")
    if account.password_hash and needs_rehash(account.password_hash):
        account.password_hash = hash_password(password)
    account.last_login_at = utcnow()
    return account


def change_password(
    session: Session, *, account: Account, old: str, new: str, keep_token_id: int | None = None
) -> None:
    """Change one's own password; every other browser session of the account ends."""
    if not verify_password(account.password_hash, old):
        raise ValidationFailedError("原密码错误", field="old_password")
    set_password(session, account=account, password=new, keep_token_id=keep_token_id)


def set_password(
    session: Session, *, account: Account, password: str, keep_token_id: int | None = None
) -> None:
    if account.role == "terminal":
        raise ValidationFailedError("教室终端没有密码，请重新配对", field="password")
    check_password_strength(password)
    account.password_hash = hash_password(password)
    for token in session.scalars(
        select(AuthToken).where(
            AuthToken.account_id == account.id,
            AuthToken.kind == "session",
            AuthToken.id != (keep_token_id or -1),
        )
    ):
        token.revoked = True


def issue_token(
    session: Session,
    *,
    account: Account,
    kind: str,
    lifetime: timedelta | None,
    label: str = "",
) -> tuple[str, AuthToken]:
    """A new secret token (returned once, stored hashed); sessions also get a CSRF token."""
    secret = secrets.token_urlsafe(32)
    token = AuthToken(
        account_id=account.id,
        kind=kind,
        token_hash=hash_token(secret),
        csrf_token=secrets.token_urlsafe(24) if kind == "session" else None,
        label=label,
        expires_at=utcnow() + lifetime if lifetime else None,
    )
    session.add(token)
    session.flush()
    return secret, token


def resolve_token(session: Session, secret: str) -> tuple[Account, AuthToken] | None:
    """The live account and token behind a secret, or None if unknown, expired or revoked."""
    token = session.scalar(select(AuthToken).where(AuthToken.token_hash == hash_token(secret)))
    if token is None or token.revoked:
        return None
    now = utcnow()
    if token.expires_at is not None and _aware(token.expires_at) <= now:
        return None
    account = session.get(Account, token.account_id)
    if account is None or not account.is_active:
        return None
    # Avoid a write per request: touch at most once a minute.
    if token.last_used_at is None or now - _aware(token.last_used_at) > timedelta(minutes=1):
        token.last_used_at = now
    return account, token


def revoke_token(session: Session, token: AuthToken) -> None:
    token.revoked = True
