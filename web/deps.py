"""Request dependencies, declared once as `Annotated` aliases."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from common.accounts.models import Account, AuthToken
from common.accounts.permissions import Principal
from common.accounts.service import resolve_token
from common.db import transaction
from common.errors import AuthenticationError, PermissionDeniedError
from common.settings import Settings

SESSION_COOKIE = "tongke_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


# Dependencies that do no I/O are async: FastAPI runs a sync one in the threadpool, a thread
# hop per request each (of ~8 a request made; 5 now).
async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_db(request: Request) -> Iterator[Session]:
    """One session per request: committed when the route returns, rolled back on error."""
    with transaction(request.app.state.sessions) as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings)]
# scope="function": commit before the response is sent, so the next request sees the data.
DbSession = Annotated[Session, Depends(get_db, scope="function")]


class Authenticated:
    def __init__(self, account: Account, token: AuthToken, via_cookie: bool) -> None:
        self.account = account
        self.token = token
        self.via_cookie = via_cookie
        self.principal = principal_of(account)


def principal_of(account: Account) -> Principal:
    return Principal(
        account_id=account.id,
        role=account.role,
        display_name=account.display_name,
        alliance_id=account.alliance_id,
        school_id=account.school_id,
        class_id=account.class_id,
        teacher_id=account.teacher_id,
        student_id=account.student_id,
        terminal_id=account.terminal_id,
    )


def _credentials(request: Request) -> tuple[str | None, bool]:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip(), False
    cookie = request.cookies.get(SESSION_COOKIE)
    return cookie, cookie is not None


def optional_auth(request: Request, session: DbSession) -> Authenticated | None:
    secret, via_cookie = _credentials(request)
    if not secret:
        return None
    found = resolve_token(session, secret)
    if found is None:
        if via_cookie:
            return None
        raise AuthenticationError("登录已失效，请重新登录")
    account, token = found
    if token in session.dirty:
        # Commit the touch here, in the threadpool: left pending, an async route's first query
        # flushes it on the event loop, which then waits out the busy timeout for a request
        # whose commit needs the loop (SQLite), the SFU stalled with it.
        session.commit()
    if token.kind == "calendar":
        # A calendar feed URL only ever reads its own timetable (see routers/timetable.py).
        raise AuthenticationError("此令牌只能用于课表订阅")
    if via_cookie and token.kind != "session":
        return None
    if via_cookie and request.method not in SAFE_METHODS:
        # Cookies ride along on cross-site requests; the CSRF token proves the page is ours.
        sent = request.headers.get(CSRF_HEADER)
        if not sent or not token.csrf_token or not secrets.compare_digest(sent, token.csrf_token):
            raise PermissionDeniedError("请求缺少有效的 CSRF 令牌，请刷新页面后重试")
    return Authenticated(account, token, via_cookie)


async def require_auth(
    auth: Annotated[Authenticated | None, Depends(optional_auth)],
) -> Authenticated:
    if auth is None:
        raise AuthenticationError("请先登录")
    return auth


async def current_principal(auth: Annotated[Authenticated, Depends(require_auth)]) -> Principal:
    return auth.principal


MaybeAuth = Annotated[Authenticated | None, Depends(optional_auth)]
Auth = Annotated[Authenticated, Depends(require_auth)]
CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
