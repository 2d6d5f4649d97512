"""Login, logout, API tokens, password change, and classroom-terminal pairing."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from common.accounts import service as accounts
from common.accounts.models import Account, AuthToken
from common.accounts.permissions import Action, Kind, authorize
from common.alliance.models import ClassroomTerminal
from common.alliance.resources import TERMINALS
from common.alliance.schemas import AccountOut
from common.alliance.service import load_scoped
from common.db import utcnow
from common.errors import AuthenticationError, ValidationFailedError
from common.settings import Settings
from web.deps import SESSION_COOKIE, Auth, CurrentPrincipal, DbSession, SettingsDep

router = APIRouter(prefix="/api", tags=["auth"])

PAIRING_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read off a screen
PAIRING_MINUTES = 15


class LoginIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: Annotated[str, Field(min_length=1, max_length=64)]
    password: Annotated[str, Field(min_length=1, max_length=200)]


class LoginOut(BaseModel):
    account: AccountOut
    csrf_token: str | None = None
    expires_at: datetime | None = None


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_at: datetime | None
    account: AccountOut


class PasswordIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    old_password: Annotated[str, Field(min_length=1, max_length=200)]
    new_password: Annotated[str, Field(min_length=1, max_length=200)]


class PairingCodeOut(BaseModel):
    terminal_id: int
    code: str
    expires_at: datetime


class PairIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: Annotated[str, Field(min_length=4, max_length=20)]


class PairOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
    terminal_id: int
    room_id: int
    name: str


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _login(request: Request, session: Session, body: LoginIn) -> Account:
    limiter = request.app.state.login_limiter
    keys = (f"user:{body.username.strip().lower()}|{_client(request)}", f"ip:{_client(request)}")
    for key in keys:
        limiter.check(key)
    try:
        account = accounts.authenticate(session, username=body.username, password=body.password)
    except AuthenticationError:
        for key in keys:
            limiter.record_failure(key)
        raise
    limiter.reset(keys[0])
    return account


@router.post("/auth/login", response_model=LoginOut)
def login(
    request: Request, response: Response, body: LoginIn, session: DbSession, settings: SettingsDep
) -> LoginOut:
    """Browser login: sets the session cookie; send `csrf_token` back as X-CSRF-Token."""
    account = _login(request, session, body)
    secret, token = accounts.issue_token(
        session, account=account, kind="session", lifetime=timedelta(hours=settings.session_hours)
    )
    set_session_cookie(response, secret, settings)
    return LoginOut(
        account=AccountOut.model_validate(account),
        csrf_token=token.csrf_token,
        expires_at=token.expires_at,
    )


def set_session_cookie(response: Response, secret: str, settings: Settings) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        secret,
        max_age=settings.session_hours * 3600,
        httponly=True,
        secure=settings.cookie_secure or settings.environment == "production",
        samesite="lax",
        path="/",
    )


@router.post("/auth/token", response_model=TokenOut)
def api_token(
    request: Request, body: LoginIn, session: DbSession, settings: SettingsDep
) -> TokenOut:
    """API clients: exchange a password for a bearer token (valid `session_hours`)."""
    account = _login(request, session, body)
    secret, token = accounts.issue_token(
        session, account=account, kind="api", lifetime=timedelta(hours=settings.session_hours)
    )
    return TokenOut(
        access_token=secret, expires_at=token.expires_at, account=AccountOut.model_validate(account)
    )


@router.post("/auth/logout", status_code=204)
def logout(response: Response, auth: Auth, session: DbSession) -> None:
    accounts.revoke_token(session, auth.token)
    response.delete_cookie(SESSION_COOKIE, path="/")


@router.get("/auth/me")
def me(auth: Auth) -> dict[str, Any]:
    return {
        "account": AccountOut.model_validate(auth.account).model_dump(),
        "csrf_token": auth.token.csrf_token,
    }


@router.post("/auth/password", status_code=204)
def change_password(body: PasswordIn, auth: Auth, session: DbSession) -> None:
    accounts.change_password(
        session,
        account=auth.account,
        old=body.old_password,
        new=body.new_password,
        keep_token_id=auth.token.id,
    )


@router.post("/terminals/{terminal_id}/pairing-code", response_model=PairingCodeOut)
def pairing_code(
    terminal_id: int, principal: CurrentPrincipal, session: DbSession
) -> PairingCodeOut:
    """A one-time code, shown to the admin and typed on the classroom screen within 15 minutes."""
    terminal, scope = load_scoped(session, TERMINALS, terminal_id)
    authorize(principal, Action.MANAGE, Kind.TERMINAL, scope)
    code = "".join(secrets.choice(PAIRING_ALPHABET) for _ in range(8))
    terminal.pairing_code_hash = accounts.hash_token(code)
    terminal.pairing_expires_at = utcnow() + timedelta(minutes=PAIRING_MINUTES)
    return PairingCodeOut(
        terminal_id=terminal.id,
        code=f"{code[:4]}-{code[4:]}",
        expires_at=terminal.pairing_expires_at,
    )


@router.post("/devices/pair", response_model=PairOut)
def pair_device(request: Request, body: PairIn, session: DbSession) -> PairOut:
    """The classroom terminal trades its pairing code for a long-lived device token."""
    limiter = request.app.state.login_limiter
    key = f"pair:{_client(request)}"
    limiter.check(key)
    code = body.code.replace("-", "").replace(" ", "").upper()
    terminal = session.scalar(
        select(ClassroomTerminal).where(
            ClassroomTerminal.pairing_code_hash == accounts.hash_token(code)
        )
    )
    expires = terminal.pairing_expires_at if terminal else None
    if terminal is None or expires is None or _aware(expires) <= utcnow():
        limiter.record_failure(key)
        raise ValidationFailedError("配对码无效或已过期，请在管理页面重新生成", field="code")
    terminal.pairing_code_hash = None
    terminal.pairing_expires_at = None
    terminal.paired_at = utcnow()
    account = session.scalar(select(Account).where(Account.terminal_id == terminal.id))
    if account is None:
        room = terminal.room
        account = accounts.create_account(
            session,
            username=f"terminal-{terminal.id}",
            display_name=terminal.name,
            role="terminal",
            alliance_id=room.campus.school.alliance_id,
            school_id=room.campus.school_id,
            terminal_id=terminal.id,
        )
    # A re-paired screen replaces the old one: its token stops working.
    for old in session.scalars(
        select(AuthToken).where(AuthToken.account_id == account.id, AuthToken.kind == "device")
    ):
        old.revoked = True
    secret, _ = accounts.issue_token(
        session, account=account, kind="device", lifetime=None, label=terminal.name
    )
    return PairOut(
        access_token=secret, terminal_id=terminal.id, room_id=terminal.room_id, name=terminal.name
    )


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
